//! Fuzzes the sans-IO engine itself (`aqueduct::proto::Connection`), as
//! h2's `fuzz_client` and quinn's `streams` targets do: one engine, client
//! or server, fed an arbitrary sequence of operations decoded from the
//! input: mostly WELL-FORMED peer frames built with the frame types (open,
//! begin, attach, flow, transfer, disposition, detach, end, close, empty,
//! SASL init) with fuzzed fields, sometimes raw bytes, interleaved with API
//! commands on ids the engine handed out (or stale ones), timeouts at a
//! fuzzed virtual time, `take_output` and `poll_event`.
//!
//! Asserts: no panic; every `take_output` and the output pending after
//! every step are under 4 MiB, and every step raises fewer than 100,000
//! events (bounded output and event queues for an input of a few KiB).
//!
//! Run (from the repository root):
//!     RUSTC_BOOTSTRAP=1 cargo fuzz run engine -- -max_total_time=600
//! Crashing inputs are kept under fuzz/regressions/engine/ and replayed with
//!     RUSTC_BOOTSTRAP=1 cargo fuzz run engine fuzz/regressions/engine/FILE
#![no_main]

use aqueduct::frame::codec::{encode_empty_frame, encode_frame, encode_sasl_frame};
use aqueduct::frame::{
    AmqpError, Attach, Begin, Close, DeliveryState, Detach, Disposition, End, Flow, Modified, Open,
    ProtocolId, RcvSettleMode, Received, Rejected, Role, SaslFrame, SaslInit, SndSettleMode,
    Source, Target, Transfer,
};
use aqueduct::message::Message;
use aqueduct::proto::{
    Config, Connection, DeliveryId, Event, LinkId, Sasl, SaslClientMechanism, SaslClientProvider,
    SaslServerMechanism, SaslServerProvider, SaslServerStep, SessionId, Side,
};
use aqueduct::types::Symbol;
use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The largest output one `take_output` may return.
const MAX_OUTPUT: usize = 4 << 20;
/// The most events one step may raise.
const MAX_EVENTS: usize = 100_000;

/// Reads fuzzed values off the input; zeros once it is used up.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }
    fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
    /// A u32 that is mostly a small or boundary value.
    fn u32(&mut self) -> u32 {
        match self.u8() {
            0..=127 => u32::from(self.u8() & 7),
            128..=159 => u32::from(self.u8()),
            160..=175 => u32::MAX,
            176..=183 => u32::MAX - u32::from(self.u8() & 7),
            184..=191 => 0x8000_0000 - 1 + u32::from(self.u8() & 3),
            _ => u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()]),
        }
    }
    fn opt_u32(&mut self) -> Option<u32> {
        if self.bool() {
            Some(self.u32())
        } else {
            None
        }
    }
    fn channel(&mut self) -> u16 {
        match self.u8() {
            0..=239 => u16::from(self.u8() & 3),
            _ => u16::from_be_bytes([self.u8(), self.u8()]),
        }
    }
    fn error(&mut self) -> Option<AmqpError> {
        const CONDS: [&str; 6] = [
            "amqp:internal-error",
            "amqp:not-found",
            "amqp:resource-limit-exceeded",
            "amqp:link:detach-forced",
            "amqp:connection:forced",
            "x:custom",
        ];
        if self.bool() {
            let c = CONDS[self.u8() as usize % CONDS.len()];
            Some(AmqpError::new(Symbol::from(c), "fuzz"))
        } else {
            None
        }
    }
    fn state(&mut self) -> Option<DeliveryState> {
        Some(match self.u8() % 8 {
            0 => return None,
            1 | 2 => DeliveryState::Accepted,
            3 => DeliveryState::Released,
            4 => DeliveryState::Rejected(Rejected {
                error: self.error(),
            }),
            5 => DeliveryState::Modified(Modified {
                delivery_failed: Some(self.bool()),
                undeliverable_here: Some(self.bool()),
                message_annotations: None,
            }),
            6 => DeliveryState::Received(Received {
                section_number: self.u32(),
                section_offset: u64::from(self.u32()),
            }),
            _ => DeliveryState::Accepted,
        })
    }
    fn role(&mut self) -> Role {
        if self.bool() {
            Role::Receiver
        } else {
            Role::Sender
        }
    }
    fn attach(&mut self) -> Attach {
        let role = self.role();
        Attach {
            name: format!("l{}", self.u8() & 7),
            handle: self.u32(),
            role,
            snd_settle_mode: match self.u8() % 3 {
                0 => SndSettleMode::Unsettled,
                1 => SndSettleMode::Settled,
                _ => SndSettleMode::Mixed,
            },
            rcv_settle_mode: if self.u8().is_multiple_of(4) {
                RcvSettleMode::Second
            } else {
                RcvSettleMode::First
            },
            source: self.bool().then(|| Source::new("q")),
            target: self.bool().then(|| Target::new("q").into()),
            initial_delivery_count: if role == Role::Sender || self.bool() {
                self.opt_u32().or(Some(0))
            } else {
                None
            },
            max_message_size: if self.bool() {
                Some(u64::from(self.u32()))
            } else {
                None
            },
            ..Default::default()
        }
    }
    fn message(&mut self) -> Message {
        let n = self.u8() as usize % 64;
        let mut body = self.bytes(n).to_vec();
        if self.u8().is_multiple_of(16) {
            // Now and then a message larger than a small frame.
            body.resize(2000, 7);
        }
        Message::from(body)
    }
}

/// A peer frame built from the input: mostly a well-formed performative.
fn peer_frame(inp: &mut Input, out: &mut BytesMut) {
    let channel = inp.channel();
    match inp.u8() % 12 {
        0 => {
            let open = Open {
                container_id: "fuzz-peer".into(),
                max_frame_size: if inp.bool() { 512 } else { inp.u32() },
                channel_max: if inp.bool() { 3 } else { u16::MAX },
                idle_time_out: inp.opt_u32(),
                ..Default::default()
            };
            encode_frame(out, channel, &open, &[]);
        }
        1 => {
            let begin = Begin {
                remote_channel: if inp.bool() {
                    Some(inp.channel())
                } else {
                    None
                },
                next_outgoing_id: inp.u32(),
                incoming_window: inp.u32(),
                outgoing_window: inp.u32(),
                handle_max: if inp.bool() { inp.u32() } else { u32::MAX },
                ..Default::default()
            };
            encode_frame(out, channel, &begin, &[]);
        }
        2 => encode_frame(out, channel, &inp.attach(), &[]),
        3 | 4 => {
            let flow = Flow {
                next_incoming_id: inp.opt_u32(),
                incoming_window: inp.u32(),
                next_outgoing_id: inp.u32(),
                outgoing_window: inp.u32(),
                handle: inp.opt_u32(),
                delivery_count: inp.opt_u32(),
                link_credit: inp.opt_u32(),
                available: inp.opt_u32(),
                drain: inp.bool(),
                echo: inp.bool(),
                properties: None,
            };
            encode_frame(out, channel, &flow, &[]);
        }
        5..=7 => {
            let first = inp.bool();
            let t = Transfer {
                handle: inp.u32(),
                delivery_id: if first || inp.bool() {
                    Some(inp.u32())
                } else {
                    None
                },
                delivery_tag: if first || inp.bool() {
                    Some(Bytes::copy_from_slice(inp.bytes(4)))
                } else {
                    None
                },
                message_format: first.then_some(0),
                settled: if inp.bool() { Some(inp.bool()) } else { None },
                more: inp.bool(),
                rcv_settle_mode: None,
                state: if inp.u8().is_multiple_of(8) {
                    inp.state()
                } else {
                    None
                },
                resume: false,
                aborted: inp.u8().is_multiple_of(8),
                batchable: inp.bool(),
            };
            let mut payload = BytesMut::new();
            if inp.bool() {
                inp.message().encode(&mut payload);
            } else {
                let n = inp.u8() as usize;
                payload.extend_from_slice(inp.bytes(n));
            }
            encode_frame(out, channel, &t, &payload);
        }
        8 => {
            let d = Disposition {
                role: inp.role(),
                first: inp.u32(),
                last: inp.opt_u32(),
                settled: inp.bool(),
                state: inp.state(),
                batchable: inp.bool(),
            };
            encode_frame(out, channel, &d, &[]);
        }
        9 => {
            let d = Detach {
                handle: inp.u32(),
                closed: inp.bool(),
                error: inp.error(),
            };
            encode_frame(out, channel, &d, &[]);
        }
        10 => {
            if inp.bool() {
                encode_frame(out, channel, &End { error: inp.error() }, &[]);
            } else {
                encode_frame(out, channel, &Close { error: inp.error() }, &[]);
            }
        }
        _ => match inp.u8() % 4 {
            0 => {
                let init = SaslFrame::Init(SaslInit {
                    mechanism: Symbol::from(if inp.bool() { "ANONYMOUS" } else { "PLAIN" }),
                    initial_response: Some(Bytes::from_static(b"\0guest\0guest")),
                    hostname: None,
                });
                encode_sasl_frame(out, &init);
            }
            1 => out.extend_from_slice(&ProtocolId::Amqp.header()),
            _ => encode_empty_frame(out),
        },
    }
}

/// Ids the engine handed out (via commands and events), picked by index.
#[derive(Default)]
struct Ids {
    sessions: Vec<SessionId>,
    links: Vec<LinkId>,
    deliveries: Vec<DeliveryId>,
}

fn pick<T: Copy>(v: &[T], i: u8) -> Option<T> {
    if v.is_empty() {
        None
    } else {
        Some(v[i as usize % v.len()])
    }
}

/// One API command. Every engine command call is in this function, so that
/// adapting to a changed command API is local.
fn command(conn: &mut Connection, ids: &mut Ids, inp: &mut Input) {
    let which = inp.u8() % 13;
    let i = inp.u8();
    match which {
        0 => conn.open(),
        1 => {
            if let Ok(s) = conn.begin() {
                ids.sessions.push(s);
            }
        }
        2 => {
            if let Some(s) = pick(&ids.sessions, i) {
                let a = inp.attach();
                if let Ok(l) = conn.attach(s, a) {
                    ids.links.push(l);
                }
            }
        }
        3 => {
            if let Some(l) = pick(&ids.links, i) {
                let a = inp.attach();
                let _ = conn.accept_link(l, a);
            }
        }
        4 => {
            if let Some(l) = pick(&ids.links, i) {
                let e = inp.error().unwrap_or_else(|| AmqpError::new("x:no", "no"));
                let _ = conn.refuse_link(l, e);
            }
        }
        5 | 6 => {
            if let Some(l) = pick(&ids.links, i) {
                let m = inp.message();
                let settled = inp.bool();
                let _ = conn.send(l, m, settled);
            }
        }
        7 => {
            if let Some(l) = pick(&ids.links, i) {
                let credit = inp.u32();
                let drain = inp.bool();
                let _ = conn.add_credit(l, credit, drain);
            }
        }
        8 => {
            let d = match pick(&ids.deliveries, i) {
                Some(d) if !inp.bool() => d,
                _ => match pick(&ids.links, i) {
                    Some(link) => DeliveryId {
                        link,
                        id: inp.u32(),
                    },
                    None => return,
                },
            };
            let state = inp.state();
            let settled = inp.bool();
            let _ = conn.settle(d, state, settled);
        }
        9 => {
            if let Some(l) = pick(&ids.links, i) {
                let closed = inp.bool();
                let e = inp.error();
                let _ = conn.detach(l, closed, e);
            }
        }
        10 => {
            if let Some(s) = pick(&ids.sessions, i) {
                let e = inp.error();
                let _ = conn.end(s, e);
            }
        }
        11 => {
            let e = inp.error();
            conn.close(e);
        }
        _ => {
            let e = inp.error().unwrap_or_else(|| AmqpError::new("x:no", "no"));
            conn.refuse(e);
        }
    }
}

/// Takes the engine's output, checking its size.
fn drain_output(conn: &mut Connection, now: Instant) {
    if let Some(out) = conn.take_output(now) {
        assert!(
            out.len() < MAX_OUTPUT,
            "{} bytes of output in one step",
            out.len()
        );
    }
}

/// Takes every event, remembering the ids they name.
fn drain_events(conn: &mut Connection, ids: &mut Ids) {
    let mut n = 0;
    while let Some(e) = conn.poll_event() {
        n += 1;
        assert!(n < MAX_EVENTS, "more than {MAX_EVENTS} events in one step");
        match e {
            Event::SessionBegun { session, .. } => ids.sessions.push(session),
            Event::IncomingLink { link, .. } | Event::LinkAttached { link, .. } => {
                ids.links.push(link)
            }
            Event::Delivery { delivery, .. } if ids.deliveries.len() < 1024 => {
                ids.deliveries.push(delivery)
            }
            _ => {}
        }
    }
}

/// SASL ANONYMOUS for the engine alone (the library's mechanisms come from
/// rsasl, outside the engine).
#[derive(Debug)]
struct Anonymous;

#[derive(Debug)]
struct AnonymousMech;

impl SaslClientMechanism for AnonymousMech {
    fn name(&self) -> &str {
        "ANONYMOUS"
    }
    fn initial_response(&mut self) -> Result<Option<Vec<u8>>, String> {
        Ok(Some(b"anonymous".to_vec()))
    }
    fn step(&mut self, _challenge: &[u8]) -> Result<Vec<u8>, String> {
        Ok(Vec::new())
    }
    fn finish(&mut self, _data: Option<&[u8]>) -> Result<(), String> {
        Ok(())
    }
}

impl SaslClientProvider for Anonymous {
    fn start(
        &self,
        offered: &[&str],
        _hostname: Option<&str>,
    ) -> Result<Box<dyn SaslClientMechanism>, String> {
        if offered.contains(&"ANONYMOUS") {
            Ok(Box::new(AnonymousMech))
        } else {
            Err(format!("no ANONYMOUS in {offered:?}"))
        }
    }
}

/// Offers ANONYMOUS; the flag: whether SASL is optional.
#[derive(Debug)]
struct AnonymousServer(bool);

impl SaslServerMechanism for AnonymousMech {
    fn step(&mut self, _response: &[u8]) -> SaslServerStep {
        SaslServerStep::Success(None)
    }
}

impl SaslServerProvider for AnonymousServer {
    fn mechanisms(&self) -> Vec<String> {
        vec!["ANONYMOUS".into()]
    }
    fn start(
        &self,
        mechanism: &str,
        _hostname: Option<&str>,
    ) -> Option<Box<dyn SaslServerMechanism>> {
        (mechanism == "ANONYMOUS").then(|| Box::new(AnonymousMech) as Box<dyn SaslServerMechanism>)
    }
    fn optional(&self) -> bool {
        self.0
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    let flags = inp.u8();
    let side = if flags & 1 == 0 {
        Side::Client
    } else {
        Side::Server
    };
    let small = flags & 0x20 != 0;
    let sasl = flags & 0x40 != 0;
    let config = Config {
        container_id: "fuzz".into(),
        idle_timeout: (flags & 0x10 != 0).then(|| Duration::from_millis(1000)),
        max_frame_size: if small { 512 } else { 65536 },
        max_message_size: if small { 1000 } else { 1 << 20 },
        max_sessions: if small { 2 } else { 64 },
        max_links_per_session: if small { 4 } else { 1024 },
        incoming_window: if small { 2 } else { 2048 },
        open_timeout: Some(Duration::from_secs(if flags & 0x10 != 0 { 2 } else { 15 })),
        attach_timeout: Some(Duration::from_secs(if small { 1 } else { 15 })),
        max_partial_bytes: if small { 4096 } else { 1 << 24 },
        sasl: match (sasl, side) {
            (false, _) => Sasl::Disabled,
            (true, Side::Client) => Sasl::Client(Arc::new(Anonymous)),
            (true, Side::Server) => Sasl::Server(Arc::new(AnonymousServer(flags & 0x80 != 0))),
        },
        ..Default::default()
    };
    let mut conn = Connection::new(side, config);
    let mut ids = Ids::default();
    let mut now = Instant::now();
    if flags & 2 != 0 {
        conn.open();
    }
    // Usually start with the peer's protocol header and open, so that the
    // fuzzer spends its time past the handshake.
    let mut start = BytesMut::new();
    if flags & 4 == 0 {
        start.extend_from_slice(&ProtocolId::Amqp.header());
        if flags & 8 == 0 {
            let open = Open {
                container_id: "peer".into(),
                max_frame_size: 65536,
                ..Default::default()
            };
            encode_frame(&mut start, 0, &open, &[]);
        }
    }
    conn.handle_bytes(&start, now);
    let mut steps = 0;
    while !inp.is_empty() && steps < 4096 {
        steps += 1;
        match inp.u8() % 16 {
            // Well-formed peer frames, possibly several in one read.
            0..=5 => {
                let mut buf = BytesMut::new();
                for _ in 0..=(inp.u8() % 3) {
                    peer_frame(&mut inp, &mut buf);
                }
                if inp.u8() % 8 == 0 && buf.len() > 1 {
                    // Split in two reads.
                    let at = buf.len() / 2;
                    conn.handle_bytes(&buf[..at], now);
                    conn.handle_bytes(&buf[at..], now);
                } else {
                    conn.handle_bytes(&buf, now);
                }
            }
            // Raw bytes.
            6 => {
                let n = inp.u8() as usize;
                let raw = inp.bytes(n).to_vec();
                conn.handle_bytes(&raw, now);
            }
            7..=11 => command(&mut conn, &mut ids, &mut inp),
            12 => {
                now += Duration::from_millis(u64::from(inp.u8()) * 20);
                let _ = conn.poll_timeout();
                conn.handle_timeout(now);
            }
            13 => {
                if let Some(t) = conn.poll_timeout() {
                    now = now.max(t);
                    conn.handle_timeout(now);
                }
            }
            14 => drain_output(&mut conn, now),
            _ => drain_events(&mut conn, &mut ids),
        }
        // Output waiting to be taken stays bounded too.
        assert!(
            conn.pending_output() < MAX_OUTPUT,
            "{} bytes of output pending",
            conn.pending_output()
        );
        // The driver takes output and events every turn; so do we, mostly.
        if inp.u8() % 4 != 0 {
            drain_output(&mut conn, now);
            drain_events(&mut conn, &mut ids);
        }
    }
    drain_output(&mut conn, now);
    drain_events(&mut conn, &mut ids);
    let _ = conn.is_closed();
});
