//! Durability: 20,000 tasks created concurrently over REST, the server SIGKILLed right after
//! the last acknowledgement, restarted on the same data: every acknowledged task is there.

mod support;

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{Value, json};
use support::Server;

const TASKS: usize = 20_000;
const CLIENTS: usize = 64;
const QUEUE: &str = "projects/p/locations/l/queues/durable";

#[test]
fn acknowledged_creates_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = Server::start(dir.path(), &[]);
    let base = server.url();
    let http = reqwest::Client::new();

    let acked: HashSet<String> = rt.block_on(async {
        let r = http
            .post(format!("{base}/v2/projects/p/locations/l/queues"))
            .json(&json!({"name": QUEUE}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut workers = Vec::new();
        for _ in 0..CLIENTS {
            let http = http.clone();
            let base = base.clone();
            let next = next.clone();
            workers.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= TASKS {
                        break;
                    }
                    let name = format!("{QUEUE}/tasks/t{i}");
                    let body = json!({"task": {"name": name, "httpRequest": {"url": "http://127.0.0.1:9/x", "body": "aGVsbG8="}}});
                    let r = http.post(format!("{base}/v2/{QUEUE}/tasks")).json(&body).send().await.unwrap();
                    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
                    mine.push(name);
                }
                mine
            }));
        }
        let mut all = HashSet::new();
        for w in workers {
            all.extend(w.await.unwrap());
        }
        all
    });
    // Right after the last acknowledgement: no graceful shutdown.
    server.kill();
    assert_eq!(acked.len(), TASKS);

    let server = Server::start(dir.path(), &[]);
    let base = server.url();
    let found: HashSet<String> = rt.block_on(async {
        let mut found = HashSet::new();
        let mut token = String::new();
        for _ in 0..1000 {
            let url = format!("{base}/v2/{QUEUE}/tasks?pageSize=1000&pageToken={token}");
            let v = support::get_json(&http, &url).await;
            for t in v["tasks"].as_array().unwrap() {
                found.insert(t["name"].as_str().unwrap().to_string());
            }
            match v.get("nextPageToken").and_then(Value::as_str) {
                Some(t) => token = t.to_string(),
                None => break,
            }
        }
        found
    });
    let missing: Vec<_> = acked.difference(&found).take(5).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged tasks lost, e.g. {missing:?}",
        acked.len() - found.len().min(acked.len())
    );
    assert_eq!(found.len(), TASKS);
}
