//! Domain types, parsed once at the edge from untrusted input and passed inward
//! as proof that they were checked.

mod ids;
mod tip;
mod zone;

pub use ids::{ThreadId, TipId};
pub use tip::{Channel, InboundTip, Priority, TipDocument, TipText, TipTextError};
pub use zone::{InvalidZone, Zone, ZoneChoice};
