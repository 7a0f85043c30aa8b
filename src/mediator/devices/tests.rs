use base64::Engine as _;
use p256::pkcs8::EncodePublicKey;

use super::*;
use crate::crypto::IdentityKey;

fn spki() -> String {
    let key = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
    keys::B64URL.encode(key.verifying_key().to_public_key_der().unwrap().as_bytes())
}

const CODE: &str = "abcdefghijklmnopqrstuvwxyz";

#[test]
fn an_enrolment_with_two_public_keys_parses() {
    let identity = IdentityKey::generate();
    let e = Enrolment::parse(
        CODE,
        &identity.to_public().to_string(),
        &spki(),
        Some(" Pixel 7 "),
    )
    .unwrap();
    assert_eq!(e.device_name.as_deref(), Some("Pixel 7"));
    assert_eq!(e.recipient, identity.to_public());
}

#[test]
fn a_private_key_in_either_field_is_refused() {
    let identity = IdentityKey::generate();
    let secret = identity.to_secret_string();
    assert!(matches!(
        Enrolment::parse(CODE, &secret, &spki(), None),
        Err(DeviceError::InvalidRecipient)
    ));
    let signing = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
    let pkcs8 = {
        use p256::pkcs8::EncodePrivateKey;
        keys::B64URL.encode(signing.to_pkcs8_der().unwrap().as_bytes())
    };
    assert!(matches!(
        Enrolment::parse(CODE, &identity.to_public().to_string(), &pkcs8, None),
        Err(DeviceError::InvalidSigningKey)
    ));
}

#[test]
fn malformed_fields_are_refused_each_with_its_own_error() {
    let recipient = IdentityKey::generate().to_public().to_string();
    assert!(matches!(
        Enrolment::parse(CODE, "age1notakey", &spki(), None),
        Err(DeviceError::InvalidRecipient)
    ));
    assert!(matches!(
        Enrolment::parse(CODE, &"a".repeat(500), &spki(), None),
        Err(DeviceError::InvalidRecipient)
    ));
    assert!(matches!(
        Enrolment::parse(CODE, &recipient, "AAAA", None),
        Err(DeviceError::InvalidSigningKey)
    ));
    assert!(matches!(
        Enrolment::parse(CODE, &recipient, &spki(), Some(&"x".repeat(65))),
        Err(DeviceError::InvalidDeviceName)
    ));
    assert!(matches!(
        Enrolment::parse(CODE, &recipient, &spki(), Some("a\nb")),
        Err(DeviceError::InvalidDeviceName)
    ));
    assert!(matches!(
        Enrolment::parse("short", &recipient, &spki(), None),
        Err(DeviceError::InviteInvalid)
    ));
    assert!(
        Enrolment::parse(CODE, &recipient, &spki(), Some(""))
            .unwrap()
            .device_name
            .is_none()
    );
}

#[test]
fn a_damaged_or_misfiled_device_record_is_not_trusted() {
    let id = DeviceId::parse("d_1").unwrap();
    let key = DeviceSigningKey::from_spki_b64url(&spki()).unwrap();
    let record = DeviceRecord {
        device_id: "d_1".into(),
        mediator_id: "m_1".into(),
        name: "Ana".into(),
        device_name: None,
        zones: vec!["north".into()],
        supervisor: false,
        recipient: IdentityKey::generate().to_public().to_string(),
        signing_key: key.to_stored(),
        on_duty: true,
        created: 0,
    };
    let json = serde_json::to_string(&record).unwrap();
    assert_eq!(DeviceRecord::parse(&json, &id), Some(record.clone()));
    let other = DeviceId::parse("d_2").unwrap();
    assert_eq!(DeviceRecord::parse(&json, &other), None);
    let bad_key = DeviceRecord {
        signing_key: "AAAA".into(),
        ..record.clone()
    };
    let json = serde_json::to_string(&bad_key).unwrap();
    assert_eq!(DeviceRecord::parse(&json, &id), None);
    assert_eq!(DeviceRecord::parse("{", &id), None);
}

#[test]
fn new_device_ids_are_valid_and_distinct() {
    let a = new_device_id().unwrap();
    let b = new_device_id().unwrap();
    assert_ne!(a, b);
    assert_eq!(a.as_str().len(), 26);
}
