//! Decoding client frames: what ZooKeeper's clients send decodes, and nothing a client can
//! send panics or allocates beyond the frame.

use super::jute::{read_stat, write_acls, Acl, Id, JuteReader, JuteWriter, WireError};
use super::proto::{
    decode_request, op, ClientRequest, ConnectRequest, ConnectResponse, MultiOp, ReplyHeader,
    WatcherEvent, Write,
};
use crate::command::{CreateMode, Op};

fn open_acl() -> Vec<Acl> {
    vec![Acl {
        perms: 31,
        id: Id {
            scheme: "world".into(),
            id: "anyone".into(),
        },
    }]
}

fn create_frame(xid: i32, path: &str, data: &[u8]) -> Vec<u8> {
    let mut w = JuteWriter::default();
    w.int(xid).int(op::CREATE).string(path).buffer(data);
    write_acls(&mut w, &open_acl());
    w.int(0);
    w.finish()
}

#[test]
fn a_handshake_decodes_with_and_without_the_read_only_flag() {
    // As a 3.5+ client sends it: version 0, last zxid 0, 10 s, no session, 16-byte
    // password, read-only false.
    let mut bytes = vec![0, 0, 0, 0];
    bytes.extend([0; 8]);
    bytes.extend(10_000i32.to_be_bytes());
    bytes.extend([0; 8]);
    bytes.extend(16i32.to_be_bytes());
    bytes.extend([0; 16]);
    let old = ConnectRequest::decode(&bytes).unwrap();
    assert_eq!(
        (old.timeout_ms, old.password.len(), old.read_only),
        (10_000, 16, false)
    );
    bytes.push(1);
    assert!(ConnectRequest::decode(&bytes).unwrap().read_only);
    bytes.push(0);
    assert_eq!(ConnectRequest::decode(&bytes), Err(WireError::Trailing(1)));
    let resp = ConnectResponse {
        protocol_version: 0,
        timeout_ms: 10_000,
        session_id: 0x1234,
        password: vec![7; 16],
        read_only: false,
    };
    assert_eq!(resp.encode().len(), 4 + 4 + 8 + 4 + 16 + 1);
}

#[test]
fn requests_decode_and_their_size_is_what_the_request_limit_measures() {
    let frame = create_frame(7, "/a", b"x");
    let (xid, req) = decode_request(&frame).unwrap();
    assert_eq!(xid, 7);
    assert_eq!(
        req,
        ClientRequest::Write(Write::Create {
            op: op::CREATE,
            path: "/a".into(),
            data: Some(b"x".to_vec()),
            acl: open_acl(),
            flags: 0,
            ttl: None,
        })
    );
    // Op::request_size counts exactly what a client puts on the wire for it.
    let op = Op::create("/a", b"x".to_vec(), CreateMode::Persistent);
    assert_eq!(frame.len(), op.request_size());

    let mut w = JuteWriter::default();
    w.int(3).int(op::GET_DATA).string("/a").boolean(true);
    assert_eq!(
        decode_request(&w.finish()).unwrap(),
        (
            3,
            ClientRequest::Read {
                op: op::GET_DATA,
                path: "/a".into(),
                watch: true
            }
        )
    );
    // A multi: set_data, check, then the closing header.
    let mut w = JuteWriter::default();
    w.int(9).int(op::MULTI);
    w.int(op::SET_DATA)
        .boolean(false)
        .int(-1)
        .string("/a")
        .buffer(b"y")
        .int(-1);
    w.int(op::CHECK).boolean(false).int(-1).string("/a").int(1);
    w.int(-1).boolean(true).int(-1);
    let (_, req) = decode_request(&w.finish()).unwrap();
    assert_eq!(
        req,
        ClientRequest::Multi {
            read: false,
            ops: vec![
                MultiOp::Write(Write::SetData {
                    path: "/a".into(),
                    data: Some(b"y".to_vec()),
                    version: -1
                }),
                MultiOp::Write(Write::Check {
                    path: "/a".into(),
                    version: 1
                }),
            ]
        }
    );
    let mut w = JuteWriter::default();
    w.int(-8)
        .int(op::SET_WATCHES2)
        .long(42)
        .strings(&["/d"])
        .strings::<&str>(&[]);
    w.strings(&["/c"]).strings(&["/p"]).strings(&["/r"]);
    let (_, req) = decode_request(&w.finish()).unwrap();
    assert!(
        matches!(req, ClientRequest::SetWatches { relative_zxid: 42, ref recursive, .. } if recursive == &["/r"])
    );
    let mut w = JuteWriter::default();
    w.int(-2).int(op::PING);
    assert_eq!(
        decode_request(&w.finish()).unwrap(),
        (-2, ClientRequest::Ping)
    );
}

#[test]
fn bad_frames_are_typed_errors() {
    let frame = create_frame(1, "/a", b"data");
    for cut in 0..frame.len() {
        assert!(decode_request(&frame[..cut]).is_err(), "cut at {cut}");
    }
    let mut padded = frame.clone();
    padded.push(0);
    assert_eq!(decode_request(&padded), Err(WireError::Trailing(1)));
    let mut w = JuteWriter::default();
    w.int(1).int(99);
    assert_eq!(decode_request(&w.finish()), Err(WireError::UnknownOp(99)));
    // Hostile lengths: far beyond the frame, negative, a vector of a billion ACLs.
    for len in [i32::MAX, 1 << 30, -2, i32::MIN] {
        let mut w = JuteWriter::default();
        w.int(1).int(op::GET_DATA).int(len);
        assert!(matches!(
            decode_request(&w.finish()),
            Err(WireError::BadLength(_))
        ));
    }
    let mut w = JuteWriter::default();
    w.int(1)
        .int(op::CREATE)
        .string("/a")
        .buffer(b"")
        .int(1_000_000_000);
    assert!(matches!(
        decode_request(&w.finish()),
        Err(WireError::BadLength(_))
    ));
    let mut w = JuteWriter::default();
    w.int(1)
        .int(op::GET_DATA)
        .buffer(&[0xff, 0xfe])
        .boolean(false);
    assert_eq!(decode_request(&w.finish()), Err(WireError::NotUtf8));
    // A null string reads as empty, as ZooKeeper's servers read it.
    let mut w = JuteWriter::default();
    w.int(1).int(op::SYNC).int(-1);
    assert_eq!(
        decode_request(&w.finish()).unwrap().1,
        ClientRequest::Sync {
            path: String::new()
        }
    );
}

#[test]
fn random_bytes_never_panic() {
    let mut seed = 0x853c_49e6_748f_ea9bu64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let valid = create_frame(5, "/some/path", b"some data");
    for round in 0..20_000 {
        let mut frame = if round % 2 == 0 {
            valid.clone()
        } else {
            (0..(next() % 64)).map(|_| next() as u8).collect()
        };
        // Flip a few bytes, or force an operation code.
        for _ in 0..(next() % 4) {
            if !frame.is_empty() {
                let i = (next() as usize) % frame.len();
                frame[i] = next() as u8;
            }
        }
        if frame.len() >= 8 && round % 3 == 0 {
            let code: i32 = [
                1, 2, 3, 4, 5, 7, 8, 9, 12, 13, 14, 15, 17, 18, 19, 21, 22, 100, 101, 103, 104,
                105, 106,
            ][(next() % 23) as usize];
            frame[4..8].copy_from_slice(&code.to_be_bytes());
        }
        let _ = decode_request(&frame);
        let _ = ConnectRequest::decode(&frame);
    }
    let mut r = JuteReader::new(&[0, 0, 0, 1, 0]);
    assert_eq!(r.int(), Ok(1));
    assert_eq!(r.long(), Err(WireError::Truncated(7)));
}

#[test]
fn answers_and_notifications_encode_as_clients_read_them() {
    let stat = crate::tree::Stat {
        czxid: 5,
        mzxid: 6,
        ctime: 7,
        mtime: 8,
        version: 1,
        cversion: -1,
        aversion: 0,
        ephemeral_owner: 0x1234,
        data_length: 3,
        num_children: 2,
        pzxid: 9,
    };
    let mut w = JuteWriter::default();
    ReplyHeader {
        xid: 4,
        zxid: 6,
        err: 0,
    }
    .write(&mut w);
    w.buffer(b"abc").stat(&stat);
    let bytes = w.finish();
    assert_eq!(bytes.len(), 16 + 4 + 3 + 68, "header, buffer, 68-byte stat");
    let mut r = JuteReader::new(&bytes);
    assert_eq!((r.int(), r.long(), r.int()), (Ok(4), Ok(6), Ok(0)));
    assert_eq!(r.buffer().unwrap(), b"abc");
    assert_eq!(read_stat(&mut r).unwrap(), stat);
    r.finish().unwrap();

    let mut w = JuteWriter::default();
    ReplyHeader {
        xid: ReplyHeader::NOTIFICATION_XID,
        zxid: -1,
        err: 0,
    }
    .write(&mut w);
    WatcherEvent {
        event_type: 3,
        state: 3,
        path: "/a".into(),
    }
    .write(&mut w);
    let bytes = w.finish();
    let mut r = JuteReader::new(&bytes);
    assert_eq!(r.int(), Ok(-1));
    assert_eq!(r.long(), Ok(-1));
    assert_eq!((r.int(), r.int(), r.int()), (Ok(0), Ok(3), Ok(3)));
    assert_eq!(r.string().unwrap(), "/a");
    assert_eq!(ReplyHeader::PING_XID, -2);
}

#[test]
fn a_multi_read_carries_each_reads_watch_flag() {
    // As the Java client and zookeeper-client send it: each getData/getChildren record
    // is a path and a watch flag.
    let mut w = JuteWriter::default();
    w.int(9).int(op::MULTI_READ);
    w.int(op::GET_DATA)
        .boolean(false)
        .int(-1)
        .string("/a")
        .boolean(false);
    w.int(op::GET_CHILDREN)
        .boolean(false)
        .int(-1)
        .string("/")
        .boolean(false);
    w.int(-1).boolean(true).int(-1);
    let (xid, req) = decode_request(&w.finish()).unwrap();
    assert_eq!(xid, 9);
    assert_eq!(
        req,
        ClientRequest::Multi {
            read: true,
            ops: vec![
                MultiOp::GetData { path: "/a".into() },
                MultiOp::GetChildren { path: "/".into() }
            ]
        }
    );
}
