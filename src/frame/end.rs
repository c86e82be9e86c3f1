//! The `end` performative (0x17): ends a session.

use super::definitions::AmqpError;

composite! {
    /// Ends a session (spec 2.7.8).
    pub struct End = 0x17, "amqp:end:list" {
        /// Why the session ends.
        opt error: Option<AmqpError>,
    }
}
