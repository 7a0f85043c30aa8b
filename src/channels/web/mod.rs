//! The web tip page: `GET /` serves the form, `POST /tips` takes a tip. The
//! request (headers, peer address, body) is untrusted. The peer address is used
//! only in memory, salted, for rate limiting; headers such as User-Agent are
//! never read. Works without JavaScript; in-browser sealing comes later.

mod form;
pub mod pages;

use std::time::SystemTime;

use actix_web::http::header::{self, ContentType, HeaderMap};
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::BytesMut;
use futures_util::StreamExt;

use crate::domain::{
    Channel, InboundTip, Priority, ThreadId, TipText, TipTextError, Zone, ZoneChoice,
};
use crate::error::{AppError, prefers_html};
use crate::intake::{Intake, IntakeError};
use crate::privacy::ClientKeyer;
use crate::ratelimit::ChannelLimiter;
use crate::telemetry::Metrics;

pub use form::FormError;

const CSS: &str = include_str!("assets/tipwire.css");
/// The form has three fields; a few more are tolerated (a named submit button).
const MAX_FIELDS: usize = 8;
const MAX_ZONE_BYTES: usize = 64;
const MAX_URGENCY_BYTES: usize = 16;

/// Everything the web channel needs, built once at start-up.
pub struct WebChannel {
    pub intake: Intake,
    pub limiter: ChannelLimiter,
    pub keyer: ClientKeyer,
    pub zones: Vec<(Zone, String)>,
    pub max_text_chars: usize,
    pub max_body_bytes: usize,
    form_page: String,
}

impl WebChannel {
    pub fn new(
        intake: Intake,
        limiter: ChannelLimiter,
        keyer: ClientKeyer,
        zones: Vec<(Zone, String)>,
        max_text_chars: usize,
        max_body_bytes: usize,
    ) -> Self {
        let form_page = pages::tip_form(&zones, max_text_chars);
        Self {
            intake,
            limiter,
            keyer,
            zones,
            max_text_chars,
            max_body_bytes,
            form_page,
        }
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/")
            .route(web::get().to(form_page))
            .route(web::head().to(form_page))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/tips")
            .route(web::post().to(submit_tip))
            .default_service(web::to(method_not_allowed)),
    )
    .service(web::resource("/thanks").route(web::get().to(thanks)))
    .service(web::resource("/static/tipwire.css").route(web::get().to(stylesheet)));
}

async fn method_not_allowed() -> Result<HttpResponse, AppError> {
    Err(AppError::MethodNotAllowed)
}

fn html(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::html())
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body)
}

async fn form_page(web_channel: web::Data<WebChannel>) -> HttpResponse {
    html(web_channel.form_page.clone())
}

async fn thanks() -> HttpResponse {
    html(pages::thanks())
}

async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=86400"))
        .body(CSS)
}

/// Only `application/x-www-form-urlencoded`, in UTF-8 if a charset is named.
fn check_content_type(headers: &HeaderMap) -> Result<(), AppError> {
    let value = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .ok_or(AppError::UnsupportedContentType)?;
    let mut parts = value.split(';').map(str::trim);
    let essence = parts.next().unwrap_or_default();
    if !essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err(AppError::UnsupportedContentType);
    }
    for param in parts {
        if let Some((name, val)) = param.split_once('=')
            && name.trim().eq_ignore_ascii_case("charset")
            && !val.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
        {
            return Err(AppError::UnsupportedContentType);
        }
    }
    Ok(())
}

async fn read_body(
    headers: &HeaderMap,
    mut payload: web::Payload,
    limit: usize,
) -> Result<BytesMut, AppError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(AppError::BodyTooLarge);
    }
    let mut body = BytesMut::with_capacity(declared.unwrap_or(1024).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(AppError::from)?;
        if body.len() + chunk.len() > limit {
            return Err(AppError::BodyTooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Turns the decoded fields into a tip, or the precise reason it is refused.
fn parse_tip(fields: Vec<(String, String)>, channel: &WebChannel) -> Result<InboundTip, AppError> {
    let mut text = None;
    let mut zone = None;
    let mut urgency = None;
    for (name, value) in fields {
        match name.as_str() {
            "text" => text = Some(value),
            "zone" => zone = Some(value),
            "urgency" => urgency = Some(value),
            _ => {}
        }
    }
    let (Some(text), Some(zone), Some(urgency)) = (text, zone, urgency) else {
        return Err(AppError::MissingField);
    };
    if zone.len() > MAX_ZONE_BYTES || urgency.len() > MAX_URGENCY_BYTES {
        return Err(AppError::FieldTooLong);
    }
    let text = TipText::parse(text, channel.max_text_chars).map_err(|e| match e {
        TipTextError::Empty => AppError::EmptyText,
        TipTextError::TooLong => AppError::FieldTooLong,
    })?;
    let zone = if zone == crate::domain::ZoneChoice::Unsure.as_str() {
        ZoneChoice::Unsure
    } else {
        channel
            .zones
            .iter()
            .find(|(z, _)| z.as_str() == zone)
            .map(|(z, _)| ZoneChoice::Known(z.clone()))
            .ok_or(AppError::UnknownZone)?
    };
    let priority = Priority::parse(&urgency).ok_or(AppError::InvalidUrgency)?;
    Ok(InboundTip {
        channel: Channel::Web,
        zone,
        priority,
        text,
        pseudonym: None,
        thread: ThreadId::random(),
    })
}

#[tracing::instrument(name = "web_tip", skip_all)]
async fn submit_tip(
    req: HttpRequest,
    payload: web::Payload,
    channel: web::Data<WebChannel>,
    metrics: web::Data<Metrics>,
) -> Result<HttpResponse, AppError> {
    let result = accept_tip(&req, payload, &channel, &metrics).await;
    match result {
        Ok(())
            if prefers_html(req.headers().get(header::ACCEPT))
                || req.headers().get(header::ACCEPT).is_none() =>
        {
            Ok(HttpResponse::SeeOther()
                .insert_header((header::LOCATION, "/thanks"))
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .finish())
        }
        Ok(()) => Ok(HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(serde_json::json!({ "status": "received" }))),
        Err(e) => {
            let code = e.info().code;
            metrics
                .tips_rejected
                .with_label_values(&[Channel::Web.as_str(), code])
                .inc();
            tracing::info!(code, "tip refused");
            Err(e)
        }
    }
}

async fn accept_tip(
    req: &HttpRequest,
    payload: web::Payload,
    channel: &WebChannel,
    metrics: &Metrics,
) -> Result<(), AppError> {
    // Limits first: a flood costs a hash and a counter, nothing more.
    let ip = channel.keyer.client_ip(
        req.peer_addr().map(|a| a.ip()),
        req.headers().get("x-forwarded-for"),
    );
    if let Err(limited) = channel.limiter.check(channel.keyer.key(ip)) {
        metrics
            .rate_limited
            .with_label_values(&[Channel::Web.as_str(), limited.scope.as_str()])
            .inc();
        return Err(AppError::RateLimited {
            retry_after_secs: limited.retry_after_secs(),
        });
    }
    check_content_type(req.headers())?;
    let body = read_body(req.headers(), payload, channel.max_body_bytes).await?;
    let fields = form::parse(&body, MAX_FIELDS).map_err(|e| match e {
        FormError::InvalidUtf8 => AppError::InvalidUtf8,
        FormError::Malformed => AppError::MalformedBody,
    })?;
    drop(body);
    let tip = parse_tip(fields, channel)?;
    match channel.intake.submit(tip, SystemTime::now()).await {
        Ok(_receipt) => Ok(()),
        Err(IntakeError::Store(e)) => {
            tracing::warn!(code = "store-unavailable", error = %e, "tip not stored");
            Err(AppError::StoreUnavailable)
        }
        Err(e) => {
            tracing::error!(code = "internal", error = %e, "tip not sealed");
            Err(AppError::Internal)
        }
    }
}
