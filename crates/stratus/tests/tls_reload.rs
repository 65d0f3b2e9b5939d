//! The API listener through the real binary: TLS certificates swapped on SIGHUP (a bad set of
//! files keeps the previous one), mutual TLS (`--tls-client-ca`) over REST and gRPC, and the
//! request-head caps on the plain port (HTTP/1 and h2c).
//!
//! Certificates are made at test time with the `openssl` command.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stratus_types::proto::tasks::{ListQueuesRequest, ListQueuesResponse};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

const LIST_QUEUES: &str = "/google.cloud.tasks.v2.CloudTasks/ListQueues";
const LOC: &str = "projects/p/locations/l";

// ---------------------------------------------------------------- certificates (openssl CLI)

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("these tests need the `openssl` command to make certificates");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A self-signed CA `<name>.pem` / `<name>.key` in `dir`.
fn make_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
        ],
    );
}

/// A leaf `<name>.pem` / `<name>.key` in `dir` issued by the CA `ca`: a server certificate for
/// 127.0.0.1, or a client certificate.
fn make_leaf(dir: &Path, ca: &str, name: &str, server: bool, serial: u32) {
    let ext = if server {
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
    } else {
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n"
    };
    std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={name}"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-set_serial",
            &serial.to_string(),
            "-days",
            "1",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.pem"),
        ],
    );
}

fn cert_der(path: &Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(path).unwrap()
}

/// A client trusting the CA `ca_pem`, presenting `client` (`(cert, key)`) when set, offering
/// ALPN `alpn`.
fn client_config(ca_pem: &Path, client: Option<(&Path, &Path)>, alpn: &[u8]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(cert_der(ca_pem)).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut cfg = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![cert_der(cert)],
                PrivateKeyDer::from_pem_file(key).unwrap(),
            )
            .unwrap(),
    };
    cfg.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(cfg)
}

// ---------------------------------------------------------------- the server process

/// `stratus serve` with its stderr collected (to read its log lines).
struct Proc {
    child: Child,
    port: u16,
    log: Arc<Mutex<String>>,
    _data: tempfile::TempDir,
}

impl Proc {
    /// Starts the server with `extra` flags; it is ready once `ready` (polled, bounded) holds.
    fn start(extra: &[&str], ready: impl Fn(u16) -> bool) -> Proc {
        let data = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_stratus"))
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(data.path())
            .arg("--no-dispatch")
            .args(extra)
            .env("STRATUS_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn stratus");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let proc = Proc {
            child,
            port,
            log,
            _data: data,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ready(port) {
            assert!(
                Instant::now() < deadline,
                "stratus did not become ready; log:\n{}",
                proc.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        proc
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    fn sighup(&self) {
        let status = Command::new("kill")
            .arg("-HUP")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits (bounded) until the log holds `needle` `count` times.
    fn wait_log(&self, needle: &str, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.log().matches(needle).count() < count {
            assert!(
                Instant::now() < deadline,
                "no {count}x {needle:?} in the log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------- clients

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

async fn tls_connect(port: u16, cfg: Arc<ClientConfig>) -> std::io::Result<Tls> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let name = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    tokio::time::timeout(
        Duration::from_secs(10),
        TlsConnector::from(cfg).connect(name, tcp),
    )
    .await
    .map_err(|_| std::io::Error::other("handshake timed out"))?
}

/// The leaf certificate the server presented.
fn presented(tls: &Tls) -> CertificateDer<'static> {
    tls.get_ref().1.peer_certificates().unwrap()[0].clone()
}

/// One HTTP/1.1 request on an open connection, read to the end of a `Content-Length` body;
/// returns the status line and body.
async fn http1<S>(io: &mut S, path: &str, close: bool) -> std::io::Result<(String, String)>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let conn = if close { "close" } else { "keep-alive" };
    io.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: {conn}\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let len: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let status = text.lines().next().unwrap().to_string();
                return Ok((status, text[end + 4..end + 4 + len].to_string()));
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let n = tokio::time::timeout(left, io.read(&mut chunk))
            .await
            .map_err(|_| std::io::Error::other("response timed out"))??;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("closed after {:?}", String::from_utf8_lossy(&buf)),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A new TLS connection: the presented certificate and the `/healthz` status line.
async fn tls_health(
    port: u16,
    cfg: Arc<ClientConfig>,
) -> std::io::Result<(CertificateDer<'static>, String)> {
    let mut tls = tls_connect(port, cfg).await?;
    let cert = presented(&tls);
    let (status, _) = http1(&mut tls, "/healthz", true).await?;
    Ok((cert, status))
}

/// ListQueues over gRPC on `channel`.
async fn list_queues(
    channel: tonic::transport::Channel,
) -> Result<ListQueuesResponse, tonic::Status> {
    list_queues_with(
        channel,
        tonic::Request::new(ListQueuesRequest {
            parent: LOC.into(),
            ..Default::default()
        }),
    )
    .await
}

async fn list_queues_with(
    channel: tonic::transport::Channel,
    req: tonic::Request<ListQueuesRequest>,
) -> Result<ListQueuesResponse, tonic::Status> {
    let mut client = tonic::client::Grpc::new(channel);
    client
        .ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let codec = tonic_prost::ProstCodec::<ListQueuesRequest, ListQueuesResponse>::default();
    client
        .unary(
            req,
            http::uri::PathAndQuery::from_static(LIST_QUEUES),
            codec,
        )
        .await
        .map(tonic::Response::into_inner)
}

/// A gRPC channel over TLS (ALPN h2) with `cfg`.
async fn grpc_tls_channel(
    port: u16,
    cfg: Arc<ClientConfig>,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_uri| {
            let cfg = cfg.clone();
            async move {
                tls_connect(port, cfg)
                    .await
                    .map(hyper_util::rt::TokioIo::new)
            }
        }))
        .await
}

fn copy(dir: &Path, from: &str, to: &str) {
    std::fs::copy(dir.join(from), dir.join(to)).unwrap();
}

fn path(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

// ---------------------------------------------------------------- tests

#[test]
fn sighup_swaps_the_certificate_and_keeps_the_old_one_on_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_ca(d, "ca");
    make_leaf(d, "ca", "a", true, 1);
    make_leaf(d, "ca", "b", true, 2);
    copy(d, "a.pem", "cert.pem");
    copy(d, "a.key", "key.pem");
    let (a, b) = (cert_der(&path(d, "a.pem")), cert_der(&path(d, "b.pem")));
    let h1 = client_config(&path(d, "ca.pem"), None, b"http/1.1");

    let cert = path(d, "cert.pem");
    let key = path(d, "key.pem");
    let ready_cfg = h1.clone();
    let server = Proc::start(
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
        move |port| block_on(tls_health(port, ready_cfg.clone())).is_ok(),
    );
    let port = server.port;
    block_on(async {
        let (got, status) = tls_health(port, h1.clone()).await.unwrap();
        assert_eq!(got, a, "the server starts with certificate A");
        assert_eq!(status, "HTTP/1.1 200 OK");

        // A connection made before the reload keeps working after it.
        let mut old = tls_connect(port, h1.clone()).await.unwrap();
        http1(&mut old, "/healthz", false).await.unwrap();

        copy(d, "b.pem", "cert.pem");
        copy(d, "b.key", "key.pem");
        server.sighup();
        server.wait_log("tls configuration reloaded", 1);
        let (got, status) = tls_health(port, h1.clone()).await.unwrap();
        assert_eq!(got, b, "a new connection after SIGHUP sees certificate B");
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(presented(&old), a);
        let (status, _) = http1(&mut old, "/healthz", true).await.unwrap();
        assert_eq!(
            status, "HTTP/1.1 200 OK",
            "an open connection keeps its session"
        );

        // Garbage for a certificate: refused, B stays.
        std::fs::write(&cert, "not a certificate\n").unwrap();
        server.sighup();
        server.wait_log("tls reload failed", 1);
        let (got, status) = tls_health(port, h1.clone()).await.unwrap();
        assert_eq!(got, b, "a bad certificate file keeps the previous one");
        assert_eq!(status, "HTTP/1.1 200 OK");

        // A key that does not fit the certificate: refused, B stays.
        copy(d, "a.pem", "cert.pem");
        server.sighup();
        server.wait_log("tls reload failed", 2);
        let (got, _) = tls_health(port, h1.clone()).await.unwrap();
        assert_eq!(got, b, "a mismatched key keeps the previous pair");

        // An unreadable key file: refused, B stays.
        copy(d, "b.pem", "cert.pem");
        std::fs::remove_file(&key).unwrap();
        server.sighup();
        server.wait_log("tls reload failed", 3);
        let (got, _) = tls_health(port, h1.clone()).await.unwrap();
        assert_eq!(got, b);
    });
    let log = server.log();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("tls reload failed"))
        .collect();
    assert!(
        warnings[0].contains("tls_cert") && warnings[0].contains("cert.pem"),
        "the warning names the setting and file: {}",
        warnings[0]
    );
    assert!(
        warnings[1].contains("does not fit") && warnings[1].contains("key.pem"),
        "{}",
        warnings[1]
    );
    assert!(
        warnings[2].contains("tls_key") && warnings[2].contains("key.pem"),
        "{}",
        warnings[2]
    );
    assert!(!log.contains("BEGIN"), "no PEM content in the log:\n{log}");
}

#[test]
fn mtls_requires_a_client_certificate_from_the_configured_ca() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_ca(d, "ca");
    make_leaf(d, "ca", "server", true, 1);
    make_ca(d, "clients1");
    make_leaf(d, "clients1", "alice", false, 2);
    make_ca(d, "clients2");
    make_leaf(d, "clients2", "mallory", false, 3);
    copy(d, "clients1.pem", "client-ca.pem");

    let ca = path(d, "ca.pem");
    let alice = (path(d, "alice.pem"), path(d, "alice.key"));
    let mallory = (path(d, "mallory.pem"), path(d, "mallory.key"));
    let as_alice = |alpn: &[u8]| client_config(&ca, Some((&alice.0, &alice.1)), alpn);
    let as_mallory = |alpn: &[u8]| client_config(&ca, Some((&mallory.0, &mallory.1)), alpn);
    let anonymous = client_config(&ca, None, b"http/1.1");

    let ready_cfg = as_alice(b"http/1.1");
    let server = Proc::start(
        &[
            "--tls-cert",
            path(d, "server.pem").to_str().unwrap(),
            "--tls-key",
            path(d, "server.key").to_str().unwrap(),
            "--tls-client-ca",
            path(d, "client-ca.pem").to_str().unwrap(),
        ],
        move |port| block_on(tls_health(port, ready_cfg.clone())).is_ok(),
    );
    let port = server.port;
    let queues = format!("/v2/{LOC}/queues");
    block_on(async {
        // No client certificate: the handshake (or, in TLS 1.3, the first read) fails.
        assert!(
            tls_health(port, anonymous.clone()).await.is_err(),
            "a client without a certificate is refused"
        );
        // A certificate from the configured CA: REST and gRPC work.
        let mut tls = tls_connect(port, as_alice(b"http/1.1")).await.unwrap();
        let (status, body) = http1(&mut tls, &queues, true).await.unwrap();
        assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
        let channel = grpc_tls_channel(port, as_alice(b"h2")).await.unwrap();
        list_queues(channel).await.unwrap();
        // A certificate from another CA: refused, over HTTP/1.1 and gRPC.
        assert!(tls_health(port, as_mallory(b"http/1.1")).await.is_err());
        let refused = match grpc_tls_channel(port, as_mallory(b"h2")).await {
            Err(_) => true,
            Ok(channel) => list_queues(channel).await.is_err(),
        };
        assert!(
            refused,
            "gRPC with a certificate from another CA is refused"
        );

        // The client CA is reloaded on SIGHUP too.
        copy(d, "clients2.pem", "client-ca.pem");
        server.sighup();
        server.wait_log("tls configuration reloaded", 1);
        let (_, status) = tls_health(port, as_mallory(b"http/1.1")).await.unwrap();
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(tls_health(port, as_alice(b"http/1.1")).await.is_err());
    });
}

#[test]
fn tls_client_ca_without_tls_is_refused_at_start() {
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_stratus"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .args(["--tls-client-ca", "ca.pem"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--tls-cert"), "{err}");

    // A bundle that is not a certificate names the setting.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_ca(d, "ca");
    make_leaf(d, "ca", "server", true, 1);
    std::fs::write(d.join("junk.pem"), "junk\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_stratus"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .arg("--tls-cert")
        .arg(d.join("server.pem"))
        .arg("--tls-key")
        .arg(d.join("server.key"))
        .arg("--tls-client-ca")
        .arg(d.join("junk.pem"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tls_client_ca") && err.contains("junk.pem"),
        "{err}"
    );
}

/// Sends `head` (a request without its final blank line) and reads the answer: `Ok(status
/// line)` or the error (reset, closed) the client saw.
fn raw_http1(port: u16, head: &str) -> Result<String, String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(head.as_bytes())
        .and_then(|()| s.write_all(b"Connection: close\r\n\r\n"))
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    // A reset right after the answer still leaves the answer in `buf`.
    let read = s.read_to_end(&mut buf);
    match String::from_utf8_lossy(&buf).lines().next() {
        Some(status) => Ok(status.to_string()),
        None => match read {
            Ok(_) => Err("closed without an answer".into()),
            Err(e) => Err(format!("read: {e}")),
        },
    }
}

#[test]
fn request_heads_over_the_caps_are_refused() {
    let data = tempfile::tempdir().unwrap();
    let server = support::Server::start(data.path(), &["--no-dispatch"]);
    let port = server.port;
    let get = "GET /healthz HTTP/1.1\r\nHost: x\r\n";

    // HTTP/1: up to 100 header fields and 64 KiB pass.
    let many = |n: usize| (0..n).map(|i| format!("x-h{i}: v\r\n")).collect::<String>();
    assert_eq!(
        raw_http1(port, &format!("{get}{}", many(90))).as_deref(),
        Ok("HTTP/1.1 200 OK")
    );
    let big = |n: usize| format!("x-big: {}\r\n", "a".repeat(n));
    assert_eq!(
        raw_http1(port, &format!("{get}{}", big(48 * 1024))).as_deref(),
        Ok("HTTP/1.1 200 OK")
    );
    // 200 header fields: 431.
    assert_eq!(
        raw_http1(port, &format!("{get}{}", many(200))).as_deref(),
        Ok("HTTP/1.1 431 Request Header Fields Too Large")
    );
    // One 100 KiB header: 431, or a reset when the server closes while the client still sends.
    match raw_http1(port, &format!("{get}{}", big(100 * 1024))) {
        Ok(status) => assert_eq!(status, "HTTP/1.1 431 Request Header Fields Too Large"),
        Err(e) => assert!(
            e.contains("reset") || e.contains("closed") || e.contains("pipe"),
            "{e}"
        ),
    }

    // HTTP/2 (h2c, as gRPC clients on insecure channels): a 100 KiB header list is refused,
    // 48 KiB passes (above hyper's own 16 KiB default), and the server stays usable.
    block_on(async {
        let channel = tonic::transport::Channel::from_shared(server.url())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let with_header = |n: usize| {
            let mut req = tonic::Request::new(ListQueuesRequest {
                parent: LOC.into(),
                ..Default::default()
            });
            req.metadata_mut()
                .insert("x-big", "a".repeat(n).parse().unwrap());
            req
        };
        list_queues_with(channel.clone(), with_header(48 * 1024))
            .await
            .unwrap();
        let err = list_queues_with(channel.clone(), with_header(100 * 1024))
            .await
            .unwrap_err();
        assert_ne!(err.code(), tonic::Code::Ok);
        let fresh = tonic::transport::Channel::from_shared(server.url())
            .unwrap()
            .connect()
            .await
            .unwrap();
        list_queues(fresh).await.unwrap();
    });

    // The server is still healthy.
    assert_eq!(raw_http1(port, get).as_deref(), Ok("HTTP/1.1 200 OK"));
}
