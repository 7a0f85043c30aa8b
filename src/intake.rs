//! The intake pipeline every channel ends in: route (who may open it), seal
//! with age, append to the alert stream. The tip was parsed by its channel
//! adapter and passed the rate limits; here nothing is untrusted any more, but
//! the text is still never logged.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::bus::{AlertEntry, AlertProducer, StoreError};
use crate::crypto::{Keyring, SealError, seal};
use crate::domain::{InboundTip, TipDocument, TipId};
use crate::mediator::{DirectoryError, MediatorDirectory};
use crate::telemetry::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error("could not encode the tip document")]
    Encode,
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

/// Proof that a tip is in the stream.
#[derive(Debug, Clone)]
pub struct Receipt {
    pub tip_id: TipId,
    pub stream_id: String,
}

#[derive(Clone)]
pub struct Intake {
    keyring: Arc<Keyring>,
    directory: MediatorDirectory,
    producer: AlertProducer,
    metrics: Arc<Metrics>,
}

/// Unix seconds rounded down to the minute: all the time precision stored.
pub fn coarse_time(now: SystemTime) -> u64 {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    secs - secs % 60
}

impl Intake {
    pub fn new(
        keyring: Arc<Keyring>,
        directory: MediatorDirectory,
        producer: AlertProducer,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            keyring,
            directory,
            producer,
            metrics,
        }
    }

    /// Seals the tip to its zone's recipients and the escrow key and appends
    /// it. Returns only after Redis acknowledged the append.
    #[tracing::instrument(name = "intake", skip_all, fields(channel = tip.channel.as_str(), zone = tip.zone.as_str(), tip_id))]
    pub async fn submit(&self, tip: InboundTip, now: SystemTime) -> Result<Receipt, IntakeError> {
        let started = Instant::now();
        let tip_id = TipId::random();
        tracing::Span::current().record("tip_id", tip_id.as_str());
        let received = coarse_time(now);

        let mut recipients = self.directory.recipients_for(&tip.zone).await?;
        if recipients.is_empty() {
            tracing::warn!(
                "no mediator or supervisor can open tips for this zone; only escrow can"
            );
        }
        let (_, escrow) = self.keyring.escrow();
        recipients.push(escrow.clone());

        let document = TipDocument {
            v: 1,
            tip_id: tip_id.to_string(),
            channel: tip.channel,
            zone: tip.zone.as_str().to_owned(),
            priority: tip.priority,
            received,
            thread: tip.thread.to_string(),
            text: tip.text.as_str().to_owned(),
        };
        let plaintext = zeroize::Zeroizing::new(
            serde_json::to_vec(&document).map_err(|_| IntakeError::Encode)?,
        );
        drop(document);
        let seal_started = Instant::now();
        let envelope = seal(&plaintext, &recipients)?;
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
        };
        let stream_id = self.producer.append(&entry).await?;
        self.metrics
            .ingest_seconds
            .with_label_values(&[tip.channel.as_str()])
            .observe(started.elapsed().as_secs_f64());
        self.metrics
            .tips_accepted
            .with_label_values(&[tip.channel.as_str()])
            .inc();
        tracing::info!(recipients = recipients.len(), "tip sealed and appended");
        Ok(Receipt { tip_id, stream_id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_is_kept_only_to_the_minute() {
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_059);
        assert_eq!(coarse_time(t), 1_700_000_040);
    }
}
