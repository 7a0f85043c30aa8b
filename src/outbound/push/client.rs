//! Sends one Web Push message (RFC 8030 §5) to one subscription: encrypts
//! the payload (`ece.rs`), signs the VAPID token (`crypto/vapid.rs`), POSTs it, and
//! sorts the push service's answer into delivered, gone (prune the
//! subscription), permanent (do not retry) or transient (retry later).
//!
//! Untrusted inputs: the subscription (parsed by `subscription.rs`, its
//! endpoint checked again here) and the push service's answer, of which only
//! the status and `Retry-After` are read; the body is never read or logged.
//! reqwest's errors name the URL, which identifies a device, so they are
//! reduced to a fixed cause and never kept.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderValue, RETRY_AFTER};

use crate::crypto::vapid::{VapidKey, VapidSubject};
use crate::outbound::push::ece::{self, EceError};
use crate::outbound::push::subscription::{EndpointPolicy, Subscription, endpoint_allowed};

/// A push service's `Retry-After` is honoured up to this long; a longer one is
/// cut down so a hostile or broken service cannot park a worker for days.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60 * 60);
const CONNECT_TIMEOUT_CAP: Duration = Duration::from_secs(10);

/// RFC 8030 §5.3: how urgently the phone should be woken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    VeryLow,
    Low,
    Normal,
    High,
}

impl Urgency {
    /// The `Urgency` header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::VeryLow => "very-low",
            Self::Low => "low",
            Self::Normal => "normal",
            Self::High => "high",
        }
    }
}

impl std::fmt::Display for Urgency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a send may succeed later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransientCause {
    /// 429, 408 or 5xx from the push service.
    Status(u16),
    Timeout,
    Network,
}

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// 404 or 410: the subscription expired or was revoked; delete it.
    #[error("the push service no longer knows this subscription (HTTP {status}); delete it")]
    Gone { status: u16 },
    /// Retrying the same request will fail the same way (400, 401, 403, 413…).
    /// A 403 after `keys rotate vapid` means the subscription was made for the
    /// old key: the phone must subscribe again.
    #[error("the push service refused the message (HTTP {status})")]
    Permanent { status: u16 },
    #[error("the push service could not take the message now ({cause:?}); retry later")]
    Transient {
        cause: TransientCause,
        /// From the service's `Retry-After`, at most [`MAX_RETRY_AFTER`].
        retry_after: Option<Duration>,
    },
    #[error("push payload of {len} bytes is over the {max}-byte limit")]
    PayloadTooLarge { len: usize, max: usize },
    #[error("push endpoint not allowed by this client's endpoint policy")]
    EndpointNotAllowed,
    #[error("push message could not be encrypted")]
    Encrypt,
    #[error("could not build the push HTTP client")]
    Setup,
}

impl PushError {
    /// A stable kebab-case code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Gone { .. } => "push-gone",
            Self::Permanent { .. } => "push-refused",
            Self::Transient { .. } => "push-unavailable",
            Self::PayloadTooLarge { .. } => "push-payload-too-large",
            Self::EndpointNotAllowed => "push-endpoint-not-allowed",
            Self::Encrypt => "push-encrypt-failed",
            Self::Setup => "push-client-setup",
        }
    }

    /// Whether the same message may go through if sent again later.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient { .. })
    }
}

impl From<EceError> for PushError {
    fn from(e: EceError) -> Self {
        match e {
            EceError::TooLarge { len, max } => Self::PayloadTooLarge { len, max },
            EceError::Encrypt => Self::Encrypt,
        }
    }
}

/// What the client needs besides the key; the caller maps configuration here.
pub struct PushClientConfig {
    /// The VAPID `sub` claim: how a push service reaches the operator.
    pub subject: VapidSubject,
    /// The whole request, connect to last byte of the answer's head.
    pub timeout: Duration,
    /// [`EndpointPolicy::HttpsOnly`] except in tests.
    pub endpoint_policy: EndpointPolicy,
}

pub struct PushClient {
    http: reqwest::Client,
    vapid: Arc<VapidKey>,
    subject: VapidSubject,
    policy: EndpointPolicy,
}

impl PushClient {
    pub fn new(vapid: Arc<VapidKey>, config: PushClientConfig) -> Result<Self, PushError> {
        // The endpoint's name comes from a browser: it is resolved through
        // the egress guard, so a name pointing at this host or its network
        // is never connected to. No redirect is followed (the guard's
        // client follows none): it would carry the VAPID token to another
        // origin, and no push service sends one.
        let http = crate::outbound::egress::client_builder(config.endpoint_policy.addresses())
            .connect_timeout(config.timeout.min(CONNECT_TIMEOUT_CAP))
            .timeout(config.timeout)
            .referer(false)
            .https_only(config.endpoint_policy == EndpointPolicy::HttpsOnly)
            .user_agent(concat!("tipwire/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|_| PushError::Setup)?;
        Ok(Self {
            http,
            vapid,
            subject: config.subject,
            policy: config.endpoint_policy,
        })
    }

    /// Encrypts `payload` for `subscription` and hands it to its push service.
    /// `payload` must hold no tip text: zone, urgency and alert id only.
    /// `ttl_secs` is how long the push service may hold the message for a
    /// phone that is offline (0: deliver now or drop).
    pub async fn send(
        &self,
        subscription: &Subscription,
        payload: &[u8],
        ttl_secs: u32,
        urgency: Urgency,
    ) -> Result<(), PushError> {
        let now = crate::clock::now_secs();
        let request = self.request(subscription, payload, ttl_secs, urgency, now)?;
        let response = self.http.execute(request).await.map_err(|e| {
            if crate::outbound::egress::refused(&e) {
                // The endpoint's name resolves only to addresses it may
                // not reach: a retry would be refused the same way.
                return PushError::EndpointNotAllowed;
            }
            PushError::Transient {
                cause: if e.is_timeout() {
                    TransientCause::Timeout
                } else {
                    TransientCause::Network
                },
                retry_after: None,
            }
        })?;
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let outcome = classify(response.status().as_u16(), retry_after);
        if let Err(e) = &outcome {
            tracing::debug!(
                endpoint = %subscription.endpoint_id(),
                code = e.code(),
                status = response.status().as_u16(),
                "push not delivered"
            );
        }
        outcome
    }

    /// The request `send` makes, without sending it.
    fn request(
        &self,
        subscription: &Subscription,
        payload: &[u8],
        ttl_secs: u32,
        urgency: Urgency,
        now_unix: u64,
    ) -> Result<reqwest::Request, PushError> {
        let endpoint = subscription.endpoint();
        // A subscription parsed under the test-only policy must not reach a
        // production client.
        if !endpoint_allowed(endpoint, self.policy) {
            return Err(PushError::EndpointNotAllowed);
        }
        let body = ece::encrypt(subscription.p256dh(), subscription.auth_secret(), payload)?;
        let authorization = self.vapid.authorization(endpoint, &self.subject, now_unix);
        let authorization =
            HeaderValue::from_str(&authorization).map_err(|_| PushError::Encrypt)?;
        self.http
            .post(endpoint.clone())
            .header(CONTENT_ENCODING, "aes128gcm")
            .header(CONTENT_TYPE, "application/octet-stream")
            .header("TTL", ttl_secs)
            .header("Urgency", urgency.as_str())
            .header(AUTHORIZATION, authorization)
            .body(body)
            .build()
            .map_err(|_| PushError::Setup)
    }
}

/// RFC 8030 §5 and the push services' documented answers.
fn classify(status: u16, retry_after: Option<Duration>) -> Result<(), PushError> {
    match status {
        200..=299 => Ok(()),
        404 | 410 => Err(PushError::Gone { status }),
        408 | 429 | 500..=599 => Err(PushError::Transient {
            cause: TransientCause::Status(status),
            retry_after,
        }),
        _ => Err(PushError::Permanent { status }),
    }
}

/// `Retry-After` as delta-seconds or an HTTP-date (RFC 9110 §10.2.3).
fn parse_retry_after(value: &HeaderValue, now: SystemTime) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    let wait = match text.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => httpdate::parse_http_date(text)
            .ok()?
            .duration_since(now)
            .unwrap_or(Duration::ZERO),
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    const SUB: &str = r#"{"endpoint":"https://updates.push.services.mozilla.com/wpush/v2/gAAAA","keys":{"p256dh":"BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4","auth":"BTBZMqHH6r4Tts7J_aSIgg"}}"#;

    fn client(policy: EndpointPolicy) -> PushClient {
        PushClient::new(
            Arc::new(VapidKey::generate()),
            PushClientConfig {
                subject: VapidSubject::parse("mailto:ops@cvi.example.org").unwrap(),
                timeout: Duration::from_secs(5),
                endpoint_policy: policy,
            },
        )
        .unwrap()
    }

    fn header<'a>(request: &'a reqwest::Request, name: &str) -> &'a str {
        request.headers().get(name).unwrap().to_str().unwrap()
    }

    #[test]
    fn urgency_header_values_are_the_four_of_rfc_8030() {
        let all = [
            Urgency::VeryLow,
            Urgency::Low,
            Urgency::Normal,
            Urgency::High,
        ];
        let names: Vec<_> = all.iter().map(|u| u.as_str()).collect();
        assert_eq!(names, ["very-low", "low", "normal", "high"]);
        assert_eq!(Urgency::High.to_string(), "high");
    }

    #[test]
    fn a_request_carries_the_web_push_headers_and_an_encrypted_body() {
        let client = client(EndpointPolicy::HttpsOnly);
        let sub = Subscription::parse(SUB, EndpointPolicy::HttpsOnly).unwrap();
        let payload = br#"{"alert":"0123456789abcdef0123456789abcdef","zone":"north"}"#;
        let request = client
            .request(&sub, payload, 3600, Urgency::High, 1_700_000_000)
            .unwrap();
        assert_eq!(request.method(), reqwest::Method::POST);
        assert_eq!(
            request.url().as_str(),
            "https://updates.push.services.mozilla.com/wpush/v2/gAAAA"
        );
        assert_eq!(header(&request, "content-encoding"), "aes128gcm");
        assert_eq!(header(&request, "content-type"), "application/octet-stream");
        assert_eq!(header(&request, "ttl"), "3600");
        assert_eq!(header(&request, "urgency"), "high");
        let auth = header(&request, "authorization");
        assert!(auth.starts_with("vapid t=ey"), "{auth}");
        assert!(auth.ends_with(&format!(", k={}", client.vapid.public_key_base64url())));

        let body = request.body().unwrap().as_bytes().unwrap();
        assert_eq!(body.len(), ece::HEADER_LEN + payload.len() + 1 + 16);
        assert!(!body.windows(5).any(|w| w == b"north"));

        let low = client.request(&sub, b"x", 0, Urgency::VeryLow, 0).unwrap();
        assert_eq!(header(&low, "ttl"), "0");
        assert_eq!(header(&low, "urgency"), "very-low");
    }

    #[test]
    fn a_production_client_refuses_a_loopback_subscription() {
        let raw = SUB.replace(
            "https://updates.push.services.mozilla.com",
            "http://127.0.0.1:9",
        );
        let sub = Subscription::parse(&raw, EndpointPolicy::DangerousAllowLoopbackHttp).unwrap();
        assert!(matches!(
            client(EndpointPolicy::HttpsOnly).request(&sub, b"x", 60, Urgency::Normal, 0),
            Err(PushError::EndpointNotAllowed)
        ));
        assert!(
            client(EndpointPolicy::DangerousAllowLoopbackHttp)
                .request(&sub, b"x", 60, Urgency::Normal, 0)
                .is_ok()
        );
    }

    #[test]
    fn an_oversized_payload_is_refused_before_anything_is_sent() {
        let sub = Subscription::parse(SUB, EndpointPolicy::HttpsOnly).unwrap();
        let err = client(EndpointPolicy::HttpsOnly)
            .request(&sub, &[0; 3994], 60, Urgency::Normal, 0)
            .unwrap_err();
        assert!(matches!(
            err,
            PushError::PayloadTooLarge {
                len: 3994,
                max: 3993
            }
        ));
        assert!(!err.is_transient());
    }

    #[test]
    fn answers_are_sorted_into_delivered_gone_permanent_and_transient() {
        for ok in [200, 201, 202] {
            assert!(classify(ok, None).is_ok());
        }
        for gone in [404, 410] {
            assert!(
                matches!(classify(gone, None), Err(PushError::Gone { status }) if status == gone)
            );
        }
        for refused in [400, 401, 403, 413, 301] {
            let err = classify(refused, None).unwrap_err();
            assert!(matches!(err, PushError::Permanent { .. }), "{refused}");
            assert!(!err.is_transient());
        }
        let wait = Some(Duration::from_secs(30));
        for later in [429, 500, 502, 503] {
            let err = classify(later, wait).unwrap_err();
            assert!(
                matches!(err, PushError::Transient { cause: TransientCause::Status(s), retry_after } if s == later && retry_after == wait),
                "{later}"
            );
            assert_eq!(err.code(), "push-unavailable");
        }
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_a_date_and_capped() {
        let now = UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        let parse = |s: &str| parse_retry_after(&HeaderValue::from_str(s).unwrap(), now);
        assert_eq!(parse("120"), Some(Duration::from_secs(120)));
        assert_eq!(parse("99999999"), Some(MAX_RETRY_AFTER));
        // 2015-10-21 07:28:00 GMT is `now`; one minute later:
        assert_eq!(
            parse("Wed, 21 Oct 2015 07:29:00 GMT"),
            Some(Duration::from_secs(60))
        );
        assert_eq!(parse("Wed, 21 Oct 2015 07:00:00 GMT"), Some(Duration::ZERO));
        assert_eq!(parse("soon"), None);
        assert_eq!(parse("-5"), None);
    }

    #[test]
    fn errors_never_name_the_endpoint() {
        let errors = [
            PushError::Gone { status: 410 },
            PushError::Permanent { status: 403 },
            PushError::Transient {
                cause: TransientCause::Network,
                retry_after: None,
            },
            PushError::EndpointNotAllowed,
        ];
        for e in errors {
            let text = format!("{e} {e:?}");
            assert!(!text.contains("http"), "{text}");
        }
    }
}
