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
    /// A receiver's credit at attach: its first window grant (0: manual credit).
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
    /// Links the peer detached that wait for their session or the next
    /// connection, with their messages that had no outcome.
    #[allow(clippy::type_complexity)]
    parked: BTreeMap<LinkId, Vec<(SendId, crate::message::Message)>>,
    /// When a session the peer ended was last begun again.
    begun_at: HashMap<SessionId, Instant>,
}

impl Reconnector {
    pub(crate) fn new(service: BoxService<NextConnection, Transport, Error>, resend: bool) -> Self {
        Reconnector {
            service,
            resend,
            sessions: BTreeSet::new(),
            links: BTreeMap::new(),
            parked: BTreeMap::new(),
            begun_at: HashMap::new(),
        }
    }
}

impl Driver {
    /// Credit for a link attached again: a windowed receiver grants its
    /// window itself (told by `Restored`, so its count of outstanding
    /// credit starts afresh); manual credit carries over as `credit`.
    fn regrant(&mut self, link: LinkId, windowed: bool, credit: u32) {
        if windowed {
            if let Some(tx) = self.receivers.get(&link) {
                let _ = tx.send(RecvItem::Restored);
            }
        } else if credit > 0 {
            let _ = self.engine.add_credit(link, credit, false);
        }
    }

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

    /// The peer detached `link` with an error worth retrying
    /// (`amqp:link:detach-forced`, which brokers use on idle links, or its
    /// session ending with `amqp:internal-error`, which RabbitMQ sends as it
    /// shuts down): attach it again under the same id, now if its session
    /// is up, else once the session or the connection is back; its
    /// messages without an outcome go out again then. At most once a
    /// second per link. Gives `unsent` back if the link is not kept (the
    /// handle then gets the error).
    #[allow(clippy::type_complexity)]
    pub(super) fn keep_detached(
        &mut self,
        link: LinkId,
        error: &Option<AmqpError>,
        closed: bool,
        unsent: Vec<(SendId, crate::message::Message)>,
    ) -> Result<(), Vec<(SendId, crate::message::Message)>> {
        let retriable = error.is_some()
            && Error::from_detach(error.clone(), closed, true, false).is_retriable();
        if !retriable || self.closing {
            return Err(unsent);
        }
        let Some(r) = &mut self.reconnect else {
            return Err(unsent);
        };
        let Some(rec) = r.links.get_mut(&link) else {
            return Err(unsent);
        };
        let now = Instant::now();
        if rec.forced_at.is_some_and(|t| now - t < FORCED_AGAIN) {
            return Err(unsent);
        }
        rec.forced_at = Some(now);
        let (session, attach, credit, receiver) =
            (rec.session, rec.attach.clone(), rec.credit, rec.receiver);
        if self.engine.attach_as(link, session, attach).is_ok() {
            tracing::info!(?error, "link detached by the peer; attached again");
            if receiver {
                self.regrant(link, credit > 0, 0);
            }
            self.resend(unsent);
        } else {
            // Its session is ending: the link waits for it (or for the
            // next connection).
            tracing::info!(?error, "link detached by the peer; waiting for its session");
            r.parked.insert(link, unsent);
        }
        Ok(())
    }

    /// The peer ended `session` with `error`: begin it again (and attach
    /// its waiting links) if the error is worth retrying and it is ours,
    /// at most once a second. Otherwise its waiting links end with the
    /// error. Returns whether it was begun again.
    pub(super) fn restore_session(
        &mut self,
        session: SessionId,
        error: &Option<AmqpError>,
    ) -> bool {
        let err = match error {
            Some(e) => Error::from_amqp(ErrorKind::SessionEnded, e.clone()),
            None => Error::new(ErrorKind::SessionEnded, "the session ended"),
        };
        let now = Instant::now();
        let again = !self.closing
            && err.is_retriable()
            && error.is_some()
            && self.reconnect.as_mut().is_some_and(|r| {
                r.sessions.contains(&session)
                    && r.begun_at
                        .get(&session)
                        .is_none_or(|t| now - *t >= FORCED_AGAIN)
            })
            && self.engine.begin_as(session).is_ok();
        let Some(r) = &mut self.reconnect else {
            return false;
        };
        // The links that wait for this session, with what they need.
        #[allow(clippy::type_complexity)]
        let waiting: Vec<(
            LinkId,
            Attach,
            u32,
            bool,
            Vec<(SendId, crate::message::Message)>,
        )> = r
            .links
            .iter()
            .filter(|(l, rec)| rec.session == session && r.parked.contains_key(l))
            .map(|(&l, rec)| (l, rec.attach.clone(), rec.credit, rec.receiver, Vec::new()))
            .collect();
        let waiting: Vec<_> = waiting
            .into_iter()
            .map(|(l, a, c, rcv, _)| (l, a, c, rcv, r.parked.remove(&l).unwrap_or_default()))
            .collect();
        if again {
            r.begun_at.insert(session, now);
            tracing::info!(?error, "session ended by the peer; begun again");
            for (link, attach, credit, receiver, unsent) in waiting {
                if self.engine.attach_as(link, session, attach).is_ok() && receiver {
                    self.regrant(link, credit > 0, 0);
                }
                self.resend(unsent);
            }
            return true;
        }
        for (link, _, _, _, unsent) in waiting {
            self.forget_link(link);
            self.fail_link(link, err.clone(), unsent);
        }
        false
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
        // Manual credit carries over as it was; a windowed receiver grants
        // its window afresh when told (see `regrant`).
        let mut credits = HashMap::new();
        if let Some(r) = &self.reconnect {
            for (&link, rec) in &r.links {
                if rec.receiver && rec.credit == 0 {
                    credits.insert(link, self.engine.credit(link));
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
        if let Some(r) = &mut self.reconnect {
            for (_, unsent) in std::mem::take(&mut r.parked) {
                again.extend(unsent);
            }
        }
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
        let links: Vec<(LinkId, SessionId, Attach, bool, bool)> = r
            .links
            .iter()
            .map(|(&id, l)| (id, l.session, l.attach.clone(), l.receiver, l.credit > 0))
            .collect();
        for s in sessions {
            if let Err(e) = self.engine.begin_as(s) {
                tracing::warn!(error = %e.description.as_deref().unwrap_or(""), "session not restored");
            }
        }
        for (link, session, attach, receiver, windowed) in links {
            if let Err(e) = self.engine.attach_as(link, session, attach) {
                let err = Error::from_amqp_local(e);
                if let Some(tx) = self.receivers.remove(&link) {
                    let _ = tx.send(RecvItem::Detached(err));
                }
                self.forget_link(link);
                continue;
            }
            if receiver {
                let credit = credits.get(&link).copied().unwrap_or(0);
                self.regrant(link, windowed, credit);
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
