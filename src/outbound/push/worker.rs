//! The push delivery worker: wakes the phones an alert or an escalation
//! concerns.
//!
//! Two stages, each a work queue named `push` (`bus::queue`: leases with
//! minute-coarse ends instead of Redis consumer groups, which would write
//! each delivery's millisecond to the AOF):
//!
//! 1. **Fan-out.** The group reads `<prefix>:alerts` (a new tip) and
//!    `<prefix>:escalation-events` (a stage that fired). For each event it
//!    picks the on-duty devices it concerns — a new tip: those whose zones
//!    hold the tip's zone, every device for a tip marked "unsure", and the
//!    supervisors; escalation stage 1: the supervisors; stage 2: everyone —
//!    and, in one Lua script, appends one job per device that has a
//!    subscription to `<prefix>:push-out` (fields `kind`, `tip_id`, `zone`,
//!    `priority`, `stage`, `event`, `device`, `attempts`), schedules the
//!    fallback nudges of an urgent tip (`crate::outbound::nudge`), and acknowledges the
//!    event. The script first checks that the event is still pending for this
//!    consumer, so an event reclaimed by another worker is fanned out by one
//!    of them only: fan-out is exactly once.
//! 2. **Delivery.** The same group on `<prefix>:push-out` sends each job on its
//!    own, so one dead phone neither blocks nor repeats the others' pushes.
//!    Delivered, or gone (404/410: the subscription is deleted unless the
//!    phone stored a new one meanwhile, and `pushes_total{outcome="gone"}`
//!    counts it), the job is acknowledged and deleted. A transient failure
//!    schedules it again in the sorted set `<prefix>:push:retry` (due time,
//!    exponential backoff from `push.backoff_base_ms`, at least the service's
//!    `Retry-After`) in the same transaction that removes it from the stream;
//!    a permanent refusal, or `push.max_attempts` transient ones, move it to
//!    `<prefix>:push:dead` with the device id, tip id, kind, attempts and a
//!    reason code, never the endpoint.
//!
//! Crashes: an event or job left unacknowledged by a crashed worker is taken
//! over once its lease ends, at the first minute boundary at least
//! [`RECLAIM_IDLE`] after it was taken (so within two minutes); before each
//! send the worker checks the job is still its own and extends the lease. Delivery is **at least once**: a worker that dies after the push
//! service took a message but before the acknowledgement leaves a job that is
//! sent again. The payload names the alert, and the app uses the alert id as
//! the notification tag, so the second copy replaces the first on the phone.
//!
//! Jobs are re-checked when sent: a device revoked or gone off duty since the
//! fan-out gets nothing, and neither does an event older than `push.ttl_secs`
//! (an alert from before an outage; also where a new consumer group starts).
//!
//! Untrusted: stream entries and retry members (re-validated; a malformed one
//! is dead-lettered or dropped), subscriptions read back, push services'
//! answers (sorted by `crate::outbound::push::client`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use redis::Value;

use crate::bus::names::PUSH_GROUP;
use crate::bus::scripts::{PUSH_FAN_OUT, QUEUE_ACK_FN, QUEUE_OWNS_FN, TIMER_FNS};
use crate::bus::timing::minute_floor;
use crate::bus::{Retries, Store, StoreError, WorkQueue, coarse_script};
use crate::config::{ConfigError, Settings, invalid};
use crate::crypto::Keyring;
use crate::mediator::devices::{DeviceError, Devices};
use crate::outbound::nudge::Nudger;
use crate::outbound::push::client::{PushClient, PushClientConfig};
use crate::outbound::push::store::Subscriptions;
use crate::outbound::push::subscription::EndpointPolicy;
use crate::telemetry::Metrics;

mod delivery;
mod fanout;

/// How long an event or job is leased to a consumer before another may take
/// it over (the lease ends at the next minute boundary after this). Well
/// above `push.timeout_secs` (at most 30 s), so a slow send is not reclaimed
/// mid-flight.
pub const RECLAIM_IDLE: Duration = Duration::from_secs(60);

/// What the worker needs besides its connections; `from_settings` maps the
/// configuration here, tests may change it.
#[derive(Debug, Clone)]
pub struct PushWorkerConfig {
    /// This worker's name in the work queues; unique per process.
    pub consumer: String,
    pub max_attempts: u32,
    pub backoff_base_ms: u64,
    pub ttl_secs: u32,
    pub endpoint_policy: EndpointPolicy,
    /// Events and jobs are leased this long (to the next minute boundary).
    pub reclaim_idle: Duration,
}

/// What one step did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PushReport {
    /// Events fanned out (and acknowledged) by this worker.
    pub events: usize,
    /// Delivery jobs those events made.
    pub queued: usize,
    pub delivered: usize,
    /// Subscriptions the push service called gone, deleted.
    pub gone: usize,
    pub retried: usize,
    pub dead: usize,
    /// Jobs dropped unsent: device revoked, off duty, unsubscribed, or the
    /// event too old.
    pub skipped: usize,
    /// Nudges sent (one per channel and mediator).
    pub nudged: usize,
}

pub struct PushWorker {
    store: Store,
    client: PushClient,
    devices: Devices,
    subscriptions: Subscriptions,
    nudger: Option<Nudger>,
    metrics: Arc<Metrics>,
    config: PushWorkerConfig,
    alerts: WorkQueue,
    escalations: WorkQueue,
    jobs: WorkQueue,
    /// The jobs' retry schedule and dead letters.
    retries: Retries,
    fan_out: redis::Script,
    /// Set once an older tipwire's consumer groups were taken over.
    migrated: std::sync::atomic::AtomicBool,
}

impl PushWorker {
    /// The worker `tipwire serve` runs when `push.enabled`: refuses to start
    /// without a VAPID key or with a bad subject.
    pub fn from_settings(
        settings: &Settings,
        store: Store,
        keyring: Arc<Keyring>,
        metrics: Arc<Metrics>,
        consumer: String,
    ) -> Result<Self, ConfigError> {
        let p = &settings.push;
        let vapid = keyring.vapid().ok_or_else(|| {
            invalid(
                "push.enabled",
                "the key directory holds no VAPID key",
                "run `tipwire keys rotate vapid` (or `scripts/keys.sh`) to make one, or set push.enabled = false",
            )
        })?;
        let client = PushClient::new(
            vapid,
            PushClientConfig {
                subject: p.vapid_subject()?,
                timeout: p.timeout,
                endpoint_policy: p.endpoint_policy,
            },
        )
        .map_err(|_| {
            invalid(
                "push",
                "the HTTP client for push services could not be built",
                "check the system's TLS roots",
            )
        })?;
        let nudger = match p.nudge_after() {
            Some(_) => Some(Nudger::from_settings(
                settings,
                store.clone(),
                keyring,
                metrics.clone(),
            )?),
            None => None,
        };
        let config = PushWorkerConfig {
            consumer,
            max_attempts: p.max_attempts,
            backoff_base_ms: u64::try_from(p.backoff_base.as_millis()).unwrap_or(u64::MAX),
            ttl_secs: p.ttl_secs,
            endpoint_policy: p.endpoint_policy,
            reclaim_idle: RECLAIM_IDLE,
        };
        Ok(Self::new(store, client, nudger, metrics, config))
    }

    pub fn new(
        store: Store,
        client: PushClient,
        nudger: Option<Nudger>,
        metrics: Arc<Metrics>,
        config: PushWorkerConfig,
    ) -> Self {
        let queue = |stream: &str| {
            WorkQueue::new(
                store.clone(),
                stream,
                PUSH_GROUP,
                &config.consumer,
                u64::try_from(config.reclaim_idle.as_millis()).unwrap_or(u64::MAX),
            )
        };
        let keys = store.keys();
        let (alerts, escalations, jobs) = (
            queue(keys.alerts()),
            queue(&keys.escalation_events()),
            queue(&keys.push_out()),
        );
        let retries = Retries::new(keys.push_retry(), keys.push_dead(), delivery::FIELDS);
        Self {
            devices: Devices::new(store.clone()),
            subscriptions: Subscriptions::new(store.clone()),
            store,
            client,
            nudger,
            metrics,
            config,
            alerts,
            escalations,
            jobs,
            retries,
            fan_out: coarse_script(&format!(
                "{TIMER_FNS}{QUEUE_ACK_FN}{QUEUE_OWNS_FN}{PUSH_FAN_OUT}"
            )),
            migrated: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Takes over the `push` consumer groups an older tipwire made (their
    /// pending entries are retried, the groups and the times they hold are
    /// destroyed). Nothing else needs creating: a queue starts at its first
    /// take, on the source streams `push.ttl_secs` back, so turning push on
    /// does not push a month of old tips.
    pub async fn ensure_groups(&self) -> Result<(), StoreError> {
        for queue in [&self.alerts, &self.escalations, &self.jobs] {
            queue.migrate().await?;
        }
        Ok(())
    }

    /// One round at `now_ms` (unix milliseconds): due retries back into the
    /// job stream, new and abandoned events fanned out, new and abandoned
    /// jobs sent, due nudges sent. Never sleeps (sends wait for the push
    /// service, at most `push.timeout_secs`, all jobs of a step at once).
    pub async fn step(&self, now_ms: u64) -> Result<PushReport, StoreError> {
        if !self.migrated.load(std::sync::atomic::Ordering::Relaxed) {
            self.ensure_groups().await?;
            self.migrated
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let mut report = PushReport::default();
        self.retries.promote(&self.jobs, now_ms).await?;
        self.fan_out_events(now_ms, &mut report).await?;
        self.deliver_jobs(now_ms, &mut report).await?;
        if let Some(nudger) = &self.nudger {
            report.nudged += nudger.step(now_ms).await?;
        }
        Ok(report)
    }

    /// Entries whose lease ended first, then new ones, from each of `queues`;
    /// a new queue on a source stream starts `push.ttl_secs` back.
    async fn read<'q>(
        &self,
        queues: &[&'q WorkQueue],
        count: usize,
        now_ms: u64,
    ) -> Result<Vec<(&'q WorkQueue, String, HashMap<String, Value>)>, StoreError> {
        let start = format!("{}-0", minute_floor(now_ms.saturating_sub(self.ttl_ms())));
        let mut out = Vec::new();
        for queue in queues {
            let start = if queue.stream() == self.jobs.stream() {
                "0-0"
            } else {
                start.as_str()
            };
            let taken = queue.take(now_ms, count, start).await?;
            out.extend(taken.ids.into_iter().map(|s| (*queue, s.id, s.map)));
        }
        Ok(out)
    }

    fn outcome(&self, outcome: &str) {
        self.metrics.pushes.with_label_values(&[outcome]).inc();
    }

    fn ttl_ms(&self) -> u64 {
        u64::from(self.config.ttl_secs).saturating_mul(1000)
    }
}

fn device_store_error(e: DeviceError) -> StoreError {
    match e {
        DeviceError::Store(s) => s,
        _ => StoreError::Corrupt("device"),
    }
}

/// The time part of a stream id (`<ms>-<seq>`); 0 when there is none.
fn id_ms(id: &str) -> u64 {
    id.split_once('-')
        .and_then(|(ms, _)| ms.parse().ok())
        .unwrap_or(0)
}

/// Stream ids carry time: push-out and its dead letters, like every tipwire
/// stream, get ids rounded down to the minute.
fn minute(ms: u64) -> u64 {
    minute_floor(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_give_their_time_and_nonsense_gives_zero() {
        assert_eq!(id_ms("1700000040000-3"), 1_700_000_040_000);
        assert_eq!(id_ms("garbage"), 0);
        assert_eq!(id_ms(""), 0);
        assert_eq!(minute(1_700_000_059_999), 1_700_000_040_000);
    }
}
