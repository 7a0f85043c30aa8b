//! Connection limits of the HTTPS port (`[server.connections]`) and whether
//! HTTP/2 is offered (`server.http2`). Operator input, checked at start-up.
//! Why each limit exists: docs/architecture.md, "Connection limits and the
//! memory ceiling".

use std::time::Duration;

use serde::Deserialize;

use super::{CheckedQuota, ConfigError, QuotaSettings, Settings, invalid};

/// Longer than any real handshake, even over a poor mobile link; an idle
/// connection holds its handshake slot no longer than this.
const MAX_HANDSHAKE_TIMEOUT_MS: u64 = 30_000;
/// A body of `server.max_body_bytes` arrives far sooner, even on a poor link.
const MAX_BODY_TIMEOUT_MS: u64 = 120_000;

/// `[server.connections]` as written (TOML and environment).
#[derive(Debug, Clone, Deserialize)]
pub(super) struct RawConnectionSettings {
    max: usize,
    max_per_address: usize,
    max_handshakes: usize,
    max_handshakes_per_address: usize,
    tls_handshake_timeout_ms: u64,
    request_body_timeout_ms: u64,
    requests_per_address: QuotaSettings,
}

/// `[server.connections]`, typed.
#[derive(Debug, Clone)]
pub struct ConnectionSettings {
    /// Connections open at once, all clients together.
    pub max: usize,
    /// Connections open at once from one address (IPv6: one /64).
    pub max_per_address: usize,
    /// TLS handshakes in progress at once, all clients together.
    pub max_handshakes: usize,
    /// TLS handshakes in progress at once from one address.
    pub max_handshakes_per_address: usize,
    /// How long a TLS handshake may take, from accept to the end
    /// (`tls_handshake_timeout_ms`).
    pub handshake_timeout: Duration,
    /// How long a request body may take to arrive, from its head
    /// (`request_body_timeout_ms`).
    pub body_timeout: Duration,
    /// Requests from one address (IPv6: one /64), all routes together.
    pub requests_per_address: CheckedQuota,
}

impl RawConnectionSettings {
    /// Types `[server.connections]`; [`Settings::validate`] checks how the
    /// limits combine.
    pub(super) fn check(&self) -> Result<ConnectionSettings, ConfigError> {
        Ok(ConnectionSettings {
            max: self.max,
            max_per_address: self.max_per_address,
            max_handshakes: self.max_handshakes,
            max_handshakes_per_address: self.max_handshakes_per_address,
            handshake_timeout: Duration::from_millis(self.tls_handshake_timeout_ms),
            body_timeout: Duration::from_millis(self.request_body_timeout_ms),
            requests_per_address: self.requests_per_address.check(
                "server.connections.requests_per_address",
                "for example { count = 600, per_secs = 60 }",
            )?,
        })
    }
}

impl Settings {
    pub(super) fn validate_connections(&self) -> Result<(), ConfigError> {
        let c = &self.server.connections;
        if c.max == 0 || c.max_per_address == 0 || c.max_per_address > c.max {
            return Err(invalid(
                "server.connections.max / max_per_address",
                format!(
                    "{} and {} are not 1 <= max_per_address <= max",
                    c.max, c.max_per_address
                ),
                "set positive numbers, the per-address one the smaller (defaults 1024 and 64)",
            ));
        }
        if c.max_handshakes == 0
            || c.max_handshakes_per_address == 0
            || c.max_handshakes_per_address > c.max_handshakes
            || c.max_handshakes > c.max
        {
            return Err(invalid(
                "server.connections.max_handshakes / max_handshakes_per_address",
                format!(
                    "{} and {} are not 1 <= max_handshakes_per_address <= max_handshakes <= max",
                    c.max_handshakes, c.max_handshakes_per_address
                ),
                "set positive numbers (defaults 256 and 8)",
            ));
        }
        if c.handshake_timeout.is_zero()
            || c.handshake_timeout > Duration::from_millis(MAX_HANDSHAKE_TIMEOUT_MS)
        {
            return Err(invalid(
                "server.connections.tls_handshake_timeout_ms",
                format!(
                    "{} is not between 1 and {MAX_HANDSHAKE_TIMEOUT_MS}",
                    c.handshake_timeout.as_millis()
                ),
                "set how long a TLS handshake may take, in milliseconds (default 5000)",
            ));
        }
        if c.body_timeout.is_zero() || c.body_timeout > Duration::from_millis(MAX_BODY_TIMEOUT_MS) {
            return Err(invalid(
                "server.connections.request_body_timeout_ms",
                format!(
                    "{} is not between 1 and {MAX_BODY_TIMEOUT_MS}",
                    c.body_timeout.as_millis()
                ),
                "set how long a request body may take to arrive, in milliseconds (default 10000)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_keep_http2_off() {
        let s = Settings::load(None).unwrap();
        assert!(!s.server.http2);
        let c = &s.server.connections;
        assert_eq!((c.max, c.max_per_address), (1024, 64));
        assert_eq!((c.max_handshakes, c.max_handshakes_per_address), (256, 8));
        assert_eq!(c.handshake_timeout, Duration::from_secs(5));
        assert_eq!(c.body_timeout, Duration::from_secs(10));
    }

    #[test]
    fn limits_out_of_order_or_zero_are_refused_with_the_setting_named() {
        type Tweak = fn(&mut ConnectionSettings);
        let cases: [(&str, Tweak); 8] = [
            ("server.connections.max", |c| c.max = 0),
            ("server.connections.max", |c| c.max_per_address = 2000),
            ("server.connections.max_handshakes", |c| {
                c.max_handshakes = 0
            }),
            ("server.connections.max_handshakes", |c| {
                c.max_handshakes_per_address = 300
            }),
            ("server.connections.max_handshakes", |c| {
                c.max_handshakes = 2000
            }),
            ("server.connections.tls_handshake_timeout_ms", |c| {
                c.handshake_timeout = Duration::from_millis(60_000)
            }),
            ("server.connections.request_body_timeout_ms", |c| {
                c.body_timeout = Duration::ZERO
            }),
            ("server.connections.request_body_timeout_ms", |c| {
                c.body_timeout = Duration::from_millis(600_000)
            }),
        ];
        for (name, tweak) in cases {
            let mut s = Settings::load(None).unwrap();
            tweak(&mut s.server.connections);
            let msg = s.validate().unwrap_err().to_string();
            assert!(msg.starts_with(name), "{msg}");
            assert!(msg.contains("Fix:"), "{msg}");
        }
    }
}
