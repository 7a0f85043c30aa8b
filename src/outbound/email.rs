//! Outbound mail: a mediator's reply to an email tipster and the content-free
//! nudges that tell a mediator to open the app, sent through the configured
//! relay with lettre. Untrusted: the tipster's subject and message ids (they
//! came in a tipster's mail) and the relay's answers. The subject and ids only
//! reach header values lettre encodes, after line breaks are removed and ids
//! are checked; the relay's reply text never reaches an error message, since a
//! relay may quote the recipient's address in it.
//!
//! Each message goes over its own connection (connect, STARTTLS, AUTH, send,
//! QUIT) under one deadline. lettre's pooled transport is not used: it has no
//! read deadline, and cancelling a send from outside would put a connection
//! that stopped mid-DATA back in the pool, where the next message's commands
//! would land inside the unfinished one, addressed to the earlier recipient.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use lettre::Message;
use lettre::message::Mailbox;
use lettre::message::header::{ContentType, HeaderName, HeaderValue, MIME_VERSION_1_0};
use lettre::transport::smtp::Error as SmtpError;
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, Certificate, CertificateStore, TlsParameters,
};
use lettre::transport::smtp::extension::ClientId;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use secrecy::{ExposeSecret, SecretString};

use crate::config::{ConfigError, OutboundSettings, OutboundTls, Settings, invalid};
use crate::domain::{EmailAddress, Priority};

/// RFC 3834 §5: "auto-generated" marks mail no person wrote (a nudge), and
/// keeps vacation responders quiet, so a mediator's out-of-office never
/// answers the gateway.
const AUTO_SUBMITTED: &str = "auto-generated";
/// Longest subject we repeat back: a tipster's subject is not trusted to be short.
const MAX_SUBJECT_CHARS: usize = 200;
/// Longest message id we repeat back (RFC 5322 lines stop at 998 octets).
const MAX_MESSAGE_ID_LEN: usize = 250;
/// How many ids References keeps: the thread's first and the latest ones, as
/// RFC 5322 §3.6.4 suggests when a thread grows long.
const MAX_REFERENCES: usize = 20;
/// How long we wait for the answer to QUIT once the relay has taken the message.
const QUIT_GRACE: Duration = Duration::from_secs(5);

/// Sends the program's mail through the configured relay. Cheap to clone (Arc inside).
#[derive(Clone)]
pub struct MailSender {
    inner: Arc<Inner>,
}

/// Names the relay only: no password, no addresses.
impl std::fmt::Debug for MailSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let security = match self.inner.security {
            Security::Starttls(_) => "starttls",
            Security::Implicit(_) => "implicit",
            Security::Plain => "none",
        };
        f.debug_struct("MailSender")
            .field("relay_host", &self.inner.relay_host)
            .field("relay_port", &self.inner.relay_port)
            .field("tls", &security)
            .finish_non_exhaustive()
    }
}

struct Inner {
    relay_host: String,
    relay_port: u16,
    security: Security,
    login: Option<Login>,
    /// The EHLO name: the domain of the nudge address, never this machine's name.
    hello: ClientId,
    timeout: Duration,
    letterhead: Letterhead,
}

enum Security {
    Starttls(TlsParameters),
    Implicit(TlsParameters),
    Plain,
}

struct Login {
    username: String,
    password: SecretString,
}

/// What every message we write carries: the display name and the nudge address.
struct Letterhead {
    from_name: Option<String>,
    nudge_from: EmailAddress,
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// Retry later: connection refused/reset, timeout, TLS handshake failure, 4xx reply.
    #[error("transient mail relay failure: {0}")]
    Transient(String),
    /// Do not retry: 5xx reply, an address lettre refuses, a message that cannot be built.
    #[error("permanent mail relay failure: {0}")]
    Permanent(String),
}

/// A mediator's reply to an email tipster. Comes From the tip address the
/// tipster wrote to (display name = from_name), never a mediator.
pub struct MailReply<'a> {
    pub to: &'a EmailAddress,
    /// The tip address.
    pub from: &'a EmailAddress,
    /// The tipster's subject; sent as "Re: <subject>" ("Re: your message" when None).
    pub subject: Option<&'a str>,
    /// The tipster's message id without <>, sent as In-Reply-To.
    pub in_reply_to: Option<&'a str>,
    /// Earlier ids of the thread without <>, oldest first.
    pub references: &'a [String],
    /// Plain text, UTF-8.
    pub body: &'a str,
}

/// A content-free nudge to a mediator: never tip text, never a tip id.
pub struct Nudge<'a> {
    pub to: &'a EmailAddress,
    pub zone_name: &'a str,
    pub priority: Priority,
}

impl MailSender {
    /// Builds the sender: TLS parameters (Mozilla's roots plus those in
    /// `ca_file`), the relay password, the EHLO name. Connects to nothing.
    pub fn from_settings(s: &OutboundSettings) -> Result<Self, ConfigError> {
        let nudge_from = EmailAddress::parse(&s.nudge_from).map_err(|_| {
            invalid(
                "email.outbound.nudge_from",
                format!("{:?} is not an email address", s.nudge_from),
                "set the address mediator nudges come from, e.g. alerts@example.org",
            )
        })?;
        let security = match s.tls {
            OutboundTls::Starttls => Security::Starttls(tls_parameters(s)?),
            OutboundTls::Implicit => Security::Implicit(tls_parameters(s)?),
            OutboundTls::None => Security::Plain,
        };
        let login = if s.username.is_empty() {
            None
        } else {
            let password = Settings::read_secret("email.outbound.password_file", &s.password_file)?;
            Some(Login {
                username: s.username.clone(),
                password: SecretString::from(password.as_str()),
            })
        };
        let from_name = Some(s.from_name.trim())
            .filter(|n| !n.is_empty())
            .map(str::to_owned);
        Ok(Self {
            inner: Arc::new(Inner {
                relay_host: s.relay_host.clone(),
                relay_port: s.relay_port,
                security,
                login,
                hello: ClientId::Domain(nudge_from.domain().to_owned()),
                timeout: Duration::from_secs(s.timeout_secs.max(1)),
                letterhead: Letterhead {
                    from_name,
                    nudge_from,
                },
            }),
        })
    }

    pub async fn send_reply(&self, reply: &MailReply<'_>) -> Result<(), MailError> {
        let message = self.inner.letterhead.reply(reply)?;
        self.deliver(&message).await
    }

    pub async fn send_nudge(&self, nudge: &Nudge<'_>) -> Result<(), MailError> {
        let message = self.inner.letterhead.nudge(nudge)?;
        self.deliver(&message).await
    }

    async fn deliver(&self, message: &Message) -> Result<(), MailError> {
        let timeout = self.inner.timeout;
        let mut conn = match tokio::time::timeout(timeout, self.transfer(message)).await {
            Ok(result) => result?,
            // Dropping the unfinished transfer closes the socket, and a relay
            // delivers nothing whose DATA never reached its final ".".
            Err(_) => {
                return Err(MailError::Transient(format!(
                    "the relay did not take the message within {} s",
                    timeout.as_secs()
                )));
            }
        };
        // The relay has the message (250 after DATA); QUIT is a courtesy, and
        // failing it must not make the caller send the message again.
        let _ = tokio::time::timeout(QUIT_GRACE, conn.quit()).await;
        Ok(())
    }

    /// Everything up to the relay's answer to the message's DATA. Failures
    /// before MAIL FROM concern the relay or our settings, not the message,
    /// so they are all worth retrying once the operator or the relay recovers.
    async fn transfer(&self, message: &Message) -> Result<AsyncSmtpConnection, MailError> {
        let inner = &*self.inner;
        let implicit = match &inner.security {
            Security::Implicit(params) => Some(params.clone()),
            Security::Starttls(_) | Security::Plain => None,
        };
        let mut conn = AsyncSmtpConnection::connect_tokio1(
            (inner.relay_host.as_str(), inner.relay_port),
            Some(inner.timeout),
            &inner.hello,
            implicit,
            None,
        )
        .await
        .map_err(|e| MailError::Transient(describe(&e)))?;
        if let Security::Starttls(params) = &inner.security {
            // Required, never opportunistic: a relay without STARTTLS fails here.
            conn.starttls(params.clone(), &inner.hello)
                .await
                .map_err(|e| MailError::Transient(describe(&e)))?;
        }
        if let Some(login) = &inner.login {
            let credentials = Credentials::new(
                login.username.clone(),
                login.password.expose_secret().to_owned(),
            );
            conn.auth(DEFAULT_MECHANISMS, &credentials)
                .await
                .map_err(|e| MailError::Transient(describe(&e)))?;
        }
        conn.send(message.envelope(), &wire_bytes(message))
            .await
            .map_err(|e| {
                // Client errors here are lettre refusing this message (a
                // non-ASCII address or body the relay cannot take): retrying
                // would meet the same refusal.
                if e.is_permanent() || e.is_client() {
                    MailError::Permanent(describe(&e))
                } else {
                    MailError::Transient(describe(&e))
                }
            })?;
        Ok(conn)
    }
}

/// The message as lettre should send it. lettre ends DATA with CRLF "." CRLF
/// whatever the message ends with, so a final CRLF of ours would reach the
/// recipient as an extra empty line; that CRLF is left to lettre.
fn wire_bytes(message: &Message) -> Vec<u8> {
    let mut bytes = message.formatted();
    if bytes.ends_with(b"\r\n") {
        bytes.truncate(bytes.len().saturating_sub(2));
    }
    bytes
}

/// A description without the relay's reply text, which may quote an address.
fn describe(e: &SmtpError) -> String {
    if let Some(code) = e.status() {
        format!("the relay answered {code}")
    } else if e.is_timeout() {
        "the connection timed out".to_owned()
    } else if e.is_response() {
        "the relay's answer could not be read".to_owned()
    } else {
        // Connection, network, TLS and lettre's own refusals: I/O and rustls
        // errors and fixed texts, none of which carries message content.
        e.to_string()
    }
}

/// TLS parameters for the relay: Mozilla's roots plus every certificate in
/// `ca_file` (a private relay's CA), checked here so a bad file stops start-up.
fn tls_parameters(s: &OutboundSettings) -> Result<TlsParameters, ConfigError> {
    let mut builder = TlsParameters::builder(s.relay_host.clone())
        .certificate_store(CertificateStore::WebpkiRoots);
    if !s.ca_file.as_os_str().is_empty() {
        for der in read_ca_file(&s.ca_file)? {
            let cert =
                Certificate::from_der(der.to_vec()).map_err(|e| ca_file_error(&s.ca_file, e))?;
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build_rustls().map_err(|e| {
        invalid(
            "email.outbound.tls",
            format!("the TLS settings for {} were refused: {e}", s.relay_host),
            "check email.outbound.relay_host and email.outbound.ca_file",
        )
    })
}

fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let pem = std::fs::read(path).map_err(|e| ca_file_error(path, e))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ca_file_error(path, e))?;
    if certs.is_empty() {
        return Err(ca_file_error(path, "holds no PEM certificate"));
    }
    // The same check lettre makes when it builds its trust store, done here to
    // name the file and the setting.
    let mut roots = rustls::RootCertStore::empty();
    for cert in &certs {
        roots
            .add(cert.clone())
            .map_err(|e| ca_file_error(path, e))?;
    }
    Ok(certs)
}

fn ca_file_error(path: &Path, e: impl std::fmt::Display) -> ConfigError {
    invalid(
        "email.outbound.ca_file",
        format!("{}: {e}", path.display()),
        "point it at a PEM file holding the relay's CA certificate(s), or leave it empty",
    )
}

impl Letterhead {
    fn reply(&self, reply: &MailReply<'_>) -> Result<Message, MailError> {
        let mut builder = Message::builder()
            .from(mailbox(self.from_name.as_deref(), reply.from)?)
            .to(mailbox(None, reply.to)?)
            .subject(reply_subject(reply.subject))
            .date_now()
            .message_id(Some(new_message_id(reply.from)));
        let in_reply_to = reply.in_reply_to.and_then(message_id);
        if let Some(id) = &in_reply_to {
            builder = builder.in_reply_to(id.clone());
        }
        let references = references(reply.references, in_reply_to);
        if !references.is_empty() {
            builder = builder.references(references.join(" "));
        }
        builder
            .header(MIME_VERSION_1_0)
            .header(ContentType::TEXT_PLAIN)
            .body(reply.body.to_owned())
            .map_err(|e| MailError::Permanent(format!("the reply could not be built: {e}")))
    }

    fn nudge(&self, nudge: &Nudge<'_>) -> Result<Message, MailError> {
        let zone = one_line(nudge.zone_name, MAX_SUBJECT_CHARS);
        let urgency = match nudge.priority {
            Priority::Now => "urgent ",
            Priority::Today => "",
            Priority::Fyi => "low-priority ",
        };
        let body = format!(
            "A new {urgency}alert for zone {zone}. Open tipwire.\n\
             The details are in the app, never in email.\n"
        );
        Message::builder()
            .from(mailbox(self.from_name.as_deref(), &self.nudge_from)?)
            .to(mailbox(None, nudge.to)?)
            .subject(format!("New {urgency}alert: {zone}"))
            .date_now()
            .message_id(Some(new_message_id(&self.nudge_from)))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("Auto-Submitted"),
                AUTO_SUBMITTED.to_owned(),
            ))
            .header(MIME_VERSION_1_0)
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| MailError::Permanent(format!("the nudge could not be built: {e}")))
    }
}

fn mailbox(name: Option<&str>, address: &EmailAddress) -> Result<Mailbox, MailError> {
    let address = address
        .as_str()
        .parse::<lettre::Address>()
        .map_err(|_| MailError::Permanent("lettre refuses an address of the message".to_owned()))?;
    Ok(Mailbox::new(name.map(str::to_owned), address))
}

/// `<32 random hex digits@the From domain>`: nothing about this machine or a mediator.
fn new_message_id(from: &EmailAddress) -> String {
    let bytes: [u8; 16] = rand::random();
    format!("<{}@{}>", hex::encode(bytes), from.domain())
}

/// "Re: " and the tipster's subject on one line, without a second "Re:".
fn reply_subject(subject: Option<&str>) -> String {
    let subject = one_line(subject.unwrap_or_default(), MAX_SUBJECT_CHARS);
    let already_re = subject
        .get(..3)
        .is_some_and(|p| p.eq_ignore_ascii_case("re:"));
    if subject.is_empty() {
        "Re: your message".to_owned()
    } else if already_re {
        subject
    } else {
        format!("Re: {subject}")
    }
}

/// Control characters (CR and LF above all) become spaces, runs of spaces
/// one, and the text is cut to `max` characters.
fn one_line(text: &str, max: usize) -> String {
    let spaced: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let joined = spaced.split_whitespace().collect::<Vec<_>>().join(" ");
    joined
        .chars()
        .take(max)
        .collect::<String>()
        .trim_end()
        .to_owned()
}

/// A tipster's message id as `<id>`, or None when it is not one: ids go into
/// headers, so only printable ASCII without spaces or angle brackets passes.
fn message_id(id: &str) -> Option<String> {
    let id = id.trim();
    let id = id
        .strip_prefix('<')
        .and_then(|i| i.strip_suffix('>'))
        .unwrap_or(id);
    let valid = !id.is_empty()
        && id.len() <= MAX_MESSAGE_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'<' && b != b'>');
    valid.then(|| format!("<{id}>"))
}

/// The References ids: the thread's, then In-Reply-To unless it is already
/// last; a long list keeps its first id and the latest ones.
fn references(earlier: &[String], in_reply_to: Option<String>) -> Vec<String> {
    let mut ids: Vec<String> = earlier.iter().filter_map(|id| message_id(id)).collect();
    if let Some(id) = in_reply_to
        && ids.last() != Some(&id)
    {
        ids.push(id);
    }
    if ids.len() > MAX_REFERENCES {
        let latest = ids.split_off(ids.len() - (MAX_REFERENCES - 1));
        ids.truncate(1);
        ids.extend(latest);
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::net::SocketAddr;
    use std::path::PathBuf;

    use tokio::io::{
        AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
    };
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
            nudge_from: "alerts@alerts.example.org".to_owned(),
            timeout_secs: 1,
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
        let key =
            rustls::pki_types::PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).unwrap();
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
            let result =
                MailSender::from_settings(&settings(587, OutboundTls::Starttls, path.clone()));
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
}
