//! The connection's state machine, driven by hand: a real loopback socket and a
//! one-member node, with no I/O thread — each test gives the connection its turns and
//! plays the I/O thread's part (the commands the connection sends it are read from a
//! detached handle).

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use mio::Token;

use super::conn::{Conn, ConnIo, Phase};
use super::event_loop::{Cmd, SelectorHandle};
use super::{ClientPort, Ctx};
use crate::wire::jute::{JuteReader, JuteWriter};
use crate::wire::proto::op;
use crate::Node;

/// A connection served by hand, and its client's end.
struct Harness {
    conn: Conn,
    client: TcpStream,
    commands: Receiver<Cmd>,
    _poll: mio::Poll,
    node: Node,
    _dir: tempfile::TempDir,
    /// Bytes the client wrote since the connection's last turn.
    written: usize,
}

fn harness() -> Harness {
    harness_with(ClientPort::builder)
}

fn harness_with(
    settings: impl FnOnce(std::net::SocketAddr) -> super::ClientPortBuilder,
) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::builder(1).data_dir(dir.path()).start().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while node.leader() != Some(1) {
        assert!(Instant::now() < deadline, "no leader");
        std::thread::sleep(Duration::from_millis(10));
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let client = TcpStream::connect(addr).unwrap();
    // Each write leaves at once, not held behind an unacknowledged one (Nagle).
    client.set_nodelay(true).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (server, peer) = listener.accept().unwrap();
    server.set_nonblocking(true).unwrap();
    let settings = settings(addr).four_letter_words(["ruok"]);
    let ctx = Arc::new(Ctx::new(node.host().clone(), &settings, addr));
    let (selector, commands, poll) = SelectorHandle::detached();
    let io = Arc::new(ConnIo::new(
        Token(2),
        peer,
        super::socket::Socket::new(mio::net::TcpStream::from_std(server), None),
        selector,
        ctx,
    ));
    Harness {
        conn: Conn::new(io),
        client,
        commands,
        _poll: poll,
        node,
        _dir: dir,
        written: 0,
    }
}

/// `body` with its length prefix.
fn frame(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

fn connect_request(last_zxid_seen: i64) -> Vec<u8> {
    let mut w = JuteWriter::with_capacity(48);
    w.int(0)
        .long(last_zxid_seen)
        .int(10_000)
        .long(0)
        .buffer(&[0; 16])
        .boolean(false);
    frame(&w.finish())
}

fn create(xid: i32, path: &str) -> Vec<u8> {
    let mut w = JuteWriter::with_capacity(64);
    w.int(xid)
        .int(op::CREATE)
        .string(path)
        .buffer(b"x")
        .int(1)
        .int(31)
        .string("world")
        .string("anyone")
        .int(0);
    frame(&w.finish())
}

fn get_data(xid: i32, path: &str) -> Vec<u8> {
    let mut w = JuteWriter::with_capacity(32);
    w.int(xid).int(op::GET_DATA).string(path).boolean(false);
    frame(&w.finish())
}

impl Harness {
    fn send(&mut self, bytes: &[u8]) {
        self.client.write_all(bytes).unwrap();
        self.written += bytes.len();
    }

    /// A readable turn, once what the client wrote has arrived (the connection reads
    /// all that has).
    fn readable(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.conn.io.unread_bytes() < self.written {
            assert!(
                Instant::now() < deadline,
                "the client's bytes never arrived"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        self.written = 0;
        self.conn.on_readable().map(|_| ())
    }

    /// One frame the connection wrote to its client (its body).
    fn answer(&mut self) -> Vec<u8> {
        let mut len = [0u8; 4];
        self.client.read_exact(&mut len).unwrap();
        let mut body = vec![0; u32::from_be_bytes(len) as usize];
        self.client.read_exact(&mut body).unwrap();
        body
    }

    /// Nothing is waiting for the client to read.
    fn nothing_sent(&mut self) -> bool {
        self.client.set_nonblocking(true).unwrap();
        let mut b = [0u8; 1];
        let r = self.client.peek(&mut b);
        self.client.set_nonblocking(false).unwrap();
        matches!(r, Err(e) if e.kind() == ErrorKind::WouldBlock)
    }

    /// Plays the I/O thread when the session's entry is applied: the connection opens
    /// for requests and gets a turn.
    fn handshaken(&mut self) {
        match self.commands.recv_timeout(Duration::from_secs(20)) {
            Ok(Cmd::Handshaken(_, Some(session))) => {
                self.conn.phase = Phase::Open(session);
                self.conn.resume().unwrap();
            }
            Ok(_) => panic!("expected the handshake's end"),
            Err(e) => panic!("no handshake: {e}"),
        }
        let body = self.answer();
        let mut r = JuteReader::new(&body);
        assert_eq!(r.int().unwrap(), 0, "protocol version");
        assert_eq!(r.int().unwrap(), 10_000, "timeout");
        assert_ne!(r.long().unwrap(), 0, "a session id");
    }

    /// The xid and error of an answer.
    fn header(&mut self) -> (i32, i32) {
        let body = self.answer();
        let mut r = JuteReader::new(&body);
        let xid = r.int().unwrap();
        let _zxid = r.long().unwrap();
        (xid, r.int().unwrap())
    }

    fn open(&mut self) {
        self.send(&connect_request(0));
        self.readable().unwrap();
        assert!(matches!(self.conn.phase, Phase::Handshaking));
        self.handshaken();
    }
}

#[test]
fn a_four_letter_word_is_answered_and_nothing_more_is_read() {
    let mut h = harness();
    h.send(b"ruok");
    h.readable().unwrap();
    assert!(matches!(h.conn.phase, Phase::Done));
    let mut text = String::new();
    h.client.read_to_string(&mut text).unwrap();
    assert_eq!(text, "imok", "answered, then the connection was shut");
}

#[test]
fn requests_sent_with_the_handshake_wait_for_the_session() {
    let mut h = harness();
    let mut bytes = connect_request(0);
    bytes.extend(get_data(1, "/"));
    h.send(&bytes);
    h.readable().unwrap();
    assert!(matches!(h.conn.phase, Phase::Handshaking));
    h.handshaken();
    assert_eq!(h.header(), (1, 0), "served once the session was open");
}

#[test]
fn frames_split_across_reads_or_packed_into_one_are_each_handled_whole() {
    let mut h = harness();
    h.open();
    let first = get_data(1, "/");
    let (head, tail) = first.split_at(7);
    h.send(head);
    h.readable().unwrap();
    assert!(h.nothing_sent(), "half a frame is not a request");
    let mut rest = tail.to_vec();
    rest.extend(get_data(2, "/missing"));
    rest.extend(get_data(3, "/zookeeper"));
    h.send(&rest);
    h.readable().unwrap();
    assert_eq!(h.header(), (1, 0));
    assert_eq!(h.header(), (2, -101), "NoNode");
    assert_eq!(h.header(), (3, 0));
    assert!(h.nothing_sent());
}

#[test]
fn a_frame_longer_than_the_limit_closes_the_connection() {
    let mut h = harness();
    h.open();
    let max = h.node.config().max_request_size as u32;
    h.send(&(max + 1).to_be_bytes());
    let reason = h.readable().unwrap_err();
    assert!(reason.contains("jute.maxbuffer"), "{reason}");
}

#[test]
fn an_unknown_operation_is_answered_unimplemented_and_ends_the_connection() {
    let mut h = harness();
    h.open();
    let mut w = JuteWriter::with_capacity(8);
    w.int(5).int(9999);
    let mut bytes = frame(&w.finish());
    bytes.extend(get_data(6, "/"));
    h.send(&bytes);
    h.readable().unwrap();
    assert!(matches!(h.conn.phase, Phase::Done));
    assert_eq!(h.header(), (5, -6), "Unimplemented");
    let mut rest = Vec::new();
    h.client.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "nothing after it is served, then the end");
}

#[test]
fn a_client_that_has_seen_more_than_this_member_is_sent_elsewhere() {
    let mut h = harness();
    h.send(&connect_request(i64::MAX));
    let reason = h.readable().unwrap_err();
    assert!(reason.contains("try another server"), "{reason}");
    assert!(
        matches!(h.conn.phase, Phase::Connecting),
        "no session was opened"
    );
}

#[test]
fn a_malformed_handshake_closes_the_connection() {
    let mut h = harness();
    h.send(&frame(&[1, 2, 3]));
    let reason = h.readable().unwrap_err();
    assert!(reason.contains("malformed handshake"), "{reason}");
}

#[test]
fn a_connection_with_as_many_answers_owed_as_allowed_reads_no_more_until_one_is_sent() {
    let mut h = harness_with(|addr| ClientPort::builder(addr).max_outstanding_per_connection(1));
    h.open();
    let mut bytes = create(1, "/owed");
    bytes.extend(get_data(2, "/owed"));
    h.send(&bytes);
    h.readable().unwrap();
    // The create went to raft; the read behind it waits in the buffer (its answer is
    // not owed yet), and the connection is told to go on once the create is answered.
    match h.commands.recv_timeout(Duration::from_secs(20)) {
        Ok(Cmd::Resume(_)) => {}
        Ok(_) => panic!("expected Resume"),
        Err(e) => panic!("never resumed: {e}"),
    }
    assert_eq!(h.header(), (1, 0), "the create's answer");
    assert!(
        h.nothing_sent(),
        "the read was not served while the create was owed"
    );
    h.conn.resume().unwrap();
    assert_eq!(
        h.header(),
        (2, 0),
        "served once resumed: it sees the create"
    );
}
