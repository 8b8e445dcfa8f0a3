//! The client port's figures, as ZooKeeper's `ServerStats` keeps them for `srvr`, `stat`
//! and `mntr`.

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

/// Latency of answered requests: min, max and total in milliseconds, and how many.
pub(crate) struct Latency {
    min_ms: AtomicU64,
    max_ms: AtomicU64,
    total_ms: AtomicU64,
    answered: AtomicU64,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            min_ms: AtomicU64::new(u64::MAX),
            max_ms: AtomicU64::new(0),
            total_ms: AtomicU64::new(0),
            answered: AtomicU64::new(0),
        }
    }
}

impl Latency {
    /// One request answered after `ms` milliseconds.
    pub(crate) fn record(&self, ms: u64) {
        self.min_ms.fetch_min(ms, Ordering::Relaxed);
        self.max_ms.fetch_max(ms, Ordering::Relaxed);
        self.total_ms.fetch_add(ms, Ordering::Relaxed);
        self.answered.fetch_add(1, Ordering::Relaxed);
    }

    /// (min, avg, max) in milliseconds; zeros before any answer.
    pub(crate) fn summary(&self) -> (u64, f64, u64) {
        let n = self.answered.load(Ordering::Relaxed);
        if n == 0 {
            return (0, 0.0, 0);
        }
        let total = self.total_ms.load(Ordering::Relaxed);
        (
            self.min_ms.load(Ordering::Relaxed),
            total as f64 / n as f64,
            self.max_ms.load(Ordering::Relaxed),
        )
    }

    /// (answered, total milliseconds).
    pub(crate) fn totals(&self) -> (u64, u64) {
        (
            self.answered.load(Ordering::Relaxed),
            self.total_ms.load(Ordering::Relaxed),
        )
    }

    /// Back to no answers.
    pub(crate) fn reset(&self) {
        self.min_ms.store(u64::MAX, Ordering::Relaxed);
        self.max_ms.store(0, Ordering::Relaxed);
        self.total_ms.store(0, Ordering::Relaxed);
        self.answered.store(0, Ordering::Relaxed);
    }
}

/// Counters shared by every connection of a listener.
pub(crate) struct ServerStats {
    pub(crate) received: AtomicU64,
    pub(crate) sent: AtomicU64,
    pub(crate) outstanding: AtomicI64,
    pub(crate) connections: AtomicUsize,
    pub(crate) latency: Latency,
    pub(crate) started: Instant,
}

impl ServerStats {
    pub(crate) fn new() -> ServerStats {
        ServerStats {
            received: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            outstanding: AtomicI64::new(0),
            connections: AtomicUsize::new(0),
            latency: Latency::default(),
            started: Instant::now(),
        }
    }

    /// `srst`: the counters back to zero.
    pub(crate) fn reset(&self) {
        self.received.store(0, Ordering::Relaxed);
        self.sent.store(0, Ordering::Relaxed);
        self.latency.reset();
    }
}
