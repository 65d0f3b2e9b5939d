//! Benchmark: the dispatcher end to end. `stratus serve` runs as a separate process (free
//! loopback port, store in a temp dir) and delivers tasks over loopback HTTP.
//!
//! Parts (`--part throughput|lag|memory|restart|all`):
//!
//! - **throughput**: `--tasks` tasks, already due, are created with BatchCreateTasks (100 per
//!   call) into `--queues` PAUSED queues (500 dispatches/s and `--concurrency` concurrent
//!   dispatches each); then every queue is resumed and the clock runs until every queue is
//!   empty again (`ListTasks` with `pageSize=1`: every outcome recorded). The target is an
//!   nginx (`return 200;`, access log off, one worker process) that the bench starts on a free
//!   port; its `stub_status` request counter shows deliveries as they happen. In the same run
//!   the raw rate of that nginx is measured with `wrk` (`-t 2`, `-c` = queues × concurrency, a
//!   POST with the same 64-byte body) and with a reqwest loop of the same concurrency (the
//!   HTTP client stack the dispatcher uses).
//! - **lag**: `--lag-rate` tasks/s for `--lag-secs` s (CreateTask, each scheduled 2 s after its
//!   creation, the schedule spread evenly) to a receiver inside the bench (axum) that records
//!   `arrival − X-CloudTasks-TaskETA` per request; p50/p99/max.
//! - **memory**: `--pending` tasks scheduled 1 h ahead (BatchCreateTasks from `--creators`
//!   concurrent callers); the server's VmRSS after creation and after `--settle` s.
//! - **restart**: with those tasks pending, one task is created due 1.5 s later, the server is
//!   SIGKILLed at once (before it is due), restarted on the same data dir after the task's due
//!   time has passed, and the time from spawning the process to that task reaching the
//!   receiver is measured (and, for reference, to the port accepting connections).
//!
//! Throughput and lag run `--runs` times (a fresh server and store each) and print medians;
//! restart is repeated `--runs` times on the same store. `--perf DIR` records a CPU profile of
//! the server (`perf record -e cpu-clock -F 999 -g`, `--perf-secs` s) in the first run of each
//! part: `DIR/<part>.data`.
//!
//! Run: `scripts/bench_dispatch.sh [options]`, or by hand `cargo build --release -p stratus &&
//! cargo build --release -p stratus --examples && ./target/release/examples/bench_dispatch
//! --part all` (about 5 minutes on 2 cores). Build the server on its own: `--examples` alone
//! does not rebuild it, and `--bins --examples` together link it with the examples'
//! dev-dependency features. Needs `nginx` (`--nginx`, default `/usr/sbin/nginx`) and `wrk` in
//! PATH; the open-file limit must exceed queues × concurrency.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use base64::Engine as _;
use serde_json::{Value, json};
use tokio::task::JoinSet;

const LOCATION: &str = "projects/bench/locations/local";
/// Most tasks in one BatchCreateTasks call (the API's limit).
const BATCH: usize = 100;
/// Cloud Tasks' cap on `max_dispatches_per_second`.
const RATE: f64 = 500.0;
/// The burst Cloud Tasks derives from 500/s (`ceil(rate / 5)`): tokens a queue starts with.
const BURST: f64 = 100.0;
/// Bytes of every task body.
const BODY_BYTES: usize = 64;
/// Ticks per second of the lag part's creator.
const LAG_TICKS: u64 = 100;
/// `USER_HZ`: the unit of the CPU times in `/proc/<pid>/stat` (100 on Linux x86-64 and arm64).
const CLK_TCK: f64 = 100.0;

#[derive(Clone)]
struct Opts {
    bin: String,
    nginx: String,
    part: String,
    tasks: usize,
    queues: usize,
    concurrency: usize,
    runs: usize,
    creators: usize,
    raw_secs: u64,
    lag_rate: usize,
    lag_secs: u64,
    pending: usize,
    settle: u64,
    perf: Option<PathBuf>,
    perf_secs: u64,
    perf_callgraph: String,
    stall_secs: u64,
}

const USAGE: &str = "bench_dispatch [--part throughput|lag|memory|restart|all] [--runs 3] \
[--tasks 100000] [--queues 128] [--concurrency 8] [--creators 16] [--raw-secs 10] \
[--lag-rate 1000] [--lag-secs 20] [--pending 1000000] [--settle 30] \
[--bin target/release/stratus] [--nginx /usr/sbin/nginx] [--perf DIR] [--perf-secs 10] \
[--perf-callgraph fp|dwarf] [--stall-secs 300]";

fn opts() -> Opts {
    let mut o = Opts {
        bin: "target/release/stratus".into(),
        nginx: "/usr/sbin/nginx".into(),
        part: "all".into(),
        tasks: 100_000,
        queues: 128,
        concurrency: 8,
        runs: 3,
        creators: 16,
        raw_secs: 10,
        lag_rate: 1_000,
        lag_secs: 20,
        pending: 1_000_000,
        settle: 30,
        perf: None,
        perf_secs: 10,
        perf_callgraph: "fp".into(),
        stall_secs: 300,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let flag = args[i].as_str();
        if flag == "--help" || flag == "-h" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let Some(v) = args.get(i + 1).cloned() else {
            panic!("{flag} needs a value\n{USAGE}");
        };
        let num = |what: &str| -> usize {
            v.parse()
                .unwrap_or_else(|_| panic!("{what} takes a number, got {v:?}"))
        };
        match flag {
            "--bin" => o.bin = v.clone(),
            "--nginx" => o.nginx = v.clone(),
            "--part" => o.part = v.clone(),
            "--tasks" => o.tasks = num(flag),
            "--queues" => o.queues = num(flag),
            "--concurrency" => o.concurrency = num(flag),
            "--runs" => o.runs = num(flag),
            "--creators" => o.creators = num(flag),
            "--raw-secs" => o.raw_secs = num(flag) as u64,
            "--lag-rate" => o.lag_rate = num(flag),
            "--lag-secs" => o.lag_secs = num(flag) as u64,
            "--pending" => o.pending = num(flag),
            "--settle" => o.settle = num(flag) as u64,
            "--perf" => o.perf = Some(PathBuf::from(&v)),
            "--perf-secs" => o.perf_secs = num(flag) as u64,
            "--perf-callgraph" => o.perf_callgraph = v.clone(),
            "--stall-secs" => o.stall_secs = num(flag) as u64,
            other => panic!("unknown option {other}\n{USAGE}"),
        }
        i += 2;
    }
    assert!(
        matches!(
            o.part.as_str(),
            "throughput" | "lag" | "memory" | "restart" | "all"
        ),
        "--part throughput|lag|memory|restart|all"
    );
    assert!(o.queues >= 1 && o.concurrency >= 1 && o.runs >= 1 && o.creators >= 1);
    assert!(
        o.concurrency <= 5000,
        "--concurrency is max_concurrent_dispatches per queue (≤ 5000)"
    );
    o
}

// ---------------------------------------------------------------------------------------------
// Small helpers

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Wall-clock µs since the epoch (the clock `X-CloudTasks-TaskETA` is on).
fn wall_us() -> i64 {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(d.as_micros()).unwrap()
}

fn rfc3339(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// `X-CloudTasks-TaskETA` (`seconds.micros`) as µs.
fn parse_eta(v: &str) -> Option<i64> {
    let (s, f) = v.split_once('.').unwrap_or((v, "0"));
    let secs: i64 = s.parse().ok()?;
    let mut frac = f.to_string();
    frac.truncate(6);
    while frac.len() < 6 {
        frac.push('0');
    }
    Some(secs * 1_000_000 + frac.parse::<i64>().ok()?)
}

/// VmRSS of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// CPU seconds (user + system) `pid` has used so far.
fn cpu_secs(pid: u32) -> f64 {
    cpu_secs_of(&format!("/proc/{pid}/stat"))
}

/// CPU seconds (user + system) of a `stat` file of /proc.
fn cpu_secs_of(path: &str) -> f64 {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat, i.e. 11 and 12 after the name.
    (ticks(11) + ticks(12)) / CLK_TCK
}

/// Bytes `pid` has caused to be written to storage (`write_bytes` of /proc/<pid>/io).
fn disk_write_bytes(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// CPU seconds of `pid`'s threads whose name starts with `prefix`.
fn thread_cpu_secs(pid: u32, prefix: &str) -> f64 {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    let mut total = 0.0;
    for t in dir.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.starts_with(prefix) {
            let tid: u32 = t.file_name().to_string_lossy().parse().unwrap_or(0);
            total += cpu_secs_of(&format!("/proc/{pid}/task/{tid}/stat"));
        }
    }
    total
}

/// Machine-wide CPU time: (busy, iowait, total) in ticks, from the `cpu` line of /proc/stat.
fn machine_ticks() -> (f64, f64, f64) {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<f64> = s
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let get = |i: usize| v.get(i).copied().unwrap_or(0.0);
    let total: f64 = v.iter().take(8).sum();
    // user nice system idle iowait irq softirq steal
    (total - get(3) - get(4), get(4), total)
}

/// CPU use over a phase: per process (cores) and the machine (shares of all cores).
struct CpuProbe {
    server: u32,
    nginx: u32,
    t: Instant,
    workers: f64,
    writer: f64,
    server_all: f64,
    nginx_s: f64,
    machine: (f64, f64, f64),
}

/// What a [`CpuProbe`] saw.
#[derive(Clone, Copy, Default)]
struct CpuUse {
    workers: f64,
    writer: f64,
    server: f64,
    nginx: f64,
    busy: f64,
    iowait: f64,
}

impl CpuProbe {
    fn start(server: u32, nginx: u32) -> CpuProbe {
        CpuProbe {
            server,
            nginx,
            t: Instant::now(),
            workers: thread_cpu_secs(server, "tokio-rt-worker"),
            writer: thread_cpu_secs(server, "stratus-sqlite"),
            server_all: cpu_secs(server),
            nginx_s: cpu_secs(nginx),
            machine: machine_ticks(),
        }
    }

    fn stop(&self) -> CpuUse {
        let secs = self.t.elapsed().as_secs_f64();
        let (b, w, t) = machine_ticks();
        let dt = (t - self.machine.2).max(1.0);
        CpuUse {
            workers: (thread_cpu_secs(self.server, "tokio-rt-worker") - self.workers) / secs,
            writer: (thread_cpu_secs(self.server, "stratus-sqlite") - self.writer) / secs,
            server: (cpu_secs(self.server) - self.server_all) / secs,
            nginx: (cpu_secs(self.nginx) - self.nginx_s) / secs,
            busy: (b - self.machine.0) / dt,
            iowait: (w - self.machine.1) / dt,
        }
    }
}

fn median(v: &[f64]) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return f64::NAN;
    }
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// The `p`-th percentile (nearest rank) of sorted values.
fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn body_b64() -> String {
    base64::engine::general_purpose::STANDARD.encode([b'x'; BODY_BYTES])
}

fn queue_name(i: usize) -> String {
    format!("{LOCATION}/queues/q{i:04}")
}

async fn wait_port(port: u16, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    false
}

// ---------------------------------------------------------------------------------------------
// The processes: nginx, stratus, perf

/// nginx on a free loopback port: `return 200;` everywhere, `stub_status` at `/nginx_status`.
struct Nginx {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Nginx {
    async fn start(bin: &str) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let d = dir.path().display();
        // One process (no master): killing it by pid stops everything. One worker keeps one of
        // the two cores for the server (or wrk) under test.
        let conf = format!(
            "worker_processes 1;\ndaemon off;\nmaster_process off;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log warn;\nworker_rlimit_nofile 20000;\n\
             events {{ worker_connections 16384; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n\
               proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n\
               uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
               keepalive_requests 10000000;\n  keepalive_timeout 300s;\n\
               server {{\n    listen 127.0.0.1:{port} backlog=4096;\n\
                 location = /nginx_status {{ stub_status; }}\n\
                 location / {{ return 200; }}\n  }}\n}}\n"
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(bin)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {bin}: {e} (apt-get install -y nginx)"));
        let n = Nginx {
            child,
            port,
            _dir: dir,
        };
        assert!(
            wait_port(port, Duration::from_secs(5)).await,
            "nginx did not start"
        );
        n
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// nginx's `accepts` and `requests` counters (this request included).
    async fn counters(&self, http: &reqwest::Client) -> (u64, u64) {
        let text = http
            .get(self.url("/nginx_status"))
            .send()
            .await
            .expect("stub_status")
            .text()
            .await
            .unwrap();
        // "Active connections: N\nserver accepts handled requests\n A H R\n..."
        let n: Vec<u64> = text
            .lines()
            .nth(2)
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        assert_eq!(n.len(), 3, "stub_status format: {text}");
        (n[0], n[2])
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `stratus serve` on a free loopback port over `data`.
struct Server {
    child: Option<Child>,
    port: u16,
}

impl Server {
    /// Spawns the process without waiting for it to listen.
    fn spawn(bin: &str, data: &Path) -> Server {
        let port = free_port();
        let child = Command::new(bin)
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(data)
            .env("STRATUS_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run {bin}: {e} (cargo build --release --examples -p stratus)")
            });
        Server {
            child: Some(child),
            port,
        }
    }

    async fn start(bin: &str, data: &Path) -> Server {
        let s = Server::spawn(bin, data);
        assert!(
            wait_port(s.port, Duration::from_secs(30)).await,
            "stratus did not start"
        );
        s
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    fn api(&self) -> Api {
        Api {
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(256)
                .build()
                .unwrap(),
            base: format!("http://127.0.0.1:{}", self.port),
        }
    }

    /// SIGKILL and reap.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `perf record` on `pid` for `--perf-secs` when `--perf` is given.
fn perf_start(o: &Opts, pid: u32, name: &str) -> Option<Child> {
    let dir = o.perf.as_ref()?;
    std::fs::create_dir_all(dir).unwrap();
    let out = dir.join(format!("{name}.data"));
    // `fp` is `perf record -g` (frame pointers: the release build has none, so stacks stop at
    // the sampled function); `dwarf` unwinds with the line tables (bigger files, real stacks).
    let callgraph = if o.perf_callgraph == "dwarf" {
        "dwarf,16384"
    } else {
        "fp"
    };
    let child = Command::new("perf")
        .args([
            "record",
            "-e",
            "cpu-clock",
            "-F",
            "999",
            "--call-graph",
            callgraph,
            "-p",
        ])
        .arg(pid.to_string())
        .arg("-o")
        .arg(&out)
        .args(["--", "sleep"])
        .arg(o.perf_secs.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| eprintln!("perf not started: {e}"))
        .ok()?;
    println!(
        "  (perf recording pid {pid} for {} s → {})",
        o.perf_secs,
        out.display()
    );
    Some(child)
}

fn perf_finish(p: Option<Child>) {
    if let Some(mut c) = p {
        let _ = c.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// The REST client

#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Value {
        let mut rb = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let r = rb.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        assert!(status.is_success(), "{path}: {status}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    async fn post(&self, path: &str, body: &Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// Creates `n` queues (500/s, `concurrency` concurrent dispatches), in parallel.
    async fn make_queues(&self, n: usize, concurrency: usize) -> Vec<String> {
        let names: Vec<String> = (0..n).map(queue_name).collect();
        let mut set = JoinSet::new();
        for name in names.clone() {
            let api = self.clone();
            set.spawn(async move {
                let q = json!({
                    "name": name,
                    "rateLimits": {
                        "maxDispatchesPerSecond": RATE,
                        "maxConcurrentDispatches": concurrency,
                    },
                });
                api.post(&format!("/v2/{LOCATION}/queues"), &q).await;
            });
        }
        set.join_all().await;
        names
    }

    /// Calls `verb` (`pause`, `resume`) on every queue, in parallel.
    async fn queue_verb(&self, queues: &[String], verb: &str) {
        let mut set = JoinSet::new();
        for q in queues {
            let (api, path) = (self.clone(), format!("/v2/{q}:{verb}"));
            set.spawn(async move { api.post(&path, &json!({})).await });
        }
        set.join_all().await;
    }

    /// Creates `n` tasks with BatchCreateTasks (100 per call, call `b` into queue
    /// `b % queues.len()`) from `callers` concurrent callers; `make(i)` is the i-th task.
    /// Returns the elapsed time.
    async fn batch_create(
        &self,
        queues: &[String],
        n: usize,
        callers: usize,
        make: Arc<dyn Fn(usize) -> Value + Send + Sync>,
    ) -> Duration {
        let calls = n.div_ceil(BATCH);
        let next = Arc::new(AtomicUsize::new(0));
        let queues: Arc<Vec<String>> = Arc::new(queues.to_vec());
        let start = Instant::now();
        let mut set = JoinSet::new();
        for _ in 0..callers {
            let (api, next, queues, make) =
                (self.clone(), next.clone(), queues.clone(), make.clone());
            set.spawn(async move {
                loop {
                    let b = next.fetch_add(1, Ordering::Relaxed);
                    if b >= calls {
                        return;
                    }
                    let q = &queues[b % queues.len()];
                    let requests: Vec<Value> = (b * BATCH..((b + 1) * BATCH).min(n))
                        .map(|i| json!({ "task": make(i) }))
                        .collect();
                    let op = api
                        .post(
                            &format!("/v2/{q}/tasks:batchCreate"),
                            &json!({ "requests": requests }),
                        )
                        .await;
                    let failed = op["metadata"]["failedRequests"]
                        .as_object()
                        .is_some_and(|m| !m.is_empty());
                    assert!(
                        op.get("error").is_none() && !failed,
                        "batchCreate failed: {op}"
                    );
                }
            });
        }
        set.join_all().await;
        start.elapsed()
    }

    /// Whether the queue has no live task left.
    /// Up to `max` tasks still in `queues`, as JSON lines (the diagnosis of a stalled run:
    /// scheduled later after failed attempts, or due and never dispatched).
    async fn undelivered(&self, queues: &[String], max: usize) -> Vec<String> {
        let mut out = Vec::new();
        for q in queues {
            let v = self.get(&format!("/v2/{q}/tasks?pageSize={max}")).await;
            for t in v["tasks"].as_array().into_iter().flatten() {
                if out.len() < max {
                    out.push(t.to_string());
                }
            }
        }
        out
    }

    /// The sum of the server's `stratus_queue_outcomes_total{class="2xx"}` (from `/metrics`).
    async fn succeeded_attempts(&self) -> u64 {
        let text = match self.http.get(format!("{}/metrics", self.base)).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        text.lines()
            .filter(|l| {
                l.starts_with("stratus_queue_outcomes_total{") && l.contains("class=\"2xx\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    async fn queue_empty(&self, q: &str) -> bool {
        let v = self.get(&format!("/v2/{q}/tasks?pageSize=1")).await;
        v["tasks"].as_array().is_none_or(Vec::is_empty)
    }
}

// ---------------------------------------------------------------------------------------------
// The receiver of the lag and restart parts

#[derive(Default)]
struct Recv {
    /// `arrival − ETA` in µs of every request to `/lag`.
    lags: Mutex<Vec<i64>>,
    /// When the first request to `/restart` arrived.
    restart: Mutex<Option<Instant>>,
    /// Requests to anything else.
    other: AtomicU64,
}

async fn receive(
    State(r): State<Arc<Recv>>,
    uri: Uri,
    headers: HeaderMap,
    _body: axum::body::Bytes,
) -> StatusCode {
    let (now, at) = (wall_us(), Instant::now());
    match uri.path() {
        "/lag" => {
            let eta = headers
                .get("x-cloudtasks-tasketa")
                .and_then(|v| v.to_str().ok())
                .and_then(parse_eta)
                .expect("X-CloudTasks-TaskETA");
            r.lags.lock().unwrap().push(now - eta);
        }
        "/restart" => {
            r.restart.lock().unwrap().get_or_insert(at);
        }
        _ => {
            r.other.fetch_add(1, Ordering::Relaxed);
        }
    }
    StatusCode::OK
}

/// Starts the receiver on a free loopback port; returns its state and base URL.
async fn start_receiver() -> (Arc<Recv>, String) {
    let state = Arc::new(Recv::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .fallback(receive)
        .with_state(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (state, base)
}

// ---------------------------------------------------------------------------------------------
// Throughput

struct Throughput {
    creates_per_s: f64,
    /// Resume → nginx has read every request.
    delivered_s: f64,
    /// Resume → every queue empty (every outcome recorded).
    recorded_s: f64,
    /// Deliveries per second between 10% and 90% of the tasks.
    steady_per_s: f64,
    /// CPU use while dispatching.
    cpu: CpuUse,
    /// Connections nginx accepted while the server dispatched.
    connections: u64,
    /// Server CPU µs per delivery.
    cpu_us: f64,
    /// Bytes the server wrote to disk per delivery.
    disk_per: f64,
    /// The bench's CPU µs per request of the reqwest loop.
    reqwest_us: f64,
    wrk: f64,
    reqwest: f64,
}

impl Throughput {
    fn per_s(&self, tasks: usize) -> f64 {
        tasks as f64 / self.recorded_s
    }
}

/// The fastest the rate limits alone allow: every queue starts with a full bucket.
fn rate_cap(tasks: usize, queues: usize) -> f64 {
    let per_queue = tasks.div_ceil(queues) as f64;
    let secs = ((per_queue - BURST) / RATE).max(0.0);
    if secs == 0.0 {
        f64::INFINITY
    } else {
        tasks as f64 / secs
    }
}

async fn wrk_rate(url: &str, conns: usize, secs: u64) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("post.lua");
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.body = string.rep(\"x\", {BODY_BYTES})\n\
             wrk.headers[\"Content-Type\"] = \"application/octet-stream\"\n"
        ),
    )
    .unwrap();
    let out = tokio::process::Command::new("wrk")
        .args(["-t", "2", "-c", &conns.max(2).to_string(), "-d"])
        .arg(format!("{secs}s"))
        .arg("-s")
        .arg(&script)
        .arg(url)
        .output()
        .await
        .expect("cannot run wrk (apt-get install -y wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("wrk output without Requests/sec:\n{text}"))
}

/// `conns` loops POSTing the task body to `url` one request after the other for `secs`.
async fn reqwest_rate(url: &str, conns: usize, secs: u64) -> f64 {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(conns)
        .tcp_nodelay(true)
        .build()
        .unwrap();
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut set = JoinSet::new();
    for _ in 0..conns {
        let (http, url, done, stop) = (http.clone(), url.to_string(), done.clone(), stop.clone());
        set.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let r = http
                    .post(&url)
                    .body(vec![b'x'; BODY_BYTES])
                    .send()
                    .await
                    .expect("raw request");
                assert!(r.status().is_success());
                let _ = r.bytes().await;
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    set.join_all().await;
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

async fn throughput_run(o: &Opts, nginx: &Nginx, run: usize) -> Throughput {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&o.bin, dir.path()).await;
    let api = server.api();
    let queues = api.make_queues(o.queues, o.concurrency).await;
    api.queue_verb(&queues, "pause").await;
    let (url, body) = (nginx.url("/t"), body_b64());
    let make: Arc<dyn Fn(usize) -> Value + Send + Sync> =
        Arc::new(move |_| json!({"httpRequest": {"url": url, "httpMethod": "POST", "body": body}}));
    let took = api.batch_create(&queues, o.tasks, o.creators, make).await;
    let creates_per_s = o.tasks as f64 / took.as_secs_f64();
    // Let the writer checkpoint after the creates before the clock starts.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let poll = reqwest::Client::new();
    let (accepts0, base) = nginx.counters(&poll).await;
    let mut polls = 0u64;
    let pid = server.pid();
    let probe = CpuProbe::start(pid, nginx.pid());
    let disk0 = disk_write_bytes(pid);
    let perf = if run == 0 {
        perf_start(o, pid, "throughput")
    } else {
        None
    };
    let t0 = Instant::now();
    api.queue_verb(&queues, "resume").await;
    // Deliveries as nginx sees them, every 5 ms, until all are there.
    let (mut t10, mut t90) = (None, None);
    let limit = Duration::from_secs(o.stall_secs);
    let delivered_s = loop {
        tokio::time::sleep(Duration::from_millis(5)).await;
        polls += 1;
        let n = nginx.counters(&poll).await.1 - base - polls;
        let t = t0.elapsed();
        if t10.is_none() && n as usize >= o.tasks / 10 {
            t10 = Some(t);
        }
        if t90.is_none() && n as usize >= o.tasks * 9 / 10 {
            t90 = Some(t);
        }
        if n as usize >= o.tasks {
            break t.as_secs_f64();
        }
        if t >= limit {
            // Tell a stall of the server (tasks still held) from a short count at the
            // receiver (every task answered 2xx according to the server).
            let left = api.undelivered(&queues, 10).await;
            let ok = api.succeeded_attempts().await;
            panic!(
                "only {n} of {} delivered after {limit:?} as nginx counts them; the server \
                 counts {ok} attempts answered 2xx; tasks still held (now {}): {}\n{}",
                o.tasks,
                wall_us(),
                if left.is_empty() { "none" } else { "" },
                left.join("\n")
            );
        }
        assert!(
            n > 0 || t < Duration::from_secs(10),
            "nothing delivered 10 s after resume: does {} dispatch? (`cargo build --examples` \
             does not rebuild it; build it with cargo build --release -p stratus)",
            o.bin
        );
    };
    // Then every queue must be empty: every outcome recorded.
    let mut left: Vec<&String> = queues.iter().collect();
    while !left.is_empty() {
        let mut still = Vec::new();
        for q in left {
            if !api.queue_empty(q).await {
                still.push(q);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        left = still;
        assert!(t0.elapsed() < limit, "queues not empty after {limit:?}");
    }
    let recorded_s = t0.elapsed().as_secs_f64();
    let cpu = probe.stop();
    let disk_per = (disk_write_bytes(pid) - disk0) as f64 / o.tasks as f64;
    let cpu_us = cpu.server * recorded_s * 1e6 / o.tasks as f64;
    // New connections nginx accepted while the server dispatched (the poller keeps one).
    let connections = nginx.counters(&poll).await.0 - accepts0;
    perf_finish(perf);
    let steady_per_s = match (t10, t90) {
        (Some(a), Some(b)) if b > a => (o.tasks * 8 / 10) as f64 / (b - a).as_secs_f64(),
        _ => f64::NAN,
    };
    // The raw rates, while the (now idle) server still runs.
    let conns = o.queues * o.concurrency;
    let wrk = wrk_rate(&nginx.url("/t"), conns, o.raw_secs).await;
    let me = std::process::id();
    let before = cpu_secs(me);
    let t = Instant::now();
    let reqwest = reqwest_rate(&nginx.url("/t"), conns, o.raw_secs).await;
    let reqwest_us = (cpu_secs(me) - before) * 1e6 / (reqwest * t.elapsed().as_secs_f64());
    drop(server);
    Throughput {
        creates_per_s,
        delivered_s,
        recorded_s,
        steady_per_s,
        cpu,
        connections,
        cpu_us,
        disk_per,
        reqwest_us,
        wrk,
        reqwest,
    }
}

/// The soft limit of open files of this process (the server inherits it).
fn nofile_limit() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/limits").ok()?;
    let l = s.lines().find(|l| l.starts_with("Max open files"))?;
    l.split_whitespace().nth(3)?.parse().ok()
}

async fn part_throughput(o: &Opts, nginx: &Nginx) {
    let conns = o.queues * o.concurrency;
    if let Some(n) = nofile_limit()
        && n < conns as u64 + 1024
    {
        eprintln!(
            "warning: open-file limit {n} is below {} (concurrency + 1024): raise it \
             (ulimit -n) or dispatches will fail to connect",
            conns + 1024
        );
    }
    println!(
        "\n== throughput: {} tasks due now, {} queues × (500/s, burst 100, {} concurrent) = \
         {} concurrent; rate-limit cap {:.0}/s; body {BODY_BYTES} B; {} runs",
        o.tasks,
        o.queues,
        o.concurrency,
        conns,
        rate_cap(o.tasks, o.queues),
        o.runs
    );
    println!(
        "{:>6} {:>9} {:>8} {:>8} {:>9} {:>8} {:>9} {:>9} {:>6} {:>6} | {:>5} {:>5} {:>5} {:>5} {:>5} {:>5} | {:>6} {:>6} {:>6}",
        "run",
        "creates/s",
        "deliv s",
        "record s",
        "deliv./s",
        "steady/s",
        "wrk/s",
        "reqwest/s",
        "÷ wrk",
        "conns",
        "srv",
        "wrkrs",
        "writr",
        "nginx",
        "busy",
        "iowt",
        "µs/dlv",
        "KiB/dl",
        "µs/rq"
    );
    let row = |label: &str, r: &Throughput| {
        let per_s = r.per_s(o.tasks);
        println!(
            "{label:>6} {:>9.0} {:>8.2} {:>8.2} {:>9.0} {:>8.0} {:>9.0} {:>9.0} {:>5.0}% {:>6} | {:>5.2} {:>5.2} {:>5.2} {:>5.2} {:>4.0}% {:>4.0}% | {:>6.0} {:>6.1} {:>6.0}",
            r.creates_per_s,
            r.delivered_s,
            r.recorded_s,
            per_s,
            r.steady_per_s,
            r.wrk,
            r.reqwest,
            100.0 * per_s / r.wrk,
            r.connections,
            r.cpu.server,
            r.cpu.workers,
            r.cpu.writer,
            r.cpu.nginx,
            100.0 * r.cpu.busy,
            100.0 * r.cpu.iowait,
            r.cpu_us,
            r.disk_per / 1024.0,
            r.reqwest_us
        );
    };
    let mut rows = Vec::new();
    for run in 0..o.runs {
        let r = throughput_run(o, nginx, run).await;
        row(&(run + 1).to_string(), &r);
        rows.push(r);
    }
    let m = |f: &dyn Fn(&Throughput) -> f64| median(&rows.iter().map(f).collect::<Vec<_>>());
    let med = Throughput {
        creates_per_s: m(&|r| r.creates_per_s),
        delivered_s: m(&|r| r.delivered_s),
        recorded_s: m(&|r| r.recorded_s),
        steady_per_s: m(&|r| r.steady_per_s),
        cpu: CpuUse {
            workers: m(&|r| r.cpu.workers),
            writer: m(&|r| r.cpu.writer),
            server: m(&|r| r.cpu.server),
            nginx: m(&|r| r.cpu.nginx),
            busy: m(&|r| r.cpu.busy),
            iowait: m(&|r| r.cpu.iowait),
        },
        connections: m(&|r| r.connections as f64) as u64,
        cpu_us: m(&|r| r.cpu_us),
        disk_per: m(&|r| r.disk_per),
        reqwest_us: m(&|r| r.reqwest_us),
        wrk: m(&|r| r.wrk),
        reqwest: m(&|r| r.reqwest),
    };
    row("median", &med);
    let per_s = m(&|r| r.per_s(o.tasks));
    let ratio = m(&|r| r.per_s(o.tasks) / r.wrk);
    println!(
        "(deliv s: resume → nginx has read every request; record s: → every queue empty; \
         deliv./s = tasks ÷ record s; steady/s: 10%→90% of the deliveries; conns: TCP \
         connections nginx accepted while the server dispatched; CPU in cores: \
         server (its tokio workers, its SQLite writer), nginx; machine busy and iowait in % \
         of both cores; µs/dlv: server CPU per delivery; KiB/dl: server disk writes per \
         delivery; µs/rq: the bench's CPU per request of the reqwest loop; the median row is \
         per column)"
    );
    println!(
        "THROUGHPUT deliveries/s {per_s:.0} (median) · wrk {:.0} req/s · ratio {:.0}% \
         (median of per-run ratios) · reqwest loop {:.0} req/s · target ≥ 50%: {}",
        med.wrk,
        100.0 * ratio,
        med.reqwest,
        if ratio >= 0.5 { "met" } else { "MISSED" }
    );
}

// ---------------------------------------------------------------------------------------------
// Lag

struct Lag {
    count: usize,
    p50: i64,
    p99: i64,
    max: i64,
    min: i64,
    /// Slowest CreateTask answer.
    create_max: Duration,
    /// Tasks whose create was answered after their schedule time.
    late_creates: usize,
}

async fn lag_run(o: &Opts, recv: &Arc<Recv>, recv_base: &str, run: usize) -> Lag {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&o.bin, dir.path()).await;
    let api = server.api();
    let queues = api.make_queues(o.queues, o.concurrency).await;
    recv.lags.lock().unwrap().clear();
    // Whole tasks per tick: the rate actually run is a multiple of LAG_TICKS.
    let per_tick = o.lag_rate / LAG_TICKS as usize;
    assert!(per_tick >= 1, "--lag-rate must be at least {LAG_TICKS}");
    let rate = per_tick * LAG_TICKS as usize;
    let total = rate * o.lag_secs as usize;
    let url = format!("{recv_base}/lag");
    let body = body_b64();
    let perf = if run == 0 {
        perf_start(o, server.pid(), "lag")
    } else {
        None
    };
    let start = tokio::time::Instant::now();
    // Task j is due 2 s after its planned creation, the schedule evenly spread.
    let sched0 = wall_us() + 2_000_000;
    let step_us = 1_000_000 / rate as i64;
    let create_max = Arc::new(Mutex::new(Duration::ZERO));
    let late = Arc::new(AtomicUsize::new(0));
    let mut set = JoinSet::new();
    let ticks = o.lag_secs * LAG_TICKS;
    for k in 0..ticks {
        tokio::time::sleep_until(start + Duration::from_micros(k * 1_000_000 / LAG_TICKS)).await;
        for i in 0..per_tick {
            let j = k as usize * per_tick + i;
            let at = sched0 + j as i64 * step_us;
            let task = json!({"task": {
                "httpRequest": {"url": url, "httpMethod": "POST", "body": body},
                "scheduleTime": rfc3339(at),
            }});
            let (api, path) = (
                api.clone(),
                format!("/v2/{}/tasks", queues[j % queues.len()]),
            );
            let (create_max, late) = (create_max.clone(), late.clone());
            set.spawn(async move {
                let t = Instant::now();
                api.post(&path, &task).await;
                let took = t.elapsed();
                if wall_us() > at {
                    late.fetch_add(1, Ordering::Relaxed);
                }
                let mut m = create_max.lock().unwrap();
                *m = (*m).max(took);
            });
        }
        // Reap finished creates so the set stays small (a failed create fails the bench).
        while let Some(r) = set.try_join_next() {
            r.unwrap();
        }
    }
    set.join_all().await;
    let last_due = sched0 + total as i64 * step_us;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = recv.lags.lock().unwrap().len();
        if n >= total {
            break;
        }
        assert!(
            Instant::now() < deadline || wall_us() < last_due,
            "only {n} of {total} lag tasks arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    perf_finish(perf);
    let mut lags = recv.lags.lock().unwrap().clone();
    lags.sort_unstable();
    drop(server);
    let create_max = *create_max.lock().unwrap();
    Lag {
        count: lags.len(),
        p50: percentile(&lags, 50.0),
        p99: percentile(&lags, 99.0),
        max: *lags.last().unwrap_or(&0),
        min: *lags.first().unwrap_or(&0),
        create_max,
        late_creates: late.load(Ordering::Relaxed),
    }
}

async fn part_lag(o: &Opts, recv: &Arc<Recv>, recv_base: &str) {
    println!(
        "\n== lag: {} tasks/s for {} s (CreateTask, due 2 s after creation) over {} queues → \
         receiver in the bench; {} runs",
        o.lag_rate, o.lag_secs, o.queues, o.runs
    );
    println!(
        "{:>4} {:>8} {:>9} {:>9} {:>9} {:>9} {:>13} {:>12}",
        "run", "tasks", "p50 ms", "p99 ms", "max ms", "min ms", "create max ms", "late creates"
    );
    let ms = |us: i64| us as f64 / 1000.0;
    let mut rows = Vec::new();
    for run in 0..o.runs {
        let r = lag_run(o, recv, recv_base, run).await;
        println!(
            "{:>4} {:>8} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>13.1} {:>12}",
            run + 1,
            r.count,
            ms(r.p50),
            ms(r.p99),
            ms(r.max),
            ms(r.min),
            r.create_max.as_secs_f64() * 1000.0,
            r.late_creates
        );
        rows.push(r);
    }
    let m = |f: &dyn Fn(&Lag) -> i64| median(&rows.iter().map(|r| ms(f(r))).collect::<Vec<_>>());
    let p99 = m(&|r| r.p99);
    println!(
        "median {:>6} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
        "",
        m(&|r| r.p50),
        p99,
        m(&|r| r.max),
        m(&|r| r.min)
    );
    println!(
        "LAG p50 {:.2} ms · p99 {p99:.2} ms · max {:.2} ms (medians) · target p99 ≤ 10 ms: {}",
        m(&|r| r.p50),
        m(&|r| r.max),
        if p99 <= 10.0 { "met" } else { "MISSED" }
    );
}

// ---------------------------------------------------------------------------------------------
// Memory and restart

/// A server holding `--pending` tasks scheduled an hour ahead.
struct Loaded {
    server: Server,
    data: tempfile::TempDir,
    queues: Vec<String>,
}

fn db_mib(dir: &Path) -> f64 {
    let size = |f: &str| std::fs::metadata(dir.join(f)).map_or(0, |m| m.len());
    (size("stratus.db") + size("stratus.db-wal")) as f64 / (1024.0 * 1024.0)
}

/// Samples the VmRSS of `pid` every 100 ms until the returned flag is set; the task's result
/// is the peak in KiB.
fn rss_sampler(pid: u32) -> (Arc<AtomicBool>, tokio::task::JoinHandle<u64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let h = tokio::spawn(async move {
        let mut peak = 0;
        while !s.load(Ordering::Relaxed) {
            peak = peak.max(rss_kib(pid));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        peak.max(rss_kib(pid))
    });
    (stop, h)
}

/// Creates `--pending` tasks an hour ahead on a fresh server; returns it with the create rate
/// and the peak RSS (KiB) while creating.
async fn load_pending(o: &Opts, recv_base: &str, profile: bool) -> (Loaded, f64, u64) {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&o.bin, data.path()).await;
    let api = server.api();
    let queues = api.make_queues(o.queues, o.concurrency).await;
    let (url, body) = (format!("{recv_base}/never"), body_b64());
    let at = rfc3339(wall_us() + 3_600_000_000);
    let make: Arc<dyn Fn(usize) -> Value + Send + Sync> = Arc::new(move |_| {
        json!({
            "httpRequest": {"url": url, "httpMethod": "POST", "body": body},
            "scheduleTime": at,
        })
    });
    let perf = if profile {
        perf_start(o, server.pid(), "memory-create")
    } else {
        None
    };
    let (stop, sampler) = rss_sampler(server.pid());
    let took = api
        .batch_create(&queues, o.pending, o.creators.max(32), make)
        .await;
    stop.store(true, Ordering::Relaxed);
    let peak = sampler.await.unwrap();
    perf_finish(perf);
    let rate = o.pending as f64 / took.as_secs_f64();
    (
        Loaded {
            server,
            data,
            queues,
        },
        rate,
        peak,
    )
}

async fn part_memory(o: &Opts, l: &Loaded, create_rate: f64, create_peak: u64) {
    let pid = l.server.pid();
    let mib = |kib: u64| kib as f64 / 1024.0;
    let after_create = rss_kib(pid);
    println!(
        "created {} tasks due in 1 h over {} queues at {create_rate:.0} tasks/s \
         (BatchCreateTasks × 100, {} callers); store {:.0} MiB",
        o.pending,
        o.queues,
        o.creators.max(32),
        db_mib(l.data.path())
    );
    let (stop, sampler) = rss_sampler(pid);
    tokio::time::sleep(Duration::from_secs(o.settle)).await;
    stop.store(true, Ordering::Relaxed);
    let settle_peak = sampler.await.unwrap();
    let settled = rss_kib(pid);
    let peak = create_peak.max(after_create).max(settle_peak);
    println!(
        "MEMORY RSS after creation {:.0} MiB · after {} s settle {:.0} MiB · peak {:.0} MiB \
         (while creating {:.0} MiB) · target ≤ 300 MB (286 MiB): {}",
        mib(after_create),
        o.settle,
        mib(settled),
        mib(peak),
        mib(create_peak),
        if peak * 1024 <= 300_000_000 {
            "met"
        } else {
            "MISSED"
        }
    );
}

async fn part_restart(o: &Opts, l: &mut Loaded, recv: &Arc<Recv>, recv_base: &str) {
    println!(
        "\n== restart: {} pending tasks; one task due 1.5 s after its create; SIGKILL at once; \
         restart after it is due; {} runs",
        o.pending, o.runs
    );
    println!(
        "{:>4} {:>12} {:>16} {:>10}",
        "run", "listening ms", "first dispatch ms", "RSS MiB"
    );
    let mut firsts = Vec::new();
    for run in 0..o.runs {
        *recv.restart.lock().unwrap() = None;
        let api = l.server.api();
        let due = wall_us() + 1_500_000;
        api.post(
            &format!("/v2/{}/tasks", l.queues[0]),
            &json!({"task": {
                "httpRequest": {"url": format!("{recv_base}/restart"), "httpMethod": "POST"},
                "scheduleTime": rfc3339(due),
            }}),
        )
        .await;
        // Before it is due, so it cannot have been dispatched.
        assert!(wall_us() < due - 200_000, "the create took too long");
        l.server.kill();
        let wait = (due + 300_000 - wall_us()).max(0);
        tokio::time::sleep(Duration::from_micros(wait.unsigned_abs())).await;
        assert!(
            recv.restart.lock().unwrap().is_none(),
            "dispatched before the kill"
        );
        let t0 = Instant::now();
        l.server = Server::spawn(&o.bin, l.data.path());
        let port = l.server.port;
        // The server starts dispatching before it listens: wait for both.
        let (mut listening, mut first) = (None, None);
        while listening.is_none() || first.is_none() {
            if first.is_none() {
                first = recv.restart.lock().unwrap().map(|at| at.duration_since(t0));
            }
            if listening.is_none()
                && tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
            {
                listening = Some(t0.elapsed());
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "no dispatch (or no listening port) within 60 s of the restart"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let (listening, first) = (listening.unwrap(), first.unwrap());
        println!(
            "{:>4} {:>12.0} {:>16.0} {:>10.0}",
            run + 1,
            listening.as_secs_f64() * 1000.0,
            first.as_secs_f64() * 1000.0,
            rss_kib(l.server.pid()) as f64 / 1024.0
        );
        firsts.push(first.as_secs_f64() * 1000.0);
    }
    let m = median(&firsts);
    println!(
        "RESTART first due dispatch {m:.0} ms after the process started (median) · \
         target ≤ 2 s: {}",
        if m <= 2000.0 { "met" } else { "MISSED" }
    );
}

// ---------------------------------------------------------------------------------------------

#[tokio::main]
async fn main() {
    let o = opts();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_default();
    println!(
        "machine: {} cores ({cpu}); server {}; store synchronous=FULL",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        o.bin
    );
    let all = o.part == "all";
    let (recv, recv_base) = start_receiver().await;
    if all || o.part == "throughput" {
        let nginx = Nginx::start(&o.nginx).await;
        part_throughput(&o, &nginx).await;
    }
    if all || o.part == "lag" {
        part_lag(&o, &recv, &recv_base).await;
    }
    if all || o.part == "memory" || o.part == "restart" {
        println!(
            "\n== memory: {} tasks scheduled 1 h ahead, {} queues",
            o.pending, o.queues
        );
        let (mut loaded, rate, peak) = load_pending(&o, &recv_base, true).await;
        if all || o.part == "memory" {
            part_memory(&o, &loaded, rate, peak).await;
        } else {
            println!("created {} tasks at {rate:.0} tasks/s", o.pending);
        }
        if all || o.part == "restart" {
            part_restart(&o, &mut loaded, &recv, &recv_base).await;
        }
        let stray = recv.other.load(Ordering::Relaxed);
        assert_eq!(stray, 0, "{stray} future tasks were dispatched");
    }
}
