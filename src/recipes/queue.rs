//! A distributed FIFO queue (ZooKeeper's recipe): items are persistent-sequential znodes;
//! a consumer takes the head by deleting it, so each item is consumed exactly once even
//! with many consumers.

use std::sync::Arc;
use std::time::Duration;

use super::{ensure_path, signal, sorted_candidates, wait_signal};
use crate::command::CreateMode;
use crate::error::{Error, Result};
use crate::path;
use crate::session::Session;

const PREFIX: &str = "qn-";

/// A queue at a path.
///
/// ```
/// use std::sync::Arc;
/// use zkraft::{recipes::queue::DistributedQueue, Node};
/// let dir = tempfile::tempdir().unwrap();
/// let node = Node::builder(1).data_dir(dir.path()).start().unwrap();
/// let q = DistributedQueue::new(Arc::new(node.session().unwrap()), "/jobs").unwrap();
/// q.offer(b"first").unwrap();
/// q.offer(b"second").unwrap();
/// assert_eq!(q.poll().unwrap().as_deref(), Some(&b"first"[..]));
/// ```
pub struct DistributedQueue {
    session: Arc<Session>,
    dir: String,
}

impl DistributedQueue {
    /// The queue at `dir` (created if missing).
    pub fn new(session: Arc<Session>, dir: &str) -> Result<DistributedQueue> {
        ensure_path(&session, dir)?;
        Ok(DistributedQueue {
            session,
            dir: dir.to_string(),
        })
    }

    /// Appends an item; returns its znode path.
    pub fn offer(&self, data: &[u8]) -> Result<String> {
        self.session.create(
            &path::join(&self.dir, PREFIX),
            data,
            CreateMode::PersistentSequential,
        )
    }

    /// Number of items queued.
    pub fn len(&self) -> Result<usize> {
        Ok(sorted_candidates(&self.session, &self.dir, PREFIX)?.len())
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Takes the head item, or `None` if the queue is empty.
    pub fn poll(&self) -> Result<Option<Vec<u8>>> {
        for name in sorted_candidates(&self.session, &self.dir, PREFIX)? {
            let p = path::join(&self.dir, &name);
            let data = match self.session.get_data(&p, None) {
                Ok((data, _)) => data,
                Err(Error::NoNode(_)) => continue,
                Err(e) => return Err(e),
            };
            // Whoever deletes the item owns it; a consumer that loses the race moves on.
            match self.session.delete(&p, None) {
                Ok(()) => return Ok(Some(data)),
                Err(Error::NoNode(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Takes the head item, waiting up to `timeout` for one to arrive.
    pub fn take(&self, timeout: Duration) -> Result<Vec<u8>> {
        let deadline = crate::time::deadline_in(timeout);
        loop {
            let (w, rx) = signal();
            self.session.get_children(&self.dir, w)?;
            if let Some(item) = self.poll()? {
                return Ok(item);
            }
            wait_signal(&self.session, &rx, deadline, timeout)?;
        }
    }
}
