//! Beginning and ending sessions (spec 2.5).

use super::connection::{fatal, Connection, Fatal};
use super::event::*;
use super::session::*;
use crate::frame::*;
use crate::types::Symbol;

impl Connection {
    // ---- sessions -----------------------------------------------------

    /// Begins a session; the peer's answer comes as
    /// [`Event::SessionBegun`]. Fails if every channel is in use.
    pub fn begin(&mut self) -> Result<SessionId, AmqpError> {
        let max = if self.remote_open {
            self.remote_channel_max.min(self.config.channel_max)
        } else {
            self.config.channel_max
        };
        let channel = (0..=max)
            .find(|c| !self.channels.contains_key(c))
            .ok_or_else(|| AmqpError::new(condition::RESOURCE_LIMIT_EXCEEDED, "no free channel"))?;
        let id = SessionId(self.next_id());
        let session = Session::new(channel, self.config.incoming_window);
        self.channels.insert(channel, id);
        self.sessions.insert(id, session);
        self.write_begin(id);
        Ok(id)
    }

    pub(super) fn write_begin(&mut self, id: SessionId) {
        let s = self.sessions.get_mut(&id).expect("session exists");
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
        if self.remote_channels.contains_key(&channel) {
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
            Some(ours) => match self.channels.get(&ours) {
                Some(&sid) if self.sessions[&sid].remote_channel.is_none() => (sid, false),
                _ => {
                    return fatal(
                        condition::FRAMING_ERROR,
                        format!("begin answers channel {ours}, which has no session of ours"),
                    )
                }
            },
            None => {
                if self.sessions.len() >= self.config.max_sessions {
                    return fatal(
                        condition::RESOURCE_LIMIT_EXCEEDED,
                        format!("more than {} sessions", self.config.max_sessions),
                    );
                }
                let ours = (0..=self.config.channel_max)
                    .find(|c| !self.channels.contains_key(c))
                    .ok_or((
                        condition::RESOURCE_LIMIT_EXCEEDED,
                        "no free channel".to_string(),
                    ))?;
                let sid = SessionId(self.next_id());
                self.channels.insert(ours, sid);
                self.sessions
                    .insert(sid, Session::new(ours, self.config.incoming_window));
                (sid, true)
            }
        };
        let s = self.sessions.get_mut(&sid).expect("session exists");
        s.remote_channel = Some(channel);
        s.next_incoming_id = begin.next_outgoing_id;
        s.remote_incoming_window = begin.incoming_window;
        s.remote_outgoing_window = begin.outgoing_window;
        s.remote_handle_max = begin.handle_max;
        self.remote_channels.insert(channel, sid);
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
        let Some(s) = self.sessions.get_mut(&session) else {
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
        let s = self.sessions.get_mut(&sid).expect("session exists");
        s.end_received = true;
        if let Some(rc) = s.remote_channel {
            self.remote_channels.remove(&rc);
        }
        let reply = !s.end_sent;
        if end.error.is_some() {
            // The links end with the session's error (a broker refusing an
            // attach by ending the session, say): tell their handles why.
            let links: Vec<LinkId> = s
                .handles
                .values()
                .chain(s.remote_handles.values())
                .copied()
                .collect();
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
        let Some(s) = self.sessions.remove(&sid) else {
            return;
        };
        self.channels.remove(&s.channel);
        if let Some(rc) = s.remote_channel {
            self.remote_channels.remove(&rc);
        }
        let links: Vec<LinkId> = s
            .handles
            .values()
            .chain(s.remote_handles.values())
            .copied()
            .collect();
        self.drop_links(links, None);
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
        self.events.push_back(Event::SessionEnded {
            session: sid,
            error: Some(error),
        });
        Ok(())
    }
}
