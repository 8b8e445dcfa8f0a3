//! [`Pool`]: the worker threads that drive nodes.
//!
//! A node does not own threads. When a message, proposal or tick arrives for it, the node
//! is scheduled on its pool; a worker runs it (steps raft, persists, sends, applies) and
//! goes on to the next node. One pool can drive any number of nodes, so a test hosting five
//! nodes needs one small set of threads. A timer thread in the pool delivers ticks.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, Sender};
use parking_lot::{Condvar, Mutex};

/// Work a pool can run: a node.
pub(crate) trait Task: Send + Sync + 'static {
    /// Does whatever work is pending. Runs on a worker thread.
    fn run(&self);
    /// Called by the timer thread at the task's tick interval; must be cheap (mark a tick
    /// as due and schedule).
    fn on_tick(&self);
}

enum Job {
    Run(Arc<dyn Task>),
    Stop,
}

struct Timer {
    id: u64,
    task: Weak<dyn Task>,
    interval: Duration,
    next: Instant,
}

pub(crate) struct Shared {
    tx: Sender<Job>,
    rx: Receiver<Job>,
    timers: Mutex<Vec<Timer>>,
    timer_wake: Condvar,
    next_timer: AtomicU64,
    stop: AtomicBool,
}

/// A reference to the pool that does not keep its threads alive (held by nodes' internals).
#[derive(Clone)]
pub(crate) struct PoolRef(Arc<Shared>);

impl PoolRef {
    /// Queues `task` to run on a worker.
    pub(crate) fn schedule(&self, task: Arc<dyn Task>) {
        // A stopped pool runs nothing; queueing would only keep the task alive.
        if !self.0.stop.load(Ordering::SeqCst) {
            let _ = self.0.tx.send(Job::Run(task));
        }
    }

    /// Calls `task.on_tick()` every `interval` until the timer is removed or the task dropped.
    pub(crate) fn add_timer(&self, task: Weak<dyn Task>, interval: Duration) -> u64 {
        let id = self.0.next_timer.fetch_add(1, Ordering::Relaxed);
        self.0.timers.lock().push(Timer {
            id,
            task,
            interval,
            next: Instant::now() + interval,
        });
        self.0.timer_wake.notify_all();
        id
    }

    /// Stops a timer.
    pub(crate) fn remove_timer(&self, id: u64) {
        self.0.timers.lock().retain(|t| t.id != id);
    }
}

struct Handle {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        {
            // Under the timers lock, so the timer thread cannot miss the wake-up.
            let _timers = self.shared.timers.lock();
            self.shared.stop.store(true, Ordering::SeqCst);
            self.shared.timer_wake.notify_all();
        }
        let threads = std::mem::take(&mut *self.threads.lock());
        for _ in 0..threads.len() {
            let _ = self.shared.tx.send(Job::Stop);
        }
        let me = std::thread::current().id();
        for t in threads {
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
        // Jobs still queued hold their tasks; release them so nothing leaks.
        while self.shared.rx.try_recv().is_ok() {}
    }
}

/// A set of worker threads (plus one timer thread) shared by the nodes started on it.
/// Cloning gives another handle; the threads stop and are joined when the last handle,
/// including those held by running nodes, is dropped.
#[derive(Clone)]
pub struct Pool {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("threads", &(self.handle.threads.lock().len() - 1))
            .finish()
    }
}

impl Pool {
    /// Starts a pool with `workers` worker threads (at least one). Fails with
    /// [`Error::Io`](crate::Error::Io) if a thread cannot be started; the threads already
    /// started are stopped and joined then.
    pub fn new(workers: usize) -> crate::Result<Pool> {
        let (tx, rx) = unbounded();
        let shared = Arc::new(Shared {
            tx,
            rx,
            timers: Mutex::new(Vec::new()),
            timer_wake: Condvar::new(),
            next_timer: AtomicU64::new(1),
            stop: AtomicBool::new(false),
        });
        // Threads join the handle as they start, so a failure part-way stops them all.
        let handle = Handle {
            shared: shared.clone(),
            threads: Mutex::new(Vec::new()),
        };
        for i in 0..workers.max(1) {
            let s = shared.clone();
            let t = std::thread::Builder::new()
                .name(format!("zkraft-worker-{i}"))
                .spawn(move || worker(s))?;
            handle.threads.lock().push(t);
        }
        let s = shared.clone();
        let t = std::thread::Builder::new()
            .name("zkraft-timer".into())
            .spawn(move || timer(s))?;
        handle.threads.lock().push(t);
        Ok(Pool {
            handle: Arc::new(handle),
        })
    }

    pub(crate) fn reference(&self) -> PoolRef {
        PoolRef(self.handle.shared.clone())
    }
}

fn worker(shared: Arc<Shared>) {
    while let Ok(job) = shared.rx.recv() {
        match job {
            Job::Run(task) => {
                // A panicking node must not take the pool (and every other node) down;
                // the node marks itself failed before the panic propagates here.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| task.run()));
            }
            Job::Stop => return,
        }
    }
}

fn timer(shared: Arc<Shared>) {
    let mut timers = shared.timers.lock();
    while !shared.stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        let mut due = Vec::new();
        timers.retain_mut(|t| {
            if t.task.strong_count() == 0 {
                return false;
            }
            if t.next <= now {
                due.push(t.task.clone());
                t.next += t.interval;
                if t.next < now {
                    // Fell behind (a long pause): skip the missed ticks, as a clock would.
                    t.next = now + t.interval;
                }
            }
            true
        });
        let next = timers
            .iter()
            .map(|t| t.next)
            .min()
            .unwrap_or(now + Duration::from_millis(100));
        drop(timers);
        for task in due {
            if let Some(task) = task.upgrade() {
                task.on_tick();
            }
        }
        timers = shared.timers.lock();
        if !shared.stop.load(Ordering::SeqCst) {
            shared.timer_wake.wait_until(&mut timers, next);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    struct Counter {
        runs: AtomicUsize,
        ticks: AtomicUsize,
    }
    impl Task for Counter {
        fn run(&self) {
            self.runs.fetch_add(1, Ordering::SeqCst);
        }
        fn on_tick(&self) {
            self.ticks.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn runs_tasks_and_ticks_then_joins() {
        let pool = Pool::new(2).unwrap();
        let c = Arc::new(Counter {
            runs: AtomicUsize::new(0),
            ticks: AtomicUsize::new(0),
        });
        let r = pool.reference();
        for _ in 0..10 {
            r.schedule(c.clone());
        }
        let weak: Weak<dyn Task> = Arc::downgrade(&(c.clone() as Arc<dyn Task>));
        let id = r.add_timer(weak, Duration::from_millis(5));
        let deadline = Instant::now() + Duration::from_secs(5);
        while (c.runs.load(Ordering::SeqCst) < 10 || c.ticks.load(Ordering::SeqCst) < 3)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(c.runs.load(Ordering::SeqCst), 10);
        assert!(c.ticks.load(Ordering::SeqCst) >= 3);
        r.remove_timer(id);
        drop(pool); // joins every thread
        assert_eq!(Arc::strong_count(&c), 1, "no job still holds the task");
    }
}
