//! How nodes reach each other. [`Transport`] is the seam: the node hands it [`Envelope`]s
//! addressed by node id and registers an [`Inbox`] for what arrives. [`LocalNetwork`] is the
//! in-process implementation with fault injection for tests; [`TcpTransport`] carries the
//! same envelopes ([`Envelope::encode`]) between processes and machines.

mod local;
pub mod tcp;

use std::sync::Arc;

use protobuf::Message as _;
use raft::eraftpb::Message;

pub use local::LocalNetwork;
pub use tcp::TcpTransport;

use crate::codec::{Reader, Writer};
use crate::error::{Error, Result};

/// Everything one node sends another. Raft traffic today; zkraft's own messages (session
/// heartbeats, forwarded requests) join as further variants so one connection carries all.
#[derive(Debug, Clone, PartialEq)]
pub enum Envelope {
    /// A raft-rs message.
    Raft(Message),
    /// Heartbeat for the sessions a node hosts, sent to the leader (out of the raft log).
    SessionPing {
        /// Sending node.
        from: u64,
        /// Receiving node (the leader as the sender knows it).
        to: u64,
        /// The live sessions hosted by `from`.
        sessions: Vec<i64>,
    },
    /// The leader's answer to a [`Envelope::SessionPing`]: the host's sessions were heard.
    SessionPingAck {
        /// The leader.
        from: u64,
        /// The host that pinged.
        to: u64,
    },
}

impl Envelope {
    /// The node that sent the envelope.
    pub fn from(&self) -> u64 {
        match self {
            Envelope::Raft(m) => m.from,
            Envelope::SessionPing { from, .. } | Envelope::SessionPingAck { from, .. } => *from,
        }
    }

    /// The node the envelope is addressed to.
    pub fn to(&self) -> u64 {
        match self {
            Envelope::Raft(m) => m.to,
            Envelope::SessionPing { to, .. } | Envelope::SessionPingAck { to, .. } => *to,
        }
    }

    /// Bytes for a transport that crosses process boundaries.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Envelope::Raft(m) => {
                let mut out = vec![1u8];
                out.extend(m.write_to_bytes().expect("raft messages always encode"));
                out
            }
            Envelope::SessionPing { from, to, sessions } => {
                let mut w = Writer::with_capacity(24 + 8 * sessions.len());
                w.u8(2);
                w.u64(*from);
                w.u64(*to);
                w.u32(sessions.len() as u32);
                for s in sessions {
                    w.i64(*s);
                }
                w.finish()
            }
            Envelope::SessionPingAck { from, to } => {
                let mut w = Writer::with_capacity(17);
                w.u8(3);
                w.u64(*from);
                w.u64(*to);
                w.finish()
            }
        }
    }

    /// Parses bytes written by [`Envelope::encode`].
    pub fn decode(buf: &[u8]) -> Result<Envelope> {
        match buf.first() {
            Some(1) => Message::parse_from_bytes(&buf[1..])
                .map(Envelope::Raft)
                .map_err(|e| Error::Corrupt(format!("raft message: {e}"))),
            Some(2) => {
                let mut r = Reader::new(&buf[1..]);
                let from = r.u64()?;
                let to = r.u64()?;
                let n = r.u32()? as usize;
                let mut sessions = Vec::with_capacity(n.min(4096));
                for _ in 0..n {
                    sessions.push(r.i64()?);
                }
                r.finish()?;
                Ok(Envelope::SessionPing { from, to, sessions })
            }
            Some(3) => {
                let mut r = Reader::new(&buf[1..]);
                let (from, to) = (r.u64()?, r.u64()?);
                r.finish()?;
                Ok(Envelope::SessionPingAck { from, to })
            }
            Some(t) => Err(Error::Corrupt(format!("unknown envelope kind {t}"))),
            None => Err(Error::Corrupt("empty envelope".into())),
        }
    }
}

/// Where a transport delivers envelopes addressed to one node. Delivering never blocks.
///
/// Each `Inbox` made by [`Inbox::new`] is a distinct registration: clones of it are the
/// same one ([`Inbox::same`]), another `Inbox` for the same node id is not. A transport
/// releases a registration only when handed the inbox that made it, so a stale handle of a
/// stopped node can never cut off a newer node with the same id.
#[derive(Clone)]
pub struct Inbox {
    deliver: Arc<dyn Fn(Envelope) + Send + Sync>,
}

impl Inbox {
    /// Wraps a delivery function (the node's mailbox).
    pub fn new(deliver: impl Fn(Envelope) + Send + Sync + 'static) -> Inbox {
        Inbox {
            deliver: Arc::new(deliver),
        }
    }

    /// Hands an envelope to the node.
    pub fn deliver(&self, envelope: Envelope) {
        (self.deliver)(envelope)
    }

    /// True when `other` is this registration (a clone of the same `Inbox::new`).
    pub fn same(&self, other: &Inbox) -> bool {
        Arc::ptr_eq(&self.deliver, &other.deliver)
    }
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Inbox")
    }
}

/// Carries envelopes between the members of an ensemble.
///
/// Sending is fire-and-forget, like a datagram: raft retries what is lost. Implementations
/// must not block the caller for long (the caller is a node's driver).
pub trait Transport: Send + Sync + 'static {
    /// Starts delivering envelopes addressed to `id` into `inbox`. Fails if `id` is
    /// registered already.
    fn register(&self, id: u64, inbox: Inbox) -> Result<()>;
    /// Stops delivering to `id` if, and only if, `inbox` is the registration that is
    /// current for it (see [`Inbox::same`]); otherwise does nothing.
    fn deregister(&self, id: u64, inbox: &Inbox);
    /// Sends `envelope` to node `to`.
    fn send(&self, to: u64, envelope: Envelope);
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::MessageType;

    #[test]
    fn envelopes_round_trip() {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgAppend);
        m.from = 1;
        m.to = 2;
        m.term = 7;
        let env = Envelope::Raft(m);
        assert_eq!(Envelope::decode(&env.encode()).unwrap(), env);
        let ping = Envelope::SessionPing {
            from: 2,
            to: 1,
            sessions: vec![5, 9],
        };
        assert_eq!(Envelope::decode(&ping.encode()).unwrap(), ping);
        let ack = Envelope::SessionPingAck { from: 1, to: 2 };
        assert_eq!(Envelope::decode(&ack.encode()).unwrap(), ack);
        assert!(Envelope::decode(&ping.encode()[..10]).is_err());
        assert!(Envelope::decode(&[]).is_err());
        assert!(Envelope::decode(&[9, 1]).is_err());
    }
}
