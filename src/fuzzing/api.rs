//! Fuzz targets `api_json` and `sse_last_event_id`: the mediator app's
//! untrusted request parts. Every JSON body the API deserialises (alerts,
//! replies, devices and sessions, push and nudges) goes through the same
//! serde decoding actix's `Json` extractor runs and then through the checks
//! its route makes before touching Redis; the SSE resume cursor
//! (`Last-Event-ID`, or `?last_event_id=`) goes through `Cursor::parse`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use p256::ecdsa::SigningKey;
use p256::ecdsa::signature::Signer as _;
use p256::pkcs8::EncodePublicKey as _;
use serde::de::DeserializeOwned;

use super::{Change, Input};
use crate::api::alerts::claims::{ReassignRequest, ResolveRequest};
use crate::api::alerts::replies::{MAX_REPLY_CHARS, ReplyRequest, reply_text};
use crate::api::devices::{ChallengeRequest, DutyRequest, EnrolRequest, LoginRequest};
use crate::api::push::{NudgeRequest, SubscribeRequest};
use crate::api::{alerts as alerts_api, devices};
use crate::error::AppError;
use crate::mediator::devices::{
    CHALLENGE_LEN, DeviceSigningKey, Enrolment, InviteCode, MAX_DEVICE_NAME_CHARS, login_message,
};
use crate::mediator::live::{Cursor, StreamPos};
use crate::mediator::{DeviceId, Outcome};
use crate::outbound::nudge::NudgeContact;
use crate::outbound::push::{EndpointPolicy, Subscription};

/// The largest JSON body any API route takes (the alerts API's).
const MAX_JSON_BYTES: usize = alerts_api::MAX_JSON_BYTES;
/// A body of at most [`MAX_JSON_BYTES`] decoded twice (typed, and as a
/// generic value re-encoded and decoded again), with room to spare: JSON
/// values cost several times their text.
pub const API_JSON_MAX_ALLOC_BYTES: usize = 64 * MAX_JSON_BYTES;
/// A cursor is refused past 100 bytes; the rest is formatting.
pub const SSE_LAST_EVENT_ID_MAX_ALLOC_BYTES: usize = 4 * 1024;

/// Decodes `body` as the `Json<T>` extractor does. Property: what decodes
/// is JSON, and decodes to the same request after a round trip through a
/// generic JSON value (so no field depends on how the text spelled it).
///
/// One leniency is serde_json's, and accepted: the value of a field the
/// request does not have is skipped without checking that its text is
/// UTF-8 or that its `\u` escapes are whole characters. Nothing of such a
/// field is kept, so it is stated here rather than refused at the edge.
fn decode<T: DeserializeOwned + PartialEq>(body: &[u8], limit: usize) -> Option<T> {
    if body.len() > limit {
        // Refused by the extractor's limit before decoding.
        return None;
    }
    let typed = serde_json::from_slice::<T>(body).ok()?;
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        assert!(
            skipped_text_is_unchecked(body),
            "a request decoded from text that is not JSON"
        );
        return Some(typed);
    };
    let again = serde_json::from_str::<T>(&value.to_string());
    assert!(
        again.is_ok_and(|again| again == typed),
        "a request changed on a round trip through JSON"
    );
    Some(typed)
}

/// Whether `body` holds what serde_json does not check in a skipped value:
/// bytes that are not UTF-8, or a `\u` escape of a UTF-16 surrogate.
fn skipped_text_is_unchecked(body: &[u8]) -> bool {
    std::str::from_utf8(body).is_err()
        || body.windows(4).any(|w| {
            matches!(
                w,
                [
                    b'\\',
                    b'u',
                    b'd' | b'D',
                    b'8'..=b'9' | b'a'..=b'f' | b'A'..=b'F',
                ]
            )
        })
}

fn device_id(raw: &str) -> Option<DeviceId> {
    let id = DeviceId::parse(raw.trim())?;
    assert_eq!(id.as_str(), raw.trim());
    Some(id)
}

/// Properties of the mediator API's JSON bodies. Input: a byte choosing
/// the route, then the body.
///
/// Beyond the round trip of [`decode`]: an outcome, a device id parses
/// only to exactly its trimmed text; a reply is kept only when not blank
/// and within [`MAX_REPLY_CHARS`]; an enrolment's device name is trimmed,
/// short and free of control characters; a login signature verifies only
/// when genuine (one changed byte and it does not); a push subscription
/// accepted is an `https` endpoint and re-encodes to itself; nudge
/// contacts left blank are absent.
pub fn api_json(data: &[u8]) {
    let mut input = Input::new(data);
    let route = input.byte();
    let change = Change::read(&mut input);
    let body = input.rest();
    match route % 9 {
        0 => {
            if let Some(request) = decode::<ResolveRequest>(body, MAX_JSON_BYTES)
                && let Ok(outcome) = Outcome::parse(request.outcome.trim())
            {
                assert_eq!(outcome.as_str(), request.outcome.trim());
            }
        }
        1 => {
            if let Some(request) = decode::<ReassignRequest>(body, MAX_JSON_BYTES) {
                device_id(&request.device_id);
            }
        }
        2 => {
            if let Some(request) = decode::<ReplyRequest>(body, MAX_JSON_BYTES) {
                let fits = !request.text.trim().is_empty()
                    && request.text.chars().count() <= MAX_REPLY_CHARS;
                match reply_text(request) {
                    Ok(_) => assert!(fits),
                    Err(error) => {
                        assert!(!fits);
                        assert!(matches!(error, AppError::InvalidReplyText));
                    }
                }
            }
        }
        3 => enrol(body),
        4 => {
            if let Some(request) = decode::<ChallengeRequest>(body, devices::MAX_JSON_BYTES) {
                device_id(&request.device_id);
            }
        }
        5 => login(body, change),
        6 => {
            decode::<DutyRequest>(body, devices::MAX_JSON_BYTES);
        }
        7 => subscribe(body),
        _ => {
            if let Some(request) = decode::<NudgeRequest>(body, crate::api::push::MAX_JSON_BYTES)
                && let Ok(contact) =
                    NudgeContact::parse(request.email.as_deref(), request.sms.as_deref())
            {
                let blank = |s: &Option<String>| s.as_deref().is_none_or(|s| s.trim().is_empty());
                assert_eq!(contact.email.is_none(), blank(&request.email));
                assert_eq!(contact.sms.is_none(), blank(&request.sms));
            }
        }
    }
}

fn enrol(body: &[u8]) {
    let Some(request) = decode::<EnrolRequest>(body, devices::MAX_JSON_BYTES) else {
        return;
    };
    let Ok(enrolment) = Enrolment::parse(
        &request.invite,
        &request.age_recipient,
        &request.signing_key,
        request.device_name.as_deref(),
    ) else {
        return;
    };
    // The code as typed (any case, grouped) is normalised once and for all.
    let code = enrolment.invite.as_str();
    assert_eq!(
        InviteCode::parse(code).as_ref().map(InviteCode::as_str),
        Some(code)
    );
    if let Some(name) = &enrolment.device_name {
        assert_eq!(
            Some(name.as_str()),
            request.device_name.as_deref().map(str::trim)
        );
        assert!(!name.is_empty() && name.chars().count() <= MAX_DEVICE_NAME_CHARS);
        assert!(!name.chars().any(char::is_control));
    }
}

/// The test device's key and the challenge it is asked to sign.
fn device_key() -> (SigningKey, DeviceSigningKey) {
    let Ok(secret) = SigningKey::from_bytes(&[7; 32].into()) else {
        unreachable!("7…7 is a valid P-256 scalar");
    };
    let Ok(spki) = secret.verifying_key().to_public_key_der() else {
        unreachable!("a P-256 public key encodes");
    };
    let Ok(public) = DeviceSigningKey::from_spki_b64url(&B64URL.encode(spki.as_bytes())) else {
        unreachable!("the enrolment parser takes the key's own SPKI");
    };
    (secret, public)
}

fn login(body: &[u8], change: Change) {
    let Some(request) = decode::<LoginRequest>(body, devices::MAX_JSON_BYTES) else {
        return;
    };
    device_id(&request.device_id);
    let (secret, public) = device_key();
    let challenge = [0x5a; CHALLENGE_LEN];
    // Whatever the body claims is not this device's signature of this
    // challenge (the fuzzer cannot forge P-256), the genuine one is, and
    // the genuine one with a byte changed is not.
    let signature: p256::ecdsa::Signature = secret.sign(&login_message(&challenge));
    let genuine = B64URL.encode(signature.to_bytes());
    assert_eq!(
        public.verifies_login(&challenge, &request.signature),
        request.signature.trim() == genuine
    );
    assert!(public.verifies_login(&challenge, &genuine));
    if let Some(changed) = change.apply_text(&genuine) {
        assert!(!public.verifies_login(&challenge, &changed));
    }
}

fn subscribe(body: &[u8]) {
    let Some(request) = decode::<SubscribeRequest>(body, crate::api::push::MAX_JSON_BYTES) else {
        return;
    };
    let Ok(subscription) =
        Subscription::parse(&request.subscription.to_string(), EndpointPolicy::HttpsOnly)
    else {
        return;
    };
    let json = subscription.to_json();
    let Ok(again) = Subscription::parse(&json, EndpointPolicy::HttpsOnly) else {
        unreachable!("an accepted subscription re-encodes to one that is refused: {json}");
    };
    assert_eq!(again.to_json(), json);
    let wire: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
    let endpoint = wire
        .get("endpoint")
        .and_then(|e| e.as_str())
        .unwrap_or_default();
    assert!(
        endpoint.starts_with("https://"),
        "accepted endpoint {endpoint}"
    );
}

/// Properties of the SSE resume cursor. Input: the header's text.
///
/// A cursor parses only from at most 100 bytes holding, once trimmed, two
/// `<ms>-<seq>` stream ids (decimal, at most 20 digits, within u64) joined by
/// `|`; what parses prints back as an id that parses to the same cursor and
/// holds nothing an SSE `id:` line cannot carry. Any cursor the gateway
/// prints (built here from the input's numbers) parses back to itself.
pub fn sse_last_event_id(data: &[u8]) {
    let mut numbers = Input::new(data);
    let built = Cursor {
        alerts: StreamPos::from_parts(numbers.u64(), numbers.u64()),
        events: StreamPos::from_parts(numbers.u64(), numbers.u64()),
    };
    assert_eq!(Cursor::parse(&built.to_string()), Some(built));

    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = Cursor::parse(text);
    assert_eq!(parsed.is_some(), well_formed(text), "{text:?}");
    if let Some(cursor) = parsed {
        let printed = cursor.to_string();
        assert!(!printed.contains(['\n', '\r', '\0']));
        assert_eq!(Cursor::parse(&printed), Some(cursor));
        assert!(printed.len() <= text.trim().len());
    }
}

/// The cursor grammar, stated apart from the parser.
fn well_formed(text: &str) -> bool {
    let number = |part: &str| {
        (1..=20).contains(&part.len())
            && part.bytes().all(|b| b.is_ascii_digit())
            && part.parse::<u64>().is_ok()
    };
    let id = |part: &str| {
        let mut halves = part.split('-');
        matches!((halves.next(), halves.next(), halves.next()), (Some(ms), Some(seq), None) if number(ms) && number(seq))
    };
    let mut ids = text.trim().split('|');
    text.len() <= 100
        && matches!((ids.next(), ids.next(), ids.next()), (Some(a), Some(e), None) if id(a) && id(e))
}
