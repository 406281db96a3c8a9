//! The 8-byte AMQP protocol header after TLS says whether SASL comes first (`AMQP 3 1 0 0`) or the
//! AMQP connection itself (`AMQP 0 1 0 0`): the official Node SDK skips SASL and authenticates
//! with CBS only, the C SDK uses SASL MSSBCBS. We read the header, then replay it to fe2o3-amqp.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// Which protocol the client's header asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Amqp,
    Sasl,
}

/// Reads the header; an error names what was wrong.
pub async fn read<S: AsyncRead + Unpin>(stream: &mut S) -> Result<([u8; 8], Protocol), String> {
    let mut header = [0u8; 8];
    stream.read_exact(&mut header).await.map_err(|e| format!("reading the protocol header: {e}"))?;
    if &header[..4] != b"AMQP" || header[5..] != [1, 0, 0] {
        return Err(format!("not an AMQP 1.0 protocol header: {header:02x?}"));
    }
    match header[4] {
        0 => Ok((header, Protocol::Amqp)),
        3 => Ok((header, Protocol::Sasl)),
        id => Err(format!("unsupported AMQP protocol id {id} (TLS is on the socket already)")),
    }
}

/// A stream that yields `prefix` before the rest of `inner`.
#[derive(Debug)]
pub struct Replay<S> {
    prefix: [u8; 8],
    used: usize,
    inner: S,
}

impl<S> Replay<S> {
    pub fn new(prefix: [u8; 8], inner: S) -> Self {
        Replay { prefix, used: 0, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Replay<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if self.used < self.prefix.len() {
            let n = (self.prefix.len() - self.used).min(buf.remaining());
            let start = self.used;
            buf.put_slice(&self.prefix[start..start + n]);
            self.used += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Replay<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn headers_and_replay() {
        let mut sasl: &[u8] = b"AMQP\x03\x01\x00\x00rest";
        let (h, p) = read(&mut sasl).await.unwrap();
        assert_eq!(p, Protocol::Sasl);
        let mut replay = Replay::new(h, sasl);
        let mut all = Vec::new();
        replay.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"AMQP\x03\x01\x00\x00rest");
        let mut amqp: &[u8] = b"AMQP\x00\x01\x00\x00";
        assert_eq!(read(&mut amqp).await.unwrap().1, Protocol::Amqp);
        for bad in [&b"AMQP\x02\x01\x00\x00"[..], b"MQTT\x00\x01\x00\x00", b"AMQP"] {
            let mut s = bad;
            assert!(read(&mut s).await.is_err());
        }
    }
}
