//! The sans-IO engine alone: a sender engine and a receiver engine paired in
//! memory, no sockets, no tasks, no channels. Each iteration moves a batch
//! of 100-byte messages (already encoded, as `Sender::send` hands them to
//! the driver) at-least-once: the sender queues them, the receiver gets
//! each delivery, accepts it, reports it consumed and tops its credit up at
//! half the window (1000), as the client's receiver does; the batch ends
//! when the sender has every outcome.
//!
//! This is the floor under the library's W1 figure (`scripts/bench`): what
//! the protocol work costs per message, with the async plumbing (driver
//! task, channels, wakeups) and the kernel taken out.
//!
//! Run: `cargo bench --bench engine`.
#![allow(missing_docs)] // criterion_group! generates an undocumented pub fn

use aqueduct::frame::{Attach, DeliveryState, Role, Source, Target};
use aqueduct::proto::{Config, Connection, Event, LinkId, Payload, Side};
use aqueduct::Message;
use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::time::Instant;

const WINDOW: u32 = 1000;
const BATCH: u64 = 10_000;

struct Pair {
    client: Connection,
    server: Connection,
    now: Instant,
    sender: LinkId,
    receiver: LinkId,
    /// Deliveries the receiver has taken since its last credit top-up.
    taken: u32,
}

impl Pair {
    fn new() -> Self {
        let config = |id: &str| Config {
            container_id: id.into(),
            ..Default::default()
        };
        let mut client = Connection::new(Side::Client, config("client"));
        let mut server = Connection::new(Side::Server, config("server"));
        let now = Instant::now();
        client.open();
        server.open();
        let session = client.begin().expect("begin");
        let sender = client
            .attach(
                session,
                Attach {
                    name: "bench".into(),
                    role: Role::Sender,
                    target: Some(Target::new("q").into()),
                    source: Some(Source::default()),
                    ..Default::default()
                },
            )
            .expect("attach");
        let mut receiver = None;
        for _ in 0..10 {
            shuttle(&mut client, &mut server, now);
            while let Some(e) = server.poll_event() {
                if let Event::IncomingLink { link, .. } = e {
                    server
                        .accept_link(
                            link,
                            Attach {
                                target: Some(Target::new("q").into()),
                                source: Some(Source::default()),
                                ..Default::default()
                            },
                        )
                        .expect("accept");
                    server.add_credit(link, WINDOW, false).expect("credit");
                    receiver = Some(link);
                }
            }
            while client.poll_event().is_some() {}
        }
        assert_eq!(client.credit(sender), WINDOW, "link not set up");
        Pair {
            client,
            server,
            now,
            sender,
            receiver: receiver.expect("incoming link"),
            taken: 0,
        }
    }

    /// Sends `n` copies of `payload` and runs both engines until the sender
    /// holds every outcome.
    fn transfer(&mut self, payload: &Bytes, n: u64) {
        for _ in 0..n {
            self.client
                .send(self.sender, Payload::Encoded(payload.clone()), false)
                .expect("send");
        }
        let mut outcomes = 0;
        while outcomes < n {
            let moved = shuttle(&mut self.client, &mut self.server, self.now);
            while let Some(e) = self.server.poll_event() {
                if let Event::Delivery { delivery, .. } = e {
                    self.server
                        .settle(delivery, Some(DeliveryState::Accepted), true)
                        .expect("settle");
                    self.server.consumed(self.receiver, 1).expect("consumed");
                    self.taken += 1;
                    if self.taken >= WINDOW / 2 {
                        self.server
                            .add_credit(self.receiver, self.taken, false)
                            .expect("credit");
                        self.taken = 0;
                    }
                }
            }
            while let Some(e) = self.client.poll_event() {
                if let Event::Outcome { state, .. } = e {
                    assert_eq!(state, Some(DeliveryState::Accepted));
                    outcomes += 1;
                }
            }
            assert!(moved || outcomes == n, "the engines stalled");
        }
    }
}

/// Moves the bytes each engine has produced to the other; false if neither
/// had any.
fn shuttle(client: &mut Connection, server: &mut Connection, now: Instant) -> bool {
    let mut moved = false;
    if let Some(out) = client.take_output(now) {
        server.input_buffer().extend_from_slice(&out);
        server.handle_input(now);
        moved = true;
    }
    if let Some(out) = server.take_output(now) {
        client.input_buffer().extend_from_slice(&out);
        client.handle_input(now);
        moved = true;
    }
    moved
}

fn bench_engine(c: &mut Criterion) {
    let message = Message::builder()
        .id(1u64)
        .body(Bytes::from(vec![b'x'; 100]))
        .build();
    let mut buf = BytesMut::new();
    message.encode(&mut buf);
    let payload = buf.freeze();

    let mut pair = Pair::new();
    let mut g = c.benchmark_group("engine_pair");
    g.throughput(Throughput::Elements(BATCH));
    g.bench_function("at_least_once_100B", |b| {
        b.iter(|| pair.transfer(&payload, BATCH))
    });
    g.finish();
}

criterion_group!(benches, bench_engine);
criterion_main!(benches);
