//! Benchmark: durable CreateTask calls per second over gRPC next to REST, against one server,
//! in one run. REST: `clients` loops on a keep-alive HTTP/1.1 pool (one connection each).
//! gRPC: the same number of loops over `channels` HTTP/2 connections (h2c), as the official
//! clients use one channel per client object. Same 1 KiB task body, unique task names.
//!
//! Run (build the server first):
//! `cargo build --release -p stratus && cargo run --release -p stratus --example bench_grpc --
//! [--bin target/release/stratus] [--seconds 5] [--clients 64] [--channels 1,4]`.
//! The server runs with `--no-dispatch` on a free loopback port with its store in a temp dir
//! (synchronous=FULL), so only the API path and the store are measured.

#[path = "support/mod.rs"]
mod support;

use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use stratus_types::proto::tasks::{CreateTaskRequest, HttpRequest, Task, task::MessageType};
use tonic::transport::Channel;

const QUEUE: &str = "projects/bench/locations/local/queues/bench";
const CREATE: &str = "/google.cloud.tasks.v2.CloudTasks/CreateTask";

struct Opts {
    bin: String,
    seconds: u64,
    clients: usize,
    channels: Vec<usize>,
}

fn opts() -> Opts {
    let mut o = Opts {
        bin: "target/release/stratus".into(),
        seconds: 5,
        clients: 64,
        channels: vec![1, 4],
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i + 1 < args.len() {
        match args[i].as_str() {
            "--bin" => o.bin = args[i + 1].clone(),
            "--seconds" => o.seconds = args[i + 1].parse().expect("--seconds N"),
            "--clients" => o.clients = args[i + 1].parse().expect("--clients N"),
            "--channels" => {
                o.channels = args[i + 1]
                    .split(',')
                    .map(|c| c.parse().expect("--channels 1,4"))
                    .collect()
            }
            other => panic!("unknown option {other}"),
        }
        i += 2;
    }
    o
}

fn start(bin: &str, dir: &std::path::Path) -> (Child, u16) {
    support::start_server(bin, dir, &["--no-dispatch"])
}

/// CPU seconds (user + system) the process `pid` has used, from /proc (Linux; 0 elsewhere).
fn cpu_secs(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0 // USER_HZ, 100 on Linux
}

/// Task names are unique across phases.
static PHASE: AtomicU64 = AtomicU64::new(0);

/// Runs `clients` loops for `secs` seconds calling `call(client, n)`; returns calls/s.
async fn run<F, Fut>(clients: usize, secs: u64, call: F) -> f64
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let call = Arc::new(call);
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut handles = Vec::new();
    for c in 0..clients {
        let (call, done, stop) = (call.clone(), done.clone(), stop.clone());
        handles.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                call(c, n).await;
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

async fn rest(base: &str, o: &Opts) -> f64 {
    let phase = PHASE.fetch_add(1, Ordering::Relaxed);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(o.clients)
        .build()
        .unwrap();
    let url = format!("{base}/v2/{QUEUE}/tasks");
    let payload = "A".repeat(1368); // base64 text of 1026 bytes
    run(o.clients, o.seconds, move |c, n| {
        let (http, url) = (http.clone(), url.clone());
        let body = json!({"task": {
            "name": format!("{QUEUE}/tasks/p{phase}-c{c}-{n}"),
            "httpRequest": {"url": "http://127.0.0.1:9/hook", "body": payload},
        }});
        async move {
            let r = http.post(&url).json(&body).send().await.expect("REST call");
            assert!(r.status().is_success(), "status {}", r.status());
            let _ = r.bytes().await;
        }
    })
    .await
}

async fn grpc(base: &str, channels: usize, o: &Opts) -> f64 {
    let phase = PHASE.fetch_add(1, Ordering::Relaxed);
    let mut chans = Vec::new();
    for _ in 0..channels {
        chans.push(
            Channel::from_shared(base.to_string())
                .unwrap()
                .connect()
                .await
                .expect("gRPC connect"),
        );
    }
    let body = vec![b'A'; 1026];
    run(o.clients, o.seconds, move |c, n| {
        let channel = chans[c % chans.len()].clone();
        let req = CreateTaskRequest {
            parent: QUEUE.into(),
            task: Some(Task {
                name: format!("{QUEUE}/tasks/p{phase}-c{c}-{n}"),
                message_type: Some(MessageType::HttpRequest(HttpRequest {
                    url: "http://127.0.0.1:9/hook".into(),
                    body: body.clone(),
                    ..Default::default()
                })),
                ..Default::default()
            }),
            response_view: 0,
        };
        async move {
            let mut client = tonic::client::Grpc::new(channel);
            client.ready().await.expect("channel ready");
            let codec = tonic_prost::ProstCodec::<CreateTaskRequest, Task>::default();
            client
                .unary(
                    tonic::Request::new(req),
                    http::uri::PathAndQuery::from_static(CREATE),
                    codec,
                )
                .await
                .expect("gRPC CreateTask");
        }
    })
    .await
}

#[tokio::main]
async fn main() {
    let o = opts();
    let dir = tempfile::tempdir().unwrap();
    let (mut child, port) = start(&o.bin, dir.path());
    let base = format!("http://127.0.0.1:{port}");
    let r = reqwest::Client::new()
        .post(format!("{base}/v2/projects/bench/locations/local/queues"))
        .json(&json!({"name": QUEUE}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    println!(
        "machine: {} cores; {} s per phase; {} concurrent callers; body 1 KiB; store synchronous=FULL; --no-dispatch",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        o.seconds,
        o.clients,
    );
    let pid = child.id();
    let secs = o.seconds as f64;
    let cpu0 = cpu_secs(pid);
    let rest_rate = rest(&base, &o).await;
    let rest_cpu = (cpu_secs(pid) - cpu0) / (rest_rate * secs) * 1e6;
    println!(
        "{:<24} {:>8.0} creates/s  server CPU {:>5.1} us/create",
        "REST (HTTP/1.1 pool)", rest_rate, rest_cpu
    );
    for &ch in &o.channels {
        let (cpu0, own0) = (cpu_secs(pid), cpu_secs(std::process::id()));
        let g = grpc(&base, ch, &o).await;
        let cpu = (cpu_secs(pid) - cpu0) / (g * secs) * 1e6;
        let own = (cpu_secs(std::process::id()) - own0) / secs;
        println!(
            "{:<24} {:>8.0} creates/s  server CPU {:>5.1} us/create  {:>4.0}% of REST  \
             (server {:.2} cores, load generator {:.2} cores)",
            format!("gRPC ({ch} h2c channel{})", if ch == 1 { "" } else { "s" }),
            g,
            cpu,
            100.0 * g / rest_rate,
            cpu * g / 1e6,
            own
        );
    }
    let _ = child.kill();
    let _ = child.wait();
}
