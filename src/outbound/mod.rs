//! Everything tipwire sends out: the SMS providers' REST APIs (sending, and
//! fetching an MMS's media: `sms`), mail through the relay (`email`), Web
//! Push to mediators' phones (`push`), content-free SMS and email nudges
//! (`nudge`), the reply relay from mediators to tipsters (`relay`), all
//! through the one egress resolver that refuses non-public addresses
//! (`egress`). Untrusted: the providers', relays' and push services' answers.

pub mod egress;
pub mod email;
pub mod nudge;
pub mod push;
pub mod relay;
pub mod sms;
