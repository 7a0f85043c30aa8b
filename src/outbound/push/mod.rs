//! Web Push to mediators' phones: a new conflict alert wakes the mediator
//! app through the phone's push service (FCM, Mozilla autopush, Apple, WNS).
//!
//! The message is encrypted to the subscription's key (RFC 8291, `ece`), the
//! gateway identifies itself with VAPID (RFC 8292, `vapid`), and `client`
//! sends it (RFC 8030) and says whether to retry, prune or give up. The
//! payload (`notice`) names only the alert id, the zone, the urgency and
//! whether it is new or an escalation: a push service stores messages and is
//! outside the trust boundary, so tip text never goes this way, even
//! encrypted. Untrusted inputs are the subscriptions sent by mediators'
//! browsers (`subscription`) and the push services' answers.
//!
//! Devices register their subscription through `routes` (kept by `store`);
//! `worker` fans each alert and escalation out to the devices it concerns and
//! delivers one job per device with retries and dead letters; `nudge` sends
//! content-free email/SMS nudges for urgent alerts nobody claimed.

mod client;
mod ece;
mod notice;
pub(crate) mod store;
pub(crate) mod subscription;
mod worker;

use std::sync::Arc;

pub use client::{
    MAX_RETRY_AFTER, PushClient, PushClientConfig, PushError, TransientCause, Urgency,
};
pub use ece::{EceError, MAX_PLAINTEXT, encrypt};
pub use notice::{AlertNotice, NoticeKind};
pub use store::{StoredSubscription, Subscriptions};
pub use subscription::{EndpointPolicy, MAX_ENDPOINT_LEN, Subscription, SubscriptionError};
pub use worker::{PushReport, PushWorker, PushWorkerConfig, RECLAIM_IDLE};

use crate::bus::Store;
use crate::config::{ConfigError, Settings};
use crate::crypto::Keyring;
use crate::server::BackgroundTasks;
use crate::telemetry::Metrics;

/// Wires push into `tipwire serve`: when `push.enabled`, the delivery worker
/// as the background task `push`. Refuses to start when
/// push is on without a VAPID key or with a bad `push.subject`.
pub fn start(
    settings: &Settings,
    store: Store,
    keyring: Arc<Keyring>,
    metrics: Arc<Metrics>,
    tasks: &mut BackgroundTasks,
) -> Result<(), ConfigError> {
    if !settings.push.enabled {
        return Ok(());
    }
    if settings.push.endpoint_policy == EndpointPolicy::DangerousAllowLoopbackHttp {
        tracing::warn!(
            "push.dangerous_allow_loopback_http_endpoints is on: subscriptions may aim this gateway's requests at its own host; tests only"
        );
    }
    let consumer = format!(
        "gw-{}",
        crate::domain::TipId::random()
            .as_str()
            .get(..12)
            .unwrap_or_default()
    );
    let worker = Arc::new(PushWorker::from_settings(
        settings, store, keyring, metrics, consumer,
    )?);
    tasks.every("push", settings.push.poll_interval, move || {
        let worker = worker.clone();
        async move {
            if let Err(e) = worker.step(crate::clock::now_ms()).await {
                tracing::warn!(error = %e, "push step failed; will retry");
            }
        }
    });
    Ok(())
}
