//! Behaviour of every REST RPC over a real SQLite store (no socket; the router is driven
//! directly). The official clients are exercised against a real process elsewhere.

mod common;

use common::{Harness, LOC, Q, assert_error};
use serde_json::{Value, json};
use stratus_types::time::SECOND;

#[tokio::test]
async fn queue_lifecycle_defaults_and_state() {
    let h = Harness::new();
    let q = h.create_queue(Q).await;
    assert_eq!(
        q,
        json!({"name": Q, "state": "RUNNING",
            "rateLimits": {"maxDispatchesPerSecond": 500.0, "maxBurstSize": 100, "maxConcurrentDispatches": 1000},
            "retryConfig": {"maxAttempts": 100, "minBackoff": "0.100s", "maxBackoff": "3600s", "maxDoublings": 16}})
    );
    assert_eq!(
        h.ok("POST", &format!("/v2/{Q}:pause"), Some("{}")).await["state"],
        "PAUSED"
    );
    assert_eq!(
        h.ok("POST", &format!("/v2/{Q}:pause"), None).await["state"],
        "PAUSED"
    );
    assert_eq!(
        h.ok("GET", &format!("/v2/{Q}"), None).await["state"],
        "PAUSED"
    );
    assert_eq!(
        h.ok("POST", &format!("/v2/{Q}:resume"), Some("{}")).await["state"],
        "RUNNING"
    );
    // Integer enums on request.
    let v = h
        .ok(
            "GET",
            &format!("/v2/{Q}?%24alt=json%3Benum-encoding%3Dint"),
            None,
        )
        .await;
    assert_eq!(v["state"], 1);
    let v = h
        .ok(
            "GET",
            &format!("/v2/{Q}?$alt=json%3Benum-encoding=int"),
            None,
        )
        .await;
    assert_eq!(v["state"], 1);
    assert_eq!(h.ok("DELETE", &format!("/v2/{Q}"), None).await, json!({}));
}

#[tokio::test]
async fn update_queue_upserts_and_honours_masks_in_both_casings() {
    let h = Harness::new();
    // Upsert: a missing queue is created.
    let v = h
        .ok(
            "PATCH",
            &format!("/v2/{Q}?updateMask=rateLimits.maxDispatchesPerSecond"),
            Some(r#"{"rateLimits":{"maxDispatchesPerSecond":7.0}}"#),
        )
        .await;
    assert_eq!(v["rateLimits"]["maxDispatchesPerSecond"], 7.0);
    assert_eq!(v["rateLimits"]["maxBurstSize"], 2);
    assert_eq!(v["state"], "RUNNING");
    // Snake case mask, other fields untouched.
    let v = h
        .ok(
            "PATCH",
            &format!("/v2/{Q}?updateMask=retry_config.max_attempts"),
            Some(&format!(r#"{{"name":"{Q}","retryConfig":{{"maxAttempts":3,"maxDoublings":1}},"rateLimits":{{"maxDispatchesPerSecond":9}}}}"#)),
        )
        .await;
    assert_eq!(v["retryConfig"]["maxAttempts"], 3);
    assert_eq!(v["retryConfig"]["maxDoublings"], 16);
    assert_eq!(v["rateLimits"]["maxDispatchesPerSecond"], 7.0);
    // No mask: every mutable field replaced (absent ones back to defaults).
    let v = h
        .ok(
            "PATCH",
            &format!("/v2/{Q}"),
            Some(r#"{"retryConfig":{"minBackoff":"1.5s","maxBackoff":"10s"}}"#),
        )
        .await;
    assert_eq!(v["retryConfig"]["minBackoff"], "1.500s");
    assert_eq!(v["retryConfig"]["maxAttempts"], 100);
    assert_eq!(v["rateLimits"]["maxDispatchesPerSecond"], 500.0);
    // A name in the body must match the URL.
    assert_error(
        &h.call(
            "PATCH",
            &format!("/v2/{Q}"),
            Some(r#"{"name":"projects/p/locations/l/queues/other"}"#),
        )
        .await,
        400,
        "INVALID_ARGUMENT",
        "does not match",
    );
    // Upsert of a recently deleted name is refused.
    h.ok("DELETE", &format!("/v2/{Q}"), None).await;
    assert_error(
        &h.call("PATCH", &format!("/v2/{Q}"), Some("{}")).await,
        400,
        "FAILED_PRECONDITION",
        "existed too recently",
    );
}

#[tokio::test]
async fn list_queues_pages_and_filters() {
    let h = Harness::new();
    for i in 0..5 {
        h.create_queue(&format!("{LOC}/queues/q{i}")).await;
    }
    h.ok("POST", &format!("/v2/{LOC}/queues/q3:pause"), None)
        .await;
    let mut names = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let v = h
            .ok(
                "GET",
                &format!("/v2/{LOC}/queues?pageSize=2&pageToken={token}"),
                None,
            )
            .await;
        pages += 1;
        for q in v["queues"].as_array().unwrap() {
            names.push(
                q["name"]
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_string(),
            );
        }
        match v.get("nextPageToken").and_then(Value::as_str) {
            Some(t) => token = t.to_string(),
            None => break,
        }
    }
    assert_eq!(names, ["q0", "q1", "q2", "q3", "q4"]);
    assert_eq!(pages, 3);
    let v = h
        .ok(
            "GET",
            &format!("/v2/{LOC}/queues?filter=state%3A+PAUSED"),
            None,
        )
        .await;
    assert_eq!(v["queues"].as_array().unwrap().len(), 1);
    let v = h
        .ok(
            "GET",
            &format!("/v2/{LOC}/queues?filter=state%20!%3D%20PAUSED&pageSize=2"),
            None,
        )
        .await;
    assert_eq!(v["queues"].as_array().unwrap().len(), 2);
    // A token used with another filter is refused.
    let tok = v["nextPageToken"].as_str().unwrap();
    assert_error(
        &h.call("GET", &format!("/v2/{LOC}/queues?pageToken={tok}"), None)
            .await,
        400,
        "INVALID_ARGUMENT",
        "filter",
    );
    // Empty location: empty list.
    assert_eq!(
        h.ok("GET", "/v2/projects/p/locations/empty/queues", None)
            .await,
        json!({})
    );
}

#[tokio::test]
async fn task_create_get_list_delete() {
    let h = Harness::new();
    h.create_queue(Q).await;
    let now_s = h.clock_now_secs();
    let created = h
        .ok(
            "POST",
            &format!("/v2/{Q}/tasks"),
            Some(r#"{"task":{"httpRequest":{"url":"https://example.com/x","httpMethod":4,"headers":{"Content-Type":"application/json"},"body":"eyJhIjoxfQ==","oidcToken":{"serviceAccountEmail":"sa@p.iam.gserviceaccount.com","audience":"aud"}},"dispatchDeadline":"30s"},"responseView":2}"#),
        )
        .await;
    let name = created["name"].as_str().unwrap().to_string();
    let id = name.rsplit('/').next().unwrap();
    assert!(
        id.bytes().all(|b| b.is_ascii_digit()) && id.len() == 19,
        "generated id {id}"
    );
    assert_eq!(created["view"], "FULL");
    assert_eq!(created["dispatchDeadline"], "30s");
    assert_eq!(created["httpRequest"]["httpMethod"], "PUT");
    assert_eq!(created["httpRequest"]["body"], "eyJhIjoxfQ==");
    assert_eq!(created["httpRequest"]["oidcToken"]["audience"], "aud");
    assert_eq!(
        created["createTime"],
        format!("{}", stratus_types::time::format_rfc3339(now_s * SECOND))
    );
    assert!(created.get("dispatchCount").is_none());
    let basic = h.ok("GET", &format!("/v2/{name}"), None).await;
    assert_eq!(basic["view"], "BASIC");
    assert!(basic["httpRequest"].get("body").is_none());
    // Defaults: POST, 600s, schedule_time = now.
    let t2 = h
        .ok(
            "POST",
            &format!("/v2/{Q}/tasks"),
            Some(r#"{"task":{"httpRequest":{"url":"http://x/"}}}"#),
        )
        .await;
    assert_eq!(t2["dispatchDeadline"], "600s");
    let id2: u64 = t2["name"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(id2 > id.parse::<u64>().unwrap(), "generated IDs ascend");
    assert_eq!(t2["httpRequest"]["httpMethod"], "POST");
    assert_eq!(
        t2["scheduleTime"],
        stratus_types::time::format_rfc3339(h.clock_now())
    );
    // A past schedule_time becomes now; a future one is kept.
    let t3 = h
        .ok("POST", &format!("/v2/{Q}/tasks"), Some(r#"{"task":{"scheduleTime":"2000-01-01T00:00:00Z","httpRequest":{"url":"http://x/"}}}"#))
        .await;
    assert_eq!(
        t3["scheduleTime"],
        stratus_types::time::format_rfc3339(h.clock_now())
    );
    // schedule_time keeps µs precision (nanoseconds are truncated).
    let t4 = h
        .ok("POST", &format!("/v2/{Q}/tasks"), Some(r#"{"task":{"scheduleTime":"2030-03-18T03:04:05.678901234Z","httpRequest":{"url":"http://x/"}}}"#))
        .await;
    assert_eq!(t4["scheduleTime"], "2030-03-18T03:04:05.678901Z");
    h.ok(
        "DELETE",
        &format!("/v2/{}", t4["name"].as_str().unwrap()),
        None,
    )
    .await;
    // ListTasks: 3 live tasks, paging by 2.
    let v = h
        .ok(
            "GET",
            &format!("/v2/{Q}/tasks?pageSize=2&responseView=FULL"),
            None,
        )
        .await;
    assert_eq!(v["tasks"].as_array().unwrap().len(), 2);
    let tok = v["nextPageToken"].as_str().unwrap();
    let v2 = h
        .ok(
            "GET",
            &format!("/v2/{Q}/tasks?pageSize=2&pageToken={tok}"),
            None,
        )
        .await;
    assert_eq!(v2["tasks"].as_array().unwrap().len(), 1);
    assert!(v2.get("nextPageToken").is_none());
    // Rust-client style empty parameters are treated as unset.
    let v3 = h
        .ok(
            "GET",
            &format!("/v2/{Q}/tasks?responseView=0&pageSize=0&pageToken="),
            None,
        )
        .await;
    assert_eq!(v3["tasks"].as_array().unwrap().len(), 3);
    // Delete, then the tombstone answers.
    h.ok("DELETE", &format!("/v2/{name}"), None).await;
    assert_error(
        &h.call("GET", &format!("/v2/{name}"), None).await,
        404,
        "NOT_FOUND",
        "existed recently",
    );
    assert_error(
        &h.call("DELETE", &format!("/v2/{name}"), None).await,
        404,
        "NOT_FOUND",
        "Requested entity was not found.",
    );
    // After the tombstone window (1 h) the name is free again.
    h.clock.advance(3601 * SECOND);
    assert_error(
        &h.call("GET", &format!("/v2/{name}"), None).await,
        404,
        "NOT_FOUND",
        "Requested entity was not found.",
    );
    let again = format!(r#"{{"task":{{"name":"{name}","httpRequest":{{"url":"http://x/"}}}}}}"#);
    h.ok("POST", &format!("/v2/{Q}/tasks"), Some(&again)).await;
    // RunTask answers FAILED_PRECONDITION until the dispatcher exists.
    assert_error(
        &h.call("POST", &format!("/v2/{name}:run"), Some("{}")).await,
        400,
        "FAILED_PRECONDITION",
        "RunTask",
    );
}

#[tokio::test]
async fn purge_drops_older_tasks_and_sets_purge_time() {
    let h = Harness::new();
    h.create_queue(Q).await;
    for i in 0..3 {
        h.ok(
            "POST",
            &format!("/v2/{Q}/tasks"),
            Some(&format!(
                r#"{{"task":{{"name":"{Q}/tasks/old{i}","httpRequest":{{"url":"http://x/"}}}}}}"#
            )),
        )
        .await;
    }
    h.clock.advance(SECOND);
    let q = h.ok("POST", &format!("/v2/{Q}:purge"), Some("{}")).await;
    assert_eq!(
        q["purgeTime"],
        stratus_types::time::format_rfc3339(h.clock_now())
    );
    h.clock.advance(SECOND);
    h.ok(
        "POST",
        &format!("/v2/{Q}/tasks"),
        Some(r#"{"task":{"httpRequest":{"url":"http://x/"}}}"#),
    )
    .await;
    let v = h.ok("GET", &format!("/v2/{Q}/tasks"), None).await;
    assert_eq!(v["tasks"].as_array().unwrap().len(), 1);
    assert_error(
        &h.call("GET", &format!("/v2/{Q}/tasks/old0"), None).await,
        404,
        "NOT_FOUND",
        "existed recently",
    );
}

#[tokio::test]
async fn queue_name_reuse_window_is_configurable() {
    let mut cfg = stratus_api::ServiceConfig::default();
    cfg.windows.queue_reuse_block = 0;
    cfg.windows.tombstone_ttl = 0;
    let h = Harness::with_config(cfg);
    h.create_queue(Q).await;
    let t = h
        .ok(
            "POST",
            &format!("/v2/{Q}/tasks"),
            Some(&format!(
                r#"{{"task":{{"name":"{Q}/tasks/a","httpRequest":{{"url":"http://x/"}}}}}}"#
            )),
        )
        .await;
    h.ok(
        "DELETE",
        &format!("/v2/{}", t["name"].as_str().unwrap()),
        None,
    )
    .await;
    h.ok(
        "POST",
        &format!("/v2/{Q}/tasks"),
        Some(&format!(
            r#"{{"task":{{"name":"{Q}/tasks/a","httpRequest":{{"url":"http://x/"}}}}}}"#
        )),
    )
    .await;
    h.ok("DELETE", &format!("/v2/{Q}"), None).await;
    h.create_queue(Q).await;
    // The recreated queue is empty.
    assert_eq!(
        h.ok("GET", &format!("/v2/{Q}/tasks"), None).await,
        json!({})
    );
}

#[tokio::test]
async fn batch_create_and_delete_return_done_operations() {
    let h = Harness::new();
    h.create_queue(Q).await;
    let reqs: Vec<Value> = (0..3)
        .map(|i| json!({"parent": Q, "task": {"name": format!("{Q}/tasks/b{i}"), "httpRequest": {"url": "http://x/"}}}))
        .collect();
    let op = h
        .ok(
            "POST",
            &format!("/v2/{Q}/tasks:batchCreate"),
            Some(&json!({"requests": reqs}).to_string()),
        )
        .await;
    assert_eq!(op["done"], true);
    assert_eq!(
        op["metadata"]["@type"],
        "type.googleapis.com/google.cloud.tasks.v2.BatchCreateTasksMetadata"
    );
    assert_eq!(op["metadata"]["state"], "SUCCEEDED");
    assert_eq!(
        op["response"]["@type"],
        "type.googleapis.com/google.cloud.tasks.v2.BatchCreateTasksResponse"
    );
    assert_eq!(op["response"]["tasks"].as_array().unwrap().len(), 3);
    let got = h
        .ok(
            "GET",
            &format!("/v2/{}", op["name"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(got, op);
    // Duplicates land in failedRequests.
    let reqs = json!({"requests": [
        {"task": {"name": format!("{Q}/tasks/b0"), "httpRequest": {"url": "http://x/"}}},
        {"task": {"name": format!("{Q}/tasks/b9"), "httpRequest": {"url": "http://x/"}}}]});
    let op = h
        .ok(
            "POST",
            &format!("/v2/{Q}/tasks:batchCreate?%24alt=json%3Benum-encoding%3Dint"),
            Some(&reqs.to_string()),
        )
        .await;
    assert_eq!(op["metadata"]["state"], 5);
    assert_eq!(op["metadata"]["failedRequests"]["0"]["code"], 6);
    assert_eq!(op["response"]["tasks"].as_array().unwrap().len(), 1);
    // Limits.
    let many: Vec<Value> = (0..101)
        .map(|_| json!({"task": {"httpRequest": {"url": "http://x/"}}}))
        .collect();
    assert_error(
        &h.call(
            "POST",
            &format!("/v2/{Q}/tasks:batchCreate"),
            Some(&json!({"requests": many}).to_string()),
        )
        .await,
        400,
        "INVALID_ARGUMENT",
        "limit is 100",
    );
    // BatchDelete: one missing.
    let del = json!({"names": [format!("{Q}/tasks/b1"), format!("{Q}/tasks/missing")], "requestId": "r1"});
    let op = h
        .ok(
            "POST",
            &format!("/v2/{Q}/tasks:batchDelete"),
            Some(&del.to_string()),
        )
        .await;
    assert_eq!(op["metadata"]["state"], "PARTIALLY_SUCCEEDED");
    assert_eq!(op["metadata"]["failedRequests"]["1"]["code"], 5);
    // The same request_id replays the first answer.
    let op2 = h
        .ok(
            "POST",
            &format!("/v2/{Q}/tasks:batchDelete"),
            Some(&del.to_string()),
        )
        .await;
    assert_eq!(op2["name"], op["name"]);
    // All failing: FAILED with an ABORTED error.
    let op = h
        .ok(
            "POST",
            &format!("/v2/{Q}/tasks:batchDelete"),
            Some(&json!({"names": [format!("{Q}/tasks/zz")]}).to_string()),
        )
        .await;
    assert_eq!(op["metadata"]["state"], "FAILED");
    assert_eq!(op["error"]["code"], 10);
    assert_error(
        &h.call("GET", &format!("/v2/{LOC}/operations/nope"), None)
            .await,
        404,
        "NOT_FOUND",
        "not found",
    );
}

#[tokio::test]
async fn iam_locations_and_cmek() {
    let h = Harness::new();
    h.create_queue(Q).await;
    assert_eq!(
        h.ok("POST", &format!("/v2/{Q}:getIamPolicy"), Some("{}"))
            .await,
        json!({})
    );
    let policy = json!({"policy": {"version": 1, "bindings": [{"role": "roles/cloudtasks.enqueuer", "members": ["serviceAccount:sa@p.iam.gserviceaccount.com"]}]}});
    let set = h
        .ok(
            "POST",
            &format!("/v2/{Q}:setIamPolicy"),
            Some(&policy.to_string()),
        )
        .await;
    assert_eq!(set["bindings"], policy["policy"]["bindings"]);
    assert!(set["etag"].as_str().is_some());
    assert_eq!(
        h.ok("POST", &format!("/v2/{Q}:getIamPolicy"), Some("{}"))
            .await,
        set
    );
    let stale = json!({"policy": {"etag": "AAAA", "bindings": []}});
    assert_error(
        &h.call(
            "POST",
            &format!("/v2/{Q}:setIamPolicy"),
            Some(&stale.to_string()),
        )
        .await,
        409,
        "ABORTED",
        "etag",
    );
    let perms = json!({"permissions": ["cloudtasks.tasks.create", "cloudtasks.queues.get"]});
    assert_eq!(
        h.ok(
            "POST",
            &format!("/v2/{Q}:testIamPermissions"),
            Some(&perms.to_string())
        )
        .await,
        perms
    );
    assert_eq!(
        h.ok(
            "POST",
            &format!("/v2/{LOC}/queues/missing:testIamPermissions"),
            Some(&perms.to_string())
        )
        .await,
        json!({})
    );
    assert_error(
        &h.call(
            "POST",
            &format!("/v2/{LOC}/queues/missing:getIamPolicy"),
            Some("{}"),
        )
        .await,
        404,
        "NOT_FOUND",
        "Queue does not exist",
    );

    let locs = h.ok("GET", "/v2/projects/p/locations", None).await;
    assert_eq!(locs["locations"][0]["name"], "projects/p/locations/local");
    assert_eq!(locs["locations"][0]["locationId"], "local");
    assert_eq!(
        h.ok("GET", &format!("/v2/{LOC}"), None).await["locationId"],
        "l"
    );

    assert_eq!(
        h.ok("GET", &format!("/v2/{LOC}/cmekConfig"), None).await,
        json!({"name": format!("{LOC}/cmekConfig")})
    );
    let key = "projects/p/locations/l/keyRings/r/cryptoKeys/k";
    let v = h
        .ok(
            "PATCH",
            &format!("/v2/{LOC}/cmekConfig?updateMask=kmsKey"),
            Some(&json!({"kmsKey": key}).to_string()),
        )
        .await;
    assert_eq!(v["kmsKey"], key);
    assert_eq!(
        h.ok("GET", &format!("/v2/{LOC}/cmekConfig"), None).await["kmsKey"],
        key
    );
}

trait ClockNow {
    fn clock_now(&self) -> i64;
    fn clock_now_secs(&self) -> i64;
}

impl ClockNow for Harness {
    fn clock_now(&self) -> i64 {
        use stratus_types::time::Clock;
        self.clock.now()
    }
    fn clock_now_secs(&self) -> i64 {
        self.clock_now() / SECOND
    }
}
