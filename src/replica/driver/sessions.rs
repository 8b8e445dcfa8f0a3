//! The driver's session machinery: heartbeats of the sessions this node hosts, sent to
//! the leader; on the leader, the liveness bookkeeping (`SessionTracker`) and the
//! `CloseSession` proposals for the sessions it finds expired; and reaping of containers
//! and TTL znodes.

use std::time::{Duration, Instant};

use raft::INVALID_ID;

use super::Core;
use crate::command::Op;
use crate::replica::Shared;
use crate::time::now_ms;
use crate::transport::Envelope;

impl Core {
    /// Leader: the sessions named were heard from; push their deadlines out.
    /// Only the sessions `host` hosts count: a node that still believes it hosts a session
    /// that moved away cannot keep it alive.
    pub(super) fn heard_from(&mut self, s: &Shared, host: u64, sessions: &[i64]) {
        if !self.tracker.leading() {
            return;
        }
        let tree = s.tree.read();
        let heard = sessions.iter().filter_map(|id| {
            tree.sessions()
                .get(id)
                .filter(|rec| rec.host == host)
                .map(|rec| (*id, timeout_of(rec)))
        });
        self.tracker.heard(Instant::now(), heard);
    }

    /// Proposes a housekeeping command from this node (no caller waits for it).
    pub(super) fn propose_internal(&mut self, s: &Shared, op: Op) {
        let (_, data) = s.command(0, (0, 0), &[], op);
        if let Err(e) = self.raw.propose(vec![], data) {
            slog::warn!(s.logger, "housekeeping proposal dropped"; "error" => %e);
        }
    }

    /// Heartbeats, session expiry and reaping: the session machinery's tick.
    pub(super) fn sessions_tick(&mut self, s: &Shared) {
        let now = Instant::now();
        let leader = self.raw.raft.leader_id;
        let is_leader = self.raw.raft.state == raft::StateRole::Leader;
        if self.tracker.set_leading(is_leader) {
            self.last_reap = now;
        }
        if now.duration_since(self.last_ping) >= self.ping_interval {
            self.last_ping = now;
            let (now, window) = (
                crate::time::mono_ms(),
                2 * self.ping_interval.as_millis() as i64,
            );
            let hosted = s.observer().heartbeats_due(now, window);
            if !hosted.is_empty() {
                if leader == s.id && is_leader {
                    self.heard_from(s, s.id, &hosted);
                    s.observer().sessions_acknowledged();
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
        let expired = {
            let tree = s.tree.read();
            let live = tree
                .sessions()
                .iter()
                .map(|(id, rec)| (*id, timeout_of(rec)));
            self.tracker.due(now, live)
        };
        for id in expired {
            slog::info!(s.logger, "expiring session"; "session" => format!("{id:#x}"));
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
}

/// A session's timeout as the replicated state records it.
pub(super) fn timeout_of(rec: &crate::tree::SessionRecord) -> Duration {
    Duration::from_millis(rec.timeout_ms.max(0) as u64)
}
