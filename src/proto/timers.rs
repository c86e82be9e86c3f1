//! Every timer of a connection, in one table: the open, close, attach and
//! detach timeouts, heartbeats and the idle timeout.
//!
//! The engine reads no clock. Commands that need a timer (attach, detach,
//! close) ask for one; it is armed with the `now` of the next call that
//! passes time in ([`Connection::handle_input`],
//! [`Connection::take_output`], [`Connection::handle_timeout`]), so a
//! timer never starts from a stale instant. [`Connection::poll_timeout`]
//! says when to call [`Connection::handle_timeout`] next; tests advance a
//! virtual clock through the same calls.

use super::connection::{Connection, Phase};
use super::event::{Event, LinkId};
use super::link::LinkState;
use crate::frame::codec::encode_empty_frame;
use crate::frame::*;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// A timer a command asked for, armed at the next `now`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Timer {
    /// Until the peer's open arrives.
    Open,
    /// Until the peer answers our close.
    Close,
    /// Until the peer answers our attach.
    Attach(LinkId),
    /// Until the peer answers our detach.
    Detach(LinkId),
}

/// The connection's timers.
#[derive(Debug)]
pub(super) struct Timers {
    /// Asked for and waiting for a `now`.
    unarmed: Vec<Timer>,
    /// Armed timers by deadline. Removed lazily: a timer whose condition is
    /// met (the peer answered) is dropped when it comes due.
    armed: BTreeSet<(Instant, Timer)>,
    /// When the last whole frame (or protocol header) arrived.
    pub(super) last_received: Option<Instant>,
    /// When we last produced output (for heartbeats).
    pub(super) last_sent: Option<Instant>,
    /// A whole frame arrived since the last `handle_input` returned.
    pub(super) received: bool,
}

impl Timers {
    pub(super) fn new() -> Self {
        Timers {
            unarmed: vec![Timer::Open],
            armed: BTreeSet::new(),
            last_received: None,
            last_sent: None,
            received: false,
        }
    }

    /// Asks for `timer`, armed at the next `now`.
    pub(super) fn request(&mut self, timer: Timer) {
        self.unarmed.push(timer);
    }

    /// Drops `timer` now (its condition is met), rather than when it
    /// comes due.
    pub(super) fn cancel(&mut self, timer: Timer) {
        self.unarmed.retain(|t| *t != timer);
        self.armed.retain(|(_, t)| *t != timer);
        self.release_if_empty();
    }

    /// An empty set keeps its node: let it go, so that a connection with
    /// no timer running holds none.
    fn release_if_empty(&mut self) {
        if self.armed.is_empty() {
            self.armed = BTreeSet::new();
        }
    }
}

impl Connection {
    /// Arms the timers commands asked for and notes activity, at `now`.
    pub(super) fn advance(&mut self, now: Instant) {
        for t in std::mem::take(&mut self.timers.unarmed) {
            let after = match t {
                Timer::Open => self.config.open_timeout,
                Timer::Close => Some(self.config.close_timeout),
                Timer::Attach(_) | Timer::Detach(_) => self.config.attach_timeout,
            };
            if let Some(after) = after {
                self.timers.armed.insert((now + after, t));
            }
        }
        if std::mem::take(&mut self.timers.received) || self.timers.last_received.is_none() {
            self.timers.last_received = Some(now);
        }
        if std::mem::take(&mut self.wrote) || self.timers.last_sent.is_none() {
            self.timers.last_sent = Some(now);
        }
    }

    fn heartbeat_deadline(&self) -> Option<Instant> {
        match (self.remote_idle_timeout, self.timers.last_sent) {
            (Some(t), Some(last)) if self.open_sent && !self.close_sent => Some(last + t / 2),
            _ => None,
        }
    }

    fn idle_deadline(&self) -> Option<Instant> {
        match (self.config.idle_timeout, self.timers.last_received) {
            (Some(t), Some(last)) if self.remote_open => Some(last + t),
            _ => None,
        }
    }

    /// When `handle_timeout` must next be called; `None` if no timer runs.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_closed() {
            return None;
        }
        [
            self.heartbeat_deadline(),
            self.idle_deadline(),
            self.timers.armed.first().map(|(at, _)| *at),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Fires every timer due at `now`: heartbeats, the idle timeout, and
    /// the open, close, attach and detach timeouts.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
        if self.is_closed() {
            return;
        }
        if self.idle_deadline().is_some_and(|d| now >= d) {
            let t = self.config.idle_timeout.unwrap_or_default();
            self.fail(
                condition::RESOURCE_LIMIT_EXCEEDED,
                format!("local-idle-timeout expired ({} ms)", t.as_millis()),
            );
            return;
        }
        if self.heartbeat_deadline().is_some_and(|d| now >= d) {
            // Output still waiting to be written serves as the heartbeat; a
            // blocked write must not leave the deadline in the past.
            if self.output.is_empty() {
                encode_empty_frame(&mut self.output);
            }
            self.timers.last_sent = Some(now);
        }
        while let Some(&(at, timer)) = self.timers.armed.first() {
            if at > now {
                break;
            }
            self.timers.armed.pop_first();
            self.timers.release_if_empty();
            self.fire(timer);
            if self.is_closed() {
                return;
            }
        }
    }

    fn fire(&mut self, timer: Timer) {
        match timer {
            Timer::Open if !self.remote_open => {
                let t = self.config.open_timeout.unwrap_or_default();
                let error = AmqpError::new(
                    condition::RESOURCE_LIMIT_EXCEEDED,
                    format!("the peer did not open the connection within {t:?}"),
                );
                if matches!(self.phase, Phase::Amqp) && self.amqp_header_sent {
                    self.fail(error.condition, error.description.unwrap_or_default());
                } else {
                    self.stop(error.condition, error.description.unwrap_or_default());
                }
                if let Some(Event::Closed { timeout, .. }) = self.events.back_mut() {
                    *timeout = true;
                }
            }
            Timer::Close if self.close_sent && !self.remote_closed => {
                self.phase = Phase::Done;
                self.events.push_back(Event::Closed {
                    error: Some(AmqpError::new(
                        condition::RESOURCE_LIMIT_EXCEEDED,
                        format!(
                            "the peer did not answer close within {:?}",
                            self.config.close_timeout
                        ),
                    )),
                    remote: false,
                    timeout: true,
                });
            }
            Timer::Attach(link) | Timer::Detach(link) => {
                // Still waiting for the answer the timer was armed for?
                let (state, what) = match timer {
                    Timer::Attach(_) => (LinkState::Attaching, "attach"),
                    _ => (LinkState::Detaching, "detach"),
                };
                if self
                    .store
                    .links
                    .get(&link)
                    .is_some_and(|l| l.state == state)
                {
                    self.abandon_link(link, what);
                }
            }
            _ => {}
        }
    }

    /// The peer did not answer our attach or detach in time: detach (if we
    /// have not) and report the link as timed out. The peer's late answer
    /// is then absorbed without reviving the link.
    fn abandon_link(&mut self, link: LinkId, what: &str) {
        let after = self.config.attach_timeout.unwrap_or(Duration::ZERO);
        let error = AmqpError::new(
            condition::RESOURCE_LIMIT_EXCEEDED,
            format!("the peer did not answer {what} within {after:?}"),
        );
        let Some(l) = self.store.links.get_mut(&link) else {
            return;
        };
        let detaching = l.state == LinkState::Detaching;
        l.abandoned = true;
        if !detaching {
            let _ = self.detach(link, true, None);
        }
        self.report_detached(link, error, true);
        if detaching {
            // No answer to our detach: forget the link.
            self.remove_link(link);
        }
    }
}
