//! State a connection's handles share with its driver: the terminal error,
//! settings, the statistics counters, and the queue of what the peer
//! opened.

use super::driver::{Incoming, MAX_PENDING_INCOMING};
use super::reconnect::EventHub;
use crate::error::Error;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::Notify;

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) container_id: String,
    pub(crate) error: Mutex<Option<Error>>,
    pub(crate) messages_in: AtomicU64,
    pub(crate) messages_out: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) overshoot: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    /// The connection deliveries come on now (one more per reconnect).
    pub(crate) epoch: AtomicU64,
    pub(crate) events: Arc<EventHub>,
    /// How the connection ended, once it has for good; `ended_notify`
    /// wakes who waits for it (no channel allocated per connection).
    ended: Mutex<Option<Result<(), Error>>>,
    ended_notify: Notify,
    /// What the peer opened, for `Connection::next_incoming`.
    pub(crate) incoming: IncomingQueue,
}

impl Shared {
    pub(crate) fn new(container_id: String) -> Self {
        Shared {
            container_id,
            error: Mutex::new(None),
            messages_in: AtomicU64::new(0),
            messages_out: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            overshoot: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
            events: Arc::new(EventHub::default()),
            ended: Mutex::new(None),
            ended_notify: Notify::new(),
            incoming: IncomingQueue::default(),
        }
    }

    /// The same, reporting to `events` (the reconnect layer's).
    pub(crate) fn with_events(container_id: String, events: Arc<EventHub>) -> Self {
        Shared {
            events,
            ..Shared::new(container_id)
        }
    }

    /// The connection has ended for good.
    pub(crate) fn finish(&self, how: Result<(), Error>) {
        if let Err(e) = &how {
            self.set_error(e.clone());
        }
        *self.ended.lock().unwrap_or_else(|e| e.into_inner()) = Some(how);
        self.ended_notify.notify_waiters();
        self.events.close();
    }

    /// Waits until the connection has ended for good: how it ended.
    pub(crate) async fn ended(&self) -> Result<(), Error> {
        loop {
            let notified = self.ended_notify.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the check: a `finish` after it wakes us.
            notified.as_mut().enable();
            if let Some(how) = &*self.ended.lock().unwrap_or_else(|e| e.into_inner()) {
                return how.clone();
            }
            notified.await;
        }
    }

    /// The error that ended the connection, if it has ended.
    pub(crate) fn error(&self) -> Option<Error> {
        self.error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Records the error that ended the connection (the first one wins).
    pub(crate) fn set_error(&self, e: Error) {
        let mut g = self.error.lock().unwrap_or_else(|e| e.into_inner());
        if g.is_none() {
            *g = Some(e);
        }
    }

    pub(crate) fn statistics(&self) -> Statistics {
        Statistics {
            messages_in: self.messages_in.load(Ordering::Relaxed),
            messages_out: self.messages_out.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            credit_overshoot: self.overshoot.load(Ordering::Relaxed),
        }
    }
}

/// The sessions and links the peer opened, from the driver to
/// `Connection::next_incoming`: at most [`MAX_PENDING_INCOMING`] waiting.
/// It holds no allocation while empty (a channel would hold its first
/// block for the connection's life).
#[derive(Debug, Default)]
pub(crate) struct IncomingQueue {
    state: Mutex<Queue>,
    notify: Notify,
}

#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<Incoming>,
    /// The driver ended, or every handle is gone.
    closed: bool,
}

impl IncomingQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `item`; `Full` past the limit, `Closed` once closed.
    pub(crate) fn push(&self, item: Incoming) -> Result<(), TrySendError<Incoming>> {
        let mut q = self.lock();
        if q.closed {
            return Err(TrySendError::Closed(item));
        }
        if q.items.len() >= MAX_PENDING_INCOMING {
            return Err(TrySendError::Full(item));
        }
        q.items.push_back(item);
        drop(q);
        self.notify.notify_one();
        Ok(())
    }

    /// No more items: [`next`](Self::next) returns what is queued, then
    /// `None`.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.notify.notify_waiters();
    }

    /// The next item, or `None` once closed and empty.
    pub(crate) async fn next(&self) -> Option<Incoming> {
        loop {
            let notified = self.notify.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the check: a push or close after it wakes us.
            notified.as_mut().enable();
            {
                let mut q = self.lock();
                if let Some(item) = q.items.pop_front() {
                    if q.items.is_empty() {
                        q.items = VecDeque::new();
                    }
                    return Some(item);
                }
                if q.closed {
                    return None;
                }
            }
            notified.await;
        }
    }
}

/// Cheap counters of a connection's traffic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Statistics {
    /// Messages received.
    pub messages_in: u64,
    /// Messages handed to the engine for sending.
    pub messages_out: u64,
    /// Bytes read from the transport.
    pub bytes_in: u64,
    /// Bytes written to the transport.
    pub bytes_out: u64,
    /// Reconnects so far: connections that replaced a lost one.
    pub reconnects: u64,
    /// Transfers the peer sent beyond the link credit we granted. Some
    /// brokers overshoot under load (RabbitMQ 3.10 resets its credit on
    /// each flow); it is tolerated within the session's incoming window.
    pub credit_overshoot: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::SessionId;

    #[tokio::test]
    async fn the_incoming_queue_is_bounded_and_ends_after_close() {
        let q = Arc::new(IncomingQueue::default());
        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.next().await }
        });
        tokio::task::yield_now().await;
        q.push(Incoming::Session(SessionId(1))).unwrap();
        assert!(matches!(
            waiter.await.unwrap(),
            Some(Incoming::Session(SessionId(1)))
        ));
        for i in 0..MAX_PENDING_INCOMING as u64 {
            q.push(Incoming::Session(SessionId(i))).unwrap();
        }
        assert!(matches!(
            q.push(Incoming::Session(SessionId(0))),
            Err(TrySendError::Full(_))
        ));
        q.close();
        assert!(matches!(
            q.push(Incoming::Session(SessionId(0))),
            Err(TrySendError::Closed(_))
        ));
        // What was queued still comes, then the end.
        for _ in 0..MAX_PENDING_INCOMING {
            assert!(q.next().await.is_some());
        }
        assert!(q.next().await.is_none());
        assert_eq!(q.lock().items.capacity(), 0, "an empty queue holds nothing");
    }

    #[tokio::test]
    async fn closing_wakes_a_waiter() {
        let q = Arc::new(IncomingQueue::default());
        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.next().await }
        });
        tokio::task::yield_now().await;
        q.close();
        assert!(waiter.await.unwrap().is_none());
    }

    #[tokio::test]
    async fn ended_wakes_a_waiter_with_how_it_ended() {
        let s = Arc::new(Shared::new("c".into()));
        let waiter = tokio::spawn({
            let s = s.clone();
            async move { s.ended().await }
        });
        tokio::task::yield_now().await;
        s.finish(Ok(()));
        assert!(waiter.await.unwrap().is_ok());
        assert!(s.ended().await.is_ok(), "and answers at once after");
    }
}
