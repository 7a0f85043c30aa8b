//! The SMTP session (`channels/email/session.rs`) fed arbitrary byte streams:
//! commands, pipelining, STARTTLS boundaries, DATA with dot-stuffing, bare CR
//! and LF. Every byte of the input is untrusted client data.
//!
//! The session runs as in production, on an in-memory connection instead of
//! a socket and with a recording [`Mailbox`] instead of the email channel
//! (which would need Redis): the seam is the session's own generic stream and
//! its `Mailbox` trait, so no production code changes for it. The first two
//! input bytes choose the limits and how the client's bytes arrive (in reads
//! of 1 to 64 bytes, which moves the STARTTLS pipelining boundary); the rest
//! is what the client sends.
//!
//! An independent model of RFC 5321 walks the input line by line beside the
//! server's replies and checks:
//! - every reply line is `ddd<SP|->text CRLF` with a valid code (2xx to 5xx),
//!   printable ASCII only, an enhanced status code of the same class, and
//!   continuation lines of a multiline reply share its code;
//! - each complete command line gets exactly one reply, and nothing is
//!   answered that was not asked (no reply after QUIT, none after a refusal
//!   that closes the connection, no plaintext reply after "220 Ready to start
//!   TLS"); STARTTLS is refused exactly when bytes were pipelined behind it;
//! - a message is accepted (250 after DATA) only when it is within the size
//!   and line limits and holds no bare CR or LF, and then the mailbox got
//!   exactly the dot-unstuffed DATA; one over the size limit gets 552, and
//!   one holding a bare CR or LF (its end marker included) gets 554 and the
//!   connection closes, so nothing after it is read as commands;
//! - the session ends the way the replies say (QUIT, too many commands, ...).
//!
//! Memory: the session's buffers are bounded by the limits, the model keeps
//! no copy of the input, so [`SMTP_SESSION_MAX_ALLOC_BYTES`] holds whatever
//! the input's length.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::CancellationToken;

use super::Input;
use crate::channels::email::session::{
    self, ByteBudget, Ended, Envelope, Limits, Mailbox, Policy, Reply,
};
use crate::domain::EmailAddress;
use crate::privacy::{ClientKey, ClientKeyer};

/// The session's buffers (8 KiB read buffer, a message of at most
/// [`MAX_MESSAGE_BYTES`], its replies), the TLS acceptor built on the first
/// run and a TLS connection's buffers, the runtime, and the model's copy of
/// one message.
pub const SMTP_SESSION_MAX_ALLOC_BYTES: usize = 2 << 20;

const HOSTNAME: &str = "mx.tipwire.test";
const TIP_ADDRESS: &str = "tips@tipwire.test";
/// Largest message limit a run picks: a few times what the fuzzer's inputs
/// hold, so both sides of the limit are reached.
const MAX_MESSAGE_BYTES: usize = 16 * 1024;
const MAX_COMMANDS: usize = 64;
/// The session refuses DATA (452) below this much buffer budget.
const SESSION_MIN_BUFFER: usize = 8 * 1024;

/// Feeds the session `data` as one client's byte stream and checks every
/// reply against the model (see the module documentation).
pub fn smtp_session(data: &[u8]) {
    let mut input = Input::new(data);
    let mut setup = Setup::from(input.byte(), input.byte());
    let tls = setup.offer_tls.then(acceptor).flatten();
    setup.offer_tls = tls.is_some();
    let client = input.rest();
    let mailbox = Recorder::default();
    let mut wire = Wire::new(client, setup.chunk);
    let ended = run(&setup, tls, &mut wire, &mailbox);
    let delivered = mailbox
        .messages
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner);
    check(&setup, client, wire.output(), &delivered, ended);
}

/// What the first two bytes choose.
struct Setup {
    limits: Limits,
    /// Bytes per read from the client.
    chunk: usize,
    offer_tls: bool,
    /// The buffer budget may be too small for a message.
    small_budget: bool,
    budget: usize,
}

impl Setup {
    fn from(a: u8, b: u8) -> Self {
        let max_message_bytes = match a & 0x03 {
            0 => 64,
            1 => 512,
            2 => 4096,
            _ => MAX_MESSAGE_BYTES,
        };
        let max_line_bytes = if a & 0x04 == 0 { 78 } else { 1000 };
        let small_budget = a & 0x08 != 0;
        let budget = if small_budget {
            // Around the session's minimum: sometimes DATA is refused at
            // once, sometimes the budget runs out while the message comes.
            SESSION_MIN_BUFFER - 512 + usize::from(b) * 8
        } else {
            1 << 20
        };
        Self {
            limits: Limits {
                max_message_bytes,
                max_recipients: 1 + usize::from(a >> 6),
                max_line_bytes,
                max_commands: MAX_COMMANDS,
                // Never reached: the in-memory client never makes the
                // session wait.
                idle: Duration::from_secs(600),
                session: Duration::from_secs(3600),
                min_data_rate: 1,
            },
            chunk: 1 + usize::from(b % 64),
            offer_tls: a & 0x10 != 0,
            small_budget,
            budget,
        }
    }
}

fn run(
    setup: &Setup,
    tls: Option<tokio_rustls::TlsAcceptor>,
    wire: &mut Wire<'_>,
    mailbox: &Recorder,
) -> Option<Ended> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .ok()?;
    let policy = Policy {
        hostname: HOSTNAME.to_owned(),
        addresses: EmailAddress::parse(TIP_ADDRESS).ok().into_iter().collect(),
        limits: setup.limits.clone(),
        tls,
        require_tls: false,
        buffers: ByteBudget::new(setup.budget),
    };
    let cancel = CancellationToken::new();
    let client = ClientKeyer::new(Vec::new()).key(None);
    Some(runtime.block_on(session::serve(
        wire, false, client, &policy, mailbox, &cancel,
    )))
}

/// A TLS acceptor with a self-signed certificate, made once per process.
fn acceptor() -> Option<tokio_rustls::TlsAcceptor> {
    static ACCEPTOR: OnceLock<Option<tokio_rustls::TlsAcceptor>> = OnceLock::new();
    ACCEPTOR
        .get_or_init(|| {
            let certified = rcgen::generate_simple_self_signed(vec![HOSTNAME.to_owned()]).ok()?;
            let key =
                rustls::pki_types::PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der());
            let config = rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .ok()?
            .with_no_client_auth()
            .with_single_cert(vec![certified.cert.der().clone()], key.into())
            .ok()?;
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
        })
        .clone()
}

/// The client's side of the connection: its bytes in reads of `chunk`, then
/// end of file; and everything the server wrote. (The session's unit tests
/// use it to put a read boundary where they want one.)
pub(crate) struct Wire<'a> {
    input: &'a [u8],
    chunk: usize,
    output: Vec<u8>,
}

impl<'a> Wire<'a> {
    pub(crate) fn new(input: &'a [u8], chunk: usize) -> Self {
        Self {
            input,
            chunk,
            output: Vec::new(),
        }
    }

    /// Everything the server wrote.
    pub(crate) fn output(&self) -> &[u8] {
        &self.output
    }
}

impl AsyncRead for Wire<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = self.chunk.min(buf.remaining()).min(self.input.len());
        let (now, later) = self.input.split_at(n);
        buf.put_slice(now);
        self.input = later;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Wire<'_> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.output.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Accepts every message and keeps it (the session's unit tests use it
/// too).
#[derive(Default)]
pub(crate) struct Recorder {
    pub(crate) messages: Mutex<Vec<Vec<u8>>>,
}

impl Mailbox for Recorder {
    fn admit(&self, _: ClientKey) -> Result<(), Reply> {
        Ok(())
    }

    async fn receive(&self, _: Envelope, message: Vec<u8>) -> Reply {
        self.messages
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(message);
        Reply::new(250, (2, 0, 0), "Message accepted")
    }
}

// ---------------------------------------------------------------------------
// The model

/// One reply: its code, the text of its last line, and where it ended in
/// the output.
struct Answer<'a> {
    code: u16,
    text: &'a str,
}

/// Reads the server's replies one at a time, checking their form.
struct Replies<'a> {
    output: &'a [u8],
}

impl<'a> Replies<'a> {
    /// The next reply, `None` once the output is used up.
    fn next(&mut self) -> Option<Answer<'a>> {
        let mut code = None;
        while !self.output.is_empty() {
            let end = self.output.windows(2).position(|w| w == b"\r\n");
            assert!(end.is_some(), "a reply line does not end in CRLF");
            let (line, rest) = self.output.split_at(end.unwrap_or_default());
            self.output = rest.get(2..).unwrap_or_default();
            let line = std::str::from_utf8(line).unwrap_or_default();
            assert!(
                line.len() >= 4 && line.bytes().all(|b| (0x20..0x7F).contains(&b)),
                "a reply line is not printable ASCII of at least 4 characters: {line:?}"
            );
            let (digits, rest) = line.split_at(3);
            let (separator, text) = rest.split_at(1);
            let this = digits.parse::<u16>().unwrap_or_default();
            assert!(
                (200..600).contains(&this) && (this / 10) % 10 <= 5,
                "invalid reply code: {line:?}"
            );
            assert!(
                code.is_none_or(|c| c == this),
                "a multiline reply changes its code"
            );
            code = Some(this);
            if let Some(class) = text.split(' ').next().and_then(enhanced_class) {
                assert_eq!(
                    u16::from(class),
                    this / 100,
                    "enhanced code class: {line:?}"
                );
            }
            assert!(
                separator == " " || separator == "-",
                "a reply code is followed by neither space nor hyphen: {line:?}"
            );
            if separator == " " {
                return Some(Answer { code: this, text });
            }
        }
        assert!(code.is_none(), "a multiline reply is cut off");
        None
    }
}

/// The class of an RFC 3463 enhanced status code (`2.0.0` gives 2).
fn enhanced_class(word: &str) -> Option<u8> {
    let mut parts = word.split('.');
    let class: u8 = parts.next()?.parse().ok()?;
    let rest: Vec<&str> = parts.collect();
    (rest.len() == 2 && rest.iter().all(|p| p.parse::<u16>().is_ok())).then_some(class)
}

/// How the model expects the session to end.
#[derive(Debug, PartialEq, Eq)]
enum Expect {
    Closed,
    Ended(Ended),
    /// TLS started: what follows in the output is TLS records.
    Tls,
}

fn check(setup: &Setup, input: &[u8], output: &[u8], delivered: &[Vec<u8>], ended: Option<Ended>) {
    let Some(ended) = ended else {
        // No runtime: nothing ran, nothing may have been said.
        assert!(output.is_empty() && delivered.is_empty());
        return;
    };
    let mut replies = Replies { output };
    let greeting = replies.next().map(|a| a.code);
    assert_eq!(greeting, Some(220), "the session opens with a 220 greeting");
    let mut delivered = delivered.iter();
    let expect = walk(setup, input, &mut replies, &mut delivered);
    assert!(delivered.next().is_none(), "a message was delivered unseen");
    match expect {
        Expect::Tls => assert_eq!(ended, Ended::TlsHandshake),
        Expect::Ended(e) => {
            assert_eq!(ended, e);
            assert!(replies.next().is_none(), "a reply after the end");
        }
        Expect::Closed => {
            assert_eq!(ended, Ended::Closed);
            assert!(replies.next().is_none(), "a reply nobody asked for");
        }
    }
}

/// Walks the client's lines beside the replies; returns how the session
/// must have ended.
fn walk<'a>(
    setup: &Setup,
    input: &[u8],
    replies: &mut Replies<'_>,
    delivered: &mut impl Iterator<Item = &'a Vec<u8>>,
) -> Expect {
    let limits = &setup.limits;
    let mut pos = 0;
    let mut commands = 0;
    while let Some(line) = line_at(input, pos) {
        pos += line.len();
        commands += 1;
        let answer = replies.next();
        assert!(answer.is_some(), "command line {commands} got no reply");
        let Some(answer) = answer else {
            return Expect::Closed;
        };
        if commands > limits.max_commands {
            assert_eq!(answer.code, 421, "the command past the limit closes");
            return Expect::Ended(Ended::TooManyCommands);
        }
        let bare_cr = line
            .get(..line.len().saturating_sub(2))
            .is_some_and(|head| head.contains(&b'\r'));
        if line.len() > limits.max_line_bytes || !line.ends_with(b"\r\n") || bare_cr {
            assert_eq!(
                answer.code, 500,
                "an overlong or bare CR or LF command line"
            );
            continue;
        }
        let command = line.to_ascii_uppercase();
        let verb = verb(&command);
        if command == b"QUIT\r\n" || answer.code == 221 {
            assert!(
                answer.code == 221 && names(verb, b"QUIT"),
                "QUIT, and only QUIT, gets 221"
            );
            return Expect::Ended(Ended::Quit);
        }
        let starttls = verb.starts_with(b"STARTTLS");
        if starttls && matches!(answer.code, 220 | 554)
            || command == b"STARTTLS\r\n" && setup.offer_tls
        {
            assert!(setup.offer_tls, "STARTTLS accepted without a certificate");
            // The session reads in the client's chunks: bytes sent behind
            // STARTTLS are in its buffer unless the line ended a read.
            if pos % setup.chunk != 0 && pos < input.len() {
                assert_eq!(answer.code, 554, "pipelined STARTTLS must be refused");
                return Expect::Ended(Ended::TlsPipelined);
            }
            assert_eq!(answer.code, 220, "STARTTLS with nothing pipelined");
            return Expect::Tls;
        }
        assert_ne!(answer.code, 220, "220 answers only STARTTLS");
        assert!(
            answer.code != 354 || names(verb, b"DATA"),
            "354 answers only DATA"
        );
        if answer.code != 354 {
            continue;
        }
        let Some(data) = Data::read(input.get(pos..).unwrap_or_default(), limits) else {
            // Cut off inside the message: no verdict.
            return Expect::Closed;
        };
        pos += data.raw_len;
        let verdict = replies.next();
        assert!(verdict.is_some(), "a finished message got no verdict");
        let Some(verdict) = verdict else {
            return Expect::Closed;
        };
        let bare = data.bare;
        match data.expected(limits) {
            Verdict::Refused(code) if bare => {
                assert_eq!(verdict.code, code, "a bare CR or LF must be refused");
                return Expect::Ended(Ended::BareNewline);
            }
            Verdict::Refused(code) => assert!(
                verdict.code == code || setup.small_budget && verdict.code == 452,
                "expected {code}, got {} {}",
                verdict.code,
                verdict.text
            ),
            Verdict::Accepted(message) if verdict.code == 250 => assert_eq!(
                delivered.next(),
                Some(&message),
                "the mailbox must get the dot-unstuffed DATA"
            ),
            Verdict::Accepted(_) => assert!(
                setup.small_budget && verdict.code == 452,
                "a well-formed message was refused: {} {}",
                verdict.code,
                verdict.text
            ),
        }
    }
    Expect::Closed
}

/// A command line from its verb on: smtp-proto skips the spaces before it
/// (" DATA" is DATA), and no other byte.
fn verb(command: &[u8]) -> &[u8] {
    let spaces = command.iter().take_while(|&&b| b == b' ').count();
    command.get(spaces..).unwrap_or_default()
}

/// Whether `verb` names `name`, followed by whitespace (as smtp-proto ends a
/// verb).
fn names(verb: &[u8], name: &[u8]) -> bool {
    verb.starts_with(name) && verb.get(name.len()).is_some_and(u8::is_ascii_whitespace)
}

/// The complete line (up to and including LF) at `pos`.
fn line_at(input: &[u8], pos: usize) -> Option<&[u8]> {
    let rest = input.get(pos..)?;
    let end = rest.iter().position(|&b| b == b'\n')?;
    rest.get(..=end)
}

/// One message as RFC 5321 §4.5.2 reads it, with the end marker as
/// smtp-proto recognises it ("." alone on a line, any run of CRs before its
/// LF: a run of more than one is a bare CR and refused).
struct Data {
    /// Input bytes up to and including the end marker.
    raw_len: usize,
    /// The dot-unstuffed message, unless it is over the size limit.
    message: Option<Vec<u8>>,
    /// Its length.
    len: usize,
    /// Some CR or LF of the message or its end marker is bare.
    bare: bool,
    /// Some line (split at LF, CR counted) is over the line limit.
    long_line: bool,
}

enum Verdict {
    Accepted(Vec<u8>),
    Refused(u16),
}

impl Data {
    /// Reads a message from the start of `raw` (just after the DATA line);
    /// `None` when `raw` ends before the end marker.
    fn read(raw: &[u8], limits: &Limits) -> Option<Self> {
        let mut message = Some(Vec::new());
        let mut len = 0;
        let mut line = 0;
        let mut long_line = false;
        let mut bare = false;
        // The last two bytes received (the DATA line's CRLF first), which
        // say where lines start, and the last byte of the message, which
        // says whether a CR or LF is bare.
        let (mut before, mut last) = (b'\r', b'\n');
        let mut previous = None;
        for (i, &byte) in raw.iter().enumerate() {
            if before == b'\r' && last == b'\n' && byte == b'.' {
                let after = raw.get(i + 1..).unwrap_or_default();
                let crs = after.iter().take_while(|&&b| b == b'\r').count();
                if crs > 0 && after.get(crs) == Some(&b'\n') {
                    return Some(Self {
                        raw_len: i + 2 + crs,
                        message,
                        len,
                        bare: bare || crs > 1,
                        long_line,
                    });
                }
                // A stuffed dot, dropped.
                (before, last) = (last, byte);
                continue;
            }
            bare |= byte == b'\n' && previous != Some(b'\r');
            bare |= previous == Some(b'\r') && byte != b'\n';
            if byte == b'\n' {
                line = 0;
            } else {
                line += 1;
                long_line |= line > limits.max_line_bytes;
            }
            len += 1;
            if len > limits.max_message_bytes {
                message = None;
            } else if let Some(m) = message.as_mut() {
                m.push(byte);
            }
            previous = Some(byte);
            (before, last) = (last, byte);
        }
        None
    }

    fn expected(self, limits: &Limits) -> Verdict {
        if self.bare {
            Verdict::Refused(554)
        } else if self.len > limits.max_message_bytes {
            Verdict::Refused(552)
        } else if self.long_line {
            Verdict::Refused(554)
        } else {
            Verdict::Accepted(self.message.unwrap_or_default())
        }
    }
}
