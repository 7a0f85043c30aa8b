//! Integration tests: the real gateway over HTTPS against a real Redis.

mod alerts_api;
mod bad_input;
mod browser;
pub mod canary;
mod cli;
mod devices;
mod email;
mod email_helpers;
mod escalation;
mod escalation_processes;
mod helpers;
mod pages;
mod push;
mod push_delivery;
mod rate_limit;
mod redis_down;
mod retention;
mod round_trip;
mod shutdown;
pub mod sms;
mod sms_helpers;
mod sms_media;
mod sms_replay;
mod timing;
mod tls;
mod work_queue;
