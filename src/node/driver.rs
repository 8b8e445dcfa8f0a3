//! The driver: the one place where raft, disk and network meet.
//!
//! [`Core`] owns the `RawNode` and follows raft-rs's `Ready` contract on every run:
//!
//! 1. send the messages raft allows before persisting (a leader's appends);
//! 2. apply committed entries to the tree and write the tree delta, applied index and
//!    commit index in one RocksDB batch, then answer the callers waiting on them;
//! 3. persist new entries and the hard state in one synced batch;
//! 4. only then send the messages that depend on them (votes, append responses);
//! 5. advance, and repeat for the light ready.
//!
//! Everything queued in the mailbox is stepped or proposed before a `Ready` is taken, so
//! many proposals share one log write and one fsync.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeV2, Entry, EntryType, Message};
use raft::{RawNode, ReadState, INVALID_ID};
use rocksdb::WriteBatch;

use super::{Config, Msg, Role, Shared};
use crate::command::Command;
use crate::error::{Error, Result};
use crate::storage::{RaftStorage, TreeStore};
use crate::transport::Envelope;
use crate::tree::OpResult;

/// Most mailbox messages handled before raft gets to produce a `Ready`.
const MAX_MESSAGES_PER_ROUND: usize = 4096;
/// Rounds a worker runs a busy node before giving other nodes a turn.
const MAX_ROUNDS_PER_RUN: usize = 16;

struct Waiter {
    reply: Sender<Result<OpResult>>,
    deadline: Instant,
}

struct ReadWaiter {
    reply: Sender<Result<u64>>,
    deadline: Instant,
    issued: Instant,
}

/// A request that could not be handed to raft because no leader is known yet.
enum Parked {
    Propose {
        request_id: u64,
        data: Vec<u8>,
        deadline: Instant,
        reply: Sender<Result<OpResult>>,
    },
    Read {
        request_id: u64,
        deadline: Instant,
        reply: Sender<Result<u64>>,
    },
}

impl Parked {
    fn deadline(&self) -> Instant {
        match self {
            Parked::Propose { deadline, .. } | Parked::Read { deadline, .. } => *deadline,
        }
    }
}

/// The raft side of a node: owned by whichever worker runs the node.
pub(crate) struct Core {
    raw: RawNode<RaftStorage>,
    tree_store: TreeStore,
    applied: u64,
    /// Proposed writes of this node, by request id, waiting to be applied.
    pending: HashMap<u64, Waiter>,
    /// ReadIndex requests sent to raft, by request id.
    reads: HashMap<u64, ReadWaiter>,
    /// Read indexes confirmed by the leader, waiting for the apply to reach them.
    reads_to_apply: Vec<(u64, Sender<Result<u64>>)>,
    parked: VecDeque<Parked>,
    /// Re-issue a ReadIndex that got no answer after this long (raft-rs drops them while a
    /// new leader has not committed in its term yet).
    read_retry: Duration,
}

impl Core {
    pub(crate) fn new(
        raw: RawNode<RaftStorage>,
        tree_store: TreeStore,
        applied: u64,
        config: &Config,
    ) -> Core {
        Core {
            raw,
            tree_store,
            applied,
            pending: HashMap::new(),
            reads: HashMap::new(),
            reads_to_apply: Vec::new(),
            parked: VecDeque::new(),
            read_retry: config.tick_interval * config.heartbeat_tick as u32 * 2,
        }
    }

    /// Fails every waiting request (the node is stopping).
    pub(crate) fn fail_all(self, e: Error) {
        for (_, w) in self.pending {
            let _ = w.reply.send(Err(e.clone()));
        }
        for (_, w) in self.reads {
            let _ = w.reply.send(Err(e.clone()));
        }
        for (_, reply) in self.reads_to_apply {
            let _ = reply.send(Err(e.clone()));
        }
        for p in self.parked {
            match p {
                Parked::Propose { reply, .. } => {
                    let _ = reply.send(Err(e.clone()));
                }
                Parked::Read { reply, .. } => {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }

    /// Runs the node until it has nothing left to do (or has had its share of the worker).
    pub(crate) fn run(&mut self, s: &Shared) -> Result<()> {
        for _ in 0..MAX_ROUNDS_PER_RUN {
            let ticks = s.ticks_due.swap(0, Ordering::AcqRel);
            for _ in 0..ticks {
                self.raw.tick();
            }
            if ticks > 0 {
                self.on_tick();
            }
            let mut handled = 0;
            while handled < MAX_MESSAGES_PER_ROUND {
                let Ok(msg) = s.inbox.try_recv() else { break };
                handled += 1;
                self.handle(s, msg);
            }
            self.flush_parked(s);
            let ready = self.raw.has_ready();
            if ready {
                self.handle_ready(s)?;
            }
            if !ready && handled == 0 && ticks == 0 {
                return Ok(());
            }
        }
        // Still busy: let other nodes have the worker, and come back.
        s.wake();
        Ok(())
    }

    fn handle(&mut self, s: &Shared, msg: Msg) {
        match msg {
            Msg::Envelope(Envelope::Raft(m)) => {
                if let Err(e) = self.raw.step(m) {
                    slog::debug!(s.logger, "dropped raft message"; "error" => %e);
                }
            }
            Msg::Propose {
                request_id,
                data,
                deadline,
                reply,
            } => self.parked.push_back(Parked::Propose {
                request_id,
                data,
                deadline,
                reply,
            }),
            Msg::ReadIndex {
                request_id,
                deadline,
                reply,
            } => self.parked.push_back(Parked::Read {
                request_id,
                deadline,
                reply,
            }),
        }
    }

    /// Hands queued requests to raft, in arrival order, once a leader is known.
    fn flush_parked(&mut self, s: &Shared) {
        if self.parked.is_empty() || self.raw.raft.leader_id == INVALID_ID {
            return;
        }
        let now = Instant::now();
        while let Some(p) = self.parked.pop_front() {
            if p.deadline() <= now {
                // The caller has given up: proposing now could apply a write that was
                // reported as failed.
                continue;
            }
            match p {
                Parked::Propose {
                    request_id,
                    data,
                    deadline,
                    reply,
                } => match self.raw.propose(vec![], data) {
                    Ok(()) => {
                        s.counters.proposals.fetch_add(1, Ordering::Relaxed);
                        self.pending.insert(request_id, Waiter { reply, deadline });
                    }
                    Err(e) => {
                        // Nothing was appended or forwarded (raft-rs drops a proposal
                        // whole), so failing it is final.
                        let _ = reply.send(Err(Error::NoQuorum(e.to_string())));
                    }
                },
                Parked::Read {
                    request_id,
                    deadline,
                    reply,
                } => {
                    self.raw.read_index(request_id.to_le_bytes().to_vec());
                    self.reads.insert(
                        request_id,
                        ReadWaiter {
                            reply,
                            deadline,
                            issued: now,
                        },
                    );
                }
            }
        }
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        // Callers past their deadline have returned Timeout; forget them.
        self.pending.retain(|_, w| w.deadline > now);
        self.parked.retain(|p| p.deadline() > now);
        self.reads.retain(|_, w| w.deadline > now);
        let retry: Vec<u64> = self
            .reads
            .iter_mut()
            .filter(|(_, w)| now.duration_since(w.issued) >= self.read_retry)
            .map(|(id, w)| {
                w.issued = now;
                *id
            })
            .collect();
        if self.raw.raft.leader_id != INVALID_ID {
            for id in retry {
                self.raw.read_index(id.to_le_bytes().to_vec());
            }
        }
    }

    fn send(&self, s: &Shared, msgs: Vec<Message>) {
        for m in msgs {
            let to = m.to;
            s.transport.send(to, Envelope::Raft(m));
        }
    }

    fn handle_ready(&mut self, s: &Shared) -> Result<()> {
        let mut rd = self.raw.ready();
        if let Some(ss) = rd.ss() {
            let role = Role::from_raft(ss.raft_state);
            let previous = s.role.swap(role, Ordering::AcqRel);
            s.leader.store(ss.leader_id, Ordering::Release);
            if previous != role {
                slog::info!(s.logger, "role changed";
                    "role" => ?Role::from_u8(role), "leader" => ss.leader_id,
                    "term" => self.raw.raft.term);
            }
        }
        if !rd.messages().is_empty() {
            self.send(s, rd.take_messages());
        }
        if !rd.snapshot().is_empty() {
            // Never produced: storage never compacts, so raft never sends snapshots.
            return Err(Error::Raft(
                "snapshot received, but this version never compacts its log".into(),
            ));
        }
        self.apply(s, rd.take_committed_entries())?;
        let entries = rd.take_entries();
        if self.raw.store().persist(&entries, rd.hs())? {
            s.counters.log_syncs.fetch_add(1, Ordering::Relaxed);
            s.counters
                .entries_persisted
                .fetch_add(entries.len() as u64, Ordering::Relaxed);
        }
        if !rd.persisted_messages().is_empty() {
            self.send(s, rd.take_persisted_messages());
        }
        let read_states = rd.take_read_states();
        let mut light = self.raw.advance(rd);
        self.send(s, light.take_messages());
        self.apply(s, light.take_committed_entries())?;
        self.raw.advance_apply();
        s.term.store(self.raw.raft.term, Ordering::Release);
        self.on_read_states(read_states);
        Ok(())
    }

    fn on_read_states(&mut self, states: Vec<ReadState>) {
        for rs in states {
            let Ok(ctx) = <[u8; 8]>::try_from(rs.request_ctx.as_slice()) else {
                continue;
            };
            if let Some(w) = self.reads.remove(&u64::from_le_bytes(ctx)) {
                self.reads_to_apply.push((rs.index, w.reply));
            }
        }
        self.release_reads();
    }

    fn release_reads(&mut self) {
        let applied = self.applied;
        self.reads_to_apply.retain(|(index, reply)| {
            if *index <= applied {
                let _ = reply.send(Ok(*index));
                false
            } else {
                true
            }
        });
    }

    /// Applies committed entries: tree changes, applied index and commit index go to
    /// RocksDB in one batch; then the callers waiting on these entries are answered.
    fn apply(&mut self, s: &Shared, entries: Vec<Entry>) -> Result<()> {
        let Some(last) = entries.last().map(|e| e.index) else {
            return Ok(());
        };
        let mut batch = WriteBatch::default();
        let mut replies = Vec::new();
        {
            let mut tree = s.tree.write();
            for e in &entries {
                if e.index <= self.applied {
                    continue;
                }
                match e.get_entry_type() {
                    EntryType::EntryNormal if e.data.is_empty() => {}
                    EntryType::EntryNormal => match Command::decode(&e.data) {
                        Ok(cmd) => {
                            let res = tree.apply(e.index as i64, cmd.time_ms, &cmd.op);
                            if cmd.origin == s.id && cmd.incarnation == s.incarnation {
                                if let Some(w) = self.pending.remove(&cmd.request_id) {
                                    replies.push((w.reply, res));
                                }
                            }
                        }
                        Err(err) => {
                            // Every replica sees the same bytes and skips them alike.
                            slog::error!(s.logger, "skipping undecodable entry";
                                "index" => e.index, "error" => %err);
                        }
                    },
                    EntryType::EntryConfChange => {
                        let cc = ConfChange::parse_from_bytes(&e.data)
                            .map_err(|err| Error::Corrupt(err.to_string()))?;
                        let cs = self.raw.apply_conf_change(&cc)?;
                        self.raw.store().conf_state_into(&mut batch, cs)?;
                    }
                    EntryType::EntryConfChangeV2 => {
                        let cc = ConfChangeV2::parse_from_bytes(&e.data)
                            .map_err(|err| Error::Corrupt(err.to_string()))?;
                        let cs = self.raw.apply_conf_change(&cc)?;
                        self.raw.store().conf_state_into(&mut batch, cs)?;
                    }
                }
            }
            let dirty = tree.take_dirty();
            self.tree_store.write_into(&mut batch, &tree, &dirty, last);
            self.raw.store().commit_into(&mut batch, last)?;
            self.tree_store.commit(batch)?;
            self.applied = last;
            s.applied.store(last, Ordering::Release);
        }
        s.counters
            .entries_applied
            .fetch_add(entries.len() as u64, Ordering::Relaxed);
        s.counters.apply_batches.fetch_add(1, Ordering::Relaxed);
        for (reply, res) in replies {
            let _ = reply.send(res);
        }
        self.release_reads();
        Ok(())
    }
}
