//! Crash safety of dispatch, black-box: a real `stratus serve` delivering to a slow receiver
//! on 127.0.0.1.
//!
//! - SIGKILL mid-stream, restart on the same data: every task is delivered at least once, none
//!   stays pending, and the duplicates are at most the attempts that could be in flight.
//! - SIGTERM with attempts in flight: they finish and are recorded within the grace period, so
//!   nothing is delivered twice after the restart.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use serde_json::{Value, json};
use support::Server;

const LOC: &str = "projects/p/locations/l";

/// Counts deliveries per task name; answers 200 after `delay`.
#[derive(Clone)]
struct Receiver {
    counts: Arc<Mutex<HashMap<String, usize>>>,
    total: Arc<AtomicUsize>,
    in_flight: Arc<AtomicUsize>,
    url: String,
}

impl Receiver {
    async fn start(delay: Duration) -> Receiver {
        let counts = Arc::new(Mutex::new(HashMap::new()));
        let total = Arc::new(AtomicUsize::new(0));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let (c, t, f) = (counts.clone(), total.clone(), in_flight.clone());
        let app = axum::Router::new().fallback(move |headers: HeaderMap| {
            let (c, t, f) = (c.clone(), t.clone(), f.clone());
            async move {
                f.fetch_add(1, Ordering::SeqCst);
                let name = headers
                    .get("x-cloudtasks-taskname")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                *c.lock().unwrap().entry(name).or_insert(0) += 1;
                t.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                f.fetch_sub(1, Ordering::SeqCst);
                "ok"
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            counts,
            total,
            in_flight,
            url,
        }
    }

    fn total(&self) -> usize {
        self.total.load(Ordering::SeqCst)
    }

    fn distinct(&self) -> usize {
        self.counts.lock().unwrap().len()
    }
}

async fn post(http: &reqwest::Client, url: String, body: Value) -> Value {
    let r = http.post(&url).json(&body).send().await.unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "POST {url}: {status} {v}");
    v
}

/// Creates `queues` paused queues and `per_queue` tasks in each (batches of 100) to `url`.
async fn fill(
    http: &reqwest::Client,
    base: &str,
    queues: usize,
    per_queue: usize,
    concurrent: i32,
    url: &str,
) -> Vec<String> {
    let mut names = Vec::new();
    for q in 0..queues {
        let queue = format!("{LOC}/queues/crash{q}");
        post(
            http,
            format!("{base}/v2/{LOC}/queues"),
            json!({"name": queue, "rateLimits": {"maxDispatchesPerSecond": 500,
                   "maxConcurrentDispatches": concurrent}}),
        )
        .await;
        post(http, format!("{base}/v2/{queue}:pause"), json!({})).await;
        for chunk in 0..per_queue.div_ceil(100) {
            let requests: Vec<Value> = (chunk * 100..((chunk + 1) * 100).min(per_queue))
                .map(|i| {
                    json!({"parent": queue, "task": {"name": format!("{queue}/tasks/t{q}x{i}"),
                       "httpRequest": {"url": format!("{url}/work"), "body": "aGVsbG8="}}})
                })
                .collect();
            post(
                http,
                format!("{base}/v2/{queue}/tasks:batchCreate"),
                json!({"requests": requests}),
            )
            .await;
        }
        names.push(queue);
    }
    names
}

async fn resume_all(http: &reqwest::Client, base: &str, queues: &[String]) {
    for q in queues {
        post(http, format!("{base}/v2/{q}:resume"), json!({})).await;
    }
}

async fn pending(http: &reqwest::Client, base: &str, queues: &[String]) -> usize {
    let mut n = 0;
    for q in queues {
        let v = support::get_json(http, &format!("{base}/v2/{q}/tasks?pageSize=1000")).await;
        n += v["tasks"].as_array().map_or(0, Vec::len);
    }
    n
}

async fn wait(what: &str, limit: Duration, mut done: impl AsyncFnMut() -> bool) {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out after {limit:?} waiting for {what}");
}

#[test]
fn sigkill_mid_stream_loses_nothing() {
    const QUEUES: usize = 4;
    const PER_QUEUE: usize = 2_500;
    const CONCURRENT: i32 = 50;
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let recv = Receiver::start(Duration::from_millis(20)).await;
        let http = reqwest::Client::new();
        let server = Server::start(dir.path(), &[]);
        let port = server.port;
        let base = server.url();
        let queues = fill(&http, &base, QUEUES, PER_QUEUE, CONCURRENT, &recv.url).await;
        let total = QUEUES * PER_QUEUE;
        resume_all(&http, &base, &queues).await;

        // Mid-stream: a good part delivered, most not.
        wait("a third of the deliveries", Duration::from_secs(120), async || {
            recv.total() >= total / 3
        })
        .await;
        server.kill();
        let at_kill = recv.total();
        assert!(at_kill < total, "everything was delivered before the kill");

        let server = Server::start_on(dir.path(), port, &[]);
        let base = server.url();
        wait("every task delivered", Duration::from_secs(180), async || {
            recv.distinct() >= total
        })
        .await;
        wait("no task pending", Duration::from_secs(60), async || {
            pending(&http, &base, &queues).await == 0
        })
        .await;
        // Let late duplicates (if any) arrive before counting.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let counts = recv.counts.lock().unwrap().clone();
        assert_eq!(counts.len(), total, "tasks delivered");
        let duplicates: usize = counts.values().map(|n| n - 1).sum();
        let could_be_in_flight = QUEUES * CONCURRENT as usize;
        assert!(
            duplicates <= could_be_in_flight,
            "{duplicates} duplicate deliveries, more than the {could_be_in_flight} attempts that could be in flight"
        );
        eprintln!(
            "crash test: {at_kill} delivered before SIGKILL, {duplicates} duplicates after restart"
        );
    });
}

#[test]
fn sigterm_drains_attempts_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // Each answer takes a second; 20 attempts are in flight when SIGTERM comes.
        let recv = Receiver::start(Duration::from_secs(1)).await;
        let http = reqwest::Client::new();
        let server = Server::start(dir.path(), &["--shutdown-grace", "20s"]);
        let port = server.port;
        let base = server.url();
        let queues = fill(&http, &base, 1, 20, 100, &recv.url).await;
        resume_all(&http, &base, &queues).await;
        wait(
            "20 attempts in flight",
            Duration::from_secs(30),
            async || recv.in_flight.load(Ordering::SeqCst) == 20,
        )
        .await;
        let status = std::process::Command::new("kill")
            .args(["-TERM", &server.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let mut server = server;
        let exited = server.child.wait().unwrap();
        assert!(exited.success(), "graceful shutdown failed: {exited}");

        let server = Server::start_on(dir.path(), port, &[]);
        let base = server.url();
        assert_eq!(
            pending(&http, &base, &queues).await,
            0,
            "tasks left pending"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(recv.total(), 20, "a drained attempt was delivered again");
        assert_eq!(recv.distinct(), 20);
    });
}
