//! The metrics of a Stratus process, rendered in the Prometheus text format (`GET /metrics`).
//!
//! One [`Registry`] per process ([`global`]): the API transports, the dispatcher and the store
//! writers all count into it without being handed a reference, so no constructor changes with
//! a new metric. Everything is an atomic: the hot paths look a queue's [`QueueMetrics`] up once
//! (a dispatcher actor holds its `Arc` for its whole life) and then only add to atomics, so
//! counting never takes a lock that a scrape or another queue could hold. The only locks are
//! the maps from label values to series, taken for reading on lookup and for writing the first
//! time a series appears.
//!
//! docs/metrics.md lists every metric with its labels and exact meaning.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Instant;

pub mod window;

/// A monotonically increasing count (Prometheus `counter`).
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current count.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (Prometheus `gauge`).
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }

    /// Adds `n` (negative to subtract).
    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Upper bounds, in seconds, of the latency histograms: from 1 ms (a loopback receiver) to
/// 10 minutes (the longest dispatch deadline).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 600.0,
];

/// Upper bounds of the store's batch-size histogram (writes per commit), up to the writers'
/// largest batches.
pub const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// A histogram with fixed buckets (Prometheus `histogram`). Values are recorded in integer
/// units (µs for the seconds histograms, items for sizes) so the sum stays an atomic integer.
#[derive(Debug)]
pub struct Histogram {
    /// Upper bounds as rendered (`le`).
    bounds: &'static [f64],
    /// Upper bounds in units.
    limits: Box<[u64]>,
    /// Per-bucket counts (not cumulative); the last one is `+Inf`.
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum: AtomicU64,
    /// The size of one unit in the rendered scale.
    unit: f64,
}

impl Histogram {
    /// A histogram of durations in seconds, recorded in µs.
    pub fn seconds() -> Histogram {
        Histogram::new(LATENCY_BUCKETS, 1e-6)
    }

    /// A histogram of sizes with [`BATCH_BUCKETS`], recorded as whole numbers.
    pub fn sizes() -> Histogram {
        Histogram::new(BATCH_BUCKETS, 1.0)
    }

    fn new(bounds: &'static [f64], unit: f64) -> Histogram {
        let limits = bounds
            .iter()
            .map(|b| (b / unit).round() as u64)
            .collect::<Vec<_>>()
            .into_boxed_slice();
        let buckets = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Histogram {
            bounds,
            limits,
            buckets,
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            unit,
        }
    }

    /// Records one value of `v` units.
    pub fn observe(&self, v: u64) {
        let i = self.limits.partition_point(|&l| l < v);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(v, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a duration (in µs for [`Histogram::seconds`]).
    pub fn observe_duration(&self, d: std::time::Duration) {
        self.observe(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    /// How many values were recorded.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0u64;
        for (i, b) in self.bounds.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cumulative}");
        }
        cumulative += self.buckets[self.bounds.len()].load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}"
        );
        let sum = self.sum.load(Ordering::Relaxed) as f64 * self.unit;
        let _ = writeln!(out, "{name}_sum{} {sum}", braces(labels));
        // The count is the buckets' total, so a scrape never shows them disagree.
        let _ = writeln!(out, "{name}_count{} {cumulative}", braces(labels));
    }
}

fn braces(labels: &str) -> String {
    if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    }
}

/// How an attempt ended, the `class` label of `stratus_queue_outcomes_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeClass {
    /// A 2xx answer: delivered.
    S2xx,
    /// A 1xx or 3xx final answer (a redirect that could not be followed).
    S3xx,
    /// A 4xx answer.
    S4xx,
    /// A 5xx answer.
    S5xx,
    /// No answer within the dispatch deadline.
    Timeout,
    /// No answer at all: connection refused or reset, a refused target, an unbuildable request.
    Error,
}

impl OutcomeClass {
    /// Every class, in rendering order.
    pub const ALL: [OutcomeClass; 6] = [
        OutcomeClass::S2xx,
        OutcomeClass::S3xx,
        OutcomeClass::S4xx,
        OutcomeClass::S5xx,
        OutcomeClass::Timeout,
        OutcomeClass::Error,
    ];

    /// The class of an attempt's result.
    pub fn of(http_status: Option<u16>, timed_out: bool) -> OutcomeClass {
        match http_status {
            _ if timed_out => OutcomeClass::Timeout,
            Some(200..=299) => OutcomeClass::S2xx,
            Some(400..=499) => OutcomeClass::S4xx,
            Some(500..=599) => OutcomeClass::S5xx,
            Some(_) => OutcomeClass::S3xx,
            None => OutcomeClass::Error,
        }
    }

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            OutcomeClass::S2xx => "2xx",
            OutcomeClass::S3xx => "3xx",
            OutcomeClass::S4xx => "4xx",
            OutcomeClass::S5xx => "5xx",
            OutcomeClass::Timeout => "timeout",
            OutcomeClass::Error => "error",
        }
    }
}

/// One queue's metrics on this node. Looked up once per dispatcher actor and held.
#[derive(Debug)]
pub struct QueueMetrics {
    /// Tasks created through this node's API (committed; duplicates not counted).
    pub creates: Counter,
    /// Creates refused because the name exists or recently existed.
    pub dedup_hits: Counter,
    /// Attempts started (regular dispatches and RunTask).
    pub dispatches: Counter,
    /// Attempts ended, by [`OutcomeClass`] (indexed like [`OutcomeClass::ALL`]).
    outcomes: [Counter; 6],
    /// Failed attempts whose task was scheduled again.
    pub retries: Counter,
    /// Failed attempts whose task ran out of attempts or retry duration.
    pub permanent_failures: Counter,
    /// From a task's schedule_time to its attempt's start (regular dispatches only).
    pub lag: Histogram,
    /// From an attempt's start to its answer, timeout or error.
    pub attempt_duration: Histogram,
    /// Tasks held by the dispatcher, scheduled within the look-ahead window, not yet due.
    pub pending: Gauge,
    /// Tasks held by the dispatcher that are due and wait for a slot, a token or a resume.
    pub due: Gauge,
    /// Attempts being sent or recorded.
    pub in_flight: Gauge,
    /// When this node started counting the queue (the base of its first window).
    pub born: Instant,
    /// Readings of the counters for the one-minute window ([`window`]); touched only by the
    /// sampler and the statistics readers, never by the counting paths.
    readings: Mutex<window::Readings>,
}

impl Default for QueueMetrics {
    fn default() -> Self {
        QueueMetrics {
            creates: Counter::default(),
            dedup_hits: Counter::default(),
            dispatches: Counter::default(),
            outcomes: Default::default(),
            retries: Counter::default(),
            permanent_failures: Counter::default(),
            lag: Histogram::seconds(),
            attempt_duration: Histogram::seconds(),
            pending: Gauge::default(),
            due: Gauge::default(),
            in_flight: Gauge::default(),
            born: Instant::now(),
            readings: Mutex::default(),
        }
    }
}

impl QueueMetrics {
    /// The counter of attempts that ended as `class`.
    pub fn outcome(&self, class: OutcomeClass) -> &Counter {
        let i = OutcomeClass::ALL
            .iter()
            .position(|c| *c == class)
            .unwrap_or(OutcomeClass::ALL.len() - 1);
        &self.outcomes[i]
    }
}

/// The group-commit writer of one store backend.
#[derive(Debug)]
pub struct StoreMetrics {
    /// How long one commit took: running the batch's writes and the commit (with its fsync).
    pub commit_seconds: Histogram,
    /// Writes merged into one commit.
    pub batch_size: Histogram,
}

impl Default for StoreMetrics {
    fn default() -> Self {
        StoreMetrics {
            commit_seconds: Histogram::seconds(),
            batch_size: Histogram::sizes(),
        }
    }
}

/// The API transports, the `transport` label.
pub const TRANSPORTS: [&str; 2] = ["rest", "grpc"];

type ApiKey = (&'static str, &'static str, &'static str);

/// Every series of one process.
#[derive(Debug, Default)]
pub struct Registry {
    queues: RwLock<BTreeMap<String, Arc<QueueMetrics>>>,
    api: RwLock<BTreeMap<ApiKey, Arc<Counter>>>,
    /// The embedded SQLite store's writer.
    pub sqlite: StoreMetrics,
    /// The PostgreSQL store's writers.
    pub postgres: StoreMetrics,
}

/// The process's registry.
pub fn global() -> &'static Registry {
    static GLOBAL: OnceLock<Registry> = OnceLock::new();
    GLOBAL.get_or_init(Registry::default)
}

impl Registry {
    /// The metrics of `queue` (its full name), created on first use. Hold the `Arc` on hot
    /// paths rather than looking it up per event.
    pub fn queue(&self, queue: &str) -> Arc<QueueMetrics> {
        if let Some(q) = read(&self.queues).get(queue) {
            return q.clone();
        }
        write(&self.queues)
            .entry(queue.to_string())
            .or_default()
            .clone()
    }

    /// Counts one API call: `transport` from [`TRANSPORTS`], `rpc` a method name from a fixed
    /// set (never request text), `code` the canonical code name of the answer.
    pub fn api_request(&self, transport: &'static str, rpc: &'static str, code: &'static str) {
        let key = (transport, rpc, code);
        if let Some(c) = read(&self.api).get(&key) {
            c.inc();
            return;
        }
        write(&self.api).entry(key).or_default().inc();
    }

    /// API calls counted so far for one label set (0 when none).
    pub fn api_requests(&self, transport: &str, rpc: &str, code: &str) -> u64 {
        read(&self.api)
            .iter()
            .filter(|((t, r, c), _)| *t == transport && *r == rpc && *c == code)
            .map(|(_, v)| v.get())
            .sum()
    }

    /// Every series in the Prometheus text format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        let queues: Vec<(String, Arc<QueueMetrics>)> = read(&self.queues)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let ql = |name: &str| format!("queue=\"{}\"", escape(name));

        type Pick = fn(&QueueMetrics) -> &Counter;
        let counters: [(&str, &str, Pick); 5] = [
            (
                "stratus_queue_creates_total",
                "Tasks created through this node's API (committed).",
                |q| &q.creates,
            ),
            (
                "stratus_queue_dedup_hits_total",
                "Creates refused because the task name exists or recently existed.",
                |q| &q.dedup_hits,
            ),
            (
                "stratus_queue_dispatches_total",
                "Attempts started by this node (regular dispatches and RunTask).",
                |q| &q.dispatches,
            ),
            (
                "stratus_queue_retries_total",
                "Failed attempts whose task was scheduled again.",
                |q| &q.retries,
            ),
            (
                "stratus_queue_permanent_failures_total",
                "Failed attempts that left their task failed for good (out of attempts or retry duration).",
                |q| &q.permanent_failures,
            ),
        ];
        for (name, help, pick) in &counters {
            header(&mut out, name, help, "counter");
            for (q, m) in &queues {
                let _ = writeln!(out, "{name}{{{}}} {}", ql(q), pick(m).get());
            }
        }

        header(
            &mut out,
            "stratus_queue_outcomes_total",
            "Attempts ended, by class of result: 2xx, 3xx, 4xx, 5xx, timeout (no answer by the dispatch deadline), error (no answer).",
            "counter",
        );
        for (q, m) in &queues {
            for c in OutcomeClass::ALL {
                let _ = writeln!(
                    out,
                    "stratus_queue_outcomes_total{{{},class=\"{}\"}} {}",
                    ql(q),
                    c.label(),
                    m.outcome(c).get()
                );
            }
        }

        type PickG = fn(&QueueMetrics) -> &Gauge;
        let gauges: [(&str, &str, PickG); 3] = [
            (
                "stratus_queue_tasks_pending",
                "Tasks the dispatcher holds, scheduled within its look-ahead window and not yet due.",
                |q| &q.pending,
            ),
            (
                "stratus_queue_tasks_due",
                "Tasks the dispatcher holds that are due and wait for a concurrency slot, a rate token or a resume.",
                |q| &q.due,
            ),
            (
                "stratus_queue_tasks_in_flight",
                "Attempts being sent or recorded by this node.",
                |q| &q.in_flight,
            ),
        ];
        for (name, help, pick) in gauges {
            header(&mut out, name, help, "gauge");
            for (q, m) in &queues {
                let _ = writeln!(out, "{name}{{{}}} {}", ql(q), pick(m).get());
            }
        }

        type PickH = fn(&QueueMetrics) -> &Histogram;
        let hists: [(&str, &str, PickH); 2] = [
            (
                "stratus_queue_dispatch_lag_seconds",
                "From a task's schedule time to the start of its attempt (regular dispatches).",
                |q| &q.lag,
            ),
            (
                "stratus_queue_attempt_duration_seconds",
                "From an attempt's start to its answer, timeout or error.",
                |q| &q.attempt_duration,
            ),
        ];
        for (name, help, pick) in hists {
            header(&mut out, name, help, "histogram");
            for (q, m) in &queues {
                pick(m).render(&mut out, name, &ql(q));
            }
        }

        header(
            &mut out,
            "stratus_store_commit_seconds",
            "How long one group commit of the store's writer took (its writes and the durable commit).",
            "histogram",
        );
        self.sqlite.commit_seconds.render(
            &mut out,
            "stratus_store_commit_seconds",
            "store=\"sqlite\"",
        );
        self.postgres.commit_seconds.render(
            &mut out,
            "stratus_store_commit_seconds",
            "store=\"postgres\"",
        );
        header(
            &mut out,
            "stratus_store_commit_batch_size",
            "Writes merged into one group commit.",
            "histogram",
        );
        self.sqlite.batch_size.render(
            &mut out,
            "stratus_store_commit_batch_size",
            "store=\"sqlite\"",
        );
        self.postgres.batch_size.render(
            &mut out,
            "stratus_store_commit_batch_size",
            "store=\"postgres\"",
        );

        header(
            &mut out,
            "stratus_api_requests_total",
            "API calls answered, by transport, RPC and canonical code.",
            "counter",
        );
        for ((t, r, c), v) in read(&self.api).iter() {
            let _ = writeln!(
                out,
                "stratus_api_requests_total{{transport=\"{t}\",rpc=\"{r}\",code=\"{c}\"}} {}",
                v.get()
            );
        }
        out
    }
}

/// Appends one counter without labels (for values kept elsewhere, like auth failures).
pub fn render_counter(out: &mut String, name: &str, help: &str, value: u64) {
    header(out, name, help, "counter");
    let _ = writeln!(out, "{name} {value}");
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value escaped for the text format.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn lock<T>(l: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    l.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::seconds();
        h.observe(500); // 0.5 ms
        h.observe(1_000); // exactly 1 ms: in le="0.001"
        h.observe(2_000_000_000); // past every bound
        let mut out = String::new();
        h.render(&mut out, "x", "");
        assert!(out.contains("x_bucket{le=\"0.001\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"600\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count 3\n"), "{out}");
        assert_eq!(h.count(), 3);
    }

    #[test]
    fn queue_series_render_with_labels() {
        let r = Registry::default();
        let q = r.queue("projects/p/locations/l/queues/q");
        q.creates.add(3);
        q.outcome(OutcomeClass::of(Some(503), false)).inc();
        r.api_request("rest", "CreateTask", "OK");
        let out = r.render();
        assert!(out.contains(
            "stratus_queue_creates_total{queue=\"projects/p/locations/l/queues/q\"} 3\n"
        ));
        assert!(out.contains(
            "stratus_queue_outcomes_total{queue=\"projects/p/locations/l/queues/q\",class=\"5xx\"} 1\n"
        ));
        assert!(out.contains(
            "stratus_api_requests_total{transport=\"rest\",rpc=\"CreateTask\",code=\"OK\"} 1\n"
        ));
        assert!(out.contains("# TYPE stratus_queue_dispatch_lag_seconds histogram\n"));
        assert_eq!(OutcomeClass::of(Some(200), true), OutcomeClass::Timeout);
        assert_eq!(OutcomeClass::of(None, false), OutcomeClass::Error);
    }
}
