//! A pseudonym: what a sender's number or address becomes before anything is
//! stored (made by `privacy::PseudonymKey`). Nothing here is untrusted: a
//! pseudonym is only ever made from a keyed hash.

/// A pseudonym as stored and shown: `p<version>_<32 hex>`. The version says
/// which secret made it, so rotation never silently merges or splits threads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pseudonym(String);

impl Pseudonym {
    /// The pseudonym of a keyed hash's first bytes under secret `version`.
    pub(crate) fn from_tag(version: u32, tag: &[u8]) -> Self {
        Self(format!("p{version}_{}", hex::encode(tag)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}
