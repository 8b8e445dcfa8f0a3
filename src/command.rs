//! What is replicated: every raft entry zkraft proposes carries one `Command`, a header
//! (who proposed it, a request id, the proposer's clock) and an [`Op`]. The encoding is a
//! compact, versioned binary format (see `codec`).

use crate::acl::{Acl, Id};
use crate::codec::{Reader, Writer};
use crate::error::{Error, Result};

/// Format version written as the first byte of every encoded command.
const FORMAT_V1: u8 = 1;
/// Adds the session order (epoch, sequence number) to the header.
const FORMAT_V2: u8 = 2;
/// Adds the caller's identities (`Command::auth`) to the header.
const FORMAT_V3: u8 = 3;

/// Op tags: a create with the open ACL keeps the first format's tag (1), one with another
/// ACL has its own.
const TAG_CREATE: u8 = 1;
const TAG_CREATE_WITH_ACL: u8 = 10;
const TAG_SET_ACL: u8 = 11;

/// How a znode is created: ZooKeeper's `CreateMode`, with the same numeric values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CreateMode {
    /// A plain znode that lives until it is deleted.
    Persistent,
    /// Deleted when the session that created it closes or expires; cannot have children.
    Ephemeral,
    /// A persistent znode whose name gets a 10-digit, monotonically increasing suffix:
    /// the parent's count of child creations (ZooKeeper's sequential nodes).
    PersistentSequential,
    /// An ephemeral znode with a sequence suffix (the building block of elections, locks
    /// and queues).
    EphemeralSequential,
    /// A container: the leader deletes it once it has had children and has none left.
    Container,
    /// A persistent znode the leader deletes once it has had no children and no change
    /// for its TTL (pass the TTL with [`Op::create_ttl`] or `create_ttl`).
    PersistentWithTtl,
    /// A sequential znode with a TTL.
    PersistentSequentialWithTtl,
}

impl CreateMode {
    /// True for the sequential modes.
    pub fn is_sequential(self) -> bool {
        matches!(
            self,
            CreateMode::PersistentSequential
                | CreateMode::EphemeralSequential
                | CreateMode::PersistentSequentialWithTtl
        )
    }
    /// True for the modes owned by a session.
    pub fn is_ephemeral(self) -> bool {
        matches!(
            self,
            CreateMode::Ephemeral | CreateMode::EphemeralSequential
        )
    }
    /// True for the modes that take a TTL.
    pub fn is_ttl(self) -> bool {
        matches!(
            self,
            CreateMode::PersistentWithTtl | CreateMode::PersistentSequentialWithTtl
        )
    }
    /// ZooKeeper's numeric value of the mode.
    pub fn to_flag(self) -> u8 {
        match self {
            CreateMode::Persistent => 0,
            CreateMode::Ephemeral => 1,
            CreateMode::PersistentSequential => 2,
            CreateMode::EphemeralSequential => 3,
            CreateMode::Container => 4,
            CreateMode::PersistentWithTtl => 5,
            CreateMode::PersistentSequentialWithTtl => 6,
        }
    }
    /// The mode for ZooKeeper's numeric value.
    pub fn from_flag(flag: u8) -> Result<Self> {
        Ok(match flag {
            0 => CreateMode::Persistent,
            1 => CreateMode::Ephemeral,
            2 => CreateMode::PersistentSequential,
            3 => CreateMode::EphemeralSequential,
            4 => CreateMode::Container,
            5 => CreateMode::PersistentWithTtl,
            6 => CreateMode::PersistentSequentialWithTtl,
            t => return Err(Error::BadArguments(format!("unknown create mode {t}"))),
        })
    }
}

/// One operation on the tree. `Check` only has meaning inside a `Multi`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Op {
    /// Create a znode.
    Create {
        /// Path (for sequential modes, the prefix the suffix is appended to).
        path: String,
        /// Initial data; `None` is no data at all (ZooKeeper's `null`), kept apart from
        /// empty data: it reads back as `None` ([`Session::get_data_or_null`](crate::Session::get_data_or_null)).
        data: Option<Vec<u8>>,
        /// Create mode.
        mode: CreateMode,
        /// Time to live in milliseconds for the TTL modes (0 otherwise).
        ttl_ms: i64,
        /// The new znode's ACL (before expansion: `auth` entries become the caller's
        /// authenticated ids when applied). The constructors give
        /// [`Acl::open_unsafe`]; [`Op::create_with_acl`] another.
        acl: Vec<Acl>,
    },
    /// Delete a znode, optionally only at a given version.
    Delete {
        /// Path.
        path: String,
        /// Expected version; `None` matches any.
        version: Option<i32>,
    },
    /// Replace a znode's data, optionally only at a given version.
    SetData {
        /// Path.
        path: String,
        /// New data; `None` is no data at all (ZooKeeper's `null`).
        data: Option<Vec<u8>>,
        /// Expected version; `None` matches any.
        version: Option<i32>,
    },
    /// Assert that a znode exists (and has the given version).
    Check {
        /// Path.
        path: String,
        /// Expected version; `None` matches any.
        version: Option<i32>,
    },
    /// Replace a znode's ACL, optionally only at a given ACL version (`aversion`). Needs
    /// ADMIN permission on the znode. Not allowed inside a multi (as in ZooKeeper).
    SetAcl {
        /// Path.
        path: String,
        /// The new ACL (`auth` entries become the caller's authenticated ids).
        acl: Vec<Acl>,
        /// Expected ACL version (the stat's `aversion`); `None` matches any.
        version: Option<i32>,
    },
    /// All-or-nothing list of operations, applied in order.
    Multi(Vec<Op>),
    /// Open a session (its id is the zxid of this entry).
    CreateSession {
        /// Session timeout in milliseconds, already clamped by the proposer.
        timeout_ms: i32,
        /// Secret that a client must present to re-attach to the session (wire protocol).
        password: Vec<u8>,
        /// Node that hosts (heartbeats) the session.
        host: u64,
    },
    /// Close a session and delete its ephemeral znodes, in one entry.
    CloseSession {
        /// The session.
        session: i64,
        /// True when the leader expires it, false when its owner closes it.
        expired: bool,
    },
    /// Delete an empty container or an expired TTL znode (proposed by the leader's reaper;
    /// re-checked when applied).
    Reap {
        /// The container or TTL znode.
        path: String,
    },
    /// Move a session to another host, if `password` is the session's (ZooKeeper's
    /// reconnect to another server). The new host heartbeats it from then on; requests
    /// from the old host are refused with `SessionMoved`.
    MoveSession {
        /// The session.
        session: i64,
        /// Its password.
        password: Vec<u8>,
        /// The node that hosts it from now on.
        host: u64,
    },
}

impl Op {
    /// Convenience constructor for [`Op::Create`], with the open ACL
    /// ([`Acl::open_unsafe`]).
    pub fn create(path: impl Into<String>, data: impl Into<Vec<u8>>, mode: CreateMode) -> Op {
        Op::create_with_acl(path, data, mode, Acl::open_unsafe())
    }
    /// [`Op::Create`] with the ACL `acl` (see [`crate::acl`]). Needs CREATE permission on
    /// the parent; an unacceptable ACL is [`Error::InvalidAcl`].
    ///
    /// ```
    /// use zkraft::{acl::perms, Acl, CreateMode, Id, Op};
    /// let acl = vec![Acl::new(perms::ALL, Id::digest("alice", "pw")), Acl::read_unsafe()[0].clone()];
    /// let op = Op::create_with_acl("/cfg", b"v1".to_vec(), CreateMode::Persistent, acl);
    /// ```
    pub fn create_with_acl(
        path: impl Into<String>,
        data: impl Into<Vec<u8>>,
        mode: CreateMode,
        acl: Vec<Acl>,
    ) -> Op {
        Op::Create {
            path: path.into(),
            data: Some(data.into()),
            mode,
            ttl_ms: 0,
            acl,
        }
    }
    /// [`Op::Create`] for the TTL modes.
    pub fn create_ttl(
        path: impl Into<String>,
        data: impl Into<Vec<u8>>,
        mode: CreateMode,
        ttl: std::time::Duration,
    ) -> Op {
        Op::Create {
            path: path.into(),
            data: Some(data.into()),
            mode,
            ttl_ms: ttl.as_millis().min(i64::MAX as u128) as i64,
            acl: Acl::open_unsafe(),
        }
    }
    /// Convenience constructor for [`Op::Delete`].
    pub fn delete(path: impl Into<String>, version: Option<i32>) -> Op {
        Op::Delete {
            path: path.into(),
            version,
        }
    }
    /// Convenience constructor for [`Op::SetData`].
    pub fn set_data(path: impl Into<String>, data: impl Into<Vec<u8>>, version: Option<i32>) -> Op {
        Op::SetData {
            path: path.into(),
            data: Some(data.into()),
            version,
        }
    }
    /// The same create or set_data with no data at all (ZooKeeper's `null`, which Java's
    /// `create(path, null, …)` sends), kept apart from empty data; other operations are
    /// returned unchanged.
    ///
    /// ```
    /// use zkraft::{CreateMode, Node, Op};
    /// let dir = tempfile::tempdir().unwrap();
    /// let node = Node::builder(1).data_dir(dir.path()).start().unwrap();
    /// node.multi(vec![Op::create("/none", [], CreateMode::Persistent).with_null_data()]).unwrap();
    /// node.create("/empty", b"", CreateMode::Persistent).unwrap();
    /// assert_eq!(node.get_data_or_null("/none").unwrap().0, None);
    /// assert_eq!(node.get_data_or_null("/empty").unwrap().0, Some(Vec::new()));
    /// // get_data reads both as empty.
    /// assert_eq!(node.get_data("/none").unwrap().0, b"");
    /// ```
    pub fn with_null_data(mut self) -> Op {
        if let Op::Create { data, .. } | Op::SetData { data, .. } = &mut self {
            *data = None;
        }
        self
    }
    /// Convenience constructor for [`Op::Check`].
    pub fn check(path: impl Into<String>, version: Option<i32>) -> Op {
        Op::Check {
            path: path.into(),
            version,
        }
    }
    /// Convenience constructor for [`Op::SetAcl`].
    pub fn set_acl(path: impl Into<String>, acl: Vec<Acl>, version: Option<i32>) -> Op {
        Op::SetAcl {
            path: path.into(),
            acl,
            version,
        }
    }

    fn encode_into(&self, w: &mut Writer) {
        match self {
            Op::Create {
                path,
                data,
                mode,
                ttl_ms,
                acl,
            } => {
                let open = crate::acl::is_open(acl);
                w.u8(if open {
                    TAG_CREATE
                } else {
                    TAG_CREATE_WITH_ACL
                });
                w.str(path);
                w.opt_bytes(data.as_deref());
                w.u8(mode.to_flag());
                w.i64(*ttl_ms);
                if !open {
                    w.acl(acl);
                }
            }
            Op::Delete { path, version } => {
                w.u8(2);
                w.str(path);
                w.i32(version.unwrap_or(-1));
            }
            Op::SetData {
                path,
                data,
                version,
            } => {
                w.u8(3);
                w.str(path);
                w.opt_bytes(data.as_deref());
                w.i32(version.unwrap_or(-1));
            }
            Op::Check { path, version } => {
                w.u8(4);
                w.str(path);
                w.i32(version.unwrap_or(-1));
            }
            Op::SetAcl { path, acl, version } => {
                w.u8(TAG_SET_ACL);
                w.str(path);
                w.acl(acl);
                w.i32(version.unwrap_or(-1));
            }
            Op::Multi(ops) => {
                w.u8(5);
                w.u32(ops.len() as u32);
                for op in ops {
                    op.encode_into(w);
                }
            }
            Op::CreateSession {
                timeout_ms,
                password,
                host,
            } => {
                w.u8(6);
                w.i32(*timeout_ms);
                w.bytes(password);
                w.u64(*host);
            }
            Op::CloseSession { session, expired } => {
                w.u8(7);
                w.i64(*session);
                w.u8(u8::from(*expired));
            }
            Op::Reap { path } => {
                w.u8(8);
                w.str(path);
            }
            Op::MoveSession {
                session,
                password,
                host,
            } => {
                w.u8(9);
                w.i64(*session);
                w.bytes(password);
                w.u64(*host);
            }
        }
    }

    fn decode_from(r: &mut Reader<'_>, depth: u32) -> Result<Op> {
        let version = |v: i32| if v == -1 { None } else { Some(v) };
        let tag = r.u8()?;
        Ok(match tag {
            TAG_CREATE | TAG_CREATE_WITH_ACL => Op::Create {
                path: r.str()?,
                data: r.opt_bytes()?,
                mode: CreateMode::from_flag(r.u8()?).map_err(|e| Error::Corrupt(e.to_string()))?,
                ttl_ms: r.i64()?,
                acl: if tag == TAG_CREATE {
                    Acl::open_unsafe()
                } else {
                    r.acl()?
                },
            },
            2 => Op::Delete {
                path: r.str()?,
                version: version(r.i32()?),
            },
            3 => Op::SetData {
                path: r.str()?,
                data: r.opt_bytes()?,
                version: version(r.i32()?),
            },
            4 => Op::Check {
                path: r.str()?,
                version: version(r.i32()?),
            },
            5 if depth == 0 => {
                let n = r.u32()? as usize;
                let mut ops = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    ops.push(Op::decode_from(r, depth + 1)?);
                }
                Op::Multi(ops)
            }
            6 => Op::CreateSession {
                timeout_ms: r.i32()?,
                password: r.bytes()?,
                host: r.u64()?,
            },
            7 => Op::CloseSession {
                session: r.i64()?,
                expired: r.u8()? != 0,
            },
            8 => Op::Reap { path: r.str()? },
            TAG_SET_ACL => Op::SetAcl {
                path: r.str()?,
                acl: r.acl()?,
                version: version(r.i32()?),
            },
            9 => Op::MoveSession {
                session: r.i64()?,
                password: r.bytes()?,
                host: r.u64()?,
            },
            t => return Err(Error::Corrupt(format!("unknown op tag {t}"))),
        })
    }

    /// Total size of the data payloads in this op.
    pub(crate) fn data_len(&self) -> usize {
        match self {
            Op::Create { data, .. } | Op::SetData { data, .. } => data.as_ref().map_or(0, Vec::len),
            Op::Multi(ops) => ops.iter().map(Op::data_len).sum(),
            _ => 0,
        }
    }

    /// The size of this request as ZooKeeper's client protocol encodes it (jute): the
    /// request header, then the record — strings and buffers with 4-byte length prefixes,
    /// the default open ACL on creates, a 9-byte header before every operation of a multi
    /// and one after the last. `Config::max_request_size` is checked against this, so a
    /// request is accepted or refused exactly as a ZooKeeper server with the same
    /// `jute.maxbuffer` would (ZooKeeper compares its frame length, which is this size).
    /// Computed without encoding anything: cheap even for a refused 100 MiB request.
    pub fn request_size(&self) -> usize {
        /// `RequestHeader`: xid and type.
        const HEADER: usize = 8;
        HEADER.saturating_add(self.record_size())
    }

    fn record_size(&self) -> usize {
        /// A jute `ustring` or `buffer`: a 4-byte length, then the bytes.
        fn string(s: usize) -> usize {
            s.saturating_add(4)
        }
        /// A jute `vector<ACL>`: a 4-byte count, then each entry's perms, scheme and id.
        fn acl_size(acl: &[Acl]) -> usize {
            acl.iter().fold(4usize, |n, a| {
                n.saturating_add(4)
                    .saturating_add(string(a.id.scheme.len()))
                    .saturating_add(string(a.id.id.len()))
            })
        }
        /// `MultiHeader`: type, done, err.
        const MULTI_HEADER: usize = 4 + 1 + 4;
        match self {
            Op::Create {
                path,
                data,
                mode,
                acl,
                ..
            } => {
                let ttl = if mode.is_ttl() { 8 } else { 0 };
                string(path.len())
                    .saturating_add(string(data.as_ref().map_or(0, Vec::len)))
                    .saturating_add(acl_size(acl))
                    .saturating_add(4 + ttl)
            }
            // SetACLRequest: path, ACL, version.
            Op::SetAcl { path, acl, .. } => string(path.len())
                .saturating_add(acl_size(acl))
                .saturating_add(4),
            Op::Delete { path, .. } | Op::Check { path, .. } => string(path.len()) + 4,
            Op::SetData { path, data, .. } => string(path.len())
                .saturating_add(string(data.as_ref().map_or(0, Vec::len)))
                .saturating_add(4),
            Op::Multi(ops) => ops.iter().fold(MULTI_HEADER, |n, op| {
                n.saturating_add(MULTI_HEADER)
                    .saturating_add(op.record_size())
            }),
            // ConnectRequest: protocol version, last zxid, timeout, session id, password,
            // read-only flag.
            Op::CreateSession { password, .. } | Op::MoveSession { password, .. } => {
                string(password.len()) + 4 + 8 + 4 + 8 + 1
            }
            Op::CloseSession { .. } => 0,
            Op::Reap { path } => string(path.len()),
        }
    }
}

/// A replicated command: an [`Op`] plus the header that makes applying it deterministic
/// (the time comes from the proposer, not from the replica's clock) and lets the proposing
/// node match the committed entry to its waiting caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Command {
    /// Raft id of the node that proposed the command.
    pub origin: u64,
    /// Distinguishes runs of the proposing node so that a restarted node never mistakes an
    /// entry of its previous run for one of its own requests.
    pub incarnation: u64,
    /// Request id, unique within (origin, incarnation).
    pub request_id: u64,
    /// Session the request belongs to (0: none, e.g. the node's own sessionless API and
    /// the leader's housekeeping).
    pub session: i64,
    /// Proposer's wall clock in milliseconds since the Unix epoch (ctime/mtime).
    pub time_ms: i64,
    /// The session order: the hosting node's epoch for the session and the request's
    /// number within it, from 1. `(0, 0)`: unordered (no session, or housekeeping). See
    /// `DataTree::apply_ordered`.
    pub order: (u64, u64),
    /// The identities of the caller (its session's authenticated ids; `super:` for the
    /// node's own sessionless API), against which the state machine checks ACLs. Not
    /// checked for housekeeping (sessions, reaping). Commands of the first two formats
    /// have none.
    pub auth: Vec<Id>,
    /// The operation.
    pub op: Op,
}

impl Command {
    /// Encodes the command for a raft entry.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(96 + self.op.data_len());
        w.u8(FORMAT_V3);
        w.u64(self.origin);
        w.u64(self.incarnation);
        w.u64(self.request_id);
        w.i64(self.session);
        w.i64(self.time_ms);
        w.u64(self.order.0);
        w.u64(self.order.1);
        w.ids(&self.auth);
        self.op.encode_into(&mut w);
        w.finish()
    }

    /// Decodes a command written by [`Command::encode`].
    pub fn decode(buf: &[u8]) -> Result<Command> {
        let mut r = Reader::new(buf);
        let format = r.u8()?;
        if !(FORMAT_V1..=FORMAT_V3).contains(&format) {
            return Err(Error::Corrupt(format!("unknown command format {format}")));
        }
        let (origin, incarnation, request_id) = (r.u64()?, r.u64()?, r.u64()?);
        let (session, time_ms) = (r.i64()?, r.i64()?);
        let order = if format >= FORMAT_V2 {
            (r.u64()?, r.u64()?)
        } else {
            (0, 0)
        };
        let auth = if format >= FORMAT_V3 {
            r.ids()?
        } else {
            Vec::new()
        };
        let cmd = Command {
            origin,
            incarnation,
            request_id,
            session,
            time_ms,
            order,
            auth,
            op: Op::decode_from(&mut r, 0)?,
        };
        r.finish()?;
        Ok(cmd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip() {
        let cmd = Command {
            origin: 3,
            incarnation: 99,
            request_id: 42,
            session: 7,
            time_ms: 1_700_000_000_000,
            order: (3, 17),
            auth: vec![Id::digest("u", "p"), Id::new("ip", "10.0.0.1")],
            op: Op::Multi(vec![
                Op::create("/a", b"x".to_vec(), CreateMode::PersistentSequential),
                Op::create_ttl(
                    "/t",
                    vec![],
                    CreateMode::PersistentWithTtl,
                    std::time::Duration::from_secs(5),
                ),
                Op::set_data("/a", vec![], Some(3)),
                Op::set_data("/a", vec![], None).with_null_data(),
                Op::create("/n", vec![], CreateMode::Ephemeral).with_null_data(),
                Op::check("/b", None),
                Op::delete("/c", Some(0)),
                Op::create_with_acl(
                    "/acl",
                    vec![],
                    CreateMode::Persistent,
                    vec![
                        Acl::new(crate::acl::perms::READ, Id::anyone()),
                        Acl::new(crate::acl::perms::ALL, Id::digest("u", "p")),
                    ],
                ),
            ]),
        };
        assert_eq!(Command::decode(&cmd.encode()).unwrap(), cmd);
        for op in [
            Op::CreateSession {
                timeout_ms: 4000,
                password: vec![1; 16],
                host: 2,
            },
            Op::CloseSession {
                session: 9,
                expired: true,
            },
            Op::Reap { path: "/c".into() },
            Op::MoveSession {
                session: 11,
                password: vec![3; 16],
                host: 2,
            },
            Op::set_acl("/a", Acl::creator_all(), Some(4)),
            Op::set_acl("/a", vec![], None),
        ] {
            let cmd = Command { op, ..cmd.clone() };
            assert_eq!(Command::decode(&cmd.encode()).unwrap(), cmd);
        }
        // A command of the first format (no order) still decodes, unordered.
        let mut v1 = Writer::default();
        v1.u8(FORMAT_V1);
        for v in [3u64, 99, 42, 7, 5] {
            v1.u64(v);
        }
        Op::check("/b", None).encode_into(&mut v1);
        let old = Command::decode(&v1.finish()).unwrap();
        assert_eq!((old.request_id, old.order), (42, (0, 0)));
        assert!(old.auth.is_empty());
        // The second format (order, no identities) decodes with no identities, and its
        // creates with the open ACL.
        let mut v2 = Writer::default();
        v2.u8(FORMAT_V2);
        for v in [3u64, 99, 42, 7, 5, 3, 17] {
            v2.u64(v);
        }
        Op::create("/a", vec![], CreateMode::Persistent).encode_into(&mut v2);
        let old = Command::decode(&v2.finish()).unwrap();
        assert_eq!((old.order, old.auth.len()), ((3, 17), 0));
        assert_eq!(old.op, Op::create("/a", vec![], CreateMode::Persistent));
        // A create with the open ACL is encoded as in the first formats.
        let mut open = Writer::default();
        Op::create("/a", vec![], CreateMode::Persistent).encode_into(&mut open);
        assert_eq!(open.finish()[0], TAG_CREATE);
    }

    #[test]
    fn request_sizes_are_zookeepers_jute_sizes() {
        // Sizes of the same requests as ZooKeeper 3.8's client serializes them
        // (RequestHeader + record), path "/a" and 3 data bytes.
        let create = Op::create("/a", vec![1, 2, 3], CreateMode::Persistent);
        assert_eq!(create.request_size(), 8 + (4 + 2) + (4 + 3) + 27 + 4);
        let ttl = Op::create_ttl(
            "/a",
            vec![1, 2, 3],
            CreateMode::PersistentWithTtl,
            std::time::Duration::from_secs(1),
        );
        assert_eq!(ttl.request_size(), create.request_size() + 8);
        assert_eq!(Op::delete("/a", None).request_size(), 8 + 6 + 4);
        assert_eq!(Op::check("/a", Some(1)).request_size(), 8 + 6 + 4);
        assert_eq!(
            Op::set_data("/a", vec![1, 2, 3], None).request_size(),
            8 + 6 + 7 + 4
        );
        // An ACL entry: perms, scheme and id as strings; setACL: path, ACL, version.
        let acl = vec![Acl::new(1, Id::new("ip", "1.2.3.4"))];
        let with_acl =
            Op::create_with_acl("/a", vec![1, 2, 3], CreateMode::Persistent, acl.clone());
        assert_eq!(
            with_acl.request_size(),
            8 + (4 + 2) + (4 + 3) + (4 + 4 + 6 + 11) + 4
        );
        assert_eq!(
            Op::set_acl("/a", acl, None).request_size(),
            8 + 6 + (4 + 4 + 6 + 11) + 4
        );
        let multi = Op::Multi(vec![Op::check("/a", None), Op::delete("/a", None)]);
        assert_eq!(multi.request_size(), 8 + 9 + (9 + 10) + (9 + 10));
        // Never overflows, whatever the lengths.
        assert!(Op::Multi(vec![]).request_size() > 0);
    }

    #[test]
    fn garbage_is_corrupt_not_panic() {
        let cmd = Command {
            origin: 1,
            incarnation: 1,
            request_id: 1,
            session: 0,
            time_ms: 0,
            order: (0, 0),
            auth: vec![Id::super_user()],
            op: Op::create_with_acl(
                "/a",
                vec![1, 2, 3],
                CreateMode::Persistent,
                Acl::read_unsafe(),
            ),
        };
        let buf = cmd.encode();
        for cut in 0..buf.len() {
            assert!(Command::decode(&buf[..cut]).is_err());
        }
        let mut bad = buf.clone();
        bad[0] = 9;
        assert!(Command::decode(&bad).is_err());
        let mut nested = Writer::default();
        nested.u8(FORMAT_V1);
        for _ in 0..5 {
            nested.u64(0);
        }
        nested.u8(5);
        nested.u32(1);
        nested.u8(5);
        nested.u32(0);
        assert!(Command::decode(&nested.finish()).is_err(), "nested multi");
        // A hostile count of identities or ACL entries is refused, not allocated.
        let mut huge = Writer::default();
        huge.u8(FORMAT_V3);
        for _ in 0..7 {
            huge.u64(0);
        }
        huge.u32(u32::MAX);
        assert!(Command::decode(&huge.finish()).is_err());
        let mut huge = Writer::default();
        huge.u8(TAG_SET_ACL);
        huge.str("/a");
        huge.u32(u32::MAX);
        let buf = huge.finish();
        assert!(Op::decode_from(&mut Reader::new(&buf), 0).is_err());
    }
}
