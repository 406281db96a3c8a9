//! A byte stream that sends what was written when its owner next waits to read, instead of at
//! every flush.
//!
//! fe2o3-amqp's connection engine flushes after every frame, so each transfer and each
//! disposition costs a TLS record and a `writev` of its own (50,000 pipelined sends made 50,000
//! system calls on each side, where MQTT made ~1,200). The engine is one task that, whenever it
//! has nothing left to do, waits on its reader: flushing there sends every frame it produced in
//! that burst at once, with no added delay (the bytes leave before the task sleeps). Data also
//! goes at [`SEND_AT`] bytes and on shutdown.
//!
//! This is only correct for an owner that reads whenever it waits, as that engine does (it always
//! awaits the peer's frames alongside its queues); do not use it under other protocols.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Buffered bytes that are sent at once, without waiting for a read: one full TLS record.
pub const SEND_AT: usize = 16 * 1024;

#[derive(Debug)]
pub struct WriteBehind<S> {
    inner: S,
    pending: Vec<u8>,
    /// How much of `pending` the inner stream has taken.
    sent: usize,
}

impl<S> WriteBehind<S> {
    pub fn new(inner: S) -> Self {
        WriteBehind { inner, pending: Vec::with_capacity(SEND_AT), sent: 0 }
    }

    /// Bytes written and not yet handed to the inner stream.
    pub fn unsent(&self) -> usize {
        self.pending.len() - self.sent
    }
}

impl<S: AsyncWrite + Unpin> WriteBehind<S> {
    /// Hands every pending byte to the inner stream and flushes it.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.pending.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.pending.clear();
        self.sent = 0;
        Pin::new(&mut self.inner).poll_flush(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WriteBehind<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.pending.is_empty() {
            // Pending means the socket is full and `cx` will be woken when it drains; the read
            // goes ahead meanwhile.
            if let Poll::Ready(Err(e)) = this.poll_send(cx) {
                return Poll::Ready(Err(e));
            }
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteBehind<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.pending.len() >= SEND_AT {
            ready!(this.poll_send(cx))?;
        }
        this.pending.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    /// Sends only once [`SEND_AT`] bytes are waiting; otherwise the next read sends them.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pending.len() >= SEND_AT {
            return this.poll_send(cx);
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;
    use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt, DuplexStream};

    /// What the peer can read right now, without waiting.
    fn readable_now(peer: &mut DuplexStream) -> Vec<u8> {
        let mut got = vec![0u8; 4 * SEND_AT];
        match peer.read(&mut got).now_or_never() {
            Some(Ok(n)) => got[..n].to_vec(),
            _ => Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_flush_waits_for_the_next_read_which_sends_everything_at_once() {
        let (ours, mut peer) = duplex(8 * SEND_AT);
        let mut stream = WriteBehind::new(ours);
        for frame in [&b"one"[..], b"two", b"three"] {
            stream.write_all(frame).await.unwrap();
            stream.flush().await.unwrap();
        }
        assert_eq!(readable_now(&mut peer), b"", "sent before the owner waited to read");
        assert_eq!(stream.unsent(), 11);
        // The owner waits for the peer: that poll sends the frames, then the answer arrives.
        let mut answer = [0u8; 2];
        let read = tokio::spawn(async move {
            stream.read_exact(&mut answer).await.unwrap();
            (stream, answer)
        });
        let mut sent = [0u8; 11];
        peer.read_exact(&mut sent).await.unwrap();
        assert_eq!(&sent, b"onetwothree");
        peer.write_all(b"ok").await.unwrap();
        let (stream, answer) = read.await.unwrap();
        assert_eq!((&answer, stream.unsent()), (b"ok", 0));
    }

    #[tokio::test]
    async fn a_full_record_is_sent_by_the_flush_and_the_rest_by_shutdown() {
        let (ours, mut peer) = duplex(8 * SEND_AT);
        let mut stream = WriteBehind::new(ours);
        let big = vec![7u8; SEND_AT];
        stream.write_all(&big).await.unwrap();
        stream.flush().await.unwrap();
        assert_eq!(readable_now(&mut peer).len(), SEND_AT);
        stream.write_all(b"tail").await.unwrap();
        stream.flush().await.unwrap();
        assert_eq!(readable_now(&mut peer), b"");
        stream.shutdown().await.unwrap();
        let mut rest = Vec::new();
        peer.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"tail");
    }

    #[tokio::test]
    async fn a_broken_peer_fails_the_read_that_sends() {
        let (ours, peer) = duplex(64);
        let mut stream = WriteBehind::new(ours);
        stream.write_all(b"lost").await.unwrap();
        stream.flush().await.unwrap();
        drop(peer);
        let mut buf = [0u8; 4];
        let e = stream.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe, "{e}");
    }
}
