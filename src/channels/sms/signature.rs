//! Provider webhook signatures: Twilio (HMAC-SHA1 over URL and parameters) and
//! Telnyx (Ed25519 over timestamp and body). Everything passed in per request —
//! URL, parameters, body, signature and timestamp headers — is untrusted; only
//! the auth tokens and the public key, which come from configuration, are not.
//!
//! Twilio's scheme is reproduced from its official SDKs (twilio-python's and
//! twilio-node's `RequestValidator`), including their tolerance of a URL with or
//! without its port, because Twilio's own signing is inconsistent about the port.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, VerifyingKey};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};
use zeroize::Zeroizing;

use crate::config::TelnyxPublicKey;

/// Checks `X-Twilio-Signature` headers.
///
/// Holds every auth token currently accepted, so the primary token can be
/// rotated in Twilio's console without refusing messages signed with the old
/// one while the change propagates. Deliberately neither `Debug` nor `Clone`:
/// the tokens are secrets and are wiped when the validator is dropped.
pub struct TwilioValidator {
    tokens: Vec<Zeroizing<String>>,
}

impl TwilioValidator {
    /// Builds a validator accepting signatures made with any of `auth_tokens`.
    ///
    /// Empty tokens are dropped: an HMAC keyed with the empty string is one
    /// anybody can compute, so a blank configuration entry must never turn into
    /// a key that accepts forgeries. A validator left with no token accepts
    /// nothing; check [`TwilioValidator::token_count`] at start-up.
    pub fn new(auth_tokens: Vec<String>) -> Self {
        let tokens = auth_tokens
            .into_iter()
            .filter(|token| !token.is_empty())
            .map(Zeroizing::new)
            .collect();
        Self { tokens }
    }

    /// How many usable tokens this validator holds, so configuration can refuse
    /// to start with none.
    #[must_use]
    pub fn token_count(&self) -> usize {
        self.tokens.len()
    }

    /// application/x-www-form-urlencoded webhook: `url` is the full public URL
    /// Twilio called (with query string), `params` the decoded POST parameters.
    // An ignored verdict is an open door, hence `must_use`.
    #[must_use]
    pub fn validate_form(&self, url: &str, params: &[(String, String)], signature: &str) -> bool {
        // The SDKs sort by name, then by value for a repeated name, and sign
        // each distinct name/value pair once (twilio-python's
        // `sorted(set(values))`, twilio-node's `new Set(paramValue)`). `str`
        // ordering is by UTF-8 bytes, which is code-point order, as in Python.
        let mut sorted: Vec<(&str, &str)> = params
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        sorted.sort_unstable();
        sorted.dedup();
        bool::from(self.signature_matches(url, &sorted, signature))
    }

    /// JSON-body webhook: the URL carries a `bodySHA256` query parameter that
    /// must equal hex(SHA-256(body)); the signature is computed over the URL
    /// alone (no params).
    #[must_use]
    pub fn validate_json(&self, url: &str, body: &[u8], signature: &str) -> bool {
        // Without the hash parameter the signature would cover the URL only and
        // say nothing about the body, so its absence is a refusal (as in
        // twilio-go's `ValidateBody`), not a pass.
        let Some(claimed) = query_param(url, "bodySHA256") else {
            return false;
        };
        let actual = hex::encode(Sha256::digest(body));
        let body_matches = actual.as_bytes().ct_eq(claimed.as_bytes());
        bool::from(body_matches & self.signature_matches(url, &[], signature))
    }

    /// Whether any token signed any accepted spelling of `url` with `params`.
    ///
    /// Every combination is computed and the results OR-ed without an early
    /// return, so the time taken says nothing about which token or spelling
    /// came close.
    fn signature_matches(&self, url: &str, params: &[(&str, &str)], signature: &str) -> Choice {
        let mut matched = Choice::from(0);
        for variant in url_variants(url) {
            for token in &self.tokens {
                let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(token.as_bytes()) else {
                    // HMAC takes keys of any length; this arm is unreachable,
                    // and failing closed is the right answer if it ever is not.
                    continue;
                };
                mac.update(variant.as_bytes());
                for (name, value) in params {
                    mac.update(name.as_bytes());
                    mac.update(value.as_bytes());
                }
                let expected = STANDARD.encode(mac.finalize().into_bytes());
                matched |= expected.as_bytes().ct_eq(signature.as_bytes());
            }
        }
        matched
    }
}

/// The spellings of `url` that the SDKs check: as given, plus either the
/// scheme's default port added (when there is no port) or the port removed
/// (when there is one). Twilio signs whichever form its back end happened to
/// use, which is not always the one configured.
fn url_variants(url: &str) -> Vec<Cow<'_, str>> {
    let mut variants = vec![Cow::Borrowed(url)];
    if let Some(other) = port_variant(url) {
        variants.push(Cow::Owned(other));
    }
    variants
}

/// `url` with its port removed, or with the default port added; `None` when
/// the URL is too odd to rewrite, in which case only the given form is tried.
fn port_variant(url: &str) -> Option<String> {
    let scheme_end = url.find("://")?;
    let scheme = url.get(..scheme_end)?;
    // "://" can also appear in a query string of a URL without a scheme; only
    // a real scheme (RFC 3986 §3.1) marks where the authority starts.
    let scheme_ok = scheme
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !scheme_ok {
        return None;
    }

    let authority_start = scheme_end.checked_add(3)?;
    let after_scheme = url.get(authority_start..)?;
    let authority_len = after_scheme
        .find(['/', '?', '#'])
        .unwrap_or(after_scheme.len());
    let authority = after_scheme.get(..authority_len)?;
    let host_end = authority_start.checked_add(authority_len)?;
    // Credentials (`user:pass@`) also contain a colon; the port is only ever
    // after the last '@'.
    let host_start = authority_start.checked_add(authority.rfind('@').map_or(0, |at| at + 1))?;
    let host_and_port = url.get(host_start..host_end)?;
    if host_and_port.is_empty() {
        return None;
    }

    // A colon inside an IPv6 literal's brackets is not a port separator.
    let port_colon = host_and_port
        .rfind(':')
        .filter(|&colon| !host_and_port.get(colon..).is_some_and(|s| s.contains(']')));

    match port_colon {
        Some(colon) => {
            let port = host_and_port.get(colon.checked_add(1)?..)?;
            if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let head = url.get(..host_start.checked_add(colon)?)?;
            let tail = url.get(host_end..)?;
            Some(format!("{head}{tail}"))
        }
        None => {
            let default_port = if scheme.eq_ignore_ascii_case("https") {
                ":443"
            } else if scheme.eq_ignore_ascii_case("http") {
                ":80"
            } else {
                return None;
            };
            let head = url.get(..host_end)?;
            let tail = url.get(host_end..)?;
            Some(format!("{head}{default_port}{tail}"))
        }
    }
}

/// The raw value of the first `name` parameter in `url`'s query string.
///
/// No percent-decoding: the value sought is a hex digest, which never needs
/// escaping, and a name spelled with escapes is simply not found (refused).
fn query_param<'a>(url: &'a str, name: &str) -> Option<&'a str> {
    let (_, after_question) = url.split_once('?')?;
    let query = after_question
        .split_once('#')
        .map_or(after_question, |(query, _)| query);
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then_some(value)
    })
}

/// The configured Telnyx public key could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the Telnyx public key must be the base64 of a 32-byte Ed25519 public key")]
pub struct InvalidKey;

/// Why a Telnyx webhook was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TelnyxError {
    /// A header is not in the shape Telnyx sends: not base64 of 64 bytes, or a
    /// timestamp that is not a decimal number of seconds.
    #[error("the Telnyx signature or timestamp header is malformed")]
    Malformed,
    /// Correctly signed, but too far from now: a replay, or a badly set clock.
    #[error("the Telnyx webhook timestamp is outside the accepted window")]
    Stale,
    /// The signature does not verify against the configured key.
    #[error("the Telnyx webhook signature does not verify")]
    Invalid,
}

/// Checks Telnyx API v2 webhooks (`telnyx-signature-ed25519` and
/// `telnyx-timestamp` headers).
#[derive(Debug, Clone)]
pub struct TelnyxVerifier {
    key: VerifyingKey,
    tolerance_secs: u64,
}

/// Seconds a webhook's timestamp may differ from now; Telnyx's SDKs default
/// to the same five minutes.
const DEFAULT_TOLERANCE_SECS: u64 = 300;

/// Length of base64 (with padding) of a 64-byte Ed25519 signature; checked
/// before decoding so an oversized header is refused without allocating.
const SIGNATURE_B64_LEN: usize = 88;

impl TelnyxVerifier {
    /// Parses the account's public key as shown in the Telnyx portal (base64
    /// of the 32 raw key bytes).
    ///
    /// # Errors
    ///
    /// [`InvalidKey`] when the text is not base64 of 32 bytes, or the bytes are
    /// not a usable (non-weak) Ed25519 public key.
    pub fn from_base64(public_key: &str) -> Result<Self, InvalidKey> {
        let key = TelnyxPublicKey::from_base64(public_key).ok_or(InvalidKey)?;
        Self::from_key(&key)
    }

    /// The verifier for a key checked at start-up (`sms.telnyx.public_key`).
    ///
    /// # Errors
    ///
    /// [`InvalidKey`] when the bytes are not an Ed25519 point (a checked key
    /// always is).
    pub fn from_key(public_key: &TelnyxPublicKey) -> Result<Self, InvalidKey> {
        let key = VerifyingKey::from_bytes(public_key.as_bytes()).map_err(|_| InvalidKey)?;
        Ok(Self {
            key,
            tolerance_secs: DEFAULT_TOLERANCE_SECS,
        })
    }

    /// Replaces the accepted clock difference (default 300 s), in either
    /// direction.
    #[must_use]
    pub fn with_tolerance(self, secs: u64) -> Self {
        Self {
            tolerance_secs: secs,
            ..self
        }
    }

    /// Verifies `signature_b64` over `"{timestamp}|{body}"` and that
    /// `timestamp` is within the tolerance of `now_unix`.
    ///
    /// # Errors
    ///
    /// [`TelnyxError::Malformed`] for headers not in Telnyx's shape,
    /// [`TelnyxError::Invalid`] when the signature does not verify, and
    /// [`TelnyxError::Stale`] when a genuine signature is outside the window.
    pub fn verify(
        &self,
        timestamp: &str,
        body: &[u8],
        signature_b64: &str,
        now_unix: u64,
    ) -> Result<(), TelnyxError> {
        // Digits only: `u64::from_str` would also take a leading '+', and the
        // signed text must be exactly what Telnyx sent anyway.
        if timestamp.is_empty() || !timestamp.bytes().all(|b| b.is_ascii_digit()) {
            return Err(TelnyxError::Malformed);
        }
        let sent_at: u64 = timestamp.parse().map_err(|_| TelnyxError::Malformed)?;

        if signature_b64.len() != SIGNATURE_B64_LEN {
            return Err(TelnyxError::Malformed);
        }
        let signature_bytes = STANDARD
            .decode(signature_b64)
            .map_err(|_| TelnyxError::Malformed)?;
        let signature_bytes: [u8; 64] = signature_bytes
            .as_slice()
            .try_into()
            .map_err(|_| TelnyxError::Malformed)?;
        let signature = Signature::from_bytes(&signature_bytes);

        let mut message =
            Vec::with_capacity(timestamp.len().saturating_add(1).saturating_add(body.len()));
        message.extend_from_slice(timestamp.as_bytes());
        message.push(b'|');
        message.extend_from_slice(body);
        // Strict verification refuses small-order and non-canonical points,
        // which honest Ed25519 signers never produce but forgers might.
        self.key
            .verify_strict(&message, &signature)
            .map_err(|_| TelnyxError::Invalid)?;

        // Freshness is checked after the signature so that `Stale` only ever
        // describes an authentic message replayed late, never a forgery.
        if now_unix.abs_diff(sent_at) > self.tolerance_secs {
            return Err(TelnyxError::Stale);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
