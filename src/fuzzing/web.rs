//! Fuzz target `form`: the body of `POST /tips` (untrusted, all of it),
//! through the strict form decoder (`channels/form.rs`) and the web channel's
//! decoding of the fields into a tip (`channels/web`).

use super::MAX_BODY_BYTES;
use crate::channels::form::{self, FormError};
use crate::channels::web::{MAX_FIELDS, form_tip, parse_tip};
use crate::domain::{Zone, ZoneChoice};
use crate::error::AppError;

/// `tips.max_text_chars` by default.
const MAX_TEXT_CHARS: usize = 4_000;
/// The decoded fields (at most the body), their canonical re-encoding (at
/// most three times the body) and its decoding again, with room to spare.
pub const FORM_MAX_ALLOC_BYTES: usize = 8 * MAX_BODY_BYTES;

/// Properties: the decoder accepts at most [`MAX_FIELDS`] distinct names;
/// what it accepts re-encodes canonically and decodes to the same fields;
/// a body without escapes decodes to itself; a body it refuses as malformed
/// has a broken escape, a pair without `=`, a repeated name or too many
/// fields, and one refused as invalid UTF-8 has an escape or a byte outside
/// UTF-8. The tip decoding keeps the text exactly, within its length, and
/// picks only a configured zone (or "unsure") and a known urgency.
pub fn form(data: &[u8]) {
    let body = data.get(..MAX_BODY_BYTES).unwrap_or(data);
    match form::parse(body, MAX_FIELDS) {
        Ok(fields) => accepted(body, fields),
        Err(error) => refused(body, error),
    }
}

fn pairs(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    body.split(|&b| b == b'&').filter(|pair| !pair.is_empty())
}

fn accepted(body: &[u8], fields: Vec<(String, String)>) {
    assert!(fields.len() <= MAX_FIELDS);
    for (i, (name, _)) in fields.iter().enumerate() {
        assert!(
            fields.iter().skip(i + 1).all(|(other, _)| other != name),
            "a repeated name was accepted"
        );
    }

    let encoded: Vec<String> = fields
        .iter()
        .map(|(name, value)| format!("{}={}", form::encode(name), form::encode(value)))
        .collect();
    assert_eq!(
        form::parse(encoded.join("&").as_bytes(), MAX_FIELDS).as_ref(),
        Ok(&fields),
        "accepted fields do not survive a round trip"
    );

    if !body.iter().any(|&b| b == b'%' || b == b'+') {
        let raw: Vec<&[u8]> = pairs(body).collect();
        assert_eq!(raw.len(), fields.len());
        for (pair, (name, value)) in raw.iter().zip(&fields) {
            assert_eq!(*pair, format!("{name}={value}").as_bytes());
        }
    }

    tip(fields);
}

fn refused(body: &[u8], error: FormError) {
    match error {
        FormError::InvalidUtf8 => assert!(
            body.contains(&b'%') || std::str::from_utf8(body).is_err(),
            "valid UTF-8 without escapes refused as invalid UTF-8"
        ),
        FormError::Malformed => {
            let mut names: Vec<&[u8]> = Vec::new();
            let mut odd = body.contains(&b'%');
            for pair in pairs(body) {
                let name = pair.split(|&b| b == b'=').next().unwrap_or_default();
                odd |= !pair.contains(&b'=') || names.contains(&name);
                names.push(name);
            }
            // Names are compared decoded: `a+b` and `a b` are one name.
            odd |= body.contains(&b'+') || names.len() > MAX_FIELDS;
            assert!(odd, "a well-formed body was refused as malformed");
        }
    }
}

fn zones() -> Vec<(Zone, String)> {
    ["north", "south-2"]
        .into_iter()
        .filter_map(|id| Some((Zone::parse(id).ok()?, id.to_uppercase())))
        .collect()
}

fn tip(fields: Vec<(String, String)>) {
    let field = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let (text, zone, urgency) = (field("text"), field("zone"), field("urgency"));
    let zones = zones();
    // No Idempotency-Key header: the form's own `submission` field is the
    // token, and a malformed one is refused before the tip is decoded.
    let token = field("submission");
    let decoded = form_tip(fields, &actix_web::http::header::HeaderMap::new())
        .and_then(|form| parse_tip(&form, &zones, MAX_TEXT_CHARS));
    match decoded {
        Ok(tip) => {
            assert_eq!(Some(tip.text.as_str()), text.as_deref());
            assert!(tip.text.as_str().chars().count() <= MAX_TEXT_CHARS);
            assert!(!tip.text.as_str().trim().is_empty());
            assert_eq!(Some(tip.zone.as_str()), zone.as_deref());
            if let ZoneChoice::Known(known) = &tip.zone {
                assert!(zones.iter().any(|(z, _)| z == known));
            }
            assert_eq!(Some(tip.priority.as_str()), urgency.as_deref());
        }
        Err(error) => {
            assert!(
                matches!(
                    error,
                    AppError::MissingField
                        | AppError::FieldTooLong
                        | AppError::EmptyText
                        | AppError::UnknownZone
                        | AppError::InvalidUrgency
                        | AppError::InvalidSubmissionToken
                ),
                "form fields refused with {error:?}"
            );
            assert_eq!(
                matches!(error, AppError::MissingField),
                text.is_none() || zone.is_none() || urgency.is_none()
            );
            if matches!(error, AppError::InvalidSubmissionToken) {
                assert!(token.is_some(), "a token refused that was not sent");
            }
        }
    }
}
