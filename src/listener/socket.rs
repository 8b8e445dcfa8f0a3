//! A client connection's socket: plain TCP, or TLS over it (ZooKeeper's
//! `secureClientPort`). Either way its users see plaintext: the I/O thread reads requests,
//! whoever answers writes frames.
//!
//! Over TLS, the rustls connection sits behind a lock, taken by the reader (which may also
//! write the handshake's records) and by writers, never with another lock taken after it;
//! every write to the socket happens under it, so records leave in order. Records the
//! socket does not take wait in rustls (at most its 64 KiB buffer limit beyond what the
//! connection's queue accounts for) and leave at the next write or writable event.

use std::io::{self, ErrorKind, Read, Write};
use std::net::Shutdown;

use mio::net::TcpStream;
use parking_lot::Mutex;
use rustls::ServerConnection;

/// A client connection's socket.
pub(crate) struct Socket {
    stream: TcpStream,
    tls: Option<Mutex<ServerConnection>>,
}

impl Socket {
    /// `stream`, with TLS when `tls` is given (a connection that has not begun its
    /// handshake).
    pub(crate) fn new(stream: TcpStream, tls: Option<ServerConnection>) -> Socket {
        Socket {
            stream,
            tls: tls.map(Mutex::new),
        }
    }

    /// The TCP socket underneath.
    pub(crate) fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Reads plaintext into `buf`: `Ok(0)` when the client closed the connection,
    /// `WouldBlock` when nothing more is there now. Over TLS, a client that breaks the
    /// protocol (no TLS, a certificate no trusted authority signed) gets `InvalidData`.
    /// The I/O thread's only.
    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(tls) = &self.tls else {
            return (&self.stream).read(buf);
        };
        let mut tls = tls.lock();
        loop {
            match tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                // The TCP connection ended without TLS's close_notify.
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            let got = tls.read_tls(&mut &self.stream)?;
            let processed = tls.process_new_packets();
            // The handshake's answers, or the alert that tells the client what failed.
            // What the socket does not take now leaves at the next writable event.
            let _ = write_records(&mut tls, &self.stream);
            if let Err(e) = processed {
                return Err(io::Error::new(ErrorKind::InvalidData, e));
            }
            if got == 0 {
                return match tls.reader().read(buf) {
                    Ok(n) => Ok(n),
                    Err(_) => Ok(0),
                };
            }
        }
    }

    /// Writes what the socket takes of `buf` now: the bytes taken, or `WouldBlock`.
    pub(crate) fn write(&self, buf: &[u8]) -> io::Result<usize> {
        let Some(tls) = &self.tls else {
            return (&self.stream).write(buf);
        };
        let mut tls = tls.lock();
        // Records already made go first; new ones only once the socket took them.
        if !write_records(&mut tls, &self.stream)? {
            return Err(ErrorKind::WouldBlock.into());
        }
        let n = tls.writer().write(buf)?;
        write_records(&mut tls, &self.stream)?;
        if n == 0 && !buf.is_empty() {
            return Err(ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    /// Writes records waiting in the TLS layer: true once none waits.
    pub(crate) fn flush(&self) -> io::Result<bool> {
        match &self.tls {
            None => Ok(true),
            Some(tls) => write_records(&mut tls.lock(), &self.stream),
        }
    }

    /// Tells a TLS client the connection ends (close_notify), as far as the socket takes
    /// it, then closes the socket both ways.
    pub(crate) fn close(&self) {
        if let Some(tls) = &self.tls {
            let mut tls = tls.lock();
            tls.send_close_notify();
            let _ = write_records(&mut tls, &self.stream);
        }
        self.shutdown();
    }

    /// Closes the socket both ways.
    pub(crate) fn shutdown(&self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// Writes waiting records until none is left (true) or the socket takes no more (false).
fn write_records(tls: &mut ServerConnection, stream: &TcpStream) -> io::Result<bool> {
    while tls.wants_write() {
        match tls.write_tls(&mut &*stream) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}
