//! Integration tests: the real gateway over HTTPS against a real Redis.

mod alerts_api;
mod bad_input;
mod browser;
mod canary;
mod catch_up;
mod cli;
mod connections;
mod devices;
mod durability;
mod email;
mod email_capacity;
mod email_hostile;
mod email_threads;
mod escalation;
mod escalation_processes;
mod faults;
mod hostile_load;
mod in_doubt;
mod layout;
mod offboarding;
mod pages;
mod purge;
mod push;
mod push_delivery;
mod rate_limit;
mod redis_down;
mod retention;
mod round_trip;
mod shutdown;
mod sms;
mod sms_media;
mod sms_replay;
mod timing;
mod tls;
mod web_retries;
mod work_queue;

#[path = "../support/mod.rs"]
mod support;
