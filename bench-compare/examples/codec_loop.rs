//! Runs one codec operation N times, for profilers and instruction counts
//! (`valgrind --tool=callgrind`, `perf record`), where a criterion run's
//! statistics and warm-up get in the way.
//!
//! Usage: `codec_loop {aqueduct|serde_amqp} {encode|decode} N`.
//! Instructions per operation: the difference between two runs with
//! different N, divided by the difference of the Ns.

use aqueduct::Message;
use aqueduct_bench_compare::{aq, fe};
use bytes::{Bytes, BytesMut};
use std::hint::black_box;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (lib, op) = (args[1].as_str(), args[2].as_str());
    let n: u64 = args[3].parse().expect("N");
    let mut ours = BytesMut::new();
    aq::message().encode(&mut ours);
    let ours: Bytes = ours.freeze();
    let mut theirs = Vec::new();
    fe::encode(&fe::message(), &mut theirs);
    match (lib, op) {
        ("aqueduct", "decode") => {
            for _ in 0..n {
                drop(black_box(Message::decode(black_box(ours.clone())).unwrap()));
            }
        }
        ("aqueduct", "encode") => {
            let m = aq::message();
            let mut buf = BytesMut::with_capacity(1024);
            for _ in 0..n {
                buf.clear();
                black_box(&m).encode(&mut buf);
                black_box(buf.len());
            }
        }
        ("serde_amqp", "decode") => {
            for _ in 0..n {
                drop(black_box(fe::decode(black_box(&theirs))));
            }
        }
        ("serde_amqp", "encode") => {
            let m = fe::message();
            let mut vec = Vec::with_capacity(1024);
            for _ in 0..n {
                vec.clear();
                fe::encode(black_box(&m), &mut vec);
                black_box(vec.len());
            }
        }
        _ => panic!("usage: codec_loop {{aqueduct|serde_amqp}} {{encode|decode}} N"),
    }
}
