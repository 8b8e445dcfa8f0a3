//! A session's request pipeline: requests submitted without waiting, answered in the order
//! they were submitted.
//!
//! Every request of a session takes a slot at the back of the session's pipe. A read
//! waits in its slot until every request before it is answered, then runs on the tree as
//! it is: it sees the session's earlier writes and none of its later ones, because a write
//! is handed to raft only once no read of the session is waiting before it (ZooKeeper's
//! CommitProcessor holds a session's requests the same way). Writes after writes go to
//! raft at once, numbered in the session's order, many in flight. Answers leave from the
//! front of the pipe only, so they come out in submission order whatever order raft
//! completes things in.
//!
//! An answer goes out under the tree's read lock: every watch event of an entry it
//! reflects was queued (under the write lock, by the apply) on the session's dispatcher
//! before it. A [`Sink`] hears its answers through the dispatcher, after those events; a
//! synchronous caller is answered directly when nothing is queued before it, and through
//! the dispatcher otherwise — so no caller sees data newer than an event its watchers have
//! not had, with no thread handoff in the common case. (A caller that must not wait for
//! the session's watchers — one running on a callback thread, or a session with
//! `wait_for_watchers(false)` — is always answered directly, so its answer may come before
//! a sink has heard the answers of earlier requests still queued for it.)
//!
//! A request runs with the identities its session held when it was submitted (as
//! ZooKeeper's `Request` copies its connection's `authInfo`): reads check them against
//! ACLs here, writes carry them in their command for the state machine to check.
//!
//! Every request is answered exactly once: a completer the driver drops unfilled (on an
//! error path) answers `Shutdown` as it is dropped, and one refused before it is handed
//! over is forgotten, its refusal answered in its slot.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use crate::acl::{self, perms, Acl, Id};
use crate::api;
use crate::command::Op;
use crate::completion::Completer;
use crate::error::{Error, Result};
use crate::host::Host;
use crate::output::Output;
use crate::reconfig::Reconfig;
use crate::session::SessionInner;
use crate::time::deadline_after;
use crate::tree::{DataTree, OpResult, Stat, Znode};
use crate::watch::{
    AddWatchMode, MovingWatches, PersistentWatcher, WatchManager, Watcher, WatcherType,
};

/// A request a [`Session`](crate::Session) can pipeline.
#[non_exhaustive]
pub enum Request {
    /// A write: create, delete, set_data, set_acl, check or multi.
    Write(Op),
    /// `exists`, with an optional one-shot watch. Needs READ permission on the znode if
    /// it exists (as ZooKeeper 3.8.4+ and 3.9.2+, ZOOKEEPER-2590).
    Exists {
        /// The path.
        path: String,
        /// Fires on the next NodeCreated, NodeDataChanged or NodeDeleted of `path`.
        watcher: Option<Watcher>,
    },
    /// `getData`, with an optional one-shot watch (not set if the znode is missing or
    /// the read is denied). Needs READ permission.
    GetData {
        /// The path.
        path: String,
        /// Fires on the next NodeDataChanged or NodeDeleted of `path`.
        watcher: Option<Watcher>,
    },
    /// `getChildren2`, with an optional one-shot watch (not set if the znode is missing
    /// or the read is denied). Needs READ permission.
    GetChildren {
        /// The path.
        path: String,
        /// Fires on the next NodeChildrenChanged or NodeDeleted of `path`.
        watcher: Option<Watcher>,
    },
    /// `sync`: answered once this node has applied every write committed before it.
    Sync {
        /// The path (validated; ZooKeeper syncs the whole tree).
        path: String,
    },
    /// `addWatch`: a persistent (or persistent recursive) watch on `path`.
    AddWatch {
        /// The path (need not exist).
        path: String,
        /// Which kind.
        mode: AddWatchMode,
        /// Called for every event until removed.
        watcher: PersistentWatcher,
    },
    /// `removeWatches`: this session's watches of `kind` on `path` (`NoWatcher` if none).
    RemoveWatches {
        /// The path.
        path: String,
        /// Which watches.
        kind: WatcherType,
    },
    /// `checkWatches`: whether this session has watches of `kind` on `path` (`NoWatcher`
    /// if none); nothing is removed.
    CheckWatches {
        /// The path.
        path: String,
        /// Which watches.
        kind: WatcherType,
    },
    /// `getEphemerals`: this session's ephemeral znodes under `prefix`, sorted.
    GetEphemerals {
        /// A path prefix.
        prefix: String,
    },
    /// `getACL`: the znode's ACL and stat. Needs READ or ADMIN permission; without ADMIN
    /// the hashes of `digest` ids are shown as `x` (`user:x`), as ZooKeeper shows them.
    GetAcl {
        /// The path.
        path: String,
    },
    /// `getAllChildrenNumber`: how many znodes are below `path` (all levels).
    GetAllChildrenNumber {
        /// The path.
        path: String,
    },
    /// `multiRead`: reads run together, on one state of the tree; each succeeds or fails
    /// on its own (nothing is rolled back, there is nothing to roll back).
    MultiRead(Vec<ReadOp>),
    /// `setWatches`: arms watches a session had on its previous server, as ZooKeeper
    /// does after a reconnect (use it after [`SessionBuilder::attach`](crate::SessionBuilder::attach)).
    /// `relative_zxid` is the last zxid the session saw: a data watch whose znode is gone
    /// fires NodeDeleted now, one whose data changed after it fires NodeDataChanged; an
    /// exists watch whose znode now exists fires NodeCreated; a child watch whose znode is
    /// gone or whose children changed after it fires at once; the rest are armed.
    /// Persistent watches are armed again.
    SetWatches {
        /// The last zxid the session saw.
        relative_zxid: i64,
        /// Data watches (set by getData).
        data: Vec<(String, Watcher)>,
        /// Exists watches (set by exists, on a znode that may be missing).
        exist: Vec<(String, Watcher)>,
        /// Child watches.
        child: Vec<(String, Watcher)>,
        /// Persistent watches.
        persistent: Vec<(String, PersistentWatcher)>,
        /// Persistent recursive watches.
        recursive: Vec<(String, PersistentWatcher)>,
    },
    /// `reconfig`: changes the ensemble's members (see [`Reconfig`]), answered with
    /// `/zookeeper/config`'s data and stat once applied on this node. Needs WRITE
    /// permission on `/zookeeper/config` (the super user).
    Reconfig(Reconfig),
}

/// One read of a [`Request::MultiRead`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadOp {
    /// getData of the path (no watch).
    GetData(String),
    /// getChildren of the path (no watch).
    GetChildren(String),
}

impl ReadOp {
    fn path(&self) -> &str {
        match self {
            ReadOp::GetData(p) | ReadOp::GetChildren(p) => p,
        }
    }
}

impl Request {
    /// The watchers the request carries (a persistent one wrapped in a one-shot that
    /// owns it), to be dropped with no lock held.
    fn into_watchers(self) -> Vec<Watcher> {
        match self {
            Request::Exists { watcher, .. }
            | Request::GetData { watcher, .. }
            | Request::GetChildren { watcher, .. } => watcher.into_iter().collect(),
            Request::AddWatch { watcher, .. } => vec![owning(watcher)],
            Request::SetWatches {
                data,
                exist,
                child,
                persistent,
                recursive,
                ..
            } => {
                let one_shot = data.into_iter().chain(exist).chain(child);
                let lasting = persistent.into_iter().chain(recursive);
                one_shot
                    .map(|(_, w)| w)
                    .chain(lasting.map(|(_, w)| owning(w)))
                    .collect()
            }
            _ => Vec::new(),
        }
    }
}

/// A one-shot watcher that only owns `w` (dropping it drops `w`).
fn owning(w: PersistentWatcher) -> Watcher {
    Box::new(move |_| drop(w))
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Request::Write(op) => f.debug_tuple("Write").field(op).finish(),
            Request::Exists { path, .. } => f.debug_struct("Exists").field("path", path).finish(),
            Request::GetData { path, .. } => f.debug_struct("GetData").field("path", path).finish(),
            Request::GetChildren { path, .. } => {
                f.debug_struct("GetChildren").field("path", path).finish()
            }
            Request::Sync { path } => f.debug_struct("Sync").field("path", path).finish(),
            Request::AddWatch { path, mode, .. } => f
                .debug_struct("AddWatch")
                .field("path", path)
                .field("mode", mode)
                .finish(),
            Request::RemoveWatches { path, kind } => f
                .debug_struct("RemoveWatches")
                .field("path", path)
                .field("kind", kind)
                .finish(),
            Request::GetEphemerals { prefix } => f
                .debug_struct("GetEphemerals")
                .field("prefix", prefix)
                .finish(),
            Request::GetAcl { path } => f.debug_struct("GetAcl").field("path", path).finish(),
            Request::CheckWatches { path, kind } => f
                .debug_struct("CheckWatches")
                .field("path", path)
                .field("kind", kind)
                .finish(),
            Request::GetAllChildrenNumber { path } => f
                .debug_struct("GetAllChildrenNumber")
                .field("path", path)
                .finish(),
            Request::MultiRead(ops) => f.debug_tuple("MultiRead").field(ops).finish(),
            Request::SetWatches { relative_zxid, .. } => f
                .debug_struct("SetWatches")
                .field("relative_zxid", relative_zxid)
                .finish(),
            Request::Reconfig(r) => f.debug_tuple("Reconfig").field(r).finish(),
        }
    }
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reply {
    /// What the write did.
    Write(OpResult),
    /// The stat, if the znode exists.
    Exists(Option<Stat>),
    /// Data and stat (`None`: the znode has no data at all, ZooKeeper's `null`).
    Data(Option<Vec<u8>>, Stat),
    /// Child names (sorted) and the parent's stat.
    Children(Vec<String>, Stat),
    /// Done (`sync`, `addWatch`, `removeWatches`).
    Done,
    /// Ephemeral paths, sorted.
    Ephemerals(Vec<String>),
    /// A znode's ACL and stat.
    Acl(Vec<Acl>, Stat),
    /// A count (`getAllChildrenNumber`).
    Count(i32),
    /// One answer per read of a `MultiRead`, in order.
    MultiRead(Vec<Result<Reply>>),
    /// The identities a session holds (ZooKeeper's `whoAmI`, which the client port
    /// answers in the session's order).
    Identities(Vec<Id>),
}

/// Receives the answers of a session's pipelined requests, each with the request number
/// (ZooKeeper's xid) it was submitted with, in submission order, on the session's
/// dispatcher (after every watch event the answer reflects).
pub trait Sink: Send + Sync + 'static {
    /// The answer to request `xid`.
    fn reply(&self, xid: i64, reply: Result<Reply>);

    /// The answer to request `xid`, with the zxid this node had applied when it was
    /// produced — what ZooKeeper's reply header carries: every watch event of an entry up
    /// to it was queued before this answer. By default, [`Sink::reply`].
    fn reply_at(&self, xid: i64, zxid: i64, reply: Result<Reply>) {
        let _ = zxid;
        self.reply(xid, reply);
    }
}

/// Where an answer goes.
pub(crate) enum Answer {
    /// A pipelined request's sink.
    Sink(Arc<dyn Sink>, i64),
    /// A wire connection, which queues answers in order (see [`Output`]).
    Output(Arc<dyn Output>, i64),
    /// A caller awaiting the answer's completion: a synchronous caller blocked on it, or
    /// an async caller's future. `direct`: it must not wait for the session's watchers
    /// (a synchronous caller that is one of them, on a callback thread, or whose session
    /// opted out).
    Complete {
        /// Completes the caller's wait.
        done: Completer<Reply>,
        /// See the variant.
        direct: bool,
    },
}

enum State {
    /// A write held until the reads before it have run.
    Held(Op),
    /// Handed to raft; the driver completes it.
    Waiting,
    Done(Result<Reply>),
    /// A read waiting for the requests before it.
    Read(Request),
}

struct Slot {
    id: u64,
    state: State,
    answer: Answer,
    /// The session's identities when the request was submitted.
    auth: Arc<[Id]>,
    /// The request's operation ([`crate::latency::OPERATIONS`]) and when it was
    /// submitted, for its latency; none for an answer known at submission.
    timed: Option<(u8, Instant)>,
}

/// Most requests of one session submitted and not answered yet; [`Session::submit`](crate::Session::submit) waits for room
/// beyond it (back-pressure, as a ZooKeeper server stops reading a connection).
pub const MAX_OUTSTANDING: usize = 10_000;

/// A session's requests not answered yet, in submission order.
#[derive(Default)]
pub(crate) struct Pipe {
    slots: VecDeque<Slot>,
    next: u64,
    /// Requests submitted without waiting ([`submit_queued`]) while the pipe was full,
    /// in submission order: they take slots as answers leave, before any later request.
    backlog: VecDeque<Backlogged>,
    /// Slots in `State::Read` (kept so a new write finds its state in O(1)).
    reads: usize,
    /// Slots in `State::Held`.
    held: usize,
}

/// A request waiting for room in its session's pipe.
struct Backlogged {
    request: Request,
    answer: Answer,
    /// The session's identities when it was submitted (it runs with these).
    auth: Arc<[Id]>,
    /// When it was submitted (its latency counts its wait here).
    since: Instant,
}

impl Pipe {
    /// True when a request submitted now must wait for room: the pipe is full, or
    /// requests submitted before it wait already.
    fn full(&self) -> bool {
        self.slots.len() >= MAX_OUTSTANDING || !self.backlog.is_empty()
    }

    /// Adds `slot` at the back.
    fn push(&mut self, slot: Slot) {
        match slot.state {
            State::Read(_) => self.reads += 1,
            State::Held(_) => self.held += 1,
            State::Waiting | State::Done(_) => {}
        }
        self.slots.push_back(slot);
    }

    /// Takes the front slot.
    fn pop_front(&mut self) -> Option<Slot> {
        let slot = self.slots.pop_front()?;
        match slot.state {
            State::Read(_) => self.reads -= 1,
            State::Held(_) => self.held -= 1,
            State::Waiting | State::Done(_) => {}
        }
        Some(slot)
    }

    /// True when a write submitted now must be held rather than handed to raft: a read
    /// waits before it (it must not see the write), or a write held before it does (it
    /// must not overtake that write).
    fn holds_writes(&self) -> bool {
        self.reads + self.held > 0
    }

    /// Slot `id`, if it is still in the pipe: found in O(1), since slots take consecutive
    /// ids and leave from the front only.
    fn slot_mut(&mut self, id: u64) -> Option<&mut Slot> {
        let first = self.slots.front()?.id;
        let at = usize::try_from(id.checked_sub(first)?).ok()?;
        let slot = self.slots.get_mut(at)?;
        (slot.id == id).then_some(slot)
    }
}

/// What a drain leaves to do once the pipe's lock is released: watchers to drop, an
/// output to write out.
#[derive(Default)]
struct AfterLocks {
    /// Watchers of reads that set none (their captures may own anything).
    unarmed: Vec<Watcher>,
    /// An output that took answers directly and must be flushed.
    flush: Option<Arc<dyn Output>>,
    /// Answers that complete their callers' waits, in order: a waiter woken (a thread
    /// unparked, a task's waker called) must find no lock of the pipeline held.
    complete: Vec<(Completer<Reply>, Result<Reply>)>,
}

impl AfterLocks {
    /// Completes the waits, flushes the output, if any; hands back the watchers to drop.
    fn finish(self) -> Vec<Watcher> {
        for (done, result) in self.complete {
            done.complete(result);
        }
        if let Some(out) = self.flush {
            out.flush();
        }
        self.unarmed
    }
}

/// Submits `request` for the session `inner`, hosted by `host`; `answer` hears the
/// outcome in submission order.
pub(crate) fn submit(
    host: &Arc<Host>,
    inner: &Arc<SessionInner>,
    request: Request,
    answer: Answer,
) {
    let timed = Some((crate::latency::operation(&request), Instant::now()));
    enqueue(host, inner, answer, timed, |pipe, id, auth| {
        state_of(host, inner, pipe, id, auth, request)
    });
}

/// Like [`submit`], but never waits: when the pipe is full the request waits in the
/// session's backlog, and takes its slot, in order, as answers leave (the async API's
/// back-pressure: its caller awaits the answer, no thread blocks).
pub(crate) fn submit_queued(
    host: &Arc<Host>,
    inner: &Arc<SessionInner>,
    request: Request,
    answer: Answer,
) {
    let mut after = AfterLocks::default();
    {
        let mut pipe = inner.pipe.lock();
        let auth = inner.identities();
        if pipe.full() {
            pipe.backlog.push_back(Backlogged {
                request,
                answer,
                auth,
                since: Instant::now(),
            });
            return;
        }
        admit(
            host,
            inner,
            &mut pipe,
            request,
            answer,
            auth,
            Instant::now(),
        );
        drain(host, inner, &mut pipe, &mut after);
    }
    drop(after.finish());
}

/// Gives `request` the next slot at the back of the pipe (the caller made room).
fn admit(
    host: &Arc<Host>,
    inner: &Arc<SessionInner>,
    pipe: &mut Pipe,
    request: Request,
    answer: Answer,
    auth: Arc<[Id]>,
    since: Instant,
) {
    let id = pipe.next;
    pipe.next += 1;
    let timed = Some((crate::latency::operation(&request), since));
    let state = state_of(host, inner, pipe, id, &auth, request);
    pipe.push(Slot {
        id,
        state,
        answer,
        auth,
        timed,
    });
}

/// The state a new slot `id` starts in: a write handed to raft (or held behind a read),
/// a read waiting for its turn, or an answer known at once.
fn state_of(
    host: &Arc<Host>,
    inner: &Arc<SessionInner>,
    pipe: &Pipe,
    id: u64,
    auth: &[Id],
    request: Request,
) -> State {
    {
        match inner.check(host.replica()) {
            // A session that moved to another member may still be closed through a
            // handle that holds it, as ZooKeeper lets any connection of the session close
            // it (its closeSession skips the owner check): unordered, as the last word.
            Err(Error::SessionMoved)
                if matches!(&request, Request::Write(Op::CloseSession { session, .. })
                    if *session == inner.id) =>
            {
                close_unordered(host, inner, id)
            }
            Err(e) => State::Done(Err(e)),
            Ok(()) if inner.read_only && !read_only_allows(&request, inner.id) => {
                State::Done(Err(Error::NotReadOnly))
            }
            Ok(()) if inner.read_only && matches!(request, Request::Write(_)) => {
                // Its own close, answered here, without the log (as ZooKeeper's read-only
                // server closes its local sessions).
                State::Done(Ok(Reply::Write(OpResult::SessionClosed {
                    deleted: Vec::new(),
                })))
            }
            Ok(()) => match request {
                Request::Write(op) => {
                    if pipe.holds_writes() {
                        State::Held(op)
                    } else {
                        propose(host, inner, id, op, auth)
                    }
                }
                Request::Sync { path } => match host.replica().check_read_path(&path) {
                    Ok(()) => start_sync(host, inner, id),
                    Err(e) => State::Done(Err(e)),
                },
                Request::Reconfig(ref r) => start_reconfig(host, inner, id, auth, r),
                Request::GetEphemerals { .. } | Request::SetWatches { .. } => State::Read(request),
                Request::MultiRead(ref ops) => {
                    match ops
                        .iter()
                        .try_for_each(|op| host.replica().check_read_path(op.path()))
                    {
                        Ok(()) => State::Read(request),
                        Err(e) => State::Done(Err(e)),
                    }
                }
                Request::Exists { ref path, .. }
                | Request::GetData { ref path, .. }
                | Request::GetChildren { ref path, .. }
                | Request::GetAcl { ref path }
                | Request::AddWatch { ref path, .. }
                | Request::GetAllChildrenNumber { ref path }
                | Request::CheckWatches { ref path, .. }
                | Request::RemoveWatches { ref path, .. } => {
                    match host.replica().check_read_path(path) {
                        Ok(()) => State::Read(request),
                        Err(e) => State::Done(Err(e)),
                    }
                }
            },
        }
    }
}

/// Queues an answer already known (a request refused before it could be submitted, such
/// as a malformed record of the wire protocol), in the session's order.
pub(crate) fn submit_answered(
    host: &Arc<Host>,
    inner: &Arc<SessionInner>,
    result: Result<Reply>,
    answer: Answer,
) {
    enqueue(host, inner, answer, None, |_, _, _| State::Done(result));
}

/// Takes a slot at the back of the pipe (waiting for room), fills it with `state` and
/// answers what has become answerable.
fn enqueue(
    host: &Arc<Host>,
    inner: &Arc<SessionInner>,
    answer: Answer,
    timed: Option<(u8, Instant)>,
    state: impl FnOnce(&Pipe, u64, &[Id]) -> State,
) {
    let mut after = AfterLocks::default();
    {
        let mut pipe = inner.pipe.lock();
        // Back-pressure: a session has at most MAX_OUTSTANDING requests unanswered; the
        // submitter waits for room (the driver answers every write by its deadline, and
        // room never depends on a watcher running, so this cannot wait on itself).
        while pipe.full() {
            inner.pipe_room.wait(&mut pipe);
        }
        let id = pipe.next;
        pipe.next += 1;
        // The session's identities now: the request runs with these.
        let auth = inner.identities();
        let state = state(&pipe, id, &auth);
        pipe.push(Slot {
            id,
            state,
            answer,
            auth,
            timed,
        });
        drain(host, inner, &mut pipe, &mut after);
    }
    // Watchers of reads that set none: dropped with no lock held (their captures may own
    // anything, a session included).
    drop(after.finish());
}

/// Hands write `id` to raft, numbered in the session's order (the caller holds the pipe,
/// so numbers follow the pipe's order), on behalf of the identities `auth`.
fn propose(host: &Arc<Host>, inner: &Arc<SessionInner>, id: u64, op: Op, auth: &[Id]) -> State {
    let (s, i) = (host.clone(), inner.clone());
    let closing = matches!(op, Op::CloseSession { session, .. } if session == inner.id);
    let reply = host
        .replica()
        .callback(move |res: Result<OpResult>| match res {
            // The session moved to another member before its close was applied: closed
            // anyway, unordered (see `submit`).
            Err(Error::SessionMoved) if closing => {
                if let State::Done(r) = close_unordered(&s, &i, id) {
                    complete(&s, &i, id, r);
                }
            }
            res => complete(&s, &i, id, res.map(Reply::Write)),
        });
    let deadline = deadline_after(Instant::now(), host.replica().config().request_timeout);
    // Numbered under the session's order lock, held until the proposal is queued, so the
    // driver sees the session's writes in the order of their numbers.
    let mut order = inner.order.lock();
    handed(
        host.replica()
            .propose_ordered(auth, op, deadline, reply, || {
                let (epoch, seq) = order.take_next();
                crate::replica::Ordered {
                    session: inner.id,
                    epoch,
                    seq,
                }
            }),
    )
}

/// The state of a slot whose request was handed over (`Ok`) or refused before.
fn handed(res: Result<()>) -> State {
    match res {
        Ok(()) => State::Waiting,
        Err(e) => State::Done(Err(e)),
    }
}

/// Proposes the session's own close as slot `id`, outside its order: a session that
/// moved to another member may still be closed through a handle that holds it (see
/// `submit`).
fn close_unordered(host: &Arc<Host>, inner: &Arc<SessionInner>, id: u64) -> State {
    let (s, i) = (host.clone(), inner.clone());
    let reply = host
        .replica()
        .callback(move |res: Result<OpResult>| complete(&s, &i, id, res.map(Reply::Write)));
    let op = Op::CloseSession {
        session: inner.id,
        expired: false,
    };
    let deadline = deadline_after(Instant::now(), host.replica().config().request_timeout);
    handed(host.replica().propose(&[], op, deadline, reply))
}

/// Starts a ReadIndex round for sync `id`; its slot is answered once the index is applied.
fn start_sync(host: &Arc<Host>, inner: &Arc<SessionInner>, id: u64) -> State {
    let (s, i) = (host.clone(), inner.clone());
    let reply = host
        .replica()
        .callback(move |res: Result<u64>| complete(&s, &i, id, res.map(|_| Reply::Done)));
    let deadline = deadline_after(Instant::now(), host.replica().config().request_timeout);
    handed(host.replica().start_read_index(deadline, reply))
}

/// Whether a read-only session (a member without a quorum serving reads) may make
/// `request`: its reads, checked and run as any session's, and its own close; not a
/// write, sync or reconfig (`NotReadOnly`).
fn read_only_allows(request: &Request, session: i64) -> bool {
    match request {
        Request::Write(Op::CloseSession { session: s, .. }) => *s == session,
        Request::Write(_) | Request::Sync { .. } | Request::Reconfig(_) => false,
        _ => true,
    }
}

/// Starts the `reconfig` of slot `id` (see `reconfig`), answered in the slot.
fn start_reconfig(
    host: &Arc<Host>,
    inner: &Arc<SessionInner>,
    id: u64,
    auth: &[Id],
    request: &Reconfig,
) -> State {
    let (s, i) = (host.clone(), inner.clone());
    let done = Box::new(move |res: Result<Reply>| complete(&s, &i, id, res));
    match crate::reconfig::start(host, auth, request, done) {
        Ok(None) => State::Waiting,
        Ok(Some(reply)) => State::Done(Ok(reply)),
        Err(e) => State::Done(Err(e)),
    }
}

/// The driver finished write (or sync) `id`. Runs on the node's answer thread: watchers
/// of reads that set none go to the session's dispatcher to be dropped there (their
/// captures may run anything when dropped).
fn complete(host: &Arc<Host>, inner: &Arc<SessionInner>, id: u64, result: Result<Reply>) {
    let mut after = AfterLocks::default();
    {
        let mut pipe = inner.pipe.lock();
        if let Some(slot) = pipe.slot_mut(id) {
            slot.state = State::Done(result);
        }
        drain(host, inner, &mut pipe, &mut after);
    }
    inner.dispatcher.discard(after.finish());
}

/// Answers the front of the pipe while it is answerable, running reads as they reach it,
/// then hands to raft the held writes no read waits before any more.
fn drain(host: &Arc<Host>, inner: &Arc<SessionInner>, pipe: &mut Pipe, after: &mut AfterLocks) {
    let answerable = |p: &Pipe| {
        p.slots
            .front()
            .is_some_and(|s| matches!(s.state, State::Done(_) | State::Read(_)))
    };
    while answerable(pipe) {
        {
            let tree = host.replica().tree().read();
            let mut watches = None;
            while answerable(pipe) {
                let Some(slot) = pipe.pop_front() else {
                    break;
                };
                let result = match slot.state {
                    State::Done(r) => r,
                    // The session ended (closed, expired, moved) while the read waited:
                    // it sets no watch any more (its state changes under the tree's
                    // write lock, so this check holds while the read runs).
                    State::Read(request) if inner.check(host.replica()).is_err() => {
                        after.unarmed.extend(request.into_watchers());
                        Err(inner.check(host.replica()).err().unwrap_or(Error::Shutdown))
                    }
                    State::Read(request) => {
                        let w = watches.get_or_insert_with(|| host.watches.lock());
                        read(inner.id, &slot.auth, request, &tree, w, &mut after.unarmed)
                    }
                    State::Held(_) | State::Waiting => unreachable!("checked above"),
                };
                deliver(inner, slot.answer, tree.zxid(), result, after);
                if let Some((op, since)) = slot.timed {
                    host.latency.record(op, since.elapsed());
                }
                inner.pipe_room.notify_one();
            }
        }
        // Room was made: requests waiting in the backlog take their slots, in order
        // (reads among them run in the next round of this loop).
        while pipe.slots.len() < MAX_OUTSTANDING {
            let Some(b) = pipe.backlog.pop_front() else {
                break;
            };
            admit(host, inner, pipe, b.request, b.answer, b.auth, b.since);
        }
        if pipe.backlog.is_empty() {
            // Synchronous submitters wait behind the backlog (see `Pipe::full`).
            inner.pipe_room.notify_all();
        }
        // Held writes with no read before them go to raft now, in order (a refusal
        // before proposing makes its slot answerable at once: the loop goes round again).
        // Admitted from the backlog above, a write was held if one was held before it.
        if pipe.held > 0 {
            for slot in pipe.slots.iter_mut() {
                if matches!(slot.state, State::Read(_)) {
                    break;
                }
                if let State::Held(_) = slot.state {
                    if let State::Held(op) = std::mem::replace(&mut slot.state, State::Waiting) {
                        pipe.held -= 1;
                        slot.state = propose(host, inner, slot.id, op, &slot.auth);
                    }
                }
            }
        }
    }
}

fn deliver(
    inner: &SessionInner,
    answer: Answer,
    zxid: u64,
    result: Result<Reply>,
    after: &mut AfterLocks,
) {
    match answer {
        // Nothing queued before it (or the caller must not wait for the dispatcher): the
        // waiting caller gets it at once, once the locks are released. A callback never
        // runs on this thread (it may take any lock, or block): it runs on the dispatcher.
        Answer::Complete { done, direct }
            if !done.calls_back() && (direct || inner.dispatcher.idle()) =>
        {
            after.complete.push((done, result));
        }
        Answer::Complete { done, .. } => inner
            .dispatcher
            .run_after_queued(Box::new(move || done.complete(result))),
        Answer::Sink(sink, xid) => {
            let zxid = i64::try_from(zxid).unwrap_or(i64::MAX);
            inner
                .dispatcher
                .run_after_queued(Box::new(move || sink.reply_at(xid, zxid, result)))
        }
        // Nothing queued before it on the dispatcher (read under the tree lock, so no
        // event of an entry the answer reflects can be missing): into the output now, in
        // order; written out once the locks are released.
        Answer::Output(out, xid) if inner.dispatcher.idle() => {
            let zxid = i64::try_from(zxid).unwrap_or(i64::MAX);
            if out.queue_reply(xid, zxid, result) {
                after.flush = Some(out);
            }
        }
        Answer::Output(out, xid) => {
            let zxid = i64::try_from(zxid).unwrap_or(i64::MAX);
            inner.dispatcher.run_after_queued(Box::new(move || {
                if out.queue_reply(xid, zxid, result) {
                    out.flush();
                }
            }))
        }
    }
}

/// The znode at `path` if the identities `auth` may read it (`perm`): `NoNode` before
/// `NoAuth`, as ZooKeeper checks.
fn readable(tree: &DataTree, path: &str, auth: &[Id], perm: i32) -> Result<Arc<Znode>> {
    let node = tree
        .get(path)
        .ok_or_else(|| Error::NoNode(path.to_string()))?;
    acl::check(node.acl(), auth, perm, path)?;
    Ok(node)
}

/// `getACL` of `path` for a caller holding `auth`: READ or ADMIN needed; without ADMIN,
/// digest hashes are hidden (ZooKeeper's FinalRequestProcessor).
pub(crate) fn acl_of(tree: &DataTree, path: &str, auth: &[Id]) -> Result<(Vec<Acl>, Stat)> {
    let node = readable(tree, path, auth, perms::READ | perms::ADMIN)?;
    Ok((acl::as_shown(node.acl(), auth), node.stat()))
}

/// Runs a read on `tree` for a caller holding `auth`, setting its watch in the same
/// critical section (not when the read fails).
fn read(
    session: i64,
    auth: &[Id],
    request: Request,
    tree: &DataTree,
    watches: &mut WatchManager,
    unarmed: &mut Vec<Watcher>,
) -> Result<Reply> {
    match request {
        Request::Exists { path, watcher } => {
            let node = tree.get(&path);
            if let Some(n) = &node {
                if let Err(e) = acl::check(n.acl(), auth, perms::READ, &path) {
                    unarmed.extend(watcher);
                    return Err(e);
                }
            }
            if let Some(w) = watcher {
                watches.add_data(session, &path, w);
            }
            Ok(Reply::Exists(node.map(|n| n.stat())))
        }
        Request::GetData { path, watcher } => {
            let out = readable(tree, &path, auth, perms::READ)
                .and_then(|n| api::data_of(&path, Some(&n)));
            armed_if_found(out, watcher, unarmed, |w| {
                watches.add_data(session, &path, w)
            })
            .map(|(data, stat)| Reply::Data(data, stat))
        }
        Request::GetChildren { path, watcher } => {
            let out = readable(tree, &path, auth, perms::READ)
                .and_then(|n| api::children_of(tree, &path, Some(&n)));
            armed_if_found(out, watcher, unarmed, |w| {
                watches.add_child(session, &path, w)
            })
            .map(|(children, stat)| Reply::Children(children, stat))
        }
        Request::AddWatch {
            path,
            mode,
            watcher,
        } => {
            watches.add_persistent(session, &path, mode, watcher);
            Ok(Reply::Done)
        }
        Request::RemoveWatches { path, kind } => {
            if watches.remove(session, &path, kind) {
                Ok(Reply::Done)
            } else {
                Err(Error::NoWatcher(path))
            }
        }
        Request::CheckWatches { path, kind } => {
            if watches.has(session, &path, kind) {
                Ok(Reply::Done)
            } else {
                Err(Error::NoWatcher(path))
            }
        }
        Request::GetEphemerals { prefix } => {
            Ok(Reply::Ephemerals(tree.ephemerals(session, &prefix)))
        }
        Request::GetAcl { path } => {
            acl_of(tree, &path, auth).map(|(acl, stat)| Reply::Acl(acl, stat))
        }
        Request::GetAllChildrenNumber { path } => {
            readable(tree, &path, auth, perms::READ)?;
            tree.descendants(&path)
                .map(|n| Reply::Count(i32::try_from(n).unwrap_or(i32::MAX)))
                .ok_or(Error::NoNode(path))
        }
        // Each read is checked on its own, as ZooKeeper's multiRead: a denied one is its
        // own NoAuth, the others still answer.
        Request::MultiRead(ops) => Ok(Reply::MultiRead(
            ops.into_iter()
                .map(|op| match op {
                    ReadOp::GetData(p) => readable(tree, &p, auth, perms::READ)
                        .and_then(|n| api::data_of(&p, Some(&n)))
                        .map(|(d, s)| Reply::Data(d, s)),
                    ReadOp::GetChildren(p) => readable(tree, &p, auth, perms::READ)
                        .and_then(|n| api::children_of(tree, &p, Some(&n)))
                        .map(|(c, s)| Reply::Children(c, s)),
                })
                .collect(),
        )),
        Request::SetWatches {
            relative_zxid,
            data,
            exist,
            child,
            persistent,
            recursive,
        } => {
            let moving = MovingWatches::from_set_watches(data, exist, child, persistent, recursive);
            if let Some(left) = watches.set_watches(session, moving, tree, relative_zxid) {
                unarmed.extend(left.into_watchers());
            }
            Ok(Reply::Done)
        }
        Request::Write(_) | Request::Sync { .. } | Request::Reconfig(_) => {
            Err(Error::BadArguments("not a read".into()))
        }
    }
}

/// A getData or getChildren result: its watch is set (`arm`) only if the znode was found,
/// as ZooKeeper sets none on a missing znode; an unused watcher goes to `unarmed`.
fn armed_if_found<T>(
    out: Result<T>,
    watcher: Option<Watcher>,
    unarmed: &mut Vec<Watcher>,
    arm: impl FnOnce(Watcher),
) -> Result<T> {
    match (&out, watcher) {
        (Ok(_), Some(w)) => arm(w),
        (Err(_), Some(w)) => unarmed.push(w),
        (_, None) => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::completion::completion;

    fn slot(id: u64) -> Slot {
        let (done, _) = completion(|| Error::Shutdown);
        Slot {
            id,
            state: State::Waiting,
            answer: Answer::Complete { done, direct: true },
            auth: Arc::from(Vec::new()),
            timed: None,
        }
    }

    #[test]
    fn a_slot_is_found_by_its_id_as_slots_come_and_go() {
        let mut pipe = Pipe::default();
        assert!(pipe.slot_mut(0).is_none(), "empty");
        for id in 0..10 {
            pipe.push(slot(id));
            pipe.next = id + 1;
        }
        for _ in 0..4 {
            pipe.pop_front();
        }
        for id in 4..10 {
            assert_eq!(pipe.slot_mut(id).map(|s| s.id), Some(id));
        }
        for gone in [0, 3, 10, u64::MAX] {
            assert!(pipe.slot_mut(gone).is_none(), "{gone}");
        }
    }

    #[test]
    fn a_request_waits_behind_a_full_pipe_or_a_backlog() {
        let mut pipe = Pipe::default();
        assert!(!pipe.full());
        for id in 0..MAX_OUTSTANDING as u64 {
            pipe.push(slot(id));
        }
        assert!(pipe.full(), "no room");
        pipe.pop_front();
        assert!(!pipe.full(), "room again");
        let (done, _) = completion(|| Error::Shutdown);
        pipe.backlog.push_back(Backlogged {
            request: Request::Sync { path: "/".into() },
            answer: Answer::Complete { done, direct: true },
            auth: Arc::from(Vec::new()),
            since: Instant::now(),
        });
        assert!(
            pipe.full(),
            "requests before it wait already: it waits behind them"
        );
    }

    fn with_state(id: u64, state: State) -> Slot {
        Slot { state, ..slot(id) }
    }

    #[test]
    fn a_write_is_held_behind_a_waiting_read_or_a_held_write() {
        let mut pipe = Pipe::default();
        assert!(!pipe.holds_writes(), "nothing before it: proposed at once");
        pipe.push(with_state(0, State::Waiting));
        assert!(
            !pipe.holds_writes(),
            "writes after writes go to raft at once"
        );
        pipe.push(with_state(
            1,
            State::Read(Request::GetEphemerals { prefix: "/".into() }),
        ));
        assert!(pipe.holds_writes(), "a read waits before it");
        pipe.push(with_state(
            2,
            State::Held(Op::Check {
                path: "/".into(),
                version: None,
            }),
        ));
        pipe.pop_front();
        assert!(pipe.holds_writes(), "a read still waits");
        pipe.pop_front();
        // The read ran; the write held behind it is not proposed yet (the drain proposes
        // it after admitting the backlog): a write admitted now must wait behind it, not
        // overtake it.
        assert_eq!((pipe.reads, pipe.held), (0, 1));
        assert!(pipe.holds_writes(), "a write held before it");
        pipe.pop_front();
        assert_eq!((pipe.reads, pipe.held), (0, 0));
        assert!(!pipe.holds_writes());
    }
}
