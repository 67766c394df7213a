//! [`Tls`]: whom the SDK trusts for `https://` and `wss://`: the system's root certificates
//! and, optionally, an extra CA (a self-hosted server with a certificate of its own CA). One
//! rustls configuration serves the REST client and the gateway alike.

use std::{
    fmt,
    path::Path,
    sync::{Arc, OnceLock},
};

use rustls::{
    crypto::ring::default_provider,
    pki_types::{pem::PemObject, CertificateDer},
    ClientConfig, RootCertStore,
};

use crate::error::ClientError;

/// The roots a client trusts, as a rustls configuration; cheap to clone.
#[derive(Clone)]
pub struct Tls {
    config: Arc<ClientConfig>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls").finish_non_exhaustive()
    }
}

impl Default for Tls {
    /// The system's roots only.
    fn default() -> Self {
        Self::with_roots(system_roots().clone())
    }
}

impl Tls {
    /// The system's roots plus the CA certificate(s) in the PEM file at `path`.
    pub fn with_extra_ca(path: &Path) -> Result<Self, ClientError> {
        let pem = std::fs::read(path)
            .map_err(|e| ClientError::Tls(format!("cannot read {}: {e}", path.display())))?;
        Self::with_extra_ca_pem(&pem)
            .map_err(|e| ClientError::Tls(format!("{}: {e}", path.display())))
    }

    /// The system's roots plus the CA certificate(s) in `pem`.
    pub fn with_extra_ca_pem(pem: &[u8]) -> Result<Self, ClientError> {
        let mut roots = system_roots().clone();
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| ClientError::Tls(format!("not a PEM certificate: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| ClientError::Tls(format!("not a usable CA certificate: {e}")))?;
            added += 1;
        }
        if added == 0 {
            return Err(ClientError::Tls("no PEM certificate in it".into()));
        }
        Ok(Self::with_roots(roots))
    }

    /// The rustls configuration (for a connection the SDK does not make itself).
    pub fn config(&self) -> Arc<ClientConfig> {
        Arc::clone(&self.config)
    }

    fn with_roots(roots: RootCertStore) -> Self {
        let config = ClientConfig::builder_with_provider(Arc::new(default_provider()))
            .with_safe_default_protocol_versions()
            // ring supports every safe default version: this cannot fail.
            .unwrap_or_else(|_| unreachable!("ring supports TLS 1.2 and 1.3"))
            .with_root_certificates(roots)
            .with_no_client_auth();
        Self {
            config: Arc::new(config),
        }
    }
}

/// The system's trusted roots, read once per process (reading the store takes milliseconds
/// and clients are made per login). Unreadable or unparsable entries are skipped: a system
/// without roots still reaches a server whose CA is given as the extra CA.
fn system_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::debug!(error = %e, "a system root certificate could not be read");
        }
        let mut roots = RootCertStore::empty();
        let (added, ignored) = roots.add_parsable_certificates(found.certs);
        tracing::debug!(added, ignored, "system root certificates");
        roots
    })
}

/// The rustls error somewhere in `error`'s chain. tokio-rustls wraps it in an `io::Error`
/// (itself wrapped in another by hyper's connector), and `io::Error::source()` skips the
/// error it wraps, so each `io::Error` is looked into instead.
pub(crate) fn tls_cause<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::Error> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        next = match e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            Some(wrapped) => Some(wrapped as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}
