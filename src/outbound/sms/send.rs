//! Sending one SMS through the provider's REST API, and reading its answer.
//! Untrusted: the provider's answer (status and body), read up to a fixed
//! size; only its message id and error code are kept.

use reqwest::StatusCode;
use reqwest::header::ACCEPT;

use super::telnyx::{TelnyxCreated, TelnyxErrorBody, TelnyxSendBody};
use super::twilio::{TwilioCreated, TwilioErrorBody, is_messaging_service_sid};
use super::{
    OutboundSms, Provider, ProviderKind, SendError, SmsClient, read_capped, transport_failure,
};

/// Largest send answer we read. Real answers are about 1 KiB; a provider (or
/// anything posing as one) must not make us buffer without bound.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Longest message id we accept; Twilio SIDs are 34 characters, Telnyx ids are
/// UUIDs (36).
const MAX_ID_LEN: usize = 128;

impl SmsClient {
    /// Sends one SMS. Returns the provider's message id.
    ///
    /// A timeout after the request went out is reported as transient, as is
    /// any network failure, so a retry can in rare cases deliver a message
    /// twice; neither provider offers an idempotency key for this call.
    #[tracing::instrument(name = "sms_provider_send", skip_all, fields(provider = %self.kind()))]
    pub async fn send(&self, msg: &OutboundSms<'_>) -> Result<String, SendError> {
        let kind = self.kind();
        let request = match &self.provider {
            Provider::Twilio {
                messages_url,
                account_sid,
                auth_token,
                ..
            } => {
                let sender_field = if is_messaging_service_sid(msg.from) {
                    "MessagingServiceSid"
                } else {
                    "From"
                };
                self.http
                    .post(messages_url.clone())
                    .basic_auth(account_sid, Some(auth_token.as_str()))
                    .header(ACCEPT, "application/json")
                    .form(&[("To", msg.to), (sender_field, msg.from), ("Body", msg.body)])
            }
            Provider::Telnyx {
                messages_url,
                api_key,
                messaging_profile_id,
                ..
            } => self
                .http
                .post(messages_url.clone())
                .bearer_auth(api_key.as_str())
                .header(ACCEPT, "application/json")
                .json(&TelnyxSendBody {
                    from: msg.from,
                    to: msg.to,
                    text: msg.body,
                    messaging_profile_id: messaging_profile_id.as_deref(),
                }),
        };

        let mut response = request
            .send()
            .await
            .map_err(|e| SendError::Transient(format!("{kind}: {}", transport_failure(&e))))?;
        let status = response.status();
        let answer = read_capped(&mut response, MAX_ANSWER_BYTES).await;

        if status.is_success() {
            // The provider accepted the message: whatever goes wrong from here
            // is permanent, because a retry would text the tipster twice.
            let answer = answer.map_err(|_| {
                SendError::Permanent(format!(
                    "{kind}: HTTP {} but the answer could not be read",
                    status.as_u16()
                ))
            })?;
            return parse_message_id(kind, &answer).ok_or_else(|| {
                SendError::Permanent(format!(
                    "{kind}: HTTP {} with a malformed answer",
                    status.as_u16()
                ))
            });
        }

        let code = answer
            .ok()
            .and_then(|body| provider_error_code(kind, &body));
        let text = match code {
            Some(code) => format!("{kind}: HTTP {}, provider code {code}", status.as_u16()),
            None => format!("{kind}: HTTP {}", status.as_u16()),
        };
        if is_retryable(status) {
            Err(SendError::Transient(text))
        } else {
            Err(SendError::Permanent(text))
        }
    }
}

/// 429 and 5xx by the brief; 408 is a timeout on the provider's side, which
/// the brief also files under retry.
pub(super) fn is_retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
}

pub(super) fn parse_message_id(kind: ProviderKind, answer: &[u8]) -> Option<String> {
    // serde's error text can quote the answer, which holds the recipient and
    // body; it is dropped, not logged.
    let id = match kind {
        ProviderKind::Twilio => serde_json::from_slice::<TwilioCreated>(answer).ok()?.sid,
        ProviderKind::Telnyx => {
            serde_json::from_slice::<TelnyxCreated>(answer)
                .ok()?
                .data
                .id
        }
    };
    is_plain_id(&id).then_some(id)
}

/// Ids end up in logs and storage: short, and nothing but letters, digits,
/// `-` and `_`.
pub(super) fn is_plain_id(id: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub(super) fn provider_error_code(kind: ProviderKind, body: &[u8]) -> Option<String> {
    let code = match kind {
        ProviderKind::Twilio => serde_json::from_slice::<TwilioErrorBody>(body).ok()?.code?,
        ProviderKind::Telnyx => {
            serde_json::from_slice::<TelnyxErrorBody>(body)
                .ok()?
                .errors
                .into_iter()
                .next()?
                .code?
        }
    };
    // Twilio sends a number, Telnyx a string of digits; anything else could be
    // free text and is not repeated.
    match code {
        serde_json::Value::Number(n) => n.as_u64().map(|n| n.to_string()),
        serde_json::Value::String(s)
            if (1..=16).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric()) =>
        {
            Some(s)
        }
        _ => None,
    }
}
