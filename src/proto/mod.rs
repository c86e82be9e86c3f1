//! The sans-IO protocol engine: connection, session and link state
//! machines, flow control, delivery and settlement (part 2 of the spec).
//!
//! No tokio, no sockets, no clocks: bytes go in through
//! [`Connection::handle_input`], commands are method calls, and events and
//! bytes to write come out of [`Connection::poll_event`] and
//! [`Connection::take_output`]; time is passed in. The async client drives
//! it; tests pair two engines in memory.
//!
//! Depends on `types`, `frame` and `message` only.

mod config;
mod connection;
mod event;
mod link;
mod sasl;
mod session;

pub use config::{Config, PlainAuthenticator, Sasl, Side};
pub use connection::Connection;
pub use event::{DeliveryId, Event, LinkId, SendId, SessionId};
pub use link::Payload;

#[cfg(test)]
mod tests;
