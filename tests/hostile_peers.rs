//! Hostile, broken and slow peers (issue 8, "robust core"): raw-socket
//! peers speaking AMQP (see `common::raw_peer`) and our own listener, each
//! doing what such a peer does and asserting what a user of this crate sees:
//! the error kind and condition, the outcome of a send, the frames the peer
//! receives, message counts, CPU time.
//!
//! Every test here failed on the engine before issue 8 (see
//! notes/hostile.md for what each showed).

mod common;

use aqueduct::frame::{
    Attach, Begin, Close, DeliveryState, Detach, Disposition, End, Flow, Open, Performative,
    ProtocolId, Role, Transfer,
};
use aqueduct::{
    ConnectOptions, DeliveryMode, ErrorKind, IncomingEndpoint, ListenOptions, Message, Outcome,
    ReceiverOptions, SenderOptions,
};
use bytes::{Bytes, BytesMut};
use common::raw_peer::{
    attach_answer, default_open, empty_frame, frame, promptly, raw_listener, raw_server_thread,
    transfer_frame, within, Amqp, RawPeer, PROMPTLY,
};
use futures::StreamExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Connect options for a raw server: no SASL, plain AMQP.
/// SASL off, and reconnect off: these tests check what one connection
/// does with a hostile peer (a raw peer serves one connection only).
fn raw_opts(url: &str) -> ConnectOptions {
    ConnectOptions::new()
        .url(url)
        .sasl_enabled(false)
        .reconnect(aqueduct::Reconnect::disabled())
}

/// A disposition from the receiving end settling `id` with `state`.
fn receiver_disposition(id: u32, settled: bool, state: Option<DeliveryState>) -> Disposition {
    Disposition {
        role: Role::Receiver,
        first: id,
        last: None,
        settled,
        state,
        batchable: false,
    }
}

/// The first transfer of an unsettled one-frame delivery `id` on `handle`.
fn transfer(handle: u32, id: u32, settled: bool) -> Transfer {
    Transfer {
        handle,
        delivery_id: Some(id),
        delivery_tag: Some(Bytes::from(id.to_be_bytes().to_vec())),
        message_format: Some(0),
        settled: Some(settled),
        ..Default::default()
    }
}

/// Whether a disposition covers delivery id `id`.
fn covers(d: &Disposition, id: u32) -> bool {
    let last = d.last.unwrap_or(d.first);
    d.first <= id && id <= last
}

/// This thread's CPU time (user + system), from /proc/thread-self/stat.
fn thread_cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("/proc/thread-self/stat");
    // Fields after the command name (which is in parentheses and may hold
    // spaces): state is field 3, utime 14 and stime 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    // USER_HZ is 100 on Linux (sysconf(_SC_CLK_TCK)).
    Duration::from_millis(ticks * 10)
}

/// This process's resident set in bytes, from /proc/self/statm.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

// 2. Frame order on our listener.

/// A client that writes its header, open and begin in one write gets our
/// open first (spec 2.4.1), even when the application accepts the
/// connection late.
#[tokio::test]
async fn listener_sends_open_before_begin() {
    let mut listener = aqueduct::listen(ListenOptions::new("amqp://127.0.0.1:0"))
        .await
        .unwrap();
    let addr = listener.local_addr();
    let server = tokio::spawn(async move {
        let incoming = listener.next().await.expect("an incoming connection");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let conn = incoming.accept().unwrap();
        // Keep the connection until the test ends.
        while conn.next_incoming().await.is_some() {}
    });
    let mut peer = RawPeer::new(TcpStream::connect(addr).await.unwrap());
    let mut out = BytesMut::from(&ProtocolId::Amqp.header()[..]);
    out.extend_from_slice(&frame(0, &default_open()));
    out.extend_from_slice(&frame(
        0,
        &Begin {
            next_outgoing_id: 0,
            incoming_window: 100,
            outgoing_window: 100,
            ..Default::default()
        },
    ));
    peer.write(&out).await;
    assert_eq!(
        promptly("header", peer.header()).await,
        ProtocolId::Amqp.header()
    );
    let first = promptly("first frame", peer.expect("open")).await;
    assert!(
        matches!(first.1, Performative::Open(_)),
        "the first frame must be open, got {:?}",
        first.1
    );
    let second = promptly("second frame", peer.expect("begin")).await;
    assert!(
        matches!(second.1, Performative::Begin(_)),
        "then begin, got {:?}",
        second.1
    );
    server.abort();
}

// 3. Credit 0xFFFFFFFF.

/// A peer granting 0xFFFFFFFF credit ("unlimited") gets our messages.
#[tokio::test]
async fn credit_u32_max_is_credit() {
    let (l, url) = raw_listener().await;
    let server = tokio::spawn(async move {
        let mut peer = RawPeer::accept(&l).await;
        peer.server_handshake().await;
        peer.serve_attach(u32::MAX).await;
        peer.serve_rest(Some(DeliveryState::Accepted)).await
    });
    let conn = promptly("connect", aqueduct::connect(raw_opts(&url)))
        .await
        .unwrap();
    let sender = promptly("attach", conn.open_sender("q")).await.unwrap();
    for i in 0..10 {
        let outcome = promptly("send with credit 0xFFFFFFFF", sender.send(format!("m{i}")))
            .await
            .unwrap();
        assert_eq!(outcome, Outcome::Accepted);
    }
    promptly("close", conn.close()).await.unwrap();
    assert_eq!(promptly("server", server).await.unwrap(), 10);
}

// 4. A peer that stops reading.

/// Presettled sends to a peer that stops reading block once the output is
/// past a high-water mark: they complete when their bytes were handed to the
/// socket, not when encoded into an unbounded buffer.
#[tokio::test]
async fn presettled_sends_block_when_peer_stops_reading() {
    const SIZE: usize = 64 * 1024;
    const LIMIT: u64 = 64 * 1024 * 1024;
    let (l, url) = raw_listener().await;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut peer = RawPeer::accept(&l).await;
        peer.server_handshake().await;
        peer.serve_attach(1_000_000).await;
        // Never read again; keep the socket open until the test ends.
        let _ = stop_rx.await;
        drop(peer);
    });
    let conn = promptly("connect", aqueduct::connect(raw_opts(&url)))
        .await
        .unwrap();
    let sender = promptly(
        "attach",
        conn.open_sender_with(SenderOptions::new("q").delivery_mode(DeliveryMode::AtMostOnce)),
    )
    .await
    .unwrap();
    let rss0 = rss();
    let completed = Arc::new(AtomicU64::new(0));
    let sends = {
        let completed = completed.clone();
        tokio::spawn(async move {
            // Pipelined, 1024 sends at a time; twice the bound in all, so
            // that the loop ends if nothing blocks.
            futures::stream::iter(0..2 * LIMIT / SIZE as u64)
                .map(|_| sender.send(vec![0x5au8; SIZE]))
                .buffer_unordered(1024)
                .for_each(|outcome| {
                    assert_eq!(outcome.unwrap(), Outcome::Presettled);
                    completed.fetch_add(1, Ordering::SeqCst);
                    async {}
                })
                .await;
        })
    };
    until_sends_block(&completed, &sends).await;
    let n = completed.load(Ordering::SeqCst);
    println!(
        "peer stopped reading: {n} presettled sends of 64 KiB completed ({} MiB), then blocked; \
         resident set {} MiB before, {} MiB after (whole test process)",
        n * SIZE as u64 / (1024 * 1024),
        rss0 >> 20,
        rss() >> 20
    );
    assert!(
        n * (SIZE as u64) < LIMIT,
        "{n} sends of 64 KiB completed to a peer that reads nothing"
    );
    assert!(!sends.is_finished(), "a send stays pending");
    sends.abort();
    let _ = stop_tx.send(());
}

/// The environment variable that makes a test run its measured part (in a
/// child process of its own, so that its resident set is its own).
const CHILD: &str = "AQUEDUCT_HOSTILE_CHILD";

/// Runs `test` of this binary in a child process (with [`CHILD`] set to
/// its name) and fails if the child fails; returns the child's output.
async fn run_in_child(test: &str) -> String {
    let exe = std::env::current_exe().unwrap();
    let out = tokio::process::Command::new(exe)
        .args([test, "--exact", "--include-ignored", "--nocapture"])
        .env(CHILD, test)
        .output();
    let out = within(Duration::from_secs(120), "the child test", out)
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(out.status.success(), "the child test failed:\n{text}");
    text
}

/// The memory side of a peer that stops reading, measured in a process of
/// its own: 1024 presettled sends of 64 KiB pipelined (their bodies share
/// one buffer, so the test itself holds 64 KiB) to a peer that reads
/// nothing. The resident set grows by less than 32 MiB: pending output is
/// held near its high-water mark, not 1024 messages encoded at once.
#[tokio::test]
async fn presettled_backlog_memory_is_bounded() {
    const TEST: &str = "presettled_backlog_memory_is_bounded";
    if std::env::var(CHILD).as_deref() != Ok(TEST) {
        run_in_child(TEST).await;
        return;
    }
    const SIZE: usize = 64 * 1024;
    let (l, url) = raw_listener().await;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut peer = RawPeer::accept(&l).await;
        peer.server_handshake().await;
        peer.serve_attach(1_000_000).await;
        let _ = stop_rx.await;
        drop(peer);
    });
    let conn = promptly("connect", aqueduct::connect(raw_opts(&url)))
        .await
        .unwrap();
    let sender = promptly(
        "attach",
        conn.open_sender_with(SenderOptions::new("q").delivery_mode(DeliveryMode::AtMostOnce)),
    )
    .await
    .unwrap();
    let body = Bytes::from(vec![0x5au8; SIZE]);
    let rss0 = rss();
    let completed = Arc::new(AtomicU64::new(0));
    let sends = {
        let completed = completed.clone();
        tokio::spawn(async move {
            futures::stream::iter(0..2048)
                .map(|_| sender.send(Message::from(body.clone())))
                .buffer_unordered(1024)
                .for_each(|outcome| {
                    assert_eq!(outcome.unwrap(), Outcome::Presettled);
                    completed.fetch_add(1, Ordering::SeqCst);
                    async {}
                })
                .await;
        })
    };
    until_sends_block(&completed, &sends).await;
    let grown = rss().saturating_sub(rss0);
    println!(
        "peer stopped reading: {} presettled sends completed; resident set grew by {} MiB",
        completed.load(Ordering::SeqCst),
        grown >> 20
    );
    assert!(
        grown < 32 << 20,
        "the resident set grew by {} MiB for a peer that reads nothing",
        grown >> 20
    );
    sends.abort();
    let _ = stop_tx.send(());
}

// 5. Unsettled outcomes.

/// A terminal outcome with `settled = false` resolves the send, and we then
/// settle the delivery: the peer gets our settled disposition.
#[tokio::test]
async fn unsettled_outcome_is_settled_by_sender() {
    let (l, url) = raw_listener().await;
    let server = tokio::spawn(async move {
        let mut peer = RawPeer::accept(&l).await;
        peer.server_handshake().await;
        let (ch, _) = peer.serve_attach(10).await;
        let id = loop {
            if let (_, Performative::Transfer(t), _) = peer.expect("a transfer").await {
                break t.delivery_id.unwrap();
            }
        };
        peer.send(
            ch,
            &receiver_disposition(id, false, Some(DeliveryState::Accepted)),
        )
        .await;
        // Our sender settles it.
        loop {
            match peer.next().await {
                Some((_, Performative::Disposition(d), _)) if covers(&d, id) => {
                    tokio::spawn(async move { peer.serve_rest(None).await });
                    return d;
                }
                Some(_) => continue,
                None => panic!("the connection ended before the sender settled {id}"),
            }
        }
    });
    let conn = promptly("connect", aqueduct::connect(raw_opts(&url)))
        .await
        .unwrap();
    let sender = promptly("attach", conn.open_sender("q")).await.unwrap();
    let outcome = promptly("send", sender.send("unsettled outcome"))
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::Accepted);
    let d = promptly("the sender's settling disposition", server)
        .await
        .unwrap();
    assert_eq!(d.role, Role::Sender, "{d:?}");
    assert!(d.settled, "{d:?}");
    conn.close().await.unwrap();
}

/// `rcv-settle-mode second`: our receiver sends its outcome unsettled, and
/// `accept()` resolves once the sender settled.
#[tokio::test]
async fn settle_second_accept_waits_for_sender() {
    let (l, url) = raw_listener().await;
    let (settle_tx, settle_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let mut peer = RawPeer::accept(&l).await;
        peer.server_handshake().await;
        let (ch, a) = peer.serve_attach(0).await;
        assert_eq!(a.role, Role::Receiver);
        // Wait for credit, then deliver one message unsettled.
        loop {
            if let (_, Performative::Flow(f), _) = peer.expect("credit").await {
                if f.link_credit.unwrap_or(0) > 0 {
                    break;
                }
            }
        }
        let t = transfer(a.handle, 0, false);
        peer.write(&transfer_frame(ch, &t, &Message::from("second")))
            .await;
        let d = loop {
            if let (_, Performative::Disposition(d), _) = peer.expect("the outcome").await {
                break d;
            }
        };
        // The application decides when the sender settles.
        let _ = settle_rx.await;
        let settle = Disposition {
            role: Role::Sender,
            first: 0,
            last: None,
            settled: true,
            state: Some(DeliveryState::Accepted),
            batchable: false,
        };
        peer.send(ch, &settle).await;
        peer.serve_rest(None).await;
        d
    });
    let conn = promptly("connect", aqueduct::connect(raw_opts(&url)))
        .await
        .unwrap();
    let mut rx = promptly(
        "attach",
        conn.open_receiver_with(ReceiverOptions::new("q").settle_second().auto_accept(false)),
    )
    .await
    .unwrap();
    let delivery = promptly("receive", rx.next()).await.unwrap().unwrap();
    assert_eq!(delivery.message().unwrap().body().as_str(), Some("second"));
    let mut accept = tokio::spawn(async move { delivery.accept().await });
    // Not before the sender settled.
    assert!(
        tokio::time::timeout(Duration::from_millis(500), &mut accept)
            .await
            .is_err(),
        "accept() resolved before the sender settled"
    );
    settle_tx.send(()).unwrap();
    promptly("accept after the sender settled", accept)
        .await
        .unwrap()
        .expect("accept");
    conn.close().await.unwrap();
    let d = promptly("server", server).await.unwrap();
    assert_eq!(d.role, Role::Receiver, "{d:?}");
    assert!(
        !d.settled,
        "mode second: the outcome goes out unsettled: {d:?}"
    );
    assert_eq!(d.state, Some(DeliveryState::Accepted), "{d:?}");
}

// 6. Peer-opened links nobody reads.

/// A peer that attaches 10,000 links on a client connection whose
/// application never calls `next_incoming`: links past a bound are refused
/// (a detach with an error), and the connection stays usable.
#[tokio::test]
async fn unread_peer_links_are_refused_past_a_bound() {
    const LINKS: u32 = 10_000;
    let (l, url) = raw_listener().await;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<(u32, u32)>();
    tokio::spawn(async move {
        let mut peer = RawPeer::accept(&l).await;
        peer.server_handshake().await;
        // Our client's own sender: credit, accept every transfer.
        let (ch, _) = peer.serve_attach(100).await;
        // Begin a session of our own.
        peer.send(
            1,
            &Begin {
                next_outgoing_id: 0,
                incoming_window: 65536,
                outgoing_window: 65536,
                ..Default::default()
            },
        )
        .await;
        let handle_max = loop {
            match peer.expect("the answer to our begin").await {
                (_, Performative::Begin(b), _) if b.remote_channel == Some(1) => {
                    break b.handle_max
                }
                _ => {}
            }
        };
        // At most this many of our handles in use at once (within the
        // client's handle-max: we reuse the handles of refused links).
        let in_use_max = (handle_max as usize + 1).min(512);
        let mut free: Vec<u32> = (0..in_use_max as u32).rev().collect();
        let (mut sent, mut refused, mut answered) = (0u32, 0u32, 0u32);
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut out = BytesMut::new();
        while Instant::now() < deadline {
            // Attach as many links as free handles allow.
            while sent < LINKS {
                let Some(h) = free.pop() else { break };
                let a = Attach {
                    name: format!("flood-{sent}"),
                    handle: h,
                    role: Role::Sender,
                    initial_delivery_count: Some(0),
                    source: Some(aqueduct::frame::Source::new("flood")),
                    target: Some(aqueduct::frame::Target::new("flood").into()),
                    ..Default::default()
                };
                out.extend_from_slice(&frame(1, &a));
                sent += 1;
            }
            if !out.is_empty() {
                peer.write(&out).await;
                out.clear();
            }
            let Ok(f) = tokio::time::timeout(Duration::from_secs(2), peer.next()).await else {
                if free.is_empty() || sent == LINKS {
                    break; // quiet: all answered, or stuck with no handle back
                }
                continue;
            };
            let Some(f) = f else { break };
            match f {
                (c, Performative::Detach(d), _) if c != ch => {
                    if d.error.is_some() {
                        refused += 1;
                    }
                    peer.send(
                        1,
                        &Detach {
                            handle: d.handle,
                            closed: true,
                            error: None,
                        },
                    )
                    .await;
                    free.push(d.handle);
                }
                (c, Performative::Attach(_), _) if c != ch => answered += 1,
                (_, Performative::Transfer(t), _) => {
                    if let Some(id) = t.delivery_id {
                        peer.send(
                            ch,
                            &receiver_disposition(id, true, Some(DeliveryState::Accepted)),
                        )
                        .await;
                    }
                }
                _ => {}
            }
        }
        println!("{sent} links attached, {answered} attach answers, {refused} refused");
        let _ = done_tx.send((sent, refused));
        // Go on serving the client's sender.
        while let Some(f) = peer.next().await {
            if let (_, Performative::Transfer(t), _) = f {
                if let Some(id) = t.delivery_id {
                    peer.send(
                        ch,
                        &receiver_disposition(id, true, Some(DeliveryState::Accepted)),
                    )
                    .await;
                }
            }
        }
    });
    let conn = promptly("connect", aqueduct::connect(raw_opts(&url)))
        .await
        .unwrap();
    let sender = promptly("attach", conn.open_sender("q")).await.unwrap();
    let (sent, refused) = within(Duration::from_secs(90), "the link flood", done_rx)
        .await
        .unwrap();
    assert!(
        refused >= 1,
        "no peer-opened link was refused ({sent} attached, none accepted by the application)"
    );
    assert_eq!(
        sent, LINKS,
        "the peer could not attach all its links: no handles came back"
    );
    println!(
        "{refused} of {LINKS} peer-opened links refused, {} pending",
        LINKS - refused
    );
    assert_eq!(
        promptly("send after the flood", sender.send("still works"))
            .await
            .unwrap(),
        Outcome::Accepted
    );
    assert!(conn.error().is_none(), "{:?}", conn.error());
}

// 7. Heartbeat busy loop.

/// While our writes are blocked, a due heartbeat must not spin the driver:
/// this test's runtime (one thread: the test and the connection's driver)
/// uses less than 20% of a core. (A spinning driver measured 53-100% on a
/// loaded 2-core machine, where it competes for the core; an idle one uses
/// next to nothing, so 20% leaves room for a loaded machine.)
#[tokio::test]
async fn blocked_write_with_heartbeat_does_not_spin() {
    let (l, url) = raw_listener().await;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut peer = RawPeer::accept(&l).await;
        peer.server_handshake_with(Open {
            idle_time_out: Some(1000),
            ..default_open()
        })
        .await;
        peer.serve_attach(1_000_000).await;
        // Stop reading; keep the socket open.
        let _ = stop_rx.await;
        drop(peer);
    });
    let conn = promptly("connect", aqueduct::connect(raw_opts(&url)))
        .await
        .unwrap();
    let sender = promptly(
        "attach",
        conn.open_sender_with(SenderOptions::new("q").delivery_mode(DeliveryMode::AtMostOnce)),
    )
    .await
    .unwrap();
    // Fill the socket: 32 MiB the peer never reads.
    for _ in 0..512 {
        let s = sender.send(vec![0u8; 64 * 1024]);
        tokio::spawn(s);
    }
    // Wait until the bytes written stop growing for 1 s (the socket is full).
    let t0 = Instant::now();
    let mut last = (conn.statistics().bytes_out, Instant::now());
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let b = conn.statistics().bytes_out;
        if b != last.0 {
            last = (b, Instant::now());
        } else if last.1.elapsed() >= Duration::from_secs(1) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the socket never filled"
        );
    }
    // Heartbeats are due every 500 ms from now on, and can't be written.
    let cpu0 = thread_cpu_time();
    let wall0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cpu = thread_cpu_time() - cpu0;
    let wall = wall0.elapsed();
    let share = cpu.as_secs_f64() / wall.as_secs_f64();
    println!(
        "blocked write + heartbeat: {:.0}% of a core ({cpu:?} CPU over {wall:?})",
        share * 100.0
    );
    assert!(
        share < 0.2,
        "the driver used {:.0}% of a core while blocked",
        share * 100.0
    );
    let _ = stop_tx.send(());
}

// 8. Accepting a link the peer already detached.

/// The peer attaches and at once detaches; the application accepts the link
/// later: the receiver ends with a LinkDetached error, and the peer's
/// session stays usable.
#[tokio::test]
async fn accepting_a_link_the_peer_detached() {
    let mut listener = aqueduct::listen(ListenOptions::new("amqp://127.0.0.1:0"))
        .await
        .unwrap();
    let addr = listener.local_addr();
    let (sent_tx, sent_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let conn = listener.next().await.unwrap().accept().unwrap();
        let _ = sent_rx.await;
        // Let the detach reach the engine before the application answers.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut first = None;
        while let Some(ep) = conn.next_incoming().await {
            if let IncomingEndpoint::Link(link) = ep {
                let rx = link
                    .accept_receiver(None, ReceiverOptions::default())
                    .unwrap();
                if first.is_none() {
                    first = Some(rx);
                    break;
                }
            }
        }
        let mut rx = first.unwrap();
        let end = promptly("the detached receiver's stream", rx.next()).await;
        // A second link: accept it too, so that the peer gets an answer.
        let conn2 = conn.clone();
        tokio::spawn(async move {
            let mut receivers = Vec::new();
            while let Some(ep) = conn2.next_incoming().await {
                if let IncomingEndpoint::Link(link) = ep {
                    receivers.push(link.accept_receiver(None, ReceiverOptions::default()));
                }
            }
        });
        end.map(|r| r.map(|_| ()))
    });
    let mut peer = RawPeer::new(TcpStream::connect(addr).await.unwrap());
    let mut out = BytesMut::from(&ProtocolId::Amqp.header()[..]);
    out.extend_from_slice(&frame(0, &default_open()));
    out.extend_from_slice(&frame(
        0,
        &Begin {
            next_outgoing_id: 0,
            incoming_window: 100,
            outgoing_window: 100,
            ..Default::default()
        },
    ));
    let attach = |name: &str, handle: u32| Attach {
        name: name.into(),
        handle,
        role: Role::Sender,
        initial_delivery_count: Some(0),
        source: Some(aqueduct::frame::Source::new("src")),
        target: Some(aqueduct::frame::Target::new("q").into()),
        ..Default::default()
    };
    out.extend_from_slice(&frame(0, &attach("gone", 0)));
    out.extend_from_slice(&frame(
        0,
        &Detach {
            handle: 0,
            closed: true,
            error: None,
        },
    ));
    peer.write(&out).await;
    sent_tx.send(()).unwrap();
    assert_eq!(
        promptly("header", peer.header()).await,
        ProtocolId::Amqp.header()
    );
    let end = promptly("server", server).await.unwrap();
    match end {
        Some(Err(e)) => assert_eq!(e.kind(), &ErrorKind::LinkDetached, "{e}"),
        other => panic!("expected an Err of kind LinkDetached, got {other:?}"),
    }
    // The peer's session is still usable: a new link gets an answer, and no
    // end comes.
    peer.send(0, &attach("second", 1)).await;
    let answered = promptly("an answer to the second attach", async {
        loop {
            match peer.expect("an attach answer").await {
                (_, Performative::Attach(a), _) if a.name == "second" => return a,
                (_, Performative::End(e), _) => panic!("our session was ended: {e:?}"),
                (_, Performative::Close(c), _) => panic!("our connection was closed: {c:?}"),
                _ => {}
            }
        }
    })
    .await;
    assert_eq!(answered.role, Role::Receiver);
}

// 9. Dropping every handle while a send waits.

/// A send waits for credit that never comes; the task is aborted and every
/// handle dropped: the connection closes.
#[tokio::test]
async fn dropping_every_handle_closes_the_connection() {
    let (l, url) = raw_listener().await;
    let server = tokio::spawn(async move {
        let mut peer = RawPeer::accept(&l).await;
        peer.server_handshake().await;
        peer.serve_attach(0).await;
        peer
    });
    let conn = promptly("connect", aqueduct::connect(raw_opts(&url)))
        .await
        .unwrap();
    let sender = promptly("attach", conn.open_sender("q")).await.unwrap();
    let mut peer = promptly("server", server).await.unwrap();
    let task = tokio::spawn(sender.send("never sent"));
    tokio::task::yield_now().await;
    task.abort();
    drop(sender);
    drop(conn);
    let saw = within(Duration::from_secs(5), "close or EOF", async {
        loop {
            match peer.next().await {
                None => return "EOF",
                Some((_, Performative::Close(_), _)) => return "close",
                Some(_) => {}
            }
        }
    })
    .await;
    println!("after dropping every handle the peer saw {saw}");
}

// 10. Inbound flood.

/// A peer flooding heartbeats and session flows does not starve commands:
/// a send resolves and `close()` completes.
#[tokio::test]
async fn inbound_flood_does_not_starve_commands() {
    // The flood comes from another thread, as from a remote peer.
    let (url, _server) = raw_server_thread(|l| async move {
        let mut peer = RawPeer::accept(&l).await;
        peer.server_handshake().await;
        let (ch, _) = peer.serve_attach(100).await;
        let RawPeer {
            stream,
            mut buf,
            mut decoder,
        } = peer;
        let (mut rd, mut wr) = stream.into_split();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<BytesMut>();
        let writer = tokio::spawn(async move {
            let mut flood = BytesMut::new();
            let session_flow = Flow {
                next_incoming_id: Some(0),
                incoming_window: 65536,
                next_outgoing_id: 0,
                outgoing_window: 65536,
                ..Default::default()
            };
            // About 1.4 MB per write: the kernel copies it far faster than
            // we can decode it, so our socket is always readable.
            for _ in 0..50_000 {
                flood.extend_from_slice(&empty_frame());
                flood.extend_from_slice(&frame(ch, &session_flow));
            }
            let mut flooding = true;
            loop {
                match rx.try_recv() {
                    Ok(b) if b.is_empty() => flooding = false,
                    Ok(b) => {
                        if wr.write_all(&b).await.is_err() {
                            return;
                        }
                    }
                    Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => return,
                    Err(tokio::sync::mpsc::error::TryRecvError::Empty) if !flooding => {
                        match rx.recv().await {
                            Some(b) => {
                                if wr.write_all(&b).await.is_err() {
                                    return;
                                }
                            }
                            None => return,
                        }
                    }
                    Err(_) => {}
                }
                if flooding && wr.write_all(&flood).await.is_err() {
                    return;
                }
            }
        });
        use tokio::io::AsyncReadExt;
        loop {
            let f = loop {
                if let Some(f) = decoder.decode(&mut buf).unwrap() {
                    break Some(f);
                }
                if rd.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                    break None;
                }
            };
            let Some(aqueduct::frame::Frame::Amqp { performative, .. }) = f else {
                if f.is_none() {
                    break;
                }
                continue;
            };
            match performative {
                Performative::Transfer(t) => {
                    if let Some(id) = t.delivery_id {
                        let _ = tx.send(frame(
                            ch,
                            &receiver_disposition(id, true, Some(DeliveryState::Accepted)),
                        ));
                    }
                }
                Performative::Close(_) => {
                    let _ = tx.send(BytesMut::new()); // stop flooding
                    let _ = tx.send(frame(0, &Close { error: None }));
                }
                _ => {}
            }
        }
        drop(tx);
        let _ = writer.await;
    });
    // Our close timeout is long: the bound on close() below is the test's.
    let opts = raw_opts(&url).close_timeout(Duration::from_secs(60));
    let conn = promptly("connect", aqueduct::connect(opts)).await.unwrap();
    let sender = promptly("attach", conn.open_sender("q")).await.unwrap();
    let outcome = within(
        Duration::from_secs(5),
        "send under a flood",
        sender.send("x"),
    )
    .await
    .unwrap();
    assert_eq!(outcome, Outcome::Accepted);
    within(Duration::from_secs(10), "close under a flood", conn.close())
        .await
        .unwrap();
}

// 11. Drain with a peer that never answers.

/// `Receiver::drain()` against a sender that never answers the drain times
/// out (bound: the attach timeout; the test allows 10 s).
#[tokio::test]
async fn drain_times_out() {
    let (l, url) = raw_listener().await;
    tokio::spawn(async move {
        let mut peer = RawPeer::accept(&l).await;
        peer.server_handshake().await;
        peer.serve_attach(0).await;
        while peer.next().await.is_some() {}
    });
    let opts = raw_opts(&url).attach_timeout(Duration::from_secs(2));
    let conn = promptly("connect", aqueduct::connect(opts)).await.unwrap();
    let mut rx = promptly("attach", conn.open_receiver("q")).await.unwrap();
    let err = within(Duration::from_secs(10), "drain", rx.drain())
        .await
        .expect_err("a drain nobody answers must fail");
    assert_eq!(err.kind(), &ErrorKind::Timeout, "{err}");
}

// 12. A transfer on our sender's handle.

/// A peer sending a transfer on our sender's link breaks the protocol; the
/// unsettled sends fail and give their messages back.
#[tokio::test]
async fn transfer_on_sender_handle_gives_messages_back() {
    let (l, url) = raw_listener().await;
    tokio::spawn(async move {
        let mut peer = RawPeer::accept(&l).await;
        peer.server_handshake().await;
        let (ch, a) = peer.serve_attach(10).await;
        let mut n = 0;
        while n < 3 {
            if let (_, Performative::Transfer(_), _) = peer.expect("3 transfers").await {
                n += 1;
            }
        }
        let t = transfer(a.handle, 0, true);
        peer.write(&transfer_frame(ch, &t, &Message::from("wrong way")))
            .await;
        while peer.next().await.is_some() {}
    });
    let conn = promptly("connect", aqueduct::connect(raw_opts(&url)))
        .await
        .unwrap();
    let sender = promptly("attach", conn.open_sender("q")).await.unwrap();
    let sends: Vec<_> = (0..3).map(|i| sender.send(format!("m{i}"))).collect();
    let results = promptly("sends", futures::future::join_all(sends)).await;
    for (i, r) in results.into_iter().enumerate() {
        let err = r.expect_err("the send must fail");
        println!("send {i}: {err}");
        let m = err.message().expect("the message comes back in the error");
        assert_eq!(m.body().as_str(), Some(format!("m{i}").as_str()));
    }
}

// 13. accept() after the link is gone.

/// Accepting a delivery whose link the peer detached says it was not
/// delivered.
#[tokio::test]
async fn accept_after_detach_is_an_error() {
    let (l, url) = raw_listener().await;
    tokio::spawn(async move {
        let mut peer = RawPeer::accept(&l).await;
        peer.server_handshake().await;
        let (ch, a) = peer.serve_attach(0).await;
        loop {
            if let (_, Performative::Flow(f), _) = peer.expect("credit").await {
                if f.link_credit.unwrap_or(0) > 0 {
                    break;
                }
            }
        }
        let mut out = transfer_frame(ch, &transfer(a.handle, 0, false), &Message::from("m"));
        out.extend_from_slice(&frame(
            ch,
            &Detach {
                handle: a.handle,
                closed: true,
                error: None,
            },
        ));
        peer.write(&out).await;
        while peer.next().await.is_some() {}
    });
    let conn = promptly("connect", aqueduct::connect(raw_opts(&url)))
        .await
        .unwrap();
    let mut rx = promptly(
        "attach",
        conn.open_receiver_with(ReceiverOptions::new("q").auto_accept(false)),
    )
    .await
    .unwrap();
    let delivery = promptly("receive", rx.next()).await.unwrap().unwrap();
    // The link is gone once the stream says so.
    let after = promptly("end of the stream", rx.next()).await;
    assert!(!matches!(after, Some(Ok(_))), "{after:?}");
    let r = promptly("accept", delivery.accept()).await;
    assert!(r.is_err(), "accept() on a detached link returned Ok");
    println!("accept after detach: {}", r.unwrap_err());
}

// 14. Dropping a Receiver releases buffered deliveries.

/// A receiver dropped with 10 deliveries buffered: the sender sees them
/// released.
#[tokio::test]
async fn dropped_receiver_releases_buffered_deliveries() {
    let mut listener = aqueduct::listen(ListenOptions::new("amqp://127.0.0.1:0"))
        .await
        .unwrap();
    let url = format!("amqp://{}", listener.local_addr());
    let server = tokio::spawn(async move {
        let conn = listener.next().await.unwrap().accept().unwrap();
        let sender = loop {
            match conn.next_incoming().await.expect("a link") {
                IncomingEndpoint::Link(l) => break l.accept_sender(None).unwrap(),
                _ => continue,
            }
        };
        let sends: Vec<_> = (0..10).map(|i| sender.send(format!("m{i}"))).collect();
        let outcomes = futures::future::join_all(sends).await;
        drop(conn);
        outcomes
    });
    let conn = promptly("connect", aqueduct::connect(url.as_str()))
        .await
        .unwrap();
    let rx = promptly(
        "attach",
        conn.open_receiver_with(ReceiverOptions::new("q").credit_window(10)),
    )
    .await
    .unwrap();
    promptly("10 deliveries buffered", async {
        while conn.statistics().messages_in < 10 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    drop(rx);
    let outcomes = promptly("the sender's outcomes", server).await.unwrap();
    for (i, o) in outcomes.into_iter().enumerate() {
        assert_eq!(o.unwrap(), Outcome::Released, "message {i}");
    }
}

// 15. Detach without error; settled without state.

/// A remote detach without an error ends the receiver's stream with a
/// LinkDetached error, not a clean end.
#[tokio::test]
async fn remote_detach_without_error_is_an_error() {
    let (l, url) = raw_listener().await;
    tokio::spawn(async move {
        let mut peer = RawPeer::accept(&l).await;
        peer.server_handshake().await;
        let (ch, a) = peer.serve_attach(0).await;
        peer.send(
            ch,
            &Detach {
                handle: a.handle,
                closed: true,
                error: None,
            },
        )
        .await;
        while peer.next().await.is_some() {}
    });
    let conn = promptly("connect", aqueduct::connect(raw_opts(&url)))
        .await
        .unwrap();
    let mut rx = promptly("attach", conn.open_receiver("q")).await.unwrap();
    match promptly("end of the stream", rx.next()).await {
        Some(Err(e)) => assert_eq!(e.kind(), &ErrorKind::LinkDetached, "{e}"),
        Some(Ok(d)) => panic!("unexpected delivery {:?}", d.message()),
        None => panic!("the stream ended as None: indistinguishable from a normal close"),
    }
}

/// A remote end without an error ends the receiver's stream with an error
/// (the session ended), not a clean end.
#[tokio::test]
async fn remote_end_without_error_is_an_error() {
    let (l, url) = raw_listener().await;
    tokio::spawn(async move {
        let mut peer = RawPeer::accept(&l).await;
        peer.server_handshake().await;
        let (ch, _) = peer.serve_attach(0).await;
        peer.send(ch, &End { error: None }).await;
        peer.serve_rest(None).await;
    });
    let conn = promptly("connect", aqueduct::connect(raw_opts(&url)))
        .await
        .unwrap();
    let mut rx = promptly("attach", conn.open_receiver("q")).await.unwrap();
    match promptly("end of the stream", rx.next()).await {
        Some(Err(e)) => assert!(
            matches!(e.kind(), ErrorKind::SessionEnded | ErrorKind::LinkDetached),
            "{e}"
        ),
        Some(Ok(d)) => panic!("unexpected delivery {:?}", d.message()),
        None => panic!("the stream ended as None: indistinguishable from a normal close"),
    }
}

/// A settled disposition without a state is not "released" (the message
/// may have been processed) and not "accepted".
#[tokio::test]
async fn settled_without_state_is_not_released() {
    let (l, url) = raw_listener().await;
    tokio::spawn(async move {
        let mut peer = RawPeer::accept(&l).await;
        peer.server_handshake().await;
        let (ch, _) = peer.serve_attach(10).await;
        while let Some(f) = peer.next().await {
            if let (_, Performative::Transfer(t), _) = f {
                if let Some(id) = t.delivery_id {
                    peer.send(ch, &receiver_disposition(id, true, None)).await;
                }
            }
        }
    });
    let conn = promptly("connect", aqueduct::connect(raw_opts(&url)))
        .await
        .unwrap();
    let sender = promptly("attach", conn.open_sender("q")).await.unwrap();
    match promptly("send", sender.send("m")).await {
        Ok(o) => {
            assert_ne!(o, Outcome::Released);
            assert_ne!(o, Outcome::Accepted);
        }
        Err(e) => println!("settled without state: {e}"),
    }
}

// 16. Attach timed out.

/// An attach answered after the attach timeout: `open_receiver` fails with
/// Timeout, and the late link is detached, with no credit granted.
#[tokio::test]
async fn late_attach_is_detached() {
    let (l, url) = raw_listener().await;
    let server = tokio::spawn(async move {
        let mut peer = RawPeer::accept(&l).await;
        peer.server_handshake().await;
        let (ch, a) = loop {
            let f = peer.expect("attach").await;
            match f {
                (ch, Performative::Attach(a), _) => break (ch, a),
                f => {
                    peer.answer(&f, 0).await;
                }
            }
        };
        tokio::time::sleep(Duration::from_secs(2)).await;
        peer.send(ch, &attach_answer(&a)).await;
        // We expect a detach for that link (credit sent with the attach,
        // before the timeout, is fine)...
        let detached = tokio::time::timeout(PROMPTLY, async {
            loop {
                match peer.next().await {
                    Some((_, Performative::Detach(d), _)) if d.handle == a.handle => {
                        return true;
                    }
                    Some(_) => {}
                    None => return false,
                }
            }
        })
        .await;
        // ...and no flow for it after that (we answer its detach).
        peer.send(
            ch,
            &Detach {
                handle: a.handle,
                closed: true,
                error: None,
            },
        )
        .await;
        let mut after = Vec::new();
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            while let Some(f) = peer.next().await {
                after.push(f);
            }
        })
        .await;
        (detached == Ok(true), after, a.handle)
    });
    let opts = raw_opts(&url).attach_timeout(Duration::from_secs(1));
    let conn = promptly("connect", aqueduct::connect(opts)).await.unwrap();
    let err = promptly("attach", conn.open_receiver("q"))
        .await
        .expect_err("the attach must time out");
    assert_eq!(err.kind(), &ErrorKind::Timeout, "{err}");
    let (detached, after, handle): (bool, Vec<Amqp>, u32) =
        within(Duration::from_secs(10), "server", server)
            .await
            .unwrap();
    assert!(detached, "no detach for the timed-out link");
    let flows: Vec<_> = after
        .iter()
        .filter(|(_, p, _)| matches!(p, Performative::Flow(f) if f.handle == Some(handle)))
        .collect();
    assert!(
        flows.is_empty(),
        "flow on a timed-out link after its detach: {flows:?}"
    );
}

// 17. The idle timer counts whole frames.

/// A peer trickling one frame a byte at a time is idle: our client with an
/// idle timeout of 1 s closes with amqp:resource-limit-exceeded.
#[tokio::test]
async fn trickled_frame_is_idle() {
    let (l, url) = raw_listener().await;
    let server = tokio::spawn(async move {
        let mut peer = RawPeer::accept(&l).await;
        peer.server_handshake().await;
        let RawPeer {
            stream,
            mut buf,
            mut decoder,
        } = peer;
        let (mut rd, mut wr) = stream.into_split();
        // One 200-byte frame: an empty frame with a 192-byte extended header.
        let mut f = vec![0, 0, 0, 200, 50, 0, 0, 0];
        f.resize(200, 0);
        tokio::spawn(async move {
            for b in f {
                if wr.write_all(&[b]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            std::future::pending::<()>().await;
        });
        use tokio::io::AsyncReadExt;
        loop {
            if let Some(f) = decoder.decode(&mut buf).unwrap() {
                if let aqueduct::frame::Frame::Amqp {
                    performative: Performative::Close(c),
                    ..
                } = f
                {
                    return Some(c);
                }
                continue;
            }
            if rd.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                return None;
            }
        }
    });
    let opts = raw_opts(&url).idle_timeout(Duration::from_secs(1));
    let conn = promptly("connect", aqueduct::connect(opts)).await.unwrap();
    let close = within(Duration::from_secs(6), "our close", server)
        .await
        .unwrap()
        .expect("a close frame");
    let cond = close.error.map(|e| e.condition.as_str().to_string());
    assert_eq!(cond.as_deref(), Some("amqp:resource-limit-exceeded"));
    promptly("the end of the connection", async {
        while conn.next_incoming().await.is_some() {}
    })
    .await;
    let err = conn.error().expect("the connection error");
    assert_eq!(
        err.condition(),
        Some("amqp:resource-limit-exceeded"),
        "{err}"
    );
}

// 18. Frames after close.

/// A peer that sends close and then more frames: we report the peer's close
/// error, not a framing error about what followed.
#[tokio::test]
async fn frames_after_close_are_ignored() {
    let (l, url) = raw_listener().await;
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut peer = RawPeer::accept(&l).await;
        peer.server_handshake().await;
        let _ = go_rx.await;
        let mut out = frame(
            0,
            &Close {
                error: Some(aqueduct::frame::AmqpError::new(
                    aqueduct::frame::condition::CONNECTION_FORCED,
                    "going away",
                )),
            },
        );
        out.extend_from_slice(&frame(
            0,
            &Begin {
                next_outgoing_id: 0,
                incoming_window: 10,
                outgoing_window: 10,
                ..Default::default()
            },
        ));
        out.extend_from_slice(&frame(0, &End { error: None }));
        peer.write(&out).await;
        while peer.next().await.is_some() {}
    });
    let conn = promptly("connect", aqueduct::connect(raw_opts(&url)))
        .await
        .unwrap();
    go_tx.send(()).unwrap();
    promptly("the end of the connection", async {
        while conn.next_incoming().await.is_some() {}
    })
    .await;
    let err = conn.error().expect("the connection error");
    println!("frames after close: {err}");
    assert_eq!(err.kind(), &ErrorKind::ConnectionClosed, "{err}");
    assert_eq!(err.condition(), Some("amqp:connection:forced"), "{err}");
    assert_eq!(err.description(), Some("going away"), "{err}");
}

/// Sanity: the accepted-outcome helpers work against a well-behaved raw peer.
#[tokio::test]
async fn raw_peer_accepts_sends() {
    let (l, url) = raw_listener().await;
    let server = tokio::spawn(async move {
        let mut peer = RawPeer::accept(&l).await;
        peer.server_handshake().await;
        peer.serve_attach(10).await;
        peer.serve_rest(Some(DeliveryState::Accepted)).await
    });
    let conn = promptly("connect", aqueduct::connect(raw_opts(&url)))
        .await
        .unwrap();
    let sender = promptly("attach", conn.open_sender("q")).await.unwrap();
    for i in 0..3 {
        let o = promptly("send", sender.send(format!("m{i}")))
            .await
            .unwrap();
        assert_eq!(o, Outcome::Accepted);
    }
    promptly("close", conn.close()).await.unwrap();
    assert_eq!(promptly("server", server).await.unwrap(), 3);
}

/// Waits until no send has completed for 3 s (sending blocks), failing if
/// that takes more than 60 s or the sending task ends (nothing blocked).
async fn until_sends_block(completed: &AtomicU64, sends: &tokio::task::JoinHandle<()>) {
    let t0 = Instant::now();
    let mut last = (completed.load(Ordering::SeqCst), Instant::now());
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let n = completed.load(Ordering::SeqCst);
        if n != last.0 {
            last = (n, Instant::now());
        } else if last.1.elapsed() >= Duration::from_secs(3) {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60) && !sends.is_finished(),
            "sends never blocked: {n} sends of 64 KiB completed to a peer that reads nothing"
        );
    }
}
