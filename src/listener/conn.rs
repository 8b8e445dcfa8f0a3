//! One client connection: its socket, its outgoing queue, the answers it owes in order
//! (`ConnIo`, shared with the session's dispatcher that writes answers and watch
//! notifications), and what its I/O thread does with the bytes it reads (`Conn`).
//!
//! Reading happens on the connection's I/O thread only. Writing happens wherever an
//! answer or notification is produced — the I/O thread for a read answered at once, the
//! node's answer thread for a write, the session's callback thread for a notification
//! or an answer queued behind one — straight into the socket when nothing is queued
//! before it, under the outgoing queue's lock; what the socket does not take waits for
//! the I/O thread's next writable event. A connection
//! stops reading while it owes `max_outstanding` answers or has more than
//! [`MAX_QUEUED_BYTES`] waiting to be written (back-pressure, as a ZooKeeper server
//! stops reading a connection that is behind), and resumes below half of each.

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use mio::Token;
use parking_lot::Mutex;

use super::event_loop::{Cmd, SelectorHandle};
use super::four_letter;
use super::requests::{self, Action, Shape};
use super::socket::Socket;
use super::stats::Latency;
use super::Ctx;
use crate::error::{Error, Result};
use crate::output::Output;
use crate::pipeline::Reply;
use crate::session::Session;
use crate::tree::WatchedEvent;
use crate::wire::jute::{JuteWriter, WireError};
use crate::wire::proto::{
    decode_request, op, ClientRequest, ConnectRequest, ConnectResponse, ReplyHeader,
};

/// Most bytes queued for a client before the connection stops reading its requests.
pub(crate) const MAX_QUEUED_BYTES: usize = 4 << 20;

/// Bytes read from a socket at a time.
const READ_CHUNK: usize = 64 * 1024;

thread_local! {
    /// What an I/O thread reads a socket into: zeroed once per thread, not per read.
    static READ_BUFFER: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; READ_CHUNK]);
}

/// Frames a connection may have handled in one turn of its I/O thread before the thread
/// serves its other connections (it comes back to this one at once).
const FRAMES_PER_TURN: usize = 64;

/// Most bytes queued for a client when a watch notification is added (notifications are
/// not bounded by back-pressure): beyond it the connection is closed, as a client too
/// slow to be served.
pub(crate) const MAX_UNREAD_BYTES: usize = 64 << 20;

/// Whether a connection has more to do after a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Turn {
    /// Nothing until its next event.
    Idle,
    /// Its turn's budget ran out with work left.
    More,
}

/// A request answered in order: what its answer needs, and when it arrived.
struct Owed {
    xid: i32,
    shape: Shape,
    since: Instant,
}

#[derive(Default)]
struct Out {
    queue: VecDeque<Vec<u8>>,
    /// Bytes of `queue`'s front already written.
    offset: usize,
    bytes: usize,
    closed: bool,
    /// Close once `queue` is written (closeSession answered, a refused handshake, a
    /// four-letter word).
    close_when_flushed: bool,
}

/// Per-connection figures for `cons`.
#[derive(Default)]
pub(crate) struct ConnStats {
    pub(crate) received: AtomicU64,
    pub(crate) sent: AtomicU64,
    pub(crate) latency: Latency,
    pub(crate) last_xid: AtomicI64,
    pub(crate) last_op: AtomicI64,
}

/// The part of a connection shared with whoever answers its requests.
pub(crate) struct ConnIo {
    pub(crate) token: Token,
    pub(crate) peer: SocketAddr,
    socket: Socket,
    out: Mutex<Out>,
    owed: Mutex<VecDeque<Owed>>,
    /// Answers owed (requests submitted, not answered).
    outstanding: AtomicUsize,
    /// The I/O thread stopped reading for back-pressure.
    paused: AtomicBool,
    /// The client asked to close its session.
    closing_session: AtomicBool,
    pub(crate) session: AtomicI64,
    pub(crate) timeout_ms: AtomicI64,
    pub(crate) established_ms: i64,
    pub(crate) stats: ConnStats,
    /// The connection's SASL exchange (with the port's SASL users).
    sasl: Mutex<crate::sasl::Exchange>,
    selector: Arc<SelectorHandle>,
    pub(crate) ctx: Arc<Ctx>,
}

impl ConnIo {
    pub(crate) fn new(
        token: Token,
        peer: SocketAddr,
        socket: Socket,
        selector: Arc<SelectorHandle>,
        ctx: Arc<Ctx>,
    ) -> ConnIo {
        let stats = ConnStats {
            last_xid: AtomicI64::new(-1),
            last_op: AtomicI64::new(-1),
            ..ConnStats::default()
        };
        ConnIo {
            token,
            peer,
            socket,
            out: Mutex::new(Out::default()),
            owed: Mutex::new(VecDeque::new()),
            outstanding: AtomicUsize::new(0),
            paused: AtomicBool::new(false),
            closing_session: AtomicBool::new(false),
            session: AtomicI64::new(0),
            timeout_ms: AtomicI64::new(0),
            established_ms: crate::time::now_ms(),
            stats,
            sasl: Mutex::new(crate::sasl::Exchange::default()),
            selector,
            ctx,
        }
    }

    /// Whether the connection is closed (or closing).
    pub(crate) fn is_closed(&self) -> bool {
        let out = self.out.lock();
        out.closed || out.close_when_flushed
    }

    /// Whether the client asked to close its session on this connection.
    pub(crate) fn closing_session(&self) -> bool {
        self.closing_session.load(Ordering::Acquire)
    }

    pub(crate) fn selector(&self) -> &SelectorHandle {
        &self.selector
    }

    pub(crate) fn stream(&self) -> &mio::net::TcpStream {
        self.socket.stream()
    }

    /// Answers owed.
    pub(crate) fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }

    /// Sends `frame` (length prefix included): straight into the socket if nothing is
    /// queued before it, else behind what is.
    pub(crate) fn send(&self, frame: Vec<u8>) {
        if self.queue(frame) {
            self.flush();
        }
    }

    /// Queues `frame` (length prefix included) behind what is queued, without writing:
    /// true when it is first in the queue, so the caller must [`ConnIo::flush`] (a
    /// frame queued behind others goes out with them).
    fn queue(&self, frame: Vec<u8>) -> bool {
        let mut out = self.out.lock();
        if out.closed {
            return false;
        }
        self.stats.sent.fetch_add(1, Ordering::Relaxed);
        self.ctx.stats.sent.fetch_add(1, Ordering::Relaxed);
        out.bytes += frame.len();
        out.queue.push_back(frame);
        out.queue.len() == 1
    }

    /// Writes what is queued until the socket takes no more. The I/O thread calls it on
    /// a writable event.
    pub(crate) fn flush(&self) {
        let mut out = self.out.lock();
        self.flush_locked(&mut out);
    }

    fn flush_locked(&self, out: &mut Out) {
        while let Some(front) = out.queue.front() {
            match self.socket.write(&front[out.offset..]) {
                Ok(0) => break,
                Ok(n) => {
                    out.offset += n;
                    out.bytes -= n;
                    if out.offset == front.len() {
                        out.queue.pop_front();
                        out.offset = 0;
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => return self.write_failed(out),
            }
        }
        // Over TLS, the records the socket did not take yet.
        let written = match self.socket.flush() {
            Ok(all) => all,
            Err(_) => return self.write_failed(out),
        };
        if out.queue.is_empty() && written && out.close_when_flushed {
            out.closed = true;
            self.socket.close();
            self.selector.send(Cmd::Close(self.token, "done"));
            return;
        }
        self.maybe_resume(out.bytes);
    }

    /// The peer is gone: the I/O thread sees it on its next read.
    fn write_failed(&self, out: &mut Out) {
        out.queue.clear();
        out.bytes = 0;
        out.offset = 0;
        out.closed = true;
        self.selector.send(Cmd::Close(self.token, "write failed"));
    }

    /// Closes the connection once everything queued is written.
    pub(crate) fn close_when_flushed(&self) {
        let mut out = self.out.lock();
        out.close_when_flushed = true;
        self.flush_locked(&mut out);
    }

    /// Stops writing: the I/O thread is closing the connection.
    pub(crate) fn shut(&self) {
        let mut out = self.out.lock();
        out.closed = true;
        out.queue.clear();
        out.bytes = 0;
        self.socket.shutdown();
    }

    /// Whether the connection must stop reading (too many answers owed, or too much
    /// waiting to be written).
    pub(crate) fn must_pause(&self) -> bool {
        self.outstanding() >= self.ctx.max_outstanding || self.out.lock().bytes >= MAX_QUEUED_BYTES
    }

    /// Tells the I/O thread to read again if it paused and is now below half of each
    /// bound.
    fn maybe_resume(&self, queued: usize) {
        if self.paused.load(Ordering::Acquire)
            && self.outstanding() <= self.ctx.max_outstanding / 2
            && queued <= MAX_QUEUED_BYTES / 2
            && self.paused.swap(false, Ordering::AcqRel)
        {
            self.selector.send(Cmd::Resume(self.token));
        }
    }

    /// Records that a request is owed an answer, in order.
    fn owe(&self, xid: i32, shape: Shape) {
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        self.ctx.stats.outstanding.fetch_add(1, Ordering::Relaxed);
        self.owed.lock().push_back(Owed {
            xid,
            shape,
            since: Instant::now(),
        });
    }

    /// Queues the watch notification of `e` for this connection's client, with the zxid
    /// of the change that fired it, as ZooKeeper 3.9 sends it (see
    /// [`Output::queue_event`]).
    fn queue_notification(&self, e: &WatchedEvent) -> bool {
        let Some(frame) = requests::encode_notification(e, e.zxid) else {
            return false;
        };
        // Answers are bounded by the requests a connection may have unanswered;
        // notifications are not: a client that does not read them is closed.
        let unread = self.out.lock().bytes;
        if unread.saturating_add(frame.len()) > MAX_UNREAD_BYTES {
            self.shut();
            self.selector
                .send(Cmd::Close(self.token, "too slow to read its notifications"));
            return false;
        }
        self.queue(frame)
    }

    /// Bytes the client has sent that are not read yet (up to 64 KiB).
    #[cfg(test)]
    pub(crate) fn unread_bytes(&self) -> usize {
        let mut buf = vec![0; READ_CHUNK];
        self.socket.stream().peek(&mut buf).unwrap_or(0)
    }

    /// The zxid answers carry: what this node has applied.
    fn zxid(&self) -> i64 {
        i64::try_from(self.ctx.shared.applied_index()).unwrap_or(i64::MAX)
    }
}

/// The connection is its session's output and its watcher: answers and notifications are
/// encoded straight into its ordered queue, in order.
impl Output for ConnIo {
    /// The zxid is the one the pipeline read when it produced the answer, so a client
    /// that reconnects with it is owed every event up to it and none after (ZooKeeper
    /// queues notifications before its last processed zxid moves).
    fn queue_reply(&self, xid: i64, zxid: i64, result: Result<Reply>) -> bool {
        let Some(owed) = self.owed.lock().pop_front() else {
            return false;
        };
        debug_assert_eq!(i64::from(owed.xid), xid);
        let latency = u64::try_from(owed.since.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.ctx.stats.latency.record(latency);
        self.stats.latency.record(latency);
        self.ctx.stats.outstanding.fetch_sub(1, Ordering::Relaxed);
        self.outstanding.fetch_sub(1, Ordering::Relaxed);
        if matches!(result, Err(Error::SessionMoved)) {
            // The session lives on another member: as ZooKeeper (ZOOKEEPER-710), the
            // connection is closed without an answer, so the client sees a connection
            // loss, reconnects and retries.
            self.close_when_flushed();
            return false;
        }
        let frame = requests::encode_reply(&owed.shape, owed.xid, zxid, result);
        if owed.shape.op == op::CLOSE_SESSION {
            self.send(frame);
            self.close_when_flushed();
            return false;
        }
        self.queue(frame)
    }

    fn queue_event(&self, event: &WatchedEvent) -> bool {
        self.queue_notification(event)
    }

    fn flush(&self) {
        ConnIo::flush(self);
    }
}

/// Where a connection is in its life.
pub(crate) enum Phase {
    /// Waiting for the handshake (or a four-letter word).
    Connecting,
    /// The session is being opened (or re-attached) through the log.
    Handshaking,
    /// Serving a session.
    Open(Session),
    /// Answered; closing once written.
    Done,
}

/// A connection as its I/O thread holds it.
pub(crate) struct Conn {
    pub(crate) io: Arc<ConnIo>,
    inbuf: Vec<u8>,
    pub(crate) phase: Phase,
    pub(crate) opened: Instant,
    /// When it became `Done` (closed if its client has not read the answer in time).
    pub(crate) done_at: Option<Instant>,
    /// On its I/O thread's ready list.
    pub(crate) queued: bool,
    /// The I/O thread has readable bytes it did not read (paused).
    unread: bool,
}

/// Why a connection is closed.
pub(crate) type CloseReason = String;

impl Conn {
    pub(crate) fn new(io: Arc<ConnIo>) -> Conn {
        Conn {
            io,
            inbuf: Vec::new(),
            phase: Phase::Connecting,
            opened: Instant::now(),
            done_at: None,
            queued: false,
            unread: false,
        }
    }

    /// Answered: nothing more is read; closed once the answer is written.
    pub(crate) fn set_done(&mut self) {
        self.phase = Phase::Done;
        self.done_at.get_or_insert_with(Instant::now);
    }

    fn max_frame(&self) -> usize {
        self.io.ctx.shared.config().max_request_size
    }

    /// Reads what the socket has and handles the complete frames, up to a turn's budget;
    /// `Err` closes the connection with the reason logged.
    pub(crate) fn on_readable(&mut self) -> std::result::Result<Turn, CloseReason> {
        self.unread = true;
        self.pump()
    }

    /// Another turn: reading allowed again (back-pressure released, handshake done), or
    /// more to do after the last turn's budget ran out.
    pub(crate) fn resume(&mut self) -> std::result::Result<Turn, CloseReason> {
        self.pump()
    }

    /// Most bytes buffered while frames may not be handled (during the handshake): one
    /// whole frame and a chunk.
    fn max_buffered(&self) -> usize {
        self.max_frame() + 4 + READ_CHUNK
    }

    fn pump(&mut self) -> std::result::Result<Turn, CloseReason> {
        let mut budget = FRAMES_PER_TURN;
        loop {
            budget -= self.handle_frames(budget)?;
            if budget == 0 {
                return Ok(Turn::More);
            }
            if matches!(self.phase, Phase::Open(_)) && self.io.must_pause() {
                // Paused first, then checked again: an answer that came in between
                // either sees `paused` (and sends Resume) or is seen here.
                self.io.paused.store(true, Ordering::Release);
                if self.io.must_pause() || !self.io.paused.swap(false, Ordering::AcqRel) {
                    return Ok(Turn::Idle);
                }
                continue;
            }
            // Done: nothing more is read. During the handshake, reading goes on (a client
            // that hangs up is noticed) up to one frame and a chunk.
            if !self.unread
                || matches!(self.phase, Phase::Done)
                || self.inbuf.len() >= self.max_buffered()
            {
                return Ok(Turn::Idle);
            }
            // Into the I/O thread's buffer, then only the bytes read into the connection's
            // (a connection holds what it has not handled, not a chunk's room).
            let read = READ_BUFFER.with(|buf| {
                let mut buf = buf.borrow_mut();
                let read = self.io.socket.read(&mut buf[..]);
                if let Ok(n) = read {
                    self.inbuf.extend_from_slice(&buf[..n]);
                }
                read
            });
            match read {
                Ok(0) => return Err("closed by the client".into()),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // Handle what was read, then wait for the next readable event.
                Err(e) if e.kind() == ErrorKind::WouldBlock => self.unread = false,
                // A TLS port's client that breaks TLS: no TLS, an untrusted certificate.
                Err(e) if e.kind() == ErrorKind::InvalidData => {
                    return Err(format!("TLS refused: {e}"))
                }
                Err(e) => return Err(format!("read failed: {e}")),
            }
        }
    }

    /// Whether frames may be handled now.
    fn may_handle(&self) -> bool {
        match self.phase {
            Phase::Handshaking | Phase::Done => false,
            Phase::Connecting => true,
            Phase::Open(_) => !self.io.must_pause(),
        }
    }

    /// Handles up to `budget` complete frames buffered, while allowed; returns how many.
    /// Each is decoded where it lies in the input buffer, not copied out first.
    fn handle_frames(&mut self, budget: usize) -> std::result::Result<usize, CloseReason> {
        // Held apart while frames are handled (they borrow it; handling needs `self`).
        let inbuf = std::mem::take(&mut self.inbuf);
        let mut at = 0;
        let mut handled = 0;
        let result = loop {
            if handled == budget || !self.may_handle() {
                break Ok(());
            }
            let rest = &inbuf[at..];
            if rest.len() < 4 {
                break Ok(());
            }
            let head = [rest[0], rest[1], rest[2], rest[3]];
            if matches!(self.phase, Phase::Connecting) {
                if let Some(word) = four_letter::word(&head) {
                    let text = four_letter::answer(&self.io.ctx, word);
                    self.io.send(text.into_bytes());
                    self.io.close_when_flushed();
                    self.set_done();
                    break Ok(());
                }
            }
            let len = i32::from_be_bytes(head);
            let max = self.max_frame();
            if len < 0 || len as usize > max {
                break Err(format!(
                    "frame of {len} bytes is outside [0, {max}] (jute.maxbuffer)"
                ));
            }
            let len = len as usize;
            if rest.len() < 4 + len {
                break Ok(());
            }
            let frame = &rest[4..4 + len];
            at += 4 + len;
            handled += 1;
            if let Err(e) = self.handle_frame(frame) {
                break Err(e);
            }
        };
        self.inbuf = inbuf;
        self.inbuf.drain(..at);
        if self.inbuf.capacity() > 2 * READ_CHUNK && self.inbuf.len() < READ_CHUNK {
            self.inbuf.shrink_to(READ_CHUNK);
        }
        result.map(|()| handled)
    }

    fn handle_frame(&mut self, frame: &[u8]) -> std::result::Result<(), CloseReason> {
        self.io.stats.received.fetch_add(1, Ordering::Relaxed);
        self.io.ctx.stats.received.fetch_add(1, Ordering::Relaxed);
        match &self.phase {
            Phase::Connecting => {
                let req = ConnectRequest::decode(frame)
                    .map_err(|e| format!("malformed handshake: {e}"))?;
                let ours = self.io.zxid();
                if req.last_zxid_seen > ours {
                    // As ZooKeeper: a client that has seen a newer change than this member
                    // has applied is closed without an answer and tries another server,
                    // so it never reads older data than it has seen.
                    return Err(format!(
                        "client has seen zxid {:#x}, this member has applied {ours:#x}: \
                         it must try another server",
                        req.last_zxid_seen
                    ));
                }
                self.phase = Phase::Handshaking;
                super::handshake::start(&self.io, &req);
                Ok(())
            }
            Phase::Open(session) => {
                let (xid, req) = match decode_request(frame) {
                    Ok(decoded) => decoded,
                    Err(WireError::UnknownOp(code)) if frame.len() >= 4 => {
                        // As ZooKeeper: Unimplemented (-6) for the request, then the
                        // connection is closed.
                        let xid = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
                        // zxid 0: clients ignore it (a later one could cover events
                        // still queued for them).
                        self.io.send(requests::encode_header(xid, 0, -6));
                        self.io.close_when_flushed();
                        self.set_done();
                        slog::info!(self.io.ctx.logger, "client connection closed";
                            "peer" => %self.io.peer,
                            "reason" => format!("unknown operation code {code}"));
                        return Ok(());
                    }
                    Err(e) => return Err(format!("malformed request: {e}")),
                };
                session.touch();
                if serve(&self.io, session, xid, req) == Served::Close {
                    self.set_done();
                }
                Ok(())
            }
            Phase::Handshaking | Phase::Done => Ok(()),
        }
    }
}

/// Whether the connection goes on after a request.
#[derive(Debug, PartialEq, Eq)]
enum Served {
    On,
    /// Nothing more is read (a failed authentication: ZooKeeper stops reading too).
    Close,
}

/// Serves one decoded request of an open session.
fn serve(io: &Arc<ConnIo>, session: &Session, xid: i32, req: ClientRequest) -> Served {
    let zxid = io.zxid();
    io.stats.last_xid.store(i64::from(xid), Ordering::Relaxed);
    match req {
        ClientRequest::Ping => {
            io.stats
                .last_op
                .store(i64::from(op::PING), Ordering::Relaxed);
            io.send(requests::encode_header(ReplyHeader::PING_XID, zxid, 0));
            Served::On
        }
        ClientRequest::Auth { scheme, auth } => {
            // Answered at once, outside the session's order, as ZooKeeper does (xid -4);
            // a failure closes the connection, as ZooKeeper closes it.
            let err = match session.add_auth(&scheme, &auth) {
                Ok(()) => 0,
                Err(e) => e.code(),
            };
            io.send(requests::encode_header(-4, zxid, err));
            if err != 0 {
                io.close_when_flushed();
                return Served::Close;
            }
            Served::On
        }
        ClientRequest::Sasl { token } => {
            // Answered at once, as ZooKeeper answers it (outside the session's order).
            io.stats
                .last_op
                .store(i64::from(op::SASL), Ordering::Relaxed);
            let answer = |err: i32, token: Option<&[u8]>| {
                let mut w = JuteWriter::with_capacity(24 + token.map_or(0, <[u8]>::len));
                w.int(0);
                ReplyHeader { xid, zxid: 0, err }.write(&mut w);
                w.nullable_buffer(token);
                io.send(requests::finish_frame(w));
            };
            let Some(users) = &io.ctx.sasl else {
                // As a ZooKeeper server without a SASL login (no JAAS `Server`
                // section): OK with a null token, the connection kept; the client's
                // SASL exchange then goes no further and nothing is authenticated.
                answer(0, None);
                return Served::On;
            };
            let step = io.sasl.lock().step(users, &token);
            match step {
                Ok(crate::sasl::Step::Continue(token)) => answer(0, Some(&token)),
                Ok(crate::sasl::Step::Done { token, ids }) => {
                    slog::info!(io.ctx.logger, "SASL login";
                        "session" => format!("{:#x}", session.id()), "ids" => format!("{ids:?}"));
                    for id in ids {
                        session.add_identity(id);
                    }
                    answer(0, Some(&token));
                }
                Err(e) => {
                    // As ZooKeeper: AuthFailed, then the connection is closed (the
                    // session lives on until it expires or a client reattaches it).
                    slog::warn!(io.ctx.logger, "SASL login failed: connection closed";
                        "peer" => %io.peer, "error" => %e);
                    answer(e.code(), None);
                    io.close_when_flushed();
                    return Served::Close;
                }
            }
            Served::On
        }
        ClientRequest::WhoAmI => {
            // The identities the request arrives with (as ZooKeeper takes the
            // connection's auth info when it reads a request), answered in order.
            let ids = session.identities();
            submit(io, session, xid, Shape::of(op::WHO_AM_I), |s, x, sink| {
                s.submit_answered(x, Ok(Reply::Identities(ids)), sink)
            });
            Served::On
        }
        ClientRequest::CreateSession => {
            // ZooKeeper answers a createSession after the handshake with the handshake's
            // answer for the connection's session again.
            io.stats
                .last_op
                .store(i64::from(op::CREATE_SESSION), Ordering::Relaxed);
            io.send(super::handshake::response_frame(&ConnectResponse {
                protocol_version: 0,
                timeout_ms: i32::try_from(io.timeout_ms.load(Ordering::Relaxed))
                    .unwrap_or(i32::MAX),
                session_id: session.id(),
                password: session.password().to_vec(),
                read_only: false,
            }));
            Served::On
        }
        ClientRequest::CloseSession => {
            io.closing_session.store(true, Ordering::Release);
            let shape = Shape::of(op::CLOSE_SESSION);
            submit(io, session, xid, shape, |s, x, sink| {
                s.submit_to(
                    x,
                    crate::pipeline::Request::Write(crate::command::Op::CloseSession {
                        session: s.id(),
                        expired: false,
                    }),
                    sink,
                )
            });
            Served::On
        }
        req => {
            match requests::action(req) {
                Action::Submit(request, shape) => submit(io, session, xid, shape, |s, x, sink| {
                    s.submit_to(x, request, sink)
                }),
                Action::Answer(result, shape) => submit(io, session, xid, shape, |s, x, sink| {
                    s.submit_answered(x, result, sink)
                }),
            }
            Served::On
        }
    }
}

fn submit(
    io: &Arc<ConnIo>,
    session: &Session,
    xid: i32,
    shape: Shape,
    f: impl FnOnce(&Session, i64, &Arc<dyn Output>),
) {
    io.stats
        .last_op
        .store(i64::from(shape.op), Ordering::Relaxed);
    io.owe(xid, shape);
    let out: Arc<dyn Output> = io.clone();
    f(session, i64::from(xid), &out);
}
