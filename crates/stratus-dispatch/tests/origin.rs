//! Proof-of-origin headers end to end: real service layer, SQLite store, the engine on a
//! virtual clock and a real HTTP receiver on 127.0.0.1.

mod support;

use std::sync::Arc;

use stratus_dispatch::engine::EngineConfig;
use stratus_dispatch::origin::{OriginRule, OriginRules, sign};
use stratus_types::proto::tasks::task::MessageType;
use stratus_types::proto::tasks::{HttpMethod, Queue, RetryConfig, Task};
use stratus_types::time::{SECOND, micros_to_duration};
use support::*;

const KEY1: &str = "current-key-0123456789";
const KEY2: &str = "previous-key-0123456789";
const SECRET: &str = "billing-shared-secret";

fn harness_rules() -> EngineConfig {
    let rules = OriginRules::new(vec![
        OriginRule::new(
            &format!("{LOC}/queues/signed"),
            Some("X-Billing-Secret"),
            Some(SECRET),
            &[KEY1.to_string(), KEY2.to_string()],
        )
        .unwrap(),
        OriginRule::new(
            "projects/p/locations/l/queues/one-*",
            None,
            None,
            &[KEY1.to_string()],
        )
        .unwrap(),
    ])
    .unwrap();
    EngineConfig {
        origin: Arc::new(rules),
        ..Default::default()
    }
}

fn retrying() -> Queue {
    Queue {
        retry_config: Some(RetryConfig {
            max_attempts: 5,
            min_backoff: Some(micros_to_duration(2 * SECOND)),
            max_backoff: Some(micros_to_duration(2 * SECOND)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `task` with these headers (as a client could send them).
fn with_headers(mut task: Task, headers: &[(&str, &str)]) -> Task {
    if let Some(MessageType::HttpRequest(r)) = &mut task.message_type {
        r.headers = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    }
    task
}

/// The signature header `seen` should carry with these keys.
fn expected_signature(seen: &Seen, keys: &[&str]) -> String {
    let t = seen.at.div_euclid(SECOND);
    let mut v = format!("t={t}");
    for k in keys {
        v.push_str(",v1=");
        v.push_str(&sign(k.as_bytes(), t, &seen.body));
    }
    v
}

#[tokio::test]
async fn signed_queue_overrides_forged_headers_and_resigns_retries() {
    let h = Harness::with_config(harness_rules()).await;
    h.recv
        .script([Reply::status(503), Reply::status(503), Reply::status(200)]);
    h.queue("signed", retrying()).await;
    let forged = with_headers(
        h.http_task("signed", "t1", "/work", 0),
        &[
            ("x-billing-secret", "forged"),
            ("X-Stratus-Signature", "t=1,v1=00"),
            ("X-Other", "kept"),
        ],
    );
    h.create("signed", forged).await;

    h.run_until_seen(1, 60 * SECOND).await;
    let first = h.recv.seen()[0].clone();
    assert_eq!(first.header("x-billing-secret"), Some(SECRET));
    assert_eq!(first.header("x-other"), Some("kept"));
    // One header each, both signatures (current key first).
    let sigs: Vec<&str> = first
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("x-stratus-signature"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(sigs, vec![expected_signature(&first, &[KEY1, KEY2])]);
    assert_eq!(sigs[0].matches(",v1=").count(), 2);
    assert_eq!(
        first
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("x-billing-secret"))
            .count(),
        1
    );

    // The stored task shows what the client sent, never what the dispatch added.
    let stored = h.get("signed", "t1").await.unwrap();
    let Some(MessageType::HttpRequest(r)) = &stored.message_type else {
        panic!("not an HTTP task");
    };
    for (k, v) in &r.headers {
        assert_ne!(v, SECRET, "GetTask shows the secret in {k}");
        assert!(
            !v.contains(KEY1)
                && !v.contains(&sign(KEY1.as_bytes(), first.at / SECOND, &first.body))
        );
    }

    h.run_until_seen(3, 60 * SECOND).await;
    let seen = h.recv.seen();
    assert_eq!(seen.len(), 3);
    let mut ts = Vec::new();
    for s in &seen {
        let sig = s.header("x-stratus-signature").unwrap();
        assert_eq!(sig, expected_signature(s, &[KEY1, KEY2]));
        ts.push(s.at / SECOND);
    }
    assert!(
        ts[0] < ts[1] && ts[1] < ts[2],
        "retries are re-signed: {ts:?}"
    );
}

#[tokio::test]
async fn prefix_rule_signs_with_one_key_and_unmatched_queues_get_nothing() {
    let h = Harness::with_config(harness_rules()).await;
    h.queue("one-key", Queue::default()).await;
    h.queue("plain", Queue::default()).await;
    let mut get = h.http_task("one-key", "g", "/get", 0);
    if let Some(MessageType::HttpRequest(r)) = &mut get.message_type {
        r.http_method = HttpMethod::Get as i32;
        r.body.clear();
    }
    h.create("one-key", get).await;
    h.create(
        "plain",
        with_headers(
            h.http_task("plain", "p", "/plain", 0),
            &[
                ("X-Stratus-Signature", "t=1,v1=00"),
                ("X-Billing-Secret", "x"),
            ],
        ),
    )
    .await;
    h.run_until_seen(2, 10 * SECOND).await;
    let seen = h.recv.seen();
    assert_eq!(seen.len(), 2);
    let get = seen.iter().find(|s| s.path == "/get").unwrap();
    assert!(get.body.is_empty());
    let sig = get.header("x-stratus-signature").unwrap();
    assert_eq!(sig, expected_signature(get, &[KEY1]));
    assert_eq!(sig.matches("v1=").count(), 1);
    assert_eq!(get.header("x-billing-secret"), None);

    // No rule: a task's own X-Stratus-* header is still dropped; other headers pass.
    let plain = seen.iter().find(|s| s.path == "/plain").unwrap();
    assert_eq!(plain.header("x-stratus-signature"), None);
    assert_eq!(plain.header("x-billing-secret"), Some("x"));
}
