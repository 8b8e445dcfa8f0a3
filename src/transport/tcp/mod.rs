//! [`TcpTransport`]: the members of an ensemble in separate processes or machines, over
//! `std::net` TCP.
//!
//! Each member dials every peer once and keeps that connection for what it sends; what it
//! receives arrives on the connections its peers dialled (etcd's rafthttp and TiKV keep
//! long-lived streams the same way). Everything on the wire is bounded:
//!
//! - **Handshake.** A dialler opens with magic `ZKRT`, the protocol version, the cluster
//!   id, its own node id and the id it means to reach. The listener refuses — with a
//!   logged reason and a one-byte answer — another cluster, a sender that is not one of
//!   its configured peers, the wrong target id, or a newer protocol version: a node of
//!   another ensemble can never vote in this one. A connection that does not complete its
//!   handshake within [`HANDSHAKE_TIMEOUT`] is closed, and at most
//!   [`MAX_INBOUND_CONNECTIONS`] are open at once.
//! - **Frames.** A 4-byte big-endian length, then an encoded [`Envelope`]. A frame longer
//!   than the maximum frame size, an empty or undecodable one, or one claiming another
//!   sender closes that connection with a logged reason; the node never sees it.
//! - **Queues.** `send` never blocks. When nothing for the peer is waiting and the link is
//!   idle, it writes the frames itself, at once, with one non-blocking write (a leader's
//!   commit broadcast leaves without waiting for another thread to be scheduled; bytes
//!   the socket does not take go to the writer thread, ahead of anything queued later).
//!   Otherwise it puts the encoded envelopes on the peer's bounded queue (by count and by
//!   bytes) and returns; a full queue drops the envelope (raft retransmits). One writer
//!   thread per peer drains the queue, packing whatever is waiting into one write
//!   syscall. Sockets have `TCP_NODELAY`. A dead or slow peer therefore neither blocks
//!   the node nor grows its memory.
//! - **Reconnect.** A lost connection is redialled with capped exponential backoff, so a
//!   restarted peer is picked up without restarting anyone else.
//! - **A peer gone.** A connection the other end closes or resets, or a dial nothing
//!   answers (refused), is reported to the node ([`Inbox::peer_lost`]): when a process
//!   dies the kernel closes its sockets at once, and a follower that hears its leader went
//!   can start an election without waiting out the timeout. The connection this member
//!   dialled to that peer is closed with it and redialled at the next send, so nothing
//!   more is written into a socket whose other end is gone.

use std::collections::HashMap;
use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use parking_lot::{Mutex, RwLock};
use slog::{o, Logger};

use super::{Envelope, Inbox, Transport};
use crate::error::{Error, Result};
use crate::tls::TlsConfig;

mod stream;
use stream::{Inbound, Outbound};

const MAGIC: &[u8; 4] = b"ZKRT";
/// The wire protocol this build speaks; a peer announcing a newer one is refused.
pub const PROTOCOL_VERSION: u16 = 1;
/// How long a new connection has to complete its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Most inbound connections open at once (a few per peer; the rest are refused).
pub const MAX_INBOUND_CONNECTIONS: usize = 64;
/// Default largest frame: one raft message carrying one maximum-size request with room to
/// spare (`Config::max_request_size` is at most 256 MiB; raise this with it).
pub const DEFAULT_MAX_FRAME: usize = 64 * 1024 * 1024;
/// Most envelopes waiting for one peer.
const QUEUE_MESSAGES: usize = 16 * 1024;
/// Most bytes waiting for one peer, unless one frame is larger.
const QUEUE_BYTES: usize = 64 * 1024 * 1024;
/// Most bytes packed into one write.
const WRITE_BATCH: usize = 1024 * 1024;
/// Most bytes a sender writes itself on an idle link (larger go through the writer
/// thread, so a big append is copied off the driver's thread).
const DIRECT_WRITE_MAX: usize = 64 * 1024;
/// Read buffer of an inbound connection: many small frames per read syscall.
const READ_BUFFER: usize = 64 * 1024;
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Least time between two unreachable reports for one peer.
pub const UNREACHABLE_REPORT_INTERVAL: Duration = Duration::from_millis(100);
const ACCEPTED: u8 = 0;
const REFUSED: u8 = 1;

/// Counters of one peer link, for tests and operations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerStats {
    /// Bytes waiting in the send queue.
    pub queued_bytes: usize,
    /// Envelopes dropped because the queue was full (or the frame too large).
    pub dropped: u64,
    /// Envelopes written to the socket.
    pub sent: u64,
    /// Whether the link is connected (handshake accepted) now.
    pub connected: bool,
}

struct Peer {
    id: u64,
    addr: String,
    /// Encoded envelopes for the writer thread; an empty one only wakes it (to write
    /// `Link::rest`).
    tx: Sender<Vec<u8>>,
    /// Entries put on `tx` and not yet written or dropped by the writer thread. A sender
    /// writes itself only when it is zero, so frames leave in the order they were sent.
    backlog: AtomicUsize,
    /// The connection, shared by the writer thread and senders writing on an idle link.
    link: Mutex<Link>,
    queued_bytes: AtomicUsize,
    dropped: AtomicU64,
    sent: AtomicU64,
    /// Bytes written to the peer, and read from its connections.
    sent_bytes: AtomicU64,
    received_bytes: AtomicU64,
    connected: AtomicBool,
    stop: AtomicBool,
    /// When the node was last told this peer is unreachable (ms since `Inner::epoch`).
    last_unreachable_ms: AtomicU64,
}

/// A peer's connection. The stream is non-blocking while idle (a sender's write never
/// waits); the writer thread switches it to blocking, with a write timeout, for its own
/// writes.
#[derive(Default)]
struct Link {
    stream: Option<Outbound>,
    /// The tail of frames a sender's write left unwritten (the socket's buffer was full):
    /// the writer thread writes it before anything else.
    rest: Vec<u8>,
    /// How many frames `rest` finishes.
    rest_frames: u64,
}

/// The rustls configurations of a TLS peer port.
struct PeerTls {
    acceptor: Arc<rustls::ServerConfig>,
    connector: Arc<rustls::ClientConfig>,
}

struct Inner {
    id: u64,
    cluster_id: String,
    local_addr: SocketAddr,
    max_frame: usize,
    logger: Logger,
    /// TLS on this member's connections, both ways (mutual authentication).
    tls: Option<PeerTls>,
    peers: RwLock<HashMap<u64, Arc<Peer>>>,
    inbox: RwLock<Option<Inbox>>,
    /// Open inbound connections (a handle to shut each down), by connection number.
    inbound: Mutex<HashMap<u64, TcpStream>>,
    next_conn: AtomicU64,
    stopped: AtomicBool,
    threads: Mutex<Vec<JoinHandle<()>>>,
    epoch: Instant,
}

impl Inner {
    /// `peer` closed or reset the connection it dialled: its process has likely exited.
    /// Our connection to it is then dead too, though writes to it may still seem to
    /// succeed (the kernel takes the first bytes before the reset comes back): it is
    /// closed now, so the next send redials instead of losing its envelopes — a restarted
    /// peer is reached at once. The node is told ([`Inner::report_lost`]).
    fn peer_closed(&self, peer: u64) {
        let known = self.peers.read().get(&peer).cloned();
        if let Some(p) = known {
            let mut link = p.link.lock();
            if let Some(s) = link.stream.take() {
                s.shutdown();
            }
            p.connected.store(false, Ordering::SeqCst);
        }
        self.report_lost(peer);
    }

    /// Tells the registered node that `peer`'s process looks gone (see
    /// [`Inbox::peer_lost`]).
    fn report_lost(&self, peer: u64) {
        let inbox = self.inbox.read().clone();
        if let Some(inbox) = inbox {
            inbox.peer_lost(peer);
        }
    }
}

/// The TCP transport of one member: its id, the cluster id, a listening socket and the
/// addresses of its peers (`id → host:port`; hostnames are resolved at every dial).
///
/// ```no_run
/// use zkraft::{transport::TcpTransport, Node};
/// let t = TcpTransport::bind(1, "prod", "0.0.0.0:7001".parse().unwrap())?;
/// t.add_peer(2, "zk-2.internal:7001")?;
/// t.add_peer(3, "zk-3.internal:7001")?;
/// let node = Node::builder(1)
///     .cluster_id("prod")
///     .voters([1, 2, 3])
///     .data_dir("/var/lib/mysvc/zkraft")
///     .transport(t.clone())
///     .start()?;
/// # Ok::<(), zkraft::Error>(())
/// ```
///
/// Cloning gives another handle; [`TcpTransport::shutdown`] (or dropping the last handle)
/// closes every connection and joins its threads.
#[derive(Clone)]
pub struct TcpTransport {
    inner: Arc<Inner>,
    _owner: Arc<Owner>,
}

/// Shuts the transport down when the last handle goes.
struct Owner(Weak<Inner>);

impl Drop for Owner {
    fn drop(&mut self) {
        if let Some(inner) = self.0.upgrade() {
            shutdown(&inner);
        }
    }
}

impl std::fmt::Debug for TcpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpTransport")
            .field("id", &self.inner.id)
            .field("local_addr", &self.inner.local_addr)
            .finish()
    }
}

/// The settings of a [`TcpTransport`] ([`TcpTransport::builder`]).
#[derive(Debug)]
pub struct TcpTransportBuilder {
    id: u64,
    cluster_id: String,
    listen: SocketAddr,
    max_frame: usize,
    logger: Logger,
    tls: Option<TlsConfig>,
}

impl TcpTransportBuilder {
    /// The largest frame sent or accepted (default [`DEFAULT_MAX_FRAME`]).
    pub fn max_frame(mut self, bytes: usize) -> Self {
        self.max_frame = bytes;
        self
    }

    /// Where the transport logs connections, refusals and failures.
    pub fn logger(mut self, logger: Logger) -> Self {
        self.logger = logger;
        self
    }

    /// TLS on every connection, with mutual authentication: this member presents its
    /// certificate and accepts a peer only with a certificate from a trusted authority;
    /// a peer's certificate must also name the address it is dialled at. Every member of
    /// the ensemble must use TLS (a plain peer is refused, and refuses).
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Binds the listening socket and starts accepting peers.
    pub fn bind(self) -> Result<TcpTransport> {
        let TcpTransportBuilder {
            id,
            cluster_id,
            listen,
            max_frame,
            logger,
            tls,
        } = self;
        if id == 0 || cluster_id.is_empty() || cluster_id.len() > crate::MAX_CLUSTER_ID_LEN {
            return Err(Error::Config(
                "a TCP transport needs a non-zero id and a 1-64 byte cluster id".into(),
            ));
        }
        let tls = match tls {
            Some(t) => Some(PeerTls {
                acceptor: t.peer_acceptor()?,
                connector: t.peer_connector()?,
            }),
            None => None,
        };
        let listener = TcpListener::bind(listen)?;
        let local_addr = listener.local_addr()?;
        let inner = Arc::new(Inner {
            id,
            cluster_id,
            local_addr,
            max_frame: max_frame.clamp(1024, u32::MAX as usize),
            logger: logger.new(o!("transport" => if tls.is_some() { "tls" } else { "tcp" },
                "listen" => local_addr.to_string())),
            tls,
            peers: RwLock::new(HashMap::new()),
            inbox: RwLock::new(None),
            inbound: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
            threads: Mutex::new(Vec::new()),
            epoch: Instant::now(),
        });
        let weak = Arc::downgrade(&inner);
        let acceptor = std::thread::Builder::new()
            .name(format!("zkraft-tcp-accept-{id}"))
            .spawn(move || accept_loop(listener, weak))?;
        inner.threads.lock().push(acceptor);
        let owner = Arc::new(Owner(Arc::downgrade(&inner)));
        Ok(TcpTransport {
            inner,
            _owner: owner,
        })
    }
}

impl TcpTransport {
    /// Listens on `listen` (port 0 picks a free one) as node `id` of `cluster_id`, with
    /// the default frame limit, plain TCP and no logging.
    pub fn bind(id: u64, cluster_id: &str, listen: SocketAddr) -> Result<TcpTransport> {
        Self::builder(id, cluster_id, listen).bind()
    }

    /// Like [`TcpTransport::bind`], with a frame limit and a logger.
    pub fn bind_with(
        id: u64,
        cluster_id: &str,
        listen: SocketAddr,
        max_frame: usize,
        logger: Logger,
    ) -> Result<TcpTransport> {
        Self::builder(id, cluster_id, listen)
            .max_frame(max_frame)
            .logger(logger)
            .bind()
    }

    /// The settings of node `id`'s transport in `cluster_id`, listening on `listen`: a
    /// frame limit, a logger, TLS.
    ///
    /// ```no_run
    /// use zkraft::{transport::TcpTransport, TlsConfig};
    /// let tls = TlsConfig::from_pem_files("zk-1.pem", "zk-1-key.pem", "ca.pem")?;
    /// let t = TcpTransport::builder(1, "prod", "0.0.0.0:7001".parse().unwrap())
    ///     .tls(tls)
    ///     .bind()?;
    /// # Ok::<(), zkraft::Error>(())
    /// ```
    pub fn builder(id: u64, cluster_id: &str, listen: SocketAddr) -> TcpTransportBuilder {
        TcpTransportBuilder {
            id,
            cluster_id: cluster_id.to_string(),
            listen,
            max_frame: DEFAULT_MAX_FRAME,
            logger: Logger::root(slog::Discard, o!()),
            tls: None,
        }
    }

    /// The address the transport listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// This member's id.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// Adds (or readdresses) peer `id` at `addr` (`host:port`) and starts its writer.
    pub fn add_peer(&self, id: u64, addr: &str) -> Result<()> {
        if id == 0 || id == self.inner.id {
            return Err(Error::Config(format!("bad peer id {id}")));
        }
        self.remove_peer(id);
        let (tx, rx) = bounded(QUEUE_MESSAGES);
        let peer = Arc::new(Peer {
            id,
            addr: addr.to_string(),
            tx,
            backlog: AtomicUsize::new(0),
            link: Mutex::new(Link::default()),
            queued_bytes: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            sent_bytes: AtomicU64::new(0),
            received_bytes: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            last_unreachable_ms: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&self.inner);
        let p = peer.clone();
        let writer = std::thread::Builder::new()
            .name(format!("zkraft-tcp-{}-to-{id}", self.inner.id))
            .spawn(move || write_loop(weak, p, rx))?;
        self.inner.threads.lock().push(writer);
        self.inner.peers.write().insert(id, peer);
        Ok(())
    }

    /// Forgets peer `id`: its writer stops and its connections are refused from now on.
    pub fn remove_peer(&self, id: u64) {
        if let Some(p) = self.inner.peers.write().remove(&id) {
            p.stop.store(true, Ordering::SeqCst);
        }
    }

    /// The counters of the link to peer `id`.
    pub fn peer_stats(&self, id: u64) -> Option<PeerStats> {
        self.inner.peers.read().get(&id).map(|p| PeerStats {
            queued_bytes: p.queued_bytes.load(Ordering::Relaxed),
            dropped: p.dropped.load(Ordering::Relaxed),
            sent: p.sent.load(Ordering::Relaxed),
            connected: p.connected.load(Ordering::Relaxed),
        })
    }

    /// Closes the listener and every connection and joins the transport's threads.
    pub fn shutdown(&self) {
        shutdown(&self.inner);
    }
}

fn shutdown(inner: &Arc<Inner>) {
    if inner.stopped.swap(true, Ordering::SeqCst) {
        return;
    }
    for p in inner.peers.read().values() {
        p.stop.store(true, Ordering::SeqCst);
    }
    // Wake the acceptor, blocked in accept().
    let _ = TcpStream::connect_timeout(&inner.local_addr, Duration::from_millis(200));
    for (_, s) in inner.inbound.lock().drain() {
        let _ = s.shutdown(Shutdown::Both);
    }
    let me = std::thread::current().id();
    let threads = std::mem::take(&mut *inner.threads.lock());
    for t in threads {
        if t.thread().id() != me {
            let _ = t.join();
        }
    }
}

impl Transport for TcpTransport {
    fn register(&self, id: u64, inbox: Inbox) -> Result<()> {
        if id != self.inner.id {
            return Err(Error::Config(format!(
                "this TCP transport is node {}'s, not node {id}'s",
                self.inner.id
            )));
        }
        let mut slot = self.inner.inbox.write();
        if slot.is_some() {
            return Err(Error::Config(format!("node {id} is already registered")));
        }
        *slot = Some(inbox);
        Ok(())
    }

    fn deregister(&self, id: u64, inbox: &Inbox) {
        let mut slot = self.inner.inbox.write();
        if id == self.inner.id && slot.as_ref().is_some_and(|i| i.same(inbox)) {
            *slot = None;
        }
    }

    fn peer_added(&self, id: u64, addr: &str) -> Result<()> {
        if id == self.inner.id {
            return Ok(());
        }
        let known = self.inner.peers.read().get(&id).map(|p| p.addr.clone());
        if known.as_deref() == Some(addr) {
            return Ok(());
        }
        slog::info!(self.inner.logger, "peer added"; "peer" => id, "addr" => addr);
        self.add_peer(id, addr)
    }

    fn peer_traffic(&self) -> Vec<super::PeerTraffic> {
        let mut out: Vec<super::PeerTraffic> = self
            .inner
            .peers
            .read()
            .values()
            .map(|p| super::PeerTraffic {
                id: p.id,
                sent_bytes: p.sent_bytes.load(Ordering::Relaxed),
                received_bytes: p.received_bytes.load(Ordering::Relaxed),
            })
            .collect();
        out.sort_by_key(|p| p.id);
        out
    }

    fn peer_removed(&self, id: u64) {
        if id != self.inner.id {
            slog::info!(self.inner.logger, "peer removed"; "peer" => id);
            self.remove_peer(id);
        }
    }

    fn send(&self, to: u64, envelope: Envelope) {
        self.send_all(to, vec![envelope]);
    }

    fn send_all(&self, to: u64, envelopes: Vec<Envelope>) {
        let Some(peer) = self.inner.peers.read().get(&to).cloned() else {
            return;
        };
        let mut frames = Vec::with_capacity(envelopes.len());
        for envelope in envelopes {
            let frame = envelope.encode();
            if frame.len() > self.inner.max_frame {
                peer.dropped.fetch_add(1, Ordering::Relaxed);
                slog::warn!(self.inner.logger, "envelope larger than the frame limit dropped";
                    "to" => to, "bytes" => frame.len(), "max" => self.inner.max_frame);
                continue;
            }
            frames.push(frame);
        }
        if frames.is_empty() {
            return;
        }
        if !peer.connected.load(Ordering::Acquire) {
            // Queued all the same (the link may come up any moment), but raft hears that
            // the peer is unreachable, so a leader probes it instead of streaming to it.
            self.report_unreachable(&peer);
        } else if write_now(&peer, &frames) {
            return;
        }
        for frame in frames {
            self.enqueue(&peer, frame);
        }
    }
}

/// Writes `frames` on the caller's thread when the link to `peer` is idle — connected,
/// nothing queued for the writer thread or left over from an earlier write, no one else
/// writing — with one non-blocking write; what the socket does not take goes to the
/// writer thread, which writes it before anything else. Returns false (nothing written:
/// queue them) when the link is not idle or the frames are large.
///
/// This spares an idle link the hand-over to the writer thread: waking it took 0.1-0.2 ms
/// at the median on a 2-core machine, and milliseconds while the cores were busy, for a
/// leader's commit broadcast as for anything else — so a follower often learnt of a
/// commit only after the leader had answered the write, and a read there right after it
/// was stale. Now the broadcast is in the follower's socket before the leader applies
/// the entry (see `Core::send`), as ZooKeeper's leader sends COMMIT before it applies.
/// Under load the writer thread is busy, frames queue behind it and are batched as
/// before.
fn write_now(peer: &Peer, frames: &[Vec<u8>]) -> bool {
    let total: usize = frames.iter().map(|f| 4 + f.len()).sum();
    if total > DIRECT_WRITE_MAX || peer.backlog.load(Ordering::Acquire) != 0 {
        return false;
    }
    let Some(mut link) = peer.link.try_lock() else {
        return false;
    };
    // Re-checked under the lock: the writer thread lowers `backlog` only once it has
    // written, holding the lock, so zero here means everything sent before is written.
    if peer.backlog.load(Ordering::Acquire) != 0
        || !link.rest.is_empty()
        || peer.stop.load(Ordering::SeqCst)
    {
        return false;
    }
    let Some(stream) = link.stream.as_mut().filter(|s| !s.pending()) else {
        return false;
    };
    let mut buf = Vec::with_capacity(total);
    for f in frames {
        buf.extend_from_slice(&(f.len() as u32).to_be_bytes());
        buf.extend_from_slice(f);
    }
    let n = frames.len() as u64;
    let written = stream.write_some(&buf);
    if let Ok(w) = written {
        peer.sent_bytes.fetch_add(w as u64, Ordering::Relaxed);
    }
    match written {
        Ok(written) if written == buf.len() && !stream.pending() => {
            peer.sent.fetch_add(n, Ordering::Relaxed);
        }
        Ok(written) => {
            // The rest, and over TLS the records the socket did not take: the writer
            // thread writes them first (`rest` may be empty).
            link.rest = buf.split_off(written);
            link.rest_frames = n;
            // Wake the writer thread for the rest. Should the queue be full, the writer
            // has frames to write and writes the rest before them.
            peer.backlog.fetch_add(1, Ordering::AcqRel);
            if peer.tx.try_send(Vec::new()).is_err() {
                peer.backlog.fetch_sub(1, Ordering::AcqRel);
            }
        }
        Err(_) => {
            // Lost with the connection (raft retransmits); the writer thread redials.
            peer.dropped.fetch_add(n, Ordering::Relaxed);
            peer.connected.store(false, Ordering::SeqCst);
            if let Some(s) = link.stream.take() {
                s.shutdown();
            }
        }
    }
    true
}

impl TcpTransport {
    /// Puts `frame` on `peer`'s queue for its writer thread, or drops it when the queue is
    /// full.
    fn enqueue(&self, peer: &Peer, frame: Vec<u8>) {
        let len = frame.len();
        let queued = peer.queued_bytes.fetch_add(len, Ordering::AcqRel);
        if queued > 0 && queued + len > QUEUE_BYTES {
            peer.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            peer.dropped.fetch_add(1, Ordering::Relaxed);
            self.report_unreachable(peer);
            return;
        }
        peer.backlog.fetch_add(1, Ordering::AcqRel);
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = peer.tx.try_send(frame)
        {
            peer.backlog.fetch_sub(1, Ordering::AcqRel);
            peer.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            peer.dropped.fetch_add(1, Ordering::Relaxed);
            self.report_unreachable(peer);
        }
    }

    /// Tells the registered node that `peer` cannot be reached now, at most once per
    /// [`UNREACHABLE_REPORT_INTERVAL`] per peer.
    fn report_unreachable(&self, peer: &Peer) {
        let now = self.inner.epoch.elapsed().as_millis() as u64;
        let last = peer.last_unreachable_ms.load(Ordering::Relaxed);
        let every = UNREACHABLE_REPORT_INTERVAL.as_millis() as u64;
        if last != 0 && now.saturating_sub(last) < every {
            return;
        }
        if peer
            .last_unreachable_ms
            .compare_exchange(last, now.max(1), Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let inbox = self.inner.inbox.read().clone();
        if let Some(inbox) = inbox {
            inbox.unreachable(peer.id);
        }
    }
}

fn accept_loop(listener: TcpListener, inner: Weak<Inner>) {
    for stream in listener.incoming() {
        let Some(inner) = inner.upgrade() else { return };
        if inner.stopped.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let conn = inner.next_conn.fetch_add(1, Ordering::Relaxed);
        {
            let mut open = inner.inbound.lock();
            if open.len() >= MAX_INBOUND_CONNECTIONS {
                slog::warn!(inner.logger, "too many inbound connections: refused";
                    "peer" => stream.peer_addr().map(|a| a.to_string()).unwrap_or_default());
                continue;
            }
            match stream.try_clone() {
                Ok(clone) => open.insert(conn, clone),
                Err(_) => continue,
            };
        }
        let weak = Arc::downgrade(&inner);
        let spawned = std::thread::Builder::new()
            .name(format!("zkraft-tcp-{}-in", inner.id))
            .spawn(move || {
                read_connection(&weak, stream);
                if let Some(inner) = weak.upgrade() {
                    inner.inbound.lock().remove(&conn);
                }
            });
        match spawned {
            Ok(t) => {
                let mut threads = inner.threads.lock();
                threads.retain(|t| !t.is_finished());
                threads.push(t);
            }
            Err(e) => {
                inner.inbound.lock().remove(&conn);
                slog::error!(inner.logger, "cannot start a reader thread"; "error" => %e);
            }
        }
    }
}

/// The handshake a dialler sends.
fn handshake(from: u64, to: u64, cluster_id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + cluster_id.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    out.push(cluster_id.len() as u8);
    out.extend_from_slice(cluster_id.as_bytes());
    out.extend_from_slice(&from.to_be_bytes());
    out.extend_from_slice(&to.to_be_bytes());
    out
}

/// Reads and checks a handshake: the sender's id, or why it is refused.
fn read_handshake(
    inner: &Inner,
    stream: &mut impl Read,
) -> io::Result<std::result::Result<u64, String>> {
    let mut head = [0u8; 7];
    stream.read_exact(&mut head)?;
    if &head[..4] != MAGIC {
        return Ok(Err("not a zkraft peer (bad magic)".into()));
    }
    let version = u16::from_be_bytes([head[4], head[5]]);
    let mut cluster = vec![0u8; usize::from(head[6])];
    stream.read_exact(&mut cluster)?;
    let mut ids = [0u8; 16];
    stream.read_exact(&mut ids)?;
    let from = u64::from_be_bytes(ids[..8].try_into().unwrap_or_default());
    let to = u64::from_be_bytes(ids[8..].try_into().unwrap_or_default());
    let cluster = String::from_utf8_lossy(&cluster);
    Ok(if version > PROTOCOL_VERSION {
        Err(format!(
            "peer speaks protocol {version}, this node {PROTOCOL_VERSION}"
        ))
    } else if cluster != inner.cluster_id {
        Err(format!(
            "peer of cluster {cluster:?}, this is {:?}",
            inner.cluster_id
        ))
    } else if to != inner.id {
        Err(format!("peer wants node {to}, this is node {}", inner.id))
    } else if !inner.peers.read().contains_key(&from) {
        Err(format!("node {from} is not a configured peer"))
    } else {
        Ok(from)
    })
}

fn read_connection(inner: &Weak<Inner>, sock: TcpStream) {
    let Some(strong) = inner.upgrade() else {
        return;
    };
    let peer_addr = sock.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let logger = strong.logger.new(o!("from_addr" => peer_addr));
    if sock.set_read_timeout(Some(HANDSHAKE_TIMEOUT)).is_err()
        || sock.set_write_timeout(Some(HANDSHAKE_TIMEOUT)).is_err()
    {
        return;
    }
    // The whole handshake, TLS's and ours, by one deadline.
    let until = Instant::now() + HANDSHAKE_TIMEOUT;
    let tls = strong.tls.as_ref().map(|t| &t.acceptor);
    let mut stream = match Inbound::accept(sock, tls, until) {
        Ok(s) => s,
        Err(e) => {
            // A peer without a certificate from a trusted authority, or no TLS at all.
            if !strong.stopped.load(Ordering::SeqCst) {
                slog::warn!(logger, "connection refused: TLS handshake failed"; "error" => %e);
            }
            return;
        }
    };
    let from = match read_handshake(&strong, &mut stream) {
        // Over TLS the certificate must name the member the dialler claims to be (its
        // address in this member's configuration), as the dialler checks the name of the
        // member it dials: one authority signs every member, and clients too.
        Ok(Ok(from)) if !certified(&strong, &stream, from) => {
            slog::warn!(logger, "connection refused: the certificate does not name the member";
                "claims" => from);
            let _ = stream.write_all(&[REFUSED]).and_then(|()| stream.flush());
            return;
        }
        Ok(Ok(from)) => from,
        Ok(Err(reason)) => {
            slog::warn!(logger, "connection refused"; "reason" => reason);
            let _ = stream.write_all(&[REFUSED]).and_then(|()| stream.flush());
            return;
        }
        Err(e) => {
            if !strong.stopped.load(Ordering::SeqCst) {
                slog::warn!(logger, "handshake failed: connection closed"; "error" => %e);
            }
            return;
        }
    };
    if stream.write_all(&[ACCEPTED]).is_err()
        || stream.flush().is_err()
        || stream.handshaken().is_err()
    {
        return;
    }
    let max_frame = strong.max_frame;
    let counted = strong.peers.read().get(&from).cloned();
    drop(strong);
    // The dialler sends nothing after its handshake before our answer, so nothing read
    // ahead is lost by wrapping the stream only now.
    let mut stream = BufReader::with_capacity(READ_BUFFER, stream);
    let mut len = [0u8; 4];
    loop {
        if let Err(e) = stream.read_exact(&mut len) {
            // Closed or reset by the peer between frames: its process has likely exited
            // (the kernel closes a dead process's sockets). Not when this node is stopping.
            if closed_by_peer(&e) {
                if let Some(strong) = inner.upgrade() {
                    if !strong.stopped.load(Ordering::SeqCst) {
                        strong.peer_closed(from);
                    }
                }
            }
            return;
        }
        let n = u32::from_be_bytes(len) as usize;
        if n == 0 || n > max_frame {
            slog::warn!(logger, "frame size out of bounds: connection closed";
                "from" => from, "bytes" => n, "max" => max_frame);
            return;
        }
        // Grown as the bytes arrive: a length header alone reserves little memory.
        let mut buf = Vec::with_capacity(n.min(64 * 1024));
        match (&mut stream).take(n as u64).read_to_end(&mut buf) {
            Ok(got) if got == n => {}
            _ => return,
        }
        if let Some(p) = &counted {
            p.received_bytes.fetch_add(4 + n as u64, Ordering::Relaxed);
        }
        let decoded = std::panic::catch_unwind(|| Envelope::decode(&buf))
            .unwrap_or_else(|_| Err(Error::Corrupt("decoder panicked".into())));
        let Some(strong) = inner.upgrade() else {
            return;
        };
        match decoded {
            Ok(env) if env.from() == from && env.to() == strong.id => {
                let inbox = strong.inbox.read().clone();
                if let Some(inbox) = inbox {
                    inbox.deliver(env);
                }
            }
            Ok(env) => {
                slog::warn!(logger, "envelope with a forged address: connection closed";
                    "from" => from, "claims" => env.from(), "to" => env.to());
                return;
            }
            Err(e) => {
                slog::warn!(logger, "malformed frame: connection closed";
                    "from" => from, "error" => %e);
                return;
            }
        }
    }
}

/// Whether `stream`'s certificate (over TLS) names peer `from`'s configured address.
fn certified(inner: &Inner, stream: &Inbound, from: u64) -> bool {
    let addr = inner.peers.read().get(&from).map(|p| p.addr.clone());
    addr.is_some_and(|a| stream.certificate_names(&a))
}

/// Whether a read error means the other end closed or reset the connection.
fn closed_by_peer(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
    )
}

/// Dials `peer` and completes the handshakes (TLS's, then this transport's).
fn dial(inner: &Inner, peer: &Peer) -> io::Result<Outbound> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "address resolves to nothing");
    let tls = match &inner.tls {
        Some(t) => Some((
            &t.connector,
            crate::tls::server_name(&peer.addr)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?,
        )),
        None => None,
    };
    for addr in peer.addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, HANDSHAKE_TIMEOUT) {
            Ok(s) => {
                s.set_nodelay(true)?;
                s.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
                s.set_write_timeout(Some(HANDSHAKE_TIMEOUT))?;
                let until = Instant::now() + HANDSHAKE_TIMEOUT;
                let mut s = Outbound::connect(s, tls.clone(), until)?;
                s.write_all(&[&handshake(inner.id, peer.id, &inner.cluster_id)])?;
                let mut answer = [0u8; 1];
                s.read_exact(&mut answer)?;
                if answer[0] != ACCEPTED {
                    return Err(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        "peer refused the handshake (see its log)",
                    ));
                }
                s.socket().set_read_timeout(None)?;
                s.socket().set_nonblocking(true)?;
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn write_loop(inner: Weak<Inner>, peer: Arc<Peer>, rx: Receiver<Vec<u8>>) {
    let mut backoff = BACKOFF_MIN;
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    while !peer.stop.load(Ordering::SeqCst) {
        let Some(strong) = inner.upgrade() else {
            break;
        };
        if peer.link.lock().stream.is_none() {
            match dial(&strong, &peer) {
                Ok(s) => {
                    slog::info!(strong.logger, "connected"; "peer" => peer.id);
                    let mut link = peer.link.lock();
                    link.stream = Some(s);
                    link.rest.clear();
                    link.rest_frames = 0;
                    peer.connected.store(true, Ordering::SeqCst);
                    backoff = BACKOFF_MIN;
                }
                Err(e) => {
                    if e.kind() == io::ErrorKind::ConnectionRefused {
                        // Nothing listens at its address: its process is not running.
                        strong.report_lost(peer.id);
                    }
                    if e.kind() == io::ErrorKind::InvalidData {
                        // TLS refused: a certificate no trusted authority signed, or one
                        // for another name. A setting to fix, not a peer down.
                        slog::warn!(strong.logger, "dial failed: TLS handshake"; "peer" => peer.id,
                            "addr" => &peer.addr, "error" => %e, "retry_in" => ?backoff);
                    } else {
                        slog::debug!(strong.logger, "dial failed"; "peer" => peer.id,
                            "addr" => &peer.addr, "error" => %e, "retry_in" => ?backoff);
                    }
                    drop(strong);
                    sleep_unless_stopped(&peer, backoff);
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            }
        }
        drop(strong);
        let first = match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(f) => f,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        buf.clear();
        let (mut frames, mut taken) = (0u64, 0usize);
        let mut push = |frame: Vec<u8>, buf: &mut Vec<u8>| {
            taken += 1;
            if frame.is_empty() {
                return; // a wake-up for `Link::rest`
            }
            peer.queued_bytes.fetch_sub(frame.len(), Ordering::AcqRel);
            buf.extend_from_slice(&(frame.len() as u32).to_be_bytes());
            buf.extend_from_slice(&frame);
            frames += 1;
        };
        push(first, &mut buf);
        while buf.len() < WRITE_BATCH {
            match rx.try_recv() {
                Ok(f) => push(f, &mut buf),
                Err(_) => break,
            }
        }
        let mut link = peer.link.lock();
        let rest = std::mem::take(&mut link.rest);
        frames += std::mem::take(&mut link.rest_frames);
        let written = match link.stream.as_mut() {
            Some(s) => s.write_blocking(&[&rest, &buf]),
            None => Err(io::ErrorKind::NotConnected.into()),
        };
        match written {
            Ok(()) => {
                peer.sent.fetch_add(frames, Ordering::Relaxed);
                peer.sent_bytes
                    .fetch_add((rest.len() + buf.len()) as u64, Ordering::Relaxed);
            }
            Err(_) => {
                // Lost with the connection: raft retransmits.
                peer.dropped.fetch_add(frames, Ordering::Relaxed);
                peer.connected.store(false, Ordering::SeqCst);
                if let Some(s) = link.stream.take() {
                    s.shutdown();
                }
            }
        }
        // Lowered only now, under the lock: a sender that then finds it zero writes
        // after everything taken here.
        peer.backlog.fetch_sub(taken, Ordering::AcqRel);
    }
    if let Some(s) = peer.link.lock().stream.take() {
        s.shutdown();
    }
}

fn sleep_unless_stopped(peer: &Peer, d: Duration) {
    let until = Instant::now() + d;
    while !peer.stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        if now >= until {
            return;
        }
        std::thread::sleep((until - now).min(Duration::from_millis(50)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::tls::test_certs::Authority;

    fn any() -> SocketAddr {
        "127.0.0.1:0".parse().unwrap()
    }

    /// Member `id` of `cluster` on loopback, over TLS with a certificate `ca` signed when
    /// given; its log lines go to `log`.
    fn member(id: u64, cluster: &str, ca: Option<&Authority>, log: &Log) -> TcpTransport {
        let mut b = TcpTransport::builder(id, cluster, any()).logger(log.logger());
        if let Some(ca) = ca {
            b = b.tls(ca.config());
        }
        b.bind().unwrap()
    }

    /// Members 1 and 2 of `cluster` on loopback, each a peer of the other.
    fn pair(cluster: &str, ca: Option<&Authority>) -> (TcpTransport, TcpTransport) {
        let log = Log::default();
        let (a, b) = (member(1, cluster, ca, &log), member(2, cluster, ca, &log));
        a.add_peer(2, &b.local_addr().to_string()).unwrap();
        b.add_peer(1, &a.local_addr().to_string()).unwrap();
        (a, b)
    }

    /// Log lines kept for a test to read.
    #[derive(Clone, Default)]
    struct Log(Arc<std::sync::Mutex<Vec<String>>>);

    impl slog::Drain for Log {
        type Ok = ();
        type Err = slog::Never;
        fn log(
            &self,
            r: &slog::Record<'_>,
            _: &slog::OwnedKVList,
        ) -> std::result::Result<(), slog::Never> {
            self.0.lock().unwrap().push(r.msg().to_string());
            Ok(())
        }
    }

    impl Log {
        fn logger(&self) -> Logger {
            Logger::root(slog::Drain::fuse(self.clone()), o!())
        }

        fn has(&self, line: &str) -> bool {
            self.0.lock().unwrap().iter().any(|l| l.contains(line))
        }
    }

    fn wait_connected(a: &TcpTransport, to: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !a.peer_stats(to).unwrap().connected {
            assert!(Instant::now() < deadline, "never connected");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Frames written by the sender itself, frames the socket took only in part and
    /// frames queued for the writer thread all arrive, once each and in the order sent,
    /// while the receiver stalls (its socket buffers fill) and when it reads again.
    #[test]
    fn direct_partial_and_queued_writes_keep_their_order() {
        frames_keep_their_order(None);
    }

    /// The same over TLS, where what the socket does not take waits as records.
    #[test]
    fn over_tls_frames_keep_their_order() {
        frames_keep_their_order(Some(&Authority::new()));
    }

    fn frames_keep_their_order(ca: Option<&Authority>) {
        let (a, b) = pair("order", ca);
        let (tx, rx) = crossbeam_channel::unbounded();
        let stall = Arc::new(AtomicBool::new(false));
        let stalled = stall.clone();
        b.register(
            2,
            Inbox::new(move |env| {
                if stalled.swap(false, Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(300));
                }
                let _ = tx.send(env);
            }),
        )
        .unwrap();
        wait_connected(&a, 2);
        // Small frames (written directly until the stalled receiver's buffers are full,
        // then in part), then sizes from 8 bytes to about 96 KiB (above the direct-write
        // limit: queued).
        let (small, n) = (6_000, 6_600);
        let len = |seq: usize| {
            if seq < small {
                1 + seq % 500
            } else {
                1 + (seq * 7919) % 12_000
            }
        };
        let ping = |seq: usize| Envelope::SessionPing {
            from: 1,
            to: 2,
            sessions: vec![seq as i64; len(seq)],
        };
        let mut want = Vec::new();
        let mut seq = 0;
        while seq < n {
            if seq == 1 {
                stall.store(true, Ordering::SeqCst);
            }
            if seq % 3 == 0 && seq + 3 <= n {
                a.send_all(2, vec![ping(seq), ping(seq + 1), ping(seq + 2)]);
                want.extend([seq, seq + 1, seq + 2]);
                seq += 3;
            } else {
                a.send(2, ping(seq));
                want.push(seq);
                seq += 1;
            }
        }
        let mut got = Vec::new();
        while got.len() < want.len() {
            let Ok(env) = rx.recv_timeout(Duration::from_secs(10)) else {
                break;
            };
            let Envelope::SessionPing { sessions, .. } = env else {
                panic!("unexpected {env:?}");
            };
            let seq = sessions[0] as usize;
            assert_eq!(sessions.len(), len(seq), "frame {seq} intact");
            got.push(seq);
        }
        assert_eq!(got, want);
        let stats = a.peer_stats(2).unwrap();
        assert_eq!((stats.dropped, stats.sent as usize), (0, want.len()));
        a.shutdown();
        b.shutdown();
    }

    /// A peer whose transport goes away (as a process exits) is reported lost: its
    /// connection closes, and its port then refuses. This node's own shutdown is not.
    #[test]
    fn a_peer_that_goes_away_is_reported_lost() {
        let (a, b) = pair("lost", None);
        let (tx, rx) = crossbeam_channel::unbounded();
        a.register(
            1,
            Inbox::new(|_| {}).on_peer_lost(move |p| {
                let _ = tx.send(p);
            }),
        )
        .unwrap();
        let (btx, brx) = crossbeam_channel::unbounded();
        b.register(
            2,
            Inbox::new(|_| {}).on_peer_lost(move |p| {
                let _ = btx.send(p);
            }),
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !(a.peer_stats(2).unwrap().connected && b.peer_stats(1).unwrap().connected) {
            assert!(Instant::now() < deadline, "never connected");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(rx.try_recv().is_err(), "nothing lost while both run");
        b.shutdown();
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(2));
        assert!(
            !a.peer_stats(2).unwrap().connected,
            "the connection to the gone peer is closed with it"
        );
        assert!(brx.try_recv().is_err(), "a stopping node reports nothing");
        a.shutdown();
    }

    /// Over TLS, a member's certificate must name the member it claims to be: one signed
    /// by the ensemble's authority for another host is refused, with a reason logged.
    #[test]
    fn a_certificate_for_another_host_cannot_pass_for_a_member() {
        let ca = Authority::new();
        let log = Log::default();
        let b = member(2, "names", Some(&ca), &log);
        let tls = ca.config_named(&["other.example"]);
        let impostor = TcpTransport::builder(1, "names", any())
            .tls(tls)
            .bind()
            .unwrap();
        b.add_peer(1, "127.0.0.1:9").unwrap();
        impostor.add_peer(2, &b.local_addr().to_string()).unwrap();
        impostor.send(
            2,
            Envelope::SessionPing {
                from: 1,
                to: 2,
                sessions: vec![1],
            },
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while !log.has("the certificate does not name the member") {
            assert!(
                Instant::now() < deadline,
                "not refused: {:?}",
                log.0.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!impostor.peer_stats(2).unwrap().connected);
        impostor.shutdown();
        b.shutdown();
    }

    /// A stranger that sends its handshake a byte at a time (each read well within the
    /// handshake timeout, the whole far beyond it) is cut off at the deadline.
    #[test]
    fn a_slow_handshake_is_cut_off_at_the_deadline() {
        let b = member(2, "slow", None, &Log::default());
        b.add_peer(1, "127.0.0.1:9").unwrap();
        let mut s = TcpStream::connect(b.local_addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let hello = handshake(1, 2, "slow");
        let started = Instant::now();
        let mut sent = 0;
        let closed = loop {
            if sent < hello.len() {
                let _ = s.write_all(&hello[sent..sent + 1]);
                sent += 1;
            }
            std::thread::sleep(Duration::from_millis(350));
            let mut one = [0u8; 1];
            match s.read(&mut one) {
                Ok(0) => break true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
                Ok(_) | Err(_) => break true,
            }
            if started.elapsed() > HANDSHAKE_TIMEOUT * 2 {
                break false;
            }
        };
        let took = started.elapsed();
        assert!(closed, "still open after {took:?}");
        assert!(sent < hello.len(), "cut off before the handshake was whole");
        assert!(
            took >= HANDSHAKE_TIMEOUT - Duration::from_millis(500),
            "{took:?}"
        );
        b.shutdown();
    }

    /// Over TLS, a peer whose certificate no trusted authority signed (here self-signed
    /// by an authority of its own), a plain peer, and garbage are each refused, with the
    /// refusal logged, and the members keep talking.
    #[test]
    fn tls_refuses_strangers_and_garbage_and_keeps_serving() {
        let ca = Authority::new();
        let log = Log::default();
        let (a, b) = (
            member(1, "tls", Some(&ca), &log),
            member(2, "tls", Some(&ca), &log),
        );
        a.add_peer(2, &b.local_addr().to_string()).unwrap();
        b.add_peer(1, &a.local_addr().to_string()).unwrap();
        let (tx, rx) = crossbeam_channel::unbounded();
        b.register(
            2,
            Inbox::new(move |env| {
                let _ = tx.send(env);
            }),
        )
        .unwrap();
        let ping = |from| Envelope::SessionPing {
            from,
            to: 2,
            sessions: vec![7],
        };
        let from_a = |r: std::result::Result<Envelope, _>| {
            matches!(r, Ok(Envelope::SessionPing { from: 1, .. }))
        };
        a.send(2, ping(1));
        assert!(from_a(rx.recv_timeout(Duration::from_secs(10))));

        // A stranger: the same id and cluster, a certificate from another authority.
        let stranger_log = Log::default();
        let stranger = member(1, "tls", Some(&Authority::new()), &stranger_log);
        stranger.add_peer(2, &b.local_addr().to_string()).unwrap();
        // A plain member.
        let plain = member(1, "tls", None, &Log::default());
        plain.add_peer(2, &b.local_addr().to_string()).unwrap();
        stranger.send(2, ping(1));
        plain.send(2, ping(1));
        // Garbage, and a TLS hello cut short.
        for junk in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            &[0x16, 0x03, 0x01, 0xff, 0xff, 1, 0][..],
        ] {
            let mut s = TcpStream::connect(b.local_addr()).unwrap();
            s.write_all(junk).unwrap();
            drop(s);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !(log.has("TLS handshake failed") && stranger_log.has("dial failed: TLS handshake")) {
            assert!(
                Instant::now() < deadline,
                "refusals not logged: {:?}",
                log.0.lock()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!stranger.peer_stats(2).unwrap().connected);
        assert!(!plain.peer_stats(2).unwrap().connected);
        // The members still talk, and nothing from the others arrived.
        a.send(2, ping(1));
        assert!(from_a(rx.recv_timeout(Duration::from_secs(10))));
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            rx.try_recv().is_err(),
            "only the two pings of the trusted member"
        );
        for t in [a, b, stranger, plain] {
            t.shutdown();
        }
    }
}
