//! Fuzzes `Message::decode` on arbitrary bytes: no panic, the bytes allocated
//! while decoding stay within the allocation budget (`Limits::alloc_budget`
//! of the payload's length, counted with `stats_alloc`), and every message
//! that decodes re-encodes (with `encoded_len` equal to the bytes written) to
//! bytes that decode to an equal message and re-encode to the same bytes.
//! `Message::decode_properties` is checked to agree with `Message::decode`.
//!
//! Inputs whose first byte is odd are decoded as they are; inputs whose first
//! byte is even are spliced into a well-formed message built here (so that no
//! seed corpus is needed to get past the section descriptors): the rest of
//! the input is a list of (position, byte) overwrites of that message.
//!
//! Run (from the repository root):
//!     RUSTC_BOOTSTRAP=1 cargo fuzz run message_decode -- -max_total_time=600
//! or longer with `-max_total_time=N` (seconds; omit it to run until a crash),
//! in parallel with `-jobs=8 -workers=8`.
#![no_main]

use aqueduct::types::{Limits, Timestamp};
use aqueduct::Message;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;
use std::sync::OnceLock;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Allocation a decode may make beyond its budget: the text of an error
/// (which quotes at most 64 characters of the input) and the input's
/// shared reference count.
const SLACK: usize = 4096;

fn seeds() -> &'static [Vec<u8>] {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let full = Message::builder()
            .id("id-1")
            .to("queue/a")
            .subject("s")
            .reply_to("r")
            .correlation_id(7u64)
            .content_type("text/plain")
            .creation_time(Timestamp(1_700_000_000_000))
            .durable(true)
            .priority(7)
            .message_annotation("x-opt-a", 1i64)
            .delivery_annotation("x-opt-d", "v")
            .application_property("k", true)
            .application_property("n", 3i32)
            .footer("f", 1u32)
            .body(Bytes::from_static(b"data"))
            .build();
        let value = Message::builder().body("hello").build();
        let mut seq = Message::builder().id(1u64).build();
        seq.body = aqueduct::message::Body::Sequence(vec![vec![1i32.into(), "a".into()]]);
        [full, value, seq]
            .iter()
            .map(|m| {
                let mut b = Vec::new();
                m.encode(&mut b);
                b
            })
            .collect()
    })
}

fn check(payload: Bytes) {
    let len = payload.len();
    let budget = Limits::default().alloc_budget(len) + SLACK;
    let props = Message::decode_properties(&payload);
    let region = Region::new(GLOBAL);
    let decoded = Message::decode(payload);
    let s = region.change();
    let spent = s.bytes_allocated + s.bytes_reallocated.max(0) as usize;
    assert!(
        spent <= budget,
        "decoding {len} bytes allocated {spent} bytes, over the budget of {budget}"
    );
    let Ok(msg) = decoded else {
        return;
    };
    assert_eq!(props.ok().flatten(), msg.properties, "decode_properties");
    let mut bytes = Vec::with_capacity(msg.encoded_len());
    msg.encode(&mut bytes);
    assert_eq!(bytes.len(), msg.encoded_len(), "encoded_len of {msg:?}");
    // Our re-encoding may be much shorter than the input (`uint` becomes
    // `uint0`), so hold more values per byte: decode it without a budget.
    let unbudgeted = Limits {
        alloc_ratio: usize::MAX,
        ..Limits::default()
    };
    let back = Message::decode_with_limits(Bytes::from(bytes.clone()), unbudgeted)
        .expect("our own encoding decodes");
    let mut again = Vec::new();
    back.encode(&mut again);
    // NaN != NaN: fall back to comparing the canonical encodings.
    if back != msg {
        assert_eq!(bytes, again, "{msg:?} vs {back:?}");
    }
    assert_eq!(bytes, again, "re-encoding is not stable");
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    if sel & 1 == 1 {
        check(Bytes::copy_from_slice(rest));
        return;
    }
    let seeds = seeds();
    let mut msg = seeds[(sel as usize >> 1) % seeds.len()].clone();
    for pair in rest.chunks_exact(2) {
        let i = pair[0] as usize % msg.len();
        msg[i] = pair[1];
    }
    check(Bytes::from(msg));
});
