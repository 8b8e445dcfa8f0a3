//! Handshakes: a new connection's session opened or re-attached without a thread waiting
//! for it. Opening a session is a raft round trip; the proposal goes to the driver at
//! once (many opens share its rounds, as writes do), and the answer is written, and the
//! connection opened for requests, when the entry is applied — on the session's callback
//! thread. A reconnect storm queues proposals, not threads.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::conn::ConnIo;
use super::event_loop::{session_watcher, Cmd};
use crate::error::{Error, Result};
use crate::session::{Session, SessionBuilder};
use crate::wire::proto::{ConnectRequest, ConnectResponse};

/// Opens (session id 0) or re-attaches the connection's session, with the timeout
/// negotiated as ZooKeeper does (clamped to the node's bounds); [`answer`] replies once
/// it is done.
///
/// A member serving read-only clients (no quorum, read-only mode on) hosts a read-only
/// client's session locally and answers at once, and refuses any other client.
pub(crate) fn start(io: &Arc<ConnIo>, req: &ConnectRequest) {
    let ctx = &io.ctx;
    let requested = Duration::from_millis(u64::try_from(req.timeout_ms.max(0)).unwrap_or(0));
    let builder = SessionBuilder::new(ctx.host.clone())
        .for_client(io.clone())
        .timeout(requested)
        .watcher(session_watcher(io));
    let reattached = req.session_id != 0;
    if !ctx.shared.is_member() {
        // Removed from the ensemble, or not added yet: the client tries another server.
        slog::info!(ctx.logger, "client refused: this node is not a member of the ensemble";
            "peer" => %io.peer);
        io.close_when_flushed();
        io.selector().send(Cmd::Handshaken(io.token, None));
        return;
    }
    if ctx.read_only.load(Ordering::Acquire) {
        if !req.read_only {
            // As ZooKeeper's read-only server: the client looks for a member that serves
            // writes.
            slog::info!(ctx.logger, "client refused: not read-only, and this member has no quorum";
                "peer" => %io.peer);
            io.close_when_flushed();
            io.selector().send(Cmd::Handshaken(io.token, None));
            return;
        }
        let res = builder.read_only(req.session_id, &req.password);
        return answer(io, reattached, true, res);
    }
    let conn = io.clone();
    let then = move |res: Result<Session>| answer(&conn, reattached, false, res);
    if reattached {
        builder.attach_then(req.session_id, &req.password, then);
    } else {
        builder.open_then(then);
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

/// Answers the handshake with its outcome (a read-only session's as such) and hands the
/// session to the connection.
fn answer(io: &Arc<ConnIo>, reattached: bool, read_only: bool, res: Result<Session>) {
    let ctx = &io.ctx;
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
                read_only,
            }));
            slog::debug!(ctx.logger, "client session";
                "peer" => %io.peer, "session" => format!("{:#x}", session.id()),
                "reattached" => reattached);
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
