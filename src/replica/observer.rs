//! The replica's one upward edge: what the layer above it (the host: hosted sessions and
//! their watches, `crate::host`) hears of the replicated state. The driver calls this and
//! nothing else of the host; it knows no session, watch or connection.
//!
//! Every method runs on the driver, some with the tree write-locked — except
//! `heartbeats_due`, which the keeper calls on its own thread (`keeper`), and
//! `sessions_acknowledged`, called by either: an implementation only records and queues
//! (watch events onto dispatchers, a session's end), it never blocks or waits on anything
//! that could wait on the driver.

use crate::command::Command;
use crate::error::Result;
use crate::tree::{DataTree, OpResult, WatchedEvent};

/// Hears of applied entries, tree replacements and session liveness from the driver and
/// the keeper.
pub(crate) trait Observer: Send + Sync + 'static {
    /// `cmd` was applied with `result`, causing `events` (in order). The tree, write-locked
    /// by the caller, is `tree`: nothing reads the entry's state before this returns.
    fn applied(
        &self,
        tree: &DataTree,
        cmd: &Command,
        result: &Result<OpResult>,
        events: Vec<WatchedEvent>,
    );

    /// A membership change rewrote `/zookeeper/config` in `tree` (write-locked by the
    /// caller), causing `events`.
    fn config_changed(&self, tree: &DataTree, events: Vec<WatchedEvent>);

    /// A snapshot replaced the tree `old` with `new` (write-locked by the caller; `old`
    /// is readable until this returns): what watches should hear is the observer's to
    /// compare, at the paths it watches (`tree::changes`).
    fn tree_replaced(&self, old: &DataTree, new: &DataTree);

    /// A write of `session` numbered in `epoch` of its order may have been lost (its
    /// outcome is unknown): nothing later of the session may count on following it.
    fn order_lost(&self, session: i64, epoch: u64);

    /// The sessions hosted here to heartbeat now (`now_ms` on the monotonic clock of
    /// `crate::time::mono_ms`; a wire session only while its client was heard within
    /// `window_ms`).
    fn heartbeats_due(&self, now_ms: i64, window_ms: i64) -> Vec<i64>;

    /// The leader has just heard this node's sessions.
    fn sessions_acknowledged(&self);

    /// The node is stopping (shut down, or stopped by a fatal error): end the local side
    /// of every hosted session. Called with no lock held.
    fn stopping(&self);
}

/// The observer of a replica whose host is gone (its node was dropped): hears nothing.
pub(crate) struct Nobody;

impl Observer for Nobody {
    fn applied(&self, _: &DataTree, _: &Command, _: &Result<OpResult>, _: Vec<WatchedEvent>) {}
    fn config_changed(&self, _: &DataTree, _: Vec<WatchedEvent>) {}
    fn tree_replaced(&self, _: &DataTree, _: &DataTree) {}
    fn order_lost(&self, _: i64, _: u64) {}
    fn heartbeats_due(&self, _: i64, _: i64) -> Vec<i64> {
        Vec::new()
    }
    fn sessions_acknowledged(&self) {}
    fn stopping(&self) {}
}
