//! Leader election with the async API, under tokio.
//!
//! ```text
//! ./dev example async_election     # or: cargo run --example async_election
//! ```
//!
//! ZooKeeper's election recipe, written with `AsyncSession`: three candidates, one per
//! node of an in-process ensemble, each a tokio task. Each creates an ephemeral sequential
//! znode under `/election`; the lowest leads, and every other one awaits the deletion of
//! the znode just before its own (no herd: one watch per candidate). The leader's session
//! is then dropped, as a crashed process's would end: its znode goes, and the next
//! candidate takes over — the example prints who leads and how long the handover took.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use zkraft::{AsyncSession, CreateMode, Error, LocalNetwork, Node, Pool};

/// Campaigns until this candidate leads; returns its znode's path.
async fn lead(session: &AsyncSession) -> zkraft::Result<String> {
    let me = session
        .create("/election/c-", b"", CreateMode::EphemeralSequential)
        .await?;
    let my_name = me.trim_start_matches("/election/").to_string();
    loop {
        let mut candidates = session.get_children("/election", None).await?;
        candidates.sort();
        let Some(at) = candidates.iter().position(|c| *c == my_name) else {
            return Err(Error::NoNode(me));
        };
        if at == 0 {
            return Ok(me);
        }
        // Wait for the candidate just before this one to go (it may be gone already).
        let before = format!("/election/{}", candidates[at - 1]);
        let (stat, gone) = session.exists_watched(&before).await?;
        if stat.is_some() {
            gone.await?;
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let net = LocalNetwork::new();
    let pool = Pool::new(3)?;
    let dirs: Vec<_> = (0..3)
        .map(|_| tempfile::tempdir())
        .collect::<Result<_, _>>()?;
    let mut nodes = Vec::new();
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
    // Until the ensemble has elected its raft leader, a session cannot open: retry.
    let deadline = Instant::now() + Duration::from_secs(30);
    let setup = loop {
        match nodes[0].async_session().await {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    match setup.create("/election", b"", CreateMode::Persistent).await {
        Ok(_) | Err(Error::NodeExists(_)) => {}
        Err(e) => return Err(e.into()),
    }

    // One candidate per node; each reports when it leads, then holds its session until
    // told to step down (dropping its session, as a crash ends it).
    let (leads, mut leaders) = mpsc::unbounded_channel();
    let mut step_down = Vec::new();
    for node in &nodes {
        let session = node.async_session().await?;
        let (quit, mut quit_rx) = mpsc::unbounded_channel::<()>();
        step_down.push(quit);
        let leads = leads.clone();
        let id = node.id();
        tokio::spawn(async move {
            let session = Arc::new(session);
            match lead(&session).await {
                Ok(path) => {
                    let _ = leads.send((id, path, Instant::now()));
                    let _ = quit_rx.recv().await;
                }
                Err(e) => eprintln!("candidate on node {id}: {e}"),
            }
            // The session is dropped here: closed in the background, its znode gone.
        });
    }

    let (first_id, first_path, _) = tokio::time::timeout(Duration::from_secs(30), leaders.recv())
        .await?
        .ok_or("no candidate led")?;
    println!("candidate on node {first_id} leads ({first_path})");
    let index = nodes
        .iter()
        .position(|n| n.id() == first_id)
        .ok_or("unknown node")?;
    let dropped = Instant::now();
    step_down[index].send(())?;
    let (next_id, next_path, at) = tokio::time::timeout(Duration::from_secs(30), leaders.recv())
        .await?
        .ok_or("no candidate took over")?;
    println!(
        "candidate on node {first_id} stepped down; candidate on node {next_id} leads ({next_path}) \
         {:.1} ms later",
        at.duration_since(dropped).as_secs_f64() * 1e3
    );
    assert_ne!(first_id, next_id);
    for quit in &step_down {
        let _ = quit.send(());
    }
    drop(setup);
    tokio::task::spawn_blocking(move || {
        for n in nodes {
            n.shutdown();
        }
    })
    .await?;
    Ok(())
}
