//! The reply relay: messages to tipsters go onto the stream `<prefix>:outbound`
//! (text sealed to the relay key), and delivery workers in the consumer group
//! `relay` send them through the tipster's provider. Failed sends are retried
//! with exponential backoff from a schedule (`<prefix>:outbound:retry`), and
//! after `relay.max_attempts` moved to `<prefix>:outbound:dead`. Nothing is ever
//! sent to an opted-out pseudonym except the one opt-out confirmation. Only the
//! outcome is recorded. Stream entries are untrusted and re-validated.

pub mod threads;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamReadOptions, StreamReadReply,
};
use redis::{FromRedisValue, Value};
use serde::{Deserialize, Serialize};

use crate::bus::{COARSE_APPEND_LUA, Store, StoreError, coarse_script, names::RELAY_GROUP};
use crate::channels::email::outbound::{MailError, MailReply, MailSender};
use crate::channels::sms::provider::{OutboundSms, SendError, SmsClient};
use crate::crypto::{Keyring, open_with, seal};
use crate::domain::{EmailAddress, ThreadId};
use crate::telemetry::Metrics;
use threads::{Provider, ReplyAddress, Threads};

/// Why a message is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A mediator's reply: never to an opted-out tipster.
    Reply,
    /// A carrier-required answer (the STOP confirmation, HELP): always.
    Compliance,
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the reply text is empty or longer than 1,600 characters")]
    BadText,
}

/// One queued message, as kept in the stream and the retry schedule.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Queued {
    thread: String,
    /// base64 of the text sealed to the relay key.
    text: String,
    kind: Kind,
    attempts: u32,
}

/// Queues `text` for the tipster of `thread`.
pub async fn enqueue(
    store: &Store,
    keyring: &Keyring,
    thread: &ThreadId,
    text: &str,
    kind: Kind,
) -> Result<String, RelayError> {
    if text.trim().is_empty() || text.chars().count() > 1600 {
        return Err(RelayError::BadText);
    }
    let relay = keyring.relay_identity().1.to_public();
    let sealed =
        seal(text.as_bytes(), &[relay]).map_err(|_| StoreError::Corrupt("outbound text"))?;
    let queued = Queued {
        thread: thread.to_string(),
        text: STANDARD.encode(sealed),
        kind,
        attempts: 0,
    };
    let mut conn = store.conn().await?;
    let id: String = append_script()
        .key(store.keys().outbound())
        .arg(minute_ms())
        .arg(fields(&queued))
        .invoke_async(&mut conn)
        .await
        .map_err(StoreError::from)?;
    Ok(id)
}

/// The stream fields of a queued message, in order.
fn fields(q: &Queued) -> Vec<String> {
    vec![
        "thread".into(),
        q.thread.clone(),
        "text".into(),
        q.text.clone(),
        "kind".into(),
        match q.kind {
            Kind::Reply => "reply",
            Kind::Compliance => "compliance",
        }
        .into(),
        "attempts".into(),
        q.attempts.to_string(),
    ]
}

/// Stream ids carry time; like the alert stream, the outbound stream and its
/// dead letters get ids rounded to the minute.
fn minute_ms() -> u64 {
    let ms = now_ms();
    ms - ms % 60_000
}

fn append_script() -> redis::Script {
    coarse_script(COARSE_APPEND_LUA)
}

/// Before a send: the entry must still be pending for this consumer (another
/// replica may have reclaimed it after a long stall); claiming it again resets
/// its idle time so nobody else reclaims it while it is being sent.
const OWN_LUA: &str = r"
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if not p[1] or p[1][2] ~= ARGV[2] then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
return 1
";

/// Moves an entry to the dead-letter stream: append there (coarse id), ack
/// and delete here, atomically.
const DEAD_LUA: &str = r"
local id = coarse_xadd(KEYS[2], ARGV[3], {unpack(ARGV, 4)})
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return id
";

const PROMOTE_LUA: &str = r"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 100)
for _, m in ipairs(due) do
  local f = cjson.decode(m)
  coarse_xadd(KEYS[2], ARGV[2], {'thread', f.thread, 'text', f.text, 'kind', f.kind, 'attempts', tostring(f.attempts)})
  redis.call('ZREM', KEYS[1], m)
end
return #due
";

/// How a message leaves: the tipster's SMS provider, or the mail relay.
enum Courier<'a> {
    Sms(&'a SmsClient),
    Mail(&'a MailSender),
}

impl Courier<'_> {
    async fn send(&self, address: &ReplyAddress, text: &str) -> Result<(), SendError> {
        match self {
            Self::Sms(client) => {
                let sms = OutboundSms {
                    to: &address.to,
                    from: &address.from,
                    body: text,
                };
                client.send(&sms).await.map(|_| ())
            }
            Self::Mail(sender) => {
                let (Ok(to), Ok(from)) = (
                    EmailAddress::parse(&address.to),
                    EmailAddress::parse(&address.from),
                ) else {
                    return Err(SendError::Permanent("unusable reply address".into()));
                };
                let threading = address.email.clone().unwrap_or_default();
                let reply = MailReply {
                    to: &to,
                    from: &from,
                    subject: threading.subject.as_deref(),
                    in_reply_to: threading.message_id.as_deref(),
                    references: &threading.references,
                    body: text,
                };
                sender.send_reply(&reply).await.map_err(|e| match e {
                    MailError::Transient(why) => SendError::Transient(why),
                    MailError::Permanent(why) => SendError::Permanent(why),
                })
            }
        }
    }
}

/// What one step did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StepReport {
    pub sent: usize,
    pub suppressed: usize,
    pub retried: usize,
    pub dead: usize,
}

pub struct RelayWorker {
    store: Store,
    keyring: Arc<Keyring>,
    threads: Threads,
    clients: HashMap<&'static str, SmsClient>,
    mail: Option<MailSender>,
    consumer: String,
    max_attempts: u32,
    backoff_base_ms: u64,
    metrics: Arc<Metrics>,
    promote: redis::Script,
    own: redis::Script,
    dead: redis::Script,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl RelayWorker {
    #[allow(
        clippy::too_many_arguments,
        reason = "plain wiring, called from two places"
    )]
    pub fn new(
        store: Store,
        keyring: Arc<Keyring>,
        clients: Vec<(Provider, SmsClient)>,
        mail: Option<MailSender>,
        consumer: String,
        max_attempts: u32,
        backoff_base_ms: u64,
        metrics: Arc<Metrics>,
        retention: std::time::Duration,
    ) -> Self {
        Self {
            threads: Threads::new(store.clone(), keyring.clone(), retention),
            store,
            keyring,
            clients: clients.into_iter().map(|(p, c)| (p.as_str(), c)).collect(),
            mail,
            consumer,
            max_attempts,
            backoff_base_ms,
            metrics,
            promote: coarse_script(PROMOTE_LUA),
            own: redis::Script::new(OWN_LUA),
            dead: coarse_script(DEAD_LUA),
        }
    }

    /// Creates the consumer group if it does not exist yet.
    pub async fn ensure_group(&self) -> Result<(), StoreError> {
        let mut conn = self.store.conn().await?;
        let created: Result<(), redis::RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.store.keys().outbound())
            .arg(RELAY_GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        match created {
            Err(e) if e.code() != Some("BUSYGROUP") => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// One round: due retries back into the stream, entries abandoned by a
    /// crashed worker reclaimed, new entries delivered. Never sleeps.
    pub async fn step(&self) -> Result<StepReport, StoreError> {
        self.ensure_group().await?;
        let keys = self.store.keys();
        let mut conn = self.store.conn().await?;
        let _: u64 = self
            .promote
            .key(keys.outbound_retry())
            .key(keys.outbound())
            .arg(now_ms())
            .arg(minute_ms())
            .invoke_async(&mut conn)
            .await?;
        let mut entries = Vec::new();
        let claimed: StreamAutoClaimReply = redis::AsyncCommands::xautoclaim_options(
            &mut conn,
            keys.outbound(),
            RELAY_GROUP,
            &self.consumer,
            60_000,
            "0-0",
            StreamAutoClaimOptions::default().count(16),
        )
        .await?;
        entries.extend(claimed.claimed.into_iter().map(|s| (s.id, s.map)));
        let opts = StreamReadOptions::default()
            .group(RELAY_GROUP, &self.consumer)
            .count(16);
        let read: Option<StreamReadReply> =
            redis::AsyncCommands::xread_options(&mut conn, &[keys.outbound()], &[">"], &opts)
                .await?;
        for key in read.map(|r| r.keys).unwrap_or_default() {
            entries.extend(key.ids.into_iter().map(|s| (s.id, s.map)));
        }
        let mut report = StepReport::default();
        for (id, map) in entries {
            self.deliver(&id, map, &mut report).await?;
        }
        Ok(report)
    }

    async fn deliver(
        &self,
        id: &str,
        mut map: HashMap<String, Value>,
        report: &mut StepReport,
    ) -> Result<(), StoreError> {
        let mut field = |name: &str| {
            map.remove(name)
                .and_then(|v| String::from_redis_value(&v).ok())
        };
        let queued = (|| {
            Some(Queued {
                thread: field("thread")?,
                text: field("text")?,
                kind: match field("kind")?.as_str() {
                    "reply" => Kind::Reply,
                    "compliance" => Kind::Compliance,
                    _ => return None,
                },
                attempts: field("attempts")?.parse().ok()?,
            })
        })();
        let Some(queued) = queued else {
            return self.dead(id, None, "malformed", report).await;
        };
        let Some(thread) = ThreadId::parse(&queued.thread) else {
            return self.dead(id, Some(&queued), "malformed", report).await;
        };
        let Some(address) = self.threads.reply_address(&thread).await? else {
            return self
                .dead(id, Some(&queued), "no-reply-address", report)
                .await;
        };
        // Under every kept pseudonym key, so a rotation never lifts an opt-out.
        // The same identifier the inbound side hashed: email addresses
        // lowercased, numbers as stored.
        let identifier = match address.provider {
            Provider::Email => EmailAddress::parse(&address.to)
                .map(|a| a.canonical())
                .unwrap_or_else(|_| address.to.clone()),
            Provider::Twilio | Provider::Telnyx => address.to.clone(),
        };
        let pseudonyms = self.keyring.pseudonyms_of(identifier.as_bytes());
        if queued.kind == Kind::Reply && self.threads.is_opted_out(&pseudonyms).await? {
            self.finish(id, None).await?;
            report.suppressed += 1;
            self.outcome("suppressed");
            return Ok(());
        }
        let text = STANDARD
            .decode(&queued.text)
            .ok()
            .and_then(|sealed| open_with(&sealed, self.keyring.relay_identities()).ok())
            .and_then(|plain| String::from_utf8(plain).ok())
            .map(zeroize::Zeroizing::new);
        let Some(text) = text else {
            return self.dead(id, Some(&queued), "unreadable", report).await;
        };
        let courier = match address.provider {
            Provider::Email => self.mail.as_ref().map(Courier::Mail),
            sms => self.clients.get(sms.as_str()).map(Courier::Sms),
        };
        let Some(courier) = courier else {
            return self
                .dead(id, Some(&queued), "provider-disabled", report)
                .await;
        };
        let mut conn = self.store.conn().await?;
        let owned: i64 = self
            .own
            .key(self.store.keys().outbound())
            .arg(RELAY_GROUP)
            .arg(&self.consumer)
            .arg(id)
            .invoke_async(&mut conn)
            .await?;
        if owned == 0 {
            tracing::info!(thread = %thread, "entry reclaimed by another worker; not sending");
            return Ok(());
        }
        match courier.send(&address, &text).await {
            Ok(()) => {
                self.finish(id, None).await?;
                report.sent += 1;
                self.outcome("sent");
                tracing::info!(thread = %thread, pseudonym = %address.pseudonym, provider = address.provider.as_str(), "reply sent");
            }
            Err(SendError::Transient(why)) if queued.attempts + 1 < self.max_attempts => {
                let next = Queued {
                    attempts: queued.attempts + 1,
                    ..queued
                };
                let delay = self
                    .backoff_base_ms
                    .saturating_mul(1 << next.attempts.min(16));
                let member =
                    serde_json::to_string(&next).map_err(|_| StoreError::Corrupt("outbound"))?;
                self.finish(id, Some((member, now_ms().saturating_add(delay))))
                    .await?;
                report.retried += 1;
                self.outcome("retry");
                tracing::warn!(thread = %thread, attempts = next.attempts, error = %why, "reply not sent; will retry");
            }
            Err(e) => {
                tracing::warn!(thread = %thread, error = %e, "reply not sent; dead-lettered");
                self.dead(id, Some(&queued), "send-failed", report).await?;
            }
        }
        Ok(())
    }

    /// Acks and deletes the entry; with `retry`, schedules the message again
    /// (member, due time in ms) in the same transaction.
    async fn finish(&self, id: &str, retry: Option<(String, u64)>) -> Result<(), StoreError> {
        let keys = self.store.keys();
        let mut conn = self.store.conn().await?;
        let mut pipe = redis::pipe();
        pipe.atomic();
        if let Some((member, due)) = retry {
            pipe.zadd(keys.outbound_retry(), member, due).ignore();
        }
        let _: () = pipe
            .xack(keys.outbound(), RELAY_GROUP, &[id])
            .ignore()
            .xdel(keys.outbound(), &[id])
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn dead(
        &self,
        id: &str,
        queued: Option<&Queued>,
        reason: &'static str,
        report: &mut StepReport,
    ) -> Result<(), StoreError> {
        let keys = self.store.keys();
        let mut conn = self.store.conn().await?;
        // The text stays sealed, so an administrator can see why and requeue.
        let mut fields = queued.map(fields).unwrap_or_default();
        fields.extend(["reason".to_owned(), reason.to_owned()]);
        let _: String = self
            .dead
            .key(keys.outbound())
            .key(keys.outbound_dead())
            .arg(RELAY_GROUP)
            .arg(id)
            .arg(minute_ms())
            .arg(fields)
            .invoke_async(&mut conn)
            .await?;
        report.dead += 1;
        self.outcome("dead");
        tracing::warn!(reason, "reply moved to the dead-letter stream");
        Ok(())
    }

    fn outcome(&self, outcome: &str) {
        self.metrics.replies.with_label_values(&[outcome]).inc();
    }
}
