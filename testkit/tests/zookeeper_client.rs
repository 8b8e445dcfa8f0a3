//! zkraft's client port driven by a third-party ZooKeeper client: `zookeeper-client`
//! (kezhuw/zookeeper-client-rust), the async Rust client, against a three-member
//! ensemble over TCP started in this process. Every client gets all three client ports
//! as its connect string, so requests reach the leader and followers alike.
//!
//! Covered: CRUD with versions and the usual errors, stats, sequential and ephemeral
//! znodes, oneshot data / exists / child watches fired by another session, persistent
//! and persistent-recursive watches, multi (transactions) and multi-read, the crate's
//! Curator-compatible lock recipe with contending sessions, ephemerals removed when a
//! session closes, and a session re-attached on another member when its member stops.
//!
//! Departures from ZooKeeper that do not stop the scenario (a failing getACL or multiRead,
//! a notification's zxid) are collected and fail the test at its end, listed together.
//!
//! `ZKC_LOG=debug` (or `info`, ...) prints the members' logs.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use slog::{o, Drain, Logger};
use tempfile::TempDir;
use zkraft::{Node, Pool, Role};
use zookeeper_client as zk;

/// Bound on one client operation (a write goes through raft on three members).
const OP: Duration = Duration::from_secs(10);
/// Bound on a watch notification or an effect seen from another session.
const EVENT: Duration = Duration::from_secs(10);
/// Bound on the whole scenario.
const TOTAL: Duration = Duration::from_secs(240);
const LEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Session timeout the clients ask for (zkraft's default bounds are 4 s – 40 s).
const SESSION_TIMEOUT: Duration = Duration::from_secs(6);

const ANYONE: zk::Acls<'static> = zk::Acls::anyone_all();

fn persistent() -> zk::CreateOptions<'static> {
    zk::CreateMode::Persistent.with_acls(ANYONE)
}
fn persistent_seq() -> zk::CreateOptions<'static> {
    zk::CreateMode::PersistentSequential.with_acls(ANYONE)
}
fn ephemeral() -> zk::CreateOptions<'static> {
    zk::CreateMode::Ephemeral.with_acls(ANYONE)
}
fn ephemeral_seq() -> zk::CreateOptions<'static> {
    zk::CreateMode::EphemeralSequential.with_acls(ANYONE)
}

/// Awaits `f` for at most `limit`; a timeout fails the test naming `what`.
async fn within<F: Future>(limit: Duration, what: &str, f: F) -> F::Output {
    match tokio::time::timeout(limit, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: no answer within {limit:?}"),
    }
}

/// Awaits one client operation (bounded by [`OP`]) and unwraps it.
async fn ok<T, E: std::fmt::Debug>(what: &str, f: impl Future<Output = Result<T, E>>) -> T {
    match within(OP, what, f).await {
        Ok(v) => v,
        Err(e) => panic!("{what}: {e:?}"),
    }
}

/// Awaits one client operation that must fail with `want`.
async fn fails<T: std::fmt::Debug>(
    what: &str,
    want: zk::Error,
    f: impl Future<Output = Result<T, zk::Error>>,
) {
    match within(OP, what, f).await {
        Err(e) if e == want => {}
        other => panic!("{what}: expected Err({want:?}), got {other:?}"),
    }
}

/// Awaits a oneshot watch's event (bounded by [`EVENT`]) and checks its type and path.
async fn expect_event(
    what: &str,
    w: zk::OneshotWatcher,
    ty: zk::EventType,
    path: &str,
) -> zk::WatchedEvent {
    let ev = within(EVENT, what, w.changed()).await;
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (ty, path),
        "{what}: unexpected event {ev:?}"
    );
    ev
}

/// Awaits a persistent watch's next event and checks its type and path.
async fn expect_next(
    what: &str,
    w: &mut zk::PersistentWatcher,
    ty: zk::EventType,
    path: &str,
) -> zk::WatchedEvent {
    let ev = within(EVENT, what, w.changed()).await;
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (ty, path),
        "{what}: unexpected event {ev:?}"
    );
    ev
}

/// A notification that carries a zxid (ZooKeeper 3.9+ does) must carry the one of the
/// transaction that fired it.
/// Recorded, not asserted at once, so that the rest of the scenario still runs: the
/// test fails at its end listing every mismatch.
fn check_event_zxid(what: &str, ev: &zk::WatchedEvent, zxid: i64) {
    if ev.zxid != zk::WatchedEvent::NO_ZXID && ev.zxid != zxid {
        deviation(format!(
            "{what}: the notification's header zxid is {}, the zxid of the transaction that fired it {zxid} ({ev:?})",
            ev.zxid
        ));
    }
}

static DEVIATIONS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Records a departure from ZooKeeper's behaviour that does not stop the scenario.
fn deviation(d: String) {
    eprintln!("DEVIATION: {d}");
    DEVIATIONS.lock().unwrap().push(d);
}

/// Asserts that a persistent watch has nothing more to say for a short while.
async fn expect_quiet(what: &str, w: &mut zk::PersistentWatcher) {
    if let Ok(ev) = tokio::time::timeout(Duration::from_millis(300), w.changed()).await {
        panic!("{what}: unexpected event {ev:?}");
    }
}

// ---------------------------------------------------------------------------------------
// The ensemble

struct Ensemble {
    nodes: Vec<Node>,
    /// Each member's client port, in member order.
    ports: Vec<zkraft::ClientPort>,
    _dirs: Vec<TempDir>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn logger() -> Option<Logger> {
    let level: slog::Level = std::env::var("ZKC_LOG").ok()?.parse().ok()?;
    let decorator = slog_term::PlainSyncDecorator::new(std::io::stderr());
    let drain = slog_term::FullFormat::new(decorator).build().fuse();
    let drain = slog::LevelFilter::new(drain, level).fuse();
    Some(Logger::root(drain, o!()))
}

impl Ensemble {
    fn start() -> Ensemble {
        let members: Vec<(u64, String)> = (1..=3u64)
            .map(|id| (id, format!("127.0.0.1:{}", free_port())))
            .collect();
        // One pool of workers for the three members: this runs on small machines.
        let pool = Pool::new(3).unwrap();
        let log = logger();
        let mut nodes = Vec::new();
        let mut ports = Vec::new();
        let mut dirs = Vec::new();
        for id in 1..=3u64 {
            let dir = tempfile::tempdir().unwrap();
            let mut b = Node::builder(id)
                .members(members.clone())
                .data_dir(dir.path())
                .pool(pool.clone());
            if let Some(log) = &log {
                b = b.logger(log.clone());
            }
            let node = b.start().unwrap_or_else(|e| panic!("member {id}: {e}"));
            ports.push(
                zkraft::ClientPort::builder("127.0.0.1:0".parse().unwrap())
                    .start(&node)
                    .unwrap_or_else(|e| panic!("member {id}'s client port: {e}")),
            );
            nodes.push(node);
            dirs.push(dir);
        }
        let e = Ensemble {
            nodes,
            ports,
            _dirs: dirs,
        };
        e.wait_leader();
        e
    }

    /// Waits until one member leads and all three follow it.
    fn wait_leader(&self) -> u64 {
        let deadline = Instant::now() + LEADER_TIMEOUT;
        loop {
            let leaders: Vec<u64> = self
                .nodes
                .iter()
                .filter(|n| n.role() == Role::Leader)
                .map(|n| n.id())
                .collect();
            if let [l] = leaders[..] {
                if self.nodes.iter().all(|n| n.leader() == Some(l)) {
                    return l;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader within {LEADER_TIMEOUT:?}: roles {:?}, leaders {:?}",
                self.nodes.iter().map(|n| n.role()).collect::<Vec<_>>(),
                self.nodes.iter().map(|n| n.leader()).collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn client_addrs(&self) -> Vec<SocketAddr> {
        self.ports.iter().map(|p| p.local_addr()).collect()
    }

    /// "127.0.0.1:a,127.0.0.1:b,127.0.0.1:c"
    fn connect_string(&self) -> String {
        self.client_addrs()
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    fn shutdown(self) {
        for n in &self.nodes {
            n.shutdown();
        }
    }
}

async fn connect(cluster: &str) -> zk::Client {
    let what = format!("connect to {cluster}");
    let client = ok(
        &what,
        zk::Client::connector()
            .with_session_timeout(SESSION_TIMEOUT)
            .connect(cluster),
    )
    .await;
    assert_eq!(client.state(), zk::SessionState::SyncConnected);
    assert!(
        client.session_timeout() >= Duration::from_secs(4)
            && client.session_timeout() <= SESSION_TIMEOUT,
        "negotiated session timeout {:?}",
        client.session_timeout()
    );
    client
}

/// Waits until `client` sees no znode at `path` (polling, bounded by [`EVENT`]).
async fn wait_gone(client: &zk::Client, path: &str) {
    within(EVENT, &format!("{path} to disappear"), async {
        loop {
            if ok("check_stat", client.check_stat(path)).await.is_none() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

// ---------------------------------------------------------------------------------------
// The test

#[test]
fn zookeeper_client_rust_against_a_three_member_ensemble() {
    let started = Instant::now();
    let ensemble = Ensemble::start();
    eprintln!(
        "ensemble up in {:?}: {}",
        started.elapsed(),
        ensemble.connect_string()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cluster = ensemble.connect_string();
    let addrs = ensemble.client_addrs();
    rt.block_on(async {
        within(TOTAL, "the whole scenario", async {
            let c1 = connect(&cluster).await;
            let c2 = connect(&cluster).await;
            assert_ne!(c1.session_id(), c2.session_id());
            let t = Instant::now();
            crud(&c1, &c2).await;
            eprintln!("crud: {:?}", t.elapsed());
            let t = Instant::now();
            every_member(&addrs).await;
            eprintln!("every member: {:?}", t.elapsed());
            let t = Instant::now();
            oneshot_watches(&c1, &c2).await;
            eprintln!("oneshot watches: {:?}", t.elapsed());
            let t = Instant::now();
            persistent_watches(&c1, &c2).await;
            eprintln!("persistent watches: {:?}", t.elapsed());
            let t = Instant::now();
            multi(&c1, &c2).await;
            eprintln!("multi: {:?}", t.elapsed());
            let t = Instant::now();
            ephemerals_die_with_their_session(&cluster, &c1).await;
            eprintln!("session close: {:?}", t.elapsed());
            let t = Instant::now();
            lock_handover(&cluster, &c1).await;
            eprintln!("lock handover: {:?}", t.elapsed());
            let t = Instant::now();
            lock_contention(&cluster, &c1).await;
            eprintln!("lock contention: {:?}", t.elapsed());
            // Last: it stops a member.
            let t = Instant::now();
            failover(&ensemble, &c1).await;
            eprintln!("failover: {:?}", t.elapsed());
            drop(c2);
            drop(c1);
        })
        .await
    });
    // Let the clients' session closes go out before the members stop.
    rt.shutdown_timeout(Duration::from_secs(2));
    ensemble.shutdown();
    eprintln!("total {:?}", started.elapsed());
    let deviations = DEVIATIONS.lock().unwrap();
    assert!(
        deviations.is_empty(),
        "zkraft departed from ZooKeeper's behaviour:\n{}",
        deviations.join("\n")
    );
}

async fn crud(c1: &zk::Client, c2: &zk::Client) {
    // Persistent create: the stat Create2 returns is the znode's.
    let (stat, seq) = ok("create /crud", c1.create("/crud", b"root", &persistent())).await;
    assert_eq!(seq.into_i64(), -1, "non-sequential create has no sequence");
    assert_eq!(stat.version, 0);
    assert_eq!(stat.cversion, 0);
    assert_eq!(stat.aversion, 0);
    assert_eq!(stat.ephemeral_owner, 0);
    assert_eq!(stat.data_length, 4);
    assert_eq!(stat.num_children, 0);
    assert_eq!(stat.czxid, stat.mzxid);
    assert_eq!(stat.czxid, stat.pzxid);
    assert!(stat.czxid > 0);
    assert!(stat.ctime > 0 && stat.ctime == stat.mtime, "{stat:?}");
    let (data, got) = ok("get_data /crud", c1.get_data("/crud")).await;
    assert_eq!(data, b"root");
    assert_eq!(got, stat, "get_data stat equals create's");
    // Seen from the other session (possibly on another member) after a sync.
    ok("sync", c2.sync("/crud")).await;
    assert_eq!(
        ok("c2 get_data", c2.get_data("/crud")).await,
        (b"root".to_vec(), stat)
    );

    // Errors of create.
    fails(
        "create existing",
        zk::Error::NodeExists,
        c2.create("/crud", b"", &persistent()),
    )
    .await;
    fails(
        "create without parent",
        zk::Error::NoNode,
        c1.create("/crud/none/x", b"", &persistent()),
    )
    .await;
    fails(
        "get_data missing",
        zk::Error::NoNode,
        c1.get_data("/crud/none"),
    )
    .await;
    fails(
        "set_data missing",
        zk::Error::NoNode,
        c1.set_data("/crud/none", b"", None),
    )
    .await;
    fails(
        "delete missing",
        zk::Error::NoNode,
        c1.delete("/crud/none", None),
    )
    .await;
    fails(
        "get_children missing",
        zk::Error::NoNode,
        c1.get_children("/crud/none"),
    )
    .await;
    assert_eq!(
        ok("check_stat missing", c1.check_stat("/crud/none")).await,
        None
    );

    // Empty data.
    let (empty, _) = ok("create empty", c1.create("/crud/empty", b"", &persistent())).await;
    assert_eq!(empty.data_length, 0);
    assert_eq!(
        ok("get empty", c1.get_data("/crud/empty")).await.0,
        Vec::<u8>::new()
    );

    // set_data with versions.
    let (s0, _) = ok("create /crud/v", c1.create("/crud/v", b"v0", &persistent())).await;
    let s1 = ok("set_data v0->v1", c1.set_data("/crud/v", b"v1", Some(0))).await;
    assert_eq!(s1.version, 1);
    assert_eq!(s1.czxid, s0.czxid);
    assert!(s1.mzxid > s0.mzxid);
    assert_eq!(s1.data_length, 2);
    fails(
        "set_data stale version",
        zk::Error::BadVersion,
        c2.set_data("/crud/v", b"x", Some(0)),
    )
    .await;
    fails(
        "set_data future version",
        zk::Error::BadVersion,
        c2.set_data("/crud/v", b"x", Some(7)),
    )
    .await;
    let s2 = ok("set_data any version", c2.set_data("/crud/v", b"v2", None)).await;
    assert_eq!(s2.version, 2);
    let (data, got) = ok("get_data v2", c1.get_data("/crud/v")).await;
    // c1 may be on another member than c2: ZooKeeper only promises c1 sees c2's write
    // after a sync (or eventually); ask for the sync to make the assertion exact.
    let (data, got) = if got.version == 2 {
        (data, got)
    } else {
        ok("sync", c1.sync("/crud/v")).await;
        ok("get_data v2 after sync", c1.get_data("/crud/v")).await
    };
    assert_eq!((data.as_slice(), got), (&b"v2"[..], s2));
    // exists / check_stat
    assert_eq!(ok("check_stat v", c2.check_stat("/crud/v")).await, Some(s2));

    // Sequential persistent znodes: ten digits from the parent's counter, increasing.
    let (_, a) = ok(
        "create seq a",
        c1.create("/crud/seq-", b"a", &persistent_seq()),
    )
    .await;
    let (_, b) = ok(
        "create seq b",
        c2.create("/crud/seq-", b"b", &persistent_seq()),
    )
    .await;
    assert!(b > a, "sequence numbers increase: {a} then {b}");
    let a_path = format!("/crud/seq-{a}");
    let b_path = format!("/crud/seq-{b}");
    assert_eq!(a.to_string().len(), 10);
    assert_eq!(ok("get seq a", c1.get_data(&a_path)).await.0, b"a");
    ok("sync", c1.sync("/crud")).await;
    assert_eq!(ok("get seq b", c1.get_data(&b_path)).await.0, b"b");
    // The counter is the parent's cversion: empty, v, and a were created before b.
    assert_eq!(a.into_i64(), 2, "/crud had 2 children created before seq-a");
    assert_eq!(b.into_i64(), 3);

    // Ephemeral znodes: owned by the session, no children.
    let (es, _) = ok(
        "create ephemeral",
        c1.create("/crud/eph", b"e", &ephemeral()),
    )
    .await;
    assert_eq!(es.ephemeral_owner, c1.session_id().0);
    fails(
        "child of ephemeral",
        zk::Error::NoChildrenForEphemerals,
        c1.create("/crud/eph/child", b"", &persistent()),
    )
    .await;
    let (ess, eseq) = ok(
        "create ephemeral seq",
        c2.create("/crud/eseq-", b"", &ephemeral_seq()),
    )
    .await;
    assert_eq!(ess.ephemeral_owner, c2.session_id().0);
    assert_eq!(eseq.into_i64(), 5);
    let mut mine = ok("list_ephemerals c1", c1.list_ephemerals("/crud")).await;
    mine.sort();
    assert_eq!(mine, vec!["/crud/eph".to_string()]);

    // Children (after a sync: c2 wrote one of them, maybe through another member).
    ok("sync", c1.sync("/crud")).await;
    let (mut children, parent) = ok("get_children /crud", c1.get_children("/crud")).await;
    children.sort();
    let eseq_name = format!("eseq-{eseq}");
    let mut want = vec![
        "empty".to_string(),
        "eph".to_string(),
        eseq_name.clone(),
        format!("seq-{a}"),
        format!("seq-{b}"),
        "v".to_string(),
    ];
    want.sort();
    assert_eq!(children, want);
    assert_eq!(parent.num_children, 6);
    assert_eq!(parent.cversion, 6);
    assert_eq!(parent.version, 0);
    let mut listed = ok("list_children /crud", c2.list_children("/crud")).await;
    listed.sort();
    assert_eq!(listed, want);
    assert_eq!(
        ok("count descendants", c1.count_descendants_number("/crud")).await,
        6
    );

    // ACL as created: world:anyone with every permission.
    match within(OP, "get_acl", c1.get_acl("/crud")).await {
        Ok((acl, stat)) => {
            assert_eq!(acl.len(), 1, "{acl:?}");
            assert_eq!((acl[0].scheme(), acl[0].id()), ("world", "anyone"));
            assert_eq!(acl[0].permission(), zk::Permission::ALL);
            assert_eq!(stat.aversion, 0);
        }
        Err(e) => deviation(format!(
            "getACL /crud (created with world:anyone ALL) failed with {e:?}: ZooKeeper answers \
             [world:anyone perms=31] and the stat"
        )),
    }

    // delete with versions; non-empty parent.
    fails(
        "delete non-empty",
        zk::Error::NotEmpty,
        c1.delete("/crud", None),
    )
    .await;
    fails(
        "delete stale version",
        zk::Error::BadVersion,
        c1.delete("/crud/v", Some(1)),
    )
    .await;
    ok("delete with version", c1.delete("/crud/v", Some(2))).await;
    fails(
        "delete twice",
        zk::Error::NoNode,
        c2.delete("/crud/v", Some(2)),
    )
    .await;
    assert_eq!(
        ok("check_stat deleted", c1.check_stat("/crud/v")).await,
        None
    );
    let (_, after) = ok("get_children after delete", c1.get_children("/crud")).await;
    assert_eq!(after.num_children, 5);
    assert_eq!(after.cversion, 7, "cversion counts deletions too");
    assert!(after.pzxid > parent.pzxid);
    for p in [a_path.as_str(), b_path.as_str(), "/crud/empty", "/crud/eph"] {
        ok(&format!("delete {p}"), c1.delete(p, None)).await;
    }
    ok(
        "delete eseq",
        c2.delete(&format!("/crud/{eseq_name}"), Some(0)),
    )
    .await;
    ok("delete /crud", c1.delete("/crud", Some(0))).await;
}

/// A client bound to each member alone: writes through any member are seen through every
/// other after a sync.
async fn every_member(addrs: &[SocketAddr]) {
    let mut clients = Vec::new();
    for a in addrs {
        clients.push(connect(&a.to_string()).await);
    }
    ok(
        "create /members",
        clients[0].create("/members", b"", &persistent()),
    )
    .await;
    for (i, c) in clients.iter().enumerate() {
        ok("sync", c.sync("/members")).await;
        ok(
            &format!("create via member {}", i + 1),
            c.create(
                &format!("/members/m{}", i + 1),
                format!("{i}").as_bytes(),
                &ephemeral(),
            ),
        )
        .await;
    }
    for (i, c) in clients.iter().enumerate() {
        ok("sync", c.sync("/members")).await;
        let mut children = ok(
            &format!("children via member {}", i + 1),
            c.list_children("/members"),
        )
        .await;
        children.sort();
        assert_eq!(children, ["m1", "m2", "m3"], "via member {}", i + 1);
        for (j, other) in clients.iter().enumerate() {
            let (_, stat) = ok("get", c.get_data(&format!("/members/m{}", j + 1))).await;
            assert_eq!(stat.ephemeral_owner, other.session_id().0);
        }
    }
    // Sessions on three members close; their ephemerals go with them.
    let observer = clients.remove(0);
    drop(clients);
    wait_gone(&observer, "/members/m2").await;
    wait_gone(&observer, "/members/m3").await;
    ok("delete m1", observer.delete("/members/m1", None)).await;
    ok("delete /members", observer.delete("/members", None)).await;
}

async fn oneshot_watches(c1: &zk::Client, c2: &zk::Client) {
    ok("create /w", c1.create("/w", b"0", &persistent())).await;

    // Data watch fired by another session's set_data.
    let (data, _, w) = ok("get_and_watch_data", c1.get_and_watch_data("/w")).await;
    assert_eq!(data, b"0");
    let s = ok("c2 set_data", c2.set_data("/w", b"1", Some(0))).await;
    let ev = expect_event("data watch", w, zk::EventType::NodeDataChanged, "/w").await;
    check_event_zxid("data watch", &ev, s.mzxid);
    // After the notification the change is visible to the watcher (ZooKeeper's ordering
    // guarantee: a client sees the event before it sees the new data, never after).
    let (data, stat) = ok("get after event", c1.get_data("/w")).await;
    assert_eq!((data.as_slice(), stat.version), (&b"1"[..], 1));

    // A oneshot watch fires once: a second change after re-arming fires the new watch only.
    let (_, _, w) = ok("get_and_watch_data again", c1.get_and_watch_data("/w")).await;
    ok("c2 set_data", c2.set_data("/w", b"2", None)).await;
    expect_event(
        "re-armed data watch",
        w,
        zk::EventType::NodeDataChanged,
        "/w",
    )
    .await;

    // Exists watch on a missing znode fires NodeCreated.
    let (stat, w) = ok(
        "check_and_watch_stat missing",
        c1.check_and_watch_stat("/w/new"),
    )
    .await;
    assert_eq!(stat, None);
    let (cs, _) = ok("c2 create /w/new", c2.create("/w/new", b"n", &persistent())).await;
    let ev = expect_event("exists watch", w, zk::EventType::NodeCreated, "/w/new").await;
    check_event_zxid("exists watch", &ev, cs.czxid);
    assert_eq!(
        ok("check_stat after event", c1.check_stat("/w/new")).await,
        Some(cs)
    );

    // Exists watch on an existing znode fires on change.
    let (stat, w) = ok(
        "check_and_watch_stat existing",
        c1.check_and_watch_stat("/w/new"),
    )
    .await;
    assert_eq!(stat, Some(cs));
    ok("c2 set /w/new", c2.set_data("/w/new", b"m", Some(0))).await;
    expect_event(
        "exists watch (data)",
        w,
        zk::EventType::NodeDataChanged,
        "/w/new",
    )
    .await;

    // Child watch: a child created by another session.
    let (children, _, w) = ok("get_and_watch_children", c1.get_and_watch_children("/w")).await;
    assert_eq!(children, ["new"]);
    let (ks, _) = ok("c2 create child", c2.create("/w/kid", b"", &persistent())).await;
    let ev = expect_event(
        "child watch (create)",
        w,
        zk::EventType::NodeChildrenChanged,
        "/w",
    )
    .await;
    check_event_zxid("child watch", &ev, ks.czxid);
    let (children, w) = ok("list_and_watch_children", c1.list_and_watch_children("/w")).await;
    let mut children = children;
    children.sort();
    assert_eq!(children, ["kid", "new"]);
    ok("c2 delete child", c2.delete("/w/kid", None)).await;
    expect_event(
        "child watch (delete)",
        w,
        zk::EventType::NodeChildrenChanged,
        "/w",
    )
    .await;
    // A data change of the parent does not fire a child watch; a child change does.
    let (_, _, w) = ok("get_and_watch_children", c1.get_and_watch_children("/w")).await;
    ok("c2 set /w", c2.set_data("/w", b"3", None)).await;
    ok(
        "c2 create child 2",
        c2.create("/w/kid2", b"", &persistent()),
    )
    .await;
    expect_event(
        "child watch after parent data change",
        w,
        zk::EventType::NodeChildrenChanged,
        "/w",
    )
    .await;

    // Data watch fired by deletion; child watch on the deleted znode too.
    let (_, _, wd) = ok("watch data /w/new", c1.get_and_watch_data("/w/new")).await;
    let (_, _, wc) = ok("watch children /w/new", c1.get_and_watch_children("/w/new")).await;
    let (_, we) = ok("watch exists /w/new", c1.check_and_watch_stat("/w/new")).await;
    ok("c2 delete /w/new", c2.delete("/w/new", None)).await;
    expect_event(
        "data watch (delete)",
        wd,
        zk::EventType::NodeDeleted,
        "/w/new",
    )
    .await;
    expect_event(
        "child watch (delete self)",
        wc,
        zk::EventType::NodeDeleted,
        "/w/new",
    )
    .await;
    expect_event(
        "exists watch (delete)",
        we,
        zk::EventType::NodeDeleted,
        "/w/new",
    )
    .await;

    // The watching session's own write fires its watch too.
    let (_, _, w) = ok("watch data /w", c1.get_and_watch_data("/w")).await;
    ok("c1 set /w", c1.set_data("/w", b"self", None)).await;
    expect_event("own write", w, zk::EventType::NodeDataChanged, "/w").await;

    ok("delete /w/kid2", c1.delete("/w/kid2", None)).await;
    ok("delete /w", c1.delete("/w", None)).await;
}

async fn persistent_watches(c1: &zk::Client, c2: &zk::Client) {
    ok("create /pw", c1.create("/pw", b"", &persistent())).await;

    // Persistent (non-recursive): data and child changes of the node, again and again.
    let mut w = ok(
        "watch Persistent /pw",
        c1.watch("/pw", zk::AddWatchMode::Persistent),
    )
    .await;
    ok("c2 set /pw", c2.set_data("/pw", b"1", None)).await;
    expect_next(
        "persistent data 1",
        &mut w,
        zk::EventType::NodeDataChanged,
        "/pw",
    )
    .await;
    ok("c2 set /pw", c2.set_data("/pw", b"2", None)).await;
    expect_next(
        "persistent data 2",
        &mut w,
        zk::EventType::NodeDataChanged,
        "/pw",
    )
    .await;
    ok("c2 create /pw/a", c2.create("/pw/a", b"", &persistent())).await;
    expect_next(
        "persistent child",
        &mut w,
        zk::EventType::NodeChildrenChanged,
        "/pw",
    )
    .await;
    // A grandchild is not the node's business.
    ok(
        "c2 create /pw/a/b",
        c2.create("/pw/a/b", b"", &persistent()),
    )
    .await;
    ok("c2 set /pw/a", c2.set_data("/pw/a", b"x", None)).await;
    expect_quiet("persistent watch, grandchild and child data", &mut w).await;
    drop(w);
    ok("delete /pw/a/b", c1.delete("/pw/a/b", None)).await;
    ok("delete /pw/a", c1.delete("/pw/a", None)).await;

    // Persistent recursive on a path that does not exist yet: every node event of the
    // subtree, in order, and no NodeChildrenChanged.
    let mut w = ok(
        "watch PersistentRecursive /pw/r",
        c1.watch("/pw/r", zk::AddWatchMode::PersistentRecursive),
    )
    .await;
    let (s, _) = ok("c2 create /pw/r", c2.create("/pw/r", b"", &persistent())).await;
    let ev = expect_next(
        "recursive create root",
        &mut w,
        zk::EventType::NodeCreated,
        "/pw/r",
    )
    .await;
    check_event_zxid("recursive create root", &ev, s.czxid);
    ok(
        "c2 create /pw/r/a",
        c2.create("/pw/r/a", b"", &persistent()),
    )
    .await;
    expect_next(
        "recursive create child",
        &mut w,
        zk::EventType::NodeCreated,
        "/pw/r/a",
    )
    .await;
    let s = ok("c2 set /pw/r/a", c2.set_data("/pw/r/a", b"x", None)).await;
    let ev = expect_next(
        "recursive data child",
        &mut w,
        zk::EventType::NodeDataChanged,
        "/pw/r/a",
    )
    .await;
    check_event_zxid("recursive data child", &ev, s.mzxid);
    ok(
        "c2 create /pw/r/a/b",
        c2.create("/pw/r/a/b", b"", &persistent()),
    )
    .await;
    expect_next(
        "recursive create grandchild",
        &mut w,
        zk::EventType::NodeCreated,
        "/pw/r/a/b",
    )
    .await;
    ok("c2 delete /pw/r/a/b", c2.delete("/pw/r/a/b", None)).await;
    expect_next(
        "recursive delete grandchild",
        &mut w,
        zk::EventType::NodeDeleted,
        "/pw/r/a/b",
    )
    .await;
    // Outside the subtree: nothing ("/pw/rx" shares the prefix, not the subtree).
    ok("c2 create /pw/rx", c2.create("/pw/rx", b"", &persistent())).await;
    ok("c2 set /pw", c2.set_data("/pw", b"3", None)).await;
    expect_quiet("recursive watch, outside the subtree", &mut w).await;
    // A multi fires one event per op, in op order.
    let mut m = c2.new_multi_writer();
    m.add_create("/pw/r/m1", b"", &persistent()).unwrap();
    m.add_set_data("/pw/r/a", b"y", None).unwrap();
    m.add_delete("/pw/r/m1", None).unwrap();
    ok("c2 multi in /pw/r", m.commit()).await;
    expect_next(
        "recursive multi 1",
        &mut w,
        zk::EventType::NodeCreated,
        "/pw/r/m1",
    )
    .await;
    expect_next(
        "recursive multi 2",
        &mut w,
        zk::EventType::NodeDataChanged,
        "/pw/r/a",
    )
    .await;
    expect_next(
        "recursive multi 3",
        &mut w,
        zk::EventType::NodeDeleted,
        "/pw/r/m1",
    )
    .await;
    ok("c2 delete /pw/r/a", c2.delete("/pw/r/a", None)).await;
    expect_next(
        "recursive delete child",
        &mut w,
        zk::EventType::NodeDeleted,
        "/pw/r/a",
    )
    .await;
    ok("c2 delete /pw/r", c2.delete("/pw/r", None)).await;
    expect_next(
        "recursive delete root",
        &mut w,
        zk::EventType::NodeDeleted,
        "/pw/r",
    )
    .await;
    expect_quiet("recursive watch, after all", &mut w).await;
    drop(w);
    ok("delete /pw/rx", c1.delete("/pw/rx", None)).await;
    ok("delete /pw", c1.delete("/pw", None)).await;
}

async fn multi(c1: &zk::Client, c2: &zk::Client) {
    ok("create /tx", c1.create("/tx", b"", &persistent())).await;
    ok("create /tx/v", c1.create("/tx/v", b"0", &persistent())).await;

    // A successful transaction: check, create, set, create sequential, delete.
    let mut m = c1.new_multi_writer();
    m.add_check_version("/tx/v", 0).unwrap();
    m.add_create("/tx/a", b"a", &persistent()).unwrap();
    m.add_set_data("/tx/v", b"1", Some(0)).unwrap();
    m.add_create("/tx/s-", b"s", &persistent_seq()).unwrap();
    m.add_create("/tx/gone", b"", &persistent()).unwrap();
    m.add_delete("/tx/gone", Some(0)).unwrap();
    let results = ok("multi commit", m.commit()).await;
    assert_eq!(results.len(), 6, "{results:?}");
    assert_eq!(results[0], zk::MultiWriteResult::Check);
    let zk::MultiWriteResult::Create { path, stat: a_stat } = &results[1] else {
        panic!("{results:?}")
    };
    assert_eq!(path, "/tx/a");
    let zk::MultiWriteResult::SetData { stat: v_stat } = &results[2] else {
        panic!("{results:?}")
    };
    assert_eq!(v_stat.version, 1);
    let zk::MultiWriteResult::Create { path: s_path, .. } = &results[3] else {
        panic!("{results:?}")
    };
    assert_eq!(
        s_path, "/tx/s-0000000002",
        "sequence from /tx's cversion (v, a before)"
    );
    assert_eq!(results[5], zk::MultiWriteResult::Delete);
    // One transaction: one zxid for every op.
    if !a_stat.is_invalid() {
        assert_eq!(a_stat.czxid, v_stat.mzxid, "ops of one multi share a zxid");
    }
    ok("sync", c2.sync("/tx")).await;
    assert_eq!(ok("get /tx/a", c2.get_data("/tx/a")).await.0, b"a");
    assert_eq!(
        ok("get /tx/v", c2.get_data("/tx/v")).await,
        (b"1".to_vec(), *v_stat)
    );
    assert_eq!(ok("check /tx/gone", c2.check_stat("/tx/gone")).await, None);

    // A failing transaction: nothing applies; the failing op's index and error come back.
    let mut m = c2.new_multi_writer();
    m.add_create("/tx/b", b"", &persistent()).unwrap();
    m.add_set_data("/tx/v", b"2", Some(1)).unwrap();
    m.add_check_version("/tx/v", 0).unwrap(); // stale: the set above made it 2
    m.add_delete("/tx/a", None).unwrap();
    match within(OP, "failing multi", m.commit()).await {
        Err(zk::MultiWriteError::OperationFailed {
            index: 2,
            source: zk::Error::BadVersion,
        }) => {}
        other => panic!("failing multi: expected op 2 to fail with BadVersion, got {other:?}"),
    }
    assert_eq!(
        ok("check /tx/b", c2.check_stat("/tx/b")).await,
        None,
        "rolled back"
    );
    assert_eq!(
        ok("get /tx/v", c2.get_data("/tx/v")).await.0,
        b"1",
        "rolled back"
    );
    assert!(
        ok("check /tx/a", c2.check_stat("/tx/a")).await.is_some(),
        "rolled back"
    );

    let mut m = c2.new_multi_writer();
    m.add_create("/tx/a", b"", &persistent()).unwrap();
    match within(OP, "multi create existing", m.commit()).await {
        Err(zk::MultiWriteError::OperationFailed {
            index: 0,
            source: zk::Error::NodeExists,
        }) => {}
        other => panic!("multi create existing: expected NodeExists at 0, got {other:?}"),
    }
    let mut m = c2.new_multi_writer();
    m.add_delete("/tx/a", None).unwrap();
    m.add_delete("/tx/nope", None).unwrap();
    match within(OP, "multi delete missing", m.commit()).await {
        Err(zk::MultiWriteError::OperationFailed {
            index: 1,
            source: zk::Error::NoNode,
        }) => {}
        other => panic!("multi delete missing: expected NoNode at 1, got {other:?}"),
    }

    // CheckWriter: a guarded write.
    let mut cw = ok("check writer", async {
        c1.new_check_writer("/tx/v", Some(1))
    })
    .await;
    cw.add_set_data("/tx/v", b"guarded", None).unwrap();
    let r = ok("check writer commit", cw.commit()).await;
    assert!(
        matches!(r[..], [zk::MultiWriteResult::SetData { stat }] if stat.version == 2),
        "{r:?}"
    );
    let mut cw = ok("check writer", async {
        c1.new_check_writer("/tx/v", Some(1))
    })
    .await;
    cw.add_set_data("/tx/v", b"stale", None).unwrap();
    match within(OP, "stale check writer", cw.commit()).await {
        Err(zk::CheckWriteError::CheckFailed {
            source: zk::Error::BadVersion,
        }) => {}
        other => panic!("stale check writer: expected CheckFailed(BadVersion), got {other:?}"),
    }

    // Multi-read: a consistent read of several znodes, errors per op.
    let mut r = c2.new_multi_reader();
    r.add_get_data("/tx/v").unwrap();
    r.add_get_children("/tx").unwrap();
    r.add_get_data("/tx/nope").unwrap();
    ok("sync", c2.sync("/tx")).await;
    match within(OP, "multi read", r.commit()).await {
        Ok(results) => check_multi_read(&results),
        // The client reconnects (to another member, same session) and goes on.
        Err(e) => deviation(format!(
            "multiRead [getData /tx/v, getChildren /tx, getData /tx/nope] failed with {e:?}: \
             ZooKeeper answers each op (data+stat, children, NoNode)"
        )),
    }

    for p in ["/tx/a", "/tx/s-0000000002", "/tx/v", "/tx"] {
        ok(&format!("delete {p}"), c1.delete(p, None)).await;
    }
}

fn check_multi_read(results: &[zk::MultiReadResult]) {
    assert_eq!(results.len(), 3, "{results:?}");
    match &results[0] {
        zk::MultiReadResult::Data { data, stat } => {
            assert_eq!(data, b"guarded");
            assert_eq!(stat.version, 2);
        }
        other => panic!("multi read 0: {other:?}"),
    }
    match &results[1] {
        zk::MultiReadResult::Children { children } => {
            let mut children = children.clone();
            children.sort();
            assert_eq!(children, ["a", "s-0000000002", "v"]);
        }
        other => panic!("multi read 1: {other:?}"),
    }
    match &results[2] {
        zk::MultiReadResult::Error {
            err: zk::Error::NoNode,
        } => {}
        other => panic!("multi read 2: {other:?}"),
    }
}

async fn ephemerals_die_with_their_session(cluster: &str, observer: &zk::Client) {
    ok("create /eph", observer.create("/eph", b"", &persistent())).await;
    let doomed = connect(cluster).await;
    let (s, _) = ok("create /eph/e", doomed.create("/eph/e", b"", &ephemeral())).await;
    assert_eq!(s.ephemeral_owner, doomed.session_id().0);
    let (_, seq) = ok(
        "create /eph/s-",
        doomed.create("/eph/s-", b"", &ephemeral_seq()),
    )
    .await;
    let seq_path = format!("/eph/s-{seq}");
    ok("sync", observer.sync("/eph")).await;
    let (stat, w) = ok("watch /eph/e", observer.check_and_watch_stat("/eph/e")).await;
    assert_eq!(stat.map(|s| s.ephemeral_owner), Some(doomed.session_id().0));
    let (_, _, wc) = ok(
        "watch /eph children",
        observer.get_and_watch_children("/eph"),
    )
    .await;
    // The session lives on while its client is connected: a write by the observer leaves
    // the ephemerals be.
    ok("observer write", observer.set_data("/eph", b"x", None)).await;
    assert!(ok("check /eph/e", observer.check_stat("/eph/e"))
        .await
        .is_some());

    // Dropping the last handle closes the session (CloseSession): its ephemerals go,
    // promptly — not after the session timeout.
    let closed_at = Instant::now();
    drop(doomed);
    expect_event(
        "ephemeral deleted at session close",
        w,
        zk::EventType::NodeDeleted,
        "/eph/e",
    )
    .await;
    expect_event(
        "children of /eph at session close",
        wc,
        zk::EventType::NodeChildrenChanged,
        "/eph",
    )
    .await;
    wait_gone(observer, &seq_path).await;
    let took = closed_at.elapsed();
    eprintln!("ephemerals gone {took:?} after the session closed");
    assert!(
        took < SESSION_TIMEOUT,
        "ephemerals were removed after {took:?}: by expiry, not by the session close"
    );
    assert_eq!(
        ok("children /eph", observer.list_children("/eph")).await,
        Vec::<String>::new()
    );
    ok("delete /eph", observer.delete("/eph", None)).await;
}

fn lock_options() -> zk::LockOptions<'static> {
    zk::LockOptions::new(ANYONE)
        .with_ancestor_options(persistent())
        .unwrap()
}

/// Two sessions contend for the crate's (Curator-compatible) lock: the second waits
/// while the first holds it, and gets it when the first releases; then again when the
/// holder's session closes without releasing.
async fn lock_handover(cluster: &str, observer: &zk::Client) {
    let first = connect(cluster).await;
    let second = connect(cluster).await;
    let held = ok(
        "first locks",
        first.lock(
            zk::LockPrefix::new_curator("/locks/handover", "lock-").unwrap(),
            b"1",
            lock_options(),
        ),
    )
    .await;
    let first_path = held.lock_path().to_string();
    assert!(
        first_path.starts_with("/locks/handover/_c_"),
        "{first_path}"
    );
    let (_, st) = ok("get first lock", first.get_data(&first_path)).await;
    assert_eq!(st.ephemeral_owner, first.session_id().0);

    let (tx, mut rx) = tokio::sync::oneshot::channel::<String>();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let second_task = {
        let second = second.clone();
        tokio::spawn(async move {
            let lock = second
                .lock(
                    zk::LockPrefix::new_curator("/locks/handover", "lock-").unwrap(),
                    b"2",
                    lock_options(),
                )
                .await
                .expect("second locks");
            tx.send(lock.lock_path().to_string()).unwrap();
            let _ = release_rx.await;
            drop(lock);
        })
    };
    // The second contender queues behind the first.
    within(EVENT, "second contender's lock znode", async {
        loop {
            if ok(
                "list /locks/handover",
                observer.list_children("/locks/handover"),
            )
            .await
            .len()
                == 2
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        rx.try_recv().is_err(),
        "second got the lock while the first holds it"
    );
    // The holder uses the lock: a write guarded by its lock znode.
    ok(
        "guarded write",
        held.create("/locks/handover-owner", b"first", &persistent()),
    )
    .await;

    let released_at = Instant::now();
    drop(held); // deletes the lock znode in the background
    let second_path = within(EVENT, "second gets the lock after release", &mut rx)
        .await
        .unwrap();
    eprintln!("lock handed over {:?} after release", released_at.elapsed());
    assert_ne!(second_path, first_path);
    ok("sync", observer.sync(&first_path)).await;
    assert_eq!(
        ok("first lock gone", observer.check_stat(&first_path)).await,
        None
    );
    release_tx.send(()).unwrap();
    within(EVENT, "second task", second_task).await.unwrap();
    wait_gone(observer, &second_path).await;

    // Handover by session close: the holder never releases.
    let held = ok(
        "first locks again",
        first.lock(
            zk::LockPrefix::new_curator("/locks/handover", "lock-").unwrap(),
            b"1",
            lock_options(),
        ),
    )
    .await;
    let first_path = held.lock_path().to_string();
    let (tx, rx) = tokio::sync::oneshot::channel::<String>();
    let second_task = {
        let second = second.clone();
        tokio::spawn(async move {
            let lock = second
                .lock(
                    zk::LockPrefix::new_curator("/locks/handover", "lock-").unwrap(),
                    b"2",
                    lock_options(),
                )
                .await
                .expect("second locks");
            tx.send(lock.lock_path().to_string()).unwrap();
            drop(lock);
        })
    };
    within(EVENT, "second contender queued", async {
        loop {
            if ok("list", observer.list_children("/locks/handover"))
                .await
                .len()
                == 2
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    std::mem::forget(held); // no release: only the session close can free it
    let closed_at = Instant::now();
    drop(first);
    let second_path = within(
        EVENT,
        "second gets the lock after the holder's session closed",
        rx,
    )
    .await
    .unwrap();
    eprintln!(
        "lock handed over {:?} after the holder's session closed",
        closed_at.elapsed()
    );
    assert_ne!(second_path, first_path);
    within(EVENT, "second task", second_task).await.unwrap();
    drop(second);
    ok(
        "delete owner",
        observer.delete("/locks/handover-owner", None),
    )
    .await;
    wait_gone(observer, &second_path).await;
    ok(
        "delete /locks/handover",
        observer.delete("/locks/handover", None),
    )
    .await;
}

/// Three sessions take the lock in turns, several times each: never two holders at once,
/// and a read-modify-write counter guarded by the lock loses no increment.
async fn lock_contention(cluster: &str, observer: &zk::Client) {
    const CONTENDERS: usize = 3;
    const ROUNDS: usize = 3;
    ok(
        "create counter",
        observer.create("/locks/counter", b"0", &persistent()),
    )
    .await;
    let holders = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..CONTENDERS {
        let client = connect(cluster).await;
        let holders = holders.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..ROUNDS {
                let what = format!("contender {i} round {round}");
                let lock = within(
                    Duration::from_secs(60),
                    &what,
                    client.lock(
                        zk::LockPrefix::new_curator("/locks/mutex", "lock-").unwrap(),
                        b"",
                        lock_options(),
                    ),
                )
                .await
                .unwrap_or_else(|e| panic!("{what}: {e:?}"));
                let before = holders.fetch_add(1, Ordering::SeqCst);
                assert_eq!(before, 0, "{what}: another session holds the lock too");
                // Read-modify-write without a version: only the lock keeps it correct.
                // Read after a sync: the previous holder may have written via another member.
                ok("sync", client.sync("/locks/counter")).await;
                let (data, _) = ok("read counter", client.get_data("/locks/counter")).await;
                let n: u64 = std::str::from_utf8(&data).unwrap().parse().unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
                ok(
                    "write counter",
                    lock.set_data(
                        "/locks/counter",
                        n.wrapping_add(1).to_string().as_bytes(),
                        None,
                    ),
                )
                .await;
                holders.fetch_sub(1, Ordering::SeqCst);
                // Release and wait until the lock znode is gone, so the next holder's
                // writes cannot overlap this one's.
                let path = lock.lock_path().to_string();
                drop(lock);
                wait_gone(&client, &path).await;
            }
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        within(Duration::from_secs(120), &format!("contender {i}"), t)
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    }
    ok("sync", observer.sync("/locks/counter")).await;
    let (data, stat) = ok("final counter", observer.get_data("/locks/counter")).await;
    assert_eq!(data, (CONTENDERS * ROUNDS).to_string().as_bytes());
    assert_eq!(stat.version as usize, CONTENDERS * ROUNDS);
    wait_until_empty(observer, "/locks/mutex").await;
    ok("delete /locks/mutex", observer.delete("/locks/mutex", None)).await;
    ok("delete counter", observer.delete("/locks/counter", None)).await;
    ok("delete /locks", observer.delete("/locks", None)).await;
}

async fn wait_until_empty(client: &zk::Client, path: &str) {
    within(EVENT, &format!("{path} to empty"), async {
        loop {
            if ok("list", client.list_children(path)).await.is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

/// The member hosting a session stops: the client re-attaches its session on another
/// member of its connect string; its ephemeral stays, and its watches (re-registered
/// with setWatches) fire for changes made meanwhile by a session on the other members.
async fn failover(ensemble: &Ensemble, c1: &zk::Client) {
    ok("create /fo", c1.create("/fo", b"", &persistent())).await;
    ok("create /fo/d", c1.create("/fo/d", b"0", &persistent())).await;
    // Which member hosts a new session: the one whose count of hosted sessions grows when
    // it connects (sessions of the earlier phases may still be closing: wait for the
    // counts to settle, and try again if they moved meanwhile).
    let hosted = || -> Vec<usize> { ensemble.nodes.iter().map(|n| n.hosted_sessions()).collect() };
    let mut attempt = 0;
    let (fo, host) = loop {
        attempt += 1;
        assert!(
            attempt <= 5,
            "could not tell which member hosts a new session"
        );
        let mut before = hosted();
        within(EVENT, "hosted session counts to settle", async {
            let mut stable = 0;
            while stable < 5 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let now = hosted();
                stable = if now == before { stable + 1 } else { 0 };
                before = now;
            }
        })
        .await;
        let fo = connect(&ensemble.connect_string()).await;
        let found = tokio::time::timeout(Duration::from_secs(2), async {
            loop {
                let now = hosted();
                let grown: Vec<usize> = (0..now.len()).filter(|&i| now[i] > before[i]).collect();
                if let [i] = grown[..] {
                    if now.iter().sum::<usize>() == before.iter().sum::<usize>() + 1 {
                        return i;
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        match found {
            Ok(host) => break (fo, host),
            Err(_) => drop(fo),
        }
    };
    let others: Vec<usize> = (0..ensemble.nodes.len()).filter(|&i| i != host).collect();
    let other_cluster = others
        .iter()
        .map(|&i| ensemble.ports[i].local_addr().to_string())
        .collect::<Vec<_>>()
        .join(",");
    let other = connect(&other_cluster).await;

    let sid = fo.session_id();
    let (es, _) = ok(
        "fo creates an ephemeral",
        fo.create("/fo/e", b"", &ephemeral()),
    )
    .await;
    assert_eq!(es.ephemeral_owner, sid.0);
    let (_, _, wd) = ok("fo watches /fo/d", fo.get_and_watch_data("/fo/d")).await;
    let (_, wc) = ok(
        "fo watches /fo's children",
        fo.list_and_watch_children("/fo"),
    )
    .await;
    let (none, wx) = ok("fo watches /fo/x exist", fo.check_and_watch_stat("/fo/x")).await;
    assert_eq!(none, None);
    // No persistent watch across the failover: zookeeper-client 0.11.2 does not re-register
    // persistent watches on reconnection (`WatchManager::resend_watches` computes
    // `index = index.max(index)`, so it always sends setWatches (101) with the three
    // oneshot lists and never setWatches2 (105)). With that line fixed, zkraft restores a
    // recursive watch through setWatches2 and reports the events missed meanwhile.
    let mut states = fo.state_watcher();

    let host_id = ensemble.nodes[host].id();
    eprintln!(
        "stopping member {host_id}, which hosts session {:#x} (leader: {:?})",
        sid.0,
        ensemble.nodes[host].leader()
    );
    ensemble.nodes[host].shutdown();
    // The other two keep (or elect) a leader.
    within(LEADER_TIMEOUT, "a leader among the two left", async {
        loop {
            let leaders: Vec<u64> = others
                .iter()
                .map(|&i| &ensemble.nodes[i])
                .filter(|n| n.role() == Role::Leader)
                .map(|n| n.id())
                .collect();
            if let [l] = leaders[..] {
                if others
                    .iter()
                    .all(|&i| ensemble.nodes[i].leader() == Some(l))
                {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;

    // Changes while fo's client is away (or re-attaching).
    let ds = ok("other sets /fo/d", other.set_data("/fo/d", b"1", None)).await;
    let (xs, _) = ok(
        "other creates /fo/x",
        other.create("/fo/x", b"", &persistent()),
    )
    .await;
    ok(
        "other creates /fo/p",
        other.create("/fo/p", b"", &persistent()),
    )
    .await;

    let failover_limit = SESSION_TIMEOUT + Duration::from_secs(4);
    let ev = expect_event_within(
        failover_limit,
        "data watch across failover",
        wd,
        zk::EventType::NodeDataChanged,
        "/fo/d",
    )
    .await;
    check_event_zxid("data watch across failover", &ev, ds.mzxid);
    let ev = expect_event_within(
        failover_limit,
        "exists watch across failover",
        wx,
        zk::EventType::NodeCreated,
        "/fo/x",
    )
    .await;
    check_event_zxid("exists watch across failover", &ev, xs.czxid);
    expect_event_within(
        failover_limit,
        "child watch across failover",
        wc,
        zk::EventType::NodeChildrenChanged,
        "/fo",
    )
    .await;
    within(failover_limit, "fo's client reconnected", async {
        loop {
            match states.changed().await {
                zk::SessionState::SyncConnected => return,
                s if s.is_terminated() => panic!("fo's session ended: {s:?}"),
                _ => {}
            }
        }
    })
    .await;
    // Same session, its ephemeral intact.
    assert_eq!(fo.session_id(), sid);
    ok("sync", fo.sync("/fo")).await;
    let (_, st) = ok("fo's ephemeral after failover", fo.get_data("/fo/e")).await;
    assert_eq!(st.ephemeral_owner, sid.0);
    assert_eq!(ok("fo reads /fo/d", fo.get_data("/fo/d")).await.0, b"1");
    // A persistent recursive watch added on the member that hosts the session now.
    let mut wp = ok(
        "fo watches /fo/p recursively",
        fo.watch("/fo/p", zk::AddWatchMode::PersistentRecursive),
    )
    .await;
    let ps = ok("other sets /fo/p", other.set_data("/fo/p", b"2", None)).await;
    let ev = expect_next(
        "recursive watch after failover",
        &mut wp,
        zk::EventType::NodeDataChanged,
        "/fo/p",
    )
    .await;
    check_event_zxid("recursive watch after failover", &ev, ps.mzxid);
    let (qs, _) = ok(
        "other creates /fo/p/q",
        other.create("/fo/p/q", b"", &ephemeral()),
    )
    .await;
    let ev = expect_next(
        "recursive watch after failover (child)",
        &mut wp,
        zk::EventType::NodeCreated,
        "/fo/p/q",
    )
    .await;
    check_event_zxid("recursive watch after failover (child)", &ev, qs.czxid);
    drop(wp);

    // Closing the re-attached session removes its ephemeral.
    let (_, we) = ok(
        "other watches fo's ephemeral",
        other.check_and_watch_stat("/fo/e"),
    )
    .await;
    drop(fo);
    expect_event(
        "ephemeral of the re-attached session",
        we,
        zk::EventType::NodeDeleted,
        "/fo/e",
    )
    .await;
}

async fn expect_event_within(
    limit: Duration,
    what: &str,
    w: zk::OneshotWatcher,
    ty: zk::EventType,
    path: &str,
) -> zk::WatchedEvent {
    let ev = within(limit, what, w.changed()).await;
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (ty, path),
        "{what}: unexpected event {ev:?}"
    );
    ev
}
