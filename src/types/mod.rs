//! The AMQP 1.0 type system (part 1 of the spec, `types.bare.xml`) and its
//! encoding.
//!
//! [`Value`] holds any AMQP value; [`Encode`] and [`Decode`] are the typed fast
//! paths that frames and messages use for their known shapes. Encoders always
//! choose the smallest encoding (`uint0`, `smalluint`, `list0`, `list8`, ...),
//! as Qpid Proton does. Decoders are total: malformed input yields a
//! [`DecodeError`](crate::DecodeError), never a panic, and no allocation is
//! sized by an untrusted length before the bytes are there.
//!
//! This module depends on `bytes` only.

pub mod codes;
#[macro_use]
mod composite;
mod decode;
mod display;
mod encode;
mod value;

pub use decode::{Decode, Decoder, Limits};
pub use encode::Encode;
pub use value::{Array, Described, Descriptor, Map, Symbol, Timestamp, Uuid, Value};

pub(crate) use decode::decode_list_header;
pub(crate) use display::bytes_repr;
pub(crate) use encode::{encode_list_header, list_header_len};

#[cfg(test)]
mod tests;
