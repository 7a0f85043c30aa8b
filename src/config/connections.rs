//! Connection limits of the HTTPS port (`[server.connections]`) and whether
//! HTTP/2 is offered (`server.http2`). Operator input, checked at start-up.
//! Why each limit exists: docs/architecture.md, "Connection limits and the
//! memory ceiling".

use std::time::Duration;

use serde::Deserialize;

use super::{CheckedQuota, ConfigError, QuotaSettings, Settings, check_quota, invalid};

/// Longer than any real handshake, even over a poor mobile link; an idle
/// connection holds its handshake slot no longer than this.
const MAX_HANDSHAKE_TIMEOUT_MS: u64 = 30_000;
/// A body of `server.max_body_bytes` arrives far sooner, even on a poor link.
const MAX_BODY_TIMEOUT_MS: u64 = 120_000;

#[derive(Debug, Clone, Deserialize)]
pub struct ConnectionSettings {
    /// Connections open at once, all clients together.
    pub max: usize,
    /// Connections open at once from one address (IPv6: one /64).
    pub max_per_address: usize,
    /// TLS handshakes in progress at once, all clients together.
    pub max_handshakes: usize,
    /// TLS handshakes in progress at once from one address.
    pub max_handshakes_per_address: usize,
    /// Milliseconds a TLS handshake may take, from accept to the end.
    pub tls_handshake_timeout_ms: u64,
    /// Milliseconds a request body may take to arrive, from its head.
    pub request_body_timeout_ms: u64,
    /// Requests from one address (IPv6: one /64), all routes together.
    pub requests_per_address: QuotaSettings,
}

impl ConnectionSettings {
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.tls_handshake_timeout_ms)
    }

    pub fn body_timeout(&self) -> Duration {
        Duration::from_millis(self.request_body_timeout_ms)
    }
}

impl Settings {
    /// The checked per-address request budget.
    pub fn request_budget(&self) -> Result<CheckedQuota, ConfigError> {
        check_quota(self.server.connections.requests_per_address).ok_or_else(|| {
            invalid(
                "server.connections.requests_per_address",
                "count and per_secs must both be positive",
                "for example { count = 600, per_secs = 60 }",
            )
        })
    }

    pub(super) fn validate_connections(&self) -> Result<(), ConfigError> {
        self.request_budget()?;
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
        if c.tls_handshake_timeout_ms == 0 || c.tls_handshake_timeout_ms > MAX_HANDSHAKE_TIMEOUT_MS
        {
            return Err(invalid(
                "server.connections.tls_handshake_timeout_ms",
                format!(
                    "{} is not between 1 and {MAX_HANDSHAKE_TIMEOUT_MS}",
                    c.tls_handshake_timeout_ms
                ),
                "set how long a TLS handshake may take, in milliseconds (default 5000)",
            ));
        }
        if c.request_body_timeout_ms == 0 || c.request_body_timeout_ms > MAX_BODY_TIMEOUT_MS {
            return Err(invalid(
                "server.connections.request_body_timeout_ms",
                format!(
                    "{} is not between 1 and {MAX_BODY_TIMEOUT_MS}",
                    c.request_body_timeout_ms
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
        assert_eq!(c.handshake_timeout(), Duration::from_secs(5));
        assert_eq!(c.body_timeout(), Duration::from_secs(10));
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
                c.tls_handshake_timeout_ms = 60_000
            }),
            ("server.connections.request_body_timeout_ms", |c| {
                c.request_body_timeout_ms = 0
            }),
            ("server.connections.request_body_timeout_ms", |c| {
                c.request_body_timeout_ms = 600_000
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
