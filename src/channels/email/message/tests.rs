use super::*;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use proptest::prelude::*;

fn limits() -> MessageLimits {
    MessageLimits {
        max_text_chars: 5_000,
        max_attachments: 3,
        max_attachment_bytes: 1_000_000,
        redact: false,
    }
}

fn address(s: &str) -> EmailAddress {
    EmailAddress::parse(s).unwrap()
}

/// Test messages are written with `\n`; mail arrives with CRLF.
fn crlf(s: &str) -> Vec<u8> {
    s.replace('\n', "\r\n").into_bytes()
}

fn parse_ok(raw: &[u8]) -> ParsedMessage {
    parse(raw, None, &limits()).unwrap()
}

fn parse_err(raw: &[u8]) -> MessageError {
    parse(raw, None, &limits()).unwrap_err()
}

fn b64(bytes: &[u8]) -> String {
    let encoded = STANDARD.encode(bytes);
    encoded
        .as_bytes()
        .chunks(76)
        .map(|line| std::str::from_utf8(line).unwrap())
        .collect::<Vec<_>>()
        .join("\r\n")
}

/// A multipart/mixed message from Ana with a text part and one base64
/// part per `(content type header value, bytes)`.
fn with_attachments(text: &str, parts: &[(&str, &[u8])]) -> Vec<u8> {
    let mut raw = String::from(
        "From: Ana Ruiz <ana@example.org>\r\n\
             Subject: photos\r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"b1\"\r\n\
             \r\n\
             --b1\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\
             \r\n",
    );
    raw.push_str(text);
    raw.push_str("\r\n");
    for (i, (content_type, bytes)) in parts.iter().enumerate() {
        raw.push_str(&format!(
            "--b1\r\nContent-Type: {content_type}\r\n\
                 Content-Disposition: attachment; filename=\"f{i}\"\r\n\
                 Content-Transfer-Encoding: base64\r\n\r\n{}\r\n",
            b64(bytes)
        ));
    }
    raw.push_str("--b1--\r\n");
    raw.into_bytes()
}

fn rgb_pixels() -> Vec<u8> {
    (0..16_u8)
        .flat_map(|y| (0..16_u8).map(move |x| (x, y)))
        .flat_map(|(x, y)| [x * 16, y * 16, x.wrapping_add(y) * 8])
        .collect()
}

const EXIF_CANARY: &[u8] = b"GPS-CANARY-40.7128N-74.0060W";
const PNG_CANARY: &str = "PNG-TEXT-CANARY-Ana-Ruiz-phone";

/// A JPEG as a phone writes it: an APP1 EXIF segment right after SOI.
fn jpeg_with_exif() -> Vec<u8> {
    let mut jpeg = Vec::new();
    jpeg_encoder::Encoder::new(&mut jpeg, 90)
        .encode(&rgb_pixels(), 16, 16, jpeg_encoder::ColorType::Rgb)
        .unwrap();
    let mut payload = b"Exif\0\0".to_vec();
    payload.extend_from_slice(EXIF_CANARY);
    let mut segment = vec![0xFF, 0xE1];
    segment.extend_from_slice(&u16::try_from(payload.len() + 2).unwrap().to_be_bytes());
    segment.extend_from_slice(&payload);
    jpeg.splice(2..2, segment);
    jpeg
}

fn png_with_text() -> Vec<u8> {
    let mut png = Vec::new();
    let mut encoder = png::Encoder::new(&mut png, 16, 16);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder
        .add_text_chunk("Author".into(), PNG_CANARY.into())
        .unwrap();
    let mut writer = encoder.write_header().unwrap();
    writer.write_image_data(&rgb_pixels()).unwrap();
    writer.finish().unwrap();
    png
}

const PDF: &[u8] =
    b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n";

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

// -- text ---------------------------------------------------------------

#[test]
fn a_plain_text_message_keeps_its_text_subject_sender_and_thread_ids() {
    let m = parse_ok(&crlf(
        "From: Ana Ruiz <ana@example.org>\n\
             To: tips@tipwire.example\n\
             Subject: Fight tonight\n\
             Message-ID: <m1@example.org>\n\
             References: <r1@example.org> <r2@example.org>\n\
             \n\
             There will be a fight at the park tonight.\n",
    ));
    assert_eq!(m.text, "There will be a fight at the park tonight.\r\n");
    assert_eq!(m.subject.as_deref(), Some("Fight tonight"));
    assert_eq!(m.sender.as_str(), "ana@example.org");
    assert_eq!(m.sender_name.as_deref(), Some("Ana Ruiz"));
    assert_eq!(m.message_id.as_deref(), Some("m1@example.org"));
    assert_eq!(m.references, ["r1@example.org", "r2@example.org"]);
    assert!(m.attachments.is_empty());
    assert!(!m.attachments_refused);
}

#[test]
fn multipart_alternative_takes_the_text_part_not_the_html() {
    let m = parse_ok(&crlf(
        "From: ana@example.org\n\
             Content-Type: multipart/alternative; boundary=alt\n\
             \n\
             --alt\n\
             Content-Type: text/plain; charset=utf-8\n\
             \n\
             plain words\n\
             --alt\n\
             Content-Type: text/html; charset=utf-8\n\
             \n\
             <p>html words</p>\n\
             --alt--\n",
    ));
    assert_eq!(m.text, "plain words");
    assert!(m.attachments.is_empty());
    assert!(!m.attachments_refused);
}

#[test]
fn an_html_only_message_is_reduced_to_text() {
    let m = parse_ok(&crlf(
        "From: ana@example.org\n\
             Content-Type: text/html; charset=utf-8\n\
             \n\
             <html><head><style>p{color:red}</style></head><body>\
             <p>Meet at <b>5th</b> &amp; Main</p><script>alert(1)</script>\
             </body></html>\n",
    ));
    assert!(m.text.contains("Meet at 5th & Main"), "{:?}", m.text);
    for gone in ["<", "color", "alert", "&amp;"] {
        assert!(!m.text.contains(gone), "{gone} survived in {:?}", m.text);
    }
}

#[test]
fn quoted_printable_and_base64_spanish_text_decode_exactly() {
    let expected =
        "Hubo disparos en la esquina de José y España, ¿alguien vio el camión? Año 2024.";
    let qp = parse_ok(&crlf(
        "From: ana@example.org\n\
             Content-Type: text/plain; charset=utf-8\n\
             Content-Transfer-Encoding: quoted-printable\n\
             \n\
             Hubo disparos en la esquina de Jos=C3=A9 y Espa=C3=B1a, =C2=BFalguien vio =\n\
             el cami=C3=B3n? A=C3=B1o 2024.",
    ));
    assert_eq!(qp.text, expected);

    let raw = format!(
        "From: ana@example.org\r\n\
             Content-Type: text/plain; charset=UTF-8\r\n\
             Content-Transfer-Encoding: base64\r\n\
             \r\n\
             {}\r\n",
        b64(expected.as_bytes())
    );
    assert_eq!(parse_ok(raw.as_bytes()).text, expected);
}

#[test]
fn iso_8859_1_text_is_decoded() {
    let mut raw = crlf(
        "From: ana@example.org\n\
             Content-Type: text/plain; charset=iso-8859-1\n\
             Content-Transfer-Encoding: 8bit\n\
             \n",
    );
    raw.extend_from_slice(b"Ma\xf1ana en la esquina del caf\xe9, \xbfsabes?");
    assert_eq!(
        parse_ok(&raw).text,
        "Mañana en la esquina del café, ¿sabes?"
    );
}

#[test]
fn an_rfc_2047_subject_is_decoded_cleaned_and_cut() {
    let raw = format!(
        "From: ana@example.org\r\n\
             Subject: =?UTF-8?B?{}?= en la =?ISO-8859-1?Q?ma=F1ana?= =?UTF-8?Q?_bell=07here?=\r\n\
             \r\n\
             text\r\n",
        STANDARD.encode("¡Urgente!")
    );
    assert_eq!(
        parse_ok(raw.as_bytes()).subject.as_deref(),
        Some("¡Urgente! en la mañana bellhere")
    );

    let long = format!(
        "From: ana@example.org\r\nSubject:  {} \r\n\r\ntext\r\n",
        "ñ".repeat(300)
    );
    let subject = parse_ok(long.as_bytes()).subject.unwrap();
    assert_eq!(subject, "ñ".repeat(200));

    let blank = parse_ok(&crlf("From: ana@example.org\nSubject:    \n\ntext\n"));
    assert_eq!(blank.subject, None);
    let absent = parse_ok(&crlf("From: ana@example.org\n\ntext\n"));
    assert_eq!(absent.subject, None);
}

// -- attachments --------------------------------------------------------

#[test]
fn a_jpeg_attachment_loses_its_exif_gps_segment() {
    let jpeg = jpeg_with_exif();
    assert!(contains(&jpeg, EXIF_CANARY));
    let m = parse_ok(&with_attachments(
        "photo attached",
        &[("image/jpeg", &jpeg)],
    ));
    assert_eq!(m.attachments.len(), 1);
    let kept = &m.attachments[0];
    assert_eq!(kept.content_type, "image/jpeg");
    assert!(kept.data.starts_with(&[0xFF, 0xD8]));
    assert!(!contains(&kept.data, EXIF_CANARY));
    assert!(!contains(&kept.data, b"Exif"));
    assert!(!m.attachments_refused);
    assert_eq!(m.text, "photo attached");
}

#[test]
fn a_png_attachment_loses_its_text_chunk() {
    let png = png_with_text();
    assert!(contains(&png, PNG_CANARY.as_bytes()));
    let m = parse_ok(&with_attachments(
        "see png",
        &[("image/png; name=\"a.png\"", &png)],
    ));
    assert_eq!(m.attachments.len(), 1);
    assert_eq!(m.attachments[0].content_type, "image/png");
    assert!(m.attachments[0].data.starts_with(b"\x89PNG\r\n\x1a\n"));
    assert!(!contains(&m.attachments[0].data, PNG_CANARY.as_bytes()));
    assert!(!contains(&m.attachments[0].data, b"tEXt"));
}

#[test]
fn a_zip_attachment_is_refused_and_the_text_kept() {
    let zip = b"PK\x03\x04\x14\x00\x00\x00\x08\x00payload.exe";
    let m = parse_ok(&with_attachments("zip here", &[("application/zip", zip)]));
    assert!(m.attachments.is_empty());
    assert!(m.attachments_refused);
    assert_eq!(m.text, "zip here");
}

#[test]
fn a_pdf_declared_as_png_is_refused() {
    let m = parse_ok(&with_attachments("fake png", &[("image/png", PDF)]));
    assert!(m.attachments.is_empty());
    assert!(m.attachments_refused);
}

#[test]
fn a_jpeg_declared_as_png_is_refused() {
    let m = parse_ok(&with_attachments(
        "mismatch",
        &[("image/png", &jpeg_with_exif())],
    ));
    assert!(m.attachments.is_empty());
    assert!(m.attachments_refused);
}

#[test]
fn a_pdf_with_author_producer_and_xmp_is_withheld_and_the_mediator_told() {
    let pdf = b"%PDF-1.7\n1 0 obj << /Type /Catalog /Metadata 3 0 R >> endobj\n\
            2 0 obj << /Author (CANARY-AUTHOR Jane Doe) /Producer (CANARY-PRODUCER iOS 17.4 Quartz) \
            /Creator (Pages) >> endobj\n\
            3 0 obj << /Type /Metadata /Subtype /XML /Length 80 >> stream\n\
            <x:xmpmeta><exif:GPSLatitude>CANARY-XMP-GPS 40,42.77N</exif:GPSLatitude></x:xmpmeta>\n\
            endstream endobj\ntrailer << /Root 1 0 R /Info 2 0 R >>\n%%EOF\n";
    for m in [
        parse_ok(&with_attachments("report", &[("application/pdf", pdf)])),
        parse_ok(&with_attachments("report", &[("application/pdf", PDF)])),
    ] {
        assert!(m.attachments.is_empty());
        assert!(m.attachments_refused);
        assert_eq!(
            m.withheld,
            [Withheld {
                kind: AttachmentKind::Pdf,
                reason: WithheldReason::CannotClean
            }]
        );
        assert_eq!(m.text, "report");
    }

    let fake = parse_ok(&with_attachments(
        "report",
        &[("application/pdf", b"MZ\x90\x00exe")],
    ));
    assert!(fake.attachments.is_empty());
    assert!(fake.attachments_refused);
}

#[test]
fn attachments_past_the_count_or_size_limit_are_refused() {
    let png = png_with_text();
    let three = with_attachments(
        "three pngs",
        &[
            ("image/png", &png),
            ("image/png", &png),
            ("image/png", &png),
        ],
    );
    let two = MessageLimits {
        max_attachments: 2,
        ..limits()
    };
    let m = parse(&three, None, &two).unwrap();
    assert_eq!(m.attachments.len(), 2);
    assert!(m.attachments_refused);

    let small = MessageLimits {
        max_attachment_bytes: png.len() - 1,
        ..limits()
    };
    let m = parse(
        &with_attachments("big", &[("image/png", &png)]),
        None,
        &small,
    )
    .unwrap();
    assert!(m.attachments.is_empty());
    assert!(m.attachments_refused);
    let exact = MessageLimits {
        max_attachment_bytes: png.len(),
        ..limits()
    };
    let m = parse(
        &with_attachments("fits", &[("image/png", &png)]),
        None,
        &exact,
    )
    .unwrap();
    assert_eq!(m.attachments.len(), 1);
}

#[test]
fn other_types_such_as_calendars_and_text_files_are_refused() {
    let m = parse_ok(&crlf(
        "From: ana@example.org\n\
             Content-Type: multipart/mixed; boundary=b\n\
             \n\
             --b\n\
             Content-Type: text/plain\n\
             \n\
             see below\n\
             --b\n\
             Content-Type: text/calendar; method=REQUEST\n\
             \n\
             BEGIN:VCALENDAR\n\
             --b\n\
             Content-Type: text/plain; name=notes.txt\n\
             Content-Disposition: attachment; filename=notes.txt\n\
             \n\
             attached notes canary\n\
             --b--\n",
    ));
    assert_eq!(m.text, "see below");
    assert!(m.attachments.is_empty());
    assert!(m.attachments_refused);
}

#[test]
fn a_photo_pasted_inline_in_an_html_body_is_kept_as_an_attachment() {
    let raw = format!(
        "From: ana@example.org\r\n\
             Content-Type: multipart/related; boundary=rel\r\n\
             \r\n\
             --rel\r\n\
             Content-Type: text/html; charset=utf-8\r\n\
             \r\n\
             <p>look</p><img src=\"cid:img1\">\r\n\
             --rel\r\n\
             Content-Type: image/jpeg\r\n\
             Content-Disposition: inline\r\n\
             Content-ID: <img1>\r\n\
             Content-Transfer-Encoding: base64\r\n\
             \r\n\
             {}\r\n\
             --rel--\r\n",
        b64(&jpeg_with_exif())
    );
    let m = parse_ok(raw.as_bytes());
    assert!(m.text.contains("look"));
    assert_eq!(m.attachments.len(), 1);
    assert!(!contains(&m.attachments[0].data, EXIF_CANARY));
    assert!(!m.attachments_refused);
}

#[test]
fn a_message_with_only_an_attachment_gets_placeholder_text() {
    let m = parse_ok(&with_attachments("  ", &[("image/png", &png_with_text())]));
    // The subject stands in for the missing text.
    assert_eq!(m.text, "photos");
    assert_eq!(m.attachments.len(), 1);
    let no_subject = String::from_utf8(with_attachments("  ", &[("image/png", &png_with_text())]))
        .unwrap()
        .replace("Subject: photos\r\n", "");
    let m = parse_ok(no_subject.as_bytes());
    assert_eq!(m.text, "(attachment without text)");
}

#[test]
fn a_tip_in_the_subject_alone_is_kept_as_the_text() {
    let m = parse_ok(&crlf(
        "From: ana@example.org\nSubject: Shooting planned behind 5th St market at 9pm\n\n\n",
    ));
    assert_eq!(m.text, "Shooting planned behind 5th St market at 9pm");
}

/// `levels` nested messages: the outer message declared by `top`, each
/// nested header block holding `nested` and ending in a blank line.
fn message_chain(levels: usize, top: &str, nested: &str) -> Vec<u8> {
    let mut raw = format!("From: ana@example.org\r\n{top}\r\n\r\n").into_bytes();
    for _ in 1..levels {
        raw.extend_from_slice(nested.as_bytes());
        raw.extend_from_slice(b"\r\n\r\n");
    }
    raw.extend_from_slice(b"Subject: x\r\n\r\nbody\r\n");
    raw
}

/// The shapes of the issue 10 bomb, unseen by a reading of raw
/// "Content-Type:" lines.
const BOMBS: [(&str, &str); 4] = [
    (
        "Content-Type: \"message/rfc822\"",
        " Content-Type:message/rfc822",
    ),
    (
        "Content-Type: (x)message/rfc822",
        "\tContent-Type: message/global",
    ),
    (
        "Content-Type:\r\n message/rfc822",
        "Content-Type:\r\n message/rfc822",
    ),
    (
        "Content-Type: message/rfc822",
        "Content-Type: message/rfc822",
    ),
];

/// The stock parser nests each shape one level per block: this is what
/// overflowed the stack at 100,000 levels (here 500, safe to drop).
#[test]
fn stock_mail_parser_nests_every_bomb_shape() {
    for (top, nested) in BOMBS {
        let raw = message_chain(500, top, nested);
        let message = mail_parser::MessageParser::default().parse(&raw).unwrap();
        let mut depth = 0;
        let mut current = &message;
        while let Some(PartType::Message(inner)) = current.parts.first().map(|p| &p.body) {
            depth += 1;
            current = inner;
        }
        assert!(depth >= 499, "{top:?}: {depth}");
    }
}

#[test]
fn nested_messages_are_refused_however_their_type_is_written() {
    for ct in [
        "message/rfc822",
        "Message/Global",
        "\"message/rfc822\"",
        "(x)message/rfc822",
        "message/rfc822 (forwarded)",
        "message/(c)rfc822",
    ] {
        let raw = crlf(&format!(
            "From: ana@example.org\nContent-Type: multipart/mixed; boundary=b\n\n--b\n\
                 Content-Type: text/plain\n\nsee below\n--b\nContent-Type:\n {ct}\n\n\
                 From: x@example.net\n\nforwarded\n--b--\n"
        ));
        assert_eq!(parse_err(&raw), MessageError::NestedMessage, "{ct}");
    }
    // A digest's untyped parts are messages.
    let digest = crlf(
        "From: ana@example.org\nContent-Type: multipart/digest; boundary=d\n\n--d\n\n\
             From: x@example.net\n\nforwarded\n--d--\n",
    );
    assert_eq!(parse_err(&digest), MessageError::NestedMessage);
    // Transfer-encoded: mail-parser would decode and parse it again.
    let encoded = format!(
        "From: ana@example.org\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
             Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--b--\r\n",
        b64(&message_chain(1_000, BOMBS[0].0, BOMBS[0].1))
    );
    assert_eq!(parse_err(encoded.as_bytes()), MessageError::NestedMessage);
}

/// At 100,000 levels each shape aborted the process in mail-parser's own
/// `parse`; here each is refused without building the chain.
#[test]
fn nested_message_bombs_are_refused_without_building_the_chain() {
    for (top, nested) in BOMBS {
        // 60,000: the folded shape has four lines a level, and 100,000
        // levels of it cross the line bound first.
        let raw = message_chain(60_000, top, nested);
        assert_eq!(parse_err(&raw), MessageError::NestedMessage, "{top:?}");
    }
}

#[test]
fn the_structure_parser_nests_nothing_and_bounds_parts_and_lines() {
    let raw = nested(MAX_MIME_DEPTH);
    let message = mime::parse(&raw).unwrap();
    assert!(message.parts.iter().all(|p| !p.is_message()));
    // A million empty parts: refused after MAX_PARTS, not built.
    let mut many =
        b"From: ana@example.org\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n".to_vec();
    for _ in 0..1_000_000 {
        many.extend_from_slice(b"--b\r\nX: y\r\n\r\n");
    }
    many.extend_from_slice(b"--b--\r\n");
    assert_eq!(parse_err(&many), MessageError::TooComplex);
    // Three million header fields in one block: refused by the line
    // bound before mail-parser allocates a structure for each.
    let mut headers = b"From: ana@example.org\r\n".to_vec();
    headers.extend(b"X:\r\n".repeat(3_000_000));
    headers.extend_from_slice(b"\r\nbody\r\n");
    assert_eq!(parse_err(&headers), MessageError::TooComplex);
    // A boundary longer than RFC 2046 allows, which would make every
    // "--" in the body cost a long comparison.
    let long = "-".repeat(71);
    let raw = crlf(&format!(
        "From: ana@example.org\nContent-Type: multipart/mixed; boundary=\"{long}\"\n\n\
             --{long}\nContent-Type: text/plain\n\nhi\n--{long}--\n"
    ));
    assert_eq!(parse_err(&raw), MessageError::Malformed);
}

#[test]
fn deep_multipart_nesting_is_refused_without_recursion() {
    assert_eq!(parse_err(&nested(100_000)), MessageError::TooComplex);
}

#[test]
fn a_stray_replacement_character_is_text_but_mostly_garbage_is_not() {
    let m = parse_ok(&crlf(
        "From: ana@example.org\n\nhe said \u{FFFD} whatever\n",
    ));
    assert!(m.text.contains('\u{FFFD}'));
    let garbage: String = std::iter::repeat_n('\u{FFFD}', 40).collect();
    let raw = crlf(&format!("From: ana@example.org\n\nok {garbage}\n"));
    assert_eq!(parse_err(&raw), MessageError::Malformed);
}

#[test]
fn auto_submitted_mail_is_flagged_and_auto_submitted_no_is_not() {
    let m = parse_ok(&crlf(
        "From: ana@example.org\nAuto-Submitted: auto-replied\n\nI am away\n",
    ));
    assert!(m.auto_submitted);
    let m = parse_ok(&crlf(
        "From: ana@example.org\nAuto-Submitted: no\n\nhello\n",
    ));
    assert!(!m.auto_submitted);
}

// -- sender -------------------------------------------------------------

#[test]
fn reply_to_is_preferred_over_from_when_valid() {
    let m = parse_ok(&crlf(
        "From: Ana Ruiz <ana@example.org>\n\
             Reply-To: Other Name <replies@example.net>\n\
             \n\
             text\n",
    ));
    assert_eq!(m.sender.as_str(), "replies@example.net");
    assert_eq!(m.sender_name.as_deref(), Some("Ana Ruiz"));

    let invalid = parse_ok(&crlf(
        "From: Ana Ruiz <ana@example.org>\n\
             Reply-To: not an address\n\
             \n\
             text\n",
    ));
    assert_eq!(invalid.sender.as_str(), "ana@example.org");
}

#[test]
fn the_envelope_sender_is_used_when_from_is_missing_or_invalid() {
    let envelope = address("bounce@mail.example.org");
    for raw in [
        crlf("Subject: no from\n\ntext\n"),
        crlf("From: Ana Ruiz <not an address>\n\ntext\n"),
        crlf("From: \"quoted local\"@example.org\n\ntext\n"),
    ] {
        let m = parse(&raw, Some(&envelope), &limits()).unwrap();
        assert_eq!(m.sender.as_str(), "bounce@mail.example.org");
    }
    let with_from = parse(
        &crlf("From: ana@example.org\n\ntext\n"),
        Some(&envelope),
        &limits(),
    )
    .unwrap();
    assert_eq!(with_from.sender.as_str(), "ana@example.org");
}

// -- refusals -----------------------------------------------------------

#[test]
fn eight_bit_garbage_is_malformed() {
    let mut state = 0x2545_f491_u32;
    let garbage: Vec<u8> = (0..512)
        .map(|_| {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            0x80 | (state >> 24) as u8
        })
        .collect();
    assert_eq!(parse_err(&garbage), MessageError::Malformed);
    let envelope = address("ana@example.org");
    assert_eq!(
        parse(&garbage, Some(&envelope), &limits()).unwrap_err(),
        MessageError::Malformed
    );
    let mut lines = garbage.clone();
    lines.splice(100..100, b"\r\n\r\n".iter().copied());
    assert_eq!(parse_err(&lines), MessageError::Malformed);
}

#[test]
fn broken_header_sections_are_malformed() {
    let envelope = address("ana@example.org");
    for raw in [
        b"".to_vec(),
        crlf("\nFrom: ana@example.org\n\ntext\n"),
        crlf("just some words\nand more\n"),
        crlf(" From: ana@example.org\n\ntext\n"),
        crlf("From ana@example.org Mon Jan 1\nFrom: ana@example.org\n\ntext\n"),
        crlf("From: ana@example.org\nX-Bad Name: 1\n\ntext\n"),
        b"From: ana@example.org\r\nX-Nul: a\x00b\r\n\r\ntext\r\n".to_vec(),
        b"From: ana@example.org\r\nX-Cr: a\rb\r\n\r\ntext\r\n".to_vec(),
        b"From: ana@example.org\r\nSubject: caf\xe9\r\n\r\ntext\r\n".to_vec(),
    ] {
        assert_eq!(
            parse(&raw, Some(&envelope), &limits()).unwrap_err(),
            MessageError::Malformed,
            "{:?}",
            String::from_utf8_lossy(&raw)
        );
    }
}

#[test]
fn a_header_block_without_from_or_envelope_is_malformed() {
    assert_eq!(
        parse_err(&crlf("Subject: hi\nTo: tips@tipwire.example\n\ntext\n")),
        MessageError::Malformed
    );
    assert_eq!(
        parse_err(&crlf("From: nobody\nReply-To: ana@example.org\n\ntext\n")),
        MessageError::Malformed
    );
}

#[test]
fn bodies_that_are_not_text_are_malformed() {
    for raw in [
            b"From: ana@example.org\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhi \xff\xfe\x80 there\r\n".to_vec(),
            b"From: ana@example.org\r\n\r\nhi\x00there\r\n".to_vec(),
            b"From: ana@example.org\r\n\r\nescape \x1b[2J\r\n".to_vec(),
            crlf(
                "From: ana@example.org\n\
                 Content-Transfer-Encoding: base64\n\
                 \n\
                 !!!not base64###\n",
            ),
            crlf("From: ana@example.org\nContent-Type: text/html\n\n<p>a&#0;b</p>\n"),
        ] {
            assert_eq!(
                parse_err(&raw),
                MessageError::Malformed,
                "{:?}",
                String::from_utf8_lossy(&raw)
            );
        }
}

fn nested(levels: usize) -> Vec<u8> {
    let mut raw = String::from("From: ana@example.org\r\n");
    for level in 0..levels {
        raw.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=n{level}\r\n\r\n--n{level}\r\n"
        ));
    }
    raw.push_str("Content-Type: text/plain\r\n\r\ndeep\r\n");
    for level in (0..levels).rev() {
        raw.push_str(&format!("--n{level}--\r\n"));
    }
    raw.into_bytes()
}

#[test]
fn mime_nesting_deeper_than_eight_is_malformed() {
    assert_eq!(parse_ok(&nested(MAX_MIME_DEPTH)).text, "deep");
    assert_eq!(
        parse_err(&nested(MAX_MIME_DEPTH + 1)),
        MessageError::TooComplex
    );
}

#[test]
fn a_multipart_without_parts_or_boundary_is_malformed() {
    for raw in [
        crlf("From: ana@example.org\nContent-Type: multipart/mixed; boundary=x\n\n--x--\n"),
        crlf("From: ana@example.org\nContent-Type: multipart/mixed; boundary=x\n\nno parts here\n"),
        crlf("From: ana@example.org\nContent-Type: multipart/mixed\n\nno boundary\n"),
        crlf(
            "From: ana@example.org\nContent-Type: multipart/mixed; boundary=x\n\n\
                 --x\nContent-Type: text/plain\n\nnever closed\n",
        ),
    ] {
        assert_eq!(
            parse_err(&raw),
            MessageError::Malformed,
            "{:?}",
            String::from_utf8_lossy(&raw)
        );
    }
}

#[test]
fn a_blank_body_without_attachments_is_empty() {
    for raw in [
        crlf("From: ana@example.org\nSubject:  \n\n   \n\n"),
        crlf("From: ana@example.org\nTo: tips@example.org\n"),
        String::from_utf8(with_attachments(" ", &[("application/zip", b"PK\x03\x04")]))
            .unwrap()
            .replace("Subject: photos\r\n", "")
            .into_bytes(),
    ] {
        assert_eq!(parse_err(&raw), MessageError::Empty);
    }
    let redacted_away = MessageLimits {
        redact: true,
        ..limits()
    };
    assert_eq!(
        parse(
            &crlf("From: ana@example.org\n\n-- \nAna\n"),
            None,
            &redacted_away
        )
        .unwrap_err(),
        MessageError::Empty
    );
}

#[test]
fn text_over_the_limit_is_too_long() {
    let tight = MessageLimits {
        max_text_chars: 10,
        ..limits()
    };
    let over = format!("From: ana@example.org\r\n\r\n{}", "ñ".repeat(11));
    assert_eq!(
        parse(over.as_bytes(), None, &tight).unwrap_err(),
        MessageError::TooLong
    );
    let exact = format!("From: ana@example.org\r\n\r\n{}", "ñ".repeat(10));
    assert_eq!(
        parse(exact.as_bytes(), None, &tight).unwrap().text,
        "ñ".repeat(10)
    );
    // Counted after html→text ("aaaaaaaaa\n"): markup does not count.
    let html = format!(
        "From: ana@example.org\r\nContent-Type: text/html\r\n\r\n<p><b>{}</b></p>",
        "a".repeat(9)
    );
    assert!(parse(html.as_bytes(), None, &tight).is_ok());
}

// -- thread ids ---------------------------------------------------------

#[test]
fn odd_message_ids_are_dropped_and_references_keep_the_last_ten() {
    let refs: Vec<String> = (1..=12).map(|i| format!("<r{i}@example.org>")).collect();
    let raw = format!(
        "From: ana@example.org\r\nMessage-ID: <{}@example.org>\r\nReferences: {}\r\n\r\ntext\r\n",
        "x".repeat(300),
        refs.join(" ")
    );
    let m = parse_ok(raw.as_bytes());
    assert_eq!(m.message_id, None);
    let expected: Vec<String> = (3..=12).map(|i| format!("r{i}@example.org")).collect();
    assert_eq!(m.references, expected);

    let reply = parse_ok(&crlf(
        "From: ana@example.org\n\
             Message-ID: <ok@example.org>\n\
             In-Reply-To: <parent@tipwire.example>\n\
             \n\
             text\n",
    ));
    assert_eq!(reply.message_id.as_deref(), Some("ok@example.org"));
    assert_eq!(reply.references, ["parent@tipwire.example"]);

    let spaced = parse_ok(&crlf(
        "From: ana@example.org\nMessage-ID: not an id at all\nReferences: <a b@x> <ok@x>\n\ntext\n",
    ));
    assert_eq!(spaced.message_id, None);
    assert!(spaced.references.iter().all(|id| !id.contains(' ')));
}

// -- redaction ----------------------------------------------------------

#[test]
fn redaction_removes_address_name_parts_signature_and_footers_keeping_the_rest_exact() {
    let ana = address("ana.ruiz@example.org");
    let text = "Hi,  two men   near the SCHOOL at 5pm.\r\n\
                    Write to Ana.Ruiz@Example.ORG or ask ANA; Ruiz-López knows.\r\n\
                    Anabel and Ruizes are other people.\r\n\
                    \r\n\
                    -- \r\n\
                    Ana María Ruiz-López\r\n\
                    ana.ruiz@example.org\r\n";
    assert_eq!(
        redact(text, &ana, Some("Ana María Ruiz-López")),
        "Hi,  two men   near the SCHOOL at 5pm.\r\n\
             Write to [email address] or ask [name]; [name] knows.\r\n\
             Anabel and Ruizes are other people.\r\n"
    );

    for footer in [
        "Sent from my iPhone",
        "Sent from my Android",
        "Sent from my Samsung Galaxy smartphone.",
        "Get Outlook for iOS",
        "Get Outlook for Android<https://aka.ms/ghei36>",
        "Enviado desde mi iPhone",
    ] {
        let text = format!("Tiroteo en la calle 5.\n\n{footer}\n\n");
        assert_eq!(
            redact(&text, &ana, None),
            "Tiroteo en la calle 5.\n",
            "{footer}"
        );
    }
    let both = "Look out.\n--\nAna\nSent from my iPhone\n";
    assert_eq!(redact(both, &ana, None), "Look out.\n");
    let kept = "Sent from my window I saw two cars.\nThat is all.";
    assert_eq!(redact(kept, &ana, None), kept);
    let not_a_signature = "a -- b\n--- \n -- \nend";
    assert_eq!(redact(not_a_signature, &ana, None), not_a_signature);
}

#[test]
fn redaction_never_rewrites_its_own_placeholders() {
    let a = address("x@example.org");
    assert_eq!(
        redact(
            "mail x@example.org, Email Name",
            &a,
            Some("Email Address Name")
        ),
        "mail [email address], [name] [name]"
    );
    assert_eq!(redact("Name here", &a, Some("Name")), "[name] here");
    // One-letter initials are not words to redact.
    assert_eq!(redact("J. went left", &a, Some("J. Smith")), "J. went left");
}

#[test]
fn parse_redacts_when_asked_and_keeps_everything_when_not() {
    let raw = crlf(
        "From: \"Ana Ruiz\" <ana@example.org>\n\
             Reply-To: replies@example.net\n\
             Subject: From Ana Ruiz\n\
             \n\
             Ana here. Reply to replies@example.net or ana@example.org.\n\
             -- \n\
             Ana Ruiz, 555-0100\n\
             Sent from my iPhone\n",
    );
    let on = parse(
        &raw,
        None,
        &MessageLimits {
            redact: true,
            ..limits()
        },
    )
    .unwrap();
    assert_eq!(
        on.text,
        "[name] here. Reply to [email address] or [email address].\r\n"
    );
    assert_eq!(on.subject.as_deref(), Some("From [name]"));

    let off = parse_ok(&raw);
    assert_eq!(
        off.text,
        "Ana here. Reply to replies@example.net or ana@example.org.\r\n\
             -- \r\n\
             Ana Ruiz, 555-0100\r\n\
             Sent from my iPhone\r\n"
    );
    assert_eq!(off.subject.as_deref(), Some("From Ana Ruiz"));
}

// -- privacy ------------------------------------------------------------

#[test]
fn header_canaries_never_reach_the_text_subject_or_attachments() {
    let raw = format!(
        "Received: from CANARY-RCVD-HOST (CANARY-RCVD-HOST [203.0.113.77])\r\n\
             \tby mx.tipwire.example with ESMTPS id CANARY-RCVD-ID\r\n\
             DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=CANARY-DKIM;\r\n\
             \tb=CANARYDKIMSIG\r\n\
             X-Originating-IP: [198.51.100.23]\r\n\
             User-Agent: CANARY-AGENT/1.0 (Linux)\r\n\
             Message-ID: <CANARY-MSGID@example.org>\r\n\
             From: Ana <ana@example.org>\r\n\
             Subject: a tip\r\n\
             Content-Type: multipart/mixed; boundary=b\r\n\
             \r\n\
             --b\r\n\
             Content-Type: text/html; charset=utf-8\r\n\
             \r\n\
             <p>there is a tip</p>\r\n\
             --b\r\n\
             Content-Type: image/png\r\n\
             Content-Transfer-Encoding: base64\r\n\
             \r\n\
             {}\r\n\
             --b--\r\n",
        b64(&png_with_text())
    );
    let m = parse_ok(raw.as_bytes());
    assert_eq!(m.message_id.as_deref(), Some("CANARY-MSGID@example.org"));
    assert_eq!(m.attachments.len(), 1);
    let mut sealed = m.text.clone().into_bytes();
    sealed.extend_from_slice(m.subject.as_deref().unwrap_or_default().as_bytes());
    for a in &m.attachments {
        sealed.extend_from_slice(a.content_type.as_bytes());
        sealed.extend_from_slice(&a.data);
    }
    for canary in [
        "CANARY",
        "203.0.113.77",
        "198.51.100.23",
        "Linux",
        "ESMTPS",
        "rsa-sha256",
    ] {
        assert!(!contains(&sealed, canary.as_bytes()), "{canary} leaked");
    }
}

#[test]
fn debug_output_shows_only_sizes_and_counts() {
    let m = parse_ok(&crlf(
        "From: Ana Ruiz <ana@example.org>\n\
             Subject: secret subject\n\
             Message-ID: <secret-id@example.org>\n\
             \n\
             secret text\n",
    ));
    let debug = format!("{m:?}");
    for secret in ["Ana", "ana@", "secret"] {
        assert!(!debug.contains(secret), "{debug}");
    }
    assert!(debug.contains("text_chars: 13"), "{debug}");
}

// -- properties ---------------------------------------------------------

const MIME_LINES: &[&str] = &[
    "",
    "--b",
    "--b--",
    "--c",
    "--c--",
    "Content-Type: multipart/mixed; boundary=b",
    "Content-Type: multipart/alternative; boundary=c",
    "Content-Type: multipart/related; boundary=b",
    "Content-Type: text/plain; charset=utf-8",
    "Content-Type: text/plain; charset=iso-8859-1",
    "Content-Type: text/html",
    "Content-Type: image/png",
    "Content-Type: image/jpeg",
    "Content-Type: application/pdf",
    "Content-Type: message/rfc822",
    "Content-Transfer-Encoding: base64",
    "Content-Transfer-Encoding: quoted-printable",
    "Content-Disposition: attachment; filename=a",
    "Content-Disposition: inline",
    "From: Ana <ana@example.org>",
    "Subject: =?utf-8?q?caf=C3=A9?=",
    "iVBORw0KGgo=",
    "/9j/4AAQ",
    "JVBERi0xLjQ=",
    "=C3=A9=",
    "<p>x &amp; y</p>",
    "-- ",
    "hello",
];

proptest! {
    #[test]
    fn parse_never_panics_on_arbitrary_bytes(raw in proptest::collection::vec(any::<u8>(), 0..512)) {
        let envelope = address("ana@example.org");
        let _ = parse(&raw, None, &limits());
        let _ = parse(&raw, Some(&envelope), &limits());
    }

    #[test]
    fn parse_never_panics_on_arbitrary_bytes_after_a_valid_header_block(
        body in proptest::collection::vec(any::<u8>(), 0..512),
        redact in any::<bool>(),
    ) {
        let mut raw = crlf(
            "From: Ana Ruiz <ana@example.org>\n\
             Subject: s\n\
             Content-Type: multipart/mixed; boundary=b\n\n",
        );
        raw.extend_from_slice(&body);
        let _ = parse(&raw, None, &MessageLimits { redact, ..limits() });
    }

    #[test]
    fn parse_never_panics_on_mime_shaped_input(
        picks in proptest::collection::vec(0..MIME_LINES.len(), 0..40),
        redact in any::<bool>(),
    ) {
        let mut raw = String::from("From: Ana Ruiz <ana@example.org>\r\n");
        for i in picks {
            raw.push_str(MIME_LINES.get(i).copied().unwrap_or_default());
            raw.push_str("\r\n");
        }
        let tight = MessageLimits { redact, max_attachments: 1, max_text_chars: 50, ..limits() };
        if let Ok(m) = parse(raw.as_bytes(), None, &tight) {
            prop_assert!(!m.text.trim().is_empty());
            prop_assert!(m.text.chars().count() <= 50 || m.text == NO_TEXT);
            prop_assert!(m.attachments.len() <= 1);
        }
    }

    #[test]
    fn redaction_never_leaves_the_address_or_name(
        before in "[a-zA-Z0-9 .,ñé\n-]{0,40}",
        after in "[a-zA-Z0-9 .,ñé\n-]{0,40}",
    ) {
        let a = address("Ana.Ruiz@example.org");
        let text = format!("{before} ANA.RUIZ@EXAMPLE.ORG {after} ana.ruiz@example.org Ruiz");
        let out = redact(&text, &a, Some("Ana Ruiz"));
        prop_assert!(!out.to_lowercase().contains("ana.ruiz@example.org"));
        prop_assert!(!out.to_lowercase().contains(" ruiz"));
    }
}
