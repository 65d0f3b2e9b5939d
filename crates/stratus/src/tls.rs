//! TLS on the API port: REST (HTTP/1.1 or HTTP/2) and gRPC (HTTP/2) behind rustls, chosen by
//! ALPN, with the same router as the plain port (served by [`crate::listener`]).
//!
//! `--tls-cert` (a PEM chain, leaf first) and `--tls-key` (a PEM PKCS#8, PKCS#1 or SEC1 key)
//! turn it on; `--tls-client-ca` (a PEM bundle) additionally requires every client to present a
//! certificate issued by one of its CAs (mutual TLS). The files are read at start and again by
//! [`TlsReloader::reload`] (on SIGHUP): a new handshake uses the newest good files, open
//! connections keep the configuration they were made with, and a bad set of files is refused
//! while the previous configuration stays in use.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::Context;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};

/// The files a TLS configuration is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first (`tls_cert`).
    pub cert: PathBuf,
    /// PEM private key of the leaf (`tls_key`).
    pub key: PathBuf,
    /// PEM bundle of the CAs client certificates must chain to (`tls_client_ca`); `None`
    /// (the default) asks clients for no certificate.
    pub client_ca: Option<PathBuf>,
}

/// Reads `files` into a rustls server config (ALPN `h2`, `http/1.1`). Errors name the setting
/// and file at fault; they never quote key material.
pub fn build(files: &TlsFiles) -> anyhow::Result<Arc<ServerConfig>> {
    let chain = read_certs("tls_cert", &files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).with_context(|| {
        format!(
            "tls_key: cannot read a PEM private key (PKCS#8, PKCS#1 or SEC1) from {}",
            files.key.display()
        )
    })?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs("tls_client_ca", ca)? {
                roots.add(cert).with_context(|| {
                    format!(
                        "tls_client_ca: {} holds a certificate that is not a usable CA",
                        ca.display()
                    )
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .with_context(|| {
                    format!(
                        "tls_client_ca: {} cannot verify client certificates",
                        ca.display()
                    )
                })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut cfg = builder.with_single_cert(chain, key).with_context(|| {
        format!(
            "tls_cert/tls_key: the key in {} does not fit the certificate in {}",
            files.key.display(),
            files.cert.display()
        )
    })?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Every certificate of the PEM file `path`; at least one. `setting` names the file in errors.
fn read_certs(setting: &str, path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("{setting}: cannot read {}", path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| {
            format!(
                "{setting}: {} is not a PEM certificate file",
                path.display()
            )
        })?;
    if certs.is_empty() {
        anyhow::bail!("{setting}: {} holds no certificate", path.display());
    }
    Ok(certs)
}

/// The current TLS configuration of the API port and the files it is read from, swapped as a
/// whole by [`TlsReloader::reload`].
#[derive(Debug)]
pub struct TlsReloader {
    files: TlsFiles,
    current: RwLock<Arc<ServerConfig>>,
}

impl TlsReloader {
    /// Reads `files`; an error (naming the setting and file) refuses the start.
    pub fn load(files: TlsFiles) -> anyhow::Result<Self> {
        let cfg = build(&files)?;
        Ok(Self {
            files,
            current: RwLock::new(cfg),
        })
    }

    /// The configuration for the next handshake.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Reads the files again and, when they form a valid configuration, uses it for every
    /// later handshake (connections already open keep theirs). On an error the previous
    /// configuration stays in use and a warning names the file and the problem. Logs and
    /// returns the outcome.
    pub fn reload(&self) -> anyhow::Result<()> {
        match build(&self.files) {
            Ok(cfg) => {
                *self
                    .current
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = cfg;
                tracing::info!(
                    cert = %self.files.cert.display(),
                    client_ca = ?self.files.client_ca.as_ref().map(|p| p.display().to_string()),
                    "tls configuration reloaded"
                );
                Ok(())
            }
            Err(e) => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "tls reload failed; keeping the previous configuration"
                );
                Err(e)
            }
        }
    }
}
