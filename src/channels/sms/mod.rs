//! The SMS channel: Twilio and Telnyx webhooks in, replies out through the
//! providers' REST APIs (via the reply relay). Everything from the provider is
//! untrusted until its signature is verified, and even then only the message
//! body and media are kept: the number becomes a pseudonym (and, sealed to the
//! relay key, a reply address); account ids, message ids, city/state/zip and
//! every other field are dropped here.

mod inbound;
pub mod language;
mod limits;
mod setup;
pub mod signature;
pub(crate) mod telnyx;
pub(crate) mod twilio;

pub use crate::outbound::relay::threads::{Provider, ReplyAddress, Threads};
pub use inbound::{Answer, InboundSms, MediaRef, SmsChannel};
pub use language::{Keyword, Language, Texts};
pub use limits::SmsLimiter;

pub use twilio::xml_escape;

use actix_web::web;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/webhooks/sms/twilio", web::post().to(twilio::webhook))
        .route("/webhooks/sms/telnyx", web::post().to(telnyx::webhook));
}
