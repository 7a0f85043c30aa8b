//! Web Push settings (`[push]`): whether the delivery worker runs, the VAPID
//! subject, timeouts, retries, the message TTL and the delay of fallback
//! nudges. Operator input, checked at start-up.

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, Settings, invalid};
use crate::crypto::VapidSubject;
use crate::outbound::push::EndpointPolicy;

/// Longest a push service may hold a message: FCM and Mozilla cap TTL at 28 days.
const MAX_TTL_SECS: u32 = 28 * 86_400;
/// A delivery worker reclaims a job another worker left for a minute
/// (`push::worker`); one send must end well before that, or a slow send is
/// reclaimed mid-flight and the phone hears twice.
const MAX_TIMEOUT_SECS: u64 = 30;

#[derive(Debug, Clone, Deserialize)]
pub struct PushSettings {
    /// Run the push delivery worker (and accept subscriptions).
    pub enabled: bool,
    /// The VAPID `sub` claim: `mailto:` address or `https:` URL of the operator.
    pub subject: String,
    /// Seconds one request to a push service may take.
    pub timeout_secs: u64,
    /// Attempts per (alert, device) before the job is dead-lettered.
    pub max_attempts: u32,
    /// First retry delay in milliseconds; doubles with each attempt.
    pub backoff_base_ms: u64,
    /// How often, in milliseconds, the worker looks for work.
    pub poll_interval_ms: u64,
    /// Seconds a push service may hold a message for an offline phone; also
    /// how old an alert may be and still be pushed.
    pub ttl_secs: u32,
    /// Seconds after the push an urgent alert still unclaimed sends a
    /// content-free nudge (email/SMS) to mediators who opted in; 0: never.
    pub nudge_after_secs: u64,
    /// Accept subscriptions whose endpoint is plain `http://` on loopback.
    /// For tests against a local push endpoint only: in production it lets a
    /// subscription point the gateway's requests at its own host.
    pub dangerous_allow_loopback_http_endpoints: bool,
}

impl PushSettings {
    /// The checked VAPID subject.
    pub fn vapid_subject(&self) -> Result<VapidSubject, ConfigError> {
        VapidSubject::parse(&self.subject).map_err(|_| {
            invalid(
                "push.subject",
                format!(
                    "{:?} is not a mailto: address or https: URL",
                    self.subject
                ),
                "set how a push service can reach the operator, e.g. \"mailto:ops@example.org\" (RFC 8292 §2.1)",
            )
        })
    }

    pub fn endpoint_policy(&self) -> EndpointPolicy {
        if self.dangerous_allow_loopback_http_endpoints {
            EndpointPolicy::DangerousAllowLoopbackHttp
        } else {
            EndpointPolicy::HttpsOnly
        }
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    /// The nudge delay, or `None` when nudges are off.
    pub fn nudge_after(&self) -> Option<Duration> {
        (self.enabled && self.nudge_after_secs > 0)
            .then(|| Duration::from_secs(self.nudge_after_secs))
    }
}

impl Settings {
    pub(super) fn validate_push(&self) -> Result<(), ConfigError> {
        let p = &self.push;
        if !p.enabled {
            return Ok(());
        }
        p.vapid_subject()?;
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
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enabled() -> Settings {
        let mut s = Settings::load(None).unwrap();
        s.push.enabled = true;
        s.push.subject = "mailto:ops@cvi.example.org".into();
        s
    }

    #[test]
    fn push_is_off_by_default_and_the_defaults_are_valid_once_a_subject_is_set() {
        let s = Settings::load(None).unwrap();
        assert!(!s.push.enabled);
        assert!(!s.push.dangerous_allow_loopback_http_endpoints);
        assert_eq!(s.push.endpoint_policy(), EndpointPolicy::HttpsOnly);
        assert_eq!(s.push.nudge_after(), None);
        let s = enabled();
        s.validate().unwrap();
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
        type Tweak = fn(&mut PushSettings);
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
            s.push.endpoint_policy(),
            EndpointPolicy::DangerousAllowLoopbackHttp
        );
    }
}
