//! The HTTP request one attempt sends to an HTTP target (cloud-tasks-api.md §6.5).
//!
//! [`build`] is pure: from the stored task, its queue and the attempt's counters it derives
//! the method (the queue's `http_target.http_method` wins), the URL (the queue's `uri_override`
//! applied per its enforce mode), the headers in layers — the task's, then the queue's
//! `header_overrides`, then the service headers, each later layer replacing earlier ones
//! case-insensitively, with reserved headers dropped — and the body (only for POST, PUT,
//! PATCH). Which token to put in `Authorization` is returned as [`Auth`]; minting it is the
//! caller's job.

use stratus_types::Micros;
use stratus_types::proto::tasks::http_request::AuthorizationHeader as TaskAuth;
use stratus_types::proto::tasks::http_target::AuthorizationHeader as QueueAuth;
use stratus_types::proto::tasks::task::MessageType;
use stratus_types::proto::tasks::uri_override::{Scheme, UriOverrideEnforceMode};
use stratus_types::proto::tasks::{HttpMethod, Queue, Task, UriOverride};
use stratus_types::time::SECOND;

/// User-Agent of every dispatch to an HTTP target.
pub const USER_AGENT: &str = "Google-Cloud-Tasks";

/// What an attempt knows about the attempts before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptInfo {
    /// Attempts dispatched before this one (`X-CloudTasks-TaskRetryCount`).
    pub retry_count: i32,
    /// Earlier attempts that got a non-5xx response (`X-CloudTasks-TaskExecutionCount`);
    /// see [`counts_as_execution`].
    pub execution_count: i32,
    /// HTTP status of the previous attempt, 504 after a deadline timeout; `None` on the first.
    pub previous_response: Option<u16>,
    /// The task's schedule time (`X-CloudTasks-TaskETA`).
    pub eta: Micros,
}

/// Whether an attempt's outcome adds to the next attempts' execution count: a response below
/// 500 does (404, 429, 302 and 2xx alike); a 5xx, a timeout or no response does not — as the
/// real service was recorded doing.
pub fn counts_as_execution(status: Option<u16>) -> bool {
    matches!(status, Some(s) if s < 500)
}

/// The token the `Authorization` header must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// An OIDC ID token for `service_account_email`, audience `audience`.
    Oidc {
        /// The `email`/`sub` claim.
        service_account_email: String,
        /// The `aud` claim (the target URL when the task gives none).
        audience: String,
    },
    /// An OAuth access token for `service_account_email`.
    OAuth {
        /// The account the token is for.
        service_account_email: String,
        /// The scope asked for.
        scope: String,
    },
}

/// An attempt's request, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingRequest {
    /// The method.
    pub method: http::Method,
    /// The absolute URL, parsed once (the HTTP client takes it as is).
    pub url: url::Url,
    /// Headers in send order, names as given (HTTP names are case-insensitive).
    pub headers: Vec<(String, String)>,
    /// The body (empty unless POST, PUT or PATCH).
    pub body: Vec<u8>,
    /// The token to add as `Authorization: Bearer …`, if any.
    pub auth: Option<Auth>,
}

/// Why a request could not be built; the attempt fails with this reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// The task is not an HTTP task (App Engine tasks are not dispatched by this builder).
    #[error("the task has no http_request")]
    NotHttp,
    /// The URL does not parse (accepted at create, as the real service does).
    #[error("invalid url {url:?}: {reason}")]
    InvalidUrl {
        /// The URL after overrides.
        url: String,
        /// The parser's complaint.
        reason: String,
    },
}

fn method(m: i32) -> http::Method {
    match HttpMethod::try_from(m).unwrap_or(HttpMethod::Post) {
        HttpMethod::Get => http::Method::GET,
        HttpMethod::Head => http::Method::HEAD,
        HttpMethod::Put => http::Method::PUT,
        HttpMethod::Delete => http::Method::DELETE,
        HttpMethod::Patch => http::Method::PATCH,
        HttpMethod::Options => http::Method::OPTIONS,
        HttpMethod::Post | HttpMethod::Unspecified => http::Method::POST,
    }
}

/// Headers nobody but the service sets: dropped from the task's and the queue's layers.
/// `X-Stratus-*` is Stratus' own namespace (the receiver signature of [`crate::origin`]), so a
/// task cannot pre-set a proof of origin.
fn reserved(name: &str) -> bool {
    let l = name.to_ascii_lowercase();
    matches!(l.as_str(), "host" | "content-length" | "user-agent")
        || l.starts_with("x-google-")
        || l.starts_with("x-appengine-")
        || l.starts_with("x-cloudtasks-")
        || l.starts_with("x-stratus-")
}

fn set(headers: &mut Vec<(String, String)>, name: &str, value: String) {
    headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    headers.push((name.to_string(), value));
}

/// `X-CloudTasks-TaskETA`: seconds since the epoch with six decimals.
pub fn eta_header(eta: Micros) -> String {
    format!("{}.{:06}", eta.div_euclid(SECOND), eta.rem_euclid(SECOND))
}

/// Applies a queue's `uri_override` to `url` per its enforce mode.
pub fn apply_uri_override(url: &str, o: &UriOverride) -> Result<String, BuildError> {
    override_url(url, o).map(String::from)
}

fn override_url(url: &str, o: &UriOverride) -> Result<url::Url, BuildError> {
    let invalid = |reason: String| BuildError::InvalidUrl {
        url: url.to_string(),
        reason,
    };
    let mut u = url::Url::parse(url).map_err(|e| invalid(e.to_string()))?;
    let always = o.uri_override_enforce_mode != UriOverrideEnforceMode::IfNotExists as i32;
    if always {
        if let Some(s) = o.scheme {
            let scheme = if s == Scheme::Http as i32 {
                "http"
            } else {
                "https"
            };
            u.set_scheme(scheme)
                .map_err(|()| invalid(format!("cannot set scheme {scheme}")))?;
        }
        if let Some(h) = &o.host {
            u.set_host(Some(h)).map_err(|e| invalid(e.to_string()))?;
        }
    }
    if let Some(p) = o.port
        && (always || u.port().is_none())
    {
        let port = u16::try_from(p).ok().filter(|p| *p != 0);
        u.set_port(port)
            .map_err(|()| invalid(format!("cannot set port {p}")))?;
    }
    if let Some(p) = &o.path_override
        && (always || u.path().is_empty() || u.path() == "/")
    {
        u.set_path(if p.path.is_empty() { "/" } else { &p.path });
    }
    if let Some(q) = &o.query_override
        && (always || u.query().is_none())
    {
        u.set_query((!q.query_params.is_empty()).then_some(q.query_params.as_str()));
    }
    Ok(u)
}

/// Builds the request of one attempt of an HTTP task.
pub fn build(
    task: &Task,
    queue: &Queue,
    attempt: &AttemptInfo,
) -> Result<OutgoingRequest, BuildError> {
    let Some(MessageType::HttpRequest(req)) = &task.message_type else {
        return Err(BuildError::NotHttp);
    };
    let target = queue.http_target.as_ref();
    let method_code = match target.map(|t| t.http_method) {
        Some(m) if m != HttpMethod::Unspecified as i32 => m,
        _ => req.http_method,
    };
    let method = method(method_code);
    let url = match target.and_then(|t| t.uri_override.as_ref()) {
        Some(o) => override_url(&req.url, o)?,
        None => url::Url::parse(&req.url).map_err(|e| BuildError::InvalidUrl {
            url: req.url.clone(),
            reason: e.to_string(),
        })?,
    };

    let mut headers: Vec<(String, String)> = Vec::with_capacity(req.headers.len() + 8);
    for (k, v) in &req.headers {
        if !reserved(k) {
            set(&mut headers, k, v.clone());
        }
    }
    for o in target
        .map(|t| t.header_overrides.as_slice())
        .unwrap_or_default()
    {
        if let Some(h) = &o.header
            && !reserved(&h.key)
        {
            set(&mut headers, &h.key, h.value.clone());
        }
    }
    let queue_id = queue.name.rsplit('/').next().unwrap_or_default();
    let task_id = task.name.rsplit('/').next().unwrap_or_default();
    set(&mut headers, "User-Agent", USER_AGENT.to_string());
    set(&mut headers, "X-CloudTasks-QueueName", queue_id.to_string());
    set(&mut headers, "X-CloudTasks-TaskName", task_id.to_string());
    set(
        &mut headers,
        "X-CloudTasks-TaskRetryCount",
        attempt.retry_count.to_string(),
    );
    set(
        &mut headers,
        "X-CloudTasks-TaskExecutionCount",
        attempt.execution_count.to_string(),
    );
    set(
        &mut headers,
        "X-CloudTasks-TaskETA",
        eta_header(attempt.eta),
    );
    if let Some(prev) = attempt.previous_response {
        set(
            &mut headers,
            "X-CloudTasks-TaskPreviousResponse",
            prev.to_string(),
        );
        set(&mut headers, "X-CloudTasks-TaskRetryReason", String::new());
    }

    // Queue-level authorization replaces the task's.
    let auth = match target.and_then(|t| t.authorization_header.as_ref()) {
        Some(QueueAuth::OidcToken(t)) => {
            Some(oidc(&t.service_account_email, &t.audience, url.as_str()))
        }
        Some(QueueAuth::OauthToken(t)) => Some(oauth(&t.service_account_email, &t.scope)),
        None => match &req.authorization_header {
            Some(TaskAuth::OidcToken(t)) => {
                Some(oidc(&t.service_account_email, &t.audience, url.as_str()))
            }
            Some(TaskAuth::OauthToken(t)) => Some(oauth(&t.service_account_email, &t.scope)),
            None => None,
        },
    };
    if auth.is_some() {
        headers.retain(|(k, _)| !k.eq_ignore_ascii_case("authorization"));
    }
    let body = if matches!(
        method,
        http::Method::POST | http::Method::PUT | http::Method::PATCH
    ) {
        req.body.clone()
    } else {
        Vec::new()
    };
    Ok(OutgoingRequest {
        method,
        url,
        headers,
        body,
        auth,
    })
}

fn oidc(email: &str, audience: &str, url: &str) -> Auth {
    Auth::Oidc {
        service_account_email: email.to_string(),
        audience: if audience.is_empty() {
            url.to_string()
        } else {
            audience.to_string()
        },
    }
}

fn oauth(email: &str, scope: &str) -> Auth {
    Auth::OAuth {
        service_account_email: email.to_string(),
        scope: if scope.is_empty() {
            "https://www.googleapis.com/auth/cloud-platform".to_string()
        } else {
            scope.to_string()
        },
    }
}

#[cfg(test)]
mod tests;
