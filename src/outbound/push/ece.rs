//! RFC 8291 message encryption for Web Push, in the RFC 8188 `aes128gcm`
//! content coding: a fresh P-256 key and salt per message, ECDH with the
//! subscription's key, one AES-128-GCM record.
//!
//! Untrusted inputs: the subscription's `p256dh` and `auth` come from a
//! mediator's browser; `subscription.rs` has checked them (a point on the
//! curve, 16 bytes) before they reach this module, which takes them only as
//! parsed types. The plaintext is the gateway's own and must never carry tip
//! text: the push service stores it, and only the phone can open it.

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes128Gcm, Nonce};
use hmac::{Hmac, Mac};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::{PublicKey, SecretKey};
use rand::RngCore;
use sha2::Sha256;
use zeroize::Zeroizing;

/// The record size written into the header (RFC 8188 §2.1). The one record we
/// write is shorter; 4096 is what push services are required to accept.
pub const RECORD_SIZE: u32 = 4096;
/// The salt in front of every message (RFC 8188 §2.1): fresh per message.
pub const SALT_LEN: usize = 16;
/// The subscription's `auth` secret (RFC 8291 §3.2).
pub const AUTH_SECRET_LEN: usize = 16;
/// An uncompressed P-256 point: 0x04 || x || y.
pub const PUBLIC_KEY_LEN: usize = 65;
const TAG_LEN: usize = 16;
/// salt | rs | idlen | keyid (the application server's ephemeral public key).
pub const HEADER_LEN: usize = SALT_LEN + 4 + 1 + PUBLIC_KEY_LEN;
/// RFC 8291 §4: push services accept 4096 bytes of body at least; less the
/// header, the padding delimiter and the tag that leaves 3993 for the message.
pub const MAX_PLAINTEXT: usize = RECORD_SIZE as usize - HEADER_LEN - 1 - TAG_LEN;

/// RFC 8188 §2: the delimiter that ends the last (here the only) record.
const LAST_RECORD_DELIMITER: u8 = 0x02;
const KEY_INFO_LABEL: &[u8] = b"WebPush: info\0";
const CEK_INFO: &[u8] = b"Content-Encoding: aes128gcm\0";
const NONCE_INFO: &[u8] = b"Content-Encoding: nonce\0";

#[derive(Debug, thiserror::Error)]
pub enum EceError {
    #[error("push payload of {len} bytes is over the {max}-byte limit of one Web Push record")]
    TooLarge { len: usize, max: usize },
    /// Opaque on purpose: nothing about keys belongs in an error.
    #[error("push payload encryption failed")]
    Encrypt,
}

/// Encrypts `plaintext` for one subscription: the whole request body, header
/// included, for `Content-Encoding: aes128gcm`.
pub fn encrypt(
    ua_public: &PublicKey,
    auth_secret: &[u8; AUTH_SECRET_LEN],
    plaintext: &[u8],
) -> Result<Vec<u8>, EceError> {
    // A salt and key pair used twice with one subscription would repeat the
    // AES-GCM key and nonce, so both are drawn here for every message.
    let as_secret = SecretKey::random(&mut rand::rngs::OsRng);
    let mut salt = [0u8; SALT_LEN];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    encrypt_with(ua_public, auth_secret, plaintext, &as_secret, &salt)
}

/// [`encrypt`] with the ephemeral key and salt given: only for known-answer
/// tests, which is why it is not public.
pub(crate) fn encrypt_with(
    ua_public: &PublicKey,
    auth_secret: &[u8; AUTH_SECRET_LEN],
    plaintext: &[u8],
    as_secret: &SecretKey,
    salt: &[u8; SALT_LEN],
) -> Result<Vec<u8>, EceError> {
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(EceError::TooLarge {
            len: plaintext.len(),
            max: MAX_PLAINTEXT,
        });
    }
    let as_public = as_secret.public_key().to_encoded_point(false);
    let ua_public_bytes = ua_public.to_encoded_point(false);
    let shared = p256::ecdh::diffie_hellman(as_secret.to_nonzero_scalar(), ua_public.as_affine());
    let keys = derive(
        shared.raw_secret_bytes().as_slice(),
        auth_secret,
        ua_public_bytes.as_bytes(),
        as_public.as_bytes(),
        salt,
    )?;

    let mut body = Vec::with_capacity(HEADER_LEN + plaintext.len() + 1 + TAG_LEN);
    body.extend_from_slice(salt);
    body.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    body.push(PUBLIC_KEY_LEN as u8);
    body.extend_from_slice(as_public.as_bytes());
    if body.len() != HEADER_LEN {
        return Err(EceError::Encrypt);
    }
    body.extend_from_slice(plaintext);
    body.push(LAST_RECORD_DELIMITER);

    let cipher = Aes128Gcm::new_from_slice(keys.cek.as_slice()).map_err(|_| EceError::Encrypt)?;
    let record = body.get_mut(HEADER_LEN..).ok_or(EceError::Encrypt)?;
    // One record, sequence number 0: the nonce is NONCE itself (RFC 8188 §2.3).
    let tag = cipher
        .encrypt_in_place_detached(&Nonce::from(keys.nonce), b"", record)
        .map_err(|_| EceError::Encrypt)?;
    body.extend_from_slice(tag.as_slice());
    Ok(body)
}

struct ContentKeys {
    cek: Zeroizing<[u8; 16]>,
    nonce: [u8; 12],
}

/// RFC 8291 §3.4, step by step. Each HMAC here is HKDF-Extract, or
/// HKDF-Expand for one block (info || 0x01), which is all 32 bytes need.
fn derive(
    ecdh_secret: &[u8],
    auth_secret: &[u8; AUTH_SECRET_LEN],
    ua_public: &[u8],
    as_public: &[u8],
    salt: &[u8; SALT_LEN],
) -> Result<ContentKeys, EceError> {
    let prk_key = hmac_sha256(auth_secret, &[ecdh_secret])?;
    let ikm = hmac_sha256(
        prk_key.as_slice(),
        &[KEY_INFO_LABEL, ua_public, as_public, &[0x01]],
    )?;
    let prk = hmac_sha256(salt, &[ikm.as_slice()])?;
    let cek_block = hmac_sha256(prk.as_slice(), &[CEK_INFO, &[0x01]])?;
    let nonce_block = hmac_sha256(prk.as_slice(), &[NONCE_INFO, &[0x01]])?;

    let mut cek = Zeroizing::new([0u8; 16]);
    cek.copy_from_slice(cek_block.get(..16).ok_or(EceError::Encrypt)?);
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(nonce_block.get(..12).ok_or(EceError::Encrypt)?);
    Ok(ContentKeys { cek, nonce })
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Result<Zeroizing<[u8; 32]>, EceError> {
    // HMAC takes keys of every length; the error is unreachable, not ignored.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).map_err(|_| EceError::Encrypt)?;
    for part in parts {
        mac.update(part);
    }
    Ok(Zeroizing::new(mac.finalize().into_bytes().into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// RFC 8291 §5 and Appendix A, kept as test data beside the other vectors.
    const RFC8291: &str = include_str!("../../../tests/data/push/rfc8291-example.txt");

    fn vector() -> HashMap<&'static str, Vec<u8>> {
        let mut out = HashMap::new();
        for line in RFC8291.lines().filter(|l| !l.starts_with('#')) {
            let (key, value) = line.split_once(": ").unwrap();
            if key == "expect" {
                assert_eq!(value, "success");
                continue;
            }
            out.insert(key, URL_SAFE_NO_PAD.decode(value).unwrap());
        }
        out
    }

    fn as_array<const N: usize>(bytes: &[u8]) -> [u8; N] {
        bytes.try_into().unwrap()
    }

    /// The user agent's side of RFC 8291 §3.4 and RFC 8188 §2, written from the
    /// RFCs with the `hkdf` crate rather than this module's HMAC steps.
    fn decrypt(body: &[u8], ua_private: &SecretKey, auth_secret: &[u8]) -> Result<Vec<u8>, ()> {
        use aes_gcm::aead::Aead;
        let (salt, rest) = body.split_at(SALT_LEN);
        let rs = u32::from_be_bytes(rest[..4].try_into().unwrap());
        assert_eq!(rs, 4096);
        let idlen = rest[4] as usize;
        let (keyid, record) = rest[5..].split_at(idlen);
        let as_public = PublicKey::from_sec1_bytes(keyid).map_err(|_| ())?;
        let ua_public = ua_private.public_key().to_encoded_point(false);

        let shared =
            p256::ecdh::diffie_hellman(ua_private.to_nonzero_scalar(), as_public.as_affine());
        let mut key_info = b"WebPush: info\0".to_vec();
        key_info.extend_from_slice(ua_public.as_bytes());
        key_info.extend_from_slice(keyid);
        let mut ikm = [0u8; 32];
        hkdf::Hkdf::<Sha256>::new(Some(auth_secret), shared.raw_secret_bytes())
            .expand(&key_info, &mut ikm)
            .unwrap();
        let hk = hkdf::Hkdf::<Sha256>::new(Some(salt), &ikm);
        let (mut cek, mut nonce) = ([0u8; 16], [0u8; 12]);
        hk.expand(b"Content-Encoding: aes128gcm\0", &mut cek)
            .unwrap();
        hk.expand(b"Content-Encoding: nonce\0", &mut nonce).unwrap();

        assert!(record.len() <= rs as usize, "a single record");
        let mut padded = Aes128Gcm::new_from_slice(&cek)
            .unwrap()
            .decrypt(&Nonce::from(nonce), record)
            .map_err(|_| ())?;
        // Strip the padding: trailing zeros, then the last-record delimiter.
        while padded.last() == Some(&0) {
            padded.pop();
        }
        match padded.pop() {
            Some(0x02) => Ok(padded),
            _ => Err(()),
        }
    }

    #[test]
    fn the_rfc_8291_example_encrypts_to_the_published_body() {
        let v = vector();
        let as_secret = SecretKey::from_slice(&v["as_private"]).unwrap();
        assert_eq!(
            as_secret.public_key().to_encoded_point(false).as_bytes(),
            v["as_public"].as_slice()
        );
        let ua_public = PublicKey::from_sec1_bytes(&v["ua_public"]).unwrap();
        let body = encrypt_with(
            &ua_public,
            &as_array(&v["auth_secret"]),
            &v["plaintext"],
            &as_secret,
            &as_array(&v["salt"]),
        )
        .unwrap();
        assert_eq!(&body[..HEADER_LEN], v["header"].as_slice());
        assert_eq!(&body[HEADER_LEN..], v["ciphertext"].as_slice());
        assert_eq!(body, v["body"]);
    }

    #[test]
    fn every_intermediate_value_matches_rfc_8291_appendix_a() {
        let v = vector();
        let as_secret = SecretKey::from_slice(&v["as_private"]).unwrap();
        let ua_public = PublicKey::from_sec1_bytes(&v["ua_public"]).unwrap();
        let shared =
            p256::ecdh::diffie_hellman(as_secret.to_nonzero_scalar(), ua_public.as_affine());
        let ecdh = shared.raw_secret_bytes().as_slice();
        assert_eq!(ecdh, v["ecdh_secret"].as_slice());

        let prk_key = hmac_sha256(&v["auth_secret"], &[ecdh]).unwrap();
        assert_eq!(prk_key.as_slice(), v["prk_key"].as_slice());
        let mut key_info = KEY_INFO_LABEL.to_vec();
        key_info.extend_from_slice(&v["ua_public"]);
        key_info.extend_from_slice(&v["as_public"]);
        assert_eq!(key_info, v["key_info"]);
        let ikm = hmac_sha256(prk_key.as_slice(), &[&key_info, &[1]]).unwrap();
        assert_eq!(ikm.as_slice(), v["ikm"].as_slice());
        let prk = hmac_sha256(&v["salt"], &[ikm.as_slice()]).unwrap();
        assert_eq!(prk.as_slice(), v["prk"].as_slice());
        assert_eq!(CEK_INFO, v["cek_info"].as_slice());
        assert_eq!(NONCE_INFO, v["nonce_info"].as_slice());

        let keys = derive(
            ecdh,
            &as_array(&v["auth_secret"]),
            &v["ua_public"],
            &v["as_public"],
            &as_array(&v["salt"]),
        )
        .unwrap();
        assert_eq!(keys.cek.as_slice(), v["cek"].as_slice());
        assert_eq!(keys.nonce.as_slice(), v["nonce"].as_slice());
    }

    #[test]
    fn the_rfc_8291_example_body_decrypts_with_the_user_agent_key() {
        let v = vector();
        let ua_private = SecretKey::from_slice(&v["ua_private"]).unwrap();
        assert_eq!(
            decrypt(&v["body"], &ua_private, &v["auth_secret"]).unwrap(),
            v["plaintext"]
        );
    }

    #[test]
    fn a_message_round_trips_with_a_fresh_key_and_salt_each_time() {
        let ua_private = SecretKey::random(&mut rand::rngs::OsRng);
        let auth = [9u8; 16];
        let plaintext =
            br#"{"alert":"0123456789abcdef0123456789abcdef","zone":"north","urgency":"high"}"#;
        let a = encrypt(&ua_private.public_key(), &auth, plaintext).unwrap();
        let b = encrypt(&ua_private.public_key(), &auth, plaintext).unwrap();
        assert_ne!(a[..HEADER_LEN], b[..HEADER_LEN], "salt and key are fresh");
        assert_eq!(a.len(), HEADER_LEN + plaintext.len() + 1 + TAG_LEN);
        assert_eq!(&a[16..21], &[0, 0, 0x10, 0, 65]);
        for body in [a, b] {
            assert_eq!(decrypt(&body, &ua_private, &auth).unwrap(), plaintext);
        }
        assert!(
            decrypt(
                &encrypt(&ua_private.public_key(), &auth, b"x").unwrap(),
                &ua_private,
                &[8; 16]
            )
            .is_err()
        );
    }

    #[test]
    fn a_payload_over_3993_bytes_is_refused_and_3993_fits_in_4096() {
        assert_eq!(MAX_PLAINTEXT, 3993);
        let ua = SecretKey::random(&mut rand::rngs::OsRng).public_key();
        let body = encrypt(&ua, &[1; 16], &[b'a'; MAX_PLAINTEXT]).unwrap();
        assert_eq!(body.len(), 4096);
        assert!(matches!(
            encrypt(&ua, &[1; 16], &[b'a'; MAX_PLAINTEXT + 1]),
            Err(EceError::TooLarge {
                len: 3994,
                max: 3993
            })
        ));
    }

    #[test]
    fn a_tampered_body_does_not_decrypt() {
        let ua_private = SecretKey::random(&mut rand::rngs::OsRng);
        let mut body = encrypt(&ua_private.public_key(), &[3; 16], b"zone north").unwrap();
        let last = body.len() - 1;
        body[last] ^= 1;
        assert!(decrypt(&body, &ua_private, &[3; 16]).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn any_payload_up_to_the_limit_round_trips(
            plaintext in proptest::collection::vec(any::<u8>(), 0..=MAX_PLAINTEXT),
            auth in any::<[u8; 16]>(),
        ) {
            let ua_private = SecretKey::random(&mut rand::rngs::OsRng);
            let body = encrypt(&ua_private.public_key(), &auth, &plaintext).unwrap();
            prop_assert!(body.len() <= RECORD_SIZE as usize);
            prop_assert_eq!(decrypt(&body, &ua_private, &auth).unwrap(), plaintext);
        }
    }
}
