//! A work queue's retries and dead letters, one implementation for the reply
//! relay and push delivery. A failed entry is written, as a JSON object, to
//! the queue's retry timer set ([`super::timers`]) in the script that ends
//! its lease and deletes it ([`WorkQueue::finish`]); [`Retries::promote`]
//! takes the due ones and appends each back to the queue's stream with its
//! fields in a fixed order, in one script; an entry that will not be retried
//! goes to the dead-letter stream with its lease ended, atomically
//! ([`WorkQueue::dead_letter`]).
//!
//! Untrusted: retry members read back (a member that is not a JSON object is
//! dropped; missing fields come back as `nil` and the consumer's re-validation
//! dead-letters the entry).

use super::queue::WorkQueue;
use super::scripts::{QUEUE_PROMOTE, TIMER_FNS};
use super::timers::TimerSet;
use super::timing::minute_floor;
use super::{StoreError, coarse_script};

/// Due retries moved per promote, at most; a backlog drains over the next
/// steps.
const PROMOTE_BATCH: usize = 100;

fn promote_script() -> &'static redis::Script {
    static SCRIPT: std::sync::OnceLock<redis::Script> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| coarse_script(&format!("{TIMER_FNS}{QUEUE_PROMOTE}")))
}

/// Where one queue's failed entries wait and end.
#[derive(Debug, Clone)]
pub struct Retries {
    schedule: TimerSet,
    dead: String,
    /// The stream fields of an entry, in order: the keys of a retry member.
    fields: &'static [&'static str],
}

impl Retries {
    /// Retries wait in the timer set `schedule` and end in the stream `dead`;
    /// `fields` are the entry's stream fields, in order.
    pub fn new(
        schedule: impl Into<String>,
        dead: impl Into<String>,
        fields: &'static [&'static str],
    ) -> Self {
        Self {
            schedule: TimerSet::new(schedule),
            dead: dead.into(),
            fields,
        }
    }

    /// Due retries (at `now_ms`) back into `queue`'s stream, with ids at
    /// `now_ms`'s minute; returns how many were promoted. A member that could
    /// not be read is removed and logged (only its count: it may hold sealed
    /// text).
    pub async fn promote(&self, queue: &WorkQueue, now_ms: u64) -> Result<u64, StoreError> {
        let mut conn = queue.store().conn().await?;
        let mut invocation = promote_script().key(self.schedule.key());
        invocation
            .key(queue.stream())
            .arg(now_ms)
            .arg(minute_floor(now_ms))
            .arg(PROMOTE_BATCH);
        for field in self.fields {
            invocation.arg(*field);
        }
        let (promoted, unreadable): (u64, u64) = invocation.invoke_async(&mut conn).await?;
        if unreadable > 0 {
            tracing::warn!(
                queue = queue.stream(),
                unreadable,
                "retries that were not JSON objects were dropped"
            );
        }
        Ok(promoted)
    }

    /// Ends `id`'s lease and deletes it from `queue`'s stream; with `retry`
    /// (a JSON member, its due time: a minute boundary) schedules it again in
    /// the same script, if this consumer still holds it.
    pub async fn finish(
        &self,
        queue: &WorkQueue,
        id: &str,
        retry: Option<(String, u64)>,
    ) -> Result<(), StoreError> {
        queue
            .finish(id, retry.map(|(m, due)| (self.schedule.key(), m, due)))
            .await
    }

    /// Moves `id` to the dead letters (an id at `minute_ms`, these `fields`),
    /// ends its lease and deletes it, atomically; returns the dead letter's id.
    pub async fn dead_letter(
        &self,
        queue: &WorkQueue,
        id: &str,
        minute_ms: u64,
        fields: &[String],
    ) -> Result<String, StoreError> {
        queue.dead_letter(&self.dead, id, minute_ms, fields).await
    }
}
