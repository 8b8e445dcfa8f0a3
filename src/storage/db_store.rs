//! [`DbStore`]: the tree's znodes served from RocksDB through a bounded cache.
//!
//! A node's tree is not loaded into memory: a znode is read from the live slot's
//! `znodes` column family (see `layout` for its key) the first time it is needed, and
//! kept in a cache bounded in bytes (`Config::cache_bytes`) that forgets the least
//! useful znodes first. What the driver applies goes into an *overlay* first — the
//! znodes changed by the apply batch not yet written — which every read consults before
//! the cache and the database; once the batch is written (tree changes and applied index
//! in one `WriteBatch`, as before) the overlay moves into the cache. So a read sees
//! exactly the state after the last entry applied, whether or not its batch reached
//! RocksDB, and memory holds the cache, the overlay and the small indexes of the tree
//! (sessions, ephemerals, containers and TTL znodes), not the data.
//!
//! A read that RocksDB fails (an I/O error, a record that does not decode) cannot be
//! answered from a state machine that must not guess: the store remembers the error and
//! the read sees no znode; the driver checks after each entry, under the tree's write
//! lock, and stops the node before anything sees what that entry computed, or wrote it
//! ([`Store::take_error`](crate::tree::Store::take_error)). A client read that hit the
//! error (and was answered as if the znode were absent) stops the node at its next
//! entry: a disk that refuses reads is not one to serve from.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;
use quick_cache::sync::Cache;
use rocksdb::{Direction, IteratorMode, ReadOptions, DB};

use super::layout::{children_range, key, path_of};
use super::tree_store::decode_znode;
use super::{cf, Db};
use crate::error::Error;
use crate::path;
use crate::tree::{Store, Znode};

/// Bytes a cached znode costs besides its path and data: the `Znode` itself and its
/// `Arc`, the path's `String`, the allocator's rounding and the cache's own slot (about
/// what a process holding a full cache of 100-byte znodes measures per entry).
const ZNODE_OVERHEAD: u64 = 256;

/// Weighs a cached znode by what it holds in memory.
#[derive(Clone)]
struct Weight;

impl quick_cache::Weighter<String, Arc<Znode>> for Weight {
    fn weight(&self, path: &String, n: &Arc<Znode>) -> u64 {
        ZNODE_OVERHEAD + path.len() as u64 + n.data.as_ref().map_or(0, Vec::len) as u64
    }
}

/// Weighs a cached list of children by its names.
#[derive(Clone)]
struct ListWeight;

impl quick_cache::Weighter<String, Arc<Vec<String>>> for ListWeight {
    fn weight(&self, path: &String, names: &Arc<Vec<String>>) -> u64 {
        let names: usize = names.iter().map(|n| n.len() + 24).sum();
        ZNODE_OVERHEAD + (path.len() + names) as u64
    }
}

/// The share of the cache's bytes that holds lists of children (a parent listed again
/// and again — a group's members, a queue — is not scanned each time).
const LISTS_SHARE: u64 = 4;

/// The znodes of one tree slot in RocksDB, with a cache and the overlay of the batch
/// being applied.
pub(crate) struct DbStore {
    db: Arc<DB>,
    /// The `znodes` column family of the slot this store serves.
    cf: &'static str,
    cache: Cache<String, Arc<Znode>, Weight>,
    /// Sorted children's names of parents as the database holds them (no parent with a
    /// change in the overlay is cached; a change drops its parent's list).
    lists: Cache<String, Arc<Vec<String>>, ListWeight>,
    /// Znodes the batch being applied changed (`None`: deleted), until it is written.
    overlay: HashMap<String, Option<Arc<Znode>>>,
    /// How many of the overlay's paths each parent has: its list is read through the
    /// overlay only while it has some.
    overlay_parents: HashMap<String, usize>,
    /// How many znodes the slot holds, the overlay's changes included.
    count: u64,
    /// The first read RocksDB failed since the last [`Store::take_error`].
    error: Mutex<Option<Error>>,
}

impl std::fmt::Debug for DbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbStore")
            .field("cf", &self.cf)
            .field("count", &self.count)
            .field("cached", &self.cache.len())
            .field("overlay", &self.overlay.len())
            .finish()
    }
}

impl DbStore {
    /// Serves the znodes of column family `cf` (holding `count` of them), caching up to
    /// `cache_bytes` of them.
    pub(crate) fn new(db: Arc<DB>, cf: &'static str, count: u64, cache_bytes: u64) -> DbStore {
        // The estimate sizes the cache's tables up front: a znode of about 100 bytes of
        // data and path, bounded so a huge cache does not allocate before it fills.
        let lists = cache_bytes / LISTS_SHARE;
        let znodes = cache_bytes - lists;
        let estimated = (znodes / (ZNODE_OVERHEAD + 100)).clamp(16, 1 << 20) as usize;
        let estimated_lists = (lists / (ZNODE_OVERHEAD + 2048)).clamp(16, 1 << 16) as usize;
        DbStore {
            db,
            cf,
            cache: Cache::with_weighter(estimated, znodes.max(1), Weight),
            lists: Cache::with_weighter(estimated_lists, lists.max(1), ListWeight),
            overlay: HashMap::new(),
            overlay_parents: HashMap::new(),
            count,
            error: Mutex::new(None),
        }
    }

    /// Puts `p`'s new state in the overlay; a path new to it counts for its parent, and
    /// the parent's list, if cached, is dropped.
    fn stage(&mut self, p: &str, n: Option<Arc<Znode>>) {
        if self.overlay.insert(p.to_string(), n).is_none() {
            if let Some(parent) = path::parent(p) {
                *self.overlay_parents.entry(parent.to_string()).or_default() += 1;
                self.lists.remove(parent);
            }
        }
    }

    fn failed(&self, e: Error) {
        self.error.lock().get_or_insert(e);
    }

    /// The znode at `p` as the database holds it.
    fn read(&self, p: &str) -> Option<Arc<Znode>> {
        let found = self.db.get_pinned_cf(cf(&self.db, self.cf), key(p)).db();
        match found {
            Ok(None) => None,
            Ok(Some(bytes)) => match decode_znode(&bytes) {
                Ok(n) => Some(Arc::new(n)),
                Err(e) => {
                    self.failed(Error::Corrupt(format!("znode {p}: {e}")));
                    None
                }
            },
            Err(e) => {
                self.failed(e);
                None
            }
        }
    }

    /// Scans `[start, end)` of the slot's keys, calling `f` with each key's path. `keep`: the blocks read stay in the block cache (a
    /// list of children, read again soon); a scan of a whole subtree leaves them out, so
    /// as not to push out what point reads need.
    fn scan(&self, start: &[u8], end: Option<Vec<u8>>, keep: bool, mut f: impl FnMut(String)) {
        let mut opts = ReadOptions::default();
        if let Some(end) = end {
            opts.set_iterate_upper_bound(end);
        }
        opts.fill_cache(keep);
        let iter = self.db.iterator_cf_opt(
            cf(&self.db, self.cf),
            opts,
            IteratorMode::From(start, Direction::Forward),
        );
        for item in iter {
            match item.db() {
                Ok((k, _)) => match path_of(&k) {
                    Some((p, _)) => f(p),
                    None => {
                        self.failed(Error::Corrupt("a znode key holds no path".into()));
                        return;
                    }
                },
                Err(e) => {
                    self.failed(e);
                    return;
                }
            }
        }
    }
}

impl Store for DbStore {
    fn get(&self, p: &str) -> Option<Arc<Znode>> {
        if let Some(n) = self.overlay.get(p) {
            return n.clone();
        }
        if let Some(n) = self.cache.get(p) {
            return Some(n);
        }
        let n = self.read(p)?;
        self.cache.insert(p.to_string(), n.clone());
        Some(n)
    }

    fn get_mut(&mut self, p: &str) -> Option<&mut Znode> {
        if !self.overlay.contains_key(p) {
            let n = self.get(p)?;
            // Out of the cache while it changes, so that the overlay's copy is the only
            // one unless a reader holds it.
            self.cache.remove(p);
            self.stage(p, Some(n));
        }
        match self.overlay.get_mut(p) {
            Some(Some(n)) => Some(Arc::make_mut(n)),
            _ => None,
        }
    }

    fn insert(&mut self, p: &str, node: Arc<Znode>) -> Option<Arc<Znode>> {
        let old = self.get(p);
        if old.is_none() {
            self.count += 1;
        }
        self.cache.remove(p);
        self.stage(p, Some(node));
        old
    }

    fn insert_new(&mut self, p: &str, node: Arc<Znode>) {
        // No lookup: the create looked already, and a miss costs a read of the database.
        self.count += 1;
        self.stage(p, Some(node));
    }

    fn remove(&mut self, p: &str) -> Option<Arc<Znode>> {
        let old = self.get(p)?;
        self.count = self.count.saturating_sub(1);
        self.cache.remove(p);
        self.stage(p, None);
        Some(old)
    }

    fn children(&self, p: &str) -> Vec<String> {
        let pending = self.overlay_parents.contains_key(p);
        if !pending {
            if let Some(names) = self.lists.get(p) {
                return names.as_ref().clone();
            }
        }
        let (start, end) = children_range(p);
        let mut names = Vec::new();
        self.scan(&start, Some(end), true, |child| {
            names.push(path::name(&child).to_string());
        });
        if !pending {
            // As the database holds them, and no change of the overlay is among them.
            self.lists.insert(p.to_string(), Arc::new(names.clone()));
            return names;
        }
        let mut set: BTreeSet<String> = names.into_iter().collect();
        for (c, n) in &self.overlay {
            if path::parent(c) == Some(p) {
                if n.is_some() {
                    set.insert(path::name(c).to_string());
                } else {
                    set.remove(path::name(c));
                }
            }
        }
        set.into_iter().collect()
    }

    fn len(&self) -> usize {
        usize::try_from(self.count).unwrap_or(usize::MAX)
    }

    fn descendants(&self, p: &str) -> usize {
        // Below `p` are exactly the keys whose parent part is `p` or starts with `p/`:
        // two ranges of keys, counted by one scan each (the root: every key but its own).
        let ranges: Vec<(Vec<u8>, Vec<u8>)> = if p == "/" {
            vec![(b"/".to_vec(), b"0".to_vec())]
        } else {
            let deeper = (format!("{p}/").into_bytes(), format!("{p}0").into_bytes());
            vec![children_range(p), deeper]
        };
        let mut count = 0usize;
        for (start, end) in ranges {
            self.scan(&start, Some(end), false, |_| count += 1);
        }
        let prefix = if p == "/" {
            "/".to_string()
        } else {
            format!("{p}/")
        };
        for (q, n) in &self.overlay {
            if q.len() > prefix.len() && q.starts_with(&prefix) {
                match (n.is_some(), self.read(q).is_some()) {
                    (true, false) => count += 1,
                    (false, true) => count = count.saturating_sub(1),
                    _ => {}
                }
            }
        }
        count
    }

    fn paths(&self) -> Vec<String> {
        let mut paths = Vec::new();
        self.scan(&[], None, false, |p| {
            if !self.overlay.contains_key(&p) {
                paths.push(p);
            }
        });
        paths.extend(
            self.overlay
                .iter()
                .filter(|(_, n)| n.is_some())
                .map(|(p, _)| p.clone()),
        );
        paths
    }

    #[cfg(test)]
    fn box_clone(&self) -> Box<dyn Store> {
        // A copy is a value, not a view of the database the driver goes on writing.
        let mut copy = crate::tree::MemStore::default();
        for p in self.paths() {
            if let Some(n) = self.get(&p) {
                copy.insert(&p, n);
            }
        }
        Box::new(copy)
    }

    fn written(&mut self) {
        self.overlay_parents.clear();
        for (p, n) in self.overlay.drain() {
            match n {
                Some(n) => self.cache.insert(p, n),
                None => {
                    self.cache.remove(&p);
                }
            }
        }
    }

    fn take_error(&mut self) -> Option<Error> {
        self.error.get_mut().take()
    }
}
