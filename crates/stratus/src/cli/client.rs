//! The REST client: builds `{endpoint}/v2/...` URLs (or `{endpoint}/stratus/v1/...` for
//! Stratus' own calls, see [`Client::stratus`]), sends JSON, follows list pages, and turns
//! failures into one-line errors (`NOT_FOUND: <message>`, or a hint to run `stratus serve`).

use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use reqwest::{Method, Url};
use serde_json::{Map, Value};

/// Bound on one request, connection included; RunTask returns before the target answers, so
/// every call is a quick control-plane call.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on the TCP connect, so a wrong endpoint fails fast.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest error-body excerpt quoted when the server's answer is not the API's error JSON.
const MAX_QUOTED_BODY: usize = 200;

/// Path prefix of the Cloud Tasks v2 API.
const CLOUD_TASKS_API: &[&str] = &["v2"];
/// Path prefix of Stratus' own API (task status, failed tasks, retry).
const STRATUS_API: &[&str] = &["stratus", "v1"];

/// A client for one Stratus endpoint.
pub struct Client {
    http: reqwest::Client,
    base: Url,
    endpoint: String,
    /// Segments between the endpoint and the resource name (`v2`, or `stratus/v1`).
    api: &'static [&'static str],
    /// The API token sent as `Authorization: Bearer …`, if any.
    token: Option<String>,
}

impl Client {
    /// A client for `endpoint`, e.g. `http://127.0.0.1:8123` (a path prefix is kept).
    pub fn new(endpoint: &str) -> Result<Self> {
        let base =
            Url::parse(endpoint).map_err(|e| anyhow!("invalid endpoint {endpoint:?}: {e}"))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            bail!("invalid endpoint {endpoint:?}: expected an http:// or https:// URL");
        }
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("stratus-cli/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Client {
            http,
            base,
            endpoint: endpoint.to_string(),
            api: CLOUD_TASKS_API,
            token: None,
        })
    }

    /// A client for the endpoint and API token of the global options.
    pub fn for_args(g: &super::GlobalArgs) -> Result<Self> {
        let mut c = Client::new(&g.endpoint)?;
        c.token = g.token.clone().filter(|t| !t.trim().is_empty());
        Ok(c)
    }

    /// The same client calling Stratus' own API under `{endpoint}/stratus/v1/` instead of the
    /// Cloud Tasks API under `/v2/`.
    pub fn stratus(mut self) -> Self {
        self.api = STRATUS_API;
        self
    }

    /// `{endpoint}/v2/{segments…}{suffix}` (or `/stratus/v1/`); segments are percent-encoded
    /// one by one and `suffix` (e.g. `:pause`) is appended to the last one.
    fn url(&self, segments: &[String], suffix: &str) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(self.api);
            if let Some((last, init)) = segments.split_last() {
                path.extend(init);
                path.push(&format!("{last}{suffix}"));
            }
        }
        url
    }

    /// Sends one request and returns the JSON answer (`{}` for an empty body).
    pub async fn call(
        &self,
        method: Method,
        segments: &[String],
        suffix: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value> {
        let mut req = self.http.request(method, self.url(segments, suffix));
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        if !query.is_empty() {
            req = req.query(query);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.map_err(|e| self.transport_error(&e))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| self.transport_error(&e))?;
        if !status.is_success() {
            return Err(api_error(status.as_u16(), &text));
        }
        if text.trim().is_empty() {
            return Ok(Value::Object(Map::new()));
        }
        serde_json::from_str(&text).map_err(|e| {
            anyhow!(
                "the server at {} answered with invalid JSON ({e}): {}",
                self.endpoint,
                excerpt(&text)
            )
        })
    }

    /// Lists every item of a paged List call, following `nextPageToken` until the last page or
    /// until `limit` items are collected. `key` names the item array (`queues`, `tasks`).
    pub async fn list(
        &self,
        segments: &[String],
        query: &[(&str, String)],
        key: &str,
        limit: Option<usize>,
    ) -> Result<Vec<Value>> {
        let mut items = Vec::new();
        let mut token = String::new();
        loop {
            let mut q = query.to_vec();
            if !token.is_empty() {
                q.push(("pageToken", token.clone()));
            }
            let page = self.call(Method::GET, segments, "", &q, None).await?;
            if let Some(Value::Array(found)) = page.get(key) {
                items.extend(found.iter().cloned());
            }
            if limit.is_some_and(|l| items.len() >= l) {
                items.truncate(limit.unwrap_or(usize::MAX));
                return Ok(items);
            }
            let next = page
                .get("nextPageToken")
                .and_then(Value::as_str)
                .unwrap_or("");
            if next.is_empty() {
                return Ok(items);
            }
            if next == token {
                bail!("the server returned the same page token twice; stopping");
            }
            token = next.to_string();
        }
    }

    /// A transport failure as one line; connection errors name the endpoint and suggest
    /// `stratus serve`.
    fn transport_error(&self, e: &reqwest::Error) -> anyhow::Error {
        let root = root_cause(e);
        if e.is_connect() {
            anyhow!(
                "cannot connect to the Stratus server at {} ({root}); is `stratus serve` running? \
                 (use --endpoint or STRATUS_ENDPOINT to point elsewhere)",
                self.endpoint
            )
        } else if e.is_timeout() {
            anyhow!("request to {} timed out ({root})", self.endpoint)
        } else {
            anyhow!("request to {} failed: {root}", self.endpoint)
        }
    }
}

/// The innermost error message, e.g. `Connection refused (os error 111)`.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// Turns an error answer into `STATUS: message`, the form main prints after `error: `.
///
/// The API's error JSON is `{"error":{"code":404,"message":"...","status":"NOT_FOUND"}}`;
/// anything else (a proxy's HTML page, say) is quoted after `HTTP <code>`.
fn api_error(http_status: u16, body: &str) -> anyhow::Error {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let err = parsed.as_ref().and_then(|v| v.get("error"));
    let message = err.and_then(|e| e.get("message")).and_then(Value::as_str);
    let status = err
        .and_then(|e| e.get("status"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| canonical_status(http_status).map(str::to_string))
        .unwrap_or_else(|| format!("HTTP {http_status}"));
    match message {
        Some(m) => anyhow!("{status}: {m}"),
        None if body.trim().is_empty() => anyhow!("{status}: HTTP {http_status}"),
        None => anyhow!("{status}: {}", excerpt(body)),
    }
}

/// The canonical code name for an HTTP status, when the body carries none.
fn canonical_status(http_status: u16) -> Option<&'static str> {
    Some(match http_status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ALREADY_EXISTS",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        500 => "INTERNAL",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => return None,
    })
}

/// The start of `text` on one line, for error messages.
fn excerpt(text: &str) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(MAX_QUOTED_BODY) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_texts() {
        let body =
            r#"{"error":{"code":404,"message":"Queue does not exist.","status":"NOT_FOUND"}}"#;
        assert_eq!(
            api_error(404, body).to_string(),
            "NOT_FOUND: Queue does not exist."
        );
        let no_status = r#"{"error":{"code":409,"message":"dup"}}"#;
        assert_eq!(api_error(409, no_status).to_string(), "ALREADY_EXISTS: dup");
        assert_eq!(
            api_error(502, "<html>bad\ngateway</html>").to_string(),
            "HTTP 502: <html>bad gateway</html>"
        );
    }

    #[test]
    fn urls_keep_prefix_and_encode_segments() {
        let c = Client::new("http://h:1/prefix/").unwrap();
        let segs: Vec<String> = ["projects", "p", "locations", "l", "queues", "a b"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            c.url(&segs, ":pause").as_str(),
            "http://h:1/prefix/v2/projects/p/locations/l/queues/a%20b:pause"
        );
        assert_eq!(
            Client::new("http://h:1/prefix")
                .unwrap()
                .stratus()
                .url(&segs, ":retry")
                .as_str(),
            "http://h:1/prefix/stratus/v1/projects/p/locations/l/queues/a%20b:retry"
        );
        assert!(Client::new("ftp://x").is_err());
        assert!(Client::new("not a url").is_err());
    }
}
