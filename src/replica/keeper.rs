//! The keeper: the replica's housekeeping, off the raft driver — heartbeats of the
//! sessions this node hosts (sent to the leader), the leader's scan for expired sessions,
//! and reaping of containers and TTL znodes.
//!
//! Each of these walks every hosted session, every session of the ensemble or the whole
//! tree: on the driver they would hold up the next raft round by as much. So the driver
//! only pokes the keeper's thread once per tick with what raft knows (who leads), and the
//! keeper reads the tree under its read lock, keeps the leader's liveness bookkeeping
//! (`SessionTracker`, shared with the driver, which records the heartbeats other members
//! send) and hands the driver its proposals through the mailbox, where the driver proposes
//! them only if it still leads.

use std::sync::Weak;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};
use parking_lot::Mutex;
use raft::INVALID_ID;

use super::session_tracker::SessionTracker;
use super::{Config, Msg, Shared};
use crate::command::Op;
use crate::error::{Error, Result};
use crate::time::now_ms;
use crate::transport::Envelope;

/// What the driver tells the keeper at a tick: raft's view of the leadership.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Poke {
    /// The leader's id (`INVALID_ID`: none known).
    pub(crate) leader: u64,
    /// This node leads.
    pub(crate) leading: bool,
}

/// The keeper of one replica: its liveness bookkeeping and the way to wake its thread.
pub(crate) struct Keeper {
    /// Leader only: which sessions are alive.
    pub(crate) tracker: Mutex<SessionTracker>,
    poke: Sender<Poke>,
    /// Taken by the thread when it starts.
    pokes: Mutex<Option<Receiver<Poke>>>,
    handle: Mutex<Option<JoinHandle<()>>>,
}

impl Keeper {
    /// A keeper whose thread is not started yet ([`Keeper::start`]).
    pub(crate) fn new(config: &Config) -> Keeper {
        // One poke waiting is enough: a tick that finds one queued is folded into it.
        let (poke, pokes) = bounded(1);
        Keeper {
            tracker: Mutex::new(SessionTracker::new(config.election_timeout())),
            poke,
            pokes: Mutex::new(Some(pokes)),
            handle: Mutex::new(None),
        }
    }

    /// Starts the thread of `replica`'s keeper (named after the node); it runs until the
    /// replica is gone.
    pub(crate) fn start(&self, replica: Weak<Shared>, config: &Config) -> Result<()> {
        let Some(pokes) = self.pokes.lock().take() else {
            return Ok(());
        };
        let mut rounds = Rounds {
            last_ping: Instant::now(),
            ping_interval: config.session_ping_interval(),
            last_reap: Instant::now(),
            reap_interval: config.reap_interval,
        };
        let handle = std::thread::Builder::new()
            .name(format!("zkraft-keeper-{}", config.id))
            .spawn(move || {
                while let Ok(poke) = pokes.recv() {
                    let Some(s) = replica.upgrade() else {
                        return;
                    };
                    if !s.is_stopped() {
                        rounds.keep(&s, poke);
                    }
                }
            })
            .map_err(|e| Error::Io(format!("keeper thread: {e}")))?;
        *self.handle.lock() = Some(handle);
        Ok(())
    }

    /// Wakes the thread for a tick (nothing if a poke is waiting already).
    pub(crate) fn poke(&self, poke: Poke) {
        // Full: a poke is waiting already; disconnected: the thread has ended.
        let _ = self.poke.try_send(poke);
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        // Detached: the replica's last handle may be dropped on the thread itself, which a
        // join would wait on forever. The thread ends as the channel closes.
        drop(self.handle.lock().take());
    }
}

/// When the keeper's periodic work last ran.
struct Rounds {
    last_ping: Instant,
    ping_interval: Duration,
    last_reap: Instant,
    reap_interval: Duration,
}

impl Rounds {
    /// A tick's housekeeping.
    fn keep(&mut self, s: &Shared, poke: Poke) {
        let now = Instant::now();
        if s.keeper.tracker.lock().set_leading(poke.leading) {
            self.last_reap = now;
        }
        if now.duration_since(self.last_ping) >= self.ping_interval {
            self.last_ping = now;
            self.heartbeat(s, poke);
        }
        if !poke.leading {
            return;
        }
        // Read out under the tree's lock, then released: the applies the lock would
        // hold up need not wait for the bookkeeping.
        let live: Vec<(i64, Duration)> = s
            .tree
            .read()
            .sessions()
            .iter()
            .map(|(id, rec)| (*id, timeout_of(rec)))
            .collect();
        let expired = s.keeper.tracker.lock().due(now, live);
        for id in expired {
            slog::info!(s.logger, "expiring session"; "session" => format!("{id:#x}"));
            s.housekeeping(Op::CloseSession {
                session: id,
                expired: true,
            });
        }
        if now.duration_since(self.last_reap) >= self.reap_interval {
            self.last_reap = now;
            let reapable = s.tree.read().reapable(now_ms());
            for path in reapable.into_iter().take(1000) {
                slog::debug!(s.logger, "reaping"; "path" => &path);
                s.housekeeping(Op::Reap { path });
            }
        }
    }

    /// Tells the leader which sessions hosted here are alive.
    fn heartbeat(&self, s: &Shared, poke: Poke) {
        let window = 2 * i64::try_from(self.ping_interval.as_millis()).unwrap_or(i64::MAX / 4);
        let hosted = s.observer().heartbeats_due(crate::time::mono_ms(), window);
        if hosted.is_empty() {
            return;
        }
        if poke.leader == s.id && poke.leading {
            s.heard_from(s.id, &hosted);
            s.observer().sessions_acknowledged();
        } else if poke.leader != INVALID_ID {
            s.transport.send(
                poke.leader,
                Envelope::SessionPing {
                    from: s.id,
                    to: poke.leader,
                    sessions: hosted,
                },
            );
        }
    }
}

impl Shared {
    /// Leader: the sessions named were heard from; push their deadlines out. Only the
    /// sessions `host` hosts count: a node that still believes it hosts a session that
    /// moved away cannot keep it alive.
    pub(crate) fn heard_from(&self, host: u64, sessions: &[i64]) {
        let tree = self.tree.read();
        let mut tracker = self.keeper.tracker.lock();
        if !tracker.leading() {
            return;
        }
        let heard = sessions.iter().filter_map(|id| {
            tree.sessions()
                .get(id)
                .filter(|rec| rec.host == host)
                .map(|rec| (*id, timeout_of(rec)))
        });
        tracker.heard(Instant::now(), heard);
    }

    /// Hands the driver a housekeeping command to propose if it still leads.
    fn housekeeping(&self, op: Op) {
        let _ = self.post(Msg::Housekeeping(op));
    }
}

/// A session's timeout as the replicated state records it.
fn timeout_of(rec: &crate::tree::SessionRecord) -> Duration {
    Duration::from_millis(rec.timeout_ms.max(0) as u64)
}
