//! `stratus serve` settings: a TOML file declaring queues is applied at start, idempotently
//! (a restart with the same file changes nothing and loses nothing), and bad settings stop the
//! server with a message naming the setting.

mod support;

use std::process::Command;

use serde_json::Value;
use support::Server;

const CONFIG: &str = r#"
task_tombstone = "0s"
locations = ["us-central1", "local"]

[[queues]]
name = "projects/p/locations/local/queues/emails"
max_dispatches_per_second = 5
max_concurrent_dispatches = 10
max_attempts = 3
min_backoff = "10s"
max_backoff = "5m"

[[queues]]
name = "projects/p/locations/local/queues/reports"
state = "PAUSED"
"#;

fn get(base: &str, path: &str) -> Value {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        reqwest::get(format!("{base}{path}"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    })
}

#[test]
fn declared_queues_are_applied_idempotently() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("stratus.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let data = dir.path().join("data");
    let cfg_arg = cfg.to_str().unwrap();
    for round in 0..2 {
        let server = Server::start(&data, &["--config", cfg_arg]);
        let q = get(
            &server.url(),
            "/v2/projects/p/locations/local/queues/emails",
        );
        assert_eq!(
            q["rateLimits"]["maxDispatchesPerSecond"], 5.0,
            "round {round}: {q}"
        );
        assert_eq!(q["rateLimits"]["maxConcurrentDispatches"], 10);
        assert_eq!(q["retryConfig"]["maxAttempts"], 3);
        assert_eq!(q["retryConfig"]["minBackoff"], "10s");
        assert_eq!(q["retryConfig"]["maxBackoff"], "300s");
        assert_eq!(q["state"], "RUNNING");
        let r = get(
            &server.url(),
            "/v2/projects/p/locations/local/queues/reports",
        );
        assert_eq!(r["state"], "PAUSED");
        let locs = get(&server.url(), "/v2/projects/p/locations");
        assert_eq!(locs["locations"][0]["locationId"], "us-central1");
        let list = get(&server.url(), "/v2/projects/p/locations/local/queues");
        assert_eq!(list["queues"].as_array().unwrap().len(), 2);
        let tasks = get(
            &server.url(),
            "/v2/projects/p/locations/local/queues/emails/tasks",
        );
        if round == 0 {
            assert_eq!(tasks, serde_json::json!({}));
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async {
                let r = reqwest::Client::new()
                    .post(format!("{}/v2/projects/p/locations/local/queues/emails/tasks", server.url()))
                    .json(&serde_json::json!({"task": {"name": "projects/p/locations/local/queues/emails/tasks/kept", "httpRequest": {"url": "http://127.0.0.1:9/"}}}))
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success());
            });
        } else {
            // Re-applying the declaration kept the queue's tasks.
            assert_eq!(
                tasks["tasks"][0]["name"],
                "projects/p/locations/local/queues/emails/tasks/kept"
            );
        }
        server.kill();
    }
}

#[test]
fn bad_settings_name_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_stratus"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args(["--task-tombstone", "soon"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("task_tombstone"), "{err}");

    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "[[queues]]\nname = \"projects/p/locations/l/queues/bad_name\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_stratus"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad_name") && err.contains("Queue name must be formatted"),
        "{err}"
    );
}

#[test]
fn bad_tls_files_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let serve = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_stratus"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .args(extra)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{extra:?} started");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // A certificate without a key (clap names the missing flag).
    let err = serve(&["--tls-cert", "cert.pem"]);
    assert!(err.contains("--tls-key"), "{err}");
    // Files that do not exist, or are not PEM.
    let missing = dir.path().join("missing.pem");
    let missing = missing.to_str().unwrap();
    let err = serve(&["--tls-cert", missing, "--tls-key", missing]);
    assert!(
        err.contains("tls_cert") && err.contains("missing.pem"),
        "{err}"
    );
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let junk = junk.to_str().unwrap();
    let err = serve(&["--tls-cert", junk, "--tls-key", junk]);
    assert!(
        err.contains("tls_cert") && err.contains("no certificate"),
        "{err}"
    );
}

#[test]
fn bad_postgres_settings_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let serve = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_stratus"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .args(extra)
            .env("STRATUS_LOG", "error")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{extra:?} started");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = serve(&["--store", "mysql://db/x"]);
    assert!(err.contains("store: expected a PostgreSQL URL"), "{err}");
    let err = serve(&[
        "--store",
        "postgres://u@127.0.0.1:1/db",
        "--node-id",
        "two words",
    ]);
    assert!(
        err.contains("node_id") && err.contains("two words"),
        "{err}"
    );
    let err = serve(&[
        "--store",
        "postgres://u@127.0.0.1:1/db",
        "--lease-timeout",
        "0s",
    ]);
    assert!(err.contains("lease_timeout: must be at least 1s"), "{err}");
    // Nothing listens on port 1: a clear error naming the store (password redacted), no hang.
    let err = serve(&["--store", "postgres://u:secret@127.0.0.1:1/db"]);
    assert!(
        err.contains("cannot open the PostgreSQL store postgres://u@127.0.0.1:1/db"),
        "{err}"
    );
    assert!(!err.contains("secret"), "{err}");
}
