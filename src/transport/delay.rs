//! Slows down the answer to a failed authentication: once a flag is set
//! (by the SASL layer), the next write waits for a delay first, so that
//! guessing passwords over many connections is slow.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A stream whose writes wait `delay` once `flag` is set.
pub(crate) struct DelayOnFlag<S> {
    inner: S,
    flag: Arc<AtomicBool>,
    delay: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    done: bool,
}

impl<S> DelayOnFlag<S> {
    pub(crate) fn new(inner: S, flag: Arc<AtomicBool>, delay: Duration) -> Self {
        DelayOnFlag {
            inner,
            flag,
            delay,
            sleep: None,
            done: false,
        }
    }

    fn poll_delay(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.done && self.flag.load(Ordering::Acquire) {
            let delay = self.delay;
            let s = self
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(delay)));
            ready!(s.as_mut().poll(cx));
            self.done = true;
            self.sleep = None;
        }
        Poll::Ready(())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for DelayOnFlag<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for DelayOnFlag<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_delay(cx));
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_delay(cx));
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_delay(cx));
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
