//! The alert stream `<prefix>:alerts`: one entry per accepted tip, holding the
//! sealed envelope and only the plaintext routing needs.
//!
//! Entry ids carry time, so they are coarse like the `received` field: the
//! producer appends with an explicit millisecond part rounded down to the minute
//! (`<minute-ms>-*`), which Redis completes with a sequence number. A Lua script
//! keeps ids increasing when replicas' clocks disagree. One script call is one
//! atomic XADD: a tip is either wholly in the stream or not at all.

use std::collections::HashMap;

use redis::streams::{StreamRangeReply, StreamReadOptions, StreamReadReply};
use redis::{FromRedisValue, Value};

use super::{Store, StoreError};
use crate::domain::{ProviderMessage, TipId};

/// A Lua function appending with an id whose time part is `ms` (a minute
/// boundary), or the stream's newest time if that is later, so ids stay
/// increasing when replicas' clocks disagree; if deleted entries left the
/// last-generated id ahead of every remaining entry, it continues after that.
/// Stream ids carry time, so every tipwire stream uses this instead of `*`.
pub const COARSE_XADD_LUA: &str = r"
local function coarse_xadd(key, ms, fields)
  local last = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)
  if last[1] then
    local lms = string.match(last[1][1], '^(%d+)-')
    if lms and tonumber(lms) > tonumber(ms) then ms = lms end
  end
  local ok, id = pcall(redis.call, 'XADD', key, ms .. '-*', unpack(fields))
  if ok then return id end
  local info = redis.call('XINFO', 'STREAM', key)
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then
      ms = string.match(info[i + 1], '^(%d+)-')
    end
  end
  return redis.call('XADD', key, ms .. '-*', unpack(fields))
end
";

/// Refuses (`{0, version}`) when the mediator directory changed since the tip
/// was sealed, and (`{2, ''}`) a provider message already stored (third key,
/// the dedupe marker). Otherwise appends and then sets the marker, so a failed
/// append never leaves a marker behind. The marker expires a day after the
/// hour the message came in: its TTL says nothing finer. Returns `{1, id}`.
///
/// For provider messages (`ARGV[3]` not empty) it first restarts the expiry
/// of the thread's sealed reply address (fourth key) at `ARGV[3]` and checks
/// the sender's `ARGV[4]` pseudonyms against the opt-out set (fifth key); both
/// answers are appended to the reply. `ARGV[5 + count..]` are the fields.
const APPEND_LUA: &str = r"
local kept, opted = 0, 0
local count = tonumber(ARGV[4])
if ARGV[3] ~= '' then
  kept = redis.call('EXPIREAT', KEYS[4], ARGV[3])
  for i = 1, count do
    if redis.call('SISMEMBER', KEYS[5], ARGV[4 + i]) == 1 then opted = 1 end
  end
end
local version = redis.call('GET', KEYS[2]) or '0'
if version ~= ARGV[1] then return {0, version, kept, opted} end
if KEYS[3] and redis.call('EXISTS', KEYS[3]) == 1 then return {2, '', kept, opted} end
local id = coarse_xadd(KEYS[1], ARGV[2], {unpack(ARGV, 5 + count)})
if KEYS[3] then
  local hour = math.floor(tonumber(ARGV[2]) / 3600000) * 3600
  redis.call('SET', KEYS[3], '1', 'EXAT', hour + 3600 + 86400)
end
return {1, id, kept, opted}
";

/// Appends `ARGV[2..]` to `KEYS[1]` with a coarse id at minute `ARGV[1]` (ms).
pub const COARSE_APPEND_LUA: &str = r"
return coarse_xadd(KEYS[1], ARGV[1], {unpack(ARGV, 2)})
";

/// A script made of [`COARSE_XADD_LUA`] and a body that calls it.
pub fn coarse_script(body: &str) -> redis::Script {
    redis::Script::new(&format!("{COARSE_XADD_LUA}{body}"))
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
}

impl AlertProducer {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            script: std::sync::Arc::new(coarse_script(APPEND_LUA)),
        }
    }

    /// Appends the entry if the mediator directory is still at
    /// `directory_version` (the version its recipients were read at). Returns
    /// only once Redis has acknowledged the XADD (with AOF, logged it).
    pub async fn append(
        &self,
        entry: &AlertEntry,
        directory_version: u64,
        provider: Option<&ProviderMessage>,
    ) -> Result<(Appended, SenderState), StoreError> {
        let mut conn = self.store.conn().await?;
        let keys = self.store.keys();
        let minute_ms = entry.received.saturating_mul(1000);
        let mut invocation = self.script.key(keys.alerts());
        invocation
            .key(keys.mediators_version())
            .arg(directory_version)
            .arg(minute_ms);
        match provider {
            Some(p) => {
                invocation
                    .key(keys.dedupe(&p.dedupe))
                    .key(keys.reply_to(&entry.thread))
                    .key(keys.opted_out())
                    .arg(p.reply_expire_at)
                    .arg(p.pseudonyms.len())
                    .arg(&p.pseudonyms);
            }
            None => {
                invocation.arg("").arg(0);
            }
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
        let mut conn = self.store.conn().await?;
        let start = format!("({after}");
        let reply: StreamRangeReply = redis::cmd("XRANGE")
            .arg(self.store.keys().alerts())
            .arg(start)
            .arg("+")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut conn)
            .await?;
        reply.ids.into_iter().map(|s| parse(s.id, s.map)).collect()
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
        reply.ids.into_iter().map(|s| parse(s.id, s.map)).collect()
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
                out.push(parse(s.id, s.map)?);
            }
        }
        Ok(out)
    }
}

fn parse(id: String, mut map: HashMap<String, Value>) -> Result<StoredAlert, StoreError> {
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
        },
    })
}
