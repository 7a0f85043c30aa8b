//! The alert stream `<prefix>:alerts`: one entry per accepted tip, holding the
//! sealed envelope and only the plaintext routing needs.
//!
//! Entry ids carry time, so they are coarse like the `received` field: the
//! producer appends with an explicit millisecond part rounded down to the minute
//! (`<minute-ms>-*`), which Redis completes with a sequence number. A Lua script
//! keeps ids increasing when replicas' clocks disagree. One script call is one
//! atomic XADD: a tip is either wholly in the stream or not at all.

use std::collections::HashMap;
use std::time::Duration;

use redis::streams::{StreamRangeReply, StreamReadOptions, StreamReadReply};
use redis::{FromRedisValue, Value};

use super::scripts::{
    ALERT_APPEND, COARSE_XADD_FN, ESCALATION_SCHEDULE_FN, SUMMARY_BACKFILL_STEP, SUMMARY_OF_FN,
    TIMER_FNS,
};
use super::{Store, StoreError};
use crate::domain::{ProviderMessage, TipId};

/// Alerts one backfill step reads, at most: each carries its envelope, up
/// to the largest tip's size, into the Redis script's memory.
const BACKFILL_ALERTS_PER_STEP: usize = 2;
/// Summaries one backfill step copies, at most (a few hundred bytes each).
const BACKFILL_SUMMARIES_PER_STEP: usize = 500;

/// Gives every alert appended before `<prefix>:alert-summaries` existed its
/// summary (same id, routing fields only), so catch-ups, the app's list and
/// thread replies see older alerts after an upgrade. Does nothing when every
/// alert has one; safe to run at any time and from several processes.
/// Returns how many alerts got a summary.
pub async fn backfill_summaries(store: &Store) -> Result<u64, StoreError> {
    let keys = store.keys();
    let script = redis::Script::new(&format!("{SUMMARY_OF_FN}{SUMMARY_BACKFILL_STEP}"));
    let mut conn = store.conn().await?;
    let mut backfilled: u64 = 0;
    loop {
        let (more, copied): (i64, u64) = script
            .key(keys.alerts())
            .key(keys.alert_summaries())
            .key(keys.alert_summaries_backfill())
            .arg(BACKFILL_ALERTS_PER_STEP)
            .arg(BACKFILL_SUMMARIES_PER_STEP)
            .invoke_async(&mut conn)
            .await?;
        backfilled = backfilled.saturating_add(copied);
        if more == 0 {
            return Ok(backfilled);
        }
    }
}

/// How much longer than the reply address an opt-out marker is kept: every
/// write of either adds this to the address's expiry, and the address may be
/// stored again up to an hour later (rounded to the next hour).
pub const OPT_OUT_MARGIN_SECS: u64 = 7200;

/// Entries a thread's index keeps (the newest); older ones stay in the
/// stream until retention but drop out of the thread view.
pub const MAX_THREAD_TIPS: usize = 1000;

/// A script made of [`COARSE_XADD_FN`] and a body that calls it.
pub fn coarse_script(body: &str) -> redis::Script {
    redis::Script::new(&format!("{COARSE_XADD_FN}{body}"))
}

/// The fields of one stream entry, as named in DESIGN.md.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertEntry {
    pub tip_id: TipId,
    pub zone: String,
    pub priority: String,
    pub channel: String,
    /// Unix seconds, rounded down to the minute.
    pub received: u64,
    /// Empty for channels without a sender identity (the web page).
    pub pseudonym: String,
    pub thread: String,
    pub key_version: String,
    pub envelope: Vec<u8>,
    /// The directory entry ids (`m_…`) the envelope was sealed to, escrow
    /// aside (field `sealed_to`, comma-separated): who may claim the alert.
    /// `None` for entries written before the field existed.
    pub sealed_to: Option<Vec<String>>,
}

/// What the append found about a provider message's sender.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SenderState {
    /// The thread's sealed reply address existed and its expiry was restarted.
    pub reply_address_kept: bool,
    pub opted_out: bool,
}

/// What an append did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    /// In the stream under this id.
    Stored(String),
    /// Not appended: the directory is now at another version; seal again.
    StaleDirectory,
    /// Not appended: the same provider message was stored before.
    Duplicate,
}

/// An entry with its stream id.
#[derive(Debug, Clone)]
pub struct StoredAlert {
    pub id: String,
    pub entry: AlertEntry,
}

#[derive(Clone)]
pub struct AlertProducer {
    store: Store,
    script: std::sync::Arc<redis::Script>,
    retention_secs: u64,
}

impl AlertProducer {
    /// `retention`: how long tips are kept (`retention.days`); the alert's
    /// state hash and its index entries expire with the entry.
    pub fn new(store: Store, retention: Duration) -> Self {
        let body = ALERT_APPEND
            .replace("MAX_THREAD_TIPS", &MAX_THREAD_TIPS.to_string())
            .replace("OPT_OUT_MARGIN_SECS", &OPT_OUT_MARGIN_SECS.to_string());
        Self {
            store,
            script: std::sync::Arc::new(coarse_script(&format!(
                "{TIMER_FNS}{ESCALATION_SCHEDULE_FN}{SUMMARY_OF_FN}{body}"
            ))),
            retention_secs: retention.as_secs().max(1),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Appends the entry if the mediator directory is still at
    /// `directory_version` (the version its recipients were read at), with
    /// its escalation `deadlines` (`(due ms, member)` pairs from
    /// `EscalationPolicy::scheduled`) in the same script. Returns only once
    /// Redis has acknowledged the XADD (with AOF, logged it).
    pub async fn append(
        &self,
        entry: &AlertEntry,
        directory_version: u64,
        provider: Option<&ProviderMessage>,
        deadlines: &[(u64, String)],
    ) -> Result<(Appended, SenderState), StoreError> {
        let mut conn = self.store.conn().await?;
        let keys = self.store.keys();
        let minute_ms = entry.received.saturating_mul(1000);
        let expire_at = entry.received.saturating_add(self.retention_secs);
        let mut invocation = self.script.key(keys.alerts());
        invocation
            .key(keys.mediators_version())
            .key(keys.escalations())
            .key(keys.alert_state(&entry.tip_id))
            .key(keys.alert_index(&entry.tip_id))
            .key(keys.thread_tips(&entry.thread))
            .key(keys.alert_summaries())
            .arg(directory_version)
            .arg(minute_ms);
        let pseudonyms: &[String] = match provider {
            Some(p) => {
                invocation
                    .key(keys.dedupe(&p.dedupe))
                    .key(keys.reply_to(&entry.thread));
                for pseudonym in &p.pseudonyms {
                    invocation.key(keys.opted_out(pseudonym));
                }
                match p.reply_expire_at {
                    Some(at) => invocation.arg(at),
                    None => invocation.arg(""),
                };
                &p.pseudonyms
            }
            None => {
                invocation.arg("");
                &[]
            }
        };
        invocation
            .arg(expire_at)
            .arg(&entry.zone)
            .arg(&entry.priority)
            .arg(pseudonyms.len())
            .arg(deadlines.len())
            .arg(pseudonyms);
        for (due, member) in deadlines {
            invocation.arg(*due).arg(member);
        }
        invocation
            .arg("tip_id")
            .arg(entry.tip_id.as_str())
            .arg("zone")
            .arg(&entry.zone)
            .arg("priority")
            .arg(&entry.priority)
            .arg("channel")
            .arg(&entry.channel)
            .arg("received")
            .arg(entry.received)
            .arg("pseudonym")
            .arg(&entry.pseudonym)
            .arg("thread")
            .arg(&entry.thread)
            .arg("key_version")
            .arg(&entry.key_version)
            .arg("envelope")
            .arg(entry.envelope.as_slice());
        if let Some(ids) = &entry.sealed_to {
            invocation.arg("sealed_to").arg(ids.join(","));
        }
        let (status, id, kept, opted): (i64, String, i64, i64) =
            invocation.invoke_async(&mut conn).await?;
        let sender = SenderState {
            reply_address_kept: kept == 1,
            opted_out: opted == 1,
        };
        let appended = match status {
            1 => Appended::Stored(id),
            2 => Appended::Duplicate,
            _ => Appended::StaleDirectory,
        };
        Ok((appended, sender))
    }
}

#[derive(Clone)]
pub struct AlertReader {
    store: Store,
}

impl AlertReader {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// Entries with ids after `after` (exclusive), oldest first, at most `count`.
    pub async fn range_after(
        &self,
        after: &str,
        count: usize,
    ) -> Result<Vec<StoredAlert>, StoreError> {
        let reply = self
            .store
            .range_after(self.store.keys().alerts(), after, count)
            .await?;
        reply
            .ids
            .into_iter()
            .map(|s| parse_entry(s.id, s.map))
            .collect()
    }

    /// Entries from `since_secs` (inclusive) on, oldest first, at most `count`.
    pub async fn range_since(
        &self,
        since_secs: u64,
        count: usize,
    ) -> Result<Vec<StoredAlert>, StoreError> {
        let mut conn = self.store.conn().await?;
        let reply: StreamRangeReply = redis::cmd("XRANGE")
            .arg(self.store.keys().alerts())
            .arg(since_secs.saturating_mul(1000))
            .arg("+")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut conn)
            .await?;
        reply
            .ids
            .into_iter()
            .map(|s| parse_entry(s.id, s.map))
            .collect()
    }

    /// The id of the newest entry, or `0-0` for an empty stream.
    pub async fn last_id(&self) -> Result<String, StoreError> {
        let mut conn = self.store.conn().await?;
        let reply: StreamRangeReply = redis::cmd("XREVRANGE")
            .arg(self.store.keys().alerts())
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut conn)
            .await?;
        Ok(reply
            .ids
            .into_iter()
            .next()
            .map_or_else(|| "0-0".to_owned(), |s| s.id))
    }

    /// The entry of `tip_id`, found through the index the append script
    /// keeps; `None` when there is none (unknown, or past retention).
    pub async fn by_tip(&self, tip_id: &TipId) -> Result<Option<StoredAlert>, StoreError> {
        let mut conn = self.store.conn().await?;
        let id: Option<String> = redis::cmd("GET")
            .arg(self.store.keys().alert_index(tip_id))
            .query_async(&mut conn)
            .await?;
        let Some(id) = id else {
            return Ok(None);
        };
        let found = self.by_ids(std::slice::from_ref(&id)).await?;
        Ok(found.into_iter().find(|a| &a.entry.tip_id == tip_id))
    }

    /// Entries by stream id, in the order given, in one round trip. Ids no
    /// longer in the stream (trimmed) and entries tipwire did not write are
    /// left out.
    pub async fn by_ids(&self, ids: &[String]) -> Result<Vec<StoredAlert>, StoreError> {
        let ids: Vec<&String> = ids.iter().filter(|id| is_stream_id(id)).collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let key = self.store.keys().alerts();
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("XRANGE").arg(key).arg(*id).arg(*id);
        }
        let mut conn = self.store.conn().await?;
        let replies: Vec<StreamRangeReply> = pipe.query_async(&mut conn).await?;
        Ok(replies
            .into_iter()
            .flat_map(|r| r.ids)
            .filter_map(|s| parse_entry(s.id, s.map).ok())
            .collect())
    }

    /// The stream ids of a thread's newest tips, oldest first, at most `count`.
    pub async fn thread_tip_ids(
        &self,
        thread: &str,
        count: usize,
    ) -> Result<Vec<String>, StoreError> {
        let mut conn = self.store.conn().await?;
        let start = -i64::try_from(count.max(1)).unwrap_or(i64::MAX);
        let ids: Vec<String> = redis::cmd("LRANGE")
            .arg(self.store.keys().thread_tips(thread))
            .arg(start)
            .arg(-1)
            .query_async(&mut conn)
            .await?;
        Ok(ids.into_iter().filter(|id| is_stream_id(id)).collect())
    }

    /// Waits up to `block_ms` for entries after `after`.
    pub async fn wait_after(
        &self,
        after: &str,
        block_ms: usize,
        count: usize,
    ) -> Result<Vec<StoredAlert>, StoreError> {
        let mut conn = self.store.conn().await?;
        let opts = StreamReadOptions::default().block(block_ms).count(count);
        let reply: Option<StreamReadReply> = redis::AsyncCommands::xread_options(
            &mut conn,
            &[self.store.keys().alerts()],
            &[after],
            &opts,
        )
        .await?;
        let mut out = Vec::new();
        for key in reply.map(|r| r.keys).unwrap_or_default() {
            for s in key.ids {
                out.push(parse_entry(s.id, s.map)?);
            }
        }
        Ok(out)
    }
}

/// Whether `s` has the form of a stream id (`<ms>-<seq>`).
pub fn is_stream_id(s: &str) -> bool {
    s.len() <= 41
        && s.split_once('-').is_some_and(|(ms, seq)| {
            !ms.is_empty()
                && !seq.is_empty()
                && ms.bytes().all(|b| b.is_ascii_digit())
                && seq.bytes().all(|b| b.is_ascii_digit())
        })
}

/// Parses one entry of the alert stream read back from Redis (untrusted).
pub fn parse_entry(id: String, mut map: HashMap<String, Value>) -> Result<StoredAlert, StoreError> {
    let mut text = |name: &'static str| -> Result<String, StoreError> {
        map.remove(name)
            .and_then(|v| String::from_redis_value(&v).ok())
            .ok_or(StoreError::Corrupt(name))
    };
    let tip_id = TipId::parse(&text("tip_id")?).ok_or(StoreError::Corrupt("tip_id"))?;
    let zone = text("zone")?;
    let priority = text("priority")?;
    let channel = text("channel")?;
    let received = text("received")?
        .parse()
        .map_err(|_| StoreError::Corrupt("received"))?;
    let pseudonym = text("pseudonym")?;
    let thread = text("thread")?;
    let key_version = text("key_version")?;
    let envelope = map
        .remove("envelope")
        .and_then(|v| Vec::<u8>::from_redis_value(&v).ok())
        .ok_or(StoreError::Corrupt("envelope"))?;
    let sealed_to = match map.remove("sealed_to") {
        None => None,
        Some(v) => Some(
            String::from_redis_value(&v)
                .map_err(|_| StoreError::Corrupt("sealed_to"))?
                .split(',')
                .filter(|id| !id.is_empty())
                .map(str::to_owned)
                .collect(),
        ),
    };
    Ok(StoredAlert {
        id,
        entry: AlertEntry {
            tip_id,
            zone,
            priority,
            channel,
            received,
            pseudonym,
            thread,
            key_version,
            envelope,
            sealed_to,
        },
    })
}
