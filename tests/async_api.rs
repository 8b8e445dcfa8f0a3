//! The async API keeps the synchronous API's guarantees — FIFO per session, a watch's
//! event before the answers that reflect its change, back-pressure without blocking, a
//! dropped future that does not cancel its request, a dropped session closed in the
//! background — under tokio's multi-thread and current-thread runtimes and under a
//! minimal executor written here (the library names no runtime).

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use futures_core::Stream;
use zkraft::{
    AddWatchMode, AsyncSession, CreateMode, Error, EventType, Feed, Node, SessionEvent,
    WatcherType, MAX_OUTSTANDING,
};

/// Everything here is bounded: a test that hangs fails instead.
const LIMIT: Duration = Duration::from_secs(60);

fn node() -> (tempfile::TempDir, Node) {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::builder(1).data_dir(dir.path()).start().unwrap();
    node.sync("/").unwrap();
    (dir, node)
}

/// The smallest executor: polls one future on this thread, parking between wakes.
fn block_on<F: Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "the future did not resolve within {LIMIT:?}"
        );
        std::thread::park_timeout(left);
    }
}

/// The next item of a stream, awaited.
async fn next<T>(s: &mut Feed<T>) -> Option<T> {
    std::future::poll_fn(|cx| std::pin::Pin::new(&mut *s).poll_next(cx)).await
}

/// The guarantees, whatever runs the futures.
async fn guarantees(node: &Node) {
    let s = node.async_session().await.unwrap();
    let states = s.session_events();

    // FIFO: requests go out in call order, however their futures are awaited.
    s.create("/fifo", b"", CreateMode::Persistent)
        .await
        .unwrap();
    let creates: Vec<_> = (0..100)
        .map(|_| s.create("/fifo/n-", b"", CreateMode::PersistentSequential))
        .collect();
    let listed = s.get_children("/fifo", None);
    assert_eq!(
        listed.await.unwrap().len(),
        100,
        "the read after them sees all"
    );
    let mut paths = Vec::new();
    for c in creates.into_iter().rev() {
        paths.push(c.await.unwrap());
    }
    paths.reverse();
    let expected: Vec<String> = (0..100).map(|i| format!("/fifo/n-{i:010}")).collect();
    assert_eq!(paths, expected);

    // A watch's event is there before the answer of a later read that sees its change.
    s.create("/cfg", b"v1", CreateMode::Persistent)
        .await
        .unwrap();
    let (data, _, fired) = s.get_data_watched("/cfg").await.unwrap();
    assert_eq!(data, b"v1");
    assert!(fired.try_take().is_none(), "nothing changed yet");
    let other = node.async_session().await.unwrap();
    other.set_data("/cfg", b"v2", None).await.unwrap();
    let (data, _) = s.get_data("/cfg", None).await.unwrap();
    assert_eq!(data, b"v2");
    let event = fired
        .try_take()
        .expect("the event came before the answer")
        .unwrap();
    assert_eq!(
        (event.event_type, event.path.as_str()),
        (EventType::NodeDataChanged, "/cfg")
    );
    let (stat, created) = s.exists_watched("/later").await.unwrap();
    assert!(stat.is_none());
    other
        .create("/later", b"", CreateMode::Persistent)
        .await
        .unwrap();
    assert_eq!(created.await.unwrap().event_type, EventType::NodeCreated);
    let (_, children) = s.get_children_watched("/fifo").await.unwrap();
    other.delete("/fifo/n-0000000000", None).await.unwrap();
    assert_eq!(
        children.await.unwrap().event_type,
        EventType::NodeChildrenChanged
    );

    // A persistent watch as a stream, in zxid order, ended by its removal.
    let mut events = s
        .watch("/w", AddWatchMode::PersistentRecursive)
        .await
        .unwrap();
    other
        .create("/w", b"", CreateMode::Persistent)
        .await
        .unwrap();
    other
        .create("/w/a", b"", CreateMode::Persistent)
        .await
        .unwrap();
    other.set_data("/w/a", b"x", None).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let e = next(&mut events).await.expect("an event");
        seen.push((e.event_type, e.path));
    }
    assert_eq!(
        seen,
        [
            (EventType::NodeCreated, "/w".to_string()),
            (EventType::NodeCreated, "/w/a".to_string()),
            (EventType::NodeDataChanged, "/w/a".to_string()),
        ]
    );
    s.remove_watches("/w", WatcherType::Persistent)
        .await
        .unwrap();
    while let Some(e) = next(&mut events).await {
        assert_eq!(e.event_type, EventType::PersistentWatchRemoved);
    }

    // Errors are ZooKeeper's, and the session goes on after them.
    assert!(matches!(
        s.create("/cfg", b"", CreateMode::Persistent).await,
        Err(Error::NodeExists(_))
    ));
    assert!(matches!(
        s.create("/t", b"", CreateMode::PersistentWithTtl).await,
        Err(Error::BadArguments(_))
    ));
    assert!(matches!(
        s.set_data("/cfg", b"", Some(7)).await,
        Err(Error::BadVersion { .. })
    ));
    // Null data stays null.
    s.multi(vec![zkraft::Op::create(
        "/null",
        [],
        CreateMode::Persistent,
    )
    .with_null_data()])
        .await
        .unwrap();
    assert_eq!(s.get_data_or_null("/null", None).await.unwrap().0, None);

    // A dropped future does not cancel its request.
    drop(s.create("/dropped", b"", CreateMode::Persistent));
    assert!(s.exists("/dropped", None).await.unwrap().is_some());

    // Back-pressure: past MAX_OUTSTANDING the requests wait their turn without blocking
    // this thread, and are answered in order. One write first, so the reads queue behind
    // it and the pipe fills.
    let write = s.set_data("/cfg", b"v3", None);
    let reads: Vec<_> = (0..MAX_OUTSTANDING + 500)
        .map(|_| s.get_data("/cfg", None))
        .collect();
    write.await.unwrap();
    for r in reads {
        assert_eq!(r.await.unwrap().0, b"v3");
    }

    // Close: the session's stream hears it last.
    s.create("/eph", b"", CreateMode::Ephemeral).await.unwrap();
    s.close().await.unwrap();
    assert!(
        node.exists("/eph").unwrap().is_none(),
        "its ephemeral went with it"
    );
    assert!(matches!(
        s.get_data("/cfg", None).await,
        Err(Error::SessionClosed | Error::SessionExpired)
    ));
    let mut last = None;
    while let Some(e) = states.try_next().flatten() {
        last = Some(e);
    }
    assert_eq!(last, Some(SessionEvent::Closed));

    // Dropping a session closes it in the background: its ephemeral goes soon after.
    other
        .create("/gone", b"", CreateMode::Ephemeral)
        .await
        .unwrap();
    let start = Instant::now();
    drop(other);
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "dropping did not block"
    );
    let deadline = Instant::now() + LIMIT;
    while node.exists("/gone").unwrap().is_some() {
        assert!(
            Instant::now() < deadline,
            "the dropped session was never closed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn under_a_minimal_executor() {
    let (_dir, node) = node();
    block_on(guarantees(&node));
    node.shutdown();
}

#[test]
fn under_tokio_current_thread() {
    let (_dir, node) = node();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        tokio::time::timeout(LIMIT, guarantees(&node))
            .await
            .expect("within the limit")
    });
    node.shutdown();
}

#[test]
fn under_tokio_multi_thread_with_spawned_tasks() {
    let (_dir, node) = node();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        tokio::time::timeout(LIMIT, guarantees(&node))
            .await
            .expect("within the limit");
        // The futures borrow nothing: they run on spawned tasks, across threads.
        let s: Arc<AsyncSession> = Arc::new(node.async_session().await.unwrap());
        s.create("/spawned", b"", CreateMode::Persistent)
            .await
            .unwrap();
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let write = s.create(&format!("/spawned/{i}"), b"", CreateMode::Persistent);
                tokio::spawn(write)
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(s.get_children("/spawned", None).await.unwrap().len(), 8);
    });
    node.shutdown();
}

#[test]
fn a_session_that_cannot_open_says_why() {
    let (_dir, node) = node();
    node.shutdown();
    assert!(matches!(
        block_on(node.async_session()),
        Err(Error::Shutdown)
    ));
}
