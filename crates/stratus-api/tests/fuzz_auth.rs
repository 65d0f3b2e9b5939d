//! Property-based fuzzing of API authentication through the REST router (no socket): fuzzed
//! `Authorization` values (arbitrary bytes, other schemes, near misses of real tokens, real
//! tokens of another project) on paths of two projects. Properties: no panic, no 5xx, and no
//! call succeeds unless it carries the exact token of the project its path names; a caller
//! without a valid token always gets UNAUTHENTICATED. Cases: `PROPTEST_CASES` (default 3,000).

use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use stratus_api::auth::{self, Auth, Role, Scope, TokenSpec};
use stratus_api::{Service, ServiceConfig};
use stratus_store_sqlite::{SqliteOptions, SqliteStore};
use stratus_types::time::SystemClock;
use tower::ServiceExt;

const TOKEN_A: &str = "stratus_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
const TOKEN_B: &str = "stratus_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";

fn header() -> impl Strategy<Value = Option<Vec<u8>>> {
    let near_miss = (0usize..TOKEN_A.len(), any::<u8>()).prop_map(|(i, b)| {
        let mut t = TOKEN_A.as_bytes().to_vec();
        t[i] = b;
        let mut v = b"Bearer ".to_vec();
        v.extend(t);
        v
    });
    prop_oneof![
        Just(None),
        any::<Vec<u8>>().prop_map(Some),
        Just(Some(format!("Bearer {TOKEN_A}").into_bytes())),
        Just(Some(format!("bearer   {TOKEN_A}  ").into_bytes())),
        Just(Some(format!("Bearer {TOKEN_B}").into_bytes())),
        Just(Some(format!("Basic {TOKEN_A}").into_bytes())),
        Just(Some(format!("Bearer {TOKEN_A}{TOKEN_A}").into_bytes())),
        Just(Some(format!("Bearer {}", &TOKEN_A[..20]).into_bytes())),
        near_miss.prop_map(Some),
        "[ -~]{0,80}".prop_map(|s| Some(s.into_bytes())),
    ]
}

fn path() -> impl Strategy<Value = (&'static str, String)> {
    let project = prop_oneof![
        Just("a".to_string()),
        Just("b".to_string()),
        Just("ab".to_string()),
        Just("A".to_string()),
        "[a-z%/.]{0,6}",
    ];
    (
        prop_oneof![Just("GET"), Just("POST"), Just("DELETE")],
        project,
        prop_oneof![
            Just("/v2/projects/{p}/locations/l/queues"),
            Just("/v2/projects/{p}/locations/l/queues/q"),
            Just("/v2/projects/{p}/locations/l/queues/q/tasks"),
            Just("/v2/projects/{p}/locations"),
            Just("/stratus/v1/projects/{p}/locations/l/queues/q/failedTasks"),
        ],
    )
        .prop_map(|(m, p, t)| (m, t.replace("{p}", &p)))
}

#[test]
fn authentication_holds_under_fuzzed_headers() {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3_000);
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap();
    let clock = Arc::new(SystemClock);
    let spec = |name: &str, p: &str, t: &str| TokenSpec {
        name: name.into(),
        scope: Scope::parse(p).unwrap(),
        role: Role::Admin,
        sha256: auth::digest(t),
        rate_limit: 0.0,
    };
    let auth = Arc::new(
        Auth::with_tokens(
            vec![spec("a", "a", TOKEN_A), spec("b", "b", TOKEN_B)],
            clock.clone(),
        )
        .unwrap(),
    );
    let svc =
        Arc::new(Service::new(Arc::new(store), clock, ServiceConfig::default()).with_auth(auth));
    let router = stratus_api::rest::router(svc);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let statuses = std::cell::RefCell::new(std::collections::BTreeMap::<u16, usize>::new());
    runner
        .run(&(header(), path()), |(h, (method, path))| {
            let mut req = Request::builder().method(method).uri(&path);
            if let Some(v) = &h {
                match axum::http::HeaderValue::from_bytes(v) {
                    Ok(v) => req = req.header("authorization", v),
                    // Not a header value at all: no HTTP stack would deliver it.
                    Err(_) => return Ok(()),
                }
            }
            let body = if method == "POST" { "{}" } else { "" };
            let Ok(req) = req.body(Body::from(body)) else {
                return Ok(());
            };
            let (status, bytes) = rt.block_on(async {
                let resp = router.clone().oneshot(req).await.unwrap();
                let status = resp.status().as_u16();
                (status, resp.into_body().collect().await.unwrap().to_bytes())
            });
            *statuses.borrow_mut().entry(status).or_default() += 1;
            prop_assert!(status < 500, "{status} for {h:?} {method} {path}");
            let presented = h
                .as_deref()
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| v.trim().split_once(' '))
                .filter(|(s, _)| s.eq_ignore_ascii_case("bearer"))
                .map(|(_, t)| t.trim());
            let valid = matches!(presented, Some(TOKEN_A) | Some(TOKEN_B));
            if !valid {
                prop_assert_eq!(status, 401, "{:?} {} {}", h, method, path);
                let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                prop_assert_eq!(&v["error"]["status"], "UNAUTHENTICATED");
            }
            if (200..300).contains(&status) {
                let own = match presented {
                    Some(TOKEN_A) => "a",
                    _ => "b",
                };
                let project = path.split('/').nth(3).unwrap_or("");
                prop_assert_eq!(
                    project,
                    own,
                    "{} {} succeeded with another project's token",
                    method,
                    path
                );
            }
            Ok(())
        })
        .unwrap();
    let statuses = statuses.into_inner();
    println!("fuzz_auth: {cases} cases, statuses {statuses:?}");
    assert!(statuses.get(&401).copied().unwrap_or(0) > 0);
    assert!(statuses.get(&403).copied().unwrap_or(0) > 0);
    assert!(statuses.get(&200).copied().unwrap_or(0) > 0);
}
