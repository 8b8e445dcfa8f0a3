//! Membership changes over TCP: a node started with `joining` is added with `add_member`,
//! catches up through a snapshot and serves; a member is removed; every member's
//! transport learns of both, and a restarted member still reaches the added one from the
//! address it recorded.

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
        n1.add_member(2, "127.0.0.1:1"),
        Err(Error::BadArguments(_))
    ));
    assert!(matches!(
        n1.add_member(5, "nowhere"),
        Err(Error::BadArguments(_))
    ));
    n1.add_member(4, &addr(4)).unwrap();
    assert_eq!(n1.members(), [1, 2, 3, 4]);
    wait_until(Duration::from_secs(20), "node 4 caught up", || {
        converged(&[&n1, &n2, &n3, &n4])
    });
    assert_eq!(n4.members(), [1, 2, 3, 4]);
    assert!(n4.metrics().snapshots_installed >= 1, "through a snapshot");
    assert_eq!(n4.get_children("/a").unwrap().len(), 300);
    retry(|| n4.create("/from-4", b"", CreateMode::Persistent));

    // Node 2 leaves; the others go on without it.
    assert!(
        matches!(n1.remove_member(1), Err(Error::BadArguments(_))),
        "not itself"
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
