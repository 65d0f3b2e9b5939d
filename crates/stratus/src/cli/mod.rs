//! The `stratus queues …` and `stratus tasks …` commands: a REST client shaped like `gcloud tasks`.
//!
//! Parts:
//! - this file: the options every command shares ([`GlobalArgs`], [`LocationArgs`]) and the entry
//!   points `main.rs` calls;
//! - `queues.rs` / `tasks.rs`: one clap subcommand enum each, with the flag → JSON mapping;
//! - `client.rs`: the HTTP client (URL building, paging, error texts);
//! - `names.rs`: queue and task names from a short ID or a full resource name;
//! - `parse.rs`: flag value parsers (gcloud durations, `KEY:VALUE` headers, `--http-uri-override`);
//! - `output.rs`: `--format table|json` rendering.
//!
//! Output goes to stdout (the resource or the table) and narration (`Created queue [...]`) to
//! stderr, so `--format json` output can be piped into `jq` unchanged.
//!
//! Unlike gcloud, `queues delete` and `queues purge` only prompt when stdin is a terminal: in
//! scripts (stdin not a TTY) they proceed without `--quiet`, so the CLI stays scriptable.

mod client;
mod names;
mod output;
mod parse;
mod queues;
mod tasks;

use std::io::{BufRead, IsTerminal, Write};

use clap::{Args, ValueEnum};
use serde_json::{Map, Value};

pub use queues::{QueuesCommand, run_queues};
pub use tasks::{TasksCommand, run_tasks};

/// Options shared by every `queues` and `tasks` command.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Base URL of the Stratus server (the `/v2/...` and `/stratus/v1/...` paths are appended).
    #[arg(
        long,
        env = "STRATUS_ENDPOINT",
        default_value = "http://127.0.0.1:8123"
    )]
    pub endpoint: String,
    /// API token of the server (`stratus tokens create`), sent as `Authorization: Bearer`.
    /// Needed when the server has tokens configured.
    #[arg(long, env = "STRATUS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Output format: `table` (human-readable) or `json` (the server's JSON, pretty-printed).
    /// Only these two are supported.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Never prompt for confirmation (delete, purge). Prompts are only shown when stdin is a
    /// terminal anyway, so scripts never block.
    #[arg(long, short)]
    pub quiet: bool,
}

/// The project and location that short queue IDs are resolved in.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Location")]
pub struct LocationArgs {
    /// Project ID of the queue (a self-hosted server accepts any project). Ignored when a full
    /// `projects/…` name is given.
    #[arg(long, env = "STRATUS_PROJECT", default_value = "local")]
    pub project: String,
    /// Location ID of the queue. Ignored when a full `projects/…` name is given.
    #[arg(long, env = "STRATUS_LOCATION", default_value = "local")]
    pub location: String,
}

/// How results are printed.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A compact table for lists, `key: value` lines for a single resource.
    Table,
    /// The server's JSON, pretty-printed (lists become one JSON array).
    Json,
}

/// HTTP methods a task or a queue-level override can use (`HttpMethod` in the API).
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    /// POST (the default for tasks).
    Post,
    /// GET.
    Get,
    /// HEAD.
    Head,
    /// PUT.
    Put,
    /// DELETE.
    Delete,
    /// PATCH.
    Patch,
    /// OPTIONS.
    Options,
}

impl HttpMethod {
    /// The proto enum name sent in JSON, e.g. `"POST"`.
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Post => "POST",
            HttpMethod::Get => "GET",
            HttpMethod::Head => "HEAD",
            HttpMethod::Put => "PUT",
            HttpMethod::Delete => "DELETE",
            HttpMethod::Patch => "PATCH",
            HttpMethod::Options => "OPTIONS",
        }
    }
}

/// Asks `question` on stderr unless `--quiet` is set or stdin is not a terminal.
///
/// Returns an error ("aborted by user") when the answer is not yes; an empty answer means yes,
/// as in gcloud's `(Y/n)` prompts.
fn confirm(global: &GlobalArgs, question: &str) -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    if global.quiet || !stdin.is_terminal() {
        return Ok(());
    }
    eprint!("{question}\n\nDo you want to continue (Y/n)? ");
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    // A blocking read is fine here: the CLI runs one request at a time.
    stdin.lock().read_line(&mut answer)?;
    match answer.trim().to_ascii_lowercase().as_str() {
        "" | "y" | "yes" => Ok(()),
        _ => anyhow::bail!("aborted by user"),
    }
}

/// A JSON request body under construction, and the update-mask paths of the fields set.
#[derive(Debug, Default)]
pub struct Fields {
    /// The body so far.
    pub body: Map<String, Value>,
    /// Dotted lowerCamelCase paths, in the order they were set (`rateLimits.maxBurstSize`).
    pub mask: Vec<String>,
}

impl Fields {
    /// Sets the value at dotted `path`, creating parent objects, and records `path` in the mask.
    pub fn set(&mut self, path: &str, value: impl Into<Value>) {
        let mut obj = &mut self.body;
        let mut keys = path.split('.').peekable();
        while let Some(key) = keys.next() {
            if keys.peek().is_none() {
                obj.insert(key.to_string(), value.into());
                break;
            }
            let child = obj
                .entry(key.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if !child.is_object() {
                *child = Value::Object(Map::new());
            }
            let Value::Object(next) = child else { break };
            obj = next;
        }
        if !self.mask.iter().any(|m| m == path) {
            self.mask.push(path.to_string());
        }
    }

    /// [`Fields::set`] when `value` is present.
    pub fn set_opt<T: Into<Value>>(&mut self, path: &str, value: Option<T>) {
        if let Some(v) = value {
            self.set(path, v);
        }
    }
}
