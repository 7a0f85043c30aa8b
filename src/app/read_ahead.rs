//! A connection may be read only so far ahead of its answers. actix-http
//! decodes up to 16 pipelined requests per HTTP/1.1 connection while the
//! first is answered, each head up to 128 KiB: a client that pipelines fat
//! heads and never reads the answers would hold about 2 MiB per connection.
//! [`ReadAhead`] stops reading once `limit` bytes arrived with nothing
//! written back, and reads on after the next write, so what one connection
//! holds is bounded by `limit` plus the dispatcher's fixed buffers.
//!
//! Untrusted input: the connection's bytes, only counted here.

use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub struct ReadAhead<T> {
    io: T,
    unanswered: usize,
    limit: usize,
    parked: Option<Waker>,
}

impl<T> ReadAhead<T> {
    pub fn new(io: T, limit: usize) -> Self {
        Self {
            io,
            unanswered: 0,
            limit,
            parked: None,
        }
    }

    fn answered(&mut self, written: usize) {
        if written > 0 {
            self.unanswered = 0;
            if let Some(waker) = self.parked.take() {
                waker.wake();
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ReadAhead<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let room = this.limit.saturating_sub(this.unanswered);
        if room == 0 {
            // Woken by the next write on this connection.
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
        this.unanswered = this
            .unanswered
            .saturating_add(buf.filled().len().saturating_sub(before));
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
        let mut server = ReadAhead::new(server, 1000);
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
}
