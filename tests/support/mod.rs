//! Fixtures shared by the integration tests (tests/api/) and the load
//! clients (benches/): a gateway spawned on port 0 against the real Redis,
//! the SMS providers' stand-in, email peers, a mediator's phone, the Web Push
//! receiver, a private Redis, `tipwire serve` as a child, canary scans and
//! the fault-injection rig.
//!
//! Included with `#[path = "../support/mod.rs"] mod support;` (benches:
//! `"../tests/support/mod.rs"`), so its items are `crate::support::...`.

pub mod app;
pub mod canary;
pub mod email;
pub mod faults;
pub mod net;
pub mod phone;
pub mod photo;
pub mod private_redis;
pub mod push;
pub mod serve;
pub mod sms;
pub mod telnyx;
pub mod twilio;
