//! Group membership: each member is an ephemeral znode named after it under the group
//! path, so a member that crashes leaves the group when its session expires. Observers get
//! the member list on every change through a persistent watch.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use super::{delete_if_present, ensure_path};
use crate::command::CreateMode;
use crate::error::{Error, Result};
use crate::path;
use crate::session::Session;
use crate::watch::watcher;

/// A group at a path.
///
/// ```
/// use std::sync::Arc;
/// use zkraft::{recipes::group::Group, Node};
/// let dir = tempfile::tempdir().unwrap();
/// let node = Node::builder(1).data_dir(dir.path()).start().unwrap();
/// let group = Group::new(Arc::new(node.session().unwrap()), "/workers").unwrap();
/// let me = group.join("worker-1", b"10.0.0.1").unwrap();
/// assert_eq!(group.members().unwrap(), ["worker-1"]);
/// me.leave().unwrap();
/// ```
pub struct Group {
    session: Arc<Session>,
    dir: String,
    /// The flag of the current `watch`, cleared to stop it.
    watching: Mutex<Option<Arc<AtomicBool>>>,
}

/// Membership of one member; leaves the group when dropped.
#[derive(Debug)]
pub struct Member {
    session: Arc<Session>,
    path: String,
    left: bool,
}

impl Group {
    /// The group at `dir` (created if missing).
    pub fn new(session: Arc<Session>, dir: &str) -> Result<Group> {
        ensure_path(&session, dir)?;
        Ok(Group {
            session,
            dir: dir.to_string(),
            watching: Mutex::new(None),
        })
    }

    /// Joins as `name` with `data`. [`Error::NodeExists`] if the name is taken.
    pub fn join(&self, name: &str, data: &[u8]) -> Result<Member> {
        let p = self
            .session
            .create(&path::join(&self.dir, name), data, CreateMode::Ephemeral)?;
        Ok(Member {
            session: self.session.clone(),
            path: p,
            left: false,
        })
    }

    /// The current members, sorted.
    pub fn members(&self) -> Result<Vec<String>> {
        self.session.get_children(&self.dir, None)
    }

    /// The data a member joined with.
    pub fn member_data(&self, name: &str) -> Result<Vec<u8>> {
        Ok(self.session.get_data(&path::join(&self.dir, name), None)?.0)
    }

    /// Calls `on_change` with the member list after every join and leave (on the session's
    /// dispatcher) until [`Group::unwatch`]; returns the list as of now.
    ///
    /// Built from one-shot child watches re-armed with each read (as Curator's caches):
    /// changes that land while the list is re-read are folded into the next call, so
    /// `on_change` always sees the current membership.
    pub fn watch(
        &self,
        on_change: impl Fn(Vec<String>) + Send + Sync + 'static,
    ) -> Result<Vec<String>> {
        let active = Arc::new(AtomicBool::new(true));
        if let Some(previous) = self.watching.lock().replace(active.clone()) {
            previous.store(false, Ordering::SeqCst);
        }
        arm(
            Arc::downgrade(&self.session),
            self.dir.clone(),
            active,
            Arc::new(on_change),
        )
    }

    /// Stops the notifications set up by [`Group::watch`].
    pub fn unwatch(&self) {
        if let Some(active) = self.watching.lock().take() {
            active.store(false, Ordering::SeqCst);
        }
    }
}

type OnChange = Arc<dyn Fn(Vec<String>) + Send + Sync>;

/// Reads the members with a child watch that, when it fires, does the same again and
/// reports the new list — while `active`.
fn arm(
    session: Weak<Session>,
    dir: String,
    active: Arc<AtomicBool>,
    on_change: OnChange,
) -> Result<Vec<String>> {
    let s = session.upgrade().ok_or(Error::SessionClosed)?;
    let again = {
        let (dir, active) = (dir.clone(), active.clone());
        watcher(move |_| {
            if !active.load(Ordering::SeqCst) {
                return;
            }
            if let Ok(members) = arm(session, dir, active.clone(), on_change.clone()) {
                if active.load(Ordering::SeqCst) {
                    on_change(members);
                }
            }
        })
    };
    s.get_children(&dir, again)
}

impl Drop for Group {
    /// A dropped group stops notifying.
    fn drop(&mut self) {
        self.unwatch();
    }
}

impl Member {
    /// Leaves the group.
    pub fn leave(mut self) -> Result<()> {
        self.left = true;
        delete_if_present(&self.session, &self.path)
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if !self.left && !self.session.node_stopped() {
            let _ = self.session.delete(&self.path, None);
        }
    }
}
