//! Benchmark: durable CreateTask calls per second through the REST API at several client
//! concurrencies, next to the raw HTTP rate of the same load generator against a trivial
//! endpoint (`POST /healthz`, same body size) of the same server: the in-run ceiling.
//!
//! Run: `cargo run --release -p stratus --example bench_creates -- [--bin target/release/stratus]
//! [--seconds 5] [--clients 1,16,64] [--endpoint http://127.0.0.1:8123] [--auth on]`. The server runs as a separate process on a free
//! loopback port with `--no-dispatch` and its store in a temp dir (synchronous=FULL: every
//! acknowledged create is on disk). With `--auth on` the server has an API token (made by
//! `stratus tokens create`, no rate limit) and every request carries it.

#[path = "support/mod.rs"]
mod support;

use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

const QUEUE: &str = "projects/bench/locations/local/queues/bench";

struct Opts {
    bin: String,
    /// Use an already running server instead of starting one (for profiling it).
    endpoint: Option<String>,
    seconds: u64,
    clients: Vec<usize>,
    /// Run with an API token configured and sent on every request.
    auth: bool,
}

fn opts() -> Opts {
    let mut o = Opts {
        bin: "target/release/stratus".into(),
        endpoint: None,
        seconds: 5,
        clients: vec![1, 16, 64],
        auth: false,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i + 1 < args.len() {
        match args[i].as_str() {
            "--bin" => o.bin = args[i + 1].clone(),
            "--endpoint" => o.endpoint = Some(args[i + 1].clone()),
            "--seconds" => o.seconds = args[i + 1].parse().expect("--seconds N"),
            "--auth" => o.auth = args[i + 1] == "on",
            "--clients" => {
                o.clients = args[i + 1]
                    .split(',')
                    .map(|c| c.parse().expect("--clients 1,16,64"))
                    .collect()
            }
            other => panic!("unknown option {other}"),
        }
        i += 2;
    }
    o
}

fn start(bin: &str, dir: &std::path::Path, config: Option<&str>) -> (Child, u16) {
    // The API path and the store only: the created tasks (for 127.0.0.1:9) would otherwise be
    // dispatched, refused and retried during the run.
    let mut extra = vec!["--no-dispatch"];
    if let Some(c) = config {
        extra.extend(["--config", c]);
    }
    support::start_server(bin, dir, &extra)
}

/// Makes an admin token of every project, without a rate limit, in `config`; returns it.
fn make_token(bin: &str, config: &std::path::Path) -> String {
    let out = std::process::Command::new(bin)
        .args(["tokens", "create", "--project", "*", "--role", "admin"])
        .args(["--rate-limit", "0", "--config"])
        .arg(config)
        .output()
        .expect("stratus tokens create");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Runs `clients` loops for `secs` seconds, each sending one request after the other;
/// returns completed requests per second. Any non-2xx answer aborts the run.
async fn load(
    url: String,
    body: serde_json::Value,
    clients: usize,
    secs: u64,
    task_body: bool,
    token: Option<&str>,
) -> f64 {
    // Task names are unique across runs, even when a client count is given twice.
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(t) = token {
        headers.insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .default_headers(headers)
        .build()
        .unwrap();
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut handles = Vec::new();
    for c in 0..clients {
        let (http, url, body, done, stop) = (
            http.clone(),
            url.clone(),
            body.clone(),
            done.clone(),
            stop.clone(),
        );
        handles.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let mut b = body.clone();
                if task_body {
                    // Unique names: every create is a real insert with dedup checks.
                    b["task"]["name"] = json!(format!("{QUEUE}/tasks/r{run}-c{c}-{n}"));
                }
                let r = http
                    .post(&url)
                    .json(&b)
                    .send()
                    .await
                    .expect("request failed");
                assert!(r.status().is_success(), "status {}", r.status());
                let _ = r.bytes().await;
                n += 1;
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let o = opts();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("stratus.toml");
    let token = o.auth.then(|| make_token(&o.bin, &config));
    let (mut child, base) = match &o.endpoint {
        Some(e) => (None, e.clone()),
        None => {
            let cfg = token.as_ref().map(|_| config.to_str().unwrap());
            let (c, port) = start(&o.bin, &dir.path().join("data"), cfg);
            (Some(c), format!("http://127.0.0.1:{port}"))
        }
    };
    let token = token.as_deref();
    let http = reqwest::Client::new();
    let mut r = http.post(format!("{base}/v2/projects/bench/locations/local/queues"));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let r = r.json(&json!({"name": QUEUE})).send().await.unwrap();
    assert!(r.status().is_success());
    // A 1 KiB body, as in the store figures of DESIGN.md.
    let payload = "A".repeat(1368); // base64 text of 1026 bytes
    let task =
        json!({"task": {"httpRequest": {"url": "http://127.0.0.1:9/hook", "body": payload}}});
    println!(
        "machine: {} cores; {} s per run; body 1 KiB; store synchronous=FULL; api tokens {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        o.seconds,
        if token.is_some() { "on" } else { "off" }
    );
    println!(
        "{:>8} {:>14} {:>14} {:>8}",
        "clients", "ceiling req/s", "creates/s", "ratio"
    );
    for &c in &o.clients {
        let ceiling = load(
            format!("{base}/healthz"),
            task.clone(),
            c,
            o.seconds,
            false,
            token,
        )
        .await;
        let creates = load(
            format!("{base}/v2/{QUEUE}/tasks"),
            task.clone(),
            c,
            o.seconds,
            true,
            token,
        )
        .await;
        println!(
            "{c:>8} {ceiling:>14.0} {creates:>14.0} {:>7.0}%",
            100.0 * creates / ceiling
        );
    }
    if let Some(c) = child.as_mut() {
        let _ = c.kill();
        let _ = c.wait();
    }
}
