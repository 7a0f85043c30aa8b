//! Alert state: who claimed which alert, and how it ended.
//!
//! Each alert has a hash `<prefix>:alert-state:<tip id>` holding `state`
//! (`open`, `claimed` or `resolved`), `device` (the claimant), `outcome` (a
//! code from [`Outcome`]) and `version` (bumped by every change). Every
//! operation is one Lua script that reads the hash, decides, writes it and
//! appends the change to the stream `<prefix>:alert-events`, all atomically:
//! however many replicas race, exactly one claim on an open alert wins, and the
//! stream holds every change exactly once, in the order the changes happened
//! (stream ids are coarse, rounded to the minute, like the alert stream's).
//! Each event also carries the alert's zone, read from the hash (the intake's
//! append script writes zone and priority there with the tip), so live streams
//! filter changes by zone without a lookup.
//!
//! A missing hash means `open` at version 0. The caller passes only tip ids it
//! read from the alert stream; this module does not look them up (the HTTP
//! API finds them through `<prefix>:alert-index`). A made-up id therefore creates one hash,
//! and that hash, like every state hash, expires `retention_secs` after it was
//! first written: the expiry is set once and never extended, so state lives
//! about as long as the tip it describes and nothing accumulates. The event
//! stream is trimmed to the same retention by the scripts themselves.
//!
//! Untrusted: device ids and outcome codes come from mediator phones and are
//! parsed once ([`DeviceId::parse`], [`Outcome::parse`]); hashes and stream
//! entries read back are re-validated.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use redis::{FromRedisValue, Value};

use super::escalation::{parse_zone, state_expire_at};
use crate::bus::scripts::{
    CLAIM, CLAIM_PREAMBLE, CLAIM_REASSIGN, CLAIM_RELEASE, CLAIM_REOPEN, CLAIM_RESOLVE, TIMER_FNS,
};
use crate::bus::timing::minute_floor;
use crate::bus::{Store, StoreError, coarse_script};
use crate::domain::{TipId, ZoneChoice};

/// Identifies one mediator device: 1 to 64 ASCII letters, digits, `-` or `_`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceId(String);

impl DeviceId {
    pub fn parse(s: &str) -> Option<Self> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How an alert ended. A fixed vocabulary, not free text: the state hash and
/// the event stream are plaintext in Redis, and a free-text note would invite
/// names and details that belong only in the sealed tip or the team's records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A mediator stepped in and the conflict was calmed (`mediated`).
    Mediated,
    /// Handed to another program or service (`referred`).
    Referred,
    /// Looked into; there was no conflict to act on (`no-conflict`).
    NoConflict,
    /// The people involved could not be reached (`unreachable`).
    Unreachable,
    /// Another alert covers the same conflict (`duplicate`).
    Duplicate,
    /// None of the above (`other`).
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the outcome is not one of mediated, referred, no-conflict, unreachable, duplicate, other")]
pub struct UnknownOutcome;

impl Outcome {
    pub const ALL: [Self; 6] = [
        Self::Mediated,
        Self::Referred,
        Self::NoConflict,
        Self::Unreachable,
        Self::Duplicate,
        Self::Other,
    ];

    pub fn parse(s: &str) -> Result<Self, UnknownOutcome> {
        Self::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or(UnknownOutcome)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mediated => "mediated",
            Self::Referred => "referred",
            Self::NoConflict => "no-conflict",
            Self::Unreachable => "unreachable",
            Self::Duplicate => "duplicate",
            Self::Other => "other",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertState {
    Open,
    Claimed,
    Resolved,
}

impl AlertState {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(Self::Open),
            "claimed" => Some(Self::Claimed),
            "resolved" => Some(Self::Resolved),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Claimed => "claimed",
            Self::Resolved => "resolved",
        }
    }
}

/// An alert's state at one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertStatus {
    pub state: AlertState,
    /// The claimant (also kept once resolved); `None` while open.
    pub device: Option<DeviceId>,
    /// Set once resolved.
    pub outcome: Option<Outcome>,
    /// Bumped by every change; 0 for an alert nobody touched.
    pub version: u64,
}

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The device holds the claim (now, or already: claiming again is a no-op).
    Claimed { version: u64 },
    /// Another device holds it.
    AlreadyClaimed { by: DeviceId },
    /// The alert is closed.
    Resolved,
}

/// One entry of `<prefix>:alert-events`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertEvent {
    /// The stream id (coarse: the minute, then a sequence number).
    pub id: String,
    pub tip_id: TipId,
    pub status: AlertStatus,
    /// Who made the change: the claimant, or the supervisor who reassigned.
    pub by: DeviceId,
    /// The alert's zone, copied from its state hash (written with the tip),
    /// so live streams can filter changes by zone without a lookup. `None`
    /// for an alert the state hash knows no zone of.
    pub zone: Option<ZoneChoice>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("only a supervisor can reassign an alert")]
    NotSupervisor,
    #[error("the alert is not claimed")]
    NotClaimed,
    #[error("the alert is claimed by another device")]
    NotClaimant,
    #[error("the alert is already resolved")]
    AlreadyResolved,
    /// The acting device was revoked (or its person removed) after its
    /// request passed the session check.
    #[error("the device is no longer enrolled")]
    Unenrolled,
    /// The device an alert was being handed to is no longer enrolled.
    #[error("the device to hand the alert to is no longer enrolled")]
    AssigneeGone,
}

impl ClaimError {
    /// The stable code the HTTP edge answers with.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Store(_) => "store-unavailable",
            Self::NotSupervisor => "not-supervisor",
            Self::NotClaimed => "alert-not-claimed",
            Self::NotClaimant => "not-claimant",
            Self::AlreadyResolved => "alert-resolved",
            Self::Unenrolled => "session-expired",
            Self::AssigneeGone => "invalid-assignee",
        }
    }
}

struct Scripts {
    claim: redis::Script,
    reopen: redis::Script,
    release: redis::Script,
    resolve: redis::Script,
    reassign: redis::Script,
}

fn script(body: &str) -> redis::Script {
    coarse_script(&format!("{TIMER_FNS}{CLAIM_PREAMBLE}{body}"))
}

/// The alert state machine over Redis. Cheap to clone.
#[derive(Clone)]
pub struct AlertStates {
    store: Store,
    retention_secs: u64,
    scripts: Arc<Scripts>,
}

/// A script's answer: code, then the state after the call.
type Reply = (String, String, String, String, u64);
/// One state hash as `HMGET state device outcome version` answers.
type StateRow = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

impl AlertStates {
    /// `retention_secs`: how long state hashes and events are kept (the tip
    /// retention, `retention.days` in seconds).
    pub fn new(store: Store, retention_secs: u64) -> Self {
        Self {
            store,
            retention_secs: retention_secs.max(1),
            scripts: Arc::new(Scripts {
                claim: script(CLAIM),
                reopen: script(CLAIM_REOPEN),
                release: script(CLAIM_RELEASE),
                resolve: script(CLAIM_RESOLVE),
                reassign: script(CLAIM_REASSIGN),
            }),
        }
    }

    /// Claims the alert for `device`. One claimant ever wins; the same device
    /// claiming again gets `Claimed` with nothing changed.
    pub async fn claim(&self, tip_id: &TipId, device: &DeviceId) -> Result<Claim, ClaimError> {
        let (code, status) = self
            .run(&self.scripts.claim, tip_id, device, None, None)
            .await?;
        Ok(match code.as_str() {
            "unenrolled" => return Err(ClaimError::Unenrolled),
            "ok" | "same" => Claim::Claimed {
                version: status.version,
            },
            "resolved" => Claim::Resolved,
            _ => Claim::AlreadyClaimed {
                by: status
                    .device
                    .ok_or(StoreError::Corrupt("alert-state device"))?,
            },
        })
    }

    /// Gives the claim back (the alert is open again). Only the claimant can.
    pub async fn release(
        &self,
        tip_id: &TipId,
        device: &DeviceId,
    ) -> Result<AlertStatus, ClaimError> {
        let (code, status) = self
            .run(&self.scripts.release, tip_id, device, None, None)
            .await?;
        refusal(&code).map_or(Ok(status), Err)
    }

    /// Closes the alert with `outcome`. Only the claimant can; resolving again
    /// with the same outcome is a no-op, any other change is refused.
    pub async fn resolve(
        &self,
        tip_id: &TipId,
        device: &DeviceId,
        outcome: Outcome,
    ) -> Result<AlertStatus, ClaimError> {
        let (code, status) = self
            .run(
                &self.scripts.resolve,
                tip_id,
                device,
                Some(outcome.as_str()),
                None,
            )
            .await?;
        refusal(&code).map_or(Ok(status), Err)
    }

    /// Hands the alert to `to`, whether open or claimed by someone else.
    /// Supervisors only: `is_supervisor` comes from the caller's directory
    /// lookup of `supervisor`. A resolved alert stays resolved.
    pub async fn reassign(
        &self,
        tip_id: &TipId,
        supervisor: &DeviceId,
        is_supervisor: bool,
        to: &DeviceId,
    ) -> Result<AlertStatus, ClaimError> {
        if !is_supervisor {
            return Err(ClaimError::NotSupervisor);
        }
        let (code, status) = self
            .run(
                &self.scripts.reassign,
                tip_id,
                supervisor,
                Some(to.as_str()),
                Some(to),
            )
            .await?;
        refusal(&code).map_or(Ok(status), Err)
    }

    /// Hands back the claim of an offboarded `device`: if it still holds
    /// the alert, the alert is open again (a `state` event says so, `by`
    /// the device) and `resume` (`(due ms, member)` pairs of the
    /// escalation deadlines, see `EscalationPolicy::resumed`) is scheduled
    /// in the same script. `None` when the device no longer held it.
    pub async fn reopen(
        &self,
        tip_id: &TipId,
        device: &DeviceId,
        resume: &[(u64, String)],
    ) -> Result<Option<AlertStatus>, ClaimError> {
        let keys = self.store.keys();
        let now = crate::clock::now_ms();
        let mut invocation = self.scripts.reopen.key(keys.alert_state(tip_id));
        invocation
            .key(keys.alert_events())
            .key(keys.escalations())
            .arg(tip_id.as_str())
            .arg(now - now % 60_000)
            .arg(now.saturating_sub(self.retention_secs.saturating_mul(1000)))
            .arg(self.retention_secs)
            .arg(device.as_str());
        for (due, member) in resume {
            invocation.arg(*due).arg(member);
        }
        let mut conn = self.store.conn().await?;
        let (code, state, holder, outcome, version): Reply = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(StoreError::from)?;
        let status = status(&state, &holder, &outcome, version)?;
        Ok((code == "ok").then_some(status))
    }

    /// The alert's current state (`open` at version 0 if nobody touched it).
    pub async fn get(&self, tip_id: &TipId) -> Result<AlertStatus, ClaimError> {
        let mut all = self.get_many(std::slice::from_ref(tip_id)).await?;
        all.pop()
            .ok_or(ClaimError::Store(StoreError::Corrupt("alert-state")))
    }

    /// The current state of each alert, in order, in one round trip.
    pub async fn get_many(&self, tip_ids: &[TipId]) -> Result<Vec<AlertStatus>, ClaimError> {
        if tip_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for tip_id in tip_ids {
            pipe.cmd("HMGET")
                .arg(self.store.keys().alert_state(tip_id))
                .arg(&["state", "device", "outcome", "version"]);
        }
        let mut conn = self.store.conn().await?;
        let rows: Vec<StateRow> = pipe
            .query_async(&mut conn)
            .await
            .map_err(StoreError::from)?;
        rows.into_iter()
            .map(|(state, device, outcome, version)| {
                let version = match version {
                    None => 0,
                    Some(v) => v
                        .parse()
                        .map_err(|_| StoreError::Corrupt("alert-state version"))?,
                };
                Ok(status(
                    state.as_deref().unwrap_or("open"),
                    device.as_deref().unwrap_or_default(),
                    outcome.as_deref().unwrap_or_default(),
                    version,
                )?)
            })
            .collect()
    }

    /// Changes after stream id `after` (exclusive; `0-0` for all), oldest
    /// first, at most `count`. SSE readers resume from the last id they sent.
    pub async fn events_after(
        &self,
        after: &str,
        count: usize,
    ) -> Result<Vec<AlertEvent>, ClaimError> {
        let reply = self
            .store
            .range_after(&self.store.keys().alert_events(), after, count)
            .await?;
        Ok(reply
            .ids
            .into_iter()
            .map(|s| parse_event(s.id, s.map))
            .collect::<Result<_, _>>()?)
    }

    async fn run(
        &self,
        script: &redis::Script,
        tip_id: &TipId,
        device: &DeviceId,
        extra: Option<&str>,
        holder: Option<&DeviceId>,
    ) -> Result<(String, AlertStatus), ClaimError> {
        let keys = self.store.keys();
        let now = crate::clock::now_ms();
        let mut invocation = script.key(keys.alert_state(tip_id));
        invocation
            .key(keys.alert_events())
            .key(keys.device(device.as_str()))
            .key(keys.device(holder.unwrap_or(device).as_str()))
            .arg(tip_id.as_str())
            .arg(minute_floor(now))
            .arg(minute_floor(
                now.saturating_sub(self.retention_secs.saturating_mul(1000)),
            ))
            .arg(state_expire_at(now, self.retention_secs))
            .arg(device.as_str());
        if let Some(extra) = extra {
            invocation.arg(extra);
        }
        let mut conn = self.store.conn().await?;
        let (code, state, device, outcome, version): Reply = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(StoreError::from)?;
        Ok((code, status(&state, &device, &outcome, version)?))
    }
}

/// The refusal a script's code stands for, if any.
fn refusal(code: &str) -> Option<ClaimError> {
    match code {
        "ok" | "same" => None,
        "resolved" => Some(ClaimError::AlreadyResolved),
        "open" => Some(ClaimError::NotClaimed),
        "unenrolled" => Some(ClaimError::Unenrolled),
        "assignee-gone" => Some(ClaimError::AssigneeGone),
        _ => Some(ClaimError::NotClaimant),
    }
}

/// Re-validates fields read back from Redis.
fn status(
    state: &str,
    device: &str,
    outcome: &str,
    version: u64,
) -> Result<AlertStatus, StoreError> {
    let state = AlertState::parse(state).ok_or(StoreError::Corrupt("alert-state state"))?;
    let device = match device {
        "" => None,
        d => Some(DeviceId::parse(d).ok_or(StoreError::Corrupt("alert-state device"))?),
    };
    let outcome = match outcome {
        "" => None,
        o => Some(Outcome::parse(o).map_err(|_| StoreError::Corrupt("alert-state outcome"))?),
    };
    let consistent = match state {
        AlertState::Open => device.is_none() && outcome.is_none(),
        AlertState::Claimed => device.is_some() && outcome.is_none(),
        AlertState::Resolved => device.is_some() && outcome.is_some(),
    };
    if !consistent {
        return Err(StoreError::Corrupt("alert-state"));
    }
    Ok(AlertStatus {
        state,
        device,
        outcome,
        version,
    })
}

/// Parses one entry of `<prefix>:alert-events` read back from Redis (untrusted).
pub(crate) fn parse_event(
    id: String,
    mut map: HashMap<String, Value>,
) -> Result<AlertEvent, StoreError> {
    let mut text = |name: &'static str| -> Result<String, StoreError> {
        map.remove(name)
            .and_then(|v| String::from_redis_value(&v).ok())
            .ok_or(StoreError::Corrupt(name))
    };
    let tip_id = TipId::parse(&text("tip_id")?).ok_or(StoreError::Corrupt("tip_id"))?;
    let state = text("state")?;
    let device = text("device")?;
    let outcome = text("outcome")?;
    let version = text("version")?
        .parse()
        .map_err(|_| StoreError::Corrupt("version"))?;
    let by = DeviceId::parse(&text("by")?).ok_or(StoreError::Corrupt("by"))?;
    let zone = match text("zone").ok().as_deref() {
        None | Some("") => None,
        Some(z) => Some(parse_zone(z).ok_or(StoreError::Corrupt("zone"))?),
    };
    Ok(AlertEvent {
        id,
        tip_id,
        status: status(&state, &device, &outcome, version)?,
        by,
        zone,
    })
}

#[cfg(test)]
mod tests;
