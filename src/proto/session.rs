//! Session state (spec 2.5): channels, transfer-id windows, delivery ids,
//! the link handles, unsettled deliveries and batched dispositions.
//!
//! A session is begun by one side and answered by the other; it ends when
//! both sides have sent end.

use super::event::{LinkId, SendId};
use super::idmap::NumberMap;
use super::link::Payload;
use super::unsettled::DeliveryMap;
use crate::frame::{DeliveryState, Role};

/// A message sent unsettled, waiting for its outcome.
#[derive(Debug)]
pub(crate) struct Unsettled {
    pub(crate) link: LinkId,
    pub(crate) send: SendId,
    pub(crate) message: Payload,
}

/// A disposition waiting to be written; adjacent ones with the same state
/// are merged into one range.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PendingDisposition {
    pub(crate) role: Role,
    pub(crate) first: u32,
    pub(crate) last: u32,
    pub(crate) settled: bool,
    pub(crate) state: Option<DeliveryState>,
}

#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) channel: u16,
    pub(crate) remote_channel: Option<u16>,
    pub(crate) begin_sent: bool,
    pub(crate) end_sent: bool,
    pub(crate) end_received: bool,
    // Windows (spec 2.5.6).
    pub(crate) next_outgoing_id: u32,
    pub(crate) next_incoming_id: u32,
    pub(crate) incoming_window: u32,
    pub(crate) max_incoming_window: u32,
    pub(crate) remote_incoming_window: u32,
    pub(crate) remote_outgoing_window: u32,
    pub(crate) remote_handle_max: u32,
    pub(crate) next_delivery_id: u32,
    pub(crate) handles: NumberMap<u32, LinkId>,
    pub(crate) remote_handles: NumberMap<u32, LinkId>,
    /// Our unsettled sends, by delivery id, with their messages (given back
    /// if the link or connection fails before the outcome).
    pub(crate) outgoing_unsettled: DeliveryMap<Unsettled>,
    /// Unsettled incoming deliveries, by delivery id.
    pub(crate) incoming_unsettled: DeliveryMap<LinkId>,
    pub(crate) dispositions: Vec<PendingDisposition>,
    /// Transfer frames of messages handed to the application and not yet
    /// consumed: the incoming window reopens only past them, so a peer can
    /// never have more than the window in our hands, whatever it does with
    /// link credit.
    pub(crate) held: u32,
}

impl Session {
    pub(crate) fn new(channel: u16, incoming_window: u32) -> Self {
        Session {
            channel,
            remote_channel: None,
            begin_sent: false,
            end_sent: false,
            end_received: false,
            next_outgoing_id: 0,
            next_incoming_id: 0,
            incoming_window,
            max_incoming_window: incoming_window,
            remote_incoming_window: 0,
            remote_outgoing_window: 0,
            remote_handle_max: u32::MAX,
            next_delivery_id: 0,
            handles: NumberMap::default(),
            remote_handles: NumberMap::default(),
            outgoing_unsettled: DeliveryMap::default(),
            incoming_unsettled: DeliveryMap::default(),
            dispositions: Vec::new(),
            held: 0,
        }
    }

    /// The peer's flow updates what we may send (spec 2.5.6):
    /// remote-incoming-window = next-incoming-id(flow) + incoming-window(flow)
    ///                          - next-outgoing-id(ours).
    pub(crate) fn on_flow(&mut self, f: &crate::frame::Flow) {
        let base = f.next_incoming_id.unwrap_or(0);
        self.remote_incoming_window = base
            .wrapping_add(f.incoming_window)
            .wrapping_sub(self.next_outgoing_id);
        self.remote_outgoing_window = f.outgoing_window;
    }

    /// Counts one incoming transfer frame against our incoming window;
    /// `Err` if the window is shut (a violation).
    pub(crate) fn take_incoming(&mut self) -> Result<(), ()> {
        if self.incoming_window == 0 {
            return Err(());
        }
        self.incoming_window -= 1;
        self.next_incoming_id = self.next_incoming_id.wrapping_add(1);
        Ok(())
    }

    /// Reopens the incoming window once it has fallen to half, as far as
    /// what the application holds allows; returns whether it grew.
    pub(crate) fn reopen(&mut self) -> bool {
        let open = self.max_incoming_window.saturating_sub(self.held);
        if self.incoming_window <= self.max_incoming_window / 2 && open > self.incoming_window {
            self.incoming_window = open;
            return true;
        }
        false
    }

    /// The lowest free local handle, up to the peer's `handle-max`.
    pub(crate) fn free_handle(&self) -> Option<u32> {
        (0..=self.remote_handle_max).find(|h| !self.handles.contains_key(h))
    }

    /// Queues a disposition, merging it into the previous one when it
    /// extends that range with the same state.
    pub(crate) fn queue_disposition(&mut self, d: PendingDisposition) {
        if let Some(last) = self.dispositions.last_mut() {
            if last.role == d.role
                && last.settled == d.settled
                && last.state == d.state
                && last.last.wrapping_add(1) == d.first
            {
                last.last = d.last;
                return;
            }
        }
        self.dispositions.push(d);
    }
}
