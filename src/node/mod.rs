//! [`Node`]: one member of a zkraft ensemble as an application holds it — the front end
//! over the replica (`crate::replica`: raft, storage, the tree) and its host
//! (`crate::host`: sessions, watches): the node's own synchronous znode API, its sessions,
//! membership changes, status. Reads are served from the node's applied tree; writes are
//! proposed through the replica and answered once applied on this node.

mod builder;
mod monitor;

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

pub use builder::NodeBuilder;
pub use monitor::Monitor;

use crate::acl::Acl;
use crate::api;
use crate::command::{CreateMode, Op};
use crate::error::{Error, Result};
use crate::member::{Configuration, MemberSpec};
use crate::pool::Pool;
use crate::replica::{Config, Digest, MemberChange, Metrics, Role, Shared};
use crate::session::SessionBuilder;
use crate::tree::{DataTree, OpResult, Stat};

/// One member of a zkraft ensemble: a replica of the znode tree and the synchronous API
/// over it. Start one with [`Node::builder`]. `Node` is `Send + Sync`: share it between
/// threads with `Arc` or scoped threads.
///
/// A `Node`'s own calls (`Node::create`, `Node::get_data`, … — no session) are the
/// embedding service acting on its own store: they run as the super user, which no ACL
/// stops (see [`crate::acl`]). Clients go through [`Session`](crate::Session)s, whose
/// identities ([`Session::add_auth`](crate::Session::add_auth)) every ACL is checked
/// against.
///
/// ```
/// use zkraft::{CreateMode, Node};
/// let dir = tempfile::tempdir().unwrap();
/// let node = Node::builder(1).data_dir(dir.path()).start().unwrap();
/// node.create("/app", b"v1", CreateMode::Persistent).unwrap();
/// let (data, stat) = node.get_data("/app").unwrap();
/// assert_eq!((data.as_slice(), stat.version), (&b"v1"[..], 0));
/// node.shutdown();
/// ```
pub struct Node {
    shared: Arc<Shared>,
    /// The sessions this node hosts (the layer above the replica; it holds the replica).
    host: Arc<crate::host::Host>,
    timer: u64,
    pool: Mutex<Option<Pool>>,
    /// The TCP transport the builder made for [`NodeBuilder::members`], closed with the
    /// node.
    tcp: Option<crate::transport::TcpTransport>,
}

impl api::Write for Node {
    /// No session: unordered, as ZooKeeper's requests of distinct clients.
    fn write(&self, op: Op) -> Result<OpResult> {
        self.shared.submit(op)
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.shared.id())
            .field("role", &self.role())
            .field("leader", &self.leader())
            .field("applied", &self.applied_index())
            .finish()
    }
}

impl Node {
    /// Starts building node `id`.
    pub fn builder(id: u64) -> NodeBuilder {
        NodeBuilder::new(id)
    }

    /// This node's raft id.
    pub fn id(&self) -> u64 {
        self.shared.id()
    }

    /// The role this node plays now.
    pub fn role(&self) -> Role {
        self.shared.role()
    }

    /// The leader this node knows of, if any.
    pub fn leader(&self) -> Option<u64> {
        match self.shared.leader_id() {
            0 => None,
            id => Some(id),
        }
    }

    /// The raft term this node is in.
    pub fn term(&self) -> u64 {
        self.shared.term()
    }

    /// Index of the last log entry applied to this node's tree: the zxid of the newest
    /// change a local read can see.
    pub fn applied_index(&self) -> u64 {
        self.shared.applied_index()
    }

    /// The node's configuration.
    pub fn config(&self) -> &Config {
        self.shared.config()
    }

    /// What the node reports of itself: raft's state, the driver's counters and
    /// latencies (fsync, snapshots), the tree's totals, sessions, watches, request
    /// latencies per operation, its client ports' connections and the traffic to each
    /// peer (docs/operations.md lists them with their Prometheus names). For an embedding
    /// service with a metrics system of its own; `zkraft-server --metrics-addr` exports
    /// the same values to Prometheus.
    pub fn metrics(&self) -> Metrics {
        self.host.metrics()
    }

    /// A read-only handle on this node for threads that report on it (an admin port, a
    /// metrics exporter): see [`Monitor`].
    pub fn monitor(&self) -> Monitor {
        Monitor::new(self.host.clone())
    }

    /// Takes over session `id` on this node, given its password (see
    /// [`SessionBuilder::attach`]).
    pub fn attach_session(&self, id: i64, password: &[u8]) -> Result<crate::Session> {
        self.session_builder().attach(id, password)
    }

    /// The voters of the ensemble's configuration as this node has applied it, sorted.
    pub fn members(&self) -> Vec<u64> {
        self.shared.voters()
    }

    /// The ensemble's configuration as this node has applied it: each member's spec and
    /// role, and the version (what `/zookeeper/config` shows).
    pub fn configuration(&self) -> Configuration {
        self.shared.configuration()
    }

    /// Adds member `id`, and returns once the change is applied on this node. `spec` is
    /// where peers reach it, `host:port`, or ZooKeeper's server string
    /// (`host:port:electionPort:participant|observer;clientHost:clientPort`, see
    /// [`MemberSpec`]). Start the new node first with [`NodeBuilder::joining`]; it
    /// catches up through a snapshot. Every member records the spec and its transport
    /// starts reaching it ([`Transport::peer_added`]).
    ///
    /// A participant is added as a learner and becomes a voter once it has caught up with
    /// the leader, so adding it never costs the ensemble its quorum: the call returns once
    /// it votes, or with [`Error::NewConfigNoQuorum`](crate::Error::NewConfigNoQuorum)
    /// when it has not caught up within the request timeout (it stays a learner and is
    /// promoted when it has). An observer receives the log and serves, and never votes.
    /// Adding a current member changes its spec (an observer made a participant is
    /// promoted as above).
    ///
    /// One change at a time: while another is not applied yet, the call is refused with
    /// [`Error::ReconfigInProgress`](crate::Error::ReconfigInProgress).
    pub fn add_member(&self, id: u64, spec: &str) -> Result<()> {
        let spec = MemberSpec::parse(spec)?;
        if self.metrics().log_first_index <= 1 {
            // Only a directory from before bootstrap snapshots, which is compacted at its
            // next start: until then a new member could be caught up from a log that never
            // held the initial voters.
            return Err(Error::BadArguments(
                "this node's log still starts at index 1: restart it first (it compacts)".into(),
            ));
        }
        self.shared.change_members(&MemberChange::Add(id, spec))
    }

    /// Removes member `id` from the ensemble and returns once the change is applied on
    /// this node; every member's transport stops reaching it
    /// ([`Transport::peer_removed`]). Removing the leader first hands its leadership to
    /// the voter furthest along. The last voter cannot be removed
    /// ([`Error::BadArguments`](crate::Error::BadArguments)).
    pub fn remove_member(&self, id: u64) -> Result<()> {
        self.shared.change_members(&MemberChange::Remove(id))
    }

    /// The digest of this replica's tree and sessions at its applied index. Replicas that
    /// report the same index must report the same value; tests use it to prove them
    /// identical.
    pub fn digest(&self) -> Digest {
        self.shared.digest()
    }

    /// The node's shared state, for the front ends started on it (the client port).
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The node's host (its sessions), for the front ends started on it.
    pub(crate) fn host(&self) -> &Arc<crate::host::Host> {
        &self.host
    }

    /// Number of watch registrations held for the sessions hosted here.
    pub fn watch_count(&self) -> usize {
        self.host.watch_count()
    }

    /// Number of sessions this node hosts.
    pub fn hosted_sessions(&self) -> usize {
        self.host.hosted_session_count()
    }

    /// True once the node has shut down (or stopped after a fatal storage error).
    pub fn is_stopped(&self) -> bool {
        self.shared.is_stopped()
    }

    // ----- sessions -----

    /// Opens a session with the node's default timeout ([`Config::session_timeout`]).
    pub fn session(&self) -> Result<crate::Session> {
        self.session_builder().open()
    }

    /// Opens a session asking for `timeout`, clamped to the configured bounds.
    pub fn session_with_timeout(&self, timeout: Duration) -> Result<crate::Session> {
        self.session_builder().timeout(timeout).open()
    }

    /// Opens a session for the async API (see [`crate::AsyncSession`]), with the node's
    /// default timeout; [`SessionBuilder::open_async`] takes the builder's settings.
    pub fn async_session(&self) -> crate::OpenSession {
        self.session_builder().open_async()
    }

    /// A builder for a session with a timeout and a session-state watcher.
    pub fn session_builder(&self) -> SessionBuilder {
        SessionBuilder::new(self.host.clone())
    }

    // ----- writes -----

    /// Creates a znode and returns its path (with the sequence suffix for sequential
    /// modes). Errors: `NodeExists`, `NoNode` (parent missing), `NoChildrenForEphemerals`,
    /// `InvalidPath`, `DataTooLarge`, and the request errors (`Timeout`, `Shutdown`…).
    pub fn create(&self, path: &str, data: &[u8], mode: CreateMode) -> Result<String> {
        self.create_with_stat(path, data, mode).map(|(p, _)| p)
    }

    /// Like [`Node::create`], also returning the new znode's [`Stat`] (ZooKeeper's create2).
    /// TTL modes go through [`Node::create_ttl`].
    pub fn create_with_stat(
        &self,
        path: &str,
        data: &[u8],
        mode: CreateMode,
    ) -> Result<(String, Stat)> {
        api::create(self, path, data, mode)
    }

    /// Creates a znode with the ACL `acl` (see [`crate::acl`]) and returns its path. The
    /// node's own calls act as the super user, so no ACL stops them; `acl` must still be
    /// acceptable ([`Error::InvalidAcl`]) — and [`Acl::creator_all`] is not, from here:
    /// the node has no authenticated identity to expand `auth` to.
    pub fn create_with_acl(
        &self,
        path: &str,
        data: &[u8],
        mode: CreateMode,
        acl: Vec<Acl>,
    ) -> Result<String> {
        api::create_with_acl(self, path, data, mode, acl).map(|(p, _)| p)
    }

    /// Creates a TTL znode (`PersistentWithTtl` or `PersistentSequentialWithTtl`): the
    /// leader deletes it once it has had no children and no change for `ttl`.
    pub fn create_ttl(
        &self,
        path: &str,
        data: &[u8],
        mode: CreateMode,
        ttl: Duration,
    ) -> Result<String> {
        api::create_ttl(self, path, data, mode, ttl).map(|(p, _)| p)
    }

    /// Deletes a znode; `version` `None` matches any. Errors: `NoNode`, `BadVersion`,
    /// `NotEmpty`, `BadArguments` (the root and `/zookeeper`), `InvalidPath`.
    pub fn delete(&self, path: &str, version: Option<i32>) -> Result<()> {
        api::delete(self, path, version)
    }

    /// Replaces a znode's data and returns its new stat; `version` `None` matches any.
    /// Errors: `NoNode`, `BadVersion`, `DataTooLarge`, `InvalidPath`.
    pub fn set_data(&self, path: &str, data: &[u8], version: Option<i32>) -> Result<Stat> {
        api::set_data(self, path, data, version)
    }

    /// Replaces the ACL of `path` and returns its new stat (`aversion` one higher);
    /// `version`, if given, must be the current `aversion`. As the super user: no ACL
    /// stops it. Errors: `NoNode`, `BadVersion`, `InvalidAcl`, `NoAuth` for
    /// `/zookeeper/config`.
    pub fn set_acl(&self, path: &str, acl: Vec<Acl>, version: Option<i32>) -> Result<Stat> {
        api::set_acl(self, path, acl, version)
    }

    /// Applies `ops` atomically: all of them or, with [`Error::MultiFailed`] naming the
    /// first failing operation, none.
    pub fn multi(&self, ops: Vec<Op>) -> Result<Vec<OpResult>> {
        api::multi(self, ops)
    }

    // ----- reads -----

    /// The stat of the znode at `path`, or `None` if there is none. Served locally.
    pub fn exists(&self, path: &str) -> Result<Option<Stat>> {
        self.read(path, |_, n| n.map(|n| n.stat()))
    }

    /// The data and stat of the znode at `path`. Served locally: it reflects every write
    /// this node has applied (including this node's own acknowledged writes).
    /// A znode with no data at all (created or set with `None`, as ZooKeeper's `null`)
    /// reads as empty here; [`Node::get_data_or_null`] tells the two apart.
    pub fn get_data(&self, path: &str) -> Result<(Vec<u8>, Stat)> {
        self.get_data_or_null(path)
            .map(|(data, stat)| (data.unwrap_or_default(), stat))
    }

    /// Like [`Node::get_data`], with `None` for a znode that has no data at all
    /// (ZooKeeper's `null`, see [`Op::with_null_data`]) and `Some` of empty data for one
    /// whose data is empty.
    pub fn get_data_or_null(&self, path: &str) -> Result<(Option<Vec<u8>>, Stat)> {
        self.read(path, |_, n| api::data_of(path, n))?
    }

    /// The ACL and stat of the znode at `path` (unredacted: the node is the super user).
    /// Served locally.
    pub fn get_acl(&self, path: &str) -> Result<(Vec<Acl>, Stat)> {
        self.shared.check_running()?;
        self.shared.check_read_path(path)?;
        crate::pipeline::acl_of(&self.shared.tree().read(), path, crate::acl::super_ids())
    }

    /// The names of the children of `path`, sorted. Served locally.
    pub fn get_children(&self, path: &str) -> Result<Vec<String>> {
        self.get_children_with_stat(path).map(|(c, _)| c)
    }

    /// The children of `path` and the parent's stat (ZooKeeper's getChildren2).
    pub fn get_children_with_stat(&self, path: &str) -> Result<(Vec<String>, Stat)> {
        self.read(path, |tree, n| api::children_of(tree, path, n))?
    }

    /// Waits until this node has applied every write committed in the ensemble before the
    /// call (raft ReadIndex through the leader), so the next local read sees them:
    /// ZooKeeper's `sync`.
    pub fn sync(&self, path: &str) -> Result<()> {
        self.shared.check_read_path(path)?;
        self.read_index().map(|_| ())
    }

    /// A linearizable read of `path`'s data: confirms with a quorum that the leader is
    /// current (ReadIndex), waits for this node to apply up to that point, then reads.
    pub fn get_data_linearizable(&self, path: &str) -> Result<(Vec<u8>, Stat)> {
        self.shared.check_read_path(path)?;
        self.read_index()?;
        self.get_data(path)
    }

    fn read_index(&self) -> Result<u64> {
        self.shared.read_index()
    }

    fn read<T>(
        &self,
        p: &str,
        f: impl FnOnce(&DataTree, Option<&crate::tree::Znode>) -> T,
    ) -> Result<T> {
        self.shared.check_running()?;
        self.shared.check_read_path(p)?;
        let tree = self.shared.tree().read();
        // Checked again under the lock: a node stopping meanwhile empties its tree.
        self.shared.check_running()?;
        Ok(f(&tree, tree.get(p).as_deref()))
    }

    /// Calls `f` with the node's applied tree (read-locked for the duration of `f`: keep it
    /// short). For inspection and tests, e.g. comparing replicas.
    pub fn with_tree<T>(&self, f: impl FnOnce(&DataTree) -> T) -> T {
        f(&self.shared.tree().read())
    }

    /// Stops the node: leaves the network, fails waiting requests with
    /// [`Error::Shutdown`], closes the database and, if no other node uses it, joins the
    /// worker pool. Idempotent; also done on drop. It only undoes what this node did: a
    /// handle dropped after a new node with the same id joined the same transport leaves
    /// the new node alone.
    pub fn shutdown(&self) {
        let first = self.shared.shutdown(self.timer);
        if let Some(tcp) = &self.tcp {
            tcp.shutdown();
        }
        if first {
            slog::info!(self.shared.logger(), "node shut down");
        }
        drop(self.pool.lock().take());
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shutdown();
    }
}
