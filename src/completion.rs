//! The crate's one completion type, and futures without a runtime.
//!
//! Whoever finishes a piece of work — the raft driver applying a write, the pipeline
//! answering a read — fills its [`Completer`] once. A completer either fills a
//! [`Completion`], which a task awaits as a future or a thread blocks on
//! ([`Completion::wait`]), or calls a callback with the value. A completer dropped
//! unfilled completes with its fallback error, so every completion resolves. A [`Feed`]
//! is the same for a sequence of values, read as a [`Stream`]. Nothing here spawns,
//! sleeps or names an executor, so the async API runs under tokio, async-std, smol or a
//! hand-written `block_on` alike.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use futures_core::Stream;
use parking_lot::Mutex;

use crate::error::{Error, Result};

struct Slot<T> {
    value: Option<Result<T>>,
    waker: Option<Waker>,
    /// Taken by the future: a second poll after `Ready` is a caller's bug, answered with
    /// an error rather than a panic.
    taken: bool,
}

/// A value that will be there: resolves once whoever does the work completes it, or with
/// an error if that work is dropped without completing it (a shutdown, for instance).
/// Awaited as a future, or waited for by a blocked thread.
#[must_use = "a completion does nothing unless awaited (the work goes on regardless)"]
pub struct Completion<T> {
    slot: Arc<Mutex<Slot<T>>>,
}

/// A one-shot callback completing some work.
pub(crate) type Callback<T> = Box<dyn FnOnce(Result<T>) + Send>;

enum Target<T> {
    Slot(Arc<Mutex<Slot<T>>>),
    Call(Callback<T>),
}

/// Completes a piece of work once: fills its [`Completion`], or calls its callback.
/// Dropped unused, it completes with its fallback error, so every completion resolves —
/// unless [`Completer::forget`] said the work was refused before it was handed over.
pub(crate) struct Completer<T> {
    target: Option<Target<T>>,
    fallback: fn() -> Error,
}

/// A completion and its completer; a completer dropped unused completes it with
/// `fallback()`.
pub(crate) fn completion<T>(fallback: fn() -> Error) -> (Completer<T>, Completion<T>) {
    let slot = Arc::new(Mutex::new(Slot {
        value: None,
        waker: None,
        taken: false,
    }));
    (
        Completer {
            target: Some(Target::Slot(slot.clone())),
            fallback,
        },
        Completion { slot },
    )
}

impl<T> Completer<T> {
    /// A completer that calls `f` with the value, on the thread that completes it (or
    /// with `fallback()` where it is dropped unused).
    pub(crate) fn call(
        f: impl FnOnce(Result<T>) + Send + 'static,
        fallback: fn() -> Error,
    ) -> Self {
        Completer {
            target: Some(Target::Call(Box::new(f))),
            fallback,
        }
    }

    /// Completes with `value`: wakes the task or thread waiting, or calls the callback.
    pub(crate) fn complete(mut self, value: Result<T>) {
        self.fill(value);
    }

    /// Completes with `value` if not completed yet (for a completer kept in place).
    pub(crate) fn fill(&mut self, value: Result<T>) {
        match self.target.take() {
            None => {}
            Some(Target::Call(f)) => f(value),
            Some(Target::Slot(slot)) => {
                let waker = {
                    let mut s = slot.lock();
                    s.value = Some(value);
                    s.waker.take()
                };
                // Woken with no lock held: the task may run on this thread at once.
                if let Some(w) = waker {
                    w.wake();
                }
            }
        }
    }

    /// True if completing calls a callback (which may do anything), rather than filling
    /// a completion (which only wakes its waiter).
    pub(crate) fn calls_back(&self) -> bool {
        matches!(self.target, Some(Target::Call(_)))
    }

    /// Drops the completer without completing anything: the work was refused before it
    /// was handed over, and whoever submitted it hears the refusal another way.
    pub(crate) fn forget(mut self) {
        self.target = None;
    }
}

impl<T> Drop for Completer<T> {
    fn drop(&mut self) {
        if self.target.is_some() {
            let e = (self.fallback)();
            self.fill(Err(e));
        }
    }
}

/// Wakes a thread blocked in [`Completion::wait`].
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

impl<T> Completion<T> {
    /// The value, if the completion is complete and was not taken yet (without waiting).
    pub fn try_take(&self) -> Option<Result<T>> {
        let mut s = self.slot.lock();
        let v = s.value.take();
        if v.is_some() {
            s.taken = true;
        }
        v
    }

    /// Blocks the calling thread until the value is there, for at most `timeout`: the
    /// synchronous API's wait. `None` if it is not there in time (the work goes on).
    pub(crate) fn wait(&self, timeout: Duration) -> Option<Result<T>> {
        let deadline = Instant::now().checked_add(timeout);
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        loop {
            {
                let mut s = self.slot.lock();
                if let Some(v) = s.value.take() {
                    s.taken = true;
                    return Some(v);
                }
                s.waker = Some(waker.clone());
            }
            match deadline {
                None => std::thread::park(),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    std::thread::park_timeout(left);
                }
            }
        }
    }
}

impl<T> Future for Completion<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let mut s = self.slot.lock();
        if let Some(v) = s.value.take() {
            s.taken = true;
            return Poll::Ready(v);
        }
        if s.taken {
            return Poll::Ready(Err(Error::BadArguments(
                "a completion polled after it resolved".into(),
            )));
        }
        match &mut s.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            w => *w = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl<T> std::fmt::Debug for Completion<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.slot.lock();
        f.debug_struct("Completion")
            .field("complete", &s.value.is_some())
            .finish()
    }
}

struct Queue<T> {
    items: VecDeque<T>,
    waker: Option<Waker>,
    /// Live [`Feeder`]s; at zero the feed is closed: once `items` is empty the stream ends.
    feeders: usize,
    /// The [`Feed`] is gone: values pushed now are dropped, not queued.
    abandoned: bool,
}

/// A stream of values pushed by whoever feeds it, in order; it ends once every feeder is
/// dropped and what they pushed has been read. Unbounded while read: its values wait until
/// read, as watch events wait in a ZooKeeper client's event queue; once the feed is
/// dropped, what is pushed is dropped at once.
#[must_use = "a stream does nothing unless polled"]
pub struct Feed<T> {
    queue: Arc<Mutex<Queue<T>>>,
}

/// Pushes values into a [`Feed`]; clones push into the same feed; the last one dropped
/// closes it.
pub(crate) struct Feeder<T> {
    queue: Arc<Mutex<Queue<T>>>,
}

/// A feed and its first feeder.
pub(crate) fn feed<T>() -> (Feeder<T>, Feed<T>) {
    let queue = Arc::new(Mutex::new(Queue {
        items: VecDeque::new(),
        waker: None,
        feeders: 1,
        abandoned: false,
    }));
    (
        Feeder {
            queue: queue.clone(),
        },
        Feed { queue },
    )
}

impl<T> Feeder<T> {
    /// Pushes `value` and wakes the reader; drops it if the feed is gone.
    pub(crate) fn push(&self, value: T) {
        let waker = {
            let mut q = self.queue.lock();
            if q.abandoned {
                return;
            }
            q.items.push_back(value);
            q.waker.take()
        };
        // Woken with no lock held.
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// True once the feed's reader is gone: nothing pushed would be read.
    pub(crate) fn abandoned(&self) -> bool {
        self.queue.lock().abandoned
    }
}

impl<T> Clone for Feeder<T> {
    fn clone(&self) -> Self {
        self.queue.lock().feeders += 1;
        Feeder {
            queue: self.queue.clone(),
        }
    }
}

impl<T> Drop for Feeder<T> {
    fn drop(&mut self) {
        // Counted under the queue's lock: of feeders dropped at once on two threads,
        // exactly one sees the count reach zero and closes the feed.
        let waker = {
            let mut q = self.queue.lock();
            q.feeders -= 1;
            if q.feeders > 0 {
                return;
            }
            q.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Drop for Feed<T> {
    fn drop(&mut self) {
        // What was queued is dropped with no lock held (a value may own anything).
        let items = {
            let mut q = self.queue.lock();
            q.abandoned = true;
            q.waker = None;
            std::mem::take(&mut q.items)
        };
        drop(items);
    }
}

impl<T> Feed<T> {
    /// The next value if one is there (without waiting): `Some(None)` once the feed has
    /// ended, `None` while it is empty but open.
    pub fn try_next(&self) -> Option<Option<T>> {
        let mut q = self.queue.lock();
        match q.items.pop_front() {
            Some(v) => Some(Some(v)),
            None if q.feeders == 0 => Some(None),
            None => None,
        }
    }
}

impl<T> Stream for Feed<T> {
    type Item = T;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut q = self.queue.lock();
        if let Some(v) = q.items.pop_front() {
            return Poll::Ready(Some(v));
        }
        if q.feeders == 0 {
            return Poll::Ready(None);
        }
        match &mut q.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            w => *w = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let q = self.queue.lock();
        (
            q.items.len(),
            if q.feeders == 0 {
                Some(q.items.len())
            } else {
                None
            },
        )
    }
}

impl<T> std::fmt::Debug for Feed<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let q = self.queue.lock();
        f.debug_struct("Feed")
            .field("queued", &q.items.len())
            .field("closed", &(q.feeders == 0))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    struct CountWakes(AtomicUsize);
    impl Wake for CountWakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn poll<F: Future + Unpin>(f: &mut F, waker: &Waker) -> Poll<F::Output> {
        Pin::new(f).poll(&mut Context::from_waker(waker))
    }

    #[test]
    fn a_completion_resolves_once_with_its_value_and_wakes_its_task() {
        let wakes = Arc::new(CountWakes(AtomicUsize::new(0)));
        let waker = Waker::from(wakes.clone());
        let (done, mut c) = completion::<u32>(|| Error::Shutdown);
        assert!(poll(&mut c, &waker).is_pending());
        done.complete(Ok(7));
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        assert!(matches!(poll(&mut c, &waker), Poll::Ready(Ok(7))));
        assert!(
            matches!(poll(&mut c, &waker), Poll::Ready(Err(_))),
            "no panic"
        );
    }

    #[test]
    fn a_dropped_completer_resolves_with_its_fallback() {
        let waker = Waker::from(Arc::new(CountWakes(AtomicUsize::new(0))));
        let (done, mut c) = completion::<u32>(|| Error::Shutdown);
        drop(done);
        assert!(matches!(
            poll(&mut c, &waker),
            Poll::Ready(Err(Error::Shutdown))
        ));
        // Completed before it was polled: ready at once.
        let (done, c) = completion::<u32>(|| Error::Shutdown);
        done.complete(Ok(1));
        assert!(matches!(c.try_take(), Some(Ok(1))));
    }

    #[test]
    fn a_thread_waits_for_a_completion_filled_on_another() {
        let (done, c) = completion::<u32>(|| Error::Shutdown);
        assert!(c.wait(Duration::from_millis(20)).is_none(), "not there yet");
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            done.complete(Ok(5));
        });
        assert!(matches!(c.wait(Duration::from_secs(10)), Some(Ok(5))));
        t.join().unwrap();
        let (done, c) = completion::<u32>(|| Error::Shutdown);
        std::thread::spawn(move || drop(done)).join().unwrap();
        assert!(matches!(
            c.wait(Duration::from_secs(10)),
            Some(Err(Error::Shutdown))
        ));
    }

    #[test]
    fn a_callback_completer_calls_once_and_a_forgotten_one_never() {
        let (tx, rx) = std::sync::mpsc::channel();
        let called = |tx: std::sync::mpsc::Sender<Result<u32>>| {
            Completer::call(move |r| tx.send(r).unwrap(), || Error::Shutdown)
        };
        let mut c = called(tx.clone());
        c.fill(Ok(1));
        c.fill(Ok(2));
        drop(c);
        called(tx.clone()).forget();
        drop(called(tx.clone()));
        drop(tx);
        let got: Vec<_> = rx.iter().collect();
        assert!(matches!(got[..], [Ok(1), Err(Error::Shutdown)]), "{got:?}");
    }

    #[test]
    fn a_feed_yields_in_order_and_ends_when_its_feeders_are_gone() {
        let wakes = Arc::new(CountWakes(AtomicUsize::new(0)));
        let waker = Waker::from(wakes.clone());
        let (tx, mut rx) = feed::<u32>();
        let next = |rx: &mut Feed<u32>| Pin::new(rx).poll_next(&mut Context::from_waker(&waker));
        assert!(next(&mut rx).is_pending());
        let tx2 = tx.clone();
        tx.push(1);
        tx2.push(2);
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        drop(tx);
        assert_eq!(next(&mut rx), Poll::Ready(Some(1)));
        assert_eq!(next(&mut rx), Poll::Ready(Some(2)));
        assert!(next(&mut rx).is_pending(), "a clone still feeds it");
        assert!(!tx2.abandoned());
        drop(tx2);
        assert_eq!(next(&mut rx), Poll::Ready(None));
        assert_eq!(rx.try_next(), Some(None));
        let (tx, rx) = feed::<u32>();
        drop(rx);
        assert!(tx.abandoned(), "its reader is gone");
    }

    #[test]
    fn a_dropped_feed_queues_nothing_more() {
        struct Counted(Arc<AtomicUsize>);
        impl Drop for Counted {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let dropped = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = feed::<Counted>();
        tx.push(Counted(dropped.clone()));
        drop(rx);
        assert_eq!(
            dropped.load(Ordering::SeqCst),
            1,
            "what was queued went with it"
        );
        for _ in 0..100 {
            tx.push(Counted(dropped.clone()));
        }
        assert_eq!(
            dropped.load(Ordering::SeqCst),
            101,
            "each push dropped at once"
        );
        assert_eq!(tx.queue.lock().items.len(), 0);
    }

    #[test]
    fn the_last_of_feeders_dropped_on_many_threads_closes_the_feed() {
        for _ in 0..50 {
            let (tx, rx) = feed::<u32>();
            let clones: Vec<_> = (0..4).map(|_| tx.clone()).collect();
            drop(tx);
            let threads: Vec<_> = clones
                .into_iter()
                .map(|f| std::thread::spawn(move || drop(f)))
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            assert_eq!(rx.try_next(), Some(None));
        }
    }
}
