//! `GET /metrics`, black-box: a real `stratus serve` delivering to a receiver on 127.0.0.1,
//! scraped while the deliveries happen and after. The counters must move with the deliveries:
//! creates, dispatches and 2xx outcomes reach the number of tasks, the depth gauges return to
//! zero, the histograms count every attempt, a task answered with 500 shows its retry, its
//! 5xx class and its permanent failure, and the API counts every CreateTask by code. The queue
//! statistics call (`/stratus/v1/…/queueStats`) shows the same counts for the last minute.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::Server;

const LOC: &str = "projects/p/locations/l";

/// Tasks delivered to the succeeding queue.
const N: usize = 20;

/// Answers `/ok` with 200 after a pause (so deliveries take a while) and `/fail` with 500,
/// counting each.
struct Receiver {
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    url: String,
}

impl Receiver {
    async fn start() -> Receiver {
        let ok = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let (o, f) = (ok.clone(), failed.clone());
        let app = axum::Router::new()
            .route(
                "/ok",
                axum::routing::post(move || {
                    let o = o.clone();
                    async move {
                        tokio::time::sleep(Duration::from_millis(60)).await;
                        o.fetch_add(1, Ordering::SeqCst);
                        "ok"
                    }
                }),
            )
            .route(
                "/fail",
                axum::routing::post(move || {
                    let f = f.clone();
                    async move {
                        f.fetch_add(1, Ordering::SeqCst);
                        (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "no")
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { ok, failed, url }
    }
}

/// The value of one series (name with its labels, exactly as rendered); `None` when absent.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

fn q(name: &str) -> String {
    format!("queue=\"{LOC}/queues/{name}\"")
}

fn get(text: &str, series: &str) -> f64 {
    value(text, series).unwrap_or_else(|| panic!("series {series} missing from:\n{text}"))
}

async fn scrape(http: &reqwest::Client, base: &str) -> String {
    let r = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert!(r.status().is_success(), "GET /metrics: {}", r.status());
    let ct = r.headers()[reqwest::header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_string();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    r.text().await.unwrap()
}

async fn post(http: &reqwest::Client, url: String, body: Value) -> reqwest::StatusCode {
    http.post(&url).json(&body).send().await.unwrap().status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_follow_deliveries() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let base = server.url();
    let http = reqwest::Client::new();
    let rx = Receiver::start().await;

    // One attempt at a time, so the deliveries take about N × 60 ms and can be watched.
    let s = post(
        &http,
        format!("{base}/v2/{LOC}/queues"),
        json!({"name": format!("{LOC}/queues/ok"), "rateLimits": {"maxConcurrentDispatches": 1}}),
    )
    .await;
    assert!(s.is_success(), "{s}");
    // Two attempts, 100 ms apart, then the task fails for good.
    let s = post(
        &http,
        format!("{base}/v2/{LOC}/queues"),
        json!({"name": format!("{LOC}/queues/bad"),
               "retryConfig": {"maxAttempts": 2, "minBackoff": "0.1s", "maxBackoff": "0.1s"}}),
    )
    .await;
    assert!(s.is_success(), "{s}");

    let ok_url = format!("{}/ok", rx.url);
    let tasks = format!("{base}/v2/{LOC}/queues/ok/tasks");
    for _ in 0..N - 1 {
        let s = post(
            &http,
            tasks.clone(),
            json!({"task": {"httpRequest": {"url": ok_url}}}),
        )
        .await;
        assert!(s.is_success(), "{s}");
    }
    // A named task, then the same name again: a duplicate.
    let named = json!({"task": {"name": format!("{LOC}/queues/ok/tasks/once"),
                                "httpRequest": {"url": ok_url}}});
    assert!(post(&http, tasks.clone(), named.clone()).await.is_success());
    assert_eq!(
        post(&http, tasks.clone(), named).await,
        reqwest::StatusCode::CONFLICT
    );
    let s = post(
        &http,
        format!("{base}/v2/{LOC}/queues/bad/tasks"),
        json!({"task": {"httpRequest": {"url": format!("{}/fail", rx.url)}}}),
    )
    .await;
    assert!(s.is_success(), "{s}");

    // During the load: the counters lead the receiver by at most the attempt in flight.
    let deadline = Instant::now() + Duration::from_secs(20);
    while rx.ok.load(Ordering::SeqCst) < 3 {
        assert!(Instant::now() < deadline, "deliveries did not start");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before = rx.ok.load(Ordering::SeqCst) as f64;
    let mid = scrape(&http, &base).await;
    let after = rx.ok.load(Ordering::SeqCst) as f64;
    assert!(
        after < (N - 3) as f64,
        "the load ended too soon to be watched"
    );
    let dispatched = get(
        &mid,
        &format!("stratus_queue_dispatches_total{{{}}}", q("ok")),
    );
    let succeeded = get(
        &mid,
        &format!("stratus_queue_outcomes_total{{{},class=\"2xx\"}}", q("ok")),
    );
    assert!(
        succeeded >= before - 1.0 && succeeded <= after,
        "2xx {succeeded} vs delivered {before}..{after}:\n{mid}"
    );
    assert!(
        dispatched >= succeeded && dispatched <= after + 1.0,
        "{mid}"
    );
    assert!(dispatched < N as f64, "{mid}");
    let in_flight = get(
        &mid,
        &format!("stratus_queue_tasks_in_flight{{{}}}", q("ok")),
    );
    assert!((0.0..=1.0).contains(&in_flight), "{mid}");
    // The rest wait for the concurrency slot: due, held by the dispatcher.
    assert!(
        get(&mid, &format!("stratus_queue_tasks_due{{{}}}", q("ok"))) > 0.0,
        "{mid}"
    );

    // After: everything delivered and recorded.
    let deadline = Instant::now() + Duration::from_secs(30);
    let done = loop {
        let m = scrape(&http, &base).await;
        let ok = value(
            &m,
            &format!("stratus_queue_outcomes_total{{{},class=\"2xx\"}}", q("ok")),
        );
        let failed = value(
            &m,
            &format!("stratus_queue_permanent_failures_total{{{}}}", q("bad")),
        );
        let idle = value(&m, &format!("stratus_queue_tasks_in_flight{{{}}}", q("ok")));
        if ok == Some(N as f64) && failed == Some(1.0) && idle == Some(0.0) {
            break m;
        }
        assert!(Instant::now() < deadline, "deliveries did not finish:\n{m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(rx.ok.load(Ordering::SeqCst), N);
    assert_eq!(rx.failed.load(Ordering::SeqCst), 2);
    let n = N as f64;
    let ok = q("ok");
    assert_eq!(
        get(&done, &format!("stratus_queue_creates_total{{{ok}}}")),
        n
    );
    assert_eq!(
        get(&done, &format!("stratus_queue_dedup_hits_total{{{ok}}}")),
        1.0
    );
    assert_eq!(
        get(&done, &format!("stratus_queue_dispatches_total{{{ok}}}")),
        n
    );
    assert_eq!(
        get(&done, &format!("stratus_queue_retries_total{{{ok}}}")),
        0.0
    );
    for class in ["3xx", "4xx", "5xx", "timeout", "error"] {
        let s = format!("stratus_queue_outcomes_total{{{ok},class=\"{class}\"}}");
        assert_eq!(get(&done, &s), 0.0, "{s}");
    }
    // The depth gauges return to zero once the queue is drained.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = scrape(&http, &base).await;
        let held = get(&m, &format!("stratus_queue_tasks_due{{{ok}}}"))
            + get(&m, &format!("stratus_queue_tasks_pending{{{ok}}}"))
            + get(&m, &format!("stratus_queue_tasks_in_flight{{{ok}}}"));
        if held == 0.0 {
            break;
        }
        assert!(Instant::now() < deadline, "gauges stay up:\n{m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Every attempt is in both histograms.
    for h in [
        "stratus_queue_dispatch_lag_seconds",
        "stratus_queue_attempt_duration_seconds",
    ] {
        assert_eq!(get(&done, &format!("{h}_count{{{ok}}}")), n, "{h}");
        assert_eq!(
            get(&done, &format!("{h}_bucket{{{ok},le=\"+Inf\"}}")),
            n,
            "{h}"
        );
    }
    // The receiver pauses 60 ms: no attempt took less than 50 ms.
    assert_eq!(
        get(
            &done,
            &format!("stratus_queue_attempt_duration_seconds_bucket{{{ok},le=\"0.05\"}}")
        ),
        0.0
    );

    // The failing task: two 5xx attempts, one retry, one permanent failure.
    let bad = q("bad");
    assert_eq!(
        get(
            &done,
            &format!("stratus_queue_outcomes_total{{{bad},class=\"5xx\"}}")
        ),
        2.0
    );
    assert_eq!(
        get(&done, &format!("stratus_queue_dispatches_total{{{bad}}}")),
        2.0
    );
    assert_eq!(
        get(&done, &format!("stratus_queue_retries_total{{{bad}}}")),
        1.0
    );
    assert_eq!(
        get(
            &done,
            &format!("stratus_queue_outcomes_total{{{bad},class=\"2xx\"}}")
        ),
        0.0
    );

    // The API: N + 1 creates answered OK (the failing task too), one ALREADY_EXISTS.
    let api = |rpc: &str, code: &str| {
        format!("stratus_api_requests_total{{transport=\"rest\",rpc=\"{rpc}\",code=\"{code}\"}}")
    };
    assert_eq!(get(&done, &api("CreateTask", "OK")), n + 1.0);
    assert_eq!(get(&done, &api("CreateTask", "ALREADY_EXISTS")), 1.0);
    assert_eq!(get(&done, &api("CreateQueue", "OK")), 2.0);
    assert_eq!(get(&done, "stratus_api_auth_failures_total"), 0.0);

    // The store's group commits carried at least every create and every outcome.
    let commits = get(
        &done,
        "stratus_store_commit_seconds_count{store=\"sqlite\"}",
    );
    assert!(commits >= 1.0, "{done}");
    assert_eq!(
        get(
            &done,
            "stratus_store_commit_batch_size_count{store=\"sqlite\"}"
        ),
        commits
    );
    let writes = get(
        &done,
        "stratus_store_commit_batch_size_sum{store=\"sqlite\"}",
    );
    assert!(writes >= 2.0 * n + 1.0 + 2.0, "{writes} writes:\n{done}");
    assert!(done.contains("# TYPE stratus_queue_dispatch_lag_seconds histogram\n"));
    assert!(done.contains("# TYPE stratus_queue_creates_total counter\n"));

    // The queue statistics (the dashboard's rates) tell the same story for the last minute.
    let stats = support::get_json(&http, &format!("{base}/stratus/v1/{LOC}/queueStats")).await;
    let list = stats["queueStats"].as_array().expect("queueStats");
    let of = |name: &str| {
        list.iter()
            .find(|s| s["queue"] == format!("{LOC}/queues/{name}"))
            .unwrap_or_else(|| panic!("no stats of {name}: {stats}"))
    };
    let ok = of("ok");
    let window = ok["windowSeconds"].as_f64().unwrap();
    assert!(window > 0.0 && window <= 60.0, "{stats}");
    assert_eq!(ok["creates"], N);
    assert_eq!(ok["dispatches"], N);
    assert_eq!(ok["succeeded"], N);
    assert_eq!(ok["failed"], 0);
    assert_eq!(ok["inFlight"], 0);
    assert_eq!(ok["nodes"], 1);
    let rate = ok["dispatchRate"].as_f64().unwrap();
    assert!(
        (rate - n / window).abs() <= 0.01 * (n / window) + 0.002,
        "{rate} vs {n}/{window}: {stats}"
    );
    let bad = of("bad");
    assert_eq!(
        (
            &bad["dispatches"],
            &bad["failed"],
            &bad["retries"],
            &bad["permanentFailures"]
        ),
        (&json!(2), &json!(2), &json!(1), &json!(1)),
        "{stats}"
    );
    // The CLI prints the same figures.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_stratus"))
        .args(["queues", "stats", "--project", "p", "--location", "l"])
        .args(["--endpoint", &base])
        .env_remove("STRATUS_PROJECT")
        .env_remove("STRATUS_LOCATION")
        .env_remove("STRATUS_ENDPOINT")
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.starts_with("ID "), "{text}");
    let row = |id: &str| -> Vec<String> {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .unwrap_or_else(|| panic!("no row {id}: {text}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    // ID, DISPATCH/S, DISPATCHED, SUCCEEDED, FAILED, RETRIES, FAILED_FOR_GOOD, IN_FLIGHT, …
    let n_text = N.to_string();
    assert_eq!(
        row("ok")[2..8],
        [n_text.as_str(), &n_text, "0", "0", "0", "0"],
        "{text}"
    );
    assert_eq!(row("bad")[2..8], ["2", "0", "2", "1", "1", "0"], "{text}");

    // Another location: nothing.
    let other = support::get_json(
        &http,
        &format!("{base}/stratus/v1/projects/p/locations/elsewhere/queueStats"),
    )
    .await;
    assert_eq!(other, json!({"queueStats": []}));
}

/// gRPC calls count under their RPC name with the code of the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_are_counted() {
    use stratus_types::proto::tasks::{GetQueueRequest, Queue};
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let channel = tonic::transport::Endpoint::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = tonic::client::Grpc::new(channel);
    client.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<GetQueueRequest, Queue>::default();
    let err = client
        .unary(
            tonic::Request::new(GetQueueRequest {
                name: format!("{LOC}/queues/none"),
            }),
            http::uri::PathAndQuery::from_static("/google.cloud.tasks.v2.CloudTasks/GetQueue"),
            codec,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    let m = scrape(&reqwest::Client::new(), &server.url()).await;
    assert_eq!(
        get(
            &m,
            "stratus_api_requests_total{transport=\"grpc\",rpc=\"GetQueue\",code=\"NOT_FOUND\"}"
        ),
        1.0
    );
}

/// `stratus tokens create … --config cfg`; returns the token printed on stdout.
fn create_token(cfg: &std::path::Path, project: &str, role: &str, name: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stratus"))
        .args(["tokens", "create", "--project", project, "--role", role])
        .args(["--name", name, "--config"])
        .arg(cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// With API tokens, a scrape needs a token scoped to every project; refusals are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tokens_only_an_every_project_token_scrapes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("stratus.toml");
    std::fs::write(&cfg, "").unwrap();
    let all = create_token(&cfg, "*", "viewer", "prometheus");
    let tenant = create_token(&cfg, "a", "admin", "a-admin");
    let data = dir.path().join("data");
    let cfg_arg = cfg.to_str().unwrap();
    let server = Server::start(&data, &["--config", cfg_arg]);
    let url = format!("{}/metrics", server.url());
    let http = reqwest::Client::new();
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::UNAUTHORIZED);
    let r = http.get(&url).bearer_auth(&tenant).send().await.unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::FORBIDDEN);
    let r = http.get(&url).bearer_auth(&all).send().await.unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    let m = r.text().await.unwrap();
    assert_eq!(get(&m, "stratus_api_auth_failures_total"), 2.0, "{m}");
    let refused = |code: &str| {
        format!("stratus_api_requests_total{{transport=\"rest\",rpc=\"Metrics\",code=\"{code}\"}}")
    };
    assert_eq!(get(&m, &refused("UNAUTHENTICATED")), 1.0);
    assert_eq!(get(&m, &refused("PERMISSION_DENIED")), 1.0);
}
