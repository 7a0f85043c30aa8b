//! The only message a push carries: which alert, in which zone, how urgent.
//! Built from parsed domain types, so tip text has no way in; the phone
//! fetches and opens the sealed tip itself. No untrusted input.

use crate::domain::{Priority, TipId, Zone};

use super::client::Urgency;

/// `{"alert": "<tip id>", "zone": "<zone>", "urgency": "<RFC 8030 urgency>"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertNotice<'a> {
    pub tip_id: &'a TipId,
    pub zone: &'a Zone,
    pub urgency: Urgency,
}

impl AlertNotice<'_> {
    /// The plaintext to hand to [`super::PushClient::send`]: well under
    /// [`super::MAX_PLAINTEXT`] (ids and zones are short by construction).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::json!({
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

    #[test]
    fn a_notice_holds_the_alert_id_zone_and_urgency_and_nothing_else() {
        let tip = TipId::random();
        let zone = Zone::parse("north-side").unwrap();
        let notice = AlertNotice {
            tip_id: &tip,
            zone: &zone,
            urgency: Priority::Now.into(),
        };
        let json: serde_json::Value = serde_json::from_slice(&notice.to_json()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"alert": tip.as_str(), "zone": "north-side", "urgency": "high"})
        );
        assert!(notice.to_json().len() < 128);
    }

    #[test]
    fn priorities_map_to_rfc_8030_urgencies() {
        assert_eq!(Urgency::from(Priority::Now), Urgency::High);
        assert_eq!(Urgency::from(Priority::Today), Urgency::Normal);
        assert_eq!(Urgency::from(Priority::Fyi), Urgency::Low);
    }
}
