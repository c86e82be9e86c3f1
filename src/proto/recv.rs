//! The receiving side: transfers, reassembly and receiver credit.

use super::connection::{Connection, Fatal};
use super::event::*;
use super::link::*;
use crate::frame::*;
use bytes::Bytes;

impl Connection {
    // ---- receiving ------------------------------------------------------------

    pub(super) fn on_transfer(
        &mut self,
        sid: SessionId,
        t: Transfer,
        payload: Bytes,
    ) -> Result<(), Fatal> {
        let s = self.store.sessions.get_mut(&sid).expect("session exists");
        if s.take_incoming().is_err() {
            return self.session_error(
                sid,
                condition::WINDOW_VIOLATION,
                "transfer beyond the session's incoming window".into(),
            );
        }
        let r = self.on_transfer_frame(sid, t, payload);
        // With this frame delivered, dropped or kept as part of a message,
        // the window may reopen as far as what the application holds allows.
        self.release_held(sid, 0);
        r
    }

    fn on_transfer_frame(
        &mut self,
        sid: SessionId,
        t: Transfer,
        payload: Bytes,
    ) -> Result<(), Fatal> {
        let s = self.store.sessions.get_mut(&sid).expect("session exists");
        let Some(id) = s.remote_handles.get(&t.handle).copied() else {
            let desc = format!("transfer on handle {}, which is not attached", t.handle);
            return self.session_error(sid, condition::UNATTACHED_HANDLE, desc);
        };
        let max_size = self.config.max_message_size;
        let budget = s.max_incoming_window;
        let Some(l) = self.store.links.get_mut(&id) else {
            return Ok(()); // a link we detached: drop what is still in flight
        };
        if l.role != Role::Receiver {
            let desc = "transfer on a link where we are the sender".to_string();
            self.link_error(id, condition::NOT_ALLOWED, desc);
            return Ok(());
        }
        if l.state != LinkState::Attached || l.refused {
            return Ok(()); // detaching: drop what is still in flight
        }
        if l.incoming.is_none() {
            // The first transfer of a delivery.
            let (Some(delivery_id), Some(tag)) = (t.delivery_id, t.delivery_tag.clone()) else {
                let desc = "first transfer without delivery-id or delivery-tag".to_string();
                self.link_error(id, condition::INVALID_FIELD, desc);
                return Ok(());
            };
            if s.incoming_unsettled.contains_key(delivery_id) {
                let desc = format!("delivery-id {delivery_id} is already in flight");
                return self.session_error(sid, condition::ILLEGAL_STATE, desc);
            }
            // A peer whose transfers crossed our flows may overshoot:
            // RabbitMQ 3.10 under load resets its credit on each flow
            // without counting the transfers in flight. Tolerate it within
            // the session's incoming window since our last flow (the window
            // bounds what is in flight anyway), count it, and log it once
            // per link.
            let overshooting = l.credit == 0;
            if let Err(n) = l.take_credit(budget) {
                let desc = format!("{n} transfers without link credit since our last flow");
                self.link_error(id, condition::TRANSFER_LIMIT_EXCEEDED, desc);
                return Ok(());
            }
            if overshooting {
                self.overshoot_total += 1;
                if !l.overshoot_logged {
                    l.overshoot_logged = true;
                    tracing::info!(
                        link = %l.name,
                        "the peer sends beyond the link credit we granted; tolerated within the session window"
                    );
                }
            }
            let settled = t.settled.unwrap_or(false);
            l.incoming = Some(Incoming {
                delivery_id,
                tag,
                settled,
                format: t.message_format.unwrap_or(0),
                first: Bytes::new(),
                rest: None,
                len: 0,
                counted: 0,
                frames: 0,
            });
            if !settled {
                s.incoming_unsettled.insert(delivery_id, id);
            }
        }
        let inc = l.incoming.as_mut().expect("incoming delivery");
        inc.frames += 1;
        if t.settled == Some(true) {
            inc.settled = true;
        }
        if t.aborted {
            let inc = l.incoming.take().expect("incoming delivery");
            self.partial_bytes -= inc.counted;
            self.store
                .sessions
                .get_mut(&sid)
                .expect("session exists")
                .incoming_unsettled
                .remove(inc.delivery_id);
            return Ok(());
        }
        if inc.len + payload.len() as u64 > max_size {
            let desc = format!("message larger than the limit of {max_size} bytes");
            self.link_error(id, condition::MESSAGE_SIZE_EXCEEDED, desc);
            return Ok(());
        }
        if t.more {
            // Partly received deliveries of all links share one budget.
            self.partial_bytes += payload.len() as u64;
            inc.counted += payload.len() as u64;
            if self.partial_bytes > self.config.max_partial_bytes {
                let desc = format!(
                    "partly received messages exceed the connection's budget of {} bytes",
                    self.config.max_partial_bytes
                );
                return Err((condition::RESOURCE_LIMIT_EXCEEDED, desc));
            }
            inc.push(payload);
            return Ok(());
        }
        inc.push(payload);
        let inc = l.incoming.take().expect("incoming delivery");
        self.partial_bytes -= inc.counted;
        l.delivered.push_back(inc.frames);
        if let Some(s) = self.store.sessions.get_mut(&sid) {
            s.held += inc.frames;
        }
        if inc.settled {
            self.store
                .sessions
                .get_mut(&sid)
                .expect("session exists")
                .incoming_unsettled
                .remove(inc.delivery_id);
        }
        let delivery = DeliveryId {
            link: id,
            id: inc.delivery_id,
        };
        let (tag, settled, format) = (inc.tag.clone(), inc.settled, inc.format);
        self.events.push_back(Event::Delivery {
            delivery,
            tag,
            settled,
            format,
            payload: inc.finish(),
        });
        if l.drain && l.credit == 0 {
            l.drain = false;
            self.events.push_back(Event::Drained { link: id });
        }
        Ok(())
    }

    /// Drops a link's partly received delivery, giving its bytes back to
    /// the connection's budget.
    pub(super) fn release_partial(&mut self, link: LinkId) {
        if let Some(inc) = self
            .store
            .links
            .get_mut(&link)
            .and_then(|l| l.incoming.take())
        {
            self.partial_bytes -= inc.counted;
        }
    }

    /// The application has taken `n` more messages of a receiver link (in
    /// delivery order): the session's incoming window may reopen past
    /// them. The driver calls it as the receiver's stream yields.
    pub fn consumed(&mut self, link: LinkId, n: u32) -> Result<(), AmqpError> {
        let l = self
            .store
            .links
            .get_mut(&link)
            .ok_or_else(|| super::links::gone(link))?;
        let sid = l.session;
        let mut frames = 0;
        for _ in 0..n {
            match l.delivered.pop_front() {
                Some(f) => frames += f,
                None => break,
            }
        }
        self.release_held(sid, frames);
        Ok(())
    }

    /// Gives `frames` held by the application back to a session's window.
    pub(super) fn release_held(&mut self, sid: SessionId, frames: u32) {
        let Some(s) = self.store.sessions.get_mut(&sid) else {
            return;
        };
        s.held = s.held.saturating_sub(frames);
        if s.reopen() && !s.end_sent {
            self.write_session_flow(sid);
        }
    }
}
