//! The SMTP side the load clients share (`benches/intake_load.rs`,
//! `benches/abuse.rs`): a session opened as a mail server opens it (EHLO,
//! STARTTLS, EHLO, Nagle off) from a chosen local address, and a message
//! formatted once per sender with a Message-ID slot.
//!
//! Untrusted: the gateway's replies, read by lettre.

use std::net::{IpAddr, SocketAddr};

use anyhow::{Context, Result, ensure};
use lettre::address::Envelope;
use lettre::message::header::ContentType;
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{Address, Message};

use crate::common::{TEXT, TIMEOUT};

/// Replaced by a unique Message-ID in each message: the gateway stores a
/// repeated sender + Message-ID once (and still answers 250).
const ID_PLACEHOLDER: &str = "MESSAGE-ID-PLACEHOLDER@bench.tipwire";

/// One sender's message, formatted once, split around its Message-ID.
pub struct Template {
    pub envelope: Envelope,
    head: Vec<u8>,
    tail: Vec<u8>,
}

impl Template {
    pub fn new(from: &Address, to: &Address) -> Result<Self> {
        let message = Message::builder()
            .from(from.clone().into())
            .to(to.clone().into())
            .message_id(Some(format!("<{ID_PLACEHOLDER}>")))
            .header(ContentType::TEXT_PLAIN)
            .body(TEXT.to_owned())
            .context("building the bench message")?;
        let raw = message.formatted();
        let at = raw
            .windows(ID_PLACEHOLDER.len())
            .position(|w| w == ID_PLACEHOLDER.as_bytes())
            .context("the Message-ID placeholder is not in the formatted message")?;
        Ok(Self {
            envelope: message.envelope().clone(),
            head: raw.get(..at).unwrap_or_default().to_vec(),
            tail: raw
                .get(at + ID_PLACEHOLDER.len()..)
                .unwrap_or_default()
                .to_vec(),
        })
    }

    /// The message with Message-ID `<id@bench.tipwire>`, written into `out`.
    pub fn write(&self, id: std::fmt::Arguments<'_>, out: &mut Vec<u8>) {
        use std::io::Write as _;
        out.clear();
        out.extend_from_slice(&self.head);
        // Writing into a Vec cannot fail.
        let _ = write!(out, "{id}@bench.tipwire");
        out.extend_from_slice(&self.tail);
    }
}

/// Connects to `server` from `local` (any address when `None`), then EHLO,
/// STARTTLS (required: a gateway that does not offer it is an error) and
/// EHLO again, each within [`TIMEOUT`]. `host` is the name the certificate
/// is checked against.
///
/// The socket is our own, with Nagle off (reqwest turns it off too): lettre
/// writes a message and its final "\r\n.\r\n" separately, and with Nagle on
/// the second write waits for the gateway's delayed ACK, ~40 ms a message,
/// which would measure the two kernels, not the gateway.
pub async fn open(
    server: SocketAddr,
    local: Option<IpAddr>,
    host: &str,
    ca: &[u8],
) -> Result<AsyncSmtpConnection> {
    let hello = ClientId::Domain("client.bench.tipwire".into());
    let tls = TlsParameters::builder(host.to_owned())
        .add_root_certificate(Certificate::from_pem(ca)?)
        .build_rustls()?;
    let socket = match server {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    if let Some(local) = local {
        socket
            .bind(SocketAddr::new(local, 0))
            .with_context(|| format!("binding to {local}"))?;
    }
    let tcp = tokio::time::timeout(TIMEOUT, socket.connect(server))
        .await
        .context("no TCP connection within the timeout")?
        .context("connecting to the SMTP port")?;
    tcp.set_nodelay(true)?;
    let connect = AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &hello);
    let mut conn = tokio::time::timeout(TIMEOUT, connect)
        .await
        .context("no SMTP greeting within the timeout")?
        .context("SMTP greeting and EHLO")?;
    ensure!(
        conn.can_starttls(),
        "the gateway does not offer STARTTLS on its SMTP port"
    );
    tokio::time::timeout(TIMEOUT, conn.starttls(tls, &hello))
        .await
        .context("no STARTTLS within the timeout")?
        .context("STARTTLS")?;
    Ok(conn)
}
