//! Claim, release, resolve and reassign, and the supervisor's picker of
//! assignees: every state change goes through [`AlertStates`] (one Lua
//! script each, atomic across replicas) and answers with the alert's status
//! after it. Only a device the tip was sealed to can claim it or be handed
//! it (403 `cannot-open-alert`, 422 `invalid-assignee`); a supervisor can
//! hand it on without being able to open it.

use actix_web::{HttpResponse, web};
use serde::Deserialize;

use crate::api::alerts::{AlertsApi, Viewer, claim_error, device_error, no_store, viewer};
use crate::api::auth::AuthenticatedDevice;
use crate::bus::StoredAlert;
use crate::domain::TipId;
use crate::error::AppError;
use crate::mediator::devices::DeviceApi;
use crate::mediator::{AlertState, AlertStatus, Claim, ClaimError, DeviceId, Outcome};

/// The answer to every state change: the alert's state after it.
fn answer(tip_id: &TipId, status: &AlertStatus, me: &DeviceId) -> HttpResponse {
    no_store(HttpResponse::Ok()).json(serde_json::json!({
        "tip_id": tip_id.as_str(),
        "state": status.state.as_str(),
        "outcome": status.outcome.map(Outcome::as_str),
        "claimed_by_me": status.device.as_ref() == Some(me),
        "version": status.version,
    }))
}

/// The alert in the path if this device may see it (404 otherwise), named
/// on the handler's span.
async fn visible(
    device: &AuthenticatedDevice,
    path: &str,
    api: &AlertsApi,
) -> Result<StoredAlert, AppError> {
    let alert = api.visible_alert(&viewer(device), path).await?;
    tracing::Span::current().record("tip_id", alert.entry.tip_id.as_str());
    Ok(alert)
}

#[tracing::instrument(name = "alert_claim", skip_all, fields(tip_id))]
pub(super) async fn claim(
    device: AuthenticatedDevice,
    path: web::Path<String>,
    api: web::Data<AlertsApi>,
) -> Result<HttpResponse, AppError> {
    let alert = visible(&device, &path, &api).await?;
    let tip_id = &alert.entry.tip_id;
    // A phone that cannot open the tip cannot act on it, and a claim would
    // silence its escalation for everyone who can.
    if !viewer(&device).can_open_alert(&alert) {
        tracing::info!(code = "cannot-open-alert", "alert change refused");
        return Err(AppError::CannotOpenAlert);
    }
    let me = device.device_id();
    match api.states.claim(tip_id, me).await.map_err(claim_error)? {
        Claim::Claimed { version } => {
            let status = AlertStatus {
                state: AlertState::Claimed,
                device: Some(me.clone()),
                outcome: None,
                version,
            };
            Ok(answer(tip_id, &status, me))
        }
        Claim::AlreadyClaimed { .. } => {
            tracing::info!(code = "alert-claimed", "alert change refused");
            Err(AppError::AlertClaimed)
        }
        Claim::Resolved => {
            tracing::info!(code = "alert-resolved", "alert change refused");
            Err(AppError::AlertResolved)
        }
    }
}

#[tracing::instrument(name = "alert_release", skip_all, fields(tip_id))]
pub(super) async fn release(
    device: AuthenticatedDevice,
    path: web::Path<String>,
    api: web::Data<AlertsApi>,
) -> Result<HttpResponse, AppError> {
    let alert = visible(&device, &path, &api).await?;
    let tip_id = &alert.entry.tip_id;
    let status = api
        .states
        .release(tip_id, device.device_id())
        .await
        .map_err(claim_error)?;
    Ok(answer(tip_id, &status, device.device_id()))
}

#[derive(Deserialize, PartialEq)]
pub(crate) struct ResolveRequest {
    pub(crate) outcome: String,
}

#[tracing::instrument(name = "alert_resolve", skip_all, fields(tip_id))]
pub(super) async fn resolve(
    device: AuthenticatedDevice,
    path: web::Path<String>,
    body: web::Json<ResolveRequest>,
    api: web::Data<AlertsApi>,
) -> Result<HttpResponse, AppError> {
    let outcome = Outcome::parse(body.outcome.trim()).map_err(|_| AppError::UnknownOutcome)?;
    let alert = visible(&device, &path, &api).await?;
    let tip_id = &alert.entry.tip_id;
    let status = api
        .states
        .resolve(tip_id, device.device_id(), outcome)
        .await
        .map_err(claim_error)?;
    Ok(answer(tip_id, &status, device.device_id()))
}

#[derive(Deserialize, PartialEq)]
pub(crate) struct ReassignRequest {
    pub(crate) device_id: String,
}

#[tracing::instrument(name = "alert_reassign", skip_all, fields(tip_id))]
pub(super) async fn reassign(
    device: AuthenticatedDevice,
    path: web::Path<String>,
    body: web::Json<ReassignRequest>,
    api: web::Data<AlertsApi>,
    devices: web::Data<DeviceApi>,
) -> Result<HttpResponse, AppError> {
    let alert = visible(&device, &path, &api).await?;
    let tip_id = &alert.entry.tip_id;
    if !device.device().supervisor {
        return Err(claim_error(ClaimError::NotSupervisor));
    }
    let to = DeviceId::parse(body.device_id.trim()).ok_or(AppError::InvalidAssignee)?;
    let target = devices
        .devices
        .get(&to)
        .await
        .map_err(device_error)?
        .ok_or(AppError::InvalidAssignee)?;
    // Someone who could not open the tip could not act on it.
    if !Viewer::of(&to, &target).can_open_alert(&alert) {
        return Err(AppError::InvalidAssignee);
    }
    let status = api
        .states
        .reassign(tip_id, device.device_id(), true, &to)
        .await
        .map_err(claim_error)?;
    Ok(answer(tip_id, &status, device.device_id()))
}

/// Whom a supervisor can hand an alert to, for the app's picker: every
/// enrolled device that can open it (the rule [`reassign`] enforces), by
/// name, the current claimant aside, with whether each is on duty. Device ids,
/// display names and duty only: the picker needs no keys or contacts, and a
/// mediator's phone never asks (403 `not-supervisor`, like reassign itself).
#[tracing::instrument(name = "alert_assignees", skip_all, fields(tip_id))]
pub(super) async fn assignees(
    device: AuthenticatedDevice,
    path: web::Path<String>,
    api: web::Data<AlertsApi>,
    devices: web::Data<DeviceApi>,
) -> Result<HttpResponse, AppError> {
    let alert = visible(&device, &path, &api).await?;
    let tip_id = &alert.entry.tip_id;
    if !device.device().supervisor {
        return Err(claim_error(ClaimError::NotSupervisor));
    }
    let claimant = api.states.get(tip_id).await.map_err(claim_error)?.device;
    let listed: Vec<serde_json::Value> = devices
        .devices
        .list()
        .await
        .map_err(device_error)?
        .iter()
        .filter_map(|record| {
            let id = record.id()?;
            let eligible =
                claimant.as_ref() != Some(&id) && Viewer::of(&id, record).can_open_alert(&alert);
            eligible.then(|| {
                serde_json::json!({
                    "device_id": id.as_str(),
                    "name": record.name,
                    "device_name": record.device_name,
                    "on_duty": record.on_duty,
                })
            })
        })
        .collect();
    Ok(no_store(HttpResponse::Ok()).json(serde_json::json!({
        "tip_id": tip_id.as_str(),
        "devices": listed,
    })))
}
