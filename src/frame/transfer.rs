//! The `transfer` performative (0x14): carries (part of) a message.

use super::definitions::RcvSettleMode;
use super::delivery_state::DeliveryState;
use bytes::Bytes;

composite! {
    /// Transfers a message or a part of one (spec 2.7.5). The message bytes
    /// follow the performative in the frame body.
    pub struct Transfer = 0x14, "amqp:transfer:list" {
        /// The link.
        req handle: u32,
        /// The delivery id; required on the first transfer of a delivery.
        opt delivery_id: Option<u32>,
        /// The delivery tag; required on the first transfer of a delivery.
        opt delivery_tag: Option<Bytes>,
        /// The message format; required on the first transfer. 0 is AMQP.
        opt message_format: Option<u32>,
        /// Whether the delivery is settled by the sender.
        opt settled: Option<bool>,
        /// More transfers follow for this delivery. Default: false.
        def more: bool = false,
        /// The receiver settle mode for this delivery.
        opt rcv_settle_mode: Option<RcvSettleMode>,
        /// The state of the delivery at the sender.
        opt state: Option<DeliveryState>,
        /// A resumed delivery. Default: false.
        def resume: bool = false,
        /// The delivery is aborted. Default: false.
        def aborted: bool = false,
        /// A hint that the peer may delay dispositions. Default: false.
        def batchable: bool = false,
    }
}
