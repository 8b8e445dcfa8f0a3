//! Snapshot transfer between members: the leader streams its state to a follower behind
//! the compacted log in bounded chunks; the follower stages them and installs the result
//! atomically.
//!
//! raft-rs hands the driver a `MsgSnapshot` carrying only metadata. Instead of sending it,
//! the leader's driver starts an [`Outgoing`] transfer on its own thread: it takes a
//! RocksDB snapshot, sends the records as [`Envelope::SnapshotChunk`]s with at most
//! [`WINDOW`] chunks unacknowledged (so neither side ever holds more than a few chunks in
//! memory, however large the tree), and once the follower has staged the last one, sends
//! the `MsgSnapshot` — its metadata replaced by the RocksDB snapshot's own index, term and
//! configuration — and reports the outcome to raft (`report_snapshot`).
//!
//! The follower's [`Incoming`] stages each chunk into the tree slot that is not live
//! (see `storage`), and steps the `MsgSnapshot` into raft only when it names the transfer
//! just completed. raft then hands the snapshot back in a `Ready`, and the driver
//! installs it with one synced write. A crash before that write leaves the old state; a
//! crash after it restarts from the new one.

use std::sync::{Arc, Weak};
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use raft::eraftpb::Message;
use rocksdb::DB;

use super::{Msg, Shared};
use crate::codec::{Reader, Writer};
use crate::error::{Error, Result};
use crate::storage::read_snapshot;
use crate::transport::{Envelope, Transport};

/// Bytes of records per chunk.
pub(crate) const CHUNK_BYTES: usize = 1024 * 1024;
/// Most chunks sent and not yet acknowledged.
pub(crate) const WINDOW: u32 = 4;
/// How long the leader waits for the follower to acknowledge a chunk before giving up.
pub(crate) const ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// What a `MsgSnapshot`'s data carries: the transfer and the index it installs.
pub(crate) fn encode_descriptor(transfer: u64, index: u64) -> Vec<u8> {
    let mut w = Writer::with_capacity(20);
    w.u32(DESCRIPTOR_MAGIC);
    w.u64(transfer);
    w.u64(index);
    w.finish()
}

const DESCRIPTOR_MAGIC: u32 = 0x5a4b_534e; // "ZKSN"

/// Parses [`encode_descriptor`]'s bytes: (transfer, index).
pub(crate) fn decode_descriptor(buf: &[u8]) -> Result<(u64, u64)> {
    let mut r = Reader::new(buf);
    if r.u32()? != DESCRIPTOR_MAGIC {
        return Err(Error::Corrupt("snapshot descriptor".into()));
    }
    let out = (r.u64()?, r.u64()?);
    r.finish()?;
    Ok(out)
}

/// How often a transfer waiting for an acknowledgement checks whether its node stopped.
const STOP_POLL: Duration = Duration::from_millis(100);

/// A transfer this leader is running to one follower.
pub(crate) struct Outgoing {
    pub(crate) transfer: u64,
    acks: Sender<(u32, bool)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Outgoing {
    /// Starts streaming a snapshot of `db` to `msg.to` on a new thread; the outcome
    /// arrives in the node's mailbox as [`Msg::SnapshotDone`].
    pub(crate) fn start(s: &Shared, db: Arc<DB>, transfer: u64, msg: Message) -> Result<Outgoing> {
        let (acks, ack_rx) = bounded(1024);
        let transport = s.transport.clone();
        let me: Weak<Shared> = s.me.clone();
        let logger = s.logger.clone();
        let (from, to) = (s.id, msg.to);
        let thread = std::thread::Builder::new()
            .name(format!("zkraft-snap-{from}-{to}"))
            .spawn(move || {
                let started = std::time::Instant::now();
                // The transfer ends early when its node stops (or is gone), so it never
                // keeps the database open behind a shutdown.
                let stopped = || me.upgrade().is_none_or(|s| s.is_stopped());
                let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    stream(&db, &*transport, from, transfer, msg, &ack_rx, &stopped)
                }))
                .unwrap_or_else(|_| Err(Error::Raft("snapshot transfer panicked".into())));
                drop(db);
                match &res {
                    Ok((index, chunks, bytes)) => {
                        slog::info!(logger, "snapshot sent";
                            "to" => to, "index" => index, "chunks" => chunks, "bytes" => bytes,
                            "ms" => started.elapsed().as_millis() as u64);
                        if let Some(s) = me.upgrade() {
                            s.counters.snapshot_sent(*bytes, started.elapsed());
                        }
                    }
                    Err(e) => slog::warn!(logger, "snapshot transfer failed";
                        "to" => to, "error" => %e),
                }
                if let Some(s) = me.upgrade() {
                    let _ = s.post(Msg::SnapshotDone {
                        to,
                        transfer,
                        ok: res.is_ok(),
                    });
                }
            })
            .map_err(|e| Error::Io(e.to_string()))?;
        Ok(Outgoing {
            transfer,
            acks,
            thread: Some(thread),
        })
    }

    /// Waits for the transfer's thread (the node is stopping: it ends within
    /// [`STOP_POLL`]).
    pub(crate) fn join(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// A transfer that could not start: it only waits for its failure to be reported.
    pub(crate) fn failed(transfer: u64) -> Outgoing {
        Outgoing {
            transfer,
            acks: bounded(1).0,
            thread: None,
        }
    }

    /// Hands the follower's answer to the transfer's thread.
    pub(crate) fn ack(&self, seq: u32, ok: bool) {
        let _ = self.acks.try_send((seq, ok));
    }
}

/// Sends the chunks, waits for the last acknowledgement, then sends the raft message.
/// Returns the snapshot's index and the number of chunks.
fn stream(
    db: &DB,
    transport: &dyn Transport,
    from: u64,
    transfer: u64,
    mut msg: Message,
    acks: &Receiver<(u32, bool)>,
    stopped: &dyn Fn() -> bool,
) -> Result<(u64, u32, u64)> {
    let to = msg.to;
    let mut sent = 0u32;
    let mut bytes = 0u64;
    // Chunks acknowledged so far (chunk `acked - 1` is the newest).
    let mut acked = 0u32;
    let wait_ack = |acked: &mut u32| -> Result<()> {
        let deadline = std::time::Instant::now() + ACK_TIMEOUT;
        loop {
            if stopped() {
                return Err(Error::Shutdown);
            }
            match acks.recv_timeout(STOP_POLL) {
                Ok((seq, true)) if seq == *acked => {
                    *acked += 1;
                    return Ok(());
                }
                Ok((seq, true)) => {
                    return Err(Error::Raft(format!(
                        "snapshot chunk {seq} acknowledged out of order (expected {acked})"
                    )))
                }
                Ok((seq, false)) => {
                    return Err(Error::Raft(format!("follower refused chunk {seq}")))
                }
                Err(RecvTimeoutError::Timeout) if std::time::Instant::now() < deadline => {}
                Err(RecvTimeoutError::Timeout) => return Err(Error::Timeout(ACK_TIMEOUT)),
                Err(RecvTimeoutError::Disconnected) => return Err(Error::Shutdown),
            }
        }
    };
    let meta = read_snapshot(db, CHUNK_BYTES, |meta, data, last| {
        while sent - acked >= WINDOW {
            wait_ack(&mut acked)?;
        }
        bytes += data.len() as u64;
        transport.send(
            to,
            Envelope::SnapshotChunk {
                from,
                to,
                transfer,
                seq: sent,
                last,
                index: meta.index,
                data,
            },
        );
        sent += 1;
        Ok(())
    })?;
    while acked < sent {
        wait_ack(&mut acked)?;
    }
    let snap = msg.mut_snapshot();
    let m = snap.mut_metadata();
    m.index = meta.index;
    m.term = meta.term;
    m.set_conf_state(meta.conf_state);
    snap.data = encode_descriptor(transfer, meta.index).into();
    transport.send(to, Envelope::Raft(crate::transport::RaftMessage(msg)));
    Ok((meta.index, sent, bytes))
}

/// A snapshot this follower is receiving (or has received and not installed yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Incoming {
    pub(crate) from: u64,
    pub(crate) transfer: u64,
    pub(crate) index: u64,
    /// The next chunk expected.
    pub(crate) next: u32,
    /// Whether the last chunk is staged.
    pub(crate) complete: bool,
    /// Member addresses the snapshot carries (installed with it).
    pub(crate) peers: Vec<(u64, String)>,
    /// Bytes of the chunks staged so far.
    pub(crate) bytes: u64,
}

/// Most member addresses one snapshot may carry.
pub(crate) const MAX_SNAPSHOT_PEERS: usize = 1024;

impl Incoming {
    /// True when a `MsgSnapshot` from `from` naming (`transfer`, `index`) may be stepped:
    /// its data is all staged.
    pub(crate) fn ready_for(&self, from: u64, transfer: u64, index: u64) -> bool {
        self.complete && self.from == from && self.transfer == transfer && self.index == index
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_round_trip_and_refuse_garbage() {
        let d = encode_descriptor(7, 99);
        assert_eq!(decode_descriptor(&d).unwrap(), (7, 99));
        assert!(decode_descriptor(&d[..10]).is_err());
        assert!(decode_descriptor(b"not a descriptor at all!").is_err());
        assert!(decode_descriptor(&[]).is_err());
    }
}
