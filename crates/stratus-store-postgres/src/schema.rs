//! Migrations: SQL scripts applied in order, tracked in `schema_migrations`.
//!
//! [`migrate`] runs every pending script in one transaction that first takes a transaction-level
//! advisory lock derived from the schema name, so nodes starting at once serialise: the first
//! applies the scripts, the others then find nothing left to do. Never edit a released script:
//! append a new one.
//!
//! Every table and index is explained in the crate documentation.

use std::time::Duration;

use stratus_store::StoreError;
use tokio_postgres::NoTls;

use crate::error::{PgResult, pg};

/// The migrations, in order; index + 1 is the version recorded after each.
pub const MIGRATIONS: &[&str] = &[V1, V2];

/// The first schema.
const V1: &str = r#"
CREATE TABLE queues (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        TEXT COLLATE "C" NOT NULL,
    project     TEXT COLLATE "C" NOT NULL,
    location    TEXT COLLATE "C" NOT NULL,
    state       INT NOT NULL,
    proto       BYTEA NOT NULL,
    purge_time  BIGINT,
    deleted_at  BIGINT
);
CREATE UNIQUE INDEX queues_name ON queues (name);
CREATE INDEX queues_location ON queues (project, location, name) WHERE deleted_at IS NULL;

CREATE TABLE tasks (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue_id       BIGINT NOT NULL,
    task_id        TEXT COLLATE "C" NOT NULL,
    schedule_time  BIGINT NOT NULL,
    create_time    BIGINT NOT NULL,
    state          INT NOT NULL DEFAULT 0,
    finished_at    BIGINT,
    exec_count     INT NOT NULL DEFAULT 0,
    prev_response  INT,
    attempt_seq    BIGINT NOT NULL DEFAULT 0,
    proto          BYTEA NOT NULL
) WITH (
    fillfactor = 85,
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_insert_scale_factor = 0.05,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_cost_delay = 1
);
CREATE UNIQUE INDEX tasks_name ON tasks (queue_id, task_id);
CREATE INDEX tasks_due ON tasks (queue_id, schedule_time, task_id) WHERE state <= 1;
CREATE INDEX tasks_finished ON tasks (state, finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX tasks_failed ON tasks (queue_id, id) WHERE state = 3;

CREATE TABLE attempts (
    task_row       BIGINT NOT NULL,
    seq            BIGINT NOT NULL,
    dispatch_time  BIGINT NOT NULL,
    response_time  BIGINT NOT NULL,
    http_status    INT,
    error          TEXT,
    PRIMARY KEY (task_row, seq)
) WITH (
    autovacuum_vacuum_scale_factor = 0.05,
    autovacuum_vacuum_insert_scale_factor = 0.1
);

CREATE TABLE iam_policies (
    queue_id  BIGINT PRIMARY KEY,
    policy    BYTEA NOT NULL
);

CREATE TABLE blobs (
    namespace   TEXT NOT NULL,
    key         TEXT NOT NULL,
    value       BYTEA NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (namespace, key)
);
CREATE INDEX blobs_updated ON blobs (updated_at);

CREATE TABLE settings (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);

CREATE TABLE nodes (
    id            TEXT PRIMARY KEY,
    started_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    heartbeat_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE leases (
    queue_id    BIGINT PRIMARY KEY,
    node_id     TEXT,
    epoch       BIGINT NOT NULL DEFAULT 0,
    expires_at  TIMESTAMPTZ NOT NULL DEFAULT '-infinity'
);
"#;

/// Each node's activity over the last minute (per queue counts, for the queue statistics),
/// published by its lease manager every few seconds; gone with the node's row.
const V2: &str = "
ALTER TABLE nodes ADD COLUMN stats TEXT;
ALTER TABLE nodes ADD COLUMN stats_at TIMESTAMPTZ;
";

/// The newest version this build knows.
pub fn latest() -> i64 {
    MIGRATIONS.len() as i64
}

/// Checks a schema name: `[a-z_][a-z0-9_]{0,62}` (so it never needs quoting rules beyond
/// double quotes, and fits PostgreSQL's 63-byte identifiers).
pub fn validate_schema(schema: &str) -> Result<(), StoreError> {
    let mut chars = schema.chars();
    let ok = matches!(chars.next(), Some('a'..='z' | '_'))
        && schema.len() <= 63
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::Internal(format!(
            "invalid PostgreSQL schema name {schema:?}: use [a-z_][a-z0-9_]{{0,62}}"
        )))
    }
}

/// Applies pending migrations to `schema` (created when missing) of the database at `url`.
/// Idempotent, and safe when several nodes start at once. Returns the versions before and after.
pub async fn migrate(url: &str, schema: &str) -> Result<(i64, i64), StoreError> {
    migrate_with(url, schema, Duration::from_secs(10)).await
}

/// [`migrate`] with a connect timeout (used unless the URL sets one).
pub(crate) async fn migrate_with(
    url: &str,
    schema: &str,
    connect_timeout: Duration,
) -> Result<(i64, i64), StoreError> {
    validate_schema(schema)?;
    let mut cfg: tokio_postgres::Config = url
        .parse()
        .map_err(|e| StoreError::Internal(format!("invalid PostgreSQL URL: {e}")))?;
    if cfg.get_connect_timeout().is_none() {
        cfg.connect_timeout(connect_timeout);
    }
    let (mut client, conn) = cfg.connect(NoTls).await.map_err(pg)?;
    let conn = tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "migration connection ended");
        }
    });
    let out = apply(&mut client, schema).await;
    drop(client);
    let _ = conn.await;
    out
}

async fn apply(
    client: &mut tokio_postgres::Client,
    schema: &str,
) -> Result<(i64, i64), StoreError> {
    let tx = client.transaction().await.db()?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        &[&format!("stratus migrate {schema}")],
    )
    .await
    .db()?;
    // CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when the schema exists:
    // look first, so a role that was given an existing schema can migrate it.
    let exists = tx
        .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&schema])
        .await
        .db()?
        .is_some();
    if !exists {
        tx.batch_execute(&format!("CREATE SCHEMA \"{schema}\""))
            .await
            .db()?;
    }
    tx.batch_execute(&format!(
        "SET LOCAL search_path = \"{schema}\";
         CREATE TABLE IF NOT EXISTS schema_migrations (
             version     INT PRIMARY KEY,
             applied_at  TIMESTAMPTZ NOT NULL DEFAULT now()
         );"
    ))
    .await
    .db()?;
    let before: i64 = tx
        .query_one(
            "SELECT COALESCE(max(version), 0)::bigint FROM schema_migrations",
            &[],
        )
        .await
        .db()?
        .get(0);
    let known = latest();
    if before > known {
        return Err(StoreError::Internal(format!(
            "schema {schema} is at version {before}, newer than this build knows ({known}): \
             upgrade Stratus"
        )));
    }
    for (i, script) in MIGRATIONS.iter().enumerate().skip(before as usize) {
        let version = i as i32 + 1;
        tx.batch_execute(script).await.db()?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[&version],
        )
        .await
        .db()?;
    }
    tx.commit().await.db()?;
    if before < known {
        tracing::info!(%schema, from = before, to = known, "postgres schema migrated");
    }
    Ok((before, known))
}

/// Checks that the schema a pooled connection sees is exactly at [`latest`] (used when
/// migrations are not applied at connect).
pub(crate) async fn check_version(
    client: &deadpool_postgres::Object,
    schema: &str,
) -> Result<(), StoreError> {
    let version = match client
        .query_one(
            "SELECT COALESCE(max(version), 0)::bigint FROM schema_migrations",
            &[],
        )
        .await
    {
        Ok(row) => row.get::<_, i64>(0),
        // undefined_table: nothing was ever migrated.
        Err(e) if e.code().is_some_and(|c| c.code() == "42P01") => 0,
        Err(e) => return Err(pg(e)),
    };
    let known = latest();
    if version < known {
        return Err(StoreError::Internal(format!(
            "schema {schema} is at version {version}, this build needs {known}: \
             run `stratus migrate` (or start with migrations enabled)"
        )));
    }
    if version > known {
        return Err(StoreError::Internal(format!(
            "schema {schema} is at version {version}, newer than this build knows ({known}): \
             upgrade Stratus"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names() {
        for ok in ["stratus", "_x", "a1_b", &"a".repeat(63)] {
            assert!(validate_schema(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1a", "Stratus", "a-b", "a b", "a\"", &"a".repeat(64)] {
            assert!(validate_schema(bad).is_err(), "{bad}");
        }
    }
}
