//! The async API: containers, connections, sessions, senders, receivers,
//! deliveries and listeners, driven by one tokio task per connection.
//!
//! Handles are cheap and talk to the connection's driver over a channel;
//! the driver owns the sans-IO engine and the socket.

mod connection;
mod container;
mod credit;
mod defaults;
mod driver;
mod incoming;
mod link_options;
mod listener;
mod options;
mod outcome;
mod receiver;
mod reconnect;
mod sasl;
mod sender;
mod session;
mod settlements;
mod shared;
mod window;

pub use connection::{Connection, IncomingEndpoint};
pub use container::{accept_with_io, connect, connect_with_io, listen, Container};
pub use incoming::IncomingLink;
pub use link_options::{expiry_policy, DeliveryMode, ReceiverOptions, SenderOptions};
pub use listener::{IncomingConnection, ListenOptions, Listener};
pub use options::ConnectOptions;
pub use outcome::Outcome;
pub use receiver::{Delivery, Receiver};
pub use reconnect::{
    ConnectionEvent, ConnectionEvents, Connector, Endpoint, Exponential, NextConnection, Reconnect,
    ReconnectLayer, ReconnectPolicy, ReconnectService, Transport,
};
pub use sasl::{supported_mechanisms, Authenticator, ScramCredentials, ScramHash, Users};
pub use sender::Sender;
pub use session::Session;
pub use shared::Statistics;
