//! Stratus' retention endpoints under `/stratus/v1/` (task status with attempts, failed tasks,
//! retry) over the REST router and a real SQLite store. Attempts are recorded on the store
//! directly, standing in for the dispatcher.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Method, Request};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use stratus_api::{Service, ServiceConfig};
use stratus_store::Store;
use stratus_store::dispatch::{AttemptOutcome, DueTask};
use stratus_store::hook::DispatchHook;
use stratus_store_sqlite::{SqliteOptions, SqliteStore};
use stratus_types::proto::tasks::{Queue, RetryConfig, Task};
use stratus_types::time::{Clock, SECOND, micros_to_duration};
use stratus_types::{Micros, QueuePath, Status, TaskPath};
use tower::ServiceExt;

use common::{Q, TestClock, assert_error};

const S: &str = "/stratus/v1";
const START: Micros = 1_900_000_000_000_000;

/// Records which tasks the service announced to the dispatcher.
#[derive(Default)]
struct Hook(Mutex<Vec<String>>);

impl DispatchHook for Hook {
    fn tasks_created(&self, _: &QueuePath, tasks: &[DueTask]) {
        let mut seen = self.0.lock().unwrap();
        seen.extend(tasks.iter().map(|t| t.task.name.clone()));
    }
    fn tasks_deleted(&self, _: &QueuePath, _: &[String]) {}
    fn queue_changed(&self, _: &Queue) {}
    fn queue_deleted(&self, _: &QueuePath) {}
    fn run_task<'a, 'b, 'f>(
        &'a self,
        _: &'b TaskPath,
    ) -> Pin<Box<dyn Future<Output = Result<Task, Status>> + Send + 'f>>
    where
        'a: 'f,
        'b: 'f,
        Self: 'f,
    {
        Box::pin(async { Err(Status::internal("no RunTask in these tests")) })
    }
}

struct H {
    router: axum::Router,
    store: Arc<dyn Store>,
    clock: Arc<TestClock>,
    hook: Arc<Hook>,
    _dir: tempfile::TempDir,
}

impl H {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap());
        let clock = Arc::new(TestClock::default());
        clock.advance(START);
        let hook = Arc::new(Hook::default());
        let svc = Service::new(store.clone(), clock.clone(), ServiceConfig::default())
            .with_dispatch(hook.clone());
        H {
            router: stratus_api::rest::router(Arc::new(svc)),
            store,
            clock,
            hook,
            _dir: dir,
        }
    }

    async fn call(&self, method: &str, path: &str, body: &str) -> (u16, Value) {
        let req = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri(path)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let ct = resp.headers().get("content-type").cloned();
        assert_eq!(
            ct.unwrap().to_str().unwrap(),
            "application/json; charset=UTF-8",
            "{path}"
        );
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    async fn ok(&self, method: &str, path: &str) -> Value {
        let (s, v) = self.call(method, path, "").await;
        assert_eq!(s, 200, "{method} {path} → {v}");
        v
    }

    async fn setup_queue(&self) {
        let body = format!(r#"{{"name":"{Q}"}}"#);
        let (s, v) = self
            .call("POST", "/v2/projects/p/locations/l/queues", &body)
            .await;
        assert_eq!(s, 200, "{v}");
    }

    /// Creates task `id` with a body and `maxAttempts` 2 in its retry config.
    async fn create(&self, id: &str) -> Value {
        let body = format!(
            r#"{{"task":{{"name":"{Q}/tasks/{id}","httpRequest":{{"url":"https://e.com/{id}","body":"aGk="}}}}}}"#
        );
        let (s, v) = self.call("POST", &format!("/v2/{Q}/tasks"), &body).await;
        assert_eq!(s, 200, "{v}");
        v
    }

    /// Records one attempt of live task `id` answered with `status` (None: connection error),
    /// with `max_attempts` as the retry config in force.
    async fn attempt(&self, id: &str, status: Option<u16>, max_attempts: i32) {
        let name = TaskPath::parse(&format!("{Q}/tasks/{id}")).unwrap();
        let due = self.store.get_due_task(&name).await.unwrap();
        let now = self.clock.now();
        let outcome = AttemptOutcome {
            row: due.row,
            dispatch_time: now,
            response_time: now + 25_000,
            http_status: status,
            timed_out: false,
            error: status.is_none().then(|| "connection refused".to_string()),
            retry_after: None,
            retry: RetryConfig {
                max_attempts,
                min_backoff: Some(micros_to_duration(SECOND)),
                max_backoff: Some(micros_to_duration(10 * SECOND)),
                max_doublings: 1,
                max_retry_duration: None,
            },
            anchor: now + 25_000,
            fence: None,
        };
        self.store
            .record_attempt(outcome, now + 25_000)
            .await
            .unwrap();
        self.clock.advance(SECOND);
    }

    /// Makes `id` fail for good: a 500 with a budget of one attempt.
    async fn fail(&self, id: &str) {
        self.attempt(id, Some(500), 1).await;
    }
}

fn status_path(id: &str) -> String {
    format!("{S}/{Q}/tasks/{id}")
}

#[tokio::test]
async fn status_of_live_succeeded_and_failed_tasks_with_attempts() {
    let h = H::new();
    h.setup_queue().await;
    h.create("live").await;
    h.create("ok").await;
    h.create("bad").await;

    // Live, never attempted: SCHEDULED, no finish time, empty history, BASIC view by default.
    let v = h.ok("GET", &status_path("live")).await;
    assert_eq!(v["state"], "SCHEDULED");
    assert_eq!(v["task"]["name"], format!("{Q}/tasks/live"));
    assert_eq!(v["task"]["view"], "BASIC");
    assert!(v["task"]["httpRequest"].get("body").is_none(), "{v}");
    assert!(v.get("finishTime").is_none(), "{v}");
    assert_eq!(v["attempts"], json!([]));
    // FULL on request.
    let v = h
        .ok("GET", &format!("{}?responseView=FULL", status_path("live")))
        .await;
    assert_eq!(v["task"]["httpRequest"]["body"], "aGk=");

    // A 503 then a connection error (retries left), then a 200: SUCCEEDED with three attempts.
    h.attempt("ok", Some(503), 5).await;
    h.attempt("ok", None, 5).await;
    let v = h.ok("GET", &status_path("ok")).await;
    assert_eq!(v["state"], "SCHEDULED", "retrying is live: {v}");
    assert_eq!(v["task"]["dispatchCount"], 2);
    h.attempt("ok", Some(200), 5).await;
    let v = h.ok("GET", &status_path("ok")).await;
    assert_eq!(v["state"], "SUCCEEDED");
    let finish = v["finishTime"].as_str().unwrap();
    assert!(finish.ends_with('Z'), "{finish}");
    assert_eq!(finish, "2030-03-17T17:46:42.025Z");
    let attempts = v["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3);
    assert_eq!(
        attempts[0],
        json!({"seq": 1, "dispatchTime": "2030-03-17T17:46:40Z",
               "responseTime": "2030-03-17T17:46:40.025Z", "httpStatus": 503, "latencyMs": 25})
    );
    assert_eq!(
        attempts[1],
        json!({"seq": 2, "dispatchTime": "2030-03-17T17:46:41Z",
               "responseTime": "2030-03-17T17:46:41.025Z", "error": "connection refused",
               "latencyMs": 25})
    );
    assert_eq!(attempts[2]["httpStatus"], 200);
    assert_eq!(v["task"]["dispatchCount"], 3);
    assert_eq!(v["task"]["responseCount"], 2);

    // Failed: FAILED, finish time, the last attempt's status on the task too.
    h.fail("bad").await;
    let v = h.ok("GET", &status_path("bad")).await;
    assert_eq!(v["state"], "FAILED");
    assert!(v["finishTime"].as_str().unwrap().ends_with('Z'));
    assert_eq!(v["attempts"][0]["httpStatus"], 500);
    assert_eq!(v["task"]["lastAttempt"]["responseStatus"]["code"], 13);

    // Unknown task, bad name, unknown queue.
    assert_error(
        &h.call("GET", &status_path("nope"), "").await,
        404,
        "NOT_FOUND",
        "Requested entity was not found.",
    );
    assert_error(
        &h.call("GET", &status_path("bad%20id"), "").await,
        400,
        "INVALID_ARGUMENT",
        "",
    );
    assert_error(
        &h.call(
            "GET",
            &format!("{S}/projects/p/locations/l/queues/other/tasks/t"),
            "",
        )
        .await,
        404,
        "NOT_FOUND",
        "",
    );
}

#[tokio::test]
async fn cloud_tasks_answers_do_not_change_for_finished_tasks() {
    let h = H::new();
    h.setup_queue().await;
    h.create("bad").await;
    h.create("live").await;
    h.fail("bad").await;
    // GetTask of a failed task: NOT_FOUND with the tombstone text, exactly as before.
    assert_error(
        &h.call("GET", &format!("/v2/{Q}/tasks/bad"), "").await,
        404,
        "NOT_FOUND",
        stratus_types::messages::TASK_GONE,
    );
    // ListTasks shows only the live task.
    let v = h.ok("GET", &format!("/v2/{Q}/tasks")).await;
    let names: Vec<&str> = v["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, [format!("{Q}/tasks/live")]);
    // The name stays blocked by its tombstone.
    let body =
        format!(r#"{{"task":{{"name":"{Q}/tasks/bad","httpRequest":{{"url":"https://e.com"}}}}}}"#);
    assert_error(
        &h.call("POST", &format!("/v2/{Q}/tasks"), &body).await,
        409,
        "ALREADY_EXISTS",
        "existed too recently",
    );
    // The Stratus prefix does not leak into /v2/, nor the other way round.
    assert_error(
        &h.call("GET", &format!("/v2/{Q}/failedTasks"), "").await,
        404,
        "NOT_FOUND",
        "No RPC is bound",
    );
    assert_error(
        &h.call("GET", &format!("{S}/{Q}"), "").await,
        404,
        "NOT_FOUND",
        "No Stratus API call is bound",
    );
    assert_error(
        &h.call("DELETE", &status_path("bad"), "").await,
        404,
        "NOT_FOUND",
        "No Stratus API call is bound",
    );
}

#[tokio::test]
async fn failed_tasks_page_and_skip_the_rest() {
    let h = H::new();
    h.setup_queue().await;
    for i in 0..5 {
        h.create(&format!("f{i}")).await;
    }
    h.create("ok").await;
    h.create("live").await;
    h.create("live2").await;
    for i in 0..5 {
        h.fail(&format!("f{i}")).await;
    }
    h.attempt("ok", Some(204), 1).await;

    let list = format!("{S}/{Q}/failedTasks");
    // Default page: everything, no token.
    let v = h.ok("GET", &list).await;
    let ids = |v: &Value| -> Vec<String> {
        v["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                assert_eq!(t["state"], "FAILED");
                assert!(t.get("attempts").is_none(), "no history in lists: {t}");
                assert!(t["finishTime"].as_str().unwrap().ends_with('Z'));
                t["task"]["name"]
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    assert_eq!(ids(&v), ["f0", "f1", "f2", "f3", "f4"]);
    assert!(v.get("nextPageToken").is_none(), "{v}");

    // Pages of two: f0 f1 / f2 f3 / f4, the last without a token.
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let mut url = format!("{list}?pageSize=2");
        if !token.is_empty() {
            url.push_str(&format!("&pageToken={token}"));
        }
        let v = h.ok("GET", &url).await;
        pages += 1;
        seen.extend(ids(&v));
        match v.get("nextPageToken").and_then(Value::as_str) {
            Some(t) => token = t.to_string(),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ["f0", "f1", "f2", "f3", "f4"]);

    // Bad page sizes and tokens name the field.
    for bad in ["-1", "x", "99999999999"] {
        assert_error(
            &h.call("GET", &format!("{list}?pageSize={bad}"), "").await,
            400,
            "INVALID_ARGUMENT",
            "pageSize",
        );
    }
    assert_error(
        &h.call("GET", &format!("{list}?pageToken=garbage"), "")
            .await,
        400,
        "INVALID_ARGUMENT",
        "pageToken",
    );
    // A ListTasks token of the same queue is not a failed-tasks token.
    let v = h.ok("GET", &format!("/v2/{Q}/tasks?pageSize=1")).await;
    let list_tasks_token = v["nextPageToken"].as_str().unwrap();
    assert_error(
        &h.call("GET", &format!("{list}?pageToken={list_tasks_token}"), "")
            .await,
        400,
        "INVALID_ARGUMENT",
        "pageToken",
    );
    // Over the maximum is lowered, not refused.
    assert_eq!(
        ids(&h.ok("GET", &format!("{list}?pageSize=5000")).await).len(),
        5
    );
    // Unknown queue.
    assert_error(
        &h.call(
            "GET",
            &format!("{S}/projects/p/locations/l/queues/other/failedTasks"),
            "",
        )
        .await,
        404,
        "NOT_FOUND",
        "Queue does not exist",
    );
}

#[tokio::test]
async fn failed_tasks_leave_after_their_retention_window() {
    let h = H::new();
    h.setup_queue().await;
    h.create("old").await;
    h.create("ok").await;
    h.fail("old").await;
    h.attempt("ok", Some(200), 1).await;
    // Inside the windows (succeeded 1 h, failed 7 d).
    h.clock.advance(3600 * SECOND - 10 * SECOND);
    assert_eq!(h.ok("GET", &status_path("ok")).await["state"], "SUCCEEDED");
    h.clock.advance(20 * SECOND);
    // The succeeded task is past 1 h; the failed one is kept for 7 days.
    assert_error(
        &h.call("GET", &status_path("ok"), "").await,
        404,
        "NOT_FOUND",
        "",
    );
    assert_eq!(h.ok("GET", &status_path("old")).await["state"], "FAILED");
    h.clock.advance(7 * 24 * 3600 * SECOND);
    assert_error(
        &h.call("GET", &status_path("old"), "").await,
        404,
        "NOT_FOUND",
        "",
    );
    let v = h.ok("GET", &format!("{S}/{Q}/failedTasks")).await;
    assert_eq!(v, json!({"tasks": []}));
    assert_error(
        &h.call("POST", &format!("{}:retry", status_path("old")), "")
            .await,
        404,
        "NOT_FOUND",
        "",
    );
}

#[tokio::test]
async fn retry_puts_a_finished_task_back_with_fresh_counters() {
    let h = H::new();
    h.setup_queue().await;
    h.create("bad").await;
    h.create("live").await;
    h.create("ok").await;
    h.attempt("bad", Some(503), 2).await;
    h.attempt("bad", Some(500), 2).await;
    assert_eq!(h.ok("GET", &status_path("bad")).await["state"], "FAILED");
    h.hook.0.lock().unwrap().clear();

    let retried_at = h.clock.now();
    let v = h.ok("POST", &format!("{}:retry", status_path("bad"))).await;
    // The Cloud Tasks Task: scheduled now, no attempts counted, BASIC view.
    assert_eq!(v["name"], format!("{Q}/tasks/bad"));
    assert!(v.get("dispatchCount").is_none(), "dispatch_count 0: {v}");
    assert!(v.get("lastAttempt").is_none() && v.get("firstAttempt").is_none());
    assert_eq!(
        v["scheduleTime"],
        stratus_types::time::format_rfc3339(retried_at)
    );
    assert_eq!(v["view"], "BASIC");
    // The dispatcher heard about it at once.
    assert_eq!(*h.hook.0.lock().unwrap(), [format!("{Q}/tasks/bad")]);

    // GetTask through the Cloud Tasks API works again.
    let got = h.ok("GET", &format!("/v2/{Q}/tasks/bad")).await;
    assert_eq!(got["name"], format!("{Q}/tasks/bad"));
    assert!(got.get("dispatchCount").is_none(), "{got}");
    // The status is SCHEDULED, its history kept.
    let st = h.ok("GET", &status_path("bad")).await;
    assert_eq!(st["state"], "SCHEDULED");
    assert!(st.get("finishTime").is_none());
    assert_eq!(st["attempts"].as_array().unwrap().len(), 2);
    // No longer in the failed list.
    assert_eq!(
        h.ok("GET", &format!("{S}/{Q}/failedTasks")).await,
        json!({"tasks": []})
    );
    // It fails again with a fresh budget of one; history numbering continues.
    h.fail("bad").await;
    let st = h.ok("GET", &status_path("bad")).await;
    assert_eq!(st["state"], "FAILED");
    assert_eq!(st["attempts"][2]["seq"], 3);
    assert_eq!(st["task"]["dispatchCount"], 1);

    // A succeeded task can be retried too, with the body in FULL view on request.
    h.attempt("ok", Some(200), 1).await;
    let v = h
        .ok(
            "POST",
            &format!("{}:retry?responseView=FULL", status_path("ok")),
        )
        .await;
    assert_eq!(v["httpRequest"]["body"], "aGk=");

    // A live task: FAILED_PRECONDITION.
    assert_error(
        &h.call("POST", &format!("{}:retry", status_path("live")), "{}")
            .await,
        400,
        "FAILED_PRECONDITION",
        "is still scheduled; only finished tasks can be retried",
    );
    // Unknown: NOT_FOUND.
    assert_error(
        &h.call("POST", &format!("{}:retry", status_path("nope")), "")
            .await,
        404,
        "NOT_FOUND",
        "Requested entity was not found.",
    );
    // A deleted task is not kept for retry.
    h.ok("DELETE", &format!("/v2/{Q}/tasks/live")).await;
    assert_error(
        &h.call("POST", &format!("{}:retry", status_path("live")), "")
            .await,
        404,
        "NOT_FOUND",
        "",
    );
    // Body fields are refused; GET is not bound.
    assert_error(
        &h.call(
            "POST",
            &format!("{}:retry", status_path("bad")),
            r#"{"responseView":"FULL"}"#,
        )
        .await,
        400,
        "INVALID_ARGUMENT",
        "responseView",
    );
    assert_error(
        &h.call("GET", &format!("{}:retry", status_path("bad")), "")
            .await,
        404,
        "NOT_FOUND",
        "No Stratus API call is bound",
    );
}
