//! [`SessionTracker`]: the leader's view of which sessions are alive — pure bookkeeping,
//! with time passed in, so its rules are unit-tested without clocks or a cluster.
//!
//! Liveness travels outside the raft log: hosts heartbeat the sessions they host to the
//! leader, which keeps one deadline per session (`now + timeout` at every heartbeat) and
//! asks for the expiry of every session whose deadline passed. A node that becomes leader
//! knows nothing of when sessions were last heard from, so it starts every deadline
//! afresh: a full timeout from its first tick as leader — a leader change never expires a
//! live session. An expiry is asked for once, and again only if it has not been applied
//! within `retry_after` (its proposal may have been lost).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::time::deadline_after;

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct SessionTracker {
    deadlines: HashMap<i64, Instant>,
    /// Sessions whose expiry was asked for, and when to ask again.
    expiring: HashMap<i64, Instant>,
    leading: bool,
    retry_after: Duration,
}

impl SessionTracker {
    /// A tracker that re-asks for a lost expiry after `retry_after`.
    pub(crate) fn new(retry_after: Duration) -> SessionTracker {
        SessionTracker {
            deadlines: HashMap::new(),
            expiring: HashMap::new(),
            leading: false,
            retry_after,
        }
    }

    /// Whether this node leads now. Forgets everything on a change (a new leader starts
    /// every deadline afresh; a follower keeps none). True when it just became leader.
    pub(crate) fn set_leading(&mut self, leading: bool) -> bool {
        let became = leading && !self.leading;
        if leading != self.leading {
            self.deadlines.clear();
            self.expiring.clear();
        }
        self.leading = leading;
        became
    }

    /// Whether this node leads (as last told).
    pub(crate) fn leading(&self) -> bool {
        self.leading
    }

    /// Leader: these sessions (with their timeouts) were heard from at `now`.
    pub(crate) fn heard(
        &mut self,
        now: Instant,
        sessions: impl IntoIterator<Item = (i64, Duration)>,
    ) {
        if !self.leading {
            return;
        }
        for (id, timeout) in sessions {
            self.deadlines.insert(id, deadline_after(now, timeout));
        }
    }

    /// Leader: the sessions to expire at `now`, among the live ones (with their
    /// timeouts). A live session not seen before gets a full timeout from now; sessions no
    /// longer live are forgotten. Each returned session counts as being expired until
    /// `retry_after` has passed.
    pub(crate) fn due(
        &mut self,
        now: Instant,
        live: impl IntoIterator<Item = (i64, Duration)>,
    ) -> Vec<i64> {
        if !self.leading {
            return Vec::new();
        }
        let live: HashMap<i64, Duration> = live.into_iter().collect();
        self.deadlines.retain(|id, _| live.contains_key(id));
        self.expiring.retain(|id, _| live.contains_key(id));
        let mut due = Vec::new();
        for (id, timeout) in &live {
            let deadline = *self
                .deadlines
                .entry(*id)
                .or_insert_with(|| deadline_after(now, *timeout));
            let retry_due = self.expiring.get(id).is_none_or(|at| now >= *at);
            if now >= deadline && retry_due {
                due.push(*id);
            }
        }
        due.sort_unstable();
        for id in &due {
            self.expiring
                .insert(*id, deadline_after(now, self.retry_after));
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(4);
    const RETRY: Duration = Duration::from_secs(1);

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    #[test]
    fn a_session_heard_from_lives_and_a_silent_one_expires_after_its_timeout() {
        let t0 = Instant::now();
        let mut tr = SessionTracker::new(RETRY);
        assert!(tr.set_leading(true));
        let live = [(1, T), (2, T)];
        assert!(
            tr.due(t0, live).is_empty(),
            "a full timeout from the first sight"
        );
        for ms in (500..=4900).step_by(500) {
            tr.heard(at(t0, ms), [(1, T)]);
            let due = tr.due(at(t0, ms), live);
            match ms {
                ..=3500 => assert!(due.is_empty(), "at {ms} ms"),
                4000 => assert_eq!(due, [2], "session 2 went silent at 0 ms"),
                _ => assert!(due.is_empty(), "asked once until the retry, at {ms} ms"),
            }
        }
    }

    #[test]
    fn a_lost_expiry_is_asked_for_again_and_a_gone_session_is_forgotten() {
        let t0 = Instant::now();
        let mut tr = SessionTracker::new(RETRY);
        tr.set_leading(true);
        tr.due(t0, [(7, T)]);
        assert_eq!(tr.due(at(t0, 4000), [(7, T)]), [7]);
        assert!(tr.due(at(t0, 4500), [(7, T)]).is_empty());
        assert_eq!(tr.due(at(t0, 5000), [(7, T)]), [7], "the proposal was lost");
        assert!(tr.due(at(t0, 5100), []).is_empty(), "applied: gone");
        assert!(tr.deadlines.is_empty() && tr.expiring.is_empty());
    }

    #[test]
    fn a_new_leader_gives_every_session_a_full_timeout_and_followers_track_nothing() {
        let t0 = Instant::now();
        let mut tr = SessionTracker::new(RETRY);
        tr.set_leading(true);
        tr.due(t0, [(1, T)]);
        assert!(!tr.set_leading(false));
        tr.heard(at(t0, 100), [(1, T)]);
        assert!(
            tr.due(at(t0, 9000), [(1, T)]).is_empty(),
            "followers expire nothing"
        );
        assert!(tr.set_leading(true));
        assert!(tr.due(at(t0, 9000), [(1, T)]).is_empty(), "fresh timeout");
        assert!(tr.due(at(t0, 12_999), [(1, T)]).is_empty());
        assert_eq!(tr.due(at(t0, 13_000), [(1, T)]), [1]);
    }
}
