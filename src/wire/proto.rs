//! The records of ZooKeeper's client protocol (`zookeeper.jute`, 3.5–3.9), decoded from
//! and encoded to frames with `jute`.
//!
//! A client frame after the handshake is a `RequestHeader` (xid, operation code) and the
//! operation's record; [`decode_request`] turns it into a [`ClientRequest`], refusing
//! unknown codes, truncated or padded records and hostile lengths with a [`WireError`].

use super::jute::{read_acls, Acl, JuteReader, JuteWriter, WireError, WireResult};

/// ZooKeeper's operation codes (`ZooDefs.OpCode`).
pub(crate) mod op {
    pub(crate) const CREATE: i32 = 1;
    pub(crate) const DELETE: i32 = 2;
    pub(crate) const EXISTS: i32 = 3;
    pub(crate) const GET_DATA: i32 = 4;
    pub(crate) const SET_DATA: i32 = 5;
    pub(crate) const GET_ACL: i32 = 6;
    pub(crate) const SET_ACL: i32 = 7;
    pub(crate) const GET_CHILDREN: i32 = 8;
    pub(crate) const SYNC: i32 = 9;
    pub(crate) const PING: i32 = 11;
    pub(crate) const GET_CHILDREN2: i32 = 12;
    pub(crate) const CHECK: i32 = 13;
    pub(crate) const MULTI: i32 = 14;
    pub(crate) const CREATE2: i32 = 15;
    pub(crate) const RECONFIG: i32 = 16;
    pub(crate) const CHECK_WATCHES: i32 = 17;
    pub(crate) const REMOVE_WATCHES: i32 = 18;
    pub(crate) const CREATE_CONTAINER: i32 = 19;
    pub(crate) const DELETE_CONTAINER: i32 = 20;
    pub(crate) const CREATE_TTL: i32 = 21;
    pub(crate) const MULTI_READ: i32 = 22;
    pub(crate) const AUTH: i32 = 100;
    pub(crate) const SET_WATCHES: i32 = 101;
    pub(crate) const SASL: i32 = 102;
    pub(crate) const GET_EPHEMERALS: i32 = 103;
    pub(crate) const GET_ALL_CHILDREN_NUMBER: i32 = 104;
    pub(crate) const SET_WATCHES2: i32 = 105;
    pub(crate) const ADD_WATCH: i32 = 106;
    pub(crate) const WHO_AM_I: i32 = 107;
    pub(crate) const CREATE_SESSION: i32 = -10;
    pub(crate) const CLOSE_SESSION: i32 = -11;
}

/// The handshake a client opens with. `read_only` is sent by 3.4+ clients (absent from
/// older ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConnectRequest {
    pub(crate) protocol_version: i32,
    pub(crate) last_zxid_seen: i64,
    pub(crate) timeout_ms: i32,
    pub(crate) session_id: i64,
    pub(crate) password: Vec<u8>,
    pub(crate) read_only: bool,
}

impl ConnectRequest {
    /// Decodes the handshake frame.
    pub(crate) fn decode(frame: &[u8]) -> WireResult<ConnectRequest> {
        let mut r = JuteReader::new(frame);
        let req = ConnectRequest {
            protocol_version: r.int()?,
            last_zxid_seen: r.long()?,
            timeout_ms: r.int()?,
            session_id: r.long()?,
            password: r.buffer()?,
            read_only: if r.remaining() > 0 {
                r.boolean()?
            } else {
                false
            },
        };
        r.finish()?;
        Ok(req)
    }
}

/// The server's answer to the handshake (`timeout_ms` 0 tells the client its session
/// has expired).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConnectResponse {
    pub(crate) protocol_version: i32,
    pub(crate) timeout_ms: i32,
    pub(crate) session_id: i64,
    pub(crate) password: Vec<u8>,
    pub(crate) read_only: bool,
}

impl ConnectResponse {
    /// Encodes the answer (without the frame's length prefix).
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w = JuteWriter::with_capacity(40);
        w.int(self.protocol_version)
            .int(self.timeout_ms)
            .long(self.session_id)
            .buffer(&self.password)
            .boolean(self.read_only);
        w.finish()
    }
}

/// The header of every answer: the request's xid, the zxid the server has reached and an
/// error code (0: none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReplyHeader {
    pub(crate) xid: i32,
    pub(crate) zxid: i64,
    pub(crate) err: i32,
}

impl ReplyHeader {
    /// The xid of watch notifications.
    pub(crate) const NOTIFICATION_XID: i32 = -1;
    /// The xid of ping answers.
    pub(crate) const PING_XID: i32 = -2;

    /// Writes the header.
    pub(crate) fn write(&self, w: &mut JuteWriter) {
        w.int(self.xid).long(self.zxid).int(self.err);
    }
}

/// A watch notification's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WatcherEvent {
    pub(crate) event_type: i32,
    pub(crate) state: i32,
    pub(crate) path: String,
}

impl WatcherEvent {
    /// Writes the event.
    pub(crate) fn write(&self, w: &mut JuteWriter) {
        w.int(self.event_type).int(self.state).string(&self.path);
    }
}

/// A write record: the operations a request or a `multi` may carry that change the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Write {
    /// create, create2, createContainer and createTTL (`op` says which).
    Create {
        op: i32,
        path: String,
        /// `None`: null (length -1), kept apart from empty data as ZooKeeper keeps it.
        data: Option<Vec<u8>>,
        acl: Vec<Acl>,
        flags: i32,
        ttl: Option<i64>,
    },
    Delete {
        path: String,
        version: i32,
    },
    SetData {
        path: String,
        data: Option<Vec<u8>>,
        version: i32,
    },
    Check {
        path: String,
        version: i32,
    },
}

/// One operation of a `multi` (or `multiRead`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MultiOp {
    Write(Write),
    GetChildren { path: String },
    GetData { path: String },
}

/// A client request after the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ClientRequest {
    Ping,
    CloseSession,
    /// create(2/Container/TTL), delete, setData or check.
    Write(Write),
    /// exists, getData, getChildren, getChildren2 (`op` says which).
    Read {
        op: i32,
        path: String,
        watch: bool,
    },
    Sync {
        path: String,
    },
    GetAcl {
        path: String,
    },
    SetAcl {
        path: String,
        acl: Vec<Acl>,
        version: i32,
    },
    /// multi (`read`: false) or multiRead.
    Multi {
        read: bool,
        ops: Vec<MultiOp>,
    },
    Auth {
        scheme: String,
        auth: Vec<u8>,
    },
    /// setWatches (`persistent` and `recursive` empty) or setWatches2.
    SetWatches {
        relative_zxid: i64,
        data: Vec<String>,
        exist: Vec<String>,
        child: Vec<String>,
        persistent: Vec<String>,
        recursive: Vec<String>,
    },
    /// checkWatches (`remove`: false) or removeWatches.
    RemoveWatches {
        remove: bool,
        path: String,
        watcher_type: i32,
    },
    AddWatch {
        path: String,
        mode: i32,
    },
    GetEphemerals {
        prefix: String,
    },
    GetAllChildrenNumber {
        path: String,
    },
    /// reconfig (`ReconfigRequest`): null strings are kept apart from empty ones, as
    /// ZooKeeper tells the non-incremental form by a non-null `newMembers`.
    Reconfig {
        joining: Option<String>,
        leaving: Option<String>,
        new_members: Option<String>,
        from_config: i64,
    },
    /// deleteContainer: the server's own operation, which ZooKeeper refuses from a client
    /// (its record is not read).
    DeleteContainer,
    /// sasl: a SASL token (`GetSASLRequest`).
    Sasl {
        token: Vec<u8>,
    },
    /// whoAmI (no record).
    WhoAmI,
    /// createSession after the handshake (its record is not read).
    CreateSession,
}

/// Reads the record of write operation `code`; `None` if `code` is not a write.
fn read_write(code: i32, r: &mut JuteReader<'_>) -> WireResult<Option<Write>> {
    Ok(Some(match code {
        op::CREATE | op::CREATE2 | op::CREATE_CONTAINER | op::CREATE_TTL => Write::Create {
            op: code,
            path: r.string()?,
            data: r.nullable_buffer()?,
            acl: read_acls(r)?,
            flags: r.int()?,
            ttl: if code == op::CREATE_TTL {
                Some(r.long()?)
            } else {
                None
            },
        },
        op::DELETE => Write::Delete {
            path: r.string()?,
            version: r.int()?,
        },
        op::SET_DATA => Write::SetData {
            path: r.string()?,
            data: r.nullable_buffer()?,
            version: r.int()?,
        },
        op::CHECK => Write::Check {
            path: r.string()?,
            version: r.int()?,
        },
        _ => return Ok(None),
    }))
}

/// Decodes one request frame (header and record): its xid and the request.
pub(crate) fn decode_request(frame: &[u8]) -> WireResult<(i32, ClientRequest)> {
    let mut r = JuteReader::new(frame);
    let xid = r.int()?;
    let code = r.int()?;
    if let Some(write) = read_write(code, &mut r)? {
        r.finish()?;
        return Ok((xid, ClientRequest::Write(write)));
    }
    let req = match code {
        op::PING => ClientRequest::Ping,
        op::CLOSE_SESSION => ClientRequest::CloseSession,
        op::EXISTS | op::GET_DATA | op::GET_CHILDREN | op::GET_CHILDREN2 => ClientRequest::Read {
            op: code,
            path: r.string()?,
            watch: r.boolean()?,
        },
        op::SYNC => ClientRequest::Sync { path: r.string()? },
        op::GET_ACL => ClientRequest::GetAcl { path: r.string()? },
        op::SET_ACL => ClientRequest::SetAcl {
            path: r.string()?,
            acl: read_acls(&mut r)?,
            version: r.int()?,
        },
        op::MULTI | op::MULTI_READ => ClientRequest::Multi {
            read: code == op::MULTI_READ,
            ops: read_multi(&mut r)?,
        },
        op::AUTH => {
            let _type = r.int()?;
            ClientRequest::Auth {
                scheme: r.string()?,
                auth: r.buffer()?,
            }
        }
        op::SET_WATCHES | op::SET_WATCHES2 => {
            let relative_zxid = r.long()?;
            let (data, exist, child) = (r.strings()?, r.strings()?, r.strings()?);
            let (persistent, recursive) = if code == op::SET_WATCHES2 {
                (r.strings()?, r.strings()?)
            } else {
                (Vec::new(), Vec::new())
            };
            ClientRequest::SetWatches {
                relative_zxid,
                data,
                exist,
                child,
                persistent,
                recursive,
            }
        }
        op::CHECK_WATCHES | op::REMOVE_WATCHES => ClientRequest::RemoveWatches {
            remove: code == op::REMOVE_WATCHES,
            path: r.string()?,
            watcher_type: r.int()?,
        },
        op::ADD_WATCH => ClientRequest::AddWatch {
            path: r.string()?,
            mode: r.int()?,
        },
        op::GET_EPHEMERALS => ClientRequest::GetEphemerals {
            prefix: r.string()?,
        },
        op::GET_ALL_CHILDREN_NUMBER => ClientRequest::GetAllChildrenNumber { path: r.string()? },
        op::SASL => ClientRequest::Sasl { token: r.buffer()? },
        op::RECONFIG => ClientRequest::Reconfig {
            joining: r.nullable_string()?,
            leaving: r.nullable_string()?,
            new_members: r.nullable_string()?,
            from_config: r.long()?,
        },
        // As ZooKeeper, these records are not read at all.
        op::DELETE_CONTAINER | op::WHO_AM_I | op::CREATE_SESSION => {
            r.skip_rest();
            match code {
                op::DELETE_CONTAINER => ClientRequest::DeleteContainer,
                op::WHO_AM_I => ClientRequest::WhoAmI,
                _ => ClientRequest::CreateSession,
            }
        }
        other => return Err(WireError::UnknownOp(other)),
    };
    r.finish()?;
    Ok((xid, req))
}

/// Most operations in one multi (each takes at least a 9-byte header anyway).
const MAX_MULTI_OPS: usize = 1 << 20;

fn read_multi(r: &mut JuteReader<'_>) -> WireResult<Vec<MultiOp>> {
    let mut ops = Vec::new();
    loop {
        // MultiHeader: type, done, err; the list ends with done = true.
        let code = r.int()?;
        let done = r.boolean()?;
        let _err = r.int()?;
        if done {
            return Ok(ops);
        }
        if ops.len() >= MAX_MULTI_OPS {
            return Err(WireError::BadValue("too many operations in a multi".into()));
        }
        if let Some(write) = read_write(code, r)? {
            ops.push(MultiOp::Write(write));
            continue;
        }
        ops.push(match code {
            // The records of getChildren and getData: a path and a watch flag, which
            // clients send false in a multiRead (and which sets nothing here).
            op::GET_CHILDREN => {
                let path = r.string()?;
                let _watch = r.boolean()?;
                MultiOp::GetChildren { path }
            }
            op::GET_DATA => {
                let path = r.string()?;
                let _watch = r.boolean()?;
                MultiOp::GetData { path }
            }
            other => return Err(WireError::UnknownOp(other)),
        });
    }
}
