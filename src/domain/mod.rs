//! Domain types, parsed once at the edge from untrusted input and passed inward
//! as proof that they were checked.

mod email;
mod ids;
mod language;
mod phone;
mod pseudonym;
mod tip;
mod zone;

pub use email::{EmailAddress, InvalidEmailAddress};
pub use ids::{ThreadId, TipId};
pub use language::Language;
pub use phone::{InvalidPhoneNumber, PhoneNumber};
pub use pseudonym::Pseudonym;
pub use tip::{
    Attachment, AttachmentKind, Channel, InboundTip, Priority, ProviderMessage, TipDocument,
    TipText, TipTextError, Withheld, WithheldReason,
};
pub use zone::{InvalidZone, Zone, ZoneChoice};
