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
        let s = self.sessions.get_mut(&sid).expect("session exists");
        if s.incoming_window == 0 {
            return self.session_error(
                sid,
                condition::WINDOW_VIOLATION,
                "transfer beyond the session's incoming window".into(),
            );
        }
        s.incoming_window -= 1;
        s.next_incoming_id = s.next_incoming_id.wrapping_add(1);
        if s.incoming_window <= s.max_incoming_window / 2 {
            s.incoming_window = s.max_incoming_window;
            self.write_session_flow(sid);
        }
        let s = self.sessions.get_mut(&sid).expect("session exists");
        let Some(id) = s.remote_handles.get(&t.handle).copied() else {
            let desc = format!("transfer on handle {}, which is not attached", t.handle);
            return self.session_error(sid, condition::UNATTACHED_HANDLE, desc);
        };
        let max_size = self.config.max_message_size;
        let Some(l) = self.links.get_mut(&id) else {
            return Ok(()); // a link we detached: drop what is still in flight
        };
        if l.role != Role::Receiver {
            let desc = "transfer on a link where we are the sender".to_string();
            self.link_error(id, condition::NOT_ALLOWED, desc);
            return Ok(());
        }
        if l.state != LinkState::Attached {
            return Ok(()); // detaching: drop what is still in flight
        }
        if l.incoming.is_none() {
            // The first transfer of a delivery.
            let (Some(delivery_id), Some(tag)) = (t.delivery_id, t.delivery_tag.clone()) else {
                let desc = "first transfer without delivery-id or delivery-tag".to_string();
                self.link_error(id, condition::INVALID_FIELD, desc);
                return Ok(());
            };
            if l.credit == 0 {
                // A peer whose transfers crossed our last flow may overshoot
                // (RabbitMQ 3.10 does); tolerate up to the credit we last
                // granted, as Proton does, and no more.
                if l.overshoot >= l.granted.max(1) {
                    let desc = "transfer without link credit".to_string();
                    self.link_error(id, condition::TRANSFER_LIMIT_EXCEEDED, desc);
                    return Ok(());
                }
                tracing::debug!(link = ?id, "transfer beyond link credit tolerated");
                l.overshoot += 1;
            } else {
                l.credit -= 1;
            }
            l.delivery_count = l.delivery_count.wrapping_add(1);
            let settled = t.settled.unwrap_or(false);
            l.incoming = Some(Incoming {
                delivery_id,
                tag,
                settled,
                format: t.message_format.unwrap_or(0),
                first: Bytes::new(),
                rest: None,
                len: 0,
            });
            if !settled {
                s.incoming_unsettled.insert(delivery_id, id);
            }
        }
        let inc = l.incoming.as_mut().expect("incoming delivery");
        if t.settled == Some(true) {
            inc.settled = true;
        }
        if t.aborted {
            let inc = l.incoming.take().expect("incoming delivery");
            self.sessions
                .get_mut(&sid)
                .expect("session exists")
                .incoming_unsettled
                .remove(&inc.delivery_id);
            return Ok(());
        }
        inc.push(payload);
        if inc.len > max_size {
            let desc = format!("message larger than the limit of {max_size} bytes");
            self.link_error(id, condition::MESSAGE_SIZE_EXCEEDED, desc);
            return Ok(());
        }
        if t.more {
            return Ok(());
        }
        let inc = l.incoming.take().expect("incoming delivery");
        if inc.settled {
            self.sessions
                .get_mut(&sid)
                .expect("session exists")
                .incoming_unsettled
                .remove(&inc.delivery_id);
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
}
