//! Shared harness for the REST tests: a service over a fresh SQLite store in a temp dir, a
//! settable clock, and a `call` helper driving the router without a socket.

#![allow(dead_code, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use axum::body::Body;
use axum::http::{Method, Request};
use http_body_util::BodyExt;
use serde_json::Value;
use stratus_api::{Service, ServiceConfig};
use stratus_store_sqlite::{SqliteOptions, SqliteStore};
use stratus_types::Micros;
use stratus_types::time::Clock;
use tower::ServiceExt;

/// A clock tests move by hand.
#[derive(Default)]
pub struct TestClock(AtomicI64);

impl TestClock {
    pub fn advance(&self, us: Micros) {
        self.0.fetch_add(us, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now(&self) -> Micros {
        self.0.load(Ordering::SeqCst)
    }
}

pub struct Harness {
    pub router: axum::Router,
    pub clock: Arc<TestClock>,
    _dir: tempfile::TempDir,
}

pub const Q: &str = "projects/p/locations/l/queues/q";
pub const LOC: &str = "projects/p/locations/l";

impl Harness {
    pub fn new() -> Self {
        Self::with_config(ServiceConfig::default())
    }

    pub fn with_config(cfg: ServiceConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap();
        let clock = Arc::new(TestClock(AtomicI64::new(1_900_000_000_000_000)));
        let svc = Arc::new(Service::new(Arc::new(store), clock.clone(), cfg));
        Harness {
            router: stratus_api::rest::router(svc),
            clock,
            _dir: dir,
        }
    }

    /// Sends a request; returns the HTTP status and the JSON body.
    pub async fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        self.call_raw(method, path, body.unwrap_or("").as_bytes().to_vec())
            .await
    }

    pub async fn call_raw(&self, method: &str, path: &str, body: Vec<u8>) -> (u16, Value) {
        let req = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri(path)
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap();
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string());
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        if path.starts_with("/v2/") {
            assert_eq!(
                ct.as_deref(),
                Some("application/json; charset=UTF-8"),
                "content type of {path}"
            );
        }
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (status, json)
    }

    /// Asserts success and returns the body.
    pub async fn ok(&self, method: &str, path: &str, body: Option<&str>) -> Value {
        let (s, v) = self.call(method, path, body).await;
        assert_eq!(s, 200, "{method} {path} → {v}");
        v
    }

    pub async fn create_queue(&self, name: &str) -> Value {
        let parent = name.rsplit_once("/queues/").unwrap().0;
        self.ok(
            "POST",
            &format!("/v2/{parent}/queues"),
            Some(&format!(r#"{{"name":"{name}"}}"#)),
        )
        .await
    }

    pub async fn create_task(&self, queue: &str, task: &str) -> (u16, Value) {
        self.call(
            "POST",
            &format!("/v2/{queue}/tasks"),
            Some(&format!(r#"{{"task":{task}}}"#)),
        )
        .await
    }
}

/// Asserts an error answer: HTTP code, canonical status and (a substring of) the message.
pub fn assert_error(got: &(u16, Value), http: u16, status: &str, message_part: &str) {
    let (code, v) = got;
    assert_eq!(*code, http, "{v}");
    assert_eq!(v["error"]["code"], http, "{v}");
    assert_eq!(v["error"]["status"], status, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains(message_part),
        "message {msg:?} lacks {message_part:?}"
    );
}
