//! Sealing and keys. Tips are sealed in the age v1 format (X25519 stanzas,
//! HKDF-SHA256, ChaCha20-Poly1305 payload) through the `age` crate, so any age
//! implementation opens an exported envelope. Envelopes read back from Redis or
//! files are untrusted; opening them fails with one opaque error.

mod keys;
mod seal;
pub mod vapid;

pub(crate) use keys::write_new;
pub use keys::{KeyError, KeyKind, Keyring, KeyringReport, VersionInfo};
pub use seal::{IdentityKey, OpenError, RecipientKey, SealError, open, open_with, seal};
pub use vapid::{VapidError, VapidKey, VapidSubject};
