//! `[server]`: where the gateway listens, how it is reached (directly, behind
//! trusted proxies, or as an onion service), who may read `/metrics` and how
//! long a drain may take. Operator input, parsed once at start-up.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use super::{ConfigError, connections, invalid};

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ServerMode {
    Tls,
    Plaintext,
}

/// `[server]` as written (TOML and environment), before it is checked.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct RawServerSettings {
    pub(super) host: String,
    port: u16,
    mode: ServerMode,
    workers: usize,
    shutdown_timeout_secs: u64,
    max_body_bytes: usize,
    pub(super) trusted_proxies: Vec<String>,
    metrics_allow: Vec<String>,
    http2: bool,
    connections: connections::RawConnectionSettings,
    #[serde(default = "yes")]
    metrics_by_minute: bool,
}

fn yes() -> bool {
    true
}

/// `[server]`, typed.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub host: IpAddr,
    pub port: u16,
    pub mode: ServerMode,
    pub workers: usize,
    /// How long a drain may take before in-flight requests are cut off.
    pub shutdown_timeout: Duration,
    pub max_body_bytes: usize,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Who may read `/metrics` (empty: nobody).
    pub metrics_allow: Vec<IpNet>,
    /// Offer HTTP/2 over TLS (ALPN `h2`); see `config/default.toml`.
    pub http2: bool,
    pub connections: connections::ConnectionSettings,
    /// `/metrics` answers with the counters as they stood at the last whole
    /// minute (true), or live (false: tests, and operators who accept that
    /// a scraper then times each tip to its scrape interval).
    pub metrics_by_minute: bool,
}

impl RawServerSettings {
    /// Parses the addresses and the timeout of `[server]`.
    pub(super) fn check(&self) -> Result<ServerSettings, ConfigError> {
        let host = self.host.parse().map_err(|_| {
            invalid(
                "server.host",
                format!("{:?} is not an IP address", self.host),
                "use an address such as 127.0.0.1, 0.0.0.0 or ::",
            )
        })?;
        let trusted_proxies = parse_nets(&self.trusted_proxies)
            .map_err(|bad| bad_net("server.trusted_proxies", &bad))?;
        let metrics_allow =
            parse_nets(&self.metrics_allow).map_err(|bad| bad_net("server.metrics_allow", &bad))?;
        Ok(ServerSettings {
            host,
            port: self.port,
            mode: self.mode,
            workers: self.workers,
            shutdown_timeout: Duration::from_secs(self.shutdown_timeout_secs),
            max_body_bytes: self.max_body_bytes,
            trusted_proxies,
            metrics_allow,
            http2: self.http2,
            connections: self.connections.check()?,
            metrics_by_minute: self.metrics_by_minute,
        })
    }
}

impl ServerSettings {
    /// Plaintext mode without trusted proxies (an onion service): every
    /// visitor arrives from loopback, so loopback is no one client.
    pub fn loopback_is_everyone(&self) -> bool {
        self.mode == ServerMode::Plaintext && self.trusted_proxies.is_empty()
    }

    /// Checks how the typed `[server]` settings combine.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let host = self.host;
        if self.mode == ServerMode::Plaintext && !host.is_loopback() {
            return Err(invalid(
                "server.mode",
                format!("\"plaintext\" is refused on the non-loopback address {host}"),
                "set server.mode = \"tls\", or bind server.host to 127.0.0.1 or ::1 behind a TLS-terminating proxy or onion service",
            ));
        }
        // Behind a proxy or an onion service every request comes from the
        // proxy: letting that address read /metrics would let anyone poll the
        // tip counters and learn when each tip arrived.
        let proxied = |net: &IpNet| {
            self.trusted_proxies
                .iter()
                .any(|p| p.contains(&net.addr()) || net.contains(&p.addr()))
                || (self.mode == ServerMode::Plaintext && net.addr().is_loopback())
        };
        if let Some(net) = self.metrics_allow.iter().find(|n| proxied(n)) {
            return Err(invalid(
                "server.metrics_allow",
                format!(
                    "{net} is where proxied (or onion) requests come from, so everyone could read /metrics"
                ),
                "set server.metrics_allow to the scraper's own address, or [] to turn /metrics off",
            ));
        }
        if self.shutdown_timeout.is_zero() {
            return Err(invalid(
                "server.shutdown_timeout_secs",
                "is 0, which would cut in-flight tips off",
                "set it to a few seconds (default 30)",
            ));
        }
        Ok(())
    }
}

fn bad_net(setting: &'static str, bad: &str) -> ConfigError {
    invalid(
        setting,
        format!("{bad:?} is not an address or CIDR block"),
        "list addresses like \"127.0.0.1\" or blocks like \"10.0.0.0/8\"",
    )
}

fn parse_nets(items: &[String]) -> Result<Vec<IpNet>, String> {
    items
        .iter()
        .map(|s| {
            let s = s.trim();
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| s.to_owned())
        })
        .collect()
}
