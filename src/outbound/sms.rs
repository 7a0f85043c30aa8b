//! SMS provider REST clients (Twilio, Telnyx) at configurable base URLs: send a
//! reply to a tipster and fetch the media of an inbound MMS.
//!
//! Untrusted here: every provider answer (status, headers, body, redirect
//! targets) and the media URLs, which arrive inside webhooks. Media URLs are
//! fetched only from the provider's own media origin (an SSRF guard); a
//! redirect that leaves the configured origins is followed only to public
//! addresses, through the egress guard (`crate::outbound::egress`), which checks the
//! address actually connected to, not just the URL's text. Answers
//! are read up to a fixed size, and error texts carry only HTTP statuses and
//! provider error codes, never message bodies, phone numbers or credentials,
//! because they end up in logs.
//!
//! Wire formats, as the providers document them:
//! - Twilio "Create a Message": `POST {base}/2010-04-01/Accounts/{AccountSid}/Messages.json`,
//!   HTTP Basic auth `AccountSid:AuthToken`, form fields `To`, `From` (or
//!   `MessagingServiceSid`), `Body`; `201` with JSON `{"sid": ...}`; errors as
//!   JSON `{"code", "message", "more_info", "status"}`.
//! - Twilio media: `GET {base}/2010-04-01/Accounts/{AccountSid}/Messages/{MessageSid}/Media/{MediaSid}`
//!   with the same Basic auth; it answers with a redirect to a storage host.
//! - Telnyx "Send a message": `POST {base}/v2/messages`, `Authorization: Bearer <API key>`,
//!   JSON `{"from", "to", "text", "messaging_profile_id"?}`; `200` with
//!   `{"data": {"id": ...}}`; errors as `{"errors": [{"code", "title", "detail"}]}`.
//! - Telnyx inbound media: plain `GET` of the URL in the webhook, no auth.

mod clients;
mod media;
mod send;
mod telnyx;
mod twilio;
mod urls;

pub use clients::provider_clients;

use std::fmt;
use std::time::Duration;

use reqwest::Url;
use zeroize::Zeroizing;

use crate::outbound::egress::AddressPolicy;

/// Time allowed to open a connection to the provider.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed for a whole exchange, redirects and body included, so a slow
/// provider cannot hold a worker.
const TOTAL_TIMEOUT: Duration = Duration::from_secs(15);

/// Which SMS provider a client talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    Twilio,
    Telnyx,
}

impl ProviderKind {
    /// Lower-case name, as used in error texts and log fields.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Twilio => "twilio",
            ProviderKind::Telnyx => "telnyx",
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Twilio account settings. `base_url` is `https://api.twilio.com` in
/// production; it is also the only origin media is fetched from.
pub struct TwilioConfig {
    pub base_url: String,
    pub account_sid: String,
    pub auth_token: Zeroizing<String>,
}

impl fmt::Debug for TwilioConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioConfig")
            .field("base_url", &self.base_url)
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"[redacted]")
            .finish()
    }
}

/// Telnyx account settings. `base_url` is `https://api.telnyx.com` in
/// production; `media_base_url` is the one origin inbound media is fetched
/// from (the host Telnyx puts in `media[].url` of its webhooks).
pub struct TelnyxConfig {
    pub base_url: String,
    pub api_key: Zeroizing<String>,
    pub messaging_profile_id: Option<String>,
    pub media_base_url: String,
}

impl fmt::Debug for TelnyxConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelnyxConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &"[redacted]")
            .field("messaging_profile_id", &self.messaging_profile_id)
            .field("media_base_url", &self.media_base_url)
            .finish()
    }
}

/// The configured provider. `Debug` is safe to log: both configs redact their
/// secret.
#[derive(Debug)]
pub enum ProviderConfig {
    Twilio(TwilioConfig),
    Telnyx(TelnyxConfig),
}

impl ProviderConfig {
    pub fn kind(&self) -> ProviderKind {
        match self {
            ProviderConfig::Twilio(_) => ProviderKind::Twilio,
            ProviderConfig::Telnyx(_) => ProviderKind::Telnyx,
        }
    }
}

/// One outbound SMS. Deliberately no `Debug`: every field is personal data.
#[derive(Clone, Copy)]
pub struct OutboundSms<'a> {
    /// Recipient, E.164.
    pub to: &'a str,
    /// Sender: an E.164 number, a short code, or for Twilio a Messaging
    /// Service SID (`MG` + 32 hex digits), which is sent as `MessagingServiceSid`.
    pub from: &'a str,
    pub body: &'a str,
}

/// Why a send failed. The texts hold provider names, HTTP statuses and
/// provider error codes only.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Retry later: network error, timeout, 429, 5xx.
    #[error("transient SMS provider failure: {0}")]
    Transient(String),
    /// Do not retry: other 4xx, malformed answer.
    #[error("permanent SMS provider failure: {0}")]
    Permanent(String),
}

/// Why a media fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("media is larger than allowed")]
    TooLarge,
    #[error("media host answered HTTP {0}")]
    Http(u16),
    #[error("media fetch failed: {0}")]
    Network(String),
    #[error("media URL is not on the provider's media host")]
    ForeignUrl,
    #[error("media redirect leads to an address that is not public")]
    NotPublic,
}

/// A client for one provider: sends SMS and fetches MMS media. Build it once
/// at start-up; `new` refuses a configuration it cannot use.
pub struct SmsClient {
    /// For the origins the operator configured.
    http: reqwest::Client,
    /// For redirect hops to any other origin: public addresses only.
    foreign: reqwest::Client,
    foreign_policy: AddressPolicy,
    provider: Provider,
}

/// The validated configuration, with endpoints resolved once.
enum Provider {
    Twilio {
        messages_url: Url,
        /// Media must be on this URL's origin, under `media_prefix`.
        base: Url,
        /// Path segments a media URL starts with: the base path, then
        /// `2010-04-01/Accounts/{AccountSid}/Messages`.
        media_prefix: Vec<String>,
        account_sid: String,
        auth_token: Zeroizing<String>,
    },
    Telnyx {
        messages_url: Url,
        /// Media must be on this URL's origin.
        media_base: Url,
        api_key: Zeroizing<String>,
        messaging_profile_id: Option<String>,
    },
}

impl fmt::Debug for SmsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmsClient")
            .field("provider", &self.kind())
            .finish_non_exhaustive()
    }
}

impl SmsClient {
    /// Validates the configuration and builds the HTTP client. Every refusal
    /// is a [`SendError::Permanent`] naming the setting at fault, never its
    /// value.
    pub fn new(config: ProviderConfig) -> Result<Self, SendError> {
        Self::with_redirect_policy(config, AddressPolicy::PublicOnly)
    }

    /// As [`SmsClient::new`], with the addresses a media redirect off the
    /// configured origins may lead to. Anything but `PublicOnly` is for tests
    /// against loopback stand-ins (`sms.dangerous_allow_loopback_media`).
    pub fn with_redirect_policy(
        config: ProviderConfig,
        foreign_policy: AddressPolicy,
    ) -> Result<Self, SendError> {
        let provider = match config {
            ProviderConfig::Twilio(c) => Provider::twilio(c)?,
            ProviderConfig::Telnyx(c) => Provider::telnyx(c)?,
        };
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(TOTAL_TIMEOUT)
            // Redirects are followed by hand in `fetch_media`, so credentials go
            // only to the provider's origin and every hop is checked.
            .redirect(reqwest::redirect::Policy::none())
            // A media URL names the account and message; no hop needs to see it.
            .referer(false)
            .user_agent(concat!("tipwire/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|_| SendError::Permanent("could not build the HTTP client".to_owned()))?;
        let foreign = crate::outbound::egress::client_builder(foreign_policy)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(TOTAL_TIMEOUT)
            .referer(false)
            .user_agent(concat!("tipwire/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|_| SendError::Permanent("could not build the HTTP client".to_owned()))?;
        Ok(Self {
            http,
            foreign,
            foreign_policy,
            provider,
        })
    }

    pub fn kind(&self) -> ProviderKind {
        match self.provider {
            Provider::Twilio { .. } => ProviderKind::Twilio,
            Provider::Telnyx { .. } => ProviderKind::Telnyx,
        }
    }
}

/// A fixed description of a transport failure. reqwest's own text names the
/// URL, which holds account and message SIDs.
fn transport_failure(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "answer body failed"
    } else {
        "request failed"
    }
}

enum ReadError {
    TooLarge,
    Network(reqwest::Error),
}

/// Reads a body chunk by chunk and stops as soon as it would pass `limit`,
/// so an endless or lying body costs at most `limit` bytes.
async fn read_capped(response: &mut reqwest::Response, limit: usize) -> Result<Vec<u8>, ReadError> {
    let expected = response
        .content_length()
        .and_then(|len| usize::try_from(len).ok())
        .unwrap_or(0);
    let mut out = Vec::with_capacity(expected.min(limit));
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Network)? {
        if chunk.len() > limit.saturating_sub(out.len()) {
            return Err(ReadError::TooLarge);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
