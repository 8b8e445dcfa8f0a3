//! The replica alone: three replicas over the in-process transport (`LocalNetwork`) and
//! in-memory storage (RocksDB's memory environment, `Config::in_memory`), each with an
//! observer that records what it hears. No host, session, node or client port above
//! them: only the replica's own API (propose, ReadIndex, tree reads, status) and its one
//! upward edge.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::open::Opened;
use super::{open, Observer, Parts, Role, Shared};
use crate::command::{Command, CreateMode, Op};
use crate::error::{Error, Result};
use crate::pool::Pool;
use crate::transport::LocalNetwork;
use crate::tree::{DataTree, EventType, OpResult, WatchedEvent};

/// One applied entry as an observer heard it: zxid, what it did, its events.
type Heard = (u64, String, Vec<(EventType, String)>);

/// Records what the replica tells the layer above it.
#[derive(Default)]
struct Recorder {
    applied: Mutex<Vec<Heard>>,
    replaced: Mutex<Vec<WatchedEvent>>,
    replacements: AtomicUsize,
    /// Sessions this replica hosts and heartbeats.
    hosted: Mutex<Vec<i64>>,
    /// Heartbeats acknowledged by the leader.
    acknowledged: AtomicUsize,
}

impl Observer for Recorder {
    fn applied(
        &self,
        tree: &DataTree,
        cmd: &Command,
        result: &Result<OpResult>,
        events: Vec<WatchedEvent>,
    ) {
        let what = match (&cmd.op, result) {
            (Op::CloseSession { session, expired }, Ok(_)) => {
                format!("closed {session:#x} expired {expired}")
            }
            (Op::Create { path, .. }, Ok(_)) => format!("created {path}"),
            (Op::Create { path, .. }, Err(e)) => format!("create {path}: {}", e.code()),
            (op, r) => format!("{op:?}: {}", r.is_ok()),
        };
        let events = events.into_iter().map(|e| (e.event_type, e.path)).collect();
        // The tree handed over is the one the entry was applied to.
        self.applied.lock().push((tree.zxid(), what, events));
    }

    fn config_changed(&self, tree: &DataTree, events: Vec<WatchedEvent>) {
        let events = events.into_iter().map(|e| (e.event_type, e.path)).collect();
        self.applied
            .lock()
            .push((tree.zxid(), "configuration".into(), events));
    }

    fn tree_replaced(&self, old: &DataTree, new: &DataTree) {
        self.replacements.fetch_add(1, Ordering::SeqCst);
        // As a host watching the whole tree would compare them.
        let changes = crate::tree::changes::between(old, new, [], ["/"], new.zxid() as i64);
        self.replaced.lock().extend(changes);
    }

    fn order_lost(&self, _: i64, _: u64) {}

    fn heartbeats_due(&self, _: i64, _: i64) -> Vec<i64> {
        self.hosted.lock().clone()
    }

    fn sessions_acknowledged(&self) {
        self.acknowledged.fetch_add(1, Ordering::SeqCst);
    }

    fn stopping(&self) {}
}

struct Replica {
    opened: Opened,
    timer: u64,
    heard: Arc<Recorder>,
}

impl Replica {
    fn shared(&self) -> &Arc<Shared> {
        &self.opened.shared
    }

    fn has(&self, path: &str) -> bool {
        self.shared().tree().read().get(path).is_some()
    }

    fn digest(&self) -> u64 {
        self.shared().tree().read().digest()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.opened.shared.shutdown(self.timer);
    }
}

/// Three replicas, 1 to 3, on one in-process network and one pool, in memory (their
/// empty directories in the returned tempdir). Bound in this order, the replicas are
/// dropped (stopped) first.
fn ensemble(snapshot_entries: u64) -> (Arc<LocalNetwork>, tempfile::TempDir, Vec<Replica>) {
    let (net, dir) = (Arc::new(LocalNetwork::new()), tempfile::tempdir().unwrap());
    let pool = Pool::new(2).unwrap();
    let replicas = (1..=3)
        .map(|id| {
            let mut config = crate::replica::Config {
                id,
                voters: vec![1, 2, 3],
                data_dir: dir.path().join(format!("replica-{id}")),
                tick_interval: Duration::from_millis(50),
                request_timeout: Duration::from_secs(2),
                // Hosts heartbeat their sessions every 100 ms.
                min_session_timeout: Duration::from_millis(300),
                snapshot_entries,
                ..Default::default()
            };
            config.in_memory = true;
            let opened = open(Parts {
                config,
                transport: Some(net.clone()),
                pool: Some(pool.clone()),
                logger: None,
                members: Vec::new(),
                listen: None,
                peer_tls: None,
            })
            .unwrap();
            let heard = Arc::new(Recorder::default());
            let observer: Arc<dyn Observer> = heard.clone();
            let weak: Weak<dyn Observer> = Arc::downgrade(&observer);
            let timer = opened.run(weak).unwrap();
            Replica {
                opened,
                timer,
                heard,
            }
        })
        .collect();
    (net, dir, replicas)
}

/// Waits (20 s at most) until `done`.
fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The index of the one replica that leads, once one does.
fn leader(replicas: &[Replica]) -> usize {
    let mut found = None;
    until("a leader", || {
        let leaders: Vec<usize> = (0..replicas.len())
            .filter(|&i| replicas[i].shared().role() == Role::Leader)
            .collect();
        found = leaders.first().copied();
        leaders.len() == 1
    });
    found.unwrap()
}

fn create(r: &Replica, path: &str) -> Result<OpResult> {
    r.shared().submit(Op::create(
        path,
        path.as_bytes().to_vec(),
        CreateMode::Persistent,
    ))
}

/// Whether every replica's tree has the same digest.
fn digests_agree(replicas: &[Replica]) -> bool {
    let d: Vec<u64> = replicas.iter().map(Replica::digest).collect();
    d.iter().all(|x| *x == d[0])
}

fn all_applied(replicas: &[Replica], index: u64) {
    until("every replica to apply", || {
        replicas.iter().all(|r| r.shared().applied_index() >= index)
    });
}

#[test]
fn every_replica_applies_the_same_entries_in_the_same_order_and_tells_its_observer() {
    let (_net, dir, replicas) = ensemble(100_000);
    let l = leader(&replicas);
    // Proposed through each replica, the leader and both followers (which forward).
    for (n, r) in replicas.iter().enumerate() {
        create(r, &format!("/from-{n}")).unwrap();
    }
    assert_eq!(
        create(&replicas[l], "/from-0").unwrap_err().code(),
        Error::NodeExists(String::new()).code()
    );
    let last = replicas[l].shared().applied_index();
    all_applied(&replicas, last);

    let heard: Vec<Vec<Heard>> = replicas
        .iter()
        .map(|r| r.heard.applied.lock().clone())
        .collect();
    assert_eq!(heard[0], heard[1]);
    assert_eq!(heard[1], heard[2]);
    let creates: Vec<&Heard> = heard[0]
        .iter()
        .filter(|h| h.1.starts_with("create"))
        .collect();
    assert_eq!(creates.len(), 4, "{:?}", heard[0]);
    assert_eq!(
        creates[0].2,
        [
            (EventType::NodeCreated, "/from-0".to_string()),
            (EventType::NodeChildrenChanged, "/".to_string())
        ],
        "a create's events, in order"
    );
    assert_eq!(
        creates[3].1, "create /from-0: -110",
        "the refusal is applied alike"
    );
    assert!(creates[3].2.is_empty(), "a refused create causes no event");
    let zxids: Vec<u64> = heard[0].iter().map(|h| h.0).collect();
    assert!(
        zxids.windows(2).all(|w| w[0] < w[1]),
        "in log order: {zxids:?}"
    );
    assert!(digests_agree(&replicas));
    for id in 1..=3 {
        let on_disk: Vec<_> = std::fs::read_dir(dir.path().join(format!("replica-{id}")))
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(on_disk.is_empty(), "in memory, yet on disk: {on_disk:?}");
    }
}

#[test]
fn a_follower_read_index_covers_every_write_acknowledged_before_it() {
    let (_net, _dir, replicas) = ensemble(100_000);
    let l = leader(&replicas);
    let f = (l + 1) % 3;
    for i in 0..20 {
        let zxid = match create(&replicas[l], &format!("/w{i}")).unwrap() {
            OpResult::Create { stat, .. } => stat.czxid as u64,
            other => panic!("{other:?}"),
        };
        let index = replicas[f].shared().read_index().unwrap();
        assert!(
            index >= zxid,
            "read index {index} before the write at {zxid}"
        );
        // Answered once applied here: a local read now sees the write.
        assert!(
            replicas[f].has(&format!("/w{i}")),
            "write {i} missing on the follower"
        );
    }
}

#[test]
fn a_minority_commits_nothing_and_a_majority_goes_on() {
    let (net, _dir, replicas) = ensemble(100_000);
    let old = leader(&replicas) as u64 + 1;
    let others: Vec<u64> = (1..=3).filter(|id| *id != old).collect();
    net.partition(&[&[old], &others]);
    let alone = &replicas[old as usize - 1];
    let refused = create(alone, "/lost");
    assert!(
        // Unknown outcome: the write timed out, or the leader stepped down (check-quorum)
        // with it in flight.
        matches!(refused, Err(Error::Timeout(_) | Error::ConnectionLoss(_))),
        "a leader cut off from the quorum acknowledges nothing: {refused:?}"
    );
    let mut new = None;
    until("a leader in the majority", || {
        new = others
            .iter()
            .find(|id| replicas[**id as usize - 1].shared().role() == Role::Leader)
            .copied();
        new.is_some()
    });
    let new = &replicas[new.unwrap() as usize - 1];
    create(new, "/kept").unwrap();
    net.heal();
    let last = new.shared().applied_index();
    all_applied(&replicas, last);
    until("the old leader to follow", || alone.has("/kept"));
    for r in &replicas {
        assert!(!r.has("/lost"), "an entry the quorum never had was applied");
        assert!(r.has("/kept"));
    }
    until("equal digests", || digests_agree(&replicas));
}

#[test]
fn a_replica_far_behind_is_caught_up_by_a_snapshot_and_its_observer_hears_the_changes() {
    // Compacted every 20 entries, keeping 10: a replica 60 entries behind needs a snapshot.
    let (net, _dir, replicas) = ensemble(20);
    let l = leader(&replicas);
    let behind = (l + 1) % 3;
    net.isolate(behind as u64 + 1);
    for i in 0..60 {
        create(&replicas[l], &format!("/s{i}")).unwrap();
    }
    until("the leader to compact", || {
        replicas[l].shared().metrics().log_compactions > 0
    });
    net.heal();
    let last = replicas[l].shared().applied_index();
    all_applied(&replicas, last);
    let r = &replicas[behind];
    until("the snapshot install", || {
        r.heard.replacements.load(Ordering::SeqCst) > 0
    });
    assert!(r.shared().metrics().snapshots_installed > 0);
    let changes = r.heard.replaced.lock().clone();
    assert!(
        changes
            .iter()
            .any(|e| e.event_type == EventType::NodeCreated && e.path == "/s0"),
        "the replacement's changes name what it created: {changes:?}"
    );
    for i in 0..60 {
        assert!(r.has(&format!("/s{i}")));
    }
    until("equal digests", || digests_agree(&replicas));
}

fn open_session(r: &Replica, timeout_ms: i32) -> i64 {
    match r
        .shared()
        .submit(Op::CreateSession {
            timeout_ms,
            password: vec![7; 16],
            host: r.shared().id(),
        })
        .unwrap()
    {
        OpResult::SessionCreated { session } => session,
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_leader_expires_a_session_nobody_heartbeats_and_keeps_one_its_host_does() {
    let (_net, _dir, replicas) = ensemble(100_000);
    let l = leader(&replicas);
    let host = &replicas[(l + 1) % 3];
    let silent = open_session(host, 600);
    let alive = open_session(host, 600);
    host.heard.hosted.lock().push(alive);
    let expired = format!("closed {silent:#x} expired true");
    until("the silent session's expiry", || {
        host.heard.applied.lock().iter().any(|h| h.1 == expired)
    });
    // Well past its timeout, the heartbeated session (a follower's, through the leader's
    // acknowledgements) lives on.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(host.shared().tree().read().sessions().contains_key(&alive));
    assert!(!host.shared().tree().read().sessions().contains_key(&silent));
    assert!(host.heard.acknowledged.load(Ordering::SeqCst) > 0);
    let everywhere = |r: &Replica| {
        r.heard
            .applied
            .lock()
            .iter()
            .filter(|h| h.1 == expired)
            .count()
    };
    until("the expiry everywhere", || {
        replicas.iter().all(|r| everywhere(r) == 1)
    });
}
