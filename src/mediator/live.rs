//! Live fan-out of new alerts and alert state changes to every open alert
//! stream of this gateway process.
//!
//! ONE task per process ([`LiveFeed::run`]) follows `<prefix>:alert-summaries`
//! (the alert stream's entries without their envelopes, under the same ids)
//! and `<prefix>:alert-events` with `XREAD BLOCK` on a Redis connection of its own
//! (the shared connection manager has a response timeout, which a blocking
//! read would trip, and would hold up every other caller meanwhile) and
//! broadcasts each entry, parsed once, on a `tokio::sync::broadcast` channel.
//! Each SSE connection subscribes and filters for its device, so 1,000 open
//! streams cost one Redis reader and no per-connection Redis traffic.
//!
//! The reader starts at the streams' ends and never skips: after a Redis
//! error it reconnects (with backoff) and continues after the last id it
//! broadcast. A connection catches up by itself from the streams
//! ([`alerts_after`], [`events_after`]) and then skips live items at or below
//! what it already sent; it must subscribe before that catch-up read and only
//! after [`LiveFeed::ready`], so every entry reaches it one way or the other.
//! Within one read, alerts are broadcast before state changes, and changes
//! are held back while alerts are still being drained, so a connection never
//! hears of a change to an alert it has not been sent.
//!
//! Nothing here reads `<prefix>:alerts` itself: its entries carry sealed
//! attachments (megabytes each), and a reconnect storm of phones catching up
//! would read them all. A summary entry is a few hundred bytes of routing
//! fields, so a catch-up of [`crate::api::alerts`]'s at most 500 entries reads
//! well under a megabyte whatever the tips hold; the app fetches one
//! envelope when it opens an alert.
//! The same read follows `<prefix>:revocations` ([`super::revocations`]), so
//! a device revoked or removed on any replica, or by the admin CLI, has its
//! open streams ended on every replica as soon as the notice is written.
//!
//! Untrusted: every entry read back from Redis is parsed again; one tipwire
//! did not write is skipped (its id is logged), never fatal to the reader.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::streams::{StreamRangeReply, StreamReadOptions, StreamReadReply};
use redis::{FromRedisValue, Value};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use super::AlertEvent;
use super::claims::parse_event;
use super::revocations::Ended;
use crate::bus::{Store, StoreError};
use crate::domain::TipId;

/// How long one `XREAD` blocks; the reader also gives up on an answer that
/// takes [`READ_GRACE`] longer (a hung connection) and reconnects.
const BLOCK_MS: usize = 5_000;
const READ_GRACE: Duration = Duration::from_secs(5);
/// Entries per stream per read. A fuller backlog drains over several reads.
const READ_COUNT: usize = 256;
/// Items the broadcast channel holds for a slow connection before it lags
/// (it then catches up from Redis by itself).
const CHANNEL_CAPACITY: usize = 4_096;
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A position in a stream: the two numbers of a stream id, compared as such.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct StreamPos(u64, u64);

impl StreamPos {
    /// Before every entry (`0-0`).
    pub const START: Self = Self(0, 0);

    /// The id `<ms>-<seq>`.
    pub const fn from_parts(ms: u64, seq: u64) -> Self {
        Self(ms, seq)
    }

    /// Parses `<ms>-<seq>`; anything else is refused.
    pub fn parse(s: &str) -> Option<Self> {
        let (ms, seq) = s.split_once('-')?;
        let digits =
            |p: &str| !p.is_empty() && p.len() <= 20 && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(ms) || !digits(seq) {
            return None;
        }
        Some(Self(ms.parse().ok()?, seq.parse().ok()?))
    }

    /// The unix seconds of the id's time part (a minute boundary for
    /// tipwire's coarse ids).
    pub fn secs(self) -> u64 {
        self.0 / 1000
    }
}

impl fmt::Display for StreamPos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.0, self.1)
    }
}

/// Where a connection stands in both streams: what an SSE event id carries,
/// as `<alerts id>|<alert-events id>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cursor {
    pub alerts: StreamPos,
    pub events: StreamPos,
}

impl Cursor {
    /// Parses an SSE event id (`Last-Event-ID`, untrusted).
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() > 100 {
            return None;
        }
        let (alerts, events) = s.trim().split_once('|')?;
        Some(Self {
            alerts: StreamPos::parse(alerts)?,
            events: StreamPos::parse(events)?,
        })
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}|{}", self.alerts, self.events)
    }
}

/// An alert stream entry without its envelope and sender pseudonym: what a
/// live stream tells a device about a new alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertSummary {
    pub pos: StreamPos,
    pub tip_id: TipId,
    pub zone: String,
    pub priority: String,
    pub channel: String,
    /// Unix seconds, rounded down to the minute.
    pub received: u64,
    pub thread: String,
    /// Whom the tip was sealed to (see `AlertEntry::sealed_to`).
    pub sealed_to: Option<Vec<String>>,
}

impl AlertSummary {
    /// Parses one summary entry read back from Redis (untrusted).
    fn parse(pos: StreamPos, mut map: HashMap<String, Value>) -> Option<Self> {
        let mut text = |name: &str| {
            map.remove(name)
                .and_then(|v| String::from_redis_value(&v).ok())
        };
        Some(Self {
            pos,
            tip_id: TipId::parse(&text("tip_id")?)?,
            zone: text("zone")?,
            priority: text("priority")?,
            channel: text("channel")?,
            received: text("received")?.parse().ok()?,
            thread: text("thread")?,
            sealed_to: text("sealed_to").map(|ids| {
                ids.split(',')
                    .filter(|id| !id.is_empty())
                    .map(str::to_owned)
                    .collect()
            }),
        })
    }
}

/// What the reader broadcasts. Cheap to clone: every connection gets a copy.
#[derive(Debug, Clone)]
pub enum LiveItem {
    Alert(Arc<AlertSummary>),
    State(StreamPos, Arc<AlertEvent>),
    /// A device or session ended: its open streams end now.
    Ended(Arc<Ended>),
}

/// The process's one reader and its broadcast channel.
pub struct LiveFeed {
    store: Store,
    sender: broadcast::Sender<LiveItem>,
    ready: watch::Sender<bool>,
}

impl LiveFeed {
    pub fn new(store: Store) -> Self {
        let (sender, _) = broadcast::channel(CHANNEL_CAPACITY);
        let (ready, _) = watch::channel(false);
        Self {
            store,
            sender,
            ready,
        }
    }

    /// A receiver of every item broadcast from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<LiveItem> {
        self.sender.subscribe()
    }

    /// Waits up to `wait` for the reader to know where the streams end
    /// (once, at start-up); `false` if it does not by then (Redis down).
    pub async fn ready(&self, wait: Duration) -> bool {
        let mut ready = self.ready.subscribe();
        matches!(
            tokio::time::timeout(wait, ready.wait_for(|r| *r)).await,
            Ok(Ok(_))
        )
    }

    /// Follows both streams until `stop` fires. Never returns early: Redis
    /// errors are logged and retried with backoff.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut cursor: Option<(Cursor, StreamPos)> = None;
        let mut backoff = Duration::from_millis(100);
        loop {
            let conn = tokio::select! {
                () = stop.cancelled() => return,
                conn = self.store.dedicated_conn() => conn,
            };
            let mut conn = match conn {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "live alert reader cannot reach redis; will retry");
                    if sleep_or_stop(&stop, backoff).await {
                        return;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            let mut at = match cursor {
                Some(at) => at,
                None => match self.ends(&mut conn).await {
                    Ok(at) => {
                        self.ready.send_replace(true);
                        at
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "live alert reader cannot read the streams; will retry");
                        if sleep_or_stop(&stop, backoff).await {
                            return;
                        }
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        continue;
                    }
                },
            };
            cursor = Some(at);
            loop {
                let read = tokio::select! {
                    () = stop.cancelled() => return,
                    read = tokio::time::timeout(
                        Duration::from_millis(BLOCK_MS as u64) + READ_GRACE,
                        self.read(&mut conn, at),
                    ) => read,
                };
                match read {
                    Ok(Ok(next)) => {
                        backoff = Duration::from_millis(100);
                        at = next;
                        cursor = Some(at);
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "live alert read failed; reconnecting");
                        break;
                    }
                    Err(_) => {
                        tracing::warn!("live alert read hung; reconnecting");
                        break;
                    }
                }
            }
            if sleep_or_stop(&stop, backoff).await {
                return;
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Where the alert streams and the revocation notices end now.
    async fn ends(
        &self,
        conn: &mut MultiplexedConnection,
    ) -> Result<(Cursor, StreamPos), StoreError> {
        let keys = self.store.keys();
        let at = Cursor {
            alerts: last_pos(conn, &keys.alert_summaries()).await?,
            events: last_pos(conn, &keys.alert_events()).await?,
        };
        Ok((at, last_pos(conn, &keys.revocations()).await?))
    }

    /// One blocking read of both streams after `at`; broadcasts what it got
    /// and returns the new position.
    async fn read(
        &self,
        conn: &mut MultiplexedConnection,
        (at, revoked_at): (Cursor, StreamPos),
    ) -> Result<(Cursor, StreamPos), StoreError> {
        let keys = self.store.keys();
        let alerts_key = keys.alert_summaries();
        let events_key = keys.alert_events();
        let revocations_key = keys.revocations();
        let opts = StreamReadOptions::default()
            .block(BLOCK_MS)
            .count(READ_COUNT);
        let reply: Option<StreamReadReply> = redis::AsyncCommands::xread_options(
            conn,
            &[
                alerts_key.as_str(),
                events_key.as_str(),
                revocations_key.as_str(),
            ],
            &[
                at.alerts.to_string(),
                at.events.to_string(),
                revoked_at.to_string(),
            ],
            &opts,
        )
        .await?;
        let mut alerts = Vec::new();
        let mut events = Vec::new();
        let mut revocations = Vec::new();
        for stream in reply.map(|r| r.keys).unwrap_or_default() {
            if stream.key == alerts_key {
                alerts = stream.ids;
            } else if stream.key == events_key {
                events = stream.ids;
            } else if stream.key == revocations_key {
                revocations = stream.ids;
            }
        }
        // Revocations first: a stream must not hear of one more alert
        // after its device was ended.
        let mut next_revoked = revoked_at;
        for entry in revocations {
            let Some(pos) = StreamPos::parse(&entry.id) else {
                continue;
            };
            next_revoked = next_revoked.max(pos);
            match Ended::parse(&entry.map) {
                Some(ended) => {
                    let _ = self.sender.send(LiveItem::Ended(Arc::new(ended)));
                }
                None => {
                    tracing::warn!(stream_id = %entry.id, "skipped a revocation notice tipwire did not write")
                }
            }
        }
        let mut next = at;
        // A full page of alerts may have more behind it; a change read now
        // could concern one of those. Hold changes back until alerts drain.
        let hold_events = alerts.len() >= READ_COUNT;
        for entry in alerts {
            let Some(pos) = StreamPos::parse(&entry.id) else {
                continue;
            };
            next.alerts = next.alerts.max(pos);
            if let Some(summary) = summary(entry.id, entry.map) {
                // No receivers is fine: nobody is listening right now.
                let _ = self.sender.send(LiveItem::Alert(Arc::new(summary)));
            }
        }
        if !hold_events {
            for entry in events {
                let Some(pos) = StreamPos::parse(&entry.id) else {
                    continue;
                };
                next.events = next.events.max(pos);
                if let Some(event) = event(entry.id, entry.map) {
                    let _ = self.sender.send(LiveItem::State(pos, Arc::new(event)));
                }
            }
        }
        Ok((next, next_revoked))
    }
}

/// Sleeps for `wait`; `true` if `stop` fired meanwhile.
async fn sleep_or_stop(stop: &CancellationToken, wait: Duration) -> bool {
    tokio::select! {
        () = stop.cancelled() => true,
        () = tokio::time::sleep(wait) => false,
    }
}

async fn last_pos(conn: &mut MultiplexedConnection, key: &str) -> Result<StreamPos, StoreError> {
    let reply: StreamRangeReply = redis::cmd("XREVRANGE")
        .arg(key)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(conn)
        .await?;
    Ok(reply
        .ids
        .first()
        .and_then(|s| StreamPos::parse(&s.id))
        .unwrap_or(StreamPos::START))
}

fn summary(id: String, map: HashMap<String, Value>) -> Option<AlertSummary> {
    let pos = StreamPos::parse(&id)?;
    let parsed = AlertSummary::parse(pos, map);
    if parsed.is_none() {
        tracing::warn!(stream_id = %id, "skipped an alert summary tipwire did not write");
    }
    parsed
}

fn event(id: String, map: HashMap<String, Value>) -> Option<AlertEvent> {
    match parse_event(id.clone(), map) {
        Ok(event) => Some(event),
        Err(_) => {
            tracing::warn!(stream_id = %id, "skipped an alert event tipwire did not write");
            None
        }
    }
}

/// One entry read in a catch-up: its position, and its content unless it was
/// not tipwire's (skipped, but the position still counts).
pub type Read<T> = (StreamPos, Option<T>);

/// Alerts after `after` (exclusive), oldest first, at most `count`.
pub async fn alerts_after(
    store: &Store,
    after: StreamPos,
    count: usize,
) -> Result<Vec<Read<AlertSummary>>, StoreError> {
    let reply = store
        .range_after(&store.keys().alert_summaries(), &after.to_string(), count)
        .await?;
    Ok(positioned(reply, summary))
}

/// Summaries of the alert entries `ids` (stream ids), in one round trip, in
/// the order given; ids without a summary (trimmed, malformed, or appended
/// before summaries existed) are left out.
pub async fn summaries_by_ids(
    store: &Store,
    ids: &[String],
) -> Result<Vec<AlertSummary>, StoreError> {
    let key = store.keys().alert_summaries();
    let mut pipe = redis::pipe();
    let mut asked = 0;
    for id in ids.iter().filter(|id| StreamPos::parse(id).is_some()) {
        pipe.cmd("XRANGE").arg(&key).arg(id).arg(id);
        asked += 1;
    }
    if asked == 0 {
        return Ok(Vec::new());
    }
    let mut conn = store.conn().await?;
    let replies: Vec<StreamRangeReply> = pipe.query_async(&mut conn).await?;
    Ok(replies
        .into_iter()
        .flat_map(|r| positioned(r, summary))
        .filter_map(|(_, s)| s)
        .collect())
}

/// Alerts before `before` (exclusive; `None` for the newest), newest first,
/// at most `count`.
pub async fn alerts_before(
    store: &Store,
    before: Option<StreamPos>,
    count: usize,
) -> Result<Vec<Read<AlertSummary>>, StoreError> {
    let mut conn = store.conn().await?;
    let end = before.map_or_else(|| "+".to_owned(), |b| format!("({b}"));
    let reply: StreamRangeReply = redis::cmd("XREVRANGE")
        .arg(store.keys().alert_summaries())
        .arg(end)
        .arg("-")
        .arg("COUNT")
        .arg(count)
        .query_async(&mut conn)
        .await?;
    Ok(positioned(reply, summary))
}

/// State changes after `after` (exclusive), oldest first, at most `count`.
pub async fn events_after(
    store: &Store,
    after: StreamPos,
    count: usize,
) -> Result<Vec<Read<AlertEvent>>, StoreError> {
    let reply = store
        .range_after(&store.keys().alert_events(), &after.to_string(), count)
        .await?;
    Ok(positioned(reply, event))
}

/// Where the state-change stream ends now.
pub async fn events_end(store: &Store) -> Result<StreamPos, StoreError> {
    let mut conn = store.conn().await?;
    let reply: StreamRangeReply = redis::cmd("XREVRANGE")
        .arg(store.keys().alert_events())
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(&mut conn)
        .await?;
    Ok(reply
        .ids
        .first()
        .and_then(|s| StreamPos::parse(&s.id))
        .unwrap_or(StreamPos::START))
}

fn positioned<T>(
    reply: StreamRangeReply,
    parse: fn(String, HashMap<String, Value>) -> Option<T>,
) -> Vec<Read<T>> {
    reply
        .ids
        .into_iter()
        .filter_map(|s| {
            let pos = StreamPos::parse(&s.id)?;
            Some((pos, parse(s.id, s.map)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_positions_compare_as_numbers_not_text() {
        let a = StreamPos::parse("1700000040000-9").unwrap();
        let b = StreamPos::parse("1700000040000-10").unwrap();
        assert!(a < b);
        assert!(StreamPos::parse("999-0").unwrap() < StreamPos::parse("1000-0").unwrap());
        assert_eq!(a.to_string(), "1700000040000-9");
        assert_eq!(a.secs(), 1_700_000_040);
    }

    #[test]
    fn only_well_formed_stream_ids_parse() {
        for bad in [
            "", "-", "1-", "-1", "1", "a-1", "1-1-1", "+", "$", "1 -1", "0x1-0",
        ] {
            assert!(StreamPos::parse(bad).is_none(), "{bad:?}");
        }
        assert!(StreamPos::parse(&format!("{}-0", "9".repeat(21))).is_none());
        assert_eq!(StreamPos::parse("0-0"), Some(StreamPos::START));
    }

    #[test]
    fn event_ids_carry_both_cursors_and_parse_back() {
        let c = Cursor {
            alerts: StreamPos(1_700_000_040_000, 3),
            events: StreamPos(1_700_000_100_000, 0),
        };
        let id = c.to_string();
        assert_eq!(id, "1700000040000-3|1700000100000-0");
        assert_eq!(Cursor::parse(&id), Some(c));
        for bad in [
            "",
            "1-0",
            "1-0|",
            "|1-0",
            "1-0|2-0|3-0",
            "1-0;2-0",
            &"1".repeat(200),
        ] {
            assert!(Cursor::parse(bad).is_none(), "{bad:?}");
        }
    }
}
