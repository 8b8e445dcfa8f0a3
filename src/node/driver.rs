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
//! What is queued in the mailbox is stepped or proposed before a `Ready` is taken, so
//! many proposals share one log write and one fsync — up to a budget of messages and bytes
//! per round (`Config::max_bytes_per_round`), so one round's log write and apply batch
//! stay bounded however much arrives at once.
//!
//! Applying takes the tree's write lock one entry at a time, so local reads interleave with
//! a long batch; the batch's RocksDB write is built under a read lock and written with no
//! lock held, so reads never wait on the disk.
//!
//! After applying, the driver compacts the raft log once it is long enough
//! (`Config::snapshot_entries`, `Config::snapshot_log_bytes`): the tree on disk is the
//! snapshot, so compaction is one range delete. A follower behind the compacted log is
//! sent a snapshot in bounded chunks and installs it atomically (see `snapshot`).
//!
//! The driver also runs the out-of-log session machinery: every node heartbeats the
//! sessions it hosts to the leader; the leader keeps a deadline per session (a fresh full
//! timeout for every session when it takes over) and proposes `CloseSession` for the ones
//! whose deadline passes, and periodically proposes `Reap` for empty containers and
//! expired TTL znodes.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use protobuf::Message as _;
use raft::eraftpb::{
    ConfChange, ConfChangeType, ConfChangeV2, Entry, EntryType, HardState, Message, MessageType,
    Snapshot,
};
use raft::{RawNode, ReadState, SnapshotStatus, INVALID_ID};
use rocksdb::WriteBatch;

use super::snapshot::{decode_descriptor, Incoming, Outgoing, MAX_SNAPSHOT_PEERS};
use super::{Config, Msg, Request, Role, Shared, CATCH_UP_ENTRIES};
use crate::command::{Command, Op};
use crate::error::{Error, Result};
use crate::storage::{record_address_into, RaftStorage, TreeStore};
use crate::time::{deadline_after, now_ms};
use crate::transport::Envelope;
use crate::tree::{DataTree, EventType, OpResult, Txn, WatchedEvent};
use crate::watch::SessionEvent;

/// Most mailbox messages handled before raft gets to produce a `Ready`.
const MAX_MESSAGES_PER_ROUND: usize = 4096;
/// Most ticks applied in one round, however many came due.
const MAX_TICKS_PER_ROUND: u32 = 2;
/// Rounds a worker runs a busy node before giving other nodes a turn.
const MAX_ROUNDS_PER_RUN: usize = 16;

/// A caller waiting on the driver until a deadline.
struct Waiter<T> {
    reply: Sender<Result<T>>,
    deadline: Instant,
    /// When the request was handed to raft (ReadIndex requests are re-issued if unanswered).
    issued: Instant,
}

impl<T> Waiter<T> {
    /// Keeps the waiter if its deadline is still ahead; otherwise answers it with `e`.
    fn keep(&self, now: Instant, e: &Error) -> bool {
        now < self.deadline || {
            let _ = self.reply.send(Err(e.clone()));
            false
        }
    }
}

/// A write this node proposed, waiting to be applied.
struct PendingWrite {
    waiter: Waiter<OpResult>,
    /// The session and host epoch it was numbered in.
    order: Option<(i64, u64)>,
    /// The leader it was handed to (this node, or the one raft forwarded it to).
    leader: u64,
}

/// The raft side of a node: owned by whichever worker runs the node.
pub(crate) struct Core {
    raw: RawNode<RaftStorage>,
    tree_store: TreeStore,
    applied: u64,
    /// Proposed writes of this node, by request id, waiting to be applied.
    pending: HashMap<u64, PendingWrite>,
    /// ReadIndex requests sent to raft, by request id.
    reads: HashMap<u64, Waiter<u64>>,
    /// Configuration changes proposed by this node, by request id.
    conf_pending: HashMap<u64, Waiter<()>>,
    /// Read indexes confirmed by the leader, waiting for the apply to reach them.
    reads_to_apply: Vec<(u64, Waiter<u64>)>,
    /// Requests not yet handed to raft (no leader known yet), in arrival order.
    parked: VecDeque<Request>,
    /// Re-issue a ReadIndex that got no answer after this long (raft-rs drops them while a
    /// new leader has not committed in its term yet).
    read_retry: Duration,
    /// Leader only: when each session expires unless heard from.
    session_deadlines: HashMap<i64, Instant>,
    /// Leader only: sessions whose expiry was proposed, and when to propose it again if
    /// the proposal got lost.
    expiring: HashMap<i64, Instant>,
    /// Whether this node was leader at the previous tick.
    leading: bool,
    last_ping: Instant,
    ping_interval: Duration,
    last_reap: Instant,
    reap_interval: Duration,
    /// How long to wait before re-proposing a lost housekeeping proposal.
    retry_after: Duration,
    /// The callers' request timeout, to tell them so.
    request_timeout: Duration,
    /// Most bytes of proposals and peer entries taken from the mailbox per round.
    max_bytes_per_round: usize,
    /// Snapshot transfers this leader runs, by follower.
    outgoing: HashMap<u64, Outgoing>,
    /// The snapshot this follower is receiving.
    incoming: Option<Incoming>,
    next_transfer: u64,
    /// Compaction thresholds (`Config::snapshot_entries`, `Config::snapshot_log_bytes`).
    snapshot_entries: u64,
    snapshot_log_bytes: u64,
    /// Bytes of entries written to the log since the last compaction (or start).
    log_bytes: u64,
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
            conf_pending: HashMap::new(),
            reads_to_apply: Vec::new(),
            parked: VecDeque::new(),
            read_retry: config.ticks(config.heartbeat_tick.saturating_mul(2)),
            session_deadlines: HashMap::new(),
            expiring: HashMap::new(),
            leading: false,
            last_ping: Instant::now(),
            ping_interval: config.session_ping_interval(),
            last_reap: Instant::now(),
            reap_interval: config.reap_interval,
            retry_after: config.election_timeout(),
            request_timeout: config.request_timeout,
            max_bytes_per_round: config.max_bytes_per_round(),
            outgoing: HashMap::new(),
            incoming: None,
            next_transfer: 1,
            snapshot_entries: config.snapshot_entries,
            snapshot_log_bytes: config.snapshot_log_bytes,
            log_bytes: 0,
        }
    }

    /// Fails every waiting request (the node is stopping).
    pub(crate) fn fail_all(self, e: Error) {
        for (_, p) in self.pending {
            let _ = p.waiter.reply.send(Err(e.clone()));
        }
        for (_, w) in self.reads {
            let _ = w.reply.send(Err(e.clone()));
        }
        for (_, w) in self.conf_pending {
            let _ = w.reply.send(Err(e.clone()));
        }
        for (_, w) in self.reads_to_apply {
            let _ = w.reply.send(Err(e.clone()));
        }
        for r in self.parked {
            r.fail(e.clone());
        }
        // Transfers see the node stopped and end; none keeps the database open after.
        for (_, o) in self.outgoing {
            o.join();
        }
    }

    /// Runs the node until it has nothing left to do or has had its share of the worker;
    /// returns true in the second case (run it again soon).
    pub(crate) fn run(&mut self, s: &Shared) -> Result<bool> {
        for _ in 0..MAX_ROUNDS_PER_RUN {
            // Messages first: heartbeats waiting in the mailbox must count before ticks
            // that piled up while the node waited for a worker.
            let (mut handled, mut bytes) = (0, 0usize);
            while handled < MAX_MESSAGES_PER_ROUND && bytes < self.max_bytes_per_round {
                let Ok(msg) = s.inbox.try_recv() else { break };
                handled += 1;
                bytes = bytes.saturating_add(msg.cost());
                self.handle(s, msg);
            }
            // A node starved of workers should not age by many ticks at once (a leader would
            // fail its quorum check, followers would campaign): apply at most two.
            let ticks = s
                .ticks_due
                .swap(0, Ordering::AcqRel)
                .min(MAX_TICKS_PER_ROUND);
            for _ in 0..ticks {
                self.raw.tick();
            }
            if ticks > 0 {
                self.on_tick(s);
            }
            self.flush_parked(s);
            let ready = self.raw.has_ready();
            if ready {
                self.handle_ready(s)?;
            }
            if !ready && handled == 0 && ticks == 0 {
                return Ok(false);
            }
        }
        // Still busy: let other nodes have the worker, and come back.
        Ok(true)
    }

    fn handle(&mut self, s: &Shared, msg: Msg) {
        match msg {
            Msg::Envelope(Envelope::Raft(m)) => {
                if m.get_msg_type() == MessageType::MsgSnapshot && !self.snapshot_staged(&m) {
                    slog::warn!(s.logger, "snapshot message without its staged data dropped";
                        "from" => m.from);
                    return;
                }
                if let Err(e) = self.raw.step(m) {
                    slog::debug!(s.logger, "dropped raft message"; "error" => %e);
                }
            }
            Msg::Envelope(Envelope::SnapshotChunk {
                from,
                transfer,
                seq,
                last,
                index,
                data,
                ..
            }) => {
                let ok = self.stage_chunk(s, from, transfer, seq, last, index, &data);
                s.transport.send(
                    from,
                    Envelope::SnapshotAck {
                        from: s.id,
                        to: from,
                        transfer,
                        seq,
                        ok,
                    },
                );
            }
            Msg::Envelope(Envelope::SnapshotAck {
                from,
                transfer,
                seq,
                ok,
                ..
            }) => {
                if let Some(o) = self.outgoing.get(&from) {
                    if o.transfer == transfer {
                        o.ack(seq, ok);
                    }
                }
            }
            Msg::SnapshotDone { to, transfer, ok } => {
                if self
                    .outgoing
                    .get(&to)
                    .is_some_and(|o| o.transfer == transfer)
                {
                    self.outgoing.remove(&to);
                    if ok {
                        s.counters.snapshots_sent.fetch_add(1, Ordering::Relaxed);
                    }
                    let status = if ok {
                        SnapshotStatus::Finish
                    } else {
                        SnapshotStatus::Failure
                    };
                    self.raw.report_snapshot(to, status);
                }
            }
            Msg::Unreachable(peer) => self.raw.report_unreachable(peer),
            Msg::Envelope(Envelope::SessionPing { from, sessions, .. }) => {
                if self.leading {
                    self.heard_from(s, &sessions);
                    s.transport.send(
                        from,
                        Envelope::SessionPingAck {
                            from: s.id,
                            to: from,
                        },
                    );
                }
            }
            Msg::Envelope(Envelope::SessionPingAck { from, .. }) => {
                if from == self.raw.raft.leader_id {
                    s.sessions_acknowledged();
                }
            }
            Msg::Request(r) => self.parked.push_back(r),
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
                // reported as failed. The session's later requests must not count on it.
                restart_order(s, p.order());
                p.fail(Error::Timeout(self.request_timeout));
                continue;
            }
            match p {
                Request::Propose {
                    request_id,
                    data,
                    order,
                    deadline,
                    reply,
                } => match self.raw.propose(vec![], data) {
                    Ok(()) => {
                        s.counters.proposals.fetch_add(1, Ordering::Relaxed);
                        let waiter = Waiter {
                            reply,
                            deadline,
                            issued: now,
                        };
                        let leader = self.raw.raft.leader_id;
                        self.pending.insert(
                            request_id,
                            PendingWrite {
                                waiter,
                                order,
                                leader,
                            },
                        );
                    }
                    Err(e) => {
                        // Nothing was appended or forwarded (raft-rs drops a proposal
                        // whole), so failing it is final — but the session's later
                        // requests must not count on it.
                        restart_order(s, order);
                        let _ = reply.send(Err(Error::NoQuorum(e.to_string())));
                    }
                },
                Request::ConfChange {
                    request_id,
                    change,
                    deadline,
                    reply,
                } => {
                    if self.raw.raft.has_pending_conf() {
                        // raft-rs would replace it with an empty entry and never say so.
                        let _ = reply.send(Err(Error::NoQuorum(
                            "another configuration change is not applied yet".into(),
                        )));
                        continue;
                    }
                    let context = conf_context(s.id, s.incarnation, request_id);
                    match self.raw.propose_conf_change(context, change) {
                        Ok(()) => {
                            let w = Waiter {
                                reply,
                                deadline,
                                issued: now,
                            };
                            self.conf_pending.insert(request_id, w);
                        }
                        Err(e) => {
                            let _ = reply.send(Err(Error::NoQuorum(format!(
                                "configuration change not proposed: {e}"
                            ))));
                        }
                    }
                }
                Request::ReadIndex {
                    request_id,
                    deadline,
                    reply,
                } => {
                    self.raw.read_index(request_id.to_le_bytes().to_vec());
                    self.reads.insert(
                        request_id,
                        Waiter {
                            reply,
                            deadline,
                            issued: now,
                        },
                    );
                }
            }
        }
    }

    /// Leader: the sessions named were heard from; push their deadlines out.
    fn heard_from(&mut self, s: &Shared, sessions: &[i64]) {
        if !self.leading {
            return;
        }
        let now = Instant::now();
        let tree = s.tree.read();
        for id in sessions {
            if let Some(rec) = tree.sessions().get(id) {
                let timeout = Duration::from_millis(rec.timeout_ms.max(0) as u64);
                self.session_deadlines
                    .insert(*id, deadline_after(now, timeout));
            }
        }
    }

    /// Proposes a housekeeping command from this node (no caller waits for it).
    fn propose_internal(&mut self, s: &Shared, op: Op) {
        let (_, data) = s.command(0, (0, 0), op);
        if let Err(e) = self.raw.propose(vec![], data) {
            slog::warn!(s.logger, "housekeeping proposal dropped"; "error" => %e);
        }
    }

    /// Heartbeats, session expiry and reaping: the session machinery's tick.
    fn sessions_tick(&mut self, s: &Shared) {
        let now = Instant::now();
        let leader = self.raw.raft.leader_id;
        let is_leader = self.raw.raft.state == raft::StateRole::Leader;
        if is_leader && !self.leading {
            // A new leader knows nothing of when sessions were last heard from: every live
            // session gets a fresh, full timeout from now.
            self.session_deadlines.clear();
            self.expiring.clear();
            self.last_reap = now;
        }
        self.leading = is_leader;
        if !is_leader {
            self.session_deadlines.clear();
            self.expiring.clear();
        }
        if now.duration_since(self.last_ping) >= self.ping_interval {
            self.last_ping = now;
            let hosted: Vec<i64> = s.sessions.lock().keys().copied().collect();
            if !hosted.is_empty() {
                if leader == s.id && is_leader {
                    self.heard_from(s, &hosted);
                    s.sessions_acknowledged();
                } else if leader != INVALID_ID {
                    s.transport.send(
                        leader,
                        Envelope::SessionPing {
                            from: s.id,
                            to: leader,
                            sessions: hosted,
                        },
                    );
                }
            }
        }
        if !is_leader {
            return;
        }
        let mut expired = Vec::new();
        {
            let tree = s.tree.read();
            let live = tree.sessions();
            self.session_deadlines.retain(|id, _| live.contains_key(id));
            self.expiring.retain(|id, _| live.contains_key(id));
            for (id, rec) in live {
                let timeout = Duration::from_millis(rec.timeout_ms.max(0) as u64);
                let deadline = *self
                    .session_deadlines
                    .entry(*id)
                    .or_insert_with(|| deadline_after(now, timeout));
                let retry_due = self.expiring.get(id).is_none_or(|at| now >= *at);
                if now >= deadline && retry_due {
                    expired.push(*id);
                }
            }
        }
        for id in expired {
            slog::info!(s.logger, "expiring session"; "session" => format!("{id:#x}"));
            self.expiring
                .insert(id, deadline_after(now, self.retry_after));
            self.propose_internal(
                s,
                Op::CloseSession {
                    session: id,
                    expired: true,
                },
            );
        }
        if now.duration_since(self.last_reap) >= self.reap_interval {
            self.last_reap = now;
            let reapable = s.tree.read().reapable(now_ms());
            for path in reapable.into_iter().take(1000) {
                slog::debug!(s.logger, "reaping"; "path" => &path);
                self.propose_internal(s, Op::Reap { path });
            }
        }
    }

    fn on_tick(&mut self, s: &Shared) {
        self.sessions_tick(s);
        let now = Instant::now();
        // Callers past their deadline are told Timeout (they may already have seen it) and
        // forgotten; no reply channel is ever dropped unanswered.
        let timeout = Error::Timeout(self.request_timeout);
        self.pending.retain(|_, p| {
            p.waiter.keep(now, &timeout) || {
                restart_order(s, p.order);
                false
            }
        });
        self.reads.retain(|_, w| w.keep(now, &timeout));
        self.conf_pending.retain(|_, w| w.keep(now, &timeout));
        self.reads_to_apply.retain(|(_, w)| w.keep(now, &timeout));
        let (live, expired): (VecDeque<Request>, VecDeque<Request>) =
            std::mem::take(&mut self.parked)
                .into_iter()
                .partition(|p| p.deadline() > now);
        self.parked = live;
        for p in expired {
            restart_order(s, p.order());
            p.fail(timeout.clone());
        }
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

    fn send(&mut self, s: &Shared, msgs: Vec<Message>) {
        for m in msgs {
            if m.get_msg_type() == MessageType::MsgSnapshot {
                self.start_transfer(s, m);
                continue;
            }
            let to = m.to;
            s.transport.send(to, Envelope::Raft(m));
        }
    }

    /// Leader: streams a snapshot to `m.to` instead of sending raft's metadata-only
    /// message (which the transfer sends, completed, at its end).
    fn start_transfer(&mut self, s: &Shared, m: Message) {
        let to = m.to;
        if self.outgoing.contains_key(&to) {
            return; // one transfer per follower; raft hears how it ended
        }
        let transfer = (s.incarnation << 16) ^ self.next_transfer;
        self.next_transfer += 1;
        slog::info!(s.logger, "sending snapshot"; "to" => to, "transfer" => transfer);
        match Outgoing::start(s, self.tree_store.db().clone(), transfer, m) {
            Ok(o) => {
                self.outgoing.insert(to, o);
            }
            Err(e) => {
                slog::warn!(s.logger, "snapshot transfer not started"; "to" => to, "error" => %e);
                // Told to raft on the next round, outside this Ready.
                self.outgoing.insert(to, Outgoing::failed(transfer));
                s.post(Msg::SnapshotDone {
                    to,
                    transfer,
                    ok: false,
                });
            }
        }
    }

    /// Follower: stages one chunk of a snapshot; false refuses it (and the transfer).
    #[allow(clippy::too_many_arguments)]
    fn stage_chunk(
        &mut self,
        s: &Shared,
        from: u64,
        transfer: u64,
        seq: u32,
        last: bool,
        index: u64,
        data: &[u8],
    ) -> bool {
        if seq == 0 {
            if self.incoming.as_ref().is_some_and(|i| i.complete)
                && self.raw.raft.raft_log.unstable_snapshot().is_some()
            {
                // raft holds the staged snapshot for its next Ready: the staging slot
                // must stay as it is until that is installed.
                return false;
            }
            if let Err(e) = self.tree_store.clear_staging() {
                slog::warn!(s.logger, "cannot stage a snapshot"; "error" => %e);
                self.incoming = None;
                return false;
            }
            self.incoming = Some(Incoming {
                from,
                transfer,
                index,
                next: 0,
                complete: false,
                peers: Vec::new(),
            });
        }
        let Some(inc) = &mut self.incoming else {
            return false;
        };
        if inc.from != from
            || inc.transfer != transfer
            || inc.index != index
            || inc.next != seq
            || inc.complete
        {
            return false;
        }
        match self.tree_store.stage_chunk(data) {
            Ok(peers) if inc.peers.len() + peers.len() <= MAX_SNAPSHOT_PEERS => {
                inc.peers.extend(peers);
                inc.next += 1;
                inc.complete = last;
                true
            }
            Ok(_) => {
                slog::warn!(s.logger, "snapshot with too many member addresses refused");
                self.incoming = None;
                false
            }
            Err(e) => {
                slog::warn!(s.logger, "malformed snapshot chunk refused";
                    "from" => from, "seq" => seq, "error" => %e);
                self.incoming = None;
                false
            }
        }
    }

    /// Whether a `MsgSnapshot` names the transfer this follower has completely staged.
    fn snapshot_staged(&self, m: &Message) -> bool {
        let snap = m.get_snapshot();
        let Ok((transfer, index)) = decode_descriptor(snap.get_data()) else {
            return false;
        };
        index == snap.get_metadata().index
            && self
                .incoming
                .as_ref()
                .is_some_and(|inc| inc.ready_for(m.from, transfer, index))
    }

    /// Installs the snapshot raft accepted: the staged slot becomes the tree, in one
    /// synced write; then the in-memory tree is replaced, and the watches and hosted
    /// sessions hear what changed.
    fn install_snapshot(
        &mut self,
        s: &Shared,
        snap: &Snapshot,
        ready_hs: Option<&HardState>,
    ) -> Result<()> {
        let meta = snap.get_metadata();
        let (transfer, index) = decode_descriptor(snap.get_data())?;
        let staged = self
            .incoming
            .take()
            .filter(|inc| index == meta.index && inc.ready_for(inc.from, transfer, index))
            .ok_or_else(|| {
                Error::Raft(format!(
                    "snapshot at {} to install was not staged",
                    meta.index
                ))
            })?;
        let started = Instant::now();
        let before = crate::storage::member_addresses(self.tree_store.db())?;
        let cs = meta.get_conf_state();
        let tree = self.tree_store.install(
            self.raw.store(),
            (meta.index, meta.term, cs),
            ready_hs,
            &staged.peers,
        )?;
        *s.voters.lock() = cs.voters.clone();
        for (id, addr) in &staged.peers {
            if let Err(e) = s.transport.peer_added(*id, addr) {
                slog::warn!(s.logger, "transport cannot reach a member";
                    "node" => id, "addr" => addr, "error" => %e);
            }
        }
        for (id, _) in before {
            if !staged.peers.iter().any(|(p, _)| *p == id) && !cs.voters.contains(&id) {
                s.transport.peer_removed(id);
            }
        }
        slog::info!(s.logger, "installed snapshot";
            "index" => meta.index, "term" => meta.term, "znodes" => tree.len(),
            "ms" => started.elapsed().as_millis() as u64);
        // Counted before the new tree is visible: whoever sees it sees the count too.
        s.counters
            .snapshots_installed
            .fetch_add(1, Ordering::Relaxed);
        s.counters
            .log_first_index
            .store(self.raw.store().first(), Ordering::Relaxed);
        self.replace_tree(s, tree, meta.index);
        self.applied = meta.index;
        s.applied.store(meta.index, Ordering::Release);
        self.log_bytes = 0;
        self.release_reads();
        Ok(())
    }

    /// Swaps in a tree loaded from a snapshot. Watches fire for every znode that differs
    /// (as ZooKeeper's `setWatches` reports what a client missed), and sessions hosted here
    /// that the snapshot no longer holds have expired.
    fn replace_tree(&mut self, s: &Shared, mut tree: DataTree, index: u64) {
        let mut guard = s.tree.write();
        tree.set_zxid(index);
        let old = std::mem::replace(&mut *guard, tree);
        let events = tree_changes(&old, &guard, index as i64);
        drop(old);
        let mut watches = s.watches.lock();
        if !events.is_empty() {
            watches.trigger(&events);
        }
        let gone: Vec<i64> = s
            .sessions
            .lock()
            .keys()
            .copied()
            .filter(|id| !guard.sessions().contains_key(id))
            .collect();
        for id in gone {
            if let Some(inner) = s.sessions.lock().remove(&id) {
                inner.mark_ended(true);
                watches.end_session(id, Some(SessionEvent::Expired));
            }
        }
    }

    /// Compacts the log once it is long enough: keeps the newest entries for followers
    /// slightly behind when compacting by count, none when compacting by bytes.
    fn maybe_compact(&mut self, s: &Shared) -> Result<()> {
        let first = self.raw.store().first();
        if self.applied < first {
            return Ok(());
        }
        let entries = self.applied - first + 1;
        let by_bytes = self.log_bytes > self.snapshot_log_bytes;
        if entries <= self.snapshot_entries && !by_bytes {
            return Ok(());
        }
        let retain = if by_bytes {
            0
        } else {
            (self.snapshot_entries / 2).min(CATCH_UP_ENTRIES)
        };
        let to = self.applied - retain;
        let started = Instant::now();
        let removed = self.raw.store().compact(to)?;
        self.log_bytes = 0;
        s.counters
            .log_first_index
            .store(self.raw.store().first(), Ordering::Relaxed);
        if removed > 0 {
            s.counters.log_compactions.fetch_add(1, Ordering::Relaxed);
            slog::info!(s.logger, "compacted raft log";
                "through" => to, "removed" => removed, "applied" => self.applied,
                "ms" => started.elapsed().as_millis() as u64);
        }
        Ok(())
    }

    fn handle_ready(&mut self, s: &Shared) -> Result<()> {
        let mut rd = self.raw.ready();
        if let Some(ss) = rd.ss() {
            let role = Role::from_raft(ss.raft_state);
            let previous = s.role.swap(role, Ordering::AcqRel);
            let previous_leader = s.leader.swap(ss.leader_id, Ordering::AcqRel);
            if previous_leader != ss.leader_id {
                self.leader_changed(s, ss.leader_id);
            }
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
            self.install_snapshot(s, rd.snapshot(), rd.hs())?;
        }
        self.apply(s, rd.take_committed_entries())?;
        let entries = rd.take_entries();
        self.log_bytes = entries
            .iter()
            .fold(self.log_bytes, |n, e| n.saturating_add(e.data.len() as u64));
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
        self.maybe_compact(s)
    }

    /// The leader changed: writes handed to another leader may be lost (or committed after
    /// all). Their callers hear `ConnectionLoss` now rather than a timeout later, and their
    /// sessions start a new epoch, so nothing the session sends afterwards can be applied
    /// before them (see `DataTree::apply_ordered`).
    fn leader_changed(&mut self, s: &Shared, leader: u64) {
        let lost: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.leader != leader)
            .map(|(id, _)| *id)
            .collect();
        if lost.is_empty() {
            return;
        }
        slog::info!(s.logger, "leader changed with writes in flight: outcome unknown";
            "leader" => leader, "writes" => lost.len());
        for id in lost {
            if let Some(p) = self.pending.remove(&id) {
                restart_order(s, p.order);
                let _ = p.waiter.reply.send(Err(Error::ConnectionLoss(format!(
                    "the raft leader changed (now {leader}) while the write was in flight"
                ))));
            }
        }
    }

    fn on_read_states(&mut self, states: Vec<ReadState>) {
        for rs in states {
            let Ok(ctx) = <[u8; 8]>::try_from(rs.request_ctx.as_slice()) else {
                continue;
            };
            if let Some(w) = self.reads.remove(&u64::from_le_bytes(ctx)) {
                self.reads_to_apply.push((rs.index, w));
            }
        }
        self.release_reads();
    }

    fn release_reads(&mut self) {
        let applied = self.applied;
        self.reads_to_apply.retain(|(index, w)| {
            if *index <= applied {
                let _ = w.reply.send(Ok(*index));
                false
            } else {
                true
            }
        });
    }

    /// Applies committed entries: tree changes, applied index and commit index go to
    /// RocksDB in one batch; then the callers waiting on these entries are answered.
    ///
    /// Only this driver writes the tree. It write-locks it for one entry at a time (queueing
    /// that entry's watch events before any read can see its change), so reads wait for at
    /// most one entry — whose cost the request size limit bounds — never for a whole batch.
    /// The batch is then encoded under a read lock and written with no lock held. A read
    /// may so see an entry before its tree delta reaches RocksDB; that is safe, because
    /// raft hands over only entries already durable in this node's log, and a restart
    /// re-applies every entry after the persisted applied index.
    fn apply(&mut self, s: &Shared, entries: Vec<Entry>) -> Result<()> {
        let Some(last) = entries.last().map(|e| e.index) else {
            return Ok(());
        };
        let mut batch = WriteBatch::default();
        let mut replies = Vec::new();
        let mut conf_replies = Vec::new();
        for e in &entries {
            if e.index <= self.applied {
                continue;
            }
            match e.get_entry_type() {
                EntryType::EntryNormal if e.data.is_empty() => {}
                EntryType::EntryNormal => match Command::decode(&e.data) {
                    Ok(cmd) => {
                        let res = self.apply_command(s, e.index, &cmd);
                        if cmd.origin == s.id && cmd.incarnation == s.incarnation {
                            if let Some(p) = self.pending.remove(&cmd.request_id) {
                                if matches!(res, Err(Error::ConnectionLoss(_))) {
                                    // An earlier request of the session was lost.
                                    restart_order(s, p.order);
                                }
                                replies.push((p.waiter.reply, res));
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
                    let res = self.apply_membership(s, &cc, &mut batch);
                    if let Some(request_id) = own_conf_request(s, &e.context) {
                        if let Some(w) = self.conf_pending.remove(&request_id) {
                            conf_replies.push((w.reply, res));
                        }
                    }
                }
                EntryType::EntryConfChangeV2 => {
                    // Never proposed by zkraft; applied as raft-rs defines it.
                    let cc = ConfChangeV2::parse_from_bytes(&e.data)
                        .map_err(|err| Error::Corrupt(err.to_string()))?;
                    match self.raw.apply_conf_change(&cc) {
                        Ok(cs) => {
                            *s.voters.lock() = cs.voters.clone();
                            self.raw.store().conf_state_into(&mut batch, cs)?;
                        }
                        Err(e) => slog::warn!(s.logger, "configuration change refused";
                            "error" => %e),
                    }
                }
            }
        }
        {
            // Taken under the write lock, then encoded under the same lock downgraded:
            // readers share it, and the tree holds exactly the state after `last`.
            let mut tree = s.tree.write();
            tree.set_zxid(last);
            let (dirty, dirty_sessions) = tree.take_dirty();
            let tree = parking_lot::RwLockWriteGuard::downgrade(tree);
            self.tree_store.write_into(
                &mut batch,
                &tree,
                (dirty.as_slice(), dirty_sessions.as_slice()),
                last,
            );
        }
        self.raw.store().commit_into(&mut batch, last)?;
        self.tree_store.commit(batch)?;
        self.raw.store().set_applied(last);
        self.applied = last;
        s.applied.store(last, Ordering::Release);
        s.counters
            .entries_applied
            .fetch_add(entries.len() as u64, Ordering::Relaxed);
        s.counters.apply_batches.fetch_add(1, Ordering::Relaxed);
        for (reply, res) in replies {
            let _ = reply.send(res);
        }
        for (reply, res) in conf_replies {
            let _ = reply.send(res);
        }
        self.release_reads();
        Ok(())
    }

    /// Applies a membership change: raft's configuration, the persisted configuration and
    /// member addresses (into the apply batch), and the transport. A change raft refuses
    /// (every replica refuses it alike) changes nothing and is answered with the reason.
    fn apply_membership(
        &mut self,
        s: &Shared,
        cc: &ConfChange,
        batch: &mut WriteBatch,
    ) -> Result<()> {
        let cs = match self.raw.apply_conf_change(cc) {
            Ok(cs) => cs,
            Err(e) => {
                slog::warn!(s.logger, "configuration change refused";
                    "node" => cc.node_id, "error" => %e);
                return Err(Error::BadArguments(format!(
                    "configuration change refused: {e}"
                )));
            }
        };
        slog::info!(s.logger, "configuration changed";
            "change" => ?cc.get_change_type(), "node" => cc.node_id, "voters" => ?cs.voters);
        *s.voters.lock() = cs.voters.clone();
        self.raw.store().conf_state_into(batch, cs)?;
        let db = self.tree_store.db().clone();
        match cc.get_change_type() {
            ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                let addr = String::from_utf8_lossy(&cc.context).into_owned();
                if !addr.is_empty() {
                    record_address_into(&db, batch, cc.node_id, Some(&addr));
                    if let Err(e) = s.transport.peer_added(cc.node_id, &addr) {
                        slog::warn!(s.logger, "transport cannot reach the new member";
                            "node" => cc.node_id, "addr" => &addr, "error" => %e);
                    }
                }
            }
            ConfChangeType::RemoveNode => {
                record_address_into(&db, batch, cc.node_id, None);
                // A transfer to it ends by itself (no acknowledgements) and is joined then
                // or at shutdown.
                s.transport.peer_removed(cc.node_id);
            }
        }
        Ok(())
    }

    /// Applies one command under the tree's write lock and queues the watch events it
    /// caused before the lock is released.
    fn apply_command(&self, s: &Shared, index: u64, cmd: &Command) -> Result<OpResult> {
        let txn = Txn {
            zxid: i64::try_from(index).unwrap_or(i64::MAX),
            time: cmd.time_ms,
            session: cmd.session,
        };
        let mut tree = s.tree.write();
        let res = tree.apply_ordered(txn, cmd.order, &cmd.op);
        let events = tree.take_events();
        // Lock order everywhere: tree, then watches.
        let mut watches = s.watches.lock();
        if !events.is_empty() {
            watches.trigger(&events);
        }
        if let (Op::CloseSession { session, expired }, Ok(OpResult::SessionClosed { .. })) =
            (&cmd.op, &res)
        {
            if let Some(inner) = s.sessions.lock().remove(session) {
                inner.mark_ended(*expired);
                let event = if *expired {
                    SessionEvent::Expired
                } else {
                    SessionEvent::Closed
                };
                watches.end_session(*session, Some(event));
            }
        }
        res
    }
}

/// A request of `order`'s session and epoch was lost, or may have been: its session
/// starts a new epoch (once per epoch), so no later request counts on following it.
fn restart_order(s: &Shared, order: Option<(i64, u64)>) {
    if let Some((session, epoch)) = order {
        if let Some(inner) = s.sessions.lock().get(&session) {
            inner.order.lock().restart_after(epoch);
        }
    }
}

/// The context of a configuration change entry: who proposed it, so that node can answer
/// its caller.
fn conf_context(origin: u64, incarnation: u64, request_id: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(24);
    for v in [origin, incarnation, request_id] {
        out.extend(v.to_be_bytes());
    }
    out
}

/// The request id of a configuration change entry this node (this incarnation) proposed.
fn own_conf_request(s: &Shared, context: &[u8]) -> Option<u64> {
    let ctx: &[u8; 24] = context.try_into().ok()?;
    let field = |i: usize| u64::from_be_bytes(ctx[i * 8..i * 8 + 8].try_into().unwrap_or_default());
    (field(0) == s.id && field(1) == s.incarnation).then(|| field(2))
}

/// The watch events that turn `old` into `new`, as one entry at `zxid` would report them:
/// deletions, creations, data and child-list changes, in path order.
fn tree_changes(old: &DataTree, new: &DataTree, zxid: i64) -> Vec<WatchedEvent> {
    let mut out = Vec::new();
    let mut ev = |event_type, path: &str| {
        out.push(WatchedEvent {
            event_type,
            path: path.to_string(),
            zxid,
        })
    };
    let mut paths: Vec<&String> = old
        .iter()
        .map(|(p, _)| p)
        .chain(
            new.iter()
                .filter(|(p, _)| old.get(p).is_none())
                .map(|(p, _)| p),
        )
        .collect();
    paths.sort_unstable();
    for p in paths {
        match (old.get(p), new.get(p)) {
            (Some(_), None) => ev(EventType::NodeDeleted, p),
            (None, Some(_)) => ev(EventType::NodeCreated, p),
            (Some(a), Some(b)) => {
                if a.czxid != b.czxid {
                    // Deleted and created again in between.
                    ev(EventType::NodeDeleted, p);
                    ev(EventType::NodeCreated, p);
                } else if a.mzxid != b.mzxid {
                    ev(EventType::NodeDataChanged, p);
                }
                if a.pzxid != b.pzxid || a.children != b.children {
                    ev(EventType::NodeChildrenChanged, p);
                }
            }
            (None, None) => {}
        }
    }
    out
}
