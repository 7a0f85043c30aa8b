//! Replay markers (`<prefix>:seen:<keyed hash>`): one per provider message
//! (SMS webhook, email Message-ID) that changed something, so a retried or
//! replayed delivery changes nothing. The marker's name is a keyed hash of the
//! provider's message id, never the id; its value is `1`; it expires at a
//! whole hour (`EXAT`), so its TTL tells nothing finer. Tips set theirs in the
//! append script; the functions here serve messages that act without
//! appending (carrier keywords) and the cheap check made before any work.

use super::{Store, StoreError};

impl Store {
    /// Whether a message was handled before under any of its markers (one
    /// per kept pseudonym key: a marker set before a key rotation still
    /// refuses a replay after it).
    pub async fn marker_seen(&self, markers: &[&str]) -> Result<bool, StoreError> {
        if markers.is_empty() {
            return Ok(false);
        }
        let mut conn = self.conn().await?;
        let mut exists = redis::cmd("EXISTS");
        for marker in markers {
            exists.arg(self.keys().dedupe(marker));
        }
        let seen: u64 = exists.query_async(&mut conn).await?;
        Ok(seen > 0)
    }

    /// Sets the marker unless it exists; `false` when another delivery of the
    /// same message got there first. `expire_at` is unix seconds, a whole hour.
    pub async fn claim_marker(&self, marker: &str, expire_at: u64) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        let set: Option<String> = redis::cmd("SET")
            .arg(self.keys().dedupe(marker))
            .arg("1")
            .arg("NX")
            .arg("EXAT")
            .arg(expire_at)
            .query_async(&mut conn)
            .await?;
        Ok(set.is_some())
    }

    /// Removes a claimed marker whose message could not be acted on, so the
    /// provider's retry is handled instead of being taken for a replay.
    pub async fn release_marker(&self, marker: &str) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let _: u64 = redis::cmd("DEL")
            .arg(self.keys().dedupe(marker))
            .query_async(&mut conn)
            .await?;
        Ok(())
    }
}
