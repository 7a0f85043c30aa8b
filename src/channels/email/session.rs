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
mod tests {
    use super::*;
    // The mailbox the SMTP fuzz target drives the session with.
    use crate::fuzzing::smtp::Recorder;
    use tokio::io::{AsyncReadExt, DuplexStream};

    fn policy(max_message_bytes: usize, max_commands: usize, idle_ms: u64) -> Policy {
        Policy {
            hostname: "mx.example.org".into(),
            addresses: vec![EmailAddress::parse("tips@example.org").unwrap()],
            limits: Limits {
                max_message_bytes,
                max_recipients: 2,
                max_line_bytes: 1000,
                max_commands,
                idle: Duration::from_millis(idle_ms),
                session: Duration::from_secs(30),
                min_data_rate: 1,
            },
            tls: None,
            require_tls: false,
            buffers: ByteBudget::new(1 << 30),
        }
    }

    /// Runs a session against `input` sent all at once (pipelined), and
    /// returns everything the server wrote and what the mailbox got.
    async fn converse(policy: Policy, input: &[u8]) -> (String, Vec<Vec<u8>>, Ended) {
        let (mut client, server): (DuplexStream, DuplexStream) = tokio::io::duplex(1 << 20);
        let recorder = Recorder::default();
        let cancel = CancellationToken::new();
        client.write_all(input).await.unwrap();
        let keyer = crate::privacy::ClientKeyer::new(Vec::new());
        let key = keyer.key(None);
        let ended = serve(server, false, key, &policy, &recorder, &cancel).await;
        drop(client.shutdown().await);
        let mut out = String::new();
        client.read_to_string(&mut out).await.unwrap();
        (out, recorder.messages.into_inner().unwrap(), ended)
    }

    fn codes(out: &str) -> Vec<&str> {
        out.lines()
            .filter(|l| l.as_bytes().get(3) == Some(&b' '))
            .map(|l| l.get(..3).unwrap())
            .collect()
    }

    const HELLO: &[u8] = b"EHLO client.example\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<tips@example.org>\r\nDATA\r\n";

    #[tokio::test]
    async fn a_message_is_received_dot_unstuffed_and_acknowledged() {
        let input = [
            HELLO,
            b"Subject: x\r\n\r\n..leading dot\r\nbody\r\n.\r\nQUIT\r\n",
        ]
        .concat();
        let (out, got, ended) = converse(policy(10_000, 100, 5_000), &input).await;
        assert_eq!(
            codes(&out),
            ["220", "250", "250", "250", "354", "250", "221"]
        );
        assert_eq!(
            got,
            [b"Subject: x\r\n\r\n.leading dot\r\nbody\r\n".to_vec()]
        );
        assert_eq!(ended, Ended::Quit);
        assert!(out.contains("250-SIZE 10000\r\n"));
        assert!(!out.contains("STARTTLS"), "no certificate, no STARTTLS");
    }

    #[tokio::test]
    async fn mail_for_other_addresses_is_refused_as_relaying() {
        let input = b"EHLO c\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<victim@elsewhere.example>\r\nRCPT TO:<TIPS@Example.org>\r\nQUIT\r\n";
        let (out, _, _) = converse(policy(10_000, 100, 5_000), input).await;
        assert_eq!(codes(&out), ["220", "250", "250", "550", "250", "221"]);
    }

    #[tokio::test]
    async fn bare_lf_dots_end_nothing_and_the_message_is_refused() {
        // The smuggling pattern: "\n.\n" and "\r\n.\n" must not end the data.
        let input = [
            HELLO,
            b"Subject: a\r\n\r\nfirst\n.\nMAIL FROM:<x@evil.example>\r\nRCPT TO:<tips@example.org>\r\nDATA\r\nsmuggled\r\n.\n\r\n.\r\nQUIT\r\n",
        ]
        .concat();
        let (out, got, ended) = converse(policy(10_000, 100, 5_000), &input).await;
        // Refused, and nothing after it is read as a command.
        assert_eq!(codes(&out), ["220", "250", "250", "250", "354", "554"]);
        assert_eq!(ended, Ended::BareNewline);
        assert!(got.is_empty());
    }

    #[tokio::test]
    async fn a_bare_cr_in_the_message_is_refused() {
        let input = [HELLO, b"Subject: a\r\n\r\nx\ry\r\n.\r\nQUIT\r\n"].concat();
        let (out, got, _) = converse(policy(10_000, 100, 5_000), &input).await;
        assert!(codes(&out).contains(&"554"));
        assert!(got.is_empty());
    }

    #[tokio::test]
    async fn an_oversized_message_is_read_to_its_end_and_refused() {
        let body = "x".repeat(900);
        let mut input = HELLO.to_vec();
        for _ in 0..20 {
            input.extend_from_slice(body.as_bytes());
            input.extend_from_slice(b"\r\n");
        }
        input.extend_from_slice(b".\r\nNOOP\r\nQUIT\r\n");
        let (out, got, _) = converse(policy(5_000, 100, 5_000), &input).await;
        assert_eq!(
            codes(&out),
            ["220", "250", "250", "250", "354", "552", "250", "221"]
        );
        assert!(got.is_empty());
    }

    #[tokio::test]
    async fn a_message_of_exactly_the_limit_is_accepted_when_a_read_ends_inside_its_end_marker() {
        // smtp-proto holds the CR of CRLF "." CR until the LF comes: a read
        // ending there must not count it (found by the smtp_session fuzz
        // target: the message got 552).
        let message = [b"Subject: s\r\n\r\n".as_slice(), &[b'z'; 48], b"\r\n"].concat();
        let input = [HELLO, &message, b".\r\nQUIT\r\n"].concat();
        let split = HELLO.len() + message.len() + 2;
        let recorder = Recorder::default();
        let key = crate::privacy::ClientKeyer::new(Vec::new()).key(None);
        let policy = policy(message.len(), 100, 5_000);
        let mut wire = crate::fuzzing::smtp::Wire::new(&input, split);
        let ended = serve(
            &mut wire,
            false,
            key,
            &policy,
            &recorder,
            &CancellationToken::new(),
        )
        .await;
        let out = String::from_utf8_lossy(wire.output()).into_owned();
        assert_eq!(
            codes(&out),
            ["220", "250", "250", "250", "354", "250", "221"]
        );
        assert_eq!(recorder.messages.into_inner().unwrap(), [message]);
        assert_eq!(ended, Ended::Quit);
    }

    #[tokio::test]
    async fn a_declared_size_over_the_limit_is_refused_at_mail_from() {
        let input = b"EHLO c\r\nMAIL FROM:<a@example.net> SIZE=999999\r\nQUIT\r\n";
        let (out, _, _) = converse(policy(5_000, 100, 5_000), input).await;
        assert_eq!(codes(&out), ["220", "250", "552", "221"]);
    }

    #[tokio::test]
    async fn pipelined_commands_beyond_the_limit_close_the_connection() {
        let input = b"NOOP\r\n".repeat(1000);
        let (out, _, ended) = converse(policy(5_000, 100, 5_000), &input).await;
        let c = codes(&out);
        assert_eq!(c.len(), 102, "greeting, 100 answers, then 421");
        assert_eq!(c.last(), Some(&"421"));
        assert_eq!(ended, Ended::TooManyCommands);
    }

    /// A message of `lines` lines of 1,000 bytes after HELLO, then QUIT.
    fn big_message(lines: usize) -> Vec<u8> {
        let mut input = HELLO.to_vec();
        for _ in 0..lines {
            input.extend_from_slice(&[b'x'; 998]);
            input.extend_from_slice(b"\r\n");
        }
        input.extend_from_slice(b".\r\n");
        input
    }

    #[tokio::test]
    async fn a_message_the_buffer_budget_cannot_hold_gets_452_and_the_budget_is_paid_back() {
        let mut p = policy(100_000, 100, 5_000);
        p.buffers = ByteBudget::new(30_000);
        let budget = p.buffers.clone();
        let mut input = big_message(50);
        // The same session then sends a message that fits.
        input.extend_from_slice(
            b"MAIL FROM:<a@example.net>\r\nRCPT TO:<tips@example.org>\r\nDATA\r\nSubject: s\r\n\r\nsmall\r\n.\r\nQUIT\r\n",
        );
        let (out, got, _) = converse(p, &input).await;
        assert_eq!(
            codes(&out),
            [
                "220", "250", "250", "250", "354", "452", "250", "250", "354", "250", "221"
            ]
        );
        assert!(
            out.contains("452 4.3.1 Insufficient system storage"),
            "{out}"
        );
        assert_eq!(got, [b"Subject: s\r\n\r\nsmall\r\n".to_vec()]);
        assert_eq!(budget.available(), 30_000, "every byte paid back");
    }

    #[tokio::test]
    async fn data_is_refused_with_452_while_other_sessions_hold_the_whole_budget() {
        let budget = ByteBudget::new(50_000);
        let sharing = || Policy {
            buffers: budget.clone(),
            ..policy(100_000, 100, 5_000)
        };
        let held = budget.take(45_000).unwrap();
        let (out, got, _) = converse(sharing(), &[HELLO, b"QUIT\r\n"].concat()).await;
        assert_eq!(codes(&out), ["220", "250", "250", "250", "452", "221"]);
        assert!(got.is_empty());
        drop(held);
        let input = [big_message(10), b"QUIT\r\n".to_vec()].concat();
        let (out, got, _) = converse(sharing(), &input).await;
        assert_eq!(
            codes(&out),
            ["220", "250", "250", "250", "354", "250", "221"]
        );
        assert_eq!(got.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_dripping_a_byte_at_a_time_is_cut_off_below_the_minimum_rate() {
        let mut p = policy(100_000, 100, 30_000);
        p.limits.session = Duration::from_secs(3_600);
        p.limits.min_data_rate = 100;
        let (client, server) = tokio::io::duplex(1 << 16);
        let (mut read, mut write) = tokio::io::split(client);
        let recorder = Recorder::default();
        let cancel = CancellationToken::new();
        let keyer = crate::privacy::ClientKeyer::new(Vec::new());
        let key = keyer.key(None);
        // A byte every 20 s: never idle for the 30 s idle time, but far
        // below 100 bytes a second.
        let drip = tokio::spawn(async move {
            write.write_all(HELLO).await.unwrap();
            for byte in b"Subject: slow\r\n\r\nand slower"
                .iter()
                .cycle()
                .take(1_000)
            {
                tokio::time::sleep(Duration::from_secs(20)).await;
                if write.write_all(&[*byte]).await.is_err() {
                    break;
                }
            }
        });
        let started = Instant::now();
        let ended = serve(server, false, key, &p, &recorder, &cancel).await;
        assert_eq!(ended, Ended::TooSlow);
        // Cut once its 30 s grace and the few seconds its bytes earned are
        // used up, not after the hour-long session limit.
        assert!(started.elapsed() < Duration::from_secs(60));
        let mut out = String::new();
        read.read_to_string(&mut out).await.unwrap();
        assert!(out.ends_with("421 4.4.2 Connection too slow (below the minimum data rate), closing connection\r\n"), "{out}");
        assert!(recorder.messages.into_inner().unwrap().is_empty());
        drip.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_at_the_minimum_rate_is_served_past_the_grace_period() {
        let mut p = policy(100_000, 100, 30_000);
        p.limits.session = Duration::from_secs(3_600);
        p.limits.min_data_rate = 100;
        let (client, server) = tokio::io::duplex(1 << 16);
        let (mut read, mut write) = tokio::io::split(client);
        let recorder = Recorder::default();
        let cancel = CancellationToken::new();
        let keyer = crate::privacy::ClientKeyer::new(Vec::new());
        let key = keyer.key(None);
        // 200 bytes every second for two minutes, four times the grace.
        let steady = tokio::spawn(async move {
            write.write_all(HELLO).await.unwrap();
            write.write_all(b"Subject: steady\r\n\r\n").await.unwrap();
            for _ in 0..120 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                write.write_all(&[b'y'; 198]).await.unwrap();
                write.write_all(b"\r\n").await.unwrap();
            }
            write.write_all(b".\r\nQUIT\r\n").await.unwrap();
        });
        let ended = serve(server, false, key, &p, &recorder, &cancel).await;
        steady.await.unwrap();
        assert_eq!(ended, Ended::Quit);
        let mut out = String::new();
        read.read_to_string(&mut out).await.unwrap();
        assert_eq!(
            codes(&out),
            ["220", "250", "250", "250", "354", "250", "221"]
        );
        assert_eq!(recorder.messages.into_inner().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_client_that_stalls_mid_data_is_cut_off_and_nothing_is_kept() {
        let input = [HELLO, b"Subject: a\r\n\r\nhalf a mess"].concat();
        let (out, got, ended) = converse(policy(5_000, 100, 200), &input).await;
        assert_eq!(ended, Ended::Idle);
        assert_eq!(codes(&out).last(), Some(&"421"));
        assert!(got.is_empty());
    }

    #[tokio::test]
    async fn commands_out_of_order_bounces_and_long_lines_are_refused() {
        let long = format!("NOOP {}\r\n", "y".repeat(2000));
        let input = [
            b"MAIL FROM:<a@example.net>\r\nEHLO c\r\nRCPT TO:<tips@example.org>\r\nDATA\r\nMAIL FROM:<>\r\n".as_slice(),
            long.as_bytes(),
            b"NOOP\nVRFY root\r\nEXPN staff\r\nFOO\r\n\xff\xfe\r\nQUIT\r\n",
        ]
        .concat();
        let (out, _, _) = converse(policy(5_000, 100, 5_000), &input).await;
        assert_eq!(
            codes(&out),
            [
                "220", "503", "250", "503", "503", "550", "500", "500", "252", "502", "500", "500",
                "221"
            ]
        );
    }

    #[tokio::test]
    async fn recipients_beyond_the_limit_are_refused() {
        let input = b"EHLO c\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<tips@example.org>\r\nRCPT TO:<tips@example.org>\r\nQUIT\r\n";
        let (out, _, _) = converse(policy(5_000, 100, 5_000), input).await;
        // A repeated recipient counts once.
        assert_eq!(codes(&out), ["220", "250", "250", "250", "250", "221"]);
        let mut p = policy(5_000, 100, 5_000);
        p.addresses
            .push(EmailAddress::parse("b@example.org").unwrap());
        p.addresses
            .push(EmailAddress::parse("c@example.org").unwrap());
        let input = b"EHLO c\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<tips@example.org>\r\nRCPT TO:<b@example.org>\r\nRCPT TO:<c@example.org>\r\nQUIT\r\n";
        let (out, _, _) = converse(p, input).await;
        assert_eq!(
            codes(&out),
            ["220", "250", "250", "250", "250", "452", "221"]
        );
    }

    #[tokio::test]
    async fn require_tls_refuses_mail_on_a_plain_connection() {
        let mut p = policy(5_000, 100, 5_000);
        p.require_tls = true;
        let input = b"EHLO c\r\nMAIL FROM:<a@example.net>\r\nQUIT\r\n";
        let (out, _, _) = converse(p, input).await;
        assert_eq!(codes(&out), ["220", "250", "530", "221"]);
    }

    fn has_bare_newline(pieces: &[&[u8]]) -> bool {
        let mut check = NewlineCheck::after_crlf();
        for piece in pieces {
            check.feed(piece);
        }
        check.found()
    }

    #[test]
    fn bare_newlines_are_found_and_crlf_is_not_even_split_between_reads() {
        assert!(!has_bare_newline(&[b"a\r\nb\r\n"]));
        assert!(!has_bare_newline(&[b"a\r", b"\nb\r", b"\n"]));
        assert!(has_bare_newline(&[b"a\nb"]));
        assert!(has_bare_newline(&[b"a\rb"]));
        assert!(has_bare_newline(&[b"a\r", b"b"]));
        assert!(has_bare_newline(&[b"a\r"]));
        assert!(has_bare_newline(&[b"\n"]));
        assert!(has_bare_newline(&[b".\r\r\n"]));
        assert!(!has_bare_newline(&[b""]));
    }

    #[tokio::test]
    async fn an_oversized_message_ending_in_a_bare_cr_closes_the_connection_so_nothing_is_smuggled()
    {
        // smtp-proto ends DATA at CRLF "." CR CR LF; a relay reading CRLF.CRLF
        // strictly sends the commands after it as message text.
        let input = [
            HELLO,
            b"y".repeat(900).as_slice(),
            b"\r\n.\r\r\nMAIL FROM:<x@evil.example>\r\nRCPT TO:<tips@example.org>\r\nDATA\r\nsmuggled\r\n.\r\nQUIT\r\n",
        ]
        .concat();
        let (out, got, ended) = converse(policy(500, 100, 5_000), &input).await;
        assert_eq!(codes(&out), ["220", "250", "250", "250", "354", "554"]);
        assert_eq!(ended, Ended::BareNewline);
        assert!(got.is_empty());
    }

    /// Runs a session on `input` arriving in reads of `chunk` bytes; the
    /// reply codes, what the mailbox got and how the session ended.
    async fn in_reads(
        policy: &Policy,
        input: &[u8],
        chunk: usize,
    ) -> (Vec<String>, Vec<Vec<u8>>, Ended) {
        let recorder = Recorder::default();
        let key = crate::privacy::ClientKeyer::new(Vec::new()).key(None);
        let mut wire = crate::fuzzing::smtp::Wire::new(input, chunk);
        let ended = serve(
            &mut wire,
            false,
            key,
            policy,
            &recorder,
            &CancellationToken::new(),
        )
        .await;
        let out = String::from_utf8_lossy(wire.output()).into_owned();
        let codes = codes(&out).into_iter().map(str::to_owned).collect();
        (codes, recorder.messages.into_inner().unwrap(), ended)
    }

    /// A message of exactly `len` bytes ending in `tail` (which ends in
    /// CRLF), padded with `z` lines of at most 60 bytes.
    fn message_of(len: usize, tail: &[u8]) -> Vec<u8> {
        let mut m = b"Subject: s\r\n\r\n".to_vec();
        while m.len() + tail.len() < len {
            let left = len - m.len() - tail.len();
            if left <= 2 {
                // Too short for a line of its own: lengthen the last one.
                let at = m.len() - 2;
                m.splice(at..at, std::iter::repeat_n(b'z', left));
            } else {
                let n = (left - 2).min(60);
                m.extend(std::iter::repeat_n(b'z', n));
                m.extend_from_slice(b"\r\n");
            }
        }
        m.extend_from_slice(tail);
        assert_eq!(m.len(), len);
        m
    }

    /// The message as sent in DATA: every line that starts with "." gets
    /// one more.
    fn dot_stuffed(message: &[u8]) -> Vec<u8> {
        let mut wire = Vec::new();
        for line in message.split_inclusive(|&b| b == b'\n') {
            if line.first() == Some(&b'.') {
                wire.push(b'.');
            }
            wire.extend_from_slice(line);
        }
        wire
    }

    /// Message endings that put dots, stuffed lines and CRLFs right before
    /// the end marker, where a read boundary could confuse the count.
    const TAILS: [&[u8]; 6] = [
        b"\r\n",
        b".\r\n",
        b"..\r\n",
        b"\r\n.\r\n",
        b"x\r\n.z\r\n\r\n",
        b".\r\n.\r\n",
    ];

    #[tokio::test]
    async fn in_every_read_split_a_message_of_the_limit_is_accepted_and_one_byte_more_gets_552() {
        for tail in TAILS {
            for limit in [70, 71, 130] {
                let at_limit = message_of(limit, tail);
                let over = message_of(limit + 1, tail);
                for (message, accepted) in [(at_limit, true), (over, false)] {
                    let input = [HELLO, &dot_stuffed(&message), b".\r\nQUIT\r\n"].concat();
                    for chunk in 1..=input.len() {
                        let mut p = policy(limit, 100, 5_000);
                        p.buffers = ByteBudget::new(1 << 20);
                        let budget = p.buffers.clone();
                        let (codes, got, ended) = in_reads(&p, &input, chunk).await;
                        let what = format!(
                            "{:?} limit {limit} chunk {chunk}",
                            String::from_utf8_lossy(&message)
                        );
                        let verdict = if accepted { "250" } else { "552" };
                        assert_eq!(
                            codes,
                            ["220", "250", "250", "250", "354", verdict, "221"],
                            "{what}"
                        );
                        let expected = if accepted {
                            vec![message.clone()]
                        } else {
                            vec![]
                        };
                        assert_eq!(got, expected, "{what}");
                        assert_eq!(ended, Ended::Quit, "{what}");
                        assert_eq!(budget.available(), 1 << 20, "paid back: {what}");
                    }
                }
            }
        }
    }

    #[tokio::test]
    async fn in_every_read_split_an_end_marker_with_extra_crs_closes_the_connection() {
        // smtp-proto ends DATA at CRLF "." CR ... CR LF and keeps all but the
        // last CR: bare CRs, whatever the size.
        for crs in 2..=5 {
            let marker = [b".".as_slice(), &b"\r".repeat(crs), b"\n"].concat();
            for limit in [69, 70, 71, 75] {
                let message = message_of(70, b"\r\n");
                let input = [
                    HELLO,
                    &message,
                    &marker,
                    b"MAIL FROM:<x@evil.example>\r\nQUIT\r\n",
                ]
                .concat();
                for chunk in 1..=input.len() {
                    let mut p = policy(limit, 100, 5_000);
                    p.buffers = ByteBudget::new(1 << 20);
                    let budget = p.buffers.clone();
                    let (codes, got, ended) = in_reads(&p, &input, chunk).await;
                    let what = format!("{crs} CRs, limit {limit}, chunk {chunk}");
                    assert_eq!(codes, ["220", "250", "250", "250", "354", "554"], "{what}");
                    assert!(got.is_empty(), "{what}");
                    assert_eq!(ended, Ended::BareNewline, "{what}");
                    assert_eq!(budget.available(), 1 << 20, "paid back: {what}");
                }
            }
        }
    }

    #[tokio::test]
    async fn in_every_read_split_a_bare_cr_before_the_end_marker_is_refused() {
        for limit in [70, 71, 72] {
            // The message without its end marker is 71 bytes, its last a CR.
            let message = message_of(70, b"\r\n");
            let input = [HELLO, &message[..message.len() - 2], b"\r\r\n.\r\nQUIT\r\n"].concat();
            for chunk in 1..=input.len() {
                let (codes, got, ended) = in_reads(&policy(limit, 100, 5_000), &input, chunk).await;
                let what = format!("limit {limit}, chunk {chunk}");
                assert_eq!(codes, ["220", "250", "250", "250", "354", "554"], "{what}");
                assert!(got.is_empty(), "{what}");
                assert_eq!(ended, Ended::BareNewline, "{what}");
            }
        }
    }

    #[tokio::test]
    async fn in_every_read_split_a_message_cut_off_inside_its_end_marker_is_not_kept() {
        for end in [b".\r".as_slice(), b".\r\r", b"."] {
            for limit in [69, 70] {
                let message = message_of(70, b"\r\n");
                let input = [HELLO, &message, end].concat();
                for chunk in 1..=input.len() {
                    let mut p = policy(limit, 100, 5_000);
                    p.buffers = ByteBudget::new(1 << 20);
                    let budget = p.buffers.clone();
                    let (codes, got, ended) = in_reads(&p, &input, chunk).await;
                    let what = format!("{end:?}, limit {limit}, chunk {chunk}");
                    assert_eq!(codes, ["220", "250", "250", "250", "354"], "{what}");
                    assert!(got.is_empty(), "{what}");
                    assert_eq!(ended, Ended::Closed, "{what}");
                    assert_eq!(budget.available(), 1 << 20, "paid back: {what}");
                }
            }
        }
    }

    #[tokio::test]
    async fn a_message_never_needs_more_budget_than_the_limit_and_two_bytes_whatever_the_reads() {
        // A message of exactly the limit, with a read ending between its end
        // marker's CR and LF (every read size that divides the input there),
        // needed one byte of budget more than at any other boundary: with
        // `max_message_bytes` + one read left in the budget it got 452. Now
        // a message takes at most the limit and 2 bytes, at every boundary,
        // and one byte over the limit gets 552, never 452, within them.
        let limit = 8_300;
        let budget = limit + 2;
        for (len, verdict) in [(limit, "250"), (limit + 1, "552")] {
            let message = message_of(len, b"\r\n");
            let input = [HELLO, &message, b".\r\nQUIT\r\n", &b"x".repeat(1_000)].concat();
            let mut wrong = Vec::new();
            for chunk in 1..=input.len() {
                let mut p = policy(limit, 100, 5_000);
                p.buffers = ByteBudget::new(budget);
                let buffers = p.buffers.clone();
                let (codes, got, _) = in_reads(&p, &input, chunk).await;
                let kept = if verdict == "250" { 1 } else { 0 };
                if codes != ["220", "250", "250", "250", "354", verdict, "221"]
                    || got.len() != kept
                    || got.first().is_some_and(|m| *m != message)
                    || buffers.available() != budget
                {
                    wrong.push((chunk, codes));
                }
            }
            assert!(
                wrong.is_empty(),
                "{len} bytes: {} read sizes, first {:?}",
                wrong.len(),
                wrong.iter().take(5).collect::<Vec<_>>()
            );
        }
    }
}
