//! Helpers for black-box tests of the PostgreSQL store and cluster mode: `stratus serve
//! --store postgres://…` nodes with their log in a file, lease ownership read through `psql`,
//! a receiver that tracks concurrency per queue, and a stream of named creates that retries
//! on other nodes.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

/// The location every queue of these tests lives in.
pub const LOC: &str = "projects/p/locations/l";

// ---------------------------------------------------------------------------------------------
// Nodes

/// One `stratus serve --store <postgres URL>` process on a free loopback port. Its stdout and
/// stderr go to a log file, printed (the tail) when a test panics while the node is alive.
pub struct Node {
    pub id: String,
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Node {
    /// Spawns the node without waiting for it.
    pub fn spawn(store: &str, id: &str, extra: &[&str]) -> Node {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // The working directory is the node's own, so nothing lands in the source tree.
        let dir = tempfile::Builder::new()
            .prefix(&format!("stratus-{id}-"))
            .tempdir()
            .unwrap();
        let log = std::fs::File::create(dir.path().join("node.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_stratus"))
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--store")
            .arg(store)
            .arg("--node-id")
            .arg(id)
            .args(extra)
            .current_dir(dir.path())
            .env("STRATUS_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn stratus");
        Node {
            id: id.to_string(),
            port,
            child: Some(child),
            dir,
        }
    }

    /// Spawns the node and waits (bounded) until `/healthz` answers 200.
    pub fn start(store: &str, id: &str, extra: &[&str]) -> Node {
        let mut node = Node::spawn(store, id, extra);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if healthz(node.port) {
                return node;
            }
            if !node.is_running() {
                panic!("node {id} exited at start:\n{}", node.log_tail(60));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "node {id} did not become ready on port {}:\n{}",
            node.port,
            node.log_tail(60)
        );
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is still running (not exited, not killed by us).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILL (`Child::kill` on unix): no shutdown path runs. Reaps the process.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits up to `limit` for the process to exit; `None` if it did not (it
    /// is SIGKILLed then).
    pub fn terminate(&mut self, limit: Duration) -> Option<ExitStatus> {
        let mut c = self.child.take()?;
        let sent = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(sent, "kill -TERM {} failed", c.id());
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = c.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("node.log")
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Log lines containing any of `needles`, at most `max` (the last ones).
    pub fn log_grep(&self, needles: &[&str], max: usize) -> String {
        let log = self.log();
        let hits: Vec<&str> = log
            .lines()
            .filter(|l| needles.iter().any(|n| l.contains(n)))
            .collect();
        hits[hits.len().saturating_sub(max)..].join("\n")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- log of node {} (last 80 lines, {}) ----\n{}\n---- end of log of node {} ----",
                self.id,
                self.log_path().display(),
                self.log_tail(80),
                self.id
            );
        }
        self.kill();
    }
}

/// Whether `GET /healthz` on 127.0.0.1:`port` answers 200 (one attempt, bounded).
pub fn healthz(port: u16) -> bool {
    use std::io::{Read, Write};
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.1 200")
}

// ---------------------------------------------------------------------------------------------
// SQL

/// Runs `sql` with `psql` against `url`; rows of tab-separated fields. Panics on an error.
pub async fn sql(url: &str, sql: &str) -> Vec<Vec<String>> {
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new("psql")
            .args(["-X", "-q", "-t", "-A", "-F", "\t", "-v", "ON_ERROR_STOP=1"])
            .arg("-d")
            .arg(url)
            .arg("-c")
            .arg(sql)
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .expect("psql took more than 30 s")
    .expect("run psql");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

/// A live lease: queue (full name), owner node, epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub queue: String,
    pub node: String,
    pub epoch: i64,
}

/// Every live lease (`expires_at > now()`) of the cluster in schema `stratus`.
pub async fn leases(url: &str) -> Vec<Lease> {
    sql(
        url,
        "SELECT q.name, l.node_id, l.epoch FROM stratus.leases l \
         JOIN stratus.queues q ON q.id = l.queue_id \
         WHERE l.expires_at > now() AND l.node_id IS NOT NULL ORDER BY q.name",
    )
    .await
    .into_iter()
    .map(|r| Lease {
        queue: r[0].clone(),
        node: r[1].clone(),
        epoch: r[2].parse().unwrap(),
    })
    .collect()
}

/// The live owner of `queue`, if any.
pub async fn owner(url: &str, queue: &str) -> Option<Lease> {
    leases(url).await.into_iter().find(|l| l.queue == queue)
}

/// How many of `queues` each node holds a live lease on (nodes without one are absent).
pub fn held_by_node(leases: &[Lease], queues: &[String]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for l in leases.iter().filter(|l| queues.contains(&l.queue)) {
        *m.entry(l.node.clone()).or_insert(0) += 1;
    }
    m
}

// ---------------------------------------------------------------------------------------------
// Receiver

#[derive(Default)]
struct QueueStats {
    current: usize,
    max: usize,
    arrivals: Vec<Instant>,
}

#[derive(Default)]
struct RecvState {
    queues: Mutex<HashMap<String, QueueStats>>,
    tasks: Mutex<HashMap<String, u32>>,
    total: AtomicUsize,
    delay: Duration,
}

/// Lowers a queue's current count when the request ends, also when its connection is cut
/// (the handler future is dropped then).
struct InFlight {
    state: Arc<RecvState>,
    queue: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut q = self.state.queues.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = q.get_mut(&self.queue) {
            s.current -= 1;
        }
    }
}

async fn receive(State(state): State<Arc<RecvState>>, headers: HeaderMap) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let (queue, task) = (
        header("x-cloudtasks-queuename"),
        header("x-cloudtasks-taskname"),
    );
    let now = Instant::now();
    {
        let mut q = state.queues.lock().unwrap();
        let s = q.entry(queue.clone()).or_default();
        s.current += 1;
        s.max = s.max.max(s.current);
        s.arrivals.push(now);
    }
    let _guard = InFlight {
        state: state.clone(),
        queue,
    };
    *state.tasks.lock().unwrap().entry(task).or_insert(0) += 1;
    state.total.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(state.delay).await;
    StatusCode::OK
}

/// An HTTP target on 127.0.0.1 that answers 200 after `delay` and records, per queue
/// (`X-CloudTasks-QueueName`), the current and highest number of concurrent requests and the
/// arrival times, and deliveries per task (`X-CloudTasks-TaskName`).
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    state: Arc<RecvState>,
}

impl Receiver {
    pub async fn start(delay: Duration) -> Receiver {
        let state = Arc::new(RecvState {
            delay,
            ..RecvState::default()
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(state.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { url, state }
    }

    /// Deliveries so far (duplicates included).
    pub fn total(&self) -> usize {
        self.state.total.load(Ordering::SeqCst)
    }

    /// Deliveries per task ID.
    pub fn counts(&self) -> HashMap<String, u32> {
        self.state.tasks.lock().unwrap().clone()
    }

    /// Whether `task` was delivered at least once.
    pub fn delivered(&self, task: &str) -> bool {
        self.state.tasks.lock().unwrap().contains_key(task)
    }

    /// The highest number of concurrent requests seen for queue ID `queue`.
    pub fn max_concurrent(&self, queue: &str) -> usize {
        self.state
            .queues
            .lock()
            .unwrap()
            .get(queue)
            .map_or(0, |s| s.max)
    }

    /// Arrival times of queue ID `queue`'s requests.
    pub fn arrivals(&self, queue: &str) -> Vec<Instant> {
        self.state
            .queues
            .lock()
            .unwrap()
            .get(queue)
            .map_or_else(Vec::new, |s| s.arrivals.clone())
    }
}

// ---------------------------------------------------------------------------------------------
// Creates

/// A create that did not succeed at once.
#[derive(Debug, Clone)]
pub struct Failure {
    pub at: Instant,
    pub took: Duration,
    pub node: usize,
    /// HTTP status and body, or `None` with the transport error in `body`.
    pub status: Option<u16>,
    pub body: String,
}

/// The base URLs of the nodes calls go to; a node marked down gets no new calls.
pub struct Targets {
    urls: Vec<String>,
    up: Vec<AtomicBool>,
}

impl Targets {
    pub fn new(urls: Vec<String>) -> Arc<Targets> {
        let up = urls.iter().map(|_| AtomicBool::new(true)).collect();
        Arc::new(Targets { urls, up })
    }

    pub fn mark_down(&self, i: usize) {
        self.up[i].store(false, Ordering::SeqCst);
    }

    /// A node that is up, chosen from `seed` (a different one for each attempt).
    fn pick(&self, seed: u64) -> usize {
        let up: Vec<usize> = (0..self.urls.len())
            .filter(|&i| self.up[i].load(Ordering::SeqCst))
            .collect();
        assert!(!up.is_empty(), "no node is up");
        up[(mix(seed) % up.len() as u64) as usize]
    }
}

/// A fixed pseudo-random permutation of `seed` (splitmix64).
pub fn mix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// What a stream of creates has seen so far.
#[derive(Default)]
pub struct Creates {
    /// Task IDs acknowledged: 200, or 409 ALREADY_EXISTS for a retried create.
    pub acked: Mutex<Vec<String>>,
    pub acked_count: AtomicUsize,
    /// Calls that did not answer 200/409, in order.
    pub failures: Mutex<Vec<Failure>>,
    /// Tasks given up on (still failing after the per-task deadline).
    pub abandoned: Mutex<Vec<String>>,
    /// The slowest call.
    pub slowest: Mutex<Duration>,
    /// When the last call answered 200 or 409.
    pub last_ok: Mutex<Option<Instant>>,
    /// Every stream task has finished.
    pub done: AtomicBool,
}

impl Creates {
    pub fn acked(&self) -> usize {
        self.acked_count.load(Ordering::SeqCst)
    }

    pub fn failures(&self) -> Vec<Failure> {
        self.failures.lock().unwrap().clone()
    }
}

/// One task to create: full queue name and task ID.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub queue: String,
    pub id: String,
}

/// The HTTP client of the create streams: bounded per call, so a hanging server shows.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .pool_max_idle_per_host(128)
        .build()
        .unwrap()
}

/// Creates `tasks` (named, so a retry is idempotent), `concurrency` in flight, started at no
/// more than `rate` per second, each on a node chosen at random among those up. A create that
/// fails (transport error or any status but 200/409) is retried on another node after a short
/// pause, for up to `give_up` per task. Returns at once; `creates.done` is set at the end.
#[allow(clippy::too_many_arguments)]
pub fn create_stream(
    http: reqwest::Client,
    targets: Arc<Targets>,
    tasks: Vec<NewTask>,
    concurrency: usize,
    rate: f64,
    receiver_url: String,
    give_up: Duration,
    creates: Arc<Creates>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let sem = Arc::new(tokio::sync::Semaphore::new(concurrency));
        let start = tokio::time::Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for (k, t) in tasks.into_iter().enumerate() {
            tokio::time::sleep_until(start + Duration::from_secs_f64(k as f64 / rate)).await;
            let permit = sem.clone().acquire_owned().await.unwrap();
            let (http, targets, creates) = (http.clone(), targets.clone(), creates.clone());
            let url = format!("{receiver_url}/work");
            set.spawn(async move {
                create_one(&http, &targets, &t, &url, k as u64, give_up, &creates).await;
                drop(permit);
            });
            while set.try_join_next().is_some() {}
        }
        while set.join_next().await.is_some() {}
        creates.done.store(true, Ordering::SeqCst);
    })
}

async fn create_one(
    http: &reqwest::Client,
    targets: &Targets,
    t: &NewTask,
    url: &str,
    seed: u64,
    give_up: Duration,
    creates: &Creates,
) {
    let body = json!({"task": {
        "name": format!("{}/tasks/{}", t.queue, t.id),
        "httpRequest": {"url": url, "httpMethod": "POST", "body": "aGVsbG8="},
    }});
    let deadline = Instant::now() + give_up;
    let mut pause = Duration::from_millis(20);
    for attempt in 0u64.. {
        let node = targets.pick(seed.wrapping_mul(1_000_003).wrapping_add(attempt));
        let began = Instant::now();
        let r = http
            .post(format!("{}/v2/{}/tasks", targets.urls[node], t.queue))
            .json(&body)
            .send()
            .await;
        let (status, text) = match r {
            Ok(r) => {
                let s = r.status().as_u16();
                (Some(s), r.text().await.unwrap_or_default())
            }
            Err(e) => (None, format!("{e:?}")),
        };
        let took = began.elapsed();
        {
            let mut s = creates.slowest.lock().unwrap();
            *s = (*s).max(took);
        }
        if matches!(status, Some(200 | 409)) {
            creates.acked.lock().unwrap().push(t.id.clone());
            creates.acked_count.fetch_add(1, Ordering::SeqCst);
            *creates.last_ok.lock().unwrap() = Some(Instant::now());
            return;
        }
        creates.failures.lock().unwrap().push(Failure {
            at: began,
            took,
            node,
            status,
            body: text.chars().take(400).collect(),
        });
        if Instant::now() >= deadline {
            creates.abandoned.lock().unwrap().push(t.id.clone());
            return;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

// ---------------------------------------------------------------------------------------------
// REST and waiting

/// POSTs `body` to `base` + `path`; panics unless the answer is 2xx.
pub async fn post(http: &reqwest::Client, base: &str, path: &str, body: Value) -> Value {
    let r = http
        .post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {path}: {e}"));
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "POST {path}: {status} {v}");
    v
}

/// Creates queue `id` in [`LOC`] (500/s, `concurrent` concurrent dispatches, retries after
/// 0.1–1 s) through `base`; returns its full name.
pub async fn create_queue(http: &reqwest::Client, base: &str, id: &str, concurrent: u32) -> String {
    let name = format!("{LOC}/queues/{id}");
    post(
        http,
        base,
        &format!("/v2/{LOC}/queues"),
        json!({
            "name": name,
            "rateLimits": {"maxDispatchesPerSecond": 500, "maxConcurrentDispatches": concurrent},
            "retryConfig": {"minBackoff": "0.1s", "maxBackoff": "1s", "maxAttempts": -1},
        }),
    )
    .await;
    name
}

/// Polls `done` every 100 ms until it holds or `limit` passes; panics then.
pub async fn wait(what: &str, limit: Duration, mut done: impl AsyncFnMut() -> bool) -> Duration {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done().await {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out after {limit:?} waiting for {what}");
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL processes

/// The processes of the PostgreSQL server listening on `port`: the postmaster (a `postgres`
/// process with `-p <port>` in its arguments) first, then its children.
pub fn pg_pids(port: u16) -> Vec<u32> {
    let pids: Vec<u32> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    let port = port.to_string();
    let Some(postmaster) = pids.iter().copied().find(|pid| {
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            return false;
        };
        let args: Vec<&[u8]> = cmd.split(|&b| b == 0).collect();
        args.first().is_some_and(|a| a.ends_with(b"postgres"))
            && args
                .windows(2)
                .any(|w| w[0] == b"-p" && w[1] == port.as_bytes())
    }) else {
        return Vec::new();
    };
    let ppid = |pid: u32| -> Option<u32> {
        let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        s.rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    let mut out = vec![postmaster];
    out.extend(pids.into_iter().filter(|&p| ppid(p) == Some(postmaster)));
    out
}

/// Sends `signal` (`STOP`, `CONT`) to `pids` with kill(1); whether every one got it.
pub fn signal(pids: &[u32], signal: &str) -> bool {
    pids.is_empty()
        || Command::new("kill")
            .arg(format!("-{signal}"))
            .args(pids.iter().map(u32::to_string))
            .status()
            .is_ok_and(|s| s.success())
}

/// Freezes a PostgreSQL server (SIGSTOP to the postmaster, then to every child): connections
/// are accepted by the kernel but nothing answers. Thawed (SIGCONT) on drop.
pub struct Frozen {
    pids: Vec<u32>,
}

impl Frozen {
    pub fn freeze(port: u16) -> Frozen {
        // The postmaster first, so it forks no new backend; then the children it has.
        let postmaster = pg_pids(port);
        assert!(
            !postmaster.is_empty(),
            "no PostgreSQL process on port {port}"
        );
        assert!(
            signal(&postmaster[..1], "STOP"),
            "SIGSTOP {}",
            postmaster[0]
        );
        let all = pg_pids(port);
        let frozen = Frozen { pids: all };
        assert!(
            signal(&frozen.pids[1..], "STOP"),
            "SIGSTOP {:?}",
            &frozen.pids[1..]
        );
        frozen
    }

    pub fn thaw(self) {}
}

impl Drop for Frozen {
    fn drop(&mut self) {
        // Processes that exited meanwhile make kill(1) fail; the others still get the signal.
        let _ = signal(&self.pids, "CONT");
    }
}

/// Prints PostgreSQL's errors (deadlocks, with the statements involved) when the test panics
/// while this guard lives.
pub struct PgLogOnPanic<'a>(pub &'a stratus_testpg::PgServer);

impl Drop for PgLogOnPanic<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let log = self.0.log();
        let lines: Vec<&str> = log.lines().collect();
        let errors: Vec<usize> = (0..lines.len())
            .filter(|&i| lines[i].contains("ERROR:") || lines[i].contains("FATAL:"))
            .collect();
        eprintln!(
            "---- PostgreSQL logged {} errors and fatal errors; the first and last ones ----",
            errors.len()
        );
        let mut shown: Vec<usize> = errors.iter().copied().take(2).collect();
        shown.extend(errors.iter().copied().skip(2).rev().take(2).rev());
        for i in shown {
            for l in &lines[i..(i + 10).min(lines.len())] {
                eprintln!("  {l}");
            }
        }
        eprintln!("---- end of PostgreSQL's log ----");
    }
}
