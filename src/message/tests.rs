use super::*;
use crate::types::{Described, Descriptor, Uuid};
use crate::DecodeErrorKind;
use bytes::{BufMut, BytesMut};

fn enc(m: &Message) -> Bytes {
    let mut b = BytesMut::new();
    m.encode(&mut b);
    assert_eq!(b.len(), m.encoded_len(), "encoded_len of {m:?}");
    b.freeze()
}

fn round_trip(m: &Message) -> Message {
    let back = Message::decode(enc(m)).expect("decodes");
    assert_eq!(&back, m);
    back
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn vector(name: &str) -> Bytes {
    let text = include_str!("../../tests/vectors/proton_vectors.txt");
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        if let Some((n, h)) = line.split_once(' ') {
            if n == name {
                return Bytes::from(hex(h.trim()));
            }
        }
    }
    panic!("no vector {name}");
}

fn full_message() -> Message {
    Message::builder()
        .durable(true)
        .priority(7)
        .ttl(Duration::from_millis(60_000))
        .first_acquirer(true)
        .delivery_count(2)
        .delivery_annotation("x-opt-da", 1i64)
        .message_annotation("x-opt-ma", "v")
        .id(MessageId::Uuid(Uuid([7; 16])))
        .user_id(Bytes::from_static(b"guest"))
        .to("queue/a")
        .subject("subj")
        .reply_to("queue/reply")
        .correlation_id("corr-1")
        .content_type("text/plain")
        .content_encoding("utf-8")
        .absolute_expiry_time(Timestamp(1_700_000_060_000))
        .creation_time(Timestamp(1_700_000_000_000))
        .group_id("g")
        .group_sequence(7)
        .reply_to_group_id("rg")
        .application_property("k", "v")
        .application_property("n", 1i64)
        .body("hello")
        .footer("x-opt-hash", Bytes::from_static(&[1, 2, 3]))
        .build()
}

#[test]
fn full_message_round_trips() {
    let m = full_message();
    let back = round_trip(&m);
    assert!(back.durable());
    assert_eq!(back.priority(), 7);
    assert_eq!(back.ttl(), Some(Duration::from_secs(60)));
    assert!(back.first_acquirer());
    assert_eq!(back.delivery_count(), 2);
    assert_eq!(back.delivery_annotation("x-opt-da"), Some(&Value::Long(1)));
    assert_eq!(
        back.message_annotation("x-opt-ma"),
        Some(&Value::String("v".into()))
    );
    assert_eq!(back.id(), Some(&MessageId::Uuid(Uuid([7; 16]))));
    assert_eq!(back.user_id().map(|b| &b[..]), Some(&b"guest"[..]));
    assert_eq!(back.to(), Some("queue/a"));
    assert_eq!(back.subject(), Some("subj"));
    assert_eq!(back.reply_to(), Some("queue/reply"));
    assert_eq!(back.correlation_id(), Some(&MessageId::from("corr-1")));
    assert_eq!(back.content_type(), Some("text/plain"));
    assert_eq!(back.content_encoding(), Some("utf-8"));
    assert_eq!(
        back.absolute_expiry_time(),
        Some(Timestamp(1_700_000_060_000))
    );
    assert_eq!(back.creation_time(), Some(Timestamp(1_700_000_000_000)));
    assert_eq!(back.group_id(), Some("g"));
    assert_eq!(back.group_sequence(), Some(7));
    assert_eq!(back.reply_to_group_id(), Some("rg"));
    assert_eq!(
        back.application_property("k"),
        Some(&Value::String("v".into()))
    );
    assert_eq!(back.application_property("n"), Some(&Value::Long(1)));
    assert_eq!(back.body().as_str(), Some("hello"));
    assert_eq!(
        back.footer_entry("x-opt-hash"),
        Some(&Value::Binary(Bytes::from_static(&[1, 2, 3])))
    );
}

#[test]
fn defaults_without_sections() {
    let m = Message::new("x");
    assert!(m.header.is_none() && m.properties.is_none());
    assert!(!m.durable());
    assert_eq!(m.priority(), 4);
    assert_eq!(m.ttl(), None);
    assert_eq!(m.delivery_count(), 0);
    assert!(!m.first_acquirer());
    assert_eq!(m.id(), None);
    // Setting a header field to its default does not create a header.
    let m = Message::builder().durable(false).priority(4).build();
    assert!(m.header.is_none());
    assert_eq!(enc(&Message::default()).len(), 0);
    assert_eq!(Message::decode(Bytes::new()).unwrap(), Message::default());
}

#[test]
fn message_ids() {
    for id in [
        MessageId::from(0u64),
        MessageId::from(1u64 << 40),
        MessageId::from("abc"),
        MessageId::from(String::from("def")),
        MessageId::from(Uuid([9; 16])),
        MessageId::from(Bytes::from_static(&[0, 1])),
    ] {
        round_trip(&Message::builder().id(id.clone()).correlation_id(id).build());
    }
    assert_eq!(
        MessageId::from(Bytes::from_static(&[0xab, 1])).to_string(),
        "ab01"
    );
}

#[test]
fn encodings_are_the_smallest() {
    assert_eq!(
        &enc(&Message::new("hi"))[..],
        [0x00, 0x53, 0x77, 0xa1, 2, b'h', b'i']
    );
    assert_eq!(
        &enc(&Message::new(&b"\x01\x02"[..]))[..],
        [0x00, 0x53, 0x75, 0xa0, 2, 1, 2]
    );
    let mut m = Message::default();
    m.set_application_property("a", 1u32);
    assert_eq!(
        &enc(&m)[..],
        [0x00, 0x53, 0x74, 0xc1, 6, 2, 0xa1, 1, b'a', 0x52, 1]
    );
    let m = Message::builder().durable(true).build();
    assert_eq!(&enc(&m)[..], [0x00, 0x53, 0x70, 0xc0, 2, 1, 0x41]);
}

#[test]
fn body_kinds() {
    let data = Message::new(Body::Data(vec![
        Bytes::from_static(b"one"),
        Bytes::new(),
        Bytes::from(vec![7u8; 300]),
    ]));
    let back = round_trip(&data);
    assert_eq!(back.body().as_data().unwrap().len(), 3);
    assert_eq!(back.body().as_bytes(), None);

    let seq = Message::new(Body::Sequence(vec![
        vec![Value::Int(1), Value::from("a")],
        vec![],
    ]));
    round_trip(&seq);

    let map: Map = [("sequence", 1i64)].into_iter().collect();
    let back = round_trip(&Message::new(map.clone()));
    assert_eq!(back.body().as_value(), Some(&Value::Map(map)));

    round_trip(&Message::new(Value::Null));
    round_trip(&Message::new(Value::List(vec![Value::Uint(1)])));
    round_trip(&Message::new(Body::Empty));

    assert_eq!(Body::from("s"), Body::Value(Value::String("s".into())));
    assert_eq!(Body::from(String::from("s")).as_str(), Some("s"));
    assert_eq!(Body::from(vec![1u8, 2]).as_bytes(), Some(&[1u8, 2][..]));
    assert_eq!(
        Body::from(Bytes::from_static(b"b")).as_bytes(),
        Some(&b"b"[..])
    );
    assert_eq!(Body::from(&b"c"[..]).as_bytes(), Some(&b"c"[..]));
    assert_eq!(Message::from("t").body().as_str(), Some("t"));
    assert_eq!(
        Message::from(Value::Int(1)).body,
        Body::Value(Value::Int(1))
    );
    assert_eq!(Body::default(), Body::Empty);
}

#[test]
fn decodes_concatenated_pieces() {
    let encoded = enc(&full_message());
    let (a, b) = encoded.split_at(encoded.len() / 3);
    let mut joined = BytesMut::new();
    joined.put_slice(a);
    joined.put_slice(b);
    let back = Message::decode(joined.freeze()).unwrap();
    assert_eq!(back, full_message());
}

#[test]
fn data_body_borrows_from_the_payload() {
    let m = Message::builder()
        .to("q")
        .body(Body::Data(vec![
            Bytes::from(vec![5u8; 64]),
            Bytes::from(vec![6u8; 1000]),
        ]))
        .build();
    let payload = enc(&m);
    let range = payload.as_ptr_range();
    let back = Message::decode(payload.clone()).unwrap();
    for section in back.body().as_data().unwrap() {
        assert!(range.contains(&section.as_ptr()), "data section was copied");
    }
}

#[test]
fn truncated_prefixes_are_errors() {
    let m = full_message();
    let encoded = enc(&m);
    // Section boundaries: a prefix ending at one is a valid (smaller) message.
    let mut boundaries = vec![0];
    let mut d = crate::types::Decoder::new(encoded.clone());
    while !d.is_empty() {
        d.skip_value().unwrap();
        boundaries.push(encoded.len() - d.remaining());
    }
    assert_eq!(boundaries.len(), 8); // seven sections
    for n in 0..encoded.len() {
        let r = Message::decode(encoded.slice(..n));
        if boundaries.contains(&n) {
            assert_ne!(r.unwrap(), m);
        } else {
            assert!(r.is_err(), "prefix of {n} bytes decoded");
        }
    }
    // And every prefix of every Proton vector fails or decodes without panic.
    for name in [
        "msg_all_fields",
        "msg_more_fields",
        "msg_uuid_id",
        "msg_body_sequence",
    ] {
        let v = vector(name);
        for n in 0..v.len() {
            let _ = Message::decode(v.slice(..n));
        }
    }
}

#[test]
fn trailing_garbage_is_an_error() {
    let mut b = BytesMut::from(&enc(&full_message())[..]);
    b.put_u8(0x40);
    assert!(Message::decode(b.freeze()).is_err());
    let mut b = BytesMut::from(&enc(&Message::new("x"))[..]);
    b.put_slice(&[0x00, 0x53]);
    assert!(Message::decode(b.freeze()).is_err());
}

fn section(code: u8, value: &[u8]) -> Vec<u8> {
    let mut v = vec![0x00, 0x53, code];
    v.extend_from_slice(value);
    v
}

fn decode_parts(parts: &[Vec<u8>]) -> Result<Message, crate::DecodeError> {
    Message::decode(Bytes::from(parts.concat()))
}

#[test]
fn section_order_is_enforced() {
    let header = section(0x70, &[0x45]);
    let da = section(0x71, &[0xc1, 1, 0]);
    let ma = section(0x72, &[0xc1, 1, 0]);
    let props = section(0x73, &[0x45]);
    let ap = section(0x74, &[0xc1, 1, 0]);
    let data = section(0x75, &[0xa0, 1, 9]);
    let seq = section(0x76, &[0x45]);
    let value = section(0x77, &[0x40]);
    let footer = section(0x78, &[0xc1, 1, 0]);

    let all = [&header, &da, &ma, &props, &ap, &data, &data, &footer].map(|v| v.to_vec());
    let m = decode_parts(&all).unwrap();
    assert_eq!(m.body().as_data().unwrap().len(), 2);
    assert!(m.footer.is_some() && m.header.is_some());
    decode_parts(&[seq.clone(), seq.clone(), seq.clone()]).unwrap();

    let bad: &[&[&Vec<u8>]] = &[
        &[&props, &header],
        &[&header, &header],
        &[&ma, &da],
        &[&ap, &props],
        &[&value, &value],
        &[&data, &seq],
        &[&seq, &data],
        &[&value, &data],
        &[&data, &value],
        &[&footer, &data],
        &[&footer, &footer],
        &[&data, &ap],
        &[&data, &footer, &data],
    ];
    for parts in bad {
        let parts: Vec<Vec<u8>> = parts.iter().map(|p| p.to_vec()).collect();
        assert!(decode_parts(&parts).is_err(), "{parts:02x?} decoded");
    }
}

#[test]
fn unknown_and_malformed_sections_are_errors() {
    // Unknown numeric and symbolic descriptors.
    assert!(decode_parts(&[section(0x79, &[0x40])]).is_err());
    let mut sym = vec![0x00, 0xa3, 5];
    sym.extend_from_slice(b"x:y:z");
    sym.push(0x40);
    assert!(decode_parts(&[sym]).is_err());
    // An undescribed value.
    assert!(Message::decode(Bytes::from_static(&[0xa1, 1, b'x'])).is_err());
    // Wrong payload types.
    assert!(decode_parts(&[section(0x75, &[0xa1, 1, b'x'])]).is_err());
    assert!(decode_parts(&[section(0x76, &[0x40])]).is_err());
    assert!(decode_parts(&[section(0x74, &[0x45])]).is_err());
    assert!(decode_parts(&[section(0x73, &[0xc0, 2, 1, 0x41])]).is_err());
    let e = decode_parts(&[section(0x70, &[0xc0, 2, 1, 0xa1])]).unwrap_err();
    assert!(matches!(e.kind(), DecodeErrorKind::UnexpectedType { .. }));
    let e = decode_parts(&[section(0x70, &[0xc0, 5, 1, 0x41])]).unwrap_err();
    assert_eq!(e.kind(), &DecodeErrorKind::Truncated);
}

#[test]
fn symbolic_descriptors_are_accepted() {
    fn sym(name: &str, value: &[u8]) -> Vec<u8> {
        let mut v = vec![0x00, 0xa3, name.len() as u8];
        v.extend_from_slice(name.as_bytes());
        v.extend_from_slice(value);
        v
    }
    let m = decode_parts(&[
        sym("amqp:header:list", &[0xc0, 2, 1, 0x41]),
        sym("amqp:properties:list", &[0xc0, 3, 1, 0x53, 9]),
        sym(
            "amqp:application-properties:map",
            &[0xc1, 5, 2, 0xa1, 1, b'k', 0x40],
        ),
        sym("amqp:data:binary", &[0xa0, 1, 1]),
        sym("amqp:data:binary", &[0xa0, 1, 2]),
        sym("amqp:footer:map", &[0xc1, 1, 0]),
    ])
    .unwrap();
    assert!(m.durable());
    assert_eq!(m.id(), Some(&MessageId::Ulong(9)));
    assert_eq!(m.application_property("k"), Some(&Value::Null));
    assert_eq!(m.body().as_data().unwrap().len(), 2);
    let m = decode_parts(&[sym("amqp:amqp-value:*", &[0xa1, 1, b'v'])]).unwrap();
    assert_eq!(m.body().as_str(), Some("v"));
    let m = decode_parts(&[sym("amqp:amqp-sequence:list", &[0x45])]).unwrap();
    assert_eq!(m.body(), &Body::Sequence(vec![vec![]]));
    // The standalone section types too.
    let mut d = crate::types::Decoder::new(Bytes::from(sym("amqp:data:binary", &[0xa0, 1, 1])));
    assert_eq!(d.read::<Data>().unwrap(), Data(Bytes::from_static(&[1])));
}

#[test]
fn section_types_encode_with_descriptors() {
    use crate::types::{Decoder, Encode};
    let mut b = BytesMut::new();
    let s = ApplicationProperties([("a", 1u32)].into_iter().collect());
    s.encode(&mut b);
    assert_eq!(b.len(), s.encoded_len());
    assert_eq!(&b[..3], [0x00, 0x53, 0x74]);
    assert_eq!(
        Decoder::new(b.freeze())
            .read::<ApplicationProperties>()
            .unwrap(),
        s
    );
    let mut b = BytesMut::new();
    AmqpValue(Value::Int(1)).encode(&mut b);
    assert!(Decoder::new(b.freeze()).read::<Footer>().is_err());
}

/// Proton vectors: decode, check the fields the comments describe, and
/// re-encode where Proton's encoding is also ours.
///
/// Proton always sends a header and properties (as `list0` when empty); we
/// decode those as present-with-defaults, so they re-encode identically.
/// Proton uses `map32`/`list32` for every non-empty map and list value, where
/// we choose `map8`/`list8`: vectors with maps or list bodies are not
/// byte-identical on re-encode (they still decode to the same message).
#[test]
fn proton_messages() {
    let reencode_same = |name: &str, m: &Message| {
        assert_eq!(enc(m), vector(name), "re-encoding {name}");
    };
    let reencode_equal = |m: &Message| {
        assert_eq!(&Message::decode(enc(m)).unwrap(), m);
    };

    let m = Message::decode(vector("msg_body_hello")).unwrap();
    assert_eq!(m.header, Some(Header::default()));
    assert_eq!(m.properties, Some(Properties::default()));
    assert_eq!(m.body().as_str(), Some("hello"));
    reencode_same("msg_body_hello", &m);

    let m = Message::decode(vector("msg_empty")).unwrap();
    assert_eq!(m.body(), &Body::Empty);
    reencode_same("msg_empty", &m);

    let m = Message::decode(vector("msg_all_fields")).unwrap();
    assert!(m.durable());
    assert_eq!(m.priority(), 5);
    assert_eq!(m.ttl(), Some(Duration::from_millis(60_000)));
    assert_eq!(
        m.message_annotation("x-opt-foo"),
        Some(&Value::String("bar".into()))
    );
    assert!(matches!(
        m.message_annotations.as_ref().unwrap().0[0].0,
        Value::Symbol(_)
    ));
    assert_eq!(m.id(), Some(&MessageId::Ulong(1)));
    assert_eq!(m.to(), Some("queue/a"));
    assert_eq!(m.subject(), Some("subj"));
    assert_eq!(m.reply_to(), Some("queue/reply"));
    assert_eq!(m.correlation_id(), Some(&MessageId::from("corr-1")));
    assert_eq!(m.content_type(), Some("text/plain"));
    assert_eq!(m.creation_time(), Some(Timestamp(1_700_000_000_000)));
    assert_eq!(
        m.application_property("k"),
        Some(&Value::String("v".into()))
    );
    assert_eq!(m.application_property("n"), Some(&Value::Long(1)));
    assert_eq!(m.body().as_str(), Some("hello"));
    reencode_equal(&m); // map32 in Proton, map8 here

    let m = Message::decode(vector("msg_more_fields")).unwrap();
    assert!(m.first_acquirer());
    assert_eq!(m.delivery_count(), 3);
    assert!(!m.durable());
    assert_eq!(m.priority(), 4);
    assert_eq!(m.delivery_annotation("x-opt-di"), Some(&Value::Long(1)));
    assert_eq!(m.user_id().map(|b| &b[..]), Some(&b"guest"[..]));
    assert_eq!(m.content_encoding(), Some("utf-8"));
    assert_eq!(m.absolute_expiry_time(), Some(Timestamp(1_700_000_060_000)));
    assert_eq!(m.group_id(), Some("g"));
    assert_eq!(m.group_sequence(), Some(7));
    assert_eq!(m.reply_to_group_id(), Some("rg"));
    assert_eq!(m.body().as_str(), Some("x"));
    reencode_equal(&m); // map32 in Proton, map8 here

    let m = Message::decode(vector("msg_uuid_id")).unwrap();
    let uuid = hex("123456789abcdef0123456789abcdef0");
    assert_eq!(
        m.id(),
        Some(&MessageId::Uuid(Uuid(uuid.try_into().unwrap())))
    );
    assert_eq!(
        m.correlation_id(),
        Some(&MessageId::Binary(Bytes::from_static(&[1, 2])))
    );
    assert_eq!(m.body().as_str(), Some("x"));
    reencode_same("msg_uuid_id", &m);

    let m = Message::decode(vector("msg_body_map")).unwrap();
    let map: Map = [("sequence", 1i64)].into_iter().collect();
    assert_eq!(m.body().as_value(), Some(&Value::Map(map)));
    reencode_equal(&m); // map32 in Proton

    let m = Message::decode(vector("msg_body_binary_value")).unwrap();
    assert_eq!(
        m.body().as_value(),
        Some(&Value::Binary(Bytes::from_static(&[0, 1, 2])))
    );
    reencode_same("msg_body_binary_value", &m);

    let m = Message::decode(vector("msg_body_data")).unwrap();
    assert_eq!(m.body().as_bytes(), Some(&[0u8, 1, 2][..]));
    reencode_same("msg_body_data", &m);

    let list = vec![Value::Long(1), Value::from("a")];
    let m = Message::decode(vector("msg_body_list_value")).unwrap();
    assert_eq!(m.body().as_value(), Some(&Value::List(list.clone())));
    reencode_equal(&m); // list32 in Proton

    let m = Message::decode(vector("msg_body_sequence")).unwrap();
    assert_eq!(m.body(), &Body::Sequence(vec![list]));
    reencode_equal(&m); // list32 in Proton

    let m = Message::decode(vector("msg_body_null")).unwrap();
    assert_eq!(m.body(), &Body::Empty);
    assert_eq!(m.subject(), Some("s"));
    reencode_same("msg_body_null", &m);

    let m = Message::decode(vector("msg_body_int")).unwrap();
    assert_eq!(m.body().as_value(), Some(&Value::Long(42)));
    reencode_same("msg_body_int", &m);

    let m = Message::decode(vector("msg_body_described")).unwrap();
    let expected = Described {
        descriptor: Descriptor::Symbol(Symbol::from("x:y")),
        value: Value::from("v"),
    };
    assert_eq!(m.body().as_value(), Some(&Value::from(expected)));
    reencode_same("msg_body_described", &m);
}

#[test]
fn setters_replace_and_clear() {
    let mut m = Message::new("x");
    m.set_application_property("k", 1i32);
    m.set_application_property("k", 2i32);
    assert_eq!(m.application_properties.as_ref().unwrap().len(), 1);
    assert_eq!(m.application_property("k"), Some(&Value::Int(2)));
    m.set_message_annotation("x-opt-a", 1u64);
    assert_eq!(m.message_annotation("x-opt-a"), Some(&Value::Ulong(1)));
    m.set_ttl(Duration::from_millis(1500));
    assert_eq!(m.ttl(), Some(Duration::from_millis(1500)));
    m.set_ttl(None);
    assert_eq!(m.ttl(), None);
    m.set_ttl(Duration::from_secs(u64::MAX));
    assert_eq!(m.ttl(), Some(Duration::from_millis(u32::MAX.into())));
    m.set_priority(9);
    m.set_durable(true);
    m.set_reply_to("r");
    m.set_correlation_id(5u64);
    m.set_id("id");
    m.set_to("t");
    m.set_body(vec![1u8]);
    assert_eq!(m.priority(), 9);
    assert_eq!(m.body().as_bytes(), Some(&[1u8][..]));
    round_trip(&m);
}

#[test]
fn decode_properties_reads_only_the_properties() {
    let m = Message::builder()
        .durable(true)
        .message_annotation("x-opt-a", 1i64)
        .to("queue/a")
        .application_property("k", 1i32)
        .body("text")
        .build();
    let mut b = Vec::new();
    m.encode(&mut b);
    let props = Message::decode_properties(&Bytes::from(b.clone())).unwrap();
    assert_eq!(props.unwrap().to.as_deref(), Some("queue/a"));
    // The body is not read: a malformed one does not matter.
    let n = b.len();
    b[n - 3] = 0xff;
    assert!(Message::decode(Bytes::from(b.clone())).is_err());
    assert!(Message::decode_properties(&Bytes::from(b)).is_ok());
    // No properties section.
    let mut b = Vec::new();
    Message::from("x").encode(&mut b);
    assert_eq!(Message::decode_properties(&Bytes::from(b)).unwrap(), None);
    assert_eq!(Message::decode_properties(&Bytes::new()).unwrap(), None);
    // A malformed section before the properties is an error.
    let e = Message::decode_properties(&Bytes::from_static(&[0x00, 0x53, 0x70, 0xc0, 9]));
    assert!(e.is_err());
}
