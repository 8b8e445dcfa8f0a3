//! Unit tests of the state machine alone: every operation and every error path, and that a
//! failed operation changes nothing.

use super::*;
use crate::command::CreateMode::*;

fn tx(zxid: i64, time: i64) -> Txn {
    Txn {
        zxid,
        time,
        session: 0,
    }
}

fn tree_with(paths: &[&str]) -> (DataTree, i64) {
    let mut t = DataTree::new();
    let mut zxid = 0;
    for p in paths {
        zxid += 1;
        t.apply(
            tx(zxid, 1000 + zxid),
            &Op::create(*p, p.as_bytes().to_vec(), Persistent),
        )
        .unwrap();
    }
    (t, zxid)
}

fn snapshot(t: &DataTree) -> Vec<(String, Znode)> {
    t.znodes()
        .into_iter()
        .map(|(p, n)| (p, Znode::clone(&n)))
        .collect()
}

#[test]
fn fresh_tree_matches_zookeeper() {
    let t = DataTree::new();
    let root = t.get("/").unwrap().stat();
    assert_eq!(root.num_children, 1);
    // ZooKeeper reports cversion -1 for a fresh root: 2 * 0 creations - 1 child.
    assert_eq!(root.cversion, -1);
    assert_eq!(t.children("/zookeeper"), ["config", "quota"]);
}

#[test]
fn create_sets_stat_and_parent() {
    let (mut t, _) = tree_with(&["/a"]);
    let r = t
        .apply(tx(7, 5000), &Op::create("/a/b", b"hi".to_vec(), Persistent))
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
    assert_eq!(t.get("/a/b").unwrap().data.as_deref(), Some(&b"hi"[..]));
}

#[test]
fn sequential_suffix_is_parent_creation_count() {
    let (mut t, _) = tree_with(&["/q"]);
    let mut names = vec![];
    for z in 10..13 {
        let r = t
            .apply(tx(z, 0), &Op::create("/q/n-", vec![], PersistentSequential))
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
    t.apply(tx(13, 0), &Op::delete("/q/n-0000000002", None))
        .unwrap();
    assert_eq!(t.get("/q").unwrap().stat().cversion, 4);
    let r = t
        .apply(tx(14, 0), &Op::create("/q/", vec![], PersistentSequential))
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
        assert_eq!(t.apply(tx(50, 0), &op).unwrap_err(), err);
    }
    for bad in ["a", "/a/", "/a//b", "/a/./b", "/a\0"] {
        assert!(matches!(
            t.apply(tx(51, 0), &Op::create(bad, vec![], Persistent)),
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
        t.apply(tx(9, 0), &Op::create("/e/c", vec![], Persistent))
            .unwrap_err(),
        Error::NoChildrenForEphemerals("/e".into())
    );
    assert_eq!(snapshot(&t), before);
}

#[test]
fn set_data_versions() {
    let (mut t, _) = tree_with(&["/a"]);
    let r = t
        .apply(tx(5, 9000), &Op::set_data("/a", b"v1".to_vec(), Some(0)))
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
        t.apply(tx(6, 0), &Op::set_data("/a", vec![], Some(0)))
            .unwrap_err(),
        Error::BadVersion {
            path: "/a".into(),
            expected: 0,
            actual: 1
        }
    );
    assert_eq!(
        t.apply(tx(6, 0), &Op::set_data("/nope", vec![], None))
            .unwrap_err(),
        Error::NoNode("/nope".into())
    );
    assert_eq!(snapshot(&t), before);
    t.apply(tx(7, 0), &Op::set_data("/a", b"v2".to_vec(), None))
        .unwrap();
    assert_eq!(t.get("/a").unwrap().stat().version, 2);
}

#[test]
fn delete_rules() {
    let (mut t, _) = tree_with(&["/a", "/a/b"]);
    let before = snapshot(&t);
    assert_eq!(
        t.apply(tx(9, 0), &Op::delete("/a", None)).unwrap_err(),
        Error::NotEmpty("/a".into())
    );
    assert_eq!(
        t.apply(tx(9, 0), &Op::delete("/zz", None)).unwrap_err(),
        Error::NoNode("/zz".into())
    );
    assert!(matches!(
        t.apply(tx(9, 0), &Op::delete("/a/b", Some(4))),
        Err(Error::BadVersion { .. })
    ));
    assert!(matches!(
        t.apply(tx(9, 0), &Op::delete("/", None)),
        Err(Error::BadArguments(_))
    ));
    assert!(matches!(
        t.apply(tx(9, 0), &Op::delete("/zookeeper", None)),
        Err(Error::BadArguments(_))
    ));
    assert_eq!(snapshot(&t), before);
    t.apply(tx(10, 0), &Op::delete("/a/b", Some(0))).unwrap();
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
            tx(5, 0),
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
            tx(6, 0),
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
    assert_eq!(t.get("/a").unwrap().data.as_deref(), Some(&b"new"[..]));
}

#[test]
fn null_data_is_kept_apart_from_empty_data() {
    let (mut t, _) = tree_with(&["/a"]);
    t.apply(
        tx(5, 0),
        &Op::create("/a/null", vec![], Persistent).with_null_data(),
    )
    .unwrap();
    t.apply(tx(6, 0), &Op::create("/a/empty", vec![], Persistent))
        .unwrap();
    let (null, empty) = (t.get("/a/null").unwrap(), t.get("/a/empty").unwrap());
    assert_eq!(
        (null.data.as_deref(), empty.data.as_deref()),
        (None, Some(&[][..]))
    );
    // As ZooKeeper's: null data has length 0.
    assert_eq!(null.stat().data_length, 0);
    // Setting data to null, and back.
    t.apply(tx(7, 0), &Op::set_data("/a", vec![], None).with_null_data())
        .unwrap();
    assert_eq!(t.get("/a").unwrap().data, None);
    assert_eq!(t.get("/a").unwrap().stat().version, 1);
    // A failed multi restores null data exactly.
    let before = (snapshot(&t), t.digest());
    let err = t.apply(
        tx(8, 0),
        &Op::Multi(vec![
            Op::set_data("/a", b"x".to_vec(), None),
            Op::set_data("/a/null", b"y".to_vec(), None),
            Op::check("/a", Some(0)),
        ]),
    );
    assert!(matches!(err, Err(Error::MultiFailed { index: 2, .. })));
    assert_eq!((snapshot(&t), t.digest()), before);
    // Two trees that differ only in null against empty data have different digests.
    let mut other = DataTree::new();
    let mut same = DataTree::new();
    for (tree, op) in [
        (&mut other, Op::create("/n", vec![], Persistent)),
        (
            &mut same,
            Op::create("/n", vec![], Persistent).with_null_data(),
        ),
    ] {
        tree.apply(tx(1, 0), &op).unwrap();
    }
    assert_ne!(other.digest(), same.digest());
}

/// A multi's bookkeeping is linear: 20,000 creates under a parent that already has
/// children, with ephemerals, data changes and deletes mixed in, apply and roll back whole
/// (quadratic undo bookkeeping made this take minutes in a debug build).
#[test]
fn huge_multis_apply_and_roll_back_exactly() {
    const N: usize = 20_000;
    let (mut t, _) = tree_with(&["/big", "/big/old-1", "/big/old-2"]);
    t.apply(
        tx(10, 0),
        &Op::CreateSession {
            timeout_ms: 4000,
            password: vec![],
            host: 1,
        },
    )
    .unwrap();
    let session = 10;
    t.take_events();
    t.take_dirty();
    let before = snapshot(&t);
    let mut ops: Vec<Op> = (0..N)
        .map(|i| match i % 4 {
            0 => Op::create(format!("/big/e{i}"), vec![], Ephemeral),
            1 => Op::create("/big/s-", vec![1], PersistentSequential),
            _ => Op::create(format!("/big/n{i}"), vec![2], Persistent),
        })
        .collect();
    ops.push(Op::set_data("/big", b"x".to_vec(), None));
    ops.push(Op::delete("/big/old-1", None));
    ops.push(Op::delete("/big/n2", None));
    let mut failing = ops.clone();
    failing.push(Op::check("/big/old-1", None)); // deleted above: NoNode
    let txn = Txn {
        zxid: 11,
        time: 5,
        session,
    };
    let err = t.apply(txn, &Op::Multi(failing)).unwrap_err();
    assert!(matches!(err, Error::MultiFailed { index, .. } if index == N + 3));
    assert_eq!(snapshot(&t), before, "rolled back whole");
    assert!(t.ephemerals(session, "/").is_empty());
    assert!(t.take_events().is_empty());
    check_invariants(&t);

    let OpResult::Multi(results) = t.apply(txn, &Op::Multi(ops)).unwrap() else {
        panic!("multi answers Multi")
    };
    assert_eq!(results.len(), N + 3);
    let big = t.get("/big").unwrap().stat();
    assert_eq!(big.num_children as usize, 2 + N - 2);
    assert_eq!(t.ephemerals(session, "/big/").len(), N / 4);
    assert_eq!(t.take_events().len(), 2 * (N + 2) + 1);
    let dirty = t.take_dirty().paths;
    assert_eq!(
        dirty.len(),
        N + 2,
        "each touched path once: the creates, /big, old-1"
    );
    check_invariants(&t);
}

/// What a ZooKeeper 3.8.0 server answered for writes in its reserved subtree (recorded
/// with kazoo 2.11): `/zookeeper/config` is read-only (NoAuth, even before a version check),
/// the four system znodes cannot be deleted (BadArguments, before NotEmpty), and the rest
/// of `/zookeeper` is writable.
#[test]
fn the_zookeeper_subtree_is_protected_as_zookeeper_protects_it() {
    let mut t = DataTree::new();
    let before = snapshot(&t);
    let code = |r: Result<OpResult>| r.map(|_| 0).unwrap_or_else(|e| e.code());
    assert_eq!(
        code(t.apply(tx(1, 0), &Op::set_data(CONFIG_PATH, b"x".to_vec(), None))),
        -102
    );
    assert_eq!(
        code(t.apply(tx(2, 0), &Op::set_data(CONFIG_PATH, vec![], Some(9)))),
        -102
    );
    assert_eq!(
        code(t.apply(
            tx(3, 0),
            &Op::create("/zookeeper/config/x", vec![], Persistent)
        )),
        -102
    );
    assert_eq!(
        code(t.apply(
            tx(4, 0),
            &Op::create("/zookeeper/config/", vec![], PersistentSequential)
        )),
        -102
    );
    let multi = Op::Multi(vec![
        Op::create("/zookeeper/x", vec![], Persistent),
        Op::set_data(CONFIG_PATH, vec![], None),
    ]);
    assert_eq!(code(t.apply(tx(5, 0), &multi)), -102);
    assert_eq!(snapshot(&t), before, "refused writes change nothing");
    assert_eq!(code(t.apply(tx(6, 0), &Op::check(CONFIG_PATH, Some(0)))), 0);
    for (zxid, op) in [
        Op::set_data("/zookeeper", b"x".to_vec(), None),
        Op::set_data("/zookeeper/quota", b"x".to_vec(), None),
        Op::create("/zookeeper/x", vec![], Persistent),
        Op::create("/zookeeper/quota/x", vec![], Persistent),
    ]
    .into_iter()
    .enumerate()
    {
        assert_eq!(code(t.apply(tx(10 + zxid as i64, 0), &op)), 0, "{op:?}");
    }
    for p in SYSTEM_PATHS {
        // /zookeeper and /zookeeper/quota have children now: still BadArguments.
        assert_eq!(code(t.apply(tx(20, 0), &Op::delete(p, None))), -8, "{p}");
    }
    assert_eq!(
        code(t.apply(tx(21, 0), &Op::delete("/zookeeper/x", None))),
        0
    );
    assert_eq!(
        code(t.apply(tx(22, 0), &Op::delete("/zookeeper/quota/x", None))),
        0
    );
    assert_eq!(
        t.get("/zookeeper").unwrap().stat().cversion,
        0,
        "-2 + create + delete"
    );
}

#[test]
fn dirty_paths_cover_every_change() {
    let (mut t, _) = tree_with(&[]);
    t.take_dirty();
    t.apply(tx(1, 0), &Op::create("/a", vec![], Persistent))
        .unwrap();
    t.apply(tx(2, 0), &Op::set_data("/a", vec![1], None))
        .unwrap();
    let mut d = t.take_dirty().paths;
    d.sort();
    d.dedup();
    assert_eq!(d, ["/", "/a"]);
    t.apply(tx(3, 0), &Op::delete("/a", None)).unwrap();
    assert!(t.take_dirty().paths.contains(&"/a".to_string()));
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
        let ra = a.apply(tx(i as i64 + 1, 100), op);
        let rb = b.apply(tx(i as i64 + 1, 100), op);
        assert_eq!(ra, rb);
    }
    assert_eq!(snapshot(&a), snapshot(&b));
}

fn open_session(t: &mut DataTree, zxid: i64) -> i64 {
    let op = Op::CreateSession {
        timeout_ms: 5000,
        password: vec![0; 16],
        host: 1,
    };
    match t.apply(tx(zxid, 0), &op).unwrap() {
        OpResult::SessionCreated { session } => session,
        other => panic!("{other:?}"),
    }
}

fn stx(zxid: i64, session: i64) -> Txn {
    Txn {
        zxid,
        time: 0,
        session,
    }
}

#[test]
fn ephemerals_belong_to_their_session_and_go_with_it() {
    let (mut t, _) = tree_with(&["/app"]);
    let s1 = open_session(&mut t, 10);
    let s2 = open_session(&mut t, 11);
    assert_eq!(s1, 10, "session id is the zxid of its CreateSession entry");
    let e1 = Op::create("/app/lock-", vec![], EphemeralSequential);
    let r = t.apply(stx(12, s1), &e1).unwrap();
    assert!(
        matches!(&r, OpResult::Create { path, stat } if path == "/app/lock-0000000000" && stat.ephemeral_owner == s1)
    );
    t.apply(stx(13, s2), &Op::create("/app/b", vec![], Ephemeral))
        .unwrap();
    t.apply(stx(14, s1), &Op::create("/app/a", vec![], Ephemeral))
        .unwrap();
    assert_eq!(t.ephemerals(s1, "/app/l"), ["/app/lock-0000000000"]);
    assert_eq!(t.ephemerals(s1, "/"), ["/app/a", "/app/lock-0000000000"]);
    // No children under ephemerals, whoever asks.
    assert_eq!(
        t.apply(stx(15, s2), &Op::create("/app/a/x", vec![], Persistent))
            .unwrap_err(),
        Error::NoChildrenForEphemerals("/app/a".into())
    );
    // Ephemerals need a session.
    assert!(matches!(
        t.apply(tx(15, 0), &Op::create("/app/c", vec![], Ephemeral)),
        Err(Error::BadArguments(_))
    ));
    t.take_events();
    let r = t
        .apply(
            tx(16, 0),
            &Op::CloseSession {
                session: s1,
                expired: true,
            },
        )
        .unwrap();
    assert_eq!(
        r,
        OpResult::SessionClosed {
            deleted: vec!["/app/a".into(), "/app/lock-0000000000".into()]
        }
    );
    assert!(t.get("/app/a").is_none() && t.get("/app/b").is_some());
    let kinds: Vec<(EventType, String)> = t
        .take_events()
        .into_iter()
        .map(|e| (e.event_type, e.path))
        .collect();
    assert_eq!(kinds.len(), 4);
    assert_eq!(kinds[0], (EventType::NodeDeleted, "/app/a".to_string()));
    assert_eq!(
        kinds[1],
        (EventType::NodeChildrenChanged, "/app".to_string())
    );
    // A closed session can do nothing; closing again changes nothing.
    assert_eq!(
        t.apply(stx(17, s1), &Op::create("/app/z", vec![], Persistent))
            .unwrap_err(),
        Error::SessionExpired
    );
    let before = snapshot(&t);
    assert_eq!(
        t.apply(
            tx(18, 0),
            &Op::CloseSession {
                session: s1,
                expired: false
            }
        )
        .unwrap(),
        OpResult::SessionClosed { deleted: vec![] }
    );
    assert_eq!(snapshot(&t), before);
    assert_eq!(t.sessions().keys().copied().collect::<Vec<_>>(), [s2]);
}

#[test]
fn failed_multi_restores_ephemeral_index_and_reports_no_events() {
    let (mut t, _) = tree_with(&["/m"]);
    let s = open_session(&mut t, 5);
    t.take_events();
    let err = t
        .apply(
            stx(6, s),
            &Op::Multi(vec![
                Op::create("/m/e", vec![], Ephemeral),
                Op::check("/m", Some(9)),
            ]),
        )
        .unwrap_err();
    assert!(matches!(err, Error::MultiFailed { index: 1, .. }));
    assert!(t.ephemerals(s, "/").is_empty());
    assert!(t.take_events().is_empty());
    assert!(matches!(
        t.apply(
            stx(7, s),
            &Op::Multi(vec![Op::CloseSession {
                session: s,
                expired: false
            }])
        ),
        Err(Error::MultiFailed { index: 0, .. })
    ));
}

#[test]
fn events_follow_zookeeper() {
    let (mut t, _) = tree_with(&["/w"]);
    t.take_events();
    t.apply(tx(5, 0), &Op::create("/w/c", vec![], Persistent))
        .unwrap();
    t.apply(tx(6, 0), &Op::set_data("/w/c", vec![1], None))
        .unwrap();
    t.apply(tx(7, 0), &Op::delete("/w/c", None)).unwrap();
    let _ = t.apply(tx(8, 0), &Op::delete("/w/c", None)); // fails: no event
    let got: Vec<(EventType, String, i64)> = t
        .take_events()
        .into_iter()
        .map(|e| (e.event_type, e.path, e.zxid))
        .collect();
    use EventType::*;
    let want: Vec<(EventType, String, i64)> = vec![
        (NodeCreated, "/w/c".into(), 5),
        (NodeChildrenChanged, "/w".into(), 5),
        (NodeDataChanged, "/w/c".into(), 6),
        (NodeDeleted, "/w/c".into(), 7),
        (NodeChildrenChanged, "/w".into(), 7),
    ];
    assert_eq!(got, want);
}

#[test]
fn containers_and_ttl_nodes_are_reapable_as_zookeeper_says() {
    let mut t = DataTree::new();
    let at = |zxid, time| Txn {
        zxid,
        time,
        session: 0,
    };
    t.apply(at(1, 1000), &Op::create("/c", vec![], Container))
        .unwrap();
    let ttl = Op::create_ttl(
        "/t",
        vec![],
        PersistentWithTtl,
        std::time::Duration::from_millis(500),
    );
    t.apply(at(2, 1000), &ttl).unwrap();
    assert_eq!(t.get("/c").unwrap().owner(), Owner::Container);
    assert_eq!(t.get("/c").unwrap().ephemeral_owner, CONTAINER_OWNER);
    assert_eq!(t.get("/t").unwrap().owner(), Owner::Ttl(500));
    // Clients see 0, as from ZooKeeper.
    assert_eq!(t.get("/c").unwrap().stat().ephemeral_owner, 0);
    assert_eq!(t.get("/t").unwrap().stat().ephemeral_owner, 0);
    // A container that never had children is kept; a fresh TTL node too.
    assert!(t.reapable(1400).is_empty());
    assert_eq!(t.reapable(1501), ["/t"]);
    // Containers and TTL nodes may have children (unlike ephemerals).
    t.apply(at(3, 1600), &Op::create("/c/x", vec![], Persistent))
        .unwrap();
    t.apply(at(4, 1600), &Op::create("/t/x", vec![], Persistent))
        .unwrap();
    assert!(t.reapable(9999).is_empty());
    assert!(matches!(
        t.apply(at(5, 9999), &Op::Reap { path: "/c".into() }),
        Err(Error::NotEmpty(_))
    ));
    t.apply(at(6, 1700), &Op::delete("/c/x", None)).unwrap();
    t.apply(at(7, 1700), &Op::delete("/t/x", None)).unwrap();
    // The TTL counts from the last change of the node's own data (mtime), as ZooKeeper's;
    // it is checked again, with the proposer's time, when the reap is applied.
    assert_eq!(t.reapable(1800), ["/c", "/t"]);
    assert!(matches!(
        t.apply(at(8, 1400), &Op::Reap { path: "/t".into() }),
        Err(Error::BadArguments(_))
    ));
    assert_eq!(
        t.apply(at(9, 1800), &Op::Reap { path: "/c".into() })
            .unwrap(),
        OpResult::Reaped
    );
    assert_eq!(
        t.apply(at(10, 1501), &Op::Reap { path: "/t".into() })
            .unwrap(),
        OpResult::Reaped
    );
    assert!(t.get("/c").is_none() && t.get("/t").is_none());
    // Plain nodes are never reaped; bad TTLs are refused.
    t.apply(at(11, 0), &Op::create("/p", vec![], Persistent))
        .unwrap();
    assert!(matches!(
        t.apply(at(12, 0), &Op::Reap { path: "/p".into() }),
        Err(Error::BadArguments(_))
    ));
    let zero = Op::create_ttl("/z", vec![], PersistentWithTtl, std::time::Duration::ZERO);
    assert!(matches!(
        t.apply(at(13, 0), &zero),
        Err(Error::BadArguments(_))
    ));
}

/// Replays the operations of a trace recorded against Apache ZooKeeper 3.8.0 (Debian's
/// `zookeeper 3.8.0-11+deb12u2`, driven by kazoo 2.11) and checks every figure it showed.
/// zxids are relative to the create of /a (`r0`); a failed write uses up a zxid in both.
#[test]
fn matches_an_apache_zookeeper_3_8_trace() {
    replay_the_zookeeper_3_8_trace(DataTree::new(), &|t, _| {
        t.take_dirty();
    });
}

/// The same trace over RocksDB as a node keeps the tree: each write in its own batch,
/// with a cache of a few znodes, so most reads go to the database.
#[test]
fn matches_an_apache_zookeeper_3_8_trace_over_rocksdb() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::storage::TreeStore::new(crate::storage::open_db(dir.path()).unwrap())
        .unwrap()
        .with_cache(2048);
    let (t, _) = store.load().unwrap();
    replay_the_zookeeper_3_8_trace(t, &|t, index| {
        let dirty = t.take_dirty();
        let mut batch = rocksdb::WriteBatch::default();
        store.write_into(&mut batch, t, &dirty, index);
        store.commit(batch).unwrap();
        t.written();
        assert!(t.take_store_error().is_none());
    });
}

/// Applies the trace's operations to `t`, handing it to `commit` with the zxid after each.
fn replay_the_zookeeper_3_8_trace(mut t: DataTree, commit: &dyn Fn(&mut DataTree, u64)) {
    // a. The fresh tree.
    let st = |t: &DataTree, p: &str| t.get(p).unwrap().stat();
    assert_eq!((st(&t, "/").cversion, st(&t, "/").num_children), (-1, 1));
    assert_eq!(
        (
            st(&t, "/zookeeper").cversion,
            st(&t, "/zookeeper").num_children
        ),
        (-2, 2)
    );
    assert_eq!(st(&t, "/zookeeper/config").aversion, -1);
    assert_eq!(st(&t, "/zookeeper/quota"), Stat::default());

    let r0 = 3;
    let mut z = r0;
    let mut run = |t: &mut DataTree, session: i64, op: Op| {
        let r = t.apply(
            Txn {
                zxid: z,
                time: 1000 + z,
                session,
            },
            &op,
        );
        commit(t, z as u64);
        z += 1;
        r
    };
    let created = |r: Result<OpResult>| r.unwrap().into_created().unwrap();
    // b.
    run(&mut t, 0, Op::create("/a", b"x".to_vec(), Persistent)).unwrap();
    let a = st(&t, "/a");
    assert_eq!((a.czxid, a.mzxid, a.pzxid, a.data_length), (r0, r0, r0, 1));
    let root = st(&t, "/");
    assert_eq!((root.pzxid, root.cversion, root.num_children), (r0, 0, 2));
    // c.
    run(&mut t, 0, Op::create("/a/b", vec![], Persistent)).unwrap();
    assert_eq!((st(&t, "/a").pzxid, st(&t, "/a").cversion), (r0 + 1, 1));
    run(&mut t, 0, Op::delete("/a/b", None)).unwrap();
    let a = st(&t, "/a");
    assert_eq!(
        (a.pzxid, a.cversion, a.num_children, a.mzxid),
        (r0 + 2, 2, 0, r0)
    );
    // d.
    let mut names = vec![];
    for _ in 0..3 {
        names.push(
            created(run(
                &mut t,
                0,
                Op::create("/a/s-", vec![], PersistentSequential),
            ))
            .0,
        );
    }
    assert_eq!(
        names,
        ["/a/s-0000000001", "/a/s-0000000002", "/a/s-0000000003"]
    );
    run(&mut t, 0, Op::delete("/a/s-0000000003", None)).unwrap();
    let (p, _) = created(run(
        &mut t,
        0,
        Op::create("/a/s-", vec![], PersistentSequential),
    ));
    assert_eq!(p, "/a/s-0000000004");
    let a = st(&t, "/a");
    assert_eq!((a.cversion, a.pzxid, a.num_children), (7, r0 + 7, 3));
    // e.
    for want in ["/a/0000000005", "/a/0000000006"] {
        let (p, _) = created(run(
            &mut t,
            0,
            Op::create("/a/", vec![], PersistentSequential),
        ));
        assert_eq!(p, want);
    }
    assert_eq!((st(&t, "/a").cversion, st(&t, "/a").pzxid), (9, r0 + 9));
    // f. Errors (each still uses up a zxid); /a unchanged.
    let before = st(&t, "/a");
    let code = |r: Result<OpResult>| r.unwrap_err().code();
    assert_eq!(
        code(run(&mut t, 0, Op::create("/a", vec![], Persistent))),
        -110
    );
    assert_eq!(
        code(run(&mut t, 0, Op::create("/nope/x", vec![], Persistent))),
        -101
    );
    assert_eq!(code(run(&mut t, 0, Op::delete("/a", None))), -111);
    for p in ["/", "/zookeeper", "/zookeeper/quota", "/zookeeper/config"] {
        assert_eq!(code(run(&mut t, 0, Op::delete(p, None))), -8, "{p}");
    }
    assert_eq!(
        code(run(&mut t, 0, Op::set_data("/a", vec![], Some(7)))),
        -103
    );
    assert_eq!(
        code(run(&mut t, 0, Op::delete("/a/s-0000000000", Some(5)))),
        -101
    );
    assert_eq!(
        code(run(&mut t, 0, Op::create("/a/", vec![], Persistent))),
        -8
    );
    assert_eq!(
        code(run(&mut t, 0, Op::create("a", vec![], Persistent))),
        -8
    );
    assert_eq!(st(&t, "/a"), before);
    // g. A failing multi changes nothing; a successful create+check+delete is one zxid.
    let ops = vec![
        Op::create("/a/m1", vec![], Persistent),
        Op::check("/a", Some(99)),
        Op::create("/a/m2", vec![], Persistent),
    ];
    let failed = run(&mut t, 0, Op::Multi(ops));
    assert!(
        matches!(failed, Err(Error::MultiFailed { index: 1, ref source }) if source.code() == -103)
    );
    assert!(t.get("/a/m1").is_none());
    let ops = vec![
        Op::create("/a/tmp", vec![], Persistent),
        Op::check("/a", None),
        Op::delete("/a/tmp", None),
    ];
    run(&mut t, 0, Op::Multi(ops)).unwrap();
    // h. Ephemerals, of two sessions.
    let session =
        |t: &mut DataTree, run: &mut dyn FnMut(&mut DataTree, i64, Op) -> Result<OpResult>| {
            let op = Op::CreateSession {
                timeout_ms: 30000,
                password: vec![],
                host: 1,
            };
            match run(t, 0, op).unwrap() {
                OpResult::SessionCreated { session } => session,
                other => panic!("{other:?}"),
            }
        };
    let s1 = session(&mut t, &mut run);
    let s2 = session(&mut t, &mut run);
    let (_, e) = created(run(&mut t, s1, Op::create("/e", vec![], Ephemeral)));
    assert_eq!(e.ephemeral_owner, s1);
    assert_eq!(
        code(run(&mut t, s1, Op::create("/e/child", vec![], Persistent))),
        -108
    );
    for want in ["/a/eseq-0000000008", "/a/eseq-0000000009"] {
        let (p, stat) = created(run(
            &mut t,
            s2,
            Op::create("/a/eseq-", vec![], EphemeralSequential),
        ));
        assert_eq!((p.as_str(), stat.ephemeral_owner), (want, s2));
    }
    assert_eq!(st(&t, "/a").cversion, 13);
    // i. Containers and TTL znodes: clients see owner 0; the stored encodings are
    // ZooKeeper's (read from its snapshot).
    run(&mut t, 0, Op::create("/c", vec![], Container)).unwrap();
    let five_s = std::time::Duration::from_millis(5000);
    run(
        &mut t,
        0,
        Op::create_ttl("/t", vec![], PersistentWithTtl, five_s),
    )
    .unwrap();
    assert_eq!(st(&t, "/c").ephemeral_owner, 0);
    assert_eq!(st(&t, "/t").ephemeral_owner, 0);
    assert_eq!(
        t.get("/c").unwrap().ephemeral_owner as u64,
        0x8000_0000_0000_0000
    );
    assert_eq!(
        t.get("/t").unwrap().ephemeral_owner as u64,
        0xff00_0000_0000_1388
    );
    let ts = Op::create_ttl("/a/ts-", vec![], PersistentSequentialWithTtl, five_s);
    assert_eq!(created(run(&mut t, 0, ts)).0, "/a/ts-0000000010");
    let zero = Op::create_ttl("/t0", vec![], PersistentWithTtl, std::time::Duration::ZERO);
    assert_eq!(code(run(&mut t, 0, zero)), -8);
    // l. getChildren2 on /a.
    let a = st(&t, "/a");
    assert_eq!(
        (a.cversion, a.num_children, a.version, a.data_length),
        (14, 8, 0, 1)
    );
    // m. Two set_data calls.
    let first = run(&mut t, 0, Op::set_data("/a", b"hello".to_vec(), None))
        .unwrap()
        .into_stat()
        .unwrap();
    let second = run(
        &mut t,
        0,
        Op::set_data("/a", b"hello world!".to_vec(), None),
    )
    .unwrap()
    .into_stat()
    .unwrap();
    assert_eq!((first.version, first.data_length), (1, 5));
    assert_eq!((second.version, second.data_length), (2, 12));
    assert_eq!(second.mzxid, first.mzxid + 1);
    assert_eq!(
        (second.cversion, second.pzxid, second.ctime),
        (a.cversion, a.pzxid, a.ctime)
    );
    // n. Closing the first session removes its ephemeral.
    run(
        &mut t,
        0,
        Op::CloseSession {
            session: s1,
            expired: false,
        },
    )
    .unwrap();
    assert!(t.get("/e").is_none());
}

/// Deterministic pseudo-random numbers for the randomized test (no dependency, seeded).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Checks the tree's internal consistency: parents and children agree, counts match, the
/// owner indexes agree with the znodes.
fn check_invariants(t: &DataTree) {
    let znodes = t.znodes();
    let listed: std::collections::HashMap<&str, std::collections::HashSet<String>> = znodes
        .iter()
        .map(|(p, _)| (p.as_str(), t.children(p).into_iter().collect()))
        .collect();
    for (p, n) in &znodes {
        if let Some(parent) = path::parent(p) {
            assert!(t.get(parent).is_some(), "{p} has no parent");
            assert!(
                listed[parent].contains(path::name(p)),
                "{parent} does not list {p}"
            );
        }
        let children = &listed[p.as_str()];
        for c in children {
            assert!(
                t.get(&path::join(p, c)).is_some(),
                "{p} lists missing child {c}"
            );
        }
        assert_eq!(n.stat().num_children as usize, children.len());
        match n.owner() {
            Owner::Session(s) => {
                assert!(
                    t.sessions().contains_key(&s),
                    "{p} owned by dead session {s}"
                );
                assert!(t.ephemerals(s, "/").contains(p));
                assert!(children.is_empty(), "ephemeral {p} has children");
            }
            Owner::Container => assert!(t.containers.contains(p)),
            Owner::Ttl(_) => assert!(t.ttls.contains(p)),
            Owner::None => {}
        }
    }
    for (s, paths) in &t.ephemerals {
        for p in paths {
            assert_eq!(t.get(p).map(|n| n.owner()), Some(Owner::Session(*s)));
        }
    }
}

fn random_op(rng: &mut Rng, t: &DataTree, sessions: &[i64]) -> (i64, Op) {
    // Sorted: the tree's map iterates in a per-process random order, and the history
    // must depend on the seed alone.
    let mut existing = t.paths();
    existing.sort();
    let any_path = |rng: &mut Rng| -> String {
        match rng.below(4) {
            0 => format!("/n{}", rng.below(6)),
            1 => format!("/n{}/c{}", rng.below(6), rng.below(4)),
            2 => "bad//path".to_string(),
            _ => existing[rng.below(existing.len())].clone(),
        }
    };
    let session = if sessions.is_empty() || rng.below(3) == 0 {
        0
    } else {
        sessions[rng.below(sessions.len())]
    };
    let version = |rng: &mut Rng| {
        if rng.below(3) == 0 {
            Some(rng.below(3) as i32)
        } else {
            None
        }
    };
    let mode = |rng: &mut Rng| {
        [
            Persistent,
            PersistentSequential,
            Ephemeral,
            EphemeralSequential,
            Container,
        ][rng.below(5)]
    };
    let simple = |rng: &mut Rng| match rng.below(4) {
        0 => Op::create(any_path(rng), vec![rng.below(9) as u8], mode(rng)),
        1 => Op::delete(any_path(rng), version(rng)),
        2 => Op::set_data(any_path(rng), vec![1, 2], version(rng)),
        _ => Op::check(any_path(rng), version(rng)),
    };
    let op = match rng.below(10) {
        0 => Op::CreateSession {
            timeout_ms: 1000,
            password: vec![],
            host: 1,
        },
        1 if !sessions.is_empty() => Op::CloseSession {
            session: sessions[rng.below(sessions.len())],
            expired: rng.below(2) == 0,
        },
        2 => Op::Multi((0..1 + rng.below(4)).map(|_| simple(rng)).collect()),
        3 => Op::Reap {
            path: any_path(rng),
        },
        _ => simple(rng),
    };
    (session, op)
}

#[test]
fn random_histories_keep_the_tree_consistent_deterministic_and_durable() {
    // Two replicas of the history: `a` in memory, `b` over RocksDB as a node keeps it,
    // written step by step — with a cache of a few znodes (most reads go to the database)
    // or a large one (most come from the caches of znodes and of lists of children).
    for seed in 1..=6u64 {
        let cache = if seed % 2 == 0 { 1 << 20 } else { 2048 };
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ seed);
        let mut a = DataTree::new();
        let dir = tempfile::tempdir().unwrap();
        let store = crate::storage::TreeStore::new(crate::storage::open_db(dir.path()).unwrap())
            .unwrap()
            .with_cache(cache);
        let (mut b, _) = store.load().unwrap();
        let mut sessions: Vec<i64> = Vec::new();
        let (mut ok, mut ephemerals_reaped, mut multis) = (0, 0, 0);
        for i in 0..600i64 {
            let (session, op) = random_op(&mut rng, &a, &sessions);
            let txn = Txn {
                zxid: i + 1,
                time: 1000 + i * 10,
                session,
            };
            let before = snapshot(&a);
            let ra = a.apply(txn, &op);
            let rb = b.apply(txn, &op);
            assert_eq!(ra, rb, "replicas disagree at step {i} on {op:?}");
            assert_eq!(a.digest(), b.digest(), "digests differ at step {i}");
            // Counted below a path: in memory by a walk, over RocksDB by key ranges with
            // the batch not yet written laid over them.
            for p in ["/", "/n0", "/n1", "/n1/c0", "/zookeeper"] {
                assert_eq!(a.descendants(p), b.descendants(p), "below {p} at step {i}");
                // Listed through the batch not yet written, then (below) from the
                // database and its cache of lists.
                assert_eq!(a.children(p), b.children(p), "children of {p} at step {i}");
            }
            match &ra {
                Err(_) => {
                    assert_eq!(snapshot(&a), before, "failed {op:?} changed the tree");
                    assert!(a.take_events().is_empty(), "failed {op:?} reported events");
                }
                Ok(OpResult::SessionCreated { session }) => sessions.push(*session),
                Ok(OpResult::SessionClosed { deleted }) => {
                    ephemerals_reaped += deleted.len();
                    if let Op::CloseSession { session, .. } = op {
                        sessions.retain(|s| *s != session);
                    }
                }
                Ok(OpResult::Multi(_)) => multis += 1,
                Ok(_) => {}
            }
            ok += usize::from(ra.is_ok());
            b.take_events();
            a.take_events();
            check_invariants(&a);
            a.take_dirty();
            let dirty = b.take_dirty();
            let mut batch = rocksdb::WriteBatch::default();
            store.write_into(&mut batch, &b, &dirty, txn.zxid as u64);
            store.commit(batch).unwrap();
            b.written();
            assert!(b.take_store_error().is_none());
            for p in ["/", "/n0", "/n1", "/n2"] {
                assert_eq!(a.children(p), b.children(p), "children of {p} at step {i}");
            }
        }
        // The history exercised the interesting paths, not only errors.
        assert!(ok > 150, "seed {seed}: only {ok} operations succeeded");
        assert!(
            ephemerals_reaped > 0 && multis > 0,
            "seed {seed}: {ephemerals_reaped} {multis}"
        );
        assert_eq!(snapshot(&a), snapshot(&b));
        check_invariants(&b);
        // What was persisted step by step opens again as the same tree and sessions.
        drop((b, store));
        let store = crate::storage::TreeStore::new(crate::storage::open_db(dir.path()).unwrap())
            .unwrap()
            .with_cache(cache);
        let (loaded, applied) = store.load().unwrap();
        assert_eq!(applied, 600);
        assert_eq!(snapshot(&loaded), snapshot(&a), "seed {seed}");
        assert_eq!(loaded.sessions(), a.sessions());
        assert_eq!(loaded.digest(), a.digest());
        assert_eq!(loaded.len(), a.len());
        assert_eq!(loaded.data_size(), a.data_size());
        assert_eq!(loaded.ephemeral_count(), a.ephemeral_count());
        check_invariants(&loaded);
    }
}

#[test]
fn the_kept_digest_always_equals_a_full_recomputation() {
    // A small deterministic pseudo-random walk over every kind of change, failing multis
    // (rolled back) and sessions included; the digest kept incrementally must equal the
    // one computed from scratch after every step.
    let mut t = DataTree::new();
    assert_eq!(t.digest(), t.recompute_digest());
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    let mut sessions = vec![];
    for zxid in 1..=3_000i64 {
        let name = |i: u64| format!("/d{}", i % 4);
        let child = |i: u64, j: u64| format!("/d{}/c{}", i % 4, j % 6);
        let session = sessions.get(next(4) as usize).copied().unwrap_or(0);
        let op = match next(9) {
            0 => Op::create(
                name(next(4)),
                vec![next(255) as u8; next(40) as usize],
                Persistent,
            ),
            1 => Op::create(child(next(4), next(6)), vec![1], Persistent),
            2 => Op::create(child(next(4), next(6)), vec![], Ephemeral),
            3 => Op::delete(child(next(4), next(6)), None),
            4 => Op::set_data(name(next(4)), vec![next(255) as u8; 3], None),
            5 => Op::Multi(vec![
                Op::create(child(next(4), next(6)), vec![2], Persistent),
                Op::set_data(name(next(4)), vec![3], None),
                Op::delete(child(next(4), next(6)), None),
            ]),
            6 => Op::CreateSession {
                timeout_ms: 1000,
                password: vec![next(255) as u8; 16],
                host: next(3) + 1,
            },
            7 if !sessions.is_empty() => Op::CloseSession {
                session: sessions.remove(next(sessions.len() as u64) as usize),
                expired: true,
            },
            _ => Op::delete(name(next(4)), None),
        };
        let session = if matches!(op, Op::CreateSession { .. } | Op::CloseSession { .. }) {
            0
        } else {
            session
        };
        if let Ok(OpResult::SessionCreated { session }) = t.apply(stx(zxid, session), &op) {
            sessions.push(session);
        }
        assert_eq!(t.digest(), t.recompute_digest(), "after {op:?}");
        assert_eq!(t.zxid(), zxid as u64);
    }
    // Any difference shows: one byte of one znode's data, or a session's host.
    let mut other = t.clone();
    other
        .apply(tx(10_000, 0), &Op::set_data("/zookeeper", vec![], None))
        .unwrap();
    assert_ne!(other.digest(), t.digest());
    let mut relinked = DataTree::empty();
    for (p, n) in t.znodes() {
        relinked.insert_loaded(p, Znode::clone(&n));
    }
    for (id, s) in t.sessions() {
        relinked.insert_session(*id, s.clone());
    }
    relinked.link_children();
    assert_eq!(
        relinked.digest(),
        t.digest(),
        "a reloaded tree has the same digest"
    );
}

#[test]
fn a_sessions_requests_apply_only_in_their_order() {
    let (mut t, _) = tree_with(&["/o"]);
    let s = open_session(&mut t, 10);
    let mut zxid = 10;
    let mut apply = |t: &mut DataTree, order: (u64, u64), name: &str| {
        zxid += 1;
        t.apply_ordered(
            stx(zxid, s),
            1,
            order,
            &[],
            &Op::create(format!("/o/{name}"), vec![], Persistent),
        )
    };
    apply(&mut t, (1, 1), "a").unwrap();
    apply(&mut t, (1, 2), "b").unwrap();
    // A gap: request 3 of epoch 1 was lost; 4 must not apply, and changes nothing.
    let before = (t.digest(), snapshot(&t));
    let gap = apply(&mut t, (1, 4), "d");
    assert!(matches!(gap, Err(Error::ConnectionLoss(_))), "{gap:?}");
    assert_eq!((t.digest(), snapshot(&t)), before);
    // The host starts epoch 2; a late request of epoch 1 is stale from then on.
    apply(&mut t, (2, 1), "e").unwrap();
    assert!(matches!(
        apply(&mut t, (1, 3), "c"),
        Err(Error::ConnectionLoss(_))
    ));
    // A new epoch must start at 1.
    assert!(matches!(
        apply(&mut t, (3, 2), "f"),
        Err(Error::ConnectionLoss(_))
    ));
    // A request whose operation fails still takes its place in the order.
    assert!(matches!(
        apply(&mut t, (2, 2), "e"),
        Err(Error::NodeExists(_))
    ));
    apply(&mut t, (2, 3), "g").unwrap();
    assert!(
        matches!(apply(&mut t, (2, 3), "h"), Err(Error::ConnectionLoss(_))),
        "no replay"
    );
    let rec = &t.sessions()[&s];
    assert_eq!((rec.epoch, rec.last_seq), (2, 3));
    assert_eq!(t.digest(), t.recompute_digest());
    // Unordered requests (the node's own API) pass untouched.
    t.apply_ordered(
        stx(99, 0),
        1,
        (0, 0),
        &[],
        &Op::create("/o/z", vec![], Persistent),
    )
    .unwrap();
    let names = t.children("/o");
    assert_eq!(names, ["a", "b", "e", "g", "z"]);
}
