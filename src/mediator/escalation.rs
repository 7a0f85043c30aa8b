//! Escalation: when nobody claims an alert in time, stage 1 alerts the
//! supervisors and, if it is still unclaimed after a second delay, stage 2
//! alerts everyone on duty.
//!
//! Deadlines live in Redis, in the sorted set `<prefix>:escalations` (member
//! `<tip id>:<stage number>`, score the due time in unix milliseconds, always
//! a minute boundary: see [`EscalationPolicy::deadlines`]), so a
//! restarted worker, or any other replica's, fires them. The alert append
//! script (`bus::AlertProducer`) schedules a tip in the same Lua script as its
//! XADD, with [`ESCALATION_SCHEDULE_FN`] and [`EscalationPolicy::scheduled`], so a
//! crash or restart can neither lose nor double a tip's deadlines;
//! [`Escalations::schedule`] does the same for tools and tests. Scheduling
//! also writes the tip's zone and priority into the alert's state hash (see
//! [`super::claims`]), which is what the worker reports when a stage fires,
//! and which marks the tip as scheduled: scheduling the same tip again adds
//! nothing, even after a stage has already fired.
//!
//! [`EscalationWorker::step`] takes the due members in one Lua script that
//! removes each with `ZREM` before acting on it, so across any number of
//! workers and replicas each stage fires at most once; it fires only while the
//! alert is open (unclaimed, or released), and drops the stage otherwise. Each
//! fired stage is appended to the stream `<prefix>:escalation-events` (fields
//! `tip_id`, `zone`, `priority`, `stage`; coarse minute ids) by the same
//! script, so a crash after the script but before the caller acted still
//! leaves a durable record. The push worker consumes that stream through
//! its work queue (`bus::queue`: leased, fanned out and acknowledged in one
//! script, taken over when a crashed worker's lease ends), which makes
//! delivery at least once; [`Fired::event_id`] is the idempotency key. The list `step`
//! returns is for the caller's logs and metrics; a caller that pushes from it
//! directly must not also consume the stream, or devices hear twice.
//!
//! Untrusted: members, hashes and stream entries read back from Redis are
//! re-validated; a member tipwire did not write is removed and skipped.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use redis::{FromRedisValue, Value};

use crate::bus::scripts::{
    ESCALATION_FIRE, ESCALATION_SCHEDULE, ESCALATION_SCHEDULE_FN, TIMER_FNS,
};
use crate::bus::timing::{coarse_due, minute_ceil, minute_floor};
use crate::bus::{Store, StoreError, TimerSet, coarse_script};
use crate::config::EscalationSettings;
use crate::domain::{Priority, TipId, Zone, ZoneChoice};

/// Due members handled per step; a larger backlog drains over the next steps.
const BATCH: usize = 256;

/// Who an escalation stage alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    /// Stage 1: the supervisors.
    Supervisors,
    /// Stage 2: every mediator on duty.
    Everyone,
}

impl Stage {
    /// The stage number as written in members and events: `1` or `2`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Supervisors => "1",
            Self::Everyone => "2",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "1" => Some(Self::Supervisors),
            "2" => Some(Self::Everyone),
            _ => None,
        }
    }
}

/// The member of `<prefix>:escalations` for one stage of one tip.
pub(crate) fn member(tip_id: &TipId, stage: Stage) -> String {
    format!("{tip_id}:{}", stage.as_str())
}

fn parse_member(member: &str) -> Option<(TipId, Stage)> {
    let (tip, stage) = member.split_once(':')?;
    Some((TipId::parse(tip)?, Stage::parse(stage)?))
}

/// A zone as stored in plaintext routing fields (`unsure` or a zone id).
pub(crate) fn parse_zone(s: &str) -> Option<ZoneChoice> {
    if s == ZoneChoice::Unsure.as_str() {
        Some(ZoneChoice::Unsure)
    } else {
        Zone::parse(s).ok().map(ZoneChoice::Known)
    }
}

/// The delays per priority: arrival → stage 1, then stage 1 → stage 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EscalationPolicy {
    now: Option<(Duration, Duration)>,
    today: Option<(Duration, Duration)>,
    fyi: Option<(Duration, Duration)>,
}

impl Default for EscalationPolicy {
    /// The shipped defaults: `now` after 120 s then 120 s more, `today` after
    /// 900 s then 900 s more, `fyi` never.
    fn default() -> Self {
        let secs = Duration::from_secs;
        Self {
            now: Some((secs(120), secs(120))),
            today: Some((secs(900), secs(900))),
            fyi: None,
        }
    }
}

impl EscalationPolicy {
    /// From checked settings (`Settings::validate` ran at start-up).
    pub fn from_settings(settings: &EscalationSettings) -> Self {
        Self {
            now: settings.now.stages(),
            today: settings.today.stages(),
            fyi: settings.fyi.stages(),
        }
    }

    /// When each stage of a tip of `priority` that arrived at `now_ms` is due
    /// (unix milliseconds), in stage order; empty if it never escalates.
    ///
    /// Minute boundaries computed from the minute of arrival alone (see
    /// `bus::timing`): a score of arrival plus delay would keep the arrival
    /// to the millisecond in Redis and its AOF. A stage is never early; it is
    /// due less than a minute after its delay when the delays are whole
    /// minutes (the shipped ones are), less than two otherwise. Stage 2
    /// follows stage 1 by at least its own delay.
    pub fn deadlines(&self, priority: Priority, now_ms: u64) -> Vec<(Stage, u64)> {
        let delays = match priority {
            Priority::Now => self.now,
            Priority::Today => self.today,
            Priority::Fyi => self.fyi,
        };
        let Some((first, second)) = delays else {
            return Vec::new();
        };
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let supervisors = coarse_due(now_ms, ms(first));
        vec![
            (Stage::Supervisors, supervisors),
            (
                Stage::Everyone,
                minute_ceil(supervisors.saturating_add(ms(second))),
            ),
        ]
    }

    /// The `(score, member)` pairs of `<prefix>:escalations` for a tip of
    /// `priority` that arrived at `now_ms`: what [`Escalations::schedule`]
    /// adds, and what the alert append script adds in the same script as the
    /// tip's XADD.
    pub(crate) fn scheduled(
        &self,
        tip_id: &TipId,
        priority: Priority,
        now_ms: u64,
    ) -> Vec<(u64, String)> {
        self.deadlines(priority, now_ms)
            .into_iter()
            .map(|(stage, due)| (due, member(tip_id, stage)))
            .collect()
    }

    /// The deadlines of a tip whose claimant was offboarded at `now_ms`: its
    /// escalation starts again as if it had just arrived, except that stage
    /// 1 (the supervisors) is due at once, since the alert has already waited.
    pub(crate) fn resumed(
        &self,
        tip_id: &TipId,
        priority: Priority,
        now_ms: u64,
    ) -> Vec<(u64, String)> {
        let scheduled = self.scheduled(tip_id, priority, now_ms);
        let first = scheduled
            .first()
            .map_or(0, |(due, _)| due.saturating_sub(now_ms));
        scheduled
            .into_iter()
            .map(|(due, member)| (due.saturating_sub(first), member))
            .collect()
    }
}

/// The expiry (unix seconds) of an alert's state hash: the minute it arrived
/// plus the retention, like the stream entry itself. An absolute, coarse time:
/// a relative TTL would tell the arrival to the second.
pub(crate) fn state_expire_at(now_ms: u64, retention_secs: u64) -> u64 {
    let secs = now_ms / 1000;
    (secs - secs % 60).saturating_add(retention_secs)
}

/// A stage that fired: alert these devices about this tip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    pub tip_id: TipId,
    pub zone: ZoneChoice,
    pub priority: Priority,
    pub stage: Stage,
    /// The entry in `<prefix>:escalation-events` recording it.
    pub event_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum EscalationError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Schedules deadlines for new tips and reads the record of fired stages.
#[derive(Clone)]
pub struct Escalations {
    store: Store,
    policy: EscalationPolicy,
    retention_secs: u64,
    script: Arc<redis::Script>,
}

impl Escalations {
    /// `retention_secs`: how long the alert's state hash lives (the tip
    /// retention), as in [`super::AlertStates::new`].
    pub fn new(store: Store, policy: EscalationPolicy, retention_secs: u64) -> Self {
        Self {
            store,
            policy,
            retention_secs: retention_secs.max(1),
            script: Arc::new(redis::Script::new(&format!(
                "{TIMER_FNS}{ESCALATION_SCHEDULE_FN}{ESCALATION_SCHEDULE}"
            ))),
        }
    }

    /// Adds the tip's stages (none for a priority that never escalates) and
    /// returns how many were added: 0 when the tip was scheduled before.
    ///
    /// The intake does not call this: its append script schedules in the
    /// same script as the XADD (see [`ESCALATION_SCHEDULE_FN`]). This is for tools
    /// and tests that schedule a tip by hand, with the same encoding.
    pub async fn schedule(
        &self,
        tip_id: &TipId,
        priority: Priority,
        zone: &ZoneChoice,
        now_ms: u64,
    ) -> Result<usize, EscalationError> {
        let keys = self.store.keys();
        let mut invocation = self.script.key(keys.escalations());
        invocation
            .key(keys.alert_state(tip_id))
            .arg(state_expire_at(now_ms, self.retention_secs))
            .arg(zone.as_str())
            .arg(priority.as_str());
        for (due, member) in self.policy.scheduled(tip_id, priority, now_ms) {
            invocation.arg(due).arg(member);
        }
        let mut conn = self.store.conn().await?;
        let added: usize = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(StoreError::from)?;
        Ok(added)
    }

    /// Fired stages after stream id `after` (exclusive; `0-0` for all),
    /// oldest first, at most `count`.
    pub async fn events_after(
        &self,
        after: &str,
        count: usize,
    ) -> Result<Vec<Fired>, EscalationError> {
        let reply = self
            .store
            .range_after(&self.store.keys().escalation_events(), after, count)
            .await?;
        Ok(reply
            .ids
            .into_iter()
            .map(|s| parse_event(s.id, s.map))
            .collect::<Result<_, _>>()?)
    }
}

/// Fires due stages. One per replica is fine: they share the work safely.
pub struct EscalationWorker {
    store: Store,
    retention_secs: u64,
    script: redis::Script,
}

impl EscalationWorker {
    /// `retention_secs` bounds the escalation-events stream.
    pub fn new(store: Store, retention_secs: u64) -> Self {
        Self {
            store,
            retention_secs,
            script: coarse_script(&format!("{TIMER_FNS}{ESCALATION_FIRE}")),
        }
    }

    /// One round at `now_ms` (unix milliseconds): fires every due stage of an
    /// open alert, drops due stages of claimed, resolved or vanished alerts.
    /// Never sleeps.
    pub async fn step(&self, now_ms: u64) -> Result<Vec<Fired>, EscalationError> {
        let keys = self.store.keys();
        let deadlines = TimerSet::new(keys.escalations());
        let mut conn = self.store.conn().await?;
        let due = deadlines.due(&mut conn, now_ms, BATCH).await?;
        let (candidates, foreign): (Vec<_>, Vec<_>) = due
            .into_iter()
            .map(|m| (parse_member(&m), m))
            .partition(|(parsed, _)| parsed.is_some());
        if !foreign.is_empty() {
            // Not written by tipwire; left in place it would sit at the front
            // of every step forever.
            let foreign: Vec<String> = foreign.into_iter().map(|(_, m)| m).collect();
            tracing::warn!(
                count = foreign.len(),
                "removed escalation deadlines tipwire did not write"
            );
            deadlines.cancel(&mut conn, &foreign).await?;
        }
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let mut invocation = self.script.key(deadlines.key());
        invocation
            .key(keys.escalation_events())
            .arg(now_ms)
            .arg(minute_floor(now_ms))
            .arg(minute_floor(
                now_ms.saturating_sub(self.retention_secs.saturating_mul(1000)),
            ));
        for (parsed, m) in &candidates {
            if let Some((tip_id, _)) = parsed {
                invocation.key(keys.alert_state(tip_id)).arg(m);
            }
        }
        let fired: Vec<(String, String, String, String)> = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(StoreError::from)?;
        let mut out = Vec::with_capacity(fired.len());
        for (m, zone, priority, event_id) in fired {
            match fired_from(&m, &zone, &priority, event_id) {
                Some(f) => {
                    tracing::info!(
                        tip_id = %f.tip_id,
                        zone = f.zone.as_str(),
                        stage = f.stage.as_str(),
                        "escalation fired"
                    );
                    out.push(f);
                }
                // Recorded in the stream all the same; its consumer re-checks.
                None => tracing::warn!("an escalation fired for an alert with damaged state"),
            }
        }
        Ok(out)
    }
}

fn fired_from(member: &str, zone: &str, priority: &str, event_id: String) -> Option<Fired> {
    let (tip_id, stage) = parse_member(member)?;
    Some(Fired {
        tip_id,
        zone: parse_zone(zone)?,
        priority: Priority::parse(priority)?,
        stage,
        event_id,
    })
}

fn parse_event(id: String, mut map: HashMap<String, Value>) -> Result<Fired, StoreError> {
    let mut text = |name: &'static str| -> Result<String, StoreError> {
        map.remove(name)
            .and_then(|v| String::from_redis_value(&v).ok())
            .ok_or(StoreError::Corrupt(name))
    };
    let tip_id = TipId::parse(&text("tip_id")?).ok_or(StoreError::Corrupt("tip_id"))?;
    let zone = parse_zone(&text("zone")?).ok_or(StoreError::Corrupt("zone"))?;
    let priority = Priority::parse(&text("priority")?).ok_or(StoreError::Corrupt("priority"))?;
    let stage = Stage::parse(&text("stage")?).ok_or(StoreError::Corrupt("stage"))?;
    Ok(Fired {
        tip_id,
        zone,
        priority,
        stage,
        event_id: id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000_000;

    #[test]
    fn the_default_policy_escalates_urgent_tips_after_two_minutes_then_two_more() {
        // T0 is 20 s into its minute; stages fall on minute boundaries from
        // that minute alone, never early and less than a minute late.
        let minute = T0 - 20_000;
        let p = EscalationPolicy::default();
        assert_eq!(
            p.deadlines(Priority::Now, T0),
            vec![
                (Stage::Supervisors, minute + 180_000),
                (Stage::Everyone, minute + 300_000)
            ]
        );
        assert_eq!(
            p.deadlines(Priority::Now, minute + 59_999),
            p.deadlines(Priority::Now, minute)
        );
        assert_eq!(
            p.deadlines(Priority::Today, T0),
            vec![
                (Stage::Supervisors, minute + 960_000),
                (Stage::Everyone, minute + 1_860_000)
            ]
        );
        assert!(p.deadlines(Priority::Fyi, T0).is_empty());
    }

    #[test]
    fn an_offboarded_claimants_alert_escalates_to_supervisors_at_once_then_everyone() {
        let tip = TipId::random();
        let p = EscalationPolicy::default();
        assert_eq!(
            p.resumed(&tip, Priority::Today, T0),
            vec![(T0, format!("{tip}:1")), (T0 + 900_000, format!("{tip}:2"))]
        );
        assert!(p.resumed(&tip, Priority::Fyi, T0).is_empty());
    }

    #[test]
    fn scheduled_pairs_are_the_deadlines_with_the_members_the_worker_parses() {
        let tip = TipId::random();
        let p = EscalationPolicy::default();
        let pairs = p.scheduled(&tip, Priority::Now, T0);
        let minute = T0 - 20_000;
        assert_eq!(
            pairs,
            vec![
                (minute + 180_000, format!("{tip}:1")),
                (minute + 300_000, format!("{tip}:2"))
            ]
        );
        for (_, m) in &pairs {
            assert_eq!(parse_member(m).unwrap().0, tip);
        }
        assert!(p.scheduled(&tip, Priority::Fyi, T0).is_empty());
    }

    #[test]
    fn state_expires_at_the_arrival_minute_plus_the_retention() {
        // T0 is 20 s past the minute 1_699_999_980.
        assert_eq!(state_expire_at(T0, 3600), 1_699_999_980 + 3600);
        assert_eq!(state_expire_at(T0 + 39_999, 60), 1_699_999_980 + 60);
        assert_eq!(state_expire_at(T0 + 40_000, 60), 1_700_000_040 + 60);
    }

    #[test]
    fn the_policy_follows_the_shipped_settings() {
        let settings = crate::config::Settings::load(None).unwrap();
        assert_eq!(
            EscalationPolicy::from_settings(&settings.escalation),
            EscalationPolicy::default()
        );
    }

    #[test]
    fn members_round_trip_and_foreign_ones_are_refused() {
        let tip = TipId::random();
        for stage in [Stage::Supervisors, Stage::Everyone] {
            assert_eq!(
                parse_member(&member(&tip, stage)),
                Some((tip.clone(), stage))
            );
        }
        assert_eq!(parse_member("nonsense"), None);
        assert_eq!(parse_member(&format!("{tip}:3")), None);
        assert_eq!(parse_member(&format!("{tip}:1:1")), None);
        assert_eq!(parse_member("../x:1"), None);
    }

    #[test]
    fn a_fired_stage_with_damaged_fields_is_not_reported() {
        let tip = TipId::random();
        let m = member(&tip, Stage::Everyone);
        let ok = fired_from(&m, "unsure", "now", "1-0".into()).unwrap();
        assert_eq!(ok.zone, ZoneChoice::Unsure);
        assert_eq!(ok.stage, Stage::Everyone);
        assert!(fired_from(&m, "North Side", "now", "1-0".into()).is_none());
        assert!(fired_from(&m, "north", "urgent", "1-0".into()).is_none());
    }
}
