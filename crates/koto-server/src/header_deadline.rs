//! A deadline on a new connection's request headers (slow-loris): hyper enforces none when
//! `axum::serve` gives it no timer, so a client trickling a request line could hold a
//! connection and its task forever. [`HeadersWithin`] wraps the listener; each connection's
//! reads fail with `TimedOut` (hyper then closes it) if the first `\r\n\r\n` has not arrived
//! within `BODY_READ_TIMEOUT` of the accept. After that the connection is left alone: bodies
//! have their own deadline (`routes::with_read_deadline`), and SSE streams and WebSockets may
//! stay quiet for as long as they live.
//!
//! It does not cover the headers of a later request on a kept-alive connection, nor HTTP/2
//! frames after the preface (which holds a `\r\n\r\n` itself).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::serve::Listener;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// A listener whose connections must send their first headers within `timeout`.
pub struct HeadersWithin<L> {
    inner: L,
    timeout: Duration,
}

impl<L> HeadersWithin<L> {
    pub fn new(inner: L, timeout: Duration) -> Self {
        HeadersWithin { inner, timeout }
    }
}

impl<L: Listener> Listener for HeadersWithin<L> {
    type Io = HeaderDeadline<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = self.inner.accept().await;
        (HeaderDeadline::new(io, self.timeout), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// One connection: reads time out until the end of the first headers has been read.
pub struct HeaderDeadline<T> {
    inner: T,
    /// `None` once the headers' end was seen.
    deadline: Option<Pin<Box<Sleep>>>,
    /// How many bytes of `\r\n\r\n` the bytes read so far end with.
    matched: usize,
}

const HEADERS_END: &[u8; 4] = b"\r\n\r\n";

impl<T> HeaderDeadline<T> {
    fn new(inner: T, timeout: Duration) -> Self {
        HeaderDeadline {
            inner,
            deadline: Some(Box::pin(tokio::time::sleep(timeout))),
            matched: 0,
        }
    }

    /// Feeds bytes read; true once `\r\n\r\n` has gone by.
    fn saw_headers_end(&mut self, bytes: &[u8]) -> bool {
        for &byte in bytes {
            self.matched = if byte == HEADERS_END[self.matched] {
                self.matched + 1
            } else if byte == HEADERS_END[0] {
                1
            } else {
                0
            };
            if self.matched == HEADERS_END.len() {
                return true;
            }
        }
        false
    }
}

fn timed_out() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "the request headers did not arrive in time (BODY_READ_TIMEOUT)",
    )
}

impl<T: AsyncRead + Unpin> AsyncRead for HeaderDeadline<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.deadline.is_none() {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let new_bytes = buf.filled()[before..].to_vec();
                if this.saw_headers_end(&new_bytes) {
                    this.deadline = None;
                } else if new_bytes.is_empty() {
                    // End of stream: nothing to time out.
                    this.deadline = None;
                } else if this
                    .deadline
                    .as_mut()
                    .is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready())
                {
                    // Bytes, but a trickle past the deadline.
                    return Poll::Ready(Err(timed_out()));
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => {
                let expired = this
                    .deadline
                    .as_mut()
                    .is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready());
                if expired {
                    Poll::Ready(Err(timed_out()))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for HeaderDeadline<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The deadline itself is tested through a real socket: tests/it/limits.rs,
    // trickled_headers_are_cut_off_at_the_read_timeout.
    #[tokio::test]
    async fn the_end_is_found_across_reads() {
        let (_client, server) = tokio::io::duplex(8);
        let mut deadline = HeaderDeadline::new(server, Duration::from_secs(1));
        assert!(!deadline.saw_headers_end(b"GET / HTTP/1.1\r\nA: b\r"));
        assert!(deadline.saw_headers_end(b"\n\r\n"));
    }
}
