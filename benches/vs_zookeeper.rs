//! zkraft against Apache ZooKeeper with one and the same client: a ZooKeeper wire-protocol
//! load generator written here on `std::net::TcpStream` and mio (jute encoded by hand),
//! pointed at any ensemble that speaks ZooKeeper's client protocol.
//!
//! ```text
//! ./dev bench --vs-zookeeper                   # three alternating rounds per target, medians
//! ZK_HOSTS=127.0.0.1:2181,127.0.0.1:2182,127.0.0.1:2183 cargo bench --bench vs_zookeeper
//! cargo bench --bench vs_zookeeper -- --hosts H1,H2,H3 --conns 32 --window 16 --secs 5
//! cargo bench --bench vs_zookeeper -- --hosts ... --sync-clients   # window 1 only
//! cargo bench --bench vs_zookeeper -- --hosts ... --scenarios raftkeeper,session_open
//! cargo bench --bench vs_zookeeper -- --compare zookeeper.tsv zkraft.tsv
//! cargo bench --bench vs_zookeeper -- --compare zookeeper.1.tsv zkraft.1.tsv zookeeper.2.tsv ...
//! ```
//!
//! Scenarios, in the order they run (`--scenarios` names them, comma-separated; all by
//! default):
//!
//! - `create`, `set_data`, `get_data` at C connections (`--conns`, default 32) spread
//!   round-robin over the hosts, each a session of its own, first with W requests in flight
//!   per connection (`--window`, default 16: pipelined, as ZooKeeper's clients pipeline),
//!   then with one (synchronous clients). `create` makes persistent znodes with 100 bytes
//!   of data (`--data-bytes N` for another size, in `set_data` too), each at a new path;
//!   `set_data` writes 100 bytes on one of 1,000 znodes (`--znodes N` for another number:
//!   a working set larger than a server's cache)
//!   created beforehand (version −1, znode at random); `get_data` reads them (no watch).
//!   `--pipelined` or `--sync-clients` runs one of the two kinds, and then (unless
//!   `--scenarios` is given too) only these three scenarios, as before the others existed.
//! - `one_client`: `create` and `set_data` from a single connection, one request at a
//!   time (rows `create 1x1`, `set_data 1x1`).
//! - `get90_set10`: 90 % `get_data`, 10 % `set_data`, at `--mix-conns` (default 64)
//!   synchronous clients (closed loop: each sends its next request when the last is
//!   answered).
//! - `raftkeeper`: RaftKeeper's mixed profile at `--mix-conns` synchronous clients: 1 %
//!   create, 8 % set_data, 45 % get_data, 45 % getChildren of a znode with 100 children
//!   (created beforehand), 1 % delete. Each client draws its operations in blocks of 100
//!   holding exactly that mix in random order, the block's create before its delete; a
//!   delete takes the oldest znode that client created, so the tree stays bounded.
//! - `session_open`: a connect storm. `--storm-sessions` (default 10,000) clients connect
//!   at once, round-robin over the hosts, from `--storm-threads` (default 2) threads with
//!   non-blocking sockets (mio); each sends its handshake as soon as its connection is
//!   established. `--storm-pending N` bounds the connections connecting or waiting for
//!   their handshake's answer at once (default 0: no bound). Reported: the time until
//!   every session is open, the rate (sessions ÷ that time), each handshake's latency
//!   (connect to answer), and — while it lasts — the latency of `--storm-writers`
//!   (default 4) other clients writing (`set_data`, synchronous, closed loop), against the
//!   second before the storm. Open sessions are kept alive with pings (every 10 s of
//!   silence); at the end every session is closed with closeSession, and that time is
//!   reported too. The storm must be done within `--storm-timeout` seconds (default 120).
//!   It needs about `--storm-sessions` file descriptors in this process: the soft limit
//!   is raised (setrlimit) up to the hard limit if needed, and the run fails at once
//!   if even that is too low. The servers must admit that many connections from
//!   127.0.0.1 (ZooKeeper's `maxClientCnxns=0`, zkraft-server's `--max-client-cnxns 0`).
//!
//! Timed scenarios (all but `session_open`): `--warmup` seconds (default 2, not counted:
//! the JVM compiles, batches settle), then `--secs` seconds (default 5) measured. Latency
//! is from the request's write to its answer, so with W > 1 it includes queueing behind
//! the connection's other requests. Before any is measured, `--prewarm` seconds (default
//! 12) run the scenarios' kinds of requests once, unmeasured. `--pids P1,P2,P3` (the
//! servers' processes) adds the servers' CPU time per operation, from `/proc/PID/stat`;
//! the client's own is always reported. `--slow-ms N` prints every answer that took N ms
//! or more as it arrives.
//!
//! `--label L --out FILE` appends one tab-separated line per scenario to FILE (label,
//! scenario, clients, ops/s, p50, p99, max in µs, worst second's ops, errors, server and
//! client CPU µs per op, then `key=value;...` extras: per-kind latencies of the mixes, the
//! storm's figures). `--compare FILE...` reads any number of such files (one per target
//! and round, or one per target with several runs appended), groups the lines by label
//! (two labels; the first one seen is the baseline) and prints, per scenario, the median
//! over the rounds of each figure, the range of ops/s, the ratio of the medians and the
//! ratio within each round (the n-th line of one label against the n-th of the other).
//!
//! Every wait is bounded: a connection that fails, closes, or leaves a request unanswered
//! for 10 s fails the run with a message (exit 1), as does any error code in an answer;
//! a watchdog ends a run that exceeds its whole time budget.

use std::collections::{BTreeMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::time::{Duration, Instant};

const CREATE: i32 = 1;
const DELETE: i32 = 2;
const GET_DATA: i32 = 4;
const SET_DATA: i32 = 5;
const GET_CHILDREN: i32 = 8;
const PING: i32 = 11;
const CLOSE_SESSION: i32 = -11;

/// How many znodes `set_data` and `get_data` pick from: `--znodes N` (default 1,000).
static ZNODES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

fn znodes() -> usize {
    *ZNODES.get_or_init(|| 1_000)
}
/// Children of the znode that `raftkeeper`'s getChildren lists.
const LIST_CHILDREN: usize = 100;
/// The data every create and set_data writes: `--data-bytes` bytes (default 100).
static DATA: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();

fn data() -> &'static [u8] {
    DATA.get_or_init(|| vec![b'x'; 100])
}
const SESSION_TIMEOUT_MS: i32 = 30_000;
/// The longest any answer (or the handshake) may take before the run fails.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// A storm session that sent nothing for this long sends a ping (a third of its timeout,
/// as ZooKeeper's clients do).
const PING_AFTER: Duration = Duration::from_secs(10);
/// Linux's USER_HZ, the unit of utime/stime in /proc/PID/stat.
const CLOCK_TICKS: f64 = 100.0;

/// `--slow-ms N`: every answer that took N ms or more is printed (diagnosis).
static SLOW: OnceLock<Option<Duration>> = OnceLock::new();

fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("vs_zookeeper: {msg}");
    std::process::exit(1);
}

// ---- jute -----------------------------------------------------------------------------

#[derive(Default)]
struct Jute(Vec<u8>);

impl Jute {
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
    fn bytes(mut self, v: &[u8]) -> Self {
        self.0.extend_from_slice(&(v.len() as i32).to_be_bytes());
        self.0.extend_from_slice(v);
        self
    }
    fn str(self, v: &str) -> Self {
        self.bytes(v.as_bytes())
    }
    /// world:anyone, all permissions (ZooKeeper's OPEN_ACL_UNSAFE).
    fn open_acl(self) -> Self {
        self.int(1).int(31).str("world").str("anyone")
    }
    /// A request frame: length prefix, xid, op, body.
    fn request(xid: i32, op: i32, body: Jute) -> Vec<u8> {
        let len = (8 + body.0.len()) as u32;
        let mut out = Vec::with_capacity(4 + len as usize);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&xid.to_be_bytes());
        out.extend_from_slice(&op.to_be_bytes());
        out.extend_from_slice(&body.0);
        out
    }
}

/// Seconds from `origin` to `t` (negative when `t` is earlier).
fn since(origin: Instant, t: Instant) -> f64 {
    match t.checked_duration_since(origin) {
        Some(d) => d.as_secs_f64(),
        None => -(origin - t).as_secs_f64(),
    }
}

fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

fn create_frame(xid: i32, path: &str) -> Vec<u8> {
    Jute::request(
        xid,
        CREATE,
        Jute::default().str(path).bytes(data()).open_acl().int(0),
    )
}

fn delete_frame(xid: i32, path: &str) -> Vec<u8> {
    Jute::request(xid, DELETE, Jute::default().str(path).int(-1))
}

fn set_data_frame(xid: i32, path: &str) -> Vec<u8> {
    Jute::request(
        xid,
        SET_DATA,
        Jute::default().str(path).bytes(data()).int(-1),
    )
}

/// The handshake of a new session (ConnectRequest), length prefix included.
fn hello_frame() -> Vec<u8> {
    let hello = Jute::default()
        .int(0) // protocol version
        .long(0) // last zxid seen
        .int(SESSION_TIMEOUT_MS)
        .long(0) // a new session
        .bytes(&[0u8; 16])
        .bool(false); // read-only: no
    let mut frame = (hello.0.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&hello.0);
    frame
}

/// xorshift64: the load's random choices, reproducible per connection.
struct Rng(u64);

impl Rng {
    fn new(seed: usize) -> Rng {
        Rng(0x9E37_79B9_7F4A_7C15u64 ^ ((seed as u64 + 1) << 17))
    }
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

// ---- a connection ---------------------------------------------------------------------

struct Conn {
    s: TcpStream,
    host: SocketAddr,
    session: i64,
    buf: Vec<u8>,
    /// Bytes of `buf` consumed by frames already returned.
    start: usize,
}

impl Conn {
    fn open(host: SocketAddr) -> Result<Conn, String> {
        let s = TcpStream::connect_timeout(&host, ANSWER_TIMEOUT)
            .map_err(|e| format!("connect to {host}: {e}"))?;
        s.set_nodelay(true).ok();
        s.set_read_timeout(Some(ANSWER_TIMEOUT)).ok();
        s.set_write_timeout(Some(ANSWER_TIMEOUT)).ok();
        let mut c = Conn {
            s,
            host,
            session: 0,
            buf: Vec::with_capacity(64 * 1024),
            start: 0,
        };
        c.write(&hello_frame())?;
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        let r = loop {
            if let Some(f) = c.next_frame()? {
                break f.to_vec();
            }
            c.fill(deadline, 0)?;
        };
        if r.len() < 16 || be_i32(&r, 4) <= 0 {
            return Err(format!("{host}: handshake refused (answer {r:?})"));
        }
        c.session = be_i64(&r, 8);
        Ok(c)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.s
            .write_all(bytes)
            .map_err(|e| format!("{}: write on session {:#x}: {e}", self.host, self.session))
    }

    /// Reads what the socket has (at least one byte), waiting at most until `deadline`.
    fn fill(&mut self, deadline: Instant, outstanding: usize) -> Result<(), String> {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 32 * 1024 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let len = self.buf.len();
        self.buf.resize(len + 64 * 1024, 0);
        loop {
            let r = self.s.read(&mut self.buf[len..]);
            match r {
                Ok(0) => {
                    self.buf.truncate(len);
                    return Err(format!(
                        "{}: the server closed session {:#x}'s connection with {outstanding} requests unanswered",
                        self.host, self.session
                    ));
                }
                Ok(n) => {
                    self.buf.truncate(len + n);
                    return Ok(());
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if Instant::now() < deadline {
                        continue;
                    }
                    self.buf.truncate(len);
                    return Err(format!(
                        "{}: no answer within {:?} on session {:#x} ({outstanding} requests unanswered)",
                        self.host, ANSWER_TIMEOUT, self.session
                    ));
                }
                Err(e) => {
                    self.buf.truncate(len);
                    return Err(format!(
                        "{}: read on session {:#x}: {e} ({outstanding} requests unanswered)",
                        self.host, self.session
                    ));
                }
            }
        }
    }

    /// The next complete frame in the buffer (without its length prefix).
    fn next_frame(&mut self) -> Result<Option<&[u8]>, String> {
        let avail = &self.buf[self.start..];
        if avail.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes(avail[..4].try_into().unwrap()) as usize;
        if len > 16 << 20 {
            return Err(format!("{}: frame of {len} bytes", self.host));
        }
        if avail.len() < 4 + len {
            return Ok(None);
        }
        let at = self.start + 4;
        self.start = at + len;
        Ok(Some(&self.buf[at..at + len]))
    }

    /// Sends closeSession and waits (bounded) for its answer; errors are ignored.
    fn close(mut self, xid: i32) {
        if self
            .write(&Jute::request(xid, CLOSE_SESSION, Jute::default()))
            .is_err()
        {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            match self.next_frame() {
                Ok(Some(f)) if f.len() >= 4 && be_i32(f, 0) == xid => return,
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(_) => return,
            }
            if self.fill(deadline, 1).is_err() {
                return;
            }
        }
    }
}

// ---- scenarios ------------------------------------------------------------------------

/// A kind of request.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Create,
    SetData,
    GetData,
    GetChildren,
    Delete,
}

const KINDS: [Kind; 5] = [
    Kind::Create,
    Kind::SetData,
    Kind::GetData,
    Kind::GetChildren,
    Kind::Delete,
];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Create => "create",
            Kind::SetData => "set_data",
            Kind::GetData => "get_data",
            Kind::GetChildren => "get_children",
            Kind::Delete => "delete",
        }
    }
    fn index(self) -> usize {
        self as usize
    }
}

/// A scenario's load: each connection sends the kinds of `block`, reshuffled for every
/// pass over it (so a block of 100 holds the mix exactly).
#[derive(Clone)]
struct Load {
    name: &'static str,
    block: Vec<Kind>,
}

impl Load {
    fn named(name: &str) -> Option<Load> {
        let mix = |parts: &[(Kind, usize)]| -> Vec<Kind> {
            parts
                .iter()
                .flat_map(|&(k, n)| std::iter::repeat_n(k, n))
                .collect()
        };
        Some(match name {
            "create" => Load {
                name: "create",
                block: vec![Kind::Create],
            },
            "set_data" => Load {
                name: "set_data",
                block: vec![Kind::SetData],
            },
            "get_data" => Load {
                name: "get_data",
                block: vec![Kind::GetData],
            },
            "get90_set10" => Load {
                name: "get90_set10",
                block: mix(&[(Kind::GetData, 90), (Kind::SetData, 10)]),
            },
            "raftkeeper" => Load {
                name: "raftkeeper",
                block: mix(&[
                    (Kind::Create, 1),
                    (Kind::SetData, 8),
                    (Kind::GetData, 45),
                    (Kind::GetChildren, 45),
                    (Kind::Delete, 1),
                ]),
            },
            _ => return None,
        })
    }

    fn mixed(&self) -> bool {
        self.block.iter().any(|k| *k != self.block[0])
    }
}

/// A random order of the block; a delete comes after the block's create (it deletes a
/// znode its connection created).
fn shuffle(order: &mut [Kind], rng: &mut Rng) {
    for i in (1..order.len()).rev() {
        let j = rng.below(i + 1);
        order.swap(i, j);
    }
    let create = order.iter().position(|k| *k == Kind::Create);
    let delete = order.iter().position(|k| *k == Kind::Delete);
    if let (Some(c), Some(d)) = (create, delete) {
        if d < c {
            order.swap(c, d);
        }
    }
}

struct Plan {
    load: Load,
    /// Parent of the scenario's creates.
    create_parent: String,
    /// Frames of set_data / get_data for each of the znodes, xid 0 (patched per request).
    set_templates: Vec<Vec<u8>>,
    get_templates: Vec<Vec<u8>>,
    /// getChildren of the 100-child znode, xid 0.
    list_template: Vec<u8>,
    warm_end: Instant,
    end: Instant,
    /// `--slow-ms`: answers at least this slow are printed as they come (diagnosis).
    slow: Option<Duration>,
}

#[derive(Default)]
struct Tally {
    /// Measured latencies per kind (`Kind::index`).
    latencies_ns: [Vec<u64>; 5],
    /// Answers per whole second of the measured window.
    per_second: Vec<u64>,
    errors: BTreeMap<i32, u64>,
    bad_answers: u64,
    /// The slowest measured answer: latency, when it was sent (seconds after the warm-up
    /// ended; negative: during it), host.
    slowest: Option<(u64, f64, SocketAddr)>,
}

/// One connection's load: `window` requests in flight until `plan.end`, then drained.
fn drive(
    mut conn: Conn,
    index: usize,
    window: usize,
    plan: &Plan,
    abort: &AtomicBool,
) -> Result<Tally, String> {
    let mut tally = Tally {
        per_second: vec![0; (plan.end - plan.warm_end).as_secs_f64().ceil() as usize + 1],
        ..Tally::default()
    };
    let mut rng = Rng::new(index);
    let mut order = plan.load.block.clone();
    let mut pos = order.len();
    // Znodes this connection created and has not deleted yet, oldest first.
    let mut created: VecDeque<String> = VecDeque::new();
    let mut xid: i32 = 0;
    let mut seq: u64 = 0;
    let mut inflight: VecDeque<(i32, Instant, Kind)> = VecDeque::with_capacity(window);
    let mut out: Vec<u8> = Vec::with_capacity(window * 256);
    let mut request =
        |out: &mut Vec<u8>, inflight: &mut VecDeque<(i32, Instant, Kind)>| -> Result<(), String> {
            if pos == order.len() {
                shuffle(&mut order, &mut rng);
                pos = 0;
            }
            let kind = order[pos];
            pos += 1;
            xid += 1;
            let at = out.len();
            match kind {
                Kind::Create => {
                    seq += 1;
                    // The load's name in the path: scenarios sharing a parent never collide.
                    let path = format!("{}/{}-c{index}-{seq}", plan.create_parent, plan.load.name);
                    out.extend_from_slice(&create_frame(xid, &path));
                    created.push_back(path);
                }
                Kind::Delete => {
                    let path = created
                        .pop_front()
                        .ok_or("a delete with no znode of this connection to delete")?;
                    out.extend_from_slice(&delete_frame(xid, &path));
                }
                Kind::SetData => {
                    out.extend_from_slice(&plan.set_templates[rng.below(znodes())]);
                    out[at + 4..at + 8].copy_from_slice(&xid.to_be_bytes());
                }
                Kind::GetData => {
                    out.extend_from_slice(&plan.get_templates[rng.below(znodes())]);
                    out[at + 4..at + 8].copy_from_slice(&xid.to_be_bytes());
                }
                Kind::GetChildren => {
                    out.extend_from_slice(&plan.list_template);
                    out[at + 4..at + 8].copy_from_slice(&xid.to_be_bytes());
                }
            }
            inflight.push_back((xid, Instant::now(), kind));
            Ok(())
        };
    for _ in 0..window {
        request(&mut out, &mut inflight)?;
    }
    conn.write(&out)?;
    out.clear();
    let host = conn.host;
    let conn_session = conn.session;
    let hard_end = plan.end + ANSWER_TIMEOUT;
    while !inflight.is_empty() {
        if abort.load(Ordering::Relaxed) {
            return Ok(tally);
        }
        let deadline = (Instant::now() + ANSWER_TIMEOUT).min(hard_end);
        conn.fill(deadline, inflight.len())?;
        let now = Instant::now();
        let measured = now >= plan.warm_end && now < plan.end;
        while let Some(f) = conn.next_frame()? {
            if f.len() < 16 {
                return Err(format!("{}: short answer {f:?}", host));
            }
            let (rxid, err) = (be_i32(f, 0), be_i32(f, 12));
            if rxid == -1 || rxid == -2 {
                continue; // a notification or a ping answer: none are asked for
            }
            let (want, sent, kind) = inflight
                .pop_front()
                .ok_or_else(|| format!("{}: an answer (xid {rxid}) to no request", host))?;
            if rxid != want {
                return Err(format!(
                    "{}: answer xid {rxid} where {want} was due (answers out of order)",
                    host
                ));
            }
            if plan.slow.is_some_and(|slow| now - sent >= slow) {
                eprintln!(
                    "  slow: {} ms for {} xid {rxid} on connection {index} to {host} (session {:#x}), sent at {:+.3}s",
                    (now - sent).as_millis(),
                    kind.name(),
                    conn_session,
                    since(plan.warm_end, sent)
                );
            }
            if err != 0 {
                *tally.errors.entry(err).or_default() += 1;
            } else {
                // The answer's body after its header: a data buffer's length, or the
                // number of children.
                let count = (f.len() >= 20).then(|| be_i32(f, 16) as usize);
                let ok = match kind {
                    Kind::GetData => count == Some(data().len()),
                    Kind::GetChildren => count == Some(LIST_CHILDREN),
                    _ => true,
                };
                if !ok {
                    tally.bad_answers += 1;
                }
            }
            if measured {
                let ns = (now - sent).as_nanos() as u64;
                if tally.slowest.is_none_or(|(m, _, _)| ns > m) {
                    tally.slowest = Some((ns, since(plan.warm_end, sent), host));
                }
                tally.latencies_ns[kind.index()].push(ns);
                let second = (now - plan.warm_end).as_secs() as usize;
                tally.per_second[second] += 1;
            }
            if now < plan.end {
                request(&mut out, &mut inflight)?;
            }
        }
        if !out.is_empty() {
            conn.write(&out)?;
            out.clear();
        }
    }
    conn.close(xid + 1);
    Ok(tally)
}

/// Opens `n` connections spread round-robin over `hosts`, each a new session.
fn open_all(hosts: &[SocketAddr], n: usize) -> Vec<Conn> {
    (0..n)
        .map(|i| Conn::open(hosts[i % hosts.len()]).unwrap_or_else(|e| fail(e)))
        .collect()
}

/// Runs requests with up to `window` in flight on one connection; all must succeed or
/// answer NodeExists (-110) when `exists_ok`.
fn setup_batch(conn: &mut Conn, frames: Vec<Vec<u8>>, window: usize, exists_ok: bool) {
    let total = frames.len();
    let mut frames = frames.into_iter();
    let mut inflight = 0usize;
    let mut done = 0usize;
    while done < total {
        let mut out = Vec::new();
        while inflight < window {
            match frames.next() {
                Some(f) => {
                    out.extend_from_slice(&f);
                    inflight += 1;
                }
                None => break,
            }
        }
        if !out.is_empty() {
            conn.write(&out).unwrap_or_else(|e| fail(e));
        }
        conn.fill(Instant::now() + ANSWER_TIMEOUT, inflight)
            .unwrap_or_else(|e| fail(e));
        while let Some(f) = conn.next_frame().unwrap_or_else(|e| fail(e)) {
            let err = be_i32(f, 12);
            if be_i32(f, 0) < 0 {
                continue;
            }
            if err != 0 && !(exists_ok && err == -110) {
                fail(format!(
                    "{}: setup request failed with error {err}",
                    conn.host
                ));
            }
            inflight -= 1;
            done += 1;
        }
    }
}

struct Row {
    scenario: String,
    clients: String,
    ops: f64,
    p50_us: f64,
    p99_us: f64,
    max_us: f64,
    min_1s: f64,
    errors: u64,
    /// Where the slowest answer came from: (sent this many seconds into the measured
    /// window, host).
    slowest: Option<(f64, SocketAddr)>,
    server_cpu_us: Option<f64>,
    client_cpu_us: f64,
    /// Further figures (per-kind latencies of a mix, the storm's), in the TSV's last column.
    extra: Vec<(String, f64)>,
}

impl Row {
    fn tsv(&self, label: &str) -> String {
        format!(
            "{label}\t{}\t{}\t{:.0}\t{:.0}\t{:.0}\t{:.0}\t{:.0}\t{}\t{}\t{:.1}\t{}",
            self.scenario,
            self.clients,
            self.ops,
            self.p50_us,
            self.p99_us,
            self.max_us,
            self.min_1s,
            self.errors,
            self.server_cpu_us
                .map(|v| format!("{v:.1}"))
                .unwrap_or_else(|| "-".into()),
            self.client_cpu_us,
            self.extra
                .iter()
                .map(|(k, v)| format!("{k}={v:.3}"))
                .collect::<Vec<_>>()
                .join(";"),
        )
    }
}

/// CPU seconds (user + system) used so far by process `pid` ("self" for this one).
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name in parentheses: state is field 3; utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / CLOCK_TICKS)
}

fn servers_cpu(pids: &[String]) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|p| cpu_seconds(p)).sum()
}

/// The `p` quantile of sorted nanoseconds, in µs (0 when empty).
fn pct_us(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        0.0
    } else {
        sorted[((sorted.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0
    }
}

/// What every scenario run needs to know besides its load.
struct Target<'a> {
    hosts: &'a [SocketAddr],
    root: &'a str,
    pids: &'a [String],
}

fn run_scenario(
    t: &Target,
    load: &Load,
    (conns, window): (usize, usize),
    warmup: Duration,
    secs: Duration,
    tag: &str,
) -> Row {
    let root = t.root;
    let pids = t.pids;
    let connections = open_all(t.hosts, conns);
    let start = Instant::now() + Duration::from_millis(20);
    let plan = Arc::new(Plan {
        load: load.clone(),
        create_parent: format!("{root}/{tag}"),
        set_templates: (0..znodes())
            .map(|i| set_data_frame(0, &format!("{root}/s/n{i}")))
            .collect(),
        get_templates: (0..znodes())
            .map(|i| {
                let path = format!("{root}/s/n{i}");
                Jute::request(0, GET_DATA, Jute::default().str(&path).bool(false))
            })
            .collect(),
        list_template: Jute::request(
            0,
            GET_CHILDREN,
            Jute::default().str(&format!("{root}/list")).bool(false),
        ),
        warm_end: start + warmup,
        end: start + warmup + secs,
        slow: SLOW.get().copied().flatten(),
    });
    let abort = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = connections
        .into_iter()
        .enumerate()
        .map(|(i, conn)| {
            let (plan, abort) = (plan.clone(), abort.clone());
            std::thread::Builder::new()
                .name(format!("conn-{i}"))
                .spawn(move || {
                    std::thread::sleep(start.saturating_duration_since(Instant::now()));
                    let r = drive(conn, i, window, &plan, &abort);
                    if r.is_err() {
                        abort.store(true, Ordering::Relaxed);
                    }
                    r
                })
                .unwrap()
        })
        .collect();
    // CPU time over the measured window only.
    std::thread::sleep(plan.warm_end.saturating_duration_since(Instant::now()));
    let (srv0, cli0) = (servers_cpu(pids), cpu_seconds("self"));
    std::thread::sleep(plan.end.saturating_duration_since(Instant::now()));
    let (srv1, cli1) = (servers_cpu(pids), cpu_seconds("self"));
    let mut all = Tally::default();
    let mut failures = Vec::new();
    for w in workers {
        match w.join() {
            Ok(Ok(t)) => {
                for (a, b) in all.latencies_ns.iter_mut().zip(t.latencies_ns) {
                    a.extend(b);
                }
                if all.per_second.len() < t.per_second.len() {
                    all.per_second.resize(t.per_second.len(), 0);
                }
                for (a, b) in all.per_second.iter_mut().zip(&t.per_second) {
                    *a += b;
                }
                for (k, v) in t.errors {
                    *all.errors.entry(k).or_default() += v;
                }
                all.bad_answers += t.bad_answers;
                if t.slowest.map(|x| x.0) > all.slowest.map(|x| x.0) {
                    all.slowest = t.slowest;
                }
            }
            Ok(Err(e)) => failures.push(e),
            Err(_) => failures.push("a connection thread panicked".into()),
        }
    }
    if !failures.is_empty() {
        fail(format!(
            "{} {conns}x{window}: {} connection(s) failed; first: {}",
            load.name,
            failures.len(),
            failures[0]
        ));
    }
    let mut extra = Vec::new();
    let mut lat: Vec<u64> = Vec::new();
    for kind in KINDS {
        let k = &mut all.latencies_ns[kind.index()];
        if k.is_empty() {
            continue;
        }
        k.sort_unstable();
        if load.mixed() {
            extra.push((format!("{}_n", kind.name()), k.len() as f64));
            extra.push((format!("{}_p50", kind.name()), pct_us(k, 0.50)));
            extra.push((format!("{}_p99", kind.name()), pct_us(k, 0.99)));
        }
        lat.extend_from_slice(k);
    }
    lat.sort_unstable();
    let n = lat.len() as f64;
    let whole = secs.as_secs() as usize;
    let min_1s = all.per_second[..whole.max(1).min(all.per_second.len())]
        .iter()
        .copied()
        .min()
        .unwrap_or(0) as f64;
    let errors: u64 = all.errors.values().sum::<u64>() + all.bad_answers;
    if errors > 0 {
        eprintln!(
            "vs_zookeeper: {} {conns}x{window}: error codes {:?}, {} malformed answers",
            load.name, all.errors, all.bad_answers
        );
    }
    let per_op = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if n > 0.0 => Some((b - a) / n * 1e6),
        _ => None,
    };
    Row {
        scenario: load.name.into(),
        clients: format!("{conns}x{window}"),
        ops: n / secs.as_secs_f64(),
        p50_us: pct_us(&lat, 0.50),
        p99_us: pct_us(&lat, 0.99),
        max_us: pct_us(&lat, 1.0),
        min_1s,
        errors,
        slowest: all.slowest.map(|(_, at, host)| (at, host)),
        server_cpu_us: per_op(srv0, srv1),
        client_cpu_us: per_op(cli0, cli1).unwrap_or(0.0),
        extra,
    }
}

// ---- the connect storm ----------------------------------------------------------------

struct StormConfig {
    sessions: usize,
    threads: usize,
    /// Most connections connecting or awaiting their handshake's answer at once (0: no bound).
    pending: usize,
    writers: usize,
    timeout: Duration,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum StormState {
    Connecting,
    Handshaking,
    Open,
    Closing,
}

/// One storm client: a non-blocking socket and what it has read.
struct StormConn {
    s: mio::net::TcpStream,
    host: SocketAddr,
    state: StormState,
    /// When its connect began.
    started: Instant,
    /// When it last sent something (pings keep an idle session alive).
    last_sent: Instant,
    session: i64,
    buf: Vec<u8>,
    out: Vec<u8>,
}

impl StormConn {
    /// Writes what `out` holds, as much as the socket takes now.
    fn flush(&mut self) -> Result<(), String> {
        while !self.out.is_empty() {
            match self.s.write(&self.out) {
                Ok(0) => return Err(format!("{}: write returned 0", self.host)),
                Ok(n) => {
                    self.out.drain(..n);
                    self.last_sent = Instant::now();
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(format!(
                        "{}: write on storm session {:#x}: {e}",
                        self.host, self.session
                    ))
                }
            }
        }
        Ok(())
    }

    fn send(&mut self, frame: &[u8]) -> Result<(), String> {
        self.out.extend_from_slice(frame);
        self.flush()
    }

    /// Reads everything the socket has; true at end of stream.
    fn pump(&mut self) -> Result<bool, String> {
        let mut chunk = [0u8; 4096];
        loop {
            match self.s.read(&mut chunk) {
                Ok(0) => return Ok(true),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if self.state == StormState::Closing => {
                    // A reset after closeSession: the session is gone either way.
                    let _ = e;
                    return Ok(true);
                }
                Err(e) => {
                    return Err(format!(
                        "{}: read on storm session {:#x} ({:?}): {e}",
                        self.host, self.session, self.state
                    ))
                }
            }
        }
    }

    /// The next complete frame read (without its length prefix).
    fn take_frame(&mut self) -> Option<Vec<u8>> {
        if self.buf.len() < 4 {
            return None;
        }
        let len = u32::from_be_bytes(self.buf[..4].try_into().unwrap()) as usize;
        if self.buf.len() < 4 + len {
            return None;
        }
        let f = self.buf[4..4 + len].to_vec();
        self.buf.drain(..4 + len);
        Some(f)
    }
}

#[derive(Default)]
struct StormTally {
    /// Each session's handshake: connect begun to answer read.
    handshake_ns: Vec<u64>,
    last_open: Option<Instant>,
    pings: u64,
    close_answered: usize,
    /// Sessions whose connection ended after closeSession without its answer read.
    close_eof: usize,
    close_unfinished: usize,
    close_done: Option<Instant>,
    /// What went wrong while the sessions were held open.
    hold_error: Option<String>,
}

/// What the main thread and the storm threads share.
struct StormShared {
    abort: AtomicBool,
    close_now: AtomicBool,
    hello: Vec<u8>,
    /// Every session must be open by then.
    deadline: Instant,
    /// The closes must be done this long after they begin.
    close_timeout: Duration,
}

const CLOSE_XID: i32 = 1;

/// One storm thread's clients (`ids`): connect, handshake and hold every session until
/// the main thread says close (reporting on `opened` when all are open), then close them.
struct StormThread<'a> {
    poll: mio::Poll,
    events: mio::Events,
    conns: Vec<Option<StormConn>>,
    shared: &'a StormShared,
    tally: StormTally,
    /// When the sessions were last looked over for pings due.
    ping_scan: Instant,
}

impl StormThread<'_> {
    fn run(
        hosts: &[SocketAddr],
        ids: Vec<usize>,
        pending_cap: usize,
        shared: &StormShared,
        opened: mpsc::Sender<Result<(), String>>,
    ) -> StormTally {
        let mut t = StormThread {
            poll: mio::Poll::new().unwrap_or_else(|e| fail(format!("mio poll: {e}"))),
            events: mio::Events::with_capacity(1024),
            conns: Vec::with_capacity(ids.len()),
            shared,
            tally: StormTally::default(),
            ping_scan: Instant::now(),
        };
        t.tally.handshake_ns.reserve(ids.len());
        let r = t.open_all(hosts, &ids, pending_cap);
        let failed = r.is_err();
        let _ = opened.send(r);
        if failed {
            shared.abort.store(true, Ordering::Relaxed);
        }
        // Hold the sessions open (answering nothing, pinging when idle) until told.
        while !shared.close_now.load(Ordering::Relaxed) && !failed {
            if let Err(e) = t.turn(Duration::from_millis(50)) {
                t.tally.hold_error = Some(e);
                shared.abort.store(true, Ordering::Relaxed);
                break;
            }
        }
        t.close_all();
        t.tally
    }

    fn open_all(
        &mut self,
        hosts: &[SocketAddr],
        ids: &[usize],
        pending_cap: usize,
    ) -> Result<(), String> {
        let mut next = 0;
        let mut pending = 0usize;
        let mut opened = 0usize;
        while opened < ids.len() {
            // Start connects, a few at a time so that handshakes go out between them.
            let mut started = 0;
            while next < ids.len() && started < 64 && (pending_cap == 0 || pending < pending_cap) {
                let host = hosts[ids[next] % hosts.len()];
                let mut s = mio::net::TcpStream::connect(host)
                    .map_err(|e| format!("storm: connect to {host}: {e}"))?;
                let token = mio::Token(self.conns.len());
                self.poll
                    .registry()
                    .register(
                        &mut s,
                        token,
                        mio::Interest::READABLE | mio::Interest::WRITABLE,
                    )
                    .map_err(|e| format!("storm: register: {e}"))?;
                let now = Instant::now();
                self.conns.push(Some(StormConn {
                    s,
                    host,
                    state: StormState::Connecting,
                    started: now,
                    last_sent: now,
                    session: 0,
                    buf: Vec::new(),
                    out: Vec::new(),
                }));
                next += 1;
                pending += 1;
                started += 1;
            }
            if self.shared.abort.load(Ordering::Relaxed) {
                return Err("stopped: another storm thread failed".into());
            }
            if Instant::now() > self.shared.deadline {
                return Err(format!(
                    "storm: {opened} of this thread's {} sessions open at the deadline ({} connecting or handshaking)",
                    ids.len(),
                    pending
                ));
            }
            let wait = if next < ids.len() && (pending_cap == 0 || pending < pending_cap) {
                Duration::ZERO
            } else {
                Duration::from_millis(50)
            };
            let newly = self.turn(wait)?;
            opened += newly;
            pending -= newly;
        }
        Ok(())
    }

    /// One poll: handles the events (connects done, handshakes answered, pings, closes)
    /// and sends due pings; returns how many sessions opened.
    fn turn(&mut self, wait: Duration) -> Result<usize, String> {
        self.poll.poll(&mut self.events, Some(wait)).or_else(|e| {
            if e.kind() == ErrorKind::Interrupted {
                Ok(())
            } else {
                Err(format!("storm: poll: {e}"))
            }
        })?;
        let tokens: Vec<usize> = self.events.iter().map(|e| e.token().0).collect();
        let mut opened = 0;
        for i in tokens {
            let Some(c) = self.conns[i].as_mut() else {
                continue;
            };
            if c.state == StormState::Connecting {
                if let Ok(Some(e)) | Err(e) = c.s.take_error() {
                    return Err(format!("storm: connect to {}: {e}", c.host));
                }
                match c.s.peer_addr() {
                    Ok(_) => {
                        c.s.set_nodelay(true).ok();
                        c.state = StormState::Handshaking;
                        c.send(&self.shared.hello)?;
                    }
                    Err(e) if e.kind() == ErrorKind::NotConnected => continue,
                    Err(e) => return Err(format!("storm: connect to {}: {e}", c.host)),
                }
            }
            c.flush()?;
            let eof = c.pump()?;
            while let Some(f) = c.take_frame() {
                match c.state {
                    StormState::Handshaking => {
                        if f.len() < 16 || be_i32(&f, 4) <= 0 {
                            return Err(format!(
                                "storm: {}: handshake refused (answer {f:?})",
                                c.host
                            ));
                        }
                        let now = Instant::now();
                        c.session = be_i64(&f, 8);
                        c.state = StormState::Open;
                        c.buf = Vec::new();
                        self.tally
                            .handshake_ns
                            .push((now - c.started).as_nanos() as u64);
                        self.tally.last_open = Some(now);
                        opened += 1;
                    }
                    StormState::Closing if f.len() >= 4 && be_i32(&f, 0) == CLOSE_XID => {
                        self.tally.close_answered += 1;
                        self.conns[i] = None; // dropped: closed, and out of the poll
                        break;
                    }
                    _ => {} // ping answers, notifications
                }
            }
            let Some(c) = self.conns[i].as_mut() else {
                continue;
            };
            if eof {
                if c.state == StormState::Closing {
                    self.tally.close_eof += 1;
                    self.conns[i] = None;
                } else {
                    return Err(format!(
                        "storm: {} closed session {:#x}'s connection ({:?})",
                        c.host, c.session, c.state
                    ));
                }
            }
        }
        // Pings for sessions idle for a third of their timeout (looked for once a second).
        let now = Instant::now();
        if now - self.ping_scan < Duration::from_secs(1) {
            return Ok(opened);
        }
        self.ping_scan = now;
        for c in self.conns.iter_mut().flatten() {
            if c.state == StormState::Open && now - c.last_sent >= PING_AFTER {
                c.send(&Jute::request(-2, PING, Jute::default()))?;
                self.tally.pings += 1;
            }
        }
        Ok(opened)
    }

    /// closeSession on every open session, then waits (bounded) for the answers.
    fn close_all(&mut self) {
        let frame = Jute::request(CLOSE_XID, CLOSE_SESSION, Jute::default());
        for slot in self.conns.iter_mut() {
            let keep = match slot {
                Some(c) if c.state == StormState::Open => c.send(&frame).is_ok(),
                _ => false,
            };
            match slot {
                Some(c) if keep => c.state = StormState::Closing,
                _ => *slot = None,
            }
        }
        let deadline = Instant::now() + self.shared.close_timeout;
        while self.conns.iter().any(Option::is_some) && Instant::now() < deadline {
            if let Err(e) = self.turn(Duration::from_millis(50)) {
                eprintln!("vs_zookeeper: storm, closing: {e}");
                break;
            }
        }
        self.tally.close_unfinished = self.conns.iter().flatten().count();
        self.conns.clear();
        self.tally.close_done = Some(Instant::now());
    }
}

/// A writer during the storm: set_data, one at a time, until `stop`; (sent, latency).
fn storm_writer(
    mut conn: Conn,
    index: usize,
    root: &str,
    stop: &AtomicBool,
) -> Result<Vec<(Instant, u64)>, String> {
    let mut rng = Rng::new(1000 + index);
    let mut samples = Vec::new();
    let mut xid = 0;
    while !stop.load(Ordering::Relaxed) {
        xid += 1;
        let frame = set_data_frame(xid, &format!("{root}/s/n{}", rng.below(znodes())));
        let sent = Instant::now();
        conn.write(&frame)?;
        loop {
            let got = conn
                .next_frame()?
                .map(|f| (f.len() >= 16).then(|| (be_i32(f, 0), be_i32(f, 12))));
            match got {
                Some(Some((rxid, err))) if rxid == xid => {
                    if err != 0 {
                        return Err(format!("storm writer: set_data answered error {err}"));
                    }
                    break;
                }
                Some(_) => continue,
                None => conn.fill(sent + ANSWER_TIMEOUT, 1)?,
            }
        }
        samples.push((sent, (Instant::now() - sent).as_nanos() as u64));
    }
    conn.close(xid + 1);
    Ok(samples)
}

fn run_storm(t: &Target, cfg: &StormConfig) -> Row {
    let (hosts, root, pids) = (t.hosts, t.root, t.pids);
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..cfg.writers)
        .map(|i| {
            let conn = Conn::open(hosts[i % hosts.len()]).unwrap_or_else(|e| fail(e));
            let (stop, root) = (stop.clone(), root.to_string());
            std::thread::Builder::new()
                .name(format!("storm-writer-{i}"))
                .spawn(move || storm_writer(conn, i, &root, &stop))
                .unwrap()
        })
        .collect();
    // A second of the writers alone: their latency before the storm.
    std::thread::sleep(Duration::from_secs(1));
    let overflows0 = listen_overflows();
    let start = Instant::now();
    let (srv0, cli0) = (servers_cpu(pids), cpu_seconds("self"));
    let shared = Arc::new(StormShared {
        abort: AtomicBool::new(false),
        close_now: AtomicBool::new(false),
        hello: hello_frame(),
        deadline: start + cfg.timeout,
        close_timeout: cfg.timeout,
    });
    let (tx, rx) = mpsc::channel();
    let threads: Vec<_> = (0..cfg.threads)
        .map(|k| {
            let ids: Vec<usize> = (k..cfg.sessions).step_by(cfg.threads).collect();
            let (shared, tx, hosts, pending) = (
                shared.clone(),
                tx.clone(),
                hosts.to_vec(),
                cfg.pending.div_ceil(cfg.threads),
            );
            std::thread::Builder::new()
                .name(format!("storm-{k}"))
                .spawn(move || StormThread::run(&hosts, ids, pending, &shared, tx))
                .unwrap()
        })
        .collect();
    drop(tx);
    let mut failure = None;
    for _ in 0..cfg.threads {
        let left = (start + cfg.timeout + Duration::from_secs(1))
            .saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                failure = Some(e);
                break;
            }
            Err(_) => {
                failure = Some(format!(
                    "the sessions were not all open after {:?}",
                    cfg.timeout
                ));
                break;
            }
        }
    }
    let (srv1, cli1) = (servers_cpu(pids), cpu_seconds("self"));
    let overflows = match (overflows0, listen_overflows()) {
        (Some(a), Some(b)) => b.saturating_sub(a) as f64,
        _ => -1.0,
    };
    stop.store(true, Ordering::Relaxed);
    if failure.is_some() {
        shared.abort.store(true, Ordering::Relaxed);
    }
    let close_start = Instant::now();
    shared.close_now.store(true, Ordering::Relaxed);
    let mut writes = Vec::new();
    for w in writers {
        match w.join() {
            Ok(Ok(s)) => writes.extend(s),
            Ok(Err(e)) => failure = failure.or(Some(e)),
            Err(_) => failure = failure.or(Some("a storm writer panicked".into())),
        }
    }
    let mut tally = StormTally::default();
    for th in threads {
        let Ok(t) = th.join() else {
            failure = failure.or(Some("a storm thread panicked".into()));
            continue;
        };
        tally.handshake_ns.extend(t.handshake_ns);
        tally.last_open = tally.last_open.max(t.last_open);
        tally.pings += t.pings;
        tally.close_answered += t.close_answered;
        tally.close_eof += t.close_eof;
        tally.close_unfinished += t.close_unfinished;
        tally.close_done = tally.close_done.max(t.close_done);
        if let Some(e) = t.hold_error {
            failure = failure.or(Some(format!("while the sessions were held open: {e}")));
        }
    }
    if let Some(e) = failure {
        fail(format!(
            "session_open: {} of {} sessions had opened; {e}",
            tally.handshake_ns.len(),
            cfg.sessions
        ));
    }
    if tally.close_unfinished > 0 {
        fail(format!(
            "session_open: {} of {} sessions not closed within {:?}",
            tally.close_unfinished, cfg.sessions, cfg.timeout
        ));
    }
    let all_open = tally.last_open.unwrap_or(start);
    let open_s = since(start, all_open).max(1e-9);
    let close_s = tally
        .close_done
        .map(|d| since(close_start, d))
        .unwrap_or(0.0);
    let mut hs = tally.handshake_ns;
    hs.sort_unstable();
    let window = |from: Instant, to: Instant| {
        let mut v: Vec<u64> = writes
            .iter()
            .filter(|(sent, _)| *sent >= from && *sent < to)
            .map(|(_, ns)| *ns)
            .collect();
        v.sort_unstable();
        v
    };
    let during = window(start, all_open);
    let before = window(start - Duration::from_secs(1), start);
    let n = cfg.sessions as f64;
    let per_open = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => Some((b - a) / n * 1e6),
        _ => None,
    };
    let extra = vec![
        ("all_open_s".to_string(), open_s),
        ("close_s".to_string(), close_s),
        ("close_eof".to_string(), tally.close_eof as f64),
        ("pings".to_string(), tally.pings as f64),
        ("listen_overflows".to_string(), overflows),
        ("pending_cap".to_string(), cfg.pending as f64),
        ("writers".to_string(), cfg.writers as f64),
        ("w_n".to_string(), during.len() as f64),
        ("w_p50".to_string(), pct_us(&during, 0.50)),
        ("w_p99".to_string(), pct_us(&during, 0.99)),
        ("w_max".to_string(), pct_us(&during, 1.0)),
        ("w_before_n".to_string(), before.len() as f64),
        ("w_before_p50".to_string(), pct_us(&before, 0.50)),
        ("w_before_p99".to_string(), pct_us(&before, 0.99)),
    ];
    Row {
        scenario: "session_open".into(),
        clients: format!("{}", cfg.sessions),
        ops: n / open_s,
        p50_us: pct_us(&hs, 0.50),
        p99_us: pct_us(&hs, 0.99),
        max_us: pct_us(&hs, 1.0),
        min_1s: 0.0,
        errors: 0,
        slowest: None,
        server_cpu_us: per_open(srv0, srv1),
        client_cpu_us: per_open(cli0, cli1).unwrap_or(0.0),
        extra,
    }
}

/// The kernel's count of connections dropped because a listen queue was full
/// (`TcpExt: ListenOverflows` in /proc/net/netstat; the whole network namespace's).
fn listen_overflows() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/netstat").ok()?;
    let lines: Vec<&str> = text.lines().collect();
    lines.windows(2).find_map(|w| {
        let (names, values) = (w[0].strip_prefix("TcpExt:")?, w[1].strip_prefix("TcpExt:")?);
        let at = names
            .split_whitespace()
            .position(|n| n == "ListenOverflows")?;
        values.split_whitespace().nth(at)?.parse().ok()
    })
}

/// Makes sure this process may open `need` file descriptors: raises the soft limit
/// (never beyond the hard one), or fails with a message saying what to do.
fn ensure_fd_limit(need: u64) {
    #[cfg(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    {
        #[repr(C)]
        struct Rlimit {
            cur: u64,
            max: u64,
        }
        extern "C" {
            fn getrlimit(resource: i32, rlim: *mut Rlimit) -> i32;
            fn setrlimit(resource: i32, rlim: *const Rlimit) -> i32;
        }
        const RLIMIT_NOFILE: i32 = 7;
        let mut r = Rlimit { cur: 0, max: 0 };
        // SAFETY: getrlimit writes one struct rlimit, whose layout Rlimit has on these
        // 64-bit Linux targets (two unsigned longs).
        if unsafe { getrlimit(RLIMIT_NOFILE, &mut r) } != 0 {
            fail("getrlimit(RLIMIT_NOFILE) failed");
        }
        if r.cur >= need {
            return;
        }
        if r.max < need {
            fail(format!(
                "the connect storm needs about {need} file descriptors; the hard limit is {} \
                 (raise it, e.g. `ulimit -Hn`, or give a smaller --storm-sessions)",
                r.max
            ));
        }
        let want = Rlimit {
            cur: need.max(r.cur),
            max: r.max,
        };
        // SAFETY: setrlimit reads one struct rlimit.
        if unsafe { setrlimit(RLIMIT_NOFILE, &want) } != 0 {
            fail(format!("setrlimit(RLIMIT_NOFILE, {need}) failed"));
        }
        println!(
            "  (file descriptor soft limit raised from {} to {need})",
            r.cur
        );
    }
    #[cfg(not(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    )))]
    let _ = need;
}

// ---- output ---------------------------------------------------------------------------

fn ms(us: f64) -> String {
    if us >= 100_000.0 {
        format!("{:.0} ms", us / 1000.0)
    } else {
        format!("{:.2} ms", us / 1000.0)
    }
}

fn thousands(v: f64) -> String {
    let s = format!("{:.0}", v);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn print_rows(rows: &[Row]) {
    println!(
        "{:<12} {:>8} {:>10} {:>9} {:>9} {:>9} {:>9} {:>6} {:>11} {:>11}",
        "scenario",
        "clients",
        "ops/s",
        "p50",
        "p99",
        "max",
        "worst 1s",
        "errors",
        "srv cpu/op",
        "cli cpu/op"
    );
    for r in rows {
        println!(
            "{:<12} {:>8} {:>10} {:>9} {:>9} {:>9} {:>9} {:>6} {:>11} {:>11}",
            r.scenario,
            r.clients,
            thousands(r.ops),
            ms(r.p50_us),
            ms(r.p99_us),
            ms(r.max_us),
            thousands(r.min_1s),
            r.errors,
            r.server_cpu_us
                .map(|v| format!("{v:.0} µs"))
                .unwrap_or_else(|| "-".into()),
            format!("{:.0} µs", r.client_cpu_us),
        );
    }
}

/// One line of an `--out` file.
struct Sample {
    label: String,
    scenario: String,
    clients: String,
    ops: f64,
    p50: f64,
    p99: f64,
    max: f64,
    errors: u64,
    server_cpu: Option<f64>,
    extra: BTreeMap<String, f64>,
}

fn read_samples(path: &str) -> Vec<Sample> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| fail(format!("{path}: {e}")));
    let num = |s: &str| s.parse::<f64>().unwrap_or(0.0);
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            if f.len() < 11 {
                fail(format!("{path}: not a line of --out: {l:?}"));
            }
            Sample {
                label: f[0].into(),
                scenario: f[1].into(),
                clients: f[2].into(),
                ops: num(f[3]),
                p50: num(f[4]),
                p99: num(f[5]),
                max: num(f[6]),
                errors: num(f[8]) as u64,
                server_cpu: (f[9] != "-").then(|| num(f[9])),
                extra: f
                    .get(11)
                    .map(|e| {
                        e.split(';')
                            .filter_map(|kv| kv.split_once('='))
                            .map(|(k, v)| (k.to_string(), num(v)))
                            .collect()
                    })
                    .unwrap_or_default(),
            }
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The scenario as the tables name it.
fn describe(scenario: &str, clients: &str) -> String {
    match (scenario, clients) {
        ("create" | "set_data", "1x1") => format!("{scenario}, one client (synchronous)"),
        ("get90_set10", _) => "90 % get_data / 10 % set_data".into(),
        ("raftkeeper", _) => "RaftKeeper mix (create 1, set 8, get 45, list 45, delete 1 %)".into(),
        _ => scenario.into(),
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if a > 0.0 {
        b / a
    } else {
        0.0
    }
}

/// Prints `--out` files side by side (markdown): medians over the rounds per label.
fn compare(files: &[String]) {
    let samples: Vec<Sample> = files.iter().flat_map(|p| read_samples(p)).collect();
    let mut labels: Vec<&str> = Vec::new();
    for s in &samples {
        if !labels.contains(&s.label.as_str()) {
            labels.push(&s.label);
        }
    }
    let [la, lb] = labels[..] else {
        fail(format!(
            "--compare needs lines of exactly two labels (found {labels:?})"
        ));
    };
    let mut keys: Vec<(&str, &str)> = Vec::new();
    for s in samples.iter().filter(|s| s.label == la) {
        if !keys.contains(&(s.scenario.as_str(), s.clients.as_str())) {
            keys.push((&s.scenario, &s.clients));
        }
    }
    let of = |label: &str, (sc, cl): (&str, &str)| -> Vec<&Sample> {
        samples
            .iter()
            .filter(|s| s.label == label && s.scenario == sc && s.clients == cl)
            .collect()
    };
    let med = |v: &[&Sample], f: &dyn Fn(&Sample) -> f64| median(v.iter().map(|s| f(s)).collect());
    let range = |v: &[&Sample]| {
        let lo = v.iter().map(|s| s.ops).fold(f64::INFINITY, f64::min);
        let hi = v.iter().map(|s| s.ops).fold(0.0, f64::max);
        if v.len() > 1 {
            format!(" ({}–{})", thousands(lo), thousands(hi))
        } else {
            String::new()
        }
    };
    let cpu = |v: &[&Sample]| {
        let c: Vec<f64> = v.iter().filter_map(|s| s.server_cpu).collect();
        if c.is_empty() {
            "-".into()
        } else {
            format!("{:.0} µs", median(c))
        }
    };
    let per_round = |a: &[&Sample], b: &[&Sample], f: &dyn Fn(&Sample) -> f64| {
        a.iter()
            .zip(b)
            .map(|(x, y)| format!("{:.2}", ratio(f(x), f(y))))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let rounds = |k| (of(la, k).len(), of(lb, k).len());
    let (na, nb) = keys.first().map(|&k| rounds(k)).unwrap_or((0, 0));
    println!(
        "Medians over {na} run(s) of {la} and {nb} of {lb} (ops/s: median and range; ratios: of the medians, then per round).\n"
    );
    println!(
        "| scenario | clients × window | {la} ops/s | p50 / p99 | {lb} ops/s | p50 / p99 | {lb} ÷ {la} ops/s (per round) | p99 {lb} ÷ {la} | server CPU per op ({la} / {lb}) | errors |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &k in keys.iter().filter(|k| k.0 != "session_open") {
        let (a, b) = (of(la, k), of(lb, k));
        if a.is_empty() || b.is_empty() {
            continue;
        }
        let (oa, ob) = (med(&a, &|s| s.ops), med(&b, &|s| s.ops));
        let (pa, pb) = (med(&a, &|s| s.p99), med(&b, &|s| s.p99));
        println!(
            "| {} | {} | {}{} | {} / {} | {}{} | {} / {} | {:.2}× ({}) | {:.2}× | {} / {} | {} / {} |",
            describe(k.0, k.1),
            k.1.replace('x', " × "),
            thousands(oa),
            range(&a),
            ms(med(&a, &|s| s.p50)),
            ms(pa),
            thousands(ob),
            range(&b),
            ms(med(&b, &|s| s.p50)),
            ms(pb),
            ratio(oa, ob),
            per_round(&a, &b, &|s| s.ops),
            ratio(pa, pb),
            cpu(&a),
            cpu(&b),
            a.iter().map(|s| s.errors).sum::<u64>(),
            b.iter().map(|s| s.errors).sum::<u64>(),
        );
    }
    // The mixes, per kind of request.
    let mixes: Vec<_> = keys
        .iter()
        .filter(|k| {
            of(la, **k)
                .iter()
                .any(|s| s.extra.keys().any(|e| e.ends_with("_p99")))
        })
        .filter(|k| k.0 != "session_open")
        .collect();
    if !mixes.is_empty() {
        println!("\nThe mixes per kind of request (medians; share of the requests):\n");
        println!(
            "| scenario | request | share | {la} p50 / p99 | {lb} p50 / p99 | p99 {lb} ÷ {la} |"
        );
        println!("|---|---|---:|---:|---:|---:|");
        for &&k in &mixes {
            let (a, b) = (of(la, k), of(lb, k));
            if b.is_empty() {
                continue;
            }
            let total: f64 = KINDS
                .iter()
                .map(|kind| {
                    med(&a, &|s| {
                        s.extra
                            .get(&format!("{}_n", kind.name()))
                            .copied()
                            .unwrap_or(0.0)
                    })
                })
                .sum();
            for kind in KINDS {
                let key = |w: &str| format!("{}_{w}", kind.name());
                let get = |s: &Sample, w: &str| s.extra.get(&key(w)).copied().unwrap_or(0.0);
                let n = med(&a, &|s| get(s, "n"));
                if n == 0.0 {
                    continue;
                }
                let (pa, pb) = (med(&a, &|s| get(s, "p99")), med(&b, &|s| get(s, "p99")));
                println!(
                    "| {} | {} | {:.0} % | {} / {} | {} / {} | {:.2}× |",
                    k.0,
                    kind.name(),
                    n / total.max(1.0) * 100.0,
                    ms(med(&a, &|s| get(s, "p50"))),
                    ms(pa),
                    ms(med(&b, &|s| get(s, "p50"))),
                    ms(pb),
                    ratio(pa, pb),
                );
            }
        }
    }
    // The connect storm.
    for &k in keys.iter().filter(|k| k.0 == "session_open") {
        let (a, b) = (of(la, k), of(lb, k));
        if a.is_empty() || b.is_empty() {
            continue;
        }
        let x = |v: &[&Sample], key: &str| med(v, &|s| s.extra.get(key).copied().unwrap_or(0.0));
        let secs = |v: f64| format!("{v:.2} s");
        let writers = x(&a, "writers");
        println!(
            "\nConnect storm: {} sessions at once, {} writers (set_data, synchronous) meanwhile; medians:\n",
            k.1, writers
        );
        println!("| figure | {la} | {lb} | {lb} ÷ {la} (per round) |");
        println!("|---|---:|---:|---:|");
        let (ta, tb) = (x(&a, "all_open_s"), x(&b, "all_open_s"));
        println!(
            "| time until every session is open | {} | {} | {:.2}× ({}) |",
            secs(ta),
            secs(tb),
            ratio(ta, tb),
            per_round(&a, &b, &|s| s
                .extra
                .get("all_open_s")
                .copied()
                .unwrap_or(0.0))
        );
        let (ra, rb) = (med(&a, &|s| s.ops), med(&b, &|s| s.ops));
        println!(
            "| session opens per second | {} | {} | {:.2}× ({}) |",
            thousands(ra),
            thousands(rb),
            ratio(ra, rb),
            per_round(&a, &b, &|s| s.ops)
        );
        println!(
            "| handshake latency p50 / p99 / max | {} / {} / {} | {} / {} / {} | |",
            ms(med(&a, &|s| s.p50)),
            ms(med(&a, &|s| s.p99)),
            ms(med(&a, &|s| s.max)),
            ms(med(&b, &|s| s.p50)),
            ms(med(&b, &|s| s.p99)),
            ms(med(&b, &|s| s.max)),
        );
        let (wa, wb) = (x(&a, "w_p99"), x(&b, "w_p99"));
        println!(
            "| writes during the storm: p50 / p99 / max (count) | {} / {} / {} ({:.0}) | {} / {} / {} ({:.0}) | p99 {:.2}× |",
            ms(x(&a, "w_p50")),
            ms(wa),
            ms(x(&a, "w_max")),
            x(&a, "w_n"),
            ms(x(&b, "w_p50")),
            ms(wb),
            ms(x(&b, "w_max")),
            x(&b, "w_n"),
            ratio(wa, wb),
        );
        println!(
            "| writes in the second before: p50 / p99 | {} / {} | {} / {} | |",
            ms(x(&a, "w_before_p50")),
            ms(x(&a, "w_before_p99")),
            ms(x(&b, "w_before_p50")),
            ms(x(&b, "w_before_p99")),
        );
        println!(
            "| connects dropped by a full listen queue (kernel's ListenOverflows) | {:.0} | {:.0} | |",
            x(&a, "listen_overflows"),
            x(&b, "listen_overflows")
        );
        println!(
            "| closing every session (closeSession) | {} | {} | |",
            secs(x(&a, "close_s")),
            secs(x(&b, "close_s"))
        );
        println!(
            "| server CPU per session open (writers' included) | {} | {} | |",
            cpu(&a),
            cpu(&b)
        );
    }
}

/// Mode line of `srvr` on `host` ("leader", "follower", or why not known).
fn mode(host: SocketAddr) -> String {
    let ask = || -> std::io::Result<String> {
        let mut s = TcpStream::connect_timeout(&host, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.write_all(b"srvr")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    };
    match ask() {
        Ok(text) => text
            .lines()
            .find_map(|l| l.strip_prefix("Mode: "))
            .unwrap_or("?")
            .to_string(),
        Err(e) => format!("? ({e})"),
    }
}

const BASIC: [&str; 3] = ["create", "set_data", "get_data"];
const ALL_SCENARIOS: [&str; 7] = [
    "create",
    "set_data",
    "get_data",
    "one_client",
    "get90_set10",
    "raftkeeper",
    "session_open",
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| {
        args.iter().position(|a| a == name).map(|i| {
            args.get(i + 1)
                .cloned()
                .unwrap_or_else(|| fail(format!("{name} needs a value")))
        })
    };
    let flag = |name: &str| args.iter().any(|a| a == name);
    if let Some(i) = args.iter().position(|a| a == "--compare") {
        let files: Vec<String> = args[i + 1..]
            .iter()
            .take_while(|a| !a.starts_with("--"))
            .cloned()
            .collect();
        if files.len() < 2 {
            fail("--compare FILE FILE... (the --out files of two targets)");
        }
        compare(&files);
        return;
    }
    let num = |name: &str, default: f64| {
        value(name)
            .map(|v| {
                v.parse::<f64>()
                    .unwrap_or_else(|_| fail(format!("{name}: not a number: {v}")))
            })
            .unwrap_or(default)
    };
    let data_bytes = num("--data-bytes", 100.0);
    if !(0.0..=1_000_000.0).contains(&data_bytes) || data_bytes.fract() != 0.0 {
        fail("--data-bytes: a whole number of bytes up to 1,000,000 (ZooKeeper's jute.maxbuffer is 1 MiB)");
    }
    DATA.set(vec![b'x'; data_bytes as usize])
        .expect("the data is set once, before any request");
    let znode_count = num("--znodes", 1_000.0);
    if !(1.0..=10_000_000.0).contains(&znode_count) || znode_count.fract() != 0.0 {
        fail("--znodes: a whole number from 1 to 10,000,000");
    }
    ZNODES
        .set(znode_count as usize)
        .expect("the count is set once, before any request");
    let hosts_arg = value("--hosts")
        .or_else(|| std::env::var("ZK_HOSTS").ok())
        .unwrap_or_else(|| fail("no hosts: give --hosts H1:P1,H2:P2,... or ZK_HOSTS"));
    let hosts: Vec<SocketAddr> = hosts_arg
        .split(',')
        .filter(|h| !h.is_empty())
        .map(|h| {
            h.to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .unwrap_or_else(|| fail(format!("bad host {h:?}")))
        })
        .collect();
    if hosts.is_empty() {
        fail("empty host list");
    }
    let conns = num("--conns", 32.0).max(1.0) as usize;
    let window = num("--window", 16.0).max(1.0) as usize;
    let mix_conns = num("--mix-conns", 64.0).max(1.0) as usize;
    let secs = Duration::from_secs_f64(num("--secs", 5.0));
    let warmup = Duration::from_secs_f64(num("--warmup", 2.0));
    let label = value("--label").unwrap_or_else(|| "target".into());
    let pids: Vec<String> = value("--pids")
        .map(|p| {
            p.split(',')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    let storm = StormConfig {
        sessions: num("--storm-sessions", 10_000.0).max(1.0) as usize,
        threads: num("--storm-threads", 2.0).max(1.0) as usize,
        pending: num("--storm-pending", 0.0).max(0.0) as usize,
        writers: num("--storm-writers", 4.0).max(0.0) as usize,
        timeout: Duration::from_secs_f64(num("--storm-timeout", 120.0)),
    };
    // What runs: --scenarios names them; --pipelined / --sync-clients alone keep to the
    // three basic scenarios (as before the others existed); by default, everything.
    let selected: Vec<String> = match value("--scenarios") {
        Some(list) => list
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| {
                if !ALL_SCENARIOS.contains(&s) {
                    fail(format!(
                        "unknown scenario {s:?} (known: {})",
                        ALL_SCENARIOS.join(", ")
                    ));
                }
                s.to_string()
            })
            .collect(),
        None if flag("--pipelined") || flag("--sync-clients") => {
            BASIC.iter().map(|s| s.to_string()).collect()
        }
        None => ALL_SCENARIOS.iter().map(|s| s.to_string()).collect(),
    };
    let has = |s: &str| selected.iter().any(|x| x == s);
    let basic: Vec<Load> = BASIC
        .iter()
        .filter(|s| has(s))
        .map(|s| Load::named(s).unwrap())
        .collect();
    let mixes: Vec<Load> = ["get90_set10", "raftkeeper"]
        .iter()
        .filter(|s| has(s))
        .map(|s| Load::named(s).unwrap())
        .collect();
    let one_client = has("one_client");
    let with_storm = has("session_open");
    let windows: Vec<usize> = if basic.is_empty() {
        vec![]
    } else if flag("--sync-clients") {
        vec![1]
    } else if flag("--pipelined") {
        vec![window]
    } else {
        vec![window, 1]
    };
    let prewarm = Duration::from_secs_f64(num("--prewarm", 12.0));
    SLOW.set(value("--slow-ms").map(|_| Duration::from_secs_f64(num("--slow-ms", 0.0) / 1000.0)))
        .ok();
    let out_file = value("--out");

    // The unmeasured first pass: each kind of request the run sends, under load.
    let mut warm: Vec<(Load, (usize, usize))> = Vec::new();
    let mut warm_kind = |name: &str, shape: (usize, usize)| {
        if !warm.iter().any(|(l, _)| l.name == name) {
            warm.push((Load::named(name).unwrap(), shape));
        }
    };
    for l in &basic {
        warm_kind(l.name, (conns, window));
    }
    if one_client {
        warm_kind("create", (conns, window));
        warm_kind("set_data", (conns, window));
    }
    if with_storm {
        warm_kind("set_data", (conns, window));
    }
    if !mixes.is_empty() {
        warm_kind("raftkeeper", (mix_conns, 1));
    }

    // The whole run's bound: every scenario, its connections opened and closed, with slack.
    let timed = windows.len() * basic.len() + 2 * usize::from(one_client) + mixes.len();
    let budget = prewarm
        + warm.len() as u32 * (Duration::from_millis(200) + 2 * ANSWER_TIMEOUT)
        + timed as u32 * (warmup + secs + 3 * ANSWER_TIMEOUT)
        + if with_storm {
            3 * storm.timeout + 2 * ANSWER_TIMEOUT
        } else {
            Duration::ZERO
        }
        + Duration::from_secs(120);
    std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || {
            std::thread::sleep(budget);
            fail(format!(
                "the run did not finish within its budget of {budget:?} (watchdog)"
            ));
        })
        .unwrap();
    if with_storm {
        ensure_fd_limit((storm.sessions + storm.writers + conns.max(mix_conns) + 256) as u64);
    }

    println!(
        "{label}: scenarios {}; {conns} connections at windows {windows:?}, mixes at {mix_conns}x1; \
         pre-warm-up {prewarm:?}, then per scenario warm-up {warmup:?} + {secs:?} measured; 100-byte data",
        selected.join(",")
    );
    if with_storm {
        println!(
            "  storm: {} sessions from {} threads (pending bound {}), {} writers, timeout {:?}",
            storm.sessions,
            storm.threads,
            if storm.pending == 0 {
                "none".to_string()
            } else {
                storm.pending.to_string()
            },
            storm.writers,
            storm.timeout
        );
    }
    for h in &hosts {
        println!("  {h}: {}", mode(*h));
    }

    // The tree the scenarios use: a root of this run's own, 1,000 znodes to set and read,
    // a znode with 100 children to list, and a parent for each scenario's creates.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let root = format!("/zkbench-{}-{nanos}", std::process::id());
    let mut setup = Conn::open(hosts[0]).unwrap_or_else(|e| fail(e));
    let mut parents = vec![root.clone(), format!("{root}/s"), format!("{root}/list")];
    for w in &windows {
        parents.push(format!("{root}/w{w}"));
    }
    for p in ["one", "rk", "warm"] {
        parents.push(format!("{root}/{p}"));
    }
    let parents = parents
        .iter()
        .enumerate()
        .map(|(i, p)| create_frame(1 + i as i32, p))
        .collect();
    setup_batch(&mut setup, parents, 1, false);
    let znodes = (0..znodes())
        .map(|i| create_frame(100 + i as i32, &format!("{root}/s/n{i}")))
        .chain(
            (0..LIST_CHILDREN)
                .map(|i| create_frame(100 + (znodes() + i) as i32, &format!("{root}/list/c{i}"))),
        )
        .collect();
    setup_batch(&mut setup, znodes, 64, false);
    setup.close(1_000_000);
    let target = Target {
        hosts: &hosts,
        root: &root,
        pids: &pids,
    };

    // Not measured: every kind of request runs once first (the JVM's JIT compiles the hot
    // paths in its first seconds under load; zkraft gets the same treatment).
    if !prewarm.is_zero() && !warm.is_empty() {
        let each = prewarm / warm.len() as u32;
        for (load, shape) in &warm {
            let t = Instant::now();
            let row = run_scenario(
                &target,
                load,
                *shape,
                each,
                Duration::from_millis(200),
                "warm",
            );
            if row.errors > 0 {
                fail(format!(
                    "pre-warm-up {}: {} requests answered with an error",
                    load.name, row.errors
                ));
            }
            println!("  (pre-warm-up: {} for {:.1?})", load.name, t.elapsed());
        }
    }

    let mut rows = Vec::new();
    let record = |row: Row, rows: &mut Vec<Row>| {
        println!(
            "  {:<12} {:>5}: {:>9} {}  p50 {}  p99 {}  max {}{}  worst 1s {}  errors {}",
            row.scenario,
            row.clients,
            thousands(row.ops),
            if row.scenario == "session_open" {
                "opens/s; handshake"
            } else {
                "ops/s"
            },
            ms(row.p50_us),
            ms(row.p99_us),
            ms(row.max_us),
            row.slowest
                .map(|(at, h)| format!(" (sent at {at:+.2}s to {h})"))
                .unwrap_or_default(),
            thousands(row.min_1s),
            row.errors
        );
        if !row.extra.is_empty() {
            println!(
                "      {}",
                row.extra
                    .iter()
                    .map(|(k, v)| format!("{k}={v:.3}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
        if let Some(path) = &out_file {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap_or_else(|e| fail(format!("{path}: {e}")));
            writeln!(f, "{}", row.tsv(&label)).unwrap_or_else(|e| fail(format!("{path}: {e}")));
        }
        rows.push(row);
    };
    for &w in &windows {
        for load in &basic {
            let tag = format!("w{w}");
            let row = run_scenario(&target, load, (conns, w), warmup, secs, &tag);
            record(row, &mut rows);
        }
    }
    if one_client {
        for name in ["create", "set_data"] {
            let load = Load::named(name).unwrap();
            let row = run_scenario(&target, &load, (1, 1), warmup, secs, "one");
            record(row, &mut rows);
        }
    }
    for load in &mixes {
        let row = run_scenario(&target, load, (mix_conns, 1), warmup, secs, "rk");
        record(row, &mut rows);
    }
    if with_storm {
        let row = run_storm(&target, &storm);
        record(row, &mut rows);
    }
    println!();
    print_rows(&rows);
    let errors: u64 = rows.iter().map(|r| r.errors).sum();
    if errors > 0 {
        fail(format!(
            "{errors} requests answered with an error (see above)"
        ));
    }
}
