//! Twilio's webhook signature, computed as Twilio computes it, for the load
//! clients that send signed webhooks (`benches/alert_fanout.rs`,
//! `benches/abuse.rs`).
//!
//! Untrusted: nothing; the inputs are the bench's own.

use anyhow::Result;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// `X-Twilio-Signature` for form parameters posted to `url`: base64 of
/// HMAC-SHA1 under the auth token over the URL and the name-value pairs,
/// sorted by name.
pub fn signature(auth_token: &str, url: &str, params: &[(&str, &str)]) -> Result<String> {
    let mut sorted = params.to_vec();
    sorted.sort_unstable();
    let mut mac = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes())?;
    mac.update(url.as_bytes());
    for (name, value) in &sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    Ok(STANDARD.encode(mac.finalize().into_bytes()))
}
