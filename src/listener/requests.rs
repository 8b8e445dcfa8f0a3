//! From ZooKeeper's request records to the pipeline's requests, and from the pipeline's
//! answers back to ZooKeeper's response records: the translation the client port does
//! for every request, in one place.

use crate::command::{CreateMode, Op};
use crate::error::{Error, Result};
use crate::pipeline::{ReadOp, Reply, Request};
use crate::reconfig::Reconfig;
use crate::tree::{EventType, OpResult, WatchedEvent, MAX_TTL_MS};
use crate::watch::{AddWatchMode, PersistentWatcher, Watcher, WatcherType};
use crate::wire::jute::{write_acls, JuteWriter};
use crate::wire::proto::{op, ClientRequest, MultiOp, ReplyHeader, WatcherEvent, Write};

/// ZooKeeper's `KeeperState.SyncConnected`, the state of every watch notification sent
/// on a live connection.
const SYNC_CONNECTED: i32 = 3;

/// What the connection must remember of a request to encode its answer: the operation
/// code (and for a multi, each operation's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Shape {
    pub(crate) op: i32,
    pub(crate) ops: Vec<i32>,
    /// The path a sync answers with (ZooKeeper echoes it).
    pub(crate) path: String,
}

impl Shape {
    pub(crate) fn of(op: i32) -> Shape {
        Shape {
            op,
            ops: Vec::new(),
            path: String::new(),
        }
    }
}

/// A version as ZooKeeper sends it: -1 matches any.
fn version(v: i32) -> Option<i32> {
    (v != -1).then_some(v)
}

/// The create mode of `flags` for operation `code`, checked as ZooKeeper does: a TTL
/// mode only through createTTL (with a TTL in range), a container only through
/// createContainer.
fn create_mode(code: i32, flags: i32, ttl: Option<i64>) -> Result<(CreateMode, i64)> {
    let mode = u8::try_from(flags)
        .map_err(|_| Error::BadArguments(format!("unknown create flags {flags}")))
        .and_then(CreateMode::from_flag)?;
    match (code, ttl) {
        (op::CREATE_TTL, Some(ttl)) => {
            if !mode.is_ttl() {
                return Err(Error::BadArguments(format!("{mode:?} takes no TTL")));
            }
            if ttl <= 0 || ttl > MAX_TTL_MS {
                return Err(Error::BadArguments(format!("TTL {ttl} out of range")));
            }
            Ok((mode, ttl))
        }
        _ if mode.is_ttl() => Err(Error::BadArguments(format!("{mode:?} needs createTTL"))),
        (op::CREATE_CONTAINER, _) if mode != CreateMode::Container => Err(Error::BadArguments(
            "createContainer needs the container mode".into(),
        )),
        _ => Ok((mode, 0)),
    }
}

/// The operation a write record asks for.
pub(crate) fn write_op(w: Write) -> Result<Op> {
    Ok(match w {
        Write::Create {
            op,
            path,
            data,
            acl,
            flags,
            ttl,
        } => {
            let (mode, ttl_ms) = create_mode(op, flags, ttl)?;
            Op::Create {
                path,
                data,
                mode,
                ttl_ms,
                acl,
            }
        }
        Write::Delete { path, version: v } => Op::delete(path, version(v)),
        Write::SetData {
            path,
            data,
            version: v,
        } => Op::SetData {
            path,
            data,
            version: version(v),
        },
        Write::Check { path, version: v } => Op::check(path, version(v)),
    })
}

fn write_code(w: &Write) -> i32 {
    match w {
        Write::Create { op, .. } => *op,
        Write::Delete { .. } => op::DELETE,
        Write::SetData { .. } => op::SET_DATA,
        Write::Check { .. } => op::CHECK,
    }
}

/// What the connection does with a decoded request.
pub(crate) enum Action {
    /// Submit to the session's pipeline.
    Submit(Request, Shape),
    /// Answer in the session's order with what is already known.
    Answer(Result<Reply>, Shape),
}

/// The pipeline request for a client request (ping, closeSession and auth are handled by
/// the connection itself and never reach here).
pub(crate) fn action(req: ClientRequest) -> Action {
    match req {
        ClientRequest::Write(w) => {
            let shape = Shape::of(write_code(&w));
            match write_op(w) {
                Ok(op) => Action::Submit(Request::Write(op), shape),
                Err(e) => Action::Answer(Err(e), shape),
            }
        }
        ClientRequest::Read { op, path, watch } => {
            let watcher = watch.then(crate::watch::told_to_output);
            let request = match op {
                op::EXISTS => Request::Exists { path, watcher },
                op::GET_DATA => Request::GetData { path, watcher },
                _ => Request::GetChildren { path, watcher },
            };
            Action::Submit(request, Shape::of(op))
        }
        ClientRequest::Sync { path } => {
            let shape = Shape {
                path: path.clone(),
                ..Shape::of(op::SYNC)
            };
            Action::Submit(Request::Sync { path }, shape)
        }
        ClientRequest::Multi { read: false, ops } => {
            let codes = ops
                .iter()
                .map(|o| match o {
                    MultiOp::Write(w) => write_code(w),
                    MultiOp::GetChildren { .. } => op::GET_CHILDREN,
                    MultiOp::GetData { .. } => op::GET_DATA,
                })
                .collect();
            let shape = Shape {
                ops: codes,
                ..Shape::of(op::MULTI)
            };
            let ops: Result<Vec<Op>> = ops
                .into_iter()
                .map(|o| match o {
                    MultiOp::Write(w) => write_op(w),
                    _ => Err(Error::BadArguments("a read in a write multi".into())),
                })
                .collect();
            match ops {
                Ok(ops) => Action::Submit(Request::Write(Op::Multi(ops)), shape),
                Err(e) => Action::Answer(Err(e), shape),
            }
        }
        ClientRequest::Multi { read: true, ops } => {
            let mut codes = Vec::with_capacity(ops.len());
            let mut reads = Vec::with_capacity(ops.len());
            for o in ops {
                match o {
                    MultiOp::GetData { path } => {
                        codes.push(op::GET_DATA);
                        reads.push(ReadOp::GetData(path));
                    }
                    MultiOp::GetChildren { path } => {
                        codes.push(op::GET_CHILDREN);
                        reads.push(ReadOp::GetChildren(path));
                    }
                    MultiOp::Write(_) => {
                        return Action::Answer(
                            Err(Error::BadArguments("a write in a multiRead".into())),
                            Shape::of(op::MULTI_READ),
                        )
                    }
                }
            }
            let shape = Shape {
                ops: codes,
                ..Shape::of(op::MULTI_READ)
            };
            Action::Submit(Request::MultiRead(reads), shape)
        }
        ClientRequest::SetWatches {
            relative_zxid,
            data,
            exist,
            child,
            persistent,
            recursive,
        } => {
            let one = |paths: Vec<String>| -> Vec<(String, Watcher)> {
                paths
                    .into_iter()
                    .map(|p| (p, crate::watch::told_to_output()))
                    .collect()
            };
            let lasting = |paths: Vec<String>| -> Vec<(String, PersistentWatcher)> {
                paths
                    .into_iter()
                    .map(|p| (p, crate::watch::lasting_told_to_output()))
                    .collect()
            };
            let request = Request::SetWatches {
                relative_zxid,
                data: one(data),
                exist: one(exist),
                child: one(child),
                persistent: lasting(persistent),
                recursive: lasting(recursive),
            };
            Action::Submit(request, Shape::of(op::SET_WATCHES))
        }
        ClientRequest::RemoveWatches {
            remove,
            path,
            watcher_type,
        } => {
            let code = if remove {
                op::REMOVE_WATCHES
            } else {
                op::CHECK_WATCHES
            };
            // ZooKeeper's WatcherType: Children 1, Data 2, Any 3, Persistent 4,
            // PersistentRecursive 5.
            let kind = match watcher_type {
                1 => WatcherType::Children,
                2 => WatcherType::Data,
                3 => WatcherType::Any,
                4 | 5 => WatcherType::Persistent,
                t => {
                    return Action::Answer(
                        Err(Error::BadArguments(format!("unknown watcher type {t}"))),
                        Shape::of(code),
                    )
                }
            };
            if remove {
                Action::Submit(Request::RemoveWatches { path, kind }, Shape::of(code))
            } else {
                Action::Submit(Request::CheckWatches { path, kind }, Shape::of(code))
            }
        }
        ClientRequest::AddWatch { path, mode } => {
            let mode = match mode {
                0 => AddWatchMode::Persistent,
                1 => AddWatchMode::PersistentRecursive,
                m => {
                    return Action::Answer(
                        Err(Error::BadArguments(format!("unknown watch mode {m}"))),
                        Shape::of(op::ADD_WATCH),
                    )
                }
            };
            let request = Request::AddWatch {
                path,
                mode,
                watcher: crate::watch::lasting_told_to_output(),
            };
            Action::Submit(request, Shape::of(op::ADD_WATCH))
        }
        ClientRequest::GetEphemerals { prefix } => Action::Submit(
            Request::GetEphemerals { prefix },
            Shape::of(op::GET_EPHEMERALS),
        ),
        ClientRequest::GetAllChildrenNumber { path } => Action::Submit(
            Request::GetAllChildrenNumber { path },
            Shape::of(op::GET_ALL_CHILDREN_NUMBER),
        ),
        ClientRequest::GetAcl { path } => {
            Action::Submit(Request::GetAcl { path }, Shape::of(op::GET_ACL))
        }
        ClientRequest::SetAcl {
            path,
            acl,
            version: v,
        } => Action::Submit(
            Request::Write(Op::set_acl(path, acl, version(v))),
            Shape::of(op::SET_ACL),
        ),
        ClientRequest::Reconfig {
            joining,
            leaving,
            new_members,
            from_config,
        } => Action::Submit(
            Request::Reconfig(Reconfig {
                joining,
                leaving,
                new_members,
                from_config,
            }),
            Shape::of(op::RECONFIG),
        ),
        // ZooKeeper reads a client's deleteContainer as a path that holds the request
        // header's NUL bytes, and refuses it as BadArguments; the connection is kept.
        ClientRequest::DeleteContainer => Action::Answer(
            Err(Error::BadArguments(
                "deleteContainer is the server's own operation".into(),
            )),
            Shape::of(op::DELETE_CONTAINER),
        ),
        ClientRequest::Ping
        | ClientRequest::CloseSession
        | ClientRequest::Auth { .. }
        | ClientRequest::Sasl { .. }
        | ClientRequest::WhoAmI
        | ClientRequest::CreateSession => Action::Answer(
            Err(Error::BadArguments("handled by the connection".into())),
            Shape::of(op::PING),
        ),
    }
}

/// The frame answering a request of `shape` (length prefix included).
pub(crate) fn encode_reply(shape: &Shape, xid: i32, zxid: i64, result: Result<Reply>) -> Vec<u8> {
    let mut w = JuteWriter::with_capacity(64);
    w.int(0); // the length, filled in below
              // Every answer echoes its request's xid, setWatches' included: kazoo sends those
              // with -8, the Java client with an ordinary xid it then expects back.
    let result = match result {
        Ok(Reply::Exists(None)) => Err(Error::NoNode(String::new())),
        r => r,
    };
    match result {
        Err(Error::MultiFailed { index, source }) if shape.op == op::MULTI => {
            ReplyHeader { xid, zxid, err: 0 }.write(&mut w);
            // As ZooKeeper: the operations before the failing one answer OK (rolled
            // back), the failing one its error, the ones after RuntimeInconsistency.
            for i in 0..shape.ops.len() {
                let err = match i.cmp(&index) {
                    std::cmp::Ordering::Less => 0,
                    std::cmp::Ordering::Equal => source.code(),
                    std::cmp::Ordering::Greater => -2,
                };
                error_result(&mut w, err);
            }
            w.int(-1).boolean(true).int(-1);
        }
        Err(e) => {
            ReplyHeader {
                xid,
                zxid,
                err: e.code(),
            }
            .write(&mut w);
        }
        Ok(reply) => {
            ReplyHeader { xid, zxid, err: 0 }.write(&mut w);
            body(&mut w, shape, reply);
        }
    }
    finish_frame(w)
}

/// Writes the record of a successful answer.
fn body(w: &mut JuteWriter, shape: &Shape, reply: Reply) {
    let ops = &shape.ops;
    match (shape.op, reply) {
        (op::CREATE, Reply::Write(OpResult::Create { path, .. })) => {
            w.string(&path);
        }
        (
            op::CREATE2 | op::CREATE_CONTAINER | op::CREATE_TTL,
            Reply::Write(OpResult::Create { path, stat }),
        ) => {
            w.string(&path).stat(&stat);
        }
        (op::SET_DATA, Reply::Write(OpResult::SetData { stat })) => {
            w.stat(&stat);
        }
        (op::SET_ACL, Reply::Write(OpResult::SetAcl { stat })) => {
            w.stat(&stat);
        }
        (op::GET_ACL, Reply::Acl(acl, stat)) => {
            write_acls(w, &acl);
            w.stat(&stat);
        }
        (op::EXISTS, Reply::Exists(Some(stat))) => {
            w.stat(&stat);
        }
        (op::GET_DATA | op::RECONFIG, Reply::Data(data, stat)) => {
            w.nullable_buffer(data.as_deref()).stat(&stat);
        }
        (op::GET_CHILDREN, Reply::Children(children, _)) => {
            w.strings(&children);
        }
        (op::GET_CHILDREN2, Reply::Children(children, stat)) => {
            w.strings(&children).stat(&stat);
        }
        (op::SYNC, Reply::Done) => {
            // SyncResponse echoes the path.
            w.string(&shape.path);
        }
        (op::ADD_WATCH, Reply::Done) => {
            // ZooKeeper answers addWatch with an ErrorResponse(0).
            w.int(0);
        }
        (op::GET_EPHEMERALS, Reply::Ephemerals(paths)) => {
            w.strings(&paths);
        }
        (op::GET_ALL_CHILDREN_NUMBER, Reply::Count(n)) => {
            w.int(n);
        }
        (op::WHO_AM_I, Reply::Identities(ids)) => {
            // WhoAmIResponse: a ClientInfo (scheme, user) per identity, the user named
            // as ZooKeeper's providers name it: a digest id by its user, an ip id by its
            // address, an id of a scheme without a provider (super) by "".
            w.int(i32::try_from(ids.len()).unwrap_or(i32::MAX));
            for id in &ids {
                let user = match id.scheme.as_str() {
                    crate::acl::DIGEST => id.id.split(':').next().unwrap_or_default(),
                    crate::acl::IP => id.id.as_str(),
                    _ => "",
                };
                w.string(&id.scheme).string(user);
            }
        }
        (op::MULTI, Reply::Write(OpResult::Multi(results))) => {
            for (i, r) in results.into_iter().enumerate() {
                let code = ops.get(i).copied().unwrap_or(-1);
                multi_result(w, code, Ok(Reply::Write(r)));
            }
            w.int(-1).boolean(true).int(-1);
        }
        (op::MULTI_READ, Reply::MultiRead(results)) => {
            for (i, r) in results.into_iter().enumerate() {
                let code = ops.get(i).copied().unwrap_or(-1);
                multi_result(w, code, r);
            }
            w.int(-1).boolean(true).int(-1);
        }
        // delete, check, closeSession, setWatches, removeWatches, checkWatches: no body.
        _ => {}
    }
}

/// A failed operation's result in a multi: a MultiHeader of type -1 with the error, and
/// an ErrorResult with it.
fn error_result(w: &mut JuteWriter, err: i32) {
    w.int(-1).boolean(false).int(err).int(err);
}

/// One result of a multi: a MultiHeader (the operation's type, or -1 with the error)
/// and the operation's record. Inside a multi, create answers a CreateResponse and the
/// other creates a Create2Response, as ZooKeeper's MultiResponse.
fn multi_result(w: &mut JuteWriter, code: i32, result: Result<Reply>) {
    match result {
        Err(e) => {
            error_result(w, e.code());
        }
        Ok(reply) => {
            let code = match code {
                op::CREATE_CONTAINER | op::CREATE_TTL => op::CREATE2,
                c => c,
            };
            w.int(code).boolean(false).int(0);
            body(w, &Shape::of(code), reply);
        }
    }
}

/// A watch notification frame (xid -1), or `None` for what ZooKeeper does not send (a
/// removed watch is reported by the client itself).
pub(crate) fn encode_notification(e: &WatchedEvent, zxid: i64) -> Option<Vec<u8>> {
    if matches!(
        e.event_type,
        EventType::DataWatchRemoved
            | EventType::ChildWatchRemoved
            | EventType::PersistentWatchRemoved
    ) {
        return None;
    }
    let mut w = JuteWriter::with_capacity(32 + e.path.len());
    w.int(0);
    ReplyHeader {
        xid: ReplyHeader::NOTIFICATION_XID,
        zxid,
        err: 0,
    }
    .write(&mut w);
    WatcherEvent {
        event_type: e.event_type.code(),
        state: SYNC_CONNECTED,
        path: e.path.clone(),
    }
    .write(&mut w);
    Some(finish_frame(w))
}

/// A header-only answer (ping, auth, closeSession).
pub(crate) fn encode_header(xid: i32, zxid: i64, err: i32) -> Vec<u8> {
    let mut w = JuteWriter::with_capacity(20);
    w.int(0);
    ReplyHeader { xid, zxid, err }.write(&mut w);
    finish_frame(w)
}

/// Fills in the 4-byte length prefix written as a placeholder first.
pub(crate) fn finish_frame(w: JuteWriter) -> Vec<u8> {
    let mut buf = w.finish();
    let len = u32::try_from(buf.len() - 4).unwrap_or(u32::MAX);
    buf[..4].copy_from_slice(&len.to_be_bytes());
    buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::Stat;
    use crate::wire::jute::JuteReader;

    #[test]
    fn versions_and_modes_follow_zookeeper() {
        assert_eq!(version(-1), None);
        assert_eq!(version(0), Some(0));
        assert_eq!(version(-2), Some(-2));
        assert!(
            create_mode(op::CREATE, 5, None).is_err(),
            "TTL mode needs createTTL"
        );
        assert!(create_mode(op::CREATE_TTL, 5, Some(0)).is_err());
        assert_eq!(
            create_mode(op::CREATE_TTL, 5, Some(1000)).unwrap(),
            (CreateMode::PersistentWithTtl, 1000)
        );
        assert!(create_mode(op::CREATE_TTL, 0, Some(1000)).is_err());
        assert!(
            create_mode(op::CREATE2, 4, None).is_ok(),
            "as ZooKeeper 3.8 accepts"
        );
        assert!(create_mode(op::CREATE_CONTAINER, 0, None).is_err());
        assert!(create_mode(op::CREATE, 7, None).is_err());
        assert!(create_mode(op::CREATE, -1, None).is_err());
        assert_eq!(
            create_mode(op::CREATE2, 3, None).unwrap().0,
            CreateMode::EphemeralSequential
        );
    }

    #[test]
    fn a_failed_multi_answers_ok_error_and_runtime_inconsistency() {
        let shape = Shape {
            ops: vec![op::CREATE, op::DELETE, op::SET_DATA],
            ..Shape::of(op::MULTI)
        };
        let err = Error::MultiFailed {
            index: 1,
            source: Box::new(Error::NoNode("/x".into())),
        };
        let frame = encode_reply(&shape, 7, 42, Err(err));
        let mut r = JuteReader::new(&frame[4..]);
        assert_eq!(
            (r.int().unwrap(), r.long().unwrap(), r.int().unwrap()),
            (7, 42, 0)
        );
        for want in [0, -101, -2] {
            assert_eq!(r.int().unwrap(), -1);
            assert!(!r.boolean().unwrap());
            assert_eq!(r.int().unwrap(), want);
            assert_eq!(r.int().unwrap(), want);
        }
        assert_eq!(r.int().unwrap(), -1);
        assert!(r.boolean().unwrap());
        assert_eq!(r.int().unwrap(), -1);
        r.finish().unwrap();
    }

    #[test]
    fn answers_carry_the_records_zookeeper_clients_read() {
        let stat = Stat {
            version: 3,
            ..Stat::default()
        };
        let frame = encode_reply(
            &Shape::of(op::CREATE2),
            1,
            9,
            Ok(Reply::Write(OpResult::Create {
                path: "/a0000000001".into(),
                stat,
            })),
        );
        assert_eq!(
            u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize,
            frame.len() - 4
        );
        let mut r = JuteReader::new(&frame[4..]);
        assert_eq!(
            (r.int().unwrap(), r.long().unwrap(), r.int().unwrap()),
            (1, 9, 0)
        );
        assert_eq!(r.string().unwrap(), "/a0000000001");
        assert_eq!(crate::wire::jute::read_stat(&mut r).unwrap(), stat);
        r.finish().unwrap();
        // exists on a missing znode: NoNode in the header, no body.
        let frame = encode_reply(&Shape::of(op::EXISTS), 2, 9, Ok(Reply::Exists(None)));
        assert_eq!(frame.len(), 4 + 16);
        // setWatches echoes the request's xid (kazoo sends -8, Java an ordinary one).
        for (code, xid) in [
            (op::SET_WATCHES, 5),
            (op::SET_WATCHES2, 6),
            (op::SET_WATCHES, -8),
        ] {
            let frame = encode_reply(&Shape::of(code), xid, 9, Ok(Reply::Done));
            assert_eq!(i32::from_be_bytes(frame[4..8].try_into().unwrap()), xid);
            assert_eq!(frame.len(), 4 + 16, "setWatches answers a header alone");
        }
        // A refused reconfig is a header alone; a done one carries the new
        // configuration as a getData answer does.
        let frame = encode_reply(&Shape::of(op::RECONFIG), 3, 9, Err(Error::ReconfigDisabled));
        let mut r = JuteReader::new(&frame[4..]);
        assert_eq!(
            (r.int().unwrap(), r.long().unwrap(), r.int().unwrap()),
            (3, 9, -123)
        );
        r.finish().unwrap();
        let stat = Stat {
            mzxid: 9,
            version: -1,
            ..Stat::default()
        };
        let config = b"server.1=h:1:0:participant\nversion=9".to_vec();
        let frame = encode_reply(
            &Shape::of(op::RECONFIG),
            3,
            9,
            Ok(Reply::Data(Some(config.clone()), stat)),
        );
        let mut r = JuteReader::new(&frame[4..]);
        assert_eq!(
            (r.int().unwrap(), r.long().unwrap(), r.int().unwrap()),
            (3, 9, 0)
        );
        assert_eq!(r.buffer().unwrap(), config);
        assert_eq!(crate::wire::jute::read_stat(&mut r).unwrap(), stat);
        r.finish().unwrap();
        // whoAmI: each identity's scheme and user, as ZooKeeper's providers name them.
        let ids = vec![
            crate::acl::Id::new("ip", "127.0.0.1"),
            crate::acl::Id::super_user(),
            crate::acl::Id::digest("alice", "pw"),
        ];
        let frame = encode_reply(&Shape::of(op::WHO_AM_I), 4, 9, Ok(Reply::Identities(ids)));
        let mut r = JuteReader::new(&frame[4..]);
        assert_eq!(
            (r.int().unwrap(), r.long().unwrap(), r.int().unwrap()),
            (4, 9, 0)
        );
        assert_eq!(r.int().unwrap(), 3);
        let infos: Vec<(String, String)> = (0..3)
            .map(|_| (r.string().unwrap(), r.string().unwrap()))
            .collect();
        assert_eq!(
            infos,
            [("ip", "127.0.0.1"), ("super", ""), ("digest", "alice")]
                .map(|(s, u)| (s.to_string(), u.to_string()))
        );
        r.finish().unwrap();
        // Null data answers a null buffer (length -1), empty data an empty one.
        for (data, len) in [(None, -1), (Some(Vec::new()), 0)] {
            let frame = encode_reply(
                &Shape::of(op::GET_DATA),
                1,
                9,
                Ok(Reply::Data(data, Stat::default())),
            );
            assert_eq!(i32::from_be_bytes(frame[20..24].try_into().unwrap()), len);
        }
        // Removed watches are not sent.
        let e = WatchedEvent {
            event_type: EventType::DataWatchRemoved,
            path: "/a".into(),
            zxid: 1,
        };
        assert!(encode_notification(&e, 1).is_none());
    }
}
