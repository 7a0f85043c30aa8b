//! Telnyx: its configuration checked once (API key, profile, endpoints), its
//! send body, answer and error bodies. Untrusted: the answer bodies.

use serde::{Deserialize, Serialize};

use super::urls::{config_error, parse_base, with_segments};
use super::{Provider, SendError, TelnyxConfig};

impl Provider {
    pub(super) fn telnyx(c: TelnyxConfig) -> Result<Self, SendError> {
        let base = parse_base(&c.base_url, "telnyx base_url")?;
        let media_base = parse_base(&c.media_base_url, "telnyx media_base_url")?;
        // It goes into a header value: visible ASCII, or building the request
        // would fail on every send instead of once here.
        if c.api_key.is_empty() || !c.api_key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(config_error(
                "telnyx api_key is empty or not printable ASCII",
            ));
        }
        if c.messaging_profile_id.as_deref().is_some_and(str::is_empty) {
            return Err(config_error("telnyx messaging_profile_id is set but empty"));
        }
        let messages_url = with_segments(&base, &["v2", "messages"], "telnyx base_url")?;
        Ok(Provider::Telnyx {
            messages_url,
            media_base,
            api_key: c.api_key,
            messaging_profile_id: c.messaging_profile_id,
        })
    }
}

#[derive(Serialize)]
pub(super) struct TelnyxSendBody<'a> {
    pub(super) from: &'a str,
    pub(super) to: &'a str,
    pub(super) text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) messaging_profile_id: Option<&'a str>,
}

#[derive(Deserialize)]
pub(super) struct TelnyxCreated {
    pub(super) data: TelnyxMessage,
}

#[derive(Deserialize)]
pub(super) struct TelnyxMessage {
    pub(super) id: String,
}

/// Telnyx's error body. Only `code` is read: `detail` may quote the request.
#[derive(Deserialize)]
pub(super) struct TelnyxErrorBody {
    pub(super) errors: Vec<TelnyxErrorItem>,
}

#[derive(Deserialize)]
pub(super) struct TelnyxErrorItem {
    pub(super) code: Option<serde_json::Value>,
}
