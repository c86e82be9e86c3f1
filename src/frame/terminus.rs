//! Link termini (messaging.bare.xml): `source` and `target`, and the
//! transaction `coordinator` that can stand in for a target.

use crate::types::{Decode, Decoder, Encode, Map, Symbol, Value};
use crate::{DecodeError, DecodeErrorKind};
use bytes::BufMut;

/// Default expiry policy of a terminus.
pub(crate) const SESSION_END: Symbol = Symbol::from_static("session-end");

composite! {
    /// The source of a link (0x28): where messages come from.
    pub struct Source = 0x28, "amqp:source:list" {
        /// The address of the source node.
        opt address: Option<String>,
        /// Terminus durability: 0 none (default), 1 configuration, 2 unsettled state.
        def durable: u32 = 0,
        /// Expiry policy: `link-detach`, `session-end` (default), `connection-close`, `never`.
        def expiry_policy: Symbol = SESSION_END,
        /// Seconds the terminus lives after its expiry trigger. Default: 0.
        def timeout: u32 = 0,
        /// Whether the peer is asked to create the node dynamically. Default: false.
        def dynamic: bool = false,
        /// Properties of the dynamically created node.
        opt dynamic_node_properties: Option<Map>,
        /// `move` (competing consumers) or `copy` (browse).
        opt distribution_mode: Option<Symbol>,
        /// Filters on the messages the source sends (for example a JMS selector).
        opt filter: Option<Map>,
        /// The outcome applied to unsettled deliveries when the link ends.
        opt default_outcome: Option<Value>,
        /// Outcomes the source supports.
        opt outcomes: Option<Vec<Symbol>>,
        /// Extension capabilities of the source.
        opt capabilities: Option<Vec<Symbol>>,
    }
}

composite! {
    /// The target of a link (0x29): where messages go.
    pub struct Target = 0x29, "amqp:target:list" {
        /// The address of the target node.
        opt address: Option<String>,
        /// Terminus durability: 0 none (default), 1 configuration, 2 unsettled state.
        def durable: u32 = 0,
        /// Expiry policy: `link-detach`, `session-end` (default), `connection-close`, `never`.
        def expiry_policy: Symbol = SESSION_END,
        /// Seconds the terminus lives after its expiry trigger. Default: 0.
        def timeout: u32 = 0,
        /// Whether the peer is asked to create the node dynamically. Default: false.
        def dynamic: bool = false,
        /// Properties of the dynamically created node.
        opt dynamic_node_properties: Option<Map>,
        /// Extension capabilities of the target.
        opt capabilities: Option<Vec<Symbol>>,
    }
}

composite! {
    /// The transaction coordinator (0x30), a target for declare and discharge.
    pub struct Coordinator = 0x30, "amqp:coordinator:list" {
        /// Capabilities of the coordinator, such as `amqp:local-transactions`.
        opt capabilities: Option<Vec<Symbol>>,
    }
}

impl Source {
    /// A source with the given address and defaults otherwise.
    pub fn new(address: impl Into<String>) -> Self {
        Source {
            address: Some(address.into()),
            ..Default::default()
        }
    }
}

impl Target {
    /// A target with the given address and defaults otherwise.
    pub fn new(address: impl Into<String>) -> Self {
        Target {
            address: Some(address.into()),
            ..Default::default()
        }
    }
}

/// What an attach names as its target: a node or a transaction coordinator.
#[derive(Clone, Debug, PartialEq)]
pub enum AttachTarget {
    /// An ordinary target node.
    Target(Target),
    /// A transaction coordinator.
    Coordinator(Coordinator),
}

impl AttachTarget {
    /// The target, unless this is a coordinator.
    pub fn as_target(&self) -> Option<&Target> {
        match self {
            AttachTarget::Target(t) => Some(t),
            AttachTarget::Coordinator(_) => None,
        }
    }
}

impl From<Target> for AttachTarget {
    fn from(t: Target) -> Self {
        AttachTarget::Target(t)
    }
}

impl Encode for AttachTarget {
    fn encoded_len(&self) -> usize {
        match self {
            AttachTarget::Target(t) => t.encoded_len(),
            AttachTarget::Coordinator(c) => c.encoded_len(),
        }
    }
    fn encode(&self, buf: &mut impl BufMut) {
        match self {
            AttachTarget::Target(t) => t.encode(buf),
            AttachTarget::Coordinator(c) => c.encode(buf),
        }
    }
}

impl Decode for AttachTarget {
    fn decode(d: &mut Decoder) -> Result<Self, DecodeError> {
        match d.read_descriptor()? {
            Some(desc) if desc.matches(Target::CODE, Target::NAME) => {
                Target::decode_fields(d).map(AttachTarget::Target)
            }
            Some(desc) if desc.matches(Coordinator::CODE, Coordinator::NAME) => {
                Coordinator::decode_fields(d).map(AttachTarget::Coordinator)
            }
            Some(desc) => Err(DecodeError::new(DecodeErrorKind::UnknownDescriptor(
                format!("{desc:?} as a target"),
            ))),
            None => Err(DecodeError::new(DecodeErrorKind::UnexpectedType {
                expected: "target",
                found: d.peek_u8()?,
            })),
        }
    }
}
