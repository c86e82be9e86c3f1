//! The connection handle: cheap to clone; the connection closes when the
//! last handle (connection, session, sender or receiver) is dropped.

use super::driver::{Attached, Command, Driver, Incoming, Reconnector};
use super::link_options::{ReceiverOptions, SenderOptions};
use super::receiver::Receiver;
use super::reconnect::{ConnectionEvents, EventHub, Transport};
use super::sender::Sender;
use super::session::Session;
use super::shared::{Shared, Statistics};
use crate::error::{Error, ErrorKind};
use crate::frame::{AmqpError, Attach, Open, Role, Source, Target};
use crate::proto::{self, LinkId, SessionId};
use crate::transport::BoxIo;
use crate::types::Symbol;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Per-connection defaults that handles apply.
#[derive(Clone, Debug)]
pub(crate) struct Defaults {
    pub(crate) attach_timeout: Duration,
    pub(crate) credit_window: u32,
    pub(crate) credit_window_bytes: u64,
    pub(crate) max_in_flight: usize,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) tx: mpsc::UnboundedSender<Command>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) defaults: Defaults,
    pub(crate) remote: Box<Open>,
    pub(crate) link_counter: AtomicU64,
}

/// The last user handle is gone: the driver closes the connection, even
/// with sends still waiting for credit or outcomes (their futures are gone
/// too).
impl Drop for Inner {
    fn drop(&mut self) {
        // Links the peer opens from now on are refused.
        self.shared.incoming.close();
        let _ = self.tx.send(Command::HandlesGone);
    }
}

/// An open AMQP connection.
///
/// Clone it freely: every clone, and every session, sender and receiver
/// made from it, keeps the connection open; when the last one is dropped
/// the connection is closed cleanly in the background.
#[derive(Clone, Debug)]
pub struct Connection {
    pub(crate) inner: Arc<Inner>,
}

/// A connection whose driver runs, before the peer's open (server side:
/// before we accept).
pub(crate) struct Started {
    pub(crate) tx: mpsc::UnboundedSender<Command>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) open: oneshot::Receiver<Result<Box<Open>, Error>>,
}

/// Spawns the driver of a connection over `io`.
pub(crate) fn start(
    side: proto::Side,
    config: proto::Config,
    io: BoxIo,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
) -> Started {
    let mut engine = proto::Connection::new(side, config);
    if side == proto::Side::Client {
        engine.open();
    }
    let shared = Arc::new(Shared::new(engine.config().container_id.clone()));
    let (tx, rx) = mpsc::unbounded_channel();
    let (open_tx, open_rx) = oneshot::channel();
    let driver = Driver::new(engine, io, rx, shared.clone(), Some(open_tx));
    // The permit lives in the driver's future (one copy of the driver in
    // the task, not two).
    tokio::spawn(driver.run(permit));
    Started {
        tx,
        shared,
        open: open_rx,
    }
}

/// Drives a client connection whose open exchange is done (a connector's
/// [`Transport`]); with `reconnect`, a lost transport is replaced.
pub(crate) fn start_opened(
    t: Transport,
    reconnect: Option<Reconnector>,
    events: Arc<EventHub>,
    defaults: Defaults,
) -> Connection {
    let Transport {
        engine,
        io,
        remote,
        events: pending,
        ..
    } = t;
    let shared = Arc::new(Shared::with_events(
        engine.config().container_id.clone(),
        events,
    ));
    let (tx, rx) = mpsc::unbounded_channel();
    let driver =
        Driver::new(engine, io, rx, shared.clone(), None).with_reconnect(reconnect, pending);
    tokio::spawn(driver.run(None));
    Connection {
        inner: Arc::new(Inner {
            tx,
            shared,
            defaults,
            remote,
            link_counter: AtomicU64::new(0),
        }),
    }
}

impl Started {
    /// Waits for the peer's open (the engine's open timeout bounds it).
    pub(crate) async fn opened(&mut self) -> Result<Box<Open>, Error> {
        match (&mut self.open).await {
            Ok(r) => r,
            Err(_) => Err(self.shared.error().unwrap_or_else(|| {
                Error::new(ErrorKind::Closed, "the connection closed during open")
            })),
        }
    }

    pub(crate) fn into_connection(self, remote: Box<Open>, defaults: Defaults) -> Connection {
        Connection {
            inner: Arc::new(Inner {
                tx: self.tx,
                shared: self.shared,
                defaults,
                remote,
                link_counter: AtomicU64::new(0),
            }),
        }
    }
}

/// Something the peer opened on a connection: a session or a link.
#[derive(Debug)]
#[non_exhaustive]
pub enum IncomingEndpoint {
    /// The peer began a session (it is accepted automatically).
    Session(Session),
    /// The peer attached a link: accept it as a sender or receiver, or
    /// refuse it.
    Link(crate::IncomingLink),
}

impl Connection {
    pub(crate) fn send_command(&self, cmd: Command) -> Result<(), Error> {
        self.inner.tx.send(cmd).map_err(|_| self.closed_error())
    }

    pub(crate) fn closed_error(&self) -> Error {
        self.inner
            .shared
            .error()
            .unwrap_or_else(|| Error::new(ErrorKind::Closed, "the connection is closed"))
    }

    pub(crate) fn defaults(&self) -> &Defaults {
        &self.inner.defaults
    }

    /// Our container id.
    pub fn container_id(&self) -> &str {
        &self.inner.shared.container_id
    }

    /// The peer's container id.
    pub fn remote_container_id(&self) -> &str {
        &self.inner.remote.container_id
    }

    /// The peer's open: its hostname, limits, capabilities and properties.
    pub fn remote_open(&self) -> &Open {
        &self.inner.remote
    }

    /// Counters of this connection's traffic.
    pub fn statistics(&self) -> Statistics {
        self.inner.shared.statistics()
    }

    /// The error that ended the connection, if it has ended.
    pub fn error(&self) -> Option<Error> {
        self.inner.shared.error()
    }

    /// What happens to the connection's transport: connect attempts that
    /// failed, disconnected (with the cause), reconnecting (attempt, delay,
    /// URL), reconnected, gave up. It starts with the last events (up to
    /// 32, including the first connect's failed attempts) and ends when
    /// the connection has ended for good. Reported whether reconnect is on
    /// or off (off: a loss is `Disconnected`, then the end).
    pub fn events(&self) -> ConnectionEvents {
        self.inner.shared.events.subscribe()
    }

    /// Resolves when the connection has ended for good: `Ok` after a close
    /// we made (or the peer's clean close), else the final error (the
    /// cause of a loss with reconnect off, or the last attempt's error
    /// once the reconnect policy gave up). Every pending operation has
    /// failed with that error by then.
    pub async fn closed(&self) -> Result<(), Error> {
        self.inner.shared.ended().await
    }

    /// Begins a new session.
    pub async fn open_session(&self) -> Result<Session, Error> {
        let (reply, rx) = oneshot::channel();
        self.send_command(Command::Begin { reply })?;
        let id = self.await_reply(rx, "begin").await?;
        Ok(Session::new(self.clone(), id))
    }

    /// Opens a sender to `address` on the connection's default session.
    pub async fn open_sender(&self, address: impl Into<String>) -> Result<Sender, Error> {
        self.open_sender_with(SenderOptions::new(address)).await
    }

    /// Opens a sender with options on the default session.
    pub async fn open_sender_with(&self, options: SenderOptions) -> Result<Sender, Error> {
        self.attach_sender(None, options).await
    }

    /// Opens an anonymous-relay sender: each message goes to its `to`.
    pub async fn open_anonymous_sender(&self) -> Result<Sender, Error> {
        self.attach_sender(None, SenderOptions::anonymous()).await
    }

    /// Opens a receiver from `address` on the default session.
    pub async fn open_receiver(&self, address: impl Into<String>) -> Result<Receiver, Error> {
        self.open_receiver_with(ReceiverOptions::new(address)).await
    }

    /// Opens a receiver with options on the default session.
    pub async fn open_receiver_with(&self, options: ReceiverOptions) -> Result<Receiver, Error> {
        self.attach_receiver(None, options).await
    }

    /// Opens a receiver from a dynamic node the peer creates (a reply
    /// queue); read its address with [`Receiver::address`].
    pub async fn open_dynamic_receiver(&self) -> Result<Receiver, Error> {
        self.attach_receiver(None, ReceiverOptions::dynamic()).await
    }

    /// The next session or link the peer opens, or `None` once the
    /// connection is closed. Until something reads them, links the peer
    /// opens wait unanswered.
    pub async fn next_incoming(&self) -> Option<IncomingEndpoint> {
        let item = self.inner.shared.incoming.next().await?;
        Some(match item {
            Incoming::Session(id) => IncomingEndpoint::Session(Session::new(self.clone(), id)),
            Incoming::Link { link, attach } => {
                IncomingEndpoint::Link(crate::IncomingLink::new(self.clone(), link, attach))
            }
        })
    }

    /// Closes the connection and waits for the peer's close (at most the
    /// close timeout).
    pub async fn close(&self) -> Result<(), Error> {
        self.close_inner(None).await
    }

    /// Closes the connection with an error condition and description.
    pub async fn close_with_error(
        &self,
        condition: impl Into<Symbol>,
        description: impl Into<String>,
    ) -> Result<(), Error> {
        self.close_inner(Some(AmqpError::new(condition, description)))
            .await
    }

    async fn close_inner(&self, error: Option<AmqpError>) -> Result<(), Error> {
        let (reply, rx) = oneshot::channel();
        if self
            .inner
            .tx
            .send(Command::Close {
                error: error.map(Box::new),
                reply: Some(reply),
            })
            .is_err()
        {
            return Ok(()); // already closed
        }
        // The engine's close timeout bounds the wait.
        rx.await.unwrap_or(Ok(()))
    }

    /// Waits for the driver's reply. The engine times attaches out itself
    /// (and closes a link that is answered late); a begin is bounded here.
    pub(crate) async fn await_reply<T>(
        &self,
        rx: oneshot::Receiver<Result<T, Error>>,
        what: &str,
    ) -> Result<T, Error> {
        if what != "begin" {
            return rx.await.unwrap_or_else(|_| Err(self.closed_error()));
        }
        let timeout = self.inner.defaults.attach_timeout;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(self.closed_error()),
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                format!("the peer did not answer {what} within {timeout:?}"),
            )),
        }
    }

    fn link_name(&self, role: &str, address: Option<&str>) -> String {
        let n = self.inner.link_counter.fetch_add(1, Ordering::Relaxed);
        format!(
            "{}-{}-{}-{}",
            self.container_id(),
            role,
            address.unwrap_or("anonymous"),
            n
        )
    }

    pub(crate) async fn attach_sender(
        &self,
        session: Option<SessionId>,
        options: SenderOptions,
    ) -> Result<Sender, Error> {
        let name = options
            .name
            .clone()
            .unwrap_or_else(|| self.link_name("sender", options.target.address.as_deref()));
        let attach = Attach {
            name,
            role: Role::Sender,
            snd_settle_mode: options.snd_settle_mode(),
            source: Some(Source::default()),
            target: Some(options.build_target().into()),
            properties: options.properties.clone(),
            ..Default::default()
        };
        // The channel only reports the link's detach (a sender receives nothing).
        let (tx, rx) = mpsc::unbounded_channel();
        let (credit_tx, credit_rx) = tokio::sync::watch::channel(0);
        let Attached { link, remote, .. } = self
            .attach(session, attach, Some(tx), 0, Some(credit_tx))
            .await?;
        let max = options
            .max_in_flight
            .unwrap_or(self.defaults().max_in_flight);
        Ok(Sender::new(
            self.clone(),
            link,
            remote,
            options,
            max,
            rx,
            credit_rx,
        ))
    }

    pub(crate) async fn attach_receiver(
        &self,
        session: Option<SessionId>,
        options: ReceiverOptions,
    ) -> Result<Receiver, Error> {
        let name = options
            .name
            .clone()
            .unwrap_or_else(|| self.link_name("receiver", options.source.address.as_deref()));
        let attach = Attach {
            name,
            role: Role::Receiver,
            snd_settle_mode: match options.mode {
                super::link_options::DeliveryMode::AtLeastOnce => {
                    crate::frame::SndSettleMode::Mixed
                }
                super::link_options::DeliveryMode::AtMostOnce => {
                    crate::frame::SndSettleMode::Settled
                }
            },
            rcv_settle_mode: options.rcv_settle_mode,
            source: Some(options.build_source()),
            target: Some(Target::default().into()),
            properties: options.properties.clone(),
            ..Default::default()
        };
        let mut window = options.credit(self.defaults());
        let (tx, rx) = mpsc::unbounded_channel();
        let Attached { link, remote, .. } = self
            .attach(session, attach, Some(tx), window.initial(), None)
            .await?;
        Ok(Receiver::new(
            self.clone(),
            link,
            remote,
            rx,
            window,
            options.auto_accept,
            options.dedupe,
        ))
    }

    async fn attach(
        &self,
        session: Option<SessionId>,
        attach: Attach,
        sink: Option<mpsc::UnboundedSender<super::driver::RecvItem>>,
        credit: u32,
        credit_watch: Option<tokio::sync::watch::Sender<u32>>,
    ) -> Result<Attached, Error> {
        let (reply, rx) = oneshot::channel();
        self.send_command(Command::Attach {
            session,
            attach: Box::new(attach),
            sink,
            credit,
            credit_watch,
            reply,
        })?;
        self.await_reply(rx, "attach").await
    }

    pub(crate) fn detach_link(&self, link: LinkId, closed: bool, error: Option<AmqpError>) {
        let _ = self.inner.tx.send(Command::Detach {
            link,
            closed,
            error: error.map(Box::new),
            reply: None,
        });
    }

    pub(crate) async fn detach_and_wait(
        &self,
        link: LinkId,
        closed: bool,
        error: Option<AmqpError>,
    ) -> Result<(), Error> {
        let (reply, rx) = oneshot::channel();
        if self
            .inner
            .tx
            .send(Command::Detach {
                link,
                closed,
                error: error.map(Box::new),
                reply: Some(reply),
            })
            .is_err()
        {
            return Ok(());
        }
        // The engine's attach timeout bounds the wait.
        rx.await.unwrap_or(Ok(()))
    }
}
