//! Server settings: flags, then `STRATUS_*` environment variables, then an optional TOML file,
//! then defaults. The file may also declare queues, applied idempotently at start.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;
use stratus_api::auth::{self, Role, Scope, TokenSpec};
use stratus_dispatch::origin::{OriginRule, OriginRules};
use stratus_types::Micros;
use stratus_types::time::parse_human_duration;

/// The optional TOML file (`--config`).
/// Not `Debug`: it holds secrets (store URL, OAuth token, receiver secrets).
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Address to listen on.
    pub listen: Option<String>,
    /// Log lines as `text` (default) or `json`.
    pub log_format: Option<crate::logging::LogFormat>,
    /// Directory of the embedded SQLite store.
    pub data_dir: Option<PathBuf>,
    /// A PostgreSQL store URL (cluster mode) instead of SQLite.
    pub store: Option<String>,
    /// Schema of the PostgreSQL store.
    pub pg_schema: Option<String>,
    /// This node's ID in a PostgreSQL cluster.
    pub node_id: Option<String>,
    /// How long queue leases last unrenewed (e.g. `"8s"`).
    pub lease_timeout: Option<String>,
    /// How long a finished task blocks its name (e.g. `"1h"`, `"0s"`).
    pub task_tombstone: Option<String>,
    /// How long a deleted queue blocks its name (e.g. `"7d"`).
    pub queue_reuse_block: Option<String>,
    /// Location IDs answered by ListLocations.
    pub locations: Option<Vec<String>>,
    /// How long succeeded tasks are kept with their attempts (e.g. `"1h"`).
    pub retain_succeeded: Option<String>,
    /// How long permanently failed tasks are kept with their attempts (e.g. `"7d"`).
    pub retain_failed: Option<String>,
    /// The `iss` of OIDC tokens and base URL of the discovery documents.
    pub oidc_issuer: Option<String>,
    /// A static OAuth access token sent for OAuth tasks.
    pub oauth_token: Option<String>,
    /// A shell command printing an OAuth access token (rerun every 30 minutes).
    pub oauth_token_command: Option<String>,
    /// How long shutdown waits for dispatches in flight (e.g. `"10s"`).
    pub shutdown_grace: Option<String>,
    /// PEM certificate chain for TLS on the API port (with `tls_key`).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TLS on the API port (with `tls_cert`).
    pub tls_key: Option<PathBuf>,
    /// PEM bundle of CAs: with it, API clients must present a certificate issued by one of them
    /// (mutual TLS; needs `tls_cert`). Default: no client certificate is asked for.
    pub tls_client_ca: Option<PathBuf>,
    /// Queues to create or update at start.
    #[serde(default)]
    pub queues: Vec<QueueDecl>,
    /// API bearer tokens (`[[tokens]]`); with none, the API is served on loopback only.
    #[serde(default)]
    pub tokens: Vec<TokenDecl>,
    /// Proof-of-origin rules for receivers (`[[receiver_auth]]`), first match per queue wins;
    /// default: none (attempts carry only their OIDC/OAuth token).
    #[serde(default)]
    pub receiver_auth: Vec<ReceiverAuthDecl>,
    /// Where tasks may be sent (`[outbound]`, docs/outbound.md); default: only the built-in
    /// link-local, metadata and unspecified ranges are denied, no allow-lists.
    pub outbound: Option<OutboundConfig>,
}

/// A `[[receiver_auth]]` entry: the proofs of origin the attempts of some queues carry
/// (examples/receivers/README.md).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverAuthDecl {
    /// A full queue name, or a prefix ending in `*` (e.g. `"projects/billing/*"`).
    pub queue: String,
    /// Name of a header carrying `secret` on every attempt (with `secret`) [default: none].
    pub secret_header: Option<String>,
    /// The shared secret `secret_header` carries [default: none].
    pub secret: Option<String>,
    /// HMAC-SHA256 keys of the `X-Stratus-Signature` header, current first; two while rotating
    /// (both signatures are sent), each at least 16 bytes [default: none, no signature].
    #[serde(default)]
    pub hmac_keys: Vec<String>,
}

impl std::fmt::Debug for ReceiverAuthDecl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiverAuthDecl")
            .field("queue", &self.queue)
            .field("secret_header", &self.secret_header)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("hmac_keys", &format!("<{} redacted>", self.hmac_keys.len()))
            .finish()
    }
}

/// The checked proof-of-origin rules of `[[receiver_auth]]`; errors name the entry and field.
pub fn receiver_auth_rules(decls: &[ReceiverAuthDecl]) -> anyhow::Result<OriginRules> {
    let mut rules = Vec::with_capacity(decls.len());
    for (i, d) in decls.iter().enumerate() {
        let rule = OriginRule::new(
            &d.queue,
            d.secret_header.as_deref(),
            d.secret.as_deref(),
            &d.hmac_keys,
        )
        .map_err(|e| anyhow::anyhow!("receiver_auth[{i}]: {e}"))?;
        rules.push(rule);
    }
    OriginRules::new(rules).map_err(|e| anyhow::anyhow!("receiver_auth: {e}"))
}

/// An API token declared in the config file (`stratus tokens create` prints one).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenDecl {
    /// A label for logs and errors [default: the first 12 hex digits of `sha256`].
    pub name: Option<String>,
    /// The project (tenant) the token may act in, or `"*"` for every project.
    pub project: String,
    /// `admin`, `enqueuer` or `viewer`.
    pub role: String,
    /// SHA-256 of the token, 64 hex digits (the token itself is never stored).
    pub sha256: String,
    /// Requests per second the token may make (bursts of twice that); 0 = unlimited
    /// [default: 1000].
    pub rate_limit: Option<f64>,
}

impl std::fmt::Debug for TokenDecl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenDecl")
            .field("name", &self.name)
            .field("project", &self.project)
            .field("role", &self.role)
            .field("sha256", &"<redacted>")
            .field("rate_limit", &self.rate_limit)
            .finish()
    }
}

/// The checked token specs of `[[tokens]]`; errors name the entry and the field.
pub fn token_specs(decls: &[TokenDecl]) -> anyhow::Result<Vec<TokenSpec>> {
    let mut out = Vec::with_capacity(decls.len());
    let mut names = std::collections::HashSet::new();
    for (i, d) in decls.iter().enumerate() {
        let at = |e: String| anyhow::anyhow!("tokens[{i}]: {e}");
        let sha256 = auth::parse_digest(&d.sha256).map_err(at)?;
        let name = match &d.name {
            Some(n) if n.trim().is_empty() => bail!("tokens[{i}]: name must not be empty"),
            Some(n) => n.clone(),
            None => d.sha256.trim()[..12].to_ascii_lowercase(),
        };
        if !names.insert(name.clone()) {
            bail!("tokens[{i}]: name \"{name}\" is used by another token");
        }
        let rate_limit = d.rate_limit.unwrap_or(auth::DEFAULT_RATE_LIMIT);
        if !rate_limit.is_finite() || rate_limit < 0.0 {
            bail!(
                "tokens[{i}]: rate_limit must be a number of requests per second ≥ 0 (0 = unlimited)"
            );
        }
        out.push(TokenSpec {
            name,
            scope: Scope::parse(&d.project).map_err(at)?,
            role: Role::parse(&d.role).map_err(at)?,
            sha256,
            rate_limit,
        });
    }
    Ok(out)
}

/// A queue declared in the config file. Unset fields keep their defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueDecl {
    /// Full name `projects/P/locations/L/queues/Q`.
    pub name: String,
    /// `RUNNING` (default), `PAUSED` or `DISABLED`.
    pub state: Option<String>,
    /// Rate limit in dispatches per second (≤ 500).
    pub max_dispatches_per_second: Option<f64>,
    /// Most dispatches in flight (≤ 5000).
    pub max_concurrent_dispatches: Option<i32>,
    /// Attempts before a task fails permanently (-1 = unlimited).
    pub max_attempts: Option<i32>,
    /// Retry window (`"0s"` = unlimited).
    pub max_retry_duration: Option<String>,
    /// Shortest retry delay.
    pub min_backoff: Option<String>,
    /// Longest retry delay.
    pub max_backoff: Option<String>,
    /// How many times the delay doubles before growing linearly.
    pub max_doublings: Option<i32>,
}

impl FileConfig {
    /// Reads and parses a TOML file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
    }
}

/// A duration setting, with the setting's name in the error.
pub fn duration(name: &str, s: &str) -> anyhow::Result<Micros> {
    match parse_human_duration(s) {
        Some(v) => Ok(v),
        None => bail!("{name}: \"{s}\" is not a duration (use e.g. 30s, 10m, 1h, 7d, 0)"),
    }
}

/// A PostgreSQL store URL, checked for its scheme.
pub fn postgres_url(s: &str) -> anyhow::Result<String> {
    let s = s.trim();
    if s.starts_with("postgres://") || s.starts_with("postgresql://") {
        Ok(s.to_string())
    } else {
        bail!(
            "store: expected a PostgreSQL URL like postgres://user:password@host:5432/db (the embedded SQLite store is the default; --data-dir sets its directory)"
        )
    }
}

/// The URL without its password, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}@{host}")
        }
        None => url.to_string(),
    }
}

/// A node ID: 1–64 of `[A-Za-z0-9._-]`.
pub fn node_id(s: &str) -> anyhow::Result<String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !ok {
        bail!("node_id: \"{s}\" must be 1 to 64 letters, digits, '.', '_' or '-'");
    }
    Ok(s.to_string())
}

/// The host name and a random suffix (so two processes on one host differ).
pub fn default_node_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(48)
        .collect();
    let host = if host.is_empty() { "node".into() } else { host };
    format!("{host}-{:08x}", rand_suffix())
}

fn rand_suffix() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish() as u32
}

/// Parses the listen address.
pub fn listen_addr(s: &str) -> anyhow::Result<SocketAddr> {
    s.parse()
        .with_context(|| format!("listen: \"{s}\" is not an address like 127.0.0.1:8123"))
}

/// The `[outbound]` table: extra denied ranges and per-project allow-lists (docs/outbound.md).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundConfig {
    /// IPs and CIDR ranges refused as targets, on top of the built-in link-local, metadata and
    /// unspecified ranges (e.g. `["127.0.0.0/8", "10.0.0.0/8"]`) [default: none].
    #[serde(default)]
    pub deny: Vec<String>,
    /// `[outbound.allow]`: project ID → the only targets its tasks may reach (host names,
    /// `*.suffix` patterns, IPs, CIDR ranges); the deny ranges still apply [default: none,
    /// every project may reach any target not denied].
    #[serde(default)]
    pub allow: std::collections::BTreeMap<String, Vec<String>>,
}

/// The outbound target policy of `[outbound]` (the built-in one when absent); errors name the
/// setting and the bad entry.
pub fn outbound_policy(
    c: Option<&OutboundConfig>,
) -> anyhow::Result<stratus_types::target::TargetPolicy> {
    let Some(c) = c else {
        return Ok(stratus_types::target::TargetPolicy::default());
    };
    Ok(stratus_types::target::TargetPolicy::new(&c.deny, &c.allow)?)
}
