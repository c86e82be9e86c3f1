//! The in-flight window of a sender: at most `max` sends without an
//! outcome are in the connection at once; more wait in a FIFO backlog, in
//! the order `send` was called, and move on as outcomes free slots.

use super::driver::{Command, Reply};
use super::outcome::Outcome;
use super::shared::Shared;
use crate::error::{Error, ErrorKind};
use crate::message::Message;
use crate::proto::{LinkId, Payload};
use bytes::BytesMut;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use tokio::sync::mpsc;

#[derive(Debug)]
struct State {
    in_flight: usize,
    backlog: VecDeque<(Payload, Reply<Outcome>)>,
    waiters: Vec<Waker>,
}

/// The window shared by a sender's clones.
#[derive(Debug)]
pub(crate) struct Window {
    max: usize,
    link: LinkId,
    settled: bool,
    tx: mpsc::UnboundedSender<Command>,
    /// The connection's state, for the error that closed it.
    shared: Arc<Shared>,
    state: Mutex<State>,
    /// Where small messages are encoded, in the sending task: a message
    /// then moves to the driver as a few bytes of `Bytes` instead of a
    /// 488-byte `Message` copied at each hop, and many share one
    /// allocation.
    encoder: Mutex<BytesMut>,
}

/// Messages up to this size (encoded) are encoded by the sender; larger
/// ones are encoded by the engine straight into its output (one copy).
const EAGER_MAX: usize = 16 * 1024;
/// The encoder's buffer grows by at least this much at a time.
const ENCODER_CHUNK: usize = 64 * 1024;

/// A slot in the window, held by the driver until the send's outcome; its
/// drop hands the slot to the next message in the backlog.
#[derive(Debug)]
pub(crate) struct Slot(Option<Arc<Window>>);

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(w) = self.0.take() {
            w.release();
        }
    }
}

/// The last sender clone and the last in-flight send are gone: close the
/// link.
impl Drop for Window {
    fn drop(&mut self) {
        let _ = self.tx.send(Command::Detach {
            link: self.link,
            closed: true,
            error: None,
            reply: None,
        });
    }
}

impl Window {
    pub(crate) fn new(
        max: usize,
        link: LinkId,
        settled: bool,
        tx: mpsc::UnboundedSender<Command>,
        shared: Arc<Shared>,
    ) -> Arc<Self> {
        Arc::new(Window {
            max,
            link,
            settled,
            tx,
            shared,
            state: Mutex::new(State {
                in_flight: 0,
                backlog: VecDeque::new(),
                waiters: Vec::new(),
            }),
            encoder: Mutex::new(BytesMut::new()),
        })
    }

    /// The payload of `message`: small ones encoded here (see `encoder`).
    pub(crate) fn payload(&self, message: Message) -> Payload {
        let len = message.encoded_len();
        if len > EAGER_MAX {
            return Payload::Message(Box::new(message));
        }
        let bytes = {
            let mut buf = self.encoder.lock().unwrap_or_else(|e| e.into_inner());
            if buf.capacity() < len {
                buf.reserve(len.max(ENCODER_CHUNK));
            }
            message.encode(&mut *buf);
            buf.split().freeze()
        };
        Payload::Encoded(bytes)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends `message` now if a slot is free, else queues it behind the
    /// others. The outcome (or the message back, on failure) goes to `reply`.
    pub(crate) fn submit(self: &Arc<Self>, message: Payload, reply: Reply<Outcome>) {
        let mut st = self.lock();
        if st.in_flight < self.max && st.backlog.is_empty() {
            st.in_flight += 1;
            drop(st);
            if !self.dispatch(message, reply) {
                self.release();
            }
        } else {
            st.backlog.push_back((message, reply));
        }
    }

    /// Whether a send would go out at once (for `Sink`/`Service`
    /// `poll_ready`); registers the task to be woken when one would.
    /// Reserves a slot for the next [`submit_reserved`](Self::submit_reserved)
    /// (tower's contract: `Ready` is a promise), or registers the waker.
    pub(crate) fn poll_reserve(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut st = self.lock();
        if st.in_flight < self.max && st.backlog.is_empty() {
            st.in_flight += 1;
            Poll::Ready(())
        } else {
            st.waiters.push(cx.waker().clone());
            Poll::Pending
        }
    }

    /// Sends `message` in the slot reserved by `poll_reserve`.
    pub(crate) fn submit_reserved(self: &Arc<Self>, message: Payload, reply: Reply<Outcome>) {
        if !self.dispatch(message, reply) {
            self.release();
        }
    }

    /// Gives back a slot reserved by `poll_reserve` and not used.
    pub(crate) fn unreserve(self: &Arc<Self>) {
        self.release();
    }

    /// Hands a message to the driver with this slot; false (and the send
    /// failed with its message given back) if the connection is gone.
    fn dispatch(self: &Arc<Self>, message: Payload, reply: Reply<Outcome>) -> bool {
        let cmd = Command::Send {
            link: self.link,
            message,
            settled: self.settled,
            reply: Some(reply),
            permit: Some(Slot(Some(self.clone()))),
        };
        match self.tx.send(cmd) {
            Ok(()) => true,
            Err(mpsc::error::SendError(cmd)) => {
                if let Command::Send {
                    message,
                    reply: Some(reply),
                    permit: Some(mut slot),
                    ..
                } = cmd
                {
                    slot.0 = None; // the caller releases the slot, without recursion
                    let e = self.shared.error().unwrap_or_else(|| {
                        Error::new(ErrorKind::Closed, "the connection is closed")
                    });
                    let _ = reply.send(Err(e.with_message(message.into_message())));
                }
                false
            }
        }
    }

    /// Frees a slot: the next message in the backlog takes it, or the
    /// window shrinks and waiting sinks are woken.
    fn release(self: &Arc<Self>) {
        loop {
            let mut st = self.lock();
            match st.backlog.pop_front() {
                Some((message, reply)) => {
                    drop(st);
                    if self.dispatch(message, reply) {
                        return;
                    }
                }
                None => {
                    st.in_flight = st.in_flight.saturating_sub(1);
                    let waiters = std::mem::take(&mut st.waiters);
                    drop(st);
                    waiters.into_iter().for_each(Waker::wake);
                    return;
                }
            }
        }
    }
}
