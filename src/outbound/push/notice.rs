//! The only message a push carries: which alert, in which zone, how urgent,
//! and whether it is new or an escalation. Built from parsed domain types, so
//! tip text has no way in; the phone fetches and opens the sealed tip itself.
//! No untrusted input.

use crate::domain::{Priority, TipId, ZoneChoice};

use crate::outbound::push::client::Urgency;

/// Why the phone is woken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeKind {
    /// A new alert for the device's zones.
    Alert,
    /// Nobody claimed an alert in time (`mediator::escalation`).
    Escalation,
}

impl NoticeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alert => "alert",
            Self::Escalation => "escalation",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "alert" => Some(Self::Alert),
            "escalation" => Some(Self::Escalation),
            _ => None,
        }
    }
}

/// `{"kind": "alert"|"escalation", "alert": "<tip id>", "zone": "<zone or
/// unsure>", "urgency": "<RFC 8030 urgency>"}`. The app uses the alert id as
/// the notification tag, so a push delivered twice (delivery is at least
/// once) replaces its own notification instead of showing two.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertNotice<'a> {
    pub kind: NoticeKind,
    pub tip_id: &'a TipId,
    pub zone: &'a ZoneChoice,
    pub urgency: Urgency,
}

impl AlertNotice<'_> {
    /// The plaintext to hand to [`crate::outbound::push::PushClient::send`]: well under
    /// [`crate::outbound::push::MAX_PLAINTEXT`] (ids and zones are short by construction).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::json!({
            "kind": self.kind.as_str(),
            "alert": self.tip_id.as_str(),
            "zone": self.zone.as_str(),
            "urgency": self.urgency.as_str(),
        })
        .to_string()
        .into_bytes()
    }
}

impl From<Priority> for Urgency {
    /// `now` wakes the phone at once; `fyi` may wait for the charger.
    fn from(priority: Priority) -> Self {
        match priority {
            Priority::Now => Self::High,
            Priority::Today => Self::Normal,
            Priority::Fyi => Self::Low,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Zone;

    #[test]
    fn a_notice_holds_the_kind_alert_id_zone_and_urgency_and_nothing_else() {
        let tip = TipId::random();
        let zone = ZoneChoice::Known(Zone::parse("north-side").unwrap());
        let notice = AlertNotice {
            kind: NoticeKind::Alert,
            tip_id: &tip,
            zone: &zone,
            urgency: Priority::Now.into(),
        };
        let json: serde_json::Value = serde_json::from_slice(&notice.to_json()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"kind": "alert", "alert": tip.as_str(), "zone": "north-side", "urgency": "high"})
        );
        assert!(notice.to_json().len() < 160);
        let unsure = AlertNotice {
            kind: NoticeKind::Escalation,
            zone: &ZoneChoice::Unsure,
            ..notice
        };
        let json: serde_json::Value = serde_json::from_slice(&unsure.to_json()).unwrap();
        assert_eq!(json["kind"], "escalation");
        assert_eq!(json["zone"], "unsure");
    }

    #[test]
    fn kinds_round_trip_and_nothing_else_parses() {
        for kind in [NoticeKind::Alert, NoticeKind::Escalation] {
            assert_eq!(NoticeKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(NoticeKind::parse("Alert"), None);
        assert_eq!(NoticeKind::parse(""), None);
    }

    #[test]
    fn priorities_map_to_rfc_8030_urgencies() {
        assert_eq!(Urgency::from(Priority::Now), Urgency::High);
        assert_eq!(Urgency::from(Priority::Today), Urgency::Normal);
        assert_eq!(Urgency::from(Priority::Fyi), Urgency::Low);
    }
}
