//! The `open` performative (0x10): negotiates connection parameters.

use crate::types::{Map, Symbol};

composite! {
    /// Opens a connection (spec 2.7.1).
    pub struct Open = 0x10, "amqp:open:list" {
        /// The id of the source container.
        req container_id: String,
        /// The name of the target host (virtual host).
        opt hostname: Option<String>,
        /// Largest frame this endpoint accepts. Default: 4294967295.
        def max_frame_size: u32 = u32::MAX,
        /// Highest channel number this endpoint uses. Default: 65535.
        def channel_max: u16 = u16::MAX,
        /// Idle timeout in milliseconds; none means no timeout.
        opt idle_time_out: Option<u32>,
        /// Locales available for outgoing text.
        opt outgoing_locales: Option<Vec<Symbol>>,
        /// Desired locales for incoming text.
        opt incoming_locales: Option<Vec<Symbol>>,
        /// Extension capabilities the sender supports.
        opt offered_capabilities: Option<Vec<Symbol>>,
        /// Extension capabilities the sender may use if the receiver supports them.
        opt desired_capabilities: Option<Vec<Symbol>>,
        /// Connection properties.
        opt properties: Option<Map>,
    }
}
