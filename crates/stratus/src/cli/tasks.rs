//! `stratus tasks …`: create HTTP tasks, describe, list, delete and run them; and, through
//! Stratus' own API under `/stratus/v1/` (beyond Cloud Tasks), list a queue's failed tasks,
//! show a task's state and attempt history, and retry a finished task.

use anyhow::{Context, Result, bail};
use base64::Engine;
use clap::{Args, Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::client::Client;
use super::names::{self, Segments, TaskName};
use super::output::{self, Column};
use super::queues::RetryArgs;
use super::{Fields, Format, GlobalArgs, HttpMethod, LocationArgs, parse};

/// Task commands, shaped like `gcloud tasks`.
#[derive(Subcommand, Debug)]
pub enum TasksCommand {
    /// Create a task that sends an HTTP request to `--url`.
    CreateHttpTask(Box<CreateHttpTaskArgs>),
    /// Show a task.
    Describe(TaskViewArgs),
    /// List the tasks of a queue (every page is fetched).
    List(TaskListArgs),
    /// Delete a task.
    Delete(TaskArgs),
    /// Dispatch a task now, ignoring its schedule time, a paused queue and rate limits.
    Run(TaskViewArgs),
    /// List the tasks of a queue that ran out of attempts and are still kept (Stratus only;
    /// every page is fetched).
    Failed(TaskListArgs),
    /// Show a task's state (SCHEDULED, SUCCEEDED, FAILED) and its attempts, for
    /// live tasks and finished ones still kept (Stratus only).
    History(TaskViewArgs),
    /// Schedule a failed or succeeded task again now, with a fresh retry budget (Stratus only).
    Retry(TaskViewArgs),
}

/// A command on one task.
#[derive(Args, Debug)]
pub struct TaskArgs {
    /// The task: a short ID (with --queue) or a full `projects/…/queues/Q/tasks/T` name.
    pub task: String,
    /// The queue of the task: a short ID or a full queue name.
    #[arg(long)]
    queue: Option<String>,
    #[command(flatten)]
    location: LocationArgs,
    #[command(flatten)]
    global: GlobalArgs,
}

/// `tasks describe` and `tasks run`: one task, and how much of it to return.
#[derive(Args, Debug)]
pub struct TaskViewArgs {
    #[command(flatten)]
    target: TaskArgs,
    /// How much of the task to return: `basic` omits the body, `full` includes it.
    #[arg(long, value_enum, ignore_case = true)]
    response_view: Option<ResponseView>,
}

/// `tasks list`.
#[derive(Args, Debug)]
pub struct TaskListArgs {
    /// The queue: a short ID or a full `projects/P/locations/L/queues/Q` name.
    #[arg(long)]
    queue: String,
    /// Tasks per page requested from the server (the server's maximum when absent).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    page_size: Option<u32>,
    /// Stop after this many tasks in total.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    limit: Option<u64>,
    /// How much of each task to return: `basic` omits the body, `full` includes it.
    #[arg(long, value_enum, ignore_case = true)]
    response_view: Option<ResponseView>,
    #[command(flatten)]
    location: LocationArgs,
    #[command(flatten)]
    global: GlobalArgs,
}

/// `Task.View`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseView {
    /// Everything but the body (the server's default).
    Basic,
    /// Everything, the body included.
    Full,
}

impl ResponseView {
    fn as_str(self) -> &'static str {
        match self {
            ResponseView::Basic => "BASIC",
            ResponseView::Full => "FULL",
        }
    }
}

/// `tasks create-http-task`.
#[derive(Args, Debug)]
pub struct CreateHttpTaskArgs {
    /// Task ID or full task name; without it the server picks an ID.
    pub task: Option<String>,
    /// The queue to add the task to: a short ID or a full queue name.
    #[arg(long)]
    queue: Option<String>,
    /// The URL the task's request is sent to (http:// or https://).
    #[arg(long)]
    url: String,
    /// HTTP method of the request.
    #[arg(long, value_enum, ignore_case = true, default_value_t = HttpMethod::Post)]
    method: HttpMethod,
    /// A request header as `KEY:VALUE`; repeat the flag for several. Repeated keys are joined
    /// with `, `.
    #[arg(long, value_parser = parse::header)]
    header: Vec<(String, String)>,
    /// Request body, as text (POST, PUT and PATCH only).
    #[arg(long, conflicts_with = "body_file")]
    body_content: Option<String>,
    /// Read the request body from this file.
    #[arg(long)]
    body_file: Option<std::path::PathBuf>,
    /// When to dispatch: RFC 3339 (`2030-01-02T03:04:05Z`) or `+DURATION` from now (`+10m`).
    #[arg(long, value_parser = parse::schedule_time)]
    schedule_time: Option<String>,
    /// Send an OIDC token for this service account.
    #[arg(long, help_heading = "Authorization")]
    #[arg(conflicts_with = "oauth_service_account_email")]
    oidc_service_account_email: Option<String>,
    /// Audience of the OIDC token (the URL when absent).
    #[arg(
        long,
        help_heading = "Authorization",
        requires = "oidc_service_account_email"
    )]
    oidc_token_audience: Option<String>,
    /// Send an OAuth access token for this service account.
    #[arg(long, help_heading = "Authorization")]
    oauth_service_account_email: Option<String>,
    /// Scope of the OAuth token.
    #[arg(
        long,
        help_heading = "Authorization",
        requires = "oauth_service_account_email"
    )]
    oauth_token_scope: Option<String>,
    /// How long one attempt may take before it counts as failed (15s to 30m; server default
    /// 10m).
    #[arg(long, value_parser = parse::duration)]
    dispatch_deadline: Option<String>,
    // Retry settings for this task only (`task.retryConfig`), overriding the queue's.
    #[command(flatten)]
    retry: RetryArgs,
    #[command(flatten)]
    location: LocationArgs,
    #[command(flatten)]
    global: GlobalArgs,
}

/// The table columns of `tasks list`.
const COLUMNS: &[Column] = &[
    Column::new("ID", output::short_name),
    Column::new("SCHEDULE_TIME", |t| output::field(t, "scheduleTime", "")),
    Column::new("DISPATCH_COUNT", |t| output::field(t, "dispatchCount", "0")),
    Column::new("RESPONSE_COUNT", |t| output::field(t, "responseCount", "0")),
    Column::new("METHOD", method_cell),
    Column::new("URL", url_cell),
];

/// The table columns of `tasks failed` (each item is a task status: `{task, state, …}`).
const FAILED_COLUMNS: &[Column] = &[
    Column::new("ID", |s| output::short_name(&s["task"])),
    Column::new("FINISH_TIME", |s| output::field(s, "finishTime", "")),
    Column::new("DISPATCH_COUNT", |s| {
        output::field(s, "task.dispatchCount", "0")
    }),
    Column::new("LAST_RESPONSE", |s| {
        output::field(s, "task.lastAttempt.responseStatus.message", "")
    }),
    Column::new("METHOD", |s| method_cell(&s["task"])),
    Column::new("URL", |s| url_cell(&s["task"])),
];

/// The table columns of the attempts in `tasks history`.
const ATTEMPT_COLUMNS: &[Column] = &[
    Column::new("SEQ", |a| output::field(a, "seq", "")),
    Column::new("DISPATCH_TIME", |a| output::field(a, "dispatchTime", "")),
    Column::new("RESPONSE_TIME", |a| output::field(a, "responseTime", "")),
    Column::new("HTTP_STATUS", |a| output::field(a, "httpStatus", "-")),
    Column::new("LATENCY_MS", |a| output::field(a, "latencyMs", "")),
    Column::new("ERROR", |a| output::field(a, "error", "")),
];

/// The method of an HTTP or App Engine task, whether sent as a name or a number.
fn method_cell(t: &Value) -> String {
    let raw = match t.get("httpRequest") {
        Some(r) => output::field(r, "httpMethod", "POST"),
        None => output::field(t, "appEngineHttpRequest.httpMethod", "POST"),
    };
    const NAMES: [&str; 8] = [
        "HTTP_METHOD_UNSPECIFIED",
        "POST",
        "GET",
        "HEAD",
        "PUT",
        "DELETE",
        "PATCH",
        "OPTIONS",
    ];
    raw.parse::<usize>()
        .ok()
        .and_then(|i| NAMES.get(i))
        .map_or(raw, |n| n.to_string())
}

/// The URL of an HTTP task, or the relative URI of an App Engine task.
fn url_cell(t: &Value) -> String {
    match t.get("httpRequest") {
        Some(r) => output::field(r, "url", ""),
        None => output::field(t, "appEngineHttpRequest.relativeUri", ""),
    }
}

/// Runs one `stratus tasks …` command.
pub async fn run_tasks(cmd: TasksCommand) -> Result<()> {
    match cmd {
        TasksCommand::CreateHttpTask(a) => create_http_task(*a).await,
        TasksCommand::List(a) => list(a).await,
        TasksCommand::Describe(a) => {
            let (client, name) = open(&a.target)?;
            let query: Vec<_> = (a.response_view.iter())
                .map(|v| ("responseView", v.as_str().to_string()))
                .collect();
            let task = client
                .call(Method::GET, &name.segments(), "", &query, None)
                .await?;
            output::resource(a.target.global.format, &task);
            Ok(())
        }
        TasksCommand::Run(a) => {
            let (client, name) = open(&a.target)?;
            let mut body = Map::new();
            if let Some(v) = a.response_view {
                body.insert("responseView".into(), json!(v.as_str()));
            }
            let task = (client.call(
                Method::POST,
                &name.segments(),
                ":run",
                &[],
                Some(&body.into()),
            ))
            .await?;
            output::narrate(&format!("Ran task [{name}]."));
            output::resource(a.target.global.format, &task);
            Ok(())
        }
        TasksCommand::Failed(a) => failed(a).await,
        TasksCommand::History(a) => {
            let (client, name) = open(&a.target)?;
            let status = client
                .stratus()
                .call(Method::GET, &name.segments(), "", &view_query(&a), None)
                .await?;
            print_history(a.target.global.format, &status);
            Ok(())
        }
        TasksCommand::Retry(a) => {
            let (client, name) = open(&a.target)?;
            let task = client
                .stratus()
                .call(
                    Method::POST,
                    &name.segments(),
                    ":retry",
                    &view_query(&a),
                    None,
                )
                .await?;
            output::narrate(&format!("Retried task [{name}]."));
            output::resource(a.target.global.format, &task);
            Ok(())
        }
        TasksCommand::Delete(a) => {
            let (client, name) = open(&a)?;
            let answer = client
                .call(Method::DELETE, &name.segments(), "", &[], None)
                .await?;
            output::narrate(&format!("Deleted task [{name}]."));
            if a.global.format == Format::Json {
                output::json(&answer);
            }
            Ok(())
        }
    }
}

/// `responseView=…` when `--response-view` is given.
fn view_query(a: &TaskViewArgs) -> Vec<(&'static str, String)> {
    (a.response_view.iter())
        .map(|v| ("responseView", v.as_str().to_string()))
        .collect()
}

/// Prints a task status: the JSON as is, or a summary followed by a table of attempts.
fn print_history(format: Format, status: &Value) {
    if format == Format::Json {
        output::json(status);
        return;
    }
    let task = &status["task"];
    output::pairs(&[
        ("name", output::field(task, "name", "")),
        ("state", output::field(status, "state", "")),
        ("scheduleTime", output::field(task, "scheduleTime", "")),
        ("finishTime", output::field(status, "finishTime", "-")),
        ("dispatchCount", output::field(task, "dispatchCount", "0")),
        ("method", method_cell(task)),
        ("url", url_cell(task)),
    ]);
    match status.get("attempts").and_then(Value::as_array) {
        Some(attempts) if !attempts.is_empty() => {
            output::out("\n");
            output::list(format, attempts, ATTEMPT_COLUMNS);
        }
        _ => output::narrate("No attempts recorded."),
    }
}

/// The client and the resolved task name of a one-task command.
fn open(a: &TaskArgs) -> Result<(Client, TaskName)> {
    let name = names::resolve_task(&a.task, a.queue.as_deref(), &a.location)?;
    Ok((Client::for_args(&a.global)?, name))
}

async fn create_http_task(a: CreateHttpTaskArgs) -> Result<()> {
    let client = Client::for_args(&a.global)?;
    let (queue, task_name) = match &a.task {
        Some(t) => {
            let name = names::resolve_task(t, a.queue.as_deref(), &a.location)?;
            (name.queue.clone(), Some(name.to_string()))
        }
        None => match &a.queue {
            Some(q) => (names::resolve_queue(q, &a.location)?, None),
            None => bail!("--queue is required unless TASK is a full projects/…/tasks/… name"),
        },
    };
    let mut task = Fields::default();
    task.set_opt("name", task_name);
    task.set("httpRequest.url", a.url.as_str());
    task.set("httpRequest.httpMethod", a.method.as_str());
    if !a.header.is_empty() {
        let mut headers = Map::new();
        for (k, v) in &a.header {
            match headers.get_mut(k) {
                Some(Value::String(prev)) => *prev = format!("{prev}, {v}"),
                _ => {
                    headers.insert(k.clone(), json!(v));
                }
            }
        }
        task.set("httpRequest.headers", headers);
    }
    let body = match (&a.body_content, &a.body_file) {
        (Some(text), _) => Some(text.clone().into_bytes()),
        (None, Some(path)) => Some(
            (tokio::fs::read(path).await)
                .with_context(|| format!("cannot read --body-file {}", path.display()))?,
        ),
        (None, None) => None,
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    task.set_opt("httpRequest.body", body.map(|b| b64.encode(b)));
    if let Some(email) = &a.oidc_service_account_email {
        let mut token = json!({ "serviceAccountEmail": email });
        if let Some(aud) = &a.oidc_token_audience {
            token["audience"] = json!(aud);
        }
        task.set("httpRequest.oidcToken", token);
    }
    if let Some(email) = &a.oauth_service_account_email {
        let mut token = json!({ "serviceAccountEmail": email });
        if let Some(scope) = &a.oauth_token_scope {
            token["scope"] = json!(scope);
        }
        task.set("httpRequest.oauthToken", token);
    }
    task.set_opt("scheduleTime", a.schedule_time.clone());
    task.set_opt("dispatchDeadline", a.dispatch_deadline.clone());
    a.retry.apply(&mut task);

    let mut segments = queue.segments();
    segments.push("tasks".into());
    let request = json!({ "task": task.body });
    let created = client
        .call(Method::POST, &segments, "", &[], Some(&request))
        .await?;
    let shown = output::field(&created, "name", "");
    output::narrate(&format!("Created task [{shown}]."));
    output::resource(a.global.format, &created);
    Ok(())
}

async fn list(a: TaskListArgs) -> Result<()> {
    let client = Client::for_args(&a.global)?;
    list_from(client, a, "tasks", COLUMNS).await
}

/// Pages through a queue's task collection `collection` (`tasks` on the Cloud Tasks API,
/// `failedTasks` on Stratus' own) and prints it.
async fn list_from(
    client: Client,
    a: TaskListArgs,
    collection: &str,
    columns: &[Column],
) -> Result<()> {
    let queue = names::resolve_queue(&a.queue, &a.location)?;
    let mut query = Vec::new();
    if let Some(v) = a.response_view {
        query.push(("responseView", v.as_str().to_string()));
    }
    if let Some(size) = a.page_size {
        query.push(("pageSize", size.to_string()));
    }
    let mut segments = queue.segments();
    segments.push(collection.into());
    let limit = a.limit.map(|l| usize::try_from(l).unwrap_or(usize::MAX));
    let tasks = client.list(&segments, &query, "tasks", limit).await?;
    output::list(a.global.format, &tasks, columns);
    Ok(())
}

async fn failed(a: TaskListArgs) -> Result<()> {
    let client = Client::for_args(&a.global)?.stratus();
    list_from(client, a, "failedTasks", FAILED_COLUMNS).await
}
