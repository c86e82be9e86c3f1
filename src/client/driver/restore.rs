//! Reconnecting: what the driver keeps of a connection so that a new one
//! can take its place (the sessions and links it opened, the sends
//! without an outcome), and the switch itself.
//!
//! Handles keep their ids: the new engine begins each session and attaches
//! each link under the id the lost one had (`begin_as`, `attach_as`), so
//! no command or reply needs translating. Deliveries carry the epoch of
//! the connection they came on; settling one from a lost connection is an
//! error of kind [`ErrorKind::Disconnected`] (the peer redelivers it).

use super::*;
use crate::client::reconnect::{NextConnection, Transport};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tower::util::BoxService;
use tower::Service;

/// A peer that detaches a link with `amqp:link:detach-forced` again
/// within this time of its re-attach gets the detach reported instead.
const FORCED_AGAIN: Duration = Duration::from_secs(1);

/// A link we attached, as we asked for it.
#[derive(Debug)]
struct LinkRecord {
    session: SessionId,
    attach: Attach,
    /// A receiver's credit to grant on re-attach.
    credit: u32,
    receiver: bool,
    /// When it was last re-attached after a forced detach.
    forced_at: Option<Instant>,
}

/// What reconnecting needs: the service that makes connections, and what
/// to restore on them.
pub(crate) struct Reconnector {
    service: BoxService<NextConnection, Transport, Error>,
    resend: bool,
    sessions: BTreeSet<SessionId>,
    links: BTreeMap<LinkId, LinkRecord>,
}

impl Reconnector {
    pub(crate) fn new(service: BoxService<NextConnection, Transport, Error>, resend: bool) -> Self {
        Reconnector {
            service,
            resend,
            sessions: BTreeSet::new(),
            links: BTreeMap::new(),
        }
    }
}

impl Driver {
    /// Records a session we began, to begin it again after a reconnect.
    pub(super) fn keep_session(&mut self, session: SessionId) {
        if let Some(r) = &mut self.reconnect {
            r.sessions.insert(session);
        }
    }

    /// Forgets a session (ended), and its links.
    pub(super) fn forget_session(&mut self, session: SessionId) {
        if let Some(r) = &mut self.reconnect {
            r.sessions.remove(&session);
            r.links.retain(|_, l| l.session != session);
        }
    }

    /// Records a link we attached, to attach it again after a reconnect.
    pub(super) fn keep_link(
        &mut self,
        link: LinkId,
        session: SessionId,
        attach: Attach,
        credit: u32,
    ) {
        if let Some(r) = &mut self.reconnect {
            let receiver = attach.role == crate::frame::Role::Receiver;
            r.links.insert(
                link,
                LinkRecord {
                    session,
                    attach,
                    credit,
                    receiver,
                    forced_at: None,
                },
            );
        }
    }

    /// Forgets a link (detached or closed for good).
    pub(super) fn forget_link(&mut self, link: LinkId) {
        if let Some(r) = &mut self.reconnect {
            r.links.remove(&link);
        }
    }

    /// Whether a connection that ended with `e` is worth replacing.
    pub(super) fn may_reconnect(&self, e: &Error) -> bool {
        !self.closing && self.reconnect.is_some() && e.is_retriable()
    }

    /// Whether the peer's `amqp:link:detach-forced` of `link` should be
    /// answered by attaching it again (at most once per second).
    pub(super) fn reattach_forced(&mut self, link: LinkId, error: &Option<AmqpError>) -> bool {
        let forced = error
            .as_ref()
            .is_some_and(|e| e.condition == condition::DETACH_FORCED);
        if !forced || self.closing {
            return false;
        }
        let Some(r) = &mut self.reconnect else {
            return false;
        };
        let Some(rec) = r.links.get_mut(&link) else {
            return false;
        };
        let now = Instant::now();
        if rec.forced_at.is_some_and(|t| now - t < FORCED_AGAIN) {
            return false;
        }
        rec.forced_at = Some(now);
        let (session, attach, credit, receiver) =
            (rec.session, rec.attach.clone(), rec.credit, rec.receiver);
        tracing::info!(name = %attach.name, "link detached with detach-forced; attaching it again");
        if self.engine.attach_as(link, session, attach).is_err() {
            return false;
        }
        if receiver && credit > 0 {
            let _ = self.engine.add_credit(link, credit, false);
        }
        true
    }

    /// Sends `messages` (taken from a lost link or connection) again, each
    /// with the reply its `send` waits on.
    pub(super) fn resend(&mut self, messages: Vec<(SendId, crate::message::Message)>) {
        for (old, message) in messages {
            let Some(p) = self.sends.remove(&old) else {
                continue;
            };
            match self.engine.send(p.link, message, p.settled) {
                Ok(id) => {
                    self.sends.insert(id, p);
                }
                Err(message) => {
                    if let Some(r) = p.reply {
                        let e = Error::new(ErrorKind::LinkDetached, "the link is detached");
                        let _ = r.send(Err(e.with_message(message.into_message())));
                    }
                }
            }
        }
    }

    /// Replaces a lost connection: keeps what can be restored, asks the
    /// reconnect service for a new transport (taking commands meanwhile),
    /// then begins the sessions, re-attaches the links and re-sends.
    pub(super) async fn reconnect(&mut self, cause: Error) -> Result<(), Error> {
        tracing::warn!(error = %cause, "connection lost; reconnecting");
        self.shared.events.emit(ConnectionEvent::Disconnected {
            error: cause.clone(),
        });
        self.epoch += 1;
        self.shared.epoch.store(self.epoch, Ordering::Release);
        let watermark = self.engine.id_watermark();
        let (written, queued) = self.engine.take_unsent_parts();
        // A receiver with a credit window gets its whole window again (what
        // was in flight may be lost with the connection, and its stream
        // tops up only as deliveries come: granting less could stall it;
        // the skipped deliveries of the lost connection top up too, so at
        // most two windows are outstanding for a while). Manual credit
        // carries over as it was.
        let mut credits = HashMap::new();
        if let Some(r) = &self.reconnect {
            for (&link, rec) in &r.links {
                if rec.receiver {
                    let c = if rec.credit > 0 {
                        rec.credit
                    } else {
                        self.engine.credit(link)
                    };
                    credits.insert(link, c);
                }
            }
        }
        self.drop_unrestorable(&cause);
        // Sends whose bytes the peer may have: again, or back to the caller.
        let resend = self.reconnect.as_ref().is_some_and(|r| r.resend);
        let mut again = Vec::new();
        for (id, message) in written {
            if resend {
                again.push((id, message));
            } else if let Some(PendingSend { reply: Some(r), .. }) = self.sends.remove(&id) {
                let e = Error::new(
                    ErrorKind::Disconnected,
                    "the connection was lost before the outcome came; not sent again (resend_in_flight is off)",
                );
                let _ = r.send(Err(e.with_message(message)));
            }
        }
        again.extend(queued);
        again.sort_by_key(|(id, _)| *id);

        // Ask for a new transport; commands wait meanwhile.
        let mut deferred = VecDeque::new();
        let transport = {
            let r = self.reconnect.as_mut().expect("reconnect is on");
            let call = r.service.call(NextConnection::after_loss());
            tokio::pin!(call);
            loop {
                tokio::select! {
                    t = &mut call => break t,
                    cmd = self.commands.recv() => match cmd {
                        None | Some(Command::HandlesGone) => {
                            self.closing = true;
                            break Err(Error::new(ErrorKind::Closed, "every handle was dropped while reconnecting"));
                        }
                        Some(Command::Close { reply, .. }) => {
                            self.closing = true;
                            if let Some(reply) = reply {
                                let _ = reply.send(Ok(()));
                            }
                            break Err(Error::new(ErrorKind::Closed, "the connection was closed while reconnecting"));
                        }
                        Some(cmd) => deferred.push_back(cmd),
                    }
                }
            }
        };
        let transport = match transport {
            Ok(t) => t,
            Err(e) => {
                if !self.closing {
                    self.shared
                        .events
                        .emit(ConnectionEvent::GaveUp { error: e.clone() });
                }
                // Nothing of the old connection survives: fail what waits.
                for (id, message) in again {
                    if let Some(PendingSend { reply: Some(r), .. }) = self.sends.remove(&id) {
                        let _ = r.send(Err(e.clone().with_message(message)));
                    }
                }
                for cmd in deferred {
                    reject_command(cmd, e.clone());
                }
                return Err(e);
            }
        };
        self.restore(transport, watermark, credits, again, deferred);
        Ok(())
    }

    /// Fails what a new connection cannot carry on: settlements waiting for
    /// the sender, presettled sends not fully written, detaches and links
    /// the peer opened.
    fn drop_unrestorable(&mut self, cause: &Error) {
        let lost = |what: &str| {
            Error::new(
                ErrorKind::Disconnected,
                format!("{what}: the connection was lost ({cause})"),
            )
        };
        for (_, r) in self.settles.drain() {
            let _ = r.send(Err(lost(
                "not settled; the peer will redeliver the message",
            )));
        }
        for u in self.unwritten.drain(..) {
            if let Some(r) = u.reply {
                let _ = r.send(Err(lost("the presettled message may not have been sent")));
            }
        }
        for (link, r) in self.detaches.drain() {
            let _ = r.send(Ok(()));
            if let Some(rc) = &mut self.reconnect {
                rc.links.remove(&link);
            }
        }
        let kept: BTreeSet<LinkId> = self
            .reconnect
            .as_ref()
            .map(|r| r.links.keys().copied().collect())
            .unwrap_or_default();
        let gone: Vec<LinkId> = self
            .receivers
            .keys()
            .filter(|l| !kept.contains(l))
            .copied()
            .collect();
        for link in gone {
            if let Some(tx) = self.receivers.remove(&link) {
                let _ = tx.send(RecvItem::Detached(cause.clone()));
            }
        }
    }

    /// Takes the new transport into use and restores everything on it.
    fn restore(
        &mut self,
        t: Transport,
        watermark: u64,
        credits: HashMap<LinkId, u32>,
        again: Vec<(SendId, crate::message::Message)>,
        deferred: VecDeque<Command>,
    ) {
        let Transport {
            mut engine,
            io,
            events,
            url,
            ..
        } = t;
        engine.reserve_ids(watermark);
        self.engine = engine;
        self.io = Some(io);
        self.produced = 0;
        self.written = 0;
        let r = self.reconnect.as_ref().expect("reconnect is on");
        let sessions: Vec<SessionId> = r.sessions.iter().copied().collect();
        let links: Vec<(LinkId, SessionId, Attach, bool)> = r
            .links
            .iter()
            .map(|(&id, l)| (id, l.session, l.attach.clone(), l.receiver))
            .collect();
        for s in sessions {
            if let Err(e) = self.engine.begin_as(s) {
                tracing::warn!(error = %e.description.as_deref().unwrap_or(""), "session not restored");
            }
        }
        for (link, session, attach, receiver) in links {
            if let Err(e) = self.engine.attach_as(link, session, attach) {
                let err = Error::from_amqp_local(e);
                if let Some(tx) = self.receivers.remove(&link) {
                    let _ = tx.send(RecvItem::Detached(err));
                }
                self.forget_link(link);
                continue;
            }
            let credit = credits.get(&link).copied().unwrap_or(0);
            if receiver && credit > 0 {
                let _ = self.engine.add_credit(link, credit, false);
            }
        }
        for w in self.credit_watches.values() {
            w.send_replace(0);
        }
        self.resend(again);
        // Anything not re-sent belongs to nothing now.
        let stale: Vec<SendId> = self
            .sends
            .iter()
            .filter(|(_, p)| self.engine.link_attach(p.link).is_none())
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            if let Some(PendingSend { reply: Some(r), .. }) = self.sends.remove(&id) {
                let _ = r.send(Err(Error::new(
                    ErrorKind::LinkDetached,
                    "the link was not restored after a reconnect",
                )));
            }
        }
        self.shared.reconnects.fetch_add(1, Ordering::Relaxed);
        tracing::info!(%url, "reconnected");
        self.shared
            .events
            .emit(ConnectionEvent::Reconnected { url });
        for e in events {
            self.on_event(e);
        }
        for cmd in deferred {
            self.on_command(cmd);
        }
    }
}
