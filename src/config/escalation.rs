//! Escalation settings: how long an unclaimed alert waits, per priority, before
//! the supervisors are alerted (stage 1) and then everyone on duty (stage 2),
//! and how often the worker looks for due deadlines. Operator input, checked
//! at start-up.

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, Settings, invalid};
use crate::domain::Priority;

/// The longest delay accepted for one stage: a week. Anything longer is almost
/// certainly a unit mistake (milliseconds typed as seconds).
const MAX_DELAY_SECS: u64 = 7 * 86_400;

/// `[escalation]` as written (TOML and environment).
#[derive(Debug, Clone, Deserialize)]
pub(super) struct RawEscalationSettings {
    poll_interval_ms: u64,
    now: RawEscalationDelays,
    today: RawEscalationDelays,
    fyi: RawEscalationDelays,
}

#[derive(Debug, Clone, Copy, Deserialize)]
struct RawEscalationDelays {
    enabled: bool,
    supervisors_after_secs: u64,
    everyone_after_secs: u64,
}

/// `[escalation]`, typed.
#[derive(Debug, Clone)]
pub struct EscalationSettings {
    /// How often each replica's worker looks for due stages.
    pub poll_interval: Duration,
    pub now: EscalationDelays,
    pub today: EscalationDelays,
    pub fyi: EscalationDelays,
}

/// The two stages of one priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EscalationDelays {
    /// Off: tips of this priority never escalate (the delays are ignored).
    pub enabled: bool,
    /// From the tip's arrival to stage 1 (supervisors).
    pub supervisors_after: Duration,
    /// From stage 1 to stage 2 (everyone on duty).
    pub everyone_after: Duration,
}

impl RawEscalationDelays {
    fn check(self) -> EscalationDelays {
        EscalationDelays {
            enabled: self.enabled,
            supervisors_after: Duration::from_secs(self.supervisors_after_secs),
            everyone_after: Duration::from_secs(self.everyone_after_secs),
        }
    }
}

impl RawEscalationSettings {
    /// Types `[escalation]`; [`Settings::validate`] checks the delays.
    pub(super) fn check(&self) -> EscalationSettings {
        EscalationSettings {
            poll_interval: Duration::from_millis(self.poll_interval_ms),
            now: self.now.check(),
            today: self.today.check(),
            fyi: self.fyi.check(),
        }
    }
}

impl EscalationDelays {
    /// The two delays (arrival → stage 1, stage 1 → stage 2), or `None` when off.
    pub fn stages(&self) -> Option<(Duration, Duration)> {
        self.enabled
            .then_some((self.supervisors_after, self.everyone_after))
    }
}

impl EscalationSettings {
    pub fn for_priority(&self, priority: Priority) -> &EscalationDelays {
        match priority {
            Priority::Now => &self.now,
            Priority::Today => &self.today,
            Priority::Fyi => &self.fyi,
        }
    }
}

impl Settings {
    pub(super) fn validate_escalation(&self) -> Result<(), ConfigError> {
        let esc = &self.escalation;
        if esc.poll_interval.is_zero() {
            return Err(invalid(
                "escalation.poll_interval_ms",
                "is 0",
                "set how often, in milliseconds, due escalations are looked for (default 1000)",
            ));
        }
        // Alert state lives as long as the tip (retention); a deadline after
        // that would find nothing to escalate and be dropped silently.
        let retention_secs = self.retention.period.as_secs();
        for (name, delays) in [
            ("escalation.now", &esc.now),
            ("escalation.today", &esc.today),
            ("escalation.fyi", &esc.fyi),
        ] {
            if !delays.enabled {
                continue;
            }
            for (what, secs) in [
                ("supervisors_after_secs", delays.supervisors_after.as_secs()),
                ("everyone_after_secs", delays.everyone_after.as_secs()),
            ] {
                if secs == 0 || secs > MAX_DELAY_SECS {
                    return Err(invalid(
                        name,
                        format!("{what} = {secs} is not between 1 second and 7 days"),
                        "give both delays in seconds (defaults: now 120 and 120, today 900 and 900), or set enabled = false",
                    ));
                }
            }
            let total = delays
                .supervisors_after
                .as_secs()
                .saturating_add(delays.everyone_after.as_secs());
            if total >= retention_secs {
                return Err(invalid(
                    name,
                    format!(
                        "the two delays add up to {total} seconds, past retention.days = {} when the alert is gone",
                        self.retention.days()
                    ),
                    "shorten the delays or keep tips longer",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Settings {
        config::Config::builder()
            .add_source(config::File::from_str(
                super::super::DEFAULT_TOML,
                config::FileFormat::Toml,
            ))
            .build()
            .unwrap()
            .try_deserialize::<super::super::RawSettings>()
            .unwrap()
            .validate()
            .unwrap()
    }

    #[test]
    fn the_shipped_delays_are_the_documented_ones() {
        let s = defaults();
        let secs = |p| {
            s.escalation
                .for_priority(p)
                .stages()
                .map(|(a, b)| (a.as_secs(), b.as_secs()))
        };
        assert_eq!(secs(Priority::Now), Some((120, 120)));
        assert_eq!(secs(Priority::Today), Some((900, 900)));
        assert_eq!(secs(Priority::Fyi), None);
        s.validate_escalation().unwrap();
    }

    #[test]
    fn a_zero_delay_on_an_enabled_priority_is_refused_with_the_setting_named() {
        let mut s = defaults();
        s.escalation.now.everyone_after = Duration::ZERO;
        let msg = s.validate().unwrap_err().to_string();
        assert!(msg.starts_with("escalation.now:"), "{msg}");
        assert!(msg.contains("everyone_after_secs"), "{msg}");
        // The same zero is fine where escalation is off.
        let mut s = defaults();
        s.escalation.fyi.supervisors_after = Duration::ZERO;
        s.validate().unwrap();
    }

    #[test]
    fn delays_past_the_retention_are_refused() {
        let mut s = defaults();
        s.retention.period = Duration::from_secs(86_400);
        s.sms.reply_address_days = 1;
        s.email.reply_address_days = 1;
        s.escalation.today.supervisors_after = Duration::from_secs(50_000);
        s.escalation.today.everyone_after = Duration::from_secs(50_000);
        let msg = s.validate().unwrap_err().to_string();
        assert!(msg.starts_with("escalation.today:"), "{msg}");
    }

    #[test]
    fn a_zero_poll_interval_is_refused() {
        let mut s = defaults();
        s.escalation.poll_interval = Duration::ZERO;
        let msg = s.validate().unwrap_err().to_string();
        assert!(msg.starts_with("escalation.poll_interval_ms:"), "{msg}");
    }
}
