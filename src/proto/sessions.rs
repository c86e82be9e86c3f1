//! Beginning and ending sessions (spec 2.5).

use super::connection::{fatal, Connection, Fatal};
use super::event::*;
use crate::frame::*;
use crate::types::Symbol;

impl Connection {
    // ---- sessions -----------------------------------------------------

    /// Begins a session; the peer's answer comes as
    /// [`Event::SessionBegun`]. Fails if every channel is in use.
    pub fn begin(&mut self) -> Result<SessionId, AmqpError> {
        self.begin_with(None)
    }

    /// Begins a session under an id reserved with
    /// [`reserve_ids`](Self::reserve_ids): a reconnecting driver re-opens
    /// a lost connection's sessions under the ids its handles hold. Fails
    /// if the id is in use or every channel is.
    pub fn begin_as(&mut self, id: SessionId) -> Result<(), AmqpError> {
        self.store.reserve_ids(id.0);
        self.begin_with(Some(id)).map(|_| ())
    }

    fn begin_with(&mut self, id: Option<SessionId>) -> Result<SessionId, AmqpError> {
        let max = if self.remote_open {
            self.remote_channel_max.min(self.config.channel_max)
        } else {
            self.config.channel_max
        };
        let id = self
            .store
            .add_session(id, max, self.config.incoming_window)
            .ok_or_else(|| AmqpError::new(condition::RESOURCE_LIMIT_EXCEEDED, "no free channel"))?;
        self.write_begin(id);
        Ok(id)
    }

    pub(super) fn write_begin(&mut self, id: SessionId) {
        let s = self.store.sessions.get_mut(&id).expect("session exists");
        s.begin_sent = true;
        let begin = Begin {
            remote_channel: s.remote_channel,
            next_outgoing_id: s.next_outgoing_id,
            incoming_window: s.incoming_window,
            outgoing_window: u32::MAX,
            handle_max: (self.config.max_links_per_session.max(1) - 1) as u32,
            ..Default::default()
        };
        let channel = s.channel;
        self.write_frame(channel, &begin, &[]);
    }

    pub(super) fn on_begin(&mut self, channel: u16, begin: Begin) -> Result<(), Fatal> {
        if self.store.remote_channels.contains_key(&channel) {
            return fatal(
                condition::FRAMING_ERROR,
                format!("begin on channel {channel}, which is in use"),
            );
        }
        if channel > self.config.channel_max {
            return fatal(
                condition::FRAMING_ERROR,
                format!("channel {channel} exceeds channel-max"),
            );
        }
        let (sid, incoming) = match begin.remote_channel {
            Some(ours) => match self.store.channels.get(&ours) {
                Some(&sid) if self.store.sessions[&sid].remote_channel.is_none() => (sid, false),
                _ => {
                    return fatal(
                        condition::FRAMING_ERROR,
                        format!("begin answers channel {ours}, which has no session of ours"),
                    )
                }
            },
            None => {
                if self.store.sessions.len() >= self.config.max_sessions {
                    return fatal(
                        condition::RESOURCE_LIMIT_EXCEEDED,
                        format!("more than {} sessions", self.config.max_sessions),
                    );
                }
                let sid = self
                    .store
                    .add_session(None, self.config.channel_max, self.config.incoming_window)
                    .ok_or((
                        condition::RESOURCE_LIMIT_EXCEEDED,
                        "no free channel".to_string(),
                    ))?;
                (sid, true)
            }
        };
        self.store.set_remote_channel(sid, channel);
        let s = self.store.sessions.get_mut(&sid).expect("just added");
        s.next_incoming_id = begin.next_outgoing_id;
        s.remote_incoming_window = begin.incoming_window;
        s.remote_outgoing_window = begin.outgoing_window;
        s.remote_handle_max = begin.handle_max;
        if incoming {
            self.write_begin(sid);
        }
        self.events.push_back(Event::SessionBegun {
            session: sid,
            begin: Box::new(begin),
            incoming,
        });
        Ok(())
    }

    /// Ends a session, with an error if given.
    /// Fails if the session is unknown (ended and forgotten).
    pub fn end(&mut self, session: SessionId, error: Option<AmqpError>) -> Result<(), AmqpError> {
        // Settlements made before the end go out before it.
        self.flush_dispositions();
        let Some(s) = self.store.sessions.get_mut(&session) else {
            return Err(AmqpError::new(
                condition::ILLEGAL_STATE,
                format!("session {} has ended", session.0),
            ));
        };
        if s.end_sent {
            return Ok(());
        }
        s.end_sent = true;
        let channel = s.channel;
        let done = s.end_received;
        self.write_frame(channel, &End { error }, &[]);
        if done {
            self.remove_session(session);
        }
        Ok(())
    }

    pub(super) fn on_end(&mut self, sid: SessionId, end: End) -> Result<(), Fatal> {
        self.store.release_remote_channel(sid);
        let Some(s) = self.store.sessions.get_mut(&sid) else {
            return Ok(());
        };
        s.end_received = true;
        let reply = !s.end_sent;
        if end.error.is_some() {
            // The links end with the session's error (a broker refusing an
            // attach by ending the session, say): tell their handles why.
            let links = self.store.session_links(sid);
            self.drop_links(links, end.error.clone());
        }
        if reply {
            let _ = self.end(sid, None);
        } else {
            self.remove_session(sid);
        }
        self.events.push_back(Event::SessionEnded {
            session: sid,
            error: end.error,
        });
        Ok(())
    }

    pub(super) fn remove_session(&mut self, sid: SessionId) {
        // Its links first, while the session still holds their unsettled
        // messages, so that those come back in the events.
        let links = self.store.session_links(sid);
        self.drop_links(links, None);
        self.store.remove_session(sid);
    }

    /// Forgets `links` (their session is gone), each with `error`.
    pub(super) fn drop_links(&mut self, links: Vec<LinkId>, error: Option<AmqpError>) {
        for link in links {
            if let Some(unsent) = self.remove_link(link) {
                self.events.push_back(Event::LinkDetached {
                    link,
                    closed: false,
                    error: error.clone(),
                    remote: true,
                    unsent,
                    timeout: false,
                });
            }
        }
    }

    /// Ends a session because the peer broke a session rule.
    pub(super) fn session_error(
        &mut self,
        sid: SessionId,
        cond: Symbol,
        desc: String,
    ) -> Result<(), Fatal> {
        let error = AmqpError::new(cond, desc);
        let _ = self.end(sid, Some(error.clone()));
        // The session is over for us: its links end now, with the error,
        // whether or not the peer ever answers our end.
        let links = self.store.session_links(sid);
        self.drop_links(links, Some(error.clone()));
        self.events.push_back(Event::SessionEnded {
            session: sid,
            error: Some(error),
        });
        Ok(())
    }
}
