//! The HTTP routes and authentication of the mediator app, over the
//! `mediator` domain: device enrolment and sign-in (`devices`, `auth`), the
//! alert API (live stream, envelopes, claims, replies: `alerts`), push
//! subscriptions and nudge contacts (`push`) and the app's own files
//! (`app_assets`). Untrusted: every request; a device is trusted only after
//! `auth` checked its session against the registrations.

pub mod alerts;
pub mod app_assets;
pub mod auth;
pub mod devices;
pub mod push;

pub use auth::AuthenticatedDevice;
