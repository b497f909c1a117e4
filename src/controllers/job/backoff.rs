//! The delay before a failed pod is replaced: 10 s doubling to 6 min, counted from the
//! last failure since the last success (upstream's `backoffRecord`).

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;

use super::pods;

/// The first delay before a failed pod is replaced; it doubles with each failure.
pub const BACKOFF_BASE: Duration = Duration::from_secs(10);
/// The longest delay before a failed pod is replaced.
pub const BACKOFF_MAX: Duration = Duration::from_secs(360);

/// Failures since the last success, kept between syncs (upstream's `backoffRecord`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backoff {
    /// Pods failed since the last one succeeded.
    pub failures: i32,
    /// When the last of them finished.
    pub last_failure: Option<Timestamp>,
}

impl Backoff {
    /// How long to wait before creating a replacement pod.
    pub fn remaining(&self, now: Timestamp) -> Duration {
        let Some(last) = self.last_failure.filter(|_| self.failures > 0) else {
            return Duration::ZERO;
        };
        let mut delay = BACKOFF_BASE;
        for _ in 1..self.failures {
            delay = (delay * 2).min(BACKOFF_MAX);
            if delay == BACKOFF_MAX {
                break;
            }
        }
        let elapsed = Duration::try_from(now.duration_since(last)).unwrap_or(Duration::ZERO);
        delay.saturating_sub(elapsed)
    }

    /// The record after `succeeded` and `failed` pods were newly seen finished.
    pub(super) fn updated(
        mut self,
        succeeded: &[&Pod],
        failed: &[&Pod],
        now: Timestamp,
    ) -> Backoff {
        let mut failed_times: Vec<Timestamp> =
            failed.iter().map(|p| pods::finish_time(p, now)).collect();
        failed_times.sort();
        if succeeded.is_empty() {
            if let Some(last) = failed_times.last() {
                self.failures += failed_times.len() as i32;
                self.last_failure = Some(*last);
            }
            return self;
        }
        let last_success = succeeded
            .iter()
            .map(|p| pods::finish_time(p, now))
            .max()
            .unwrap_or(now);
        let after: Vec<Timestamp> = failed_times
            .into_iter()
            .filter(|t| *t > last_success)
            .collect();
        Backoff {
            failures: after.len() as i32,
            last_failure: after.last().copied(),
        }
    }
}
