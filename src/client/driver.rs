//! The driver: one tokio task per connection that owns the engine and the
//! byte stream. Handles talk to it with [`Command`]s over a channel; it
//! answers through oneshots and per-receiver channels.
//!
//! Each turn it reads what the socket has, applies every queued command,
//! and writes everything the engine produced in one write, so that many
//! sends share a syscall.

use super::outcome::Outcome;
use super::shared::Shared;
use super::window::Slot;
use crate::error::{Error, ErrorKind};
use crate::frame::{AmqpError, Attach, DeliveryState, Open, Role};
use crate::proto::{self, DeliveryId, Event, LinkId, Payload, SendId, SessionId};
use crate::transport::BoxIo;
use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

pub(crate) type Reply<T> = oneshot::Sender<Result<T, Error>>;

/// What a receiver's channel carries.
#[derive(Debug)]
pub(crate) enum RecvItem {
    Delivery {
        id: DeliveryId,
        tag: Bytes,
        settled: bool,
        payload: Bytes,
    },
    Drained,
    Detached(Error),
}

/// The peer's answer to an attach.
#[derive(Debug)]
pub(crate) struct Attached {
    pub(crate) link: LinkId,
    pub(crate) remote: Box<Attach>,
}

/// Something the peer opened.
#[derive(Debug)]
pub(crate) enum Incoming {
    Session(SessionId),
    Link { link: LinkId, attach: Box<Attach> },
}

/// A request from a handle.
// `Send` carries its message by value: boxing it would cost an allocation
// per send.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Command {
    Begin {
        reply: Reply<SessionId>,
    },
    End {
        session: SessionId,
        error: Option<AmqpError>,
    },
    Attach {
        session: Option<SessionId>,
        attach: Box<Attach>,
        sink: Option<mpsc::UnboundedSender<RecvItem>>,
        credit: u32,
        reply: Reply<Attached>,
    },
    AcceptLink {
        link: LinkId,
        attach: Box<Attach>,
        sink: Option<mpsc::UnboundedSender<RecvItem>>,
        credit: u32,
    },
    RefuseLink {
        link: LinkId,
        error: AmqpError,
    },
    Send {
        link: LinkId,
        message: Payload,
        settled: bool,
        reply: Option<Reply<Outcome>>,
        permit: Option<Slot>,
    },
    Flow {
        link: LinkId,
        add: u32,
        drain: bool,
    },
    Settle {
        delivery: DeliveryId,
        state: Option<DeliveryState>,
    },
    Detach {
        link: LinkId,
        closed: bool,
        error: Option<AmqpError>,
        reply: Option<Reply<()>>,
    },
    Open,
    Close {
        error: Option<AmqpError>,
        reply: Option<Reply<()>>,
    },
}

struct PendingSend {
    link: LinkId,
    reply: Option<Reply<Outcome>>,
    _permit: Option<Slot>,
}

pub(crate) struct Driver {
    engine: proto::Connection,
    io: Option<BoxIo>,
    commands: mpsc::UnboundedReceiver<Command>,
    shared: Arc<Shared>,
    open_waiter: Option<Reply<Box<Open>>>,
    pending_open: Option<Box<Open>>,
    incoming: mpsc::UnboundedSender<Incoming>,
    default_session: Option<SessionId>,
    begins: HashMap<SessionId, Reply<SessionId>>,
    attaches: HashMap<LinkId, (SessionId, Reply<Attached>)>,
    refused: HashMap<LinkId, (SessionId, Reply<Attached>)>,
    detaches: HashMap<LinkId, Reply<()>>,
    closes: Vec<Reply<()>>,
    sends: HashMap<SendId, PendingSend>,
    receivers: HashMap<LinkId, mpsc::UnboundedSender<RecvItem>>,
    closing_since: Option<Instant>,
}

impl Driver {
    pub(crate) fn new(
        engine: proto::Connection,
        io: BoxIo,
        commands: mpsc::UnboundedReceiver<Command>,
        shared: Arc<Shared>,
        open_waiter: Reply<Box<Open>>,
        incoming: mpsc::UnboundedSender<Incoming>,
    ) -> Self {
        Driver {
            engine,
            io: Some(io),
            commands,
            shared,
            open_waiter: Some(open_waiter),
            pending_open: None,
            incoming,
            default_session: None,
            begins: HashMap::new(),
            attaches: HashMap::new(),
            refused: HashMap::new(),
            detaches: HashMap::new(),
            closes: Vec::new(),
            sends: HashMap::new(),
            receivers: HashMap::new(),
            closing_since: None,
        }
    }

    /// Runs the connection until it is closed and every byte is written.
    pub(crate) async fn run(mut self) {
        let span = tracing::debug_span!("connection", id = %self.shared.container_id);
        let _enter = span.enter();
        let result = self.run_inner().await;
        let error = match result {
            Ok(()) => self
                .shared
                .error()
                .unwrap_or_else(|| Error::new(ErrorKind::Closed, "the connection is closed")),
            Err(e) => e,
        };
        tracing::debug!(%error, "connection ended");
        self.fail_all(error);
    }

    async fn run_inner(&mut self) -> Result<(), Error> {
        let io = self.io.take().expect("run once");
        let (mut rd, mut wr) = tokio::io::split(io);
        let mut wbuf = BytesMut::new();
        let mut commands_open = true;
        let close_timeout = self.shared.close_timeout;
        loop {
            while let Some(e) = self.engine.poll_event() {
                self.on_event(e);
            }
            if let Some(open) = self.pending_open.take() {
                if let Some(w) = self.open_waiter.take() {
                    let _ = w.send(Ok(open));
                }
            }
            if wbuf.is_empty() {
                if let Some(out) = self.engine.take_output() {
                    wbuf = out;
                }
            }
            // Producing output can raise events (a send refused locally for
            // the peer's max-message-size): handle them before waiting.
            if let Some(e) = self.engine.poll_event() {
                self.on_event(e);
                continue;
            }
            if self.engine.is_closed() && wbuf.is_empty() {
                let _ = wr.shutdown().await;
                return Ok(());
            }
            let timeout = self.engine.poll_timeout();
            let closing_deadline = self.closing_since.map(|t| t + close_timeout);
            let deadline = match (timeout, closing_deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            let writing = !wbuf.is_empty();
            tokio::select! {
                biased;
                r = wr.write_buf(&mut wbuf), if writing => {
                    let n = r.map_err(io_error)?;
                    if n == 0 {
                        return Err(Error::new(ErrorKind::Io, "the peer stopped reading"));
                    }
                    self.shared.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
                    if wbuf.is_empty() {
                        self.engine.on_transmit(Instant::now());
                    }
                }
                r = rd.read_buf(self.engine.input_buffer()) => {
                    let n = r.map_err(io_error)?;
                    if n == 0 {
                        return if self.engine.is_closed() {
                            Ok(())
                        } else {
                            Err(Error::new(ErrorKind::Io, "the peer closed the connection without an AMQP close"))
                        };
                    }
                    self.shared.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
                    self.engine.handle_input(Instant::now());
                }
                cmd = self.commands.recv(), if commands_open => {
                    match cmd {
                        Some(cmd) => {
                            self.on_command(cmd);
                            // Take every command already queued: one write for all.
                            for _ in 0..1024 {
                                match self.commands.try_recv() {
                                    Ok(cmd) => self.on_command(cmd),
                                    Err(_) => break,
                                }
                            }
                        }
                        None => {
                            // Every handle is gone: close.
                            commands_open = false;
                            self.begin_close(None);
                        }
                    }
                }
                _ = sleep => {
                    let now = Instant::now();
                    if closing_deadline.is_some_and(|d| now >= d) {
                        return Err(Error::new(ErrorKind::Timeout, "the peer did not answer close"));
                    }
                    self.engine.handle_timeout(now);
                }
            }
        }
    }

    fn begin_close(&mut self, error: Option<AmqpError>) {
        self.engine.close(error);
        self.closing_since.get_or_insert_with(Instant::now);
    }

    fn session_for(&mut self, session: Option<SessionId>) -> Result<SessionId, Error> {
        if let Some(s) = session {
            return Ok(s);
        }
        if let Some(s) = self.default_session {
            return Ok(s);
        }
        let s = self.engine.begin().map_err(Error::from_amqp_local)?;
        self.default_session = Some(s);
        Ok(s)
    }

    fn on_command(&mut self, cmd: Command) {
        if let Some(e) = self.shared.error() {
            reject_command(cmd, e);
            return;
        }
        match cmd {
            Command::Open => self.engine.open(),
            Command::Begin { reply } => match self.engine.begin() {
                Ok(s) => {
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
                self.engine.end(session, error)
            }
            Command::Attach {
                session,
                attach,
                sink,
                credit,
                reply,
            } => {
                let result = self.session_for(session).and_then(|s| {
                    self.engine
                        .attach(s, *attach)
                        .map(|l| (s, l))
                        .map_err(Error::from_amqp_local)
                });
                match result {
                    Ok((s, link)) => {
                        if let Some(sink) = sink {
                            self.receivers.insert(link, sink);
                            if credit > 0 {
                                self.engine.flow(link, credit, false);
                            }
                        }
                        self.attaches.insert(link, (s, reply));
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
            } => {
                self.engine.accept_link(link, *attach);
                if let Some(sink) = sink {
                    self.receivers.insert(link, sink);
                    if credit > 0 {
                        self.engine.flow(link, credit, false);
                    }
                }
            }
            Command::RefuseLink { link, error } => self.engine.refuse_link(link, error),
            Command::Send {
                link,
                message,
                settled,
                reply,
                permit,
            } => match self.engine.send(link, message, settled) {
                Ok(id) => {
                    self.shared.messages_out.fetch_add(1, Ordering::Relaxed);
                    self.sends.insert(
                        id,
                        PendingSend {
                            link,
                            reply,
                            _permit: permit,
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
            Command::Flow { link, add, drain } => {
                let credit = self.engine.credit(link).saturating_add(add);
                self.engine.flow(link, credit, drain);
            }
            Command::Settle { delivery, state } => self.engine.settle(delivery, state, true),
            Command::Detach {
                link,
                closed,
                error,
                reply,
            } => {
                self.engine.detach(link, closed, error);
                if let Some(reply) = reply {
                    self.detaches.insert(link, reply);
                }
            }
            Command::Close { error, reply } => {
                self.begin_close(error);
                if let Some(reply) = reply {
                    self.closes.push(reply);
                }
            }
        }
    }

    fn on_event(&mut self, e: Event) {
        match e {
            Event::Opened(open) => {
                // Answered after the whole batch: a refusal is open + close.
                self.pending_open = Some(open);
            }
            Event::Closed { error, remote } => {
                let err = match (&error, remote) {
                    (Some(e), true) => Error::from_amqp(ErrorKind::ConnectionClosed, e.clone()),
                    (Some(e), false)
                        if e.condition == crate::frame::condition::UNAUTHORIZED_ACCESS
                            && !self.engine.is_remote_open() =>
                    {
                        Error::from_amqp(ErrorKind::Authentication, e.clone())
                    }
                    (Some(e), false) if e.condition == crate::frame::condition::FRAMING_ERROR => {
                        Error::from_amqp(ErrorKind::Framing, e.clone())
                    }
                    (Some(e), false) if e.condition == crate::frame::condition::DECODE_ERROR => {
                        Error::from_amqp(ErrorKind::Decode, e.clone())
                    }
                    (Some(e), false) => Error::from_amqp(ErrorKind::Protocol, e.clone()),
                    (None, _) => {
                        Error::new(ErrorKind::ConnectionClosed, "the connection is closed")
                    }
                };
                for c in self.closes.drain(..) {
                    let _ = c.send(if remote && error.is_some() {
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
                    let _ = self.incoming.send(Incoming::Session(session));
                }
            }
            Event::SessionEnded { session, error } => {
                if self.default_session == Some(session) {
                    self.default_session = None;
                }
                if let Some(r) = self.begins.remove(&session) {
                    let e = match error {
                        Some(e) => Error::from_amqp(ErrorKind::SessionEnded, e),
                        None => Error::new(ErrorKind::SessionEnded, "the session ended"),
                    };
                    let _ = r.send(Err(e));
                }
            }
            Event::LinkAttached { link, attach } => {
                let Some((session, reply)) = self.attaches.remove(&link) else {
                    return;
                };
                // A refusal is an attach without the terminus, then a detach
                // carrying the error: wait for that.
                let refused = match attach.role {
                    Role::Sender => attach.source.is_none(),
                    Role::Receiver => attach.target.is_none(),
                };
                if refused {
                    self.refused.insert(link, (session, reply));
                } else {
                    let _ = reply.send(Ok(Attached {
                        link,
                        remote: attach,
                    }));
                }
            }
            Event::IncomingLink { link, attach, .. } => {
                if self.incoming.send(Incoming::Link { link, attach }).is_err() {
                    self.engine.refuse_link(
                        link,
                        AmqpError::new(
                            crate::frame::condition::NOT_ALLOWED,
                            "links are not accepted here",
                        ),
                    );
                }
            }
            Event::LinkDetached {
                link,
                error,
                unsent,
                ..
            } => {
                let err = match error {
                    Some(e) => Error::from_amqp(ErrorKind::LinkDetached, e),
                    None => Error::new(ErrorKind::LinkDetached, "the link was detached"),
                };
                if let Some((_, r)) = self
                    .attaches
                    .remove(&link)
                    .or_else(|| self.refused.remove(&link))
                {
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
                if let Some(tx) = self.receivers.remove(&link) {
                    let _ = tx.send(RecvItem::Detached(err));
                }
                if let Some(r) = self.detaches.remove(&link) {
                    let _ = r.send(Ok(()));
                }
            }
            Event::Credit { .. } => {}
            Event::Sent { send, .. } => {
                if let Some(PendingSend { reply: Some(r), .. }) = self.sends.remove(&send) {
                    let _ = r.send(Ok(Outcome::Presettled));
                } else {
                    self.sends.remove(&send);
                }
            }
            Event::Outcome {
                send,
                state,
                settled,
                ..
            } => {
                let terminal = state.as_ref().is_some_and(DeliveryState::is_terminal);
                if !(settled || terminal) {
                    return;
                }
                if let Some(p) = self.sends.remove(&send) {
                    if let Some(r) = p.reply {
                        let _ = r.send(Ok(Outcome::from_state(state)));
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
                        self.engine
                            .settle(delivery, Some(DeliveryState::Released), true);
                    }
                }
            }
            Event::RemoteSettled { .. } => {}
            Event::Drained { link } => {
                if let Some(tx) = self.receivers.get(&link) {
                    let _ = tx.send(RecvItem::Drained);
                }
            }
        }
    }

    /// Fails every pending operation with `error`.
    fn fail_all(&mut self, error: Error) {
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
        for (_, (_, r)) in self.attaches.drain().chain(self.refused.drain()) {
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
        for (_, tx) in self.receivers.drain() {
            let _ = tx.send(RecvItem::Detached(error.clone()));
        }
        while let Ok(cmd) = self.commands.try_recv() {
            reject_command(cmd, error.clone());
        }
        self.commands.close();
    }
}

fn reject_command(cmd: Command, e: Error) {
    match cmd {
        Command::Begin { reply } => {
            let _ = reply.send(Err(e));
        }
        Command::Attach { reply, .. } => {
            let _ = reply.send(Err(e));
        }
        Command::Send {
            reply: Some(reply),
            message,
            ..
        } => {
            let _ = reply.send(Err(e.with_message(message.into_message())));
        }
        Command::Detach { reply: Some(r), .. } | Command::Close { reply: Some(r), .. } => {
            let _ = r.send(Ok(()));
        }
        _ => {}
    }
}

fn io_error(e: std::io::Error) -> Error {
    Error::from(e)
}
