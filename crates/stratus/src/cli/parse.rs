//! Flag value parsers. Each returns the value in its proto3 JSON form, so the command code only
//! places values into the request body.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

const NANOS_PER_SEC: u128 = 1_000_000_000;
/// The largest `google.protobuf.Duration`: 10,000 years.
const MAX_DURATION_SECS: u128 = 315_576_000_000;

/// Parses a gcloud-style duration (`10s`, `1.5s`, `5m`, `2h`, `1d`, `250ms`, `1h30m`; a bare
/// number means seconds) into a proto3 JSON duration string such as `"600s"` or `"0.100s"`.
pub fn duration(s: &str) -> Result<String, String> {
    let nanos = duration_nanos(s.trim())
        .ok_or_else(|| format!("invalid duration {s:?}: use forms like 10s, 1.5s, 5m, 2h, 1d"))?;
    if nanos / NANOS_PER_SEC > MAX_DURATION_SECS {
        return Err(format!("duration {s:?} is too long"));
    }
    let (secs, frac) = (nanos / NANOS_PER_SEC, nanos % NANOS_PER_SEC);
    Ok(match frac {
        0 => format!("{secs}s"),
        f if f % 1_000_000 == 0 => format!("{secs}.{:03}s", f / 1_000_000),
        f if f % 1_000 == 0 => format!("{secs}.{:06}s", f / 1_000),
        f => format!("{secs}.{f:09}s"),
    })
}

/// Sums the `<number><unit>` components of `s` in nanoseconds; `None` when malformed.
fn duration_nanos(s: &str) -> Option<u128> {
    if s.is_empty() {
        return None;
    }
    let s = s.to_ascii_lowercase();
    if let Some(n) = decimal_nanos(&s, NANOS_PER_SEC) {
        return Some(n); // a bare number: seconds
    }
    let mut total: u128 = 0;
    let mut rest = s.as_str();
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let (num, after) = rest.split_at(num_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let unit_nanos = match unit {
            "d" => 86_400 * NANOS_PER_SEC,
            "h" => 3_600 * NANOS_PER_SEC,
            "m" => 60 * NANOS_PER_SEC,
            "s" => NANOS_PER_SEC,
            "ms" => 1_000_000,
            "us" => 1_000,
            _ => return None,
        };
        total = total.checked_add(decimal_nanos(num, unit_nanos)?)?;
        rest = next;
    }
    Some(total)
}

/// `num` (digits with an optional fraction) times `unit` nanoseconds, fraction truncated.
fn decimal_nanos(num: &str, unit: u128) -> Option<u128> {
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let all_digits = |x: &str| x.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(int) || !all_digits(frac) || int.len() > 20 || frac.len() > 18 {
        return None;
    }
    let int_val: u128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let frac_val: u128 = if frac.is_empty() {
        0
    } else {
        frac.parse().ok()?
    };
    let frac_nanos = frac_val * unit / 10u128.pow(frac.len() as u32);
    int_val.checked_mul(unit)?.checked_add(frac_nanos)
}

/// Parses `--max-attempts`: an integer ≥ -1, or `unlimited` (= -1).
pub fn max_attempts(s: &str) -> Result<i32, String> {
    if s.eq_ignore_ascii_case("unlimited") {
        return Ok(-1);
    }
    match s.parse::<i32>() {
        Ok(n) if n >= -1 => Ok(n),
        _ => Err(format!(
            "invalid max attempts {s:?}: an integer >= -1, or `unlimited`"
        )),
    }
}

/// Parses `--schedule-time`: an RFC 3339 timestamp (normalised to UTC `Z`), or `+DURATION`
/// relative to now (e.g. `+10m`).
pub fn schedule_time(s: &str) -> Result<String, String> {
    schedule_time_at(s, Utc::now())
}

/// [`schedule_time`] with an explicit `now`, for tests.
pub fn schedule_time_at(s: &str, now: DateTime<Utc>) -> Result<String, String> {
    let t = if let Some(rel) = s.strip_prefix('+') {
        let nanos = duration_nanos(rel).ok_or_else(|| format!("invalid duration in {s:?}"))?;
        let delta = i64::try_from(nanos)
            .map(chrono::Duration::nanoseconds)
            .map_err(|_| format!("schedule time {s:?} is too far away"))?;
        now.checked_add_signed(delta)
            .ok_or_else(|| format!("schedule time {s:?} is too far away"))?
    } else {
        DateTime::parse_from_rfc3339(s)
            .map_err(|e| {
                format!(
                    "invalid schedule time {s:?} ({e}): use RFC 3339, e.g. 2030-01-02T03:04:05Z"
                )
            })?
            .with_timezone(&Utc)
    };
    Ok(t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

/// Parses a `KEY:VALUE` header (spaces around the value are trimmed).
pub fn header(s: &str) -> Result<(String, String), String> {
    match s.split_once(':') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(format!("invalid header {s:?}: expected KEY:VALUE")),
    }
}

/// Parses the gcloud form of `--http-uri-override`,
/// `scheme:https,host:example.com,port:8443,path:/x,query:a=b,mode:always`, into an
/// `UriOverride` JSON object. Every key is optional; `mode` is `always` or `if-not-exists`.
pub fn uri_override(s: &str) -> Result<Value, String> {
    let mut out = Map::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (key, value) = part
            .split_once(':')
            .ok_or_else(|| format!("invalid uri override part {part:?}: expected KEY:VALUE"))?;
        let (key, value) = (key.trim().to_ascii_lowercase(), value.trim());
        let (field, v) = match key.as_str() {
            "scheme" => match value.to_ascii_lowercase().as_str() {
                "http" => ("scheme", json!("HTTP")),
                "https" => ("scheme", json!("HTTPS")),
                _ => return Err(format!("invalid scheme {value:?}: http or https")),
            },
            "host" => ("host", json!(value)),
            "port" => {
                let port: u16 = value
                    .parse()
                    .map_err(|_| format!("invalid port {value:?}: a number 0..65535"))?;
                ("port", json!(port.to_string())) // int64 travels as a JSON string
            }
            "path" => ("pathOverride", json!({ "path": value })),
            "query" => ("queryOverride", json!({ "queryParams": value })),
            "mode" => match value.to_ascii_lowercase().replace('_', "-").as_str() {
                "always" => ("uriOverrideEnforceMode", json!("ALWAYS")),
                "if-not-exists" => ("uriOverrideEnforceMode", json!("IF_NOT_EXISTS")),
                _ => return Err(format!("invalid mode {value:?}: always or if-not-exists")),
            },
            _ => {
                return Err(format!(
                    "unknown uri override key {key:?}: use scheme, host, port, path, query, mode"
                ));
            }
        };
        out.insert(field.to_string(), v);
    }
    if out.is_empty() {
        return Err("empty uri override".to_string());
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_gcloud_forms() {
        assert_eq!(duration("10s").unwrap(), "10s");
        assert_eq!(duration("1.5s").unwrap(), "1.500s");
        assert_eq!(duration("0.1s").unwrap(), "0.100s");
        assert_eq!(duration("5m").unwrap(), "300s");
        assert_eq!(duration("2h").unwrap(), "7200s");
        assert_eq!(duration("1d").unwrap(), "86400s");
        assert_eq!(duration("1h30m").unwrap(), "5400s");
        assert_eq!(duration("250ms").unwrap(), "0.250s");
        assert_eq!(duration("1us").unwrap(), "0.000001s");
        assert_eq!(duration("30").unwrap(), "30s");
        assert_eq!(duration("1.5m").unwrap(), "90s");
        for bad in ["", "s", "10x", "-1s", "1..5s", "m5", "1e3s"] {
            assert!(duration(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn max_attempts_values() {
        assert_eq!(max_attempts("5").unwrap(), 5);
        assert_eq!(max_attempts("-1").unwrap(), -1);
        assert_eq!(max_attempts("unlimited").unwrap(), -1);
        assert!(max_attempts("-2").is_err());
    }

    #[test]
    fn schedule_times() {
        let now = DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            schedule_time_at("2030-01-02T03:04:05.678901+01:00", now).unwrap(),
            "2030-01-02T02:04:05.678901Z"
        );
        assert_eq!(
            schedule_time_at("+10m", now).unwrap(),
            "2030-01-01T00:10:00Z"
        );
        assert!(schedule_time_at("tomorrow", now).is_err());
    }

    #[test]
    fn headers_and_uri_override() {
        assert_eq!(
            header("Content-Type: application/json").unwrap(),
            ("Content-Type".into(), "application/json".into())
        );
        assert!(header("novalue").is_err());
        let v =
            uri_override("scheme:https,host:example.com,port:8443,path:/x,query:a=b,mode:always")
                .unwrap();
        assert_eq!(
            v,
            json!({"scheme":"HTTPS","host":"example.com","port":"8443",
                   "pathOverride":{"path":"/x"},"queryOverride":{"queryParams":"a=b"},
                   "uriOverrideEnforceMode":"ALWAYS"})
        );
        assert!(uri_override("colour:red").is_err());
        assert!(uri_override("port:http").is_err());
    }
}
