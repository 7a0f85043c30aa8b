//! Mediator app settings: the public address the app is served from (used in
//! enrolment links and as the only `Origin` state-changing API calls may come
//! from), and how long invites and device sessions last. Operator input,
//! checked at start-up.

use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;

use super::{ConfigError, invalid};

/// The longest an invite may stay redeemable: a day. An invite is a bearer
/// credential that makes its holder a recipient of tips.
const MAX_INVITE_TTL_SECS: u64 = 86_400;
/// The longest a session may live, idle or not: a week.
const MAX_SESSION_SECS: u64 = 7 * 86_400;

/// `[mediator]` as written (TOML and environment), before it is checked.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct RawMediatorSettings {
    pub public_base_url: String,
    pub invite_ttl_secs: u64,
    pub session_ttl_secs: u64,
    pub session_max_secs: u64,
    pub stream_heartbeat_secs: u64,
}

/// `[mediator]`, checked.
#[derive(Debug, Clone)]
pub struct MediatorSettings {
    pub public_base_url: PublicBaseUrl,
    /// How long an enrolment invite stays valid.
    pub invite_ttl: Duration,
    /// How long an unused session lives.
    pub session_ttl: Duration,
    /// The longest a session may last.
    pub session_max: Duration,
    /// How often a live alert stream sends a heartbeat.
    pub stream_heartbeat: Duration,
}

/// `mediator.public_base_url`, checked: an `https://` origin (plain `http://`
/// only on loopback) with no path, query, fragment or user name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicBaseUrl(Url);

impl PublicBaseUrl {
    pub fn parse(raw: &str) -> Result<Self, ConfigError> {
        const FIX: &str = "set the https:// address phones open the app at, e.g. https://tips.example.org (no path)";
        let url = Url::parse(raw.trim()).map_err(|_| {
            invalid(
                "mediator.public_base_url",
                format!("{raw:?} is not a URL"),
                FIX,
            )
        })?;
        let host = url.host_str().unwrap_or_default();
        let loopback = host == "localhost"
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        // Session cookies are `Secure` and `__Host-`: over plain http only a
        // browser on the gateway's own machine would keep them.
        let scheme_ok = url.scheme() == "https" || (url.scheme() == "http" && loopback);
        if !scheme_ok {
            return Err(invalid(
                "mediator.public_base_url",
                format!("{raw:?} is not an https:// URL"),
                FIX,
            ));
        }
        // `__Host-` cookies are for the whole origin (Path=/), and the app and
        // its API live at fixed paths: the base URL is an origin, nothing more.
        if url.host().is_none()
            || !url.username().is_empty()
            || url.password().is_some()
            || url.path() != "/"
            || url.query().is_some()
            || url.fragment().is_some()
        {
            return Err(invalid(
                "mediator.public_base_url",
                format!("{raw:?} has a path, query, fragment or user name"),
                FIX,
            ));
        }
        Ok(Self(url))
    }

    /// The base URL without a trailing `/`, as enrolment links start.
    pub fn as_str(&self) -> &str {
        self.0.as_str().trim_end_matches('/')
    }

    /// `scheme://host[:port]`: the only `Origin` state-changing API calls may
    /// come from.
    pub fn origin(&self) -> String {
        self.0.origin().ascii_serialization()
    }
}

impl RawMediatorSettings {
    /// Checks `[mediator]` and types it.
    pub(super) fn check(&self) -> Result<MediatorSettings, ConfigError> {
        let m = self;
        let public_base_url = PublicBaseUrl::parse(&m.public_base_url)?;
        if m.invite_ttl_secs == 0 || m.invite_ttl_secs > MAX_INVITE_TTL_SECS {
            return Err(invalid(
                "mediator.invite_ttl_secs",
                format!("{} is not between 1 second and a day", m.invite_ttl_secs),
                "set how long an enrolment invite stays valid, in seconds (default 900)",
            ));
        }
        if m.session_ttl_secs < 60 || m.session_ttl_secs > MAX_SESSION_SECS {
            return Err(invalid(
                "mediator.session_ttl_secs",
                format!(
                    "{} is not between 60 seconds and a week",
                    m.session_ttl_secs
                ),
                "set how long an unused session lives, in seconds (default 1800)",
            ));
        }
        if m.session_max_secs < m.session_ttl_secs || m.session_max_secs > MAX_SESSION_SECS {
            return Err(invalid(
                "mediator.session_max_secs",
                format!(
                    "{} is not between mediator.session_ttl_secs ({}) and a week",
                    m.session_max_secs, m.session_ttl_secs
                ),
                "set the longest a session may last, in seconds (default 43200, a night shift)",
            ));
        }
        // Proxies close connections idle for a minute or so; a revoked
        // device's stream must not outlive the revocation by long either.
        if m.stream_heartbeat_secs == 0 || m.stream_heartbeat_secs > 60 {
            return Err(invalid(
                "mediator.stream_heartbeat_secs",
                format!(
                    "{} is not between 1 and 60 seconds",
                    m.stream_heartbeat_secs
                ),
                "set how often a live alert stream sends a heartbeat, in seconds (default 15)",
            ));
        }
        Ok(MediatorSettings {
            public_base_url,
            invite_ttl: Duration::from_secs(m.invite_ttl_secs),
            session_ttl: Duration::from_secs(m.session_ttl_secs),
            session_max: Duration::from_secs(m.session_max_secs),
            stream_heartbeat: Duration::from_secs(m.stream_heartbeat_secs),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::RawSettings;
    use super::*;

    /// The shipped defaults as written.
    fn defaults() -> RawSettings {
        config::Config::builder()
            .add_source(config::File::from_str(
                super::super::DEFAULT_TOML,
                config::FileFormat::Toml,
            ))
            .build()
            .unwrap()
            .try_deserialize()
            .unwrap()
    }

    #[test]
    fn the_shipped_mediator_defaults_are_the_documented_ones() {
        let s = defaults().validate().unwrap();
        assert_eq!(s.mediator.invite_ttl, Duration::from_secs(900));
        assert_eq!(s.mediator.session_ttl, Duration::from_secs(1800));
        assert_eq!(
            s.mediator.public_base_url.origin(),
            "https://localhost:8443"
        );
        assert_eq!(
            s.mediator.public_base_url.as_str(),
            "https://localhost:8443"
        );
    }

    #[test]
    fn a_base_url_with_a_path_or_plain_http_to_a_public_host_is_refused() {
        for bad in [
            "tips.example.org",
            "http://tips.example.org",
            "https://tips.example.org/app",
            "https://tips.example.org/?x=1",
            "https://user@tips.example.org",
            "ftp://tips.example.org",
        ] {
            let mut s = defaults();
            s.mediator.public_base_url = bad.into();
            let msg = s.validate().unwrap_err().to_string();
            assert!(msg.starts_with("mediator.public_base_url:"), "{bad}: {msg}");
        }
        for good in [
            "https://tips.example.org",
            "https://tips.example.org/",
            "http://127.0.0.1:8080",
            "http://localhost:8080",
        ] {
            let mut s = defaults();
            s.mediator.public_base_url = good.into();
            s.validate().unwrap();
        }
    }

    #[test]
    fn zero_or_inverted_lifetimes_are_refused_with_the_setting_named() {
        let mut s = defaults();
        s.mediator.invite_ttl_secs = 0;
        let msg = s.validate().unwrap_err().to_string();
        assert!(msg.starts_with("mediator.invite_ttl_secs:"), "{msg}");
        let mut s = defaults();
        s.mediator.session_max_secs = s.mediator.session_ttl_secs - 1;
        let msg = s.validate().unwrap_err().to_string();
        assert!(msg.starts_with("mediator.session_max_secs:"), "{msg}");
    }

    #[test]
    fn the_stream_heartbeat_is_15_seconds_and_must_be_1_to_60() {
        assert_eq!(defaults().mediator.stream_heartbeat_secs, 15);
        for bad in [0, 61] {
            let mut s = defaults();
            s.mediator.stream_heartbeat_secs = bad;
            let msg = s.validate().unwrap_err().to_string();
            assert!(msg.starts_with("mediator.stream_heartbeat_secs:"), "{msg}");
        }
    }
}
