//! `tipwire dev init`: everything a newcomer needs to run the gateway locally,
//! made once and reused: keys, a development CA and certificate (rcgen), and a
//! demo mediator whose identity file opens the demo zone's tips. Never for
//! production: the escrow identity stays on disk beside the keys.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::config::Settings;
use crate::crypto::{IdentityKey, KeyError, Keyring};
use crate::mediator::{DirectoryError, MediatorDirectory, NewMediator};
use crate::server::tls::{DevCert, DevCertError};

#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Cert(#[from] DevCertError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("redis: {0}. Fix: start Redis (scripts/dev.sh does) and check redis.url")]
    Directory(#[from] DirectoryError),
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
}

pub const DEMO_NAME: &str = "Demo mediator";

/// Makes what is missing under `dir`, reuses what exists, and says what it did.
pub async fn init(settings: &Settings, dir: &Path) -> Result<String, DevError> {
    let mut out = String::new();
    std::fs::create_dir_all(dir).map_err(|e| DevError::Io(dir.to_owned(), e))?;

    if Keyring::load(&settings.keys.dir).is_err() {
        let report = Keyring::init(&settings.keys.dir, &dir.join("escrow.identity"))?;
        let _ = writeln!(
            out,
            "made keys in {} (escrow identity: {})",
            settings.keys.dir.display(),
            dir.join("escrow.identity").display()
        );
        drop(report);
    } else {
        let _ = writeln!(out, "keys: reusing {}", settings.keys.dir.display());
    }

    if settings.tls.cert_path.exists() && settings.tls.key_path.exists() {
        let _ = writeln!(out, "tls: reusing {}", settings.tls.cert_path.display());
    } else {
        let cert = DevCert::generate(&["localhost", "127.0.0.1", "::1"])?;
        let tls_dir = settings.tls.cert_path.parent().unwrap_or(dir);
        std::fs::create_dir_all(tls_dir).map_err(|e| DevError::Io(tls_dir.to_owned(), e))?;
        crate::crypto::write_new(&settings.tls.cert_path, &cert.cert_pem, 0o644)?;
        crate::crypto::write_new(&settings.tls.key_path, &cert.key_pem, 0o600)?;
        let ca = tls_dir.join("ca.pem");
        if !ca.exists() {
            crate::crypto::write_new(&ca, &cert.ca_pem, 0o644)?;
        }
        let _ = writeln!(
            out,
            "made a development certificate for localhost: {} (trust {} to avoid warnings)",
            settings.tls.cert_path.display(),
            ca.display()
        );
    }

    let identity_path = dir.join("demo-mediator.identity");
    let identity = if identity_path.exists() {
        let text = std::fs::read_to_string(&identity_path)
            .map_err(|e| DevError::Io(identity_path.clone(), e))?;
        IdentityKey::parse_file(&text)
            .into_iter()
            .next()
            .ok_or_else(|| {
                DevError::Io(
                    identity_path.clone(),
                    std::io::Error::other(
                        "no age identity in the file; delete it to make a new one",
                    ),
                )
            })?
    } else {
        let id = IdentityKey::generate();
        let body = format!(
            "# tipwire demo mediator identity (development only)\n# public key: {}\n{}\n",
            id.to_public(),
            id.to_secret_string().as_str()
        );
        crate::crypto::write_new(&identity_path, &body, 0o600)?;
        id
    };
    let zones = settings.zones.clone();
    let directory = MediatorDirectory::new(
        crate::bus::Store::new(&settings.redis).map_err(DirectoryError::from)?,
    );
    let recipient = identity.to_public();
    let enrolled = directory
        .list()
        .await?
        .into_iter()
        .any(|m| m.recipient == recipient.to_string());
    if !enrolled {
        let now = crate::clock::now_secs();
        let first = zones
            .first()
            .map(|(z, _)| vec![z.clone()])
            .unwrap_or_default();
        directory
            .add(
                NewMediator {
                    name: DEMO_NAME.into(),
                    zones: first,
                    supervisor: false,
                    recipient,
                },
                now,
            )
            .await?;
    }
    let zone = zones
        .first()
        .map(|(z, _)| z.as_str().to_owned())
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "demo mediator for zone {zone:?}: identity in {}",
        identity_path.display()
    );
    Ok(out)
}
