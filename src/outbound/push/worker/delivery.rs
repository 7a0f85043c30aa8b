//! Delivery: one job per (event, device) sent on its own, then settled —
//! acknowledged, rescheduled with backoff, or dead-lettered (see the parent
//! module).

use std::collections::HashMap;

use futures_util::future::join_all;
use redis::{FromRedisValue, Value};
use serde::{Deserialize, Serialize};

use crate::bus::StoreError;
use crate::bus::timing::coarse_due;
use crate::domain::{Priority, TipId};
use crate::mediator::DeviceId;
use crate::outbound::push::client::{PushError, Urgency};
use crate::outbound::push::notice::{AlertNotice, NoticeKind};
use crate::outbound::push::worker::fanout::parse_zone;
use crate::outbound::push::worker::{PushReport, PushWorker, device_store_error, id_ms, minute};

/// Delivery jobs read (and sent at once) per step.
const JOB_BATCH: usize = 32;

/// A job's stream fields, in order: also the keys of a retry member (the
/// job as JSON).
pub(super) const FIELDS: &[&str] = &[
    "kind", "tip_id", "zone", "priority", "stage", "event", "device", "attempts",
];

/// A delivery job, as kept in push-out and the retry schedule.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Job {
    kind: String,
    tip_id: String,
    zone: String,
    priority: String,
    stage: String,
    event: String,
    device: String,
    attempts: u32,
}

enum Outcome {
    Delivered,
    Gone,
    Retry,
    Dead,
    Skipped,
    /// Another worker owns the job now; it reports it.
    NotOwned,
}

impl PushWorker {
    pub(super) async fn deliver_jobs(
        &self,
        now_ms: u64,
        report: &mut PushReport,
    ) -> Result<(), StoreError> {
        let jobs = self.read(&[&self.jobs], JOB_BATCH, now_ms).await?;
        let outcomes = join_all(
            jobs.into_iter()
                .map(|(_, id, map)| async move { self.deliver(&id, map, now_ms).await }),
        )
        .await;
        for outcome in outcomes {
            match outcome? {
                Outcome::Delivered => report.delivered += 1,
                Outcome::Gone => report.gone += 1,
                Outcome::Retry => report.retried += 1,
                Outcome::Dead => report.dead += 1,
                Outcome::Skipped => report.skipped += 1,
                Outcome::NotOwned => {}
            }
        }
        Ok(())
    }

    async fn deliver(
        &self,
        id: &str,
        mut map: HashMap<String, Value>,
        now_ms: u64,
    ) -> Result<Outcome, StoreError> {
        let Some(job) = job_from(&mut map) else {
            return self.dead(id, None, "malformed", now_ms).await;
        };
        let parsed = (|| {
            let kind = NoticeKind::parse(&job.kind)?;
            let tip_id = TipId::parse(&job.tip_id)?;
            let zone = parse_zone(&job.zone)?;
            let priority = Priority::parse(&job.priority)?;
            let device = DeviceId::parse(&job.device)?;
            Some((kind, tip_id, zone, priority, device))
        })();
        let Some((kind, tip_id, zone, priority, device)) = parsed else {
            return self.dead(id, Some(&job), "malformed", now_ms).await;
        };
        let age_ms = now_ms.saturating_sub(id_ms(&job.event));
        if age_ms > self.ttl_ms() {
            return self.skip(id, "expired").await;
        }
        match self.devices.get(&device).await {
            Ok(Some(record)) if record.on_duty => {}
            Ok(Some(_)) => return self.skip(id, "off-duty").await,
            Ok(None) => {
                // Revoked: its subscription must not outlive it.
                self.subscriptions.remove(&device).await?;
                return self.skip(id, "no-device").await;
            }
            Err(e) => return Err(device_store_error(e)),
        }
        let stored = match self
            .subscriptions
            .get(&device, self.config.endpoint_policy)
            .await
        {
            Ok(Some(stored)) => stored,
            Ok(None) => return self.skip(id, "no-subscription").await,
            Err(StoreError::Corrupt(_)) => {
                return self
                    .dead(id, Some(&job), "invalid-subscription", now_ms)
                    .await;
            }
            Err(e) => return Err(e),
        };
        if !self.jobs.own(id, now_ms).await? {
            tracing::info!(%tip_id, "push job taken over by another worker; not sending");
            return Ok(Outcome::NotOwned);
        }
        let notice = AlertNotice {
            kind,
            tip_id: &tip_id,
            zone: &zone,
            urgency: Urgency::from(priority),
        };
        let ttl = u32::try_from((self.ttl_ms() - age_ms) / 1000).unwrap_or(self.config.ttl_secs);
        match self
            .client
            .send(&stored.subscription, &notice.to_json(), ttl, notice.urgency)
            .await
        {
            Ok(()) => {
                self.finish(id, None).await?;
                self.outcome("delivered");
                tracing::info!(%tip_id, kind = kind.as_str(), "push delivered");
                Ok(Outcome::Delivered)
            }
            Err(PushError::Gone { .. }) => {
                self.subscriptions.prune(&device, &stored.raw).await?;
                self.finish(id, None).await?;
                self.outcome("gone");
                tracing::info!(%tip_id, code = "push-gone", "push subscription gone; deleted");
                Ok(Outcome::Gone)
            }
            Err(PushError::Transient { retry_after, .. })
                if job.attempts.saturating_add(1) < self.config.max_attempts =>
            {
                let next = Job {
                    attempts: job.attempts + 1,
                    ..job
                };
                let backoff = self
                    .config
                    .backoff_base_ms
                    .saturating_mul(1 << (next.attempts - 1).min(16));
                let wait = retry_after
                    .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                    .max(backoff);
                let member =
                    serde_json::to_string(&next).map_err(|_| StoreError::Corrupt("push job"))?;
                // A minute boundary from this minute: the first failure
                // follows the tip's arrival by milliseconds.
                self.finish(id, Some((member, coarse_due(now_ms, wait))))
                    .await?;
                self.outcome("retry");
                tracing::warn!(%tip_id, attempts = next.attempts, code = "push-unavailable", "push not delivered; will retry");
                Ok(Outcome::Retry)
            }
            Err(e) => {
                let reason = if e.is_transient() {
                    "max-attempts"
                } else {
                    e.code()
                };
                tracing::warn!(%tip_id, code = e.code(), reason, "push not delivered; dead-lettered");
                self.dead(id, Some(&job), reason, now_ms).await
            }
        }
    }

    /// Ends the job's lease and deletes it; with `retry`, schedules it again
    /// (member, due time) in the same transaction.
    async fn finish(&self, id: &str, retry: Option<(String, u64)>) -> Result<(), StoreError> {
        self.retries.finish(&self.jobs, id, retry).await
    }

    async fn skip(&self, id: &str, why: &'static str) -> Result<Outcome, StoreError> {
        self.finish(id, None).await?;
        self.outcome("skipped");
        tracing::info!(reason = why, "push job dropped unsent");
        Ok(Outcome::Skipped)
    }

    async fn dead(
        &self,
        id: &str,
        job: Option<&Job>,
        reason: &str,
        now_ms: u64,
    ) -> Result<Outcome, StoreError> {
        let mut fields: Vec<String> = Vec::new();
        if let Some(job) = job {
            fields.extend([
                "device".into(),
                job.device.clone(),
                "tip_id".into(),
                job.tip_id.clone(),
                "kind".into(),
                job.kind.clone(),
                "stage".into(),
                job.stage.clone(),
                "attempts".into(),
                (job.attempts + 1).to_string(),
            ]);
        }
        fields.extend(["reason".to_owned(), reason.to_owned()]);
        self.retries
            .dead_letter(&self.jobs, id, minute(now_ms), &fields)
            .await?;
        self.outcome("dead");
        Ok(Outcome::Dead)
    }
}

fn text(map: &mut HashMap<String, Value>, name: &str) -> Option<String> {
    map.remove(name)
        .and_then(|v| String::from_redis_value(&v).ok())
}

fn job_from(map: &mut HashMap<String, Value>) -> Option<Job> {
    Some(Job {
        kind: text(map, "kind")?,
        tip_id: text(map, "tip_id")?,
        zone: text(map, "zone")?,
        priority: text(map, "priority")?,
        stage: text(map, "stage")?,
        event: text(map, "event")?,
        device: text(map, "device")?,
        attempts: text(map, "attempts")?.parse().ok()?,
    })
}
