use std::collections::BTreeMap;

use serde_json::Value;
use stratus_types::proto::tasks::http_target::{Header, HeaderOverride};
use stratus_types::proto::tasks::{
    HttpRequest, HttpTarget, OidcToken, PathOverride, QueryOverride, http_request,
};

use super::*;

const RECORDED: &str = include_str!("../../../../testdata/conformance/dispatch-headers.json");

fn task(method: HttpMethod, url: &str, headers: &[(&str, &str)]) -> Task {
    Task {
        name: "projects/p/locations/l/queues/q/tasks/t1".into(),
        message_type: Some(MessageType::HttpRequest(HttpRequest {
            url: url.into(),
            http_method: method as i32,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: b"hello".to_vec(),
            authorization_header: None,
        })),
        ..Default::default()
    }
}

fn queue(target: Option<HttpTarget>) -> Queue {
    Queue {
        name: "projects/p/locations/l/queues/q".into(),
        http_target: target,
        ..Default::default()
    }
}

fn lower(headers: &[(String, String)]) -> BTreeMap<String, String> {
    headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect()
}

#[test]
fn service_headers_match_the_recorded_attempts() {
    let cases: Vec<Value> = serde_json::from_str(RECORDED).unwrap();
    let http = cases.iter().find(|c| c["requestType"] == "http").unwrap();
    let eta = 1_900_000_000_123_456;
    let t = task(HttpMethod::Post, "http://127.0.0.1:9/x", &[]);
    let q = queue(None);
    let mut previous: Option<u16> = None;
    let mut executions = 0;
    for (i, attempt) in http["attempts"].as_array().unwrap().iter().enumerate() {
        let info = AttemptInfo {
            retry_count: i32::try_from(i).unwrap(),
            execution_count: executions,
            previous_response: previous,
            eta,
        };
        let got = lower(&build(&t, &q, &info).unwrap().headers);
        let want: BTreeMap<String, String> = attempt["headers"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                let v = v
                    .as_str()
                    .unwrap()
                    .replace("{queue}", "q")
                    .replace("{task}", "t1")
                    .replace("{eta}", &eta_header(eta));
                (k.to_ascii_lowercase(), v)
            })
            .collect();
        assert_eq!(got, want, "attempt {i}");
        let status = u16::try_from(attempt["status"].as_u64().unwrap()).unwrap();
        if counts_as_execution(Some(status)) {
            executions += 1;
        }
        previous = Some(status);
    }
}

#[test]
fn execution_count_follows_the_recorded_rule() {
    // Recorded: responses 503, 404, 429, 500, 302, 200 carried 0, 0, 1, 2, 2, 3.
    let mut n = 0;
    let mut seen = Vec::new();
    for s in [503, 404, 429, 500, 302, 200] {
        seen.push(n);
        if counts_as_execution(Some(s)) {
            n += 1;
        }
    }
    assert_eq!(seen, [0, 0, 1, 2, 2, 3]);
    assert!(!counts_as_execution(None));
}

#[test]
fn layers_reserved_headers_and_body_rules() {
    let t = task(
        HttpMethod::Put,
        "https://example.com/a?b=c",
        &[
            ("content-type", "application/json"),
            ("Host", "evil"),
            ("X-CloudTasks-TaskName", "spoof"),
            ("user-agent", "me"),
            ("X-Keep", "task"),
        ],
    );
    let target = HttpTarget {
        header_overrides: vec![HeaderOverride {
            header: Some(Header {
                key: "x-keep".into(),
                value: "queue".into(),
            }),
        }],
        ..Default::default()
    };
    let info = AttemptInfo {
        retry_count: 0,
        execution_count: 0,
        previous_response: None,
        eta: 0,
    };
    let r = build(&t, &queue(Some(target)), &info).unwrap();
    assert_eq!(r.method, http::Method::PUT);
    assert_eq!(r.body, b"hello");
    let h = lower(&r.headers);
    assert_eq!(h["x-keep"], "queue");
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(h["user-agent"], USER_AGENT);
    assert_eq!(h["x-cloudtasks-taskname"], "t1");
    assert!(!h.contains_key("host"));
    assert!(!h.contains_key("x-cloudtasks-taskpreviousresponse"));
    // A queue-level GET drops the body.
    let get = HttpTarget {
        http_method: HttpMethod::Get as i32,
        ..Default::default()
    };
    let r = build(&t, &queue(Some(get)), &info).unwrap();
    assert_eq!(r.method, http::Method::GET);
    assert!(r.body.is_empty());
}

#[test]
fn uri_override_modes() {
    let always = UriOverride {
        scheme: Some(Scheme::Http as i32),
        host: Some("internal.example".into()),
        port: Some(8080),
        path_override: Some(PathOverride {
            path: "/v2/hook".into(),
        }),
        query_override: Some(QueryOverride {
            query_params: "x=1".into(),
        }),
        uri_override_enforce_mode: UriOverrideEnforceMode::Always as i32,
    };
    assert_eq!(
        apply_uri_override("https://example.com:9443/a?b=c", &always).unwrap(),
        "http://internal.example:8080/v2/hook?x=1"
    );
    let clear = UriOverride {
        port: Some(0),
        path_override: Some(PathOverride {
            path: String::new(),
        }),
        query_override: Some(QueryOverride {
            query_params: String::new(),
        }),
        ..Default::default()
    };
    assert_eq!(
        apply_uri_override("https://example.com:9443/a?b=c", &clear).unwrap(),
        "https://example.com/"
    );
    let if_missing = UriOverride {
        uri_override_enforce_mode: UriOverrideEnforceMode::IfNotExists as i32,
        ..always
    };
    assert_eq!(
        apply_uri_override("https://example.com/a", &if_missing).unwrap(),
        "https://example.com:8080/a?x=1"
    );
    assert!(matches!(
        apply_uri_override("http://exa mple.com/%zz", &clear),
        Err(BuildError::InvalidUrl { .. })
    ));
}

#[test]
fn authorization_from_task_or_queue() {
    let mut t = task(
        HttpMethod::Post,
        "https://example.com/hook",
        &[("Authorization", "Bearer user")],
    );
    if let Some(MessageType::HttpRequest(r)) = t.message_type.as_mut() {
        r.authorization_header = Some(http_request::AuthorizationHeader::OidcToken(OidcToken {
            service_account_email: "sa@p.iam.gserviceaccount.com".into(),
            audience: String::new(),
        }));
    }
    let info = AttemptInfo {
        retry_count: 0,
        execution_count: 0,
        previous_response: None,
        eta: 0,
    };
    let r = build(&t, &queue(None), &info).unwrap();
    assert_eq!(
        r.auth,
        Some(Auth::Oidc {
            service_account_email: "sa@p.iam.gserviceaccount.com".into(),
            audience: "https://example.com/hook".into()
        })
    );
    assert!(
        !lower(&r.headers).contains_key("authorization"),
        "the user's Authorization is replaced"
    );
    let target = HttpTarget {
        authorization_header: Some(QueueAuth::OidcToken(OidcToken {
            service_account_email: "q@p".into(),
            audience: "aud".into(),
        })),
        ..Default::default()
    };
    let r = build(&t, &queue(Some(target)), &info).unwrap();
    assert_eq!(
        r.auth,
        Some(Auth::Oidc {
            service_account_email: "q@p".into(),
            audience: "aud".into()
        })
    );
}

#[test]
fn eta_has_six_decimals() {
    assert_eq!(eta_header(1_900_000_000_000_001), "1900000000.000001");
    assert_eq!(eta_header(5), "0.000005");
}
