//! The `disposition` performative (0x15): delivery state and settlement.

use super::definitions::Role;
use super::delivery_state::DeliveryState;

composite! {
    /// Informs the peer of delivery state changes (spec 2.7.6), for the
    /// range `first..=last` of delivery ids.
    pub struct Disposition = 0x15, "amqp:disposition:list" {
        /// The role of the endpoint that sends the disposition.
        req role: Role,
        /// The first delivery id of the range.
        req first: u32,
        /// The last delivery id of the range; absent means `first`.
        opt last: Option<u32>,
        /// Whether the deliveries are settled. Default: false.
        def settled: bool = false,
        /// The new state of the deliveries.
        opt state: Option<DeliveryState>,
        /// A hint that the peer may delay its answer. Default: false.
        def batchable: bool = false,
    }
}
