//! The outcome of a send.

use crate::error::{Error, ErrorKind};
use crate::frame::{DeliveryState, Modified};
use crate::types::Map;

/// How the peer settled a message we sent.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Outcome {
    /// Accepted: the peer took the message.
    Accepted,
    /// Rejected: the message is invalid; the peer's error says why.
    Rejected(Option<crate::frame::AmqpError>),
    /// Released: not processed; it may be sent again.
    Released,
    /// Modified: not processed, with changes to apply if it is sent again.
    Modified {
        /// Count this as a failed delivery attempt.
        delivery_failed: bool,
        /// Don't send it to this link again.
        undeliverable_here: bool,
        /// Annotations to merge into the message.
        message_annotations: Option<Map>,
    },
    /// The message was sent settled (at-most-once): the peer gives no
    /// outcome; this resolves once the bytes are handed to the socket.
    Presettled,
    /// The peer settled the message without stating an outcome: whether it
    /// was processed is unknown (the spec leaves it to the source's default
    /// outcome). Not a success: [`into_result`](Self::into_result) is an
    /// error.
    Settled,
}

impl Outcome {
    /// Whether the outcome is [`Outcome::Accepted`].
    pub fn is_accepted(&self) -> bool {
        matches!(self, Outcome::Accepted)
    }

    /// `Ok(())` if accepted (or presettled), else an error of kind
    /// [`ErrorKind::Rejected`] carrying the peer's condition.
    pub fn into_result(self) -> Result<(), Error> {
        match self {
            Outcome::Accepted | Outcome::Presettled => Ok(()),
            Outcome::Rejected(Some(e)) => Err(Error::from_amqp(ErrorKind::Rejected, e)),
            Outcome::Rejected(None) => Err(Error::new(ErrorKind::Rejected, "rejected")),
            Outcome::Released => Err(Error::new(ErrorKind::Rejected, "released")),
            Outcome::Modified { .. } => Err(Error::new(ErrorKind::Rejected, "modified")),
            Outcome::Settled => Err(Error::new(
                ErrorKind::Rejected,
                "settled without an outcome: the peer may not have processed it",
            )),
        }
    }

    /// The outcome a delivery state stands for. A settlement without a
    /// (terminal) state is [`Outcome::Settled`].
    pub(crate) fn from_state(state: Option<DeliveryState>) -> Self {
        match state {
            Some(DeliveryState::Accepted) => Outcome::Accepted,
            Some(DeliveryState::Rejected(r)) => Outcome::Rejected(r.error),
            Some(DeliveryState::Modified(Modified {
                delivery_failed,
                undeliverable_here,
                message_annotations,
            })) => Outcome::Modified {
                delivery_failed: delivery_failed.unwrap_or(false),
                undeliverable_here: undeliverable_here.unwrap_or(false),
                message_annotations,
            },
            Some(DeliveryState::Released) => Outcome::Released,
            Some(DeliveryState::Transactional(t)) => Outcome::from_state(t.outcome.map(|b| *b)),
            _ => Outcome::Settled,
        }
    }
}
