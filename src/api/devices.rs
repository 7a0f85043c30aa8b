//! HTTP routes of enrolment and sessions, under `/api/v1/`:
//!
//! | route | body | answer |
//! |---|---|---|
//! | `POST /api/v1/devices` | `{invite, age_recipient, signing_key, device_name?}` | 201 `{device_id, name, zones, supervisor}`; 429 `rate-limited` past the client's limit; 403 `invite-invalid` for any request without a valid invite, whatever else it holds; then 429 `rate-limited` past the channel's limit, 422 per field, 409 `recipient-already-enrolled` |
//! | `POST /api/v1/session/challenge` | `{device_id}` | 200 `{challenge, expires, expires_in}` |
//! | `POST /api/v1/session` | `{device_id, challenge, signature}` | 200 `{device_id, csrf_token, idle_timeout_secs, max_age_secs}` + cookie |
//! | `GET /api/v1/session` | | 200 `{device_id, name, device_name, zones, supervisor, on_duty, csrf_token}` |
//! | `POST /api/v1/session/logout` | | 204, cookie cleared |
//! | `POST /api/v1/devices/me/duty` | `{on_duty}` | 200 `{on_duty}` |
//!
//! Untrusted: all of it. Bodies are JSON (`application/json` only, which a
//! cross-site form cannot send) of at most [`MAX_JSON_BYTES`]. Answers are
//! never cached.

use std::time::SystemTime;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use crate::api::auth::AuthenticatedDevice;
use crate::bus::StoreError;
use crate::error::AppError;
use crate::mediator::DeviceId;
use crate::mediator::devices::sessions::{CHALLENGE_TTL_SECS, clear_cookie};
use crate::mediator::devices::{DeviceApi, DeviceError, Enrolment, InviteCode};

/// Largest JSON body of these routes: two public keys and a code fit in 1 KiB.
pub const MAX_JSON_BYTES: usize = 8 * 1024;

/// Maps a device error to its public code; the cause is logged here, once,
/// without ids or keys.
pub(super) fn app_error(e: DeviceError) -> AppError {
    match e {
        DeviceError::Store(StoreError::Unavailable(cause)) => {
            tracing::warn!(code = "store-unavailable", error = %cause, "device request failed");
            AppError::StoreUnavailable
        }
        DeviceError::Store(StoreError::Corrupt(what)) => {
            tracing::error!(code = "internal", what, "damaged record in redis");
            AppError::Internal
        }
        DeviceError::InvalidName | DeviceError::NoZone => {
            tracing::error!(code = "internal", error = %e, "invite grant refused by the directory");
            AppError::Internal
        }
        DeviceError::InviteInvalid => AppError::InviteInvalid,
        DeviceError::InvalidRecipient => AppError::InvalidAgeRecipient,
        DeviceError::InvalidSigningKey => AppError::InvalidSigningKey,
        DeviceError::InvalidDeviceName => AppError::InvalidDeviceName,
        DeviceError::RecipientTaken => AppError::RecipientAlreadyEnrolled,
        DeviceError::UnknownDevice => AppError::UnknownDevice,
        DeviceError::ChallengeInvalid => AppError::ChallengeInvalid,
        DeviceError::SignatureInvalid => AppError::SignatureInvalid,
        DeviceError::SessionRequired => AppError::SessionRequired,
        DeviceError::SessionExpired => AppError::SessionExpired,
        DeviceError::CsrfFailed => AppError::CsrfFailed,
        DeviceError::OriginMismatch => AppError::OriginMismatch,
        DeviceError::RateLimited { retry_after_secs } => AppError::RateLimited { retry_after_secs },
    }
}

/// Logs a refusal by its code only, and passes it on.
fn refused(e: AppError) -> AppError {
    tracing::info!(code = e.info().code, "device request refused");
    e
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    let json = || crate::error::json_limited(MAX_JSON_BYTES);
    cfg.service(
        web::resource("/api/v1/devices")
            .app_data(json())
            .route(web::post().to(enrol))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/api/v1/devices/me/duty")
            .app_data(json())
            .route(web::post().to(set_duty))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/api/v1/session/challenge")
            .app_data(json())
            .route(web::post().to(challenge))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/api/v1/session")
            .app_data(json())
            .route(web::get().to(current))
            .route(web::post().to(login))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/api/v1/session/logout")
            .route(web::post().to(logout))
            .default_service(web::to(method_not_allowed)),
    );
}

async fn method_not_allowed() -> Result<HttpResponse, AppError> {
    Err(AppError::MethodNotAllowed)
}

fn no_store() -> actix_web::HttpResponseBuilder {
    let mut builder = HttpResponse::Ok();
    builder.insert_header((header::CACHE_CONTROL, "no-store"));
    builder
}

fn check_origin(req: &HttpRequest, api: &DeviceApi) -> Result<(), AppError> {
    if api.origin_allowed(req.headers()) {
        Ok(())
    } else {
        Err(refused(AppError::OriginMismatch))
    }
}

fn device_id(s: &str) -> Result<DeviceId, AppError> {
    DeviceId::parse(s.trim()).ok_or_else(|| refused(AppError::UnknownDevice))
}

#[derive(Deserialize, PartialEq)]
pub(crate) struct EnrolRequest {
    pub(crate) invite: String,
    pub(crate) age_recipient: String,
    pub(crate) signing_key: String,
    pub(crate) device_name: Option<String>,
}

#[derive(Serialize)]
struct EnrolResponse<'a> {
    device_id: &'a str,
    name: &'a str,
    zones: &'a [String],
    supervisor: bool,
}

#[tracing::instrument(name = "device_enrol", skip_all)]
async fn enrol(
    req: HttpRequest,
    body: web::Json<EnrolRequest>,
    api: web::Data<DeviceApi>,
) -> Result<HttpResponse, AppError> {
    check_origin(&req, &api)?;
    let limited = |limited: crate::ratelimit::Limited| {
        refused(AppError::RateLimited {
            retry_after_secs: limited.retry_after_secs(),
        })
    };
    // The client's own limit first (a hash and a counter). Within it, a
    // guess costs one Redis GET, of a key that does not exist: bounded by
    // that limit times the guesser's addresses, and cheaper than the TLS
    // handshake and JSON body the request already cost. Behind an onion
    // service, where no client has a limit of its own, the channel's limit
    // is charged here instead, so guesses stay bounded there too.
    let attempt = api.admit_enrolment(&req).map_err(limited)?;
    let body = body.into_inner();
    // Then the invite, before any other field is judged or anything else
    // is read: without a valid invite every request gets the same answer.
    let code = InviteCode::parse(&body.invite).ok_or_else(|| refused(AppError::InviteInvalid))?;
    api.invites
        .peek(&code)
        .await
        .map_err(|e| refused(app_error(e)))?;
    // The channel's limit only for a valid invite, before anything else:
    // charged for every guess, a flood from many addresses would spend it
    // and lock real phones out, and guessing a 128-bit code is hopeless
    // anyway. A 429 here tells only an invite's holder that it is valid,
    // as the 422s and 409 after it do.
    api.charge_enrolment(attempt).map_err(limited)?;
    let enrolment = Enrolment::parse(
        &body.invite,
        &body.age_recipient,
        &body.signing_key,
        body.device_name.as_deref(),
    )
    .map_err(|e| refused(app_error(e)))?;
    let record = api
        .devices
        .enrol(&api.invites, enrolment, SystemTime::now())
        .await
        .map_err(|e| refused(app_error(e)))?;
    Ok(HttpResponse::Created()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(EnrolResponse {
            device_id: &record.device_id,
            name: &record.name,
            zones: &record.zones,
            supervisor: record.supervisor,
        }))
}

#[derive(Deserialize, PartialEq)]
pub(crate) struct ChallengeRequest {
    pub(crate) device_id: String,
}

#[tracing::instrument(name = "device_challenge", skip_all)]
async fn challenge(
    req: HttpRequest,
    body: web::Json<ChallengeRequest>,
    api: web::Data<DeviceApi>,
) -> Result<HttpResponse, AppError> {
    check_origin(&req, &api)?;
    let id = device_id(&body.device_id)?;
    let challenge = api
        .sessions
        .challenge(&api.devices, &id, SystemTime::now())
        .await
        .map_err(|e| refused(app_error(e)))?;
    Ok(no_store().json(serde_json::json!({
        "challenge": challenge.challenge,
        "expires": challenge.expires,
        "expires_in": CHALLENGE_TTL_SECS,
    })))
}

#[derive(Deserialize, PartialEq)]
pub(crate) struct LoginRequest {
    pub(crate) device_id: String,
    pub(crate) challenge: String,
    pub(crate) signature: String,
}

#[tracing::instrument(name = "device_login", skip_all)]
async fn login(
    req: HttpRequest,
    body: web::Json<LoginRequest>,
    api: web::Data<DeviceApi>,
) -> Result<HttpResponse, AppError> {
    check_origin(&req, &api)?;
    let id = device_id(&body.device_id)?;
    let session = api
        .sessions
        .login(
            &api.devices,
            &id,
            &body.challenge,
            &body.signature,
            SystemTime::now(),
        )
        .await
        .map_err(|e| refused(app_error(e)))?;
    Ok(no_store()
        .insert_header((header::SET_COOKIE, session.cookie()))
        .json(serde_json::json!({
            "device_id": session.device_id.as_str(),
            "csrf_token": session.csrf_token.as_str(),
            "idle_timeout_secs": api.sessions.idle_ttl().as_secs(),
            "max_age_secs": session.max_age_secs,
        })))
}

#[tracing::instrument(name = "device_session", skip_all)]
async fn current(device: AuthenticatedDevice) -> HttpResponse {
    let d = device.device();
    no_store().json(serde_json::json!({
        "device_id": d.device_id,
        "name": d.name,
        "device_name": d.device_name,
        "zones": d.zones,
        "supervisor": d.supervisor,
        "on_duty": d.on_duty,
        "csrf_token": device.session().csrf_token(),
    }))
}

#[tracing::instrument(name = "device_logout", skip_all)]
async fn logout(
    device: AuthenticatedDevice,
    api: web::Data<DeviceApi>,
) -> Result<HttpResponse, AppError> {
    api.sessions
        .logout(device.session())
        .await
        .map_err(app_error)?;
    Ok(HttpResponse::NoContent()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::SET_COOKIE, clear_cookie()))
        .finish())
}

#[derive(Deserialize, PartialEq)]
pub(crate) struct DutyRequest {
    pub(crate) on_duty: bool,
}

#[tracing::instrument(name = "device_duty", skip_all)]
async fn set_duty(
    device: AuthenticatedDevice,
    body: web::Json<DutyRequest>,
    api: web::Data<DeviceApi>,
) -> Result<HttpResponse, AppError> {
    let record = api
        .devices
        .set_on_duty(device.device_id(), body.on_duty)
        .await
        .map_err(|e| match e {
            // Revoked between the session check and the write.
            DeviceError::UnknownDevice => AppError::SessionExpired,
            other => app_error(other),
        })?;
    Ok(no_store().json(serde_json::json!({ "on_duty": record.on_duty })))
}
