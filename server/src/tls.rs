//! TLS termination with rustls: `--tls-cert` / `--tls-key` (PEM) serve the REST API and the
//! gateway as `https://` and `wss://`.
//!
//! [`CertStore`] holds the certificate and key and is the rustls certificate resolver, so a
//! reload swaps what the *next* handshake gets while open connections keep theirs. On SIGHUP
//! ([`handle_sighup`]) both files are read again; a reload that fails (a half-written file, a
//! key that does not match) keeps the old certificate and logs why. Without TLS, SIGHUP is
//! only logged: its default action would end the server.
//!
//! [`listener`] wraps the TCP listener with `tls-listener`, which runs the handshakes
//! concurrently under a timeout, so a slow or silent client never holds up the others and a
//! failed handshake only drops that connection.

use std::{
    io,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::Duration,
};

use axum::serve::Listener;
use rustls::{
    crypto::ring::default_provider,
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
    ServerConfig,
};
use tls_listener::TlsListener;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{server::TlsStream, TlsAcceptor};
use tokio_util::sync::CancellationToken;

/// A handshake not finished in this time is dropped: a client that connects and says
/// nothing must not hold a task and a socket for ever. A real handshake takes one or two
/// round trips (milliseconds); 10 s leaves room for a slow mobile link.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// After a failed `accept` (e.g. out of file descriptors), wait this long before the next
/// rather than spin; axum's own TCP listener does the same.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// Why a certificate or key file cannot be used; names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the certificate file {path}: {message}")]
    Cert { path: PathBuf, message: String },
    #[error("cannot read the private key file {path}: {message}")]
    Key { path: PathBuf, message: String },
    #[error("the private key {key} does not belong to the certificate {cert}")]
    Mismatch { cert: PathBuf, key: PathBuf },
}

/// The certificate and key being served, swapped whole on reload.
#[derive(Debug)]
pub struct CertStore {
    current: RwLock<Arc<CertifiedKey>>,
    cert: PathBuf,
    key: PathBuf,
}

impl CertStore {
    /// Reads the certificate chain (leaf first) and its private key from PEM files.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        Ok(Self {
            current: RwLock::new(Arc::new(read(cert, key)?)),
            cert: cert.to_owned(),
            key: key.to_owned(),
        })
    }

    /// Reads the files again and serves what they hold from the next handshake on. On
    /// failure the current certificate stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = Arc::new(read(&self.cert, &self.key)?);
        // Only ever replaced whole, so a poisoned lock still holds a usable key.
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
        Ok(())
    }

    fn current(&self) -> Arc<CertifiedKey> {
        Arc::clone(
            &self
                .current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

/// Handles every SIGHUP until `stop` (certbot's deploy hook and `systemctl reload` send
/// one): reloads the certificate when serving TLS, else logs that there is nothing to
/// reload. Either way the signal no longer has its default action, ending the process.
#[cfg(unix)]
pub fn handle_sighup(store: Option<Arc<CertStore>>, stop: CancellationToken) -> io::Result<()> {
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                got = hangups.recv() => if got.is_none() { return },
            }
            let Some(store) = &store else {
                tracing::info!("SIGHUP: no TLS certificate to reload (TLS is off); ignored");
                continue;
            };
            match store.reload() {
                Ok(()) => {
                    tracing::info!(cert = %store.cert.display(), "TLS certificate reloaded");
                }
                Err(e) => tracing::error!(
                    error = %e,
                    "TLS certificate not reloaded; still serving the previous one"
                ),
            }
        }
    });
    Ok(())
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

fn read(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let cert_error = |message: String| TlsError::Cert {
        path: cert.to_owned(),
        message,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| cert_error(e.to_string()))?;
    if chain.is_empty() {
        return Err(cert_error("no PEM certificate in it".into()));
    }
    let key_error = |message: String| TlsError::Key {
        path: key.to_owned(),
        message,
    };
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| key_error(e.to_string()))?;
    let signing = default_provider()
        .key_provider
        .load_private_key(private)
        .map_err(|e| key_error(e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|_| TlsError::Mismatch {
        cert: cert.to_owned(),
        key: key.to_owned(),
    })?;
    Ok(certified)
}

/// `tcp` behind TLS with the certificate `store` holds at each handshake, as an axum
/// listener.
pub fn listener(tcp: TcpListener, store: Arc<CertStore>) -> anyhow::Result<HttpsListener> {
    let mut config = ServerConfig::builder_with_provider(Arc::new(default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(store);
    // HTTP/1.1 only: the server speaks no HTTP/2, and the gateway's WebSocket upgrade is an
    // HTTP/1.1 mechanism.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let inner = tls_listener::builder(acceptor)
        .handshake_timeout(HANDSHAKE_TIMEOUT)
        .listen(tcp);
    Ok(HttpsListener { inner })
}

/// TLS connections, handshaken, for `axum::serve`.
pub struct HttpsListener {
    inner: TlsListener<TcpListener, TlsAcceptor>,
}

impl Listener for HttpsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok(conn) => return conn,
                Err(tls_listener::Error::ListenerError(e)) => {
                    if !matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionRefused
                            | io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::ConnectionReset
                    ) {
                        tracing::error!(error = %e, "accept failed");
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    }
                }
                // A client that does not trust the certificate, speaks plain HTTP to this
                // port, or hangs up: that connection ends, nothing else does. Common on a
                // public port (scanners), so not an error of the server's.
                Err(e) => {
                    metrics::counter!("sohbet_tls_handshake_failures_total").increment(1);
                    tracing::debug!(error = %e, "TLS handshake failed");
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}
