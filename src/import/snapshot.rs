//! ZooKeeper's snapshot file (`FileSnap`): a file header (`ZKSN`, version, dbid), the
//! sessions (id, timeout), the ACL cache (id → ACL), every znode as (path, data, ACL id,
//! `StatPersisted`) parents first until the path `/`, and a seal: the Adler-32 of every
//! byte before it and the path `/` again. ZooKeeper 3.6 and later append the tree's digest
//! with a seal of its own, 3.9 the last processed zxid with another; either may be
//! turned off, so a snapshot may end with either, both or neither.

use std::collections::HashMap;

use super::jute::{adler32, Input};
use super::zktree::{StatPersisted, ZkNode, ZkTree};
use crate::acl::Acl;
use crate::error::Result;

/// `ZKSN`.
const SNAP_MAGIC: i32 = 0x5a4b_534e;
/// The ACL id ZooKeeper reserves for the open ACL (`world:anyone`, every permission).
const OPEN_ACL_ID: i64 = -1;

/// A snapshot read whole: the tree and the sessions open when it was taken.
pub(super) struct Snapshot {
    pub tree: ZkTree,
}

/// Reads snapshot `file` (its bytes `buf`), checking its magic, its structure and the
/// checksum of every seal.
pub(super) fn read(file: &str, buf: &[u8]) -> Result<Snapshot> {
    let mut i = Input::new(file, buf);
    let magic = i.int("magic")?;
    if magic != SNAP_MAGIC {
        return Err(i.error_at(0, format_args!("not a snapshot: magic {magic:#x}")));
    }
    i.int("version")?;
    i.long("dbid")?;
    let mut tree = ZkTree::default();
    let sessions = i.int("session count")?;
    if sessions < 0 {
        return Err(i.error("negative session count"));
    }
    for _ in 0..sessions {
        let id = i.long("session id")?;
        let timeout = i.int("session timeout")?;
        tree.sessions.insert(id, timeout);
    }
    let acls = read_acl_cache(&mut i)?;
    loop {
        let at = i.offset();
        let path = i.string("path")?;
        if path == "/" {
            break;
        }
        let data = i.buffer("data")?;
        let acl_id = i.long("ACL id")?;
        let stat = StatPersisted {
            czxid: i.long("czxid")?,
            mzxid: i.long("mzxid")?,
            ctime: i.long("ctime")?,
            mtime: i.long("mtime")?,
            version: i.int("version")?,
            cversion: i.int("cversion")?,
            aversion: i.int("aversion")?,
            ephemeral_owner: i.long("ephemeralOwner")?,
            pzxid: i.long("pzxid")?,
        };
        let acl = match acl_id {
            OPEN_ACL_ID => Acl::open_unsafe(),
            id => acls
                .get(&id)
                .cloned()
                .ok_or_else(|| i.error_at(at, format_args!("{path}: ACL {id} not in the cache")))?,
        };
        // The root is "" in the file.
        let path = if path.is_empty() {
            "/".to_string()
        } else {
            path
        };
        if path != "/" && (!path.starts_with('/') || path.ends_with('/')) {
            return Err(i.error_at(at, format_args!("invalid path {path:?}")));
        }
        let node = ZkNode {
            data,
            acl,
            stat,
            children: 0,
        };
        if tree.nodes.contains_key(&path) || !tree.insert_loaded(path.clone(), node) {
            return Err(i.error_at(
                at,
                format_args!("{path}: listed twice or before its parent"),
            ));
        }
    }
    if !tree.nodes.contains_key("/") {
        return Err(i.error("no root znode"));
    }
    check_seal(&mut i)?;
    read_tail(&mut i)?;
    Ok(Snapshot { tree })
}

/// A seal: the checksum (`long`) and the path `/` (`ustring`).
const SEAL_SIZE: usize = 8 + 4 + 1;
/// `DataTree.ZxidDigest` as 3.6+ write it: `long zxid; int digestVersion; long digest`.
const DIGEST_SIZE: usize = 8 + 4 + 8;
/// The last processed zxid 3.9 writes (`DataTree.serializeLastProcessedZxid`).
const LAST_ZXID_SIZE: usize = 8;

/// What may follow the first seal, each part with a seal of its own (`FileSnap.serialize`):
/// the digest when `zookeeper.digest.enabled` (3.6+, the default), then the last
/// processed zxid when `zookeeper.serializeLastProcessedZxid.enabled` (3.9+, the
/// default). Either may be off, so the size of what is left tells which are there.
fn read_tail(i: &mut Input) -> Result<()> {
    const DIGEST: usize = DIGEST_SIZE + SEAL_SIZE;
    const LAST_ZXID: usize = LAST_ZXID_SIZE + SEAL_SIZE;
    let parts: &[(&str, usize)] = match i.remaining() {
        0 => &[],
        DIGEST => &[("digest", DIGEST_SIZE)],
        LAST_ZXID => &[("last processed zxid", LAST_ZXID_SIZE)],
        n if n == DIGEST + LAST_ZXID => &[
            ("digest", DIGEST_SIZE),
            ("last processed zxid", LAST_ZXID_SIZE),
        ],
        n => {
            return Err(i.error(format_args!(
                "{n} bytes after the seal: neither a digest ({DIGEST}), a last processed \
                 zxid ({LAST_ZXID}) nor both ({})",
                DIGEST + LAST_ZXID
            )))
        }
    };
    for &(what, size) in parts {
        for _ in 0..size {
            i.byte(what)?;
        }
        check_seal(i)?;
    }
    Ok(())
}

/// `ReferenceCountedACLCache`: a count, then (id, `vector<ACL>`) pairs.
fn read_acl_cache(i: &mut Input) -> Result<HashMap<i64, Vec<Acl>>> {
    let n = i.count("ACL cache", 12)?.unwrap_or(0);
    let mut acls = HashMap::with_capacity(i.capacity(n, 12));
    for _ in 0..n {
        let id = i.long("ACL cache id")?;
        let at = i.offset();
        let acl = i
            .acl_opt("ACL list")?
            .ok_or_else(|| i.error_at(at, "ACL list: null"))?;
        acls.insert(id, acl);
    }
    Ok(acls)
}

/// A seal: the Adler-32 of every byte before it, then the path `/`.
fn check_seal(i: &mut Input) -> Result<()> {
    let at = i.offset();
    let expected = adler32(i.consumed());
    let val = i.long("checksum")?;
    let slash = i.string("seal")?;
    if slash != "/" {
        return Err(i.error_at(at, "no seal where the checksum belongs"));
    }
    if val as u64 != u64::from(expected) {
        return Err(i.error_at(
            at,
            format_args!(
                "checksum mismatch: the file says {val:#x}, its bytes sum to {expected:#x}"
            ),
        ));
    }
    Ok(())
}
