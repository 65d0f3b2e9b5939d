//! `GET /metrics` (Prometheus text format) and the API's own counting: calls by transport, RPC
//! and canonical code, creates and duplicate names per queue, auth failures.
//!
//! RPC labels come from a fixed set ([`RPCS`]): a path that names no RPC counts as `unknown`,
//! so no request text ever becomes a label value. Series and their meaning: docs/metrics.md.

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::Method;
use stratus_types::{Code, QueuePath};

use crate::auth::{Auth, Permission};

/// The RPC label of a path that names no RPC.
pub const UNKNOWN_RPC: &str = "unknown";

/// Every RPC label value: the Cloud Tasks v2 methods, the mixins, and Stratus' own
/// `/stratus/v1/` endpoints.
pub const RPCS: [&str; 28] = [
    "ListQueues",
    "GetQueue",
    "CreateQueue",
    "UpdateQueue",
    "DeleteQueue",
    "PurgeQueue",
    "PauseQueue",
    "ResumeQueue",
    "GetIamPolicy",
    "SetIamPolicy",
    "TestIamPermissions",
    "ListTasks",
    "GetTask",
    "CreateTask",
    "DeleteTask",
    "RunTask",
    "BatchCreateTasks",
    "BatchDeleteTasks",
    "GetCmekConfig",
    "UpdateCmekConfig",
    "ListLocations",
    "GetLocation",
    "GetOperation",
    "ListFailedTasks",
    "GetTaskHistory",
    "RetryTask",
    "Metrics",
    UNKNOWN_RPC,
];

/// Counts one API call in the process's metrics.
pub fn count_request(transport: &'static str, rpc: &'static str, code: Code) {
    stratus_metrics::global().api_request(transport, rpc, code.name());
}

/// Counts committed creates and refused duplicates of `queue`.
pub fn count_creates(queue: &QueuePath, created: usize, duplicates: usize) {
    let m = stratus_metrics::global().queue(&queue.to_string());
    m.creates.add(created as u64);
    m.dedup_hits.add(duplicates as u64);
}

/// The RPC a gRPC path (`/<service>/<method>`) calls, from [`RPCS`].
pub fn grpc_rpc(path: &str) -> &'static str {
    let method = path.rsplit('/').next().unwrap_or("");
    let service_ok = path
        .strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .is_some_and(|(s, _)| crate::grpc::SERVICES.contains(&s));
    if !service_ok {
        return UNKNOWN_RPC;
    }
    RPCS.iter()
        .find(|r| {
            **r == method
                && !matches!(
                    **r,
                    "ListFailedTasks" | "GetTaskHistory" | "RetryTask" | "Metrics"
                )
        })
        .copied()
        .unwrap_or(UNKNOWN_RPC)
}

/// The RPC a REST call (method and path) calls, from [`RPCS`]; the same shapes the router
/// accepts.
pub fn rest_rpc(method: &Method, path: &str) -> &'static str {
    let (stratus, rest) = match path.strip_prefix("/stratus/v1/") {
        Some(r) => (true, r),
        None => match path.strip_prefix("/v2/") {
            Some(r) => (false, r),
            None => return UNKNOWN_RPC,
        },
    };
    let mut segs: Vec<&str> = rest.split('/').collect();
    let mut verb = "";
    if let Some(last) = segs.last_mut()
        && let Some((name, v)) = last.rsplit_once(':')
    {
        verb = v;
        *last = name;
    }
    let m = method;
    let rpc = match (stratus, segs.as_slice(), verb) {
        (true, ["projects", _, "locations", _, "queues", _, "failedTasks"], "")
            if m == Method::GET =>
        {
            "ListFailedTasks"
        }
        (true, ["projects", _, "locations", _, "queues", _, "tasks", _], "")
            if m == Method::GET =>
        {
            "GetTaskHistory"
        }
        (true, ["projects", _, "locations", _, "queues", _, "tasks", _], "retry")
            if m == Method::POST =>
        {
            "RetryTask"
        }
        (true, ..) => UNKNOWN_RPC,
        (false, ["projects", _, "locations"], "") if m == Method::GET => "ListLocations",
        (false, ["projects", _, "locations", _], "") if m == Method::GET => "GetLocation",
        (false, ["projects", _, "locations", _, "cmekConfig"], "") => match *m {
            Method::GET => "GetCmekConfig",
            Method::PATCH => "UpdateCmekConfig",
            _ => UNKNOWN_RPC,
        },
        (false, ["projects", _, "locations", _, "operations", _], "") if m == Method::GET => {
            "GetOperation"
        }
        (false, ["projects", _, "locations", _, "queues"], "") => match *m {
            Method::GET => "ListQueues",
            Method::POST => "CreateQueue",
            _ => UNKNOWN_RPC,
        },
        (false, ["projects", _, "locations", _, "queues", _], v) => match (v, m.clone()) {
            ("", Method::GET) => "GetQueue",
            ("", Method::DELETE) => "DeleteQueue",
            ("", Method::PATCH) => "UpdateQueue",
            ("purge", Method::POST) => "PurgeQueue",
            ("pause", Method::POST) => "PauseQueue",
            ("resume", Method::POST) => "ResumeQueue",
            ("getIamPolicy", Method::POST) => "GetIamPolicy",
            ("setIamPolicy", Method::POST) => "SetIamPolicy",
            ("testIamPermissions", Method::POST) => "TestIamPermissions",
            _ => UNKNOWN_RPC,
        },
        (false, ["projects", _, "locations", _, "queues", _, "tasks"], v) => match (v, m.clone()) {
            ("", Method::GET) => "ListTasks",
            ("", Method::POST) => "CreateTask",
            ("batchCreate", Method::POST) => "BatchCreateTasks",
            ("batchDelete", Method::POST) => "BatchDeleteTasks",
            _ => UNKNOWN_RPC,
        },
        (false, ["projects", _, "locations", _, "queues", _, "tasks", _], v) => {
            match (v, m.clone()) {
                ("", Method::GET) => "GetTask",
                ("", Method::DELETE) => "DeleteTask",
                ("run", Method::POST) => "RunTask",
                _ => UNKNOWN_RPC,
            }
        }
        _ => UNKNOWN_RPC,
    };
    // Segments in the "_" places must not be empty (`/v2/projects//locations`).
    if rpc != UNKNOWN_RPC && segs.iter().any(|s| s.is_empty()) {
        return UNKNOWN_RPC;
    }
    rpc
}

/// The router serving `GET /metrics`. With API tokens configured, a scrape must carry a
/// token of any role scoped to every project (`project = "*"`): queue names reveal every
/// tenant's projects and queues. Without tokens (loopback or `--insecure`), it is as open as
/// the API itself.
pub fn router(auth: Arc<Auth>) -> Router {
    Router::new().route(
        "/metrics",
        get(move |headers: HeaderMap| {
            let auth = auth.clone();
            async move { scrape(&auth, &headers) }
        }),
    )
}

fn scrape(auth: &Auth, headers: &HeaderMap) -> Response {
    if auth.required() {
        // `projects/*` is held only by a token scoped to every project; a refusal counts in
        // the auth failures like any API call's.
        let allowed = auth
            .authenticate(headers)
            .and_then(|caller| auth.check(&caller, Permission::QueuesList, "projects/*"));
        if let Err(status) = allowed {
            count_request("rest", "Metrics", status.code);
            let mut resp = crate::rest::error_response(&status);
            if status.code == Code::Unauthenticated {
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"stratus\""),
                );
            }
            return resp;
        }
    }
    let mut body = stratus_metrics::global().render();
    stratus_metrics::render_counter(
        &mut body,
        "stratus_api_auth_failures_total",
        "API calls refused by authentication or authorization (missing, unknown or revoked token, over budget, permission denied).",
        auth.failures(),
    );
    let mut resp = body.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_paths_name_their_rpc() {
        let q = "/v2/projects/p/locations/l/queues/q";
        assert_eq!(rest_rpc(&Method::POST, &format!("{q}/tasks")), "CreateTask");
        assert_eq!(
            rest_rpc(&Method::POST, &format!("{q}/tasks:batchCreate")),
            "BatchCreateTasks"
        );
        assert_eq!(
            rest_rpc(&Method::POST, &format!("{q}/tasks/t:run")),
            "RunTask"
        );
        assert_eq!(rest_rpc(&Method::POST, &format!("{q}:pause")), "PauseQueue");
        assert_eq!(rest_rpc(&Method::GET, q), "GetQueue");
        assert_eq!(
            rest_rpc(&Method::GET, "/v2/projects/p/locations"),
            "ListLocations"
        );
        assert_eq!(rest_rpc(&Method::PUT, q), UNKNOWN_RPC);
        assert_eq!(
            rest_rpc(&Method::GET, "/v2/projects//locations"),
            UNKNOWN_RPC
        );
        assert_eq!(rest_rpc(&Method::GET, "/elsewhere"), UNKNOWN_RPC);
        assert_eq!(
            rest_rpc(
                &Method::GET,
                "/stratus/v1/projects/p/locations/l/queues/q/failedTasks"
            ),
            "ListFailedTasks"
        );
    }

    #[test]
    fn grpc_paths_name_their_rpc() {
        assert_eq!(
            grpc_rpc("/google.cloud.tasks.v2.CloudTasks/CreateTask"),
            "CreateTask"
        );
        assert_eq!(
            grpc_rpc("/google.longrunning.Operations/GetOperation"),
            "GetOperation"
        );
        assert_eq!(
            grpc_rpc("/google.cloud.tasks.v2.CloudTasks/Nope"),
            UNKNOWN_RPC
        );
        assert_eq!(grpc_rpc("/other.Service/CreateTask"), UNKNOWN_RPC);
        assert_eq!(
            grpc_rpc("/google.cloud.tasks.v2.CloudTasks/RetryTask"),
            UNKNOWN_RPC
        );
    }
}
