//! Link and session flow control (spec 2.5.6, 2.6.7).

use super::connection::{Connection, Fatal};
use super::event::*;
use super::link::*;
use crate::frame::*;

impl Connection {
    // ---- flow ---------------------------------------------------------------

    /// Adds `credit` to what a receiver link's sender may send, with
    /// `drain` if the sender should use it all up or give it back. Fails if
    /// the link is not an attached receiver.
    pub fn add_credit(&mut self, link: LinkId, credit: u32, drain: bool) -> Result<(), AmqpError> {
        let l = self
            .store
            .links
            .get_mut(&link)
            .filter(|l| l.role == Role::Receiver && l.state != LinkState::Detaching)
            .ok_or_else(|| super::links::gone(link))?;
        l.credit = l.credit.saturating_add(credit);
        l.drain = drain;
        l.granted = l.credit;
        l.overshoot = 0;
        if l.state == LinkState::Attaching || l.state == LinkState::Attached {
            self.write_link_flow(link, false);
        }
        if drain && self.store.links[&link].credit == 0 {
            // Nothing to drain: done at once.
            if let Some(l) = self.store.links.get_mut(&link) {
                l.drain = false;
            }
            self.events.push_back(Event::Drained { link });
        }
        Ok(())
    }

    /// The credit a link has left.
    pub fn credit(&self, link: LinkId) -> u32 {
        self.store.links.get(&link).map_or(0, |l| l.credit)
    }

    pub(super) fn write_link_flow(&mut self, link: LinkId, echo: bool) {
        let l = &self.store.links[&link];
        let s = &self.store.sessions[&l.session];
        let flow = Flow {
            next_incoming_id: s.remote_channel.map(|_| s.next_incoming_id),
            incoming_window: s.incoming_window,
            next_outgoing_id: s.next_outgoing_id,
            outgoing_window: u32::MAX,
            handle: Some(l.handle),
            delivery_count: Some(l.delivery_count),
            link_credit: Some(l.credit),
            available: (l.role == Role::Sender).then_some(l.queue.len() as u32),
            drain: l.drain,
            echo,
            properties: None,
        };
        let channel = s.channel;
        self.write_frame(channel, &flow, &[]);
    }

    pub(super) fn write_session_flow(&mut self, sid: SessionId) {
        let s = &self.store.sessions[&sid];
        let flow = Flow {
            next_incoming_id: Some(s.next_incoming_id),
            incoming_window: s.incoming_window,
            next_outgoing_id: s.next_outgoing_id,
            outgoing_window: u32::MAX,
            ..Default::default()
        };
        let channel = s.channel;
        self.write_frame(channel, &flow, &[]);
    }

    pub(super) fn on_flow(&mut self, sid: SessionId, f: Flow) -> Result<(), Fatal> {
        if let Some(s) = self.store.sessions.get_mut(&sid) {
            s.on_flow(&f);
        }
        let Some(handle) = f.handle else {
            if f.echo {
                self.write_session_flow(sid);
            }
            self.mark_all_ready(sid);
            return Ok(());
        };
        let Some(id) = self.store.link_by_remote_handle(sid, handle) else {
            let desc = format!("flow for handle {handle}, which is not attached");
            return self.session_error(sid, condition::UNATTACHED_HANDLE, desc);
        };
        let l = self.store.links.get_mut(&id).expect("link exists");
        match l.role {
            Role::Sender => {
                let credit = l.on_sender_flow(&f);
                self.events.push_back(Event::Credit { link: id, credit });
                self.mark_ready(id);
                self.pump_link(id);
                if !self.finish_drain(id) && f.echo {
                    self.write_link_flow(id, false);
                }
            }
            Role::Receiver => {
                l.on_receiver_flow(&f);
                if l.drain && l.credit == 0 {
                    l.drain = false;
                    self.events.push_back(Event::Drained { link: id });
                }
                if f.echo {
                    self.write_link_flow(id, false);
                }
            }
        }
        Ok(())
    }
}
