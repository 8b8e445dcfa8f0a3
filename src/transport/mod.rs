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

/// A raft-rs message, opaque outside the crate: a transport carries it (as bytes through
/// [`Envelope::encode`] / [`Envelope::decode`]) without looking inside, and no raft or
/// protobuf type is in the transport's public signatures.
#[derive(Debug, Clone, PartialEq)]
pub struct RaftMessage(pub(crate) Message);

/// Everything one node sends another. Raft traffic, and zkraft's own messages (session
/// heartbeats, snapshot chunks) as further variants so one connection carries all. A
/// transport routes it by [`Envelope::from`] / [`Envelope::to`] and carries it as bytes.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Envelope {
    /// A raft-rs message.
    Raft(RaftMessage),
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
    /// One bounded piece of a snapshot, streamed from the leader to a follower behind its
    /// compacted log. The raft `MsgSnapshot` itself follows the last chunk.
    SnapshotChunk {
        /// The leader.
        from: u64,
        /// The follower.
        to: u64,
        /// Which transfer this chunk belongs to.
        transfer: u64,
        /// Position of the chunk in the transfer, from 0.
        seq: u32,
        /// Whether this is the last chunk.
        last: bool,
        /// The applied index the snapshot holds.
        index: u64,
        /// Encoded records (znodes and sessions).
        data: Vec<u8>,
    },
    /// The follower's answer to a [`Envelope::SnapshotChunk`]: staged, or refused (the
    /// leader then abandons the transfer and raft retries later).
    SnapshotAck {
        /// The follower.
        from: u64,
        /// The leader.
        to: u64,
        /// The transfer.
        transfer: u64,
        /// The chunk answered.
        seq: u32,
        /// Whether the chunk was staged.
        ok: bool,
    },
    /// The leader's refusal of a configuration change a member forwarded to it (raft-rs
    /// would drop it without a word): another change is not applied yet, or the change
    /// removes the leader, which first hands its leadership over — the member then
    /// proposes it again to the next leader.
    ConfChangeRefused {
        /// The leader.
        from: u64,
        /// The member that proposed the change.
        to: u64,
        /// The refused entry's context (who proposed it, and which request).
        context: Vec<u8>,
        /// Whether to propose it again once another leader is known.
        retry: bool,
    },
}

impl Envelope {
    /// The node that sent the envelope.
    pub fn from(&self) -> u64 {
        match self {
            Envelope::Raft(RaftMessage(m)) => m.from,
            Envelope::SessionPing { from, .. }
            | Envelope::SessionPingAck { from, .. }
            | Envelope::SnapshotChunk { from, .. }
            | Envelope::SnapshotAck { from, .. }
            | Envelope::ConfChangeRefused { from, .. } => *from,
        }
    }

    /// The node the envelope is addressed to.
    pub fn to(&self) -> u64 {
        match self {
            Envelope::Raft(RaftMessage(m)) => m.to,
            Envelope::SessionPing { to, .. }
            | Envelope::SessionPingAck { to, .. }
            | Envelope::SnapshotChunk { to, .. }
            | Envelope::SnapshotAck { to, .. }
            | Envelope::ConfChangeRefused { to, .. } => *to,
        }
    }

    /// Bytes for a transport that crosses process boundaries.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Envelope::Raft(RaftMessage(m)) => {
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
            Envelope::SnapshotChunk {
                from,
                to,
                transfer,
                seq,
                last,
                index,
                data,
            } => {
                let mut w = Writer::with_capacity(48 + data.len());
                w.u8(4);
                w.u64(*from);
                w.u64(*to);
                w.u64(*transfer);
                w.u32(*seq);
                w.u8(u8::from(*last));
                w.u64(*index);
                w.bytes(data);
                w.finish()
            }
            Envelope::SnapshotAck {
                from,
                to,
                transfer,
                seq,
                ok,
            } => {
                let mut w = Writer::with_capacity(32);
                w.u8(5);
                w.u64(*from);
                w.u64(*to);
                w.u64(*transfer);
                w.u32(*seq);
                w.u8(u8::from(*ok));
                w.finish()
            }
            Envelope::ConfChangeRefused {
                from,
                to,
                context,
                retry,
            } => {
                let mut w = Writer::with_capacity(32 + context.len());
                w.u8(6);
                w.u64(*from);
                w.u64(*to);
                w.bytes(context);
                w.u8(u8::from(*retry));
                w.finish()
            }
        }
    }

    /// Parses bytes written by [`Envelope::encode`].
    pub fn decode(buf: &[u8]) -> Result<Envelope> {
        match buf.first() {
            Some(1) => Message::parse_from_bytes(&buf[1..])
                .map(|m| Envelope::Raft(RaftMessage(m)))
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
            Some(4) => {
                let mut r = Reader::new(&buf[1..]);
                let env = Envelope::SnapshotChunk {
                    from: r.u64()?,
                    to: r.u64()?,
                    transfer: r.u64()?,
                    seq: r.u32()?,
                    last: flag(r.u8()?)?,
                    index: r.u64()?,
                    data: r.bytes()?,
                };
                r.finish()?;
                Ok(env)
            }
            Some(5) => {
                let mut r = Reader::new(&buf[1..]);
                let env = Envelope::SnapshotAck {
                    from: r.u64()?,
                    to: r.u64()?,
                    transfer: r.u64()?,
                    seq: r.u32()?,
                    ok: flag(r.u8()?)?,
                };
                r.finish()?;
                Ok(env)
            }
            Some(6) => {
                let mut r = Reader::new(&buf[1..]);
                let env = Envelope::ConfChangeRefused {
                    from: r.u64()?,
                    to: r.u64()?,
                    context: r.bytes()?,
                    retry: flag(r.u8()?)?,
                };
                r.finish()?;
                Ok(env)
            }
            Some(t) => Err(Error::Corrupt(format!("unknown envelope kind {t}"))),
            None => Err(Error::Corrupt("empty envelope".into())),
        }
    }
}

fn flag(b: u8) -> Result<bool> {
    match b {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(Error::Corrupt(format!("flag byte {other}"))),
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
    unreachable: Option<Arc<dyn Fn(u64) + Send + Sync>>,
    lost: Option<Arc<dyn Fn(u64) + Send + Sync>>,
}

impl Inbox {
    /// Wraps a delivery function (the node's mailbox).
    pub fn new(deliver: impl Fn(Envelope) + Send + Sync + 'static) -> Inbox {
        Inbox {
            deliver: Arc::new(deliver),
            unreachable: None,
            lost: None,
        }
    }

    /// Adds where the transport reports a peer it could not reach (raft-rs's
    /// `report_unreachable`: the leader stops streaming appends to it and probes instead).
    pub fn on_unreachable(mut self, report: impl Fn(u64) + Send + Sync + 'static) -> Inbox {
        self.unreachable = Some(Arc::new(report));
        self
    }

    /// Adds where the transport reports a peer whose process looks gone: the other end
    /// closed or reset its connection, or nothing listens at its address any more. A hint,
    /// not a proof (a live peer may also reconnect): the node may start a pre-vote at once
    /// when it is the leader that went, instead of waiting out the election timeout.
    pub fn on_peer_lost(mut self, report: impl Fn(u64) + Send + Sync + 'static) -> Inbox {
        self.lost = Some(Arc::new(report));
        self
    }

    /// Tells the node that `peer`'s connection was closed or reset by the other end, or
    /// refused: its process may be gone.
    pub fn peer_lost(&self, peer: u64) {
        if let Some(report) = &self.lost {
            report(peer)
        }
    }

    /// Hands an envelope to the node.
    pub fn deliver(&self, envelope: Envelope) {
        (self.deliver)(envelope)
    }

    /// Tells the node that an envelope for `peer` could not be sent (no connection, or
    /// its queue is full).
    pub fn unreachable(&self, peer: u64) {
        if let Some(report) = &self.unreachable {
            report(peer)
        }
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

/// Bytes exchanged with one peer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerTraffic {
    /// The peer's id.
    pub id: u64,
    /// Bytes written to it (frames and their length prefixes).
    pub sent_bytes: u64,
    /// Bytes read from it.
    pub received_bytes: u64,
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
    /// Sends `envelopes` to node `to`, in their order: everything one driver round has
    /// for that peer, so a transport can put it on the wire together and at once. By
    /// default each is [`Transport::send`] in turn.
    fn send_all(&self, to: u64, envelopes: Vec<Envelope>) {
        for envelope in envelopes {
            self.send(to, envelope);
        }
    }
    /// A configuration change added member `id`, reachable at `addr` (the address given
    /// to [`Node::add_member`](crate::Node::add_member)); also called at start for every
    /// member an earlier change added. Transports that need no addresses ignore it.
    fn peer_added(&self, id: u64, addr: &str) -> Result<()> {
        let _ = (id, addr);
        Ok(())
    }
    /// A configuration change removed member `id`: stop reaching it.
    fn peer_removed(&self, id: u64) {
        let _ = id;
    }
    /// Bytes sent to and received from each peer so far, for
    /// [`Node::metrics`](crate::Node::metrics). By default none are counted.
    fn peer_traffic(&self) -> Vec<PeerTraffic> {
        Vec::new()
    }
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
        let env = Envelope::Raft(RaftMessage(m));
        assert_eq!(Envelope::decode(&env.encode()).unwrap(), env);
        let ping = Envelope::SessionPing {
            from: 2,
            to: 1,
            sessions: vec![5, 9],
        };
        assert_eq!(Envelope::decode(&ping.encode()).unwrap(), ping);
        let ack = Envelope::SessionPingAck { from: 1, to: 2 };
        assert_eq!(Envelope::decode(&ack.encode()).unwrap(), ack);
        let chunk = Envelope::SnapshotChunk {
            from: 1,
            to: 3,
            transfer: 77,
            seq: 4,
            last: true,
            index: 1234,
            data: vec![1, 2, 3],
        };
        assert_eq!(Envelope::decode(&chunk.encode()).unwrap(), chunk);
        let sack = Envelope::SnapshotAck {
            from: 3,
            to: 1,
            transfer: 77,
            seq: 4,
            ok: false,
        };
        assert_eq!(Envelope::decode(&sack.encode()).unwrap(), sack);
        let refused = Envelope::ConfChangeRefused {
            from: 1,
            to: 2,
            context: vec![9; 32],
            retry: true,
        };
        assert_eq!(Envelope::decode(&refused.encode()).unwrap(), refused);
        let mut bad = sack.encode();
        *bad.last_mut().unwrap() = 7;
        assert!(Envelope::decode(&bad).is_err(), "a flag is 0 or 1");
        assert!(Envelope::decode(&ping.encode()[..10]).is_err());
        assert!(Envelope::decode(&[]).is_err());
        assert!(Envelope::decode(&[9, 1]).is_err());
    }
}
