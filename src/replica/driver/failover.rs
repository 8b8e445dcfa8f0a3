//! Failover as fast as the crash allows: a follower told by its transport that the
//! leader's process is gone (its connection was closed or reset, or its port refuses)
//! stops honouring the leader's lease and starts a pre-vote, instead of waiting out the
//! election timeout.
//!
//! A false alarm is harmless: the pre-vote changes no term, and the other voters, still
//! hearing the live leader, refuse it (raft-rs ignores vote requests within the lease);
//! the leader's next heartbeat makes this member a follower again. A leader that vanishes
//! without a reset (a machine lost, a pause, a partition) is still found by the election
//! timeout.
//!
//! The surviving voters are ranked by id: the first campaigns at once and each next one a
//! tick later, so that members with equal logs do not split the vote. A pre-vote from a
//! member whose log is behind is refused by the others, and a survivor that refuses it for
//! that reason campaigns itself, ranked again without the asker. The plan is dropped when
//! the leader is heard from again, and only a voter ever campaigns.

use raft::{StateRole, INVALID_ID};

use super::Core;
use crate::replica::Shared;

/// A campaign planned after the leader was reported gone: alive until a leader is known
/// again (or this member becomes a candidate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PlannedCampaign {
    /// The leader that went.
    lost: u64,
    /// Ticks to wait before campaigning (this member's rank among the survivors).
    ticks_left: usize,
    /// Whether this member has campaigned for it.
    campaigned: bool,
}

/// This member's rank among the voters other than `lost`, by id, or None when it is not
/// one of them.
fn rank(voters: impl IntoIterator<Item = u64>, lost: u64, me: u64) -> Option<usize> {
    let mut survivors: Vec<u64> = voters.into_iter().filter(|&v| v != lost).collect();
    survivors.sort_unstable();
    survivors.iter().position(|&v| v == me)
}

impl Core {
    /// The transport reports `peer`'s process gone. When it is this follower's leader,
    /// the lease is over: campaign at once, or after this member's rank in ticks.
    pub(super) fn peer_lost(&mut self, s: &Shared, peer: u64) {
        let r = &mut self.raw.raft;
        if peer == INVALID_ID
            || peer != r.leader_id
            || r.state != StateRole::Follower
            || !r.promotable()
        {
            return;
        }
        let Some(rank) = rank(r.prs().conf().voters().ids().iter(), peer, s.id) else {
            return;
        };
        // A vote request from another survivor is now granted (the lease has run out
        // here), and raft's own timeout, if it comes first, campaigns too.
        r.election_elapsed = r.election_elapsed.max(r.election_timeout());
        slog::info!(s.logger, "the leader's connection is gone: pre-vote";
            "leader" => peer, "term" => r.term, "after_ticks" => rank);
        self.planned_campaign = Some(PlannedCampaign {
            lost: peer,
            ticks_left: rank,
            campaigned: false,
        });
        self.campaign_if_due(s);
    }

    /// Whether the planned campaign still stands: no leader known yet, and this member a
    /// voter (still) that is a follower or pre-candidate. Drops it otherwise.
    fn planned_campaign_stands(&mut self) -> bool {
        let Some(plan) = self.planned_campaign else {
            return false;
        };
        let r = &self.raw.raft;
        let stands = r.promotable()
            && matches!(r.state, StateRole::Follower | StateRole::PreCandidate)
            && (r.leader_id == plan.lost || r.leader_id == INVALID_ID);
        if !stands {
            self.planned_campaign = None;
        }
        stands
    }

    /// Runs the planned campaign when its turn has come.
    fn campaign_if_due(&mut self, s: &Shared) {
        if !self.planned_campaign_stands() {
            return;
        }
        match &mut self.planned_campaign {
            Some(plan) if plan.ticks_left == 0 && !plan.campaigned => plan.campaigned = true,
            _ => return,
        }
        self.campaign(s);
    }

    fn campaign(&mut self, s: &Shared) {
        // raft-rs's own timeout checks this; a campaign asked for directly does not.
        if !self.raw.raft.promotable() {
            return;
        }
        if let Err(e) = self.raw.campaign() {
            slog::debug!(s.logger, "campaign refused"; "error" => %e);
        }
    }

    /// Survivor `asker` asked this one for a pre-vote (from a log ending at `last_index`
    /// of `log_term`). When this member's log is further along, the asker cannot win
    /// here: this member campaigns (again, if it did already: the asker, whose lease is
    /// over, then grants it) at its rank among the survivors other than the asker — at
    /// once if first — so that two survivors refusing the same asker do not split the
    /// vote.
    pub(super) fn pre_vote_asked(
        &mut self,
        s: &Shared,
        asker: u64,
        (last_index, log_term): (u64, u64),
    ) {
        if !self.planned_campaign_stands()
            || self.raw.raft.raft_log.is_up_to_date(last_index, log_term)
        {
            return;
        }
        let Some(plan) = self.planned_campaign else {
            return;
        };
        let voters = self.raw.raft.prs().conf().voters().ids();
        let others = voters.iter().filter(|&v| v != asker);
        let Some(rank) = rank(others, plan.lost, s.id) else {
            return;
        };
        self.planned_campaign = Some(PlannedCampaign {
            lost: plan.lost,
            ticks_left: rank,
            campaigned: false,
        });
        self.campaign_if_due(s);
    }

    /// A message from the leader this member was told had gone: it lives (a connection
    /// reset, not a crash), and the planned campaign is dropped.
    pub(super) fn heard_from_leader(&mut self, from: u64) {
        if self.planned_campaign.is_some_and(|p| p.lost == from) {
            self.planned_campaign = None;
        }
    }

    /// One tick passed: the planned campaign comes a tick nearer.
    pub(super) fn planned_campaign_tick(&mut self, s: &Shared) {
        if let Some(plan) = &mut self.planned_campaign {
            plan.ticks_left = plan.ticks_left.saturating_sub(1);
            self.campaign_if_due(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::rank;

    #[test]
    fn survivors_are_ranked_by_id_without_the_lost_leader() {
        assert_eq!(rank([1, 2, 3], 1, 2), Some(0));
        assert_eq!(rank([1, 2, 3], 1, 3), Some(1));
        assert_eq!(rank([3, 2, 1], 2, 1), Some(0));
        assert_eq!(rank([3, 2, 1], 2, 3), Some(1));
        assert_eq!(rank([1, 2, 3, 4, 5], 3, 5), Some(3));
        assert_eq!(rank([1, 2, 3], 1, 4), None, "a learner has no rank");
    }
}
