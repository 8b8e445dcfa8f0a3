//! Unit tests of the state machine alone: every operation and every error path, and that a
//! failed operation changes nothing.

use super::*;
use crate::command::CreateMode::*;

fn tree_with(paths: &[&str]) -> (DataTree, i64) {
    let mut t = DataTree::new();
    let mut zxid = 0;
    for p in paths {
        zxid += 1;
        t.apply(
            zxid,
            1000 + zxid,
            &Op::create(*p, p.as_bytes().to_vec(), Persistent),
        )
        .unwrap();
    }
    (t, zxid)
}

fn snapshot(t: &DataTree) -> Vec<(String, Znode)> {
    let mut v: Vec<_> = t.iter().map(|(p, n)| (p.clone(), n.clone())).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn fresh_tree_matches_zookeeper() {
    let t = DataTree::new();
    let root = t.get("/").unwrap().stat();
    assert_eq!(root.num_children, 1);
    // ZooKeeper reports cversion -1 for a fresh root: 2 * 0 creations - 1 child.
    assert_eq!(root.cversion, -1);
    assert_eq!(
        t.get("/zookeeper").unwrap().children().collect::<Vec<_>>(),
        ["quota"]
    );
}

#[test]
fn create_sets_stat_and_parent() {
    let (mut t, _) = tree_with(&["/a"]);
    let r = t
        .apply(7, 5000, &Op::create("/a/b", b"hi".to_vec(), Persistent))
        .unwrap();
    let OpResult::Create { path, stat } = r else {
        panic!()
    };
    assert_eq!(path, "/a/b");
    assert_eq!((stat.czxid, stat.mzxid, stat.pzxid), (7, 7, 7));
    assert_eq!((stat.ctime, stat.mtime), (5000, 5000));
    assert_eq!((stat.version, stat.cversion, stat.data_length), (0, 0, 2));
    let a = t.get("/a").unwrap().stat();
    assert_eq!((a.cversion, a.num_children, a.pzxid, a.mzxid), (1, 1, 7, 1));
    assert_eq!(t.get("/a/b").unwrap().data, b"hi");
}

#[test]
fn sequential_suffix_is_parent_creation_count() {
    let (mut t, _) = tree_with(&["/q"]);
    let mut names = vec![];
    for z in 10..13 {
        let r = t
            .apply(z, 0, &Op::create("/q/n-", vec![], PersistentSequential))
            .unwrap();
        let OpResult::Create { path, .. } = r else {
            panic!()
        };
        names.push(path);
    }
    assert_eq!(
        names,
        ["/q/n-0000000000", "/q/n-0000000001", "/q/n-0000000002"]
    );
    // Deleting does not reuse a number; cversion counts creations and deletions.
    t.apply(13, 0, &Op::delete("/q/n-0000000002", None))
        .unwrap();
    assert_eq!(t.get("/q").unwrap().stat().cversion, 4);
    let r = t
        .apply(14, 0, &Op::create("/q/", vec![], PersistentSequential))
        .unwrap();
    assert_eq!(
        r,
        OpResult::Create {
            path: "/q/0000000003".into(),
            stat: t.get("/q/0000000003").unwrap().stat()
        }
    );
}

#[test]
fn create_errors_change_nothing() {
    let (mut t, _) = tree_with(&["/a"]);
    let before = snapshot(&t);
    let cases = [
        (
            Op::create("/a", vec![], Persistent),
            Error::NodeExists("/a".into()),
        ),
        (
            Op::create("/x/y", vec![], Persistent),
            Error::NoNode("/x".into()),
        ),
        (
            Op::create("/", vec![], Persistent),
            Error::NodeExists("/".into()),
        ),
    ];
    for (op, err) in cases {
        assert_eq!(t.apply(50, 0, &op).unwrap_err(), err);
    }
    for bad in ["a", "/a/", "/a//b", "/a/./b", "/a\0"] {
        assert!(matches!(
            t.apply(51, 0, &Op::create(bad, vec![], Persistent)),
            Err(Error::InvalidPath { .. })
        ));
    }
    assert_eq!(snapshot(&t), before);
}

#[test]
fn ephemeral_parents_refuse_children() {
    let (mut t, _) = tree_with(&["/e"]);
    // Ephemeral creation arrives with sessions; mark the node as owned to test the rule.
    t.nodes.get_mut("/e").unwrap().ephemeral_owner = 0x55;
    let before = snapshot(&t);
    assert_eq!(
        t.apply(9, 0, &Op::create("/e/c", vec![], Persistent))
            .unwrap_err(),
        Error::NoChildrenForEphemerals("/e".into())
    );
    assert_eq!(snapshot(&t), before);
}

#[test]
fn set_data_versions() {
    let (mut t, _) = tree_with(&["/a"]);
    let r = t
        .apply(5, 9000, &Op::set_data("/a", b"v1".to_vec(), Some(0)))
        .unwrap();
    let OpResult::SetData { stat } = r else {
        panic!()
    };
    assert_eq!(
        (stat.version, stat.mzxid, stat.mtime, stat.czxid),
        (1, 5, 9000, 1)
    );
    let before = snapshot(&t);
    assert_eq!(
        t.apply(6, 0, &Op::set_data("/a", vec![], Some(0)))
            .unwrap_err(),
        Error::BadVersion {
            path: "/a".into(),
            expected: 0,
            actual: 1
        }
    );
    assert_eq!(
        t.apply(6, 0, &Op::set_data("/nope", vec![], None))
            .unwrap_err(),
        Error::NoNode("/nope".into())
    );
    assert_eq!(snapshot(&t), before);
    t.apply(7, 0, &Op::set_data("/a", b"v2".to_vec(), None))
        .unwrap();
    assert_eq!(t.get("/a").unwrap().stat().version, 2);
}

#[test]
fn delete_rules() {
    let (mut t, _) = tree_with(&["/a", "/a/b"]);
    let before = snapshot(&t);
    assert_eq!(
        t.apply(9, 0, &Op::delete("/a", None)).unwrap_err(),
        Error::NotEmpty("/a".into())
    );
    assert_eq!(
        t.apply(9, 0, &Op::delete("/zz", None)).unwrap_err(),
        Error::NoNode("/zz".into())
    );
    assert!(matches!(
        t.apply(9, 0, &Op::delete("/a/b", Some(4))),
        Err(Error::BadVersion { .. })
    ));
    assert!(matches!(
        t.apply(9, 0, &Op::delete("/", None)),
        Err(Error::BadArguments(_))
    ));
    assert!(matches!(
        t.apply(9, 0, &Op::delete("/zookeeper", None)),
        Err(Error::BadArguments(_))
    ));
    assert_eq!(snapshot(&t), before);
    t.apply(10, 0, &Op::delete("/a/b", Some(0))).unwrap();
    let a = t.get("/a").unwrap().stat();
    assert_eq!((a.num_children, a.pzxid, a.cversion), (0, 10, 2));
    assert!(t.get("/a/b").is_none());
}

#[test]
fn multi_is_all_or_nothing() {
    let (mut t, _) = tree_with(&["/a"]);
    let before = snapshot(&t);
    let err = t
        .apply(
            5,
            0,
            &Op::Multi(vec![
                Op::create("/a/x", vec![], Persistent),
                Op::set_data("/a", b"changed".to_vec(), None),
                Op::delete("/a/x", None),
                Op::create("/q", vec![], PersistentSequential),
                Op::check("/a", Some(0)), // version is now 1: fails
            ]),
        )
        .unwrap_err();
    assert!(
        matches!(err, Error::MultiFailed { index: 4, ref source } if matches!(**source, Error::BadVersion { .. }))
    );
    assert_eq!(snapshot(&t), before);

    let r = t
        .apply(
            6,
            0,
            &Op::Multi(vec![
                Op::check("/a", Some(0)),
                Op::create("/a/x", vec![], Persistent),
                Op::create("/a/x/", vec![], PersistentSequential),
                Op::set_data("/a", b"new".to_vec(), Some(0)),
            ]),
        )
        .unwrap();
    let OpResult::Multi(rs) = r else { panic!() };
    assert_eq!(rs.len(), 4);
    assert!(matches!(&rs[2], OpResult::Create { path, .. } if path == "/a/x/0000000000"));
    assert_eq!(t.get("/a").unwrap().data, b"new");
}

#[test]
fn dirty_paths_cover_every_change() {
    let (mut t, _) = tree_with(&[]);
    t.take_dirty();
    t.apply(1, 0, &Op::create("/a", vec![], Persistent))
        .unwrap();
    t.apply(2, 0, &Op::set_data("/a", vec![1], None)).unwrap();
    let mut d = t.take_dirty();
    d.sort();
    d.dedup();
    assert_eq!(d, ["/", "/a"]);
    t.apply(3, 0, &Op::delete("/a", None)).unwrap();
    assert!(t.take_dirty().contains(&"/a".to_string()));
}

#[test]
fn same_log_same_tree() {
    let ops = [
        Op::create("/s", vec![], Persistent),
        Op::create("/s/", vec![1], PersistentSequential),
        Op::create("/s/", vec![2], PersistentSequential),
        Op::delete("/s/0000000000", None),
        Op::set_data("/s", vec![9], Some(0)),
        Op::create("/nope/x", vec![], Persistent),
    ];
    let mut a = DataTree::new();
    let mut b = DataTree::new();
    for (i, op) in ops.iter().enumerate() {
        let ra = a.apply(i as i64 + 1, 100, op);
        let rb = b.apply(i as i64 + 1, 100, op);
        assert_eq!(ra, rb);
    }
    assert_eq!(snapshot(&a), snapshot(&b));
}
