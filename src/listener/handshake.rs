//! The session workers: a fixed set of threads that open or re-attach the sessions of
//! new connections. Opening a session is a raft round trip, so it is kept off the I/O
//! threads; a connection has at most one handshake queued, so the queue is bounded by
//! the connection limit.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::conn::ConnIo;
use super::event_loop::{session_watcher, Cmd};
use super::Ctx;
use crate::error::Error;
use crate::session::SessionBuilder;
use crate::wire::proto::{ConnectRequest, ConnectResponse};

/// Threads opening sessions.
pub(crate) const WORKERS: usize = 8;

/// The queue of handshakes to do.
pub(crate) struct Handshakes {
    tx: Sender<Job>,
}

/// A connection's handshake and when it arrived.
pub(crate) type Job = (Arc<ConnIo>, ConnectRequest, Instant);

impl Handshakes {
    /// The queue and its receiving end (for [`run`]).
    pub(crate) fn new() -> (Handshakes, Receiver<Job>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        (Handshakes { tx }, rx)
    }

    /// Queues a connection's handshake.
    pub(crate) fn submit(&self, io: Arc<ConnIo>, req: ConnectRequest) {
        let _ = self.tx.send((io, req, Instant::now()));
    }
}

/// A worker's loop, until the listener stops.
pub(crate) fn run(ctx: Arc<Ctx>, rx: Receiver<Job>) {
    while !ctx.stopping.load(Ordering::Acquire) {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok((io, req, since)) => {
                // A client gives up on a server after a share of its timeout and tries
                // another: a handshake older than a third of it (or whose client hung up)
                // is not done, so it cannot take the session from where the client went.
                let requested =
                    Duration::from_millis(u64::try_from(req.timeout_ms.max(0)).unwrap_or(0));
                let patience = (requested / 3).max(Duration::from_secs(1));
                if io.is_closed() || since.elapsed() > patience {
                    io.close_when_flushed();
                    io.selector().send(Cmd::Handshaken(io.token, None));
                    continue;
                }
                handshake(&ctx, &io, &req)
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// The handshake's answer as a frame (length prefix included).
pub(crate) fn response_frame(r: &ConnectResponse) -> Vec<u8> {
    let body = r.encode();
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(&body);
    buf
}

/// Opens (session id 0) or re-attaches the connection's session, with the timeout
/// negotiated as ZooKeeper does (clamped to the node's bounds), and answers.
fn handshake(ctx: &Arc<Ctx>, io: &Arc<ConnIo>, req: &ConnectRequest) {
    let requested = Duration::from_millis(u64::try_from(req.timeout_ms.max(0)).unwrap_or(0));
    let builder = SessionBuilder::new(ctx.shared.clone())
        .for_client()
        .timeout(requested)
        .watcher(session_watcher(io));
    let res = if req.session_id == 0 {
        builder.open()
    } else {
        builder.attach(req.session_id, &req.password)
    };
    match res {
        Ok(session) => {
            // Every connection holds the identity `ip:<client address>`, as ZooKeeper's
            // IPAuthenticationProvider gives it (an IPv4 client of a dual-stack socket as
            // IPv4, as Java reports it).
            let ip = io.peer.ip().to_canonical().to_string();
            session.add_identity(crate::acl::Id::new(crate::acl::IP, ip));
            let timeout = i32::try_from(session.timeout().as_millis()).unwrap_or(i32::MAX);
            ctx.serves(io, session.id());
            io.timeout_ms.store(i64::from(timeout), Ordering::Relaxed);
            io.send(response_frame(&ConnectResponse {
                protocol_version: 0,
                timeout_ms: timeout,
                session_id: session.id(),
                password: session.password().to_vec(),
                read_only: false,
            }));
            slog::debug!(ctx.logger, "client session";
                "peer" => %io.peer, "session" => format!("{:#x}", session.id()),
                "reattached" => req.session_id != 0);
            io.selector().send(Cmd::Handshaken(io.token, Some(session)));
        }
        Err(Error::SessionExpired) => {
            // As ZooKeeper: timeout 0 tells the client its session is gone.
            io.send(response_frame(&ConnectResponse {
                protocol_version: 0,
                timeout_ms: 0,
                session_id: 0,
                password: vec![0; 16],
                read_only: false,
            }));
            io.close_when_flushed();
            io.selector().send(Cmd::Handshaken(io.token, None));
        }
        Err(e) => {
            // No quorum, shutting down, …: the client tries another server.
            slog::info!(ctx.logger, "client handshake refused"; "peer" => %io.peer, "error" => %e);
            io.close_when_flushed();
            io.selector().send(Cmd::Handshaken(io.token, None));
        }
    }
}
