//! Idle client sessions held by one `zkraft-server`: its thread count and resident memory
//! with N ZooKeeper clients connected (each a session of its own), and how fast it still
//! answers.
//!
//! ```text
//! ./dev bench --client-sessions                  # 10,000 sessions, 10 watches each
//! ./dev bench --client-sessions --sessions 2000 --watches 0
//! ```
//!
//! Once every session is open, each sets `--watches` watches (default 10: `exists` with a
//! watch on paths of its own that do not exist, as a client waiting for a znode does), and
//! the server's RSS is read again.
//!
//! It starts `target/release/zkraft-server` (built by `./dev bench`) as a one-member
//! ensemble on 127.0.0.1, opens the connections from this process (the two processes
//! each hold one end, so each needs N file descriptors), performs each handshake, and
//! reads `/proc/<pid>/status` of the server before and after.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// (threads, RSS in KiB) of process `pid`.
fn status(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("Threads:"), field("VmRSS:"))
}

fn handshake_frame(timeout_ms: i32) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&0i32.to_be_bytes()); // protocol version
    body.extend_from_slice(&0i64.to_be_bytes()); // last zxid seen
    body.extend_from_slice(&timeout_ms.to_be_bytes());
    body.extend_from_slice(&0i64.to_be_bytes()); // session id: a new one
    body.extend_from_slice(&16i32.to_be_bytes());
    body.extend_from_slice(&[0u8; 16]);
    body.push(0); // read-only: no
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

/// `exists(path, watch = true)` with `xid`, length prefix included.
fn exists_watch_frame(xid: i32, path: &str) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&xid.to_be_bytes());
    body.extend_from_slice(&3i32.to_be_bytes()); // exists
    body.extend_from_slice(&(path.len() as i32).to_be_bytes());
    body.extend_from_slice(path.as_bytes());
    body.push(1); // watch
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

fn read_frame(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut buf)?;
    Ok(buf)
}

fn ask(addr: SocketAddr, word: &str) -> (String, Duration) {
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(word.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    (out, start.elapsed())
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `--name N`, or the default when absent or not a number.
    let count = |name: &str, default: usize| -> usize {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let sessions = count("--sessions", 10_000);
    let watches = count("--watches", 10);
    let bin = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/zkraft-server");
    assert!(
        bin.exists(),
        "{} missing: run `cargo build --release -p zkraft-server` (./dev bench does)",
        bin.display()
    );
    std::fs::create_dir_all("target/bench-data").unwrap();
    let dir = tempfile::tempdir_in("target/bench-data").unwrap();
    let (raft, client) = (free_port(), free_port());
    let addr: SocketAddr = format!("127.0.0.1:{client}").parse().unwrap();
    let server = Server(
        Command::new(&bin)
            .args(["--id", "1", "--peers", &format!("1=127.0.0.1:{raft}")])
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--client-addr", &addr.to_string(), "--4lw-whitelist", "*"])
            .args(["--max-client-connections", &(sessions + 100).to_string()])
            .args(["--max-client-cnxns", "0"]) // all from 127.0.0.1
            .args(["--log-level", "warning"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start zkraft-server"),
    );
    let pid = server.0.id();
    let start = Instant::now();
    while ask_ok(addr).is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "server did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (threads0, rss0) = status(pid);
    println!(
        "server pid {pid}: {threads0} threads, {} MiB RSS before any client",
        rss0 / 1024
    );

    // Connect in waves of 500: send every handshake of a wave, then read the answers.
    let frame = handshake_frame(40_000);
    let mut conns: Vec<TcpStream> = Vec::with_capacity(sessions);
    let start = Instant::now();
    while conns.len() < sessions {
        let wave = (sessions - conns.len()).min(500);
        let mut batch: Vec<TcpStream> = (0..wave)
            .map(|_| {
                let mut s = TcpStream::connect(addr).expect("connect");
                s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                s.write_all(&frame).unwrap();
                s
            })
            .collect();
        for s in &mut batch {
            let r = read_frame(s).expect("handshake answered");
            let timeout = i32::from_be_bytes(r[4..8].try_into().unwrap());
            assert!(timeout > 0, "session refused");
        }
        conns.extend(batch);
    }
    let took = start.elapsed();
    println!(
        "{sessions} sessions opened in {:.1} s ({:.0} per second)",
        took.as_secs_f64(),
        sessions as f64 / took.as_secs_f64()
    );
    std::thread::sleep(Duration::from_secs(3));
    let (threads, rss) = status(pid);
    println!(
        "with {sessions} idle sessions: {threads} threads, {} MiB RSS ({:.1} KiB per session)",
        rss / 1024,
        (rss.saturating_sub(rss0)) as f64 / sessions as f64
    );
    if watches > 0 {
        // Each session sends its watches, then the answers are read (NoNode: the watch
        // is set on a path that does not exist yet).
        let start = Instant::now();
        for chunk in conns.chunks_mut(500) {
            for (i, s) in chunk.iter_mut().enumerate() {
                let mut frames = Vec::new();
                for j in 0..watches {
                    let path = format!("/awaited-{:x}-{i}-{j}", s.local_addr().unwrap().port());
                    frames.extend_from_slice(&exists_watch_frame(j as i32 + 1, &path));
                }
                s.write_all(&frames).unwrap();
            }
            for s in chunk.iter_mut() {
                for _ in 0..watches {
                    let r = read_frame(s).expect("exists answered");
                    let err = i32::from_be_bytes(r[12..16].try_into().unwrap());
                    assert_eq!(err, -101, "exists of a path that does not exist: NoNode");
                }
            }
        }
        println!(
            "{} watches set in {:.1} s",
            sessions * watches,
            start.elapsed().as_secs_f64()
        );
        std::thread::sleep(Duration::from_secs(3));
        let (threads, rss_watched) = status(pid);
        println!(
            "with {sessions} sessions and {watches} watches each: {threads} threads, {} MiB RSS \
             ({:.0} bytes per watch)",
            rss_watched / 1024,
            (rss_watched.saturating_sub(rss) * 1024) as f64 / (sessions * watches) as f64
        );
    }
    let (mntr, _) = ask(addr, "mntr");
    for line in mntr.lines().filter(|l| {
        l.starts_with("zk_num_alive_connections")
            || l.starts_with("zk_global_sessions")
            || l.starts_with("zk_watch_count")
    }) {
        println!("  {line}");
    }
    let lat: Vec<Duration> = (0..20).map(|_| ask(addr, "ruok").1).collect();
    let max = lat.iter().max().copied().unwrap_or_default();
    println!(
        "ruok answered in at most {:.1} ms meanwhile",
        max.as_secs_f64() * 1e3
    );
    drop(conns);
}

fn ask_ok(addr: SocketAddr) -> Option<()> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"ruok").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    (out == "imok").then_some(())
}
