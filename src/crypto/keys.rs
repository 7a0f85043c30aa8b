//! The gateway's keyring: a directory of versioned key files written by
//! `tipwire keys init` / `tipwire keys rotate`.
//!
//! | file | holds | mode |
//! |---|---|---|
//! | `escrow.vN.pub` | escrow recipient (public; its identity lives offline) | 0644 |
//! | `relay.vN.key` | relay identity, seals reply addresses | 0600 |
//! | `pseudonym.vN.key` | pseudonym secret, 32 bytes hex | 0600 |
//! | `vapid.vN.key` | VAPID key for Web Push, P-256 in PKCS#8 PEM | 0600 |
//!
//! The highest version of each is current; older versions stay so that old
//! reply addresses still open and old pseudonyms stay recognisable. The files are
//! operator input: a secret file readable by group or others is refused.
//!
//! The VAPID key is optional: keyrings made before Web Push load without it,
//! and [`Keyring::vapid`] is then `None` (push disabled) until
//! `tipwire keys rotate vapid` writes `vapid.v1.key`. Only its current version
//! signs: browsers bind each push subscription to the public key they were
//! given, so rotating it invalidates every existing subscription and every
//! mediator's phone must subscribe again. The PEM file is what `openssl
//! genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256` writes, so an
//! operator can bring one.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::RngCore;

use super::{IdentityKey, RecipientKey};
use crate::crypto::VapidKey;
use crate::privacy::PseudonymKey;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Escrow,
    Relay,
    Pseudonym,
    /// Signs Web Push requests (RFC 8292). Optional: see the module docs.
    Vapid,
}

impl KeyKind {
    pub const ALL: [KeyKind; 4] = [Self::Escrow, Self::Relay, Self::Pseudonym, Self::Vapid];

    fn stem(self) -> &'static str {
        match self {
            Self::Escrow => "escrow",
            Self::Relay => "relay",
            Self::Pseudonym => "pseudonym",
            Self::Vapid => "vapid",
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            Self::Escrow => "pub",
            Self::Relay | Self::Pseudonym | Self::Vapid => "key",
        }
    }

    fn file_name(self, version: u32) -> String {
        format!("{}.v{version}.{}", self.stem(), self.suffix())
    }

    fn parse_file_name(name: &str) -> Option<(Self, u32)> {
        let mut parts = name.split('.');
        let (stem, ver, suffix) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let kind = Self::ALL.into_iter().find(|k| k.stem() == stem)?;
        let version: u32 = ver.strip_prefix('v')?.parse().ok()?;
        (suffix == kind.suffix() && version > 0).then_some((kind, version))
    }
}

impl std::fmt::Display for KeyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.stem())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "keys.dir {0}: {1}. Fix: run `tipwire keys init` (or scripts/keys-init.sh) or point keys.dir at the right directory"
    )]
    Unreadable(PathBuf, std::io::Error),
    #[error("keys.dir {0}: no {1} key. Fix: run `tipwire keys init`")]
    Missing(PathBuf, KeyKind),
    #[error(
        "{0}: not a valid {1} key file. Fix: restore it from backup, or rotate with `tipwire keys rotate {1}`"
    )]
    Invalid(PathBuf, KeyKind),
    #[error("{0}: secret key readable by group or others (mode {1:o}). Fix: chmod 600 {0}")]
    TooOpen(PathBuf, u32),
    #[error(
        "{0} already exists; refusing to overwrite key material. Fix: use `tipwire keys rotate`, or move the old files away deliberately"
    )]
    Exists(PathBuf),
    #[error("could not write {0}: {1}")]
    Write(PathBuf, std::io::Error),
}

/// One version of one key, as `keys show` prints it: never secret bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    pub kind: KeyKind,
    pub version: u32,
    pub fingerprint: String,
    pub current: bool,
}

/// What `keys init` / `keys rotate` made.
#[derive(Debug, Clone)]
pub struct KeyringReport {
    pub written: Vec<PathBuf>,
    pub escrow_identity: Option<PathBuf>,
    pub escrow_recipient: Option<String>,
}

pub struct Keyring {
    escrow: Vec<(u32, RecipientKey)>,
    relay: Vec<(u32, IdentityKey)>,
    pseudonym: Vec<PseudonymKey>,
    vapid: Vec<(u32, Arc<VapidKey>)>,
}

impl Keyring {
    /// Loads and checks every key file in `dir`.
    pub fn load(dir: &Path) -> Result<Self, KeyError> {
        let mut escrow = Vec::new();
        let mut relay = Vec::new();
        let mut pseudonym = Vec::new();
        let mut vapid = Vec::new();
        for (kind, version, path) in scan(dir)? {
            let text =
                fs::read_to_string(&path).map_err(|e| KeyError::Unreadable(path.clone(), e))?;
            match kind {
                KeyKind::Escrow => {
                    let r = RecipientKey::parse(&text)
                        .map_err(|_| KeyError::Invalid(path.clone(), kind))?;
                    escrow.push((version, r));
                }
                KeyKind::Relay => {
                    check_private(&path)?;
                    let mut ids = IdentityKey::parse_file(&text);
                    let id = ids
                        .pop()
                        .filter(|_| ids.is_empty())
                        .ok_or(KeyError::Invalid(path.clone(), kind))?;
                    relay.push((version, id));
                }
                KeyKind::Pseudonym => {
                    check_private(&path)?;
                    let bytes = hex::decode(text.trim())
                        .map_err(|_| KeyError::Invalid(path.clone(), kind))?;
                    let secret: [u8; 32] = bytes
                        .try_into()
                        .map_err(|_| KeyError::Invalid(path.clone(), kind))?;
                    pseudonym.push(PseudonymKey::new(version, secret));
                }
                KeyKind::Vapid => {
                    check_private(&path)?;
                    let key = VapidKey::from_pkcs8_pem(&text)
                        .map_err(|_| KeyError::Invalid(path.clone(), kind))?;
                    vapid.push((version, Arc::new(key)));
                }
            }
        }
        escrow.sort_by_key(|(v, _)| *v);
        relay.sort_by_key(|(v, _)| *v);
        pseudonym.sort_by_key(PseudonymKey::version);
        vapid.sort_by_key(|(v, _)| *v);
        if escrow.is_empty() {
            return Err(KeyError::Missing(dir.to_owned(), KeyKind::Escrow));
        }
        if relay.is_empty() {
            return Err(KeyError::Missing(dir.to_owned(), KeyKind::Relay));
        }
        if pseudonym.is_empty() {
            return Err(KeyError::Missing(dir.to_owned(), KeyKind::Pseudonym));
        }
        // No VAPID key is allowed: see the module docs.
        Ok(Self {
            escrow,
            relay,
            pseudonym,
            vapid,
        })
    }

    /// Makes version 1 of every key. The escrow identity goes to `escrow_out`
    /// only (the gateway keeps its public half); nothing is overwritten.
    pub fn init(dir: &Path, escrow_out: &Path) -> Result<KeyringReport, KeyError> {
        ensure_dir(dir)?;
        if let Some((_, _, path)) = scan(dir)?.into_iter().next() {
            return Err(KeyError::Exists(path));
        }
        if escrow_out.exists() {
            return Err(KeyError::Exists(escrow_out.to_owned()));
        }
        let mut report = KeyringReport {
            written: Vec::new(),
            escrow_identity: None,
            escrow_recipient: None,
        };
        for kind in KeyKind::ALL {
            write_version(dir, kind, 1, escrow_out, &mut report)?;
        }
        Ok(report)
    }

    /// Adds the next version of `kind`; older versions stay for reading.
    /// For [`KeyKind::Vapid`] the first rotation of an older keyring writes
    /// version 1, and any rotation invalidates every push subscription.
    pub fn rotate(dir: &Path, kind: KeyKind, escrow_out: &Path) -> Result<KeyringReport, KeyError> {
        let current = Self::load(dir)?;
        let next = current
            .versions()
            .iter()
            .filter(|v| v.kind == kind)
            .map(|v| v.version)
            .max()
            .unwrap_or(0)
            + 1;
        if kind == KeyKind::Escrow && escrow_out.exists() {
            return Err(KeyError::Exists(escrow_out.to_owned()));
        }
        let mut report = KeyringReport {
            written: Vec::new(),
            escrow_identity: None,
            escrow_recipient: None,
        };
        write_version(dir, kind, next, escrow_out, &mut report)?;
        Ok(report)
    }

    /// The escrow recipient every tip is sealed to, with its version.
    pub fn escrow(&self) -> (u32, &RecipientKey) {
        // load() refuses an empty list, so last() is always Some.
        match self.escrow.last() {
            Some((v, r)) => (*v, r),
            None => unreachable_empty(),
        }
    }

    pub fn pseudonym_key(&self) -> &PseudonymKey {
        match self.pseudonym.last() {
            Some(k) => k,
            None => unreachable_empty(),
        }
    }

    pub fn relay_identity(&self) -> (u32, &IdentityKey) {
        match self.relay.last() {
            Some((v, k)) => (*v, k),
            None => unreachable_empty(),
        }
    }

    /// Every relay identity, newest first: reply addresses sealed under an
    /// older version still open after a rotation.
    pub fn relay_identities(&self) -> impl Iterator<Item = &IdentityKey> {
        self.relay.iter().rev().map(|(_, id)| id)
    }

    /// The sender's pseudonym under every kept key version, current first.
    pub fn pseudonyms_of(&self, identifier: &[u8]) -> Vec<crate::domain::Pseudonym> {
        self.pseudonym_keys()
            .map(|k| k.pseudonym(identifier))
            .collect()
    }

    /// Every pseudonym key, newest first.
    pub fn pseudonym_keys(&self) -> impl Iterator<Item = &PseudonymKey> {
        self.pseudonym.iter().rev()
    }

    /// The current VAPID key, or `None` when the keyring has none (push
    /// disabled until `tipwire keys rotate vapid`).
    pub fn vapid(&self) -> Option<Arc<VapidKey>> {
        self.vapid.last().map(|(_, k)| Arc::clone(k))
    }

    /// The compact version tag stored beside each tip: escrow and pseudonym.
    pub fn key_version(&self) -> String {
        format!("e{}.p{}", self.escrow().0, self.pseudonym_key().version())
    }

    pub fn versions(&self) -> Vec<VersionInfo> {
        let mut out = Vec::new();
        let last_e = self.escrow().0;
        for (v, r) in &self.escrow {
            out.push(VersionInfo {
                kind: KeyKind::Escrow,
                version: *v,
                fingerprint: r.fingerprint(),
                current: *v == last_e,
            });
        }
        let last_r = self.relay_identity().0;
        for (v, id) in &self.relay {
            out.push(VersionInfo {
                kind: KeyKind::Relay,
                version: *v,
                fingerprint: id.to_public().fingerprint(),
                current: *v == last_r,
            });
        }
        let last_p = self.pseudonym_key().version();
        for k in &self.pseudonym {
            out.push(VersionInfo {
                kind: KeyKind::Pseudonym,
                version: k.version(),
                fingerprint: k.fingerprint(),
                current: k.version() == last_p,
            });
        }
        let last_v = self.vapid.last().map(|(v, _)| *v);
        for (v, key) in &self.vapid {
            out.push(VersionInfo {
                kind: KeyKind::Vapid,
                version: *v,
                fingerprint: key.fingerprint(),
                current: Some(*v) == last_v,
            });
        }
        out
    }
}

#[allow(
    clippy::panic,
    reason = "Keyring::load refuses a keyring without every kind"
)]
fn unreachable_empty() -> ! {
    panic!("keyring loaded without a key of every kind")
}

fn scan(dir: &Path) -> Result<Vec<(KeyKind, u32, PathBuf)>, KeyError> {
    let entries = fs::read_dir(dir).map_err(|e| KeyError::Unreadable(dir.to_owned(), e))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| KeyError::Unreadable(dir.to_owned(), e))?;
        if let Some((kind, version)) = entry
            .file_name()
            .to_str()
            .and_then(KeyKind::parse_file_name)
        {
            out.push((kind, version, entry.path()));
        }
    }
    out.sort_by_key(|(k, v, _)| (k.stem(), *v));
    Ok(out)
}

fn check_private(path: &Path) -> Result<(), KeyError> {
    let mode = fs::metadata(path)
        .map_err(|e| KeyError::Unreadable(path.to_owned(), e))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(KeyError::TooOpen(path.to_owned(), mode & 0o777));
    }
    Ok(())
}

fn ensure_dir(dir: &Path) -> Result<(), KeyError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| KeyError::Write(dir.to_owned(), e))
}

/// Writes `contents` to a new file with `mode`; never replaces an existing one.
pub(crate) fn write_new(path: &Path, contents: &str, mode: u32) -> Result<(), KeyError> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                KeyError::Exists(path.to_owned())
            } else {
                KeyError::Write(path.to_owned(), e)
            }
        })?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| KeyError::Write(path.to_owned(), e))
}

fn write_version(
    dir: &Path,
    kind: KeyKind,
    version: u32,
    escrow_out: &Path,
    report: &mut KeyringReport,
) -> Result<(), KeyError> {
    let path = dir.join(kind.file_name(version));
    match kind {
        KeyKind::Escrow => {
            let identity = IdentityKey::generate();
            let public = identity.to_public().to_string();
            let body = format!(
                "# tipwire escrow identity, version {version}\n\
                 # public key: {public}\n\
                 # Opens every tip. Move this file offline now (encrypted USB, safe);\n\
                 # the gateway never needs it. Whoever holds it can read all tips.\n{}\n",
                identity.to_secret_string().as_str()
            );
            write_new(escrow_out, &body, 0o600)?;
            write_new(&path, &format!("{public}\n"), 0o644)?;
            report.escrow_identity = Some(escrow_out.to_owned());
            report.escrow_recipient = Some(public);
        }
        KeyKind::Relay => {
            let identity = IdentityKey::generate();
            let body = format!(
                "# tipwire relay identity, version {version}\n{}\n",
                identity.to_secret_string().as_str()
            );
            write_new(&path, &body, 0o600)?;
        }
        KeyKind::Pseudonym => {
            let mut secret = zeroize::Zeroizing::new([0u8; 32]);
            rand::rngs::OsRng.fill_bytes(secret.as_mut_slice());
            let encoded = zeroize::Zeroizing::new(hex::encode(secret.as_slice()));
            write_new(&path, &format!("{}\n", encoded.as_str()), 0o600)?;
        }
        KeyKind::Vapid => {
            let key = VapidKey::generate();
            let pem = key
                .to_pkcs8_pem()
                .map_err(|_| KeyError::Invalid(path.clone(), kind))?;
            let body = zeroize::Zeroizing::new(format!(
                "# tipwire VAPID key (Web Push), version {version}\n\
                 # public key (applicationServerKey): {}\n\
                 # Replacing it invalidates every mediator's push subscription.\n{}",
                key.public_key_base64url(),
                pem.as_str()
            ));
            write_new(&path, &body, 0o600)?;
        }
    }
    report.written.push(path);
    Ok(())
}

#[cfg(test)]
mod tests;
