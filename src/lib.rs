//! # zkraft
//!
//! An embeddable, replicated ZooKeeper-style znode store: link the crate, start a
//! [`Node`] in each process of your service, and they form an ensemble through raft
//! (the `raft` crate, raft-rs) with the raft log and the znode tree persisted in RocksDB.
//!
//! ```
//! use zkraft::{CreateMode, Node};
//!
//! let dir = tempfile::tempdir()?;
//! let node = Node::builder(1).data_dir(dir.path()).start()?;
//! node.create("/config", b"v1", CreateMode::Persistent)?;
//! let stat = node.set_data("/config", b"v2", Some(0))?; // compare-and-set on version 0
//! assert_eq!(stat.version, 1);
//! assert_eq!(node.get_data("/config")?.0, b"v2");
//! assert!(matches!(
//!     node.set_data("/config", b"v3", Some(0)),   // stale version
//!     Err(zkraft::Error::BadVersion { .. })
//! ));
//! node.shutdown();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! See `docs/architecture.md` for how the pieces fit, `docs/consistency.md` for the
//! guarantees and `docs/acl.md` for access control ([`acl`]: sessions are checked against
//! every znode's ACL; a `Node`'s own calls act as the super user).

#![warn(missing_docs)]

pub mod acl;
/// ZooKeeper's AdminServer commands as structured answers ([`Monitor::command`]).
pub mod admin {
    pub use crate::listener::commands::{primary_name, Value, COMMANDS};
}
mod api;
mod async_session;
mod codec;
pub mod command;
mod completion;
mod delivery;
pub mod error;
mod histogram;
mod host;
pub mod import;
mod latency;
// Hidden entry points for `cargo fuzz` (fuzz/, `./dev fuzz`): only with the `fuzzing`
// feature, never part of the API.
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod listener;
pub mod member;
mod node;
pub mod operator;
mod output;
pub mod path;
mod pipeline;
mod pool;
pub mod recipes;
mod reconfig;
mod replica;
mod sasl;
mod session;
mod storage;
mod time;
pub mod tls;
pub mod transport;
pub mod tree;
pub mod watch;
mod wire;

pub use acl::{Acl, Id};
pub use async_session::{AsyncSession, WatchFuture};
pub use command::{CreateMode, Op};
pub use completion::{Completion, Feed};
pub use error::{Error, Result};
pub use histogram::{Histogram, LATENCY_BUCKETS};
pub use listener::{
    ClientPort, ClientPortBuilder, DEFAULT_MAX_CLIENT_CONNECTIONS,
    DEFAULT_MAX_CLIENT_CONNECTIONS_PER_ADDRESS, DEFAULT_MAX_OUTSTANDING_PER_CONNECTION,
};
pub use member::{MemberRole, MemberSpec};
pub use node::{Monitor, Node, NodeBuilder};
pub use pipeline::{ReadOp, Reply, Request, Sink, MAX_OUTSTANDING};
pub use pool::Pool;
pub use reconfig::Reconfig;
pub use replica::{
    Config, Digest, FollowerProgress, Metrics, PeerTraffic, Role, CATCH_UP_ENTRIES,
    DEFAULT_MAX_REQUEST_SIZE, MAX_CLUSTER_ID_LEN, MAX_ELECTION_TICK, MAX_PEER_BACKLOG_BYTES,
    MAX_PEER_BACKLOG_ENVELOPES, MAX_REQUEST_SIZE_LIMIT, MAX_TICK_INTERVAL,
};
pub use sasl::SaslConfig;
pub use session::{OpenSession, Session, SessionBuilder, SessionState};
pub use tls::{ClientAuth, TlsConfig};
pub use transport::{Envelope, Inbox, LocalNetwork, RaftMessage, TcpTransport, Transport};
pub use tree::{EventType, OpResult, Stat, WatchedEvent};
pub use watch::{AddWatchMode, SessionEvent, Watcher, WatcherType};
