//! The Cloud Tasks retry schedule (cloud-tasks-api.md §6.3), as pure functions of the
//! normalised [`RetryConfig`], the attempt count and `now`.
//!
//! - [`backoff`]: the delay before the next attempt — doublings from `min_backoff` for
//!   `max_doublings` steps, then linear growth by the last doubled interval, capped at
//!   `max_backoff` (10 s / 300 s / 3 doublings gives 10, 20, 40, 80, 160, 240, 300, 300 …).
//! - [`exhausted`]: whether the task stops retrying — when every limit that is set
//!   (`max_attempts` unless -1, `max_retry_duration` unless 0) is reached.
//! - [`next_delay`]: the backoff, raised to a server's `Retry-After` on 429 and 503.

use stratus_proto::tasks::RetryConfig;

use crate::Micros;
use crate::time::duration_to_micros;

fn micros(d: Option<&stratus_proto::wkt::Duration>) -> Micros {
    d.map_or(0, duration_to_micros)
}

/// The delay before the retry that follows attempt `n` (the dispatch count after the failed
/// attempt, `n >= 1`), for a normalised retry config.
pub fn backoff(rc: &RetryConfig, n: i32) -> Micros {
    let min = micros(rc.min_backoff.as_ref()).max(0);
    let max = micros(rc.max_backoff.as_ref()).max(min);
    let k = i64::from(n.max(1) - 1);
    let d = i64::from(rc.max_doublings.max(0));
    // f64 keeps 2^d (d up to any int32) from overflowing; the result is capped at max_backoff.
    let min_f = min as f64;
    let interval = if k <= d {
        min_f * 2f64.powi(i32::try_from(k).unwrap_or(i32::MAX))
    } else {
        min_f * 2f64.powi(i32::try_from(d).unwrap_or(i32::MAX)) * (k - d + 1) as f64
    };
    if interval >= max as f64 {
        max
    } else {
        // Below max_backoff, so it fits in i64.
        #[allow(clippy::cast_possible_truncation)]
        let v = interval as Micros;
        v
    }
}

/// Whether a task that has been dispatched `n` times, first at `first_dispatch`, stops
/// retrying at `now`. With both limits unlimited (-1 attempts, 0 duration) it never stops.
pub fn exhausted(rc: &RetryConfig, n: i32, first_dispatch: Micros, now: Micros) -> bool {
    let attempts_set = rc.max_attempts != -1;
    let max_duration = micros(rc.max_retry_duration.as_ref());
    let duration_set = max_duration > 0;
    if !attempts_set && !duration_set {
        return false;
    }
    let attempts_done = !attempts_set || n >= rc.max_attempts;
    let age_done = !duration_set || now.saturating_sub(first_dispatch) >= max_duration;
    attempts_done && age_done
}

/// The delay before the next attempt after attempt `n` failed with HTTP `status` (0 when no
/// response came), honouring `Retry-After` (in µs) on 429 and 503.
pub fn next_delay(rc: &RetryConfig, n: i32, status: u16, retry_after: Option<Micros>) -> Micros {
    let b = backoff(rc, n);
    match (status, retry_after) {
        (429 | 503, Some(ra)) => b.max(ra),
        _ => b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{SECOND, micros_to_duration};

    fn rc(min_s: i64, max_s: i64, doublings: i32, attempts: i32, max_dur_s: i64) -> RetryConfig {
        RetryConfig {
            max_attempts: attempts,
            max_retry_duration: Some(micros_to_duration(max_dur_s * SECOND)),
            min_backoff: Some(micros_to_duration(min_s * SECOND)),
            max_backoff: Some(micros_to_duration(max_s * SECOND)),
            max_doublings: doublings,
        }
    }

    #[test]
    fn doublings_then_linear_then_cap() {
        let c = rc(10, 300, 3, -1, 0);
        let gaps: Vec<i64> = (1..=8).map(|n| backoff(&c, n) / SECOND).collect();
        assert_eq!(gaps, [10, 20, 40, 80, 160, 240, 300, 300]);
    }

    #[test]
    fn defaults_and_huge_doublings_do_not_overflow() {
        let c = crate::queue::normalize_retry_config(None);
        assert_eq!(backoff(&c, 1), SECOND / 10);
        assert_eq!(backoff(&c, 2), SECOND / 5);
        assert_eq!(backoff(&c, 100), 3600 * SECOND);
        let c = RetryConfig {
            max_doublings: i32::MAX,
            ..c
        };
        assert_eq!(backoff(&c, i32::MAX), 3600 * SECOND);
    }

    #[test]
    fn stop_rules() {
        // Attempts only.
        let c = rc(1, 10, 16, 3, 0);
        assert!(!exhausted(&c, 2, 0, 0));
        assert!(exhausted(&c, 3, 0, 0));
        // Duration only.
        let c = rc(1, 10, 16, -1, 60);
        assert!(!exhausted(&c, 1000, 0, 59 * SECOND));
        assert!(exhausted(&c, 1, 0, 60 * SECOND));
        // Both set: both must be reached.
        let c = rc(1, 10, 16, 3, 60);
        assert!(!exhausted(&c, 5, 0, 10 * SECOND));
        assert!(!exhausted(&c, 2, 0, 100 * SECOND));
        assert!(exhausted(&c, 3, 0, 60 * SECOND));
        // Neither: never.
        let c = rc(1, 10, 16, -1, 0);
        assert!(!exhausted(&c, i32::MAX, 0, i64::MAX));
    }

    #[test]
    fn retry_after_on_429_and_503_only() {
        let c = rc(10, 300, 3, -1, 0);
        assert_eq!(next_delay(&c, 1, 503, Some(60 * SECOND)), 60 * SECOND);
        assert_eq!(next_delay(&c, 1, 429, Some(SECOND)), 10 * SECOND);
        assert_eq!(next_delay(&c, 1, 500, Some(60 * SECOND)), 10 * SECOND);
        assert_eq!(next_delay(&c, 1, 0, None), 10 * SECOND);
    }
}
