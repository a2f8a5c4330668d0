//! TLS on the engine's own port (config `tls`): HTTPS for the page and the HTTP API, `wss://`
//! for the chat, without a reverse proxy.
//!
//! rustls with the `ring` crypto provider. ring is in the build already (jsonwebtoken signs
//! tokens with it, the page's CSP hashes use it), so TLS adds no second crypto library and no C
//! toolchain step: aws-lc-rs, rustls's default, builds AWS-LC with cmake and a C compiler and
//! roughly doubles a clean build, for gains (FIPS, post-quantum key exchange by default, faster
//! RSA) that a chat server terminating a few thousand handshakes a second does not need.
//!
//! TLS 1.2 and 1.3 only (rustls has nothing older), ALPN `http/1.1` (the engine speaks HTTP/1.1
//! only; a client that offers ALPN without it is refused in the handshake, as RFC 7301 says).
//! The handshake runs in the connection's own task with `handshake_timeout_ms` as its deadline
//! (`http::serve`); failures and timeouts are counted (`tls_handshake_failures`,
//! `tls_handshake_timeouts`).
//!
//! `reload` reads the files again and swaps the `ServerConfig` that new connections get; a
//! connection keeps the config it was accepted with (rustls holds an `Arc` to it), so existing
//! connections are not touched, and a bad new file leaves the old config serving.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::config::{ConfigError, TlsConfig};
use crate::stats::Stats;

/// The engine's TLS: where the files are, and the config new connections are accepted with.
pub struct Tls {
    files: TlsConfig,
    current: RwLock<Arc<ServerConfig>>,
}

fn err(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError { key: key.into(), message: message.into() }
}

impl Tls {
    /// Reads the certificate chain and key; every failure names `tls.cert` or `tls.key`.
    pub fn load(files: &TlsConfig) -> Result<Tls, ConfigError> {
        let config = server_config(files)?;
        Ok(Tls { files: files.clone(), current: RwLock::new(Arc::new(config)) })
    }

    /// Reads the files again and serves new connections with them; on any failure the old
    /// certificate keeps serving and the error says which file is wrong and why.
    pub fn reload(&self) -> Result<(), ConfigError> {
        let config = Arc::new(server_config(&self.files)?);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = config;
        Ok(())
    }

    fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.read().unwrap_or_else(|p| p.into_inner()).clone())
    }

    /// The server side of the handshake on a fresh connection, within `timeout`; None (counted)
    /// when it fails or takes too long.
    ///
    /// Until the client sends its first byte the connection holds only its socket, this timer
    /// and its task: rustls's connection state (a few KiB) is made once the ClientHello starts
    /// to arrive, so a crowd of connections that open and stall costs no more than plain ones.
    pub async fn accept(
        &self,
        stream: TcpStream,
        timeout: Duration,
        stats: &Stats,
    ) -> Option<TlsStream<TcpStream>> {
        let handshake = async {
            stream.readable().await?;
            self.acceptor().accept(stream).await
        };
        match tokio::time::timeout(timeout, handshake).await {
            Ok(Ok(s)) => Some(s),
            // Not TLS at all, no common version or cipher, no `http/1.1` in its ALPN, a client
            // that refused the certificate (it sends an alert), or one that hung up midway.
            // Not logged: a port scanner would flood the log.
            Ok(Err(_)) => {
                Stats::inc(&stats.tls_handshake_failures);
                None
            }
            Err(_) => {
                Stats::inc(&stats.tls_handshake_timeouts);
                None
            }
        }
    }
}

fn read(key: &str, path: &str) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| err(key, format!("cannot read {path}: {e}")))
}

/// A `ServerConfig` for the files: TLS 1.2 and 1.3 on ring, ALPN `http/1.1`, no client
/// certificates.
fn server_config(files: &TlsConfig) -> Result<ServerConfig, ConfigError> {
    let (cert_path, key_path) = (files.cert.as_str(), files.key.as_str());
    let pem = read("tls.cert", cert_path)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err("tls.cert", format!("{cert_path} is not readable PEM: {e}")))?;
    if chain.is_empty() {
        return Err(err("tls.cert", format!("no certificate (-----BEGIN CERTIFICATE-----) in {cert_path}")));
    }
    let pem = read("tls.key", key_path)?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        let why = match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "no private key (PKCS#8, PKCS#1 or SEC1 PEM)".into()
            }
            other => format!("no readable private key ({other})"),
        };
        err("tls.key", format!("{why} in {key_path}"))
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| err("tls", format!("the TLS library refused its own settings: {e}")))?
        .with_no_client_auth();
    // Also checks that the key belongs to the leaf certificate (same public key), so a renewal
    // that replaced only one of the two files is refused instead of failing every handshake.
    let mut config = builder.with_single_cert(chain, key).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => {
            err("tls.key", format!("{key_path} is not the key of the certificate in {cert_path}"))
        }
        rustls::Error::InvalidCertificate(_) => {
            err("tls.cert", format!("the first certificate in {cert_path} cannot be used: {e}"))
        }
        other => err("tls.key", format!("{key_path} cannot be used with {cert_path}: {other}")),
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
