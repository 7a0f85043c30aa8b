//! The web tip page: `GET /` serves the form, `POST /tips` takes a tip. The
//! request (headers, peer address, body) is untrusted. The peer address is used
//! only in memory, salted, for rate limiting; headers such as User-Agent are
//! never read. Works without JavaScript; in-browser sealing comes later.

pub mod pages;

use std::time::SystemTime;

use actix_web::http::header::{self, ContentType};
use actix_web::{HttpRequest, HttpResponse, web};

use crate::channels::body::{check_content_type, read_body};
use crate::channels::form::{self, FormError};
use crate::domain::{
    Channel, InboundTip, Priority, ThreadId, TipText, TipTextError, Zone, ZoneChoice,
};
use crate::error::{AppError, prefers_html};
use crate::intake::{Intake, IntakeError};
use crate::privacy::ClientKeyer;
use crate::ratelimit::ChannelLimiter;
use crate::telemetry::Metrics;

const CSS: &str = include_str!("assets/tipwire.css");
/// The form has three fields; a few more are tolerated (a named submit button).
pub(crate) const MAX_FIELDS: usize = 8;
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
    /// Plain HTTP behind an onion service: loopback is every client at once.
    pub loopback_is_everyone: bool,
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
        loopback_is_everyone: bool,
    ) -> Self {
        let form_page = pages::tip_form(&zones, max_text_chars);
        Self {
            intake,
            limiter,
            keyer,
            zones,
            max_text_chars,
            max_body_bytes,
            loopback_is_everyone,
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

/// Turns the decoded fields into a tip for one of `zones`, or the precise
/// reason it is refused.
pub(crate) fn parse_tip(
    fields: Vec<(String, String)>,
    zones: &[(Zone, String)],
    max_text_chars: usize,
) -> Result<InboundTip, AppError> {
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
    let text = TipText::parse(text, max_text_chars).map_err(|e| match e {
        TipTextError::Empty => AppError::EmptyText,
        TipTextError::TooLong => AppError::FieldTooLong,
    })?;
    let zone = if zone == crate::domain::ZoneChoice::Unsure.as_str() {
        ZoneChoice::Unsure
    } else {
        zones
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
        subject: None,
        pseudonym: None,
        thread: ThreadId::random(),
        attachments: Vec::new(),
        withheld: Vec::new(),
        provider: None,
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
    let forwarded: Vec<_> = req.headers().get_all("x-forwarded-for").collect();
    let ip = channel
        .keyer
        .client_ip(req.peer_addr().map(|a| a.ip()), &forwarded);
    // Behind an onion service every tipster arrives from loopback: one shared
    // per-client bucket would let one person silence everyone, so only the
    // channel's global limit applies to them.
    let checked = channel
        .limiter
        .check_from(&channel.keyer, ip, channel.loopback_is_everyone);
    if let Err(limited) = checked {
        metrics
            .rate_limited
            .with_label_values(&[Channel::Web.as_str(), limited.scope.as_str()])
            .inc();
        return Err(AppError::RateLimited {
            retry_after_secs: limited.retry_after_secs(),
        });
    }
    check_content_type(req.headers(), "application/x-www-form-urlencoded")?;
    let body = read_body(req.headers(), payload, channel.max_body_bytes).await?;
    let fields = form::parse(&body, MAX_FIELDS).map_err(|e| match e {
        FormError::InvalidUtf8 => AppError::InvalidUtf8,
        FormError::Malformed => AppError::MalformedBody,
    })?;
    drop(body);
    let tip = parse_tip(fields, &channel.zones, channel.max_text_chars)?;
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
