//! Shared by the create benchmarks: start `stratus serve` on a free loopback port.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Starts `bin serve --listen 127.0.0.1:<free port> --data-dir <dir> <extra…>` and waits until
/// the port accepts connections; returns the child and the port.
pub fn start_server(bin: &str, dir: &std::path::Path, extra: &[&str]) -> (Child, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(bin)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(dir)
        .args(extra)
        .env("STRATUS_LOG", "error")
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {bin}: {e} (build it with cargo build --release -p stratus)")
        });
    for _ in 0..300 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return (child, port);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("server did not start");
}
