//! Receivers: a `Stream` of [`Delivery`]s with a credit window, and the
//! deliveries' settlement.

use super::connection::Connection;
use super::credit::CreditWindow;
use super::driver::{Command, RecvItem, Reply};
use super::settlements::{AutoState, SettleQueue};

/// Consumed deliveries are reported to the driver (for the session window)
/// at least this often, also when no credit goes out with them.
const REPORT_EVERY: u32 = 256;
use crate::error::{DecodeError, Error, ErrorKind};
use crate::frame::{AmqpError, Attach, DeliveryState, Modified, Rejected};
use crate::message::Message;
use crate::proto::{DeliveryId, LinkId};
use crate::types::{Map, Symbol};
use bytes::Bytes;
use futures::Stream;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use tokio::sync::{mpsc, oneshot};

/// A link that receives messages, as a `Stream` of deliveries.
///
/// With a credit window (the default: at most 1000 messages and 16 MiB)
/// credit is granted at attach and topped up once half the window is free
/// as deliveries are taken from the stream, so at most a window is
/// buffered or in flight. The window in messages adapts to the sizes seen:
/// the smaller of the count and the bytes over the average size (the first
/// grant assumes 64 KiB messages). With a window of 0, credit is manual
/// ([`add_credit`](Self::add_credit), [`drain`](Self::drain)).
///
/// The stream yields `Err` once if the link is detached with an error (the
/// peer's condition and description), then ends.
#[derive(Debug)]
pub struct Receiver {
    conn: Connection,
    link: LinkId,
    remote: Box<Attach>,
    rx: mpsc::UnboundedReceiver<RecvItem>,
    /// Where dropped deliveries' settlements gather for the driver.
    settles: Arc<SettleQueue>,
    credit: CreditWindow,
    /// Deliveries consumed and not yet reported to the driver.
    consumed: u32,
    auto_accept: bool,
    buffered: VecDeque<RecvItem>,
    done: bool,
    closing: bool,
    /// The connection (epoch) the counted `consumed` deliveries came on.
    consumed_epoch: u64,
    dedupe: Option<Dedupe>,
}

/// The last message ids yielded, for [`ReceiverOptions::dedupe`](crate::ReceiverOptions::dedupe).
#[derive(Debug)]
struct Dedupe {
    max: usize,
    order: VecDeque<crate::message::MessageId>,
    seen: std::collections::HashSet<crate::message::MessageId>,
}

impl Dedupe {
    /// Whether `id` was seen; records it if not.
    fn seen(&mut self, id: &crate::message::MessageId) -> bool {
        if self.seen.contains(id) {
            return true;
        }
        if self.order.len() == self.max {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.order.push_back(id.clone());
        self.seen.insert(id.clone());
        false
    }
}

impl Receiver {
    pub(crate) fn new(
        conn: Connection,
        link: LinkId,
        remote: Box<Attach>,
        rx: mpsc::UnboundedReceiver<RecvItem>,
        credit: CreditWindow,
        auto_accept: bool,
        dedupe: usize,
    ) -> Self {
        let consumed_epoch = conn.inner.shared.epoch.load(Ordering::Acquire);
        Receiver {
            consumed_epoch,
            dedupe: (dedupe > 0).then(|| Dedupe {
                max: dedupe,
                order: VecDeque::new(),
                seen: std::collections::HashSet::new(),
            }),
            settles: SettleQueue::new(link, conn.inner.tx.clone()),
            conn,
            link,
            remote,
            rx,
            credit,
            consumed: 0,
            auto_accept,
            buffered: VecDeque::new(),
            done: false,
            closing: false,
        }
    }

    /// The source address: as asked for, or as the peer assigned it to a
    /// dynamic node (after a reconnect, the node the peer assigned then:
    /// a dynamic node does not survive its link, so requesters must use
    /// the new address; it changes once the stream has been polled past
    /// the re-attach).
    pub fn address(&self) -> Option<&str> {
        self.remote
            .source
            .as_ref()
            .and_then(|s| s.address.as_deref())
    }

    /// The link name.
    pub fn name(&self) -> &str {
        &self.remote.name
    }

    /// The peer's attach (its source, limits and properties).
    pub fn remote_attach(&self) -> &Attach {
        &self.remote
    }

    /// The connection.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Grants `credit` more messages to the sender.
    pub fn add_credit(&self, credit: u32) -> Result<(), Error> {
        self.conn.send_command(Command::Flow {
            link: self.link,
            add: credit,
            drain: false,
            consumed: 0,
            epoch: 0,
        })
    }

    /// Asks the sender to use up the credit or give it back, and waits until
    /// it has. Deliveries that arrive meanwhile stay queued for the stream.
    ///
    /// Bounded by the connection's attach timeout (default 15 s): a peer
    /// that never answers the drain gives an error of kind
    /// [`ErrorKind::Timeout`].
    pub async fn drain(&mut self) -> Result<(), Error> {
        self.conn.send_command(Command::Flow {
            link: self.link,
            add: 0,
            drain: true,
            consumed: 0,
            epoch: 0,
        })?;
        let timeout = self.conn.defaults().attach_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let item = match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(item) => item,
                Err(_) => {
                    return Err(Error::new(
                        ErrorKind::Timeout,
                        format!("the sender did not finish draining within {timeout:?}"),
                    ))
                }
            };
            match item {
                Some(RecvItem::Drained) => return Ok(()),
                Some(RecvItem::Detached(e)) => {
                    self.buffered.push_back(RecvItem::Detached(e.clone()));
                    return Err(e);
                }
                Some(item) => self.buffered.push_back(item),
                None => return Err(self.conn.closed_error()),
            }
        }
    }

    /// Closes the link; the stream then ends.
    pub async fn close(&mut self) -> Result<(), Error> {
        self.closing = true;
        self.conn.detach_and_wait(self.link, true, None).await
    }

    /// Detaches the link without closing its terminus (a durable
    /// subscription stays).
    pub async fn detach(&mut self) -> Result<(), Error> {
        self.closing = true;
        self.conn.detach_and_wait(self.link, false, None).await
    }

    fn settle_handle(&self, id: DeliveryId, epoch: u64) -> SettleHandle {
        SettleHandle {
            queue: self.settles.clone(),
            id: id.id,
            epoch,
            auto_accept: self.auto_accept,
            settled: AtomicBool::new(false),
        }
    }

    fn on_item(&mut self, item: RecvItem) -> Option<Result<Delivery, Error>> {
        match item {
            RecvItem::Delivery {
                id,
                epoch,
                tag,
                settled,
                payload,
            } => {
                // Report what the application took, so that the session
                // window reopens past it; with a credit window, top credit
                // up in the same command once per half window.
                if epoch != self.consumed_epoch {
                    self.report_consumed(0);
                    self.consumed_epoch = epoch;
                }
                self.consumed += 1;
                let add = self.credit.consumed(payload.len());
                if add > 0 || self.consumed >= REPORT_EVERY {
                    self.report_consumed(add);
                }
                let current = self.conn.inner.shared.epoch.load(Ordering::Acquire);
                if !settled && epoch != current {
                    // Came on a connection lost since: it cannot be settled
                    // any more, and the peer redelivers it.
                    tracing::debug!("skipping a delivery of a lost connection");
                    return None;
                }
                let delivery = Delivery {
                    decoded: OnceLock::new(),
                    payload,
                    tag,
                    remote_settled: settled,
                    handle: (!settled).then(|| self.settle_handle(id, epoch)),
                };
                if let Some(d) = &mut self.dedupe {
                    let id = delivery
                        .message()
                        .ok()
                        .and_then(|m| m.properties.as_ref())
                        .and_then(|p| p.message_id.clone());
                    if id.is_some_and(|id| d.seen(&id)) {
                        tracing::debug!("skipping a duplicate message");
                        if let Some(h) = &delivery.handle {
                            h.settle_auto(AutoState::Accepted);
                        }
                        return None;
                    }
                }
                Some(Ok(delivery))
            }
            RecvItem::Drained => None,
            RecvItem::Restored => {
                let add = self.credit.restart();
                self.report_consumed(add);
                None
            }
            RecvItem::Reattached(attach) => {
                self.remote = attach;
                None
            }
            RecvItem::Detached(e) => {
                // Ends the stream: cleanly only if we closed the link; a
                // detach by the peer, even without an error, is an error.
                self.done = true;
                (!self.closing).then_some(Err(e))
            }
        }
    }
}

impl Receiver {
    /// Sends the count of consumed deliveries (the session window reopens
    /// past them), with `add` more credit.
    fn report_consumed(&mut self, add: u32) {
        if self.consumed == 0 && add == 0 {
            return;
        }
        let _ = self.conn.send_command(Command::Flow {
            link: self.link,
            add,
            drain: false,
            consumed: self.consumed,
            epoch: self.consumed_epoch,
        });
        self.consumed = 0;
    }
}

/// Dropping a receiver closes its link (unless it was closed or detached
/// already). Deliveries it holds that the stream has not yielded are
/// released first, and those still on their way are released by the
/// driver, so the peer can redeliver them. To keep a durable subscription,
/// call [`Receiver::detach`] first.
impl Drop for Receiver {
    fn drop(&mut self) {
        let mut unread: Vec<RecvItem> = self.buffered.drain(..).collect();
        while let Ok(item) = self.rx.try_recv() {
            unread.push(item);
        }
        self.report_consumed(0);
        let current = self.conn.inner.shared.epoch.load(Ordering::Acquire);
        let mut consumed = 0;
        for item in unread {
            if let RecvItem::Delivery {
                id, epoch, settled, ..
            } = item
            {
                if epoch != current {
                    continue; // the peer redelivers it elsewhere
                }
                consumed += 1;
                if !settled {
                    let _ = self.conn.send_command(Command::Settle {
                        delivery: id,
                        epoch,
                        state: DeliveryState::Released.into(),
                        reply: None,
                    });
                }
            }
        }
        let _ = self.conn.send_command(Command::Flow {
            link: self.link,
            add: 0,
            drain: false,
            consumed,
            epoch: current,
        });
        if !self.done && !self.closing {
            self.conn.detach_link(self.link, true, None);
        }
    }
}

impl Stream for Receiver {
    type Item = Result<Delivery, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(item) = self.buffered.pop_front() {
                if let Some(r) = self.on_item(item) {
                    return Poll::Ready(Some(r));
                }
                continue;
            }
            if self.done {
                return Poll::Ready(None);
            }
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(item)) => {
                    if let Some(r) = self.on_item(item) {
                        return Poll::Ready(Some(r));
                    }
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[derive(Debug)]
struct SettleHandle {
    /// The receiver's settlements (and its link and the driver's channel).
    queue: Arc<SettleQueue>,
    id: u32,
    epoch: u64,
    auto_accept: bool,
    settled: AtomicBool,
}

impl SettleHandle {
    /// Settles without a reply, in the receiver's next batch; nothing if
    /// settled already.
    fn settle_auto(&self, state: AutoState) {
        if !self.settled.swap(true, Ordering::AcqRel) {
            self.queue.push(self.epoch, self.id, state);
        }
    }

    /// Settles with `state`; the reply comes once the settlement is
    /// final (in rcv-settle-mode second: once the sender settled).
    fn settle(&self, state: DeliveryState, reply: Option<Reply<()>>) -> Result<(), Error> {
        if self.settled.swap(true, Ordering::AcqRel) {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "the delivery is already settled",
            ));
        }
        let delivery = DeliveryId {
            link: self.queue.link(),
            id: self.id,
        };
        self.queue
            .commands()
            .send(Command::Settle {
                delivery,
                epoch: self.epoch,
                state: state.into(),
                reply,
            })
            .map_err(|_| Error::new(ErrorKind::Closed, "the connection is closed"))
    }
}

impl Drop for SettleHandle {
    fn drop(&mut self) {
        self.settle_auto(if self.auto_accept {
            AutoState::Accepted
        } else {
            AutoState::Released
        });
    }
}

/// A received message and the means to settle it.
///
/// It owns its message and settles through `&self`, so it can be moved to
/// another task. **Dropping an unsettled delivery settles it**: accepted
/// if the receiver auto-accepts (the default, like Proton's auto_accept),
/// else released, so the message is redelivered rather than lost.
///
/// # Lazy decoding
///
/// A delivery holds the message as it was encoded on the wire
/// ([`payload`](Self::payload)) and decodes it only when first asked
/// ([`message`](Self::message), [`into_message`](Self::into_message)), once;
/// an application that forwards the bytes (a broker, a bridge) never decodes
/// message bodies at all.
///
/// Decoding can fail: the payload may be malformed, or may cost more memory
/// to decode than its [allocation budget](crate::types::Limits) allows
/// (16 times its length plus 64 KiB). Such a delivery is still yielded by
/// the [`Receiver`] stream (which goes on with the next one), and
/// [`message`](Self::message) returns an [`Error`] of kind
/// [`ErrorKind::Decode`] with the condition `amqp:decode-error`. Settle it
/// yourself (typically [`reject`](Self::reject) with that condition); if
/// you drop it unsettled after decoding failed, it is **rejected** with
/// `amqp:decode-error` whatever the receiver's auto-accept setting, since
/// redelivering it could not help. To decode with other limits, use
/// [`Message::decode_with_limits`] on the [`payload`](Self::payload).
#[derive(Debug)]
pub struct Delivery {
    /// The decoded message or the decode error, once asked for (boxed: a
    /// delivery moves several times on its way out of the stream, and an
    /// unboxed `Message` would be copied each time).
    decoded: OnceLock<Box<Result<Message, DecodeError>>>,
    payload: Bytes,
    tag: Bytes,
    remote_settled: bool,
    handle: Option<SettleHandle>,
}

impl Delivery {
    fn decoded(&self) -> &Result<Message, DecodeError> {
        self.decoded
            .get_or_init(|| Box::new(Message::decode(self.payload.clone())))
    }

    /// The message, decoded from the [`payload`](Self::payload) on the
    /// first call (later calls return the same message, or the same error).
    ///
    /// Fails with [`ErrorKind::Decode`] (condition `amqp:decode-error`) if
    /// the payload is malformed or over the allocation budget; see
    /// [Lazy decoding](Delivery#lazy-decoding) for what to do then.
    pub fn message(&self) -> Result<&Message, Error> {
        self.decoded().as_ref().map_err(|e| Error::from(e.clone()))
    }

    /// Takes the message (decoding it if [`message`](Self::message) has not);
    /// the delivery is settled as if dropped: if decoding failed, it is
    /// rejected with `amqp:decode-error`.
    pub fn into_message(mut self) -> Result<Message, Error> {
        self.decoded();
        match self.decoded.take().map(|b| *b) {
            Some(Ok(message)) => Ok(message),
            Some(Err(e)) => {
                // Keep the error for `drop`, which rejects the delivery.
                let _ = self.decoded.set(Box::new(Err(e.clone())));
                Err(e.into())
            }
            None => Err(Error::new(ErrorKind::Decode, "the message was not decoded")),
        }
    }

    /// The message as it was encoded on the wire. Forward it unchanged with
    /// [`Sender::send_encoded`](crate::Sender::send_encoded), without
    /// decoding it; once decoded, the message's data sections share these
    /// bytes rather than copying them.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// The delivery tag the sender chose.
    pub fn tag(&self) -> &Bytes {
        &self.tag
    }

    /// Whether the delivery is settled: sent presettled, or settled by us.
    pub fn is_settled(&self) -> bool {
        self.remote_settled
            || self
                .handle
                .as_ref()
                .is_some_and(|h| h.settled.load(Ordering::Acquire))
    }

    /// Settles with `state` and waits until the settlement is final: sent
    /// (rcv-settle-mode first), or answered by the sender's settlement
    /// (mode second). Fails if the link or connection is gone: the message
    /// was not settled, and the peer will redeliver it.
    async fn settle(&self, state: DeliveryState) -> Result<(), Error> {
        let Some(h) = &self.handle else {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "the delivery was sent presettled",
            ));
        };
        let (reply, rx) = oneshot::channel();
        h.settle(state, Some(reply))?;
        rx.await.unwrap_or_else(|_| {
            Err(Error::new(
                ErrorKind::Closed,
                "the connection closed before the settlement was sent",
            ))
        })
    }

    /// Accepts the message: it was processed.
    pub async fn accept(&self) -> Result<(), Error> {
        self.settle(DeliveryState::Accepted).await
    }

    /// Rejects the message as invalid, with a condition and description;
    /// the peer will not redeliver it.
    pub async fn reject(
        &self,
        condition: impl Into<Symbol>,
        description: impl Into<String>,
    ) -> Result<(), Error> {
        self.settle(DeliveryState::Rejected(Rejected {
            error: Some(AmqpError::new(condition, description)),
        }))
        .await
    }

    /// Releases the message unprocessed; the peer may redeliver it (to us or
    /// another receiver).
    pub async fn release(&self) -> Result<(), Error> {
        self.settle(DeliveryState::Released).await
    }

    /// Gives the message back unprocessed with changes: count a failed
    /// attempt (`delivery_failed`), don't redeliver it here
    /// (`undeliverable_here`), and merge `annotations` into its message
    /// annotations.
    pub async fn modify(
        &self,
        delivery_failed: bool,
        undeliverable_here: bool,
        annotations: Option<Map>,
    ) -> Result<(), Error> {
        self.settle(DeliveryState::Modified(Modified {
            delivery_failed: Some(delivery_failed),
            undeliverable_here: Some(undeliverable_here),
            message_annotations: annotations,
        }))
        .await
    }
}

/// An unsettled delivery whose message failed to decode is rejected with
/// `amqp:decode-error` when dropped; any other is settled by its handle
/// (accepted or released, see [`Delivery`]).
impl Drop for Delivery {
    fn drop(&mut self) {
        let (Some(h), Some(Err(e))) = (&self.handle, self.decoded.get().map(|b| &**b)) else {
            return;
        };
        if !h.settled.load(Ordering::Acquire) {
            let _ = h.settle(
                DeliveryState::Rejected(Rejected {
                    error: Some(AmqpError::new(
                        crate::frame::condition::DECODE_ERROR,
                        e.to_string(),
                    )),
                }),
                None,
            );
        }
    }
}
