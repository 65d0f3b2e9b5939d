//! SQLite errors classified once into [`StoreError`].

use rusqlite::ErrorCode;
use stratus_store::StoreError;
use stratus_types::proto::prost;

/// Busy, locked, I/O and disk-full failures may pass (another process let go of the lock, space
/// was freed): `Unavailable`, so the caller may retry. Anything else is a bug or corruption.
pub(crate) fn sql(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::SystemIoFailure
            | ErrorCode::DiskFull
            | ErrorCode::CannotOpen,
        ) => StoreError::Unavailable(format!("sqlite: {e}")),
        _ => StoreError::Internal(format!("sqlite: {e}")),
    }
}

/// A stored proto that does not decode: corruption.
pub(crate) fn decode(what: &str, e: prost::DecodeError) -> StoreError {
    StoreError::Internal(format!("corrupt {what} row: {e}"))
}

/// `?` on rusqlite results inside store code.
pub(crate) trait SqlResult<T> {
    /// Classifies the error with [`sql`].
    fn db(self) -> Result<T, StoreError>;
}

impl<T> SqlResult<T> for rusqlite::Result<T> {
    fn db(self) -> Result<T, StoreError> {
        self.map_err(sql)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies() {
        let busy = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(5), None);
        assert!(matches!(sql(busy), StoreError::Unavailable(_)));
        let full = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(13), None);
        assert!(matches!(sql(full), StoreError::Unavailable(_)));
        let constraint = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(19), None);
        assert!(matches!(sql(constraint), StoreError::Internal(_)));
        assert!(matches!(
            sql(rusqlite::Error::QueryReturnedNoRows),
            StoreError::Internal(_)
        ));
    }
}
