//! Fan-out: which devices hear of an event, and the one atomic step that
//! queues a delivery job per device, schedules nudges and acknowledges the
//! event (see the parent module).

use std::collections::HashMap;

use redis::{FromRedisValue, Value};

use crate::bus::StoreError;
use crate::bus::names::PUSH_GROUP;
use crate::bus::timing::coarse_due;
use crate::domain::{Priority, TipId, Zone, ZoneChoice};
use crate::mediator::devices::DeviceRecord;
use crate::mediator::{DeviceId, Stage};
use crate::outbound::push::notice::NoticeKind;
use crate::outbound::push::worker::{PushReport, PushWorker, device_store_error, id_ms, minute};

/// Events read per source stream per step. Small: an alert entry comes whole,
/// sealed attachments included (an MMS tip may carry megabytes), though only
/// its routing fields are used. A backlog drains over the next steps.
const EVENT_BATCH: usize = 8;

/// One event read from a source stream.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Event {
    kind: NoticeKind,
    tip_id: TipId,
    zone: ZoneChoice,
    priority: Priority,
    stage: Option<Stage>,
}

impl PushWorker {
    pub(super) async fn fan_out_events(
        &self,
        now_ms: u64,
        report: &mut PushReport,
    ) -> Result<(), StoreError> {
        let keys = self.store.keys();
        let entries = self
            .read(&[&self.alerts, &self.escalations], EVENT_BATCH, now_ms)
            .await?;
        if entries.is_empty() {
            return Ok(());
        }
        let devices = self.devices.list().await.map_err(device_store_error)?;
        for (queue, id, map) in entries {
            let kind = if queue.stream() == keys.alerts() {
                NoticeKind::Alert
            } else {
                NoticeKind::Escalation
            };
            let event = parse_event(kind, &map);
            let fresh = now_ms.saturating_sub(id_ms(&id)) <= self.ttl_ms();
            let (event, targets) = match event {
                Some(event) if fresh => {
                    let targets = targets(&devices, &event);
                    (Some(event), targets)
                }
                Some(event) => {
                    tracing::info!(tip_id = %event.tip_id, "event older than push.ttl_secs; not pushed");
                    (None, Vec::new())
                }
                None => {
                    tracing::warn!(
                        kind = kind.as_str(),
                        "malformed event in a push source stream; skipped"
                    );
                    (None, Vec::new())
                }
            };
            let subscribed = self.subscriptions.have(&targets).await?;
            let jobs: Vec<&DeviceId> = targets
                .iter()
                .zip(&subscribed)
                .filter(|(_, s)| **s)
                .map(|(d, _)| d)
                .collect();
            let nudge_members = match (&event, &self.nudger) {
                (Some(e), Some(nudger)) if wants_nudge(e) => {
                    nudger.members_for(&e.tip_id, &e.zone, &targets).await?
                }
                _ => Vec::new(),
            };
            // From this minute, not this moment: the push follows the tip's
            // arrival by milliseconds.
            let nudge_due = self
                .nudger
                .as_ref()
                .map_or(0, |n| coarse_due(now_ms, n.delay_ms()));
            let mut invocation = self.fan_out.key(queue.stream());
            invocation
                .key(keys.push_out())
                .key(keys.push_nudges())
                .key(queue.leases())
                .key(queue.owners())
                .arg(PUSH_GROUP)
                .arg(&self.config.consumer)
                .arg(&id)
                .arg(minute(now_ms))
                .arg(nudge_due);
            match &event {
                Some(e) => invocation
                    .arg(e.kind.as_str())
                    .arg(e.tip_id.as_str())
                    .arg(e.zone.as_str())
                    .arg(e.priority.as_str())
                    .arg(e.stage.map_or("", Stage::as_str)),
                None => invocation.arg("").arg("").arg("").arg("").arg(""),
            };
            invocation.arg(jobs.len());
            for d in &jobs {
                invocation.arg(d.as_str());
            }
            for m in &nudge_members {
                invocation.arg(m);
            }
            let mut conn = self.store.conn().await?;
            let queued: i64 = invocation.invoke_async(&mut conn).await?;
            if queued < 0 {
                tracing::info!("push event taken over by another worker; not fanned out here");
                continue;
            }
            report.events += 1;
            report.queued += jobs.len();
            if let Some(e) = &event {
                tracing::info!(
                    tip_id = %e.tip_id,
                    zone = e.zone.as_str(),
                    kind = e.kind.as_str(),
                    devices = jobs.len(),
                    nudges = nudge_members.len(),
                    "push fanned out"
                );
            }
        }
        Ok(())
    }
}

/// Only new urgent tips nudge; an escalation is itself the reminder.
fn wants_nudge(e: &Event) -> bool {
    e.kind == NoticeKind::Alert && e.priority == Priority::Now
}

/// Who hears of `event`, among enrolled `devices`: never an off-duty device.
fn targets(devices: &[DeviceRecord], event: &Event) -> Vec<DeviceId> {
    devices
        .iter()
        .filter(|d| d.on_duty)
        .filter(|d| match (event.kind, event.stage) {
            (NoticeKind::Escalation, Some(Stage::Supervisors)) => d.supervisor,
            (NoticeKind::Escalation, _) => true,
            (NoticeKind::Alert, _) => {
                d.supervisor
                    || match &event.zone {
                        ZoneChoice::Unsure => true,
                        ZoneChoice::Known(z) => d.zones.iter().any(|dz| dz == z.as_str()),
                    }
            }
        })
        .filter_map(DeviceRecord::id)
        .collect()
}

pub(super) fn parse_zone(s: &str) -> Option<ZoneChoice> {
    if s == ZoneChoice::Unsure.as_str() {
        Some(ZoneChoice::Unsure)
    } else {
        Zone::parse(s).ok().map(ZoneChoice::Known)
    }
}

/// The routing fields of an alert entry (the envelope is not looked at) or
/// of an escalation event.
fn parse_event(kind: NoticeKind, map: &HashMap<String, Value>) -> Option<Event> {
    let field = |name: &str| map.get(name).and_then(|v| String::from_redis_value(v).ok());
    let stage = match kind {
        NoticeKind::Alert => None,
        NoticeKind::Escalation => Some(Stage::parse(&field("stage")?)?),
    };
    Some(Event {
        kind,
        tip_id: TipId::parse(&field("tip_id")?)?,
        zone: parse_zone(&field("zone")?)?,
        priority: Priority::parse(&field("priority")?)?,
        stage,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(id: &str, zones: &[&str], supervisor: bool, on_duty: bool) -> DeviceRecord {
        DeviceRecord {
            device_id: id.into(),
            mediator_id: format!("m_{id}"),
            name: id.into(),
            device_name: None,
            zones: zones.iter().map(|z| (*z).to_owned()).collect(),
            supervisor,
            recipient: String::new(),
            signing_key: String::new(),
            on_duty,
            created: 0,
        }
    }

    fn team() -> Vec<DeviceRecord> {
        vec![
            device("north", &["north"], false, true),
            device("north-off", &["north"], false, false),
            device("south", &["south"], false, true),
            device("both", &["north", "south"], false, true),
            device("sup", &[], true, true),
            device("sup-off", &[], true, false),
        ]
    }

    fn event(kind: NoticeKind, zone: ZoneChoice, stage: Option<Stage>) -> Event {
        Event {
            kind,
            tip_id: TipId::random(),
            zone,
            priority: Priority::Now,
            stage,
        }
    }

    fn ids(v: Vec<DeviceId>) -> Vec<String> {
        v.into_iter().map(|d| d.as_str().to_owned()).collect()
    }

    fn north() -> ZoneChoice {
        ZoneChoice::Known(Zone::parse("north").unwrap())
    }

    #[test]
    fn a_new_tip_reaches_on_duty_devices_of_its_zone_and_the_supervisors() {
        let e = event(NoticeKind::Alert, north(), None);
        assert_eq!(ids(targets(&team(), &e)), ["north", "both", "sup"]);
    }

    #[test]
    fn an_unsure_tip_reaches_every_on_duty_device() {
        let e = event(NoticeKind::Alert, ZoneChoice::Unsure, None);
        assert_eq!(ids(targets(&team(), &e)), ["north", "south", "both", "sup"]);
    }

    #[test]
    fn escalation_stage_1_reaches_on_duty_supervisors_and_stage_2_everyone_on_duty() {
        let one = event(NoticeKind::Escalation, north(), Some(Stage::Supervisors));
        assert_eq!(ids(targets(&team(), &one)), ["sup"]);
        let two = event(NoticeKind::Escalation, north(), Some(Stage::Everyone));
        assert_eq!(
            ids(targets(&team(), &two)),
            ["north", "south", "both", "sup"]
        );
    }

    #[test]
    fn events_parse_from_their_stream_fields_and_damaged_ones_do_not() {
        let tip = TipId::random();
        let map = |pairs: &[(&str, &str)]| -> HashMap<String, Value> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Value::BulkString(v.as_bytes().to_vec())))
                .collect()
        };
        let alert = map(&[
            ("tip_id", tip.as_str()),
            ("zone", "unsure"),
            ("priority", "today"),
            ("envelope", "age-encryption.org/v1..."),
        ]);
        let e = parse_event(NoticeKind::Alert, &alert).unwrap();
        assert_eq!(e.zone, ZoneChoice::Unsure);
        assert_eq!(e.priority, Priority::Today);
        assert_eq!(e.stage, None);
        // An escalation needs its stage.
        assert!(parse_event(NoticeKind::Escalation, &alert).is_none());
        let fired = map(&[
            ("tip_id", tip.as_str()),
            ("zone", "north"),
            ("priority", "now"),
            ("stage", "1"),
        ]);
        let e = parse_event(NoticeKind::Escalation, &fired).unwrap();
        assert_eq!(e.stage, Some(Stage::Supervisors));
        for bad in [
            map(&[("tip_id", "x"), ("zone", "north"), ("priority", "now")]),
            map(&[
                ("tip_id", tip.as_str()),
                ("zone", "North"),
                ("priority", "now"),
            ]),
            map(&[
                ("tip_id", tip.as_str()),
                ("zone", "north"),
                ("priority", "asap"),
            ]),
            map(&[("tip_id", tip.as_str()), ("priority", "now")]),
        ] {
            assert!(parse_event(NoticeKind::Alert, &bad).is_none());
        }
    }

    #[test]
    fn only_new_urgent_tips_nudge() {
        let mut e = event(NoticeKind::Alert, north(), None);
        assert!(wants_nudge(&e));
        e.priority = Priority::Today;
        assert!(!wants_nudge(&e));
        let esc = event(NoticeKind::Escalation, north(), Some(Stage::Everyone));
        assert!(!wants_nudge(&esc));
    }
}
