//! Master election across processes: the same program started three times forms a zkraft
//! ensemble over TCP and elects one master among its service instances.
//!
//! Run the three members yourself (each in its own terminal), then kill one with Ctrl-C or
//! `kill -9` and watch another take over:
//!
//! ```text
//! cargo run --example election_over_tcp -- --id 1 --peers 1=127.0.0.1:2701,2=127.0.0.1:2702,3=127.0.0.1:2703
//! cargo run --example election_over_tcp -- --id 2 --peers 1=127.0.0.1:2701,2=127.0.0.1:2702,3=127.0.0.1:2703
//! cargo run --example election_over_tcp -- --id 3 --peers 1=127.0.0.1:2701,2=127.0.0.1:2702,3=127.0.0.1:2703
//! ```
//!
//! Without `--id`, the program plays all three parts itself: it starts itself three times
//! on free 127.0.0.1 ports, waits for a master, kills that process with SIGKILL (a crash:
//! nothing is closed, its session heartbeats just stop), prints how long the others took
//! to elect a new master, and stops the rest. Exits 0.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use zkraft::recipes::election::LeaderElection;
use zkraft::Node;

const SESSION_TIMEOUT: Duration = Duration::from_secs(4);

#[derive(Parser)]
struct Args {
    /// This member's id; without it, start a demo of three members.
    #[arg(long)]
    id: Option<u64>,
    /// Every member: `ID=HOST:PORT,...`.
    #[arg(long)]
    peers: Option<String>,
    /// Where this member keeps its data (default `zkraft-election-ID`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    match (args.id, args.peers) {
        (Some(id), Some(peers)) => {
            let dir = args
                .data_dir
                .unwrap_or_else(|| PathBuf::from(format!("zkraft-election-{id}")));
            member(id, &peers, dir)
        }
        (None, None) => demo(),
        _ => Err("give both --id and --peers, or neither for the demo".into()),
    }
}

/// One member: a zkraft node plus the service instance that campaigns for master on it.
fn member(id: u64, peers: &str, dir: PathBuf) -> Result<(), Box<dyn std::error::Error>> {
    let members: Vec<(u64, String)> = peers
        .split(',')
        .map(|p| {
            let (id, addr) = p.split_once('=').ok_or("peers are ID=HOST:PORT")?;
            Ok((id.parse()?, addr.to_string()))
        })
        .collect::<Result<_, Box<dyn std::error::Error>>>()?;
    let node = Node::builder(id)
        .members(members)
        .data_dir(dir)
        .tick_interval(Duration::from_millis(50)) // election timeout 0.5–1 s
        .session_timeout(SESSION_TIMEOUT)
        .start()?;
    println!("member {id}: node started, waiting for the ensemble");
    // The session needs a leader; retry until the ensemble has one.
    let deadline = Instant::now() + Duration::from_secs(30);
    let session = loop {
        match node.session() {
            Ok(s) => break Arc::new(s),
            Err(e) if Instant::now() < deadline => {
                println!("member {id}: no session yet ({e}), retrying");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => return Err(e.into()),
        }
    };
    let me = format!("instance in process {} on node {id}", std::process::id());
    loop {
        // A write that was in flight when a raft leader died times out; the election
        // recipe's protected create makes joining again safe.
        let election = match LeaderElection::join(session.clone(), "/service/master", me.as_bytes())
        {
            Ok(e) => e,
            Err(e) if !e.is_logical() => {
                println!("member {id}: joining failed ({e}), retrying");
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        campaign(id, &me, &election)?;
    }
}

/// Waits for leadership, printing who the master is meanwhile. Returns when the candidacy
/// ended without an error worth stopping for.
fn campaign(id: u64, me: &str, election: &LeaderElection) -> zkraft::Result<()> {
    let mut seen = String::new();
    loop {
        match election.await_leadership(Duration::from_millis(500)) {
            Ok(true) => {
                // The master's work would go here, guarded by the fencing token.
                println!(
                    "MASTER {id} fencing-token {} ({me})",
                    election.fencing_token()
                );
                loop {
                    std::thread::sleep(Duration::from_secs(3600));
                }
            }
            Ok(false) => {}
            Err(e) if !e.is_logical() => {
                println!("member {id}: candidacy ended ({e}), joining again");
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        if let Ok(Some(data)) = election.leader_data() {
            let master = String::from_utf8_lossy(&data).into_owned();
            if master != seen {
                println!("member {id}: the master is {master:?}");
                seen = master;
            }
        }
    }
}

/// Starts this program three times, crashes the master's process and times the failover.
fn demo() -> Result<(), Box<dyn std::error::Error>> {
    let ports: Vec<u16> = {
        let l: Vec<TcpListener> = (0..3)
            .map(|_| TcpListener::bind("127.0.0.1:0"))
            .collect::<Result<_, _>>()?;
        l.iter()
            .map(|l| l.local_addr().map(|a| a.port()))
            .collect::<Result<_, _>>()?
    };
    let peers = (1..=3)
        .map(|i| format!("{i}=127.0.0.1:{}", ports[i - 1]))
        .collect::<Vec<_>>()
        .join(",");
    let dir = tempfile::tempdir()?;
    let exe = std::env::current_exe()?;
    let (tx, lines) = mpsc::channel::<(u64, String)>();
    let mut children: Vec<(u64, Child)> = Vec::new();
    for id in 1..=3u64 {
        println!("$ {} --id {id} --peers {peers}", exe.display());
        let mut child = Command::new(&exe)
            .args(["--id", &id.to_string(), "--peers", &peers, "--data-dir"])
            .arg(dir.path().join(format!("member-{id}")))
            .stdout(Stdio::piped())
            .spawn()?;
        let out = child.stdout.take().ok_or("no stdout")?;
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send((id, line));
            }
        });
        children.push((id, child));
    }
    // Waits for a master other than `not`, and (before the crash) for the two other
    // members to see it.
    let wait_master = |timeout: Duration, not: Option<u64>| -> Result<u64, String> {
        let deadline = Instant::now() + timeout;
        let (mut master, mut followers) = (None, std::collections::BTreeSet::new());
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (id, line) = lines
                .recv_timeout(left)
                .map_err(|_| format!("no master within {timeout:?}"))?;
            println!("  [{id}] {line}");
            if line.starts_with("MASTER") && Some(id) != not {
                master = Some(id);
            } else if line.contains("the master is") {
                followers.insert(id);
            }
            if let Some(m) = master {
                if not.is_some() || followers.iter().filter(|f| **f != m).count() == 2 {
                    return Ok(m);
                }
            }
        }
    };
    let result = (|| -> Result<(), String> {
        let master = wait_master(Duration::from_secs(60), None)?;
        println!("crashing the master's process (member {master}) with SIGKILL…");
        let crashed_at = Instant::now();
        if let Some((_, child)) = children.iter_mut().find(|(id, _)| *id == master) {
            child.kill().map_err(|e| e.to_string())?;
            let _ = child.wait();
        }
        let next = wait_master(Duration::from_secs(60), Some(master))?;
        println!(
            "member {next} took over {:.2?} after the crash (session timeout {SESSION_TIMEOUT:?})",
            crashed_at.elapsed()
        );
        Ok(())
    })();
    // Stop only the processes started here.
    for (_, child) in &mut children {
        let _ = child.kill();
        let _ = child.wait();
    }
    result?;
    println!("all members stopped");
    Ok(())
}
