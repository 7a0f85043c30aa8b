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
        let nudge_from = s.nudge_from()?;
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
                timeout: s.timeout.max(Duration::from_secs(1)),
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
mod tests;
