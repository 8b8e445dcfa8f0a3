//! [`RaftStorage`]: raft-rs's `Storage` contract over RocksDB.
//!
//! raft-rs reads through the trait; the node driver writes through
//! [`RaftStorage::persist`], which puts a `Ready`'s entries and hard state into one
//! `WriteBatch` and syncs it before the driver sends any message that depends on it.

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

/// What the storage keeps in memory beside RocksDB so that the hot calls
/// (`first_index`, `last_index`, `initial_state`) never touch the disk.
#[derive(Debug, Clone, Default)]
struct Cached {
    hard_state: HardState,
    conf_state: ConfState,
    /// The log starts after this index (0: nothing compacted).
    first_index: u64,
    last_index: u64,
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
    /// Opens the raft state in `db`. A fresh database is initialised with `voters` as its
    /// configuration (every member of a new ensemble starts from the same voter set).
    /// `sync` selects whether [`RaftStorage::persist`] fsyncs.
    pub fn open(db: Arc<DB>, voters: &[u64], sync: bool) -> Result<RaftStorage> {
        let state_cf = cf(&db, CF_RAFT_STATE);
        let hard_state = match db.get_cf(state_cf, KEY_HARD_STATE)? {
            Some(b) => HardState::parse_from_bytes(&b)
                .map_err(|e| Error::Corrupt(format!("hard state: {e}")))?,
            None => HardState::default(),
        };
        let conf_state = match db.get_cf(state_cf, KEY_CONF_STATE)? {
            Some(b) => ConfState::parse_from_bytes(&b)
                .map_err(|e| Error::Corrupt(format!("conf state: {e}")))?,
            None => {
                let cs = ConfState {
                    voters: voters.to_vec(),
                    ..ConfState::default()
                };
                let bytes = cs
                    .write_to_bytes()
                    .map_err(|e| Error::Corrupt(e.to_string()))?;
                let mut opts = WriteOptions::default();
                opts.set_sync(sync);
                let mut batch = WriteBatch::default();
                batch.put_cf(state_cf, KEY_CONF_STATE, bytes);
                db.write_opt(batch, &opts)?;
                cs
            }
        };
        let log_cf = cf(&db, CF_RAFT_LOG);
        let first = db
            .iterator_cf(log_cf, IteratorMode::Start)
            .next()
            .transpose()?
            .map(|(k, _)| decode_index(&k))
            .transpose()?;
        let last = db
            .iterator_cf(log_cf, IteratorMode::End)
            .next()
            .transpose()?
            .map(|(k, _)| decode_index(&k))
            .transpose()?;
        let (first_index, last_index) = match (first, last) {
            (Some(f), Some(l)) => (f, l),
            _ => (1, 0),
        };
        Ok(RaftStorage {
            db,
            tail: RwLock::new(Tail::default()),
            cached: RwLock::new(Cached {
                hard_state,
                conf_state,
                first_index,
                last_index,
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
        self.db.write_opt(batch, &opts)?;
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

fn decode_index(key: &[u8]) -> Result<u64> {
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
        let (first, last) = {
            let c = self.cached.read();
            (c.first_index, c.last_index)
        };
        if idx == first - 1 {
            // Nothing is compacted yet: the entry before the first is the empty index 0.
            return Ok(0);
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

    fn snapshot(&self, _request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        // The log is never compacted yet (log compaction and snapshot transfer come with
        // the multi-process work), so every follower can be caught up from entries and raft
        // never needs a snapshot. Say "not now" rather than hand out a wrong one.
        Err(raft::Error::Store(
            StorageError::SnapshotTemporarilyUnavailable,
        ))
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
            let s = RaftStorage::open(db, &[1, 2, 3], true).unwrap();
            assert_eq!(s.initial_state().unwrap().conf_state.voters, vec![1, 2, 3]);
            assert_eq!((s.first_index().unwrap(), s.last_index().unwrap()), (1, 0));
            assert_eq!(s.term(0).unwrap(), 0);
            let ents: Vec<_> = (1..=5).map(|i| entry(i, 1)).collect();
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
            let one = s.entries(1, 5, 1, GetEntriesContext::empty(false)).unwrap();
            assert_eq!(one.len(), 1, "max_size returns at least one entry");
        }
        let db = super::super::open_db(dir.path()).unwrap();
        let s = RaftStorage::open(db, &[9], true).unwrap();
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
