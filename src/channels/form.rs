//! Strict `application/x-www-form-urlencoded` decoding. The body is untrusted.
//! Unlike lenient decoders, invalid UTF-8 and broken percent escapes are
//! refused rather than silently replaced, so a tip is stored exactly as sent or
//! not at all.

use std::fmt::Write as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("form data is not valid UTF-8")]
    InvalidUtf8,
    #[error("form data is not well-formed")]
    Malformed,
}

/// Decodes `name=value&…` pairs. Refuses more than `max_fields` pairs, a
/// repeated name, a pair without `=`, and a `%` not followed by two hex digits.
pub fn parse(body: &[u8], max_fields: usize) -> Result<Vec<(String, String)>, FormError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for pair in body.split(|&b| b == b'&') {
        if pair.is_empty() {
            continue;
        }
        if out.len() == max_fields {
            return Err(FormError::Malformed);
        }
        let eq = pair
            .iter()
            .position(|&b| b == b'=')
            .ok_or(FormError::Malformed)?;
        let (name, value) = pair.split_at(eq);
        let value = value.get(1..).unwrap_or_default();
        let name = decode(name)?;
        if out.iter().any(|(n, _)| *n == name) {
            return Err(FormError::Malformed);
        }
        out.push((name, decode(value)?));
    }
    Ok(out)
}

/// The form encoding of `s` (what a browser sends): unreserved bytes as they
/// are, space as `+`, everything else percent-escaped. Used to build requests
/// in tests and fuzz targets; the gateway only decodes.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => out.push(char::from(b)),
            b' ' => out.push('+'),
            _ => {
                // Writing to a String cannot fail.
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn decode(raw: &[u8]) -> Result<String, FormError> {
    let mut bytes = Vec::with_capacity(raw.len());
    let mut iter = raw.iter().copied();
    while let Some(b) = iter.next() {
        match b {
            b'+' => bytes.push(b' '),
            b'%' => {
                let hi = iter
                    .next()
                    .and_then(hex_value)
                    .ok_or(FormError::Malformed)?;
                let lo = iter
                    .next()
                    .and_then(hex_value)
                    .ok_or(FormError::Malformed)?;
                bytes.push(hi << 4 | lo);
            }
            other => bytes.push(other),
        }
    }
    String::from_utf8(bytes).map_err(|_| FormError::InvalidUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_what_browsers_send() {
        let got = parse(
            b"text=Two+guys%0D%0Aarguing+%C3%B1&zone=north&urgency=now",
            8,
        )
        .unwrap();
        assert_eq!(
            got,
            vec![
                ("text".into(), "Two guys\r\narguing ñ".into()),
                ("zone".into(), "north".into()),
                ("urgency".into(), "now".into())
            ]
        );
    }

    #[test]
    fn refuses_what_lenient_decoders_would_guess_at() {
        assert_eq!(parse(b"text=%FF%FE", 8), Err(FormError::InvalidUtf8));
        assert_eq!(parse(b"text=\xff", 8), Err(FormError::InvalidUtf8));
        assert_eq!(parse(b"text=abc%2", 8), Err(FormError::Malformed));
        assert_eq!(parse(b"text=abc%zz", 8), Err(FormError::Malformed));
        assert_eq!(parse(b"text", 8), Err(FormError::Malformed));
        assert_eq!(parse(b"a=1&a=2", 8), Err(FormError::Malformed));
        assert_eq!(parse(b"a=1&b=2&c=3", 2), Err(FormError::Malformed));
    }

    proptest! {
        #[test]
        fn any_text_round_trips_exactly(text in "\\PC*", zone in "[a-z]{1,8}") {
            let body = format!("text={}&zone={}", encode(&text), encode(&zone));
            let got = parse(body.as_bytes(), 8).unwrap();
            prop_assert_eq!(got, vec![("text".to_owned(), text), ("zone".to_owned(), zone)]);
        }

        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse(&body, 8);
        }
    }
}
