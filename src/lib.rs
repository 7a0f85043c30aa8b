//! tipwire: an anonymous tip and conflict-alert gateway for community violence
//! intervention programs.
//!
//! The library holds all logic; `src/main.rs` is a thin command-line shell. The
//! module tree follows the flow in `docs/architecture.md`: a channel adapter
//! (`channels`) parses untrusted input into an [`domain::InboundTip`], `privacy`
//! strips what identifies the sender, `ratelimit` refuses floods, `crypto` seals
//! the tip with age to its zone's recipients, and `bus` appends it to the Redis
//! stream `tipwire:alerts`. The `intake` module runs that pipeline once per tip.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::todo,
        clippy::dbg_macro
    )
)]

pub mod admin;
pub mod api;
pub mod app;
pub mod bus;
pub mod channels;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod error;
/// Fuzz targets (`fuzz/`, `scripts/fuzz.sh`); not part of the gateway's API.
#[doc(hidden)]
pub mod fuzzing;
pub mod html;
pub mod intake;
pub mod mediator;
pub mod outbound;
pub mod privacy;
pub mod ratelimit;
pub mod server;
pub mod telemetry;
