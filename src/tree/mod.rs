//! The znode tree: a pure, deterministic state machine.
//!
//! `DataTree::apply_ordered` takes the zxid (raft index), time and session of an entry (a `Txn`)
//! together with its [`Op`] and changes the tree exactly as ZooKeeper's `DataTree` would.
//! There are no clocks, randomness or I/O here, so every replica applying the same log holds
//! the same tree. Sessions are part of the replicated state (their ids are the zxids of
//! their `CreateSession` entries); closing one deletes its ephemerals in the same entry.
//!
//! Besides the result, an apply leaves two outputs for the node to collect: the paths and
//! sessions it touched (`DataTree::take_dirty`, written to RocksDB with the applied index
//! in one batch) and the watch events it caused (`DataTree::take_events`), in order.
//!
//! Outside the crate the tree is read-only: [`Node::with_tree`](crate::Node::with_tree)
//! lends a `&DataTree` to read znodes, sessions and the digest; only the node applies.

pub(crate) mod changes;
mod digest;
mod ephemeral;
mod event;
mod stat;
mod store;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

pub(crate) use digest::{
    data as data_digest, znode as znode_digest,
    znode_counting_config as znode_digest_counting_config,
};
pub use ephemeral::{Owner, CONTAINER_OWNER, MAX_TTL_MS};
pub use event::{EventType, WatchedEvent};
pub use stat::Stat;
pub(crate) use store::{MemStore, Store};

use crate::acl::{self, perms, Acl, Id};
use crate::command::{CreateMode, Op};
use crate::error::{Error, Result};
use crate::path;

/// One znode as the tree holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Znode {
    /// The znode's data; `None` when it was created or set with no data at all
    /// (ZooKeeper's `null`), which is kept apart from empty data.
    pub data: Option<Vec<u8>>,
    pub(crate) czxid: i64,
    pub(crate) mzxid: i64,
    pub(crate) pzxid: i64,
    pub(crate) ctime: i64,
    pub(crate) mtime: i64,
    pub(crate) version: i32,
    /// Number of child *creations* ever (ZooKeeper's persisted cversion). The reported
    /// cversion counts creations and deletions: `2 * creations - num_children`.
    pub(crate) creations: i32,
    pub(crate) aversion: i32,
    pub(crate) ephemeral_owner: i64,
    /// How many children it has (the store lists them: [`DataTree::children`]).
    pub(crate) num_children: i32,
    /// Hash of `data`, for the tree digest (computed when the data is set or loaded).
    pub(crate) data_hash: u64,
    /// The ACL, shared: znodes with equal ACLs hold one allocation (the tree interns
    /// them), so the common open ACL costs a pointer per znode.
    pub(crate) acl: Arc<[Acl]>,
}

impl Default for Znode {
    /// An empty znode with the open ACL.
    fn default() -> Znode {
        Znode {
            data: Some(Vec::new()),
            czxid: 0,
            mzxid: 0,
            pzxid: 0,
            ctime: 0,
            mtime: 0,
            version: 0,
            creations: 0,
            aversion: 0,
            ephemeral_owner: 0,
            num_children: 0,
            data_hash: digest::data(Some(&[])),
            acl: acl::open_shared(),
        }
    }
}

impl Znode {
    fn new(zxid: i64, time: i64, data: Option<Vec<u8>>, acl: Arc<[Acl]>) -> Znode {
        Znode {
            data_hash: digest::data(data.as_deref()),
            data,
            czxid: zxid,
            mzxid: zxid,
            pzxid: zxid,
            ctime: time,
            mtime: time,
            acl,
            ..Znode::default()
        }
    }

    /// The znode's ACL.
    pub fn acl(&self) -> &[Acl] {
        &self.acl
    }

    /// What owns the znode: a session, nothing, or the container/TTL machinery.
    pub fn owner(&self) -> Owner {
        Owner::from_raw(self.ephemeral_owner)
    }

    /// The znode's [`Stat`]. As ZooKeeper's, `ephemeral_owner` shows only a session
    /// owner: containers and TTL znodes report 0 (their kind is in [`Znode::owner`]).
    pub fn stat(&self) -> Stat {
        let num_children = self.num_children;
        Stat {
            czxid: self.czxid,
            mzxid: self.mzxid,
            ctime: self.ctime,
            mtime: self.mtime,
            version: self.version,
            cversion: self.creations.wrapping_mul(2).wrapping_sub(num_children),
            aversion: self.aversion,
            ephemeral_owner: match self.owner() {
                Owner::Session(s) => s,
                _ => 0,
            },
            // As ZooKeeper's: null data has length 0.
            data_length: self.data.as_ref().map_or(0, Vec::len) as i32,
            num_children,
            pzxid: self.pzxid,
        }
    }
}

/// What a successful operation returns.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpResult {
    /// The created znode's actual path (with the sequence suffix) and its stat.
    Create {
        /// Path of the new znode.
        path: String,
        /// Its stat.
        stat: Stat,
    },
    /// The znode was deleted.
    Delete,
    /// The new stat after a set_data.
    SetData {
        /// Stat after the change.
        stat: Stat,
    },
    /// The new stat after a set_acl (its `aversion` one higher).
    SetAcl {
        /// Stat after the change.
        stat: Stat,
    },
    /// The check passed.
    Check,
    /// Results of a multi, one per operation.
    Multi(Vec<OpResult>),
    /// A session was opened with this id.
    SessionCreated {
        /// The new session's id.
        session: i64,
    },
    /// A session was closed (or expired, or was already gone); these ephemerals went with it.
    SessionClosed {
        /// Paths of the deleted ephemeral znodes, sorted.
        deleted: Vec<String>,
    },
    /// A container or TTL znode was reaped.
    Reaped,
    /// A session was moved to the host that asked, by the entry at `zxid` (the new host
    /// numbers the session's writes from epochs based on it).
    SessionAttached {
        /// The session.
        session: i64,
        /// The zxid of the move.
        zxid: u64,
    },
}

impl OpResult {
    /// The created path and stat of a `Create` result.
    pub(crate) fn into_created(self) -> Result<(String, Stat)> {
        match self {
            OpResult::Create { path, stat } => Ok((path, stat)),
            other => Err(other.mismatch("create")),
        }
    }

    /// The new stat of a `SetData` result.
    pub(crate) fn into_stat(self) -> Result<Stat> {
        match self {
            OpResult::SetData { stat } => Ok(stat),
            other => Err(other.mismatch("set_data")),
        }
    }

    /// The new stat of a `SetAcl` result.
    pub(crate) fn into_acl_stat(self) -> Result<Stat> {
        match self {
            OpResult::SetAcl { stat } => Ok(stat),
            other => Err(other.mismatch("set_acl")),
        }
    }

    /// The per-operation results of a `Multi` result.
    pub(crate) fn into_multi(self) -> Result<Vec<OpResult>> {
        match self {
            OpResult::Multi(results) => Ok(results),
            other => Err(other.mismatch("multi")),
        }
    }

    /// A result of the wrong kind: the state machine never answers so, but a caller gets
    /// an error rather than a panic if it ever did.
    fn mismatch(&self, op: &str) -> Error {
        Error::Corrupt(format!("{op} answered with {self:?}"))
    }
}

/// What the replicated state knows of a session (read through [`SessionRecord::timeout_ms`]
/// and [`SessionRecord::host`]; its password and order stay inside the crate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Negotiated timeout in milliseconds.
    pub(crate) timeout_ms: i32,
    /// Secret for re-attaching (wire protocol).
    pub(crate) password: Vec<u8>,
    /// Node hosting the session (sending its heartbeats).
    pub(crate) host: u64,
    /// The session order applied so far: the host's epoch and the sequence number of the
    /// last request of that epoch (see `DataTree::apply_ordered`).
    pub(crate) epoch: u64,
    /// See `epoch`.
    pub(crate) last_seq: u64,
}

impl SessionRecord {
    /// The negotiated timeout, in milliseconds.
    pub fn timeout_ms(&self) -> i32 {
        self.timeout_ms
    }

    /// The node hosting the session (sending its heartbeats).
    pub fn host(&self) -> u64 {
        self.host
    }
}

/// The context of one applied entry: the change id, the proposer's time and the session
/// on whose behalf it runs (0: none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Txn {
    /// zxid: the raft index of the entry.
    pub zxid: i64,
    /// Proposer's time in milliseconds since the Unix epoch.
    pub time: i64,
    /// Session id, or 0.
    pub session: i64,
}

/// The paths ZooKeeper 3.5+ creates in every fresh tree (the root and its reserved subtree).
/// None of them can be deleted (`BadArguments`, as ZooKeeper answers, before any other
/// check); the rest of the `/zookeeper` subtree is an ordinary subtree, as in ZooKeeper.
pub const SYSTEM_PATHS: [&str; 4] = ["/", "/zookeeper", "/zookeeper/config", "/zookeeper/quota"];

/// ZooKeeper's dynamic-configuration znode. ZooKeeper gives it a read-only ACL
/// (`world:anyone:r`, [`Acl::read_unsafe`]), and so does zkraft; zkraft keeps it
/// read-only for every caller, the super user included: its data and ACL cannot be set and
/// it cannot get children (`NoAuth`). Its data is the ensemble's configuration, which the
/// replica writes ([`DataTree::set_config`]) when a membership change is applied (a
/// `reconfig` is how a caller changes it) and when it opens. It is left out of the digest.
pub const CONFIG_PATH: &str = "/zookeeper/config";

/// The replicated znode tree and session table.
#[derive(Debug)]
pub struct DataTree {
    /// The znodes, wherever they are kept.
    nodes: Box<dyn Store>,
    sessions: BTreeMap<i64, SessionRecord>,
    /// Derived indexes (rebuilt on load): ephemerals by session, containers, TTL znodes.
    ephemerals: HashMap<i64, BTreeSet<String>>,
    containers: BTreeSet<String>,
    ttls: BTreeSet<String>,
    /// Paths and sessions changed since the last `take_dirty`, each once however often
    /// it changed (a multi of 16k creates touches its parent 16k times).
    dirty: HashSet<String>,
    dirty_sessions: HashSet<i64>,
    /// Paths whose entry in the owner indexes changed since the last `take_dirty`.
    dirty_owners: HashSet<String>,
    events: Vec<WatchedEvent>,
    /// Sum of the hashes of every znode (see `digest`).
    digest: u64,
    /// Sum of the hashes of every session.
    sessions_digest: u64,
    /// The length of every path and every znode's data, summed (see `data_size`).
    data_size: u64,
    /// The raft index of the last entry this tree reflects.
    zxid: u64,
    /// Every distinct ACL some znode holds (and, until pruned, some no znode holds any
    /// more), so that equal ACLs share one allocation. Memory only: no effect on state.
    acls: HashSet<Arc<[Acl]>>,
    /// `acls` is pruned of ACLs no znode holds when it reaches this size.
    acls_prune_at: usize,
}

/// A copy in memory, for the state machine's tests: a node's tree lives in RocksDB, and
/// copying it whole is what its design avoids.
#[cfg(test)]
impl Clone for DataTree {
    fn clone(&self) -> Self {
        DataTree {
            nodes: self.nodes.box_clone(),
            sessions: self.sessions.clone(),
            ephemerals: self.ephemerals.clone(),
            containers: self.containers.clone(),
            ttls: self.ttls.clone(),
            dirty: self.dirty.clone(),
            dirty_sessions: self.dirty_sessions.clone(),
            dirty_owners: self.dirty_owners.clone(),
            events: self.events.clone(),
            digest: self.digest,
            sessions_digest: self.sessions_digest,
            data_size: self.data_size,
            zxid: self.zxid,
            acls: self.acls.clone(),
            acls_prune_at: self.acls_prune_at,
        }
    }
}

/// The smallest size at which the ACL cache is pruned.
const ACL_CACHE_MIN: usize = 64;

impl Default for DataTree {
    fn default() -> Self {
        Self::new()
    }
}

/// One change a multi made, with what it takes to reverse it. A failing multi undoes its
/// steps in reverse order, each in constant time (plus the path's length): no step copies
/// a parent's child set or searches the log, so a multi applies and rolls back in time
/// linear in its size, however many children its parents have.
#[derive(Debug)]
enum UndoStep {
    /// `path` was created under `parent`, whose pzxid and creation count were these.
    Created {
        path: String,
        parent: String,
        pzxid: i64,
        creations: i32,
    },
    /// `node` (childless) was deleted from `path` under `parent`, whose pzxid was this.
    Deleted {
        path: String,
        parent: String,
        pzxid: i64,
        node: Arc<Znode>,
    },
    /// The data of `path` was replaced; these are its previous data and fields.
    DataSet {
        path: String,
        data: Option<Vec<u8>>,
        version: i32,
        mzxid: i64,
        mtime: i64,
    },
}

/// The undo log of a multi.
type Undo = Vec<UndoStep>;

/// What changed since the last [`DataTree::take_dirty`], each once: what the node writes
/// with the applied index.
#[derive(Debug, Default)]
pub(crate) struct Dirty {
    /// Paths of znodes created, changed or deleted.
    pub paths: Vec<String>,
    /// Sessions opened, changed or closed.
    pub sessions: Vec<i64>,
    /// Paths whose owner (session, container, TTL) entered or left the owner indexes.
    pub owners: Vec<String>,
}

impl DataTree {
    /// A fresh tree: the root, `/zookeeper`, `/zookeeper/config` and `/zookeeper/quota`,
    /// as ZooKeeper 3.5+ starts.
    pub(crate) fn new() -> DataTree {
        DataTree::new_in(Box::new(MemStore::default()))
    }

    /// A fresh tree (see [`DataTree::new`]) kept in `nodes`, which must be empty.
    pub(crate) fn new_in(nodes: Box<dyn Store>) -> DataTree {
        let mut tree = DataTree::with_store(nodes);
        for p in SYSTEM_PATHS {
            let mut node = Znode::default();
            if p == CONFIG_PATH {
                // ZooKeeper sets it a read-only ACL at version -1: aversion -1.
                node.aversion = -1;
                node.acl = Acl::read_unsafe().into();
            }
            tree.insert_loaded(p.to_string(), node);
        }
        tree.link_children();
        tree.dirty = SYSTEM_PATHS.iter().map(|p| p.to_string()).collect();
        tree
    }

    /// An empty tree to be filled with [`DataTree::insert_loaded`],
    /// [`DataTree::insert_session`] and [`DataTree::link_children`].
    #[cfg(test)]
    pub(crate) fn empty() -> DataTree {
        DataTree::with_store(Box::new(MemStore::default()))
    }

    /// A tree over the znodes `nodes` holds, with no session and empty indexes: what
    /// recovery fills in ([`DataTree::insert_session`], [`DataTree::index_loaded`],
    /// [`DataTree::restore_totals`]) or [`DataTree::link_children`] derives.
    pub(crate) fn with_store(nodes: Box<dyn Store>) -> DataTree {
        DataTree {
            nodes,
            sessions: BTreeMap::new(),
            ephemerals: HashMap::new(),
            containers: BTreeSet::new(),
            ttls: BTreeSet::new(),
            dirty: HashSet::new(),
            dirty_sessions: HashSet::new(),
            dirty_owners: HashSet::new(),
            events: Vec::new(),
            digest: 0,
            sessions_digest: 0,
            data_size: 0,
            zxid: 0,
            acls: HashSet::from([acl::open_shared()]),
            acls_prune_at: ACL_CACHE_MIN,
        }
    }

    /// The shared copy of `acl`: the one some znode already holds if equal, else `acl`
    /// itself, remembered for the next znode.
    fn intern_acl(&mut self, acl: Arc<[Acl]>) -> Arc<[Acl]> {
        if Arc::ptr_eq(&acl, acl::open_shared_ref()) {
            return acl;
        }
        if let Some(shared) = self.acls.get(&acl) {
            return shared.clone();
        }
        if self.acls.len() >= self.acls_prune_at {
            // Forget the ACLs no znode holds any more (only the cache holds them);
            // amortised over the insertions since the last pruning.
            self.acls.retain(|a| Arc::strong_count(a) > 1);
            self.acls_prune_at = (self.acls.len() * 2).max(ACL_CACHE_MIN);
        }
        self.acls.insert(acl.clone());
        acl
    }

    /// [`DataTree::intern_acl`] of a list not yet shared.
    fn intern_acl_vec(&mut self, acl: Vec<Acl>) -> Arc<[Acl]> {
        match self.acls.get(acl.as_slice()) {
            Some(shared) => shared.clone(),
            None => self.intern_acl(acl.into()),
        }
    }

    /// Inserts a session read back from storage.
    pub(crate) fn insert_session(&mut self, id: i64, record: SessionRecord) {
        self.add_session(id, record);
    }

    fn add_session(&mut self, id: i64, record: SessionRecord) {
        self.sessions_digest = self
            .sessions_digest
            .wrapping_add(digest::session(id, &record));
        if let Some(old) = self.sessions.insert(id, record) {
            self.sessions_digest = self.sessions_digest.wrapping_sub(digest::session(id, &old));
        }
    }

    fn remove_session(&mut self, id: i64) -> Option<SessionRecord> {
        let old = self.sessions.remove(&id)?;
        self.sessions_digest = self.sessions_digest.wrapping_sub(digest::session(id, &old));
        Some(old)
    }

    /// Indexes a znode read back from storage under its owner (a session, a container,
    /// a TTL), without reading it.
    pub(crate) fn index_loaded(&mut self, path: &str, owner: i64) {
        self.index_owner(path, owner);
        self.dirty_owners.remove(path);
    }

    /// Sets the znodes' digest and data size as persisted with them (see
    /// [`DataTree::totals`]).
    pub(crate) fn restore_totals(&mut self, digest: u64, data_size: u64) {
        self.digest = digest;
        self.data_size = data_size;
    }

    /// What is persisted beside the znodes so that a restart need not read them: the
    /// number of znodes, their digest (without the sessions') and their data size.
    pub(crate) fn totals(&self) -> (u64, u64, u64) {
        (self.len() as u64, self.digest, self.data_size)
    }

    /// The store's changes are written (see [`Store::written`]).
    pub(crate) fn written(&mut self) {
        self.nodes.written();
    }

    /// A failure of the store's own storage since the last call (see
    /// [`Store::take_error`]).
    pub(crate) fn take_store_error(&mut self) -> Option<Error> {
        self.nodes.take_error()
    }

    /// Inserts a znode read back from storage (children are linked afterwards).
    pub(crate) fn insert_loaded(&mut self, path: String, mut node: Znode) {
        node.num_children = 0;
        node.data_hash = digest::data(node.data.as_deref());
        node.acl = self.intern_acl(node.acl);
        self.nodes.insert(&path, Arc::new(node));
    }

    /// The digest of the tree and its sessions: equal on two replicas at the same
    /// [`DataTree::zxid`] exactly when they hold the same state (ZooKeeper 3.6's digest).
    pub fn digest(&self) -> u64 {
        self.digest.wrapping_add(self.sessions_digest)
    }

    /// The raft index of the last entry this tree reflects (its applied index).
    pub fn zxid(&self) -> u64 {
        self.zxid
    }

    /// Records that the tree reflects every entry up to `index` (entries that change
    /// nothing in the tree still advance it).
    pub(crate) fn set_zxid(&mut self, index: u64) {
        self.zxid = self.zxid.max(index);
    }

    /// The digest computed from scratch (what the kept one must always equal).
    #[cfg(test)]
    pub(crate) fn recompute_digest(&self) -> u64 {
        self.sessions
            .iter()
            .fold(self.znodes_digest(), |d, (id, s)| {
                d.wrapping_add(digest::session(*id, s))
            })
    }

    /// The sum of every session's hash, from scratch.
    fn sessions_digest_from_scratch(&self) -> u64 {
        self.sessions
            .iter()
            .fold(0u64, |d, (id, s)| d.wrapping_add(digest::session(*id, s)))
    }

    /// The sum of every znode's hash: a full scan.
    fn znodes_digest(&self) -> u64 {
        self.nodes
            .paths()
            .iter()
            .fold(0u64, |d, p| match self.nodes.get(p) {
                Some(n) => d.wrapping_add(digest::znode(p, &n)),
                None => d,
            })
    }

    /// Changes the znode at `path` through `f`, keeping the digest up to date. False if
    /// there is no such znode.
    fn update(&mut self, path: &str, f: impl FnOnce(&mut Znode)) -> bool {
        let Some(node) = self.nodes.get_mut(path) else {
            return false;
        };
        self.digest = self.digest.wrapping_sub(digest::znode(path, node));
        self.data_size = self.data_size.wrapping_sub(size_of(path, node));
        f(node);
        self.digest = self.digest.wrapping_add(digest::znode(path, node));
        self.data_size = self.data_size.wrapping_add(size_of(path, node));
        true
    }

    fn insert_node(&mut self, path: &str, node: Arc<Znode>) {
        self.digest = self.digest.wrapping_add(digest::znode(path, &node));
        self.data_size = self.data_size.wrapping_add(size_of(path, &node));
        if let Some(old) = self.nodes.insert(path, node) {
            self.digest = self.digest.wrapping_sub(digest::znode(path, &old));
            self.data_size = self.data_size.wrapping_sub(size_of(path, &old));
        }
    }

    /// [`DataTree::insert_node`] where no znode is (a create that looked).
    fn insert_new_node(&mut self, path: &str, node: Arc<Znode>) {
        self.digest = self.digest.wrapping_add(digest::znode(path, &node));
        self.data_size = self.data_size.wrapping_add(size_of(path, &node));
        self.nodes.insert_new(path, node);
    }

    fn take_node(&mut self, path: &str) -> Option<Arc<Znode>> {
        let node = self.nodes.remove(path)?;
        self.digest = self.digest.wrapping_sub(digest::znode(path, &node));
        self.data_size = self.data_size.wrapping_sub(size_of(path, &node));
        Some(node)
    }

    /// Rebuilds every znode's child count, the ephemeral/container/TTL indexes and the
    /// digest from the znodes and sessions present.
    pub(crate) fn link_children(&mut self) {
        self.data_size = 0;
        for p in self.nodes.paths() {
            if let Some(parent) = path::parent(&p) {
                if let Some(parent) = self.nodes.get_mut(parent) {
                    parent.num_children = parent.num_children.saturating_add(1);
                }
            }
            if let Some(n) = self.nodes.get(&p) {
                self.data_size = self.data_size.wrapping_add(size_of(&p, &n));
                self.index_owner(&p, n.ephemeral_owner);
            }
        }
        self.digest = self.znodes_digest();
        self.sessions_digest = self.sessions_digest_from_scratch();
    }

    fn index_owner(&mut self, p: &str, owner: i64) {
        if owner != 0 {
            self.dirty_owners.insert(p.to_string());
        }
        match Owner::from_raw(owner) {
            Owner::None => {}
            Owner::Session(s) => {
                self.ephemerals.entry(s).or_default().insert(p.to_string());
            }
            Owner::Container => {
                self.containers.insert(p.to_string());
            }
            Owner::Ttl(_) => {
                self.ttls.insert(p.to_string());
            }
        }
    }

    fn unindex_owner(&mut self, p: &str, owner: i64) {
        if owner != 0 {
            self.dirty_owners.insert(p.to_string());
        }
        match Owner::from_raw(owner) {
            Owner::None => {}
            Owner::Session(s) => {
                if let Some(set) = self.ephemerals.get_mut(&s) {
                    set.remove(p);
                    if set.is_empty() {
                        self.ephemerals.remove(&s);
                    }
                }
            }
            Owner::Container => {
                self.containers.remove(p);
            }
            Owner::Ttl(_) => {
                self.ttls.remove(p);
            }
        }
    }

    /// The live sessions.
    pub fn sessions(&self) -> &BTreeMap<i64, SessionRecord> {
        &self.sessions
    }

    /// The ephemeral znodes of `session` whose path starts with `prefix`, sorted
    /// (ZooKeeper 3.6's getEphemerals).
    pub fn ephemerals(&self, session: i64, prefix: &str) -> Vec<String> {
        self.ephemerals
            .get(&session)
            .map(|set| {
                set.iter()
                    .filter(|p| p.starts_with(prefix))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// How many znodes are below `path`, at every level (ZooKeeper's
    /// getAllChildrenNumber); `None` if `path` does not exist.
    pub fn descendants(&self, path: &str) -> Option<usize> {
        self.get(path)?;
        Some(self.nodes.descendants(path))
    }

    /// Containers that have had children and have none left, and TTL znodes without
    /// children unchanged for longer than their TTL at `now`: what the leader reaps.
    pub fn reapable(&self, now: i64) -> Vec<String> {
        let mut out = Vec::new();
        for p in &self.containers {
            if let Some(n) = self.nodes.get(p) {
                if n.num_children == 0 && n.creations > 0 {
                    out.push(p.clone());
                }
            }
        }
        for p in &self.ttls {
            if let Some(n) = self.nodes.get(p) {
                if let Owner::Ttl(ttl) = Owner::from_raw(n.ephemeral_owner) {
                    if n.num_children == 0 && now - n.mtime > ttl {
                        out.push(p.clone());
                    }
                }
            }
        }
        out
    }

    /// The length of every path and of every znode's data, summed (ZooKeeper's
    /// approximate data size).
    pub fn data_size(&self) -> u64 {
        self.data_size
    }

    /// How many ephemeral znodes there are.
    pub fn ephemeral_count(&self) -> usize {
        self.ephemerals.values().map(BTreeSet::len).sum()
    }

    /// Number of znodes, the root included.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Always false: the root always exists.
    pub fn is_empty(&self) -> bool {
        self.nodes.len() == 0
    }

    /// The znode at `path`.
    pub fn get(&self, path: &str) -> Option<Arc<Znode>> {
        self.nodes.get(path)
    }

    /// The names of the children of the znode at `path`, sorted (none if there is no
    /// such znode).
    pub fn children(&self, path: &str) -> Vec<String> {
        self.nodes.children(path)
    }

    /// Every path in the tree, in no particular order: a scan of the whole tree, for
    /// inspection and checks.
    pub fn paths(&self) -> Vec<String> {
        self.nodes.paths()
    }

    /// Every znode with its path, sorted by path: a scan of the whole tree.
    #[cfg(test)]
    pub(crate) fn znodes(&self) -> Vec<(String, Arc<Znode>)> {
        let mut paths = self.paths();
        paths.sort_unstable();
        paths
            .into_iter()
            .filter_map(|p| self.get(&p).map(|n| (p, n)))
            .collect()
    }

    /// The paths and the session ids changed (created, modified or deleted) since the
    /// last call, each once.
    pub(crate) fn take_dirty(&mut self) -> Dirty {
        Dirty {
            paths: std::mem::take(&mut self.dirty).into_iter().collect(),
            sessions: std::mem::take(&mut self.dirty_sessions)
                .into_iter()
                .collect(),
            owners: std::mem::take(&mut self.dirty_owners).into_iter().collect(),
        }
    }

    /// The watch events caused by the applies since the last call, in order.
    pub(crate) fn take_events(&mut self) -> Vec<WatchedEvent> {
        std::mem::take(&mut self.events)
    }

    fn event(&mut self, event_type: EventType, path: &str, zxid: i64) {
        self.events.push(WatchedEvent {
            event_type,
            path: path.to_string(),
            zxid,
        });
    }

    /// Applies one request of a session in its session order: `(epoch, seq)` as its host
    /// numbered it (`(0, 0)`, or no session: unordered).
    ///
    /// A host numbers a session's requests 1, 2, 3… within an epoch, and starts a new,
    /// higher epoch (from 1 again) whenever it can no longer vouch that every earlier
    /// request will arrive — a raft leader change with requests in flight, a request
    /// found missing. The request is applied only in order: the next number of the
    /// session's current epoch, or number 1 of a newer epoch. Anything else — a gap (an
    /// earlier request was lost) or an older epoch — is refused with
    /// [`Error::ConnectionLoss`] and changes nothing. So a request of a session is never
    /// applied after a later one of the same session, whatever raft lost or reordered.
    /// The order is replicated state; a request that passes it advances it even when the
    /// operation itself fails.
    ///
    /// An ordered request from a node that no longer hosts the session (`origin`) is
    /// refused with [`Error::SessionMoved`]: the session moved away from it.
    ///
    /// The operation runs with the identities `auth` (see [`DataTree::apply_as`]).
    pub(crate) fn apply_ordered(
        &mut self,
        txn: Txn,
        origin: u64,
        (epoch, seq): (u64, u64),
        auth: &[Id],
        op: &Op,
    ) -> Result<OpResult> {
        if txn.session != 0 && seq != 0 {
            self.set_zxid(txn.zxid as u64);
            let Some(rec) = self.sessions.get(&txn.session) else {
                return Err(Error::SessionExpired);
            };
            if rec.host != origin {
                return Err(Error::SessionMoved);
            }
            let in_order = if epoch == rec.epoch {
                seq == rec.last_seq.wrapping_add(1)
            } else {
                epoch > rec.epoch && seq == 1
            };
            if !in_order {
                return Err(Error::ConnectionLoss(format!(
                    "request {seq} of epoch {epoch} out of session order (session at {}:{})",
                    rec.epoch, rec.last_seq
                )));
            }
            let rec = SessionRecord {
                epoch,
                last_seq: seq,
                ..rec.clone()
            };
            self.add_session(txn.session, rec);
            self.dirty_sessions.insert(txn.session);
        }
        self.apply_as(txn, auth, op)
    }

    /// Applies one operation in the context `txn` with the rights of the super user (as
    /// a [`Node`](crate::Node)'s own calls): no ACL is checked, though ACLs given are
    /// still validated. See [`DataTree::apply_as`]. (The node applies through
    /// `apply_ordered`; this is the tests' shorthand.)
    #[cfg(test)]
    pub(crate) fn apply(&mut self, txn: Txn, op: &Op) -> Result<OpResult> {
        self.apply_as(txn, acl::super_ids(), op)
    }

    /// Applies one operation in the context `txn` on behalf of a caller holding the
    /// identities `auth`, checking ACLs as ZooKeeper's `PrepRequestProcessor`: create
    /// needs CREATE on the parent, delete DELETE on the parent, set_data WRITE, check
    /// READ and set_acl ADMIN on the znode — inside a multi too. A denied operation is
    /// [`Error::NoAuth`]; an ACL that cannot be accepted (see [`acl::fixup`]) is
    /// [`Error::InvalidAcl`]. Sessions and reaping are housekeeping: not checked.
    ///
    /// On error the tree is exactly as before (a failing multi is rolled back) and no
    /// event is reported.
    pub(crate) fn apply_as(&mut self, txn: Txn, auth: &[Id], op: &Op) -> Result<OpResult> {
        match op {
            Op::CreateSession {
                timeout_ms,
                password,
                host,
            } => {
                let session = txn.zxid;
                self.set_zxid(session as u64);
                self.add_session(
                    session,
                    SessionRecord {
                        timeout_ms: *timeout_ms,
                        password: password.clone(),
                        host: *host,
                        epoch: 0,
                        last_seq: 0,
                    },
                );
                self.dirty_sessions.insert(session);
                return Ok(OpResult::SessionCreated { session });
            }
            Op::CloseSession { session, .. } => {
                self.set_zxid(txn.zxid as u64);
                return Ok(self.close_session(txn, *session));
            }
            Op::MoveSession {
                session,
                password,
                host,
            } => {
                self.set_zxid(txn.zxid as u64);
                return self.move_session(txn.zxid, *session, password, *host);
            }
            _ => {}
        }
        self.set_zxid(txn.zxid as u64);
        if txn.session != 0 && !self.sessions.contains_key(&txn.session) {
            return Err(Error::SessionExpired);
        }
        match op {
            Op::Multi(ops) => {
                let mut undo: Undo = Vec::new();
                let events_before = self.events.len();
                let mut results = Vec::with_capacity(ops.len());
                for (index, op) in ops.iter().enumerate() {
                    let res = match op {
                        Op::Create { .. }
                        | Op::Delete { .. }
                        | Op::SetData { .. }
                        | Op::Check { .. } => self.apply_one(txn, auth, op, Some(&mut undo)),
                        _ => Err(Error::BadArguments(
                            "multi takes create, delete, set_data and check only".into(),
                        )),
                    };
                    match res {
                        Ok(r) => results.push(r),
                        Err(e) => {
                            for step in undo.into_iter().rev() {
                                self.undo(step);
                            }
                            // The paths stay dirty: writing their restored values is
                            // harmless, and forgetting an earlier entry's change is not.
                            self.events.truncate(events_before);
                            return Err(Error::MultiFailed {
                                index,
                                source: Box::new(e),
                            });
                        }
                    }
                }
                Ok(OpResult::Multi(results))
            }
            op => self.apply_one(txn, auth, op, None),
        }
    }

    /// Makes `host` the host of `session` if `password` is its password. A wrong password
    /// answers `SessionExpired`, as ZooKeeper answers a reconnect with one; nothing
    /// changes.
    fn move_session(
        &mut self,
        zxid: i64,
        session: i64,
        password: &[u8],
        host: u64,
    ) -> Result<OpResult> {
        let Some(rec) = self.sessions.get(&session) else {
            return Err(Error::SessionExpired);
        };
        // Compared in time independent of where the bytes differ.
        let same = rec.password.len() == password.len()
            && rec
                .password
                .iter()
                .zip(password)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if !same {
            return Err(Error::SessionExpired);
        }
        let rec = SessionRecord {
            host,
            ..rec.clone()
        };
        self.add_session(session, rec);
        self.dirty_sessions.insert(session);
        Ok(OpResult::SessionAttached {
            session,
            zxid: u64::try_from(zxid).unwrap_or(0),
        })
    }

    /// Removes a session and every ephemeral znode it owns (sorted, so every replica
    /// reports the same events). Closing an unknown session changes nothing.
    fn close_session(&mut self, txn: Txn, session: i64) -> OpResult {
        if self.remove_session(session).is_none() {
            return OpResult::SessionClosed { deleted: vec![] };
        }
        self.dirty_sessions.insert(session);
        let deleted: Vec<String> = self
            .ephemerals
            .get(&session)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        for p in &deleted {
            // Ephemerals have no children, so this cannot fail.
            self.remove_node(txn.zxid, p, None);
        }
        OpResult::SessionClosed { deleted }
    }

    /// Deletes the (childless) znode at `p`, updating its parent, indexes and events.
    /// Callers have checked that `p` exists and is not the root.
    fn remove_node(&mut self, zxid: i64, p: &str, undo: Option<&mut Undo>) {
        let Some(parent_path) = path::parent(p).map(str::to_string) else {
            return;
        };
        if self.nodes.get(&parent_path).is_none() {
            // A znode's parent always exists; keep the tree as it is if not.
            return;
        }
        let Some(node) = self.take_node(p) else {
            return;
        };
        self.unindex_owner(p, node.ephemeral_owner);
        let mut pzxid = 0;
        self.update(&parent_path, |parent| {
            parent.num_children = parent.num_children.wrapping_sub(1);
            pzxid = parent.pzxid;
            if zxid > parent.pzxid {
                parent.pzxid = zxid;
            }
        });
        if let Some(undo) = undo {
            undo.push(UndoStep::Deleted {
                path: p.to_string(),
                parent: parent_path.clone(),
                pzxid,
                node,
            });
        }
        self.touch(&parent_path);
        self.touch(p);
        self.event(EventType::NodeDeleted, p, zxid);
        self.event(EventType::NodeChildrenChanged, &parent_path, zxid);
    }

    /// Reverses one step of a failed multi (steps are undone newest first, so each finds
    /// the tree exactly as the step left it).
    fn undo(&mut self, step: UndoStep) {
        match step {
            UndoStep::Created {
                path,
                parent,
                pzxid,
                creations,
            } => {
                if let Some(node) = self.take_node(&path) {
                    self.unindex_owner(&path, node.ephemeral_owner);
                }
                self.update(&parent, |parent| {
                    parent.num_children = parent.num_children.wrapping_sub(1);
                    parent.pzxid = pzxid;
                    parent.creations = creations;
                });
            }
            UndoStep::Deleted {
                path,
                parent,
                pzxid,
                node,
            } => {
                self.update(&parent, |parent| {
                    parent.num_children = parent.num_children.wrapping_add(1);
                    parent.pzxid = pzxid;
                });
                self.index_owner(&path, node.ephemeral_owner);
                self.insert_node(&path, node);
            }
            UndoStep::DataSet {
                path,
                data,
                version,
                mzxid,
                mtime,
            } => {
                self.update(&path, |node| {
                    node.data_hash = digest::data(data.as_deref());
                    node.data = data;
                    node.version = version;
                    node.mzxid = mzxid;
                    node.mtime = mtime;
                });
            }
        }
    }

    /// Sets the data of [`CONFIG_PATH`] to `data`, the ensemble's configuration as
    /// `member::Configuration::render` writes it: the replica's own write, with no ACL or
    /// version check. Its mzxid is `zxid` (the configuration's version) and its mtime
    /// `time`; its version is -1, as ZooKeeper writes it. With `notify`, watches on it
    /// fire (NodeDataChanged). False, changing nothing, when it already holds `data`.
    pub(crate) fn set_config(&mut self, zxid: i64, time: i64, data: Vec<u8>, notify: bool) -> bool {
        let same = self
            .nodes
            .get(CONFIG_PATH)
            .is_some_and(|n| n.data.as_deref() == Some(&data[..]));
        if same {
            return false;
        }
        let changed = self.update(CONFIG_PATH, |node| {
            node.data_hash = digest::data(Some(&data));
            node.data = Some(data);
            node.version = -1;
            node.mzxid = zxid;
            node.mtime = time;
        });
        if changed {
            self.touch(CONFIG_PATH);
            if notify {
                self.event(EventType::NodeDataChanged, CONFIG_PATH, zxid);
            }
        }
        changed
    }

    fn touch(&mut self, path: &str) {
        if !self.dirty.contains(path) {
            self.dirty.insert(path.to_string());
        }
    }

    fn apply_one(
        &mut self,
        txn: Txn,
        auth: &[Id],
        op: &Op,
        undo: Option<&mut Undo>,
    ) -> Result<OpResult> {
        let zxid = txn.zxid;
        match op {
            Op::Create {
                path: p,
                data,
                mode,
                ttl_ms,
                acl: given,
            } => {
                if mode.is_sequential() {
                    path::validate_sequential(p)?;
                } else {
                    path::validate(p)?;
                }
                let owner = if mode.is_ephemeral() {
                    if txn.session == 0 {
                        return Err(Error::BadArguments(
                            "ephemeral znodes need a session".into(),
                        ));
                    }
                    Owner::Session(txn.session)
                } else if mode.is_ttl() {
                    if *ttl_ms <= 0 || *ttl_ms > MAX_TTL_MS {
                        return Err(Error::BadArguments(format!(
                            "ttl must be in 1..={MAX_TTL_MS} ms, got {ttl_ms}"
                        )));
                    }
                    Owner::Ttl(*ttl_ms)
                } else if *mode == CreateMode::Container {
                    Owner::Container
                } else {
                    Owner::None
                };
                if p == "/" && !mode.is_sequential() {
                    return Err(Error::NodeExists(p.clone()));
                }
                // The open ACL (nearly every create's) needs no checking or copying.
                let node_acl = if acl::is_open(given) {
                    None
                } else {
                    Some(acl::fixup(p, given, auth)?)
                };
                // For a sequential create "/q/" the parent is "/q"; for "/q/x-" it is "/q".
                let parent_path = match p.rfind('/') {
                    Some(0) | None => "/".to_string(),
                    Some(i) => p[..i].to_string(),
                };
                let parent = self
                    .nodes
                    .get(&parent_path)
                    .ok_or_else(|| Error::NoNode(parent_path.clone()))?;
                if parent_path == CONFIG_PATH {
                    return Err(Error::NoAuth(parent_path));
                }
                acl::check(&parent.acl, auth, perms::CREATE, p)?;
                let full = if mode.is_sequential() {
                    format!("{p}{:010}", parent.creations)
                } else {
                    p.clone()
                };
                if self.nodes.get(&full).is_some() {
                    return Err(Error::NodeExists(full));
                }
                if let Owner::Session(_) = Owner::from_raw(parent.ephemeral_owner) {
                    return Err(Error::NoChildrenForEphemerals(parent_path));
                }
                if let Some(undo) = undo {
                    undo.push(UndoStep::Created {
                        path: full.clone(),
                        parent: parent_path.clone(),
                        pzxid: parent.pzxid,
                        creations: parent.creations,
                    });
                }
                self.update(&parent_path, |parent| {
                    parent.creations = parent.creations.wrapping_add(1);
                    parent.pzxid = zxid;
                    parent.num_children = parent.num_children.wrapping_add(1);
                });
                let node_acl = match node_acl {
                    None => acl::open_shared(),
                    Some(list) => self.intern_acl_vec(list),
                };
                let mut node = Znode::new(zxid, txn.time, data.clone(), node_acl);
                node.ephemeral_owner = owner.to_raw();
                let stat = node.stat();
                self.insert_new_node(&full, Arc::new(node));
                self.index_owner(&full, owner.to_raw());
                self.touch(&parent_path);
                self.touch(&full);
                self.event(EventType::NodeCreated, &full, zxid);
                self.event(EventType::NodeChildrenChanged, &parent_path, zxid);
                Ok(OpResult::Create { path: full, stat })
            }
            Op::Delete { path: p, version } => {
                path::validate(p)?;
                if SYSTEM_PATHS.contains(&p.as_str()) {
                    return Err(Error::BadArguments(format!("cannot delete {p}")));
                }
                // As ZooKeeper: the parent's permission first, then the znode.
                let parent = path::parent(p)
                    .and_then(|parent| self.nodes.get(parent))
                    .ok_or_else(|| Error::NoNode(p.clone()))?;
                acl::check(&parent.acl, auth, perms::DELETE, p)?;
                let node = self.nodes.get(p).ok_or_else(|| Error::NoNode(p.clone()))?;
                check_version(p, *version, node.version)?;
                if node.num_children != 0 {
                    return Err(Error::NotEmpty(p.clone()));
                }
                self.remove_node(zxid, p, undo);
                Ok(OpResult::Delete)
            }
            Op::SetData {
                path: p,
                data,
                version,
            } => {
                path::validate(p)?;
                let node = self.nodes.get(p).ok_or_else(|| Error::NoNode(p.clone()))?;
                if p == CONFIG_PATH {
                    return Err(Error::NoAuth(p.clone()));
                }
                acl::check(&node.acl, auth, perms::WRITE, p)?;
                check_version(p, *version, node.version)?;
                let mut stat = node.stat();
                self.update(p, |node| {
                    if let Some(undo) = undo {
                        undo.push(UndoStep::DataSet {
                            path: p.clone(),
                            data: std::mem::take(&mut node.data),
                            version: node.version,
                            mzxid: node.mzxid,
                            mtime: node.mtime,
                        });
                    }
                    node.data = data.clone();
                    node.data_hash = digest::data(data.as_deref());
                    node.version = node.version.wrapping_add(1);
                    node.mzxid = zxid;
                    node.mtime = txn.time;
                    stat = node.stat();
                });
                self.touch(p);
                self.event(EventType::NodeDataChanged, p, zxid);
                Ok(OpResult::SetData { stat })
            }
            Op::Check { path: p, version } => {
                path::validate(p)?;
                let node = self.nodes.get(p).ok_or_else(|| Error::NoNode(p.clone()))?;
                acl::check(&node.acl, auth, perms::READ, p)?;
                check_version(p, *version, node.version)?;
                Ok(OpResult::Check)
            }
            Op::SetAcl {
                path: p,
                acl: given,
                version,
            } => {
                path::validate(p)?;
                let new_acl = acl::fixup(p, given, auth)?;
                let node = self.nodes.get(p).ok_or_else(|| Error::NoNode(p.clone()))?;
                if p == CONFIG_PATH {
                    return Err(Error::NoAuth(p.clone()));
                }
                acl::check(&node.acl, auth, perms::ADMIN, p)?;
                check_version(p, *version, node.aversion)?;
                let new_acl = self.intern_acl_vec(new_acl);
                let mut stat = Stat::default();
                self.update(p, |node| {
                    node.acl = new_acl;
                    node.aversion = node.aversion.wrapping_add(1);
                    stat = node.stat();
                });
                // As ZooKeeper: an ACL change fires no watch.
                self.touch(p);
                Ok(OpResult::SetAcl { stat })
            }
            Op::Reap { path: p } => {
                path::validate(p)?;
                let node = self.nodes.get(p).ok_or_else(|| Error::NoNode(p.clone()))?;
                if node.num_children != 0 {
                    return Err(Error::NotEmpty(p.clone()));
                }
                match Owner::from_raw(node.ephemeral_owner) {
                    Owner::Container if node.creations > 0 => {}
                    Owner::Ttl(ttl) if txn.time - node.mtime > ttl => {}
                    _ => {
                        return Err(Error::BadArguments(format!(
                            "{p} is not a reapable container or expired TTL znode"
                        )))
                    }
                }
                self.remove_node(zxid, p, undo);
                Ok(OpResult::Reaped)
            }
            Op::Multi(_)
            | Op::CreateSession { .. }
            | Op::CloseSession { .. }
            | Op::MoveSession { .. } => {
                Err(Error::BadArguments("operation not allowed here".into()))
            }
        }
    }
}

/// What a znode adds to [`DataTree::data_size`].
fn size_of(path: &str, n: &Znode) -> u64 {
    (path.len() + n.data.as_ref().map_or(0, Vec::len)) as u64
}

fn check_version(path: &str, expected: Option<i32>, actual: i32) -> Result<()> {
    match expected {
        Some(v) if v != actual => Err(Error::BadVersion {
            path: path.to_string(),
            expected: v,
            actual,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod acl_tests;
