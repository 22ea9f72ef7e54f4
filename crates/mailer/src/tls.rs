//! TLS for SMTP and POP3: one root store (the system's roots plus an optional extra CA
//! bundle from configuration, for private CAs and tests), loaded once. Certificates are
//! always verified against the host name the tenant entered, even though the TCP
//! connection goes to an address checked beforehand.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use domain::mail::FailureKind;

/// Problems loading TLS roots at start-up.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("the extra CA bundle is not valid PEM: {0}")]
    BadPem(String),
    #[error("no trusted root certificates could be loaded")]
    NoRoots,
    /// The platform relay's host cannot be checked against a certificate (STARTTLS).
    #[error("the relay host cannot be used for TLS: {0}")]
    RelayHost(String),
}

/// Roots and client configuration, shared by every connection.
#[derive(Clone)]
pub struct TlsMaterial {
    /// How many trusted roots were loaded (for the log and `Debug`).
    roots: usize,
    connector: TlsConnector,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial").field("roots", &self.roots).finish()
    }
}

impl TlsMaterial {
    /// The system roots plus `extra_ca_pem`.
    pub fn load(extra_ca_pem: Option<&[u8]>) -> Result<Self, TlsSetupError> {
        let mut roots_der: Vec<CertificateDer<'static>> = rustls_native_certs::load_native_certs().certs;
        if let Some(pem) = extra_ca_pem {
            for cert in CertificateDer::pem_slice_iter(pem) {
                roots_der.push(cert.map_err(|e| TlsSetupError::BadPem(e.to_string()))?);
            }
        }
        let mut store = RootCertStore::empty();
        let (added, _) = store.add_parsable_certificates(roots_der);
        if added == 0 {
            return Err(TlsSetupError::NoRoots);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|_| TlsSetupError::NoRoots)?
            .with_root_certificates(store)
            .with_no_client_auth();
        Ok(Self {
            roots: added,
            connector: TlsConnector::from(Arc::new(config)),
        })
    }

    /// TLS on an open TCP stream (SMTPS, POP3S, or after our own STARTTLS), verified
    /// against `host`.
    pub async fn connect(&self, host: &str, tcp: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
        let name = ServerName::try_from(host.to_owned()).map_err(std::io::Error::other)?;
        self.connector.connect(name, tcp).await
    }
}

/// Recognises TLS trouble anywhere in an error's source chain.
pub fn classify_tls(err: &(dyn std::error::Error + 'static)) -> Option<FailureKind> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(match tls {
                rustls::Error::InvalidCertificate(
                    rustls::CertificateError::NotValidForName | rustls::CertificateError::NotValidForNameContext { .. },
                ) => FailureKind::CertificateNameMismatch,
                rustls::Error::InvalidCertificate(_) => FailureKind::CertificateUntrusted,
                _ => FailureKind::TlsModeMismatch,
            });
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(kind) = classify_tls(inner)
        {
            return Some(kind);
        }
        current = e.source();
    }
    None
}
