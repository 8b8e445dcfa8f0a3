//! Reading the node's state at one instant, in bounded chunks, for a follower that needs a
//! snapshot.
//!
//! The tree on disk *is* the snapshot: every apply batch writes the tree delta and the
//! applied index together. A RocksDB snapshot therefore gives a consistent view of the
//! tree, the sessions, the applied index, its term and the configuration at once, without
//! stopping writes or holding any lock on the in-memory tree.

use super::Db;
use raft::eraftpb::{ConfState, Entry};
use rocksdb::{Direction, IteratorMode, DB};

use super::raft_log::{decode_compacted, KEY_COMPACTED};
use super::tree_store::{read_applied, read_slot, KEY_APPLIED, KEY_TREE_SLOT};
use super::tree_store::{RECORD_PEER, RECORD_SESSION, RECORD_ZNODE};
use super::{cf, slot_cfs, CF_META, CF_RAFT_LOG, CF_RAFT_STATE};
use super::{layout, members};
use crate::codec::Writer;
use crate::error::{Error, Result};

/// What a snapshot describes: the state after entry `index` of term `term`, with the
/// configuration in force then.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SnapshotMeta {
    pub(crate) index: u64,
    pub(crate) term: u64,
    pub(crate) conf_state: ConfState,
}

/// Takes a RocksDB snapshot of `db` and hands its records to `emit` in chunks of about
/// `chunk_bytes` (a single larger record makes a larger chunk). The last call has `last`
/// set (its chunk may be empty). Memory stays at one chunk whatever the tree's size.
pub(crate) fn read_snapshot(
    db: &DB,
    chunk_bytes: usize,
    mut emit: impl FnMut(&SnapshotMeta, Vec<u8>, bool) -> Result<()>,
) -> Result<SnapshotMeta> {
    let snap = db.snapshot();
    let meta_cf = cf(db, CF_META);
    let applied = read_applied(snap.get_cf(meta_cf, KEY_APPLIED).db()?)?;
    let slot = read_slot(snap.get_cf(meta_cf, KEY_TREE_SLOT).db()?)?;
    let state_cf = cf(db, CF_RAFT_STATE);
    let conf_state = match snap.get_cf(state_cf, b"conf_state").db()? {
        Some(b) => protobuf::Message::parse_from_bytes(&b)
            .map_err(|e| Error::Corrupt(format!("conf state: {e}")))?,
        None => return Err(Error::Corrupt("no conf state".into())),
    };
    let (compacted, compacted_term) = match snap.get_cf(state_cf, KEY_COMPACTED).db()? {
        Some(b) => decode_compacted(&b)?,
        None => (0, 0),
    };
    // Before the first apply batch, the state is the bootstrap snapshot's.
    let index = applied.max(compacted);
    if index == 0 {
        return Err(Error::Raft("nothing applied yet: no snapshot".into()));
    }
    let term = if index == compacted {
        compacted_term
    } else {
        let bytes = snap
            .get_cf(cf(db, CF_RAFT_LOG), index.to_be_bytes())
            .db()?
            .ok_or_else(|| Error::Corrupt(format!("applied entry {index} not in the log")))?;
        let e: Entry = protobuf::Message::parse_from_bytes(&bytes)
            .map_err(|e| Error::Corrupt(format!("log entry: {e}")))?;
        e.term
    };
    let meta = SnapshotMeta {
        index,
        term,
        conf_state,
    };
    let cfs = slot_cfs(slot);
    let mut w = Writer::with_capacity(chunk_bytes.min(1 << 20) + 1024);
    let mut size = 0usize;
    for (kind, name) in [(RECORD_ZNODE, cfs.znodes), (RECORD_SESSION, cfs.sessions)] {
        for item in snap.iterator_cf(cf(db, name), IteratorMode::Start) {
            let (k, v) = item.db()?;
            w.u8(kind);
            if kind == RECORD_ZNODE {
                // A znode travels under its path: the receiver keys it its own way.
                let (p, _) = layout::path_of(&k)
                    .ok_or_else(|| Error::Corrupt("a znode key holds no path".into()))?;
                w.bytes(p.as_bytes());
            } else {
                w.bytes(&k);
            }
            w.bytes(&v);
            size += 9 + k.len() + v.len();
            if size >= chunk_bytes {
                let full = std::mem::replace(&mut w, Writer::with_capacity(chunk_bytes + 1024));
                emit(&meta, full.finish(), false)?;
                size = 0;
            }
        }
    }
    // The addresses of members added since the ensemble began, so a follower that never
    // saw those configuration changes can reach them.
    let peers = snap.iterator_cf(
        meta_cf,
        IteratorMode::From(members::PREFIX, Direction::Forward),
    );
    for item in peers {
        let (k, v) = item.db()?;
        let Some(id) = members::parse_key(&k) else {
            break;
        };
        w.u8(RECORD_PEER);
        w.bytes(&id?.to_be_bytes());
        w.bytes(&v);
    }
    emit(&meta, w.finish(), true)?;
    Ok(meta)
}
