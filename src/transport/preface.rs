//! Whether a connection's client has sent the HTTP/2 connection preface yet.
//!
//! hyper waits for the preface for as long as the socket stays open, and offers no timeout for
//! it; `connections` closes a connection whose preface has not arrived by its handshake
//! deadline. The preface is the first 24 bytes a client sends (RFC 9113, section 3.4); they are
//! counted as they are read, and after them nothing more is done.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Length of `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`.
const PREFACE_LEN: usize = 24;

/// The other end of a watched connection: says whether the preface has been read.
#[derive(Clone)]
pub(super) struct PrefaceSeen(Arc<AtomicBool>);

impl PrefaceSeen {
    /// Wraps `io`, and returns the handle that tells whether its preface has been read.
    pub(super) fn watch<I>(io: I) -> (PrefaceIo<I>, PrefaceSeen) {
        let seen = PrefaceSeen(Arc::new(AtomicBool::new(false)));
        let io = PrefaceIo {
            io,
            read: 0,
            seen: seen.clone(),
        };
        (io, seen)
    }

    pub(super) fn is_seen(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// A connection's I/O, counting the bytes read until the preface is complete.
pub(super) struct PrefaceIo<I> {
    io: I,
    read: usize,
    seen: PrefaceSeen,
}

impl<I: AsyncRead + Unpin> AsyncRead for PrefaceIo<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let result = Pin::new(&mut this.io).poll_read(cx, buf);
        if this.read < PREFACE_LEN {
            this.read += buf.filled().len() - before;
            if this.read >= PREFACE_LEN {
                this.seen.0.store(true, Ordering::Release);
            }
        }
        result
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for PrefaceIo<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn the_preface_is_seen_once_24_bytes_are_read() {
        let (mut client, server) = tokio::io::duplex(64);
        let (mut server, seen) = PrefaceSeen::watch(server);
        let mut buffer = [0u8; 64];
        client.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
        let n = server.read(&mut buffer).await.unwrap();
        assert_eq!(n, 16);
        assert!(!seen.is_seen(), "16 bytes are not the preface");
        client.write_all(b"\r\nSM\r\n\r\n").await.unwrap();
        server.read_exact(&mut buffer[..8]).await.unwrap();
        assert!(seen.is_seen());
    }
}
