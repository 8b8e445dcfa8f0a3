//! Group membership: workers on different nodes join a group; an observer prints the
//! member list on every change; one worker leaves cleanly, another one's node crashes and
//! it drops out of the group when its session expires.
//!
//! ```text
//! cargo run --example group_membership
//! ```

use std::sync::mpsc::channel;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use zkraft::recipes::group::Group;
use zkraft::{LocalNetwork, Node, Pool, Role};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let net = LocalNetwork::new();
    let pool = Pool::new(3)?;
    let dirs: Vec<_> = (0..3)
        .map(|_| tempfile::tempdir())
        .collect::<Result<_, _>>()?;
    let nodes: Vec<Node> = dirs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            Node::builder(i as u64 + 1)
                .voters([1, 2, 3])
                .data_dir(d.path())
                .tick_interval(Duration::from_millis(50))
                .session_timeout(Duration::from_secs(4))
                .transport(net.clone())
                .pool(pool.clone())
                .start()
        })
        .collect::<Result<_, _>>()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !nodes.iter().any(|n| n.role() == Role::Leader) {
        assert!(Instant::now() < deadline, "no leader");
        std::thread::sleep(Duration::from_millis(10));
    }
    let leader = nodes.iter().find(|n| n.role() == Role::Leader).unwrap();
    let workers: Vec<&Node> = nodes.iter().filter(|n| n.id() != leader.id()).collect();

    // The observer runs next to the raft leader; the workers on the two other nodes.
    let observer = Group::new(Arc::new(leader.session()?), "/workers")?;
    let (tx, rx) = channel();
    let tx = Mutex::new(tx);
    let start = Instant::now();
    observer.watch(move |members| {
        println!("  [{:>6.2?}] members: {members:?}", start.elapsed());
        let _ = tx.lock().unwrap().send(members);
    })?;
    let wait_for = |want: &[&str]| -> Result<(), String> {
        loop {
            match rx.recv_timeout(Duration::from_secs(15)) {
                Ok(m) if m == want => return Ok(()),
                Ok(_) => continue,
                Err(_) => return Err(format!("never saw {want:?}")),
            }
        }
    };

    let g_a = Group::new(Arc::new(workers[0].session()?), "/workers")?;
    let g_b = Group::new(Arc::new(workers[1].session()?), "/workers")?;
    println!(
        "worker-a joins from node {}, worker-b from node {}",
        workers[0].id(),
        workers[1].id()
    );
    let a = g_a.join("worker-a", b"10.0.0.1:7000")?;
    let _b = g_b.join("worker-b", b"10.0.0.2:7000")?;
    wait_for(&["worker-a", "worker-b"])?;
    println!(
        "worker-b's address: {}",
        String::from_utf8(observer.member_data("worker-b")?)?
    );

    println!("worker-a leaves cleanly");
    a.leave()?;
    wait_for(&["worker-b"])?;

    println!("node {} (worker-b) crashes", workers[1].id());
    let crashed = Instant::now();
    net.isolate(workers[1].id());
    workers[1].shutdown();
    wait_for(&[])?;
    println!(
        "worker-b dropped out {:.2?} after its node crashed",
        crashed.elapsed()
    );

    observer.unwatch();
    drop((observer, g_a, g_b, _b));
    for n in &nodes {
        n.shutdown();
    }
    println!("clean shutdown");
    Ok(())
}
