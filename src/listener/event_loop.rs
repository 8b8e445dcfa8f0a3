//! The client port's threads: one acceptor and a fixed set of I/O threads, each an event
//! loop (`mio`) over the connections handed to it — so thousands of clients take no
//! thread each. An I/O thread reads and decodes its connections' frames and submits
//! their requests; answers are written by whoever produces them (see `conn`).

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

use super::conn::{Conn, ConnIo, Phase, Turn};
use super::Ctx;
use crate::session::Session;
use crate::watch::SessionEvent;

const WAKER: Token = Token(0);
const LISTENER: Token = Token(1);
/// How often an I/O thread looks for connections to time out.
const TICK: Duration = Duration::from_millis(200);

/// What other threads ask of an I/O thread.
pub(crate) enum Cmd {
    /// A new connection.
    Add(TcpStream, SocketAddr),
    /// A handshake finished (`None`: refused; the answer, if any,
    /// is queued).
    Handshaken(Token, Option<Session>),
    /// Back-pressure released: read again.
    Resume(Token),
    /// Close the connection.
    Close(Token, &'static str),
    /// Close every connection (the node lost its leader).
    CloseAll,
    /// Stop the thread.
    Stop,
}

/// How to reach an I/O thread.
pub(crate) struct SelectorHandle {
    tx: Sender<Cmd>,
    waker: Waker,
}

impl SelectorHandle {
    /// Queues `cmd` and wakes the thread (the queue holds at most a few commands per
    /// connection: it is accounted by the connection limit).
    pub(crate) fn send(&self, cmd: Cmd) {
        if self.tx.send(cmd).is_ok() {
            let _ = self.waker.wake();
        }
    }
}

impl SelectorHandle {
    /// A handle no I/O thread serves: the commands sent to it are left in the returned
    /// receiver (the poll keeps its waker valid), for tests that drive a connection by
    /// hand.
    #[cfg(test)]
    pub(crate) fn detached() -> (Arc<SelectorHandle>, Receiver<Cmd>, Poll) {
        let poll = Poll::new().unwrap();
        let waker = Waker::new(poll.registry(), WAKER).unwrap();
        let (tx, rx) = crossbeam_channel::unbounded();
        (Arc::new(SelectorHandle { tx, waker }), rx, poll)
    }
}

/// Starts an I/O thread; returns its handle.
pub(crate) fn start_selector(
    ctx: Arc<Ctx>,
    n: usize,
) -> std::io::Result<(Arc<SelectorHandle>, std::thread::JoinHandle<()>)> {
    let poll = Poll::new()?;
    let waker = Waker::new(poll.registry(), WAKER)?;
    let (tx, rx) = crossbeam_channel::unbounded();
    let handle = Arc::new(SelectorHandle { tx, waker });
    let h = handle.clone();
    let thread = std::thread::Builder::new()
        .name(format!("zkraft-client-io-{n}"))
        .spawn(move || Selector::new(poll, rx, h, ctx).run())?;
    Ok((handle, thread))
}

struct Selector {
    poll: Poll,
    rx: Receiver<Cmd>,
    me: Arc<SelectorHandle>,
    ctx: Arc<Ctx>,
    conns: HashMap<Token, Conn>,
    /// Connections whose last turn ran out of budget with work left: served again before
    /// the thread waits for events (edge-triggered readiness would not bring them back).
    ready: Vec<Token>,
}

impl Selector {
    fn new(poll: Poll, rx: Receiver<Cmd>, me: Arc<SelectorHandle>, ctx: Arc<Ctx>) -> Selector {
        Selector {
            poll,
            rx,
            me,
            ctx,
            conns: HashMap::new(),
            ready: Vec::new(),
        }
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut last_tick = Instant::now();
        loop {
            let wait = if self.ready.is_empty() {
                TICK
            } else {
                Duration::ZERO
            };
            if let Err(e) = self.poll.poll(&mut events, Some(wait)) {
                if e.kind() != ErrorKind::Interrupted {
                    slog::error!(self.ctx.logger, "client I/O poll failed"; "error" => %e);
                    break;
                }
            }
            for ev in events.iter() {
                let token = ev.token();
                if token == WAKER {
                    continue;
                }
                if ev.is_writable() {
                    if let Some(c) = self.conns.get(&token) {
                        c.io.flush();
                    }
                }
                if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                    self.turn(token, true);
                }
            }
            for token in std::mem::take(&mut self.ready) {
                if let Some(c) = self.conns.get_mut(&token) {
                    c.queued = false;
                }
                self.turn(token, false);
            }
            if !self.commands() {
                break;
            }
            if last_tick.elapsed() >= TICK {
                last_tick = Instant::now();
                self.time_out();
            }
        }
        let tokens: Vec<Token> = self.conns.keys().copied().collect();
        for t in tokens {
            self.close(t, "node shutting down");
        }
    }

    /// Handles the queued commands; false to stop.
    fn commands(&mut self) -> bool {
        while let Ok(cmd) = self.rx.try_recv() {
            match cmd {
                Cmd::Add(stream, peer) => self.add(stream, peer),
                Cmd::Handshaken(token, session) => self.handshaken(token, session),
                Cmd::Resume(token) => self.turn(token, false),
                Cmd::Close(token, reason) => self.close(token, reason),
                Cmd::CloseAll => {
                    let tokens: Vec<Token> = self.conns.keys().copied().collect();
                    for t in tokens {
                        self.close(t, "this server lost its leader");
                    }
                }
                Cmd::Stop => return false,
            }
        }
        true
    }

    fn add(&mut self, mut stream: TcpStream, peer: SocketAddr) {
        // Tokens are unique across the I/O threads: the listener's registry of
        // connections is keyed by them.
        let token = Token(self.ctx.next_token.fetch_add(1, Ordering::Relaxed));
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            token,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            slog::warn!(self.ctx.logger, "cannot watch a client connection"; "error" => %e);
            self.ctx.stats.connections.fetch_sub(1, Ordering::Relaxed);
            self.ctx.release_address(peer.ip());
            return;
        }
        let _ = stream.set_nodelay(true);
        let tls = match &self.ctx.tls {
            Some(config) => match rustls::ServerConnection::new(config.clone()) {
                Ok(c) => Some(c),
                Err(e) => {
                    slog::warn!(self.ctx.logger, "cannot start TLS"; "error" => %e);
                    let _ = self.poll.registry().deregister(&mut stream);
                    self.ctx.stats.connections.fetch_sub(1, Ordering::Relaxed);
                    self.ctx.release_address(peer.ip());
                    return;
                }
            },
            None => None,
        };
        let io = Arc::new(ConnIo::new(
            token,
            peer,
            super::socket::Socket::new(stream, tls),
            self.me.clone(),
            self.ctx.clone(),
        ));
        self.ctx.register(&io);
        self.conns.insert(token, Conn::new(io));
    }

    fn handshaken(&mut self, token: Token, session: Option<Session>) {
        let Some(conn) = self.conns.get_mut(&token) else {
            // The client left while its session was being opened: stop hosting it (it
            // expires unless the client reconnects somewhere).
            if let Some(s) = session {
                s.detach();
            }
            return;
        };
        match session {
            Some(s) => {
                conn.phase = Phase::Open(s);
                self.turn(token, false);
            }
            None => conn.set_done(),
        }
    }

    /// Gives connection `token` a turn (`readable`: on a readable event); queues it for
    /// another if its budget ran out, closes it on error.
    fn turn(&mut self, token: Token, readable: bool) {
        let Some(c) = self.conns.get_mut(&token) else {
            return;
        };
        let res = if readable {
            c.on_readable()
        } else {
            c.resume()
        };
        match res {
            Ok(Turn::Idle) => {}
            Ok(Turn::More) => {
                if !c.queued {
                    c.queued = true;
                    self.ready.push(token);
                }
            }
            Err(reason) => self.close(token, &reason),
        }
    }

    /// Closes connections that never finished their handshake in time, and answered
    /// ones (a four-letter word, a refusal) whose client does not read the answer.
    fn time_out(&mut self) {
        let limit = self.ctx.handshake_timeout;
        let late: Vec<Token> = self
            .conns
            .iter()
            .filter(|(_, c)| match c.phase {
                Phase::Connecting => c.opened.elapsed() > limit,
                Phase::Done => c.done_at.is_some_and(|t| t.elapsed() > limit),
                _ => false,
            })
            .map(|(t, _)| *t)
            .collect();
        for t in late {
            self.close(t, "no handshake in time");
        }
    }

    fn close(&mut self, token: Token, reason: &str) {
        let Some(conn) = self.conns.remove(&token) else {
            return;
        };
        conn.io.shut();
        // The stream is shared with the answering threads: deregister it by its file
        // descriptor (no mutable access needed).
        let fd = std::os::fd::AsRawFd::as_raw_fd(conn.io.stream());
        let _ = self
            .poll
            .registry()
            .deregister(&mut mio::unix::SourceFd(&fd));
        self.ctx.unregister(&conn.io);
        self.ctx.stats.connections.fetch_sub(1, Ordering::Relaxed);
        self.ctx.release_address(conn.io.peer.ip());
        let session = conn.io.session.load(Ordering::Relaxed);
        let misbehaved = ["malformed", "frame of", "no handshake", "TLS"]
            .iter()
            .any(|p| reason.starts_with(p));
        if misbehaved {
            slog::info!(self.ctx.logger, "client connection closed";
                "peer" => %conn.io.peer, "session" => format!("{session:#x}"), "reason" => reason);
        } else {
            slog::debug!(self.ctx.logger, "client connection closed";
                "peer" => %conn.io.peer, "session" => format!("{session:#x}"), "reason" => reason);
        }
        if let Phase::Open(s) = conn.phase {
            // The session outlives its connection: the client may come back, here or
            // to another member, until it expires.
            s.detach();
        }
    }
}

/// The acceptor: takes connections and deals them to the I/O threads in turn, refusing
/// those beyond the connection limit.
pub(crate) fn start_acceptor(
    ctx: Arc<Ctx>,
    mut listener: TcpListener,
    selectors: Vec<Arc<SelectorHandle>>,
) -> std::io::Result<(Arc<Waker>, std::thread::JoinHandle<()>)> {
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let thread = std::thread::Builder::new()
        .name("zkraft-client-accept".into())
        .spawn(move || {
            let mut events = Events::with_capacity(16);
            let mut turn = 0usize;
            let mut leaderless: Option<Instant> = None;
            let grace = ctx.shared.config().election_timeout();
            let mut member = ctx.shared.is_member();
            loop {
                // A member removed from the ensemble serves nobody (nor does a node not yet
                // added): its clients are let go, to reconnect to a member.
                let now_member = ctx.shared.is_member();
                if member && !now_member {
                    slog::warn!(ctx.logger, "removed from the ensemble: not serving clients");
                    for s in &selectors {
                        s.send(Cmd::CloseAll);
                    }
                }
                member = now_member;
                // A member that has had no leader for an election timeout cannot serve:
                // its clients are let go, to reconnect to one that can (as ZooKeeper's
                // servers drop their clients when they lose the quorum).
                // With read-only mode, it then takes read-only clients only, until a leader
                // is back, when they are let go too.
                if ctx.shared.leader_id() == 0 {
                    let since = *leaderless.get_or_insert_with(Instant::now);
                    if since.elapsed() >= grace {
                        let entering = ctx.read_only_enabled
                            && !ctx.read_only.swap(true, Ordering::AcqRel);
                        if entering {
                            slog::warn!(ctx.logger, "no quorum: serving read-only clients only");
                        }
                        if entering || !ctx.read_only_enabled {
                            for s in &selectors {
                                s.send(Cmd::CloseAll);
                            }
                        }
                        leaderless = Some(Instant::now());
                    }
                } else {
                    leaderless = None;
                    if ctx.read_only.swap(false, Ordering::AcqRel) {
                        slog::info!(ctx.logger, "a leader is back: read-only clients let go");
                        for s in &selectors {
                            s.send(Cmd::CloseAll);
                        }
                    }
                }
                if let Err(e) = poll.poll(&mut events, Some(Duration::from_millis(500))) {
                    if e.kind() != ErrorKind::Interrupted {
                        slog::error!(ctx.logger, "client accept poll failed"; "error" => %e);
                        return;
                    }
                }
                if ctx.stopping.load(Ordering::Acquire) {
                    return;
                }
                loop {
                    match listener.accept() {
                        Ok((stream, peer)) => {
                            let n = ctx.stats.connections.fetch_add(1, Ordering::Relaxed);
                            if n >= ctx.max_connections {
                                ctx.stats.connections.fetch_sub(1, Ordering::Relaxed);
                                slog::warn!(ctx.logger, "too many client connections, refused";
                                    "peer" => %peer, "limit" => ctx.max_connections);
                                drop(stream);
                                continue;
                            }
                            if !ctx.admit(peer.ip()) {
                                ctx.stats.connections.fetch_sub(1, Ordering::Relaxed);
                                slog::warn!(ctx.logger, "too many connections from one address, refused";
                                    "peer" => %peer, "limit" => ctx.max_per_address);
                                drop(stream);
                                continue;
                            }
                            selectors[turn % selectors.len()].send(Cmd::Add(stream, peer));
                            turn = turn.wrapping_add(1);
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e) => {
                            // Out of file descriptors, say: back off a little.
                            slog::warn!(ctx.logger, "accept failed"; "error" => %e);
                            std::thread::sleep(Duration::from_millis(50));
                            break;
                        }
                    }
                }
            }
        })?;
    Ok((waker, thread))
}

/// The session watcher of a wire session: an expired session's connection is closed,
/// as ZooKeeper closes it (the client learns of the expiry when it reconnects).
pub(crate) fn session_watcher(io: &Arc<ConnIo>) -> impl Fn(SessionEvent) + Send + Sync + 'static {
    let io = Arc::downgrade(io);
    move |e| {
        if e == SessionEvent::Expired {
            if let Some(io) = io.upgrade() {
                io.close_when_flushed();
            }
        }
    }
}
