//! Bad input gets the Cloud Tasks error shape and code with a message naming the field and
//! the rule, and the server keeps serving afterwards.

mod common;

use common::{Harness, Q, assert_error};

fn task(extra: &str) -> String {
    format!(r#"{{"task":{{"httpRequest":{{"url":"http://127.0.0.1:9/x"{extra}}}}}}}"#)
}

#[tokio::test]
async fn bad_input_is_refused_with_named_fields() {
    let h = Harness::new();
    h.create_queue(Q).await;
    let tasks = format!("/v2/{Q}/tasks");

    assert_error(
        &h.call("POST", &tasks, Some("{\"task\": ")).await,
        400,
        "INVALID_ARGUMENT",
        "Invalid JSON payload",
    );
    assert_error(
        &h.call("POST", &tasks, Some("[1,2]")).await,
        400,
        "INVALID_ARGUMENT",
        "Invalid JSON payload",
    );
    assert_error(
        &h.call(
            "POST",
            &tasks,
            Some(r#"{"task":{"httpRequest":{"url":5}}}"#),
        )
        .await,
        400,
        "INVALID_ARGUMENT",
        "task.httpRequest.url",
    );
    assert_error(
        &h.call(
            "POST",
            &tasks,
            Some(r#"{"task":{"dispatchDeadline":"soon"}}"#),
        )
        .await,
        400,
        "INVALID_ARGUMENT",
        "task.dispatchDeadline",
    );
    assert_error(
        &h.call(
            "POST",
            &tasks,
            Some(r#"{"task":{"httpRequest":{"url":"http://x/","colour":"red"}}}"#),
        )
        .await,
        400,
        "INVALID_ARGUMENT",
        "colour",
    );
    // Oversize: a 1.1 MiB body.
    let big = base64_len(1_100_000);
    assert_error(
        &h.call("POST", &tasks, Some(&task(&format!(r#","body":"{big}""#))))
            .await,
        400,
        "INVALID_ARGUMENT",
        "Task size",
    );
    // Request bodies beyond the transport limit are refused in the same shape.
    assert_error(
        &h.call_raw("POST", &tasks, vec![b' '; 5 << 20]).await,
        400,
        "INVALID_ARGUMENT",
        "request body is larger",
    );
    assert_error(
        &h.call("POST", &tasks, Some(r#"{"task":{"scheduleTime":"2099-01-01T00:00:00Z","httpRequest":{"url":"http://x/"}}}"#)).await,
        400,
        "INVALID_ARGUMENT",
        "task.schedule_time",
    );
    for d in ["5s", "1801s"] {
        assert_error(
            &h.call(
                "POST",
                &tasks,
                Some(&format!(
                    r#"{{"task":{{"dispatchDeadline":"{d}","httpRequest":{{"url":"http://x/"}}}}}}"#
                )),
            )
            .await,
            400,
            "INVALID_ARGUMENT",
            "task.dispatch_deadline",
        );
    }
    assert_error(
        &h.call(
            "POST",
            &tasks,
            Some(&task(r#","httpMethod":"GET","body":"aGk=""#)),
        )
        .await,
        400,
        "INVALID_ARGUMENT",
        "task.http_request.body",
    );
    assert_error(
        &h.call(
            "POST",
            &tasks,
            Some(&task(r#","headers":{"X-A":"a\r\nX-Injected: 1"}"#)),
        )
        .await,
        400,
        "INVALID_ARGUMENT",
        "task.http_request.headers[\"X-A\"] must not contain line breaks",
    );
    assert_error(
        &h.call(
            "POST",
            &tasks,
            Some(r#"{"task":{"httpRequest":{"url":"ftp://x/"}}}"#),
        )
        .await,
        400,
        "INVALID_ARGUMENT",
        "HttpTarget.url must start with",
    );
    assert_error(
        &h.call("POST", &tasks, Some(r#"{"task":{"httpRequest":{}}}"#))
            .await,
        400,
        "INVALID_ARGUMENT",
        "HttpRequest.url is required",
    );
    assert_error(
        &h.call("POST", &tasks, Some(r#"{"task":{}}"#)).await,
        400,
        "INVALID_ARGUMENT",
        "task.http_request",
    );
    assert_error(
        &h.call("POST", &tasks, Some("{}")).await,
        400,
        "INVALID_ARGUMENT",
        "task is required",
    );
    // Invalid names.
    assert_error(
        &h.call(
            "POST",
            "/v2/projects/p/locations/l/queues",
            Some(r#"{"name":"projects/p/locations/l/queues/a_b"}"#),
        )
        .await,
        400,
        "INVALID_ARGUMENT",
        "Queue name must be formatted",
    );
    assert_error(
        &h.call(
            "GET",
            "/v2/projects/p/locations/l/queues/q/tasks/bad%20id",
            None,
        )
        .await,
        400,
        "INVALID_ARGUMENT",
        "Task ID \"bad id\"",
    );
    assert_error(
        &h.call("GET", "/v2/projects/p!/locations/l/queues", None)
            .await,
        400,
        "INVALID_ARGUMENT",
        "parent",
    );
    assert_error(
        &h.call("GET", &format!("{tasks}?pageSize=-1"), None).await,
        400,
        "INVALID_ARGUMENT",
        "page_size",
    );
    assert_error(
        &h.call("GET", &format!("{tasks}?pageSize=ten"), None).await,
        400,
        "INVALID_ARGUMENT",
        "page_size",
    );
    assert_error(
        &h.call("GET", &format!("{tasks}?pageToken=garbage"), None)
            .await,
        400,
        "INVALID_ARGUMENT",
        "page_token",
    );
    assert_error(
        &h.call("GET", &format!("{tasks}?responseView=HUGE"), None)
            .await,
        400,
        "INVALID_ARGUMENT",
        "response_view",
    );
    // Queue config out of range.
    assert_error(
        &h.call(
            "PATCH",
            &format!("/v2/{Q}"),
            Some(r#"{"rateLimits":{"maxDispatchesPerSecond":501}}"#),
        )
        .await,
        400,
        "INVALID_ARGUMENT",
        "max_dispatches_per_second",
    );
    assert_error(
        &h.call(
            "PATCH",
            &format!("/v2/{Q}?updateMask=rateLimits.colour"),
            Some("{}"),
        )
        .await,
        400,
        "INVALID_ARGUMENT",
        "update_mask",
    );
    // Unknown queue and unknown routes.
    assert_error(
        &h.create_task(
            "projects/p/locations/l/queues/nope",
            r#"{"httpRequest":{"url":"http://x/"}}"#,
        )
        .await,
        404,
        "NOT_FOUND",
        "Queue does not exist",
    );
    assert_error(
        &h.call("GET", "/v2/whatever", None).await,
        404,
        "NOT_FOUND",
        "No RPC",
    );
    assert_error(
        &h.call("PUT", &format!("/v2/{Q}"), None).await,
        404,
        "NOT_FOUND",
        "No RPC",
    );

    // Still serving.
    let q = h.ok("GET", &format!("/v2/{Q}"), None).await;
    assert_eq!(q["state"], "RUNNING");
    let (s, _) = h
        .create_task(Q, r#"{"httpRequest":{"url":"http://x/"}}"#)
        .await;
    assert_eq!(s, 200);
}

fn base64_len(raw: usize) -> String {
    "A".repeat(raw.div_ceil(3) * 4)
}
