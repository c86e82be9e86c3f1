//! The connection's timers: heartbeats, the idle timeout.

use super::connection::Connection;
use crate::frame::codec::encode_empty_frame;
use crate::frame::*;
use std::time::Instant;

impl Connection {
    /// When `handle_timeout` must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_closed() {
            return None;
        }
        let heartbeat = match (self.remote_idle_timeout, self.last_sent) {
            (Some(t), Some(last)) if self.open_sent => Some(last + t / 2),
            _ => None,
        };
        let expiry = match (self.config.idle_timeout, self.last_received) {
            (Some(t), Some(last)) if self.remote_open => Some(last + t),
            _ => None,
        };
        match (heartbeat, expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Sends heartbeats and enforces our idle timeout.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.is_closed() {
            return;
        }
        if let (Some(t), Some(last)) = (self.config.idle_timeout, self.last_received) {
            if self.remote_open && now >= last + t {
                self.fail(
                    condition::RESOURCE_LIMIT_EXCEEDED,
                    format!("local-idle-timeout expired ({} ms)", t.as_millis()),
                );
                return;
            }
        }
        if let (Some(t), Some(last)) = (self.remote_idle_timeout, self.last_sent) {
            if self.open_sent && now >= last + t / 2 && self.output.is_empty() {
                encode_empty_frame(&mut self.output);
                self.last_sent = Some(now);
            }
        }
        if self.last_sent.is_none() {
            self.last_sent = Some(now);
        }
    }

    /// Notes that output was written at `now` (for heartbeats).
    pub fn on_transmit(&mut self, now: Instant) {
        self.last_sent = Some(now);
    }
}
