//! Everything that turns a sender into something that cannot identify them:
//! keyed pseudonyms for phone numbers and addresses, and salted in-memory keys
//! for network addresses (used only for rate limiting, never stored);
//! metadata stripping for photos and redaction of a sender's own identity
//! from their text.

mod client_addr;
pub(crate) mod heif;
pub mod metadata;
mod pseudonym;
pub mod redaction;

pub use client_addr::{ClientKey, ClientKeyer};
pub use pseudonym::PseudonymKey;
