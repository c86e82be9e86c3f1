//! Senders: `send(msg)` resolves to the outcome; `Sink<Message>` and
//! `tower::Service<Message>` for composition. Sends pipeline up to the link
//! credit; at most `max_in_flight` are unsettled at once.

use super::connection::Connection;
use super::driver::RecvItem;
use super::link_options::{DeliveryMode, SenderOptions};
use super::outcome::Outcome;
use super::window::{SendFuture, SinkTrack, Window};
use crate::error::Error;
use crate::frame::{AmqpError, Attach};
use crate::message::Message;
use crate::proto::{LinkId, Payload};
use crate::types::Symbol;
use bytes::Bytes;
use futures::Sink;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{ready, Context, Poll};
use tokio::sync::{mpsc, watch};

/// A link that sends messages.
///
/// Clones share the link and its in-flight bound. Dropping the last clone
/// does not detach the link; [`Sender::close`] does, and the connection's
/// close detaches it too.
#[derive(Debug)]
pub struct Sender {
    conn: Connection,
    link: LinkId,
    remote: Arc<Attach>,
    address: Option<String>,
    window: Arc<Window>,
    detach: Arc<DetachSignal>,
    credit: watch::Receiver<u32>,
    /// The outcomes of the sends made through this handle's `Sink`.
    sink: Arc<SinkTrack>,
    /// This handle holds an in-flight slot reserved by `poll_ready`.
    reserved: bool,
}

/// A slot reserved by `poll_ready` and never used is given back.
impl Drop for Sender {
    fn drop(&mut self) {
        if self.reserved {
            self.window.unreserve();
        }
    }
}

/// The link's detach as the driver reports it, shared by a sender's clones.
#[derive(Debug)]
struct DetachSignal {
    rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<RecvItem>>,
    error: OnceLock<Error>,
}

impl Clone for Sender {
    fn clone(&self) -> Self {
        Sender {
            conn: self.conn.clone(),
            link: self.link,
            remote: self.remote.clone(),
            address: self.address.clone(),
            window: self.window.clone(),
            detach: self.detach.clone(),
            credit: self.credit.clone(),
            sink: Arc::default(),
            reserved: false,
        }
    }
}

impl Sender {
    pub(crate) fn new(
        conn: Connection,
        link: LinkId,
        remote: Box<Attach>,
        options: SenderOptions,
        max_in_flight: usize,
        detach: mpsc::UnboundedReceiver<RecvItem>,
        credit: watch::Receiver<u32>,
    ) -> Self {
        let settled = options.mode == DeliveryMode::AtMostOnce;
        let window = Window::new(
            max_in_flight,
            link,
            settled,
            conn.inner.tx.clone(),
            conn.inner.shared.clone(),
        );
        Sender {
            conn,
            link,
            remote: Arc::from(remote),
            address: options.target.address.clone(),
            window,
            detach: Arc::new(DetachSignal {
                rx: tokio::sync::Mutex::new(detach),
                error: OnceLock::new(),
            }),
            credit,
            sink: Arc::default(),
            reserved: false,
        }
    }

    /// The target address, or `None` for an anonymous-relay sender.
    pub fn address(&self) -> Option<&str> {
        self.address.as_deref()
    }

    /// The link credit: how many more messages the peer lets us send now
    /// (0 until its first grant, and while the connection is being
    /// replaced). Sends beyond it are not refused: they queue until credit
    /// comes (bounded by the in-flight window).
    pub fn credit(&self) -> u32 {
        *self.credit.borrow()
    }

    /// Resolves once the link has credit (Proton's `on_sendable`); fails
    /// if the link or the connection has ended.
    pub async fn sendable(&self) -> Result<(), Error> {
        let mut rx = self.credit.clone();
        let ok = rx.wait_for(|c| *c > 0).await.is_ok();
        if ok {
            Ok(())
        } else {
            Err(self
                .detach
                .error
                .get()
                .cloned()
                .unwrap_or_else(|| self.conn.closed_error()))
        }
    }

    /// The link name.
    pub fn name(&self) -> &str {
        &self.remote.name
    }

    /// The peer's attach (its target, limits and properties).
    pub fn remote_attach(&self) -> &Attach {
        &self.remote
    }

    /// The connection.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    fn submit(&self, message: Payload) -> SendFuture {
        self.window.submit(message)
    }

    /// Sends an already-encoded message (for example
    /// [`Delivery::payload`](crate::Delivery::payload) of a received one) as
    /// it is, without decoding or re-encoding it; resolves to its outcome.
    /// The bytes must be a valid AMQP message encoding: they are not
    /// checked. Ordering and the in-flight window are as for [`send`](Self::send).
    pub fn send_encoded(
        &self,
        payload: Bytes,
    ) -> impl Future<Output = Result<Outcome, Error>> + Send + 'static {
        self.submit(Payload::Encoded(payload))
    }

    /// Sends a message; resolves to its outcome.
    ///
    /// The message is queued when `send` is called, so messages go out in
    /// call order and many `send` futures awaited together pipeline up to
    /// the link credit. At most `max_in_flight` messages are in the
    /// connection without an outcome; later ones wait, in order, in the
    /// sender's backlog (use the `Sink` or `Service` impls, whose
    /// `poll_ready` waits for a free slot, to bound memory). A message that
    /// can't be sent (link detached, connection closed) comes back inside
    /// the error ([`Error::into_message`]). Dropping the future does not
    /// withdraw the message.
    pub fn send(
        &self,
        message: impl Into<Message>,
    ) -> impl Future<Output = Result<Outcome, Error>> + Send + 'static {
        self.submit(self.window.payload(message.into()))
    }

    /// Closes the link (the peer's terminus is closed too).
    pub async fn close(&self) -> Result<(), Error> {
        self.conn.detach_and_wait(self.link, true, None).await
    }

    /// Detaches the link without closing its terminus (a durable
    /// subscription or queue stays).
    pub async fn detach(&self) -> Result<(), Error> {
        self.conn.detach_and_wait(self.link, false, None).await
    }

    /// Resolves when the link is detached, by the peer or by us, or its
    /// connection ends, with the reason (the peer's condition and
    /// description if it gave one). A broker uses it to forget a consumer
    /// that went away while it had nothing to send it. Every clone sees it.
    pub async fn detached(&self) -> Error {
        if let Some(e) = self.detach.error.get() {
            return e.clone();
        }
        let mut rx = self.detach.rx.lock().await;
        if let Some(e) = self.detach.error.get() {
            return e.clone();
        }
        let error = loop {
            match rx.recv().await {
                Some(RecvItem::Detached(e)) => break e,
                Some(_) => continue,
                None => break self.conn.closed_error(),
            }
        };
        self.detach.error.get_or_init(|| error).clone()
    }

    /// Closes the link with an error condition and description.
    pub fn close_with_error(&self, condition: impl Into<Symbol>, description: impl Into<String>) {
        let e = AmqpError::new(condition, description);
        self.conn.detach_link(self.link, true, Some(e));
    }

    /// Reserves an in-flight slot for the next `start_send`/`call`.
    fn poll_slot(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if !self.reserved {
            ready!(self.window.poll_reserve(cx));
            self.reserved = true;
        }
        Poll::Ready(Ok(()))
    }

    /// Sends in the reserved slot if there is one, else as `send` does.
    fn submit_ready(&mut self, message: Payload) -> SendFuture {
        if std::mem::take(&mut self.reserved) {
            self.window.submit_reserved(message)
        } else {
            self.submit(message)
        }
    }
}

/// Sends as a `Sink`: `poll_ready` reserves an in-flight slot, `poll_flush`
/// waits until every message sent through the sink has its outcome and
/// fails if one was not accepted, and `poll_close` then closes the link.
impl Sink<Message> for Sender {
    type Error = Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if let Some(e) = self.sink.take_error() {
            return Poll::Ready(Err(e));
        }
        self.poll_slot(cx)
    }

    fn start_send(mut self: Pin<&mut Self>, message: Message) -> Result<(), Error> {
        let payload = self.window.payload(message);
        let reserved = std::mem::take(&mut self.reserved);
        self.window.submit_counted(payload, reserved, &self.sink);
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.sink.poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        ready!(self.as_mut().poll_flush(cx))?;
        self.conn.detach_link(self.link, true, None);
        Poll::Ready(Ok(()))
    }
}

/// Sends as a `tower::Service`: `poll_ready` reserves an in-flight slot
/// (as `tower::limit::ConcurrencyLimit` takes a permit) that `call` uses;
/// the response is the [`Outcome`].
impl tower::Service<Message> for Sender {
    type Response = Outcome;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Outcome, Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.poll_slot(cx)
    }

    fn call(&mut self, message: Message) -> Self::Future {
        let payload = self.window.payload(message);
        Box::pin(self.submit_ready(payload))
    }
}
