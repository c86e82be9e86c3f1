//! Fuzzes `Decoder::read_value` (and `skip_value`) on arbitrary bytes: no
//! panic, the bytes allocated while decoding stay within the decoder's
//! allocation budget (`Limits::alloc_budget` of the input length, counted
//! with `stats_alloc`), and every value that decodes re-encodes (with
//! `encoded_len` equal to the bytes written) to bytes that decode to an
//! equal value and re-encode to the same bytes.
//!
//! Run (from the repository root):
//!     RUSTC_BOOTSTRAP=1 cargo fuzz run value_decode -- -max_total_time=600
//! or longer with `-max_total_time=N` (seconds; omit it to run until a crash),
//! in parallel with `-jobs=8 -workers=8`. No corpus is kept in git: libFuzzer
//! starts from nothing and finds the constructors within seconds.
#![no_main]

use aqueduct::types::{Decoder, Encode, Limits, Value};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Allocation a decode may make beyond its budget: the text of an error
/// (which quotes at most 64 characters of the input).
const SLACK: usize = 4096;

/// Bytes allocated while `f` runs.
fn allocated<T>(f: impl FnOnce() -> T) -> (usize, T) {
    let region = Region::new(GLOBAL);
    let r = f();
    let s = region.change();
    (s.bytes_allocated + s.bytes_reallocated.max(0) as usize, r)
}

/// Limits without an allocation budget, to decode our own re-encodings: they
/// may be much shorter than the input (`uint` becomes `uint0`), so hold more
/// values per byte than the input did.
fn unbudgeted() -> Limits {
    Limits {
        alloc_ratio: usize::MAX,
        ..Limits::default()
    }
}

/// NaN != NaN: compare values by their canonical encoding where floats are
/// involved.
fn check_same(a: &Value, b: &Value, a_bytes: &[u8], b_bytes: &[u8]) {
    if a != b {
        assert_eq!(a_bytes, b_bytes, "values differ: {a:?} vs {b:?}");
    }
}

fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.encoded_len());
    v.encode(&mut out);
    assert_eq!(out.len(), v.encoded_len(), "encoded_len of {v:?}");
    out
}

fuzz_target!(|data: &[u8]| {
    let input = Bytes::copy_from_slice(data);
    let budget = Limits::default().alloc_budget(input.len()) + SLACK;
    let mut spent = 0;
    let mut d = Decoder::new(input.clone());
    while !d.is_empty() {
        let before = d.remaining();
        let (n, r) = allocated(|| d.read_value());
        spent += n;
        assert!(
            spent <= budget,
            "decoding {} bytes allocated {spent} bytes, over the budget of {budget}",
            input.len()
        );
        let v = match r {
            Ok(v) => v,
            Err(_) => break,
        };
        assert!(d.remaining() < before);
        let bytes = encode(&v);
        let mut d2 = Decoder::with_limits(Bytes::from(bytes.clone()), unbudgeted());
        let back = d2.read_value().expect("our own encoding decodes");
        assert!(d2.is_empty(), "trailing bytes after our encoding");
        let again = encode(&back);
        check_same(&v, &back, &bytes, &again);
        assert_eq!(bytes, again, "re-encoding is not stable");
    }
    let mut d = Decoder::new(input);
    while !d.is_empty() && d.skip_value().is_ok() {}
});
