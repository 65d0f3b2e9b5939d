//! The `stratus` binary: `stratus serve` runs the server; `stratus queues|tasks …` is a CLI
//! shaped like `gcloud tasks` that talks to a server over REST.

mod cli;
mod config;
mod health;
mod listener;
mod logging;
mod serve;
mod tls;
mod tokens;
mod ui;

use clap::{Parser, Subcommand};

/// mimalloc: the server allocates and frees many small buffers per request (HTTP, JSON,
/// protos); it measured faster than the system allocator under the create benchmark.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Stratus: a durable HTTP task queue speaking the Google Cloud Tasks v2 API.
#[derive(Parser)]
#[command(name = "stratus", version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (REST API on one port, embedded SQLite store by default).
    Serve(Box<serve::ServeArgs>),
    /// Apply pending PostgreSQL store migrations (`serve` also applies them unless --no-migrate).
    Migrate(serve::MigrateArgs),
    /// Make API tokens for the config file's `[[tokens]]`.
    #[command(subcommand)]
    Tokens(tokens::TokensCommand),
    /// Manage queues (like `gcloud tasks queues`).
    #[command(subcommand)]
    Queues(cli::QueuesCommand),
    /// Manage tasks (like `gcloud tasks`).
    #[command(subcommand)]
    Tasks(cli::TasksCommand),
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    // Token commands are local and synchronous: no runtime needed.
    let args = match args.command {
        Command::Tokens(c) => {
            return match tokens::run(c) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    std::process::ExitCode::FAILURE
                }
            };
        }
        other => Args { command: other },
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match args.command {
            Command::Serve(a) => serve::run(*a).await,
            Command::Migrate(a) => serve::migrate(a).await,
            Command::Queues(c) => cli::run_queues(c).await,
            Command::Tasks(c) => cli::run_tasks(c).await,
            Command::Tokens(_) => unreachable!("handled before the runtime starts"),
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
