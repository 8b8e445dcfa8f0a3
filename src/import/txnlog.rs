//! ZooKeeper's transaction log file (`FileTxnLog`): a file header (`ZKLG`, version, dbid),
//! then records of `long checksum; buffer txn; byte 'B'`, where the checksum is the
//! Adler-32 of the buffer and the buffer holds a `TxnHeader` and the transaction's record
//! (ZooKeeper 3.6+ append a `TxnDigest` after it). The file is preallocated with zeros: a
//! record of length 0 ends it, and nothing but zeros may follow.

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
    /// The file's end, or only zeros (the preallocated rest of the file), right after a
    /// whole record.
    Clean,
    /// A record cut short at this offset, with nothing but zeros after what there is of
    /// it (or the file's end): ZooKeeper was stopped while writing it, so it was never
    /// acknowledged, or the file was truncated.
    Torn(usize),
}

/// What is found at a record's offset.
enum Step {
    /// A whole record, and the offset of the next one.
    Record(Txn, usize),
    /// The end of the records.
    End(End),
}

/// Reads every record of log `file` (its bytes `buf`).
///
/// ZooKeeper's `FileTxnIterator` stops reading a log at the first record it cannot read
/// whole (`Util.readTxnBytes`: a zero length, the file's end, or no `'B'` after the
/// record: "last transaction was partial") and goes on with the next log. A crash while
/// writing leaves such a record followed by the zeros the file was preallocated with, and
/// only then is a record taken as torn here: anything else after it would be records
/// ZooKeeper silently skips, so it is corruption. A record with its `'B'` whose checksum
/// does not match is an error to ZooKeeper ("CRC check failed"); it is torn here too
/// when nothing but zeros follows it (a crash can leave a page of it unwritten), since
/// whoever reads the result still checks that the next log continues the zxids after it.
pub(super) fn read(file: &str, buf: &[u8]) -> Result<(Vec<Record>, End)> {
    let mut i = Input::new(file, buf);
    let magic = i.int("magic")?;
    if magic != LOG_MAGIC {
        return Err(i.error_at(0, format_args!("not a transaction log: magic {magic:#x}")));
    }
    i.int("version")?;
    i.long("dbid")?;
    let mut records = Vec::new();
    let mut at = i.offset();
    loop {
        match step(file, buf, at)? {
            Step::Record(txn, next) => {
                records.push(Record { offset: at, txn });
                at = next;
            }
            Step::End(end) => return Ok((records, end)),
        }
    }
}

/// Whether `bytes` are all zeros.
fn zeros(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == 0)
}

/// The record at offset `at` of `buf`: `long checksum; int length; byte[length]; 'B'`.
fn step(file: &str, buf: &[u8], at: usize) -> Result<Step> {
    let rest = buf.get(at..).unwrap_or_default();
    let (Some(crc), Some(len)) = (rest.get(..8), rest.get(8..12)) else {
        // Less than a checksum and a length: the end, or the start of a record.
        return Ok(Step::End(if zeros(rest) {
            End::Clean
        } else {
            End::Torn(at)
        }));
    };
    let crc = u64::from_be_bytes(crc.try_into().unwrap_or_default());
    let len = i32::from_be_bytes(len.try_into().unwrap_or_default());
    if len == 0 {
        return zero_length(file, at, crc, &rest[12..]).map(Step::End);
    }
    if len < 0 {
        return Err(corrupt(
            file,
            at,
            format_args!("record of negative length {len}"),
        ));
    }
    let len = len as usize;
    let (Some(body), Some(&eor)) = (rest.get(12..12 + len), rest.get(12 + len)) else {
        // It runs past the end of the file.
        return Ok(Step::End(End::Torn(at)));
    };
    let after = &rest[13 + len..];
    let sum = u64::from(adler32(body));
    if eor == EOR && crc == sum {
        let txn = parse_txn(file, at + 12, body)?;
        return Ok(Step::Record(txn, at + 13 + len));
    }
    if (eor == 0 || eor == EOR) && zeros(after) {
        return Ok(Step::End(End::Torn(at)));
    }
    Err(corrupt(
        file,
        at,
        if eor != EOR {
            format!(
                "record followed by {eor:#04x}, not its end mark 'B', and not a record cut \
                 short before the zeros the log was preallocated with"
            )
        } else {
            format!("checksum mismatch: the record says {crc:#x}, its bytes sum to {sum:#x}")
        },
    ))
}

/// A record of length 0 at `at`, `rest` the bytes after its length: the preallocated end
/// of the log — nothing but zeros may follow, else records would be lost. A checksum
/// without its length is a record cut short.
fn zero_length(file: &str, at: usize, crc: u64, rest: &[u8]) -> Result<End> {
    if let Some(k) = rest.iter().position(|&b| b != 0) {
        return Err(corrupt(
            file,
            at + 12 + k,
            format_args!(
                "a non-zero byte after the end of the log (a record of length 0 at offset \
                 {at}): what follows would be lost"
            ),
        ));
    }
    Ok(if crc == 0 { End::Clean } else { End::Torn(at) })
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
        op::CLOSE_SESSION if top => Change::CloseSession {
            paths: close_session_paths(i)?,
        },
        op::MULTI if top => {
            let n = i.count("multi", 8)?.unwrap_or(0);
            let mut ops = Vec::with_capacity(i.capacity(n, 8));
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

/// The size of a `TxnDigest` (`int version; long treeDigest`), which ZooKeeper 3.6+ append
/// to a transaction when `zookeeper.digest.enabled` (the default).
const TXN_DIGEST_SIZE: usize = 12;

/// The paths a closeSession lists, when it lists them. ZooKeeper's
/// `SerializeUtils.deserializeTxn` reads a `CloseSessionTxn { vector<ustring>
/// paths2Delete }` only when its own `closeSessionTxn.enabled` is set (3.6+, the
/// default), and takes none when the bytes end first (a log of 3.5 and before); with it
/// unset the body holds only the `TxnDigest`, or nothing. The setting of the ZooKeeper
/// that wrote the log is not known, so the bytes decide: a list of paths that ends where
/// the record does or a `TxnDigest` before it does is the `CloseSessionTxn`; else the
/// record must be a `TxnDigest` alone, or empty. (A digest's version is 2, which as a
/// count would need two paths in 8 bytes: empty paths, which no znode has.) Without the
/// list the session's ephemerals as the tree knows them go, as ZooKeeper's
/// `killSession` does.
fn close_session_paths(i: &mut Input) -> Result<Option<Vec<String>>> {
    let left = i.remaining();
    if left == 0 {
        return Ok(None);
    }
    let at = i.offset();
    if let Some(paths) = close_session_txn(i) {
        if matches!(i.remaining(), 0 | TXN_DIGEST_SIZE) {
            return Ok(Some(paths));
        }
    }
    if left == TXN_DIGEST_SIZE {
        return Ok(None);
    }
    Err(i.error_at(
        at,
        format_args!(
            "closeSession of {left} bytes: neither a list of paths (CloseSessionTxn) nor a \
             TxnDigest"
        ),
    ))
}

/// A `CloseSessionTxn` whose every path is absolute, read from a copy of `i` that
/// replaces it when it is one.
fn close_session_txn(i: &mut Input) -> Option<Vec<String>> {
    let mut probe = i.clone();
    // A null vector (-1) is no paths, as ZooKeeper's jute reads it.
    let n = probe.count("paths2Delete", 4).ok()?.unwrap_or(0);
    let mut paths = Vec::with_capacity(probe.capacity(n, 4));
    for _ in 0..n {
        let p = probe.string("path").ok()?;
        if !p.starts_with('/') {
            return None;
        }
        paths.push(p);
    }
    *i = probe;
    Some(paths)
}
