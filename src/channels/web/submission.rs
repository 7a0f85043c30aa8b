//! The submission token that makes sending a web tip again safe. Every
//! render of the tip form carries a fresh random token (hidden field
//! `submission`); a program may send its own as the `Idempotency-Key` header.
//! Both are untrusted request input, parsed here once. The token is never
//! stored, logged or remembered when handed out: the append script keeps only
//! a replay marker named by a keyed hash of the token *and* the tip's fields
//! (`bus/markers.rs`), so a tip sent again with the same token and the same
//! content is stored once, while a reused or guessed token with other content
//! is never mistaken for it.

use actix_web::http::header::HeaderValue;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;

/// Random bytes in a token the form hands out: 192 bits.
const RANDOM_BYTES: usize = 24;
/// Accepted lengths: 22 characters hold 128 bits in base64url; 64 leaves
/// room for a program's own format (a UUID is 36).
const MIN_CHARS: usize = 22;
const MAX_CHARS: usize = 64;

/// A well-formed submission token: 22 to 64 characters of `A-Z a-z 0-9 - _`
/// (base64url, hex and UUIDs fit).
#[derive(Clone, PartialEq, Eq)]
pub struct SubmissionToken(String);

/// Tokens tie a tip to its retries; keep them out of debug output and logs.
impl std::fmt::Debug for SubmissionToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SubmissionToken(..)")
    }
}

impl SubmissionToken {
    /// A fresh token for one render of the form.
    pub fn random() -> Self {
        let mut bytes = [0u8; RANDOM_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// The form field's value, or `None` when it is not a token.
    pub fn parse(s: &str) -> Option<Self> {
        let ok = (MIN_CHARS..=MAX_CHARS).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| Self(s.to_owned()))
    }

    /// The `Idempotency-Key` header: a token, bare or as a structured-field
    /// string (`"…"`, as draft-ietf-httpapi-idempotency-key-header writes it).
    pub fn parse_header(value: &HeaderValue) -> Option<Self> {
        let s = value.to_str().ok()?.trim();
        let s = s
            .strip_prefix('"')
            .and_then(|rest| rest.strip_suffix('"'))
            .unwrap_or(s);
        Self::parse(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What the replay marker is a keyed hash of: the token and every field
    /// that makes the tip, so only the same tip sent again is one. The text
    /// is taken as a browser sends it back from the form shown again: a
    /// `<textarea>` drops a leading line break, turns `\r` and `\r\n` into
    /// line breaks sent as `\r\n`, and NUL into U+FFFD (HTML's parsing
    /// rules), so line breaks are compared as `\n`, NUL as U+FFFD, and
    /// white space around the text is left out. The text stored is the one
    /// sent, unchanged.
    pub fn marker_source(
        &self,
        text: &str,
        zone: &str,
        urgency: &str,
    ) -> zeroize::Zeroizing<Vec<u8>> {
        let text = zeroize::Zeroizing::new(
            text.replace("\r\n", "\n")
                .replace('\r', "\n")
                .replace('\0', "\u{fffd}"),
        );
        let text = text.trim();
        let mut out =
            Vec::with_capacity(self.0.len() + text.len() + zone.len() + urgency.len() + 16);
        for part in ["web", self.0.as_str(), zone, urgency, text] {
            out.extend_from_slice(part.as_bytes());
            out.push(0);
        }
        zeroize::Zeroizing::new(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_token_holds_192_random_bits_and_parses() {
        let a = SubmissionToken::random();
        assert_eq!(a.as_str().len(), 32);
        assert_eq!(SubmissionToken::parse(a.as_str()), Some(a.clone()));
        assert_ne!(a, SubmissionToken::random());
        assert_eq!(format!("{a:?}"), "SubmissionToken(..)");
    }

    #[test]
    fn tokens_outside_the_alphabet_or_lengths_are_refused() {
        for bad in [
            "",
            "short",
            &"a".repeat(21),
            &"a".repeat(65),
            "aaaaaaaaaaaaaaaaaaaaa=b",
            "aaaaaaaaaaaaaaaaaaaaa b",
            "aaaaaaaaaaaaaaaaaaaaaé",
            "aaaaaaaaaaaaaaaaaaaa\0bb",
        ] {
            assert!(SubmissionToken::parse(bad).is_none(), "{bad:?}");
        }
        assert!(SubmissionToken::parse(&"a".repeat(22)).is_some());
        assert!(SubmissionToken::parse(&"Z".repeat(64)).is_some());
    }

    #[test]
    fn the_header_takes_a_bare_or_quoted_token_such_as_a_uuid() {
        let uuid = "8e03978e-40d5-43e8-bc93-6894a57f9324";
        for raw in [uuid.to_owned(), format!("\"{uuid}\""), format!(" {uuid} ")] {
            let value = HeaderValue::from_str(&raw).unwrap();
            assert_eq!(
                SubmissionToken::parse_header(&value).unwrap().as_str(),
                uuid
            );
        }
        for raw in ["\"unterminated-8e03978e-40d5-43e8", "\"\"", "a,b"] {
            let value = HeaderValue::from_str(raw).unwrap();
            assert!(SubmissionToken::parse_header(&value).is_none(), "{raw}");
        }
    }

    #[test]
    fn the_marker_changes_with_every_field_of_the_tip() {
        let t = SubmissionToken::parse(&"a".repeat(22)).unwrap();
        let base = t.marker_source("text", "north", "now");
        assert_eq!(*base, *t.marker_source("text", "north", "now"));
        for other in [
            t.marker_source("text!", "north", "now"),
            t.marker_source("text", "south", "now"),
            t.marker_source("text", "north", "fyi"),
            SubmissionToken::parse(&"b".repeat(22))
                .unwrap()
                .marker_source("text", "north", "now"),
            // Field boundaries are kept: no shifting text between fields.
            t.marker_source("", "north", "now\0text"),
            // Line breaks and white space inside the text still count.
            t.marker_source("te\nxt", "north", "now"),
            t.marker_source("te xt", "north", "now"),
        ] {
            assert_ne!(*base, *other);
        }
    }

    #[test]
    fn the_marker_holds_for_the_text_a_browser_sends_back_from_the_form_shown_again() {
        let t = SubmissionToken::parse(&"a".repeat(22)).unwrap();
        // (sent first, what a <textarea> holding it sends back)
        for (sent, resent) in [
            // A leading line break is dropped by the HTML parser.
            ("\r\nby the gym\r\ntonight", "by the gym\r\ntonight"),
            ("\nby the gym", "by the gym"),
            // Bare CR or LF come back as CRLF.
            ("by the gym\ntonight", "by the gym\r\ntonight"),
            ("by the gym\rtonight", "by the gym\r\ntonight"),
            // NUL is parsed as U+FFFD.
            ("by the\0gym", "by the\u{fffd}gym"),
            ("  by the gym \r\n", "by the gym"),
        ] {
            assert_eq!(
                *t.marker_source(sent, "north", "now"),
                *t.marker_source(resent, "north", "now"),
                "{sent:?}"
            );
        }
    }
}
