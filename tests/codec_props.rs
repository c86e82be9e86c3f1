//! Property tests of the codec: arbitrary values and performatives round trip,
//! `encoded_len` matches what `encode` writes, and no input (random bytes,
//! truncated or mutated encodings, random frames) makes a decoder panic or
//! stall.
//!
//! More cases: `PROPTEST_CASES=100000 cargo test --release --test codec_props`.

use aqueduct::frame::codec::{encode_frame, encode_sasl_frame};
use aqueduct::frame::{
    condition, Accepted, AmqpError, Attach, AttachTarget, Coordinator, DeliveryState, Disposition,
    Flow, Frame, FrameDecoder, Modified, Open, Performative, RcvSettleMode, Received, Rejected,
    Role, SaslFrame, SaslInit, SaslMechanisms, SaslOutcome, SndSettleMode, Source, Target,
    Transfer,
};
use aqueduct::message::{Body, Header, MessageId, Properties};
use aqueduct::types::{
    Array, Decode, Decoder, Described, Descriptor, Encode, Map, Symbol, Timestamp, Uuid, Value,
};
use aqueduct::Message;
use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use std::time::{Duration, Instant};

// ---- strategies -------------------------------------------------------------

/// ASCII symbols, sometimes longer than 255 bytes (sym32).
fn symbol() -> impl Strategy<Value = Symbol> {
    prop_oneof![
        8 => "[ -~]{0,12}",
        1 => "[a-z]{250,300}",
    ]
    .prop_map(Symbol::from)
}

/// Unicode strings, sometimes longer than 255 bytes (str32).
fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => ".{0,12}",
        1 => ".{70,120}", // multi-byte chars: often > 255 bytes
        1 => "[0-9]{250,300}",
    ]
}

/// Binaries, sometimes longer than 255 bytes (vbin32).
fn binary() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        8 => vec(any::<u8>(), 0..16),
        1 => vec(any::<u8>(), 250..600),
    ]
    .prop_map(Bytes::from)
}

fn float() -> impl Strategy<Value = f32> {
    any::<f32>().prop_map(|f| if f.is_nan() { 0.5 } else { f })
}

fn double() -> impl Strategy<Value = f64> {
    any::<f64>().prop_map(|f| if f.is_nan() { 0.5 } else { f })
}

fn descriptor() -> impl Strategy<Value = Descriptor> {
    prop_oneof![
        any::<u64>().prop_map(Descriptor::Code),
        (0u64..=0xff).prop_map(Descriptor::Code),
        symbol().prop_map(Descriptor::Symbol),
    ]
}

/// Every scalar variant.
fn scalar() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Boolean),
        any::<u8>().prop_map(Value::Ubyte),
        any::<u16>().prop_map(Value::Ushort),
        any::<u32>().prop_map(Value::Uint),
        (0u32..300).prop_map(Value::Uint),
        any::<u64>().prop_map(Value::Ulong),
        (0u64..300).prop_map(Value::Ulong),
        any::<i8>().prop_map(Value::Byte),
        any::<i16>().prop_map(Value::Short),
        any::<i32>().prop_map(Value::Int),
        (-200i32..200).prop_map(Value::Int),
        any::<i64>().prop_map(Value::Long),
        (-200i64..200).prop_map(Value::Long),
        float().prop_map(Value::Float),
        double().prop_map(Value::Double),
        any::<[u8; 4]>().prop_map(Value::Decimal32),
        any::<[u8; 8]>().prop_map(Value::Decimal64),
        any::<[u8; 16]>().prop_map(Value::Decimal128),
        any::<char>().prop_map(Value::Char),
        any::<i64>().prop_map(|t| Value::Timestamp(Timestamp(t))),
        any::<[u8; 16]>().prop_map(|u| Value::Uuid(Uuid(u))),
        binary().prop_map(Value::Binary),
        string().prop_map(Value::String),
        symbol().prop_map(Value::Symbol),
    ]
    .boxed()
}

/// Elements of one scalar type, with the type's widest format code (the code
/// the decoder reports).
fn scalar_elements() -> BoxedStrategy<(u8, Vec<Value>)> {
    let n = 0usize..6;
    prop_oneof![
        vec(any::<bool>().prop_map(Value::Boolean), n.clone()).prop_map(|v| (0x56, v)),
        vec(any::<u8>().prop_map(Value::Ubyte), n.clone()).prop_map(|v| (0x50, v)),
        vec(any::<u16>().prop_map(Value::Ushort), n.clone()).prop_map(|v| (0x60, v)),
        vec(any::<u32>().prop_map(Value::Uint), n.clone()).prop_map(|v| (0x70, v)),
        vec(any::<u64>().prop_map(Value::Ulong), n.clone()).prop_map(|v| (0x80, v)),
        vec(any::<i8>().prop_map(Value::Byte), n.clone()).prop_map(|v| (0x51, v)),
        vec(any::<i16>().prop_map(Value::Short), n.clone()).prop_map(|v| (0x61, v)),
        vec(any::<i32>().prop_map(Value::Int), n.clone()).prop_map(|v| (0x71, v)),
        vec(any::<i64>().prop_map(Value::Long), n.clone()).prop_map(|v| (0x81, v)),
        vec(float().prop_map(Value::Float), n.clone()).prop_map(|v| (0x72, v)),
        vec(double().prop_map(Value::Double), n.clone()).prop_map(|v| (0x82, v)),
        vec(any::<[u8; 4]>().prop_map(Value::Decimal32), n.clone()).prop_map(|v| (0x74, v)),
        vec(any::<[u8; 8]>().prop_map(Value::Decimal64), n.clone()).prop_map(|v| (0x84, v)),
        vec(any::<[u8; 16]>().prop_map(Value::Decimal128), n.clone()).prop_map(|v| (0x94, v)),
        vec(any::<char>().prop_map(Value::Char), n.clone()).prop_map(|v| (0x73, v)),
        vec(
            any::<i64>().prop_map(|t| Value::Timestamp(Timestamp(t))),
            n.clone()
        )
        .prop_map(|v| (0x83, v)),
        vec(
            any::<[u8; 16]>().prop_map(|u| Value::Uuid(Uuid(u))),
            n.clone()
        )
        .prop_map(|v| (0x98, v)),
        vec(binary().prop_map(Value::Binary), n.clone()).prop_map(|v| (0xb0, v)),
        vec(string().prop_map(Value::String), n.clone()).prop_map(|v| (0xb1, v)),
        vec(symbol().prop_map(Value::Symbol), n.clone()).prop_map(|v| (0xb3, v)),
        // A few nulls (zero-width elements; the decoder bounds their count).
        vec(Just(Value::Null), 0..4).prop_map(|v| (0x40, v)),
        // Many small elements: more than 255 needs array32.
        vec(any::<i32>().prop_map(Value::Int), 250..300).prop_map(|v| (0x71, v)),
    ]
    .boxed()
}

fn make_array(elements: BoxedStrategy<(u8, Vec<Value>)>) -> BoxedStrategy<Value> {
    (proptest::option::weighted(0.2, descriptor()), elements)
        .prop_map(|(descriptor, (code, items))| {
            Value::Array(Array {
                descriptor,
                code,
                items,
            })
        })
        .boxed()
}

/// An array: a uniform element type (scalars, lists, maps or arrays; arrays
/// of arrays may have a different element type in each inner array), maybe
/// described.
fn array(inner: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
    let n = 0usize..4;
    let elements = prop_oneof![
        4 => scalar_elements(),
        1 => vec(vec(inner.clone(), 0..4).prop_map(Value::List), n.clone())
            .prop_map(|v| (0xd0, v)),
        1 => vec(map(inner), n.clone()).prop_map(|v| (0xd1, v)),
        1 => vec(make_array(scalar_elements()), n).prop_map(|v| (0xf0, v)),
    ]
    .boxed();
    make_array(elements)
}

fn map(inner: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
    vec((inner.clone(), inner), 0..5)
        .prop_map(|e| Value::Map(Map(e)))
        .boxed()
}

/// Any value: scalars, lists, maps, arrays and described values, nested up
/// to a few levels.
fn value() -> BoxedStrategy<Value> {
    scalar()
        .prop_recursive(3, 48, 6, |inner| {
            prop_oneof![
                vec(inner.clone(), 0..6).prop_map(Value::List),
                map(inner.clone()),
                array(inner.clone()),
                (descriptor(), inner)
                    .prop_map(|(d, v)| Value::Described(Box::new(Described::new(d, v)))),
            ]
        })
        .boxed()
}

// ---- helpers ----------------------------------------------------------------

fn encode(v: &impl Encode) -> Vec<u8> {
    let mut b = Vec::new();
    v.encode(&mut b);
    assert_eq!(b.len(), v.encoded_len(), "encoded_len() != bytes written");
    b
}

/// Reads values until the input ends or an error; must not panic.
fn decode_all(bytes: &[u8]) {
    let start = Instant::now();
    let mut d = Decoder::new(Bytes::copy_from_slice(bytes));
    while !d.is_empty() {
        let before = d.remaining();
        if d.read_value().is_err() {
            break;
        }
        assert!(d.remaining() < before, "read_value consumed nothing");
    }
    let mut d = Decoder::new(Bytes::copy_from_slice(bytes));
    while !d.is_empty() && d.skip_value().is_ok() {}
    let _ = Performative::decode(&mut Decoder::new(Bytes::copy_from_slice(bytes)));
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "decoding {} bytes took {:?}",
        bytes.len(),
        start.elapsed()
    );
}

/// Splits frames off `bytes` until it runs out or an error; must not panic.
fn frames_all(bytes: &[u8], max_frame_size: usize) {
    let mut dec = FrameDecoder::new(max_frame_size);
    let mut buf = BytesMut::from(bytes);
    while let Ok(Some(_)) = dec.decode(&mut buf) {}
}

fn roundtrip<T: Encode + Decode + PartialEq + std::fmt::Debug>(v: &T) -> Vec<u8> {
    let bytes = encode(v);
    let mut d = Decoder::new(Bytes::from(bytes.clone()));
    let back = T::decode(&mut d).unwrap_or_else(|e| panic!("{e}: {v:?}"));
    assert_eq!(&back, v);
    assert!(d.is_empty(), "{} trailing bytes", d.remaining());
    assert_eq!(encode(&back), bytes, "re-encoding differs");
    bytes
}

// ---- values -----------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn value_roundtrip(v in value()) {
        let bytes = roundtrip(&v);
        // And as a `Value` read by read_value, skipped by skip_value.
        let mut d = Decoder::new(Bytes::from(bytes.clone()));
        d.skip_value().unwrap();
        prop_assert!(d.is_empty());
    }

    #[test]
    fn truncated_encodings_fail_cleanly(v in value()) {
        let bytes = encode(&v);
        for n in 0..bytes.len() {
            let mut d = Decoder::new(Bytes::copy_from_slice(&bytes[..n]));
            prop_assert!(d.read_value().is_err(), "prefix of {n} bytes decoded");
            let mut d = Decoder::new(Bytes::copy_from_slice(&bytes[..n]));
            prop_assert!(d.skip_value().is_err(), "prefix of {n} bytes skipped");
        }
    }

    #[test]
    fn mutated_encodings_never_panic(
        v in value(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = encode(&v);
        for (i, b) in edits {
            let i = i.index(bytes.len());
            bytes[i] = b;
        }
        decode_all(&bytes);
    }

    #[test]
    fn random_bytes_never_panic(bytes in vec(any::<u8>(), 0..512)) {
        decode_all(&bytes);
        frames_all(&bytes, 1 << 16);
    }

    /// Random bytes behind a plausible constructor, so that the decoder gets
    /// past the first byte more often.
    #[test]
    fn random_compounds_never_panic(
        code in prop::sample::select(vec![
            0x00u8, 0xc0, 0xc1, 0xd0, 0xd1, 0xe0, 0xf0, 0xa1, 0xb1, 0xa3, 0xb3, 0xa0, 0xb0,
        ]),
        rest in vec(any::<u8>(), 0..256),
    ) {
        let mut bytes = vec![code];
        bytes.extend_from_slice(&rest);
        decode_all(&bytes);
    }
}

// ---- performatives ----------------------------------------------------------

fn opt<T: std::fmt::Debug>(s: impl Strategy<Value = T>) -> impl Strategy<Value = Option<T>> {
    proptest::option::of(s)
}

fn symbols() -> BoxedStrategy<Vec<Symbol>> {
    vec(symbol(), 0..4).boxed()
}

/// A small map of symbol keys to scalars (properties, annotations, filters).
fn fields() -> BoxedStrategy<Map> {
    vec((symbol().prop_map(Value::Symbol), scalar()), 0..4)
        .prop_map(Map)
        .boxed()
}

fn error() -> BoxedStrategy<AmqpError> {
    (
        prop_oneof![Just(condition::NOT_FOUND), symbol()],
        opt(string()),
        opt(fields()),
    )
        .prop_map(|(condition, description, info)| AmqpError {
            condition,
            description,
            info,
        })
        .boxed()
}

fn delivery_state() -> BoxedStrategy<DeliveryState> {
    prop_oneof![
        Just(DeliveryState::Accepted),
        Just(DeliveryState::Released),
        (any::<u32>(), any::<u64>()).prop_map(|(n, o)| DeliveryState::Received(Received {
            section_number: n,
            section_offset: o,
        })),
        opt(error()).prop_map(|error| DeliveryState::Rejected(Rejected { error })),
        (opt(any::<bool>()), opt(any::<bool>()), opt(fields())).prop_map(|(f, u, a)| {
            DeliveryState::Modified(Modified {
                delivery_failed: f,
                undeliverable_here: u,
                message_annotations: a,
            })
        }),
    ]
    .boxed()
}

fn role() -> BoxedStrategy<Role> {
    prop_oneof![Just(Role::Sender), Just(Role::Receiver)].boxed()
}

fn open() -> BoxedStrategy<Open> {
    (
        string(),
        opt(string()),
        any::<u32>(),
        any::<u16>(),
        opt(any::<u32>()),
        (
            opt(symbols()),
            opt(symbols()),
            opt(symbols()),
            opt(symbols()),
        ),
        opt(fields()),
    )
        .prop_map(|(c, h, mfs, cm, idle, (ol, il, oc, dc), p)| Open {
            container_id: c,
            hostname: h,
            max_frame_size: mfs,
            channel_max: cm,
            idle_time_out: idle,
            outgoing_locales: ol,
            incoming_locales: il,
            offered_capabilities: oc,
            desired_capabilities: dc,
            properties: p,
        })
        .boxed()
}

fn source() -> BoxedStrategy<Source> {
    (
        opt(string()),
        0u32..3,
        any::<bool>(),
        opt(fields()),
        opt(symbols()),
        opt(delivery_state().prop_map(|s| {
            let mut b = Vec::new();
            s.encode(&mut b);
            Decoder::new(Bytes::from(b)).read_value().unwrap()
        })),
    )
        .prop_map(
            |(address, durable, dynamic, filter, outcomes, default_outcome)| Source {
                address,
                durable,
                dynamic,
                filter,
                outcomes,
                default_outcome,
                ..Default::default()
            },
        )
        .boxed()
}

fn target() -> BoxedStrategy<AttachTarget> {
    prop_oneof![
        (opt(string()), any::<u32>(), opt(symbols())).prop_map(|(address, timeout, caps)| {
            AttachTarget::Target(Target {
                address,
                timeout,
                capabilities: caps,
                ..Default::default()
            })
        }),
        opt(symbols())
            .prop_map(|capabilities| AttachTarget::Coordinator(Coordinator { capabilities })),
    ]
    .boxed()
}

fn attach() -> BoxedStrategy<Attach> {
    (
        (string(), any::<u32>(), role()),
        prop_oneof![
            Just(SndSettleMode::Unsettled),
            Just(SndSettleMode::Settled),
            Just(SndSettleMode::Mixed)
        ],
        prop_oneof![Just(RcvSettleMode::First), Just(RcvSettleMode::Second)],
        opt(source()),
        opt(target()),
        (
            opt(fields()),
            any::<bool>(),
            opt(any::<u32>()),
            opt(any::<u64>()),
        ),
        (opt(symbols()), opt(symbols()), opt(fields())),
    )
        .prop_map(
            |((name, handle, role), ssm, rsm, source, target, (u, iu, idc, mms), (oc, dc, p))| {
                Attach {
                    name,
                    handle,
                    role,
                    snd_settle_mode: ssm,
                    rcv_settle_mode: rsm,
                    source,
                    target,
                    unsettled: u,
                    incomplete_unsettled: iu,
                    initial_delivery_count: idc,
                    max_message_size: mms,
                    offered_capabilities: oc,
                    desired_capabilities: dc,
                    properties: p,
                }
            },
        )
        .boxed()
}

fn flow() -> BoxedStrategy<Flow> {
    (
        opt(any::<u32>()),
        (any::<u32>(), any::<u32>(), any::<u32>()),
        (
            opt(any::<u32>()),
            opt(any::<u32>()),
            opt(any::<u32>()),
            opt(any::<u32>()),
        ),
        (any::<bool>(), any::<bool>()),
        opt(fields()),
    )
        .prop_map(
            |(nii, (iw, noi, ow), (h, dc, lc, av), (drain, echo), p)| Flow {
                next_incoming_id: nii,
                incoming_window: iw,
                next_outgoing_id: noi,
                outgoing_window: ow,
                handle: h,
                delivery_count: dc,
                link_credit: lc,
                available: av,
                drain,
                echo,
                properties: p,
            },
        )
        .boxed()
}

fn transfer() -> BoxedStrategy<Transfer> {
    (
        any::<u32>(),
        opt(any::<u32>()),
        opt(binary()),
        opt(any::<u32>()),
        opt(any::<bool>()),
        opt(prop_oneof![
            Just(RcvSettleMode::First),
            Just(RcvSettleMode::Second)
        ]),
        opt(delivery_state()),
        any::<[bool; 4]>(),
    )
        .prop_map(
            |(handle, id, tag, fmt, settled, rsm, state, [more, resume, aborted, batchable])| {
                Transfer {
                    handle,
                    delivery_id: id,
                    delivery_tag: tag,
                    message_format: fmt,
                    settled,
                    more,
                    rcv_settle_mode: rsm,
                    state,
                    resume,
                    aborted,
                    batchable,
                }
            },
        )
        .boxed()
}

fn disposition() -> BoxedStrategy<Disposition> {
    (
        role(),
        any::<u32>(),
        opt(any::<u32>()),
        any::<bool>(),
        opt(delivery_state()),
        any::<bool>(),
    )
        .prop_map(
            |(role, first, last, settled, state, batchable)| Disposition {
                role,
                first,
                last,
                settled,
                state,
                batchable,
            },
        )
        .boxed()
}

fn performative() -> BoxedStrategy<Performative> {
    prop_oneof![
        open().prop_map(Performative::from),
        attach().prop_map(Performative::from),
        flow().prop_map(Performative::Flow),
        transfer().prop_map(Performative::Transfer),
        disposition().prop_map(Performative::Disposition),
    ]
    .boxed()
}

fn sasl_frame() -> BoxedStrategy<SaslFrame> {
    prop_oneof![
        vec(symbol(), 0..4).prop_map(|m| SaslFrame::Mechanisms(SaslMechanisms {
            sasl_server_mechanisms: m
        })),
        (symbol(), opt(binary()), opt(string())).prop_map(|(m, r, h)| SaslFrame::Init(SaslInit {
            mechanism: m,
            initial_response: r,
            hostname: h
        })),
        (any::<u8>(), opt(binary())).prop_map(|(code, additional_data)| SaslFrame::Outcome(
            SaslOutcome {
                code,
                additional_data
            }
        )),
    ]
    .boxed()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn performative_roundtrip(p in performative()) {
        roundtrip(&p);
        match &p {
            Performative::Open(x) => { roundtrip(x); }
            Performative::Attach(x) => { roundtrip(x); }
            Performative::Flow(x) => { roundtrip(x); }
            Performative::Transfer(x) => { roundtrip(x); }
            Performative::Disposition(x) => { roundtrip(x); }
            _ => {}
        }
    }

    /// Whole frames: performative (and payload, for transfers) through
    /// `encode_frame` and `FrameDecoder`, whole and byte by byte.
    #[test]
    fn frame_roundtrip(
        p in performative(),
        channel in any::<u16>(),
        payload in vec(any::<u8>(), 0..64),
    ) {
        let payload = if matches!(p, Performative::Transfer(_)) { payload } else { Vec::new() };
        let mut buf = BytesMut::new();
        encode_frame(&mut buf, channel, &p, &payload);
        let bytes = buf.clone();
        let frame = FrameDecoder::default().decode(&mut buf).unwrap().unwrap();
        prop_assert!(buf.is_empty());
        let expected = Frame::Amqp { channel, performative: p, payload: Bytes::from(payload) };
        prop_assert_eq!(&frame, &expected);
        // Split at every point: nothing until the last byte.
        let mut dec = FrameDecoder::default();
        let mut buf = BytesMut::new();
        for (i, b) in bytes.iter().enumerate() {
            buf.extend_from_slice(&[*b]);
            let r = dec.decode(&mut buf).unwrap();
            prop_assert_eq!(r.is_some(), i + 1 == bytes.len());
        }
        // Truncated or mutated frames never panic.
        for n in 0..bytes.len() {
            frames_all(&bytes[..n], 1 << 20);
        }
    }

    #[test]
    fn sasl_frame_roundtrip(f in sasl_frame()) {
        let mut buf = BytesMut::new();
        encode_sasl_frame(&mut buf, &f);
        let frame = FrameDecoder::default().decode(&mut buf).unwrap().unwrap();
        prop_assert_eq!(frame, Frame::Sasl(f));
    }

    #[test]
    fn mutated_frames_never_panic(
        p in performative(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut buf = BytesMut::new();
        encode_frame(&mut buf, 0, &p, b"payload");
        for (i, b) in edits {
            let i = i.index(buf.len());
            buf[i] = b;
        }
        frames_all(&buf, 1 << 20);
    }

    /// A valid frame header with a random body.
    #[test]
    fn random_frame_bodies_never_panic(
        frame_type in 0u8..2,
        doff in 2u8..4,
        body in vec(any::<u8>(), 0..300),
    ) {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&((8 + body.len()) as u32).to_be_bytes());
        bytes.extend_from_slice(&[doff, frame_type, 0, 1]);
        bytes.extend_from_slice(&body);
        frames_all(&bytes, 1 << 20);
    }
}

// ---- fixed cases and regressions ---------------------------------------------

#[test]
fn accepted_is_four_bytes() {
    assert_eq!(encode(&DeliveryState::Accepted), [0x00, 0x53, 0x24, 0x45]);
    roundtrip(&DeliveryState::Accepted);
    let _ = Accepted::default();
}

/// Deeply nested input is rejected by the depth limit, not by a stack overflow.
#[test]
fn deep_nesting_is_rejected() {
    for prefix in [
        &[0xc0u8, 0xff, 0x01][..],
        &[0x00, 0x53, 0x01],
        &[0xe0, 0xff, 0x01, 0xe0],
    ] {
        let mut bytes = Vec::new();
        for _ in 0..100_000 {
            bytes.extend_from_slice(prefix);
        }
        decode_all(&bytes);
    }
}

// ---- messages ----------------------------------------------------------------

fn message_id() -> BoxedStrategy<MessageId> {
    prop_oneof![
        any::<u64>().prop_map(MessageId::Ulong),
        any::<[u8; 16]>().prop_map(|u| MessageId::Uuid(Uuid(u))),
        binary().prop_map(MessageId::Binary),
        string().prop_map(MessageId::String),
    ]
    .boxed()
}

fn header() -> BoxedStrategy<Header> {
    (
        any::<bool>(),
        any::<u8>(),
        opt(any::<u32>()),
        any::<bool>(),
        any::<u32>(),
    )
        .prop_map(
            |(durable, priority, ttl, first_acquirer, delivery_count)| Header {
                durable,
                priority,
                ttl,
                first_acquirer,
                delivery_count,
            },
        )
        .boxed()
}

fn properties() -> BoxedStrategy<Properties> {
    (
        (
            opt(message_id()),
            opt(binary()),
            opt(string()),
            opt(string()),
        ),
        (
            opt(string()),
            opt(message_id()),
            opt(symbol()),
            opt(symbol()),
        ),
        (
            opt(any::<i64>().prop_map(Timestamp)),
            opt(any::<i64>().prop_map(Timestamp)),
        ),
        (opt(string()), opt(any::<u32>()), opt(string())),
    )
        .prop_map(
            |((id, user, to, subject), (rt, cid, ct, ce), (exp, ctime), (g, gs, rg))| Properties {
                message_id: id,
                user_id: user,
                to,
                subject,
                reply_to: rt,
                correlation_id: cid,
                content_type: ct,
                content_encoding: ce,
                absolute_expiry_time: exp,
                creation_time: ctime,
                group_id: g,
                group_sequence: gs,
                reply_to_group_id: rg,
            },
        )
        .boxed()
}

fn body() -> BoxedStrategy<Body> {
    prop_oneof![
        Just(Body::Empty),
        vec(binary(), 1..4).prop_map(Body::Data),
        vec(vec(value(), 0..4), 1..3).prop_map(Body::Sequence),
        value().prop_map(Body::Value),
    ]
    .boxed()
}

fn application_properties() -> BoxedStrategy<Map> {
    vec((string().prop_map(Value::String), scalar()), 0..4)
        .prop_map(Map)
        .boxed()
}

fn message() -> BoxedStrategy<Message> {
    (
        opt(header()),
        opt(fields()),
        opt(fields()),
        opt(properties()),
        opt(application_properties()),
        body(),
        opt(fields()),
    )
        .prop_map(|(h, da, ma, p, ap, body, footer)| Message {
            header: h,
            delivery_annotations: da,
            message_annotations: ma,
            properties: p,
            application_properties: ap,
            body,
            footer,
        })
        .boxed()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn message_roundtrip(m in message()) {
        let mut buf = BytesMut::with_capacity(m.encoded_len());
        m.encode(&mut buf);
        prop_assert_eq!(buf.len(), m.encoded_len());
        let bytes = buf.freeze();
        let back = Message::decode(bytes.clone()).unwrap();
        prop_assert_eq!(&back, &m);
        let mut again = Vec::new();
        back.encode(&mut again);
        prop_assert_eq!(&again[..], &bytes[..]);
        // Every strict prefix that cuts a section fails cleanly, never panics.
        for n in 0..bytes.len() {
            let _ = Message::decode(bytes.slice(..n));
        }
    }

    /// A message as the payload of a transfer frame.
    #[test]
    fn message_in_transfer_frame(m in message(), t in transfer()) {
        let mut payload = Vec::new();
        m.encode(&mut payload);
        let mut buf = BytesMut::new();
        encode_frame(&mut buf, 1, &t, &payload);
        let Some(Frame::Amqp { payload: got, .. }) = FrameDecoder::default().decode(&mut buf).unwrap()
        else {
            panic!("not an AMQP frame");
        };
        prop_assert_eq!(Message::decode(got).unwrap(), m);
    }

    #[test]
    fn mutated_messages_never_panic(
        m in message(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = Vec::new();
        m.encode(&mut bytes);
        if bytes.is_empty() {
            return Ok(());
        }
        for (i, b) in edits {
            let i = i.index(bytes.len());
            bytes[i] = b;
        }
        let _ = Message::decode(Bytes::from(bytes));
    }

    #[test]
    fn random_messages_never_panic(bytes in vec(any::<u8>(), 0..512)) {
        let _ = Message::decode(Bytes::from(bytes));
    }
}
