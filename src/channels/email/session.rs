//! One SMTP conversation (RFC 5321) with an untrusted client. Commands are
//! parsed by `smtp-proto` (Stalwart's SMTP parser); this module keeps the
//! state, the limits and the replies. Everything the client sends is
//! untrusted, and no reply echoes it back.
//!
//! What it refuses, and why:
//! - mail for any address but the tip addresses (550): never an open relay;
//! - command lines that do not end in CRLF, and messages holding a bare LF or
//!   bare CR (554): with the end of data recognised only as CRLF.CRLF, a
//!   second message cannot be smuggled inside the first (the 2023 "SMTP
//!   smuggling" attacks rely on servers disagreeing about bare LF);
//! - bytes pipelined behind STARTTLS (the connection is closed): they were
//!   sent in clear and could be injected by anyone on the path (CVE-2011-0411);
//! - messages over the size limit (552), more recipients than allowed (452),
//!   lines over the line limit (500 or 554), more commands than allowed per
//!   connection (421), and clients silent for longer than the idle timeout or
//!   connected longer than the session timeout (421).

use std::future::Future;
use std::time::Duration;

use smtp_proto::Request;
use smtp_proto::request::receiver::DataReceiver;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::domain::EmailAddress;
use crate::privacy::ClientKey;

pub use super::replies::Reply;
use super::replies::*;

/// The limits of one connection.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_message_bytes: usize,
    pub max_recipients: usize,
    pub max_line_bytes: usize,
    pub max_commands: usize,
    pub idle: Duration,
    pub session: Duration,
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
}

impl Policy {
    fn accepts(&self, rcpt: &str) -> Option<EmailAddress> {
        let rcpt = EmailAddress::parse(rcpt).ok()?;
        self.addresses
            .iter()
            .find(|a| a.canonical() == rcpt.canonical())
            .cloned()
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
    BareLf,
}

/// What DATA produced.
struct Data {
    bytes: Vec<u8>,
    too_big: bool,
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
                Line::BareLf => {
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
        if data.too_big {
            return TOO_BIG;
        }
        if has_bare_newline(&data.bytes) {
            return BARE_NEWLINE;
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
        self.mailbox.receive(envelope, data.bytes).await
    }

    /// Waits for more input, until `idle` (or the session's end).
    async fn fill<S: AsyncRead + Unpin>(
        &self,
        io: &mut BufReader<S>,
        idle: Instant,
    ) -> Result<usize, Ended> {
        let (until, why) = if idle < self.deadline {
            (idle, Ended::Idle)
        } else {
            (self.deadline, Ended::SessionTimeout)
        };
        tokio::select! {
            read = tokio::time::timeout_at(until, io.fill_buf()) => match read {
                Err(_) => Err(why),
                Ok(Err(_)) => Err(Ended::Io),
                Ok(Ok([])) => Err(Ended::Closed),
                Ok(Ok(buf)) => Ok(buf.len()),
            },
            () = self.cancel.cancelled() => Err(Ended::ShuttingDown),
        }
    }

    /// Reads one command line. A line longer than the limit is read to its
    /// end and discarded.
    async fn read_line<S: AsyncRead + Unpin>(&self, io: &mut BufReader<S>) -> Result<Line, Ended> {
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
            if !too_long {
                line.extend_from_slice(chunk);
                if line.len() > max {
                    too_long = true;
                    line = Vec::new();
                }
            }
            io.consume(used);
            if done {
                return Ok(if too_long {
                    Line::TooLong
                } else if !line.ends_with(b"\r\n") {
                    Line::BareLf
                } else {
                    Line::Complete(line)
                });
            }
        }
    }

    /// Reads the message up to CRLF.CRLF, dot-unstuffed. Past the size limit
    /// the rest is read and thrown away, so the client gets its 552.
    async fn read_data<S: AsyncRead + Unpin>(&self, io: &mut BufReader<S>) -> Result<Data, Ended> {
        let max = self.policy.limits.max_message_bytes;
        let mut receiver = DataReceiver::new();
        let mut bytes = Vec::new();
        // The DATA line ended with CRLF: a message that begins with "." is
        // dot-stuffed (or ends) right away.
        receiver.ingest(&mut b"\r\n".iter(), &mut Vec::new());
        let mut too_big = false;
        loop {
            // A large message on a slow link may take longer than the idle
            // time: here the limit is on silence, within the session's limit.
            self.fill(io, Instant::now() + self.policy.limits.idle)
                .await?;
            let buf = io.buffer();
            let mut rest = buf.iter();
            let done = receiver.ingest(&mut rest, &mut bytes);
            let used = buf.len() - rest.len();
            io.consume(used);
            if bytes.len() > max {
                too_big = true;
                bytes.clear();
            }
            if done {
                return Ok(Data { bytes, too_big });
            }
        }
    }

    /// Says why the connection ends (where there is a reply to give).
    async fn goodbye<S: AsyncWrite + Unpin>(&self, io: &mut S, ended: Ended) -> Ended {
        let last = match ended {
            Ended::Idle => Some(IDLE),
            Ended::SessionTimeout => Some(TOO_LONG_SESSION),
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

/// Whether any LF lacks its CR, or any CR its LF.
fn has_bare_newline(bytes: &[u8]) -> bool {
    let mut prev = 0u8;
    let mut iter = bytes.iter().peekable();
    while let Some(&b) = iter.next() {
        match b {
            b'\n' if prev != b'\r' => return true,
            b'\r' if iter.peek() != Some(&&b'\n') => return true,
            _ => {}
        }
        prev = b;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use tokio::io::{AsyncReadExt, DuplexStream};

    #[derive(Default)]
    struct Recorder {
        messages: Mutex<Vec<Vec<u8>>>,
    }

    impl Mailbox for Recorder {
        fn admit(&self, _: ClientKey) -> Result<(), Reply> {
            Ok(())
        }
        async fn receive(&self, _: Envelope, message: Vec<u8>) -> Reply {
            self.messages.lock().unwrap().push(message);
            Reply::new(250, (2, 0, 0), "Message accepted")
        }
    }

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
            },
            tls: None,
            require_tls: false,
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

    #[test]
    fn bare_newlines_are_found_and_crlf_is_not() {
        assert!(!has_bare_newline(b"a\r\nb\r\n"));
        assert!(has_bare_newline(b"a\nb"));
        assert!(has_bare_newline(b"a\rb"));
        assert!(has_bare_newline(b"a\r"));
        assert!(has_bare_newline(b"\n"));
        assert!(!has_bare_newline(b""));
    }
}
