//! Codec benchmarks: a typical message (100-byte data body, six properties,
//! three application properties) encoded and decoded on its own and as the
//! payload of a transfer frame.
//!
//! Run: `cargo bench --bench codec`. A comparison with fe2o3's `serde_amqp` is
//! in `bench-compare/` (outside the workspace): `cd bench-compare && cargo bench`.
#![allow(missing_docs)] // criterion_group! generates an undocumented pub fn

use aqueduct::frame::codec::encode_frame;
use aqueduct::frame::{Frame, FrameDecoder, Transfer};
use aqueduct::types::Timestamp;
use aqueduct::Message;
use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};

fn message() -> Message {
    Message::builder()
        .id("msg-0001-aqueduct-bench")
        .to("queue/bench")
        .subject("benchmark")
        .reply_to("queue/replies")
        .content_type("application/octet-stream")
        .creation_time(Timestamp(1_700_000_000_000))
        .application_property("kind", "reading")
        .application_property("seq", 42i32)
        .application_property("urgent", true)
        .body(Bytes::from(vec![0xab; 100]))
        .build()
}

fn transfer() -> Transfer {
    Transfer {
        handle: 0,
        delivery_id: Some(1234),
        delivery_tag: Some(Bytes::from_static(&[0, 0, 0, 0, 0, 0, 4, 210])),
        message_format: Some(0),
        settled: Some(false),
        ..Default::default()
    }
}

fn bench_message(c: &mut Criterion) {
    let msg = message();
    let mut buf = BytesMut::with_capacity(1024);
    msg.encode(&mut buf);
    let encoded = buf.split().freeze();

    let mut g = c.benchmark_group("message");
    g.throughput(Throughput::Bytes(encoded.len() as u64));
    g.bench_function("encode", |b| {
        b.iter(|| {
            buf.clear();
            black_box(&msg).encode(&mut buf);
            black_box(buf.len())
        })
    });
    g.bench_function("encoded_len", |b| b.iter(|| black_box(&msg).encoded_len()));
    g.bench_function("decode", |b| {
        b.iter(|| Message::decode(black_box(encoded.clone())).unwrap())
    });
    g.finish();
}

fn bench_transfer(c: &mut Criterion) {
    let msg = message();
    let t = transfer();
    let mut payload = BytesMut::with_capacity(1024);
    let mut out = BytesMut::with_capacity(1024);
    msg.encode(&mut payload);
    encode_frame(&mut out, 1, &t, &payload);
    let frame = out.split().freeze();

    let mut g = c.benchmark_group("transfer_frame");
    g.throughput(Throughput::Bytes(frame.len() as u64));
    // Message into a reused payload buffer, then the frame into a reused
    // output buffer.
    g.bench_function("encode", |b| {
        b.iter(|| {
            payload.clear();
            out.clear();
            black_box(&msg).encode(&mut payload);
            encode_frame(&mut out, 1, black_box(&t), &payload);
            black_box(out.len())
        })
    });
    // Split the frame off a read buffer and decode the message it carries.
    g.bench_function("decode", |b| {
        let mut dec = FrameDecoder::new(65536);
        b.iter_batched(
            || BytesMut::from(&frame[..]),
            |mut buf| {
                let Some(Frame::Amqp { payload, .. }) = dec.decode(&mut buf).unwrap() else {
                    unreachable!()
                };
                Message::decode(payload).unwrap()
            },
            BatchSize::SmallInput,
        )
    });
    // The frame alone (performative decoded, payload left as bytes).
    g.bench_function("decode_frame_only", |b| {
        let mut dec = FrameDecoder::new(65536);
        b.iter_batched(
            || BytesMut::from(&frame[..]),
            |mut buf| dec.decode(&mut buf).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench_message, bench_transfer);
criterion_main!(benches);
