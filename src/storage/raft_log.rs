//! [`RaftStorage`]: raft-rs's `Storage` contract over RocksDB.
//!
//! raft-rs reads through the trait; the node driver writes through
//! [`RaftStorage::persist`], which puts a `Ready`'s entries and hard state into one
//! `WriteBatch` and syncs it before the driver sends any message that depends on it.

use super::Db;
use std::sync::Arc;

use parking_lot::RwLock;
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};
use rocksdb::{Direction, IteratorMode, WriteBatch, WriteOptions, DB};

use super::{cf, CF_RAFT_LOG, CF_RAFT_STATE};
use crate::error::{Error, Result};

const KEY_HARD_STATE: &[u8] = b"hard_state";
const KEY_CONF_STATE: &[u8] = b"conf_state";
/// The index of the snapshot a new ensemble starts from (see [`RaftStorage::open`]).
pub(crate) const BOOTSTRAP_INDEX: u64 = 1;

/// The term of the snapshot a new ensemble with initial `voters` starts from: derived from
/// the voter set (1 to 2^20), so a node bootstrapped with another configuration never
/// matches the ensemble's log at index 1 and is caught up through a snapshot instead.
/// Initial observers (`learners`) count too, after the voters.
pub(crate) fn bootstrap_term(voters: &[u64], learners: &[u64]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut add = |ids: &[u64]| {
        let mut sorted = ids.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        for v in sorted {
            for b in v.to_le_bytes() {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
    };
    add(voters);
    if !learners.is_empty() {
        // A separator, so that no voter set alone gives the same term.
        add(&[u64::MAX]);
        add(learners);
    }
    1 + h % (1 << 20)
}
/// Index and term of the last entry removed by log compaction (or covered by an
/// installed snapshot): the log starts right after it.
pub(crate) const KEY_COMPACTED: &[u8] = b"compacted";

/// What the storage keeps in memory beside RocksDB so that the hot calls
/// (`first_index`, `last_index`, `initial_state`) never touch the disk.
#[derive(Debug, Clone, Default)]
struct Cached {
    hard_state: HardState,
    conf_state: ConfState,
    /// The first index in the log: the compaction point + 1 (1: nothing compacted).
    first_index: u64,
    last_index: u64,
    /// The term of the entry at `first_index - 1` (0 when nothing was compacted).
    compacted_term: u64,
    /// The applied index the driver last reported (what a snapshot would hold).
    applied: u64,
}

/// Most entries, and bytes of entries, kept in the in-memory tail of the log.
const TAIL_MAX_ENTRIES: usize = 8192;
const TAIL_MAX_BYTES: usize = 32 * 1024 * 1024;

/// The newest entries of the log, in memory, so that raft's term lookups and the appends a
/// leader sends its followers do not read RocksDB. Always a contiguous run ending at the
/// last index (or empty); RocksDB stays the source of truth.
#[derive(Default)]
struct Tail {
    entries: std::collections::VecDeque<Entry>,
    bytes: usize,
}

impl Tail {
    fn append(&mut self, ents: &[Entry]) {
        let Some(first) = ents.first() else { return };
        // A new leader may overwrite a suffix.
        while self.entries.back().is_some_and(|e| e.index >= first.index) {
            let e = self.entries.pop_back().expect("checked");
            self.bytes -= e.data.len();
        }
        if self
            .entries
            .back()
            .is_some_and(|e| e.index + 1 != first.index)
        {
            self.entries.clear();
            self.bytes = 0;
        }
        for e in ents {
            self.bytes += e.data.len();
            self.entries.push_back(e.clone());
        }
        while self.entries.len() > TAIL_MAX_ENTRIES || self.bytes > TAIL_MAX_BYTES {
            let e = self.entries.pop_front().expect("non-empty");
            self.bytes -= e.data.len();
        }
    }

    fn get(&self, index: u64) -> Option<&Entry> {
        let front = self.entries.front()?.index;
        index
            .checked_sub(front)
            .and_then(|i| self.entries.get(i as usize))
    }

    /// `[low, high)` from memory, if all of it is here.
    fn range(&self, low: u64, high: u64, max_size: Option<u64>) -> Option<Vec<Entry>> {
        self.get(low)?;
        if high > low && self.get(high - 1).is_none() {
            return None;
        }
        let mut out = Vec::with_capacity(((high - low) as usize).min(256));
        let mut size = 0u64;
        for index in low..high {
            let e = self.get(index)?;
            size += u64::from(e.compute_size());
            if let Some(max) = max_size {
                if !out.is_empty() && size > max {
                    break;
                }
            }
            out.push(e.clone());
        }
        Some(out)
    }
}

/// raft-rs `Storage` backed by the node's RocksDB database.
pub struct RaftStorage {
    db: Arc<DB>,
    tail: RwLock<Tail>,
    cached: RwLock<Cached>,
    sync: bool,
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn store_err(e: impl std::fmt::Display) -> raft::Error {
    raft::Error::Store(StorageError::Other(Box::new(Error::Storage(e.to_string()))))
}

impl RaftStorage {
    /// Opens the raft state in `db`.
    ///
    /// A fresh database with `voters` starts a new ensemble the way raft-rs's own examples
    /// bootstrap one: as if a snapshot at index 1, holding that configuration (and the
    /// fresh tree) were installed, with a term derived from the voter set
    /// ([`bootstrap_term`]). Every member of the new ensemble starts from the same
    /// snapshot, and the log starts at index 2 — so a member added later, whose log is
    /// empty (or was bootstrapped with another configuration), is always sent a snapshot,
    /// which carries the configuration, rather than entries that never held the initial
    /// voters. A fresh database with no `voters` is a
    /// node joining an existing ensemble: empty configuration, empty log.
    /// `sync` selects whether [`RaftStorage::persist`] fsyncs.
    pub fn open(
        db: Arc<DB>,
        (voters, learners): (&[u64], &[u64]),
        sync: bool,
    ) -> Result<RaftStorage> {
        let state_cf = cf(&db, CF_RAFT_STATE);
        if db.get_cf(state_cf, KEY_CONF_STATE).db()?.is_none() {
            let cs = ConfState {
                voters: voters.to_vec(),
                learners: learners.to_vec(),
                ..ConfState::default()
            };
            let encode = |m: &dyn protobuf::Message| {
                m.write_to_bytes()
                    .map_err(|e| Error::Corrupt(e.to_string()))
            };
            let mut batch = WriteBatch::default();
            batch.put_cf(state_cf, KEY_CONF_STATE, encode(&cs)?);
            if !voters.is_empty() {
                let hs = HardState {
                    term: bootstrap_term(voters, learners),
                    commit: BOOTSTRAP_INDEX,
                    ..HardState::default()
                };
                batch.put_cf(state_cf, KEY_HARD_STATE, encode(&hs)?);
                batch.put_cf(
                    state_cf,
                    KEY_COMPACTED,
                    encode_compacted(BOOTSTRAP_INDEX, bootstrap_term(voters, learners)),
                );
            }
            let mut opts = WriteOptions::default();
            opts.set_sync(sync);
            db.write_opt(batch, &opts).db()?;
        }
        let hard_state = match db.get_cf(state_cf, KEY_HARD_STATE).db()? {
            Some(b) => HardState::parse_from_bytes(&b)
                .map_err(|e| Error::Corrupt(format!("hard state: {e}")))?,
            None => HardState::default(),
        };
        let conf_state = match db.get_cf(state_cf, KEY_CONF_STATE).db()? {
            Some(b) => ConfState::parse_from_bytes(&b)
                .map_err(|e| Error::Corrupt(format!("conf state: {e}")))?,
            None => return Err(Error::Corrupt("conf state missing".into())),
        };
        let (compacted_index, compacted_term) = match db.get_cf(state_cf, KEY_COMPACTED).db()? {
            Some(b) => decode_compacted(&b)?,
            None => (0, 0),
        };
        let log_cf = cf(&db, CF_RAFT_LOG);
        let last = db
            .iterator_cf(log_cf, IteratorMode::End)
            .next()
            .transpose()
            .db()?
            .map(|(k, _)| decode_index(&k))
            .transpose()?;
        let first_index = compacted_index + 1;
        let last_index = last.unwrap_or(0).max(compacted_index);
        Ok(RaftStorage {
            db,
            tail: RwLock::new(Tail::default()),
            cached: RwLock::new(Cached {
                hard_state,
                conf_state,
                first_index,
                last_index,
                compacted_term,
                applied: 0,
            }),
            sync,
        })
    }

    /// The persisted hard state.
    pub fn hard_state(&self) -> HardState {
        self.cached.read().hard_state.clone()
    }

    /// The persisted configuration.
    pub fn conf_state(&self) -> ConfState {
        self.cached.read().conf_state.clone()
    }

    /// Index of the last entry in the log.
    pub fn last(&self) -> u64 {
        self.cached.read().last_index
    }

    /// Index of the first entry still in the log (everything before was compacted).
    pub fn first(&self) -> u64 {
        self.cached.read().first_index
    }

    /// Records the applied index: a snapshot raft asks for describes the state after it.
    pub(crate) fn set_applied(&self, applied: u64) {
        self.cached.write().applied = applied;
    }

    /// Removes the entries up to and including `to` from the log and records `to` (with
    /// its term) as the compaction point, in one synced write. `to` must be applied, so
    /// the tree on disk (which is the snapshot) covers it. Returns the entries removed.
    ///
    /// The write is synced even with durable writes off: it follows the unsynced apply
    /// batches in RocksDB's write-ahead log, so once it is on disk, so are they — the log
    /// never loses an entry the persisted tree does not yet reflect.
    pub(crate) fn compact(&self, to: u64) -> Result<u64> {
        let (first, applied) = {
            let c = self.cached.read();
            (c.first_index, c.applied)
        };
        if to < first || to > applied {
            return Ok(0);
        }
        let term = raft::Storage::term(self, to).map_err(|e| Error::Storage(e.to_string()))?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(
            cf(&self.db, CF_RAFT_LOG),
            index_key(first),
            index_key(to + 1),
        );
        batch.put_cf(
            cf(&self.db, CF_RAFT_STATE),
            KEY_COMPACTED,
            encode_compacted(to, term),
        );
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.db.write_opt(batch, &opts).db()?;
        let mut c = self.cached.write();
        c.first_index = to + 1;
        c.compacted_term = term;
        Ok(to + 1 - first)
    }

    /// Adds to `batch` what installing a snapshot at (`index`, `term`) with configuration
    /// `cs` does to the raft state: the whole log goes, the compaction point becomes the
    /// snapshot, the commit index reaches it. The hard state written is `ready_hs` (the
    /// `Ready`'s own, when it has one) or the persisted one, with the commit raised to the
    /// snapshot and — should the snapshot's term be newer — that term with no vote: a
    /// vote of an older term is never recorded as cast in a newer one. Returns it, for
    /// [`RaftStorage::snapshot_installed`] once the batch is written.
    pub(crate) fn install_into(
        &self,
        batch: &mut WriteBatch,
        (index, term, cs): (u64, u64, &ConfState),
        ready_hs: Option<&HardState>,
    ) -> Result<HardState> {
        let c = self.cached.read();
        let log_cf = cf(&self.db, CF_RAFT_LOG);
        batch.delete_range_cf(log_cf, index_key(0), index_key(c.last_index.max(index) + 1));
        let state_cf = cf(&self.db, CF_RAFT_STATE);
        batch.put_cf(state_cf, KEY_COMPACTED, encode_compacted(index, term));
        let mut hs = ready_hs.cloned().unwrap_or_else(|| c.hard_state.clone());
        hs.commit = hs.commit.max(index);
        if term > hs.term {
            hs.term = term;
            hs.vote = 0;
        }
        let encode = |m: &dyn protobuf::Message| {
            m.write_to_bytes()
                .map_err(|e| Error::Corrupt(e.to_string()))
        };
        batch.put_cf(state_cf, KEY_HARD_STATE, encode(&hs)?);
        batch.put_cf(state_cf, KEY_CONF_STATE, encode(cs)?);
        Ok(hs)
    }

    /// The snapshot written by [`RaftStorage::install_into`] (with hard state `hs`) is on
    /// disk.
    pub(crate) fn snapshot_installed(&self, index: u64, term: u64, cs: ConfState, hs: HardState) {
        let mut c = self.cached.write();
        c.hard_state = hs;
        c.conf_state = cs;
        c.first_index = index + 1;
        c.last_index = index;
        c.compacted_term = term;
        c.applied = index;
        let mut tail = self.tail.write();
        tail.entries.clear();
        tail.bytes = 0;
    }

    /// Appends `entries` (replacing any conflicting suffix) and records `hard_state`, in
    /// one write batch, synced when the storage was opened with `sync`.
    /// Returns whether the write had to be synced (entries, term or vote changed).
    pub fn persist(&self, entries: &[Entry], hard_state: Option<&HardState>) -> Result<bool> {
        if entries.is_empty() && hard_state.is_none() {
            return Ok(false);
        }
        let mut batch = WriteBatch::default();
        let mut cached = self.cached.read().clone();
        if let (Some(first), Some(last)) = (entries.first(), entries.last()) {
            assert!(
                first.index >= cached.first_index && first.index <= cached.last_index + 1,
                "append at {} leaves a gap after {} (first {})",
                first.index,
                cached.last_index,
                cached.first_index
            );
            let log_cf = cf(&self.db, CF_RAFT_LOG);
            for e in entries {
                let bytes = e
                    .write_to_bytes()
                    .map_err(|e| Error::Corrupt(e.to_string()))?;
                batch.put_cf(log_cf, index_key(e.index), bytes);
            }
            if last.index < cached.last_index {
                batch.delete_range_cf(
                    log_cf,
                    index_key(last.index + 1),
                    index_key(cached.last_index + 1),
                );
            }
            cached.last_index = last.index;
        }
        if let Some(hs) = hard_state {
            let bytes = hs
                .write_to_bytes()
                .map_err(|e| Error::Corrupt(e.to_string()))?;
            batch.put_cf(cf(&self.db, CF_RAFT_STATE), KEY_HARD_STATE, bytes);
            cached.hard_state = hs.clone();
        }
        // Entries, term and vote must be on disk before raft acts on them; a commit index
        // alone need not be (raft re-learns it from the leader), so it rides unsynced.
        let before = self.cached.read().hard_state.clone();
        let must_sync = !entries.is_empty()
            || cached.hard_state.term != before.term
            || cached.hard_state.vote != before.vote;
        let mut opts = WriteOptions::default();
        opts.set_sync(self.sync && must_sync);
        self.db.write_opt(batch, &opts).db()?;
        *self.cached.write() = cached;
        self.tail.write().append(entries);
        Ok(must_sync)
    }

    /// Adds the hard state with `commit` raised to at least `commit` to `batch` (the apply
    /// batch), so the persisted commit index never falls behind the persisted applied index.
    pub fn commit_into(&self, batch: &mut WriteBatch, commit: u64) -> Result<()> {
        let mut cached = self.cached.write();
        if commit > cached.hard_state.commit {
            cached.hard_state.commit = commit;
        }
        let bytes = cached
            .hard_state
            .write_to_bytes()
            .map_err(|e| Error::Corrupt(e.to_string()))?;
        batch.put_cf(cf(&self.db, CF_RAFT_STATE), KEY_HARD_STATE, bytes);
        Ok(())
    }

    /// Records a new configuration (after a conf change is applied) into `batch`.
    pub fn conf_state_into(&self, batch: &mut WriteBatch, cs: ConfState) -> Result<()> {
        let bytes = cs
            .write_to_bytes()
            .map_err(|e| Error::Corrupt(e.to_string()))?;
        batch.put_cf(cf(&self.db, CF_RAFT_STATE), KEY_CONF_STATE, bytes);
        self.cached.write().conf_state = cs;
        Ok(())
    }

    fn entry(&self, index: u64) -> raft::Result<Entry> {
        if let Some(e) = self.tail.read().get(index) {
            return Ok(e.clone());
        }
        let bytes = self
            .db
            .get_pinned_cf(cf(&self.db, CF_RAFT_LOG), index_key(index))
            .map_err(store_err)?
            .ok_or(raft::Error::Store(StorageError::Unavailable))?;
        Entry::parse_from_bytes(&bytes).map_err(store_err)
    }
}

pub(crate) fn encode_compacted(index: u64, term: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&index.to_be_bytes());
    out[8..].copy_from_slice(&term.to_be_bytes());
    out
}

pub(crate) fn decode_compacted(b: &[u8]) -> Result<(u64, u64)> {
    let b: [u8; 16] = b
        .try_into()
        .map_err(|_| Error::Corrupt("compaction point".into()))?;
    let (i, t) = b.split_at(8);
    Ok((
        u64::from_be_bytes(i.try_into().expect("8 bytes")),
        u64::from_be_bytes(t.try_into().expect("8 bytes")),
    ))
}

pub(crate) fn decode_index(key: &[u8]) -> Result<u64> {
    Ok(u64::from_be_bytes(key.try_into().map_err(|_| {
        Error::Corrupt(format!("raft log key of {} bytes", key.len()))
    })?))
}

impl raft::Storage for RaftStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let c = self.cached.read();
        Ok(RaftState::new(c.hard_state.clone(), c.conf_state.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let max_size = max_size.into();
        {
            let c = self.cached.read();
            if low < c.first_index {
                return Err(raft::Error::Store(StorageError::Compacted));
            }
            assert!(
                high <= c.last_index + 1,
                "entries [{low}, {high}) beyond last index {}",
                c.last_index
            );
        }
        // raft always passes a size limit: reserve for a typical batch, not the range.
        if let Some(hit) = self.tail.read().range(low, high, max_size) {
            return Ok(hit);
        }
        let mut out = Vec::with_capacity(((high - low) as usize).min(256));
        let mut size = 0u64;
        let iter = self.db.iterator_cf(
            cf(&self.db, CF_RAFT_LOG),
            IteratorMode::From(&index_key(low), Direction::Forward),
        );
        for item in iter {
            let (k, v) = item.map_err(store_err)?;
            let index = decode_index(&k).map_err(store_err)?;
            if index >= high {
                break;
            }
            if index != low + out.len() as u64 {
                return Err(store_err(format!(
                    "log has a hole: expected entry {}, found {index}",
                    low + out.len() as u64
                )));
            }
            let e = Entry::parse_from_bytes(&v).map_err(store_err)?;
            size += u64::from(e.compute_size());
            if let Some(max) = max_size {
                if !out.is_empty() && size > max {
                    break;
                }
            }
            out.push(e);
        }
        if out.is_empty() || (out.len() as u64 != high - low && max_size.is_none()) {
            return Err(store_err(format!(
                "log has a hole in [{low}, {high}): found {} entries",
                out.len()
            )));
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let (first, last, compacted_term) = {
            let c = self.cached.read();
            (c.first_index, c.last_index, c.compacted_term)
        };
        if idx == first - 1 {
            // The compaction point (or the empty index 0 when nothing was compacted).
            return Ok(compacted_term);
        }
        if idx < first {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > last {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        if let Some(e) = self.tail.read().get(idx) {
            return Ok(e.term);
        }
        Ok(self.entry(idx)?.term)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.cached.read().first_index)
    }

    fn last_index(&self) -> raft::Result<u64> {
        let c = self.cached.read();
        Ok(c.last_index.max(c.first_index - 1))
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        // The snapshot *is* the tree on disk at the applied index. raft gets its metadata
        // here; the driver streams the data itself in bounded chunks (from a RocksDB
        // snapshot taken when the transfer starts, whose own metadata then replaces this).
        let (applied, cs) = {
            let c = self.cached.read();
            (c.applied, c.conf_state.clone())
        };
        if applied == 0 || applied < request_index {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        let term = self.term(applied)?;
        let mut snap = Snapshot::default();
        let meta = snap.mut_metadata();
        meta.index = applied;
        meta.term = term;
        meta.set_conf_state(cs);
        Ok(snap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::Storage;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: vec![index as u8; 3].into(),
            ..Entry::default()
        }
    }

    #[test]
    fn tail_stays_a_contiguous_suffix() {
        let mut t = Tail::default();
        t.append(&(1..=5).map(|i| entry(i, 1)).collect::<Vec<_>>());
        assert_eq!(t.range(2, 5, None).unwrap().len(), 3);
        t.append(&[entry(4, 2)]); // overwrite from 4
        assert_eq!(t.get(4).unwrap().term, 2);
        assert!(t.get(5).is_none());
        assert!(t.range(3, 6, None).is_none(), "beyond the tail");
        t.append(&[entry(9, 3)]); // a gap empties it rather than lie
        assert!(t.get(4).is_none());
        assert_eq!(t.get(9).unwrap().term, 3);
        let many: Vec<_> = (10..10 + TAIL_MAX_ENTRIES as u64 + 5)
            .map(|i| entry(i, 3))
            .collect();
        t.append(&many);
        assert_eq!(t.entries.len(), TAIL_MAX_ENTRIES);
        assert!(t.get(10).is_none(), "oldest evicted");
        let limited = t.range(20, 30, Some(1)).unwrap();
        assert_eq!(limited.len(), 1, "max_size returns at least one entry");
    }

    #[test]
    fn append_truncate_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = super::super::open_db(dir.path()).unwrap();
            let s = RaftStorage::open(db, (&[1, 2, 3], &[]), true).unwrap();
            let st = s.initial_state().unwrap();
            assert_eq!(st.conf_state.voters, vec![1, 2, 3]);
            // A new ensemble starts from the bootstrap snapshot at index 1.
            let t = bootstrap_term(&[1, 2, 3], &[]);
            assert_eq!(
                t,
                bootstrap_term(&[3, 1, 2, 2], &[]),
                "the voter set, not its order"
            );
            assert_ne!(t, bootstrap_term(&[1, 2, 3, 4], &[]));
            assert_ne!(t, bootstrap_term(&[1, 2, 3], &[4]));
            assert_ne!(
                bootstrap_term(&[1, 2, 3, 4], &[]),
                bootstrap_term(&[1, 2, 3], &[4])
            );
            assert!((1..=1 << 20).contains(&t));
            assert_eq!((st.hard_state.term, st.hard_state.commit), (t, 1));
            assert_eq!((s.first_index().unwrap(), s.last_index().unwrap()), (2, 1));
            assert_eq!(s.term(1).unwrap(), t);
            assert!(s.term(0).is_err(), "compacted");
            let ents: Vec<_> = (2..=5).map(|i| entry(i, 1)).collect();
            let hs = HardState {
                term: 1,
                vote: 2,
                commit: 3,
                ..HardState::default()
            };
            s.persist(&ents, Some(&hs)).unwrap();
            assert_eq!(s.last_index().unwrap(), 5);
            assert_eq!(s.term(4).unwrap(), 1);
            // A new leader overwrites the tail from index 4.
            s.persist(&[entry(4, 2)], None).unwrap();
            assert_eq!(s.last_index().unwrap(), 4);
            assert_eq!(s.term(4).unwrap(), 2);
            assert!(s.term(5).is_err());
            let got = s
                .entries(2, 5, None, GetEntriesContext::empty(false))
                .unwrap();
            assert_eq!(got.iter().map(|e| e.index).collect::<Vec<_>>(), [2, 3, 4]);
            let one = s.entries(2, 5, 1, GetEntriesContext::empty(false)).unwrap();
            assert_eq!(one.len(), 1, "max_size returns at least one entry");
        }
        let db = super::super::open_db(dir.path()).unwrap();
        let s = RaftStorage::open(db, (&[9], &[]), true).unwrap();
        let st = s.initial_state().unwrap();
        assert_eq!(st.conf_state.voters, vec![1, 2, 3], "conf state survives");
        assert_eq!(
            (st.hard_state.term, st.hard_state.vote, st.hard_state.commit),
            (1, 2, 3)
        );
        assert_eq!(s.last_index().unwrap(), 4);
        assert_eq!(s.term(4).unwrap(), 2);
    }
}

#[cfg(test)]
mod compaction_tests {
    use super::*;
    use raft::Storage;

    #[test]
    fn compaction_is_persisted_and_bounded_by_the_applied_index() {
        let dir = tempfile::tempdir().unwrap();
        let entry = |index, term| Entry {
            index,
            term,
            data: vec![1; 10].into(),
            ..Entry::default()
        };
        {
            let db = super::super::open_db(dir.path()).unwrap();
            // No voters: a joining node's empty log, starting at index 1.
            let s = RaftStorage::open(db, (&[], &[]), true).unwrap();
            assert_eq!((s.first_index().unwrap(), s.last_index().unwrap()), (1, 0));
            let ents: Vec<_> = (1..=100).map(|i| entry(i, 1 + i / 50)).collect();
            s.persist(&ents, None).unwrap();
            assert_eq!(s.compact(10).unwrap(), 0, "nothing applied yet");
            s.set_applied(60);
            assert_eq!(s.compact(70).unwrap(), 0, "beyond the applied index");
            assert_eq!(s.compact(55).unwrap(), 55);
            assert_eq!(s.first_index().unwrap(), 56);
            assert_eq!(
                s.term(55).unwrap(),
                2,
                "the compaction point keeps its term"
            );
            assert!(matches!(
                s.term(54),
                Err(raft::Error::Store(StorageError::Compacted))
            ));
            assert!(matches!(
                s.entries(50, 60, None, GetEntriesContext::empty(false)),
                Err(raft::Error::Store(StorageError::Compacted))
            ));
            let snap = s.snapshot(0, 2).unwrap();
            assert_eq!(
                (snap.get_metadata().index, snap.get_metadata().term),
                (60, 2)
            );
        }
        let db = super::super::open_db(dir.path()).unwrap();
        let s = RaftStorage::open(db, (&[1], &[]), true).unwrap();
        assert_eq!(
            (s.first_index().unwrap(), s.last_index().unwrap()),
            (56, 100)
        );
        assert_eq!(s.term(55).unwrap(), 2);
        let got = s
            .entries(56, 101, None, GetEntriesContext::empty(false))
            .unwrap();
        assert_eq!(got.len(), 45);
    }
}

#[cfg(test)]
mod install_tests {
    use super::*;

    #[test]
    fn an_install_never_records_an_old_vote_in_a_newer_term() {
        let dir = tempfile::tempdir().unwrap();
        let db = super::super::open_db(dir.path()).unwrap();
        let s = RaftStorage::open(db, (&[], &[]), true).unwrap();
        let voted = HardState {
            term: 6,
            vote: 3,
            commit: 0,
            ..HardState::default()
        };
        s.persist(&[], Some(&voted)).unwrap();
        let cs = ConfState {
            voters: vec![1, 2, 3],
            ..ConfState::default()
        };
        let mut batch = WriteBatch::default();
        let hs = s.install_into(&mut batch, (40, 7, &cs), None).unwrap();
        assert_eq!((hs.term, hs.vote, hs.commit), (7, 0, 40));
        let mut batch = WriteBatch::default();
        let hs = s.install_into(&mut batch, (40, 6, &cs), None).unwrap();
        assert_eq!((hs.term, hs.vote), (6, 3), "the same term keeps its vote");
        let ready = HardState {
            term: 8,
            vote: 0,
            commit: 41,
            ..HardState::default()
        };
        let mut batch = WriteBatch::default();
        let hs = s
            .install_into(&mut batch, (40, 7, &cs), Some(&ready))
            .unwrap();
        assert_eq!(
            (hs.term, hs.vote, hs.commit),
            (8, 0, 41),
            "the Ready's own wins"
        );
    }
}
