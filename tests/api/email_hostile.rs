//! Hostile mail against a spawned gateway (issue 10, item 1): every parser
//! that sees the bytes of a message (MIME structure, header fields, encoded
//! words, base64 and quoted-printable, HTML to text, redaction) is fed input
//! shaped to make it recurse, allocate or loop, over real SMTP. Each must end
//! in a precise answer, with the gateway still up and a normal tip after it
//! stored. Before the fix the first nested-message variant aborted the whole
//! process (this test binary with it).

use base64::Engine as _;

use crate::support::app::{TestApp, open_tip};
use crate::support::email::{RawSmtp, spawn_email_app};

const TIPSTER: &str = "resident.tipster@example.net";

/// Sends `message` (dot-stuffing is not needed: no line starts with a dot)
/// and returns the final reply line.
async fn send(app: &TestApp, message: &[u8]) -> String {
    let mut c: RawSmtp = app.raw_smtp().await;
    c.begin(TIPSTER).await;
    c.send(message).await;
    c.send(b"\r\n.\r\n").await;
    let reply = c.reply().await;
    assert_eq!(c.command("QUIT").await, "221", "the session goes on");
    reply.trim_end().to_owned()
}

/// `levels` nested messages: the outer message declared by `top`, each
/// nested header block holding `nested` and ending in a blank line.
fn chain(levels: usize, top: &str, nested: &str) -> Vec<u8> {
    let mut raw = format!("From: <{TIPSTER}>\r\n{top}\r\n\r\n").into_bytes();
    for _ in 1..levels {
        raw.extend_from_slice(nested.as_bytes());
        raw.extend_from_slice(b"\r\n\r\n");
    }
    raw.extend_from_slice(b"Subject: x\r\n\r\nbody");
    raw
}

fn b64_lines(bytes: &[u8]) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
    encoded
        .as_bytes()
        .chunks(76)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("\r\n")
}

/// The tip after the attack is stored and opens to its text.
async fn a_normal_tip_still_works(app: &TestApp, stored_before: usize) {
    let text = "A normal tip after the attack.";
    let reply = send(
        app,
        format!("From: <{TIPSTER}>\r\nSubject: after\r\n\r\n{text}").as_bytes(),
    )
    .await;
    assert!(reply.starts_with("250 2.0.0"), "{reply}");
    let alerts = app.alerts().await;
    assert_eq!(alerts.len(), stored_before + 1);
    let doc = open_tip(alerts.last().unwrap(), &app.escrow).unwrap();
    assert_eq!(doc.text.trim_end(), text);
}

#[tokio::test]
async fn nested_message_bombs_get_a_precise_550_and_the_gateway_keeps_serving() {
    let app = spawn_email_app(|_| {}).await;
    let nested = "550 5.6.0 Message refused: attached or forwarded messages";
    let encoded_chain = format!(
        "From: <{TIPSTER}>\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
         Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--b--",
        b64_lines(&chain(
            50_000,
            "Content-Type: (x)message/rfc822",
            " Content-Type: message/rfc822"
        ))
    );
    let mut digest =
        format!("From: <{TIPSTER}>\r\nContent-Type: multipart/digest; boundary=d\r\n\r\n");
    for level in 0..50_000 {
        digest.push_str("--d\r\n\r\n");
        if level == 0 {
            digest.push_str("From: <x@example.net>\r\n");
        }
    }
    // Each 100,000 levels deep in mail-parser's own parse (1.3 to 3.3 MB).
    let plain = "Content-Type: message/rfc822";
    let cases: Vec<(&str, Vec<u8>)> = vec![
        // Unseen by a reading of raw "Content-Type:" lines: the outer type
        // quoted or commented, the nested ones indented.
        (
            "quoted type, indented blocks",
            chain(
                100_000,
                "Content-Type: \"message/rfc822\"",
                " Content-Type:message/rfc822",
            ),
        ),
        (
            "commented type, indented blocks",
            chain(
                100_000,
                "Content-Type: (x)message/rfc822",
                "\tContent-Type: message/global",
            ),
        ),
        (
            "folded type",
            // Four lines a level: 60,000 levels stay under the line bound.
            chain(
                60_000,
                "Content-Type:\r\n message/rfc822",
                "Content-Type:\r\n message/rfc822",
            ),
        ),
        ("plain type", chain(100_000, plain, plain)),
        ("transfer-encoded", encoded_chain.into_bytes()),
        ("digest", digest.into_bytes()),
    ];
    for (name, bomb) in cases {
        let reply = send(&app, &bomb).await;
        assert!(reply.starts_with(nested), "{name}: {reply}");
    }
    assert!(app.alerts().await.is_empty());
    a_normal_tip_still_works(&app, 0).await;
    assert!(
        app.metrics
            .render()
            .contains("tipwire_tips_rejected_total{channel=\"email\",reason=\"nested-message\"} 6")
    );
}

#[tokio::test]
async fn deep_or_wide_mime_gets_a_precise_550_and_the_gateway_keeps_serving() {
    let app = spawn_email_app(|_| {}).await;
    let too_complex = "550 5.6.0 Message refused: too many MIME parts";
    let mut deep = format!("From: <{TIPSTER}>\r\n").into_bytes();
    for level in 0..100_000 {
        deep.extend_from_slice(
            format!("Content-Type: multipart/mixed; boundary=n{level}\r\n\r\n--n{level}\r\n")
                .as_bytes(),
        );
    }
    deep.extend_from_slice(b"Content-Type: text/plain\r\n\r\ndeep");
    let mut wide =
        format!("From: <{TIPSTER}>\r\nContent-Type: multipart/mixed; boundary=w\r\n\r\n")
            .into_bytes();
    for _ in 0..300_000 {
        wide.extend_from_slice(b"--w\r\n\r\n");
    }
    wide.extend_from_slice(b"--w--");
    let mut headers = format!("From: <{TIPSTER}>\r\n").into_bytes();
    headers.extend(b"X:\r\n".repeat(2_000_000));
    headers.extend_from_slice(b"\r\nbody");
    for (name, bomb) in [("deep", deep), ("wide", wide), ("headers", headers)] {
        let reply = send(&app, &bomb).await;
        assert!(reply.starts_with(too_complex), "{name}: {reply}");
    }
    a_normal_tip_still_works(&app, 0).await;
}

/// Header fields, encoded words, transfer encodings, HTML and redaction,
/// each with input shaped to recurse or blow up: each mail gets its answer
/// (stored, or refused with the reason), none takes the gateway down.
#[tokio::test]
async fn hostile_headers_encodings_html_and_names_are_answered_and_the_gateway_keeps_serving() {
    let app = spawn_email_app(|s| s.email.redact = true).await;
    let fold = |piece: &str, times: usize| -> String {
        // Folded lines, each well under the line limit.
        (0..times)
            .map(|_| piece)
            .collect::<Vec<_>>()
            .chunks(100)
            .map(|c| c.concat())
            .collect::<Vec<_>>()
            .join("\r\n ")
    };
    let comments = format!(
        "From: {}{} <{TIPSTER}>\r\nSubject: c\r\n\r\ncomments",
        fold("(", 200_000),
        fold(")", 200_000)
    );
    let groups = format!(
        "From: {} <{TIPSTER}>\r\nSubject: g\r\n\r\ngroups",
        fold("a:", 200_000)
    );
    let quotes = format!(
        "From: {} <{TIPSTER}>\r\nSubject: q\r\n\r\nquotes",
        fold("\"\\", 200_000)
    );
    let words = format!(
        "From: <{TIPSTER}>\r\nSubject: {}\r\n\r\nencoded words",
        // Just under the 1 MiB of header bytes a message may have.
        fold("=?utf-8?q?=C3=A9?= ", 50_000)
    );
    let broken_words = format!(
        "From: <{TIPSTER}>\r\nSubject: {}\r\n\r\nbroken words",
        fold("=?utf-8?b?", 95_000)
    );
    let params = format!(
        "From: <{TIPSTER}>\r\nContent-Type: text/plain; {}\r\n\r\nparameters",
        fold("a*0*=x; ", 100_000)
    );
    let name = format!(
        "From: \"{}\" <{TIPSTER}>\r\nSubject: n\r\n\r\n{}",
        fold("Ana ", 100_000),
        "Ana was here.\r\n".repeat(1_000)
    );
    let base64_garbage = format!(
        "From: <{TIPSTER}>\r\nContent-Transfer-Encoding: base64\r\n\r\n{}",
        fold("!!!!====", 100_000).replace("\r\n ", "\r\n")
    );
    let qp = format!(
        "From: <{TIPSTER}>\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n{}",
        "=\r\n".repeat(1_000_000)
    );
    let html = format!(
        "From: <{TIPSTER}>\r\nContent-Type: text/html\r\n\r\n{}hi",
        "<div><!-- <b\r\n".repeat(200_000)
    );
    let cases: Vec<(&str, String, &str)> = vec![
        ("nested comments", comments, "250 2.0.0"),
        ("groups", groups, "250 2.0.0"),
        ("quotes", quotes, "250 2.0.0"),
        ("encoded words", words, "250 2.0.0"),
        ("broken encoded words", broken_words, "250 2.0.0"),
        ("parameters", params, "250 2.0.0"),
        ("long name", name, "250 2.0.0"),
        ("base64 garbage", base64_garbage, "550 5.6.0"),
        ("soft line breaks", qp, "550 5.6.0"),
        ("html", html, "550 5.6.0"),
        (
            "header bytes",
            format!(
                "From: <{TIPSTER}>\r\nReferences: {}\r\n\r\nids",
                fold("<a>", 1_000_000)
            ),
            "550 5.6.0 Message refused: too many MIME parts",
        ),
    ];
    let mut stored = 0;
    let mut wrong = Vec::new();
    for (name, mail, expected) in cases {
        let reply = send(&app, mail.as_bytes()).await;
        if !reply.starts_with(expected) {
            wrong.push(format!("{name}: {reply}"));
        }
        stored += usize::from(expected.starts_with("250"));
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    a_normal_tip_still_works(&app, stored).await;
}
