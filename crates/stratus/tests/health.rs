//! Health and logs through the real binary on 127.0.0.1.
//!
//! - `/readyz` on SQLite: 200 with every check named, unauthenticated even when API tokens are
//!   configured (the API itself answers 401), `dispatcher: "disabled"` with `--no-dispatch`.
//! - `/readyz` on PostgreSQL: 200 with the schema version, 503 naming the store while
//!   PostgreSQL is stopped (no URL, host or password in the body), 200 again after it restarts.
//! - `--log-format json` at debug: every stderr line is a JSON object; a delivery that fails
//!   once logs one info line with `queue`, `task`, `attempt` and `status`, the state changes
//!   (created, dispatched, succeeded) are debug lines, and the task's body never appears; a
//!   task out of attempts logs one warn line with the connection `error`, whose text leaves out
//!   the target URL (and so a credential in its query string).
//! - `log_format` in the config file works like the flag; unknown formats are refused.

mod support;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const LOC: &str = "projects/p/locations/local";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `stratus serve` child killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_healthz(http: &reqwest::Client, base: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http.get(format!("{base}/healthz")).send().await
            && r.status() == 200
        {
            return;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "stratus exited at start"
        );
        assert!(Instant::now() < deadline, "stratus did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn readyz(http: &reqwest::Client, base: &str) -> (u16, Value, String) {
    let r = http.get(format!("{base}/readyz")).send().await.unwrap();
    let status = r.status().as_u16();
    let ctype = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    assert_eq!(ctype, "application/json");
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).expect("readyz answers JSON"),
        text,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_on_sqlite_is_unauthenticated_and_names_each_check() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("stratus.toml");
    std::fs::write(&cfg, "").unwrap();
    let made = Command::new(env!("CARGO_BIN_EXE_stratus"))
        .args(["tokens", "create", "--project", "p", "--role", "admin"])
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let http = reqwest::Client::new();

    for (extra, dispatcher) in [(None, "running"), (Some("--no-dispatch"), "disabled")] {
        let port = free_port();
        let mut child = Proc(
            Command::new(env!("CARGO_BIN_EXE_stratus"))
                .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
                .arg("--config")
                .arg(&cfg)
                .arg("--data-dir")
                .arg(dir.path().join("data"))
                .args(extra)
                .env("STRATUS_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let base = format!("http://127.0.0.1:{port}");
        wait_healthz(&http, &base, &mut child.0).await;

        // The API needs a token; the probes do not.
        let api = http
            .get(format!("{base}/v2/{LOC}/queues"))
            .send()
            .await
            .unwrap();
        assert_eq!(api.status(), 401);
        let (status, body, _) = readyz(&http, &base).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body,
            json!({
                "status": "ready",
                "checks": {"store": "ok", "migrations": "ok", "dispatcher": dispatcher},
            }),
            "{extra:?}"
        );
    }
}

#[test]
fn readyz_on_postgres_follows_the_database() {
    use stratus_testpg::PgServer;
    use support::cluster::Node;

    let mut pg = PgServer::start().expect("PostgreSQL for the test");
    let db = pg.fresh_database().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let node = tokio::task::block_in_place(|| Node::start(&db, "ready1", &[]));
        let http = reqwest::Client::new();
        let base = node.url();
        let (status, body, _) = readyz(&http, &base).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["checks"]["store"], "ok");
        assert_eq!(body["checks"]["migrations"], "ok");
        assert_eq!(body["checks"]["dispatcher"], "running");
        let v = &body["schema_version"];
        assert!(v["current"].as_i64().unwrap() >= 1, "{body}");
        assert_eq!(v["current"], v["required"]);

        tokio::task::block_in_place(|| pg.stop()).expect(
            "stopping PostgreSQL (the test needs its own server: unset STRATUS_TEST_PG_URL)",
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        let down = loop {
            let began = Instant::now();
            let (status, body, text) = readyz(&http, &base).await;
            assert!(
                began.elapsed() < Duration::from_secs(8),
                "readyz took {:?}",
                began.elapsed()
            );
            if status == 503 {
                break (body, text);
            }
            assert!(Instant::now() < deadline, "readyz stayed {status}: {body}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(down.0["status"], "not ready");
        assert_ne!(down.0["checks"]["store"], "ok", "{}", down.0);
        assert_eq!(down.0["checks"]["dispatcher"], "running");
        for secret in ["postgres://", "127.0.0.1", "@"] {
            assert!(!down.1.contains(secret), "{secret} in {}", down.1);
        }

        tokio::task::block_in_place(|| pg.start_again()).expect("starting PostgreSQL again");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, body, _) = readyz(&http, &base).await;
            if status == 200 {
                assert_eq!(body["status"], "ready");
                break;
            }
            assert!(Instant::now() < deadline, "readyz stayed {status}: {body}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        drop(node);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_name_queue_and_task_without_the_body() {
    const BODY: &str = "payload-text-never-logged-4b7c";
    const QUERY_SECRET: &str = "query-credential-9d2e";
    // The receiver fails the first attempt of each task, then accepts.
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let app = axum::Router::new().fallback(move || {
        let h = h.clone();
        async move {
            if h.fetch_add(1, Ordering::SeqCst) == 0 {
                axum::http::StatusCode::SERVICE_UNAVAILABLE
            } else {
                axum::http::StatusCode::OK
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rx = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let dir = tempfile::tempdir().unwrap();
    let queue = format!("{LOC}/queues/q");
    // One attempt only, to a closed port with a credential in the query string.
    let once = format!("{LOC}/queues/once");
    let closed = free_port();
    let cfg = dir.path().join("stratus.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[queues]]\nname = \"{queue}\"\nmin_backoff = \"0.1s\"\nmax_backoff = \"0.1s\"\n\n\
             [[queues]]\nname = \"{once}\"\nmax_attempts = 1\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let err_path = dir.path().join("stderr.log");
    let mut child = Proc(
        Command::new(env!("CARGO_BIN_EXE_stratus"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--config")
            .arg(&cfg)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--log-format", "json"])
            .env("STRATUS_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err_path).unwrap())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    wait_healthz(&http, &base, &mut child.0).await;

    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(BODY);
    let task = format!("{queue}/tasks/t1");
    let r = http
        .post(format!("{base}/v2/{queue}/tasks"))
        .json(&json!({"task": {"name": task, "httpRequest": {
            "url": format!("{rx}/hook"),
            "body": body,
            "headers": {"X-Custom": BODY},
        }}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let lost = format!("{once}/tasks/t2");
    let r = http
        .post(format!("{base}/v2/{once}/tasks"))
        .json(&json!({"task": {"name": lost, "httpRequest": {
            "url": format!("http://127.0.0.1:{closed}/x?sig={QUERY_SECRET}"),
            "body": body,
        }}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    while hits.load(Ordering::SeqCst) < 2 {
        assert!(Instant::now() < deadline, "deliveries did not arrive");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Outcomes are logged after they are recorded: wait for both lines, then stop the server.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !["task succeeded", "task failed permanently"]
        .iter()
        .all(|m| std::fs::read_to_string(&err_path).unwrap().contains(m))
    {
        assert!(Instant::now() < deadline, "no outcome lines");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = child.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "server did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let out = std::fs::read_to_string(&err_path).unwrap();
    assert!(!out.contains(BODY), "the body or a header value was logged");
    assert!(!out.contains(&body), "the base64 body was logged");
    assert!(
        !out.contains(QUERY_SECRET),
        "a target URL's query was logged"
    );
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for l in &lines {
        for key in ["timestamp", "level", "message"] {
            assert!(l.get(key).is_some(), "no {key}: {l}");
        }
    }
    let find = |msg: &str| -> Vec<&Value> {
        lines
            .iter()
            .filter(|l| l["message"] == msg && l["task"] == json!(task))
            .collect()
    };
    let failed = find("attempt failed; retry scheduled");
    assert_eq!(failed.len(), 1, "{out}");
    let f = failed[0];
    assert_eq!(f["level"], "INFO", "{f}");
    assert_eq!(f["queue"], json!(queue), "{f}");
    assert_eq!(f["attempt"], 1, "{f}");
    assert_eq!(f["status"], 503, "{f}");
    assert!(
        f["retry_at"].as_str().is_some_and(|s| s.ends_with('Z')),
        "{f}"
    );
    let lost_lines: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"] == "attempt failed; task failed permanently")
        .collect();
    assert_eq!(lost_lines.len(), 1, "{out}");
    let l = lost_lines[0];
    assert_eq!(l["level"], "WARN", "{l}");
    assert_eq!(l["queue"], json!(once), "{l}");
    assert_eq!(l["task"], json!(lost), "{l}");
    assert_eq!(l["attempt"], 1, "{l}");
    assert!(l.get("status").is_none(), "{l}");
    assert!(l["error"].as_str().is_some_and(|e| !e.is_empty()), "{l}");
    for (msg, n) in [
        ("task created", 1),
        ("task dispatched", 2),
        ("task succeeded", 1),
    ] {
        let found = find(msg);
        assert_eq!(found.len(), n, "{msg}: {out}");
        assert!(found.iter().all(|l| l["level"] == "DEBUG"), "{msg}: {out}");
        assert!(found.iter().all(|l| l["queue"] == json!(queue)), "{msg}");
    }
}

#[test]
fn log_format_rejects_unknown_values() {
    let out = Command::new(env!("CARGO_BIN_EXE_stratus"))
        .args(["serve", "--log-format", "xml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("text") && err.contains("json"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_format_from_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("stratus.toml");

    std::fs::write(&cfg, "log_format = \"xml\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_stratus"))
        .arg("serve")
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("log_format"), "{err}");

    std::fs::write(&cfg, "log_format = \"json\"\n").unwrap();
    let port = free_port();
    let err_path = dir.path().join("stderr.log");
    let mut child = Proc(
        Command::new(env!("CARGO_BIN_EXE_stratus"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--config")
            .arg(&cfg)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .env_remove("STRATUS_LOG_FORMAT")
            .env("STRATUS_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err_path).unwrap())
            .spawn()
            .unwrap(),
    );
    let http = reqwest::Client::new();
    wait_healthz(&http, &format!("http://127.0.0.1:{port}"), &mut child.0).await;
    drop(child);
    let out = std::fs::read_to_string(&err_path).unwrap();
    assert!(out.contains("\"serving\""), "{out}");
    for l in out.lines() {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        assert!(v["level"].is_string(), "{l}");
    }
}
