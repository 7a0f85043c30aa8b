//! Fetching the media of an inbound MMS from the provider's media origin,
//! following redirects through the egress guard. Untrusted: the media URLs
//! (they arrive inside webhooks), every redirect target and every answer.

use reqwest::header::{CONTENT_TYPE, LOCATION};
use reqwest::{StatusCode, Url};

use super::twilio::is_twilio_media_path;
use super::urls::has_userinfo;
use super::{
    MediaError, Provider, ReadError, SmsClient, TOTAL_TIMEOUT, read_capped, transport_failure,
};

/// Twilio answers a media URL with one redirect; a few more are tolerated, a
/// loop is not.
pub(super) const MAX_REDIRECTS: usize = 5;

/// What a media answer without a usable `Content-Type` is declared as.
pub(super) const UNKNOWN_CONTENT_TYPE: &str = "application/octet-stream";

impl SmsClient {
    /// Whether `url` is on an origin the operator configured (whose hosts
    /// are trusted as configured); every other origin goes through the
    /// egress guard.
    pub(super) fn is_configured_origin(&self, url: &Url) -> bool {
        let origin = url.origin();
        match &self.provider {
            Provider::Twilio { base, .. } => origin == base.origin(),
            Provider::Telnyx { media_base, .. } => origin == media_base.origin(),
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
    pub(super) fn check_media_url(&self, raw: &str) -> Result<Url, MediaError> {
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

    pub(super) async fn fetch_media_from(
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

pub(super) fn is_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// Resolves a redirect. `None` when the answer names no usable target (the
/// caller reports the status); `ForeignUrl` when the target would downgrade
/// to plain http, leave http(s) or carry its own credentials.
pub(super) fn next_hop(current: &Url, location: Option<&str>) -> Option<Result<Url, MediaError>> {
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
