//! Durable creates per second through the `Store` API, with a standing backlog.
//!
//! ```text
//! cargo run --release -p stratus-store-sqlite --example store_bench -- \
//!     [--backlog N] [--secs S] [--dir PATH] [--ids random|sequential] [--page-size BYTES]
//! ```
//!
//! Opens a fresh store (a temporary directory unless `--dir`), creates one queue, fills it with a
//! backlog of `N` tasks (default 100,000) due over the next hour, then for 1, 16 and 64
//! concurrent callers creates 1 KiB-body tasks one per call for `S` seconds each (default 5),
//! printing creates/s, the mean number of calls per commit and the call latency.
//! Task IDs are random-looking 19-digit numbers, like the IDs Cloud Tasks generates
//! (`--ids sequential` makes them ascending); `--page-size BYTES` sets the page size of the new
//! database.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use stratus_store::{Store, Windows};
use stratus_store_sqlite::{SqliteOptions, SqliteStore};
use stratus_types::proto::tasks::{HttpMethod, HttpRequest, Queue, Task, task::MessageType};
use stratus_types::time::micros_to_ts;
use stratus_types::{LocationPath, Micros, QueuePath};

const WINDOWS: Windows = Windows {
    tombstone_ttl: 3_600_000_000,
    queue_reuse_block: 7 * 86_400_000_000,
    retain_succeeded: 3_600_000_000,
    retain_failed: 7 * 86_400_000_000,
};
const LEVELS: [usize; 3] = [1, 16, 64];

struct Args {
    backlog: usize,
    secs: u64,
    dir: Option<String>,
    sequential_ids: bool,
    page_size: Option<i64>,
}

fn args() -> Args {
    let mut a = Args {
        backlog: 100_000,
        secs: 5,
        dir: None,
        sequential_ids: false,
        page_size: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--backlog" => a.backlog = value.parse().expect("--backlog N"),
            "--secs" => a.secs = value.parse().expect("--secs S"),
            "--dir" => a.dir = Some(value),
            "--ids" => a.sequential_ids = value == "sequential",
            "--page-size" => a.page_size = Some(value.parse().expect("--page-size BYTES")),
            _ => panic!("unknown flag {flag}"),
        }
    }
    a
}

fn now() -> Micros {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// splitmix64: a counter turned into a well-spread number.
fn spread(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) % 10_000_000_000_000_000_000
}

/// Task `n` of the run: a random-looking 19-digit ID, or `n` itself with `--ids sequential`.
fn task(
    queue: &QueuePath,
    sequential: bool,
    n: u64,
    schedule_time: Micros,
    create_time: Micros,
) -> Task {
    let id = format!("{:019}", if sequential { n } else { spread(n) });
    Task {
        name: queue.task(&id).to_string(),
        schedule_time: Some(micros_to_ts(schedule_time)),
        create_time: Some(micros_to_ts(create_time - create_time % 1_000_000)),
        dispatch_deadline: Some(stratus_types::proto::wkt::Duration {
            seconds: 600,
            nanos: 0,
        }),
        message_type: Some(MessageType::HttpRequest(HttpRequest {
            url: "http://127.0.0.1:9000/work".into(),
            http_method: HttpMethod::Post as i32,
            headers: [(
                "Content-Type".to_string(),
                "application/octet-stream".to_string(),
            )]
            .into(),
            body: vec![b'x'; 1024],
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

#[tokio::main]
async fn main() {
    let a = args();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = a
        .dir
        .as_deref()
        .map_or_else(|| tmp.path().to_path_buf(), Into::into);
    let mut opts = SqliteOptions::default();
    if let Some(p) = a.page_size {
        opts.page_size = p;
    }
    let sqlite = SqliteStore::open(&dir, opts).expect("open store");
    println!(
        "store: {} ({} cores)",
        sqlite.path().display(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let store: Arc<dyn Store> = Arc::new(sqlite.clone());
    let queue = LocationPath {
        project: "bench".into(),
        location: "local".into(),
    }
    .queue("q");
    let q = Queue {
        name: queue.to_string(),
        state: 1,
        ..Default::default()
    };
    store
        .create_queue(q, now(), WINDOWS)
        .await
        .expect("create queue");

    // The standing backlog: tasks due over the next hour, in random order.
    let counter = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let t0 = now();
    for chunk in 0..a.backlog.div_ceil(500) {
        let n = 500.min(a.backlog - chunk * 500);
        let tasks = (0..n)
            .map(|_| {
                let i = counter.fetch_add(1, Ordering::Relaxed);
                let due = t0 + i64::try_from(spread(i) % 3_600_000_000).unwrap_or(0);
                task(&queue, a.sequential_ids, i, due, t0)
            })
            .collect();
        for r in store
            .create_tasks(&queue, tasks, now(), WINDOWS)
            .await
            .expect("backlog")
        {
            r.expect("backlog task");
        }
    }
    println!("backlog: {} tasks in {:.1?}", a.backlog, started.elapsed());

    println!(
        "{:>8} {:>12} {:>14} {:>10} {:>10}",
        "callers", "creates/s", "calls/commit", "p50 µs", "p99 µs"
    );
    for callers in LEVELS {
        let before = sqlite.stats();
        let deadline = Instant::now() + Duration::from_secs(a.secs);
        let started = Instant::now();
        let workers: Vec<_> = (0..callers)
            .map(|_| {
                let (store, queue, counter) = (store.clone(), queue.clone(), counter.clone());
                let sequential = a.sequential_ids;
                tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    while Instant::now() < deadline {
                        let t = now();
                        let task = task(
                            &queue,
                            sequential,
                            counter.fetch_add(1, Ordering::Relaxed),
                            t,
                            t,
                        );
                        let sent = Instant::now();
                        let out = store
                            .create_tasks(&queue, vec![task], t, WINDOWS)
                            .await
                            .expect("create");
                        latencies
                            .push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
                        assert!(matches!(out.as_slice(), [Ok(_)]), "create failed: {out:?}");
                    }
                    latencies
                })
            })
            .collect();
        let mut latencies = Vec::new();
        for w in workers {
            latencies.extend(w.await.expect("worker"));
        }
        let elapsed = started.elapsed().as_secs_f64();
        let after = sqlite.stats();
        latencies.sort_unstable();
        #[allow(clippy::cast_precision_loss)]
        let (rate, per_commit) = (
            latencies.len() as f64 / elapsed,
            (after.items - before.items) as f64 / (after.commits - before.commits).max(1) as f64,
        );
        println!(
            "{callers:>8} {rate:>12.0} {per_commit:>14.1} {:>10} {:>10}",
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99)
        );
    }
}
