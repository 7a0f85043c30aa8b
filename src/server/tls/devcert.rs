//! Development certificates made with rcgen: a local CA and a leaf for
//! localhost, 127.0.0.1 and ::1. For `scripts/dev.sh` and tests only; a real
//! deployment uses a certificate from a public CA.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

use crate::crypto::KeyError;

#[derive(Debug, thiserror::Error)]
pub enum DevCertError {
    #[error("rcgen: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error(transparent)]
    Write(#[from] KeyError),
}

pub struct DevCert {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl DevCert {
    pub fn generate(hosts: &[&str]) -> Result<Self, DevCertError> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "tipwire development CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate()?;
        let ca = ca_params.self_signed(&ca_key)?;

        let names: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
        let mut leaf = CertificateParams::new(names)?;
        leaf.distinguished_name
            .push(DnType::CommonName, "tipwire dev");
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf_key = KeyPair::generate()?;
        let cert = leaf.signed_by(&leaf_key, &ca, &ca_key)?;
        Ok(Self {
            ca_pem: ca.pem(),
            cert_pem: cert.pem(),
            key_pem: leaf_key.serialize_pem(),
        })
    }

    /// Writes `ca.pem`, `cert.pem` and `key.pem` (0600) into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), DevCertError> {
        std::fs::create_dir_all(dir).map_err(|e| KeyError::Write(dir.to_owned(), e))?;
        crate::crypto::write_new(&dir.join("ca.pem"), &self.ca_pem, 0o644)?;
        crate::crypto::write_new(&dir.join("cert.pem"), &self.cert_pem, 0o644)?;
        crate::crypto::write_new(&dir.join("key.pem"), &self.key_pem, 0o600)?;
        Ok(())
    }
}
