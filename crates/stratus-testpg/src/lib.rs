//! A real PostgreSQL server for tests: `initdb` and `pg_ctl` in a temp dir, on a free loopback
//! port, stopped and removed on drop.
//!
//! - Binaries come from `PATH` (`initdb`, `pg_ctl`) or the newest `/usr/lib/postgresql/*/bin`.
//! - PostgreSQL refuses to run as root: when the test runs as root, the server runs as the
//!   `postgres` user (`runuser`), with a data directory that user owns.
//! - `STRATUS_TEST_PG_URL` points tests at an existing server instead; nothing is started then,
//!   and [`PgServer::stop`]/[`PgServer::start_again`] are refused.
//!
//! Each test should take its own database ([`PgServer::fresh_database`]) so tests can share one
//! server.

use std::fmt;
use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The environment variable naming an existing server (`postgres://user@host:port/db`).
pub const URL_ENV: &str = "STRATUS_TEST_PG_URL";
/// The superuser `initdb` creates (trust authentication on loopback).
pub const SUPERUSER: &str = "stratus";
/// How long start and stop may take.
const STARTUP: Duration = Duration::from_secs(60);

/// Why a server could not be provided.
#[derive(Debug)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

fn err(msg: impl Into<String>) -> Error {
    Error(msg.into())
}

/// Options of a started server.
#[derive(Debug, Clone, Default)]
pub struct PgOptions {
    /// `fsync` and `synchronous_commit` on (durability tests) or off (faster). Default off.
    pub durable: bool,
}

/// A server this process started, or an existing one from `STRATUS_TEST_PG_URL`.
pub struct PgServer {
    inner: Inner,
    databases: AtomicU32,
}

enum Inner {
    External {
        url: String,
    },
    Owned {
        bin: PathBuf,
        dir: tempfile::TempDir,
        port: u16,
        as_postgres: bool,
        durable: bool,
    },
}

impl PgServer {
    /// `STRATUS_TEST_PG_URL` if set, else a new server with default options.
    pub fn start() -> Result<Self, Error> {
        Self::start_with(PgOptions::default())
    }

    /// `STRATUS_TEST_PG_URL` if set, else a new server with `opts`.
    pub fn start_with(opts: PgOptions) -> Result<Self, Error> {
        if let Ok(url) = std::env::var(URL_ENV)
            && !url.is_empty()
        {
            return Ok(PgServer {
                inner: Inner::External { url },
                databases: AtomicU32::new(0),
            });
        }
        let bin = find_bin_dir()?;
        let as_postgres = is_root();
        let dir = tempfile::Builder::new()
            .prefix("stratus-pg-")
            .tempdir()
            .map_err(|e| err(format!("temp dir: {e}")))?;
        if as_postgres {
            // The server user must own its data dir and reach it through every parent.
            let uid = user_id("postgres")?;
            chown_dir(dir.path(), uid)?;
        }
        let mut server = PgServer {
            inner: Inner::Owned {
                bin,
                dir,
                port: 0,
                as_postgres,
                durable: opts.durable,
            },
            databases: AtomicU32::new(0),
        };
        server.initdb()?;
        server.start_again()?;
        Ok(server)
    }

    /// The URL of the server's `postgres` database.
    pub fn url(&self) -> String {
        match &self.inner {
            Inner::External { url } => url.clone(),
            Inner::Owned { port, .. } => {
                format!("postgres://{SUPERUSER}@127.0.0.1:{port}/postgres")
            }
        }
    }

    /// The port of a started server (`None` for an external one).
    pub fn port(&self) -> Option<u16> {
        match &self.inner {
            Inner::External { .. } => None,
            Inner::Owned { port, .. } => Some(*port),
        }
    }

    /// Creates a new, empty database and returns its URL.
    pub fn fresh_database(&self) -> Result<String, Error> {
        let n = self.databases.fetch_add(1, Ordering::Relaxed);
        let name = format!("t{}_{n}", std::process::id());
        let base = self.url();
        let (prefix, _) = base
            .rsplit_once('/')
            .ok_or_else(|| err(format!("{URL_ENV}: no database in {base}")))?;
        let out = self.psql(&base, &format!("CREATE DATABASE {name}"))?;
        if !out.status.success() {
            return Err(err(format!(
                "CREATE DATABASE {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(format!("{prefix}/{name}"))
    }

    /// Runs one SQL statement through `psql` against `url`.
    pub fn psql(&self, url: &str, sql: &str) -> Result<Output, Error> {
        let psql = match &self.inner {
            Inner::Owned { bin, .. } if bin.join("psql").exists() => bin.join("psql"),
            _ => PathBuf::from("psql"),
        };
        Command::new(&psql)
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
            .output()
            .map_err(|e| err(format!("{}: {e}", psql.display())))
    }

    /// Stops a started server (fast shutdown: connections are cut). Its data stays, and
    /// [`PgServer::start_again`] brings it back on the same port.
    pub fn stop(&self) -> Result<(), Error> {
        let Inner::Owned { dir, .. } = &self.inner else {
            return Err(err(format!(
                "{URL_ENV} is set: the server is not ours to stop"
            )));
        };
        let data = dir.path().join("data");
        let out = self.run_pg_ctl(&[
            "-D",
            path_str(&data)?,
            "-m",
            "fast",
            "-w",
            "-t",
            "60",
            "stop",
        ])?;
        if !out.status.success() {
            return Err(err(format!(
                "pg_ctl stop: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(())
    }

    /// Starts the server (again): on a free port the first time, on the same port after
    /// [`PgServer::stop`].
    pub fn start_again(&mut self) -> Result<(), Error> {
        let Inner::Owned {
            dir, port, durable, ..
        } = &mut self.inner
        else {
            return Err(err(format!(
                "{URL_ENV} is set: the server is not ours to start"
            )));
        };
        if *port == 0 {
            *port = free_port()?;
        }
        let (data, log, socket) = (
            dir.path().join("data"),
            dir.path().join("server.log"),
            dir.path().to_path_buf(),
        );
        let sync = if *durable { "on" } else { "off" };
        let opts = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -k {} -c fsync={sync} \
             -c synchronous_commit={sync} -c full_page_writes={sync} -c max_connections=200",
            socket.display()
        );
        let port = *port;
        let out = self.run_pg_ctl(&[
            "-D",
            path_str(&data)?,
            "-l",
            path_str(&log)?,
            "-o",
            &opts,
            "-w",
            "-t",
            "60",
            "start",
        ])?;
        if !out.status.success() {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(err(format!(
                "pg_ctl start: {}{}\n{tail}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        // `-w` waits for the socket; make sure TCP answers too.
        let deadline = Instant::now() + STARTUP;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(err(format!(
                    "PostgreSQL did not listen on 127.0.0.1:{port}"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// The server log (empty for an external server).
    pub fn log(&self) -> String {
        match &self.inner {
            Inner::Owned { dir, .. } => {
                std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default()
            }
            Inner::External { .. } => String::new(),
        }
    }

    fn initdb(&self) -> Result<(), Error> {
        let Inner::Owned {
            bin,
            dir,
            as_postgres,
            ..
        } = &self.inner
        else {
            return Ok(());
        };
        let data = dir.path().join("data");
        let initdb = bin.join("initdb");
        let out = run_as(
            *as_postgres,
            &initdb,
            &[
                "-D",
                path_str(&data)?,
                "-U",
                SUPERUSER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        )?;
        if !out.status.success() {
            return Err(err(format!(
                "initdb: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(())
    }

    fn run_pg_ctl(&self, args: &[&str]) -> Result<Output, Error> {
        let Inner::Owned {
            bin, as_postgres, ..
        } = &self.inner
        else {
            return Err(err("no server of ours"));
        };
        run_as(*as_postgres, &bin.join("pg_ctl"), args)
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if let Inner::Owned { dir, .. } = &self.inner {
            let data = dir.path().join("data");
            if data.join("postmaster.pid").exists()
                && let Some(d) = data.to_str()
            {
                let _ = self.run_pg_ctl(&["-D", d, "-m", "immediate", "-w", "stop"]);
            }
        }
    }
}

fn path_str(p: &Path) -> Result<&str, Error> {
    p.to_str()
        .ok_or_else(|| err(format!("path is not UTF-8: {}", p.display())))
}

/// Runs `program args`, as the `postgres` user when `as_postgres`.
fn run_as(as_postgres: bool, program: &Path, args: &[&str]) -> Result<Output, Error> {
    let mut cmd = if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    cmd.args(args)
        // pg_ctl starts the server in the background; keep its output out of our pipes.
        .stdin(std::process::Stdio::null())
        .current_dir("/")
        .output()
        .map_err(|e| err(format!("{}: {e}", program.display())))
}

/// The directory holding `initdb` and `pg_ctl`.
fn find_bin_dir() -> Result<PathBuf, Error> {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").is_file() && dir.join("pg_ctl").is_file() {
                // Follow a link to the real directory (Debian links a few into /usr/local/bin).
                let real = std::fs::canonicalize(dir.join("initdb"))
                    .ok()
                    .and_then(|p| p.parent().map(Path::to_path_buf))
                    .unwrap_or(dir);
                return Ok(real);
            }
        }
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, b)| b).ok_or_else(|| {
        err(
            "PostgreSQL server binaries not found: no initdb/pg_ctl on PATH or in \
             /usr/lib/postgresql/*/bin (install Debian's postgresql package, or set \
             STRATUS_TEST_PG_URL)",
        )
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn user_id(name: &str) -> Result<u32, Error> {
    let out = Command::new("id")
        .args(["-u", name])
        .output()
        .map_err(|e| err(format!("id -u {name}: {e}")))?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|_| {
            err(format!(
                "running as root, PostgreSQL needs an unprivileged user '{name}' (the postgresql \
                 package creates it)"
            ))
        })
}

/// Gives `dir` to `uid` and lets everyone traverse its parents (a temp dir is already 1777).
fn chown_dir(dir: &Path, uid: u32) -> Result<(), Error> {
    std::os::unix::fs::chown(dir, Some(uid), None)
        .map_err(|e| err(format!("chown {}: {e}", dir.display())))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e: io::Error| err(format!("chmod {}: {e}", dir.display())))
}

fn free_port() -> Result<u16, Error> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| err(format!("free port: {e}")))
}
