//! Attaching and detaching links (spec 2.6.1-2.6.6).

use super::connection::{fatal, Connection, Fatal};
use super::event::*;
use super::link::*;
use super::timers::Timer;
use crate::frame::*;
use crate::message::Message;
use crate::types::Symbol;

impl Connection {
    // ---- links ------------------------------------------------------------

    /// Attaches a link on `session` with our `attach` (its handle is
    /// assigned here). The peer's answer comes as [`Event::LinkAttached`].
    pub fn attach(&mut self, session: SessionId, attach: Attach) -> Result<LinkId, AmqpError> {
        self.attach_with(None, session, attach)
    }

    /// Attaches a link under an id reserved with
    /// [`reserve_ids`](Self::reserve_ids): a reconnecting driver re-attaches
    /// a lost connection's links under the ids its handles hold. Fails if
    /// the id is in use.
    pub fn attach_as(
        &mut self,
        id: LinkId,
        session: SessionId,
        attach: Attach,
    ) -> Result<(), AmqpError> {
        if self.store.links.contains_key(&id) {
            return Err(AmqpError::new(
                condition::ILLEGAL_STATE,
                "the link id is in use",
            ));
        }
        self.store.reserve_ids(id.0);
        self.attach_with(Some(id), session, attach).map(|_| ())
    }

    fn attach_with(
        &mut self,
        id: Option<LinkId>,
        session: SessionId,
        mut attach: Attach,
    ) -> Result<LinkId, AmqpError> {
        let s = self
            .store
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
        let channel = s.channel;
        self.write_frame(channel, &attach, &[]);
        let id = self.store.add_link(id, Link::new(session, handle, attach));
        self.timers.request(Timer::Attach(id));
        Ok(id)
    }

    /// Accepts a link the peer attached, answering with `attach` (whose
    /// name, handle and role are filled in here). Fails if the link is not
    /// waiting for an answer (unknown, or the peer detached it already).
    pub fn accept_link(&mut self, link: LinkId, mut attach: Attach) -> Result<(), AmqpError> {
        let max_message_size = self.config.max_message_size;
        let l = self.incoming_link(link)?;
        attach.name = l.name.clone();
        attach.handle = l.handle;
        attach.role = l.role;
        if attach.role == Role::Sender && attach.initial_delivery_count.is_none() {
            attach.initial_delivery_count = Some(0);
        }
        if attach.role == Role::Receiver && attach.max_message_size.is_none() {
            attach.max_message_size = Some(max_message_size);
        }
        l.state = LinkState::Attached;
        l.delivery_count = attach.initial_delivery_count.unwrap_or(l.delivery_count);
        l.snd_settle_mode = attach.snd_settle_mode;
        l.rcv_settle_mode = attach.rcv_settle_mode;
        l.attach = attach.clone();
        let sid = l.session;
        let channel = self.store.sessions[&sid].channel;
        self.write_frame(channel, &attach, &[]);
        Ok(())
    }

    /// Refuses a link the peer attached: attach with no terminus, then
    /// detach (closed) with `error`, as the spec prescribes.
    pub fn refuse_link(&mut self, link: LinkId, error: AmqpError) -> Result<(), AmqpError> {
        self.incoming_link(link)?;
        self.answer_without_terminus(link);
        self.detach(link, true, Some(error))
    }

    fn incoming_link(&mut self, link: LinkId) -> Result<&mut Link, AmqpError> {
        self.store
            .links
            .get_mut(&link)
            .filter(|l| l.state == LinkState::Incoming)
            .ok_or_else(|| gone(link))
    }

    /// Answers a peer's attach with one that has no terminus (a refusal,
    /// always followed by our detach).
    fn answer_without_terminus(&mut self, link: LinkId) {
        let Some(l) = self.store.links.get_mut(&link) else {
            return;
        };
        let attach = Attach {
            name: l.name.clone(),
            handle: l.handle,
            role: l.role,
            initial_delivery_count: (l.role == Role::Sender).then_some(0),
            ..Default::default()
        };
        l.state = LinkState::Attached;
        let channel = self.store.sessions[&l.session].channel;
        self.write_frame(channel, &attach, &[]);
    }

    pub(super) fn on_attach(&mut self, sid: SessionId, a: Box<Attach>) -> Result<(), Fatal> {
        let s = self.store.sessions.get_mut(&sid).expect("session exists");
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
        // (Also one we gave up waiting for: its late answer is absorbed.)
        let ours = s.handles.values().copied().find(|id| {
            let l = &self.store.links[id];
            l.name == a.name
                && l.role != a.role
                && l.remote_handle.is_none()
                && (l.state == LinkState::Attaching || l.abandoned)
        });
        match ours {
            Some(id) => {
                self.store.set_remote_handle(id, a.handle);
                let l = self.store.links.get_mut(&id).expect("link exists");
                if l.abandoned {
                    return Ok(()); // we detached already; its detach follows
                }
                l.state = LinkState::Attached;
                l.remote_max_message_size = a.max_message_size.filter(|&m| m > 0);
                if l.role == Role::Receiver {
                    l.delivery_count = a.initial_delivery_count.unwrap_or(0);
                }
                // A refusal is an attach without the terminus, then a detach
                // carrying the error (spec 2.6.3): report the detach only.
                l.refused = match a.role {
                    Role::Sender => a.source.is_none(),
                    Role::Receiver => a.target.is_none(),
                };
                if !l.refused {
                    self.events.push_back(Event::LinkAttached {
                        link: id,
                        attach: a,
                    });
                }
            }
            None => {
                if s.handles.len() >= self.config.max_links_per_session {
                    let d = format!("more than {} links", self.config.max_links_per_session);
                    return fatal(condition::RESOURCE_LIMIT_EXCEEDED, d);
                }
                let Some(handle) = s.free_handle() else {
                    let d = "no free handle".to_string();
                    return self.session_error(sid, condition::RESOURCE_LIMIT_EXCEEDED, d);
                };
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
                let id = self.store.add_link(None, l);
                self.events.push_back(Event::IncomingLink {
                    session: sid,
                    link: id,
                    attach: a,
                });
            }
        }
        Ok(())
    }

    /// Detaches (or, with `closed`, closes) a link. The link is forgotten
    /// when the peer's detach arrives (or the attach timeout runs out).
    pub fn detach(
        &mut self,
        link: LinkId,
        closed: bool,
        error: Option<AmqpError>,
    ) -> Result<(), AmqpError> {
        let l = self.store.links.get_mut(&link).ok_or_else(|| gone(link))?;
        if l.state == LinkState::Detaching {
            return Ok(());
        }
        l.state = LinkState::Detaching;
        let (handle, sid) = (l.handle, l.session);
        // Settlements made before the detach go out before it.
        self.flush_dispositions();
        let channel = self.store.sessions[&sid].channel;
        let detach = Detach {
            handle,
            closed,
            error,
        };
        self.write_frame(channel, &detach, &[]);
        self.timers.request(Timer::Detach(link));
        Ok(())
    }

    /// Takes a link's messages that have no outcome: the unsettled ones
    /// (in send order), then the one being sent and the queued ones.
    pub(super) fn take_link_messages(&mut self, link: LinkId) -> Vec<(SendId, Message)> {
        let Some(l) = self.store.links.get_mut(&link) else {
            return Vec::new();
        };
        let mut unsent = Vec::new();
        if let Some(s) = self.store.sessions.get_mut(&l.session) {
            let mut ids: Vec<(SendId, u32)> = s
                .outgoing_unsettled
                .iter()
                .filter(|(_, u)| u.link == link)
                .map(|(k, u)| (u.send, k))
                .collect();
            ids.sort_unstable();
            for (_, id) in ids {
                if let Some(u) = s.outgoing_unsettled.remove(id) {
                    unsent.push((u.send, u.message.into_message()));
                }
            }
        }
        unsent.extend(
            l.queue
                .drain(..)
                .map(|q| (q.send, q.message.into_message())),
        );
        unsent
    }

    /// Forgets a link; returns its messages without an outcome.
    pub(super) fn remove_link(&mut self, link: LinkId) -> Option<Vec<(SendId, Message)>> {
        let unsent = self.take_link_messages(link);
        self.release_partial(link);
        let l = self.store.remove_link(link)?;
        // What the application still holds of it no longer holds the window.
        self.release_held(l.session, l.delivered.iter().sum());
        Some(unsent)
    }

    /// Takes every message that has no outcome yet (unsettled or queued),
    /// for a driver whose connection failed.
    pub fn take_unsent(&mut self) -> Vec<(SendId, Message)> {
        let (mut written, queued) = self.take_unsent_parts();
        written.extend(queued);
        written
    }

    /// Takes every message that has no outcome yet, in two lists, each in
    /// send order: those written to the peer without an outcome (the peer
    /// may have them), and those never written. A reconnecting driver
    /// sends the second again, and the first unless told not to.
    #[allow(clippy::type_complexity)]
    pub fn take_unsent_parts(&mut self) -> (Vec<(SendId, Message)>, Vec<(SendId, Message)>) {
        let mut written = Vec::new();
        for s in self.store.sessions.values_mut() {
            written.extend(
                s.outgoing_unsettled
                    .take_values()
                    .into_iter()
                    .map(|u| (u.send, u.message.into_message())),
            );
        }
        let mut queued = Vec::new();
        for l in self.store.links.values_mut() {
            queued.extend(
                l.queue
                    .drain(..)
                    .map(|q| (q.send, q.message.into_message())),
            );
        }
        written.sort_by_key(|(id, _)| *id);
        queued.sort_by_key(|(id, _)| *id);
        (written, queued)
    }

    pub(super) fn on_detach(&mut self, sid: SessionId, d: Detach) -> Result<(), Fatal> {
        let Some(id) = self.store.link_by_remote_handle(sid, d.handle) else {
            let desc = format!("detach of handle {}, which is not attached", d.handle);
            return self.session_error(sid, condition::UNATTACHED_HANDLE, desc);
        };
        let l = &self.store.links[&id];
        if l.abandoned {
            // Reported when we gave up on it.
            self.remove_link(id);
            return Ok(());
        }
        if l.state == LinkState::Incoming {
            // Detached before we answered its attach: attach, then detach,
            // so the peer never sees a detach for a handle we never used.
            self.answer_without_terminus(id);
        }
        // Answer (unless we detached first), then forget the link.
        let _ = self.detach(id, d.closed, None);
        let unsent = self.remove_link(id).unwrap_or_default();
        self.events.push_back(Event::LinkDetached {
            link: id,
            closed: d.closed,
            error: d.error,
            remote: true,
            unsent,
            timeout: false,
        });
        Ok(())
    }

    /// Detaches a link because the peer broke a link rule; its messages
    /// without an outcome come back in the event.
    pub(super) fn link_error(&mut self, link: LinkId, cond: Symbol, desc: String) {
        let error = AmqpError::new(cond, desc);
        if self.detach(link, true, Some(error.clone())).is_err() {
            return;
        }
        self.report_detached(link, error, false);
    }

    /// Reports a link we ended (the peer broke a rule, or did not answer in
    /// time): its messages without an outcome come back in the event, and
    /// what it was sending or receiving is dropped.
    pub(super) fn report_detached(&mut self, link: LinkId, error: AmqpError, timeout: bool) {
        let unsent = self.take_link_messages(link);
        self.release_partial(link);
        if let Some(l) = self.store.links.get_mut(&link) {
            l.current = None;
        }
        self.events.push_back(Event::LinkDetached {
            link,
            closed: true,
            error: Some(error),
            remote: false,
            unsent,
            timeout,
        });
    }
}

/// The error for a command naming a link that is gone (or in the wrong
/// state for it).
pub(super) fn gone(link: LinkId) -> AmqpError {
    AmqpError::new(
        condition::ILLEGAL_STATE,
        format!("link {} is not attached", link.0),
    )
}
