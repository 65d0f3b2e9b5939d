//! Create-time outbound checks (docs/outbound.md): task URLs and queue `uri_override` hosts
//! that are IP literals in a denied range, or outside their project's allow-list, are refused
//! with INVALID_ARGUMENT naming the field and the rule. Host names are left to dispatch.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{Harness, LOC, Q, assert_error};
use stratus_api::ServiceConfig;
use stratus_types::target::TargetPolicy;

fn task(url: &str) -> String {
    format!(r#"{{"httpRequest":{{"url":"{url}"}}}}"#)
}

fn harness(deny: &[&str], allow: &[(&str, &[&str])]) -> Harness {
    let deny: Vec<String> = deny.iter().map(|s| s.to_string()).collect();
    let allow: BTreeMap<String, Vec<String>> = allow
        .iter()
        .map(|(p, e)| (p.to_string(), e.iter().map(|s| s.to_string()).collect()))
        .collect();
    Harness::with_config(ServiceConfig {
        targets: Arc::new(TargetPolicy::new(&deny, &allow).unwrap()),
        ..ServiceConfig::default()
    })
}

#[tokio::test]
async fn metadata_and_link_local_literals_are_refused_by_default() {
    let h = Harness::new();
    h.create_queue(Q).await;
    for url in [
        "http://169.254.169.254/computeMetadata/v1/",
        "https://169.254.169.254:8443/",
        "http://169.254.1.1/",
        // Odd IPv4 spellings the URL parser turns into 169.254.169.254.
        "http://2852039166/",
        "http://0xA9.0xFE.0xA9.0xFE/",
        "http://0251.0376.0251.0376/",
        "http://169.254.43518/",
        "http://169.254.169.254./",
        // IPv6 forms.
        "http://[::ffff:169.254.169.254]/",
        "http://[::ffff:a9fe:a9fe]/",
        "http://[fe80::1]/",
        "http://[fd00:ec2::254]/",
        "http://0.0.0.0:8080/",
        "http://[::]/",
    ] {
        let got = h.create_task(Q, &task(url)).await;
        assert_error(
            &got,
            400,
            "INVALID_ARGUMENT",
            "task.http_request.url is refused: ",
        );
        let msg = got.1["error"]["message"].as_str().unwrap();
        assert!(msg.contains("denied range"), "{url}: {msg}");
    }
    let got = h.create_task(Q, &task("http://2852039166/")).await;
    assert_error(
        &got,
        400,
        "INVALID_ARGUMENT",
        "task.http_request.url is refused: 169.254.169.254 is in the denied range 169.254.0.0/16 \
         (link-local and cloud metadata).",
    );
    // Loopback, ordinary addresses and host names are accepted by default.
    for url in [
        "http://127.0.0.1:9/x",
        "http://[::1]:9/",
        "http://10.0.0.1/",
        "http://metadata.google.internal/",
        "http://localhost:9/",
    ] {
        let (s, v) = h.create_task(Q, &task(url)).await;
        assert_eq!(s, 200, "{url}: {v}");
    }
}

#[tokio::test]
async fn configured_deny_ranges_are_refused() {
    let h = harness(&["127.0.0.0/8", "10.0.0.0/8"], &[]);
    h.create_queue(Q).await;
    let got = h.create_task(Q, &task("http://127.0.0.2:8080/")).await;
    assert_error(
        &got,
        400,
        "INVALID_ARGUMENT",
        "task.http_request.url is refused: 127.0.0.2 is in the denied range 127.0.0.0/8 (outbound.deny).",
    );
    for url in [
        "http://10.1.2.3/",
        "http://[::ffff:127.0.0.1]/",
        "http://0x7f000001/",
    ] {
        let got = h.create_task(Q, &task(url)).await;
        assert_error(&got, 400, "INVALID_ARGUMENT", "(outbound.deny)");
    }
    let (s, v) = h.create_task(Q, &task("http://192.168.1.1/")).await;
    assert_eq!(s, 200, "{v}");
    // A host name is resolved and checked at dispatch, not at create.
    let (s, v) = h.create_task(Q, &task("http://localhost:9/")).await;
    assert_eq!(s, 200, "{v}");
}

#[tokio::test]
async fn allow_lists_are_per_project() {
    let h = harness(
        &["10.1.9.0/24"],
        &[(
            "billing",
            &["api.billing.example", "*.billing.internal", "10.1.0.0/16"],
        )],
    );
    let bq = "projects/billing/locations/l/queues/q";
    h.create_queue(bq).await;
    h.create_queue(Q).await;
    for url in [
        "https://api.billing.example/charge",
        "http://API.Billing.Example./",
        "http://pay.billing.internal:8080/",
        "http://10.1.2.3/",
    ] {
        let (s, v) = h.create_task(bq, &task(url)).await;
        assert_eq!(s, 200, "{url}: {v}");
    }
    let got = h.create_task(bq, &task("https://evil.example/")).await;
    assert_error(
        &got,
        400,
        "INVALID_ARGUMENT",
        "task.http_request.url is refused: evil.example is not in the outbound allow-list of \
         project \"billing\" (outbound.allow.billing).",
    );
    for url in [
        "http://billing.internal/",
        "http://evilbilling.internal/",
        "http://10.2.0.1/",
        "http://127.0.0.1:9/",
    ] {
        let got = h.create_task(bq, &task(url)).await;
        assert_error(&got, 400, "INVALID_ARGUMENT", "outbound allow-list");
    }
    // The deny list applies on top of the allow-list.
    let got = h.create_task(bq, &task("http://10.1.9.1/")).await;
    assert_error(&got, 400, "INVALID_ARGUMENT", "denied range 10.1.9.0/24");
    // Another project has no allow-list.
    let (s, v) = h.create_task(Q, &task("https://evil.example/")).await;
    assert_eq!(s, 200, "{v}");
}

#[tokio::test]
async fn queue_uri_override_hosts_are_checked() {
    let h = harness(&[], &[("billing", &["*.billing.internal"])]);
    let queue = |name: &str, host: &str| {
        format!(r#"{{"name":"{name}","httpTarget":{{"uriOverride":{{"host":"{host}"}}}}}}"#)
    };
    let (s, v) = h
        .call(
            "POST",
            &format!("/v2/{LOC}/queues"),
            Some(&queue(Q, "169.254.169.254")),
        )
        .await;
    assert_error(
        &(s, v),
        400,
        "INVALID_ARGUMENT",
        "queue.http_target.uri_override.host is refused: 169.254.169.254 is in the denied range",
    );
    let got = h
        .call(
            "POST",
            &format!("/v2/{LOC}/queues"),
            Some(&queue(Q, "2852039166")),
        )
        .await;
    assert_error(&got, 400, "INVALID_ARGUMENT", "denied range 169.254.0.0/16");
    // UpdateQueue (an upsert) is checked too.
    let got = h
        .call("PATCH", &format!("/v2/{Q}"), Some(&queue(Q, "[fe80::1]")))
        .await;
    assert_error(
        &got,
        400,
        "INVALID_ARGUMENT",
        "queue.http_target.uri_override.host",
    );
    let ok = h
        .call("PATCH", &format!("/v2/{Q}"), Some(&queue(Q, "example.com")))
        .await;
    assert_eq!(ok.0, 200, "{}", ok.1);
    // Allow-list of the queue's project.
    let bq = "projects/billing/locations/l/queues/q";
    let got = h
        .call(
            "POST",
            "/v2/projects/billing/locations/l/queues",
            Some(&queue(bq, "example.com")),
        )
        .await;
    assert_error(
        &got,
        400,
        "INVALID_ARGUMENT",
        "outbound allow-list of project \"billing\"",
    );
    let ok = h
        .call(
            "POST",
            "/v2/projects/billing/locations/l/queues",
            Some(&queue(bq, "pay.billing.internal")),
        )
        .await;
    assert_eq!(ok.0, 200, "{}", ok.1);
}
