//! Time as integer microseconds since the Unix epoch, and protobuf conversions.
//!
//! Cloud Tasks keeps schedule times at µs precision, create times at whole seconds and
//! dispatch deadlines at ms; the helpers here do those truncations.

use stratus_proto::wkt::{Duration, Timestamp};

/// Microseconds since the Unix epoch (timestamps) or a span in microseconds (durations).
pub type Micros = i64;

/// One second in [`Micros`].
pub const SECOND: Micros = 1_000_000;

/// A protobuf `Timestamp` as µs (sub-µs nanos truncated).
pub fn ts_to_micros(ts: &Timestamp) -> Micros {
    ts.seconds
        .saturating_mul(SECOND)
        .saturating_add(i64::from(ts.nanos) / 1_000)
}

/// µs as a protobuf `Timestamp`.
pub fn micros_to_ts(us: Micros) -> Timestamp {
    Timestamp {
        seconds: us.div_euclid(SECOND),
        nanos: i32::try_from(us.rem_euclid(SECOND) * 1_000).unwrap_or(0),
    }
}

/// A protobuf `Duration` as µs (sub-µs truncated).
pub fn duration_to_micros(d: &Duration) -> Micros {
    d.seconds
        .saturating_mul(SECOND)
        .saturating_add(i64::from(d.nanos) / 1_000)
}

/// µs as a protobuf `Duration`.
pub fn micros_to_duration(us: Micros) -> Duration {
    Duration {
        seconds: us / SECOND,
        nanos: i32::try_from((us % SECOND) * 1_000).unwrap_or(0),
    }
}

/// RFC 3339 text of a µs timestamp (`2030-01-02T03:04:05.678901Z`).
pub fn format_rfc3339(us: Micros) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        .unwrap_or_default()
}

/// Parses RFC 3339 (any offset, 0–9 fraction digits) to µs.
pub fn parse_rfc3339(s: &str) -> Option<Micros> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.timestamp_micros())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let ts = Timestamp {
            seconds: 1_900_000_000,
            nanos: 678_901_234,
        };
        let us = ts_to_micros(&ts);
        assert_eq!(
            micros_to_ts(us),
            Timestamp {
                seconds: 1_900_000_000,
                nanos: 678_901_000
            }
        );
        assert_eq!(
            duration_to_micros(&Duration {
                seconds: 1,
                nanos: 500_000_000
            }),
            1_500_000
        );
        assert_eq!(
            micros_to_ts(-1),
            Timestamp {
                seconds: -1,
                nanos: 999_999_000
            }
        );
        assert_eq!(
            parse_rfc3339("2030-01-02T03:04:05.678901Z")
                .map(format_rfc3339)
                .as_deref(),
            Some("2030-01-02T03:04:05.678901Z")
        );
    }
}

/// A source of the current time, injected so logic and tests never read the system clock
/// directly.
pub trait Clock: Send + Sync + 'static {
    /// Now, in µs since the Unix epoch.
    fn now(&self) -> Micros;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Micros {
        chrono::Utc::now().timestamp_micros()
    }
}

/// Parses a human duration: a number with an optional fraction and a unit `ms`, `s`, `m`,
/// `h` or `d` (`"1.5s"`, `"10m"`, `"7d"`); a bare `0` is zero.
pub fn parse_human_duration(s: &str) -> Option<Micros> {
    let s = s.trim();
    if s == "0" {
        return Some(0);
    }
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let scale = match unit {
        "ms" => 1_000.0,
        "s" => 1e6,
        "m" => 60e6,
        "h" => 3600e6,
        "d" => 86_400e6,
        _ => return None,
    };
    let v = n * scale;
    // Bounded by the check: a finite, non-negative value below i64::MAX.
    #[allow(clippy::cast_possible_truncation)]
    (0.0..9.0e18).contains(&v).then_some(v as Micros)
}

#[cfg(test)]
mod human_tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_human_duration("1.5s"), Some(1_500_000));
        assert_eq!(parse_human_duration("7d"), Some(7 * 86_400 * SECOND));
        assert_eq!(parse_human_duration("0"), Some(0));
        assert_eq!(parse_human_duration("0s"), Some(0));
        assert_eq!(parse_human_duration("250ms"), Some(250_000));
        assert_eq!(parse_human_duration("ten"), None);
        assert_eq!(parse_human_duration("5"), None);
    }
}
