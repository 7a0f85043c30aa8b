//! `tipwire purge --thread ID` or `--before T`: removes one thread, or
//! everything from before a time, at once (see `bus::purge`), and says what
//! went. Operator input, validated: a thread id is 32 hex digits, a time is
//! what `export --since` takes.

use crate::bus::{Purged, Store, StoreError, purge_before, purge_thread};
use crate::config::Settings;
use crate::domain::ThreadId;

/// What to purge.
pub enum Target {
    Thread(ThreadId),
    /// Unix seconds: everything before this.
    Before(u64),
}

/// The cutoff of `--before` (unix seconds), what `export --since` takes.
/// A time after `now_secs` is refused: it would purge every tip there is
/// (a mistyped year, milliseconds given for seconds); to remove a thread,
/// name it.
pub fn parse_before(s: &str, now_secs: u64) -> Result<u64, String> {
    let Some(cutoff) = super::export::parse_since(s, now_secs) else {
        return Err(format!(
            "--before {s:?}: use unix seconds, an RFC 3339 time or an age like 90d"
        ));
    };
    if cutoff > now_secs {
        return Err(format!(
            "--before {s:?} is in the future and would purge every tip; give a past time"
        ));
    }
    Ok(cutoff)
}

pub async fn purge(
    settings: &Settings,
    store: &Store,
    target: &Target,
) -> Result<Purged, StoreError> {
    match target {
        Target::Thread(thread) => purge_thread(store, thread).await,
        Target::Before(cutoff) => {
            let days = settings
                .sms
                .reply_address_days
                .max(settings.email.reply_address_days);
            purge_before(store, *cutoff, days.saturating_mul(86_400)).await
        }
    }
}

pub fn describe(purged: &Purged) -> String {
    format!(
        "purged {} tip(s), {} other entries and {} key(s){}\n",
        purged.tips,
        purged.entries,
        purged.keys,
        if purged.aof_rewritten {
            "; Redis rewrote its AOF and removed the old files, so the files on disk lose them too (backups and RDB snapshots made before still hold them)"
        } else {
            "; Redis keeps no AOF here (backups and RDB snapshots made before still hold them)"
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn before_takes_past_times_only() {
        assert_eq!(parse_before("1700000000", 1_800_000_000), Ok(1_700_000_000));
        assert_eq!(parse_before("2d", 1_000_000), Ok(1_000_000 - 172_800));
        assert!(parse_before("1700000001", 1_700_000_000).is_err());
        assert!(parse_before("2999-01-01T00:00:00Z", 1_700_000_000).is_err());
        assert!(parse_before("-5", 1_700_000_000).is_err());
    }
}
