//! SQL of the `blobs` table (small keyed values: CMEK configs, finished Operations) and the
//! `settings` table (cluster-wide settings that never expire).

use deadpool_postgres::GenericClient;
use stratus_store::StoreError;
use stratus_types::Micros;

use crate::error::PgResult;

/// A blob by key.
pub(crate) async fn get(
    c: &impl GenericClient,
    namespace: &str,
    key: &str,
) -> Result<Option<Vec<u8>>, StoreError> {
    let st = c
        .prepare_cached("SELECT value FROM blobs WHERE namespace = $1 AND key = $2")
        .await
        .db()?;
    match c.query_opt(&st, &[&namespace, &key]).await.db()? {
        Some(r) => Ok(Some(r.try_get(0).db()?)),
        None => Ok(None),
    }
}

/// Inserts or replaces a blob; `updated_at` restarts its time to live.
pub(crate) async fn put(
    c: &impl GenericClient,
    namespace: &str,
    key: &str,
    value: &[u8],
    now: Micros,
) -> Result<(), StoreError> {
    let st = c
        .prepare_cached(
            "INSERT INTO blobs (namespace, key, value, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (namespace, key)
             DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )
        .await
        .db()?;
    c.execute(&st, &[&namespace, &key, &value, &now])
        .await
        .db()?;
    Ok(())
}

/// Cleanup: blobs not written for `ttl` (through `blobs_updated`).
pub(crate) async fn cleanup(
    c: &impl GenericClient,
    now: Micros,
    ttl: Micros,
) -> Result<u64, StoreError> {
    c.execute(
        "DELETE FROM blobs WHERE updated_at <= $1",
        &[&now.saturating_sub(ttl)],
    )
    .await
    .db()
}

/// A setting by key.
pub(crate) async fn get_setting(
    c: &impl GenericClient,
    key: &str,
) -> Result<Option<String>, StoreError> {
    match c
        .query_opt("SELECT value FROM settings WHERE key = $1", &[&key])
        .await
        .db()?
    {
        Some(r) => Ok(Some(r.try_get(0).db()?)),
        None => Ok(None),
    }
}

/// Stores a setting unless present; returns the stored value either way.
pub(crate) async fn init_setting(
    c: &impl GenericClient,
    key: &str,
    value: &str,
) -> Result<String, StoreError> {
    c.execute(
        "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        &[&key, &value],
    )
    .await
    .db()?;
    get_setting(c, key).await?.ok_or_else(|| {
        StoreError::Internal(format!("setting {key} vanished right after it was stored"))
    })
}
