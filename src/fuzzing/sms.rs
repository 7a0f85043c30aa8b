//! Fuzz targets `twilio` and `telnyx`: the SMS webhooks' untrusted request
//! parts (URL, body, signature and timestamp headers) through signature
//! verification (`channels/sms/signature.rs`) and the parsing of verified
//! bodies (`twilio.rs`, `telnyx.rs`).
//!
//! Both build a genuine signature for the fuzzed request with a test key,
//! check that it verifies, then change one byte of the URL, a parameter, the
//! body, the timestamp or the signature (which one, where and how chosen by
//! the input) and check that the changed request is refused.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signer as _, SigningKey};
use hmac::{Hmac, Mac as _};
use sha1::Sha1;
use sha2::{Digest as _, Sha256};

use super::{Change, Input, MAX_BODY_BYTES};
use crate::channels::form::{self, FormError};
use crate::channels::sms::signature::{TelnyxError, TelnyxVerifier, TwilioValidator};
use crate::channels::sms::{telnyx as telnyx_webhook, twilio as twilio_webhook};
use crate::error::AppError;

const TOKEN: &str = "fuzzing-auth-token";
/// `sms.max_media_items` by default.
const MAX_MEDIA_ITEMS: usize = 5;
/// The body, its fields, a changed copy of each and their encodings.
pub const TWILIO_MAX_ALLOC_BYTES: usize = 12 * MAX_BODY_BYTES;
/// The body, the signed message (timestamp and body), a changed copy and
/// the parsed event.
pub const TELNYX_MAX_ALLOC_BYTES: usize = 12 * MAX_BODY_BYTES;

/// Twilio's signature as its SDKs compute it, written apart from the
/// validator: HMAC-SHA1 over the URL and the sorted, distinct name/value
/// pairs, base64.
fn twilio_sign(url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    sorted.dedup();
    let mut signed = url.as_bytes().to_vec();
    for (name, value) in sorted {
        signed.extend_from_slice(name.as_bytes());
        signed.extend_from_slice(value.as_bytes());
    }
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(TOKEN.as_bytes()) else {
        unreachable!("HMAC takes keys of any length");
    };
    mac.update(&signed);
    STANDARD.encode(mac.finalize().into_bytes())
}

/// The pairs as Twilio signs them: sorted, each distinct pair once.
fn signed_set(params: &[(String, String)]) -> Vec<(String, String)> {
    let mut set = params.to_vec();
    set.sort();
    set.dedup();
    set
}

fn form_error(error: FormError) -> AppError {
    match error {
        FormError::InvalidUtf8 => AppError::InvalidUtf8,
        FormError::Malformed => AppError::MalformedBody,
    }
}

/// Properties of `POST /webhooks/sms/twilio`. Input: a selector byte, a
/// mask byte and a 16-bit position for the one-byte change, then the URL
/// (up to a newline) and the body.
///
/// A form body's parameters are returned only with their genuine signature;
/// a change to one byte of the URL, the signature, the body or a decoded
/// parameter is refused unless it leaves the decoded parameters Twilio signs
/// unchanged (`+` and `%20` are both a space). A JSON body is signed through
/// `bodySHA256` in the URL: changing one byte of the body, the URL or the
/// signature is refused. What verifies parses into a message or a precise
/// refusal, with at most one media item past the limit.
pub fn twilio(data: &[u8]) {
    let mut input = Input::new(data);
    let change = Change::read(&mut input);
    // The gateway builds the URL from its configured base and the request
    // line, so it is always text.
    let url = String::from_utf8_lossy(input.until(b'\n')).into_owned();
    let body = input.rest();
    let body = body.get(..MAX_BODY_BYTES).unwrap_or(body);
    let validator = TwilioValidator::new(vec![TOKEN.to_owned()]);

    let json = change.what & 1 == 1;
    let verified = |url: &str, body: &[u8], signature: &str| {
        twilio_webhook::verified_fields(&validator, url, json, body, signature)
    };
    let change = Change {
        what: change.what >> 1,
        ..change
    };
    if json {
        twilio_json(verified, &url, body, change);
    } else {
        twilio_form(verified, &url, body, change);
    }
}

/// What the validator must answer for a form webhook to `url` with `body`
/// and a signature made for `signed_url` over the `signed` parameters.
fn twilio_form_verdict(
    url: &str,
    body: &[u8],
    signed_url: &str,
    signed: &[(String, String)],
) -> Verdict {
    let params = form::parse(body, twilio_webhook::MAX_FIELDS).map_err(form_error)?;
    if url == signed_url && signed_set(&params) == signed_set(signed) {
        Ok(params)
    } else {
        Err(AppError::SignatureInvalid)
    }
}

fn assert_verdict(got: Verdict, want: Verdict) {
    let code = |e: AppError| e.info().code;
    assert_eq!(got.map_err(code), want.map_err(code));
}

/// The validator's verdict on a request's URL, body and signature header.
type Verdict = Result<Vec<(String, String)>, AppError>;

fn twilio_form(
    verified: impl Fn(&str, &[u8], &str) -> Verdict,
    url: &str,
    body: &[u8],
    change: Change,
) {
    let params = match form::parse(body, twilio_webhook::MAX_FIELDS) {
        Ok(params) => params,
        Err(error) => {
            // Refused for what it is, whatever the signature says.
            assert_verdict(verified(url, body, "forged"), Err(form_error(error)));
            return;
        }
    };
    let signature = twilio_sign(url, &params);
    assert_verdict(verified(url, body, &signature), Ok(params.clone()));
    assert_verdict(verified(url, body, ""), Err(AppError::SignatureInvalid));

    match change.what % 4 {
        0 => {
            if let Some(changed) = change.apply_text(url) {
                assert_verdict(
                    verified(&changed, body, &signature),
                    twilio_form_verdict(&changed, body, url, &params),
                );
            }
        }
        1 => {
            if let Some(changed) = change.apply(body) {
                assert_verdict(
                    verified(url, &changed, &signature),
                    twilio_form_verdict(url, &changed, url, &params),
                );
            }
        }
        2 => {
            // One byte of one decoded name or value, sent re-encoded.
            let Some(index) = usize::from(change.position).checked_rem(params.len()) else {
                return;
            };
            let mut changed = params.clone();
            let Some((name, value)) = changed.get_mut(index) else {
                return;
            };
            let field = if change.mask & 0x80 == 0 { value } else { name };
            let in_field = Change {
                position: change.position >> 4,
                mask: change.mask & 0x7f,
                ..change
            };
            let Some(flipped) = in_field.apply_text(field) else {
                return;
            };
            *field = flipped;
            let encoded: Vec<String> = changed
                .iter()
                .map(|(name, value)| format!("{}={}", form::encode(name), form::encode(value)))
                .collect();
            let changed_body = encoded.join("&");
            assert_verdict(
                verified(url, changed_body.as_bytes(), &signature),
                twilio_form_verdict(url, changed_body.as_bytes(), url, &params),
            );
            if let Ok(changed) = form::parse(changed_body.as_bytes(), twilio_webhook::MAX_FIELDS) {
                assert_ne!(signed_set(&changed), signed_set(&params));
            }
        }
        _ => {
            if let Some(changed) = change.apply_text(&signature) {
                assert_verdict(
                    verified(url, body, &changed),
                    Err(AppError::SignatureInvalid),
                );
            }
        }
    }

    twilio_message(&params);
}

fn twilio_message(params: &[(String, String)]) {
    let get = |name: &str| params.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    match twilio_webhook::message(params, MAX_MEDIA_ITEMS) {
        Ok(message) => {
            assert!(message.media.len() <= MAX_MEDIA_ITEMS + 1);
            assert!(get("From").is_some() && get("To").is_some());
            assert!(
                Some(&message.message_id) == get("MessageSid")
                    || (get("MessageSid").is_none() && Some(&message.message_id) == get("SmsSid"))
            );
            assert_eq!(
                message.body.as_str(),
                get("Body").map_or("", String::as_str)
            );
        }
        Err(error) => assert!(
            matches!(
                error,
                AppError::MissingField | AppError::InvalidSender | AppError::UnknownNumber
            ),
            "twilio parameters refused with {error:?}"
        ),
    }
}

fn twilio_json(
    verified: impl Fn(&str, &[u8], &str) -> Verdict,
    url: &str,
    body: &[u8],
    change: Change,
) {
    let separator = if url.contains('?') { '&' } else { '?' };
    let hash = hex::encode(Sha256::digest(body));
    let signed_url = format!("{url}{separator}bodySHA256={hash}");
    let signature = twilio_sign(&signed_url, &[]);
    let verdict = verified(&signed_url, body, &signature);
    // A fragment hides the appended hash, and an earlier `bodySHA256` is the
    // one that counts: the fuzzer's URL decides, not this construction.
    if url.contains('#') || url.contains("bodySHA256") {
        return;
    }
    assert!(
        !matches!(verdict, Err(AppError::SignatureInvalid)),
        "a genuine JSON webhook was refused"
    );
    assert_verdict(
        verified(&signed_url, body, ""),
        Err(AppError::SignatureInvalid),
    );
    let changed = match change.what % 3 {
        0 => change
            .apply_text(&signed_url)
            .map(|changed| verified(&changed, body, &signature)),
        1 => change
            .apply(body)
            .map(|changed| verified(&signed_url, &changed, &signature)),
        _ => change
            .apply_text(&signature)
            .map(|changed| verified(&signed_url, body, &changed)),
    };
    if let Some(changed) = changed {
        assert_verdict(changed, Err(AppError::SignatureInvalid));
    }
    if let Ok(params) = verdict {
        twilio_message(&params);
    }
}

fn telnyx_key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

fn telnyx_sign(timestamp: &[u8], body: &[u8]) -> String {
    let mut message = timestamp.to_vec();
    message.push(b'|');
    message.extend_from_slice(body);
    STANDARD.encode(telnyx_key().sign(&message).to_bytes())
}

/// Properties of `POST /webhooks/sms/telnyx`. Input: a selector byte, a mask
/// byte, a 16-bit position, a clock offset byte, then the
/// `telnyx-timestamp` header (up to a newline) and the body.
///
/// A genuine signature verifies exactly when the timestamp is a decimal
/// number within 300 s of now (else `Malformed` or `Stale`); changing one
/// byte of the timestamp, the body or the signature makes it fail (never
/// `Stale`, which only ever describes an authentic message); a signature
/// taken from the input never verifies. Verified bodies parse into a
/// message, nothing, or a precise refusal.
pub fn telnyx(data: &[u8]) {
    let mut input = Input::new(data);
    let change = Change::read(&mut input);
    let offset = input.byte();
    let timestamp_bytes = input.until(b'\n');
    let body = input.rest();
    let body = body.get(..MAX_BODY_BYTES).unwrap_or(body);
    let Ok(timestamp) = std::str::from_utf8(timestamp_bytes) else {
        // Header values the gateway reads are text; others are refused
        // before verification (an empty header).
        return;
    };
    let public = STANDARD.encode(telnyx_key().verifying_key().as_bytes());
    let Ok(verifier) = TelnyxVerifier::from_base64(&public) else {
        unreachable!("the test key is a valid Ed25519 key");
    };
    let well_formed = !timestamp.is_empty() && timestamp.bytes().all(|b| b.is_ascii_digit());
    let sent_at = timestamp.parse::<u64>().ok().filter(|_| well_formed);
    // Now, as far from the timestamp as the offset says: 0 to 510 s.
    let skew = u64::from(offset) * 2;
    let now = sent_at.map_or(u64::from(offset), |at| {
        if change.what & 0x80 == 0 {
            at.saturating_add(skew)
        } else {
            at.saturating_sub(skew)
        }
    });

    let signature = telnyx_sign(timestamp.as_bytes(), body);
    let verdict = verifier.verify(timestamp, body, &signature, now);
    let expected = match sent_at {
        None => Err(TelnyxError::Malformed),
        Some(at) if now.abs_diff(at) > 300 => Err(TelnyxError::Stale),
        Some(_) => Ok(()),
    };
    assert_eq!(verdict, expected);

    let changed = match change.what % 4 {
        0 => change
            .apply_text(timestamp)
            .map(|changed| verifier.verify(&changed, body, &signature, now)),
        1 => change
            .apply(body)
            .map(|changed| verifier.verify(timestamp, &changed, &signature, now)),
        2 => change
            .apply_text(&signature)
            .map(|changed| verifier.verify(timestamp, body, &changed, now)),
        _ => {
            // A forgery: 64 bytes of the body as the signature.
            let forged = STANDARD.encode(body.iter().copied().cycle().take(64).collect::<Vec<_>>());
            (forged != signature).then(|| verifier.verify(timestamp, body, &forged, now))
        }
    };
    if let (Some(changed), Some(_)) = (changed, sent_at) {
        assert!(
            matches!(changed, Err(TelnyxError::Malformed | TelnyxError::Invalid)),
            "a changed Telnyx webhook got {changed:?}"
        );
    }

    if verdict.is_ok() {
        match telnyx_webhook::message(body) {
            Ok(Some(message)) => {
                assert!(message.from.as_str().starts_with('+'));
                assert!(message.to.as_str().starts_with('+'));
            }
            Ok(None) => {}
            Err(error) => assert!(
                matches!(
                    error,
                    AppError::MalformedBody
                        | AppError::MissingField
                        | AppError::InvalidSender
                        | AppError::UnknownNumber
                ),
                "telnyx event refused with {error:?}"
            ),
        }
    }
}
