//! The gateway's keyring: a directory of versioned key files written by
//! `tipwire keys init` / `tipwire keys rotate`.
//!
//! | file | holds | mode |
//! |---|---|---|
//! | `escrow.vN.pub` | escrow recipient (public; its identity lives offline) | 0644 |
//! | `relay.vN.key` | relay identity, seals reply addresses | 0600 |
//! | `pseudonym.vN.key` | pseudonym secret, 32 bytes hex | 0600 |
//!
//! The highest version of each is current; older versions stay so that old
//! reply addresses still open and old pseudonyms stay recognisable. The files are
//! operator input: a secret file readable by group or others is refused.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::RngCore;

use super::{IdentityKey, RecipientKey};
use crate::privacy::PseudonymKey;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Escrow,
    Relay,
    Pseudonym,
}

impl KeyKind {
    pub const ALL: [KeyKind; 3] = [Self::Escrow, Self::Relay, Self::Pseudonym];

    fn stem(self) -> &'static str {
        match self {
            Self::Escrow => "escrow",
            Self::Relay => "relay",
            Self::Pseudonym => "pseudonym",
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            Self::Escrow => "pub",
            Self::Relay | Self::Pseudonym => "key",
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
}

impl Keyring {
    /// Loads and checks every key file in `dir`.
    pub fn load(dir: &Path) -> Result<Self, KeyError> {
        let mut escrow = Vec::new();
        let mut relay = Vec::new();
        let mut pseudonym = Vec::new();
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
            }
        }
        escrow.sort_by_key(|(v, _)| *v);
        relay.sort_by_key(|(v, _)| *v);
        pseudonym.sort_by_key(PseudonymKey::version);
        if escrow.is_empty() {
            return Err(KeyError::Missing(dir.to_owned(), KeyKind::Escrow));
        }
        if relay.is_empty() {
            return Err(KeyError::Missing(dir.to_owned(), KeyKind::Relay));
        }
        if pseudonym.is_empty() {
            return Err(KeyError::Missing(dir.to_owned(), KeyKind::Pseudonym));
        }
        Ok(Self {
            escrow,
            relay,
            pseudonym,
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
    pub fn pseudonyms_of(&self, identifier: &[u8]) -> Vec<crate::privacy::Pseudonym> {
        self.pseudonym_keys()
            .map(|k| k.pseudonym(identifier))
            .collect()
    }

    /// Every pseudonym key, newest first.
    pub fn pseudonym_keys(&self) -> impl Iterator<Item = &PseudonymKey> {
        self.pseudonym.iter().rev()
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
    }
    report.written.push(path);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_writes_private_versioned_files_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        let escrow = dir.path().join("escrow.identity");
        let report = Keyring::init(&keys, &escrow).unwrap();
        assert_eq!(report.written.len(), 3);
        for name in ["relay.v1.key", "pseudonym.v1.key"] {
            let mode = fs::metadata(keys.join(name)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
        assert_eq!(
            fs::metadata(&escrow).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let ring = Keyring::load(&keys).unwrap();
        assert_eq!(ring.key_version(), "e1.p1");
        let escrow_ids = IdentityKey::parse_file(&fs::read_to_string(&escrow).unwrap());
        assert_eq!(escrow_ids[0].to_public(), *ring.escrow().1);

        assert!(matches!(
            Keyring::init(&keys, &dir.path().join("other")),
            Err(KeyError::Exists(_))
        ));
        let before = fs::read(&escrow).unwrap();
        assert!(Keyring::init(&dir.path().join("fresh"), &escrow).is_err());
        assert_eq!(fs::read(&escrow).unwrap(), before);
    }

    #[test]
    fn rotation_adds_a_version_and_keeps_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        Keyring::init(&keys, &dir.path().join("e1")).unwrap();
        Keyring::rotate(&keys, KeyKind::Escrow, &dir.path().join("e2")).unwrap();
        Keyring::rotate(&keys, KeyKind::Pseudonym, &dir.path().join("unused")).unwrap();
        let ring = Keyring::load(&keys).unwrap();
        assert_eq!(ring.key_version(), "e2.p2");
        let v = ring.versions();
        assert_eq!(v.iter().filter(|i| i.kind == KeyKind::Escrow).count(), 2);
        assert_eq!(v.iter().filter(|i| i.current).count(), 3);
        assert!(!dir.path().join("unused").exists());
    }

    #[test]
    fn a_world_readable_secret_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        Keyring::init(&keys, &dir.path().join("e")).unwrap();
        fs::set_permissions(keys.join("relay.v1.key"), fs::Permissions::from_mode(0o644)).unwrap();
        let err = Keyring::load(&keys).err().unwrap().to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }

    #[test]
    fn file_names_parse_strictly() {
        assert_eq!(
            KeyKind::parse_file_name("relay.v3.key"),
            Some((KeyKind::Relay, 3))
        );
        assert_eq!(KeyKind::parse_file_name("relay.v0.key"), None);
        assert_eq!(KeyKind::parse_file_name("relay.v3.pub"), None);
        assert_eq!(KeyKind::parse_file_name("escrow.v1.pub.bak"), None);
    }
}
