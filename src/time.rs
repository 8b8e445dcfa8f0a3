//! Clock helpers: the proposer's wall clock for znode times, and deadlines that saturate
//! instead of overflowing when a caller passes a huge duration.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the clock is before it): `ctime` / `mtime` of
/// the commands this node proposes.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Milliseconds on a monotonic clock (since the first call in this process): for
/// measuring how long ago something happened, immune to wall-clock steps.
pub(crate) fn mono_ms() -> i64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    i64::try_from(start.elapsed().as_millis()).unwrap_or(i64::MAX)
}

/// `now + d`, saturating instead of overflowing for durations a caller chose: a timeout of
/// `Duration::MAX` means "wait as long as it takes", never a panic.
pub(crate) fn deadline_after(now: Instant, d: Duration) -> Instant {
    let mut d = d;
    loop {
        if let Some(t) = now.checked_add(d) {
            return t;
        }
        d /= 2;
    }
}

/// A deadline `d` from now (see [`deadline_after`]).
pub(crate) fn deadline_in(d: Duration) -> Instant {
    deadline_after(Instant::now(), d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_saturate() {
        let now = Instant::now();
        assert!(deadline_after(now, Duration::MAX) > now + Duration::from_secs(1 << 40));
        assert_eq!(
            deadline_after(now, Duration::from_secs(1)),
            now + Duration::from_secs(1)
        );
        assert!(deadline_in(Duration::ZERO) <= Instant::now());
    }
}
