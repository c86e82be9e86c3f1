use super::codec::*;
use super::*;
use crate::types::{Decode, Decoder, Encode, Symbol};
use bytes::{Bytes, BytesMut};

fn roundtrip<T: Encode + Decode + PartialEq + std::fmt::Debug>(v: &T) {
    let mut b = BytesMut::new();
    v.encode(&mut b);
    assert_eq!(b.len(), v.encoded_len());
    let mut d = Decoder::new(b.freeze());
    assert_eq!(&T::decode(&mut d).unwrap(), v);
    d.finish().unwrap();
}

#[test]
fn performatives_roundtrip() {
    roundtrip(&Open {
        container_id: "c1".into(),
        hostname: Some("h".into()),
        max_frame_size: 65536,
        idle_time_out: Some(30000),
        offered_capabilities: Some(vec![Symbol::from("ANONYMOUS-RELAY")]),
        ..Default::default()
    });
    roundtrip(&Begin {
        next_outgoing_id: 1,
        incoming_window: 2048,
        outgoing_window: u32::MAX,
        ..Default::default()
    });
    roundtrip(&Attach {
        name: "l".into(),
        handle: 0,
        role: Role::Receiver,
        snd_settle_mode: SndSettleMode::Settled,
        source: Some(Source {
            dynamic: true,
            ..Source::new("q")
        }),
        target: Some(Target::new("t").into()),
        initial_delivery_count: Some(0),
        ..Default::default()
    });
    roundtrip(&Flow {
        next_incoming_id: Some(3),
        incoming_window: 10,
        next_outgoing_id: 4,
        outgoing_window: 5,
        handle: Some(0),
        link_credit: Some(100),
        drain: true,
        ..Default::default()
    });
    roundtrip(&Transfer {
        handle: 0,
        delivery_id: Some(7),
        delivery_tag: Some(Bytes::from_static(b"\0\0\0\x07")),
        message_format: Some(0),
        settled: Some(false),
        more: true,
        state: Some(DeliveryState::Accepted),
        ..Default::default()
    });
    roundtrip(&Disposition {
        role: Role::Receiver,
        first: 1,
        last: Some(10),
        settled: true,
        state: Some(DeliveryState::Rejected(Rejected {
            error: Some(AmqpError::new(condition::NOT_FOUND, "no")),
        })),
        batchable: false,
    });
    roundtrip(&Detach {
        handle: 1,
        closed: true,
        error: Some(AmqpError::new(condition::DETACH_FORCED, "bye")),
    });
    roundtrip(&End { error: None });
    roundtrip(&Close {
        error: Some(AmqpError::new(condition::DECODE_ERROR, "bad")),
    });
    roundtrip(&DeliveryState::Modified(Modified {
        delivery_failed: Some(true),
        undeliverable_here: None,
        message_annotations: None,
    }));
    roundtrip(&DeliveryState::Transactional(TransactionalState {
        txn_id: Bytes::from_static(b"tx"),
        outcome: Some(Box::new(DeliveryState::Accepted)),
    }));
    roundtrip(&Discharge {
        txn_id: Bytes::from_static(b"tx"),
        fail: Some(true),
    });
    roundtrip(&SaslFrame::Init(SaslInit {
        mechanism: Symbol::from("PLAIN"),
        initial_response: Some(Bytes::from_static(b"\0u\0p")),
        hostname: None,
    }));
}

#[test]
fn trailing_nulls_are_omitted_and_defaults_restored() {
    let mut b = BytesMut::new();
    Close { error: None }.encode(&mut b);
    assert_eq!(&b[..], [0x00, 0x53, 0x18, 0x45]);
    // An open with only the container id, and a list padded with nulls.
    let bytes = [
        0x00, 0x53, 0x10, 0xc0, 0x06, 0x03, 0xa1, 0x01, b'c', 0x40, 0x40,
    ];
    let open = Open::decode(&mut Decoder::new(Bytes::copy_from_slice(&bytes))).unwrap();
    assert_eq!(open.container_id, "c");
    assert_eq!(open.max_frame_size, u32::MAX);
    assert_eq!(open.channel_max, u16::MAX);
}

#[test]
fn mandatory_fields_and_unknown_descriptors_are_errors() {
    let bytes = [0x00, 0x53, 0x10, 0x45];
    assert!(Open::decode(&mut Decoder::new(Bytes::copy_from_slice(&bytes))).is_err());
    let bytes = [0x00, 0x53, 0x99, 0x45];
    assert!(Performative::decode(&mut Decoder::new(Bytes::copy_from_slice(&bytes))).is_err());
}

#[test]
fn frame_decoder_waits_for_whole_frames() {
    let mut out = BytesMut::new();
    let t = Transfer {
        handle: 0,
        delivery_id: Some(0),
        ..Default::default()
    };
    encode_frame(&mut out, 3, &t, b"payload");
    encode_empty_frame(&mut out);
    let all = out.clone();
    let mut dec = FrameDecoder::new(1 << 20);
    for n in 0..all.len() {
        let mut partial = BytesMut::from(&all[..n.min(all.len() - 8)]);
        if n < all.len() - 8 {
            assert_eq!(dec.decode(&mut partial).unwrap(), None);
        }
    }
    match dec.decode(&mut out).unwrap().unwrap() {
        Frame::Amqp {
            channel,
            performative: Performative::Transfer(got),
            payload,
        } => {
            assert_eq!(channel, 3);
            assert_eq!(got, t);
            assert_eq!(&payload[..], b"payload");
        }
        f => panic!("unexpected {f:?}"),
    }
    assert_eq!(dec.decode(&mut out).unwrap(), Some(Frame::Empty));
    assert!(out.is_empty());
}

#[test]
fn frame_decoder_rejects_bad_headers() {
    let mut dec = FrameDecoder::new(512);
    let mut b = BytesMut::from(&[0, 0, 4, 0, 2, 0, 0, 0][..]);
    assert!(matches!(
        dec.decode(&mut b).unwrap_err().kind(),
        crate::DecodeErrorKind::FrameTooLarge { .. }
    ));
    let mut b = BytesMut::from(&[0, 0, 0, 4, 2, 0, 0, 0][..]);
    assert!(dec.decode(&mut b).is_err());
    let mut b = BytesMut::from(&[0, 0, 0, 8, 1, 0, 0, 0][..]);
    assert!(dec.decode(&mut b).is_err());
    let mut b = BytesMut::from(&[0, 0, 0, 8, 2, 7, 0, 0][..]);
    assert!(dec.decode(&mut b).is_err());
    assert_eq!(
        ProtocolId::from_header(*b"AMQP\x03\x01\x00\x00").unwrap(),
        ProtocolId::Sasl
    );
    assert!(ProtocolId::from_header(*b"HTTP/1.1").is_err());
}
