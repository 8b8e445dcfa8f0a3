//! A distributed mutex (ZooKeeper's lock recipe, Curator's `InterProcessMutex` without
//! re-entrance): ephemeral-sequential znodes under the lock path; the lowest holds the
//! lock; each waiter watches only its predecessor. The holder gets a fencing token (the
//! czxid of its znode), increasing from one holder to the next.

use std::sync::Arc;
use std::time::Duration;

use super::{
    create_protected, delete_if_present, ensure_path, gone, position, signal, wait_signal, Position,
};
use crate::error::{Error, Result};
use crate::path;
use crate::session::Session;

const PREFIX: &str = "lock-";

/// A lock shared by everyone who names the same path.
///
/// ```
/// use std::{sync::Arc, time::Duration};
/// use zkraft::{recipes::lock::DistributedLock, Node};
/// let dir = tempfile::tempdir().unwrap();
/// let node = Node::builder(1).data_dir(dir.path()).start().unwrap();
/// let lock = DistributedLock::new(Arc::new(node.session().unwrap()), "/locks/db");
/// let guard = lock.acquire(Duration::from_secs(5)).unwrap();
/// // ... critical section; pass guard.fencing_token() to the guarded resource ...
/// guard.release().unwrap();
/// ```
pub struct DistributedLock {
    session: Arc<Session>,
    dir: String,
}

/// Proof of holding the lock; releases it when dropped.
#[derive(Debug)]
pub struct LockGuard {
    session: Arc<Session>,
    path: String,
    token: i64,
    released: bool,
}

impl DistributedLock {
    /// A handle on the lock at `dir` (created on first use).
    pub fn new(session: Arc<Session>, dir: &str) -> DistributedLock {
        DistributedLock {
            session,
            dir: dir.to_string(),
        }
    }

    /// Waits up to `timeout` for the lock; [`Error::Timeout`] if it could not be had (the
    /// waiting znode is removed again).
    pub fn acquire(&self, timeout: Duration) -> Result<LockGuard> {
        let deadline = crate::time::deadline_in(timeout);
        ensure_path(&self.session, &self.dir)?;
        let (p, stat) = create_protected(&self.session, &self.dir, PREFIX, b"")?;
        let name = path::name(&p).to_string();
        let give_up = |e: Error| {
            let _ = self.session.delete(&p, None);
            Err(e)
        };
        loop {
            match position(&self.session, &self.dir, PREFIX, &name) {
                Err(e) => return give_up(e),
                Ok(Position::First) => {
                    return Ok(LockGuard {
                        session: self.session.clone(),
                        path: p,
                        token: stat.czxid,
                        released: false,
                    })
                }
                Ok(Position::Gone) => return Err(gone(&self.session, &p)),
                Ok(Position::Behind(pred)) => {
                    let (w, rx) = signal();
                    match self.session.get_data(&pred, w) {
                        Ok(_) => {
                            if let Err(e) = wait_signal(&self.session, &rx, deadline, timeout) {
                                return give_up(e);
                            }
                        }
                        Err(Error::NoNode(_)) => {}
                        Err(e) => return give_up(e),
                    }
                }
            }
        }
    }
}

impl LockGuard {
    /// The fencing token: czxid of the holder's znode; grows from holder to holder.
    pub fn fencing_token(&self) -> i64 {
        self.token
    }

    /// Releases the lock.
    pub fn release(mut self) -> Result<()> {
        self.released = true;
        delete_if_present(&self.session, &self.path)
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if !self.released {
            let _ = self.session.delete(&self.path, None);
        }
    }
}
