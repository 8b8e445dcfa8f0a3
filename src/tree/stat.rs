//! [`Stat`]: the metadata ZooKeeper reports for a znode.

/// A znode's metadata, field for field as ZooKeeper's `Stat`.
///
/// Every zxid is the raft log index of the entry that made the change, so it is identical
/// on every replica and grows monotonically. Times are milliseconds since the Unix epoch
/// taken from the proposing node's clock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Stat {
    /// zxid of the change that created the znode.
    pub czxid: i64,
    /// zxid of the change that last modified the znode's data.
    pub mzxid: i64,
    /// Time the znode was created.
    pub ctime: i64,
    /// Time the znode's data was last modified.
    pub mtime: i64,
    /// Number of changes to the data.
    pub version: i32,
    /// Number of changes to the children (creations plus deletions).
    pub cversion: i32,
    /// Number of changes to the ACL.
    pub aversion: i32,
    /// Session id of the owner if the znode is ephemeral, else 0.
    pub ephemeral_owner: i64,
    /// Length of the data.
    pub data_length: i32,
    /// Number of children.
    pub num_children: i32,
    /// zxid of the change that last added or removed a child.
    pub pzxid: i64,
}
