//! What the driver does with each command from a handle: hand it to the
//! engine and keep the reply for the event that answers it.

use super::*;
use crate::client::settlements::AutoState;

impl Driver {
    pub(super) fn session_for(&mut self, session: Option<SessionId>) -> Result<SessionId, Error> {
        if let Some(s) = session {
            return Ok(s);
        }
        if let Some(s) = self.default_session {
            return Ok(s);
        }
        let s = self.engine.begin().map_err(Error::from_amqp_local)?;
        self.default_session = Some(s);
        self.keep_session(s);
        Ok(s)
    }

    pub(super) fn add_receiver(
        &mut self,
        link: LinkId,
        sink: Option<mpsc::UnboundedSender<RecvItem>>,
        credit: u32,
    ) {
        if let Some(sink) = sink {
            self.receivers.insert(link, sink);
            if credit > 0 {
                let _ = self.engine.add_credit(link, credit, false);
            }
        }
    }

    /// Applies `first` and what is already queued behind it, up to the
    /// output high-water mark: one write for all. The connection's error
    /// is looked up once for the batch (it is set only while events are
    /// handled, never while commands are).
    pub(super) fn on_commands(&mut self, first: Command, high_water: usize) {
        if let Some(e) = self.shared.error() {
            reject_command(first, e.clone());
            while let Ok(cmd) = self.commands.try_recv() {
                reject_command(cmd, e.clone());
            }
            return;
        }
        self.apply_command(first);
        for _ in 0..1024 {
            if self.engine.pending_output() >= high_water {
                break;
            }
            match self.commands.try_recv() {
                Ok(cmd) => self.apply_command(cmd),
                Err(_) => break,
            }
        }
    }

    pub(super) fn on_command(&mut self, cmd: Command) {
        if let Some(e) = self.shared.error() {
            reject_command(cmd, e);
            return;
        }
        self.apply_command(cmd);
    }

    fn apply_command(&mut self, cmd: Command) {
        match cmd {
            Command::Open => self.engine.open(),
            Command::HandlesGone => {
                self.closing = true;
                self.engine.close(None);
            }
            Command::Begin { reply } => match self.engine.begin() {
                Ok(s) => {
                    self.keep_session(s);
                    self.begins.insert(s, reply);
                }
                Err(e) => {
                    let _ = reply.send(Err(Error::from_amqp_local(e)));
                }
            },
            Command::End { session, error } => {
                if self.default_session == Some(session) {
                    self.default_session = None;
                }
                self.forget_session(session);
                let _ = self.engine.end(session, error.map(|e| *e));
            }
            Command::Attach {
                session,
                attach,
                sink,
                credit,
                credit_watch,
                reply,
            } => {
                let kept = self.reconnect.is_some().then(|| (*attach).clone());
                let result = self.session_for(session).and_then(|s| {
                    self.engine
                        .attach(s, *attach)
                        .map(|link| (link, s))
                        .map_err(Error::from_amqp_local)
                });
                match result {
                    Ok((link, s)) => {
                        if let Some(a) = kept {
                            self.keep_link(link, s, a, credit);
                        }
                        if let Some(w) = credit_watch {
                            self.credit_watches.insert(link, w);
                        }
                        self.add_receiver(link, sink, credit);
                        self.attaches.insert(link, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Command::AcceptLink {
                link,
                attach,
                sink,
                credit,
                credit_watch,
            } => match self.engine.accept_link(link, *attach) {
                Ok(()) => {
                    if let Some(w) = credit_watch {
                        self.credit_watches.insert(link, w);
                    }
                    self.add_receiver(link, sink, credit)
                }
                Err(_) => {
                    // The peer detached it before we answered.
                    if let Some(sink) = sink {
                        let e = Error::new(
                            ErrorKind::LinkDetached,
                            "the peer detached the link before it was accepted",
                        );
                        let _ = sink.send(RecvItem::Detached(e));
                    }
                }
            },
            Command::RefuseLink { link, error } => {
                let _ = self.engine.refuse_link(link, *error);
            }
            Command::Send {
                link,
                message,
                settled,
                reply,
            } => match self.engine.send(link, message, settled) {
                Ok(id) => {
                    self.credit_changed(link);
                    self.shared.messages_out.fetch_add(1, Ordering::Relaxed);
                    self.sends.insert(
                        id,
                        PendingSend {
                            link,
                            settled,
                            reply,
                        },
                    );
                }
                Err(message) => {
                    if let Some(reply) = reply {
                        let e = Error::new(ErrorKind::LinkDetached, "the link is detached");
                        let _ = reply.send(Err(e.with_message(message.into_message())));
                    }
                }
            },
            Command::Flow {
                link,
                add,
                drain,
                consumed,
                epoch,
            } => {
                // What was consumed of a lost connection's deliveries
                // no longer holds this one's window.
                if consumed > 0 && epoch == self.epoch {
                    let _ = self.engine.consumed(link, consumed);
                }
                if add > 0 || drain {
                    if let Err(e) = self.engine.add_credit(link, add, drain) {
                        tracing::debug!(error = %e, "credit for a link that is gone");
                    }
                }
            }
            Command::Settle {
                delivery,
                epoch,
                state,
                reply,
            } => {
                if epoch != self.epoch {
                    if let Some(r) = reply {
                        let _ = r.send(Err(Error::new(
                            ErrorKind::Disconnected,
                            "not settled: the delivery came on a connection that was lost since; \
                             the peer will redeliver the message",
                        )));
                    }
                    return;
                }
                let second = self
                    .engine
                    .link_attach(delivery.link)
                    .is_some_and(|a| a.rcv_settle_mode == RcvSettleMode::Second);
                match self
                    .engine
                    .settle(delivery, Some(state.into_state()), !second)
                {
                    Ok(()) if second => {
                        if let Some(r) = reply {
                            self.settles.insert(delivery, r);
                        }
                    }
                    Ok(()) => {
                        if let Some(r) = reply {
                            let _ = r.send(Ok(()));
                        }
                    }
                    Err(e) => {
                        if let Some(r) = reply {
                            let _ = r.send(Err(not_settled(e)));
                        }
                    }
                }
            }
            Command::SettleBatch(queue) => self.settle_batch(&queue),
            Command::Detach {
                link,
                closed,
                error,
                reply,
            } => {
                self.forget_link(link);
                let detaching = self.engine.detach(link, closed, error.map(|e| *e)).is_ok();
                if let Some(reply) = reply {
                    if detaching {
                        self.detaches.insert(link, reply);
                    } else {
                        let _ = reply.send(Ok(()));
                    }
                }
            }
            Command::Close { error, reply } => {
                self.closing = true;
                self.engine.close(error.map(|e| *e));
                if let Some(reply) = reply {
                    self.closes.push(reply);
                }
            }
        }
    }
}

impl Driver {
    /// Settles a receiver's batch: one engine call per run of consecutive
    /// deliveries. Those of a lost connection are left to the peer, which
    /// redelivers them; so are those of a link that is gone.
    fn settle_batch(&mut self, queue: &SettleQueue) {
        let link = queue.link();
        let second = self
            .engine
            .link_attach(link)
            .is_some_and(|a| a.rcv_settle_mode == RcvSettleMode::Second);
        for run in queue.take() {
            if run.epoch != self.epoch {
                continue;
            }
            let state = match run.state {
                AutoState::Accepted => DeliveryState::Accepted,
                AutoState::Released => DeliveryState::Released,
            };
            if let Err(e) =
                self.engine
                    .settle_range(link, run.first, run.last, Some(state), !second)
            {
                tracing::debug!(error = %e, "settlements for a link that is gone");
                return;
            }
        }
    }
}
