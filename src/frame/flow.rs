//! The `flow` performative (0x13): session windows and link credit.

use crate::types::Map;

composite! {
    /// Updates flow state (spec 2.7.4).
    pub struct Flow = 0x13, "amqp:flow:list" {
        /// The next transfer-id expected from the peer (absent before its begin).
        opt next_incoming_id: Option<u32>,
        /// The sender's incoming window.
        req incoming_window: u32,
        /// The transfer-id the sender assigns next.
        req next_outgoing_id: u32,
        /// The sender's outgoing window.
        req outgoing_window: u32,
        /// The link this flow is about; absent for session-only flow.
        opt handle: Option<u32>,
        /// The link's delivery count.
        opt delivery_count: Option<u32>,
        /// The link credit.
        opt link_credit: Option<u32>,
        /// Messages the sender has available.
        opt available: Option<u32>,
        /// Drain mode: the sender uses up all credit. Default: false.
        def drain: bool = false,
        /// Ask the peer to answer with its own flow. Default: false.
        def echo: bool = false,
        /// Link state properties.
        opt properties: Option<Map>,
    }
}
