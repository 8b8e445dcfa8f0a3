//! The ensemble's configuration as this replica has applied it: raft's voters and
//! learners, each member's spec (from the start-up list, then from the configuration
//! changes and snapshots, persisted with them), and the configuration's version; the text
//! of `/zookeeper/config` is rendered from it.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

use raft::eraftpb::{ConfChange, ConfChangeType};

use super::{Request, Shared};
use crate::completion::Completer;
use crate::error::{Error, Result};
use crate::member::{Configuration, MemberRole, MemberSpec};

/// One change of the ensemble's members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MemberChange {
    /// Adds member `id` (or changes its spec). A participant is added as a learner and
    /// becomes a voter once it has caught up; an observer stays a learner.
    Add(u64, MemberSpec),
    /// Removes member `id`.
    Remove(u64),
}

/// The configuration applied here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Membership {
    /// Raft's voters.
    pub(crate) voters: Vec<u64>,
    /// Raft's learners (observers, and participants still catching up).
    pub(crate) learners: Vec<u64>,
    /// Each member's spec as it was added: its role is the one it was added for, so a
    /// learner whose spec says participant is one to promote once it has caught up.
    pub(crate) specs: BTreeMap<u64, MemberSpec>,
    /// The zxid of the configuration change that made it (0: the initial one).
    pub(crate) version: u64,
}

impl Membership {
    /// The configuration as clients see it: every voter and learner whose spec is known,
    /// a voter as participant and a learner as observer (whatever it was added for: a
    /// participant catching up does not vote yet).
    pub(crate) fn configuration(&self) -> Configuration {
        let mut members = BTreeMap::new();
        for (ids, role) in [
            (&self.voters, MemberRole::Participant),
            (&self.learners, MemberRole::Observer),
        ] {
            for id in ids {
                if let Some(spec) = self.specs.get(id) {
                    members.insert(*id, spec.clone().with_role(role));
                }
            }
        }
        Configuration {
            members,
            version: self.version,
        }
    }

    /// Every member, voters first, with its role and its spec when one is known (a node
    /// started without member addresses knows none).
    pub(crate) fn roster(&self) -> Vec<(u64, MemberRole, Option<MemberSpec>)> {
        let mut out = Vec::new();
        for (ids, role) in [
            (&self.voters, MemberRole::Participant),
            (&self.learners, MemberRole::Observer),
        ] {
            for id in ids {
                out.push((*id, role, self.specs.get(id).cloned()));
            }
        }
        out
    }

    /// Learners added as participants: each becomes a voter once it has caught up.
    pub(crate) fn to_promote(&self) -> Vec<u64> {
        self.learners
            .iter()
            .copied()
            .filter(|id| {
                self.specs
                    .get(id)
                    .is_some_and(|s| s.role == MemberRole::Participant)
            })
            .collect()
    }

    /// Whether `id` is a voter or a learner.
    pub(crate) fn contains(&self, id: u64) -> bool {
        self.voters.contains(&id) || self.learners.contains(&id)
    }

    /// The raft change that makes `change`, or why it cannot be made
    /// ([`Error::BadArguments`]): an id of 0, the removal of a member there is not or of
    /// the last voter.
    pub(crate) fn conf_change(&self, change: &MemberChange) -> Result<ConfChange> {
        let mut cc = ConfChange::default();
        match change {
            MemberChange::Add(0, _) => {
                return Err(Error::BadArguments("a member's id is not 0".into()));
            }
            MemberChange::Add(id, spec) => {
                // What travels and is persisted is the spec as written back, which must
                // read again (it may be longer than what was given).
                MemberSpec::parse(&spec.to_string())?;
                // A participant joins as a learner: it votes once it has caught up, so
                // adding it never costs the ensemble its quorum.
                let promoted_now = self.voters.contains(id) && spec.role == MemberRole::Participant;
                cc.set_change_type(if promoted_now {
                    ConfChangeType::AddNode
                } else {
                    ConfChangeType::AddLearnerNode
                });
                cc.node_id = *id;
                cc.context = spec.to_string().into_bytes().into();
            }
            MemberChange::Remove(id) => {
                if !self.contains(*id) {
                    return Err(Error::BadArguments(format!("{id} is not a member")));
                }
                if self.voters == [*id] {
                    return Err(Error::BadArguments(format!(
                        "{id} is the last voter: it cannot be removed"
                    )));
                }
                cc.set_change_type(ConfChangeType::RemoveNode);
                cc.node_id = *id;
            }
        }
        Ok(cc)
    }
}

impl Shared {
    /// Proposes `change`; `reply` hears once it is applied here — for a participant
    /// added, once it votes ([`Error::NewConfigNoQuorum`] if it has not caught up by
    /// `deadline`; it then stays a learner and is promoted once it has). Refused at once:
    /// a change that cannot be made ([`Error::BadArguments`]), one while another is not
    /// applied yet ([`Error::ReconfigInProgress`]).
    pub(crate) fn start_member_change(
        &self,
        change: &MemberChange,
        deadline: Instant,
        reply: Completer<()>,
    ) -> Result<()> {
        if let Err(e) = self.check_running() {
            reply.forget();
            return Err(e);
        }
        let cc = match self.membership.lock().conf_change(change) {
            Ok(cc) => cc,
            Err(e) => {
                reply.forget();
                return Err(e);
            }
        };
        self.post_request(Request::ConfChange {
            request_id: self.next_request.fetch_add(1, Ordering::Relaxed),
            change: cc,
            deadline,
            reply,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_come_from_raft_and_participants_catching_up_are_promoted() {
        let mut m = Membership {
            voters: vec![1, 2],
            learners: vec![4, 5],
            version: 9,
            ..Membership::default()
        };
        m.specs.insert(1, MemberSpec::participant("h1", 1));
        m.specs.insert(2, MemberSpec::participant("h2", 2));
        m.specs.insert(4, MemberSpec::participant("h4", 4));
        m.specs.insert(
            5,
            MemberSpec::participant("h5", 5).with_role(MemberRole::Observer),
        );
        m.specs.insert(7, MemberSpec::participant("h7", 7));
        let c = m.configuration();
        assert_eq!(c.voters(), [1, 2]);
        assert_eq!(
            c.observers(),
            [4, 5],
            "a participant catching up shows as observer"
        );
        assert!(
            !c.members.contains_key(&7),
            "a spec of no member is not shown"
        );
        assert_eq!(c.version, 9);
        assert_eq!(m.to_promote(), [4]);
        assert!(m.contains(5) && !m.contains(7));
    }
}
