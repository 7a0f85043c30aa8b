//! The email channel: an SMTP listener inside `tipwire serve` receives mail for
//! the tip addresses, keeps only the subject, the text and image/PDF
//! attachments (photos stripped of metadata), turns the sender's address into
//! a pseudonym (and, sealed to the relay key, a reply address), and hands the
//! tip to the intake pipeline. Replies and mediator nudges leave through
//! lettre. Everything a client sends is untrusted.

mod inbound;
mod listener;
pub mod message;
pub(crate) mod mime;
mod replies;
pub mod session;

pub use inbound::{EmailChannel, EmailLimiter};
pub use listener::{ConnectionLimits, SmtpListeners};
