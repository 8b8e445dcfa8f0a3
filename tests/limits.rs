//! Nothing a caller sends can hurt the ensemble: oversize requests are refused before they
//! are proposed, extreme configuration values are refused or clamped, a data directory
//! belongs to one node of one cluster, and a stale handle cannot cut a newer node off.

mod common;

use std::time::{Duration, Instant};

use common::{wait_until, Cluster};
use zkraft::{
    CreateMode, Error, LocalNetwork, Node, Op, Pool, DEFAULT_MAX_REQUEST_SIZE,
    MAX_REQUEST_SIZE_LIMIT,
};

fn single(dir: &std::path::Path) -> zkraft::NodeBuilder {
    Node::builder(1)
        .data_dir(dir)
        .tick_interval(Duration::from_millis(20))
}

#[test]
fn the_largest_request_is_accepted_and_one_byte_more_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let node = single(dir.path()).start().unwrap();
    // ZooKeeper's jute sizes: header 8, path 4+5, data 4+n, open ACL 27, flags 4.
    let fits = DEFAULT_MAX_REQUEST_SIZE - (8 + 4 + 5 + 4 + 27 + 4);
    let op = Op::create("/fits", vec![7u8; fits], CreateMode::Persistent);
    assert_eq!(op.request_size(), DEFAULT_MAX_REQUEST_SIZE);
    node.create("/fits", &vec![7u8; fits], CreateMode::Persistent)
        .unwrap();
    assert_eq!(node.get_data("/fits").unwrap().0.len(), fits);
    let applied = node.applied_index();
    let err = node
        .create("/fitz", &vec![7u8; fits + 1], CreateMode::Persistent)
        .unwrap_err();
    assert_eq!(
        err,
        Error::RequestTooLarge {
            len: DEFAULT_MAX_REQUEST_SIZE + 1,
            max: DEFAULT_MAX_REQUEST_SIZE
        }
    );
    assert!(err.is_logical() && err.to_string().contains("max_request_size"));
    assert_eq!(node.applied_index(), applied, "nothing was proposed");
    node.shutdown();
}

#[test]
fn a_per_znode_data_limit_below_the_request_limit_is_data_too_large() {
    let dir = tempfile::tempdir().unwrap();
    let node = single(dir.path()).max_data_size(1000).start().unwrap();
    node.create("/a", &[0; 1000], CreateMode::Persistent)
        .unwrap();
    assert!(matches!(
        node.set_data("/a", &[0; 1001], None),
        Err(Error::DataTooLarge {
            len: 1001,
            max: 1000
        })
    ));
    // Per znode, not per request: a multi of many small values is fine.
    let ops = (0..10)
        .map(|i| Op::create(format!("/m{i}"), vec![0; 900], CreateMode::Persistent))
        .collect();
    node.multi(ops).unwrap();
    assert!(matches!(
        node.multi(vec![Op::set_data("/a", vec![0; 1001], None)]),
        Err(Error::MultiFailed { index: 0, source }) if matches!(*source, Error::DataTooLarge { .. })
    ));
    node.shutdown();
}

/// A 64 MiB path, a 100 MiB value and a 100,000-operation multi are refused at once, and
/// the ensemble goes on serving writes under the same leader in the same term.
#[test]
fn oversize_requests_are_refused_and_the_ensemble_keeps_its_leader() {
    let c = Cluster::new(3);
    let leader = c.wait_leader();
    let via = c.follower();
    common::retry(|| via.create("/w", b"", CreateMode::Persistent));
    let term = via.term();
    let applied = via.applied_index();
    let huge_path = format!("/{}", "p".repeat(64 << 20));
    let huge_data = vec![0u8; 100 << 20];
    let many: Vec<Op> = (0..100_000).map(|_| Op::check("/", None)).collect();
    let start = Instant::now();
    let refusals = [
        via.create(&huge_path, b"", CreateMode::Persistent)
            .map(drop),
        via.get_data(&huge_path).map(drop),
        via.set_data("/w", &huge_data, None).map(drop),
        via.create("/w/x", &huge_data, CreateMode::Persistent)
            .map(drop),
        via.multi(many).map(drop),
    ];
    for r in refusals {
        assert!(
            matches!(r, Err(Error::RequestTooLarge { max, .. }) if max == DEFAULT_MAX_REQUEST_SIZE),
            "{r:?}"
        );
    }
    // Refused before anything was proposed or scanned: far below one election timeout
    // of work on any machine (the generous bound only catches a hang).
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(via.applied_index(), applied, "nothing was proposed");
    for i in 0..20 {
        via.create(&format!("/w/{i}"), b"", CreateMode::Persistent)
            .unwrap();
    }
    assert_eq!(c.wait_leader(), leader);
    assert_eq!(via.term(), term, "no election");
    c.wait_converged(Duration::from_secs(10));
}

#[test]
fn extreme_configuration_values_are_refused_or_work_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let refused = [
        single(dir.path()).tick_interval(Duration::MAX),
        single(dir.path()).tick_interval(Duration::ZERO),
        single(dir.path()).election_tick(usize::MAX),
        single(dir.path()).heartbeat_tick(0),
        single(dir.path()).max_request_size(usize::MAX),
        single(dir.path()).max_request_size(MAX_REQUEST_SIZE_LIMIT + 1),
        single(dir.path()).max_data_size(usize::MAX),
        single(dir.path()).session_timeout_bounds(Duration::MAX, Duration::MAX),
        single(dir.path()).request_timeout(Duration::ZERO),
        single(dir.path()).cluster_id(""),
        single(dir.path()).cluster_id("x".repeat(1000)),
        single(dir.path()).voters([2, 3]),
    ];
    for b in refused {
        assert!(matches!(b.start(), Err(Error::Config(_))));
    }
    // Durations that only meet a clock may be as long as you like: they saturate.
    let node = single(dir.path())
        .request_timeout(Duration::MAX)
        .session_timeout(Duration::MAX)
        .reap_interval(Duration::MAX)
        .start()
        .unwrap();
    node.create("/a", b"", CreateMode::Persistent).unwrap();
    node.sync("/a").unwrap();
    node.get_data_linearizable("/a").unwrap();
    let s = node.session_with_timeout(Duration::MAX).unwrap();
    assert_eq!(s.timeout(), node.config().max_session_timeout, "clamped");
    s.create("/e", b"", CreateMode::Ephemeral).unwrap();
    assert!(matches!(
        s.create_ttl("/t", b"", CreateMode::PersistentWithTtl, Duration::MAX),
        Err(Error::BadArguments(_))
    ));
    s.close().unwrap();
    node.shutdown();
    node.shutdown(); // idempotent
}

#[test]
fn a_data_directory_belongs_to_one_node_of_one_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let node = single(dir.path()).cluster_id("alpha").start().unwrap();
    node.create("/a", b"", CreateMode::Persistent).unwrap();
    node.shutdown();
    drop(node);
    let other_id = Node::builder(2)
        .data_dir(dir.path())
        .cluster_id("alpha")
        .start();
    assert!(
        matches!(&other_id, Err(Error::Config(m)) if m.contains("belongs to node 1")),
        "{other_id:?}"
    );
    let other_cluster = single(dir.path()).cluster_id("beta").start();
    assert!(
        matches!(&other_cluster, Err(Error::Config(m)) if m.contains("\"alpha\"")),
        "{other_cluster:?}"
    );
    let node = single(dir.path()).cluster_id("alpha").start().unwrap();
    assert!(
        node.exists("/a").unwrap().is_some(),
        "refusals changed nothing"
    );
    node.shutdown();
}

#[test]
fn a_restart_with_other_voters_reports_the_persisted_ones() {
    let dir = tempfile::tempdir().unwrap();
    let node = single(dir.path()).start().unwrap();
    node.create("/a", b"", CreateMode::Persistent).unwrap();
    node.shutdown();
    drop(node);
    let node = single(dir.path()).voters([1, 2, 3]).start().unwrap();
    assert_eq!(node.config().voters, [1], "config() tells the truth");
    // Still the single-member ensemble it was: it elects itself and writes.
    common::retry(|| node.create("/b", b"", CreateMode::Persistent));
    node.shutdown();
}

/// A handle of a node that was shut down, dropped after a new node with the same id
/// joined the same network, must not cut the new node off.
#[test]
fn a_stale_handle_dropped_late_leaves_the_new_node_alone() {
    let mut c = Cluster::new(3);
    let leader = c.wait_leader();
    let id = c.ids.iter().copied().find(|&i| i != leader).unwrap();
    let old = c.detach(id);
    old.shutdown();
    c.start(id);
    drop(old); // shuts down again: must not deregister the new node
    let writer = c.node(leader);
    for i in 0..20 {
        common::retry(|| writer.create(&format!("/n{i}"), b"", CreateMode::Persistent));
    }
    let target = writer.applied_index();
    wait_until(Duration::from_secs(10), "the new node catches up", || {
        c.node(id).applied_index() >= target
    });
    c.wait_converged(Duration::from_secs(10));
}

#[test]
fn a_node_refused_by_its_transport_leaves_the_registered_one_alone() {
    let net = LocalNetwork::new();
    let pool = Pool::new(2).unwrap();
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let start = |dir: &std::path::Path| {
        single(dir)
            .transport(net.clone())
            .pool(pool.clone())
            .start()
    };
    let first = start(d1.path()).unwrap();
    assert!(
        matches!(start(d2.path()), Err(Error::Config(_))),
        "id 1 is taken"
    );
    common::retry(|| first.create("/still-here", b"", CreateMode::Persistent));
    first.shutdown();
}
