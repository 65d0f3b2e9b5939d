//! Queue defaults, validation and the ListQueues filter.
//!
//! Proto3 cannot tell 0 from unset, so a 0 in any RateLimits or RetryConfig scalar means
//! "use the default" (as the real service and the reference emulators behave).

use stratus_proto::tasks::{
    Queue, RateLimits, RetryConfig, StackdriverLoggingConfig, queue::State,
};
use stratus_proto::wkt::Duration;

use crate::code::Status;

/// Default `max_dispatches_per_second`.
pub const DEFAULT_RATE: f64 = 500.0;
/// Highest allowed `max_dispatches_per_second`.
pub const MAX_RATE: f64 = 500.0;
/// Default `max_concurrent_dispatches`.
pub const DEFAULT_CONCURRENT: i32 = 1000;
/// Highest allowed `max_concurrent_dispatches`.
pub const MAX_CONCURRENT: i32 = 5000;
/// Default `max_attempts`.
pub const DEFAULT_MAX_ATTEMPTS: i32 = 100;
/// Default `min_backoff` (0.1 s).
pub const DEFAULT_MIN_BACKOFF: Duration = Duration {
    seconds: 0,
    nanos: 100_000_000,
};
/// Default `max_backoff` (3600 s).
pub const DEFAULT_MAX_BACKOFF: Duration = Duration {
    seconds: 3600,
    nanos: 0,
};
/// Default `max_doublings`.
pub const DEFAULT_MAX_DOUBLINGS: i32 = 16;

/// The token-bucket capacity the server derives from the rate: `max(1, ceil(rate / 5))`
/// (100 at the default rate of 500, as observed on the real service).
pub fn burst_for_rate(rate: f64) -> i32 {
    // The rate is validated to 0..=500, so the cast cannot truncate.
    #[allow(clippy::cast_possible_truncation)]
    let b = (rate / 5.0).ceil() as i32;
    b.max(1)
}

/// Rate limits with defaults filled in and the burst recomputed.
pub fn normalize_rate_limits(r: Option<&RateLimits>) -> RateLimits {
    let r = r.cloned().unwrap_or_default();
    let rate = if r.max_dispatches_per_second == 0.0 {
        DEFAULT_RATE
    } else {
        r.max_dispatches_per_second
    };
    RateLimits {
        max_dispatches_per_second: rate,
        max_burst_size: burst_for_rate(rate),
        max_concurrent_dispatches: if r.max_concurrent_dispatches == 0 {
            DEFAULT_CONCURRENT
        } else {
            r.max_concurrent_dispatches
        },
    }
}

fn is_zero(d: Option<&Duration>) -> bool {
    d.is_none_or(|d| d.seconds == 0 && d.nanos == 0)
}

/// Retry config with defaults filled in.
pub fn normalize_retry_config(r: Option<&RetryConfig>) -> RetryConfig {
    let r = r.cloned().unwrap_or_default();
    RetryConfig {
        max_attempts: if r.max_attempts == 0 {
            DEFAULT_MAX_ATTEMPTS
        } else {
            r.max_attempts
        },
        max_retry_duration: if is_zero(r.max_retry_duration.as_ref()) {
            None
        } else {
            r.max_retry_duration.map(|d| Duration {
                seconds: d.seconds,
                nanos: 0,
            })
        },
        min_backoff: if is_zero(r.min_backoff.as_ref()) {
            Some(DEFAULT_MIN_BACKOFF)
        } else {
            r.min_backoff
        },
        max_backoff: if is_zero(r.max_backoff.as_ref()) {
            Some(DEFAULT_MAX_BACKOFF)
        } else {
            r.max_backoff
        },
        max_doublings: if r.max_doublings == 0 {
            DEFAULT_MAX_DOUBLINGS
        } else {
            r.max_doublings
        },
    }
}

fn dur_negative(d: Option<&Duration>) -> bool {
    d.is_some_and(|d| d.seconds < 0 || d.nanos < 0)
}

fn dur_micros(d: Option<&Duration>) -> i64 {
    d.map_or(0, crate::time::duration_to_micros)
}

/// Validates user-supplied rate limits (before normalisation); `field` prefixes messages.
pub fn validate_rate_limits(r: &RateLimits, field: &str) -> Result<(), Status> {
    let rate = r.max_dispatches_per_second;
    if !rate.is_finite() || !(0.0..=MAX_RATE).contains(&rate) {
        return Err(Status::invalid(format!(
            "{field}.max_dispatches_per_second must be between 0 and {MAX_RATE}, got {rate}."
        )));
    }
    if !(0..=MAX_CONCURRENT).contains(&r.max_concurrent_dispatches) {
        return Err(Status::invalid(format!(
            "{field}.max_concurrent_dispatches must be between 0 and {MAX_CONCURRENT}, got {}.",
            r.max_concurrent_dispatches
        )));
    }
    Ok(())
}

/// Validates a user-supplied retry config (before normalisation); `field` prefixes messages.
pub fn validate_retry_config(r: &RetryConfig, field: &str) -> Result<(), Status> {
    if r.max_attempts < -1 {
        return Err(Status::invalid(format!(
            "{field}.max_attempts must be -1 (unlimited) or greater, got {}.",
            r.max_attempts
        )));
    }
    if r.max_doublings < 0 {
        return Err(Status::invalid(format!(
            "{field}.max_doublings must not be negative, got {}.",
            r.max_doublings
        )));
    }
    for (name, d) in [
        ("max_retry_duration", r.max_retry_duration.as_ref()),
        ("min_backoff", r.min_backoff.as_ref()),
        ("max_backoff", r.max_backoff.as_ref()),
    ] {
        if dur_negative(d) {
            return Err(Status::invalid(format!(
                "{field}.{name} must not be negative."
            )));
        }
    }
    let n = normalize_retry_config(Some(r));
    if dur_micros(n.min_backoff.as_ref()) > dur_micros(n.max_backoff.as_ref()) {
        return Err(Status::invalid(format!(
            "{field}.min_backoff must not be greater than {field}.max_backoff."
        )));
    }
    Ok(())
}

/// Validates the user-settable parts of a queue.
pub fn validate_queue(q: &Queue) -> Result<(), Status> {
    if let Some(r) = &q.rate_limits {
        validate_rate_limits(r, "queue.rate_limits")?;
    }
    if let Some(r) = &q.retry_config {
        validate_retry_config(r, "queue.retry_config")?;
    }
    if let Some(s) = &q.stackdriver_logging_config
        && !(0.0..=1.0).contains(&s.sampling_ratio)
    {
        return Err(Status::invalid(format!(
            "queue.stackdriver_logging_config.sampling_ratio must be between 0.0 and 1.0, got {}.",
            s.sampling_ratio
        )));
    }
    if let Some(t) = &q.http_target {
        if let Some(u) = &t.uri_override {
            if u.host.as_deref() == Some("") {
                return Err(Status::invalid(
                    "queue.http_target.uri_override.host must not be empty.",
                ));
            }
            if u.port.is_some_and(|p| !(0..=65535).contains(&p)) {
                return Err(Status::invalid(
                    "queue.http_target.uri_override.port must be between 0 and 65535.",
                ));
            }
        }
        let auth_incomplete = match &t.authorization_header {
            Some(stratus_proto::tasks::http_target::AuthorizationHeader::OauthToken(o)) => {
                o.service_account_email.is_empty()
            }
            Some(stratus_proto::tasks::http_target::AuthorizationHeader::OidcToken(o)) => {
                o.service_account_email.is_empty()
            }
            None => false,
        };
        if auth_incomplete {
            return Err(Status::invalid(
                "queue.http_target authorization requires service_account_email.",
            ));
        }
    }
    Ok(())
}

/// The queue as stored: defaults materialised, burst computed, output-only fields kept.
pub fn normalize_queue(mut q: Queue) -> Queue {
    q.rate_limits = Some(normalize_rate_limits(q.rate_limits.as_ref()));
    q.retry_config = Some(normalize_retry_config(q.retry_config.as_ref()));
    if q.state == State::Unspecified as i32 {
        q.state = State::Running as i32;
    }
    if q.stackdriver_logging_config
        .as_ref()
        .is_some_and(|s| *s == StackdriverLoggingConfig::default())
    {
        q.stackdriver_logging_config = None;
    }
    q
}

/// A comparison in a ListQueues filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterOp {
    /// `:` or `=`.
    Eq,
    /// `!=`.
    Ne,
}

/// The parsed ListQueues `filter`: conjunctions of `state` and `name` terms, e.g.
/// `state: PAUSED`, `state != RUNNING AND name: projects/p/locations/l/queues/prod-`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueFilter {
    /// `(op, State)` terms.
    pub states: Vec<(FilterOp, i32)>,
    /// `(op, value)` name terms; `:` on a name is a prefix match, `=` exact.
    pub names: Vec<(FilterOp, bool, String)>,
}

impl QueueFilter {
    /// Parses a filter string; empty means "everything".
    pub fn parse(s: &str) -> Result<Self, Status> {
        let mut f = QueueFilter::default();
        let s = s.trim();
        if s.is_empty() {
            return Ok(f);
        }
        for term in s.split(" AND ") {
            let term = term.trim();
            let (key, op, prefix, value) = if let Some((k, v)) = term.split_once("!=") {
                (k, FilterOp::Ne, false, v)
            } else if let Some((k, v)) = term.split_once('=') {
                (k, FilterOp::Eq, false, v)
            } else if let Some((k, v)) = term.split_once(':') {
                (k, FilterOp::Eq, true, v)
            } else {
                return Err(bad_filter(s));
            };
            let value = value.trim().trim_matches('"');
            match key.trim() {
                "state" => {
                    let st = State::from_str_name(value)
                        .or_else(|| {
                            value
                                .parse::<i32>()
                                .ok()
                                .and_then(|v| State::try_from(v).ok())
                        })
                        .ok_or_else(|| bad_filter(s))?;
                    f.states.push((op, st as i32));
                }
                "name" => f.names.push((op, prefix, value.to_string())),
                _ => return Err(bad_filter(s)),
            }
        }
        Ok(f)
    }

    /// Whether a queue passes the filter.
    pub fn matches(&self, q: &Queue) -> bool {
        self.states
            .iter()
            .all(|(op, st)| (q.state == *st) == (*op == FilterOp::Eq))
            && self.names.iter().all(|(op, prefix, v)| {
                let hit = if *prefix {
                    q.name.starts_with(v.as_str())
                } else {
                    q.name == *v
                };
                hit == (*op == FilterOp::Eq)
            })
    }
}

fn bad_filter(s: &str) -> Status {
    Status::invalid(format!(
        "Invalid filter \"{s}\": supported terms are `state: <STATE>`, `state != <STATE>` and `name: <prefix>`, joined by AND."
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_burst() {
        let q = normalize_queue(Queue::default());
        let r = q.rate_limits.unwrap();
        assert_eq!(
            (
                r.max_dispatches_per_second,
                r.max_burst_size,
                r.max_concurrent_dispatches
            ),
            (500.0, 100, 1000)
        );
        let rc = q.retry_config.unwrap();
        assert_eq!(rc.max_attempts, 100);
        assert_eq!(rc.min_backoff, Some(DEFAULT_MIN_BACKOFF));
        assert_eq!(burst_for_rate(5.0), 1);
        assert_eq!(burst_for_rate(0.5), 1);
    }

    #[test]
    fn validation() {
        let bad = RateLimits {
            max_dispatches_per_second: 501.0,
            ..Default::default()
        };
        assert!(
            validate_rate_limits(&bad, "queue.rate_limits")
                .unwrap_err()
                .message
                .contains("max_dispatches_per_second")
        );
        let bad = RetryConfig {
            min_backoff: Some(Duration {
                seconds: 10,
                nanos: 0,
            }),
            max_backoff: Some(Duration {
                seconds: 5,
                nanos: 0,
            }),
            ..Default::default()
        };
        assert!(validate_retry_config(&bad, "queue.retry_config").is_err());
        let bad = RetryConfig {
            max_attempts: -2,
            ..Default::default()
        };
        assert!(validate_retry_config(&bad, "queue.retry_config").is_err());
    }

    #[test]
    fn filters() {
        let f = QueueFilter::parse("state: PAUSED").unwrap();
        let mut q = Queue {
            state: 2,
            name: "projects/p/locations/l/queues/a".into(),
            ..Default::default()
        };
        assert!(f.matches(&q));
        q.state = 1;
        assert!(!f.matches(&q));
        assert!(
            QueueFilter::parse("state != PAUSED AND name: projects/p/locations/l/queues/a")
                .unwrap()
                .matches(&q)
        );
        assert!(QueueFilter::parse("color: red").is_err());
    }
}
