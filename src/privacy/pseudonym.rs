//! Pseudonyms: HMAC-SHA256 of a sender identifier (E.164 number, lowercased
//! address) under the current pseudonym secret. The same sender maps to the same
//! pseudonym, so their messages form one thread, while the stored value reveals
//! nothing without the secret. The identifier passed in is untrusted input that
//! the channel adapter has already normalised.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::domain::Pseudonym;

/// The secret behind pseudonyms. No `Debug`, `Clone` or `Serialize`; wiped on drop.
pub struct PseudonymKey {
    version: u32,
    secret: Zeroizing<[u8; 32]>,
}

impl PseudonymKey {
    pub fn new(version: u32, secret: [u8; 32]) -> Self {
        Self {
            version,
            secret: Zeroizing::new(secret),
        }
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    pub fn pseudonym(&self, identifier: &[u8]) -> Pseudonym {
        // HMAC accepts keys of any length, so this cannot fail for 32 bytes.
        let mut mac = match Hmac::<Sha256>::new_from_slice(self.secret.as_slice()) {
            Ok(mac) => mac,
            Err(_) => unreachable_hmac(),
        };
        mac.update(b"tipwire pseudonym v1\0");
        mac.update(identifier);
        let tag = mac.finalize().into_bytes();
        let short = tag.get(..16).unwrap_or(&tag);
        Pseudonym::from_tag(self.version, short)
    }

    /// A fingerprint that identifies the secret without revealing it.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::new()
            .chain_update(b"tipwire pseudonym fingerprint\0")
            .chain_update(self.secret.as_slice())
            .finalize();
        hex::encode(digest.get(..8).unwrap_or(&digest))
    }
}

#[allow(clippy::panic, reason = "HMAC-SHA256 takes keys of every length")]
fn unreachable_hmac() -> ! {
    panic!("HMAC-SHA256 refused a 32-byte key")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_sender_gets_the_same_pseudonym_and_others_differ() {
        let k = PseudonymKey::new(1, [7; 32]);
        let a = k.pseudonym(b"+15551234567");
        assert_eq!(a, k.pseudonym(b"+15551234567"));
        assert_ne!(a, k.pseudonym(b"+15551234568"));
        assert!(a.as_str().starts_with("p1_"));
        assert!(!a.as_str().contains("5551234567"));
        let rotated = PseudonymKey::new(2, [8; 32]);
        assert_ne!(a, rotated.pseudonym(b"+15551234567"));
        assert_ne!(k.fingerprint(), rotated.fingerprint());
    }
}
