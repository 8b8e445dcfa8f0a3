//! The znode tree: a pure, deterministic state machine.
//!
//! [`DataTree::apply`] takes the zxid (raft index) and time of an entry together with its
//! [`Op`] and changes the tree exactly as ZooKeeper's `DataTree` would. There are no clocks,
//! randomness or I/O here, so every replica applying the same log holds the same tree. The
//! tree records which paths an apply touched ([`DataTree::take_dirty`]) so the node can write
//! exactly those znodes, with the applied index, in one RocksDB batch.

mod stat;

use std::collections::{BTreeSet, HashMap};

pub use stat::Stat;

use crate::command::Op;
use crate::error::{Error, Result};
use crate::path;

/// One znode as the tree holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Znode {
    /// The znode's data.
    pub data: Vec<u8>,
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
    pub(crate) children: BTreeSet<String>,
}

impl Znode {
    fn new(zxid: i64, time: i64, data: Vec<u8>) -> Znode {
        Znode {
            data,
            czxid: zxid,
            mzxid: zxid,
            pzxid: zxid,
            ctime: time,
            mtime: time,
            ..Znode::default()
        }
    }

    /// The znode's [`Stat`].
    pub fn stat(&self) -> Stat {
        let num_children = self.children.len() as i32;
        Stat {
            czxid: self.czxid,
            mzxid: self.mzxid,
            ctime: self.ctime,
            mtime: self.mtime,
            version: self.version,
            cversion: self.creations.wrapping_mul(2).wrapping_sub(num_children),
            aversion: self.aversion,
            ephemeral_owner: self.ephemeral_owner,
            data_length: self.data.len() as i32,
            num_children,
            pzxid: self.pzxid,
        }
    }

    /// Names of the children, sorted.
    pub fn children(&self) -> impl Iterator<Item = &str> {
        self.children.iter().map(String::as_str)
    }
}

/// What a successful operation returns.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// The check passed.
    Check,
    /// Results of a multi, one per operation.
    Multi(Vec<OpResult>),
}

/// The paths ZooKeeper creates in every fresh tree (the root and its reserved subtree).
pub const SYSTEM_PATHS: [&str; 3] = ["/", "/zookeeper", "/zookeeper/quota"];

/// The replicated znode tree.
#[derive(Debug, Clone)]
pub struct DataTree {
    nodes: HashMap<String, Znode>,
    dirty: Vec<String>,
}

impl Default for DataTree {
    fn default() -> Self {
        Self::new()
    }
}

/// Undo record for one touched path inside a multi: its value before the multi.
type Undo = Vec<(String, Option<Znode>)>;

impl DataTree {
    /// A fresh tree: the root, `/zookeeper` and `/zookeeper/quota`, as ZooKeeper starts.
    pub fn new() -> DataTree {
        let mut tree = DataTree {
            nodes: HashMap::new(),
            dirty: Vec::new(),
        };
        for p in SYSTEM_PATHS {
            tree.insert_loaded(p.to_string(), Znode::default());
        }
        tree.link_children();
        tree.dirty = SYSTEM_PATHS.iter().map(|p| p.to_string()).collect();
        tree
    }

    /// An empty tree to be filled with [`DataTree::insert_loaded`] and
    /// [`DataTree::link_children`] when recovering from disk.
    pub(crate) fn empty() -> DataTree {
        DataTree {
            nodes: HashMap::new(),
            dirty: Vec::new(),
        }
    }

    /// Inserts a znode read back from storage (children are linked afterwards).
    pub(crate) fn insert_loaded(&mut self, path: String, mut node: Znode) {
        node.children.clear();
        self.nodes.insert(path, node);
    }

    /// Rebuilds every znode's child set from the paths present.
    pub(crate) fn link_children(&mut self) {
        let paths: Vec<String> = self.nodes.keys().cloned().collect();
        for p in paths {
            if let Some(parent) = path::parent(&p) {
                let name = path::name(&p).to_string();
                if let Some(parent) = self.nodes.get_mut(parent) {
                    parent.children.insert(name);
                }
            }
        }
    }

    /// Number of znodes, the root included.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Always false: the root always exists.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The znode at `path`.
    pub fn get(&self, path: &str) -> Option<&Znode> {
        self.nodes.get(path)
    }

    /// Every path and znode, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Znode)> {
        self.nodes.iter()
    }

    /// The paths changed (created, modified or deleted) since the last call.
    pub(crate) fn take_dirty(&mut self) -> Vec<String> {
        std::mem::take(&mut self.dirty)
    }

    /// Applies one operation as the change with id `zxid` at time `time`.
    ///
    /// On error the tree is exactly as before (a failing multi is rolled back).
    pub fn apply(&mut self, zxid: i64, time: i64, op: &Op) -> Result<OpResult> {
        match op {
            Op::Multi(ops) => {
                let mut undo: Undo = Vec::new();
                let mut results = Vec::with_capacity(ops.len());
                for (index, op) in ops.iter().enumerate() {
                    let res = match op {
                        Op::Multi(_) => Err(Error::BadArguments("nested multi".into())),
                        op => self.apply_one(zxid, time, op, Some(&mut undo)),
                    };
                    match res {
                        Ok(r) => results.push(r),
                        Err(e) => {
                            for (path, old) in undo.into_iter().rev() {
                                match old {
                                    Some(node) => self.nodes.insert(path, node),
                                    None => self.nodes.remove(&path),
                                };
                            }
                            return Err(Error::MultiFailed {
                                index,
                                source: Box::new(e),
                            });
                        }
                    }
                }
                Ok(OpResult::Multi(results))
            }
            op => self.apply_one(zxid, time, op, None),
        }
    }

    /// Remembers the pre-multi value of `path` the first time a multi touches it.
    fn save(&self, undo: &mut Option<&mut Undo>, path: &str) {
        if let Some(undo) = undo {
            if !undo.iter().any(|(p, _)| p == path) {
                undo.push((path.to_string(), self.nodes.get(path).cloned()));
            }
        }
    }

    fn touch(&mut self, path: &str) {
        self.dirty.push(path.to_string());
    }

    fn apply_one(
        &mut self,
        zxid: i64,
        time: i64,
        op: &Op,
        mut undo: Option<&mut Undo>,
    ) -> Result<OpResult> {
        match op {
            Op::Create {
                path: p,
                data,
                mode,
            } => {
                if mode.is_sequential() {
                    path::validate_sequential(p)?;
                } else {
                    path::validate(p)?;
                }
                if p == "/" && !mode.is_sequential() {
                    return Err(Error::NodeExists(p.clone()));
                }
                // For a sequential create "/q/" the parent is "/q"; for "/q/x-" it is "/q".
                let parent_path = match p.rfind('/') {
                    Some(0) => "/".to_string(),
                    Some(i) => p[..i].to_string(),
                    None => unreachable!("validated paths are absolute"),
                };
                let parent = self
                    .nodes
                    .get(&parent_path)
                    .ok_or_else(|| Error::NoNode(parent_path.clone()))?;
                if parent.ephemeral_owner != 0 {
                    return Err(Error::NoChildrenForEphemerals(parent_path));
                }
                let full = if mode.is_sequential() {
                    format!("{p}{:010}", parent.creations)
                } else {
                    p.clone()
                };
                let name = path::name(&full).to_string();
                if parent.children.contains(&name) {
                    return Err(Error::NodeExists(full));
                }
                self.save(&mut undo, &parent_path);
                self.save(&mut undo, &full);
                let parent = self.nodes.get_mut(&parent_path).expect("checked above");
                parent.creations = parent.creations.wrapping_add(1);
                parent.pzxid = zxid;
                parent.children.insert(name);
                let node = Znode::new(zxid, time, data.clone());
                let stat = node.stat();
                self.nodes.insert(full.clone(), node);
                self.touch(&parent_path);
                self.touch(&full);
                Ok(OpResult::Create { path: full, stat })
            }
            Op::Delete { path: p, version } => {
                path::validate(p)?;
                if SYSTEM_PATHS.contains(&p.as_str()) {
                    return Err(Error::BadArguments(format!("cannot delete {p}")));
                }
                let node = self.nodes.get(p).ok_or_else(|| Error::NoNode(p.clone()))?;
                check_version(p, *version, node.version)?;
                if !node.children.is_empty() {
                    return Err(Error::NotEmpty(p.clone()));
                }
                let parent_path = path::parent(p).expect("not the root").to_string();
                self.save(&mut undo, &parent_path);
                self.save(&mut undo, p);
                self.nodes.remove(p);
                let parent = self
                    .nodes
                    .get_mut(&parent_path)
                    .expect("a znode's parent exists");
                parent.children.remove(path::name(p));
                if zxid > parent.pzxid {
                    parent.pzxid = zxid;
                }
                self.touch(&parent_path);
                self.touch(p);
                Ok(OpResult::Delete)
            }
            Op::SetData {
                path: p,
                data,
                version,
            } => {
                path::validate(p)?;
                let node = self.nodes.get(p).ok_or_else(|| Error::NoNode(p.clone()))?;
                check_version(p, *version, node.version)?;
                self.save(&mut undo, p);
                let node = self.nodes.get_mut(p).expect("checked above");
                node.data = data.clone();
                node.version = node.version.wrapping_add(1);
                node.mzxid = zxid;
                node.mtime = time;
                let stat = node.stat();
                self.touch(p);
                Ok(OpResult::SetData { stat })
            }
            Op::Check { path: p, version } => {
                path::validate(p)?;
                let node = self.nodes.get(p).ok_or_else(|| Error::NoNode(p.clone()))?;
                check_version(p, *version, node.version)?;
                Ok(OpResult::Check)
            }
            Op::Multi(_) => Err(Error::BadArguments("nested multi".into())),
        }
    }
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
