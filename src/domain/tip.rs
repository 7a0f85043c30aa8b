//! The internal inbound-tip type every channel adapter produces, and the
//! document that is sealed. The text is untrusted and is never logged.

use serde::{Deserialize, Serialize};

use super::{ThreadId, ZoneChoice};
use crate::domain::Pseudonym;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Web,
    Sms,
    Email,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Web => "web",
            Self::Sms => "sms",
            Self::Email => "email",
        }
    }
}

/// How urgent the tipster says the situation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Happening now or about to happen.
    Now,
    /// Likely today.
    Today,
    /// For the team's information.
    Fyi,
}

impl Priority {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "now" => Some(Self::Now),
            "today" => Some(Self::Today),
            "fyi" => Some(Self::Fyi),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Now => "now",
            Self::Today => "today",
            Self::Fyi => "fyi",
        }
    }
}

/// Tip text: non-blank and within the configured length. Kept exactly as sent.
/// No `Debug` output of the content, so it cannot slip into a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct TipText(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TipTextError {
    #[error("the tip text is empty")]
    Empty,
    #[error("the tip text is too long")]
    TooLong,
}

impl TipText {
    pub fn parse(s: String, max_chars: usize) -> Result<Self, TipTextError> {
        if s.chars().count() > max_chars {
            return Err(TipTextError::TooLong);
        }
        if s.trim().is_empty() {
            return Err(TipTextError::Empty);
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for TipText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TipText({} chars)", self.0.chars().count())
    }
}

/// One tip as the channel adapters hand it to the intake pipeline: sender
/// identity already replaced by a pseudonym (or absent, for the web).
#[derive(Debug, Clone)]
pub struct InboundTip {
    pub channel: Channel,
    pub zone: ZoneChoice,
    pub priority: Priority,
    pub text: TipText,
    /// The subject line of an emailed tip; every other header is dropped.
    pub subject: Option<TipText>,
    pub pseudonym: Option<Pseudonym>,
    pub thread: ThreadId,
    /// Photos and files, metadata already stripped.
    pub attachments: Vec<Attachment>,
    /// What was sent but not kept, and why: the mediator is told.
    pub withheld: Vec<Withheld>,
    /// For messages a provider delivered (SMS): what the append also checks
    /// and refreshes, in the same round trip.
    pub provider: Option<ProviderMessage>,
}

/// What a provider-delivered message adds to its append.
#[derive(Debug, Clone)]
pub struct ProviderMessage {
    /// Derived from the provider's message id, or a web tip's submission
    /// token and fields (a keyed hash), so a retried or replayed webhook or
    /// form is stored once. Never the id or token itself.
    pub dedupe: String,
    /// The sender under every kept pseudonym key, checked against the opt-out
    /// set (none for the web).
    pub pseudonyms: Vec<String>,
    /// When the thread's sealed reply address should now expire (unix seconds,
    /// a whole hour); `None` for the web, which has no reply address.
    pub reply_expire_at: Option<u64>,
}

/// A sealed attachment: content type and bytes (base64 inside the document).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub content_type: String,
    #[serde(with = "base64_bytes")]
    pub data: Vec<u8>,
}

impl std::fmt::Debug for Attachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Attachment({}, {} bytes)",
            self.content_type,
            self.data.len()
        )
    }
}

/// An attachment the gateway received but did not seal, and why. It is
/// sealed inside the tip so the mediator knows something was sent (and can
/// ask for a screenshot). Fixed vocabularies only: nothing of the sender's
/// bytes, names or declared types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Withheld {
    pub kind: AttachmentKind,
    pub reason: WithheldReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttachmentKind {
    Photo,
    Pdf,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WithheldReason {
    /// It can carry the sender's name, device or location, and the gateway
    /// cannot remove them for certain (PDF; a photo it could not parse).
    CannotClean,
    /// A type tipwire does not take, or bytes that are not what they claim.
    NotAccepted,
    /// Larger than allowed, or past the number of items allowed.
    OverLimit,
    /// The provider's media server did not deliver it in time (or failed).
    NotFetched,
}

mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

/// What is sealed: the plaintext inside each age envelope. The routing fields
/// repeat the stream entry's so an envelope cannot be swapped between entries
/// unnoticed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TipDocument {
    /// Format version of this document.
    pub v: u32,
    pub tip_id: String,
    pub channel: Channel,
    pub zone: String,
    pub priority: Priority,
    /// Unix seconds, rounded down to the minute.
    pub received: u64,
    pub thread: String,
    /// Emailed tips only: the subject line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub text: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    /// Attachments sent but not kept, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub withheld: Vec<Withheld>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_and_long_texts_are_refused_and_the_rest_kept_exactly() {
        assert_eq!(
            TipText::parse("  \n\t".into(), 10).unwrap_err(),
            TipTextError::Empty
        );
        assert_eq!(
            TipText::parse("ñññ".into(), 2).unwrap_err(),
            TipTextError::TooLong
        );
        let t = TipText::parse(" two words \r\n".into(), 20).unwrap();
        assert_eq!(t.as_str(), " two words \r\n");
        assert_eq!(format!("{t:?}"), "TipText(13 chars)");
    }

    #[test]
    fn priorities_round_trip() {
        for p in [Priority::Now, Priority::Today, Priority::Fyi] {
            assert_eq!(Priority::parse(p.as_str()), Some(p));
        }
        assert_eq!(Priority::parse("NOW"), None);
    }
}
