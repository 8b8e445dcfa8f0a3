//! The ZooKeeper client port: ZooKeeper's client protocol (3.5–3.9 clients: kazoo,
//! Curator, zkCli, the Rust clients) served for a [`Node`](crate::Node) by a
//! [`ClientPort`], a front end that whoever wants it starts on the node
//! (`zkraft-server` does; an embedding application may).
//!
//! It is a thin adapter over the request pipeline: each connection's session is a
//! [`Session`](crate::Session) hosted by this node (opened, or re-attached after the
//! client moved from another member), each decoded request is submitted to it with the
//! connection as its [`Sink`](crate::Sink), and answers and watch notifications are
//! written in the session's order. Connections live on a fixed set of I/O threads
//! (`event_loop`), sessions are opened through the log with no thread waiting for them
//! (`handshake`), and watch callbacks run on the process's shared callback threads: no
//! thread per client.
//!
//! A session outlives its connection: when the client goes away without closing it,
//! this node stops heartbeating it, and the leader expires it after its timeout unless
//! the client reconnects (here or to another member) first — as ZooKeeper does.

pub(crate) mod commands;
mod conn;
#[cfg(test)]
mod conn_tests;
mod event_loop;
mod four_letter;
mod handshake;
mod requests;
mod socket;
mod stats;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use mio::Token;
use parking_lot::Mutex;
use slog::Logger;

use crate::error::{Error, Result};
use crate::host::Host;
use crate::replica::Shared;
use conn::ConnIo;
use event_loop::{Cmd, SelectorHandle};
use stats::ServerStats;

/// The client port's handling of a decoded request, without a connection: for the fuzz
/// target (`crate::fuzzing`). Watch registrations are made and dropped; a refusal's
/// answer is encoded and its frame checked.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn fuzz_request(xid: i32, req: crate::wire::proto::ClientRequest) {
    use crate::wire::proto::ClientRequest;
    if matches!(
        req,
        ClientRequest::Ping | ClientRequest::CloseSession | ClientRequest::Auth { .. }
    ) {
        return;
    }
    let (result, shape) = match requests::action(req) {
        requests::Action::Submit(request, shape) => {
            drop(request);
            (Err(Error::ConnectionLoss("fuzz".into())), shape)
        }
        requests::Action::Answer(result, shape) => (result, shape),
    };
    let frame = requests::encode_reply(&shape, xid, 1, result);
    let len = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
    assert_eq!(len + 4, frame.len(), "answer frame length");
}

/// What every thread of a listener shares.
pub(crate) struct Ctx {
    pub(crate) shared: Arc<Shared>,
    /// The node's host: its sessions.
    pub(crate) host: Arc<Host>,
    pub(crate) logger: Logger,
    pub(crate) addr: SocketAddr,
    pub(crate) stats: ServerStats,
    pub(crate) max_outstanding: usize,
    pub(crate) max_connections: usize,
    pub(crate) max_per_address: usize,
    /// The listen backlog asked of the kernel (`conf` reports it).
    pub(crate) listen_backlog: u32,
    /// Open connections per client address (with a limit per address).
    per_address: Mutex<HashMap<std::net::IpAddr, usize>>,
    pub(crate) handshake_timeout: Duration,
    pub(crate) stopping: AtomicBool,
    /// Whether a member without a quorum serves read-only clients (ZooKeeper's
    /// `readonlymode.enabled`).
    pub(crate) read_only_enabled: bool,
    /// Serving read-only now: the member has had no leader for an election timeout.
    pub(crate) read_only: AtomicBool,
    /// TLS on this port's connections (ZooKeeper's `secureClientPort`).
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    /// The users SASL DIGEST-MD5 authenticates, when SASL is served.
    pub(crate) sasl: Option<Arc<crate::SaslConfig>>,
    /// The next connection's token (from 2: 0 and 1 are the waker and the listener).
    pub(crate) next_token: AtomicUsize,
    four_letter_words: Vec<String>,
    conns: Mutex<HashMap<Token, Weak<ConnIo>>>,
    /// The connections of each session (more than one while a client's old connection
    /// has not been noticed gone).
    by_session: Mutex<HashMap<i64, Vec<Weak<ConnIo>>>>,
}

impl crate::host::PortFigures for Ctx {
    fn counts(&self) -> crate::host::PortCounts {
        if self.stopping.load(Ordering::Acquire) {
            return crate::host::PortCounts::default();
        }
        crate::host::PortCounts {
            connections: self.stats.connections.load(Ordering::Relaxed) as u64,
            received: self.stats.received.load(Ordering::Relaxed),
            sent: self.stats.sent.load(Ordering::Relaxed),
            outstanding: self.stats.outstanding.load(Ordering::Relaxed).max(0) as u64,
        }
    }

    fn into_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync> {
        self
    }
}

impl Ctx {
    /// What the threads of a client port of `host` bound to `addr` share, with no
    /// connection yet.
    pub(crate) fn new(host: Arc<Host>, settings: &ClientPortBuilder, addr: SocketAddr) -> Ctx {
        let shared = host.replica().clone();
        Ctx {
            logger: shared
                .logger()
                .new(slog::o!("client_port" => addr.to_string())),
            shared,
            host,
            addr,
            stats: ServerStats::new(),
            max_outstanding: settings.max_outstanding_per_connection,
            max_connections: settings.max_connections,
            max_per_address: settings.max_connections_per_address,
            listen_backlog: settings.listen_backlog,
            per_address: Mutex::new(HashMap::new()),
            handshake_timeout: settings.handshake_timeout,
            stopping: AtomicBool::new(false),
            read_only_enabled: settings.read_only_mode,
            read_only: AtomicBool::new(false),
            tls: None,
            sasl: settings.sasl.clone().map(Arc::new),
            next_token: AtomicUsize::new(2),
            four_letter_words: settings.four_letter_words.clone(),
            conns: Mutex::new(HashMap::new()),
            by_session: Mutex::new(HashMap::new()),
        }
    }

    /// Whether the whitelist lets `word` be answered.
    pub(crate) fn four_letter_allowed(&self, word: &str) -> bool {
        self.four_letter_words
            .iter()
            .any(|w| w == "*" || w.eq_ignore_ascii_case(word))
    }

    /// Counts a new connection from `ip`; false (and not counted) if `ip` has as many
    /// as it may.
    pub(crate) fn admit(&self, ip: std::net::IpAddr) -> bool {
        if self.max_per_address == 0 {
            return true;
        }
        let mut per = self.per_address.lock();
        let n = per.entry(ip).or_insert(0);
        if *n >= self.max_per_address {
            return false;
        }
        *n += 1;
        true
    }

    /// A connection from `ip` closed.
    pub(crate) fn release_address(&self, ip: std::net::IpAddr) {
        if self.max_per_address == 0 {
            return;
        }
        let mut per = self.per_address.lock();
        if let Some(n) = per.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                per.remove(&ip);
            }
        }
    }

    fn register(&self, io: &Arc<ConnIo>) {
        self.conns.lock().insert(io.token, Arc::downgrade(io));
    }

    fn unregister(&self, io: &ConnIo) {
        self.conns.lock().remove(&io.token);
        let session = io.session.load(Ordering::Relaxed);
        if session != 0 {
            let mut by = self.by_session.lock();
            if let Some(list) = by.get_mut(&session) {
                list.retain(|w| w.upgrade().is_some_and(|c| c.token != io.token));
                if list.is_empty() {
                    by.remove(&session);
                }
            }
        }
    }

    /// Records that connection `io` serves `session`.
    pub(crate) fn serves(&self, io: &Arc<ConnIo>, session: i64) {
        io.session.store(session, Ordering::Relaxed);
        let mut by = self.by_session.lock();
        // Checked under the map's lock: a connection closed before this is not recorded
        // (its unregistering may have run already).
        if io.is_closed() {
            return;
        }
        by.entry(session).or_default().push(Arc::downgrade(io));
    }

    /// The log closed or expired `session`, or re-attached it here: its connections here
    /// are closed (but for the one that asked to close it, which closes once its answer
    /// is written), as ZooKeeper's servers close every connection of a closed session and
    /// the older connection of a client that reconnected. Runs on the driver: it only
    /// tells the I/O threads.
    fn session_ended(&self, session: i64) {
        let conns = self.by_session.lock().remove(&session).unwrap_or_default();
        for io in conns.iter().filter_map(Weak::upgrade) {
            if !io.closing_session() {
                io.selector()
                    .send(Cmd::Close(io.token, "session closed, expired or moved"));
            }
        }
    }

    /// The open connections, oldest first.
    pub(crate) fn connections(&self) -> Vec<Arc<ConnIo>> {
        let mut v: Vec<Arc<ConnIo>> = self
            .conns
            .lock()
            .values()
            .filter_map(Weak::upgrade)
            .collect();
        v.sort_by_key(|c| c.token);
        v
    }

    /// `crst`: every connection's figures back to zero.
    pub(crate) fn reset_connection_stats(&self) {
        for c in self.connections() {
            let s = &c.stats;
            s.received.store(0, Ordering::Relaxed);
            s.sent.store(0, Ordering::Relaxed);
            s.latency.reset();
        }
    }
}

/// Default [`ClientPortBuilder::max_connections`].
pub const DEFAULT_MAX_CLIENT_CONNECTIONS: usize = 20_000;
/// Default [`ClientPortBuilder::max_connections_per_address`] (ZooKeeper's
/// `maxClientCnxns`).
pub const DEFAULT_MAX_CLIENT_CONNECTIONS_PER_ADDRESS: usize = 60;
/// Default [`ClientPortBuilder::listen_backlog`].
pub const DEFAULT_LISTEN_BACKLOG: u32 = 1024;
/// Default [`ClientPortBuilder::max_outstanding_per_connection`].
pub const DEFAULT_MAX_OUTSTANDING_PER_CONNECTION: usize = 1_000;

/// The settings of a [`ClientPort`] (ZooKeeper's `clientPort…` settings), built from
/// [`ClientPort::builder`].
#[derive(Debug, Clone)]
pub struct ClientPortBuilder {
    addr: SocketAddr,
    four_letter_words: Vec<String>,
    max_connections: usize,
    max_connections_per_address: usize,
    max_outstanding_per_connection: usize,
    handshake_timeout: Duration,
    io_threads: usize,
    listen_backlog: u32,
    read_only_mode: bool,
    tls: Option<(crate::TlsConfig, crate::ClientAuth)>,
    sasl: Option<crate::SaslConfig>,
}

impl ClientPortBuilder {
    /// The four-letter words answered (ZooKeeper's `4lw.commands.whitelist`; default
    /// `srvr` only, as ZooKeeper 3.5+; `"*"` allows them all). Others get ZooKeeper's
    /// "is not executed because it is not in the whitelist."
    pub fn four_letter_words<S: Into<String>>(
        mut self,
        words: impl IntoIterator<Item = S>,
    ) -> Self {
        self.four_letter_words = words.into_iter().map(Into::into).collect();
        self
    }

    /// Most client connections at once (default
    /// [`DEFAULT_MAX_CLIENT_CONNECTIONS`]); more are refused at accept.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }

    /// Most client connections at once from one IP address (ZooKeeper's
    /// `maxClientCnxns`, default 60; 0: no limit); more are closed at accept.
    pub fn max_connections_per_address(mut self, n: usize) -> Self {
        self.max_connections_per_address = n;
        self
    }

    /// Most requests of one connection unanswered at once (default 1,000): beyond it the
    /// connection is not read until answers catch up. At most
    /// [`MAX_OUTSTANDING`](crate::MAX_OUTSTANDING).
    pub fn max_outstanding_per_connection(mut self, n: usize) -> Self {
        self.max_outstanding_per_connection = n;
        self
    }

    /// A connection that sends no handshake for this long is closed (default 10 s); so
    /// is an answered one (a four-letter word, a refused handshake) its client does not
    /// read.
    pub fn handshake_timeout(mut self, d: Duration) -> Self {
        self.handshake_timeout = d;
        self
    }

    /// Threads serving connections, each an event loop over its share of them (default
    /// 2, at most 64).
    pub fn io_threads(mut self, n: usize) -> Self {
        self.io_threads = n;
        self
    }

    /// The listen backlog: connections the kernel completes and queues before they are
    /// accepted (ZooKeeper's `clientPortListenBacklog`; default
    /// [`DEFAULT_LISTEN_BACKLOG`], 1 to 65,535). Thousands of clients reconnecting at once
    /// after a member dies overflow a short queue, and the kernel drops their connects,
    /// which clients retry only after a second. Linux caps it at `net.core.somaxconn`.
    pub fn listen_backlog(mut self, n: u32) -> Self {
        self.listen_backlog = n;
        self
    }

    /// Whether the member serves read-only clients while it has no quorum (ZooKeeper's
    /// `readonlymode.enabled`; default false). After an election timeout without a
    /// leader, the member lets every client go, then takes only clients that asked for a
    /// read-only session (ZooKeeper's `canBeReadOnly`): their reads are served from its
    /// own state, their writes answered `NotReadOnly`, and their sessions are local (a
    /// session the member knows keeps its id). When a leader is back, read-only clients
    /// are let go too, and reconnect to a member that serves writes. Without it, a
    /// member without a quorum lets its clients go and takes none.
    pub fn read_only_mode(mut self, enabled: bool) -> Self {
        self.read_only_mode = enabled;
        self
    }

    /// Serves TLS only, as ZooKeeper's `secureClientPort` (kazoo's `use_ssl`, Java
    /// clients with `ClientCnxnSocketNetty` and `zookeeper.client.secure`): clients check
    /// this member's certificate, and `auth` says whether the member asks for theirs
    /// (ZooKeeper's `ssl.clientAuth`). A plain port and a TLS one may run side by side on
    /// one node: start two.
    pub fn tls(mut self, tls: crate::TlsConfig, auth: crate::ClientAuth) -> Self {
        self.tls = Some((tls, auth));
        self
    }

    /// Serves SASL DIGEST-MD5 logins with these users (ZooKeeper's JAAS `Server` section,
    /// [`SaslConfig::from_jaas_file`](crate::SaslConfig::from_jaas_file)): a client that
    /// logs in holds the identity `sasl:<user>` for ACLs; bad credentials are answered
    /// `AuthFailed` and the connection closed, as ZooKeeper does. Without it, a SASL
    /// token is answered with none and authenticates nothing, as a ZooKeeper server
    /// without a JAAS login answers it.
    pub fn sasl(mut self, users: crate::SaslConfig) -> Self {
        self.sasl = Some(users);
        self
    }

    /// Binds the port and serves `node`'s sessions on it. The node's
    /// [`shutdown`](crate::Node::shutdown) stops it first (its clients see their
    /// connections close, and re-attach their sessions elsewhere).
    pub fn start(self, node: &crate::Node) -> Result<ClientPort> {
        if self.max_connections == 0
            || self.max_outstanding_per_connection == 0
            || self.max_outstanding_per_connection > crate::MAX_OUTSTANDING
            || self.handshake_timeout.is_zero()
            || self.io_threads == 0
            || self.io_threads > 64
            || !(1..=65_535).contains(&self.listen_backlog)
        {
            return Err(Error::Config(
                "a client port needs max_connections > 0, 0 < max_outstanding_per_connection \
                 <= MAX_OUTSTANDING, handshake_timeout > 0, 1 <= io_threads <= 64 and \
                 1 <= listen_backlog <= 65535"
                    .into(),
            ));
        }
        let shared = node.shared().clone();
        shared.check_running()?;
        let listener = Arc::new(Listener::start(node.host().clone(), self)?);
        let weak = Arc::downgrade(&listener);
        shared.on_shutdown(Box::new(move || {
            if let Some(l) = weak.upgrade() {
                l.stop();
            }
        }));
        if let Err(e) = shared.check_running() {
            // The node shut down meanwhile, past its front ends' stops.
            listener.stop();
            return Err(e);
        }
        Ok(ClientPort { listener })
    }
}

/// ZooKeeper's client port for a [`Node`](crate::Node): kazoo, Curator, zkCli and the
/// Rust ZooKeeper clients connect here (docs/client-port.md). Stopped when dropped, by
/// [`ClientPort::stop`], or when its node shuts down.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let node = zkraft::Node::builder(1).data_dir(dir.path()).start().unwrap();
/// let port = zkraft::ClientPort::builder("127.0.0.1:0".parse().unwrap())
///     .four_letter_words(["ruok", "srvr"])
///     .start(&node)
///     .unwrap();
/// println!("ZooKeeper clients connect to {}", port.local_addr());
/// ```
pub struct ClientPort {
    listener: Arc<Listener>,
}

impl ClientPort {
    /// The settings of a client port on `addr` (ZooKeeper's
    /// `clientPortAddress:clientPort`; port 0 picks a free one,
    /// [`ClientPort::local_addr`] tells), with ZooKeeper's defaults.
    pub fn builder(addr: SocketAddr) -> ClientPortBuilder {
        ClientPortBuilder {
            addr,
            four_letter_words: vec!["srvr".to_string()],
            max_connections: DEFAULT_MAX_CLIENT_CONNECTIONS,
            max_connections_per_address: DEFAULT_MAX_CLIENT_CONNECTIONS_PER_ADDRESS,
            max_outstanding_per_connection: DEFAULT_MAX_OUTSTANDING_PER_CONNECTION,
            handshake_timeout: Duration::from_secs(10),
            io_threads: 2,
            listen_backlog: DEFAULT_LISTEN_BACKLOG,
            read_only_mode: false,
            tls: None,
            sasl: None,
        }
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr()
    }

    /// Stops serving: every connection closes (their sessions stay, to be re-attached
    /// elsewhere or to expire). Returns once its threads have ended.
    pub fn stop(&self) {
        self.listener.stop();
    }
}

impl std::fmt::Debug for ClientPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientPort")
            .field("addr", &self.local_addr())
            .finish()
    }
}

/// A running client port.
pub(crate) struct Listener {
    ctx: Arc<Ctx>,
    addr: SocketAddr,
    acceptor_waker: Arc<mio::Waker>,
    selectors: Vec<Arc<SelectorHandle>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// The port's hook in the host (see `Host::on_session_ended`).
    hook: u64,
}

impl Listener {
    /// Binds the client port of the node `host` serves and starts its threads.
    pub(crate) fn start(host: Arc<Host>, settings: ClientPortBuilder) -> Result<Listener> {
        let addr = settings.addr;
        let io_err =
            |what: &str, e: std::io::Error| Error::Io(format!("client port {addr}: {what}: {e}"));
        let std_listener = bind(addr, settings.listen_backlog).map_err(|e| io_err("bind", e))?;
        let local = std_listener
            .local_addr()
            .map_err(|e| io_err("address", e))?;
        let listener = mio::net::TcpListener::from_std(std_listener);
        let mut ctx = Ctx::new(host, &settings, local);
        if let Some((tls, auth)) = &settings.tls {
            ctx.tls = Some(tls.client_port(*auth)?);
        }
        let ctx = Arc::new(ctx);
        let figures: Arc<dyn crate::host::PortFigures> = ctx.clone();
        ctx.host.add_port(Arc::downgrade(&figures));
        let weak = Arc::downgrade(&ctx);
        let hook = ctx.host.on_session_ended(Box::new(move |session| {
            if let Some(ctx) = weak.upgrade() {
                ctx.session_ended(session);
            }
        }));
        let mut threads = Vec::new();
        let mut selectors = Vec::new();
        let stop_started =
            |ctx: &Ctx, selectors: &[Arc<SelectorHandle>], threads: Vec<JoinHandle<()>>| {
                ctx.stopping.store(true, Ordering::Release);
                ctx.host.forget_session_ended(hook);
                for s in selectors {
                    s.send(Cmd::Stop);
                }
                for t in threads {
                    let _ = t.join();
                }
            };
        for n in 0..settings.io_threads {
            match event_loop::start_selector(ctx.clone(), n) {
                Ok((h, t)) => {
                    selectors.push(h);
                    threads.push(t);
                }
                Err(e) => {
                    stop_started(&ctx, &selectors, threads);
                    return Err(io_err("I/O thread", e));
                }
            }
        }
        let (acceptor_waker, t) =
            match event_loop::start_acceptor(ctx.clone(), listener, selectors.clone()) {
                Ok(x) => x,
                Err(e) => {
                    stop_started(&ctx, &selectors, threads);
                    return Err(io_err("accept thread", e));
                }
            };
        threads.push(t);
        slog::info!(ctx.logger, "serving ZooKeeper clients"; "addr" => %local,
            "tls" => ctx.tls.is_some());
        Ok(Listener {
            ctx,
            addr: local,
            acceptor_waker,
            selectors,
            threads: Mutex::new(threads),
            hook,
        })
    }

    /// The address the port is bound to.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every connection (their sessions stay, to expire or be re-attached
    /// elsewhere) and stops the threads. Idempotent.
    pub(crate) fn stop(&self) {
        self.ctx.stopping.store(true, Ordering::Release);
        self.ctx.host.forget_session_ended(self.hook);
        let _ = self.acceptor_waker.wake();
        for s in &self.selectors {
            s.send(Cmd::Stop);
        }
        let threads: Vec<JoinHandle<()>> = self.threads.lock().drain(..).collect();
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A non-blocking listener on `addr` with `backlog` (std's `TcpListener::bind` has no
/// backlog setting). SO_REUSEADDR as std sets it: a restarted member binds its port again
/// while the old connections linger in TIME_WAIT.
fn bind(addr: SocketAddr, backlog: u32) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    // At most 65,535: fits an i32.
    socket.listen(backlog as i32)?;
    Ok(socket.into())
}
