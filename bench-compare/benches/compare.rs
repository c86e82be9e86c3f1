//! aqueduct vs fe2o3's serde_amqp: encode and decode of the same message
//! (see `aqueduct_bench_compare::msg`), plus allocations per operation.
//!
//! Run: `cd bench-compare && cargo bench`.

use aqueduct::Message;
use aqueduct_bench_compare::{allocs_per_call, aq, fe, Counting};
use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, Criterion};

#[global_allocator]
static GLOBAL: Counting = Counting;

fn check_same_message() -> (Bytes, Vec<u8>) {
    let a = aq::message();
    let mut ours = BytesMut::new();
    a.encode(&mut ours);
    let mut theirs = Vec::new();
    fe::encode(&fe::message(), &mut theirs);
    // Each library decodes the other's bytes to the same message.
    assert_eq!(Message::decode(Bytes::from(theirs.clone())).unwrap(), a);
    assert_eq!(fe::decode(&ours), fe::decode(&theirs));
    eprintln!(
        "encoded size: aqueduct {} bytes, serde_amqp {} bytes",
        ours.len(),
        theirs.len()
    );
    (ours.freeze(), theirs)
}

fn report_allocations(ours: &Bytes, theirs: &[u8]) {
    let a = aq::message();
    let f = fe::message();
    let mut buf = BytesMut::with_capacity(1024);
    let mut vec = Vec::with_capacity(1024);
    let n = 10_000;
    eprintln!(
        "allocations per op: aqueduct encode {:.2}, decode {:.2}; serde_amqp encode {:.2}, decode {:.2}",
        allocs_per_call(n, || {
            buf.clear();
            a.encode(&mut buf);
        }),
        allocs_per_call(n, || drop(black_box(Message::decode(ours.clone()).unwrap()))),
        allocs_per_call(n, || {
            vec.clear();
            fe::encode(&f, &mut vec);
        }),
        allocs_per_call(n, || drop(black_box(fe::decode(theirs)))),
    );
}

fn compare(c: &mut Criterion) {
    let (ours, theirs) = check_same_message();
    report_allocations(&ours, &theirs);

    let a = aq::message();
    let f = fe::message();
    let mut g = c.benchmark_group("encode");
    let mut buf = BytesMut::with_capacity(1024);
    g.bench_function("aqueduct", |b| {
        b.iter(|| {
            buf.clear();
            black_box(&a).encode(&mut buf);
            black_box(buf.len())
        })
    });
    let mut vec = Vec::with_capacity(1024);
    g.bench_function("serde_amqp", |b| {
        b.iter(|| {
            vec.clear();
            fe::encode(black_box(&f), &mut vec);
            black_box(vec.len())
        })
    });
    g.finish();

    let mut g = c.benchmark_group("decode");
    g.bench_function("aqueduct", |b| {
        b.iter(|| Message::decode(black_box(ours.clone())).unwrap())
    });
    g.bench_function("serde_amqp", |b| b.iter(|| fe::decode(black_box(&theirs))));
    g.finish();
}

criterion_group!(benches, compare);
criterion_main!(benches);
