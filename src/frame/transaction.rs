//! Transaction types (transactions.bare.xml): declare, discharge, declared
//! and transactional-state. The coordinator target is in `terminus`.

use super::delivery_state::DeliveryState;
use bytes::Bytes;

composite! {
    /// Asks the coordinator to declare a transaction (0x31), sent as an
    /// amqp-value message body.
    pub struct Declare = 0x31, "amqp:declare:list" {
        /// A global transaction id (not supported by most peers).
        opt global_id: Option<crate::types::Value>,
    }
}

composite! {
    /// Asks the coordinator to discharge a transaction (0x32).
    pub struct Discharge = 0x32, "amqp:discharge:list" {
        /// The transaction to discharge.
        req txn_id: Bytes,
        /// Roll back (true) instead of committing. Default: commit.
        opt fail: Option<bool>,
    }
}

composite! {
    /// The outcome of a declare (0x33): the id of the new transaction.
    pub struct Declared = 0x33, "amqp:declared:list" {
        /// The transaction id.
        req txn_id: Bytes,
    }
}

composite! {
    /// The state of a delivery inside a transaction (0x34).
    pub struct TransactionalState = 0x34, "amqp:transactional-state:list" {
        /// The transaction.
        req txn_id: Bytes,
        /// The provisional outcome.
        opt outcome: Option<Box<DeliveryState>>,
    }
}

/// The error conditions of transactions.
pub mod txn_condition {
    #![allow(missing_docs)]
    use crate::types::Symbol;
    pub const UNKNOWN_ID: Symbol = Symbol::from_static("amqp:transaction:unknown-id");
    pub const TRANSACTION_ROLLBACK: Symbol = Symbol::from_static("amqp:transaction:rollback");
    pub const TRANSACTION_TIMEOUT: Symbol = Symbol::from_static("amqp:transaction:timeout");
}
