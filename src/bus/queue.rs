//! Work queues on streams without Redis consumer groups.
//!
//! A consumer group records time that tipwire never asked for: every
//! `XREADGROUP` is written to the AOF as `XCLAIM … TIME <delivery ms>`, and
//! each pending entry's delivery time and each consumer's seen-time stay in
//! memory and go into the RDB preamble at an AOF rewrite. A worker reads an
//! alert a few milliseconds after it arrived, so those records would keep
//! every tip's arrival to the millisecond. This queue keeps the same
//! guarantees with state that holds no time finer than the minute:
//!
//! - `<stream>:<group>:cursor`: the id of the last entry handed out (stream
//!   ids are minute-coarse already).
//! - `<stream>:<group>:leases`: sorted set, entry id → when its lease ends, a
//!   minute boundary ([`super::timing::coarse_due`]).
//! - `<stream>:<group>:owners`: hash, entry id → the consumer holding it.
//!
//! [`WorkQueue::take`] leases entries whose lease ended (a crashed or stalled
//! worker's) and then new ones, in one script, so each entry is handed out
//! once per lease: **at least once** across any number of replicas. The
//! worker acknowledges in the same script or transaction that acts on the
//! entry ([`QUEUE_ACK_FN`], [`WorkQueue::finish`]); before a send it calls
//! [`WorkQueue::own`], which fails if another worker took the entry over
//! meanwhile and otherwise extends the lease.
//!
//! Untrusted: entries read back are re-validated by the callers.

use redis::streams::StreamRangeReply;

use super::names::Keys;
use super::scripts::{
    QUEUE_ACK_FN, QUEUE_DEAD, QUEUE_MIGRATE, QUEUE_OWN, QUEUE_OWNS_FN, QUEUE_RETRY, QUEUE_TAKE,
    TIMER_FNS,
};
use super::timing::coarse_due;
use super::{Store, StoreError, coarse_script};

/// One queue: a stream and a group name, as seen by one consumer.
#[derive(Clone)]
pub struct WorkQueue {
    store: Store,
    stream: String,
    cursor: String,
    leases: String,
    owners: String,
    group: &'static str,
    consumer: String,
    lease_ms: u64,
}

/// Scripts shared by every queue, compiled once per process.
struct Scripts {
    take: redis::Script,
    own: redis::Script,
    migrate: redis::Script,
    retry: redis::Script,
    dead: redis::Script,
}

fn scripts() -> &'static Scripts {
    static SCRIPTS: std::sync::OnceLock<Scripts> = std::sync::OnceLock::new();
    SCRIPTS.get_or_init(|| Scripts {
        take: redis::Script::new(QUEUE_TAKE),
        own: redis::Script::new(&format!("{QUEUE_OWNS_FN}{QUEUE_OWN}")),
        migrate: redis::Script::new(QUEUE_MIGRATE),
        retry: redis::Script::new(&format!(
            "{TIMER_FNS}{QUEUE_ACK_FN}{QUEUE_OWNS_FN}{QUEUE_RETRY}"
        )),
        dead: coarse_script(&format!("{QUEUE_ACK_FN}{QUEUE_DEAD}")),
    })
}

impl WorkQueue {
    /// The queue `group` on `stream` for `consumer`; a lease lasts at least
    /// `lease_ms` (rounded up to a minute boundary).
    pub fn new(
        store: Store,
        stream: &str,
        group: &'static str,
        consumer: &str,
        lease_ms: u64,
    ) -> Self {
        let keys: &Keys = store.keys();
        Self {
            cursor: keys.queue_cursor(stream, group),
            leases: keys.queue_leases(stream, group),
            owners: keys.queue_owners(stream, group),
            stream: stream.to_owned(),
            group,
            consumer: consumer.to_owned(),
            lease_ms,
            store,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn stream(&self) -> &str {
        &self.stream
    }

    pub fn leases(&self) -> &str {
        &self.leases
    }

    pub fn owners(&self) -> &str {
        &self.owners
    }

    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    fn lease_end(&self, now_ms: u64) -> u64 {
        coarse_due(now_ms, self.lease_ms)
    }

    /// Takes over a consumer group of this queue's name left by an older
    /// tipwire, once; then nothing.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.store.conn().await?;
        let _: i64 = scripts()
            .migrate
            .key(&self.stream)
            .key(&self.cursor)
            .key(&self.leases)
            .key(&self.owners)
            .arg(self.group)
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Leases up to `count` entries whose lease ended and up to `count` new
    /// ones (after the cursor; a new queue starts after `start`, a stream
    /// id), at `now_ms`.
    pub async fn take(
        &self,
        now_ms: u64,
        count: usize,
        start: &str,
    ) -> Result<StreamRangeReply, StoreError> {
        let mut conn = self.store.conn().await?;
        Ok(scripts()
            .take
            .key(&self.stream)
            .key(&self.cursor)
            .key(&self.leases)
            .key(&self.owners)
            .arg(&self.consumer)
            .arg(now_ms)
            .arg(self.lease_end(now_ms))
            .arg(count.max(1))
            .arg(start)
            .invoke_async(&mut conn)
            .await?)
    }

    /// Whether this consumer still holds `id`; if so its lease is extended,
    /// so nobody takes it over during a send.
    pub async fn own(&self, id: &str, now_ms: u64) -> Result<bool, StoreError> {
        let mut conn = self.store.conn().await?;
        let owned: i64 = scripts()
            .own
            .key(&self.leases)
            .key(&self.owners)
            .arg(&self.consumer)
            .arg(id)
            .arg(self.lease_end(now_ms))
            .invoke_async(&mut conn)
            .await?;
        Ok(owned == 1)
    }

    /// Ends `id`'s lease and deletes it from the stream (a job done); with
    /// `retry` (sorted set, member, due time: a minute boundary) schedules it
    /// again, in the same script, if this consumer still holds it (else
    /// leaves it to the one that does).
    pub async fn finish(
        &self,
        id: &str,
        retry: Option<(&str, String, u64)>,
    ) -> Result<(), StoreError> {
        let mut conn = self.store.conn().await?;
        if let Some((schedule, member, due)) = retry {
            let _: i64 = scripts()
                .retry
                .key(&self.stream)
                .key(&self.leases)
                .key(&self.owners)
                .key(schedule)
                .arg(id)
                .arg(&self.consumer)
                .arg(member)
                .arg(due)
                .invoke_async(&mut conn)
                .await?;
            return Ok(());
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        pipe.zrem(&self.leases, id)
            .ignore()
            .hdel(&self.owners, id)
            .ignore()
            .xdel(&self.stream, &[id])
            .ignore();
        let _: () = pipe.query_async(&mut conn).await?;
        Ok(())
    }

    /// Moves `id` to the stream `dead` (an id at `minute_ms`, these
    /// `fields`), ends its lease and deletes it, atomically; returns the
    /// dead letter's id.
    pub async fn dead_letter(
        &self,
        dead: &str,
        id: &str,
        minute_ms: u64,
        fields: &[String],
    ) -> Result<String, StoreError> {
        let mut conn = self.store.conn().await?;
        Ok(scripts()
            .dead
            .key(&self.stream)
            .key(dead)
            .key(&self.leases)
            .key(&self.owners)
            .arg(id)
            .arg(minute_ms)
            .arg(fields)
            .invoke_async(&mut conn)
            .await?)
    }
}
