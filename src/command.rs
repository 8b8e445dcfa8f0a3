//! What is replicated: every raft entry zkraft proposes carries one [`Command`], a header
//! (who proposed it, a request id, the proposer's clock) and an [`Op`]. The encoding is a
//! compact, versioned binary format (see `codec`).

use crate::codec::{Reader, Writer};
use crate::error::{Error, Result};

/// Format version written as the first byte of every encoded command.
const FORMAT_V1: u8 = 1;

/// How a znode is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CreateMode {
    /// A plain znode that lives until it is deleted.
    Persistent,
    /// A persistent znode whose name gets a 10-digit, monotonically increasing suffix:
    /// the parent's count of child creations (ZooKeeper's sequential nodes).
    PersistentSequential,
}

impl CreateMode {
    /// True for the sequential modes.
    pub fn is_sequential(self) -> bool {
        matches!(self, CreateMode::PersistentSequential)
    }
    fn tag(self) -> u8 {
        match self {
            CreateMode::Persistent => 0,
            CreateMode::PersistentSequential => 2,
        }
    }
    fn from_tag(tag: u8) -> Result<Self> {
        match tag {
            0 => Ok(CreateMode::Persistent),
            2 => Ok(CreateMode::PersistentSequential),
            t => Err(Error::Corrupt(format!("unknown create mode {t}"))),
        }
    }
}

/// One operation on the tree. `Check` only has meaning inside a `Multi`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Create a znode.
    Create {
        /// Path (for sequential modes, the prefix the suffix is appended to).
        path: String,
        /// Initial data.
        data: Vec<u8>,
        /// Create mode.
        mode: CreateMode,
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
        /// New data.
        data: Vec<u8>,
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
    /// All-or-nothing list of operations, applied in order.
    Multi(Vec<Op>),
}

impl Op {
    /// Convenience constructor for [`Op::Create`].
    pub fn create(path: impl Into<String>, data: impl Into<Vec<u8>>, mode: CreateMode) -> Op {
        Op::Create {
            path: path.into(),
            data: data.into(),
            mode,
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
            data: data.into(),
            version,
        }
    }
    /// Convenience constructor for [`Op::Check`].
    pub fn check(path: impl Into<String>, version: Option<i32>) -> Op {
        Op::Check {
            path: path.into(),
            version,
        }
    }

    fn encode_into(&self, w: &mut Writer) {
        match self {
            Op::Create { path, data, mode } => {
                w.u8(1);
                w.str(path);
                w.bytes(data);
                w.u8(mode.tag());
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
                w.bytes(data);
                w.i32(version.unwrap_or(-1));
            }
            Op::Check { path, version } => {
                w.u8(4);
                w.str(path);
                w.i32(version.unwrap_or(-1));
            }
            Op::Multi(ops) => {
                w.u8(5);
                w.u32(ops.len() as u32);
                for op in ops {
                    op.encode_into(w);
                }
            }
        }
    }

    fn decode_from(r: &mut Reader<'_>, depth: u32) -> Result<Op> {
        let version = |v: i32| if v == -1 { None } else { Some(v) };
        Ok(match r.u8()? {
            1 => Op::Create {
                path: r.str()?,
                data: r.bytes()?,
                mode: CreateMode::from_tag(r.u8()?)?,
            },
            2 => Op::Delete {
                path: r.str()?,
                version: version(r.i32()?),
            },
            3 => Op::SetData {
                path: r.str()?,
                data: r.bytes()?,
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
            t => return Err(Error::Corrupt(format!("unknown op tag {t}"))),
        })
    }

    /// Total size of the data payloads in this op.
    pub(crate) fn data_len(&self) -> usize {
        match self {
            Op::Create { data, .. } | Op::SetData { data, .. } => data.len(),
            Op::Multi(ops) => ops.iter().map(Op::data_len).sum(),
            _ => 0,
        }
    }
}

/// A replicated command: an [`Op`] plus the header that makes applying it deterministic
/// (the time comes from the proposer, not from the replica's clock) and lets the proposing
/// node match the committed entry to its waiting caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// Raft id of the node that proposed the command.
    pub origin: u64,
    /// Distinguishes runs of the proposing node so that a restarted node never mistakes an
    /// entry of its previous run for one of its own requests.
    pub incarnation: u64,
    /// Request id, unique within (origin, incarnation).
    pub request_id: u64,
    /// Proposer's wall clock in milliseconds since the Unix epoch (ctime/mtime).
    pub time_ms: i64,
    /// The operation.
    pub op: Op,
}

impl Command {
    /// Encodes the command for a raft entry.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(64 + self.op.data_len());
        w.u8(FORMAT_V1);
        w.u64(self.origin);
        w.u64(self.incarnation);
        w.u64(self.request_id);
        w.i64(self.time_ms);
        self.op.encode_into(&mut w);
        w.finish()
    }

    /// Decodes a command written by [`Command::encode`].
    pub fn decode(buf: &[u8]) -> Result<Command> {
        let mut r = Reader::new(buf);
        let format = r.u8()?;
        if format != FORMAT_V1 {
            return Err(Error::Corrupt(format!("unknown command format {format}")));
        }
        let cmd = Command {
            origin: r.u64()?,
            incarnation: r.u64()?,
            request_id: r.u64()?,
            time_ms: r.i64()?,
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
            time_ms: 1_700_000_000_000,
            op: Op::Multi(vec![
                Op::create("/a", b"x".to_vec(), CreateMode::PersistentSequential),
                Op::set_data("/a", vec![], Some(3)),
                Op::check("/b", None),
                Op::delete("/c", Some(0)),
            ]),
        };
        assert_eq!(Command::decode(&cmd.encode()).unwrap(), cmd);
    }

    #[test]
    fn garbage_is_corrupt_not_panic() {
        let cmd = Command {
            origin: 1,
            incarnation: 1,
            request_id: 1,
            time_ms: 0,
            op: Op::create("/a", vec![1, 2, 3], CreateMode::Persistent),
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
        for _ in 0..4 {
            nested.u64(0);
        }
        nested.u8(5);
        nested.u32(1);
        nested.u8(5);
        nested.u32(0);
        assert!(Command::decode(&nested.finish()).is_err(), "nested multi");
    }
}
