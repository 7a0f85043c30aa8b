//! Retention: tips older than the configured period are trimmed from the alert
//! stream with `XTRIM MINID`. The background task in `app` calls this on a
//! timer; tests call it directly.

use super::{Store, StoreError};

/// Removes every entry received before `cutoff_unix_secs`; returns how many.
pub async fn trim_older_than(store: &Store, cutoff_unix_secs: u64) -> Result<u64, StoreError> {
    let mut conn = store.conn().await?;
    let removed: u64 = redis::cmd("XTRIM")
        .arg(store.keys().alerts())
        .arg("MINID")
        .arg(cutoff_unix_secs.saturating_mul(1000))
        .query_async(&mut conn)
        .await?;
    Ok(removed)
}
