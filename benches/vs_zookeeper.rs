//! zkraft against Apache ZooKeeper with one and the same client: a ZooKeeper wire-protocol
//! load generator written here on `std::net::TcpStream` (jute encoded by hand), pointed at
//! any ensemble that speaks ZooKeeper's client protocol.
//!
//! ```text
//! ./dev bench --vs-zookeeper                   # both ensembles, one after the other, side by side
//! ZK_HOSTS=127.0.0.1:2181,127.0.0.1:2182,127.0.0.1:2183 cargo bench --bench vs_zookeeper
//! cargo bench --bench vs_zookeeper -- --hosts H1,H2,H3 --conns 32 --window 16 --secs 5
//! cargo bench --bench vs_zookeeper -- --hosts ... --sync-clients   # window 1
//! cargo bench --bench vs_zookeeper -- --compare zookeeper.tsv zkraft.tsv
//! ```
//!
//! C connections (`--conns`, default 32) are spread round-robin over the hosts, each with a
//! session of its own; each keeps W requests (`--window`, default 16) in flight, as
//! ZooKeeper's clients pipeline, or one (`--sync-clients`, a synchronous client). Per
//! scenario, after `--warmup` seconds (default 2, not counted: the JVM compiles, batches
//! settle), for `--secs` seconds (default 5):
//!
//! - `create`: persistent znodes with 100 bytes of data, each at a new path;
//! - `set_data`: 100 bytes on 1,000 znodes created beforehand, version −1, znode at random;
//! - `get_data`: reads of the same znodes (no watch).
//!
//! Latency is from the request's write to its answer, so with W > 1 it includes queueing
//! behind the connection's other requests. Both kinds run by default, the pipelined
//! scenarios first; `--pipelined` or `--sync-clients` runs one kind only. Before any is
//! measured, `--prewarm` seconds (default 9) run each scenario once, unmeasured. `--pids P1,P2,P3` (the servers' processes) adds the servers' CPU
//! time per operation, from `/proc/PID/stat`; the client's own is always reported.
//! `--slow-ms N` prints every answer that took N ms or more as it arrives.
//! `--label L --out FILE` appends one tab-separated line per scenario to FILE;
//! `--compare A B` prints two such files side by side.
//!
//! Every wait is bounded: a connection that fails, closes, or leaves a request unanswered
//! for 10 s fails the run with a message (exit 1), as does any error code in an answer.

use std::collections::{BTreeMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

const CREATE: i32 = 1;
const GET_DATA: i32 = 4;
const SET_DATA: i32 = 5;
const CLOSE_SESSION: i32 = -11;

const ZNODES: usize = 1_000;
const DATA: [u8; 100] = [b'x'; 100];
const SESSION_TIMEOUT_MS: i32 = 30_000;
/// The longest any answer (or the handshake) may take before the run fails.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
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
        Jute::default().str(path).bytes(&DATA).open_acl().int(0),
    )
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
        let hello = Jute::default()
            .int(0) // protocol version
            .long(0) // last zxid seen
            .int(SESSION_TIMEOUT_MS)
            .long(0) // a new session
            .bytes(&[0u8; 16])
            .bool(false); // read-only: no
        let mut frame = (hello.0.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&hello.0);
        c.write(&frame)?;
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

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Create,
    SetData,
    GetData,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::SetData => "set_data",
            Op::GetData => "get_data",
        }
    }
}

struct Plan {
    op: Op,
    /// Parent of the scenario's creates.
    create_parent: String,
    /// Frames of set_data / get_data for each of the znodes, xid 0 (patched per request).
    templates: Vec<Vec<u8>>,
    warm_end: Instant,
    end: Instant,
    /// `--slow-ms`: answers at least this slow are printed as they come (diagnosis).
    slow: Option<Duration>,
}

#[derive(Default)]
struct Tally {
    latencies_ns: Vec<u64>,
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
    let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ ((index as u64 + 1) << 17);
    let mut next = |n: usize| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % n as u64) as usize
    };
    let mut xid: i32 = 0;
    let mut seq: u64 = 0;
    let mut inflight: VecDeque<(i32, Instant)> = VecDeque::with_capacity(window);
    let mut out: Vec<u8> = Vec::with_capacity(window * 256);
    let mut request = |out: &mut Vec<u8>, inflight: &mut VecDeque<(i32, Instant)>| {
        xid += 1;
        match plan.op {
            Op::Create => {
                seq += 1;
                let path = format!("{}/c{index}-{seq}", plan.create_parent);
                out.extend_from_slice(&create_frame(xid, &path));
            }
            Op::SetData | Op::GetData => {
                let at = out.len();
                out.extend_from_slice(&plan.templates[next(ZNODES)]);
                out[at + 4..at + 8].copy_from_slice(&xid.to_be_bytes());
            }
        }
        inflight.push_back((xid, Instant::now()));
    };
    for _ in 0..window {
        request(&mut out, &mut inflight);
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
            let (want, sent) = inflight
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
                    "  slow: {} ms for xid {rxid} on connection {index} to {host} (session {:#x}), sent at {:+.3}s",
                    (now - sent).as_millis(),
                    conn_session,
                    since(plan.warm_end, sent)
                );
            }
            if err != 0 {
                *tally.errors.entry(err).or_default() += 1;
            } else if plan.op == Op::GetData
                && (f.len() < 20 || be_i32(f, 16) as usize != DATA.len())
            {
                tally.bad_answers += 1;
            }
            if measured {
                let ns = (now - sent).as_nanos() as u64;
                if tally.slowest.is_none_or(|(m, _, _)| ns > m) {
                    tally.slowest = Some((ns, since(plan.warm_end, sent), host));
                }
                tally.latencies_ns.push(ns);
                let second = (now - plan.warm_end).as_secs() as usize;
                tally.per_second[second] += 1;
            }
            if now < plan.end {
                request(&mut out, &mut inflight);
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
}

impl Row {
    fn tsv(&self, label: &str) -> String {
        format!(
            "{label}\t{}\t{}\t{:.0}\t{:.0}\t{:.0}\t{:.0}\t{:.0}\t{}\t{}\t{:.1}",
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

#[allow(clippy::too_many_arguments)]
fn run_scenario(
    hosts: &[SocketAddr],
    op: Op,
    conns: usize,
    window: usize,
    warmup: Duration,
    secs: Duration,
    root: &str,
    pids: &[String],
    tag: &str,
) -> Row {
    let connections = open_all(hosts, conns);
    let templates = (0..ZNODES)
        .map(|i| {
            let path = format!("{root}/s/n{i}");
            match op {
                Op::GetData => Jute::request(0, GET_DATA, Jute::default().str(&path).bool(false)),
                _ => Jute::request(0, SET_DATA, Jute::default().str(&path).bytes(&DATA).int(-1)),
            }
        })
        .collect();
    let start = Instant::now() + Duration::from_millis(20);
    let plan = Arc::new(Plan {
        op,
        create_parent: format!("{root}/{tag}"),
        templates,
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
                all.latencies_ns.extend(t.latencies_ns);
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
            op.name(),
            failures.len(),
            failures[0]
        ));
    }
    let mut lat = all.latencies_ns;
    lat.sort_unstable();
    let pct = |p: f64| {
        if lat.is_empty() {
            0.0
        } else {
            lat[((lat.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0
        }
    };
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
            op.name(),
            all.errors,
            all.bad_answers
        );
    }
    let per_op = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if n > 0.0 => Some((b - a) / n * 1e6),
        _ => None,
    };
    Row {
        scenario: op.name().into(),
        clients: format!("{conns}x{window}"),
        ops: n / secs.as_secs_f64(),
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        max_us: pct(1.0),
        min_1s,
        errors,
        slowest: all.slowest.map(|(_, at, host)| (at, host)),
        server_cpu_us: per_op(srv0, srv1),
        client_cpu_us: per_op(cli0, cli1).unwrap_or(0.0),
    }
}

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
        "{:<10} {:>8} {:>10} {:>9} {:>9} {:>9} {:>9} {:>6} {:>11} {:>11}",
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
            "{:<10} {:>8} {:>10} {:>9} {:>9} {:>9} {:>9} {:>6} {:>11} {:>11}",
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

/// Prints two `--out` files side by side (markdown).
fn compare(a: &str, b: &str) {
    let read = |p: &str| -> Vec<Vec<String>> {
        std::fs::read_to_string(p)
            .unwrap_or_else(|e| fail(format!("{p}: {e}")))
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.split('\t').map(str::to_string).collect())
            .collect()
    };
    let (ra, rb) = (read(a), read(b));
    let label =
        |rows: &[Vec<String>], p: &str| rows.first().map(|r| r[0].clone()).unwrap_or(p.into());
    let (la, lb) = (label(&ra, a), label(&rb, b));
    let num = |s: &str| s.parse::<f64>().unwrap_or(0.0);
    let cpu = |s: &str| {
        if s == "-" {
            "-".into()
        } else {
            format!("{:.0} µs", num(s))
        }
    };
    println!(
        "| scenario | clients × window | {la} ops/s | p50 / p99 | {lb} ops/s | p50 / p99 | {lb} / {la} | server CPU per op ({la} / {lb}) | errors |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for x in &ra {
        let Some(y) = rb.iter().find(|y| y[1] == x[1] && y[2] == x[2]) else {
            continue;
        };
        let (ox, oy) = (num(&x[3]), num(&y[3]));
        println!(
            "| {} | {} | {} | {} / {} | {} | {} / {} | {:.2}× | {} / {} | {} / {} |",
            x[1],
            x[2].replace('x', " × "),
            thousands(ox),
            ms(num(&x[4])),
            ms(num(&x[5])),
            thousands(oy),
            ms(num(&y[4])),
            ms(num(&y[5])),
            if ox > 0.0 { oy / ox } else { 0.0 },
            cpu(&x[9]),
            cpu(&y[9]),
            x[8],
            y[8],
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
        let (Some(a), Some(b)) = (args.get(i + 1), args.get(i + 2)) else {
            fail("--compare A.tsv B.tsv");
        };
        compare(a, b);
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
    let conns = num("--conns", 32.0) as usize;
    let window = num("--window", 16.0).max(1.0) as usize;
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
    let ops: Vec<Op> = value("--scenarios")
        .unwrap_or_else(|| "create,set_data,get_data".into())
        .split(',')
        .map(|s| match s {
            "create" => Op::Create,
            "set_data" => Op::SetData,
            "get_data" => Op::GetData,
            other => fail(format!("unknown scenario {other:?}")),
        })
        .collect();
    let windows: Vec<usize> = if flag("--sync-clients") {
        vec![1]
    } else if flag("--pipelined") {
        vec![window]
    } else {
        vec![window, 1]
    };
    let prewarm = Duration::from_secs_f64(num("--prewarm", 9.0));
    SLOW.set(value("--slow-ms").map(|_| Duration::from_secs_f64(num("--slow-ms", 0.0) / 1000.0)))
        .ok();

    println!(
        "{label}: {conns} connections, windows {windows:?}; pre-warm-up {prewarm:?}, then per scenario \
         warm-up {warmup:?} + {secs:?} measured; 100-byte data"
    );
    for h in &hosts {
        println!("  {h}: {}", mode(*h));
    }

    // The tree the scenarios use: a root of this run's own, 1,000 znodes to set and read.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let root = format!("/zkbench-{}-{nanos}", std::process::id());
    let mut setup = Conn::open(hosts[0]).unwrap_or_else(|e| fail(e));
    let mut parents = vec![
        create_frame(1, &root),
        create_frame(2, &format!("{root}/s")),
    ];
    for (i, w) in windows.iter().enumerate() {
        parents.push(create_frame(3 + i as i32, &format!("{root}/w{w}")));
    }
    parents.push(create_frame(9, &format!("{root}/warm")));
    setup_batch(&mut setup, parents, 1, false);
    let znodes = (0..ZNODES)
        .map(|i| create_frame(100 + i as i32, &format!("{root}/s/n{i}")))
        .collect();
    setup_batch(&mut setup, znodes, 64, false);
    setup.close(1_000_000);

    // Not measured: every scenario's code path runs once first (the JVM's JIT compiles the
    // hot paths in its first seconds under load; zkraft gets the same treatment).
    if !prewarm.is_zero() {
        let each = prewarm / ops.len() as u32;
        for &op in &ops {
            let t = Instant::now();
            run_scenario(
                &hosts,
                op,
                conns,
                window,
                each,
                Duration::from_millis(200),
                &root,
                &[],
                "warm",
            );
            println!("  (pre-warm-up: {} for {:.1?})", op.name(), t.elapsed());
        }
    }

    let out_file = value("--out");
    let mut rows = Vec::new();
    for &w in &windows {
        for &op in &ops {
            let row = run_scenario(
                &hosts,
                op,
                conns,
                w,
                warmup,
                secs,
                &root,
                &pids,
                &format!("w{w}"),
            );
            println!(
                "  {:<9} {conns}x{w}: {:>9} ops/s  p50 {}  p99 {}  max {} ({})  worst 1s {}  errors {}",
                row.scenario,
                thousands(row.ops),
                ms(row.p50_us),
                ms(row.p99_us),
                ms(row.max_us),
                row.slowest
                    .map(|(at, h)| format!("sent at {at:+.2}s to {h}"))
                    .unwrap_or_default(),
                thousands(row.min_1s),
                row.errors
            );
            if let Some(path) = &out_file {
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .unwrap_or_else(|e| fail(format!("{path}: {e}")));
                writeln!(f, "{}", row.tsv(&label)).unwrap_or_else(|e| fail(format!("{path}: {e}")));
            }
            rows.push(row);
        }
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
