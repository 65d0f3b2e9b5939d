//! Group commit of the hot writes: task creates and attempt outcomes.
//!
//! Callers send a job over a bounded channel (the back-pressure) and wait for its answer.
//! `writers` Tokio tasks consume the channel: each takes the first queued job plus
//! whatever else is already waiting (up to `max_batch`), and for the batch:
//!
//! 1. `BEGIN` on a pooled connection;
//! 2. creates (`Creates`): a shared advisory lock per queue name (what `delete_queue` and
//!    `purge_queue` take exclusively: a queue cannot be deleted under its creates, and no row
//!    lock, MultiXact or WAL record is needed for it), the live queues by name, then every task
//!    of every create in one `INSERT … SELECT FROM unnest(…) ON CONFLICT DO NOTHING RETURNING`,
//!    sorted by `(queue_id, task_id)` so concurrent batches take index locks in one order;
//!    conflicts are resolved set-wise afterwards (see the crate docs);
//! 3. outcomes (`Outcomes`): the task rows `FOR UPDATE` in id order (one statement), the
//!    leases of fenced outcomes `FOR SHARE`,
//!    [`apply_attempt`](stratus_store::dispatch::apply_attempt) in Rust on the locked rows,
//!    then one `UPDATE … FROM unnest(…)` and one `INSERT INTO attempts … unnest(…)`;
//! 4. one `pg_notify` statement for every created row of the batch, grouped by queue;
//! 5. `COMMIT`, and only then every caller is answered.
//!
//! The statements are pipelined: `BEGIN` and everything of steps 2–3 that needs no earlier
//! answer go out together, and so do the writes of steps 3–4 with `COMMIT`. A batch without
//! name conflicts costs two round trips, whatever its size.
//!
//! A lost deadlock or serialization race re-runs the batch (at most [`RACE_RETRIES`] times). A
//! batch failing with an `Internal` error is re-run job by job, so one bad job fails alone.
//! Jobs whose caller has already given up (timed out, cancelled) are dropped before a batch
//! starts, so a call answered `Unavailable` is not carried out later behind its caller's back.

mod creates;
mod outcomes;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deadpool_postgres::{ClientWrapper, Object, Pool};
use stratus_store::dispatch::{AttemptOutcome, DueTask, Recorded};
use stratus_store::{StoreError, Windows};
use stratus_types::Micros;
use tokio::sync::{Mutex, mpsc, oneshot};

use self::creates::Creates;
use self::outcomes::{Outcomes, attempt_rows, fenced_rows};
use crate::dispatch::due_columns;
use crate::error::{self, is_race, pg};
use stratus_store::rows::NewTask;

/// How often a batch that lost a deadlock or serialization race is run again.
pub const RACE_RETRIES: usize = 3;
/// Jobs that may wait for a writer before callers are made to wait.
const QUEUE_DEPTH: usize = 4096;

/// The queue-name locks of creates (shared; see `queues::lock_name` for the exclusive side),
/// in the sorted order of `$1`.
const LOCK_QUEUES: &str =
    "SELECT pg_advisory_xact_lock_shared(hashtextextended('stratus queue ' || n, 0))
     FROM unnest($1::text[]) AS n";
const QUEUES: &str = "SELECT id, name FROM queues
     WHERE name = ANY($1::text[]) AND deleted_at IS NULL";
/// Tasks of missing queues drop out in the join. Sorted in byte order (the cheapest) so every
/// batch takes its index locks in the same order.
const INSERT: &str = r#"INSERT INTO tasks (queue_id, task_id, schedule_time, create_time, proto)
     SELECT q.id, u.n, u.s, u.c, u.p
     FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bytea[])
         AS u(qn, n, s, c, p)
     JOIN queues q ON q.name = u.qn AND q.deleted_at IS NULL
     ORDER BY q.id, u.n COLLATE "C"
     ON CONFLICT (queue_id, task_id) DO NOTHING
     RETURNING id, queue_id, task_id"#;
const LOAD: &str = concat!(
    "SELECT ",
    due_columns!(),
    ", t.queue_id, t.attempt_seq FROM tasks t
     WHERE t.id = ANY($1::bigint[]) AND t.state <= 1 ORDER BY t.id FOR UPDATE"
);
/// The leases this node holds for the queues of the fenced outcomes' rows (`$1`), locked until
/// commit so they cannot be taken over meanwhile. Sent right after [`LOAD`] (which locked the
/// rows), in the same round trip.
const LEASES: &str = "SELECT l.queue_id, l.epoch FROM leases l
     WHERE l.node_id = $2
       AND l.queue_id IN (SELECT t.queue_id FROM tasks t WHERE t.id = ANY($1::bigint[]))
     ORDER BY l.queue_id FOR SHARE OF l";
const UPDATE: &str = "UPDATE tasks t SET state = u.st, finished_at = u.fin,
         schedule_time = u.sched, proto = u.proto, exec_count = u.ex, prev_response = u.prev,
         attempt_seq = u.n
     FROM unnest($1::bigint[], $2::int[], $3::bigint[], $4::bigint[], $5::bytea[], $6::int[],
                 $7::int[], $8::bigint[]) AS u(id, st, fin, sched, proto, ex, prev, n)
     WHERE t.id = u.id";
const INSERT_ATTEMPTS: &str =
    "INSERT INTO attempts (task_row, seq, dispatch_time, response_time, http_status, error)
     SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::int[],
                          $6::text[])";
const NOTIFY: &str = "SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p";

/// Counters of the writers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Transactions committed.
    pub commits: u64,
    /// Jobs (create or outcome calls) carried by those commits (`items / commits` is the mean
    /// batch size).
    pub items: u64,
}

#[derive(Default)]
struct Counters {
    commits: AtomicU64,
    items: AtomicU64,
}

/// What the writers share.
pub(crate) struct Shared {
    pub(crate) pool: Pool,
    pub(crate) node_id: String,
    pub(crate) channel: String,
    pub(crate) op_timeout: Duration,
    pub(crate) max_batch: usize,
    pub(crate) writers: usize,
}

type CreateReply = oneshot::Sender<Result<Vec<Result<DueTask, StoreError>>, StoreError>>;

/// One queued write.
pub(crate) enum Job {
    /// `create_tasks` in one queue.
    Create {
        queue: String,
        tasks: Vec<Result<NewTask, StoreError>>,
        now: Micros,
        w: Windows,
        reply: CreateReply,
    },
    /// `record_attempt`.
    Attempt {
        outcome: AttemptOutcome,
        now: Micros,
        reply: oneshot::Sender<Result<Recorded, StoreError>>,
    },
}

impl Job {
    fn abandoned(&self) -> bool {
        match self {
            Job::Create { reply, .. } => reply.is_closed(),
            Job::Attempt { reply, .. } => reply.is_closed(),
        }
    }

    fn finish(self, answer: Result<Answer, StoreError>) {
        // A caller that went away meanwhile misses the answer; the write stands.
        match self {
            Job::Create { tasks, reply, .. } => {
                let out = answer.and_then(|a| match a {
                    Answer::Create(rows) if rows.len() == tasks.len() => Ok(tasks
                        .into_iter()
                        .zip(rows)
                        .map(|(t, r)| match (t, r) {
                            (Ok(t), Ok(row)) => Ok(t.into_due(row)),
                            (Err(e), _) | (_, Err(e)) => Err(e),
                        })
                        .collect()),
                    _ => Err(StoreError::Internal("create job got a wrong answer".into())),
                });
                let _ = reply.send(out);
            }
            Job::Attempt { reply, .. } => {
                let out = answer.and_then(|a| match a {
                    Answer::Attempt(r) => *r,
                    Answer::Create(_) => Err(StoreError::Internal(
                        "attempt job got a wrong answer".into(),
                    )),
                });
                let _ = reply.send(out);
            }
        }
    }
}

/// A job's outcome inside a batch, before commit.
enum Answer {
    /// The new row of each task, or why it was not created.
    Create(Vec<Result<i64, StoreError>>),
    /// The recorded attempt (boxed: a `Recorded` holds a whole task).
    Attempt(Box<Result<Recorded, StoreError>>),
}

/// Why a batch failed.
struct Failure {
    err: StoreError,
    /// A deadlock or serialization failure: running the batch again may succeed.
    race: bool,
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        Failure {
            race: is_race(&e),
            err: pg(e),
        }
    }
}

impl From<StoreError> for Failure {
    fn from(err: StoreError) -> Self {
        Failure { err, race: false }
    }
}

/// The handle to the writers. Dropping it closes the channel; the writers finish the queued
/// jobs and stop.
pub struct Writer {
    tx: mpsc::Sender<Job>,
    counters: Arc<Counters>,
}

impl Writer {
    /// Starts `shared.writers` writer tasks.
    pub(crate) fn start(shared: Shared) -> Writer {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let rx = Arc::new(Mutex::new(rx));
        let shared = Arc::new(shared);
        let counters = Arc::new(Counters::default());
        for _ in 0..shared.writers.max(1) {
            tokio::spawn(run(shared.clone(), rx.clone(), counters.clone()));
        }
        Writer { tx, counters }
    }

    /// Creates tasks in `queue` in the next batch; answers once it is committed.
    pub(crate) async fn create(
        &self,
        queue: String,
        tasks: Vec<Result<NewTask, StoreError>>,
        now: Micros,
        w: Windows,
    ) -> Result<Vec<Result<DueTask, StoreError>>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.submit(Job::Create {
            queue,
            tasks,
            now,
            w,
            reply,
        })
        .await?;
        answer.await.map_err(|_| stopped())?
    }

    /// Records an attempt outcome in the next batch; answers once it is committed.
    pub(crate) async fn attempt(
        &self,
        outcome: AttemptOutcome,
        now: Micros,
    ) -> Result<Recorded, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.submit(Job::Attempt {
            outcome,
            now,
            reply,
        })
        .await?;
        answer.await.map_err(|_| stopped())?
    }

    async fn submit(&self, job: Job) -> Result<(), StoreError> {
        self.tx.send(job).await.map_err(|_| stopped())
    }

    /// Commits and jobs so far.
    pub fn stats(&self) -> WriterStats {
        WriterStats {
            commits: self.counters.commits.load(Ordering::Relaxed),
            items: self.counters.items.load(Ordering::Relaxed),
        }
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the PostgreSQL writer has stopped".into())
}

/// A writer task: batch, run, answer, until the channel closes.
async fn run(shared: Arc<Shared>, rx: Arc<Mutex<mpsc::Receiver<Job>>>, counters: Arc<Counters>) {
    loop {
        let mut batch = Vec::new();
        {
            // Held only while collecting a batch, so the other writers collect the next one
            // while this one runs SQL.
            let mut rx = rx.lock().await;
            match rx.recv().await {
                Some(job) => batch.push(job),
                None => return,
            }
            while batch.len() < shared.max_batch {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
        }
        batch.retain(|j| !j.abandoned());
        if batch.is_empty() {
            continue;
        }
        let started = std::time::Instant::now();
        match settle(&shared, &batch).await {
            Ok(answers) => {
                let m = &stratus_metrics::global().postgres;
                m.commit_seconds.observe_duration(started.elapsed());
                m.batch_size.observe(batch.len() as u64);
                counters.commits.fetch_add(1, Ordering::Relaxed);
                counters
                    .items
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                for (job, a) in batch.into_iter().zip(answers) {
                    job.finish(Ok(a));
                }
            }
            Err(StoreError::Internal(msg)) if batch.len() > 1 => {
                tracing::warn!(
                    error = %msg,
                    jobs = batch.len(),
                    "write batch failed; running its jobs one by one"
                );
                for job in batch {
                    let one = [job];
                    let started = std::time::Instant::now();
                    let out = settle(&shared, &one).await;
                    if out.is_ok() {
                        let m = &stratus_metrics::global().postgres;
                        m.commit_seconds.observe_duration(started.elapsed());
                        m.batch_size.observe(1);
                        counters.commits.fetch_add(1, Ordering::Relaxed);
                        counters.items.fetch_add(1, Ordering::Relaxed);
                    }
                    let [job] = one;
                    job.finish(out.and_then(|mut a| {
                        a.pop()
                            .ok_or_else(|| StoreError::Internal("no answer".into()))
                    }));
                }
            }
            Err(e) => {
                for job in batch {
                    job.finish(Err(e.clone()));
                }
            }
        }
    }
}

/// Runs a batch to its commit, again after a lost race, within the operation timeout.
async fn settle(shared: &Shared, jobs: &[Job]) -> Result<Vec<Answer>, StoreError> {
    let mut tries = 0;
    loop {
        match tokio::time::timeout(shared.op_timeout, run_batch(shared, jobs)).await {
            Ok(Ok(answers)) => return Ok(answers),
            Ok(Err(f)) if f.race && tries < RACE_RETRIES => {
                tries += 1;
                tracing::debug!(error = %f.err, tries, "write batch lost a race; running it again");
            }
            Ok(Err(f)) => return Err(f.err),
            Err(_) => {
                return Err(StoreError::Unavailable(format!(
                    "PostgreSQL did not commit a write batch within {:?}",
                    shared.op_timeout
                )));
            }
        }
    }
}

/// A pooled connection inside a hand-driven transaction (`BEGIN` and `COMMIT` are pipelined
/// with the batch's statements, which `tokio_postgres::Transaction` cannot do). Should the
/// transaction be left open (an error, or the batch future dropped at the operation timeout),
/// it is rolled back or, failing that, the connection is taken out of the pool and closed, so
/// no half-done transaction ever reaches another caller.
struct Conn {
    obj: Option<Object>,
    open: bool,
}

impl Conn {
    fn client(&self) -> Result<&ClientWrapper, Failure> {
        self.obj
            .as_deref()
            .ok_or_else(|| StoreError::Internal("connection already released".into()).into())
    }

    /// Ends an open transaction after a failure.
    async fn rollback(&mut self) {
        if !self.open {
            return;
        }
        if let Some(c) = self.obj.as_deref()
            && !c.is_closed()
            && c.batch_execute("ROLLBACK").await.is_ok()
        {
            self.open = false;
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if self.open
            && let Some(obj) = self.obj.take()
        {
            drop(Object::take(obj));
        }
    }
}

/// One batch in one transaction.
async fn run_batch(shared: &Shared, jobs: &[Job]) -> Result<Vec<Answer>, Failure> {
    let obj = shared.pool.get().await.map_err(error::pool)?;
    let mut conn = Conn {
        obj: Some(obj),
        open: true,
    };
    let out = batch(conn.client()?, shared, jobs).await;
    match out {
        Ok(_) => conn.open = false,
        Err(_) => conn.rollback().await,
    }
    out
}

/// The statements of a batch, from `BEGIN` to `COMMIT`. Without name conflicts they take two
/// round trips: `BEGIN`, the queue locks, the queue lookup, the insert, the outcome rows
/// `FOR UPDATE` and the fenced outcomes' leases `FOR SHARE` in one; the outcome updates, the
/// attempts, the notifications and `COMMIT` in the other.
async fn batch(c: &ClientWrapper, shared: &Shared, jobs: &[Job]) -> Result<Vec<Answer>, Failure> {
    let mut creates = Creates::new(jobs);
    let rows = attempt_rows(jobs);
    // Prepared first (cached per connection): a statement waiting for its preparation would
    // be sent after the ones behind it.
    let st_lock = c.prepare_cached(LOCK_QUEUES).await?;
    let st_queues = c.prepare_cached(QUEUES).await?;
    let st_insert = c.prepare_cached(INSERT).await?;
    let st_load = c.prepare_cached(LOAD).await?;
    let st_leases = c.prepare_cached(LEASES).await?;
    let st_update = c.prepare_cached(UPDATE).await?;
    let st_attempts = c.prepare_cached(INSERT_ATTEMPTS).await?;
    let st_notify = c.prepare_cached(NOTIFY).await?;

    let (cands, rest) = creates.candidates();
    let ins = creates.insert_params(&cands);
    let names = &creates.names;
    let begin = c.batch_execute("BEGIN");
    let lock = async {
        if !names.is_empty() {
            c.execute(&st_lock, &[names]).await?;
        }
        Ok::<_, tokio_postgres::Error>(())
    };
    let queues = async {
        if names.is_empty() {
            Ok(Vec::new())
        } else {
            c.query(&st_queues, &[names]).await
        }
    };
    let insert = async {
        if cands.is_empty() {
            Ok(Vec::new())
        } else {
            c.query(
                &st_insert,
                &[&ins.queues, &ins.ids, &ins.sched, &ins.created, &ins.protos],
            )
            .await
        }
    };
    let load = async {
        if rows.is_empty() {
            Ok(Vec::new())
        } else {
            c.query(&st_load, &[&rows]).await
        }
    };
    let fenced = fenced_rows(jobs);
    let leases = async {
        if fenced.is_empty() {
            Ok(Vec::new())
        } else {
            c.query(&st_leases, &[&fenced, &shared.node_id]).await
        }
    };
    // `join!` polls in order, and each statement is sent on its first poll: they leave in
    // this order, in one write.
    let (begin, lock, queues, inserted, loaded, leases) =
        futures::join!(begin, lock, queues, insert, load, leases);
    // The first error in order is the real one (the statements after it only report the
    // aborted transaction).
    begin?;
    lock?;
    let (queues, inserted, loaded, leases) = (queues?, inserted?, loaded?, leases?);
    creates.found_queues(&queues)?;
    creates.settle(c, cands, rest, inserted).await?;
    while !creates.pending.is_empty() {
        creates.round(c, &st_insert).await?;
    }
    let (mut created, notices) = creates.finish(&shared.node_id);
    let mut outcomes = Outcomes::apply(c, jobs, loaded, leases).await?;

    let w = &outcomes.writes;
    let update = async {
        if !w.ids.is_empty() {
            c.execute(
                &st_update,
                &[
                    &w.ids, &w.states, &w.fins, &w.scheds, &w.protos, &w.execs, &w.prevs, &w.seqs,
                ],
            )
            .await?;
        }
        Ok::<_, tokio_postgres::Error>(())
    };
    let a = &w.attempts;
    let attempts = async {
        if !a.rows.is_empty() {
            c.execute(
                &st_attempts,
                &[
                    &a.rows,
                    &a.seqs,
                    &a.dispatched,
                    &a.responded,
                    &a.statuses,
                    &a.errors,
                ],
            )
            .await?;
        }
        Ok::<_, tokio_postgres::Error>(())
    };
    let notify = async {
        if !notices.is_empty() {
            c.execute(&st_notify, &[&shared.channel, &notices]).await?;
        }
        Ok::<_, tokio_postgres::Error>(())
    };
    let commit = c.batch_execute("COMMIT");
    let (update, attempts, notify, commit) = futures::join!(update, attempts, notify, commit);
    // After a failed statement PostgreSQL answers COMMIT by rolling back: the first error
    // in order is what happened.
    update?;
    attempts?;
    notify?;
    commit?;
    Ok(jobs
        .iter()
        .enumerate()
        .map(|(i, job)| match job {
            Job::Create { .. } => Answer::Create(created.remove(&i).unwrap_or_default()),
            Job::Attempt { .. } => {
                Answer::Attempt(Box::new(outcomes.answers.remove(&i).unwrap_or_else(|| {
                    Err(StoreError::Internal("attempt left unanswered".into()))
                })))
            }
        })
        .collect())
}
