//! Reconnect against our own listener, through the fault-injection proxy
//! (`tests/common/proxy.rs`): what a user sees when the connection is cut
//! under a sender and a receiver, with reconnect on (the default) and off.
//! The real-peer reconnect tests are in `reconnect_peers.rs` and
//! `reconnect_rabbitmq.rs`.

mod common;

use aqueduct::frame::Performative;
use aqueduct::{
    ConnectOptions, Connection, ConnectionEvent, ErrorKind, IncomingEndpoint, Message, Outcome,
    ReceiverOptions, Reconnect,
};
use common::proxy::{Dir, Proxy};
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Generous: the machine running the tests may be loaded.
const T: Duration = Duration::from_secs(30);

async fn within<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(T, fut).await {
        Ok(r) => r,
        Err(_) => panic!("{what}: did not finish within {T:?}"),
    }
}

/// Message numbers our server received (number -> times).
type Received = Arc<Mutex<BTreeMap<u64, u32>>>;

/// Our listener as a small broker stand-in: it accepts every connection;
/// links the peer sends on are accepted as receivers that record each
/// message's number and accept it; links the peer receives on get the
/// numbers `0..n_out` (one sender per link, from the start).
async fn server(n_out: u64) -> (std::net::SocketAddr, Received) {
    let mut listener = aqueduct::listen("amqp://127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr();
    let received: Received = Arc::default();
    let seen = received.clone();
    tokio::spawn(async move {
        while let Some(incoming) = listener.next().await {
            let Ok(conn) = incoming.accept() else {
                continue;
            };
            tokio::spawn(serve(conn, seen.clone(), n_out));
        }
    });
    (addr, received)
}

async fn serve(conn: Connection, seen: Received, n_out: u64) {
    while let Some(endpoint) = conn.next_incoming().await {
        let IncomingEndpoint::Link(link) = endpoint else {
            continue;
        };
        if link.is_sender() {
            let Ok(mut rx) = link.accept_receiver(None, ReceiverOptions::default()) else {
                continue;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                while let Some(Ok(d)) = rx.next().await {
                    if let Some(n) = number(&d.message().unwrap().clone()) {
                        *seen.lock().unwrap().entry(n).or_default() += 1;
                    }
                    let _ = d.accept().await;
                }
            });
        } else {
            let addr = link.address().map(str::to_string);
            let Ok(tx) = link.accept_sender(addr) else {
                continue;
            };
            tokio::spawn(async move {
                for n in 0..n_out {
                    if tx.send(numbered(n)).await.is_err() {
                        return;
                    }
                }
            });
        }
    }
}

fn numbered(n: u64) -> Message {
    Message::builder().id(n).body(n.to_string()).build()
}

fn number(m: &Message) -> Option<u64> {
    m.body().as_str()?.parse().ok()
}

/// Reconnect with short delays, so the tests do not wait on the schedule.
fn fast(url: &str) -> ConnectOptions {
    ConnectOptions::new().url(url).reconnect(
        Reconnect::exponential()
            .initial_delay(Duration::from_millis(10))
            .max_delay(Duration::from_millis(200)),
    )
}

/// Collects the connection's events in the background.
fn record_events(conn: &Connection) -> Arc<Mutex<Vec<ConnectionEvent>>> {
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut events = conn.events();
    let l = log.clone();
    tokio::spawn(async move {
        while let Some(e) = events.next().await {
            l.lock().unwrap().push(e);
        }
    });
    log
}

fn kinds(log: &Mutex<Vec<ConnectionEvent>>) -> Vec<&'static str> {
    log.lock()
        .unwrap()
        .iter()
        .map(|e| match e {
            ConnectionEvent::ConnectFailed { .. } => "failed",
            ConnectionEvent::Disconnected { .. } => "disconnected",
            ConnectionEvent::Reconnecting { .. } => "reconnecting",
            ConnectionEvent::Reconnected { .. } => "reconnected",
            ConnectionEvent::GaveUp { .. } => "gave up",
            _ => "other",
        })
        .collect()
}

/// Sends pipelined while the proxy cuts the connection mid-frame and
/// between transfer and disposition: every send resolves Accepted, every
/// number reaches the server at least once, the connection counts its
/// reconnects and reports them.
#[tokio::test]
async fn sends_in_flight_survive_cuts() {
    const N: u64 = 3000;
    let (addr, received) = server(0).await;
    let proxy = Proxy::start(addr).await;
    let conn = within("connect", aqueduct::connect(fast(&proxy.url())))
        .await
        .unwrap();
    let log = record_events(&conn);
    let sender = within("attach", conn.open_sender("q")).await.unwrap();
    let mut pending = FuturesUnordered::new();
    for n in 0..N {
        pending.push(sender.send(numbered(n)));
        match n {
            500 => proxy.cut_on_frame(Dir::ToClient, |p| matches!(p, Performative::Disposition(_))),
            1200 => proxy.cut_after_bytes(Dir::ToServer, 1000 + 17),
            2000 => proxy.cut_all(),
            _ => {}
        }
        // Keep the window moving: at most 500 unresolved.
        while pending.len() >= 500 {
            let outcome = within("an outcome", pending.next()).await.unwrap();
            assert_eq!(outcome.unwrap(), Outcome::Accepted);
        }
    }
    while let Some(outcome) = within("the last outcomes", pending.next()).await {
        assert_eq!(outcome.unwrap(), Outcome::Accepted);
    }
    let got = received.lock().unwrap().clone();
    let missing: Vec<u64> = (0..N).filter(|n| !got.contains_key(n)).collect();
    let duplicates: u32 = got.values().map(|c| c - 1).sum();
    let stats = conn.statistics();
    println!(
        "{N} messages, {} cuts, {} reconnects, {duplicates} duplicates",
        proxy.stats().cuts,
        stats.reconnects
    );
    assert!(missing.is_empty(), "missing: {missing:?}");
    assert!(proxy.stats().cuts >= 3, "{:?}", proxy.stats());
    assert!(stats.reconnects >= 3, "{stats:?}");
    let k = kinds(&log);
    assert!(
        k.windows(3)
            .any(|w| w == ["disconnected", "reconnecting", "reconnected"]),
        "{k:?}"
    );
    assert!(sender.credit() > 0, "credit is back after the reconnects");
}

/// A receiver keeps streaming across a cut; a delivery taken before the
/// cut cannot be settled any more (the server redelivers it), which is a
/// distinct error.
#[tokio::test]
async fn receiver_resumes_and_old_deliveries_say_so() {
    const N: u64 = 200;
    let (addr, _) = server(N).await;
    let proxy = Proxy::start(addr).await;
    let conn = within("connect", aqueduct::connect(fast(&proxy.url())))
        .await
        .unwrap();
    let mut rx = within(
        "attach",
        conn.open_receiver_with(ReceiverOptions::new("q").auto_accept(false)),
    )
    .await
    .unwrap();
    let first = within("the first delivery", rx.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(number(first.message().unwrap()), Some(0));
    let mut events = conn.events();
    proxy.cut_all();
    within("the reconnect", async {
        while let Some(e) = events.next().await {
            if matches!(e, ConnectionEvent::Reconnected { .. }) {
                break;
            }
        }
    })
    .await;
    let err = within("accepting the old delivery", first.accept())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Disconnected, "{err}");
    // The new link starts from 0 again (our test server sends 0..N per
    // link): the stream goes on with it.
    let mut numbers = Vec::new();
    while numbers.len() < N as usize {
        let d = within("a delivery after the reconnect", rx.next())
            .await
            .unwrap()
            .unwrap();
        numbers.push(number(d.message().unwrap()).unwrap());
        d.accept().await.unwrap();
    }
    assert_eq!(numbers.last(), Some(&(N - 1)));
    assert!(numbers.contains(&0), "0 redelivered on the new link");
}

/// With reconnect off, the first cut is an error on every handle at once:
/// a pending send, the receiver's stream, `closed()`, and the events.
#[tokio::test]
async fn disabled_fails_every_handle_at_once() {
    let (addr, _) = server(u64::MAX).await;
    let proxy = Proxy::start(addr).await;
    let opts = ConnectOptions::new()
        .url(proxy.url())
        .reconnect(Reconnect::disabled());
    let conn = within("connect", aqueduct::connect(opts)).await.unwrap();
    let log = record_events(&conn);
    let sender = within("attach", conn.open_sender("q")).await.unwrap();
    let mut rx = within("attach", conn.open_receiver("q2")).await.unwrap();
    proxy.cut_on_frame(Dir::ToClient, |p| matches!(p, Performative::Disposition(_)));
    let err = within("the send", sender.send(numbered(1)))
        .await
        .unwrap_err();
    assert!(err.is_retriable(), "{err}");
    assert!(err.message().is_some(), "the message comes back: {err}");
    let stream_err = within("the stream", async {
        loop {
            match rx.next().await {
                Some(Ok(_)) => continue,
                Some(Err(e)) => return e,
                None => panic!("the stream ended without an error"),
            }
        }
    })
    .await;
    assert_eq!(stream_err.kind(), err.kind(), "{stream_err} vs {err}");
    let closed = within("closed()", conn.closed()).await.unwrap_err();
    assert_eq!(closed.kind(), err.kind());
    assert_eq!(conn.statistics().reconnects, 0);
    within("the events", async {
        while !kinds(&log).contains(&"disconnected") {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(kinds(&log), ["disconnected"]);
}

/// A policy that gives up ends the connection with the last attempt's
/// error: pending sends fail with it, the events say so, `closed()` too.
#[tokio::test]
async fn giving_up_fails_what_waits_with_the_last_error() {
    let (addr, _) = server(0).await;
    let proxy = Proxy::start(addr).await;
    let opts = ConnectOptions::new().url(proxy.url()).reconnect(
        Reconnect::exponential()
            .initial_delay(Duration::from_millis(10))
            .max_attempts(3),
    );
    let conn = within("connect", aqueduct::connect(opts)).await.unwrap();
    let log = record_events(&conn);
    let sender = within("attach", conn.open_sender("q")).await.unwrap();
    within("a send", sender.send(numbered(0))).await.unwrap();
    proxy.refuse(true);
    proxy.cut_all();
    let err = within("a send while the server is gone", sender.send(numbered(1)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Io, "{err}");
    assert!(err.message().is_some(), "the message comes back");
    let closed = within("closed()", conn.closed()).await.unwrap_err();
    assert_eq!(closed.kind(), &ErrorKind::Io);
    let k = kinds(&log);
    assert_eq!(
        k,
        [
            "disconnected",
            "reconnecting",
            "failed",
            "reconnecting",
            "failed",
            "reconnecting",
            "failed",
            "gave up"
        ]
    );
}

/// `connect` itself retries: a server that refuses for a while, then
/// accepts, is connected to once it accepts; the failed attempts are in
/// the events.
#[tokio::test]
async fn the_first_connect_is_retried() {
    let (addr, _) = server(0).await;
    let proxy = Proxy::start(addr).await;
    proxy.refuse_for(Duration::from_millis(300));
    let conn = within("connect", aqueduct::connect(fast(&proxy.url())))
        .await
        .unwrap();
    assert!(proxy.stats().refused >= 1, "{:?}", proxy.stats());
    let k = kinds(&Mutex::new(conn.events().take_while_ready().await));
    assert_eq!(k.first(), Some(&"failed"), "{k:?}");
    let sender = within("attach", conn.open_sender("q")).await.unwrap();
    assert_eq!(
        within("send", sender.send(numbered(0))).await.unwrap(),
        Outcome::Accepted
    );
}

/// A receiver with `dedupe` yields a message id once, however often the
/// peer sends it.
#[tokio::test]
async fn dedupe_drops_repeated_message_ids() {
    let mut listener = aqueduct::listen("amqp://127.0.0.1:0").await.unwrap();
    let url = format!("amqp://{}", listener.local_addr());
    tokio::spawn(async move {
        let conn = listener.next().await.unwrap().accept().unwrap();
        while let Some(e) = conn.next_incoming().await {
            if let IncomingEndpoint::Link(l) = e {
                let tx = l.accept_sender(Some("d".into())).unwrap();
                for n in [1u64, 2, 1, 3, 2, 4] {
                    tx.send(numbered(n)).await.unwrap();
                }
            }
        }
    });
    let conn = aqueduct::connect(url.as_str()).await.unwrap();
    let mut rx = conn
        .open_receiver_with(ReceiverOptions::new("d").dedupe(100))
        .await
        .unwrap();
    let mut got = Vec::new();
    while got.len() < 4 {
        let d = within("a delivery", rx.next()).await.unwrap().unwrap();
        got.push(number(d.message().unwrap()).unwrap());
    }
    assert_eq!(got, [1, 2, 3, 4]);
}

/// `sendable()` resolves once the peer grants credit, and `credit()`
/// shows it.
#[tokio::test]
async fn sendable_waits_for_credit() {
    let (addr, _) = server(0).await;
    let conn = aqueduct::connect(format!("amqp://{addr}").as_str())
        .await
        .unwrap();
    let sender = conn.open_sender("q").await.unwrap();
    within("sendable", sender.sendable()).await.unwrap();
    assert!(sender.credit() > 0);
}

/// Helper: the events a stream holds right now.
trait TakeReady {
    async fn take_while_ready(self) -> Vec<ConnectionEvent>;
}

impl TakeReady for aqueduct::ConnectionEvents {
    async fn take_while_ready(mut self) -> Vec<ConnectionEvent> {
        let mut out = Vec::new();
        while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(50), self.next()).await {
            out.push(e);
        }
        out
    }
}

/// The connector composes with tower layers: a timeout per attempt under
/// the reconnect layer moves a connect stuck on an unresponsive first URL
/// on to the second one (failover), and a `map_request` layer sees each
/// endpoint tried.
#[tokio::test]
async fn a_tower_stack_times_out_attempts_and_fails_over() {
    let (addr, _) = server(0).await;
    let stuck = Proxy::start(addr).await;
    stuck.stop_accepting(true); // the TCP connect succeeds, nothing answers
    let good = format!("amqp://{addr}");
    let options = ConnectOptions::new()
        .urls([stuck.url(), good.clone()])
        .reconnect(Reconnect::exponential().initial_delay(Duration::from_millis(10)));
    let tried = Arc::new(Mutex::new(Vec::new()));
    let t = tried.clone();
    let container = aqueduct::Container::new();
    let stack = tower::ServiceBuilder::new()
        .map_request(move |e: aqueduct::Endpoint| {
            t.lock().unwrap().push(e.url());
            e
        })
        .timeout(Duration::from_millis(300))
        .service(aqueduct::Connector::new(options.clone(), container.id()));
    let conn = within("connect", container.connect_with(stack, options))
        .await
        .unwrap();
    let tried = tried.lock().unwrap().clone();
    assert_eq!(tried, [stuck.url(), good], "one attempt each, in order");
    let k = kinds(&Mutex::new(conn.events().take_while_ready().await));
    assert_eq!(k, ["failed", "reconnecting"], "{k:?}");
    let sender = within("attach", conn.open_sender("q")).await.unwrap();
    assert_eq!(
        within("send", sender.send(numbered(0))).await.unwrap(),
        Outcome::Accepted
    );
}

/// `close()` while the connection is being replaced stops reconnecting:
/// it returns, `closed()` is Ok, and a send that waited fails with its
/// message back.
#[tokio::test]
async fn close_while_reconnecting_ends_cleanly() {
    let (addr, _) = server(0).await;
    let proxy = Proxy::start(addr).await;
    let conn = within("connect", aqueduct::connect(fast(&proxy.url())))
        .await
        .unwrap();
    let mut events = conn.events();
    let sender = within("attach", conn.open_sender("q")).await.unwrap();
    proxy.refuse(true);
    proxy.cut_all();
    within("the loss", async {
        while let Some(e) = events.next().await {
            if matches!(e, ConnectionEvent::Reconnecting { .. }) {
                break;
            }
        }
    })
    .await;
    let waiting = tokio::spawn(sender.send(numbered(1)));
    within("close", conn.close()).await.unwrap();
    within("closed()", conn.closed()).await.unwrap();
    let err = within("the waiting send", waiting)
        .await
        .unwrap()
        .unwrap_err();
    assert!(err.message().is_some(), "{err}");
    assert_eq!(conn.statistics().reconnects, 0);
}

/// A dynamic node does not survive its link: after a reconnect the
/// receiver's address is the node the peer assigned to the re-attached
/// link.
#[tokio::test]
async fn a_dynamic_receiver_learns_its_new_address() {
    let mut listener = aqueduct::listen("amqp://127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr();
    tokio::spawn(async move {
        let mut n = 0;
        while let Some(incoming) = listener.next().await {
            let Ok(conn) = incoming.accept() else {
                continue;
            };
            while let Some(e) = conn.next_incoming().await {
                if let IncomingEndpoint::Link(l) = e {
                    assert!(l.is_dynamic());
                    let tx = l.accept_sender(Some(format!("reply-{n}"))).unwrap();
                    tokio::spawn(async move {
                        let _ = tx.send(Message::from(format!("hello-{n}"))).await;
                        std::future::pending::<()>().await; // keep the link
                    });
                    n += 1;
                }
            }
        }
    });
    let proxy = Proxy::start(addr).await;
    let conn = within("connect", aqueduct::connect(fast(&proxy.url())))
        .await
        .unwrap();
    let mut rx = within("attach", conn.open_dynamic_receiver())
        .await
        .unwrap();
    assert_eq!(rx.address(), Some("reply-0"));
    let body = |d: aqueduct::Delivery| d.message().unwrap().body().to_string();
    let first = within("the first message", rx.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(body(first), "hello-0");
    proxy.cut_all();
    let second = within("the message after the reconnect", rx.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(body(second), "hello-1");
    assert_eq!(rx.address(), Some("reply-1"));
}
