//! Mediator devices: enrolment from a one-time invite, login by signing a
//! challenge, sessions, the on-duty switch and revocation.
//!
//! A phone enrols with the public halves of two keys it made and keeps: an age
//! X25519 recipient (tips are sealed to it) and an ECDSA P-256 signing key
//! (it logs in with it; see [`keys`] for the exact formats). The gateway never
//! receives a private key: the API has no field that could carry one. An
//! enrolled device is a [`MediatorDirectory`] recipient for the invite's zones,
//! so the directory version moves and the next tip is sealed to it; revoking
//! removes it from the directory the same way and ends its sessions.
//!
//! Redis holds, under the configured prefix: `device:<id>` (a JSON
//! [`DeviceRecord`]), `devices` (the set of ids), `device-sessions:<id>` (the
//! hashes of the device's session tokens), `invite:<hash>`, `challenge:<hash>`
//! and `session:<hash>`: hashes of bearer secrets, never the secrets.
//!
//! Untrusted: every request field (parsed once into [`Enrolment`] and the
//! session types), and every record read back from Redis (parsed again).

mod invites;
pub mod keys;
pub(crate) mod sessions;

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::bus::scripts::SET_IF_ENROLLED;
use crate::bus::{Store, StoreError};
use crate::config::{ConfigError, Settings};
use crate::crypto::RecipientKey;
use crate::mediator::revocations::{self, Ended};
use crate::mediator::{DeviceId, DirectoryError, MediatorDirectory, NewMediator};

pub use invites::{Invite, InviteCode, InviteGrant, Invites, cancel_named, check_grant};
pub use keys::{DeviceSigningKey, InvalidSigningKey, SESSION_CONTEXT, login_message};
pub use sessions::{Challenge, NewSession, SESSION_COOKIE, Session, Sessions};

/// Bytes of a login challenge.
pub const CHALLENGE_LEN: usize = 32;
/// Longest device name, in characters.
pub const MAX_DEVICE_NAME_CHARS: usize = 64;
/// An age X25519 recipient is 62 characters; longer input is refused unread.
const MAX_RECIPIENT_CHARS: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("a mediator needs a name of 1 to 80 characters, without control characters")]
    InvalidName,
    #[error("an invite needs at least one zone, or --supervisor")]
    NoZone,
    #[error("the invite is unknown, used or expired")]
    InviteInvalid,
    #[error("the age recipient is not an X25519 age public key")]
    InvalidRecipient,
    #[error("the signing key is not an ECDSA P-256 public key in base64url SPKI")]
    InvalidSigningKey,
    #[error(
        "the device name is over {MAX_DEVICE_NAME_CHARS} characters or holds control characters"
    )]
    InvalidDeviceName,
    #[error("this age recipient is already enrolled")]
    RecipientTaken,
    #[error("no enrolled device has this id")]
    UnknownDevice,
    #[error("the challenge is unknown, used, expired or for another device")]
    ChallengeInvalid,
    #[error("the signature does not verify with the device's key")]
    SignatureInvalid,
    #[error("no session cookie")]
    SessionRequired,
    #[error("the session expired or was ended")]
    SessionExpired,
    #[error("the X-CSRF-Token header is missing or wrong")]
    CsrfFailed,
    #[error("the Origin header is not the mediator app's origin")]
    OriginMismatch,
    #[error("too many challenges for this device")]
    RateLimited { retry_after_secs: u64 },
}

impl From<DirectoryError> for DeviceError {
    fn from(e: DirectoryError) -> Self {
        match e {
            DirectoryError::Store(s) => Self::Store(s),
            DirectoryError::DuplicateRecipient(..) => Self::RecipientTaken,
            DirectoryError::InvalidName => Self::InvalidName,
            DirectoryError::NoZone => Self::NoZone,
            DirectoryError::NotFound(_) => Self::UnknownDevice,
        }
    }
}

/// An enrolled device, as stored. Only public keys.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeviceRecord {
    pub device_id: String,
    /// Its entry in the [`MediatorDirectory`].
    pub mediator_id: String,
    /// The mediator's name, from the invite.
    pub name: String,
    /// What the phone calls itself ("Pixel 7"), if it said.
    pub device_name: Option<String>,
    pub zones: Vec<String>,
    pub supervisor: bool,
    /// age X25519 recipient (`age1…`).
    pub recipient: String,
    /// Base64url of the uncompressed SEC1 point ([`DeviceSigningKey::to_stored`]).
    pub signing_key: String,
    /// Off-duty devices get no push.
    pub on_duty: bool,
    /// Unix seconds, rounded down to the day.
    pub created: u64,
}

impl DeviceRecord {
    /// Parses a record read back from Redis; a damaged one is not trusted.
    fn parse(json: &str, expected: &DeviceId) -> Option<Self> {
        let record: Self = serde_json::from_str(json).ok()?;
        let ok = record.device_id == expected.as_str()
            && DeviceSigningKey::from_stored(&record.signing_key).is_ok()
            && RecipientKey::parse(&record.recipient).is_ok();
        ok.then_some(record)
    }

    pub fn id(&self) -> Option<DeviceId> {
        DeviceId::parse(&self.device_id)
    }

    pub fn signing_key(&self) -> Result<DeviceSigningKey, DeviceError> {
        DeviceSigningKey::from_stored(&self.signing_key)
            .map_err(|_| StoreError::Corrupt("device signing key").into())
    }
}

/// An enrolment request, parsed: only public keys.
pub struct Enrolment {
    pub invite: InviteCode,
    pub recipient: RecipientKey,
    pub signing_key: DeviceSigningKey,
    pub device_name: Option<String>,
}

impl Enrolment {
    /// Checks every field before anything is looked up or used up, so a
    /// malformed request changes nothing (the invite stays redeemable).
    pub fn parse(
        invite: &str,
        age_recipient: &str,
        signing_key: &str,
        device_name: Option<&str>,
    ) -> Result<Self, DeviceError> {
        // The invite's error comes first, as it does at the HTTP edge.
        let invite = InviteCode::parse(invite).ok_or(DeviceError::InviteInvalid)?;
        if age_recipient.len() > MAX_RECIPIENT_CHARS {
            return Err(DeviceError::InvalidRecipient);
        }
        let recipient =
            RecipientKey::parse(age_recipient).map_err(|_| DeviceError::InvalidRecipient)?;
        let signing_key = DeviceSigningKey::from_spki_b64url(signing_key)
            .map_err(|_| DeviceError::InvalidSigningKey)?;
        let device_name = match device_name.map(str::trim) {
            None | Some("") => None,
            Some(n)
                if n.chars().count() <= MAX_DEVICE_NAME_CHARS
                    && !n.chars().any(char::is_control) =>
            {
                Some(n.to_owned())
            }
            Some(_) => return Err(DeviceError::InvalidDeviceName),
        };
        Ok(Self {
            invite,
            recipient,
            signing_key,
            device_name,
        })
    }
}

fn new_device_id() -> Result<DeviceId, DeviceError> {
    let bytes: [u8; 12] = rand::random();
    DeviceId::parse(&format!("d_{}", hex::encode(bytes)))
        .ok_or(DeviceError::Store(StoreError::Corrupt("device id")))
}

/// The enrolled devices.
#[derive(Clone)]
pub struct Devices {
    store: Store,
    directory: MediatorDirectory,
}

impl Devices {
    pub fn new(store: Store) -> Self {
        Self {
            directory: MediatorDirectory::new(store.clone()),
            store,
        }
    }

    /// Redeems the invite and enrols the device as a recipient of its zones.
    /// The invite is checked first, before anything else is read: without a
    /// valid one every request gets `InviteInvalid`, whatever else is wrong,
    /// so nobody learns whether a key is enrolled. A recipient that is
    /// already enrolled is refused before the invite is used up; if that
    /// races, the invite is put back.
    pub async fn enrol(
        &self,
        invites: &Invites,
        enrolment: Enrolment,
        now: SystemTime,
    ) -> Result<DeviceRecord, DeviceError> {
        invites.peek(&enrolment.invite).await?;
        let recipient = enrolment.recipient.to_string();
        if self
            .directory
            .list()
            .await?
            .iter()
            .any(|m| m.recipient == recipient)
        {
            return Err(DeviceError::RecipientTaken);
        }
        let grant = invites.redeem(&enrolment.invite).await?;
        let day = crate::clock::unix_secs(now) / 86_400 * 86_400;
        let zones = grant.parsed_zones()?;
        let added = match self
            .directory
            .add(
                NewMediator {
                    name: grant.name.clone(),
                    zones,
                    supervisor: grant.supervisor,
                    recipient: enrolment.recipient,
                },
                day,
            )
            .await
        {
            Ok(added) => added,
            Err(DirectoryError::Store(e)) => return Err(e.into()),
            Err(e) => {
                // Refused for what the phone sent, not for the invite.
                invites.restore(&enrolment.invite, &grant).await?;
                return Err(e.into());
            }
        };
        let record = DeviceRecord {
            device_id: new_device_id()?.to_string(),
            mediator_id: added.id.clone(),
            name: added.name,
            device_name: enrolment.device_name,
            zones: added.zones,
            supervisor: added.supervisor,
            recipient: added.recipient,
            signing_key: enrolment.signing_key.to_stored(),
            on_duty: true,
            created: day,
        };
        if let Err(e) = self.insert(&record).await {
            // No recipient without a device record to revoke it by.
            if let Err(undo) = self.directory.remove(&added.id).await {
                tracing::error!(error = %undo, "enrolment half done: directory entry left without device; run `tipwire mediator list` and remove it");
            }
            return Err(e);
        }
        tracing::info!(zones = ?record.zones, supervisor = record.supervisor, "mediator device enrolled");
        Ok(record)
    }

    async fn insert(&self, record: &DeviceRecord) -> Result<(), DeviceError> {
        let json = serde_json::to_string(record).map_err(|_| StoreError::Corrupt("device"))?;
        let keys = self.store.keys();
        let mut conn = self.store.conn().await?;
        let _: () = redis::pipe()
            .atomic()
            .cmd("SET")
            .arg(keys.device(&record.device_id))
            .arg(json)
            .arg("NX")
            .ignore()
            .sadd(keys.devices(), &record.device_id)
            .ignore()
            .query_async(&mut conn)
            .await
            .map_err(StoreError::from)?;
        Ok(())
    }

    /// The device's record; `None` when it is not (or no longer) enrolled, or
    /// its record is damaged.
    pub async fn get(&self, id: &DeviceId) -> Result<Option<DeviceRecord>, DeviceError> {
        let mut conn = self.store.conn().await?;
        let raw: Option<String> = redis::cmd("GET")
            .arg(self.store.keys().device(id.as_str()))
            .query_async(&mut conn)
            .await
            .map_err(StoreError::from)?;
        Ok(raw.and_then(|json| DeviceRecord::parse(&json, id)))
    }

    /// Every enrolled device with an intact record, by name.
    pub async fn list(&self) -> Result<Vec<DeviceRecord>, DeviceError> {
        let keys = self.store.keys();
        let mut conn = self.store.conn().await?;
        let ids: Vec<String> = redis::cmd("SMEMBERS")
            .arg(keys.devices())
            .query_async(&mut conn)
            .await
            .map_err(StoreError::from)?;
        let ids: Vec<DeviceId> = ids.iter().filter_map(|i| DeviceId::parse(i)).collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut get = redis::cmd("MGET");
        for id in &ids {
            get.arg(keys.device(id.as_str()));
        }
        let raw: Vec<Option<String>> =
            get.query_async(&mut conn).await.map_err(StoreError::from)?;
        let mut out: Vec<DeviceRecord> = ids
            .iter()
            .zip(raw)
            .filter_map(|(id, json)| json.and_then(|j| DeviceRecord::parse(&j, id)))
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name).then(a.device_id.cmp(&b.device_id)));
        Ok(out)
    }

    /// Turns push on or off for the device. Never brings a revoked record back.
    pub async fn set_on_duty(
        &self,
        id: &DeviceId,
        on_duty: bool,
    ) -> Result<DeviceRecord, DeviceError> {
        let mut record = self.get(id).await?.ok_or(DeviceError::UnknownDevice)?;
        record.on_duty = on_duty;
        let json = serde_json::to_string(&record).map_err(|_| StoreError::Corrupt("device"))?;
        let mut conn = self.store.conn().await?;
        // XX: if a revocation deleted the record meanwhile, write nothing.
        let written: Option<String> = redis::cmd("SET")
            .arg(self.store.keys().device(id.as_str()))
            .arg(json)
            .arg("XX")
            .query_async(&mut conn)
            .await
            .map_err(StoreError::from)?;
        match written {
            Some(_) => Ok(record),
            None => Err(DeviceError::UnknownDevice),
        }
    }

    /// Ends the device: it is no recipient of the next tip (the directory
    /// version moves), its record is gone and so is every session, so the
    /// next request with an old cookie gets 401, its push subscription and
    /// nudge contacts are deleted, and a notice ends its open alert streams
    /// on every replica at once. Safe to run again after a failure half-way.
    ///
    /// This is one step of offboarding; [`crate::mediator::offboarding`]
    /// also hands the device's claims back. Use that, not this alone.
    pub async fn revoke(&self, id: &DeviceId) -> Result<RevokedDevice, DeviceError> {
        #[derive(Deserialize)]
        struct Lenient {
            mediator_id: Option<String>,
        }
        let keys = self.store.keys();
        let mut conn = self.store.conn().await?;
        let raw: Option<String> = redis::cmd("GET")
            .arg(keys.device(id.as_str()))
            .query_async(&mut conn)
            .await
            .map_err(StoreError::from)?;
        let Some(raw) = raw else {
            return Err(DeviceError::UnknownDevice);
        };
        // Recipient status first: when this fails the record is still there
        // to retry with. A damaged record still gets its sessions deleted.
        let mediator_id = serde_json::from_str::<Lenient>(&raw)
            .ok()
            .and_then(|l| l.mediator_id);
        if let Some(mediator_id) = &mediator_id {
            match self.directory.remove(mediator_id).await {
                Ok(()) | Err(DirectoryError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let sessions: Vec<String> = redis::cmd("SMEMBERS")
            .arg(keys.device_sessions(id.as_str()))
            .query_async(&mut conn)
            .await
            .map_err(StoreError::from)?;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .del(keys.device(id.as_str()))
            .ignore()
            .srem(keys.devices(), id.as_str())
            .ignore()
            .del(keys.device_sessions(id.as_str()))
            .ignore()
            // Its push subscription and (sealed) nudge contacts go too.
            .del(keys.push_sub(id.as_str()))
            .ignore()
            .del(keys.nudge_to(id.as_str()))
            .ignore();
        let session_keys: Vec<String> = sessions
            .iter()
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(|h| keys.session(h))
            .collect();
        if !session_keys.is_empty() {
            pipe.del(&session_keys).ignore();
        }
        let _: () = pipe
            .query_async(&mut conn)
            .await
            .map_err(StoreError::from)?;
        // After the deletes: a stream that re-checks on the notice finds
        // nothing left. A notice that cannot be written does not stop the
        // offboarding (running it again finds nothing left to revoke, so the
        // device's claims would stay held): every stream still ends at its
        // next liveness check, which fails closed.
        if let Err(e) = revocations::announce(&self.store, &Ended::Device(id.clone())).await {
            tracing::warn!(error = %e, "revocation notice not sent; open streams end at their next check");
        }
        tracing::info!(sessions = session_keys.len(), "mediator device revoked");
        Ok(RevokedDevice {
            mediator_id,
            sessions_ended: session_keys.len(),
        })
    }
}

/// Stores `value` under `key`, something of `device`'s (its push
/// subscription, its nudge contacts), only while the device is enrolled: a
/// request that passed its session check just before a revocation must not
/// leave anything of the device behind it. False if the device was gone.
pub async fn set_if_enrolled(
    store: &Store,
    device: &DeviceId,
    key: &str,
    value: &[u8],
) -> Result<bool, StoreError> {
    let mut conn = store.conn().await?;
    let set: i64 = redis::Script::new(SET_IF_ENROLLED)
        .key(store.keys().device(device.as_str()))
        .key(key)
        .arg(value)
        .invoke_async(&mut conn)
        .await?;
    Ok(set == 1)
}

/// What a revocation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedDevice {
    /// The directory entry removed (none if the record was damaged).
    pub mediator_id: Option<String>,
    /// Sessions deleted (some may already have expired).
    pub sessions_ended: usize,
}

/// An enrolment attempt within its client's limit, as
/// [`DeviceApi::admit_enrolment`] let it in.
#[derive(Debug)]
#[must_use = "an attempt with a valid invite still owes the channel's limit"]
pub struct EnrolmentAttempt {
    /// Whether the channel's bucket was charged already (a request from
    /// everyone at once, which has no bucket of its own).
    global_paid: bool,
}

/// Everything the device routes need, registered once as app data.
pub struct DeviceApi {
    pub devices: Devices,
    pub invites: Invites,
    pub sessions: Sessions,
    /// `rate_limits.enrolment`: every enrolment attempt takes a cell from
    /// its client's bucket before the invite is looked at; the channel's
    /// (global) bucket pays only for attempts with a valid invite (see
    /// [`Self::admit_enrolment`]).
    pub enrolment_limiter: crate::ratelimit::ChannelLimiter,
    keyer: crate::privacy::ClientKeyer,
    /// Plaintext mode without trusted proxies (an onion service): everyone
    /// arrives from loopback, so only the global limit applies to loopback,
    /// as for tips, or one visitor could lock every phone out.
    loopback_is_everyone: bool,
    /// `scheme://host[:port]` of `mediator.public_base_url`.
    origin: String,
}

impl DeviceApi {
    pub fn from_settings(settings: &Settings, store: Store) -> Result<Self, ConfigError> {
        let m = &settings.mediator;
        let limits = settings.rate_limits.enrolment;
        Ok(Self {
            enrolment_limiter: crate::ratelimit::ChannelLimiter::new(
                limits.per_client,
                limits.global,
            ),
            keyer: crate::privacy::ClientKeyer::new(settings.server.trusted_proxies.clone()),
            loopback_is_everyone: settings.server.loopback_is_everyone(),
            devices: Devices::new(store.clone()),
            invites: Invites::new(store.clone(), m.public_base_url.as_str(), m.invite_ttl),
            sessions: Sessions::new(store, m.session_ttl, m.session_max),
            origin: m.public_base_url.origin(),
        })
    }

    /// The first check of an enrolment attempt, before its invite is read:
    /// a cell from its client's bucket. The channel's bucket is left for
    /// [`Self::charge_enrolment`], once the invite proved valid: charged
    /// for every attempt, invite guesses from many addresses (an IPv6 /48,
    /// a botnet), each within its own allowance, would spend it and a real
    /// phone enrolling meanwhile would get 429. Codes are 128-bit, so the
    /// channel's bucket buys nothing against guessing; it caps enrolments.
    ///
    /// A request from everyone at once (loopback behind an onion service)
    /// has no bucket of its own; it pays the channel's bucket here instead,
    /// before the invite is read, and not again: without a per-client
    /// bound that is the only thing bounding the Redis reads such guesses
    /// cost. There a flood of guesses can still hold up a real phone until
    /// it passes (429 with `Retry-After`; the invite stays usable), as the
    /// channel's limit holds up tips there.
    pub fn admit_enrolment(
        &self,
        req: &actix_web::HttpRequest,
    ) -> Result<EnrolmentAttempt, crate::ratelimit::Limited> {
        let forwarded: Vec<_> = req.headers().get_all("x-forwarded-for").collect();
        let ip = self
            .keyer
            .client_ip(req.peer_addr().map(|a| a.ip()), &forwarded);
        if crate::ratelimit::shared_by_everyone(ip, self.loopback_is_everyone) {
            self.enrolment_limiter.check_global()?;
            return Ok(EnrolmentAttempt { global_paid: true });
        }
        self.enrolment_limiter
            .check_client_from(&self.keyer, ip, self.loopback_is_everyone)?;
        Ok(EnrolmentAttempt { global_paid: false })
    }

    /// Charges the channel's bucket for an attempt whose invite is valid,
    /// before anything else of it is judged (unless
    /// [`Self::admit_enrolment`] already did).
    pub fn charge_enrolment(
        &self,
        attempt: EnrolmentAttempt,
    ) -> Result<(), crate::ratelimit::Limited> {
        if attempt.global_paid {
            return Ok(());
        }
        self.enrolment_limiter.check_global()
    }

    /// Whether a state-changing request may proceed: browsers send `Origin`
    /// on every cross-origin and every same-origin non-GET fetch; when it is
    /// there it must be the app's own. (Programs such as the CLI's tests send
    /// none.)
    pub fn origin_allowed(&self, headers: &actix_web::http::header::HeaderMap) -> bool {
        headers
            .get_all(actix_web::http::header::ORIGIN)
            .all(|v| v.as_bytes() == self.origin.as_bytes())
    }
}

#[cfg(test)]
mod tests;
