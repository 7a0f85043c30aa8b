//! SMS provider REST clients (Twilio, Telnyx) at configurable base URLs: send a
//! reply to a tipster and fetch the media of an inbound MMS.
//!
//! Untrusted here: every provider answer (status, headers, body, redirect
//! targets) and the media URLs, which arrive inside webhooks. Media URLs are
//! fetched only from the provider's own media origin (an SSRF guard); a
//! redirect that leaves the configured origins is followed only to public
//! addresses, through the egress guard (`crate::egress`), which checks the
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

use crate::egress::AddressPolicy;

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
        let foreign = crate::egress::client_builder(foreign_policy)
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
                crate::egress::check_url(&current, self.foreign_policy)
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
                if crate::egress::refused(&e) {
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
mod tests;
