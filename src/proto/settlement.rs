//! Settlement both ways: dispositions, batched into ranges.

use super::connection::{Connection, Fatal};
use super::event::*;
use super::session::*;
use crate::frame::*;

impl Connection {
    /// Settles (or, with `settled` false, updates) an incoming delivery with
    /// `state`. Dispositions are batched into ranges when written.
    pub fn settle(&mut self, delivery: DeliveryId, state: Option<DeliveryState>, settled: bool) {
        let Some(l) = self.links.get(&delivery.link) else {
            return;
        };
        let Some(s) = self.sessions.get_mut(&l.session) else {
            return;
        };
        if settled && s.incoming_unsettled.remove(&delivery.id).is_none() {
            return; // already settled (by us or the peer)
        }
        s.queue_disposition(PendingDisposition {
            role: Role::Receiver,
            first: delivery.id,
            last: delivery.id,
            settled,
            state,
        });
    }

    pub(super) fn flush_dispositions(&mut self) {
        let mut frames = Vec::new();
        for s in self.sessions.values_mut() {
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
        if last < d.first {
            return self.session_error(
                sid,
                condition::INVALID_FIELD,
                format!("disposition range {}..{} is reversed", d.first, last),
            );
        }
        let s = self.sessions.get_mut(&sid).expect("session exists");
        match d.role {
            // The peer is the receiver: outcomes of our sends.
            Role::Receiver => {
                let ids: Vec<u32> = s
                    .outgoing_unsettled
                    .range(d.first..=last)
                    .map(|(k, _)| *k)
                    .collect();
                for delivery_id in ids {
                    let (link, send) = if d.settled {
                        let u = s.outgoing_unsettled.remove(&delivery_id).expect("present");
                        (u.link, u.send)
                    } else {
                        let u = &s.outgoing_unsettled[&delivery_id];
                        (u.link, u.send)
                    };
                    self.events.push_back(Event::Outcome {
                        link,
                        send,
                        state: d.state.clone(),
                        settled: d.settled,
                    });
                }
                if d.settled {
                    // Settled deliveries need no answer in first mode.
                }
            }
            // The peer is the sender: it settles deliveries it sent us.
            Role::Sender => {
                let ids: Vec<(u32, LinkId)> = s
                    .incoming_unsettled
                    .range(d.first..=last)
                    .map(|(k, v)| (*k, *v))
                    .collect();
                for (delivery_id, link) in ids {
                    if d.settled {
                        s.incoming_unsettled.remove(&delivery_id);
                    }
                    self.events.push_back(Event::RemoteSettled {
                        delivery: DeliveryId {
                            link,
                            id: delivery_id,
                        },
                        state: d.state.clone(),
                    });
                }
            }
        }
        Ok(())
    }
}
