//! The engine end to end on a virtual clock: real service layer, real SQLite store, real HTTP
//! receiver on 127.0.0.1. Minutes of retry schedules run in milliseconds, exactly.

mod support;

use std::time::Duration;

use stratus_store::TaskState;
use stratus_types::proto::tasks::{
    PauseQueueRequest, PurgeQueueRequest, Queue, RateLimits, ResumeQueueRequest, RetryConfig,
    RunTaskRequest,
};
use stratus_types::time::{SECOND, micros_to_duration, ts_to_micros};
use stratus_types::{Code, QueuePath};
use support::*;

fn retry(min_s: i64, max_s: i64, doublings: i32, attempts: i32, max_dur_s: i64) -> RetryConfig {
    RetryConfig {
        max_attempts: attempts,
        max_retry_duration: Some(micros_to_duration(max_dur_s * SECOND)),
        min_backoff: Some(micros_to_duration(min_s * SECOND)),
        max_backoff: Some(micros_to_duration(max_s * SECOND)),
        max_doublings: doublings,
    }
}

fn queue_with(rc: RetryConfig) -> Queue {
    Queue {
        retry_config: Some(rc),
        ..Default::default()
    }
}

/// A task's record in the store (any state, with its attempts).
async fn record(h: &Harness, queue: &str, id: &str) -> stratus_store::dispatch::TaskRecord {
    let q = QueuePath::parse(&format!("{LOC}/queues/{queue}")).unwrap();
    h.store.task_record(&q.task(id)).await.unwrap()
}

fn gaps_s(seen: &[Seen]) -> Vec<i64> {
    seen.windows(2)
        .map(|w| (w[1].at - w[0].at) / SECOND)
        .collect()
}

/// conformance/dispatch-headers.json, HTTP target: 503, 404, 200 and the exact headers of each
/// attempt; GetTask shows the counters and last attempt in between.
#[tokio::test]
async fn headers_and_counters_match_the_recorded_service() {
    let h = Harness::new().await;
    let recorded: serde_json::Value = serde_json::from_str(include_str!(
        "../../../testdata/conformance/dispatch-headers.json"
    ))
    .unwrap();
    let case = recorded
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "dispatch/http")
        .unwrap();
    let attempts = case["attempts"].as_array().unwrap();
    let statuses: Vec<u16> = attempts
        .iter()
        .map(|a| a["status"].as_u64().unwrap() as u16)
        .collect();
    h.recv.script(statuses.iter().map(|s| Reply::status(*s)));
    h.queue("q", queue_with(retry(1, 10, 3, -1, 0))).await;
    let created = h.create("q", h.http_task("q", "t1", "/work", 0)).await;
    // The ETA header is the schedule time the attempt was made for: the creation's, then the
    // retry's as GetTask shows it between attempts.
    let mut eta = ts_to_micros(created.schedule_time.as_ref().unwrap());

    for (i, want) in attempts.iter().enumerate() {
        h.run_until_seen(i + 1, 60 * SECOND).await;
        let seen = h.recv.seen();
        assert_eq!(seen.len(), i + 1, "attempt {i} was not made");
        let got = &seen[i];
        let mut got_headers: Vec<(String, String)> = got
            .headers
            .iter()
            .filter(|(k, _)| k.starts_with("x-cloudtasks-") || k == "user-agent")
            .cloned()
            .collect();
        got_headers.sort();
        let mut want_headers: Vec<(String, String)> = want["headers"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                let v = v
                    .as_str()
                    .unwrap()
                    .replace("{queue}", "q")
                    .replace("{task}", "t1")
                    .replace(
                        "{eta}",
                        &format!("{}.{:06}", eta / SECOND, eta.rem_euclid(SECOND)),
                    );
                (k.to_ascii_lowercase(), v)
            })
            .collect();
        want_headers.sort();
        assert_eq!(got_headers, want_headers, "headers of attempt {i}");
        assert_eq!(got.method, "POST");
        assert_eq!(got.path, "/work");
        assert_eq!(got.body, b"payload");

        // Between attempts, the task shows what happened.
        if i + 1 < attempts.len() {
            let t = h.get("q", "t1").await.unwrap();
            assert_eq!(t.dispatch_count, i as i32 + 1);
            assert_eq!(t.response_count, i as i32 + 1);
            let last = t.last_attempt.unwrap();
            let code = last.response_status.unwrap().code;
            let want_code = match statuses[i] {
                503 => Code::Unavailable,
                404 => Code::NotFound,
                _ => unreachable!(),
            };
            assert_eq!(code, want_code.grpc());
            assert_eq!(
                ts_to_micros(t.first_attempt.unwrap().dispatch_time.as_ref().unwrap()),
                h.recv.seen()[0].at
            );
            eta = ts_to_micros(t.schedule_time.as_ref().unwrap());
        }
    }
    // After the 200 the task is gone from the Cloud Tasks API, kept in retention.
    let err = h.get("q", "t1").await.unwrap_err();
    assert_eq!(err.code, Code::NotFound);
    let rec = record(&h, "q", "t1").await;
    assert_eq!(rec.state, TaskState::Succeeded);
    let statuses_seen: Vec<Option<u16>> = rec.attempts.iter().map(|a| a.http_status).collect();
    assert_eq!(statuses_seen, [Some(503), Some(404), Some(200)]);
}

/// min 10 s, max 300 s, 3 doublings: 10, 20, 40, 80, 160, 240, 300 s between attempts.
#[tokio::test]
async fn retry_gaps_double_then_grow_linearly_to_the_cap() {
    let h = Harness::new().await;
    h.recv.set_default(Reply::status(500));
    h.queue("q", queue_with(retry(10, 300, 3, 8, 0))).await;
    h.create("q", h.http_task("q", "t", "/", 0)).await;
    h.run_until_seen(8, 3600 * SECOND).await;
    let seen = h.recv.seen();
    assert_eq!(gaps_s(&seen), [10, 20, 40, 80, 160, 240, 300]);
    // max_attempts 8: the 8th failure is final.
    h.run_for(3600 * SECOND).await;
    assert_eq!(h.recv.count(), 8);
}

/// max_attempts = 3: exactly three dispatches, then the task is in the failed list.
#[tokio::test]
async fn max_attempts_then_failed_list() {
    let h = Harness::new().await;
    h.recv.set_default(Reply::status(404));
    h.queue("q", queue_with(retry(1, 10, 3, 3, 0))).await;
    h.create("q", h.http_task("q", "t", "/", 0)).await;
    h.run_for(600 * SECOND).await;
    assert_eq!(h.recv.count(), 3);
    let q = QueuePath::parse(&format!("{LOC}/queues/q")).unwrap();
    let failed = h
        .store
        .list_finished(&q, TaskState::Failed, None, 10)
        .await
        .unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].task.dispatch_count, 3);
    assert_eq!(h.get("q", "t").await.unwrap_err().code, Code::NotFound);
}

/// max_retry_duration 60 s with unlimited attempts: attempts at 0, 10, 30, 70 s; the one at
/// 70 s is older than 60 s since the first, so it is the last.
#[tokio::test]
async fn max_retry_duration_alone_stops_retries() {
    let h = Harness::new().await;
    h.recv.set_default(Reply::status(503));
    h.queue("q", queue_with(retry(10, 300, 5, -1, 60))).await;
    h.create("q", h.http_task("q", "t", "/", 0)).await;
    h.run_for(900 * SECOND).await;
    let seen = h.recv.seen();
    assert_eq!(gaps_s(&seen), [10, 20, 40]);
}

/// Both limits set: stop only when both are reached.
#[tokio::test]
async fn max_attempts_and_duration_must_both_be_reached() {
    let h = Harness::new().await;
    h.recv.set_default(Reply::status(503));
    // 2 attempts and 60 s: attempt 2 at +10 s is too young; attempt 3 at +30 s too; attempt 4
    // at +70 s reaches both.
    h.queue("q", queue_with(retry(10, 300, 5, 2, 60))).await;
    h.create("q", h.http_task("q", "t", "/", 0)).await;
    h.run_for(900 * SECOND).await;
    assert_eq!(h.recv.count(), 4);
}

/// Retry-After on 429 and 503 raises the delay above the backoff.
#[tokio::test]
async fn retry_after_is_honoured() {
    let h = Harness::new().await;
    h.recv.script([
        Reply {
            retry_after: Some("120".into()),
            ..Reply::status(429)
        },
        Reply {
            retry_after: Some("45".into()),
            ..Reply::status(503)
        },
        Reply {
            retry_after: Some("300".into()),
            ..Reply::status(500)
        },
        Reply::status(200),
    ]);
    h.queue("q", queue_with(retry(10, 600, 16, -1, 0))).await;
    h.create("q", h.http_task("q", "t", "/", 0)).await;
    h.run_until_seen(4, 3600 * SECOND).await;
    // Backoffs 10, 20, 40 s: 429 → Retry-After 120 s; 503 → Retry-After 45 s; a 500 ignores
    // Retry-After → 40 s.
    assert_eq!(gaps_s(&h.recv.seen()), [120, 45, 40]);
}

/// A task-level retry_config overrides the queue's.
#[tokio::test]
async fn task_retry_config_overrides_the_queue() {
    let h = Harness::new().await;
    h.recv.set_default(Reply::status(500));
    h.queue("q", queue_with(retry(10, 300, 3, 100, 0))).await;
    let mut t = h.http_task("q", "t", "/", 0);
    t.retry_config = Some(retry(2, 300, 0, 2, 0));
    h.create("q", t).await;
    h.run_for(600 * SECOND).await;
    assert_eq!(gaps_s(&h.recv.seen()), [2]);
}

/// Rate 5/s with burst 1: 30 due tasks take 29 × 0.2 s = 5.8 s.
#[tokio::test]
async fn rate_limit_spaces_dispatches() {
    let h = Harness::new().await;
    let q = h
        .queue(
            "q",
            Queue {
                rate_limits: Some(RateLimits {
                    max_dispatches_per_second: 5.0,
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(q.rate_limits.unwrap().max_burst_size, 1);
    for i in 0..30 {
        h.create("q", h.http_task("q", &format!("t{i:02}"), "/", 0))
            .await;
    }
    h.run_until_seen(30, 60 * SECOND).await;
    let seen = h.recv.seen();
    assert_eq!(seen.len(), 30);
    let span = seen[29].at - seen[0].at;
    assert!(
        (5_700_000..=6_000_000).contains(&span),
        "30 dispatches took {span} µs of virtual time"
    );
    for w in seen.windows(2) {
        assert!(
            w[1].at - w[0].at >= 199_000,
            "two dispatches closer than 0.2 s"
        );
    }
}

/// max_concurrent_dispatches = 2 is never exceeded (the receiver counts in-flight requests).
#[tokio::test]
async fn max_concurrent_dispatches_is_never_exceeded() {
    let h = Harness::new().await;
    h.recv.set_default(Reply {
        delay_ms: 30,
        ..Reply::status(200)
    });
    h.queue(
        "q",
        Queue {
            rate_limits: Some(RateLimits {
                max_dispatches_per_second: 500.0,
                max_concurrent_dispatches: 2,
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await;
    for i in 0..12 {
        h.create("q", h.http_task("q", &format!("t{i:02}"), "/", 0))
            .await;
    }
    h.run_until_seen(12, 60 * SECOND).await;
    assert_eq!(h.recv.count(), 12);
    assert_eq!(h.recv.max_in_flight(), 2);
}

/// Pause stops dispatch, resume restarts it; RunTask dispatches a paused queue's task now.
#[tokio::test]
async fn pause_resume_and_run_task() {
    let h = Harness::new().await;
    h.queue("q", Queue::default()).await;
    let name = format!("{LOC}/queues/q");
    h.svc
        .pause_queue(PauseQueueRequest { name: name.clone() })
        .await
        .unwrap();
    h.create("q", h.http_task("q", "a", "/a", 0)).await;
    h.create("q", h.http_task("q", "b", "/b", 0)).await;
    h.run_for(120 * SECOND).await;
    assert_eq!(h.recv.count(), 0, "a paused queue dispatched");

    // RunTask ignores the pause and answers with the task as dispatched.
    let ran = h
        .svc
        .run_task(RunTaskRequest {
            name: format!("{name}/tasks/b"),
            response_view: 0,
        })
        .await
        .unwrap();
    assert_eq!(ran.dispatch_count, 1);
    let last = ran.last_attempt.unwrap();
    assert!(last.dispatch_time.is_some());
    assert!(last.response_time.is_none() && last.response_status.is_none());
    h.settle().await;
    let seen = h.recv.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/b");
    assert_eq!(
        seen[0].at,
        ts_to_micros(last.dispatch_time.as_ref().unwrap())
    );
    assert_eq!(h.get("q", "b").await.unwrap_err().code, Code::NotFound);

    h.svc
        .resume_queue(ResumeQueueRequest { name })
        .await
        .unwrap();
    h.run_until_seen(2, 60 * SECOND).await;
    assert_eq!(h.recv.seen()[1].path, "/a");
}

/// RunTask of a missing task is NOT_FOUND with the real text.
#[tokio::test]
async fn run_task_of_a_missing_task() {
    let h = Harness::new().await;
    h.queue("q", Queue::default()).await;
    let err = h
        .svc
        .run_task(RunTaskRequest {
            name: format!("{LOC}/queues/q/tasks/nope"),
            response_view: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code, Code::NotFound);
    assert_eq!(err.message, "Requested entity was not found.");
}

/// A failed RunTask reschedules from the call time by the retry delay.
#[tokio::test]
async fn failed_run_task_reschedules_from_the_call() {
    let h = Harness::new().await;
    h.recv.set_default(Reply::status(500));
    h.queue("q", queue_with(retry(30, 300, 3, -1, 0))).await;
    h.create("q", h.http_task("q", "t", "/", 3600 * SECOND))
        .await;
    let call = h.now();
    h.svc
        .run_task(RunTaskRequest {
            name: format!("{LOC}/queues/q/tasks/t"),
            response_view: 0,
        })
        .await
        .unwrap();
    h.settle().await;
    let t = h.get("q", "t").await.unwrap();
    assert_eq!(
        ts_to_micros(t.schedule_time.as_ref().unwrap()),
        call + 30 * SECOND
    );
    h.run_until_seen(2, 60 * SECOND).await;
    assert_eq!(h.recv.seen()[1].at, call + 30 * SECOND);
}

/// Purge drops every task created before it, including ones already loaded in memory; tasks
/// created after it are dispatched.
#[tokio::test]
async fn purge_drops_older_tasks() {
    let h = Harness::new().await;
    h.queue("q", Queue::default()).await;
    for i in 0..5 {
        h.create(
            "q",
            h.http_task("q", &format!("old{i}"), "/old", 5 * SECOND),
        )
        .await;
    }
    h.settle().await;
    h.clock.advance(SECOND);
    h.svc
        .purge_queue(PurgeQueueRequest {
            name: format!("{LOC}/queues/q"),
        })
        .await
        .unwrap();
    h.clock.advance(1);
    h.create("q", h.http_task("q", "new", "/new", 5 * SECOND))
        .await;
    h.run_for(60 * SECOND).await;
    let paths: Vec<String> = h.recv.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(paths, ["/new"]);
}

/// A deleted task is not dispatched even when it was already loaded.
#[tokio::test]
async fn deleted_tasks_are_not_dispatched() {
    let h = Harness::new().await;
    h.queue("q", Queue::default()).await;
    h.create("q", h.http_task("q", "gone", "/gone", 5 * SECOND))
        .await;
    h.create("q", h.http_task("q", "kept", "/kept", 5 * SECOND))
        .await;
    h.settle().await;
    h.svc
        .delete_task(stratus_types::proto::tasks::DeleteTaskRequest {
            name: format!("{LOC}/queues/q/tasks/gone"),
        })
        .await
        .unwrap();
    h.run_for(60 * SECOND).await;
    let paths: Vec<String> = h.recv.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(paths, ["/kept"]);
}

/// A target slower than the dispatch deadline: the attempt is cancelled at the deadline and the
/// retry carries previous-response 504.
#[tokio::test]
async fn deadline_exceeded_retries_with_504() {
    let h = Harness::new().await;
    h.recv.script([Reply {
        hold: true,
        ..Reply::status(200)
    }]);
    h.queue("q", queue_with(retry(1, 10, 3, -1, 0))).await;
    let mut t = h.http_task("q", "slow", "/", 0);
    t.dispatch_deadline = Some(micros_to_duration(15 * SECOND));
    h.create("q", t).await;
    let start = h.now();
    // The receiver holds the request; once it arrived, move virtual time to the deadline.
    for _ in 0..5000 {
        if h.recv.count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(h.recv.count(), 1);
    h.clock.advance_to(start + 15 * SECOND);
    h.run_until_seen(2, 60 * SECOND).await;
    let seen = h.recv.seen();
    assert_eq!(seen.len(), 2, "no retry after the deadline");
    assert_eq!(seen[0].at, start);
    assert_eq!(
        seen[1].header("x-cloudtasks-taskpreviousresponse"),
        Some("504")
    );
    assert_eq!(seen[1].header("x-cloudtasks-taskretrycount"), Some("1"));
    assert_eq!(seen[1].header("x-cloudtasks-taskexecutioncount"), Some("0"));
    // Deadline 15 s, then min backoff 1 s.
    assert_eq!(seen[1].at - seen[0].at, 16 * SECOND);
    h.recv.release();
    let rec = record(&h, "q", "slow").await;
    assert_eq!(rec.attempts[0].http_status, None);
    assert!(
        rec.attempts[0]
            .error
            .as_deref()
            .unwrap()
            .contains("deadline")
    );
}

/// A connection error is an attempt failure without a response.
#[tokio::test]
async fn connection_errors_are_failures() {
    let h = Harness::new().await;
    h.queue("q", queue_with(retry(1, 10, 3, 2, 0))).await;
    let mut t = h.http_task("q", "t", "/", 0);
    // A port nothing listens on.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    if let Some(stratus_types::proto::tasks::task::MessageType::HttpRequest(r)) =
        &mut t.message_type
    {
        r.url = format!("http://127.0.0.1:{port}/");
    }
    h.create("q", t).await;
    h.run_for(60 * SECOND).await;
    let q = QueuePath::parse(&format!("{LOC}/queues/q")).unwrap();
    let failed = h
        .store
        .list_finished(&q, TaskState::Failed, None, 10)
        .await
        .unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].task.dispatch_count, 2);
    assert_eq!(failed[0].task.response_count, 0);
}

/// Future tasks wait for their schedule time, in order.
#[tokio::test]
async fn scheduled_tasks_dispatch_at_their_time() {
    let h = Harness::new().await;
    h.queue("q", Queue::default()).await;
    let start = h.now();
    // Beyond and within the look-ahead window.
    for (id, delay_s) in [("c", 3600), ("a", 5), ("b", 90)] {
        h.create(
            "q",
            h.http_task("q", id, &format!("/{id}"), delay_s * SECOND),
        )
        .await;
    }
    h.run_until_seen(3, 2 * 3600 * SECOND).await;
    let seen = h.recv.seen();
    let got: Vec<(String, i64)> = seen
        .iter()
        .map(|s| (s.path.clone(), (s.at - start) / SECOND))
        .collect();
    assert_eq!(
        got,
        [
            ("/a".to_string(), 5),
            ("/b".to_string(), 90),
            ("/c".to_string(), 3600)
        ]
    );
}

/// An idle queue sleeps until its next task comes near: no wake-ups in between.
#[tokio::test]
async fn idle_queues_sleep_until_their_next_task() {
    let h = Harness::new().await;
    h.queue("q", Queue::default()).await;
    h.settle().await;
    assert_eq!(
        h.clock.next_deadline(),
        Some(stratus_types::Micros::MAX),
        "an empty queue wakes up"
    );
    let start = h.now();
    h.create("q", h.http_task("q", "later", "/later", 3600 * SECOND))
        .await;
    h.settle().await;
    // Loaded half a look-ahead window (15 s) before it is due, not earlier.
    assert_eq!(
        h.clock.next_deadline(),
        Some(start + 3600 * SECOND - 15 * SECOND)
    );
    h.run_until_seen(1, 2 * 3600 * SECOND).await;
    assert_eq!(h.recv.seen()[0].at, start + 3600 * SECOND);
}
