//! Black-box tests of `stratus queues|tasks …`: the built binary talks to a fake REST server
//! (a minimal HTTP/1.1 responder on 127.0.0.1:0) that records every request and answers canned
//! JSON. They pin the exact REST requests each command sends and how answers are printed.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request as the fake server saw it.
#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    path: String,
    query: String,
    body: Value,
}

/// Decides the fake server's answer: `(HTTP status, JSON body)`.
type Responder = Arc<dyn Fn(&Recorded) -> (u16, Value) + Send + Sync>;

/// A running fake server and what it has recorded so far.
struct FakeServer {
    endpoint: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl FakeServer {
    async fn start(respond: impl Fn(&Recorded) -> (u16, Value) + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let respond: Responder = Arc::new(respond);
        let log = requests.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_one(stream, respond.clone(), log.clone()));
            }
        });
        FakeServer { endpoint, requests }
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

/// Reads one request (Content-Length bodies only), records it, answers and closes.
async fn serve_one(mut stream: TcpStream, respond: Responder, log: Arc<Mutex<Vec<Recorded>>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let content_length = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, v)| v.trim().parse::<usize>().unwrap());
    while buf.len() < head_end + content_length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let mut request_line = head.lines().next().unwrap().split(' ');
    let method = request_line.next().unwrap().to_string();
    let target = request_line.next().unwrap();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let body_bytes = &buf[head_end..head_end + content_length];
    let recorded = Recorded {
        method,
        path: path.to_string(),
        query: query.to_string(),
        body: if body_bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(body_bytes).unwrap()
        },
    };
    let (status, answer) = respond(&recorded);
    log.lock().unwrap().push(recorded);
    let body = answer.to_string();
    let response = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// The outcome of one CLI run.
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs the binary with the whitespace-separated `args` against `endpoint`, stdin closed and no
/// `STRATUS_*` variables inherited.
async fn stratus(endpoint: &str, args: &str) -> Run {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_stratus"))
        .args(args.split_whitespace())
        .args(["--endpoint", endpoint])
        .env_remove("STRATUS_PROJECT")
        .env_remove("STRATUS_LOCATION")
        .env_remove("STRATUS_ENDPOINT")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// Answers with a queue named like the request body's `name` (or a fixed name).
fn echo_name(r: &Recorded) -> (u16, Value) {
    let fixed = json!("projects/p/locations/l/queues/q");
    let name = r.body.get("name").cloned().unwrap_or(fixed);
    (200, json!({ "name": name, "state": "RUNNING" }))
}

#[tokio::test]
async fn queues_create_sends_the_queue_with_proto_json_durations() {
    let server = FakeServer::start(echo_name).await;
    let args = "queues create my-q --project p --location l \
        --max-attempts -1 --min-backoff 0.5s --max-backoff 5m --max-retry-duration 1d \
        --max-doublings 4 --max-dispatches-per-second 7.5 --max-concurrent-dispatches 3 \
        --log-sampling-ratio 0.25 \
        --http-uri-override scheme:http,host:h.local,port:8443,path:/x,query:a=b,mode:if-not-exists \
        --http-method-override put --http-header-override X-A:1 --http-header-override X-B:2 \
        --http-oidc-service-account-email-override sa@p.iam.gserviceaccount.com \
        --http-oidc-token-audience-override aud";
    let run = stratus(&server.endpoint, args).await;
    assert!(run.ok, "stderr: {}", run.stderr);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].method, "POST");
    assert_eq!(reqs[0].path, "/v2/projects/p/locations/l/queues");
    let expected = json!({
        "name": "projects/p/locations/l/queues/my-q",
        "retryConfig": {"maxAttempts": -1, "minBackoff": "0.500s", "maxBackoff": "300s",
                        "maxRetryDuration": "86400s", "maxDoublings": 4},
        "rateLimits": {"maxDispatchesPerSecond": 7.5, "maxConcurrentDispatches": 3},
        "stackdriverLoggingConfig": {"samplingRatio": 0.25},
        "httpTarget": {
            "uriOverride": {"scheme": "HTTP", "host": "h.local", "port": "8443",
                            "pathOverride": {"path": "/x"}, "queryOverride": {"queryParams": "a=b"},
                            "uriOverrideEnforceMode": "IF_NOT_EXISTS"},
            "httpMethod": "PUT",
            "headerOverrides": [{"header": {"key": "X-A", "value": "1"}},
                                {"header": {"key": "X-B", "value": "2"}}],
            "oidcToken": {"serviceAccountEmail": "sa@p.iam.gserviceaccount.com", "audience": "aud"}
        }
    });
    assert_eq!(reqs[0].body, expected);
    assert!(
        run.stderr
            .contains("Created queue [projects/p/locations/l/queues/my-q].")
    );
    assert!(
        run.stdout.contains("state: RUNNING"),
        "stdout: {}",
        run.stdout
    );
}

#[tokio::test]
async fn queues_update_masks_exactly_the_given_fields() {
    let server = FakeServer::start(echo_name).await;
    let full = "projects/a/locations/b/queues/c";
    let args = format!("queues update {full} --max-dispatches-per-second 7 --min-backoff 2s");
    let run = stratus(&server.endpoint, &args).await;
    assert!(run.ok, "stderr: {}", run.stderr);
    let req = &server.requests()[0];
    assert_eq!(req.method, "PATCH");
    assert_eq!(req.path, format!("/v2/{full}"));
    assert_eq!(
        req.query,
        "updateMask=retryConfig.minBackoff%2CrateLimits.maxDispatchesPerSecond"
    );
    let expected = json!({"name": full, "retryConfig": {"minBackoff": "2s"},
                          "rateLimits": {"maxDispatchesPerSecond": 7.0}});
    assert_eq!(req.body, expected);

    let nothing = stratus(&server.endpoint, "queues update c").await;
    assert!(!nothing.ok);
    assert!(
        nothing.stderr.contains("nothing to update"),
        "{}",
        nothing.stderr
    );
    assert_eq!(server.requests().len(), 1, "no request without flags");
}

#[tokio::test]
async fn tasks_create_http_task_sends_base64_body_headers_and_oidc() {
    let server = FakeServer::start(|r| (200, r.body["task"].clone())).await;
    let args = r#"tasks create-http-task t1 --queue q --url https://example.com/x --method PUT
        --header Content-Type:application/json --header X-Multi:a --header X-Multi:b
        --body-content {"a":1} --schedule-time 2030-01-02T04:04:05.5+01:00
        --dispatch-deadline 30s --oidc-service-account-email sa@p.iam.gserviceaccount.com
        --max-attempts 3 --format json"#;
    let run = stratus(&server.endpoint, args).await;
    assert!(run.ok, "stderr: {}", run.stderr);
    let req = &server.requests()[0];
    assert_eq!(req.method, "POST");
    assert_eq!(
        req.path,
        "/v2/projects/local/locations/local/queues/q/tasks"
    );
    let expected = json!({"task": {
        "name": "projects/local/locations/local/queues/q/tasks/t1",
        "httpRequest": {
            "url": "https://example.com/x", "httpMethod": "PUT",
            "headers": {"Content-Type": "application/json", "X-Multi": "a, b"},
            "body": "eyJhIjoxfQ==",
            "oidcToken": {"serviceAccountEmail": "sa@p.iam.gserviceaccount.com"}
        },
        "scheduleTime": "2030-01-02T03:04:05.500Z",
        "dispatchDeadline": "30s",
        "retryConfig": {"maxAttempts": 3}
    }});
    assert_eq!(req.body, expected);
    let printed: Value = serde_json::from_str(&run.stdout).expect("--format json prints JSON");
    assert_eq!(printed["httpRequest"]["body"], "eyJhIjoxfQ==");
}

#[tokio::test]
async fn tasks_create_without_id_lets_the_server_name_it() {
    let named = json!({"name": "projects/p/locations/l/queues/q/tasks/123"});
    let server = FakeServer::start(move |_| (200, named.clone())).await;
    let args = "tasks create-http-task --queue projects/p/locations/l/queues/q --url http://x/";
    let run = stratus(&server.endpoint, args).await;
    assert!(run.ok, "stderr: {}", run.stderr);
    let task = &server.requests()[0].body["task"];
    let expected = json!({"httpRequest": {"url": "http://x/", "httpMethod": "POST"}});
    assert_eq!(task, &expected);
    assert!(
        run.stderr
            .contains("Created task [projects/p/locations/l/queues/q/tasks/123].")
    );
}

/// Three pages of tasks, `a b` / `c d` / `e`, chained by `nextPageToken`.
fn paged_tasks(r: &Recorded) -> (u16, Value) {
    let page = |ids: &[&str], next: &str| {
        let tasks: Vec<Value> = (ids.iter())
            .map(|id| {
                json!({"name": format!("projects/p/locations/l/queues/q/tasks/{id}"),
                       "scheduleTime": "2030-01-01T00:00:00Z", "dispatchCount": 2,
                       "httpRequest": {"url": format!("https://e.com/{id}"), "httpMethod": "GET"}})
            })
            .collect();
        (200, json!({"tasks": tasks, "nextPageToken": next}))
    };
    match r
        .query
        .split('&')
        .find_map(|kv| kv.strip_prefix("pageToken="))
    {
        None => page(&["a", "b"], "tok1"),
        Some("tok1") => page(&["c", "d"], "tok2"),
        Some(_) => page(&["e"], ""),
    }
}

#[tokio::test]
async fn list_follows_next_page_token_and_respects_limit() {
    let server = FakeServer::start(paged_tasks).await;
    let args = "tasks list --queue q --project p --location l --page-size 2 --response-view full";
    let run = stratus(&server.endpoint, args).await;
    assert!(run.ok, "stderr: {}", run.stderr);
    let reqs = server.requests();
    let queries: Vec<&str> = reqs.iter().map(|r| r.query.as_str()).collect();
    assert_eq!(
        queries,
        [
            "responseView=FULL&pageSize=2",
            "responseView=FULL&pageSize=2&pageToken=tok1",
            "responseView=FULL&pageSize=2&pageToken=tok2",
        ]
    );
    let tasks_path = "/v2/projects/p/locations/l/queues/q/tasks";
    assert!(reqs.iter().all(|r| r.path == tasks_path));
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 6, "header + 5 rows: {}", run.stdout);
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "ID",
            "SCHEDULE_TIME",
            "DISPATCH_COUNT",
            "RESPONSE_COUNT",
            "METHOD",
            "URL"
        ]
    );
    assert_eq!(
        row,
        [
            "a",
            "2030-01-01T00:00:00Z",
            "2",
            "0",
            "GET",
            "https://e.com/a"
        ]
    );

    let limited = stratus(
        &server.endpoint,
        "tasks list --queue q --limit 3 --format json",
    )
    .await;
    assert!(limited.ok, "stderr: {}", limited.stderr);
    let items: Value = serde_json::from_str(&limited.stdout).unwrap();
    assert_eq!(items.as_array().unwrap().len(), 3);
    assert_eq!(
        server.requests().len(),
        5,
        "the limit stops paging after page two"
    );
}

#[tokio::test]
async fn queues_list_prints_a_table_and_json() {
    let server = FakeServer::start(|_| {
        let queue = json!({"name": "projects/local/locations/local/queues/q1", "state": "PAUSED",
            "rateLimits": {"maxDispatchesPerSecond": 500, "maxConcurrentDispatches": 1000},
            "retryConfig": {"maxAttempts": 100}});
        (200, json!({ "queues": [queue] }))
    })
    .await;
    let table = stratus(&server.endpoint, "queues list --filter state:PAUSED").await;
    assert!(table.ok, "stderr: {}", table.stderr);
    let req = &server.requests()[0];
    assert_eq!(req.path, "/v2/projects/local/locations/local/queues");
    assert_eq!(req.query, "filter=state%3APAUSED");
    assert_eq!(
        table.stdout,
        "ID  STATE   MAX_RATE  MAX_CONCURRENT  MAX_ATTEMPTS\n\
         q1  PAUSED  500       1000            100\n"
    );
    let json_run = stratus(&server.endpoint, "queues list --format json").await;
    let parsed: Value = serde_json::from_str(&json_run.stdout).expect("valid JSON");
    assert_eq!(parsed[0]["state"], "PAUSED");
}

#[tokio::test]
async fn api_errors_print_status_and_message_and_fail() {
    let server = FakeServer::start(|_| {
        let error = json!({"code": 404, "message": "Requested entity was not found.",
                           "status": "NOT_FOUND"});
        (404, json!({ "error": error }))
    })
    .await;
    let run = stratus(&server.endpoint, "tasks describe t --queue q").await;
    assert!(!run.ok);
    assert_eq!(
        run.stderr.trim(),
        "error: NOT_FOUND: Requested entity was not found."
    );
    assert_eq!(run.stdout, "");
    let req = &server.requests()[0];
    assert_eq!(req.method, "GET");
    assert_eq!(
        req.path,
        "/v2/projects/local/locations/local/queues/q/tasks/t"
    );
}

#[tokio::test]
async fn queue_actions_and_deletes_hit_the_right_paths() {
    let server = FakeServer::start(|r| match r.method.as_str() {
        "DELETE" => (200, json!({})),
        _ => echo_name(r),
    })
    .await;
    let q = "/v2/projects/local/locations/local/queues/q";
    for (args, method, path) in [
        ("queues pause q", "POST", format!("{q}:pause")),
        ("queues resume q", "POST", format!("{q}:resume")),
        ("queues purge q", "POST", format!("{q}:purge")),
        ("queues delete q --quiet", "DELETE", q.to_string()),
        ("tasks run t --queue q", "POST", format!("{q}/tasks/t:run")),
        ("tasks delete t --queue q", "DELETE", format!("{q}/tasks/t")),
    ] {
        let run = stratus(&server.endpoint, args).await;
        assert!(run.ok, "{args}: {}", run.stderr);
        let req = server.requests().pop().unwrap();
        assert_eq!(
            (req.method.as_str(), req.path.as_str()),
            (method, path.as_str()),
            "{args}"
        );
    }
    // Without --quiet and with stdin not a terminal, delete proceeds without a prompt.
    let deleted = stratus(&server.endpoint, "queues delete q --format json").await;
    assert!(deleted.ok, "{}", deleted.stderr);
    assert!(
        deleted
            .stderr
            .contains("Deleted queue [projects/local/locations/local/queues/q].")
    );
    assert_eq!(
        serde_json::from_str::<Value>(&deleted.stdout).unwrap(),
        json!({})
    );
    let described = stratus(&server.endpoint, "queues describe q --format json").await;
    let parsed: Value = serde_json::from_str(&described.stdout).expect("valid JSON");
    assert_eq!(parsed["state"], "RUNNING");
}

#[tokio::test]
async fn connection_refused_names_the_endpoint_and_suggests_serve() {
    // Bind then drop a listener to find a port nothing listens on.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let run = stratus(&endpoint, "queues list").await;
    assert!(!run.ok);
    assert!(run.stderr.contains(&endpoint), "{}", run.stderr);
    assert!(run.stderr.contains("stratus serve"), "{}", run.stderr);
}

/// Answers Stratus' own calls: two pages of failed tasks, a task status with attempts, a
/// retried task, and NOT_FOUND / FAILED_PRECONDITION for tasks named `missing` / `live`.
fn retention(r: &Recorded) -> (u16, Value) {
    let q = "projects/p/locations/l/queues/q";
    let error = |code: u16, status: &str, message: &str| {
        (
            code,
            json!({"error": {"code": code, "message": message, "status": status}}),
        )
    };
    if r.path.ends_with("/missing") || r.path.ends_with("/missing:retry") {
        return error(404, "NOT_FOUND", "Requested entity was not found.");
    }
    if r.path.ends_with("/live:retry") {
        return error(
            400,
            "FAILED_PRECONDITION",
            "Task projects/p/locations/l/queues/q/tasks/live is still scheduled; only finished \
             tasks can be retried.",
        );
    }
    let failed = |id: &str| {
        json!({"task": {"name": format!("{q}/tasks/{id}"), "dispatchCount": 3,
                        "httpRequest": {"url": format!("https://e.com/{id}"), "httpMethod": "POST"},
                        "lastAttempt": {"responseStatus": {"code": 13, "message": "HTTP status 500"}}},
               "state": "FAILED", "finishTime": "2030-01-01T00:00:00Z"})
    };
    if r.path.ends_with("/failedTasks") {
        return if r.query.contains("pageToken=t1") {
            (200, json!({"tasks": [failed("b")]}))
        } else if r.query.contains("pageSize=1") {
            (200, json!({"tasks": [failed("a")], "nextPageToken": "t1"}))
        } else {
            (200, json!({"tasks": []}))
        };
    }
    if r.path.ends_with(":retry") {
        return (
            200,
            json!({"name": format!("{q}/tasks/a"), "scheduleTime": "2030-01-02T00:00:00Z"}),
        );
    }
    let attempt = |seq: i64, status: Option<u16>| {
        let mut a = json!({"seq": seq, "dispatchTime": "2030-01-01T00:00:00Z",
                           "responseTime": "2030-01-01T00:00:00.012Z", "latencyMs": 12});
        match status {
            Some(s) => a["httpStatus"] = json!(s),
            None => a["error"] = json!("connection refused"),
        }
        a
    };
    (
        200,
        json!({"task": {"name": format!("{q}/tasks/a"), "dispatchCount": 2,
                        "scheduleTime": "2029-12-31T23:59:00Z",
                        "httpRequest": {"url": "https://e.com/a", "httpMethod": "PUT"}},
               "state": "FAILED", "finishTime": "2030-01-01T00:00:00Z",
               "attempts": [attempt(1, None), attempt(2, Some(500))]}),
    )
}

#[tokio::test]
async fn tasks_failed_lists_every_page_from_the_stratus_api() {
    let server = FakeServer::start(retention).await;
    let run = stratus(
        &server.endpoint,
        "tasks failed --queue q --project p --location l --page-size 1",
    )
    .await;
    assert!(run.ok, "stderr: {}", run.stderr);
    let reqs = server.requests();
    let failed_path = "/stratus/v1/projects/p/locations/l/queues/q/failedTasks";
    assert!(
        reqs.iter()
            .all(|r| r.method == "GET" && r.path == failed_path)
    );
    let queries: Vec<&str> = reqs.iter().map(|r| r.query.as_str()).collect();
    assert_eq!(queries, ["pageSize=1", "pageSize=1&pageToken=t1"]);
    assert_eq!(
        run.stdout,
        "ID  FINISH_TIME           DISPATCH_COUNT  LAST_RESPONSE    METHOD  URL\n\
         a   2030-01-01T00:00:00Z  3               HTTP status 500  POST    https://e.com/a\n\
         b   2030-01-01T00:00:00Z  3               HTTP status 500  POST    https://e.com/b\n"
    );
    // An empty queue: nothing on stdout, the usual note on stderr; JSON is an empty array.
    let empty = stratus(&server.endpoint, "tasks failed --queue q").await;
    assert!(empty.ok, "stderr: {}", empty.stderr);
    assert_eq!(empty.stdout, "");
    assert!(empty.stderr.contains("Listed 0 items."), "{}", empty.stderr);
    let json_run = stratus(&server.endpoint, "tasks failed --queue q --format json").await;
    assert_eq!(
        serde_json::from_str::<Value>(&json_run.stdout).unwrap(),
        json!([])
    );
    assert_eq!(
        server.requests().last().unwrap().path,
        "/stratus/v1/projects/local/locations/local/queues/q/failedTasks"
    );
}

#[tokio::test]
async fn tasks_history_shows_state_and_attempts() {
    let server = FakeServer::start(retention).await;
    let run = stratus(
        &server.endpoint,
        "tasks history a --queue q --project p --location l",
    )
    .await;
    assert!(run.ok, "stderr: {}", run.stderr);
    let req = &server.requests()[0];
    assert_eq!(
        (req.method.as_str(), req.path.as_str(), req.query.as_str()),
        (
            "GET",
            "/stratus/v1/projects/p/locations/l/queues/q/tasks/a",
            ""
        )
    );
    assert_eq!(
        run.stdout,
        "name: projects/p/locations/l/queues/q/tasks/a\n\
         state: FAILED\n\
         scheduleTime: 2029-12-31T23:59:00Z\n\
         finishTime: 2030-01-01T00:00:00Z\n\
         dispatchCount: 2\n\
         method: PUT\n\
         url: https://e.com/a\n\
         \n\
         SEQ  DISPATCH_TIME         RESPONSE_TIME             HTTP_STATUS  LATENCY_MS  ERROR\n\
         1    2030-01-01T00:00:00Z  2030-01-01T00:00:00.012Z  -            12          connection refused\n\
         2    2030-01-01T00:00:00Z  2030-01-01T00:00:00.012Z  500          12\n"
    );
    let json_run = stratus(
        &server.endpoint,
        "tasks history projects/p/locations/l/queues/q/tasks/a --format json --response-view full",
    )
    .await;
    assert!(json_run.ok, "stderr: {}", json_run.stderr);
    let parsed: Value = serde_json::from_str(&json_run.stdout).unwrap();
    assert_eq!(parsed["attempts"][1]["httpStatus"], 500);
    assert_eq!(server.requests()[1].query, "responseView=FULL");

    let missing = stratus(&server.endpoint, "tasks history missing --queue q").await;
    assert!(!missing.ok);
    assert_eq!(
        missing.stderr.trim(),
        "error: NOT_FOUND: Requested entity was not found."
    );
    let no_queue = stratus(&server.endpoint, "tasks history a").await;
    assert!(!no_queue.ok);
    assert!(
        no_queue.stderr.contains("--queue is required"),
        "{}",
        no_queue.stderr
    );
}

#[tokio::test]
async fn tasks_retry_posts_to_the_stratus_api() {
    let server = FakeServer::start(retention).await;
    let run = stratus(&server.endpoint, "tasks retry a --queue q --format json").await;
    assert!(run.ok, "stderr: {}", run.stderr);
    let req = &server.requests()[0];
    assert_eq!(
        (req.method.as_str(), req.path.as_str()),
        (
            "POST",
            "/stratus/v1/projects/local/locations/local/queues/q/tasks/a:retry"
        )
    );
    assert_eq!(req.body, Value::Null, "no body");
    assert!(
        run.stderr
            .contains("Retried task [projects/local/locations/local/queues/q/tasks/a]."),
        "{}",
        run.stderr
    );
    let task: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(task["scheduleTime"], "2030-01-02T00:00:00Z");

    let live = stratus(&server.endpoint, "tasks retry live --queue q").await;
    assert!(!live.ok);
    assert!(
        live.stderr
            .contains("error: FAILED_PRECONDITION: Task projects/p/locations/l/queues/q/tasks/live is still scheduled"),
        "{}",
        live.stderr
    );
    let missing = stratus(&server.endpoint, "tasks retry missing --queue q").await;
    assert!(!missing.ok);
    assert!(missing.stderr.contains("NOT_FOUND"), "{}", missing.stderr);
    assert_eq!(live.stdout, "");
}
