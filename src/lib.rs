//! # Aqueduct
//!
//! AMQP 1.0 messaging for async Rust: the Qpid Proton messaging model
//! (containers, connections, senders, receivers, delivery outcomes,
//! listeners) on tokio, `futures` and `tower`.
//!
//! ```no_run
//! use aqueduct::{Message, Outcome};
//! use futures::StreamExt;
//!
//! # async fn run() -> Result<(), aqueduct::Error> {
//! let conn = aqueduct::connect("amqp://127.0.0.1:5672").await?;
//! let sender = conn.open_sender("jobs").await?;
//! let outcome: Outcome = sender.send(Message::from("hello")).await?;
//! assert!(outcome.is_accepted());
//!
//! let mut receiver = conn.open_receiver("jobs").await?;
//! while let Some(delivery) = receiver.next().await {
//!     let delivery = delivery?;
//!     println!("{}", delivery.message()?.body());
//!     delivery.accept().await?;
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! Dependencies point one way: `types` <- `frame`/`message` <- `proto` <-
//! `client`/`transport`.
//!
//! - [`types`]: the AMQP type system (`Value`, `Encode`/`Decode`, the total
//!   `Decoder`, the `composite!` macro for described lists); depends on
//!   `bytes` only.
//! - [`frame`]: frame header and protocol headers, the nine performatives
//!   (one per file), SASL frames, delivery states, termini, transactions, and
//!   the frame decoder.
//! - [`message`]: the message, its sections, builder and codec.
//! - [`proto`]: the sans-IO engine, a file per concern: `connection` (state,
//!   input, output, frame dispatch), `handshake` (headers, SASL, open/close),
//!   `timers` (every timeout and heartbeat, on the caller's clock), `store`
//!   (sessions and links by never-reused ids), `session`/`sessions`,
//!   `link`/`links`, `flow`, `send`, `recv`, `settlement`, `unsettled`
//!   (a session's unsettled deliveries: a ring by delivery id, a sorted map
//!   for ids out of sequence), `idmap` (maps keyed by our own ids with a
//!   cheap hash, and `NumberMap` for channel and handle numbers). It makes
//!   every protocol decision and owns every budget. No tokio, no sockets,
//!   no clocks; time is passed in. `benches/engine.rs` measures it alone
//!   (two engines paired in memory).
//! - [`transport`]: URL parsing and the byte streams under a connection (TCP
//!   now; TLS plugs in as another [`transport::Io`]); `read` reads a stream
//!   into the engine's input without holding a buffer while it is quiet.
//! - `client` (re-exported at the root): the async API: [`Container`],
//!   [`connect`], [`Connection`], [`Session`], [`Sender`] (`Sink`, `tower::Service`),
//!   [`Receiver`] (`Stream`), [`Delivery`], [`listen`], [`Listener`],
//!   [`IncomingConnection`], [`IncomingLink`], [`connect_with_io`]. One
//!   driver task per connection (`client/driver/`: the loop, commands,
//!   events, `restore` for reconnects) owns the engine and the byte stream;
//!   handles talk to it over a channel, every frame queued in a turn goes
//!   out in one write, and above the output high-water mark it stops
//!   reading and taking commands. A quiet connection releases its buffers
//!   (about 9 KiB per idle connection on a listener); `shared` holds what
//!   handles and driver share, the queue of what the peer opened among it.
//!   `window` is a sender's in-flight window and its outcome slots (a
//!   `Sink` counts its outcomes in a `SinkTrack`); `settlements` gathers a
//!   receiver's auto-settlements into runs of delivery ids.
//! - `client/reconnect/`: reconnect and failover as a tower layer:
//!   `policy` ([`Reconnect`], [`ReconnectPolicy`], [`Exponential`], Proton's
//!   schedule), `connector` ([`Connector`], a `tower::Service<Endpoint>` that
//!   makes an opened [`Transport`]: TCP, TLS, SASL, open), `layer`
//!   ([`ReconnectLayer`]: the URL rotation and the policy's delays), `events`
//!   ([`ConnectionEvent`]). When a transport is lost the driver asks the
//!   layered service for a new one, begins its sessions and attaches its
//!   links again under the same ids, and re-sends what had no outcome.
//! - `error`: [`Error`] and [`DecodeError`], each with a `#[non_exhaustive]`
//!   kind; errors carry the AMQP condition and description.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod error;
#[macro_use]
pub mod types;

mod client;
pub mod frame;
pub mod message;
pub mod proto;
pub mod transport;

pub use client::*;
pub use error::{DecodeError, DecodeErrorKind, Error, ErrorKind, Result};
pub use message::{Body, Message, MessageBuilder, MessageId};
pub use proto::SaslCode;
pub use transport::TlsVerify;
