//! `tipwire mediator add | list | remove`: the directory of recipients; and
//! `tipwire mediator invite | devices | revoke`: enrolment invites (with a QR
//! code of the link for the phone's camera) and enrolled devices.

use std::fmt::Write as _;

use crate::config::Settings;
use crate::crypto::RecipientKey;
use crate::domain::Zone;
use crate::mediator::devices::{DeviceRecord, Invite};
use crate::mediator::{MediatorRecord, NewMediator};

#[derive(Debug, thiserror::Error)]
pub enum AddError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(
        "--zone {0}: not a configured zone (configured: {1}). Fix: use one of those ids or add the zone to the config"
    )]
    UnknownZone(String, String),
    #[error(
        "--recipient: not an age X25519 recipient (age1…). Fix: paste the public key printed by `age-keygen` or the device"
    )]
    BadRecipient,
}

/// Parses the CLI's words into a mediator to enrol, against configured zones.
pub fn parse_new(
    settings: &Settings,
    name: String,
    zones: &[String],
    supervisor: bool,
    recipient: &str,
) -> Result<NewMediator, AddError> {
    let parsed = parse_zones(settings, zones)?;
    let recipient = RecipientKey::parse(recipient).map_err(|_| AddError::BadRecipient)?;
    Ok(NewMediator {
        name,
        zones: parsed,
        supervisor,
        recipient,
    })
}

/// Zone ids from `--zone`/`--zones` words (repeated or comma-separated),
/// each one of the configured zones.
pub fn parse_zones(settings: &Settings, zones: &[String]) -> Result<Vec<Zone>, AddError> {
    let configured = settings.zones()?;
    let mut parsed = Vec::new();
    for z in zones
        .iter()
        .flat_map(|z| z.split(','))
        .map(str::trim)
        .filter(|z| !z.is_empty())
    {
        let zone = Zone::parse(z)
            .ok()
            .filter(|zone| configured.iter().any(|(c, _)| c == zone))
            .ok_or_else(|| {
                let names: Vec<_> = configured.iter().map(|(c, _)| c.as_str()).collect();
                AddError::UnknownZone(z.to_owned(), names.join(", "))
            })?;
        parsed.push(zone);
    }
    Ok(parsed)
}

pub fn describe(list: &[MediatorRecord]) -> String {
    if list.is_empty() {
        return "no mediators enrolled\n".to_owned();
    }
    let mut out = String::from(
        "id               name                 role        zones            recipient\n",
    );
    for m in list {
        let _ = writeln!(
            out,
            "{:<16} {:<20} {:<11} {:<16} {}",
            m.id,
            m.name,
            if m.supervisor {
                "supervisor"
            } else {
                "mediator"
            },
            if m.zones.is_empty() {
                "(all)".to_owned()
            } else {
                m.zones.join(",")
            },
            m.recipient
        );
    }
    out
}

/// What `tipwire mediator invite` prints: the link, the code to type if the
/// camera fails, the expiry and the link as a QR code.
pub fn describe_invite(invite: &Invite, name: &str) -> String {
    let expires = humantime::format_rfc3339_seconds(invite.expires);
    let minutes = invite
        .expires
        .duration_since(std::time::SystemTime::now())
        .map_or(0, |d| d.as_secs().div_ceil(60));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Enrolment invite for {name}: one phone, once, within {minutes} minutes (until {expires}).\n"
    );
    out.push_str(&qr_code(&invite.link));
    let _ = writeln!(out, "\nlink: {}", invite.link);
    let _ = writeln!(out, "code: {}", invite.code.grouped());
    let _ = writeln!(out, "expires: {expires}");
    out.push_str(
        "\nOpen the link on the mediator's phone (scan the code above), or open /m/ there and type the code.\n\
         Anyone holding the link can enrol until it is used or expires: hand it over in person.\n",
    );
    out
}

/// The text as a QR code drawn with Unicode half blocks, light on dark, with
/// its quiet zone, so it scans from a dark terminal.
pub fn qr_code(text: &str) -> String {
    use qrcode::render::unicode::Dense1x2;
    match qrcode::QrCode::with_error_correction_level(text, qrcode::EcLevel::M) {
        Ok(code) => {
            let mut drawn = code
                .render::<Dense1x2>()
                .dark_color(Dense1x2::Light)
                .light_color(Dense1x2::Dark)
                .build();
            drawn.push('\n');
            drawn
        }
        Err(_) => "(the link is too long for a QR code; use the link or the code)\n".to_owned(),
    }
}

/// What `tipwire mediator devices` prints.
pub fn describe_devices(list: &[DeviceRecord]) -> String {
    if list.is_empty() {
        return "no devices enrolled\n".to_owned();
    }
    let mut out = String::from(
        "device                     name                 role        zones            on duty  mediator         device name\n",
    );
    for d in list {
        let _ = writeln!(
            out,
            "{:<26} {:<20} {:<11} {:<16} {:<8} {:<16} {}",
            d.device_id,
            d.name,
            if d.supervisor {
                "supervisor"
            } else {
                "mediator"
            },
            if d.zones.is_empty() {
                "(all)".to_owned()
            } else {
                d.zones.join(",")
            },
            if d.on_duty { "yes" } else { "no" },
            d.mediator_id,
            d.device_name.as_deref().unwrap_or("-"),
        );
    }
    out
}
