//! Durability: nodes stopped and reopened from their RocksDB directories keep every
//! acknowledged write, neither re-apply nor skip entries, and carry on.

mod common;

use std::sync::Mutex;
use std::time::Duration;

use common::{image, Cluster};
use zkraft::{CreateMode, Error};

#[test]
fn acknowledged_writes_survive_full_restart() {
    let mut c = Cluster::new(3);
    c.wait_leader();
    c.leader()
        .create("/acked", b"", CreateMode::Persistent)
        .unwrap();
    let acked = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for &id in &c.ids {
            let node = c.node(id);
            let acked = &acked;
            s.spawn(move || {
                for i in 0..60 {
                    let p = node
                        .create(
                            "/acked/n-",
                            format!("{id}:{i}").as_bytes(),
                            CreateMode::PersistentSequential,
                        )
                        .unwrap();
                    acked.lock().unwrap().push((p, format!("{id}:{i}")));
                }
            });
        }
    });
    let acked = acked.into_inner().unwrap();
    assert_eq!(acked.len(), 180);
    let before = c.wait_converged(Duration::from_secs(10));
    let applied: Vec<u64> = c.ids.iter().map(|&id| c.node(id).applied_index()).collect();

    for id in c.ids.clone() {
        c.stop(id);
    }
    c.net.heal();
    for id in c.ids.clone() {
        c.start(id);
    }
    // Straight after reopening, before any election, each node holds what it applied.
    for (i, &id) in c.ids.iter().enumerate() {
        assert!(
            c.node(id).applied_index() >= applied[i].min(applied.iter().copied().min().unwrap())
        );
    }
    c.wait_leader();
    let after = c.wait_converged(Duration::from_secs(10));
    for (path, data) in &acked {
        assert_eq!(
            after[path].0.as_deref(),
            Some(data.as_bytes()),
            "{path} lost"
        );
    }
    // Identical stats: nothing re-applied, nothing skipped.
    for (path, (data, stat)) in &before {
        assert_eq!(
            &after[path],
            &(data.clone(), *stat),
            "{path} changed across restart"
        );
    }
    // Sequence numbers continue where they were.
    let next = c
        .leader()
        .create("/acked/n-", b"", CreateMode::PersistentSequential)
        .unwrap();
    assert_eq!(next, "/acked/n-0000000180");
}

#[test]
fn single_node_restart_keeps_tree_and_applied_index() {
    let mut c = Cluster::new(1);
    let n = c.leader();
    n.create("/a", b"1", CreateMode::Persistent).unwrap();
    n.set_data("/a", b"2", Some(0)).unwrap();
    n.create("/a/b", b"", CreateMode::Persistent).unwrap();
    n.delete("/a/b", None).unwrap();
    let before = image(n);
    let applied = n.applied_index();
    c.stop(1);
    c.net.heal();
    c.start(1);
    assert_eq!(c.node(1).applied_index(), applied);
    assert_eq!(image(c.node(1)), before);
    let n = c.leader();
    assert_eq!(n.set_data("/a", b"3", Some(1)).unwrap().version, 2);
}

#[test]
fn one_directory_cannot_be_opened_twice() {
    let dir = tempfile::tempdir().unwrap();
    let a = zkraft::Node::builder(1)
        .data_dir(dir.path())
        .start()
        .unwrap();
    let b = zkraft::Node::builder(1).data_dir(dir.path()).start();
    assert!(
        matches!(&b, Err(Error::Config(m)) if m.contains("in use by another node")),
        "{b:?}"
    );
    a.shutdown();
    let again = zkraft::Node::builder(1)
        .data_dir(dir.path())
        .start()
        .unwrap();
    again.shutdown();
}
