//! Property-based fuzzing of the REST router end to end, without a socket: the real router
//! over a SQLite store in a temp dir, driven with `tower::ServiceExt::oneshot`.
//!
//! Requests mix methods (standard and odd), paths from every route template with fuzzed
//! segments (percent-encoding, custom verbs, `..`, empty segments, unicode), query strings
//! and bodies (structure-aware JSON for the route, arbitrary JSON, arbitrary bytes).
//! Properties: no panic; no 5xx; every error body has the Cloud Tasks shape
//! `{"error":{"code","message","status"}}` with `code` equal to the HTTP status and `status`
//! the canonical name of that code; every success on the API is a JSON object; the service
//! still answers a normal CreateQueue/CreateTask/GetTask afterwards.
//! Cases: `PROPTEST_CASES` (default 3,000).

mod fuzz_support;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request};
use http_body_util::BodyExt;
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
use serde_json::Value;
use stratus_api::{Service, ServiceConfig};
use stratus_store_sqlite::{SqliteOptions, SqliteStore};
use stratus_types::Code;
use stratus_types::time::{Clock, SECOND, SystemClock, format_rfc3339};
use tower::ServiceExt;

const CASES: u32 = 3_000;

const QUEUES: &[&str] = &["q", "q2", "fuzz-1"];
const TASKS: &[&str] = &["t1", "t2", "x"];

/// What a path addresses, which decides the body shape generated for it.
#[derive(Clone, Copy, Debug)]
enum BodyKind {
    Queue,
    CreateTask,
    BatchCreate,
    BatchDelete,
    Run,
    Named,
    SetIam,
    GetIam,
    TestIam,
    Cmek,
    Empty,
}

/// Percent-encodes every byte outside the unreserved set.
fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// One path segment: usually a real ID, otherwise something odd (already URI-safe).
fn seg(real: &'static [&'static str]) -> BoxedStrategy<String> {
    prop_oneof![
        24 => prop::sample::select(real.to_vec()).prop_map(str::to_string),
        1 => "[A-Za-z0-9_-]{0,12}",
        1 => "\\PC{0,12}".prop_map(|s| pct(&s)),
        1 => prop::sample::select(vec![
            "", "..", ".", "%2F", "%2e%2e", "%00", "%25", "%3A", "a%2Fb", "%ZZ", "%", "%C3%28",
            "q:pause", "tasks", "queues", ":", "::", "~", "a.b", "_",
        ])
        .prop_map(str::to_string),
        1 => (101usize..600).prop_map(|n| "a".repeat(n)),
    ]
    .boxed()
}

fn verb(real: &'static [&'static str]) -> BoxedStrategy<String> {
    prop_oneof![
        6 => Just(String::new()),
        6 => prop::sample::select(real.to_vec()).prop_map(|v| format!(":{v}")),
        1 => "[a-zA-Z]{0,10}".prop_map(|v| format!(":{v}")),
        1 => Just("%3Apause".to_string()),
    ]
    .boxed()
}

/// The methods a route answers (the rest are tried too, less often).
type Methods = &'static [&'static str];

const GET: Methods = &["GET"];
const POST: Methods = &["POST"];
const ANY: Methods = &["GET", "POST", "PATCH", "DELETE"];

/// A path from one of the route templates, with fuzzed segments and verbs, the body shape that
/// route decodes and the methods it answers.
fn path() -> impl Strategy<Value = (String, BodyKind, Methods)> {
    let p = || seg(&["p"]);
    let l = || seg(&["l"]);
    let q = || seg(QUEUES);
    let t = || seg(TASKS);
    let queue_verbs: &'static [&'static str] = &[
        "pause",
        "resume",
        "purge",
        "getIamPolicy",
        "setIamPolicy",
        "testIamPermissions",
        "run",
    ];
    prop_oneof![
        1 => p().prop_map(|p| (format!("/v2/projects/{p}/locations"), BodyKind::Empty, GET)),
        1 => (p(), l()).prop_map(|(p, l)| {
            (format!("/v2/projects/{p}/locations/{l}"), BodyKind::Empty, GET)
        }),
        1 => (p(), l()).prop_map(|(p, l)| {
            let path = format!("/v2/projects/{p}/locations/{l}/cmekConfig");
            (path, BodyKind::Cmek, &["GET", "PATCH"][..])
        }),
        1 => (p(), l(), seg(&["op-1", "0"])).prop_map(|(p, l, o)| {
            let path = format!("/v2/projects/{p}/locations/{l}/operations/{o}");
            (path, BodyKind::Empty, GET)
        }),
        3 => (p(), l()).prop_map(|(p, l)| {
            let path = format!("/v2/projects/{p}/locations/{l}/queues");
            (path, BodyKind::Queue, &["GET", "POST"][..])
        }),
        6 => (p(), l(), q(), verb(queue_verbs)).prop_map(|(p, l, q, v)| {
            let (body, methods) = match v.as_str() {
                ":setIamPolicy" => (BodyKind::SetIam, POST),
                ":getIamPolicy" => (BodyKind::GetIam, POST),
                ":testIamPermissions" => (BodyKind::TestIam, POST),
                "" => (BodyKind::Queue, &["GET", "PATCH", "DELETE"][..]),
                _ => (BodyKind::Named, POST),
            };
            let path = format!("/v2/projects/{p}/locations/{l}/queues/{q}{v}");
            (path, body, methods)
        }),
        6 => (p(), l(), q(), verb(&["batchCreate", "batchDelete"])).prop_map(|(p, l, q, v)| {
            let (body, methods) = match v.as_str() {
                ":batchCreate" => (BodyKind::BatchCreate, POST),
                ":batchDelete" => (BodyKind::BatchDelete, POST),
                _ => (BodyKind::CreateTask, &["GET", "POST", "POST"][..]),
            };
            let path = format!("/v2/projects/{p}/locations/{l}/queues/{q}/tasks{v}");
            (path, body, methods)
        }),
        4 => (p(), l(), q(), t(), verb(&["run"])).prop_map(|(p, l, q, t, v)| {
            let methods = if v.is_empty() { &["GET", "DELETE"][..] } else { POST };
            let path = format!("/v2/projects/{p}/locations/{l}/queues/{q}/tasks/{t}{v}");
            (path, BodyKind::Run, methods)
        }),
        2 => (p(), l(), q()).prop_map(|(p, l, q)| {
            let path = format!("/stratus/v1/projects/{p}/locations/{l}/queues/{q}/failedTasks");
            (path, BodyKind::Empty, GET)
        }),
        2 => (p(), l(), q(), t(), verb(&["retry"])).prop_map(|(p, l, q, t, v)| {
            let methods = if v.is_empty() { GET } else { POST };
            let path =
                format!("/stratus/v1/projects/{p}/locations/{l}/queues/{q}/tasks/{t}{v}");
            (path, BodyKind::Empty, methods)
        }),
        // Paths off every template.
        1 => prop::collection::vec(seg(&["projects", "locations", "queues", "tasks", "v2"]), 0..12)
            .prop_map(|s| (format!("/v2/{}", s.join("/")), BodyKind::Empty, ANY)),
        1 => "(/[A-Za-z0-9%:._~-]{0,8}){0,6}".prop_map(|s| (s, BodyKind::Empty, ANY)),
        1 => Just(("/healthz".to_string(), BodyKind::Empty, &["GET", "POST"][..])),
    ]
}

fn query() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        prop::sample::select(vec![
            "pageSize",
            "page_size",
            "pageToken",
            "page_token",
            "filter",
            "responseView",
            "response_view",
            "updateMask",
            "update_mask",
            "$alt",
            "alt",
        ])
        .prop_map(str::to_string),
        "\\PC{0,6}",
    ];
    let value = prop_oneof![
        prop::sample::select(vec![
            "0",
            "-1",
            "1",
            "1000",
            "2147483648",
            "99999999999999999999",
            "x",
            "FULL",
            "BASIC",
            "7",
            "json;enum-encoding=int",
            "state: PAUSED",
            "name:projects/p AND state!=RUNNING",
            "rateLimits,retryConfig.maxAttempts",
            "*",
            "name",
            "",
        ])
        .prop_map(str::to_string),
        "\\PC{0,30}",
    ];
    prop::collection::vec((key, value), 0..4).prop_map(|kv| {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(kv)
            .finish()
    })
}

fn body_for(kind: BodyKind) -> BoxedStrategy<Vec<u8>> {
    use fuzz_support as f;
    let shape = match kind {
        BodyKind::Queue => f::queue(),
        BodyKind::CreateTask => f::create_task(),
        BodyKind::BatchCreate => f::batch_create(),
        BodyKind::BatchDelete => f::batch_delete(),
        BodyKind::Run => f::run_task(),
        BodyKind::Named => f::named(),
        BodyKind::SetIam => f::set_iam(),
        BodyKind::GetIam => f::get_iam(),
        BodyKind::TestIam => f::test_iam(),
        BodyKind::Cmek => f::cmek(),
        BodyKind::Empty => fuzz_support::Shape::Msg(vec![]),
    };
    prop_oneof![
        3 => (f::shaped(&shape, 0), f::raws()).prop_map(|(v, r)| f::render(&v, &r)),
        1 => Just(Vec::new()),
        1 => (f::any_value(), f::raws()).prop_map(|(v, r)| f::render(&v, &r)),
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ]
    .boxed()
}

#[derive(Debug)]
struct Call {
    method: Method,
    uri: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
}

fn call() -> impl Strategy<Value = Call> {
    let odd_method = prop_oneof![
        4 => Just(Method::GET),
        6 => Just(Method::POST),
        2 => Just(Method::PATCH),
        2 => Just(Method::DELETE),
        1 => prop::sample::select(vec![
            Method::PUT, Method::HEAD, Method::OPTIONS, Method::TRACE, Method::CONNECT,
        ]),
        1 => "[A-Z]{1,8}".prop_map(|m| Method::from_bytes(m.as_bytes()).unwrap()),
    ];
    let content_type = prop_oneof![
        8 => Just(Some("application/json")),
        2 => Just(None),
        1 => prop::sample::select(vec![
            Some("text/plain"),
            Some("application/json; charset=latin1"),
            Some("multipart/form-data; boundary=x"),
        ]),
        // The gRPC side of the port, fed the same paths and (non-protobuf) bodies.
        1 => prop::sample::select(vec![Some("application/grpc"), Some("application/grpc+proto")]),
    ];
    (
        path().prop_flat_map(move |(p, kind, methods)| {
            let natural = prop::sample::select(methods)
                .prop_map(|m| Method::from_bytes(m.as_bytes()).unwrap());
            (
                Just(p),
                body_for(kind),
                prop_oneof![4 => natural, 1 => odd_method.clone()],
            )
        }),
        query(),
        content_type,
    )
        .prop_map(|((path, body, method), query, content_type)| {
            let uri = if query.is_empty() {
                path
            } else {
                format!("{path}?{query}")
            };
            Call {
                method,
                uri,
                content_type,
                body,
            }
        })
}

struct Harness {
    router: axum::Router,
    _dir: tempfile::TempDir,
}

impl Harness {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap();
        let mut cfg = ServiceConfig::default();
        // Deleted queue and task names may be reused at once, so the fuzzer can keep
        // re-creating the resources its valid paths address.
        cfg.windows.queue_reuse_block = 0;
        cfg.windows.tombstone_ttl = 0;
        let svc = Arc::new(Service::new(Arc::new(store), Arc::new(SystemClock), cfg));
        Harness {
            router: stratus_api::rest::router(svc),
            _dir: dir,
        }
    }

    /// (Re-)creates the queues and tasks the real IDs in generated paths address; answers
    /// other than success (already exists, paused, …) are fine.
    async fn seed(&self) {
        let at = format_rfc3339(SystemClock.now() + 86_400 * SECOND);
        for q in QUEUES {
            let name = format!("projects/p/locations/l/queues/{q}");
            self.post(
                "/v2/projects/p/locations/l/queues",
                format!(r#"{{"name":"{name}"}}"#),
            )
            .await;
            self.post(&format!("/v2/{name}:resume"), String::new())
                .await;
            for t in TASKS {
                let task = format!(
                    r#"{{"task":{{"name":"{name}/tasks/{t}","httpRequest":{{"url":"http://127.0.0.1:9/x"}},"scheduleTime":"{at}"}}}}"#
                );
                self.post(&format!("/v2/{name}/tasks"), task).await;
            }
        }
    }

    async fn post(&self, uri: &str, body: String) -> Option<(u16, Vec<u8>)> {
        let c = Call {
            method: Method::POST,
            uri: uri.to_string(),
            content_type: Some("application/json"),
            body: body.into_bytes(),
        };
        self.send(&c).await
    }

    async fn send(&self, c: &Call) -> Option<(u16, Vec<u8>)> {
        let mut req = Request::builder().method(c.method.clone()).uri(&c.uri);
        if let Some(ct) = c.content_type {
            req = req.header("content-type", ct);
        }
        // A URI the HTTP layer cannot even parse never reaches the router.
        let req = req.body(Body::from(c.body.clone())).ok()?;
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        Some((status, bytes.to_vec()))
    }
}

/// The canonical status name of each HTTP error code the API may answer.
fn names_by_http() -> BTreeMap<String, u16> {
    (0..=16)
        .map(Code::from_i32)
        .map(|c| (c.name().to_string(), c.http_status()))
        .collect()
}

fn has_null(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.iter().any(has_null),
        Value::Object(o) => o.values().any(has_null),
        _ => false,
    }
}

fn check_response(c: &Call, status: u16, body: &[u8]) -> Result<(), TestCaseError> {
    prop_assert!(status < 500, "{} {} → {status}", c.method, c.uri);
    if c.uri.starts_with("/healthz") || c.content_type.is_some_and(|t| t.contains("grpc")) {
        return Ok(());
    }
    if c.method == Method::HEAD && body.is_empty() {
        return Ok(());
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        TestCaseError::fail(format!(
            "{} {} → {status}: body is not JSON ({e}): {:?}",
            c.method,
            c.uri,
            String::from_utf8_lossy(body)
        ))
    })?;
    prop_assert!(v.is_object(), "{} {} → {v}", c.method, c.uri);
    // Proto3 JSON never holds null: one here means a value (a non-finite double, an
    // unencodable timestamp) got past validation into an answer.
    prop_assert!(!has_null(&v), "{} {} → null in {v}", c.method, c.uri);
    if status >= 400 {
        let err = &v["error"];
        prop_assert_eq!(err["code"].as_u64(), Some(u64::from(status)), "{}", v);
        let msg = err["message"].as_str().unwrap_or("");
        prop_assert!(!msg.trim().is_empty(), "no message: {}", v);
        let name = err["status"].as_str().unwrap_or("");
        prop_assert_eq!(
            names_by_http().get(name).copied(),
            Some(status),
            "status {} of {}",
            name,
            v
        );
    }
    Ok(())
}

#[test]
fn rest_router_survives_fuzzed_requests() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let h = rt.block_on(async { Harness::new() });
    // Real resources for the valid names to hit.
    rt.block_on(h.seed());
    let (s, _) = rt
        .block_on(h.send(&Call {
            method: Method::GET,
            uri: "/v2/projects/p/locations/l/queues/q/tasks/t1".into(),
            content_type: None,
            body: Vec::new(),
        }))
        .unwrap();
    assert_eq!(s, 200, "seeded task");
    let cases = std::cell::Cell::new(0u64);
    let counts: std::cell::RefCell<BTreeMap<u16, u64>> = Default::default();
    let mut runner = TestRunner::new(fuzz_support::config(CASES));
    let result = runner.run(&call(), |c| {
        cases.set(cases.get() + 1);
        if cases.get().is_multiple_of(20) {
            rt.block_on(h.seed());
        }
        let Some((status, body)) = rt.block_on(h.send(&c)) else {
            return Ok(());
        };
        *counts.borrow_mut().entry(status).or_default() += 1;
        check_response(&c, status, &body)
    });
    let counts = counts.into_inner();
    eprintln!("REST router fuzz: responses by status {counts:?}");
    result.unwrap();
    // Statuses seen must include both successes and refusals, or the fuzzer is not reaching
    // the service.
    assert!(counts.get(&200).copied().unwrap_or(0) > 0, "{counts:?}");
    assert!(counts.get(&400).copied().unwrap_or(0) > 0, "{counts:?}");

    // Still healthy: a normal CreateQueue / CreateTask / GetTask.
    rt.block_on(async {
        let q = "projects/p/locations/l/queues/after-fuzz";
        let send = |method: Method, uri: String, body: &str| Call {
            method,
            uri,
            content_type: Some("application/json"),
            body: body.as_bytes().to_vec(),
        };
        let (s, b) = h
            .send(&send(
                Method::POST,
                "/v2/projects/p/locations/l/queues".into(),
                &format!(r#"{{"name":"{q}"}}"#),
            ))
            .await
            .unwrap();
        assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
        let (s, b) = h
            .send(&send(
                Method::POST,
                format!("/v2/{q}/tasks"),
                &format!(
                    r#"{{"task":{{"name":"{q}/tasks/a1","httpRequest":{{"url":"http://127.0.0.1:9/x"}},"scheduleTime":"{}"}}}}"#,
                    format_rfc3339(SystemClock.now() + 86_400 * SECOND)
                ),
            ))
            .await
            .unwrap();
        assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
        let (s, b) = h
            .send(&send(Method::GET, format!("/v2/{q}/tasks/a1"), ""))
            .await
            .unwrap();
        assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["name"], format!("{q}/tasks/a1"));
    });
}
