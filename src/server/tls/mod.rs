//! TLS with rustls: TLS 1.2 and 1.3, forward-secret (ECDHE) suites only, ALPN
//! h2 and http/1.1 (actix adds them). The certificate and key are re-read from
//! disk when they change, without a restart: new handshakes get the new pair,
//! open connections keep the old one. The PEM files are operator input; a bad
//! renewal is refused and the previous certificate stays in service.

mod devcert;

pub use devcert::{DevCert, DevCertError};

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rustls::crypto::{CryptoProvider, ring};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "tls.cert_path {0}: {1}. Fix: point tls.cert_path at a PEM certificate chain (scripts/dev.sh makes a dev one)"
    )]
    Cert(PathBuf, String),
    #[error(
        "tls.key_path {0}: {1}. Fix: point tls.key_path at the PEM private key of the certificate"
    )]
    Key(PathBuf, String),
    #[error("rustls refused the configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The suites we offer: all ECDHE (forward secret), AEAD only.
fn provider() -> CryptoProvider {
    use ring::cipher_suite as cs;
    CryptoProvider {
        cipher_suites: vec![
            cs::TLS13_AES_256_GCM_SHA384,
            cs::TLS13_AES_128_GCM_SHA256,
            cs::TLS13_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ],
        ..ring::default_provider()
    }
}

/// Builds the server configuration around a reloading certificate.
pub fn server_config(cert: Arc<ReloadingCert>) -> Result<rustls::ServerConfig, TlsError> {
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    Ok(config)
}

type Stamp = Option<(SystemTime, u64)>;

/// A certificate resolver that swaps in a new pair when the files change.
#[derive(Debug)]
pub struct ReloadingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: ArcSwap<CertifiedKey>,
    stamps: Mutex<(Stamp, Stamp)>,
}

fn stamp(path: &Path) -> Stamp {
    let meta = fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

fn load(cert_path: &Path, key_path: &Path) -> Result<CertifiedKey, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| TlsError::Cert(cert_path.to_owned(), e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Cert(cert_path.to_owned(), e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::Cert(
            cert_path.to_owned(),
            "no certificate in the file".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key_path)
        .map_err(|e| TlsError::Key(key_path.to_owned(), e.to_string()))?;
    let certified = CertifiedKey::from_der(certs, key, &provider()).map_err(|e| {
        TlsError::Key(
            key_path.to_owned(),
            format!("unusable or not the certificate's key ({e})"),
        )
    })?;
    Ok(certified)
}

impl ReloadingCert {
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        let stamps = (stamp(cert_path), stamp(key_path));
        let current = load(cert_path, key_path)?;
        Ok(Self {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            current: ArcSwap::from_pointee(current),
            stamps: Mutex::new(stamps),
        })
    }

    /// Re-reads the files if their modification time or size changed. Returns
    /// whether a new certificate is now in service. On error the old one stays.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let now = (stamp(&self.cert_path), stamp(&self.key_path));
        let mut seen = self
            .stamps
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *seen == now {
            return Ok(false);
        }
        let fresh = load(&self.cert_path, &self.key_path)?;
        self.current.store(Arc::new(fresh));
        *seen = now;
        Ok(true)
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}
