//! `tipwire keys init | show | rotate`: making and listing the gateway's keys.
//! Output names versions and fingerprints only, never secret bytes.

use std::fmt::Write as _;

use crate::crypto::{KeyKind, Keyring, KeyringReport, VersionInfo};

pub fn describe_init(report: &KeyringReport) -> String {
    let mut out = String::new();
    for path in &report.written {
        let _ = writeln!(out, "wrote {}", path.display());
    }
    if let (Some(path), Some(public)) = (&report.escrow_identity, &report.escrow_recipient) {
        let _ = writeln!(
            out,
            "\nescrow identity written to {}\n  public key: {public}\n  It opens every tip. Move it offline now (encrypted USB in a safe) and delete it from this server.",
            path.display()
        );
    }
    out
}

pub fn describe_versions(ring: &Keyring) -> String {
    let mut out = String::from("kind       version  fingerprint       current\n");
    for VersionInfo {
        kind,
        version,
        fingerprint,
        current,
    } in ring.versions()
    {
        let _ = writeln!(
            out,
            "{:<10} v{:<7} {fingerprint}  {}",
            kind.to_string(),
            version,
            if current { "yes" } else { "" }
        );
    }
    let _ = writeln!(out, "stream key_version tag: {}", ring.key_version());
    out
}

/// What an administrator must know after `keys rotate KIND`, beyond the files.
pub fn rotation_warning(kind: KeyKind) -> Option<&'static str> {
    match kind {
        KeyKind::Vapid => Some(
            "rotating the VAPID key invalidates every existing push subscription: \
             after the gateways restart, each mediator's phone must turn notifications \
             off and on again (subscribe anew) to get push alerts",
        ),
        KeyKind::Escrow | KeyKind::Relay | KeyKind::Pseudonym => None,
    }
}
