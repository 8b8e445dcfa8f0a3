//! The driver: the one place where raft, disk and network meet.
//!
//! [`Core`] owns the `RawNode` and follows raft-rs's `Ready` contract on every run:
//!
//! 1. send the messages raft allows before persisting (a leader's appends, and its commit
//!    broadcast, which raft-rs makes as soon as the commit index moves: followers hear of
//!    a commit before the leader applies it and answers the writer);
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
//! Writes proposed by this node are tracked until applied; when the leader changes with
//! some in flight, they are answered `ConnectionLoss` at once and their sessions start a
//! new epoch of their order (see `DataTree::apply_ordered`).
//!
//! The rest lives beside this file, each part an `impl Core` of its own:
//!
//! - `snapshots`: compacting the log once it is long enough (`Config::snapshot_entries`,
//!   `Config::snapshot_log_bytes`; the tree on disk is the snapshot, so compaction is one
//!   range delete), starting transfers to followers behind it, staging and installing
//!   one received (see `node::snapshot`);
//! - `membership`: applying configuration changes.
//!
//! Housekeeping that walks sessions or the tree (heartbeats, the leader's expiry scan,
//! reaping) is the keeper's (`replica::keeper`), on a thread of its own: at a tick the
//! driver only pokes it, and proposes what it sends back while this node still leads.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeV2, Entry, EntryType, Message, MessageType};
use raft::{RawNode, ReadState, SnapshotStatus, INVALID_ID};
use rocksdb::WriteBatch;

mod failover;
mod membership;
mod snapshots;

use super::keeper::Poke;
use super::snapshot::{Incoming, Outgoing};
use super::{Config, Msg, Request, Role, Shared};
use crate::command::{Command, Op};
use crate::completion::Completer;
use crate::error::{Error, Result};
use crate::storage::{RaftStorage, TreeStore};
use crate::transport::{Envelope, RaftMessage};
use crate::tree::{OpResult, Txn};
use membership::conf_time;

/// Most mailbox messages handled before raft gets to produce a `Ready`.
const MAX_MESSAGES_PER_ROUND: usize = 4096;
/// Most ticks applied in one round, however many came due.
const MAX_TICKS_PER_ROUND: u32 = 2;
/// Rounds a worker runs a busy node before giving other nodes a turn.
const MAX_ROUNDS_PER_RUN: usize = 16;
/// A Ready handled for longer than this is logged at WARN (as etcd's "slow fdatasync"):
/// while it lasts, this member sends no heartbeats and answers no votes, so a stall near
/// the election timeout explains an election nobody asked for.
const SLOW_READY: Duration = Duration::from_millis(500);

/// A request's completer, held by the driver until the request is done or its deadline
/// passes.
struct Waiter<T: Send + 'static> {
    reply: Completer<T>,
    deadline: Instant,
    /// When the request was handed to raft (ReadIndex requests are re-issued if unanswered).
    issued: Instant,
}

impl<T: Send + 'static> Waiter<T> {
    /// Keeps the waiter if its deadline is still ahead; otherwise completes it with `e`.
    fn keep(&mut self, now: Instant, e: &Error) -> bool {
        now < self.deadline || {
            self.reply.fill(Err(e.clone()));
            false
        }
    }
}

/// A write this node proposed, waiting to be applied.
pub(super) struct PendingWrite {
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
    conf_pending: HashMap<u64, membership::ConfWaiter>,
    /// Callers of changes that added a participant as a learner, waiting for it to be
    /// promoted to voter (by node id).
    promotions: Vec<(u64, Waiter<()>)>,
    /// Configuration changes to propose again once a leader other than the given one is
    /// known (a removal of the leader, which first hands its leadership over).
    awaiting_leader: Vec<(Request, u64)>,
    /// Read indexes confirmed by the leader, waiting for the apply to reach them.
    reads_to_apply: Vec<(u64, Waiter<u64>)>,
    /// Requests not yet handed to raft (no leader known yet), in arrival order.
    parked: VecDeque<Request>,
    /// Re-issue a ReadIndex that got no answer after this long (raft-rs drops them while a
    /// new leader has not committed in its term yet).
    read_retry: Duration,
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
    /// The campaign this follower runs because its leader's process went (`failover`).
    planned_campaign: Option<failover::PlannedCampaign>,
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
            promotions: Vec::new(),
            awaiting_leader: Vec::new(),
            reads_to_apply: Vec::new(),
            parked: VecDeque::new(),
            read_retry: config.ticks(config.heartbeat_tick.saturating_mul(2)),
            request_timeout: config.request_timeout,
            max_bytes_per_round: config.max_bytes_per_round(),
            outgoing: HashMap::new(),
            incoming: None,
            next_transfer: 1,
            snapshot_entries: config.snapshot_entries,
            snapshot_log_bytes: config.snapshot_log_bytes,
            log_bytes: 0,
            planned_campaign: None,
        }
    }

    /// Fails every waiting request (the node is stopping).
    pub(crate) fn fail_all(self, e: Error) {
        for (_, p) in self.pending {
            p.waiter.reply.complete(Err(e.clone()));
        }
        for (_, w) in self.reads {
            w.reply.complete(Err(e.clone()));
        }
        for (_, w) in self.conf_pending {
            w.waiter.reply.complete(Err(e.clone()));
        }
        for (_, w) in self.promotions {
            w.reply.complete(Err(e.clone()));
        }
        for (r, _) in self.awaiting_leader {
            r.fail(e.clone());
        }
        for (_, w) in self.reads_to_apply {
            w.reply.complete(Err(e.clone()));
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
                s.delivered(&msg);
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
                self.planned_campaign_tick(s);
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
            Msg::Envelope(Envelope::Raft(RaftMessage(m))) => {
                if m.get_msg_type() == MessageType::MsgSnapshot && !self.snapshot_staged(&m) {
                    slog::warn!(s.logger, "snapshot message without its staged data dropped";
                        "from" => m.from);
                    return;
                }
                if self.refuse_forwarded_conf_change(s, &m) {
                    return;
                }
                let pre_vote = (m.get_msg_type() == MessageType::MsgRequestPreVote)
                    .then_some((m.from, (m.index, m.log_term)));
                if matches!(
                    m.get_msg_type(),
                    MessageType::MsgHeartbeat | MessageType::MsgAppend
                ) {
                    self.heard_from_leader(m.from);
                }
                if let Err(e) = self.raw.step(m) {
                    slog::debug!(s.logger, "dropped raft message"; "error" => %e);
                }
                if let Some((asker, log)) = pre_vote {
                    self.pre_vote_asked(s, asker, log);
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
            Msg::Envelope(Envelope::ConfChangeRefused {
                from,
                context,
                retry,
                ..
            }) => self.conf_change_refused(s, from, &context, retry),
            Msg::Unreachable(peer) => self.raw.report_unreachable(peer),
            Msg::PeerLost(peer) => self.peer_lost(s, peer),
            Msg::Envelope(Envelope::SessionPing { from, sessions, .. }) => {
                if s.keeper.tracker.lock().leading() {
                    s.heard_from(from, &sessions);
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
                    s.observer().sessions_acknowledged();
                }
            }
            Msg::Request(r) => self.parked.push_back(r),
            // Proposed only by a leader (the keeper decided while this node led).
            Msg::Housekeeping(op) => {
                if self.raw.raft.state == raft::StateRole::Leader {
                    self.propose_internal(s, op);
                }
            }
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
                        reply.complete(Err(Error::NoQuorum(e.to_string())));
                    }
                },
                Request::ConfChange {
                    request_id,
                    change,
                    deadline,
                    reply,
                } => self.propose_membership(
                    s,
                    request_id,
                    change,
                    Waiter {
                        reply,
                        deadline,
                        issued: now,
                    },
                ),
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

    /// Proposes a housekeeping command from this node (no caller waits for it).
    fn propose_internal(&mut self, s: &Shared, op: Op) {
        let (_, data) = s.command(0, (0, 0), &[], op);
        if let Err(e) = self.raw.propose(vec![], data) {
            slog::warn!(s.logger, "housekeeping proposal dropped"; "error" => %e);
        }
    }

    /// The leader's view of the other members, for [`Metrics::followers`]: refreshed at
    /// each tick (empty when not leading).
    fn publish_progress(&self, s: &Shared) {
        let mut out = Vec::new();
        if self.raw.raft.state == raft::StateRole::Leader {
            let last = self.raw.raft.raft_log.last_index();
            let prs = self.raw.raft.prs();
            let voters = prs.conf().voters().ids();
            for (id, p) in prs.iter() {
                if *id != s.id {
                    out.push(super::FollowerProgress {
                        id: *id,
                        matched: p.matched,
                        lag: last.saturating_sub(p.matched),
                        voter: voters.contains(*id),
                        active: p.recent_active,
                    });
                }
            }
            out.sort_by_key(|f| f.id);
        }
        let mut published = s.counters.followers.lock();
        if *published != out {
            *published = out;
        }
    }

    fn on_tick(&mut self, s: &Shared) {
        self.publish_progress(s);
        s.keeper.poke(Poke {
            leader: self.raw.raft.leader_id,
            leading: self.raw.raft.state == raft::StateRole::Leader,
        });
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
        self.conf_pending
            .retain(|_, w| w.waiter.keep(now, &timeout));
        self.membership_tick(s, now);
        self.reads_to_apply
            .retain_mut(|(_, w)| w.keep(now, &timeout));
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

    /// Hands raft's messages to the transport, each peer's together and in raft's order:
    /// on an idle link the TCP transport writes them on this thread at once (a leader's
    /// commit broadcast is on the wire before it applies the entries and answers the
    /// writer's client), on a busy one they join the peer's queue.
    fn send(&mut self, s: &Shared, msgs: Vec<Message>) {
        let mut by_peer: Vec<(u64, Vec<Envelope>)> = Vec::new();
        for m in msgs {
            if m.get_msg_type() == MessageType::MsgSnapshot {
                self.start_transfer(s, m);
                continue;
            }
            let to = m.to;
            match by_peer.iter_mut().find(|(peer, _)| *peer == to) {
                Some((_, envelopes)) => envelopes.push(Envelope::Raft(RaftMessage(m))),
                None => by_peer.push((to, vec![Envelope::Raft(RaftMessage(m))])),
            }
        }
        for (to, envelopes) in by_peer {
            s.transport.send_all(to, envelopes);
        }
    }

    fn handle_ready(&mut self, s: &Shared) -> Result<()> {
        let started = Instant::now();
        let mut rd = self.raw.ready();
        let mut new_leader = None;
        if let Some(ss) = rd.ss() {
            let role = Role::from_raft(ss.raft_state);
            let previous = s.role.swap(role, Ordering::AcqRel);
            let previous_leader = s.leader.swap(ss.leader_id, Ordering::AcqRel);
            // A leader of a term not counted yet: a pre-vote that came to nothing clears
            // the leader for a while, then hears the same one again in the same term.
            if ss.leader_id != INVALID_ID
                && s.counters
                    .leader_term
                    .fetch_max(self.raw.raft.term, Ordering::Relaxed)
                    < self.raw.raft.term
            {
                s.counters.leader_changes.fetch_add(1, Ordering::Relaxed);
            }
            if previous_leader != ss.leader_id {
                // Answered after this Ready's entries are applied: a write committed in
                // it gets its real outcome.
                new_leader = Some(ss.leader_id);
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
        let writing = Instant::now();
        let persisted = self.raw.store().persist(&entries, rd.hs())?;
        let written = writing.elapsed();
        if persisted {
            s.counters.fsync.record(written);
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
        s.counters
            .commit_index
            .store(self.raw.raft.raft_log.committed, Ordering::Relaxed);
        self.on_read_states(read_states);
        if let Some(leader) = new_leader {
            self.leader_changed(s, leader);
        }
        let took = started.elapsed();
        if took >= SLOW_READY {
            slog::warn!(s.logger, "slow raft round: no heartbeats or votes meanwhile";
                "took_ms" => took.as_millis() as u64, "log_write_ms" => written.as_millis() as u64,
                "entries" => entries.len(), "synced" => persisted);
        }
        self.maybe_compact(s)
    }

    /// The leader changed: writes handed to another leader may be lost (or committed after
    /// all). Their callers hear `ConnectionLoss` now rather than a timeout later, and their
    /// sessions start a new epoch, so nothing the session sends afterwards can be applied
    /// before them (see `DataTree::apply_ordered`).
    fn leader_changed(&mut self, s: &Shared, leader: u64) {
        let reason =
            format!("the raft leader changed (now {leader}) while the write was in flight");
        self.lose_pending(s, |p| p.leader != leader, &reason);
    }

    /// Answers the pending writes `lost` picks with `ConnectionLoss` (their outcome is
    /// unknown: they may be applied, or never), and restarts their sessions' order.
    pub(super) fn lose_pending(
        &mut self,
        s: &Shared,
        lost: impl Fn(&PendingWrite) -> bool,
        reason: &str,
    ) {
        let ids: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| lost(p))
            .map(|(id, _)| *id)
            .collect();
        if ids.is_empty() {
            return;
        }
        slog::info!(s.logger, "writes in flight answered: outcome unknown";
            "writes" => ids.len(), "reason" => reason);
        for id in ids {
            if let Some(p) = self.pending.remove(&id) {
                restart_order(s, p.order);
                p.waiter
                    .reply
                    .complete(Err(Error::ConnectionLoss(reason.to_string())));
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
        self.reads_to_apply.retain_mut(|(index, w)| {
            if *index <= applied {
                w.reply.fill(Ok(*index));
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
    ///
    /// So a follower applies a committed entry only once its own fsync of it is done, even
    /// when the leader and another follower made it committed before: while that fsync
    /// lasts, a read here right after the leader answered the write sees the old value
    /// (ZooKeeper's followers apply on COMMIT without waiting for their own log flush;
    /// see "Reads on another member right after a write" in docs/consistency.md).
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
                        let res = self.apply_command(s, e.index, &cmd)?;
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
                    let res =
                        self.apply_membership(s, &cc, (e.index, conf_time(&e.context)), &mut batch);
                    self.membership_applied(s, &cc, &e.context, res, &mut conf_replies);
                }
                EntryType::EntryConfChangeV2 => {
                    // Never proposed by zkraft; applied as raft-rs defines it.
                    let cc = ConfChangeV2::parse_from_bytes(&e.data)
                        .map_err(|err| Error::Corrupt(err.to_string()))?;
                    match self.raw.apply_conf_change(&cc) {
                        Ok(cs) => {
                            let mut m = s.membership.lock();
                            m.voters = cs.voters.clone();
                            m.learners = cs.learners.clone();
                            drop(m);
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
            if let Some(e) = tree.take_store_error() {
                // A znode the apply needed could not be read: what it computed cannot be
                // trusted, and nothing of it is written.
                return Err(e);
            }
            tree.set_zxid(last);
            let dirty = tree.take_dirty();
            let tree = parking_lot::RwLockWriteGuard::downgrade(tree);
            self.tree_store.write_into(&mut batch, &tree, &dirty, last);
        }
        self.raw.store().commit_into(&mut batch, last)?;
        self.tree_store.commit(batch)?;
        // Written: the tree's store may let its copy of the batch's changes go.
        s.tree.write().written();
        self.raw.store().set_applied(last);
        self.applied = last;
        s.applied.store(last, Ordering::Release);
        s.counters
            .entries_applied
            .fetch_add(entries.len() as u64, Ordering::Relaxed);
        s.counters.apply_batches.fetch_add(1, Ordering::Relaxed);
        for (reply, res) in replies {
            reply.complete(res);
        }
        for (reply, res) in conf_replies {
            reply.complete(res);
        }
        self.release_reads();
        Ok(())
    }

    /// Applies one command under the tree's write lock and queues the watch events it
    /// caused before the lock is released.
    /// Applies one command; its outcome inside, a failure of the tree's storage outside
    /// (the node must stop: the outcome was computed from a read the disk refused).
    fn apply_command(&self, s: &Shared, index: u64, cmd: &Command) -> Result<Result<OpResult>> {
        let txn = Txn {
            zxid: i64::try_from(index).unwrap_or(i64::MAX),
            time: cmd.time_ms,
            session: cmd.session,
        };
        let mut tree = s.tree.write();
        let res = tree.apply_ordered(txn, cmd.origin, cmd.order, &cmd.auth, &cmd.op);
        if let Some(e) = tree.take_store_error() {
            // Stopped before the lock is released: no read, watch or answer sees what
            // this entry computed.
            s.stopped.store(true, Ordering::SeqCst);
            return Err(e);
        }
        let events = tree.take_events();
        // The host hears of it before the tree lock is released: a read that sees the
        // entry's state comes after the events it caused were queued.
        s.observer().applied(&tree, cmd, &res, events);
        Ok(res)
    }
}

/// A request of `order`'s session and epoch was lost, or may have been: its session
/// starts a new epoch (once per epoch), so no later request counts on following it.
fn restart_order(s: &Shared, order: Option<(i64, u64)>) {
    if let Some((session, epoch)) = order {
        s.observer().order_lost(session, epoch);
    }
}
