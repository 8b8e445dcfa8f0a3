//! Entry points for `cargo fuzz` (the `fuzz/` directory, `./dev fuzz`), compiled only with
//! the `fuzzing` feature (and in this crate's own tests). Not part of the API: nothing here
//! is stable, and a crate that depends on zkraft never sees it.
//!
//! [`client_frames`] feeds bytes to ZooKeeper's client frame decoder (`wire`) as a
//! connection reads them and panics if an invariant breaks, which is what libFuzzer reports.
//! See `docs/fuzzing.md`.

use std::mem::size_of;

use crate::wire::jute::{write_acls, Acl, JuteWriter, WireError};
use crate::wire::proto::{decode_request, op, ClientRequest, ConnectRequest, MultiOp, Write};
use crate::DEFAULT_MAX_REQUEST_SIZE;

/// The largest frame a connection accepts: ZooKeeper's default `jute.maxbuffer`,
/// 1,048,575 bytes (a longer length prefix closes the connection, as in ZooKeeper).
pub const MAX_FRAME_LEN: usize = DEFAULT_MAX_REQUEST_SIZE;

/// Feeds `data` to the decoder as the bytes a client sent on one connection: frames with a
/// 4-byte big-endian length prefix, the first a `ConnectRequest`, the rest requests.
/// Panics if an invariant fails (see [`run_client_frames`]).
pub fn client_frames(data: &[u8]) {
    run_client_frames(data);
}

/// How a run of [`client_frames`] ended (for the tests of the fuzz harness itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// Every byte was a whole frame, and every frame decoded.
    End,
    /// The last frame is not all there (a connection would wait for more bytes).
    Incomplete,
    /// A length prefix is negative or over [`MAX_FRAME_LEN`] (the connection is closed).
    BadLength(i32),
    /// A frame did not decode (the connection is closed); the error as text.
    Refused(String),
}

/// What [`client_frames`] did: how many frames decoded (the handshake included) and why
/// it stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Frames decoded, the handshake included.
    pub decoded: usize,
    /// Why the run ended.
    pub stop: Stop,
}

/// [`client_frames`], telling how it ended. Invariants checked on every frame that decodes:
/// - encoding the decoded record again gives exactly as many bytes as the frame (nothing
///   skipped, nothing read twice), and decoding those gives the same record (null
///   strings read as empty and any non-zero boolean as true, so the bytes may differ);
/// - the path of a write or read request is the string the frame carries after the
///   request header;
/// - no panic, and (checked by the fuzz target, which counts allocations) no allocation
///   beyond [`allocation_bound`].
pub fn run_client_frames(data: &[u8]) -> Outcome {
    let mut frames = Frames { rest: data };
    let mut decoded = 0;
    let connect = match frames.next() {
        Err(stop) => return Outcome { decoded, stop },
        Ok(frame) => match ConnectRequest::decode(frame) {
            Err(e) => return refused(decoded, e),
            Ok(connect) => {
                check_connect(frame, &connect);
                connect
            }
        },
    };
    decoded += 1;
    loop {
        let frame = match frames.next() {
            Err(stop) => return Outcome { decoded, stop },
            Ok(frame) => frame,
        };
        let (xid, req) = match decode_request(frame) {
            Err(e) => return refused(decoded, e),
            Ok(r) => r,
        };
        check_request(frame, xid, &req);
        decoded += 1;
        listener(&connect, xid, &req);
    }
}

/// The client port's part, run on every request that decodes, after the decoder's
/// invariants held: the request becomes a pipeline request (or a typed refusal) as the
/// connection would submit it, and the answer's frame is encoded for a refusal, with its
/// length prefix right — no panic on any input.
fn listener(_connect: &ConnectRequest, xid: i32, req: &ClientRequest) {
    crate::listener::fuzz_request(xid, req.clone());
}

fn refused(decoded: usize, e: WireError) -> Outcome {
    Outcome {
        decoded,
        stop: Stop::Refused(e.to_string()),
    }
}

/// The largest single allocation decoding `input_len` bytes may make. A decoded record
/// takes more memory than its bytes: a `String` (24 bytes) per 4-byte empty string of a
/// `vector<ustring>`, an `Acl` per 12-byte ACL, a `MultiOp` per 13-byte operation of a
/// multi (header and empty path; the vector doubles as it grows). A length prefix beyond
/// the frame is refused before anything is allocated, so nothing exceeds this.
pub fn allocation_bound(input_len: usize) -> usize {
    let per_byte = [
        size_of::<String>().div_ceil(4),
        size_of::<Acl>().div_ceil(12),
        (2 * size_of::<MultiOp>()).div_ceil(13),
    ]
    .into_iter()
    .max()
    .unwrap_or(1)
    .max(1);
    input_len.saturating_mul(per_byte).saturating_add(1024)
}

/// Splits bytes into frames as a connection reads them.
struct Frames<'a> {
    rest: &'a [u8],
}

impl<'a> Frames<'a> {
    fn next(&mut self) -> Result<&'a [u8], Stop> {
        if self.rest.is_empty() {
            return Err(Stop::End);
        }
        let Some((prefix, rest)) = self.rest.split_first_chunk::<4>() else {
            return Err(Stop::Incomplete);
        };
        let len = i32::from_be_bytes(*prefix);
        let n = usize::try_from(len).map_err(|_| Stop::BadLength(len))?;
        if n > MAX_FRAME_LEN {
            return Err(Stop::BadLength(len));
        }
        if rest.len() < n {
            return Err(Stop::Incomplete);
        }
        let (frame, rest) = rest.split_at(n);
        self.rest = rest;
        Ok(frame)
    }
}

fn check_connect(frame: &[u8], c: &ConnectRequest) {
    let again = encode_connect(c);
    // `read_only` is optional on the wire and always encoded here.
    assert!(
        again.len() == frame.len() || again.len() == frame.len() + 1,
        "connect request of {} bytes encodes to {}",
        frame.len(),
        again.len()
    );
    assert_eq!(ConnectRequest::decode(&again).as_ref(), Ok(c));
}

fn check_request(frame: &[u8], xid: i32, req: &ClientRequest) {
    // setWatches and setWatches2 with no persistent or recursive watches decode alike:
    // the frame's operation code tells which to encode.
    let set_watches2 = frame[4..8] == op::SET_WATCHES2.to_be_bytes();
    let again = encode_request(xid, req, set_watches2, frame.len());
    // The records the server does not read may be anything: only the header is encoded
    // again.
    let unread = matches!(
        req,
        ClientRequest::DeleteContainer | ClientRequest::WhoAmI | ClientRequest::CreateSession
    );
    let expected = if unread { 8 } else { frame.len() };
    assert_eq!(
        again.len(),
        expected,
        "{req:?} decoded from {} bytes",
        frame.len()
    );
    assert_eq!(decode_request(&again), Ok((xid, req.clone())));
    let path = match req {
        ClientRequest::Write(
            Write::Create { path, .. }
            | Write::Delete { path, .. }
            | Write::SetData { path, .. }
            | Write::Check { path, .. },
        )
        | ClientRequest::Read { path, .. } => path,
        _ => return,
    };
    // After the request header (xid, type): the path's length (-1: null, read as empty),
    // then its bytes.
    let len = i32::from_be_bytes([frame[8], frame[9], frame[10], frame[11]]);
    let in_frame: &[u8] = match usize::try_from(len) {
        Ok(n) => &frame[12..12 + n],
        Err(_) => {
            assert_eq!(len, -1, "negative length {len} decoded");
            &[]
        }
    };
    assert_eq!(path.as_bytes(), in_frame, "path of {req:?}");
}

fn encode_connect(c: &ConnectRequest) -> Vec<u8> {
    let mut w = JuteWriter::with_capacity(29 + c.password.len());
    w.int(c.protocol_version)
        .long(c.last_zxid_seen)
        .int(c.timeout_ms)
        .long(c.session_id)
        .buffer(&c.password)
        .boolean(c.read_only);
    w.finish()
}

fn write_op(w: &mut JuteWriter, write: &Write) {
    match write {
        Write::Create {
            path,
            data,
            acl,
            flags,
            ttl,
            ..
        } => {
            w.string(path).nullable_buffer(data.as_deref());
            write_acls(w, acl);
            w.int(*flags);
            if let Some(ttl) = ttl {
                w.long(*ttl);
            }
        }
        Write::Delete { path, version } | Write::Check { path, version } => {
            w.string(path).int(*version);
        }
        Write::SetData {
            path,
            data,
            version,
        } => {
            w.string(path)
                .nullable_buffer(data.as_deref())
                .int(*version);
        }
    }
}

fn write_code(write: &Write) -> i32 {
    match write {
        Write::Create { op, .. } => *op,
        Write::Delete { .. } => op::DELETE,
        Write::SetData { .. } => op::SET_DATA,
        Write::Check { .. } => op::CHECK,
    }
}

/// Encodes a request as a client would (header and record, without the length prefix), a
/// `SetWatches` as setWatches2 if `set_watches2`; `capacity` is the expected size, so the
/// encoding allocates no more than the frame.
fn encode_request(xid: i32, req: &ClientRequest, set_watches2: bool, capacity: usize) -> Vec<u8> {
    let mut w = JuteWriter::with_capacity(capacity);
    w.int(xid);
    match req {
        ClientRequest::Ping => {
            w.int(op::PING);
        }
        ClientRequest::CloseSession => {
            w.int(op::CLOSE_SESSION);
        }
        ClientRequest::Write(write) => {
            w.int(write_code(write));
            write_op(&mut w, write);
        }
        ClientRequest::Read { op, path, watch } => {
            w.int(*op).string(path).boolean(*watch);
        }
        ClientRequest::Sync { path } => {
            w.int(op::SYNC).string(path);
        }
        ClientRequest::GetAcl { path } => {
            w.int(op::GET_ACL).string(path);
        }
        ClientRequest::SetAcl { path, acl, version } => {
            w.int(op::SET_ACL).string(path);
            write_acls(&mut w, acl);
            w.int(*version);
        }
        ClientRequest::Multi { read, ops } => {
            w.int(if *read { op::MULTI_READ } else { op::MULTI });
            for o in ops {
                match o {
                    MultiOp::Write(write) => {
                        w.int(write_code(write)).boolean(false).int(-1);
                        write_op(&mut w, write);
                    }
                    MultiOp::GetChildren { path } => {
                        w.int(op::GET_CHILDREN)
                            .boolean(false)
                            .int(-1)
                            .string(path)
                            .boolean(false);
                    }
                    MultiOp::GetData { path } => {
                        w.int(op::GET_DATA)
                            .boolean(false)
                            .int(-1)
                            .string(path)
                            .boolean(false);
                    }
                }
            }
            w.int(-1).boolean(true).int(-1);
        }
        ClientRequest::Auth { scheme, auth } => {
            w.int(op::AUTH).int(0).string(scheme).buffer(auth);
        }
        ClientRequest::SetWatches {
            relative_zxid,
            data,
            exist,
            child,
            persistent,
            recursive,
        } => {
            let two = set_watches2 || !persistent.is_empty() || !recursive.is_empty();
            w.int(if two {
                op::SET_WATCHES2
            } else {
                op::SET_WATCHES
            })
            .long(*relative_zxid)
            .strings(data)
            .strings(exist)
            .strings(child);
            if two {
                w.strings(persistent).strings(recursive);
            }
        }
        ClientRequest::RemoveWatches {
            remove,
            path,
            watcher_type,
        } => {
            w.int(if *remove {
                op::REMOVE_WATCHES
            } else {
                op::CHECK_WATCHES
            })
            .string(path)
            .int(*watcher_type);
        }
        ClientRequest::AddWatch { path, mode } => {
            w.int(op::ADD_WATCH).string(path).int(*mode);
        }
        ClientRequest::GetEphemerals { prefix } => {
            w.int(op::GET_EPHEMERALS).string(prefix);
        }
        ClientRequest::GetAllChildrenNumber { path } => {
            w.int(op::GET_ALL_CHILDREN_NUMBER).string(path);
        }
        ClientRequest::Sasl { token } => {
            w.int(op::SASL).buffer(token);
        }
        ClientRequest::Reconfig {
            joining,
            leaving,
            new_members,
            from_config,
        } => {
            w.int(op::RECONFIG)
                .nullable_buffer(joining.as_deref().map(str::as_bytes))
                .nullable_buffer(leaving.as_deref().map(str::as_bytes))
                .nullable_buffer(new_members.as_deref().map(str::as_bytes))
                .long(*from_config);
        }
        // Records the server does not read: the header alone.
        ClientRequest::DeleteContainer => {
            w.int(op::DELETE_CONTAINER);
        }
        ClientRequest::WhoAmI => {
            w.int(op::WHO_AM_I);
        }
        ClientRequest::CreateSession => {
            w.int(op::CREATE_SESSION);
        }
    }
    w.finish()
}

/// The seed corpus of `fuzz/corpus/client_frames/` (the files `seed-NAME`): whole inputs
/// (a handshake, then requests, each with its length prefix) as real clients send them.
/// The test `fuzzing::tests::committed_seeds_are_current` checks the files against this;
/// `ZKRAFT_WRITE_SEEDS=1 cargo test --lib fuzzing` writes them.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let connect = {
        let mut w = JuteWriter::default();
        w.int(0)
            .long(0)
            .int(30_000)
            .long(0)
            .buffer(&[0; 16])
            .boolean(false);
        w.finish()
    };
    let open_acl = [Acl {
        perms: 31,
        id: crate::wire::jute::Id {
            scheme: "world".into(),
            id: "anyone".into(),
        },
    }];
    let request = |code: i32, xid: i32, body: &dyn Fn(&mut JuteWriter)| {
        let mut w = JuteWriter::default();
        w.int(xid).int(code);
        body(&mut w);
        w.finish()
    };
    let create = request(op::CREATE, 1, &|w| {
        w.string("/app").buffer(b"v1");
        write_acls(w, &open_acl);
        w.int(0);
    });
    let get_data = request(op::GET_DATA, 2, &|w| {
        w.string("/app").boolean(true);
    });
    let multi = request(op::MULTI, 3, &|w| {
        w.int(op::CREATE).boolean(false).int(-1);
        w.string("/app/lock-").buffer(b"");
        write_acls(w, &open_acl);
        w.int(3); // ephemeral sequential
        w.int(op::SET_DATA).boolean(false).int(-1);
        w.string("/app").buffer(b"v2").int(0);
        w.int(op::CHECK)
            .boolean(false)
            .int(-1)
            .string("/app")
            .int(1);
        w.int(op::DELETE)
            .boolean(false)
            .int(-1)
            .string("/old")
            .int(-1);
        w.int(-1).boolean(true).int(-1);
    });
    let set_watches = request(op::SET_WATCHES, -8, &|w| {
        w.long(5)
            .strings(&["/app"])
            .strings(&["/missing"])
            .strings(&["/"]);
    });
    let set_watches2 = request(op::SET_WATCHES2, -8, &|w| {
        w.long(5)
            .strings(&["/app"])
            .strings::<&str>(&[])
            .strings(&["/"])
            .strings(&["/cfg"])
            .strings(&["/svc"]);
    });
    let framed = |frames: &[&[u8]]| {
        let mut out = Vec::new();
        for f in frames {
            out.extend_from_slice(&(f.len() as u32).to_be_bytes());
            out.extend_from_slice(f);
        }
        out
    };
    vec![
        ("seed-connect", framed(&[&connect])),
        ("seed-create", framed(&[&connect, &create])),
        ("seed-getdata-watch", framed(&[&connect, &get_data])),
        ("seed-multi", framed(&[&connect, &multi])),
        (
            "seed-setwatches",
            framed(&[&connect, &set_watches, &set_watches2]),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_decode_to_the_end() {
        for (name, input) in seeds() {
            let out = run_client_frames(&input);
            assert_eq!(out.stop, Stop::End, "{name}");
            assert!(out.decoded >= 1, "{name}");
        }
    }

    #[test]
    fn committed_seeds_are_current() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/client_frames");
        let write = std::env::var_os("ZKRAFT_WRITE_SEEDS").is_some();
        for (name, input) in seeds() {
            let file = dir.join(name);
            if write {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&file, &input).unwrap();
            } else {
                let committed = std::fs::read(&file).unwrap_or_else(|e| {
                    panic!("{}: {e} (ZKRAFT_WRITE_SEEDS=1 writes it)", file.display())
                });
                assert!(
                    committed == input,
                    "{} differs from seeds()",
                    file.display()
                );
            }
        }
    }

    #[test]
    fn frames_are_split_as_a_connection_reads_them() {
        let seed = &seeds()[1].1; // connect, create
        let boundary = seeds()[0].1.len();
        for cut in 1..seed.len() {
            let out = run_client_frames(&seed[..cut]);
            let want = if cut == boundary {
                Stop::End
            } else {
                Stop::Incomplete
            };
            assert!(out.stop == want, "cut at {cut}: {out:?}");
        }
        assert_eq!(run_client_frames(&[]).stop, Stop::End);
        let mut neg = seed.clone();
        neg.extend([0xff, 0xff, 0xff, 0xfe]);
        assert_eq!(
            run_client_frames(&neg),
            Outcome {
                decoded: 2,
                stop: Stop::BadLength(-2)
            }
        );
        // A garbage frame after the handshake closes the connection.
        let mut bad = seeds()[0].1.clone();
        bad.extend([0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 99]);
        assert_eq!(
            run_client_frames(&bad),
            Outcome {
                decoded: 1,
                stop: Stop::Refused(WireError::UnknownOp(99).to_string())
            }
        );
    }

    #[test]
    fn a_frame_of_jute_maxbuffer_is_read_and_one_byte_more_refused() {
        let connect = &seeds()[0].1;
        let set_data = |len: usize| {
            // header 8, path "/a" 6, data 4 + n, version 4
            let n = len - 8 - 6 - 4 - 4;
            let mut w = JuteWriter::default();
            w.int(1)
                .int(op::SET_DATA)
                .string("/a")
                .buffer(&vec![7; n])
                .int(-1);
            let frame = w.finish();
            assert_eq!(frame.len(), len);
            let mut input = connect.clone();
            input.extend((len as u32).to_be_bytes());
            input.extend(frame);
            input
        };
        assert_eq!(
            run_client_frames(&set_data(MAX_FRAME_LEN)),
            Outcome {
                decoded: 2,
                stop: Stop::End
            }
        );
        assert_eq!(
            run_client_frames(&set_data(MAX_FRAME_LEN + 1)).stop,
            Stop::BadLength(1 << 20)
        );
    }

    #[test]
    fn every_request_kind_survives_the_round_trip_check() {
        // Mutated seeds with every operation code forced: decodes or refuses, never panics.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let codes = [
            1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 17, 18, 19, 21, 22, 100, 101, 103, 104,
            105, 106, -11,
        ];
        let seeds = seeds();
        let mut decoded = 0;
        for round in 0..5_000 {
            let mut input = seeds[round % seeds.len()].1.clone();
            let start = seeds[0].1.len();
            if input.len() > start + 12 && round % 2 == 0 {
                let code: i32 = codes[(next() % codes.len() as u64) as usize];
                input[start + 8..start + 12].copy_from_slice(&code.to_be_bytes());
            }
            for _ in 0..(next() % 3) {
                let i = (next() as usize) % input.len();
                input[i] = next() as u8;
            }
            decoded += run_client_frames(&input).decoded;
        }
        assert!(decoded > 5_000, "{decoded}");
        // 16 bytes per input byte on 64-bit (the doubling vector of 104-byte `MultiOp`s).
        let bound = allocation_bound(1000);
        assert!((1000..=16 * 1000 + 1024).contains(&bound), "{bound}");
    }
}
