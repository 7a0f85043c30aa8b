//! The web tip page: `GET /` serves the form, `POST /tips` takes a tip. The
//! request (headers, peer address, body) is untrusted. The peer address is used
//! only in memory, salted, for rate limiting; headers such as User-Agent are
//! never read. Works without JavaScript; in-browser sealing comes later.
//! Sending a tip again is safe: each form carries a submission token
//! (`submission.rs`), and a tip stored before under the same token and
//! fields is answered "received" and not stored again. When the store's
//! answer is in doubt (a timeout: the tip may be stored), a browser gets the
//! form back with its tip and the same token.

pub mod pages;
pub mod submission;

use std::time::SystemTime;

use actix_web::http::header::{self, ContentType};
use actix_web::{HttpRequest, HttpResponse, web};

use crate::channels::body::{check_content_type, read_body};
use crate::channels::form::{self, FormError};
use crate::domain::{
    Channel, InboundTip, Priority, ProviderMessage, ThreadId, TipText, TipTextError, Zone,
    ZoneChoice,
};
use crate::error::{AppError, prefers_html};
use crate::intake::{Intake, IntakeError};
use crate::privacy::ClientKeyer;
use crate::ratelimit::ChannelLimiter;
use crate::telemetry::Metrics;
use submission::SubmissionToken;

const CSS: &str = include_str!("assets/tipwire.css");
/// The form has four fields; a few more are tolerated (a named submit button).
pub(crate) const MAX_FIELDS: usize = 8;
/// The form's hidden field holding its submission token.
const TOKEN_FIELD: &str = "submission";
/// The header a program sends its own token in.
const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Shown with the tip when the store's answer was in doubt.
const SEND_AGAIN_SAFELY: &str = "We could not confirm that your tip was received: it may not have been. Your tip is below. It is safe to send it again in a few minutes: if the first one did arrive, the team gets it only once, as long as you send it unchanged.";
const SEND_AGAIN_KEYED: &str = "We could not confirm that your tip was received: it may not have been. It is safe to send it again in a few minutes with the same token and fields: if the first one did arrive, it is stored only once.";
const SEND_AGAIN_TWICE: &str = "We could not confirm that your tip was received: it may not have been. Your tip is below; please send it again in a few minutes. If the first one did arrive, the team will get it twice.";
const SEND_AGAIN_UNKEYED: &str = "We could not confirm that your tip was received: it may not have been. Send it again in a few minutes; sent without an Idempotency-Key header, a tip that did arrive is then stored twice.";
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
        Self {
            intake,
            limiter,
            keyer,
            zones,
            max_text_chars,
            max_body_bytes,
            loopback_is_everyone,
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
    html(pages::tip_form(
        &web_channel.zones,
        web_channel.max_text_chars,
        &SubmissionToken::random(),
        None,
    ))
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

/// The tip's fields as sent, and its submission token.
pub(crate) struct FormTip {
    text: String,
    zone: String,
    urgency: String,
    token: Option<SubmissionToken>,
}

/// Picks the form's fields and the token: the `Idempotency-Key` header
/// (from `headers`) when sent, else the form's hidden field.
pub(crate) fn form_tip(
    fields: Vec<(String, String)>,
    headers: &header::HeaderMap,
) -> Result<FormTip, AppError> {
    let mut text = None;
    let mut zone = None;
    let mut urgency = None;
    let mut token = None;
    for (name, value) in fields {
        match name.as_str() {
            "text" => text = Some(value),
            "zone" => zone = Some(value),
            "urgency" => urgency = Some(value),
            TOKEN_FIELD => token = Some(value),
            _ => {}
        }
    }
    let (Some(text), Some(zone), Some(urgency)) = (text, zone, urgency) else {
        return Err(AppError::MissingField);
    };
    // Sent twice, the key is ambiguous (which one would a retry repeat?).
    let mut keys = headers.get_all(IDEMPOTENCY_KEY);
    let token = match (keys.next(), keys.next()) {
        (Some(_), Some(_)) => return Err(AppError::InvalidIdempotencyKey),
        (Some(header), None) => {
            Some(SubmissionToken::parse_header(header).ok_or(AppError::InvalidIdempotencyKey)?)
        }
        (None, _) => token
            .map(|t| SubmissionToken::parse(&t).ok_or(AppError::InvalidSubmissionToken))
            .transpose()?,
    };
    Ok(FormTip {
        text,
        zone,
        urgency,
        token,
    })
}

/// Turns the form's fields into a tip for one of `zones`, or the precise
/// reason it is refused.
pub(crate) fn parse_tip(
    form: &FormTip,
    zones: &[(Zone, String)],
    max_text_chars: usize,
) -> Result<InboundTip, AppError> {
    if form.zone.len() > MAX_ZONE_BYTES || form.urgency.len() > MAX_URGENCY_BYTES {
        return Err(AppError::FieldTooLong);
    }
    let text = TipText::parse(form.text.clone(), max_text_chars).map_err(|e| match e {
        TipTextError::Empty => AppError::EmptyText,
        TipTextError::TooLong => AppError::FieldTooLong,
    })?;
    let zone = if form.zone == crate::domain::ZoneChoice::Unsure.as_str() {
        ZoneChoice::Unsure
    } else {
        zones
            .iter()
            .find(|(z, _)| z.as_str() == form.zone)
            .map(|(z, _)| ZoneChoice::Known(z.clone()))
            .ok_or(AppError::UnknownZone)?
    };
    let priority = Priority::parse(&form.urgency).ok_or(AppError::InvalidUrgency)?;
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

/// A refused tip; `in_doubt` holds its fields when the store did not answer
/// the append (the tip may be stored), so it can be offered again.
struct Refused {
    error: AppError,
    in_doubt: Option<FormTip>,
}

impl From<AppError> for Refused {
    fn from(error: AppError) -> Self {
        Self {
            error,
            in_doubt: None,
        }
    }
}

/// The answer to a tip whose storing is in doubt: for a browser the form
/// again, with the tip and its token (a new one if it came without), for a
/// program a message that says whether sending again duplicates. (The
/// generic `store-unavailable` message is for every other request.)
fn in_doubt_answer(form: FormTip, html_wanted: bool, channel: &WebChannel) -> HttpResponse {
    let mut answer = HttpResponse::ServiceUnavailable();
    answer
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::RETRY_AFTER, "30"));
    if html_wanted {
        let (token, notice) = match form.token {
            Some(token) => (token, SEND_AGAIN_SAFELY),
            None => (SubmissionToken::random(), SEND_AGAIN_TWICE),
        };
        let page = pages::tip_form(
            &channel.zones,
            channel.max_text_chars,
            &token,
            Some(&pages::Refill {
                text: &form.text,
                zone: &form.zone,
                urgency: &form.urgency,
                notice,
            }),
        );
        return answer.content_type(ContentType::html()).body(page);
    }
    let message = match form.token {
        Some(_) => SEND_AGAIN_KEYED,
        None => SEND_AGAIN_UNKEYED,
    };
    answer.json(serde_json::json!({
        "error": { "code": AppError::StoreUnavailable.info().code, "message": message }
    }))
}

#[tracing::instrument(name = "web_tip", skip_all)]
async fn submit_tip(
    req: HttpRequest,
    payload: web::Payload,
    channel: web::Data<WebChannel>,
    metrics: web::Data<Metrics>,
) -> Result<HttpResponse, AppError> {
    let result = accept_tip(&req, payload, &channel, &metrics).await;
    let html_wanted = prefers_html(req.headers().get(header::ACCEPT))
        || req.headers().get(header::ACCEPT).is_none();
    match result {
        Ok(()) if html_wanted => Ok(HttpResponse::SeeOther()
            .insert_header((header::LOCATION, "/thanks"))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .finish()),
        Ok(()) => Ok(HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(serde_json::json!({ "status": "received" }))),
        Err(Refused { error, in_doubt }) => {
            let code = error.info().code;
            metrics
                .tips_rejected
                .with_label_values(&[Channel::Web.as_str(), code])
                .inc();
            tracing::info!(code, "tip refused");
            match in_doubt {
                Some(form) => Ok(in_doubt_answer(form, html_wanted, &channel)),
                None => Err(error),
            }
        }
    }
}

fn rate_limited(metrics: &Metrics, limited: crate::ratelimit::Limited) -> AppError {
    metrics
        .rate_limited
        .with_label_values(&[Channel::Web.as_str(), limited.scope.as_str()])
        .inc();
    AppError::RateLimited {
        retry_after_secs: limited.retry_after_secs(),
    }
}

async fn accept_tip(
    req: &HttpRequest,
    payload: web::Payload,
    channel: &WebChannel,
    metrics: &Metrics,
) -> Result<(), Refused> {
    // The client's own limit first: a flood from one address costs a hash
    // and a counter, nothing more.
    let forwarded: Vec<_> = req.headers().get_all("x-forwarded-for").collect();
    let ip = channel
        .keyer
        .client_ip(req.peer_addr().map(|a| a.ip()), &forwarded);
    // Behind an onion service every tipster arrives from loopback: one shared
    // per-client bucket would let one person silence everyone, so only the
    // channel's global limit applies to them.
    let checked =
        channel
            .limiter
            .check_client_from(&channel.keyer, ip, channel.loopback_is_everyone);
    checked.map_err(|limited| rate_limited(metrics, limited))?;
    check_content_type(req.headers(), "application/x-www-form-urlencoded")?;
    let body = read_body(req.headers(), payload, channel.max_body_bytes).await?;
    let fields = form::parse(&body, MAX_FIELDS).map_err(|e| match e {
        FormError::InvalidUtf8 => AppError::InvalidUtf8,
        FormError::Malformed => AppError::MalformedBody,
    })?;
    drop(body);
    let form = form_tip(fields, req.headers())?;
    let mut tip = parse_tip(&form, &channel.zones, channel.max_text_chars)?;
    let in_doubt = |e: crate::bus::StoreError, form: FormTip| {
        tracing::warn!(code = "store-unavailable", error = %e, "tip not confirmed stored");
        Refused {
            error: AppError::StoreUnavailable,
            in_doubt: Some(form),
        }
    };
    // The channel's limit only for a well-formed tip, just before the costly
    // part (the store, sealing): charged for every request, oversized and
    // malformed forms from many addresses would use it up and silence every
    // real tipster (benches/abuse.rs measured web tips falling to 0.15-0.48
    // of their rate under such a flood). Charged before the replay marker is
    // looked up, too: after it, keyed tips from many addresses (or from
    // everyone behind an onion service, where no client limit applies) would
    // each cost a store round trip, unlimited. A tip sent again is charged
    // like any well-formed tip.
    channel
        .limiter
        .check_global()
        .map_err(|limited| rate_limited(metrics, limited))?;
    if let Some(token) = &form.token {
        // The same tip sent again with the same token: stored once. The
        // marker names a keyed hash of the token and the fields, never the
        // token; looked up under every kept key, set under the current one
        // by the append, which checks it again atomically.
        let markers =
            channel
                .intake
                .markers_of(&token.marker_source(&form.text, &form.zone, &form.urgency));
        match channel.intake.marker_seen(&markers).await {
            Ok(true) => {
                tracing::info!("web tip sent again; stored before, not stored again");
                return Ok(());
            }
            Ok(false) => {}
            Err(e) => return Err(in_doubt(e, form)),
        }
        let Some(current) = markers.first() else {
            return Err(AppError::Internal.into());
        };
        tip.provider = Some(ProviderMessage {
            dedupe: current.as_str().to_owned(),
            pseudonyms: Vec::new(),
            reply_expire_at: None,
        });
    }
    match channel.intake.submit(tip, SystemTime::now()).await {
        Ok(_) => Ok(()),
        Err(IntakeError::Store(e)) => Err(in_doubt(e, form)),
        Err(e) => {
            tracing::error!(code = "internal", error = %e, "tip not sealed");
            Err(AppError::Internal.into())
        }
    }
}
