//! Random identifiers for tips and threads. They carry no information about the
//! sender or the time; 128 random bits each.

use std::fmt;

use rand::RngCore;

macro_rules! random_id {
    ($name:ident, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub struct $name(String);

        impl $name {
            pub fn random() -> Self {
                let mut bytes = [0u8; 16];
                rand::rngs::OsRng.fill_bytes(&mut bytes);
                Self(hex::encode(bytes))
            }

            /// Accepts the 32-lowercase-hex form this type prints.
            pub fn parse(s: &str) -> Option<Self> {
                let ok = s.len() == 32
                    && s.bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
                ok.then(|| Self(s.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

random_id!(
    TipId,
    "Identifies one tip: its stream entry and its exported file."
);
random_id!(
    ThreadId,
    "Identifies a conversation with one tipster across tips and replies."
);

impl ThreadId {
    /// The thread of every message from one pseudonym: stable, and reveals
    /// nothing the pseudonym does not.
    pub fn for_pseudonym(pseudonym: &str) -> Self {
        use sha2::{Digest, Sha256};
        let digest = Sha256::new()
            .chain_update(b"tipwire thread\0")
            .chain_update(pseudonym.as_bytes())
            .finalize();
        Self(hex::encode(digest.get(..16).unwrap_or(&digest)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_and_parse_back() {
        let a = TipId::random();
        let b = TipId::random();
        assert_ne!(a, b);
        assert_eq!(TipId::parse(a.as_str()), Some(a));
        assert_eq!(TipId::parse("../../etc/passwd"), None);
        assert_eq!(ThreadId::parse("ABCDEF0123456789ABCDEF0123456789"), None);
    }
}
