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
            "; Redis is rewriting its AOF so the files on disk lose them too (backups and RDB snapshots made before still hold them)"
        } else {
            "; Redis keeps no AOF here (backups and RDB snapshots made before still hold them)"
        }
    )
}
