//! Proto3 JSON behaviour of the generated types that the REST layer relies on.

use stratus_proto::tasks::{CreateTaskRequest, Queue, RetryConfig, Task};
use stratus_proto::wkt::{Duration, Timestamp};

#[test]
fn accepts_both_casings_and_int_enums() {
    let j = r#"{"task":{"name":"projects/p/locations/l/queues/q/tasks/abc","http_request":{"url":"https://e.x/","httpMethod":4,"headers":{"A":"b"},"body":"eyJhIjoxfQ==","oidcToken":{"serviceAccountEmail":"sa","audience":"aud"}},"scheduleTime":"2030-01-02T03:04:05.678901Z","dispatchDeadline":"30s"},"responseView":"FULL"}"#;
    let r: CreateTaskRequest = serde_json::from_str(j).unwrap();
    let t = r.task.unwrap();
    assert_eq!(r.response_view, 2);
    assert_eq!(t.dispatch_deadline.unwrap().seconds, 30);
    let ts = t.schedule_time.unwrap();
    assert_eq!(ts.nanos, 678_901_000);
}

#[test]
fn rejects_unknown_fields() {
    let e = serde_json::from_str::<Task>(r#"{"nmae":"x"}"#).unwrap_err();
    assert!(e.to_string().contains("nmae"), "{e}");
}

#[test]
fn canonical_output() {
    let q = Queue {
        name: "projects/p/locations/l/queues/q".into(),
        state: 1,
        retry_config: Some(RetryConfig {
            max_attempts: 100,
            min_backoff: Some(Duration {
                seconds: 0,
                nanos: 100_000_000,
            }),
            max_backoff: Some(Duration {
                seconds: 3600,
                nanos: 0,
            }),
            ..Default::default()
        }),
        purge_time: Some(Timestamp {
            seconds: 1_700_000_000,
            nanos: 5_000,
        }),
        ..Default::default()
    };
    let s = serde_json::to_string(&q).unwrap();
    println!("{s}");
    assert!(s.contains(r#""minBackoff":"0.100s""#), "{s}");
    assert!(s.contains(r#""state":"RUNNING""#), "{s}");
}
