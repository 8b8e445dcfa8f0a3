//! Latency histograms recorded with a few atomic adds (no lock, no allocation), and their
//! snapshots ([`Histogram`]) for [`Node::metrics`](crate::Node::metrics): what a Prometheus
//! exporter turns into `_bucket`, `_sum` and `_count` series.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds: 100 µs to 10 s, about three per decade (the
/// last bucket, `+Inf`, is implied).
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// A histogram of durations being recorded.
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    /// Counts per bucket of [`LATENCY_BUCKETS`], then the `+Inf` one (not cumulative).
    counts: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    /// Sum of the durations, in nanoseconds.
    sum_nanos: AtomicU64,
}

impl Recorder {
    /// Records one duration.
    pub(crate) fn record(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let at = LATENCY_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.counts[at].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// What has been recorded so far.
    pub(crate) fn snapshot(&self) -> Histogram {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(LATENCY_BUCKETS.len());
        for (bound, count) in LATENCY_BUCKETS.iter().zip(&self.counts) {
            cumulative += count.load(Ordering::Relaxed);
            buckets.push((*bound, cumulative));
        }
        let count = cumulative + self.counts[LATENCY_BUCKETS.len()].load(Ordering::Relaxed);
        Histogram {
            buckets,
            count,
            sum: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

/// A histogram of durations, in seconds, as Prometheus exposes one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// `(upper bound, how many were at most that)`, cumulative, bounds ascending
    /// ([`LATENCY_BUCKETS`]); the `+Inf` bucket is `count`.
    pub buckets: Vec<(f64, u64)>,
    /// How many were recorded.
    pub count: u64,
    /// Their sum, in seconds.
    pub sum: f64,
}

impl Histogram {
    /// The mean, in seconds (0 when empty).
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum / self.count as f64
        }
    }

    /// An upper bound on the `q` quantile (0 < q ≤ 1): the first bucket bound that holds
    /// it, `f64::INFINITY` when it lies beyond the last bound, 0 when empty.
    pub fn quantile_bound(&self, q: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let rank = (q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64;
        self.buckets
            .iter()
            .find(|(_, c)| *c >= rank.max(1))
            .map_or(f64::INFINITY, |(b, _)| *b)
    }

    /// This histogram with `other` added (two histograms of the same buckets).
    pub fn merged(mut self, other: &Histogram) -> Histogram {
        if self.buckets.is_empty() {
            return other.clone();
        }
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            mine.1 += theirs.1;
        }
        self.count += other.count;
        self.sum += other.sum;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_land_in_their_buckets_cumulatively() {
        let r = Recorder::default();
        assert_eq!(r.snapshot().count, 0);
        assert_eq!(r.snapshot().quantile_bound(0.5), 0.0);
        for ms in [0.05, 0.3, 0.3, 7.0, 20_000.0] {
            r.record(Duration::from_secs_f64(ms / 1000.0));
        }
        let h = r.snapshot();
        assert_eq!(h.count, 5);
        assert_eq!(h.buckets.len(), LATENCY_BUCKETS.len());
        assert_eq!(h.buckets[0], (0.0001, 1));
        assert_eq!(h.buckets[2], (0.0005, 3), "0.3 ms is under 0.5 ms");
        assert_eq!(h.buckets[6], (0.01, 4));
        assert_eq!(
            h.buckets.last().unwrap().1,
            4,
            "20 s is beyond the last bound"
        );
        assert!((h.sum - 20.00765).abs() < 1e-6, "{}", h.sum);
        assert_eq!(h.quantile_bound(0.5), 0.0005);
        assert_eq!(h.quantile_bound(1.0), f64::INFINITY);
        let twice = h.clone().merged(&h);
        assert_eq!((twice.count, twice.buckets[2].1), (10, 6));
        assert_eq!(Histogram::default().merged(&h), h);
    }
}
