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

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_TYPE, LOCATION};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::outbound::egress::AddressPolicy;

/// Time allowed to open a connection to the provider.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed for a whole exchange, redirects and body included, so a slow
/// provider cannot hold a worker.
const TOTAL_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest send answer we read. Real answers are about 1 KiB; a provider (or
/// anything posing as one) must not make us buffer without bound.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Twilio answers a media URL with one redirect; a few more are tolerated, a
/// loop is not.
const MAX_REDIRECTS: usize = 5;
/// Longest message id we accept; Twilio SIDs are 34 characters, Telnyx ids are
/// UUIDs (36).
const MAX_ID_LEN: usize = 128;
/// What a media answer without a usable `Content-Type` is declared as.
const UNKNOWN_CONTENT_TYPE: &str = "application/octet-stream";

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

    /// Whether `url` is on an origin the operator configured (whose hosts
    /// are trusted as configured); every other origin goes through the
    /// egress guard.
    fn is_configured_origin(&self, url: &Url) -> bool {
        let origin = url.origin();
        match &self.provider {
            Provider::Twilio { base, .. } => origin == base.origin(),
            Provider::Telnyx { media_base, .. } => origin == media_base.origin(),
        }
    }

    pub fn kind(&self) -> ProviderKind {
        match self.provider {
            Provider::Twilio { .. } => ProviderKind::Twilio,
            Provider::Telnyx { .. } => ProviderKind::Telnyx,
        }
    }

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

    /// Fetches one media item, refusing more than `max_bytes` (the declared
    /// `Content-Length` is checked first, then the body is streamed and the
    /// read stops as soon as it passes the limit). Returns the declared
    /// content type and the bytes.
    ///
    /// The URL must be on the provider's media origin: for Twilio the base
    /// URL's origin and the account's `Messages/{sid}/Media/{sid}` path, for
    /// Telnyx the `media_base_url` origin. Redirects are followed (Twilio
    /// sends one to its storage host), but Twilio credentials go only to the
    /// base origin and a redirect may not downgrade https to http.
    #[tracing::instrument(name = "sms_provider_fetch_media", skip_all, fields(provider = %self.kind()))]
    pub async fn fetch_media(
        &self,
        url: &str,
        max_bytes: usize,
    ) -> Result<(String, Vec<u8>), MediaError> {
        let url = self.check_media_url(url)?;
        tokio::time::timeout(TOTAL_TIMEOUT, self.fetch_media_from(url, max_bytes))
            .await
            .unwrap_or_else(|_| Err(MediaError::Network("timed out".to_owned())))
    }

    /// The SSRF guard: only the provider's media origin, never a URL with
    /// credentials of its own (reqwest would send them as Basic auth).
    fn check_media_url(&self, raw: &str) -> Result<Url, MediaError> {
        let url = Url::parse(raw).map_err(|_| MediaError::ForeignUrl)?;
        if has_userinfo(&url) {
            return Err(MediaError::ForeignUrl);
        }
        match &self.provider {
            Provider::Twilio {
                base, media_prefix, ..
            } => {
                // Our Basic auth opens the whole account API on this origin, so
                // the path must be a media item, not, say, the message log.
                if url.origin() != base.origin() || !is_twilio_media_path(&url, media_prefix) {
                    return Err(MediaError::ForeignUrl);
                }
            }
            Provider::Telnyx { media_base, .. } => {
                if url.origin() != media_base.origin() {
                    return Err(MediaError::ForeignUrl);
                }
            }
        }
        Ok(url)
    }

    async fn fetch_media_from(
        &self,
        first: Url,
        max_bytes: usize,
    ) -> Result<(String, Vec<u8>), MediaError> {
        let mut current = first;
        for _ in 0..=MAX_REDIRECTS {
            let mut request = if self.is_configured_origin(&current) {
                self.http.get(current.clone())
            } else {
                crate::outbound::egress::check_url(&current, self.foreign_policy)
                    .map_err(|_| MediaError::NotPublic)?;
                self.foreign.get(current.clone())
            };
            if let Provider::Twilio {
                base,
                account_sid,
                auth_token,
                ..
            } = &self.provider
                && current.origin() == base.origin()
            {
                request = request.basic_auth(account_sid, Some(auth_token.as_str()));
            }
            let mut response = request.send().await.map_err(|e| {
                if crate::outbound::egress::refused(&e) {
                    MediaError::NotPublic
                } else {
                    MediaError::Network(transport_failure(&e).to_owned())
                }
            })?;
            let status = response.status();

            if is_redirect(status) {
                let location = response
                    .headers()
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok());
                current =
                    next_hop(&current, location).ok_or(MediaError::Http(status.as_u16()))??;
                continue;
            }
            if !status.is_success() {
                return Err(MediaError::Http(status.as_u16()));
            }

            let content_type = response
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .unwrap_or(UNKNOWN_CONTENT_TYPE)
                .to_owned();
            let limit = u64::try_from(max_bytes).unwrap_or(u64::MAX);
            if response.content_length().is_some_and(|len| len > limit) {
                return Err(MediaError::TooLarge);
            }
            let bytes = read_capped(&mut response, max_bytes)
                .await
                .map_err(|e| match e {
                    ReadError::TooLarge => MediaError::TooLarge,
                    ReadError::Network(e) => MediaError::Network(transport_failure(&e).to_owned()),
                })?;
            return Ok((content_type, bytes));
        }
        Err(MediaError::Network("too many redirects".to_owned()))
    }
}

impl Provider {
    fn twilio(c: TwilioConfig) -> Result<Self, SendError> {
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

    fn telnyx(c: TelnyxConfig) -> Result<Self, SendError> {
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
struct TelnyxSendBody<'a> {
    from: &'a str,
    to: &'a str,
    text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    messaging_profile_id: Option<&'a str>,
}

#[derive(Deserialize)]
struct TwilioCreated {
    sid: String,
}

#[derive(Deserialize)]
struct TelnyxCreated {
    data: TelnyxMessage,
}

#[derive(Deserialize)]
struct TelnyxMessage {
    id: String,
}

/// Twilio's error body. Only `code` is read: `message` may quote the
/// recipient's number.
#[derive(Deserialize)]
struct TwilioErrorBody {
    code: Option<serde_json::Value>,
}

/// Telnyx's error body. Only `code` is read: `detail` may quote the request.
#[derive(Deserialize)]
struct TelnyxErrorBody {
    errors: Vec<TelnyxErrorItem>,
}

#[derive(Deserialize)]
struct TelnyxErrorItem {
    code: Option<serde_json::Value>,
}

fn config_error(what: &str) -> SendError {
    SendError::Permanent(format!("invalid configuration: {what}"))
}

/// Parses a base URL. Plain http is allowed only to a loopback host, which is
/// where the test stand-ins live; anything else would put credentials on the
/// wire in clear.
fn parse_base(raw: &str, name: &str) -> Result<Url, SendError> {
    let url = Url::parse(raw).map_err(|_| config_error(&format!("{name} is not a URL")))?;
    if url.cannot_be_a_base() || url.host_str().is_none() {
        return Err(config_error(&format!("{name} has no host")));
    }
    if has_userinfo(&url) || url.query().is_some() || url.fragment().is_some() {
        return Err(config_error(&format!(
            "{name} must not carry credentials, a query or a fragment"
        )));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        _ => Err(config_error(&format!(
            "{name} must use https (plain http only to a loopback stand-in)"
        ))),
    }
}

fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

fn has_userinfo(url: &Url) -> bool {
    !url.username().is_empty() || url.password().is_some()
}

/// Appends path segments to a base URL; `path_segments_mut` percent-encodes
/// them, so no configured value can change the path's shape.
fn with_segments(base: &Url, segments: &[&str], name: &str) -> Result<Url, SendError> {
    let mut url = base.clone();
    url.path_segments_mut()
        .map_err(|()| config_error(&format!("{name} has no host")))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

fn path_segments(url: &Url) -> Vec<String> {
    url.path_segments()
        .map(|segments| {
            segments
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// `{prefix}/{MessageSid}/Media/{MediaSid}`, each SID alphanumeric.
fn is_twilio_media_path(url: &Url, prefix: &[String]) -> bool {
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
fn is_messaging_service_sid(from: &str) -> bool {
    from.len() == 34
        && from.starts_with("MG")
        && from.bytes().skip(2).all(|b| b.is_ascii_hexdigit())
}

/// 429 and 5xx by the brief; 408 is a timeout on the provider's side, which
/// the brief also files under retry.
fn is_retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
}

fn is_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// Resolves a redirect. `None` when the answer names no usable target (the
/// caller reports the status); `ForeignUrl` when the target would downgrade
/// to plain http, leave http(s) or carry its own credentials.
fn next_hop(current: &Url, location: Option<&str>) -> Option<Result<Url, MediaError>> {
    let next = current.join(location?).ok()?;
    let allowed = matches!(
        (current.scheme(), next.scheme()),
        (_, "https") | ("http", "http")
    );
    if !allowed || has_userinfo(&next) {
        return Some(Err(MediaError::ForeignUrl));
    }
    Some(Ok(next))
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

fn parse_message_id(kind: ProviderKind, answer: &[u8]) -> Option<String> {
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
fn is_plain_id(id: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn provider_error_code(kind: ProviderKind, body: &[u8]) -> Option<String> {
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use actix_web::dev::ServerHandle;
    use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
    use base64::Engine as _;
    use bytes::Bytes;
    use futures_util::StreamExt as _;

    use super::*;

    const SID: &str = "AC0123456789abcdef0123456789abcdef";
    const TOKEN: &str = "twilio-token-s3cret";
    const API_KEY: &str = "KEY0123-telnyx-s3cret";
    const TO: &str = "+15551234567";
    const FROM: &str = "+15557654321";
    const BODY: &str = "Thanks. Café & co: 100% + safe?";

    /// One request as the stand-in received it.
    #[derive(Clone, Debug)]
    struct Seen {
        method: String,
        path: String,
        authorization: Option<String>,
        content_type: Option<String>,
        body: Vec<u8>,
    }

    type Respond = dyn Fn(&Seen) -> HttpResponse + Send + Sync;

    /// A local HTTP server on 127.0.0.1:0 that records every request and
    /// answers with `respond`.
    struct StandIn {
        base: String,
        seen: Arc<Mutex<Vec<Seen>>>,
        handle: ServerHandle,
    }

    impl StandIn {
        fn spawn(respond: impl Fn(&Seen) -> HttpResponse + Send + Sync + 'static) -> StandIn {
            let seen = Arc::new(Mutex::new(Vec::new()));
            let respond: Arc<Respond> = Arc::new(respond);
            let (seen_in, respond_in) = (seen.clone(), respond.clone());
            let server = HttpServer::new(move || {
                let (seen, respond) = (seen_in.clone(), respond_in.clone());
                App::new().default_service(web::to(move |req: HttpRequest, body: Bytes| {
                    let (seen, respond) = (seen.clone(), respond.clone());
                    async move {
                        let header = |name| {
                            req.headers()
                                .get(name)
                                .map(|v| v.to_str().unwrap().to_owned())
                        };
                        let got = Seen {
                            method: req.method().to_string(),
                            path: req.uri().path().to_owned(),
                            authorization: header("authorization"),
                            content_type: header("content-type"),
                            body: body.to_vec(),
                        };
                        let answer = respond(&got);
                        seen.lock().unwrap().push(got);
                        answer
                    }
                }))
            })
            .workers(1)
            .disable_signals()
            .bind(("127.0.0.1", 0))
            .unwrap();
            let addr = server.addrs()[0];
            let server = server.run();
            let handle = server.handle();
            actix_web::rt::spawn(server);
            StandIn {
                base: format!("http://{addr}"),
                seen,
                handle,
            }
        }

        fn seen(&self) -> Vec<Seen> {
            self.seen.lock().unwrap().clone()
        }
    }

    impl Drop for StandIn {
        fn drop(&mut self) {
            // The stop command is sent when `stop` is called; awaiting it is
            // only needed to wait for completion.
            drop(self.handle.stop(false));
        }
    }

    fn basic(user: &str, pass: &str) -> String {
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        format!("Basic {encoded}")
    }

    fn form_fields(body: &[u8]) -> Vec<(String, String)> {
        // application/x-www-form-urlencoded is the query-string grammar.
        let query = std::str::from_utf8(body).unwrap();
        Url::parse(&format!("http://x/?{query}"))
            .unwrap()
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    /// Twilio's Create a Message, checked the way the docs describe it.
    fn twilio_messages(seen: &Seen) -> HttpResponse {
        let twilio_error = |status: u16, code: u32, message: &str| {
            HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).json(
                serde_json::json!({
                    "code": code,
                    "message": message,
                    "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
                    "status": status,
                }),
            )
        };
        if seen.method != "POST" || seen.path != format!("/2010-04-01/Accounts/{SID}/Messages.json")
        {
            return twilio_error(404, 20404, "The requested resource was not found");
        }
        if seen.authorization.as_deref() != Some(basic(SID, TOKEN).as_str()) {
            return twilio_error(401, 20003, "Authenticate");
        }
        if seen.content_type.as_deref() != Some("application/x-www-form-urlencoded") {
            return twilio_error(400, 20001, "Unsupported content type");
        }
        let fields = form_fields(&seen.body);
        let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
        let has_sender = names.contains(&"From") ^ names.contains(&"MessagingServiceSid");
        if !names.contains(&"To") || !names.contains(&"Body") || !has_sender {
            return twilio_error(400, 21604, "A 'To' phone number is required.");
        }
        HttpResponse::Created().json(serde_json::json!({
            "sid": "SM0123456789abcdef0123456789abcdef",
            "account_sid": SID,
            "status": "queued",
            "to": TO,
            "body": BODY,
            "error_code": null,
        }))
    }

    /// Telnyx's Send a message, checked the way the docs describe it.
    fn telnyx_messages(seen: &Seen) -> HttpResponse {
        let telnyx_error = |status: u16, code: &str, title: &str| {
            HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).json(
                serde_json::json!({"errors": [{"code": code, "title": title, "detail": title}]}),
            )
        };
        if seen.method != "POST" || seen.path != "/v2/messages" {
            return telnyx_error(404, "10005", "Resource not found");
        }
        if seen.authorization.as_deref() != Some(format!("Bearer {API_KEY}").as_str()) {
            return telnyx_error(401, "10009", "Authentication failed");
        }
        if seen.content_type.as_deref() != Some("application/json") {
            return telnyx_error(400, "10015", "Bad request");
        }
        let Ok(serde_json::Value::Object(fields)) = serde_json::from_slice(&seen.body) else {
            return telnyx_error(400, "10015", "Bad request");
        };
        let known = ["from", "to", "text", "messaging_profile_id"];
        if !fields.keys().all(|k| known.contains(&k.as_str()))
            || !["from", "to", "text"]
                .iter()
                .all(|k| fields.get(*k).is_some_and(serde_json::Value::is_string))
        {
            return telnyx_error(422, "10004", "Missing required parameter");
        }
        HttpResponse::Ok().json(serde_json::json!({
            "data": {
                "record_type": "message",
                "direction": "outbound",
                "id": "40385f64-5717-4562-b3fc-2c963f66afa6",
                "to": [{"phone_number": TO, "status": "queued"}],
                "text": BODY,
                "errors": [],
            }
        }))
    }

    fn twilio_client(base: &str) -> SmsClient {
        SmsClient::new(ProviderConfig::Twilio(TwilioConfig {
            base_url: base.to_owned(),
            account_sid: SID.to_owned(),
            auth_token: Zeroizing::new(TOKEN.to_owned()),
        }))
        .unwrap()
    }

    fn twilio_client_allowing_loopback_redirects(base: &str) -> SmsClient {
        SmsClient::with_redirect_policy(
            ProviderConfig::Twilio(TwilioConfig {
                base_url: base.to_owned(),
                account_sid: SID.to_owned(),
                auth_token: Zeroizing::new(TOKEN.to_owned()),
            }),
            AddressPolicy::DangerousAllowLoopback,
        )
        .unwrap()
    }

    fn telnyx_client(base: &str, media_base: &str, profile: Option<&str>) -> SmsClient {
        SmsClient::new(ProviderConfig::Telnyx(TelnyxConfig {
            base_url: base.to_owned(),
            api_key: Zeroizing::new(API_KEY.to_owned()),
            messaging_profile_id: profile.map(str::to_owned),
            media_base_url: media_base.to_owned(),
        }))
        .unwrap()
    }

    fn sms() -> OutboundSms<'static> {
        OutboundSms {
            to: TO,
            from: FROM,
            body: BODY,
        }
    }

    fn assert_no_personal_data(text: &str) {
        for secret in [TO, FROM, BODY, TOKEN, API_KEY, "Café"] {
            assert!(!text.contains(secret), "{text:?} leaks {secret:?}");
        }
    }

    fn media_path(message: &str, media: &str) -> String {
        format!("/2010-04-01/Accounts/{SID}/Messages/{message}/Media/{media}")
    }

    #[actix_web::test]
    async fn twilio_send_posts_the_documented_form_with_basic_auth_and_returns_the_sid() {
        let twilio = StandIn::spawn(twilio_messages);
        let client = twilio_client(&twilio.base);

        let id = client.send(&sms()).await.unwrap();

        assert_eq!(id, "SM0123456789abcdef0123456789abcdef");
        let seen = twilio.seen();
        assert_eq!(seen.len(), 1);
        assert_eq!(
            seen[0].authorization.as_deref(),
            Some(basic(SID, TOKEN).as_str())
        );
        let fields = form_fields(&seen[0].body);
        let expected = [("To", TO), ("From", FROM), ("Body", BODY)];
        assert_eq!(
            fields,
            expected.map(|(k, v)| (k.to_owned(), v.to_owned())).to_vec()
        );
    }

    #[actix_web::test]
    async fn twilio_send_names_a_messaging_service_sender_messaging_service_sid() {
        let twilio = StandIn::spawn(twilio_messages);
        let client = twilio_client(&twilio.base);
        let service = "MG0123456789abcdef0123456789abcdef";

        client
            .send(&OutboundSms {
                from: service,
                ..sms()
            })
            .await
            .unwrap();

        let fields = form_fields(&twilio.seen()[0].body);
        assert!(fields.contains(&("MessagingServiceSid".to_owned(), service.to_owned())));
        assert!(!fields.iter().any(|(k, _)| k == "From"));
    }

    #[actix_web::test]
    async fn telnyx_send_posts_the_documented_json_with_bearer_auth_and_returns_the_data_id() {
        let telnyx = StandIn::spawn(telnyx_messages);
        let client = telnyx_client(&telnyx.base, &telnyx.base, Some("profile-1"));

        let id = client.send(&sms()).await.unwrap();

        assert_eq!(id, "40385f64-5717-4562-b3fc-2c963f66afa6");
        let seen = telnyx.seen();
        assert_eq!(seen.len(), 1);
        assert_eq!(
            seen[0].authorization.as_deref(),
            Some(format!("Bearer {API_KEY}").as_str())
        );
        let json: serde_json::Value = serde_json::from_slice(&seen[0].body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "from": FROM, "to": TO, "text": BODY, "messaging_profile_id": "profile-1"
            })
        );
    }

    #[actix_web::test]
    async fn telnyx_send_leaves_out_messaging_profile_id_when_none_is_configured() {
        let telnyx = StandIn::spawn(telnyx_messages);
        let client = telnyx_client(&telnyx.base, &telnyx.base, None);

        client.send(&sms()).await.unwrap();

        let json: serde_json::Value = serde_json::from_slice(&telnyx.seen()[0].body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"from": FROM, "to": TO, "text": BODY})
        );
    }

    #[actix_web::test]
    async fn server_errors_and_rate_limits_are_transient_for_both_providers() {
        for status in [500u16, 503, 429] {
            let provider = StandIn::spawn(move |_| {
                HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
                    .json(serde_json::json!({"code": 20429, "status": status}))
            });
            for client in [
                twilio_client(&provider.base),
                telnyx_client(&provider.base, &provider.base, None),
            ] {
                let err = client.send(&sms()).await.unwrap_err();
                assert!(
                    matches!(&err, SendError::Transient(t) if t.contains(&status.to_string())),
                    "{status} gave {err:?}"
                );
            }
        }
    }

    #[actix_web::test]
    async fn a_twilio_bad_request_is_permanent_and_its_text_holds_only_status_and_code() {
        let twilio = StandIn::spawn(|_| {
            HttpResponse::BadRequest().json(serde_json::json!({
                "code": 21211,
                "message": format!("The 'To' number {TO} is not a valid phone number."),
                "more_info": "https://www.twilio.com/docs/errors/21211",
                "status": 400,
            }))
        });

        let err = twilio_client(&twilio.base).send(&sms()).await.unwrap_err();

        let SendError::Permanent(text) = &err else {
            panic!("expected permanent, got {err:?}");
        };
        assert_eq!(text, "twilio: HTTP 400, provider code 21211");
        assert_no_personal_data(&err.to_string());
        assert_no_personal_data(&format!("{err:?}"));
    }

    #[actix_web::test]
    async fn a_telnyx_validation_error_is_permanent_and_carries_the_telnyx_code() {
        let telnyx = StandIn::spawn(|_| {
            HttpResponse::BadRequest().json(serde_json::json!({
                "errors": [{"code": "40310", "title": "Invalid 'to' address", "detail": TO}]
            }))
        });

        let err = telnyx_client(&telnyx.base, &telnyx.base, None)
            .send(&sms())
            .await
            .unwrap_err();

        assert!(
            matches!(&err, SendError::Permanent(t) if t == "telnyx: HTTP 400, provider code 40310"),
            "{err:?}"
        );
    }

    #[actix_web::test]
    async fn wrong_credentials_are_refused_by_the_stand_in_and_are_permanent() {
        let twilio = StandIn::spawn(twilio_messages);
        let client = SmsClient::new(ProviderConfig::Twilio(TwilioConfig {
            base_url: twilio.base.clone(),
            account_sid: SID.to_owned(),
            auth_token: Zeroizing::new("wrong".to_owned()),
        }))
        .unwrap();

        let err = client.send(&sms()).await.unwrap_err();

        assert!(
            matches!(&err, SendError::Permanent(t) if t == "twilio: HTTP 401, provider code 20003"),
            "{err:?}"
        );
    }

    #[actix_web::test]
    async fn a_success_answer_without_an_id_is_permanent() {
        let provider = StandIn::spawn(|_| {
            HttpResponse::Created().json(serde_json::json!({"status": "queued", "to": TO}))
        });

        for client in [
            twilio_client(&provider.base),
            telnyx_client(&provider.base, &provider.base, None),
        ] {
            let err = client.send(&sms()).await.unwrap_err();
            assert!(matches!(err, SendError::Permanent(_)), "{err:?}");
            assert_no_personal_data(&err.to_string());
        }
    }

    #[actix_web::test]
    async fn an_unreachable_provider_is_transient() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let client = twilio_client(&format!("http://127.0.0.1:{port}"));

        let err = client.send(&sms()).await.unwrap_err();

        assert!(
            matches!(&err, SendError::Transient(t) if t == "twilio: connection failed"),
            "{err:?}"
        );
    }

    #[actix_web::test]
    async fn twilio_media_is_fetched_with_basic_auth_through_its_redirect_without_forwarding_credentials()
     {
        let storage = StandIn::spawn(|_| {
            HttpResponse::Ok()
                .content_type("image/jpeg")
                .body(&b"\xff\xd8jpeg bytes"[..])
        });
        let storage_url = format!("{}/storage/object-1", storage.base);
        let twilio = StandIn::spawn(move |seen| {
            if seen.authorization.as_deref() != Some(basic(SID, TOKEN).as_str()) {
                return HttpResponse::Unauthorized().finish();
            }
            HttpResponse::TemporaryRedirect()
                .insert_header(("location", storage_url.clone()))
                .finish()
        });
        let client = twilio_client_allowing_loopback_redirects(&twilio.base);
        let url = format!("{}{}", twilio.base, media_path("MM123", "ME456"));

        let (content_type, bytes) = client.fetch_media(&url, 1024).await.unwrap();

        assert_eq!(content_type, "image/jpeg");
        assert_eq!(bytes, b"\xff\xd8jpeg bytes");
        assert_eq!(twilio.seen().len(), 1);
        let fetched = storage.seen();
        assert_eq!(fetched.len(), 1);
        assert_eq!(fetched[0].path, "/storage/object-1");
        assert_eq!(fetched[0].authorization, None);
    }

    /// Issue 10 item 6: a redirect off the provider's origin to this host,
    /// by IP literal or by a name that resolves here, is never followed.
    #[actix_web::test]
    async fn a_media_redirect_to_a_loopback_name_or_address_is_not_followed() {
        let storage = StandIn::spawn(|_| HttpResponse::Ok().body("secret"));
        let port = storage.base.rsplit(':').next().unwrap().to_owned();
        for target in [
            format!("http://localhost:{port}/internal"),
            format!("http://127.0.0.1:{port}/internal"),
            format!("http://[::ffff:127.0.0.1]:{port}/internal"),
        ] {
            let twilio = StandIn::spawn(move |_| {
                HttpResponse::Found()
                    .insert_header(("location", target.clone()))
                    .finish()
            });
            let client = twilio_client(&twilio.base);
            let url = format!("{}{}", twilio.base, media_path("MM123", "ME456"));

            let err = client.fetch_media(&url, 1024).await.unwrap_err();

            assert!(matches!(err, MediaError::NotPublic), "{err:?}");
            assert_eq!(twilio.seen().len(), 1);
        }
        assert!(storage.seen().is_empty(), "the loopback target was reached");
    }

    #[actix_web::test]
    async fn telnyx_media_is_fetched_with_a_plain_get() {
        let media = StandIn::spawn(|_| HttpResponse::Ok().content_type("image/png").body("png"));
        let client = telnyx_client("https://api.telnyx.example", &media.base, None);

        let (content_type, bytes) = client
            .fetch_media(&format!("{}/abc123/image.png", media.base), 1024)
            .await
            .unwrap();

        assert_eq!(
            (content_type.as_str(), bytes.as_slice()),
            ("image/png", &b"png"[..])
        );
        let seen = media.seen();
        assert_eq!(seen[0].method, "GET");
        assert_eq!(seen[0].authorization, None);
    }

    #[actix_web::test]
    async fn media_declaring_more_than_max_bytes_is_refused() {
        let media = StandIn::spawn(|_| HttpResponse::Ok().body(vec![0u8; 2048]));
        let client = telnyx_client("https://api.telnyx.example", &media.base, None);

        let err = client
            .fetch_media(&format!("{}/big", media.base), 2047)
            .await
            .unwrap_err();

        assert!(matches!(err, MediaError::TooLarge), "{err:?}");
    }

    #[actix_web::test]
    async fn media_of_exactly_max_bytes_is_accepted() {
        let media = StandIn::spawn(|_| HttpResponse::Ok().body(vec![7u8; 2048]));
        let client = telnyx_client("https://api.telnyx.example", &media.base, None);

        let (content_type, bytes) = client
            .fetch_media(&format!("{}/exact", media.base), 2048)
            .await
            .unwrap();

        assert_eq!(content_type, UNKNOWN_CONTENT_TYPE);
        assert_eq!(bytes.len(), 2048);
    }

    #[actix_web::test]
    async fn endless_media_without_a_length_is_cut_off_at_max_bytes() {
        // Never ends: only stopping early can finish this test before the
        // 15 s timeout, and the error would then be Network, not TooLarge.
        let media = StandIn::spawn(|_| {
            let chunk = Bytes::from_static(&[1u8; 1024]);
            let endless =
                futures_util::stream::repeat(chunk).map(Ok::<_, std::convert::Infallible>);
            HttpResponse::Ok().streaming(endless)
        });
        let client = telnyx_client("https://api.telnyx.example", &media.base, None);

        let err = client
            .fetch_media(&format!("{}/endless", media.base), 10_000)
            .await
            .unwrap_err();

        assert!(matches!(err, MediaError::TooLarge), "{err:?}");
    }

    #[actix_web::test]
    async fn media_urls_off_the_provider_media_origin_are_refused_before_any_request() {
        let twilio = StandIn::spawn(|_| HttpResponse::Ok().body("x"));
        let other = StandIn::spawn(|_| HttpResponse::Ok().body("x"));
        let client = twilio_client(&twilio.base);
        let path = media_path("MM123", "ME456");
        let host_port = twilio.base.trim_start_matches("http://");

        for url in [
            format!("{}{path}", other.base),
            format!("https://{host_port}{path}"),
            format!("http://user:pass@{host_port}{path}"),
            format!(
                "http://localhost:{}{path}",
                host_port.rsplit(':').next().unwrap()
            ),
            format!("{}/2010-04-01/Accounts/{SID}/Messages.json", twilio.base),
            format!("{}{}", twilio.base, media_path("MM123", "ME456/extra")),
            format!("{}{}", twilio.base, media_path("..", "ME456")),
            "file:///etc/passwd".to_owned(),
            "not a url".to_owned(),
        ] {
            let err = client.fetch_media(&url, 1024).await.unwrap_err();
            assert!(matches!(err, MediaError::ForeignUrl), "{url}: {err:?}");
        }

        let telnyx = telnyx_client(&twilio.base, &other.base, None);
        let err = telnyx
            .fetch_media(&format!("{}/media/1", twilio.base), 1024)
            .await
            .unwrap_err();
        assert!(matches!(err, MediaError::ForeignUrl), "{err:?}");

        assert!(twilio.seen().is_empty());
        assert!(other.seen().is_empty());
    }

    #[actix_web::test]
    async fn a_media_error_status_is_reported_as_http() {
        let twilio = StandIn::spawn(|_| HttpResponse::NotFound().finish());
        let client = twilio_client(&twilio.base);
        let url = format!("{}{}", twilio.base, media_path("MM123", "ME456"));

        let err = client.fetch_media(&url, 1024).await.unwrap_err();

        assert!(matches!(err, MediaError::Http(404)), "{err:?}");
    }

    #[actix_web::test]
    async fn a_redirect_loop_ends_as_a_network_error() {
        let media = StandIn::spawn(|_| {
            HttpResponse::Found()
                .insert_header(("location", "/again"))
                .finish()
        });
        let client = telnyx_client("https://api.telnyx.example", &media.base, None);

        let err = client
            .fetch_media(&format!("{}/start", media.base), 1024)
            .await
            .unwrap_err();

        assert!(matches!(err, MediaError::Network(_)), "{err:?}");
        assert_eq!(media.seen().len(), MAX_REDIRECTS + 1);
    }

    #[test]
    fn a_redirect_may_not_downgrade_to_http_or_carry_credentials() {
        let current = Url::parse("https://api.twilio.com/2010-04-01/x").unwrap();

        let hop = |location| next_hop(&current, Some(location));

        assert!(matches!(
            hop("http://s3.example/o"),
            Some(Err(MediaError::ForeignUrl))
        ));
        assert!(matches!(
            hop("https://u:p@s3.example/o"),
            Some(Err(MediaError::ForeignUrl))
        ));
        assert!(matches!(
            hop("ftp://s3.example/o"),
            Some(Err(MediaError::ForeignUrl))
        ));
        assert_eq!(
            hop("https://s3.example/o").unwrap().unwrap().as_str(),
            "https://s3.example/o"
        );
        assert_eq!(
            hop("/relative").unwrap().unwrap().as_str(),
            "https://api.twilio.com/relative"
        );
        assert!(next_hop(&current, None).is_none());
    }

    #[test]
    fn debug_output_of_configs_and_client_hides_the_secrets() {
        let twilio = TwilioConfig {
            base_url: "https://api.twilio.com".to_owned(),
            account_sid: SID.to_owned(),
            auth_token: Zeroizing::new(TOKEN.to_owned()),
        };
        let telnyx = TelnyxConfig {
            base_url: "https://api.telnyx.com".to_owned(),
            api_key: Zeroizing::new(API_KEY.to_owned()),
            messaging_profile_id: None,
            media_base_url: "https://media.telnyx.example".to_owned(),
        };

        let shown = format!(
            "{:?} {:?} {:?}",
            ProviderConfig::Twilio(twilio),
            telnyx,
            twilio_client("https://api.twilio.com")
        );

        assert!(
            !shown.contains(TOKEN) && !shown.contains(API_KEY),
            "{shown}"
        );
        assert!(shown.contains("[redacted]"));
    }

    #[test]
    fn new_refuses_plain_http_to_a_host_that_is_not_loopback() {
        let err = SmsClient::new(ProviderConfig::Twilio(TwilioConfig {
            base_url: "http://api.twilio.com".to_owned(),
            account_sid: SID.to_owned(),
            auth_token: Zeroizing::new(TOKEN.to_owned()),
        }))
        .unwrap_err();

        assert!(
            matches!(&err, SendError::Permanent(t) if t.contains("https")),
            "{err:?}"
        );
    }

    #[test]
    fn new_refuses_an_account_sid_that_could_reshape_the_path() {
        let err = SmsClient::new(ProviderConfig::Twilio(TwilioConfig {
            base_url: "https://api.twilio.com".to_owned(),
            account_sid: "AC1/../../x".to_owned(),
            auth_token: Zeroizing::new(TOKEN.to_owned()),
        }))
        .unwrap_err();

        assert!(matches!(err, SendError::Permanent(_)), "{err:?}");
    }

    #[test]
    fn new_refuses_an_api_key_that_cannot_be_a_header_and_does_not_echo_it() {
        let err = SmsClient::new(ProviderConfig::Telnyx(TelnyxConfig {
            base_url: "https://api.telnyx.com".to_owned(),
            api_key: Zeroizing::new("key with\nnewline".to_owned()),
            messaging_profile_id: None,
            media_base_url: "https://media.telnyx.example".to_owned(),
        }))
        .unwrap_err();

        assert!(!err.to_string().contains("newline"), "{err}");
    }

    #[test]
    fn the_twilio_endpoint_keeps_a_base_path_prefix() {
        let client = twilio_client("http://127.0.0.1:9/prefix/");
        let Provider::Twilio { messages_url, .. } = &client.provider else {
            panic!("not twilio");
        };
        assert_eq!(
            messages_url.as_str(),
            format!("http://127.0.0.1:9/prefix/2010-04-01/Accounts/{SID}/Messages.json")
        );
    }
}
