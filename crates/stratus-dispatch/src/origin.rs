//! Proof of origin for receivers, besides OIDC tokens: a per-queue shared-secret header and an
//! HMAC-SHA256 signature over the attempt's timestamp and body.
//!
//! [`OriginRules`] is an ordered list of [`OriginRule`]s. Each matches queues by full name
//! (`projects/P/locations/L/queues/Q`) or by a pattern ending in `*` (a prefix match, e.g.
//! `projects/billing/*`); the first rule that matches a queue applies, the others are ignored.
//! A rule adds, to every attempt of its queues:
//!
//! - a shared-secret header (`secret_header: secret`), a static value the receiver compares
//!   against its copy;
//! - [`SIGNATURE_HEADER`] with one HMAC-SHA256 signature per configured key (one key, or two
//!   while rotating):
//!
//!   ```text
//!   X-Stratus-Signature: t=<unix seconds>,v1=<hex hmac>[,v1=<hex hmac of the second key>]
//!   ```
//!
//!   where each `<hex hmac>` is the lowercase hex HMAC-SHA256, keyed with the key's UTF-8 bytes,
//!   of the signed string `"<t>." + body`: the decimal timestamp, one `.`, then the body bytes
//!   exactly as sent (empty for methods without a body). `t` is the attempt's send time, so
//!   every retry is signed anew. Test vector: key `whsec-current-0123456789`, `t=1700000000`,
//!   body `{"order":42}` → `36008afbc5952121db555e3fd4256fcddea510b1796fbcce71d1b4d77b4634ef`.
//!
//! The headers exist only on the wire: they are added when an attempt is sent, never stored
//! with the task, and replace any header of the same name the task or the queue's
//! `header_overrides` carry (`X-Stratus-*` headers are dropped from those layers anyway, see
//! [`crate::request`]). Secrets are kept in [`Secret`], whose `Debug` is redacted.

use std::fmt;

use stratus_types::QueuePath;

use crate::request::OutgoingRequest;

/// The signature header's name.
pub const SIGNATURE_HEADER: &str = "X-Stratus-Signature";

/// The most HMAC keys a rule holds: the current one and, during a rotation, one more.
pub const MAX_HMAC_KEYS: usize = 2;

/// The shortest HMAC key accepted, in bytes.
pub const MIN_HMAC_KEY_LEN: usize = 16;

/// A secret value (a shared-secret header value or an HMAC key). Its `Debug` prints
/// `<redacted>` so configs and rules can be logged without leaking it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself (only to put it on the wire).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Why a rule was refused; the message names the field and the rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct OriginError {
    /// The offending field (`queue`, `secret_header`, `secret`, `hmac_keys`).
    pub field: &'static str,
    /// What is wrong and what is expected.
    pub reason: String,
}

fn err(field: &'static str, reason: impl Into<String>) -> OriginError {
    OriginError {
        field,
        reason: reason.into(),
    }
}

/// Which queues a rule applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum QueueMatch {
    /// One queue, by full name.
    Exact(String),
    /// Every queue whose full name starts with this (the pattern without its `*`).
    Prefix(String),
}

/// One rule: the queues it matches and the proofs it adds to their attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginRule {
    matcher: QueueMatch,
    /// The shared-secret header's name and value, if any.
    secret_header: Option<(String, Secret)>,
    /// The HMAC keys, current first (0, 1 or 2).
    hmac_keys: Vec<Secret>,
}

/// Headers only Stratus or the HTTP stack set; a shared-secret header may not use them.
fn reserved_header(name: &str) -> bool {
    let l = name.to_ascii_lowercase();
    matches!(
        l.as_str(),
        "host"
            | "content-length"
            | "content-type"
            | "content-encoding"
            | "transfer-encoding"
            | "connection"
            | "user-agent"
            | "authorization"
    ) || l.starts_with("x-cloudtasks-")
        || l.starts_with("x-google-")
        || l.starts_with("x-appengine-")
        || l.starts_with("x-stratus-")
}

impl OriginRule {
    /// Checks and builds a rule.
    ///
    /// - `queue`: a full queue name, or a prefix ending in `*` (`*` alone matches every queue);
    /// - `secret_header` and `secret`: both or neither; the name a valid HTTP header name that
    ///   is not reserved (`Host`, `Content-Length`, `Content-Type`, `Authorization`,
    ///   `User-Agent`, `X-CloudTasks-*`, `X-Stratus-*`, …), the value a non-empty header value;
    /// - `hmac_keys`: at most [`MAX_HMAC_KEYS`], each at least [`MIN_HMAC_KEY_LEN`] bytes, the two
    ///   distinct.
    ///
    /// A rule must add something: a shared-secret header, HMAC keys or both.
    pub fn new(
        queue: &str,
        secret_header: Option<&str>,
        secret: Option<&str>,
        hmac_keys: &[String],
    ) -> Result<OriginRule, OriginError> {
        let matcher = match queue.strip_suffix('*') {
            Some(prefix) if prefix.contains('*') => {
                return Err(err(
                    "queue",
                    format!(
                        "\"{queue}\" may hold one '*', at its end (a prefix pattern such as \"projects/billing/*\")"
                    ),
                ));
            }
            Some(prefix) => QueueMatch::Prefix(prefix.to_string()),
            None if QueuePath::try_parse(queue).is_some() => QueueMatch::Exact(queue.to_string()),
            None => {
                return Err(err(
                    "queue",
                    format!(
                        "\"{queue}\" must be a full queue name \"projects/<PROJECT>/locations/<LOCATION>/queues/<QUEUE>\" or a prefix ending in '*' such as \"projects/billing/*\""
                    ),
                ));
            }
        };
        let secret_header = match (secret_header, secret) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(err(
                    "secret",
                    "required with secret_header (the value the header carries)",
                ));
            }
            (None, Some(_)) => {
                return Err(err(
                    "secret_header",
                    "required with secret (the name of the header that carries it)",
                ));
            }
            (Some(name), Some(value)) => {
                if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    return Err(err(
                        "secret_header",
                        format!(
                            "\"{name}\" is not a valid HTTP header name (letters, digits and !#$%&'*+-.^_`|~)"
                        ),
                    ));
                }
                if reserved_header(name) {
                    return Err(err(
                        "secret_header",
                        format!(
                            "\"{name}\" is reserved (Host, Content-Length, Content-Type, Authorization, User-Agent, X-CloudTasks-*, X-Google-*, X-AppEngine-* and X-Stratus-* are set by Stratus or HTTP itself); pick another name such as X-Queue-Secret"
                        ),
                    ));
                }
                if value.is_empty() || http::HeaderValue::from_str(value).is_err() {
                    return Err(err(
                        "secret",
                        "must be a non-empty HTTP header value (visible ASCII characters and spaces)",
                    ));
                }
                Some((name.to_string(), Secret::new(value)))
            }
        };
        if hmac_keys.len() > MAX_HMAC_KEYS {
            return Err(err(
                "hmac_keys",
                format!(
                    "{} keys given; at most {MAX_HMAC_KEYS} (the current key, plus the previous or next one while rotating)",
                    hmac_keys.len()
                ),
            ));
        }
        for (i, k) in hmac_keys.iter().enumerate() {
            if k.len() < MIN_HMAC_KEY_LEN {
                return Err(err(
                    "hmac_keys",
                    format!(
                        "key {i} is {} bytes long; each key must be at least {MIN_HMAC_KEY_LEN} bytes (e.g. `openssl rand -hex 32`)",
                        k.len()
                    ),
                ));
            }
        }
        if hmac_keys.len() == 2 && hmac_keys[0] == hmac_keys[1] {
            return Err(err(
                "hmac_keys",
                "the two keys are the same; during a rotation they must differ",
            ));
        }
        if secret_header.is_none() && hmac_keys.is_empty() {
            return Err(err(
                "hmac_keys",
                "the rule adds nothing: set hmac_keys, or secret_header with secret, or both",
            ));
        }
        Ok(OriginRule {
            matcher,
            secret_header,
            hmac_keys: hmac_keys.iter().map(Secret::new).collect(),
        })
    }

    /// Whether the rule applies to the queue with this full name.
    pub fn matches(&self, queue: &str) -> bool {
        match &self.matcher {
            QueueMatch::Exact(q) => q == queue,
            QueueMatch::Prefix(p) => queue.starts_with(p.as_str()),
        }
    }

    /// The pattern as configured (for messages).
    pub fn pattern(&self) -> String {
        match &self.matcher {
            QueueMatch::Exact(q) => q.clone(),
            QueueMatch::Prefix(p) => format!("{p}*"),
        }
    }

    /// The headers this rule adds to a request with `body` sent at `unix_seconds`.
    pub fn headers(&self, body: &[u8], unix_seconds: i64) -> Vec<(String, String)> {
        let mut out = Vec::with_capacity(2);
        if let Some((name, value)) = &self.secret_header {
            out.push((name.clone(), value.expose().to_string()));
        }
        if !self.hmac_keys.is_empty() {
            out.push((
                SIGNATURE_HEADER.to_string(),
                signature_header(&self.hmac_keys, unix_seconds, body),
            ));
        }
        out
    }
}

/// The ordered rules of all queues; the first rule matching a queue applies. The default has
/// no rules: attempts carry no proof besides their OIDC/OAuth token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OriginRules {
    rules: Vec<OriginRule>,
}

impl OriginRules {
    /// The rules, in the order they are tried. Fails when one pattern appears twice (the second
    /// could never apply); the error's `reason` names both positions.
    pub fn new(rules: Vec<OriginRule>) -> Result<OriginRules, OriginError> {
        for (i, r) in rules.iter().enumerate() {
            if let Some(j) = rules[..i].iter().position(|e| e.matcher == r.matcher) {
                return Err(err(
                    "queue",
                    format!(
                        "\"{}\" of rule {i} is also the pattern of rule {j}; only the first matching rule applies",
                        r.pattern()
                    ),
                ));
            }
        }
        Ok(OriginRules { rules })
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// How many rules there are.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// The rule applying to the queue with this full name: the first that matches.
    pub fn rule_for(&self, queue: &str) -> Option<&OriginRule> {
        self.rules.iter().find(|r| r.matches(queue))
    }

    /// Adds the proofs of `queue`'s rule to `req` (signed over its body, at `unix_seconds`),
    /// replacing same-named headers case-insensitively. Returns whether a rule applied (the
    /// request then carries secrets); nothing happens without one.
    pub fn apply(&self, queue: &str, req: &mut OutgoingRequest, unix_seconds: i64) -> bool {
        let Some(rule) = self.rule_for(queue) else {
            return false;
        };
        for (name, value) in rule.headers(&req.body, unix_seconds) {
            req.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(&name));
            req.headers.push((name, value));
        }
        true
    }
}

/// The lowercase hex HMAC-SHA256 of `"<unix_seconds>." + body` keyed with `key`.
pub fn sign(key: &[u8], unix_seconds: i64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(unix_seconds.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    hex::encode(ctx.sign().as_ref())
}

/// The [`SIGNATURE_HEADER`] value: `t=<unix_seconds>` then one `v1=<hex>` per key, in order.
pub fn signature_header(keys: &[Secret], unix_seconds: i64, body: &[u8]) -> String {
    let mut v = format!("t={unix_seconds}");
    for k in keys {
        v.push_str(",v1=");
        v.push_str(&sign(k.expose().as_bytes(), unix_seconds, body));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY1: &str = "whsec-current-0123456789";
    const KEY2: &str = "whsec-previous-0123456789";
    const T: i64 = 1_700_000_000;
    const BODY: &[u8] = br#"{"order":42}"#;
    /// `python3 -c 'import hmac,hashlib; print(hmac.new(b"whsec-current-0123456789",
    /// b"1700000000.{\"order\":42}", hashlib.sha256).hexdigest())'`
    const SIG1: &str = "36008afbc5952121db555e3fd4256fcddea510b1796fbcce71d1b4d77b4634ef";
    const SIG2: &str = "2e0e6c0b609c8033c3d5f0870c96488ea80e412b1989f56900cb59333d4c5a7d";
    const Q: &str = "projects/billing/locations/local/queues/emails";

    fn keys(k: &[&str]) -> Vec<String> {
        k.iter().map(|s| s.to_string()).collect()
    }

    fn req(headers: &[(&str, &str)]) -> OutgoingRequest {
        OutgoingRequest {
            method: http::Method::POST,
            url: url::Url::parse("http://127.0.0.1:9/x").unwrap(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: BODY.to_vec(),
            auth: None,
        }
    }

    #[test]
    fn signature_matches_the_documented_vector() {
        assert_eq!(sign(KEY1.as_bytes(), T, BODY), SIG1);
        assert_eq!(sign(KEY2.as_bytes(), T, BODY), SIG2);
        assert_eq!(
            signature_header(&[Secret::new(KEY1)], T, BODY),
            format!("t={T},v1={SIG1}")
        );
        assert_eq!(
            signature_header(&[Secret::new(KEY1), Secret::new(KEY2)], T, BODY),
            format!("t={T},v1={SIG1},v1={SIG2}")
        );
        // Any change of timestamp or body changes the signature.
        assert_ne!(sign(KEY1.as_bytes(), T + 1, BODY), SIG1);
        assert_ne!(sign(KEY1.as_bytes(), T, br#"{"order":43}"#), SIG1);
    }

    #[test]
    fn first_matching_rule_applies() {
        let rules = OriginRules::new(vec![
            OriginRule::new(Q, Some("X-Billing-Secret"), Some("s3cret"), &[]).unwrap(),
            OriginRule::new("projects/billing/*", None, None, &keys(&[KEY1])).unwrap(),
            OriginRule::new("*", None, None, &keys(&[KEY2])).unwrap(),
        ])
        .unwrap();
        assert_eq!(rules.rule_for(Q).unwrap().pattern(), Q);
        assert_eq!(
            rules
                .rule_for("projects/billing/locations/local/queues/other")
                .unwrap()
                .pattern(),
            "projects/billing/*"
        );
        assert_eq!(
            rules
                .rule_for("projects/billing2/locations/l/queues/q")
                .unwrap()
                .pattern(),
            "*"
        );
        let exact_only = OriginRules::new(vec![
            OriginRule::new(Q, None, None, &keys(&[KEY1])).unwrap(),
        ])
        .unwrap();
        assert!(exact_only.rule_for(&format!("{Q}2")).is_none());
        assert!(OriginRules::default().rule_for(Q).is_none());
    }

    #[test]
    fn apply_replaces_same_named_headers() {
        let rules = OriginRules::new(vec![
            OriginRule::new(
                "projects/billing/*",
                Some("X-Billing-Secret"),
                Some("s3cret"),
                &keys(&[KEY1, KEY2]),
            )
            .unwrap(),
        ])
        .unwrap();
        let mut r = req(&[
            ("x-billing-secret", "forged"),
            ("X-STRATUS-SIGNATURE", "t=1,v1=00"),
            ("Content-Type", "application/json"),
        ]);
        rules.apply(Q, &mut r, T);
        let got: Vec<(&str, &str)> = r
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let sig = format!("t={T},v1={SIG1},v1={SIG2}");
        assert_eq!(
            got,
            vec![
                ("Content-Type", "application/json"),
                ("X-Billing-Secret", "s3cret"),
                ("X-Stratus-Signature", sig.as_str()),
            ]
        );
        // No rule: the request is left alone.
        let mut other = req(&[("a", "b")]);
        rules.apply("projects/p/locations/l/queues/q", &mut other, T);
        assert_eq!(other.headers, req(&[("a", "b")]).headers);
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let rules = OriginRules::new(vec![
            OriginRule::new(
                Q,
                Some("X-Billing-Secret"),
                Some("hunter2-header"),
                &keys(&[KEY1]),
            )
            .unwrap(),
        ])
        .unwrap();
        let dbg = format!("{rules:?}");
        assert!(!dbg.contains("hunter2-header"), "{dbg}");
        assert!(!dbg.contains(KEY1), "{dbg}");
        assert!(dbg.contains("<redacted>"), "{dbg}");
        assert!(dbg.contains("X-Billing-Secret"), "{dbg}");
    }

    #[test]
    fn invalid_rules_name_their_field() {
        let field = |r: Result<OriginRule, OriginError>| r.unwrap_err().field;
        assert_eq!(
            field(OriginRule::new("billing", None, None, &keys(&[KEY1]))),
            "queue"
        );
        assert_eq!(
            field(OriginRule::new(
                "projects/*/queues/*",
                None,
                None,
                &keys(&[KEY1])
            )),
            "queue"
        );
        assert_eq!(field(OriginRule::new(Q, Some("X-A"), None, &[])), "secret");
        assert_eq!(
            field(OriginRule::new(Q, None, Some("v"), &[])),
            "secret_header"
        );
        assert_eq!(
            field(OriginRule::new(Q, Some("bad header"), Some("v"), &[])),
            "secret_header"
        );
        for reserved in [
            "Authorization",
            "host",
            "Content-Length",
            "X-CloudTasks-TaskName",
            "x-stratus-signature",
        ] {
            let e = OriginRule::new(Q, Some(reserved), Some("v"), &[]).unwrap_err();
            assert_eq!(e.field, "secret_header", "{reserved}");
            assert!(e.to_string().contains("reserved"), "{e}");
        }
        assert_eq!(
            field(OriginRule::new(Q, Some("X-A"), Some(""), &[])),
            "secret"
        );
        assert_eq!(
            field(OriginRule::new(Q, Some("X-A"), Some("a\nb"), &[])),
            "secret"
        );
        let e = OriginRule::new(Q, None, None, &keys(&["short"])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "hmac_keys: key 0 is 5 bytes long; each key must be at least 16 bytes (e.g. `openssl rand -hex 32`)"
        );
        assert_eq!(
            field(OriginRule::new(
                Q,
                None,
                None,
                &keys(&[KEY1, KEY2, "third-key-0123456789"])
            )),
            "hmac_keys"
        );
        assert_eq!(
            field(OriginRule::new(Q, None, None, &keys(&[KEY1, KEY1]))),
            "hmac_keys"
        );
        assert_eq!(field(OriginRule::new(Q, None, None, &[])), "hmac_keys");
        let dup = OriginRules::new(vec![
            OriginRule::new(Q, None, None, &keys(&[KEY1])).unwrap(),
            OriginRule::new(Q, None, None, &keys(&[KEY2])).unwrap(),
        ])
        .unwrap_err();
        assert_eq!(dup.field, "queue");
    }
}
