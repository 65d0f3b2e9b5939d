//! Benchmark: the PostgreSQL store and cluster mode next to the embedded SQLite store, in one
//! run on one machine.
//!
//! Every run measures three set-ups, each on a fresh store:
//!
//! - **sqlite**: one `stratus serve --data-dir <temp>` (WAL, `synchronous=FULL`): the in-run
//!   baseline;
//! - **pg ×1**: one `stratus serve --store postgres://…` node;
//! - **pg ×2**: two nodes on the same database (any node takes creates; each dispatches the
//!   queues it holds the lease of).
//!
//! PostgreSQL is started by the bench (`stratus-testpg`: `initdb` in a temp dir, a free
//! loopback port) with `fsync`, `synchronous_commit` and `full_page_writes` on, so an
//! acknowledged create is on disk as with SQLite; each set-up gets a fresh database of it.
//!
//! Parts (`--parts creates,dispatch`):
//!
//! - **creates**: `--clients` loops (keep-alive HTTP/1.1, one request after the other), client
//!   `c` on node `c mod nodes`, each `POST /v2/{queue}/tasks` with a unique name and a 1 KiB body
//!   for `--seconds` s; the servers run with `--no-dispatch` (as `bench_creates`).
//! - **dispatch**: `--queues` queues (500/s, `--concurrency` concurrent dispatches each) are
//!   created and paused; with PostgreSQL the bench waits until every queue has a live lease
//!   (with two nodes: half on each). `--tasks` tasks due now (64-byte body) are created with
//!   BatchCreateTasks (100 per call, `--creators` callers alternating over the nodes), every
//!   queue is resumed (through alternating nodes) and the clock runs until nginx has read
//!   every request and every queue is empty (`ListTasks?pageSize=1`: every outcome recorded).
//!   The target is nginx (`return 200;`, one worker, access log off) started by the bench.
//!
//! CPU (user + system, from `/proc/<pid>/stat`) is measured over each timed phase for every
//! stratus process, for PostgreSQL (the postmaster with every backend, including backends that
//! exited: their time is in the postmaster's `cutime`/`cstime`), for nginx and for the bench,
//! and the machine's busy share from `/proc/stat`; "other" is what the rest of the machine used
//! meanwhile (other programs, kernel threads). Before each measurement the bench waits up to
//! `--settle-max` s for the machine to be nearly idle (under 15% busy over a second).
//!
//! Run: `scripts/bench_cluster.sh [options]`, or by hand `cargo build --release -p stratus &&
//! cargo build --release -p stratus --example bench_cluster &&
//! ./target/release/examples/bench_cluster --runs 5`. Needs PostgreSQL's server binaries
//! (`initdb`, `pg_ctl`; Debian's `postgresql` package) and nginx (`--nginx`, default
//! `/usr/sbin/nginx`).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stratus_testpg::{PgOptions, PgServer};
use tokio::task::JoinSet;

const LOCATION: &str = "projects/bench/locations/local";
/// `USER_HZ`: the unit of the CPU times in `/proc/<pid>/stat`.
const CLK_TCK: f64 = 100.0;
/// Most tasks in one BatchCreateTasks call.
const BATCH: usize = 100;

const USAGE: &str = "bench_cluster [--runs 3] [--parts creates,dispatch] \
[--setups sqlite,pg1,pg2] [--seconds 4] [--clients 64] [--tasks 50000] [--queues 64] \
[--concurrency 16] [--creators 16] [--lease-timeout 8s] [--settle-max 60] \
[--bin target/release/stratus] [--nginx /usr/sbin/nginx]";

#[derive(Clone)]
struct Opts {
    bin: String,
    nginx: String,
    runs: usize,
    parts: Vec<String>,
    setups: Vec<Setup>,
    seconds: u64,
    clients: usize,
    tasks: usize,
    queues: usize,
    concurrency: usize,
    creators: usize,
    lease_timeout: String,
    /// Longest wait for a nearly idle machine before each measurement (0: none).
    settle_max: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Setup {
    Sqlite,
    Pg1,
    Pg2,
}

impl Setup {
    fn label(self) -> &'static str {
        match self {
            Setup::Sqlite => "sqlite",
            Setup::Pg1 => "pg ×1",
            Setup::Pg2 => "pg ×2",
        }
    }

    fn nodes(self) -> usize {
        if self == Setup::Pg2 { 2 } else { 1 }
    }
}

fn opts() -> Opts {
    let mut o = Opts {
        bin: "target/release/stratus".into(),
        nginx: "/usr/sbin/nginx".into(),
        runs: 3,
        parts: vec!["creates".into(), "dispatch".into()],
        setups: vec![Setup::Sqlite, Setup::Pg1, Setup::Pg2],
        seconds: 4,
        clients: 64,
        tasks: 50_000,
        queues: 64,
        concurrency: 16,
        creators: 16,
        lease_timeout: "8s".into(),
        settle_max: 60,
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
            "--runs" => o.runs = num(flag),
            "--parts" => o.parts = v.split(',').map(str::to_string).collect(),
            "--setups" => {
                o.setups = v
                    .split(',')
                    .map(|s| match s {
                        "sqlite" => Setup::Sqlite,
                        "pg1" => Setup::Pg1,
                        "pg2" => Setup::Pg2,
                        other => panic!("--setups sqlite,pg1,pg2: unknown {other}"),
                    })
                    .collect()
            }
            "--seconds" => o.seconds = num(flag) as u64,
            "--clients" => o.clients = num(flag),
            "--tasks" => o.tasks = num(flag),
            "--queues" => o.queues = num(flag),
            "--concurrency" => o.concurrency = num(flag),
            "--creators" => o.creators = num(flag),
            "--lease-timeout" => o.lease_timeout = v.clone(),
            "--settle-max" => o.settle_max = num(flag) as u64,
            other => panic!("unknown option {other}\n{USAGE}"),
        }
        i += 2;
    }
    for p in &o.parts {
        assert!(
            matches!(p.as_str(), "creates" | "dispatch"),
            "--parts creates,dispatch: unknown {p}"
        );
    }
    assert!(o.runs >= 1 && o.clients >= 1 && o.queues >= 2 && o.creators >= 1);
    o
}

// ---------------------------------------------------------------------------------------------
// /proc

/// utime, stime, cutime, cstime and ppid of a process, in seconds (ppid as is).
fn stat_of(pid: u32) -> Option<(f64, f64, f64, f64, u32)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = s.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // After the name: state(0) ppid(1) … utime(11) stime(12) cutime(13) cstime(14).
    let ppid = f.get(1)?.parse().ok()?;
    Some((
        n(11) / CLK_TCK,
        n(12) / CLK_TCK,
        n(13) / CLK_TCK,
        n(14) / CLK_TCK,
        ppid,
    ))
}

/// CPU seconds `pid` has used so far (user + system, itself only).
fn cpu_secs(pid: u32) -> f64 {
    stat_of(pid).map_or(0.0, |(u, s, _, _, _)| u + s)
}

fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// The postmaster listening on `port`: a `postgres` process with `-p <port>` in its arguments.
fn postmaster(port: u16) -> Option<u32> {
    let port = port.to_string();
    all_pids().into_iter().find(|&pid| {
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            return false;
        };
        let args: Vec<&[u8]> = cmd.split(|&b| b == 0).collect();
        let is_pg = args
            .first()
            .is_some_and(|a| a.ends_with(b"postgres") || a.ends_with(b"postmaster"));
        is_pg
            && args
                .windows(2)
                .any(|w| w[0] == b"-p" && w[1] == port.as_bytes())
    })
}

/// CPU seconds of a PostgreSQL server so far: the postmaster, its live children (backends,
/// writers) and its reaped children (`cutime`/`cstime`).
fn pg_cpu_secs(postmaster: u32) -> f64 {
    let Some((u, s, cu, cs, _)) = stat_of(postmaster) else {
        return 0.0;
    };
    let children: f64 = all_pids()
        .into_iter()
        .filter_map(stat_of)
        .filter(|st| st.4 == postmaster)
        .map(|(u, s, _, _, _)| u + s)
        .sum();
    u + s + cu + cs + children
}

/// Machine-wide (busy, total) ticks from /proc/stat.
fn machine_ticks() -> (f64, f64) {
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
    (total - get(3) - get(4), total)
}

/// CPU use over a phase, in cores.
#[derive(Clone, Default)]
struct Cpu {
    /// Each stratus process.
    stratus: Vec<f64>,
    postgres: f64,
    nginx: f64,
    bench: f64,
    /// Machine busy share (of all cores).
    busy: f64,
    /// Cores busy with anything else (other programs on the machine, the kernel's own work).
    other: f64,
}

impl Cpu {
    fn stratus_sum(&self) -> f64 {
        self.stratus.iter().sum()
    }
}

struct CpuProbe {
    t: Instant,
    stratus: Vec<(u32, f64)>,
    pg: Option<(u32, f64)>,
    nginx: Option<(u32, f64)>,
    bench: f64,
    machine: (f64, f64),
}

impl CpuProbe {
    fn start(stratus: &[u32], pg: Option<u32>, nginx: Option<u32>) -> CpuProbe {
        CpuProbe {
            t: Instant::now(),
            stratus: stratus.iter().map(|&p| (p, cpu_secs(p))).collect(),
            pg: pg.map(|p| (p, pg_cpu_secs(p))),
            nginx: nginx.map(|p| (p, cpu_secs(p))),
            bench: cpu_secs(std::process::id()),
            machine: machine_ticks(),
        }
    }

    fn stop(&self) -> Cpu {
        let secs = self.t.elapsed().as_secs_f64();
        let (b, t) = machine_ticks();
        let mut cpu = Cpu {
            stratus: self
                .stratus
                .iter()
                .map(|&(p, c)| (cpu_secs(p) - c) / secs)
                .collect(),
            postgres: self.pg.map_or(0.0, |(p, c)| (pg_cpu_secs(p) - c) / secs),
            nginx: self.nginx.map_or(0.0, |(p, c)| (cpu_secs(p) - c) / secs),
            bench: (cpu_secs(std::process::id()) - self.bench) / secs,
            busy: (b - self.machine.0) / (t - self.machine.1).max(1.0),
            other: 0.0,
        };
        let known = cpu.stratus_sum() + cpu.postgres + cpu.nginx + cpu.bench;
        cpu.other = (cpu.busy * ncores() as f64 - known).max(0.0);
        cpu
    }
}

// ---------------------------------------------------------------------------------------------
// Processes

fn ncores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Waits (up to `max`) until the machine is nearly idle (under 15% busy over a second), so
/// other programs disturb the measurement less; returns the last busy share seen.
async fn settle(max: Duration) -> f64 {
    let end = Instant::now() + max;
    loop {
        let (b0, t0) = machine_ticks();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (b1, t1) = machine_ticks();
        let busy = (b1 - b0) / (t1 - t0).max(1.0);
        if busy < 0.15 || Instant::now() >= end {
            return busy;
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether `GET /healthz` answers 200.
async fn healthz(http: &reqwest::Client, port: u16) -> bool {
    http.get(format!("http://127.0.0.1:{port}/healthz"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// One `stratus serve` process; SIGKILLed on drop.
struct Stratus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Stratus {
    async fn start(bin: &str, store: Option<&str>, node: &str, extra: &[&str]) -> Stratus {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        // Absolute: the process runs in its own working directory.
        let bin = std::path::absolute(bin).unwrap_or_else(|e| panic!("{bin}: {e}"));
        let mut cmd = Command::new(&bin);
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")]);
        match store {
            Some(url) => {
                cmd.args(["--store", url, "--node-id", node]);
            }
            None => {
                cmd.arg("--data-dir").arg(dir.path().join("data"));
            }
        }
        let child = cmd
            .args(extra)
            .current_dir(dir.path())
            .env("STRATUS_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {}: {e} (cargo build --release -p stratus)",
                    bin.display()
                )
            });
        let mut s = Stratus {
            child,
            port,
            _dir: dir,
        };
        let http = reqwest::Client::new();
        let end = Instant::now() + Duration::from_secs(60);
        while !healthz(&http, port).await {
            if let Ok(Some(status)) = s.child.try_wait() {
                panic!("stratus exited at start: {status}");
            }
            assert!(Instant::now() < end, "stratus did not start within 60 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        s
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Stratus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// nginx on a free loopback port: `return 200;` everywhere, `stub_status` at `/nginx_status`
/// (as in `bench_dispatch`).
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
        let end = Instant::now() + Duration::from_secs(5);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(Instant::now() < end, "nginx did not start");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        n
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Requests nginx has read (this one included).
    async fn requests(&self, http: &reqwest::Client) -> u64 {
        let text = http
            .get(self.url("/nginx_status"))
            .send()
            .await
            .expect("stub_status")
            .text()
            .await
            .unwrap();
        let n: Vec<u64> = text
            .lines()
            .nth(2)
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        assert_eq!(n.len(), 3, "stub_status format: {text}");
        n[2]
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The stratus processes of one set-up, on a fresh store.
struct Deployment {
    nodes: Vec<Stratus>,
    /// The database URL (PostgreSQL set-ups).
    db: Option<String>,
    postmaster: Option<u32>,
}

impl Deployment {
    async fn start(o: &Opts, pg: &PgServer, setup: Setup, extra: &[&str]) -> Deployment {
        let db = (setup != Setup::Sqlite).then(|| pg.fresh_database().unwrap());
        let mut args: Vec<&str> = extra.to_vec();
        if db.is_some() {
            args.extend(["--lease-timeout", &o.lease_timeout]);
        }
        let mut nodes = Vec::new();
        // One after the other: the first applies the migrations.
        for n in 0..setup.nodes() {
            nodes.push(Stratus::start(&o.bin, db.as_deref(), &format!("b{n}"), &args).await);
        }
        let postmaster = db
            .as_ref()
            .map(|_| postmaster(pg.port().unwrap()).expect("the postmaster's pid"));
        Deployment {
            nodes,
            db,
            postmaster,
        }
    }

    fn pids(&self) -> Vec<u32> {
        self.nodes.iter().map(Stratus::pid).collect()
    }

    /// What the database says when deliveries stall: leases, live tasks per queue, and what
    /// the connections are doing (PostgreSQL set-ups).
    fn stall_report(&self) {
        let Some(db) = &self.db else {
            return;
        };
        for (what, sql) in [
            (
                "live tasks per queue and state, with the queue's lease",
                "SELECT q.name, t.state, count(*) AS tasks, l.node_id, l.epoch, \
                 round(extract(epoch FROM l.expires_at - now())::numeric, 1) AS expires_in_s \
                 FROM stratus.tasks t JOIN stratus.queues q ON q.id = t.queue_id \
                 LEFT JOIN stratus.leases l ON l.queue_id = q.id \
                 WHERE t.state <= 1 GROUP BY 1, 2, 4, 5, 6 ORDER BY 1",
            ),
            (
                "nodes",
                "SELECT id, round(extract(epoch FROM now() - heartbeat_at)::numeric, 1) AS \
                 heartbeat_age_s FROM stratus.nodes ORDER BY id",
            ),
            (
                "connections not idle",
                "SELECT pid, application_name, state, wait_event_type, wait_event, \
                 round(extract(epoch FROM now() - xact_start)::numeric, 1) AS xact_s, \
                 left(regexp_replace(query, '\\s+', ' ', 'g'), 120) AS query \
                 FROM pg_stat_activity WHERE datname = current_database() \
                 AND state <> 'idle' AND pid <> pg_backend_pid() ORDER BY xact_start",
            ),
        ] {
            let out = Command::new("psql")
                .args(["-X", "-P", "pager=off", "-d"])
                .arg(db)
                .arg("-c")
                .arg(sql)
                .output();
            match out {
                Ok(o) => println!(
                    "  -- {what}:\n{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                ),
                Err(e) => println!("  -- {what}: psql: {e}"),
            }
        }
    }

    /// Live leases per node ID (PostgreSQL set-ups).
    fn leases(&self) -> Vec<(String, usize)> {
        let Some(db) = &self.db else {
            return Vec::new();
        };
        let out = Command::new("psql")
            .args([
                "-X",
                "-q",
                "-t",
                "-A",
                "-F",
                "\t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
            ])
            .arg(db)
            .arg("-c")
            .arg(
                "SELECT node_id, count(*) FROM stratus.leases \
                 WHERE expires_at > now() AND node_id IS NOT NULL GROUP BY node_id ORDER BY 1",
            )
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let (n, c) = l.split_once('\t')?;
                Some((n.to_string(), c.parse().ok()?))
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// REST

#[derive(Clone)]
struct Api {
    http: reqwest::Client,
}

impl Api {
    fn new() -> Api {
        Api {
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(256)
                .build()
                .unwrap(),
        }
    }

    async fn post(&self, base: &str, path: &str, body: &Value) -> Value {
        let r = self
            .http
            .post(format!("{base}{path}"))
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        assert!(status.is_success(), "{path}: {status}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    async fn queue_empty(&self, base: &str, q: &str) -> bool {
        let r = self
            .http
            .get(format!("{base}/v2/{q}/tasks?pageSize=1"))
            .send()
            .await
            .expect("ListTasks");
        assert!(r.status().is_success(), "ListTasks: {}", r.status());
        let v: Value = r.json().await.unwrap_or(Value::Null);
        v["tasks"].as_array().is_none_or(Vec::is_empty)
    }
}

// ---------------------------------------------------------------------------------------------
// Creates

struct CreatesResult {
    per_s: f64,
    cpu: Cpu,
}

async fn creates_run(o: &Opts, pg: &PgServer, setup: Setup) -> CreatesResult {
    let d = Deployment::start(o, pg, setup, &["--no-dispatch"]).await;
    let api = Api::new();
    let queue = format!("{LOCATION}/queues/bench");
    api.post(
        &d.nodes[0].base(),
        &format!("/v2/{LOCATION}/queues"),
        &json!({"name": queue}),
    )
    .await;
    // A 1 KiB body, as in bench_creates.
    let payload = "A".repeat(1368);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(o.clients)
        .build()
        .unwrap();
    let bases: Vec<String> = d.nodes.iter().map(Stratus::base).collect();
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let probe = CpuProbe::start(&d.pids(), d.postmaster, None);
    let start = Instant::now();
    let mut set = JoinSet::new();
    for c in 0..o.clients {
        let url = format!("{}/v2/{queue}/tasks", bases[c % bases.len()]);
        let (http, done, stop, queue, payload) = (
            http.clone(),
            done.clone(),
            stop.clone(),
            queue.clone(),
            payload.clone(),
        );
        set.spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let body = json!({"task": {
                    "name": format!("{queue}/tasks/c{c}-{n}"),
                    "httpRequest": {"url": "http://127.0.0.1:9/hook", "body": payload},
                }});
                let r = http.post(&url).json(&body).send().await.expect("create");
                assert!(r.status().is_success(), "create: {}", r.status());
                let _ = r.bytes().await;
                n += 1;
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    tokio::time::sleep(Duration::from_secs(o.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    set.join_all().await;
    let secs = start.elapsed().as_secs_f64();
    let cpu = probe.stop();
    CreatesResult {
        per_s: done.load(Ordering::Relaxed) as f64 / secs,
        cpu,
    }
}

// ---------------------------------------------------------------------------------------------
// Dispatch

struct DispatchResult {
    creates_per_s: f64,
    per_s: f64,
    cpu: Cpu,
    /// Leases per node when the clock started.
    spread: Vec<(String, usize)>,
}

async fn dispatch_run(o: &Opts, pg: &PgServer, nginx: &Nginx, setup: Setup) -> DispatchResult {
    let d = Deployment::start(o, pg, setup, &[]).await;
    let api = Api::new();
    let bases: Vec<String> = d.nodes.iter().map(Stratus::base).collect();
    let queues: Vec<String> = (0..o.queues)
        .map(|i| format!("{LOCATION}/queues/q{i:04}"))
        .collect();
    let mut set = JoinSet::new();
    for (i, q) in queues.iter().enumerate() {
        let (api, base, q) = (api.clone(), bases[i % bases.len()].clone(), q.clone());
        let concurrency = o.concurrency;
        set.spawn(async move {
            api.post(
                &base,
                &format!("/v2/{LOCATION}/queues"),
                &json!({"name": q, "rateLimits": {"maxDispatchesPerSecond": 500.0,
                        "maxConcurrentDispatches": concurrency}}),
            )
            .await;
            api.post(&base, &format!("/v2/{q}:pause"), &json!({})).await;
        });
    }
    set.join_all().await;
    // Every queue owned (with two nodes: half each) before the clock starts.
    let mut spread = d.leases();
    if d.db.is_some() {
        let want = o.queues / setup.nodes();
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            spread = d.leases();
            let total: usize = spread.iter().map(|(_, c)| c).sum();
            let even = spread.len() == setup.nodes() && spread.iter().all(|(_, c)| *c >= want);
            if total == o.queues && even {
                break;
            }
            if Instant::now() > end {
                println!("  (leases not spread evenly after 60 s: {spread:?}; measuring anyway)");
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // The tasks, into the paused queues.
    let calls = o.tasks.div_ceil(BATCH);
    let next = Arc::new(AtomicUsize::new(0));
    let (url, body) = (nginx.url("/t"), "eHh4".repeat(21) + "eA==");
    let start = Instant::now();
    let mut set = JoinSet::new();
    for c in 0..o.creators {
        let (api, next, queues, bases, url, body) = (
            api.clone(),
            next.clone(),
            queues.clone(),
            bases.clone(),
            url.clone(),
            body.clone(),
        );
        let tasks = o.tasks;
        set.spawn(async move {
            loop {
                let b = next.fetch_add(1, Ordering::Relaxed);
                if b >= calls {
                    return;
                }
                let q = &queues[b % queues.len()];
                let requests: Vec<Value> = (b * BATCH..((b + 1) * BATCH).min(tasks))
                    .map(|_| {
                        json!({"task": {"httpRequest": {"url": url, "httpMethod": "POST",
                                    "body": body}}})
                    })
                    .collect();
                let op = api
                    .post(
                        &bases[c % bases.len()],
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
    let creates_per_s = o.tasks as f64 / start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;

    let poll = reqwest::Client::new();
    let base_count = nginx.requests(&poll).await;
    let mut polls = 0u64;
    let probe = CpuProbe::start(&d.pids(), d.postmaster, Some(nginx.child.id()));
    let t0 = Instant::now();
    let mut set = JoinSet::new();
    for (i, q) in queues.iter().enumerate() {
        let (api, base, q) = (api.clone(), bases[i % bases.len()].clone(), q.clone());
        set.spawn(async move {
            api.post(&base, &format!("/v2/{q}:resume"), &json!({}))
                .await
        });
    }
    set.join_all().await;
    let limit = Duration::from_secs(600);
    // No new delivery for this long: say what the database holds, and give up after twice.
    let stall = Duration::from_secs(30);
    let (mut last_n, mut last_change, mut reported) = (0, Instant::now(), false);
    loop {
        tokio::time::sleep(Duration::from_millis(5)).await;
        polls += 1;
        let n = nginx.requests(&poll).await - base_count - polls;
        if n as usize >= o.tasks {
            break;
        }
        if n != last_n {
            (last_n, last_change) = (n, Instant::now());
        }
        if last_change.elapsed() > stall && !reported {
            println!(
                "  STALLED: {n} of {} delivered, none for {stall:?} ({} s after resume)",
                o.tasks,
                t0.elapsed().as_secs()
            );
            d.stall_report();
            reported = true;
        }
        if last_change.elapsed() > 2 * stall || t0.elapsed() > limit {
            report_pg_log(pg);
            panic!(
                "only {n} of {} delivered after {:.0} s (none for the last {:.0} s)",
                o.tasks,
                t0.elapsed().as_secs_f64(),
                last_change.elapsed().as_secs_f64()
            );
        }
    }
    let mut left: Vec<(usize, &String)> = queues.iter().enumerate().collect();
    let empty_by = Instant::now() + 2 * stall;
    while !left.is_empty() {
        if Instant::now() > empty_by {
            println!(
                "  STALLED: every task delivered, but {} queues not empty after {:?}",
                left.len(),
                2 * stall
            );
            d.stall_report();
            report_pg_log(pg);
            panic!("queues not empty: {left:?}");
        }
        let mut still = Vec::new();
        for (i, q) in left {
            if !api.queue_empty(&bases[i % bases.len()], q).await {
                still.push((i, q));
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        left = still;
        assert!(t0.elapsed() < limit, "queues not empty after {limit:?}");
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = probe.stop();
    DispatchResult {
        creates_per_s,
        per_s: o.tasks as f64 / secs,
        cpu,
        spread,
    }
}

// ---------------------------------------------------------------------------------------------
// Report

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

fn cores(c: &Cpu) -> String {
    let each: Vec<String> = c.stratus.iter().map(|v| format!("{v:.2}")).collect();
    format!(
        "stratus {} · pg {:.2} · bench {:.2}{} · other {:.2} · busy {:.0}%",
        each.join("+"),
        c.postgres,
        c.bench,
        if c.nginx > 0.0 {
            format!(" · nginx {:.2}", c.nginx)
        } else {
            String::new()
        },
        c.other,
        100.0 * c.busy
    )
}

/// Server CPU (stratus + PostgreSQL) µs per operation.
fn us_per(c: &Cpu, per_s: f64) -> f64 {
    (c.stratus_sum() + c.postgres) * 1e6 / per_s
}

/// One figure per set-up and run: rate, and the CPU seen with it.
type Rows = Vec<Vec<(Setup, f64, Cpu)>>;

fn summary(what: &str, o: &Opts, rows: &Rows) {
    let med = |s: Setup, f: &dyn Fn(f64, &Cpu) -> f64| {
        median(
            &rows
                .iter()
                .flat_map(|r| r.iter().filter(|(x, _, _)| *x == s))
                .map(|(_, v, c)| f(*v, c))
                .collect::<Vec<_>>(),
        )
    };
    // Per-run ratios against a set-up of the same run.
    let ratio = |a: Setup, b: Setup| {
        median(
            &rows
                .iter()
                .filter_map(|r| {
                    let va = r.iter().find(|(x, _, _)| *x == a)?.1;
                    let vb = r.iter().find(|(x, _, _)| *x == b)?.1;
                    Some(va / vb)
                })
                .collect::<Vec<_>>(),
        )
    };
    println!("\n{what}, medians of {} runs:", rows.len());
    println!(
        "{:>8} {:>12} {:>14} {:>10} {:>8} {:>8} {:>8} {:>8} {:>14}",
        "setup",
        "per s",
        "stratus cores",
        "pg cores",
        "nginx",
        "bench",
        "other",
        "busy",
        "server µs/op"
    );
    for &s in &o.setups {
        println!(
            "{:>8} {:>12.0} {:>14.2} {:>10.2} {:>8.2} {:>8.2} {:>8.2} {:>7.0}% {:>14.0}",
            s.label(),
            med(s, &|v, _| v),
            med(s, &|_, c| c.stratus_sum()),
            med(s, &|_, c| c.postgres),
            med(s, &|_, c| c.nginx),
            med(s, &|_, c| c.bench),
            med(s, &|_, c| c.other),
            med(s, &|_, c| 100.0 * c.busy),
            med(s, &|v, c| us_per(c, v)),
        );
    }
    let has = |s: Setup| o.setups.contains(&s);
    if has(Setup::Pg1) && has(Setup::Sqlite) {
        let r = ratio(Setup::Pg1, Setup::Sqlite);
        println!(
            "{what}: pg ×1 ÷ sqlite = {:.0}% (median of per-run ratios) · goal ≥ 50%: {}",
            100.0 * r,
            if r >= 0.5 { "met" } else { "MISSED" }
        );
    }
    if has(Setup::Pg2) && has(Setup::Pg1) {
        let r = ratio(Setup::Pg2, Setup::Pg1);
        println!(
            "{what}: pg ×2 ÷ pg ×1 = {r:.2}× (median of per-run ratios) · goal ≥ 1.6×: {}",
            if r >= 1.6 { "met" } else { "MISSED" }
        );
    }
}

/// Waits for a quiet machine (`--settle-max`) and says so when it stayed busy.
async fn quiet(o: &Opts) {
    if o.settle_max == 0 {
        return;
    }
    let t = Instant::now();
    let busy = settle(Duration::from_secs(o.settle_max)).await;
    if busy >= 0.15 {
        println!(
            "  (machine still {:.0}% busy after waiting {:.0} s for it to settle)",
            100.0 * busy,
            t.elapsed().as_secs_f64()
        );
    }
}

#[tokio::main]
async fn main() {
    let o = opts();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_default();
    let pg = PgServer::start_with(PgOptions { durable: true }).expect("PostgreSQL");
    let version = Command::new("psql")
        .args([
            "-X",
            "-t",
            "-A",
            "-d",
            &pg.url(),
            "-c",
            "SHOW server_version",
        ])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    println!(
        "machine: {} cores ({cpu}); server {}; SQLite synchronous=FULL; PostgreSQL {version} \
         (fsync, synchronous_commit and full_page_writes on) on 127.0.0.1:{}; lease timeout {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        o.bin,
        pg.port().map_or("?".into(), |p| p.to_string()),
        o.lease_timeout
    );
    let creates = o.parts.iter().any(|p| p == "creates");
    let dispatch = o.parts.iter().any(|p| p == "dispatch");
    let nginx = if dispatch {
        Some(Nginx::start(&o.nginx).await)
    } else {
        None
    };
    if creates {
        println!(
            "\n== creates: {} clients × {} s, unique names, 1 KiB body, servers --no-dispatch",
            o.clients, o.seconds
        );
    }
    if dispatch {
        println!(
            "== dispatch: {} tasks due now into {} paused queues × (500/s, {} concurrent); \
             BatchCreateTasks × 100 from {} callers; resume; until nginx read all and every \
             queue is empty",
            o.tasks, o.queues, o.concurrency, o.creators
        );
    }
    let mut create_rows: Rows = Vec::new();
    let mut dispatch_rows: Rows = Vec::new();
    for run in 1..=o.runs {
        let (mut cr, mut dr) = (Vec::new(), Vec::new());
        for &s in &o.setups {
            if creates {
                quiet(&o).await;
                let r = creates_run(&o, &pg, s).await;
                println!(
                    "run {run} {:>7} creates     {:>8.0}/s   {}  ({:.0} µs server CPU per create)",
                    s.label(),
                    r.per_s,
                    cores(&r.cpu),
                    us_per(&r.cpu, r.per_s)
                );
                cr.push((s, r.per_s, r.cpu));
            }
            if let Some(nginx) = &nginx {
                quiet(&o).await;
                let r = dispatch_run(&o, &pg, nginx, s).await;
                println!(
                    "run {run} {:>7} deliveries  {:>8.0}/s   {}  ({:.0} µs server CPU per delivery; \
                     batch creates {:.0}/s; leases {:?})",
                    s.label(),
                    r.per_s,
                    cores(&r.cpu),
                    us_per(&r.cpu, r.per_s),
                    r.creates_per_s,
                    r.spread
                );
                dr.push((s, r.per_s, r.cpu));
            }
        }
        create_rows.push(cr);
        dispatch_rows.push(dr);
    }
    if creates {
        summary("CREATES", &o, &create_rows);
    }
    if dispatch {
        summary("DELIVERIES", &o, &dispatch_rows);
    }
    println!(
        "(cores: CPU time ÷ wall time over the timed phase; stratus per process, pg = postmaster \
         and every backend; bench: this load generator; other: everything else on the machine; \
         busy: machine share of all cores; server µs/op: stratus + pg CPU per operation)"
    );
    drop(nginx);
    report_pg_log(&pg);
    drop(pg);
}

/// Says how many errors PostgreSQL logged during the bench (deadlocks, serialization failures
/// are what set-ups with two nodes can run into) and prints the first deadlock's report.
fn report_pg_log(pg: &PgServer) {
    let log = pg.log();
    let errors = log.lines().filter(|l| l.contains("ERROR:")).count();
    let deadlocks = log.matches("deadlock detected").count();
    if errors == 0 {
        println!("PostgreSQL logged no errors");
        return;
    }
    println!("PostgreSQL logged {errors} errors, {deadlocks} of them deadlocks");
    let lines: Vec<&str> = log.lines().collect();
    println!("the last errors PostgreSQL logged:");
    let errs: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].contains("ERROR:"))
        .collect();
    for &i in &errs[errs.len().saturating_sub(3)..] {
        for l in &lines[i..(i + 4).min(lines.len())] {
            println!("  {l}");
        }
    }
    if let Some(i) = lines.iter().position(|l| l.contains("deadlock detected")) {
        println!("first deadlock, as PostgreSQL reported it:");
        for l in &lines[i..(i + 12).min(lines.len())] {
            println!("  {l}");
        }
    }
}
