//! Shared harness: in-process clusters on temp RocksDB directories, one worker pool and one
//! fault-injectable network, with helpers to wait for leaders and compare replicas.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use zkraft::{LocalNetwork, Node, NodeBuilder, Pool, Role, Stat};

/// Tick length in tests: 20 ms ticks, election after 10–20 ticks (200–400 ms).
pub const TICK: Duration = Duration::from_millis(20);
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// Default session timeout in tests (the bounds are lowered to 300 ms – 30 s).
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest election timeout: 20 ticks.
pub const ELECTION_TIMEOUT: Duration = Duration::from_millis(400);

pub struct Cluster {
    pub net: LocalNetwork,
    pub pool: Pool,
    pub ids: Vec<u64>,
    dirs: BTreeMap<u64, TempDir>,
    nodes: BTreeMap<u64, Node>,
    /// Applied to every node's builder after the defaults below.
    configure: fn(NodeBuilder) -> NodeBuilder,
}

/// Every znode of a replica: path → (data, stat).
pub type TreeImage = BTreeMap<String, (Option<Vec<u8>>, Stat)>;

impl Cluster {
    pub fn new(n: u64) -> Cluster {
        Cluster::with(n, |b| b)
    }

    /// A cluster whose nodes' builders also go through `configure`.
    pub fn with(n: u64, configure: fn(NodeBuilder) -> NodeBuilder) -> Cluster {
        let ids: Vec<u64> = (1..=n).collect();
        let mut c = Cluster {
            net: LocalNetwork::new(),
            pool: Pool::new(4).unwrap(),
            ids: ids.clone(),
            dirs: BTreeMap::new(),
            nodes: BTreeMap::new(),
            configure,
        };
        for id in ids {
            c.dirs.insert(id, tempfile::tempdir().unwrap());
            c.start(id);
        }
        c
    }

    /// Starts (or restarts) node `id` from its data directory.
    pub fn start(&mut self, id: u64) {
        assert!(!self.nodes.contains_key(&id), "node {id} is running");
        let builder = Node::builder(id)
            .voters(self.ids.clone())
            .data_dir(self.dirs[&id].path())
            .tick_interval(TICK)
            .election_tick(10)
            .heartbeat_tick(2)
            .request_timeout(REQUEST_TIMEOUT)
            .session_timeout(SESSION_TIMEOUT)
            .session_timeout_bounds(Duration::from_millis(300), Duration::from_secs(30))
            .reap_interval(Duration::from_millis(200))
            .transport(self.net.clone())
            .pool(self.pool.clone());
        let node = (self.configure)(builder).start().unwrap();
        self.nodes.insert(id, node);
    }

    /// Stops node `id` abruptly: it is cut off the network first, so it sends nothing
    /// more, then shut down (its directory is kept for a restart).
    pub fn stop(&mut self, id: u64) {
        self.net.isolate(id);
        let node = self.nodes.remove(&id).expect("running");
        node.shutdown();
    }

    /// Stops node `id` as a process exits: its peers hear at once that its connections
    /// closed (the network reports it lost), then it is cut off (its directory is kept).
    pub fn crash(&mut self, id: u64) {
        let node = self.nodes.remove(&id).expect("running");
        node.shutdown();
        self.net.isolate(id);
    }

    /// Takes node `id` out of the cluster without stopping it (the caller owns it now).
    pub fn detach(&mut self, id: u64) -> Node {
        self.nodes.remove(&id).expect("running")
    }

    /// The data directory of node `id`.
    pub fn dir(&self, id: u64) -> &std::path::Path {
        self.dirs[&id].path()
    }

    pub fn node(&self, id: u64) -> &Node {
        &self.nodes[&id]
    }

    pub fn running(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values()
    }

    /// Waits until exactly one running node among `among` is leader and every other one
    /// in `among` follows it; returns its id.
    pub fn wait_leader_among(&self, among: &[u64], timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            let leaders: Vec<u64> = among
                .iter()
                .filter(|id| self.nodes[id].role() == Role::Leader)
                .copied()
                .collect();
            if let [l] = leaders[..] {
                let term = self.nodes[&l].term();
                if among
                    .iter()
                    .all(|id| self.nodes[id].leader() == Some(l) && self.nodes[id].term() == term)
                {
                    return l;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader among {among:?}: {:?}",
                self.nodes.values().collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn wait_leader(&self) -> u64 {
        let among: Vec<u64> = self.nodes.keys().copied().collect();
        self.wait_leader_among(&among, Duration::from_secs(10))
    }

    pub fn leader(&self) -> &Node {
        self.node(self.wait_leader())
    }

    /// A running node that is not the leader.
    pub fn follower(&self) -> &Node {
        let l = self.wait_leader();
        self.nodes
            .values()
            .find(|n| n.id() != l)
            .expect("a follower")
    }

    /// Waits until every running node has applied `index`.
    pub fn wait_applied(&self, index: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.nodes.values().any(|n| n.applied_index() < index) {
            assert!(
                Instant::now() < deadline,
                "replicas did not apply {index}: {:?}",
                self.nodes.values().collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until every running node holds the same tree at the same applied index, and
    /// returns that tree.
    pub fn wait_converged(&self, timeout: Duration) -> TreeImage {
        let deadline = Instant::now() + timeout;
        loop {
            let images: Vec<(u64, TreeImage)> = self
                .nodes
                .values()
                .map(|n| (n.applied_index(), image(n)))
                .collect();
            if images.windows(2).all(|w| w[0] == w[1]) {
                let digests: Vec<_> = self.nodes.values().map(|n| n.digest()).collect();
                if digests.windows(2).all(|w| w[0] == w[1]) {
                    return images.into_iter().next().unwrap().1;
                }
            }
            assert!(
                Instant::now() < deadline,
                "replicas did not converge: {:?}",
                self.nodes.values().collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The whole tree of one replica.
pub fn image(node: &Node) -> TreeImage {
    node.with_tree(|t| {
        t.paths()
            .into_iter()
            .filter_map(|p| t.get(&p).map(|n| (p, (n.data.clone(), n.stat()))))
            .collect()
    })
}

/// Retries a write until it succeeds (for set-up steps during elections).
pub fn retry<T>(mut f: impl FnMut() -> zkraft::Result<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) if !e.is_logical() && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// Polls `f` until it returns true or `timeout` passes; returns how long it took.
pub fn wait_until(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    start.elapsed()
}
