//! The driver's side of membership changes: applying a `ConfChange` to raft, the
//! persisted configuration, the member specs, the transport and `/zookeeper/config`, and
//! matching the entry to the caller that proposed it.

use std::time::Instant;

use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeType, EntryType, Message, MessageType};
use raft::{ProgressState, StateRole, INVALID_ID};
use rocksdb::WriteBatch;

use super::{Core, Waiter};
use crate::completion::Completer;
use crate::error::{Error, Result};
use crate::member::MemberSpec;
use crate::replica::Request;
use crate::replica::Shared;
use crate::storage::record_address_into;
use crate::time::now_ms;
use crate::transport::Envelope;

impl Core {
    /// Applies a membership change at `index` (proposed at `time_ms`): raft's
    /// configuration, the persisted configuration and member specs (into the apply batch),
    /// the transport, and `/zookeeper/config` (whose watches fire). A change raft refuses
    /// (every replica refuses it alike) changes nothing and is answered with the reason.
    pub(super) fn apply_membership(
        &mut self,
        s: &Shared,
        cc: &ConfChange,
        (index, time_ms): (u64, i64),
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
            "change" => ?cc.get_change_type(), "node" => cc.node_id,
            "voters" => ?cs.voters, "learners" => ?cs.learners);
        self.raw.store().conf_state_into(batch, cs.clone())?;
        let db = self.tree_store.db().clone();
        let text = {
            let mut m = s.membership.lock();
            m.voters = cs.voters.clone();
            m.learners = cs.learners.clone();
            match cc.get_change_type() {
                ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                    let text = String::from_utf8_lossy(&cc.context);
                    match MemberSpec::parse(&text) {
                        Ok(spec) => {
                            record_address_into(&db, batch, cc.node_id, Some(&spec.to_string()));
                            if let Err(e) = s.transport.peer_added(cc.node_id, &spec.peer_addr()) {
                                slog::warn!(s.logger, "transport cannot reach the new member";
                                    "node" => cc.node_id, "spec" => %spec, "error" => %e);
                            }
                            m.specs.insert(cc.node_id, spec);
                        }
                        // A change without a spec (a transport that needs no address),
                        // or with one an earlier version wrote: the member keeps any
                        // spec it had.
                        Err(_) if text.is_empty() => {}
                        Err(e) => slog::warn!(s.logger, "member spec unreadable: ignored";
                            "node" => cc.node_id, "spec" => %text, "error" => %e),
                    }
                }
                ConfChangeType::RemoveNode => {
                    record_address_into(&db, batch, cc.node_id, None);
                    m.specs.remove(&cc.node_id);
                    // A transfer to it ends by itself (no acknowledgements) and is joined
                    // then or at shutdown.
                    s.transport.peer_removed(cc.node_id);
                }
            }
            m.version = index;
            m.configuration().render()
        };
        let mut tree = s.tree.write();
        let zxid = i64::try_from(index).unwrap_or(i64::MAX);
        if tree.set_config(zxid, time_ms, text.into_bytes(), true) {
            let events = tree.take_events();
            s.observer().config_changed(&tree, events);
        }
        Ok(())
    }
}

/// A learner added as a participant is promoted once its log is within this many
/// entries of the leader's commit index (and the leader streams to it).
const PROMOTE_WITHIN: u64 = 1_000;

/// A configuration change this node proposed, waiting to be applied here.
pub(super) struct ConfWaiter {
    pub(super) waiter: Waiter<()>,
    /// The change, to propose again when the leader refuses it for now.
    change: ConfChange,
}

impl Core {
    /// Proposes `change` for `waiter`'s caller (request `request_id`). A leader refuses at
    /// once a change while another is not applied (raft-rs would turn it into an empty
    /// entry without a word), and hands its leadership over before it removes itself.
    pub(super) fn propose_membership(
        &mut self,
        s: &Shared,
        request_id: u64,
        change: ConfChange,
        waiter: Waiter<()>,
    ) {
        if self.raw.raft.state == StateRole::Leader {
            if self.conf_change_unapplied() {
                waiter.reply.complete(Err(Error::ReconfigInProgress));
                return;
            }
            // A new leader that has not applied its predecessors' entries yet takes no
            // change until it has (raft-rs): proposed again at the next tick. A change
            // that takes this leader out of the voters waits for the next leader.
            let wait_for = if self.raw.raft.has_pending_conf() {
                Some(INVALID_ID)
            } else if leaves_voters(&change, s.id) {
                self.move_leadership(s);
                Some(s.id)
            } else {
                None
            };
            if let Some(wait_for) = wait_for {
                let request = Request::ConfChange {
                    request_id,
                    change,
                    deadline: waiter.deadline,
                    reply: waiter.reply,
                };
                self.awaiting_leader.push((request, wait_for));
                return;
            }
        }
        let context = conf_context(s.id, s.incarnation, request_id, now_ms());
        match self.raw.propose_conf_change(context, change.clone()) {
            Ok(()) => {
                self.conf_pending
                    .insert(request_id, ConfWaiter { waiter, change });
            }
            Err(e) => waiter.reply.complete(Err(Error::NoQuorum(format!(
                "configuration change not proposed: {e}"
            )))),
        }
    }

    /// On the leader, a member's forwarded proposal holding a configuration change that
    /// raft-rs would drop: refused with an answer instead (another change is pending), or
    /// held off while leadership moves (it removes this leader). True when `m` was
    /// answered so and must not be stepped.
    pub(super) fn refuse_forwarded_conf_change(&mut self, s: &Shared, m: &Message) -> bool {
        if m.get_msg_type() != MessageType::MsgPropose || self.raw.raft.state != StateRole::Leader {
            return false;
        }
        let Some(e) = m
            .entries
            .iter()
            .find(|e| e.get_entry_type() == EntryType::EntryConfChange)
        else {
            return false;
        };
        let Ok(cc) = ConfChange::parse_from_bytes(&e.data) else {
            return false;
        };
        let retry = if self.conf_change_unapplied() {
            false
        } else if self.raw.raft.has_pending_conf() {
            // Only a new leader's own entries unapplied: the member proposes it again.
            true
        } else if leaves_voters(&cc, s.id) {
            self.move_leadership(s);
            true
        } else {
            return false;
        };
        s.transport.send(
            m.from,
            Envelope::ConfChangeRefused {
                from: s.id,
                to: m.from,
                context: e.context.to_vec(),
                retry,
            },
        );
        true
    }

    /// Whether a configuration change is in the log and not applied yet (raft-rs's
    /// `has_pending_conf` also holds for a new leader until it has applied its
    /// predecessors' entries, changes or not).
    fn conf_change_unapplied(&self) -> bool {
        let r = &self.raw.raft;
        if !r.has_pending_conf() {
            return false;
        }
        let applied = r.raft_log.applied;
        match r
            .raft_log
            .entries(applied + 1, None, raft::GetEntriesContext::empty(false))
        {
            Ok(entries) => entries.iter().any(|e| {
                matches!(
                    e.get_entry_type(),
                    EntryType::EntryConfChange | EntryType::EntryConfChangeV2
                )
            }),
            // Compacted or unreadable: as raft-rs would, count it pending.
            Err(_) => true,
        }
    }

    /// The leader refused a change this node forwarded: answered, or held until a leader
    /// (another one, for the removal of a leader) is known and proposed to it.
    pub(super) fn conf_change_refused(
        &mut self,
        s: &Shared,
        leader: u64,
        context: &[u8],
        retry: bool,
    ) {
        let Some(request_id) = own_conf_request(s, context) else {
            return;
        };
        let Some(cw) = self.conf_pending.remove(&request_id) else {
            return;
        };
        if retry {
            // The removal of the leader waits for another one; anything else goes to the
            // same leader again at the next tick.
            let wait_for = if leaves_voters(&cw.change, leader) {
                leader
            } else {
                INVALID_ID
            };
            let request = Request::ConfChange {
                request_id,
                change: cw.change,
                deadline: cw.waiter.deadline,
                reply: cw.waiter.reply,
            };
            self.awaiting_leader.push((request, wait_for));
        } else {
            cw.waiter.reply.complete(Err(Error::ReconfigInProgress));
        }
    }

    /// Starts handing leadership to the voter whose log is furthest along.
    fn move_leadership(&mut self, s: &Shared) {
        if self.raw.raft.lead_transferee.is_some() {
            return;
        }
        let prs = self.raw.raft.prs();
        let target = prs
            .conf()
            .voters()
            .ids()
            .iter()
            .filter(|&id| id != s.id)
            .max_by_key(|&id| prs.get(id).map_or(0, |p| p.matched));
        if let Some(target) = target {
            slog::info!(s.logger, "moving leadership before this leader is removed";
                "to" => target);
            self.raw.transfer_leader(target);
        }
    }

    /// A configuration change entry was applied with `result`: its proposer's caller is
    /// answered — or, for a participant added as a learner, kept until it is promoted —
    /// and callers waiting for a promotion this entry makes are answered.
    pub(super) fn membership_applied(
        &mut self,
        s: &Shared,
        cc: &ConfChange,
        context: &[u8],
        result: Result<()>,
        replies: &mut Vec<(Completer<()>, Result<()>)>,
    ) {
        let id = cc.node_id;
        match cc.get_change_type() {
            ConfChangeType::AddNode => {
                for (_, w) in self.promotions.extract_if(.., |(n, _)| *n == id) {
                    replies.push((w.reply, Ok(())));
                }
            }
            ConfChangeType::RemoveNode => {
                for (_, w) in self.promotions.extract_if(.., |(n, _)| *n == id) {
                    let e = Error::BadArguments(format!("member {id} was removed before it voted"));
                    replies.push((w.reply, Err(e)));
                }
                if id == s.id && result.is_ok() {
                    slog::warn!(s.logger, "this member was removed from the ensemble");
                }
            }
            ConfChangeType::AddLearnerNode => {}
        }
        let Some(request_id) = own_conf_request(s, context) else {
            return;
        };
        let Some(cw) = self.conf_pending.remove(&request_id) else {
            return;
        };
        let joining_participant = cc.get_change_type() == ConfChangeType::AddLearnerNode
            && result.is_ok()
            && s.membership.lock().to_promote().contains(&id);
        if joining_participant {
            self.promotions.push((id, cw.waiter));
        } else {
            replies.push((cw.waiter.reply, result));
        }
    }

    /// Every tick: changes held for another leader go to it once one is known; callers
    /// of promotions past their deadline hear that the member has not caught up; a leader
    /// promotes the next learner that has caught up.
    pub(super) fn membership_tick(&mut self, s: &Shared, now: Instant) {
        // A promotion applied through a snapshot (not through its entry) answers too.
        let voters = s.membership.lock().voters.clone();
        for (_, w) in self
            .promotions
            .extract_if(.., |(id, _)| voters.contains(id))
        {
            w.reply.complete(Ok(()));
        }
        let leader = self.raw.raft.leader_id;
        for (request, _) in self
            .awaiting_leader
            .extract_if(.., |(_, old)| leader != INVALID_ID && leader != *old)
        {
            self.parked.push_back(request);
        }
        for (request, _) in self
            .awaiting_leader
            .extract_if(.., |(r, _)| r.deadline() <= now)
        {
            request.fail(Error::Timeout(self.request_timeout));
        }
        for (id, w) in self.promotions.extract_if(.., |(_, w)| w.deadline <= now) {
            w.reply.complete(Err(Error::NewConfigNoQuorum(format!(
                "member {id} has not caught up yet: it stays a learner and votes once it has"
            ))));
        }
        if leader == s.id {
            self.promote_caught_up(s);
        }
    }

    /// On the leader: promotes to voter one learner added as a participant whose log has
    /// caught up (one change at a time).
    fn promote_caught_up(&mut self, s: &Shared) {
        if self.raw.raft.has_pending_conf() {
            return;
        }
        let (candidates, specs) = {
            let m = s.membership.lock();
            (m.to_promote(), m.specs.clone())
        };
        let committed = self.raw.raft.raft_log.committed;
        let caught_up = candidates.into_iter().find(|id| {
            self.raw.raft.prs().get(*id).is_some_and(|p| {
                p.state == ProgressState::Replicate
                    && p.matched.saturating_add(PROMOTE_WITHIN) >= committed
            })
        });
        let Some(id) = caught_up else {
            return;
        };
        let mut cc = ConfChange::default();
        cc.set_change_type(ConfChangeType::AddNode);
        cc.node_id = id;
        cc.context = specs
            .get(&id)
            .map(|spec| spec.to_string().into_bytes())
            .unwrap_or_default()
            .into();
        slog::info!(s.logger, "promoting a learner that has caught up"; "node" => id);
        // Request 0: no caller waits on this entry itself.
        let context = conf_context(s.id, s.incarnation, 0, now_ms());
        if let Err(e) = self.raw.propose_conf_change(context, cc) {
            slog::warn!(s.logger, "promotion not proposed"; "node" => id, "error" => %e);
        }
    }
}

/// Whether `change` takes node `id` out of the voters (removes it, or makes it an
/// observer): a leader hands its leadership over before.
fn leaves_voters(change: &ConfChange, id: u64) -> bool {
    change.node_id == id
        && matches!(
            change.get_change_type(),
            ConfChangeType::RemoveNode | ConfChangeType::AddLearnerNode
        )
}

/// The context of a configuration change entry: who proposed it, so that node can answer
/// its caller, and when (the mtime `/zookeeper/config` gets).
pub(super) fn conf_context(
    origin: u64,
    incarnation: u64,
    request_id: u64,
    time_ms: i64,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    for v in [origin, incarnation, request_id, time_ms as u64] {
        out.extend(v.to_be_bytes());
    }
    out
}

/// The fields of a configuration change entry's context: origin, incarnation, request
/// id, time (0 in an entry of an earlier version, which had no time).
fn context_fields(context: &[u8]) -> Option<[u64; 4]> {
    if context.len() != 24 && context.len() != 32 {
        return None;
    }
    let mut fields = [0u64; 4];
    for (i, chunk) in context.chunks_exact(8).enumerate() {
        fields[i] = u64::from_be_bytes(chunk.try_into().ok()?);
    }
    Some(fields)
}

/// The request id of a configuration change entry this node (this incarnation) proposed.
pub(super) fn own_conf_request(s: &Shared, context: &[u8]) -> Option<u64> {
    let [origin, incarnation, request_id, _] = context_fields(context)?;
    (origin == s.id && incarnation == s.incarnation).then_some(request_id)
}

/// When a configuration change entry was proposed (ms since the epoch; 0 if unknown).
pub(super) fn conf_time(context: &[u8]) -> i64 {
    context_fields(context).map_or(0, |f| f[3] as i64)
}
