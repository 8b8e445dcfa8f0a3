//! The async API: [`AsyncSession`], every operation of [`Session`] as a future, watch
//! events as futures and streams, and no runtime of its own.
//!
//! Each call submits its request at once, in the session's order, and returns a future of
//! its answer: the order of calls is the order of requests (FIFO per session), however the
//! futures are later awaited. Dropping a future does not cancel its request — the request
//! goes on, and only its answer is dropped (as with ZooKeeper's asynchronous API). Past
//! [`MAX_OUTSTANDING`](crate::MAX_OUTSTANDING) unanswered requests a call's request waits
//! in the session's backlog until answers make room, and its future awaits that too: no
//! thread ever blocks. Answers are completed on the session's dispatcher after every watch
//! event they reflect, so a watch future or stream is ready before the answer of a later
//! request that reflects its change.
//!
//! The futures and streams are plain shared slots completed by whoever finishes the work
//! (`crate::completion`): they run under tokio, async-std, smol or any executor.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::acl::{Acl, Id};
use crate::command::{CreateMode, Op};
use crate::completion::{completion, feed, Completion, Feed, Feeder};
use crate::error::{Error, Result};
use crate::pipeline::{Reply, Request};
use crate::session::{Session, SessionState};
use crate::tree::{OpResult, Stat, WatchedEvent};
use crate::watch::{AddWatchMode, SessionEvent, Watcher, WatcherType};

/// A session used through futures: [`Session`]'s operations, each returning a future
/// that does not borrow the session (it may be spawned).
///
/// Open one with [`Node::async_session`](crate::Node::async_session) or
/// [`SessionBuilder::open_async`](crate::SessionBuilder::open_async). Dropping it closes
/// the session in the background, never blocking; [`AsyncSession::close`] awaits the
/// close.
///
/// ```
/// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     // Any executor: this is the smallest one (the tests also use tokio).
/// #     use std::task::{Context, Poll, Wake, Waker};
/// #     struct Unpark(std::thread::Thread);
/// #     impl Wake for Unpark { fn wake(self: std::sync::Arc<Self>) { self.0.unpark() } }
/// #     let waker = Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
/// #     let mut f = std::pin::pin!(f);
/// #     loop {
/// #         if let Poll::Ready(v) = f.as_mut().poll(&mut Context::from_waker(&waker)) { return v; }
/// #         std::thread::park();
/// #     }
/// # }
/// use zkraft::{CreateMode, EventType, Node};
/// let dir = tempfile::tempdir().unwrap();
/// let node = Node::builder(1).data_dir(dir.path()).start().unwrap();
/// block_on(async {
///     let s = node.async_session().await.unwrap();
///     s.create("/cfg", b"v1", CreateMode::Persistent).await.unwrap();
///     let (data, _stat, changed) = s.get_data_watched("/cfg").await.unwrap();
///     assert_eq!(data, b"v1");
///     s.set_data("/cfg", b"v2", None).await.unwrap();
///     assert_eq!(changed.await.unwrap().event_type, EventType::NodeDataChanged);
///     s.close().await.unwrap();
/// });
/// ```
pub struct AsyncSession {
    session: Session,
    events: SessionEvents,
}

/// The feeds of [`AsyncSession::session_events`]: every state change the session's
/// dispatcher reports is pushed to each feed still read.
#[derive(Clone, Default)]
pub(crate) struct SessionEvents {
    feeds: Arc<Mutex<Vec<Feeder<SessionEvent>>>>,
}

impl SessionEvents {
    /// Pushes `e` to every feed still read (feeds whose stream was dropped are let go).
    pub(crate) fn push(&self, e: SessionEvent) {
        // Pushed outside the lock: a push wakes a task, and a waker may run anything.
        let feeds: Vec<Feeder<SessionEvent>> = {
            let mut feeds = self.feeds.lock();
            feeds.retain(|f| !f.abandoned());
            feeds.clone()
        };
        for f in &feeds {
            f.push(e);
        }
    }

    fn subscribe(&self) -> Feed<SessionEvent> {
        let (tx, rx) = feed();
        self.feeds.lock().push(tx);
        rx
    }

    /// Ends every feed (the session's handle is gone: no event is reported any more).
    fn end(&self) {
        self.feeds.lock().clear();
    }
}

/// A one-shot watch's event: resolves when the watch fires. It resolves with an error
/// if the watch ends without firing: its session ended (closed, expired, moved) or its
/// node shut down.
pub type WatchFuture = Completion<WatchedEvent>;

/// A one-shot watcher that completes a [`WatchFuture`].
fn watch_future() -> (Watcher, WatchFuture) {
    let (done, fut) = completion(|| Error::SessionExpired);
    (Box::new(move |e: WatchedEvent| done.complete(Ok(e))), fut)
}

/// A future whose answer is already known.
fn ready<T>(value: Result<T>) -> Completion<T> {
    let (done, fut) = completion(|| Error::Shutdown);
    done.complete(value);
    fut
}

/// The path and stat a create's answer carries.
async fn created(reply: Completion<Reply>) -> Result<(String, Stat)> {
    match reply.await? {
        Reply::Write(r) => r.into_created(),
        other => Err(mismatch("create", &other)),
    }
}

/// An answer of the wrong kind: the pipeline never gives one, but a caller gets an error
/// rather than a panic if it ever did.
fn mismatch(call: &str, reply: &Reply) -> Error {
    Error::Corrupt(format!("{call} answered with {reply:?}"))
}

impl AsyncSession {
    pub(crate) fn new(session: Session, events: SessionEvents) -> AsyncSession {
        AsyncSession { session, events }
    }

    /// Submits `request` now, in the session's order, and returns the future of its
    /// answer.
    fn submit(&self, request: Request) -> Completion<Reply> {
        let (done, fut) = completion(|| Error::Shutdown);
        self.session.submit_queued(request, done);
        fut
    }

    fn write(&self, op: Op) -> impl Future<Output = Result<OpResult>> + Send + 'static {
        let reply = self.submit(Request::Write(op));
        async move {
            match reply.await? {
                Reply::Write(r) => Ok(r),
                other => Err(mismatch("a write", &other)),
            }
        }
    }

    // ----- the session -----

    /// The session id (ZooKeeper's session id; the zxid of the entry that opened it).
    pub fn id(&self) -> i64 {
        self.session.id()
    }

    /// The negotiated session timeout.
    pub fn timeout(&self) -> Duration {
        self.session.timeout()
    }

    /// The session's password (to re-attach it elsewhere).
    pub fn password(&self) -> &[u8] {
        self.session.password()
    }

    /// The session's state now.
    pub fn state(&self) -> SessionState {
        self.session.state()
    }

    /// The session's state changes from now on, as a stream (Expired or Closed last; the
    /// stream then ends once the session's handle is dropped). Each call gives a stream
    /// of its own; events wait in it until read.
    pub fn session_events(&self) -> Feed<SessionEvent> {
        self.events.subscribe()
    }

    /// The synchronous view of the same session, for code that blocks (its calls block
    /// the calling thread; use them off the async runtime's threads).
    pub fn blocking(&self) -> &Session {
        &self.session
    }

    /// Closes the session (see [`Session::close`]): resolves once its close is applied
    /// here. Closing an ended session does nothing.
    pub fn close(&self) -> impl Future<Output = Result<()>> + Send + 'static {
        let reply = match self.session.state() {
            SessionState::Closed | SessionState::Expired | SessionState::Moved => {
                ready(Ok(Reply::Done))
            }
            _ => self.submit(Request::Write(Op::CloseSession {
                session: self.session.id(),
                expired: false,
            })),
        };
        async move { reply.await.map(|_| ()) }
    }

    // ----- writes -----

    /// Creates a znode (see [`Session::create`]) and resolves to its path.
    pub fn create(
        &self,
        path: &str,
        data: &[u8],
        mode: CreateMode,
    ) -> impl Future<Output = Result<String>> + Send + 'static {
        let created = self.create_with_stat(path, data, mode);
        async move { created.await.map(|(p, _)| p) }
    }

    /// Like [`AsyncSession::create`], also resolving to the new znode's stat.
    pub fn create_with_stat(
        &self,
        path: &str,
        data: &[u8],
        mode: CreateMode,
    ) -> impl Future<Output = Result<(String, Stat)>> + Send + 'static {
        created(self.create_reply(mode, Op::create(path, data, mode)))
    }

    /// Creates a znode with the ACL `acl` (see [`Session::create_with_acl`]).
    pub fn create_with_acl(
        &self,
        path: &str,
        data: &[u8],
        mode: CreateMode,
        acl: Vec<Acl>,
    ) -> impl Future<Output = Result<String>> + Send + 'static {
        let reply = self.create_reply(mode, Op::create_with_acl(path, data, mode, acl));
        let created = created(reply);
        async move { created.await.map(|(p, _)| p) }
    }

    /// Creates a TTL znode (see [`Session::create_ttl`]).
    pub fn create_ttl(
        &self,
        path: &str,
        data: &[u8],
        mode: CreateMode,
        ttl: Duration,
    ) -> impl Future<Output = Result<String>> + Send + 'static {
        let reply = if mode.is_ttl() {
            self.submit(Request::Write(Op::create_ttl(path, data, mode, ttl)))
        } else {
            ready(Err(Error::BadArguments(format!("{mode:?} takes no TTL"))))
        };
        let created = created(reply);
        async move { created.await.map(|(p, _)| p) }
    }

    /// The answer of a create outside the TTL modes (those need `create_ttl`: refused
    /// before anything is submitted, as the synchronous API refuses them).
    fn create_reply(&self, mode: CreateMode, op: Op) -> Completion<Reply> {
        if mode.is_ttl() {
            ready(Err(Error::BadArguments("TTL modes need create_ttl".into())))
        } else {
            self.submit(Request::Write(op))
        }
    }

    /// Deletes a znode (see [`Session::delete`]).
    pub fn delete(
        &self,
        path: &str,
        version: Option<i32>,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        let written = self.write(Op::delete(path, version));
        async move { written.await.map(|_| ()) }
    }

    /// Replaces a znode's data (see [`Session::set_data`]) and resolves to its new stat.
    pub fn set_data(
        &self,
        path: &str,
        data: &[u8],
        version: Option<i32>,
    ) -> impl Future<Output = Result<Stat>> + Send + 'static {
        let written = self.write(Op::set_data(path, data, version));
        async move { written.await?.into_stat() }
    }

    /// Replaces a znode's ACL (see [`Session::set_acl`]).
    pub fn set_acl(
        &self,
        path: &str,
        acl: Vec<Acl>,
        version: Option<i32>,
    ) -> impl Future<Output = Result<Stat>> + Send + 'static {
        let written = self.write(Op::set_acl(path, acl, version));
        async move { written.await?.into_acl_stat() }
    }

    /// Applies `ops` atomically (see [`Session::multi`]).
    pub fn multi(
        &self,
        ops: Vec<Op>,
    ) -> impl Future<Output = Result<Vec<OpResult>>> + Send + 'static {
        let written = self.write(Op::Multi(ops));
        async move { written.await?.into_multi() }
    }

    /// ZooKeeper's `sync` (see [`Session::sync`]).
    pub fn sync(&self, path: &str) -> impl Future<Output = Result<()>> + Send + 'static {
        let reply = self.submit(Request::Sync {
            path: path.to_string(),
        });
        async move {
            match reply.await? {
                Reply::Done => Ok(()),
                other => Err(mismatch("sync", &other)),
            }
        }
    }

    // ----- reads -----

    /// The stat of `path`, or `None`; with a watcher, as [`Session::exists`].
    pub fn exists(
        &self,
        path: &str,
        watcher: Option<Watcher>,
    ) -> impl Future<Output = Result<Option<Stat>>> + Send + 'static {
        let reply = self.submit(Request::Exists {
            path: path.to_string(),
            watcher,
        });
        async move {
            match reply.await? {
                Reply::Exists(stat) => Ok(stat),
                other => Err(mismatch("exists", &other)),
            }
        }
    }

    /// [`AsyncSession::exists`] with a one-shot watch, as a future: it fires on the next
    /// NodeCreated (if absent), NodeDataChanged or NodeDeleted of `path`.
    pub fn exists_watched(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<(Option<Stat>, WatchFuture)>> + Send + 'static {
        let (watcher, fired) = watch_future();
        let stat = self.exists(path, Some(watcher));
        async move { Ok((stat.await?, fired)) }
    }

    /// The data and stat of `path`; with a watcher, as [`Session::get_data`]. A znode with
    /// no data at all reads as empty ([`AsyncSession::get_data_or_null`] tells them apart).
    pub fn get_data(
        &self,
        path: &str,
        watcher: Option<Watcher>,
    ) -> impl Future<Output = Result<(Vec<u8>, Stat)>> + Send + 'static {
        let read = self.get_data_or_null(path, watcher);
        async move { read.await.map(|(d, s)| (d.unwrap_or_default(), s)) }
    }

    /// Like [`AsyncSession::get_data`], with `None` for a znode that has no data at all.
    pub fn get_data_or_null(
        &self,
        path: &str,
        watcher: Option<Watcher>,
    ) -> impl Future<Output = Result<(Option<Vec<u8>>, Stat)>> + Send + 'static {
        let reply = self.submit(Request::GetData {
            path: path.to_string(),
            watcher,
        });
        async move {
            match reply.await? {
                Reply::Data(data, stat) => Ok((data, stat)),
                other => Err(mismatch("get_data", &other)),
            }
        }
    }

    /// [`AsyncSession::get_data`] with a one-shot watch, as a future: it fires on the next
    /// NodeDataChanged or NodeDeleted of `path` (no watch is set if the read fails).
    pub fn get_data_watched(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<(Vec<u8>, Stat, WatchFuture)>> + Send + 'static {
        let (watcher, fired) = watch_future();
        let read = self.get_data(path, Some(watcher));
        async move {
            let (data, stat) = read.await?;
            Ok((data, stat, fired))
        }
    }

    /// The sorted child names of `path`; with a watcher, as [`Session::get_children`].
    pub fn get_children(
        &self,
        path: &str,
        watcher: Option<Watcher>,
    ) -> impl Future<Output = Result<Vec<String>>> + Send + 'static {
        let read = self.get_children_with_stat(path, watcher);
        async move { read.await.map(|(c, _)| c) }
    }

    /// Like [`AsyncSession::get_children`], also resolving to the parent's stat.
    pub fn get_children_with_stat(
        &self,
        path: &str,
        watcher: Option<Watcher>,
    ) -> impl Future<Output = Result<(Vec<String>, Stat)>> + Send + 'static {
        let reply = self.submit(Request::GetChildren {
            path: path.to_string(),
            watcher,
        });
        async move {
            match reply.await? {
                Reply::Children(children, stat) => Ok((children, stat)),
                other => Err(mismatch("get_children", &other)),
            }
        }
    }

    /// [`AsyncSession::get_children`] with a one-shot watch, as a future: it fires on the
    /// next NodeChildrenChanged or NodeDeleted of `path` (none is set if the read fails).
    pub fn get_children_watched(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<(Vec<String>, WatchFuture)>> + Send + 'static {
        let (watcher, fired) = watch_future();
        let read = self.get_children(path, Some(watcher));
        async move { Ok((read.await?, fired)) }
    }

    /// The ACL and stat of `path` (see [`Session::get_acl`]).
    pub fn get_acl(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<(Vec<Acl>, Stat)>> + Send + 'static {
        let reply = self.submit(Request::GetAcl {
            path: path.to_string(),
        });
        async move {
            match reply.await? {
                Reply::Acl(acl, stat) => Ok((acl, stat)),
                other => Err(mismatch("get_acl", &other)),
            }
        }
    }

    /// How many znodes are below `path`, all levels (ZooKeeper's getAllChildrenNumber).
    pub fn get_all_children_number(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<i32>> + Send + 'static {
        let reply = self.submit(Request::GetAllChildrenNumber {
            path: path.to_string(),
        });
        async move {
            match reply.await? {
                Reply::Count(n) => Ok(n),
                other => Err(mismatch("get_all_children_number", &other)),
            }
        }
    }

    /// This session's ephemeral znodes under `prefix` (see [`Session::get_ephemerals`]).
    pub fn get_ephemerals(
        &self,
        prefix: &str,
    ) -> impl Future<Output = Result<Vec<String>>> + Send + 'static {
        let reply = self.submit(Request::GetEphemerals {
            prefix: prefix.to_string(),
        });
        async move {
            match reply.await? {
                Reply::Ephemerals(paths) => Ok(paths),
                other => Err(mismatch("get_ephemerals", &other)),
            }
        }
    }

    // ----- watches -----

    /// A watch that stays until removed (see [`Session::add_watch`]), its events as a
    /// stream. The stream ends when the watch is removed ([`AsyncSession::remove_watches`]
    /// with [`WatcherType::Persistent`] or `Any`, after its PersistentWatchRemoved event) or
    /// its session ends. Events wait in the stream until read; once the stream is dropped
    /// they are dropped as they fire (the watch itself stays until removed or the session
    /// ends, as with [`Session::add_watch`]).
    pub fn watch(
        &self,
        path: &str,
        mode: AddWatchMode,
    ) -> impl Future<Output = Result<Feed<WatchedEvent>>> + Send + 'static {
        let (tx, rx) = feed();
        let added = self.add_watch(path, mode, move |e| tx.push(e));
        async move { added.await.map(|()| rx) }
    }

    /// A watch that stays until removed, calling `watcher` for each event (see
    /// [`Session::add_watch`]).
    pub fn add_watch(
        &self,
        path: &str,
        mode: AddWatchMode,
        watcher: impl Fn(WatchedEvent) + Send + Sync + 'static,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        let reply = self.submit(Request::AddWatch {
            path: path.to_string(),
            mode,
            watcher: Arc::new(watcher),
        });
        async move {
            match reply.await? {
                Reply::Done => Ok(()),
                other => Err(mismatch("add_watch", &other)),
            }
        }
    }

    /// Removes this session's watches of `kind` on `path` (see
    /// [`Session::remove_watches`]).
    pub fn remove_watches(
        &self,
        path: &str,
        kind: WatcherType,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        let reply = self.submit(Request::RemoveWatches {
            path: path.to_string(),
            kind,
        });
        async move {
            match reply.await? {
                Reply::Done => Ok(()),
                other => Err(mismatch("remove_watches", &other)),
            }
        }
    }

    // ----- authentication -----

    /// Authenticates the session (see [`Session::add_auth`]); requests submitted from now
    /// on carry the new identity. Needs no round trip, so it is not a future.
    pub fn add_auth(&self, scheme: &str, auth: &[u8]) -> Result<()> {
        self.session.add_auth(scheme, auth)
    }

    /// The identities the session has authenticated as (see [`Session::identities`]).
    pub fn identities(&self) -> Vec<Id> {
        self.session.identities()
    }
}

impl Drop for AsyncSession {
    fn drop(&mut self) {
        // The session itself is closed in the background as its `Session` drops; its
        // event streams end after what is queued for them.
        self.events.end();
    }
}

impl std::fmt::Debug for AsyncSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncSession")
            .field("session", &self.session)
            .finish()
    }
}
