//! Membership changes over TCP: a node started with `joining` is added with `add_member`
//! (as a learner, promoted once caught up), catches up through a snapshot and serves; a
//! member is removed, the leader too (it hands over first); every member's transport learns
//! of both, and a restarted member still reaches the added one from the address it
//! recorded. Observers, named at start or added, serve and never vote.

mod common;

use std::net::TcpListener;
use std::time::Duration;

use common::{retry, wait_until};
use zkraft::{CreateMode, Error, Node, NodeBuilder};

fn free_ports(n: usize) -> Vec<u16> {
    let l: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    l.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

fn builder(id: u64, dir: &std::path::Path, members: &[(u64, String)]) -> NodeBuilder {
    Node::builder(id)
        .members(members.iter().cloned())
        .data_dir(dir)
        .tick_interval(Duration::from_millis(20))
        .request_timeout(Duration::from_secs(5))
        .snapshot_entries(100)
}

fn converged(nodes: &[&Node]) -> bool {
    let d: Vec<_> = nodes.iter().map(|n| n.digest()).collect();
    d.windows(2).all(|w| w[0] == w[1])
}

#[test]
fn a_member_is_added_through_a_snapshot_and_another_removed() {
    let ports = free_ports(4);
    let addr = |id: u64| format!("127.0.0.1:{}", ports[id as usize - 1]);
    let first3: Vec<(u64, String)> = (1..=3).map(|i| (i, addr(i))).collect();
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let start =
        |i: u64, members: &[(u64, String)]| builder(i, dirs[i as usize - 1].path(), members);
    let n1 = start(1, &first3).start().unwrap();
    let n2 = start(2, &first3).start().unwrap();
    let n3 = start(3, &first3).start().unwrap();
    retry(|| n1.create("/a", b"", CreateMode::Persistent));
    for i in 0..300 {
        retry(|| n1.create(&format!("/a/{i}"), b"x", CreateMode::Persistent));
    }
    assert!(n1.metrics().log_first_index > 2, "the log was compacted");

    // Node 4 starts outside the ensemble, knowing everyone's address.
    let all4: Vec<(u64, String)> = (1..=4).map(|i| (i, addr(i))).collect();
    let n4 = start(4, &all4).joining().start().unwrap();
    assert!(n4.members().is_empty(), "not a member yet");
    assert_eq!(n1.members(), [1, 2, 3]);
    assert!(matches!(
        n1.add_member(0, "127.0.0.1:1"),
        Err(Error::BadArguments(_))
    ));
    assert!(matches!(
        n1.add_member(5, "nowhere"),
        Err(Error::BadArguments(_))
    ));
    let config_before = n1.configuration();
    assert_eq!(config_before.voters(), [1, 2, 3]);
    n1.add_member(4, &format!("{}:0:participant;127.0.0.1:2181", addr(4)))
        .unwrap();
    // Added as a learner, promoted once caught up: the call returned once it votes.
    assert_eq!(n1.members(), [1, 2, 3, 4]);
    let config = n1.configuration();
    assert_eq!(config.voters(), [1, 2, 3, 4]);
    assert!(config.version > config_before.version);
    let (text, stat) = n1.get_data("/zookeeper/config").unwrap();
    let text = String::from_utf8(text).unwrap();
    assert_eq!(text, config.render());
    assert!(
        text.contains(&format!(
            "server.4={}:0:participant;127.0.0.1:2181\n",
            addr(4)
        )),
        "{text}"
    );
    assert!(
        text.ends_with(&format!("version={:x}", config.version)),
        "{text}"
    );
    assert_eq!(stat.mzxid, config.version as i64);
    wait_until(Duration::from_secs(20), "node 4 caught up", || {
        converged(&[&n1, &n2, &n3, &n4])
    });
    assert_eq!(n4.members(), [1, 2, 3, 4]);
    assert!(n4.metrics().snapshots_installed >= 1, "through a snapshot");
    assert_eq!(n4.get_children("/a").unwrap().len(), 300);
    retry(|| n4.create("/from-4", b"", CreateMode::Persistent));

    // Node 2 leaves; the others go on without it.
    assert!(
        matches!(n1.remove_member(9), Err(Error::BadArguments(_))),
        "not a member"
    );
    n1.remove_member(2).unwrap();
    wait_until(
        Duration::from_secs(10),
        "everyone applied the removal",
        || [&n1, &n3, &n4].iter().all(|n| n.members() == [1, 3, 4]),
    );
    n2.shutdown();
    retry(|| n1.create("/after-2", b"", CreateMode::Persistent));

    // Node 1 restarts with its original member list (no node 4 in it) and node 3 stops:
    // the quorum {1, 4} only works if node 1 reaches node 4 from the recorded address.
    n1.shutdown();
    n3.shutdown();
    drop((n1, n3));
    let n1 = start(1, &first3).start().unwrap();
    assert_eq!(n1.members(), [1, 3, 4]);
    retry(|| n1.create("/quorum-1-4", b"", CreateMode::Persistent));
    wait_until(Duration::from_secs(10), "node 4 has it", || {
        n4.exists("/quorum-1-4").ok().flatten().is_some()
    });
    wait_until(Duration::from_secs(10), "1 and 4 agree", || {
        converged(&[&n1, &n4])
    });
}

#[test]
fn a_member_started_with_another_configuration_still_catches_up_through_a_snapshot() {
    // Node 4 is (wrongly) started as a founding member of a 4-node ensemble instead of
    // `joining`: its bootstrap differs from the ensemble's (another term at index 1), so
    // the leader must send it a snapshot rather than a log that never held its voters.
    let ports = free_ports(4);
    let addr = |id: u64| format!("127.0.0.1:{}", ports[id as usize - 1]);
    let first3: Vec<(u64, String)> = (1..=3).map(|i| (i, addr(i))).collect();
    let all4: Vec<(u64, String)> = (1..=4).map(|i| (i, addr(i))).collect();
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let n: Vec<Node> = (1..=3)
        .map(|i| {
            builder(i, dirs[i as usize - 1].path(), &first3)
                .snapshot_entries(100_000)
                .start()
                .unwrap()
        })
        .collect();
    retry(|| n[0].create("/x", b"1", CreateMode::Persistent));
    let n4 = builder(4, dirs[3].path(), &all4).start().unwrap();
    retry(|| n[0].add_member(4, &addr(4)));
    wait_until(Duration::from_secs(20), "node 4 caught up", || {
        converged(&[&n[0], &n[1], &n[2], &n4])
    });
    assert!(n4.metrics().snapshots_installed >= 1, "through a snapshot");
    assert_eq!(n4.members(), [1, 2, 3, 4]);
}

/// The leader is removed through a follower: it hands its leadership over first, and the
/// removal is applied under the next leader. Then an observer is added: it serves reads
/// and forwards writes, and does not vote — with one of the two voters gone, nothing
/// commits although the observer lives.
#[test]
fn the_leader_hands_over_before_its_removal_and_an_observer_never_votes() {
    let ports = free_ports(4);
    let addr = |id: u64| format!("127.0.0.1:{}", ports[id as usize - 1]);
    let first3: Vec<(u64, String)> = (1..=3).map(|i| (i, addr(i))).collect();
    let all4: Vec<(u64, String)> = (1..=4).map(|i| (i, addr(i))).collect();
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes: Vec<Option<Node>> = (1..=3)
        .map(|i| {
            Some(
                builder(i, dirs[i as usize - 1].path(), &first3)
                    .start()
                    .unwrap(),
            )
        })
        .collect();
    retry(|| get(&nodes, 1).create("/x", b"1", CreateMode::Persistent));
    let leader = wait_leader(&nodes);
    let follower = (1..=3).find(|&i| i != leader).unwrap();
    get(&nodes, follower).remove_member(leader).unwrap();
    let rest: Vec<u64> = (1..=3).filter(|&i| i != leader).collect();
    wait_until(
        Duration::from_secs(10),
        "the others applied the removal",
        || rest.iter().all(|&i| get(&nodes, i).members() == rest),
    );
    let new_leader = wait_leader(&nodes);
    assert_ne!(new_leader, leader, "leadership moved before the removal");
    nodes[leader as usize - 1].take().unwrap().shutdown();
    retry(|| get(&nodes, rest[0]).create("/after", b"", CreateMode::Persistent));

    // An observer joins.
    let n4 = builder(4, dirs[3].path(), &all4).joining().start().unwrap();
    get(&nodes, rest[0])
        .add_member(4, &format!("{}:0:observer", addr(4)))
        .unwrap();
    let config = get(&nodes, rest[0]).configuration();
    assert_eq!(config.voters(), rest);
    assert_eq!(config.observers(), [4]);
    wait_until(Duration::from_secs(20), "the observer caught up", || {
        n4.exists("/after").ok().flatten().is_some()
    });
    assert_eq!(n4.members(), rest, "an observer is not a voter");
    assert_eq!(n4.role(), zkraft::Role::Observer);
    retry(|| n4.create("/from-observer", b"o", CreateMode::Persistent));
    wait_until(
        Duration::from_secs(10),
        "a voter has the observer's write",
        || {
            get(&nodes, rest[1])
                .exists("/from-observer")
                .ok()
                .flatten()
                .is_some()
        },
    );
    // One voter of two gone: the observer lives, and still nothing commits.
    nodes[rest[1] as usize - 1].take().unwrap().shutdown();
    let refused = n4.create("/no-quorum", b"", CreateMode::Persistent);
    assert!(
        refused.is_err(),
        "a write committed without a quorum of voters"
    );
    assert!(get(&nodes, rest[0]).exists("/no-quorum").unwrap().is_none());
}

fn get(nodes: &[Option<Node>], id: u64) -> &Node {
    nodes[id as usize - 1].as_ref().expect("running")
}

fn wait_leader(nodes: &[Option<Node>]) -> u64 {
    let mut leader = 0;
    wait_until(Duration::from_secs(10), "a leader", || {
        leader = nodes
            .iter()
            .flatten()
            .find(|n| n.role() == zkraft::Role::Leader)
            .map_or(0, |n| n.id());
        leader != 0
    });
    leader
}

/// Observers named at start (ZooKeeper's `server.N=…:observer`) are raft learners from the
/// bootstrap on: they serve, and the voters alone make the quorum.
#[test]
fn an_observer_configured_at_start_serves_and_does_not_vote() {
    let ports = free_ports(3);
    let members: Vec<(u64, String)> = (1..=3)
        .map(|i| {
            let role = if i == 3 { "observer" } else { "participant" };
            (i, format!("127.0.0.1:{}:0:{role}", ports[i as usize - 1]))
        })
        .collect();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let nodes: Vec<Node> = (1..=3)
        .map(|i| {
            builder(i, dirs[i as usize - 1].path(), &members)
                .start()
                .unwrap()
        })
        .collect();
    retry(|| nodes[0].create("/x", b"1", CreateMode::Persistent));
    wait_until(Duration::from_secs(10), "the observer has it", || {
        nodes[2].exists("/x").ok().flatten().is_some()
    });
    assert_eq!(nodes[2].role(), zkraft::Role::Observer);
    for n in &nodes {
        assert_eq!(n.members(), [1, 2], "voters only");
        assert_eq!(n.configuration().observers(), [3]);
    }
    retry(|| nodes[2].create("/from-observer", b"", CreateMode::Persistent));
    // One voter of two gone: the observer lives, nothing commits.
    let mut nodes = nodes;
    let voter = if nodes[0].role() == zkraft::Role::Leader {
        1
    } else {
        0
    };
    nodes.remove(voter).shutdown();
    let survivor = nodes.iter().find(|n| n.id() != 3).unwrap();
    let refused = survivor.create("/no-quorum", b"", CreateMode::Persistent);
    assert!(refused.is_err(), "{refused:?}");
}
