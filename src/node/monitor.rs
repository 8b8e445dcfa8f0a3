//! [`Monitor`]: a read-only handle on a node for front ends that report on it from threads
//! of their own (an admin port, a metrics exporter).

use std::sync::Arc;

use crate::host::Host;
use crate::replica::Metrics;

/// A cheap, cloneable, read-only handle on a [`Node`](crate::Node) ([`Node::monitor`](crate::Node::monitor)):
/// what it reports, from any thread, for as long as the handle lives. It keeps the node's
/// memory, not the node running: after [`Node::shutdown`](crate::Node::shutdown) it
/// reports the last values and [`Monitor::is_stopped`] is true.
#[derive(Clone)]
pub struct Monitor {
    host: Arc<Host>,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor").field("id", &self.id()).finish()
    }
}

impl Monitor {
    pub(crate) fn new(host: Arc<Host>) -> Monitor {
        Monitor { host }
    }

    /// The node's id.
    pub fn id(&self) -> u64 {
        self.host.replica().id()
    }

    /// What [`Node::metrics`](crate::Node::metrics) reports.
    pub fn metrics(&self) -> Metrics {
        self.host.metrics()
    }

    /// Runs ZooKeeper's AdminServer command `name` (`ruok`, `srvr`, `mntr`, `cons`,
    /// `dump`, `wchp`, …, or zkraft's `ensemble` and `znode`, see
    /// [`admin::COMMANDS`](crate::admin::COMMANDS)) with its arguments (`znode` takes
    /// `path`), over the node and every client port started on it: the answer with
    /// ZooKeeper's field names, `command` and `error` included; `None` for an unknown
    /// command.
    ///
    /// The caller is anonymous: `znode` shows what a client without credentials may read
    /// (see [`Monitor::command_as`]).
    pub fn command(&self, name: &str, args: &[(String, String)]) -> Option<crate::admin::Value> {
        self.command_as(name, args, &[])
    }

    /// [`Monitor::command`] for a caller holding `ids`: `znode` shows a znode's data and
    /// children only if `ids` may READ it, as a client holding them could
    /// ([`Id::super_user`](crate::Id::super_user) reads everything).
    pub fn command_as(
        &self,
        name: &str,
        args: &[(String, String)],
        ids: &[crate::Id],
    ) -> Option<crate::admin::Value> {
        crate::listener::commands::run(&self.host, name, args, ids)
    }

    /// True once the node has shut down.
    pub fn is_stopped(&self) -> bool {
        self.host.replica().is_stopped()
    }
}
