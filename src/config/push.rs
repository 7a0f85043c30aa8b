//! Web Push settings (`[push]`): whether the delivery worker runs, the VAPID
//! subject, timeouts, retries, the message TTL and the delay of fallback
//! nudges. Operator input, checked at start-up.

use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;

use super::{ConfigError, invalid};

/// Longest a push service may hold a message: FCM and Mozilla cap TTL at 28 days.
const MAX_TTL_SECS: u32 = 28 * 86_400;
/// A delivery worker reclaims a job another worker left for a minute
/// (`push::worker`); one send must end well before that, or a slow send is
/// reclaimed mid-flight and the phone hears twice.
const MAX_TIMEOUT_SECS: u64 = 30;
const MAX_SUBJECT_LEN: usize = 256;

/// `push.subject` is not a `mailto:` address or an `https:` URL.
#[derive(Debug, thiserror::Error)]
#[error(
    "push.subject must be a mailto: address or an https: URL a push service can use to reach the operator (RFC 8292 §2.1)"
)]
pub struct InvalidVapidSubject;

/// The `sub` claim: how a push service reaches the operator (RFC 8292 §2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VapidSubject(String);

impl VapidSubject {
    /// Accepts `mailto:someone@example.org` or an `https:` URL.
    pub fn parse(raw: &str) -> Result<Self, InvalidVapidSubject> {
        let raw = raw.trim();
        let ok = raw.len() <= MAX_SUBJECT_LEN
            && raw
                .chars()
                .all(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\\' | '<' | '>'))
            && match (raw.strip_prefix("mailto:"), raw.strip_prefix("https://")) {
                (Some(address), _) => address
                    .split_once('@')
                    .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.')),
                (None, Some(_)) => Url::parse(raw).is_ok_and(|u| u.host_str().is_some()),
                (None, None) => false,
            };
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidVapidSubject)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Which endpoints are acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EndpointPolicy {
    /// `https` to a DNS name: every real push service.
    #[default]
    HttpsOnly,
    /// Also plain `http` (and `https`) to `127.0.0.1`, `[::1]` or `localhost`,
    /// for tests against a local push endpoint. Never in production: it lets a
    /// subscription send the gateway's requests to its own host.
    DangerousAllowLoopbackHttp,
}

/// `[push]` as written (TOML and environment), before it is checked.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct RawPushSettings {
    pub enabled: bool,
    pub subject: String,
    pub timeout_secs: u64,
    pub max_attempts: u32,
    pub backoff_base_ms: u64,
    pub poll_interval_ms: u64,
    pub ttl_secs: u32,
    pub nudge_after_secs: u64,
    pub dangerous_allow_loopback_http_endpoints: bool,
}

/// `[push]`, checked.
#[derive(Debug, Clone)]
pub struct PushSettings {
    /// Run the push delivery worker (and accept subscriptions).
    pub enabled: bool,
    /// The VAPID `sub` claim: `mailto:` address or `https:` URL of the
    /// operator. Always there while push is enabled.
    pub subject: Option<VapidSubject>,
    /// How long one request to a push service may take.
    pub timeout: Duration,
    /// Attempts per (alert, device) before the job is dead-lettered.
    pub max_attempts: u32,
    /// First retry delay; doubles with each attempt.
    pub backoff_base: Duration,
    /// How often the worker looks for work.
    pub poll_interval: Duration,
    /// Seconds a push service may hold a message for an offline phone; also
    /// how old an alert may be and still be pushed.
    pub ttl_secs: u32,
    /// How long after the push an urgent alert still unclaimed sends a
    /// content-free nudge (email/SMS) to mediators who opted in; `None`:
    /// never (`push.nudge_after_secs = 0`).
    pub nudge_delay: Option<Duration>,
    /// [`EndpointPolicy::DangerousAllowLoopbackHttp`] when
    /// `push.dangerous_allow_loopback_http_endpoints` is on: accept
    /// subscriptions whose endpoint is plain `http://` on loopback. For tests
    /// against a local push endpoint only: in production it lets a
    /// subscription point the gateway's requests at its own host.
    pub endpoint_policy: EndpointPolicy,
}

impl PushSettings {
    /// The VAPID subject, refused when push runs without one.
    pub fn vapid_subject(&self) -> Result<VapidSubject, ConfigError> {
        self.subject.clone().ok_or_else(|| subject_refused(""))
    }

    /// The nudge delay, or `None` when push or nudges are off.
    pub fn nudge_after(&self) -> Option<Duration> {
        self.nudge_delay.filter(|_| self.enabled)
    }
}

fn subject_refused(subject: &str) -> ConfigError {
    invalid(
        "push.subject",
        format!("{subject:?} is not a mailto: address or https: URL"),
        "set how a push service can reach the operator, e.g. \"mailto:ops@example.org\" (RFC 8292 §2.1)",
    )
}

impl RawPushSettings {
    /// Checks `[push]` (only while push is enabled, as the settings are
    /// unused otherwise) and types it.
    pub(super) fn check(&self) -> Result<PushSettings, ConfigError> {
        let p = self;
        let subject = VapidSubject::parse(&p.subject).ok();
        if p.enabled {
            if subject.is_none() {
                return Err(subject_refused(&p.subject));
            }
            if p.timeout_secs == 0 || p.timeout_secs > MAX_TIMEOUT_SECS {
                return Err(invalid(
                    "push.timeout_secs",
                    format!("{} is not between 1 and {MAX_TIMEOUT_SECS}", p.timeout_secs),
                    "set how long one request to a push service may take, in seconds (default 10)",
                ));
            }
            if p.max_attempts == 0 || p.backoff_base_ms == 0 || p.poll_interval_ms == 0 {
                return Err(invalid(
                    "push.max_attempts / push.backoff_base_ms / push.poll_interval_ms",
                    "is 0",
                    "set positive values (defaults 5, 2000 and 500)",
                ));
            }
            if p.ttl_secs < 60 || p.ttl_secs > MAX_TTL_SECS {
                return Err(invalid(
                    "push.ttl_secs",
                    format!("{} is not between 60 seconds and 28 days", p.ttl_secs),
                    "set how long a push service may hold an alert for an offline phone (default 3600)",
                ));
            }
            if p.nudge_after_secs > 86_400 {
                return Err(invalid(
                    "push.nudge_after_secs",
                    format!("{} is more than a day", p.nudge_after_secs),
                    "set the delay in seconds (default 180), or 0 to send no nudges",
                ));
            }
        }
        Ok(PushSettings {
            enabled: p.enabled,
            subject,
            timeout: Duration::from_secs(p.timeout_secs),
            max_attempts: p.max_attempts,
            backoff_base: Duration::from_millis(p.backoff_base_ms),
            poll_interval: Duration::from_millis(p.poll_interval_ms),
            ttl_secs: p.ttl_secs,
            nudge_delay: (p.nudge_after_secs > 0).then(|| Duration::from_secs(p.nudge_after_secs)),
            endpoint_policy: if p.dangerous_allow_loopback_http_endpoints {
                EndpointPolicy::DangerousAllowLoopbackHttp
            } else {
                EndpointPolicy::HttpsOnly
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{RawSettings, Settings};
    use super::*;

    /// The defaults as written, with push enabled.
    fn enabled() -> RawSettings {
        let mut s: RawSettings = config::Config::builder()
            .add_source(config::File::from_str(
                super::super::DEFAULT_TOML,
                config::FileFormat::Toml,
            ))
            .build()
            .unwrap()
            .try_deserialize()
            .unwrap();
        s.push.enabled = true;
        s.push.subject = "mailto:ops@cvi.example.org".into();
        s
    }

    #[test]
    fn push_is_off_by_default_and_the_defaults_are_valid_once_a_subject_is_set() {
        let s = Settings::load(None).unwrap();
        assert!(!s.push.enabled);
        assert!(!enabled().push.dangerous_allow_loopback_http_endpoints);
        assert_eq!(s.push.endpoint_policy, EndpointPolicy::HttpsOnly);
        assert_eq!(s.push.nudge_after(), None);
        let s = enabled().validate().unwrap();
        assert_eq!(s.push.nudge_after(), Some(Duration::from_secs(180)));
    }

    #[test]
    fn enabling_push_without_a_valid_subject_is_refused_with_the_setting_named() {
        let mut s = enabled();
        for bad in ["", "ops@example.org", "mailto:ops", "http://example.org"] {
            s.push.subject = bad.into();
            let msg = s.validate().unwrap_err().to_string();
            assert!(msg.starts_with("push.subject:"), "{msg}");
            assert!(msg.contains("Fix:"), "{msg}");
        }
    }

    #[test]
    fn out_of_range_numbers_are_refused() {
        type Tweak = fn(&mut RawPushSettings);
        let cases: [(&str, Tweak); 5] = [
            ("push.timeout_secs", |p| p.timeout_secs = 0),
            ("push.timeout_secs", |p| p.timeout_secs = 61),
            ("push.max_attempts", |p| p.max_attempts = 0),
            ("push.ttl_secs", |p| p.ttl_secs = 59),
            ("push.nudge_after_secs", |p| p.nudge_after_secs = 86_401),
        ];
        for (name, tweak) in cases {
            let mut s = enabled();
            tweak(&mut s.push);
            let msg = s.validate().unwrap_err().to_string();
            assert!(msg.starts_with(name), "{msg}");
        }
    }

    #[test]
    fn the_dangerous_flag_selects_the_loopback_policy() {
        let mut s = enabled();
        s.push.dangerous_allow_loopback_http_endpoints = true;
        assert_eq!(
            s.validate().unwrap().push.endpoint_policy,
            EndpointPolicy::DangerousAllowLoopbackHttp
        );
    }
}
