//! The intake pipeline every channel ends in: route (who may open it), seal
//! with age, append to the alert stream (with the tip's escalation deadlines,
//! in the same script). The tip was parsed by its channel
//! adapter and passed the rate limits; here nothing is untrusted any more, but
//! the text is still never logged.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use arc_swap::ArcSwapOption;

use crate::bus::{AlertEntry, AlertProducer, Appended, SenderState, StoreError};
use crate::crypto::{Keyring, RecipientKey, SealError, seal};
use crate::domain::{InboundTip, TipDocument, TipId};
use crate::mediator::{DirectoryError, EscalationPolicy, MediatorDirectory, Routing};
use crate::telemetry::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error("could not encode the tip document")]
    Encode,
    #[error("the mediator directory kept changing while the tip was sealed")]
    DirectoryChurn,
    #[error("the sealing task did not finish")]
    SealTask,
}

impl From<DirectoryError> for IntakeError {
    fn from(e: DirectoryError) -> Self {
        match e {
            DirectoryError::Store(s) => Self::Store(s),
            // Reading recipients only fails on the store.
            _ => Self::Store(StoreError::Corrupt("mediator directory")),
        }
    }
}

/// What became of a submitted tip.
#[derive(Debug, Clone)]
pub enum Submitted {
    Stored(Receipt),
    /// A retried or replayed provider message; the first copy is stored.
    Duplicate(SenderState),
}

/// Proof that a tip is in the stream.
#[derive(Debug, Clone)]
pub struct Receipt {
    pub tip_id: TipId,
    pub stream_id: String,
    /// For provider messages: the sender's opt-out and reply-address state.
    pub sender: SenderState,
}

#[derive(Clone)]
pub struct Intake {
    keyring: Arc<Keyring>,
    directory: MediatorDirectory,
    producer: AlertProducer,
    /// Delays from `escalation.*`: the append schedules each tip's deadlines
    /// in the same script as its XADD.
    escalation: EscalationPolicy,
    metrics: Arc<Metrics>,
    /// Recipients as last read. The append script checks the directory
    /// version, so a stale cache costs one re-seal, never a wrong recipient.
    routing: Arc<ArcSwapOption<Routing>>,
    /// Seals running on the blocking pool at once: one per core, so a burst
    /// of large seals queues instead of piling threads onto the same cores.
    blocking_seals: Arc<tokio::sync::Semaphore>,
}

/// Attempts to seal under a directory that changes between read and append.
const MAX_SEAL_ATTEMPTS: usize = 4;

/// Above this many recipients a tip is sealed on the blocking pool. Each
/// recipient costs two X25519 multiplications (~75 µs here); sealed inline, a
/// tip for a large team would hold the actix worker for milliseconds, and
/// with it every live alert stream that worker writes. Below it, sealing
/// inline measured faster (docs/benchmarks.md).
const INLINE_SEAL_MAX_RECIPIENTS: usize = 32;

/// Unix seconds rounded down to the minute: all the time precision stored.
pub fn coarse_time(now: SystemTime) -> u64 {
    let secs = crate::clock::unix_secs(now);
    secs - secs % 60
}

impl Intake {
    pub fn new(
        keyring: Arc<Keyring>,
        directory: MediatorDirectory,
        producer: AlertProducer,
        escalation: EscalationPolicy,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            keyring,
            directory,
            producer,
            escalation,
            metrics,
            routing: Arc::new(ArcSwapOption::empty()),
            blocking_seals: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            )),
        }
    }

    /// Seals inline for a few recipients, on the blocking pool for many.
    async fn seal(
        &self,
        plaintext: &Arc<zeroize::Zeroizing<Vec<u8>>>,
        recipients: Vec<RecipientKey>,
    ) -> Result<Vec<u8>, IntakeError> {
        if recipients.len() <= INLINE_SEAL_MAX_RECIPIENTS {
            return Ok(seal(plaintext, &recipients)?);
        }
        let _permit = self
            .blocking_seals
            .acquire()
            .await
            .map_err(|_| IntakeError::SealTask)?;
        let plaintext = plaintext.clone();
        tokio::task::spawn_blocking(move || seal(&plaintext, &recipients))
            .await
            .map_err(|_| IntakeError::SealTask)?
            .map_err(IntakeError::from)
    }

    async fn routing(&self, refresh: bool) -> Result<Arc<Routing>, IntakeError> {
        if !refresh && let Some(cached) = self.routing.load_full() {
            return Ok(cached);
        }
        let fresh = Arc::new(self.directory.routing().await?);
        self.routing.store(Some(fresh.clone()));
        Ok(fresh)
    }

    /// The replay markers of a message or submission whose identity is
    /// `source`: a keyed hash under every kept pseudonym key, current first
    /// (the append sets the current one; a marker set before a key rotation
    /// must still be found after it).
    pub fn markers_of(&self, source: &[u8]) -> Vec<crate::domain::Pseudonym> {
        self.keyring.pseudonyms_of(source)
    }

    /// Whether any of `markers` is set: the cheap look before sealing. The
    /// append checks the current one again, atomically.
    pub async fn marker_seen(
        &self,
        markers: &[crate::domain::Pseudonym],
    ) -> Result<bool, StoreError> {
        let names: Vec<&str> = markers.iter().map(|m| m.as_str()).collect();
        self.producer.store().marker_seen(&names).await
    }

    /// Seals the tip to its zone's recipients and the escrow key and appends
    /// it. Returns only after Redis acknowledged the append.
    #[tracing::instrument(name = "intake", skip_all, fields(channel = tip.channel.as_str(), zone = tip.zone.as_str(), tip_id))]
    pub async fn submit(
        &self,
        mut tip: InboundTip,
        now: SystemTime,
    ) -> Result<Submitted, IntakeError> {
        let started = Instant::now();
        let tip_id = TipId::random();
        tracing::Span::current().record("tip_id", tip_id.as_str());
        let received = coarse_time(now);

        let document = TipDocument {
            v: 1,
            tip_id: tip_id.to_string(),
            channel: tip.channel,
            zone: tip.zone.as_str().to_owned(),
            priority: tip.priority,
            received,
            thread: tip.thread.to_string(),
            subject: tip.subject.take().map(|s| s.as_str().to_owned()),
            text: tip.text.as_str().to_owned(),
            attachments: std::mem::take(&mut tip.attachments),
            withheld: std::mem::take(&mut tip.withheld),
        };
        let plaintext = Arc::new(zeroize::Zeroizing::new(
            serde_json::to_vec(&document).map_err(|_| IntakeError::Encode)?,
        ));
        drop(document);

        // Minute boundaries from the arrival's minute (never early, never
        // finer than `received`): see `EscalationPolicy::deadlines`.
        let now_ms = crate::clock::unix_ms(now);
        let deadlines = self.escalation.scheduled(&tip_id, tip.priority, now_ms);

        let mut stream_id = None;
        let mut sender = SenderState::default();
        let mut recipient_count = 0;
        for attempt in 0..MAX_SEAL_ATTEMPTS {
            let routing = self.routing(attempt > 0).await?;
            let mut recipients = routing.recipients_for(&tip.zone);
            if recipients.is_empty() && attempt == 0 {
                tracing::warn!(
                    "no mediator or supervisor can open tips for this zone; only escrow can"
                );
            }
            recipients.push(self.keyring.escrow().1.clone());
            recipient_count = recipients.len();

            let seal_started = Instant::now();
            let envelope = self.seal(&plaintext, recipients).await?;
            self.metrics
                .seal_seconds
                .observe(seal_started.elapsed().as_secs_f64());

            let entry = AlertEntry {
                tip_id: tip_id.clone(),
                zone: tip.zone.as_str().to_owned(),
                priority: tip.priority.as_str().to_owned(),
                channel: tip.channel.as_str().to_owned(),
                received,
                pseudonym: tip
                    .pseudonym
                    .as_ref()
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_default(),
                thread: tip.thread.to_string(),
                key_version: self.keyring.key_version(),
                envelope,
                sealed_to: Some(routing.recipient_ids_for(&tip.zone)),
            };
            let (appended, state) = self
                .producer
                .append(&entry, routing.version, tip.provider.as_ref(), &deadlines)
                .await?;
            sender = state;
            match appended {
                Appended::Stored(id) => {
                    stream_id = Some(id);
                    break;
                }
                Appended::Duplicate => {
                    tracing::info!("provider message already stored; not stored again");
                    return Ok(Submitted::Duplicate(sender));
                }
                Appended::StaleDirectory => {
                    tracing::debug!("mediator directory changed; sealing again")
                }
            }
        }
        let stream_id = stream_id.ok_or(IntakeError::DirectoryChurn)?;
        self.metrics
            .ingest_seconds
            .with_label_values(&[tip.channel.as_str()])
            .observe(started.elapsed().as_secs_f64());
        self.metrics
            .tips_accepted
            .with_label_values(&[tip.channel.as_str()])
            .inc();
        tracing::info!(recipients = recipient_count, "tip sealed and appended");
        Ok(Submitted::Stored(Receipt {
            tip_id,
            stream_id,
            sender,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn time_is_kept_only_to_the_minute() {
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_059);
        assert_eq!(coarse_time(t), 1_700_000_040);
    }
}
