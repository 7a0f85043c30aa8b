//! A connection may be read only so far ahead of its answers. actix-http
//! decodes up to 16 pipelined requests per HTTP/1.1 connection while the
//! first is answered, each head up to 128 KiB: a client that pipelines fat
//! heads and never reads the answers would hold about 2 MiB per connection.
//! [`ReadAhead`] stops reading once `limit` bytes arrived with nothing
//! written back, and reads on after the next write, so what one connection
//! holds is bounded by `limit` plus the dispatcher's fixed buffers.
//!
//! Bytes read must also be answered within `deadline`. actix times the head
//! of a connection's first request only: on a kept-alive connection, a
//! client that answered one request and then dripped the next head a header
//! line a second held the connection, and its admission slot, for as long
//! as it liked. From the first byte read after an answer, something must be
//! written back before the deadline, or reading fails with `TimedOut` and
//! the dispatcher closes the connection.
//!
//! Untrusted input: the connection's bytes, only counted here.

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

pub struct ReadAhead<T> {
    io: T,
    unanswered: usize,
    limit: usize,
    parked: Option<Waker>,
    deadline: Duration,
    /// Set from the first unanswered byte to the next answer.
    answer_by: Option<Pin<Box<Sleep>>>,
}

impl<T> ReadAhead<T> {
    pub fn new(io: T, limit: usize, deadline: Duration) -> Self {
        Self {
            io,
            unanswered: 0,
            limit,
            parked: None,
            deadline,
            answer_by: None,
        }
    }

    fn answered(&mut self, written: usize) {
        if written > 0 {
            self.unanswered = 0;
            self.answer_by = None;
            if let Some(waker) = self.parked.take() {
                waker.wake();
            }
        }
    }

    /// Whether the bytes read so far went unanswered past the deadline
    /// (registering for a wake-up when it comes).
    fn overdue(&mut self, cx: &mut Context<'_>) -> bool {
        self.answer_by
            .as_mut()
            .is_some_and(|timer| timer.as_mut().poll(cx).is_ready())
    }
}

fn overdue_error() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "bytes read went unanswered past the deadline",
    )
}

impl<T: AsyncRead + Unpin> AsyncRead for ReadAhead<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.overdue(cx) {
            return Poll::Ready(Err(overdue_error()));
        }
        let room = this.limit.saturating_sub(this.unanswered);
        if room == 0 {
            // Woken by the next write on this connection (or the deadline).
            this.parked = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let before = buf.filled().len();
        let result = if buf.remaining() > room {
            // Read into a window of `room` bytes (zeroed first: no unsafe).
            let mut part = ReadBuf::new(buf.initialize_unfilled_to(room));
            let polled = Pin::new(&mut this.io).poll_read(cx, &mut part);
            let got = part.filled().len();
            buf.advance(got);
            polled
        } else {
            Pin::new(&mut this.io).poll_read(cx, buf)
        };
        let got = buf.filled().len().saturating_sub(before);
        this.unanswered = this.unanswered.saturating_add(got);
        if got > 0 && this.answer_by.is_none() {
            this.answer_by = Some(Box::pin(tokio::time::sleep(this.deadline)));
            // Polled once so that the deadline wakes this task.
            if this.overdue(cx) {
                return Poll::Ready(Err(overdue_error()));
            }
        }
        if result.is_pending() && this.overdue(cx) {
            return Poll::Ready(Err(overdue_error()));
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ReadAhead<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = polled {
            this.answered(n);
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = polled {
            this.answered(n);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn reading_stops_at_the_limit_until_something_is_written_back() {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let mut server = ReadAhead::new(server, 1000, Duration::from_secs(60));
        client.write_all(&[b'x'; 5000]).await.unwrap();

        let mut got = Vec::new();
        let mut buf = [0u8; 300];
        loop {
            match futures_util::FutureExt::now_or_never(server.read(&mut buf)) {
                Some(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
        assert_eq!(got.len(), 1000, "read past the limit without an answer");

        server.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
        let n = server.read(&mut buf).await.unwrap();
        assert!(n > 0);
        assert!(got.len() + n <= 2000);
    }

    /// Review of issue 10 item 14: a kept-alive connection's next request
    /// head, dripped a line at a time, was never timed. Bytes unanswered past
    /// the deadline now fail the read, which closes the connection.
    #[tokio::test(start_paused = true)]
    async fn bytes_unanswered_past_the_deadline_fail_the_read() {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let mut server = ReadAhead::new(server, 1000, Duration::from_secs(20));
        let mut buf = [0u8; 256];

        // An answered request, then the next head a line at a time.
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        assert!(server.read(&mut buf).await.unwrap() > 0);
        server.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        // Idle after an answer is actix's keep-alive to time, not this.
        tokio::time::advance(Duration::from_secs(100)).await;
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        assert!(server.read(&mut buf).await.unwrap() > 0);
        for _ in 0..19 {
            tokio::time::advance(Duration::from_secs(1)).await;
            client.write_all(b"X-Drip: 1\r\n").await.unwrap();
            assert!(server.read(&mut buf).await.unwrap() > 0);
        }
        // The deadline passes with the client silent: the pending read fails
        // (the outer timeout, an hour of paused time, is a hang guard).
        let read = tokio::time::timeout(Duration::from_secs(3600), server.read(&mut buf)).await;
        let err = read.expect("the read outlived the deadline").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    }
}
