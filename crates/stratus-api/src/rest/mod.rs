//! REST transport: HTTP/JSON transcoding of the Cloud Tasks v2 API under `/v2/`.
//!
//! One fallback handler reads the whole request (bounded), routes on method and path
//! ([`routes`]), decodes proto3 JSON leniently ([`json`]) and renders either the response
//! message or the error body `{"error":{code,message,status,details}}` ([`error`]).

mod error;
pub mod json;
mod routes;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::Service;
pub use error::error_response;

/// The API router for `service`: REST under `/v2/...`, `/stratus/v1/...` and `/healthz`, and
/// every gRPC call (by content-type, see [`crate::grpc`]) on the same port.
pub fn router(service: Arc<Service>) -> Router {
    Router::new()
        // POST reads and drops the body: the benchmarks' in-run ceiling for a trivial request.
        .route(
            "/healthz",
            get(|| async { "ok\n" }).post(|_: axum::body::Bytes| async { "ok\n" }),
        )
        .fallback(handle)
        .with_state(service)
}

async fn handle(State(svc): State<Arc<Service>>, req: Request) -> Response {
    if crate::grpc::is_grpc(req.headers()) {
        return crate::grpc::serve(svc, req).await;
    }
    // The path is read once: it names the call in the metrics and routes it.
    let target = routes::resolve(req.method(), req.uri().path());
    let rpc = match &target {
        Ok(t) if !t.empty_segment => t.rpc.name(),
        _ => crate::metrics::UNKNOWN_RPC,
    };
    let (resp, code) = call(svc, target, req).await;
    crate::metrics::count_request("rest", rpc, code);
    resp
}

/// Answers one REST call, with the canonical code of the answer for the metrics.
async fn call(
    svc: Arc<Service>,
    target: Result<routes::Target, stratus_types::Status>,
    req: Request,
) -> (Response, stratus_types::Code) {
    // Who is calling is settled before the body is read: a caller without a valid token costs
    // no more than its headers.
    let caller = match svc.auth().authenticate(req.headers()) {
        Ok(c) => c,
        Err(status) => return (auth_error_response(&status), status.code),
    };
    let (parts, body) = req.into_parts();
    let limit = svc.config().max_request_bytes;
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => {
            let status = stratus_types::Status::invalid(format!(
                "The request body is larger than the limit of {limit} bytes."
            ));
            return (error_response(&status), status.code);
        }
    };
    let query = json::Query::parse(parts.uri.query().unwrap_or(""));
    let int_enums = query.int_enums();
    let result = match target {
        Ok(target) => routes::call(&svc, &caller, target, &query, &bytes).await,
        Err(status) => Err(status),
    };
    match result {
        Ok(value) => (
            json_response(StatusCode::OK, value, int_enums),
            stratus_types::Code::Ok,
        ),
        Err(status) => (error_response(&status), status.code),
    }
}

/// The error body of a refused caller, with `WWW-Authenticate` on 401 (RFC 6750) and
/// `Retry-After` on 429.
fn auth_error_response(status: &stratus_types::Status) -> Response {
    let mut resp = error_response(status);
    let h = resp.headers_mut();
    match status.code {
        stratus_types::Code::Unauthenticated => {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"stratus\""),
            );
        }
        stratus_types::Code::ResourceExhausted => {
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        _ => {}
    }
    resp
}

pub(crate) fn json_response(
    code: StatusCode,
    mut value: serde_json::Value,
    int_enums: bool,
) -> Response {
    if int_enums {
        json::enums_to_int(&mut value, None);
    }
    let body = serde_json::to_vec(&value).unwrap_or_default();
    let mut resp = (code, Body::from(body)).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use axum::http::Method;

    use crate::metrics::UNKNOWN_RPC;

    /// The name a REST call is counted under in the metrics.
    fn rest_rpc(method: &Method, path: &str) -> &'static str {
        match super::routes::resolve(method, path) {
            Ok(t) if !t.empty_segment => t.rpc.name(),
            _ => UNKNOWN_RPC,
        }
    }

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
}
