//! Writing a new member's whole state at once, from something other than raft: an import
//! (from ZooKeeper's data directory). The state goes in the way a snapshot received from a
//! leader does — staged chunk by chunk into the tree slot that is not live, finished, and
//! installed by one synced batch at the snapshot's index and term with the ensemble's
//! configuration — so the directory it leaves is one a member could have received.

use std::path::Path;

use raft::eraftpb::ConfState;

use super::tree_store::{encode_session, encode_znode, RECORD_SESSION, RECORD_ZNODE};
use super::{check_identity, open_db, Identity, RaftStorage, TreeStore};
use crate::codec::Writer;
use crate::error::{Error, Result};
use crate::tree::{SessionRecord, Znode};

/// Bytes of records staged per write batch.
const CHUNK_BYTES: usize = 4 << 20;

/// Who the directory belongs to and the ensemble it starts.
pub(crate) struct SeedTarget<'a> {
    pub dir: &'a Path,
    pub id: u64,
    pub cluster_id: &'a str,
    pub voters: &'a [u64],
    pub learners: &'a [u64],
}

/// Writes `znodes` and `sessions` into the fresh directory `target.dir` as the state
/// after raft entry `index` of `term`. The directory must hold no state yet.
pub(crate) fn write(
    target: &SeedTarget,
    (index, term): (u64, u64),
    znodes: impl IntoIterator<Item = (String, Znode)>,
    sessions: impl IntoIterator<Item = (i64, SessionRecord)>,
) -> Result<()> {
    let db = open_db(target.dir)?;
    if check_identity(&db, target.id, target.cluster_id)? != Identity::Recorded {
        return Err(Error::Config(format!(
            "{} already holds a member's state",
            target.dir.display()
        )));
    }
    // No voters: a joining member's empty state, which the install below replaces.
    let raft = RaftStorage::open(db.clone(), (&[], &[]), true)?;
    let mut store = TreeStore::new(db)?;
    store.clear_staging()?;
    let mut w = Writer::with_capacity(CHUNK_BYTES + 1024);
    let mut size = 0usize;
    let flush = |w: &mut Writer, size: &mut usize, store: &TreeStore| -> Result<()> {
        let full = std::mem::replace(w, Writer::with_capacity(CHUNK_BYTES + 1024));
        store.stage_chunk(&full.finish())?;
        *size = 0;
        Ok(())
    };
    for (path, node) in znodes {
        let value = encode_znode(&node);
        w.u8(RECORD_ZNODE);
        w.bytes(path.as_bytes());
        w.bytes(&value);
        size += 9 + path.len() + value.len();
        if size >= CHUNK_BYTES {
            flush(&mut w, &mut size, &store)?;
        }
    }
    for (id, rec) in sessions {
        let value = encode_session(&rec);
        w.u8(RECORD_SESSION);
        w.bytes(&id.to_be_bytes());
        w.bytes(&value);
        size += 17 + value.len();
        if size >= CHUNK_BYTES {
            flush(&mut w, &mut size, &store)?;
        }
    }
    flush(&mut w, &mut size, &store)?;
    let cs = ConfState {
        voters: target.voters.to_vec(),
        learners: target.learners.to_vec(),
        ..ConfState::default()
    };
    store.install(&raft, (index, term, &cs), None, &[])?;
    Ok(())
}
