//! Yamux tuned for bulk block transfer.
//!
//! `libp2p::yamux` fixes two costs that dominate when the sidecar streams
//! large blocks: every data frame is cut at 16 KiB, and each frame reaches
//! the secure channel as two writes (the 12-byte header, then the body), so
//! TLS seals a 12-byte record and the kernel sees a tiny `sendmsg` for every
//! 16 KiB of payload. This upgrade drives the same `yamux` crate with
//!
//! * [`SPLIT_SEND_SIZE`]-sized data frames (the receiver's window still
//!   bounds them; Go and JS yamux accept any frame that fits the window), and
//! * [`Coalesce`], a writer under yamux that holds small writes (frame
//!   headers, window updates, pings) until the next write or flush and sends
//!   them together with the following body in one vectored write.
//!
//! On the wire this is plain `/yamux/1.0.0`.

use std::{
    collections::VecDeque,
    io::{self, IoSlice, IoSliceMut},
    iter,
    pin::Pin,
    task::{Context, Poll, Waker},
};

use futures::{AsyncRead, AsyncWrite, future, ready};
use libp2p::core::{
    muxing::{StreamMuxer, StreamMuxerEvent},
    upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade, UpgradeInfo},
};

/// Largest data frame the sidecar sends.
pub const SPLIT_SEND_SIZE: usize = 256 * 1024;

/// Writes up to this size are held back and coalesced with the next one.
const SMALL_WRITE: usize = 512;

/// Upper bound of held-back bytes; reaching it forces them out.
const HELD_CAP: usize = 4 * 1024;

/// Inbound streams the muxer accepts before the swarm has asked for them;
/// more are reset.
const MAX_PENDING_INBOUND: usize = 256;

/// The `/yamux/1.0.0` upgrade.
#[derive(Debug, Clone)]
pub struct Upgrade {
    config: yamux::Config,
}

impl Upgrade {
    pub fn new() -> Self {
        let mut config = yamux::Config::default();
        config.set_split_send_size(SPLIT_SEND_SIZE);
        Self { config }
    }

    fn muxer<C>(self, io: C, mode: yamux::Mode) -> Muxer<Coalesce<C>>
    where
        C: AsyncRead + AsyncWrite + Unpin,
    {
        Muxer {
            connection: yamux::Connection::new(Coalesce::new(io), self.config, mode),
            pending: VecDeque::new(),
            inbound_waker: None,
        }
    }
}

impl Default for Upgrade {
    fn default() -> Self {
        Self::new()
    }
}

impl UpgradeInfo for Upgrade {
    type Info = &'static str;
    type InfoIter = iter::Once<Self::Info>;

    fn protocol_info(&self) -> Self::InfoIter {
        iter::once("/yamux/1.0.0")
    }
}

impl<C> InboundConnectionUpgrade<C> for Upgrade
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = Muxer<Coalesce<C>>;
    type Error = io::Error;
    type Future = future::Ready<Result<Self::Output, Self::Error>>;

    fn upgrade_inbound(self, io: C, _: Self::Info) -> Self::Future {
        future::ready(Ok(self.muxer(io, yamux::Mode::Server)))
    }
}

impl<C> OutboundConnectionUpgrade<C> for Upgrade
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = Muxer<Coalesce<C>>;
    type Error = io::Error;
    type Future = future::Ready<Result<Self::Output, Self::Error>>;

    fn upgrade_outbound(self, io: C, _: Self::Info) -> Self::Future {
        future::ready(Ok(self.muxer(io, yamux::Mode::Client)))
    }
}

/// A yamux connection seen as a libp2p [`StreamMuxer`].
pub struct Muxer<C> {
    connection: yamux::Connection<C>,
    /// Inbound streams yamux produced while the swarm was driving the
    /// connection through [`StreamMuxer::poll`].
    pending: VecDeque<yamux::Stream>,
    inbound_waker: Option<Waker>,
}

/// Why a yamux connection failed.
#[derive(Debug, thiserror::Error)]
#[error("yamux: {0}")]
pub struct MuxError(#[from] yamux::ConnectionError);

impl From<MuxError> for io::Error {
    fn from(e: MuxError) -> Self {
        match e.0 {
            yamux::ConnectionError::Io(e) => e,
            other => io::Error::other(other),
        }
    }
}

impl<C> Muxer<C>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    fn next_inbound(&mut self, cx: &mut Context<'_>) -> Poll<Result<yamux::Stream, MuxError>> {
        match ready!(self.connection.poll_next_inbound(cx)) {
            Some(stream) => Poll::Ready(stream.map_err(MuxError)),
            None => Poll::Ready(Err(MuxError(yamux::ConnectionError::Closed))),
        }
    }
}

impl<C> StreamMuxer for Muxer<C>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    type Substream = yamux::Stream;
    type Error = MuxError;

    fn poll_inbound(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        let this = self.get_mut();
        if let Some(stream) = this.pending.pop_front() {
            return Poll::Ready(Ok(stream));
        }
        match this.next_inbound(cx) {
            Poll::Ready(result) => Poll::Ready(result),
            Poll::Pending => {
                this.inbound_waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    fn poll_outbound(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        self.get_mut()
            .connection
            .poll_new_outbound(cx)
            .map_err(MuxError)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.get_mut().connection.poll_close(cx).map_err(MuxError)
    }

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<StreamMuxerEvent, Self::Error>> {
        // Driving the connection is how frames get read and written; an
        // inbound stream that shows up meanwhile waits for `poll_inbound`.
        let this = self.get_mut();
        loop {
            let stream = ready!(this.next_inbound(cx))?;
            if this.pending.len() < MAX_PENDING_INBOUND {
                this.pending.push_back(stream);
                if let Some(waker) = this.inbound_waker.take() {
                    waker.wake();
                }
            } else {
                tracing::debug!("too many unaccepted inbound streams; resetting one");
            }
        }
    }
}

/// A writer that holds back small writes and sends them with the next
/// write (vectored) or at the next flush. Reads pass straight through.
pub struct Coalesce<C> {
    inner: C,
    held: Vec<u8>,
}

impl<C> Coalesce<C> {
    fn new(inner: C) -> Self {
        Self {
            inner,
            held: Vec::with_capacity(HELD_CAP),
        }
    }
}

impl<C: AsyncWrite + Unpin> Coalesce<C> {
    /// Writes out every held byte.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.held.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.held))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.held.drain(..n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<C: AsyncRead + Unpin> AsyncRead for Coalesce<C> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }

    fn poll_read_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_read_vectored(cx, bufs)
    }
}

impl<C: AsyncWrite + Unpin> AsyncWrite for Coalesce<C> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.len() <= SMALL_WRITE && this.held.len() + buf.len() <= HELD_CAP {
            this.held.extend_from_slice(buf);
            return Poll::Ready(Ok(buf.len()));
        }
        loop {
            if this.held.is_empty() {
                return Pin::new(&mut this.inner).poll_write(cx, buf);
            }
            let held = this.held.len();
            let parts = [IoSlice::new(&this.held), IoSlice::new(buf)];
            let n = ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, &parts))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            if n >= held {
                this.held.clear();
                if n > held {
                    return Poll::Ready(Ok(n - held));
                }
            } else {
                this.held.drain(..n);
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use futures::{AsyncReadExt, AsyncWriteExt, io::Cursor};

    use super::*;

    /// Records each write call the way it reached the inner writer.
    #[derive(Default)]
    struct Calls {
        writes: Vec<Vec<u8>>,
        flushes: usize,
        /// Accept at most this many bytes per call.
        limit: usize,
    }

    impl AsyncWrite for Calls {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            let n = buf.len().min(this.limit);
            this.writes.push(buf[..n].to_vec());
            Poll::Ready(Ok(n))
        }

        fn poll_write_vectored(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            let mut joined: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            joined.truncate(this.limit);
            let n = joined.len();
            this.writes.push(joined);
            Poll::Ready(Ok(n))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.get_mut().flushes += 1;
            Poll::Ready(Ok(()))
        }

        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn calls(limit: usize) -> Coalesce<Calls> {
        Coalesce::new(Calls {
            limit,
            ..Calls::default()
        })
    }

    #[tokio::test]
    async fn header_and_body_reach_the_inner_writer_as_one_write() {
        let mut w = calls(usize::MAX);
        let body = vec![7u8; 64 * 1024];
        w.write_all(&[1; 12]).await.unwrap();
        assert!(w.inner.writes.is_empty(), "a header alone is held back");
        w.write_all(&body).await.unwrap();
        assert_eq!(w.inner.writes.len(), 1);
        assert_eq!(w.inner.writes[0].len(), 12 + body.len());
        assert_eq!(&w.inner.writes[0][..12], &[1; 12]);
    }

    #[tokio::test]
    async fn flush_sends_held_bytes_then_flushes_inner() {
        let mut w = calls(usize::MAX);
        w.write_all(b"ping").await.unwrap();
        w.write_all(b"pong").await.unwrap();
        w.flush().await.unwrap();
        assert_eq!(w.inner.writes, vec![b"pingpong".to_vec()]);
        assert_eq!(w.inner.flushes, 1);
        w.close().await.unwrap();
    }

    #[tokio::test]
    async fn short_inner_writes_lose_and_repeat_nothing() {
        // The inner writer takes 5 bytes per call: held bytes must go out
        // exactly once, in order, before any of the body.
        let mut w = calls(5);
        let body: Vec<u8> = (0..2000u32).map(|i| i as u8).collect();
        w.write_all(b"0123456789ab").await.unwrap();
        w.write_all(&body).await.unwrap();
        w.write_all(b"tail").await.unwrap();
        w.flush().await.unwrap();
        let sent: Vec<u8> = w.inner.writes.concat();
        let mut expected = b"0123456789ab".to_vec();
        expected.extend_from_slice(&body);
        expected.extend_from_slice(b"tail");
        assert_eq!(sent, expected);
    }

    #[tokio::test]
    async fn held_bytes_are_bounded() {
        let mut w = calls(usize::MAX);
        for _ in 0..(HELD_CAP / SMALL_WRITE + 2) {
            w.write_all(&[0; SMALL_WRITE]).await.unwrap();
        }
        assert!(w.held.len() <= HELD_CAP);
        assert!(!w.inner.writes.is_empty());
    }

    #[tokio::test]
    async fn reads_pass_through() {
        let mut r = Coalesce::new(Cursor::new(b"hello".to_vec()));
        let mut out = String::new();
        r.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "hello");
    }
}
