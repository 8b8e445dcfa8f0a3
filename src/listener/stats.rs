//! The client port's figures, as ZooKeeper's `ServerStats` keeps them for `srvr`, `stat`
//! and `mntr`.

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

/// Counters shared by every connection of a listener.
pub(crate) struct ServerStats {
    pub(crate) received: AtomicU64,
    pub(crate) sent: AtomicU64,
    pub(crate) outstanding: AtomicI64,
    pub(crate) connections: AtomicUsize,
    min_latency_ms: AtomicU64,
    max_latency_ms: AtomicU64,
    total_latency_ms: AtomicU64,
    answered: AtomicU64,
    pub(crate) started: Instant,
}

impl ServerStats {
    pub(crate) fn new() -> ServerStats {
        ServerStats {
            received: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            outstanding: AtomicI64::new(0),
            connections: AtomicUsize::new(0),
            min_latency_ms: AtomicU64::new(u64::MAX),
            max_latency_ms: AtomicU64::new(0),
            total_latency_ms: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    /// One request answered after `ms` milliseconds.
    pub(crate) fn record_latency(&self, ms: u64) {
        self.min_latency_ms.fetch_min(ms, Ordering::Relaxed);
        self.max_latency_ms.fetch_max(ms, Ordering::Relaxed);
        self.total_latency_ms.fetch_add(ms, Ordering::Relaxed);
        self.answered.fetch_add(1, Ordering::Relaxed);
    }

    /// (min, avg, max) latency in milliseconds; zeros before any answer.
    pub(crate) fn latency(&self) -> (u64, f64, u64) {
        let n = self.answered.load(Ordering::Relaxed);
        if n == 0 {
            return (0, 0.0, 0);
        }
        let total = self.total_latency_ms.load(Ordering::Relaxed);
        (
            self.min_latency_ms.load(Ordering::Relaxed),
            total as f64 / n as f64,
            self.max_latency_ms.load(Ordering::Relaxed),
        )
    }

    /// `srst`: the counters back to zero.
    pub(crate) fn reset(&self) {
        self.received.store(0, Ordering::Relaxed);
        self.sent.store(0, Ordering::Relaxed);
        self.min_latency_ms.store(u64::MAX, Ordering::Relaxed);
        self.max_latency_ms.store(0, Ordering::Relaxed);
        self.total_latency_ms.store(0, Ordering::Relaxed);
        self.answered.store(0, Ordering::Relaxed);
    }
}
