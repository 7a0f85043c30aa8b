//! Web Push to mediators' phones: a new conflict alert wakes the mediator
//! app through the phone's push service (FCM, Mozilla autopush, Apple, WNS).
//!
//! The message is encrypted to the subscription's key (RFC 8291, `ece`), the
//! gateway identifies itself with VAPID (RFC 8292, `vapid`), and `client`
//! sends it (RFC 8030) and says whether to retry, prune or give up. The
//! payload (`notice`) names only the alert id, the zone and the urgency: a
//! push service stores messages and is outside the trust boundary, so tip
//! text never goes this way, even encrypted. Untrusted inputs are the subscriptions sent by
//! mediators' browsers (`subscription`) and the push services' answers.
//!
//! This module sends one message; the delivery worker, the subscription store
//! and the HTTP routes that use it live elsewhere.

mod client;
mod ece;
mod notice;
mod subscription;
mod vapid;

pub use client::{
    MAX_RETRY_AFTER, PushClient, PushClientConfig, PushError, TransientCause, Urgency,
};
pub use ece::{EceError, MAX_PLAINTEXT, encrypt};
pub use notice::AlertNotice;
pub use subscription::{EndpointPolicy, MAX_ENDPOINT_LEN, Subscription, SubscriptionError};
pub use vapid::{TOKEN_LIFETIME_SECS, VapidError, VapidKey, VapidSubject};
