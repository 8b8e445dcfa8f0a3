//! What an operator does to a running ensemble from outside it, without a ZooKeeper
//! client: [`reconfig`] through a member's client port, as `zkCli.sh reconfig` does. A
//! minimal blocking client of ZooKeeper's protocol: it opens a session, authenticates
//! (digest), sends one `reconfig`, closes the session. Every read is bounded by the
//! timeout and every frame by its length.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::reconfig::Reconfig;
use crate::tree::Stat;
use crate::wire::jute::{read_stat, JuteReader, JuteWriter};
use crate::wire::proto::op;

/// Largest answer frame read: `/zookeeper/config` is small.
const MAX_FRAME: usize = 1 << 20;
const AUTH_XID: i32 = -4;

/// Sends `request` to the member serving clients at `server` (`host:port`), as the user
/// of `digest_auth` (`user:password`, ZooKeeper's digest scheme: the super user's, since
/// `/zookeeper/config` is read-only for everyone else), and returns `/zookeeper/config`'s
/// text and stat once the change is applied on that member. ZooKeeper's refusals come
/// back as the matching [`Error`] (`NoAuth`, `BadArguments`, `ReconfigInProgress`,
/// `BadConfigVersion`, `NewConfigNoQuorum`, `ReconfigDisabled`, `AuthFailed`).
pub fn reconfig(
    server: &str,
    digest_auth: Option<&str>,
    request: &Reconfig,
    timeout: Duration,
) -> Result<(String, Stat)> {
    let deadline = Instant::now() + timeout;
    let mut conn = Conn::open(server, timeout)?;
    // ConnectRequest: protocol 0, last zxid 0, session timeout, new session, no password.
    let mut w = JuteWriter::with_capacity(64);
    w.int(0)
        .long(0)
        .int(
            i32::try_from(timeout.as_millis())
                .unwrap_or(i32::MAX)
                .max(4_000),
        )
        .long(0)
        .buffer(&[0u8; 16])
        .boolean(false);
    conn.send(w.finish(), deadline)?;
    let frame = conn.receive(deadline)?;
    let mut r = JuteReader::new(&frame);
    let (_, negotiated) = (r.int().map_err(wire)?, r.int().map_err(wire)?);
    if negotiated <= 0 {
        return Err(Error::SessionExpired);
    }
    if let Some(auth) = digest_auth {
        let mut w = JuteWriter::with_capacity(64 + auth.len());
        w.int(AUTH_XID)
            .int(op::AUTH)
            .int(0)
            .string("digest")
            .buffer(auth.as_bytes());
        conn.send(w.finish(), deadline)?;
        conn.answer(AUTH_XID, -1, deadline)?;
    }
    let mut w = JuteWriter::with_capacity(256);
    fn text(s: &Option<String>) -> Option<&[u8]> {
        s.as_deref().map(str::as_bytes)
    }
    w.int(1)
        .int(op::RECONFIG)
        .nullable_buffer(text(&request.joining))
        .nullable_buffer(text(&request.leaving))
        .nullable_buffer(text(&request.new_members))
        .long(request.from_config);
    conn.send(w.finish(), deadline)?;
    let body = conn.answer(1, request.from_config, deadline)?;
    let mut r = JuteReader::new(&body);
    let data = r.buffer().map_err(wire)?;
    let stat = read_stat(&mut r).map_err(wire)?;
    let mut w = JuteWriter::with_capacity(8);
    w.int(2).int(op::CLOSE_SESSION);
    // The session closes with the connection anyway: its answer is not awaited.
    let _ = conn.send(w.finish(), deadline);
    Ok((String::from_utf8_lossy(&data).into_owned(), stat))
}

fn wire(e: crate::wire::jute::WireError) -> Error {
    Error::Io(format!("malformed answer: {e}"))
}

/// The error a ZooKeeper server answers with `code` to a reconfig meant for
/// `from_config`.
fn error_of(code: i32, from_config: i64) -> Error {
    match code {
        -102 => Error::NoAuth("/zookeeper/config".into()),
        -8 => Error::BadArguments(
            "refused: a malformed server string, or a change that cannot be made".into(),
        ),
        -14 => Error::ReconfigInProgress,
        -13 => Error::NewConfigNoQuorum("the new member has not caught up yet".into()),
        -103 => Error::BadConfigVersion {
            expected: from_config,
            actual: None,
        },
        -123 => Error::ReconfigDisabled,
        -115 => Error::AuthFailed("digest credentials refused".into()),
        -112 => Error::SessionExpired,
        -7 => Error::Timeout(Duration::ZERO),
        other => Error::Io(format!("the server answered error {other}")),
    }
}

struct Conn {
    stream: TcpStream,
}

impl Conn {
    fn open(server: &str, timeout: Duration) -> Result<Conn> {
        let addr = server
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| Error::Io(format!("{server} resolves to nothing")))?;
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_nodelay(true)?;
        Ok(Conn { stream })
    }

    fn left(deadline: Instant) -> Result<Duration> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::Timeout(Duration::ZERO));
        }
        Ok(left)
    }

    fn send(&mut self, payload: Vec<u8>, deadline: Instant) -> Result<()> {
        self.stream.set_write_timeout(Some(Self::left(deadline)?))?;
        let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        self.stream.write_all(&len.to_be_bytes())?;
        self.stream.write_all(&payload)?;
        Ok(())
    }

    fn receive(&mut self, deadline: Instant) -> Result<Vec<u8>> {
        self.stream.set_read_timeout(Some(Self::left(deadline)?))?;
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len)?;
        let n = u32::from_be_bytes(len) as usize;
        if n > MAX_FRAME {
            return Err(Error::Io(format!("answer of {n} bytes")));
        }
        let mut frame = vec![0u8; n];
        self.stream.read_exact(&mut frame)?;
        Ok(frame)
    }

    /// The body of the answer to `xid` (notifications and pings skipped), or its error
    /// (see [`error_of`]).
    fn answer(&mut self, xid: i32, from_config: i64, deadline: Instant) -> Result<Vec<u8>> {
        loop {
            let frame = self.receive(deadline)?;
            let mut r = JuteReader::new(&frame);
            let got = r.int().map_err(wire)?;
            let _zxid = r.long().map_err(wire)?;
            let err = r.int().map_err(wire)?;
            if got != xid {
                continue;
            }
            if err != 0 {
                return Err(error_of(err, from_config));
            }
            let header = 16;
            return Ok(frame[header..].to_vec());
        }
    }
}
