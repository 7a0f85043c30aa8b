//! [`AuthenticatedDevice`]: the extractor every mediator API route that acts
//! for a device takes. It loads the session from the cookie (401
//! `session-required` without one, 401 `session-expired` when it ended or the
//! device was revoked) and, for anything but GET, HEAD and OPTIONS, insists on
//! the app's own `Origin` (403 `origin-mismatch`) and the session's
//! `X-CSRF-Token` (403 `csrf-failed`).
//!
//! Untrusted: the cookie and headers.

use std::time::SystemTime;

use actix_web::dev::Payload;
use actix_web::http::Method;
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::future::LocalBoxFuture;

use crate::error::AppError;
use crate::mediator::DeviceId;
use crate::mediator::devices::sessions::{Session, session_cookie};
use crate::mediator::devices::{DeviceApi, DeviceRecord};

/// The header carrying the CSRF token on state-changing calls.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A request made by a logged-in, not revoked, device. Use it as a handler
/// argument: `async fn claim(device: AuthenticatedDevice, …)`.
pub struct AuthenticatedDevice {
    session: Session,
}

impl AuthenticatedDevice {
    pub fn device_id(&self) -> &DeviceId {
        &self.session.device_id
    }

    /// The device's record as of this request (zones, role, on-duty).
    pub fn device(&self) -> &DeviceRecord {
        &self.session.device
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The session itself, for a response that outlives the handler (a
    /// live stream that re-checks it now and then).
    pub fn into_session(self) -> Session {
        self.session
    }
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

impl FromRequest for AuthenticatedDevice {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let api = req.app_data::<web::Data<DeviceApi>>().cloned();
        let safe = is_safe(req.method());
        let origin_ok = api
            .as_ref()
            .is_some_and(|api| api.origin_allowed(req.headers()));
        let cookie = session_cookie(req.headers());
        let csrf = req
            .headers()
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(|v| zeroize::Zeroizing::new(v.to_owned()));
        Box::pin(async move {
            let Some(api) = api else {
                tracing::error!(code = "internal", "DeviceApi is not registered as app data");
                return Err(AppError::Internal);
            };
            if !safe && !origin_ok {
                return Err(AppError::OriginMismatch);
            }
            let token = cookie.ok_or(AppError::SessionRequired)?;
            let session = api
                .sessions
                .load(&api.devices, &token, SystemTime::now())
                .await
                .map_err(crate::api::devices::app_error)?;
            if !safe && !csrf.is_some_and(|c| session.csrf_matches(&c)) {
                return Err(AppError::CsrfFailed);
            }
            Ok(Self { session })
        })
    }
}
