//! What the driver does with each engine event: answer the handles that
//! wait for it, and hand deliveries to their receivers.

use super::*;

impl Driver {
    pub(super) fn on_event(&mut self, e: Event) {
        match e {
            Event::Opened(open) => {
                // Answered after the whole batch: a refusal is open + close.
                self.pending_open = Some(open);
            }
            Event::Closed {
                error,
                remote,
                timeout,
            } => {
                let err =
                    Error::from_close(error.clone(), remote, timeout, self.engine.is_remote_open());
                if (remote || timeout) && self.may_reconnect(&err) {
                    // The run loop replaces the connection.
                    self.lost = Some(err);
                    return;
                }
                for c in self.closes.drain(..) {
                    let _ = c.send(if (remote && error.is_some()) || timeout {
                        Err(err.clone())
                    } else {
                        Ok(())
                    });
                }
                self.shared.set_error(err.clone());
                self.fail_all(err);
            }
            Event::SessionBegun {
                session, incoming, ..
            } => {
                if let Some(r) = self.begins.remove(&session) {
                    let _ = r.send(Ok(session));
                }
                if incoming {
                    let _ = self.shared.incoming.push(Incoming::Session(session));
                }
            }
            Event::SessionEnded { session, error } => {
                if self.restore_session(session, &error) {
                    return;
                }
                if self.default_session == Some(session) {
                    self.default_session = None;
                }
                self.forget_session(session);
                if let Some(r) = self.begins.remove(&session) {
                    let e = match error {
                        Some(e) => Error::from_amqp(ErrorKind::SessionEnded, e),
                        None => Error::new(ErrorKind::SessionEnded, "the session ended"),
                    };
                    let _ = r.send(Err(e));
                }
            }
            Event::LinkAttached { link, attach } => {
                if let Some(reply) = self.attaches.remove(&link) {
                    let _ = reply.send(Ok(Attached {
                        link,
                        remote: attach,
                    }));
                } else if let Some(tx) = self.receivers.get(&link) {
                    // Attached again: a receiver learns the peer's new
                    // attach (a dynamic node gets a new address).
                    let _ = tx.send(RecvItem::Reattached(attach));
                }
            }
            Event::IncomingLink { link, attach, .. } => {
                use mpsc::error::TrySendError;
                let refusal = match self.shared.incoming.push(Incoming::Link { link, attach }) {
                    Ok(()) => None,
                    Err(TrySendError::Full(_)) => Some(AmqpError::new(
                        condition::RESOURCE_LIMIT_EXCEEDED,
                        format!("more than {MAX_PENDING_INCOMING} links wait for the application"),
                    )),
                    Err(TrySendError::Closed(_)) => Some(AmqpError::new(
                        condition::NOT_ALLOWED,
                        "links are not accepted here",
                    )),
                };
                if let Some(error) = refusal {
                    let _ = self.engine.refuse_link(link, error);
                }
            }
            Event::LinkDetached {
                link,
                error,
                unsent,
                timeout,
                closed,
                remote,
            } => {
                let unsent = if remote {
                    match self.keep_detached(link, &error, closed, unsent) {
                        Ok(()) => {
                            self.fail_settles(link);
                            return;
                        }
                        Err(unsent) => unsent,
                    }
                } else {
                    unsent
                };
                self.forget_link(link);
                let err = Error::from_detach(error, closed, remote, timeout);
                let detach = self.detaches.remove(&link);
                self.fail_link(link, err.clone(), unsent);
                if let Some(r) = detach {
                    let _ = r.send(if timeout { Err(err) } else { Ok(()) });
                }
            }
            Event::Credit { link, .. } => self.credit_changed(link),
            Event::Sent { send, .. } => {
                if let Some(p) = self.sends.remove(&send) {
                    // Complete once its bytes are handed to the socket.
                    self.unwritten.push_back(Unwritten {
                        mark: self.produced + self.engine.pending_output() as u64,
                        reply: p.reply,
                    });
                }
            }
            Event::Outcome {
                send,
                state,
                settled,
                ..
            } => {
                if !settled {
                    return; // not final yet
                }
                if let Some(p) = self.sends.remove(&send) {
                    if let Some(r) = p.reply {
                        // Given with the others of this batch of events.
                        self.outcomes.push((r, Ok(Outcome::from_state(state))));
                    }
                }
            }
            Event::Delivery {
                delivery,
                tag,
                settled,
                payload,
                ..
            } => {
                self.shared.messages_in.fetch_add(1, Ordering::Relaxed);
                let item = RecvItem::Delivery {
                    id: delivery,
                    epoch: self.epoch,
                    tag,
                    settled,
                    payload,
                };
                let delivered = match self.receivers.get(&delivery.link) {
                    Some(tx) => tx.send(item).is_ok(),
                    None => false,
                };
                if !delivered {
                    // The receiver is gone: give the message back.
                    self.receivers.remove(&delivery.link);
                    if !settled {
                        let _ = self
                            .engine
                            .settle(delivery, Some(DeliveryState::Released), true);
                    }
                    let _ = self.engine.consumed(delivery.link, 1);
                }
            }
            Event::RemoteSettled {
                delivery, settled, ..
            } => {
                if settled {
                    if let Some(r) = self.settles.remove(&delivery) {
                        let _ = r.send(Ok(()));
                    }
                }
            }
            Event::Drained { link } => {
                if let Some(tx) = self.receivers.get(&link) {
                    let _ = tx.send(RecvItem::Drained);
                }
            }
        }
    }

    /// Ends what waits on a link that is gone for good: its attach, its
    /// sends (the messages without an outcome go back with `err`), its
    /// settlements, its receiver's stream.
    pub(super) fn fail_link(
        &mut self,
        link: LinkId,
        err: Error,
        unsent: Vec<(SendId, crate::message::Message)>,
    ) {
        self.credit_watches.remove(&link);
        if let Some(r) = self.attaches.remove(&link) {
            let _ = r.send(Err(err.clone()));
        }
        for (id, message) in unsent {
            if let Some(PendingSend { reply: Some(r), .. }) = self.sends.remove(&id) {
                let _ = r.send(Err(err.clone().with_message(message)));
            }
        }
        let stale: Vec<SendId> = self
            .sends
            .iter()
            .filter(|(_, p)| p.link == link)
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            if let Some(PendingSend { reply: Some(r), .. }) = self.sends.remove(&id) {
                let _ = r.send(Err(err.clone()));
            }
        }
        self.fail_settles(link);
        if let Some(tx) = self.receivers.remove(&link) {
            let _ = tx.send(RecvItem::Detached(err));
        }
    }

    /// Settlements waiting for the sender on a link that is gone.
    pub(super) fn fail_settles(&mut self, link: LinkId) {
        let waiting: Vec<DeliveryId> = self
            .settles
            .keys()
            .filter(|d| d.link == link)
            .copied()
            .collect();
        for d in waiting {
            if let Some(r) = self.settles.remove(&d) {
                let _ = r.send(Err(not_settled(AmqpError::new(
                    condition::DETACH_FORCED,
                    "the link was detached before the sender settled",
                ))));
            }
        }
    }

    /// Fails every pending operation with `error`.
    pub(super) fn fail_all(&mut self, error: Error) {
        self.flush_outcomes();
        self.shared.set_error(error.clone());
        // Messages without an outcome go back to their senders.
        for (id, message) in self.engine.take_unsent() {
            if let Some(PendingSend { reply: Some(r), .. }) = self.sends.remove(&id) {
                let _ = r.send(Err(error.clone().with_message(message)));
            }
        }
        if let Some(w) = self.open_waiter.take() {
            let _ = w.send(Err(error.clone()));
        }
        for (_, r) in self.begins.drain() {
            let _ = r.send(Err(error.clone()));
        }
        for (_, r) in self.attaches.drain() {
            let _ = r.send(Err(error.clone()));
        }
        for (_, r) in self.detaches.drain() {
            let _ = r.send(Ok(()));
        }
        for r in self.closes.drain(..) {
            let _ = r.send(Ok(()));
        }
        for (_, p) in self.sends.drain() {
            if let Some(r) = p.reply {
                let _ = r.send(Err(error.clone()));
            }
        }
        for u in self.unwritten.drain(..) {
            if let Some(r) = u.reply {
                let _ = r.send(Err(error.clone()));
            }
        }
        for (_, r) in self.settles.drain() {
            let _ = r.send(Err(error.clone()));
        }
        self.credit_watches.clear();
        for (_, tx) in self.receivers.drain() {
            let _ = tx.send(RecvItem::Detached(error.clone()));
        }
        while let Ok(cmd) = self.commands.try_recv() {
            reject_command(cmd, error.clone());
        }
        self.commands.close();
    }
}
