//! MIME parsing and redaction of one received message
//! (`channels/email/message.rs`, `mime.rs`, `privacy/redaction.rs`) on
//! arbitrary bytes: the message is untrusted network input.
//!
//! The input is a message whose From line (and envelope sender) is a planted
//! address, [`PLANTED`]; the fuzzed bytes that follow (more headers, the
//! body) may name that address through tokens expanded here in the
//! encodings a sender or a mail client could use: `$A` as written, `$U` upper
//! case, `$Q` every byte quoted-printable, `$P` split by a quoted-printable
//! soft line break, `$B` base64, `$W` and `$q` RFC 2047 encoded words (B and
//! Q), `$H` with an HTML character reference for the "@". `$x` repeats the
//! line before it (up to 32,768 times, the first input byte says), so inputs
//! of a few KiB reach the line, part and header-byte limits.
//!
//! Properties:
//! - with redaction on, the kept text and subject never hold the planted
//!   address, in any letter case;
//! - the MIME structure the parser builds stays within its limits (parts,
//!   nesting depth, lines, header bytes), holds no nested message, and every
//!   multipart's children come after it; and the message parser's verdict
//!   agrees with the structure's (too complex, nested).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::Input;
use crate::channels::email::message::{self, MessageError, MessageLimits};
use crate::channels::email::mime::{
    self, MAX_HEADER_BYTES, MAX_LINES, MAX_MIME_DEPTH, MAX_PARTS, StructureError,
};
use crate::domain::EmailAddress;
use mail_parser::{Message, PartType};

/// The sender's address planted in the message.
pub const PLANTED: &str = "canary.sender@tipster.example";
const PLANTED_NAME: &str = "Rosa Canario";
/// Longest message built from one input.
const MAX_MESSAGE_BYTES: usize = 1_300_000;

/// A message of at most [`MAX_MESSAGE_BYTES`], the structures mail-parser
/// builds for it (bounded by the header-byte and line limits) and its text.
pub const MIME_MAX_ALLOC_BYTES: usize = 96 << 20;

/// Parses the message `data` describes (see the module documentation) and
/// checks redaction and the structure's limits.
pub fn mime(data: &[u8]) {
    let mut input = Input::new(data);
    let options = input.byte();
    let raw = build(options, input.rest());
    let Ok(planted) = EmailAddress::parse(PLANTED) else {
        return;
    };
    let structure = mime::parse(&raw);
    if let Ok(message) = &structure {
        check_structure(message, &raw);
    }
    let limits = MessageLimits {
        max_text_chars: 100_000,
        max_attachments: 3,
        max_attachment_bytes: 1 << 20,
        redact: true,
    };
    let parsed = message::parse(&raw, Some(&planted), &limits);
    let too_complex = matches!(
        structure,
        Err(StructureError::TooDeep | StructureError::TooManyParts)
    );
    let nested = matches!(structure, Err(StructureError::NestedMessage));
    assert!(
        !(too_complex || nested) || parsed.is_err(),
        "a message the structure refused was accepted"
    );
    assert!(
        structure.is_err()
            || !matches!(
                parsed,
                Err(MessageError::TooComplex | MessageError::NestedMessage)
            ),
        "a structure within the limits was refused as too complex or nested"
    );
    if let Ok(parsed) = parsed {
        assert!(
            !holds_planted(&parsed.text),
            "the planted sender address survived redaction in the text"
        );
        assert!(
            !parsed.subject.as_deref().is_some_and(holds_planted),
            "the planted sender address survived redaction in the subject"
        );
    }
}

fn holds_planted(text: &str) -> bool {
    text.as_bytes()
        .windows(PLANTED.len())
        .any(|w| w.eq_ignore_ascii_case(PLANTED.as_bytes()))
}

/// The message: a From line chosen by `options`, then `body` with its
/// tokens expanded.
fn build(options: u8, body: &[u8]) -> Vec<u8> {
    let mut raw = match options & 0x03 {
        0 => format!("From: {PLANTED_NAME} <{PLANTED}>\r\n").into_bytes(),
        1 => format!("From: {PLANTED}\r\n").into_bytes(),
        2 => format!(
            "From: =?utf-8?B?{}?= <{PLANTED}>\r\n",
            STANDARD.encode(PLANTED_NAME)
        )
        .into_bytes(),
        // The envelope sender alone.
        _ => Vec::new(),
    };
    let repeat = 1_usize << ((options >> 2) & 0x0F);
    let mut bytes = body.iter();
    while let Some(&b) = bytes.next() {
        if raw.len() > MAX_MESSAGE_BYTES {
            break;
        }
        if b != b'$' {
            raw.push(b);
            continue;
        }
        let Some(&token) = bytes.next() else {
            raw.push(b);
            break;
        };
        match token {
            b'x' => repeat_last_line(&mut raw, repeat),
            token => match planted_as(token) {
                Some(form) => raw.extend_from_slice(form.as_bytes()),
                None => raw.extend_from_slice(&[b, token]),
            },
        }
    }
    raw
}

/// The planted address in the encoding `token` names.
fn planted_as(token: u8) -> Option<String> {
    let at = PLANTED.find('@').unwrap_or_default();
    let (local, domain) = PLANTED.split_at(at);
    Some(match token {
        b'A' => PLANTED.to_owned(),
        b'U' => PLANTED.to_ascii_uppercase(),
        b'Q' => PLANTED.bytes().map(|b| format!("={b:02X}")).collect(),
        b'P' => format!("{local}=\r\n=40{}", domain.get(1..).unwrap_or_default()),
        b'B' => STANDARD.encode(PLANTED),
        b'W' => format!("=?utf-8?B?{}?=", STANDARD.encode(PLANTED)),
        b'q' => format!(
            "=?utf-8?Q?{local}=40{}?=",
            domain.get(1..).unwrap_or_default()
        ),
        b'H' => format!("{local}&#64;{}", domain.get(1..).unwrap_or_default()),
        _ => return None,
    })
}

/// Appends the last complete line of `raw` (its LF included) `times` more
/// times, within [`MAX_MESSAGE_BYTES`].
fn repeat_last_line(raw: &mut Vec<u8>, times: usize) {
    let Some(end) = raw.iter().rposition(|&b| b == b'\n') else {
        return;
    };
    let start = raw
        .get(..end)
        .and_then(|head| head.iter().rposition(|&b| b == b'\n'))
        .map_or(0, |at| at + 1);
    let Some(line) = raw.get(start..=end).map(<[u8]>::to_vec) else {
        return;
    };
    for _ in 0..times {
        if raw.len() + line.len() > MAX_MESSAGE_BYTES {
            break;
        }
        raw.extend_from_slice(&line);
    }
}

/// The structure `mime::parse` built stays within its limits.
fn check_structure(message: &Message<'_>, raw: &[u8]) {
    let parts = &message.parts;
    assert!(parts.len() <= MAX_PARTS, "{} parts", parts.len());
    let lines = raw.iter().filter(|&&b| b == b'\n').count();
    assert!(lines <= MAX_LINES, "{lines} lines accepted");
    let header_bytes: usize = parts
        .iter()
        .map(|p| {
            usize::try_from(p.offset_body.saturating_sub(p.offset_header)).unwrap_or(usize::MAX)
        })
        .sum();
    assert!(
        header_bytes <= MAX_HEADER_BYTES,
        "{header_bytes} header bytes accepted"
    );
    // Depth from the root, each part visited once: children come after
    // their parent.
    let mut stack = vec![(0_usize, 0_usize)];
    let mut visited = 0;
    while let Some((id, depth)) = stack.pop() {
        visited += 1;
        assert!(visited <= parts.len(), "a part is reached twice");
        let Some(part) = parts.get(id) else {
            assert!(parts.is_empty() && id == 0, "a child index past the parts");
            continue;
        };
        assert!(
            !matches!(part.body, PartType::Message(_)),
            "a nested message was built"
        );
        if let PartType::Multipart(children) = &part.body {
            assert!(depth < MAX_MIME_DEPTH, "multiparts nest past the limit");
            for &child in children {
                let child = usize::try_from(child).unwrap_or(usize::MAX);
                assert!(child > id, "a child before its parent");
                stack.push((child, depth + 1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus/mime")
            .join(name);
        let data = std::fs::read(path).unwrap();
        let (options, body) = data.split_first().unwrap();
        build(*options, body)
    }

    #[test]
    fn the_limit_seeds_reach_the_limits_they_are_named_after() {
        for (name, error) in [
            ("many-lines-repeated", StructureError::TooManyParts),
            ("huge-header-repeated", StructureError::TooManyParts),
            ("two-hundred-and-one-parts", StructureError::TooManyParts),
            ("nested-nine-deep", StructureError::TooDeep),
            ("forwarded-message-nested", StructureError::NestedMessage),
        ] {
            assert_eq!(mime::parse(&seed(name)).err(), Some(error), "{name}");
        }
    }

    #[test]
    fn tokens_expand_to_the_planted_address_in_each_encoding() {
        let built = build(3, b"$A $U $Q $B $x");
        let expected = format!(
            "{PLANTED} {} {} {} ",
            PLANTED.to_ascii_uppercase(),
            PLANTED
                .bytes()
                .map(|b| format!("={b:02X}"))
                .collect::<String>(),
            STANDARD.encode(PLANTED)
        );
        assert_eq!(String::from_utf8(built).unwrap(), expected);
        assert_eq!(
            STANDARD.decode(planted_as(b'B').unwrap()).unwrap(),
            PLANTED.as_bytes()
        );
        let repeated = build(2 << 2, b"a\r\n$x");
        assert!(repeated.ends_with(b"a\r\na\r\na\r\na\r\na\r\n"));
        assert_eq!(repeated.iter().filter(|&&b| b == b'\n').count(), 6);
    }
}
