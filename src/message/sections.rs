//! The sections of a message (spec 3.2): the header and properties
//! composites, the annotation and application-properties maps, the three
//! body section kinds and the footer, and [`MessageId`].

use crate::types::codes::{SMALLULONG, STR32, STR8, ULONG, ULONG0, UUID, VBIN32, VBIN8};
use crate::types::{Decode, Decoder, Encode, Map, Symbol, Timestamp, Uuid, Value};
use crate::{DecodeError, DecodeErrorKind};
use bytes::{BufMut, Bytes};
use std::fmt;

/// Annotations (spec 3.2.10, `annotations`): a map whose keys are symbols
/// (or ulongs, reserved), used by the delivery-annotations,
/// message-annotations and footer sections.
pub type Annotations = Map;

composite! {
    /// The header section (0x70, `amqp:header:list`): transport headers for
    /// a message (spec 3.2.1).
    pub struct Header = 0x70, "amqp:header:list" {
        /// Whether the message must survive intermediary restarts.
        /// Default: false.
        def durable: bool = false,
        /// Relative priority; 0 is lowest, 9 highest. Default: 4.
        def priority: u8 = 4,
        /// Time to live in milliseconds. Default: none (no expiry).
        opt ttl: Option<u32>,
        /// Whether no previous acquirer has seen the message. Default: false.
        def first_acquirer: bool = false,
        /// The number of earlier unsuccessful delivery attempts. Default: 0.
        def delivery_count: u32 = 0,
    }
}

composite! {
    /// The properties section (0x73, `amqp:properties:list`): the immutable
    /// properties of a message (spec 3.2.4). Every field defaults to none.
    pub struct Properties = 0x73, "amqp:properties:list" {
        /// Application message identifier. Default: none.
        opt message_id: Option<MessageId>,
        /// The identity of the user responsible for producing the message.
        /// Default: none.
        opt user_id: Option<Bytes>,
        /// The address of the node the message is destined for. Default: none.
        opt to: Option<String>,
        /// A summary of the message content. Default: none.
        opt subject: Option<String>,
        /// The address of the node to send replies to. Default: none.
        opt reply_to: Option<String>,
        /// Client-specific id to mark a message as a reply or correlate it
        /// with another. Default: none.
        opt correlation_id: Option<MessageId>,
        /// The MIME type of a data body, such as `text/plain`. Default: none.
        opt content_type: Option<Symbol>,
        /// The content encoding of a data body, such as `gzip`.
        /// Default: none.
        opt content_encoding: Option<Symbol>,
        /// The absolute time the message expires. Default: none.
        opt absolute_expiry_time: Option<Timestamp>,
        /// The absolute time the message was created. Default: none.
        opt creation_time: Option<Timestamp>,
        /// The group the message belongs to. Default: none.
        opt group_id: Option<String>,
        /// The relative position of the message within its group.
        /// Default: none.
        opt group_sequence: Option<u32>,
        /// The group replies should go to. Default: none.
        opt reply_to_group_id: Option<String>,
    }
}

/// A message id or correlation id (spec 3.2.11-3.2.14): a `ulong`, `uuid`,
/// `binary` or `string`, encoded as the plain primitive.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum MessageId {
    /// `message-id-ulong`.
    Ulong(u64),
    /// `message-id-uuid`.
    Uuid(Uuid),
    /// `message-id-binary`.
    Binary(Bytes),
    /// `message-id-string`.
    String(String),
}

impl MessageId {
    /// The string, if this is a string id.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MessageId::String(s) => Some(s),
            _ => None,
        }
    }
}

impl fmt::Display for MessageId {
    /// Ulongs in decimal, uuids hyphenated, binaries in lowercase hex,
    /// strings as they are.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MessageId::Ulong(v) => write!(f, "{v}"),
            MessageId::Uuid(u) => write!(f, "{u}"),
            MessageId::Binary(b) => b.iter().try_for_each(|x| write!(f, "{x:02x}")),
            MessageId::String(s) => f.write_str(s),
        }
    }
}

impl From<u64> for MessageId {
    fn from(v: u64) -> Self {
        MessageId::Ulong(v)
    }
}

impl From<Uuid> for MessageId {
    fn from(v: Uuid) -> Self {
        MessageId::Uuid(v)
    }
}

impl From<Bytes> for MessageId {
    fn from(v: Bytes) -> Self {
        MessageId::Binary(v)
    }
}

impl From<String> for MessageId {
    fn from(v: String) -> Self {
        MessageId::String(v)
    }
}

impl From<&str> for MessageId {
    fn from(v: &str) -> Self {
        MessageId::String(v.to_owned())
    }
}

impl From<MessageId> for Value {
    fn from(id: MessageId) -> Self {
        match id {
            MessageId::Ulong(v) => Value::Ulong(v),
            MessageId::Uuid(v) => Value::Uuid(v),
            MessageId::Binary(v) => Value::Binary(v),
            MessageId::String(v) => Value::String(v),
        }
    }
}

impl Encode for MessageId {
    fn encoded_len(&self) -> usize {
        match self {
            MessageId::Ulong(v) => v.encoded_len(),
            MessageId::Uuid(v) => v.encoded_len(),
            MessageId::Binary(v) => v.encoded_len(),
            MessageId::String(v) => v.encoded_len(),
        }
    }
    fn encode(&self, buf: &mut impl BufMut) {
        match self {
            MessageId::Ulong(v) => v.encode(buf),
            MessageId::Uuid(v) => v.encode(buf),
            MessageId::Binary(v) => v.encode(buf),
            MessageId::String(v) => v.encode(buf),
        }
    }
}

impl Decode for MessageId {
    fn decode(d: &mut Decoder) -> Result<Self, DecodeError> {
        match d.peek_u8()? {
            ULONG0 | SMALLULONG | ULONG => u64::decode(d).map(MessageId::Ulong),
            VBIN8 | VBIN32 => Bytes::decode(d).map(MessageId::Binary),
            STR8 | STR32 => String::decode(d).map(MessageId::String),
            UUID => {
                d.read_u8()?;
                d.read_array().map(|u| MessageId::Uuid(Uuid(u)))
            }
            found => Err(DecodeError::new(DecodeErrorKind::UnexpectedType {
                expected: "message-id",
                found,
            })),
        }
    }
}

/// Writes the descriptor `0x00 0x53 code` of a message section.
pub(crate) fn put_section_descriptor(buf: &mut impl BufMut, code: u64) {
    buf.put_slice(&[0x00, 0x53, code as u8]);
}

/// Reads the descriptor of a message section and returns its numeric code
/// (symbolic descriptors are mapped to their codes); unknown descriptors and
/// undescribed values are errors.
pub(crate) fn read_section_code(d: &mut Decoder) -> Result<u64, DecodeError> {
    // Fast path: the `0x00 0x53 code` form every implementation sends.
    if let &[0x00, 0x53, code @ 0x70..=0x78, ..] = d.rest() {
        d.skip(3)?;
        return Ok(code as u64);
    }
    match d.read_descriptor()? {
        Some(desc) => {
            for (code, name) in SECTION_NAMES {
                if desc.matches(code, name) {
                    return Ok(code);
                }
            }
            Err(DecodeError::new(DecodeErrorKind::UnknownDescriptor(
                format!("{desc:?} where a message section was expected"),
            )))
        }
        None => Err(DecodeError::new(DecodeErrorKind::UnexpectedType {
            expected: "message section",
            found: d.peek_u8().unwrap_or(0),
        })),
    }
}

const SECTION_NAMES: [(u64, &str); 9] = [
    (Header::CODE, Header::NAME),
    (DeliveryAnnotations::CODE, DeliveryAnnotations::NAME),
    (MessageAnnotations::CODE, MessageAnnotations::NAME),
    (Properties::CODE, Properties::NAME),
    (ApplicationProperties::CODE, ApplicationProperties::NAME),
    (Data::CODE, Data::NAME),
    (AmqpSequence::CODE, AmqpSequence::NAME),
    (AmqpValue::CODE, AmqpValue::NAME),
    (Footer::CODE, Footer::NAME),
];

/// Decodes the value of an amqp-sequence section: a list.
pub(crate) fn decode_sequence(d: &mut Decoder) -> Result<Vec<Value>, DecodeError> {
    use crate::types::codes::{LIST0, LIST32, LIST8};
    match d.peek_u8()? {
        LIST0 | LIST8 | LIST32 => match d.read_value()? {
            Value::List(items) => Ok(items),
            _ => Err(DecodeError::new(DecodeErrorKind::InvalidValue("list"))),
        },
        found => Err(DecodeError::new(DecodeErrorKind::UnexpectedType {
            expected: "list",
            found,
        })),
    }
}

macro_rules! section {
    (
        $(#[$meta:meta])*
        $name:ident($ty:ty) = $code:literal, $sym:literal, $decode:expr
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Default)]
        pub struct $name(pub $ty);

        impl $name {
            /// The numeric descriptor of this section.
            pub const CODE: u64 = $code;
            /// The symbolic descriptor of this section.
            pub const NAME: &'static str = $sym;
        }

        impl Encode for $name {
            fn encoded_len(&self) -> usize {
                3 + self.0.encoded_len()
            }
            fn encode(&self, buf: &mut impl BufMut) {
                put_section_descriptor(buf, $code);
                self.0.encode(buf);
            }
        }

        impl Decode for $name {
            fn decode(d: &mut Decoder) -> Result<Self, DecodeError> {
                match d.read_descriptor()? {
                    Some(desc) if desc.matches($code, $sym) => {
                        let f: fn(&mut Decoder) -> Result<$ty, DecodeError> = $decode;
                        f(d).map($name)
                    }
                    Some(desc) => Err(DecodeError::new(DecodeErrorKind::UnknownDescriptor(
                        format!("{desc:?} where {} was expected", $sym),
                    ))),
                    None => Err(DecodeError::new(DecodeErrorKind::UnexpectedType {
                        expected: $sym,
                        found: d.peek_u8().unwrap_or(0),
                    })),
                }
            }
        }
    };
}

section! {
    /// The delivery-annotations section (0x71, `amqp:delivery-annotations:map`):
    /// annotations for the next hop only (spec 3.2.2).
    DeliveryAnnotations(Annotations) = 0x71, "amqp:delivery-annotations:map", Map::decode
}

section! {
    /// The message-annotations section (0x72, `amqp:message-annotations:map`):
    /// annotations for infrastructure along the whole route (spec 3.2.3).
    MessageAnnotations(Annotations) = 0x72, "amqp:message-annotations:map", Map::decode
}

section! {
    /// The application-properties section (0x74,
    /// `amqp:application-properties:map`): application data, keyed by
    /// strings, with simple values (spec 3.2.5).
    ApplicationProperties(Map) = 0x74, "amqp:application-properties:map", Map::decode
}

section! {
    /// A data section (0x75, `amqp:data:binary`): opaque application data
    /// (spec 3.2.6). Decoding borrows from the input.
    Data(Bytes) = 0x75, "amqp:data:binary", Bytes::decode
}

section! {
    /// An amqp-sequence section (0x76, `amqp:amqp-sequence:list`): a list of
    /// values (spec 3.2.7).
    AmqpSequence(Vec<Value>) = 0x76, "amqp:amqp-sequence:list", decode_sequence
}

section! {
    /// The amqp-value section (0x77, `amqp:amqp-value:*`): a single value
    /// of any type (spec 3.2.8).
    AmqpValue(Value) = 0x77, "amqp:amqp-value:*", Value::decode
}

section! {
    /// The footer section (0x78, `amqp:footer:map`): annotations computed
    /// over the bare message, such as hashes or signatures (spec 3.2.9).
    Footer(Annotations) = 0x78, "amqp:footer:map", Map::decode
}
