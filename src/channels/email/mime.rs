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
mod tests;
