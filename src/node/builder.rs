//! [`NodeBuilder`]: gathers a [`Node`]'s configuration, transport, pool and logger; at
//! start the replica is opened from them (`crate::replica::open`), its host made above
//! it, and the replica run with the host as its observer.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use slog::Logger;

use super::Node;
use crate::error::Result;
use crate::host::Host;
use crate::pool::Pool;
use crate::replica::{Config, Observer};
use crate::transport::Transport;

/// Builds and starts a [`Node`].
///
/// ```no_run
/// use zkraft::{LocalNetwork, Node, Pool};
/// let net = LocalNetwork::new();
/// let pool = Pool::new(4)?;
/// let node = Node::builder(1)
///     .voters([1, 2, 3])
///     .data_dir("/var/lib/myservice/zkraft-1")
///     .transport(net.clone())
///     .pool(pool.clone())
///     .start()?;
/// # Ok::<(), zkraft::Error>(())
/// ```
pub struct NodeBuilder {
    config: Config,
    transport: Option<Arc<dyn Transport>>,
    pool: Option<Pool>,
    logger: Option<Logger>,
    /// Every member's peer address, for a TCP transport made at start.
    members: Vec<(u64, String)>,
    listen: Option<SocketAddr>,
    peer_tls: Option<crate::TlsConfig>,
}

impl NodeBuilder {
    /// A builder for node `id`, alone in its ensemble until [`NodeBuilder::voters`] says
    /// otherwise, with the defaults of [`Config`].
    pub fn new(id: u64) -> NodeBuilder {
        NodeBuilder {
            config: Config {
                id,
                voters: vec![id],
                ..Config::default()
            },
            transport: None,
            pool: None,
            logger: None,
            members: Vec::new(),
            listen: None,
            peer_tls: None,
        }
    }

    /// Joins an ensemble over TCP. `members` lists every member, this node included, as
    /// `(id, "host:port")` — ZooKeeper's `server.N` lines, whose full form
    /// (`host:port:electionPort:participant|observer;clientHost:clientPort`, see
    /// [`MemberSpec`](crate::MemberSpec)) is read too. The participants are the initial
    /// voters and the observers the initial learners; at start the node listens on its own
    /// entry (or on
    /// [`NodeBuilder::listen`]) and dials the others with a [`TcpTransport`](crate::TcpTransport) of its id and
    /// cluster id, which [`Node::shutdown`] closes.
    ///
    /// ```no_run
    /// use zkraft::Node;
    /// let node = Node::builder(1)
    ///     .cluster_id("orders")
    ///     .members([(1, "10.0.0.1:2701"), (2, "10.0.0.2:2701"), (3, "10.0.0.3:2701")])
    ///     .data_dir("/var/lib/orders/zkraft")
    ///     .start()?;
    /// # Ok::<(), zkraft::Error>(())
    /// ```
    pub fn members<A: Into<String>>(mut self, members: impl IntoIterator<Item = (u64, A)>) -> Self {
        self.members = members
            .into_iter()
            .map(|(id, addr)| (id, addr.into()))
            .collect();
        // A spec that does not parse is refused when the node starts.
        let observer = |spec: &str| {
            crate::MemberSpec::parse(spec).is_ok_and(|s| s.role == crate::MemberRole::Observer)
        };
        let (observers, participants): (Vec<_>, Vec<_>) =
            self.members.iter().partition(|(_, spec)| observer(spec));
        self.config.voters = participants.iter().map(|(id, _)| *id).collect();
        self.config.learners = observers.iter().map(|(id, _)| *id).collect();
        self
    }

    /// Starts a node that is not yet a member of its ensemble: its configuration starts
    /// empty, and it waits for a member to add it with
    /// [`Node::add_member`](crate::Node::add_member), then catches up through a snapshot.
    /// Give it the ensemble's [`NodeBuilder::members`] (itself included) so it can reach
    /// them. On a directory that already holds a configuration, this changes nothing.
    pub fn joining(mut self) -> Self {
        self.config.join = true;
        self
    }

    /// The address the TCP transport of [`NodeBuilder::members`] listens on, when not this
    /// node's own entry (e.g. `0.0.0.0:2701` behind an address the others dial).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = Some(addr);
        self
    }

    /// TLS with mutual authentication between the members of [`NodeBuilder::members`]
    /// (ZooKeeper's `sslQuorum`): every member must use it, with a certificate from an
    /// authority the others trust that names the address they dial it at.
    pub fn peer_tls(mut self, tls: crate::TlsConfig) -> Self {
        self.peer_tls = Some(tls);
        self
    }

    /// Most bytes of committed entries raft-rs hands over for apply in one `Ready` (see
    /// [`Config::max_committed_size_per_ready`]).
    pub fn max_committed_size_per_ready(mut self, bytes: u64) -> Self {
        self.config.max_committed_size_per_ready = bytes;
        self
    }

    /// Most bytes of entries in one append message to a follower (see
    /// [`Config::max_size_per_msg`]).
    pub fn max_size_per_msg(mut self, bytes: u64) -> Self {
        self.config.max_size_per_msg = bytes;
        self
    }

    /// Most append messages in flight to one follower (see
    /// [`Config::max_inflight_msgs`]).
    pub fn max_inflight_msgs(mut self, n: usize) -> Self {
        self.config.max_inflight_msgs = n;
        self
    }

    /// The initial voters of the ensemble (this node included).
    pub fn voters(mut self, voters: impl IntoIterator<Item = u64>) -> Self {
        self.config.voters = voters.into_iter().collect();
        self
    }

    /// Directory of the node's RocksDB database.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.data_dir = dir.into();
        self
    }

    /// Length of a raft tick (default 100 ms).
    pub fn tick_interval(mut self, d: Duration) -> Self {
        self.config.tick_interval = d;
        self
    }

    /// Election timeout in ticks (default 10).
    pub fn election_tick(mut self, ticks: usize) -> Self {
        self.config.election_tick = ticks;
        self
    }

    /// Heartbeat interval in ticks (default 2).
    pub fn heartbeat_tick(mut self, ticks: usize) -> Self {
        self.config.heartbeat_tick = ticks;
        self
    }

    /// The cluster's name, recorded in the data directory and checked at every start
    /// (default `"zkraft"`; see [`Config::cluster_id`]).
    pub fn cluster_id(mut self, cluster_id: impl Into<String>) -> Self {
        self.config.cluster_id = cluster_id.into();
        self
    }

    /// Compact the raft log after this many applied entries (default 100,000; see
    /// [`Config::snapshot_entries`]).
    pub fn snapshot_entries(mut self, entries: u64) -> Self {
        self.config.snapshot_entries = entries;
        self
    }

    /// Compact the raft log after this many bytes of entries (default 256 MiB; see
    /// [`Config::snapshot_log_bytes`]).
    pub fn snapshot_log_bytes(mut self, bytes: u64) -> Self {
        self.config.snapshot_log_bytes = bytes;
        self
    }

    /// Keeps up to `bytes` of znodes in memory in front of RocksDB (see
    /// [`Config::cache_bytes`]; default 16 MiB). The rest of the tree is read from disk
    /// (RocksDB's block cache) when needed.
    pub fn cache_bytes(mut self, bytes: u64) -> Self {
        self.config.cache_bytes = bytes;
        self
    }

    /// Largest request in bytes (default 1 MiB − 1, as ZooKeeper's `jute.maxbuffer`; see
    /// [`Config::max_request_size`]).
    pub fn max_request_size(mut self, bytes: usize) -> Self {
        self.config.max_request_size = bytes;
        self
    }

    /// Largest znode data in bytes (default 1 MiB − 1, at most the request size).
    pub fn max_data_size(mut self, bytes: usize) -> Self {
        self.config.max_data_size = bytes;
        self
    }

    /// Whether raft log writes are fsynced before acknowledging (default true).
    pub fn durable_writes(mut self, on: bool) -> Self {
        self.config.durable_writes = on;
        self
    }

    /// How long a call waits before [`Error::Timeout`](crate::Error::Timeout) (default 10 s).
    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.config.request_timeout = d;
        self
    }

    /// Default timeout of sessions opened on this node (default 10 s).
    pub fn session_timeout(mut self, d: Duration) -> Self {
        self.config.session_timeout = d;
        self
    }

    /// Bounds for negotiated session timeouts (default 4 s and 40 s, as ZooKeeper).
    pub fn session_timeout_bounds(mut self, min: Duration, max: Duration) -> Self {
        self.config.min_session_timeout = min;
        self.config.max_session_timeout = max;
        self
    }

    /// The super user's digest, `user:base64(sha1("user:password"))` as
    /// [`acl::digest`](crate::acl::digest) makes it (ZooKeeper's
    /// `zookeeper.DigestAuthenticationProvider.superDigest`): a session that
    /// authenticates as that user passes every ACL check. Node-local, like ZooKeeper's
    /// system property: give every member the same. See [`Config::super_digest`].
    ///
    /// ```
    /// use zkraft::{acl, Acl, CreateMode, Node};
    /// let dir = tempfile::tempdir().unwrap();
    /// let node = Node::builder(1)
    ///     .data_dir(dir.path())
    ///     .super_digest(acl::digest("super", "test"))
    ///     .start()
    ///     .unwrap();
    /// node.create_with_acl("/locked", b"", CreateMode::Persistent, Acl::read_unsafe()).unwrap();
    /// let admin = node.session().unwrap();
    /// admin.add_auth("digest", b"super:test").unwrap();
    /// admin.set_data("/locked", b"changed", None).unwrap(); // READ-only for everyone else
    /// ```
    pub fn super_digest(mut self, digest: impl Into<String>) -> Self {
        self.config.super_digest = Some(digest.into());
        self
    }

    /// How often the leader reaps empty containers and expired TTL znodes (default 60 s).
    pub fn reap_interval(mut self, d: Duration) -> Self {
        self.config.reap_interval = d;
        self
    }

    /// Whether ZooKeeper's `reconfig` request is served (default true; see
    /// [`Config::reconfig_enabled`](crate::Config::reconfig_enabled)).
    pub fn reconfig_enabled(mut self, enabled: bool) -> Self {
        self.config.reconfig_enabled = enabled;
        self
    }

    /// The transport to the other members. Without one, the node gets a private
    /// [`LocalNetwork`], which is enough for a single-node ensemble.
    pub fn transport(mut self, t: impl Transport) -> Self {
        self.transport = Some(Arc::new(t));
        self
    }

    /// The transport, already shared.
    pub fn transport_arc(mut self, t: Arc<dyn Transport>) -> Self {
        self.transport = Some(t);
        self
    }

    /// The worker pool that drives the node. Without one, the node starts a private pool
    /// of two workers, joined at shutdown.
    pub fn pool(mut self, pool: Pool) -> Self {
        self.pool = Some(pool);
        self
    }

    /// Where the node (and raft-rs) log. Default: discard.
    pub fn logger(mut self, logger: Logger) -> Self {
        self.logger = Some(logger);
        self
    }

    /// Opens (or creates) the data directory, recovers the raft log and the tree, joins the
    /// transport and starts ticking.
    ///
    /// Refused with [`Error::Config`](crate::Error::Config): an invalid configuration, and a
    /// data directory recorded for another node id or cluster id. A voter list that differs
    /// from the one persisted in the directory is not an error: the persisted one is used
    /// (it is the ensemble's replicated configuration), a warning is logged and
    /// [`Node::config`] reports it.
    pub fn start(self) -> Result<Node> {
        let opened = crate::replica::open(crate::replica::Parts {
            config: self.config,
            transport: self.transport,
            pool: self.pool,
            logger: self.logger,
            members: self.members,
            listen: self.listen,
            peer_tls: self.peer_tls,
        })?;
        // The host above the replica, told of every applied entry from the first.
        let host = Host::new(opened.shared.clone());
        let observer: Arc<dyn Observer> = host.clone();
        let timer = opened.run(Arc::downgrade(&observer))?;
        Ok(Node {
            shared: opened.shared,
            host,
            timer,
            pool: Mutex::new(Some(opened.pool)),
            tcp: opened.tcp,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::{CreateMode, Error, Node};

    #[test]
    fn a_log_that_starts_at_index_1_is_compacted_before_members_are_added() {
        // A directory from before bootstrap snapshots: a configuration but no compaction
        // point, so its log starts at index 1.
        let dir = tempfile::tempdir().unwrap();
        {
            let db = crate::storage::open_db(dir.path()).unwrap();
            let cs = raft::eraftpb::ConfState {
                voters: vec![1],
                ..Default::default()
            };
            let bytes = protobuf::Message::write_to_bytes(&cs).unwrap();
            db.put_cf(db.cf_handle("raft_state").unwrap(), b"conf_state", bytes)
                .unwrap();
        }
        let start = || {
            Node::builder(1)
                .data_dir(dir.path())
                .tick_interval(Duration::from_millis(20))
                .start()
                .unwrap()
        };
        let node = start();
        assert_eq!(node.metrics().log_first_index, 1);
        let refused = node.add_member(2, "127.0.0.1:1");
        assert!(
            matches!(refused, Err(Error::BadArguments(_))),
            "{refused:?}"
        );
        node.create("/a", b"", CreateMode::Persistent).unwrap();
        node.shutdown();
        drop(node);
        let node = start();
        assert!(node.metrics().log_first_index > 1, "compacted at start");
        assert!(node.exists("/a").unwrap().is_some());
    }
}
