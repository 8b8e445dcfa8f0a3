//! A wire session's ordered output: the one queue its answers and its watch
//! notifications are encoded into, in order (the connection of a ZooKeeper client is its
//! session's watcher and its answers' destination, as in ZooKeeper's server).
//!
//! The host's pipeline and watch manager queue there directly — on whichever thread
//! produced the answer or applied the event, with the tree locked — when nothing is
//! queued before it on the session's dispatcher, and the destination is written out once
//! the locks are released; otherwise the dispatcher queues it after what came before.
//! Queueing does no I/O and runs nothing else.

use crate::error::Result;
use crate::pipeline::Reply;
use crate::tree::WatchedEvent;

/// A destination that takes a session's answers and notifications in order by queueing
/// them (a wire connection).
pub(crate) trait Output: Send + Sync + 'static {
    /// Queues the answer to request `xid` (produced with the tree at `zxid`). True when
    /// the caller must [`Output::flush`] once it holds no lock.
    fn queue_reply(&self, xid: i64, zxid: i64, reply: Result<Reply>) -> bool;
    /// Queues the notification of `event`. True when the caller must [`Output::flush`]
    /// once it holds no lock.
    fn queue_event(&self, event: &WatchedEvent) -> bool;
    /// Writes out what is queued, as far as the destination takes it now.
    fn flush(&self);
}
