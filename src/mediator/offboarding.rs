//! Offboarding: the one path that ends everything a person, or one device,
//! has. `tipwire mediator remove` ends a person, `tipwire mediator revoke` one
//! device; both come here.
//!
//! A person is a name in the directory: every directory entry and every
//! enrolled device with that name (each enrolment from an invite makes an
//! entry and a device under the invite's name; `mediator add` makes an entry
//! alone). Removing a person, in this order:
//!
//! 1. deletes their pending invites, so no phone of theirs enrols meanwhile;
//! 2. revokes each of their devices ([`Devices::revoke`]): recipient status
//!    (the directory version moves, so the routing cache of every replica is
//!    refreshed before the next tip is sealed), the device record, every
//!    session, the push subscription and nudge contacts, and a notice that
//!    ends the device's open alert streams on every replica at once;
//! 3. removes their remaining directory entries (recipients without a device);
//! 4. repeats 1–3 until nothing of the name is left (an enrolment that had
//!    redeemed its invite before step 1 finishes after it), at most
//!    [`PASSES`] times;
//! 5. hands every alert one of their devices had claimed back: open again,
//!    with escalation starting over (stage 1 at once, see
//!    `EscalationPolicy::resumed`), so no alert stays silenced by someone who
//!    has gone.
//!
//! Every step can run again: after a failure half-way, run the command again.
//! Once nothing of the person is left, `remove` finds nobody; `revoke` on a
//! device id still hands back any claim that device holds.
//! Two people must not share a name in the directory: removing one would
//! remove both (`mediator list` groups by name, so it shows).
//!
//! Untrusted: nothing from the network; records read back from Redis are
//! parsed again by the modules that own them.

use std::collections::BTreeSet;

use super::devices::{DeviceError, Devices, cancel_named};
use super::{
    AlertStates, ClaimError, DeviceId, DirectoryError, EscalationPolicy, MediatorDirectory,
};
use crate::bus::names::ALERT_STATE;
use crate::bus::{Store, StoreError};
use crate::config::Settings;
use crate::domain::{Priority, TipId};

/// Rounds of steps 1–3 at most.
pub const PASSES: usize = 3;
/// Alert state hashes read per round trip while looking for claims.
const CLAIM_SCAN_BATCH: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum OffboardError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "no enrolled device or directory entry has the id {0:?}; `tipwire mediator list` shows them"
    )]
    NotFound(String),
    #[error("a record in redis is damaged: {0}")]
    Damaged(String),
}

impl From<DeviceError> for OffboardError {
    fn from(e: DeviceError) -> Self {
        match e {
            DeviceError::Store(s) => Self::Store(s),
            other => Self::Damaged(other.to_string()),
        }
    }
}

impl From<DirectoryError> for OffboardError {
    fn from(e: DirectoryError) -> Self {
        match e {
            DirectoryError::Store(s) => Self::Store(s),
            other => Self::Damaged(other.to_string()),
        }
    }
}

impl From<ClaimError> for OffboardError {
    fn from(e: ClaimError) -> Self {
        match e {
            ClaimError::Store(s) => Self::Store(s),
            other => Self::Damaged(other.to_string()),
        }
    }
}

/// What an offboarding ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Offboarded {
    /// The person's name (removals only).
    pub name: Option<String>,
    /// Devices revoked.
    pub devices: Vec<String>,
    /// Directory entries removed.
    pub entries: Vec<String>,
    pub sessions_ended: usize,
    pub invites_cancelled: usize,
    /// Alerts their devices held, open again.
    pub claims_reopened: usize,
}

/// Ends people and devices. Cheap to make; the admin CLI makes one per run.
pub struct Offboarding {
    store: Store,
    directory: MediatorDirectory,
    devices: Devices,
    states: AlertStates,
    policy: EscalationPolicy,
}

impl Offboarding {
    /// `retention_secs` as for [`AlertStates::new`]; `policy` the configured
    /// escalation, which reopened alerts follow.
    pub fn new(store: Store, policy: EscalationPolicy, retention_secs: u64) -> Self {
        Self {
            directory: MediatorDirectory::new(store.clone()),
            devices: Devices::new(store.clone()),
            states: AlertStates::new(store.clone(), retention_secs),
            store,
            policy,
        }
    }

    pub fn from_settings(settings: &Settings, store: Store) -> Self {
        Self::new(
            store,
            EscalationPolicy::from_settings(&settings.escalation),
            settings.retention.period.as_secs(),
        )
    }

    /// Removes the person `id` names: a directory entry id (`m_…`, what
    /// `mediator list` shows), or one of their device ids (`d_…`).
    pub async fn remove_person(&self, id: &str) -> Result<Offboarded, OffboardError> {
        let id = id.trim();
        let name = match self
            .directory
            .list()
            .await?
            .into_iter()
            .find(|m| m.id == id)
        {
            Some(entry) => entry.name,
            None => self
                .devices
                .list()
                .await?
                .into_iter()
                .find(|d| d.mediator_id == id || d.device_id == id)
                .map(|d| d.name)
                .ok_or_else(|| OffboardError::NotFound(id.to_owned()))?,
        };
        let mut done = Offboarded {
            name: Some(name.clone()),
            ..Offboarded::default()
        };
        for _ in 0..PASSES {
            done.invites_cancelled += cancel_named(&self.store, &name).await?;
            let entries: Vec<String> = self
                .directory
                .list()
                .await?
                .into_iter()
                .filter(|m| m.name == name)
                .map(|m| m.id)
                .collect();
            let devices: Vec<DeviceId> = self
                .devices
                .list()
                .await?
                .iter()
                .filter(|d| d.name == name || entries.contains(&d.mediator_id))
                .filter_map(super::devices::DeviceRecord::id)
                .collect();
            if entries.is_empty() && devices.is_empty() {
                break;
            }
            for device in devices {
                self.end_device(&device, &mut done).await?;
            }
            for entry in entries {
                match self.directory.remove(&entry).await {
                    Ok(()) => done.entries.push(entry),
                    // Went with its device above.
                    Err(DirectoryError::NotFound(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        done.claims_reopened = self.reopen_claims(&done.devices).await?;
        tracing::info!(
            devices = done.devices.len(),
            entries = done.entries.len(),
            sessions = done.sessions_ended,
            invites = done.invites_cancelled,
            claims = done.claims_reopened,
            "mediator removed"
        );
        Ok(done)
    }

    /// Ends one device (steps 2 and 5 for it alone); the person's other
    /// devices and invites stay.
    pub async fn revoke_device(&self, id: &DeviceId) -> Result<Offboarded, OffboardError> {
        let mut done = Offboarded::default();
        let ended = match self.end_device(id, &mut done).await {
            Err(OffboardError::Damaged(_)) | Ok(false) => false,
            Err(e) => return Err(e),
            Ok(true) => true,
        };
        // Also for a device already gone: an offboarding that failed after
        // the revocation is finished by running `revoke` on the device again.
        done.claims_reopened = self.reopen_claims(&[id.to_string()]).await?;
        if !ended && done.claims_reopened == 0 {
            return Err(OffboardError::NotFound(id.to_string()));
        }
        Ok(done)
    }

    /// Revokes the device; false if it was not (or no longer) enrolled.
    async fn end_device(
        &self,
        id: &DeviceId,
        done: &mut Offboarded,
    ) -> Result<bool, OffboardError> {
        match self.devices.revoke(id).await {
            Ok(revoked) => {
                done.devices.push(id.to_string());
                done.sessions_ended += revoked.sessions_ended;
                done.entries.extend(revoked.mediator_id);
                Ok(true)
            }
            // Revoked meanwhile (a racing run): nothing left to end.
            Err(DeviceError::UnknownDevice) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Opens again every alert one of `devices` holds, with its escalation
    /// resumed. Looks through every alert state hash (one per tip within
    /// retention), in batches.
    async fn reopen_claims(&self, devices: &[String]) -> Result<usize, OffboardError> {
        let devices: BTreeSet<&str> = devices.iter().map(String::as_str).collect();
        if devices.is_empty() {
            return Ok(0);
        }
        let keys = self.store.keys();
        let hashes = self.store.scan_kind(ALERT_STATE).await?;
        let mut reopened = 0;
        for batch in hashes.chunks(CLAIM_SCAN_BATCH) {
            let mut pipe = redis::pipe();
            for key in batch {
                pipe.cmd("HMGET")
                    .arg(key)
                    .arg(&["state", "device", "priority"]);
            }
            let mut conn = self.store.conn().await?;
            let rows: Vec<(Option<String>, Option<String>, Option<String>)> = pipe
                .query_async(&mut conn)
                .await
                .map_err(StoreError::from)?;
            for (key, (state, device, priority)) in batch.iter().zip(rows) {
                let held = state.as_deref() == Some("claimed")
                    && device.as_deref().is_some_and(|d| devices.contains(d));
                if !held {
                    continue;
                }
                let Some(tip) = key
                    .rsplit(':')
                    .next()
                    .and_then(TipId::parse)
                    .filter(|t| keys.alert_state(t) == *key)
                else {
                    continue;
                };
                let Some(device) = device.as_deref().and_then(DeviceId::parse) else {
                    continue;
                };
                let resume = priority
                    .as_deref()
                    .and_then(Priority::parse)
                    .map(|p| self.policy.resumed(&tip, p, crate::clock::now_ms()))
                    .unwrap_or_default();
                if self.states.reopen(&tip, &device, &resume).await?.is_some() {
                    reopened += 1;
                }
            }
        }
        Ok(reopened)
    }
}
