//! `zkraft-member`: a process embedding one zkraft [`Node`] over TCP, driven line by line
//! on stdin, for the multi-process tests and the TCP benchmark. It is what a service
//! embedding zkraft looks like to the ensemble; the commands stand in for that service's
//! own work (the ZooKeeper client protocol comes later).
//!
//! One command per line, one reply line on stdout each:
//!
//! | command | reply |
//! |---|---|
//! | `status` | `status id=.. role=.. leader=.. applied=.. first=.. compactions=.. sent=.. installed=..` |
//! | `digest` | `digest INDEX VALUE` |
//! | `create PATH DATA` / `set PATH DATA` / `get PATH` | `ok ..` or `err MESSAGE` |
//! | `load WRITERS COUNT PARENT TAG ACKFILE` | `started`: writers create sequential children of PARENT with data `TAG-wW-I`, appending `DATA PATH` to ACKFILE for each acknowledged one |
//! | `wait-load` / `stop-load` | `done acked=.. failed=.. ms=..` |
//! | `bench create\|set WRITERS SECS` | `bench ops=.. secs=.. rate=.. p50_us=.. p99_us=..` |
//! | `export PARENT FILE` | `ok COUNT`: every child's `NAME DATA` written to FILE |
//! | `quit` | `bye`, after a clean shutdown |

use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clap::Parser;
use slog::{o, Drain, Logger};
use zkraft::{CreateMode, Node};

#[derive(Debug, Parser)]
struct Flags {
    #[arg(long)]
    id: u64,
    /// Every member: `ID=HOST:PORT,...`.
    #[arg(long)]
    peers: String,
    #[arg(long)]
    data_dir: std::path::PathBuf,
    #[arg(long, default_value = "zkraft")]
    cluster_id: String,
    #[arg(long, default_value_t = 50)]
    tick_ms: u64,
    #[arg(long, default_value_t = 100_000)]
    snapshot_entries: u64,
    /// Log level on stderr.
    #[arg(long, default_value = "info")]
    log_level: String,
}

/// A write load running in the background.
struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    started: Instant,
    threads: Vec<JoinHandle<()>>,
}

fn main() {
    let flags = Flags::parse();
    let level = flags.log_level.parse().unwrap_or(slog::Level::Info);
    let decorator = slog_term::PlainSyncDecorator::new(std::io::stderr());
    let drain = slog_term::FullFormat::new(decorator).build().fuse();
    let (drain, _guard) = slog_async::Async::new(drain).build_with_guard();
    let logger = Logger::root(slog::LevelFilter::new(drain.fuse(), level).fuse(), o!());
    let peers: Vec<(u64, String)> = flags
        .peers
        .split(',')
        .map(|p| {
            let (id, addr) = p.split_once('=').expect("ID=HOST:PORT");
            (id.parse().expect("numeric id"), addr.to_string())
        })
        .collect();
    let node = Arc::new(
        Node::builder(flags.id)
            .cluster_id(&flags.cluster_id)
            .members(peers)
            .data_dir(&flags.data_dir)
            .tick_interval(Duration::from_millis(flags.tick_ms))
            .request_timeout(Duration::from_secs(5))
            .snapshot_entries(flags.snapshot_entries)
            .logger(logger)
            .start()
            .unwrap_or_else(|e| {
                eprintln!("zkraft-member: {e}");
                std::process::exit(1)
            }),
    );
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready").unwrap();
    out.flush().unwrap();
    let mut load: Option<Load> = None;
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let words: Vec<&str> = line.split_whitespace().collect();
        let reply = match words.as_slice() {
            ["status"] => {
                let m = node.metrics();
                format!(
                    "status id={} role={:?} leader={} applied={} first={} compactions={} sent={} installed={}",
                    node.id(),
                    node.role(),
                    node.leader().unwrap_or(0),
                    node.applied_index(),
                    m.log_first_index,
                    m.log_compactions,
                    m.snapshots_sent,
                    m.snapshots_installed
                )
            }
            ["digest"] => {
                let d = node.digest();
                format!("digest {} {:016x}", d.index, d.value)
            }
            ["create", path, data] => {
                match node.create(path, data.as_bytes(), CreateMode::Persistent) {
                    Ok(p) => format!("ok {p}"),
                    Err(e) => format!("err {e}"),
                }
            }
            ["set", path, data] => match node.set_data(path, data.as_bytes(), None) {
                Ok(stat) => format!("ok {}", stat.version),
                Err(e) => format!("err {e}"),
            },
            ["get", path] => match node.get_data(path) {
                Ok((data, _)) => format!("ok {}", String::from_utf8_lossy(&data)),
                Err(e) => format!("err {e}"),
            },
            ["load", writers, count, parent, tag, file] => {
                if let Some(l) = load.take() {
                    finish(l, true);
                }
                let writers = writers.parse().unwrap_or(1);
                let count = count.parse().unwrap_or(0);
                load = Some(start_load(&node, writers, count, parent, tag, file));
                "started".to_string()
            }
            ["wait-load"] | ["stop-load"] => match load.take() {
                Some(l) => finish(l, words[0] == "stop-load"),
                None => "done acked=0 failed=0 ms=0".to_string(),
            },
            ["bench", kind, writers, secs] => bench(
                &node,
                kind,
                writers.parse().unwrap_or(1),
                secs.parse().unwrap_or(1.0),
            ),
            ["export", parent, file] => export(&node, parent, file),
            ["quit"] => break,
            _ => format!("err unknown command {line:?}"),
        };
        writeln!(out, "{reply}").unwrap();
        out.flush().unwrap();
    }
    if let Some(l) = load.take() {
        finish(l, true);
    }
    node.shutdown();
    let _ = writeln!(out, "bye");
}

fn start_load(
    node: &Arc<Node>,
    writers: usize,
    count: u64,
    parent: &str,
    tag: &str,
    file: &str,
) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let acks = Arc::new(std::sync::Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(file)
            .expect("ack file"),
    ));
    let threads = (0..writers)
        .map(|w| {
            let (node, stop, acked, failed, acks) = (
                node.clone(),
                stop.clone(),
                acked.clone(),
                failed.clone(),
                acks.clone(),
            );
            let (prefix, tag) = (format!("{parent}/e-"), tag.to_string());
            std::thread::spawn(move || {
                for i in 0..count {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let data = format!("{tag}-w{w}-{i}");
                    match node.create(&prefix, data.as_bytes(), CreateMode::PersistentSequential) {
                        Ok(path) => {
                            // One write per acknowledgement, unbuffered: a kill -9 loses
                            // none that were written.
                            let line = format!("{data} {path}\n");
                            acks.lock()
                                .unwrap()
                                .write_all(line.as_bytes())
                                .expect("ack");
                            acked.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            if !e.is_logical() {
                                std::thread::sleep(Duration::from_millis(20));
                            }
                        }
                    }
                }
            })
        })
        .collect();
    Load {
        stop,
        acked,
        failed,
        started: Instant::now(),
        threads,
    }
}

fn finish(load: Load, stop: bool) -> String {
    if stop {
        load.stop.store(true, Ordering::Relaxed);
    }
    for t in load.threads {
        let _ = t.join();
    }
    format!(
        "done acked={} failed={} ms={}",
        load.acked.load(Ordering::Relaxed),
        load.failed.load(Ordering::Relaxed),
        load.started.elapsed().as_millis()
    )
}

/// Closed-loop writers for `secs`: creates of new 100-byte znodes, or set_data on one
/// znode per writer.
fn bench(node: &Arc<Node>, kind: &str, writers: usize, secs: f64) -> String {
    let id = node.id();
    let root = format!("/bench-{kind}-{id}");
    if let Err(e) = node.create(&root, b"", CreateMode::Persistent) {
        if !matches!(e, zkraft::Error::NodeExists(_)) {
            return format!("err {e}");
        }
    }
    if kind == "set" {
        for w in 0..writers {
            let _ = node.create(&format!("{root}/{w}"), b"", CreateMode::Persistent);
        }
    }
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    let mut lat: Vec<Duration> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let (stop, root) = (&stop, &root);
                s.spawn(move || {
                    let mut lat = Vec::new();
                    let data = [b'x'; 100];
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let t = Instant::now();
                        let res = if kind == "set" {
                            node.set_data(&format!("{root}/{w}"), &data, None)
                                .map(|_| ())
                        } else {
                            node.create(&format!("{root}/{w}-{i}"), &data, CreateMode::Persistent)
                                .map(|_| ())
                        };
                        if res.is_ok() {
                            lat.push(t.elapsed());
                        }
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
    let pct = |p: f64| {
        lat.get(((lat.len().max(1) - 1) as f64 * p) as usize)
            .map(|d| d.as_micros())
            .unwrap_or(0)
    };
    format!(
        "bench ops={} secs={elapsed:.2} rate={:.0} p50_us={} p99_us={}",
        lat.len(),
        lat.len() as f64 / elapsed,
        pct(0.5),
        pct(0.99)
    )
}

fn export(node: &Node, parent: &str, file: &str) -> String {
    let children = match node.get_children(parent) {
        Ok(c) => c,
        Err(e) => return format!("err {e}"),
    };
    let mut out = String::new();
    for c in &children {
        match node.get_data(&format!("{parent}/{c}")) {
            Ok((data, _)) => {
                out.push_str(c);
                out.push(' ');
                out.push_str(&String::from_utf8_lossy(&data));
                out.push('\n');
            }
            Err(e) => return format!("err {e}"),
        }
    }
    match std::fs::write(file, out) {
        Ok(()) => format!("ok {}", children.len()),
        Err(e) => format!("err {e}"),
    }
}
