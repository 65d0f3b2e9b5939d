//! One queue's dispatcher: a Tokio task owning the queue's due-time index, token bucket and
//! concurrency count. No locks: everything about the queue changes on this task only.
//!
//! **Due-time index.** A min-heap of `(schedule_time, row)` over the tasks loaded in memory,
//! with lazy deletion (a popped entry whose task was removed or rescheduled is skipped).
//! `loaded` is the store position (schedule_time, task id) up to which every live task is
//! known to the actor — in the heap, in flight, or already handled. Tasks past it stay in the
//! store until a scan reaches them:
//! - a scan reads the next `batch` live tasks after `loaded` that are due within the
//!   look-ahead window; when it reads fewer than `batch`, everything up to the window's end
//!   is loaded and the next scan comes when half the window has passed;
//! - new tasks (creates, retries) at or before `loaded` go straight into the heap; later
//!   ones wait for their scan;
//! - at most `4 × batch` tasks are held; past that, a task is left to a full rescan of the
//!   store once the heap has drained to half.
//!
//! An idle queue's actor sleeps until the next task comes within the look-ahead window (the
//! scan asks the store for the first task past the window; creates and retries past it bring
//! the scan forward), or until it is told something: no polling per task, and a queue with
//! nothing to do costs one sleeping Tokio task.
//!
//! **Dispatch.** While the queue is RUNNING, due tasks leave the heap as long as the token
//! bucket has a token and fewer than `max_concurrent_dispatches` attempts are in flight. Each
//! attempt is its own Tokio task: it sends the request, records the outcome in the store
//! (group-committed with everything else), and reports back here.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use stratus_store::dispatch::{Decision, DueTask, Recorded};
use stratus_store::{Store, StoreError, TaskCursor};
use stratus_types::proto::tasks::Queue;
use stratus_types::proto::tasks::queue::State;
use stratus_types::queue::normalize_rate_limits;
use stratus_types::rate::TokenBucket;
use stratus_types::time::ts_to_micros;
use stratus_types::{Micros, QueuePath};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::attempt::{self, AttemptContext};
use crate::engine::EngineConfig;
use stratus_metrics::{OutcomeClass, QueueMetrics};

/// What the engine's actors share.
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) ctx: AttemptContext,
    pub(crate) cfg: EngineConfig,
    /// Set at shutdown: no new attempts.
    pub(crate) stopping: AtomicBool,
    /// Attempts in flight across all queues.
    pub(crate) in_flight: AtomicUsize,
    /// Notified when `in_flight` drops to zero.
    pub(crate) drained: Notify,
}

/// A message to a queue's actor.
pub(crate) enum Msg {
    /// Tasks were created (committed).
    Created(Vec<DueTask>),
    /// Tasks were deleted.
    Deleted(Vec<String>),
    /// The queue's stored config changed.
    Config(Box<Queue>),
    /// Cluster mode: another node created these task rows; load the live ones.
    Fetch(Vec<i64>),
    /// RunTask: dispatch now, bypassing state and limits.
    Run {
        task: Box<DueTask>,
        call_time: Micros,
    },
    /// Answered once every earlier message is handled.
    Ping(oneshot::Sender<()>),
    /// The queue was deleted or the engine stops.
    Stop,
}

/// An attempt's end, reported by its task.
struct Done {
    row: i64,
    run: bool,
    original: DueTask,
    result: Result<Recorded, StoreError>,
}

/// How often, at most, an actor holding tasks recounts its `pending` and `due` gauges.
const DEPTH_REFRESH: Micros = 100_000;

/// Counts an attempt's end in its queue's metrics: its class, its duration and, for a regular
/// dispatch, how late it started after the task's schedule time.
fn observe_attempt(
    m: &QueueMetrics,
    t: &DueTask,
    o: &stratus_store::dispatch::AttemptOutcome,
    regular: bool,
) {
    m.outcome(OutcomeClass::of(o.http_status, o.timed_out))
        .inc();
    m.attempt_duration
        .observe(u64::try_from(o.response_time.saturating_sub(o.dispatch_time)).unwrap_or(0));
    if regular {
        m.lag
            .observe(u64::try_from(o.dispatch_time.saturating_sub(t.schedule_time)).unwrap_or(0));
    }
}

/// Counts what recording an attempt decided: a retry or a permanent failure.
fn observe_recorded(m: &QueueMetrics, result: &Result<Recorded, StoreError>) {
    match result {
        Ok(Recorded {
            decision: Decision::Retry(_),
            ..
        }) => m.retries.inc(),
        Ok(Recorded {
            decision: Decision::Failed,
            ..
        }) => m.permanent_failures.inc(),
        _ => {}
    }
}

/// Task IDs sort below this string (they use `[A-Za-z0-9_-]`), so a cursor with it covers
/// every task of its schedule_time.
const PAST_ANY_ID: &str = "~";

fn position(t: &DueTask) -> (Micros, &str) {
    (t.schedule_time, t.task_id())
}

pub(crate) struct QueueActor {
    path: QueuePath,
    queue: Arc<Queue>,
    shared: Arc<Shared>,
    rx: mpsc::Receiver<Msg>,
    rescan: Arc<AtomicBool>,
    wake: Arc<Notify>,
    done_tx: mpsc::UnboundedSender<Done>,
    done_rx: mpsc::UnboundedReceiver<Done>,

    heap: BinaryHeap<Reverse<(Micros, i64)>>,
    entries: HashMap<i64, DueTask>,
    by_id: HashMap<String, i64>,
    /// Attempts in flight per row (RunTask may add a second one).
    in_flight: HashMap<i64, u32>,
    /// Attempts in flight that count against `max_concurrent_dispatches`.
    regular: usize,
    bucket: TokenBucket,
    /// Everything at or before this store position is known here; `None`: nothing loaded.
    loaded: Option<TaskCursor>,
    /// Whether the last scan reached the end of its window (else it stopped at `batch`).
    window_done: bool,
    /// When the next time-driven scan is due.
    next_scan: Micros,
    /// A task was left out of memory (cap reached): rescan everything once there is room.
    lost: bool,
    /// When the token bucket has the next token, if a due task waits for it.
    token_at: Option<Micros>,
    /// The lease epoch (cluster mode): the fencing token of every regular attempt.
    fence: Option<i64>,
    /// This queue's attempts in flight (the engine waits for them before handing it over).
    attempts: Arc<AtomicUsize>,
    /// Set when the queue is handed to another node: no new attempts from here on.
    halt: Arc<AtomicBool>,
    /// Rows to fetch from the store (created through other nodes).
    fetch: Vec<i64>,
    /// This queue's series in the process's metrics, looked up once.
    metrics: Arc<QueueMetrics>,
    /// When the depth gauges may next be recomputed.
    depth_at: Micros,
}

/// What the engine keeps of an actor to steer it without a message.
pub(crate) struct Controls {
    /// Set to make it rescan the store from the start.
    pub(crate) rescan: Arc<AtomicBool>,
    /// Wakes it up.
    pub(crate) wake: Arc<Notify>,
    /// Its attempts in flight.
    pub(crate) attempts: Arc<AtomicUsize>,
    /// Set to stop it starting attempts (handed to another node).
    pub(crate) halt: Arc<AtomicBool>,
}

impl QueueActor {
    pub(crate) fn new(
        path: QueuePath,
        queue: Queue,
        shared: Arc<Shared>,
        rx: mpsc::Receiver<Msg>,
        controls: &Controls,
        fence: Option<i64>,
    ) -> Self {
        let Controls {
            rescan,
            wake,
            attempts,
            halt,
        } = controls;
        let (rescan, wake, attempts, halt) =
            (rescan.clone(), wake.clone(), attempts.clone(), halt.clone());
        let now = shared.ctx.timer.now();
        let rl = normalize_rate_limits(queue.rate_limits.as_ref());
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let path_name = path.to_string();
        QueueActor {
            path,
            queue: Arc::new(queue),
            shared,
            rx,
            rescan,
            wake,
            done_tx,
            done_rx,
            heap: BinaryHeap::new(),
            entries: HashMap::new(),
            by_id: HashMap::new(),
            in_flight: HashMap::new(),
            regular: 0,
            bucket: TokenBucket::new(rl.max_dispatches_per_second, rl.max_burst_size, now),
            loaded: None,
            window_done: false,
            next_scan: now,
            lost: false,
            token_at: None,
            fence,
            attempts,
            halt,
            fetch: Vec::new(),
            metrics: stratus_metrics::global().queue(&path_name),
            depth_at: Micros::MIN,
        }
    }

    fn cap(&self) -> usize {
        self.shared.cfg.batch.max(1) * 4
    }

    fn covers(&self, t: &DueTask) -> bool {
        self.loaded.as_ref().is_some_and(|c| {
            let (st, id) = position(t);
            (st, id) <= (c.schedule_time, c.task_id.as_str())
        })
    }

    fn known(&self, row: i64) -> bool {
        self.entries.contains_key(&row) || self.in_flight.contains_key(&row)
    }

    /// Puts a task into the index unless it is known or memory is full. Returns whether it is
    /// now in memory.
    fn insert(&mut self, t: DueTask) -> bool {
        if self.known(t.row) {
            return true;
        }
        if self.entries.len() >= self.cap() {
            self.lost = true;
            return false;
        }
        self.heap.push(Reverse((t.schedule_time, t.row)));
        self.by_id.insert(t.task_id().to_string(), t.row);
        self.entries.insert(t.row, t);
        true
    }

    /// Takes a live task the actor learned of: into the heap when its position is loaded,
    /// else the scan that will load it is brought forward as needed.
    fn learn(&mut self, t: DueTask) {
        if self.covers(&t) {
            self.insert(t);
        } else {
            let at = t
                .schedule_time
                .saturating_sub(self.shared.cfg.lookahead.max(1) / 2);
            self.next_scan = self.next_scan.min(at);
        }
    }

    fn remove(&mut self, row: i64) -> Option<DueTask> {
        let t = self.entries.remove(&row)?;
        if self.by_id.get(t.task_id()) == Some(&row) {
            self.by_id.remove(t.task_id());
        }
        Some(t)
    }

    pub(crate) async fn run(mut self) {
        loop {
            if self.halt.load(Ordering::Acquire) {
                break;
            }
            let now = self.shared.ctx.timer.now();
            let full = self.rescan.swap(false, Ordering::AcqRel)
                || (self.lost && self.entries.len() <= self.cap() / 2);
            let partial_low = !self.window_done && self.entries.len() < self.shared.cfg.batch / 2;
            if full || self.loaded.is_none() || partial_low || now >= self.next_scan {
                self.scan(full, now).await;
            }
            if !self.fetch.is_empty() {
                self.fetch_rows().await;
            }
            self.pump();
            self.update_depth();
            let wake_at = self.next_wake();
            let sleep = self.shared.ctx.timer.sleep_until(wake_at);
            tokio::select! {
                biased;
                Some(d) = self.done_rx.recv() => self.on_done(d),
                m = self.rx.recv() => match m {
                    None | Some(Msg::Stop) => break,
                    Some(m) => self.on_msg(m),
                },
                () = self.wake.notified() => {}
                () = sleep => {}
            }
        }
        // Nothing is held here any more (attempts in flight still count themselves down).
        self.metrics.pending.set(0);
        self.metrics.due.set(0);
        tracing::debug!(queue = %self.path, "queue dispatcher stopped");
    }

    /// Reads due-soon tasks from the store into memory, after `loaded` (or from the start
    /// when `full`), skipping known ones, until `batch` new ones or the window's end.
    async fn scan(&mut self, full: bool, now: Micros) {
        let cfg = &self.shared.cfg;
        let (batch, lookahead) = (cfg.batch.max(1), cfg.lookahead.max(1));
        let until = now.saturating_add(lookahead);
        if full {
            self.lost = false;
        }
        let mut after = if full { None } else { self.loaded.clone() };
        let mut added = 0usize;
        loop {
            let rows = match self
                .shared
                .store
                .due_tasks(&self.path, after.as_ref(), until, batch)
                .await
            {
                Ok(rows) => rows,
                Err(StoreError::QueueNotFound) => {
                    // Deleted under us; the engine's Stop follows.
                    self.next_scan = Micros::MAX;
                    return;
                }
                Err(e) => {
                    tracing::warn!(queue = %self.path, error = %e, "scan of due tasks failed; retrying");
                    self.next_scan = now.saturating_add(self.shared.cfg.store_retry_delay);
                    return;
                }
            };
            let n = rows.len();
            for t in rows {
                let here = TaskCursor {
                    schedule_time: t.schedule_time,
                    task_id: t.task_id().to_string(),
                };
                let was_known = self.known(t.row);
                if !self.insert(t) {
                    // Memory is full (`insert` set `lost`): everything before this task is
                    // loaded, not this one; a full rescan picks it up once there is room.
                    if !full {
                        self.loaded = after.or(self.loaded.take());
                    }
                    self.window_done = false;
                    self.next_scan = until;
                    return;
                }
                if !was_known {
                    added += 1;
                }
                after = Some(here);
            }
            if n < batch {
                let loaded = TaskCursor {
                    schedule_time: until,
                    task_id: PAST_ANY_ID.to_string(),
                };
                // Sleep until the first task past the window comes near, not just half a
                // window: a queue with nothing due for hours (or nothing at all) stays asleep.
                // New tasks past the window bring the scan forward (`scan_for`).
                let next = match self
                    .shared
                    .store
                    .due_tasks(&self.path, Some(&loaded), Micros::MAX, 1)
                    .await
                {
                    Ok(rows) => rows.first().map(|t| t.schedule_time),
                    Err(_) => Some(until),
                };
                self.loaded = Some(loaded);
                self.window_done = true;
                self.next_scan = match next {
                    Some(at) => until
                        .saturating_sub(lookahead / 2)
                        .max(at.saturating_sub(lookahead / 2)),
                    None => Micros::MAX,
                };
                return;
            }
            if added >= batch {
                self.loaded = after;
                self.window_done = false;
                self.next_scan = until;
                return;
            }
        }
    }

    /// Loads tasks other nodes created (cluster mode). Runs between messages, like a scan, so
    /// a row whose attempt finished meanwhile is either still known here or no longer live.
    async fn fetch_rows(&mut self) {
        let rows = std::mem::take(&mut self.fetch);
        match self.shared.store.live_tasks(&self.path, &rows).await {
            Ok(tasks) => {
                for t in tasks {
                    self.learn(t);
                }
            }
            Err(StoreError::QueueNotFound) => {}
            Err(e) => {
                tracing::warn!(queue = %self.path, error = %e, "loading new tasks failed; rescanning");
                self.rescan.store(true, Ordering::Release);
            }
        }
    }

    fn running(&self) -> bool {
        self.queue.state == State::Running as i32
            && !self.shared.stopping.load(Ordering::Acquire)
            && !self.halt.load(Ordering::Acquire)
    }

    fn max_concurrent(&self) -> usize {
        let rl = normalize_rate_limits(self.queue.rate_limits.as_ref());
        usize::try_from(rl.max_concurrent_dispatches.max(1)).unwrap_or(1)
    }

    /// The first live heap entry, dropping stale ones.
    fn peek(&mut self) -> Option<(Micros, i64)> {
        while let Some(Reverse((at, row))) = self.heap.peek().copied() {
            match self.entries.get(&row) {
                Some(t) if t.schedule_time == at => return Some((at, row)),
                _ => {
                    self.heap.pop();
                }
            }
        }
        None
    }

    /// Starts every attempt that is due and allowed now.
    fn pump(&mut self) {
        self.token_at = None;
        if !self.running() {
            return;
        }
        let max = self.max_concurrent();
        let now = self.shared.ctx.timer.now();
        while let Some((at, row)) = self.peek() {
            if at > now || self.regular >= max {
                break;
            }
            if let Err(next) = self.bucket.try_take(now) {
                self.token_at = Some(next);
                break;
            }
            self.heap.pop();
            if let Some(t) = self.remove(row) {
                self.launch(t, false, None);
            }
        }
    }

    /// Refreshes the `pending` and `due` gauges from what is held in memory: at once when
    /// nothing is held, else at most every [`DEPTH_REFRESH`] (counting due tasks walks the
    /// heap's due part).
    fn update_depth(&mut self) {
        if self.entries.is_empty() {
            self.metrics.pending.set(0);
            self.metrics.due.set(0);
            return;
        }
        let now = self.shared.ctx.timer.now();
        if now < self.depth_at {
            return;
        }
        self.depth_at = now.saturating_add(DEPTH_REFRESH);
        let held = self.entries.len();
        let due = self.count_due(now).min(held);
        self.metrics
            .pending
            .set(i64::try_from(held - due).unwrap_or(i64::MAX));
        self.metrics.due.set(i64::try_from(due).unwrap_or(i64::MAX));
    }

    /// Live tasks in the heap due at `now` ([`due_in_heap`]).
    fn count_due(&self, now: Micros) -> usize {
        due_in_heap(self.heap.as_slice(), self.entries.len(), now, |row, at| {
            self.entries
                .get(&row)
                .is_some_and(|t| t.schedule_time == at)
        })
    }

    fn next_wake(&mut self) -> Micros {
        let mut wake = self.next_scan;
        if self.running()
            && self.regular < self.max_concurrent()
            && let Some((at, _)) = self.peek()
        {
            wake = wake.min(at.max(self.token_at.unwrap_or(Micros::MIN)));
        }
        wake
    }

    fn launch(&mut self, t: DueTask, run: bool, anchor: Option<Micros>) {
        *self.in_flight.entry(t.row).or_insert(0) += 1;
        if !run {
            self.regular += 1;
        }
        self.shared.in_flight.fetch_add(1, Ordering::AcqRel);
        self.attempts.fetch_add(1, Ordering::AcqRel);
        let shared = self.shared.clone();
        let queue = self.queue.clone();
        let done = self.done_tx.clone();
        let fence = if run { None } else { self.fence };
        let attempts = self.attempts.clone();
        let metrics = self.metrics.clone();
        metrics.dispatches.inc();
        metrics.in_flight.add(1);
        tokio::spawn(async move {
            tracing::debug!(queue = %queue.name, task = %t.task.name, attempt = t.task.dispatch_count + 1, "task dispatched");
            let mut outcome = attempt::run(&shared.ctx, &t, &queue, anchor).await;
            observe_attempt(&metrics, &t, &outcome, !run);
            outcome.fence = fence;
            let seen = Seen::of(&outcome);
            let result = shared
                .store
                .record_attempt(outcome, shared.ctx.timer.now())
                .await;
            observe_recorded(&metrics, &result);
            log_attempt(&queue.name, &t, &seen, &result);
            let _ = done.send(Done {
                row: t.row,
                run,
                original: t,
                result,
            });
            attempts.fetch_sub(1, Ordering::AcqRel);
            metrics.in_flight.add(-1);
            if shared.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
                shared.drained.notify_waiters();
            }
        });
    }

    fn on_done(&mut self, d: Done) {
        if !d.run {
            self.regular = self.regular.saturating_sub(1);
        }
        if let Some(n) = self.in_flight.get_mut(&d.row) {
            *n -= 1;
            if *n == 0 {
                self.in_flight.remove(&d.row);
            }
        }
        match d.result {
            Ok(Recorded {
                decision: Decision::Retry(_),
                task,
            }) => {
                if !self.in_flight.contains_key(&d.row) {
                    // A stale copy (RunTask raced a dispatch) gives way to the stored one.
                    self.remove(d.row);
                    self.learn(task);
                }
            }
            Ok(_) => {
                self.remove(d.row);
            }
            Err(StoreError::TaskNotFound) => {}
            Err(e) => {
                // The outcome is not stored: the task is still live with its old schedule.
                // Try it again shortly rather than waiting for a rescan.
                tracing::error!(queue = %self.path, task = %d.original.task.name, error = %e,
                    "recording an attempt failed; the task will be dispatched again");
                if !self.in_flight.contains_key(&d.row) {
                    let mut t = d.original;
                    t.schedule_time = self
                        .shared
                        .ctx
                        .timer
                        .now()
                        .saturating_add(self.shared.cfg.store_retry_delay);
                    self.insert(t);
                }
            }
        }
    }

    fn on_msg(&mut self, m: Msg) {
        match m {
            Msg::Created(tasks) => {
                for t in tasks {
                    self.learn(t);
                }
            }
            Msg::Fetch(rows) => self.fetch.extend(rows),
            Msg::Deleted(ids) => {
                for id in ids {
                    if let Some(row) = self.by_id.get(&id).copied() {
                        self.remove(row);
                    }
                }
            }
            Msg::Config(q) => self.reconfigure(*q),
            Msg::Run { task, call_time } => {
                self.remove(task.row);
                self.launch(*task, true, Some(call_time));
            }
            Msg::Ping(reply) => {
                let _ = reply.send(());
            }
            Msg::Stop => {}
        }
    }

    fn reconfigure(&mut self, q: Queue) {
        let now = self.shared.ctx.timer.now();
        let rl = normalize_rate_limits(q.rate_limits.as_ref());
        self.bucket
            .reconfigure(rl.max_dispatches_per_second, rl.max_burst_size, now);
        let old_purge = self.queue.purge_time.as_ref().map(ts_to_micros);
        let purge = q.purge_time.as_ref().map(ts_to_micros);
        self.queue = Arc::new(q);
        if let Some(p) = purge
            && purge != old_purge
        {
            let gone: Vec<i64> = self
                .entries
                .values()
                .filter(|t| t.create_time < p)
                .map(|t| t.row)
                .collect();
            for row in gone {
                self.remove(row);
            }
        }
    }
}

/// RunTask for a queue another node owns (cluster mode): sends the attempt from here and
/// records it unfenced. The owner's copy of the task, if it holds one, gives way to the stored
/// row when it records its own attempt.
pub(crate) fn run_detached(shared: Arc<Shared>, t: DueTask, queue: Queue, call_time: Micros) {
    shared.in_flight.fetch_add(1, Ordering::AcqRel);
    tokio::spawn(async move {
        tracing::debug!(queue = %queue.name, task = %t.task.name, attempt = t.task.dispatch_count + 1, "task dispatched");
        let metrics = stratus_metrics::global().queue(&queue.name);
        metrics.dispatches.inc();
        metrics.in_flight.add(1);
        let outcome = attempt::run(&shared.ctx, &t, &queue, Some(call_time)).await;
        observe_attempt(&metrics, &t, &outcome, false);
        let seen = Seen::of(&outcome);
        let result = shared
            .store
            .record_attempt(outcome, shared.ctx.timer.now())
            .await;
        log_attempt(&queue.name, &t, &seen, &result);
        observe_recorded(&metrics, &result);
        if let Err(e) = result
            && e != StoreError::TaskNotFound
        {
            tracing::error!(queue = %queue.name, task = %t.task.name, error = %e, "recording a RunTask attempt failed");
        }
        metrics.in_flight.add(-1);
        if shared.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            shared.drained.notify_waiters();
        }
    });
}

/// What an attempt's log line reports of its outcome (taken before the outcome is recorded).
struct Seen {
    status: Option<u16>,
    error: Option<String>,
}

impl Seen {
    fn of(o: &stratus_store::dispatch::AttemptOutcome) -> Seen {
        Seen {
            status: o.http_status,
            error: o.error.clone(),
        }
    }
}

/// One line per recorded attempt, with `queue`, `task`, `attempt` and the `status` or `error`
/// (never the request's body or headers): success at debug, a failure with a retry scheduled at
/// info, a permanent failure at warn. An attempt whose task is gone is a debug line; one whose
/// outcome could not be stored is reported by the caller.
fn log_attempt(queue: &str, t: &DueTask, seen: &Seen, result: &Result<Recorded, StoreError>) {
    let task = t.task.name.as_str();
    let status = seen.status.map(i64::from);
    let error = seen.error.as_deref();
    match result {
        Ok(r) => {
            let attempt = r.task.task.dispatch_count;
            match r.decision {
                Decision::Succeeded => {
                    tracing::debug!(queue, task, attempt, status, "task succeeded");
                }
                Decision::Retry(at) => {
                    let retry_at = chrono::DateTime::from_timestamp_micros(at)
                        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                        .unwrap_or_default();
                    tracing::info!(
                        queue,
                        task,
                        attempt,
                        status,
                        error,
                        retry_at,
                        "attempt failed; retry scheduled"
                    );
                }
                Decision::Failed => {
                    tracing::warn!(
                        queue,
                        task,
                        attempt,
                        status,
                        error,
                        "attempt failed; task failed permanently"
                    );
                }
            }
        }
        Err(StoreError::TaskNotFound) => {
            tracing::debug!(
                queue,
                task,
                status,
                "attempt finished for a task no longer live"
            );
        }
        Err(_) => {}
    }
}

/// Live entries of a min-heap (as its array) due at `now`: a walk that stops at every entry
/// later than `now` (its children are later still), so it costs the due entries only.
/// `is_live(row, at)` says whether an entry is a held task rather than a stale one.
///
/// Every held task has its own `(schedule_time, row)` heap entry ([`QueueActor::insert`] pushes
/// both, and a held task's schedule time never changes), so when the heap is no longer than the
/// `held` tasks it has no stale entry and every due entry is a live task: then the walk counts
/// without calling `is_live` (a hash lookup and a cache miss per task, which made this walk ~4%
/// of the server's CPU while delivering a backlog). Stale entries (every removal but a dispatch
/// leaves one: deletes, purges, RunTask, until it reaches the top) are checked one by one.
fn due_in_heap(
    heap: &[Reverse<(Micros, i64)>],
    held: usize,
    now: Micros,
    is_live: impl Fn(i64, Micros) -> bool,
) -> usize {
    let all_live = heap.len() <= held;
    let mut stack = vec![0usize];
    let mut due = 0;
    while let Some(i) = stack.pop() {
        let Some(Reverse((at, row))) = heap.get(i) else {
            continue;
        };
        if *at > now {
            continue;
        }
        if all_live {
            debug_assert!(
                is_live(*row, *at),
                "a stale heap entry, yet no more entries than held tasks"
            );
            due += 1;
        } else if is_live(*row, *at) {
            due += 1;
        }
        stack.push(2 * i + 1);
        stack.push(2 * i + 2);
    }
    due
}

#[cfg(test)]
mod tests {
    use std::cmp::Reverse;
    use std::collections::{BinaryHeap, HashMap};

    use super::due_in_heap;

    type Heap = BinaryHeap<Reverse<(i64, i64)>>;

    /// Held tasks (row -> schedule time) and a heap with an entry per task plus `stale` ones.
    fn setup(n: i64, stale: &[(i64, i64)]) -> (HashMap<i64, i64>, Heap) {
        // Schedule times spread over 0..1000, not in row order.
        let held: HashMap<i64, i64> = (0..n).map(|r| (r, (r * 7919) % 1000)).collect();
        let mut heap: BinaryHeap<_> = held.iter().map(|(r, at)| Reverse((*at, *r))).collect();
        heap.extend(stale.iter().map(|(at, r)| Reverse((*at, *r))));
        (held, heap)
    }

    fn brute(held: &HashMap<i64, i64>, now: i64) -> usize {
        held.values().filter(|at| **at <= now).count()
    }

    #[test]
    fn counts_due_entries_with_and_without_stale_ones() {
        // Stale: a deleted row (100) and a row rescheduled later (5: its old entry at 1).
        let cases: [&[(i64, i64)]; 2] = [&[], &[(3, 100), (1, 5)]];
        for stale in cases {
            let (mut held, heap) = setup(300, stale);
            if !stale.is_empty() {
                held.remove(&100);
            }
            let live = |row: i64, at: i64| held.get(&row) == Some(&at);
            for now in [-1, 0, 1, 3, 250, 999, 5000] {
                assert_eq!(
                    due_in_heap(heap.as_slice(), held.len(), now, live),
                    brute(&held, now),
                    "now {now}, stale {stale:?}"
                );
            }
        }
    }
}
