//! Reading an SMTP client's input under the limits: command lines, the DATA
//! stream (dot-unstuffed, checked for bare CR and LF), the idle and session
//! timeouts, the minimum data rate and the shared buffer budget. Every byte
//! read here is untrusted.

use std::time::Duration;

use smtp_proto::request::receiver::DataReceiver;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::{Conversation, Ended, Mailbox};

/// A line read from the client, or why there is none.
pub(super) enum Line {
    Complete(Vec<u8>),
    TooLong,
    /// Not ended by CRLF, or holding another CR.
    BareNewline,
}

/// What DATA produced.
pub(super) struct Data {
    pub(super) bytes: Vec<u8>,
    pub(super) too_big: bool,
    /// The buffer budget was spent: the message was read and thrown away.
    pub(super) no_room: bool,
    /// What `bytes` cost from the budget, paid back when dropped.
    pub(super) paid: Option<OwnedSemaphorePermit>,
    /// Some CR or LF of the DATA stream, end marker included, was bare.
    pub(super) bare_newline: bool,
}

impl<M: Mailbox> Conversation<'_, M> {
    /// Waits for more input, until `idle`, the session's end, or the moment
    /// the client falls below the minimum data rate, whichever comes first.
    pub(super) async fn fill<S: AsyncRead + Unpin>(
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
    pub(super) async fn read_line<S: AsyncRead + Unpin>(
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
    pub(super) async fn read_data<S: AsyncRead + Unpin>(
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
}

/// Looks for an LF without its CR, or a CR without its LF, in a stream
/// read in pieces. The raw DATA bytes are checked rather than the
/// dot-unstuffed message: removing a dot after CRLF joins no CR to an LF,
/// and the end marker's own CRs and LF are checked too.
pub(super) struct NewlineCheck {
    prev: u8,
    bare: bool,
}

impl NewlineCheck {
    /// For a stream that starts after a CRLF.
    pub(super) fn after_crlf() -> Self {
        Self {
            prev: b'\n',
            bare: false,
        }
    }

    pub(super) fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.bare |= b == b'\n' && self.prev != b'\r' || self.prev == b'\r' && b != b'\n';
            self.prev = b;
        }
    }

    /// Whether a CR or LF was bare (a CR at the very end counts).
    pub(super) fn found(&self) -> bool {
        self.bare || self.prev == b'\r'
    }
}
