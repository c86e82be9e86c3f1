//! [`Body`]: the body of a message.

use crate::types::{Map, Value};
use bytes::Bytes;

/// The body of a message (spec 3.2): one or more data sections, one or more
/// amqp-sequence sections, a single amqp-value section, or none at all.
///
/// Default: [`Body::Empty`].
///
/// Text and other AMQP values convert into [`Body::Value`]; byte buffers
/// into a single [`Body::Data`] section (as Qpid Proton does).
#[derive(Clone, Debug, PartialEq, Default)]
pub enum Body {
    /// No body section. The spec requires a body, but Qpid Proton sends
    /// messages without one, and so do we for this variant.
    #[default]
    Empty,
    /// Data sections (`amqp:data:binary`), each opaque bytes. Decoded
    /// sections borrow from the message payload.
    Data(Vec<Bytes>),
    /// Amqp-sequence sections (`amqp:amqp-sequence:list`), each a list.
    Sequence(Vec<Vec<Value>>),
    /// A single amqp-value section (`amqp:amqp-value:*`).
    Value(Value),
}

impl Body {
    /// Whether this is [`Body::Empty`].
    pub fn is_empty(&self) -> bool {
        matches!(self, Body::Empty)
    }

    /// The text of an amqp-value body holding a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Body::Value(Value::String(s)) => Some(s),
            _ => None,
        }
    }

    /// The bytes of a body made of exactly one data section.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Body::Data(sections) if sections.len() == 1 => Some(&sections[0]),
            _ => None,
        }
    }

    /// The value of an amqp-value body.
    pub fn as_value(&self) -> Option<&Value> {
        match self {
            Body::Value(v) => Some(v),
            _ => None,
        }
    }

    /// The sections of a data body.
    pub fn as_data(&self) -> Option<&[Bytes]> {
        match self {
            Body::Data(sections) => Some(sections),
            _ => None,
        }
    }

    /// The sections of an amqp-sequence body.
    pub fn as_sequence(&self) -> Option<&[Vec<Value>]> {
        match self {
            Body::Sequence(sections) => Some(sections),
            _ => None,
        }
    }
}

impl From<&str> for Body {
    fn from(s: &str) -> Self {
        Body::Value(Value::String(s.to_owned()))
    }
}

impl From<String> for Body {
    fn from(s: String) -> Self {
        Body::Value(Value::String(s))
    }
}

impl From<Vec<u8>> for Body {
    fn from(b: Vec<u8>) -> Self {
        Body::Data(vec![Bytes::from(b)])
    }
}

impl From<Bytes> for Body {
    fn from(b: Bytes) -> Self {
        Body::Data(vec![b])
    }
}

impl From<&'static [u8]> for Body {
    fn from(b: &'static [u8]) -> Self {
        Body::Data(vec![Bytes::from_static(b)])
    }
}

impl From<Value> for Body {
    fn from(v: Value) -> Self {
        Body::Value(v)
    }
}

impl From<Map> for Body {
    fn from(m: Map) -> Self {
        Body::Value(Value::Map(m))
    }
}

/// Prints the body as Proton's Python examples print `message.body`: a
/// string bare, a map as `{'sequence': 1}`, one data section as `b'..'`,
/// several as a list, sequences as lists, no body as `None`.
impl std::fmt::Display for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Body::Empty => f.write_str("None"),
            Body::Value(v) => v.fmt(f),
            Body::Data(sections) if sections.len() == 1 => {
                crate::types::bytes_repr(&sections[0], f)
            }
            Body::Data(sections) => {
                f.write_str("[")?;
                for (i, s) in sections.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    crate::types::bytes_repr(s, f)?;
                }
                f.write_str("]")
            }
            Body::Sequence(seqs) => {
                let lists: Vec<Value> = seqs.iter().map(|s| Value::List(s.clone())).collect();
                if lists.len() == 1 {
                    lists[0].fmt(f)
                } else {
                    Value::List(lists).fmt(f)
                }
            }
        }
    }
}
