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
//! entry ([`ACK_FN_LUA`], [`WorkQueue::finish`]); before a send it calls
//! [`WorkQueue::own`], which fails if another worker took the entry over
//! meanwhile and otherwise extends the lease.
//!
//! Untrusted: entries read back are re-validated by the callers.

use redis::streams::StreamRangeReply;

use super::names::Keys;
use super::timing::coarse_due;
use super::{Store, StoreError, coarse_script};

/// Lua: `queue_ack(leases, owners, id)` ends an entry's lease.
pub const ACK_FN_LUA: &str = r"
local function queue_ack(leases, owners, id)
  redis.call('ZREM', leases, id)
  redis.call('HDEL', owners, id)
end
";

/// Lua: `queue_owns(owners, id, consumer)`, whether `consumer` holds `id`.
pub const OWNS_FN_LUA: &str = r"
local function queue_owns(owners, id, consumer)
  return redis.call('HGET', owners, id) == consumer
end
";

/// `KEYS[1]` the stream, `KEYS[2]` the cursor, `KEYS[3]` the leases,
/// `KEYS[4]` the owners; `ARGV[1]` the consumer, `ARGV[2]` now (ms; only
/// compared, never written), `ARGV[3]` the new lease end (a minute
/// boundary), `ARGV[4]` at most how many entries of each kind, `ARGV[5]`
/// where a new queue starts (an id). Entries whose lease ended come first;
/// one that is gone from the stream (trimmed, deleted) is forgotten. Returns
/// entries as `XRANGE` does.
const TAKE_LUA: &str = r"
local out = {}
local n = tonumber(ARGV[4])
local ended = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[2], 'LIMIT', 0, n)
for _, id in ipairs(ended) do
  local e = redis.call('XRANGE', KEYS[1], id, id)
  if e[1] then
    redis.call('ZADD', KEYS[3], ARGV[3], id)
    redis.call('HSET', KEYS[4], id, ARGV[1])
    out[#out + 1] = e[1]
  else
    redis.call('ZREM', KEYS[3], id)
    redis.call('HDEL', KEYS[4], id)
  end
end
local cursor = redis.call('GET', KEYS[2])
if not cursor then
  cursor = ARGV[5]
  redis.call('SET', KEYS[2], cursor)
end
local new = redis.call('XRANGE', KEYS[1], '(' .. cursor, '+', 'COUNT', n)
for _, e in ipairs(new) do
  redis.call('ZADD', KEYS[3], ARGV[3], e[1])
  redis.call('HSET', KEYS[4], e[1], ARGV[1])
  out[#out + 1] = e
end
if new[#new] then redis.call('SET', KEYS[2], new[#new][1]) end
return out
";

/// `KEYS[1]` the leases, `KEYS[2]` the owners; `ARGV[1]` the consumer,
/// `ARGV[2]` the id, `ARGV[3]` the new lease end. 1 if the consumer still
/// holds the entry (its lease is extended), else 0.
const OWN_LUA: &str = r"
if not queue_owns(KEYS[2], ARGV[2], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], 'XX', ARGV[3], ARGV[2])
return 1
";

/// Moves a consumer group of the same name left by an older tipwire into
/// the queue: its last-delivered id becomes the cursor (unless there is one),
/// its pending entries leases that have ended (so they are retried), and the
/// group, with the times it holds, is destroyed. `KEYS` as for
/// [`TAKE_LUA`]; `ARGV[1]` the group name.
const MIGRATE_LUA: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local name, last
  for i = 1, #g, 2 do
    if g[i] == 'name' then name = g[i + 1] end
    if g[i] == 'last-delivered-id' then last = g[i + 1] end
  end
  if name == ARGV[1] then
    if last and redis.call('EXISTS', KEYS[2]) == 0 then redis.call('SET', KEYS[2], last) end
    local from = '-'
    repeat
      local pending = redis.call('XPENDING', KEYS[1], ARGV[1], from, '+', 100)
      for _, p in ipairs(pending) do
        redis.call('ZADD', KEYS[3], 'NX', 0, p[1])
        redis.call('HSETNX', KEYS[4], p[1], '')
        from = '(' .. p[1]
      end
    until #pending < 100
    redis.call('XGROUP', 'DESTROY', KEYS[1], ARGV[1])
    return 1
  end
end
return 0
";

/// `KEYS[1]` the stream, `KEYS[2]` the leases, `KEYS[3]` the owners,
/// `KEYS[4]` the retry schedule; `ARGV[1]` the id, `ARGV[2]` the consumer,
/// `ARGV[3]` the member, `ARGV[4]` its due time. Only the entry's holder
/// schedules it again: a worker whose lease was taken over leaves the entry
/// to the new holder, which may be sending it right now. 1 if scheduled.
const RETRY_LUA: &str = r"
if not queue_owns(KEYS[3], ARGV[1], ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[3])
queue_ack(KEYS[2], KEYS[3], ARGV[1])
redis.call('XDEL', KEYS[1], ARGV[1])
return 1
";

/// `KEYS[1]` the stream, `KEYS[2]` the dead letters, `KEYS[3]` the leases,
/// `KEYS[4]` the owners; `ARGV[1]` the id, `ARGV[2]` the minute (ms) for the
/// dead letter's id, then its fields. Appends, ends the lease and deletes
/// the entry, atomically.
const DEAD_LUA: &str = r"
local id = coarse_xadd(KEYS[2], ARGV[2], {unpack(ARGV, 3)})
queue_ack(KEYS[3], KEYS[4], ARGV[1])
redis.call('XDEL', KEYS[1], ARGV[1])
return id
";

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
        take: redis::Script::new(TAKE_LUA),
        own: redis::Script::new(&format!("{OWNS_FN_LUA}{OWN_LUA}")),
        migrate: redis::Script::new(MIGRATE_LUA),
        retry: redis::Script::new(&format!("{ACK_FN_LUA}{OWNS_FN_LUA}{RETRY_LUA}")),
        dead: coarse_script(&format!("{ACK_FN_LUA}{DEAD_LUA}")),
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
