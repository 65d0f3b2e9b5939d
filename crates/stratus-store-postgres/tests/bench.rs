//! Durable creates per second through the `Store` API (not a test: run it by hand).
//!
//! ```text
//! cargo test --release -p stratus-store-postgres --test bench -- --ignored --nocapture
//! ```
//!
//! Starts a durable PostgreSQL (`fsync` and `synchronous_commit` on), and for each writer
//! count in `STRATUS_BENCH_WRITERS` (default `1,2,4`) a fresh schema with one queue holding a
//! backlog of 20,000 tasks; then 1, 16 and 64 concurrent callers create 1 KiB-body tasks with
//! ascending IDs, one per call, for `STRATUS_BENCH_SECS` seconds each (default 4), printing
//! creates/s and calls per commit. `STRATUS_BENCH_DURABLE=0` turns fsync off (to see the CPU
//! cost alone). Mirrors `stratus-store-sqlite`'s `store_bench` example
//! (`--ids sequential`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use stratus_store::{Store, Windows};
use stratus_store_postgres::{PgOptions, PgStore};
use stratus_testpg::PgServer;
use stratus_types::proto::tasks::{HttpMethod, HttpRequest, Queue, Task, task::MessageType};
use stratus_types::queue::normalize_queue;
use stratus_types::time::micros_to_ts;
use stratus_types::{LocationPath, Micros, QueuePath};

const W: Windows = Windows {
    tombstone_ttl: 3_600_000_000,
    queue_reuse_block: 7 * 86_400_000_000,
    retain_succeeded: 3_600_000_000,
    retain_failed: 7 * 86_400_000_000,
};
const T0: Micros = 1_900_000_000_000_000;

fn task(q: &QueuePath, n: u64) -> Task {
    Task {
        name: q.task(&format!("{n:019}")).to_string(),
        schedule_time: Some(micros_to_ts(T0 + (n as i64 % 3_600) * 1_000_000)),
        dispatch_deadline: Some(stratus_types::proto::wkt::Duration {
            seconds: 600,
            nanos: 0,
        }),
        message_type: Some(MessageType::HttpRequest(HttpRequest {
            url: "http://127.0.0.1:9000/work".into(),
            http_method: HttpMethod::Post as i32,
            body: vec![b'x'; 1024],
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn env_list(name: &str, default: &str) -> Vec<usize> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run by hand with --ignored --nocapture"]
async fn bench_creates() {
    let durable = std::env::var("STRATUS_BENCH_DURABLE").map_or(true, |v| v != "0");
    let server =
        PgServer::start_with(stratus_testpg::PgOptions { durable }).expect("start PostgreSQL");
    let url = server.fresh_database().expect("database");
    let secs = env_list("STRATUS_BENCH_SECS", "4")[0] as u64;
    for writers in env_list("STRATUS_BENCH_WRITERS", "1,2,4") {
        let store = PgStore::connect(
            &url,
            PgOptions {
                schema: format!("bench_w{writers}"),
                writers,
                pool_size: 16,
                ..PgOptions::default()
            },
        )
        .await
        .expect("connect");
        let q = LocationPath {
            project: "bench".into(),
            location: "local".into(),
        }
        .queue("q");
        store
            .create_queue(
                normalize_queue(Queue {
                    name: q.to_string(),
                    ..Default::default()
                }),
                T0,
                W,
            )
            .await
            .expect("create_queue");
        let next = Arc::new(AtomicU64::new(0));
        for chunk in 0..200 {
            let tasks = (0..100).map(|i| task(&q, chunk * 100 + i)).collect();
            store.create_tasks(&q, tasks, T0, W).await.expect("backlog");
        }
        next.store(20_000, Ordering::Relaxed);
        for callers in env_list("STRATUS_BENCH_CALLERS", "1,16,64") {
            let before = store.writer_stats();
            let done = Arc::new(AtomicU64::new(0));
            let deadline = Instant::now() + Duration::from_secs(secs);
            let started = Instant::now();
            let workers: Vec<_> = (0..callers)
                .map(|_| {
                    let (store, q, next, done) =
                        (store.clone(), q.clone(), next.clone(), done.clone());
                    tokio::spawn(async move {
                        while Instant::now() < deadline {
                            let n = next.fetch_add(1, Ordering::Relaxed);
                            let out = store
                                .create_tasks(&q, vec![task(&q, n)], T0, W)
                                .await
                                .expect("create_tasks");
                            assert!(out[0].is_ok(), "{:?}", out[0]);
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                    })
                })
                .collect();
            for w in workers {
                w.await.expect("caller");
            }
            let elapsed = started.elapsed().as_secs_f64();
            let n = done.load(Ordering::Relaxed);
            let after = store.writer_stats();
            let commits = (after.commits - before.commits).max(1);
            println!(
                "writers {writers} callers {callers:>2}: {:>7.0} creates/s, {:.1} calls/commit",
                n as f64 / elapsed,
                (after.items - before.items) as f64 / commits as f64
            );
        }
    }
}
