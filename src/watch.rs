//! Watches: registrations made by sessions on this node, matched against the events the
//! tree reports, and delivered through each session's dispatcher — a queue run in order
//! on the process's shared callback threads (`delivery`), never a thread per session. A
//! wire session's connection is its watcher (as in ZooKeeper's server): its events are
//! encoded into the connection's ordered output by the apply that caused them, with no
//! callback thread, whenever nothing is queued before them (`crate::output`).
//!
//! ZooKeeper's rules: `exists`/`get_data` set a one-shot *data* watch (fired by
//! NodeCreated, NodeDataChanged, NodeDeleted on the path); `get_children` sets a one-shot
//! *child* watch (fired by NodeChildrenChanged and NodeDeleted on the path). `add_watch`
//! sets a *persistent* watch (every event on the path, children changes included) or a
//! *persistent recursive* one (created, deleted and data-changed events on the path and
//! everything below it). Watches live on the node where they were registered.
//!
//! Ordering: events are queued while the tree is still write-locked by the apply that
//! caused them, in apply (zxid) order; a session's reads and writes return only once its
//! dispatcher has delivered every event queued before the read, so a session never sees
//! data newer than an event it has not been told about yet.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};
use slog::Logger;

use crate::delivery::Executor;
use crate::output::Output;
use crate::path;
use crate::tree::{DataTree, EventType, WatchedEvent};

/// A one-shot watch callback, as passed to `exists`, `get_data` and `get_children`.
pub type Watcher = Box<dyn FnOnce(WatchedEvent) + Send + 'static>;

/// A callback called for every event of a persistent watch ([`crate::Session::add_watch`]).
pub type PersistentWatcher = Arc<dyn Fn(WatchedEvent) + Send + Sync + 'static>;

/// The one-shot watch a wire connection registers: the connection (its session
/// dispatcher's [`Output`]) is the watcher and is told of the event, as ZooKeeper's
/// server connection is; this closure is only the registration (it captures nothing, so
/// making it allocates nothing).
pub(crate) fn told_to_output() -> Watcher {
    Box::new(|_| {})
}

/// The persistent watch a wire connection registers (see [`told_to_output`]).
pub(crate) fn lasting_told_to_output() -> PersistentWatcher {
    Arc::new(|_| {})
}

/// Wraps a closure as a one-shot [`Watcher`] (saves writing `Some(Box::new(...))`).
pub fn watcher(f: impl FnOnce(WatchedEvent) + Send + 'static) -> Option<Watcher> {
    Some(Box::new(f))
}

/// The kind of persistent watch [`crate::Session::add_watch`] sets (ZooKeeper 3.6's
/// `AddWatchMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddWatchMode {
    /// Every event on the path, not removed when it fires.
    Persistent,
    /// Created, deleted and data-changed events on the path and every path below it.
    PersistentRecursive,
}

/// Which watches [`crate::Session::remove_watches`] removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WatcherType {
    /// Child watches.
    Children,
    /// Data and exists watches.
    Data,
    /// Persistent and persistent recursive watches.
    Persistent,
    /// All of them.
    Any,
}

/// A session's state as its session watcher hears of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SessionEvent {
    /// The session is open.
    Connected,
    /// The leader expired the session (its host stopped heartbeating within the timeout):
    /// its ephemerals are gone.
    Expired,
    /// The session was closed by its owner: its ephemerals are gone.
    Closed,
}

enum Job {
    /// An answer to a session's request, run after everything queued before it.
    Answer(Box<dyn FnOnce() + Send>),
    Event(Watcher, WatchedEvent),
    Persistent(PersistentWatcher, WatchedEvent),
    /// An event for the session's output (its connection), queued behind what came
    /// before it.
    Notify(WatchedEvent),
    State(Arc<dyn Fn(SessionEvent) + Send + Sync>, SessionEvent),
    /// Watchers of an ended session, dropped on the dispatcher thread: their captures may
    /// own the last handle to a `Session`, whose drop must not run under the node's locks.
    Discard(Vec<Watcher>, Vec<PersistentWatcher>),
    Stop,
}

#[cfg(test)]
thread_local! {
    /// Tests set it to make `Dispatcher::start` fail on this thread, as when the process
    /// has run out of threads.
    pub(crate) static FAIL_SPAWN: Cell<bool> = const { Cell::new(false) };
}

/// True on a thread that runs watcher callbacks.
fn on_dispatcher() -> bool {
    crate::delivery::ON_WORKER.with(Cell::get)
}

/// How far a session's dispatcher has got: events queued and events delivered.
pub(crate) struct Progress {
    queued: AtomicU64,
    delivered: Mutex<u64>,
    cond: Condvar,
}

impl Progress {
    /// Number of jobs queued so far (read while the tree is read-locked).
    pub(crate) fn queued(&self) -> u64 {
        self.queued.load(Ordering::Acquire)
    }

    /// Waits until the first `target` jobs have been delivered. Returns at once on any
    /// callback thread (a watcher calling back into a session).
    pub(crate) fn wait_delivered(&self, target: u64) {
        if on_dispatcher() {
            return;
        }
        let mut delivered = self.delivered.lock();
        while *delivered < target {
            self.cond.wait(&mut delivered);
        }
    }

    fn delivered_one(&self) {
        *self.delivered.lock() += 1;
        self.cond.notify_all();
    }
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// Queued on the executor or being run.
    scheduled: bool,
    /// The stop job has run: jobs queued from then on are counted and dropped (those
    /// queued before it ran still ran).
    stopped: bool,
}

/// One session's callbacks (the role of ZooKeeper's client `EventThread`), run in order
/// on the process's shared callback threads (`delivery`), one job at a time.
///
/// A wire session's dispatcher has an [`Output`], its connection: its watch events go
/// there — straight from the apply that caused them when nothing is queued before them,
/// through the queue otherwise — and its watchers are only registrations.
pub(crate) struct Dispatcher {
    queue: Mutex<Queue>,
    pub(crate) progress: Arc<Progress>,
    state_watcher: Option<Arc<dyn Fn(SessionEvent) + Send + Sync>>,
    output: Option<Arc<dyn Output>>,
    executor: &'static Executor,
    logger: Logger,
    me: std::sync::Weak<Dispatcher>,
}

impl Dispatcher {
    /// Makes a session's dispatcher, before its session exists (so a session is never
    /// committed without one). [`Error::Io`](crate::Error::Io) if the callback threads
    /// cannot be started.
    pub(crate) fn start(
        state_watcher: Option<Arc<dyn Fn(SessionEvent) + Send + Sync>>,
        output: Option<Arc<dyn Output>>,
        logger: Logger,
    ) -> crate::Result<Arc<Dispatcher>> {
        #[cfg(test)]
        if FAIL_SPAWN.with(Cell::get) {
            return Err(crate::Error::Io("injected: cannot spawn a thread".into()));
        }
        let executor = Executor::global()?;
        Ok(Arc::new_cyclic(|me| Dispatcher {
            queue: Mutex::new(Queue::default()),
            progress: Arc::new(Progress {
                queued: AtomicU64::new(0),
                delivered: Mutex::new(0),
                cond: Condvar::new(),
            }),
            state_watcher,
            output,
            executor,
            logger,
            me: me.clone(),
        }))
    }

    fn push(&self, job: Job) {
        self.progress.queued.fetch_add(1, Ordering::AcqRel);
        let mut q = self.queue.lock();
        // An answer is owed even after the session ended: it still runs.
        if q.stopped && !matches!(job, Job::Answer(_)) {
            drop(q);
            // Counted as delivered so nobody waits for it; dropped here, as a send to an
            // ended thread's channel dropped it.
            drop(job);
            self.progress.delivered_one();
            return;
        }
        q.jobs.push_back(job);
        let schedule = !q.scheduled;
        q.scheduled = true;
        drop(q);
        if schedule {
            if let Some(me) = self.me.upgrade() {
                self.executor.schedule(me);
            }
        }
    }

    /// Tells the session of `e`, which fired its one-shot watcher `w`: `w` runs on a
    /// callback thread after everything queued so far; for a session with an output, the
    /// output is told instead (see [`Dispatcher::tell_now`]).
    fn event(&self, w: Watcher, e: WatchedEvent) {
        match self.output {
            Some(_) => self.push(Job::Notify(e)),
            None => self.push(Job::Event(w, e)),
        }
    }

    /// [`Dispatcher::event`] for a persistent watcher.
    fn persistent_event(&self, w: PersistentWatcher, e: WatchedEvent) {
        match self.output {
            Some(_) => self.push(Job::Notify(e)),
            None => self.push(Job::Persistent(w, e)),
        }
    }

    /// Tells a session with an output of `e` the way its answers go (see
    /// `crate::output`): straight into the output when nothing is queued before it (the
    /// caller holds the tree locked, so nothing applied before `e` can be missing from
    /// the queue); the output is returned when it must be flushed once the caller holds no
    /// lock. Any other event goes through the queue, as [`Dispatcher::event`].
    fn tell_now(&self, e: &WatchedEvent) -> Option<Arc<dyn Output>> {
        let out = self.output.as_ref()?;
        if self.idle() {
            return out.queue_event(e).then(|| out.clone());
        }
        self.push(Job::Notify(e.clone()));
        None
    }

    /// Drops `watchers` on a callback thread, after everything queued so far: their
    /// captures may own anything (a session, a node) and must not be dropped under the
    /// node's locks or on its driver.
    pub(crate) fn discard(&self, watchers: Vec<Watcher>) {
        // A session with an output registers only `told_to_output` watchers, which own
        // nothing: dropped here, they leave its queue idle.
        if self.output.is_some() {
            drop(watchers);
            return;
        }
        if !watchers.is_empty() {
            self.run_after_queued(Box::new(move || drop(watchers)));
        }
    }

    /// Runs `f` after everything queued so far (an answer to the session's request, after
    /// the watch events it may reflect).
    pub(crate) fn run_after_queued(&self, f: Box<dyn FnOnce() + Send>) {
        self.push(Job::Answer(f));
    }

    /// True when everything queued has been delivered (read under the tree lock: no event
    /// of an applied entry can be missing from `queued` then).
    pub(crate) fn idle(&self) -> bool {
        *self.progress.delivered.lock() >= self.progress.queued()
    }

    /// The session watcher, to carry over when the session moves.
    pub(crate) fn state_watcher(&self) -> Option<Arc<dyn Fn(SessionEvent) + Send + Sync>> {
        self.state_watcher.clone()
    }

    pub(crate) fn state(&self, event: SessionEvent) {
        if let Some(w) = &self.state_watcher {
            self.push(Job::State(w.clone(), event));
        }
    }

    /// Queues a stop after everything already queued.
    pub(crate) fn stop(&self) {
        self.push(Job::Stop);
    }

    /// Waits until everything queued so far (a stop included) has been delivered. On a
    /// callback thread it returns at once: two sessions' callbacks could otherwise wait
    /// for each other (a watcher of one session owning another session).
    pub(crate) fn join(&self) {
        self.progress.wait_delivered(self.progress.queued());
    }
}

impl crate::delivery::Runnable for Dispatcher {
    fn run(&self, budget: usize) -> bool {
        for _ in 0..budget {
            let job = {
                let mut q = self.queue.lock();
                match q.jobs.pop_front() {
                    Some(job) => {
                        if matches!(job, Job::Stop) {
                            q.stopped = true;
                        }
                        job
                    }
                    None => {
                        q.scheduled = false;
                        return false;
                    }
                }
            };
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match job {
                Job::Answer(f) => f(),
                Job::Event(w, e) => w(e),
                Job::Persistent(w, e) => w(e),
                Job::Notify(e) => {
                    if let Some(out) = &self.output {
                        if out.queue_event(&e) {
                            out.flush();
                        }
                    }
                }
                Job::State(w, e) => w(e),
                Job::Discard(one_shot, persistent) => drop((one_shot, persistent)),
                Job::Stop => {}
            }));
            if outcome.is_err() {
                slog::error!(self.logger, "a watcher panicked; the panic was contained");
            }
            self.progress.delivered_one();
        }
        true
    }
}

/// All watch registrations of the sessions hosted on one node.
#[derive(Default)]
pub(crate) struct WatchManager {
    /// Sessions with at most one watch of each kind per path (wire clients: the server
    /// watches for the connection, which tells each of its own watchers — as ZooKeeper's
    /// WatchManager, which keeps a set of watchers per path).
    one_per_path: HashSet<i64>,
    /// The paths each session may have watches on (any kind): ending or moving a
    /// session's watches looks at these only, not at every watch of the node.
    by_session: HashMap<i64, HashSet<String>>,
    data: HashMap<String, Vec<(i64, Watcher)>>,
    child: HashMap<String, Vec<(i64, Watcher)>>,
    persistent: HashMap<String, Vec<(i64, PersistentWatcher)>>,
    recursive: HashMap<String, Vec<(i64, PersistentWatcher)>>,
    dispatchers: HashMap<i64, Arc<Dispatcher>>,
}

/// Whether `session` has a watch in `map` on `path`.
fn holds<W>(map: &HashMap<String, Vec<(i64, W)>>, session: i64, path: &str) -> bool {
    map.get(path)
        .is_some_and(|l| l.iter().any(|(s, _)| *s == session))
}

fn take_session<W>(map: &mut HashMap<String, Vec<(i64, W)>>, path: &str, session: i64) -> Vec<W> {
    let Some(list) = map.get_mut(path) else {
        return Vec::new();
    };
    let (mine, rest): (Vec<_>, Vec<_>) = list.drain(..).partition(|(s, _)| *s == session);
    *list = rest;
    if list.is_empty() {
        map.remove(path);
    }
    mine.into_iter().map(|(_, w)| w).collect()
}

/// A session's watches taken off one node to be armed on another (a session move), with
/// whether each watched znode existed when they were taken.
#[derive(Default)]
pub(crate) struct MovingWatches {
    data: Vec<(String, bool, Watcher)>,
    child: Vec<(String, bool, Watcher)>,
    persistent: Vec<(String, PersistentWatcher)>,
    recursive: Vec<(String, PersistentWatcher)>,
}

impl MovingWatches {
    /// The watches a client lists in ZooKeeper's `setWatches`: data watches were set on
    /// znodes it saw, exists watches on znodes it saw missing, child watches on znodes it
    /// saw.
    pub(crate) fn from_set_watches(
        data: Vec<(String, Watcher)>,
        exist: Vec<(String, Watcher)>,
        child: Vec<(String, Watcher)>,
        persistent: Vec<(String, PersistentWatcher)>,
        recursive: Vec<(String, PersistentWatcher)>,
    ) -> MovingWatches {
        let seen = |(p, w): (String, Watcher)| (p, true, w);
        MovingWatches {
            data: data
                .into_iter()
                .map(seen)
                .chain(exist.into_iter().map(|(p, w)| (p, false, w)))
                .collect(),
            child: child.into_iter().map(seen).collect(),
            persistent,
            recursive,
        }
    }

    /// The watchers, as one-shots to be dropped (a persistent one wrapped in a one-shot
    /// that owns it).
    pub(crate) fn into_watchers(self) -> Vec<Watcher> {
        let one_shot = self.data.into_iter().chain(self.child).map(|(_, _, w)| w);
        let lasting = self.persistent.into_iter().chain(self.recursive);
        one_shot
            .chain(lasting.map(|(_, w)| -> Watcher { Box::new(move |_| drop(w)) }))
            .collect()
    }
}

impl WatchManager {
    /// `session` keeps at most one watch of each kind per path: a second is dropped.
    pub(crate) fn one_watch_per_path(&mut self, session: i64) {
        self.one_per_path.insert(session);
    }

    /// ZooKeeper's `setWatches` for `session`, whose client last saw `relative_zxid`: see
    /// [`crate::Request::SetWatches`]. Returns the watches it could not arm (the session
    /// is not here), to be dropped with no lock held.
    #[must_use]
    pub(crate) fn set_watches(
        &mut self,
        session: i64,
        watches: MovingWatches,
        tree: &DataTree,
        relative_zxid: i64,
    ) -> Option<MovingWatches> {
        self.arm_moved(session, watches, tree, relative_zxid.max(0) as u64)
    }

    /// Whether `session` may add a watch of `map` on `path`.
    fn wanted<W>(&self, map: &HashMap<String, Vec<(i64, W)>>, session: i64, path: &str) -> bool {
        !self.one_per_path.contains(&session) || !holds(map, session, path)
    }

    /// Takes `session`'s watches off this node (its dispatcher stays), noting which
    /// watched znodes exist in `tree` — the state the session has been told about.
    pub(crate) fn take_watches(&mut self, session: i64, tree: &DataTree) -> MovingWatches {
        let mut out = MovingWatches::default();
        let mut paths: Vec<String> = self
            .by_session
            .remove(&session)
            .unwrap_or_default()
            .into_iter()
            .collect();
        paths.sort();
        for p in &paths {
            let existed = tree.get(p).is_some();
            for w in take_session(&mut self.data, p, session) {
                out.data.push((p.clone(), existed, w));
            }
            for w in take_session(&mut self.child, p, session) {
                out.child.push((p.clone(), existed, w));
            }
            for w in take_session(&mut self.persistent, p, session) {
                out.persistent.push((p.clone(), w));
            }
            for w in take_session(&mut self.recursive, p, session) {
                out.recursive.push((p.clone(), w));
            }
        }
        out
    }

    /// Arms watches taken with [`WatchManager::take_watches`] for `session` here, whose
    /// `tree` has applied at least everything up to `since` (what the session had seen).
    /// As ZooKeeper's `setWatches` after a reconnect, a one-shot watch whose znode changed
    /// after `since` fires now instead (created, deleted, data or children changed); the
    /// rest are armed as they were. Persistent watches are armed again (events between
    /// `since` and now are not replayed to them).
    ///
    /// Returns the watches it could not arm (the session is no longer here): the caller
    /// drops them once it holds no lock, as their captures may run arbitrary code.
    #[must_use]
    pub(crate) fn arm_moved(
        &mut self,
        session: i64,
        moved: MovingWatches,
        tree: &DataTree,
        since: u64,
    ) -> Option<MovingWatches> {
        let Some(d) = self.dispatchers.get(&session).cloned() else {
            return Some(moved);
        };
        let since = i64::try_from(since).unwrap_or(i64::MAX);
        let fire = |d: &Dispatcher, w: Watcher, t: EventType, p: &str, zxid: i64| {
            d.event(
                w,
                WatchedEvent {
                    event_type: t,
                    path: p.to_string(),
                    zxid,
                },
            )
        };
        for (p, existed, w) in moved.data {
            match (existed, tree.get(&p)) {
                (true, None) => fire(&d, w, EventType::NodeDeleted, &p, since),
                (false, Some(n)) => fire(&d, w, EventType::NodeCreated, &p, n.czxid),
                (true, Some(n)) if n.mzxid > since => {
                    fire(&d, w, EventType::NodeDataChanged, &p, n.mzxid)
                }
                _ => self.add_data(session, &p, w),
            }
        }
        for (p, existed, w) in moved.child {
            match (existed, tree.get(&p)) {
                (true, None) => fire(&d, w, EventType::NodeDeleted, &p, since),
                (true, Some(n)) if n.pzxid > since => {
                    fire(&d, w, EventType::NodeChildrenChanged, &p, n.pzxid)
                }
                _ => self.add_child(session, &p, w),
            }
        }
        for (p, w) in moved.persistent {
            self.add_persistent(session, &p, AddWatchMode::Persistent, w);
        }
        for (p, w) in moved.recursive {
            self.add_persistent(session, &p, AddWatchMode::PersistentRecursive, w);
        }
        None
    }

    pub(crate) fn add_session(&mut self, session: i64, dispatcher: Arc<Dispatcher>) {
        self.dispatchers.insert(session, dispatcher);
    }

    /// Forgets a session: drops its watches, tells its state watcher `event` (if any) and
    /// stops its dispatcher after everything queued.
    pub(crate) fn end_session(&mut self, session: i64, event: Option<SessionEvent>) {
        let mut one_shot = Vec::new();
        let mut persistent = Vec::new();
        for p in self.by_session.remove(&session).unwrap_or_default() {
            one_shot.extend(take_session(&mut self.data, &p, session));
            one_shot.extend(take_session(&mut self.child, &p, session));
            persistent.extend(take_session(&mut self.persistent, &p, session));
            persistent.extend(take_session(&mut self.recursive, &p, session));
        }
        self.one_per_path.remove(&session);
        if let Some(d) = self.dispatchers.remove(&session) {
            if let Some(e) = event {
                d.state(e);
            }
            d.push(Job::Discard(one_shot, persistent));
            d.stop();
        }
    }

    /// Records that `session` watches `path`.
    fn index(&mut self, session: i64, path: &str) {
        let paths = self.by_session.entry(session).or_default();
        if !paths.contains(path) {
            paths.insert(path.to_string());
        }
    }

    /// Drops `path` from `session`'s index if it watches it no more.
    fn unindex_if_unwatched(&mut self, session: i64, path: &str) {
        if !self.has(session, path, WatcherType::Any) {
            if let Some(paths) = self.by_session.get_mut(&session) {
                paths.remove(path);
                if paths.is_empty() {
                    self.by_session.remove(&session);
                }
            }
        }
    }

    pub(crate) fn add_data(&mut self, session: i64, path: &str, w: Watcher) {
        if !self.wanted(&self.data, session, path) {
            return;
        }
        self.index(session, path);
        self.data
            .entry(path.to_string())
            .or_default()
            .push((session, w));
    }

    pub(crate) fn add_child(&mut self, session: i64, path: &str, w: Watcher) {
        if !self.wanted(&self.child, session, path) {
            return;
        }
        self.index(session, path);
        self.child
            .entry(path.to_string())
            .or_default()
            .push((session, w));
    }

    pub(crate) fn add_persistent(
        &mut self,
        session: i64,
        path: &str,
        mode: AddWatchMode,
        w: PersistentWatcher,
    ) {
        let one = self.one_per_path.contains(&session);
        let map = match mode {
            AddWatchMode::Persistent => &mut self.persistent,
            AddWatchMode::PersistentRecursive => &mut self.recursive,
        };
        if one && holds(map, session, path) {
            return;
        }
        map.entry(path.to_string()).or_default().push((session, w));
        self.index(session, path);
    }

    /// Whether `session` has watches of `kind` on `path`.
    pub(crate) fn has(&self, session: i64, path: &str, kind: WatcherType) -> bool {
        let data = holds(&self.data, session, path);
        let child = holds(&self.child, session, path);
        let lasting =
            holds(&self.persistent, session, path) || holds(&self.recursive, session, path);
        match kind {
            WatcherType::Data => data,
            WatcherType::Children => child,
            WatcherType::Persistent => lasting,
            WatcherType::Any => data || child || lasting,
        }
    }

    /// Removes `session`'s watches of `kind` on `path`, telling each removed watcher with a
    /// *WatchRemoved event. Returns false if there was none.
    pub(crate) fn remove(&mut self, session: i64, path: &str, kind: WatcherType) -> bool {
        let Some(d) = self.dispatchers.get(&session).cloned() else {
            return false;
        };
        let removed_event = |t| WatchedEvent {
            event_type: t,
            path: path.to_string(),
            zxid: 0,
        };
        let mut found = false;
        if matches!(kind, WatcherType::Data | WatcherType::Any) {
            for w in take_session(&mut self.data, path, session) {
                found = true;
                d.event(w, removed_event(EventType::DataWatchRemoved));
            }
        }
        if matches!(kind, WatcherType::Children | WatcherType::Any) {
            for w in take_session(&mut self.child, path, session) {
                found = true;
                d.event(w, removed_event(EventType::ChildWatchRemoved));
            }
        }
        if matches!(kind, WatcherType::Persistent | WatcherType::Any) {
            let mut ws = take_session(&mut self.persistent, path, session);
            ws.extend(take_session(&mut self.recursive, path, session));
            for w in ws {
                found = true;
                d.persistent_event(w, removed_event(EventType::PersistentWatchRemoved));
            }
        }
        self.unindex_if_unwatched(session, path);
        found
    }

    /// Fires the watches `events` trigger, queueing each on its session's dispatcher (or
    /// into its output, see [`Dispatcher::tell_now`]). Returns the outputs the caller
    /// must flush once it holds no lock, each once.
    #[must_use]
    pub(crate) fn trigger(&mut self, events: &[WatchedEvent]) -> Vec<Arc<dyn Output>> {
        let mut flush: Vec<Arc<dyn Output>> = Vec::new();
        if self.dispatchers.is_empty() {
            return flush;
        }
        let mut tell = |d: &Dispatcher, e: &WatchedEvent| {
            if let Some(out) = d.tell_now(e) {
                if !flush.iter().any(|o| Arc::ptr_eq(o, &out)) {
                    flush.push(out);
                }
            }
        };
        for e in events {
            let p = e.path.as_str();
            let mut one_shot: Vec<(i64, Watcher)> = Vec::new();
            match e.event_type {
                EventType::NodeCreated | EventType::NodeDataChanged => {
                    one_shot.extend(self.data.remove(p).unwrap_or_default());
                }
                EventType::NodeDeleted => {
                    one_shot.extend(self.data.remove(p).unwrap_or_default());
                    one_shot.extend(self.child.remove(p).unwrap_or_default());
                }
                EventType::NodeChildrenChanged => {
                    one_shot.extend(self.child.remove(p).unwrap_or_default());
                }
                _ => {}
            }
            // A session with one watch per path (a wire client) hears one notification
            // per event, whatever kinds matched — ZooKeeper's server keeps a set of
            // watchers per event, and the client tells all its own.
            let mut told: HashSet<i64> = HashSet::new();
            let mut fired: Vec<i64> = Vec::new();
            for (session, w) in one_shot {
                fired.push(session);
                if let Some(d) = self.dispatchers.get(&session) {
                    if d.output.is_some() {
                        // Only a registration (see `told_to_output`): nothing to drop
                        // elsewhere.
                        if told.insert(session) {
                            tell(d, e);
                        }
                    } else if self.one_per_path.contains(&session) && !told.insert(session) {
                        d.push(Job::Discard(vec![w], Vec::new()));
                    } else {
                        d.push(Job::Event(w, e.clone()));
                    }
                }
            }
            for session in fired {
                self.unindex_if_unwatched(session, p);
            }
            let mut persistent: Vec<(i64, PersistentWatcher)> = Vec::new();
            if let Some(list) = self.persistent.get(p) {
                persistent.extend(list.iter().cloned());
            }
            if e.event_type != EventType::NodeChildrenChanged && !self.recursive.is_empty() {
                let mut at = Some(p);
                while let Some(q) = at {
                    if let Some(list) = self.recursive.get(q) {
                        persistent.extend(list.iter().cloned());
                    }
                    at = path::parent(q);
                }
            }
            for (session, w) in persistent {
                if self.one_per_path.contains(&session) && !told.insert(session) {
                    continue;
                }
                if let Some(d) = self.dispatchers.get(&session) {
                    if d.output.is_some() {
                        tell(d, e);
                    } else {
                        d.push(Job::Persistent(w, e.clone()));
                    }
                }
            }
        }
        flush
    }

    /// The paths a change can fire a watch on: those holding a one-shot or persistent
    /// watch, and the roots of recursive watches (their whole subtree counts).
    pub(crate) fn watched(&self) -> (BTreeSet<String>, BTreeSet<String>) {
        let exact = self
            .data
            .keys()
            .chain(self.child.keys())
            .chain(self.persistent.keys())
            .cloned()
            .collect();
        (exact, self.recursive.keys().cloned().collect())
    }

    /// The paths each session watches as ZooKeeper's `wchs`/`wchc`/`wchp` list them:
    /// its data-watch table (data and exists watches, and the persistent ones, which
    /// ZooKeeper keeps in both tables).
    pub(crate) fn paths_by_session(&self) -> BTreeMap<i64, BTreeSet<String>> {
        let mut out: BTreeMap<i64, BTreeSet<String>> = BTreeMap::new();
        fn add<W>(out: &mut BTreeMap<i64, BTreeSet<String>>, map: &HashMap<String, Vec<(i64, W)>>) {
            for (p, list) in map {
                for (s, _) in list {
                    out.entry(*s).or_default().insert(p.clone());
                }
            }
        }
        add(&mut out, &self.data);
        add(&mut out, &self.persistent);
        add(&mut out, &self.recursive);
        out
    }

    /// Watches as ZooKeeper's `zk_watch_count` counts them: data and child tables, a
    /// persistent watch in each.
    pub(crate) fn zookeeper_count(&self) -> usize {
        let lasting = self.persistent.values().map(Vec::len).sum::<usize>()
            + self.recursive.values().map(Vec::len).sum::<usize>();
        self.len() + lasting
    }

    /// Number of registrations (all kinds), for tests and metrics.
    pub(crate) fn len(&self) -> usize {
        self.data.values().map(Vec::len).sum::<usize>()
            + self.child.values().map(Vec::len).sum::<usize>()
            + self.persistent.values().map(Vec::len).sum::<usize>()
            + self.recursive.values().map(Vec::len).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    fn ev(t: EventType, p: &str, zxid: i64) -> WatchedEvent {
        WatchedEvent {
            event_type: t,
            path: p.into(),
            zxid,
        }
    }

    fn manager() -> (
        WatchManager,
        Arc<Dispatcher>,
        mpsc::Receiver<(String, WatchedEvent)>,
    ) {
        let mut m = WatchManager::default();
        let d = Dispatcher::start(None, None, Logger::root(slog::Discard, slog::o!())).unwrap();
        m.add_session(7, d.clone());
        let (_tx, rx) = mpsc::channel();
        (m, d, rx)
    }

    fn recorder(tag: &str, tx: &mpsc::Sender<(String, WatchedEvent)>) -> Watcher {
        let (tag, tx) = (tag.to_string(), Mutex::new(tx.clone()));
        Box::new(move |e| tx.lock().send((tag, e)).unwrap())
    }

    #[test]
    fn zookeeper_trigger_rules() {
        let (mut m, d, _) = manager();
        let (tx, rx) = mpsc::channel();
        m.add_data(7, "/a", recorder("data", &tx));
        m.add_child(7, "/a", recorder("child", &tx));
        m.add_data(7, "/b", recorder("exists-b", &tx));
        let txp = Mutex::new(tx.clone());
        m.add_persistent(
            7,
            "/",
            AddWatchMode::PersistentRecursive,
            Arc::new(move |e| txp.lock().send(("recursive".into(), e)).unwrap()),
        );
        let flush = m.trigger(&[
            ev(EventType::NodeChildrenChanged, "/a", 1),
            ev(EventType::NodeChildrenChanged, "/a", 2), // child watch already fired
            ev(EventType::NodeDataChanged, "/a", 3),
            ev(EventType::NodeCreated, "/b", 4),
            ev(EventType::NodeDeleted, "/a", 5),
        ]);
        assert!(flush.is_empty(), "no output: nothing to flush");
        d.stop();
        d.join();
        let got: Vec<(String, i64)> = rx.try_iter().map(|(t, e)| (t, e.zxid)).collect();
        assert_eq!(
            got,
            [
                ("child".to_string(), 1),
                ("data".into(), 3),
                ("recursive".into(), 3),
                ("exists-b".into(), 4),
                ("recursive".into(), 4),
                ("recursive".into(), 5),
            ]
        );
        assert_eq!(m.len(), 1, "only the persistent watch is left");
    }

    #[test]
    fn remove_watches_notifies_and_panics_are_contained() {
        let (mut m, d, _) = manager();
        let (tx, rx) = mpsc::channel();
        m.add_data(7, "/x", Box::new(|_| panic!("watcher bug")));
        m.add_child(7, "/x", recorder("child", &tx));
        assert!(m.remove(7, "/x", WatcherType::Children));
        assert!(!m.remove(7, "/x", WatcherType::Children));
        assert!(m
            .trigger(&[ev(EventType::NodeDataChanged, "/x", 9)])
            .is_empty()); // panics
        m.add_data(7, "/y", recorder("after-panic", &tx));
        assert!(m
            .trigger(&[ev(EventType::NodeDeleted, "/y", 10)])
            .is_empty());
        let target = d.progress.queued();
        d.progress.wait_delivered(target);
        let got: Vec<(String, EventType)> = rx.try_iter().map(|(t, e)| (t, e.event_type)).collect();
        assert_eq!(
            got,
            [
                ("child".to_string(), EventType::ChildWatchRemoved),
                ("after-panic".into(), EventType::NodeDeleted)
            ]
        );
        m.end_session(7, None);
        d.join();
    }

    fn dispatcher() -> Arc<Dispatcher> {
        Dispatcher::start(None, None, Logger::root(slog::Discard, slog::o!())).unwrap()
    }

    #[test]
    fn a_sessions_callbacks_run_in_order_without_a_thread_of_their_own() {
        let sessions: Vec<Arc<Dispatcher>> = (0..200).map(|_| dispatcher()).collect();
        let (tx, rx) = mpsc::channel();
        for i in 0..50i64 {
            for (n, d) in sessions.iter().enumerate() {
                let tx = tx.clone();
                d.push(Job::Event(
                    Box::new(move |e: WatchedEvent| tx.send((n, e.zxid)).unwrap()),
                    ev(EventType::NodeDataChanged, "/o", i),
                ));
            }
        }
        for d in &sessions {
            d.stop();
            d.join();
        }
        let mut next = vec![0i64; sessions.len()];
        for (n, zxid) in rx.try_iter() {
            assert_eq!(zxid, next[n], "session {n} out of order");
            next[n] += 1;
        }
        assert!(next.iter().all(|n| *n == 50));
        let workers = Executor::global().unwrap().workers();
        assert!(workers < 20, "{workers} callback threads for 200 sessions");
    }

    #[test]
    fn a_blocked_watcher_stalls_only_its_own_session() {
        let (release, blocked) = mpsc::channel::<()>();
        let (blockers, others): (Vec<_>, Vec<_>) = (0..2 * crate::delivery::MIN_WORKERS + 2)
            .map(|_| dispatcher())
            .enumerate()
            .partition(|(i, _)| i % 2 == 0);
        let blocked = Arc::new(Mutex::new(blocked));
        for (_, d) in &blockers {
            let blocked = blocked.clone();
            d.push(Job::Event(
                Box::new(move |_| {
                    let _ = blocked.lock().recv_timeout(Duration::from_secs(20));
                }),
                ev(EventType::NodeDataChanged, "/b", 1),
            ));
        }
        // Every worker may be stuck in a blocker: the others still get delivered.
        let started = std::time::Instant::now();
        let (tx, rx) = mpsc::channel();
        for (i, d) in &others {
            let tx = tx.clone();
            let i = *i;
            d.push(Job::Event(
                Box::new(move |_| tx.send(i).unwrap()),
                ev(EventType::NodeDataChanged, "/o", 2),
            ));
        }
        for _ in &others {
            rx.recv_timeout(Duration::from_secs(5))
                .expect("delivered despite blockers");
        }
        assert!(started.elapsed() < Duration::from_secs(3));
        for _ in &blockers {
            release.send(()).unwrap();
        }
        for (_, d) in blockers.iter().chain(&others) {
            d.stop();
            d.join();
        }
    }

    #[test]
    fn moved_watches_fire_for_what_changed_since_and_the_rest_are_armed() {
        use crate::command::{CreateMode, Op};
        use crate::tree::{DataTree, Txn};
        let tx_at = |zxid| Txn {
            zxid,
            time: 0,
            session: 0,
        };
        let mut tree = DataTree::new();
        for (z, p) in [(2, "/same"), (3, "/changed"), (4, "/gone"), (5, "/kids")] {
            tree.apply(tx_at(z), &Op::create(p, vec![], CreateMode::Persistent))
                .unwrap();
        }
        let (mut old, _d, _) = manager();
        let (tx, rx) = mpsc::channel();
        for (p, tag) in [
            ("/same", "same"),
            ("/changed", "changed"),
            ("/gone", "gone"),
        ] {
            old.add_data(7, p, recorder(tag, &tx));
        }
        old.add_data(7, "/born", recorder("born", &tx));
        old.add_data(7, "/unborn", recorder("unborn", &tx));
        old.add_child(7, "/kids", recorder("kids", &tx));
        let since = 5;
        let moved = old.take_watches(7, &tree);
        assert_eq!(old.len(), 0, "taken off the old node");
        // What happened after the session last looked, before the new node arms them.
        tree.apply(tx_at(6), &Op::set_data("/changed", vec![1], None))
            .unwrap();
        tree.apply(tx_at(7), &Op::delete("/gone", None)).unwrap();
        tree.apply(
            tx_at(8),
            &Op::create("/born", vec![], CreateMode::Persistent),
        )
        .unwrap();
        tree.apply(
            tx_at(9),
            &Op::create("/kids/k", vec![], CreateMode::Persistent),
        )
        .unwrap();
        let (mut new, d, _) = manager();
        assert!(new.arm_moved(7, moved, &tree, since).is_none());
        d.progress.wait_delivered(d.progress.queued());
        let mut got: Vec<(String, EventType)> =
            rx.try_iter().map(|(t, e)| (t, e.event_type)).collect();
        got.sort();
        assert_eq!(
            got,
            [
                ("born".to_string(), EventType::NodeCreated),
                ("changed".into(), EventType::NodeDataChanged),
                ("gone".into(), EventType::NodeDeleted),
                ("kids".into(), EventType::NodeChildrenChanged),
            ]
        );
        assert_eq!(new.len(), 2, "/same and /unborn stay armed");
        assert!(new
            .trigger(&[ev(EventType::NodeDataChanged, "/same", 10)])
            .is_empty());
        d.progress.wait_delivered(d.progress.queued());
        assert_eq!(rx.try_recv().unwrap().0, "same");
    }

    /// An output that records what it is told, in order.
    #[derive(Default)]
    struct Recorded {
        told: Mutex<Vec<String>>,
        flushes: AtomicU64,
    }

    impl Output for Recorded {
        fn queue_reply(&self, xid: i64, _: i64, _: crate::Result<crate::pipeline::Reply>) -> bool {
            self.told.lock().push(format!("reply {xid}"));
            true
        }
        fn queue_event(&self, e: &WatchedEvent) -> bool {
            self.told
                .lock()
                .push(format!("{:?} {} {}", e.event_type, e.path, e.zxid));
            true
        }
        fn flush(&self) {
            self.flushes.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn a_connection_is_told_at_once_when_nothing_waits_before_the_event() {
        let out = Arc::new(Recorded::default());
        let d = Dispatcher::start(
            None,
            Some(out.clone()),
            Logger::root(slog::Discard, slog::o!()),
        )
        .unwrap();
        let mut m = WatchManager::default();
        m.add_session(7, d.clone());
        m.one_watch_per_path(7);
        m.add_data(7, "/a", told_to_output());
        m.add_child(7, "/a", told_to_output());
        m.add_persistent(
            7,
            "/",
            AddWatchMode::PersistentRecursive,
            lasting_told_to_output(),
        );

        // Idle: queued into the output before `trigger` returns (no callback thread),
        // one notification per event however many watches matched, flushed by the caller.
        let flush = m.trigger(&[ev(EventType::NodeDeleted, "/a", 3)]);
        assert_eq!(*out.told.lock(), ["NodeDeleted /a 3"]);
        assert_eq!(flush.len(), 1);
        assert_eq!(out.flushes.load(Ordering::Relaxed), 0, "the caller flushes");
        assert_eq!(d.progress.queued(), 0, "nothing went through the queue");

        // Something queued before it: the event waits behind it, in order, and the
        // callback thread flushes.
        let (release, blocked) = mpsc::channel::<()>();
        let gate = Mutex::new(blocked);
        let o = out.clone();
        d.run_after_queued(Box::new(move || {
            gate.lock().recv().unwrap();
            o.told.lock().push("earlier answer".into());
        }));
        let flush = m.trigger(&[ev(EventType::NodeCreated, "/b", 4)]);
        assert!(flush.is_empty());
        assert_eq!(
            out.told.lock().len(),
            1,
            "not before the answer queued first"
        );
        release.send(()).unwrap();
        d.join();
        assert_eq!(
            *out.told.lock(),
            ["NodeDeleted /a 3", "earlier answer", "NodeCreated /b 4"]
        );
        assert_eq!(out.flushes.load(Ordering::Relaxed), 1);
        m.end_session(7, None);
        d.join();
    }
}
