//! `stratus serve`: wiring, declared queues, the dispatcher, maintenance and ordered shutdown.
//!
//! Start order: open the store, apply declared queues, start the dispatcher (it reads every
//! queue and its due tasks from the store), then listen.
//!
//! Shutdown order: stop accepting connections and finish in-flight requests (graceful
//! shutdown of the plain or TLS listener), stop the dispatcher (no new attempts; attempts in flight get the grace period to
//! finish and record their outcomes), stop maintenance, then drop the service and store (the
//! store's writer thread commits what it holds before it exits).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use stratus_api::auth::Auth;
use stratus_api::{Service, ServiceConfig};
use stratus_dispatch::auth::{AuthConfig, DEFAULT_OAUTH_REFRESH, OAuthSource, TokenSource};
use stratus_dispatch::engine::{Engine, EngineConfig};
use stratus_dispatch::oidc::{self, SigningKey};
use stratus_dispatch::timer::SystemTimer;
use stratus_store::Store;
use stratus_store_postgres::cluster::{ClusterOptions, DEFAULT_LEASE_TIMEOUT, PgCluster};
use stratus_store_postgres::{PgOptions, PgStore};
use stratus_store_sqlite::{SqliteOptions, SqliteStore};
use stratus_types::QueuePath;
use stratus_types::proto::tasks::{
    Queue, RateLimits, RetryConfig, UpdateQueueRequest, queue::State,
};
use stratus_types::time::{Clock, SystemClock, micros_to_duration};

use crate::config::{self, FileConfig, QueueDecl};

/// Options of `stratus serve` (each also readable from a `STRATUS_*` variable). Not `Debug`:
/// it holds secrets (the store URL's password, the OAuth token).
#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on (REST and gRPC API, health, OIDC discovery).
    #[arg(long, env = "STRATUS_LISTEN")]
    listen: Option<String>,
    /// Directory of the embedded SQLite store [default: ./stratus-data].
    #[arg(long, env = "STRATUS_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// A PostgreSQL store instead of the embedded SQLite one (`postgres://user:password@host:port/db`):
    /// this process runs as one node of a cluster sharing that database.
    #[arg(long, env = "STRATUS_STORE", hide_env_values = true)]
    store: Option<String>,
    /// Schema of the PostgreSQL store's tables [default: stratus].
    #[arg(long, env = "STRATUS_PG_SCHEMA")]
    pg_schema: Option<String>,
    /// This node's ID in a PostgreSQL cluster, unique among its nodes [default: host name and a
    /// random suffix].
    #[arg(long, env = "STRATUS_NODE_ID")]
    node_id: Option<String>,
    /// How long a node's queue leases last unrenewed: the longest a dead node's queues wait for
    /// a new owner, plus a second [default: 8s].
    #[arg(long, env = "STRATUS_LEASE_TIMEOUT")]
    lease_timeout: Option<String>,
    /// Do not apply PostgreSQL migrations at start (run `stratus migrate` first).
    #[arg(long, env = "STRATUS_NO_MIGRATE")]
    no_migrate: bool,
    /// TOML config file (settings and declared queues).
    #[arg(long, env = "STRATUS_CONFIG")]
    config: Option<PathBuf>,
    /// How long a finished or deleted task blocks its name [default: 1h; 0 allowed].
    #[arg(long, env = "STRATUS_TASK_TOMBSTONE")]
    task_tombstone: Option<String>,
    /// How long a deleted queue blocks its name [default: 7d; 0 allowed].
    #[arg(long, env = "STRATUS_QUEUE_REUSE_BLOCK")]
    queue_reuse_block: Option<String>,
    /// Location IDs listed by ListLocations, comma-separated [default: local].
    #[arg(long, env = "STRATUS_LOCATIONS", value_delimiter = ',')]
    locations: Option<Vec<String>>,
    /// How long succeeded tasks are kept with their attempt history [default: 1h].
    #[arg(long, env = "STRATUS_RETAIN_SUCCEEDED")]
    retain_succeeded: Option<String>,
    /// How long permanently failed tasks are kept with their attempt history [default: 7d].
    #[arg(long, env = "STRATUS_RETAIN_FAILED")]
    retain_failed: Option<String>,
    /// Issuer (`iss`) of the OIDC tokens Stratus signs, and the base URL where it serves
    /// `/.well-known/openid-configuration` [default: http://<listen address>].
    #[arg(long, env = "STRATUS_OIDC_ISSUER")]
    oidc_issuer: Option<String>,
    /// A static OAuth access token sent as the bearer of OAuth tasks.
    #[arg(long, env = "STRATUS_OAUTH_TOKEN", hide_env_values = true)]
    oauth_token: Option<String>,
    /// A shell command printing an OAuth access token for OAuth tasks (rerun every 30 min).
    #[arg(long, env = "STRATUS_OAUTH_TOKEN_COMMAND")]
    oauth_token_command: Option<String>,
    /// How long shutdown waits for dispatches in flight [default: 10s].
    #[arg(long, env = "STRATUS_SHUTDOWN_GRACE")]
    shutdown_grace: Option<String>,
    /// PEM certificate chain (leaf first): serve the API port over TLS (with --tls-key).
    #[arg(long, env = "STRATUS_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of --tls-cert.
    #[arg(long, env = "STRATUS_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// PEM bundle of CAs: require API clients to present a certificate issued by one of them
    /// (mutual TLS; needs --tls-cert). Reloaded with the certificate on SIGHUP.
    #[arg(long, env = "STRATUS_TLS_CLIENT_CA", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// Serve the API only: store tasks but never dispatch them (RunTask is refused). For
    /// inspecting a data directory or testing the control plane.
    #[arg(long, env = "STRATUS_NO_DISPATCH")]
    no_dispatch: bool,
    /// Serve a non-loopback address without API tokens: anyone who can reach the port may
    /// manage every queue. Without tokens and without this flag, only loopback addresses may be
    /// listened on.
    #[arg(long, env = "STRATUS_INSECURE")]
    insecure: bool,
    /// Log lines on stderr as human-readable `text` or one JSON object per line (`json`)
    /// [default: text]. `STRATUS_LOG` sets the level filter.
    #[arg(long, env = "STRATUS_LOG_FORMAT", value_enum)]
    log_format: Option<crate::logging::LogFormat>,
}

/// Runs the server until SIGINT or SIGTERM.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let file = match &args.config {
        Some(p) => FileConfig::load(p)?,
        None => FileConfig::default(),
    };
    init_logging(args.log_format.or(file.log_format).unwrap_or_default());
    let listen = args
        .listen
        .or(file.listen.clone())
        .unwrap_or_else(|| "127.0.0.1:8123".into());
    let addr = config::listen_addr(&listen)?;
    let tokens = config::token_specs(&file.tokens)?;
    if tokens.is_empty() && !addr.ip().is_loopback() && !args.insecure {
        anyhow::bail!(
            "listen: {addr} is not a loopback address and no API tokens are configured, so anyone \
             who can reach it could manage every queue. Create a token with `stratus tokens \
             create --project <P> --role admin --config <file>` (docs/security.md), or pass \
             --insecure to serve without authentication"
        );
    }
    let data_dir = args
        .data_dir
        .or(file.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from("stratus-data"));
    // One policy for both the create-time checks and the dispatcher's connections.
    let targets = Arc::new(config::outbound_policy(file.outbound.as_ref())?);
    let mut cfg = ServiceConfig {
        targets: targets.clone(),
        ..ServiceConfig::default()
    };
    if let Some(s) = args.task_tombstone.or(file.task_tombstone.clone()) {
        cfg.windows.tombstone_ttl = config::duration("task_tombstone", &s)?;
    }
    if let Some(s) = args.queue_reuse_block.or(file.queue_reuse_block.clone()) {
        cfg.windows.queue_reuse_block = config::duration("queue_reuse_block", &s)?;
    }
    if let Some(l) = args.locations.or(file.locations.clone()) {
        cfg.locations = l;
    }
    if let Some(s) = args.retain_succeeded.or(file.retain_succeeded.clone()) {
        cfg.windows.retain_succeeded = config::duration("retain_succeeded", &s)?;
    }
    if let Some(s) = args.retain_failed.or(file.retain_failed.clone()) {
        cfg.windows.retain_failed = config::duration("retain_failed", &s)?;
    }
    let mut engine_cfg = EngineConfig {
        origin: Arc::new(config::receiver_auth_rules(&file.receiver_auth)?),
        targets,
        ..EngineConfig::default()
    };
    if let Some(s) = args.shutdown_grace.or(file.shutdown_grace.clone()) {
        let us = config::duration("shutdown_grace", &s)?;
        engine_cfg.shutdown_grace = Duration::from_micros(us.unsigned_abs());
    }
    let oauth = match (
        args.oauth_token.or(file.oauth_token.clone()),
        args.oauth_token_command
            .or(file.oauth_token_command.clone()),
    ) {
        (Some(_), Some(_)) => {
            anyhow::bail!("oauth_token and oauth_token_command: set one of them, not both")
        }
        (Some(t), None) => OAuthSource::Static(t),
        (None, Some(c)) => OAuthSource::Command {
            program: "sh".into(),
            args: vec!["-c".into(), c],
            refresh: DEFAULT_OAUTH_REFRESH,
        },
        (None, None) => OAuthSource::None,
    };
    let tls = match (
        args.tls_cert.or(file.tls_cert.clone()),
        args.tls_key.or(file.tls_key.clone()),
    ) {
        (Some(cert), Some(key)) => Some(Arc::new(crate::tls::TlsReloader::load(
            crate::tls::TlsFiles {
                cert,
                key,
                client_ca: args.tls_client_ca.or(file.tls_client_ca.clone()),
            },
        )?)),
        (None, None) if args.tls_client_ca.is_some() || file.tls_client_ca.is_some() => {
            anyhow::bail!("tls_client_ca: requires tls_cert and tls_key (mutual TLS is TLS)")
        }
        (None, None) => None,
        _ => anyhow::bail!("tls_cert and tls_key: set both or neither"),
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let issuer = args
        .oidc_issuer
        .or(file.oidc_issuer.clone())
        .unwrap_or_else(|| format!("{scheme}://{addr}"));

    let pg = match args.store.or(file.store.clone()) {
        Some(url) => Some(PgChoice {
            url: config::postgres_url(&url)?,
            schema: args
                .pg_schema
                .or(file.pg_schema.clone())
                .unwrap_or_else(|| "stratus".into()),
            node_id: match args.node_id.or(file.node_id.clone()) {
                Some(id) => config::node_id(&id)?,
                None => config::default_node_id(),
            },
            lease_timeout: match args.lease_timeout.or(file.lease_timeout.clone()) {
                Some(s) => {
                    let us = config::duration("lease_timeout", &s)?;
                    if us < 1_000_000 {
                        anyhow::bail!("lease_timeout: must be at least 1s");
                    }
                    Duration::from_micros(us.unsigned_abs())
                }
                None => DEFAULT_LEASE_TIMEOUT,
            },
            migrate: !args.no_migrate,
        }),
        None => None,
    };

    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (store, key, pg_store, where_) = match &pg {
        None => {
            let store = SqliteStore::open(&data_dir, SqliteOptions::default()).map_err(|e| {
                anyhow::anyhow!("cannot open the store in {}: {e}", data_dir.display())
            })?;
            let key_path = data_dir.join(OIDC_KEY_FILE);
            let key = SigningKey::load_or_create(&key_path)
                .map_err(|e| anyhow::anyhow!("OIDC signing key {}: {e}", key_path.display()))?;
            let data_abs = std::fs::canonicalize(&data_dir).unwrap_or(data_dir.clone());
            let store: Arc<dyn Store> = Arc::new(store);
            (
                store,
                key,
                None,
                format!("stratus data in {} (SQLite)", data_abs.display()),
            )
        }
        Some(pg) => {
            let opts = PgOptions {
                schema: pg.schema.clone(),
                node_id: pg.node_id.clone(),
                migrate: pg.migrate,
                ..PgOptions::default()
            };
            let store = PgStore::connect(&pg.url, opts).await.map_err(|e| {
                anyhow::anyhow!(
                    "cannot open the PostgreSQL store {}: {e}",
                    config::redact_url(&pg.url)
                )
            })?;
            let key = shared_signing_key(&store).await?;
            let where_ = format!(
                "stratus data in PostgreSQL {} schema {} (node {}, cluster mode)",
                config::redact_url(&pg.url),
                pg.schema,
                pg.node_id
            );
            (
                Arc::new(store.clone()) as Arc<dyn Store>,
                key,
                Some(store),
                where_,
            )
        }
    };
    let key = Arc::new(key);
    let pg_ready = pg_store.clone();
    let api_auth = Arc::new(if tokens.is_empty() {
        Auth::open(clock.clone())
    } else {
        Auth::with_tokens(tokens, clock.clone()).map_err(|e| anyhow::anyhow!(e))?
    });
    let plain = Service::new(store.clone(), clock.clone(), cfg.clone()).with_auth(api_auth.clone());
    apply_declared_queues(&plain, &file.queues).await?;

    let mut auth = AuthConfig::new(issuer.clone());
    auth.oauth = oauth;
    let tokens = Arc::new(TokenSource::new(auth, Some(key.clone()), clock.clone()));
    let (engine, service) = if args.no_dispatch {
        tracing::warn!("--no-dispatch: tasks are stored but never dispatched");
        (None, Arc::new(plain))
    } else {
        let engine = match (&pg, pg_store) {
            (Some(pg), Some(pg_store)) => {
                let cluster = PgCluster::start(
                    pg_store,
                    &pg.url,
                    ClusterOptions::with_lease_timeout(pg.lease_timeout),
                )
                .await
                .map_err(|e| anyhow::anyhow!("cannot join the cluster: {e}"))?;
                Engine::start_cluster(
                    store.clone(),
                    Arc::new(SystemTimer),
                    tokens,
                    engine_cfg,
                    cluster,
                )
            }
            _ => Engine::start(store.clone(), Arc::new(SystemTimer), tokens, engine_cfg).await,
        }
        .map_err(|e| anyhow::anyhow!("cannot start the dispatcher: {e}"))?;
        let service = Arc::new(plain.with_dispatch(Arc::new(engine.clone())));
        (Some(engine), service)
    };

    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    let grpc = if tls.is_some() {
        "gRPC over TLS"
    } else {
        "gRPC (h2c)"
    };
    println!(
        "stratus listening on {scheme}://{local} (Cloud Tasks v2: REST under /v2/ and {grpc} on the same port)"
    );
    println!("{where_}");
    if api_auth.required() {
        println!(
            "API authentication on: {} token(s) from the config file (SIGHUP reloads them)",
            api_auth.token_count()
        );
        if tls.is_none() && !local.ip().is_loopback() {
            tracing::warn!(
                %local,
                "api tokens travel in plain text: serve with --tls-cert/--tls-key on a shared network"
            );
        }
    } else if local.ip().is_loopback() {
        println!(
            "API authentication off: no tokens configured, so the API is open to every process on \
             this machine and listens on loopback only (docs/security.md)"
        );
        tracing::warn!("no api tokens configured: serving unauthenticated on loopback only");
    } else {
        println!(
            "API authentication off (--insecure): anyone who can reach {local} may manage every \
             queue"
        );
        tracing::warn!(%local, "--insecure: serving unauthenticated on a non-loopback address");
    }
    tracing::info!(%local, "serving");

    let maintenance = tokio::spawn(maintenance(store.clone(), clock, cfg));
    let sampler = tokio::spawn(sample_queue_counters());
    let app = stratus_api::rest::router(service.clone())
        .merge(oidc_routes(&key, &issuer))
        .merge(stratus_api::metrics::router(api_auth.clone()))
        .merge(crate::ui::routes())
        .merge(crate::health::routes(crate::health::Readiness {
            store: store.clone(),
            pg: pg_ready,
            engine: engine.clone(),
        }));
    let mut reloaders: Vec<crate::listener::Reloader> = Vec::new();
    if let Some(tls) = &tls {
        let tls = tls.clone();
        reloaders.push(Box::new(move || {
            let _ = tls.reload();
        }));
    }
    if let (true, Some(path)) = (api_auth.required(), args.config.clone()) {
        let auth = api_auth.clone();
        reloaders.push(Box::new(move || reload_tokens(&auth, &path)));
    }
    crate::listener::reload_on_sighup(reloaders)?;
    crate::listener::serve(listener, app, tls, shutdown_signal(), API_DRAIN_GRACE).await;
    let abandoned = match &engine {
        Some(e) => e.shutdown().await,
        None => 0,
    };
    if abandoned > 0 {
        tracing::warn!(
            attempts = abandoned,
            "dispatches still in flight at the end of the grace period; they run again after restart"
        );
    }
    maintenance.abort();
    sampler.abort();
    tracing::info!("stopped");
    Ok(())
}

/// Re-reads the config file's `[[tokens]]` (SIGHUP). A file that does not parse, or holds no
/// tokens, keeps the tokens in force.
fn reload_tokens(auth: &Auth, path: &std::path::Path) {
    let result = FileConfig::load(path)
        .and_then(|f| config::token_specs(&f.tokens))
        .and_then(|t| auth.replace(t).map_err(|e| anyhow::anyhow!(e)));
    match result {
        Ok(()) => tracing::info!(tokens = auth.token_count(), "api tokens reloaded"),
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "api tokens not reloaded; the previous tokens stay in force")
        }
    }
}

/// How long open connections get to finish their requests at shutdown.
const API_DRAIN_GRACE: Duration = Duration::from_secs(10);

/// The OIDC signing key's file in the data directory.
const OIDC_KEY_FILE: &str = "oidc-signing-key.pem";

/// The OIDC signing key's setting in a PostgreSQL store (one key for all nodes).
const OIDC_KEY_SETTING: &str = "oidc_signing_key";

/// The PostgreSQL store and cluster settings.
struct PgChoice {
    url: String,
    schema: String,
    node_id: String,
    lease_timeout: Duration,
    migrate: bool,
}

/// The OIDC signing key every node of a cluster shares: the stored one, or a new one stored
/// now (when nodes start together, the first stored wins and every node uses it).
async fn shared_signing_key(store: &PgStore) -> anyhow::Result<SigningKey> {
    let origin = std::path::Path::new("<postgres setting oidc_signing_key>");
    let stored = store
        .setting(OIDC_KEY_SETTING)
        .await
        .map_err(|e| anyhow::anyhow!("cannot read the OIDC signing key: {e}"))?;
    let pem = match stored {
        Some(pem) => pem,
        None => {
            let key = SigningKey::generate()
                .map_err(|e| anyhow::anyhow!("cannot generate the OIDC signing key: {e}"))?;
            let pem = key
                .to_pkcs8_pem()
                .map_err(|e| anyhow::anyhow!("OIDC signing key: {e}"))?;
            store
                .init_setting(OIDC_KEY_SETTING, &pem)
                .await
                .map_err(|e| anyhow::anyhow!("cannot store the OIDC signing key: {e}"))?
        }
    };
    SigningKey::from_pkcs8_pem(origin, &pem).map_err(|e| anyhow::anyhow!("OIDC signing key: {e}"))
}

/// Options of `stratus migrate` (not `Debug`: the store URL may hold a password).
#[derive(Args)]
pub struct MigrateArgs {
    /// The PostgreSQL store (`postgres://user:password@host:port/db`).
    #[arg(long, env = "STRATUS_STORE", hide_env_values = true)]
    store: String,
    /// Schema of the store's tables [default: stratus].
    #[arg(long, env = "STRATUS_PG_SCHEMA", default_value = "stratus")]
    pg_schema: String,
}

/// `stratus migrate`: applies pending PostgreSQL migrations and says what it did.
pub async fn migrate(args: MigrateArgs) -> anyhow::Result<()> {
    init_logging(crate::logging::LogFormat::Text);
    let url = config::postgres_url(&args.store)?;
    let (before, after) = stratus_store_postgres::migrate(&url, &args.pg_schema)
        .await
        .map_err(|e| anyhow::anyhow!("migrating {}: {e}", config::redact_url(&url)))?;
    if before == after {
        println!("schema {} is up to date (version {after})", args.pg_schema);
    } else {
        println!(
            "schema {}: migrated from version {before} to {after}",
            args.pg_schema
        );
    }
    Ok(())
}

/// `/.well-known/openid-configuration` and the JWKS, so receivers verify Stratus' OIDC tokens
/// with standard libraries.
fn oidc_routes(key: &SigningKey, issuer: &str) -> axum::Router {
    use axum::routing::get;
    let discovery = axum::Json(oidc::openid_configuration(issuer));
    let jwks = axum::Json(key.jwks());
    axum::Router::new()
        .route(
            oidc::OPENID_CONFIGURATION_PATH,
            get(move || {
                let d = discovery.clone();
                async move { d }
            }),
        )
        .route(
            oidc::JWKS_PATH,
            get(move || {
                let j = jwks.clone();
                async move { j }
            }),
        )
}

/// The log filter without `STRATUS_LOG`. The pool's own warning for every broken connection
/// it drops after a database restart is left out: the store reports the outage itself.
const DEFAULT_LOG: &str = "info,deadpool=error";

fn init_logging(format: crate::logging::LogFormat) {
    crate::logging::init(format, DEFAULT_LOG);
}

/// Removes expired tombstones and Operations once a minute.
async fn maintenance(store: Arc<dyn Store>, clock: Arc<dyn Clock>, cfg: ServiceConfig) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        match store
            .cleanup(clock.now(), cfg.windows, cfg.operation_ttl)
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::debug!(rows = n, "cleanup"),
            Err(e) => tracing::warn!(error = %e, "cleanup failed"),
        }
    }
}

/// Reads every queue's counters each few seconds for the one-minute rates of the queue
/// statistics and the dashboard (`stratus_metrics::window`).
async fn sample_queue_counters() {
    let mut tick = tokio::time::interval(stratus_metrics::window::SAMPLE_EVERY);
    loop {
        tick.tick().await;
        stratus_metrics::global().sample();
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}

fn opt_duration(
    name: &str,
    v: Option<&String>,
) -> anyhow::Result<Option<stratus_types::proto::wkt::Duration>> {
    v.map(|s| config::duration(name, s).map(micros_to_duration))
        .transpose()
}

/// Creates or updates each declared queue (UpdateQueue is an upsert, so this is idempotent).
async fn apply_declared_queues(service: &Service, decls: &[QueueDecl]) -> anyhow::Result<()> {
    for d in decls {
        let name = QueuePath::parse(&d.name)
            .map_err(|e| anyhow::anyhow!("queues: \"{}\": {}", d.name, e.message))?;
        let queue = Queue {
            name: name.to_string(),
            rate_limits: Some(RateLimits {
                max_dispatches_per_second: d.max_dispatches_per_second.unwrap_or(0.0),
                max_burst_size: 0,
                max_concurrent_dispatches: d.max_concurrent_dispatches.unwrap_or(0),
            }),
            retry_config: Some(RetryConfig {
                max_attempts: d.max_attempts.unwrap_or(0),
                max_retry_duration: opt_duration(
                    "max_retry_duration",
                    d.max_retry_duration.as_ref(),
                )?,
                min_backoff: opt_duration("min_backoff", d.min_backoff.as_ref())?,
                max_backoff: opt_duration("max_backoff", d.max_backoff.as_ref())?,
                max_doublings: d.max_doublings.unwrap_or(0),
            }),
            ..Default::default()
        };
        let mask = stratus_types::proto::wkt::FieldMask {
            paths: vec!["rate_limits".into(), "retry_config".into()],
        };
        service
            .update_queue(UpdateQueueRequest {
                queue: Some(queue),
                update_mask: Some(mask),
            })
            .await
            .map_err(|e| anyhow::anyhow!("queues: \"{}\": {}", d.name, e.message))?;
        if let Some(state) = &d.state {
            let st = State::from_str_name(&state.to_ascii_uppercase())
                .filter(|s| *s != State::Unspecified)
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "queues: \"{}\": state must be RUNNING, PAUSED or DISABLED",
                        d.name
                    )
                })?;
            service
                .store()
                .set_queue_state(&name, st as i32)
                .await
                .map_err(|e| anyhow::anyhow!("queues: \"{}\": {e}", d.name))?;
        }
        tracing::info!(queue = %name, "declared queue applied");
    }
    Ok(())
}
