//! SQL of the `blobs` table: small keyed values (CMEK configs, finished Operations).

use rusqlite::{Connection, OptionalExtension, params};
use stratus_store::StoreError;
use stratus_types::Micros;

use crate::error::SqlResult;

/// A blob by key.
pub(crate) fn get(
    conn: &Connection,
    namespace: &str,
    key: &str,
) -> Result<Option<Vec<u8>>, StoreError> {
    conn.prepare_cached("SELECT value FROM blobs WHERE namespace = ?1 AND key = ?2")
        .db()?
        .query_row(params![namespace, key], |r| r.get(0))
        .optional()
        .db()
}

/// Inserts or replaces a blob; `updated_at` restarts its time to live.
pub(crate) fn put(
    conn: &Connection,
    namespace: &str,
    key: &str,
    value: &[u8],
    now: Micros,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO blobs (namespace, key, value, updated_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
    )
    .db()?
    .execute(params![namespace, key, value, now])
    .db()?;
    Ok(())
}

/// Cleanup: blobs not written for `ttl` (through `blobs_updated`).
pub(crate) fn cleanup(conn: &Connection, now: Micros, ttl: Micros) -> Result<u64, StoreError> {
    let n = conn
        .prepare_cached("DELETE FROM blobs WHERE updated_at <= ?1")
        .db()?
        .execute([now.saturating_sub(ttl)])
        .db()?;
    Ok(n as u64)
}
