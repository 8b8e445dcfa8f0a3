//! Every call of the synchronous API and every error path, on 1-, 3- and 5-node clusters,
//! with the tree checked unchanged after each error on every replica.

mod common;

use std::time::Duration;

use common::{image, Cluster};
use zkraft::{CreateMode, Error, Node, Op, OpResult};

/// A call's result and a predicate its error must satisfy.
type Expectation<'a> = (&'a str, zkraft::Result<()>, fn(&Error) -> bool);

fn assert_unchanged(c: &Cluster, before: &common::TreeImage, what: &str) {
    for n in c.running() {
        assert_eq!(&image(n), before, "{what} changed node {}", n.id());
    }
}

/// Runs the whole API through `api`, checking replicas of `c`.
fn exercise(c: &Cluster, api: &Node) {
    // create / exists / get_data / get_children
    assert_eq!(
        api.create("/app", b"root", CreateMode::Persistent).unwrap(),
        "/app"
    );
    let (p, st) = api
        .create_with_stat("/app/cfg", b"v0", CreateMode::Persistent)
        .unwrap();
    assert_eq!(p, "/app/cfg");
    assert_eq!(
        (st.version, st.data_length, st.czxid, st.mzxid),
        (0, 2, st.pzxid, st.czxid)
    );
    let (data, stat) = api.get_data("/app/cfg").unwrap();
    assert_eq!(
        (data.as_slice(), stat),
        (&b"v0"[..], st),
        "read-your-writes"
    );
    assert_eq!(api.exists("/app/cfg").unwrap(), Some(st));
    assert_eq!(api.exists("/app/none").unwrap(), None);
    assert_eq!(api.get_children("/app").unwrap(), ["cfg"]);
    let (kids, parent) = api.get_children_with_stat("/app").unwrap();
    assert_eq!(
        (
            kids.len(),
            parent.num_children,
            parent.cversion,
            parent.pzxid
        ),
        (1, 1, 1, st.czxid)
    );
    assert!(api
        .get_children("/")
        .unwrap()
        .contains(&"zookeeper".to_string()));

    // set_data with and without versions
    let s1 = api.set_data("/app/cfg", b"v1", Some(0)).unwrap();
    assert_eq!((s1.version, s1.czxid), (1, st.czxid));
    assert!(s1.mzxid > st.mzxid);
    let s2 = api.set_data("/app/cfg", b"v2", None).unwrap();
    assert_eq!(s2.version, 2);

    // sequential
    let a = api
        .create("/app/job-", b"", CreateMode::PersistentSequential)
        .unwrap();
    let b = api
        .create("/app/job-", b"", CreateMode::PersistentSequential)
        .unwrap();
    assert_eq!(a, "/app/job-0000000001");
    assert_eq!(b, "/app/job-0000000002");

    // every error path leaves every replica unchanged
    c.wait_converged(Duration::from_secs(10));
    let before = image(api);
    let errors: Vec<Expectation> = vec![
        (
            "create existing",
            api.create("/app", b"", CreateMode::Persistent).map(drop),
            |e| matches!(e, Error::NodeExists(p) if p == "/app"),
        ),
        (
            "create no parent",
            api.create("/nope/x", b"", CreateMode::Persistent).map(drop),
            |e| matches!(e, Error::NoNode(p) if p == "/nope"),
        ),
        (
            "create invalid",
            api.create("/app/", b"", CreateMode::Persistent).map(drop),
            |e| matches!(e, Error::InvalidPath { .. }),
        ),
        (
            "create relative",
            api.create("app", b"", CreateMode::Persistent).map(drop),
            |e| matches!(e, Error::InvalidPath { .. }),
        ),
        (
            "create dot",
            api.create("/app/./x", b"", CreateMode::Persistent)
                .map(drop),
            |e| matches!(e, Error::InvalidPath { .. }),
        ),
        (
            "create too large",
            api.create("/big", &vec![0u8; 1024 * 1024], CreateMode::Persistent)
                .map(drop),
            |e| {
                matches!(
                    e,
                    Error::RequestTooLarge {
                        len: 1048627,
                        max: 1048575
                    }
                )
            },
        ),
        (
            "set too large",
            api.set_data("/app", &vec![0u8; 1024 * 1024], None)
                .map(drop),
            |e| matches!(e, Error::RequestTooLarge { .. }),
        ),
        (
            "read path too large",
            api.get_data(&format!("/{}", "p".repeat(1 << 20))).map(drop),
            |e| matches!(e, Error::RequestTooLarge { .. }),
        ),
        (
            "create in read-only /zookeeper/config",
            api.create("/zookeeper/config/x", b"", CreateMode::Persistent)
                .map(drop),
            |e| matches!(e, Error::NoAuth(_)),
        ),
        (
            "set read-only /zookeeper/config",
            api.set_data("/zookeeper/config", b"x", None).map(drop),
            |e| matches!(e, Error::NoAuth(_)),
        ),
        (
            "create with an emoji",
            api.create("/app/😀", b"", CreateMode::Persistent).map(drop),
            |e| matches!(e, Error::InvalidPath { .. }),
        ),
        (
            "set bad version",
            api.set_data("/app/cfg", b"x", Some(0)).map(drop),
            |e| {
                matches!(
                    e,
                    Error::BadVersion {
                        expected: 0,
                        actual: 2,
                        ..
                    }
                )
            },
        ),
        (
            "set missing",
            api.set_data("/app/none", b"x", None).map(drop),
            |e| matches!(e, Error::NoNode(_)),
        ),
        ("delete missing", api.delete("/app/none", None), |e| {
            matches!(e, Error::NoNode(_))
        }),
        (
            "delete not empty",
            api.delete("/app", None),
            |e| matches!(e, Error::NotEmpty(p) if p == "/app"),
        ),
        ("delete bad version", api.delete("/app/cfg", Some(7)), |e| {
            matches!(e, Error::BadVersion { .. })
        }),
        ("delete root", api.delete("/", None), |e| {
            matches!(e, Error::BadArguments(_))
        }),
        ("delete invalid", api.delete("/app//cfg", None), |e| {
            matches!(e, Error::InvalidPath { .. })
        }),
        ("get missing", api.get_data("/app/none").map(drop), |e| {
            matches!(e, Error::NoNode(_))
        }),
        (
            "children missing",
            api.get_children("/app/none").map(drop),
            |e| matches!(e, Error::NoNode(_)),
        ),
        ("exists invalid", api.exists("bad").map(drop), |e| {
            matches!(e, Error::InvalidPath { .. })
        }),
        (
            "multi fails",
            api.multi(vec![
                Op::create("/app/m1", b"x".to_vec(), CreateMode::Persistent),
                Op::set_data("/app/cfg", b"y".to_vec(), Some(2)),
                Op::check("/app/none", None),
            ])
            .map(drop),
            |e| matches!(e, Error::MultiFailed { index: 2, source } if matches!(**source, Error::NoNode(_))),
        ),
        (
            "multi invalid path",
            api.multi(vec![
                Op::create("/ok", vec![], CreateMode::Persistent),
                Op::delete("bad", None),
            ])
            .map(drop),
            |e| matches!(e, Error::MultiFailed { index: 1, source } if matches!(**source, Error::InvalidPath { .. })),
        ),
        (
            "multi nested",
            api.multi(vec![Op::Multi(vec![])]).map(drop),
            |e| matches!(e, Error::MultiFailed { index: 0, source } if matches!(**source, Error::BadArguments(_))),
        ),
    ];
    for (what, res, ok) in errors {
        let e = res.expect_err(what);
        assert!(ok(&e), "{what}: unexpected {e:?}");
        assert!(e.code() < 0);
    }
    // Let any (wrongly) replicated change reach every node before comparing.
    api.sync("/").unwrap();
    c.wait_converged(Duration::from_secs(10));
    assert_unchanged(c, &before, "a failed call");

    // multi success, then delete and check the tree everywhere
    let rs = api
        .multi(vec![
            Op::check("/app/cfg", Some(2)),
            Op::create("/app/m", b"m".to_vec(), CreateMode::Persistent),
            Op::set_data("/app/cfg", b"v3".to_vec(), Some(2)),
            Op::delete(a.clone(), None),
        ])
        .unwrap();
    assert!(
        matches!(&rs[..], [OpResult::Check, OpResult::Create { .. }, OpResult::SetData { stat }, OpResult::Delete] if stat.version == 3)
    );
    api.delete(&b, Some(0)).unwrap();
    api.delete("/app/m", None).unwrap();
    assert_eq!(api.get_children("/app").unwrap(), ["cfg"]);
    assert_eq!(api.get_data_linearizable("/app/cfg").unwrap().0, b"v3");
    let img = c.wait_converged(Duration::from_secs(10));
    assert_eq!(img["/app/cfg"].0.as_deref(), Some(&b"v3"[..]));
    assert!(!img.contains_key(&a));
}

#[test]
fn single_node_serves_every_call() {
    let c = Cluster::new(1);
    let leader = c.leader();
    exercise(&c, leader);
}

#[test]
fn three_nodes_serve_every_call_through_a_follower() {
    let c = Cluster::new(3);
    let follower = c.follower();
    exercise(&c, follower);
}

#[test]
fn five_nodes_serve_every_call_through_the_leader() {
    let c = Cluster::new(5);
    let leader = c.leader();
    exercise(&c, leader);
}

#[test]
fn shut_down_node_refuses_calls() {
    let c = Cluster::new(1);
    let n = c.leader();
    n.create("/a", b"", CreateMode::Persistent).unwrap();
    n.shutdown();
    assert_eq!(
        n.create("/b", b"", CreateMode::Persistent),
        Err(Error::Shutdown)
    );
    assert_eq!(n.get_data("/a"), Err(Error::Shutdown));
    assert!(n.is_stopped());
}
