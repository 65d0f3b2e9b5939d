//! The writer thread: every write of the store, group-committed.
//!
//! Callers submit a closure over the transaction ([`Writer::write`]); it travels, type-erased
//! as a [`Job`], through a bounded channel to one OS thread that owns the read-write connection.
//! The thread takes the first queued job plus whatever else is already waiting (up to
//! `max_batch`), and for the batch:
//!
//! 1. `BEGIN IMMEDIATE`;
//! 2. per job: `SAVEPOINT item`, run the closure, then `RELEASE` it on success or
//!    `ROLLBACK TO` + `RELEASE` on error (or panic), so a failing job leaves no trace while the
//!    others keep their writes;
//! 3. `COMMIT` (one fsync for the whole batch);
//! 4. only then answer every job — with its own result, or with the commit's error when the
//!    commit failed (nothing of the batch is durable then).
//!
//! Why a thread and not a task: SQLite calls block (fsync), and a `rusqlite::Connection` is not
//! `Sync`; a dedicated thread owns it outright, so no lock guards it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use rusqlite::{Connection, Transaction, TransactionBehavior};
use stratus_store::StoreError;
use tokio::sync::{mpsc, oneshot};

use crate::SqliteOptions;
use crate::error::{SqlResult, sql};

/// Counters of the writer thread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Transactions committed.
    pub commits: u64,
    /// Write calls carried by those commits (`items / commits` is the mean batch size).
    pub items: u64,
}

#[derive(Default)]
struct Counters {
    commits: AtomicU64,
    items: AtomicU64,
}

/// One queued write, type-erased so jobs of any result type share the channel.
pub trait Job: Send {
    /// Runs the closure inside the open transaction (and the job's savepoint). Returns whether
    /// it succeeded, i.e. whether its writes should be kept.
    fn run(&mut self, tx: &Transaction<'_>) -> bool;

    /// Answers the caller once the batch is settled: `commit` is the batch's outcome.
    fn finish(self: Box<Self>, commit: Result<(), StoreError>);

    /// Whether the job runs inside its own savepoint (see [`Writer::write_whole`]).
    fn isolated(&self) -> bool;
}

struct Pending<R, F> {
    isolated: bool,
    f: Option<F>,
    out: Option<Result<R, StoreError>>,
    reply: oneshot::Sender<Result<R, StoreError>>,
}

impl<R, F> Job for Pending<R, F>
where
    R: Send,
    F: FnOnce(&Transaction<'_>) -> Result<R, StoreError> + Send,
{
    fn run(&mut self, tx: &Transaction<'_>) -> bool {
        let Some(f) = self.f.take() else {
            return false;
        };
        // A panicking closure must not take the writer thread (and every later write) down.
        let out = catch_unwind(AssertUnwindSafe(|| f(tx)))
            .unwrap_or_else(|_| Err(StoreError::Internal("write closure panicked".into())));
        let ok = out.is_ok();
        self.out = Some(out);
        ok
    }

    fn finish(self: Box<Self>, commit: Result<(), StoreError>) {
        let out = match (commit, self.out) {
            (Ok(()), Some(out)) => out,
            (Ok(()), None) => Err(StoreError::Internal("write job never ran".into())),
            // A job that failed keeps its own error, even when the batch failed too.
            (Err(_), Some(Err(own))) => Err(own),
            (Err(e), _) => Err(e),
        };
        // The caller may have gone away (request cancelled); its write stands regardless.
        let _ = self.reply.send(out);
    }

    fn isolated(&self) -> bool {
        self.isolated
    }
}

/// The handle to the writer thread. Dropping it closes the channel, lets the thread finish the
/// queued jobs and joins it (which closes the write connection).
pub struct Writer {
    tx: Option<mpsc::Sender<Box<dyn Job>>>,
    thread: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
}

impl Writer {
    /// Starts the writer thread on `conn`.
    pub fn start(conn: Connection, opts: &SqliteOptions) -> Result<Writer, StoreError> {
        let (tx, rx) = mpsc::channel(opts.queue_depth.max(1));
        let counters = Arc::new(Counters::default());
        let max_batch = opts.max_batch.max(1);
        let c = counters.clone();
        let thread = std::thread::Builder::new()
            .name("stratus-sqlite-writer".into())
            .spawn(move || run(conn, rx, max_batch, &c))
            .map_err(|e| StoreError::Internal(format!("cannot start the writer thread: {e}")))?;
        Ok(Writer {
            tx: Some(tx),
            thread: Some(thread),
            counters,
        })
    }

    /// Runs `f` in the next batch transaction and returns its result once that batch is
    /// committed. An `Err` from `f` rolls back `f`'s writes only.
    pub async fn write<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<R, StoreError> + Send + 'static,
    {
        self.submit(true, f).await
    }

    /// Like [`Writer::write`], without a savepoint around `f`: for hot jobs that only fail on
    /// a storage error (they report item-level outcomes in `Ok`). Should `f` fail anyway, the
    /// whole batch is rolled back and every job in it gets that error, so nothing half-written
    /// is ever committed. Why: a savepoint makes SQLite copy each page the job touches into the
    /// statement journal first; with many small jobs per batch on the same few pages, that copy
    /// was the writer's largest cost.
    pub async fn write_whole<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<R, StoreError> + Send + 'static,
    {
        self.submit(false, f).await
    }

    async fn submit<R, F>(&self, isolated: bool, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<R, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Pending {
            isolated,
            f: Some(f),
            out: None,
            reply,
        });
        let tx = self.tx.as_ref().ok_or_else(stopped)?;
        tx.send(job).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Commits and items so far.
    pub fn stats(&self) -> WriterStats {
        WriterStats {
            commits: self.counters.commits.load(Ordering::Relaxed),
            items: self.counters.items.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the sqlite writer has stopped".into())
}

/// The thread body: batch, commit, answer, until every sender is gone.
fn run(
    mut conn: Connection,
    mut rx: mpsc::Receiver<Box<dyn Job>>,
    max_batch: usize,
    counters: &Counters,
) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(max_batch);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let started = std::time::Instant::now();
        let outcome = commit_batch(&mut conn, &mut batch);
        if outcome.is_ok() {
            let m = &stratus_metrics::global().sqlite;
            m.commit_seconds.observe_duration(started.elapsed());
            m.batch_size.observe(batch.len() as u64);
            counters.commits.fetch_add(1, Ordering::Relaxed);
            counters
                .items
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
        }
        for job in batch.drain(..) {
            job.finish(outcome.clone());
        }
    }
}

/// Runs every job of the batch in one transaction, each isolated job inside its own savepoint.
fn commit_batch(conn: &mut Connection, batch: &mut [Box<dyn Job>]) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .db()?;
    for job in batch.iter_mut() {
        if !job.isolated() {
            if !job.run(&tx) {
                // Its partial writes cannot be undone alone: the dropped transaction rolls
                // back the whole batch.
                return Err(StoreError::Unavailable(
                    "a write failed; its batch was rolled back".into(),
                ));
            }
            continue;
        }
        tx.prepare_cached("SAVEPOINT item").db()?.execute([]).db()?;
        if !job.run(&tx) {
            tx.prepare_cached("ROLLBACK TO item")
                .db()?
                .execute([])
                .db()?;
        }
        tx.prepare_cached("RELEASE item").db()?.execute([]).db()?;
    }
    // On failure the dropped transaction rolls back; every job gets this error.
    tx.commit().map_err(sql)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer() -> (tempfile::TempDir, Writer) {
        let dir = tempfile::tempdir().unwrap();
        let opts = SqliteOptions::default();
        let mut conn = crate::schema::open_writer(&dir.path().join("stratus.db"), &opts).unwrap();
        // `child` makes a commit fail on demand: its foreign key is only checked at COMMIT.
        conn.execute_batch(
            "PRAGMA foreign_keys = ON;
             CREATE TABLE t (v INTEGER PRIMARY KEY);
             CREATE TABLE child (p INTEGER REFERENCES t (v) DEFERRABLE INITIALLY DEFERRED);",
        )
        .unwrap();
        crate::schema::migrate(&mut conn).unwrap();
        let w = Writer::start(conn, &opts).unwrap();
        (dir, w)
    }

    fn count(tx: &Transaction<'_>) -> Result<i64, StoreError> {
        tx.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .db()
    }

    #[tokio::test]
    async fn a_failing_whole_job_rolls_back_its_batch() {
        let (_dir, w) = writer();
        let ok = w.write(|tx| tx.execute("INSERT INTO t VALUES (1)", []).db());
        let whole_ok = w.write_whole(|tx| tx.execute("INSERT INTO t VALUES (2)", []).db());
        let whole_failing = w.write_whole(|tx| {
            tx.execute("INSERT INTO t VALUES (3)", []).db()?;
            Err::<(), _>(StoreError::Internal("disk on fire".into()))
        });
        let (a, b, c) = tokio::join!(ok, whole_ok, whole_failing);
        // The three may land in one batch or several; nothing half-written is committed, and
        // every write that was acknowledged is there.
        assert_eq!(c, Err(StoreError::Internal("disk on fire".into())));
        let rows: Vec<i64> = w
            .write(|tx| {
                let mut st = tx.prepare("SELECT v FROM t ORDER BY v").db()?;
                let v = st
                    .query_map([], |r| r.get(0))
                    .db()?
                    .collect::<Result<_, _>>()
                    .db()?;
                Ok(v)
            })
            .await
            .unwrap();
        assert!(!rows.contains(&3), "{rows:?}");
        assert_eq!(rows.contains(&1), a.is_ok(), "{rows:?} {a:?}");
        assert_eq!(rows.contains(&2), b.is_ok(), "{rows:?} {b:?}");
    }

    #[tokio::test]
    async fn a_failing_or_panicking_job_rolls_back_alone() {
        let (_dir, w) = writer();
        let ok = w.write(|tx| tx.execute("INSERT INTO t VALUES (1)", []).db());
        let failing = w.write(|tx| {
            tx.execute("INSERT INTO t VALUES (2)", []).db()?;
            Err::<(), _>(StoreError::TaskExists)
        });
        let panicking = w.write(|tx| -> Result<(), StoreError> {
            tx.execute("INSERT INTO t VALUES (3)", []).db()?;
            panic!("boom");
        });
        let (a, b, c) = tokio::join!(ok, failing, panicking);
        assert_eq!(a, Ok(1));
        assert_eq!(b, Err(StoreError::TaskExists));
        assert!(matches!(c, Err(StoreError::Internal(_))));
        assert_eq!(w.write(count).await, Ok(1));
        // A duplicate key is an SQL error of that job only.
        assert!(matches!(
            w.write(|tx| tx.execute("INSERT INTO t VALUES (1)", []).db())
                .await,
            Err(StoreError::Internal(_))
        ));
        assert_eq!(w.write(count).await, Ok(1));
        assert!(w.stats().commits >= 1);
    }

    #[tokio::test]
    async fn a_failed_commit_fails_every_job_of_the_batch() {
        let (_dir, w) = writer();
        // Holds the writer (once it has started) so the next two jobs queue up and share a batch.
        let (started, running) = oneshot::channel();
        let hold = w.write(move |_| {
            let _ = started.send(());
            std::thread::sleep(std::time::Duration::from_millis(100));
            Ok(())
        });
        let queued = async {
            running.await.unwrap();
            let fine = w.write(|tx| tx.execute("INSERT INTO t VALUES (1)", []).db());
            let dooms = w.write(|tx| tx.execute("INSERT INTO child VALUES (42)", []).db());
            tokio::join!(fine, dooms)
        };
        let (held, (fine, dooms)) = tokio::join!(hold, queued);
        assert_eq!(held, Ok(()));
        assert!(matches!(fine, Err(StoreError::Internal(_))), "{fine:?}");
        assert!(matches!(dooms, Err(StoreError::Internal(_))), "{dooms:?}");
        assert_eq!(
            w.write(count).await,
            Ok(0),
            "nothing of the failed batch is kept"
        );
        assert_eq!(w.stats().items, 2, "failed batches are not counted");
    }
}
