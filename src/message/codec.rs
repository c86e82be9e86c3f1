//! Encoding and decoding of a whole message: its sections in spec order.

use super::body::Body;
use super::sections::{
    decode_sequence, put_section_descriptor, read_section_code, AmqpSequence, AmqpValue,
    ApplicationProperties, Data, DeliveryAnnotations, Footer, Header, MessageAnnotations,
    Properties,
};
use super::Message;
use crate::types::{Decode, Decoder, Encode, Limits, Map, Value};
use crate::{DecodeError, DecodeErrorKind};
use bytes::{BufMut, Bytes};

/// The encoded length of a section with a map or value payload.
fn section_len(v: &impl Encode) -> usize {
    3 + v.encoded_len()
}

fn encode_section(buf: &mut impl BufMut, code: u64, v: &impl Encode) {
    put_section_descriptor(buf, code);
    v.encode(buf);
}

/// Where a section stands in the spec's order; a message's sections must
/// have strictly increasing ranks, except that data and amqp-sequence
/// sections repeat.
fn rank(code: u64) -> u8 {
    match code {
        Header::CODE => 1,
        DeliveryAnnotations::CODE => 2,
        MessageAnnotations::CODE => 3,
        Properties::CODE => 4,
        ApplicationProperties::CODE => 5,
        Data::CODE | AmqpSequence::CODE | AmqpValue::CODE => 6,
        _ => 7, // Footer: read_section_code returns no other code.
    }
}

fn out_of_order(code: u64) -> DecodeError {
    let name = match code {
        Header::CODE => "header",
        DeliveryAnnotations::CODE => "delivery-annotations",
        MessageAnnotations::CODE => "message-annotations",
        Properties::CODE => "properties",
        ApplicationProperties::CODE => "application-properties",
        Data::CODE => "data",
        AmqpSequence::CODE => "amqp-sequence",
        AmqpValue::CODE => "amqp-value",
        _ => "footer",
    };
    DecodeError::new(DecodeErrorKind::UnknownDescriptor(format!(
        "{name} section out of order or repeated"
    )))
}

impl Message {
    /// The number of bytes [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        let mut n = 0;
        if let Some(h) = &self.header {
            n += h.encoded_len();
        }
        if let Some(m) = &self.delivery_annotations {
            n += section_len(m);
        }
        if let Some(m) = &self.message_annotations {
            n += section_len(m);
        }
        if let Some(p) = &self.properties {
            n += p.encoded_len();
        }
        if let Some(m) = &self.application_properties {
            n += section_len(m);
        }
        n += match &self.body {
            Body::Empty => 0,
            Body::Data(sections) => sections.iter().map(section_len).sum(),
            Body::Sequence(sections) => sections.iter().map(section_len).sum(),
            Body::Value(v) => section_len(v),
        };
        if let Some(m) = &self.footer {
            n += section_len(m);
        }
        n
    }

    /// Writes the message's sections in spec order (header,
    /// delivery-annotations, message-annotations, properties,
    /// application-properties, body, footer), omitting absent ones, each in
    /// its smallest encoding.
    ///
    /// This does not allocate: to encode into a reused `BytesMut` without
    /// growing it piecemeal, reserve [`encoded_len`](Self::encoded_len)
    /// bytes first.
    pub fn encode(&self, buf: &mut impl BufMut) {
        if let Some(h) = &self.header {
            h.encode(buf);
        }
        if let Some(m) = &self.delivery_annotations {
            encode_section(buf, DeliveryAnnotations::CODE, m);
        }
        if let Some(m) = &self.message_annotations {
            encode_section(buf, MessageAnnotations::CODE, m);
        }
        if let Some(p) = &self.properties {
            p.encode(buf);
        }
        if let Some(m) = &self.application_properties {
            encode_section(buf, ApplicationProperties::CODE, m);
        }
        match &self.body {
            Body::Empty => {}
            Body::Data(sections) => {
                for s in sections {
                    encode_section(buf, Data::CODE, s);
                }
            }
            Body::Sequence(sections) => {
                for s in sections {
                    encode_section(buf, AmqpSequence::CODE, s);
                }
            }
            Body::Value(v) => encode_section(buf, AmqpValue::CODE, v),
        }
        if let Some(m) = &self.footer {
            encode_section(buf, Footer::CODE, m);
        }
    }

    /// Decodes a message from the payload of its transfer(s).
    ///
    /// Sections may use numeric or symbolic descriptors. They must come in
    /// spec order, each at most once, except that a body is one or more
    /// data sections, one or more amqp-sequence sections, or one amqp-value
    /// section (body kinds may not be mixed); a payload with no body section
    /// decodes with [`Body::Empty`]. Unknown sections, sections out of order
    /// and bytes after the last section are errors.
    ///
    /// Binary data (data sections, binary values) borrows from `payload`
    /// without copying.
    ///
    /// Decoding allocates at most 16 times the payload's length plus 64 KiB
    /// (the default [`Limits`]) and fails with
    /// [`DecodeErrorKind::AllocationLimit`] beyond: a payload of many tiny
    /// values (such as a list of a million nulls, one byte each on the wire
    /// and 56 bytes each decoded) is refused. To accept such payloads, use
    /// [`decode_with_limits`](Self::decode_with_limits).
    pub fn decode(payload: Bytes) -> Result<Message, DecodeError> {
        Self::decode_with_limits(payload, Limits::default())
    }

    /// Decodes only the properties section of an encoded message (`None` if
    /// it has none): what a router needs to route a message by its `to`
    /// without decoding the rest. The sections before it (header and
    /// annotations) are skipped, checked only for well-formedness; the
    /// sections after it (application properties, body, footer) are not
    /// read at all.
    pub fn decode_properties(payload: &Bytes) -> Result<Option<Properties>, DecodeError> {
        let mut d = Decoder::new(payload.clone());
        let mut last_rank = 0u8;
        while !d.is_empty() {
            let code = read_section_code(&mut d)?;
            let r = rank(code);
            if r <= last_rank {
                return Err(out_of_order(code));
            }
            last_rank = r;
            match code {
                Header::CODE | DeliveryAnnotations::CODE | MessageAnnotations::CODE => {
                    d.skip_value()?
                }
                Properties::CODE => return Properties::decode_fields(&mut d).map(Some),
                _ => return Ok(None),
            }
        }
        Ok(None)
    }

    /// [`decode`](Self::decode) with other [`Limits`] than the defaults
    /// (nesting depth, value size, allocation budget).
    pub fn decode_with_limits(payload: Bytes, limits: Limits) -> Result<Message, DecodeError> {
        let mut d = Decoder::with_limits(payload, limits);
        let mut msg = Message::default();
        let mut last_rank = 0u8;
        let mut last_code = 0u64;
        while !d.is_empty() {
            let code = read_section_code(&mut d)?;
            let r = rank(code);
            let repeat_ok = code == last_code && (code == Data::CODE || code == AmqpSequence::CODE);
            if r <= last_rank && !repeat_ok {
                return Err(out_of_order(code));
            }
            last_rank = r;
            last_code = code;
            match code {
                Header::CODE => msg.header = Some(Header::decode_fields(&mut d)?),
                DeliveryAnnotations::CODE => msg.delivery_annotations = Some(Map::decode(&mut d)?),
                MessageAnnotations::CODE => msg.message_annotations = Some(Map::decode(&mut d)?),
                Properties::CODE => msg.properties = Some(Properties::decode_fields(&mut d)?),
                ApplicationProperties::CODE => {
                    msg.application_properties = Some(Map::decode(&mut d)?)
                }
                Data::CODE => {
                    // The slot in the body's `Vec`, with room for its growth.
                    d.charge(2 * std::mem::size_of::<Bytes>())?;
                    let b = Bytes::decode(&mut d)?;
                    match &mut msg.body {
                        Body::Data(sections) => sections.push(b),
                        _ => msg.body = Body::Data(vec![b]),
                    }
                }
                AmqpSequence::CODE => {
                    d.charge(2 * std::mem::size_of::<Vec<Value>>())?;
                    let items = decode_sequence(&mut d)?;
                    match &mut msg.body {
                        Body::Sequence(sections) => sections.push(items),
                        _ => msg.body = Body::Sequence(vec![items]),
                    }
                }
                AmqpValue::CODE => msg.body = Body::Value(Value::decode(&mut d)?),
                _ => msg.footer = Some(Map::decode(&mut d)?),
            }
        }
        Ok(msg)
    }
}
