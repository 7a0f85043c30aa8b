//! Typed settings: `config/default.toml` (compiled in), then an optional file
//! given with `--config`, then `TIPWIRE_` environment variables. All of it is
//! operator input, validated once by [`Settings::validate`] so the gateway
//! refuses to start with a message that names the setting and the fix.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::domain::Zone;

mod connections;
mod email;
mod escalation;
mod limits;
mod mediator;
mod push;
mod server;
mod sms;
pub use email::{EmailSettings, OutboundSettings, OutboundTls};
pub use escalation::{EscalationDelays, EscalationSettings};
use limits::QuotaSettings;
pub use limits::{ChannelLimits, CheckedQuota, EmailLimits, RateLimitSettings};
pub use mediator::{MediatorSettings, PublicBaseUrl};
pub use push::{EndpointPolicy, InvalidVapidSubject, PushSettings, VapidSubject};
pub use server::{ServerMode, ServerSettings};
pub use sms::{
    Acknowledgement, RelaySettings, SmsSettings, TelnyxPublicKey, TelnyxSettings, TwilioSettings,
};

/// The shipped defaults, documented line by line.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("could not read the configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("{setting}: {problem}. Fix: {fix}")]
    Invalid {
        setting: &'static str,
        problem: String,
        fix: &'static str,
    },
}

pub(crate) fn invalid(
    setting: &'static str,
    problem: impl Into<String>,
    fix: &'static str,
) -> ConfigError {
    ConfigError::Invalid {
        setting,
        problem: problem.into(),
        fix,
    }
}

/// The settings as written (TOML and environment); [`RawSettings::validate`]
/// checks them and types the sections that are parsed once, here.
#[derive(Debug, Clone, Deserialize)]
struct RawSettings {
    server: server::RawServerSettings,
    tls: RawTlsSettings,
    redis: RawRedisSettings,
    keys: KeySettings,
    retention: RawRetentionSettings,
    tips: TipSettings,
    log: LogSettings,
    rate_limits: limits::RawRateLimitSettings,
    zones: Vec<ZoneSettings>,
    sms: sms::RawSmsSettings,
    relay: sms::RawRelaySettings,
    email: email::RawEmailSettings,
    escalation: escalation::RawEscalationSettings,
    mediator: mediator::RawMediatorSettings,
    push: push::RawPushSettings,
}

impl RawSettings {
    /// Checks every setting and returns them typed.
    fn validate(&self) -> Result<Settings, ConfigError> {
        let zones = parse_zones(&self.zones)?;
        let settings = Settings {
            server: self.server.check()?,
            tls: TlsSettings {
                cert_path: self.tls.cert_path.clone(),
                key_path: self.tls.key_path.clone(),
                reload_interval: Duration::from_secs(self.tls.reload_interval_secs),
            },
            redis: RedisSettings {
                url: self.redis.url.clone(),
                key_prefix: self.redis.key_prefix.clone(),
                connect_timeout: Duration::from_millis(self.redis.connect_timeout_ms),
                response_timeout: Duration::from_millis(self.redis.response_timeout_ms),
                durability: self.redis.durability,
            },
            keys: self.keys.clone(),
            retention: RetentionSettings {
                period: Duration::from_secs(self.retention.days.saturating_mul(86_400)),
                sweep_interval: Duration::from_secs(self.retention.sweep_interval_secs),
            },
            tips: self.tips.clone(),
            log: self.log.clone(),
            rate_limits: self.rate_limits.check()?,
            zones: zones.clone(),
            sms: self.sms.check(&zones)?,
            relay: self.relay.check(),
            email: self.email.check()?,
            escalation: self.escalation.check(),
            mediator: self.mediator.check()?,
            push: self.push.check()?,
        };
        settings.validate()?;
        Ok(settings)
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub server: ServerSettings,
    pub tls: TlsSettings,
    pub redis: RedisSettings,
    pub keys: KeySettings,
    pub retention: RetentionSettings,
    pub tips: TipSettings,
    pub log: LogSettings,
    pub rate_limits: RateLimitSettings,
    /// `[[zones]]`: each zone's id and the name tipsters see.
    pub zones: Vec<(Zone, String)>,
    pub sms: SmsSettings,
    pub relay: RelaySettings,
    pub email: EmailSettings,
    pub escalation: EscalationSettings,
    pub mediator: MediatorSettings,
    pub push: PushSettings,
}

#[derive(Debug, Clone, Deserialize)]
struct RawTlsSettings {
    cert_path: PathBuf,
    key_path: PathBuf,
    reload_interval_secs: u64,
}

#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    /// How often to look for a renewed certificate.
    pub reload_interval: Duration,
}

#[derive(Debug, Clone, Deserialize)]
struct RawRedisSettings {
    url: String,
    key_prefix: String,
    connect_timeout_ms: u64,
    response_timeout_ms: u64,
    durability: Durability,
}

#[derive(Debug, Clone)]
pub struct RedisSettings {
    pub url: String,
    pub key_prefix: String,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    /// What Redis must promise before tips are acknowledged
    /// (`bus::durability` checks it).
    pub durability: Durability,
}

/// `redis.durability`: which ways of losing acknowledged tips the operator
/// accepts (none by default). An evicting Redis is refused in every mode.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Durability {
    /// `appendonly yes`, `appendfsync always`, checked with CONFIG GET.
    Strict,
    /// Also `appendfsync everysec` (a host crash loses up to a second).
    EverysecAccepted,
    /// CONFIG GET refused (managed Redis): the operator vouches.
    UnverifiedAccepted,
    /// No AOF at all: tests and throwaway set-ups.
    DangerousNoPersistence,
}

impl Durability {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Strict => "strict",
            Self::EverysecAccepted => "everysec-accepted",
            Self::UnverifiedAccepted => "unverified-accepted",
            Self::DangerousNoPersistence => "dangerous-no-persistence",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct KeySettings {
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
struct RawRetentionSettings {
    days: u64,
    sweep_interval_secs: u64,
}

#[derive(Debug, Clone)]
pub struct RetentionSettings {
    /// How long tips are kept (`retention.days`).
    pub period: Duration,
    /// How often old tips are trimmed.
    pub sweep_interval: Duration,
}

impl RetentionSettings {
    /// `retention.days`, as the operator wrote it.
    pub fn days(&self) -> u64 {
        self.period.as_secs() / 86_400
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct TipSettings {
    pub max_text_chars: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LogSettings {
    pub filter: String,
}

#[derive(Debug, Clone, Deserialize)]
struct ZoneSettings {
    pub id: String,
    pub name: String,
}

impl Settings {
    /// Loads defaults, then `file` if given, then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_sources(
            file.map(|path| config::File::from(path).required(true)),
            None,
        )
    }

    /// Loads defaults, then `file` if given, then the environment: the
    /// process's, or `env` (variable names to values) in its place, which is
    /// how a fuzz target hands it hostile values without touching the
    /// process's own.
    pub(crate) fn load_sources<F>(
        file: Option<F>,
        env: Option<config::Map<String, String>>,
    ) -> Result<Self, ConfigError>
    where
        F: config::Source + Send + Sync + 'static,
    {
        let mut builder = config::Config::builder().add_source(config::File::from_str(
            DEFAULT_TOML,
            config::FileFormat::Toml,
        ));
        if let Some(file) = file {
            builder = builder.add_source(file);
        }
        builder = builder.add_source(
            config::Environment::with_prefix("TIPWIRE")
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("server.trusted_proxies")
                .with_list_parse_key("server.metrics_allow")
                .with_list_parse_key("sms.numbers")
                .with_list_parse_key("sms.twilio.auth_token_files")
                .source(env),
        );
        let raw: RawSettings = builder.build()?.try_deserialize()?;
        raw.validate()
    }

    /// Checks every setting that can be checked without touching files or the
    /// network; files (keys, certificate) are checked where they are loaded.
    /// The typed sections (`sms`, `email`, `mediator`, `push`) were checked when they were made.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        if self.tips.max_text_chars == 0 {
            return Err(invalid(
                "tips.max_text_chars",
                "is 0",
                "set a positive number of characters (default 4000)",
            ));
        }
        let needed = self
            .tips
            .max_text_chars
            .saturating_mul(12)
            .saturating_add(1024);
        if self.server.max_body_bytes < needed {
            return Err(invalid(
                "server.max_body_bytes",
                format!(
                    "{} bytes cannot hold a tip of tips.max_text_chars = {} characters once percent-encoded (needs {needed})",
                    self.server.max_body_bytes, self.tips.max_text_chars
                ),
                "raise server.max_body_bytes or lower tips.max_text_chars",
            ));
        }
        if self.tls.reload_interval.is_zero() {
            return Err(invalid(
                "tls.reload_interval_secs",
                "is 0",
                "set how often, in seconds, to look for a renewed certificate (default 10)",
            ));
        }
        if redis::Client::open(self.redis.url.as_str()).is_err() {
            return Err(invalid(
                "redis.url",
                "is not a valid Redis URL",
                "use redis://HOST:PORT/DB or rediss://HOST:PORT/DB",
            ));
        }
        if self.redis.key_prefix.is_empty()
            || self.redis.key_prefix.len() > 64
            || self.redis.key_prefix.chars().any(|c| c.is_whitespace())
        {
            return Err(invalid(
                "redis.key_prefix",
                "must be 1 to 64 characters without spaces",
                "use the default \"tipwire\", or \"{tipwire}\" for Redis Cluster",
            ));
        }
        if self.redis.connect_timeout.is_zero() || self.redis.response_timeout.is_zero() {
            return Err(invalid(
                "redis.connect_timeout_ms / redis.response_timeout_ms",
                "is 0",
                "set a positive number of milliseconds (defaults 1000 and 2000)",
            ));
        }
        if self.retention.days() == 0 {
            return Err(invalid(
                "retention.days",
                "is 0, which would delete every tip at once",
                "set how many days tips are kept (default 30)",
            ));
        }
        // A reply address is the tipster's number or address: it must not
        // outlive the tips (opt-outs are kept just past it, see relay::threads).
        for (name, days) in [
            ("sms.reply_address_days", self.sms.reply_address_days),
            ("email.reply_address_days", self.email.reply_address_days),
        ] {
            if days > self.retention.days() {
                return Err(invalid(
                    name,
                    format!(
                        "is {days}, longer than retention.days = {}: a tipster's address would outlive their tips",
                        self.retention.days()
                    ),
                    "keep reply addresses at most retention.days (default 30 for both)",
                ));
            }
        }
        if self.retention.sweep_interval.is_zero() {
            return Err(invalid(
                "retention.sweep_interval_secs",
                "is 0",
                "set how often, in seconds, old tips are trimmed (default 300)",
            ));
        }
        self.validate_email()?;
        self.validate_escalation()?;
        self.validate_connections()?;
        if self.relay.max_attempts == 0
            || self.relay.backoff_base.is_zero()
            || self.relay.poll_interval.is_zero()
        {
            return Err(invalid(
                "relay.max_attempts / relay.backoff_base_ms / relay.poll_interval_ms",
                "is 0",
                "set positive values (defaults 5, 2000 and 500)",
            ));
        }
        Ok(())
    }
}

/// `[[zones]]`, parsed; duplicates and reserved ids are refused.
fn parse_zones(zones: &[ZoneSettings]) -> Result<Vec<(Zone, String)>, ConfigError> {
    if zones.is_empty() {
        return Err(invalid(
            "zones",
            "no zone is configured",
            "add at least one [[zones]] table with an id and a name",
        ));
    }
    let mut out: Vec<(Zone, String)> = Vec::with_capacity(zones.len());
    for z in zones {
        let zone = Zone::parse(&z.id).map_err(|_| {
            invalid(
                "zones.id",
                format!("{:?} is not a valid zone id", z.id),
                "use 1 to 32 lowercase letters, digits or dashes, not \"unsure\"",
            )
        })?;
        if z.name.trim().is_empty() || z.name.chars().count() > 80 {
            return Err(invalid(
                "zones.name",
                format!("zone {:?} needs a name of 1 to 80 characters", z.id),
                "give every [[zones]] table a short name tipsters recognise",
            ));
        }
        if out.iter().any(|(seen, _)| seen == &zone) {
            return Err(invalid(
                "zones.id",
                format!("{:?} is listed twice", z.id),
                "give each zone a distinct id",
            ));
        }
        out.push((zone, z.name.clone()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
