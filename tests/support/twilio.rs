//! Twilio's webhook signature, computed as Twilio documents it, for the tests
//! and the load clients (benches/ include this file on its own) that send
//! signed webhooks.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// `X-Twilio-Signature` for form parameters posted to `url`: base64 of
/// HMAC-SHA1 under the auth token over the URL followed by each name and
/// value, sorted by name.
pub fn signature(auth_token: &str, url: &str, params: &[(&str, &str)]) -> String {
    let mut sorted = params.to_vec();
    sorted.sort_unstable();
    // HMAC takes a key of any length.
    let mut mac = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()).unwrap();
    mac.update(url.as_bytes());
    for (name, value) in &sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    STANDARD.encode(mac.finalize().into_bytes())
}
