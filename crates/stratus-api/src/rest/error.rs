//! The REST error body: `{"error":{"code":<http>,"message":…,"status":"<NAME>","details":[…]}}`.
//!
//! `status` is always present: the Rust client derives the error code from it alone.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;
use stratus_types::Status;

/// The JSON of a `google.rpc.Help` detail.
pub(crate) fn help_details(status: &Status) -> Vec<serde_json::Value> {
    if status.help.is_empty() {
        return Vec::new();
    }
    let links: Vec<_> = status
        .help
        .iter()
        .map(|l| json!({"description": l.description, "url": l.url}))
        .collect();
    vec![json!({"@type": "type.googleapis.com/google.rpc.Help", "links": links})]
}

/// Renders an error as the Cloud Tasks REST error response.
pub fn error_response(status: &Status) -> Response {
    let http = status.code.http_status();
    let mut err = json!({
        "code": http,
        "message": status.message,
        "status": status.code.name(),
    });
    let details = help_details(status);
    if !details.is_empty() {
        err["details"] = serde_json::Value::Array(details);
    }
    let code = StatusCode::from_u16(http).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    super::json_response(code, json!({ "error": err }), false)
}
