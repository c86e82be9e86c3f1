//! The sending side: queued messages, transfers and fragmentation.

use super::connection::{Connection, Phase};
use super::event::*;
use super::link::*;
use super::session::*;
use crate::frame::codec::HEADER_LEN;
use crate::frame::*;
use crate::types::Encode;
use bytes::BytesMut;

impl Connection {
    // ---- sending ------------------------------------------------------------

    /// Queues `message` (a [`Message`](crate::Message) or already-encoded bytes) on a
    /// sender link; it goes out as soon as there is credit, settled
    /// (`settled`) or not. The outcome comes as [`Event::Outcome`], or
    /// [`Event::Sent`] for settled sends.
    #[allow(clippy::result_large_err)] // the message comes back by value, unboxed
    pub fn send(
        &mut self,
        link: LinkId,
        message: impl Into<Payload>,
        settled: bool,
    ) -> Result<SendId, Payload> {
        let message = message.into();
        let id = SendId(self.store.next_id());
        let Some(l) = self.store.links.get_mut(&link) else {
            return Err(message);
        };
        if l.role != Role::Sender || l.state == LinkState::Detaching {
            return Err(message);
        }
        let settled = match l.snd_settle_mode {
            SndSettleMode::Settled => true,
            SndSettleMode::Unsettled => false,
            SndSettleMode::Mixed => settled,
        };
        l.queue.push_back(Queued {
            send: id,
            message,
            settled,
        });
        self.mark_ready(link);
        Ok(id)
    }

    /// Messages queued on a link and not yet sent.
    pub fn queued(&self, link: LinkId) -> usize {
        self.store.links.get(&link).map_or(0, |l| l.queue.len())
    }

    pub(super) fn mark_ready(&mut self, link: LinkId) {
        if let Some(l) = self.store.links.get_mut(&link) {
            if !l.in_ready && l.can_send() {
                l.in_ready = true;
                self.ready.push_back(link);
            }
        }
    }

    pub(super) fn mark_all_ready(&mut self, sid: SessionId) {
        let ids: Vec<LinkId> = self.store.sessions[&sid]
            .handles
            .values()
            .copied()
            .collect();
        for id in ids {
            self.mark_ready(id);
        }
    }

    /// A draining sender with credit left and nothing to send uses the
    /// credit up and tells the receiver (spec 2.6.7). Returns whether it did.
    pub(super) fn finish_drain(&mut self, id: LinkId) -> bool {
        let Some(l) = self.store.links.get_mut(&id) else {
            return false;
        };
        if l.role == Role::Sender
            && l.drain
            && l.credit > 0
            && l.current.is_none()
            && l.queue.is_empty()
        {
            l.delivery_count = l.delivery_count.wrapping_add(l.credit);
            l.credit = 0;
            self.write_link_flow(id, false);
            return true;
        }
        false
    }

    /// Writes what the ready links can send.
    pub(super) fn pump(&mut self) {
        if !self.open_sent || self.close_sent || matches!(self.phase, Phase::Done) {
            return;
        }
        let mut n = self.ready.len();
        while n > 0 && !self.output_full() {
            n -= 1;
            let Some(id) = self.ready.pop_front() else {
                break;
            };
            if let Some(l) = self.store.links.get_mut(&id) {
                l.in_ready = false;
            }
            self.pump_link(id);
            self.finish_drain(id);
            // Still able to send (blocked by the session window): stays ready.
            self.mark_ready(id);
        }
    }

    /// Whether the output has reached the high-water mark: messages are
    /// encoded only as the transport takes the output, so queued sends
    /// stay messages (shared, not copied) rather than megabytes of frames.
    fn output_full(&self) -> bool {
        self.output.len() >= self.config.output_high_water
    }

    pub(super) fn pump_link(&mut self, id: LinkId) {
        let max_frame = self.remote_max_frame_size;
        loop {
            if self.output_full() {
                return; // stays ready; taken up again once the output drains
            }
            let Some(l) = self.store.links.get_mut(&id) else {
                return;
            };
            if l.state != LinkState::Attached || l.role != Role::Sender {
                return;
            }
            let s = self
                .store
                .sessions
                .get_mut(&l.session)
                .expect("session exists");
            if s.remote_incoming_window == 0 {
                return;
            }
            if l.current.is_none() {
                if l.credit == 0 {
                    return;
                }
                let Some(q) = l.queue.pop_front() else {
                    return;
                };
                let len = q.message.encoded_len();
                if let Some(max) = l.remote_max_message_size {
                    if len as u64 > max {
                        let error = AmqpError::new(
                            condition::MESSAGE_SIZE_EXCEEDED,
                            format!("message of {len} bytes exceeds the peer's limit of {max}"),
                        );
                        self.events.push_back(Event::Outcome {
                            link: id,
                            send: q.send,
                            state: Some(DeliveryState::Rejected(Rejected { error: Some(error) })),
                            settled: true,
                        });
                        continue;
                    }
                }
                let tag = l.next_tag();
                let delivery_id = s.next_delivery_id;
                s.next_delivery_id = s.next_delivery_id.wrapping_add(1);
                l.delivery_count = l.delivery_count.wrapping_add(1);
                l.credit -= 1;
                let transfer = Transfer {
                    handle: l.handle,
                    delivery_id: Some(delivery_id),
                    delivery_tag: Some(tag),
                    message_format: Some(0),
                    settled: Some(q.settled),
                    ..Default::default()
                };
                let channel = s.channel;
                let overhead = HEADER_LEN + transfer.encoded_len();
                if overhead + len <= max_frame {
                    // The common case: one frame, the message encoded in place.
                    s.next_outgoing_id = s.next_outgoing_id.wrapping_add(1);
                    s.remote_incoming_window -= 1;
                    tracing::trace!(channel, frame = ?transfer, payload = len, "SEND");
                    write_transfer_in_place(
                        &mut self.output,
                        channel,
                        &transfer,
                        &q.message,
                        overhead + len,
                    );
                    self.wrote = true;
                    if q.settled {
                        self.events.push_back(Event::Sent {
                            link: id,
                            send: q.send,
                        });
                    } else {
                        let u = Unsettled {
                            link: id,
                            send: q.send,
                            message: q.message,
                        };
                        s.outgoing_unsettled.insert(delivery_id, u);
                    }
                    continue;
                }
                let tag = transfer.delivery_tag.unwrap_or_default();
                let mut payload = BytesMut::with_capacity(len);
                q.message.encode(&mut payload);
                if !q.settled {
                    let u = Unsettled {
                        link: id,
                        send: q.send,
                        message: q.message,
                    };
                    s.outgoing_unsettled.insert(delivery_id, u);
                }
                l.current = Some(Outgoing {
                    send: q.send,
                    payload: payload.freeze(),
                    offset: 0,
                    delivery_id,
                    tag,
                    settled: q.settled,
                });
            }
            // Multi-frame: write as many frames as the window allows.
            let out = l.current.as_mut().expect("current delivery");
            let first = out.offset == 0;
            let mut transfer = Transfer {
                handle: l.handle,
                ..Default::default()
            };
            if first {
                transfer.delivery_id = Some(out.delivery_id);
                transfer.delivery_tag = Some(out.tag.clone());
                transfer.message_format = Some(0);
                transfer.settled = Some(out.settled);
            }
            transfer.more = true;
            let overhead = HEADER_LEN + transfer.encoded_len();
            let room = max_frame.saturating_sub(overhead).max(1);
            let end = (out.offset + room).min(out.payload.len());
            transfer.more = end < out.payload.len();
            let chunk = out.payload.slice(out.offset..end);
            out.offset = end;
            let done = !transfer.more;
            let (send, settled) = (out.send, out.settled);
            if done {
                l.current = None;
            }
            s.next_outgoing_id = s.next_outgoing_id.wrapping_add(1);
            s.remote_incoming_window -= 1;
            let channel = s.channel;
            self.write_frame(channel, &transfer, &chunk);
            if done && settled {
                self.events.push_back(Event::Sent { link: id, send });
            }
        }
    }
}

/// Writes a one-frame transfer of `size` bytes (header, transfer and
/// message) with the message encoded straight into the output buffer (no
/// intermediate copy).
fn write_transfer_in_place(
    out: &mut BytesMut,
    channel: u16,
    transfer: &Transfer,
    message: &Payload,
    size: usize,
) {
    use bytes::BufMut;
    out.reserve(size);
    let start = out.len();
    out.put_u32(size as u32);
    out.put_slice(&[2, codec::FRAME_TYPE_AMQP]);
    out.put_u16(channel);
    transfer.encode(out);
    message.encode(out);
    debug_assert_eq!(out.len() - start, size, "transfer frame size");
}
