//! The bytes of one peer connection: plain TCP, or TLS over it (mutual authentication, see
//! [`crate::tls`]). [`Outbound`] is a connection this member dialled, written to only;
//! [`Inbound`] one a peer dialled, read from only after the handshake's answer.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::Instant;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection, StreamOwned};

/// A connection this member dialled. Its socket is blocking (with timeouts) through the
/// handshake, non-blocking after it (see `write_some`).
pub(super) enum Outbound {
    Plain(TcpStream),
    Tls(Box<(ClientConnection, TcpStream)>),
}

impl Outbound {
    /// Completes a TLS handshake on the blocking `sock` by `until` (as the client,
    /// expecting `name` in the peer's certificate), or takes it as is when `tls` is
    /// `None`.
    pub(super) fn connect(
        sock: TcpStream,
        tls: Option<(&Arc<ClientConfig>, ServerName<'static>)>,
        until: Instant,
    ) -> io::Result<Outbound> {
        let Some((config, name)) = tls else {
            return Ok(Outbound::Plain(sock));
        };
        let mut conn = ClientConnection::new(config.clone(), name).map_err(io::Error::other)?;
        let mut sock = sock;
        handshake(&mut conn, &mut sock, until)?;
        Ok(Outbound::Tls(Box::new((conn, sock))))
    }

    /// The TCP socket underneath.
    pub(super) fn socket(&self) -> &TcpStream {
        match self {
            Outbound::Plain(s) => s,
            Outbound::Tls(b) => &b.1,
        }
    }

    /// Closes the socket (both ways).
    pub(super) fn shutdown(&self) {
        let _ = self.socket().shutdown(Shutdown::Both);
    }

    /// Whether TLS records are waiting to be written (the socket did not take them).
    pub(super) fn pending(&self) -> bool {
        match self {
            Outbound::Plain(_) => false,
            Outbound::Tls(b) => b.0.wants_write(),
        }
    }

    /// Writes all of `parts` on the socket in its current mode (blocking: through the
    /// handshake).
    pub(super) fn write_all(&mut self, parts: &[&[u8]]) -> io::Result<()> {
        match self {
            Outbound::Plain(s) => parts.iter().try_for_each(|p| s.write_all(p)),
            Outbound::Tls(b) => {
                let (conn, sock) = &mut **b;
                let timed_out = || io::Error::from(io::ErrorKind::TimedOut);
                // Records left by an earlier non-blocking write go first.
                if !flush(conn, sock)? {
                    return Err(timed_out());
                }
                for part in parts {
                    let mut done = 0;
                    while done < part.len() {
                        // With nothing waiting, rustls takes at least some.
                        let n = conn.writer().write(&part[done..])?;
                        if n == 0 {
                            return Err(io::ErrorKind::WriteZero.into());
                        }
                        done += n;
                        if !flush(conn, sock)? {
                            return Err(timed_out());
                        }
                    }
                }
                Ok(())
            }
        }
    }

    /// Reads exactly `buf.len()` bytes on the blocking socket (the handshake's answer).
    pub(super) fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        match self {
            Outbound::Plain(s) => s.read_exact(buf),
            Outbound::Tls(b) => {
                let (conn, sock) = &mut **b;
                rustls::Stream::new(conn, sock).read_exact(buf)
            }
        }
    }

    /// Writes what the non-blocking socket takes of `buf` now: the number of bytes taken.
    /// Over TLS, bytes taken may still wait as records ([`Outbound::pending`]); they go
    /// out, in order, before anything written later.
    pub(super) fn write_some(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Outbound::Plain(s) => {
                let mut done = 0;
                while done < buf.len() {
                    match s.write(&buf[done..]) {
                        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                        Ok(n) => done += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(done)
            }
            Outbound::Tls(b) => {
                let (conn, sock) = &mut **b;
                if !flush(conn, sock)? {
                    return Ok(0);
                }
                // rustls takes up to its buffer limit (64 KiB of records waiting).
                let n = conn.writer().write(buf)?;
                flush(conn, sock)?;
                Ok(n)
            }
        }
    }

    /// Writes all of `parts` on the non-blocking socket, blocking (up to its write
    /// timeout) while the peer does not read.
    pub(super) fn write_blocking(&mut self, parts: &[&[u8]]) -> io::Result<()> {
        self.socket().set_nonblocking(false)?;
        let written = self.write_all(parts);
        self.socket().set_nonblocking(true)?;
        written
    }
}

/// Writes waiting TLS records until none is left (true) or the socket takes no more
/// (false: it would block, or its write timeout passed).
fn flush(conn: &mut ClientConnection, sock: &mut TcpStream) -> io::Result<bool> {
    while conn.wants_write() {
        match conn.write_tls(sock) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Completes `conn`'s TLS handshake on the blocking `sock` by `until`.
fn handshake<D: rustls::SideData>(
    conn: &mut rustls::ConnectionCommon<D>,
    sock: &mut TcpStream,
    until: Instant,
) -> io::Result<()> {
    while conn.is_handshaking() {
        conn.complete_io(&mut Deadline {
            sock: &mut *sock,
            until,
        })?;
    }
    Ok(())
}

/// A socket whose reads all end by one deadline: each read may take only the time left
/// (a peer sending a byte at a time cannot stretch a handshake past it).
struct Deadline<'a> {
    sock: &'a mut TcpStream,
    until: Instant,
}

impl Deadline<'_> {
    fn arm(sock: &TcpStream, until: Instant) -> io::Result<()> {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        sock.set_read_timeout(Some(left))
    }
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Deadline::arm(self.sock, self.until)?;
        self.sock.read(buf)
    }
}

impl Write for Deadline<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sock.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.sock.flush()
    }
}

/// A connection a peer dialled: its socket blocking. Until [`Inbound::handshaken`], every
/// read ends by the handshake's deadline.
pub(super) struct Inbound {
    kind: InboundKind,
    until: Option<Instant>,
}

enum InboundKind {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ServerConnection, TcpStream>>),
}

impl Inbound {
    /// Completes a TLS handshake on `sock` as the server (the peer's certificate
    /// required) by `until`, or takes it as is when `tls` is `None`. A peer whose
    /// certificate no trusted authority signed, or that sends no TLS, gets an error here.
    pub(super) fn accept(
        sock: TcpStream,
        tls: Option<&Arc<ServerConfig>>,
        until: Instant,
    ) -> io::Result<Inbound> {
        let Some(config) = tls else {
            return Ok(Inbound {
                kind: InboundKind::Plain(sock),
                until: Some(until),
            });
        };
        let mut conn = ServerConnection::new(config.clone()).map_err(io::Error::other)?;
        let mut sock = sock;
        handshake(&mut conn, &mut sock, until)?;
        Ok(Inbound {
            kind: InboundKind::Tls(Box::new(StreamOwned::new(conn, sock))),
            until: Some(until),
        })
    }

    /// The handshake is done: reads wait as long as it takes from now on.
    pub(super) fn handshaken(&mut self) -> io::Result<()> {
        self.until = None;
        self.socket().set_read_timeout(None)
    }

    /// Whether the peer's certificate names `addr`'s host (its name or IP address), as
    /// a dialler checks the certificate of the peer it dials: a member of the ensemble's
    /// authority cannot pass for another. True on a plain connection (nothing to check).
    pub(super) fn certificate_names(&self, addr: &str) -> bool {
        let InboundKind::Tls(s) = &self.kind else {
            return true;
        };
        let Ok(name) = crate::tls::server_name(addr) else {
            return false;
        };
        let Some(cert) = s.conn.peer_certificates().and_then(|c| c.first()) else {
            return false;
        };
        webpki::EndEntityCert::try_from(cert)
            .and_then(|c| c.verify_is_valid_for_subject_name(&name))
            .is_ok()
    }

    /// The TCP socket underneath.
    pub(super) fn socket(&self) -> &TcpStream {
        match &self.kind {
            InboundKind::Plain(s) => s,
            InboundKind::Tls(s) => &s.sock,
        }
    }
}

impl Read for Inbound {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(until) = self.until {
            Deadline::arm(self.socket(), until)?;
        }
        match &mut self.kind {
            InboundKind::Plain(s) => s.read(buf),
            InboundKind::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Inbound {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.kind {
            InboundKind::Plain(s) => s.write(buf),
            InboundKind::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.kind {
            InboundKind::Plain(s) => s.flush(),
            InboundKind::Tls(s) => s.flush(),
        }
    }
}
