//! The reply relay: messages to tipsters go onto the stream `<prefix>:outbound`
//! (text sealed to the relay key), and delivery workers in the work queue
//! `relay` (`bus::queue`: minute-coarse leases, not a Redis consumer group,
//! which would write each send's millisecond to the AOF; a Telnyx answer is
//! queued the moment its tip arrives) send them through the tipster's
//! provider. Failed sends are retried with exponential backoff from a
//! schedule (`<prefix>:outbound:retry`, due times on minute boundaries), and
//! after `relay.max_attempts` moved to `<prefix>:outbound:dead`. Nothing is ever
//! sent to an opted-out pseudonym except the one opt-out confirmation. Only the
//! outcome is recorded. Stream entries are untrusted and re-validated.

pub mod threads;

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use redis::{FromRedisValue, Value};
use serde::{Deserialize, Serialize};

use crate::bus::scripts::COARSE_APPEND;
use crate::bus::timing::{coarse_due, minute_floor};
use crate::bus::{Retries, Store, StoreError, WorkQueue, coarse_script, names::RELAY_GROUP};
use crate::clock;
use crate::crypto::{Keyring, open_with, seal};
use crate::domain::{EmailAddress, ThreadId};
use crate::outbound::email::{MailError, MailReply, MailSender};
use crate::outbound::sms::{OutboundSms, SendError, SmsClient};
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

/// The stream fields of a queued message, in order (also the keys of a
/// retry member, the message as JSON).
const FIELDS: &[&str] = &["thread", "text", "kind", "attempts"];

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
    minute_floor(clock::now_ms())
}

fn append_script() -> redis::Script {
    coarse_script(COARSE_APPEND)
}

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
    keyring: Arc<Keyring>,
    threads: Threads,
    clients: HashMap<&'static str, SmsClient>,
    mail: Option<MailSender>,
    queue: WorkQueue,
    max_attempts: u32,
    backoff_base_ms: u64,
    metrics: Arc<Metrics>,
    retries: Retries,
    /// Set once an older tipwire's consumer group was taken over.
    migrated: std::sync::atomic::AtomicBool,
}

/// How long an entry is leased to a worker before another may take it over
/// (to the next minute boundary after this).
const LEASE_MS: u64 = 60_000;

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
            queue: WorkQueue::new(
                store.clone(),
                &store.keys().outbound(),
                RELAY_GROUP,
                &consumer,
                LEASE_MS,
            ),
            retries: Retries::new(
                store.keys().outbound_retry(),
                store.keys().outbound_dead(),
                FIELDS,
            ),
            keyring,
            clients: clients.into_iter().map(|(p, c)| (p.as_str(), c)).collect(),
            mail,
            max_attempts,
            backoff_base_ms,
            metrics,
            migrated: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Takes over the `relay` consumer group an older tipwire made (its
    /// pending entries are retried; the group and its times are destroyed).
    pub async fn ensure_group(&self) -> Result<(), StoreError> {
        self.queue.migrate().await
    }

    /// One round: due retries back into the stream, entries a crashed worker
    /// left (lease ended) taken over, new entries delivered. Never sleeps.
    pub async fn step(&self) -> Result<StepReport, StoreError> {
        self.step_with(&clock::now_ms).await
    }

    /// [`Self::step`] at `now_ms` (unix milliseconds).
    pub async fn step_at(&self, now_ms: u64) -> Result<StepReport, StoreError> {
        self.step_with(&|| now_ms).await
    }

    /// [`Self::step`] reading the time (unix milliseconds) from `clock`
    /// whenever it matters: sends are one after another, so a send late in a
    /// round may start minutes after the round did, and its lease is
    /// extended from when it starts, not from when the round took it.
    pub async fn step_with(
        &self,
        clock: &(dyn Fn() -> u64 + Sync),
    ) -> Result<StepReport, StoreError> {
        let now_ms = clock();
        if !self.migrated.load(std::sync::atomic::Ordering::Relaxed) {
            self.ensure_group().await?;
            self.migrated
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        self.retries.promote(&self.queue, now_ms).await?;
        let entries = self.queue.take(now_ms, 16, "0-0").await?.ids;
        let mut report = StepReport::default();
        for entry in entries {
            self.deliver(&entry.id, entry.map, clock, &mut report)
                .await?;
        }
        Ok(report)
    }

    async fn deliver(
        &self,
        id: &str,
        mut map: HashMap<String, Value>,
        clock: &(dyn Fn() -> u64 + Sync),
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
        let now_ms = clock();
        if !self.queue.own(id, now_ms).await? {
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
                // A minute boundary from this minute: a Telnyx answer is
                // first tried the moment its tip arrived.
                self.finish(id, Some((member, coarse_due(now_ms, delay))))
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

    /// Ends the entry's lease and deletes it; with `retry`, schedules the
    /// message again (member, due time) in the same transaction.
    async fn finish(&self, id: &str, retry: Option<(String, u64)>) -> Result<(), StoreError> {
        self.retries.finish(&self.queue, id, retry).await
    }

    async fn dead(
        &self,
        id: &str,
        queued: Option<&Queued>,
        reason: &'static str,
        report: &mut StepReport,
    ) -> Result<(), StoreError> {
        // The text stays sealed, so an administrator can see why and requeue.
        let mut fields = queued.map(fields).unwrap_or_default();
        fields.extend(["reason".to_owned(), reason.to_owned()]);
        self.retries
            .dead_letter(&self.queue, id, minute_ms(), &fields)
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
