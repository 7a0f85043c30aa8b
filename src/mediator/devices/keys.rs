//! A device's signing key and the login signature check.
//!
//! The phone makes an ECDSA P-256 key pair with WebCrypto
//! (`generateKey({name: "ECDSA", namedCurve: "P-256"}, false, ["sign"])`, the
//! private half non-extractable) and registers the public half as
//! `exportKey("spki", publicKey)`, base64url-encoded. SPKI rather than the raw
//! point, because it names its algorithm and curve: a P-384 or RSA key is
//! refused for what it is, not for its length. At login it signs
//! [`SESSION_CONTEXT`] followed by the 32 challenge bytes with
//! `sign({name: "ECDSA", hash: "SHA-256"}, …)`, which WebCrypto returns in the
//! IEEE P1363 form `r || s` (64 bytes), sent base64url-encoded. DER signatures
//! are refused: no browser makes them, so accepting them only widens the parser.
//!
//! Untrusted: every string here comes from a phone; keys read back from Redis
//! are parsed again.

use base64::Engine as _;
use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;

use super::CHALLENGE_LEN;

/// Prefixed to the challenge before signing, so a login signature can never be
/// mistaken for (or be made from) a signature over anything else the key signs.
pub const SESSION_CONTEXT: &[u8] = b"tipwire-session-v1\0";

/// A P-256 SPKI is 91 bytes, 122 base64url characters; anything much longer is
/// refused before decoding.
const MAX_KEY_CHARS: usize = 200;
/// 64 bytes are 86 base64url characters (88 padded).
const MAX_SIGNATURE_CHARS: usize = 100;

/// Browsers write base64url without padding; some libraries pad. Both decode.
pub(super) const B64URL: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not an ECDSA P-256 public key in base64url SPKI form")]
pub struct InvalidSigningKey;

/// A device's public ECDSA P-256 key: a valid point on the curve, never the
/// identity. Public, so it may be shown and stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSigningKey(VerifyingKey);

impl DeviceSigningKey {
    /// Parses what the device sends: base64url of the DER SubjectPublicKeyInfo
    /// of an `id-ecPublicKey` on `prime256v1`.
    pub fn from_spki_b64url(s: &str) -> Result<Self, InvalidSigningKey> {
        let s = s.trim();
        if s.is_empty() || s.len() > MAX_KEY_CHARS {
            return Err(InvalidSigningKey);
        }
        let der = B64URL.decode(s).map_err(|_| InvalidSigningKey)?;
        VerifyingKey::from_public_key_der(&der)
            .map(Self)
            .map_err(|_| InvalidSigningKey)
    }

    /// Parses the stored form written by [`Self::to_stored`].
    pub fn from_stored(s: &str) -> Result<Self, InvalidSigningKey> {
        if s.len() > MAX_KEY_CHARS {
            return Err(InvalidSigningKey);
        }
        let point = B64URL.decode(s).map_err(|_| InvalidSigningKey)?;
        VerifyingKey::from_sec1_bytes(&point)
            .map(Self)
            .map_err(|_| InvalidSigningKey)
    }

    /// The stored form: base64url of the uncompressed SEC1 point (65 bytes).
    pub fn to_stored(&self) -> String {
        B64URL.encode(self.0.to_encoded_point(false).as_bytes())
    }

    /// Whether `signature_b64url` is this key's P1363 signature over
    /// [`SESSION_CONTEXT`] ‖ `challenge`.
    pub fn verifies_login(&self, challenge: &[u8; CHALLENGE_LEN], signature_b64url: &str) -> bool {
        let signature_b64url = signature_b64url.trim();
        if signature_b64url.len() > MAX_SIGNATURE_CHARS {
            return false;
        }
        let Ok(raw) = B64URL.decode(signature_b64url) else {
            return false;
        };
        // `from_slice` takes exactly 64 bytes and refuses r or s of zero or
        // out of range. High-s signatures are accepted: WebCrypto does not
        // normalise s, and ECDSA malleability does not matter for a
        // single-use challenge.
        let Ok(signature) = Signature::from_slice(&raw) else {
            return false;
        };
        self.0.verify(&login_message(challenge), &signature).is_ok()
    }
}

/// What the device signs to log in.
pub fn login_message(challenge: &[u8; CHALLENGE_LEN]) -> Vec<u8> {
    let mut message = Vec::with_capacity(SESSION_CONTEXT.len() + CHALLENGE_LEN);
    message.extend_from_slice(SESSION_CONTEXT);
    message.extend_from_slice(challenge);
    message
}

#[cfg(test)]
mod tests {
    use p256::ecdsa::SigningKey;
    use p256::ecdsa::signature::Signer;
    use p256::pkcs8::EncodePublicKey;

    use super::*;

    fn device() -> (SigningKey, String) {
        let signing = SigningKey::random(&mut rand::rngs::OsRng);
        let spki = signing
            .verifying_key()
            .to_public_key_der()
            .unwrap()
            .into_vec();
        (signing, B64URL.encode(spki))
    }

    fn p1363(signing: &SigningKey, message: &[u8]) -> String {
        let signature: Signature = signing.sign(message);
        B64URL.encode(signature.to_bytes())
    }

    #[test]
    fn a_webcrypto_spki_export_parses_and_round_trips_through_the_stored_form() {
        let (signing, spki) = device();
        let key = DeviceSigningKey::from_spki_b64url(&spki).unwrap();
        assert_eq!(&key.0, signing.verifying_key());
        // Padded base64url is accepted too.
        let padded = base64::engine::general_purpose::URL_SAFE.encode(
            signing
                .verifying_key()
                .to_public_key_der()
                .unwrap()
                .as_bytes(),
        );
        assert_eq!(DeviceSigningKey::from_spki_b64url(&padded).unwrap(), key);
        assert_eq!(
            DeviceSigningKey::from_stored(&key.to_stored()).unwrap(),
            key
        );
        assert_eq!(key.to_stored().len(), 87);
    }

    #[test]
    fn raw_points_other_curves_garbage_and_off_curve_points_are_refused() {
        let (signing, spki) = device();
        let raw = B64URL.encode(signing.verifying_key().to_encoded_point(false).as_bytes());
        // Real keys made with openssl: a P-384 SPKI and an Ed25519 SPKI.
        let p384_spki = "MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAEUSxaOraIuFnDyKX1m5DDLCn55DgeIQ7IK4-_oJwnXST7Yp6l6cAnhC0ze0e00znoXfUmpPldxsPJIr2SMFq0tdnnRj48r8rvcyfR7INxg2W2oDvuyk1K_Ws9hBY11ypw";
        let ed25519_spki = "MCowBQYDK2VwAyEAF6ACRQRLizOjiorSSyiflLo0OA_mtueYGO5ZZmUP7lQ=";
        let mut der = B64URL.decode(&spki).unwrap();
        // Flip a bit of the point's y coordinate: the point leaves the curve.
        if let Some(last) = der.last_mut() {
            *last ^= 1;
        }
        let off_curve = B64URL.encode(der);
        for bad in [
            raw.as_str(),
            p384_spki,
            ed25519_spki,
            off_curve.as_str(),
            "",
            "not base64!",
            "AAAA",
            &"A".repeat(400),
        ] {
            assert_eq!(
                DeviceSigningKey::from_spki_b64url(bad),
                Err(InvalidSigningKey),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_p1363_signature_over_the_context_and_challenge_verifies() {
        let (signing, spki) = device();
        let key = DeviceSigningKey::from_spki_b64url(&spki).unwrap();
        let challenge = [7u8; CHALLENGE_LEN];
        let signature = p1363(&signing, &login_message(&challenge));
        assert!(key.verifies_login(&challenge, &signature));
    }

    #[test]
    fn a_signature_without_the_context_for_another_challenge_or_key_is_refused() {
        let (signing, spki) = device();
        let (other, _) = device();
        let key = DeviceSigningKey::from_spki_b64url(&spki).unwrap();
        let challenge = [7u8; CHALLENGE_LEN];
        let bare = p1363(&signing, &challenge);
        assert!(!key.verifies_login(&challenge, &bare));
        let mut next = challenge;
        next[0] = 8;
        let elsewhere = p1363(&signing, &login_message(&next));
        assert!(!key.verifies_login(&challenge, &elsewhere));
        let stranger = p1363(&other, &login_message(&challenge));
        assert!(!key.verifies_login(&challenge, &stranger));
    }

    #[test]
    fn der_truncated_zero_and_malformed_signatures_are_refused() {
        let (signing, spki) = device();
        let key = DeviceSigningKey::from_spki_b64url(&spki).unwrap();
        let challenge = [9u8; CHALLENGE_LEN];
        let signature: Signature = signing.sign(&login_message(&challenge));
        let der = B64URL.encode(signature.to_der().as_bytes());
        let truncated = B64URL.encode(&signature.to_bytes()[..63]);
        let zero = B64URL.encode([0u8; 64]);
        for bad in [der.as_str(), &truncated, &zero, "", "%%%", &"A".repeat(300)] {
            assert!(!key.verifies_login(&challenge, bad), "{bad}");
        }
    }

    #[test]
    fn a_high_s_signature_as_webcrypto_may_make_it_verifies() {
        let (signing, spki) = device();
        let key = DeviceSigningKey::from_spki_b64url(&spki).unwrap();
        let challenge = [3u8; CHALLENGE_LEN];
        let signature: Signature = signing.sign(&login_message(&challenge));
        let (r, s) = signature.split_scalars();
        let flipped = Signature::from_scalars(r, -*s).unwrap();
        assert!(key.verifies_login(&challenge, &B64URL.encode(flipped.to_bytes())));
    }
}
