use super::*;

use std::net::SocketAddr;
use std::path::PathBuf;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::server::tls::DevCert;

fn addr(s: &str) -> EmailAddress {
    EmailAddress::parse(s).unwrap()
}

fn letterhead() -> Letterhead {
    Letterhead {
        from_name: Some("Community tip line".to_owned()),
        nudge_from: addr("alerts@alerts.example.org"),
    }
}

fn text(message: &Message) -> String {
    String::from_utf8(message.formatted()).unwrap()
}

/// The header section with folded lines joined, one header per entry.
fn headers(raw: &str) -> Vec<String> {
    let head = raw.split("\r\n\r\n").next().unwrap();
    head.replace("\r\n ", " ")
        .replace("\r\n\t", " ")
        .split("\r\n")
        .map(str::to_owned)
        .collect()
}

fn header(raw: &str, name: &str) -> Option<String> {
    let prefix = format!("{}:", name.to_ascii_lowercase());
    headers(raw)
        .into_iter()
        .find(|h| h.to_ascii_lowercase().starts_with(&prefix))
        .map(|h| h[prefix.len()..].trim().to_owned())
}

fn body_of(raw: &[u8]) -> String {
    let parsed = mail_parser::MessageParser::default().parse(raw).unwrap();
    parsed.body_text(0).unwrap().replace("\r\n", "\n")
}

fn reply<'a>(
    to: &'a EmailAddress,
    from: &'a EmailAddress,
    references: &'a [String],
) -> MailReply<'a> {
    MailReply {
        to,
        from,
        subject: Some("Fight planned at the park"),
        in_reply_to: Some("CAF00d@mail.example.net"),
        references,
        body: "Thank you. Can you tell us when?\n.\n",
    }
}

/// The kernel's host name (what lettre's default EHLO would use).
fn this_hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .expect("Linux exposes the host name");
    let name = name.trim().to_ascii_lowercase();
    assert!(!name.is_empty(), "this machine has a host name");
    name
}

/// Whether `text` names `host` as a whole name or as a domain's first or
/// last labels (a short name like "vm" may sit inside longer words).
fn names_host(text: &str, host: &str) -> bool {
    text.to_ascii_lowercase()
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '.'))
        .any(|token| {
            token == host
                || token.starts_with(&format!("{host}."))
                || token.ends_with(&format!(".{host}"))
                || token.contains(&format!(".{host}."))
        })
}

#[test]
fn a_reply_carries_the_threading_headers_exactly() {
    let (to, from) = (addr("ana@mail.example.net"), addr("tips@tips.example.org"));
    let refs = vec![
        "root@mail.example.net".to_owned(),
        "second@mail.example.net".to_owned(),
    ];
    let raw = text(&letterhead().reply(&reply(&to, &from, &refs)).unwrap());
    assert_eq!(
        header(&raw, "In-Reply-To").as_deref(),
        Some("<CAF00d@mail.example.net>")
    );
    assert_eq!(
        header(&raw, "References").as_deref(),
        Some("<root@mail.example.net> <second@mail.example.net> <CAF00d@mail.example.net>")
    );
    assert_eq!(
        header(&raw, "Subject").as_deref(),
        Some("Re: Fight planned at the park")
    );
    assert_eq!(
        header(&raw, "From").as_deref(),
        Some("\"Community tip line\" <tips@tips.example.org>")
    );
    assert_eq!(header(&raw, "To").as_deref(), Some("ana@mail.example.net"));
    assert_eq!(header(&raw, "MIME-Version").as_deref(), Some("1.0"));
    assert_eq!(
        header(&raw, "Content-Type").as_deref(),
        Some("text/plain; charset=utf-8")
    );
    assert!(header(&raw, "Date").is_some());
    assert!(header(&raw, "Content-Transfer-Encoding").is_some());
    assert!(
        header(&raw, "Auto-Submitted").is_none(),
        "a person wrote the reply"
    );
    for absent in ["X-Mailer", "User-Agent", "Received"] {
        assert!(header(&raw, absent).is_none(), "{absent} is present");
    }
}

#[test]
fn in_reply_to_is_not_repeated_when_it_already_ends_the_references() {
    let (to, from) = (addr("ana@mail.example.net"), addr("tips@tips.example.org"));
    let refs = vec![
        "root@mail.example.net".to_owned(),
        "CAF00d@mail.example.net".to_owned(),
    ];
    let raw = text(&letterhead().reply(&reply(&to, &from, &refs)).unwrap());
    assert_eq!(
        header(&raw, "References").as_deref(),
        Some("<root@mail.example.net> <CAF00d@mail.example.net>")
    );
}

#[test]
fn a_first_reply_references_only_the_tipsters_message() {
    let (to, from) = (addr("ana@mail.example.net"), addr("tips@tips.example.org"));
    let raw = text(&letterhead().reply(&reply(&to, &from, &[])).unwrap());
    assert_eq!(
        header(&raw, "References").as_deref(),
        Some("<CAF00d@mail.example.net>")
    );
}

#[test]
fn a_reply_without_a_message_id_has_no_threading_headers() {
    let (to, from) = (addr("ana@mail.example.net"), addr("tips@tips.example.org"));
    let mut r = reply(&to, &from, &[]);
    r.in_reply_to = None;
    let raw = text(&letterhead().reply(&r).unwrap());
    assert!(header(&raw, "In-Reply-To").is_none());
    assert!(header(&raw, "References").is_none());
}

#[test]
fn message_ids_that_could_break_a_header_are_dropped() {
    assert_eq!(message_id("<a@b>").as_deref(), Some("<a@b>"));
    for bad in [
        "",
        "a b@c",
        "a@b\r\nBcc: x@y",
        "<a@b",
        "a>@b",
        "é@b",
        &"x".repeat(251),
    ] {
        assert_eq!(message_id(bad), None, "{bad:?} was kept");
    }
}

#[test]
fn a_long_thread_keeps_its_first_and_latest_references() {
    let refs: Vec<String> = (0..30).map(|i| format!("m{i}@x.example")).collect();
    let ids = references(&refs, Some("<last@x.example>".to_owned()));
    assert_eq!(ids.len(), MAX_REFERENCES);
    assert_eq!(ids.first().map(String::as_str), Some("<m0@x.example>"));
    assert_eq!(ids.last().map(String::as_str), Some("<last@x.example>"));
    assert_eq!(ids.get(1).map(String::as_str), Some("<m12@x.example>"));
}

#[test]
fn re_is_not_doubled_and_a_missing_subject_gets_a_default() {
    assert_eq!(reply_subject(Some("Re: fight")), "Re: fight");
    assert_eq!(reply_subject(Some("RE: fight")), "RE: fight");
    assert_eq!(reply_subject(Some("re:fight")), "re:fight");
    assert_eq!(reply_subject(Some("fight")), "Re: fight");
    assert_eq!(
        reply_subject(Some("Regarding the fight")),
        "Re: Regarding the fight"
    );
    assert_eq!(reply_subject(None), "Re: your message");
    assert_eq!(reply_subject(Some(" \r\n ")), "Re: your message");
}

#[test]
fn line_breaks_in_the_subject_cannot_add_a_header() {
    let (to, from) = (addr("ana@mail.example.net"), addr("tips@tips.example.org"));
    let mut r = reply(&to, &from, &[]);
    r.subject = Some("hello\r\nBcc: spy@evil.example\r\n\r\nforged body");
    let raw = text(&letterhead().reply(&r).unwrap());
    assert_eq!(
        header(&raw, "Subject").as_deref(),
        Some("Re: hello Bcc: spy@evil.example forged body")
    );
    assert!(header(&raw, "Bcc").is_none());
    assert!(!raw.contains("\r\nBcc:") && !raw.contains("\nforged body"));
}

#[test]
fn a_long_subject_is_cut() {
    let long = "word ".repeat(200);
    assert!(reply_subject(Some(&long)).chars().count() <= MAX_SUBJECT_CHARS + 4);
}

#[test]
fn the_message_id_is_random_hex_at_the_from_domain() {
    let (to, from) = (addr("ana@mail.example.net"), addr("tips@tips.example.org"));
    let raw = text(&letterhead().reply(&reply(&to, &from, &[])).unwrap());
    let id = header(&raw, "Message-ID").unwrap();
    let inner = id.strip_prefix('<').unwrap().strip_suffix('>').unwrap();
    let (left, domain) = inner.split_once('@').unwrap();
    assert_eq!(domain, "tips.example.org");
    assert_eq!(left.len(), 32);
    assert!(left.bytes().all(|b| b.is_ascii_hexdigit()));

    let nudge = Nudge {
        to: &to,
        zone_name: "North",
        priority: Priority::Now,
    };
    let raw = text(&letterhead().nudge(&nudge).unwrap());
    let id = header(&raw, "Message-ID").unwrap();
    assert!(id.ends_with("@alerts.example.org>"), "{id}");
    assert_ne!(new_message_id(&from), new_message_id(&from));
}

#[test]
fn a_reply_body_goes_out_exactly_as_written() {
    let (to, from) = (addr("ana@mail.example.net"), addr("tips@tips.example.org"));
    let body = "Gracias. ¿Cuándo? 🙏\n.\n.hidden\nFrom the team\n";
    let mut r = reply(&to, &from, &[]);
    r.body = body;
    let message = letterhead().reply(&r).unwrap();
    assert_eq!(body_of(&message.formatted()), body);
}

#[test]
fn a_nudge_says_only_the_zone_and_the_urgency() {
    let to = addr("mediator@example.org");
    let cases = [
        (
            Priority::Now,
            "New urgent alert: North",
            "A new urgent alert for zone North. Open tipwire.",
        ),
        (
            Priority::Today,
            "New alert: North",
            "A new alert for zone North. Open tipwire.",
        ),
        (
            Priority::Fyi,
            "New low-priority alert: North",
            "A new low-priority alert for zone North. Open tipwire.",
        ),
    ];
    for (priority, subject, first_line) in cases {
        let nudge = Nudge {
            to: &to,
            zone_name: "North",
            priority,
        };
        let raw = text(&letterhead().nudge(&nudge).unwrap());
        assert_eq!(header(&raw, "Subject").as_deref(), Some(subject));
        assert_eq!(
            body_of(raw.as_bytes()),
            format!("{first_line}\nThe details are in the app, never in email.\n")
        );
        assert_eq!(
            header(&raw, "Auto-Submitted").as_deref(),
            Some(AUTO_SUBMITTED)
        );
        assert_eq!(
            header(&raw, "From").as_deref(),
            Some("\"Community tip line\" <alerts@alerts.example.org>")
        );
        assert_eq!(header(&raw, "To").as_deref(), Some("mediator@example.org"));
        let names: Vec<String> = headers(&raw)
            .iter()
            .map(|h| h.split(':').next().unwrap().to_ascii_lowercase())
            .collect();
        assert_eq!(
            names,
            [
                "from",
                "to",
                "subject",
                "date",
                "message-id",
                "auto-submitted",
                "mime-version",
                "content-type",
                "content-transfer-encoding"
            ],
            "unexpected headers in {raw}"
        );
    }
}

#[test]
fn the_hostname_check_finds_a_name_as_a_word_or_a_label() {
    assert!(names_host("EHLO vm", "vm"));
    assert!(names_host("<abc@vm.example.org>", "vm"));
    assert!(names_host("from mail.vm", "vm"));
    assert!(!names_host("Received: nothing; vmware words", "vm"));
}

#[test]
fn no_message_names_this_machine() {
    let host = this_hostname();
    let (to, from) = (addr("ana@mail.example.net"), addr("tips@tips.example.org"));
    let reply = text(&letterhead().reply(&reply(&to, &from, &[])).unwrap());
    let nudge = Nudge {
        to: &to,
        zone_name: "North",
        priority: Priority::Today,
    };
    let nudge = text(&letterhead().nudge(&nudge).unwrap());
    for raw in [reply, nudge] {
        assert!(!names_host(&raw, &host), "{host} in {raw}");
    }
}

// --- A tiny SMTP peer on loopback -------------------------------------

/// What the peer answers and whether it offers STARTTLS.
#[derive(Clone)]
struct Script {
    rcpt: &'static str,
    tls: Option<Arc<rustls::ServerConfig>>,
    /// Accept the connection and never say a word.
    silent: bool,
}

impl Script {
    fn accepting() -> Self {
        Self {
            rcpt: "250 ok",
            tls: None,
            silent: false,
        }
    }
}

#[derive(Default, Debug)]
struct Transcript {
    commands: Vec<String>,
    data: Vec<u8>,
    encrypted_data: bool,
}

/// Serves one connection; the join handle yields what the client said.
async fn spawn_peer(script: Script) -> (SocketAddr, tokio::task::JoinHandle<Transcript>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let handle = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut transcript = Transcript::default();
        if script.silent {
            // Until the client gives up and closes (or 10 s pass).
            let mut tcp = tcp;
            let mut sink = [0u8; 512];
            let drain = async { while tcp.read(&mut sink).await.is_ok_and(|n| n > 0) {} };
            let _ = tokio::time::timeout(Duration::from_secs(10), drain).await;
            return transcript;
        }
        let offer_tls = script.tls.is_some();
        let upgrade = session(tcp, &script, &mut transcript, true, offer_tls, false).await;
        if let (Some(tcp), Some(config)) = (upgrade, script.tls.clone()) {
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            if let Ok(tls) = acceptor.accept(tcp).await {
                session(tls, &script, &mut transcript, false, false, true).await;
            }
        }
        transcript
    });
    (address, handle)
}

/// One SMTP dialogue; returns the stream when the client asked for STARTTLS.
async fn session<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    script: &Script,
    transcript: &mut Transcript,
    greet: bool,
    offer_tls: bool,
    encrypted: bool,
) -> Option<S> {
    let mut io = BufReader::new(stream);
    if greet {
        io.write_all(b"220 peer.test ESMTP\r\n").await.ok()?;
    }
    loop {
        let mut line = String::new();
        if io.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let command = line.trim_end().to_owned();
        transcript.commands.push(command.clone());
        let verb = command.split(' ').next().unwrap_or("").to_ascii_uppercase();
        let answer: &str = match verb.as_str() {
            "EHLO" if offer_tls => "250-peer.test\r\n250 STARTTLS\r\n",
            "EHLO" | "HELO" => "250 peer.test\r\n",
            "STARTTLS" => {
                io.write_all(b"220 go ahead\r\n").await.ok()?;
                return Some(io.into_inner());
            }
            "MAIL" | "NOOP" | "RSET" => "250 ok\r\n",
            "RCPT" => {
                io.write_all(format!("{}\r\n", script.rcpt).as_bytes())
                    .await
                    .ok()?;
                continue;
            }
            "DATA" => {
                io.write_all(b"354 go on\r\n").await.ok()?;
                loop {
                    let mut raw = Vec::new();
                    if io.read_until(b'\n', &mut raw).await.ok()? == 0 {
                        return None;
                    }
                    if raw == b".\r\n" {
                        break;
                    }
                    // RFC 5321 §4.5.2: undo the client's dot-stuffing.
                    let raw = raw.strip_prefix(b".").unwrap_or(&raw);
                    transcript.data.extend_from_slice(raw);
                }
                transcript.encrypted_data = encrypted;
                "250 queued\r\n"
            }
            "QUIT" => {
                io.write_all(b"221 bye\r\n").await.ok()?;
                return None;
            }
            _ => "502 not here\r\n",
        };
        io.write_all(answer.as_bytes()).await.ok()?;
    }
}

fn settings(port: u16, tls: OutboundTls, ca_file: PathBuf) -> OutboundSettings {
    OutboundSettings {
        enabled: true,
        relay_host: "127.0.0.1".to_owned(),
        relay_port: port,
        tls,
        ca_file,
        username: String::new(),
        password_file: PathBuf::new(),
        from_name: "Community tip line".to_owned(),
        nudge_from: Some(addr("alerts@alerts.example.org")),
        timeout: Duration::from_secs(1),
    }
}

async fn send_one(script: Script) -> (Result<(), MailError>, Transcript) {
    let (address, peer) = spawn_peer(script).await;
    let sender =
        MailSender::from_settings(&settings(address.port(), OutboundTls::None, PathBuf::new()))
            .unwrap();
    let (to, from) = (addr("ana@mail.example.net"), addr("tips@tips.example.org"));
    let refs = vec!["root@mail.example.net".to_owned()];
    let result = sender.send_reply(&reply(&to, &from, &refs)).await;
    drop(sender);
    (result, peer.await.unwrap())
}

#[tokio::test]
async fn a_reply_reaches_a_loopback_relay_with_its_threading_headers() {
    let (result, transcript) = send_one(Script::accepting()).await;
    result.unwrap();
    assert_eq!(
        transcript.commands.first().map(String::as_str),
        Some("EHLO alerts.example.org")
    );
    assert!(
        transcript
            .commands
            .iter()
            .any(|c| c == "MAIL FROM:<tips@tips.example.org>")
    );
    assert!(
        transcript
            .commands
            .iter()
            .any(|c| c == "RCPT TO:<ana@mail.example.net>")
    );
    assert_eq!(transcript.commands.last().map(String::as_str), Some("QUIT"));
    let data = String::from_utf8(transcript.data.clone()).unwrap();
    assert_eq!(
        header(&data, "In-Reply-To").as_deref(),
        Some("<CAF00d@mail.example.net>")
    );
    assert_eq!(
        header(&data, "References").as_deref(),
        Some("<root@mail.example.net> <CAF00d@mail.example.net>")
    );
    assert_eq!(
        body_of(&transcript.data),
        "Thank you. Can you tell us when?\n.\n"
    );
    // Dot-stuffed on the wire, and no empty line added before the end.
    assert!(data.ends_with("\r\n\r\nThank you. Can you tell us when?\r\n.\r\n"));
    let host = this_hostname();
    let everything = format!("{}\n{data}", transcript.commands.join("\n"));
    assert!(!names_host(&everything, &host), "{host} was sent");
}

#[tokio::test]
async fn a_4xx_answer_to_rcpt_is_transient() {
    let (result, _) = send_one(Script {
        rcpt: "451 4.3.0 try later",
        ..Script::accepting()
    })
    .await;
    assert!(matches!(result, Err(MailError::Transient(_))), "{result:?}");
}

#[tokio::test]
async fn a_5xx_answer_to_rcpt_is_permanent_and_does_not_echo_the_relay() {
    let script = Script {
        rcpt: "550 5.1.1 <ana@mail.example.net>: no such user",
        ..Script::accepting()
    };
    let (result, _) = send_one(script).await;
    let Err(MailError::Permanent(reason)) = result else {
        panic!("{result:?}")
    };
    assert!(reason.contains("550"), "{reason}");
    assert!(!reason.contains("ana@"), "{reason}");
}

#[tokio::test]
async fn a_closed_port_is_transient() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let sender =
        MailSender::from_settings(&settings(port, OutboundTls::None, PathBuf::new())).unwrap();
    let to = addr("mediator@example.org");
    let nudge = Nudge {
        to: &to,
        zone_name: "North",
        priority: Priority::Now,
    };
    let result = sender.send_nudge(&nudge).await;
    assert!(matches!(result, Err(MailError::Transient(_))), "{result:?}");
}

#[tokio::test]
async fn a_relay_that_never_answers_times_out_as_transient() {
    let started = std::time::Instant::now();
    let (result, _) = send_one(Script {
        silent: true,
        ..Script::accepting()
    })
    .await;
    assert!(matches!(result, Err(MailError::Transient(_))), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

fn tls_peer_config(cert: &DevCert) -> Arc<rustls::ServerConfig> {
    let chain = CertificateDer::pem_slice_iter(cert.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    Arc::new(config)
}

#[tokio::test]
async fn starttls_delivers_to_a_relay_trusted_through_ca_file() {
    let cert = DevCert::generate(&["localhost", "127.0.0.1"]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &cert.ca_pem).unwrap();
    let script = Script {
        tls: Some(tls_peer_config(&cert)),
        ..Script::accepting()
    };
    let (address, peer) = spawn_peer(script).await;
    let sender =
        MailSender::from_settings(&settings(address.port(), OutboundTls::Starttls, ca_file))
            .unwrap();
    let to = addr("mediator@example.org");
    let nudge = Nudge {
        to: &to,
        zone_name: "North",
        priority: Priority::Now,
    };
    sender.send_nudge(&nudge).await.unwrap();
    let transcript = peer.await.unwrap();
    assert!(transcript.encrypted_data, "the message went in clear");
    assert!(transcript.commands.iter().any(|c| c == "STARTTLS"));
    let data = String::from_utf8(transcript.data).unwrap();
    assert_eq!(
        header(&data, "Subject").as_deref(),
        Some("New urgent alert: North")
    );
}

#[tokio::test]
async fn starttls_to_an_untrusted_relay_fails_as_transient_before_any_mail() {
    let cert = DevCert::generate(&["localhost", "127.0.0.1"]).unwrap();
    let script = Script {
        tls: Some(tls_peer_config(&cert)),
        ..Script::accepting()
    };
    let (address, peer) = spawn_peer(script).await;
    let sender = MailSender::from_settings(&settings(
        address.port(),
        OutboundTls::Starttls,
        PathBuf::new(),
    ))
    .unwrap();
    let to = addr("mediator@example.org");
    let nudge = Nudge {
        to: &to,
        zone_name: "North",
        priority: Priority::Now,
    };
    let result = sender.send_nudge(&nudge).await;
    assert!(matches!(result, Err(MailError::Transient(_))), "{result:?}");
    let transcript = peer.await.unwrap();
    assert!(!transcript.commands.iter().any(|c| c.starts_with("MAIL")));
    assert!(transcript.data.is_empty());
}

#[test]
fn a_ca_file_that_cannot_be_used_is_a_config_error_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "no certificates here\n").unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    for path in [dir.path().join("missing.pem"), empty, garbage] {
        let result = MailSender::from_settings(&settings(587, OutboundTls::Starttls, path.clone()));
        let Err(ConfigError::Invalid { setting, .. }) = result else {
            panic!("{} was accepted", path.display())
        };
        assert_eq!(setting, "email.outbound.ca_file");
    }
}

#[test]
fn a_ca_file_may_hold_several_certificates() {
    let (a, b) = (
        DevCert::generate(&["localhost"]).unwrap(),
        DevCert::generate(&["localhost"]).unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cas.pem");
    std::fs::write(&path, format!("{}{}", a.ca_pem, b.ca_pem)).unwrap();
    assert_eq!(read_ca_file(&path).unwrap().len(), 2);
    assert!(MailSender::from_settings(&settings(587, OutboundTls::Implicit, path)).is_ok());
}

#[test]
fn a_password_file_others_can_read_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("password");
    std::fs::write(&path, "hunter2\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut s = settings(587, OutboundTls::Starttls, PathBuf::new());
    s.username = "tipwire".to_owned();
    s.password_file = path.clone();
    let Err(ConfigError::Invalid { setting, .. }) = MailSender::from_settings(&s) else {
        panic!("a world-readable password file was accepted")
    };
    assert_eq!(setting, "email.outbound.password_file");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(MailSender::from_settings(&s).is_ok());
}
