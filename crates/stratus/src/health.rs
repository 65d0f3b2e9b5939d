//! `/readyz`: whether this node should receive traffic (`/healthz` only says the process is up).
//!
//! Three checks, each bounded by [`CHECK_TIMEOUT`]:
//! - `store`: a cheap read ([`Store::ping`]) answers;
//! - `migrations`: the PostgreSQL schema is at the version this build needs (the SQLite store
//!   migrates when it opens, so it is always current);
//! - `dispatcher`: the dispatch engine runs. With `--no-dispatch` it reports `disabled` and does
//!   not fail readiness: that node is meant to serve the API only.
//!
//! 200 with `{"status":"ready","checks":{…}}` when every check passes, 503 with
//! `"status":"not ready"` and the failing check(s) otherwise. The body names only states and
//! schema versions, never a URL, host or error text (the reasons are logged at debug).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use stratus_dispatch::engine::Engine;
use stratus_store::Store;
use stratus_store_postgres::PgStore;

/// How long one check may take before it counts as failed. Probes calling `/readyz` should
/// allow a few seconds (Kubernetes' default probe timeout of one second is too tight).
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// What `/readyz` looks at.
#[derive(Clone)]
pub struct Readiness {
    /// The store every request uses.
    pub store: Arc<dyn Store>,
    /// The PostgreSQL store, whose schema version is checked (`None` for SQLite).
    pub pg: Option<PgStore>,
    /// The dispatch engine (`None` with `--no-dispatch`).
    pub engine: Option<Engine>,
}

impl Readiness {
    /// Runs the checks: whether all passed, and the body naming each.
    pub async fn check(&self) -> (bool, Value) {
        let store = match tokio::time::timeout(CHECK_TIMEOUT, self.store.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                tracing::debug!(check = "store", error = %e, "readiness check failed");
                Err("unreachable")
            }
            Err(_) => {
                tracing::debug!(check = "store", "readiness check timed out");
                Err("timeout")
            }
        };
        let (migrations, versions) = match &self.pg {
            None => (Ok(()), None),
            Some(pg) => {
                let want = stratus_store_postgres::schema::latest();
                match tokio::time::timeout(CHECK_TIMEOUT, pg.schema_version()).await {
                    Ok(Ok(v)) if v == want => (Ok(()), Some((v, want))),
                    Ok(Ok(v)) if v < want => (Err("behind"), Some((v, want))),
                    Ok(Ok(v)) => (Err("ahead"), Some((v, want))),
                    Ok(Err(e)) => {
                        tracing::debug!(check = "migrations", error = %e, "readiness check failed");
                        (Err("unknown"), None)
                    }
                    Err(_) => (Err("unknown"), None),
                }
            }
        };
        let dispatcher = match &self.engine {
            None => Ok("disabled"),
            Some(e) if e.is_running() => Ok("running"),
            Some(_) => Err("stopped"),
        };
        let ready = store.is_ok() && migrations.is_ok() && dispatcher.is_ok();
        let mut checks = serde_json::Map::new();
        checks.insert("store".into(), json!(store.err().unwrap_or("ok")));
        checks.insert("migrations".into(), json!(migrations.err().unwrap_or("ok")));
        checks.insert("dispatcher".into(), json!(dispatcher.unwrap_or_else(|e| e)));
        let mut body = json!({
            "status": if ready { "ready" } else { "not ready" },
            "checks": checks,
        });
        if let Some((have, want)) = versions {
            body["schema_version"] = json!({ "current": have, "required": want });
        }
        (ready, body)
    }
}

/// The `/readyz` route.
pub fn routes(readiness: Readiness) -> Router {
    let readiness = Arc::new(readiness);
    Router::new().route(
        "/readyz",
        get(move || {
            let r = readiness.clone();
            async move { respond(&r).await }
        }),
    )
}

async fn respond(r: &Readiness) -> Response {
    let (ready, body) = r.check().await;
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut resp = (code, format!("{body}\n")).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
