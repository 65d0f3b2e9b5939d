//! `[outbound]` through the real binary (docs/outbound.md): denied literal hosts are refused at
//! create, a redirect into a denied range is refused at dispatch (the denied receiver gets
//! nothing and GetTask shows why), allowed targets are still delivered, allow-lists apply per
//! project, and a bad entry stops the server with a message naming the setting.

mod support;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::Server;

const CONFIG: &str = r#"
[outbound]
deny = ["127.0.0.2/32"]

[outbound.allow]
billing = ["*.billing.internal", "10.1.0.0/16"]
"#;

const QUEUE: &str = "projects/p/locations/local/queues/q";

/// A receiver on `ip` counting requests, answering 302 to `redirect` when given, else 200.
async fn receiver(ip: &str, redirect: Option<String>) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let app = axum::Router::new().fallback(move || {
        let h = h.clone();
        let redirect = redirect.clone();
        async move {
            h.fetch_add(1, Ordering::SeqCst);
            let mut b = axum::response::Response::builder();
            if let Some(to) = redirect {
                b = b.status(302).header("location", to);
            }
            b.body(axum::body::Body::empty()).unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind(format!("{ip}:0"))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), hits)
}

async fn call(
    base: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let c = reqwest::Client::new();
    let mut r = c.request(method, format!("{base}{path}"));
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn create_task(base: &str, queue: &str, id: &str, url: &str) -> (u16, Value) {
    call(
        base,
        reqwest::Method::POST,
        &format!("/v2/{queue}/tasks"),
        Some(json!({"task": {"name": format!("{queue}/tasks/{id}"), "httpRequest": {"url": url}}})),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_policy_applies_at_create_and_dispatch() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("stratus.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &["--config", cfg.to_str().unwrap()],
    );
    let base = server.url();

    let (victim, victim_hits) = receiver("127.0.0.2", None).await;
    let (redirector, redirector_hits) = receiver("127.0.0.1", Some(format!("{victim}/x"))).await;
    let (ok, ok_hits) = receiver("127.0.0.1", None).await;

    for queue in [QUEUE, "projects/billing/locations/local/queues/q"] {
        let parent = queue.rsplit_once("/queues/").unwrap().0;
        let (s, v) = call(
            &base,
            reqwest::Method::POST,
            &format!("/v2/{parent}/queues"),
            // One attempt now, the retry an hour later: GetTask shows the first in between.
            Some(json!({"name": queue, "retryConfig": {
                "maxAttempts": 2, "minBackoff": "3600s", "maxBackoff": "3600s"
            }})),
        )
        .await;
        assert_eq!(s, 200, "{v}");
    }

    // Create time: denied literals are refused, naming the field and the rule.
    let (s, v) = create_task(&base, QUEUE, "victim", &format!("{victim}/")).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(
        v["error"]["message"],
        "task.http_request.url is refused: 127.0.0.2 is in the denied range 127.0.0.2/32 \
         (outbound.deny)."
    );
    let (s, v) = create_task(
        &base,
        QUEUE,
        "md",
        "http://169.254.169.254/computeMetadata/v1/",
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["status"], "INVALID_ARGUMENT");
    // An allow-listed project: anything else is refused.
    let (s, v) = create_task(
        &base,
        "projects/billing/locations/local/queues/q",
        "out",
        "https://elsewhere.example/",
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not in the outbound allow-list of project \"billing\""),
        "{v}"
    );

    // Dispatch: a redirect into the denied range is refused; an allowed target is delivered.
    let (s, v) = create_task(&base, QUEUE, "redir", &format!("{redirector}/")).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = create_task(&base, QUEUE, "ok", &format!("{ok}/")).await;
    assert_eq!(s, 200, "{v}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while (redirector_hits.load(Ordering::SeqCst) == 0 || ok_hits.load(Ordering::SeqCst) == 0)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        ok_hits.load(Ordering::SeqCst),
        1,
        "the allowed target was not delivered"
    );
    assert_eq!(redirector_hits.load(Ordering::SeqCst), 1);
    // Give a followed redirect time to land, then check the denied receiver saw nothing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        victim_hits.load(Ordering::SeqCst),
        0,
        "the denied receiver was reached"
    );

    // The task waits for its retry; its last attempt says why it failed.
    let mut v = Value::Null;
    while Instant::now() < deadline {
        let (s, got) = call(
            &base,
            reqwest::Method::GET,
            &format!("/v2/{QUEUE}/tasks/redir"),
            None,
        )
        .await;
        assert_eq!(s, 200, "{got}");
        v = got;
        if v["lastAttempt"]["responseStatus"].is_object() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(v["dispatchCount"], 1, "{v}");
    assert_eq!(
        v["lastAttempt"]["responseStatus"]["message"],
        "target refused (redirect): 127.0.0.2 is in the denied range 127.0.0.2/32 \
         (outbound.deny)",
        "{v}"
    );
}

#[test]
fn bad_outbound_entries_stop_the_server() {
    let dir = tempfile::tempdir().unwrap();
    for (toml, want) in [
        (
            "[outbound]\ndeny = [\"10.0.0.0/33\"]\n",
            r#"outbound.deny: "10.0.0.0/33" is not an IP address or CIDR range"#,
        ),
        (
            "[outbound.allow]\nbilling = [\"not a host\"]\n",
            r#"outbound.allow.billing: "not a host" is not a host name"#,
        ),
        ("[outbound]\ndenny = []\n", "denny"),
    ] {
        let cfg = dir.path().join("bad.toml");
        std::fs::write(&cfg, toml).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_stratus"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .arg("--config")
            .arg(&cfg)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{toml}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{toml}: {err}");
    }
}
