//! Attaching and detaching links (spec 2.6.1-2.6.6).

use super::connection::{fatal, Connection, Fatal};
use super::event::*;
use super::link::*;
use crate::frame::*;
use crate::message::Message;
use crate::types::Symbol;

impl Connection {
    // ---- links ------------------------------------------------------------

    /// Attaches a link on `session` with our `attach` (its handle is
    /// assigned here). The peer's answer comes as [`Event::LinkAttached`].
    pub fn attach(&mut self, session: SessionId, mut attach: Attach) -> Result<LinkId, AmqpError> {
        let s = self
            .sessions
            .get_mut(&session)
            .filter(|s| !s.end_sent && !s.end_received)
            .ok_or_else(|| AmqpError::new(condition::ILLEGAL_STATE, "the session has ended"))?;
        if s.handles.len() >= self.config.max_links_per_session {
            return Err(AmqpError::new(
                condition::RESOURCE_LIMIT_EXCEEDED,
                "too many links",
            ));
        }
        let handle = s
            .free_handle()
            .ok_or_else(|| AmqpError::new(condition::RESOURCE_LIMIT_EXCEEDED, "no free handle"))?;
        attach.handle = handle;
        if attach.role == Role::Sender && attach.initial_delivery_count.is_none() {
            attach.initial_delivery_count = Some(0);
        }
        if attach.role == Role::Receiver && attach.max_message_size.is_none() {
            attach.max_message_size = Some(self.config.max_message_size);
        }
        self.next_id += 1;
        let id = LinkId(self.next_id);
        s.handles.insert(handle, id);
        let channel = s.channel;
        self.write_frame(channel, &attach, &[]);
        self.links.insert(id, Link::new(session, handle, attach));
        Ok(id)
    }

    /// Accepts a link the peer attached, answering with `attach` (whose
    /// name, handle and role are filled in here).
    pub fn accept_link(&mut self, link: LinkId, mut attach: Attach) {
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        if l.state != LinkState::Incoming {
            return;
        }
        attach.name = l.name.clone();
        attach.handle = l.handle;
        attach.role = l.role;
        if attach.role == Role::Sender && attach.initial_delivery_count.is_none() {
            attach.initial_delivery_count = Some(0);
        }
        if attach.role == Role::Receiver && attach.max_message_size.is_none() {
            attach.max_message_size = Some(self.config.max_message_size);
        }
        l.state = LinkState::Attached;
        l.delivery_count = attach.initial_delivery_count.unwrap_or(l.delivery_count);
        l.snd_settle_mode = attach.snd_settle_mode;
        l.rcv_settle_mode = attach.rcv_settle_mode;
        l.attach = attach.clone();
        let sid = l.session;
        let channel = self.sessions[&sid].channel;
        self.write_frame(channel, &attach, &[]);
    }

    /// Refuses a link the peer attached: attach with no terminus, then
    /// detach (closed) with `error`, as the spec prescribes.
    pub fn refuse_link(&mut self, link: LinkId, error: AmqpError) {
        let Some(l) = self.links.get(&link) else {
            return;
        };
        if l.state != LinkState::Incoming {
            return;
        }
        let attach = Attach {
            name: l.name.clone(),
            handle: l.handle,
            role: l.role,
            initial_delivery_count: (l.role == Role::Sender).then_some(0),
            ..Default::default()
        };
        let channel = self.sessions[&l.session].channel;
        self.write_frame(channel, &attach, &[]);
        self.links.get_mut(&link).expect("link exists").state = LinkState::Attached;
        self.detach(link, true, Some(error));
    }

    pub(super) fn on_attach(&mut self, sid: SessionId, a: Attach) -> Result<(), Fatal> {
        let s = self.sessions.get_mut(&sid).expect("session exists");
        if s.remote_handles.contains_key(&a.handle) {
            let d = format!("handle {} is in use", a.handle);
            return self.session_error(sid, condition::HANDLE_IN_USE, d);
        }
        if a.handle > (self.config.max_links_per_session.max(1) - 1) as u32 {
            // The peer ignores the handle-max we announced: an abusive peer,
            // so the whole connection goes, not only the session.
            let d = format!("handle {} exceeds the handle-max we announced", a.handle);
            return fatal(condition::RESOURCE_LIMIT_EXCEEDED, d);
        }
        // An answer to one of our attaches: same name, opposite role.
        let ours = s.handles.values().copied().find(|id| {
            let l = &self.links[id];
            l.name == a.name && l.role != a.role && l.state == LinkState::Attaching
        });
        let s = self.sessions.get_mut(&sid).expect("session exists");
        s.remote_handles.insert(a.handle, ours.unwrap_or(LinkId(0)));
        match ours {
            Some(id) => {
                let l = self.links.get_mut(&id).expect("link exists");
                l.remote_handle = Some(a.handle);
                l.state = LinkState::Attached;
                l.remote_max_message_size = a.max_message_size.filter(|&m| m > 0);
                if l.role == Role::Receiver {
                    l.delivery_count = a.initial_delivery_count.unwrap_or(0);
                }
                self.events.push_back(Event::LinkAttached {
                    link: id,
                    attach: Box::new(a),
                });
            }
            None => {
                if s.handles.len() >= self.config.max_links_per_session {
                    let d = format!("more than {} links", self.config.max_links_per_session);
                    return fatal(condition::RESOURCE_LIMIT_EXCEEDED, d);
                }
                let Some(handle) = s.free_handle() else {
                    s.remote_handles.remove(&a.handle);
                    let d = "no free handle".to_string();
                    return self.session_error(sid, condition::RESOURCE_LIMIT_EXCEEDED, d);
                };
                self.next_id += 1;
                let id = LinkId(self.next_id);
                s.handles.insert(handle, id);
                s.remote_handles.insert(a.handle, id);
                let ours = Attach {
                    name: a.name.clone(),
                    handle,
                    role: match a.role {
                        Role::Sender => Role::Receiver,
                        Role::Receiver => Role::Sender,
                    },
                    ..Default::default()
                };
                let mut l = Link::new(sid, handle, ours);
                l.state = LinkState::Incoming;
                l.remote_handle = Some(a.handle);
                l.remote_max_message_size = a.max_message_size.filter(|&m| m > 0);
                if l.role == Role::Receiver {
                    l.delivery_count = a.initial_delivery_count.unwrap_or(0);
                }
                self.links.insert(id, l);
                self.events.push_back(Event::IncomingLink {
                    session: sid,
                    link: id,
                    attach: Box::new(a),
                });
            }
        }
        Ok(())
    }

    /// Detaches (or, with `closed`, closes) a link. The link is forgotten
    /// when the peer's detach arrives.
    pub fn detach(&mut self, link: LinkId, closed: bool, error: Option<AmqpError>) {
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        if l.state == LinkState::Detaching {
            return;
        }
        l.state = LinkState::Detaching;
        let (handle, sid) = (l.handle, l.session);
        // Settlements made before the detach go out before it.
        self.flush_dispositions();
        let channel = self.sessions[&sid].channel;
        let detach = Detach {
            handle,
            closed,
            error,
        };
        self.write_frame(channel, &detach, &[]);
    }

    /// Forgets a link; returns its messages without an outcome: the
    /// unsettled ones (in send order), then the queued ones.
    pub(super) fn remove_link(&mut self, link: LinkId) -> Option<Vec<(SendId, Message)>> {
        let l = self.links.remove(&link)?;
        let mut unsent = Vec::new();
        if let Some(s) = self.sessions.get_mut(&l.session) {
            s.handles.remove(&l.handle);
            if let Some(rh) = l.remote_handle {
                s.remote_handles.remove(&rh);
            }
            let ids: Vec<u32> = s
                .outgoing_unsettled
                .iter()
                .filter(|(_, u)| u.link == link)
                .map(|(k, _)| *k)
                .collect();
            for id in ids {
                if let Some(u) = s.outgoing_unsettled.remove(&id) {
                    unsent.push((u.send, u.message.into_message()));
                }
            }
            s.incoming_unsettled.retain(|_, id| *id != link);
        }
        unsent.extend(
            l.queue
                .into_iter()
                .map(|q| (q.send, q.message.into_message())),
        );
        Some(unsent)
    }

    /// Takes every message that has no outcome yet (unsettled or queued),
    /// for a driver whose connection failed.
    pub fn take_unsent(&mut self) -> Vec<(SendId, Message)> {
        let mut out = Vec::new();
        for s in self.sessions.values_mut() {
            out.extend(
                std::mem::take(&mut s.outgoing_unsettled)
                    .into_values()
                    .map(|u| (u.send, u.message.into_message())),
            );
        }
        for l in self.links.values_mut() {
            out.extend(
                l.queue
                    .drain(..)
                    .map(|q| (q.send, q.message.into_message())),
            );
        }
        out
    }

    pub(super) fn link_by_remote_handle(&self, sid: SessionId, handle: u32) -> Option<LinkId> {
        self.sessions[&sid]
            .remote_handles
            .get(&handle)
            .copied()
            .filter(|id| self.links.contains_key(id))
    }

    pub(super) fn on_detach(&mut self, sid: SessionId, d: Detach) -> Result<(), Fatal> {
        let Some(id) = self.link_by_remote_handle(sid, d.handle) else {
            let desc = format!("detach of handle {}, which is not attached", d.handle);
            return self.session_error(sid, condition::UNATTACHED_HANDLE, desc);
        };
        // Answer (unless we detached first), then forget the link.
        self.detach(id, d.closed, None);
        let unsent = self.remove_link(id).expect("link exists");
        self.events.push_back(Event::LinkDetached {
            link: id,
            closed: d.closed,
            error: d.error,
            remote: true,
            unsent,
        });
        Ok(())
    }

    /// Detaches a link because the peer broke a link rule.
    pub(super) fn link_error(&mut self, link: LinkId, cond: Symbol, desc: String) {
        let error = AmqpError::new(cond, desc);
        self.detach(link, true, Some(error.clone()));
        if let Some(l) = self.links.get_mut(&link) {
            let unsent = l
                .queue
                .drain(..)
                .map(|q| (q.send, q.message.into_message()))
                .collect();
            l.incoming = None;
            self.events.push_back(Event::LinkDetached {
                link,
                closed: true,
                error: Some(error),
                remote: false,
                unsent,
            });
        }
    }
}
