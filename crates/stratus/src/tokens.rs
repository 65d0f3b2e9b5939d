//! `stratus tokens create|hash`: API tokens for the config file's `[[tokens]]`.
//!
//! The server stores only a token's SHA-256, so a new token is printed once, here, and never
//! again: `create` prints it on stdout with the `[[tokens]]` entry to add (or adds it to the
//! config file with `--config`).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use stratus_api::auth::{self, Role, Scope};

use crate::config::{self, FileConfig};

/// `stratus tokens …`.
#[derive(Subcommand)]
pub enum TokensCommand {
    /// Make a new API token for one project (or `*` for every project) and role.
    Create(CreateArgs),
    /// Print the SHA-256 of a token read from stdin (for tokens made elsewhere).
    Hash,
}

/// Options of `stratus tokens create`.
#[derive(Args)]
pub struct CreateArgs {
    /// The project (tenant) the token may act in, or `*` for every project.
    #[arg(long)]
    project: String,
    /// What the token may do: `viewer` (read), `enqueuer` (read, create/delete/run/retry
    /// tasks) or `admin` (everything, queues included).
    #[arg(long)]
    role: String,
    /// A label for logs and errors [default: <project>-<role>-<6 hex digits>].
    #[arg(long)]
    name: Option<String>,
    /// Requests per second the token may make (bursts of twice that); 0 = unlimited
    /// [default: 1000].
    #[arg(long)]
    rate_limit: Option<f64>,
    /// Add the `[[tokens]]` entry to this config file (created if missing) instead of only
    /// printing it.
    #[arg(long)]
    config: Option<PathBuf>,
}

/// Runs a `tokens` command.
pub fn run(cmd: TokensCommand) -> anyhow::Result<()> {
    match cmd {
        TokensCommand::Create(a) => create(a),
        TokensCommand::Hash => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("cannot read the token from stdin")?;
            let token = s.trim();
            if token.is_empty() {
                bail!("no token on stdin (e.g. `printf %s \"$TOKEN\" | stratus tokens hash`)");
            }
            println!("{}", auth::digest_hex(token));
            Ok(())
        }
    }
}

fn create(a: CreateArgs) -> anyhow::Result<()> {
    let scope = Scope::parse(&a.project).map_err(|e| anyhow::anyhow!(e))?;
    let role = Role::parse(&a.role).map_err(|e| anyhow::anyhow!(e))?;
    if let Some(r) = a.rate_limit
        && (!r.is_finite() || r < 0.0)
    {
        bail!("rate-limit: must be a number of requests per second ≥ 0 (0 = unlimited)");
    }
    let token = auth::generate_token();
    let sha256 = auth::digest_hex(&token);
    let name = match a.name {
        Some(n) if n.trim().is_empty() => bail!("name: must not be empty"),
        Some(n) => n,
        None => {
            let project = match &scope {
                Scope::All => "all-projects".to_string(),
                Scope::Project(p) => p.clone(),
            };
            format!("{project}-{role}-{}", &sha256[..6])
        }
    };
    let entry = entry_toml(&name, &scope, role, &sha256, a.rate_limit)?;
    match &a.config {
        Some(path) => {
            append(path, &name, &entry)?;
            eprintln!(
                "Added token \"{name}\" to {}. A running server with tokens reloads them on \
                 SIGHUP; one started without tokens must be restarted to turn authentication on.",
                path.display()
            );
        }
        None => {
            eprintln!("Add this entry to the server's config file:\n\n{entry}");
        }
    }
    eprintln!(
        "The token below is shown only now (the server keeps only its SHA-256). Clients send it \
         as `Authorization: Bearer <token>`:"
    );
    println!("{token}");
    Ok(())
}

/// The `[[tokens]]` entry, checked by the same parser the server uses.
fn entry_toml(
    name: &str,
    scope: &Scope,
    role: Role,
    sha256: &str,
    rate_limit: Option<f64>,
) -> anyhow::Result<String> {
    let mut t = toml::Table::new();
    t.insert("name".into(), toml::Value::String(name.into()));
    t.insert("project".into(), toml::Value::String(scope.to_string()));
    t.insert("role".into(), toml::Value::String(role.as_str().into()));
    t.insert("sha256".into(), toml::Value::String(sha256.into()));
    if let Some(r) = rate_limit {
        t.insert("rate_limit".into(), toml::Value::Float(r));
    }
    let body = toml::to_string(&t).context("cannot write the token entry")?;
    let text = format!("[[tokens]]\n{body}");
    let parsed: FileConfig = toml::from_str(&text).context("token entry")?;
    config::token_specs(&parsed.tokens)?;
    Ok(text)
}

/// Appends `entry` to the config file after checking the file parses and has no token of the
/// same name. A new file is created readable by its owner only.
fn append(path: &Path, name: &str, entry: &str) -> anyhow::Result<()> {
    let existing = match std::fs::read_to_string(path) {
        Ok(s) => Some(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    if let Some(text) = &existing {
        let file: FileConfig = toml::from_str(text).with_context(|| {
            format!(
                "{} does not parse as a Stratus config file; fix it before adding tokens",
                path.display()
            )
        })?;
        if file.tokens.iter().any(|t| t.name.as_deref() == Some(name)) {
            bail!(
                "name: {} already has a token named \"{name}\"; pick another --name",
                path.display()
            );
        }
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot open {} for writing", path.display()))?;
    let sep = match &existing {
        Some(t) if !t.is_empty() && !t.ends_with("\n\n") => {
            if t.ends_with('\n') {
                "\n"
            } else {
                "\n\n"
            }
        }
        _ => "",
    };
    write!(f, "{sep}{entry}").with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
