//! State a connection's handles share with its driver: the terminal error,
//! settings, and the statistics counters.

use super::reconnect::EventHub;
use crate::error::Error;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

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
    /// How the connection ended, once it has for good.
    pub(crate) ended: watch::Sender<Option<Result<(), Error>>>,
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
            ended: watch::channel(None).0,
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
        self.ended.send_replace(Some(how));
        self.events.close();
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
