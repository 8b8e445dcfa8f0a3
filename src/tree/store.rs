//! The tree's store seam: where [`DataTree`](super::DataTree) keeps its znodes.
//!
//! The state machine reads and writes znodes only through [`Store`], so the same
//! deterministic apply runs over any store that keeps what it was given: the in-memory
//! [`MemStore`] here (the tests' and the model check's), or one backed by the node's
//! database. A store keeps znodes by path and lists a znode's children; the znodes'
//! fields — the child count and the creation counter among them — are the state
//! machine's to keep.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use super::Znode;
use crate::error::Error;
use crate::path;

/// Where a tree keeps its znodes, by path.
pub(crate) trait Store: Send + Sync + std::fmt::Debug {
    /// The znode at `path`.
    fn get(&self, path: &str) -> Option<Arc<Znode>>;

    /// The znode at `path`, to change in place.
    fn get_mut(&mut self, path: &str) -> Option<&mut Znode>;

    /// Puts `node` at `path` (listed among its parent's children), returning the znode
    /// it replaces.
    fn insert(&mut self, path: &str, node: Arc<Znode>) -> Option<Arc<Znode>>;

    /// Puts `node` at `path`, where the caller knows there is none (a create that looked).
    fn insert_new(&mut self, path: &str, node: Arc<Znode>) {
        self.insert(path, node);
    }

    /// Takes the znode at `path` away (and off its parent's list of children).
    fn remove(&mut self, path: &str) -> Option<Arc<Znode>>;

    /// The names of the children of `path`, sorted.
    fn children(&self, path: &str) -> Vec<String>;

    /// How many znodes the store holds.
    fn len(&self) -> usize;

    /// How many znodes are below `path`, at every level (`path` itself not counted).
    fn descendants(&self, path: &str) -> usize {
        let mut stack = vec![path.to_string()];
        let mut count = 0usize;
        while let Some(p) = stack.pop() {
            for c in self.children(&p) {
                count += 1;
                stack.push(path::join(&p, &c));
            }
        }
        count
    }

    /// Every path the store holds, in no particular order: a full scan, for dumps,
    /// checks and tests.
    fn paths(&self) -> Vec<String>;

    /// A copy of the store, as it is now, in memory (for tests).
    #[cfg(test)]
    fn box_clone(&self) -> Box<dyn Store>;

    /// Everything changed so far is durable (the node wrote its batch): a store that
    /// holds changes apart until then may let them go.
    fn written(&mut self) {}

    /// The first failure of the store's own storage since the last call (a read the
    /// disk refused): the tree read through it since then cannot be trusted.
    fn take_error(&mut self) -> Option<Error> {
        None
    }
}

/// A store in memory: znodes by path, and the sorted names of each parent's children.
#[derive(Debug, Clone, Default)]
pub(crate) struct MemStore {
    nodes: HashMap<String, Arc<Znode>>,
    /// Children's names by parent path; a parent without children has no entry.
    children: HashMap<String, BTreeSet<String>>,
}

impl Store for MemStore {
    fn get(&self, path: &str) -> Option<Arc<Znode>> {
        self.nodes.get(path).cloned()
    }

    fn get_mut(&mut self, path: &str) -> Option<&mut Znode> {
        self.nodes.get_mut(path).map(Arc::make_mut)
    }

    fn insert(&mut self, p: &str, node: Arc<Znode>) -> Option<Arc<Znode>> {
        let old = self.nodes.insert(p.to_string(), node);
        if old.is_none() {
            if let Some(parent) = path::parent(p) {
                self.children
                    .entry(parent.to_string())
                    .or_default()
                    .insert(path::name(p).to_string());
            }
        }
        old
    }

    fn remove(&mut self, p: &str) -> Option<Arc<Znode>> {
        let old = self.nodes.remove(p)?;
        if let Some(parent) = path::parent(p) {
            if let Some(names) = self.children.get_mut(parent) {
                names.remove(path::name(p));
                if names.is_empty() {
                    self.children.remove(parent);
                }
            }
        }
        Some(old)
    }

    fn children(&self, path: &str) -> Vec<String> {
        self.children
            .get(path)
            .map(|names| names.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn len(&self) -> usize {
        self.nodes.len()
    }

    fn paths(&self) -> Vec<String> {
        self.nodes.keys().cloned().collect()
    }

    #[cfg(test)]
    fn box_clone(&self) -> Box<dyn Store> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mem_store_lists_children_sorted_as_they_come_and_go() {
        let mut s = MemStore::default();
        for p in ["/", "/b", "/a", "/a/x", "/c"] {
            assert!(s.insert(p, Arc::new(Znode::default())).is_none());
        }
        assert!(s.insert("/a", Arc::new(Znode::default())).is_some());
        assert_eq!(s.children("/"), ["a", "b", "c"]);
        assert_eq!(s.children("/a"), ["x"]);
        assert!(s.children("/b").is_empty());
        assert!(s.remove("/a/x").is_some());
        assert!(s.remove("/a/x").is_none());
        assert!(s.children("/a").is_empty());
        assert_eq!(s.len(), 4);
        s.get_mut("/b").unwrap().version = 3;
        assert_eq!(s.get("/b").unwrap().version, 3);
        let mut paths = s.paths();
        paths.sort();
        assert_eq!(paths, ["/", "/a", "/b", "/c"]);
    }
}
