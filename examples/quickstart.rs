//! Quickstart: a 3-node zkraft ensemble in one process.
//!
//! ```text
//! ./dev example          # or: cargo run --example quickstart
//! ```
//!
//! Starts three nodes on temporary RocksDB directories, writes through a follower, reads
//! the write back on every node, stops the leader the way a crash looks (it falls off the
//! network and stops), shows the survivors electing a new leader and carrying on, and shuts
//! down cleanly.

use std::time::{Duration, Instant};

use zkraft::{CreateMode, LocalNetwork, Node, Pool, Role};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let net = LocalNetwork::new();
    let pool = Pool::new(3)?;
    let dirs: Vec<_> = (0..3)
        .map(|_| tempfile::tempdir())
        .collect::<Result<_, _>>()?;
    let mut nodes: Vec<Node> = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let id = i as u64 + 1;
        nodes.push(
            Node::builder(id)
                .voters([1, 2, 3])
                .data_dir(dir.path())
                .tick_interval(Duration::from_millis(50))
                .transport(net.clone())
                .pool(pool.clone())
                .start()?,
        );
    }
    let leader = wait_leader(&nodes)?;
    println!("ensemble of 3 started; node {leader} leads");

    let follower = nodes.iter().find(|n| n.id() != leader).unwrap();
    follower.create("/service", b"", CreateMode::Persistent)?;
    let path = follower.create("/service/config", b"replicas=3", CreateMode::Persistent)?;
    println!(
        "node {} wrote {path} (forwarded to the leader, committed, applied locally)",
        follower.id()
    );
    let stat = follower.set_data(&path, b"replicas=5", Some(0))?;
    println!("compare-and-set on version 0 -> version {}", stat.version);
    for n in &nodes {
        n.sync("/")?;
        let (data, stat) = n.get_data(&path)?;
        println!(
            "  node {} reads {:?} (version {}, mzxid {})",
            n.id(),
            String::from_utf8_lossy(&data),
            stat.version,
            stat.mzxid
        );
    }

    println!("stopping leader node {leader} without warning…");
    let started = Instant::now();
    net.isolate(leader);
    let idx = nodes.iter().position(|n| n.id() == leader).unwrap();
    nodes.remove(idx).shutdown();
    let new_leader = wait_leader(&nodes)?;
    println!("node {new_leader} took over after {:?}", started.elapsed());
    for n in &nodes {
        let p = n.create(
            "/service/worker-",
            n.id().to_string().as_bytes(),
            CreateMode::PersistentSequential,
        )?;
        println!("  node {} created {p}", n.id());
    }
    let children = nodes[0].get_children("/service")?;
    println!("/service now has {children:?}");
    for n in &nodes {
        n.shutdown();
    }
    println!("shut down cleanly");
    Ok(())
}

fn wait_leader(nodes: &[Node]) -> Result<u64, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let leaders: Vec<&Node> = nodes.iter().filter(|n| n.role() == Role::Leader).collect();
        if let [l] = leaders[..] {
            if nodes.iter().all(|n| n.leader() == Some(l.id())) {
                return Ok(l.id());
            }
        }
        if Instant::now() > deadline {
            return Err("no leader elected within 10 s".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
