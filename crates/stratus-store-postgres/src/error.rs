//! PostgreSQL and pool errors classified once into [`StoreError`].
//!
//! `Unavailable` means "try again later": the server is unreachable, restarting, overloaded or
//! out of resources, a transaction lost a deadlock or serialization race, or the call ran out of
//! time. Everything else (a constraint we did not expect, a type mismatch, a corrupt row) is a
//! bug or corruption: `Internal`.

use stratus_store::StoreError;
use stratus_types::proto::prost;

/// SQLSTATEs outside classes 08 and 53 that pass by themselves.
const TRANSIENT: &[&str] = &[
    "40001", // serialization_failure
    "40P01", // deadlock_detected
    "55P03", // lock_not_available
    "57014", // query_canceled (statement_timeout)
    "57P01", // admin_shutdown
    "57P02", // crash_shutdown
    "57P03", // cannot_connect_now (starting up, shutting down)
    "57P04", // database_dropped
];

/// Whether a SQLSTATE names a failure worth retrying.
pub(crate) fn transient_code(code: &str) -> bool {
    code.starts_with("08") || code.starts_with("53") || TRANSIENT.contains(&code)
}

/// Classifies a `tokio_postgres` error.
pub(crate) fn pg(e: tokio_postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        let msg = format!("postgres: {} (SQLSTATE {code})", db.message());
        return if transient_code(code) {
            StoreError::Unavailable(msg)
        } else {
            StoreError::Internal(msg)
        };
    }
    let source = std::error::Error::source(&e);
    let io = source.is_some_and(|s| s.is::<std::io::Error>());
    let mut text = e.to_string();
    if let Some(s) = source {
        text = format!("{text}: {s}");
    }
    if e.is_closed()
        || io
        || text.starts_with("error connecting")
        || text.starts_with("timeout")
        || text.starts_with("error communicating")
    {
        StoreError::Unavailable(format!("postgres connection: {text}"))
    } else {
        StoreError::Internal(format!("postgres: {text}"))
    }
}

/// Whether a `tokio_postgres` error is a lost deadlock or serialization race: the transaction
/// can simply run again.
pub(crate) fn is_race(e: &tokio_postgres::Error) -> bool {
    e.code()
        .is_some_and(|c| matches!(c.code(), "40001" | "40P01"))
}

/// Classifies a failure to get a pooled connection: always `Unavailable`.
pub(crate) fn pool(e: deadpool_postgres::PoolError) -> StoreError {
    use deadpool_postgres::PoolError;
    match e {
        PoolError::Backend(e) => match pg(e) {
            StoreError::Internal(m) => StoreError::Unavailable(m),
            other => other,
        },
        PoolError::Timeout(t) => StoreError::Unavailable(format!(
            "no PostgreSQL connection available ({t:?} timeout)"
        )),
        PoolError::Closed => StoreError::Unavailable("the PostgreSQL pool is closed".into()),
        other => StoreError::Unavailable(format!("no PostgreSQL connection: {other}")),
    }
}

/// A stored proto that does not decode: corruption.
pub(crate) fn decode(what: &str, e: prost::DecodeError) -> StoreError {
    StoreError::Internal(format!("corrupt {what} row: {e}"))
}

/// `?` on `tokio_postgres` results inside store code.
pub(crate) trait PgResult<T> {
    /// Classifies the error with [`pg`].
    fn db(self) -> Result<T, StoreError>;
}

impl<T> PgResult<T> for Result<T, tokio_postgres::Error> {
    fn db(self) -> Result<T, StoreError> {
        self.map_err(pg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_sqlstates() {
        for c in [
            "08006", "08001", "53300", "53100", "57P01", "57P03", "40001", "40P01",
        ] {
            assert!(transient_code(c), "{c}");
        }
        for c in ["23505", "42P01", "22021", "XX000"] {
            assert!(!transient_code(c), "{c}");
        }
    }
}
