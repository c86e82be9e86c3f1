//! # Aqueduct
//!
//! AMQP 1.0 messaging for async Rust: the Qpid Proton messaging model
//! (containers, connections, senders, receivers, delivery outcomes,
//! listeners) on tokio, `futures` and `tower`.
//!
//! # Layout
//!
//! Dependencies point one way: `types` <- `frame`/`message` <- `proto` <-
//! `client`.
//!
//! - [`types`]: the AMQP type system and its encoding; depends on `bytes` only.
//! - [`message`]: the AMQP message, its sections and their encoding.
//! - `error`: [`Error`] and [`DecodeError`], each with a `#[non_exhaustive]`
//!   kind.
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
