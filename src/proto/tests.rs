//! Two engines paired in memory and stepped until quiet, as quinn's
//! `tests/util.rs` does.

use super::*;
use crate::frame::*;
use crate::message::Message;
use crate::types::Value;
use bytes::Bytes;
use std::time::{Duration, Instant};

struct Pair {
    client: Connection,
    server: Connection,
    now: Instant,
    client_events: Vec<Event>,
    server_events: Vec<Event>,
}

impl Pair {
    fn new(client: Config, server: Config) -> Self {
        let mut p = Pair {
            client: Connection::new(Side::Client, client),
            server: Connection::new(Side::Server, server),
            now: Instant::now(),
            client_events: Vec::new(),
            server_events: Vec::new(),
        };
        p.client.open();
        p.run();
        assert!(matches!(p.server_events.remove(0), Event::Opened(_)));
        p.server.open();
        p.run();
        assert!(matches!(p.client_events.remove(0), Event::Opened(_)));
        p
    }

    fn plain() -> Self {
        Self::new(
            Config {
                container_id: "client".into(),
                ..Default::default()
            },
            Config {
                container_id: "server".into(),
                ..Default::default()
            },
        )
    }

    /// Moves bytes both ways until neither side has anything to say.
    fn run(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            if let Some(out) = self.client.take_output(self.now) {
                self.server.handle_bytes(&out, self.now);
                moved = true;
            }
            if let Some(out) = self.server.take_output(self.now) {
                self.client.handle_bytes(&out, self.now);
                moved = true;
            }
            while let Some(e) = self.client.poll_event() {
                self.client_events.push(e);
            }
            while let Some(e) = self.server.poll_event() {
                self.server_events.push(e);
            }
            if !moved {
                return;
            }
        }
        panic!("engines never went quiet");
    }

    /// A client sender linked to a server receiver, with `credit`.
    fn link(&mut self, credit: u32) -> (LinkId, LinkId) {
        let cs = self.client.begin().unwrap();
        self.run();
        let sender = self
            .client
            .attach(
                cs,
                Attach {
                    name: "s".into(),
                    role: Role::Sender,
                    target: Some(Target::new("q").into()),
                    source: Some(Source::default()),
                    ..Default::default()
                },
            )
            .unwrap();
        self.run();
        let receiver = self
            .server_events
            .drain(..)
            .find_map(|e| match e {
                Event::IncomingLink { link, .. } => Some(link),
                _ => None,
            })
            .expect("incoming link");
        self.server
            .accept_link(
                receiver,
                Attach {
                    target: Some(Target::new("q").into()),
                    source: Some(Source::default()),
                    ..Default::default()
                },
            )
            .unwrap();
        if credit > 0 {
            self.server.add_credit(receiver, credit, false).unwrap();
        }
        self.run();
        self.client_events.clear();
        (sender, receiver)
    }

    /// Sends `n` unsettled messages "0", "1", ... on `sender`; their ids.
    fn send_numbered(&mut self, sender: LinkId, n: usize) -> Vec<SendId> {
        (0..n)
            .map(|i| {
                self.client
                    .send(sender, Message::from(format!("{i}")), false)
                    .unwrap()
            })
            .collect()
    }

    fn deliveries(&mut self) -> Vec<(DeliveryId, Bytes, bool)> {
        let mut out = Vec::new();
        self.server_events.retain(|e| match e {
            Event::Delivery {
                delivery,
                payload,
                settled,
                ..
            } => {
                out.push((*delivery, payload.clone(), *settled));
                false
            }
            _ => true,
        });
        out
    }

    fn outcomes(&mut self) -> Vec<(SendId, Option<DeliveryState>)> {
        let mut out = Vec::new();
        self.client_events.retain(|e| match e {
            Event::Outcome { send, state, .. } => {
                out.push((*send, state.clone()));
                false
            }
            _ => true,
        });
        out
    }
}

fn body(payload: &Bytes) -> Value {
    match Message::decode(payload.clone()).unwrap().body() {
        crate::message::Body::Value(v) => v.clone(),
        b => panic!("unexpected body {b:?}"),
    }
}

#[test]
fn send_waits_for_credit_then_flows() {
    let mut p = Pair::plain();
    let (sender, receiver) = p.link(0);
    for i in 0..5 {
        p.client
            .send(sender, Message::from(format!("m{i}")), false)
            .unwrap();
    }
    p.run();
    assert!(p.deliveries().is_empty(), "no credit, nothing sent");
    assert_eq!(p.client.queued(sender), 5);
    p.server.add_credit(receiver, 3, false).unwrap();
    p.run();
    let got = p.deliveries();
    assert_eq!(got.len(), 3);
    assert_eq!(body(&got[0].1), Value::String("m0".into()));
    assert_eq!(p.client.queued(sender), 2);
    assert_eq!(p.client.credit(sender), 0);
    // Accept all three: one disposition range.
    for (d, _, _) in &got {
        p.server
            .settle(*d, Some(DeliveryState::Accepted), true)
            .unwrap();
    }
    let out = p.server.take_output(p.now).unwrap();
    assert_eq!(
        out.len(),
        8 + 3 + 3 + 1 + 1 + 2 + 1 + 4,
        "one disposition frame with a range"
    );
    p.client.handle_bytes(&out, p.now);
    p.run();
    let outcomes = p.outcomes();
    assert_eq!(outcomes.len(), 3);
    assert!(outcomes
        .iter()
        .all(|(_, s)| *s == Some(DeliveryState::Accepted)));
    p.server.add_credit(receiver, 10, false).unwrap();
    p.run();
    assert_eq!(p.deliveries().len(), 2);
}

#[test]
fn multi_frame_messages_reassemble() {
    let mut p = Pair::new(
        Config {
            container_id: "c".into(),
            max_frame_size: 512,
            ..Default::default()
        },
        Config {
            container_id: "s".into(),
            max_frame_size: 512,
            incoming_window: 8,
            ..Default::default()
        },
    );
    let (sender, _) = p.link(10);
    let big = Bytes::from((0..100_000u32).map(|i| i as u8).collect::<Vec<_>>());
    p.client
        .send(sender, Message::from(big.clone()), false)
        .unwrap();
    p.run();
    let got = p.deliveries();
    assert_eq!(got.len(), 1);
    let m = Message::decode(got[0].1.clone()).unwrap();
    assert_eq!(m.body().as_bytes().unwrap(), &big[..]);
}

#[test]
fn presettled_sends_report_sent_and_need_no_disposition() {
    let mut p = Pair::plain();
    let (sender, _) = p.link(10);
    let id = p.client.send(sender, Message::from("x"), true).unwrap();
    p.run();
    assert!(p
        .client_events
        .iter()
        .any(|e| matches!(e, Event::Sent { send, .. } if *send == id)));
    let got = p.deliveries();
    assert!(got[0].2, "delivery arrives settled");
}

#[test]
fn drain_uses_up_credit() {
    let mut p = Pair::plain();
    let (sender, receiver) = p.link(0);
    p.client.send(sender, Message::from("only"), false).unwrap();
    p.server.add_credit(receiver, 5, true).unwrap();
    p.run();
    assert_eq!(p.deliveries().len(), 1);
    assert!(p
        .server_events
        .iter()
        .any(|e| matches!(e, Event::Drained { link } if *link == receiver)));
    assert_eq!(p.server.credit(receiver), 0);
    assert_eq!(p.client.credit(sender), 0);
}

#[test]
fn out_of_order_dispositions() {
    let mut p = Pair::plain();
    let (sender, _) = p.link(10);
    let ids = p.send_numbered(sender, 4);
    p.run();
    let got = p.deliveries();
    p.server
        .settle(got[3].0, Some(DeliveryState::Released), true)
        .unwrap();
    p.server
        .settle(got[0].0, Some(DeliveryState::Accepted), true)
        .unwrap();
    p.run();
    let o = p.outcomes();
    assert_eq!(
        o,
        vec![
            (ids[3], Some(DeliveryState::Released)),
            (ids[0], Some(DeliveryState::Accepted))
        ]
    );
    p.server
        .settle(got[2].0, Some(DeliveryState::Accepted), true)
        .unwrap();
    p.server
        .settle(got[1].0, Some(DeliveryState::Accepted), true)
        .unwrap();
    p.run();
    assert_eq!(p.outcomes().len(), 2);
}

#[test]
fn a_range_settles_the_unsettled_ones_in_runs() {
    let mut p = Pair::plain();
    let (sender, receiver) = p.link(10);
    let ids = p.send_numbered(sender, 6);
    p.run();
    let got = p.deliveries();
    let first = got[0].0.id;
    p.server
        .settle(got[2].0, Some(DeliveryState::Released), true)
        .unwrap();
    let n = p
        .server
        .settle_range(
            receiver,
            first,
            first + 5,
            Some(DeliveryState::Accepted),
            true,
        )
        .unwrap();
    assert_eq!(n, 5, "the one settled already is skipped");
    let runs: Vec<(u32, u32)> = p
        .server
        .store
        .sessions
        .values()
        .flat_map(|s| {
            s.dispositions
                .iter()
                .map(|d| (d.first - first, d.last - first))
        })
        .collect();
    assert_eq!(runs, [(2, 2), (0, 1), (3, 5)]);
    p.run();
    let mut o = p.outcomes();
    o.sort_by_key(|(id, _)| *id);
    let want: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let s = if i == 2 {
                DeliveryState::Released
            } else {
                DeliveryState::Accepted
            };
            (*id, Some(s))
        })
        .collect();
    assert_eq!(o, want);
    // Nothing is left to settle, and a link that is not ours is refused.
    assert_eq!(
        p.server
            .settle_range(receiver, first, first + 5, None, true)
            .unwrap(),
        0
    );
    assert!(p
        .server
        .settle_range(LinkId(9999), 0, 1, None, true)
        .is_err());
}

#[test]
fn transfer_without_credit_detaches_the_link() {
    let mut p = Pair::new(
        Config::default(),
        Config {
            incoming_window: 4,
            ..Default::default()
        },
    );
    let (sender, receiver) = p.link(1);
    p.client.send(sender, Message::from("a"), false).unwrap();
    p.run();
    assert_eq!(p.deliveries().len(), 1);
    // The credit (1) is used up. Transfers beyond it are tolerated within
    // the session's incoming window (4 here) since our last flow (RabbitMQ
    // overshoots under load) and counted; past that the link is detached.
    // The application consumes without granting credit (manual credit), so
    // the window reopens but the link flow does not.
    let forge = |ids: std::ops::RangeInclusive<u32>| {
        let mut forged = bytes::BytesMut::new();
        for id in ids {
            crate::frame::codec::encode_frame(
                &mut forged,
                0,
                &Transfer {
                    handle: 0,
                    delivery_id: Some(id),
                    delivery_tag: Some(Bytes::copy_from_slice(&id.to_be_bytes())),
                    message_format: Some(0),
                    settled: Some(true),
                    ..Default::default()
                },
                &[0x00, 0x53, 0x77, 0x40],
            );
        }
        forged
    };
    p.server.handle_bytes(&forge(1..=3), p.now);
    p.server.consumed(receiver, 4).unwrap();
    p.server.handle_bytes(&forge(4..=5), p.now);
    p.run();
    assert_eq!(
        p.deliveries().len(),
        4,
        "the overshoot within the budget is delivered"
    );
    assert_eq!(p.server.credit_overshoot(), 4);
    let detached = p.server_events.iter().find_map(|e| match e {
        Event::LinkDetached {
            link,
            error,
            remote: false,
            ..
        } if *link == receiver => error.clone(),
        _ => None,
    });
    assert_eq!(
        detached.unwrap().condition,
        condition::TRANSFER_LIMIT_EXCEEDED
    );
    assert!(p.client_events.iter().any(|e| matches!(
        e,
        Event::LinkDetached { error: Some(err), .. } if err.condition == condition::TRANSFER_LIMIT_EXCEEDED
    )));
}

#[test]
fn aborted_transfer_is_dropped() {
    let mut p = Pair::plain();
    let (_, _) = p.link(2);
    let mut f = bytes::BytesMut::new();
    let t = Transfer {
        handle: 0,
        delivery_id: Some(0),
        delivery_tag: Some(Bytes::from_static(b"t")),
        message_format: Some(0),
        more: true,
        ..Default::default()
    };
    crate::frame::codec::encode_frame(&mut f, 0, &t, b"partial");
    crate::frame::codec::encode_frame(
        &mut f,
        0,
        &Transfer {
            handle: 0,
            aborted: true,
            ..Default::default()
        },
        &[],
    );
    p.server.handle_bytes(&f, p.now);
    p.run();
    assert!(p.deliveries().is_empty());
}

#[test]
fn oversize_message_detaches_with_message_size_exceeded() {
    let mut p = Pair::new(
        Config {
            container_id: "c".into(),
            ..Default::default()
        },
        Config {
            container_id: "s".into(),
            max_message_size: 1000,
            ..Default::default()
        },
    );
    let (sender, _) = p.link(5);
    // The server announced its limit in attach: the sender refuses locally.
    let id = p
        .client
        .send(sender, Message::from(vec![0u8; 5000]), false)
        .unwrap();
    p.run();
    let o = p.outcomes();
    assert_eq!(o.len(), 1);
    assert_eq!(o[0].0, id);
    match &o[0].1 {
        Some(DeliveryState::Rejected(r)) => {
            assert_eq!(
                r.error.as_ref().unwrap().condition,
                condition::MESSAGE_SIZE_EXCEEDED
            )
        }
        s => panic!("unexpected {s:?}"),
    }
}

#[test]
fn detach_with_error_reaches_the_peer() {
    let mut p = Pair::plain();
    let (sender, receiver) = p.link(5);
    p.server
        .detach(
            receiver,
            true,
            Some(AmqpError::new(condition::NOT_FOUND, "gone")),
        )
        .unwrap();
    p.client.send(sender, Message::from("late"), false).ok();
    p.run();
    let e = p
        .client_events
        .iter()
        .find_map(|e| match e {
            Event::LinkDetached {
                link,
                error,
                remote: true,
                ..
            } if *link == sender => error.clone(),
            _ => None,
        })
        .expect("detach event");
    assert_eq!(e.condition, condition::NOT_FOUND);
    assert_eq!(e.description.as_deref(), Some("gone"));
}

#[test]
fn refused_link_sees_the_error() {
    let mut p = Pair::plain();
    let cs = p.client.begin().unwrap();
    p.run();
    let link = p
        .client
        .attach(
            cs,
            Attach {
                name: "r".into(),
                role: Role::Receiver,
                source: Some(Source::new("nope")),
                ..Default::default()
            },
        )
        .unwrap();
    p.run();
    let incoming = p
        .server_events
        .iter()
        .find_map(|e| match e {
            Event::IncomingLink { link, .. } => Some(*link),
            _ => None,
        })
        .unwrap();
    p.server
        .refuse_link(
            incoming,
            AmqpError::new(condition::NOT_FOUND, "no such node"),
        )
        .unwrap();
    p.run();
    assert!(p.client_events.iter().any(|e| matches!(
        e,
        Event::LinkDetached { link: l, error: Some(err), .. } if *l == link && err.condition == condition::NOT_FOUND
    )));
}

#[test]
fn session_end_and_connection_close_with_errors() {
    let mut p = Pair::plain();
    let s = p.client.begin().unwrap();
    p.run();
    p.client
        .end(s, Some(AmqpError::new(condition::INTERNAL_ERROR, "bye")))
        .unwrap();
    p.run();
    assert!(p.server_events.iter().any(|e| matches!(
        e,
        Event::SessionEnded { error: Some(err), .. } if err.condition == condition::INTERNAL_ERROR
    )));
    p.server.close(Some(AmqpError::new(
        condition::CONNECTION_FORCED,
        "shutdown",
    )));
    p.run();
    assert!(p.client_events.iter().any(|e| matches!(
        e,
        Event::Closed { error: Some(err), remote: true, .. } if err.condition == condition::CONNECTION_FORCED
    )));
    assert!(p.client.is_closed() && p.server.is_closed());
}

#[test]
fn garbage_closes_with_decode_or_framing_error() {
    let mut p = Pair::plain();
    p.server.handle_bytes(
        &[0, 0, 0, 16, 2, 0, 0, 0, 0x00, 0x53, 0x10, 0xff, 1, 2, 3, 4],
        p.now,
    );
    p.run();
    let err = p
        .server_events
        .iter()
        .find_map(|e| match e {
            Event::Closed {
                error,
                remote: false,
                ..
            } => error.clone(),
            _ => None,
        })
        .unwrap();
    assert_eq!(err.condition, condition::DECODE_ERROR);
    assert!(p.client_events.iter().any(|e| matches!(
        e,
        Event::Closed { error: Some(err), remote: true, .. } if err.condition == condition::DECODE_ERROR
    )));

    let mut p = Pair::plain();
    p.server.handle_bytes(&[0, 0, 0, 4, 2, 0, 0, 0], p.now);
    p.run();
    assert!(p.server_events.iter().any(|e| matches!(
        e,
        Event::Closed { error: Some(err), remote: false, .. } if err.condition == condition::FRAMING_ERROR
    )));
}

#[test]
fn bad_protocol_header_is_a_framing_error() {
    let mut server = Connection::new(Side::Server, Config::default());
    server.handle_bytes(b"GET / HTTP/1.1\r\n", Instant::now());
    match server.poll_event() {
        Some(Event::Closed { error: Some(e), .. }) => {
            assert_eq!(e.condition, condition::FRAMING_ERROR)
        }
        e => panic!("unexpected {e:?}"),
    }
}

#[test]
fn idle_timeout_heartbeats_and_expiry() {
    let mut p = Pair::new(
        Config {
            container_id: "c".into(),
            idle_timeout: Some(Duration::from_secs(10)),
            ..Default::default()
        },
        Config {
            container_id: "s".into(),
            idle_timeout: Some(Duration::from_secs(4)),
            ..Default::default()
        },
    );
    // The client must send something every 2 s (half the server's 4 s).
    let t = p.client.poll_timeout().unwrap();
    assert!(t <= p.now + Duration::from_secs(2));
    p.client.handle_timeout(p.now + Duration::from_secs(2));
    assert_eq!(
        &p.client.take_output(p.now).unwrap()[..],
        &[0, 0, 0, 8, 2, 0, 0, 0]
    );
    // The server hears nothing for 4 s: it closes.
    p.server.handle_timeout(p.now + Duration::from_secs(5));
    p.run();
    assert!(p.client_events.iter().any(|e| matches!(
        e,
        Event::Closed { error: Some(err), remote: true, .. } if err.condition == condition::RESOURCE_LIMIT_EXCEEDED
    )));
}

/// A minimal PLAIN provider for the engine's own tests (the library's
/// mechanisms come from rsasl, outside the engine).
#[derive(Debug)]
struct TestPlain(&'static str, String);

#[derive(Debug)]
struct TestPlainMech(Vec<u8>);

impl crate::proto::SaslClientMechanism for TestPlainMech {
    fn name(&self) -> &str {
        "PLAIN"
    }
    fn initial_response(&mut self) -> Result<Option<Vec<u8>>, String> {
        Ok(Some(self.0.clone()))
    }
    fn step(&mut self, _: &[u8]) -> Result<Vec<u8>, String> {
        Err("no challenge expected".into())
    }
    fn finish(&mut self, _: Option<&[u8]>) -> Result<(), String> {
        Ok(())
    }
}

impl crate::proto::SaslClientProvider for TestPlain {
    fn start(
        &self,
        offered: &[&str],
        _: Option<&str>,
    ) -> Result<Box<dyn crate::proto::SaslClientMechanism>, String> {
        if !offered.contains(&"PLAIN") {
            return Err(format!("no PLAIN in {offered:?}"));
        }
        Ok(Box::new(TestPlainMech(
            format!("\0{}\0{}", self.0, self.1).into_bytes(),
        )))
    }
}

#[derive(Debug)]
struct TestPlainServer;

impl crate::proto::SaslServerMechanism for TestPlainServer {
    fn step(&mut self, response: &[u8]) -> crate::proto::SaslServerStep {
        if response == b"\0alice\0secret" {
            crate::proto::SaslServerStep::Success(None)
        } else {
            crate::proto::SaslServerStep::Failure(crate::proto::SaslCode::Auth, "bad".into())
        }
    }
}

impl crate::proto::SaslServerProvider for TestPlainServer {
    fn mechanisms(&self) -> Vec<String> {
        vec!["PLAIN".into()]
    }
    fn start(
        &self,
        m: &str,
        _: Option<&str>,
    ) -> Option<Box<dyn crate::proto::SaslServerMechanism>> {
        (m == "PLAIN").then(|| Box::new(TestPlainServer) as Box<_>)
    }
}

#[test]
fn sasl_plain_success_and_failure() {
    use std::sync::Arc;
    let server = || Config {
        container_id: "s".into(),
        sasl: Sasl::Server(Arc::new(TestPlainServer)),
        ..Default::default()
    };
    let client = |pw: &str| Config {
        container_id: "c".into(),
        sasl: Sasl::Client(Arc::new(TestPlain("alice", pw.to_string()))),
        ..Default::default()
    };
    let p = Pair::new(client("secret"), server());
    assert!(p.client.is_remote_open());

    let mut c = Connection::new(Side::Client, client("wrong"));
    let mut s = Connection::new(Side::Server, server());
    c.open();
    for _ in 0..10 {
        if let Some(o) = c.take_output(Instant::now()) {
            s.handle_bytes(&o, Instant::now());
        }
        if let Some(o) = s.take_output(Instant::now()) {
            c.handle_bytes(&o, Instant::now());
        }
    }
    match c.poll_event() {
        Some(Event::Closed { error: Some(e), .. }) => {
            assert_eq!(e.condition, condition::UNAUTHORIZED_ACCESS)
        }
        e => panic!("unexpected {e:?}"),
    }
}

#[test]
fn incoming_links_are_bounded() {
    let mut p = Pair::new(
        Config {
            container_id: "c".into(),
            ..Default::default()
        },
        Config {
            container_id: "s".into(),
            max_links_per_session: 8,
            ..Default::default()
        },
    );
    p.client.begin().unwrap();
    p.run();
    // A peer that ignores handle-max: attaches forged straight onto the wire.
    let mut f = bytes::BytesMut::new();
    for i in 0..9u32 {
        let a = Attach {
            name: format!("l{i}"),
            handle: i,
            role: Role::Sender,
            initial_delivery_count: Some(0),
            ..Default::default()
        };
        crate::frame::codec::encode_frame(&mut f, 0, &a, &[]);
    }
    p.server.handle_bytes(&f, p.now);
    p.run();
    assert_eq!(
        p.server_events
            .iter()
            .filter(|e| matches!(e, Event::IncomingLink { .. }))
            .count(),
        8
    );
    assert!(p.client_events.iter().any(|e| matches!(
        e,
        Event::Closed { error: Some(err), remote: true, .. } if err.condition == condition::RESOURCE_LIMIT_EXCEEDED
    )));
}

#[test]
fn settlements_go_out_before_a_detach_in_the_same_turn() {
    let mut p = Pair::plain();
    let (sender, receiver) = p.link(5);
    let id = p.client.send(sender, Message::from("x"), false).unwrap();
    p.run();
    let got = p.deliveries();
    p.server
        .settle(got[0].0, Some(DeliveryState::Accepted), true)
        .unwrap();
    p.server.detach(receiver, true, None).unwrap();
    p.run();
    let outcome = p
        .client_events
        .iter()
        .position(|e| matches!(e, Event::Outcome { send, .. } if *send == id));
    let detach = p
        .client_events
        .iter()
        .position(|e| matches!(e, Event::LinkDetached { .. }));
    assert!(outcome.unwrap() < detach.unwrap());
}

// ---- timers on a virtual clock, and the robust-core findings -------------

impl Pair {
    /// Advances the virtual clock by `d`, fires both engines' timers, and
    /// moves what they produced.
    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.client.handle_timeout(self.now);
        self.server.handle_timeout(self.now);
        self.run();
    }

    fn client_link(&mut self, name: &str) -> LinkId {
        let cs = self.client.begin().unwrap();
        self.run();
        let link = self
            .client
            .attach(
                cs,
                Attach {
                    name: name.into(),
                    role: Role::Sender,
                    target: Some(Target::new("q").into()),
                    source: Some(Source::default()),
                    ..Default::default()
                },
            )
            .unwrap();
        self.run();
        link
    }
}

fn frames(out: &[u8]) -> Vec<Performative> {
    let mut buf = bytes::BytesMut::from(out);
    let mut dec = FrameDecoder::default();
    if buf.starts_with(b"AMQP") {
        let _ = buf.split_to(8);
    }
    let mut v = Vec::new();
    while let Ok(Some(f)) = dec.decode(&mut buf) {
        if let Frame::Amqp { performative, .. } = f {
            v.push(performative);
        }
    }
    v
}

#[test]
fn open_timeout_closes_a_silent_peer() {
    let now = Instant::now();
    let mut c = Connection::new(
        Side::Client,
        Config {
            open_timeout: Some(Duration::from_secs(3)),
            ..Default::default()
        },
    );
    c.open();
    c.take_output(now).unwrap();
    assert_eq!(c.poll_timeout(), Some(now + Duration::from_secs(3)));
    c.handle_timeout(now + Duration::from_secs(2));
    assert!(c.poll_event().is_none());
    c.handle_timeout(now + Duration::from_secs(3));
    assert!(matches!(
        c.poll_event(),
        Some(Event::Closed { timeout: true, remote: false, error: Some(e) })
            if e.condition == condition::RESOURCE_LIMIT_EXCEEDED
    ));
    assert!(c.is_closed());
}

#[test]
fn close_timeout_gives_up_on_a_peer_that_does_not_answer() {
    let mut p = Pair::plain();
    p.client.close(None);
    let out = p.client.take_output(p.now).unwrap();
    assert!(matches!(frames(&out)[..], [Performative::Close(_)]));
    // The server never sees it: after the close timeout (5 s) we give up.
    p.now += Duration::from_secs(5);
    p.client.handle_timeout(p.now);
    assert!(matches!(
        p.client.poll_event(),
        Some(Event::Closed { timeout: true, .. })
    ));
    assert!(p.client.is_closed());
    assert_eq!(p.client.poll_timeout(), None);
}

#[test]
fn attach_timeout_detaches_and_absorbs_the_late_answer() {
    let mut p = Pair::plain();
    let link = p.client_link("late");
    let incoming = p
        .server_events
        .iter()
        .find_map(|e| match e {
            Event::IncomingLink { link, .. } => Some(*link),
            _ => None,
        })
        .unwrap();
    // The server application sits on it past the attach timeout (15 s).
    p.advance(Duration::from_secs(15));
    let detached: Vec<_> = p
        .client_events
        .iter()
        .filter(|e| matches!(e, Event::LinkDetached { link: l, timeout: true, .. } if *l == link))
        .collect();
    assert_eq!(detached.len(), 1, "{:?}", p.client_events);
    // Our detach reached the server, whose link was never answered: it
    // answers attach + detach (never a bare detach), and the late accept fails.
    assert!(p
        .server_events
        .iter()
        .any(|e| matches!(e, Event::LinkDetached { link: l, remote: true, .. } if *l == incoming)));
    assert!(p.server.accept_link(incoming, Attach::default()).is_err());
    p.run();
    assert!(!p
        .client_events
        .iter()
        .any(|e| matches!(e, Event::LinkAttached { .. })));
    assert!(
        p.client.store.links.is_empty(),
        "the late answer is absorbed"
    );
    assert!(p.server.store.links.is_empty());
    assert!(!p
        .client_events
        .iter()
        .any(|e| matches!(e, Event::SessionEnded { .. } | Event::Closed { .. })));
}

#[test]
fn heartbeat_deadline_moves_on_while_a_write_is_blocked() {
    let mut p = Pair::new(
        Config::default(),
        Config {
            idle_timeout: Some(Duration::from_secs(2)),
            ..Default::default()
        },
    );
    let t0 = p.client.poll_timeout().unwrap();
    // Output is produced but never taken (the socket does not drain).
    p.client.begin().unwrap();
    p.client.handle_timeout(t0);
    let next = p.client.poll_timeout().unwrap();
    assert!(next > t0, "deadline {next:?} still in the past at {t0:?}");
    p.client.handle_timeout(next);
    assert!(p.client.poll_timeout().unwrap() > next);
}

#[test]
fn idle_timeout_counts_whole_frames_not_trickled_bytes() {
    let mut p = Pair::new(
        Config {
            idle_timeout: Some(Duration::from_secs(1)),
            ..Default::default()
        },
        Config::default(),
    );
    // A peer sends one frame a byte every 200 ms: bytes, but no frame,
    // arrive for more than the idle timeout.
    let mut frame = bytes::BytesMut::new();
    crate::frame::codec::encode_frame(
        &mut frame,
        0,
        &Begin {
            next_outgoing_id: 0,
            incoming_window: 10,
            outgoing_window: 10,
            ..Default::default()
        },
        &[0u8; 64],
    );
    for b in frame.iter().take(10) {
        p.now += Duration::from_millis(200);
        p.client.handle_bytes(&[*b], p.now);
        p.client.handle_timeout(p.now);
    }
    let closed = std::iter::from_fn(|| p.client.poll_event()).find_map(|e| match e {
        Event::Closed { error, .. } => error,
        _ => None,
    });
    assert_eq!(
        closed.unwrap().condition,
        condition::RESOURCE_LIMIT_EXCEEDED
    );
}

#[test]
fn open_is_the_first_frame_even_when_the_peer_pipelines_begin() {
    let mut client = Connection::new(Side::Client, Config::default());
    let mut server = Connection::new(Side::Server, Config::default());
    let now = Instant::now();
    client.open();
    client.begin().unwrap();
    // Header, open and begin arrive together; the server application has
    // not accepted the connection yet.
    let out = client.take_output(now).unwrap();
    server.handle_bytes(&out, now);
    let before = server.take_output(now).unwrap_or_default();
    assert!(frames(&before).is_empty(), "{:?}", frames(&before));
    server.open();
    let after = server.take_output(now).unwrap();
    let got = frames(&[&before[..], &after[..]].concat());
    assert!(
        matches!(got[..], [Performative::Open(_), Performative::Begin(_)]),
        "{got:?}"
    );
}

#[test]
fn a_grant_of_0xffffffff_is_large_credit() {
    let mut p = Pair::plain();
    let (sender, _receiver) = p.link(0);
    let mut flow = bytes::BytesMut::new();
    crate::frame::codec::encode_frame(
        &mut flow,
        0,
        &Flow {
            next_incoming_id: Some(0),
            incoming_window: 1000,
            next_outgoing_id: 1,
            outgoing_window: 1000,
            handle: Some(0),
            delivery_count: Some(0),
            link_credit: Some(u32::MAX),
            ..Default::default()
        },
        &[],
    );
    p.client.handle_bytes(&flow, p.now);
    assert_eq!(p.client.credit(sender), u32::MAX);
    p.client.send(sender, Message::from("x"), false).unwrap();
    p.run();
    assert_eq!(p.deliveries().len(), 1);
}

#[test]
fn dispositions_may_wrap_past_u32_max() {
    let mut p = Pair::plain();
    let (sender, receiver) = p.link(10);
    for s in p.client.store.sessions.values_mut() {
        s.next_delivery_id = u32::MAX - 1;
    }
    for i in 0..3 {
        p.client
            .send(sender, Message::from(format!("{i}")), false)
            .unwrap();
    }
    p.run();
    let got = p.deliveries();
    let ids: Vec<u32> = got.iter().map(|(d, _, _)| d.id).collect();
    assert_eq!(ids, vec![u32::MAX - 1, u32::MAX, 0]);
    for (d, _, _) in &got {
        p.server
            .settle(*d, Some(DeliveryState::Accepted), true)
            .unwrap();
    }
    // One range, MAX-1..=0, wrapping.
    let out = p.server.take_output(p.now).unwrap();
    match &frames(&out)[..] {
        [Performative::Disposition(d)] => {
            assert_eq!((d.first, d.last), (u32::MAX - 1, Some(0)))
        }
        f => panic!("{f:?}"),
    }
    p.client.handle_bytes(&out, p.now);
    p.run();
    assert_eq!(p.outcomes().len(), 3);
    let _ = receiver;
}

#[test]
fn an_unsettled_terminal_outcome_is_settled_by_the_sender() {
    let mut p = Pair::plain();
    let (sender, receiver) = p.link(10);
    p.client.send(sender, Message::from("x"), false).unwrap();
    p.run();
    let (d, _, _) = p.deliveries()[0];
    // rcv-settle-mode second: the receiver states the outcome unsettled.
    p.server
        .settle(d, Some(DeliveryState::Accepted), false)
        .unwrap();
    p.run();
    assert!(p.client_events.iter().any(|e| matches!(
        e,
        Event::Outcome {
            state: Some(DeliveryState::Accepted),
            settled: true,
            ..
        }
    )));
    assert!(p.server_events.iter().any(|e| matches!(
        e,
        Event::RemoteSettled { delivery, settled: true, .. } if *delivery == d
    )));
    assert!(p
        .client
        .store
        .sessions
        .values()
        .all(|s| s.outgoing_unsettled.is_empty()));
    let _ = receiver;
}

#[test]
fn a_duplicate_delivery_id_in_flight_ends_the_session() {
    let mut p = Pair::plain();
    let (_sender, _receiver) = p.link(10);
    let mut forged = bytes::BytesMut::new();
    for tag in [1u8, 2] {
        crate::frame::codec::encode_frame(
            &mut forged,
            0,
            &Transfer {
                handle: 0,
                delivery_id: Some(7),
                delivery_tag: Some(Bytes::copy_from_slice(&[tag])),
                message_format: Some(0),
                ..Default::default()
            },
            &[0x00, 0x53, 0x77, 0x40],
        );
    }
    p.server.handle_bytes(&forged, p.now);
    p.run();
    assert_eq!(p.deliveries().len(), 1);
    assert!(p.server_events.iter().any(|e| matches!(
        e,
        Event::SessionEnded { error: Some(err), .. } if err.condition == condition::ILLEGAL_STATE
    )));
}

#[test]
fn partial_deliveries_share_a_connection_budget() {
    let mut p = Pair::new(
        Config {
            max_frame_size: 512,
            ..Default::default()
        },
        Config {
            max_frame_size: 512,
            max_partial_bytes: 4096,
            ..Default::default()
        },
    );
    let (sender, _receiver) = p.link(10);
    p.client
        .send(sender, Message::from(vec![7u8; 8192]), false)
        .unwrap();
    p.run();
    assert!(p.deliveries().is_empty());
    assert!(p.server_events.iter().any(|e| matches!(
        e,
        Event::Closed { error: Some(err), remote: false, .. }
            if err.condition == condition::RESOURCE_LIMIT_EXCEEDED
    )));
}

#[test]
fn frames_after_our_close_are_ignored() {
    let mut p = Pair::plain();
    p.client.close(None);
    let _ = p.client.take_output(p.now);
    // The peer had sent a begin before it saw our close.
    let mut f = bytes::BytesMut::new();
    crate::frame::codec::encode_frame(
        &mut f,
        3,
        &Begin {
            remote_channel: Some(40),
            next_outgoing_id: 0,
            incoming_window: 1,
            outgoing_window: 1,
            ..Default::default()
        },
        &[],
    );
    crate::frame::codec::encode_frame(&mut f, 0, &Close { error: None }, &[]);
    p.client.handle_bytes(&f, p.now);
    let events: Vec<Event> = std::iter::from_fn(|| p.client.poll_event()).collect();
    assert!(
        matches!(
            &events[..],
            [Event::Closed {
                error: None,
                remote: true,
                ..
            }]
        ),
        "{events:?}"
    );
}

#[test]
fn unsettled_messages_come_back_when_the_session_ends() {
    let mut p = Pair::plain();
    let (sender, receiver) = p.link(10);
    p.client.send(sender, Message::from("kept"), false).unwrap();
    p.run();
    assert_eq!(p.deliveries().len(), 1);
    let session = p.server.link_session(receiver).unwrap();
    // Ended without an error: the links go with the session.
    p.server.end(session, None).unwrap();
    p.run();
    let unsent = p
        .client_events
        .iter()
        .find_map(|e| match e {
            Event::LinkDetached { link, unsent, .. } if *link == sender => Some(unsent),
            _ => None,
        })
        .expect("the sender's link ends with the session");
    assert_eq!(unsent.len(), 1, "the unsettled message comes back");
    assert_eq!(p.client.store.links.len(), 0);
    assert_eq!(p.client.store.sessions.len(), 0);
}

/// The session window reopens only past what the application consumed, so
/// a peer can never put more than the window in our hands, whatever it does
/// with link credit.
#[test]
fn the_incoming_window_reopens_only_as_the_application_consumes() {
    let mut p = Pair::new(
        Config::default(),
        Config {
            incoming_window: 8,
            ..Default::default()
        },
    );
    let (sender, receiver) = p.link(100);
    for i in 0..20 {
        p.client
            .send(sender, Message::from(format!("{i}")), true)
            .unwrap();
    }
    p.run();
    assert_eq!(p.deliveries().len(), 8, "the window holds the rest back");
    p.server.consumed(receiver, 8).unwrap();
    p.run();
    assert_eq!(p.deliveries().len(), 8);
    p.server.consumed(receiver, 8).unwrap();
    p.run();
    assert_eq!(p.deliveries().len(), 4);
}

#[test]
fn detach_timeout_forgets_a_link_the_peer_never_answers() {
    let mut p = Pair::plain();
    let (sender, _receiver) = p.link(10);
    p.client.send(sender, Message::from("x"), false).unwrap();
    p.run();
    p.client.detach(sender, true, None).unwrap();
    // The server never sees our detach (its answer would never come).
    let _ = p.client.take_output(p.now).unwrap();
    p.now += Duration::from_secs(15);
    p.client.handle_timeout(p.now);
    let events: Vec<Event> = std::iter::from_fn(|| p.client.poll_event()).collect();
    match &events[..] {
        [Event::LinkDetached {
            link,
            timeout: true,
            unsent,
            ..
        }] => {
            assert_eq!(*link, sender);
            assert_eq!(unsent.len(), 1, "the unsettled message comes back");
        }
        e => panic!("{e:?}"),
    }
    assert!(p.client.store.links.is_empty(), "the link is forgotten");
}

#[test]
fn an_idle_engine_holds_no_buffers_and_works_after_releasing_them() {
    use std::sync::Arc;
    let mut p = Pair::new(
        Config {
            container_id: "c".into(),
            sasl: Sasl::Client(Arc::new(TestPlain("alice", "secret".into()))),
            ..Default::default()
        },
        Config {
            container_id: "s".into(),
            sasl: Sasl::Server(Arc::new(TestPlainServer)),
            ..Default::default()
        },
    );
    // The SASL exchange is over: the server let go of it.
    assert!(p.server.sasl_server.is_none());
    // The open timeout went with the peer's open: no timer runs.
    assert_eq!(p.client.poll_timeout(), None);
    assert_eq!(p.server.poll_timeout(), None);
    let (sender, receiver) = p.link(10);
    for e in [&mut p.client, &mut p.server] {
        e.release_buffers();
        assert_eq!(e.input.capacity(), 0);
        assert_eq!(e.output.capacity(), 0);
        assert_eq!(e.events.capacity(), 0);
    }
    let id = p.client.send(sender, Message::from("hi"), false).unwrap();
    p.run();
    let got = p.deliveries();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0.link, receiver);
    p.server
        .settle(got[0].0, Some(DeliveryState::Accepted), true)
        .unwrap();
    p.run();
    assert_eq!(p.outcomes(), [(id, Some(DeliveryState::Accepted))]);
}

#[test]
fn a_big_output_buffer_is_kept_over_idle_time() {
    let mut p = Pair::plain();
    let (sender, _receiver) = p.link(100);
    for _ in 0..100 {
        p.client
            .send(sender, Message::from("x".repeat(200)), true)
            .unwrap();
    }
    let out = p.client.take_output(p.now).unwrap();
    assert!(out.len() >= 8 * 1024);
    drop(out);
    p.client.release_buffers();
    assert!(
        p.client.output.capacity() > 0,
        "a busy sender keeps its buffer"
    );
}
