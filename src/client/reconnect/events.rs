//! What a connection reports about its transport: lost, reconnecting,
//! reconnected, gave up (Proton's `on_disconnected`, `on_transport_error`,
//! `on_connection_error`), as a stream.

use crate::error::Error;
use futures::Stream;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::broadcast;

/// How many past events a new [`ConnectionEvents`] stream starts with.
const HISTORY: usize = 32;

/// Something that happened to a connection's transport.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ConnectionEvent {
    /// A connect attempt failed (logged at warn level too); another
    /// follows unless the policy gives up.
    ConnectFailed {
        /// The attempt's number in this reconnect process (1 = the first).
        attempt: u32,
        /// The URL tried (without the password).
        url: String,
        /// Why it failed.
        error: Error,
    },
    /// The connection was lost; with reconnect on, reconnecting follows.
    Disconnected {
        /// The cause: the transport's or the peer's error.
        error: Error,
    },
    /// An attempt to reconnect begins after `delay`.
    Reconnecting {
        /// The attempt's number in this reconnect process (1 = the first).
        attempt: u32,
        /// How long it waits before connecting.
        delay: Duration,
        /// The URL it tries (without the password).
        url: String,
    },
    /// Connected again: sessions and links are being restored, in-flight
    /// sends re-sent.
    Reconnected {
        /// The URL connected to (without the password).
        url: String,
    },
    /// The policy gave up (or the error cannot be fixed by retrying): the
    /// connection has ended with `error`, and every handle fails with it.
    GaveUp {
        /// The last attempt's error, or the cause of the loss.
        error: Error,
    },
}

/// Where a connection's events go: a short history and the live
/// subscribers. Nothing is allocated until an event or a subscriber comes
/// (a listener may hold many idle connections).
#[derive(Debug, Default)]
pub(crate) struct EventHub {
    inner: Mutex<Hub>,
}

#[derive(Debug, Default)]
struct Hub {
    history: VecDeque<ConnectionEvent>,
    /// Made by the first subscriber.
    live: Option<broadcast::Sender<ConnectionEvent>>,
    closed: bool,
}

impl EventHub {
    pub(crate) fn emit(&self, event: ConnectionEvent) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if g.history.len() == HISTORY {
            g.history.pop_front();
        }
        g.history.push_back(event.clone());
        if let Some(tx) = &g.live {
            let _ = tx.send(event);
        }
    }

    /// The connection has ended for good: streams end after what they hold.
    pub(crate) fn close(&self) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.closed = true;
        g.live = None;
    }

    pub(crate) fn subscribe(&self) -> ConnectionEvents {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if g.live.is_none() && !g.closed {
            g.live = Some(broadcast::channel(256).0);
        }
        let live: Pin<Box<dyn Stream<Item = ConnectionEvent> + Send>> = match &g.live {
            None => Box::pin(futures::stream::empty()),
            Some(tx) => Box::pin(futures::stream::unfold(tx.subscribe(), |mut rx| async {
                loop {
                    match rx.recv().await {
                        Ok(e) => return Some((e, rx)),
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            tracing::debug!(missed = n, "slow events reader");
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            })),
        };
        ConnectionEvents {
            past: g.history.clone(),
            live,
        }
    }
}

/// The stream of a connection's [`ConnectionEvent`]s, from
/// [`Connection::events`](crate::Connection::events).
///
/// It starts with the connection's last events (up to 32, including the
/// failed attempts of the first connect), then follows live, and ends when
/// the connection has ended for good. A reader that falls more than 256
/// events behind skips the oldest.
pub struct ConnectionEvents {
    past: VecDeque<ConnectionEvent>,
    live: Pin<Box<dyn Stream<Item = ConnectionEvent> + Send>>,
}

impl std::fmt::Debug for ConnectionEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionEvents")
            .field("past", &self.past.len())
            .finish_non_exhaustive()
    }
}

impl Stream for ConnectionEvents {
    type Item = ConnectionEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(e) = self.past.pop_front() {
            return Poll::Ready(Some(e));
        }
        self.live.as_mut().poll_next(cx)
    }
}
