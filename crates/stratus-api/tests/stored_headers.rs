//! Stored headers follow testdata/conformance/stored-headers.json in the CreateTask (FULL),
//! GetTask (BASIC) and GetTask (FULL) answers.

mod common;

use common::{Harness, Q};
use serde_json::{Value, json};

const HEADERS: &str = include_str!("../../../testdata/conformance/stored-headers.json");

#[tokio::test]
async fn stored_headers_match_the_real_service() {
    let cases: Vec<Value> = serde_json::from_str(HEADERS).unwrap();
    let h = Harness::new();
    h.create_queue(Q).await;
    for (i, case) in cases.iter().enumerate() {
        let name = case["name"].as_str().unwrap();
        let task_name = format!("{Q}/tasks/h{i}");
        let body = "eyJoZWxsbyI6IndvcmxkIn0="; // {"hello":"world"}, 17 bytes
        let (key, target) = if case["requestType"] == "http" {
            (
                "httpRequest",
                json!({"url": "https://example.com/x", "headers": case["sent"], "body": body}),
            )
        } else {
            (
                "appEngineHttpRequest",
                json!({"relativeUri": "/x", "headers": case["sent"], "body": body}),
            )
        };
        let req = json!({"task": {"name": task_name, key: target}, "responseView": "FULL"});
        let created = h
            .ok("POST", &format!("/v2/{Q}/tasks"), Some(&req.to_string()))
            .await;
        let basic = h.ok("GET", &format!("/v2/{task_name}"), None).await;
        let full = h
            .ok("GET", &format!("/v2/{task_name}?responseView=FULL"), None)
            .await;
        for (view, v) in [
            ("createFull", &created),
            ("getBasic", &basic),
            ("getFull", &full),
        ] {
            assert_eq!(v[key]["headers"], case["stored"], "{name} {view}: {v}");
        }
        assert_eq!(basic["view"], "BASIC");
        assert!(
            basic[key].get("body").is_none(),
            "BASIC hides the body: {basic}"
        );
        assert_eq!(full[key]["body"], body);
    }
}
