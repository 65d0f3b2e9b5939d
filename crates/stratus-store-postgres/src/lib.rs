//! The PostgreSQL implementation of the Stratus [`Store`](stratus_store::Store), and cluster
//! mode (several nodes on one database). Needs PostgreSQL 13 or newer (tested with 15).
//!
//! # Parts
//!
//! - [`PgStore`]: the store: a `deadpool-postgres` pool whose connections all have
//!   `search_path` set to the configured schema (so every statement is unqualified), plus the
//!   group-commit writer.
//! - [`schema`]: the migrations ([`migrate`]), tracked in `schema_migrations`.
//! - [`writer`]: group commit of the hot writes (`create_tasks`, `record_attempt`).
//! - `queues`, `tasks`, `dispatch`, `blobs`: the SQL of each table, as plain async functions
//!   over a connection or transaction; `store`: the `Store` impl, every call bounded by
//!   [`PgOptions::op_timeout`].
//! - [`cluster`]: node registry, queue leases with epoch fencing, LISTEN/NOTIFY;
//!   [`notify`]: the NOTIFY payloads, sent inside the transaction of each write.
//!
//! # Group commit
//!
//! Creates and attempt outcomes are the writes that come by the thousand per second. Each call
//! becomes a job on a bounded channel (the back-pressure), consumed by [`PgOptions::writers`]
//! Tokio tasks. A writer takes the first queued job plus whatever else is waiting (up to
//! [`PgOptions::max_batch`]) and runs the whole batch in **one transaction with set-based
//! statements**: a shared advisory lock per queue name, one lookup of the live queues, one
//! `INSERT … SELECT FROM unnest(…) ON CONFLICT (queue_id, task_id) DO NOTHING RETURNING` for
//! every task of every create, one `SELECT … FOR UPDATE` (in id order, so concurrent writers
//! never deadlock on each other) of the task rows that outcomes touch, one `UPDATE … FROM
//! unnest(…)` and one `INSERT INTO attempts … unnest(…)`, one `pg_notify` per batch, then a
//! single `COMMIT`. The statements are pipelined: a batch without name conflicts costs two
//! round trips whatever its size. Only after the commit is every caller answered. A failed
//! commit answers every job with its error; a lost deadlock or serialization race re-runs the
//! batch (at most three times); a batch failing for another reason is re-run job by job so one
//! bad job cannot fail the others. Under load batches grow by themselves while the previous
//! commit is in flight; a lone caller pays no added latency.
//!
//! Name conflicts are resolved after the insert, only for the names that conflicted: a live
//! row is `TaskExists`, a tombstone inside `tombstone_ttl` is `TaskRecentlyExisted`, an expired
//! tombstone is deleted (with its attempts) and the task inserted in a second round.
//!
//! Every other write (queue operations, deletes, purge, re-run, cleanup, blobs, IAM) is an
//! ordinary transaction on a pooled connection: PostgreSQL, unlike SQLite, lets writers run
//! side by side. Locks keep them consistent with the writer's batches: `create_queue`,
//! `update_queue`, `delete_queue` and `purge_queue` take an exclusive transaction-level
//! advisory lock on the queue's name, which create batches take shared, so a queue cannot be
//! deleted or purged under a create (an advisory lock needs no row lock, MultiXact or WAL
//! record, which a `FOR SHARE` of the queue row taken by concurrent batches would cost);
//! outcomes hold their task rows `FOR UPDATE`, and fenced ones their lease rows `FOR SHARE`.
//!
//! Two writers by default. On the 2-core development machine, with 64 concurrent callers and a
//! durable server (`fsync` on), one and two writers measured the same within the noise:
//! 29–34k vs 25–35k creates/s through the `Store` API (`tests/bench.rs`; SQLite's
//! `store_bench` gave 46–64k there), 13–17k vs 15–16k through REST (`bench_creates`, where
//! SQLite gave 14–21k, median ≈19k). Every transaction that sends a NOTIFY takes one
//! cluster-wide lock for its commit, so the commits of two notifying batches never overlap
//! (without NOTIFY two writers were ~15% faster); a second writer still keeps a batch going
//! while the other waits on a row lock. Four writers were slower (smaller batches, more
//! commits).
//!
//! # Schema
//!
//! ```sql
//! queues(id BIGINT IDENTITY PRIMARY KEY, name TEXT COLLATE "C", project TEXT, location TEXT,
//!        state INT, proto BYTEA, purge_time BIGINT NULL, deleted_at BIGINT NULL)
//!   UNIQUE INDEX queues_name ON queues(name)
//!       -- one row per name: the live queue or its tombstone (deleted_at set), which blocks the
//!       -- name until the reuse window passes; re-creating after it replaces the row (new id).
//!   INDEX queues_location ON queues(project, location, name) WHERE deleted_at IS NULL
//!       -- ListQueues: live queues of a location in name order.
//!
//! tasks(id BIGINT IDENTITY PRIMARY KEY, queue_id BIGINT, task_id TEXT COLLATE "C",
//!       schedule_time BIGINT, create_time BIGINT, state INT, finished_at BIGINT NULL,
//!       exec_count INT, prev_response INT NULL, attempt_seq BIGINT, proto BYTEA)
//!   WITH (fillfactor = 85, autovacuum_* tuned for churn)
//!       -- exec_count, prev_response: dispatch counters the Task proto has no field for;
//!       -- attempt_seq: attempts recorded for this row (the last seq), so an outcome numbers
//!       -- its attempt without a MAX(seq) query; a re-run keeps it, so numbering continues.
//!   PRIMARY KEY (id)
//!       -- attempt outcomes, live_tasks and re-runs address a task instance by row.
//!   UNIQUE INDEX tasks_name ON tasks(queue_id, task_id)
//!       -- GetTask, DeleteTask and deduplication; covers finished rows, which are the tombstones.
//!   INDEX tasks_due ON tasks(queue_id, schedule_time, task_id) WHERE state <= 1
//!       -- live tasks in dispatch order: ListTasks paging, PurgeQueue, the dispatcher's
//!       -- look-ahead scan. Partial, so finished rows (tombstones, retention) cost it nothing.
//!   INDEX tasks_finished ON tasks(state, finished_at) WHERE finished_at IS NOT NULL
//!       -- cleanup per state (each state has its own retention); live rows are not in it.
//!   INDEX tasks_failed ON tasks(queue_id, id) WHERE state = 3
//!       -- the failed-task (dead-letter) list; a task succeeding does not touch it.
//!
//! attempts(task_row BIGINT, seq BIGINT, dispatch_time BIGINT, response_time BIGINT,
//!          http_status INT NULL, error TEXT NULL, PRIMARY KEY (task_row, seq))
//!       -- the attempt history of a task instance, in order. No foreign key (its check would
//!       -- cost a lookup per attempt): every statement that deletes task rows deletes their
//!       -- attempts in the same statement (`WITH gone AS (DELETE … RETURNING id) …`).
//!
//! iam_policies(queue_id BIGINT PRIMARY KEY, policy BYTEA)
//! blobs(namespace TEXT, key TEXT, value BYTEA, updated_at BIGINT, PRIMARY KEY (namespace, key))
//!   INDEX blobs_updated ON blobs(updated_at)   -- cleanup of expired blobs.
//! settings(key TEXT PRIMARY KEY, value TEXT)   -- cluster-wide settings (the OIDC signing key).
//!
//! nodes(id TEXT PRIMARY KEY, started_at TIMESTAMPTZ, heartbeat_at TIMESTAMPTZ)
//!       -- cluster members and their heartbeats (see `cluster`).
//! leases(queue_id BIGINT PRIMARY KEY, node_id TEXT NULL, epoch BIGINT, expires_at TIMESTAMPTZ)
//!       -- one row per live queue, inserted in the transaction that makes the queue live and
//!       -- deleted with it: which node dispatches the queue, under which epoch (the fencing
//!       -- token attempt outcomes carry).
//! schema_migrations(version INT PRIMARY KEY, applied_at TIMESTAMPTZ)
//! ```
//!
//! Times are µs since the epoch (`BIGINT`), as in the SQLite store; the `proto` columns hold
//! the prost-encoded `Queue`/`Task`, and the columns queries need (times, state, counters) are
//! laid back over the decoded message on every read. Names and task IDs use the `"C"`
//! collation: byte order, like SQLite, whatever the database's locale, and cheaper to compare.
//!
//! Row ids come from identity columns (sequences), so an id is never reused: a task row names
//! one incarnation of a task, safe for the dispatcher (and other nodes) to hold.
//!
//! Updates of a task row change indexed columns (state, schedule_time, finished_at), so they are
//! not HOT updates. `fillfactor = 85` still leaves room on each page for the new versions of
//! its rows (every outcome rewrites one), so they rarely move to another page and page pruning
//! reuses the space of dead versions before vacuum comes; the autovacuum settings make vacuum
//! visit the churny table after 2 % of it changed instead of PostgreSQL's 20 %, and without
//! sleeping long between pages.
//!
//! # Errors and recovery
//!
//! Connection failures, pool timeouts, SQLSTATE classes 08 and 53, 57P01–57P03, 40001 and
//! 40P01, and a call outliving [`PgOptions::op_timeout`] are `StoreError::Unavailable`. The pool
//! checks each connection when it is handed out (`RecyclingMethod::Fast`) and replaces closed
//! ones, so after PostgreSQL restarts the store recovers by itself.

pub mod cluster;
pub mod notify;
pub mod schema;
pub mod writer;

mod blobs;
mod dispatch;
mod error;
mod queues;
mod store;
mod tasks;

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use stratus_store::StoreError;
use tokio_postgres::NoTls;

pub use schema::migrate;
pub use writer::WriterStats;

/// Settings of a [`PgStore`].
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Schema holding the store's tables (`[a-z_][a-z0-9_]{0,62}`). Default `stratus`.
    pub schema: String,
    /// This node's ID: the origin of its notifications and the owner of its leases (no
    /// whitespace). Default: `node-` and 8 random hex digits.
    pub node_id: String,
    /// Most pooled connections (the writers' included). Default 16.
    pub pool_size: usize,
    /// Group-commit transactions that may run at once. Default 2.
    pub writers: usize,
    /// Most jobs (create or outcome calls) in one group-commit transaction. Default 512.
    pub max_batch: usize,
    /// The longest any store call may take before it fails with `Unavailable`. Default 10 s.
    pub op_timeout: Duration,
    /// The longest opening a connection may take. Default 5 s.
    pub connect_timeout: Duration,
    /// Apply pending migrations at connect. When false, a schema that is behind is an error
    /// naming `stratus migrate`. Default true.
    pub migrate: bool,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            schema: "stratus".into(),
            node_id: format!("node-{:08x}", rand::random::<u32>()),
            pool_size: 16,
            writers: 2,
            max_batch: 512,
            op_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            migrate: true,
        }
    }
}

/// A [`Store`](stratus_store::Store) in a PostgreSQL schema. Cheap to clone: clones share the
/// pool and the writers, which stop when the last clone is dropped.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    opts: PgOptions,
    writer: writer::Writer,
    /// The NOTIFY channel of the schema.
    channel: String,
}

impl PgStore {
    /// Connects to the database at `url`, applies pending migrations (unless
    /// [`PgOptions::migrate`] is off; then the schema must be current) and starts the writers.
    pub async fn connect(url: &str, opts: PgOptions) -> Result<PgStore, StoreError> {
        schema::validate_schema(&opts.schema)?;
        if opts.node_id.is_empty() || opts.node_id.chars().any(char::is_whitespace) {
            return Err(StoreError::Internal(format!(
                "invalid node id {:?}: it must be non-empty without whitespace",
                opts.node_id
            )));
        }
        let mut cfg: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Internal(format!("invalid PostgreSQL URL: {e}")))?;
        let search_path = format!("-c search_path={}", opts.schema);
        let options = match cfg.get_options() {
            Some(o) if !o.trim().is_empty() => format!("{o} {search_path}"),
            _ => search_path,
        };
        cfg.options(&options);
        cfg.connect_timeout(opts.connect_timeout);
        if cfg.get_application_name().is_none() {
            cfg.application_name("stratus");
        }
        cfg.keepalives(true);
        cfg.keepalives_idle(Duration::from_secs(30));

        if opts.migrate {
            schema::migrate_with(url, &opts.schema, opts.connect_timeout).await?;
        }
        let writers = opts.writers.max(1);
        let manager = Manager::from_config(
            cfg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(opts.pool_size.max(writers + 1))
            .wait_timeout(Some(opts.op_timeout))
            .create_timeout(Some(opts.connect_timeout))
            .recycle_timeout(Some(opts.connect_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Internal(format!("cannot build the PostgreSQL pool: {e}")))?;
        let client = pool.get().await.map_err(error::pool)?;
        schema::check_version(&client, &opts.schema).await?;
        drop(client);
        let channel = notify::channel(&opts.schema);
        let writer = writer::Writer::start(writer::Shared {
            pool: pool.clone(),
            node_id: opts.node_id.clone(),
            channel: channel.clone(),
            op_timeout: opts.op_timeout,
            max_batch: opts.max_batch.max(1),
            writers,
        });
        Ok(PgStore {
            inner: Arc::new(Inner {
                pool,
                opts,
                writer,
                channel,
            }),
        })
    }

    /// The connection pool (every connection's `search_path` is the store's schema).
    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// The schema holding the store's tables.
    pub fn schema(&self) -> &str {
        &self.inner.opts.schema
    }

    /// This node's ID.
    pub fn node_id(&self) -> &str {
        &self.inner.opts.node_id
    }

    /// The settings in force.
    pub fn options(&self) -> &PgOptions {
        &self.inner.opts
    }

    /// Counters of the group-commit writers (commits and the jobs they carried).
    pub fn writer_stats(&self) -> WriterStats {
        self.inner.writer.stats()
    }

    /// A cluster-wide setting (`settings` table), `None` when never set.
    pub async fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        let key = key.to_string();
        self.bounded(async move {
            let c = self.client().await?;
            blobs::get_setting(&c, &key).await
        })
        .await
    }

    /// The schema version recorded in `schema_migrations` (0 when never migrated), bounded by
    /// [`PgOptions::op_timeout`]. Readiness compares it with [`schema::latest`].
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        self.bounded(async move {
            let c = self.client().await?;
            match c
                .query_one(
                    "SELECT COALESCE(max(version), 0)::bigint FROM schema_migrations",
                    &[],
                )
                .await
            {
                Ok(row) => Ok(row.get::<_, i64>(0)),
                // undefined_table: nothing was ever migrated.
                Err(e) if e.code().is_some_and(|c| c.code() == "42P01") => Ok(0),
                Err(e) => Err(error::pg(e)),
            }
        })
        .await
    }

    /// Stores a cluster-wide setting unless one is stored already, and returns the stored
    /// value (the first writer wins when nodes race).
    pub async fn init_setting(&self, key: &str, value: &str) -> Result<String, StoreError> {
        let (key, value) = (key.to_string(), value.to_string());
        self.bounded(async move {
            let c = self.client().await?;
            blobs::init_setting(&c, &key, &value).await
        })
        .await
    }

    /// A pooled connection.
    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.inner.pool.get().await.map_err(error::pool)
    }

    pub(crate) fn writer(&self) -> &writer::Writer {
        &self.inner.writer
    }

    pub(crate) fn channel(&self) -> &str {
        &self.inner.channel
    }

    /// Runs `f`, failing with `Unavailable` once [`PgOptions::op_timeout`] has passed.
    pub(crate) async fn bounded<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let limit = self.inner.opts.op_timeout;
        tokio::time::timeout(limit, f).await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable(format!(
                "PostgreSQL did not answer within {limit:?}"
            )))
        })
    }
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("schema", &self.inner.opts.schema)
            .field("node_id", &self.inner.opts.node_id)
            .finish_non_exhaustive()
    }
}
