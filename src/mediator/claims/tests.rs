use super::*;

#[test]
fn every_outcome_code_parses_back_and_nothing_else_does() {
    for o in Outcome::ALL {
        assert_eq!(Outcome::parse(o.as_str()), Ok(o));
    }
    for bad in [
        "",
        "Mediated",
        "resolved",
        "no conflict",
        "other ",
        "police",
    ] {
        assert_eq!(Outcome::parse(bad), Err(UnknownOutcome), "{bad:?}");
    }
}

#[test]
fn device_ids_are_short_and_plain() {
    assert!(DeviceId::parse("m_0123456789ab").is_some());
    assert!(DeviceId::parse("phone-2").is_some());
    assert!(DeviceId::parse("").is_none());
    assert!(DeviceId::parse("a:b").is_none());
    assert!(DeviceId::parse("a b").is_none());
    assert!(DeviceId::parse(&"x".repeat(65)).is_none());
}

#[test]
fn an_untouched_alert_reads_as_open_at_version_zero() {
    assert_eq!(
        status("open", "", "", 0).unwrap(),
        AlertStatus {
            state: AlertState::Open,
            device: None,
            outcome: None,
            version: 0
        }
    );
}

#[test]
fn inconsistent_or_foreign_state_is_refused_as_corrupt() {
    assert!(status("lost", "", "", 1).is_err());
    assert!(status("claimed", "", "", 2).is_err());
    assert!(status("resolved", "d1", "", 3).is_err());
    assert!(status("claimed", "bad device!", "", 1).is_err());
    assert!(status("resolved", "d1", "arrested", 1).is_err());
    assert!(status("resolved", "d1", "mediated", 4).is_ok());
}

#[test]
fn refusals_map_to_stable_codes() {
    assert!(refusal("ok").is_none());
    assert!(refusal("same").is_none());
    assert_eq!(refusal("resolved").unwrap().code(), "alert-resolved");
    assert_eq!(refusal("open").unwrap().code(), "alert-not-claimed");
    assert_eq!(refusal("not-claimant").unwrap().code(), "not-claimant");
    assert_eq!(ClaimError::NotSupervisor.code(), "not-supervisor");
}
