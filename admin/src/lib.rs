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

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rustls::{ServerConfig, ServerConnection, StreamOwned};
use slog::{o, Logger};
use zkraft::{ClientAuth, Error, Monitor, Node, Result, TlsConfig};

pub use prometheus::{render, CONTENT_TYPE};

/// How long a connection has to send its request (and finish TLS's handshake).
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
}

impl AdminPortBuilder {
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
        let shared = Arc::new(Shared {
            page,
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
        // Wakes the blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(500));
        let acceptor = self.acceptor.lock().ok().and_then(|mut a| a.take());
        if let Some(t) = acceptor {
            let _ = t.join();
        }
    }
}

impl Drop for AdminPort {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Shared {
    /// The admin page, its peers filled in.
    page: String,
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
        let Ok(conn) = conn else { continue };
        if shared.active.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
            shared.active.fetch_sub(1, Ordering::AcqRel);
            slog::warn!(shared.logger, "too many admin connections: one closed");
            continue;
        }
        let s = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("zkraft-admin-conn".into())
            .spawn(move || {
                serve(&s, conn);
                s.active.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            shared.active.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Serves the one request of `conn`.
fn serve(shared: &Shared, conn: TcpStream) {
    if conn.set_read_timeout(Some(REQUEST_TIMEOUT)).is_err()
        || conn.set_write_timeout(Some(REQUEST_TIMEOUT)).is_err()
    {
        return;
    }
    let peer = conn.peer_addr().map(|a| a.to_string()).unwrap_or_default();
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

fn respond(shared: &Shared, request: &http::Request) -> http::Response {
    if let Some(want) = &shared.credentials {
        let given = request
            .basic
            .as_deref()
            .and_then(|b| b.split_once(':'))
            .map(|(user, password)| zkraft::acl::digest(user, password));
        if given.as_deref() != Some(want.as_str()) {
            return http::Response::unauthorized();
        }
    }
    if request.method != "GET" && request.method != "HEAD" {
        return http::Response::text(405, "only GET and HEAD are served");
    }
    let json = "application/json; charset=utf-8";
    let mut response = match request.path.trim_end_matches('/') {
        "/metrics" => http::Response::new(200, CONTENT_TYPE, prometheus::scrape(&shared.monitor)),
        "/commands" => http::Response::new(200, json, commands::list()),
        p if p.starts_with("/commands/") => {
            let name = &p["/commands/".len()..];
            let (status, body) = commands::run(&shared.monitor, name, &request.query);
            http::Response::new(status, json, body)
        }
        "" => http::Response::new(200, "text/html; charset=utf-8", shared.page.clone()),
        _ => http::Response::text(404, "no such page"),
    };
    // Another member's admin page may read it, unless credentials guard it.
    response.shared = shared.credentials.is_none();
    response
}
