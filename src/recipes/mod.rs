//! Coordination recipes built on the public [`Session`] API only, the way Apache Curator
//! builds on ZooKeeper: [`election`] (leader election with fencing tokens), [`lock`] (a
//! mutex), [`group`] (membership with change notifications), [`barrier`] (a double
//! barrier) and [`queue`] (a distributed FIFO queue).
//!
//! Election, lock and barrier wait on their *predecessor* only (an `exists` watch on the
//! next-lower sequential znode), so a change wakes one waiter, not all of them (no herd).

pub mod barrier;
pub mod election;
pub mod group;
pub mod lock;
pub mod queue;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError};

use crate::command::CreateMode;
use crate::error::{Error, Result};
use crate::path;
use crate::session::{Session, SessionState};
use crate::tree::{EventType, Stat};
use crate::watch::{watcher, AddWatchMode, Watcher};

/// A one-shot watcher that signals the returned receiver when it fires.
pub(crate) fn signal() -> (Option<Watcher>, Receiver<()>) {
    let (tx, rx) = bounded(1);
    (
        watcher(move |_| {
            let _ = tx.try_send(());
        }),
        rx,
    )
}

/// Creates `p` and its missing ancestors as empty persistent znodes (Curator's
/// `creatingParentsIfNeeded`). Existing znodes are left as they are.
pub fn ensure_path(session: &Session, p: &str) -> Result<()> {
    path::validate(p)?;
    if p == "/" || session.exists(p, None)?.is_some() {
        return Ok(());
    }
    if let Some(parent) = path::parent(p) {
        ensure_path(session, parent)?;
    }
    match session.create(p, b"", CreateMode::Persistent) {
        Ok(_) | Err(Error::NodeExists(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Deletes `p`, counting an already missing znode as done (leaving a group, releasing a
/// lock, resigning: the session may have ended and taken the znode with it).
pub(crate) fn delete_if_present(session: &Session, p: &str) -> Result<()> {
    match session.delete(p, None) {
        Ok(()) | Err(Error::NoNode(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Waits for a [`signal`] until `deadline`. If the watch can no longer fire (its session
/// ended or its node stopped), says so instead of waiting out the deadline.
pub(crate) fn wait_signal(
    session: &Session,
    rx: &Receiver<()>,
    deadline: Instant,
    timeout: Duration,
) -> Result<()> {
    match rx.recv_deadline(deadline) {
        Ok(()) => Ok(()),
        Err(RecvTimeoutError::Timeout) => Err(Error::Timeout(timeout)),
        Err(RecvTimeoutError::Disconnected) => Err(match session.state() {
            SessionState::Expired => Error::SessionExpired,
            SessionState::Closed => Error::SessionClosed,
            SessionState::Moved => Error::SessionMoved,
            _ => Error::Shutdown,
        }),
    }
}

/// Creates the ephemeral-sequential znode `dir/_c_<guid>-<prefix><seq>`, as Curator's
/// *protected* mode does. When the outcome of the create is unknown (`Timeout`,
/// `NoQuorum`: the entry may still commit), it looks for its guid among the session's
/// ephemerals — syncing first, and polling for up to the session timeout — and adopts the
/// znode if it was created after all. If it is still not there, a watch deletes it should it
/// appear later, so no orphan blocks the lock or election queue.
pub(crate) fn create_protected(
    session: &Arc<Session>,
    dir: &str,
    prefix: &str,
    data: &[u8],
) -> Result<(String, Stat)> {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(session.id() as u64);
    let guid = format!("{:016x}", h.finish());
    let base = path::join(dir, &format!("_c_{guid}-{prefix}"));
    let err = match session.create_with_stat(&base, data, CreateMode::EphemeralSequential) {
        Ok(created) => return Ok(created),
        Err(e) if e.is_logical() => return Err(e),
        Err(e) => e,
    };
    let deadline = crate::time::deadline_in(session.timeout());
    loop {
        // Catch up if the ensemble lets us; look in any case.
        let _ = session.sync(dir);
        let mine = session.get_ephemerals(dir)?;
        if let Some(p) = mine.into_iter().find(|p| p.contains(&guid)) {
            if let Some(stat) = session.exists(&p, None)? {
                return Ok((p, stat));
            }
        }
        if Instant::now() >= deadline {
            abandon(session, dir, &guid);
            return Err(err);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Gives up on a protected create whose entry may still commit: a recursive watch on
/// `dir` deletes the znode if it ever appears, so it cannot block a queue nobody waits in
/// for it. (The watch stays for the life of the session.)
fn abandon(session: &Arc<Session>, dir: &str, guid: &str) {
    let ours = {
        let guid = guid.to_string();
        move |p: &str| path::name(p).contains(&guid)
    };
    let weak: Weak<Session> = Arc::downgrade(session);
    let is_ours = ours.clone();
    let registered = session.add_watch(dir, AddWatchMode::PersistentRecursive, move |e| {
        if e.event_type == EventType::NodeCreated && is_ours(&e.path) {
            if let Some(s) = weak.upgrade() {
                let _ = s.delete(&e.path, None);
            }
        }
    });
    // It may have appeared between the last look and the watch.
    if registered.is_ok() {
        for p in session.get_ephemerals(dir).unwrap_or_default() {
            if ours(&p) {
                let _ = session.delete(&p, None);
            }
        }
    }
}

/// Why a recipe's own znode is no longer there: its session ended, or someone deleted it.
pub(crate) fn gone(session: &Session, my_path: &str) -> Error {
    match session.state() {
        SessionState::Expired => Error::SessionExpired,
        SessionState::Closed => Error::SessionClosed,
        SessionState::Moved => Error::SessionMoved,
        _ if session.node_stopped() => Error::Shutdown,
        _ => Error::NoNode(my_path.to_string()),
    }
}

/// The 10-digit sequence suffix of a sequential znode name.
pub(crate) fn sequence_of(name: &str) -> Option<u64> {
    if name.len() < 10 {
        return None;
    }
    name[name.len() - 10..].parse().ok()
}

/// The sequential children of `dir` whose names contain `prefix` (protected names put a
/// guid before it), ordered by sequence number.
pub(crate) fn sorted_candidates(session: &Session, dir: &str, prefix: &str) -> Result<Vec<String>> {
    let mut kids: Vec<String> = session
        .get_children(dir, None)?
        .into_iter()
        .filter(|k| k.contains(prefix) && sequence_of(k).is_some())
        .collect();
    kids.sort_by_key(|k| sequence_of(k));
    Ok(kids)
}

/// Where a sequential znode stands in its queue.
pub(crate) enum Position {
    /// First: it holds the lock / leadership.
    First,
    /// Behind this sibling (full path), which it should watch.
    Behind(String),
    /// Not there any more (deleted, or its session ended).
    Gone,
}

/// Finds `my_name` among the sequential children of `dir` with `prefix`.
pub(crate) fn position(
    session: &Session,
    dir: &str,
    prefix: &str,
    my_name: &str,
) -> Result<Position> {
    let kids = sorted_candidates(session, dir, prefix)?;
    Ok(match kids.iter().position(|k| k == my_name) {
        None => Position::Gone,
        Some(0) => Position::First,
        Some(i) => Position::Behind(path::join(dir, &kids[i - 1])),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Node;

    #[test]
    fn an_abandoned_protected_create_is_deleted_when_it_appears() {
        let dir = tempfile::tempdir().unwrap();
        let node = Node::builder(1).data_dir(dir.path()).start().unwrap();
        let s = Arc::new(node.session().unwrap());
        ensure_path(&s, "/q").unwrap();
        abandon(&s, "/q", "00000000deadbeef");
        // The late create (as if the timed-out entry committed now) is removed…
        let late = s
            .create(
                "/q/_c_00000000deadbeef-lock-",
                b"",
                CreateMode::EphemeralSequential,
            )
            .unwrap();
        // …and a znode of another attempt is left alone.
        let other = s
            .create(
                "/q/_c_00000000cafebabe-lock-",
                b"",
                CreateMode::EphemeralSequential,
            )
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while node.exists(&late).unwrap().is_some() {
            assert!(Instant::now() < deadline, "orphan not removed");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(node.exists(&other).unwrap().is_some());
    }

    #[test]
    fn sequence_suffixes() {
        assert_eq!(sequence_of("n_0000000042"), Some(42));
        assert_eq!(sequence_of("lock-0000000000"), Some(0));
        assert_eq!(sequence_of("ready"), None);
        assert_eq!(sequence_of("member-abcdefghij"), None);
    }
}
