//! API tokens through the real binary: tokens made by `stratus tokens create` and read from the
//! config file, the CLI's `--token`, reload on SIGHUP, and the loopback-only rule without
//! tokens. The per-RPC tenancy matrix lives in `stratus-api/tests/auth_matrix.rs`.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::Server;

fn stratus() -> Command {
    Command::new(env!("CARGO_BIN_EXE_stratus"))
}

/// `stratus tokens create … --config cfg`; returns the token printed on stdout.
fn create_token(cfg: &Path, project: &str, role: &str, name: &str) -> String {
    let out = stratus()
        .args(["tokens", "create", "--project", project, "--role", role])
        .args(["--name", name, "--config"])
        .arg(cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(token.starts_with("stratus_"), "{token}");
    token
}

fn status(base: &str, path: &str, token: Option<&str>) -> u16 {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut req = reqwest::Client::new().get(format!("{base}{path}"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap().status().as_u16()
    })
}

fn sighup(server: &Server) {
    let ok = Command::new("kill")
        .args(["-HUP", &server.child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

/// Polls `f` until true, for at most 10 s.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

const QUEUES_A: &str = "/v2/projects/a/locations/local/queues";

#[test]
fn tokens_from_the_config_file_guard_the_api_and_reload_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("stratus.toml");
    std::fs::write(&cfg, "task_tombstone = \"0s\"\n").unwrap();
    let admin = create_token(&cfg, "a", "admin", "a-admin");
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(!text.contains(&admin), "the token itself is never written");
    assert!(text.contains("[[tokens]]"), "{text}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // The file existed: its mode is left alone. A new file would be created 0600.
        let fresh = dir.path().join("fresh.toml");
        create_token(&fresh, "a", "viewer", "v");
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    // A second token with the same name is refused.
    let dup = stratus()
        .args(["tokens", "create", "--project", "a", "--role", "viewer"])
        .args(["--name", "a-admin", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!dup.status.success());
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already has a token named"));

    let server = Server::start(
        &dir.path().join("data"),
        &["--config", cfg.to_str().unwrap()],
    );
    let base = server.url();
    assert_eq!(status(&base, QUEUES_A, None), 401);
    assert_eq!(status(&base, QUEUES_A, Some("stratus_wrong")), 401);
    assert_eq!(status(&base, QUEUES_A, Some(&admin)), 200);
    assert_eq!(
        status(&base, "/v2/projects/b/locations/local/queues", Some(&admin)),
        403
    );
    // Health and OIDC discovery stay public.
    assert_eq!(status(&base, "/healthz", None), 200);
    assert_eq!(
        status(&base, "/.well-known/openid-configuration", None),
        200
    );

    // The CLI sends --token (or STRATUS_TOKEN).
    let cli = |token: Option<&str>| {
        let mut c = stratus();
        c.args([
            "queues",
            "create",
            "jobs",
            "--project",
            "a",
            "--endpoint",
            &base,
        ]);
        if let Some(t) = token {
            c.env("STRATUS_TOKEN", t);
        } else {
            c.env_remove("STRATUS_TOKEN");
        }
        c.output().unwrap()
    };
    let refused = cli(None);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("UNAUTHENTICATED"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let made = cli(Some(&admin));
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );

    // A token added to the file works after SIGHUP, without a restart.
    let later = create_token(&cfg, "b", "viewer", "b-viewer");
    assert_eq!(
        status(&base, "/v2/projects/b/locations/local/queues", Some(&later)),
        401
    );
    sighup(&server);
    eventually("the new token", || {
        status(&base, "/v2/projects/b/locations/local/queues", Some(&later)) == 200
    });
    // A broken file keeps the tokens in force.
    std::fs::write(&cfg, "this is not toml [").unwrap();
    sighup(&server);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(status(&base, QUEUES_A, Some(&admin)), 200);
    assert_eq!(status(&base, QUEUES_A, None), 401);
}

/// Starts `stratus serve <args>` and returns its stdout lines up to the one about
/// authentication, then stops it.
fn start_lines(args: &[&str], data: &Path) -> Vec<String> {
    let mut child = stratus()
        .arg("serve")
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env("STRATUS_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    while let Some(Ok(line)) = lines.next() {
        let done = line.contains("authentication off");
        seen.push(line);
        if done {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    seen
}

#[test]
fn without_tokens_only_loopback_is_served_unless_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let refused = stratus()
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .env_remove("STRATUS_INSECURE")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("not a loopback address"), "{err}");
    assert!(err.contains("--insecure"), "{err}");

    // With --insecure it starts, and says so.
    let seen = start_lines(
        &["--insecure", "--listen", "0.0.0.0:0"],
        &dir.path().join("data"),
    );
    assert!(seen.iter().any(|l| l.contains("--insecure")), "{seen:#?}");

    // On loopback without tokens it serves and says the API is open.
    let out = start_lines(&["--listen", "127.0.0.1:0"], &dir.path().join("data2"));
    assert!(out.iter().any(|l| l.contains("loopback only")), "{out:#?}");
}

#[test]
fn bad_token_entries_stop_the_server_with_the_field_named() {
    let dir = tempfile::tempdir().unwrap();
    for (entry, needle) in [
        (
            "[[tokens]]\nproject = \"a\"\nrole = \"owner\"\nsha256 = \"00\"\n",
            "tokens[0]",
        ),
        (
            &*format!(
                "[[tokens]]\nproject = \"a\"\nrole = \"owner\"\nsha256 = \"{}\"\n",
                "ab".repeat(32)
            ),
            "role",
        ),
        (
            &*format!(
                "[[tokens]]\nproject = \"a b\"\nrole = \"admin\"\nsha256 = \"{}\"\n",
                "ab".repeat(32)
            ),
            "project",
        ),
        (
            &*format!(
                "[[tokens]]\nproject = \"a\"\nrole = \"admin\"\nsha256 = \"{}\"\nrate_limit = -1\n",
                "ab".repeat(32)
            ),
            "rate_limit",
        ),
    ] {
        let cfg = dir.path().join("bad.toml");
        std::fs::write(&cfg, entry).unwrap();
        let out = stratus()
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&cfg)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{needle}: {err}");
    }
}
