//! age v1 sealing to X25519 recipients and opening with identities.

use std::fmt;
use std::io::{Read, Write};
use std::str::FromStr;

use age::secrecy::ExposeSecret;
use sha2::{Digest, Sha256};

/// A public X25519 age recipient (`age1…`). Safe to store and show.
#[derive(Clone)]
pub struct RecipientKey(age::x25519::Recipient);

/// A secret X25519 age identity (`AGE-SECRET-KEY-1…`). No `Debug`, `Clone` or
/// `Serialize`; the inner key is wiped on drop by x25519-dalek.
pub struct IdentityKey(age::x25519::Identity);

#[derive(Debug, thiserror::Error)]
#[error("not an age X25519 recipient (expected age1…)")]
pub struct InvalidRecipient;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("a tip needs at least one recipient")]
    NoRecipients,
    #[error("age refused to seal: {0}")]
    Age(String),
}

/// Opening failed: wrong key, damaged or forged envelope. Deliberately opaque.
#[derive(Debug, thiserror::Error)]
#[error("the envelope could not be opened with the given identities")]
pub struct OpenError;

impl RecipientKey {
    pub fn parse(s: &str) -> Result<Self, InvalidRecipient> {
        age::x25519::Recipient::from_str(s.trim())
            .map(Self)
            .map_err(|_| InvalidRecipient)
    }

    /// Short fingerprint for listings: first 8 bytes of SHA-256 of the encoding.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.0.to_string().as_bytes());
        hex::encode(digest.get(..8).unwrap_or(&digest))
    }
}

impl fmt::Display for RecipientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for RecipientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecipientKey({})", self.0)
    }
}

impl PartialEq for RecipientKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_string() == other.0.to_string()
    }
}

impl IdentityKey {
    pub fn generate() -> Self {
        Self(age::x25519::Identity::generate())
    }

    /// Parses one `AGE-SECRET-KEY-1…` line.
    pub fn parse(s: &str) -> Option<Self> {
        age::x25519::Identity::from_str(s.trim()).ok().map(Self)
    }

    /// Reads an age identity file: comment lines (`#`) and one or more keys.
    pub fn parse_file(contents: &str) -> Vec<Self> {
        contents
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(Self::parse)
            .collect()
    }

    pub fn to_public(&self) -> RecipientKey {
        RecipientKey(self.0.to_public())
    }

    /// The secret encoding, for writing an identity file. Callers write it to a
    /// 0600 file and nowhere else.
    pub fn to_secret_string(&self) -> zeroize::Zeroizing<String> {
        zeroize::Zeroizing::new(self.0.to_string().expose_secret().to_owned())
    }
}

/// Seals `plaintext` to every recipient. One age file, one stanza a recipient.
pub fn seal(plaintext: &[u8], recipients: &[RecipientKey]) -> Result<Vec<u8>, SealError> {
    if recipients.is_empty() {
        return Err(SealError::NoRecipients);
    }
    let encryptor =
        age::Encryptor::with_recipients(recipients.iter().map(|r| &r.0 as &dyn age::Recipient))
            .map_err(|e| SealError::Age(e.to_string()))?;
    // Header ≈ 100 bytes a recipient; payload adds 16 bytes per 64 KiB chunk.
    let mut out = Vec::with_capacity(plaintext.len() + 128 + recipients.len() * 110);
    let mut writer = encryptor
        .wrap_output(&mut out)
        .map_err(|e| SealError::Age(e.to_string()))?;
    writer
        .write_all(plaintext)
        .and_then(|()| writer.finish().map(|_| ()))
        .map_err(|e| SealError::Age(e.to_string()))?;
    Ok(out)
}

/// Opens an envelope with any of `identities`.
pub fn open(envelope: &[u8], identities: &[IdentityKey]) -> Result<Vec<u8>, OpenError> {
    open_with(envelope, identities.iter())
}

/// Opens an envelope with any identity the iterator yields.
pub fn open_with<'a>(
    envelope: &[u8],
    identities: impl Iterator<Item = &'a IdentityKey>,
) -> Result<Vec<u8>, OpenError> {
    let decryptor = age::Decryptor::new_buffered(envelope).map_err(|_| OpenError)?;
    let mut reader = decryptor
        .decrypt(identities.map(|i| &i.0 as &dyn age::Identity))
        .map_err(|_| OpenError)?;
    let mut out = Vec::with_capacity(envelope.len());
    reader.read_to_end(&mut out).map_err(|_| OpenError)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_recipient_opens_and_a_stranger_does_not() {
        let ids: Vec<_> = (0..3).map(|_| IdentityKey::generate()).collect();
        let recipients: Vec<_> = ids.iter().map(IdentityKey::to_public).collect();
        let env = seal(b"meet at the corner", &recipients).unwrap();
        assert!(env.starts_with(b"age-encryption.org/v1\n"));
        for id in ids {
            assert_eq!(open(&env, &[id]).unwrap(), b"meet at the corner");
        }
        assert!(open(&env, &[IdentityKey::generate()]).is_err());
    }

    #[test]
    fn sealing_needs_a_recipient_and_garbage_does_not_open() {
        assert!(matches!(seal(b"x", &[]), Err(SealError::NoRecipients)));
        assert!(
            open(
                b"age-encryption.org/v1\n-> junk",
                &[IdentityKey::generate()]
            )
            .is_err()
        );
    }

    #[test]
    fn identity_files_skip_comments() {
        let id = IdentityKey::generate();
        let file = format!(
            "# created: now\n# public key: {}\n{}\n",
            id.to_public(),
            id.to_secret_string().as_str()
        );
        let parsed = IdentityKey::parse_file(&file);
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].to_public(), id.to_public());
        assert!(RecipientKey::parse(&id.to_public().to_string()).is_ok());
        assert!(RecipientKey::parse("age1nonsense").is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        #[test]
        fn seal_then_open_round_trips(data in proptest::collection::vec(any::<u8>(), 0..70_000)) {
            let id = IdentityKey::generate();
            let env = seal(&data, &[id.to_public()]).unwrap();
            prop_assert_eq!(open(&env, &[id]).unwrap(), data);
        }
    }
}
