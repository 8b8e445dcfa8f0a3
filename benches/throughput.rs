//! Write and read throughput of a 3-node in-process ensemble with fsync on, and of three
//! processes over loopback TCP.
//!
//! ```text
//! ./dev bench                                # builds zkraft-member, 5 s per scenario
//! ./dev bench --secs 10
//! ./dev bench --multis                       # only the large-multi section
//! ```
//!
//! Prints, per scenario: ops/s, p50/p99/max latency, and the mean number of raft entries
//! per log write (fsync) on the leader and on the followers. The TCP rows run the same
//! create and set_data loads inside the leader's process of a 3-process ensemble of
//! `zkraft-member` (release build; `ZKRAFT_MEMBER` names another binary). Then, for multis of 2,000 to
//! 16,000 creates (16,000 short creates are about 912 KB, under the 1 MiB request limit),
//! the time from call to reply of the creating multi and of the multi deleting them again,
//! and the latency of local reads made on the same node while they are applied.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use zkraft::{CreateMode, LocalNetwork, Metrics, Node, Pool, Role};

struct Ensemble {
    nodes: Vec<Node>,
    _dirs: Vec<tempfile::TempDir>,
}

impl Ensemble {
    fn start(n: u64) -> Ensemble {
        let net = LocalNetwork::new();
        let pool = Pool::new(4).expect("start the worker pool");
        let ids: Vec<u64> = (1..=n).collect();
        // On the working directory's file system (not a tmpfs), so fsync costs what it costs.
        std::fs::create_dir_all("target/bench-data").unwrap();
        let dirs: Vec<_> = ids
            .iter()
            .map(|_| tempfile::tempdir_in("target/bench-data").unwrap())
            .collect();
        let nodes = ids
            .iter()
            .zip(&dirs)
            .map(|(&id, dir)| {
                Node::builder(id)
                    .voters(ids.clone())
                    .data_dir(dir.path())
                    .tick_interval(Duration::from_millis(50))
                    .durable_writes(true)
                    .transport(net.clone())
                    .pool(pool.clone())
                    .start()
                    .unwrap()
            })
            .collect();
        let e = Ensemble { nodes, _dirs: dirs };
        let deadline = Instant::now() + Duration::from_secs(10);
        while e.leader().is_none() {
            assert!(Instant::now() < deadline, "no leader");
            std::thread::sleep(Duration::from_millis(10));
        }
        e
    }

    fn leader(&self) -> Option<&Node> {
        self.nodes.iter().find(|n| n.role() == Role::Leader)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn diff(a: Metrics, b: Metrics) -> Metrics {
    // Metrics is #[non_exhaustive]: changed field by field from a copy.
    let mut d = a;
    d.proposals -= b.proposals;
    d.log_syncs -= b.log_syncs;
    d.entries_persisted -= b.entries_persisted;
    d.entries_applied -= b.entries_applied;
    d.apply_batches -= b.apply_batches;
    d.log_compactions -= b.log_compactions;
    d.snapshots_sent -= b.snapshots_sent;
    d.snapshots_installed -= b.snapshots_installed;
    d.dropped_envelopes -= b.dropped_envelopes;
    d
}

/// Runs `threads` closed-loop clients calling `op(thread, i)` for `secs`.
fn run(
    threads: usize,
    secs: f64,
    op: impl Fn(usize, usize) + Sync,
) -> (f64, Duration, Duration, Duration) {
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    let mut lat: Vec<Duration> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (stop, op) = (&stop, &op);
                s.spawn(move || {
                    let mut lat = Vec::new();
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let t0 = Instant::now();
                        op(t, i);
                        lat.push(t0.elapsed());
                        i += 1;
                    }
                    lat
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs_f64(secs));
        stop.store(true, Ordering::Relaxed);
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    lat.sort();
    (
        lat.len() as f64 / elapsed,
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or_default(),
    )
}

fn main() {
    let mut secs = 5.0;
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--secs") {
        secs = args[i + 1].parse().expect("--secs N");
    }
    let only_multis = args.iter().any(|a| a == "--multis");
    let e = Ensemble::start(3);
    let leader = e.leader().unwrap();
    let follower = e.nodes.iter().find(|n| n.role() != Role::Leader).unwrap();
    leader
        .create("/bench", b"", CreateMode::Persistent)
        .unwrap();
    println!(
        "zkraft write/read benchmark: 3-node in-process ensemble, fsync on, {secs} s per scenario"
    );
    println!(
        "{:<34} {:>10} {:>9} {:>9} {:>9} {:>14} {:>14}",
        "scenario", "ops/s", "p50", "p99", "max", "entries/fsync", "(followers)"
    );
    let value = vec![b'x'; 100];
    let scenarios = if only_multis { 0 } else { 4 };
    for (scenario, (name, via, writers)) in [
        ("create, 1 writer, via leader", leader, 1usize),
        ("create, 64 writers, via leader", leader, 64),
        ("create, 64 writers, via follower", follower, 64),
        ("set_data, 64 writers, via leader", leader, 64),
    ]
    .into_iter()
    .take(scenarios)
    .enumerate()
    {
        let before: Vec<Metrics> = e.nodes.iter().map(Node::metrics).collect();
        let setting = name.starts_with("set_data");
        if setting {
            for t in 0..writers {
                let _ = via.create(&format!("/bench/s{t}"), b"", CreateMode::Persistent);
            }
        }
        let (ops, p50, p99, max) = run(writers, secs, |t, i| {
            if setting {
                via.set_data(&format!("/bench/s{t}"), &value, None).unwrap();
            } else {
                via.create(
                    &format!("/bench/{scenario}-{t}-{i}"),
                    &value,
                    CreateMode::Persistent,
                )
                .unwrap();
            }
        });
        let deltas: Vec<(bool, Metrics)> = e
            .nodes
            .iter()
            .zip(before)
            .map(|(n, b)| (n.role() == Role::Leader, diff(n.metrics(), b)))
            .collect();
        let lead = deltas
            .iter()
            .find(|(l, _)| *l)
            .map(|(_, m)| m.entries_per_sync())
            .unwrap_or(0.0);
        let fol: Vec<f64> = deltas
            .iter()
            .filter(|(l, _)| !*l)
            .map(|(_, m)| m.entries_per_sync())
            .collect();
        println!(
            "{:<34} {:>10.0} {:>9.2?} {:>9.2?} {:>9.2?} {:>14.1} {:>14.1}",
            name,
            ops,
            p50,
            p99,
            max,
            lead,
            fol.iter().sum::<f64>() / fol.len().max(1) as f64
        );
    }
    if scenarios > 0 {
        pipelined(leader, secs);
        over_tcp(secs);
    }
    for (name, threads) in [
        ("get_data, 1 reader, local", 1usize),
        ("get_data, 4 readers, local", 4),
    ]
    .into_iter()
    .take(scenarios / 2)
    {
        let (ops, p50, p99, max) = run(threads, secs.min(3.0), |t, _| {
            let _ = follower.get_data(&format!("/bench/s{}", t % 64)).unwrap();
        });
        println!(
            "{:<34} {:>10.0} {:>9.2?} {:>9.2?} {:>9.2?}",
            name, ops, p50, p99, max
        );
    }
    large_multis(leader);
    for n in &e.nodes {
        n.shutdown();
    }
}

/// Counts the answers of pipelined requests and their latency (submit to answer).
struct Timed {
    starts: std::sync::Mutex<std::collections::HashMap<i64, Instant>>,
    latencies: std::sync::Mutex<Vec<Duration>>,
    outstanding: std::sync::atomic::AtomicUsize,
}

impl zkraft::Sink for Timed {
    fn reply(&self, xid: i64, reply: zkraft::Result<zkraft::Reply>) {
        reply.expect("pipelined write");
        if let Some(t) = self.starts.lock().unwrap().remove(&xid) {
            self.latencies.lock().unwrap().push(t.elapsed());
        }
        self.outstanding.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The create and set_data scenarios with 64 pipelined sessions on the leader, driven
/// from 4 threads (each keeps up to 16 requests in flight per session).
fn pipelined(leader: &Node, secs: f64) {
    use std::sync::Arc;
    const SESSIONS: usize = 64;
    const THREADS: usize = 4;
    const WINDOW: usize = 16;
    for (name, set) in [
        ("create, 64 pipelined sessions", false),
        ("set_data, 64 pipelined sessions", true),
    ] {
        let sessions: Vec<_> = (0..SESSIONS)
            .map(|i| {
                let s = leader.session().expect("session");
                if set {
                    let _ = s.create(&format!("/bench/p{i}"), b"", CreateMode::Persistent);
                }
                let timed = Arc::new(Timed {
                    starts: Default::default(),
                    latencies: Default::default(),
                    outstanding: Default::default(),
                });
                (s, timed)
            })
            .collect();
        let stop = AtomicBool::new(false);
        let start = Instant::now();
        std::thread::scope(|scope| {
            for t in 0..THREADS {
                let (sessions, stop) = (&sessions, &stop);
                scope.spawn(move || {
                    let mine: Vec<usize> = (t..SESSIONS).step_by(THREADS).collect();
                    let mut xid = 0i64;
                    let value = vec![b'x'; 100];
                    while !stop.load(Ordering::Relaxed) {
                        let mut sent = false;
                        for &i in &mine {
                            let (s, timed) = &sessions[i];
                            while timed.outstanding.load(Ordering::Acquire) < WINDOW {
                                let op = if set {
                                    zkraft::Op::set_data(
                                        format!("/bench/p{i}"),
                                        value.clone(),
                                        None,
                                    )
                                } else {
                                    zkraft::Op::create(
                                        format!("/bench/q{i}-{xid}"),
                                        value.clone(),
                                        CreateMode::Persistent,
                                    )
                                };
                                timed.outstanding.fetch_add(1, Ordering::AcqRel);
                                timed.starts.lock().unwrap().insert(xid, Instant::now());
                                let sink: Arc<dyn zkraft::Sink> = timed.clone();
                                s.submit(xid, zkraft::Request::Write(op), &sink);
                                xid += 1;
                                sent = true;
                            }
                        }
                        if !sent {
                            std::thread::sleep(Duration::from_micros(50));
                        }
                    }
                });
            }
            std::thread::sleep(Duration::from_secs_f64(secs));
            stop.store(true, Ordering::Relaxed);
        });
        let elapsed = start.elapsed().as_secs_f64();
        // Let what is in flight land before the sessions close.
        let deadline = Instant::now() + Duration::from_secs(30);
        while sessions
            .iter()
            .any(|(_, t)| t.outstanding.load(Ordering::Acquire) > 0)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut lat: Vec<Duration> = sessions
            .iter()
            .flat_map(|(_, t)| t.latencies.lock().unwrap().clone())
            .collect();
        lat.sort();
        println!(
            "{:<34} {:>10.0} {:>9.2?} {:>9.2?} {:>9.2?}",
            name,
            lat.len() as f64 / elapsed,
            percentile(&lat, 0.50),
            percentile(&lat, 0.99),
            lat.last().copied().unwrap_or_default()
        );
    }
}

/// The create and set_data scenarios of 64 writers in a 3-process ensemble over loopback
/// TCP, run in the leader's process.
fn over_tcp(secs: f64) {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    let exe =
        std::env::var("ZKRAFT_MEMBER").unwrap_or_else(|_| "target/release/zkraft-member".into());
    if !std::path::Path::new(&exe).exists() {
        println!("(3 processes over TCP: skipped, {exe} missing: cargo build --release -p zkraft-testkit)");
        return;
    }
    let ports: Vec<u16> = {
        let l: Vec<_> = (0..3)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        l.iter().map(|l| l.local_addr().unwrap().port()).collect()
    };
    let peers = (1..=3)
        .map(|i| format!("{i}=127.0.0.1:{}", ports[i - 1]))
        .collect::<Vec<_>>()
        .join(",");
    let dir = tempfile::tempdir_in("target/bench-data").unwrap();
    let mut members: Vec<_> = (1..=3)
        .map(|i| {
            let mut child = Command::new(&exe)
                .args([
                    "--id",
                    &i.to_string(),
                    "--peers",
                    &peers,
                    "--log-level",
                    "warning",
                ])
                .arg("--data-dir")
                .arg(dir.path().join(format!("m{i}")))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("start zkraft-member");
            let stdin = child.stdin.take().unwrap();
            let mut out = BufReader::new(child.stdout.take().unwrap());
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            assert_eq!(line.trim(), "ready");
            (child, stdin, out)
        })
        .collect();
    let mut ask = |i: usize, cmd: &str| -> String {
        let (_, stdin, out) = &mut members[i];
        writeln!(stdin, "{cmd}").unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        line.trim().to_string()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let leader = loop {
        if let Some(i) = (0..3).find(|i| ask(*i, "status").contains("role=Leader")) {
            break i;
        }
        assert!(Instant::now() < deadline, "no leader over TCP");
        std::thread::sleep(Duration::from_millis(50));
    };
    for (name, kind) in [
        ("create, 64 writers, 3 procs/TCP", "create"),
        ("set_data, 64 writers, 3 procs/TCP", "set"),
    ] {
        let reply = ask(leader, &format!("bench {kind} 64 {secs}"));
        let field = |k: &str| -> f64 {
            reply
                .split_whitespace()
                .find_map(|f| f.strip_prefix(k))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0)
        };
        let us = |v: f64| Duration::from_micros(v as u64);
        println!(
            "{:<34} {:>10.0} {:>9.2?} {:>9.2?} {:>9} {:>14} {:>14}",
            name,
            field("rate="),
            us(field("p50_us=")),
            us(field("p99_us=")),
            "-",
            "-",
            "-"
        );
    }
    for i in 0..3 {
        let _ = ask(i, "quit");
    }
    for (mut child, ..) in members {
        let _ = child.wait();
    }
}

/// Multis of many creates, then of as many deletes, through the leader, three runs each,
/// while a reader on the leader measures local read latency.
fn large_multis(leader: &Node) {
    use zkraft::Op;
    println!();
    println!(
        "{:<34} {:>22} {:>22} {:>12} {:>12}",
        "multi (median, min-max of 3)", "create multi", "delete multi", "read p99", "read max"
    );
    leader
        .create("/multi", b"", CreateMode::Persistent)
        .unwrap();
    let span = |mut v: Vec<Duration>| {
        v.sort();
        format!("{:.0?} ({:.0?}-{:.0?})", v[1], v[0], v[2])
    };
    for n in [2_000usize, 4_000, 8_000, 16_000] {
        let stop = AtomicBool::new(false);
        let (creates, deletes, mut reads) = std::thread::scope(|s| {
            let reader = s.spawn(|| {
                let mut lat = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let t0 = Instant::now();
                    let _ = leader.get_data("/multi").unwrap();
                    lat.push(t0.elapsed());
                }
                lat
            });
            let (mut creates, mut deletes) = (Vec::new(), Vec::new());
            for run in 0..3 {
                let paths: Vec<String> = (0..n).map(|i| format!("/multi/n{run}{i:05}")).collect();
                let ops = paths
                    .iter()
                    .map(|p| Op::create(p.as_str(), vec![], CreateMode::Persistent))
                    .collect();
                let t0 = Instant::now();
                leader.multi(ops).unwrap();
                creates.push(t0.elapsed());
                let ops = paths.iter().map(|p| Op::delete(p.as_str(), None)).collect();
                let t0 = Instant::now();
                leader.multi(ops).unwrap();
                deletes.push(t0.elapsed());
            }
            stop.store(true, Ordering::Relaxed);
            (creates, deletes, reader.join().unwrap())
        });
        reads.sort();
        println!(
            "{:<34} {:>22} {:>22} {:>12.1?} {:>12.1?}",
            format!("{n} creates, then {n} deletes"),
            span(creates),
            span(deletes),
            percentile(&reads, 0.99),
            reads.last().copied().unwrap_or_default()
        );
    }
}
