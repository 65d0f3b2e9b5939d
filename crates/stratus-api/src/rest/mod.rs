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
    let rpc = crate::metrics::rest_rpc(req.method(), req.uri().path());
    let (resp, code) = call(svc, req).await;
    crate::metrics::count_request("rest", rpc, code);
    resp
}

/// Answers one REST call, with the canonical code of the answer for the metrics.
async fn call(svc: Arc<Service>, req: Request) -> (Response, stratus_types::Code) {
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
    match routes::route(
        &svc,
        &caller,
        &parts.method,
        parts.uri.path(),
        &query,
        &bytes,
    )
    .await
    {
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
