//! Shared definitions of the transport layer (transport.bare.xml,
//! "definitions"): role, settle modes, and the `error` type with its
//! conditions.

use crate::types::{Decode, Decoder, Encode, Map, Symbol};
use crate::{DecodeError, DecodeErrorKind};
use bytes::BufMut;

/// The role of a link endpoint: `false` is sender, `true` is receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Role {
    /// The endpoint sends messages.
    #[default]
    Sender,
    /// The endpoint receives messages.
    Receiver,
}

impl Encode for Role {
    fn encoded_len(&self) -> usize {
        1
    }
    fn encode(&self, buf: &mut impl BufMut) {
        (*self == Role::Receiver).encode(buf)
    }
}

impl Decode for Role {
    fn decode(d: &mut Decoder) -> Result<Self, DecodeError> {
        Ok(if bool::decode(d)? {
            Role::Receiver
        } else {
            Role::Sender
        })
    }
}

macro_rules! ubyte_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $n:literal),* $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vm])* $v = $n),* }

        impl Encode for $name {
            fn encoded_len(&self) -> usize { 2 }
            fn encode(&self, buf: &mut impl BufMut) { (*self as u8).encode(buf) }
        }

        impl Decode for $name {
            fn decode(d: &mut Decoder) -> Result<Self, DecodeError> {
                match u8::decode(d)? {
                    $($n => Ok($name::$v),)*
                    _ => Err(DecodeError::new(DecodeErrorKind::InvalidValue(stringify!($name)))),
                }
            }
        }
    };
}

ubyte_enum! {
    /// Settlement policy for a sender (`sender-settle-mode`). Default: mixed.
    SndSettleMode {
        /// Every delivery is sent unsettled.
        Unsettled = 0,
        /// Every delivery is sent settled (at-most-once).
        Settled = 1,
        /// The sender may send settled or unsettled deliveries.
        Mixed = 2,
    }
}

ubyte_enum! {
    /// Settlement policy for a receiver (`receiver-settle-mode`). Default: first.
    RcvSettleMode {
        /// The receiver settles spontaneously.
        First = 0,
        /// The receiver settles only after the sender settled.
        Second = 1,
    }
}

/// Standard AMQP error conditions (`amqp-error`, `connection-error`,
/// `session-error`, `link-error`).
pub mod condition {
    #![allow(missing_docs)]
    use crate::types::Symbol;

    pub const INTERNAL_ERROR: Symbol = Symbol::from_static("amqp:internal-error");
    pub const NOT_FOUND: Symbol = Symbol::from_static("amqp:not-found");
    pub const UNAUTHORIZED_ACCESS: Symbol = Symbol::from_static("amqp:unauthorized-access");
    pub const DECODE_ERROR: Symbol = Symbol::from_static("amqp:decode-error");
    pub const RESOURCE_LIMIT_EXCEEDED: Symbol = Symbol::from_static("amqp:resource-limit-exceeded");
    pub const NOT_ALLOWED: Symbol = Symbol::from_static("amqp:not-allowed");
    pub const INVALID_FIELD: Symbol = Symbol::from_static("amqp:invalid-field");
    pub const NOT_IMPLEMENTED: Symbol = Symbol::from_static("amqp:not-implemented");
    pub const RESOURCE_LOCKED: Symbol = Symbol::from_static("amqp:resource-locked");
    pub const PRECONDITION_FAILED: Symbol = Symbol::from_static("amqp:precondition-failed");
    pub const RESOURCE_DELETED: Symbol = Symbol::from_static("amqp:resource-deleted");
    pub const ILLEGAL_STATE: Symbol = Symbol::from_static("amqp:illegal-state");
    pub const FRAME_SIZE_TOO_SMALL: Symbol = Symbol::from_static("amqp:frame-size-too-small");
    pub const CONNECTION_FORCED: Symbol = Symbol::from_static("amqp:connection:forced");
    pub const FRAMING_ERROR: Symbol = Symbol::from_static("amqp:connection:framing-error");
    pub const CONNECTION_REDIRECT: Symbol = Symbol::from_static("amqp:connection:redirect");
    pub const WINDOW_VIOLATION: Symbol = Symbol::from_static("amqp:session:window-violation");
    pub const ERRANT_LINK: Symbol = Symbol::from_static("amqp:session:errant-link");
    pub const HANDLE_IN_USE: Symbol = Symbol::from_static("amqp:session:handle-in-use");
    pub const UNATTACHED_HANDLE: Symbol = Symbol::from_static("amqp:session:unattached-handle");
    pub const DETACH_FORCED: Symbol = Symbol::from_static("amqp:link:detach-forced");
    pub const TRANSFER_LIMIT_EXCEEDED: Symbol =
        Symbol::from_static("amqp:link:transfer-limit-exceeded");
    pub const MESSAGE_SIZE_EXCEEDED: Symbol =
        Symbol::from_static("amqp:link:message-size-exceeded");
    pub const LINK_REDIRECT: Symbol = Symbol::from_static("amqp:link:redirect");
    pub const STOLEN: Symbol = Symbol::from_static("amqp:link:stolen");
}

composite! {
    /// The AMQP `error` type (0x1d): a condition, a description and extra
    /// information, carried by close, end, detach and rejected.
    pub struct AmqpError = 0x1d, "amqp:error:list" {
        /// The error condition, such as `amqp:not-found`.
        req condition: Symbol,
        /// A human-readable description.
        opt description: Option<String>,
        /// Extra information about the error.
        opt info: Option<Map>,
    }
}

impl AmqpError {
    /// An error with a condition and a description.
    pub fn new(condition: impl Into<Symbol>, description: impl Into<String>) -> Self {
        AmqpError {
            condition: condition.into(),
            description: Some(description.into()),
            info: None,
        }
    }
}

impl std::fmt::Display for AmqpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.condition.as_str())?;
        if let Some(d) = &self.description {
            write!(f, ": {d}")?;
        }
        Ok(())
    }
}
