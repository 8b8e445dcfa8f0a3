//! The host: the sessions this node hosts (heartbeated from here, their requests served
//! here) and their watches — the layer above the replica. It holds its replica (the
//! replica holds it only weakly, as the [`Observer`] it tells of the replicated state),
//! so references point down only.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::command::{Command, Op};
use crate::error::Result;
use crate::output::Output;
use crate::replica::{Observer, Shared};
use crate::session::SessionInner;
use crate::tree::{DataTree, OpResult, WatchedEvent};
use crate::watch::{SessionEvent, WatchManager};

/// Told of every session the log closes, expires or moves (see [`Host::session_ended`]).
pub(crate) type SessionEndedHook = Box<dyn Fn(i64) + Send + Sync>;

/// The sessions hosted by one node and their watches.
pub(crate) struct Host {
    /// The replica below.
    replica: Arc<Shared>,
    /// The node's id (a session re-attached to it is hosted here).
    id: u64,
    /// Watch registrations of the sessions hosted here.
    pub(crate) watches: Mutex<WatchManager>,
    /// Sessions hosted by this node (it heartbeats them to the leader).
    pub(crate) sessions: Mutex<HashMap<i64, Arc<SessionInner>>>,
    /// When the leader last confirmed hearing this node's sessions (ms since `started`).
    last_ack_ms: AtomicU64,
    started: Instant,
    /// Told of every session the log closes, expires or moves (each client port started
    /// on the node closes the session's connections here, as ZooKeeper's servers do),
    /// keyed by the number [`Host::on_session_ended`] gave. Called on the driver with the
    /// tree locked: a hook must only hand the work over.
    session_ended: Mutex<Vec<(u64, SessionEndedHook)>>,
    next_hook: AtomicU64,
    /// Numbers the local sessions of read-only mode.
    next_local: AtomicU64,
    /// How long the hosted sessions' requests take, per operation.
    pub(crate) latency: crate::latency::RequestLatency,
    /// The client ports started on the node, for their connection figures.
    ports: Mutex<Vec<std::sync::Weak<dyn PortFigures>>>,
}

/// What a client port started on the node reports of its connections (ZooKeeper's
/// `num_alive_connections`, `packets_received`, `packets_sent`, `outstanding_requests`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PortCounts {
    pub(crate) connections: u64,
    pub(crate) received: u64,
    pub(crate) sent: u64,
    pub(crate) outstanding: u64,
}

/// A front end that serves connections and counts them.
pub(crate) trait PortFigures: Send + Sync {
    /// Its figures now.
    fn counts(&self) -> PortCounts;
    /// Itself, for the front end that started it to find it again.
    fn into_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync>;
}

impl Host {
    /// The host above `replica`, hosting nothing yet. The caller makes it the replica's
    /// observer.
    pub(crate) fn new(replica: Arc<Shared>) -> Arc<Host> {
        Arc::new(Host {
            id: replica.id(),
            replica,
            watches: Mutex::new(WatchManager::default()),
            sessions: Mutex::new(HashMap::new()),
            last_ack_ms: AtomicU64::new(0),
            started: Instant::now(),
            session_ended: Mutex::new(Vec::new()),
            next_hook: AtomicU64::new(0),
            next_local: AtomicU64::new(1),
            latency: Default::default(),
            ports: Mutex::new(Vec::new()),
        })
    }

    /// A new local session id (read-only mode), which no log entry gives: bit 62 set
    /// (session ids from the log are raft indexes, far below it), then this node's id
    /// (16 bits), then a counter (40 bits).
    pub(crate) fn next_local_session(&self) -> i64 {
        let n = self.next_local.fetch_add(1, Ordering::Relaxed) & ((1 << 40) - 1);
        ((1i64 << 62) | (((self.id & 0xffff) as i64) << 40) | n as i64).max(1)
    }

    /// The replica below.
    pub(crate) fn replica(&self) -> &Arc<Shared> {
        &self.replica
    }

    /// How long since the leader last confirmed hearing this node's sessions.
    pub(crate) fn since_sessions_acknowledged(&self) -> Duration {
        let now = self.started.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_ack_ms.load(Ordering::Acquire)))
    }

    /// The log closed, expired or moved `session`: see [`Host::session_ended`].
    pub(crate) fn session_gone(&self, session: i64) {
        for (_, hook) in self.session_ended.lock().iter() {
            hook(session);
        }
    }

    /// Adds a hook told of every session the log ends; the number removes it.
    pub(crate) fn on_session_ended(&self, hook: SessionEndedHook) -> u64 {
        let key = self.next_hook.fetch_add(1, Ordering::Relaxed);
        self.session_ended.lock().push((key, hook));
        key
    }

    /// Removes hook `key` (see [`Host::on_session_ended`]); nothing if it is gone.
    pub(crate) fn forget_session_ended(&self, key: u64) {
        self.session_ended.lock().retain(|(k, _)| *k != key);
    }

    /// Counts `port`'s connections in [`Host::metrics`] while it lives.
    pub(crate) fn add_port(&self, port: std::sync::Weak<dyn PortFigures>) {
        let mut ports = self.ports.lock();
        ports.retain(|p| p.strong_count() > 0);
        ports.push(port);
    }

    /// The client ports started on the node, still alive.
    pub(crate) fn ports(&self) -> Vec<Arc<dyn PortFigures>> {
        self.ports
            .lock()
            .iter()
            .filter_map(|p| p.upgrade())
            .collect()
    }

    /// The replica's metrics with the host's part and its client ports' filled in.
    pub(crate) fn metrics(&self) -> crate::Metrics {
        let mut m = self.replica.metrics();
        m.watch_count = self.zookeeper_watch_count() as u64;
        m.hosted_sessions = self.hosted_session_count() as u64;
        m.requests = self.latency.snapshot();
        for p in self.ports() {
            let c = p.counts();
            m.connections += c.connections;
            m.packets_received += c.received;
            m.packets_sent += c.sent;
            m.outstanding_requests += c.outstanding;
        }
        m
    }

    /// Watch registrations held for the sessions hosted here.
    pub(crate) fn watch_count(&self) -> usize {
        self.watches.lock().len()
    }

    /// Watches as ZooKeeper's `mntr` counts them (a persistent watch twice).
    pub(crate) fn zookeeper_watch_count(&self) -> usize {
        self.watches.lock().zookeeper_count()
    }

    /// The paths each hosted session watches.
    pub(crate) fn watched_paths(&self) -> BTreeMap<i64, BTreeSet<String>> {
        self.watches.lock().paths_by_session()
    }

    /// The sessions watching each path, the inverse of [`Host::watched_paths`].
    pub(crate) fn watching_sessions(&self) -> BTreeMap<String, BTreeSet<i64>> {
        let mut by_path: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
        for (session, paths) in self.watched_paths() {
            for p in paths {
                by_path.entry(p).or_default().insert(session);
            }
        }
        by_path
    }

    /// What `wchs` reports: (sessions watching, paths watched, watches).
    pub(crate) fn watch_summary(&self) -> (usize, usize, usize) {
        let by_session = self.watched_paths();
        let paths: BTreeSet<&String> = by_session.values().flatten().collect();
        let total = by_session.values().map(BTreeSet::len).sum();
        (by_session.len(), paths.len(), total)
    }

    /// Sessions hosted here.
    pub(crate) fn hosted_session_count(&self) -> usize {
        self.sessions.lock().len()
    }

    /// Writes out, off the driver, the connections an apply queued notifications into.
    fn flush_later(&self, outputs: Vec<Arc<dyn Output>>) {
        if !outputs.is_empty() {
            self.replica.off_driver(Box::new(move || {
                for out in outputs {
                    out.flush();
                }
            }));
        }
    }

    /// Ends the local side of every hosted session (the node is stopping): no more
    /// heartbeats, watches dropped, dispatchers stopped. The caller holds the tree lock.
    fn end_all(&self) {
        let hosted: Vec<i64> = self.sessions.lock().drain().map(|(id, _)| id).collect();
        let mut watches = self.watches.lock();
        for id in hosted {
            watches.end_session(id, None);
        }
    }

    /// Stops hosting a session: no more heartbeats, watches dropped, dispatcher stopped.
    pub(crate) fn forget_session(&self, id: i64) {
        // Under the tree lock, as every change of what is hosted.
        let _tree = self.replica.tree().read();
        self.sessions.lock().remove(&id);
        self.watches.lock().end_session(id, None);
    }
}

impl Observer for Host {
    fn applied(
        &self,
        _tree: &DataTree,
        cmd: &Command,
        result: &Result<OpResult>,
        events: Vec<WatchedEvent>,
    ) {
        // Lock order everywhere: tree, then watches.
        let mut watches = self.watches.lock();
        if !events.is_empty() {
            self.flush_later(watches.trigger(&events));
        }
        if let (Op::MoveSession { session, host, .. }, Ok(_)) = (&cmd.op, result) {
            // Re-attached here: the session's older connections here are stale (its
            // client reconnected; the new connection registers after this apply), and
            // are closed, as ZooKeeper closes them on a reconnect. A connection on
            // another member is closed when a request of it meets SessionMoved.
            if *host == self.id {
                self.session_gone(*session);
            }
            // A handle hosted here is done, whoever takes over — even this node again
            // (the taker registers its own handle once this apply returns): its
            // watches here go with it.
            if let Some(inner) = self.sessions.lock().remove(session) {
                inner.mark_moved();
                watches.end_session(*session, None);
            }
        }
        if let (Op::CloseSession { session, expired }, Ok(OpResult::SessionClosed { .. })) =
            (&cmd.op, result)
        {
            self.session_gone(*session);
            if let Some(inner) = self.sessions.lock().remove(session) {
                inner.mark_ended(*expired);
                let event = if *expired {
                    SessionEvent::Expired
                } else {
                    SessionEvent::Closed
                };
                watches.end_session(*session, Some(event));
            }
        }
    }

    fn config_changed(&self, _tree: &DataTree, events: Vec<WatchedEvent>) {
        if !events.is_empty() {
            let mut watches = self.watches.lock();
            self.flush_later(watches.trigger(&events));
        }
    }

    fn tree_replaced(&self, old: &DataTree, tree: &DataTree) {
        let mut watches = self.watches.lock();
        // Compared at the watched paths only: the cost follows the watches, not the tree.
        let (exact, subtrees) = watches.watched();
        let changes = crate::tree::changes::between(
            old,
            tree,
            exact.iter().map(String::as_str),
            subtrees.iter().map(String::as_str),
            tree.zxid() as i64,
        );
        if !changes.is_empty() {
            self.flush_later(watches.trigger(&changes));
        }
        // Sessions hosted here that the snapshot no longer has here have expired, or
        // moved to another member meanwhile.
        let hosted: Vec<i64> = self.sessions.lock().keys().copied().collect();
        for id in hosted {
            let host = tree.sessions().get(&id).map(|rec| rec.host);
            if host == Some(self.id) {
                continue;
            }
            self.session_gone(id);
            if let Some(inner) = self.sessions.lock().remove(&id) {
                if host.is_some() {
                    inner.mark_moved();
                    watches.end_session(id, None);
                } else {
                    inner.mark_ended(true);
                    watches.end_session(id, Some(SessionEvent::Expired));
                }
            }
        }
    }

    fn order_lost(&self, session: i64, epoch: u64) {
        if let Some(inner) = self.sessions.lock().get(&session) {
            inner.order.lock().restart_after(epoch);
        }
    }

    fn heartbeats_due(&self, now_ms: i64, window_ms: i64) -> Vec<i64> {
        self.sessions
            .lock()
            .iter()
            .filter(|(_, inner)| inner.heartbeat_due(now_ms, window_ms))
            .map(|(id, _)| *id)
            .collect()
    }

    fn sessions_acknowledged(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.last_ack_ms.fetch_max(ms, Ordering::AcqRel);
    }

    fn stopping(&self) {
        let _tree = self.replica.tree().read();
        self.end_all();
    }
}
