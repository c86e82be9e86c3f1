//! The sans-IO protocol engine: connection, session and link state
//! machines, flow control, delivery and settlement (part 2 of the spec).
//!
//! No tokio, no sockets, no clocks: bytes go in through
//! [`Connection::handle_input`], commands are method calls, and events and
//! bytes to write come out of [`Connection::poll_event`] and
//! [`Connection::take_output`]; time is passed in. The async client drives
//! it; tests pair two engines in memory.
//!
//! One file per concern, each an `impl Connection` block over the state in
//! `connection.rs`:
//!
//! - `connection`: the engine's state, input, output, frame dispatch, and
//!   protocol errors;
//! - `handshake`: protocol headers, SASL, open and close;
//! - `timers`: heartbeats and the idle timeout;
//! - `session`/`sessions`: the session type, and begin/end;
//! - `link`/`links`: the link type, and attach/detach;
//! - `flow`: link credit and session windows;
//! - `send`: queued messages, transfers, fragmentation;
//! - `recv`: incoming transfers and reassembly;
//! - `settlement`: dispositions both ways;
//! - `unsettled`: a session's unsettled deliveries by delivery id (a ring
//!   for ids in sequence, a sorted map for the rest);
//! - `store`: sessions and links by id, with their channel and handle maps
//!   kept in step.
//!
//! Depends on `types`, `frame` and `message` only.

mod config;
mod connection;
mod event;
mod flow;
mod handshake;
mod idmap;
mod link;
mod links;
mod recv;
mod sasl;
mod send;
mod session;
mod sessions;
mod settlement;
mod store;
mod timers;
mod unsettled;

pub use config::{Config, Sasl, Side, TLS_REQUIRED};
pub use connection::Connection;
pub use event::{DeliveryId, Event, LinkId, SendId, SessionId};
pub use idmap::{IdHasher, IdMap};
pub use link::Payload;
pub use sasl::{
    SaslClientMechanism, SaslClientProvider, SaslCode, SaslServerMechanism, SaslServerProvider,
    SaslServerStep,
};

#[cfg(test)]
mod tests;
