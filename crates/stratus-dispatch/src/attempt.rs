//! One attempt: build the request, send it with the dispatch deadline, classify the answer.
//!
//! Outcomes follow cloud-tasks-api.md §6.2: a 2xx is success; any other status is a failure
//! with that status; a redirect with a followable `Location` is followed by the HTTP client
//! (up to 10 hops) and only the final answer counts; no answer by the deadline is a timeout
//! (previous-response 504 on the next attempt); a connection error or an unbuildable request
//! is a failure without a response.

use std::sync::Arc;
use std::time::Duration;

use stratus_store::dispatch::{AttemptOutcome, DueTask};
use stratus_types::proto::tasks::{Queue, RetryConfig};
use stratus_types::queue::normalize_retry_config;
use stratus_types::time::{Clock, SECOND, duration_to_micros};
use stratus_types::{Micros, QueuePath};

use crate::auth::TokenSource;
use crate::origin::OriginRules;
use crate::outbound::{Outbound, Refused};
use crate::request::{self, AttemptInfo};
use crate::timer::Timer;

/// The default dispatch deadline (Cloud Tasks: 10 minutes) for a task without one.
pub const DEFAULT_DEADLINE: Micros = 600 * SECOND;

/// How much of a response body is read (and discarded) so the connection can be reused.
const MAX_BODY_DRAIN: usize = 64 * 1024;

/// The settings every dispatch client shares: keep-alive pooling (idle connections kept 90 s,
/// as many per host as there were attempts in flight, so a queue with thousands of concurrent
/// dispatches does not reconnect), HTTP/2 where a TLS target offers it through ALPN.
/// [`Outbound`] adds the target checks: its DNS resolver and a redirect policy following up to
/// 10 hops, each re-checked.
pub fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(30))
}

/// The retry config an attempt's outcome is judged by: the task's when set, else the queue's.
pub fn retry_config(task: &DueTask, queue: &Queue) -> RetryConfig {
    match &task.task.retry_config {
        Some(rc) => normalize_retry_config(Some(rc)),
        None => normalize_retry_config(queue.retry_config.as_ref()),
    }
}

/// What one attempt needs besides the task.
pub struct AttemptContext {
    /// The HTTP clients, which refuse targets the outbound policy denies.
    pub outbound: Outbound,
    /// Bearer tokens for OIDC/OAuth tasks.
    pub tokens: Arc<TokenSource>,
    /// The engine's time.
    pub timer: Arc<dyn Timer>,
    /// Proof-of-origin headers added to each attempt (shared secret, HMAC signature).
    pub origin: Arc<OriginRules>,
}

/// Sends one attempt of `task` and returns its outcome (not yet recorded). `anchor` is what
/// the next schedule_time counts from; `None` means the attempt's end.
pub async fn run(
    ctx: &AttemptContext,
    task: &DueTask,
    queue: &Queue,
    anchor: Option<Micros>,
) -> AttemptOutcome {
    let info = AttemptInfo {
        retry_count: task.task.dispatch_count,
        execution_count: task.meta.execution_count,
        previous_response: task.meta.previous_response,
        eta: task.schedule_time,
    };
    let deadline = task
        .task
        .dispatch_deadline
        .as_ref()
        .map_or(DEFAULT_DEADLINE, duration_to_micros);
    let dispatch_time = ctx.timer.now();
    let mut outcome = AttemptOutcome {
        row: task.row,
        dispatch_time,
        response_time: dispatch_time,
        http_status: None,
        timed_out: false,
        error: None,
        retry_after: None,
        retry: retry_config(task, queue),
        anchor: 0,
        fence: None,
    };
    let sent = async {
        let mut req = request::build(&task.task, queue, &info).map_err(|e| e.to_string())?;
        // Signed at the send time of this attempt: every retry carries a fresh timestamp.
        let signed = ctx
            .origin
            .apply(&queue.name, &mut req, dispatch_time.div_euclid(SECOND));
        // A literal host is connected to without resolving: check it before a token is minted
        // or anything is sent.
        let project = QueuePath::try_parse(&queue.name)
            .map(|q| q.location.project)
            .unwrap_or_default();
        ctx.outbound
            .check_url(&project, &req.url)
            .map_err(|e| e.to_string())?;
        let bearer = match &req.auth {
            Some(a) => ctx.tokens.bearer(a).await.map_err(|e| e.to_string())?,
            None => None,
        };
        send(ctx.outbound.client(&project, signed), req, bearer).await
    };
    tokio::select! {
        r = sent => match r {
            Ok((status, retry_after)) => {
                outcome.http_status = Some(status);
                outcome.retry_after = retry_after;
            }
            Err(e) => outcome.error = Some(e),
        },
        () = ctx.timer.sleep_until(dispatch_time.saturating_add(deadline)) => {
            outcome.timed_out = true;
            outcome.error = Some(format!(
                "no response within the dispatch deadline of {} s",
                deadline / SECOND
            ));
        }
    }
    outcome.response_time = ctx.timer.now();
    outcome.anchor = anchor.unwrap_or(outcome.response_time);
    outcome
}

async fn send(
    client: &reqwest::Client,
    req: request::OutgoingRequest,
    bearer: Option<String>,
) -> Result<(u16, Option<Micros>), String> {
    let mut b = client.request(req.method, req.url);
    for (k, v) in &req.headers {
        let name = http::HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| format!("invalid header name {k:?}"))?;
        let value = http::HeaderValue::from_str(v)
            .map_err(|_| format!("invalid value for header {k:?}"))?;
        b = b.header(name, value);
    }
    if let Some(t) = bearer {
        b = b.bearer_auth(t);
    }
    if !req.body.is_empty() {
        b = b.body(req.body);
    }
    let mut resp = b.send().await.map_err(describe)?;
    let now = stratus_types::time::SystemClock.now();
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, now));
    // Drain a bounded part of the body so the connection returns to the pool.
    let mut read = 0usize;
    while read < MAX_BODY_DRAIN {
        match resp.chunk().await {
            Ok(Some(c)) => read += c.len(),
            _ => break,
        }
    }
    Ok((status, retry_after))
}

fn describe(e: reqwest::Error) -> String {
    use std::error::Error as _;
    // A refusal by the outbound policy (resolver or redirect) is the whole story.
    if let Some(r) = Refused::find(&e) {
        return r.to_string();
    }
    // The URL is left out: the task names its target already, and a query string may hold a
    // credential (the error is stored with the attempt and logged).
    let e = e.without_url();
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

/// `Retry-After` as a delay in µs: delay-seconds, or an HTTP date taken relative to `now`.
pub fn parse_retry_after(v: &str, now: Micros) -> Option<Micros> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<i64>() {
        return (secs >= 0).then(|| secs.saturating_mul(SECOND));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v)
        .ok()?
        .timestamp_micros();
    Some(at.saturating_sub(now).max(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds() {
        let now = 1_445_412_400 * SECOND; // 2015-10-21T07:26:40Z
        assert_eq!(parse_retry_after("120", now), Some(120 * SECOND));
        assert_eq!(parse_retry_after(" 0 ", now), Some(0));
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(80 * SECOND)
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(0)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
