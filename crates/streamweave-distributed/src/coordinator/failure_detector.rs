//! Heartbeat-timeout failure detection as a clock-free decision: the caller passes the time.

use std::time::{Duration, Instant};

/// Declares a worker failed when it has not been heard from for longer than the heartbeat
/// timeout. It reads no clock: callers pass `now`, so the decision is tested without sleeping.
///
/// ```
/// use std::time::{Duration, Instant};
/// use streamweave_distributed::fault_tolerance::FailureDetector;
///
/// let detector = FailureDetector::new(Duration::from_millis(500));
/// let last_heard = Instant::now();
/// assert!(!detector.is_failed(last_heard, last_heard + Duration::from_millis(500)));
/// assert!(detector.is_failed(last_heard, last_heard + Duration::from_millis(501)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailureDetector {
    heartbeat_timeout: Duration,
}

impl FailureDetector {
    /// A detector with the given timeout.
    pub fn new(heartbeat_timeout: Duration) -> Self {
        FailureDetector { heartbeat_timeout }
    }

    /// The timeout.
    pub fn heartbeat_timeout(&self) -> Duration {
        self.heartbeat_timeout
    }

    /// Whether a worker last heard from at `last_heard` counts as failed at `now`.
    pub fn is_failed(&self, last_heard: Instant, now: Instant) -> bool {
        now.saturating_duration_since(last_heard) > self.heartbeat_timeout
    }

    /// The workers among `last_heard` (id, last time heard from) that count as failed at `now`.
    pub fn failed<'a, K: 'a>(
        &self,
        last_heard: impl IntoIterator<Item = (&'a K, Instant)>,
        now: Instant,
    ) -> Vec<&'a K> {
        last_heard
            .into_iter()
            .filter(|(_, at)| self.is_failed(*at, now))
            .map(|(k, _)| k)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_silent_workers_fail() {
        let d = FailureDetector::new(Duration::from_millis(500));
        let t0 = Instant::now();
        let heard = [("a", t0), ("b", t0 + Duration::from_millis(300))];
        let now = t0 + Duration::from_millis(600);
        let failed = d.failed(heard.iter().map(|(k, t)| (k, *t)), now);
        assert_eq!(failed, vec![&"a"]);
        assert!(d.failed(heard.iter().map(|(k, t)| (k, *t)), t0).is_empty());
    }

    #[test]
    fn a_clock_that_goes_backwards_is_not_a_failure() {
        let d = FailureDetector::new(Duration::from_millis(10));
        let t0 = Instant::now() + Duration::from_secs(1);
        assert!(!d.is_failed(t0, t0 - Duration::from_millis(5)));
    }
}
