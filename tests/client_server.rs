//! The async API against our own listener: what a user of the client and
//! server sides sees.

use aqueduct::{
    Connection, DeliveryMode, ErrorKind, IncomingEndpoint, IncomingLink, ListenOptions, Message,
    Outcome, Receiver, ReceiverOptions, Sender, SenderOptions,
};
use futures::stream::StreamExt;
use futures::SinkExt;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

/// A client connection and the server's side of it.
async fn pair_with(opts: ListenOptions) -> (Connection, Connection) {
    let mut listener = aqueduct::listen(opts).await.unwrap();
    let url = format!("amqp://{}", listener.local_addr());
    let (client, server) = tokio::join!(aqueduct::connect(url.as_str()), async {
        listener.next().await.unwrap().accept().unwrap()
    });
    (client.unwrap(), server)
}

async fn pair() -> (Connection, Connection) {
    pair_with(ListenOptions::new("amqp://127.0.0.1:0")).await
}

/// The next link the peer attaches on `conn`.
async fn next_link(conn: &Connection) -> IncomingLink {
    loop {
        match tokio::time::timeout(T, conn.next_incoming()).await.unwrap() {
            Some(IncomingEndpoint::Link(l)) => return l,
            Some(_) => continue,
            None => panic!("connection closed"),
        }
    }
}

/// Client sender -> server receiver.
async fn sender_link(
    client: &Connection,
    server: &Connection,
    opts: SenderOptions,
    window: u32,
) -> (Sender, Receiver) {
    let (s, r) = tokio::join!(client.open_sender_with(opts), async {
        let options = ReceiverOptions::default()
            .credit_window(window)
            .auto_accept(false);
        next_link(server)
            .await
            .accept_receiver(None, options)
            .unwrap()
    });
    (s.unwrap(), r)
}

/// Server sender -> client receiver.
async fn receiver_link(
    client: &Connection,
    server: &Connection,
    opts: ReceiverOptions,
) -> (Receiver, Sender) {
    let (r, l) = tokio::join!(
        async {
            // Let the server answer while we wait for the attach.
            client.open_receiver_with(opts).await
        },
        async {
            let l = next_link(server).await;
            let addr = l.address().map(str::to_string);
            l.accept_sender(addr).unwrap()
        }
    );
    (r.unwrap(), l)
}

#[tokio::test]
async fn send_receive_and_outcomes() {
    let (client, server) = pair().await;
    let (sender, mut rx) = sender_link(&client, &server, SenderOptions::new("q"), 10).await;
    let settle = tokio::spawn(async move {
        let mut seen = Vec::new();
        for i in 0..4 {
            let d = rx.next().await.unwrap().unwrap();
            seen.push(d.message().unwrap().body().to_string());
            match i {
                0 => d.accept().await.unwrap(),
                1 => d.reject("app:bad", "no thanks").await.unwrap(),
                2 => d.release().await.unwrap(),
                _ => d.modify(true, true, None).await.unwrap(),
            }
        }
        seen
    });
    let outcomes: Vec<Outcome> =
        futures::future::join_all((0..4).map(|i| sender.send(format!("m{i}"))))
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
    assert_eq!(settle.await.unwrap(), ["m0", "m1", "m2", "m3"]);
    assert_eq!(outcomes[0], Outcome::Accepted);
    match &outcomes[1] {
        Outcome::Rejected(Some(e)) => {
            assert_eq!(e.condition.as_str(), "app:bad");
            assert_eq!(e.description.as_deref(), Some("no thanks"));
        }
        o => panic!("unexpected {o:?}"),
    }
    assert_eq!(outcomes[2], Outcome::Released);
    assert!(matches!(
        outcomes[3],
        Outcome::Modified {
            delivery_failed: true,
            undeliverable_here: true,
            ..
        }
    ));
    let stats = client.statistics();
    assert_eq!(stats.messages_out, 4);
    assert!(stats.bytes_out > 0 && stats.bytes_in > 0);
}

#[tokio::test]
async fn many_sends_pipeline_in_order() {
    let (client, server) = pair().await;
    let (sender, mut rx) = sender_link(
        &client,
        &server,
        SenderOptions::new("q").max_in_flight(100),
        100,
    )
    .await;
    const N: usize = 20_000;
    let recv = tokio::spawn(async move {
        for i in 0..N {
            let d = rx.next().await.unwrap().unwrap();
            assert_eq!(
                d.message().unwrap().id(),
                Some(&aqueduct::MessageId::Ulong(i as u64))
            );
            d.accept().await.unwrap();
        }
    });
    // `buffered` polls the send futures in order, so they queue in order
    // even past the in-flight bound (1024 by default).
    let mut outcomes = futures::stream::iter(0..N)
        .map(|i| sender.send(Message::builder().id(i as u64).body("x").build()))
        .buffered(4096);
    let mut accepted = 0;
    while let Some(o) = tokio::time::timeout(T, outcomes.next()).await.unwrap() {
        assert_eq!(o.unwrap(), Outcome::Accepted);
        accepted += 1;
    }
    assert_eq!(accepted, N);
    recv.await.unwrap();
}

#[tokio::test]
async fn sink_flush_waits_for_outcomes_and_reports_rejection() {
    let (client, server) = pair().await;
    let (mut sender, mut rx) = sender_link(&client, &server, SenderOptions::new("q"), 10).await;
    tokio::spawn(async move {
        while let Some(Ok(d)) = rx.next().await {
            if d.message().unwrap().body().to_string() == "bad" {
                d.reject("app:bad", "bad body").await.unwrap();
            } else {
                d.accept().await.unwrap();
            }
        }
    });
    let mut msgs = futures::stream::iter((0..50).map(|i| Ok(Message::from(format!("{i}")))));
    sender.send_all(&mut msgs).await.unwrap();
    sender.feed(Message::from("bad")).await.unwrap();
    let err = sender.flush().await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Rejected);
    assert_eq!(err.condition(), Some("app:bad"));
}

#[tokio::test]
async fn tower_service_composes() {
    use tower::{Service, ServiceBuilder, ServiceExt};
    let (client, server) = pair().await;
    let (sender, mut rx) = sender_link(&client, &server, SenderOptions::new("q"), 10).await;
    tokio::spawn(async move {
        while let Some(Ok(d)) = rx.next().await {
            d.accept().await.unwrap();
        }
    });
    let mut svc = ServiceBuilder::new()
        .concurrency_limit(4)
        .timeout(Duration::from_secs(10))
        .service(sender);
    for i in 0..20 {
        let out = svc
            .ready()
            .await
            .unwrap()
            .call(Message::from(format!("{i}")))
            .await
            .unwrap();
        assert_eq!(out, Outcome::Accepted);
    }
}

#[tokio::test]
async fn dropped_deliveries_are_accepted_or_released() {
    let (client, server) = pair().await;
    // auto-accept on (default): dropping accepts.
    let (mut rx, tx) = receiver_link(&client, &server, ReceiverOptions::new("a")).await;
    let out = tokio::spawn(async move { tx.send("one").await.unwrap() });
    drop(rx.next().await.unwrap().unwrap());
    assert_eq!(out.await.unwrap(), Outcome::Accepted);
    // auto-accept off: dropping releases, so the message is not lost.
    let (mut rx, tx) = receiver_link(
        &client,
        &server,
        ReceiverOptions::new("b").auto_accept(false),
    )
    .await;
    let out = tokio::spawn(async move { tx.send("two").await.unwrap() });
    let d = rx.next().await.unwrap().unwrap();
    assert!(!d.is_settled());
    drop(d);
    assert_eq!(out.await.unwrap(), Outcome::Released);
}

#[tokio::test]
async fn manual_credit_and_drain() {
    let (client, server) = pair().await;
    let (mut rx, tx) =
        receiver_link(&client, &server, ReceiverOptions::new("m").credit_window(0)).await;
    let sends: Vec<_> = (0..3).map(|i| tx.send(format!("{i}"))).collect();
    let sends = tokio::spawn(futures::future::join_all(sends));
    // No credit: nothing arrives.
    assert!(tokio::time::timeout(Duration::from_millis(200), rx.next())
        .await
        .is_err());
    rx.add_credit(2).unwrap();
    for i in 0..2 {
        let d = rx.next().await.unwrap().unwrap();
        assert_eq!(d.message().unwrap().body().to_string(), i.to_string());
    }
    // Drain with no credit left returns at once; the third message waits.
    rx.drain().await.unwrap();
    rx.add_credit(1).unwrap();
    assert_eq!(
        rx.next()
            .await
            .unwrap()
            .unwrap()
            .message()
            .unwrap()
            .body()
            .to_string(),
        "2"
    );
    for o in sends.await.unwrap() {
        assert_eq!(o.unwrap(), Outcome::Accepted);
    }
}

#[tokio::test]
async fn dynamic_receiver_gets_the_assigned_address() {
    let (client, server) = pair().await;
    let (r, l) = tokio::join!(client.open_dynamic_receiver(), async {
        let l = next_link(&server).await;
        assert!(l.is_dynamic());
        l.accept_sender(Some("reply-42".into())).unwrap()
    });
    let r = r.unwrap();
    assert_eq!(r.address(), Some("reply-42"));
    drop(l);
}

#[tokio::test]
async fn refused_link_and_refused_connection_carry_the_condition() {
    let (client, server) = pair().await;
    let (s, ()) = tokio::join!(client.open_sender("nowhere"), async {
        let l = next_link(&server).await;
        l.refuse("amqp:not-found", "no such node: nowhere")
    });
    let err = s.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::LinkDetached);
    assert_eq!(err.condition(), Some("amqp:not-found"));
    assert_eq!(err.description(), Some("no such node: nowhere"));

    let mut listener = aqueduct::listen("amqp://127.0.0.1:0").await.unwrap();
    let url = format!("amqp://{}", listener.local_addr());
    let refuse = tokio::spawn(async move {
        listener
            .next()
            .await
            .unwrap()
            .refuse("amqp:unauthorized-access", "go away");
    });
    let err = aqueduct::connect(url.as_str()).await.unwrap_err();
    refuse.await.unwrap();
    assert_eq!(err.condition(), Some("amqp:unauthorized-access"));
    assert_eq!(err.description(), Some("go away"));
}

/// With reconnect on (the default), a link the peer detaches with
/// `amqp:link:detach-forced` is attached again under the same name, and
/// the same `Receiver` goes on receiving.
#[tokio::test]
async fn detach_forced_link_is_attached_again() {
    let (client, server) = pair().await;
    let (mut rx, tx) = receiver_link(&client, &server, ReceiverOptions::new("d")).await;
    let name = rx.name().to_string();
    tx.close_with_error("amqp:link:detach-forced", "idle link");
    let again = next_link(&server).await;
    assert_eq!(again.name(), name);
    assert_eq!(again.address(), Some("d"));
    let tx = again.accept_sender(Some("d".into())).unwrap();
    let send = tokio::spawn(tx.send(Message::from("after")));
    let d = tokio::time::timeout(T, rx.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(d.message().unwrap().body().as_str(), Some("after"));
    drop(d); // auto-accepted
    let outcome = tokio::time::timeout(T, send)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(outcome.is_accepted(), "{outcome:?}");
}

#[tokio::test]
async fn remote_detach_with_error_ends_the_stream_with_it() {
    let (client, server) = pair().await;
    let (mut rx, tx) = receiver_link(&client, &server, ReceiverOptions::new("d")).await;
    tx.close_with_error("amqp:resource-limit-exceeded", "shutting down");
    let err = tokio::time::timeout(T, rx.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(err.condition(), Some("amqp:resource-limit-exceeded"));
    assert!(err.is_retriable());
    assert!(rx.next().await.is_none());
}

/// With reconnect off, `amqp:link:detach-forced` ends the stream too.
#[tokio::test]
async fn detach_forced_without_reconnect_ends_the_stream() {
    let mut listener = aqueduct::listen("amqp://127.0.0.1:0").await.unwrap();
    let url = format!("amqp://{}", listener.local_addr());
    let opts = aqueduct::ConnectOptions::new()
        .url(url)
        .reconnect(aqueduct::Reconnect::disabled());
    let (client, server) = tokio::join!(aqueduct::connect(opts), async {
        listener.next().await.unwrap().accept().unwrap()
    });
    let client = client.unwrap();
    let (mut rx, tx) = receiver_link(&client, &server, ReceiverOptions::new("d")).await;
    tx.close_with_error("amqp:link:detach-forced", "shutting down");
    let err = tokio::time::timeout(T, rx.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(err.condition(), Some("amqp:link:detach-forced"));
    assert!(err.is_retriable());
    assert!(rx.next().await.is_none());
    // A send on a detached link gives the message back.
    let (sender, srv_rx) = sender_link(&client, &server, SenderOptions::new("x"), 0).await;
    drop(srv_rx);
    let _ = server.close().await;
    let err = sender.send("keep me").await.unwrap_err();
    assert_eq!(err.message().unwrap().body().to_string(), "keep me");
}

#[tokio::test]
async fn presettled_sends_and_big_messages() {
    let (client, server) =
        pair_with(ListenOptions::new("amqp://127.0.0.1:0").max_frame_size(4096)).await;
    let (sender, mut rx) = sender_link(
        &client,
        &server,
        SenderOptions::new("p").delivery_mode(DeliveryMode::AtMostOnce),
        10,
    )
    .await;
    assert_eq!(sender.send("fast").await.unwrap(), Outcome::Presettled);
    let d = rx.next().await.unwrap().unwrap();
    assert!(d.is_settled());
    let big: Vec<u8> = (0..10 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let (sender, mut rx) = sender_link(&client, &server, SenderOptions::new("big"), 2).await;
    let recv = tokio::spawn(async move {
        let d = rx.next().await.unwrap().unwrap();
        let len = d.message().unwrap().body().as_bytes().unwrap().len();
        d.accept().await.unwrap();
        len
    });
    assert_eq!(sender.send(big).await.unwrap(), Outcome::Accepted);
    assert_eq!(recv.await.unwrap(), 10 * 1024 * 1024);
}

#[tokio::test]
async fn sessions_and_close() {
    let (client, server) = pair().await;
    let session = client.open_session().await.unwrap();
    let (s, mut r) = tokio::join!(session.open_sender("on-session"), async {
        let l = next_link(&server).await;
        l.accept_receiver(None, ReceiverOptions::default()).unwrap()
    });
    let s = s.unwrap();
    // The delivery is dropped (so auto-accepted) inside its branch.
    let (o, ()) = tokio::join!(s.send("hi"), async {
        r.next().await.unwrap().unwrap();
    });
    assert_eq!(o.unwrap(), Outcome::Accepted);
    client.close().await.unwrap();
    assert!(client.error().is_some());
    let err = s.send("late").await.unwrap_err();
    assert!(matches!(
        err.kind(),
        ErrorKind::Closed | ErrorKind::ConnectionClosed
    ));
}

#[tokio::test]
async fn received_bytes_are_forwarded_without_reencoding() {
    let (client, server) = pair().await;
    let (sender, mut srv_rx) = sender_link(&client, &server, SenderOptions::new("in"), 10).await;
    let (mut rx, srv_tx) = receiver_link(&client, &server, ReceiverOptions::new("out")).await;
    let m = Message::builder()
        .id("m-1")
        .subject("forwarded")
        .application_property("k", 7i32)
        .body(vec![1u8, 2, 3])
        .build();
    let forward = tokio::spawn(async move {
        let d = srv_rx.next().await.unwrap().unwrap();
        let payload = d.payload().clone();
        assert_eq!(
            aqueduct::Message::decode(payload.clone()).unwrap(),
            *d.message().unwrap()
        );
        d.accept().await.unwrap();
        srv_tx.send_encoded(payload).await.unwrap()
    });
    assert_eq!(sender.send(m.clone()).await.unwrap(), Outcome::Accepted);
    let got = rx.next().await.unwrap().unwrap();
    assert_eq!(got.message().unwrap(), &m);
    drop(got);
    assert_eq!(forward.await.unwrap(), Outcome::Accepted);
}

#[tokio::test]
async fn listens_on_ipv6_any_and_reports_the_bound_port() {
    let mut listener = aqueduct::listen("amqp://[::]:0").await.unwrap();
    let addr = listener.local_addr();
    assert!(addr.is_ipv6() && addr.port() != 0);
    let url = format!("amqp://[::1]:{}", addr.port());
    let (client, server) = tokio::join!(aqueduct::connect(url.as_str()), async {
        let incoming = listener.next().await.unwrap();
        assert!(incoming.peer_addr().is_ipv6());
        assert!(!incoming.remote_container_id().is_empty());
        incoming.accept().unwrap()
    });
    let client = client.unwrap();
    assert_eq!(client.remote_container_id(), server.container_id());
    client.close().await.unwrap();
}

/// tower's contract: a `poll_ready` that returns `Ready` reserves the slot
/// that `call` then uses, so two clones sharing an in-flight bound of one
/// cannot both be ready.
#[tokio::test]
async fn poll_ready_reserves_the_in_flight_slot() {
    use std::task::Poll;
    use tower::Service;
    let (client, server) = pair().await;
    let opts = SenderOptions::new("q").max_in_flight(1);
    let (mut a, mut rx) = sender_link(&client, &server, opts, 10).await;
    let mut b = a.clone();
    async fn ready(s: &mut Sender) -> bool {
        futures::future::poll_fn(|cx| Poll::Ready(s.poll_ready(cx).is_ready())).await
    }
    assert!(ready(&mut a).await, "a reserves the only slot");
    assert!(!ready(&mut b).await, "b must wait: the slot is a's");
    let outcome = a.call(Message::from("one"));
    let d = tokio::time::timeout(T, rx.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    d.accept().await.unwrap();
    assert_eq!(outcome.await.unwrap(), Outcome::Accepted);
    // The slot is free again; dropping an unused reservation frees it too.
    assert!(ready(&mut b).await);
    drop(b);
    assert!(ready(&mut a).await);
}

/// A detach by the peer, even without an error, ends a receiver's stream
/// with an error: the user can tell it from their own close.
#[tokio::test]
async fn remote_detach_without_error_is_an_error_not_the_end() {
    let (client, server) = pair().await;
    let (mut r, s) = receiver_link(&client, &server, ReceiverOptions::new("q")).await;
    s.close().await.unwrap();
    let item = tokio::time::timeout(T, r.next()).await.unwrap();
    let err = item.expect("an item, not the end").unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::LinkDetached);
    assert!(tokio::time::timeout(T, r.next()).await.unwrap().is_none());
}

/// Dropping a receiver releases the deliveries it buffered without
/// yielding them: the sender sees them released, not lost.
#[tokio::test]
async fn dropping_a_receiver_releases_what_it_buffered() {
    let (client, server) = pair().await;
    let (mut r, s) = receiver_link(
        &client,
        &server,
        ReceiverOptions::new("q").credit_window(10),
    )
    .await;
    let sends: Vec<_> = (0..5)
        .map(|i| s.send(Message::from(format!("{i}"))))
        .collect();
    // Take one, so that the others are surely buffered, then drop.
    let first = tokio::time::timeout(T, r.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    first.accept().await.unwrap();
    while client.statistics().messages_in < 5 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(r);
    let outcomes = futures::future::join_all(sends).await;
    assert_eq!(outcomes[0].as_ref().unwrap(), &Outcome::Accepted);
    for o in &outcomes[1..] {
        assert_eq!(o.as_ref().unwrap(), &Outcome::Released);
    }
}

/// Settling a delivery whose link is gone says so: the peer did not get
/// the settlement and keeps (and will redeliver) the message.
#[tokio::test]
async fn accepting_after_the_link_is_gone_is_an_error() {
    let (client, server) = pair().await;
    let opts = ReceiverOptions::new("q").auto_accept(false);
    let (mut r, s) = receiver_link(&client, &server, opts).await;
    let _pending = s.send(Message::from("x"));
    let d = tokio::time::timeout(T, r.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    s.close().await.unwrap();
    // The stream reports the detach; the delivery can no longer be settled.
    let _ = tokio::time::timeout(T, r.next()).await.unwrap();
    let err = d.accept().await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::LinkDetached);
}

/// rcv-settle-mode second: `accept` resolves once the sender has settled.
#[tokio::test]
async fn settle_second_accept_waits_for_the_sender() {
    let (client, server) = pair().await;
    let opts = ReceiverOptions::new("q").settle_second().auto_accept(false);
    let (mut r, s) = receiver_link(&client, &server, opts).await;
    let out = s.send(Message::from("x"));
    let d = tokio::time::timeout(T, r.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    tokio::time::timeout(T, d.accept()).await.unwrap().unwrap();
    assert_eq!(out.await.unwrap(), Outcome::Accepted);
}

/// Both ends over an in-memory pipe, no socket: `connect_with_io` and
/// `accept_with_io` run a connection over any `AsyncRead + AsyncWrite`.
#[tokio::test]
async fn a_connection_over_an_in_memory_pipe() {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let peer: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
    let (client, server) = tokio::join!(
        aqueduct::connect_with_io(
            a,
            aqueduct::ConnectOptions::new().container_id("pipe-client")
        ),
        async {
            let incoming =
                aqueduct::accept_with_io(b, peer, ListenOptions::new("amqp://127.0.0.1:0"))
                    .await
                    .unwrap();
            assert_eq!(incoming.remote_container_id(), "pipe-client");
            assert_eq!(incoming.peer_addr(), peer);
            incoming.accept().unwrap()
        }
    );
    let client = client.unwrap();
    let (s, mut r) = sender_link(&client, &server, SenderOptions::new("q"), 10).await;
    let out = s.send(Message::from("through the pipe"));
    let d = tokio::time::timeout(T, r.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        d.message().unwrap().body().as_str(),
        Some("through the pipe")
    );
    d.accept().await.unwrap();
    assert_eq!(out.await.unwrap(), Outcome::Accepted);
    client.close().await.unwrap();
}
