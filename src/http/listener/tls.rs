//! HTTPS on the client address: the certificate in use, its reload, and
//! the handshake of one connection.
//!
//! - **Reload without dropping connections.** rustls asks
//!   [`CurrentCertificate`] for the certificate at every handshake; it
//!   hands out the one it holds, and [`Tls::reload`] (on SIGHUP, from
//!   `main.rs`) swaps in a new one only once the files read, parse and the
//!   key matches the leaf. New handshakes get the new certificate; open
//!   connections are not touched (their keys were agreed at their
//!   handshake). A bad new pair is an error for the caller to log, and the
//!   old certificate stays.
//! - **ALPN** offers `h2` and `http/1.1`; the listener serves the protocol
//!   the client picked (HTTP/1.1 when it asked for none).
//! - **The handshake is bounded** by `tls.handshake_timeout_secs`, counted
//!   from the accepted connection, and it runs inside the connection's
//!   slot under both connection caps, so a client that opens TCP and never
//!   finishes a handshake holds a slot for that long at most.
//! - **Plain HTTP on the TLS port** (the first byte is a letter, never a
//!   TLS record) is answered `400` in plain text naming the https URL, so
//!   a person pointing curl at the wrong scheme reads why; other failed
//!   handshakes are closed. Both are logged at most once a second, with
//!   the count held back.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::LogThrottle;
use crate::config::TlsConfig;

/// The first byte of every TLS connection: a handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Why a certificate could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("{0} holds no PEM certificate")]
    NoCertificate(PathBuf),
    #[error("cannot use the key {path} with the certificate: {source}")]
    Key {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("TLS settings: {0}")]
    Settings(rustls::Error),
}

/// The HTTP version a TLS client agreed to by ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
}

/// The certificate handed to each new handshake.
#[derive(Debug)]
struct CurrentCertificate(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for CurrentCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().clone())
    }
}

/// The TLS side of the client listener.
pub struct Tls {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: Arc<CurrentCertificate>,
    acceptor: TlsAcceptor,
    handshake_timeout: Duration,
    failures_log: Mutex<LogThrottle>,
    plain_log: Mutex<LogThrottle>,
}

impl Tls {
    /// Loads the certificate and key of `[tls]`; an error stops the start.
    pub fn load(cfg: &TlsConfig) -> Result<Arc<Self>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let first = certified_key(&cfg.cert, &cfg.key, &provider)?;
        let current = Arc::new(CurrentCertificate(RwLock::new(Arc::new(first))));
        let mut config = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Settings)?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(Self {
            cert_path: cfg.cert.clone(),
            key_path: cfg.key.clone(),
            provider,
            current,
            acceptor: TlsAcceptor::from(Arc::new(config)),
            handshake_timeout: cfg.handshake_timeout(),
            failures_log: Mutex::default(),
            plain_log: Mutex::default(),
        }))
    }

    /// Reads the files again and serves the new pair from the next
    /// handshake on; on an error the old one stays. Returns the new leaf's
    /// SHA-256 fingerprint.
    pub fn reload(&self) -> Result<String, TlsError> {
        let key = certified_key(&self.cert_path, &self.key_path, &self.provider)?;
        let fingerprint = fingerprint(&key);
        *self.current.0.write() = Arc::new(key);
        Ok(fingerprint)
    }

    /// The SHA-256 fingerprint (hex) of the leaf certificate served now.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.current.0.read())
    }

    /// The certificate file, for log lines.
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// Completes the handshake of an accepted connection within the
    /// handshake timeout, and says which HTTP version ALPN chose. A failed
    /// handshake and plain HTTP (answered here) are logged; a timeout is
    /// left to the caller, which counts it.
    pub async fn accept(
        &self,
        stream: TcpStream,
        peer: std::net::SocketAddr,
        https_port: u16,
    ) -> Result<(TlsStream<TcpStream>, Protocol), Refused> {
        let deadline = tokio::time::Instant::now() + self.handshake_timeout;
        let first = tokio::time::timeout_at(deadline, first_byte(&stream)).await;
        match first {
            Err(_) => return Err(Refused::TimedOut),
            // A port probe (connect, then close) is no failed handshake.
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                tracing::debug!(%peer, "closed before a TLS handshake");
                return Err(Refused::Failed);
            }
            Ok(Err(e)) => return Err(self.failed(peer, &e)),
            Ok(Ok(b)) if b != TLS_HANDSHAKE_RECORD && b.is_ascii_alphabetic() => {
                self.log_plain(peer);
                answer_plain_http(stream, https_port).await;
                return Err(Refused::PlainHttp);
            }
            Ok(Ok(_)) => {}
        }
        match tokio::time::timeout_at(deadline, self.acceptor.accept(stream)).await {
            Err(_) => Err(Refused::TimedOut),
            Ok(Err(e)) => Err(self.failed(peer, &e)),
            Ok(Ok(tls)) => {
                let protocol = match tls.get_ref().1.alpn_protocol() {
                    Some(b"h2") => Protocol::Http2,
                    _ => Protocol::Http1,
                };
                Ok((tls, protocol))
            }
        }
    }

    fn failed(&self, peer: std::net::SocketAddr, e: &io::Error) -> Refused {
        if let Some(held) = self.failures_log.lock().admit(Instant::now()) {
            tracing::warn!(%peer, error = %e, held_back = held, "TLS handshake failed; closed");
        }
        Refused::Failed
    }

    fn log_plain(&self, peer: std::net::SocketAddr) {
        if let Some(held) = self.plain_log.lock().admit(Instant::now()) {
            tracing::warn!(
                %peer,
                held_back = held,
                "plain HTTP sent to the HTTPS port; answered 400 and closed"
            );
        }
    }
}

/// How a connection failed to become a TLS connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    TimedOut,
    PlainHttp,
    Failed,
}

/// Reads a certificate chain and its key, checking they belong together.
fn certified_key(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let chain = CertificateDer::pem_file_iter(cert_path)
        .map_err(unreadable(cert_path))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(unreadable(cert_path))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(cert_path.to_path_buf()));
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(unreadable(key_path))?;
    CertifiedKey::from_der(chain, key, provider).map_err(|source| TlsError::Key {
        path: key_path.to_path_buf(),
        source,
    })
}

fn unreadable(path: &Path) -> impl Fn(rustls::pki_types::pem::Error) -> TlsError {
    let path = path.to_path_buf();
    move |source| TlsError::Read {
        path: path.clone(),
        source,
    }
}

fn fingerprint(key: &CertifiedKey) -> String {
    key.cert
        .first()
        .map(|leaf| hex::encode(Sha256::digest(leaf.as_ref())))
        .unwrap_or_default()
}

/// Waits for the client's first byte without consuming it.
async fn first_byte(stream: &TcpStream) -> io::Result<u8> {
    let mut b = [0u8; 1];
    match stream.peek(&mut b).await? {
        0 => Err(io::ErrorKind::UnexpectedEof.into()),
        _ => Ok(b[0]),
    }
}

/// Tells a plain HTTP client, in plain HTTP, that this port speaks HTTPS.
async fn answer_plain_http(mut stream: TcpStream, https_port: u16) {
    let body = format!(
        "This port speaks HTTPS: use https://<this host>:{https_port}/ instead of http://.\n"
    );
    let reply = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if stream.write_all(reply.as_bytes()).await.is_ok() {
        super::lingering_close(stream).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_name_the_file() {
        let cfg = TlsConfig {
            cert: "/nonexistent/cert.pem".into(),
            key: "/nonexistent/key.pem".into(),
            redirect_listen: None,
            handshake_timeout_secs: 10,
        };
        let err = Tls::load(&cfg).err().expect("no certificate, no start");
        assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
    }

    #[test]
    fn a_file_without_a_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.pem");
        std::fs::write(&path, "not PEM at all\n").unwrap();
        let provider = rustls::crypto::ring::default_provider();
        let err = certified_key(&path, &path, &provider).unwrap_err();
        assert!(matches!(err, TlsError::NoCertificate(_)), "{err}");
    }
}
