//! Bounded growth: data-directory size and restart time of a 3-node in-process ensemble
//! (fsync on, default compaction settings) as writes accumulate.
//!
//! ```text
//! ./dev bench --growth                      # 1,000,000 writes per workload
//! ./dev bench --growth --writes 200000
//! ./dev bench --growth --workload set       # or create
//! ```
//!
//! Two workloads, each on a fresh ensemble: `set_data` of 100 bytes over 1,000 znodes
//! (the tree stays the same size: the directory must stay flat), and creates of 1,000,000
//! znodes of 100 bytes (the tree grows: the directory should grow with the tree, not with
//! the log). After every fifth of the writes it prints each directory's size and the
//! process's RSS (the three nodes together), and at the end the time each node takes to
//! restart (open RocksDB and the tree over it, rejoin) and the RSS after.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use zkraft::{CreateMode, LocalNetwork, Node, Pool, Role};

const WRITERS: usize = 64;

fn dir_size(p: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(p) {
        for e in entries.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            total += if meta.is_dir() {
                dir_size(&e.path())
            } else {
                meta.len()
            };
        }
    }
    total
}

fn start(id: u64, dir: &Path, net: &LocalNetwork, pool: &Pool) -> Node {
    Node::builder(id)
        .voters([1, 2, 3])
        .data_dir(dir)
        .tick_interval(Duration::from_millis(50))
        .request_timeout(Duration::from_secs(30))
        .transport(net.clone())
        .pool(pool.clone())
        .start()
        .unwrap()
}

/// This process's resident memory (the three nodes, their caches and RocksDB, the
/// writers), from `/proc/self/status`; 0 where there is none.
fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn workload(name: &str, writes: u64, set: bool) {
    std::fs::create_dir_all("target/bench-data").unwrap();
    let dirs: Vec<_> = (0..3)
        .map(|_| tempfile::tempdir_in("target/bench-data").unwrap())
        .collect();
    let net = LocalNetwork::new();
    let pool = Pool::new(4).unwrap();
    let mut nodes: Vec<Node> = (1..=3)
        .map(|i| start(i, dirs[i as usize - 1].path(), &net, &pool))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !nodes.iter().any(|n| n.role() == Role::Leader) {
        assert!(Instant::now() < deadline, "no leader");
        std::thread::sleep(Duration::from_millis(10));
    }
    let leader = nodes.iter().position(|n| n.role() == Role::Leader).unwrap();
    let via = &nodes[leader];
    via.create("/g", b"", CreateMode::Persistent).unwrap();
    if set {
        for i in 0..1000 {
            via.create(&format!("/g/{i}"), b"", CreateMode::Persistent)
                .unwrap();
        }
    }
    println!("\n{name}: {writes} writes, {WRITERS} writers through the leader");
    println!(
        "{:>10} {:>10} {:>10} {:>10} {:>10} {:>12} {:>14}",
        "writes", "node 1", "node 2", "node 3", "writes/s", "compactions", "RSS (3 nodes)"
    );
    let done = AtomicU64::new(0);
    let value = [b'v'; 100];
    let step = writes / 5;
    let started = Instant::now();
    for fifth in 1..=5u64 {
        let target = step * fifth;
        let t0 = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..WRITERS {
                s.spawn(|| loop {
                    let i = done.fetch_add(1, Ordering::Relaxed);
                    if i >= target {
                        return;
                    }
                    if set {
                        via.set_data(&format!("/g/{}", i % 1000), &value, None)
                            .unwrap();
                    } else {
                        via.create(&format!("/g/n{i:08}"), &value, CreateMode::Persistent)
                            .unwrap();
                    }
                });
            }
        });
        done.store(target, Ordering::Relaxed);
        let sizes: Vec<u64> = dirs.iter().map(|d| dir_size(d.path())).collect();
        let compactions: u64 = nodes.iter().map(|n| n.metrics().log_compactions).sum();
        println!(
            "{:>10} {:>9.1}M {:>9.1}M {:>9.1}M {:>10.0} {:>12} {:>13.1}M",
            target,
            mib(sizes[0]),
            mib(sizes[1]),
            mib(sizes[2]),
            step as f64 / t0.elapsed().as_secs_f64(),
            compactions,
            mib(rss())
        );
    }
    let total = started.elapsed();
    // Converge, stop everyone, restart each node and time its start.
    let applied = nodes[leader].applied_index();
    let deadline = Instant::now() + Duration::from_secs(60);
    while nodes.iter().any(|n| n.applied_index() < applied) {
        assert!(Instant::now() < deadline, "followers did not catch up");
        std::thread::sleep(Duration::from_millis(20));
    }
    let digest = nodes[0].digest();
    for n in nodes.drain(..) {
        n.shutdown();
    }
    let mut restart = Vec::new();
    for i in 1..=3u64 {
        let t0 = Instant::now();
        nodes.push(start(i, dirs[i as usize - 1].path(), &net, &pool));
        restart.push(t0.elapsed());
    }
    assert_eq!(
        nodes[0].digest().value,
        digest.value,
        "same tree after restart"
    );
    let sizes: Vec<String> = dirs
        .iter()
        .map(|d| format!("{:.1} MiB", mib(dir_size(d.path()))))
        .collect();
    println!(
        "{writes} writes in {:.1} s; restart (open over {} znodes, none read; rejoin): {:.2?} / {:.2?} / {:.2?}; sizes after restart: {}; RSS after restart (3 nodes): {:.1} MiB",
        total.as_secs_f64(),
        nodes[0].with_tree(|t| t.len()),
        restart[0],
        restart[1],
        restart[2],
        sizes.join(", "),
        mib(rss())
    );
    for n in &nodes {
        n.shutdown();
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let writes = args
        .iter()
        .position(|a| a == "--writes")
        .map(|i| args[i + 1].parse().expect("--writes N"))
        .unwrap_or(1_000_000);
    let only = args
        .iter()
        .position(|a| a == "--workload")
        .map(|i| args[i + 1].clone());
    if only.as_deref() != Some("create") {
        workload("set_data over 1,000 znodes", writes, true);
    }
    if only.as_deref() != Some("set") {
        workload("creates of 100-byte znodes", writes, false);
    }
}
