//! Provider webhook signatures: Twilio (HMAC-SHA1) and Telnyx (Ed25519).
