//! The admin port of a zkraft node: an HTTP (or HTTPS) port that serves its metrics in the
//! Prometheus text format at `/metrics`. A front end, started on a node by whoever wants
//! it (`zkraft-server --metrics-addr` does), reading the node through a
//! [`zkraft::Monitor`].
//!
//! ```no_run
//! let dir = tempfile::tempdir().unwrap();
//! let node = zkraft::Node::builder(1).data_dir(dir.path()).start().unwrap();
//! let admin = zkraft_admin::AdminPort::builder("127.0.0.1:7000".parse().unwrap())
//!     .start(&node)
//!     .unwrap();
//! // curl http://127.0.0.1:7000/metrics
//! # drop(admin);
//! ```
//!
//! Every connection carries one request (`Connection: close`), read within
//! [`REQUEST_TIMEOUT`] and at most 16 KiB of head; at most [`MAX_CONNECTIONS`] are served
//! at once, each on a thread of its own. Access can be limited by binding a local
//! address, by credentials (HTTP Basic, checked against a ZooKeeper digest
//! `user:base64(sha1(user:password))`), and by TLS with the member's certificates.

mod commands;
mod http;
mod page;
mod prometheus;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustls::{ServerConfig, ServerConnection, StreamOwned};
use slog::{o, Logger};
use zkraft::{ClientAuth, Error, Monitor, Node, Result, TlsConfig};

pub use prometheus::{render, CONTENT_TYPE};

/// How long a connection has, all told, to send its request (TLS's handshake included)
/// and take its answer, however it paces its bytes.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Most connections served at once (more are closed at once).
pub const MAX_CONNECTIONS: usize = 16;

/// The settings of an [`AdminPort`], from [`AdminPort::builder`].
#[derive(Debug, Clone)]
pub struct AdminPortBuilder {
    addr: SocketAddr,
    tls: Option<(TlsConfig, ClientAuth)>,
    credentials: Option<String>,
    logger: Option<Logger>,
    peers: Vec<String>,
    metrics_only: bool,
}

impl AdminPortBuilder {
    /// Serves `/metrics` only (`zkraft-server --metrics-addr`): no commands, no page.
    pub fn metrics_only(mut self) -> Self {
        self.metrics_only = true;
        self
    }

    /// The other members' admin ports (`http://host:port`), whose views the admin page
    /// fetches to show every member's term, applied index and digest side by side.
    pub fn peers(mut self, urls: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.peers = urls.into_iter().map(Into::into).collect();
        self
    }

    /// Serves HTTPS only, with this member's certificate (`auth`: whether clients must
    /// present one of theirs; browsers usually present none: [`ClientAuth::None`]).
    pub fn tls(mut self, tls: TlsConfig, auth: ClientAuth) -> Self {
        self.tls = Some((tls, auth));
        self
    }

    /// Asks every request for HTTP Basic credentials matching `digest`, ZooKeeper's
    /// `user:base64(sha1(user:password))` form (`zkraft::acl::digest(user, password)`);
    /// others get 401.
    pub fn credentials(mut self, digest: impl Into<String>) -> Self {
        self.credentials = Some(digest.into());
        self
    }

    /// Where refused connections and failures are logged.
    pub fn logger(mut self, logger: Logger) -> Self {
        self.logger = Some(logger);
        self
    }

    /// Binds the port and serves `node` on it until [`AdminPort::stop`] (or drop).
    pub fn start(self, node: &Node) -> Result<AdminPort> {
        let tls = match &self.tls {
            Some((tls, auth)) => Some(tls.server_config(*auth)?),
            None => None,
        };
        if let Some(c) = &self.credentials {
            if !c.contains(':') {
                return Err(Error::Config(
                    "admin credentials must be user:base64(sha1(user:password))".into(),
                ));
            }
        }
        let listener = TcpListener::bind(self.addr)
            .map_err(|e| Error::Io(format!("admin port {}: {e}", self.addr)))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Io(format!("admin port: {e}")))?;
        let logger = self
            .logger
            .unwrap_or_else(|| Logger::root(slog::Discard, o!()))
            .new(o!("admin_port" => addr.to_string()));
        let page = page::render(&self.peers);
        let origins = self.peers.iter().filter_map(|p| origin_of(p)).collect();
        let shared = Arc::new(Shared {
            page,
            origins,
            metrics_only: self.metrics_only,
            monitor: node.monitor(),
            tls,
            credentials: self.credentials,
            logger,
            stopping: AtomicBool::new(false),
            active: AtomicUsize::new(0),
        });
        let s = shared.clone();
        let acceptor = std::thread::Builder::new()
            .name("zkraft-admin".into())
            .spawn(move || accept_loop(listener, s))
            .map_err(|e| Error::Io(format!("admin port thread: {e}")))?;
        slog::info!(shared.logger, "serving the admin port"; "tls" => shared.tls.is_some());
        Ok(AdminPort {
            addr,
            shared,
            acceptor: Mutex::new(Some(acceptor)),
        })
    }
}

/// A node's admin port (see the crate's documentation). Stopped when dropped.
pub struct AdminPort {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for AdminPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminPort")
            .field("addr", &self.addr)
            .finish()
    }
}

impl AdminPort {
    /// The settings of an admin port on `addr` (port 0 picks a free one): plain HTTP, no
    /// credentials.
    pub fn builder(addr: SocketAddr) -> AdminPortBuilder {
        AdminPortBuilder {
            addr,
            tls: None,
            credentials: None,
            logger: None,
            peers: Vec::new(),
            metrics_only: false,
        }
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting; returns once the accepting thread has ended (requests being
    /// served finish on their own threads, within [`REQUEST_TIMEOUT`]).
    pub fn stop(&self) {
        if self.shared.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        // Wakes the blocking accept; if that cannot connect, the thread ends at the next
        // connection instead, and is not waited for.
        let woken = TcpStream::connect_timeout(&wake_addr(self.addr), Duration::from_millis(500));
        let acceptor = self.acceptor.lock().ok().and_then(|mut a| a.take());
        if let (Ok(_), Some(t)) = (woken, acceptor) {
            let _ = t.join();
        }
    }
}

impl Drop for AdminPort {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Where to connect to reach a listener bound to `addr` (an unspecified address: loopback).
fn wake_addr(addr: SocketAddr) -> SocketAddr {
    let mut a = addr;
    if a.ip().is_unspecified() {
        a.set_ip(if a.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    a
}

/// The origin (`scheme://host:port`) of a peer's admin URL.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split('/').next()?;
    (!host.is_empty()).then(|| format!("{}://{}", scheme.to_ascii_lowercase(), host))
}

struct Shared {
    /// The admin page, its peers filled in.
    page: String,
    /// The peers' origins: their admin pages may read this port's answers (CORS).
    origins: Vec<String>,
    metrics_only: bool,
    monitor: Monitor,
    tls: Option<Arc<ServerConfig>>,
    credentials: Option<String>,
    logger: Logger,
    stopping: AtomicBool,
    active: AtomicUsize,
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for conn in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(conn) = conn else {
            // Out of file descriptors, say: not a reason to spin.
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        if shared.active.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
            shared.active.fetch_sub(1, Ordering::AcqRel);
            slog::warn!(shared.logger, "too many admin connections: one closed");
            continue;
        }
        let s = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("zkraft-admin-conn".into())
            .spawn(move || {
                // Counted out however the thread ends.
                let _slot = Slot(&s.active);
                serve(&s, conn);
            });
        if spawned.is_err() {
            shared.active.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// One connection counted in `Shared::active` until dropped.
struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection's socket, every read and write of which ends by one deadline.
struct Timed {
    sock: TcpStream,
    until: Instant,
}

impl Timed {
    fn left(&self) -> std::io::Result<Duration> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(std::io::ErrorKind::TimedOut.into())
        } else {
            Ok(left)
        }
    }
}

impl Read for Timed {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.left()?;
        self.sock.set_read_timeout(Some(left))?;
        self.sock.read(buf)
    }
}

impl Write for Timed {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let left = self.left()?;
        self.sock.set_write_timeout(Some(left))?;
        self.sock.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.sock.flush()
    }
}

/// Serves the one request of `conn`, all of it within [`REQUEST_TIMEOUT`].
fn serve(shared: &Shared, conn: TcpStream) {
    let peer = conn.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let conn = Timed {
        sock: conn,
        until: Instant::now() + REQUEST_TIMEOUT,
    };
    match &shared.tls {
        None => exchange(shared, &peer, &mut { conn }),
        Some(config) => match ServerConnection::new(config.clone()) {
            Ok(tls) => {
                let mut stream = StreamOwned::new(tls, conn);
                exchange(shared, &peer, &mut stream);
                // Written, never waited for: the client may be gone.
                stream.conn.send_close_notify();
                while stream.conn.wants_write() {
                    match stream.conn.write_tls(&mut stream.sock) {
                        Ok(n) if n > 0 => {}
                        _ => break,
                    }
                }
            }
            Err(e) => slog::warn!(shared.logger, "cannot start TLS"; "error" => %e),
        },
    }
}

fn exchange(shared: &Shared, peer: &str, stream: &mut (impl std::io::Read + std::io::Write)) {
    let request = match http::read_request(stream) {
        Ok(r) => r,
        Err(http::Bad::Request(status, why)) => {
            slog::info!(shared.logger, "admin request refused"; "peer" => peer, "why" => why);
            let _ = http::Response::text(status, why).write(stream, false);
            return;
        }
        Err(http::Bad::Io(e)) => {
            // A TLS handshake refused (garbage, an untrusted certificate) shows here.
            if e.kind() == std::io::ErrorKind::InvalidData {
                slog::info!(shared.logger, "admin connection refused: TLS"; "peer" => peer,
                    "error" => %e);
            }
            return;
        }
    };
    let head_only = request.method == "HEAD";
    let response = respond(shared, &request);
    let _ = response.write(stream, head_only);
}

/// Equal, comparing every byte.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn respond(shared: &Shared, request: &http::Request) -> http::Response {
    let mut response = route(shared, request);
    // The peers' admin pages may read the answers (with the credentials the browser
    // holds for them); no other origin may.
    if let Some(origin) = &request.origin {
        if shared
            .origins
            .iter()
            .any(|o| o.eq_ignore_ascii_case(origin))
        {
            response.allow_origin = Some(origin.clone());
        }
    }
    response
}

fn route(shared: &Shared, request: &http::Request) -> http::Response {
    // Who asks: with credentials configured, the operator who gave them reads everything
    // (the super user); without, the caller is anonymous, and the znodes shown are those
    // any client may read.
    let mut ids = Vec::new();
    if let Some(want) = &shared.credentials {
        let given = request
            .basic
            .as_deref()
            .and_then(|b| b.split_once(':'))
            .map(|(user, password)| zkraft::acl::digest(user, password));
        if !given.is_some_and(|g| same(g.as_bytes(), want.as_bytes())) {
            return http::Response::unauthorized();
        }
        ids.push(zkraft::Id::super_user());
    }
    if request.method != "GET" && request.method != "HEAD" {
        return http::Response::text(405, "only GET and HEAD are served");
    }
    let json = "application/json; charset=utf-8";
    match request.path.trim_end_matches('/') {
        "/metrics" => http::Response::new(200, CONTENT_TYPE, prometheus::scrape(&shared.monitor)),
        _ if shared.metrics_only => http::Response::text(404, "this port serves /metrics only"),
        "/commands" => http::Response::new(200, json, commands::list()),
        p if p.starts_with("/commands/") => {
            let name = &p["/commands/".len()..];
            let (status, body) = commands::run(&shared.monitor, name, &request.query, &ids);
            http::Response::new(status, json, body)
        }
        "" => http::Response::new(200, "text/html; charset=utf-8", shared.page.clone()),
        _ => http::Response::text(404, "no such page"),
    }
}
