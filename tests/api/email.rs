//! The email channel end to end: real SMTP clients (lettre, Python's smtplib,
//! a raw socket) against the gateway's listener, sealed tips opened with the
//! recipients' keys, replies delivered to a real SMTP server (aiosmtpd).

use std::time::Duration;

use lettre::AsyncTransport;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};

use crate::support::app::{TestApp, open_tip, random_hex};
use crate::support::canary::assert_nowhere;
use crate::support::email::{Sink, TIP_ADDRESS, code, spawn_email_app};
use crate::support::photo::jpeg_with_exif;
use crate::support::private_redis::PrivateRedis;
use tipwire::domain::{Channel, TipDocument};

const TIPSTER: &str = "resident.tipster@example.net";

/// The one alert in the stream, opened with the escrow key (emailed tips go
/// to everyone: the tipster names no zone).
async fn only_tip(app: &TestApp) -> TipDocument {
    let alerts = app.alerts().await;
    assert_eq!(alerts.len(), 1, "exactly one tip stored");
    let alert = &alerts[0];
    assert_eq!(alert.entry.channel, Channel::Email.as_str());
    let doc = open_tip(alert, &app.escrow).expect("escrow opens the tip");
    assert_eq!(
        open_tip(alert, &app.mediator),
        Some(doc.clone()),
        "the zone's mediator opens it too"
    );
    doc
}

fn message(from: &str, subject: &str, text: &str) -> lettre::Message {
    lettre::Message::builder()
        .from(from.parse().unwrap())
        .to(TIP_ADDRESS.parse().unwrap())
        .subject(subject)
        .body(text.to_owned())
        .unwrap()
}

#[tokio::test]
async fn mail_from_lettre_arrives_sealed_with_its_exact_text_and_a_photo_without_exif() {
    let app = spawn_email_app(|_| {}).await;
    let canary = format!("CANARY-GPS-{}", random_hex(8));
    let photo = jpeg_with_exif(&canary);
    let text = "Dos grupos discutiendo en la esquina de 5th y Main.\r\nUno dijo que volvería esta noche — con amigos.";
    let mail = lettre::Message::builder()
        .from(Mailbox::new(None, TIPSTER.parse().unwrap()))
        .to(TIP_ADDRESS.parse().unwrap())
        .subject("Pelea esta noche")
        .multipart(
            MultiPart::mixed()
                .singlepart(SinglePart::plain(text.to_owned()))
                .singlepart(
                    Attachment::new("car.jpg".into())
                        .body(photo.clone(), ContentType::parse("image/jpeg").unwrap()),
                ),
        )
        .unwrap();
    let reply = app.send_with_lettre(&mail).await.unwrap();
    assert!(reply.starts_with("250"), "{reply}");

    let doc = only_tip(&app).await;
    assert_eq!(doc.text, text);
    assert_eq!(doc.subject.as_deref(), Some("Pelea esta noche"));
    assert_eq!(doc.zone, "unsure");
    assert_eq!(doc.attachments.len(), 1);
    let sealed = &doc.attachments[0];
    assert_eq!(sealed.content_type, "image/jpeg");
    assert_eq!(
        sealed.data,
        tipwire::privacy::metadata::strip(tipwire::privacy::metadata::ImageKind::Jpeg, &photo)
            .unwrap(),
        "the photo is the sent one, minus its metadata"
    );
    assert!(!crate::support::canary::contains(&sealed.data, &canary));
}

#[tokio::test]
async fn mail_from_python_smtplib_arrives_sealed_with_its_pdf_withheld_and_the_mediator_told() {
    let app = spawn_email_app(|_| {}).await;
    let message = format!(
        "From: Resident <{TIPSTER}>\r\nTo: {TIP_ADDRESS}\r\nSubject: =?utf-8?q?Coche_rojo_=C3=B1?=\r\n\
         Message-ID: <py-{id}@example.net>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
         A red car keeps circling the block =E2=80=94 third time today.\r\n\
         --b1\r\nContent-Type: application/pdf; name=\"flyer.pdf\"\r\nContent-Disposition: attachment; filename=\"flyer.pdf\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQKJSBmbHllcgo=\r\n--b1--\r\n",
        id = random_hex(8)
    );
    let answer = app
        .send_with_smtplib(TIPSTER, TIP_ADDRESS, message.as_bytes())
        .await;
    assert_eq!(answer, "sent 250");

    let doc = only_tip(&app).await;
    assert_eq!(
        doc.text.trim_end(),
        "A red car keeps circling the block — third time today."
    );
    assert_eq!(doc.subject.as_deref(), Some("Coche rojo ñ"));
    assert!(doc.attachments.is_empty(), "PDF metadata cannot be cleaned");
    assert_eq!(
        doc.withheld,
        [tipwire::domain::Withheld {
            kind: tipwire::domain::AttachmentKind::Pdf,
            reason: tipwire::domain::WithheldReason::CannotClean,
        }]
    );
}

#[tokio::test]
async fn the_implicit_tls_port_takes_mail_too() {
    let app = spawn_email_app(|_| {}).await;
    let reply = app
        .lettre(true)
        .send(message(TIPSTER, "Hello", "Over TLS from the first byte."))
        .await
        .unwrap();
    assert_eq!(reply.code().to_string(), "250");
    assert_eq!(
        only_tip(&app).await.text.trim_end(),
        "Over TLS from the first byte."
    );
}

#[tokio::test]
async fn a_reply_reaches_the_tipster_threaded_from_the_tip_address_with_no_mediator_identity() {
    let sink = Sink::start(1);
    let ca_file = sink.ca_file();
    let app = spawn_email_app(|s| {
        s.email.outbound.enabled = true;
        s.email.outbound.relay_host = "localhost".into();
        s.email.outbound.relay_port = sink.port;
        s.email.outbound.ca_file = ca_file;
        s.email.outbound.from_name = "Community tip line".into();
    })
    .await;
    let original_id = format!("first-{}@example.net", random_hex(8));
    let mail = lettre::Message::builder()
        .from(TIPSTER.parse().unwrap())
        .to(TIP_ADDRESS.parse().unwrap())
        .subject("Fight tonight")
        .message_id(Some(format!("<{original_id}>")))
        .body("They said 9pm behind the rec center.".to_owned())
        .unwrap();
    assert!(
        app.send_with_lettre(&mail)
            .await
            .unwrap()
            .starts_with("250")
    );
    let doc = only_tip(&app).await;
    let thread = tipwire::domain::ThreadId::parse(&doc.thread).unwrap();

    app.queue_reply(
        &thread,
        "We hear you. Someone is on it tonight.",
        tipwire::outbound::relay::Kind::Reply,
    )
    .await;
    // The relay answers 451 once: the reply is scheduled again, then sent.
    let t0 = tipwire::clock::now_ms();
    let first = app.relay.step_at(t0).await.unwrap();
    assert_eq!(first.retried, 1);
    // Due on a minute boundary within two minutes of the failure.
    let later = app.relay.step_at(t0 + 120_000).await.unwrap();
    assert_eq!(later.sent, 1, "the retry was delivered");

    let received = sink.received();
    assert_eq!(received.len(), 1);
    let (envelope, raw) = &received[0];
    let raw = String::from_utf8(raw.clone()).unwrap();
    // From the tip address tagged with the thread's token (email_threads.rs).
    let lines: Vec<&str> = envelope.lines().collect();
    assert_eq!(lines.len(), 2);
    let tagged = lines[0];
    assert!(
        tagged.starts_with("tips+") && tagged.ends_with("@tips.example.org"),
        "{tagged}"
    );
    assert_eq!(lines[1], TIPSTER);
    let headers = raw.split("\r\n\r\n").next().unwrap();
    let header = |name: &str| {
        headers
            .lines()
            .find(|l| {
                l.to_ascii_lowercase()
                    .starts_with(&format!("{}:", name.to_ascii_lowercase()))
            })
            .map(|l| l.split_once(':').unwrap().1.trim().to_owned())
    };
    assert_eq!(
        header("From").unwrap(),
        format!("\"Community tip line\" <{tagged}>")
    );
    assert_eq!(header("To").unwrap(), TIPSTER);
    // The subject is part of the tip, so it is not kept for replies; the
    // tipster's client threads by In-Reply-To and References.
    assert_eq!(header("Subject").unwrap(), "Re: your message");
    assert_eq!(header("In-Reply-To").unwrap(), format!("<{original_id}>"));
    assert_eq!(header("References").unwrap(), format!("<{original_id}>"));
    assert!(
        header("Message-ID")
            .unwrap()
            .ends_with("@tips.example.org>")
    );
    assert!(raw.contains("We hear you. Someone is on it tonight."));
    for secret in ["Test mediator", "X-Mailer", "User-Agent"] {
        assert!(!raw.contains(secret), "{secret} in the reply");
    }
    let hostname = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    if !hostname.trim().is_empty() {
        assert!(
            !raw.contains(hostname.trim()),
            "the machine's name in the reply"
        );
    }
}

#[tokio::test]
async fn no_canary_from_a_mail_reaches_redis_logs_metrics_disk_or_the_sealed_tip() {
    let app = spawn_email_app(|_| {}).await;
    let tag = random_hex(8);
    let from = format!("canary-from-{tag}@example.net");
    let name = format!("Zelda Canaryname{tag}");
    let received = format!("canary-host-{tag}.example.net");
    let message_id = format!("canary-msgid-{tag}@example.net");
    let origin_ip = "198.51.100.23";
    let dkim = format!("canary-dkim-{tag}");
    let agent = format!("CanaryMailer/{tag}");
    let signature = format!("Canary Signature Line {tag}");
    let message = format!(
        "Received: from {received} ([203.0.113.77]) by mx.example.org\r\n\
         DKIM-Signature: v=1; a=rsa-sha256; d=example.net; s=s1; b={dkim}\r\n\
         From: {name} <{from}>\r\nTo: {TIP_ADDRESS}\r\nSubject: Something is going on\r\n\
         Message-ID: <{message_id}>\r\nX-Originating-IP: [{origin_ip}]\r\nUser-Agent: {agent}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n\
         Two cars keep parking by the school. Zelda here, write me at {from}.\r\n\
         \r\n-- \r\n{signature}\r\nPhone 555-0100\r\n"
    );
    let answer = app
        .send_with_smtplib(&from, TIP_ADDRESS, message.as_bytes())
        .await;
    assert_eq!(answer, "sent 250");
    let doc = only_tip(&app).await;
    assert!(doc.text.starts_with("Two cars keep parking by the school."));
    let sealed = serde_json::to_string(&doc).unwrap();
    let canaries = [
        from.as_str(),
        &format!("Canaryname{tag}"),
        "Zelda",
        &received,
        &message_id,
        origin_ip,
        "203.0.113.77",
        &dkim,
        &agent,
        &signature,
        "555-0100",
    ];
    for canary in canaries {
        assert!(!sealed.contains(canary), "{canary} sealed into the tip");
    }
    assert_nowhere(&app, &canaries);
}

#[tokio::test]
async fn bad_mail_is_refused_cleanly_the_listener_keeps_serving_and_nothing_is_stored() {
    let app = spawn_email_app(|s| {
        s.email.max_message_bytes = 20_000;
        s.email.idle_timeout = std::time::Duration::from_secs(1);
    })
    .await;

    // A relay attempt.
    let mut c = app.raw_smtp().await;
    assert_eq!(c.command("EHLO client.example").await, "250");
    assert_eq!(c.command("MAIL FROM:<spammer@example.net>").await, "250");
    assert_eq!(c.command("RCPT TO:<victim@elsewhere.example>").await, "550");
    assert_eq!(c.command("DATA").await, "503");

    // An oversized message.
    let mut c = app.raw_smtp().await;
    c.begin(TIPSTER).await;
    let line = format!("{}\r\n", "x".repeat(900));
    c.send(format!("From: <{TIPSTER}>\r\nSubject: big\r\n\r\n").as_bytes())
        .await;
    for _ in 0..40 {
        c.send(line.as_bytes()).await;
    }
    c.send(b".\r\n").await;
    assert_eq!(code(&c.reply().await), "552");

    // Malformed MIME, and 8-bit garbage with no header section at all.
    let malformed = format!(
        "From: <{TIPSTER}>\r\nContent-Type: multipart/mixed; boundary=\"never\"\r\n\
         MIME-Version: 1.0\r\n\r\n"
    );
    let garbage: Vec<u8> = (0..2000u32).map(|i| 0x80 + (i * 37 % 0x7f) as u8).collect();
    let garbage = garbage
        .chunks(70)
        .flat_map(|c| [c, b"\r\n"].concat())
        .collect::<Vec<u8>>();
    for body in [malformed.into_bytes(), garbage] {
        let mut c = app.raw_smtp().await;
        c.begin(TIPSTER).await;
        c.send(&body).await;
        c.send(b"\r\n.\r\n").await;
        assert_eq!(code(&c.reply().await), "550");
        assert_eq!(c.command("QUIT").await, "221");
    }

    // Smuggling: bare-LF dots must not end the data and start a new message.
    let mut c = app.raw_smtp().await;
    c.begin(TIPSTER).await;
    c.send(
        format!(
            "From: <{TIPSTER}>\r\nSubject: a\r\n\r\nfirst\n.\nMAIL FROM:<x@evil.example>\n\
             RCPT TO:<{TIP_ADDRESS}>\nDATA\nFrom: <x@evil.example>\n\nsmuggled\r\n.\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(code(&c.reply().await), "554");

    // A client that stalls mid-DATA is cut off after the idle timeout.
    let mut c = app.raw_smtp().await;
    c.begin(TIPSTER).await;
    c.send(format!("From: <{TIPSTER}>\r\nSubject: half\r\n\r\nhalf a mess").as_bytes())
        .await;
    let cut = c.reply().await;
    assert_eq!(code(&cut), "421", "{cut}");

    // 1,000 pipelined commands: answered up to the limit, then 421 and closed.
    let mut c = app.raw_smtp().await;
    c.send(&b"NOOP\r\n".repeat(1000)).await;
    let mut codes = Vec::new();
    loop {
        let reply = c.reply().await;
        if reply.is_empty() {
            break;
        }
        codes.push(code(&reply));
    }
    assert_eq!(codes.len(), 101);
    assert_eq!(codes.last().unwrap(), "421");

    // Meanwhile the listener serves everyone else, and only this tip is stored.
    let ok = app
        .send_with_lettre(&message(
            TIPSTER,
            "Still here",
            "A good tip after all that.",
        ))
        .await
        .unwrap();
    assert!(ok.starts_with("250"));
    assert_eq!(
        only_tip(&app).await.text.trim_end(),
        "A good tip after all that."
    );
    let outcomes = app.metrics.render();
    assert!(outcomes.contains("tipwire_smtp_sessions_total{outcome=\"idle-timeout\"}"));
    assert!(outcomes.contains("tipwire_smtp_sessions_total{outcome=\"too-many-commands\"} 1"));
}

#[tokio::test]
async fn with_redis_down_the_client_gets_451_and_its_retry_is_stored_once_redis_is_back() {
    let mut redis = PrivateRedis::start();
    let url = redis.url();
    let app = spawn_email_app(|s| s.redis.url = url).await;
    let mail = lettre::Message::builder()
        .from(TIPSTER.parse().unwrap())
        .to(TIP_ADDRESS.parse().unwrap())
        .subject("Retry me")
        .message_id(Some(format!("<retry-{}@example.net>", random_hex(8))))
        .body("Sent while Redis was down.".to_owned())
        .unwrap();

    redis.kill();
    let refused = app.send_with_lettre(&mail).await.unwrap_err();
    assert!(
        refused.contains("451") || refused.to_lowercase().contains("transient"),
        "{refused}"
    );
    assert!(
        refused.contains("may not have been stored"),
        "the 451 does not claim the message was not stored: {refused}"
    );

    redis.start_again();
    // A sending server retries the same message (same Message-ID); it is stored
    // once even when the retry repeats.
    let mut stored = false;
    for _ in 0..40 {
        if app.send_with_lettre(&mail).await.is_ok() {
            stored = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(stored, "accepted once Redis was back");
    assert!(
        app.send_with_lettre(&mail)
            .await
            .unwrap()
            .starts_with("250")
    );
    assert_eq!(
        only_tip(&app).await.text.trim_end(),
        "Sent while Redis was down."
    );
    redis.stop();
}

#[tokio::test]
async fn a_nudge_reaches_a_mediator_through_a_real_relay_and_names_only_zone_and_urgency() {
    use tipwire::outbound::email::{MailSender, Nudge};
    let sink = Sink::start(0);
    let mut settings = tipwire::config::Settings::load(None).unwrap();
    let out = &mut settings.email.outbound;
    out.enabled = true;
    out.relay_host = "localhost".into();
    out.relay_port = sink.port;
    out.ca_file = sink.ca_file();
    out.nudge_from = tipwire::domain::EmailAddress::parse("alerts@tips.example.org").ok();
    let sender = MailSender::from_settings(&settings.email.outbound).unwrap();
    let mediator = tipwire::domain::EmailAddress::parse("dee@program.example").unwrap();
    sender
        .send_nudge(&Nudge {
            to: &mediator,
            zone_name: "North side",
            priority: tipwire::domain::Priority::Now,
        })
        .await
        .unwrap();

    let received = sink.received();
    assert_eq!(received.len(), 1);
    let (envelope, raw) = &received[0];
    assert_eq!(
        envelope.lines().collect::<Vec<_>>(),
        ["alerts@tips.example.org", "dee@program.example"]
    );
    let raw = String::from_utf8(raw.clone()).unwrap();
    let (headers, body) = raw.split_once("\r\n\r\n").unwrap();
    assert!(headers.contains("Auto-Submitted: auto-generated"));
    // Nothing but the zone and the urgency: no tip id, thread or text.
    assert_eq!(
        body.replace("\r\n", "\n").trim_end(),
        "A new urgent alert for zone North side. Open tipwire.\n\
         The details are in the app, never in email."
    );
}

#[tokio::test]
async fn on_shutdown_a_half_sent_message_gets_421_and_is_not_stored_and_the_port_closes() {
    let app = spawn_email_app(|_| {}).await;
    let mut client = app.raw_smtp().await;
    client.begin(TIPSTER).await;
    client
        .send(format!("From: <{TIPSTER}>\r\nSubject: half\r\n\r\nhalf of a ti").as_bytes())
        .await;
    app.drain
        .stop(app.handle.clone(), Duration::from_secs(1))
        .await;
    let last = client.reply().await;
    assert!(last.starts_with("421 4.3.2"), "{last}");
    // The listener no longer accepts.
    let mut refused = false;
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(("127.0.0.1", app.smtp_port()))
            .await
            .is_err()
        {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "the SMTP port still accepts after shutdown");
    assert!(app.alerts().await.is_empty());
}

#[tokio::test]
async fn a_forwarded_message_bomb_is_refused_and_the_gateway_keeps_serving() {
    let app = spawn_email_app(|_| {}).await;
    let mut c = app.raw_smtp().await;
    c.begin(TIPSTER).await;
    // 100,000 nested message/rfc822 levels in 3.3 MB: mail-parser alone
    // would overflow the stack and abort the process.
    let mut bomb = format!("From: <{TIPSTER}>\r\n").into_bytes();
    for _ in 0..100_000 {
        bomb.extend_from_slice(b"Content-Type: message/rfc822\r\n\r\n");
    }
    bomb.extend_from_slice(b"Subject: x\r\n\r\nbody\r\n.\r\n");
    c.send(&bomb).await;
    assert_eq!(code(&c.reply().await), "550");
    let ok = app
        .send_with_lettre(&message(TIPSTER, "After the bomb", "Still serving."))
        .await
        .unwrap();
    assert!(ok.starts_with("250"));
    assert_eq!(only_tip(&app).await.text.trim_end(), "Still serving.");
}

#[tokio::test]
async fn commands_pipelined_behind_starttls_close_the_connection() {
    let app = spawn_email_app(|_| {}).await;
    let mut c = app.raw_smtp().await;
    assert_eq!(c.command("EHLO client.example").await, "250");
    // Sent in clear after STARTTLS: anyone on the path could have added them.
    c.send(b"STARTTLS\r\nMAIL FROM:<injected@evil.example>\r\n")
        .await;
    assert_eq!(code(&c.reply().await), "554");
    assert_eq!(c.reply().await, "", "the connection is closed");
}

#[tokio::test]
async fn a_sender_over_its_limit_gets_450_and_so_does_a_flooding_address() {
    let app = spawn_email_app(|s| {
        s.rate_limits.email.per_client.count = std::num::NonZeroU32::new(2).unwrap();
        s.rate_limits.email.per_address.count = std::num::NonZeroU32::new(4).unwrap();
    })
    .await;
    let mut replies = Vec::new();
    for i in 0..3 {
        let mail = message(TIPSTER, "limit", &format!("message {i}"));
        replies.push(app.send_with_lettre(&mail).await);
    }
    assert!(replies[0].as_ref().unwrap().starts_with("250"));
    assert!(replies[1].as_ref().unwrap().starts_with("250"));
    assert!(
        replies[2].as_ref().unwrap_err().contains("450"),
        "{replies:?}"
    );
    // Another sender from the same address: two more, then the address's
    // own limit (checked at MAIL FROM) refuses.
    let other = "neighbour@example.net";
    assert!(
        app.send_with_lettre(&message(other, "a", "one"))
            .await
            .is_ok()
    );
    let refused = app.send_with_lettre(&message(other, "b", "two")).await;
    assert!(refused.unwrap_err().contains("450"));
    assert_eq!(app.alerts().await.len(), 3);
    assert!(
        app.metrics
            .render()
            .contains("tipwire_rate_limited_total{channel=\"email\"")
    );
}

#[tokio::test]
async fn abandoned_messages_do_not_use_up_the_channels_limit_for_real_mail() {
    let app = spawn_email_app(|s| {
        s.rate_limits.email.global.count = std::num::NonZeroU32::new(2).unwrap();
        s.rate_limits.email.global.period = std::time::Duration::from_secs(3600);
    })
    .await;
    let mut c = app.raw_smtp().await;
    assert_eq!(c.command("EHLO client.example").await, "250");
    for _ in 0..5 {
        assert_eq!(c.command("MAIL FROM:<junk@example.net>").await, "250");
        assert_eq!(c.command("RSET").await, "250");
    }
    for i in 0..2 {
        let sent = app
            .send_with_lettre(&message(TIPSTER, "real", &format!("tip {i}")))
            .await;
        assert!(sent.as_ref().unwrap().starts_with("250"), "{sent:?}");
    }
    // The channel's limit still holds, for messages worth sealing.
    let refused = app
        .send_with_lettre(&message(TIPSTER, "real", "tip 2"))
        .await;
    assert!(refused.as_ref().unwrap_err().contains("450"), "{refused:?}");
    assert_eq!(app.alerts().await.len(), 2);
}

#[tokio::test]
async fn one_address_cannot_hold_more_than_its_share_of_connections() {
    let app = spawn_email_app(|s| s.email.max_connections_per_address = 2).await;
    let _first = app.raw_smtp().await;
    let _second = app.raw_smtp().await;
    let mut third = tokio::net::TcpStream::connect(("127.0.0.1", app.smtp_port()))
        .await
        .unwrap();
    let mut greeting = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut third, &mut greeting)
        .await
        .unwrap();
    assert!(greeting.starts_with("421 4.7.0"), "{greeting}");
    drop(_first);
    // The slot is given back when a connection ends.
    let mut again = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", app.smtp_port()))
            .await
            .unwrap();
        let mut buf = [0u8; 3];
        tokio::io::AsyncReadExt::read_exact(&mut s, &mut buf)
            .await
            .unwrap();
        if &buf == b"220" {
            again = Some(s);
            break;
        }
    }
    assert!(again.is_some());
}

#[tokio::test]
async fn auto_replies_and_mail_from_the_tip_address_itself_are_refused() {
    let app = spawn_email_app(|_| {}).await;
    let auto = format!(
        "From: <{TIPSTER}>\r\nAuto-Submitted: auto-replied\r\nSubject: Out of office\r\n\r\n\
         I am away until Monday. Call me at 555-0199.\r\n"
    );
    let answer = app
        .send_with_smtplib(TIPSTER, TIP_ADDRESS, auto.as_bytes())
        .await;
    assert!(answer.starts_with("refused 550"), "{answer}");
    let looped = format!("From: <{TIP_ADDRESS}>\r\nSubject: loop\r\n\r\nhello\r\n");
    let answer = app
        .send_with_smtplib(TIPSTER, TIP_ADDRESS, looped.as_bytes())
        .await;
    assert!(answer.starts_with("refused 550"), "{answer}");
    assert!(app.alerts().await.is_empty());
}
