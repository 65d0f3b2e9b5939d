//! `GET /metrics` (Prometheus text format) and the API's own counting: calls by transport, RPC
//! and canonical code, creates and duplicate names per queue, auth failures.
//!
//! RPC labels come from a fixed set (the REST router's RPCs, [`RPCS`] for gRPC): a path that
//! names no RPC counts as `unknown`, so no request text ever becomes a label value. Series and their meaning: docs/metrics.md.

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
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
