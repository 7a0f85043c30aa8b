//! `tipwire mediator add | list | remove`: the directory of recipients; and
//! `tipwire mediator invite | devices | revoke`: enrolment invites (with a QR
//! code of the link for the phone's camera) and enrolled devices.

use std::fmt::Write as _;

use crate::config::Settings;
use crate::crypto::RecipientKey;
use crate::domain::Zone;
use crate::mediator::devices::{DeviceRecord, Invite};
use crate::mediator::offboarding::Offboarded;
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
    let configured = settings.zones.clone();
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

/// What `tipwire mediator list` prints: each directory entry (by name, so a
/// person's entries stand together) with the devices enrolled under it,
/// then devices whose entry is gone (left by an older `remove`: remove them
/// by their device id).
pub fn describe(list: &[MediatorRecord], devices: &[DeviceRecord]) -> String {
    if list.is_empty() && devices.is_empty() {
        return "no mediators enrolled\n".to_owned();
    }
    let mut out = String::from(
        "id               name                 role        zones            recipient\n",
    );
    let device_line = |out: &mut String, d: &DeviceRecord| {
        let _ = writeln!(
            out,
            "  device {:<26} {:<20} on duty: {}",
            d.device_id,
            d.device_name.as_deref().unwrap_or("-"),
            if d.on_duty { "yes" } else { "no" },
        );
    };
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
        for d in devices.iter().filter(|d| d.mediator_id == m.id) {
            device_line(&mut out, d);
        }
    }
    let orphans: Vec<&DeviceRecord> = devices
        .iter()
        .filter(|d| !list.iter().any(|m| m.id == d.mediator_id))
        .collect();
    if !orphans.is_empty() {
        out.push_str("devices without a directory entry (remove them by device id):\n");
        for d in orphans {
            let _ = writeln!(out, "  {}:", d.name);
            device_line(&mut out, d);
        }
    }
    out
}

/// What `tipwire mediator remove` and `revoke` print.
pub fn describe_offboarded(done: &Offboarded) -> String {
    let mut out = String::new();
    match &done.name {
        Some(name) => {
            let _ = writeln!(out, "removed {name}:");
        }
        None => out.push_str("revoked:\n"),
    }
    let list = |ids: &[String]| {
        if ids.is_empty() {
            "none".to_owned()
        } else {
            ids.join(", ")
        }
    };
    let _ = writeln!(
        out,
        "  devices ended: {} (their live streams ended, push subscriptions deleted)",
        list(&done.devices)
    );
    let _ = writeln!(out, "  {} session(s) ended", done.sessions_ended);
    let _ = writeln!(
        out,
        "  directory entries removed: {} (no recipient of new tips)",
        list(&done.entries)
    );
    if done.name.is_some() {
        let _ = writeln!(
            out,
            "  pending invites cancelled: {}",
            done.invites_cancelled
        );
    }
    let _ = writeln!(
        out,
        "  alerts they had claimed, open again and escalating: {}",
        done.claims_reopened
    );
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
