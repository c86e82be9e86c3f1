//! The `begin` performative (0x11): begins a session on a channel.

use crate::types::{Map, Symbol};

composite! {
    /// Begins a session (spec 2.7.2).
    pub struct Begin = 0x11, "amqp:begin:list" {
        /// The remote channel, when answering a peer's begin.
        opt remote_channel: Option<u16>,
        /// The transfer-id of the first transfer id the sender will send.
        req next_outgoing_id: u32,
        /// The initial incoming window of the sender.
        req incoming_window: u32,
        /// The initial outgoing window of the sender.
        req outgoing_window: u32,
        /// The highest link handle this endpoint uses. Default: 4294967295.
        def handle_max: u32 = u32::MAX,
        /// Extension capabilities the sender supports.
        opt offered_capabilities: Option<Vec<Symbol>>,
        /// Extension capabilities the sender may use.
        opt desired_capabilities: Option<Vec<Symbol>>,
        /// Session properties.
        opt properties: Option<Map>,
    }
}
