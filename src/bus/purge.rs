//! Purge on an administrator's order (`tipwire purge`): one thread, or
//! everything from before a date, gone from Redis at once instead of at the
//! end of the retention period.
//!
//! A purged thread's sealed reply address, and every queued, retried or
//! dead-lettered message to its tipster (the other things sealed to the relay
//! key for it), are deleted, and the AOF is rewritten so the files on disk no
//! longer hold them either: crypto-shredding, so a relay key that leaks later
//! opens nothing of the thread. Opt-out markers stay: they hold only a
//! pseudonym, and dropping one would let replies reach a tipster who said
//! STOP once they write again; they expire as usual.
//!
//! Stream entries, schedule members and list items read back are untrusted:
//! only compared with what is purged, never acted on otherwise.

use std::collections::HashSet;

use redis::aio::ConnectionManager;
use redis::streams::StreamRangeReply;
use redis::{FromRedisValue, Value};

use super::names::{ALERT_INDEX, REPLY_TO};
use super::retention::{Scan, trim_older_than};
use super::{Store, StoreError, is_stream_id};
use crate::domain::{ThreadId, TipId};

/// Entries read per page when a stream is searched.
const PAGE: usize = 200;
/// How long to wait for a running AOF rewrite before starting ours.
const REWRITE_WAIT: std::time::Duration = std::time::Duration::from_secs(120);
/// How long to wait for our rewrite to finish (it writes the whole data set).
const REWRITE_DONE_WAIT: std::time::Duration = std::time::Duration::from_secs(1800);

/// What a purge removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Purged {
    /// Tips (alert entries) removed.
    pub tips: u64,
    /// Other stream entries, schedule members and list items removed.
    pub entries: u64,
    /// Whole keys deleted (state hashes, indexes, histories, reply addresses).
    pub keys: u64,
    /// The AOF was rewritten (finished, old files removed by Redis), so the
    /// files on disk lose what went.
    pub aof_rewritten: bool,
}

/// Removes every tip of `thread` and everything about them, the thread's
/// history and its tip list, its sealed reply address and every message to
/// its tipster still queued, scheduled or dead-lettered.
pub async fn purge_thread(store: &Store, thread: &ThreadId) -> Result<Purged, StoreError> {
    let keys = store.keys();
    let mut conn = store.conn().await?;
    let mut purged = Purged::default();
    // The thread's list holds its newest tips; the summaries find older ones.
    let listed: Vec<String> = redis::cmd("LRANGE")
        .arg(keys.thread_tips(thread.as_str()))
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await?;
    let mut ids: HashSet<String> = listed.into_iter().filter(|id| is_stream_id(id)).collect();
    ids.extend(
        matching(&mut conn, &keys.alert_summaries(), "thread", |v| {
            v == thread.as_str()
        })
        .await?,
    );
    let mut tips = HashSet::new();
    for id in &ids {
        if let Some(tip) = tip_of(&mut conn, store, id).await? {
            tips.insert(tip);
        }
    }
    let ids: Vec<String> = ids.into_iter().collect();
    if !ids.is_empty() {
        let (alerts, _): (u64, u64) = redis::pipe()
            .cmd("XDEL")
            .arg(keys.alerts())
            .arg(&ids)
            .cmd("XDEL")
            .arg(keys.alert_summaries())
            .arg(&ids)
            .cmd("XDEL")
            .arg(keys.alert_summaries_backfill())
            .arg(&ids)
            .ignore()
            .query_async(&mut conn)
            .await?;
        purged.tips = alerts;
    }
    let (entries, tip_keys) = purge_tip_traces(&mut conn, store, &tips).await?;
    purged.entries += entries;
    purged.keys += tip_keys;
    let thread_keys = [
        keys.thread(thread.as_str()),
        keys.thread_tips(thread.as_str()),
        keys.reply_to(thread.as_str()),
    ];
    purged.keys += redis::cmd("DEL")
        .arg(&thread_keys)
        .query_async::<u64>(&mut conn)
        .await?;
    // Sealed to the relay key for this thread: every message to the tipster.
    let mut to_tipster = 0;
    for stream in [keys.outbound(), keys.outbound_dead()] {
        let found = matching(&mut conn, &stream, "thread", |v| v == thread.as_str()).await?;
        to_tipster += xdel(&mut conn, &stream, &found).await?;
    }
    to_tipster += zrem_where(&mut conn, &keys.outbound_retry(), |m| {
        json_field(m, "thread").as_deref() == Some(thread.as_str())
    })
    .await?;
    purged.entries += to_tipster;
    purged.aof_rewritten = rewrite_aof(&mut conn).await?;
    Ok(purged)
}

/// Removes everything from before `cutoff_unix_secs`: what retention would
/// remove at that cutoff, every tip's state and index, what later happened
/// to those tips (claims, escalations, pushes), and the reply addresses of
/// threads last heard from before it. `reply_ttl_secs`: the longest
/// `reply_address_days` of any channel (addresses expire that long after the
/// last contact, rounded up to the hour).
pub async fn purge_before(
    store: &Store,
    cutoff_unix_secs: u64,
    reply_ttl_secs: u64,
) -> Result<Purged, StoreError> {
    let keys = store.keys();
    let cutoff_ms = cutoff_unix_secs.saturating_mul(1000);
    let mut conn = store.conn().await?;
    let mut purged = Purged::default();
    // Tips by their index entries, whose values are the tips' stream ids.
    let mut tips = HashSet::new();
    let index_prefix = format!("{}:{ALERT_INDEX}:", keys.prefix());
    let indexes = keys.pattern(ALERT_INDEX);
    let mut scan = Scan::new(&indexes, "string");
    while let Some(page) = scan.next_page(&mut conn).await? {
        for key in page {
            let id: Option<String> = redis::cmd("GET").arg(&key).query_async(&mut conn).await?;
            let old = id
                .as_deref()
                .and_then(id_ms)
                .is_some_and(|ms| ms < cutoff_ms);
            if let Some(tip) = key.strip_prefix(&index_prefix).and_then(TipId::parse)
                && old
            {
                tips.insert(tip);
            }
        }
    }
    let alerts_before: u64 = redis::cmd("XLEN")
        .arg(keys.alerts())
        .query_async(&mut conn)
        .await?;
    purged.entries += trim_older_than(store, cutoff_unix_secs).await?;
    let alerts_after: u64 = redis::cmd("XLEN")
        .arg(keys.alerts())
        .query_async(&mut conn)
        .await?;
    purged.tips = alerts_before.saturating_sub(alerts_after);
    purged.entries = purged.entries.saturating_sub(purged.tips);
    let (entries, tip_keys) = purge_tip_traces(&mut conn, store, &tips).await?;
    purged.entries += entries;
    purged.keys += tip_keys;
    // An address expires `reply_ttl_secs` after the hour after the last
    // contact: one expiring before this was last refreshed before the cutoff.
    let refreshed_after = cutoff_unix_secs
        .saturating_add(reply_ttl_secs)
        .saturating_add(3600);
    let addresses = keys.pattern(REPLY_TO);
    let mut scan = Scan::new(&addresses, "string");
    while let Some(page) = scan.next_page(&mut conn).await? {
        for key in page {
            let expires: i64 = redis::cmd("EXPIRETIME")
                .arg(&key)
                .query_async(&mut conn)
                .await?;
            // -1 (no expiry) is not tipwire's doing: purge it too. A key
            // seen twice is deleted once (`DEL` counts what it removed).
            if expires == -1 || u64::try_from(expires).is_ok_and(|at| at < refreshed_after) {
                purged.keys += redis::cmd("DEL")
                    .arg(&key)
                    .query_async::<u64>(&mut conn)
                    .await?;
            }
        }
    }
    purged.aof_rewritten = rewrite_aof(&mut conn).await?;
    Ok(purged)
}

/// What else names the tips in `tips`: their state and index, their state
/// changes and fired escalations, their pending deadlines, push jobs,
/// retries, dead letters and nudges. Returns how many entries and members,
/// and how many keys, went.
async fn purge_tip_traces(
    conn: &mut ConnectionManager,
    store: &Store,
    tips: &HashSet<TipId>,
) -> Result<(u64, u64), StoreError> {
    if tips.is_empty() {
        return Ok((0, 0));
    }
    let keys = store.keys();
    let names: HashSet<&str> = tips.iter().map(TipId::as_str).collect();
    let mut deleted = 0;
    for tip in tips {
        deleted += redis::cmd("DEL")
            .arg(keys.alert_state(tip))
            .arg(keys.alert_index(tip))
            .query_async::<u64>(conn)
            .await?;
    }
    let mut removed = 0;
    for stream in [
        keys.alert_events(),
        keys.escalation_events(),
        keys.push_out(),
        keys.push_dead(),
    ] {
        let found = matching(conn, &stream, "tip_id", |v| names.contains(v)).await?;
        removed += xdel(conn, &stream, &found).await?;
    }
    // `<tip id>:<stage>` and `<tip id>:<zone>:<device>…`.
    let named = |m: &str| m.split_once(':').is_some_and(|(t, _)| names.contains(t));
    removed += zrem_where(conn, &keys.escalations(), named).await?;
    removed += zrem_where(conn, &keys.push_nudges(), named).await?;
    removed += zrem_where(conn, &keys.push_retry(), |m| {
        json_field(m, "tip_id").is_some_and(|t| names.contains(t.as_str()))
    })
    .await?;
    Ok((removed, deleted))
}

/// The tip id of alert entry `id`, from its summary or, for an entry older
/// than the summaries, from the entry itself (one envelope at a time).
async fn tip_of(
    conn: &mut ConnectionManager,
    store: &Store,
    id: &str,
) -> Result<Option<TipId>, StoreError> {
    for stream in [
        store.keys().alert_summaries(),
        store.keys().alerts().to_owned(),
    ] {
        let reply: StreamRangeReply = redis::cmd("XRANGE")
            .arg(&stream)
            .arg(id)
            .arg(id)
            .query_async(conn)
            .await?;
        let tip = reply
            .ids
            .into_iter()
            .next()
            .and_then(|e| text(e.map.get("tip_id")?))
            .and_then(|t| TipId::parse(&t));
        if tip.is_some() {
            return Ok(tip);
        }
    }
    Ok(None)
}

/// Ids of the entries of `stream` whose `field` satisfies `wanted`, read a
/// page at a time.
async fn matching(
    conn: &mut ConnectionManager,
    stream: &str,
    field: &str,
    wanted: impl Fn(&str) -> bool,
) -> Result<Vec<String>, StoreError> {
    let mut found = Vec::new();
    let mut after = "-".to_owned();
    loop {
        let reply: StreamRangeReply = redis::cmd("XRANGE")
            .arg(stream)
            .arg(&after)
            .arg("+")
            .arg("COUNT")
            .arg(PAGE)
            .query_async(conn)
            .await?;
        let full = reply.ids.len() == PAGE;
        for entry in reply.ids {
            if entry
                .map
                .get(field)
                .and_then(text)
                .is_some_and(|v| wanted(&v))
            {
                found.push(entry.id.clone());
            }
            after = format!("({}", entry.id);
        }
        if !full {
            return Ok(found);
        }
    }
}

async fn xdel(
    conn: &mut ConnectionManager,
    stream: &str,
    ids: &[String],
) -> Result<u64, StoreError> {
    if ids.is_empty() {
        return Ok(0);
    }
    Ok(redis::cmd("XDEL")
        .arg(stream)
        .arg(ids)
        .query_async(conn)
        .await?)
}

/// Removes the members of sorted set `key` that satisfy `doomed`.
async fn zrem_where(
    conn: &mut ConnectionManager,
    key: &str,
    doomed: impl Fn(&str) -> bool,
) -> Result<u64, StoreError> {
    let members: Vec<String> = redis::cmd("ZRANGE")
        .arg(key)
        .arg(0)
        .arg(-1)
        .query_async(conn)
        .await?;
    let gone: Vec<&String> = members.iter().filter(|m| doomed(m)).collect();
    if gone.is_empty() {
        return Ok(0);
    }
    Ok(redis::cmd("ZREM")
        .arg(key)
        .arg(gone)
        .query_async(conn)
        .await?)
}

/// Rewrites the AOF (when Redis keeps one) so deleted values leave the files
/// on disk too, waiting for a rewrite already running (forked before the
/// deletes, it would keep them), and then for ours to finish. Returns
/// whether a rewrite was done.
async fn rewrite_aof(conn: &mut ConnectionManager) -> Result<bool, StoreError> {
    let info: String = redis::cmd("INFO")
        .arg("persistence")
        .query_async(conn)
        .await?;
    if !info.lines().any(|l| l.trim() == "aof_enabled:1") {
        return Ok(false);
    }
    let started = std::time::Instant::now();
    loop {
        let asked: Result<String, redis::RedisError> =
            redis::cmd("BGREWRITEAOF").query_async(conn).await;
        match asked {
            Ok(_) => return rewritten(conn).await,
            Err(e) if started.elapsed() < REWRITE_WAIT && e.to_string().contains("in progress") => {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Waits for the AOF rewrite just started to finish: only then has Redis
/// removed the old files that still hold what was purged. A failed rewrite
/// is an error, not a purge reported done.
async fn rewritten(conn: &mut ConnectionManager) -> Result<bool, StoreError> {
    let started = std::time::Instant::now();
    loop {
        let info: String = redis::cmd("INFO")
            .arg("persistence")
            .query_async(conn)
            .await?;
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.trim().strip_prefix(name)?.strip_prefix(':'))
                .unwrap_or("")
                .to_owned()
        };
        if field("aof_rewrite_in_progress") == "0" && field("aof_rewrite_scheduled") == "0" {
            return if field("aof_last_bgrewrite_status") == "ok" {
                Ok(true)
            } else {
                Err(persistence(
                    "the AOF rewrite failed; the old AOF files still hold what was purged",
                ))
            };
        }
        if started.elapsed() > REWRITE_DONE_WAIT {
            return Err(persistence(
                "the AOF rewrite is still running; the old AOF files hold what was purged until it ends",
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

fn persistence(what: &'static str) -> StoreError {
    StoreError::Unavailable(redis::RedisError::from((redis::ErrorKind::IoError, what)))
}

fn text(v: &Value) -> Option<String> {
    String::from_redis_value(v).ok()
}

/// The time part (ms) of a stream id.
fn id_ms(id: &str) -> Option<u64> {
    id.split_once('-')?.0.parse().ok()
}

/// A string field of a JSON schedule member (retry members are JSON).
fn json_field(member: &str, field: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(member).ok()?;
    v.get(field)?.as_str().map(str::to_owned)
}
