//! The API port's accept loop, for plain TCP and TLS alike: one hyper connection per client,
//! HTTP/1.1 or HTTP/2 detected per connection (on plain TCP HTTP/2 is h2c with prior knowledge,
//! as gRPC clients on insecure channels speak it; over TLS ALPN offers `h2` and `http/1.1`).
//!
//! Limits, the same on both:
//! - HTTP/1: at most [`MAX_HEADERS`] header fields (hyper's built-in parser capacity), and a
//!   request head (request line and headers) of at most [`MAX_HEADER_BYTES`]; a larger one gets
//!   `431 Request Header Fields Too Large` and the connection is closed. A client that does not
//!   send a complete request head within [`HEADER_READ_TIMEOUT`] is disconnected; this also
//!   closes keep-alive connections idle for that long.
//! - HTTP/2: a header list (decoded) of at most [`MAX_HEADER_BYTES`]; a larger request's stream
//!   gets a `431` response and is reset (or the connection is closed with `GOAWAY` when the
//!   header block outgrows the limit across CONTINUATION frames). At most
//!   [`MAX_CONCURRENT_STREAMS`] streams at once per connection.
//!
//! Handlers see the client's address as `axum::extract::ConnectInfo<SocketAddr>`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;
use tower::Layer;

use crate::tls::TlsReloader;

/// Most header fields of an HTTP/1 request. It is hyper's fixed parser capacity, which keeps the
/// parse on the stack; more fields get `431`.
pub const MAX_HEADERS: usize = 100;

/// Most bytes of a request head: the HTTP/1 request line and headers as sent, or the decoded
/// HTTP/2 header list. Larger requests get `431` (64 KiB).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Most HTTP/2 streams (requests, gRPC calls) open at once on one connection; a client opening
/// more has the extra streams refused and retries them.
pub const MAX_CONCURRENT_STREAMS: u32 = 256;

/// How long an HTTP/1 client has to send a complete request head (slow clients holding
/// connections open, and idle keep-alive connections, are closed after it).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a client has to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The connection builder with the limits above.
fn builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // `max_headers` is left at hyper's default (100 == MAX_HEADERS): setting it moves the
    // parse buffers to the heap for every request. The read buffer's cap bounds the request
    // head: hyper answers 431 when the head is not complete within it.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        // What `axum::serve` enables: WebSocket-style extended CONNECT over HTTP/2.
        .enable_connect_protocol();
    builder
}

/// Serves `app` on `listener` (over TLS when `tls` is set, with its current configuration for
/// each new handshake) until `shutdown` resolves, then lets open connections finish their
/// requests for up to `grace` before closing them.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    tls: Option<Arc<TlsReloader>>,
    shutdown: impl std::future::Future<Output = ()>,
    grace: Duration,
) {
    let graceful = GracefulShutdown::new();
    let builder = builder();
    tracing::debug!(
        tls = tls.is_some(),
        max_headers = MAX_HEADERS,
        max_header_bytes = MAX_HEADER_BYTES,
        max_concurrent_streams = MAX_CONCURRENT_STREAMS,
        header_read_timeout_s = HEADER_READ_TIMEOUT.as_secs(),
        "api listener limits"
    );
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // No Nagle delay: HTTP/2 writes many small frames per connection.
        let _ = tcp.set_nodelay(true);
        let service = Extension(ConnectInfo(peer)).layer(app.clone());
        let builder = builder.clone();
        let watcher = graceful.watcher();
        match &tls {
            None => {
                tokio::spawn(drive(builder, tcp, service, watcher, peer));
            }
            Some(tls) => {
                let acceptor = TlsAcceptor::from(tls.current());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => drive(builder, stream, service, watcher, peer).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "tls handshake failed"),
                        Err(_) => tracing::debug!(%peer, "tls handshake timed out"),
                    }
                });
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the grace period; closing them");
    }
}

/// Serves one connection until the client closes it or shutdown drains it.
async fn drive<I>(
    builder: auto::Builder<TokioExecutor>,
    io: I,
    service: axum::middleware::AddExtension<axum::Router, ConnectInfo<SocketAddr>>,
    watcher: Watcher,
    peer: SocketAddr,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = builder
        .serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(service))
        .into_owned();
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// A reload action run on SIGHUP (re-reading certificates, tokens and the like). It logs its
/// own outcome.
pub type Reloader = Box<dyn Fn() + Send + Sync>;

/// Runs every one of `reloaders`, in order, each time the process gets SIGHUP, for the rest of
/// the process' life. The handler is installed before this returns, so SIGHUP no longer stops
/// the server even with no reloaders. Must be called within the Tokio runtime. Does nothing on
/// platforms without SIGHUP.
pub fn reload_on_sighup(reloaders: Vec<Reloader>) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use anyhow::Context;
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = signal(SignalKind::hangup()).context("cannot install the SIGHUP handler")?;
        let reloaders: Arc<[Reloader]> = reloaders.into();
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                tracing::info!(reloaders = reloaders.len(), "sighup: reloading");
                let reloaders = reloaders.clone();
                // Reloads read files: keep them off the async worker threads.
                let _ = tokio::task::spawn_blocking(move || {
                    for reload in reloaders.iter() {
                        reload();
                    }
                })
                .await;
            }
        });
    }
    #[cfg(not(unix))]
    drop(reloaders);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Handlers see the client's address; shutdown stops the loop.
    #[tokio::test]
    async fn handlers_see_the_peer_address() {
        let app = axum::Router::new().route(
            "/peer",
            axum::routing::get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
                peer.to_string()
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listener,
            app,
            None,
            async {
                let _ = stopped.await;
            },
            Duration::from_secs(1),
        ));

        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let local = tcp.local_addr().unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        tcp.write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        tokio::time::timeout(Duration::from_secs(10), tcp.read_to_string(&mut answer))
            .await
            .unwrap()
            .unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with(&local.to_string()), "{answer}");

        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .unwrap()
            .unwrap();
    }
}
