//! The read pool: a few read-only connections, used from `spawn_blocking`.
//!
//! In WAL mode readers do not block the writer nor each other, so reads bypass the writer
//! thread entirely. The semaphore bounds how many reads run (one per connection); the mutex
//! only guards the idle list for a push or a pop and is never held while SQL runs or across an
//! `.await`, so a plain `std::sync::Mutex` fits.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, Transaction, TransactionBehavior};
use stratus_store::StoreError;
use tokio::sync::Semaphore;

use crate::SqliteOptions;
use crate::error::SqlResult;

/// Read-only connections shared by all clones of a store.
pub struct ReadPool {
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

impl ReadPool {
    /// Opens `opts.read_connections` (at least one) read-only connections to `path`.
    pub fn open(path: &Path, opts: &SqliteOptions) -> Result<ReadPool, StoreError> {
        let n = opts.read_connections.max(1);
        let conns = (0..n)
            .map(|_| crate::schema::open_reader(path, opts))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ReadPool {
            idle: Mutex::new(conns),
            permits: Arc::new(Semaphore::new(n)),
        })
    }

    /// Runs `f` on a pooled connection inside one read transaction (one consistent snapshot
    /// for all of `f`'s statements), on Tokio's blocking pool.
    pub async fn read<R, F>(self: &Arc<Self>, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<R, StoreError> + Send + 'static,
    {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Unavailable("the read pool is closed".into()))?;
        let pool = self.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut lease = Lease {
                conn: pool.take(),
                pool: &pool,
            };
            let conn = lease
                .conn
                .as_mut()
                .ok_or_else(|| StoreError::Internal("read pool is empty".into()))?;
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Deferred)
                .db()?;
            f(&tx)
            // `tx` rolls back (ends the read snapshot) on drop; `lease` returns the connection.
        })
        .await
        .map_err(|e| StoreError::Internal(format!("read task failed: {e}")))?
    }

    fn take(&self) -> Option<Connection> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }

    fn put(&self, conn: Connection) {
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(conn);
    }
}

/// Gives the connection back to the pool even when the read closure panics.
struct Lease<'a> {
    conn: Option<Connection>,
    pool: &'a ReadPool,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            self.pool.put(c);
        }
    }
}
