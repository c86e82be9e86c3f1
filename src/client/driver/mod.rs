//! The driver: one tokio task per connection that owns the engine and the
//! byte stream. Handles talk to it with [`Command`]s over a channel; it
//! answers requests through oneshots, sends through their outcome slots in
//! the sender's window (`client/window.rs`), and receivers through their
//! channels; receivers' auto-settlements come in batches
//! (`client/settlements.rs`).
//!
//! It is a thin loop: read and hand the bytes to the engine, apply
//! commands, write everything the engine produced in one write (many sends
//! share a syscall), and sleep until the engine's next deadline. Every
//! protocol decision and timer is the engine's; the driver only turns
//! engine events into replies.
//!
//! Backpressure: above the engine's output high-water mark
//! (`proto::Config::output_high_water`, 1 MiB) of unwritten output the driver
//! stops reading from the socket and taking commands until the peer reads;
//! a presettled send completes only once its bytes are handed to the
//! socket. The select is unbiased, so a peer flooding frames cannot starve
//! commands or timers.

use super::outcome::Outcome;
use super::reconnect::ConnectionEvent;
use super::settlements::SettleQueue;
use super::shared::Shared;
use super::window::{Completion, Window};
use crate::error::{Error, ErrorKind};
use crate::frame::{condition, AmqpError, Attach, DeliveryState, Open, RcvSettleMode};
use crate::proto::{self, DeliveryId, Event, IdMap, LinkId, Payload, SendId, SessionId};
use crate::transport::{read, BoxIo};
use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot, watch};

mod commands;
mod events;
mod restore;

pub(crate) use restore::Reconnector;

/// Links the peer opened that the application has not taken yet; more are
/// refused with `amqp:resource-limit-exceeded`.
pub(crate) const MAX_PENDING_INCOMING: usize = 256;

pub(crate) type Reply<T> = oneshot::Sender<Result<T, Error>>;

/// What a receiver's channel carries.
#[derive(Debug)]
pub(crate) enum RecvItem {
    Delivery {
        id: DeliveryId,
        /// The connection (0 the first, 1 after the first reconnect, ...)
        /// it came on.
        epoch: u64,
        tag: Bytes,
        settled: bool,
        payload: Bytes,
    },
    Drained,
    /// The link was attached again (after a reconnect or a forced detach)
    /// with no credit: the receiver grants its window afresh.
    Restored,
    /// The peer's answer to an attach made again: its new attach.
    Reattached(Box<Attach>),
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
    // Errors are boxed: every slot of the command channel is as big as
    // the biggest command.
    End {
        session: SessionId,
        error: Option<Box<AmqpError>>,
    },
    Attach {
        session: Option<SessionId>,
        attach: Box<Attach>,
        sink: Option<mpsc::UnboundedSender<RecvItem>>,
        credit: u32,
        /// A sender's view of its link credit.
        credit_watch: Option<watch::Sender<u32>>,
        reply: Reply<Attached>,
    },
    AcceptLink {
        link: LinkId,
        attach: Box<Attach>,
        sink: Option<mpsc::UnboundedSender<RecvItem>>,
        credit: u32,
        credit_watch: Option<watch::Sender<u32>>,
    },
    RefuseLink {
        link: LinkId,
        error: Box<AmqpError>,
    },
    Send {
        link: LinkId,
        message: Payload,
        settled: bool,
        /// Where the outcome goes; it holds the send's in-flight place.
        reply: Option<Completion>,
    },
    /// Credit to add (with drain), and messages the application has taken
    /// from the receiver's stream since the last report.
    Flow {
        link: LinkId,
        add: u32,
        drain: bool,
        consumed: u32,
        /// The connection the consumed deliveries came on.
        epoch: u64,
    },
    Settle {
        delivery: DeliveryId,
        /// The connection the delivery came on.
        epoch: u64,
        state: SettleState,
        reply: Option<Reply<()>>,
    },
    /// A receiver's batch of settlements without a reply is waiting in
    /// its queue.
    SettleBatch(Arc<SettleQueue>),
    Detach {
        link: LinkId,
        closed: bool,
        error: Option<Box<AmqpError>>,
        reply: Option<Reply<()>>,
    },
    Open,
    /// Every user handle is gone: close the connection, whatever is pending.
    HandlesGone,
    Close {
        error: Option<Box<AmqpError>>,
        reply: Option<Reply<()>>,
    },
}

/// The state a settlement sets, in 16 bytes: the common outcomes inline,
/// any other boxed (a `DeliveryState` takes 80, and would make every slot
/// of the command channel that big).
#[derive(Debug)]
pub(crate) enum SettleState {
    Accepted,
    Released,
    Other(Box<DeliveryState>),
}

impl From<DeliveryState> for SettleState {
    fn from(s: DeliveryState) -> Self {
        match s {
            DeliveryState::Accepted => SettleState::Accepted,
            DeliveryState::Released => SettleState::Released,
            other => SettleState::Other(Box::new(other)),
        }
    }
}

impl SettleState {
    pub(crate) fn into_state(self) -> DeliveryState {
        match self {
            SettleState::Accepted => DeliveryState::Accepted,
            SettleState::Released => DeliveryState::Released,
            SettleState::Other(s) => *s,
        }
    }
}

struct PendingSend {
    link: LinkId,
    settled: bool,
    reply: Option<Completion>,
}

/// A presettled send whose bytes are not yet all handed to the socket.
struct Unwritten {
    /// The output byte count at which its last byte is written.
    mark: u64,
    reply: Option<Completion>,
}

pub(crate) struct Driver {
    engine: proto::Connection,
    io: Option<BoxIo>,
    commands: mpsc::UnboundedReceiver<Command>,
    shared: Arc<Shared>,
    open_waiter: Option<Reply<Box<Open>>>,
    pending_open: Option<Box<Open>>,
    default_session: Option<SessionId>,
    begins: IdMap<SessionId, Reply<SessionId>>,
    attaches: IdMap<LinkId, Reply<Attached>>,
    detaches: IdMap<LinkId, Reply<()>>,
    closes: Vec<Reply<()>>,
    sends: IdMap<SendId, PendingSend>,
    unwritten: VecDeque<Unwritten>,
    /// Settlements in rcv-settle-mode second, waiting for the sender's.
    settles: HashMap<DeliveryId, Reply<()>>,
    receivers: IdMap<LinkId, mpsc::UnboundedSender<RecvItem>>,
    /// Output bytes produced by the engine, and written to the socket.
    produced: u64,
    written: u64,
    /// What it takes to reconnect, if reconnecting is on, and what must
    /// be restored then.
    reconnect: Option<Reconnector>,
    /// Set when the engine reports an end that a reconnect may repair.
    lost: Option<Error>,
    /// We are closing (a close, or every handle gone): never reconnect.
    closing: bool,
    /// Which connection this is: 0, then one more per reconnect.
    epoch: u64,
    /// Senders' link credit, and the links whose credit may have changed.
    credit_watches: IdMap<LinkId, watch::Sender<u32>>,
    credit_dirty: Vec<LinkId>,
    /// Outcomes of a batch of events, given to the senders together.
    outcomes: Vec<(Completion, Result<Outcome, Error>)>,
}

/// The driver is gone (ended, or its task dropped): nothing more comes
/// from the peer.
impl Drop for Driver {
    fn drop(&mut self) {
        self.shared.incoming.close();
    }
}

impl Driver {
    pub(crate) fn new(
        engine: proto::Connection,
        io: BoxIo,
        commands: mpsc::UnboundedReceiver<Command>,
        shared: Arc<Shared>,
        open_waiter: Option<Reply<Box<Open>>>,
    ) -> Self {
        Driver {
            engine,
            io: Some(io),
            commands,
            shared,
            open_waiter,
            pending_open: None,
            default_session: None,
            begins: IdMap::default(),
            attaches: IdMap::default(),
            detaches: IdMap::default(),
            closes: Vec::new(),
            sends: IdMap::default(),
            unwritten: VecDeque::new(),
            settles: HashMap::new(),
            receivers: IdMap::default(),
            produced: 0,
            written: 0,
            reconnect: None,
            lost: None,
            closing: false,
            epoch: 0,
            credit_watches: IdMap::default(),
            credit_dirty: Vec::new(),
            outcomes: Vec::new(),
        }
    }

    /// Turns reconnecting on (for a client connection made by a
    /// connector), with the events that came with the first open.
    pub(crate) fn with_reconnect(mut self, r: Option<Reconnector>, events: Vec<Event>) -> Self {
        self.reconnect = r;
        for e in events {
            self.on_event(e);
        }
        self
    }

    /// Runs the connection until it is closed and every byte is written,
    /// reconnecting after transient failures if reconnect is on; `permit`
    /// (a listener's connection slot) is given back at the end.
    // Not an `async fn` (see below), whatever clippy prefers.
    #[allow(clippy::manual_async_fn)]
    pub(crate) fn run(
        mut self,
        permit: Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        // Not an `async fn`: one keeps its arguments twice (as passed and
        // as locals), which would put two drivers in every task.
        async move {
            let span = tracing::debug_span!("connection", id = %self.shared.container_id);
            let _enter = span.enter();
            let (error, clean) = loop {
                match self.run_inner().await {
                    Ok(()) => {
                        let error = self.shared.error();
                        // Clean: our close, or the peer's without an error.
                        let clean =
                            self.closing || error.as_ref().is_none_or(|e| e.condition().is_none());
                        if !clean {
                            if let Some(e) = &error {
                                self.shared
                                    .events
                                    .emit(ConnectionEvent::Disconnected { error: e.clone() });
                            }
                        }
                        let error = error.unwrap_or_else(|| {
                            Error::new(ErrorKind::Closed, "the connection is closed")
                        });
                        break (error, clean);
                    }
                    Err(e) if self.may_reconnect(&e) => {
                        // Boxed: its state would otherwise sit in every
                        // connection's task, reconnecting or not.
                        if let Err(e) = Box::pin(self.reconnect(e)).await {
                            // A close (or every handle dropped) while
                            // reconnecting ends cleanly.
                            let clean = self.closing;
                            break (e, clean);
                        }
                    }
                    Err(e) => {
                        if !self.closing {
                            self.shared
                                .events
                                .emit(ConnectionEvent::Disconnected { error: e.clone() });
                        }
                        break (e, false);
                    }
                }
            };
            tracing::debug!(%error, "connection ended");
            self.fail_all(error.clone());
            self.shared.finish(if clean { Ok(()) } else { Err(error) });
            drop(permit);
        }
    }

    fn drain_events(&mut self) {
        while let Some(e) = self.engine.poll_event() {
            self.on_event(e);
        }
        self.flush_outcomes();
    }

    /// Gives the outcomes gathered from events to their senders.
    pub(super) fn flush_outcomes(&mut self) {
        if !self.outcomes.is_empty() {
            Window::complete_all(&mut self.outcomes);
        }
    }

    async fn run_inner(&mut self) -> Result<(), Error> {
        let io = self.io.take().expect("run once");
        let (mut rd, mut wr) = tokio::io::split(io);
        let mut wbuf = BytesMut::new();
        let mut commands_open = true;
        // Consecutive small reads (saturating).
        let mut small_reads: u8 = 0;
        loop {
            self.drain_events();
            if let Some(e) = self.lost.take() {
                return Err(e);
            }
            self.publish_credit();
            if let Some(open) = self.pending_open.take() {
                if let Some(w) = self.open_waiter.take() {
                    let _ = w.send(Ok(open));
                }
            }
            if wbuf.is_empty() {
                if let Some(out) = self.engine.take_output(Instant::now()) {
                    self.produced += out.len() as u64;
                    wbuf = out;
                }
                // Producing output raises events (presettled sends written,
                // a send refused for the peer's max-message-size).
                self.drain_events();
                if let Some(e) = self.lost.take() {
                    return Err(e);
                }
                self.publish_credit();
            }
            self.shared
                .overshoot
                .store(self.engine.credit_overshoot(), Ordering::Relaxed);
            if self.engine.is_closed() && wbuf.is_empty() {
                let _ = wr.shutdown().await;
                return Ok(());
            }
            let high_water = self.engine.config().output_high_water;
            let congested = wbuf.len() + self.engine.pending_output() >= high_water;
            let deadline = self.engine.poll_timeout();
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            let writing = !wbuf.is_empty();
            // Quiet: nothing being written and the last two reads were
            // small. A quiet connection with nothing to read releases its
            // buffers: an idle connection holds none; a busy one, whose
            // reads are big but for one now and then, keeps them.
            let quiet = !writing && small_reads >= 2;
            tokio::select! {
                r = wr.write_buf(&mut wbuf), if writing => {
                    let n = r.map_err(io_error)?;
                    if n == 0 {
                        return Err(Error::new(ErrorKind::Io, "the peer stopped reading"));
                    }
                    self.written += n as u64;
                    self.shared.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
                    if wbuf.is_empty() {
                        // Let go of the written bytes: the engine can reuse
                        // (or release) their buffer.
                        wbuf = BytesMut::new();
                    }
                    self.complete_written();
                }
                r = std::future::poll_fn(|cx| {
                    let r = read::poll_read_input(&mut rd, self.engine.input_buffer(), cx);
                    if r.is_pending() && quiet {
                        self.engine.release_buffers();
                    }
                    r
                }), if !congested => {
                    let n = r.map_err(io_error)?;
                    small_reads = if n < read::SMALL_READ {
                        small_reads.saturating_add(1)
                    } else {
                        0
                    };
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
                cmd = self.commands.recv(), if commands_open && !congested => {
                    match cmd {
                        Some(cmd) => self.on_commands(cmd, high_water),
                        None => {
                            commands_open = false;
                            self.closing = true;
                            self.engine.close(None);
                        }
                    }
                }
                _ = sleep => self.engine.handle_timeout(Instant::now()),
            }
        }
    }

    /// Tells senders whose link credit changed. Writing transfers takes
    /// credit without an event, so a link with messages still queued stays
    /// marked until they are out.
    fn publish_credit(&mut self) {
        let (watches, engine) = (&self.credit_watches, &self.engine);
        self.credit_dirty.retain(|&link| {
            let Some(w) = watches.get(&link) else {
                return false;
            };
            // The value follows every change (`Sender::credit` reads it);
            // waiters (`Sender::sendable`) only care whether there is
            // credit, so they are woken only when that changes, not at
            // every message sent.
            let c = engine.credit(link);
            w.send_if_modified(|v| (std::mem::replace(v, c) == 0) != (c == 0));
            engine.queued(link) > 0
        });
    }

    /// Marks a sender link's credit as possibly changed.
    pub(super) fn credit_changed(&mut self, link: LinkId) {
        if self.credit_dirty.last() != Some(&link)
            && self.credit_watches.contains_key(&link)
            && !self.credit_dirty.contains(&link)
        {
            self.credit_dirty.push(link);
        }
    }

    /// Completes the presettled sends whose bytes are all written.
    fn complete_written(&mut self) {
        while self
            .unwritten
            .front()
            .is_some_and(|u| u.mark <= self.written)
        {
            let u = self.unwritten.pop_front().expect("front");
            if let Some(r) = u.reply {
                let _ = r.send(Ok(Outcome::Presettled));
            }
        }
    }
}

/// The error of a settlement that did not reach the peer.
fn not_settled(e: AmqpError) -> Error {
    let desc = format!(
        "not settled: {}; the peer keeps the message and will redeliver it",
        e.description.as_deref().unwrap_or("the link is gone")
    );
    Error::with_condition(ErrorKind::LinkDetached, e.condition.as_str(), Some(desc))
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
        Command::Settle {
            reply: Some(reply), ..
        } => {
            let _ = reply.send(Err(e));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every connection pays for these: the command channel's first block
    /// holds 32 commands, and the task holds the driver's future.
    #[cfg(target_pointer_width = "64")]
    #[tokio::test]
    async fn per_connection_sizes_stay_within_budget() {
        use std::mem::size_of;
        assert!(
            size_of::<Command>() <= 80,
            "Command: {}",
            size_of::<Command>()
        );
        assert!(size_of::<SettleState>() <= 16);
        let (io, _peer) = tokio::io::duplex(64);
        let engine = proto::Connection::new(proto::Side::Server, proto::Config::default());
        let (_tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared::new("c".into()));
        let driver = Driver::new(engine, Box::new(io), rx, shared, None);
        let run = driver.run(None);
        // The driver once (about 1.5 KiB) and the loop's state.
        let size = std::mem::size_of_val(&run);
        assert!(size <= 2304, "the driver's future: {size} bytes");
    }

    /// What a send, a settlement or a flow carries stays small: each is
    /// copied into the channel and out.
    #[test]
    fn per_message_commands_stay_small() {
        use std::mem::size_of;
        let send = size_of::<(LinkId, Payload, bool, Option<Completion>)>();
        let settle = size_of::<(DeliveryId, u64, SettleState, Option<Reply<()>>)>();
        let flow = size_of::<(LinkId, u32, bool, u32, u64)>();
        assert!(send <= 72, "Send carries {send} bytes");
        // Accept and release inline (no allocation), the rest boxed.
        assert!(settle <= 56, "Settle carries {settle} bytes");
        assert!(flow <= 32, "Flow carries {flow} bytes");
        eprintln!(
            "Command {} bytes; Send {send}, Settle {settle}, Flow {flow}",
            size_of::<Command>()
        );
    }
}
