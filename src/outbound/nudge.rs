//! Fallback nudges: when an urgent ("now") alert is still unclaimed
//! `push.nudge_after_secs` after its push, mediators who opted in get a
//! content-free email ("A new urgent alert for zone X. Open tipwire.",
//! `MailSender::send_nudge`) or SMS (the same fixed text, `SmsClient::send`).
//! Only the zone's name goes out: never tip text, never the alert id.
//!
//! Opting in: a device stores an email address and/or an E.164 number
//! ([`NudgeContact`]) under `<prefix>:nudge-to:<device id>`, sealed to the
//! gateway's relay key like tipsters' reply addresses (a mediator's contact is
//! sensitive too); it is opened only in memory, just before a send.
//!
//! Deadlines: the push worker's fan-out script adds, in the same atomic step
//! as the pushes, one member `<tip id>:<zone>:<device id>` per opted-in target
//! device to the sorted set `<prefix>:push:nudges` (score: due time in unix
//! ms, a minute boundary from the push's minute, so a nudge goes out up to two
//! minutes after `push.nudge_after_secs`, never before). [`Nudger::step`] takes due members in a Lua script that `ZREM`s each
//! before reporting it and reports it only while the alert is open, so across
//! replicas a nudge is sent at most once per channel, and never for an alert
//! someone claimed. A transient failure on one channel schedules that channel
//! alone again (`…:<email|sms>:<attempt>`, exponential backoff, at most
//! `push.max_attempts`); the other channel is not repeated. A crash between
//! the `ZREM` and the send loses that nudge: nudges are a fallback, and
//! sending at most once is the better failure for a text to a person's phone.
//!
//! Untrusted: request fields (parsed into [`NudgeContact`]), members and
//! sealed records read back from Redis (re-validated after opening).

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::bus::scripts::{NUDGE_FIRE, TIMER_FNS};
use crate::bus::timing::coarse_due;
use crate::bus::{Store, StoreError, TimerSet};
use crate::config::{ConfigError, Settings};
use crate::crypto::{Keyring, open_with, seal};
use crate::domain::{EmailAddress, PhoneNumber, Priority, TipId, Zone, ZoneChoice};
use crate::mediator::DeviceId;
use crate::mediator::devices::{DeviceError, Devices};
use crate::outbound::email::{MailError, MailSender, Nudge};
use crate::outbound::push::store::exist;
use crate::outbound::sms::{OutboundSms, SendError, SmsClient};
use crate::telemetry::Metrics;

/// Due members handled per step.
const BATCH: usize = 64;
/// What the zone is called in a nudge for a tip whose sender was not sure.
const UNSURE_NAME: &str = "Not sure";

/// Which nudge channels this gateway can send on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NudgeChannels {
    /// `email.outbound` is set up.
    pub email: bool,
    /// An SMS provider is on and `sms.numbers` names a number to send from.
    pub sms: bool,
}

impl NudgeChannels {
    pub fn from_settings(settings: &Settings) -> Self {
        if settings.push.nudge_after().is_none() {
            return Self::default();
        }
        Self {
            email: settings.email.outbound.enabled,
            sms: (settings.sms.twilio.enabled || settings.sms.telnyx.enabled)
                && !settings.sms.numbers.is_empty(),
        }
    }
}

/// Where one mediator wants nudges. Exists in clear only in memory; `Debug`
/// says which channels are set, never the address or number.
#[derive(Clone, PartialEq, Eq)]
pub struct NudgeContact {
    pub email: Option<EmailAddress>,
    pub sms: Option<PhoneNumber>,
}

impl std::fmt::Debug for NudgeContact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NudgeContact")
            .field("email", &self.email.is_some())
            .field("sms", &self.sms.is_some())
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
struct Wire {
    email: Option<String>,
    sms: Option<String>,
}

impl NudgeContact {
    /// From request fields; empty strings count as absent.
    pub fn parse(email: Option<&str>, sms: Option<&str>) -> Result<Self, NudgeContactError> {
        fn present(s: Option<&str>) -> Option<&str> {
            s.map(str::trim).filter(|s| !s.is_empty())
        }
        Ok(Self {
            email: present(email)
                .map(EmailAddress::parse)
                .transpose()
                .map_err(|_| NudgeContactError)?,
            sms: present(sms)
                .map(PhoneNumber::parse)
                .transpose()
                .map_err(|_| NudgeContactError)?,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.email.is_none() && self.sms.is_none()
    }

    fn to_wire(&self) -> Wire {
        Wire {
            email: self.email.as_ref().map(|e| e.as_str().to_owned()),
            sms: self.sms.as_ref().map(|p| p.as_str().to_owned()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a nudge address is not an email address or an E.164 number")]
pub struct NudgeContactError;

/// The sealed nudge contacts by device.
#[derive(Clone)]
pub struct NudgeContacts {
    store: Store,
    keyring: Arc<Keyring>,
}

impl NudgeContacts {
    pub fn new(store: Store, keyring: Arc<Keyring>) -> Self {
        Self { store, keyring }
    }

    /// Seals `contact` to the relay key and stores it; an empty contact
    /// deletes what was stored (opting out).
    pub async fn put(&self, device: &DeviceId, contact: &NudgeContact) -> Result<(), StoreError> {
        if contact.is_empty() {
            return self.remove(device).await;
        }
        let json = zeroize::Zeroizing::new(
            serde_json::to_vec(&contact.to_wire())
                .map_err(|_| StoreError::Corrupt("nudge contact"))?,
        );
        let relay = self.keyring.relay_identity().1.to_public();
        let sealed = seal(&json, &[relay]).map_err(|_| StoreError::Corrupt("nudge contact"))?;
        // Nothing is stored for a device revoked meanwhile.
        let key = self.store.keys().nudge_to(device.as_str());
        crate::mediator::devices::set_if_enrolled(&self.store, device, &key, &sealed).await?;
        Ok(())
    }

    pub async fn remove(&self, device: &DeviceId) -> Result<(), StoreError> {
        let mut conn = self.store.conn().await?;
        let _: () = redis::cmd("DEL")
            .arg(self.store.keys().nudge_to(device.as_str()))
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// The device's contact, opened; `None` when there is none or it no
    /// longer opens (a relay key dropped after rotation) or parses.
    pub async fn get(&self, device: &DeviceId) -> Result<Option<NudgeContact>, StoreError> {
        let mut conn = self.store.conn().await?;
        let sealed: Option<Vec<u8>> = redis::cmd("GET")
            .arg(self.store.keys().nudge_to(device.as_str()))
            .query_async(&mut conn)
            .await?;
        let Some(sealed) = sealed else {
            return Ok(None);
        };
        let Ok(plain) = open_with(&sealed, self.keyring.relay_identities()) else {
            tracing::warn!("a nudge contact no longer opens with any relay key; ignored");
            return Ok(None);
        };
        let plain = zeroize::Zeroizing::new(plain);
        let contact = serde_json::from_slice::<Wire>(&plain)
            .ok()
            .and_then(|w| NudgeContact::parse(w.email.as_deref(), w.sms.as_deref()).ok());
        Ok(contact)
    }

    /// Which of `devices` have a contact stored, in order.
    pub async fn have(&self, devices: &[DeviceId]) -> Result<Vec<bool>, StoreError> {
        exist(&self.store, devices, |d| self.store.keys().nudge_to(d)).await
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Channel {
    Email,
    Sms,
}

impl Channel {
    fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Sms => "sms",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "email" => Some(Self::Email),
            "sms" => Some(Self::Sms),
            _ => None,
        }
    }
}

/// A nudge deadline: which alert, which device, and for a retry which
/// channel and how many attempts came before.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Member {
    tip_id: TipId,
    zone: ZoneChoice,
    device: DeviceId,
    retry: Option<(Channel, u32)>,
}

impl Member {
    fn parse(s: &str) -> Option<Self> {
        let mut parts = s.split(':');
        let tip_id = TipId::parse(parts.next()?)?;
        let zone = match parts.next()? {
            "unsure" => ZoneChoice::Unsure,
            z => ZoneChoice::Known(Zone::parse(z).ok()?),
        };
        let device = DeviceId::parse(parts.next()?)?;
        let retry = match (parts.next(), parts.next(), parts.next()) {
            (None, _, _) => None,
            (Some(c), Some(n), None) => Some((Channel::parse(c)?, n.parse().ok()?)),
            _ => return None,
        };
        Some(Self {
            tip_id,
            zone,
            device,
            retry,
        })
    }

    fn render(&self) -> String {
        let base = format!("{}:{}:{}", self.tip_id, self.zone.as_str(), self.device);
        match self.retry {
            None => base,
            Some((c, n)) => format!("{base}:{}:{n}", c.as_str()),
        }
    }
}

/// Sends due nudges. Run by the push worker's step.
pub struct Nudger {
    store: Store,
    contacts: NudgeContacts,
    devices: Devices,
    mail: Option<MailSender>,
    /// The client and the program number nudges come from.
    sms: Option<(SmsClient, PhoneNumber)>,
    zone_names: HashMap<String, String>,
    delay_ms: u64,
    max_attempts: u32,
    backoff_base_ms: u64,
    metrics: Arc<Metrics>,
    fire: redis::Script,
}

impl Nudger {
    pub fn from_settings(
        settings: &Settings,
        store: Store,
        keyring: Arc<Keyring>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ConfigError> {
        let channels = NudgeChannels::from_settings(settings);
        let mail = if channels.email {
            Some(MailSender::from_settings(&settings.email.outbound)?)
        } else {
            None
        };
        let sms = if channels.sms {
            let from = settings.sms.numbers.first().cloned();
            let client = crate::outbound::sms::provider_clients(settings)?
                .into_iter()
                .next()
                .map(|(_, c)| c);
            client.zip(from)
        } else {
            None
        };
        let zone_names = settings
            .zones
            .iter()
            .map(|(zone, name)| (zone.as_str().to_owned(), name.clone()))
            .collect();
        Ok(Self {
            contacts: NudgeContacts::new(store.clone(), keyring),
            devices: Devices::new(store.clone()),
            store,
            mail,
            sms,
            zone_names,
            delay_ms: settings
                .push
                .nudge_delay
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            max_attempts: settings.push.max_attempts,
            backoff_base_ms: u64::try_from(settings.push.backoff_base.as_millis())
                .unwrap_or(u64::MAX),
            metrics,
            fire: redis::Script::new(&format!("{TIMER_FNS}{NUDGE_FIRE}")),
        })
    }

    /// Milliseconds from the push to the nudge.
    pub fn delay_ms(&self) -> u64 {
        self.delay_ms
    }

    /// The deadline members for the alert `tip_id` among `targets`: one per
    /// device that stored a contact.
    pub(crate) async fn members_for(
        &self,
        tip_id: &TipId,
        zone: &ZoneChoice,
        targets: &[DeviceId],
    ) -> Result<Vec<String>, StoreError> {
        let have = self.contacts.have(targets).await?;
        Ok(targets
            .iter()
            .zip(have)
            .filter(|(_, h)| *h)
            .map(|(device, _)| {
                Member {
                    tip_id: tip_id.clone(),
                    zone: zone.clone(),
                    device: device.clone(),
                    retry: None,
                }
                .render()
            })
            .collect())
    }

    /// Sends every due nudge of a still-open alert; returns how many went out.
    pub async fn step(&self, now_ms: u64) -> Result<usize, StoreError> {
        let keys = self.store.keys();
        let deadlines = TimerSet::new(keys.push_nudges());
        let mut conn = self.store.conn().await?;
        let due = deadlines.due(&mut conn, now_ms, BATCH).await?;
        if due.is_empty() {
            return Ok(0);
        }
        let (ours, foreign): (Vec<_>, Vec<_>) = due
            .into_iter()
            .map(|m| (Member::parse(&m), m))
            .partition(|(parsed, _)| parsed.is_some());
        if !foreign.is_empty() {
            tracing::warn!(
                count = foreign.len(),
                "removed nudge deadlines tipwire did not write"
            );
            let foreign: Vec<String> = foreign.into_iter().map(|(_, m)| m).collect();
            deadlines.cancel(&mut conn, &foreign).await?;
        }
        if ours.is_empty() {
            return Ok(0);
        }
        let mut invocation = self.fire.key(deadlines.key());
        invocation.arg(now_ms);
        for (parsed, m) in &ours {
            if let Some(member) = parsed {
                invocation.key(keys.alert_state(&member.tip_id)).arg(m);
            }
        }
        let fired: Vec<String> = invocation.invoke_async(&mut conn).await?;
        let mut sent = 0;
        for m in fired {
            if let Some(member) = Member::parse(&m) {
                sent += self.send(&member, now_ms).await?;
            }
        }
        Ok(sent)
    }

    async fn send(&self, member: &Member, now_ms: u64) -> Result<usize, StoreError> {
        match self.devices.get(&member.device).await {
            Ok(Some(d)) if d.on_duty => {}
            Ok(_) => return Ok(0),
            Err(DeviceError::Store(e)) => return Err(e),
            Err(_) => return Ok(0),
        }
        let Some(contact) = self.contacts.get(&member.device).await? else {
            return Ok(0);
        };
        let zone_name = match &member.zone {
            ZoneChoice::Unsure => UNSURE_NAME,
            ZoneChoice::Known(z) => self
                .zone_names
                .get(z.as_str())
                .map_or(z.as_str(), String::as_str),
        };
        let channels: &[Channel] = match member.retry {
            Some((Channel::Email, _)) => &[Channel::Email],
            Some((Channel::Sms, _)) => &[Channel::Sms],
            None => &[Channel::Email, Channel::Sms],
        };
        let attempts = member.retry.map_or(0, |(_, n)| n);
        let mut sent = 0;
        for &channel in channels {
            let result = match channel {
                Channel::Email => match (&self.mail, &contact.email) {
                    (Some(mail), Some(to)) => Some(
                        mail.send_nudge(&Nudge {
                            to,
                            zone_name,
                            priority: Priority::Now,
                        })
                        .await
                        .map_err(|e| matches!(e, MailError::Transient(_))),
                    ),
                    _ => None,
                },
                Channel::Sms => match (&self.sms, &contact.sms) {
                    (Some((client, from)), Some(to)) => {
                        let body = sms_text(zone_name);
                        Some(
                            client
                                .send(&OutboundSms {
                                    to: to.as_str(),
                                    from: from.as_str(),
                                    body: &body,
                                })
                                .await
                                .map(|_| ())
                                .map_err(|e| matches!(e, SendError::Transient(_))),
                        )
                    }
                    _ => None,
                },
            };
            let outcome = match result {
                None => continue,
                Some(Ok(())) => {
                    sent += 1;
                    "sent"
                }
                Some(Err(true)) if attempts.saturating_add(1) < self.max_attempts => {
                    let retry = Member {
                        retry: Some((channel, attempts + 1)),
                        ..member.clone()
                    };
                    let due = coarse_due(
                        now_ms,
                        self.backoff_base_ms.saturating_mul(1 << attempts.min(16)),
                    );
                    TimerSet::new(self.store.keys().push_nudges())
                        .schedule(&self.store, &retry.render(), due)
                        .await?;
                    "retry"
                }
                Some(Err(_)) => "failed",
            };
            self.metrics
                .nudges
                .with_label_values(&[channel.as_str(), outcome])
                .inc();
            tracing::info!(tip_id = %member.tip_id, zone = member.zone.as_str(), channel = channel.as_str(), outcome, "nudge");
        }
        Ok(sent)
    }
}

/// The SMS nudge: fixed words and the zone's name, nothing else.
fn sms_text(zone_name: &str) -> String {
    let zone: String = zone_name
        .chars()
        .filter(|c| !c.is_control())
        .take(80)
        .collect();
    format!("A new urgent alert for zone {zone}. Open tipwire.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_contact_parses_from_request_fields_and_debug_hides_it() {
        let c =
            NudgeContact::parse(Some(" ana@cvi.example.org "), Some("+1 555 123 4567")).unwrap();
        assert_eq!(c.email.as_ref().unwrap().as_str(), "ana@cvi.example.org");
        assert_eq!(c.sms.as_ref().unwrap().as_str(), "+15551234567");
        let shown = format!("{c:?}");
        assert!(!shown.contains("ana") && !shown.contains("555"), "{shown}");
        assert!(NudgeContact::parse(Some(""), None).unwrap().is_empty());
        assert!(NudgeContact::parse(None, None).unwrap().is_empty());
        assert!(NudgeContact::parse(Some("not an address"), None).is_err());
        assert!(NudgeContact::parse(None, Some("5551234567")).is_err());
    }

    #[test]
    fn members_round_trip_and_foreign_ones_are_refused() {
        let tip = TipId::random();
        let first = Member {
            tip_id: tip.clone(),
            zone: ZoneChoice::Unsure,
            device: DeviceId::parse("d_1").unwrap(),
            retry: None,
        };
        assert_eq!(Member::parse(&first.render()), Some(first.clone()));
        let retry = Member {
            zone: ZoneChoice::Known(Zone::parse("north").unwrap()),
            retry: Some((Channel::Sms, 2)),
            ..first
        };
        assert_eq!(retry.render(), format!("{tip}:north:d_1:sms:2"));
        assert_eq!(Member::parse(&retry.render()), Some(retry));
        for bad in [
            String::new(),
            "x:north:d_1".to_owned(),
            format!("{tip}:North:d_1"),
            format!("{tip}:north"),
            format!("{tip}:north:d_1:fax:1"),
            format!("{tip}:north:d_1:sms"),
            format!("{tip}:north:d_1:sms:1:extra"),
        ] {
            assert_eq!(Member::parse(&bad), None, "{bad}");
        }
    }

    #[test]
    fn the_sms_text_is_fixed_words_and_the_zone_name() {
        assert_eq!(
            sms_text("North side"),
            "A new urgent alert for zone North side. Open tipwire."
        );
        assert!(!sms_text("a\nb").contains('\n'));
    }

    #[test]
    fn no_channel_is_offered_while_push_or_nudges_are_off() {
        let mut s = Settings::load(None).unwrap();
        s.email.outbound.enabled = true;
        assert_eq!(NudgeChannels::from_settings(&s), NudgeChannels::default());
        s.push.enabled = true;
        s.push.subject =
            Some(crate::config::VapidSubject::parse("mailto:ops@cvi.example.org").unwrap());
        assert_eq!(
            NudgeChannels::from_settings(&s),
            NudgeChannels {
                email: true,
                sms: false
            }
        );
        s.push.nudge_delay = None;
        assert_eq!(NudgeChannels::from_settings(&s), NudgeChannels::default());
    }
}
