//! Settlement both ways: dispositions, batched into ranges.

use super::connection::{Connection, Fatal};
use super::event::*;
use super::link::LinkState;
use super::session::*;
use crate::frame::*;

impl Connection {
    /// Settles (or, with `settled` false, updates) an incoming delivery with
    /// `state`. Dispositions are batched into ranges when written.
    /// Fails if the delivery's link is gone (the peer will redeliver it)
    /// or the delivery is settled already.
    pub fn settle(
        &mut self,
        delivery: DeliveryId,
        state: Option<DeliveryState>,
        settled: bool,
    ) -> Result<(), AmqpError> {
        let l = self
            .store
            .links
            .get(&delivery.link)
            .filter(|l| l.state == LinkState::Attached)
            .ok_or_else(|| super::links::gone(delivery.link))?;
        let s = self
            .store
            .sessions
            .get_mut(&l.session)
            .ok_or_else(|| super::links::gone(delivery.link))?;
        let known = if settled {
            s.incoming_unsettled.remove(delivery.id).is_some()
        } else {
            s.incoming_unsettled.contains_key(delivery.id)
        };
        if !known {
            return Err(AmqpError::new(
                condition::ILLEGAL_STATE,
                format!("delivery {} is settled already", delivery.id),
            ));
        }
        s.queue_disposition(PendingDisposition {
            role: Role::Receiver,
            first: delivery.id,
            last: delivery.id,
            settled,
            state,
        });
        Ok(())
    }

    /// Settles (or, with `settled` false, updates) the incoming deliveries
    /// `first..=last` (serial numbers, wrapping) of one link with `state`:
    /// one disposition per run of them still unsettled; the others (settled
    /// already, or of another link) are skipped. Returns how many it
    /// settled. Fails if the link is gone (the peer will redeliver them).
    pub fn settle_range(
        &mut self,
        link: LinkId,
        first: u32,
        last: u32,
        state: Option<DeliveryState>,
        settled: bool,
    ) -> Result<u32, AmqpError> {
        let l = self
            .store
            .links
            .get(&link)
            .filter(|l| l.state == LinkState::Attached)
            .ok_or_else(|| super::links::gone(link))?;
        let s = self
            .store
            .sessions
            .get_mut(&l.session)
            .ok_or_else(|| super::links::gone(link))?;
        let mut count = 0;
        let mut run: Option<(u32, u32)> = None;
        let mut id = first;
        loop {
            let known = if settled {
                match s.incoming_unsettled.get(id) {
                    Some(&l) if l == link => s.incoming_unsettled.remove(id).is_some(),
                    _ => false,
                }
            } else {
                s.incoming_unsettled.get(id) == Some(&link)
            };
            if known {
                count += 1;
                run = match run {
                    Some((a, b)) if b.wrapping_add(1) == id => Some((a, id)),
                    Some((a, b)) => {
                        s.queue_disposition(PendingDisposition {
                            role: Role::Receiver,
                            first: a,
                            last: b,
                            settled,
                            state: state.clone(),
                        });
                        Some((id, id))
                    }
                    None => Some((id, id)),
                };
            }
            if id == last {
                break;
            }
            id = id.wrapping_add(1);
        }
        if let Some((a, b)) = run {
            s.queue_disposition(PendingDisposition {
                role: Role::Receiver,
                first: a,
                last: b,
                settled,
                state,
            });
        }
        Ok(count)
    }

    pub(super) fn flush_dispositions(&mut self) {
        let mut frames = Vec::new();
        for s in self.store.sessions.values_mut() {
            if s.dispositions.is_empty() || s.end_sent {
                s.dispositions.clear();
                continue;
            }
            for d in s.dispositions.drain(..) {
                frames.push((s.channel, d));
            }
        }
        for (channel, d) in frames {
            let disp = Disposition {
                role: d.role,
                first: d.first,
                last: (d.last != d.first).then_some(d.last),
                settled: d.settled,
                state: d.state,
                batchable: false,
            };
            self.write_frame(channel, &disp, &[]);
        }
    }

    pub(super) fn on_disposition(&mut self, sid: SessionId, d: Disposition) -> Result<(), Fatal> {
        let last = d.last.unwrap_or(d.first);
        // Delivery ids are serial numbers (RFC 1982): a range may wrap past
        // u32::MAX, but may not span half the number space.
        if last.wrapping_sub(d.first) > i32::MAX as u32 {
            return self.session_error(
                sid,
                condition::INVALID_FIELD,
                format!("disposition range {}..{} is reversed", d.first, last),
            );
        }
        let s = self.store.sessions.get_mut(&sid).expect("session exists");
        let mut ids = std::mem::take(&mut self.disposition_ids);
        match d.role {
            // The peer is the receiver: outcomes of our sends.
            Role::Receiver => {
                s.outgoing_unsettled.ids_in(d.first, last, &mut ids);
                ids.sort_unstable_by_key(|id| id.wrapping_sub(d.first));
                // A terminal outcome the peer has not settled (it wants
                // rcv-settle-mode second, or simply did not settle) is
                // final for us: settle it, as the spec has the sender do,
                // rather than keep the message for ever.
                let terminal = d.state.as_ref().is_some_and(DeliveryState::is_terminal);
                let settle_now = !d.settled && terminal;
                for &delivery_id in &ids {
                    let (link, send) = if d.settled || terminal {
                        let u = s.outgoing_unsettled.remove(delivery_id).expect("present");
                        (u.link, u.send)
                    } else {
                        let u = s.outgoing_unsettled.get(delivery_id).expect("present");
                        (u.link, u.send)
                    };
                    if settle_now {
                        s.queue_disposition(PendingDisposition {
                            role: Role::Sender,
                            first: delivery_id,
                            last: delivery_id,
                            settled: true,
                            state: d.state.clone(),
                        });
                    }
                    self.events.push_back(Event::Outcome {
                        link,
                        send,
                        state: d.state.clone(),
                        settled: d.settled || terminal,
                    });
                }
            }
            // The peer is the sender: it settles deliveries it sent us.
            Role::Sender => {
                s.incoming_unsettled.ids_in(d.first, last, &mut ids);
                ids.sort_unstable_by_key(|id| id.wrapping_sub(d.first));
                for &delivery_id in &ids {
                    let link = if d.settled {
                        s.incoming_unsettled.remove(delivery_id)
                    } else {
                        s.incoming_unsettled.get(delivery_id).copied()
                    }
                    .expect("present");
                    self.events.push_back(Event::RemoteSettled {
                        delivery: DeliveryId {
                            link,
                            id: delivery_id,
                        },
                        state: d.state.clone(),
                        settled: d.settled,
                    });
                }
            }
        }
        // Kept for the next disposition, unless a large range grew it.
        if ids.capacity() <= 4096 {
            self.disposition_ids = ids;
        }
        Ok(())
    }
}
