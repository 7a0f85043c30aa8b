//! Start-up checks of the settings that span sections.

use super::*;

fn raw_defaults() -> RawSettings {
    config::Config::builder()
        .add_source(config::File::from_str(
            DEFAULT_TOML,
            config::FileFormat::Toml,
        ))
        .build()
        .unwrap()
        .try_deserialize()
        .unwrap()
}

fn defaults() -> Settings {
    raw_defaults().validate().unwrap()
}

#[test]
fn the_shipped_defaults_are_valid() {
    defaults().validate().unwrap();
}

#[test]
fn plaintext_on_a_public_address_is_refused_with_the_setting_named() {
    let mut s = defaults();
    s.server.mode = ServerMode::Plaintext;
    s.server.host = std::net::Ipv4Addr::UNSPECIFIED.into();
    let msg = s.validate().unwrap_err().to_string();
    assert!(msg.starts_with("server.mode:"), "{msg}");
    assert!(msg.contains("Fix:"), "{msg}");
    s.server.host = std::net::Ipv6Addr::LOCALHOST.into();
    // Behind an onion service loopback is everyone: /metrics must not answer it.
    let msg = s.validate().unwrap_err().to_string();
    assert!(msg.starts_with("server.metrics_allow:"), "{msg}");
    s.server.metrics_allow.clear();
    s.validate().unwrap();
}

#[test]
fn a_tip_address_with_a_plus_is_refused() {
    let mut s = defaults();
    s.email.enabled = true;
    s.email.addresses = vec![crate::domain::EmailAddress::parse("cvi+tips@example.org").unwrap()];
    let msg = s.validate().unwrap_err().to_string();
    assert!(msg.starts_with("email.addresses:"), "{msg}");
}

#[test]
fn smtp_capacity_settings_that_cannot_work_are_refused_with_the_setting_named() {
    let mut s = defaults();
    s.email.enabled = true;
    s.email.addresses = vec![crate::domain::EmailAddress::parse("tips@example.org").unwrap()];
    s.validate().unwrap();
    s.email.max_buffered_bytes = s.email.max_message_bytes - 1;
    let msg = s.validate().unwrap_err().to_string();
    assert!(msg.starts_with("email.max_buffered_bytes:"), "{msg}");
    s.email.max_buffered_bytes = s.email.max_message_bytes;
    s.email.min_data_rate_bytes = 0;
    let msg = s.validate().unwrap_err().to_string();
    assert!(msg.starts_with("email.min_data_rate_bytes"), "{msg}");
    s.email.min_data_rate_bytes = 1;
    s.email.max_connections_per_network = 0;
    let msg = s.validate().unwrap_err().to_string();
    assert!(
        msg.starts_with("email.max_connections_per_network"),
        "{msg}"
    );
}

#[test]
fn an_outbound_mail_timeout_longer_than_the_relay_lease_allows_is_refused() {
    let mut s = defaults();
    let out = &mut s.email.outbound;
    out.enabled = true;
    out.relay_host = "smtp.example.org".into();
    out.relay_port = 587;
    out.timeout = Duration::from_secs(30);
    s.validate().unwrap();
    for bad in [0, 31, 600] {
        s.email.outbound.timeout = Duration::from_secs(bad);
        let msg = s.validate().unwrap_err().to_string();
        assert!(msg.starts_with("email.outbound.timeout_secs:"), "{msg}");
    }
}

#[test]
fn duplicate_and_reserved_zones_are_refused() {
    let mut s = raw_defaults();
    s.zones.push(ZoneSettings {
        id: "north".into(),
        name: "again".into(),
    });
    assert!(
        s.validate()
            .unwrap_err()
            .to_string()
            .contains("listed twice")
    );
    let mut s = raw_defaults();
    s.zones.push(ZoneSettings {
        id: "unsure".into(),
        name: "x".into(),
    });
    assert!(
        s.validate()
            .unwrap_err()
            .to_string()
            .starts_with("zones.id")
    );
}

#[test]
fn a_body_limit_too_small_for_the_text_limit_is_refused() {
    let mut s = defaults();
    s.server.max_body_bytes = 1000;
    let msg = s.validate().unwrap_err().to_string();
    assert!(msg.starts_with("server.max_body_bytes:"), "{msg}");
}

#[test]
fn reply_addresses_kept_longer_than_the_tips_are_refused() {
    let mut s = defaults();
    s.retention.period = Duration::from_secs(7 * 86_400);
    s.email.reply_address_days = 7;
    s.sms.reply_address_days = 8;
    let msg = s.validate().unwrap_err().to_string();
    assert!(msg.starts_with("sms.reply_address_days:"), "{msg}");
    s.sms.reply_address_days = 7;
    s.validate().unwrap();
    s.email.reply_address_days = 30;
    let msg = s.validate().unwrap_err().to_string();
    assert!(msg.starts_with("email.reply_address_days:"), "{msg}");
}

#[test]
fn bad_proxy_entries_are_named() {
    let mut s = raw_defaults();
    s.server.trusted_proxies = vec!["10.0.0.0/8".into(), "proxy.local".into()];
    let msg = s.validate().unwrap_err().to_string();
    assert!(msg.contains("proxy.local"), "{msg}");
}

#[test]
fn a_disabled_email_section_is_typed_without_its_checks() {
    let load = |email: &str, outbound: &str| {
        let file = format!(
            "[email]\n{email}addresses = [\"not-an-address\"]\nhost = \"mx.example.org\"\n\
             default_priority = \"soon\"\n[email.outbound]\n{outbound}nudge_from = \"nobody\"\n\
             timeout_secs = 0\n"
        );
        Settings::load_sources(
            Some(config::File::from_str(&file, config::FileFormat::Toml)),
            Some(config::Map::new()),
        )
    };
    let s = load("", "").unwrap();
    assert!(s.email.addresses.is_empty());
    assert_eq!(
        s.email.host,
        std::net::IpAddr::from(std::net::Ipv4Addr::UNSPECIFIED)
    );
    assert_eq!(s.email.default_priority, crate::domain::Priority::Today);
    assert!(s.email.outbound.nudge_from.is_none());
    s.validate().unwrap();

    let msg = load("enabled = true\n", "").unwrap_err().to_string();
    assert!(
        msg.starts_with("email.addresses: \"not-an-address\""),
        "{msg}"
    );
    let msg = load("", "enabled = true\n").unwrap_err().to_string();
    assert!(
        msg.starts_with("email.outbound.nudge_from: \"nobody\""),
        "{msg}"
    );
}
