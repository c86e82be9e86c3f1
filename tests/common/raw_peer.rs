//! A raw AMQP peer over a TCP socket, for tests that play a broken, slow or
//! hostile peer: it reads protocol headers and frames with
//! [`FrameDecoder`] and writes whatever frames the test crafts with
//! [`encode_frame`]. It works as either end: a raw server our client
//! connects to ([`raw_listener`] + [`RawPeer::server_handshake`]) or a raw
//! client connecting to our listener.
#![allow(dead_code)]

use aqueduct::frame::codec::{encode_empty_frame, encode_frame, encode_sasl_frame};
use aqueduct::frame::{
    Attach, AttachTarget, Begin, Close, DeliveryState, Disposition, Flow, Frame, FrameDecoder,
    Open, Performative, ProtocolId, Role, SaslFrame, SaslMechanisms, SaslOutcome, Target,
};
use aqueduct::types::Encode;
use aqueduct::Message;
use bytes::{Bytes, BytesMut};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A generous bound on "promptly": failures must not hang.
pub(crate) const PROMPTLY: Duration = Duration::from_secs(5);

/// Runs `fut`, failing the test if it takes longer than `bound`.
pub(crate) async fn within<F: std::future::Future>(
    bound: Duration,
    what: &str,
    fut: F,
) -> F::Output {
    match tokio::time::timeout(bound, fut).await {
        Ok(r) => r,
        Err(_) => panic!("{what}: did not finish within {bound:?}"),
    }
}

/// Runs `fut`, failing the test if it takes longer than [`PROMPTLY`].
pub(crate) async fn promptly<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    within(PROMPTLY, what, fut).await
}

/// A TCP listener on a free loopback port and its `amqp://` URL.
pub(crate) async fn raw_listener() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("amqp://{}", l.local_addr().unwrap());
    (l, url)
}

/// One AMQP frame without its frame-type wrapper: channel, performative
/// and payload.
pub(crate) type Amqp = (u16, Performative, Bytes);

/// Encodes one AMQP frame.
pub(crate) fn frame(channel: u16, body: &impl Encode) -> BytesMut {
    let mut out = BytesMut::new();
    encode_frame(&mut out, channel, body, &[]);
    out
}

/// Encodes a transfer frame with a message payload.
pub(crate) fn transfer_frame(
    channel: u16,
    transfer: &aqueduct::frame::Transfer,
    message: &Message,
) -> BytesMut {
    let mut payload = BytesMut::new();
    message.encode(&mut payload);
    let mut out = BytesMut::new();
    encode_frame(&mut out, channel, transfer, &payload);
    out
}

/// Encodes an empty (heartbeat) frame.
pub(crate) fn empty_frame() -> BytesMut {
    let mut out = BytesMut::new();
    encode_empty_frame(&mut out);
    out
}

/// The answer to a peer's `begin` on `channel`.
pub(crate) fn begin_answer(channel: u16) -> Begin {
    Begin {
        remote_channel: Some(channel),
        next_outgoing_id: 0,
        incoming_window: 65536,
        outgoing_window: 65536,
        ..Default::default()
    }
}

/// The answer to a peer's `attach`: same name and handle, the other role,
/// its source and target mirrored.
pub(crate) fn attach_answer(a: &Attach) -> Attach {
    let target = match &a.target {
        Some(t) => t.clone(),
        None => AttachTarget::from(Target::default()),
    };
    let role = match a.role {
        Role::Sender => Role::Receiver,
        Role::Receiver => Role::Sender,
    };
    Attach {
        name: a.name.clone(),
        handle: a.handle,
        role,
        snd_settle_mode: a.snd_settle_mode,
        rcv_settle_mode: a.rcv_settle_mode,
        source: a.source.clone(),
        target: Some(target),
        initial_delivery_count: (role == Role::Sender).then_some(0),
        ..Default::default()
    }
}

/// A link flow granting `credit` on `handle` (delivery count 0).
pub(crate) fn credit_flow(handle: u32, credit: u32) -> Flow {
    Flow {
        next_incoming_id: Some(0),
        incoming_window: 65536,
        next_outgoing_id: 0,
        outgoing_window: 65536,
        handle: Some(handle),
        delivery_count: Some(0),
        link_credit: Some(credit),
        ..Default::default()
    }
}

/// One end of a raw connection.
pub(crate) struct RawPeer {
    pub(crate) stream: TcpStream,
    pub(crate) buf: BytesMut,
    pub(crate) decoder: FrameDecoder,
}

impl RawPeer {
    pub(crate) fn new(stream: TcpStream) -> Self {
        RawPeer {
            stream,
            buf: BytesMut::new(),
            decoder: FrameDecoder::default(),
        }
    }

    /// Accepts one connection on `l`.
    pub(crate) async fn accept(l: &TcpListener) -> Self {
        let (s, _) = l.accept().await.unwrap();
        RawPeer::new(s)
    }

    /// Reads more bytes; false at EOF (or on a reset).
    pub(crate) async fn fill(&mut self) -> bool {
        self.stream.read_buf(&mut self.buf).await.unwrap_or(0) > 0
    }

    /// Reads an 8-byte protocol header.
    pub(crate) async fn header(&mut self) -> [u8; 8] {
        while self.buf.len() < 8 {
            assert!(self.fill().await, "peer closed before its protocol header");
        }
        let h = self.buf.split_to(8);
        h[..].try_into().unwrap()
    }

    /// Reads the next frame (heartbeats included), or `None` at EOF.
    pub(crate) async fn frame(&mut self) -> Option<Frame> {
        loop {
            if let Some(f) = self.decoder.decode(&mut self.buf).expect("peer frame") {
                return Some(f);
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// Reads the next AMQP frame with a performative (heartbeats and SASL
    /// frames skipped), or `None` at EOF.
    pub(crate) async fn next(&mut self) -> Option<Amqp> {
        loop {
            match self.frame().await? {
                Frame::Amqp {
                    channel,
                    performative,
                    payload,
                } => return Some((channel, performative, payload)),
                _ => continue,
            }
        }
    }

    /// Reads the next performative, failing if the connection ends.
    pub(crate) async fn expect(&mut self, what: &str) -> Amqp {
        match self.next().await {
            Some(f) => f,
            None => panic!("connection ended while waiting for {what}"),
        }
    }

    pub(crate) async fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Writes one AMQP frame.
    pub(crate) async fn send(&mut self, channel: u16, body: &impl Encode) {
        let out = frame(channel, body);
        self.write(&out).await;
    }

    /// Plays the server's side of the handshake: SASL ANONYMOUS if the
    /// client starts with the SASL header, then AMQP open with `open`.
    /// Returns the client's open.
    pub(crate) async fn server_handshake_with(&mut self, open: Open) -> Open {
        let mut h = self.header().await;
        if h == ProtocolId::Sasl.header() {
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
            h = self.header().await;
        }
        assert_eq!(h, ProtocolId::Amqp.header());
        let theirs = match self.next().await {
            Some((_, Performative::Open(o), _)) => o,
            other => panic!("expected open, got {other:?}"),
        };
        let mut out = BytesMut::new();
        out.extend_from_slice(&ProtocolId::Amqp.header());
        encode_frame(&mut out, 0, &open, &[]);
        self.write(&out).await;
        *theirs
    }

    /// [`server_handshake_with`](Self::server_handshake_with) a plain open
    /// (container `raw-peer`, max frame size 64 KiB, no idle timeout).
    pub(crate) async fn server_handshake(&mut self) -> Open {
        self.server_handshake_with(default_open()).await
    }

    /// Answers `frame` if it is a begin, an attach (granting `credit` to a
    /// sender link when it is above 0) or a close. Returns whether it
    /// answered.
    pub(crate) async fn answer(&mut self, frame: &Amqp, credit: u32) -> bool {
        let (channel, performative, _) = frame;
        match performative {
            Performative::Begin(_) => {
                self.send(*channel, &begin_answer(*channel)).await;
                true
            }
            Performative::Attach(a) => {
                let mut out = self::frame(*channel, &attach_answer(a));
                if a.role == Role::Sender && credit > 0 {
                    out.extend_from_slice(&self::frame(*channel, &credit_flow(a.handle, credit)));
                }
                self.write(&out).await;
                true
            }
            Performative::Close(_) => {
                self.send(0, &Close { error: None }).await;
                true
            }
            _ => false,
        }
    }

    /// Serves the rest of the connection: answers begin, attach and close,
    /// and settles every transfer with `outcome` (or nothing when `None`).
    /// Returns the number of transfers received, at EOF.
    pub(crate) async fn serve_rest(&mut self, outcome: Option<DeliveryState>) -> usize {
        let mut n = 0;
        while let Some(f) = self.next().await {
            if let (ch, Performative::Transfer(t), _) = &f {
                n += 1;
                if let (Some(id), Some(state)) = (t.delivery_id, &outcome) {
                    let d = Disposition {
                        role: Role::Receiver,
                        first: id,
                        last: None,
                        settled: true,
                        state: Some(state.clone()),
                        batchable: false,
                    };
                    self.send(*ch, &d).await;
                }
            } else {
                self.answer(&f, 0).await;
            }
        }
        n
    }

    /// Answers begins and attaches until the peer's attach of a link has
    /// been answered; returns that attach and its channel.
    pub(crate) async fn serve_attach(&mut self, credit: u32) -> (u16, Attach) {
        loop {
            let f = self.expect("an attach").await;
            self.answer(&f, credit).await;
            if let (ch, Performative::Attach(a), _) = f {
                return (ch, *a);
            }
        }
    }
}

/// Runs a raw server on its own OS thread and runtime (so that it competes
/// with our client for CPU as a remote peer would, rather than sharing the
/// test's runtime). `serve` gets the listener; the returned channel yields
/// its result.
pub(crate) fn raw_server_thread<F, Fut, T>(serve: F) -> (String, tokio::sync::oneshot::Receiver<T>)
where
    F: FnOnce(TcpListener) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T>,
    T: Send + 'static,
{
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let url = format!("amqp://{}", l.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = TcpListener::from_std(l).unwrap();
            let _ = tx.send(serve(l).await);
        });
    });
    (url, rx)
}

/// The open a raw server sends.
pub(crate) fn default_open() -> Open {
    Open {
        container_id: "raw-peer".into(),
        max_frame_size: 65536,
        ..Default::default()
    }
}
