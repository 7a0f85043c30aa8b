//! The one error type at the HTTP edge: every failure a client can cause maps to
//! a status, a stable kebab-case code and a fixed message. Nothing here echoes
//! request content back, so error bodies cannot leak or reflect a tip.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

/// Every error a request can end in. The variants are the public error codes.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("request body is larger than allowed")]
    BodyTooLarge,
    #[error("request body ended before its declared length")]
    IncompleteBody,
    #[error("request body took too long to arrive")]
    BodyTimeout,
    #[error("content type is not accepted here")]
    UnsupportedContentType,
    #[error("request body is not well-formed")]
    MalformedBody,
    #[error("request body is not valid UTF-8")]
    InvalidUtf8,
    #[error("a required field is missing")]
    MissingField,
    #[error("a field is longer than allowed")]
    FieldTooLong,
    #[error("the tip text is empty")]
    EmptyText,
    #[error("the zone is not one of the configured zones")]
    UnknownZone,
    #[error("the urgency is not one of now, today, fyi")]
    InvalidUrgency,
    #[error("the form's submission token is malformed")]
    InvalidSubmissionToken,
    #[error("the Idempotency-Key header is malformed")]
    InvalidIdempotencyKey,
    #[error("the request signature is missing or wrong")]
    SignatureInvalid,
    #[error("the request timestamp is too far from now")]
    TimestampStale,
    #[error("the sender is not a phone number")]
    InvalidSender,
    #[error("the number called is not one of the program's numbers")]
    UnknownNumber,
    #[error("too many requests")]
    RateLimited { retry_after_secs: u64 },
    #[error("the tip store is unavailable")]
    StoreUnavailable,
    #[error("the gateway is shutting down")]
    ShuttingDown,
    #[error("the enrolment invite is unknown, used or expired")]
    InviteInvalid,
    #[error("the age recipient is not an X25519 age public key")]
    InvalidAgeRecipient,
    #[error("the signing key is not a P-256 public key in base64url SPKI")]
    InvalidSigningKey,
    #[error("the device name is too long or holds control characters")]
    InvalidDeviceName,
    #[error("this age recipient is already enrolled")]
    RecipientAlreadyEnrolled,
    #[error("no enrolled device has this id")]
    UnknownDevice,
    #[error("the login challenge is unknown, used, expired or for another device")]
    ChallengeInvalid,
    #[error("no session cookie")]
    SessionRequired,
    #[error("the session expired or was ended")]
    SessionExpired,
    #[error("the CSRF token is missing or wrong")]
    CsrfFailed,
    #[error("the request came from another origin")]
    OriginMismatch,
    #[error("push notifications are not enabled on this gateway")]
    PushDisabled,
    #[error("the push subscription is not a usable PushSubscription")]
    InvalidPushSubscription,
    #[error("a nudge address is not an email address or E.164 number")]
    InvalidNudgeContact,
    #[error("nudges by this channel are not set up on this gateway")]
    NudgeChannelUnavailable,
    #[error("the alert is claimed by another device")]
    AlertClaimed,
    #[error("the alert is already resolved")]
    AlertResolved,
    #[error("the alert is not claimed")]
    AlertNotClaimed,
    #[error("the alert is claimed by another device")]
    NotClaimant,
    #[error("only a supervisor can do this")]
    NotSupervisor,
    #[error("this device was not among the alert's recipients")]
    CannotOpenAlert,
    #[error("the outcome is not one of the outcome codes")]
    UnknownOutcome,
    #[error("the device to assign is not enrolled or cannot open this alert")]
    InvalidAssignee,
    #[error("the reply text is empty or too long")]
    InvalidReplyText,
    #[error("the tipster of this thread cannot be written to")]
    NoReplyChannel,
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("internal error")]
    Internal,
}

/// What a client is told: code, status and a plain-words message.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ErrorInfo {
    pub code: &'static str,
    pub message: &'static str,
    #[serde(skip)]
    pub status: StatusCode,
}

impl AppError {
    pub fn info(&self) -> ErrorInfo {
        let (status, code, message) = match self {
            Self::BodyTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                "Your message is too long to send. Please shorten it and try again.",
            ),
            Self::IncompleteBody => (
                StatusCode::BAD_REQUEST,
                "incomplete-body",
                "Your message did not arrive completely. Please try again.",
            ),
            Self::BodyTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                "body-timeout",
                "Your message took too long to arrive. Please try again.",
            ),
            Self::UnsupportedContentType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-content-type",
                "This address accepts only the tip form.",
            ),
            Self::MalformedBody => (
                StatusCode::BAD_REQUEST,
                "malformed-body",
                "The form data could not be read. Please try again from the tip page.",
            ),
            Self::InvalidUtf8 => (
                StatusCode::BAD_REQUEST,
                "invalid-utf8",
                "The form data contains characters that could not be read.",
            ),
            Self::MissingField => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "missing-field",
                "A part of the form is missing. Please fill in every question.",
            ),
            Self::FieldTooLong => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "field-too-long",
                "A part of the form is longer than allowed. Please shorten it.",
            ),
            Self::EmptyText => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "empty-text",
                "Please write what is happening before you send.",
            ),
            Self::UnknownZone => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown-zone",
                "Please choose a place from the list, or \"Not sure\".",
            ),
            Self::InvalidUrgency => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-urgency",
                "Please choose how urgent this is.",
            ),
            Self::InvalidSubmissionToken => (
                StatusCode::BAD_REQUEST,
                "invalid-submission-token",
                "The form could not be read. Please go back to the tip page, reload it and send your tip again.",
            ),
            Self::InvalidIdempotencyKey => (
                StatusCode::BAD_REQUEST,
                "invalid-idempotency-key",
                "The Idempotency-Key header must be sent once, as 22 to 64 characters of A-Z, a-z, 0-9, - and _ (a UUID fits), optionally in double quotes.",
            ),
            Self::SignatureInvalid => (
                StatusCode::FORBIDDEN,
                "signature-invalid",
                "The request signature is missing or does not match.",
            ),
            Self::TimestampStale => (
                StatusCode::FORBIDDEN,
                "timestamp-stale",
                "The request timestamp is more than five minutes from now.",
            ),
            Self::InvalidSender => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-sender",
                "The sender is not a phone number in E.164 form.",
            ),
            Self::UnknownNumber => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown-number",
                "The number called is not one of this program's numbers.",
            ),
            Self::RateLimited { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Too many messages were sent from here in a short time. Please wait a little and try again.",
            ),
            Self::StoreUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "store-unavailable",
                // Also the mediator API's answer (a reply, a claim): a web
                // tip in doubt is answered by `channels::web` itself.
                "The gateway's store did not answer in time, so your request may not have been carried out, or may have been. Please check, then try again in a few minutes.",
            ),
            Self::ShuttingDown => (
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting-down",
                "We are restarting. Your tip was not received. Please send it again in a minute.",
            ),
            Self::InviteInvalid => (
                StatusCode::FORBIDDEN,
                "invite-invalid",
                "This enrolment link was already used, has expired or is mistyped. Ask for a new one.",
            ),
            Self::InvalidAgeRecipient => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-age-recipient",
                "The device's encryption key is not an age X25519 public key (age1...).",
            ),
            Self::InvalidSigningKey => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-signing-key",
                "The device's signing key is not an ECDSA P-256 public key in base64url SPKI form.",
            ),
            Self::InvalidDeviceName => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-device-name",
                "The device name must be at most 64 characters, without control characters.",
            ),
            Self::RecipientAlreadyEnrolled => (
                StatusCode::CONFLICT,
                "recipient-already-enrolled",
                "This device's encryption key is already enrolled. The invite was not used.",
            ),
            Self::UnknownDevice => (
                StatusCode::UNAUTHORIZED,
                "unknown-device",
                "This device is not enrolled, or was revoked. Ask for a new enrolment link.",
            ),
            Self::ChallengeInvalid => (
                StatusCode::UNAUTHORIZED,
                "challenge-invalid",
                "The sign-in challenge was already used, has expired or is not for this device. Ask for a new one.",
            ),
            Self::SessionRequired => (
                StatusCode::UNAUTHORIZED,
                "session-required",
                "Please sign in first.",
            ),
            Self::SessionExpired => (
                StatusCode::UNAUTHORIZED,
                "session-expired",
                "Your session has ended. Please sign in again.",
            ),
            Self::CsrfFailed => (
                StatusCode::FORBIDDEN,
                "csrf-failed",
                "The request did not carry this session's X-CSRF-Token header.",
            ),
            Self::OriginMismatch => (
                StatusCode::FORBIDDEN,
                "origin-mismatch",
                "The request came from a page of another site.",
            ),
            Self::PushDisabled => (
                StatusCode::NOT_FOUND,
                "push-disabled",
                "Push notifications are not turned on for this tip line.",
            ),
            Self::InvalidPushSubscription => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-push-subscription",
                "The browser's push subscription could not be used: it needs an https endpoint of a push service and P-256 and auth keys.",
            ),
            Self::InvalidNudgeContact => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-nudge-contact",
                "The nudge email must be an email address and the SMS number a number in E.164 form (+15551234567).",
            ),
            Self::NudgeChannelUnavailable => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "nudge-channel-unavailable",
                "This tip line cannot send nudges that way. Ask the administrator, or use the other channel.",
            ),
            Self::AlertClaimed => (
                StatusCode::CONFLICT,
                "alert-claimed",
                "Someone else on the team already claimed this alert.",
            ),
            Self::AlertResolved => (
                StatusCode::CONFLICT,
                "alert-resolved",
                "This alert is already resolved.",
            ),
            Self::AlertNotClaimed => (
                StatusCode::CONFLICT,
                "alert-not-claimed",
                "This alert is not claimed; claim it first.",
            ),
            Self::NotClaimant => (
                StatusCode::FORBIDDEN,
                "not-claimant",
                "Only the device that claimed this alert can do that.",
            ),
            Self::NotSupervisor => (
                StatusCode::FORBIDDEN,
                "not-supervisor",
                "Only a supervisor can do that.",
            ),
            Self::CannotOpenAlert => (
                StatusCode::FORBIDDEN,
                "cannot-open-alert",
                "This alert was not sealed to this device (it was enrolled after the tip came in), so it cannot be claimed or answered from here; a supervisor can reassign it to someone who can open it.",
            ),
            Self::UnknownOutcome => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown-outcome",
                "The outcome must be one of mediated, referred, no-conflict, unreachable, duplicate, other.",
            ),
            Self::InvalidAssignee => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-assignee",
                "That device is not enrolled, or cannot open alerts of this zone.",
            ),
            Self::InvalidReplyText => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-reply-text",
                "A reply needs some text, at most 1,600 characters.",
            ),
            Self::NoReplyChannel => (
                StatusCode::CONFLICT,
                "no-reply-channel",
                "This tipster cannot be written to: the tip came without a way back, or the way back has expired.",
            ),
            Self::NotFound => (
                StatusCode::NOT_FOUND,
                "not-found",
                "There is nothing at this address.",
            ),
            Self::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "This address does not accept that kind of request.",
            ),
            Self::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Something went wrong on our side. Nothing was saved. Please try again.",
            ),
        };
        ErrorInfo {
            code,
            message,
            status,
        }
    }
}

/// Marker left in the response so the error-page middleware can render HTML
/// for browsers without a second mapping.
#[derive(Debug, Clone, Copy)]
pub struct RenderedError(pub ErrorInfo);

#[derive(Serialize)]
struct ErrorBody {
    error: ErrorInfo,
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        self.info().status
    }

    fn error_response(&self) -> HttpResponse {
        let info = self.info();
        let mut builder = HttpResponse::build(info.status);
        builder.insert_header((header::CACHE_CONTROL, "no-store"));
        if let Self::RateLimited { retry_after_secs } = self {
            builder.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
        }
        if info.status == StatusCode::SERVICE_UNAVAILABLE {
            builder.insert_header((header::RETRY_AFTER, "30"));
        }
        let mut response = builder.json(ErrorBody { error: info });
        response.extensions_mut().insert(RenderedError(info));
        response
    }
}

/// Whether the client asked for HTML (a browser) rather than JSON (a program).
pub fn prefers_html(accept: Option<&HeaderValue>) -> bool {
    let Some(accept) = accept.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let html = accept.find("text/html");
    let json = accept.find("application/json");
    match (html, json) {
        (Some(h), Some(j)) => h < j,
        (Some(_), None) => true,
        _ => false,
    }
}

/// Turns an error response into the plain-words HTML page.
pub fn html_error_page(info: ErrorInfo) -> String {
    crate::html::error_page(info.status.as_u16(), info.message)
}

impl From<actix_web::error::JsonPayloadError> for AppError {
    fn from(e: actix_web::error::JsonPayloadError) -> Self {
        use actix_web::error::JsonPayloadError as E;
        match e {
            E::Overflow { .. } | E::OverflowKnownLength { .. } => Self::BodyTooLarge,
            E::ContentType => Self::UnsupportedContentType,
            E::Payload(p) => p.into(),
            _ => Self::MalformedBody,
        }
    }
}

impl From<actix_web::error::UrlencodedError> for AppError {
    fn from(e: actix_web::error::UrlencodedError) -> Self {
        use actix_web::error::UrlencodedError as E;
        match e {
            E::Overflow { .. } => Self::BodyTooLarge,
            E::ContentType => Self::UnsupportedContentType,
            E::Payload(p) => p.into(),
            _ => Self::MalformedBody,
        }
    }
}

impl From<actix_web::error::PayloadError> for AppError {
    fn from(e: actix_web::error::PayloadError) -> Self {
        use actix_web::error::PayloadError as E;
        match e {
            E::Overflow => Self::BodyTooLarge,
            E::Incomplete(_) => Self::IncompleteBody,
            // The request body deadline (`app::body_deadline`).
            E::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => Self::BodyTimeout,
            _ => Self::MalformedBody,
        }
    }
}

impl From<actix_web::error::QueryPayloadError> for AppError {
    fn from(_: actix_web::error::QueryPayloadError) -> Self {
        Self::MalformedBody
    }
}

impl From<actix_web::error::PathError> for AppError {
    fn from(_: actix_web::error::PathError) -> Self {
        Self::NotFound
    }
}

/// JSON bodies of at most `limit` bytes, refused through [`AppError`] (so a
/// bad body gets the same stable codes as every other error).
pub fn json_limited(limit: usize) -> actix_web::web::JsonConfig {
    actix_web::web::JsonConfig::default()
        .limit(limit)
        .error_handler(|e, _| AppError::from(e).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_code_is_kebab_case_and_distinct() {
        let all = [
            AppError::BodyTooLarge,
            AppError::IncompleteBody,
            AppError::BodyTimeout,
            AppError::UnsupportedContentType,
            AppError::MalformedBody,
            AppError::InvalidUtf8,
            AppError::MissingField,
            AppError::FieldTooLong,
            AppError::EmptyText,
            AppError::UnknownZone,
            AppError::InvalidUrgency,
            AppError::InvalidSubmissionToken,
            AppError::InvalidIdempotencyKey,
            AppError::SignatureInvalid,
            AppError::TimestampStale,
            AppError::InvalidSender,
            AppError::UnknownNumber,
            AppError::RateLimited {
                retry_after_secs: 1,
            },
            AppError::StoreUnavailable,
            AppError::ShuttingDown,
            AppError::InviteInvalid,
            AppError::InvalidAgeRecipient,
            AppError::InvalidSigningKey,
            AppError::InvalidDeviceName,
            AppError::RecipientAlreadyEnrolled,
            AppError::UnknownDevice,
            AppError::ChallengeInvalid,
            AppError::SessionRequired,
            AppError::SessionExpired,
            AppError::CsrfFailed,
            AppError::OriginMismatch,
            AppError::PushDisabled,
            AppError::InvalidPushSubscription,
            AppError::InvalidNudgeContact,
            AppError::NudgeChannelUnavailable,
            AppError::AlertClaimed,
            AppError::AlertResolved,
            AppError::AlertNotClaimed,
            AppError::NotClaimant,
            AppError::NotSupervisor,
            AppError::CannotOpenAlert,
            AppError::UnknownOutcome,
            AppError::InvalidAssignee,
            AppError::InvalidReplyText,
            AppError::NoReplyChannel,
            AppError::NotFound,
            AppError::MethodNotAllowed,
            AppError::Internal,
        ];
        let mut codes: Vec<_> = all.iter().map(|e| e.info().code).collect();
        for code in &codes {
            assert!(
                code.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{code}"
            );
        }
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
    }

    #[test]
    fn browsers_get_html_and_programs_get_json() {
        let browser = HeaderValue::from_static("text/html,application/xhtml+xml,*/*;q=0.8");
        let program = HeaderValue::from_static("application/json");
        assert!(prefers_html(Some(&browser)));
        assert!(!prefers_html(Some(&program)));
        assert!(!prefers_html(None));
    }
}
