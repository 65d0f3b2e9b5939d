//! The embedded SQLite implementation of the Stratus [`Store`](stratus_store::Store).
//!
//! One file (`stratus.db` in the data directory) in WAL mode with `synchronous=FULL`: a write is
//! acknowledged only once its transaction is on disk.
//!
//! # Parts
//!
//! - [`schema`]: connection pragmas and the migrations (tracked by `PRAGMA user_version`).
//! - [`writer`]: the one writer thread that owns the write connection and group-commits every
//!   write (concurrent calls share one transaction and one fsync).
//! - [`read`]: a small pool of read-only connections used from `spawn_blocking`.
//! - `queues`, `tasks`, `blobs`: the SQL of each table, as plain functions over a connection.
//! - `store`: the `Store` impl, which prepares work on the caller's task and hands the SQL to the
//!   writer or the read pool.
//!
//! # Why one writer thread
//!
//! SQLite allows one writer at a time, and every commit costs an fsync. Letting callers take turns
//! on a locked connection would serialise them *and* pay one fsync each. Instead every write is a
//! closure sent over a bounded channel to one thread, which takes whatever is queued (up to
//! [`SqliteOptions::max_batch`]), runs each closure inside its own `SAVEPOINT` (so one failing
//! item rolls back alone), commits once and only then answers every caller. Under load the batch
//! grows by itself while the previous commit is in flight, so no timer or linger is needed, and a
//! lone caller pays no added latency. The bounded channel is the back-pressure.
//!
//! Readers never wait for the writer: WAL gives each read transaction a consistent snapshot.
//!
//! # Schema
//!
//! ```sql
//! queues(id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, project TEXT, location TEXT,
//!        state INT, proto BLOB, purge_time INT NULL, deleted_at INT NULL)
//!   UNIQUE INDEX queues_name ON queues(name)
//!       -- one row per name: the live queue or its tombstone (deleted_at set), which blocks the
//!       -- name until the reuse window passes; re-creating after it replaces the row (new id).
//!   INDEX queues_location ON queues(project, location, name) WHERE deleted_at IS NULL
//!       -- ListQueues: live queues of a location in name order.
//!
//! tasks(id INTEGER PRIMARY KEY AUTOINCREMENT, queue_id INT, task_id TEXT, schedule_time INT,
//!       create_time INT, state INT, finished_at INT NULL, proto BLOB)
//!   UNIQUE INDEX tasks_name ON tasks(queue_id, task_id)
//!       -- GetTask, DeleteTask and deduplication; covers finished rows, which are the tombstones.
//!   INDEX tasks_due ON tasks(queue_id, schedule_time, task_id) WHERE state <= 1
//!       -- live tasks in dispatch order: ListTasks paging, PurgeQueue, the dispatcher's look-ahead.
//!   INDEX tasks_finished ON tasks(finished_at) WHERE finished_at IS NOT NULL
//!       -- cleanup of expired tombstones; live rows are not in it.
//!
//! iam_policies(queue_id INTEGER PRIMARY KEY, policy BLOB)
//! blobs(namespace TEXT, key TEXT, value BLOB, updated_at INT, PRIMARY KEY (namespace, key))
//!   INDEX blobs_updated ON blobs(updated_at)   -- cleanup of expired blobs.
//! ```
//!
//! Times are µs since the epoch. The `proto` columns hold the prost-encoded `Queue`/`Task`;
//! columns that queries need (times, state) are copied out of it, and on every read the column
//! values are laid back over the decoded message so the two can never disagree.
//!
//! Tasks use SQLite's integer row id as the table key, so a create appends to the table and
//! writes two small index entries (name and due order): three B-tree inserts. Both tables use
//! `AUTOINCREMENT`, so an id is never reused: a task row id names one incarnation of a task (a
//! task deleted and re-created under the same name gets a new one) and is safe for the
//! dispatcher to hold. It costs one extra (always the same) page per commit. No foreign keys: the
//! writer deletes dependent rows itself, in the same transaction.
//!
//! # What a create costs
//!
//! Every page a commit dirties is written whole to the WAL. The table row and the `tasks_due`
//! entry of a task due now land at the end of their B-trees, shared by the whole batch; the
//! `tasks_name` entry lands wherever its ID sorts. With random IDs (what Cloud Tasks generates)
//! that is one more page per create; ascending IDs measured about twice the creates per second
//! with 64 callers (`examples/store_bench.rs`, `--ids sequential`).

pub mod read;
pub mod schema;
pub mod writer;

mod blobs;
mod dispatch;
mod error;
#[cfg(test)]
mod plans;
mod queues;
mod store;
mod tasks;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use stratus_store::StoreError;

pub use writer::WriterStats;

/// Tuning knobs of a [`SqliteStore`].
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// Most write calls merged into one transaction (one fsync). Default 512.
    pub max_batch: usize,
    /// Write calls that may wait for the writer before callers are made to wait (back-pressure).
    /// Default 4096.
    pub queue_depth: usize,
    /// Read-only connections, i.e. reads that can run at once. Default 4.
    pub read_connections: usize,
    /// Page cache of the write connection in KiB; it keeps the hot index pages in memory.
    /// Default 65536 (64 MiB).
    pub writer_cache_kib: i64,
    /// Page size of a new database in bytes (an existing database keeps its own). Big pages
    /// mean shallow B-trees and cheap sequential appends; every page a commit touches is written
    /// whole to the WAL, though, so randomly placed index entries cost a full page each.
    /// Default 16384.
    pub page_size: i64,
    /// How long a connection waits for a lock held by another process before failing with
    /// `Unavailable`, in ms. Default 5000.
    pub busy_timeout_ms: u64,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            max_batch: 512,
            queue_depth: 4096,
            read_connections: 4,
            writer_cache_kib: 64 * 1024,
            page_size: schema::PAGE_SIZE,
            busy_timeout_ms: 5000,
        }
    }
}

/// A [`Store`](stratus_store::Store) in one SQLite database. Cheap to clone: clones share the
/// writer thread and the read pool; the database closes when the last clone is dropped.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    writer: writer::Writer,
    readers: Arc<read::ReadPool>,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating when missing) `dir/stratus.db`, applies pending migrations and starts the
    /// writer thread.
    pub fn open(dir: &Path, opts: SqliteOptions) -> Result<SqliteStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
        })?;
        let path = dir.join("stratus.db");
        let mut conn = schema::open_writer(&path, &opts)?;
        schema::migrate(&mut conn)?;
        let readers = Arc::new(read::ReadPool::open(&path, &opts)?);
        let writer = writer::Writer::start(conn, &opts)?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                writer,
                readers,
                path,
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Counters of the writer thread (commits and the write calls they carried), for tests,
    /// benchmarks and metrics.
    pub fn stats(&self) -> WriterStats {
        self.inner.writer.stats()
    }

    pub(crate) fn writer(&self) -> &writer::Writer {
        &self.inner.writer
    }

    pub(crate) fn readers(&self) -> &Arc<read::ReadPool> {
        &self.inner.readers
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}
