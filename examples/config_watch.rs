//! Shared configuration with watches: an operator node publishes configuration versions;
//! service instances on the other nodes read it with a watch, re-arm the watch on every
//! change (the classic ZooKeeper pattern), and apply each new version. A compare-and-set
//! on the znode version keeps two operators from overwriting each other.
//!
//! ```text
//! cargo run --example config_watch
//! ```

use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use zkraft::watch::watcher;
use zkraft::{CreateMode, Error, LocalNetwork, Node, Pool, Role, Session};

/// Reads /app/config with a watch that re-reads (and re-arms) on every change.
fn follow(session: Arc<Session>, node: u64, applied: Arc<Mutex<Sender<(u64, String)>>>) {
    let s = session.clone();
    let a = applied.clone();
    let w = watcher(move |_| follow(s, node, a));
    match session.get_data("/app/config", w) {
        Ok((data, stat)) => {
            let text = String::from_utf8_lossy(&data).to_string();
            println!("  node {node} applies config v{}: {text}", stat.version);
            let _ = applied.lock().unwrap().send((node, text));
        }
        Err(e) => println!("  node {node}: {e}"),
    }
}

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

    let operator = nodes[0].session()?;
    operator.create("/app", b"", CreateMode::Persistent)?;
    operator.create(
        "/app/config",
        b"replicas=3 log=info",
        CreateMode::Persistent,
    )?;

    let (tx, rx) = channel();
    let tx = Arc::new(Mutex::new(tx));
    let mut instances = Vec::new();
    for n in &nodes[1..] {
        let s = Arc::new(n.session()?);
        follow(s.clone(), n.id(), tx.clone());
        instances.push(s);
    }
    let expect = |text: &str| -> Result<(), String> {
        let mut seen = 0;
        while seen < 2 {
            match rx.recv_timeout(Duration::from_secs(10)) {
                Ok((_, t)) if t == text => seen += 1,
                Ok(_) => {}
                Err(_) => return Err(format!("instances never applied {text:?}")),
            }
        }
        Ok(())
    };
    expect("replicas=3 log=info")?;

    for (version, text) in [(0, "replicas=5 log=info"), (1, "replicas=5 log=debug")] {
        println!("operator publishes v{}: {text}", version + 1);
        operator.set_data("/app/config", text.as_bytes(), Some(version))?;
        expect(text)?;
    }
    // A second operator working from a stale read is refused, not silently overwritten.
    match operator.set_data("/app/config", b"replicas=1", Some(1)) {
        Err(Error::BadVersion {
            expected, actual, ..
        }) => {
            println!("stale update refused: expected version {expected}, znode is at {actual}")
        }
        other => return Err(format!("stale update was not refused: {other:?}").into()),
    }
    // The watchers hold their sessions (to re-arm), so close them explicitly.
    for s in &instances {
        s.close()?;
    }
    operator.close()?;
    for n in &nodes {
        n.shutdown();
    }
    println!("clean shutdown");
    Ok(())
}
