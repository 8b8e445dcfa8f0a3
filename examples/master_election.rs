//! Master election and crash detection, end to end.
//!
//! ```text
//! cargo run --example master_election
//! ```
//!
//! Starts a 3-node zkraft ensemble in this process (temporary RocksDB directories), runs
//! one service instance per node that campaigns for master through the election recipe,
//! then crashes the master's node the way a crash looks — it drops off the network and
//! stops, without closing anything, so its session heartbeats simply stop. The survivors
//! see the master's znode vanish when the leader expires its session, the next candidate
//! takes over, and the failover time is printed. Exits 0 after a clean shutdown.
//! `-- --master-on-raft-leader` makes the raft leader's instance the master, so its crash
//! also needs a raft election before the new leader can expire the session.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use zkraft::recipes::election::LeaderElection;
use zkraft::watch::watcher;
use zkraft::{LocalNetwork, Node, Pool, Role, Session};

const SESSION_TIMEOUT: Duration = Duration::from_secs(4);

struct Instance {
    node_id: u64,
    session: Arc<Session>,
    election: LeaderElection,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let net = LocalNetwork::new();
    let pool = Pool::new(3)?;
    let dirs: Vec<_> = (0..3)
        .map(|_| tempfile::tempdir())
        .collect::<Result<_, _>>()?;
    let mut nodes: Vec<Node> = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        nodes.push(
            Node::builder(i as u64 + 1)
                .voters([1, 2, 3])
                .data_dir(dir.path())
                .tick_interval(Duration::from_millis(50)) // election timeout 0.5–1 s
                .session_timeout(SESSION_TIMEOUT)
                .transport(net.clone())
                .pool(pool.clone())
                .start()?,
        );
    }
    wait_for(Duration::from_secs(10), || {
        nodes.iter().filter(|n| n.role() == Role::Leader).count() == 1
    })?;
    println!(
        "3-node ensemble up; raft leader is node {}",
        nodes[0].leader().unwrap_or(0)
    );

    // One service instance per node, each with its own session, all campaigning. With
    // `--master-on-raft-leader` the raft leader's instance joins first and becomes master,
    // so the crash also costs a raft election (the worst case).
    let worst_case = std::env::args().any(|a| a == "--master-on-raft-leader");
    let mut order: Vec<&Node> = nodes.iter().collect();
    if worst_case {
        order.sort_by_key(|n| n.role() != Role::Leader);
    }
    let mut instances = Vec::new();
    for n in order {
        let session = Arc::new(n.session()?);
        let election = LeaderElection::join(
            session.clone(),
            "/service/master",
            format!("instance on node {}", n.id()).as_bytes(),
        )?;
        instances.push(Instance {
            node_id: n.id(),
            session,
            election,
        });
    }
    wait_for(Duration::from_secs(10), || {
        instances.iter().any(|i| i.election.is_leader())
    })?;
    let master = instances
        .iter()
        .position(|i| i.election.is_leader())
        .unwrap();
    let (master_node, master_token, master_path) = (
        instances[master].node_id,
        instances[master].election.fencing_token(),
        instances[master].election.path(),
    );
    println!("master: instance on node {master_node} (znode {master_path}, fencing token {master_token})");
    for i in &instances {
        println!(
            "  node {} sees master = {:?}",
            i.node_id,
            String::from_utf8(i.election.leader_data()?.unwrap_or_default())?
        );
    }

    // Survivors watch the master's znode: that is crash detection.
    static CRASHED_AT: OnceLock<Instant> = OnceLock::new();
    for i in instances.iter().filter(|i| i.node_id != master_node) {
        let id = i.node_id;
        i.session.exists(
            &master_path,
            watcher(move |e| {
                let after = CRASHED_AT.get().map(Instant::elapsed).unwrap_or_default();
                println!(
                    "  node {id}: {:?} {} — {after:.2?} after the crash",
                    e.event_type, e.path
                );
            }),
        )?;
    }

    println!("crashing node {master_node} (no close: it falls off the network and stops)…");
    let _ = CRASHED_AT.set(Instant::now());
    net.isolate(master_node);
    let crashed = instances.remove(master);
    nodes.retain(|n| {
        if n.id() == master_node {
            n.shutdown();
            false
        } else {
            true
        }
    });

    wait_for(Duration::from_secs(30), || {
        instances.iter().any(|i| i.election.is_leader())
    })?;
    let failover = CRASHED_AT.get().unwrap().elapsed();
    let new_master = instances.iter().find(|i| i.election.is_leader()).unwrap();
    println!(
        "new master: instance on node {} took over {:.2?} after the crash (session timeout {:?}); fencing token {} > {}",
        new_master.node_id,
        failover,
        SESSION_TIMEOUT,
        new_master.election.fencing_token(),
        master_token
    );
    assert!(new_master.election.fencing_token() > master_token);
    assert_eq!(
        instances.iter().filter(|i| i.election.is_leader()).count(),
        1
    );

    drop(crashed);
    drop(instances); // resigns; the survivors' sessions close in the background
    for n in &nodes {
        n.shutdown();
    }
    println!("clean shutdown");
    Ok(())
}

fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    while !f() {
        if Instant::now() > deadline {
            return Err(format!("gave up after {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}
