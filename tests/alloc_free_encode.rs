//! Encoding into a reused buffer with enough capacity does not allocate:
//! messages, transfer frames, performatives and values.
//!
//! Counts allocations with `stats_alloc`'s instrumented system allocator (no
//! unsafe code here). This file holds a single test so that no other test
//! thread allocates while it measures.

use aqueduct::frame::codec::encode_frame;
use aqueduct::frame::{DeliveryState, Disposition, Flow, Open, Role, Transfer};
use aqueduct::types::{Array, Encode, Map, Symbol, Timestamp, Value};
use aqueduct::Message;
use bytes::{Bytes, BytesMut};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;
use std::hint::black_box;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Allocations and reallocations made by `f` (best of 3 runs, in case another
/// thread of the test harness allocates meanwhile).
fn allocations(mut f: impl FnMut()) -> usize {
    f(); // warm up
    (0..3)
        .map(|_| {
            let region = Region::new(GLOBAL);
            f();
            let s = region.change();
            s.allocations + s.reallocations
        })
        .min()
        .unwrap()
}

#[test]
fn encoding_into_a_reused_buffer_does_not_allocate() {
    // The counter works.
    assert!(allocations(|| drop(black_box(vec![0u8; 8]))) > 0);

    let msg = Message::builder()
        .id("msg-1")
        .to("queue/a")
        .subject("s")
        .reply_to("queue/r")
        .content_type("application/octet-stream")
        .creation_time(Timestamp(1_700_000_000_000))
        .application_property("kind", "reading")
        .application_property("seq", 42i32)
        .application_property("urgent", true)
        .message_annotation("x-opt-a", 1i64)
        .body(Bytes::from(vec![0xab; 100]))
        .build();
    let mut buf = BytesMut::with_capacity(4096);
    assert_eq!(
        allocations(|| {
            buf.clear();
            msg.encode(&mut buf);
            black_box(msg.encoded_len());
        }),
        0,
        "Message::encode"
    );

    let mut body = Map::new();
    body.insert("list", vec![Value::Int(1), "two".into(), Value::Null]);
    body.insert(Symbol::from_static("array"), Array::symbols(["a", "b"]));
    body.insert("big", Bytes::from(vec![1u8; 300]));
    let value_msg = Message::builder().body(Value::Map(body.clone())).build();
    assert_eq!(
        allocations(|| {
            buf.clear();
            value_msg.encode(&mut buf);
        }),
        0,
        "Message::encode with an amqp-value body"
    );
    let value = Value::Map(body);
    assert_eq!(
        allocations(|| {
            buf.clear();
            value.encode(&mut buf);
        }),
        0,
        "Value::encode"
    );

    let transfer = Transfer {
        handle: 0,
        delivery_id: Some(1),
        delivery_tag: Some(Bytes::from_static(b"tag")),
        message_format: Some(0),
        state: Some(DeliveryState::Accepted),
        ..Default::default()
    };
    let mut payload = BytesMut::with_capacity(4096);
    assert_eq!(
        allocations(|| {
            payload.clear();
            buf.clear();
            msg.encode(&mut payload);
            encode_frame(&mut buf, 1, &transfer, &payload);
        }),
        0,
        "transfer frame"
    );

    let open = Open {
        container_id: "container".into(),
        hostname: Some("host".into()),
        max_frame_size: 65536,
        offered_capabilities: Some(vec![Symbol::from_static("ANONYMOUS-RELAY")]),
        ..Default::default()
    };
    let flow = Flow {
        incoming_window: 100,
        next_outgoing_id: 1,
        outgoing_window: 100,
        handle: Some(0),
        link_credit: Some(10),
        ..Default::default()
    };
    let disposition = Disposition {
        role: Role::Receiver,
        first: 0,
        last: Some(10),
        settled: true,
        state: Some(DeliveryState::Accepted),
        batchable: false,
    };
    assert_eq!(
        allocations(|| {
            buf.clear();
            encode_frame(&mut buf, 0, &open, &[]);
            encode_frame(&mut buf, 0, &flow, &[]);
            encode_frame(&mut buf, 0, &disposition, &[]);
        }),
        0,
        "performatives"
    );
}
