//! HTTP routes for Web Push and nudges, under `/api/v1/`:
//!
//! | route | body | answer |
//! |---|---|---|
//! | `GET /api/v1/push/key` | | 200 `{public_key}` (VAPID, base64url: the `applicationServerKey`), 404 `push-disabled` |
//! | `POST /api/v1/devices/me/push` | `{subscription: PushSubscription JSON}` | 204; 422 `invalid-push-subscription` |
//! | `DELETE /api/v1/devices/me/push` | | 204 |
//! | `GET /api/v1/devices/me/nudges` | | 200 `{email, sms}`: whether each is on file, never the address |
//! | `POST /api/v1/devices/me/nudges` | `{email?, sms?}` (E.164) | 200 `{email, sms}`; both empty opts out; 422 `invalid-nudge-contact`, `nudge-channel-unavailable` |
//! | `DELETE /api/v1/devices/me/nudges` | | 204 |
//!
//! The device routes take [`AuthenticatedDevice`]: a session, and for the
//! state-changing ones the app's `Origin` and the session's CSRF token. While
//! push is off (or the keyring has no VAPID key) every route answers 404
//! `push-disabled`.
//!
//! Untrusted: all of it. The subscription is parsed once into
//! [`Subscription`] (https endpoint of a push service, P-256 key, 16-byte
//! auth secret); nudge fields into [`NudgeContact`]. Neither is logged or
//! echoed back.

use std::sync::Arc;

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use serde::Deserialize;

use crate::api::auth::AuthenticatedDevice;
use crate::bus::{Store, StoreError};
use crate::config::Settings;
use crate::crypto::Keyring;
use crate::error::AppError;
use crate::outbound::nudge::{NudgeChannels, NudgeContact, NudgeContacts};
use crate::outbound::push::store::Subscriptions;
use crate::outbound::push::subscription::{EndpointPolicy, Subscription};

/// A subscription is at most 4 KiB of JSON; the body wraps it.
pub(crate) const MAX_JSON_BYTES: usize = 8 * 1024;

/// What the push routes need, registered once as app data.
pub struct PushApi {
    /// The VAPID public key, base64url; `None` when push is off.
    public_key: Option<String>,
    policy: EndpointPolicy,
    channels: NudgeChannels,
    subscriptions: Subscriptions,
    contacts: NudgeContacts,
}

impl PushApi {
    pub fn from_settings(settings: &Settings, store: Store, keyring: Arc<Keyring>) -> Self {
        let public_key = settings
            .push
            .enabled
            .then(|| keyring.vapid())
            .flatten()
            .map(|k| k.public_key_base64url());
        Self {
            public_key,
            policy: settings.push.endpoint_policy,
            channels: NudgeChannels::from_settings(settings),
            subscriptions: Subscriptions::new(store.clone()),
            contacts: NudgeContacts::new(store, keyring),
        }
    }

    fn enabled(&self) -> Result<(), AppError> {
        match self.public_key {
            Some(_) => Ok(()),
            None => Err(refused(AppError::PushDisabled)),
        }
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    let json = || crate::error::json_limited(MAX_JSON_BYTES);
    cfg.service(
        web::resource("/api/v1/push/key")
            .route(web::get().to(public_key))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/api/v1/devices/me/push")
            .app_data(json())
            .route(web::post().to(subscribe))
            .route(web::delete().to(unsubscribe))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/api/v1/devices/me/nudges")
            .app_data(json())
            .route(web::get().to(nudges))
            .route(web::post().to(set_nudges))
            .route(web::delete().to(clear_nudges))
            .default_service(web::to(method_not_allowed)),
    );
}

async fn method_not_allowed() -> Result<HttpResponse, AppError> {
    Err(AppError::MethodNotAllowed)
}

/// Logs a refusal by its code only, and passes it on.
fn refused(e: AppError) -> AppError {
    tracing::info!(code = e.info().code, "push request refused");
    e
}

fn store_error(e: StoreError) -> AppError {
    match e {
        StoreError::Unavailable(cause) => {
            tracing::warn!(code = "store-unavailable", error = %cause, "push request failed");
            AppError::StoreUnavailable
        }
        StoreError::Corrupt(what) => {
            tracing::error!(code = "internal", what, "push request failed");
            AppError::Internal
        }
    }
}

fn no_content() -> HttpResponse {
    HttpResponse::NoContent()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

#[tracing::instrument(name = "push_key", skip_all)]
async fn public_key(api: web::Data<PushApi>) -> Result<HttpResponse, AppError> {
    api.enabled()?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .json(serde_json::json!({ "public_key": api.public_key })))
}

#[derive(Deserialize, PartialEq)]
pub(crate) struct SubscribeRequest {
    pub(crate) subscription: serde_json::Value,
}

#[tracing::instrument(name = "push_subscribe", skip_all)]
async fn subscribe(
    device: AuthenticatedDevice,
    body: web::Json<SubscribeRequest>,
    api: web::Data<PushApi>,
) -> Result<HttpResponse, AppError> {
    api.enabled()?;
    let subscription =
        Subscription::parse(&body.subscription.to_string(), api.policy).map_err(|e| {
            tracing::info!(code = "invalid-push-subscription", error = %e, "push request refused");
            AppError::InvalidPushSubscription
        })?;
    api.subscriptions
        .put(device.device_id(), &subscription)
        .await
        .map_err(store_error)?;
    tracing::info!("push subscription stored");
    Ok(no_content())
}

#[tracing::instrument(name = "push_unsubscribe", skip_all)]
async fn unsubscribe(
    device: AuthenticatedDevice,
    api: web::Data<PushApi>,
) -> Result<HttpResponse, AppError> {
    api.enabled()?;
    api.subscriptions
        .remove(device.device_id())
        .await
        .map_err(store_error)?;
    Ok(no_content())
}

#[derive(Deserialize, PartialEq)]
pub(crate) struct NudgeRequest {
    pub(crate) email: Option<String>,
    pub(crate) sms: Option<String>,
}

fn on_file(contact: Option<&NudgeContact>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({
            "email": contact.is_some_and(|c| c.email.is_some()),
            "sms": contact.is_some_and(|c| c.sms.is_some()),
        }))
}

#[tracing::instrument(name = "nudges_get", skip_all)]
async fn nudges(
    device: AuthenticatedDevice,
    api: web::Data<PushApi>,
) -> Result<HttpResponse, AppError> {
    api.enabled()?;
    let contact = api
        .contacts
        .get(device.device_id())
        .await
        .map_err(store_error)?;
    Ok(on_file(contact.as_ref()))
}

#[tracing::instrument(name = "nudges_set", skip_all)]
async fn set_nudges(
    device: AuthenticatedDevice,
    body: web::Json<NudgeRequest>,
    api: web::Data<PushApi>,
) -> Result<HttpResponse, AppError> {
    api.enabled()?;
    let contact = NudgeContact::parse(body.email.as_deref(), body.sms.as_deref())
        .map_err(|_| refused(AppError::InvalidNudgeContact))?;
    if (contact.email.is_some() && !api.channels.email)
        || (contact.sms.is_some() && !api.channels.sms)
    {
        return Err(refused(AppError::NudgeChannelUnavailable));
    }
    api.contacts
        .put(device.device_id(), &contact)
        .await
        .map_err(store_error)?;
    Ok(on_file(Some(&contact)))
}

#[tracing::instrument(name = "nudges_clear", skip_all)]
async fn clear_nudges(
    device: AuthenticatedDevice,
    api: web::Data<PushApi>,
) -> Result<HttpResponse, AppError> {
    api.enabled()?;
    api.contacts
        .remove(device.device_id())
        .await
        .map_err(store_error)?;
    Ok(no_content())
}
