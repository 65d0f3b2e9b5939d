//! Server settings: flags, then `STRATUS_*` environment variables, then an optional TOML file,
//! then defaults. The file may also declare queues, applied idempotently at start.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;
use stratus_types::Micros;
use stratus_types::time::parse_human_duration;

/// The optional TOML file (`--config`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Address to listen on.
    pub listen: Option<String>,
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
    /// Queues to create or update at start.
    #[serde(default)]
    pub queues: Vec<QueueDecl>,
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
