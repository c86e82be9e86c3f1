//! The `attach` performative (0x12): attaches a link to a session.

use super::definitions::{RcvSettleMode, Role, SndSettleMode};
use super::terminus::{AttachTarget, Source};
use crate::types::{Map, Symbol};

composite! {
    /// Attaches a link (spec 2.7.3).
    pub struct Attach = 0x12, "amqp:attach:list" {
        /// The name of the link, unique per direction between two containers.
        req name: String,
        /// The handle this endpoint uses for the link.
        req handle: u32,
        /// Whether this endpoint is the sender or the receiver.
        req role: Role,
        /// Settlement policy for the sender. Default: mixed.
        def snd_settle_mode: SndSettleMode = SndSettleMode::Mixed,
        /// Settlement policy for the receiver. Default: first.
        def rcv_settle_mode: RcvSettleMode = RcvSettleMode::First,
        /// The source of messages.
        opt source: Option<Source>,
        /// The target of messages (or a transaction coordinator).
        opt target: Option<AttachTarget>,
        /// Unsettled delivery state, for resuming a link.
        opt unsettled: Option<Map>,
        /// Whether `unsettled` is incomplete. Default: false.
        def incomplete_unsettled: bool = false,
        /// The sender's initial delivery count; mandatory for senders.
        opt initial_delivery_count: Option<u32>,
        /// The largest message this endpoint accepts; none means no limit.
        opt max_message_size: Option<u64>,
        /// Extension capabilities the sender supports.
        opt offered_capabilities: Option<Vec<Symbol>>,
        /// Extension capabilities the sender may use.
        opt desired_capabilities: Option<Vec<Symbol>>,
        /// Link properties.
        opt properties: Option<Map>,
    }
}
