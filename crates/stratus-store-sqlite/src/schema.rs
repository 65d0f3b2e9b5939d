//! Connection setup and migrations.
//!
//! Pragmas, and why:
//! - `page_size = 16384` before the first table exists (it cannot change later in WAL mode):
//!   bigger pages mean fewer B-tree levels and fewer, larger writes per commit.
//! - `journal_mode = WAL`: readers keep reading while the writer commits, and a commit is one
//!   append to the log plus one fsync.
//! - `synchronous = FULL`: the WAL is fsynced at every commit, so an acknowledged write survives
//!   power loss (NORMAL would only survive a process crash).
//! - `temp_store = MEMORY`: the writer's per-item savepoints keep their undo pages (the
//!   sub-journal) in memory instead of a temporary file.
//! - `busy_timeout`: another process holding a lock makes us wait, not fail at once.
//! - Checkpoints stay automatic (every ~1000 WAL pages, inside the writer's commit). A separate
//!   thread running `PASSIVE` checkpoints was measured at half the create rate: under a steady
//!   stream of commits a passive checkpoint never catches up, so the WAL is never restarted and
//!   grows, and every commit pays for extending the file.
//!
//! Migrations are SQL scripts applied in order; `PRAGMA user_version` records how many ran, so
//! opening is idempotent. Never edit a released script: append a new one.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use stratus_store::StoreError;

use crate::SqliteOptions;
use crate::error::SqlResult;

/// Default page size of a new database.
pub const PAGE_SIZE: i64 = 16 * 1024;

/// The migrations, in order; index + 1 is the `user_version` after each.
pub const MIGRATIONS: &[&str] = &[V1, V2];

/// The first schema. Every index is explained in the crate documentation.
const V1: &str = "
CREATE TABLE queues (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL,
    project     TEXT NOT NULL,
    location    TEXT NOT NULL,
    state       INTEGER NOT NULL,
    proto       BLOB NOT NULL,
    purge_time  INTEGER,
    deleted_at  INTEGER
);
-- One row per name: the live queue or its tombstone.
CREATE UNIQUE INDEX queues_name ON queues (name);
-- ListQueues: live queues of a location in name order.
CREATE INDEX queues_location ON queues (project, location, name) WHERE deleted_at IS NULL;

CREATE TABLE tasks (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    queue_id       INTEGER NOT NULL,
    task_id        TEXT NOT NULL,
    schedule_time  INTEGER NOT NULL,
    create_time    INTEGER NOT NULL,
    state          INTEGER NOT NULL,
    finished_at    INTEGER,
    proto          BLOB NOT NULL
);
-- Name lookups and deduplication, tombstones (finished rows) included.
CREATE UNIQUE INDEX tasks_name ON tasks (queue_id, task_id);
-- Live tasks in dispatch order: ListTasks, PurgeQueue, the dispatcher's look-ahead scan.
CREATE INDEX tasks_due ON tasks (queue_id, schedule_time, task_id) WHERE state <= 1;
-- Cleanup of expired tombstones.
CREATE INDEX tasks_finished ON tasks (finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE iam_policies (
    queue_id  INTEGER PRIMARY KEY,
    policy    BLOB NOT NULL
);

CREATE TABLE blobs (
    namespace   TEXT NOT NULL,
    key         TEXT NOT NULL,
    value       BLOB NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (namespace, key)
);
-- Cleanup of expired blobs.
CREATE INDEX blobs_updated ON blobs (updated_at);
";

/// Dispatch: counters the Task proto has no field for, the attempt history, and indexes for
/// retention (finished rows kept per state) and the failed-task list.
const V2: &str = "
ALTER TABLE tasks ADD COLUMN exec_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN prev_response INTEGER;

CREATE TABLE attempts (
    task_row       INTEGER NOT NULL,
    seq            INTEGER NOT NULL,
    dispatch_time  INTEGER NOT NULL,
    response_time  INTEGER NOT NULL,
    http_status    INTEGER,
    error          TEXT,
    PRIMARY KEY (task_row, seq)
) WITHOUT ROWID;
-- A task row's attempts go with it (cleanup, queue delete, tombstone replacement).
CREATE TRIGGER tasks_attempts_gone AFTER DELETE ON tasks
BEGIN
    DELETE FROM attempts WHERE task_row = old.id;
END;

-- Cleanup per state: each state has its own retention.
DROP INDEX tasks_finished;
CREATE INDEX tasks_finished ON tasks (state, finished_at) WHERE finished_at IS NOT NULL;
-- Failed tasks of a queue: the failed-task list. Only FAILED rows, so the hot path (a task
-- succeeding) does not touch it.
CREATE INDEX tasks_failed ON tasks (queue_id, id) WHERE state = 3;
";

/// Opens the read-write connection with the pragmas above.
pub fn open_writer(path: &Path, opts: &SqliteOptions) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).db()?;
    conn.busy_timeout(Duration::from_millis(opts.busy_timeout_ms))
        .db()?;
    // Only takes effect while the database is still empty, which is exactly when it matters.
    conn.pragma_update(None, "page_size", opts.page_size).db()?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
        .db()?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Internal(format!(
            "sqlite refused WAL mode (got {mode})"
        )));
    }
    conn.pragma_update(None, "synchronous", "FULL").db()?;
    conn.pragma_update(None, "temp_store", "MEMORY").db()?;
    conn.pragma_update(None, "cache_size", -opts.writer_cache_kib)
        .db()?;
    // Truncate the WAL file back to 64 MiB after checkpoints, so one burst does not keep a huge
    // log file around forever.
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)
        .db()?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Opens a read-only connection (the database must exist).
pub fn open_reader(path: &Path, opts: &SqliteOptions) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).db()?;
    conn.busy_timeout(Duration::from_millis(opts.busy_timeout_ms))
        .db()?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Applies the migrations not yet recorded in `user_version`, each in its own transaction.
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .db()?;
    let known = MIGRATIONS.len();
    let done = usize::try_from(version).unwrap_or(usize::MAX);
    if done > known {
        return Err(StoreError::Internal(format!(
            "database schema version {version} is newer than this build knows ({known})"
        )));
    }
    for (i, script) in MIGRATIONS.iter().enumerate().skip(done) {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .db()?;
        tx.execute_batch(script).db()?;
        tx.pragma_update(None, "user_version", i + 1).db()?;
        tx.commit().db()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_idempotently_with_big_pages() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stratus.db");
        for _ in 0..2 {
            let mut conn = open_writer(&path, &SqliteOptions::default()).unwrap();
            migrate(&mut conn).unwrap();
            let v: i64 = conn
                .pragma_query_value(None, "user_version", |r| r.get(0))
                .unwrap();
            assert_eq!(v, MIGRATIONS.len() as i64);
            let page: i64 = conn
                .pragma_query_value(None, "page_size", |r| r.get(0))
                .unwrap();
            assert_eq!(page, PAGE_SIZE);
            let sync: i64 = conn
                .pragma_query_value(None, "synchronous", |r| r.get(0))
                .unwrap();
            assert_eq!(sync, 2, "synchronous must be FULL");
        }
        let reader = open_reader(&path, &SqliteOptions::default()).unwrap();
        let mode: String = reader
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stratus.db");
        let mut conn = open_writer(&path, &SqliteOptions::default()).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        assert!(matches!(migrate(&mut conn), Err(StoreError::Internal(_))));
    }
}
