//! Leader election: every candidate creates an ephemeral-sequential znode under the
//! election path; the lowest sequence leads; every other candidate watches only the
//! candidate just ahead of it (no herd effect). When the leader's session closes or
//! expires (its process crashed), its znode vanishes and exactly one successor is told.
//!
//! Each leader gets a **fencing token**: the czxid of its candidate znode. Leaders' tokens
//! strictly increase over time, so a resource that remembers the highest token it has seen
//! can refuse a deposed leader that still believes it leads (a paused or partitioned
//! process whose session has expired without it knowing yet).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::{
    create_protected, delete_if_present, ensure_path, gone, position, sorted_candidates, Position,
};
use crate::error::{Error, Result};
use crate::path;
use crate::session::{Session, SessionState};
use crate::watch::watcher;

const PREFIX: &str = "n_";

#[derive(Default)]
struct State {
    leader: bool,
    /// Set when the candidacy is over (resigned, or the znode vanished with the session).
    ended: Option<Error>,
}

struct Inner {
    session: Arc<Session>,
    dir: String,
    name: String,
    token: i64,
    state: Mutex<State>,
    changed: Condvar,
    wakeups: AtomicU64,
}

/// One candidate in a leader election (Curator's `LeaderLatch`).
///
/// ```
/// use std::{sync::Arc, time::Duration};
/// use zkraft::{recipes::election::LeaderElection, Node};
/// let dir = tempfile::tempdir().unwrap();
/// let node = Node::builder(1).data_dir(dir.path()).start().unwrap();
/// let session = Arc::new(node.session().unwrap());
/// let me = LeaderElection::join(session, "/service/leader", b"host-a:8080").unwrap();
/// assert!(me.await_leadership(Duration::from_secs(5)).unwrap());
/// let token = me.fencing_token(); // pass it along with every write to guarded resources
/// # assert!(token > 0);
/// ```
pub struct LeaderElection {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for LeaderElection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderElection")
            .field("path", &self.path())
            .field("leader", &self.is_leader())
            .field("token", &self.inner.token)
            .finish()
    }
}

impl Inner {
    fn my_path(&self) -> String {
        path::join(&self.dir, &self.name)
    }

    /// Re-evaluates the candidate's position; arms a watch on the predecessor if behind.
    fn check(self: &Arc<Self>) {
        loop {
            let pos = match position(&self.session, &self.dir, PREFIX, &self.name) {
                Ok(p) => p,
                Err(e) => return self.end(e),
            };
            match pos {
                Position::First => {
                    // Watch our own znode: if it goes (session ended, or deleted by hand),
                    // leadership ends with it.
                    let weak: Weak<Inner> = Arc::downgrade(self);
                    let w = watcher(move |_| {
                        if let Some(inner) = weak.upgrade() {
                            inner.check();
                        }
                    });
                    // get_data, not exists: no watch is left behind on a missing node.
                    match self.session.get_data(&self.my_path(), w) {
                        Ok(_) => {}
                        Err(Error::NoNode(_)) => continue,
                        Err(e) => return self.end(e),
                    }
                    let mut st = self.state.lock();
                    if st.ended.is_none() {
                        st.leader = true;
                    }
                    self.changed.notify_all();
                    return;
                }
                Position::Gone => return self.end(gone(&self.session, &self.my_path())),
                Position::Behind(pred) => {
                    let weak: Weak<Inner> = Arc::downgrade(self);
                    let w = watcher(move |_| {
                        if let Some(inner) = weak.upgrade() {
                            inner.wakeups.fetch_add(1, Ordering::SeqCst);
                            inner.check();
                        }
                    });
                    match self.session.get_data(&pred, w) {
                        Ok(_) => return,                   // the watch will call us again
                        Err(Error::NoNode(_)) => continue, // predecessor left: look again
                        Err(e) => return self.end(e),
                    }
                }
            }
        }
    }

    fn end(&self, e: Error) {
        let mut st = self.state.lock();
        st.leader = false;
        if st.ended.is_none() {
            st.ended = Some(e);
        }
        self.changed.notify_all();
    }
}

impl LeaderElection {
    /// Enters the election under `dir` (created if missing) with `data` describing this
    /// candidate (e.g. its address, readable by everyone through [`Self::leader_data`]).
    pub fn join(session: Arc<Session>, dir: &str, data: &[u8]) -> Result<LeaderElection> {
        ensure_path(&session, dir)?;
        let (p, stat) = create_protected(&session, dir, PREFIX, data)?;
        let inner = Arc::new(Inner {
            session,
            dir: dir.to_string(),
            name: path::name(&p).to_string(),
            token: stat.czxid,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            wakeups: AtomicU64::new(0),
        });
        inner.check();
        Ok(LeaderElection { inner })
    }

    /// True while this candidate leads and its session is connected: false as soon as its
    /// node loses track of the raft leader (Suspended), which happens within an election
    /// timeout of a partition, before the ensemble can expire the session. Guard writes
    /// with [`Self::fencing_token`] all the same: a paused process notices nothing.
    pub fn is_leader(&self) -> bool {
        self.inner.state.lock().leader && self.inner.session.state() == SessionState::Connected
    }

    /// Waits up to `timeout` to become leader (and be connected). `Ok(false)` on timeout;
    /// an error if the candidacy ended (resigned, or the session closed or expired).
    pub fn await_leadership(&self, timeout: Duration) -> Result<bool> {
        let deadline = crate::time::deadline_in(timeout);
        let mut st = self.inner.state.lock();
        loop {
            if let Some(e) = &st.ended {
                return Err(e.clone());
            }
            if self.inner.session.node_stopped() {
                return Err(Error::Shutdown);
            }
            match self.inner.session.state() {
                SessionState::Expired => return Err(Error::SessionExpired),
                SessionState::Closed => return Err(Error::SessionClosed),
                SessionState::Moved => return Err(Error::SessionMoved),
                SessionState::Connected if st.leader => return Ok(true),
                SessionState::Connected | SessionState::Suspended => {}
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            // Woken by position changes; the short slice also notices the session
            // leaving the Suspended state.
            let slice = deadline.min(now + Duration::from_millis(20));
            self.inner.changed.wait_until(&mut st, slice);
        }
    }

    /// The fencing token: the czxid of this candidate's znode. Leaders' tokens only grow.
    pub fn fencing_token(&self) -> i64 {
        self.inner.token
    }

    /// Path of this candidate's znode.
    pub fn path(&self) -> String {
        self.inner.my_path()
    }

    /// The data the current leader joined with, if there is a leader.
    pub fn leader_data(&self) -> Result<Option<Vec<u8>>> {
        loop {
            let kids = sorted_candidates(&self.inner.session, &self.inner.dir, PREFIX)?;
            let Some(first) = kids.first() else {
                return Ok(None);
            };
            match self
                .inner
                .session
                .get_data(&path::join(&self.inner.dir, first), None)
            {
                Ok((data, _)) => return Ok(Some(data)),
                Err(Error::NoNode(_)) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// How many times this candidate's predecessor watch fired (each candidate is woken
    /// only when the one just ahead of it leaves, so this stays small: no herd).
    pub fn wakeups(&self) -> u64 {
        self.inner.wakeups.load(Ordering::SeqCst)
    }

    /// Leaves the election: deletes this candidate's znode (the next candidate takes over).
    pub fn resign(&self) -> Result<()> {
        self.inner.end(Error::BadArguments("resigned".into()));
        delete_if_present(&self.inner.session, &self.inner.my_path())
    }
}

impl Drop for LeaderElection {
    /// Dropping a candidate leaves the election (if its session can still say so).
    fn drop(&mut self) {
        if self.inner.state.lock().ended.is_none() && !self.inner.session.node_stopped() {
            let _ = self.resign();
        }
    }
}
