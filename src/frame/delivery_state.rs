//! Delivery states and outcomes (messaging.bare.xml): received, accepted,
//! rejected, released, modified; and the transactional state
//! (transactions.bare.xml).

use super::definitions::AmqpError;
use super::transaction::{Declared, TransactionalState};
use crate::types::{Decode, Decoder, Described, Encode, Map};
use crate::{DecodeError, DecodeErrorKind};
use bytes::{BufMut, Bytes};

composite! {
    /// Partial receipt of a delivery (0x23), for resuming a transfer.
    pub struct Received = 0x23, "amqp:received:list" {
        /// The section the receiver got up to.
        req section_number: u32,
        /// The offset within that section.
        req section_offset: u64,
    }
}

composite! {
    /// The accepted outcome (0x24).
    pub struct Accepted = 0x24, "amqp:accepted:list" {}
}

composite! {
    /// The rejected outcome (0x25): the message is invalid and will not be
    /// processed.
    pub struct Rejected = 0x25, "amqp:rejected:list" {
        /// Why the message was rejected.
        opt error: Option<AmqpError>,
    }
}

composite! {
    /// The released outcome (0x26): not processed, may be redelivered.
    pub struct Released = 0x26, "amqp:released:list" {}
}

composite! {
    /// The modified outcome (0x27): not processed, redelivered with changes.
    pub struct Modified = 0x27, "amqp:modified:list" {
        /// Count the transfer as a failed delivery attempt.
        opt delivery_failed: Option<bool>,
        /// Don't redeliver to this link.
        opt undeliverable_here: Option<bool>,
        /// Annotations to merge into the message's annotations.
        opt message_annotations: Option<Map>,
    }
}

/// The state of a delivery, as carried by transfer and disposition.
#[derive(Clone, Debug, PartialEq)]
pub enum DeliveryState {
    /// Partially received.
    Received(Received),
    /// Accepted (terminal).
    Accepted,
    /// Rejected (terminal).
    Rejected(Rejected),
    /// Released (terminal).
    Released,
    /// Modified (terminal).
    Modified(Modified),
    /// A transaction was declared (coordinator outcome).
    Declared(Declared),
    /// State within a transaction.
    Transactional(TransactionalState),
    /// A state this crate does not know, kept as it was received.
    Unknown(Described),
}

impl DeliveryState {
    /// Whether this is a terminal outcome.
    pub fn is_terminal(&self) -> bool {
        !matches!(
            self,
            DeliveryState::Received(_) | DeliveryState::Transactional(_)
        )
    }
}

impl Encode for DeliveryState {
    fn encoded_len(&self) -> usize {
        match self {
            DeliveryState::Received(s) => s.encoded_len(),
            DeliveryState::Accepted => 4,
            DeliveryState::Rejected(s) => s.encoded_len(),
            DeliveryState::Released => 4,
            DeliveryState::Modified(s) => s.encoded_len(),
            DeliveryState::Declared(s) => s.encoded_len(),
            DeliveryState::Transactional(s) => s.encoded_len(),
            DeliveryState::Unknown(s) => s.encoded_len(),
        }
    }
    fn encode(&self, buf: &mut impl BufMut) {
        match self {
            DeliveryState::Received(s) => s.encode(buf),
            DeliveryState::Accepted => buf.put_slice(&[0x00, 0x53, 0x24, 0x45]),
            DeliveryState::Rejected(s) => s.encode(buf),
            DeliveryState::Released => buf.put_slice(&[0x00, 0x53, 0x26, 0x45]),
            DeliveryState::Modified(s) => s.encode(buf),
            DeliveryState::Declared(s) => s.encode(buf),
            DeliveryState::Transactional(s) => s.encode(buf),
            DeliveryState::Unknown(s) => s.encode(buf),
        }
    }
}

impl Decode for DeliveryState {
    fn decode(d: &mut Decoder) -> Result<Self, DecodeError> {
        let start = d.clone();
        let Some(desc) = d.read_descriptor()? else {
            return Err(DecodeError::new(DecodeErrorKind::UnexpectedType {
                expected: "delivery-state",
                found: d.peek_u8()?,
            }));
        };
        let code = match &desc {
            crate::types::Descriptor::Code(c) => *c,
            crate::types::Descriptor::Symbol(s) => match s.as_str() {
                Received::NAME => Received::CODE,
                Accepted::NAME => Accepted::CODE,
                Rejected::NAME => Rejected::CODE,
                Released::NAME => Released::CODE,
                Modified::NAME => Modified::CODE,
                Declared::NAME => Declared::CODE,
                TransactionalState::NAME => TransactionalState::CODE,
                _ => u64::MAX,
            },
        };
        Ok(match code {
            Received::CODE => DeliveryState::Received(Received::decode_fields(d)?),
            Accepted::CODE => {
                Accepted::decode_fields(d)?;
                DeliveryState::Accepted
            }
            Rejected::CODE => DeliveryState::Rejected(Rejected::decode_fields(d)?),
            Released::CODE => {
                Released::decode_fields(d)?;
                DeliveryState::Released
            }
            Modified::CODE => DeliveryState::Modified(Modified::decode_fields(d)?),
            Declared::CODE => DeliveryState::Declared(Declared::decode_fields(d)?),
            TransactionalState::CODE => {
                DeliveryState::Transactional(TransactionalState::decode_fields(d)?)
            }
            _ => {
                *d = start;
                DeliveryState::Unknown(Described::decode(d)?)
            }
        })
    }
}

/// A transaction id, as assigned by the coordinator.
pub type TxnId = Bytes;
