//! `tipwire alerts tail --identity FILE`: follows the alert stream and prints
//! each tip opened with the given identity: the operator's (and the tests')
//! view of what mediators receive. Entries come from Redis and are untrusted;
//! an entry the identity cannot open is reported as such, never guessed at.

use std::fmt::Write as _;

use crate::bus::{AlertReader, StoreError, StoredAlert};
use crate::crypto::{IdentityKey, open};
use crate::domain::TipDocument;

/// A stream entry opened (or not) with the operator's identities.
pub enum Opened {
    Tip(Box<TipDocument>),
    NotForThisIdentity,
    Mismatch,
}

/// Opens one entry and checks the sealed document matches its routing fields.
pub fn open_alert(alert: &StoredAlert, identities: &[IdentityKey]) -> Opened {
    let Ok(plain) = open(&alert.entry.envelope, identities) else {
        return Opened::NotForThisIdentity;
    };
    let plain = zeroize::Zeroizing::new(plain);
    match serde_json::from_slice::<TipDocument>(&plain) {
        Ok(doc)
            if doc.tip_id == alert.entry.tip_id.as_str()
                && doc.zone == alert.entry.zone
                && doc.received == alert.entry.received =>
        {
            Opened::Tip(Box::new(doc))
        }
        _ => Opened::Mismatch,
    }
}

pub fn describe(alert: &StoredAlert, opened: &Opened) -> String {
    let e = &alert.entry;
    let when = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(e.received),
    );
    let mut out = format!(
        "── {when}  tip {}  zone {}  priority {}  channel {}",
        e.tip_id, e.zone, e.priority, e.channel
    );
    if !e.pseudonym.is_empty() {
        let _ = write!(out, "  from {}  thread {}", e.pseudonym, e.thread);
    }
    out.push('\n');
    match opened {
        Opened::Tip(doc) => {
            // Tip text is untrusted: escape sequences must not reach the
            // operator's terminal.
            for line in doc.text.lines() {
                let safe: String = line
                    .chars()
                    .map(|c| {
                        if c.is_control() && c != '\t' {
                            '\u{FFFD}'
                        } else {
                            c
                        }
                    })
                    .collect();
                let _ = writeln!(out, "   {safe}");
            }
        }
        Opened::NotForThisIdentity => {
            out.push_str("   (sealed to other recipients; this identity cannot open it)\n")
        }
        Opened::Mismatch => {
            out.push_str("   (envelope does not match its stream entry: possible tampering)\n")
        }
    }
    out
}

/// Follows the stream from `start` (an entry id, `$` for new entries only),
/// calling `print` for each entry, until `limit` entries were shown (if set).
pub async fn tail(
    reader: &AlertReader,
    identities: &[IdentityKey],
    from_start: bool,
    limit: Option<usize>,
    mut print: impl FnMut(&str),
) -> Result<(), StoreError> {
    let mut last = if from_start {
        "0-0".to_owned()
    } else {
        reader.last_id().await?
    };
    let mut shown = 0usize;
    loop {
        // Blocking reads stay under the connection's response timeout; a few
        // entries at a time, since each carries its sealed attachments.
        for alert in reader.wait_after(&last, 1000, 8).await? {
            print(&describe(&alert, &open_alert(&alert, identities)));
            last = alert.id.clone();
            shown += 1;
            if limit.is_some_and(|l| shown >= l) {
                return Ok(());
            }
        }
    }
}
