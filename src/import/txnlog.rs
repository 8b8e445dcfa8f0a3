//! ZooKeeper's transaction log file (`FileTxnLog`): a file header (`ZKLG`, version, dbid),
//! then records of `long checksum; buffer txn; byte 'B'`, where the checksum is the
//! Adler-32 of the buffer and the buffer holds a `TxnHeader` and the transaction's record
//! (ZooKeeper 3.6+ append a `TxnDigest` after it). The file is preallocated with zeros: a
//! record of length 0 ends it.

use super::jute::{adler32, corrupt, Input};
use super::zktree::{Change, Create, Txn};
use crate::error::Result;

/// `ZKLG`.
const LOG_MAGIC: i32 = 0x5a4b_4c47;
/// The record's end-of-record mark.
const EOR: u8 = b'B';

/// ZooKeeper's `OpCode`s that appear in the log.
mod op {
    pub const CREATE: i32 = 1;
    pub const DELETE: i32 = 2;
    pub const SET_DATA: i32 = 5;
    pub const SET_ACL: i32 = 7;
    pub const CHECK: i32 = 13;
    pub const MULTI: i32 = 14;
    pub const CREATE2: i32 = 15;
    pub const RECONFIG: i32 = 16;
    pub const CREATE_CONTAINER: i32 = 19;
    pub const DELETE_CONTAINER: i32 = 20;
    pub const CREATE_TTL: i32 = 21;
    pub const CREATE_SESSION: i32 = -10;
    pub const CLOSE_SESSION: i32 = -11;
    pub const ERROR: i32 = -1;
}

/// `ephemeralOwner` of a container (`EphemeralType.CONTAINER_EPHEMERAL_OWNER`).
const CONTAINER_OWNER: i64 = i64::MIN;
/// Top byte of a TTL znode's `ephemeralOwner` (`EphemeralType.TTL`).
const TTL_MASK: i64 = 0xff00_0000_0000_0000_u64 as i64;

/// One record of a log, where it starts in the file.
pub(super) struct Record {
    pub offset: usize,
    pub txn: Txn,
}

/// How a log file ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    /// A zero length (the preallocated rest of the file) or the file's end, right after
    /// a whole record.
    Clean,
    /// A record cut short at this offset: ZooKeeper was stopped while writing it, so it
    /// was never acknowledged, or the file was truncated.
    Torn(usize),
}

/// Reads every record of log `file` (its bytes `buf`).
pub(super) fn read(file: &str, buf: &[u8]) -> Result<(Vec<Record>, End)> {
    let mut i = Input::new(file, buf);
    let magic = i.int("magic")?;
    if magic != LOG_MAGIC {
        return Err(i.error_at(0, format_args!("not a transaction log: magic {magic:#x}")));
    }
    i.int("version")?;
    i.long("dbid")?;
    let mut records = Vec::new();
    loop {
        let at = i.offset();
        if i.remaining() == 0 {
            return Ok((records, End::Clean));
        }
        if i.remaining() < 12 {
            return Ok((records, End::Torn(at)));
        }
        let crc = i.long("checksum")?;
        let len = i.int("length")?;
        if len == 0 {
            return Ok((records, End::Clean));
        }
        if len < 0 {
            return Err(corrupt(
                file,
                at,
                format_args!("record of negative length {len}"),
            ));
        }
        let len = len as usize;
        if i.remaining() < len + 1 {
            return Ok((records, End::Torn(at)));
        }
        let body_at = i.offset();
        let body = &buf[body_at..body_at + len];
        for _ in 0..len {
            i.byte("record")?;
        }
        if i.byte("end of record")? != EOR {
            return Err(corrupt(file, at, "record not followed by its end mark 'B'"));
        }
        let sum = adler32(body);
        if crc as u64 != u64::from(sum) {
            return Err(corrupt(
                file,
                at,
                format_args!(
                    "checksum mismatch: the record says {crc:#x}, its bytes sum to {sum:#x}"
                ),
            ));
        }
        let txn = parse_txn(file, body_at, body)?;
        records.push(Record { offset: at, txn });
    }
}

/// A `TxnHeader` and the record its type names (`SerializeUtils.deserializeTxn`).
fn parse_txn(file: &str, at: usize, body: &[u8]) -> Result<Txn> {
    let mut i = Input::within(file, body, at);
    let session = i.long("clientId")?;
    i.int("cxid")?;
    let zxid = i.long("zxid")?;
    let time = i.long("time")?;
    let kind = i.int("type")?;
    let change = change(&mut i, kind, session, true)?;
    // What follows (a TxnDigest in 3.6+) is not needed.
    Ok(Txn {
        session,
        zxid,
        time,
        change,
    })
}

/// The record of a transaction of type `kind` (top level, or inside a multi).
fn change(i: &mut Input, kind: i32, session: i64, top: bool) -> Result<Change> {
    let create = |i: &mut Input, owner: Option<i64>, plain: bool| -> Result<Change> {
        let path = i.string("path")?;
        let data = i.buffer("data")?;
        let acl = i.acl("acl")?;
        let (owner, parent_cversion) = match owner {
            // create / create2: `boolean ephemeral; int parentCVersion` — a record of
            // ZooKeeper 3.2 and before (CreateTxnV0) stops after `ephemeral`.
            None => {
                let ephemeral = i.boolean("ephemeral")?;
                let pcv = if plain && i.remaining() < 4 {
                    -1
                } else {
                    i.int("parentCVersion")?
                };
                (if ephemeral { session } else { 0 }, pcv)
            }
            Some(owner) => (owner, i.int("parentCVersion")?),
        };
        Ok(Change::Create(Create {
            path,
            data,
            acl,
            owner,
            parent_cversion,
            plain,
        }))
    };
    Ok(match kind {
        op::CREATE => create(i, None, true)?,
        op::CREATE2 => create(i, None, false)?,
        op::CREATE_CONTAINER => create(i, Some(CONTAINER_OWNER), false)?,
        op::CREATE_TTL => {
            let path = i.string("path")?;
            let data = i.buffer("data")?;
            let acl = i.acl("acl")?;
            let parent_cversion = i.int("parentCVersion")?;
            let ttl = i.long("ttl")?;
            Change::Create(Create {
                path,
                data,
                acl,
                owner: TTL_MASK | (ttl & 0x00ff_ffff_ffff_ffff),
                parent_cversion,
                plain: false,
            })
        }
        op::DELETE | op::DELETE_CONTAINER => Change::Delete(i.string("path")?),
        op::SET_DATA => Change::SetData {
            path: i.string("path")?,
            data: i.buffer("data")?,
            version: i.int("version")?,
        },
        op::SET_ACL => Change::SetAcl {
            path: i.string("path")?,
            acl: i.acl("acl")?,
            version: i.int("version")?,
        },
        op::RECONFIG => {
            // A SetDataTxn of /zookeeper/config: zkraft writes its own.
            i.string("path")?;
            i.buffer("data")?;
            i.int("version")?;
            Change::Nothing
        }
        op::CHECK => {
            i.string("path")?;
            i.int("version")?;
            Change::Nothing
        }
        op::ERROR if top => {
            i.int("err")?;
            Change::Nothing
        }
        op::ERROR => {
            i.int("err")?;
            Change::Error
        }
        op::CREATE_SESSION if top => Change::CreateSession {
            timeout_ms: i.int("timeOut")?,
        },
        op::CLOSE_SESSION if top => {
            // 3.6+ lists the paths to delete (`CloseSessionTxn`); earlier logs hold none.
            let paths = if i.remaining() >= 4 {
                let n = i.count("paths2Delete", 4)?.unwrap_or(0);
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(i.string("path")?);
                }
                Some(v)
            } else {
                None
            };
            Change::CloseSession { paths }
        }
        op::MULTI if top => {
            let n = i.count("multi", 8)?.unwrap_or(0);
            let mut ops = Vec::with_capacity(n);
            for _ in 0..n {
                let sub = i.int("multi op type")?;
                // The op's bytes start after the buffer's length.
                let at = i.offset() + 4;
                let data = i.buffer("multi op")?.unwrap_or_default();
                let mut inner = Input::within(i.file(), &data, at);
                ops.push(change(&mut inner, sub, session, false)?);
            }
            Change::Multi(ops)
        }
        other => {
            return Err(i.error(format_args!(
                "transaction type {other} is not one ZooKeeper logs{}",
                if top { "" } else { " inside a multi" }
            )))
        }
    })
}
