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
    let mut m =
        String::from("From: a@example.org\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n");
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
    let at =
        usize::try_from(header.offset_start).unwrap()..usize::try_from(header.offset_end).unwrap();
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
