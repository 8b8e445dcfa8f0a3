//! Everything zkraft keeps on disk, in one RocksDB database per node with these column
//! families:
//!
//! | column family | key | value |
//! |---|---|---|
//! | `raft_log` | entry index (u64, big-endian) | `eraftpb::Entry` (protobuf) |
//! | `raft_state` | `hard_state`, `conf_state`, `compacted` | protobuf; index + term |
//! | `znodes`, `znodes.1` | parent path, `\0`, name (see `layout`) | encoded znode (stat fields, child count, data, ACL) |
//! | `owners`, `owners.1` | path of an ephemeral, container or TTL znode | its owner (i64) |
//! | `sessions`, `sessions.1` | session id (i64, big-endian) | timeout, host, password |
//! | `meta` | `applied_index`, `tree_slot`, `tree_totals.N`, `tree_format`, `node_id`, `cluster_id`, `peer_addr.ID` | u64, u8, count + digest + size, u8, u64, bytes, `host:port` |
//! | `tree`, `tree.1` | (empty: path-keyed znodes of directories written before `znodes`, migrated at open) | |
//!
//! [`RaftStorage`] is the `raft::Storage` over the first two; [`TreeStore`] opens the tree
//! over the database (its znodes are read through a cache, not loaded: `db_store`) and
//! writes each apply batch (tree delta + applied index + commit) atomically.
//!
//! The tree lives in one of two *slots* (`znodes`+`owners`+`sessions`, or the same with
//! `.1`); `meta/tree_slot` names the live one. A snapshot received from the leader is staged
//! into the other slot, chunk by chunk, and installed by one synced batch that flips
//! `tree_slot` together with the applied index and the raft compaction point: a crash
//! at any instant leaves either the old state or the new one, never a mix.
//!
//! RocksDB's write-ahead log is capped (`max_total_wal_size`, 32 MiB): the small column
//! families written with every batch would otherwise never flush and pin every log file.
//! The raft log's memtable is 8 MiB, so compacted entries leave memory and the log sooner.
//!
//! RocksDB's memory is bounded as the tree's is: memtables of 8 MiB (raft log, znodes) and
//! 2 MiB (the rest), 16 MiB for all of them together (`db_write_buffer_size`: the largest
//! is flushed past it), and one block cache of 8 MiB for every column family (index and
//! filter blocks are held apart, about 1.3 bytes per znode). The znode cache in front of it
//! serves the hot znodes; the block cache serves what falls out of it without a read of
//! the file (which the kernel's page cache, not counted in the process, usually holds).

mod db_store;
mod identity;
mod layout;
mod members;
mod raft_log;
mod seed;
mod snapshot;
mod tree_store;

use std::path::Path;
use std::sync::Arc;

use rocksdb::{BlockBasedOptions, Cache, ColumnFamilyDescriptor, Options, DB};

pub(crate) use identity::{check_or_record as check_identity, Identity};
pub(crate) use members::{addresses as member_addresses, record_address_into};
pub use raft_log::RaftStorage;
pub(crate) use seed::{write as write_seed, SeedTarget};
pub(crate) use snapshot::read_snapshot;
pub use tree_store::TreeStore;
pub(crate) use tree_store::DEFAULT_CACHE_BYTES;

use crate::error::Result;

pub(crate) const CF_RAFT_LOG: &str = "raft_log";
pub(crate) const CF_RAFT_STATE: &str = "raft_state";
pub(crate) const CF_TREE: &str = "tree";
pub(crate) const CF_SESSIONS: &str = "sessions";
pub(crate) const CF_META: &str = "meta";
pub(crate) const CF_TREE_1: &str = "tree.1";
pub(crate) const CF_SESSIONS_1: &str = "sessions.1";
pub(crate) const CF_ZNODES: &str = "znodes";
pub(crate) const CF_ZNODES_1: &str = "znodes.1";
pub(crate) const CF_OWNERS: &str = "owners";
pub(crate) const CF_OWNERS_1: &str = "owners.1";

/// Total size of write-ahead log files after which RocksDB flushes the column families
/// that hold the oldest one, so the log on disk stays bounded.
const MAX_TOTAL_WAL_SIZE: u64 = 32 * 1024 * 1024;
/// Memtable size of the raft log's column family: its entries are deleted by compaction
/// soon after they are written, so a smaller memtable flushes (and frees the
/// write-ahead log it pins) sooner.
const RAFT_LOG_WRITE_BUFFER: usize = 8 * 1024 * 1024;
/// Memtable size of the znodes' column families: a tree written faster than it flushes
/// holds at most about this much of it in memory.
const ZNODES_WRITE_BUFFER: usize = 8 * 1024 * 1024;
/// RocksDB's block cache, shared by every column family: where a znode not in the tree's
/// own cache is read from without touching the disk. Index and filter blocks stay out of
/// it, always in memory (about 1.3 bytes per znode): a create's lookup of a path that does
/// not exist must not read them back from disk, as it did when they shared the cache.
const BLOCK_CACHE_BYTES: usize = 8 * 1024 * 1024;
/// Memtable size of every other column family (sessions, owners, meta, raft state): small
/// records rewritten with every batch.
const SMALL_WRITE_BUFFER: usize = 2 * 1024 * 1024;
/// All memtables together: past this RocksDB flushes the largest, so the memory they
/// take stays bounded however the writes are spread.
const ALL_WRITE_BUFFERS: usize = 16 * 1024 * 1024;

/// The column families of one tree slot.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot {
    /// Znodes by `layout` key.
    pub znodes: &'static str,
    /// Sessions by id.
    pub sessions: &'static str,
    /// Owners of ephemeral, container and TTL znodes, by path.
    pub owners: &'static str,
}

/// The column families of tree slot `slot` (0 or 1).
pub(crate) fn slot_cfs(slot: u8) -> Slot {
    if slot == 0 {
        Slot {
            znodes: CF_ZNODES,
            sessions: CF_SESSIONS,
            owners: CF_OWNERS,
        }
    } else {
        Slot {
            znodes: CF_ZNODES_1,
            sessions: CF_SESSIONS_1,
            owners: CF_OWNERS_1,
        }
    }
}

/// Opens (creating if needed) the node's RocksDB database in `dir`.
///
/// A directory already open (by this process or another) is refused with
/// [`Error::Config`](crate::Error::Config): RocksDB's lock file guards it, so two nodes can
/// never share one directory.
pub fn open_db(dir: &Path) -> Result<Arc<DB>> {
    std::fs::create_dir_all(dir)?;
    open_db_with(dir, Options::default())
}

/// Opens a node's database in RocksDB's in-memory environment (its own, fresh): the
/// same column families and settings; nothing but its empty directory is on disk. For
/// the tests of the replica alone (see `Config::in_memory`).
pub(crate) fn open_db_in_memory(name: &Path) -> Result<Arc<DB>> {
    let env = rocksdb::Env::mem_env().db()?;
    let mut opts = Options::default();
    opts.set_env(&env);
    // The memory environment resolves no relative path (GetAbsolutePath); it still makes
    // the (empty) directories on disk.
    open_db_with(&std::path::absolute(name)?, opts)
}

fn open_db_with(dir: &Path, mut opts: Options) -> Result<Arc<DB>> {
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_max_total_wal_size(MAX_TOTAL_WAL_SIZE);
    // RocksDB's own info log: a few bounded files, not one per start forever.
    opts.set_keep_log_file_num(4);
    opts.set_max_log_file_size(16 * 1024 * 1024);
    opts.set_db_write_buffer_size(ALL_WRITE_BUFFERS);
    // One flush and three compactions at once (RocksDB's default is one of each): under
    // a long create load the compactions of the znodes, of the raft log and of the small
    // column families otherwise queue behind one another and writes stall on level 0.
    opts.set_max_background_jobs(4);
    let block_cache = Cache::new_lru_cache(BLOCK_CACHE_BYTES).db()?;
    let cfs = [
        CF_RAFT_LOG,
        CF_RAFT_STATE,
        CF_TREE,
        CF_SESSIONS,
        CF_META,
        CF_TREE_1,
        CF_SESSIONS_1,
        CF_ZNODES,
        CF_ZNODES_1,
        CF_OWNERS,
        CF_OWNERS_1,
    ]
    .into_iter()
    .map(|name| {
        let mut cf_opts = Options::default();
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&block_cache);

        match name {
            CF_RAFT_LOG => {
                cf_opts.set_write_buffer_size(RAFT_LOG_WRITE_BUFFER);
                // Entries are deleted soon after they are applied: compressing them on
                // every flush and compaction is work thrown away.
                cf_opts.set_compression_type(rocksdb::DBCompressionType::None);
            }
            CF_ZNODES | CF_ZNODES_1 => {
                cf_opts.set_write_buffer_size(ZNODES_WRITE_BUFFER);
                // A create looks its path up first, and usually finds nothing: the
                // filters answer that without reading a block or walking the memtable's
                // skip list (a tenth of the memtable's size goes to its own filter).
                table.set_bloom_filter(10.0, false);
                cf_opts.set_memtable_prefix_bloom_ratio(0.1);
                cf_opts.set_memtable_whole_key_filtering(true);
            }
            _ => cf_opts.set_write_buffer_size(SMALL_WRITE_BUFFER),
        }
        cf_opts.set_block_based_table_factory(&table);
        ColumnFamilyDescriptor::new(name, cf_opts)
    });
    DB::open_cf_descriptors(&opts, dir, cfs)
        .map(Arc::new)
        .map_err(|e| {
            let msg = e.to_string();
            if msg.contains("lock") || msg.contains("LOCK") {
                crate::Error::Config(format!(
                    "data directory {} is in use by another node (RocksDB lock): {msg}",
                    dir.display()
                ))
            } else {
                crate::Error::Storage(e.into_string())
            }
        })
}

/// RocksDB's errors as [`Error::Storage`](crate::Error::Storage). There is no `From`
/// impl: the pinned crate's error type stays out of zkraft's public API.
pub(crate) trait Db<T> {
    /// The result, its error as `Error::Storage`.
    fn db(self) -> crate::Result<T>;
}

impl<T> Db<T> for std::result::Result<T, rocksdb::Error> {
    fn db(self) -> crate::Result<T> {
        self.map_err(|e| crate::Error::Storage(e.into_string()))
    }
}

pub(crate) fn cf<'a>(db: &'a DB, name: &str) -> &'a rocksdb::ColumnFamily {
    db.cf_handle(name)
        .unwrap_or_else(|| panic!("column family {name} is created at open"))
}
