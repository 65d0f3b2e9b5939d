//! Opaque page tokens for ListQueues and ListTasks.
//!
//! A token is base64url JSON of (resource, filter hash, last key, issue time). It is refused
//! with INVALID_ARGUMENT when it is malformed, belongs to another resource or filter, or is
//! older than two hours (the Cloud Tasks token lifetime).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use stratus_types::time::SECOND;
use stratus_types::{Micros, Status};

/// How long a page token stays valid.
pub const TOKEN_LIFETIME: Micros = 2 * 3600 * SECOND;

#[derive(Serialize, Deserialize)]
struct Token {
    /// Resource the listing is for (parent name).
    r: String,
    /// Hash of the filter (and view) the listing started with.
    f: String,
    /// Last key returned: queue name, or task schedule_time.
    k: String,
    /// Task ID of the last task (task listings only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    i: String,
    /// Issue time (µs).
    t: Micros,
}

fn hash(s: &str) -> String {
    let d = Sha256::digest(s.as_bytes());
    URL_SAFE_NO_PAD.encode(&d[..8])
}

/// Encodes a token for `resource` with `filter`, resuming after `(key, id)`.
pub fn encode(resource: &str, filter: &str, key: &str, id: &str, now: Micros) -> String {
    let t = Token {
        r: resource.to_string(),
        f: hash(filter),
        k: key.to_string(),
        i: id.to_string(),
        t: now,
    };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&t).unwrap_or_default())
}

/// Decodes a token; returns `(key, id)` to resume after.
pub fn decode(
    token: &str,
    resource: &str,
    filter: &str,
    now: Micros,
) -> Result<(String, String), Status> {
    let bad = || {
        Status::invalid(format!(
            "Invalid page_token \"{token}\": it was not issued for this request."
        ))
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(token.as_bytes())
        .map_err(|_| bad())?;
    let t: Token = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if t.r != resource {
        return Err(bad());
    }
    if t.f != hash(filter) {
        return Err(Status::invalid(
            "The filter of a page_token request must be the same as that of the first request.",
        ));
    }
    if now.saturating_sub(t.t) > TOKEN_LIFETIME {
        return Err(Status::invalid(
            "The page_token has expired (tokens live 2 hours).",
        ));
    }
    Ok((t.k, t.i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejections() {
        let tok = encode("projects/p/locations/l", "state: PAUSED", "q1", "", 10);
        assert_eq!(
            decode(&tok, "projects/p/locations/l", "state: PAUSED", 20)
                .unwrap()
                .0,
            "q1"
        );
        assert!(decode(&tok, "projects/p/locations/x", "state: PAUSED", 20).is_err());
        assert!(decode(&tok, "projects/p/locations/l", "", 20).is_err());
        assert!(
            decode(
                &tok,
                "projects/p/locations/l",
                "state: PAUSED",
                10 + TOKEN_LIFETIME + 1
            )
            .is_err()
        );
        assert!(decode("!!", "projects/p/locations/l", "", 0).is_err());
    }
}
