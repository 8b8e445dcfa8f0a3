//! ACLs in an in-process ensemble: a session without credentials is denied what a znode's
//! ACL does not grant it, digest authentication grants it, the super digest passes
//! everything, and ACLs are replicated, survive a full restart and reach a follower
//! through a snapshot — enforced alike on every member.

mod common;

use std::time::Duration;

use common::{retry, wait_until, Cluster};
use zkraft::acl::{self, perms};
use zkraft::{Acl, CreateMode, Error, Id, Op, Session};

const SUPER_PASSWORD: &str = "test";

/// Three nodes with the super digest of `super:test` and a short log.
fn cluster() -> Cluster {
    Cluster::with(3, |b| {
        b.super_digest(acl::digest("super", SUPER_PASSWORD))
            .snapshot_entries(200)
    })
}

fn no_auth<T: std::fmt::Debug>(r: zkraft::Result<T>) -> bool {
    match r {
        Err(e) => e.code() == -102,
        Ok(v) => panic!("allowed: {v:?}"),
    }
}

/// A session on `node` authenticated as `user` with `password`.
fn session_as(c: &Cluster, node: u64, user: &str, password: &str) -> Session {
    let s = c.node(node).session().unwrap();
    s.add_auth("digest", format!("{user}:{password}").as_bytes())
        .unwrap();
    s
}

#[test]
fn a_session_without_auth_is_denied_and_digest_auth_allows() {
    let c = cluster();
    let leader = c.wait_leader();
    let follower = c.ids.iter().copied().find(|id| *id != leader).unwrap();

    // Alice, on the leader, creates a znode only she may touch, and one anyone may read.
    let alice = session_as(&c, leader, "alice", "a-secret");
    retry(|| {
        alice.create_with_acl(
            "/alice",
            b"hers",
            CreateMode::Persistent,
            Acl::creator_all(),
        )
    });
    let mut readable = Acl::creator_all();
    readable.push(Acl::new(perms::READ, Id::anyone()));
    alice
        .create_with_acl("/alice/public", b"pub", CreateMode::Persistent, readable)
        .unwrap();
    let (acl, stat) = alice.get_acl("/alice").unwrap();
    assert_eq!(
        acl,
        [Acl::new(perms::ALL, Id::digest("alice", "a-secret"))],
        "auth became alice's digest id"
    );
    assert_eq!(stat.aversion, 0);

    // A session without credentials, on a follower: every member enforces the same ACL.
    let anonymous = c.node(follower).session().unwrap();
    anonymous.sync("/").unwrap();
    assert!(no_auth(anonymous.get_data("/alice", None)));
    assert!(no_auth(anonymous.get_children("/alice", None)));
    assert!(no_auth(anonymous.exists("/alice", None)));
    assert!(no_auth(anonymous.get_acl("/alice")));
    assert!(no_auth(anonymous.set_data("/alice", b"x", None)));
    assert!(no_auth(anonymous.set_acl(
        "/alice",
        Acl::open_unsafe(),
        None
    )));
    assert!(no_auth(anonymous.create(
        "/alice/x",
        b"",
        CreateMode::Persistent
    )));
    assert!(no_auth(anonymous.delete("/alice/public", None)));
    assert!(no_auth(anonymous.multi(vec![
        Op::create("/fine", b"".to_vec(), CreateMode::Persistent),
        Op::check("/alice", None),
    ])));
    assert!(
        c.node(follower).exists("/fine").unwrap().is_none(),
        "nothing of the multi"
    );
    // What the ACL grants everybody still works; a missing znode is NoNode, not NoAuth.
    assert_eq!(anonymous.get_data("/alice/public", None).unwrap().0, b"pub");
    assert!(anonymous.exists("/alice/none", None).unwrap().is_none());
    assert!(matches!(
        anonymous.get_data("/alice/none", None),
        Err(Error::NoNode(_))
    ));
    // READ without ADMIN shows the ACL with digest hashes hidden.
    let (shown, _) = anonymous.get_acl("/alice/public").unwrap();
    assert_eq!(shown[0].id, Id::new("digest", "alice:x"));
    assert_eq!(shown[1], Acl::new(perms::READ, Id::anyone()));

    // Bob has credentials, but not hers.
    let bob = session_as(&c, follower, "bob", "b-secret");
    assert!(no_auth(bob.get_data("/alice", None)));
    assert!(no_auth(bob.set_data("/alice", b"x", None)));
    // A wrong password is another identity, not a failure.
    let mallory = session_as(&c, follower, "alice", "guess");
    assert!(no_auth(mallory.get_data("/alice", None)));

    // Alice, in a second session on the follower, may do everything.
    let alice2 = session_as(&c, follower, "alice", "a-secret");
    alice2.sync("/").unwrap();
    assert_eq!(alice2.get_data("/alice", None).unwrap().0, b"hers");
    alice2.set_data("/alice", b"v2", None).unwrap();
    alice2
        .create("/alice/child", b"", CreateMode::Persistent)
        .unwrap();
    alice2.delete("/alice/child", None).unwrap();
    let (full, _) = alice2.get_acl("/alice/public").unwrap();
    assert_eq!(
        full[0].id,
        Id::digest("alice", "a-secret"),
        "ADMIN sees it all"
    );
    // She lets bob read; the ACL's version goes up.
    let stat = alice2
        .set_acl(
            "/alice",
            vec![
                Acl::new(perms::ALL, Id::digest("alice", "a-secret")),
                Acl::new(perms::READ, Id::digest("bob", "b-secret")),
            ],
            Some(0),
        )
        .unwrap();
    assert_eq!(stat.aversion, 1);
    assert!(matches!(
        alice2.set_acl("/alice", Acl::open_unsafe(), Some(0)),
        Err(Error::BadVersion { .. })
    ));
    bob.sync("/").unwrap();
    assert_eq!(bob.get_data("/alice", None).unwrap().0, b"v2");
    assert!(no_auth(bob.set_data("/alice", b"x", None)));

    // Credentials the node cannot take are AuthFailed, and add nothing.
    assert_eq!(
        anonymous.add_auth("kerberos", b"x").unwrap_err().code(),
        -115
    );
    assert!(matches!(
        anonymous.add_auth("digest", b"no-colon"),
        Err(Error::AuthFailed(_))
    ));
    assert!(anonymous.identities().is_empty());
    assert!(no_auth(anonymous.get_data("/alice", None)));
    // The creator_all ACL needs an authenticated identity.
    assert!(matches!(
        anonymous.create_with_acl("/mine", b"", CreateMode::Persistent, Acl::creator_all()),
        Err(Error::InvalidAcl { .. })
    ));
    assert_eq!(
        anonymous
            .create_with_acl("/empty", b"", CreateMode::Persistent, vec![])
            .unwrap_err()
            .code(),
        -114
    );

    // Every replica holds the same ACLs.
    c.wait_converged(Duration::from_secs(10));
    let acls: Vec<_> = c.running().map(|n| n.get_acl("/alice").unwrap()).collect();
    assert!(acls.windows(2).all(|w| w[0] == w[1]), "{acls:?}");
}

#[test]
fn the_super_digest_passes_every_acl_and_the_node_itself_is_super() {
    let c = cluster();
    let leader = c.wait_leader();
    let alice = session_as(&c, leader, "alice", "a-secret");
    retry(|| {
        alice.create_with_acl(
            "/vault",
            b"gold",
            CreateMode::Persistent,
            Acl::creator_all(),
        )
    });
    for id in c.ids.clone() {
        let admin = session_as(&c, id, "super", SUPER_PASSWORD);
        assert!(admin.identities().contains(&Id::super_user()));
        admin.sync("/").unwrap();
        assert_eq!(admin.get_data("/vault", None).unwrap().0, b"gold");
        let path = format!("/vault/by-{id}");
        admin.create(&path, b"", CreateMode::Persistent).unwrap();
        admin.delete(&path, None).unwrap();
        // Its ACL comes back unredacted.
        assert_eq!(
            admin.get_acl("/vault").unwrap().0[0].id,
            Id::digest("alice", "a-secret")
        );
        // The wrong password is an ordinary digest identity.
        let not_admin = session_as(&c, id, "super", "wrong");
        assert!(!not_admin.identities().contains(&Id::super_user()));
        assert!(no_auth(not_admin.get_data("/vault", None)));
    }
    let admin = session_as(&c, leader, "super", SUPER_PASSWORD);
    admin.set_acl("/vault", Acl::read_unsafe(), None).unwrap();
    // Even the super user cannot change /zookeeper/config (zkraft keeps it read-only).
    assert!(no_auth(admin.set_data("/zookeeper/config", b"x", None)));
    assert_eq!(
        admin.get_acl("/zookeeper/config").unwrap().0,
        Acl::read_unsafe()
    );

    // The node's own calls are the embedding service: super, with no credentials.
    let node = c.node(leader);
    node.set_data("/vault", b"silver", None).unwrap();
    node.set_acl("/vault", vec![Acl::new(0, Id::anyone())], None)
        .unwrap();
    assert_eq!(node.get_data("/vault").unwrap().0, b"silver");
    node.create("/vault/x", b"", CreateMode::Persistent)
        .unwrap();
    node.delete("/vault/x", None).unwrap();
    assert_eq!(node.get_acl("/vault").unwrap().1.aversion, 2);
    // Without an authenticated id, `auth` cannot be expanded, even for the node.
    assert!(matches!(
        node.create_with_acl("/n", b"", CreateMode::Persistent, Acl::creator_all()),
        Err(Error::InvalidAcl { .. })
    ));
}

#[test]
fn acls_survive_a_full_restart_and_reach_a_follower_through_a_snapshot() {
    let mut c = cluster();
    let leader = c.wait_leader();
    let alice = session_as(&c, leader, "alice", "a-secret");
    retry(|| alice.create_with_acl("/kept", b"v", CreateMode::Persistent, Acl::creator_all()));
    alice
        .set_acl(
            "/kept",
            vec![
                Acl::new(perms::ALL, Id::digest("alice", "a-secret")),
                Acl::new(perms::READ, Id::new("ip", "10.0.0.0/8")),
            ],
            None,
        )
        .unwrap();
    drop(alice);
    let before = c.node(leader).get_acl("/kept").unwrap();
    c.wait_converged(Duration::from_secs(10));

    // A follower misses enough to need a snapshot, including another ACL change.
    let lagging = c.ids.iter().copied().find(|id| *id != leader).unwrap();
    c.net.isolate(lagging);
    let others: Vec<u64> = c.ids.iter().copied().filter(|i| *i != lagging).collect();
    let leader = c.wait_leader_among(&others, Duration::from_secs(10));
    let node = c.node(leader);
    retry(|| node.create_with_acl("/late", b"", CreateMode::Persistent, Acl::read_unsafe()));
    for i in 0..400u32 {
        retry(|| node.set_data("/late", &i.to_be_bytes(), None));
    }
    assert!(node.metrics().log_first_index > c.node(lagging).applied_index() + 1);
    c.net.heal();
    wait_until(Duration::from_secs(20), "a snapshot installed", || {
        c.node(lagging).metrics().snapshots_installed > 0
    });
    c.wait_converged(Duration::from_secs(20));
    assert_eq!(
        c.node(lagging).get_acl("/late").unwrap().0,
        Acl::read_unsafe()
    );
    assert_eq!(c.node(lagging).get_acl("/kept").unwrap(), before);
    let anonymous = c.node(lagging).session().unwrap();
    assert!(no_auth(anonymous.set_data("/late", b"x", None)));
    assert!(no_auth(anonymous.get_data("/kept", None)));
    drop(anonymous);

    // Every member restarts from its RocksDB directory with the same ACLs.
    for id in c.ids.clone() {
        c.stop(id);
    }
    c.net.heal();
    for id in c.ids.clone() {
        c.start(id);
    }
    let leader = c.wait_leader();
    c.wait_converged(Duration::from_secs(20));
    for n in c.running() {
        assert_eq!(n.get_acl("/kept").unwrap(), before, "node {}", n.id());
        assert_eq!(n.get_acl("/late").unwrap().0, Acl::read_unsafe());
    }
    let anonymous = c.node(leader).session().unwrap();
    assert!(no_auth(anonymous.get_data("/kept", None)));
    let alice = session_as(&c, leader, "alice", "a-secret");
    assert_eq!(alice.get_data("/kept", None).unwrap().0, b"v");
    alice.set_data("/kept", b"after", None).unwrap();
}

#[test]
fn a_moved_session_keeps_its_identities() {
    let c = cluster();
    let leader = c.wait_leader();
    let follower = c.ids.iter().copied().find(|id| *id != leader).unwrap();
    let alice = session_as(&c, leader, "alice", "a-secret");
    retry(|| alice.create_with_acl("/a", b"x", CreateMode::Persistent, Acl::creator_all()));
    let moved = alice.move_to(c.node(follower)).unwrap();
    assert_eq!(moved.identities(), [Id::digest("alice", "a-secret")]);
    moved.set_data("/a", b"y", None).unwrap();
    // Attaching by id and password alone starts without identities (a ZooKeeper client
    // re-sends its credentials after it reconnects).
    let other = c.ids.iter().copied().find(|id| *id != follower).unwrap();
    let attached = c
        .node(other)
        .attach_session(moved.id(), moved.password())
        .unwrap();
    assert!(attached.identities().is_empty());
    assert!(no_auth(attached.get_data("/a", None)));
    attached.add_auth("digest", b"alice:a-secret").unwrap();
    assert_eq!(attached.get_data("/a", None).unwrap().0, b"y");
}
