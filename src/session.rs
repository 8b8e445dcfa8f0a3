//! [`Session`]: the synchronous client API bound to one session, as a ZooKeeper handle.
//!
//! A session is replicated state (opened and closed through the raft log; its id is the
//! zxid of its `CreateSession` entry). The node that opened it hosts it: it heartbeats the
//! session to the leader, and the leader expires it when the heartbeats stop for longer than
//! its timeout, deleting its ephemeral znodes in the same entry on every replica.
//! Watches set through a session are delivered in order by the session's dispatcher, on
//! the process's shared callback threads.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicI64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::acl::{self, Acl, Id};
use crate::api;
use crate::command::{CreateMode, Op};
use crate::completion::{completion, Completer};
use crate::error::{Error, Result};
use crate::host::Host;
use crate::output::Output;
use crate::pipeline::{self, Answer, Pipe, Reply, Request, Sink};
use crate::replica::Shared;
use crate::tree::{OpResult, Stat, WatchedEvent};
use crate::watch::{AddWatchMode, Dispatcher, SessionEvent, Watcher, WatcherType};

const OPEN: u8 = 0;
const EXPIRED: u8 = 1;
const CLOSED: u8 = 2;
const MOVED: u8 = 3;

/// How a host numbers a session's requests (see `DataTree::apply_ordered`): an epoch,
/// and the next sequence number in it.
#[derive(Debug)]
pub(crate) struct SessionOrder {
    epoch: u64,
    next: u64,
}

impl SessionOrder {
    /// The order of a session a host took on in log entry `zxid` (its `CreateSession` or
    /// `MoveSession`). Its epochs start at `zxid << 24`: above every epoch any earlier host
    /// of the session (or an earlier handle on this node) could have used, so a write
    /// still in flight from one of them is always stale here — never taken for this
    /// host's next one.
    pub(crate) fn hosted_from(zxid: u64) -> SessionOrder {
        SessionOrder {
            epoch: zxid.saturating_mul(1 << 24).max(1),
            next: 1,
        }
    }

    /// The (epoch, number) of the next request.
    pub(crate) fn take_next(&mut self) -> (u64, u64) {
        let n = (self.epoch, self.next);
        self.next += 1;
        n
    }

    /// Starts a new epoch unless one was started since `epoch`: a request of `epoch` may
    /// be lost, so no later request may count on following it.
    pub(crate) fn restart_after(&mut self, epoch: u64) {
        if self.epoch == epoch {
            self.epoch += 1;
            self.next = 1;
        }
    }
}

/// What the hosting node keeps of a live session.
pub(crate) struct SessionInner {
    pub(crate) id: i64,
    pub(crate) timeout: Duration,
    pub(crate) password: Vec<u8>,
    state: AtomicU8,
    wait_for_watchers: bool,
    pub(crate) dispatcher: Arc<Dispatcher>,
    /// Numbers the session's requests; locked while one is numbered and queued.
    pub(crate) order: parking_lot::Mutex<SessionOrder>,
    /// The session's requests not answered yet (see `pipeline`).
    pub(crate) pipe: parking_lot::Mutex<Pipe>,
    /// Signalled when the pipe has room again.
    pub(crate) pipe_room: parking_lot::Condvar,
    /// The identities the session has authenticated as (ZooKeeper's per-connection
    /// `authInfo`): in memory on the hosting node only, never replicated. Each request
    /// takes the list as it is when submitted; writes carry it in their command.
    auth: parking_lot::RwLock<Arc<[Id]>>,
    /// Kept alive by its client's requests and pings (a wire session), not by its host
    /// alone: heartbeated only while its client was heard from lately (`touched_ms`,
    /// milliseconds on `crate::time::mono_ms`'s monotonic clock).
    client_pings: bool,
    touched_ms: AtomicI64,
    /// Served by a member without a quorum (read-only mode): reads only, never
    /// heartbeated, closed here without the log.
    pub(crate) read_only: bool,
}

impl SessionInner {
    /// Records the end of the session (called by the apply of its `CloseSession`).
    pub(crate) fn mark_ended(&self, expired: bool) {
        self.state
            .store(if expired { EXPIRED } else { CLOSED }, Ordering::SeqCst);
    }

    /// Refuses requests of an ended session, or on a stopped node.
    pub(crate) fn check(&self, shared: &Shared) -> Result<()> {
        match self.state.load(Ordering::SeqCst) {
            OPEN => shared.check_running(),
            EXPIRED => Err(Error::SessionExpired),
            MOVED => Err(Error::SessionMoved),
            _ => Err(Error::SessionClosed),
        }
    }

    /// Whether the calling thread must be answered without waiting for the session's
    /// watchers: it runs one of them (on a callback thread), or the session opted out.
    pub(crate) fn caller_skips_watchers(&self) -> bool {
        !self.wait_for_watchers || crate::delivery::ON_WORKER.with(std::cell::Cell::get)
    }

    /// Whether the host should heartbeat the session now: always for an embedded
    /// session; for a wire session, only if its client was heard from in the last
    /// `window_ms` (so a client that goes silent lets it expire, as ZooKeeper's).
    pub(crate) fn heartbeat_due(&self, now_ms: i64, window_ms: i64) -> bool {
        // Within `window` of the last request or ping: a heartbeat lost on its way (no
        // leader known, a full peer queue) is made up by the next round's.
        !self.read_only
            && (!self.client_pings || now_ms - self.touched_ms.load(Ordering::Relaxed) <= window_ms)
    }

    /// Records that the session moved to another host (the apply of its `MoveSession`).
    pub(crate) fn mark_moved(&self) {
        self.state.store(MOVED, Ordering::SeqCst);
    }

    /// The session's identities now (a request submitted now runs with these).
    pub(crate) fn identities(&self) -> Arc<[Id]> {
        self.auth.read().clone()
    }

    /// Adds identities the session does not hold yet, in order.
    fn add_identities(&self, ids: impl IntoIterator<Item = Id>) {
        let mut auth = self.auth.write();
        let mut all = auth.to_vec();
        for id in ids {
            if !all.contains(&id) {
                all.push(id);
            }
        }
        if all.len() != auth.len() {
            *auth = all.into();
        }
    }
}

/// The state of a [`Session`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SessionState {
    /// Open, and its node follows a leader: heartbeats reach the leader.
    Connected,
    /// Open as far as this node knows, but it cannot vouch for it: its node has stopped,
    /// knows no leader (partitioned, electing), or has not had its heartbeats acknowledged
    /// by the leader for 2/3 of the session timeout — so the leader may be about to expire
    /// it. Local reads still work; writes wait for a leader. Like Curator's SUSPENDED, a
    /// leader or lock holder should stop acting as one.
    Suspended,
    /// Expired by the leader: calls return [`Error::SessionExpired`].
    Expired,
    /// Closed by its owner: calls return [`Error::SessionClosed`].
    Closed,
    /// Moved to another member ([`Session::move_to`], [`crate::Node::attach_session`]):
    /// this handle's calls return [`Error::SessionMoved`]; the session lives on there.
    Moved,
}

/// Opens a [`Session`] (from [`crate::Node::session_builder`]).
pub struct SessionBuilder {
    host: Arc<Host>,
    timeout: Duration,
    watcher: Option<Arc<dyn Fn(SessionEvent) + Send + Sync>>,
    wait_for_watchers: bool,
    /// Identities the session starts with (a move carries its old handle's).
    auth: Vec<Id>,
    client_pings: bool,
    /// A wire session's connection: its answers' destination and its watcher.
    output: Option<Arc<dyn Output>>,
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let mut h = RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        out.extend_from_slice(&h.finish().to_le_bytes());
    }
    out.truncate(n);
    out
}

impl SessionBuilder {
    pub(crate) fn new(host: Arc<Host>) -> SessionBuilder {
        let timeout = host.replica().config().session_timeout;
        SessionBuilder {
            host,
            timeout,
            watcher: None,
            wait_for_watchers: true,
            auth: Vec::new(),
            client_pings: false,
            output: None,
        }
    }

    /// A session of a wire client on `connection`: kept alive only while its client is
    /// heard from ([`Session::touch`]), with at most one watch of a kind per path, told
    /// to the connection (the server watches for the connection, as ZooKeeper's).
    pub(crate) fn for_client(mut self, connection: Arc<dyn Output>) -> Self {
        self.client_pings = true;
        self.wait_for_watchers = false;
        self.output = Some(connection);
        self
    }

    /// Whether calls wait until the session's watchers have run for every event their
    /// result could reflect (default true: the session never sees data newer than an event
    /// its watchers have handled). With false, events are still queued before the data is
    /// visible and delivered in order, but a call may return before its watchers ran — as
    /// with ZooKeeper's synchronous API. Turn it off if a thread calls the session while
    /// holding a lock that one of its watchers takes.
    pub fn wait_for_watchers(mut self, wait: bool) -> Self {
        self.wait_for_watchers = wait;
        self
    }

    /// Requested session timeout; the node clamps it to its configured bounds.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Called by the session's dispatcher with its state changes (Connected first,
    /// then Expired or Closed).
    pub fn watcher(mut self, f: impl Fn(SessionEvent) + Send + Sync + 'static) -> Self {
        self.watcher = Some(Arc::new(f));
        self
    }

    /// Opens the session through the raft log.
    ///
    /// Everything the session needs on this node (its dispatcher) is set up before
    /// the session is proposed, so a resource failure ([`Error::Io`]) leaves no session
    /// behind. A `Timeout` leaves the outcome unknown, as any write's: a session committed
    /// after its caller gave up has no host and expires after its timeout.
    pub fn open(self) -> Result<Session> {
        let s = self.host.replica().clone();
        s.check_running()?;
        let timeout = s.config().negotiate_session_timeout(self.timeout);
        let password = random_bytes(16);
        let op = Op::CreateSession {
            timeout_ms: i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX),
            password: password.clone(),
            host: s.id(),
        };
        self.host_session(op, password, None)
    }

    /// Takes over an existing session, by id and password, on this builder's node (as a
    /// ZooKeeper client reconnects to another server): from then on this node heartbeats
    /// it, its ephemerals stay, and calls through its old handle on the old node return
    /// [`Error::SessionMoved`]. A wrong password (or a session that no longer exists) is
    /// refused with [`Error::SessionExpired`], as ZooKeeper refuses the reconnect; nothing
    /// changes then. The takeover is a log entry applied on this node before this returns,
    /// so the session never sees older data here than it saw on its old node. Watches are
    /// not carried over (see [`Session::move_to`] for a move within one process).
    pub fn attach(self, session: i64, password: &[u8]) -> Result<Session> {
        let op = Op::MoveSession {
            session,
            password: password.to_vec(),
            host: self.host.replica().id(),
        };
        self.host_session(op, password.to_vec(), Some(session))
    }

    /// Proposes `op` (a `CreateSession`, or a `MoveSession` of `moving`) and hosts the
    /// session it names here.
    fn host_session(self, op: Op, password: Vec<u8>, moving: Option<i64>) -> Result<Session> {
        let hosting = self.prepare(password, moving)?;
        let outcome = hosting.host.replica().submit(op);
        hosting.finish(outcome)
    }

    /// Opens the session without blocking a thread: the future resolves once the
    /// session's entry is applied on this node (see [`SessionBuilder::open`]). Dropping
    /// the future before then does not cancel the open: the session is opened, then
    /// closed again in the background.
    pub fn open_async(self) -> OpenSession {
        self.host_async(None)
    }

    /// [`SessionBuilder::attach`] without blocking a thread.
    pub fn attach_async(self, session: i64, password: &[u8]) -> OpenSession {
        self.host_async(Some((session, password.to_vec())))
    }

    fn host_async(mut self, attach: Option<(i64, Vec<u8>)>) -> OpenSession {
        // The session's state changes go to its watcher, if any, and to the streams of
        // `AsyncSession::session_events`.
        let events = crate::async_session::SessionEvents::default();
        let user = self.watcher.take();
        let heard = events.clone();
        self.watcher = Some(Arc::new(move |e| {
            if let Some(user) = &user {
                user(e);
            }
            heard.push(e);
        }));
        let (done, outcome) = crate::completion::completion(|| Error::Shutdown);
        let then = move |r: Result<Session>| {
            done.complete(r.map(|s| crate::AsyncSession::new(s, events)));
        };
        match attach {
            None => self.open_then(then),
            Some((session, password)) => self.attach_then(session, &password, then),
        }
        OpenSession { outcome }
    }

    /// Opens the session without waiting: `then` hears the session, or why it could not
    /// be opened, once its entry is applied here — on the session's callback thread,
    /// never the driver's (or at once, on the caller's, if it is refused before being
    /// proposed). Opens from many callers are proposed as they come and share raft
    /// entries' rounds like writes; no thread waits for one.
    pub(crate) fn open_then(self, then: impl FnOnce(Result<Session>) + Send + 'static) {
        if let Err(e) = self.host.replica().check_running() {
            return then(Err(e));
        }
        let timeout = self
            .host
            .replica()
            .config()
            .negotiate_session_timeout(self.timeout);
        let password = random_bytes(16);
        let op = Op::CreateSession {
            timeout_ms: i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX),
            password: password.clone(),
            host: self.host.replica().id(),
        };
        self.host_then(op, password, None, Box::new(then));
    }

    /// A read-only session on this member, which has no quorum: nothing goes through the
    /// log. A session the member knows (`session` with its `password`) keeps its id and
    /// timeout; otherwise a new local one is made (an id no log entry gives). Its writes
    /// are answered `NotReadOnly`; it is never heartbeated (the leader, when there is one
    /// again, expires the sessions nobody hosts).
    pub(crate) fn read_only(self, session: i64, password: &[u8]) -> Result<Session> {
        let s = self.host.replica().clone();
        let known = {
            let tree = s.tree().read();
            tree.sessions()
                .get(&session)
                .filter(|rec| session != 0 && rec.password == password)
                .map(|rec| Duration::from_millis(rec.timeout_ms.max(0) as u64))
        };
        let (id, timeout, password) = match known {
            Some(timeout) => (session, timeout, password.to_vec()),
            None => (
                self.host.next_local_session(),
                s.config().negotiate_session_timeout(self.timeout),
                random_bytes(16),
            ),
        };
        let hosting = self.prepare(password, None)?;
        let tree = s.tree().read();
        Ok(hosting.host_session(&tree, id, timeout, 0, true))
    }

    /// [`SessionBuilder::attach`] without waiting, as [`SessionBuilder::open_then`].
    pub(crate) fn attach_then(
        self,
        session: i64,
        password: &[u8],
        then: impl FnOnce(Result<Session>) + Send + 'static,
    ) {
        let op = Op::MoveSession {
            session,
            password: password.to_vec(),
            host: self.host.replica().id(),
        };
        self.host_then(op, password.to_vec(), Some(session), Box::new(then));
    }

    fn host_then(self, op: Op, password: Vec<u8>, moving: Option<i64>, then: Then) {
        let hosting = match self.prepare(password, moving) {
            Ok(h) => h,
            Err(e) => return then(Err(e)),
        };
        let s = hosting.host.replica().clone();
        // Taken by whichever comes first: the driver's answer, or a refusal before the
        // proposal was handed over (then the driver never answers).
        let pending = Arc::new(parking_lot::Mutex::new(Some((hosting, then))));
        let answered = pending.clone();
        let reply = s.callback(move |outcome: Result<OpResult>| {
            if let Some((hosting, then)) = answered.lock().take() {
                // Only a queue push on the node's answer thread: the hosting itself (locks,
                // the session table) runs on the session's callback thread.
                let dispatcher = hosting.dispatcher.clone();
                dispatcher.run_after_queued(Box::new(move || then(hosting.finish(outcome))));
            }
        });
        let deadline =
            crate::time::deadline_after(std::time::Instant::now(), s.config().request_timeout);
        if let Err(e) = s.propose(acl::super_ids(), op, deadline, reply) {
            if let Some((hosting, then)) = pending.lock().take() {
                hosting.abandon();
                then(Err(e));
            }
        }
    }

    /// Checks the node and starts the session's dispatcher: everything the session needs
    /// here, before it is proposed, so a resource failure leaves no session behind.
    fn prepare(self, password: Vec<u8>, moving: Option<i64>) -> Result<Hosting> {
        self.host.replica().check_running()?;
        let dispatcher = Dispatcher::start(
            self.watcher,
            self.output,
            self.host.replica().logger().clone(),
        )?;
        Ok(Hosting {
            host: self.host,
            dispatcher,
            password,
            moving,
            wait_for_watchers: self.wait_for_watchers,
            auth: self.auth,
            client_pings: self.client_pings,
        })
    }
}

/// What a session opened without waiting is handed to.
type Then = Box<dyn FnOnce(Result<Session>) + Send>;

/// The future of [`SessionBuilder::open_async`] and [`SessionBuilder::attach_async`]:
/// resolves to the session once its entry is applied and it is hosted on this node.
#[must_use = "the session is opened either way; the future tells when"]
#[derive(Debug)]
pub struct OpenSession {
    outcome: crate::completion::Completion<crate::AsyncSession>,
}

impl std::future::Future for OpenSession {
    type Output = Result<crate::AsyncSession>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.outcome).poll(cx)
    }
}

/// A session proposed and not hosted yet: what [`SessionBuilder`] set up before
/// proposing it.
struct Hosting {
    host: Arc<Host>,
    dispatcher: Arc<Dispatcher>,
    password: Vec<u8>,
    moving: Option<i64>,
    wait_for_watchers: bool,
    auth: Vec<Id>,
    client_pings: bool,
}

impl Hosting {
    /// The session was not opened: its dispatcher ends (it has nothing queued, so
    /// nothing is waited for: the caller may be an I/O thread or the driver's answer).
    fn abandon(self) {
        self.dispatcher.stop();
    }

    /// Hosts the session the proposal's `outcome` names here.
    fn finish(self, outcome: Result<OpResult>) -> Result<Session> {
        let h = self.host.clone();
        let s = h.replica().clone();
        let (id, since) = match (outcome, self.moving) {
            (Ok(OpResult::SessionCreated { session }), None) => (session, session as u64),
            (Ok(OpResult::SessionAttached { session, zxid }), Some(_)) => (session, zxid),
            (other, _) => {
                self.abandon();
                return Err(match other {
                    Err(e) => e,
                    Ok(r) => Error::Corrupt(format!("session request answered with {r:?}")),
                });
            }
        };
        // Registered under the tree lock, so an expiry (or a move away) applied meanwhile
        // is seen here and one applied later finds the session registered.
        let tree = s.tree().read();
        let timeout = match tree.sessions().get(&id) {
            Some(rec) if rec.host == s.id() => Duration::from_millis(rec.timeout_ms.max(0) as u64),
            _ => {
                drop(tree);
                self.abandon();
                return Err(Error::SessionExpired);
            }
        };
        let session = self.host_session(&tree, id, timeout, since, false);
        // The session just committed through the leader: as good as a heartbeat ack.
        crate::replica::Observer::sessions_acknowledged(&*h);
        drop(tree);
        Ok(session)
    }

    /// Hosts session `id` here: registered under the tree lock (`_tree`), so an expiry or
    /// a move applied meanwhile is seen by the caller and one applied later finds it.
    fn host_session(
        self,
        _tree: &crate::tree::DataTree,
        id: i64,
        timeout: Duration,
        since: u64,
        read_only: bool,
    ) -> Session {
        let h = self.host.clone();
        let dispatcher = self.dispatcher.clone();
        let inner = Arc::new(SessionInner {
            id,
            timeout,
            password: self.password,
            state: AtomicU8::new(OPEN),
            wait_for_watchers: self.wait_for_watchers,
            dispatcher: dispatcher.clone(),
            order: parking_lot::Mutex::new(SessionOrder::hosted_from(since)),
            pipe: parking_lot::Mutex::new(Pipe::default()),
            pipe_room: parking_lot::Condvar::new(),
            auth: parking_lot::RwLock::new(self.auth.into()),
            client_pings: self.client_pings,
            touched_ms: AtomicI64::new(crate::time::mono_ms()),
            read_only,
        });
        // Queued before the session is visible to the apply, so Connected always comes
        // first.
        dispatcher.state(SessionEvent::Connected);
        {
            let mut watches = h.watches.lock();
            watches.add_session(id, dispatcher.clone());
            if self.client_pings {
                watches.one_watch_per_path(id);
            }
        }
        h.sessions.lock().insert(id, inner.clone());
        Session { inner, host: h }
    }
}

/// A session: ZooKeeper's client handle, on the node that opened it.
///
/// Calls are synchronous. Writes go through raft and return once applied on this node;
/// reads are served from this node's tree. Every call returns only after the session's
/// watchers have been called for every event its result could reflect, so a session never
/// sees data newer than an event it has not been told about. Dropping a `Session` closes it
/// in the background, without blocking ([`Session::close`] waits for the close).
///
/// ```
/// use zkraft::{CreateMode, Node, watch::watcher};
/// let dir = tempfile::tempdir().unwrap();
/// let node = Node::builder(1).data_dir(dir.path()).start().unwrap();
/// let s = node.session().unwrap();
/// s.create("/workers", b"", CreateMode::Persistent).unwrap();
/// let (tx, rx) = std::sync::mpsc::channel();
/// s.get_children("/workers", watcher(move |e| tx.send(e).unwrap())).unwrap();
/// s.create("/workers/w-", b"", CreateMode::EphemeralSequential).unwrap();
/// assert_eq!(rx.recv().unwrap().path, "/workers");
/// s.close().unwrap();
/// assert!(node.get_children("/workers").unwrap().is_empty(), "ephemeral went with it");
/// ```
pub struct Session {
    inner: Arc<SessionInner>,
    host: Arc<Host>,
}

/// An answer of the wrong kind: the pipeline never gives one, but a caller gets an error
/// rather than a panic if it ever did.
fn mismatch(call: &str, reply: &Reply) -> Error {
    Error::Corrupt(format!("{call} answered with {reply:?}"))
}

impl api::Write for Session {
    /// In the session's order; returns after its watchers have run for what the write
    /// could reflect.
    fn write(&self, op: Op) -> Result<OpResult> {
        let res = match self.call(Request::Write(op)) {
            Ok(Reply::Write(r)) => Ok(r),
            Ok(other) => Err(Error::Corrupt(format!("a write answered with {other:?}"))),
            Err(e) => Err(e),
        };
        match res {
            // The session ended while the request was in flight: say which way.
            Err(Error::SessionExpired) if self.state() == SessionState::Closed => {
                Err(Error::SessionClosed)
            }
            res => res,
        }
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &format_args!("{:#x}", self.inner.id))
            .field("timeout", &self.inner.timeout)
            .field("state", &self.state())
            .finish()
    }
}

impl Session {
    /// The session id (the zxid of the entry that opened it).
    pub fn id(&self) -> i64 {
        self.inner.id
    }

    /// The negotiated timeout.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// The session's password (for re-attaching through the wire protocol).
    pub fn password(&self) -> &[u8] {
        &self.inner.password
    }

    /// Id of the node hosting the session.
    pub fn node_id(&self) -> u64 {
        self.host.replica().id()
    }

    /// True once the hosting node has stopped (calls return `Shutdown`).
    pub fn node_stopped(&self) -> bool {
        self.host.replica().is_stopped()
    }

    /// Connected, suspended, expired or closed.
    pub fn state(&self) -> SessionState {
        match self.inner.state.load(Ordering::SeqCst) {
            OPEN if self.host.replica().is_stopped()
                || self.host.replica().leader_id() == 0
                || self.host.since_sessions_acknowledged() > self.inner.timeout * 2 / 3 =>
            {
                SessionState::Suspended
            }
            OPEN => SessionState::Connected,
            EXPIRED => SessionState::Expired,
            MOVED => SessionState::Moved,
            _ => SessionState::Closed,
        }
    }

    /// True once the session has expired or been closed.
    fn ended(&self) -> bool {
        self.inner.state.load(Ordering::SeqCst) != OPEN
    }

    fn check(&self) -> Result<()> {
        self.inner.check(self.host.replica())
    }

    /// Submits `request` without waiting: `sink` hears its answer, with `xid`, in
    /// submission order among this session's requests, on the session's dispatcher and
    /// after every watch event the answer reflects. Writes go to raft at once, many in
    /// flight; a read waits for the requests submitted before it, then runs on this
    /// node's tree. The synchronous calls are this, waited on. At most
    /// [`MAX_OUTSTANDING`](crate::MAX_OUTSTANDING) requests of a session are unanswered at
    /// once: beyond that, `submit` waits for room (back-pressure).
    ///
    /// ```
    /// use std::sync::{mpsc, Arc, Mutex};
    /// use zkraft::{CreateMode, Node, Op, Reply, Request, Sink};
    /// struct Replies(Mutex<mpsc::Sender<i64>>);
    /// impl Sink for Replies {
    ///     fn reply(&self, xid: i64, reply: zkraft::Result<Reply>) {
    ///         reply.unwrap();
    ///         self.0.lock().unwrap().send(xid).unwrap();
    ///     }
    /// }
    /// let dir = tempfile::tempdir().unwrap();
    /// let node = Node::builder(1).data_dir(dir.path()).start().unwrap();
    /// let s = node.session().unwrap();
    /// let (tx, rx) = mpsc::channel();
    /// let sink: Arc<dyn Sink> = Arc::new(Replies(Mutex::new(tx)));
    /// for xid in 0..100 {
    ///     let op = Op::create(format!("/n{xid}"), vec![], CreateMode::Persistent);
    ///     s.submit(xid, Request::Write(op), &sink);
    /// }
    /// s.submit(100, Request::GetChildren { path: "/".into(), watcher: None }, &sink);
    /// assert_eq!(rx.iter().take(101).collect::<Vec<_>>(), (0..=100).collect::<Vec<_>>());
    /// ```
    pub fn submit(&self, xid: i64, request: Request, sink: &Arc<dyn Sink>) {
        pipeline::submit(
            &self.host,
            &self.inner,
            request,
            Answer::Sink(sink.clone(), xid),
        );
    }

    /// Submits `request` in the session's order without ever blocking: past
    /// [`MAX_OUTSTANDING`](crate::MAX_OUTSTANDING) it waits in the session's backlog for
    /// room (the async API's back-pressure). Its answer completes `done` after every watch
    /// event it reflects was delivered.
    pub(crate) fn submit_queued(&self, request: Request, done: Completer<Reply>) {
        pipeline::submit_queued(
            &self.host,
            &self.inner,
            request,
            Answer::Complete {
                done,
                direct: false,
            },
        );
    }

    /// [`Session::submit`] for a crate destination that queues its answers in order (a
    /// wire connection): answered straight into it when nothing waits on the session's
    /// dispatcher before the answer.
    pub(crate) fn submit_to(&self, xid: i64, request: Request, out: &Arc<dyn Output>) {
        pipeline::submit(
            &self.host,
            &self.inner,
            request,
            Answer::Output(out.clone(), xid),
        );
    }

    /// Queues an answer already known for request `xid`, in the session's order.
    pub(crate) fn submit_answered(&self, xid: i64, result: Result<Reply>, out: &Arc<dyn Output>) {
        pipeline::submit_answered(
            &self.host,
            &self.inner,
            result,
            Answer::Output(out.clone(), xid),
        );
    }

    /// The client of a wire session was heard from: keep the session alive.
    pub(crate) fn touch(&self) {
        self.inner
            .touched_ms
            .store(crate::time::mono_ms(), Ordering::Relaxed);
    }

    /// Stops hosting the session here without closing it (its client went away, and
    /// may reconnect to any member): no more heartbeats, so the leader expires it after
    /// its timeout unless a member takes it over first. Only this handle's hosting ends:
    /// a newer handle of the session on this node (the client reconnected) stays.
    pub(crate) fn detach(self) {
        self.release();
    }

    fn release(&self) {
        {
            // The write lock, as every change of a session's state: a read running in
            // the pipeline (which checks the state under the read lock) cannot arm a
            // watch after the session's watches here were ended.
            let _tree = self.host.replica().tree().write();
            let mut sessions = self.host.sessions.lock();
            let mine = sessions
                .get(&self.inner.id)
                .is_some_and(|i| Arc::ptr_eq(i, &self.inner));
            if mine {
                sessions.remove(&self.inner.id);
                self.host.watches.lock().end_session(self.inner.id, None);
            }
            // Ended for this handle: dropping it closes nothing.
            let _ =
                self.inner
                    .state
                    .compare_exchange(OPEN, MOVED, Ordering::SeqCst, Ordering::SeqCst);
        }
    }

    /// Submits `request` and waits for its answer.
    fn call(&self, request: Request) -> Result<Reply> {
        let (done, answer) = completion(|| Error::Shutdown);
        let direct = self.inner.caller_skips_watchers();
        pipeline::submit(
            &self.host,
            &self.inner,
            request,
            Answer::Complete { done, direct },
        );
        // Every write is answered by its deadline (or at shutdown), and a read as soon as
        // the requests before it are: the margin only guards against a bug.
        let patience = self
            .host
            .replica()
            .config()
            .request_timeout
            .saturating_mul(2)
            .saturating_add(Duration::from_secs(5));
        match answer.wait(patience) {
            // Dropped unanswered (the session or its node went away): say which.
            Some(Err(Error::Shutdown)) => Err(self.check().err().unwrap_or(Error::Shutdown)),
            Some(result) => result,
            None => Err(self.check().err().unwrap_or(Error::Timeout(patience))),
        }
    }

    /// Waits until the dispatcher has delivered every event queued before `target`.
    fn wait_watchers(&self, target: u64) {
        if self.inner.wait_for_watchers {
            self.inner.dispatcher.progress.wait_delivered(target);
        }
    }

    /// Waits until the dispatcher has delivered every event queued so far.
    fn settle(&self) {
        self.wait_watchers(self.inner.dispatcher.progress.queued());
    }

    // ----- writes -----

    /// Creates a znode (see [`crate::Node::create`]); ephemeral modes make this session its
    /// owner.
    pub fn create(&self, path: &str, data: &[u8], mode: CreateMode) -> Result<String> {
        self.create_with_stat(path, data, mode).map(|(p, _)| p)
    }

    /// Like [`Session::create`], also returning the new znode's stat.
    pub fn create_with_stat(
        &self,
        path: &str,
        data: &[u8],
        mode: CreateMode,
    ) -> Result<(String, Stat)> {
        api::create(self, path, data, mode)
    }

    /// Creates a znode with the ACL `acl` (see [`crate::acl`]) and returns its path.
    /// Needs CREATE permission on the parent ([`Error::NoAuth`]); `acl` must be
    /// acceptable ([`Error::InvalidAcl`]: e.g. [`Acl::creator_all`] needs a digest
    /// identity from [`Session::add_auth`], and becomes an entry for it).
    ///
    /// ```
    /// use zkraft::{acl::perms, Acl, CreateMode, Error, Node};
    /// let dir = tempfile::tempdir().unwrap();
    /// let node = Node::builder(1).data_dir(dir.path()).start().unwrap();
    /// let alice = node.session().unwrap();
    /// alice.add_auth("digest", b"alice:secret").unwrap();
    /// alice.create_with_acl("/private", b"x", CreateMode::Persistent, Acl::creator_all()).unwrap();
    /// assert_eq!(alice.get_data("/private", None).unwrap().0, b"x");
    ///
    /// let anonymous = node.session().unwrap();
    /// assert!(matches!(anonymous.get_data("/private", None), Err(Error::NoAuth(_))));
    /// assert!(matches!(anonymous.set_data("/private", b"y", None), Err(Error::NoAuth(_))));
    /// // The node's own API is the super user.
    /// assert_eq!(node.get_data("/private").unwrap().0, b"x");
    /// ```
    pub fn create_with_acl(
        &self,
        path: &str,
        data: &[u8],
        mode: CreateMode,
        acl: Vec<Acl>,
    ) -> Result<String> {
        api::create_with_acl(self, path, data, mode, acl).map(|(p, _)| p)
    }

    /// Creates a TTL znode (`PersistentWithTtl` or `PersistentSequentialWithTtl`): the
    /// leader deletes it once it has had no children and no change for `ttl`.
    pub fn create_ttl(
        &self,
        path: &str,
        data: &[u8],
        mode: CreateMode,
        ttl: Duration,
    ) -> Result<String> {
        api::create_ttl(self, path, data, mode, ttl).map(|(p, _)| p)
    }

    /// Deletes a znode (see [`crate::Node::delete`]).
    pub fn delete(&self, path: &str, version: Option<i32>) -> Result<()> {
        api::delete(self, path, version)
    }

    /// Replaces a znode's data (see [`crate::Node::set_data`]).
    pub fn set_data(&self, path: &str, data: &[u8], version: Option<i32>) -> Result<Stat> {
        api::set_data(self, path, data, version)
    }

    /// Replaces the ACL of `path` and returns its new stat (`aversion` one higher);
    /// `version`, if given, must be the current `aversion` ([`Error::BadVersion`]). Needs
    /// ADMIN permission on the znode.
    pub fn set_acl(&self, path: &str, acl: Vec<Acl>, version: Option<i32>) -> Result<Stat> {
        api::set_acl(self, path, acl, version)
    }

    /// Applies `ops` atomically (see [`crate::Node::multi`]).
    pub fn multi(&self, ops: Vec<Op>) -> Result<Vec<OpResult>> {
        api::multi(self, ops)
    }

    /// ZooKeeper's `sync`: the next read on this session sees every write committed before.
    pub fn sync(&self, path: &str) -> Result<()> {
        let path = path.to_string();
        match self.call(Request::Sync { path })? {
            Reply::Done => Ok(()),
            other => Err(mismatch("sync", &other)),
        }
    }

    // ----- reads with watches -----

    /// The stat of `path`, or `None`. With a watcher, it fires once on the next
    /// NodeCreated (if absent), NodeDataChanged or NodeDeleted of `path`.
    pub fn exists(&self, path: &str, watcher: Option<Watcher>) -> Result<Option<Stat>> {
        let path = path.to_string();
        match self.call(Request::Exists { path, watcher })? {
            Reply::Exists(stat) => Ok(stat),
            other => Err(mismatch("exists", &other)),
        }
    }

    /// The data and stat of `path`. With a watcher, it fires once on the next
    /// NodeDataChanged or NodeDeleted (no watch is set if the node does not exist).
    /// A znode with no data at all (ZooKeeper's `null`) reads as empty here;
    /// [`Session::get_data_or_null`] tells the two apart.
    pub fn get_data(&self, path: &str, watcher: Option<Watcher>) -> Result<(Vec<u8>, Stat)> {
        self.get_data_or_null(path, watcher)
            .map(|(data, stat)| (data.unwrap_or_default(), stat))
    }

    /// Like [`Session::get_data`], with `None` for a znode that has no data at all
    /// (created or set with ZooKeeper's `null`, see [`Op::with_null_data`]) and `Some` of
    /// empty data for one whose data is empty.
    pub fn get_data_or_null(
        &self,
        path: &str,
        watcher: Option<Watcher>,
    ) -> Result<(Option<Vec<u8>>, Stat)> {
        let path = path.to_string();
        match self.call(Request::GetData { path, watcher })? {
            Reply::Data(data, stat) => Ok((data, stat)),
            other => Err(mismatch("get_data", &other)),
        }
    }

    /// The sorted child names of `path`. With a watcher, it fires once on the next
    /// NodeChildrenChanged or NodeDeleted of `path`.
    pub fn get_children(&self, path: &str, watcher: Option<Watcher>) -> Result<Vec<String>> {
        self.get_children_with_stat(path, watcher).map(|(c, _)| c)
    }

    /// Like [`Session::get_children`], also returning the parent's stat.
    pub fn get_children_with_stat(
        &self,
        path: &str,
        watcher: Option<Watcher>,
    ) -> Result<(Vec<String>, Stat)> {
        let path = path.to_string();
        match self.call(Request::GetChildren { path, watcher })? {
            Reply::Children(children, stat) => Ok((children, stat)),
            other => Err(mismatch("get_children", &other)),
        }
    }

    /// Sets a watch that stays until removed: `Persistent` hears every event on `path`;
    /// `PersistentRecursive` hears created, deleted and data-changed events on `path` and
    /// below. The path need not exist.
    pub fn add_watch(
        &self,
        path: &str,
        mode: AddWatchMode,
        watcher: impl Fn(WatchedEvent) + Send + Sync + 'static,
    ) -> Result<()> {
        let request = Request::AddWatch {
            path: path.to_string(),
            mode,
            watcher: Arc::new(watcher),
        };
        match self.call(request)? {
            Reply::Done => Ok(()),
            other => Err(mismatch("add_watch", &other)),
        }
    }

    /// Removes this session's watches of `kind` on `path`; each removed watcher hears a
    /// *WatchRemoved event. [`Error::NoWatcher`] if there was none.
    pub fn remove_watches(&self, path: &str, kind: WatcherType) -> Result<()> {
        let path = path.to_string();
        match self.call(Request::RemoveWatches { path, kind })? {
            Reply::Done => Ok(()),
            other => Err(mismatch("remove_watches", &other)),
        }
    }

    /// The ACL and stat of `path`. Needs READ or ADMIN permission; without ADMIN, the
    /// hash of each `digest` id is shown as `x` (`digest:user:x`), as ZooKeeper shows it.
    pub fn get_acl(&self, path: &str) -> Result<(Vec<Acl>, Stat)> {
        let path = path.to_string();
        match self.call(Request::GetAcl { path })? {
            Reply::Acl(acl, stat) => Ok((acl, stat)),
            other => Err(mismatch("get_acl", &other)),
        }
    }

    // ----- authentication -----

    /// Authenticates the session (ZooKeeper's `addAuthInfo`): from now on its requests
    /// also carry the identity `auth` proves. Schemes:
    ///
    /// - `digest`, with `user:password`: the id `digest:user:base64(sha1)`
    ///   ([`crate::acl::digest`]). If `user:base64(sha1)` equals the node's
    ///   [`Config::super_digest`](crate::Config::super_digest), the session is also the
    ///   super user (id `super:`), which passes every ACL check.
    /// - `ip`: accepted, adds nothing — an ip identity is the client's address, which only
    ///   a network front end knows (it adds it for each connection, as ZooKeeper does).
    ///
    /// Anything else — an unknown scheme, digest credentials that are not UTF-8
    /// `user:password` — is [`Error::AuthFailed`] and adds nothing (ZooKeeper also closes
    /// the connection). Identities live on the hosting node only, like ZooKeeper's
    /// per-connection auth: [`Session::move_to`] carries them,
    /// [`SessionBuilder::attach`] starts without any. Requests already submitted keep the
    /// identities they were submitted with.
    pub fn add_auth(&self, scheme: &str, auth: &[u8]) -> Result<()> {
        self.check()?;
        let ids = acl::authenticate(
            scheme,
            auth,
            self.host.replica().config().super_digest.as_deref(),
        )?;
        self.inner.add_identities(ids);
        Ok(())
    }

    /// The identities the session has authenticated as, in the order added (as
    /// ZooKeeper 3.7's `whoAmI`).
    pub fn identities(&self) -> Vec<Id> {
        self.inner.identities().to_vec()
    }

    /// Adds an identity directly, without credentials: for a network front end, which
    /// adds `ip:<client address>` for each connection as ZooKeeper does.
    pub(crate) fn add_identity(&self, id: Id) {
        self.inner.add_identities([id]);
    }

    /// This session's ephemeral znodes whose path starts with `prefix`, sorted
    /// (ZooKeeper 3.6's getEphemerals).
    pub fn get_ephemerals(&self, prefix: &str) -> Result<Vec<String>> {
        let prefix = prefix.to_string();
        match self.call(Request::GetEphemerals { prefix })? {
            Reply::Ephemerals(paths) => Ok(paths),
            other => Err(mismatch("get_ephemerals", &other)),
        }
    }

    /// Moves the session to `node`, another member in this process, with its watches (as
    /// a ZooKeeper client that loses its server reconnects to another and re-arms its
    /// watches): [`SessionBuilder::attach`] there, then every watch armed here is armed
    /// there — or fires now, if its znode changed after what this session had seen. Its
    /// ephemerals stay, and this handle answers [`Error::SessionMoved`] from then on.
    /// If the move fails, the watches stay armed here.
    pub fn move_to(&self, node: &crate::Node) -> Result<Session> {
        self.check()?;
        let (since, watches) = {
            let tree = self.host.replica().tree().read();
            let taken = self.host.watches.lock().take_watches(self.inner.id, &tree);
            (tree.zxid(), taken)
        };
        // Everything already queued here runs before anything is armed there: no watcher
        // runs twice at once, and no event comes after a newer one.
        self.settle();
        let mut builder = node
            .session_builder()
            .timeout(self.inner.timeout)
            .wait_for_watchers(self.inner.wait_for_watchers);
        // Its identities go with it, as a ZooKeeper client re-sends its auth on reconnect.
        builder.auth = self.inner.identities().to_vec();
        if let Some(w) = self.inner.dispatcher.state_watcher() {
            builder = builder.watcher(move |e| w(e));
        }
        let (target, result) = match builder.attach(self.inner.id, &self.inner.password) {
            Ok(moved) => {
                // The move is applied on the new node; this node may apply it a moment
                // later. This handle is done now: its calls answer SessionMoved from here
                // on, and this node stops hosting the session.
                self.release();
                (moved.host.clone(), Ok(moved))
            }
            Err(e) => (self.host.clone(), Err(e)),
        };
        let unarmed = {
            let tree = target.replica().tree().read();
            target
                .watches
                .lock()
                .arm_moved(self.inner.id, watches, &tree, since)
        };
        drop(unarmed); // no lock held
        result
    }

    /// Closes the session: its ephemerals are deleted in the same log entry, every call
    /// afterwards returns [`Error::SessionClosed`], and the session watcher hears Closed.
    /// Closing an ended session does nothing.
    pub fn close(&self) -> Result<()> {
        if self.ended() {
            return Ok(());
        }
        self.call(Request::Write(Op::CloseSession {
            session: self.inner.id,
            expired: false,
        }))?;
        self.join_dispatcher();
        Ok(())
    }

    /// Waits for the dispatcher to deliver what is queued and end — unless the session
    /// opted out of waiting for its watchers (the caller may hold a lock they need).
    fn join_dispatcher(&self) {
        if self.inner.wait_for_watchers {
            self.inner.dispatcher.join();
        }
    }
}

impl Drop for Session {
    /// Never blocks: the session is closed in the background, in its order after the
    /// requests already submitted ([`Session::close`] waits for it). If the close cannot
    /// be done (no quorum, the node stopping), the node stops hosting the session and the
    /// leader expires it after its timeout, as after a crash.
    fn drop(&mut self) {
        if self.inner.client_pings {
            // A wire session outlives its handle (its client may re-attach anywhere):
            // only its hosting here ends, whatever path dropped it.
            self.release();
            return;
        }
        if self.ended() {
            return;
        }
        if self.host.replica().is_stopped() {
            self.host.forget_session(self.inner.id);
            return;
        }
        // If the close fails, the node stops hosting the session, so that the leader
        // expires it.
        let host = self.host.clone();
        let session = self.inner.id;
        let done = Completer::call(
            move |reply: Result<Reply>| {
                if reply.is_err() {
                    host.forget_session(session);
                }
            },
            || Error::Shutdown,
        );
        pipeline::submit_queued(
            &self.host,
            &self.inner,
            Request::Write(Op::CloseSession {
                session: self.inner.id,
                expired: false,
            }),
            Answer::Complete {
                done,
                direct: false,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::acl::{perms, Acl, Id};
    use crate::watch::FAIL_SPAWN;
    use crate::{CreateMode, Error, Node};

    #[test]
    fn an_identity_added_by_a_front_end_is_checked_like_any_other() {
        let dir = tempfile::tempdir().unwrap();
        let node = Node::builder(1).data_dir(dir.path()).start().unwrap();
        let lan = vec![Acl::new(perms::READ, Id::new("ip", "10.0.0.0/8"))];
        node.create_with_acl("/lan", b"x", CreateMode::Persistent, lan)
            .unwrap();
        let s = node.session().unwrap();
        assert!(matches!(s.get_data("/lan", None), Err(Error::NoAuth(_))));
        s.add_identity(Id::new("ip", "10.1.2.3"));
        s.add_identity(Id::new("ip", "10.1.2.3"));
        assert_eq!(s.identities(), [Id::new("ip", "10.1.2.3")], "once");
        assert_eq!(s.get_data("/lan", None).unwrap().0, b"x");
        assert!(matches!(
            s.set_data("/lan", b"y", None),
            Err(Error::NoAuth(_))
        ));
        // An ip identity is not an authenticated one: `auth` cannot expand to it.
        assert!(matches!(
            s.create_with_acl("/mine", b"", CreateMode::Persistent, Acl::creator_all()),
            Err(Error::InvalidAcl { .. })
        ));
        drop(s);
        node.shutdown();
    }

    #[test]
    fn a_callback_answer_runs_outside_the_pipelines_locks() {
        // A callback may take any lock — here the tree's write lock, which the pipeline
        // holds shared while answers leave: run there, it would wait for itself forever.
        let dir = tempfile::tempdir().unwrap();
        let node = Node::builder(1).data_dir(dir.path()).start().unwrap();
        let s = node.session().unwrap();
        let (tx, rx) = crossbeam_channel::bounded(2);
        for request in [
            crate::Request::Write(crate::Op::create("/c", vec![], CreateMode::Persistent)),
            crate::Request::Exists {
                path: "/c".into(),
                watcher: None,
            },
        ] {
            let host = s.host.clone();
            let tx = tx.clone();
            let done = crate::completion::Completer::call(
                move |r: crate::Result<crate::Reply>| {
                    let _exclusive = host.replica().tree().write();
                    let _ = tx.send(r.is_ok());
                },
                || Error::Shutdown,
            );
            s.submit_queued(request, done);
        }
        let answers: Vec<_> = (0..2)
            .map(|_| rx.recv_timeout(std::time::Duration::from_secs(20)))
            .collect();
        if answers.iter().any(|a| *a != Ok(true)) {
            // The answer thread is stuck for good: a shutdown would wait for it too.
            std::mem::forget((s, node));
            panic!("a callback answer waited on the pipeline's own locks: {answers:?}");
        }
        drop(s);
        node.shutdown();
    }

    #[test]
    fn a_session_that_cannot_get_its_thread_is_never_committed() {
        let dir = tempfile::tempdir().unwrap();
        let node = Node::builder(1).data_dir(dir.path()).start().unwrap();
        // The new leader's first entry is applied (not still on its way) before counting.
        node.sync("/").unwrap();
        let applied = node.applied_index();
        FAIL_SPAWN.with(|f| f.set(true));
        let res = node.session();
        FAIL_SPAWN.with(|f| f.set(false));
        assert!(matches!(res, Err(Error::Io(_))), "{res:?}");
        assert!(
            node.with_tree(|t| t.sessions().is_empty()),
            "no orphan session"
        );
        assert_eq!(node.applied_index(), applied, "nothing was proposed");
        assert_eq!(node.hosted_sessions(), 0);
        let s = node.session().unwrap();
        assert!(node.with_tree(|t| t.sessions().contains_key(&s.id())));
        drop(s);
        node.shutdown();
    }
}
