//! `POST /webhooks/sms/twilio`: Twilio's inbound-message webhook. The form
//! body and every header are untrusted until `X-Twilio-Signature` verifies
//! against the public URL Twilio called. The answer is TwiML.

use actix_web::http::header::HeaderMap;
use actix_web::{HttpRequest, HttpResponse, web};

use crate::channels::body::{check_content_type, read_body};
use crate::channels::form::{self, FormError};
use crate::domain::PhoneNumber;
use crate::error::AppError;

use super::inbound::{Answer, InboundSms, MediaRef, SmsChannel};
use super::language::Texts;
use super::signature::TwilioValidator;
use crate::outbound::relay::threads::Provider;

/// Twilio sends a few dozen parameters; room for 10 media items.
pub(crate) const MAX_FIELDS: usize = 80;

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Text as TwiML carries it.
pub fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// The TwiML answer: one message, or an empty response (send nothing).
pub fn twiml(answer: &Answer) -> String {
    match answer {
        Answer::Compliance(text) | Answer::Reply(text) => format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Message>{}</Message></Response>",
            xml_escape(text)
        ),
        Answer::Silent => "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>".to_owned(),
    }
}

/// A JSON object of string (or number) values, as flat parameters.
fn json_fields(body: &[u8]) -> Result<Vec<(String, String)>, AppError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| AppError::MalformedBody)?;
    let object = value.as_object().ok_or(AppError::MalformedBody)?;
    if object.len() > MAX_FIELDS {
        return Err(AppError::MalformedBody);
    }
    Ok(object
        .iter()
        .filter_map(|(k, v)| match v {
            serde_json::Value::String(s) => Some((k.clone(), s.clone())),
            serde_json::Value::Number(n) => Some((k.clone(), n.to_string())),
            _ => None,
        })
        .collect())
}

/// The parameters of a webhook whose `signature` verifies for `url` (the
/// public URL Twilio called), from a form body or, when `json`, a JSON body
/// signed through the URL's `bodySHA256`. [`AppError::SignatureInvalid`] for
/// a missing or wrong signature; a JSON body is parsed only once verified.
pub(crate) fn verified_fields(
    validator: &TwilioValidator,
    url: &str,
    json: bool,
    body: &[u8],
    signature: &str,
) -> Result<Vec<(String, String)>, AppError> {
    if json {
        if signature.is_empty() || !validator.validate_json(url, body, signature) {
            return Err(AppError::SignatureInvalid);
        }
        return json_fields(body);
    }
    let fields = form::parse(body, MAX_FIELDS).map_err(|e| match e {
        FormError::InvalidUtf8 => AppError::InvalidUtf8,
        FormError::Malformed => AppError::MalformedBody,
    })?;
    if signature.is_empty() || !validator.validate_form(url, &fields, signature) {
        return Err(AppError::SignatureInvalid);
    }
    Ok(fields)
}

/// The message in a verified webhook's parameters, with at most one media
/// item past `max_media_items` (so the limit can be told, not silently met).
pub(crate) fn message(
    fields: &[(String, String)],
    max_media_items: usize,
) -> Result<InboundSms, AppError> {
    let get = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let from = get("From").ok_or(AppError::MissingField)?;
    let to = get("To").ok_or(AppError::MissingField)?;
    let message_id = get("MessageSid")
        .or_else(|| get("SmsSid"))
        .ok_or(AppError::MissingField)?;
    let from = PhoneNumber::parse(from).map_err(|_| AppError::InvalidSender)?;
    let to = PhoneNumber::parse(to).map_err(|_| AppError::UnknownNumber)?;
    let count: usize = get("NumMedia").and_then(|n| n.parse().ok()).unwrap_or(0);
    let media = (0..count.min(max_media_items.saturating_add(1)))
        .filter_map(|i| {
            Some(MediaRef {
                url: get(&format!("MediaUrl{i}"))?.to_owned(),
                content_type: get(&format!("MediaContentType{i}"))
                    .unwrap_or_default()
                    .to_owned(),
            })
        })
        .collect();
    Ok(InboundSms {
        from,
        to,
        body: get("Body").unwrap_or_default().to_owned(),
        message_id: message_id.to_owned(),
        media,
    })
}

#[tracing::instrument(name = "twilio_webhook", skip_all)]
pub async fn webhook(
    req: HttpRequest,
    payload: web::Payload,
    channel: web::Data<SmsChannel>,
) -> Result<HttpResponse, AppError> {
    let Some(twilio) = channel.twilio.as_ref() else {
        return Err(AppError::NotFound);
    };
    // Twilio posts form data; some products post JSON and sign the URL, which
    // then carries `bodySHA256` of the body.
    let json = check_content_type(req.headers(), "application/json").is_ok();
    if !json {
        check_content_type(req.headers(), "application/x-www-form-urlencoded")?;
    }
    let body = read_body(req.headers(), payload, channel.max_request_bytes).await?;
    let signature = header(req.headers(), "x-twilio-signature").unwrap_or_default();
    let mut url = format!("{}{}", channel.settings.public_base_url, req.path());
    if !req.query_string().is_empty() {
        url.push('?');
        url.push_str(req.query_string());
    }
    let fields = match verified_fields(&twilio.validator, &url, json, &body, signature) {
        Err(AppError::SignatureInvalid) => {
            channel
                .metrics
                .signature_failures
                .with_label_values(&["twilio"])
                .inc();
            // Debug, not warn: a forged flood must not become a log flood.
            tracing::debug!(code = "signature-invalid", "twilio webhook refused");
            return Err(AppError::SignatureInvalid);
        }
        other => other?,
    };
    let msg = message(&fields, channel.settings.max_media_items)?;
    drop(fields);
    let answer = match channel.handle(Provider::Twilio, msg).await {
        // Twilio does not retry an inbound-message webhook: say so to the
        // tipster rather than let the text vanish. Nothing was acknowledged,
        // but after a timeout the text may be stored, and a text sent again
        // has a new MessageSid: the answer says it may then show twice.
        Err(AppError::StoreUnavailable) => {
            Answer::Reply(Texts::not_confirmed(channel.settings.default_language).to_owned())
        }
        other => other?,
    };
    Ok(HttpResponse::Ok()
        .content_type("text/xml; charset=utf-8")
        .body(twiml(&answer)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twiml_escapes_and_can_say_nothing() {
        assert_eq!(
            twiml(&Answer::Reply("a < b & \"c\"".into())),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Message>a &lt; b &amp; &quot;c&quot;</Message></Response>"
        );
        assert!(twiml(&Answer::Silent).ends_with("<Response/>"));
    }
}
