//! Deliveries are decoded lazily: the receiver yields every delivery, a
//! malformed (or over-budget) message is an error from `Delivery::message`,
//! not from the stream, and a forwarded payload is never decoded.

use aqueduct::{
    Connection, ErrorKind, IncomingEndpoint, ListenOptions, Message, Outcome, Receiver,
    ReceiverOptions, Sender,
};
use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

/// A client sender and the receiver our listener accepts for it, with the
/// given auto-accept setting.
async fn link(auto_accept: bool) -> (Connection, Connection, Sender, Receiver) {
    let mut listener = aqueduct::listen(ListenOptions::new("amqp://127.0.0.1:0"))
        .await
        .unwrap();
    let url = format!("amqp://{}", listener.local_addr());
    let (client, server) = tokio::join!(aqueduct::connect(url.as_str()), async {
        listener.next().await.unwrap().accept().unwrap()
    });
    let client = client.unwrap();
    let (sender, receiver) = tokio::join!(client.open_sender("q"), async {
        loop {
            match tokio::time::timeout(T, server.next_incoming())
                .await
                .unwrap()
            {
                Some(IncomingEndpoint::Link(l)) => {
                    let opts = ReceiverOptions::default().auto_accept(auto_accept);
                    break l.accept_receiver(None, opts).unwrap();
                }
                Some(_) => continue,
                None => panic!("connection closed"),
            }
        }
    });
    (client, server, sender.unwrap(), receiver)
}

/// An amqp-value section holding a string, cut short.
fn malformed() -> Bytes {
    Bytes::from_static(b"\x00\x53\x77\xa1\x10too short")
}

/// A valid amqp-value list of `n` nulls: over the default allocation budget
/// for `n` above a few thousand.
fn nulls(n: u32) -> Bytes {
    let mut b = BytesMut::new();
    b.put_slice(&[0x00, 0x53, 0x77, 0xd0]);
    b.put_u32(4 + n);
    b.put_u32(n);
    b.put_bytes(0x40, n as usize);
    b.freeze()
}

async fn next(receiver: &mut Receiver) -> aqueduct::Delivery {
    tokio::time::timeout(T, receiver.next())
        .await
        .expect("a delivery in time")
        .expect("the stream goes on")
        .expect("a delivery, not an error")
}

fn rejected_condition(outcome: &Outcome) -> Option<&str> {
    match outcome {
        Outcome::Rejected(Some(e)) => Some(e.condition.as_str()),
        _ => None,
    }
}

#[tokio::test]
async fn a_malformed_message_is_yielded_and_fails_to_decode() {
    let (_client, _server, sender, mut receiver) = link(false).await;
    let bad = sender.send_encoded(malformed());
    let good = sender.send(Message::from("after"));

    // The malformed delivery comes first, as a delivery.
    let d = next(&mut receiver).await;
    assert_eq!(d.payload(), &malformed());
    let e = d.message().unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::Decode, "{e}");
    assert_eq!(e.condition(), Some("amqp:decode-error"), "{e}");
    // The same error again: decoded once.
    assert_eq!(d.message().unwrap_err().to_string(), e.to_string());
    d.reject("amqp:decode-error", e.to_string()).await.unwrap();
    let outcome = tokio::time::timeout(T, bad).await.unwrap().unwrap();
    assert_eq!(rejected_condition(&outcome), Some("amqp:decode-error"));

    // The stream goes on with the next message.
    let d = next(&mut receiver).await;
    assert_eq!(d.message().unwrap().body().as_str(), Some("after"));
    d.accept().await.unwrap();
    let outcome = tokio::time::timeout(T, good).await.unwrap().unwrap();
    assert_eq!(outcome, Outcome::Accepted);
}

#[tokio::test]
async fn dropping_an_undecodable_delivery_rejects_it_even_with_auto_accept() {
    let (_client, _server, sender, mut receiver) = link(true).await;
    // Over the allocation budget: 100,000 nulls are 100 KB on the wire and
    // 5.6 MB decoded.
    let big = sender.send_encoded(nulls(100_000));
    let d = next(&mut receiver).await;
    let e = d.message().unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::Decode, "{e}");
    assert!(e.to_string().contains("allocation budget"), "{e}");
    drop(d);
    let outcome = tokio::time::timeout(T, big).await.unwrap().unwrap();
    assert_eq!(
        rejected_condition(&outcome),
        Some("amqp:decode-error"),
        "{outcome:?}"
    );

    // `into_message` fails the same way, and rejects too.
    let bad = sender.send_encoded(malformed());
    let e = next(&mut receiver).await.into_message().unwrap_err();
    assert_eq!(e.condition(), Some("amqp:decode-error"), "{e}");
    let outcome = tokio::time::timeout(T, bad).await.unwrap().unwrap();
    assert_eq!(
        rejected_condition(&outcome),
        Some("amqp:decode-error"),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_delivery_that_is_only_forwarded_is_never_decoded() {
    let (_client, _server, sender, mut receiver) = link(true).await;
    // A payload that does not decode, forwarded by its bytes: auto-accepted
    // as it drops, because nobody asked for the message.
    let bad = sender.send_encoded(malformed());
    let d = next(&mut receiver).await;
    let forwarded = d.payload().clone();
    drop(d);
    let outcome = tokio::time::timeout(T, bad).await.unwrap().unwrap();
    assert_eq!(outcome, Outcome::Accepted);
    assert_eq!(forwarded, malformed());

    // A valid message decodes when asked, to what was sent; its payload is
    // the bytes on the wire.
    let m = Message::builder()
        .to("elsewhere")
        .body(Bytes::from_static(b"data"))
        .build();
    let sent = sender.send(m.clone());
    let d = next(&mut receiver).await;
    let props = Message::decode_properties(d.payload()).unwrap().unwrap();
    assert_eq!(props.to.as_deref(), Some("elsewhere"));
    assert_eq!(d.message().unwrap(), &m);
    assert_eq!(d.into_message().unwrap(), m);
    let outcome = tokio::time::timeout(T, sent).await.unwrap().unwrap();
    assert_eq!(outcome, Outcome::Accepted);
}

/// Our broker example (`examples/broker.rs`), built and started on a free
/// port; killed when dropped.
struct BrokerProc {
    child: std::process::Child,
    url: String,
}

impl Drop for BrokerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_broker() -> BrokerProc {
    use std::io::BufRead;
    let root = env!("CARGO_MANIFEST_DIR");
    let exe = std::env::current_exe().expect("test executable path");
    let profile = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("target/<profile>/deps");
    let mut build = std::process::Command::new(env!("CARGO"));
    build
        .args(["build", "--example", "broker", "--quiet"])
        .current_dir(root);
    if profile.ends_with("release") {
        build.arg("--release");
    }
    assert!(build.status().expect("cargo build").success());
    let mut child = std::process::Command::new(profile.join("examples").join("broker"))
        .args(["-a", "127.0.0.1:0"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the broker example");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = std::io::BufReader::new(stdout).lines();
    let line = lines
        .find_map(|l| l.ok().filter(|l| l.starts_with("Listening on")))
        .expect("the broker prints the address it listens on");
    // Keep draining its output so that it never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let port = line.rsplit(':').next().unwrap().trim().to_string();
    BrokerProc {
        child,
        url: format!("amqp://127.0.0.1:{port}"),
    }
}

#[tokio::test]
async fn the_broker_forwards_bodies_it_cannot_decode() {
    use aqueduct::message::Properties;
    use aqueduct::types::Encode;
    let broker = tokio::task::spawn_blocking(start_broker).await.unwrap();
    let conn = aqueduct::connect(broker.url.as_str()).await.unwrap();

    // Through an anonymous relay, routed by the properties' `to`: valid
    // properties, then a body that is not valid AMQP (a str8 of bad UTF-8).
    let mut relayed = BytesMut::new();
    Properties {
        to: Some("lazy-relayed".into()),
        ..Default::default()
    }
    .encode(&mut relayed);
    relayed.put_slice(&[0x00, 0x53, 0x77, 0xa1, 0x02, 0xff, 0xfe]);
    let relayed = relayed.freeze();
    let relay = conn.open_anonymous_sender().await.unwrap();
    let outcome = tokio::time::timeout(T, relay.send_encoded(relayed.clone()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(outcome, Outcome::Accepted, "the broker took it undecoded");

    // Through a link with an address: not even the properties are read.
    let direct = conn.open_sender("lazy-direct").await.unwrap();
    let outcome = tokio::time::timeout(T, direct.send_encoded(malformed()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(outcome, Outcome::Accepted, "the broker took it undecoded");

    for (queue, payload) in [("lazy-relayed", relayed), ("lazy-direct", malformed())] {
        let mut receiver = conn.open_receiver(queue).await.unwrap();
        let d = next(&mut receiver).await;
        assert_eq!(d.payload(), &payload, "forwarded byte for byte");
        let e = d.message().unwrap_err();
        assert_eq!(e.condition(), Some("amqp:decode-error"), "{e}");
        d.reject("amqp:decode-error", e.to_string()).await.unwrap();
    }
}
