//! What the engine reports to its driver, and the ids it names things by.

use crate::frame::{AmqpError, Attach, Begin, DeliveryState, Open};
use crate::message::Message;
use bytes::Bytes;

/// A session of a connection. Ids are never reused within a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub(crate) u64);

/// A link of a connection. Ids are never reused within a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkId(pub(crate) u64);

/// A message handed to [`Connection::send`](super::Connection::send), to
/// match it with its outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SendId(pub(crate) u64);

/// An incoming delivery, by link and delivery id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DeliveryId {
    /// The link the delivery came on.
    pub link: LinkId,
    /// The delivery id the peer assigned.
    pub id: u32,
}

/// Something the engine has to tell its driver.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// The peer's open arrived. For a server, the connection waits for
    /// [`Connection::open`](super::Connection::open) (accept) or
    /// [`Connection::refuse`](super::Connection::refuse).
    Opened(Box<Open>),
    /// The connection is closed: by the peer (with its error, if any), or by
    /// us because of a protocol violation (with the condition we sent).
    Closed {
        /// The error the closing side gave.
        error: Option<AmqpError>,
        /// Whether the peer closed (true) or our engine did (false).
        remote: bool,
        /// Whether our engine closed because a timer ran out (the peer did
        /// not open, or did not answer our close, in time).
        timeout: bool,
    },
    /// The peer began a session: the answer to ours, or (`incoming`) a new
    /// one the engine has accepted.
    SessionBegun {
        /// The session.
        session: SessionId,
        /// The peer's begin.
        begin: Box<Begin>,
        /// Whether the peer started it.
        incoming: bool,
    },
    /// The peer ended a session, with its error if any.
    SessionEnded {
        /// The session.
        session: SessionId,
        /// The peer's (or our engine's) error.
        error: Option<AmqpError>,
    },
    /// The peer answered our attach.
    LinkAttached {
        /// The link.
        link: LinkId,
        /// The peer's attach.
        attach: Box<Attach>,
    },
    /// The peer attaches a new link; answer with
    /// [`Connection::accept_link`](super::Connection::accept_link) or
    /// [`Connection::refuse_link`](super::Connection::refuse_link).
    IncomingLink {
        /// The session it arrived on.
        session: SessionId,
        /// The link.
        link: LinkId,
        /// The peer's attach.
        attach: Box<Attach>,
    },
    /// The link is detached: by the peer, or by our engine because the peer
    /// broke a link rule. Queued sends come back in `unsent`.
    LinkDetached {
        /// The link.
        link: LinkId,
        /// Whether the link was closed (not only detached).
        closed: bool,
        /// The error given, if any.
        error: Option<AmqpError>,
        /// Whether the detach came from the peer.
        remote: bool,
        /// Messages that have no outcome: unsettled ones (in send order),
        /// then queued ones never sent.
        unsent: Vec<(SendId, Message)>,
        /// Whether the peer did not answer our attach or detach in time.
        timeout: bool,
    },
    /// A sender link got credit (or more of it).
    Credit {
        /// The link.
        link: LinkId,
        /// The credit now available.
        credit: u32,
    },
    /// A presettled message was written to the output.
    Sent {
        /// The link.
        link: LinkId,
        /// The send.
        send: SendId,
    },
    /// The peer settled or updated one of our unsettled deliveries.
    Outcome {
        /// The link.
        link: LinkId,
        /// The send.
        send: SendId,
        /// The state the peer gave (None if settled without one).
        state: Option<DeliveryState>,
        /// Whether the peer settled it.
        settled: bool,
    },
    /// A whole message arrived on a receiver link.
    Delivery {
        /// The delivery.
        delivery: DeliveryId,
        /// Its tag.
        tag: Bytes,
        /// Whether the sender settled it already.
        settled: bool,
        /// Its message format (0 for AMQP).
        format: u32,
        /// The encoded message, reassembled from all its transfers.
        payload: Bytes,
    },
    /// The peer settled an incoming delivery (second settle mode, or a
    /// sender that settles on its own).
    RemoteSettled {
        /// The delivery.
        delivery: DeliveryId,
        /// The state the peer gave.
        state: Option<DeliveryState>,
        /// Whether the peer settled it (else it only updated its state).
        settled: bool,
    },
    /// A receiver's drain finished: the sender used up or gave back all
    /// credit.
    Drained {
        /// The link.
        link: LinkId,
    },
}
