//! Decoding hostile input costs memory proportional to the input: the bytes
//! one decode allocates stay within `Limits::alloc_ratio` times the input
//! length plus `Limits::alloc_floor`, whether the input is a valid message
//! of tiny values, a malformed array that declares a huge count of
//! zero-width elements, or a compound-heavy value.
//!
//! Counts bytes with `stats_alloc`'s instrumented system allocator (no unsafe
//! code here). The total allocated during a decode is an upper bound of its
//! peak. This file holds a single test so that no other test thread
//! allocates while it measures. Run with `--nocapture` to see the figures.

use aqueduct::types::{Decoder, Limits};
use aqueduct::{DecodeErrorKind, Message};
use bytes::{BufMut, Bytes, BytesMut};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;
use std::hint::black_box;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// The documented default bound: decoded memory per input byte.
const RATIO: usize = 16;
/// The documented default bound: allocation always allowed, for small inputs.
const FLOOR: usize = 64 * 1024;

fn bound(input: usize) -> usize {
    RATIO * input + FLOOR
}

/// Bytes allocated while `f` runs (its result is dropped afterwards, outside
/// the measured region), and whether it succeeded.
fn measure<T, E: std::fmt::Debug>(f: impl FnOnce() -> Result<T, E>) -> (usize, Result<(), E>) {
    let region = Region::new(GLOBAL);
    let r = black_box(f());
    let stats = region.change();
    let allocated = stats.bytes_allocated + stats.bytes_reallocated.max(0) as usize;
    (allocated, r.map(drop))
}

thread_local! {
    /// Bound violations, reported together at the end of the test so that
    /// every figure is printed.
    static OVER: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Records a failure of `name` unless `ok`.
fn expect(ok: bool, what: String) {
    if !ok {
        OVER.with(|o| o.borrow_mut().push(what));
    }
}

/// Decodes `payload` as a message, prints the figures and checks the bound.
fn check_message(name: &str, payload: Bytes) -> Result<(), aqueduct::DecodeError> {
    let input = payload.len();
    let (allocated, r) = measure(|| Message::decode(payload));
    report(name, input, allocated, &r);
    expect(
        allocated <= bound(input),
        format!(
            "{name}: decoding {input} bytes allocated {allocated} bytes, over the bound of {} \
             ({RATIO} x input + {FLOOR})",
            bound(input)
        ),
    );
    r
}

fn report<E: std::fmt::Debug>(name: &str, input: usize, allocated: usize, r: &Result<(), E>) {
    println!(
        "{name}: input {input} B, allocated {allocated} B ({:.2} x input), {}",
        allocated as f64 / input as f64,
        match r {
            Ok(()) => "decoded".to_string(),
            Err(e) => format!("{e:?}"),
        }
    );
}

/// An amqp-value section holding `value`.
fn amqp_value(value: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(3 + value.len());
    b.put_slice(&[0x00, 0x53, 0x77]);
    b.put_slice(value);
    b.freeze()
}

/// A list32 of `count` items whose encodings are `items`.
fn list32(count: u32, items: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(9 + items.len());
    v.push(0xd0);
    v.put_u32(4 + items.len() as u32);
    v.put_u32(count);
    v.extend_from_slice(items);
    v
}

fn is_over_budget(e: &aqueduct::DecodeError) -> bool {
    matches!(e.kind(), DecodeErrorKind::AllocationLimit { .. })
}

#[test]
fn decoding_allocates_at_most_a_small_multiple_of_the_input() {
    // The counter works.
    let (n, _) = measure(|| Ok::<_, ()>(vec![0u8; 1000]));
    assert!(n >= 1000);

    // The documented defaults are the ones this test checks against.
    let limits = Limits::default();
    assert_eq!((limits.alloc_ratio, limits.alloc_floor), (RATIO, FLOOR));

    // 1. A 20 MB amqp-value list of nulls: valid AMQP, one byte per value.
    let n = 20_000_000;
    let nulls = amqp_value(&list32(n, &vec![0x40; n as usize]));
    let r = check_message("20 MB list of nulls", nulls);
    expect(
        r.as_ref().is_err_and(is_over_budget),
        format!("20 MB of nulls: {r:?}"),
    );

    // 2. A 4 MB array whose zero-width elements (null, true, false, uint0,
    // ulong0, list0) declare eight elements per byte of the array, followed
    // by bytes they cannot account for.
    for code in [0x40u8, 0x41, 0x42, 0x43, 0x44, 0x45] {
        let junk = 4_000_000usize;
        let count = 8 * junk as u32;
        let mut v = vec![0xf0];
        v.put_u32(4 + 1 + junk as u32);
        v.put_u32(count);
        v.push(code);
        v.resize(v.len() + junk, 0x40);
        let name = format!("4 MB array of 0x{code:02x} x {count}");
        let r = check_message(&name, amqp_value(&v));
        expect(r.is_err(), format!("{name}: {r:?}"));
    }

    // 2b. The same array, well-formed (no junk): the count is bounded by the
    // allocation budget.
    let mut v = vec![0xf0];
    v.put_u32(5);
    v.put_u32(u32::MAX);
    v.push(0x40);
    let r = check_message("array of 0x40 x 2^32-1, well-formed", amqp_value(&v));
    expect(
        r.as_ref().is_err_and(is_over_budget),
        format!("array of 2^32-1 nulls: {r:?}"),
    );

    // 3. Compound-heavy values: described lists, maps of nulls, lists
    // nested as deep as allowed, empty strings and one-letter symbols.
    let described: Vec<u8> = [0x00, 0x44, 0x45].repeat(1_000_000);
    check_message(
        "list of 1M described list0",
        amqp_value(&list32(1_000_000, &described)),
    )
    .ok();
    let mut map = vec![0xd1];
    map.put_u32(4 + 2_000_000);
    map.put_u32(2_000_000);
    map.resize(map.len() + 2_000_000, 0x40);
    check_message("map of 1M null pairs", amqp_value(&map)).ok();
    // A list8 holding a list8 holding ... 60 deep, then null.
    let mut nested = vec![0x40u8];
    for _ in 0..60 {
        let mut outer = vec![0xc0, nested.len() as u8 + 1, 1];
        if nested.len() + 1 > 255 {
            break;
        }
        outer.extend_from_slice(&nested);
        nested = outer;
    }
    let items = nested.repeat(20_000);
    check_message(
        "list of 20k lists nested 60 deep",
        amqp_value(&list32(20_000, &items)),
    )
    .ok();
    let strings = [0xa1, 0x00].repeat(1_000_000);
    check_message(
        "list of 1M empty strings",
        amqp_value(&list32(1_000_000, &strings)),
    )
    .ok();
    let symbols = [0xa3, 0x01, b'x'].repeat(1_000_000);
    check_message(
        "list of 1M one-letter symbols",
        amqp_value(&list32(1_000_000, &symbols)),
    )
    .ok();

    // The same through a bare `Decoder` (as frames are decoded).
    let input = Bytes::from(list32(1_000_000, &vec![0x40; 1_000_000]));
    let len = input.len();
    let (allocated, r) = measure(|| Decoder::new(input).read_value());
    report("Decoder: list of 1M nulls", len, allocated, &r);
    expect(
        allocated <= bound(len),
        format!("Decoder: list of 1M nulls allocated {allocated} bytes"),
    );

    // 4. Valid messages of realistic shapes decode, within the bound.
    let typical = Message::builder()
        .id("msg-0001")
        .to("queue/a")
        .subject("reading")
        .content_type("application/json")
        .application_property("kind", "reading")
        .application_property("seq", 42i32)
        .application_property("urgent", true)
        .body(Bytes::from(vec![0xab; 1_000_000]))
        .build();
    let mut buf = BytesMut::new();
    typical.encode(&mut buf);
    check_message("typical message, 1 MB data body", buf.split().freeze())
        .expect("a typical message decodes");

    let mut seq = Message::builder().id(1u64).build();
    seq.body = aqueduct::message::Body::Value(aqueduct::types::Value::List(
        (0..10_000i32)
            .map(|i| format!("item number {i}").into())
            .collect(),
    ));
    seq.encode(&mut buf);
    check_message("list of 10k short strings", buf.split().freeze())
        .expect("a list of strings decodes");

    let mut ints = Message::builder().id(2u64).build();
    ints.body = aqueduct::message::Body::Value(aqueduct::types::Value::List(
        (0..10_000i64).map(|i| (i * 1_000_003).into()).collect(),
    ));
    ints.encode(&mut buf);
    check_message("list of 10k longs", buf.split().freeze()).expect("a list of longs decodes");

    let mut small = Message::builder().id(3u64).build();
    small.body = aqueduct::message::Body::Value(aqueduct::types::Value::List(
        (0..1_000i32).map(|i| (i % 100).into()).collect(),
    ));
    small.encode(&mut buf);
    check_message("list of 1k small ints", buf.split().freeze())
        .expect("a list of 1000 small ints decodes");

    let over = OVER.with(|o| o.take());
    assert!(over.is_empty(), "over the bound:\n{}", over.join("\n"));
}
