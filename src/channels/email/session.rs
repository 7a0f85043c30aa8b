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
use std::sync::Arc;
use std::time::Duration;

use smtp_proto::Request;
use smtp_proto::request::receiver::DataReceiver;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::domain::EmailAddress;
use crate::privacy::ClientKey;

pub use super::replies::Reply;
use super::replies::*;

/// DATA is refused (452) when the shared budget has less than this left: not
/// even one read's worth.
const MIN_BUFFER: usize = 8 * 1024;

/// The limits of one connection.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_message_bytes: usize,
    pub max_recipients: usize,
    pub max_line_bytes: usize,
    pub max_commands: usize,
    pub idle: Duration,
    pub session: Duration,
    /// Bytes per second a client must average once the grace period (the
    /// idle time) of waiting for it is used up.
    pub min_data_rate: u64,
}

/// The bytes all sessions together may hold in message buffers. A session
/// pays for its buffer as it grows and is paid back when its message has
/// been handled.
#[derive(Clone)]
pub struct ByteBudget(Arc<Semaphore>);

impl ByteBudget {
    pub fn new(bytes: usize) -> Self {
        Self(Arc::new(Semaphore::new(bytes.min(Semaphore::MAX_PERMITS))))
    }

    pub fn available(&self) -> usize {
        self.0.available_permits()
    }

    /// `bytes` more, or `None` when the budget cannot cover them now.
    fn take(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        let bytes = u32::try_from(bytes).ok()?;
        self.0.clone().try_acquire_many_owned(bytes).ok()
    }
}

/// What every connection shares.
pub struct Policy {
    pub hostname: String,
    /// The tip addresses, compared case-insensitively.
    pub addresses: Vec<EmailAddress>,
    pub limits: Limits,
    /// Offered as STARTTLS on plain connections.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub require_tls: bool,
    /// Shared by every session of the listener.
    pub buffers: ByteBudget,
}

impl Policy {
    /// A tip address, or one with a `+tag` (a thread token, checked by the
    /// channel), kept as written.
    fn accepts(&self, rcpt: &str) -> Option<EmailAddress> {
        let rcpt = EmailAddress::parse(rcpt).ok()?;
        let canonical = rcpt.canonical();
        let (local, domain) = canonical.rsplit_once('@')?;
        let base = local.split_once('+').map_or(local, |(base, _)| base);
        let base = format!("{base}@{domain}");
        self.addresses
            .iter()
            .any(|a| a.canonical() == base)
            .then_some(rcpt)
    }
}

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

/// A line read from the client, or why there is none.
enum Line {
    Complete(Vec<u8>),
    TooLong,
    /// Not ended by CRLF, or holding another CR.
    BareNewline,
}

/// What DATA produced.
struct Data {
    bytes: Vec<u8>,
    too_big: bool,
    /// The buffer budget was spent: the message was read and thrown away.
    no_room: bool,
    /// What `bytes` cost from the budget, paid back when dropped.
    paid: Option<OwnedSemaphorePermit>,
    /// Some CR or LF of the DATA stream, end marker included, was bare.
    bare_newline: bool,
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

    /// Waits for more input, until `idle`, the session's end, or the moment
    /// the client falls below the minimum data rate, whichever comes first.
    async fn fill<S: AsyncRead + Unpin>(
        &mut self,
        io: &mut BufReader<S>,
        idle: Instant,
    ) -> Result<usize, Ended> {
        let now = Instant::now();
        let limits = &self.policy.limits;
        // The waiting this client has earned: the grace period plus a
        // second for every `min_data_rate` bytes it sent.
        let earned = limits.idle.saturating_add(Duration::from_secs(
            self.received / limits.min_data_rate.max(1),
        ));
        let rate_end = now + earned.saturating_sub(self.waited);
        let (until, why) = [
            (idle, Ended::Idle),
            (self.deadline, Ended::SessionTimeout),
            (rate_end, Ended::TooSlow),
        ]
        .into_iter()
        .min_by_key(|(at, _)| *at)
        .unwrap_or((idle, Ended::Idle));
        let read = tokio::select! {
            read = tokio::time::timeout_at(until, io.fill_buf()) => match read {
                Err(_) => Err(why),
                Ok(Err(_)) => Err(Ended::Io),
                Ok(Ok([])) => Err(Ended::Closed),
                Ok(Ok(buf)) => Ok(buf.len()),
            },
            () = self.cancel.cancelled() => Err(Ended::ShuttingDown),
        };
        self.waited += now.elapsed();
        read
    }

    /// Reads one command line. A line longer than the limit is read to its
    /// end and discarded.
    async fn read_line<S: AsyncRead + Unpin>(
        &mut self,
        io: &mut BufReader<S>,
    ) -> Result<Line, Ended> {
        let max = self.policy.limits.max_line_bytes;
        let mut line = Vec::new();
        let mut too_long = false;
        // The whole line within the idle time: a client trickling a byte at a
        // time does not hold the connection open for longer.
        let idle = Instant::now() + self.policy.limits.idle;
        loop {
            self.fill(io, idle).await?;
            let buf = io.buffer();
            let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
                Some(at) => (buf.get(..=at).unwrap_or(buf), true),
                None => (buf, false),
            };
            let used = chunk.len();
            self.received += used as u64;
            if !too_long {
                line.extend_from_slice(chunk);
                if line.len() > max {
                    too_long = true;
                    line = Vec::new();
                }
            }
            io.consume(used);
            if done {
                // A CR must end the line too: smtp-proto skips a CR inside
                // a command word (it reads "Q<CR>UIT" as QUIT).
                let head = line.get(..line.len().saturating_sub(2)).unwrap_or_default();
                return Ok(if too_long {
                    Line::TooLong
                } else if !line.ends_with(b"\r\n") || head.contains(&b'\r') {
                    Line::BareNewline
                } else {
                    Line::Complete(line)
                });
            }
        }
    }

    /// Reads the message up to CRLF.CRLF, dot-unstuffed. Past the size limit,
    /// or once the buffer budget is spent, the rest is read and thrown away,
    /// so the client gets its 552 or 452.
    async fn read_data<S: AsyncRead + Unpin>(
        &mut self,
        io: &mut BufReader<S>,
    ) -> Result<Data, Ended> {
        let max = self.policy.limits.max_message_bytes;
        let mut receiver = DataReceiver::new();
        let mut data = Data {
            bytes: Vec::new(),
            too_big: false,
            no_room: false,
            paid: None,
            bare_newline: false,
        };
        let mut newlines = NewlineCheck::after_crlf();
        // The DATA line ended with CRLF: a message that begins with "." is
        // dot-stuffed (or ends) right away.
        receiver.ingest(&mut b"\r\n".iter(), &mut Vec::new());
        loop {
            // A large message on a slow link may take longer than the idle
            // time: here the limit is on silence (and on the data rate),
            // within the session's limit.
            let idle = Instant::now() + self.policy.limits.idle;
            self.fill(io, idle).await?;
            let buf = io.buffer();
            let keeping = !data.too_big && !data.no_room;
            // While the message is kept, the receiver gets no more than can
            // take it to `max` + 2 bytes (the CR it may hold back, and one
            // byte to show the message is too big); the rest of the read
            // waits in `io` for the next turn. So a message's buffer never
            // needs more than that, whatever the reads, and a message of
            // exactly `max` fits in the same budget at every read boundary.
            let buf = if keeping {
                let room = max.saturating_add(2).saturating_sub(data.bytes.len());
                buf.get(..room.max(1)).unwrap_or(buf)
            } else {
                buf
            };
            if keeping {
                self.make_room(&mut data, buf.len());
            }
            let mut rest = buf.iter();
            let done = if data.too_big || data.no_room {
                let mut discard = Vec::new();
                receiver.ingest(&mut rest, &mut discard)
            } else {
                receiver.ingest(&mut rest, &mut data.bytes)
            };
            let used = buf.len() - rest.len();
            newlines.feed(buf.get(..used).unwrap_or_default());
            io.consume(used);
            self.received += used as u64;
            // Until the end, smtp-proto may hold one byte it takes back: the
            // CR of an end marker split after CRLF "." CR.
            let held_back = usize::from(!done);
            if data.bytes.len() > max.saturating_add(held_back) {
                data.too_big = true;
                data.bytes = Vec::new();
                data.paid = None;
            }
            if done {
                data.bare_newline = newlines.found();
                return Ok(data);
            }
        }
    }

    /// Grows the message buffer to hold `incoming` more bytes, paying for
    /// the growth from the shared budget first (by a quarter of the buffer
    /// at a time, so growing stays linear, and never past the `max` + 2
    /// bytes [`Self::read_data`] feeds at most). When the budget cannot pay,
    /// the buffer is given back and the message marked `no_room`.
    fn make_room(&self, data: &mut Data, incoming: usize) {
        let needed = data.bytes.len().saturating_add(incoming);
        let capacity = data.bytes.capacity();
        if needed <= capacity {
            return;
        }
        let ceiling = self.policy.limits.max_message_bytes.saturating_add(2);
        let target = needed
            .max(capacity.saturating_add(capacity / 4))
            .min(ceiling)
            .max(needed);
        match self.policy.buffers.take(target - capacity) {
            Some(more) => {
                match data.paid.as_mut() {
                    Some(paid) => paid.merge(more),
                    None => data.paid = Some(more),
                }
                data.bytes.reserve_exact(target - data.bytes.len());
            }
            None => {
                data.no_room = true;
                data.bytes = Vec::new();
                data.paid = None;
            }
        }
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

/// Looks for an LF without its CR, or a CR without its LF, in a stream
/// read in pieces. The raw DATA bytes are checked rather than the
/// dot-unstuffed message: removing a dot after CRLF joins no CR to an LF,
/// and the end marker's own CRs and LF are checked too.
struct NewlineCheck {
    prev: u8,
    bare: bool,
}

impl NewlineCheck {
    /// For a stream that starts after a CRLF.
    fn after_crlf() -> Self {
        Self {
            prev: b'\n',
            bare: false,
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.bare |= b == b'\n' && self.prev != b'\r' || self.prev == b'\r' && b != b'\n';
            self.prev = b;
        }
    }

    /// Whether a CR or LF was bare (a CR at the very end counts).
    fn found(&self) -> bool {
        self.bare || self.prev == b'\r'
    }
}

#[cfg(test)]
mod tests;
