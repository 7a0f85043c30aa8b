//! Redaction of a tipster's own identity from the text they send (email
//! today): their address, the name they go by and a trailing signature block
//! or mobile footer. The text is untrusted; the work is bounded (at most
//! [`MAX_NAME_WORDS`] name words) so a hostile From line cannot make it slow.

use crate::domain::EmailAddress;

/// Enough for any real display name; bounds the redaction work a hostile
/// From line can cause.
pub const MAX_NAME_WORDS: usize = 32;
const ADDRESS_PLACEHOLDER: &str = "[email address]";
const NAME_PLACEHOLDER: &str = "[name]";

/// Replaces each address (case-insensitive) with "[email address]", the
/// display name and each of its words of two or more letters (whole words,
/// case-insensitive, Unicode-aware) with "[name]", and drops a trailing
/// signature block: from the last line that is exactly "-- " or "--" to the
/// end, plus trailing mobile footers ("Sent from my iPhone", "Get Outlook for
/// Android", "Enviado desde mi iPhone", ...). Everything else is kept byte for
/// byte, except that trailing blank lines are trimmed.
#[must_use]
pub fn redact(text: &str, addresses: &[&EmailAddress], name: Option<&str>) -> String {
    replace_identity(drop_signature(text), addresses, name)
}

/// Mobile and webmail footers, matched on a whole trailing line, lowercased,
/// without a final full stop.
const FOOTERS: [&str; 11] = [
    "get outlook for ios",
    "get outlook for android",
    "obtener outlook para ios",
    "obtener outlook para android",
    "sent from outlook",
    "sent from mail for windows",
    "sent from yahoo mail",
    "sent from proton mail",
    "sent with proton mail secure email",
    "enviado desde outlook",
    "enviado desde yahoo mail",
];
/// "Sent from my <device> ...": the device word must be one of these, so a
/// tip that ends "Sent from my window I saw..." keeps its last line.
const DEVICE_PREFIXES: [&str; 2] = ["sent from my ", "enviado desde mi "];
const DEVICES: [&str; 30] = [
    "iphone",
    "ipad",
    "android",
    "samsung",
    "galaxy",
    "huawei",
    "honor",
    "pixel",
    "xiaomi",
    "redmi",
    "motorola",
    "moto",
    "oneplus",
    "oppo",
    "nokia",
    "lg",
    "sony",
    "htc",
    "blackberry",
    "verizon",
    "t-mobile",
    "mobile",
    "phone",
    "smartphone",
    "tablet",
    "móvil",
    "movil",
    "teléfono",
    "telefono",
    "celular",
];
/// Longer lines are text, whatever they start with.
const MAX_FOOTER_CHARS: usize = 60;

/// Drops the signature block and trailing footers, then trailing blank lines.
fn drop_signature(text: &str) -> &str {
    let mut offset = 0;
    let mut signature_start = None;
    for line in text.split_inclusive('\n') {
        let content = line.strip_suffix('\n').unwrap_or(line);
        let content = content.strip_suffix('\r').unwrap_or(content);
        if content == "-- " || content == "--" {
            signature_start = Some(offset);
        }
        offset += line.len();
    }
    let mut kept = signature_start
        .and_then(|start| text.get(..start))
        .unwrap_or(text);
    loop {
        kept = trim_trailing_blank_lines(kept);
        let body = kept.trim_end_matches(['\r', '\n']);
        let start = body.rfind('\n').map_or(0, |pos| pos + 1);
        match body.get(start..) {
            Some(last) if is_footer(last) => kept = kept.get(..start).unwrap_or_default(),
            _ => return kept,
        }
    }
}

fn trim_trailing_blank_lines(text: &str) -> &str {
    let mut end = 0;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        offset += line.len();
        if !line.trim().is_empty() {
            end = offset;
        }
    }
    text.get(..end).unwrap_or(text)
}

fn is_footer(line: &str) -> bool {
    let line = line.trim();
    if line.is_empty() || line.chars().count() > MAX_FOOTER_CHARS {
        return false;
    }
    let lower = line.trim_end_matches('.').to_lowercase();
    if FOOTERS.iter().any(|f| lower.starts_with(f)) {
        return true;
    }
    DEVICE_PREFIXES.iter().any(|prefix| {
        lower.strip_prefix(prefix).is_some_and(|rest| {
            rest.split_whitespace()
                .next()
                .map(|word| word.trim_matches(|c: char| !c.is_alphanumeric() && c != '-'))
                .is_some_and(|word| DEVICES.contains(&word))
        })
    })
}

struct Needle {
    chars: Vec<char>,
    replacement: &'static str,
    whole_word: bool,
}

/// Replaces the addresses and the name only (no signature cut: for one-line
/// fields such as a subject). One left-to-right pass over the text, so a
/// placeholder is never matched again (a sender named "Email Address" does
/// not mangle "[email address]").
pub fn replace_identity(text: &str, addresses: &[&EmailAddress], name: Option<&str>) -> String {
    let mut needles: Vec<Needle> = addresses
        .iter()
        .map(|a| Needle {
            chars: a.as_str().chars().collect(),
            replacement: ADDRESS_PLACEHOLDER,
            whole_word: false,
        })
        .collect();
    needles.extend(
        name.map(name_words)
            .unwrap_or_default()
            .into_iter()
            .map(|word| Needle {
                chars: word,
                replacement: NAME_PLACEHOLDER,
                whole_word: true,
            }),
    );
    needles.retain(|n| !n.chars.is_empty());
    if needles.is_empty() {
        return text.to_owned();
    }

    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        match needles.iter().find(|n| matches_at(&chars, i, n)) {
            Some(needle) => {
                out.push_str(needle.replacement);
                i += needle.chars.len();
            }
            None => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// The whole name and each of its words of two or more letters ("Ruiz-López"
/// also yields "Ruiz" and "López"), longest first so the whole name wins.
fn name_words(name: &str) -> Vec<Vec<char>> {
    let enough_letters = |s: &str| s.chars().filter(|c| c.is_alphabetic()).count() >= 2;
    let mut words: Vec<&str> = Vec::new();
    let full = name.trim();
    words.push(full);
    for token in full.split_whitespace() {
        let token = token.trim_matches(|c: char| !c.is_alphanumeric());
        words.push(token);
        words.extend(token.split(|c: char| !c.is_alphanumeric()));
    }
    let mut unique: Vec<Vec<char>> = Vec::new();
    for word in words.into_iter().filter(|w| enough_letters(w)) {
        let lower = word.to_lowercase();
        if !unique
            .iter()
            .any(|u| u.iter().collect::<String>().to_lowercase() == lower)
        {
            unique.push(word.chars().collect());
        }
        if unique.len() >= MAX_NAME_WORDS {
            break;
        }
    }
    unique.sort_by_key(|w| std::cmp::Reverse(w.len()));
    unique
}

fn matches_at(chars: &[char], i: usize, needle: &Needle) -> bool {
    let len = needle.chars.len();
    let Some(window) = chars.get(i..i.saturating_add(len)) else {
        return false;
    };
    if !window
        .iter()
        .zip(&needle.chars)
        .all(|(&a, &b)| a == b || a.to_lowercase().eq(b.to_lowercase()))
    {
        return false;
    }
    if !needle.whole_word {
        return true;
    }
    let before = i.checked_sub(1).and_then(|j| chars.get(j));
    let after = chars.get(i.saturating_add(len));
    !before.is_some_and(|c| c.is_alphanumeric()) && !after.is_some_and(|c| c.is_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subject_loses_the_name_and_address_but_nothing_else() {
        let a = EmailAddress::parse("Rosa.Vega@example.net").unwrap();
        assert_eq!(
            replace_identity(
                "Rosa here -- rosa.vega@EXAMPLE.net, re: Vega St",
                &[&a],
                Some("Rosa Vega")
            ),
            "[name] here -- [email address], re: [name] St"
        );
    }

    #[test]
    fn the_last_signature_block_and_footers_go_and_the_rest_stays_exact() {
        let a = EmailAddress::parse("x@example.net").unwrap();
        let text = "Line one\r\n-- not a sig\r\nLine two\r\n\r\n-- \r\nX Person\r\n555-0100\r\n";
        assert_eq!(
            redact(text, &[&a], None),
            "Line one\r\n-- not a sig\r\nLine two\r\n"
        );
        assert_eq!(
            redact("Tonight at 9.\n\nSent from my iPhone\n", &[&a], None),
            "Tonight at 9.\n"
        );
        assert_eq!(
            redact("Sent from my window I saw them.", &[&a], None),
            "Sent from my window I saw them."
        );
    }
}
