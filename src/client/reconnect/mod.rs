//! Reconnect and failover, as a tower layer around the connector.
//!
//! - `policy`: [`ReconnectPolicy`] (`reset`/`next`, Proton's custom
//!   reconnect object), [`Exponential`] (Proton's schedule) and
//!   [`Reconnect`], the option that picks one (or none).
//! - `connector`: [`Connector`], a `tower::Service<Endpoint>` that makes
//!   one opened [`Transport`] (TCP, TLS, SASL, open).
//! - `layer`: [`ReconnectLayer`] / [`ReconnectService`]: the retry loop
//!   over the URL list with the policy's delays (states Idle, Connecting,
//!   Connected, Waiting).
//! - `events`: [`ConnectionEvent`] and the [`ConnectionEvents`] stream.
//!
//! The connection's driver keeps every session and link it opened; when
//! its transport is lost it asks the service for a new one, then begins
//! the sessions again, re-attaches the links under the same names and
//! re-sends what had no outcome (see the crate docs' delivery guarantees).

mod connector;
mod events;
mod layer;
mod policy;

pub(crate) use connector::open_over;
pub use connector::{Connector, Endpoint, Transport};
pub(crate) use events::EventHub;
pub use events::{ConnectionEvent, ConnectionEvents};
pub use layer::{NextConnection, ReconnectLayer, ReconnectService};
pub use policy::{Exponential, Reconnect, ReconnectPolicy};
