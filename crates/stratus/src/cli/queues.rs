//! `stratus queues …`: create, describe, list, update, pause, resume, purge and delete queues,
//! and (Stratus' own API) the last minute of every queue of a location.

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

use super::client::Client;
use super::names::{self, QueueName, Segments};
use super::output::{self, Column};
use super::{Fields, GlobalArgs, HttpMethod, LocationArgs, confirm, parse};

/// Queue commands, shaped like `gcloud tasks queues`.
#[derive(Subcommand, Debug)]
pub enum QueuesCommand {
    /// Create a queue; settings not given keep the server's defaults.
    Create(Box<QueueConfigArgs>),
    /// Show a queue's configuration and state.
    Describe(QueueArgs),
    /// List the queues in a location (every page is fetched).
    List(QueueListArgs),
    /// Change only the settings given as flags (PATCH with an updateMask). Like the API's
    /// UpdateQueue, this creates the queue when it does not exist.
    Update(Box<QueueConfigArgs>),
    /// Pause a queue: tasks are still accepted but not dispatched.
    Pause(QueueArgs),
    /// Resume a paused queue.
    Resume(QueueArgs),
    /// Delete every task in a queue. Prompts first only when stdin is a terminal and --quiet
    /// is not given.
    Purge(QueueArgs),
    /// Delete a queue and all its tasks. Prompts first only when stdin is a terminal and
    /// --quiet is not given.
    Delete(QueueArgs),
    /// Show what each queue of a location did over the last minute: tasks created, attempts
    /// dispatched, succeeded and failed, retries, attempts in flight and the rates, added up
    /// over every node of a cluster (Stratus only; idle queues are left out).
    Stats(QueueStatsArgs),
}

/// `queues stats`.
#[derive(Args, Debug)]
pub struct QueueStatsArgs {
    #[command(flatten)]
    location: LocationArgs,
    #[command(flatten)]
    global: GlobalArgs,
}

/// A command on one queue.
#[derive(Args, Debug)]
pub struct QueueArgs {
    /// The queue: a short ID or a full `projects/P/locations/L/queues/Q` name.
    pub queue: String,
    #[command(flatten)]
    location: LocationArgs,
    #[command(flatten)]
    global: GlobalArgs,
}

/// `queues list`.
#[derive(Args, Debug)]
pub struct QueueListArgs {
    /// Server-side filter, e.g. `state: PAUSED`.
    #[arg(long)]
    filter: Option<String>,
    /// Queues per page requested from the server (the server's maximum when absent).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    page_size: Option<u32>,
    /// Stop after this many queues in total.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    limit: Option<u64>,
    #[command(flatten)]
    location: LocationArgs,
    #[command(flatten)]
    global: GlobalArgs,
}

/// `queues create` and `queues update`: the queue and the settings to give it.
#[derive(Args, Debug)]
pub struct QueueConfigArgs {
    /// The queue: a short ID or a full `projects/P/locations/L/queues/Q` name.
    pub queue: String,
    #[command(flatten)]
    retry: RetryArgs,
    /// Maximum rate of dispatches, in tasks per second (at most 500).
    #[arg(long, help_heading = "Rate limits")]
    max_dispatches_per_second: Option<f64>,
    /// Maximum number of tasks dispatched at the same time (at most 5000).
    #[arg(long, help_heading = "Rate limits", value_parser = clap::value_parser!(i32).range(0..))]
    max_concurrent_dispatches: Option<i32>,
    /// Fraction of operations to log, 0.0 to 1.0.
    #[arg(long, help_heading = "Logging")]
    log_sampling_ratio: Option<f64>,
    #[command(flatten)]
    http: HttpTargetArgs,
    #[command(flatten)]
    location: LocationArgs,
    #[command(flatten)]
    global: GlobalArgs,
}

/// Retry settings, used for queues (`retryConfig`) and for single tasks (`task.retryConfig`).
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Retry config")]
pub struct RetryArgs {
    /// Maximum attempts per task, the first included; -1 or `unlimited` for no limit.
    #[arg(long, value_parser = parse::max_attempts, allow_negative_numbers = true)]
    pub max_attempts: Option<i32>,
    /// How long a failing task keeps being retried after its first attempt (e.g. `1h`);
    /// 0 means no limit.
    #[arg(long, value_parser = parse::duration)]
    pub max_retry_duration: Option<String>,
    /// Shortest delay before a retry (e.g. `0.1s`, `10s`).
    #[arg(long, value_parser = parse::duration)]
    pub min_backoff: Option<String>,
    /// Longest delay before a retry (e.g. `1h`).
    #[arg(long, value_parser = parse::duration)]
    pub max_backoff: Option<String>,
    /// How many times the delay doubles before it grows linearly.
    #[arg(long, value_parser = clap::value_parser!(i32).range(0..))]
    pub max_doublings: Option<i32>,
}

impl RetryArgs {
    /// Puts the given settings under `retryConfig.*`.
    pub fn apply(&self, f: &mut Fields) {
        f.set_opt("retryConfig.maxAttempts", self.max_attempts);
        f.set_opt(
            "retryConfig.maxRetryDuration",
            self.max_retry_duration.clone(),
        );
        f.set_opt("retryConfig.minBackoff", self.min_backoff.clone());
        f.set_opt("retryConfig.maxBackoff", self.max_backoff.clone());
        f.set_opt("retryConfig.maxDoublings", self.max_doublings);
    }
}

/// Queue-level overrides applied to every HTTP task of the queue (`httpTarget`).
#[derive(Args, Debug)]
#[command(next_help_heading = "HTTP target overrides")]
pub struct HttpTargetArgs {
    /// Rewrite parts of every task's URL (every key optional; mode is `always` or
    /// `if-not-exists`):
    /// `scheme:https,host:example.com,port:8443,path:/x,query:a=b,mode:always`
    #[arg(long, value_parser = parse::uri_override)]
    http_uri_override: Option<Value>,
    /// Use this HTTP method for every task.
    #[arg(long, value_enum, ignore_case = true)]
    http_method_override: Option<HttpMethod>,
    /// Set a header on every task, as `KEY:VALUE`; repeat the flag for several headers.
    #[arg(long, value_parser = parse::header)]
    http_header_override: Vec<(String, String)>,
    /// Send an OIDC token for this service account with every task.
    #[arg(long, conflicts_with = "http_oauth_service_account_email_override")]
    http_oidc_service_account_email_override: Option<String>,
    /// Audience of the OIDC token (the task's URL when absent).
    #[arg(long, requires = "http_oidc_service_account_email_override")]
    http_oidc_token_audience_override: Option<String>,
    /// Send an OAuth token for this service account with every task.
    #[arg(long)]
    http_oauth_service_account_email_override: Option<String>,
    /// Scope of the OAuth token.
    #[arg(long, requires = "http_oauth_service_account_email_override")]
    http_oauth_token_scope_override: Option<String>,
}

impl HttpTargetArgs {
    /// Puts the given overrides under `httpTarget.*`.
    fn apply(&self, f: &mut Fields) {
        f.set_opt("httpTarget.uriOverride", self.http_uri_override.clone());
        f.set_opt(
            "httpTarget.httpMethod",
            self.http_method_override.map(HttpMethod::as_str),
        );
        if !self.http_header_override.is_empty() {
            let headers: Vec<Value> = (self.http_header_override.iter())
                .map(|(k, v)| json!({ "header": { "key": k, "value": v } }))
                .collect();
            f.set("httpTarget.headerOverrides", headers);
        }
        if let Some(email) = &self.http_oidc_service_account_email_override {
            let mut token = json!({ "serviceAccountEmail": email });
            if let Some(aud) = &self.http_oidc_token_audience_override {
                token["audience"] = json!(aud);
            }
            f.set("httpTarget.oidcToken", token);
        }
        if let Some(email) = &self.http_oauth_service_account_email_override {
            let mut token = json!({ "serviceAccountEmail": email });
            if let Some(scope) = &self.http_oauth_token_scope_override {
                token["scope"] = json!(scope);
            }
            f.set("httpTarget.oauthToken", token);
        }
    }
}

impl QueueConfigArgs {
    /// The settings given as flags, with their mask paths.
    fn fields(&self) -> Fields {
        let mut f = Fields::default();
        self.retry.apply(&mut f);
        f.set_opt(
            "rateLimits.maxDispatchesPerSecond",
            self.max_dispatches_per_second,
        );
        f.set_opt(
            "rateLimits.maxConcurrentDispatches",
            self.max_concurrent_dispatches,
        );
        f.set_opt(
            "stackdriverLoggingConfig.samplingRatio",
            self.log_sampling_ratio,
        );
        self.http.apply(&mut f);
        f
    }
}

/// The table columns of `queues list`.
const COLUMNS: &[Column] = &[
    Column::new("ID", output::short_name),
    Column::new("STATE", |q| state_name(&output::field(q, "state", ""))),
    Column::new("MAX_RATE", |q| {
        output::field(q, "rateLimits.maxDispatchesPerSecond", "")
    }),
    Column::new("MAX_CONCURRENT", |q| {
        output::field(q, "rateLimits.maxConcurrentDispatches", "")
    }),
    Column::new("MAX_ATTEMPTS", |q| {
        output::field(q, "retryConfig.maxAttempts", "")
    }),
];

/// The table columns of `queues stats` (each item is one queue's last minute).
const STATS_COLUMNS: &[Column] = &[
    Column::new("ID", |s| output::last_segment(s, "queue")),
    Column::new("DISPATCH/S", |s| output::field(s, "dispatchRate", "0")),
    Column::new("DISPATCHED", |s| output::field(s, "dispatches", "0")),
    Column::new("SUCCEEDED", |s| output::field(s, "succeeded", "0")),
    Column::new("FAILED", |s| output::field(s, "failed", "0")),
    Column::new("RETRIES", |s| output::field(s, "retries", "0")),
    Column::new("FAILED_FOR_GOOD", |s| {
        output::field(s, "permanentFailures", "0")
    }),
    Column::new("IN_FLIGHT", |s| output::field(s, "inFlight", "0")),
    Column::new("CREATE/S", |s| output::field(s, "createRate", "0")),
    Column::new("WINDOW_S", |s| output::field(s, "windowSeconds", "")),
];

/// `Queue.State` as a name, whether the server sent the name or the number.
fn state_name(s: &str) -> String {
    match s {
        "0" => "STATE_UNSPECIFIED".into(),
        "1" => "RUNNING".into(),
        "2" => "PAUSED".into(),
        "3" => "DISABLED".into(),
        other => other.into(),
    }
}

/// Runs one `stratus queues …` command.
pub async fn run_queues(cmd: QueuesCommand) -> Result<()> {
    match cmd {
        QueuesCommand::Create(a) => create(*a).await,
        QueuesCommand::Update(a) => update(*a).await,
        QueuesCommand::List(a) => list(a).await,
        QueuesCommand::Describe(a) => {
            let (client, name) = open(&a)?;
            let queue = client
                .call(Method::GET, &name.segments(), "", &[], None)
                .await?;
            output::resource(a.global.format, &queue);
            Ok(())
        }
        QueuesCommand::Stats(a) => stats(a).await,
        QueuesCommand::Pause(a) => action(a, ":pause", "Paused").await,
        QueuesCommand::Resume(a) => action(a, ":resume", "Resumed").await,
        QueuesCommand::Purge(a) => {
            let name = names::resolve_queue(&a.queue, &a.location)?;
            confirm(
                &a.global,
                &format!(
                    "You are about to purge queue [{name}]: every task in it will be deleted."
                ),
            )?;
            action(a, ":purge", "Purged").await
        }
        QueuesCommand::Delete(a) => {
            let (client, name) = open(&a)?;
            confirm(
                &a.global,
                &format!("You are about to delete queue [{name}] and all its tasks."),
            )?;
            let answer = client
                .call(Method::DELETE, &name.segments(), "", &[], None)
                .await?;
            output::narrate(&format!("Deleted queue [{name}]."));
            if a.global.format == super::Format::Json {
                output::json(&answer);
            }
            Ok(())
        }
    }
}

/// The client and the resolved queue name of a one-queue command.
fn open(a: &QueueArgs) -> Result<(Client, QueueName)> {
    Ok((
        Client::for_args(&a.global)?,
        names::resolve_queue(&a.queue, &a.location)?,
    ))
}

/// POST `{queue}{suffix}` with `{}`: pause, resume, purge.
async fn action(a: QueueArgs, suffix: &str, verb: &str) -> Result<()> {
    let (client, name) = open(&a)?;
    let queue = client
        .call(
            Method::POST,
            &name.segments(),
            suffix,
            &[],
            Some(&json!({})),
        )
        .await?;
    output::narrate(&format!("{verb} queue [{name}]."));
    if a.global.format == super::Format::Json {
        output::json(&queue);
    }
    Ok(())
}

async fn create(a: QueueConfigArgs) -> Result<()> {
    let client = Client::for_args(&a.global)?;
    let name = names::resolve_queue(&a.queue, &a.location)?;
    let mut f = a.fields();
    f.body.insert("name".into(), json!(name.to_string()));
    let mut segments = name.location.segments();
    segments.push("queues".into());
    let queue = client
        .call(Method::POST, &segments, "", &[], Some(&f.body.into()))
        .await?;
    output::narrate(&format!("Created queue [{name}]."));
    output::resource(a.global.format, &queue);
    Ok(())
}

async fn update(a: QueueConfigArgs) -> Result<()> {
    let client = Client::for_args(&a.global)?;
    let name = names::resolve_queue(&a.queue, &a.location)?;
    let mut f = a.fields();
    if f.mask.is_empty() {
        bail!(
            "nothing to update: give at least one setting flag (see `stratus queues update --help`)"
        );
    }
    f.body.insert("name".into(), json!(name.to_string()));
    let query = [("updateMask", f.mask.join(","))];
    let queue = (client.call(
        Method::PATCH,
        &name.segments(),
        "",
        &query,
        Some(&f.body.into()),
    ))
    .await?;
    output::narrate(&format!("Updated queue [{name}]."));
    output::resource(a.global.format, &queue);
    Ok(())
}

async fn stats(a: QueueStatsArgs) -> Result<()> {
    let client = Client::for_args(&a.global)?.stratus();
    let mut segments = names::location_from_args(&a.location)?.segments();
    segments.push("queueStats".into());
    let v = client.call(Method::GET, &segments, "", &[], None).await?;
    let items = v["queueStats"].as_array().cloned().unwrap_or_default();
    output::list(a.global.format, &items, STATS_COLUMNS);
    Ok(())
}

async fn list(a: QueueListArgs) -> Result<()> {
    let client = Client::for_args(&a.global)?;
    let parent = names::location_from_args(&a.location)?;
    let mut query = Vec::new();
    if let Some(filter) = a.filter {
        query.push(("filter", filter));
    }
    if let Some(size) = a.page_size {
        query.push(("pageSize", size.to_string()));
    }
    let mut segments = parent.segments();
    segments.push("queues".into());
    let limit = a.limit.map(|l| usize::try_from(l).unwrap_or(usize::MAX));
    let queues = client.list(&segments, &query, "queues", limit).await?;
    output::list(a.global.format, &queues, COLUMNS);
    Ok(())
}
