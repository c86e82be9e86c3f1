//! The `close` performative (0x18): closes a connection.

use super::definitions::AmqpError;

composite! {
    /// Closes a connection (spec 2.7.9).
    pub struct Close = 0x18, "amqp:close:list" {
        /// Why the connection is closed.
        opt error: Option<AmqpError>,
    }
}
