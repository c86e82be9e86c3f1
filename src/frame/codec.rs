//! Frame encoding and decoding (spec 2.3): the 8-byte frame header, the
//! protocol headers, and a `tokio_util::codec::Decoder`-style frame decoder
//! that returns `Ok(None)` until a whole frame is buffered.

use super::*;
use crate::types::{Decode, Decoder, Descriptor, Encode, Limits};
use crate::{DecodeError, DecodeErrorKind};
use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Frame type of AMQP frames.
pub const FRAME_TYPE_AMQP: u8 = 0x00;
/// Frame type of SASL frames.
pub const FRAME_TYPE_SASL: u8 = 0x01;
/// The size of a frame header.
pub const HEADER_LEN: usize = 8;
/// The smallest max-frame-size a peer may announce (spec 2.7.1).
pub const MIN_MAX_FRAME_SIZE: usize = 512;

/// The protocol a protocol header announces (spec 2.2, 5.1, 5.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtocolId {
    /// `AMQP 0 1 0 0`: AMQP itself.
    Amqp = 0,
    /// `AMQP 2 1 0 0`: TLS.
    Tls = 2,
    /// `AMQP 3 1 0 0`: SASL.
    Sasl = 3,
}

impl ProtocolId {
    /// The 8 bytes of this protocol header.
    pub const fn header(self) -> [u8; 8] {
        [b'A', b'M', b'Q', b'P', self as u8, 1, 0, 0]
    }

    /// Parses a protocol header.
    pub fn from_header(b: [u8; 8]) -> Result<Self, DecodeError> {
        match b {
            [b'A', b'M', b'Q', b'P', id, 1, 0, 0] => match id {
                0 => Ok(ProtocolId::Amqp),
                2 => Ok(ProtocolId::Tls),
                3 => Ok(ProtocolId::Sasl),
                _ => Err(DecodeErrorKind::InvalidProtocolHeader(b).into()),
            },
            _ => Err(DecodeErrorKind::InvalidProtocolHeader(b).into()),
        }
    }
}

/// A decoded frame.
// Frames live for one dispatch; boxing the large performatives would cost an
// allocation per frame.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    /// An AMQP frame: a performative and, for transfers, message bytes.
    Amqp {
        /// The channel (session) the frame belongs to.
        channel: u16,
        /// The performative.
        performative: Performative,
        /// The bytes after the performative (message data of a transfer).
        payload: Bytes,
    },
    /// A SASL frame.
    Sasl(SaslFrame),
    /// An empty AMQP frame, used as a heartbeat.
    Empty,
}

macro_rules! performative_codec {
    ($($v:ident),*) => {
        impl Encode for Performative {
            fn encoded_len(&self) -> usize {
                match self { $(Performative::$v(p) => p.encoded_len(),)* }
            }
            fn encode(&self, buf: &mut impl BufMut) {
                match self { $(Performative::$v(p) => p.encode(buf),)* }
            }
        }

        impl Decode for Performative {
            fn decode(d: &mut Decoder) -> Result<Self, DecodeError> {
                let desc = read_known_descriptor(d, "performative")?;
                $(if desc.matches($v::CODE, $v::NAME) {
                    return $v::decode_fields(d).map(|p| Performative::$v(p.into()));
                })*
                Err(DecodeErrorKind::UnknownDescriptor(format!("{desc:?} as a performative")).into())
            }
        }

        $(impl From<$v> for Performative {
            fn from(p: $v) -> Self { Performative::$v(p.into()) }
        })*
    };
}

performative_codec!(
    Open,
    Begin,
    Attach,
    Flow,
    Transfer,
    Disposition,
    Detach,
    End,
    Close
);

fn read_known_descriptor(d: &mut Decoder, what: &'static str) -> Result<Descriptor, DecodeError> {
    match d.read_descriptor()? {
        Some(desc) => Ok(desc),
        None => Err(DecodeErrorKind::UnexpectedType {
            expected: what,
            found: d.peek_u8()?,
        }
        .into()),
    }
}

impl Encode for SaslFrame {
    fn encoded_len(&self) -> usize {
        match self {
            SaslFrame::Mechanisms(f) => f.encoded_len(),
            SaslFrame::Init(f) => f.encoded_len(),
            SaslFrame::Challenge(f) => f.encoded_len(),
            SaslFrame::Response(f) => f.encoded_len(),
            SaslFrame::Outcome(f) => f.encoded_len(),
        }
    }
    fn encode(&self, buf: &mut impl BufMut) {
        match self {
            SaslFrame::Mechanisms(f) => f.encode(buf),
            SaslFrame::Init(f) => f.encode(buf),
            SaslFrame::Challenge(f) => f.encode(buf),
            SaslFrame::Response(f) => f.encode(buf),
            SaslFrame::Outcome(f) => f.encode(buf),
        }
    }
}

impl Decode for SaslFrame {
    fn decode(d: &mut Decoder) -> Result<Self, DecodeError> {
        let desc = read_known_descriptor(d, "SASL frame")?;
        if desc.matches(SaslMechanisms::CODE, SaslMechanisms::NAME) {
            SaslMechanisms::decode_fields(d).map(SaslFrame::Mechanisms)
        } else if desc.matches(SaslInit::CODE, SaslInit::NAME) {
            SaslInit::decode_fields(d).map(SaslFrame::Init)
        } else if desc.matches(SaslChallenge::CODE, SaslChallenge::NAME) {
            SaslChallenge::decode_fields(d).map(SaslFrame::Challenge)
        } else if desc.matches(SaslResponse::CODE, SaslResponse::NAME) {
            SaslResponse::decode_fields(d).map(SaslFrame::Response)
        } else if desc.matches(SaslOutcome::CODE, SaslOutcome::NAME) {
            SaslOutcome::decode_fields(d).map(SaslFrame::Outcome)
        } else {
            Err(DecodeErrorKind::UnknownDescriptor(format!("{desc:?} as a SASL frame")).into())
        }
    }
}

/// Writes an AMQP frame: header, `body` (a performative) and `payload`.
pub fn encode_frame(buf: &mut BytesMut, channel: u16, body: &impl Encode, payload: &[u8]) {
    let size = HEADER_LEN + body.encoded_len() + payload.len();
    buf.reserve(size);
    buf.put_u32(size as u32);
    buf.put_slice(&[2, FRAME_TYPE_AMQP]);
    buf.put_u16(channel);
    body.encode(buf);
    buf.put_slice(payload);
}

/// Writes a SASL frame.
pub fn encode_sasl_frame(buf: &mut BytesMut, body: &SaslFrame) {
    let size = HEADER_LEN + body.encoded_len();
    buf.reserve(size);
    buf.put_u32(size as u32);
    buf.put_slice(&[2, FRAME_TYPE_SASL, 0, 0]);
    body.encode(buf);
}

/// Writes an empty AMQP frame (a heartbeat).
pub fn encode_empty_frame(buf: &mut BytesMut) {
    buf.put_slice(&[0, 0, 0, 8, 2, FRAME_TYPE_AMQP, 0, 0]);
}

/// Splits whole frames off a byte stream.
///
/// `decode` returns `Ok(None)` while the buffer holds less than one frame,
/// and rejects a frame whose announced size is above `max_frame_size`
/// before buffering it.
#[derive(Clone, Debug)]
pub struct FrameDecoder {
    max_frame_size: usize,
    limits: Limits,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder::new(u32::MAX as usize)
    }
}

impl FrameDecoder {
    /// A decoder accepting frames up to `max_frame_size` bytes.
    pub fn new(max_frame_size: usize) -> Self {
        FrameDecoder {
            max_frame_size,
            limits: Limits::default(),
        }
    }

    /// Changes the largest frame accepted.
    pub fn set_max_frame_size(&mut self, max: usize) {
        self.max_frame_size = max;
    }

    /// The largest frame accepted.
    pub fn max_frame_size(&self) -> usize {
        self.max_frame_size
    }

    /// Takes one whole frame off the front of `buf`, if there is one.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, DecodeError> {
        if buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let size = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        let doff = buf[4] as usize * 4;
        let frame_type = buf[5];
        let channel = u16::from_be_bytes([buf[6], buf[7]]);
        if size < HEADER_LEN {
            return Err(DecodeErrorKind::InvalidFrame("size smaller than the frame header").into());
        }
        if size > self.max_frame_size {
            return Err(DecodeErrorKind::FrameTooLarge {
                size,
                max: self.max_frame_size,
            }
            .into());
        }
        if doff < HEADER_LEN || doff > size {
            return Err(DecodeErrorKind::InvalidFrame("data offset out of range").into());
        }
        if frame_type != FRAME_TYPE_AMQP && frame_type != FRAME_TYPE_SASL {
            return Err(DecodeErrorKind::InvalidFrame("unknown frame type").into());
        }
        if buf.len() < size {
            // Grow towards the announced size, but never by more than 64 KiB
            // on the word of an untrusted header.
            buf.reserve((size - buf.len()).min(64 * 1024));
            return Ok(None);
        }
        let mut frame = buf.split_to(size).freeze();
        frame.advance(doff);
        if frame.is_empty() {
            return if frame_type == FRAME_TYPE_AMQP {
                Ok(Some(Frame::Empty))
            } else {
                Err(DecodeErrorKind::InvalidFrame("empty SASL frame").into())
            };
        }
        let mut d = Decoder::with_limits(frame, self.limits);
        if frame_type == FRAME_TYPE_SASL {
            let body = SaslFrame::decode(&mut d)?;
            d.finish()?;
            return Ok(Some(Frame::Sasl(body)));
        }
        let performative = Performative::decode(&mut d)?;
        let payload = d.into_rest();
        if !payload.is_empty() && !matches!(performative, Performative::Transfer(_)) {
            return Err(DecodeErrorKind::TrailingBytes(payload.len()).into());
        }
        Ok(Some(Frame::Amqp {
            channel,
            performative,
            payload,
        }))
    }
}
