//! The one error type of zkraft. Variants mirror Apache ZooKeeper's `KeeperException`
//! codes so that a front end speaking ZooKeeper's wire protocol can map them one to one
//! (see [`Error::code`]).

use std::io;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a zkraft call.
///
/// Logical errors (`NoNode`, `BadVersion`, …) are decided by the replicated state machine and
/// leave the tree unchanged. `ConnectionLoss`, `Timeout` and `NoQuorum` say that the outcome
/// of a write is *unknown* to the caller (as ZooKeeper's `ConnectionLoss`): the write may
/// still be applied later, exactly once, or never — and a write of a session is never
/// applied after a later write of the same session.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The znode (or the parent of a znode being created) does not exist.
    #[error("no node: {0}")]
    NoNode(String),
    /// A znode already exists at the path being created.
    #[error("node exists: {0}")]
    NodeExists(String),
    /// The expected version does not match the znode's version.
    #[error("bad version for {path}: expected {expected}, actual {actual}")]
    BadVersion {
        /// Path of the znode.
        path: String,
        /// Version the caller expected.
        expected: i32,
        /// Version the znode has.
        actual: i32,
    },
    /// The znode has children and cannot be deleted.
    #[error("node not empty: {0}")]
    NotEmpty(String),
    /// Ephemeral znodes cannot have children.
    #[error("ephemeral node cannot have children: {0}")]
    NoChildrenForEphemerals(String),
    /// The path breaks ZooKeeper's path rules.
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath {
        /// The rejected path.
        path: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// The data is larger than the node's configured maximum.
    #[error("data too large: {len} bytes, maximum {max}")]
    DataTooLarge {
        /// Size of the data given.
        len: usize,
        /// Configured maximum (`Config::max_data_size`).
        max: usize,
    },
    /// The whole request is larger than the node accepts. Nothing was proposed.
    #[error("request too large: {len} bytes, maximum {max} (Config::max_request_size)")]
    RequestTooLarge {
        /// Size of the request, measured as ZooKeeper's wire encoding of it.
        len: usize,
        /// Configured maximum (`Config::max_request_size`).
        max: usize,
    },
    /// The caller may not do this to the znode (ZooKeeper's NoAuth): the znode's ACL (or
    /// its parent's, for create and delete) grants none of the caller's identities the
    /// permission needed; or the change is to `/zookeeper/config`, which is read-only.
    #[error("not authorized: {0}")]
    NoAuth(String),
    /// An ACL given to a create or a set_acl is not acceptable (ZooKeeper's InvalidACL):
    /// an empty list, an unknown scheme, a malformed id, `world` with an id other than
    /// `anyone`, or the `auth` scheme from a caller with no authenticated identity.
    #[error("invalid ACL for {path}: {reason}")]
    InvalidAcl {
        /// The znode the ACL was meant for.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Authentication failed (ZooKeeper's AuthFailed): an unknown scheme, or credentials
    /// in the wrong form. Nothing was added to the session.
    #[error("authentication failed: {0}")]
    AuthFailed(String),
    /// An argument is invalid for the operation (for example deleting `/`).
    #[error("bad arguments: {0}")]
    BadArguments(String),
    /// The session has expired.
    #[error("session expired")]
    SessionExpired,
    /// The session now lives on another member (it was re-attached there): this handle,
    /// on its old host, can no longer be used (ZooKeeper's SessionMoved).
    #[error("session moved to another member")]
    SessionMoved,
    /// The session was closed by its owner.
    #[error("session closed")]
    SessionClosed,
    /// `remove_watches` found no watch of that kind on the path.
    #[error("no watcher on {0}")]
    NoWatcher(String),
    /// Dynamic reconfiguration is not enabled (ZooKeeper's ReconfigDisabled, what a
    /// ZooKeeper 3.8 server without `reconfigEnabled` answers a `reconfig` request):
    /// membership changes go through [`Node::add_member`](crate::Node::add_member) and
    /// [`Node::remove_member`](crate::Node::remove_member).
    #[error("reconfig is disabled")]
    ReconfigDisabled,
    /// A `reconfig` was meant for another configuration version than the current one
    /// (ZooKeeper answers it BadVersion).
    #[error("the configuration version is not {expected:#x}{}", .actual.map(|a| format!(" but {a:#x}")).unwrap_or_default())]
    BadConfigVersion {
        /// The version the caller gave.
        expected: i64,
        /// The version of the configuration, when known (not to a remote caller).
        actual: Option<u64>,
    },
    /// A write from a read-only session, on a member without a quorum serving read-only
    /// clients (ZooKeeper's NotReadOnly).
    #[error("not a read-only call: this member serves reads only")]
    NotReadOnly,
    /// Another membership change is not applied yet (ZooKeeper's ReconfigInProgress):
    /// nothing was proposed; try again once it is.
    #[error("another reconfiguration is in progress")]
    ReconfigInProgress,
    /// The new configuration has no quorum of members caught up (ZooKeeper's
    /// NewConfigNoQuorum): a participant being added had not caught up with the leader
    /// within the request timeout. It stays in the configuration as a learner and becomes a
    /// voter once it has.
    #[error("no quorum of the new configuration: {0}")]
    NewConfigNoQuorum(String),
    /// One operation of a `multi` failed; nothing of the `multi` was applied.
    #[error("multi failed at operation {index}: {source}")]
    MultiFailed {
        /// Index of the first failing operation.
        index: usize,
        /// Why it failed.
        source: Box<Error>,
    },
    /// No leader is known or the node cannot reach a quorum; the request was not proposed.
    #[error("no quorum: {0}")]
    NoQuorum(String),
    /// The request's fate became unknown before it was answered (ZooKeeper's
    /// ConnectionLoss): the raft leader changed while it was in flight, or an earlier
    /// request of its session was lost. It may have been applied — then before any later
    /// request of its session — or never will be. Answered at once, not after the request
    /// timeout.
    #[error("connection loss: {0}")]
    ConnectionLoss(String),
    /// The request did not complete within the request timeout. Its outcome is unknown.
    #[error("request timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// The node is shutting down or has shut down.
    #[error("node is shut down")]
    Shutdown,
    /// The storage engine failed.
    #[error("storage error: {0}")]
    Storage(String),
    /// An I/O error outside the storage engine.
    #[error("i/o error: {0}")]
    Io(String),
    /// A replicated command or persisted record could not be decoded.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// raft-rs reported an error.
    #[error("raft error: {0}")]
    Raft(String),
}

impl Error {
    /// The numeric code ZooKeeper uses for the same condition (`KeeperException.Code`).
    pub fn code(&self) -> i32 {
        match self {
            Error::NoNode(_) => -101,
            Error::NodeExists(_) => -110,
            Error::BadVersion { .. } | Error::BadConfigVersion { .. } => -103,
            Error::NotEmpty(_) => -111,
            Error::NoChildrenForEphemerals(_) => -108,
            Error::InvalidPath { .. }
            | Error::DataTooLarge { .. }
            | Error::RequestTooLarge { .. }
            | Error::BadArguments(_) => -8,
            Error::NoAuth(_) => -102,
            Error::InvalidAcl { .. } => -114,
            Error::AuthFailed(_) => -115,
            Error::SessionExpired => -112,
            Error::SessionClosed => -112,
            Error::SessionMoved => -118,
            Error::NoWatcher(_) => -121,
            Error::ReconfigDisabled => -123,
            Error::ReconfigInProgress => -14,
            Error::NotReadOnly => -119,
            Error::NewConfigNoQuorum(_) => -13,
            Error::MultiFailed { source, .. } => source.code(),
            Error::NoQuorum(_) | Error::Shutdown | Error::ConnectionLoss(_) => -4,
            Error::Timeout(_) => -7,
            Error::Storage(_) | Error::Io(_) | Error::Corrupt(_) | Error::Raft(_) => -1,
            Error::Config(_) => -8,
        }
    }

    /// True when the outcome is known and retrying cannot help: the request was refused
    /// before it was proposed (bad path, too large) or decided by the state machine (applied
    /// and rejected, changing nothing). False when it comes from the node or the network.
    pub fn is_logical(&self) -> bool {
        matches!(
            self,
            Error::NoNode(_)
                | Error::NodeExists(_)
                | Error::BadVersion { .. }
                | Error::BadConfigVersion { .. }
                | Error::NotEmpty(_)
                | Error::NoChildrenForEphemerals(_)
                | Error::InvalidPath { .. }
                | Error::DataTooLarge { .. }
                | Error::RequestTooLarge { .. }
                | Error::NoAuth(_)
                | Error::InvalidAcl { .. }
                | Error::AuthFailed(_)
                | Error::BadArguments(_)
                | Error::MultiFailed { .. }
                | Error::SessionMoved
                | Error::ReconfigDisabled
                | Error::ReconfigInProgress
                | Error::NotReadOnly
        )
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e.to_string())
    }
}

impl From<raft::Error> for Error {
    fn from(e: raft::Error) -> Self {
        Error::Raft(e.to_string())
    }
}
