//! The answer thread: where the callbacks of a node's pipelined requests run, off the
//! driver.
//!
//! The driver only marks a request done: it hands the answer's callback here and goes on
//! to the next raft round. A callback continues a session's pipeline (answers what became
//! answerable, runs the reads queued behind a write, proposes the writes they held, hosts
//! an opened session), which can take a while for a large read; none of it runs user
//! code (watchers and sinks are called on the session's dispatcher), so the thread never
//! waits on an application. Callbacks run one at a time, in the order the driver
//! handed them over.

use std::thread::JoinHandle;

use crossbeam_channel::{unbounded, Receiver, Sender};
use parking_lot::Mutex;
use slog::Logger;

use crate::error::{Error, Result};

/// A callback with its answer, ready to run.
type Job = Box<dyn FnOnce() + Send>;

/// Hands callbacks to the node's answer thread.
#[derive(Clone)]
pub(crate) struct Answers {
    tx: Sender<Job>,
}

/// The answer thread of a node: it runs until every [`Answers`] handle is gone (the node
/// and every request still in flight), then ends.
pub(crate) struct AnswerThread {
    handle: Mutex<Option<JoinHandle<()>>>,
}

/// Starts a node's answer thread (named after the node).
pub(crate) fn start(id: u64, logger: Logger) -> Result<(Answers, AnswerThread)> {
    let (tx, rx) = unbounded::<Job>();
    let handle = std::thread::Builder::new()
        .name(format!("zkraft-answers-{id}"))
        .spawn(move || run(&rx, &logger))
        .map_err(|e| Error::Io(format!("answer thread: {e}")))?;
    Ok((
        Answers { tx },
        AnswerThread {
            handle: Mutex::new(Some(handle)),
        },
    ))
}

fn run(rx: &Receiver<Job>, logger: &Logger) {
    while let Ok(job) = rx.recv() {
        // A callback that panics is contained: the requests of other sessions are still
        // answered.
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
            slog::error!(
                logger,
                "an answer callback panicked; the panic was contained"
            );
        }
    }
}

impl Answers {
    /// Runs `job` on the answer thread; on the caller's thread if that thread has ended.
    pub(crate) fn run(&self, job: Job) {
        if let Err(e) = self.tx.send(job) {
            (e.into_inner())();
        }
    }
}

impl AnswerThread {
    /// True once the thread has ended (every handle to it was dropped).
    #[cfg(test)]
    pub(crate) fn ended(&self) -> bool {
        self.handle.lock().as_ref().is_none_or(|h| h.is_finished())
    }
}

impl Drop for AnswerThread {
    fn drop(&mut self) {
        // Detached: the last handles may be dropped by a callback running on the thread
        // itself, which a join would wait on forever.
        drop(self.handle.lock().take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn callbacks_run_in_order_off_the_caller_and_survive_a_panic() {
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let (answers, thread) = start(7, logger).unwrap();
        let (tx, rx) = crossbeam_channel::unbounded();
        let caller = std::thread::current().id();
        answers.run(Box::new(|| panic!("contained")));
        for i in 0..100 {
            let tx = tx.clone();
            answers.run(Box::new(move || {
                let _ = tx.send((i, std::thread::current().id()));
            }));
        }
        for i in 0..100 {
            let (got, on) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
            assert_eq!(got, i, "in the order handed over");
            assert_ne!(on, caller, "not on the caller's thread");
        }
        drop(answers);
        let start = Instant::now();
        while !thread.ended() && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(thread.ended(), "the thread ends with its last handle");
    }
}
