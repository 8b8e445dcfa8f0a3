//! [`TreeStore`]: the znode tree and the applied index in RocksDB.
//!
//! The in-memory [`DataTree`] serves reads; this store makes it durable. Every apply batch
//! writes the znodes and sessions the batch touched, the new applied index and the commit
//! index in one `WriteBatch`, so after a crash the persisted tree is exactly the state after the
//! persisted applied index: restart neither re-applies nor skips an entry.

use super::Db;
use std::sync::Arc;

use raft::eraftpb::ConfState;
use rocksdb::{IteratorMode, WriteBatch, WriteOptions, DB};

use super::members::{addresses, record_address_into, MAX_ADDRESS_LEN};
use super::{cf, slot_cfs, RaftStorage, CF_META};
use crate::acl;
use crate::codec::{Reader, Writer};
use crate::error::{Error, Result};
use crate::tree::{DataTree, SessionRecord, Znode};

pub(crate) const KEY_APPLIED: &[u8] = b"applied_index";
pub(crate) const KEY_TREE_SLOT: &[u8] = b"tree_slot";
const ZNODE_FORMAT_V1: u8 = 1;
/// Adds the ACL (a record of the first format has the open ACL).
const ZNODE_FORMAT_V2: u8 = 2;
/// How a record of the second format holds the ACL: the open ACL as one byte.
const ACL_OPEN: u8 = 0;
const ACL_LIST: u8 = 1;
const SESSION_FORMAT_V1: u8 = 1;
/// Adds the session order (epoch, last sequence number applied).
const SESSION_FORMAT_V2: u8 = 2;

/// Durable home of the znode tree.
pub struct TreeStore {
    db: Arc<DB>,
    /// Which tree slot is live (see the module docs of `storage`).
    slot: u8,
}

/// Reads the applied index from `meta` (through `get`, a database or a snapshot).
pub(crate) fn read_applied(value: Option<Vec<u8>>) -> Result<u64> {
    match value {
        Some(b) => Ok(u64::from_le_bytes(
            b.as_slice()
                .try_into()
                .map_err(|_| Error::Corrupt("applied index".into()))?,
        )),
        None => Ok(0),
    }
}

/// Reads the live tree slot from `meta`.
pub(crate) fn read_slot(value: Option<Vec<u8>>) -> Result<u8> {
    match value.as_deref() {
        None | Some([0]) => Ok(0),
        Some([1]) => Ok(1),
        Some(other) => Err(Error::Corrupt(format!("tree slot {other:?}"))),
    }
}

impl TreeStore {
    /// Wraps the node's database.
    pub fn new(db: Arc<DB>) -> Result<TreeStore> {
        let slot = read_slot(db.get_cf(cf(&db, CF_META), KEY_TREE_SLOT).db()?)?;
        Ok(TreeStore { db, slot })
    }

    /// The node's database.
    pub(crate) fn db(&self) -> &Arc<DB> {
        &self.db
    }

    /// Loads the tree and the index it reflects. A fresh database yields ZooKeeper's
    /// initial tree at index 0.
    pub fn load(&self) -> Result<(DataTree, u64)> {
        let applied = read_applied(self.db.get_cf(cf(&self.db, CF_META), KEY_APPLIED).db()?)?;
        let (tree_cf, sessions_cf) = slot_cfs(self.slot);
        let mut tree = DataTree::empty();
        for item in self
            .db
            .iterator_cf(cf(&self.db, tree_cf), IteratorMode::Start)
        {
            let (k, v) = item.db()?;
            let path = String::from_utf8(k.to_vec())
                .map_err(|_| Error::Corrupt("znode path is not utf-8".into()))?;
            tree.insert_loaded(path, decode_znode(&v)?);
        }
        if tree.is_empty() {
            let mut tree = DataTree::new();
            tree.set_zxid(applied);
            return Ok((tree, applied));
        }
        for item in self
            .db
            .iterator_cf(cf(&self.db, sessions_cf), IteratorMode::Start)
        {
            let (k, v) = item.db()?;
            tree.insert_session(decode_session_key(&k)?, decode_session(&v)?);
        }
        tree.link_children();
        tree.set_zxid(applied);
        Ok((tree, applied))
    }

    /// Empties the slot that is not live, to stage a snapshot into it.
    pub(crate) fn clear_staging(&self) -> Result<()> {
        let mut batch = WriteBatch::default();
        let (tree_cf, sessions_cf) = slot_cfs(1 - self.slot);
        // Paths are UTF-8 (never a 0xFF byte) and session keys 8 bytes: [0xFF; 9] is
        // past every key.
        batch.delete_range_cf(cf(&self.db, tree_cf), &[][..], &[0xFFu8; 9][..]);
        batch.delete_range_cf(cf(&self.db, sessions_cf), &[][..], &[0xFFu8; 9][..]);
        self.commit(batch)
    }

    /// Writes one chunk of a snapshot being received into the staging slot. Every record
    /// is decoded first, so a malformed chunk is refused whole and never installed.
    /// Returns the member addresses the chunk carries (installed with the snapshot).
    pub(crate) fn stage_chunk(&self, chunk: &[u8]) -> Result<Vec<(u64, String)>> {
        let mut peers = Vec::new();
        let (tree_cf, sessions_cf) = slot_cfs(1 - self.slot);
        let (tree_cf, sessions_cf) = (cf(&self.db, tree_cf), cf(&self.db, sessions_cf));
        let mut batch = WriteBatch::default();
        let mut r = Reader::new(chunk);
        while !r.is_empty() {
            let kind = r.u8()?;
            let key = r.bytes()?;
            let value = r.bytes()?;
            match kind {
                RECORD_ZNODE => {
                    std::str::from_utf8(&key)
                        .map_err(|_| Error::Corrupt("snapshot znode path".into()))?;
                    decode_znode(&value)?;
                    batch.put_cf(tree_cf, key, value);
                }
                RECORD_SESSION => {
                    decode_session_key(&key)?;
                    decode_session(&value)?;
                    batch.put_cf(sessions_cf, key, value);
                }
                RECORD_PEER => {
                    let id = <[u8; 8]>::try_from(key.as_slice())
                        .map(u64::from_be_bytes)
                        .map_err(|_| Error::Corrupt("snapshot member id".into()))?;
                    let addr = String::from_utf8(value)
                        .ok()
                        .filter(|a| a.len() <= MAX_ADDRESS_LEN)
                        .ok_or_else(|| Error::Corrupt("snapshot member address".into()))?;
                    peers.push((id, addr));
                }
                other => return Err(Error::Corrupt(format!("snapshot record kind {other}"))),
            }
        }
        self.commit(batch)?;
        Ok(peers)
    }

    /// Makes the staged slot live at (`index`, `term`, `cs`): one synced batch flips the
    /// slot and sets the applied index, the compaction point, the commit index and the
    /// configuration. Returns the tree loaded from it; the old slot is emptied after.
    pub(crate) fn install(
        &mut self,
        raft: &RaftStorage,
        (index, term, cs): (u64, u64, &ConfState),
        ready_hs: Option<&raft::eraftpb::HardState>,
        peers: &[(u64, String)],
    ) -> Result<DataTree> {
        let staged = 1 - self.slot;
        let mut batch = WriteBatch::default();
        let meta = cf(&self.db, CF_META);
        batch.put_cf(meta, KEY_TREE_SLOT, [staged]);
        batch.put_cf(meta, KEY_APPLIED, index.to_le_bytes());
        // The snapshot's member addresses replace the ones recorded here.
        for (id, _) in addresses(&self.db)? {
            record_address_into(&self.db, &mut batch, id, None);
        }
        for (id, addr) in peers {
            record_address_into(&self.db, &mut batch, *id, Some(addr));
        }
        let hs = raft.install_into(&mut batch, (index, term, cs), ready_hs)?;
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.db.write_opt(batch, &opts).db()?;
        raft.snapshot_installed(index, term, cs.clone(), hs);
        self.slot = staged;
        let (tree, _) = self.load()?;
        self.clear_staging()?;
        Ok(tree)
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
        let (tree_cf, sessions_cf) = slot_cfs(self.slot);
        let tree_cf = cf(&self.db, tree_cf);
        for path in dirty {
            match tree.get(path) {
                Some(node) => batch.put_cf(tree_cf, path.as_bytes(), encode_znode(&node)),
                None => batch.delete_cf(tree_cf, path.as_bytes()),
            }
        }
        let sessions_cf = cf(&self.db, sessions_cf);
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
        self.db.write_opt(batch, &opts).db()?;
        Ok(())
    }
}

/// A snapshot chunk record holding a znode (key: path) or a session (key: id).
pub(crate) const RECORD_ZNODE: u8 = 1;
pub(crate) const RECORD_SESSION: u8 = 2;
/// A snapshot chunk record holding a member's address (key: id).
pub(crate) const RECORD_PEER: u8 = 3;

fn decode_session_key(k: &[u8]) -> Result<i64> {
    Ok(i64::from_be_bytes(
        k.try_into()
            .map_err(|_| Error::Corrupt("session key".into()))?,
    ))
}

fn encode_znode(n: &Znode) -> Vec<u8> {
    let mut w = Writer::with_capacity(72 + n.data.as_ref().map_or(0, Vec::len));
    w.u8(ZNODE_FORMAT_V2);
    w.i64(n.czxid);
    w.i64(n.mzxid);
    w.i64(n.pzxid);
    w.i64(n.ctime);
    w.i64(n.mtime);
    w.i32(n.version);
    w.i32(n.creations);
    w.i32(n.aversion);
    w.i64(n.ephemeral_owner);
    w.opt_bytes(n.data.as_deref());
    if acl::is_open(&n.acl) {
        w.u8(ACL_OPEN);
    } else {
        w.u8(ACL_LIST);
        w.acl(&n.acl);
    }
    w.finish()
}

fn encode_session(s: &SessionRecord) -> Vec<u8> {
    let mut w = Writer::with_capacity(48 + s.password.len());
    w.u8(SESSION_FORMAT_V2);
    w.i32(s.timeout_ms);
    w.u64(s.host);
    w.bytes(&s.password);
    w.u64(s.epoch);
    w.u64(s.last_seq);
    w.finish()
}

fn decode_session(buf: &[u8]) -> Result<SessionRecord> {
    let mut r = Reader::new(buf);
    let format = r.u8()?;
    if format != SESSION_FORMAT_V1 && format != SESSION_FORMAT_V2 {
        return Err(Error::Corrupt(format!("unknown session format {format}")));
    }
    let (timeout_ms, host, password) = (r.i32()?, r.u64()?, r.bytes()?);
    let (epoch, last_seq) = if format == SESSION_FORMAT_V2 {
        (r.u64()?, r.u64()?)
    } else {
        (0, 0)
    };
    let rec = SessionRecord {
        timeout_ms,
        host,
        password,
        epoch,
        last_seq,
    };
    r.finish()?;
    Ok(rec)
}

fn decode_znode(buf: &[u8]) -> Result<Znode> {
    let mut r = Reader::new(buf);
    let format = r.u8()?;
    if format != ZNODE_FORMAT_V1 && format != ZNODE_FORMAT_V2 {
        return Err(Error::Corrupt(format!("unknown znode format {format}")));
    }
    let mut node = Znode {
        czxid: r.i64()?,
        mzxid: r.i64()?,
        pzxid: r.i64()?,
        ctime: r.i64()?,
        mtime: r.i64()?,
        version: r.i32()?,
        creations: r.i32()?,
        aversion: r.i32()?,
        ephemeral_owner: r.i64()?,
        data: r.opt_bytes()?,
        num_children: 0,
        // Filled in when the znode is inserted into a tree.
        data_hash: 0,
        acl: acl::open_shared(),
    };
    if format == ZNODE_FORMAT_V2 {
        match r.u8()? {
            ACL_OPEN => {}
            ACL_LIST => node.acl = r.acl()?.into(),
            other => return Err(Error::Corrupt(format!("znode ACL kind {other}"))),
        }
    }
    r.finish()?;
    Ok(node)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::{perms, Acl, Id};
    use crate::command::{CreateMode, Op};
    use crate::tree::Txn;

    fn sorted(t: &DataTree) -> Vec<(String, Znode)> {
        t.znodes()
            .into_iter()
            .map(|(p, n)| (p, Znode::clone(&n)))
            .collect()
    }

    #[test]
    fn tree_round_trips_with_applied_index() {
        let dir = tempfile::tempdir().unwrap();
        let mut tree = DataTree::new();
        {
            let store = TreeStore::new(super::super::open_db(dir.path()).unwrap()).unwrap();
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
                (
                    0,
                    Op::create_with_acl("/locked", vec![], CreateMode::Persistent, locked()),
                ),
                (0, Op::set_acl("/a", Acl::read_unsafe(), None)),
                (
                    0,
                    Op::create("/null", vec![], CreateMode::Persistent).with_null_data(),
                ),
                (0, Op::create("/empty", vec![], CreateMode::Persistent)),
            ];
            for (i, (session, op)) in ops.iter().enumerate() {
                tree.apply(txn(i as i64 + 1, *session), op).unwrap();
            }
            let (dirty, dirty_sessions) = tree.take_dirty();
            let mut batch = WriteBatch::default();
            store.write_into(&mut batch, &tree, (&dirty, &dirty_sessions), 10);
            store.commit(batch).unwrap();
        }
        let store = TreeStore::new(super::super::open_db(dir.path()).unwrap()).unwrap();
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
        assert_eq!(loaded.get("/locked").unwrap().acl(), locked());
        assert_eq!(loaded.get("/a").unwrap().acl(), Acl::read_unsafe());
        assert_eq!(loaded.get("/a").unwrap().stat().aversion, 1);
        assert_eq!(loaded.get("/null").unwrap().data, None);
        assert_eq!(loaded.get("/empty").unwrap().data, Some(Vec::new()));
        assert_eq!(loaded.get("/b").map(|n| n.acl().to_vec()), None);
        assert_eq!(
            loaded.get("/zookeeper/config").unwrap().acl(),
            Acl::read_unsafe()
        );
        assert_eq!(
            loaded.get("/a/0000000000").unwrap().acl(),
            Acl::open_unsafe()
        );
        assert_eq!(loaded.digest(), tree.digest());
    }

    fn locked() -> Vec<Acl> {
        vec![
            Acl::new(perms::ALL, Id::digest("alice", "pw")),
            Acl::new(perms::READ, Id::new("ip", "10.0.0.0/8")),
        ]
    }

    #[test]
    fn znode_records_hold_their_acl_and_old_records_load_open() {
        let mut node = Znode {
            data: Some(b"data".to_vec()),
            czxid: 3,
            aversion: 2,
            // Not stored: computed when a tree takes the znode.
            data_hash: 0,
            ..Znode::default()
        };
        let open = encode_znode(&node);
        assert_eq!(open.last(), Some(&ACL_OPEN), "the open ACL takes one byte");
        assert_eq!(decode_znode(&open).unwrap(), node);
        node.acl = locked().into();
        let rec = encode_znode(&node);
        assert_eq!(decode_znode(&rec).unwrap(), node);
        let null = Znode {
            data: None,
            ..node.clone()
        };
        assert_eq!(decode_znode(&encode_znode(&null)).unwrap(), null);
        for cut in 0..rec.len() {
            assert!(decode_znode(&rec[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = open.clone();
        *bad.last_mut().unwrap() = 7;
        assert!(decode_znode(&bad).is_err(), "unknown ACL kind");
        // A record of the first format (no ACL) loads with the open ACL.
        let mut v1 = open[..open.len() - 1].to_vec();
        v1[0] = ZNODE_FORMAT_V1;
        let old = decode_znode(&v1).unwrap();
        assert_eq!(old.acl(), Acl::open_unsafe());
        assert_eq!((old.data.as_deref(), old.aversion), (Some(&b"data"[..]), 2));
    }
}

#[cfg(test)]
mod snapshot_tests {
    use super::*;
    use crate::command::{CreateMode, Op};
    use crate::storage::open_db;
    use crate::tree::Txn;
    use raft::Storage as _;

    fn chunk_of(tree: &DataTree) -> Vec<u8> {
        let mut w = Writer::with_capacity(256);
        for (p, n) in tree.znodes() {
            w.u8(RECORD_ZNODE);
            w.bytes(p.as_bytes());
            w.bytes(&encode_znode(&n));
        }
        for (id, s) in tree.sessions() {
            w.u8(RECORD_SESSION);
            w.bytes(&id.to_be_bytes());
            w.bytes(&encode_session(s));
        }
        w.finish()
    }

    fn tree_with(path: &str) -> DataTree {
        let mut t = DataTree::new();
        let txn = Txn {
            zxid: 3,
            time: 1,
            session: 0,
        };
        t.apply(
            txn,
            &Op::create_with_acl(path, b"x".to_vec(), CreateMode::Persistent, acl_of(path)),
        )
        .unwrap();
        t
    }

    /// A different ACL for each path.
    fn acl_of(path: &str) -> Vec<crate::acl::Acl> {
        use crate::acl::{perms, Acl, Id};
        vec![Acl::new(perms::ALL, Id::digest(path, "pw"))]
    }

    #[test]
    fn a_staged_snapshot_is_installed_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let newer = tree_with("/new");
        {
            let db = open_db(dir.path()).unwrap();
            let store = TreeStore::new(db.clone()).unwrap();
            let mut old = tree_with("/old");
            let (dirty, sessions) = old.take_dirty();
            let mut batch = WriteBatch::default();
            store.write_into(&mut batch, &old, (&dirty, &sessions), 5);
            store.commit(batch).unwrap();
            store.clear_staging().unwrap();
            store.stage_chunk(&chunk_of(&newer)).unwrap();
            assert!(
                store.stage_chunk(&[9, 0, 0, 0, 0]).is_err(),
                "unknown record"
            );
            let mut bad = chunk_of(&newer);
            bad.truncate(bad.len() - 1);
            assert!(store.stage_chunk(&bad).is_err(), "truncated record");
            // The process dies here, before the install.
        }
        let db = open_db(dir.path()).unwrap();
        let raft = RaftStorage::open(db.clone(), &[], true).unwrap();
        let mut store = TreeStore::new(db.clone()).unwrap();
        let (tree, applied) = store.load().unwrap();
        assert_eq!(applied, 5);
        assert!(tree.get("/old").is_some() && tree.get("/new").is_none());

        store.clear_staging().unwrap();
        store.stage_chunk(&chunk_of(&newer)).unwrap();
        let cs = ConfState {
            voters: vec![1, 2, 3],
            ..ConfState::default()
        };
        let installed = store
            .install(&raft, (10, 2, &cs), None, &[(4, "h4:1".to_string())])
            .unwrap();
        assert_eq!(
            crate::storage::member_addresses(store.db()).unwrap(),
            [(4, "h4:1".to_string())]
        );
        assert!(installed.get("/new").is_some() && installed.get("/old").is_none());
        assert_eq!(installed.get("/new").unwrap().acl(), acl_of("/new"));
        assert_eq!(installed.digest(), newer.digest());
        assert_eq!(
            (raft.first_index().unwrap(), raft.last_index().unwrap()),
            (11, 10)
        );
        assert_eq!(raft.term(10).unwrap(), 2);
        drop((store, raft, db));

        let db = open_db(dir.path()).unwrap();
        let raft = RaftStorage::open(db.clone(), &[1], true).unwrap();
        let store = TreeStore::new(db).unwrap();
        let (tree, applied) = store.load().unwrap();
        assert_eq!(applied, 10);
        assert_eq!(tree.digest(), newer.digest());
        assert_eq!(tree.zxid(), 10);
        let st = raft.initial_state().unwrap();
        assert_eq!(st.conf_state.voters, vec![1, 2, 3]);
        assert_eq!((st.hard_state.commit, st.hard_state.term), (10, 2));
        assert_eq!(
            (raft.first_index().unwrap(), raft.term(10).unwrap()),
            (11, 2)
        );
    }
}
