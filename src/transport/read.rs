//! Reading a byte stream into the engine's input buffer without holding a
//! buffer while the stream is quiet.
//!
//! With room in the buffer it reads straight into it. Without (a new
//! engine, or one that released its buffers while idle) it reads into a
//! small array on the stack and copies what came into a buffer of that
//! size, so a connection waiting for its peer holds no input buffer; only
//! a read that fills the array (more is waiting) takes a big buffer and
//! goes on reading into it.

use bytes::BytesMut;
use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::pin::{pin, Pin};
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

/// The stack array a read goes into when the buffer has no room; a read
/// shorter than this is called small.
pub(crate) const SMALL_READ: usize = 2048;

/// The room reserved when a read fills the stack array, or a partial frame
/// needs more room: the size of a busy connection's buffer.
pub(crate) const INPUT_CHUNK: usize = 64 * 1024;

/// Room below which the buffer is not read into directly.
const MIN_ROOM: usize = 512;

/// Reads what `rd` has into `input`: `Ok(0)` at the end of the stream.
pub(crate) fn poll_read_input<R: AsyncRead + Unpin>(
    rd: &mut R,
    input: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    if input.capacity() - input.len() >= MIN_ROOM {
        return pin!(rd.read_buf(input)).poll(cx);
    }
    if !input.is_empty() {
        // Part of a frame and no room for the rest: room up to a chunk in
        // all, so the buffer keeps one size (reused in place, or replaced
        // by one of the same size) rather than growing past it.
        input.reserve(INPUT_CHUNK.saturating_sub(input.len()).max(MIN_ROOM));
        return pin!(rd.read_buf(input)).poll(cx);
    }
    let mut small = [const { MaybeUninit::<u8>::uninit() }; SMALL_READ];
    let mut buf = ReadBuf::uninit(&mut small);
    ready!(Pin::new(&mut *rd).poll_read(cx, &mut buf))?;
    let n = buf.filled().len();
    if n < SMALL_READ {
        input.extend_from_slice(buf.filled());
        return Poll::Ready(Ok(n));
    }
    // The array is full: more is likely waiting. Take a big buffer and go
    // on; an error or the end of the stream shows on the next read.
    input.reserve(INPUT_CHUNK);
    input.extend_from_slice(buf.filled());
    match pin!(rd.read_buf(input)).poll(cx) {
        Poll::Ready(Ok(m)) => Poll::Ready(Ok(n + m)),
        Poll::Ready(Err(_)) | Poll::Pending => Poll::Ready(Ok(n)),
    }
}

/// [`poll_read_input`] as a future.
pub(crate) async fn read_input<R: AsyncRead + Unpin>(
    rd: &mut R,
    input: &mut BytesMut,
) -> io::Result<usize> {
    std::future::poll_fn(|cx| poll_read_input(rd, input, cx)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn small_reads_take_a_buffer_of_their_size() {
        let (mut a, mut b) = tokio::io::duplex(1 << 20);
        let mut input = BytesMut::new();
        a.write_all(b"AMQP\x00\x01\x00\x00").await.unwrap();
        assert_eq!(read_input(&mut b, &mut input).await.unwrap(), 8);
        assert_eq!(&input[..], b"AMQP\x00\x01\x00\x00");
        assert!(input.capacity() < SMALL_READ);
    }

    #[tokio::test]
    async fn a_full_array_goes_on_into_a_big_buffer() {
        let (mut a, mut b) = tokio::io::duplex(1 << 20);
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        a.write_all(&data).await.unwrap();
        let mut input = BytesMut::new();
        let n = read_input(&mut b, &mut input).await.unwrap();
        assert_eq!(n, data.len());
        assert_eq!(&input[..], &data[..]);
        assert!(input.capacity() >= INPUT_CHUNK);
    }

    #[tokio::test]
    async fn a_partial_frame_without_room_grows_the_buffer() {
        let (mut a, mut b) = tokio::io::duplex(1 << 20);
        let mut input = BytesMut::from(&b"abc"[..]);
        a.write_all(b"def").await.unwrap();
        assert_eq!(read_input(&mut b, &mut input).await.unwrap(), 3);
        assert_eq!(&input[..], b"abcdef");
    }

    #[tokio::test]
    async fn end_of_stream_reads_zero() {
        let (a, mut b) = tokio::io::duplex(64);
        drop(a);
        let mut input = BytesMut::new();
        assert_eq!(read_input(&mut b, &mut input).await.unwrap(), 0);
        assert!(input.is_empty());
    }
}
