//! `POST /webhooks/sms/telnyx`: Telnyx API v2 `message.received` events. The
//! JSON body is untrusted until the Ed25519 signature over
//! `"{telnyx-timestamp}|{body}"` verifies and the timestamp is within 300 s.
//! Telnyx gets a fast 200; any answer goes out through the reply relay.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use crate::channels::body::{check_content_type, read_body};
use crate::domain::{PhoneNumber, ThreadId};
use crate::error::AppError;
use crate::outbound::relay::{self, Kind};

use super::inbound::{Answer, InboundSms, MediaRef, SmsChannel};
use super::signature::TelnyxError;
use crate::outbound::relay::threads::Provider;

#[derive(Deserialize)]
struct Event {
    data: EventData,
}

#[derive(Deserialize)]
struct EventData {
    event_type: String,
    payload: Option<Payload>,
}

#[derive(Deserialize)]
struct Payload {
    id: String,
    from: Endpoint,
    #[serde(default)]
    to: Vec<Endpoint>,
    #[serde(default)]
    text: String,
    #[serde(default)]
    media: Vec<Media>,
}

#[derive(Deserialize)]
struct Endpoint {
    phone_number: String,
}

#[derive(Deserialize)]
struct Media {
    url: String,
    #[serde(default)]
    content_type: String,
}

/// The message in a verified event body; `None` for events other than
/// `message.received` (delivery reports and the like).
pub(crate) fn message(body: &[u8]) -> Result<Option<InboundSms>, AppError> {
    let event: Event = serde_json::from_slice(body).map_err(|_| AppError::MalformedBody)?;
    if event.data.event_type != "message.received" {
        return Ok(None);
    }
    let p = event.data.payload.ok_or(AppError::MalformedBody)?;
    let from = PhoneNumber::parse(&p.from.phone_number).map_err(|_| AppError::InvalidSender)?;
    let to = p.to.first().ok_or(AppError::MissingField)?;
    let to = PhoneNumber::parse(&to.phone_number).map_err(|_| AppError::UnknownNumber)?;
    Ok(Some(InboundSms {
        from,
        to,
        body: p.text,
        message_id: p.id,
        media: p
            .media
            .into_iter()
            .map(|m| MediaRef {
                url: m.url,
                content_type: m.content_type,
            })
            .collect(),
    }))
}

#[tracing::instrument(name = "telnyx_webhook", skip_all)]
pub async fn webhook(
    req: HttpRequest,
    payload: web::Payload,
    channel: web::Data<SmsChannel>,
) -> Result<HttpResponse, AppError> {
    let Some(telnyx) = channel.telnyx.as_ref() else {
        return Err(AppError::NotFound);
    };
    check_content_type(req.headers(), "application/json")?;
    let body = read_body(req.headers(), payload, channel.max_request_bytes).await?;
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    let now = crate::clock::now_secs();
    if let Err(e) = telnyx.verifier.verify(
        header("telnyx-timestamp"),
        &body,
        header("telnyx-signature-ed25519"),
        now,
    ) {
        channel
            .metrics
            .signature_failures
            .with_label_values(&["telnyx"])
            .inc();
        // Debug, not warn: a forged flood must not become a log flood.
        tracing::debug!(code = "signature-invalid", reason = ?e, "telnyx webhook refused");
        return Err(match e {
            TelnyxError::Stale => AppError::TimestampStale,
            _ => AppError::SignatureInvalid,
        });
    }
    let Some(msg) = message(&body)? else {
        // Delivery reports and the like: acknowledged, nothing to do.
        return Ok(HttpResponse::Ok().json(serde_json::json!({})));
    };
    let thread_from = msg.from.clone();
    let answer = channel.handle(Provider::Telnyx, msg).await?;
    let (text, kind) = match answer {
        Answer::Compliance(t) => (t, Kind::Compliance),
        Answer::Reply(t) => (t, Kind::Reply),
        Answer::Silent => return Ok(HttpResponse::Ok().json(serde_json::json!({}))),
    };
    let pseudonym = channel
        .keyring
        .pseudonym_key()
        .pseudonym(thread_from.as_str().as_bytes());
    let thread = ThreadId::for_pseudonym(pseudonym.as_str());
    if let Err(e) = relay::enqueue(&channel.store, &channel.keyring, &thread, &text, kind).await {
        // The tip itself is stored; only the acknowledgement is lost.
        tracing::warn!(error = %e, "answer not queued");
    }
    Ok(HttpResponse::Ok().json(serde_json::json!({})))
}
