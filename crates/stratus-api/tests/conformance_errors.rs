//! Every recorded real-service error (testdata/conformance/realcloud-errors.json, except
//! invalid-parent) is reproduced over REST: same canonical status, same message text, and the
//! same Help details where recorded.

mod common;

use common::{Harness, Q};
use serde_json::Value;

const ERRORS: &str = include_str!("../../../testdata/conformance/realcloud-errors.json");

fn code_name(c: &str) -> &'static str {
    match c {
        "AlreadyExists" => "ALREADY_EXISTS",
        "InvalidArgument" => "INVALID_ARGUMENT",
        "PermissionDenied" => "PERMISSION_DENIED",
        "FailedPrecondition" => "FAILED_PRECONDITION",
        "NotFound" => "NOT_FOUND",
        other => panic!("unmapped code {other}"),
    }
}

fn http(c: &str) -> u16 {
    match c {
        "ALREADY_EXISTS" => 409,
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" => 400,
        "NOT_FOUND" => 404,
        "PERMISSION_DENIED" => 403,
        _ => 500,
    }
}

const TASK: &str = r#"{"name":"projects/p/locations/l/queues/q/tasks/t1","httpRequest":{"url":"http://127.0.0.1:9/x"}}"#;
const T1: &str = "projects/p/locations/l/queues/q/tasks/t1";

/// Drives the scenario that provokes the named error and returns the answer.
async fn provoke(h: &Harness, name: &str) -> (u16, Value) {
    let loc = "/v2/projects/p/locations/l/queues";
    match name {
        "queue/create/already-exists" => {
            h.create_queue(Q).await;
            h.call("POST", loc, Some(&format!(r#"{{"name":"{Q}"}}"#)))
                .await
        }
        "queue/create/invalid-name" => {
            h.call(
                "POST",
                loc,
                Some(r#"{"name":"projects/p/locations/l/queues/not a valid name"}"#),
            )
            .await
        }
        "queue/create/recently-deleted" => {
            h.create_queue(Q).await;
            h.ok("DELETE", &format!("/v2/{Q}"), None).await;
            h.call("POST", loc, Some(&format!(r#"{{"name":"{Q}"}}"#)))
                .await
        }
        "queue/delete/not-found" => h.call("DELETE", &format!("/v2/{Q}"), None).await,
        "queue/get/not-found" => h.call("GET", &format!("/v2/{Q}"), None).await,
        "queue/get/recently-deleted" => {
            h.create_queue(Q).await;
            h.ok("DELETE", &format!("/v2/{Q}"), None).await;
            h.call("GET", &format!("/v2/{Q}"), None).await
        }
        "queue/pause/not-found" => h.call("POST", &format!("/v2/{Q}:pause"), Some("{}")).await,
        "queue/purge/not-found" => h.call("POST", &format!("/v2/{Q}:purge"), Some("{}")).await,
        "queue/resume/not-found" => h.call("POST", &format!("/v2/{Q}:resume"), Some("{}")).await,
        "task/create/already-exists" => {
            h.create_queue(Q).await;
            assert_eq!(h.create_task(Q, TASK).await.0, 200);
            h.create_task(Q, TASK).await
        }
        "task/create/invalid-name" => {
            h.create_queue(Q).await;
            h.create_task(
                Q,
                &format!(
                    r#"{{"name":"{Q}/tasks/not a valid id","httpRequest":{{"url":"http://x/"}}}}"#
                ),
            )
            .await
        }
        "task/create/queue-mismatch" => {
            h.create_queue(Q).await;
            h.create_task(
                Q,
                &format!(r#"{{"name":"{Q}-other/tasks/t1","httpRequest":{{"url":"http://x/"}}}}"#),
            )
            .await
        }
        "task/create/queue-not-found" => h.create_task(Q, TASK).await,
        "task/create/queue-recently-deleted" => {
            h.create_queue(Q).await;
            h.ok("DELETE", &format!("/v2/{Q}"), None).await;
            h.create_task(Q, TASK).await
        }
        "task/create/recently-existed" => {
            h.create_queue(Q).await;
            assert_eq!(h.create_task(Q, TASK).await.0, 200);
            h.ok("DELETE", &format!("/v2/{T1}"), None).await;
            h.create_task(Q, TASK).await
        }
        "task/delete/not-found" => {
            h.create_queue(Q).await;
            h.call("DELETE", &format!("/v2/{T1}"), None).await
        }
        "task/get/not-found" => {
            h.create_queue(Q).await;
            h.call("GET", &format!("/v2/{T1}"), None).await
        }
        "task/get/recently-deleted" => {
            h.create_queue(Q).await;
            assert_eq!(h.create_task(Q, TASK).await.0, 200);
            h.ok("DELETE", &format!("/v2/{T1}"), None).await;
            h.call("GET", &format!("/v2/{T1}"), None).await
        }
        "task/run/not-found" => {
            h.create_queue(Q).await;
            h.call("POST", &format!("/v2/{T1}:run"), Some("{}")).await
        }
        other => panic!("no scenario for {other}"),
    }
}

#[tokio::test]
async fn every_recorded_error_is_reproduced() {
    let cases: Vec<Value> = serde_json::from_str(ERRORS).unwrap();
    let mut checked = 0;
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        if name == "queue/create/invalid-parent" {
            continue; // the real service resolves parents through IAM; not applicable here
        }
        let h = Harness::new();
        let (code, body) = provoke(&h, name).await;
        let status = code_name(case["code"].as_str().unwrap());
        let message = case["template"]
            .as_str()
            .unwrap()
            .replace("{queue_path}", Q);
        assert_eq!(code, http(status), "{name}: {body}");
        assert_eq!(body["error"]["status"], status, "{name}: {body}");
        assert_eq!(body["error"]["code"], http(status), "{name}: {body}");
        assert_eq!(body["error"]["message"], message.as_str(), "{name}");
        if let Some(details) = case.get("details") {
            let d = &details[0];
            let got = &body["error"]["details"][0];
            assert_eq!(
                got["@type"], "type.googleapis.com/google.rpc.Help",
                "{name}: {body}"
            );
            assert_eq!(got["links"], d["links"], "{name}: {body}");
        }
        checked += 1;
    }
    assert_eq!(checked, cases.len() - 1);
}
