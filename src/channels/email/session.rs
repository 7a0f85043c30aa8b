//! One SMTP conversation (RFC 5321) with an untrusted client. Commands are
//! parsed by `smtp-proto` (Stalwart's SMTP parser); this module keeps the
//! state, the limits and the replies. Everything the client sends is
//! untrusted, and no reply echoes it back.
//!
//! What it refuses, and why:
//! - mail for any address but the tip addresses (550): never an open relay;
//! - command lines that do not end in CRLF or hold another CR (500), and messages holding a bare LF or
//!   bare CR (554, and the connection closes): with the end of data
//!   recognised only as CRLF.CRLF, a second message cannot be smuggled
//!   inside the first (the 2023 "SMTP smuggling" attacks rely on servers
//!   disagreeing about bare LF). The check runs on every byte of the DATA
//!   stream, also while an oversized message is read and thrown away: an end
//!   marker with a bare CR (CRLF "." CR CR LF, which smtp-proto also ends
//!   DATA at) must close the connection rather than answer 552 and read what
//!   follows as the next commands;
//! - bytes pipelined behind STARTTLS (the connection is closed): they were
//!   sent in clear and could be injected by anyone on the path (CVE-2011-0411);
//! - messages over the size limit (552), more recipients than allowed (452),
//!   lines over the line limit (500 or 554), more commands than allowed per
//!   connection (421), and clients silent for longer than the idle timeout or
//!   connected longer than the session timeout (421);
//! - clients slower than the minimum data rate (421): past a grace period
//!   (the idle time), a client must have sent `min_data_rate` bytes for every
//!   second the server spent waiting for it, so a byte a minute cannot hold a
//!   slot for the whole session;
//! - messages when the shared buffer budget is spent (452): every session's
//!   message buffer is paid for from one [`ByteBudget`] as it grows, so the
//!   sessions together never buffer more than `email.max_buffered_bytes`.

use std::future::Future;
use std::time::Duration;

use smtp_proto::Request;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::domain::EmailAddress;
use crate::privacy::ClientKey;

mod input;
mod policy;

pub use super::replies::Reply;
use super::replies::*;
use input::{Data, Line};
use policy::MIN_BUFFER;
pub use policy::{ByteBudget, Limits, Policy};

/// The envelope of one message.
pub struct Envelope {
    /// MAIL FROM (never empty: null senders are refused).
    pub sender: Option<EmailAddress>,
    pub recipients: Vec<EmailAddress>,
    pub client: ClientKey,
    pub tls: bool,
}

/// Where accepted messages go.
pub trait Mailbox: Send + Sync {
    /// At MAIL FROM: whether this client may send another message now.
    fn admit(&self, client: ClientKey) -> Result<(), Reply>;
    /// At the end of DATA: the reply to give. Positive only once the message
    /// is safely stored.
    fn receive(&self, envelope: Envelope, message: Vec<u8>) -> impl Future<Output = Reply> + Send;
}

/// Why a conversation ended early. Carries nothing the client sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Quit,
    Closed,
    Idle,
    SessionTimeout,
    TooManyCommands,
    TlsPipelined,
    TlsHandshake,
    ShuttingDown,
    BareNewline,
    TooSlow,
    Io,
}

impl Ended {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Quit => "quit",
            Self::Closed => "closed",
            Self::Idle => "idle-timeout",
            Self::SessionTimeout => "session-timeout",
            Self::TooManyCommands => "too-many-commands",
            Self::TlsPipelined => "starttls-pipelined",
            Self::TlsHandshake => "tls-handshake-failed",
            Self::ShuttingDown => "shutting-down",
            Self::BareNewline => "bare-newline",
            Self::TooSlow => "too-slow",
            Self::Io => "io-error",
        }
    }
}

/// Per-connection state that survives the STARTTLS upgrade.
struct Conversation<'a, M> {
    policy: &'a Policy,
    mailbox: &'a M,
    cancel: &'a CancellationToken,
    client: ClientKey,
    deadline: Instant,
    commands: usize,
    tls: bool,
    /// Bytes read from the client, and time spent waiting for them: the
    /// minimum data rate compares the two.
    received: u64,
    waited: Duration,
}

enum Next<S> {
    Ended(Ended),
    StartTls(S),
}

/// Serves one connection until QUIT, a limit, or shutdown. `implicit_tls`
/// says the stream is already TLS (port 465).
pub async fn serve<S, M>(
    stream: S,
    implicit_tls: bool,
    client: ClientKey,
    policy: &Policy,
    mailbox: &M,
    cancel: &CancellationToken,
) -> Ended
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    M: Mailbox,
{
    let mut conv = Conversation {
        policy,
        mailbox,
        cancel,
        client,
        deadline: Instant::now() + policy.limits.session,
        commands: 0,
        tls: implicit_tls,
        received: 0,
        waited: Duration::ZERO,
    };
    let greeting = format!("220 {} ESMTP ready\r\n", policy.hostname);
    match conv.converse(stream, Some(&greeting)).await {
        Next::Ended(ended) => ended,
        Next::StartTls(plain) => {
            let Some(acceptor) = policy.tls.clone() else {
                return Ended::TlsHandshake;
            };
            let handshake = tokio::time::timeout(policy.limits.idle, acceptor.accept(plain)).await;
            match handshake {
                Ok(Ok(tls)) => {
                    conv.tls = true;
                    match conv.converse(tls, None).await {
                        Next::Ended(ended) => ended,
                        // STARTTLS is not offered twice.
                        Next::StartTls(_) => Ended::TlsHandshake,
                    }
                }
                _ => Ended::TlsHandshake,
            }
        }
    }
}

struct Transaction {
    sender: Option<EmailAddress>,
    recipients: Vec<EmailAddress>,
}

impl<M: Mailbox> Conversation<'_, M> {
    async fn converse<S>(&mut self, stream: S, greeting: Option<&str>) -> Next<S>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let mut io = BufReader::new(stream);
        if let Some(greeting) = greeting
            && write(&mut io, greeting).await.is_err()
        {
            return Next::Ended(Ended::Io);
        }
        let mut greeted = false;
        let mut tx: Option<Transaction> = None;
        loop {
            let line = match self.read_line(&mut io).await {
                Ok(line) => line,
                Err(ended) => return Next::Ended(self.goodbye(&mut io, ended).await),
            };
            self.commands += 1;
            if self.commands > self.policy.limits.max_commands {
                return Next::Ended(self.goodbye(&mut io, Ended::TooManyCommands).await);
            }
            let line = match line {
                Line::Complete(line) => line,
                Line::TooLong => {
                    if reply(&mut io, &LINE_TOO_LONG).await.is_err() {
                        return Next::Ended(Ended::Io);
                    }
                    continue;
                }
                Line::BareNewline => {
                    if reply(&mut io, &BARE_NEWLINE_COMMAND).await.is_err() {
                        return Next::Ended(Ended::Io);
                    }
                    continue;
                }
            };
            let answer = match Request::parse(&mut line.iter()) {
                Ok(Request::Ehlo { .. }) => {
                    greeted = true;
                    tx = None;
                    let ehlo = self.ehlo();
                    if write(&mut io, &ehlo).await.is_err() {
                        return Next::Ended(Ended::Io);
                    }
                    continue;
                }
                Ok(Request::Helo { .. }) => {
                    greeted = true;
                    tx = None;
                    let helo = format!("250 {}\r\n", self.policy.hostname);
                    if write(&mut io, &helo).await.is_err() {
                        return Next::Ended(Ended::Io);
                    }
                    continue;
                }
                Ok(Request::StartTls) => {
                    if self.tls || self.policy.tls.is_none() {
                        NO_TLS_HERE
                    } else if !io.buffer().is_empty() {
                        let _ = reply(&mut io, &TLS_PIPELINED).await;
                        return Next::Ended(Ended::TlsPipelined);
                    } else {
                        if reply(&mut io, &TLS_READY).await.is_err() {
                            return Next::Ended(Ended::Io);
                        }
                        return Next::StartTls(io.into_inner());
                    }
                }
                Ok(Request::Mail { from }) => {
                    if !greeted || tx.is_some() {
                        BAD_SEQUENCE
                    } else if self.policy.require_tls && !self.tls {
                        NEED_TLS
                    } else if from.address.is_empty() {
                        NO_BOUNCES
                    } else if from.size > self.policy.limits.max_message_bytes {
                        TOO_BIG
                    } else {
                        match self.mailbox.admit(self.client) {
                            Err(refused) => refused,
                            Ok(()) => {
                                tx = Some(Transaction {
                                    sender: EmailAddress::parse(&from.address).ok(),
                                    recipients: Vec::new(),
                                });
                                OK
                            }
                        }
                    }
                }
                Ok(Request::Rcpt { to }) => match tx.as_mut() {
                    None => BAD_SEQUENCE,
                    Some(tx) => match self.policy.accepts(&to.address) {
                        None => NOT_HERE,
                        Some(_) if tx.recipients.len() >= self.policy.limits.max_recipients => {
                            TOO_MANY_RECIPIENTS
                        }
                        Some(rcpt) => {
                            if !tx.recipients.contains(&rcpt) {
                                tx.recipients.push(rcpt);
                            }
                            OK
                        }
                    },
                },
                Ok(Request::Data) => match tx.take() {
                    // Nothing left to buffer a message with: say so before
                    // the client sends it.
                    Some(t)
                        if !t.recipients.is_empty()
                            && self.policy.buffers.available() < MIN_BUFFER =>
                    {
                        NO_ROOM
                    }
                    Some(t) if !t.recipients.is_empty() => {
                        if reply(&mut io, &START_DATA).await.is_err() {
                            return Next::Ended(Ended::Io);
                        }
                        let data = match self.read_data(&mut io).await {
                            Ok(data) => data,
                            Err(ended) => return Next::Ended(self.goodbye(&mut io, ended).await),
                        };
                        self.judge(t, data).await
                    }
                    other => {
                        tx = other;
                        BAD_SEQUENCE
                    }
                },
                Ok(Request::Rset) => {
                    tx = None;
                    OK
                }
                Ok(Request::Noop { .. }) => OK,
                Ok(Request::Quit) => {
                    let _ = reply(&mut io, &BYE).await;
                    return Next::Ended(Ended::Quit);
                }
                Ok(Request::Vrfy { .. }) => VRFY,
                Ok(Request::Help { .. }) => HELP,
                Ok(
                    Request::Expn { .. }
                    | Request::Auth { .. }
                    | Request::Bdat { .. }
                    | Request::Burl { .. }
                    | Request::Etrn { .. }
                    | Request::Atrn { .. }
                    | Request::Lhlo { .. },
                ) => NOT_IMPLEMENTED,
                Err(smtp_proto::Error::UnknownCommand) => UNKNOWN,
                Err(smtp_proto::Error::InvalidSenderAddress) => BAD_SENDER,
                Err(smtp_proto::Error::InvalidRecipientAddress) => BAD_RECIPIENT,
                Err(_) => SYNTAX,
            };
            if reply(&mut io, &answer).await.is_err() {
                return Next::Ended(Ended::Io);
            }
            if answer == BARE_NEWLINE {
                // smtp-proto also ends DATA at CRLF "." CR... LF; such a
                // message holds a bare CR and is refused, and whatever the
                // client sent after it is not read as commands.
                return Next::Ended(Ended::BareNewline);
            }
        }
    }

    fn ehlo(&self) -> String {
        let host = &self.policy.hostname;
        let mut lines = vec![
            host.clone(),
            format!("SIZE {}", self.policy.limits.max_message_bytes),
            "8BITMIME".to_owned(),
            "ENHANCEDSTATUSCODES".to_owned(),
        ];
        if !self.tls && self.policy.tls.is_some() {
            lines.push("STARTTLS".to_owned());
        }
        let last = lines.len() - 1;
        lines
            .iter()
            .enumerate()
            .map(|(i, l)| format!("250{}{l}\r\n", if i == last { ' ' } else { '-' }))
            .collect()
    }

    /// Checks a received message and hands it to the mailbox.
    async fn judge(&self, tx: Transaction, data: Data) -> Reply {
        // First: this reply closes the connection, so whatever the client
        // meant to follow the message is never read as commands.
        if data.bare_newline {
            return BARE_NEWLINE;
        }
        if data.too_big {
            return TOO_BIG;
        }
        if data.no_room {
            return NO_ROOM;
        }
        if data
            .bytes
            .split(|&b| b == b'\n')
            .any(|l| l.len() > self.policy.limits.max_line_bytes)
        {
            return DATA_LINE_TOO_LONG;
        }
        let envelope = Envelope {
            sender: tx.sender,
            recipients: tx.recipients,
            client: self.client,
            tls: self.tls,
        };
        let Data { bytes, paid, .. } = data;
        let answer = self.mailbox.receive(envelope, bytes).await;
        // The mailbox has dropped the message: the budget gets it back.
        drop(paid);
        answer
    }
    /// Says why the connection ends (where there is a reply to give).
    async fn goodbye<S: AsyncWrite + Unpin>(&self, io: &mut S, ended: Ended) -> Ended {
        let last = match ended {
            Ended::Idle => Some(IDLE),
            Ended::SessionTimeout => Some(TOO_LONG_SESSION),
            Ended::TooSlow => Some(TOO_SLOW),
            Ended::TooManyCommands => Some(TOO_MANY_COMMANDS),
            Ended::ShuttingDown => Some(SHUTTING_DOWN),
            _ => None,
        };
        if let Some(last) = last {
            let _ = tokio::time::timeout(Duration::from_secs(2), reply(io, &last)).await;
        }
        ended
    }
}

async fn write<S: AsyncWrite + Unpin>(io: &mut S, text: &str) -> std::io::Result<()> {
    io.write_all(text.as_bytes()).await?;
    io.flush().await
}

async fn reply<S: AsyncWrite + Unpin>(io: &mut S, r: &Reply) -> std::io::Result<()> {
    write(io, &r.render()).await
}
#[cfg(test)]
mod tests;
