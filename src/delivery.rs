//! The threads that run watcher callbacks, shared by every session in the process.
//!
//! Each session's callbacks run one at a time and in order (its `Dispatcher` is a queue
//! that at most one thread drains at a time), but no session owns a thread: a few workers
//! ([`MIN_WORKERS`]) take whichever session has work, [`BATCH`] jobs at a time, so ten
//! thousand sessions cost no more threads than ten. A callback that blocks holds its
//! worker and stalls only its own session: a supervisor that sees work waiting while every
//! worker has been busy for [`STALLED_AFTER`] starts another worker (at most
//! [`MAX_WORKERS`]); workers beyond the minimum leave after [`IDLE_EXIT`] without work.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// Workers always running (once a session exists in the process).
pub(crate) const MIN_WORKERS: usize = 2;
/// Most workers, however many callbacks block.
pub(crate) const MAX_WORKERS: usize = 256;
/// A worker busy with one batch for this long counts as stalled.
pub(crate) const STALLED_AFTER: Duration = Duration::from_millis(200);
/// A worker beyond the minimum leaves after this long without work.
pub(crate) const IDLE_EXIT: Duration = Duration::from_secs(5);
/// Most jobs of one session run before the worker turns to the next session.
pub(crate) const BATCH: usize = 64;
const SUPERVISE_EVERY: Duration = Duration::from_millis(50);

/// Work for the executor: a session's queue of callbacks.
pub(crate) trait Runnable: Send + Sync + 'static {
    /// Runs up to `budget` jobs. True when more remain (the executor queues it again);
    /// false when the queue was found empty (it is no longer scheduled).
    fn run(&self, budget: usize) -> bool;
}

#[derive(Default)]
struct State {
    ready: VecDeque<Arc<dyn Runnable>>,
    live: usize,
    idle: usize,
    /// When each busy worker took its current batch.
    busy: HashMap<u64, Instant>,
    next_worker: u64,
}

struct Shared {
    state: Mutex<State>,
    cond: Condvar,
}

/// The process's callback executor.
pub(crate) struct Executor {
    shared: Arc<Shared>,
}

/// The process's executor, made once (under the lock, so two first users cannot both
/// start one) and never dropped.
static GLOBAL: Mutex<Option<&'static Executor>> = Mutex::new(None);

impl Executor {
    /// The process-wide executor, started on first use. [`crate::Error::Io`] if not even
    /// its first worker can be started (a later call tries again).
    pub(crate) fn global() -> crate::Result<&'static Executor> {
        let mut global = GLOBAL.lock();
        if let Some(e) = *global {
            return Ok(e);
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            cond: Condvar::new(),
        });
        let exec = Executor { shared };
        exec.spawn_worker()?;
        let weak = Arc::downgrade(&exec.shared);
        std::thread::Builder::new()
            .name("zkraft-watch-supervisor".into())
            .spawn(move || loop {
                std::thread::sleep(SUPERVISE_EVERY);
                let Some(shared) = weak.upgrade() else { return };
                Executor { shared }.supervise();
            })
            .map_err(|e| crate::Error::Io(e.to_string()))?;
        let exec: &'static Executor = Box::leak(Box::new(exec));
        *global = Some(exec);
        Ok(exec)
    }

    /// Number of workers alive now.
    #[cfg(test)]
    pub(crate) fn workers(&self) -> usize {
        self.shared.state.lock().live
    }

    fn spawn_worker(&self) -> crate::Result<()> {
        let id = {
            let mut st = self.shared.state.lock();
            st.live += 1;
            st.next_worker += 1;
            st.next_worker
        };
        let shared = self.shared.clone();
        let spawned = std::thread::Builder::new()
            .name("zkraft-watch".into())
            .spawn(move || worker(&shared, id));
        if let Err(e) = spawned {
            self.shared.state.lock().live -= 1;
            return Err(crate::Error::Io(e.to_string()));
        }
        Ok(())
    }

    /// Queues `r` (which must not be queued or running already).
    pub(crate) fn schedule(&self, r: Arc<dyn Runnable>) {
        let spawn = {
            let mut st = self.shared.state.lock();
            st.ready.push_back(r);
            if st.idle > 0 {
                self.shared.cond.notify_one();
                false
            } else {
                st.live < MIN_WORKERS
            }
        };
        if spawn {
            let _ = self.spawn_worker();
        }
    }

    /// Starts a worker when work waits and every worker is stalled.
    fn supervise(&self) {
        let stalled = {
            let st = self.shared.state.lock();
            !st.ready.is_empty()
                && st.idle == 0
                && st.live < MAX_WORKERS
                && (st.live < MIN_WORKERS
                    || (!st.busy.is_empty()
                        && st.busy.values().all(|t| t.elapsed() >= STALLED_AFTER)))
        };
        if stalled {
            let _ = self.spawn_worker();
        }
    }
}

thread_local! {
    /// Set on executor workers (see `watch`: a callback calling a session must not wait
    /// for any dispatcher).
    pub(crate) static ON_WORKER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn worker(shared: &Shared, id: u64) {
    ON_WORKER.with(|w| w.set(true));
    loop {
        let job = {
            let mut st = shared.state.lock();
            loop {
                if let Some(r) = st.ready.pop_front() {
                    st.busy.insert(id, Instant::now());
                    break r;
                }
                st.idle += 1;
                let timed_out = shared.cond.wait_for(&mut st, IDLE_EXIT).timed_out();
                st.idle -= 1;
                if timed_out && st.ready.is_empty() && st.live > MIN_WORKERS {
                    st.live -= 1;
                    return;
                }
            }
        };
        let more = job.run(BATCH);
        let mut st = shared.state.lock();
        st.busy.remove(&id);
        if more {
            st.ready.push_back(job);
            if st.idle > 0 {
                shared.cond.notify_one();
            }
        }
    }
}
