//! The `detach` performative (0x16): detaches a link.

use super::definitions::AmqpError;

composite! {
    /// Detaches a link (spec 2.7.7).
    pub struct Detach = 0x16, "amqp:detach:list" {
        /// The link.
        req handle: u32,
        /// Closes the link (and its termini) rather than only detaching. Default: false.
        def closed: bool = false,
        /// Why the link is detached.
        opt error: Option<AmqpError>,
    }
}
