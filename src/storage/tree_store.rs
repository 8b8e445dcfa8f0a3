//! [`TreeStore`]: the znode tree and the applied index in RocksDB.
//!
//! The in-memory [`DataTree`] serves reads; this store makes it durable. Every apply batch
//! writes the znodes and sessions the batch touched, the new applied index and the commit
//! index in one `WriteBatch`, so after a crash the persisted tree is exactly the state after the
//! persisted applied index: restart neither re-applies nor skips an entry.

use std::sync::Arc;

use rocksdb::{IteratorMode, WriteBatch, WriteOptions, DB};

use super::{cf, CF_META, CF_SESSIONS, CF_TREE};
use crate::codec::{Reader, Writer};
use crate::error::{Error, Result};
use crate::tree::{DataTree, SessionRecord, Znode};

const KEY_APPLIED: &[u8] = b"applied_index";
const ZNODE_FORMAT_V1: u8 = 1;
const SESSION_FORMAT_V1: u8 = 1;

/// Durable home of the znode tree.
pub struct TreeStore {
    db: Arc<DB>,
}

impl TreeStore {
    /// Wraps the node's database.
    pub fn new(db: Arc<DB>) -> TreeStore {
        TreeStore { db }
    }

    /// Loads the tree and the index it reflects. A fresh database yields ZooKeeper's
    /// initial tree at index 0.
    pub fn load(&self) -> Result<(DataTree, u64)> {
        let applied = match self.db.get_cf(cf(&self.db, CF_META), KEY_APPLIED)? {
            Some(b) => u64::from_le_bytes(
                b.as_slice()
                    .try_into()
                    .map_err(|_| Error::Corrupt("applied index".into()))?,
            ),
            None => 0,
        };
        let mut tree = DataTree::empty();
        for item in self
            .db
            .iterator_cf(cf(&self.db, CF_TREE), IteratorMode::Start)
        {
            let (k, v) = item?;
            let path = String::from_utf8(k.to_vec())
                .map_err(|_| Error::Corrupt("znode path is not utf-8".into()))?;
            tree.insert_loaded(path, decode_znode(&v)?);
        }
        if tree.is_empty() {
            return Ok((DataTree::new(), applied));
        }
        for item in self
            .db
            .iterator_cf(cf(&self.db, CF_SESSIONS), IteratorMode::Start)
        {
            let (k, v) = item?;
            let id = i64::from_be_bytes(
                k.as_ref()
                    .try_into()
                    .map_err(|_| Error::Corrupt("session key".into()))?,
            );
            tree.insert_session(id, decode_session(&v)?);
        }
        tree.link_children();
        Ok((tree, applied))
    }

    /// Adds to `batch` the current value of every path in `dirty` and every session in
    /// `dirty_sessions` (deleting the ones that no longer exist) and the applied index.
    pub fn write_into(
        &self,
        batch: &mut WriteBatch,
        tree: &DataTree,
        (dirty, dirty_sessions): (&[String], &[i64]),
        applied: u64,
    ) {
        let tree_cf = cf(&self.db, CF_TREE);
        for path in dirty {
            match tree.get(path) {
                Some(node) => batch.put_cf(tree_cf, path.as_bytes(), encode_znode(node)),
                None => batch.delete_cf(tree_cf, path.as_bytes()),
            }
        }
        let sessions_cf = cf(&self.db, CF_SESSIONS);
        for id in dirty_sessions {
            match tree.sessions().get(id) {
                Some(rec) => batch.put_cf(sessions_cf, id.to_be_bytes(), encode_session(rec)),
                None => batch.delete_cf(sessions_cf, id.to_be_bytes()),
            }
        }
        batch.put_cf(cf(&self.db, CF_META), KEY_APPLIED, applied.to_le_bytes());
    }

    /// Writes a batch built with [`TreeStore::write_into`]. It is not synced on its own: the
    /// raft log already holds every applied entry durably, and RocksDB's single write-ahead
    /// log keeps this batch ordered before the next synced raft write.
    pub fn commit(&self, batch: WriteBatch) -> Result<()> {
        let mut opts = WriteOptions::default();
        opts.set_sync(false);
        self.db.write_opt(batch, &opts)?;
        Ok(())
    }
}

fn encode_znode(n: &Znode) -> Vec<u8> {
    let mut w = Writer::with_capacity(64 + n.data.len());
    w.u8(ZNODE_FORMAT_V1);
    w.i64(n.czxid);
    w.i64(n.mzxid);
    w.i64(n.pzxid);
    w.i64(n.ctime);
    w.i64(n.mtime);
    w.i32(n.version);
    w.i32(n.creations);
    w.i32(n.aversion);
    w.i64(n.ephemeral_owner);
    w.bytes(&n.data);
    w.finish()
}

fn encode_session(s: &SessionRecord) -> Vec<u8> {
    let mut w = Writer::with_capacity(32 + s.password.len());
    w.u8(SESSION_FORMAT_V1);
    w.i32(s.timeout_ms);
    w.u64(s.host);
    w.bytes(&s.password);
    w.finish()
}

fn decode_session(buf: &[u8]) -> Result<SessionRecord> {
    let mut r = Reader::new(buf);
    let format = r.u8()?;
    if format != SESSION_FORMAT_V1 {
        return Err(Error::Corrupt(format!("unknown session format {format}")));
    }
    let rec = SessionRecord {
        timeout_ms: r.i32()?,
        host: r.u64()?,
        password: r.bytes()?,
    };
    r.finish()?;
    Ok(rec)
}

fn decode_znode(buf: &[u8]) -> Result<Znode> {
    let mut r = Reader::new(buf);
    let format = r.u8()?;
    if format != ZNODE_FORMAT_V1 {
        return Err(Error::Corrupt(format!("unknown znode format {format}")));
    }
    let node = Znode {
        czxid: r.i64()?,
        mzxid: r.i64()?,
        pzxid: r.i64()?,
        ctime: r.i64()?,
        mtime: r.i64()?,
        version: r.i32()?,
        creations: r.i32()?,
        aversion: r.i32()?,
        ephemeral_owner: r.i64()?,
        data: r.bytes()?,
        children: Default::default(),
    };
    r.finish()?;
    Ok(node)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{CreateMode, Op};
    use crate::tree::Txn;

    fn sorted(t: &DataTree) -> Vec<(String, Znode)> {
        let mut v: Vec<_> = t.iter().map(|(p, n)| (p.clone(), n.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    #[test]
    fn tree_round_trips_with_applied_index() {
        let dir = tempfile::tempdir().unwrap();
        let mut tree = DataTree::new();
        {
            let store = TreeStore::new(super::super::open_db(dir.path()).unwrap());
            let (fresh, applied) = store.load().unwrap();
            assert_eq!((fresh.len(), applied), (4, 0));
            let txn = |zxid, session| Txn {
                zxid,
                time: 10 + zxid,
                session,
            };
            let ops = [
                (0, Op::create("/a", b"x".to_vec(), CreateMode::Persistent)),
                (
                    0,
                    Op::create("/a/", b"y".to_vec(), CreateMode::PersistentSequential),
                ),
                (0, Op::create("/b", vec![], CreateMode::Persistent)),
                (0, Op::delete("/b", None)),
                (
                    0,
                    Op::CreateSession {
                        timeout_ms: 4000,
                        password: vec![1; 16],
                        host: 1,
                    },
                ),
                (
                    0,
                    Op::CreateSession {
                        timeout_ms: 4000,
                        password: vec![2; 16],
                        host: 2,
                    },
                ),
                (5, Op::create("/e", vec![], CreateMode::Ephemeral)),
                (6, Op::create("/f", vec![], CreateMode::Ephemeral)),
                (0, Op::create("/c", vec![], CreateMode::Container)),
                (
                    0,
                    Op::CloseSession {
                        session: 6,
                        expired: true,
                    },
                ),
            ];
            for (i, (session, op)) in ops.iter().enumerate() {
                tree.apply(txn(i as i64 + 1, *session), op).unwrap();
            }
            let (dirty, dirty_sessions) = tree.take_dirty();
            let mut batch = WriteBatch::default();
            store.write_into(&mut batch, &tree, (&dirty, &dirty_sessions), 10);
            store.commit(batch).unwrap();
        }
        let store = TreeStore::new(super::super::open_db(dir.path()).unwrap());
        let (loaded, applied) = store.load().unwrap();
        assert_eq!(applied, 10);
        assert_eq!(sorted(&loaded), sorted(&tree));
        assert_eq!(loaded.sessions(), tree.sessions());
        assert_eq!(loaded.sessions().len(), 1);
        assert_eq!(loaded.ephemerals(5, "/"), ["/e"]);
        assert!(loaded.ephemerals(6, "/").is_empty());
        assert!(loaded.get("/f").is_none());
        assert!(
            loaded.reapable(0).is_empty(),
            "container never had children"
        );
    }
}
