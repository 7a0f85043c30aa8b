//! SMS provider REST clients (Twilio, Telnyx) at configurable base URLs.
