//! CreateTask validation and defaults (cloud-tasks-api.md §3.2, §3.3, §5).
//!
//! [`prepare_task`] turns a client's Task into the stored form: name resolved (or generated),
//! schedule/create times set, dispatch deadline defaulted, stored headers as the real service
//! keeps them, output-only fields cleared; or an INVALID_ARGUMENT naming the field and rule.

use stratus_types::proto::prost::Message;
use stratus_types::proto::tasks::task::MessageType;
use stratus_types::proto::tasks::{
    AppEngineHttpRequest, HttpMethod, HttpRequest, Queue, Task, http_request,
};
use stratus_types::queue::{normalize_retry_config, validate_retry_config};
use stratus_types::target::TargetPolicy;
use stratus_types::time::{
    SECOND, duration_to_micros, micros_to_duration, micros_to_ts, ts_to_micros,
};
use stratus_types::{Micros, QueuePath, Status, TaskPath, messages};

use crate::ServiceConfig;

/// User-Agent stored and sent for HTTP targets.
pub const HTTP_USER_AGENT: &str = "Google-Cloud-Tasks";
/// User-Agent stored for App Engine targets.
pub const APP_ENGINE_USER_AGENT: &str = "AppEngine-Google; (+http://code.google.com/appengine)";
/// Longest URL or relative URI.
pub const MAX_URL_LEN: usize = 2083;
/// Total size allowed for a task's headers (keys and values).
pub const MAX_HEADER_BYTES: usize = 80 * 1024;
/// Default HTTP dispatch deadline.
pub const DEFAULT_DEADLINE: Micros = 600 * SECOND;
/// Shortest dispatch deadline.
pub const MIN_DEADLINE: Micros = 15 * SECOND;
/// Longest HTTP dispatch deadline.
pub const MAX_HTTP_DEADLINE: Micros = 1800 * SECOND;
/// Longest App Engine dispatch deadline.
pub const MAX_APP_ENGINE_DEADLINE: Micros = 86_415 * SECOND;

/// Validates and completes a task for `parent`; an unnamed task gets the ID `new_id` gives.
pub fn prepare_task(
    task: Option<Task>,
    parent: &QueuePath,
    now: Micros,
    cfg: &ServiceConfig,
    new_id: impl FnOnce() -> u64,
) -> Result<Task, Status> {
    let mut task = task.ok_or_else(|| super::required("task"))?;
    // Name: given (must be under parent) or generated.
    if task.name.is_empty() {
        task.name = parent.task(&new_id().to_string()).to_string();
    } else {
        let path = TaskPath::parse(&task.name)?;
        if path.queue != *parent {
            return Err(Status::invalid(messages::queue_mismatch(
                &parent.to_string(),
                &path.queue.to_string(),
            )));
        }
    }
    // Output-only fields are ignored on input.
    task.create_time = Some(micros_to_ts(now - now.rem_euclid(SECOND)));
    task.dispatch_count = 0;
    task.response_count = 0;
    task.first_attempt = None;
    task.last_attempt = None;
    task.view = 0;

    let schedule = match &task.schedule_time {
        Some(ts) => ts_to_micros(ts).max(now),
        None => now,
    };
    if schedule > now + cfg.max_schedule_ahead {
        return Err(Status::invalid(format!(
            "task.schedule_time must be at most {} days in the future; got {}.",
            cfg.max_schedule_ahead / (24 * 3600 * SECOND),
            stratus_types::time::format_rfc3339(schedule)
        )));
    }
    task.schedule_time = Some(micros_to_ts(schedule));

    let deadline = task
        .dispatch_deadline
        .as_ref()
        .map(duration_to_micros)
        .unwrap_or(0);
    let deadline = deadline - deadline.rem_euclid(1000); // ms precision
    match task.message_type.as_mut() {
        Some(MessageType::HttpRequest(req)) => {
            prepare_http(req)?;
            check_target(
                &req.url,
                &parent.location.project,
                &cfg.targets,
                "task.http_request.url",
            )?;
            let d = if deadline == 0 {
                DEFAULT_DEADLINE
            } else {
                deadline
            };
            check_deadline(d, MAX_HTTP_DEADLINE)?;
            task.dispatch_deadline = Some(micros_to_duration(d));
        }
        Some(MessageType::AppEngineHttpRequest(req)) => {
            prepare_app_engine(req)?;
            if deadline == 0 {
                task.dispatch_deadline = None;
            } else {
                check_deadline(deadline, MAX_APP_ENGINE_DEADLINE)?;
                task.dispatch_deadline = Some(micros_to_duration(deadline));
            }
        }
        None => {
            return Err(Status::invalid(
                "task.http_request or task.app_engine_http_request is required (exactly one).",
            ));
        }
    }
    if let Some(rc) = &task.retry_config {
        validate_retry_config(rc, "task.retry_config")?;
        task.retry_config = Some(normalize_retry_config(Some(rc)));
    }
    let size = task.encoded_len();
    if size > cfg.max_task_bytes {
        return Err(Status::invalid(format!(
            "Task size is {size} bytes, larger than the maximum task size of {} bytes.",
            cfg.max_task_bytes
        )));
    }
    Ok(task)
}

/// Checks the host of `url` against the outbound policy for `project` (docs/outbound.md): an
/// IP literal in a denied range, or a host outside the project's allow-list, is an
/// INVALID_ARGUMENT naming `field`. The host is taken as the dispatcher will see it (the
/// WHATWG URL parser, which turns `http://2852039166/` into `169.254.169.254`). Host names
/// are resolved only at dispatch, where every address connected to is checked; a URL that
/// does not parse is left to fail at dispatch, as the real service accepts it.
pub fn check_target(
    url: &str,
    project: &str,
    targets: &TargetPolicy,
    field: &str,
) -> Result<(), Status> {
    let Ok(parsed) = url::Url::parse(url) else {
        return Ok(());
    };
    let checked = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => targets.check_ip(project, ip.into()),
        Some(url::Host::Ipv6(ip)) => targets.check_ip(project, ip.into()),
        Some(url::Host::Domain(name)) => targets.check_host(project, name),
        None => Ok(()),
    };
    checked.map_err(|r| Status::invalid(format!("{field} is refused: {r}.")))
}

/// Checks a queue's `http_target.uri_override.host` against the outbound policy for the
/// queue's project (see [`check_target`]).
pub fn check_queue_target(
    queue: &Queue,
    project: &str,
    targets: &TargetPolicy,
) -> Result<(), Status> {
    let host = queue
        .http_target
        .as_ref()
        .and_then(|t| t.uri_override.as_ref())
        .and_then(|u| u.host.as_deref())
        .filter(|h| !h.is_empty());
    match host {
        Some(h) => check_target(
            &format!("http://{h}/"),
            project,
            targets,
            "queue.http_target.uri_override.host",
        ),
        None => Ok(()),
    }
}

fn check_deadline(d: Micros, max: Micros) -> Result<(), Status> {
    if !(MIN_DEADLINE..=max).contains(&d) {
        return Err(Status::invalid(format!(
            "task.dispatch_deadline must be between {}s and {}s; got {}.",
            MIN_DEADLINE / SECOND,
            max / SECOND,
            fmt_secs(d)
        )));
    }
    Ok(())
}

fn fmt_secs(us: Micros) -> String {
    if us % SECOND == 0 {
        format!("{}s", us / SECOND)
    } else {
        format!("{:.3}s", us as f64 / SECOND as f64)
    }
}

fn method_name(m: i32) -> &'static str {
    HttpMethod::try_from(m)
        .map(|m| m.as_str_name())
        .unwrap_or("UNKNOWN")
}

fn check_method(m: &mut i32, field: &str) -> Result<(), Status> {
    if *m == HttpMethod::Unspecified as i32 {
        *m = HttpMethod::Post as i32;
    }
    if HttpMethod::try_from(*m).is_err() {
        return Err(Status::invalid(format!(
            "{field} has an unknown value {m}."
        )));
    }
    Ok(())
}

fn check_headers(
    headers: &std::collections::BTreeMap<String, String>,
    field: &str,
) -> Result<(), Status> {
    let total: usize = headers.iter().map(|(k, v)| k.len() + v.len()).sum();
    if total > MAX_HEADER_BYTES {
        return Err(Status::invalid(format!(
            "{field} total size is {total} bytes; the limit is {MAX_HEADER_BYTES} bytes."
        )));
    }
    for (k, v) in headers {
        if k.is_empty() || !k.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
            return Err(Status::invalid(format!(
                "{field} has an invalid header name \"{k}\"."
            )));
        }
        // A line break or NUL would end the header on the wire (header injection at dispatch).
        if v.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
            return Err(Status::invalid(format!(
                "{field}[\"{k}\"] must not contain line breaks or NUL characters."
            )));
        }
    }
    Ok(())
}

/// Sets `key` case-insensitively: removes other spellings, stores `key` as given.
fn set_header(headers: &mut std::collections::BTreeMap<String, String>, key: &str, value: String) {
    headers.retain(|k, _| !k.eq_ignore_ascii_case(key));
    headers.insert(key.to_string(), value);
}

fn prepare_http(req: &mut HttpRequest) -> Result<(), Status> {
    if req.url.is_empty() {
        return Err(Status::invalid(messages::URL_REQUIRED));
    }
    let lower = req.url.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return Err(Status::invalid(messages::URL_SCHEME));
    }
    if req.url.len() > MAX_URL_LEN {
        return Err(Status::invalid(format!(
            "task.http_request.url is {} characters long; the limit is {MAX_URL_LEN}.",
            req.url.len()
        )));
    }
    check_method(&mut req.http_method, "task.http_request.http_method")?;
    if !req.body.is_empty()
        && ![HttpMethod::Post, HttpMethod::Put, HttpMethod::Patch]
            .iter()
            .any(|m| *m as i32 == req.http_method)
    {
        return Err(Status::invalid(format!(
            "task.http_request.body is allowed only for POST, PUT and PATCH; the method is {}.",
            method_name(req.http_method)
        )));
    }
    check_headers(&req.headers, "task.http_request.headers")?;
    match &req.authorization_header {
        Some(http_request::AuthorizationHeader::OidcToken(t))
            if t.service_account_email.is_empty() =>
        {
            return Err(Status::invalid(
                "task.http_request.oidc_token.service_account_email is required.",
            ));
        }
        Some(http_request::AuthorizationHeader::OauthToken(t))
            if t.service_account_email.is_empty() =>
        {
            return Err(Status::invalid(
                "task.http_request.oauth_token.service_account_email is required.",
            ));
        }
        _ => {}
    }
    set_header(&mut req.headers, "User-Agent", HTTP_USER_AGENT.to_string());
    Ok(())
}

fn prepare_app_engine(req: &mut AppEngineHttpRequest) -> Result<(), Status> {
    if req.relative_uri.is_empty() {
        req.relative_uri = "/".to_string();
    }
    if !req.relative_uri.starts_with('/') || req.relative_uri.contains(char::is_whitespace) {
        return Err(Status::invalid(
            "task.app_engine_http_request.relative_uri must start with \"/\" and contain no spaces.",
        ));
    }
    if req.relative_uri.len() > MAX_URL_LEN {
        return Err(Status::invalid(format!(
            "task.app_engine_http_request.relative_uri is longer than {MAX_URL_LEN} characters."
        )));
    }
    check_method(
        &mut req.http_method,
        "task.app_engine_http_request.http_method",
    )?;
    if !req.body.is_empty()
        && ![HttpMethod::Post, HttpMethod::Put]
            .iter()
            .any(|m| *m as i32 == req.http_method)
    {
        return Err(Status::invalid(format!(
            "task.app_engine_http_request.body is allowed only for POST and PUT; the method is {}.",
            method_name(req.http_method)
        )));
    }
    check_headers(&req.headers, "task.app_engine_http_request.headers")?;
    // App Engine reserves these; the real service does not let users set them.
    req.headers.retain(|k, _| {
        let l = k.to_ascii_lowercase();
        !(l == "host" || l.starts_with("x-google-") || l.starts_with("x-appengine-"))
    });
    set_header(
        &mut req.headers,
        "User-Agent",
        APP_ENGINE_USER_AGENT.to_string(),
    );
    set_header(
        &mut req.headers,
        "Content-Length",
        req.body.len().to_string(),
    );
    if !req.body.is_empty()
        && !req
            .headers
            .keys()
            .any(|k| k.eq_ignore_ascii_case("content-type"))
    {
        req.headers.insert(
            "Content-Type".to_string(),
            "application/octet-stream".to_string(),
        );
    }
    Ok(())
}

/// The task as returned for `view` (BASIC hides request bodies). `view` 0 means BASIC.
pub fn apply_view(mut task: Task, view: i32) -> Task {
    let view = if view == 2 { 2 } else { 1 };
    if view == 1 {
        match task.message_type.as_mut() {
            Some(MessageType::HttpRequest(r)) => r.body.clear(),
            Some(MessageType::AppEngineHttpRequest(r)) => r.body.clear(),
            None => {}
        }
    }
    task.view = view;
    task
}

/// Checks a response_view value (0, 1 or 2).
pub fn check_view(view: i32, field: &str) -> Result<(), Status> {
    if !(0..=2).contains(&view) {
        return Err(Status::invalid(format!(
            "{field} must be BASIC or FULL; got {view}."
        )));
    }
    Ok(())
}
