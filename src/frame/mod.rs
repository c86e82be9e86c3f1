//! Frames and performatives (part 2 of the spec, `transport.bare.xml`,
//! `messaging.bare.xml`, `security.bare.xml`, `transactions.bare.xml`).
//!
//! One performative per file, each a plain struct with every field of the
//! spec and its default; [`codec`] holds the frame header, the protocol
//! headers and the frame decoder. Depends on [`crate::types`] only.

mod attach;
mod begin;
mod close;
pub mod codec;
mod definitions;
mod delivery_state;
mod detach;
mod disposition;
mod end;
mod flow;
mod open;
mod sasl;
mod terminus;
mod transaction;
mod transfer;

pub use attach::Attach;
pub use begin::Begin;
pub use close::Close;
pub use codec::{Frame, FrameDecoder, ProtocolId};
pub use definitions::{condition, AmqpError, RcvSettleMode, Role, SndSettleMode};
pub use delivery_state::{Accepted, DeliveryState, Modified, Received, Rejected, Released, TxnId};
pub use detach::Detach;
pub use disposition::Disposition;
pub use end::End;
pub use flow::Flow;
pub use open::Open;
pub use sasl::{SaslChallenge, SaslFrame, SaslInit, SaslMechanisms, SaslOutcome, SaslResponse};
pub use terminus::{AttachTarget, Coordinator, Source, Target};
pub use transaction::{txn_condition, Declare, Declared, Discharge, TransactionalState};

/// One of the nine AMQP performatives.
///
/// Open and attach are boxed: they are rare and large (an attach is about
/// 500 bytes), and every transfer frame would otherwise be moved around at
/// their size.
#[derive(Clone, Debug, PartialEq)]
pub enum Performative {
    /// open (0x10).
    Open(Box<Open>),
    /// begin (0x11).
    Begin(Begin),
    /// attach (0x12).
    Attach(Box<Attach>),
    /// flow (0x13).
    Flow(Flow),
    /// transfer (0x14).
    Transfer(Transfer),
    /// disposition (0x15).
    Disposition(Disposition),
    /// detach (0x16).
    Detach(Detach),
    /// end (0x17).
    End(End),
    /// close (0x18).
    Close(Close),
}

pub use transfer::Transfer;

#[cfg(test)]
mod tests;
