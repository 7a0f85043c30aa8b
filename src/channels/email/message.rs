//! Turns the raw bytes of one inbound email into what is sealed: the sender
//! (for the pseudonym and replies), threading ids, the subject, the text and
//! the photo/PDF attachments. Every other header (Received, DKIM-Signature,
//! X-Originating-IP, User-Agent, Date, To, ...) is dropped here. The message
//! bytes and the envelope sender are untrusted network input: nothing in this
//! module panics on them, and no error carries any of their content.
//!
//! Rules, chosen to refuse rather than guess:
//!
//! - [`MessageError::Malformed`]: the header section is missing (the message
//!   is empty or starts with a blank line), is not UTF-8 (RFC 6532 allows
//!   UTF-8 there, nothing else 8-bit), holds a line that is neither a
//!   `name: value` field (RFC 5322 §2.2 field names: printable ASCII but the
//!   colon) nor a folded continuation, or holds a control character other
//!   than tab (NUL included); there is no From with a valid address and no
//!   envelope sender; a multipart part has no parts or no boundary (or one
//!   that never appears or is over 70 characters); a text body could not be decoded (bad
//!   base64, a multipart cut off before its closing boundary); or the text,
//!   once decoded, is not text: it holds U+FFFD (bytes invalid in the declared
//!   charset, such as 8-bit garbage labelled UTF-8) or a control character
//!   other than tab, CR, LF and form feed.
//! - [`MessageError::NestedMessage`]: a part is a message itself
//!   (message/rfc822, message/global, an untyped part of a multipart/digest),
//!   as mail-parser's header parser reads the Content-Type.
//! - [`MessageError::TooComplex`]: multiparts nest deeper than
//!   [`MAX_MIME_DEPTH`], or the message has more than 200 parts or 250,000
//!   lines (see `mime.rs`, which builds the structure within those bounds).
//! - [`MessageError::Empty`]: the text is blank (after redaction, when on) and
//!   no attachment was kept.
//! - [`MessageError::TooLong`]: the text, after HTML is reduced to text and
//!   before redaction, has more than `max_text_chars` characters.
//!
//! The text is every text/plain body part in order (mail-parser's text body
//! list, so a client that splits the text around a pasted photo loses
//! nothing), or the text/html body reduced to text when there is no plain one.
//!
//! Attachments, inline or not (a photo pasted into the body is still a photo):
//! image/jpeg (also the common misspellings image/jpg and image/pjpeg),
//! image/png and image/heic or image/heif are kept when the declared type
//! matches the magic bytes and [`metadata::strip`] succeeds; JPEG and PNG lose
//! their EXIF, GPS, XMP and comments, and HEIC is cleaned in place (see that
//! module). application/pdf is withheld: PDF metadata (author, producer,
//! creation tool, XMP) and embedded photos cannot be removed for certain
//! without a full PDF rewriter on hostile input. Everything else (archives,
//! executables, calendar invites, forwarded messages, audio, video, declared
//! types that do not match the bytes, parts past the count or size limits)
//! is dropped too. What is dropped is flagged in
//! [`ParsedMessage::attachments_refused`] and listed, with the reason, in
//! [`ParsedMessage::withheld`], which is sealed in the tip for the mediator.

use std::borrow::Cow;

use mail_parser::decoders::html::html_to_text;
use mail_parser::{Address, Message, MessagePart, MimeHeaders, PartType};

use super::mime::{self, StructureError};

use crate::domain::{Attachment, AttachmentKind, EmailAddress, Withheld, WithheldReason};
use crate::privacy::metadata::{self, ImageKind};
use crate::privacy::redaction;

pub use super::mime::MAX_MIME_DEPTH;
/// Longest display name used for redaction, in characters.
const MAX_NAME_CHARS: usize = 200;
/// Share of U+FFFD above which decoded text is taken for binary garbage.
const MAX_REPLACEMENT_SHARE: f64 = 0.05;
const MAX_SUBJECT_CHARS: usize = 200;
const MAX_ID_CHARS: usize = 250;
const MAX_REFERENCES: usize = 10;
const NO_TEXT: &str = "(attachment without text)";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageLimits {
    pub max_text_chars: usize,
    pub max_attachments: usize,
    pub max_attachment_bytes: usize,
    /// Remove the sender's address, From display name and trailing signature
    /// block from the text (and the address and name from the subject).
    pub redact: bool,
}

/// What is kept of one message. Its `Debug` shows only sizes and counts.
pub struct ParsedMessage {
    /// Where replies go and what the pseudonym is derived from: Reply-To if
    /// it holds a valid address, else From, else the envelope sender.
    pub sender: EmailAddress,
    /// The display name on the From line, if any (used for redaction; never
    /// sealed).
    pub sender_name: Option<String>,
    /// Message-ID of this message without angle brackets, if present and sane
    /// (at most 250 characters, no whitespace or control characters). Used
    /// only for reply threading; never put in the tip.
    pub message_id: Option<String>,
    /// The References chain (ids without angle brackets, sane as above, at
    /// most the last 10), for threading; In-Reply-To when References is
    /// absent.
    pub references: Vec<String>,
    /// Subject, decoded (RFC 2047), control characters removed, trimmed, at
    /// most 200 characters, redacted like the text when `redact` is on; `None`
    /// if absent or blank.
    pub subject: Option<String>,
    /// The text to seal, redacted when `limits.redact`. Never empty: a message
    /// with only attachments gets "(attachment without text)".
    pub text: String,
    /// Kept attachments, metadata stripped (see the module documentation).
    pub attachments: Vec<Attachment>,
    /// The message says it was sent automatically (RFC 3834 Auto-Submitted),
    /// such as an out-of-office answer to a mediator's reply.
    pub auto_submitted: bool,
    /// Some attachment was dropped (wrong type, too big, too many, failed to
    /// strip, or declared type does not match the bytes).
    pub attachments_refused: bool,
    /// What was dropped and why, for the mediator.
    pub withheld: Vec<Withheld>,
}

impl std::fmt::Debug for ParsedMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParsedMessage")
            .field("sender", &self.sender)
            .field("has_sender_name", &self.sender_name.is_some())
            .field("has_message_id", &self.message_id.is_some())
            .field("references", &self.references.len())
            .field(
                "subject_chars",
                &self.subject.as_ref().map(|s| s.chars().count()),
            )
            .field("text_chars", &self.text.chars().count())
            .field("attachments", &self.attachments)
            .field("attachments_refused", &self.attachments_refused)
            .finish()
    }
}

/// Why a message was refused. The variants carry no message content.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MessageError {
    #[error("the message is not a well-formed email")]
    Malformed,
    #[error("the message holds a nested message")]
    NestedMessage,
    #[error("the message has too many parts, lines, header bytes or levels of nesting")]
    TooComplex,
    #[error("the message has no text and no usable attachment")]
    Empty,
    #[error("the message text is too long")]
    TooLong,
}

/// Parses one received message. `raw` is the DATA payload (dot-unstuffed,
/// size-limited); `envelope_sender` the MAIL FROM address, if it was not the
/// null path.
///
/// # Errors
///
/// [`MessageError`]; the module documentation gives the rules.
pub fn parse(
    raw: &[u8],
    envelope_sender: Option<&EmailAddress>,
    limits: &MessageLimits,
) -> Result<ParsedMessage, MessageError> {
    check_header_section(raw)?;
    let message = mime::parse(raw).map_err(|e| match e {
        StructureError::NestedMessage => MessageError::NestedMessage,
        StructureError::TooDeep | StructureError::TooManyParts => MessageError::TooComplex,
        StructureError::NoHeaders | StructureError::BadMultipart => MessageError::Malformed,
    })?;
    check_structure(&message)?;

    let from = message.from();
    let from_address = from.and_then(first_valid_address);
    if from_address.is_none() && envelope_sender.is_none() {
        return Err(MessageError::Malformed);
    }
    let sender_name = from
        .and_then(Address::first)
        .and_then(|addr| addr.name.as_deref())
        .and_then(clean_name);
    let sender = message
        .reply_to()
        .and_then(first_valid_address)
        .or_else(|| from_address.clone())
        .or_else(|| envelope_sender.cloned())
        .ok_or(MessageError::Malformed)?;

    let text = body_text(&message)?;
    if text.chars().count() > limits.max_text_chars {
        return Err(MessageError::TooLong);
    }
    let (attachments, withheld) = collect_attachments(&message, limits)?;
    let attachments_refused = !withheld.is_empty();

    // Every address the sender showed: a signature or the subject may hold
    // any of them.
    let mut addresses: Vec<&EmailAddress> = vec![&sender];
    for candidate in [from_address.as_ref(), envelope_sender]
        .into_iter()
        .flatten()
    {
        if !addresses
            .iter()
            .any(|a| a.canonical() == candidate.canonical())
        {
            addresses.push(candidate);
        }
    }
    let name = sender_name.as_deref();

    let mut text = if limits.redact {
        redaction::redact(&text, &addresses, name)
    } else {
        text
    };
    let subject = message
        .subject()
        .and_then(|s| clean_subject(s, limits.redact.then_some((&addresses[..], name))));
    if text.trim().is_empty() {
        // A tip written in the subject line alone is still a tip.
        text = match (&subject, attachments.is_empty()) {
            (Some(subject), _) => subject.clone(),
            (None, false) => NO_TEXT.to_owned(),
            (None, true) => return Err(MessageError::Empty),
        };
    }
    // RFC 3834: out-of-office and other automatic answers say so.
    let auto_submitted = message
        .header_raw("Auto-Submitted")
        .is_some_and(|v| !v.trim().eq_ignore_ascii_case("no"));
    let message_id = message
        .message_id()
        .filter(|id| is_sane_id(id))
        .map(str::to_owned);
    // RFC 5256 §2.2: without References, In-Reply-To is the parent.
    let chain = message
        .references()
        .as_text_list()
        .filter(|ids| !ids.is_empty())
        .or_else(|| message.in_reply_to().as_text_list())
        .unwrap_or_default();
    let mut references: Vec<String> = chain
        .iter()
        .filter(|id| is_sane_id(id))
        .map(ToString::to_string)
        .collect();
    references.drain(..references.len().saturating_sub(MAX_REFERENCES));

    Ok(ParsedMessage {
        sender,
        sender_name,
        message_id,
        references,
        subject,
        text,
        attachments,
        attachments_refused,
        withheld,
        auto_submitted,
    })
}

/// Replaces the address (case-insensitive) with "[email address]", the
/// display name and each of its words of two or more letters (whole words,
/// case-insensitive, Unicode-aware) with "[name]", and drops a trailing
/// signature block: from the last line that is exactly "-- " or "--" to the
/// end, plus trailing mobile footers ("Sent from my iPhone", "Get Outlook for
/// Android", "Enviado desde mi iPhone", ...). Everything else is kept byte for
/// byte, except that trailing blank lines are trimmed.
#[must_use]
pub fn redact(text: &str, address: &EmailAddress, name: Option<&str>) -> String {
    redaction::redact(text, &[address], name)
}

// ---------------------------------------------------------------------------
// Structure

/// The checks mail-parser does not make: it accepts almost anything as a
/// header section, including 8-bit garbage and NUL bytes.
fn check_header_section(raw: &[u8]) -> Result<(), MessageError> {
    // The header section ends at the first empty line (RFC 5322 §2.1); a
    // message that is only headers has no empty line.
    let end = raw
        .windows(2)
        .position(|w| w == b"\n\n")
        .into_iter()
        .chain(raw.windows(3).position(|w| w == b"\n\r\n"))
        .min()
        .map_or(raw.len(), |pos| pos + 1);
    let block = raw.get(..end).ok_or(MessageError::Malformed)?;
    let block = std::str::from_utf8(block).map_err(|_| MessageError::Malformed)?;
    let mut lines = block.lines().peekable();
    if lines.peek().is_none_or(|first| first.is_empty()) {
        return Err(MessageError::Malformed);
    }
    for (index, line) in lines.enumerate() {
        // `lines` strips a CR only before LF; a bare CR is a control here.
        if line.chars().any(|c| c.is_control() && c != '\t') {
            return Err(MessageError::Malformed);
        }
        if line.starts_with([' ', '\t']) {
            if index == 0 {
                return Err(MessageError::Malformed);
            }
            continue;
        }
        let (name, _) = line.split_once(':').ok_or(MessageError::Malformed)?;
        if name.is_empty() || !name.bytes().all(|b| (33..=126).contains(&b)) {
            return Err(MessageError::Malformed);
        }
    }
    Ok(())
}

/// Walks the MIME tree from the root: every multipart has parts and stays
/// within [`MAX_MIME_DEPTH`] (the structure parser enforces both already;
/// this states what the rest of the module relies on).
fn check_structure(message: &Message<'_>) -> Result<(), MessageError> {
    let mut stack = vec![(0_u32, 0_usize)];
    while let Some((id, depth)) = stack.pop() {
        let part = part_by_id(message, id).ok_or(MessageError::Malformed)?;
        match &part.body {
            PartType::Multipart(children) => {
                if children.is_empty() || depth >= MAX_MIME_DEPTH {
                    return Err(MessageError::Malformed);
                }
                for &child in children {
                    // Children always come after their parent; insisting on it
                    // rules out cycles.
                    if child <= id {
                        return Err(MessageError::Malformed);
                    }
                    stack.push((child, depth + 1));
                }
            }
            // mail-parser turns a multipart whose boundary never appears into
            // a text part.
            _ if part
                .content_type()
                .is_some_and(|ct| ct.ctype().eq_ignore_ascii_case("multipart")) =>
            {
                return Err(MessageError::Malformed);
            }
            _ => {}
        }
    }
    Ok(())
}

fn part_by_id<'a>(message: &'a Message<'_>, id: u32) -> Option<&'a MessagePart<'a>> {
    message.parts.get(usize::try_from(id).ok()?)
}

// ---------------------------------------------------------------------------
// Headers

fn first_valid_address(address: &Address<'_>) -> Option<EmailAddress> {
    address
        .iter()
        .filter_map(|addr| addr.address.as_deref())
        .find_map(|a| EmailAddress::parse(a).ok())
}

fn clean_name(name: &str) -> Option<String> {
    let name: String = name
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME_CHARS)
        .collect();
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

fn clean_subject(
    subject: &str,
    redaction: Option<(&[&EmailAddress], Option<&str>)>,
) -> Option<String> {
    // Cut first: redaction costs time in proportion to the text.
    let cleaned: String = subject
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_SUBJECT_CHARS)
        .collect();
    let cleaned = match redaction {
        Some((addresses, name)) => redaction::replace_identity(cleaned.trim(), addresses, name),
        None => cleaned.trim().to_owned(),
    };
    let cut: String = cleaned.chars().take(MAX_SUBJECT_CHARS).collect();
    let cut = cut.trim_end();
    (!cut.is_empty()).then(|| cut.to_owned())
}

/// A Message-ID or References entry that is safe to keep and echo back in a
/// reply's In-Reply-To.
fn is_sane_id(id: &str) -> bool {
    !id.is_empty()
        && id.chars().count() <= MAX_ID_CHARS
        && !id
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
}

// ---------------------------------------------------------------------------
// Text

fn body_text(message: &Message<'_>) -> Result<String, MessageError> {
    let mut text = String::new();
    for &id in &message.text_body {
        let Some(part) = part_by_id(message, id) else {
            continue;
        };
        let piece: Cow<'_, str> = match &part.body {
            PartType::Text(t) => Cow::Borrowed(t.as_ref()),
            PartType::Html(html) => Cow::Owned(html_to_text(html)),
            // Images pasted between text parts sit in the same list; they are
            // handled as attachments.
            _ => continue,
        };
        if part.is_encoding_problem || !is_text(&piece) {
            return Err(MessageError::Malformed);
        }
        if !text.is_empty() && !text.ends_with('\n') && !piece.is_empty() {
            text.push('\n');
        }
        text.push_str(&piece);
    }
    Ok(text)
}

/// Text, not binary: no control characters but tab, CR, LF and form feed, and
/// few U+FFFD (bytes invalid in the declared charset). A stray "�" in a
/// forwarded text is fine; a body that is mostly "�" is 8-bit garbage.
fn is_text(s: &str) -> bool {
    let mut total = 0_usize;
    let mut replaced = 0_usize;
    for c in s.chars() {
        if c.is_control() && !matches!(c, '\t' | '\n' | '\r' | '\u{0C}') {
            return false;
        }
        total += 1;
        replaced += usize::from(c == char::REPLACEMENT_CHARACTER);
    }
    #[allow(clippy::cast_precision_loss, reason = "a ratio of counts")]
    let share = replaced as f64 / total.max(1) as f64;
    share <= MAX_REPLACEMENT_SHARE
}

// ---------------------------------------------------------------------------
// Attachments

fn collect_attachments(
    message: &Message<'_>,
    limits: &MessageLimits,
) -> Result<(Vec<Attachment>, Vec<Withheld>), MessageError> {
    let mut kept = Vec::new();
    let mut withheld = Vec::new();
    for part in message.attachments() {
        let declared = declared_type(part);
        let as_attachment = part
            .content_disposition()
            .is_some_and(mail_parser::ContentType::is_attachment);
        if matches!(part.body, PartType::Text(_) | PartType::Html(_))
            && matches!(declared.as_str(), "text/plain" | "text/html")
            && !as_attachment
        {
            // An alternative the text was not taken from, or the last part of
            // a multipart that never closed.
            if part.is_encoding_problem {
                return Err(MessageError::Malformed);
            }
            continue;
        }
        match accept_attachment(part, &declared, limits, kept.len()) {
            Ok(attachment) => kept.push(attachment),
            Err(w) => withheld.push(w),
        }
    }
    Ok((kept, withheld))
}

/// The attachment to seal, or what to tell the mediator about it.
fn accept_attachment(
    part: &MessagePart<'_>,
    declared: &str,
    limits: &MessageLimits,
    already_kept: usize,
) -> Result<Attachment, Withheld> {
    let kind = metadata::attachment_kind(declared);
    let withheld = |reason| Withheld { kind, reason };
    let bytes = match &part.body {
        PartType::Binary(b) | PartType::InlineBinary(b) if !part.is_encoding_problem => b,
        _ => return Err(withheld(WithheldReason::NotAccepted)),
    };
    if bytes.len() > limits.max_attachment_bytes || already_kept >= limits.max_attachments {
        return Err(withheld(WithheldReason::OverLimit));
    }
    // A PDF carries its author, the software that made it and often XMP, and
    // can embed photos with their EXIF, files and scripts. Cleaning one for
    // certain means rewriting it with a full PDF parser on hostile input, so
    // PDFs are withheld and the mediator is told.
    if kind == AttachmentKind::Pdf {
        return Err(withheld(WithheldReason::CannotClean));
    }
    let image = image_kind(declared).ok_or(withheld(WithheldReason::NotAccepted))?;
    if metadata::sniff(bytes) != Some(image) {
        return Err(withheld(WithheldReason::NotAccepted));
    }
    let data = metadata::strip(image, bytes).map_err(|_| withheld(WithheldReason::CannotClean))?;
    Ok(Attachment {
        content_type: image.content_type().to_owned(),
        data,
    })
}

/// `type/subtype`, lowercased, without parameters. RFC 2045 §5.2: a part
/// without Content-Type is text/plain.
fn declared_type(part: &MessagePart<'_>) -> String {
    part.content_type().map_or_else(
        || "text/plain".to_owned(),
        |ct| format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or_default()).to_ascii_lowercase(),
    )
}

fn image_kind(declared: &str) -> Option<ImageKind> {
    match declared {
        // Not registered types, but some mail clients send them for JPEGs.
        "image/jpg" | "image/pjpeg" => Some(ImageKind::Jpeg),
        other => ImageKind::from_content_type(other),
    }
}

#[cfg(test)]
mod tests;
