//! The in-flight window of a sender: at most `max` sends without an
//! outcome are in the connection at once; more wait in a FIFO backlog, in
//! the order `send` was called, and move on as outcomes free slots.
//!
//! Outcomes come back through the window too: each send has a slot in a
//! table shared by the sender's clones and the driver (no oneshot channel
//! per message). The driver holds a [`Completion`] per send; completing it
//! writes the outcome into the slot, wakes the [`SendFuture`] polling it and
//! frees the in-flight place, under one lock. Sends made through a
//! sender's `Sink` have no future: their outcomes are counted in a
//! [`SinkTrack`] (how many are out, the first failure), which wakes the sink
//! only when the count reaches zero or a send fails.

use super::driver::Command;
use super::outcome::Outcome;
use super::shared::Shared;
use crate::error::{Error, ErrorKind};
use crate::message::Message;
use crate::proto::{LinkId, Payload};
use bytes::BytesMut;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use tokio::sync::mpsc;

/// A send's outcome slot.
#[derive(Debug)]
enum Slot {
    /// No outcome yet; the waker of the future polling it.
    Waiting(Option<Waker>),
    Done(Result<Outcome, Error>),
    /// The outcome was taken, or its future dropped.
    Gone,
    /// A send made through a `Sink`: its outcome goes to the track.
    Sink(Arc<SinkTrack>),
}

/// The outcomes of the sends made through one sender handle's `Sink`:
/// counted, not awaited one by one (a future per send, each woken, would
/// cost a wakeup per message).
#[derive(Debug, Default)]
pub(crate) struct SinkTrack(Mutex<SinkState>);

#[derive(Debug, Default)]
struct SinkState {
    /// Sends without an outcome.
    outstanding: usize,
    /// The first failure (an error, or an outcome other than accepted)
    /// not yet reported.
    error: Option<Error>,
    /// The sink's task, waiting in `poll_flush`.
    waker: Option<Waker>,
}

impl SinkTrack {
    fn lock(&self) -> std::sync::MutexGuard<'_, SinkState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records an outcome; the waker to wake if the sink has news (none
    /// left out, or a failure).
    fn record(&self, result: Result<Outcome, Error>) -> Option<Waker> {
        let mut s = self.lock();
        s.outstanding = s.outstanding.saturating_sub(1);
        let failed = match result.and_then(Outcome::into_result) {
            Ok(_) => false,
            Err(e) => {
                s.error.get_or_insert(e);
                true
            }
        };
        if failed || s.outstanding == 0 {
            s.waker.take()
        } else {
            None
        }
    }

    /// The first failure not yet reported, if any.
    pub(crate) fn take_error(&self) -> Option<Error> {
        self.lock().error.take()
    }

    /// Ready once every send has its outcome (an error if one failed).
    pub(crate) fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let mut s = self.lock();
        if let Some(e) = s.error.take() {
            return Poll::Ready(Err(e));
        }
        if s.outstanding == 0 {
            return Poll::Ready(Ok(()));
        }
        if !s.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            s.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

#[derive(Debug)]
struct State {
    in_flight: usize,
    /// Sends waiting for an in-flight place, with their slots' numbers.
    backlog: VecDeque<(Payload, u64)>,
    waiters: Vec<Waker>,
    /// The outcome slots, `slots[0]` being send number `base`; gone ones
    /// are dropped from the front.
    slots: VecDeque<Slot>,
    base: u64,
}

impl State {
    /// A new slot; its send number.
    fn open(&mut self, slot: Slot) -> u64 {
        self.slots.push_back(slot);
        self.base + self.slots.len() as u64 - 1
    }

    fn slot(&mut self, seq: u64) -> Option<&mut Slot> {
        let i = usize::try_from(seq.checked_sub(self.base)?).ok()?;
        self.slots.get_mut(i)
    }

    /// Marks a slot gone and drops the gone ones at the front.
    fn close_slot(&mut self, seq: u64) {
        if let Some(s) = self.slot(seq) {
            *s = Slot::Gone;
        }
        while matches!(self.slots.front(), Some(Slot::Gone)) {
            self.slots.pop_front();
            self.base += 1;
        }
    }

    /// Writes an outcome; the waker to wake.
    fn fill(&mut self, seq: u64, result: Result<Outcome, Error>) -> Option<Waker> {
        let slot = self.slot(seq)?;
        if let Slot::Sink(_) = slot {
            let Slot::Sink(track) = std::mem::replace(slot, Slot::Gone) else {
                unreachable!()
            };
            self.close_slot(seq);
            return track.record(result);
        }
        match std::mem::replace(slot, Slot::Done(result)) {
            Slot::Waiting(w) => w,
            Slot::Done(_) | Slot::Gone | Slot::Sink(_) => {
                // Its future is gone: nobody wants the outcome.
                *slot = Slot::Gone;
                self.close_slot(seq);
                None
            }
        }
    }
}

/// The state shared by a sender's clones, its send futures and the driver.
#[derive(Debug)]
struct Table {
    state: Mutex<State>,
}

impl Table {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
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
    table: Arc<Table>,
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

/// A send in the connection: the driver holds it until the outcome.
/// Completing it (or dropping it, which fails the send as "closed") gives
/// the outcome to its future and its in-flight place to the next message
/// in the backlog.
#[derive(Debug)]
pub(crate) struct Completion {
    window: Option<Arc<Window>>,
    seq: u64,
}

impl Completion {
    /// Completes the send with `result` (always true: the signature of a
    /// oneshot's `send`, which this replaces).
    pub(crate) fn send(mut self, result: Result<Outcome, Error>) -> bool {
        if let Some(w) = self.window.take() {
            w.complete(self.seq, result, true);
        }
        true
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        if let Some(w) = self.window.take() {
            let e = Error::new(
                ErrorKind::Closed,
                "the connection closed before the outcome",
            );
            w.complete(self.seq, Err(e), true);
        }
    }
}

/// The outcome of one send: resolves once the driver completes it.
/// Dropping it does not withdraw the message.
#[derive(Debug)]
pub(crate) struct SendFuture {
    table: Arc<Table>,
    seq: u64,
    done: bool,
}

impl Future for SendFuture {
    type Output = Result<Outcome, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        assert!(!self.done, "SendFuture polled after completion");
        let seq = self.seq;
        let mut st = self.table.lock();
        let Some(slot) = st.slot(seq) else {
            drop(st);
            self.done = true;
            return Poll::Ready(Err(Error::new(ErrorKind::Closed, "the outcome is gone")));
        };
        match slot {
            Slot::Waiting(w) => {
                if !w.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    *w = Some(cx.waker().clone());
                }
                Poll::Pending
            }
            Slot::Done(_) => {
                let Slot::Done(r) = std::mem::replace(slot, Slot::Gone) else {
                    unreachable!()
                };
                st.close_slot(seq);
                drop(st);
                self.done = true;
                Poll::Ready(r)
            }
            Slot::Gone | Slot::Sink(_) => {
                drop(st);
                self.done = true;
                Poll::Ready(Err(Error::new(ErrorKind::Closed, "the outcome is gone")))
            }
        }
    }
}

impl Drop for SendFuture {
    fn drop(&mut self) {
        if !self.done {
            self.table.lock().close_slot(self.seq);
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
            table: Arc::new(Table {
                state: Mutex::new(State {
                    in_flight: 0,
                    backlog: VecDeque::new(),
                    waiters: Vec::new(),
                    slots: VecDeque::new(),
                    base: 0,
                }),
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

    fn future(&self, seq: u64) -> SendFuture {
        SendFuture {
            table: self.table.clone(),
            seq,
            done: false,
        }
    }

    /// Sends `message` now if a place is free, else queues it behind the
    /// others; the future of its outcome (or of the message back, on
    /// failure).
    pub(crate) fn submit(self: &Arc<Self>, message: Payload) -> SendFuture {
        let seq = self.submit_in(message, Slot::Waiting(None), false);
        self.future(seq)
    }

    /// Opens `slot` for `message` and sends it: in the place reserved by
    /// `poll_reserve` if `reserved`, else now if a place is free, else
    /// behind the backlog. Its send number.
    fn submit_in(self: &Arc<Self>, message: Payload, slot: Slot, reserved: bool) -> u64 {
        let mut st = self.table.lock();
        let seq = st.open(slot);
        if reserved || (st.in_flight < self.max && st.backlog.is_empty()) {
            if !reserved {
                st.in_flight += 1;
            }
            drop(st);
            if !self.dispatch(message, seq) {
                self.release();
            }
        } else {
            st.backlog.push_back((message, seq));
        }
        seq
    }

    /// Whether a send would go out at once (for `Sink`/`Service`
    /// `poll_ready`); registers the task to be woken when one would.
    /// Reserves a place for the next [`submit_reserved`](Self::submit_reserved)
    /// (tower's contract: `Ready` is a promise), or registers the waker.
    pub(crate) fn poll_reserve(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut st = self.table.lock();
        if st.in_flight < self.max && st.backlog.is_empty() {
            st.in_flight += 1;
            Poll::Ready(())
        } else {
            st.waiters.push(cx.waker().clone());
            Poll::Pending
        }
    }

    /// Sends `message` for a `Sink`, its outcome counted in `track`:
    /// in the place reserved by `poll_reserve` if `reserved`, else as
    /// [`submit`](Self::submit) does.
    pub(crate) fn submit_counted(
        self: &Arc<Self>,
        message: Payload,
        reserved: bool,
        track: &Arc<SinkTrack>,
    ) {
        track.lock().outstanding += 1;
        self.submit_in(message, Slot::Sink(track.clone()), reserved);
    }

    /// Sends `message` in the place reserved by `poll_reserve`.
    pub(crate) fn submit_reserved(self: &Arc<Self>, message: Payload) -> SendFuture {
        let seq = self.submit_in(message, Slot::Waiting(None), true);
        self.future(seq)
    }

    /// Gives back a place reserved by `poll_reserve` and not used.
    pub(crate) fn unreserve(self: &Arc<Self>) {
        self.release();
    }

    /// Hands a message to the driver with its completion; false (and the
    /// send failed with its message given back) if the connection is gone.
    fn dispatch(self: &Arc<Self>, message: Payload, seq: u64) -> bool {
        let cmd = Command::Send {
            link: self.link,
            message,
            settled: self.settled,
            reply: Some(Completion {
                window: Some(self.clone()),
                seq,
            }),
        };
        match self.tx.send(cmd) {
            Ok(()) => true,
            Err(mpsc::error::SendError(cmd)) => {
                if let Command::Send {
                    message,
                    reply: Some(mut c),
                    ..
                } = cmd
                {
                    c.window = None; // the caller releases the place, without recursion
                    let e = self.shared.error().unwrap_or_else(|| {
                        Error::new(ErrorKind::Closed, "the connection is closed")
                    });
                    self.complete(seq, Err(e.with_message(message.into_message())), false);
                }
                false
            }
        }
    }

    /// Writes send `seq`'s outcome and wakes its future; with `release`,
    /// frees its in-flight place too.
    fn complete(self: &Arc<Self>, seq: u64, result: Result<Outcome, Error>, release: bool) {
        let mut st = self.table.lock();
        let waker = st.fill(seq, result);
        if release {
            self.release_locked(st);
        } else {
            drop(st);
        }
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Completes many sends, as [`Completion::send`] does each, taking each
    /// window's lock once for a run of its sends and waking the futures
    /// after it is released.
    pub(crate) fn complete_all(done: &mut Vec<(Completion, Result<Outcome, Error>)>) {
        let mut wakers = Vec::new();
        let mut items = done.drain(..).peekable();
        while let Some((mut c, result)) = items.next() {
            let Some(w) = c.window.take() else {
                continue;
            };
            let mut st = w.table.lock();
            wakers.extend(st.fill(c.seq, result));
            let mut freed = 1;
            while let Some((next, _)) = items.peek() {
                if !next.window.as_ref().is_some_and(|n| Arc::ptr_eq(n, &w)) {
                    break;
                }
                let (mut next, result) = items.next().expect("peeked");
                next.window = None;
                wakers.extend(st.fill(next.seq, result));
                freed += 1;
            }
            // The freed places go to the backlog first, in order.
            let take = freed.min(st.backlog.len());
            let next: Vec<(Payload, u64)> = st.backlog.drain(..take).collect();
            st.in_flight = st.in_flight.saturating_sub(freed - take);
            if freed > take {
                wakers.append(&mut st.waiters);
            }
            drop(st);
            for (message, seq) in next {
                if !w.dispatch(message, seq) {
                    w.release();
                }
            }
        }
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Frees a place: the next message in the backlog takes it, or the
    /// window shrinks and waiting sinks are woken.
    fn release(self: &Arc<Self>) {
        self.release_locked(self.table.lock());
    }

    fn release_locked<'a>(self: &'a Arc<Self>, mut st: std::sync::MutexGuard<'a, State>) {
        loop {
            match st.backlog.pop_front() {
                Some((message, seq)) => {
                    drop(st);
                    if self.dispatch(message, seq) {
                        return;
                    }
                    st = self.table.lock();
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

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use futures::executor::block_on;

    fn window(max: usize) -> (Arc<Window>, mpsc::UnboundedReceiver<Command>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared::new("test".into()));
        (Window::new(max, LinkId(1), false, tx, shared), rx)
    }

    fn payload(s: &'static str) -> Payload {
        Payload::Encoded(Bytes::from_static(s.as_bytes()))
    }

    /// The completion of the next send handed to the driver.
    fn sent(rx: &mut mpsc::UnboundedReceiver<Command>) -> Completion {
        match rx.try_recv() {
            Ok(Command::Send { reply: Some(c), .. }) => c,
            other => panic!("expected a send, got {other:?}"),
        }
    }

    #[test]
    fn outcomes_reach_their_futures_in_any_order_and_free_places() {
        let (w, mut rx) = window(2);
        let f1 = w.submit(payload("1"));
        let f2 = w.submit(payload("2"));
        let f3 = w.submit(payload("3"));
        let (c1, c2) = (sent(&mut rx), sent(&mut rx));
        assert!(rx.try_recv().is_err(), "the third waits for a place");
        // Out of order, in one batch: both places free, the third goes.
        let mut done = vec![(c2, Ok(Outcome::Released)), (c1, Ok(Outcome::Accepted))];
        Window::complete_all(&mut done);
        let c3 = sent(&mut rx);
        assert_eq!(block_on(f2).unwrap(), Outcome::Released);
        assert_eq!(block_on(f1).unwrap(), Outcome::Accepted);
        // A future dropped before its outcome: the outcome is dropped.
        drop(f3);
        c3.send(Ok(Outcome::Accepted));
        {
            let st = w.table.lock();
            assert!(st.slots.is_empty(), "every slot is reclaimed");
            assert_eq!(st.in_flight, 0);
        }
        // A completion the driver drops fails its send as closed.
        let f4 = w.submit(payload("4"));
        drop(sent(&mut rx));
        let e = block_on(f4).unwrap_err();
        assert_eq!(*e.kind(), ErrorKind::Closed);
    }

    #[test]
    fn a_send_to_a_closed_connection_gives_the_message_back() {
        let (w, rx) = window(1);
        drop(rx);
        let e = block_on(w.submit(payload("x"))).unwrap_err();
        assert_eq!(*e.kind(), ErrorKind::Closed);
        assert!(e.into_message().is_some(), "the message comes back");
        assert_eq!(w.table.lock().in_flight, 0, "the place is given back");
    }

    /// Sink sends are counted: flush waits for the last outcome, woken
    /// once (not per outcome), and the first failure is reported once.
    #[test]
    fn sink_sends_are_counted_and_flush_waits_for_the_last() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::task::Wake;
        struct Count(AtomicUsize);
        impl Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let wakes = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);

        let (w, mut rx) = window(2);
        let track = Arc::new(SinkTrack::default());
        for s in ["1", "2", "3"] {
            w.submit_counted(payload(s), false, &track);
        }
        let (c1, c2) = (sent(&mut rx), sent(&mut rx));
        assert!(rx.try_recv().is_err(), "the third waits for a place");
        assert!(track.poll_flush(&mut cx).is_pending());
        let mut done = vec![(c1, Ok(Outcome::Accepted)), (c2, Ok(Outcome::Accepted))];
        Window::complete_all(&mut done);
        assert_eq!(
            wakes.0.load(Ordering::SeqCst),
            0,
            "one outcome is still out"
        );
        let c3 = sent(&mut rx);
        c3.send(Ok(Outcome::Accepted));
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        assert!(matches!(track.poll_flush(&mut cx), Poll::Ready(Ok(()))));
        assert!(w.table.lock().slots.is_empty(), "every slot is reclaimed");

        // A released message fails the flush, once.
        w.submit_counted(payload("4"), false, &track);
        w.submit_counted(payload("5"), false, &track);
        let (c4, c5) = (sent(&mut rx), sent(&mut rx));
        c4.send(Ok(Outcome::Released));
        let e = track.take_error().expect("the failure");
        assert_eq!(*e.kind(), ErrorKind::Rejected);
        assert!(track.take_error().is_none());
        assert!(track.poll_flush(&mut cx).is_pending());
        drop(c5); // the driver drops it: the send fails as closed
        match track.poll_flush(&mut cx) {
            Poll::Ready(Err(e)) => assert_eq!(*e.kind(), ErrorKind::Closed),
            other => panic!("expected the closed error, got {other:?}"),
        }
        assert!(matches!(track.poll_flush(&mut cx), Poll::Ready(Ok(()))));
        assert_eq!(w.table.lock().in_flight, 0);
    }
}
