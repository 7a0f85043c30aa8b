//! Email channel settings (the SMTP listener, the outbound relay) and their
//! checks. Operator input; the outbound password is read from a file that only
//! its owner may read.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, Settings, invalid};
use crate::domain::{EmailAddress, Priority};

/// Longest `email.outbound.timeout_secs`: well inside the reply relay's
/// one-minute lease.
const MAX_OUTBOUND_TIMEOUT_SECS: u64 = 30;

/// `[email]` as written (TOML and environment), before it is checked.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct RawEmailSettings {
    enabled: bool,
    addresses: Vec<String>,
    host: String,
    port: u16,
    hostname: String,
    starttls: bool,
    require_tls: bool,
    implicit_tls: bool,
    implicit_tls_port: u16,
    max_message_bytes: usize,
    max_recipients: usize,
    max_line_bytes: usize,
    max_commands: usize,
    max_connections: usize,
    max_connections_per_address: usize,
    max_connections_per_network: usize,
    max_buffered_bytes: usize,
    min_data_rate_bytes: u64,
    idle_timeout_secs: u64,
    session_timeout_secs: u64,
    max_text_chars: usize,
    max_attachments: usize,
    max_attachment_bytes: usize,
    redact: bool,
    default_priority: String,
    reply_address_days: u64,
    outbound: RawOutboundSettings,
}

/// `[email]`, typed. While email is disabled its listener settings are not
/// checked (as before typing): an address that does not parse is left out,
/// and an unreadable `host` or `default_priority` is kept as the shipped
/// default (`0.0.0.0`, `today`); nothing reads them then.
#[derive(Debug, Clone)]
pub struct EmailSettings {
    pub enabled: bool,
    /// The tip addresses; mail for anything else is refused with 550.
    pub addresses: Vec<EmailAddress>,
    pub host: IpAddr,
    pub port: u16,
    /// Name in the greeting and the EHLO answer.
    pub hostname: String,
    pub starttls: bool,
    pub require_tls: bool,
    pub implicit_tls: bool,
    pub implicit_tls_port: u16,
    pub max_message_bytes: usize,
    pub max_recipients: usize,
    pub max_line_bytes: usize,
    pub max_commands: usize,
    pub max_connections: usize,
    pub max_connections_per_address: usize,
    /// Connections at once from one network: an IPv4 /24 or an IPv6 /48.
    pub max_connections_per_network: usize,
    /// Bytes all sessions together may hold in message buffers.
    pub max_buffered_bytes: usize,
    /// Bytes per second a client must average once the grace period (the
    /// idle timeout) of waiting for it is used up.
    pub min_data_rate_bytes: u64,
    /// `email.idle_timeout_secs`.
    pub idle_timeout: Duration,
    /// `email.session_timeout_secs`.
    pub session_timeout: Duration,
    pub max_text_chars: usize,
    pub max_attachments: usize,
    pub max_attachment_bytes: usize,
    pub redact: bool,
    pub default_priority: Priority,
    pub reply_address_days: u64,
    pub outbound: OutboundSettings,
}

/// How the outbound connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutboundTls {
    /// Plain connection upgraded with STARTTLS, which is required (port 587/25).
    Starttls,
    /// TLS from the first byte (port 465).
    Implicit,
    /// No TLS: only to a relay on a loopback address.
    None,
}

/// `[email.outbound]` as written, before it is checked.
#[derive(Debug, Clone, Deserialize)]
struct RawOutboundSettings {
    enabled: bool,
    relay_host: String,
    relay_port: u16,
    tls: OutboundTls,
    ca_file: PathBuf,
    username: String,
    password_file: PathBuf,
    from_name: String,
    nudge_from: String,
    timeout_secs: u64,
}

/// `[email.outbound]`, typed.
#[derive(Debug, Clone)]
pub struct OutboundSettings {
    pub enabled: bool,
    pub relay_host: String,
    pub relay_port: u16,
    pub tls: OutboundTls,
    /// PEM file of extra trusted root certificates (a private relay's CA).
    pub ca_file: PathBuf,
    pub username: String,
    pub password_file: PathBuf,
    /// Display name on the From line of replies and nudges.
    pub from_name: String,
    /// The address nudges to mediators come from. Always there while
    /// outbound mail is enabled; `None` only when it is disabled and the
    /// setting does not parse (it is not checked then).
    pub nudge_from: Option<EmailAddress>,
    /// `email.outbound.timeout_secs`: how long one send may take.
    pub timeout: Duration,
}

impl RawEmailSettings {
    /// Types the section. The listener's values are checked only while email
    /// is enabled, the relay's only while outbound mail is; the checks that
    /// need no parsing run in [`Settings::validate`].
    pub(super) fn check(&self) -> Result<EmailSettings, ConfigError> {
        let e = self;
        if e.enabled && e.addresses.is_empty() {
            return Err(no_tip_address());
        }
        let mut addresses = Vec::with_capacity(e.addresses.len());
        for a in &e.addresses {
            match EmailAddress::parse(a) {
                Ok(address) => {
                    if e.enabled {
                        refuse_plus(a)?;
                    }
                    addresses.push(address);
                }
                Err(_) if !e.enabled => {}
                Err(_) => {
                    return Err(invalid(
                        "email.addresses",
                        format!("{a:?} is not an email address"),
                        "write plain addresses such as tips@example.org",
                    ));
                }
            }
        }
        let host = match (e.host.parse::<IpAddr>(), e.enabled) {
            (Ok(ip), _) => ip,
            (Err(_), false) => Ipv4Addr::UNSPECIFIED.into(),
            (Err(_), true) => {
                return Err(invalid(
                    "email.host",
                    format!("{:?} is not an IP address", e.host),
                    "use an address such as 0.0.0.0 (every interface) or 127.0.0.1",
                ));
            }
        };
        let default_priority = match (Priority::parse(&e.default_priority), e.enabled) {
            (Some(priority), _) => priority,
            (None, false) => Priority::Today,
            (None, true) => {
                return Err(invalid(
                    "email.default_priority",
                    format!("{:?} is not a priority", e.default_priority),
                    "use \"now\", \"today\" or \"fyi\"",
                ));
            }
        };
        Ok(EmailSettings {
            enabled: e.enabled,
            addresses,
            host,
            port: e.port,
            hostname: e.hostname.clone(),
            starttls: e.starttls,
            require_tls: e.require_tls,
            implicit_tls: e.implicit_tls,
            implicit_tls_port: e.implicit_tls_port,
            max_message_bytes: e.max_message_bytes,
            max_recipients: e.max_recipients,
            max_line_bytes: e.max_line_bytes,
            max_commands: e.max_commands,
            max_connections: e.max_connections,
            max_connections_per_address: e.max_connections_per_address,
            max_connections_per_network: e.max_connections_per_network,
            max_buffered_bytes: e.max_buffered_bytes,
            min_data_rate_bytes: e.min_data_rate_bytes,
            idle_timeout: Duration::from_secs(e.idle_timeout_secs),
            session_timeout: Duration::from_secs(e.session_timeout_secs),
            max_text_chars: e.max_text_chars,
            max_attachments: e.max_attachments,
            max_attachment_bytes: e.max_attachment_bytes,
            redact: e.redact,
            default_priority,
            reply_address_days: e.reply_address_days,
            outbound: e.outbound.check()?,
        })
    }
}

impl RawOutboundSettings {
    fn check(&self) -> Result<OutboundSettings, ConfigError> {
        let out = self;
        let nudge_from = match EmailAddress::parse(&out.nudge_from) {
            Ok(address) => Some(address),
            Err(_) if !out.enabled => None,
            Err(_) => return Err(nudge_from_refused(&out.nudge_from)),
        };
        Ok(OutboundSettings {
            enabled: out.enabled,
            relay_host: out.relay_host.clone(),
            relay_port: out.relay_port,
            tls: out.tls,
            ca_file: out.ca_file.clone(),
            username: out.username.clone(),
            password_file: out.password_file.clone(),
            from_name: out.from_name.clone(),
            nudge_from,
            timeout: Duration::from_secs(out.timeout_secs),
        })
    }
}

impl OutboundSettings {
    /// The address nudges come from, refused when it is missing (outbound
    /// mail disabled and the setting unreadable).
    pub fn nudge_from(&self) -> Result<EmailAddress, ConfigError> {
        self.nudge_from
            .clone()
            .ok_or_else(|| nudge_from_refused(""))
    }
}

/// `email.outbound.nudge_from` does not parse (`shown` is what was written).
fn nudge_from_refused(shown: &str) -> ConfigError {
    invalid(
        "email.outbound.nudge_from",
        format!("{shown:?} is not an email address"),
        "set the address mediator nudges come from, e.g. alerts@example.org",
    )
}

fn no_tip_address() -> ConfigError {
    invalid(
        "email.addresses",
        "is empty",
        "list the tip addresses this gateway receives mail for, e.g. [\"tips@example.org\"]",
    )
}

/// Replies come from `local+<thread token>@domain` and every `+tag` is read
/// as that address with a tag: a tip address with a `+` of its own would
/// refuse all its mail.
fn refuse_plus(address: &str) -> Result<(), ConfigError> {
    if address
        .rsplit_once('@')
        .is_some_and(|(local, _)| local.contains('+'))
    {
        return Err(invalid(
            "email.addresses",
            format!("{address:?} has a '+' in its local part"),
            "use an address without '+' (tips+<token>@ carries thread tokens), such as tips@example.org",
        ));
    }
    Ok(())
}

impl Settings {
    pub(super) fn validate_email(&self) -> Result<(), ConfigError> {
        let email = &self.email;
        if !email.enabled {
            return self.validate_outbound();
        }
        if email.addresses.is_empty() {
            return Err(no_tip_address());
        }
        for a in &email.addresses {
            refuse_plus(a.as_str())?;
        }
        if email.hostname.is_empty()
            || !email
                .hostname
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        {
            return Err(invalid(
                "email.hostname",
                format!("{:?} is not a host name", email.hostname),
                "use the name your MX record points at, e.g. mx.tips.example.org",
            ));
        }
        if (email.starttls || email.implicit_tls || email.require_tls)
            && self.server.mode != super::ServerMode::Tls
        {
            return Err(invalid(
                "email.starttls / email.implicit_tls",
                "need the gateway's certificate, but server.mode is not \"tls\"",
                "set server.mode = \"tls\" with tls.cert_path and tls.key_path, or turn SMTP TLS off",
            ));
        }
        if email.require_tls && !(email.starttls || email.implicit_tls) {
            return Err(invalid(
                "email.require_tls",
                "is on but neither STARTTLS nor implicit TLS is offered",
                "set email.starttls = true",
            ));
        }
        if email.max_line_bytes < 1000 {
            return Err(invalid(
                "email.max_line_bytes",
                format!(
                    "{} is below the 1,000 octets RFC 5321 requires",
                    email.max_line_bytes
                ),
                "set 1000 or more (default 8192)",
            ));
        }
        for (name, value) in [
            ("email.max_message_bytes", email.max_message_bytes as u64),
            ("email.max_recipients", email.max_recipients as u64),
            ("email.max_commands", email.max_commands as u64),
            ("email.max_connections", email.max_connections as u64),
            (
                "email.max_connections_per_address",
                email.max_connections_per_address as u64,
            ),
            (
                "email.max_connections_per_network",
                email.max_connections_per_network as u64,
            ),
            ("email.min_data_rate_bytes", email.min_data_rate_bytes),
            ("email.idle_timeout_secs", email.idle_timeout.as_secs()),
            (
                "email.session_timeout_secs",
                email.session_timeout.as_secs(),
            ),
            ("email.max_text_chars", email.max_text_chars as u64),
            (
                "email.max_attachment_bytes",
                email.max_attachment_bytes as u64,
            ),
            ("email.reply_address_days", email.reply_address_days),
        ] {
            if value == 0 {
                return Err(ConfigError::Invalid {
                    setting: name,
                    problem: "is 0".into(),
                    fix: "set a positive value (see config/default.toml for the defaults)",
                });
            }
        }
        if email.max_buffered_bytes < email.max_message_bytes {
            return Err(invalid(
                "email.max_buffered_bytes",
                format!(
                    "{} is below email.max_message_bytes ({}): no message could ever be received",
                    email.max_buffered_bytes, email.max_message_bytes
                ),
                "set it to a few times email.max_message_bytes (default 67108864)",
            ));
        }
        if email.max_buffered_bytes > u32::MAX as usize {
            return Err(invalid(
                "email.max_buffered_bytes",
                format!("{} is over 4 GiB", email.max_buffered_bytes),
                "set at most 4294967295 (default 67108864)",
            ));
        }
        self.validate_outbound()
    }

    fn validate_outbound(&self) -> Result<(), ConfigError> {
        let out = &self.email.outbound;
        if !out.enabled {
            return Ok(());
        }
        if out.relay_host.is_empty() || out.relay_port == 0 {
            return Err(invalid(
                "email.outbound.relay_host / relay_port",
                "is empty",
                "name the SMTP relay that sends the program's mail, e.g. smtp.example.org and 587",
            ));
        }
        if out.tls == OutboundTls::None
            && !out
                .relay_host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
            && out.relay_host != "localhost"
        {
            return Err(invalid(
                "email.outbound.tls",
                "is \"none\" for a relay that is not on this machine",
                "use \"starttls\" (port 587) or \"implicit\" (port 465); \"none\" is only for a relay on 127.0.0.1",
            ));
        }
        if out.nudge_from.is_none() {
            return Err(nudge_from_refused(""));
        }
        if out.from_name.contains(['\r', '\n', '"', '<', '>']) {
            return Err(invalid(
                "email.outbound.from_name",
                "holds a line break, quote or angle bracket",
                "use plain words, e.g. Community tip line",
            ));
        }
        if !out.username.is_empty() && out.password_file.as_os_str().is_empty() {
            return Err(invalid(
                "email.outbound.password_file",
                "is empty while a username is set",
                "point it at a file (mode 0600) holding the relay password",
            ));
        }
        // The reply relay leases a message for at least a minute from when
        // its send starts; a send (plus its QUIT) must end well within that,
        // or another replica takes it over and the tipster gets it twice.
        if out.timeout.is_zero() || out.timeout > Duration::from_secs(MAX_OUTBOUND_TIMEOUT_SECS) {
            return Err(invalid(
                "email.outbound.timeout_secs",
                format!(
                    "{} is not between 1 and {MAX_OUTBOUND_TIMEOUT_SECS}",
                    out.timeout.as_secs()
                ),
                "set how long a send may take, in seconds (default 30)",
            ));
        }
        Ok(())
    }
}
