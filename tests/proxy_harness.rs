//! The fault-injection proxy (`tests/common/proxy.rs`) between our client
//! and our listener: what a user sees when the proxy forwards, cuts and
//! refuses connections.

mod common;

use aqueduct::frame::Performative;
use aqueduct::{
    Connection, Delivery, Error, ErrorKind, IncomingEndpoint, Message, Outcome, ReceiverOptions,
    Sender, SenderOptions,
};
use common::proxy::{Dir, Proxy, XorShift};
use futures::StreamExt;
use std::time::Duration;
use tokio::sync::mpsc;

/// Generous: the machine running the tests may be loaded.
const T: Duration = Duration::from_secs(20);

/// Reconnect off: these tests check what the proxy does to one
/// connection (tests/reconnect_*.rs check reconnecting through it).
fn once(url: &str) -> aqueduct::ConnectOptions {
    aqueduct::ConnectOptions::new()
        .url(url)
        .reconnect(aqueduct::Reconnect::disabled())
}

async fn within<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(T, fut).await {
        Ok(r) => r,
        Err(_) => panic!("{what}: did not finish within {T:?}"),
    }
}

/// What the server side of the test sees on its receivers.
enum Seen {
    /// A whole message arrived (not yet settled).
    Delivery(Box<Delivery>),
    /// A receiver's stream ended, with the error if any.
    Ended(Option<Error>),
}

/// Our listener, accepting every connection and every link as a receiver
/// (manual settlement); it reports what it sees on the channel.
async fn server() -> (std::net::SocketAddr, mpsc::UnboundedReceiver<Seen>) {
    let mut listener = aqueduct::listen("amqp://127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(incoming) = listener.next().await {
            let Ok(conn) = incoming.accept() else {
                continue;
            };
            tokio::spawn(serve_links(conn, tx.clone()));
        }
    });
    (addr, rx)
}

async fn serve_links(conn: Connection, tx: mpsc::UnboundedSender<Seen>) {
    while let Some(endpoint) = conn.next_incoming().await {
        let IncomingEndpoint::Link(link) = endpoint else {
            continue;
        };
        let opts = ReceiverOptions::default()
            .credit_window(10)
            .auto_accept(false);
        let Ok(mut rx) = link.accept_receiver(None, opts) else {
            continue;
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            loop {
                match rx.next().await {
                    Some(Ok(d)) => {
                        let _ = tx.send(Seen::Delivery(Box::new(d)));
                    }
                    Some(Err(e)) => {
                        let _ = tx.send(Seen::Ended(Some(e)));
                        return;
                    }
                    None => {
                        let _ = tx.send(Seen::Ended(None));
                        return;
                    }
                }
            }
        });
    }
}

async fn next_seen(rx: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    within("the server's next event", rx.recv())
        .await
        .expect("the server task ended")
}

async fn next_delivery(rx: &mut mpsc::UnboundedReceiver<Seen>) -> Delivery {
    match next_seen(rx).await {
        Seen::Delivery(d) => *d,
        Seen::Ended(e) => panic!("expected a delivery, the receiver ended: {e:?}"),
    }
}

/// A client connection through `proxy` and a sender on it.
async fn client(proxy: &Proxy) -> (Connection, Sender) {
    let conn = within("connect", aqueduct::connect(once(&proxy.url())))
        .await
        .unwrap();
    let sender = within(
        "open sender",
        conn.open_sender_with(SenderOptions::new("q")),
    )
    .await
    .unwrap();
    (conn, sender)
}

/// A failure a lost connection gives today (there is no reconnect yet).
fn assert_connection_lost(e: &Error) {
    assert!(
        matches!(e.kind(), ErrorKind::Io | ErrorKind::ConnectionClosed),
        "expected Io or ConnectionClosed, got {e:?}"
    );
}

fn body(d: &Delivery) -> String {
    d.message().unwrap().body().as_str().unwrap().to_string()
}

#[tokio::test]
async fn send_works_through_the_proxy() {
    let (addr, mut seen) = server().await;
    let proxy = Proxy::start(addr).await;
    let (_conn, sender) = client(&proxy).await;
    let (outcome, ()) = tokio::join!(sender.send("hello"), async {
        let d = next_delivery(&mut seen).await;
        assert_eq!(body(&d), "hello");
        d.accept().await.unwrap();
    });
    assert_eq!(outcome.unwrap(), Outcome::Accepted);
    let stats = proxy.stats();
    assert_eq!(stats.accepted, 1);
    assert_eq!(stats.cuts, 0);
    assert!(stats.bytes_to_server > 0 && stats.bytes_to_client > 0);
}

#[tokio::test]
async fn cut_all_fails_the_pending_send_and_a_new_connection_works() {
    let (addr, mut seen) = server().await;
    let proxy = Proxy::start(addr).await;
    let (_conn, sender) = client(&proxy).await;
    let pending = tokio::spawn({
        let sender = sender.clone();
        async move { sender.send("in flight").await }
    });
    // The server holds the delivery unsettled: the send is in flight.
    let held = next_delivery(&mut seen).await;
    assert_eq!(body(&held), "in flight");
    proxy.cut_all();
    let err = within("the pending send", pending)
        .await
        .unwrap()
        .unwrap_err();
    assert_connection_lost(&err);
    assert!(matches!(next_seen(&mut seen).await, Seen::Ended(_)));
    assert_eq!(proxy.stats().cuts, 1);

    let (_conn2, sender2) = client(&proxy).await;
    let (outcome, ()) = tokio::join!(sender2.send("after"), async {
        let d = next_delivery(&mut seen).await;
        assert_eq!(body(&d), "after");
        d.accept().await.unwrap();
    });
    assert_eq!(outcome.unwrap(), Outcome::Accepted);
    assert_eq!(proxy.stats().accepted, 2);
}

#[tokio::test]
async fn cut_between_transfer_and_disposition_fails_the_send_after_delivery() {
    let (addr, mut seen) = server().await;
    let proxy = Proxy::start(addr).await;
    let (_conn, sender) = client(&proxy).await;
    proxy.cut_on_frame(Dir::ToClient, |p| matches!(p, Performative::Disposition(_)));
    let (outcome, ()) = tokio::join!(sender.send("m1"), async {
        let d = next_delivery(&mut seen).await;
        assert_eq!(body(&d), "m1");
        // The server accepts; the proxy drops its disposition and cuts.
        let _ = d.accept().await;
    });
    assert_connection_lost(&outcome.unwrap_err());
    assert!(!proxy.armed(Dir::ToClient), "the frame fault fired");
    assert_eq!(proxy.stats().cuts, 1);
}

#[tokio::test]
async fn cut_during_open_fails_connect() {
    let (addr, _seen) = server().await;
    let proxy = Proxy::start(addr).await;
    proxy.cut_on_frame(Dir::ToClient, |p| matches!(p, Performative::Open(_)));
    let err = within("connect", aqueduct::connect(once(&proxy.url())))
        .await
        .unwrap_err();
    assert_connection_lost(&err);
    assert_eq!(proxy.stats().cuts, 1);
    // The fault was one-shot: the next connection opens.
    let (_conn, _sender) = client(&proxy).await;
}

#[tokio::test]
async fn refusing_fails_connect_until_it_ends() {
    let (addr, _seen) = server().await;
    let proxy = Proxy::start(addr).await;

    proxy.refuse(true);
    let err = within("connect", aqueduct::connect(once(&proxy.url())))
        .await
        .unwrap_err();
    assert_connection_lost(&err);
    proxy.refuse(false);
    let _ok = client(&proxy).await;

    let window = Duration::from_secs(3);
    let until = tokio::time::Instant::now() + window;
    proxy.refuse_for(window);
    let err = within("connect", aqueduct::connect(once(&proxy.url())))
        .await
        .unwrap_err();
    assert_connection_lost(&err);
    // Time is what ends this refusal.
    tokio::time::sleep_until(until).await;
    let _ok = client(&proxy).await;
    let stats = proxy.stats();
    assert_eq!(stats.refused, 2);
    assert_eq!(stats.accepted, 2);
}

#[tokio::test]
async fn cut_mid_frame_ends_the_connection_without_a_partial_message() {
    let (addr, mut seen) = server().await;
    let proxy = Proxy::start(addr).await;
    let (_conn, sender) = client(&proxy).await;
    // 1 MiB goes out in frames of the 64 KiB default max-frame-size; the
    // transfer frames start right after the fault is armed, so 200,001
    // bytes end inside the fourth frame.
    let before = proxy.stats().bytes_to_server;
    proxy.cut_after_bytes(Dir::ToServer, 200_001);
    let big = Message::builder().body(vec![7u8; 1 << 20]).build();
    let err = within("the big send", sender.send(big)).await.unwrap_err();
    assert_connection_lost(&err);
    match next_seen(&mut seen).await {
        Seen::Ended(_) => {}
        Seen::Delivery(_) => panic!("the server got a message from a cut transfer"),
    }
    let stats = proxy.stats();
    assert_eq!(stats.cuts, 1);
    assert_eq!(stats.mid_frame_cuts, 1, "the cut fell inside a frame");
    assert!(!proxy.armed(Dir::ToServer));
    assert_eq!(stats.bytes_to_server, before + 200_001);
}

#[tokio::test]
async fn random_cuts_cut_live_connections() {
    let (addr, _seen) = server().await;
    let proxy = Proxy::start(addr).await;
    let (conn, sender) = client(&proxy).await;
    proxy.random_cuts(42, Duration::from_millis(50));
    within("the first random cut", proxy.cuts_reached(1)).await;
    proxy.stop_random_cuts();
    let err = within("a send on the cut connection", sender.send("x"))
        .await
        .unwrap_err();
    assert_connection_lost(&err);
    drop(conn);
}

#[test]
fn the_random_schedule_is_deterministic_from_the_seed() {
    let mean = Duration::from_millis(100);
    let a: Vec<Duration> = {
        let mut r = XorShift::new(7);
        (0..1000).map(|_| r.gap(mean)).collect()
    };
    let b: Vec<Duration> = {
        let mut r = XorShift::new(7);
        (0..1000).map(|_| r.gap(mean)).collect()
    };
    let c: Vec<Duration> = {
        let mut r = XorShift::new(8);
        (0..1000).map(|_| r.gap(mean)).collect()
    };
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert!(a.iter().all(|g| *g > Duration::ZERO && *g <= 2 * mean));
    let avg = a.iter().sum::<Duration>() / a.len() as u32;
    assert!(avg > mean / 2 && avg < mean * 3 / 2, "mean gap {avg:?}");
}

#[tokio::test]
async fn stop_accepting_times_connect_out_until_it_ends() {
    let (addr, _seen) = server().await;
    let proxy = Proxy::start(addr).await;
    proxy.stop_accepting(true);
    let opts = aqueduct::ConnectOptions::from(proxy.url()).open_timeout(Duration::from_millis(500));
    let err = within("connect", aqueduct::connect(opts))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Timeout, "{err:?}");
    proxy.stop_accepting(false);
    let (_conn, _sender) = client(&proxy).await;
}

#[tokio::test]
async fn random_byte_cuts_cut_each_connection_in_turn() {
    let (addr, mut seen) = server().await;
    tokio::spawn(async move {
        while let Some(s) = seen.recv().await {
            if let Seen::Delivery(d) = s {
                let _ = d.accept().await;
            }
        }
    });
    let proxy = Proxy::start(addr).await;
    proxy.random_byte_cuts(Dir::ToServer, 11, 20_000);
    let mut accepted = 0u32;
    let mut attempts = 0;
    while proxy.stats().cuts < 3 {
        attempts += 1;
        assert!(attempts <= 50, "no 3 cuts in 50 connections");
        // A cut may land during connect or attach: that is a lost
        // connection too.
        let Ok(conn) = within("connect", aqueduct::connect(once(&proxy.url()))).await else {
            continue;
        };
        let Ok(sender) = within(
            "open sender",
            conn.open_sender_with(SenderOptions::new("q")),
        )
        .await
        else {
            continue;
        };
        loop {
            let msg = Message::builder().body(vec![1u8; 1000]).build();
            match within("send", sender.send(msg)).await {
                Ok(o) => {
                    assert_eq!(o, Outcome::Accepted);
                    accepted += 1;
                }
                Err(e) => {
                    assert_connection_lost(&e);
                    break;
                }
            }
        }
    }
    proxy.stop_random_byte_cuts(Dir::ToServer);
    assert!(!proxy.armed(Dir::ToServer));
    let stats = proxy.stats();
    assert!(stats.mid_frame_cuts >= 1, "{stats:?}");
    assert!(accepted > 0);
    // Without the schedule, a connection lives.
    let (_conn, sender) = client(&proxy).await;
    assert_eq!(
        within("send", sender.send("last")).await.unwrap(),
        Outcome::Accepted
    );
}

#[tokio::test]
async fn dropping_the_proxy_ends_its_connections_and_its_listener() {
    let (addr, _seen) = server().await;
    let proxy = Proxy::start(addr).await;
    let url = proxy.url();
    let (_conn, sender) = client(&proxy).await;
    drop(proxy);
    let err = within("a send after the drop", sender.send("x"))
        .await
        .unwrap_err();
    assert_connection_lost(&err);
    let err = within("connect after the drop", aqueduct::connect(once(&url)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Io, "{err:?}");
}

#[tokio::test]
async fn a_server_that_does_not_read_stops_the_client_writing() {
    use tokio::io::AsyncWriteExt;
    // A server that accepts and never reads.
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = upstream.local_addr().unwrap();
    let (held_tx, held_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (s, _) = upstream.accept().await.unwrap();
        let _ = held_tx.send(());
        // Keep the socket open, unread, until the test ends.
        std::future::pending::<()>().await;
        drop(s);
    });
    let proxy = Proxy::start(addr).await;
    let mut client = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    within("the server accepting", held_rx).await.unwrap();
    const TOTAL: usize = 64 << 20;
    let data = vec![0u8; TOTAL];
    // With a fixed buffer and backpressure the proxy stops reading once the
    // kernel buffers towards the server are full, so the write cannot end;
    // a proxy that buffered without bound would take all 64 MiB.
    let write = tokio::time::timeout(Duration::from_secs(2), client.write_all(&data)).await;
    assert!(
        write.is_err(),
        "64 MiB went into a server that reads nothing"
    );
    let forwarded = proxy.stats().bytes_to_server;
    assert!(
        forwarded < TOTAL as u64 / 2,
        "the proxy forwarded {forwarded} bytes"
    );
}
