//! Misbehaving and limited peers, with no outside process: raw TCP servers
//! written in the test (crafting frames with `aqueduct::frame`) and our own
//! listener with small limits. Every test checks what a user sees: the
//! error kind, its condition and description, or the send's outcome.

use aqueduct::frame::codec::{encode_frame, encode_sasl_frame};
use aqueduct::frame::{
    Attach, AttachTarget, Begin, Flow, Frame, FrameDecoder, Open, Performative, ProtocolId, Role,
    SaslFrame, SaslMechanisms, SaslOutcome, Target,
};
use aqueduct::{
    ConnectOptions, ErrorKind, IncomingEndpoint, ListenOptions, Message, Outcome, ReceiverOptions,
    Reconnect,
};
use bytes::BytesMut;
use futures::StreamExt;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A generous bound on "promptly": failures must not hang.
const PROMPTLY: Duration = Duration::from_secs(5);

/// Runs `fut`, failing the test if it takes longer than [`PROMPTLY`].
async fn promptly<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(PROMPTLY, fut).await {
        Ok(r) => r,
        Err(_) => panic!("{what}: did not finish within {PROMPTLY:?}"),
    }
}

/// Options for `url` with reconnect off: these tests check what a single
/// connection's failure looks like.
fn once(url: &str) -> ConnectOptions {
    ConnectOptions::new()
        .url(url)
        .reconnect(Reconnect::disabled())
}

async fn raw_listener() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("amqp://{}", l.local_addr().unwrap());
    (l, url)
}

/// The server end of a raw connection: reads protocol headers and frames
/// the client sends, writes whatever bytes the test crafts.
struct RawPeer {
    stream: TcpStream,
    buf: BytesMut,
    decoder: FrameDecoder,
}

impl RawPeer {
    fn new(stream: TcpStream) -> Self {
        RawPeer {
            stream,
            buf: BytesMut::new(),
            decoder: FrameDecoder::default(),
        }
    }

    async fn fill(&mut self) -> bool {
        self.stream.read_buf(&mut self.buf).await.unwrap_or(0) > 0
    }

    /// Reads an 8-byte protocol header.
    async fn header(&mut self) -> [u8; 8] {
        while self.buf.len() < 8 {
            assert!(
                self.fill().await,
                "client closed before its protocol header"
            );
        }
        let h = self.buf.split_to(8);
        h[..].try_into().unwrap()
    }

    /// Reads the next frame, or `None` once the client has closed.
    async fn frame(&mut self) -> Option<Frame> {
        loop {
            if let Some(f) = self.decoder.decode(&mut self.buf).expect("client frame") {
                return Some(f);
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    async fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Plays the server's side of SASL (ANONYMOUS accepted) and AMQP open.
    async fn handshake(&mut self) {
        assert_eq!(self.header().await, ProtocolId::Sasl.header());
        let mut out = BytesMut::new();
        out.extend_from_slice(&ProtocolId::Sasl.header());
        encode_sasl_frame(
            &mut out,
            &SaslFrame::Mechanisms(SaslMechanisms {
                sasl_server_mechanisms: vec!["ANONYMOUS".into()],
            }),
        );
        self.write(&out).await;
        match self.frame().await {
            Some(Frame::Sasl(SaslFrame::Init(_))) => {}
            other => panic!("expected sasl-init, got {other:?}"),
        }
        let mut out = BytesMut::new();
        encode_sasl_frame(
            &mut out,
            &SaslFrame::Outcome(SaslOutcome {
                code: 0,
                additional_data: None,
            }),
        );
        self.write(&out).await;
        assert_eq!(self.header().await, ProtocolId::Amqp.header());
        match self.frame().await {
            Some(Frame::Amqp {
                performative: Performative::Open(_),
                ..
            }) => {}
            other => panic!("expected open, got {other:?}"),
        }
        let mut out = BytesMut::new();
        out.extend_from_slice(&ProtocolId::Amqp.header());
        let open = Open {
            container_id: "raw-peer".into(),
            max_frame_size: 65536,
            ..Default::default()
        };
        encode_frame(&mut out, 0, &open, &[]);
        self.write(&out).await;
    }

    /// Answers begin and attach (as the receiving end) until a transfer
    /// arrives, granting `credit` to each sender link.
    async fn serve_until_transfer(&mut self, credit: u32) -> Option<Frame> {
        loop {
            let frame = self.frame().await?;
            let Frame::Amqp {
                channel,
                performative,
                ..
            } = &frame
            else {
                continue;
            };
            let mut out = BytesMut::new();
            match performative {
                Performative::Begin(_) => {
                    let begin = Begin {
                        remote_channel: Some(*channel),
                        next_outgoing_id: 0,
                        incoming_window: 65536,
                        outgoing_window: 65536,
                        ..Default::default()
                    };
                    encode_frame(&mut out, *channel, &begin, &[]);
                }
                Performative::Attach(a) => {
                    let target = match &a.target {
                        Some(t) => t.clone(),
                        None => AttachTarget::from(Target::default()),
                    };
                    let answer = Attach {
                        name: a.name.clone(),
                        handle: a.handle,
                        role: Role::Receiver,
                        source: a.source.clone(),
                        target: Some(target),
                        ..Default::default()
                    };
                    encode_frame(&mut out, *channel, &answer, &[]);
                    if credit > 0 {
                        let flow = Flow {
                            next_incoming_id: Some(0),
                            incoming_window: 65536,
                            next_outgoing_id: 0,
                            outgoing_window: 65536,
                            handle: Some(a.handle),
                            delivery_count: Some(0),
                            link_credit: Some(credit),
                            ..Default::default()
                        };
                        encode_frame(&mut out, *channel, &flow, &[]);
                    }
                }
                Performative::Transfer(_) => return Some(frame),
                _ => {}
            }
            if !out.is_empty() {
                self.write(&out).await;
            }
        }
    }
}

#[tokio::test]
async fn closed_port_is_io_refused() {
    // Bind then drop: nothing listens on this port any more.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let t0 = Instant::now();
    let err = promptly(
        "connect to a closed port",
        aqueduct::connect(once(&format!("amqp://127.0.0.1:{port}"))),
    )
    .await
    .expect_err("connect to a closed port must fail");
    assert_eq!(err.kind(), &ErrorKind::Io, "{err}");
    let desc = err.description().expect("a description").to_lowercase();
    assert!(
        desc.contains("refused"),
        "description should say refused: {desc}"
    );
    assert!(desc.contains(&port.to_string()), "names the port: {desc}");
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "refused connect must fail promptly, took {:?}",
        t0.elapsed()
    );
    assert!(err.is_retriable());
}

#[tokio::test]
async fn http_server_is_framing_error() {
    let (l, url) = raw_listener().await;
    let server = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            .await
            .unwrap();
        // Keep the socket open until the client goes away.
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink).await;
    });
    let err = promptly("connect to an HTTP server", aqueduct::connect(url.as_str()))
        .await
        .expect_err("an HTTP answer must fail the connect");
    println!("HTTP server: {err}");
    assert_eq!(err.kind(), &ErrorKind::Framing, "{err}");
    assert_eq!(err.condition(), Some("amqp:connection:framing-error"));
    let desc = err.description().expect("a description");
    assert!(desc.contains("protocol header"), "{desc}");
    promptly("server task", server).await.unwrap();
}

#[tokio::test]
async fn garbage_then_close_is_a_typed_error() {
    // A peer that writes a few bytes (shorter than a protocol header) and
    // hangs up: no panic, no hang, a typed error.
    let (l, url) = raw_listener().await;
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let _ = s.write_all(b"NOPE").await;
    });
    let err = promptly("connect to a garbage peer", aqueduct::connect(url.as_str()))
        .await
        .expect_err("must fail");
    println!("garbage then close: {err}");
    assert!(
        matches!(err.kind(), ErrorKind::Io | ErrorKind::Framing),
        "{err}"
    );
    assert!(err.description().is_some(), "{err}");
}

/// A peer that answers the AMQP header (SASL off) and then sends `frame`.
async fn malformed_frame_peer(frame: &'static [u8]) -> aqueduct::Error {
    let (l, url) = raw_listener().await;
    tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        let mut peer = RawPeer::new(s);
        assert_eq!(peer.header().await, ProtocolId::Amqp.header());
        let mut out = ProtocolId::Amqp.header().to_vec();
        out.extend_from_slice(frame);
        peer.write(&out).await;
        while peer.fill().await {}
    });
    let opts = ConnectOptions::new().url(url).sasl_enabled(false);
    promptly("connect to a malformed-frame peer", aqueduct::connect(opts))
        .await
        .expect_err("a malformed frame must fail the connect")
}

#[tokio::test]
async fn malformed_open_body_is_decode_error() {
    // A 16-byte frame: header (size 16, doff 2, type 0, channel 0), then the
    // open descriptor 0x00 0x53 0x10 followed by an invalid format code.
    const FRAME: &[u8] = &[
        0, 0, 0, 16, 2, 0, 0, 0, 0x00, 0x53, 0x10, 0xff, 0xff, 0xff, 0xff, 0xff,
    ];
    let err = malformed_frame_peer(FRAME).await;
    println!("malformed open: {err}");
    assert_eq!(err.condition(), Some("amqp:decode-error"), "{err}");
    assert_eq!(err.kind(), &ErrorKind::Decode, "{err}");
    assert!(err.description().is_some(), "{err}");
    assert!(!err.is_retriable(), "{err}");
}

#[tokio::test]
async fn bad_frame_header_is_framing_error() {
    // Data offset 1 is below the minimum of 2.
    const FRAME: &[u8] = &[0, 0, 0, 8, 1, 0, 0, 0];
    let err = malformed_frame_peer(FRAME).await;
    println!("bad frame header: {err}");
    assert_eq!(
        err.condition(),
        Some("amqp:connection:framing-error"),
        "{err}"
    );
    assert_eq!(err.kind(), &ErrorKind::Framing, "{err}");
}

#[tokio::test]
async fn unknown_performative_is_decode_error() {
    // A frame whose body is descriptor 0x99 (no performative) and an empty list.
    const FRAME: &[u8] = &[0, 0, 0, 12, 2, 0, 0, 0, 0x00, 0x53, 0x99, 0x45];
    let err = malformed_frame_peer(FRAME).await;
    println!("unknown performative: {err}");
    assert_eq!(err.condition(), Some("amqp:decode-error"), "{err}");
}

#[tokio::test]
async fn silent_peer_times_out_after_open_timeout() {
    let (l, url) = raw_listener().await;
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink).await; // never answers
    });
    let opts = ConnectOptions::new()
        .url(url)
        .open_timeout(Duration::from_millis(500));
    let t0 = Instant::now();
    let err = promptly("connect to a silent peer", aqueduct::connect(opts))
        .await
        .expect_err("a silent peer must time out");
    println!("silent peer: {err}");
    assert_eq!(err.kind(), &ErrorKind::Timeout, "{err}");
    assert!(
        t0.elapsed() >= Duration::from_millis(500),
        "must wait the whole open timeout"
    );
    let desc = err.description().expect("a description");
    assert!(desc.contains("open"), "{desc}");
    assert!(err.is_retriable());
}

#[tokio::test]
async fn raw_handshake_works() {
    // The raw peer's handshake is good enough for a connection and a link:
    // the tests below rely on it.
    let (l, url) = raw_listener().await;
    let server = tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        let mut peer = RawPeer::new(s);
        peer.handshake().await;
        peer.serve_until_transfer(1).await.is_some()
    });
    let conn = promptly("connect", aqueduct::connect(url.as_str()))
        .await
        .unwrap();
    assert_eq!(conn.remote_container_id(), "raw-peer");
    let sender = promptly("attach", conn.open_sender("q")).await.unwrap();
    // The peer never settles: just check the transfer arrived.
    tokio::spawn(sender.send(Message::from("hi")));
    assert!(promptly("server", server).await.unwrap());
}

/// The peer vanishes after the transfer arrived (the message is in flight,
/// unsettled): the send fails with a connection error.
#[tokio::test]
async fn peer_vanishes_with_send_in_flight() {
    let (l, url) = raw_listener().await;
    tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        let mut peer = RawPeer::new(s);
        peer.handshake().await;
        peer.serve_until_transfer(10).await;
        // Dropping the stream closes the socket without an AMQP close.
    });
    let conn = promptly("connect", aqueduct::connect(once(&url)))
        .await
        .unwrap();
    let sender = promptly("attach", conn.open_sender("q")).await.unwrap();
    let err = promptly("send", sender.send(Message::from("in flight")))
        .await
        .expect_err("the send must fail when the peer vanishes");
    println!("vanished, in flight: {err}");
    assert!(
        matches!(err.kind(), ErrorKind::Io | ErrorKind::ConnectionClosed),
        "{err}"
    );
    assert!(err.is_retriable(), "{err}");
    let m = err
        .into_message()
        .expect("the unsettled message must be given back");
    assert_eq!(m.body().as_str(), Some("in flight"));
}

/// The peer vanishes while the message waits for credit (queued, never
/// sent): the send fails and gives the message back.
#[tokio::test]
async fn peer_vanishes_with_send_queued() {
    let (l, url) = raw_listener().await;
    let (attached_tx, attached_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        let mut peer = RawPeer::new(s);
        peer.handshake().await;
        // Answer begin and attach, no credit.
        let _ =
            tokio::time::timeout(Duration::from_millis(300), peer.serve_until_transfer(0)).await;
        let _ = attached_rx.await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Vanish.
    });
    let conn = promptly("connect", aqueduct::connect(once(&url)))
        .await
        .unwrap();
    let sender = promptly("attach", conn.open_sender("q")).await.unwrap();
    let send = sender.send(Message::from("queued"));
    attached_tx.send(()).unwrap();
    let err = promptly("send", send)
        .await
        .expect_err("the send must fail when the peer vanishes");
    println!("vanished, queued: {err}");
    assert!(
        matches!(err.kind(), ErrorKind::Io | ErrorKind::ConnectionClosed),
        "{err}"
    );
    let m = err
        .into_message()
        .expect("the queued message must be given back");
    assert_eq!(m.body().as_str(), Some("queued"));
}

/// Our own listener as the peer: collects the bodies of everything sent to
/// it. Returns the URL and a channel of received messages.
async fn collecting_listener(
    opts: ListenOptions,
) -> (String, tokio::sync::mpsc::UnboundedReceiver<Message>) {
    let mut listener = aqueduct::listen(opts).await.unwrap();
    let url = format!("amqp://{}", listener.local_addr());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(incoming) = listener.next().await {
            let conn = incoming.accept().unwrap();
            let tx = tx.clone();
            tokio::spawn(async move {
                while let Some(endpoint) = conn.next_incoming().await {
                    let IncomingEndpoint::Link(link) = endpoint else {
                        continue;
                    };
                    let mut receiver = link
                        .accept_receiver(None, ReceiverOptions::default())
                        .unwrap();
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        while let Some(Ok(d)) = receiver.next().await {
                            let _ = tx.send(d.message().unwrap().clone());
                            d.accept().await.unwrap();
                        }
                    });
                }
            });
        }
    });
    (url, rx)
}

#[tokio::test]
async fn small_max_frame_size_splits_large_message() {
    let (url, mut rx) =
        collecting_listener(ListenOptions::new("amqp://127.0.0.1:0").max_frame_size(512)).await;
    let conn = promptly("connect", aqueduct::connect(url.as_str()))
        .await
        .unwrap();
    assert_eq!(conn.remote_open().max_frame_size, 512);
    let sender = promptly("attach", conn.open_sender("big")).await.unwrap();
    let body: Vec<u8> = (0..100 * 1024).map(|i| (i % 251) as u8).collect();
    let outcome = promptly("send 100 KiB", sender.send(Message::from(body.clone())))
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::Accepted);
    let got = promptly("receive", rx.recv()).await.unwrap();
    assert_eq!(got.body().as_bytes(), Some(&body[..]));
    // Many frames went out for one message.
    assert!(conn.statistics().bytes_out > 100 * 1024);
    conn.close().await.unwrap();
}

#[tokio::test]
async fn oversize_message_is_rejected_locally() {
    let (url, mut rx) =
        collecting_listener(ListenOptions::new("amqp://127.0.0.1:0").max_message_size(1000)).await;
    let conn = promptly("connect", aqueduct::connect(url.as_str()))
        .await
        .unwrap();
    let sender = promptly("attach", conn.open_sender("small")).await.unwrap();
    assert_eq!(sender.remote_attach().max_message_size, Some(1000));
    let outcome = promptly(
        "send 5000 bytes",
        sender.send(Message::from(vec![7u8; 5000])),
    )
    .await
    .unwrap();
    match &outcome {
        Outcome::Rejected(Some(e)) => {
            assert_eq!(e.condition.as_str(), "amqp:link:message-size-exceeded");
            let desc = e.description.as_deref().unwrap_or_default();
            assert!(desc.contains("1000"), "{desc}");
        }
        other => panic!("expected Rejected(message-size-exceeded), got {other:?}"),
    }
    let err = outcome.into_result().unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Rejected);
    assert_eq!(err.condition(), Some("amqp:link:message-size-exceeded"));
    assert!(!err.is_retriable());
    // The link still works for a message within the limit.
    let outcome = promptly("send 100 bytes", sender.send(Message::from(vec![1u8; 100])))
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::Accepted);
    let got = promptly("receive", rx.recv()).await.unwrap();
    assert_eq!(got.body().as_bytes(), Some(&[1u8; 100][..]));
    conn.close().await.unwrap();
}

/// A peer that ignores link credit: transfers beyond it are tolerated (and
/// counted) within the session's incoming window (RabbitMQ overshoots under
/// load), but the window reopens only as the application consumes, so a
/// flood that ignores the window too ends the session with
/// amqp:session:window-violation, and the application, which never reads,
/// holds at most the window (2048 messages).
#[tokio::test]
async fn peer_flooding_beyond_credit_and_window_is_stopped() {
    use aqueduct::frame::{Begin, End, Transfer};
    let mut listener = aqueduct::listen("amqp://127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().port();
    let server = tokio::spawn(async move {
        let conn = listener.accept().await.unwrap().accept().unwrap();
        loop {
            match conn.next_incoming().await {
                Some(IncomingEndpoint::Link(link)) => {
                    let opts = ReceiverOptions::new("q").credit_window(10);
                    // Never read: no credit is topped up.
                    return (conn, link.accept_receiver(None, opts).unwrap());
                }
                Some(_) => continue,
                None => panic!("connection ended"),
            }
        }
    });
    let mut raw = RawPeer::new(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
    let mut out = BytesMut::new();
    out.extend_from_slice(&ProtocolId::Amqp.header());
    let open = Open {
        container_id: "flooder".into(),
        ..Default::default()
    };
    encode_frame(&mut out, 0, &open, &[]);
    let begin = Begin {
        next_outgoing_id: 0,
        incoming_window: 65535,
        outgoing_window: 65535,
        ..Default::default()
    };
    encode_frame(&mut out, 0, &begin, &[]);
    let attach = Attach {
        name: "flood".into(),
        handle: 0,
        role: Role::Sender,
        target: Some(Target::new("q").into()),
        initial_delivery_count: Some(0),
        ..Default::default()
    };
    encode_frame(&mut out, 0, &attach, &[]);
    raw.write(&out).await;
    assert_eq!(raw.header().await, ProtocolId::Amqp.header());
    // Wait for the flow granting 10.
    promptly("the receiver's flow", async {
        loop {
            if let Some(Frame::Amqp {
                performative:
                    Performative::Flow(Flow {
                        handle: Some(_), ..
                    }),
                ..
            }) = raw.frame().await
            {
                break;
            }
        }
    })
    .await;
    let (conn, mut receiver) = server.await.unwrap();
    let mut payload = BytesMut::new();
    Message::from("flood").encode(&mut payload);
    let mut out = BytesMut::new();
    for i in 0..3000u32 {
        let t = Transfer {
            handle: 0,
            delivery_id: Some(i),
            delivery_tag: Some(bytes::Bytes::copy_from_slice(&i.to_be_bytes())),
            message_format: Some(0),
            settled: Some(true),
            ..Default::default()
        };
        encode_frame(&mut out, 0, &t, &payload);
    }
    raw.write(&out).await;
    let end: End = promptly("an end", async {
        loop {
            match raw.frame().await {
                Some(Frame::Amqp {
                    performative: Performative::End(e),
                    ..
                }) => break e,
                Some(_) => continue,
                None => panic!("the connection closed without an end"),
            }
        }
    })
    .await;
    let error = end.error.expect("an end with an error");
    assert_eq!(
        error.condition.as_str(),
        "amqp:session:window-violation",
        "{error:?}"
    );
    // What the application was handed is bounded by the window.
    let mut held = 0;
    while let Some(Ok(_)) = promptly("the buffered deliveries", receiver.next()).await {
        held += 1;
    }
    assert!((10..=2048).contains(&held), "{held} deliveries held");
    assert_eq!(conn.statistics().credit_overshoot, held as u64 - 10);
}

/// A connection holds at most `max_partial_bytes` of partly received
/// messages: a peer sending a larger multi-frame message gets the
/// connection closed with amqp:resource-limit-exceeded, and our sender sees
/// that condition (with its message back).
#[tokio::test]
async fn partial_messages_past_the_connection_budget_close_it() {
    let opts = ListenOptions::new("amqp://127.0.0.1:0")
        .max_frame_size(512)
        .max_partial_bytes(4096);
    let mut listener = aqueduct::listen(opts).await.unwrap();
    let url = format!("amqp://{}", listener.local_addr());
    tokio::spawn(async move {
        let conn = listener.accept().await.unwrap().accept().unwrap();
        while let Some(e) = conn.next_incoming().await {
            if let IncomingEndpoint::Link(l) = e {
                let _r = l.accept_receiver(None, ReceiverOptions::new("q")).unwrap();
                std::future::pending::<()>().await;
            }
        }
    });
    let conn = aqueduct::connect(once(&url)).await.unwrap();
    let sender = conn.open_sender("q").await.unwrap();
    let err = promptly("the send", sender.send(Message::from(vec![7u8; 8192])))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::ConnectionClosed, "{err}");
    assert_eq!(
        err.condition(),
        Some("amqp:resource-limit-exceeded"),
        "{err}"
    );
    assert!(err.message().is_some(), "the message comes back");
}

/// With reconnect on (the default), a closed port is retried until the
/// open timeout, then `connect` fails with the last attempt's error.
#[tokio::test]
async fn closed_port_with_reconnect_fails_after_the_open_timeout() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let opts = ConnectOptions::new()
        .url(format!("amqp://127.0.0.1:{port}"))
        .open_timeout(Duration::from_millis(800));
    let err = promptly(
        "connect to a closed port, retrying",
        aqueduct::connect(opts),
    )
    .await
    .expect_err("nothing listens");
    assert_eq!(err.kind(), &ErrorKind::Io, "{err}");
    assert!(err.to_string().contains("refused"), "{err}");
}

/// A peer that sends bytes no AMQP header begins with fails the connect
/// at once, reconnect on or not: another attempt cannot fix it.
#[tokio::test]
async fn garbage_is_not_retried() {
    let (l, url) = raw_listener().await;
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let _ = s.write_all(b"HELLO, WORLD\r\n").await;
                let mut sink = Vec::new();
                let _ = s.read_to_end(&mut sink).await;
            });
        }
    });
    let err = promptly("connect to a garbage peer", aqueduct::connect(url.as_str()))
        .await
        .expect_err("must fail");
    assert_eq!(err.kind(), &ErrorKind::Framing, "{err}");
    assert!(!err.is_retriable());
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
}
