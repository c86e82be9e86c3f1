//! One store for a connection's sessions and links, and the maps from
//! channel and handle numbers to them.
//!
//! Ids come from one counter and are never reused within a connection, so
//! an id held by a handle or an event can never name a newer session or
//! link that took a freed channel or handle number. Membership changes
//! only through the methods here, which keep every map in step: the
//! sessions by id, our channels and the peer's, the links by id, and each
//! session's handle maps (ours and the peer's). Reads go through the
//! fields.

use super::event::{LinkId, SessionId};
use super::idmap::{IdMap, NumberMap};
use super::link::Link;
use super::session::Session;

#[derive(Debug, Default)]
pub(super) struct Store {
    /// Boxed: a map allocates room for at least four entries, and a
    /// connection mostly has one session.
    pub(super) sessions: IdMap<SessionId, Box<Session>>,
    /// Our channel numbers.
    pub(super) channels: NumberMap<u16, SessionId>,
    /// The peer's channel numbers (sessions whose begin it sent).
    pub(super) remote_channels: NumberMap<u16, SessionId>,
    pub(super) links: IdMap<LinkId, Link>,
    next_id: u64,
}

impl Store {
    /// A fresh id, never used before on this connection.
    pub(super) fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// The highest id given out so far.
    pub(super) fn id_watermark(&self) -> u64 {
        self.next_id
    }

    /// Gives out only ids above `upto` from now on (a connection that
    /// takes over another's sessions and links keeps their ids).
    pub(super) fn reserve_ids(&mut self, upto: u64) {
        self.next_id = self.next_id.max(upto);
    }

    /// Adds a session on the lowest free channel up to `max`, with a fresh
    /// id or the reserved id `id`.
    pub(super) fn add_session(
        &mut self,
        id: Option<SessionId>,
        max: u16,
        incoming_window: u32,
    ) -> Option<SessionId> {
        if id.is_some_and(|id| self.sessions.contains_key(&id)) {
            return None;
        }
        let channel = (0..=max).find(|c| !self.channels.contains_key(c))?;
        let id = id.unwrap_or_else(|| SessionId(self.next_id()));
        self.channels.insert(channel, id);
        self.sessions
            .insert(id, Box::new(Session::new(channel, incoming_window)));
        Some(id)
    }

    /// Records the channel the peer uses for `session`.
    pub(super) fn set_remote_channel(&mut self, session: SessionId, channel: u16) {
        if let Some(s) = self.sessions.get_mut(&session) {
            s.remote_channel = Some(channel);
            self.remote_channels.insert(channel, session);
        }
    }

    /// Frees the peer's channel of `session` (its end arrived).
    pub(super) fn release_remote_channel(&mut self, session: SessionId) {
        if let Some(rc) = self.sessions.get(&session).and_then(|s| s.remote_channel) {
            self.remote_channels.remove(&rc);
        }
    }

    /// Removes a session and its channels; returns it (its links are still
    /// in the store: remove them with [`remove_link`](Self::remove_link)).
    pub(super) fn remove_session(&mut self, session: SessionId) -> Option<Box<Session>> {
        let s = self.sessions.remove(&session)?;
        self.channels.remove(&s.channel);
        if let Some(rc) = s.remote_channel {
            self.remote_channels.remove(&rc);
        }
        Some(s)
    }

    /// Adds a link on its session's handle `link.handle`, with a fresh id
    /// or the reserved id `id` (which must be free).
    pub(super) fn add_link(&mut self, id: Option<LinkId>, link: Link) -> LinkId {
        let id = id.unwrap_or_else(|| LinkId(self.next_id()));
        if let Some(s) = self.sessions.get_mut(&link.session) {
            s.handles.insert(link.handle, id);
            if let Some(rh) = link.remote_handle {
                s.remote_handles.insert(rh, id);
            }
        }
        self.links.insert(id, link);
        id
    }

    /// Records the handle the peer uses for `link`.
    pub(super) fn set_remote_handle(&mut self, link: LinkId, handle: u32) {
        if let Some(l) = self.links.get_mut(&link) {
            l.remote_handle = Some(handle);
            if let Some(s) = self.sessions.get_mut(&l.session) {
                s.remote_handles.insert(handle, link);
            }
        }
    }

    /// The link the peer calls `handle` on `session`.
    pub(super) fn link_by_remote_handle(&self, session: SessionId, handle: u32) -> Option<LinkId> {
        self.sessions
            .get(&session)?
            .remote_handles
            .get(&handle)
            .copied()
            .filter(|id| self.links.contains_key(id))
    }

    /// The links of a session (attached by either side).
    pub(super) fn session_links(&self, session: SessionId) -> Vec<LinkId> {
        self.sessions.get(&session).map_or_else(Vec::new, |s| {
            let mut v: Vec<LinkId> = s
                .handles
                .values()
                .chain(s.remote_handles.values())
                .copied()
                .collect();
            v.sort_unstable();
            v.dedup();
            v
        })
    }

    /// Removes a link and its handles, and forgets its unsettled incoming
    /// deliveries; returns it.
    pub(super) fn remove_link(&mut self, link: LinkId) -> Option<Link> {
        let l = self.links.remove(&link)?;
        if let Some(s) = self.sessions.get_mut(&l.session) {
            s.handles.remove(&l.handle);
            if let Some(rh) = l.remote_handle {
                s.remote_handles.remove(&rh);
            }
            s.incoming_unsettled.retain(|_, id| *id != link);
        }
        Some(l)
    }
}
