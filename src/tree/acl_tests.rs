//! ACL enforcement by the state machine alone: each operation needs the permission
//! ZooKeeper's `PrepRequestProcessor` asks for, a denied operation changes nothing (a multi
//! rolls back), set_acl versions the ACL, and `auth` entries expand to the caller.

use super::*;
use crate::acl::{perms, Acl, Id};
use crate::command::CreateMode::*;

fn tx(zxid: i64) -> Txn {
    Txn {
        zxid,
        time: 1000 + zxid,
        session: 0,
    }
}

fn alice() -> Id {
    Id::digest("alice", "a-pw")
}

fn bob() -> Id {
    Id::digest("bob", "b-pw")
}

/// Everything a replica would persist or report: znodes, digest.
fn state(t: &DataTree) -> (u64, Vec<(String, Znode)>) {
    let v = t
        .znodes()
        .into_iter()
        .map(|(p, n)| (p, Znode::clone(&n)))
        .collect();
    (t.digest(), v)
}

fn code(r: Result<OpResult>) -> i32 {
    r.map(|_| 0).unwrap_or_else(|e| e.code())
}

/// `/p` whose ACL grants alice exactly `perm` (and nobody anything else), with a child
/// `/p/c` open to all.
fn tree_granting(perm: i32) -> DataTree {
    let mut t = DataTree::new();
    t.apply(tx(1), &Op::create("/p", b"p".to_vec(), Persistent))
        .unwrap();
    t.apply(tx(2), &Op::create("/p/c", b"c".to_vec(), Persistent))
        .unwrap();
    t.apply(
        tx(3),
        &Op::set_acl("/p", vec![Acl::new(perm, alice())], None),
    )
    .unwrap();
    t.take_events();
    t
}

/// Each operation, and the one permission on `/p` it needs.
fn needs() -> Vec<(&'static str, Op, i32)> {
    vec![
        (
            "create under /p",
            Op::create("/p/new", vec![], Persistent),
            perms::CREATE,
        ),
        ("delete under /p", Op::delete("/p/c", None), perms::DELETE),
        (
            "set_data of /p",
            Op::set_data("/p", b"x".to_vec(), None),
            perms::WRITE,
        ),
        ("check of /p", Op::check("/p", None), perms::READ),
        (
            "set_acl of /p",
            Op::set_acl("/p", Acl::open_unsafe(), None),
            perms::ADMIN,
        ),
    ]
}

#[test]
fn each_operation_needs_zookeepers_permission_and_no_other() {
    for (what, op, needed) in needs() {
        for perm in [
            perms::READ,
            perms::WRITE,
            perms::CREATE,
            perms::DELETE,
            perms::ADMIN,
        ] {
            let mut t = tree_granting(perm);
            let before = state(&t);
            let res = t.apply_as(tx(10), &[alice()], &op);
            if perm == needed {
                assert!(res.is_ok(), "{what} with {perm}: {res:?}");
            } else {
                assert!(
                    matches!(res, Err(Error::NoAuth(_))),
                    "{what} with {perm}: {res:?}"
                );
                assert_eq!(state(&t), before, "{what}: a denial changes nothing");
                assert!(t.take_events().is_empty());
            }
        }
        // Somebody else, or nobody, is denied; the super user and `apply` pass.
        for ids in [&[bob()][..], &[][..], &[Id::new("ip", "127.0.0.1")][..]] {
            let mut t = tree_granting(needed);
            assert_eq!(code(t.apply_as(tx(10), ids, &op)), -102, "{what}: {ids:?}");
        }
        let mut t = tree_granting(0);
        assert_eq!(code(t.apply_as(tx(10), &[Id::super_user()], &op)), 0);
        let mut t = tree_granting(0);
        assert_eq!(code(t.apply(tx(10), &op)), 0, "{what}: apply is super");
        let mut t = tree_granting(perms::ALL);
        assert_eq!(code(t.apply_as(tx(10), &[bob(), alice()], &op)), 0);
    }
}

#[test]
fn denials_come_where_zookeeper_checks() {
    let mut t = tree_granting(perms::READ);
    let me = [alice()];
    // Delete checks the parent first: a missing child under a parent that denies DELETE
    // is NoAuth, not NoNode.
    assert_eq!(
        code(t.apply_as(tx(10), &me, &Op::delete("/p/none", None))),
        -102
    );
    // The others look the znode up first.
    assert_eq!(
        code(t.apply_as(tx(11), &me, &Op::set_data("/p/none", vec![], None))),
        -101
    );
    assert_eq!(
        code(t.apply_as(tx(12), &me, &Op::create("/none/x", vec![], Persistent))),
        -101
    );
    // Permission before version.
    assert_eq!(
        code(t.apply_as(tx(13), &me, &Op::set_data("/p", vec![], Some(7)))),
        -102
    );
    assert_eq!(
        code(t.apply_as(tx(14), &me, &Op::check("/p", Some(7)))),
        -103
    );
    // Before NodeExists: a create of an existing child is denied as any other.
    assert_eq!(
        code(t.apply_as(tx(15), &me, &Op::create("/p/c", vec![], Persistent))),
        -102
    );
    // The ACL given is validated first of all (ZooKeeper's fixupACL).
    let bad = Op::create_with_acl("/none/x", vec![], Persistent, vec![]);
    assert_eq!(code(t.apply_as(tx(16), &me, &bad)), -114);
    let bad = Op::set_acl("/none", vec![], None);
    assert_eq!(code(t.apply_as(tx(17), &me, &bad)), -114);
    // Denying a sequential create consumes no sequence number.
    let before = state(&t);
    assert_eq!(
        code(t.apply_as(
            tx(18),
            &me,
            &Op::create("/p/s-", vec![], PersistentSequential)
        )),
        -102
    );
    assert_eq!(state(&t), before);
}

#[test]
fn a_denied_operation_fails_its_multi_which_changes_nothing() {
    let mut t = tree_granting(perms::READ);
    let before = state(&t);
    let multi = Op::Multi(vec![
        Op::create("/open", vec![], Persistent),
        Op::set_data("/p/c", b"changed".to_vec(), None),
        Op::check("/p", None),
        Op::set_data("/p", b"denied".to_vec(), None),
        Op::create("/open2", vec![], Persistent),
    ]);
    let res = t.apply_as(tx(10), &[alice()], &multi);
    match res {
        Err(Error::MultiFailed { index: 3, source }) => {
            assert!(matches!(*source, Error::NoAuth(_)), "{source:?}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        Error::MultiFailed {
            index: 3,
            source: Box::new(Error::NoAuth("/p".into()))
        }
        .code(),
        -102
    );
    assert_eq!(state(&t), before, "rolled back");
    assert!(t.take_events().is_empty());
    assert_eq!(t.digest(), t.recompute_digest());
    // With the permission, the same multi applies.
    let mut t = tree_granting(perms::READ | perms::WRITE);
    assert!(t.apply_as(tx(10), &[alice()], &multi).is_ok());
    assert_eq!(t.get("/p").unwrap().data.as_deref(), Some(&b"denied"[..]));
}

#[test]
fn a_multi_checks_each_operation_against_the_acls_before_it() {
    // The multi creates /r with a read-only ACL, then tries to create a child of it: the
    // second create sees /r's new ACL and is denied, so neither happens.
    let mut t = DataTree::new();
    let before = state(&t);
    let multi = Op::Multi(vec![
        Op::create_with_acl("/r", vec![], Persistent, Acl::read_unsafe()),
        Op::create("/r/c", vec![], Persistent),
    ]);
    assert!(matches!(
        t.apply_as(tx(1), &[alice()], &multi),
        Err(Error::MultiFailed { index: 1, .. })
    ));
    assert_eq!(state(&t), before);
    // set_acl is not a multi operation.
    let multi = Op::Multi(vec![Op::set_acl("/", Acl::open_unsafe(), None)]);
    assert_eq!(code(t.apply(tx(2), &multi)), -8);
}

#[test]
fn set_acl_versions_the_acl_and_nothing_else() {
    let mut t = DataTree::new();
    t.apply(tx(1), &Op::create("/a", b"x".to_vec(), Persistent))
        .unwrap();
    t.take_events();
    let before = t.get("/a").unwrap().stat();
    let acl = vec![Acl::new(perms::ALL, alice())];
    let OpResult::SetAcl { stat } = t
        .apply(tx(2), &Op::set_acl("/a", acl.clone(), Some(0)))
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(stat.aversion, 1);
    assert_eq!(
        Stat {
            aversion: 1,
            ..before
        },
        stat,
        "only aversion changes: no mzxid, version or pzxid"
    );
    assert_eq!(t.get("/a").unwrap().acl(), acl.as_slice());
    assert!(t.take_events().is_empty(), "setACL fires no watch");
    assert!(
        t.take_dirty().paths.contains(&"/a".to_string()),
        "persisted"
    );
    // The expected version is the aversion.
    let res = t.apply(tx(3), &Op::set_acl("/a", Acl::open_unsafe(), Some(0)));
    assert!(
        matches!(
            res,
            Err(Error::BadVersion {
                expected: 0,
                actual: 1,
                ..
            })
        ),
        "{res:?}"
    );
    t.apply(tx(4), &Op::set_acl("/a", Acl::open_unsafe(), Some(1)))
        .unwrap();
    t.apply(tx(5), &Op::set_acl("/a", Acl::read_unsafe(), None))
        .unwrap();
    assert_eq!(t.get("/a").unwrap().stat().aversion, 3);
    assert_eq!(
        code(t.apply(tx(6), &Op::set_acl("/none", Acl::open_unsafe(), None))),
        -101
    );
    assert_eq!(t.digest(), t.recompute_digest());
}

#[test]
fn the_auth_scheme_becomes_the_callers_digest_ids() {
    let mut t = DataTree::new();
    let ids = [Id::new("ip", "10.0.0.1"), alice(), bob()];
    t.apply_as(
        tx(1),
        &ids,
        &Op::create_with_acl(
            "/mine",
            vec![],
            Persistent,
            vec![
                Acl::new(perms::ALL, Id::auth()),
                Acl::new(perms::READ, Id::anyone()),
            ],
        ),
    )
    .unwrap();
    assert_eq!(
        t.get("/mine").unwrap().acl(),
        [
            Acl::new(perms::ALL, alice()),
            Acl::new(perms::ALL, bob()),
            Acl::new(perms::READ, Id::anyone()),
        ]
    );
    // Without a digest id there is nobody to expand to: InvalidAcl, for set_acl too, and
    // for the super user (its id has no provider) and the node's own calls.
    for ids in [
        &[][..],
        &[Id::new("ip", "10.0.0.1")][..],
        &[Id::super_user()][..],
    ] {
        let before = state(&t);
        assert_eq!(
            code(t.apply_as(
                tx(2),
                ids,
                &Op::create_with_acl("/x", vec![], Persistent, Acl::creator_all())
            )),
            -114
        );
        assert_eq!(
            code(t.apply_as(tx(3), ids, &Op::set_acl("/mine", Acl::creator_all(), None))),
            -114
        );
        assert_eq!(state(&t), before);
    }
    // Both creators hold every permission: bob may write, alice may narrow the ACL to
    // herself (her own `auth` expands to her id only), which shuts bob out.
    t.apply_as(tx(4), &[bob()], &Op::set_data("/mine", b"b".to_vec(), None))
        .unwrap();
    t.apply_as(
        tx(5),
        &[alice()],
        &Op::set_acl("/mine", Acl::creator_all(), None),
    )
    .unwrap();
    assert_eq!(
        t.get("/mine").unwrap().acl(),
        [Acl::new(perms::ALL, alice())]
    );
    assert_eq!(
        code(t.apply_as(tx(6), &[bob()], &Op::set_data("/mine", vec![], None))),
        -102
    );
}

#[test]
fn system_znodes_have_zookeepers_acls_and_config_stays_read_only() {
    let mut t = DataTree::new();
    for p in ["/", "/zookeeper", "/zookeeper/quota"] {
        assert_eq!(t.get(p).unwrap().acl(), Acl::open_unsafe(), "{p}");
    }
    let config = t.get(CONFIG_PATH).unwrap();
    assert_eq!(config.acl(), Acl::read_unsafe());
    assert_eq!(config.stat().aversion, -1);
    // Anyone may read (check) it; nobody, not even the super user, may change it.
    assert_eq!(
        code(t.apply_as(tx(1), &[], &Op::check(CONFIG_PATH, None))),
        0
    );
    let before = state(&t);
    for ids in [&[][..], &[Id::super_user()][..]] {
        for op in [
            Op::set_data(CONFIG_PATH, vec![], None),
            Op::set_acl(CONFIG_PATH, Acl::open_unsafe(), None),
            Op::create("/zookeeper/config/x", vec![], Persistent),
        ] {
            assert_eq!(code(t.apply_as(tx(2), ids, &op)), -102, "{op:?}");
        }
    }
    assert_eq!(state(&t), before);
}

#[test]
fn equal_acls_share_one_allocation_and_the_cache_stays_bounded() {
    let mut t = DataTree::new();
    let acl = vec![Acl::new(perms::ALL, alice())];
    for (i, p) in ["/a", "/b", "/c"].iter().enumerate() {
        t.apply(
            tx(i as i64 + 1),
            &Op::create_with_acl(*p, vec![], Persistent, acl.clone()),
        )
        .unwrap();
    }
    t.apply(tx(4), &Op::create("/open", vec![], Persistent))
        .unwrap();
    let (a, b) = (&t.get("/a").unwrap().acl, &t.get("/c").unwrap().acl);
    assert!(Arc::ptr_eq(a, b));
    assert!(Arc::ptr_eq(
        &t.get("/open").unwrap().acl,
        &acl::open_shared()
    ));
    assert!(Arc::ptr_eq(&t.get("/").unwrap().acl, &acl::open_shared()));
    // Many ACLs set one after another on one znode: the ones no znode holds are dropped.
    for i in 0..10_000 {
        let acl = vec![Acl::new(i % 32, alice())];
        t.apply(tx(10 + i64::from(i)), &Op::set_acl("/a", acl, None))
            .unwrap();
    }
    assert!(t.acls.len() <= 2 * ACL_CACHE_MIN, "{} cached", t.acls.len());
    assert_eq!(t.digest(), t.recompute_digest());
}

#[test]
fn the_digest_tells_acls_apart() {
    let mut a = DataTree::new();
    let mut b = DataTree::new();
    a.apply(
        tx(1),
        &Op::create_with_acl("/x", vec![], Persistent, Acl::read_unsafe()),
    )
    .unwrap();
    b.apply(tx(1), &Op::create("/x", vec![], Persistent))
        .unwrap();
    // Same stat, same data: only the ACL differs.
    assert_eq!(a.get("/x").unwrap().stat(), b.get("/x").unwrap().stat());
    assert_ne!(a.digest(), b.digest());
    assert_eq!(a.digest(), a.recompute_digest());
}

#[test]
fn ordered_requests_run_with_their_identities() {
    let mut t = tree_granting(perms::WRITE);
    let s = {
        let r = t
            .apply(
                tx(5),
                &Op::CreateSession {
                    timeout_ms: 1000,
                    password: vec![],
                    host: 1,
                },
            )
            .unwrap();
        let OpResult::SessionCreated { session } = r else {
            panic!()
        };
        session
    };
    let stx = |zxid| Txn {
        zxid,
        time: 0,
        session: s,
    };
    let op = Op::set_data("/p", vec![1], None);
    assert_eq!(
        code(t.apply_ordered(stx(6), 1, (1, 1), &[bob()], &op)),
        -102
    );
    // The denied request still took its place in the session's order.
    assert_eq!(code(t.apply_ordered(stx(7), 1, (1, 2), &[alice()], &op)), 0);
    // Housekeeping is not checked: closing the session needs no identity.
    assert_eq!(
        code(t.apply_ordered(
            stx(8),
            1,
            (0, 0),
            &[],
            &Op::CloseSession {
                session: s,
                expired: true
            }
        )),
        0
    );
}
