//! Channel adapters: each verifies and parses its own untrusted input into an
//! [`crate::domain::InboundTip`] and registers its routes with a function that
//! takes `&mut ServiceConfig`. SMS and email join here as sibling modules.

pub mod body;
pub mod email;
pub mod form;
pub mod sms;
pub mod web;
