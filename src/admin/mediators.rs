//! `tipwire mediator add | list | remove`: the directory of recipients.

use std::fmt::Write as _;

use crate::config::Settings;
use crate::crypto::RecipientKey;
use crate::domain::Zone;
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
    let recipient = RecipientKey::parse(recipient).map_err(|_| AddError::BadRecipient)?;
    Ok(NewMediator {
        name,
        zones: parsed,
        supervisor,
        recipient,
    })
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
