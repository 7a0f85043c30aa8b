//! Telnyx's webhook signature, computed as Telnyx documents it, for the tests
//! and the load clients (benches/ include this file on its own) that send
//! signed webhooks.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signer as _, SigningKey};

/// `telnyx-signature-ed25519` for `body` sent at `timestamp` (the
/// `telnyx-timestamp` header, Unix seconds): base64 of the Ed25519 signature
/// over `timestamp|body`.
pub fn signature(key: &SigningKey, timestamp: &str, body: &[u8]) -> String {
    let signed = [timestamp.as_bytes(), b"|", body].concat();
    STANDARD.encode(key.sign(&signed).to_bytes())
}
