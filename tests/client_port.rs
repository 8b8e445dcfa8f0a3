//! The ZooKeeper client port, driven by a minimal client written here from ZooKeeper's
//! protocol description (independent of the server's own encoder): answers and
//! notifications in order, sessions re-attached on another member with the events they
//! missed, expiry of silent clients, back-pressure, and connections that misbehave
//! closed without disturbing the others. The kazoo suite (`tests/kazoo/`) covers the
//! API surface against ZooKeeper itself.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use std::collections::BTreeMap;

use common::{wait_until, Cluster};
use zkraft::{ClientPort, ClientPortBuilder, NodeBuilder};

const CREATE2: i32 = 15;
const GET_DATA: i32 = 4;
const SET_DATA: i32 = 5;
const SET_WATCHES: i32 = 101;
const PING: i32 = 11;
const GET_ACL: i32 = 6;
const SET_ACL: i32 = 7;
const AUTH: i32 = 100;
const SYNC: i32 = 9;
const ADD_WATCH: i32 = 106;

/// Jute encoding of a request body.
#[derive(Default)]
struct Body(Vec<u8>);

impl Body {
    fn int(mut self, v: i32) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn long(mut self, v: i64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn bool(mut self, v: bool) -> Self {
        self.0.push(u8::from(v));
        self
    }
    fn bytes(self, v: &[u8]) -> Self {
        let mut s = self.int(v.len() as i32);
        s.0.extend_from_slice(v);
        s
    }
    fn str(self, v: &str) -> Self {
        self.bytes(v.as_bytes())
    }
    fn strs(self, v: &[&str]) -> Self {
        let mut s = self.int(v.len() as i32);
        for x in v {
            s = s.str(x);
        }
        s
    }
    /// world:anyone, all permissions.
    fn open_acl(self) -> Self {
        self.int(1).int(31).str("world").str("anyone")
    }
}

/// A frame read back: header fields and the rest.
struct Frame {
    xid: i32,
    zxid: i64,
    err: i32,
    body: Vec<u8>,
}

struct Client {
    s: TcpStream,
    session: i64,
    password: Vec<u8>,
    timeout: i32,
}

fn read_frame(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut buf)?;
    Ok(buf)
}

fn int(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

fn long(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

impl Client {
    /// Connects with a handshake (session 0: a new one).
    fn connect(addr: SocketAddr, session: i64, password: &[u8], timeout_ms: i32) -> Client {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let req = Body::default()
            .int(0)
            .long(0)
            .int(timeout_ms)
            .long(session)
            .bytes(password)
            .bool(false);
        send_raw(&mut s, &req.0);
        let r = read_frame(&mut s).expect("handshake answered");
        let timeout = int(&r, 4);
        let session = long(&r, 8);
        let plen = int(&r, 16) as usize;
        let password = r[20..20 + plen].to_vec();
        Client {
            s,
            session,
            password,
            timeout,
        }
    }

    fn send(&mut self, xid: i32, op: i32, body: Body) {
        let frame = Body::default().int(xid).int(op);
        let mut bytes = frame.0;
        bytes.extend_from_slice(&body.0);
        send_raw(&mut self.s, &bytes);
    }

    fn recv(&mut self) -> Frame {
        let b = read_frame(&mut self.s).expect("a frame");
        Frame {
            xid: int(&b, 0),
            zxid: long(&b, 4),
            err: int(&b, 12),
            body: b[16..].to_vec(),
        }
    }

    /// True once the server has closed the connection.
    fn closed_within(&mut self, limit: Duration) -> bool {
        self.s.set_read_timeout(Some(limit)).unwrap();
        let mut b = [0u8; 256];
        let start = Instant::now();
        while start.elapsed() < limit {
            match self.s.read(&mut b) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return false,
                Err(_) => return true,
            }
        }
        false
    }
}

fn send_raw(s: &mut TcpStream, body: &[u8]) {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    s.write_all(&out).unwrap();
}

fn create2(path: &str, data: &[u8], flags: i32) -> Body {
    Body::default().str(path).bytes(data).open_acl().int(flags)
}

/// Each node's client port.
struct Ports(BTreeMap<u64, ClientPort>);

/// A cluster of `n` nodes (their builders through `node`), each serving a client port on
/// a free port of 127.0.0.1 (its settings through `port`).
fn ported_with(
    n: u64,
    node: fn(NodeBuilder) -> NodeBuilder,
    port: impl Fn(ClientPortBuilder) -> ClientPortBuilder,
) -> (Cluster, Ports) {
    let c = Cluster::with(n, node);
    let ports = c
        .ids
        .iter()
        .map(|id| {
            let builder = ClientPort::builder("127.0.0.1:0".parse().unwrap())
                .four_letter_words(["ruok", "mntr", "cons"]);
            (*id, port(builder).start(c.node(*id)).expect("client port"))
        })
        .collect();
    (c, Ports(ports))
}

fn ported(n: u64) -> (Cluster, Ports) {
    ported_with(n, |b| b, |p| p)
}

fn addr(p: &Ports, id: u64) -> SocketAddr {
    p.0[&id].local_addr()
}

#[test]
fn answers_and_notifications_keep_the_sessions_order() {
    let (c, p) = ported(3);
    let leader = c.wait_leader();
    let mut cl = Client::connect(addr(&p, leader), 0, &[], 4000);
    assert_ne!(cl.session, 0);
    assert_eq!(cl.password.len(), 16);
    cl.send(1, CREATE2, create2("/a", b"v0", 0));
    let r = cl.recv();
    assert_eq!((r.xid, r.err), (1, 0));
    assert!(r.zxid > 0);
    assert_eq!(&r.body[4..6], b"/a");
    // getData with a watch, then setData: the notification comes before the answer to
    // the setData that caused it, as ZooKeeper sends it.
    cl.send(2, GET_DATA, Body::default().str("/a").bool(true));
    cl.send(3, SET_DATA, Body::default().str("/a").bytes(b"v1").int(0));
    let r = cl.recv();
    assert_eq!((r.xid, r.err), (2, 0));
    assert_eq!(&r.body[4..6], b"v0");
    let n = cl.recv();
    assert_eq!(n.xid, -1, "notification");
    assert_eq!(
        (int(&n.body, 0), int(&n.body, 4)),
        (3, 3),
        "NodeDataChanged, SyncConnected"
    );
    let r = cl.recv();
    assert_eq!((r.xid, r.err), (3, 0));
    // Errors carry ZooKeeper's codes, in order with the rest.
    cl.send(4, CREATE2, create2("/a", b"", 0));
    cl.send(5, SET_DATA, Body::default().str("/a").bytes(b"").int(7));
    cl.send(6, GET_DATA, Body::default().str("/missing").bool(false));
    cl.send(7, PING, Body::default());
    let mut got: Vec<(i32, i32)> = (0..4).map(|_| cl.recv()).map(|f| (f.xid, f.err)).collect();
    got.sort_by_key(|(x, _)| *x == -2); // a ping's answer is not ordered with the rest
    assert_eq!(got, vec![(4, -110), (5, -103), (6, -101), (-2, 0)]);
}

#[test]
fn a_session_reattached_on_another_member_gets_the_events_it_missed() {
    let (c, p) = ported(3);
    let leader = c.wait_leader();
    let other = c.ids.iter().copied().find(|i| *i != leader).unwrap();
    let mut a = Client::connect(addr(&p, leader), 0, &[], 4000);
    a.send(1, CREATE2, create2("/eph", b"", 1));
    assert_eq!(a.recv().err, 0);
    a.send(2, CREATE2, create2("/d", b"0", 0));
    let seen = a.recv().zxid;
    // The client loses its server; meanwhile /d changes.
    drop(a.s);
    c.node(leader).set_data("/d", b"1", None).unwrap();
    let mut b = Client::connect(addr(&p, other), a.session, &a.password, 4000);
    assert_eq!(b.session, a.session, "same session");
    assert!(b.timeout > 0);
    b.send(
        -8,
        SET_WATCHES,
        Body::default().long(seen).strs(&["/d"]).strs(&[]).strs(&[]),
    );
    let n = b.recv();
    assert_eq!(n.xid, -1, "the missed change is delivered");
    assert_eq!(int(&n.body, 0), 3);
    let r = b.recv();
    assert_eq!((r.xid, r.err), (-8, 0));
    assert!(
        c.node(other).exists("/eph").unwrap().is_some(),
        "ephemeral kept"
    );
    // A wrong password is refused as ZooKeeper refuses it: timeout 0.
    let mut bad = a.password.clone();
    bad[0] ^= 1;
    let refused = Client::connect(addr(&p, other), a.session, &bad, 4000);
    assert_eq!((refused.timeout, refused.session), (0, 0));
}

#[test]
fn a_silent_client_loses_its_session_and_its_ephemerals() {
    let (c, p) = ported(3);
    let leader = c.wait_leader();
    let mut cl = Client::connect(addr(&p, leader), 0, &[], 300);
    assert_eq!(cl.timeout, 300, "negotiated within the node's bounds");
    cl.send(1, CREATE2, create2("/gone", b"", 1));
    assert_eq!(cl.recv().err, 0);
    // No pings: the session expires, its ephemeral goes and its connection is closed.
    wait_until(Duration::from_secs(10), "ephemeral deleted", || {
        c.node(leader).exists("/gone").unwrap().is_none()
    });
    assert!(cl.closed_within(Duration::from_secs(5)));
    // A client that pings keeps it.
    let mut live = Client::connect(addr(&p, leader), 0, &[], 300);
    live.send(1, CREATE2, create2("/kept", b"", 1));
    assert_eq!(live.recv().err, 0);
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(1500) {
        live.send(-2, PING, Body::default());
        assert_eq!(live.recv().xid, -2);
        std::thread::sleep(Duration::from_millis(80));
    }
    assert!(c.node(leader).exists("/kept").unwrap().is_some());
}

#[test]
fn misbehaving_connections_are_closed_and_others_are_served() {
    let (c, p) = ported_with(
        1,
        |b| b,
        |p| {
            p.handshake_timeout(Duration::from_millis(300))
                .max_outstanding_per_connection(8)
        },
    );
    c.wait_leader();
    let at = addr(&p, 1);
    let mut good = Client::connect(at, 0, &[], 4000);
    // Garbage after the handshake: an unknown operation.
    let mut bad = Client::connect(at, 0, &[], 4000);
    bad.send(1, 9999, Body::default());
    let r = bad.recv();
    assert_eq!(
        (r.xid, r.err),
        (1, -6),
        "Unimplemented, as ZooKeeper answers"
    );
    assert!(bad.closed_within(Duration::from_secs(5)));
    // A truncated record.
    let mut bad = Client::connect(at, 0, &[], 4000);
    bad.send(1, GET_DATA, Body::default().int(1000));
    assert!(bad.closed_within(Duration::from_secs(5)));
    // A frame longer than jute.maxbuffer, announced before any byte of it.
    let mut s = TcpStream::connect(at).unwrap();
    s.write_all(&(2u32 << 20).to_be_bytes()).unwrap();
    let mut big = Client {
        s,
        session: 0,
        password: vec![],
        timeout: 0,
    };
    assert!(big.closed_within(Duration::from_secs(5)));
    // A connection that never sends its handshake.
    let mut idle = Client {
        s: TcpStream::connect(at).unwrap(),
        session: 0,
        password: vec![],
        timeout: 0,
    };
    assert!(idle.closed_within(Duration::from_secs(5)));
    // 500 requests sent without reading, past the outstanding limit of 8: the server
    // stops reading, then answers every one, in order.
    for xid in 0..500 {
        good.send(xid, CREATE2, create2(&format!("/n{xid}"), b"", 0));
    }
    for xid in 0..500 {
        let r = good.recv();
        assert_eq!((r.xid, r.err), (xid, 0));
    }
    assert_eq!(c.node(1).get_children("/").unwrap().len(), 501);
}

#[test]
fn four_letter_words_follow_the_whitelist() {
    let (c, p) = ported(1);
    c.wait_leader();
    let ask = |w: &str| {
        let mut s = TcpStream::connect(addr(&p, 1)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(w.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    assert_eq!(ask("ruok"), "imok");
    assert_eq!(
        ask("srvr"),
        "srvr is not executed because it is not in the whitelist.\n"
    );
    let mntr = ask("mntr");
    let keys: Vec<&str> = mntr.lines().filter_map(|l| l.split('\t').next()).collect();
    for k in [
        "zk_version",
        "zk_server_state",
        "zk_znode_count",
        "zk_watch_count",
    ] {
        assert!(keys.contains(&k), "{k} in {mntr}");
    }
    assert!(mntr.contains("zk_server_state\tstandalone"));
    // cons lists a client whatever I/O thread each connection landed on (connections
    // are dealt to the threads in turn).
    let cl = Client::connect(addr(&p, 1), 0, &[], 4000);
    let sid = format!("sid={:#x}", cl.session);
    for _ in 0..3 {
        assert!(ask("cons").contains(&sid), "cons lists the session");
    }
}

/// An auth packet (answered with xid −4).
fn auth(scheme: &str, credentials: &[u8]) -> Body {
    Body::default().int(0).str(scheme).bytes(credentials)
}

#[test]
fn acls_and_authentication_over_the_client_port() {
    let (c, p) = ported_with(
        1,
        |b| b.super_digest(zkraft::acl::digest("super", "test")),
        |p| p,
    );
    let a = addr(&p, c.wait_leader());
    let mut alice = Client::connect(a, 0, &[], 4000);
    alice.send(-4, AUTH, auth("digest", b"alice:pw"));
    let r = alice.recv();
    assert_eq!((r.xid, r.err), (-4, 0));
    // CREATOR_ALL_ACL: auth, all permissions.
    let creator_all = |b: Body| b.int(1).int(31).str("auth").str("");
    alice.send(
        1,
        CREATE2,
        creator_all(Body::default().str("/a").bytes(b"x")).int(0),
    );
    assert_eq!(alice.recv().err, 0);
    // getACL: the auth entry became alice's digest id; then the stat.
    alice.send(2, GET_ACL, Body::default().str("/a"));
    let r = alice.recv();
    assert_eq!((r.xid, r.err), (2, 0));
    let id = zkraft::acl::digest("alice", "pw");
    let mut want = Body::default().int(1).int(31).str("digest").str(&id).0;
    assert_eq!(&r.body[..want.len()], &want[..]);
    // An entry open to the connection's address, read-only.
    alice.send(
        3,
        CREATE2,
        Body::default()
            .str("/lan")
            .bytes(b"l")
            .int(2)
            .int(1)
            .str("ip")
            .str("127.0.0.0/8")
            .int(31)
            .str("auth")
            .str("")
            .int(0),
    );
    assert_eq!(alice.recv().err, 0);

    // Another connection, without credentials: denied /a, may read /lan by its address.
    let mut anon = Client::connect(a, 0, &[], 4000);
    anon.send(1, GET_DATA, Body::default().str("/a").bool(false));
    assert_eq!(anon.recv().err, -102, "NoAuth");
    anon.send(2, GET_DATA, Body::default().str("/lan").bool(false));
    let r = anon.recv();
    assert_eq!((r.err, &r.body[4..5]), (0, &b"l"[..]));
    anon.send(3, SET_DATA, Body::default().str("/lan").bytes(b"y").int(-1));
    assert_eq!(anon.recv().err, -102);
    // getACL with READ but not ADMIN hides the digest's hash.
    anon.send(4, GET_ACL, Body::default().str("/lan"));
    let r = anon.recv();
    assert_eq!(r.err, 0);
    want = Body::default()
        .int(2)
        .int(1)
        .str("ip")
        .str("127.0.0.0/8")
        .int(31)
        .str("digest")
        .str("alice:x")
        .0;
    assert_eq!(&r.body[..want.len()], &want[..]);

    // setACL by alice, at ACL version 0: the stat comes back with aversion 1.
    alice.send(
        4,
        SET_ACL,
        Body::default()
            .str("/a")
            .int(1)
            .int(31)
            .str("world")
            .str("anyone")
            .int(0),
    );
    let r = alice.recv();
    assert_eq!((r.xid, r.err), (4, 0));
    assert_eq!(int(&r.body, 40), 1, "aversion");
    anon.send(5, GET_DATA, Body::default().str("/a").bool(false));
    assert_eq!(anon.recv().err, 0);

    // The super digest passes everything.
    let mut admin = Client::connect(a, 0, &[], 4000);
    admin.send(-4, AUTH, auth("digest", b"super:test"));
    assert_eq!(admin.recv().err, 0);
    admin.send(1, SET_DATA, Body::default().str("/lan").bytes(b"z").int(-1));
    assert_eq!(admin.recv().err, 0);

    // An unknown scheme: AuthFailed, and the connection is closed.
    anon.send(-4, AUTH, auth("kerberos", b"x"));
    let r = anon.recv();
    assert_eq!((r.xid, r.err), (-4, -115));
    assert!(anon.closed_within(Duration::from_secs(5)));
}

#[test]
fn one_notification_per_event_and_a_moved_sessions_old_connection_is_closed() {
    let (c, p) = ported(3);
    let leader = c.wait_leader();
    let other = c.ids.iter().copied().find(|i| *i != leader).unwrap();
    let mut a = Client::connect(addr(&p, leader), 0, &[], 4000);
    a.send(1, CREATE2, create2("/w", b"", 0));
    assert_eq!(a.recv().err, 0);
    // A data watch, an exists watch and a persistent watch on one path, as a client
    // whose several watchers share the connection: one notification per change.
    a.send(2, GET_DATA, Body::default().str("/w").bool(true));
    a.send(3, 3, Body::default().str("/w").bool(true)); // exists
    a.send(4, ADD_WATCH, Body::default().str("/w").int(0));
    for xid in 2..=4 {
        assert_eq!(a.recv().xid, xid);
    }
    a.send(5, SET_DATA, Body::default().str("/w").bytes(b"1").int(-1));
    let n = a.recv();
    assert_eq!((n.xid, int(&n.body, 0)), (-1, 3), "NodeDataChanged");
    let r = a.recv();
    assert_eq!(r.xid, 5, "one notification, then the answer");
    // sync echoes its path.
    a.send(6, SYNC, Body::default().str("/w"));
    let r = a.recv();
    assert_eq!((r.xid, r.err), (6, 0));
    assert_eq!(&r.body[4..], b"/w");
    // The session re-attached elsewhere: a request on its old connection meets
    // SessionMoved and the connection is closed without an answer, so its client (if
    // still there) sees a connection loss and reconnects (ZOOKEEPER-710).
    let b = Client::connect(addr(&p, other), a.session, &a.password, 4000);
    assert_eq!(b.session, a.session);
    a.send(7, GET_DATA, Body::default().str("/w").bool(false));
    assert!(a.closed_within(Duration::from_secs(5)));
    // Re-attached on the same member: the older connection there is closed at once, as
    // ZooKeeper closes it on a reconnect.
    let mut b2 = Client::connect(addr(&p, other), b.session, &b.password, 4000);
    assert_eq!(b2.session, b.session);
    let mut b = b;
    assert!(b.closed_within(Duration::from_secs(5)));
    // Any connection holding the session may close it, even one it moved away from
    // (ZooKeeper's closeSession skips the owner check): b2's session, closed through a
    // connection of a third member, is gone and b2 is closed.
    let third = c
        .ids
        .iter()
        .copied()
        .find(|i| *i != leader && *i != other)
        .unwrap();
    let mut t = Client::connect(addr(&p, third), b2.session, &b2.password, 4000);
    let mut b3 = Client::connect(addr(&p, other), b2.session, &b2.password, 4000);
    assert_eq!(b3.session, b2.session);
    t.send(1, -11, Body::default()); // closeSession, after the session moved from t
    assert_eq!(t.recv().xid, 1);
    assert!(b3.closed_within(Duration::from_secs(5)));
    assert!(b2.closed_within(Duration::from_secs(5)));
}

#[test]
fn a_flooding_connection_does_not_starve_the_others() {
    let (c, p) = ported_with(1, |b| b, |p| p.io_threads(1));
    c.wait_leader();
    let at = addr(&p, 1);
    let mut flood = Client::connect(at, 0, &[], 4000);
    flood.send(1, CREATE2, create2("/flood", b"x", 0));
    assert_eq!(flood.recv().err, 0);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writer = flood.s.try_clone().unwrap();
    let mut reader = flood.s.try_clone().unwrap();
    // getData requests: each goes through the session's pipeline and is answered, so
    // the flood costs the member real work (pings are answered by the connection alone).
    let reads = {
        let body = Body::default()
            .int(7)
            .int(GET_DATA)
            .str("/flood")
            .bool(false)
            .0;
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        frame.repeat(2048)
    };
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let s1 = stop.clone();
    let w = std::thread::spawn(move || {
        let start = Instant::now();
        while !s1.load(std::sync::atomic::Ordering::Relaxed)
            && start.elapsed() < Duration::from_secs(20)
        {
            if writer.write_all(&reads).is_err() {
                break;
            }
        }
    });
    let s2 = stop.clone();
    let counted = answered.clone();
    let r = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        reader
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let start = Instant::now();
        while !s2.load(std::sync::atomic::Ordering::Relaxed)
            && start.elapsed() < Duration::from_secs(20)
        {
            if let Ok(n) = reader.read(&mut buf) {
                counted.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            }
        }
    });
    // Meanwhile another client on the same I/O thread is served promptly.
    let mut other = Client::connect(at, 0, &[], 4000);
    for xid in 0..20 {
        let start = Instant::now();
        other.send(xid, PING, Body::default());
        assert_eq!(other.recv().xid, -2);
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "served in {:?}",
            start.elapsed()
        );
    }
    // The flood is served too: its answers (93 bytes each: length, header, data, stat)
    // keep coming.
    wait_until(
        Duration::from_secs(15),
        "a thousand answers to the flood",
        || answered.load(std::sync::atomic::Ordering::Relaxed) >= 1000 * 93,
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    w.join().unwrap();
    r.join().unwrap();
}

#[test]
fn connections_from_one_address_are_limited() {
    let (c, p) = ported_with(1, |b| b, |p| p.max_connections_per_address(2));
    c.wait_leader();
    let at = addr(&p, 1);
    let a = Client::connect(at, 0, &[], 4000);
    let _b = Client::connect(at, 0, &[], 4000);
    // A third from 127.0.0.1 is closed at accept, as ZooKeeper's maxClientCnxns does.
    let mut third = Client {
        s: TcpStream::connect(at).unwrap(),
        session: 0,
        password: vec![],
        timeout: 0,
    };
    assert!(third.closed_within(Duration::from_secs(5)));
    // Once one closes, there is room again.
    drop(a);
    wait_until(Duration::from_secs(5), "room for a connection", || {
        let mut s = TcpStream::connect(at).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let req = Body::default()
            .int(0)
            .long(0)
            .int(4000)
            .long(0)
            .bytes(&[])
            .bool(false);
        send_raw(&mut s, &req.0);
        read_frame(&mut s).is_ok()
    });
}

/// The listen backlog is the one set (the kernel's, as `ss` reads it: the listening
/// socket's Send-Q) and `conf` reports it, with the per-address limit as ZooKeeper's
/// `maxClientCnxns`; a backlog out of range is refused.
#[test]
fn the_listen_backlog_is_set_and_conf_reports_the_limits() {
    let (c, p) = ported_with(
        1,
        |b| b,
        |p| {
            p.listen_backlog(77)
                .max_connections_per_address(7)
                .four_letter_words(["conf"])
        },
    );
    c.wait_leader();
    let at = addr(&p, 1);
    let mut s = TcpStream::connect(at).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"conf").unwrap();
    let mut conf = String::new();
    s.read_to_string(&mut conf).unwrap();
    assert!(conf.lines().any(|l| l == "maxClientCnxns=7"), "{conf}");
    assert!(
        conf.lines().any(|l| l == "clientPortListenBacklog=77"),
        "{conf}"
    );
    // `ss -ltnH sport = :PORT`: "LISTEN 0 77 127.0.0.1:PORT 0.0.0.0:*" (iproute2, which
    // ./dev setup installs).
    let out = std::process::Command::new("ss")
        .args(["-ltnH", &format!("sport = :{}", at.port())])
        .output()
        .expect("ss (iproute2) runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(fields.get(2), Some(&"77"), "ss: {text}");
    for bad in [0, 65_536] {
        let refused = ClientPort::builder("127.0.0.1:0".parse().unwrap())
            .listen_backlog(bad)
            .start(c.node(1));
        assert!(matches!(refused, Err(zkraft::Error::Config(_))), "{bad}");
    }
}

/// What zkraft does not serve is answered as a ZooKeeper 3.8 server (reconfig disabled,
/// no SASL login) answers it, and only what ZooKeeper closes is closed: checked against
/// ZooKeeper's `FinalRequestProcessor`, `PrepRequestProcessor` and
/// `ZooKeeperServer.processPacket` (docs/client-port.md lists them).
#[test]
fn unserved_operations_are_answered_as_zookeeper_answers_them() {
    const RECONFIG: i32 = 16;
    const DELETE_CONTAINER: i32 = 20;
    const SASL: i32 = 102;
    const WHO_AM_I: i32 = 107;
    const CREATE_SESSION: i32 = -10;
    let (c, p) = ported(1);
    c.wait_leader();
    let mut cl = Client::connect(addr(&p, 1), 0, &[], 4000);
    // setWatches as the Java client sends it: an ordinary xid, echoed in order.
    cl.send(1, GET_DATA, Body::default().str("/").bool(false));
    cl.send(
        2,
        SET_WATCHES,
        Body::default()
            .long(0)
            .strs(&["/zookeeper/config"])
            .strs(&[])
            .strs(&[]),
    );
    let got: Vec<(i32, i32)> = (0..2).map(|_| cl.recv()).map(|f| (f.xid, f.err)).collect();
    assert_eq!(got, [(1, 0), (2, 0)]);
    // reconfig from a caller who is not the super user: NoAuth (`/zookeeper/config` is
    // read-only for everyone else); malformed servers: BadArguments, checked first, as
    // ZooKeeper checks them. The connection goes on.
    cl.send(
        3,
        RECONFIG,
        Body::default()
            .str("server.4=127.0.0.1:1:2;3")
            .int(-1)
            .int(-1)
            .long(-1),
    );
    let r = cl.recv();
    assert_eq!((r.xid, r.err), (3, -102));
    cl.send(
        4,
        RECONFIG,
        Body::default().str("some thing").int(-1).int(-1).long(-1),
    );
    let r = cl.recv();
    assert_eq!((r.xid, r.err), (4, -8));
    // deleteContainer from a client: BadArguments, the connection kept.
    cl.send(5, DELETE_CONTAINER, Body::default().str("/x"));
    let r = cl.recv();
    assert_eq!((r.xid, r.err), (5, -8));
    // whoAmI: the connection's identities, each scheme with its user.
    cl.send(6, WHO_AM_I, Body::default());
    let r = cl.recv();
    assert_eq!((r.xid, r.err), (6, 0));
    assert_eq!(int(&r.body, 0), 1, "one identity: {:?}", r.body);
    assert_eq!(
        &r.body[4..],
        &Body::default().str("ip").str("127.0.0.1").0[..]
    );
    cl.send(-4, AUTH, auth("digest", b"alice:pw"));
    assert_eq!(cl.recv().err, 0);
    cl.send(7, WHO_AM_I, Body::default());
    let r = cl.recv();
    assert_eq!(int(&r.body, 0), 2);
    let digest = Body::default().str("digest").str("alice").0;
    assert!(r.body.ends_with(&digest), "{:?}", r.body);
    // sasl without a SASL login: OK with a null token; nothing is authenticated.
    cl.send(8, SASL, Body::default().bytes(b""));
    let r = cl.recv();
    assert_eq!((r.xid, r.zxid, r.err, int(&r.body, 0)), (8, 0, 0, -1));
    // createSession after the handshake: the handshake's answer again.
    cl.send(9, CREATE_SESSION, Body::default());
    let again = read_frame(&mut cl.s).unwrap();
    assert_eq!((int(&again, 4), long(&again, 8)), (cl.timeout, cl.session));
    // The connection still serves.
    cl.send(10, CREATE2, create2("/still", b"", 0));
    let r = cl.recv();
    assert_eq!((r.xid, r.err), (10, 0));
    // An operation ZooKeeper does not know (the notification code 0 among them):
    // Unimplemented, then the connection is closed.
    cl.send(11, 0, Body::default());
    let r = cl.recv();
    assert_eq!((r.xid, r.err), (11, -6));
    assert!(cl.closed_within(Duration::from_secs(5)));
}

/// Null data (length -1 on the wire) is kept apart from empty data, as ZooKeeper keeps it:
/// created, set and read back as null on every member, through the log.
#[test]
fn null_data_reads_back_null_and_empty_data_empty() {
    let (c, p) = ported(3);
    let leader = c.wait_leader();
    let follower = c.ids.iter().copied().find(|i| *i != leader).unwrap();
    let mut w = Client::connect(addr(&p, leader), 0, &[], 4000);
    w.send(
        1,
        CREATE2,
        Body::default().str("/null").int(-1).open_acl().int(0),
    );
    w.send(2, CREATE2, create2("/empty", b"", 0));
    w.send(3, CREATE2, create2("/set", b"x", 0));
    w.send(4, SET_DATA, Body::default().str("/set").int(-1).int(-1));
    for xid in 1..=4 {
        let r = w.recv();
        assert_eq!((r.xid, r.err), (xid, 0));
    }
    let mut r = Client::connect(addr(&p, follower), 0, &[], 4000);
    r.send(1, SYNC, Body::default().str("/"));
    assert_eq!(r.recv().err, 0);
    for (xid, path, len) in [(2, "/null", -1), (3, "/empty", 0), (4, "/set", -1)] {
        r.send(xid, GET_DATA, Body::default().str(path).bool(false));
        let f = r.recv();
        assert_eq!((f.xid, f.err), (xid, 0));
        assert_eq!(int(&f.body, 0), len, "{path}");
    }
    assert_eq!(c.node(follower).get_data_or_null("/set").unwrap().0, None);
}

/// A client that has seen a newer change than a member has applied is refused there, as
/// ZooKeeper refuses it (the connection closes without an answer; the client tries
/// another server): it never reads older data than it has seen.
#[test]
fn a_client_ahead_of_a_member_is_sent_to_another() {
    let (c, p) = ported(1);
    c.wait_leader();
    let applied = c.node(1).applied_index() as i64;
    let handshake = |last_zxid_seen: i64| {
        let mut s = TcpStream::connect(addr(&p, 1)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let req = Body::default()
            .int(0)
            .long(last_zxid_seen)
            .int(4000)
            .long(0)
            .bytes(&[0; 16])
            .bool(false);
        send_raw(&mut s, &req.0);
        read_frame(&mut s)
    };
    assert!(
        handshake(applied + 1_000).is_err(),
        "closed without an answer"
    );
    let answer = handshake(applied).expect("a client that is not ahead is served");
    assert!(int(&answer, 4) > 0, "a session with a timeout");
}

#[test]
fn every_client_port_of_a_node_closes_the_connections_of_an_ended_session() {
    let (c, p) = ported(3);
    let leader = c.wait_leader();
    let other = c.ids.iter().copied().find(|i| *i != leader).unwrap();
    // A second port on one member, and a third started and stopped there: stopping one
    // port leaves the others told of ended sessions.
    let second = ClientPort::builder("127.0.0.1:0".parse().unwrap())
        .start(c.node(other))
        .expect("a second client port");
    let third = ClientPort::builder("127.0.0.1:0".parse().unwrap())
        .start(c.node(other))
        .expect("a third client port");
    let mut on_first = Client::connect(addr(&p, other), 0, &[], 4000);
    let mut on_second = Client::connect(second.local_addr(), 0, &[], 4000);
    drop(third);
    // Each session is closed through a connection on the leader: its connection on the
    // other member, whichever port holds it, is closed.
    for held in [&mut on_first, &mut on_second] {
        let mut closer = Client::connect(addr(&p, leader), held.session, &held.password, 4000);
        assert_eq!(closer.session, held.session);
        closer.send(1, -11, Body::default()); // closeSession
        assert_eq!(closer.recv().xid, 1);
        assert!(held.closed_within(Duration::from_secs(5)));
    }
}
