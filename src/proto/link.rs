//! Link state (spec 2.6): name, role, handles, termini, flow control
//! (delivery-count, link-credit, drain), the sender's queue and the
//! receiver's reassembly of multi-frame deliveries.
//!
//! ```text
//!  local attach sent      peer attach received
//!  Attaching ──────────▶ Attached ◀────────── Incoming (peer attached first,
//!      │                    │                  waiting for accept/refuse)
//!      └────── detach ──────┴──▶ Detaching ──▶ (removed once both sides detached)
//! ```

use super::event::{SendId, SessionId};
use crate::frame::{Attach, RcvSettleMode, Role, SndSettleMode};
use crate::message::Message;
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;

/// Delivery tags per allocation of a link's tag block.
const TAG_BLOCK: usize = 256;

/// Where a link is in its attach/detach exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LinkState {
    /// We sent attach and wait for the peer's.
    Attaching,
    /// The peer attached first; we have not answered.
    Incoming,
    /// Both sides attached.
    Attached,
    /// We sent detach and wait for the peer's.
    Detaching,
}

/// What a send carries: a message to encode, or one already encoded (a
/// broker forwarding what it received, without re-encoding it; a sender
/// that encoded a small message itself).
///
/// The message is boxed: a `Message` is 488 bytes, and a payload moves
/// several times on its way (command, queue, unsettled map), so an unboxed
/// one cost more in copies than the box's allocation. The client encodes
/// small messages before they get here (one shared buffer, no allocation
/// per message) and boxes only large ones.
#[derive(Clone, Debug)]
pub enum Payload {
    /// A message, encoded straight into the output buffer when sent.
    Message(Box<Message>),
    /// The bytes of an encoded message, sent as they are.
    Encoded(Bytes),
}

impl Payload {
    pub(crate) fn encoded_len(&self) -> usize {
        match self {
            Payload::Message(m) => m.encoded_len(),
            Payload::Encoded(b) => b.len(),
        }
    }

    pub(crate) fn encode(&self, buf: &mut impl bytes::BufMut) {
        match self {
            Payload::Message(m) => m.encode(buf),
            Payload::Encoded(b) => buf.put_slice(b),
        }
    }

    /// The message (decoding encoded bytes; bytes that are not a valid
    /// message come back as a message with one data section holding them).
    pub fn into_message(self) -> Message {
        match self {
            Payload::Message(m) => *m,
            Payload::Encoded(b) => Message::decode(b.clone()).unwrap_or_else(|_| Message::from(b)),
        }
    }
}

impl From<Message> for Payload {
    fn from(m: Message) -> Self {
        Payload::Message(Box::new(m))
    }
}

/// A message waiting for credit.
#[derive(Debug)]
pub(crate) struct Queued {
    pub(crate) send: SendId,
    pub(crate) message: Payload,
    pub(crate) settled: bool,
}

/// A delivery whose transfers are partly written.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) send: SendId,
    pub(crate) payload: Bytes,
    pub(crate) offset: usize,
    pub(crate) delivery_id: u32,
    pub(crate) tag: Bytes,
    pub(crate) settled: bool,
}

/// A delivery whose transfers are partly received.
#[derive(Debug)]
pub(crate) struct Incoming {
    pub(crate) delivery_id: u32,
    pub(crate) tag: Bytes,
    pub(crate) settled: bool,
    pub(crate) format: u32,
    /// The first transfer's payload, kept without copying while it is the
    /// only one.
    pub(crate) first: Bytes,
    /// Later payloads, appended after a copy of `first`.
    pub(crate) rest: Option<BytesMut>,
    pub(crate) len: u64,
    /// Bytes counted against the connection's partial-delivery budget.
    pub(crate) counted: u64,
    /// Transfer frames it came in.
    pub(crate) frames: u32,
}

impl Incoming {
    pub(crate) fn push(&mut self, payload: Bytes) {
        if payload.is_empty() {
            return;
        }
        self.len += payload.len() as u64;
        if self.first.is_empty() && self.rest.is_none() {
            self.first = payload;
            return;
        }
        let rest = self.rest.get_or_insert_with(|| {
            let mut b = BytesMut::with_capacity(self.first.len() * 4);
            b.extend_from_slice(&self.first);
            b
        });
        rest.extend_from_slice(&payload);
    }

    pub(crate) fn finish(self) -> Bytes {
        match self.rest {
            Some(b) => b.freeze(),
            None => self.first,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) session: SessionId,
    pub(crate) name: String,
    pub(crate) role: Role,
    pub(crate) state: LinkState,
    pub(crate) handle: u32,
    pub(crate) remote_handle: Option<u32>,
    pub(crate) snd_settle_mode: SndSettleMode,
    pub(crate) rcv_settle_mode: RcvSettleMode,
    /// Our attach (kept so that the link can be attached again).
    pub(crate) attach: Attach,
    pub(crate) delivery_count: u32,
    pub(crate) credit: u32,
    pub(crate) drain: bool,
    /// The credit we last granted (receiver), and transfers the peer sent
    /// beyond credit since (tolerated up to `granted`, as Proton does).
    pub(crate) granted: u32,
    pub(crate) overshoot: u32,
    pub(crate) remote_max_message_size: Option<u64>,
    // Sender side.
    pub(crate) queue: VecDeque<Queued>,
    pub(crate) current: Option<Outgoing>,
    pub(crate) next_tag: u64,
    /// Where the next delivery tags are written (see `next_tag`).
    pub(crate) tags: BytesMut,
    pub(crate) in_ready: bool,
    // Receiver side.
    pub(crate) incoming: Option<Incoming>,
    /// The peer answered our attach without a terminus: a refusal, whose
    /// detach (with the reason) follows.
    pub(crate) refused: bool,
    /// We gave up waiting for the peer's attach or detach (the attach
    /// timeout ran out) and reported the link gone; what the peer still
    /// sends for it is absorbed.
    pub(crate) abandoned: bool,
    /// Overshoot was logged for this link (logged once).
    pub(crate) overshoot_logged: bool,
    /// The frame counts of messages handed to the application and not yet
    /// consumed, oldest first (they hold the session's window).
    pub(crate) delivered: VecDeque<u32>,
}

impl Link {
    pub(crate) fn new(session: SessionId, handle: u32, attach: Attach) -> Self {
        Link {
            session,
            name: attach.name.clone(),
            role: attach.role,
            state: LinkState::Attaching,
            handle,
            remote_handle: None,
            snd_settle_mode: attach.snd_settle_mode,
            rcv_settle_mode: attach.rcv_settle_mode,
            delivery_count: attach.initial_delivery_count.unwrap_or(0),
            attach,
            credit: 0,
            drain: false,
            granted: 0,
            overshoot: 0,
            remote_max_message_size: None,
            queue: VecDeque::new(),
            current: None,
            next_tag: 0,
            tags: BytesMut::new(),
            in_ready: false,
            incoming: None,
            refused: false,
            abandoned: false,
            overshoot_logged: false,
            delivered: VecDeque::new(),
        }
    }

    /// Whether this sender has something to send and credit to send it.
    pub(crate) fn can_send(&self) -> bool {
        self.role == Role::Sender
            && self.state == LinkState::Attached
            && (self.current.is_some() || (self.credit > 0 && !self.queue.is_empty()))
    }

    /// A sender's credit from the receiver's flow; returns it.
    ///
    /// link-credit = delivery-count(flow) + link-credit(flow)
    ///               - delivery-count(ours)   (spec 2.6.7),
    /// computed as the granted credit less the transfers the peer had not
    /// seen when it sent the flow, so that a grant of 0xFFFFFFFF (some
    /// peers' "unlimited") stays large instead of wrapping negative.
    pub(crate) fn on_sender_flow(&mut self, f: &crate::frame::Flow) -> u32 {
        let granted = f.link_credit.unwrap_or(0);
        let dc = f.delivery_count.unwrap_or(self.delivery_count);
        let in_flight = self.delivery_count.wrapping_sub(dc);
        self.credit = if in_flight <= i32::MAX as u32 {
            granted.saturating_sub(in_flight)
        } else {
            // The peer counts deliveries we never sent: take its grant.
            granted
        };
        self.drain = f.drain;
        self.credit
    }

    /// A receiver learns from the sender's flow how far its delivery count
    /// advanced (a drain uses credit up without transfers).
    pub(crate) fn on_receiver_flow(&mut self, f: &crate::frame::Flow) {
        if let Some(dc) = f.delivery_count {
            let advanced = dc.wrapping_sub(self.delivery_count);
            self.delivery_count = dc;
            self.credit = self.credit.saturating_sub(advanced);
        }
    }

    /// A receiver takes one transfer's worth of credit. Without credit,
    /// the transfer is overshoot: tolerated up to `budget` since our last
    /// flow; `Err` past it.
    pub(crate) fn take_credit(&mut self, budget: u32) -> Result<(), u32> {
        if self.credit > 0 {
            self.credit -= 1;
        } else if self.overshoot < budget {
            self.overshoot += 1;
        } else {
            return Err(self.overshoot + 1);
        }
        self.delivery_count = self.delivery_count.wrapping_add(1);
        Ok(())
    }

    /// A fresh delivery tag: the link's counter, big-endian, without
    /// leading zero bytes dropped (tags are at most 32 bytes; 8 suffice).
    /// Tags are cut from a shared block of [`TAG_BLOCK`] tags: one
    /// allocation per block, not per send.
    pub(crate) fn next_tag(&mut self) -> Bytes {
        use bytes::BufMut;
        let t = self.next_tag;
        self.next_tag += 1;
        if self.tags.capacity() < 8 {
            self.tags = BytesMut::with_capacity(8 * TAG_BLOCK);
        }
        self.tags.put_u64(t);
        self.tags.split().freeze()
    }
}
