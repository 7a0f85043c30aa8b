//! `[rate_limits]`: how many tips, enrolments and messages each client, each
//! address and each channel may send over a period. Operator input, checked
//! once at start-up into [`CheckedQuota`]s.

use std::num::NonZeroU32;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, invalid};

/// A quota as written: a count over a number of seconds.
#[derive(Debug, Clone, Copy, Deserialize)]
pub(super) struct QuotaSettings {
    pub count: u32,
    pub per_secs: u64,
}

/// A quota checked at start-up: a positive count over a positive period.
#[derive(Debug, Clone, Copy)]
pub struct CheckedQuota {
    pub count: NonZeroU32,
    pub period: Duration,
}

#[cfg(test)]
impl CheckedQuota {
    /// `count` per `secs` seconds, for tests (a zero count panics).
    pub(crate) fn per(count: u32, secs: u64) -> Self {
        Self {
            count: NonZeroU32::new(count).unwrap(),
            period: Duration::from_secs(secs),
        }
    }
}

impl QuotaSettings {
    /// The quota, or the refusal that names `setting`.
    pub(super) fn check(
        self,
        setting: &'static str,
        example: &'static str,
    ) -> Result<CheckedQuota, ConfigError> {
        let count = NonZeroU32::new(self.count);
        match count {
            Some(count) if self.per_secs > 0 => Ok(CheckedQuota {
                count,
                period: Duration::from_secs(self.per_secs),
            }),
            _ => Err(invalid(
                setting,
                "count and per_secs must both be positive",
                example,
            )),
        }
    }
}

const PER_CLIENT_EXAMPLE: &str = "for example { count = 10, per_secs = 3600 }";
const GLOBAL_EXAMPLE: &str = "for example { count = 600, per_secs = 60 }";

/// `[rate_limits]` as written (TOML and environment), before it is checked.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct RawRateLimitSettings {
    web: RawChannelLimits,
    enrolment: RawChannelLimits,
    sms: RawChannelLimits,
    email: RawEmailLimits,
}

#[derive(Debug, Clone, Deserialize)]
struct RawChannelLimits {
    per_client: QuotaSettings,
    global: QuotaSettings,
}

#[derive(Debug, Clone, Deserialize)]
struct RawEmailLimits {
    per_client: QuotaSettings,
    per_address: QuotaSettings,
    global: QuotaSettings,
}

/// `[rate_limits]`, checked.
#[derive(Debug, Clone)]
pub struct RateLimitSettings {
    pub web: ChannelLimits,
    /// Device enrolments (`POST /api/v1/devices`): per client address for
    /// every attempt, in all only for a valid invite (for every attempt
    /// behind an onion service).
    pub enrolment: ChannelLimits,
    pub sms: ChannelLimits,
    pub email: EmailLimits,
}

/// A channel's two quotas: per client (address or sender) and in all.
#[derive(Debug, Clone, Copy)]
pub struct ChannelLimits {
    pub per_client: CheckedQuota,
    pub global: CheckedQuota,
}

/// Per sender (pseudonym), per connecting address, and for the channel.
#[derive(Debug, Clone, Copy)]
pub struct EmailLimits {
    pub per_client: CheckedQuota,
    pub per_address: CheckedQuota,
    pub global: CheckedQuota,
}

impl RawChannelLimits {
    fn check(
        &self,
        per_client: &'static str,
        global: &'static str,
    ) -> Result<ChannelLimits, ConfigError> {
        Ok(ChannelLimits {
            per_client: self.per_client.check(per_client, PER_CLIENT_EXAMPLE)?,
            global: self.global.check(global, GLOBAL_EXAMPLE)?,
        })
    }
}

impl RawRateLimitSettings {
    /// Checks every quota of `[rate_limits]`.
    pub(super) fn check(&self) -> Result<RateLimitSettings, ConfigError> {
        let e = &self.email;
        Ok(RateLimitSettings {
            web: self
                .web
                .check("rate_limits.web.per_client", "rate_limits.web.global")?,
            enrolment: self.enrolment.check(
                "rate_limits.enrolment.per_client",
                "rate_limits.enrolment.global",
            )?,
            sms: self
                .sms
                .check("rate_limits.sms.per_client", "rate_limits.sms.global")?,
            email: EmailLimits {
                per_client: e
                    .per_client
                    .check("rate_limits.email.per_client", PER_CLIENT_EXAMPLE)?,
                per_address: e
                    .per_address
                    .check("rate_limits.email.per_address", PER_CLIENT_EXAMPLE)?,
                global: e
                    .global
                    .check("rate_limits.email.global", PER_CLIENT_EXAMPLE)?,
            },
        })
    }
}
