//! Log compaction and snapshots in an in-process ensemble: the log stays short, a follower
//! behind the compacted log catches up through a streamed snapshot, its watches and
//! sessions hear what changed, and every member restarts from a compacted log.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::{retry, wait_until, Cluster};
use zkraft::{CreateMode, EventType, Op};

const SNAPSHOT_ENTRIES: u64 = 200;

fn cluster() -> Cluster {
    Cluster::with(3, |b| b.snapshot_entries(SNAPSHOT_ENTRIES))
}

#[test]
fn the_log_is_compacted_and_a_restart_recovers_from_it() {
    let mut c = cluster();
    let leader = c.wait_leader();
    let node = c.node(leader);
    retry(|| node.create("/counter", b"", CreateMode::Persistent));
    for i in 0..1_000u32 {
        retry(|| node.set_data("/counter", &i.to_be_bytes(), None));
    }
    let before = c.wait_converged(Duration::from_secs(20));
    for n in c.running() {
        let m = n.metrics();
        assert!(
            m.log_compactions > 0,
            "node {} never compacted: {m:?}",
            n.id()
        );
        // At most SNAPSHOT_ENTRIES applied entries stay in the log after a compaction.
        let kept = n.applied_index() + 1 - m.log_first_index;
        assert!(
            kept <= SNAPSHOT_ENTRIES + 1,
            "node {} keeps {kept} entries",
            n.id()
        );
    }
    let digest = c.node(1).digest();
    for id in [1, 2, 3] {
        c.stop(id);
    }
    for id in [1, 2, 3] {
        c.net.heal();
        c.start(id);
    }
    c.wait_leader();
    let after = c.wait_converged(Duration::from_secs(20));
    assert_eq!(
        before, after,
        "the tree survives a restart from a compacted log"
    );
    assert_eq!(c.node(1).digest().value, digest.value);
    let (data, stat) = c.node(2).get_data("/counter").unwrap();
    assert_eq!(data, 999u32.to_be_bytes());
    assert_eq!(stat.version, 1000);
}

#[test]
fn a_follower_behind_the_compacted_log_catches_up_through_a_snapshot() {
    let c = cluster();
    let leader = c.wait_leader();
    let lagging = c.ids.iter().copied().find(|id| *id != leader).unwrap();
    let node = c.node(leader);
    retry(|| node.create("/w", b"", CreateMode::Persistent));
    retry(|| node.create("/gone", b"", CreateMode::Persistent));
    retry(|| node.create("/kept", b"v0", CreateMode::Persistent));

    // A session hosted on the lagging follower, with watches armed there.
    let session = c
        .node(lagging)
        .session_with_timeout(Duration::from_secs(30))
        .unwrap();
    let (tx, rx) = mpsc::channel();
    for p in ["/gone", "/kept"] {
        let tx = tx.clone();
        session
            .exists(p, zkraft::watch::watcher(move |e| tx.send(e).unwrap()))
            .unwrap()
            .expect("exists");
    }
    let tx2 = tx.clone();
    session
        .get_children("/w", zkraft::watch::watcher(move |e| tx2.send(e).unwrap()))
        .unwrap();
    let eph = session.create("/eph", b"", CreateMode::Ephemeral).unwrap();
    c.wait_converged(Duration::from_secs(10));

    c.net.isolate(lagging);
    let others: Vec<u64> = c.ids.iter().copied().filter(|i| *i != lagging).collect();
    let leader = c.wait_leader_among(&others, Duration::from_secs(10));
    let node = c.node(leader);
    for i in 0..600 {
        retry(|| node.create(&format!("/w/n{i:04}"), &[7; 100], CreateMode::Persistent));
    }
    retry(|| node.delete("/gone", None));
    retry(|| node.set_data("/kept", b"v1", None));
    // No data at all and empty data stay apart through the snapshot.
    retry(|| {
        node.multi(vec![
            Op::create("/null", [], CreateMode::Persistent).with_null_data(),
            Op::create("/empty", [], CreateMode::Persistent),
        ])
    });
    let first = node.metrics().log_first_index;
    assert!(
        first > c.node(lagging).applied_index() + 1,
        "the leader compacted past the follower ({first} vs {})",
        c.node(lagging).applied_index()
    );
    assert!(c.node(leader).session().is_ok());

    c.net.heal();
    wait_until(Duration::from_secs(20), "a snapshot installed", || {
        c.node(lagging).metrics().snapshots_installed > 0
    });
    let image = c.wait_converged(Duration::from_secs(20));
    assert_eq!(image.keys().filter(|p| p.starts_with("/w/")).count(), 600);
    let lagging_node = c.node(lagging);
    assert_eq!(lagging_node.get_data_or_null("/null").unwrap().0, None);
    assert_eq!(
        lagging_node.get_data_or_null("/empty").unwrap().0,
        Some(Vec::new())
    );
    assert!(c.node(lagging).metrics().snapshots_installed >= 1);
    assert!(c.running().map(|n| n.metrics().snapshots_sent).sum::<u64>() >= 1);

    // The watches armed on the follower fired for what the snapshot changed.
    let mut seen = Vec::new();
    while let Ok(e) = rx.recv_timeout(Duration::from_secs(5)) {
        seen.push((e.event_type, e.path));
        if seen.len() == 3 {
            break;
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        vec![
            (EventType::NodeDeleted, "/gone".to_string()),
            (EventType::NodeDataChanged, "/kept".to_string()),
            (EventType::NodeChildrenChanged, "/w".to_string()),
        ]
    );
    // The session (30 s timeout) lived through it, and its ephemeral with it.
    assert!(c.node(leader).exists(&eph).unwrap().is_some());
    assert!(c.node(lagging).exists(&eph).unwrap().is_some());
    session.set_data("/kept", b"v2", None).unwrap();
}
