//! RFC 8292 VAPID: the gateway identifies itself to push services with an
//! ES256 JWT signed by its VAPID key, sent as
//! `Authorization: vapid t=<jwt>, k=<public key>`. Browsers bind each
//! subscription to the public key given as `applicationServerKey`, so only the
//! holder of this key can push to mediators' phones.
//!
//! Untrusted inputs: the key file (operator input, parsed as PKCS#8 PEM and
//! refused when malformed) and the subscription endpoint whose origin becomes
//! the audience (already checked by `outbound/push/subscription.rs`).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use reqwest::Url;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// How long a token is valid. RFC 8292 §2 caps `exp` at 24 hours ahead; half
/// of that leaves room for a gateway clock that runs a little fast.
pub const TOKEN_LIFETIME_SECS: u64 = 12 * 60 * 60;
/// `{"typ":"JWT","alg":"ES256"}`, the header RFC 8292 §2 shows, fixed bytes.
const JWT_HEADER: &str = r#"{"typ":"JWT","alg":"ES256"}"#;

#[derive(Debug, thiserror::Error)]
pub enum VapidError {
    #[error("not a P-256 private key in PKCS#8 PEM (-----BEGIN PRIVATE KEY-----)")]
    InvalidKey,
    #[error("could not encode the VAPID key")]
    Encode,
    #[error(
        "push.subject must be a mailto: address or an https: URL a push service can use to reach the operator (RFC 8292 §2.1)"
    )]
    InvalidSubject,
}

/// The gateway's VAPID signing key. No `Debug` or `Clone`; the inner key wipes
/// its scalar on drop.
pub struct VapidKey {
    signing: SigningKey,
}

pub use crate::config::VapidSubject;

#[derive(serde::Serialize)]
struct Claims<'a> {
    aud: &'a str,
    exp: u64,
    sub: &'a str,
}

impl VapidKey {
    pub fn generate() -> Self {
        Self {
            signing: SigningKey::random(&mut rand::rngs::OsRng),
        }
    }

    /// Reads a PKCS#8 PEM private key (what `openssl genpkey -algorithm EC
    /// -pkeyopt ec_paramgen_curve:P-256` writes). Lines before the PEM block,
    /// such as the keyring's `#` comments, are skipped as OpenSSL does.
    pub fn from_pkcs8_pem(text: &str) -> Result<Self, VapidError> {
        let start = text
            .find("-----BEGIN PRIVATE KEY-----")
            .ok_or(VapidError::InvalidKey)?;
        let pem = text.get(start..).ok_or(VapidError::InvalidKey)?;
        let signing =
            SigningKey::from_pkcs8_pem(pem.trim_end()).map_err(|_| VapidError::InvalidKey)?;
        Ok(Self { signing })
    }

    /// The key as PKCS#8 PEM, for the keyring file. Wiped when dropped.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, VapidError> {
        self.signing
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|_| VapidError::Encode)
    }

    /// The uncompressed public point (65 bytes, 0x04 || x || y).
    pub fn public_key_bytes(&self) -> Vec<u8> {
        self.signing
            .verifying_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec()
    }

    /// The public key as the front end passes it to `pushManager.subscribe()`
    /// as `applicationServerKey`, and as the `k=` parameter: base64url, no padding.
    pub fn public_key_base64url(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.public_key_bytes())
    }

    /// Identifies the key in `keys show` (a hash of the public key only).
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.public_key_bytes());
        hex::encode(digest.get(..8).unwrap_or(&digest))
    }

    /// The `Authorization` header value for a push to `endpoint`, valid for
    /// [`TOKEN_LIFETIME_SECS`] from `now_unix`.
    pub fn authorization(&self, endpoint: &Url, subject: &VapidSubject, now_unix: u64) -> String {
        format!(
            "vapid t={}, k={}",
            self.token(endpoint, subject, now_unix),
            self.public_key_base64url()
        )
    }

    /// The signed JWT: ES256 over `header.claims`, signature as raw r || s
    /// (RFC 7518 §3.4), every part base64url without padding.
    pub fn token(&self, endpoint: &Url, subject: &VapidSubject, now_unix: u64) -> String {
        // The audience is the push service's origin, never the full endpoint:
        // the path identifies the device (RFC 8292 §2).
        let aud = endpoint.origin().ascii_serialization();
        let claims = Claims {
            aud: &aud,
            exp: now_unix.saturating_add(TOKEN_LIFETIME_SECS),
            sub: subject.as_str(),
        };
        // Serialising three plain fields cannot fail; an empty object would be
        // refused by the push service rather than panic here.
        let claims = serde_json::to_vec(&claims).unwrap_or_default();
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(JWT_HEADER),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let signature: Signature = self.signing.sign(signing_input.as_bytes());
        format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::VerifyingKey;
    use p256::ecdsa::signature::Verifier;

    fn b64(s: &str) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(s).unwrap()
    }

    fn subject() -> VapidSubject {
        VapidSubject::parse("mailto:ops@cvi.example.org").unwrap()
    }

    #[test]
    fn the_jwt_verifies_with_the_public_key_and_carries_the_rfc_8292_claims() {
        let key = VapidKey::generate();
        let endpoint = Url::parse("https://push.example.net:8443/wpush/v2/gAAAAABk?x=1").unwrap();
        let now = 1_700_000_000;
        let header = key.authorization(&endpoint, &subject(), now);

        let rest = header.strip_prefix("vapid t=").unwrap();
        let (jwt, k) = rest.split_once(", k=").unwrap();
        assert_eq!(k, key.public_key_base64url());
        let public = b64(k);
        assert_eq!((public.len(), public[0]), (65, 0x04));

        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert!(!jwt.contains('='), "base64url without padding");
        assert_eq!(b64(parts[0]), JWT_HEADER.as_bytes());
        let claims: serde_json::Value = serde_json::from_slice(&b64(parts[1])).unwrap();
        assert_eq!(
            claims,
            serde_json::json!({
                "aud": "https://push.example.net:8443",
                "exp": now + 12 * 3600,
                "sub": "mailto:ops@cvi.example.org",
            })
        );
        assert!(claims["exp"].as_u64().unwrap() <= now + 24 * 3600);

        let signature = b64(parts[2]);
        assert_eq!(signature.len(), 64, "raw r || s, not DER");
        let verifier = VerifyingKey::from_sec1_bytes(&public).unwrap();
        let signed = format!("{}.{}", parts[0], parts[1]);
        verifier
            .verify(
                signed.as_bytes(),
                &Signature::from_slice(&signature).unwrap(),
            )
            .unwrap();
        assert!(
            verifier
                .verify(
                    b"something else",
                    &Signature::from_slice(&signature).unwrap()
                )
                .is_err()
        );
    }

    #[test]
    fn the_audience_is_the_origin_without_the_default_port_or_the_path() {
        let key = VapidKey::generate();
        let endpoint = Url::parse("https://fcm.googleapis.com:443/fcm/send/abc:def").unwrap();
        let jwt = key.token(&endpoint, &subject(), 0);
        let claims = b64(jwt.split('.').nth(1).unwrap());
        let claims: serde_json::Value = serde_json::from_slice(&claims).unwrap();
        assert_eq!(claims["aud"], "https://fcm.googleapis.com");
    }

    #[test]
    fn a_key_survives_a_pkcs8_pem_round_trip_with_comment_lines_in_front() {
        let key = VapidKey::generate();
        let pem = key.to_pkcs8_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let file = format!("# tipwire VAPID key, version 1\n{}", pem.as_str());
        let again = VapidKey::from_pkcs8_pem(&file).unwrap();
        assert_eq!(again.public_key_base64url(), key.public_key_base64url());
        assert_eq!(again.fingerprint(), key.fingerprint());
        assert_eq!(key.fingerprint().len(), 16);
    }

    #[test]
    fn a_malformed_key_file_is_refused() {
        for text in [
            "",
            "AGE-SECRET-KEY-1XYZ",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        ] {
            assert!(matches!(
                VapidKey::from_pkcs8_pem(text),
                Err(VapidError::InvalidKey)
            ));
        }
    }

    #[test]
    fn a_subject_must_be_a_mailto_address_or_an_https_url() {
        for good in [
            "mailto:ops@cvi.example.org",
            "https://cvi.example.org/contact",
        ] {
            assert_eq!(VapidSubject::parse(good).unwrap().as_str(), good);
        }
        for bad in [
            "",
            "ops@cvi.example.org",
            "mailto:",
            "mailto:nobody",
            "http://cvi.example.org",
            "mailto:a b@example.org",
            "mailto:ops@example.org\"}",
        ] {
            assert!(VapidSubject::parse(bad).is_err(), "{bad}");
        }
    }
}
