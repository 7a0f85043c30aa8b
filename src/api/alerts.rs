//! The mediator app's alert API, under `/api/v1/`, for logged-in devices
//! ([`AuthenticatedDevice`]: session cookie; Origin and CSRF token on POST):
//!
//! | route | body | answer |
//! |---|---|---|
//! | `GET /api/v1/alerts/stream` | | 200 `text/event-stream` (see [`stream`]) |
//! | `GET /api/v1/alerts/{tip_id}/envelope` | | 200 `application/octet-stream`: the sealed age file (at most 8 read at once, process-wide; more wait) |
//! | `POST /api/v1/alerts/{tip_id}/claim` | | 200 status; 409 `alert-claimed`, `alert-resolved`; 403 `cannot-open-alert` |
//! | `POST /api/v1/alerts/{tip_id}/release` | | 200 status; 409 `alert-not-claimed`, `alert-resolved`; 403 `not-claimant` |
//! | `POST /api/v1/alerts/{tip_id}/resolve` | `{outcome}` | 200 status; 422 `unknown-outcome`; 409, 403 as release |
//! | `POST /api/v1/alerts/{tip_id}/reassign` | `{device_id}` | 200 status; 403 `not-supervisor`; 422 `invalid-assignee`; 409 `alert-resolved` |
//! | `GET /api/v1/alerts/{tip_id}/assignees` | | 200 `{tip_id, devices: [{device_id, name, device_name, on_duty}]}`; 403 `not-supervisor` (see [`claims`]) |
//! | `POST /api/v1/threads/{thread}/replies` | `{text}` | 202 `{id, thread}`; 422 `invalid-reply-text`; 409 `no-reply-channel` (see [`replies`]) |
//! | `GET /api/v1/threads/{thread}` | | 200 `{thread, items}`: tips without envelopes, replies sealed inline (see [`replies`]) |
//!
//! A status is `{tip_id, state, outcome, claimed_by_me, version}`. A device
//! sees the alerts of its zones, every "unsure" alert (those are sealed to
//! every device) and, as a supervisor, all of them; for any other alert, and
//! for an unknown one, every route answers 404 `not-found`, so nobody learns
//! which alerts exist elsewhere. State changes go through [`AlertStates`]
//! (atomic across replicas) and reach every open stream through
//! `<prefix>:alert-events`.
//!
//! Untrusted: the path segments (parsed into [`TipId`], [`ThreadId`]), the
//! JSON bodies (at most [`MAX_JSON_BYTES`]) and `Last-Event-ID`. Answers are
//! never cached.

pub(crate) mod claims;
pub mod replies;
pub mod stream;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpResponse, web};

use crate::api::auth::AuthenticatedDevice;
use crate::bus::{AlertReader, Store, StoreError, StoredAlert};
use crate::config::Settings;
use crate::crypto::Keyring;
use crate::domain::{ThreadId, TipId, ZoneChoice};
use crate::error::AppError;
use crate::mediator::devices::DeviceRecord;
use crate::mediator::live::LiveFeed;
use crate::mediator::{AlertEvent, AlertStates, ClaimError, DeviceId, MediatorDirectory};

/// Largest JSON body: a reply of 1,600 characters, escaped, fits.
pub const MAX_JSON_BYTES: usize = 16 * 1024;

/// Everything the alert routes need, registered once as app data.
pub struct AlertsApi {
    store: Store,
    reader: AlertReader,
    states: AlertStates,
    live: Arc<LiveFeed>,
    keyring: Arc<Keyring>,
    directory: MediatorDirectory,
    heartbeat: Duration,
    retention_secs: u64,
    reply_script: redis::Script,
}

impl AlertsApi {
    pub fn new(
        settings: &Settings,
        store: Store,
        keyring: Arc<Keyring>,
        live: Arc<LiveFeed>,
    ) -> Self {
        let retention_secs = settings.retention.period.as_secs().max(1);
        Self {
            reader: AlertReader::new(store.clone()),
            states: AlertStates::new(store.clone(), retention_secs),
            directory: MediatorDirectory::new(store.clone()),
            reply_script: replies::script(),
            store,
            live,
            keyring,
            heartbeat: settings.mediator.stream_heartbeat,
            retention_secs,
        }
    }

    /// The alert of `tip_id` if this viewer may see it; 404 otherwise.
    async fn visible_alert(&self, viewer: &Viewer, tip_id: &str) -> Result<StoredAlert, AppError> {
        let tip_id = TipId::parse(tip_id).ok_or(AppError::NotFound)?;
        let alert = self
            .reader
            .by_tip(&tip_id)
            .await
            .map_err(store_error)?
            .ok_or(AppError::NotFound)?;
        if viewer.sees_zone(&alert.entry.zone) {
            Ok(alert)
        } else {
            Err(AppError::NotFound)
        }
    }
}

/// Who is looking, and what they may see.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub device_id: DeviceId,
    /// The device's directory entry: what an alert's `sealed_to` lists.
    mediator_id: String,
    zones: BTreeSet<String>,
    supervisor: bool,
    /// When the device was enrolled (unix seconds, the day).
    created: u64,
}

impl Viewer {
    pub fn of(device_id: &DeviceId, record: &DeviceRecord) -> Self {
        Self {
            device_id: device_id.clone(),
            mediator_id: record.mediator_id.clone(),
            zones: record.zones.iter().cloned().collect(),
            supervisor: record.supervisor,
            created: record.created,
        }
    }

    /// Whether the alert was sealed to this device: only then can it open
    /// the alert, and so claim it, be handed it or answer its tipster. A
    /// device enrolled after the tip came in sees the alert (its zone) but
    /// cannot. For entries written before `sealed_to` was recorded: a device
    /// of the alert's zones enrolled no later than the day of the tip.
    pub fn can_open(&self, zone: &str, received: u64, sealed_to: Option<&[String]>) -> bool {
        match sealed_to {
            Some(ids) => ids.contains(&self.mediator_id),
            None => self.sees_zone(zone) && self.created <= received,
        }
    }

    /// [`Self::can_open`] for a stored alert.
    pub fn can_open_alert(&self, alert: &StoredAlert) -> bool {
        let e = &alert.entry;
        self.can_open(&e.zone, e.received, e.sealed_to.as_deref())
    }

    /// Alerts of the device's zones, every "unsure" alert, and for a
    /// supervisor everything: who the tip was sealed to.
    pub fn sees_zone(&self, zone: &str) -> bool {
        self.supervisor || zone == ZoneChoice::Unsure.as_str() || self.zones.contains(zone)
    }

    /// A change to an alert this viewer sees. An event without a zone
    /// (state written before zones were recorded) goes only to supervisors
    /// and the devices involved.
    pub fn sees_event(&self, event: &AlertEvent) -> bool {
        match &event.zone {
            Some(zone) => self.sees_zone(zone.as_str()),
            None => {
                self.supervisor
                    || event.by == self.device_id
                    || event.status.device.as_ref() == Some(&self.device_id)
            }
        }
    }
}

/// Maps a store failure to its public code; the cause is logged here, once.
fn store_error(e: StoreError) -> AppError {
    match e {
        StoreError::Unavailable(cause) => {
            tracing::warn!(code = "store-unavailable", error = %cause, "alert request failed");
            AppError::StoreUnavailable
        }
        StoreError::Corrupt(what) => {
            tracing::error!(code = "internal", what, "damaged alert data in redis");
            AppError::Internal
        }
    }
}

/// The same stable codes [`ClaimError::code`] names.
fn claim_error(e: ClaimError) -> AppError {
    let mapped = match e {
        ClaimError::Store(s) => return store_error(s),
        ClaimError::NotSupervisor => AppError::NotSupervisor,
        ClaimError::NotClaimed => AppError::AlertNotClaimed,
        ClaimError::NotClaimant => AppError::NotClaimant,
        ClaimError::AlreadyResolved => AppError::AlertResolved,
        ClaimError::Unenrolled => AppError::SessionExpired,
        ClaimError::AssigneeGone => AppError::InvalidAssignee,
    };
    tracing::info!(code = mapped.info().code, "alert change refused");
    mapped
}

pub fn routes(cfg: &mut web::ServiceConfig, api: web::Data<AlertsApi>) {
    let json = || crate::error::json_limited(MAX_JSON_BYTES);
    cfg.app_data(api)
        .service(
            web::resource("/api/v1/alerts/stream")
                .route(web::get().to(stream::stream))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/api/v1/alerts/{tip_id}/envelope")
                .route(web::get().to(envelope))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/api/v1/alerts/{tip_id}/claim")
                .route(web::post().to(claims::claim))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/api/v1/alerts/{tip_id}/release")
                .route(web::post().to(claims::release))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/api/v1/alerts/{tip_id}/resolve")
                .app_data(json())
                .route(web::post().to(claims::resolve))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/api/v1/alerts/{tip_id}/reassign")
                .app_data(json())
                .route(web::post().to(claims::reassign))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/api/v1/alerts/{tip_id}/assignees")
                .route(web::get().to(claims::assignees))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/api/v1/threads/{thread}/replies")
                .app_data(json())
                .route(web::post().to(replies::post_reply))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/api/v1/threads/{thread}")
                .route(web::get().to(replies::get_thread))
                .default_service(web::to(method_not_allowed)),
        );
}

async fn method_not_allowed() -> Result<HttpResponse, AppError> {
    Err(AppError::MethodNotAllowed)
}

fn no_store(mut builder: actix_web::HttpResponseBuilder) -> actix_web::HttpResponseBuilder {
    builder.insert_header((header::CACHE_CONTROL, "no-store"));
    builder
}

fn viewer(device: &AuthenticatedDevice) -> Viewer {
    Viewer::of(device.device_id(), device.device())
}

/// Envelope reads in flight at once, in the whole process: each reads one
/// whole entry (up to megabytes of photos) into memory, so a flood of
/// requests (or a phone opening a thread of many large tips) waits its turn
/// rather than making the gateway hold them all at once.
const ENVELOPE_READS_AT_ONCE: usize = 8;
static ENVELOPE_READS: tokio::sync::Semaphore =
    tokio::sync::Semaphore::const_new(ENVELOPE_READS_AT_ONCE);

/// A turn to read an envelope, waiting for one (`None` only if the
/// semaphore were closed, which it never is: then the read goes ahead).
async fn envelope_turn() -> Option<tokio::sync::SemaphorePermit<'static>> {
    ENVELOPE_READS.acquire().await.ok()
}

#[tracing::instrument(name = "alert_envelope", skip_all)]
async fn envelope(
    device: AuthenticatedDevice,
    path: web::Path<String>,
    api: web::Data<AlertsApi>,
) -> Result<HttpResponse, AppError> {
    let alert = {
        let _turn = envelope_turn().await;
        api.visible_alert(&viewer(&device), &path).await?
    };
    Ok(no_store(HttpResponse::Ok())
        .content_type("application/octet-stream")
        .body(alert.entry.envelope))
}

/// Maps a device lookup failure; the store's cause is logged once, there.
fn device_error(e: crate::mediator::devices::DeviceError) -> AppError {
    match e {
        crate::mediator::devices::DeviceError::Store(s) => store_error(s),
        other => {
            tracing::error!(code = "internal", error = %other, "device lookup failed");
            AppError::Internal
        }
    }
}

/// Parses a thread id from the path; 404 for anything else.
fn thread_id(s: &str) -> Result<ThreadId, AppError> {
    ThreadId::parse(s).ok_or(AppError::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(zones: &[&str], supervisor: bool) -> DeviceRecord {
        DeviceRecord {
            device_id: "d_1".into(),
            mediator_id: "m_1".into(),
            name: "Ana".into(),
            device_name: None,
            zones: zones.iter().map(|z| (*z).to_owned()).collect(),
            supervisor,
            recipient: String::new(),
            signing_key: String::new(),
            on_duty: true,
            created: 0,
        }
    }

    fn viewer(zones: &[&str], supervisor: bool) -> Viewer {
        Viewer::of(&DeviceId::parse("d_1").unwrap(), &record(zones, supervisor))
    }

    #[test]
    fn envelope_reads_beyond_the_bound_wait_for_a_turn_instead_of_failing() {
        use futures_util::FutureExt as _;
        let held: Vec<_> = (0..ENVELOPE_READS_AT_ONCE)
            .map(|_| envelope_turn().now_or_never().flatten().unwrap())
            .collect();
        let mut next = Box::pin(envelope_turn());
        assert!((&mut next).now_or_never().is_none(), "the ninth read waits");
        drop(held);
        assert!(next.now_or_never().flatten().is_some(), "then goes ahead");
    }

    #[test]
    fn a_mediator_sees_its_zones_and_unsure_alerts_and_a_supervisor_sees_all() {
        let north = viewer(&["north"], false);
        assert!(north.sees_zone("north"));
        assert!(north.sees_zone("unsure"));
        assert!(!north.sees_zone("south"));
        let sup = viewer(&[], true);
        for zone in ["north", "south", "unsure"] {
            assert!(sup.sees_zone(zone));
        }
    }

    #[test]
    fn claim_refusals_answer_with_the_codes_claims_names() {
        for e in [
            ClaimError::NotSupervisor,
            ClaimError::NotClaimed,
            ClaimError::NotClaimant,
            ClaimError::AlreadyResolved,
            ClaimError::Unenrolled,
            ClaimError::AssigneeGone,
        ] {
            let code = e.code();
            assert_eq!(claim_error(e).info().code, code);
        }
        assert_eq!(AppError::AlertClaimed.info().status, 409);
        assert_eq!(AppError::AlertResolved.info().status, 409);
        assert_eq!(AppError::NotClaimant.info().status, 403);
        assert_eq!(AppError::NotSupervisor.info().status, 403);
        assert_eq!(AppError::UnknownOutcome.info().status, 422);
    }
}
