//! Everything zkraft keeps on disk, in one RocksDB database per node with four column
//! families:
//!
//! | column family | key | value |
//! |---|---|---|
//! | `raft_log` | entry index (u64, big-endian) | `eraftpb::Entry` (protobuf) |
//! | `raft_state` | `hard_state`, `conf_state` | protobuf |
//! | `tree` | znode path | encoded znode (stat fields + data) |
//! | `sessions` | session id (i64, big-endian) | timeout, host, password |
//! | `meta` | `applied_index`, `node_id`, `cluster_id` | u64, u64, bytes |
//!
//! [`RaftStorage`] is the `raft::Storage` over the first two; [`TreeStore`] loads the tree
//! and writes each apply batch (tree delta + applied index + commit) atomically.

mod identity;
mod raft_log;
mod tree_store;

use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamilyDescriptor, Options, DB};

pub(crate) use identity::{check_or_record as check_identity, Identity};
pub use raft_log::RaftStorage;
pub use tree_store::TreeStore;

use crate::error::Result;

pub(crate) const CF_RAFT_LOG: &str = "raft_log";
pub(crate) const CF_RAFT_STATE: &str = "raft_state";
pub(crate) const CF_TREE: &str = "tree";
pub(crate) const CF_SESSIONS: &str = "sessions";
pub(crate) const CF_META: &str = "meta";

/// Opens (creating if needed) the node's RocksDB database in `dir`.
pub fn open_db(dir: &Path) -> Result<Arc<DB>> {
    std::fs::create_dir_all(dir)?;
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    let cfs = [CF_RAFT_LOG, CF_RAFT_STATE, CF_TREE, CF_SESSIONS, CF_META]
        .into_iter()
        .map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
    Ok(Arc::new(DB::open_cf_descriptors(&opts, dir, cfs)?))
}

pub(crate) fn cf<'a>(db: &'a DB, name: &str) -> &'a rocksdb::ColumnFamily {
    db.cf_handle(name)
        .unwrap_or_else(|| panic!("column family {name} is created at open"))
}
