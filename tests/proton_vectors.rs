//! Conformance against Qpid Proton: the vectors in `tests/vectors/`.
//!
//! - `proton_vectors.txt` (made by `gen_vectors.py` with Proton's `Data.encode()`):
//!   every non-message vector must decode to the expected [`Value`] written out
//!   in [`table`] below, and our encoding of that value must be byte-identical to
//!   Proton's, except for the vectors [`table`] marks [`Form::ProtonWider`], where
//!   Proton picks a wider (still valid) encoding than the smallest one we pick;
//!   for those our bytes must decode back to the same value and be shorter. A
//!   vector whose name is not in the table fails the test, so that new vectors
//!   can't be skipped silently. `msg_*` vectors are messages (sequences of
//!   sections): they decode with [`Message::decode`] and re-encode to bytes that
//!   decode to an equal message (their contents are checked in the message
//!   module's own tests).
//! - `proton_frames.txt` (made by `capture_frames.py`, real frames between Proton
//!   peers): every frame decodes with [`FrameDecoder`] to the performative its
//!   name says, and re-encodes to bytes that decode to the same frame; transfer
//!   payloads (reassembled across `more` transfers) decode as messages.

use aqueduct::frame::codec::{encode_empty_frame, encode_frame, encode_sasl_frame};
use aqueduct::frame::{Frame, FrameDecoder, Performative, ProtocolId, SaslFrame};
use aqueduct::types::{Array, Decoder, Described, Descriptor, Encode, Map, Symbol, Timestamp};
use aqueduct::types::{Uuid, Value};
use aqueduct::Message;
use bytes::{Bytes, BytesMut};
use std::collections::BTreeSet;
use std::path::Path;

/// How our encoding of a vector's value compares with Proton's bytes.
#[derive(Clone, Copy, Debug)]
enum Form {
    /// Byte-identical: Proton chose the smallest form, as we do.
    Same,
    /// Proton chose a wider encoding than ours, for the reason given.
    ProtonWider(&'static str),
}

use Form::*;

const LIST32: &str = "Data.encode() writes every non-empty list as list32; we use list8";
const MAP32: &str = "Data.encode() writes every map (even {}) as map32; we use map8";
const ARRAY32: &str = "Data.encode() writes every array as array32; we use array8";
const ARRAY32_VAR32: &str = "Data.encode() writes every array as array32, and arrays of \
     symbols/strings with the 32-bit element constructor (sym32 0xb3 / str32 0xb1, 4-byte \
     lengths); we use array8 and sym8/str8 elements when every element fits";

fn s(v: &str) -> Value {
    Value::String(v.into())
}

fn sym(v: &str) -> Value {
    Value::Symbol(Symbol::from(v.to_owned()))
}

fn list(items: Vec<Value>) -> Value {
    Value::List(items)
}

fn map(entries: Vec<(Value, Value)>) -> Value {
    Value::Map(Map(entries))
}

fn described(d: impl Into<Descriptor>, v: Value) -> Value {
    Value::Described(Box::new(Described::new(d, v)))
}

fn array(code: u8, items: Vec<Value>) -> Value {
    Value::Array(Array::new(code, items))
}

/// The expected value of every non-message vector, and how our bytes compare.
fn table() -> Vec<(&'static str, Value, Form)> {
    let bin300: Vec<u8> = (0..300).map(|i| (i % 256) as u8).collect();
    vec![
        // null and boolean
        ("null", Value::Null, Same),
        ("bool_true", Value::Boolean(true), Same),
        ("bool_false", Value::Boolean(false), Same),
        // unsigned integers
        ("ubyte_0", Value::Ubyte(0), Same),
        ("ubyte_255", Value::Ubyte(255), Same),
        ("ushort_0", Value::Ushort(0), Same),
        ("ushort_258", Value::Ushort(258), Same),
        ("ushort_65535", Value::Ushort(65535), Same),
        ("uint_0", Value::Uint(0), Same),
        ("uint_1", Value::Uint(1), Same),
        ("uint_255", Value::Uint(255), Same),
        ("uint_256", Value::Uint(256), Same),
        ("uint_max", Value::Uint(u32::MAX), Same),
        ("ulong_0", Value::Ulong(0), Same),
        ("ulong_1", Value::Ulong(1), Same),
        ("ulong_255", Value::Ulong(255), Same),
        ("ulong_256", Value::Ulong(256), Same),
        ("ulong_max", Value::Ulong(u64::MAX), Same),
        // signed integers
        ("byte_0", Value::Byte(0), Same),
        ("byte_1", Value::Byte(1), Same),
        ("byte_neg1", Value::Byte(-1), Same),
        ("byte_127", Value::Byte(127), Same),
        ("byte_neg128", Value::Byte(-128), Same),
        ("short_0", Value::Short(0), Same),
        ("short_neg1", Value::Short(-1), Same),
        ("short_127", Value::Short(127), Same),
        ("short_neg128", Value::Short(-128), Same),
        ("short_neg129", Value::Short(-129), Same),
        ("short_max", Value::Short(i16::MAX), Same),
        ("short_min", Value::Short(i16::MIN), Same),
        ("int_0", Value::Int(0), Same),
        ("int_1", Value::Int(1), Same),
        ("int_neg1", Value::Int(-1), Same),
        ("int_127", Value::Int(127), Same),
        ("int_128", Value::Int(128), Same),
        ("int_neg128", Value::Int(-128), Same),
        ("int_neg129", Value::Int(-129), Same),
        ("int_max", Value::Int(i32::MAX), Same),
        ("int_min", Value::Int(i32::MIN), Same),
        ("long_0", Value::Long(0), Same),
        ("long_1", Value::Long(1), Same),
        ("long_neg1", Value::Long(-1), Same),
        ("long_127", Value::Long(127), Same),
        ("long_128", Value::Long(128), Same),
        ("long_neg128", Value::Long(-128), Same),
        ("long_neg129", Value::Long(-129), Same),
        ("long_2pow40", Value::Long(1 << 40), Same),
        ("long_max", Value::Long(i64::MAX), Same),
        ("long_min", Value::Long(i64::MIN), Same),
        // floating point and decimals (bit patterns are checked by the byte comparison:
        // -0.0 == 0.0 under PartialEq)
        ("float_1_5", Value::Float(1.5), Same),
        ("float_neg0", Value::Float(-0.0), Same),
        ("double_neg2_25", Value::Double(-2.25), Same),
        ("double_inf", Value::Double(f64::INFINITY), Same),
        (
            "decimal32_bits",
            Value::Decimal32([0x22, 0x50, 0x00, 0x01]),
            Same,
        ),
        (
            "decimal64_bits",
            Value::Decimal64(0x2238000000000001u64.to_be_bytes()),
            Same,
        ),
        (
            "decimal128_bits",
            Value::Decimal128(std::array::from_fn(|i| i as u8)),
            Same,
        ),
        // char, timestamp, uuid
        ("char_a", Value::Char('a'), Same),
        ("char_e_acute", Value::Char('\u{e9}'), Same),
        ("char_non_bmp", Value::Char('\u{1f600}'), Same),
        (
            "timestamp_1700000000000",
            Value::Timestamp(Timestamp(1_700_000_000_000)),
            Same,
        ),
        ("timestamp_0", Value::Timestamp(Timestamp(0)), Same),
        (
            "uuid",
            Value::Uuid(Uuid(
                0x12345678_9abc_def0_1234_56789abcdef0u128.to_be_bytes(),
            )),
            Same,
        ),
        // binary
        ("binary_empty", Value::Binary(Bytes::new()), Same),
        (
            "binary_3",
            Value::Binary(Bytes::from_static(&[0, 1, 2])),
            Same,
        ),
        ("binary_300", Value::Binary(Bytes::from(bin300)), Same),
        // string
        ("string_empty", s(""), Same),
        ("string_hello", s("hello"), Same),
        ("string_300", s(&"0123456789".repeat(30)), Same),
        ("string_hello_accent", s("h\u{e9}llo"), Same),
        ("string_non_bmp", s("a\u{1f600}b"), Same),
        // symbol
        ("symbol_empty", sym(""), Same),
        ("symbol_foo", sym("foo"), Same),
        ("symbol_300", sym(&"abcdefghij".repeat(30)), Same),
        // list
        ("list_empty", list(vec![]), Same),
        (
            "list_int_string_bool",
            list(vec![Value::Int(1), s("a"), Value::Boolean(true)]),
            ProtonWider(LIST32),
        ),
        // 300 items: list32 is the smallest form, so the bytes agree.
        (
            "list_300_ints",
            list((0..300).map(Value::Int).collect()),
            Same,
        ),
        ("list_null", list(vec![Value::Null]), ProtonWider(LIST32)),
        (
            "list_nested",
            list(vec![
                list(vec![]),
                list(vec![Value::Int(1)]),
                list(vec![list(vec![s("x")])]),
                list(vec![Value::Int(2), Value::Int(3)]),
            ]),
            ProtonWider(LIST32),
        ),
        // map
        ("map_empty", map(vec![]), ProtonWider(MAP32)),
        (
            "map_string_keys",
            map(vec![(s("a"), Value::Int(1)), (s("b"), Value::Null)]),
            ProtonWider(MAP32),
        ),
        (
            "map_symbol_keys",
            map(vec![(sym("x-opt-a"), s("b")), (sym("k"), Value::Long(1))]),
            ProtonWider(MAP32),
        ),
        (
            "map_nested",
            map(vec![(
                s("m"),
                map(vec![(s("n"), list(vec![Value::Ubyte(1)]))]),
            )]),
            ProtonWider(MAP32),
        ),
        // array (codes are the widest code of the element type, as decoded)
        (
            "array_int",
            array(0x71, vec![Value::Int(1), Value::Int(2), Value::Int(3)]),
            ProtonWider(ARRAY32),
        ),
        ("array_int_empty", array(0x71, vec![]), ProtonWider(ARRAY32)),
        (
            "array_symbol",
            array(0xb3, vec![sym("a"), sym("bb"), sym("ccc")]),
            ProtonWider(ARRAY32_VAR32),
        ),
        (
            "array_string",
            array(0xb1, vec![s("hello"), s("world")]),
            ProtonWider(ARRAY32_VAR32),
        ),
        (
            "array_ulong",
            array(
                0x80,
                vec![Value::Ulong(0), Value::Ulong(1), Value::Ulong(256)],
            ),
            ProtonWider(ARRAY32),
        ),
        (
            "array_bool",
            array(0x56, vec![Value::Boolean(true), Value::Boolean(false)]),
            ProtonWider(ARRAY32),
        ),
        // described types
        (
            "described_symbol_string",
            described("example:thing", s("value")),
            Same,
        ),
        (
            "described_ulong_list",
            described(0x70u64, list(vec![Value::Boolean(true), Value::Ubyte(5)])),
            ProtonWider(LIST32),
        ),
        (
            "described_ulong_list_empty",
            described(0x70u64, list(vec![])),
            Same,
        ),
        ("described_ulong_string", described(0x77u64, s("hi")), Same),
    ]
}

/// The `(name, bytes)` vectors of a vector file, checking the file's format.
fn read_vectors(path: &Path) -> Vec<(String, Bytes)> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.starts_with('#') {
            continue;
        }
        let (name, hex) = line
            .split_once(' ')
            .unwrap_or_else(|| panic!("{path:?}:{}: not `name hex`: {line:?}", i + 1));
        assert!(
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "{path:?}:{}: bad name {name:?}",
            i + 1
        );
        assert!(seen.insert(name.to_owned()), "duplicate vector {name}");
        out.push((name.to_owned(), Bytes::from(unhex(hex))));
    }
    assert!(!out.is_empty(), "{path:?} holds no vectors");
    out
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn encode(v: &impl Encode) -> Vec<u8> {
    let mut b = Vec::with_capacity(v.encoded_len());
    v.encode(&mut b);
    assert_eq!(
        b.len(),
        v.encoded_len(),
        "encoded_len disagrees with encode"
    );
    b
}

fn decode_one(bytes: Bytes) -> Value {
    let mut d = Decoder::new(bytes);
    let v = d.read_value().expect("decode");
    d.finish().expect("whole vector consumed");
    v
}

fn vectors_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors"))
}

#[test]
fn proton_value_vectors() {
    let vectors = read_vectors(&vectors_dir().join("proton_vectors.txt"));
    let table = table();
    let names: BTreeSet<&str> = table.iter().map(|(n, _, _)| *n).collect();
    assert_eq!(names.len(), table.len(), "duplicate names in the table");
    let in_file: BTreeSet<&str> = vectors.iter().map(|(n, _)| n.as_str()).collect();
    for n in &names {
        assert!(in_file.contains(n), "table vector {n} is not in the file");
    }

    let mut messages = 0;
    for (name, bytes) in &vectors {
        if name.starts_with("msg_") {
            check_message_sections(name, bytes.clone());
            messages += 1;
            continue;
        }
        let Some((_, expected, form)) = table.iter().find(|(n, _, _)| n == name) else {
            panic!(
                "vector {name} ({}) has no expected value: add it to table() in {}",
                hex(bytes),
                file!()
            );
        };
        let got = decode_one(bytes.clone());
        assert_eq!(&got, expected, "{name}: decoded value");
        let ours = encode(expected);
        match form {
            Same => assert_eq!(
                hex(&ours),
                hex(bytes),
                "{name}: our encoding differs from Proton's"
            ),
            ProtonWider(why) => {
                assert_ne!(
                    hex(&ours),
                    hex(bytes),
                    "{name}: now byte-identical to Proton; mark it Same (was: {why})"
                );
                assert!(
                    ours.len() < bytes.len(),
                    "{name}: ours {} is not smaller than Proton's {}",
                    hex(&ours),
                    hex(bytes)
                );
                assert_eq!(&decode_one(Bytes::from(ours)), expected, "{name}: ours");
            }
        }
        // And re-encoding what we decoded gives our bytes again.
        assert_eq!(hex(&encode(&got)), hex(&encode(expected)), "{name}");
    }
    assert!(messages > 0, "no msg_* vectors");
}

/// A message vector is a sequence of described sections with the message
/// section descriptors 0x70..=0x78, in order; each re-encodes to a value that
/// decodes equal.
fn check_message_sections(name: &str, bytes: Bytes) {
    let mut d = Decoder::new(bytes.clone());
    let mut last = 0x6f;
    while !d.is_empty() {
        let v = d.read_value().unwrap_or_else(|e| panic!("{name}: {e}"));
        let Value::Described(desc) = &v else {
            panic!("{name}: section is not described: {v:?}");
        };
        let Descriptor::Code(code) = desc.descriptor else {
            panic!("{name}: symbolic section descriptor {:?}", desc.descriptor);
        };
        assert!((0x70..=0x78).contains(&code), "{name}: section 0x{code:x}");
        // data (0x75) and amqp-sequence (0x76) sections may repeat.
        assert!(
            code > last || (code == last && (code == 0x75 || code == 0x76)),
            "{name}: section 0x{code:x} out of order"
        );
        last = code;
        assert_eq!(decode_one(Bytes::from(encode(&v))), v, "{name}");
    }
    check_message(name, bytes);
}

/// A whole message: decodes, and re-encodes (smallest forms, so never longer
/// than Proton's) to bytes that decode to an equal message.
fn check_message(name: &str, payload: Bytes) -> Message {
    let msg = Message::decode(payload.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut ours = Vec::with_capacity(msg.encoded_len());
    msg.encode(&mut ours);
    assert_eq!(ours.len(), msg.encoded_len(), "{name}: encoded_len");
    assert!(
        ours.len() <= payload.len(),
        "{name}: ours {} longer than Proton's {}",
        hex(&ours),
        hex(&payload)
    );
    let back = Message::decode(Bytes::from(ours)).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(back, msg, "{name}: re-encoded message");
    msg
}

// ---- frames -------------------------------------------------------------------

/// The performative or SASL frame name (as `capture_frames.py` names them).
fn frame_kind(f: &Frame) -> &'static str {
    match f {
        Frame::Empty => "empty",
        Frame::Sasl(s) => match s {
            SaslFrame::Mechanisms(_) => "sasl_mechanisms",
            SaslFrame::Init(_) => "sasl_init",
            SaslFrame::Challenge(_) => "sasl_challenge",
            SaslFrame::Response(_) => "sasl_response",
            SaslFrame::Outcome(_) => "sasl_outcome",
        },
        Frame::Amqp { performative, .. } => match performative {
            Performative::Open(_) => "open",
            Performative::Begin(_) => "begin",
            Performative::Attach(_) => "attach",
            Performative::Flow(_) => "flow",
            Performative::Transfer(_) => "transfer",
            Performative::Disposition(_) => "disposition",
            Performative::Detach(_) => "detach",
            Performative::End(_) => "end",
            Performative::Close(_) => "close",
        },
    }
}

/// Decodes exactly one whole frame from `bytes`.
fn decode_frame(name: &str, bytes: &[u8]) -> Frame {
    let mut buf = BytesMut::from(bytes);
    let f = FrameDecoder::default()
        .decode(&mut buf)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .unwrap_or_else(|| panic!("{name}: incomplete frame"));
    assert!(
        buf.is_empty(),
        "{name}: {} bytes after the frame",
        buf.len()
    );
    // Fed byte by byte, the decoder waits and then yields the same frame.
    let mut dec = FrameDecoder::default();
    let mut buf = BytesMut::new();
    for (i, b) in bytes.iter().enumerate() {
        buf.extend_from_slice(&[*b]);
        let r = dec.decode(&mut buf).unwrap();
        if i + 1 < bytes.len() {
            assert!(r.is_none(), "{name}: a frame before the last byte");
        } else {
            assert_eq!(r.as_ref(), Some(&f), "{name}: byte-by-byte");
        }
    }
    f
}

fn encode_whole_frame(f: &Frame) -> BytesMut {
    let mut buf = BytesMut::new();
    match f {
        Frame::Amqp {
            channel,
            performative,
            payload,
        } => encode_frame(&mut buf, *channel, performative, payload),
        Frame::Sasl(s) => encode_sasl_frame(&mut buf, s),
        Frame::Empty => encode_empty_frame(&mut buf),
    }
    buf
}

#[test]
fn proton_frame_vectors() {
    // `PROTON_FRAMES` points the test at another capture (for example a fresh one).
    let path = match std::env::var_os("PROTON_FRAMES") {
        Some(p) => p.into(),
        None => vectors_dir().join("proton_frames.txt"),
    };
    if !path.exists() {
        eprintln!("{path:?} does not exist: no frame vectors to check");
        return;
    }
    let vectors = read_vectors(&path);
    let (mut same, mut shorter, mut messages, mut incomplete) = (0, 0, 0, 0);
    // The payload of a delivery split over transfers with more=true, so far.
    let mut partial: Option<BytesMut> = None;
    for (name, bytes) in &vectors {
        if let Some(proto) = name.strip_prefix("header_") {
            let id = ProtocolId::from_header(bytes[..].try_into().expect("8 bytes"))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let expected = match proto.rsplit_once('_').map(|(p, _)| p) {
                Some("amqp") => ProtocolId::Amqp,
                Some("sasl") => ProtocolId::Sasl,
                Some("tls") => ProtocolId::Tls,
                _ => panic!("{name}: unknown protocol header name"),
            };
            assert_eq!(id, expected, "{name}");
            assert_eq!(&id.header()[..], &bytes[..], "{name}");
            continue;
        }
        let kind = name
            .strip_prefix("frame_")
            .and_then(|k| k.rsplit_once('_'))
            .filter(|(_, n)| n.parse::<u32>().is_ok())
            .map(|(k, _)| k)
            .unwrap_or_else(|| panic!("unknown frame vector name {name}"));
        let frame = decode_frame(name, bytes);
        assert_eq!(frame_kind(&frame), kind, "{name}: {frame:?}");
        if let Frame::Amqp {
            performative: Performative::Transfer(t),
            payload,
            ..
        } = &frame
        {
            let multi = partial.is_some();
            let mut whole = partial.take().unwrap_or_default();
            whole.extend_from_slice(payload);
            if t.more {
                partial = Some(whole);
            } else if !t.aborted && !whole.is_empty() {
                // The file records byte-identical frames once, so a delivery
                // whose middle fragments are identical can't be reassembled.
                if !multi || Message::decode(whole.clone().freeze()).is_ok() {
                    check_message(name, whole.freeze());
                    messages += 1;
                } else {
                    incomplete += 1;
                }
            }
        }
        let ours = encode_whole_frame(&frame);
        let again = decode_frame(name, &ours);
        assert_eq!(again, frame, "{name}: re-encoded frame");
        // We choose the smallest encodings; Proton's may be wider, never narrower.
        assert!(
            ours.len() <= bytes.len(),
            "{name}: ours {} is longer than Proton's {}",
            hex(&ours),
            hex(bytes)
        );
        if ours[..] == bytes[..] {
            same += 1;
        } else {
            shorter += 1;
            eprintln!(
                "{name}: proton {}\n{name}: ours   {}",
                hex(bytes),
                hex(&ours)
            );
        }
    }
    assert!(partial.is_none(), "a delivery with more=true never ends");
    eprintln!(
        "{} frame vectors: {same} byte-identical, {shorter} shorter than Proton's; \
         {messages} messages decoded, {incomplete} multi-frame deliveries with \
         deduplicated fragments",
        vectors.len()
    );
}
