//! The watch events that turn one tree into another, limited to the paths someone
//! watches: what a node reports when a snapshot replaces its tree (as ZooKeeper's
//! `setWatches` reports what a client missed). The cost follows the watches, not the
//! tree: a path is compared by two point reads, and only a recursive watch walks — the
//! subtree it covers.

use std::collections::BTreeSet;

use super::{DataTree, EventType, WatchedEvent};
use crate::path;

/// The events that turn `old` into `new` at the paths `exact`, and at every path under
/// (and including) each of `subtrees`, as one entry at `zxid` would report them:
/// deletions, creations, data and child-list changes, in path order.
pub(crate) fn between<'a>(
    old: &DataTree,
    new: &DataTree,
    exact: impl IntoIterator<Item = &'a str>,
    subtrees: impl IntoIterator<Item = &'a str>,
    zxid: i64,
) -> Vec<WatchedEvent> {
    let mut paths: BTreeSet<String> = exact.into_iter().map(str::to_string).collect();
    for root in subtrees {
        let mut stack = vec![root.to_string()];
        while let Some(p) = stack.pop() {
            let mut names: BTreeSet<String> = old.children(&p).into_iter().collect();
            names.extend(new.children(&p));
            for name in names {
                stack.push(path::join(&p, &name));
            }
            paths.insert(p);
        }
    }
    let mut out = Vec::new();
    let mut ev = |event_type, path: &str| {
        out.push(WatchedEvent {
            event_type,
            path: path.to_string(),
            zxid,
        })
    };
    for p in &paths {
        match (old.get(p), new.get(p)) {
            (Some(_), None) => ev(EventType::NodeDeleted, p),
            (None, Some(_)) => ev(EventType::NodeCreated, p),
            (Some(a), Some(b)) => {
                if a.czxid != b.czxid {
                    // Deleted and created again in between.
                    ev(EventType::NodeDeleted, p);
                    ev(EventType::NodeCreated, p);
                } else if a.mzxid != b.mzxid {
                    ev(EventType::NodeDataChanged, p);
                }
                if a.pzxid != b.pzxid || a.num_children != b.num_children {
                    ev(EventType::NodeChildrenChanged, p);
                }
            }
            (None, None) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{CreateMode, Op};
    use crate::tree::Txn;

    fn apply(t: &mut DataTree, zxid: i64, op: Op) {
        t.apply(
            Txn {
                zxid,
                time: zxid,
                session: 0,
            },
            &op,
        )
        .unwrap();
    }

    #[test]
    fn only_watched_paths_and_watched_subtrees_are_compared() {
        let mut old = DataTree::new();
        for (z, p) in [(2, "/a"), (3, "/a/x"), (4, "/b"), (5, "/c")] {
            apply(&mut old, z, Op::create(p, vec![], CreateMode::Persistent));
        }
        let mut new = old.clone();
        apply(&mut new, 6, Op::set_data("/a/x", b"v".to_vec(), None));
        apply(
            &mut new,
            7,
            Op::create("/a/y", vec![], CreateMode::Persistent),
        );
        apply(&mut new, 8, Op::delete("/b", None));
        apply(&mut new, 9, Op::set_data("/c", b"v".to_vec(), None));
        let seen = |events: Vec<WatchedEvent>| -> Vec<(String, EventType)> {
            events.into_iter().map(|e| (e.path, e.event_type)).collect()
        };
        assert_eq!(
            seen(between(&old, &new, ["/b", "/zzz"], [], 9)),
            [("/b".to_string(), EventType::NodeDeleted)],
            "/c changed, but nobody watches it"
        );
        assert_eq!(
            seen(between(&old, &new, [], ["/a"], 9)),
            [
                ("/a".to_string(), EventType::NodeChildrenChanged),
                ("/a/x".to_string(), EventType::NodeDataChanged),
                ("/a/y".to_string(), EventType::NodeCreated),
            ]
        );
        assert!(between(&old, &old.clone(), ["/a", "/b"], ["/"], 9).is_empty());
    }
}
