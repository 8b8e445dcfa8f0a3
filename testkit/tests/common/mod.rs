//! Harness for multi-process tests: `zkraft-member` processes on 127.0.0.1 ports picked
//! free, each in its own data directory, driven over stdin with every wait bounded. Only
//! the processes started here are ever stopped (by their pid).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub const MEMBER: &str = env!("CARGO_BIN_EXE_zkraft-member");
/// How long one command may take before the test fails.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// `n` ports on 127.0.0.1 that were free a moment ago.
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// One running member process.
pub struct Member {
    pub id: u64,
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

impl Member {
    /// Sends one command and waits for its reply line.
    pub fn cmd(&mut self, line: &str) -> String {
        self.cmd_within(line, COMMAND_TIMEOUT)
    }

    pub fn cmd_within(&mut self, line: &str, timeout: Duration) -> String {
        writeln!(self.stdin, "{line}").expect("member stdin");
        self.stdin.flush().unwrap();
        self.lines
            .recv_timeout(timeout)
            .unwrap_or_else(|e| panic!("member {} gave no reply to {line:?}: {e}", self.id))
    }

    /// `status` as a map.
    pub fn status(&mut self) -> BTreeMap<String, String> {
        let reply = self.cmd("status");
        reply
            .split_whitespace()
            .skip(1)
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    pub fn stat(&mut self, key: &str) -> u64 {
        self.status()[key].parse().unwrap()
    }

    /// (applied index, digest value).
    pub fn digest(&mut self) -> (u64, String) {
        let reply = self.cmd("digest");
        let mut it = reply.split_whitespace().skip(1);
        (
            it.next().unwrap().parse().unwrap(),
            it.next().unwrap().to_string(),
        )
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process's peak resident set (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// SIGKILL: the process gets no chance to flush or close anything.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Asks the process to shut down cleanly.
    pub fn quit(mut self) {
        let _ = writeln!(self.stdin, "quit");
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill9();
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A set of member processes forming one ensemble.
pub struct Ensemble {
    pub root: TempDir,
    pub ports: BTreeMap<u64, u16>,
    pub peers: String,
    pub members: BTreeMap<u64, Member>,
    pub extra: Vec<String>,
}

impl Ensemble {
    /// Starts `n` members with `extra` flags each.
    pub fn start(n: u64, extra: &[&str]) -> Ensemble {
        let ports: BTreeMap<u64, u16> = (1..=n).zip(free_ports(n as usize)).collect();
        let peers = ports
            .iter()
            .map(|(id, port)| format!("{id}=127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut e = Ensemble {
            root: tempfile::tempdir().unwrap(),
            ports,
            peers,
            members: BTreeMap::new(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        for id in 1..=n {
            e.spawn(id);
        }
        e
    }

    pub fn dir(&self, id: u64) -> PathBuf {
        self.root.path().join(format!("member-{id}"))
    }

    pub fn log(&self, id: u64) -> PathBuf {
        self.root.path().join(format!("member-{id}.log"))
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    /// Starts (or restarts) member `id` from its directory.
    pub fn spawn(&mut self, id: u64) {
        assert!(!self.members.contains_key(&id), "member {id} is running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log(id))
            .unwrap();
        let mut child = Command::new(MEMBER)
            .args(["--id", &id.to_string(), "--peers", &self.peers])
            .arg("--data-dir")
            .arg(self.dir(id))
            .args(&self.extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn zkraft-member");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let ready = lines.recv_timeout(Duration::from_secs(30));
        assert_eq!(
            ready.as_deref(),
            Ok("ready"),
            "member {id} did not start; log: {}",
            std::fs::read_to_string(self.log(id)).unwrap_or_default()
        );
        self.members.insert(
            id,
            Member {
                id,
                child,
                stdin,
                lines,
            },
        );
    }

    pub fn member(&mut self, id: u64) -> &mut Member {
        self.members.get_mut(&id).expect("running")
    }

    pub fn take(&mut self, id: u64) -> Member {
        self.members.remove(&id).expect("running")
    }

    /// Waits for one running member to lead and every running member to follow it.
    pub fn wait_leader(&mut self, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            let statuses: Vec<_> = self.members.values_mut().map(|m| m.status()).collect();
            let leaders: Vec<u64> = statuses
                .iter()
                .filter(|s| s["role"] == "Leader")
                .map(|s| s["id"].parse().unwrap())
                .collect();
            if let [l] = leaders.as_slice() {
                if statuses.iter().all(|s| s["leader"] == l.to_string()) {
                    return *l;
                }
            }
            assert!(Instant::now() < deadline, "no leader: {statuses:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until every running member reports the same digest at the same index (and
    /// fails at once if two report different digests at one index). Returns how long it
    /// took.
    pub fn wait_converged(&mut self, timeout: Duration) -> Duration {
        let start = Instant::now();
        loop {
            let digests: Vec<(u64, (u64, String))> = self
                .members
                .values_mut()
                .map(|m| (m.id, m.digest()))
                .collect();
            for a in &digests {
                for b in &digests {
                    assert!(
                        a.1 .0 != b.1 .0 || a.1 .1 == b.1 .1,
                        "replicas diverged at index {}: {digests:?}",
                        a.1 .0
                    );
                }
            }
            if digests.windows(2).all(|w| w[0].1 == w[1].1) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < timeout,
                "replicas did not converge: {digests:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Lines of a file written by `load` or `export`: (data, rest).
pub fn read_pairs(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}
