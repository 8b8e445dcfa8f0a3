//! [`TreeStore`]: the znode tree and the applied index in RocksDB.
//!
//! The database is the tree: a node opens a [`DataTree`] over the live slot's `znodes`
//! column family ([`DbStore`], a bounded cache in front of it) and loads only what is
//! small — sessions, the owner index (ephemerals, containers, TTL znodes) and the totals
//! (znode count, digest, data size) persisted beside them — so a restart does not read
//! the znodes. Every apply batch writes the znodes, sessions and owner entries the batch
//! touched, the totals, the new applied index and the commit index in one `WriteBatch`,
//! so after a crash the persisted tree is exactly the state after the persisted applied
//! index: restart neither re-applies nor skips an entry.
//!
//! A snapshot is staged into the other slot, then *finished* before it is installed —
//! two passes over the staged keys that count each znode's children and sum the totals
//! and the owner index, holding nothing of the tree in memory — and installed by one
//! synced batch that flips the live slot.
//!
//! A directory written before znodes were keyed by `layout` (path-keyed `tree` column
//! families, records without a child count) is migrated once, when it is opened.

use super::Db;
use std::sync::Arc;

use raft::eraftpb::ConfState;
use rocksdb::{IteratorMode, ReadOptions, WriteBatch, WriteOptions, DB};

use super::db_store::DbStore;
use super::layout::{children_range, key, path_of};
use super::members::{addresses, record_address_into, MAX_ADDRESS_LEN};
use super::{cf, slot_cfs, RaftStorage, CF_META, CF_TREE, CF_TREE_1};
use crate::acl;
use crate::codec::{Reader, Writer};
use crate::error::{Error, Result};
use crate::path;
use crate::tree::{DataTree, Dirty, SessionRecord, Znode, CONFIG_PATH};

pub(crate) const KEY_APPLIED: &[u8] = b"applied_index";
pub(crate) const KEY_TREE_SLOT: &[u8] = b"tree_slot";
/// Which layout the tree is in: absent in a directory of path-keyed `tree` column
/// families, [`TREE_FORMAT`] once migrated.
const KEY_TREE_FORMAT: &[u8] = b"tree_format";
const TREE_FORMAT: u8 = 2;
const ZNODE_FORMAT_V1: u8 = 1;
/// Adds the ACL (a record of the first format has the open ACL).
const ZNODE_FORMAT_V2: u8 = 2;
/// Adds the child count and the data's hash (records of earlier formats are counted by
/// the migration or a snapshot's finishing pass).
const ZNODE_FORMAT_V3: u8 = 3;
/// How a record of the second format holds the ACL: the open ACL as one byte.
const ACL_OPEN: u8 = 0;
const ACL_LIST: u8 = 1;
const SESSION_FORMAT_V1: u8 = 1;
/// Adds the session order (epoch, last sequence number applied).
const SESSION_FORMAT_V2: u8 = 2;
/// Records per batch when a pass rewrites a slot.
const PASS_BATCH: usize = 10_000;
/// The znode cache of a store built without [`TreeStore::with_cache`].
pub(crate) const DEFAULT_CACHE_BYTES: u64 = 16 << 20;

/// Durable home of the znode tree.
pub struct TreeStore {
    db: Arc<DB>,
    /// Which tree slot is live (see the module docs of `storage`).
    slot: u8,
    /// Bytes of znodes a tree opened here caches.
    cache_bytes: u64,
}

/// Reads the applied index from `meta` (through `get`, a database or a snapshot).
pub(crate) fn read_applied(value: Option<Vec<u8>>) -> Result<u64> {
    match value {
        Some(b) => Ok(u64::from_le_bytes(
            b.as_slice()
                .try_into()
                .map_err(|_| Error::Corrupt("applied index".into()))?,
        )),
        None => Ok(0),
    }
}

/// Reads the live tree slot from `meta`.
pub(crate) fn read_slot(value: Option<Vec<u8>>) -> Result<u8> {
    match value.as_deref() {
        None | Some([0]) => Ok(0),
        Some([1]) => Ok(1),
        Some(other) => Err(Error::Corrupt(format!("tree slot {other:?}"))),
    }
}

/// The totals of a slot (znode count, znodes' digest, data size), persisted beside it.
fn totals_key(slot: u8) -> Vec<u8> {
    format!("tree_totals.{slot}").into_bytes()
}

/// Marks totals whose digest leaves `/zookeeper/config` out (earlier versions wrote
/// three numbers, their digest counting it).
const TOTALS_WITHOUT_CONFIG: u8 = 1;

fn encode_totals((count, digest, size): (u64, u64, u64)) -> Vec<u8> {
    let mut w = Writer::with_capacity(25);
    w.u64(count);
    w.u64(digest);
    w.u64(size);
    w.u8(TOTALS_WITHOUT_CONFIG);
    w.finish()
}

/// Count, digest and data size, and whether the digest leaves `/zookeeper/config` out.
fn decode_totals(b: &[u8]) -> Result<(u64, u64, u64, bool)> {
    let mut r = Reader::new(b);
    let (count, digest, size) = (r.u64()?, r.u64()?, r.u64()?);
    let without_config = match b.len() {
        24 => false,
        _ => match r.u8()? {
            TOTALS_WITHOUT_CONFIG => true,
            v => return Err(Error::Corrupt(format!("tree totals of format {v}"))),
        },
    };
    r.finish()?;
    Ok((count, digest, size, without_config))
}

impl TreeStore {
    /// Wraps the node's database (migrating a tree of an earlier layout first).
    pub fn new(db: Arc<DB>) -> Result<TreeStore> {
        let slot = read_slot(db.get_cf(cf(&db, CF_META), KEY_TREE_SLOT).db()?)?;
        let store = TreeStore {
            db,
            slot,
            cache_bytes: DEFAULT_CACHE_BYTES,
        };
        store.migrate()?;
        Ok(store)
    }

    /// Trees opened here cache up to `bytes` of znodes.
    pub(crate) fn with_cache(mut self, bytes: u64) -> TreeStore {
        self.cache_bytes = bytes;
        self
    }

    /// The node's database.
    pub(crate) fn db(&self) -> &Arc<DB> {
        &self.db
    }

    /// Opens the tree and the index it reflects, reading no znode. A fresh database
    /// yields ZooKeeper's initial tree at index 0.
    pub fn load(&self) -> Result<(DataTree, u64)> {
        let applied = read_applied(self.db.get_cf(cf(&self.db, CF_META), KEY_APPLIED).db()?)?;
        let mut tree = self.open_slot(self.slot)?;
        tree.set_zxid(applied);
        Ok((tree, applied))
    }

    /// The tree of slot `slot`: its znodes served from the database, its sessions,
    /// owner index and totals read back.
    fn open_slot(&self, slot: u8) -> Result<DataTree> {
        let cfs = slot_cfs(slot);
        let totals = self
            .db
            .get_cf(cf(&self.db, CF_META), totals_key(slot))
            .db()?;
        let Some(totals) = totals else {
            // Nothing written yet: ZooKeeper's initial tree, written by the first batch.
            let store = DbStore::new(self.db.clone(), cfs.znodes, 0, self.cache_bytes);
            return Ok(DataTree::new_in(Box::new(store)));
        };
        let (count, digest, size, without_config) = decode_totals(&totals)?;
        let store = DbStore::new(self.db.clone(), cfs.znodes, count, self.cache_bytes);
        let mut tree = DataTree::with_store(Box::new(store));
        let digest = match tree.get(CONFIG_PATH) {
            // Written by an earlier version, whose digest counted `/zookeeper/config`.
            Some(n) if !without_config => {
                digest.wrapping_sub(crate::tree::znode_digest_counting_config(CONFIG_PATH, &n))
            }
            _ => digest,
        };
        tree.restore_totals(digest, size);
        for item in self
            .db
            .iterator_cf(cf(&self.db, cfs.sessions), IteratorMode::Start)
        {
            let (k, v) = item.db()?;
            tree.insert_session(decode_session_key(&k)?, decode_session(&v)?);
        }
        for item in self
            .db
            .iterator_cf(cf(&self.db, cfs.owners), IteratorMode::Start)
        {
            let (k, v) = item.db()?;
            let p = std::str::from_utf8(&k)
                .map_err(|_| Error::Corrupt("owner index path is not utf-8".into()))?;
            tree.index_loaded(p, decode_owner(&v)?);
        }
        if let Some(e) = tree.take_store_error() {
            return Err(e);
        }
        Ok(tree)
    }

    /// Empties the slot that is not live, to stage a snapshot into it.
    pub(crate) fn clear_staging(&self) -> Result<()> {
        let mut batch = WriteBatch::default();
        clear_slot_into(&self.db, &mut batch, 1 - self.slot);
        self.commit(batch)
    }

    /// Writes one chunk of a snapshot being received into the staging slot. Every record
    /// is decoded first, so a malformed chunk is refused whole and never installed.
    /// Returns the member addresses the chunk carries (installed with the snapshot).
    pub(crate) fn stage_chunk(&self, chunk: &[u8]) -> Result<Vec<(u64, String)>> {
        let mut peers = Vec::new();
        let cfs = slot_cfs(1 - self.slot);
        let (znodes_cf, sessions_cf) = (cf(&self.db, cfs.znodes), cf(&self.db, cfs.sessions));
        let mut batch = WriteBatch::default();
        let mut r = Reader::new(chunk);
        while !r.is_empty() {
            let kind = r.u8()?;
            let key_bytes = r.bytes()?;
            let value = r.bytes()?;
            match kind {
                RECORD_ZNODE => {
                    let p = std::str::from_utf8(&key_bytes)
                        .ok()
                        .filter(|p| *p == "/" || path::validate(p).is_ok())
                        .ok_or_else(|| Error::Corrupt("snapshot znode path".into()))?;
                    decode_znode(&value)?;
                    batch.put_cf(znodes_cf, key(p), value);
                }
                RECORD_SESSION => {
                    decode_session_key(&key_bytes)?;
                    decode_session(&value)?;
                    batch.put_cf(sessions_cf, key_bytes, value);
                }
                RECORD_PEER => {
                    let id = <[u8; 8]>::try_from(key_bytes.as_slice())
                        .map(u64::from_be_bytes)
                        .map_err(|_| Error::Corrupt("snapshot member id".into()))?;
                    let addr = String::from_utf8(value)
                        .ok()
                        .filter(|a| a.len() <= MAX_ADDRESS_LEN)
                        .ok_or_else(|| Error::Corrupt("snapshot member address".into()))?;
                    peers.push((id, addr));
                }
                other => return Err(Error::Corrupt(format!("snapshot record kind {other}"))),
            }
        }
        self.commit(batch)?;
        Ok(peers)
    }

    /// Makes the staged slot live at (`index`, `term`, `cs`): the staged slot is
    /// finished (children counted, totals and owner index derived), then one synced
    /// batch flips the slot and sets the applied index, the compaction point, the commit
    /// index and the configuration. Returns the tree of the new slot; the old slot stays
    /// as it was until [`TreeStore::clear_staging`] (whoever compares the two trees does
    /// so first).
    pub(crate) fn install(
        &mut self,
        raft: &RaftStorage,
        (index, term, cs): (u64, u64, &ConfState),
        ready_hs: Option<&raft::eraftpb::HardState>,
        peers: &[(u64, String)],
    ) -> Result<DataTree> {
        let staged = 1 - self.slot;
        finish_slot(&self.db, staged)?;
        let mut batch = WriteBatch::default();
        let meta = cf(&self.db, CF_META);
        batch.put_cf(meta, KEY_TREE_SLOT, [staged]);
        batch.put_cf(meta, KEY_APPLIED, index.to_le_bytes());
        // The snapshot's member addresses replace the ones recorded here.
        for (id, _) in addresses(&self.db)? {
            record_address_into(&self.db, &mut batch, id, None);
        }
        for (id, addr) in peers {
            record_address_into(&self.db, &mut batch, *id, Some(addr));
        }
        let hs = raft.install_into(&mut batch, (index, term, cs), ready_hs)?;
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.db.write_opt(batch, &opts).db()?;
        raft.snapshot_installed(index, term, cs.clone(), hs);
        self.slot = staged;
        let mut tree = self.open_slot(staged)?;
        tree.set_zxid(index);
        Ok(tree)
    }

    /// Adds to `batch` the current value of every znode, session and owner entry in
    /// `dirty` (deleting the ones that no longer exist), the tree's totals and the
    /// applied index.
    pub(crate) fn write_into(
        &self,
        batch: &mut WriteBatch,
        tree: &DataTree,
        dirty: &Dirty,
        applied: u64,
    ) {
        let cfs = slot_cfs(self.slot);
        let znodes_cf = cf(&self.db, cfs.znodes);
        for p in &dirty.paths {
            match tree.get(p) {
                Some(node) => batch.put_cf(znodes_cf, key(p), encode_znode(&node)),
                None => batch.delete_cf(znodes_cf, key(p)),
            }
        }
        let owners_cf = cf(&self.db, cfs.owners);
        for p in &dirty.owners {
            match tree.get(p).map(|n| n.ephemeral_owner) {
                Some(owner) if owner != 0 => {
                    batch.put_cf(owners_cf, p.as_bytes(), owner.to_le_bytes())
                }
                _ => batch.delete_cf(owners_cf, p.as_bytes()),
            }
        }
        let sessions_cf = cf(&self.db, cfs.sessions);
        for id in &dirty.sessions {
            match tree.sessions().get(id) {
                Some(rec) => batch.put_cf(sessions_cf, id.to_be_bytes(), encode_session(rec)),
                None => batch.delete_cf(sessions_cf, id.to_be_bytes()),
            }
        }
        let meta = cf(&self.db, CF_META);
        batch.put_cf(meta, totals_key(self.slot), encode_totals(tree.totals()));
        batch.put_cf(meta, KEY_APPLIED, applied.to_le_bytes());
    }

    /// Writes a batch built with [`TreeStore::write_into`]. It is not synced on its own: the
    /// raft log already holds every applied entry durably, and RocksDB's single write-ahead
    /// log keeps this batch ordered before the next synced raft write.
    pub fn commit(&self, batch: WriteBatch) -> Result<()> {
        let mut opts = WriteOptions::default();
        opts.set_sync(false);
        self.db.write_opt(batch, &opts).db()?;
        Ok(())
    }

    /// Moves a tree of the path-keyed layout into `znodes` once: the records are
    /// rewritten under their new keys, then finished as a snapshot is; the format mark is
    /// written last, so a crash midway starts the migration over.
    fn migrate(&self) -> Result<()> {
        let meta = cf(&self.db, CF_META);
        if self.db.get_cf(meta, KEY_TREE_FORMAT).db()?.as_deref() == Some(&[TREE_FORMAT]) {
            return Ok(());
        }
        let old = if self.slot == 0 { CF_TREE } else { CF_TREE_1 };
        let cfs = slot_cfs(self.slot);
        // What a migration cut short wrote (the sessions are kept: their layout is the
        // same in both formats).
        let mut batch = WriteBatch::default();
        for name in [cfs.znodes, cfs.owners] {
            batch.delete_range_cf(cf(&self.db, name), &[][..], &PAST_EVERY_KEY[..]);
        }
        batch.delete_cf(meta, totals_key(self.slot));
        self.commit(batch)?;
        let znodes_cf = cf(&self.db, cfs.znodes);
        let mut batch = WriteBatch::default();
        let mut any = false;
        for item in self.db.iterator_cf(cf(&self.db, old), IteratorMode::Start) {
            let (k, v) = item.db()?;
            let p = std::str::from_utf8(&k)
                .map_err(|_| Error::Corrupt("znode path is not utf-8".into()))?;
            batch.put_cf(znodes_cf, key(p), v);
            any = true;
            if batch.len() >= PASS_BATCH {
                self.commit(std::mem::take(&mut batch))?;
            }
        }
        self.commit(batch)?;
        if any {
            finish_slot(&self.db, self.slot)?;
        }
        let mut batch = WriteBatch::default();
        batch.put_cf(meta, KEY_TREE_FORMAT, [TREE_FORMAT]);
        for old in [CF_TREE, CF_TREE_1] {
            batch.delete_range_cf(cf(&self.db, old), &[][..], &PAST_EVERY_KEY[..]);
        }
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.db.write_opt(batch, &opts).db()?;
        Ok(())
    }
}

/// Past every key of a tree's column families: keys are UTF-8 paths (never a 0xFF byte),
/// layout keys of them, or 8-byte session ids.
const PAST_EVERY_KEY: [u8; 9] = [0xFF; 9];

/// Adds to `batch` the deletion of everything slot `slot` holds.
fn clear_slot_into(db: &DB, batch: &mut WriteBatch, slot: u8) {
    let cfs = slot_cfs(slot);
    for name in [cfs.znodes, cfs.sessions, cfs.owners] {
        batch.delete_range_cf(cf(db, name), &[][..], &PAST_EVERY_KEY[..]);
    }
    batch.delete_cf(cf(db, CF_META), totals_key(slot));
}

/// Derives what a slot written record by record (a staged snapshot, a migrated tree)
/// lacks: each znode's child count, the owner index and the totals. Two passes over the
/// keys in order — a parent's children are adjacent, so counting holds one parent at a
/// time — and nothing of the tree in memory.
fn finish_slot(db: &DB, slot: u8) -> Result<()> {
    let cfs = slot_cfs(slot);
    let znodes_cf = cf(db, cfs.znodes);
    let scan = || {
        let mut opts = ReadOptions::default();
        opts.fill_cache(false);
        db.iterator_cf_opt(znodes_cf, opts, IteratorMode::Start)
    };
    // Pass 1: the children of each parent, counted where they are adjacent; a parent
    // whose record says otherwise is rewritten.
    let mut batch = WriteBatch::default();
    let mut counts: Vec<(String, i32)> = Vec::new();
    let mut current: Option<(Vec<u8>, i32)> = None;
    let flush_parent = |parent: Vec<u8>, n: i32, counts: &mut Vec<(String, i32)>| {
        if let Ok(p) = String::from_utf8(parent) {
            counts.push((p, n));
        }
    };
    for item in scan() {
        let (k, _) = item.db()?;
        let zero = k
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| Error::Corrupt("a znode key holds no path".into()))?;
        let parent = &k[..zero];
        match &mut current {
            Some((p, n)) if p.as_slice() == parent => *n += 1,
            _ => {
                if let Some((p, n)) = current.take() {
                    flush_parent(p, n, &mut counts);
                }
                if !parent.is_empty() {
                    current = Some((parent.to_vec(), 1));
                }
            }
        }
        if counts.len() >= PASS_BATCH {
            set_counts(db, znodes_cf, &mut batch, counts.drain(..))?;
        }
    }
    if let Some((p, n)) = current.take() {
        flush_parent(p, n, &mut counts);
    }
    set_counts(db, znodes_cf, &mut batch, counts.drain(..))?;
    write(db, batch)?;
    // Pass 2: every record in the current format with its count (zero where pass 1
    // found no children), the owner index and the totals.
    let owners_cf = cf(db, cfs.owners);
    let mut batch = WriteBatch::default();
    let mut totals = (0u64, 0u64, 0u64);
    for item in scan() {
        let (k, v) = item.db()?;
        let (p, _) =
            path_of(&k).ok_or_else(|| Error::Corrupt("a znode key holds no path".into()))?;
        let mut n = decode_znode(&v)?;
        let carried = n.num_children;
        if carried != 0 {
            // Counted in pass 1 (or carried by a current record): kept only if this
            // znode's children are really there.
            let (children, _) = children_range(&p);
            if !has_key_with_prefix(db, znodes_cf, &children)? {
                n.num_children = 0;
            }
        }
        if v.first() != Some(&ZNODE_FORMAT_V3) || n.num_children != carried {
            batch.put_cf(znodes_cf, &k, encode_znode(&n));
        }
        if n.ephemeral_owner != 0 {
            batch.put_cf(owners_cf, p.as_bytes(), n.ephemeral_owner.to_le_bytes());
        }
        totals.0 += 1;
        totals.1 = totals.1.wrapping_add(crate::tree::znode_digest(&p, &n));
        totals.2 = totals
            .2
            .wrapping_add((p.len() + n.data.as_ref().map_or(0, Vec::len)) as u64);
        if batch.len() >= PASS_BATCH {
            write(db, std::mem::take(&mut batch))?;
        }
    }
    if totals.0 == 0 {
        // Every tree has its root: a slot without one is no tree (a snapshot sent empty).
        return Err(Error::Corrupt("the staged tree holds no znode".into()));
    }
    batch.put_cf(cf(db, CF_META), totals_key(slot), encode_totals(totals));
    write(db, batch)
}

/// Sets the child count of each `(parent, count)` in its record, in `batch`.
fn set_counts(
    db: &DB,
    znodes_cf: &rocksdb::ColumnFamily,
    batch: &mut WriteBatch,
    counts: impl Iterator<Item = (String, i32)>,
) -> Result<()> {
    for (parent, count) in counts {
        let k = key(&parent);
        // An orphan (its parent missing from the slot) is left for pass 2 to ignore.
        let Some(v) = db.get_cf(znodes_cf, &k).db()? else {
            continue;
        };
        let mut n = decode_znode(&v)?;
        if n.num_children != count || v.first() != Some(&ZNODE_FORMAT_V3) {
            n.num_children = count;
            batch.put_cf(znodes_cf, &k, encode_znode(&n));
        }
    }
    if batch.len() >= PASS_BATCH {
        write(db, std::mem::take(batch))?;
    }
    Ok(())
}

/// True if some key of `cf` starts with `prefix`.
fn has_key_with_prefix(db: &DB, cf: &rocksdb::ColumnFamily, prefix: &[u8]) -> Result<bool> {
    let mut it = db.raw_iterator_cf(cf);
    it.seek(prefix);
    if it.valid() {
        return Ok(it.key().is_some_and(|k| k.starts_with(prefix)));
    }
    it.status().db()?;
    Ok(false)
}

/// Writes a pass's batch (unsynced: the install or the format mark that makes it count
/// is synced after it, and RocksDB's one write-ahead log keeps the order).
fn write(db: &DB, batch: WriteBatch) -> Result<()> {
    let mut opts = WriteOptions::default();
    opts.set_sync(false);
    db.write_opt(batch, &opts).db()
}

/// A snapshot chunk record holding a znode (key: path) or a session (key: id).
pub(crate) const RECORD_ZNODE: u8 = 1;
pub(crate) const RECORD_SESSION: u8 = 2;
/// A snapshot chunk record holding a member's address (key: id).
pub(crate) const RECORD_PEER: u8 = 3;

fn decode_session_key(k: &[u8]) -> Result<i64> {
    Ok(i64::from_be_bytes(
        k.try_into()
            .map_err(|_| Error::Corrupt("session key".into()))?,
    ))
}

fn decode_owner(v: &[u8]) -> Result<i64> {
    Ok(i64::from_le_bytes(
        v.try_into()
            .map_err(|_| Error::Corrupt("owner index entry".into()))?,
    ))
}

pub(crate) fn encode_znode(n: &Znode) -> Vec<u8> {
    let mut w = Writer::with_capacity(88 + n.data.as_ref().map_or(0, Vec::len));
    w.u8(ZNODE_FORMAT_V3);
    w.i64(n.czxid);
    w.i64(n.mzxid);
    w.i64(n.pzxid);
    w.i64(n.ctime);
    w.i64(n.mtime);
    w.i32(n.version);
    w.i32(n.creations);
    w.i32(n.aversion);
    w.i64(n.ephemeral_owner);
    w.opt_bytes(n.data.as_deref());
    if acl::is_open(&n.acl) {
        w.u8(ACL_OPEN);
    } else {
        w.u8(ACL_LIST);
        w.acl(&n.acl);
    }
    w.i32(n.num_children);
    w.u64(n.data_hash);
    w.finish()
}

pub(crate) fn encode_session(s: &SessionRecord) -> Vec<u8> {
    let mut w = Writer::with_capacity(48 + s.password.len());
    w.u8(SESSION_FORMAT_V2);
    w.i32(s.timeout_ms);
    w.u64(s.host);
    w.bytes(&s.password);
    w.u64(s.epoch);
    w.u64(s.last_seq);
    w.finish()
}

fn decode_session(buf: &[u8]) -> Result<SessionRecord> {
    let mut r = Reader::new(buf);
    let format = r.u8()?;
    if format != SESSION_FORMAT_V1 && format != SESSION_FORMAT_V2 {
        return Err(Error::Corrupt(format!("unknown session format {format}")));
    }
    let (timeout_ms, host, password) = (r.i32()?, r.u64()?, r.bytes()?);
    let (epoch, last_seq) = if format == SESSION_FORMAT_V2 {
        (r.u64()?, r.u64()?)
    } else {
        (0, 0)
    };
    let rec = SessionRecord {
        timeout_ms,
        host,
        password,
        epoch,
        last_seq,
    };
    r.finish()?;
    Ok(rec)
}

/// Decodes a znode record of any format (the child count is 0 in formats without one).
pub(crate) fn decode_znode(buf: &[u8]) -> Result<Znode> {
    let mut r = Reader::new(buf);
    let format = r.u8()?;
    if !(ZNODE_FORMAT_V1..=ZNODE_FORMAT_V3).contains(&format) {
        return Err(Error::Corrupt(format!("unknown znode format {format}")));
    }
    let mut node = Znode {
        czxid: r.i64()?,
        mzxid: r.i64()?,
        pzxid: r.i64()?,
        ctime: r.i64()?,
        mtime: r.i64()?,
        version: r.i32()?,
        creations: r.i32()?,
        aversion: r.i32()?,
        ephemeral_owner: r.i64()?,
        data: r.opt_bytes()?,
        num_children: 0,
        data_hash: 0,
        acl: acl::open_shared(),
    };
    if format >= ZNODE_FORMAT_V2 {
        match r.u8()? {
            ACL_OPEN => {}
            ACL_LIST => node.acl = r.acl()?.into(),
            other => return Err(Error::Corrupt(format!("znode ACL kind {other}"))),
        }
    }
    if format >= ZNODE_FORMAT_V3 {
        node.num_children = r.i32()?;
        node.data_hash = r.u64()?;
        if node.num_children < 0 {
            return Err(Error::Corrupt("negative child count".into()));
        }
    } else {
        node.data_hash = crate::tree::data_digest(node.data.as_deref());
    }
    r.finish()?;
    Ok(node)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::{perms, Acl, Id};
    use crate::command::{CreateMode, Op};
    use crate::tree::Txn;

    fn sorted(t: &DataTree) -> Vec<(String, Znode)> {
        t.znodes()
            .into_iter()
            .map(|(p, n)| (p, Znode::clone(&n)))
            .collect()
    }

    #[test]
    fn tree_round_trips_with_applied_index() {
        let dir = tempfile::tempdir().unwrap();
        let mut tree = DataTree::new();
        {
            let store = TreeStore::new(super::super::open_db(dir.path()).unwrap()).unwrap();
            let (fresh, applied) = store.load().unwrap();
            assert_eq!((fresh.len(), applied), (4, 0));
            let txn = |zxid, session| Txn {
                zxid,
                time: 10 + zxid,
                session,
            };
            let ops = [
                (0, Op::create("/a", b"x".to_vec(), CreateMode::Persistent)),
                (
                    0,
                    Op::create("/a/", b"y".to_vec(), CreateMode::PersistentSequential),
                ),
                (0, Op::create("/b", vec![], CreateMode::Persistent)),
                (0, Op::delete("/b", None)),
                (
                    0,
                    Op::CreateSession {
                        timeout_ms: 4000,
                        password: vec![1; 16],
                        host: 1,
                    },
                ),
                (
                    0,
                    Op::CreateSession {
                        timeout_ms: 4000,
                        password: vec![2; 16],
                        host: 2,
                    },
                ),
                (5, Op::create("/e", vec![], CreateMode::Ephemeral)),
                (6, Op::create("/f", vec![], CreateMode::Ephemeral)),
                (0, Op::create("/c", vec![], CreateMode::Container)),
                (
                    0,
                    Op::CloseSession {
                        session: 6,
                        expired: true,
                    },
                ),
                (
                    0,
                    Op::create_with_acl("/locked", vec![], CreateMode::Persistent, locked()),
                ),
                (0, Op::set_acl("/a", Acl::read_unsafe(), None)),
                (
                    0,
                    Op::create("/null", vec![], CreateMode::Persistent).with_null_data(),
                ),
                (0, Op::create("/empty", vec![], CreateMode::Persistent)),
            ];
            for (i, (session, op)) in ops.iter().enumerate() {
                tree.apply(txn(i as i64 + 1, *session), op).unwrap();
            }
            let dirty = tree.take_dirty();
            let mut batch = WriteBatch::default();
            store.write_into(&mut batch, &tree, &dirty, 10);
            store.commit(batch).unwrap();
        }
        let store = TreeStore::new(super::super::open_db(dir.path()).unwrap()).unwrap();
        let (loaded, applied) = store.load().unwrap();
        assert_eq!(applied, 10);
        assert_eq!(sorted(&loaded), sorted(&tree));
        assert_eq!(loaded.sessions(), tree.sessions());
        assert_eq!(loaded.sessions().len(), 1);
        assert_eq!(loaded.ephemerals(5, "/"), ["/e"]);
        assert!(loaded.ephemerals(6, "/").is_empty());
        assert!(loaded.get("/f").is_none());
        assert!(
            loaded.reapable(0).is_empty(),
            "container never had children"
        );
        assert_eq!(loaded.get("/locked").unwrap().acl(), locked());
        assert_eq!(loaded.get("/a").unwrap().acl(), Acl::read_unsafe());
        assert_eq!(loaded.get("/a").unwrap().stat().aversion, 1);
        assert_eq!(loaded.get("/null").unwrap().data, None);
        assert_eq!(loaded.get("/empty").unwrap().data, Some(Vec::new()));
        assert_eq!(loaded.get("/b").map(|n| n.acl().to_vec()), None);
        assert_eq!(
            loaded.get("/zookeeper/config").unwrap().acl(),
            Acl::read_unsafe()
        );
        assert_eq!(
            loaded.get("/a/0000000000").unwrap().acl(),
            Acl::open_unsafe()
        );
        assert_eq!(loaded.digest(), tree.digest());
    }

    #[test]
    fn a_directory_of_the_path_keyed_layout_is_migrated_once_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut tree = DataTree::new();
        let txn = |zxid, session| Txn {
            zxid,
            time: 100 + zxid,
            session,
        };
        let ops = [
            (
                0,
                Op::CreateSession {
                    timeout_ms: 4000,
                    password: vec![1; 16],
                    host: 1,
                },
            ),
            (0, Op::create("/a", b"x".to_vec(), CreateMode::Persistent)),
            (0, Op::create("/a/b", b"y".to_vec(), CreateMode::Persistent)),
            (0, Op::create("/a/b/c", vec![], CreateMode::Persistent)),
            (1, Op::create("/a/e", vec![], CreateMode::Ephemeral)),
            (0, Op::create("/box", vec![], CreateMode::Container)),
            (
                0,
                Op::create_with_acl("/locked", vec![], CreateMode::Persistent, locked()),
            ),
        ];
        for (i, (session, op)) in ops.iter().enumerate() {
            tree.apply(txn(i as i64 + 1, *session), op).unwrap();
        }
        {
            // As an earlier version wrote it: path keys, records of the second format
            // (no child count, no hash), no format mark.
            let db = super::super::open_db(dir.path()).unwrap();
            let mut batch = WriteBatch::default();
            for (p, n) in tree.znodes() {
                let mut v2 = encode_znode(&n);
                v2.truncate(v2.len() - 12);
                v2[0] = ZNODE_FORMAT_V2;
                batch.put_cf(cf(&db, CF_TREE), p.as_bytes(), v2);
            }
            for (id, rec) in tree.sessions() {
                batch.put_cf(
                    cf(&db, super::super::CF_SESSIONS),
                    id.to_be_bytes(),
                    encode_session(rec),
                );
            }
            batch.put_cf(cf(&db, CF_META), KEY_APPLIED, 7u64.to_le_bytes());
            db.write(batch).unwrap();
        }
        for _ in 0..2 {
            // Migrated at the first open; the second finds nothing to do.
            let db = super::super::open_db(dir.path()).unwrap();
            let store = TreeStore::new(db.clone()).unwrap();
            let (loaded, applied) = store.load().unwrap();
            assert_eq!(applied, 7);
            assert_eq!(sorted(&loaded), sorted(&tree));
            assert_eq!(loaded.sessions(), tree.sessions());
            assert_eq!(loaded.digest(), tree.digest());
            assert_eq!(
                (loaded.len(), loaded.data_size()),
                (tree.len(), tree.data_size())
            );
            assert_eq!(loaded.ephemerals(1, "/"), ["/a/e"]);
            assert_eq!(loaded.children("/a"), ["b", "e"]);
            assert_eq!(loaded.get("/a/b").unwrap().stat().num_children, 1);
            assert_eq!(
                db.iterator_cf(cf(&db, CF_TREE), IteratorMode::Start)
                    .count(),
                0,
                "the old column family is emptied"
            );
            drop((loaded, store, db));
        }
    }

    fn locked() -> Vec<Acl> {
        vec![
            Acl::new(perms::ALL, Id::digest("alice", "pw")),
            Acl::new(perms::READ, Id::new("ip", "10.0.0.0/8")),
        ]
    }

    #[test]
    fn znode_records_hold_their_acl_and_count_and_old_records_load_open() {
        let mut node = Znode {
            data: Some(b"data".to_vec()),
            czxid: 3,
            aversion: 2,
            num_children: 5,
            data_hash: crate::tree::data_digest(Some(b"data")),
            ..Znode::default()
        };
        let open = encode_znode(&node);
        assert_eq!(decode_znode(&open).unwrap(), node);
        node.acl = locked().into();
        let rec = encode_znode(&node);
        assert_eq!(decode_znode(&rec).unwrap(), node);
        let null = Znode {
            data: None,
            data_hash: crate::tree::data_digest(None),
            ..node.clone()
        };
        assert_eq!(decode_znode(&encode_znode(&null)).unwrap(), null);
        for cut in 0..rec.len() {
            assert!(decode_znode(&rec[..cut]).is_err(), "cut at {cut}");
        }
        let mut negative = open.clone();
        let at = negative.len() - 12;
        negative[at..at + 4].copy_from_slice(&(-1i32).to_le_bytes());
        assert!(decode_znode(&negative).is_err(), "negative child count");
        // A record of the second format: the ACL last, no count, no hash (computed).
        let v2 = &open[..open.len() - 12];
        let mut v2 = v2.to_vec();
        v2[0] = ZNODE_FORMAT_V2;
        let old = decode_znode(&v2).unwrap();
        assert_eq!(old.acl(), Acl::open_unsafe());
        assert_eq!((old.num_children, old.data_hash), (0, node.data_hash));
        let mut bad = v2.clone();
        *bad.last_mut().unwrap() = 7;
        assert!(decode_znode(&bad).is_err(), "unknown ACL kind");
        // A record of the first format (no ACL) loads with the open ACL.
        let mut v1 = v2[..v2.len() - 1].to_vec();
        v1[0] = ZNODE_FORMAT_V1;
        let old = decode_znode(&v1).unwrap();
        assert_eq!(old.acl(), Acl::open_unsafe());
        assert_eq!((old.data.as_deref(), old.aversion), (Some(&b"data"[..]), 2));
    }
}

#[cfg(test)]
mod snapshot_tests {
    use super::*;
    use crate::command::{CreateMode, Op};
    use crate::storage::open_db;
    use crate::tree::Txn;
    use raft::Storage as _;

    fn chunk_of(tree: &DataTree) -> Vec<u8> {
        let mut w = Writer::with_capacity(256);
        for (p, n) in tree.znodes() {
            w.u8(RECORD_ZNODE);
            w.bytes(p.as_bytes());
            w.bytes(&encode_znode(&n));
        }
        for (id, s) in tree.sessions() {
            w.u8(RECORD_SESSION);
            w.bytes(&id.to_be_bytes());
            w.bytes(&encode_session(s));
        }
        w.finish()
    }

    fn tree_with(path: &str) -> DataTree {
        let mut t = DataTree::new();
        let txn = Txn {
            zxid: 3,
            time: 1,
            session: 0,
        };
        t.apply(
            txn,
            &Op::create_with_acl(path, b"x".to_vec(), CreateMode::Persistent, acl_of(path)),
        )
        .unwrap();
        t
    }

    /// A different ACL for each path.
    fn acl_of(path: &str) -> Vec<crate::acl::Acl> {
        use crate::acl::{perms, Acl, Id};
        vec![Acl::new(perms::ALL, Id::digest(path, "pw"))]
    }

    #[test]
    fn a_staged_snapshot_is_installed_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let newer = tree_with("/new");
        {
            let db = open_db(dir.path()).unwrap();
            let store = TreeStore::new(db.clone()).unwrap();
            let mut old = tree_with("/old");
            let dirty = old.take_dirty();
            let mut batch = WriteBatch::default();
            store.write_into(&mut batch, &old, &dirty, 5);
            store.commit(batch).unwrap();
            store.clear_staging().unwrap();
            store.stage_chunk(&chunk_of(&newer)).unwrap();
            assert!(
                store.stage_chunk(&[9, 0, 0, 0, 0]).is_err(),
                "unknown record"
            );
            let mut bad = chunk_of(&newer);
            bad.truncate(bad.len() - 1);
            assert!(store.stage_chunk(&bad).is_err(), "truncated record");
            // The process dies here, before the install.
        }
        let db = open_db(dir.path()).unwrap();
        let raft = RaftStorage::open(db.clone(), (&[], &[]), true).unwrap();
        let mut store = TreeStore::new(db.clone()).unwrap();
        let (tree, applied) = store.load().unwrap();
        assert_eq!(applied, 5);
        assert!(tree.get("/old").is_some() && tree.get("/new").is_none());

        store.clear_staging().unwrap();
        store.stage_chunk(&chunk_of(&newer)).unwrap();
        let cs = ConfState {
            voters: vec![1, 2, 3],
            ..ConfState::default()
        };
        let installed = store
            .install(&raft, (10, 2, &cs), None, &[(4, "h4:1".to_string())])
            .unwrap();
        assert_eq!(
            crate::storage::member_addresses(store.db()).unwrap(),
            [(4, "h4:1".to_string())]
        );
        assert!(installed.get("/new").is_some() && installed.get("/old").is_none());
        assert_eq!(installed.get("/new").unwrap().acl(), acl_of("/new"));
        assert_eq!(installed.digest(), newer.digest());
        assert_eq!(
            (raft.first_index().unwrap(), raft.last_index().unwrap()),
            (11, 10)
        );
        assert_eq!(raft.term(10).unwrap(), 2);
        // Trees read their znodes from the database: they hold it open too.
        drop((installed, tree, store, raft, db));

        let db = open_db(dir.path()).unwrap();
        let raft = RaftStorage::open(db.clone(), (&[1], &[]), true).unwrap();
        let store = TreeStore::new(db).unwrap();
        let (tree, applied) = store.load().unwrap();
        assert_eq!(applied, 10);
        assert_eq!(tree.digest(), newer.digest());
        assert_eq!(tree.zxid(), 10);
        let st = raft.initial_state().unwrap();
        assert_eq!(st.conf_state.voters, vec![1, 2, 3]);
        assert_eq!((st.hard_state.commit, st.hard_state.term), (10, 2));
        assert_eq!(
            (raft.first_index().unwrap(), raft.term(10).unwrap()),
            (11, 2)
        );
    }

    /// Totals written by an earlier version (three numbers, the digest counting
    /// `/zookeeper/config`) load to the digest that leaves it out.
    #[test]
    fn totals_of_an_earlier_version_are_corrected_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let db = super::super::open_db(dir.path()).unwrap();
        let mut tree = tree_with("/x");
        tree.set_config(
            7,
            70,
            b"server.1=h:1:0:participant\nversion=7".to_vec(),
            false,
        );
        let store = TreeStore::new(db.clone()).unwrap();
        let dirty = tree.take_dirty();
        let mut batch = WriteBatch::default();
        store.write_into(&mut batch, &tree, &dirty, 10);
        store.commit(batch).unwrap();
        let config = tree.get(CONFIG_PATH).unwrap();
        let (count, digest, size) = tree.totals();
        let old_digest = digest.wrapping_add(crate::tree::znode_digest_counting_config(
            CONFIG_PATH,
            &config,
        ));
        let mut w = Writer::with_capacity(24);
        w.u64(count);
        w.u64(old_digest);
        w.u64(size);
        db.put_cf(cf(&db, CF_META), totals_key(store.slot), w.finish())
            .unwrap();
        drop(store);
        let store = TreeStore::new(db.clone()).unwrap();
        let (loaded, _) = store.load().unwrap();
        assert_eq!(loaded.digest(), tree.digest());
        assert_eq!(loaded.digest(), loaded.recompute_digest());
    }
}
