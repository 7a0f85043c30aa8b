//! Twilio: its configuration checked once (account SID, token, endpoints),
//! its answer and error bodies, its media paths and Messaging Service SIDs.
//! Untrusted: the answer bodies and the media URLs checked here.

use reqwest::Url;
use serde::Deserialize;

use super::urls::{config_error, parse_base, path_segments, with_segments};
use super::{Provider, SendError, TwilioConfig};

impl Provider {
    pub(super) fn twilio(c: TwilioConfig) -> Result<Self, SendError> {
        let base = parse_base(&c.base_url, "twilio base_url")?;
        // The SID is a path segment and the Basic auth user name; Twilio's are
        // `AC` + 32 hex digits, so alphanumerics only keeps both unambiguous.
        if c.account_sid.is_empty()
            || c.account_sid.len() > 64
            || !c.account_sid.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(config_error("twilio account_sid must be alphanumeric"));
        }
        if c.auth_token.is_empty() || c.auth_token.chars().any(char::is_control) {
            return Err(config_error("twilio auth_token is empty or not printable"));
        }
        let messages_url = with_segments(
            &base,
            &["2010-04-01", "Accounts", &c.account_sid, "Messages.json"],
            "twilio base_url",
        )?;
        let mut media_prefix = path_segments(&base);
        media_prefix.extend(
            ["2010-04-01", "Accounts", c.account_sid.as_str(), "Messages"]
                .iter()
                .map(|s| (*s).to_owned()),
        );
        Ok(Provider::Twilio {
            messages_url,
            base,
            media_prefix,
            account_sid: c.account_sid,
            auth_token: c.auth_token,
        })
    }
}

#[derive(Deserialize)]
pub(super) struct TwilioCreated {
    pub(super) sid: String,
}

/// Twilio's error body. Only `code` is read: `message` may quote the
/// recipient's number.
#[derive(Deserialize)]
pub(super) struct TwilioErrorBody {
    pub(super) code: Option<serde_json::Value>,
}

/// `{prefix}/{MessageSid}/Media/{MediaSid}`, each SID alphanumeric.
pub(super) fn is_twilio_media_path(url: &Url, prefix: &[String]) -> bool {
    let Some(mut segments) = url.path_segments() else {
        return false;
    };
    let sid = |s: Option<&str>| {
        s.is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric()))
    };
    prefix.iter().all(|p| segments.next() == Some(p.as_str()))
        && sid(segments.next())
        && segments.next() == Some("Media")
        && sid(segments.next())
        && segments.next().is_none()
}

/// Twilio Messaging Service SIDs are `MG` + 32 hex digits. No phone number,
/// short code or alphanumeric sender ID (at most 11 characters) looks like
/// one, so the sender field can be chosen from the value alone.
pub(super) fn is_messaging_service_sid(from: &str) -> bool {
    from.len() == 34
        && from.starts_with("MG")
        && from.bytes().skip(2).all(|b| b.is_ascii_hexdigit())
}
