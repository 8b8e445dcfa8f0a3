//! ZooKeeper's tree as its own `DataTree` holds it while a data directory is loaded: znodes
//! with their persisted stat, the ephemerals by session and the open sessions. A snapshot
//! is read into it, then the transaction log is replayed on it the way ZooKeeper's
//! `DataTree.processTxn` replays it: a fuzzy snapshot may already hold some of the
//! changes replayed, so a create of a znode that exists or a delete of one that does not
//! is skipped (with ZooKeeper's fix-up of the parent's cversion), never an error.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;

use crate::acl::Acl;

/// ZooKeeper's `StatPersisted`: `cversion` counts child creations only (the cversion a
/// client sees is derived from it and the child count, as zkraft's is).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct StatPersisted {
    pub czxid: i64,
    pub mzxid: i64,
    pub ctime: i64,
    pub mtime: i64,
    pub version: i32,
    pub cversion: i32,
    pub aversion: i32,
    pub ephemeral_owner: i64,
    pub pzxid: i64,
}

/// One znode.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ZkNode {
    pub data: Option<Vec<u8>>,
    pub acl: Vec<Acl>,
    pub stat: StatPersisted,
    /// How many children it has.
    pub children: u32,
}

/// A `create` as the log holds it (any of create, create2, createContainer, createTTL).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Create {
    pub path: String,
    pub data: Option<Vec<u8>>,
    pub acl: Vec<Acl>,
    /// `ephemeralOwner` of the new znode: 0, the session, or the container/TTL marker.
    pub owner: i64,
    /// The parent's cversion after the create (-1 in a log of ZooKeeper 3.2 and before).
    pub parent_cversion: i32,
    /// Whether it was a plain `create` (opcode 1): only those fix up the parent when the
    /// znode already exists (ZooKeeper's `processTxn`).
    pub plain: bool,
}

/// What one logged transaction (or one operation of a multi) does.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Change {
    Create(Create),
    Delete(String),
    SetData {
        path: String,
        data: Option<Vec<u8>>,
        version: i32,
    },
    SetAcl {
        path: String,
        acl: Vec<Acl>,
        version: i32,
    },
    CreateSession {
        timeout_ms: i32,
    },
    /// The session's ephemerals go; `paths` lists them when the log names them.
    CloseSession {
        paths: Option<Vec<String>>,
    },
    /// A multi: applied whole unless one of its operations is an error.
    Multi(Vec<Change>),
    /// An error, a version check or a reconfig's new configuration: no change to the tree
    /// zkraft takes (it writes its own `/zookeeper/config`).
    Nothing,
    /// An error inside a multi: the multi changed nothing.
    Error,
}

/// One transaction of the log.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Txn {
    pub session: i64,
    pub zxid: i64,
    pub time: i64,
    pub change: Change,
}

/// The tree being loaded.
#[derive(Debug, Default)]
pub(super) struct ZkTree {
    /// Every znode by path (`/` for the root).
    pub nodes: BTreeMap<String, ZkNode>,
    /// The open sessions: id → timeout in milliseconds.
    pub sessions: BTreeMap<i64, i32>,
    /// Paths of each session's ephemerals.
    ephemerals: HashMap<i64, BTreeSet<String>>,
}

/// The parent of `path` (`/` for a child of the root); `None` for the root.
pub(super) fn parent(path: &str) -> Option<&str> {
    match path.rfind('/') {
        None => None,
        Some(_) if path == "/" => None,
        Some(0) => Some("/"),
        Some(i) => Some(&path[..i]),
    }
}

/// Whether `owner` is a session (not 0, a container or a TTL marker).
pub(super) fn is_session_owner(owner: i64) -> bool {
    owner != 0 && (owner as u64) >> 56 != 0xff && owner != crate::tree::CONTAINER_OWNER
}

impl ZkTree {
    /// Adds a znode read from a snapshot; its parent must be there already (snapshots
    /// list parents first). Returns false when it is not.
    pub(super) fn insert_loaded(&mut self, path: String, node: ZkNode) -> bool {
        if let Some(p) = parent(&path) {
            match self.nodes.get_mut(p) {
                Some(parent) => parent.children += 1,
                None => return false,
            }
        }
        if is_session_owner(node.stat.ephemeral_owner) {
            self.ephemerals
                .entry(node.stat.ephemeral_owner)
                .or_default()
                .insert(path.clone());
        }
        self.nodes.insert(path, node);
        true
    }

    /// Replays one transaction.
    pub(super) fn apply(&mut self, txn: &Txn) {
        match &txn.change {
            Change::CreateSession { timeout_ms } => {
                self.sessions.insert(txn.session, *timeout_ms);
            }
            Change::CloseSession { paths } => {
                self.sessions.remove(&txn.session);
                let mut doomed = self.ephemerals.remove(&txn.session).unwrap_or_default();
                if let Some(paths) = paths {
                    doomed.extend(paths.iter().cloned());
                }
                // Children before parents: an ephemeral has none, but a listed path might.
                for p in doomed.iter().rev() {
                    self.delete(p, txn.zxid);
                }
            }
            Change::Multi(ops) => {
                if ops.iter().any(|c| matches!(c, Change::Error)) {
                    return;
                }
                for op in ops {
                    self.change(op, txn);
                }
            }
            other => self.change(other, txn),
        }
    }

    fn change(&mut self, change: &Change, txn: &Txn) {
        match change {
            Change::Create(c) => self.create(c, txn),
            Change::Delete(p) => {
                self.delete(p, txn.zxid);
            }
            Change::SetData {
                path,
                data,
                version,
            } => {
                if let Some(n) = self.nodes.get_mut(path) {
                    n.data = data.clone();
                    n.stat.mtime = txn.time;
                    n.stat.mzxid = txn.zxid;
                    n.stat.version = *version;
                }
            }
            Change::SetAcl { path, acl, version } => {
                if let Some(n) = self.nodes.get_mut(path) {
                    n.stat.aversion = *version;
                    n.acl = acl.clone();
                }
            }
            // Only at the top level (a multi holds none of these).
            Change::CreateSession { .. } | Change::CloseSession { .. } | Change::Multi(_) => {}
            Change::Nothing | Change::Error => {}
        }
    }

    /// ZooKeeper's `createNode`, and the fix-up `processTxn` makes when a plain create
    /// finds its znode there already.
    fn create(&mut self, c: &Create, txn: &Txn) {
        let Some(parent_path) = parent(&c.path) else {
            return;
        };
        let exists = self.nodes.contains_key(&c.path);
        let Some(parent) = self.nodes.get_mut(parent_path) else {
            return;
        };
        if exists {
            if c.plain {
                let cversion = if c.parent_cversion == -1 {
                    parent.stat.cversion.wrapping_add(1)
                } else {
                    c.parent_cversion
                };
                if cversion > parent.stat.cversion {
                    parent.stat.cversion = cversion;
                    parent.stat.pzxid = txn.zxid;
                }
            }
            return;
        }
        // Java's int arithmetic: a cversion at i32::MAX wraps (and then moves nothing).
        let cversion = if c.parent_cversion == -1 {
            parent.stat.cversion.wrapping_add(1)
        } else {
            c.parent_cversion
        };
        if cversion > parent.stat.cversion {
            parent.stat.cversion = cversion;
            parent.stat.pzxid = txn.zxid;
        }
        parent.children += 1;
        let node = ZkNode {
            data: c.data.clone(),
            acl: c.acl.clone(),
            stat: StatPersisted {
                czxid: txn.zxid,
                mzxid: txn.zxid,
                pzxid: txn.zxid,
                ctime: txn.time,
                mtime: txn.time,
                ephemeral_owner: c.owner,
                ..StatPersisted::default()
            },
            children: 0,
        };
        if is_session_owner(c.owner) {
            self.ephemerals
                .entry(c.owner)
                .or_default()
                .insert(c.path.clone());
        }
        self.nodes.insert(c.path.clone(), node);
    }

    /// ZooKeeper's `deleteNode`: the parent's pzxid moves even when the child is gone
    /// already (a fuzzy snapshot may hold the delete). Returns whether a znode went.
    ///
    /// A znode ZooKeeper deletes never has children, except in a replay over a fuzzy
    /// snapshot (which may hold children created after the delete). ZooKeeper then
    /// unlinks the znode from its parent and drops it from its map, leaving the
    /// descendants in the map, unreachable: no snapshot or client sees them again, and a
    /// later create of the same path makes a new znode. They go here, since this map is
    /// the tree written. ZooKeeper's ephemeral lists keep them, and so do these: a later
    /// close of their session deletes their paths again, moving the pzxid of a parent
    /// created anew meanwhile, as it does in ZooKeeper.
    fn delete(&mut self, path: &str, zxid: i64) -> bool {
        let Some(parent_path) = parent(path) else {
            return false;
        };
        let exists = self.nodes.contains_key(path);
        let Some(parent) = self.nodes.get_mut(parent_path) else {
            return false;
        };
        if exists {
            parent.children = parent.children.saturating_sub(1);
        }
        if zxid > parent.stat.pzxid {
            parent.stat.pzxid = zxid;
        }
        let Some(node) = self.nodes.remove(path) else {
            return false;
        };
        let owner = node.stat.ephemeral_owner;
        if is_session_owner(owner) {
            if let Some(set) = self.ephemerals.get_mut(&owner) {
                set.remove(path);
            }
        }
        self.drop_descendants(path);
        true
    }

    /// Removes every znode under `path` from the map (see [`ZkTree::delete`]).
    fn drop_descendants(&mut self, path: &str) {
        let prefix = format!("{path}/");
        let doomed: Vec<String> = self
            .nodes
            .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
            .take_while(|(p, _)| p.starts_with(&prefix))
            .map(|(p, _)| p.clone())
            .collect();
        for p in doomed {
            self.nodes.remove(&p);
        }
    }

    /// Drops the ephemerals whose session is not open at the end (a snapshot can hold
    /// some whose session ended before it and was never closed in the logs read), and
    /// returns how many znodes went.
    ///
    /// ZooKeeper does this when it loads its data directory to serve
    /// (`ZooKeeperServer.loadData`: every session with ephemerals that is not among the
    /// sessions loaded is killed with `killSession(session, lastProcessedZxid)`), not as a
    /// transaction: each path of the session's ephemerals is deleted by `deleteNode` with
    /// `zxid` the last zxid processed, so the parent loses the child and its pzxid moves
    /// up to that zxid, its cversion stays. A session that expires later is closed by a
    /// closeSession transaction of a new zxid instead, which an import cannot make up:
    /// the load-time clean-up is what the ZooKeeper ensemble would do with this state
    /// when it next started, so the import does the same.
    pub(super) fn drop_orphan_ephemerals(&mut self, zxid: i64) -> usize {
        let orphans: Vec<i64> = self
            .ephemerals
            .keys()
            .copied()
            .filter(|s| !self.sessions.contains_key(s))
            .collect();
        let mut dropped = 0;
        for s in orphans {
            for p in self.ephemerals.remove(&s).unwrap_or_default() {
                if self.delete(&p, zxid) {
                    dropped += 1;
                }
            }
        }
        dropped
    }

    /// Paths of the ephemerals of `session`.
    #[cfg(test)]
    pub(super) fn ephemerals_of(&self, session: i64) -> Vec<String> {
        self.ephemerals
            .get(&session)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> ZkTree {
        let mut t = ZkTree::default();
        assert!(t.insert_loaded(
            "/".into(),
            ZkNode {
                data: None,
                acl: vec![],
                stat: StatPersisted::default(),
                children: 0
            }
        ));
        t
    }

    fn create(path: &str, owner: i64, parent_cversion: i32) -> Change {
        Change::Create(Create {
            path: path.into(),
            data: Some(b"d".to_vec()),
            acl: vec![],
            owner,
            parent_cversion,
            plain: true,
        })
    }

    fn txn(zxid: i64, session: i64, change: Change) -> Txn {
        Txn {
            session,
            zxid,
            time: 1000 + zxid,
            change,
        }
    }

    #[test]
    fn replays_as_zookeepers_data_tree() {
        let mut t = root();
        t.apply(&txn(1, 7, Change::CreateSession { timeout_ms: 4000 }));
        t.apply(&txn(2, 7, create("/a", 0, 1)));
        t.apply(&txn(3, 7, create("/a/e", 7, 1)));
        t.apply(&txn(
            4,
            7,
            Change::SetData {
                path: "/a".into(),
                data: None,
                version: 1,
            },
        ));
        let a = &t.nodes["/a"];
        assert_eq!((a.data.clone(), a.stat.version, a.stat.mzxid), (None, 1, 4));
        assert_eq!((a.stat.cversion, a.stat.pzxid, a.children), (1, 3, 1));
        assert_eq!(t.ephemerals_of(7), ["/a/e"]);
        // A failed multi changes nothing; a good one changes everything.
        t.apply(&txn(
            5,
            7,
            Change::Multi(vec![create("/b", 0, 2), Change::Error]),
        ));
        assert!(!t.nodes.contains_key("/b"));
        t.apply(&txn(
            6,
            7,
            Change::Multi(vec![create("/b", 0, 2), create("/c", 0, 3)]),
        ));
        assert_eq!(t.nodes["/"].children, 3);
        // Closing the session deletes its ephemerals, moving the parent's pzxid.
        t.apply(&txn(7, 7, Change::CloseSession { paths: None }));
        assert!(!t.nodes.contains_key("/a/e"));
        assert_eq!((t.nodes["/a"].stat.pzxid, t.nodes["/a"].children), (7, 0));
        assert!(t.sessions.is_empty());
    }

    #[test]
    fn tolerates_what_a_fuzzy_snapshot_already_holds() {
        let mut t = root();
        t.apply(&txn(2, 0, create("/a", 0, 1)));
        // The same create again (the snapshot held it): the parent is fixed up only.
        t.apply(&txn(3, 0, create("/a", 0, 5)));
        assert_eq!(
            (t.nodes["/"].stat.cversion, t.nodes["/"].stat.pzxid),
            (5, 3)
        );
        assert_eq!(t.nodes["/a"].stat.czxid, 2);
        // A delete of a missing znode still moves the parent's pzxid.
        t.apply(&txn(9, 0, Change::Delete("/nothing".into())));
        assert_eq!(t.nodes["/"].stat.pzxid, 9);
        // A create under a missing parent is skipped.
        t.apply(&txn(10, 0, create("/x/y", 0, 1)));
        assert!(!t.nodes.contains_key("/x/y"));
    }

    #[test]
    fn orphan_ephemerals_are_dropped() {
        let mut t = root();
        t.apply(&txn(2, 0, create("/g", 0, 1)));
        t.apply(&txn(3, 9, create("/g/e", 9, 1)));
        assert_eq!(t.drop_orphan_ephemerals(5), 1);
        assert!(!t.nodes.contains_key("/g/e"));
        assert_eq!((t.nodes["/g"].children, t.nodes["/g"].stat.pzxid), (0, 5));
        assert_eq!(t.nodes["/g"].stat.cversion, 1);
    }

    #[test]
    fn parents_and_owners() {
        assert_eq!(parent("/"), None);
        assert_eq!(parent("/a"), Some("/"));
        assert_eq!(parent("/a/b"), Some("/a"));
        assert!(is_session_owner(0x1000_0000_0000_0001));
        assert!(!is_session_owner(0));
        assert!(!is_session_owner(i64::MIN));
        assert!(!is_session_owner(0xff00_0000_0000_1000_u64 as i64));
    }
}
