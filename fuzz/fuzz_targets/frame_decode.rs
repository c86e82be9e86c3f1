//! Fuzzes `FrameDecoder::decode` on arbitrary bytes: no panic, and every
//! frame that decodes re-encodes to a frame that decodes equal.
//!
//! The first input byte picks the max frame size and the mode: raw bytes, or
//! (position, byte) overwrites of one of a few well-formed frames built here,
//! so that the fuzzer reaches the performative decoders without a seed
//! corpus.
//!
//! Run (from the repository root):
//!     RUSTC_BOOTSTRAP=1 cargo fuzz run frame_decode -- -max_total_time=600
//! or longer with `-max_total_time=N` (seconds; omit it to run until a crash),
//! in parallel with `-jobs=8 -workers=8`.
#![no_main]

use aqueduct::frame::codec::{encode_empty_frame, encode_frame, encode_sasl_frame};
use aqueduct::frame::{
    AmqpError, Attach, Begin, Close, DeliveryState, Detach, Disposition, End, Flow, Frame,
    FrameDecoder, Modified, Open, Performative, Received, Rejected, Role, SaslFrame, SaslInit,
    SaslMechanisms, SaslOutcome, Source, Target, Transfer,
};
use aqueduct::types::{Map, Symbol, Value};
use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn encode(f: &Frame) -> BytesMut {
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

fn seeds() -> &'static [Vec<u8>] {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut props = Map::new();
        props.insert(Symbol::from("product"), "aqueduct");
        let error = AmqpError::new(Symbol::from("amqp:not-found"), "no such node");
        let perfs: Vec<Performative> = vec![
            Open {
                container_id: "c".into(),
                hostname: Some("h".into()),
                max_frame_size: 65536,
                idle_time_out: Some(30000),
                offered_capabilities: Some(vec![Symbol::from("ANONYMOUS-RELAY")]),
                properties: Some(props.clone()),
                ..Default::default()
            }
            .into(),
            Begin {
                remote_channel: Some(0),
                next_outgoing_id: 1,
                incoming_window: 2048,
                outgoing_window: 2048,
                ..Default::default()
            }
            .into(),
            Attach {
                name: "link".into(),
                handle: 0,
                role: Role::Receiver,
                source: Some(Source {
                    filter: Some(props.clone()),
                    default_outcome: Some(Value::Null),
                    ..Source::new("q")
                }),
                target: Some(Target::new("t").into()),
                initial_delivery_count: Some(0),
                max_message_size: Some(1 << 20),
                properties: Some(props),
                ..Default::default()
            }
            .into(),
            Flow {
                next_incoming_id: Some(1),
                incoming_window: 10,
                next_outgoing_id: 1,
                outgoing_window: 10,
                handle: Some(0),
                delivery_count: Some(0),
                link_credit: Some(100),
                drain: true,
                ..Default::default()
            }
            .into(),
            Transfer {
                handle: 0,
                delivery_id: Some(1),
                delivery_tag: Some(Bytes::from_static(b"tag")),
                message_format: Some(0),
                state: Some(DeliveryState::Received(Received {
                    section_number: 1,
                    section_offset: 2,
                })),
                more: true,
                ..Default::default()
            }
            .into(),
            Disposition {
                role: Role::Receiver,
                first: 0,
                last: Some(9),
                settled: true,
                state: Some(DeliveryState::Modified(Modified {
                    delivery_failed: Some(true),
                    ..Default::default()
                })),
                batchable: false,
            }
            .into(),
            Disposition {
                role: Role::Sender,
                first: 3,
                last: None,
                settled: false,
                state: Some(DeliveryState::Rejected(Rejected {
                    error: Some(error.clone()),
                })),
                batchable: true,
            }
            .into(),
            Detach {
                handle: 0,
                closed: true,
                error: Some(error.clone()),
            }
            .into(),
            End { error: None }.into(),
            Close { error: Some(error) }.into(),
        ];
        let mut out: Vec<Vec<u8>> = perfs
            .into_iter()
            .map(|p| {
                let payload: &[u8] = if matches!(p, Performative::Transfer(_)) {
                    b"\x00\x53\x77\xa1\x02hi"
                } else {
                    b""
                };
                encode(&Frame::Amqp {
                    channel: 1,
                    performative: p,
                    payload: Bytes::from_static(payload),
                })
                .to_vec()
            })
            .collect();
        for s in [
            SaslFrame::Mechanisms(SaslMechanisms {
                sasl_server_mechanisms: vec![Symbol::from("PLAIN"), Symbol::from("ANONYMOUS")],
            }),
            SaslFrame::Init(SaslInit {
                mechanism: Symbol::from("PLAIN"),
                initial_response: Some(Bytes::from_static(b"\0guest\0guest")),
                hostname: Some("h".into()),
            }),
            SaslFrame::Outcome(SaslOutcome {
                code: 0,
                additional_data: None,
            }),
        ] {
            out.push(encode(&Frame::Sasl(s)).to_vec());
        }
        out
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let max = 512usize << (sel % 12);
    let input = if sel & 0x80 == 0 {
        rest.to_vec()
    } else {
        // Overwrite bytes of a well-formed frame (and maybe append a copy of
        // another one, to exercise back-to-back frames).
        let seeds = seeds();
        let (&pick, edits) = rest.split_first().unwrap_or((&0, &[]));
        let mut frame = seeds[pick as usize % seeds.len()].clone();
        if pick & 0x80 != 0 {
            frame.extend_from_slice(&seeds[(pick as usize / 2) % seeds.len()]);
        }
        for pair in edits.chunks_exact(2) {
            let i = pair[0] as usize % frame.len();
            frame[i] = pair[1];
        }
        frame
    };
    let mut dec = FrameDecoder::new(max);
    let mut buf = BytesMut::from(&input[..]);
    while let Ok(Some(frame)) = dec.decode(&mut buf) {
        let mut bytes = encode(&frame);
        let back = FrameDecoder::default()
            .decode(&mut bytes)
            .expect("our own encoding decodes")
            .expect("a whole frame");
        assert!(bytes.is_empty(), "trailing bytes after our frame");
        // Values inside frames may hold NaN (properties, filters): compare
        // the re-encodings, which are canonical, when not equal.
        if back != frame {
            assert_eq!(encode(&back), encode(&frame), "{frame:?} vs {back:?}");
        }
    }
});
