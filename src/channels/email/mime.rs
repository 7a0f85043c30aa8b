//! The MIME structure of one inbound message, built with bounds the stock
//! parser does not have. The message bytes are untrusted network input.
//!
//! mail-parser 0.11's `MessageParser::parse` turns every `message/rfc822` or
//! `message/global` part (and every untyped part of a `multipart/digest`) into
//! a `Message` nested inside the part: a 1.3 MB message of nested
//! declarations builds a chain 100,000 deep, and freeing it (or, for an
//! encoded one, copying it with `into_owned`) recurses once per level until
//! the thread's stack overflows and the process aborts. Which parts it nests
//! is decided by its own header parser, so no reading of the raw text can
//! tell them apart: quoted or commented types, folded values and indented
//! header blocks all count.
//!
//! So the structure is walked here instead, with the same stream primitives,
//! header parser and body decoders mail-parser uses (and the same rules for
//! which parts make the text and which are attachments), but:
//!
//! - a part that mail-parser would nest as a message is refused
//!   ([`StructureError::NestedMessage`]) the moment its parsed Content-Type
//!   says so; nothing is ever nested, so the result is flat (parts point to
//!   parts by index) and is freed without recursion;
//! - multiparts nest at most [`MAX_MIME_DEPTH`] deep, counted on the stack of
//!   open multiparts;
//! - at most [`MAX_PARTS`] parts are built, and the message has at most
//!   [`MAX_LINES`] lines (every header field takes at least one line, so this
//!   bounds the header structures mail-parser allocates, about 130 bytes
//!   each);
//! - a boundary is at most 70 characters (RFC 2046 §5.1.1), so looking for it
//!   costs at most 70 comparisons per byte, and a multipart whose boundary
//!   never appears is refused at once rather than scanned for again by each
//!   part.
//!
//! The walk itself keeps its state on a heap stack bounded by the depth
//! limit: it does not recurse.

use std::borrow::Cow;

use mail_parser::decoders::DecodeFnc;
use mail_parser::decoders::charsets::map::charset_decoder;
use mail_parser::parsers::MessageStream;
use mail_parser::{
    ContentType, Encoding, GetHeader, HeaderName, HeaderValue, Message, MessageParser, MessagePart,
    PartType,
};

/// Deepest MIME nesting accepted: the root is level 0, and a part inside
/// eight nested multiparts is level 8. Real clients stay under 5.
pub const MAX_MIME_DEPTH: usize = 8;
/// Parts per message, multiparts included. Real messages hold a few dozen.
pub const MAX_PARTS: usize = 200;
/// Lines per message: a 10 MB message of base64 attachments has about
/// 135,000.
pub const MAX_LINES: usize = 250_000;
/// Header bytes per message, all its parts' header sections together. One
/// header field can hold any number of addresses, message ids, keywords or
/// parameters, and mail-parser builds a structure of 24 to 48 bytes for each
/// (a 10 MB References field of `<a>` took 250 MB); so the bytes its header
/// parser sees are bounded, not only the fields. Real mail has a few dozen
/// KiB of headers (Received, DKIM and ARC chains included).
pub const MAX_HEADER_BYTES: usize = 1 << 20;
/// RFC 2046 §5.1.1: a boundary is 1 to 70 characters.
const MAX_BOUNDARY_LEN: usize = 70;

/// Why the structure was refused. Carries nothing from the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StructureError {
    #[error("the message has no header section")]
    NoHeaders,
    #[error("the message holds a nested message")]
    NestedMessage,
    #[error("multiparts nest too deep")]
    TooDeep,
    #[error("the message has too many parts, lines or header bytes")]
    TooManyParts,
    #[error("a multipart has no usable boundary")]
    BadMultipart,
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Kind {
    /// The root message (its parts are typed text/plain when untyped).
    Root,
    MultipartMixed,
    MultipartAlternative,
    MultipartRelated,
    MultipartOther,
    TextPlain,
    TextHtml,
    TextOther,
    Inline,
    Other,
}

/// How a part is read: (multipart, inline, text, kind). Mirrors
/// mail-parser's own classification, except that what it would nest as a
/// message is an error.
fn classify(
    content_type: Option<&ContentType<'_>>,
    digest_parent: bool,
) -> Result<(bool, bool, bool, Kind), StructureError> {
    let Some(content_type) = content_type else {
        // RFC 2046 §5.1.5: a digest's untyped parts are messages.
        return if digest_parent {
            Err(StructureError::NestedMessage)
        } else {
            Ok((false, true, true, Kind::TextPlain))
        };
    };
    let subtype = content_type.subtype();
    Ok(match content_type.ctype() {
        "multipart" => (
            true,
            false,
            false,
            match subtype {
                Some("mixed") => Kind::MultipartMixed,
                Some("alternative") => Kind::MultipartAlternative,
                Some("related") => Kind::MultipartRelated,
                _ => Kind::MultipartOther,
            },
        ),
        "text" => match subtype {
            Some("plain") => (false, true, true, Kind::TextPlain),
            Some("html") => (false, true, true, Kind::TextHtml),
            _ => (false, false, true, Kind::TextOther),
        },
        "image" | "audio" | "video" => (false, true, false, Kind::Inline),
        "message" if matches!(subtype, Some("rfc822" | "global")) => {
            return Err(StructureError::NestedMessage);
        }
        _ => (false, false, false, Kind::Other),
    })
}

/// One open container: the root message or a multipart.
struct Frame {
    kind: Kind,
    digest: bool,
    boundary: Option<Vec<u8>>,
    in_alternative: bool,
    parts: usize,
    html_parts: usize,
    text_parts: usize,
    need_html_body: bool,
    need_text_body: bool,
    part_id: u32,
    sub_part_ids: Vec<u32>,
    offset_header: usize,
    offset_body: usize,
}

impl Frame {
    fn root() -> Self {
        Self {
            kind: Kind::Root,
            digest: false,
            boundary: None,
            in_alternative: false,
            parts: 0,
            html_parts: 0,
            text_parts: 0,
            need_html_body: true,
            need_text_body: true,
            part_id: 0,
            sub_part_ids: Vec::new(),
            offset_header: 0,
            offset_body: 0,
        }
    }
}

/// Parses one header section with mail-parser's header parser, on a stream
/// cut off where the message's header budget ends: the parser never sees
/// more header bytes than are left. A section that does not end within them
/// is refused; one cut off by the end of the message is what it is.
fn parse_headers_within<'x>(
    raw: &'x [u8],
    stream: &mut MessageStream<'x>,
    conf: &MessageParser,
    headers: &mut Vec<mail_parser::Header<'x>>,
    budget: &mut usize,
) -> Result<bool, StructureError> {
    let start = stream.offset();
    let end = start.saturating_add(*budget).min(raw.len());
    let mut section = MessageStream::new(raw.get(start..end).unwrap_or_default());
    let before = headers.len();
    let ended = section.parse_headers(conf, headers);
    if !ended && end < raw.len() {
        return Err(StructureError::TooManyParts);
    }
    let used = section.offset();
    *budget = budget.saturating_sub(used);
    // Offsets count from the start of the message, as mail-parser's own
    // (`header_raw` reads the raw message by them).
    let shift = offset(start);
    for header in headers.iter_mut().skip(before) {
        header.offset_field = header.offset_field.saturating_add(shift);
        header.offset_start = header.offset_start.saturating_add(shift);
        header.offset_end = header.offset_end.saturating_add(shift);
    }
    stream.skip_bytes(used);
    Ok(ended)
}

fn id(index: usize) -> Result<u32, StructureError> {
    u32::try_from(index).map_err(|_| StructureError::TooManyParts)
}

fn offset(index: usize) -> u32 {
    u32::try_from(index).unwrap_or(u32::MAX)
}

/// Parses `raw` into a flat `Message`: the same parts, text and HTML body
/// lists and attachments mail-parser would give for a message without nested
/// messages, within the bounds in the module documentation.
///
/// # Errors
///
/// [`StructureError`] when a bound is crossed, the message nests a message,
/// or there is no header section.
#[allow(
    clippy::too_many_lines,
    reason = "one state machine, kept in the order of mail-parser's own so the two can be compared"
)]
pub fn parse(raw: &[u8]) -> Result<Message<'_>, StructureError> {
    if raw.iter().filter(|&&b| b == b'\n').count() > MAX_LINES {
        return Err(StructureError::TooManyParts);
    }
    let conf = MessageParser::default();
    let mut stream = MessageStream::new(raw);
    let mut message = Message {
        raw_message: Cow::Borrowed(raw),
        ..Message::default()
    };
    let mut frame = Frame::root();
    let mut stack: Vec<Frame> = Vec::with_capacity(MAX_MIME_DEPTH);
    let mut headers = Vec::new();
    let mut header_budget = MAX_HEADER_BYTES;

    'outer: loop {
        frame.offset_header = stream.offset();
        if !parse_headers_within(raw, &mut stream, &conf, &mut headers, &mut header_budget)? {
            break;
        }
        frame.offset_body = stream.offset();
        if message.parts.len() >= MAX_PARTS {
            return Err(StructureError::TooManyParts);
        }
        frame.parts += 1;
        frame.sub_part_ids.push(id(message.parts.len())?);

        let content_type = headers
            .header_value(&HeaderName::ContentType)
            .and_then(HeaderValue::as_content_type);
        let (is_multipart, mut is_inline, mut is_text, mut kind) =
            classify(content_type, frame.digest)?;

        if is_multipart {
            let boundary = content_type
                .and_then(|ct| ct.attribute("boundary"))
                .filter(|b| !b.is_empty() && b.len() <= MAX_BOUNDARY_LEN)
                .ok_or(StructureError::BadMultipart)?;
            if !stream.seek_next_part(boundary.as_bytes()) {
                return Err(StructureError::BadMultipart);
            }
            if stack.len() >= MAX_MIME_DEPTH {
                return Err(StructureError::TooDeep);
            }
            let part_id = id(message.parts.len())?;
            let next = Frame {
                in_alternative: frame.in_alternative || kind == Kind::MultipartAlternative,
                kind,
                digest: content_type.and_then(ContentType::subtype) == Some("digest"),
                boundary: Some(boundary.as_bytes().to_vec()),
                html_parts: message.html_body.len(),
                text_parts: message.text_body.len(),
                need_html_body: frame.need_html_body,
                need_text_body: frame.need_text_body,
                part_id,
                parts: 0,
                sub_part_ids: Vec::new(),
                offset_header: 0,
                offset_body: 0,
            };
            message.parts.push(MessagePart {
                headers: std::mem::take(&mut headers),
                offset_header: offset(frame.offset_header),
                offset_body: offset(frame.offset_body),
                offset_end: 0,
                is_encoding_problem: false,
                encoding: Encoding::None,
                body: PartType::default(),
            });
            stack.push(std::mem::replace(&mut frame, next));
            stream.skip_crlf();
            continue;
        }

        let (mut encoding, decode): (Encoding, DecodeFnc<'_>) =
            match headers.header_value(&HeaderName::ContentTransferEncoding) {
                Some(HeaderValue::Text(e)) if e.eq_ignore_ascii_case("base64") => {
                    (Encoding::Base64, MessageStream::decode_base64_mime)
                }
                Some(HeaderValue::Text(e)) if e.eq_ignore_ascii_case("quoted-printable") => (
                    Encoding::QuotedPrintable,
                    MessageStream::decode_quoted_printable_mime,
                ),
                _ => (Encoding::None, MessageStream::mime_part),
            };
        let (end, mut bytes) = decode(&mut stream, frame.boundary.as_deref().unwrap_or(b""));

        // What mail-parser does with a part whose boundary or encoding is
        // broken: keep its raw bytes as text, flagged.
        let is_encoding_problem = end == usize::MAX;
        let offset_end = if is_encoding_problem {
            encoding = Encoding::None;
            if kind != Kind::TextPlain {
                kind = Kind::TextOther;
            }
            is_inline = false;
            is_text = true;
            let (end, boundary_found) = stream.seek_part_end(frame.boundary.as_deref());
            bytes = Cow::Borrowed(raw.get(frame.offset_body..end).unwrap_or_default());
            if !boundary_found {
                frame.boundary = None;
            }
            end
        } else {
            end
        };

        let is_inline = is_inline
            && headers
                .header_value(&HeaderName::ContentDisposition)
                .is_none_or(|d| !d.as_content_type().is_some_and(ContentType::is_attachment))
            && (frame.parts == 1
                || frame.kind != Kind::MultipartRelated
                    && (kind == Kind::Inline
                        || content_type.is_none_or(|c| !c.has_attribute("name"))));
        // A message of one text/plain part is text whatever its encoding.
        let is_inline = is_inline
            || frame.parts == 1
                && frame.kind == Kind::Root
                && kind == Kind::TextPlain
                && is_encoding_problem;

        let (add_to_html, add_to_text) = if frame.kind == Kind::MultipartAlternative {
            match kind {
                Kind::TextHtml => (true, false),
                Kind::TextPlain => (false, true),
                _ => (false, false),
            }
        } else if is_inline {
            if frame.in_alternative && (frame.need_text_body || frame.need_html_body) {
                match kind {
                    Kind::TextHtml => frame.need_text_body = false,
                    Kind::TextPlain => frame.need_html_body = false,
                    _ => {}
                }
            }
            (frame.need_html_body, frame.need_text_body)
        } else {
            (false, false)
        };
        let this = id(message.parts.len())?;
        if add_to_html {
            message.html_body.push(this);
        }
        if add_to_text {
            message.text_body.push(this);
        }
        let body = if is_text {
            let charset = content_type
                .and_then(|ct| ct.attribute("charset"))
                .and_then(|c| charset_decoder(c.as_bytes()));
            let text: Cow<'_, str> = match (bytes, charset) {
                (Cow::Owned(vec), Some(decoder)) => decoder(&vec).into(),
                (Cow::Owned(vec), None) => String::from_utf8(vec)
                    .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
                    .into(),
                (Cow::Borrowed(bytes), Some(decoder)) => decoder(bytes).into(),
                (Cow::Borrowed(bytes), None) => String::from_utf8_lossy(bytes),
            };
            let is_html = kind == Kind::TextHtml;
            if !add_to_html && is_html || !add_to_text && !is_html {
                message.attachments.push(this);
            }
            if is_html {
                PartType::Html(text)
            } else {
                PartType::Text(text)
            }
        } else {
            message.attachments.push(this);
            if is_inline {
                PartType::InlineBinary(bytes)
            } else {
                PartType::Binary(bytes)
            }
        };
        message.parts.push(MessagePart {
            headers: std::mem::take(&mut headers),
            encoding,
            is_encoding_problem,
            body,
            offset_header: offset(frame.offset_header),
            offset_body: offset(frame.offset_body),
            offset_end: offset(offset_end),
        });

        if frame.boundary.is_none() {
            if stream.offset() >= stream.len() {
                break 'outer;
            }
            continue;
        }
        // Inside a multipart: either the next part's headers follow, or this
        // multipart (and perhaps its ancestors) closes here.
        loop {
            if !stream.is_multipart_end() {
                continue 'outer;
            }
            if frame.kind == Kind::MultipartAlternative
                && frame.need_html_body
                && frame.need_text_body
            {
                // Only HTML found: it is the text body too, and vice versa.
                let html_new = message
                    .html_body
                    .get(frame.html_parts..)
                    .unwrap_or_default();
                let text_new = message
                    .text_body
                    .get(frame.text_parts..)
                    .unwrap_or_default();
                if text_new.is_empty() && !html_new.is_empty() {
                    let copy = html_new.to_vec();
                    message.text_body.extend(copy);
                } else if html_new.is_empty() && !text_new.is_empty() {
                    let copy = text_new.to_vec();
                    message.html_body.extend(copy);
                }
            }
            let sub_parts = std::mem::take(&mut frame.sub_part_ids);
            let part = message
                .parts
                .get_mut(usize::try_from(frame.part_id).unwrap_or(usize::MAX))
                .ok_or(StructureError::BadMultipart)?;
            part.body = PartType::Multipart(sub_parts);
            let Some(parent) = stack.pop() else {
                part.offset_end = offset(stream.offset());
                break 'outer;
            };
            frame = parent;
            match frame.boundary.as_deref() {
                Some(boundary) => match stream.seek_next_part_offset(boundary) {
                    Some(end) => part.offset_end = offset(end),
                    None => {
                        part.offset_end = offset(stream.offset());
                        break 'outer;
                    }
                },
                None => {
                    part.offset_end = offset(stream.offset());
                    break 'outer;
                }
            }
        }
    }

    // Multiparts left open at the end of the input (cut off before their
    // closing boundary) keep what they have; the caller decides whether
    // that is acceptable.
    while let Some(parent) = stack.pop() {
        let sub_parts = std::mem::take(&mut frame.sub_part_ids);
        if let Some(part) = message
            .parts
            .get_mut(usize::try_from(frame.part_id).unwrap_or(usize::MAX))
        {
            part.offset_end = offset(stream.offset());
            part.body = PartType::Multipart(sub_parts);
        }
        frame = parent;
    }

    if let Some(first) = message.parts.first_mut() {
        first.offset_end = offset(raw.len());
        Ok(message)
    } else if !headers.is_empty() {
        // Headers and no body.
        message.parts.push(MessagePart {
            headers,
            encoding: Encoding::None,
            is_encoding_problem: true,
            body: PartType::Text("".into()),
            offset_header: 0,
            offset_body: offset(raw.len()),
            offset_end: offset(raw.len()),
        });
        Ok(message)
    } else {
        Err(StructureError::NoHeaders)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/email.md states the memory the line bound allows for header
    /// structures; this keeps the statement true if mail-parser grows them.
    /// A header section of `n` bytes whose one field holds ~n/3 message ids.
    fn references_bomb(n: usize) -> Vec<u8> {
        let mut m = b"From: a@example.org\r\nReferences: <a>".to_vec();
        while m.len() < n {
            m.extend_from_slice(b"\r\n <a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a>");
        }
        m.extend_from_slice(b"\r\n\r\nhello\r\n");
        m
    }

    #[test]
    fn a_header_section_past_the_header_budget_is_refused() {
        // 2 MB of ids in one field: mail-parser alone builds ~700,000 of
        // them (50 MB); here it sees only the first MiB and stops.
        assert_eq!(
            parse(&references_bomb(2 * MAX_HEADER_BYTES)).err(),
            Some(StructureError::TooManyParts)
        );
        // Just under the budget is a message.
        assert!(parse(&references_bomb(MAX_HEADER_BYTES - 100)).is_ok());
    }

    #[test]
    fn the_header_budget_counts_every_parts_headers() {
        let padding = format!("X-Pad: {}\r\n", "p".repeat(7_000)).repeat(1);
        let mut m = String::from(
            "From: a@example.org\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n",
        );
        for _ in 0..(MAX_HEADER_BYTES / 7_000 + 10).min(MAX_PARTS - 2) {
            m.push_str(&format!("--b\r\n{padding}\r\nx\r\n"));
        }
        m.push_str("--b--\r\n");
        assert_eq!(
            parse(m.as_bytes()).err(),
            Some(StructureError::TooManyParts)
        );
    }

    #[test]
    fn header_offsets_count_from_the_start_of_the_message() {
        let raw = b"From: a@example.org\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nX-Inner: inner value\r\n\r\nx\r\n--b--\r\n";
        let message = parse(raw).unwrap();
        assert_eq!(
            message.header_raw("From").map(str::trim),
            Some("a@example.org")
        );
        let inner = message.parts.get(1).unwrap();
        let header = inner.headers.first().unwrap();
        let at = usize::try_from(header.offset_start).unwrap()
            ..usize::try_from(header.offset_end).unwrap();
        assert_eq!(std::str::from_utf8(&raw[at]).unwrap().trim(), "inner value");
    }

    #[test]
    fn a_soft_line_break_right_before_a_boundary_does_not_panic() {
        // mail-parser's QP decoder computes `1 - 3` here (Cargo.toml keeps
        // it wrapping in debug builds, as in release).
        let raw = b"From: a@example.org\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=\r\n--b--\r\n";
        let message = parse(raw).unwrap();
        assert_eq!(message.parts.len(), 2);
    }

    #[test]
    fn the_line_bound_keeps_header_structures_under_40_mb() {
        let per_field = std::mem::size_of::<mail_parser::Header<'_>>();
        assert!(
            per_field * MAX_LINES <= 40_000_000,
            "{per_field} bytes a field"
        );
    }

    /// Generated MIME trees: multiparts nested past the depth limit, types
    /// mail-parser would nest as messages (plain, quoted, commented, in a
    /// digest), boundaries that are prefixes of one another, LF and CRLF,
    /// transport padding, unclosed multiparts and broken encodings.
    mod generated {
        use super::*;
        use mail_parser::MimeHeaders;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Node {
            Leaf {
                ctype: &'static str,
                encoding: &'static str,
                body: Vec<u8>,
            },
            Multipart {
                subtype: &'static str,
                boundary: &'static str,
                padding: &'static str,
                close: bool,
                children: Vec<Node>,
            },
        }

        const LEAF_TYPES: &[&str] = &[
            "",
            "text/plain",
            "text/html",
            "image/png; name=a.png",
            "application/pdf",
            "message/rfc822",
            "\"message/rfc822\"",
            "(x)message/rfc822",
            "message/global",
            "message/partial",
            "multipart/mixed",
        ];
        const ENCODINGS: &[&str] = &["", "base64", "quoted-printable", "8bit"];
        const SUBTYPES: &[&str] = &["mixed", "alternative", "related", "digest", "x"];
        // Each a prefix of the next, and "" (no boundary at all).
        const BOUNDARIES: &[&str] = &["b", "b1", "b1-", "b1--", ""];
        const PADDING: &[&str] = &["", " ", "\t \t"];

        fn node() -> impl Strategy<Value = Node> {
            let leaf = (
                prop::sample::select(LEAF_TYPES),
                prop::sample::select(ENCODINGS),
                prop::collection::vec(
                    prop::sample::select(b"aZ=+/\r\n-.\xc3\xff b1".to_vec()),
                    0..40,
                ),
            )
                .prop_map(|(ctype, encoding, body)| Node::Leaf {
                    ctype,
                    encoding,
                    body,
                });
            leaf.prop_recursive(12, 64, 4, |inner| {
                (
                    prop::sample::select(SUBTYPES),
                    prop::sample::select(BOUNDARIES),
                    prop::sample::select(PADDING),
                    any::<bool>(),
                    prop::collection::vec(inner, 0..4),
                )
                    .prop_map(|(subtype, boundary, padding, close, children)| {
                        Node::Multipart {
                            subtype,
                            boundary,
                            padding,
                            close,
                            children,
                        }
                    })
            })
        }

        fn write(node: &Node, eol: &str, out: &mut Vec<u8>) {
            match node {
                Node::Leaf {
                    ctype,
                    encoding,
                    body,
                } => {
                    if !ctype.is_empty() {
                        out.extend_from_slice(format!("Content-Type: {ctype}{eol}").as_bytes());
                    }
                    if !encoding.is_empty() {
                        out.extend_from_slice(
                            format!("Content-Transfer-Encoding: {encoding}{eol}").as_bytes(),
                        );
                    }
                    out.extend_from_slice(eol.as_bytes());
                    out.extend_from_slice(body);
                    out.extend_from_slice(eol.as_bytes());
                }
                Node::Multipart {
                    subtype,
                    boundary,
                    padding,
                    close,
                    children,
                } => {
                    out.extend_from_slice(
                        format!(
                            "Content-Type: multipart/{subtype}; boundary=\"{boundary}\"{eol}{eol}preamble{eol}"
                        )
                        .as_bytes(),
                    );
                    for child in children {
                        out.extend_from_slice(format!("--{boundary}{padding}{eol}").as_bytes());
                        write(child, eol, out);
                    }
                    if *close {
                        out.extend_from_slice(format!("--{boundary}--{padding}{eol}").as_bytes());
                    }
                }
            }
        }

        fn message(root: &Node, crlf: bool) -> Vec<u8> {
            let eol = if crlf { "\r\n" } else { "\n" };
            let mut out = format!("From: a@example.org{eol}Subject: s{eol}").into_bytes();
            write(root, eol, &mut out);
            out
        }

        /// What the rest of the channel relies on, for any result.
        fn check(raw: &[u8]) {
            let Ok(message) = parse(raw) else {
                return;
            };
            assert!(message.parts.len() <= MAX_PARTS);
            let mut body_bytes = 0;
            let mut depth = vec![0_usize; message.parts.len()];
            for (index, part) in message.parts.iter().enumerate() {
                let here = depth.get(index).copied().unwrap();
                assert!(here <= MAX_MIME_DEPTH, "depth {here}");
                match &part.body {
                    PartType::Message(_) => panic!("a nested message was built"),
                    PartType::Multipart(children) => {
                        for &child in children {
                            let child = usize::try_from(child).unwrap();
                            assert!(child > index && child < message.parts.len());
                            depth[child] = here + 1;
                        }
                    }
                    PartType::Text(t) | PartType::Html(t) => body_bytes += t.len(),
                    PartType::Binary(b) | PartType::InlineBinary(b) => body_bytes += b.len(),
                }
                if let Some(ct) = part.content_type() {
                    assert!(
                        !(ct.ctype().eq_ignore_ascii_case("message")
                            && ct.subtype().is_some_and(|s| {
                                s.eq_ignore_ascii_case("rfc822") || s.eq_ignore_ascii_case("global")
                            })),
                        "a message part was let through"
                    );
                }
                for list in [&message.text_body, &message.html_body, &message.attachments] {
                    assert!(list.iter().all(|&i| (i as usize) < message.parts.len()));
                }
            }
            // Decoding never grows a body past three bytes a raw byte (an
            // invalid byte becomes U+FFFD).
            assert!(
                body_bytes <= 3 * raw.len(),
                "{body_bytes} from {}",
                raw.len()
            );
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn any_generated_tree_parses_flat_and_bounded(root in node(), crlf in any::<bool>()) {
                check(&message(&root, crlf));
            }

            #[test]
            fn any_bytes_after_a_multipart_header_parse_flat_and_bounded(
                body in prop::collection::vec(
                    prop::sample::select(b"--b\r\n \tContent-Type: message/rfc822;boundary=b1\"()=?".to_vec()),
                    0..600,
                )
            ) {
                let mut raw = b"From: a@example.org\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n".to_vec();
                raw.extend_from_slice(&body);
                check(&raw);
            }
        }
    }
}
