//! Which node and which cluster a data directory belongs to.
//!
//! The first start writes the node id and the cluster id into the `meta` column family
//! (synced, before raft runs); every later start compares them with its configuration and
//! refuses to run on another node's or another cluster's directory — which would otherwise
//! carry that node's raft vote and term under a different id.

use super::Db;
use rocksdb::{WriteBatch, WriteOptions, DB};

use super::{cf, CF_META, CF_RAFT_LOG, CF_RAFT_STATE, CF_TREE};
use crate::error::{Error, Result};

const KEY_NODE_ID: &[u8] = b"node_id";
const KEY_CLUSTER_ID: &[u8] = b"cluster_id";

/// What [`check_or_record`] found in the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Identity {
    /// A new directory: the identity was recorded now.
    Recorded,
    /// The directory belongs to this node of this cluster.
    Matches,
    /// A directory written before identities were recorded: it holds state but no
    /// identity, and now carries the configured one.
    Adopted,
}

/// Refuses a directory of another node or cluster; records the identity in a new one.
pub(crate) fn check_or_record(db: &DB, node_id: u64, cluster_id: &str) -> Result<Identity> {
    let meta = cf(db, CF_META);
    let stored_node = db.get_cf(meta, KEY_NODE_ID).db()?;
    let stored_cluster = db.get_cf(meta, KEY_CLUSTER_ID).db()?;
    if let (Some(node), Some(cluster)) = (&stored_node, &stored_cluster) {
        let node = <[u8; 8]>::try_from(node.as_slice())
            .map(u64::from_le_bytes)
            .map_err(|_| Error::Corrupt("stored node id".into()))?;
        let cluster = String::from_utf8_lossy(cluster);
        if node != node_id || cluster != cluster_id {
            return Err(Error::Config(format!(
                "data directory belongs to node {node} of cluster {cluster:?}, \
                 not node {node_id} of cluster {cluster_id:?}"
            )));
        }
        return Ok(Identity::Matches);
    }
    let has_state = [CF_RAFT_STATE, CF_RAFT_LOG, CF_TREE]
        .into_iter()
        .any(|name| {
            db.iterator_cf(cf(db, name), rocksdb::IteratorMode::Start)
                .next()
                .is_some()
        });
    let mut batch = WriteBatch::default();
    batch.put_cf(meta, KEY_NODE_ID, node_id.to_le_bytes());
    batch.put_cf(meta, KEY_CLUSTER_ID, cluster_id.as_bytes());
    let mut opts = WriteOptions::default();
    opts.set_sync(true);
    db.write_opt(batch, &opts).db()?;
    Ok(if has_state {
        Identity::Adopted
    } else {
        Identity::Recorded
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_keeps_its_identity() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = super::super::open_db(dir.path()).unwrap();
            assert_eq!(check_or_record(&db, 1, "a").unwrap(), Identity::Recorded);
            assert_eq!(check_or_record(&db, 1, "a").unwrap(), Identity::Matches);
        }
        let db = super::super::open_db(dir.path()).unwrap();
        assert_eq!(check_or_record(&db, 1, "a").unwrap(), Identity::Matches);
        for (id, cluster) in [(2, "a"), (1, "b")] {
            let err = check_or_record(&db, id, cluster).unwrap_err();
            assert!(
                matches!(&err, Error::Config(m) if m.contains("belongs to node 1 of cluster \"a\"")),
                "{err}"
            );
        }
    }

    #[test]
    fn a_directory_from_before_identities_is_adopted() {
        let dir = tempfile::tempdir().unwrap();
        let db = super::super::open_db(dir.path()).unwrap();
        db.put_cf(cf(&db, CF_RAFT_STATE), b"hard_state", b"")
            .unwrap();
        assert_eq!(check_or_record(&db, 3, "c").unwrap(), Identity::Adopted);
        assert!(check_or_record(&db, 4, "c").is_err());
    }
}
