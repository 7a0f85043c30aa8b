//! The SMS channel: Twilio and Telnyx webhooks in, replies out through the
//! providers' REST APIs. Everything from the provider is untrusted until its
//! signature is verified, and even then only the message body and media are kept.

pub mod provider;
pub mod signature;
