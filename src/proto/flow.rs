//! Link and session flow control (spec 2.5.6, 2.6.7).

use super::connection::{Connection, Fatal};
use super::event::*;
use super::link::*;
use crate::frame::*;

impl Connection {
    // ---- flow ---------------------------------------------------------------

    /// Grants `credit` to the sender of a receiver link (replacing the
    /// credit left), with `drain` if the sender should use it up or give it
    /// back.
    pub fn flow(&mut self, link: LinkId, credit: u32, drain: bool) {
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        if l.role != Role::Receiver || l.state == LinkState::Detaching {
            return;
        }
        l.credit = credit;
        l.drain = drain;
        l.granted = credit;
        l.overshoot = 0;
        self.write_link_flow(link, false);
        if drain && credit == 0 {
            // Nothing to drain: done at once.
            if let Some(l) = self.links.get_mut(&link) {
                l.drain = false;
            }
            self.events.push_back(Event::Drained { link });
        }
    }

    /// The credit a link has left.
    pub fn credit(&self, link: LinkId) -> u32 {
        self.links.get(&link).map_or(0, |l| l.credit)
    }

    pub(super) fn write_link_flow(&mut self, link: LinkId, echo: bool) {
        let l = &self.links[&link];
        let s = &self.sessions[&l.session];
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
        let s = &self.sessions[&sid];
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
        let s = self.sessions.get_mut(&sid).expect("session exists");
        // remote-incoming-window = next-incoming-id(flow) + incoming-window(flow)
        //                          - next-outgoing-id(ours)   (spec 2.5.6)
        let base = f.next_incoming_id.unwrap_or(0);
        s.remote_incoming_window = base
            .wrapping_add(f.incoming_window)
            .wrapping_sub(s.next_outgoing_id);
        s.remote_outgoing_window = f.outgoing_window;
        let Some(handle) = f.handle else {
            if f.echo {
                self.write_session_flow(sid);
            }
            self.mark_all_ready(sid);
            return Ok(());
        };
        let Some(id) = self.link_by_remote_handle(sid, handle) else {
            let desc = format!("flow for handle {handle}, which is not attached");
            return self.session_error(sid, condition::UNATTACHED_HANDLE, desc);
        };
        let l = self.links.get_mut(&id).expect("link exists");
        match l.role {
            Role::Sender => {
                // link-credit = delivery-count(flow) + link-credit(flow)
                //               - delivery-count(ours)   (spec 2.6.7)
                let dc = f.delivery_count.unwrap_or(0);
                l.credit = dc
                    .wrapping_add(f.link_credit.unwrap_or(0))
                    .wrapping_sub(l.delivery_count);
                if l.credit > i32::MAX as u32 {
                    l.credit = 0;
                }
                l.drain = f.drain;
                let credit = l.credit;
                self.events.push_back(Event::Credit { link: id, credit });
                self.mark_ready(id);
                self.pump_link(id);
                if !self.finish_drain(id) && f.echo {
                    self.write_link_flow(id, false);
                }
            }
            Role::Receiver => {
                if let Some(dc) = f.delivery_count {
                    let advanced = dc.wrapping_sub(l.delivery_count);
                    l.delivery_count = dc;
                    l.credit = l.credit.saturating_sub(advanced);
                }
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
