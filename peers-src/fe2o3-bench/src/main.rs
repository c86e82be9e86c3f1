//! `fe2o3-bench`: fe2o3-amqp 0.18's side of `scripts/bench`, on tokio `current_thread`.
//!
//! - `send HOST PORT ADDR COUNT SIZE`: connect (SASL ANONYMOUS, as every client here), attach a sender to ADDR,
//!   send COUNT messages (message-id N, a SIZE-byte data body), pipelined with
//!   `send_batchable` (at most 4096 without an outcome), at-least-once; every outcome must
//!   be accepted. Prints `result elapsed_s=T rss_peak_kb=K` (T from the first send to the
//!   last outcome).
//! - `recv HOST PORT ADDR COUNT CREDIT`: connect and receive COUNT messages from ADDR.
//! - `recv-listen HOST PORT ADDR COUNT CREDIT`: listen (SASL ANONYMOUS or none; prints
//!   `listening on PORT`), receive COUNT messages on the first link a client attaches as
//!   a sender. Both receivers use `CreditMode::Auto(CREDIT)` (the listening one through
//!   `set_credit`, as its acceptor has no credit option), accept each message, print
//!   `result received=COUNT`, close.
//! - `idle-listen HOST PORT`: an acceptor that accepts connections and sessions and holds
//!   them (for the memory per idle connection); prints `listening on PORT`.
//!
//! Accepted TCP streams get TCP_NODELAY (as Proton's and aqueduct's do), else each
//! handshake step of the acceptor waits out a delayed ACK (about 40 ms).

use fe2o3_amqp::acceptor::{
    ConnectionAcceptor, LinkAcceptor, LinkEndpoint, ListenerConnectionHandle,
    SaslAnonymousMechanism, SessionAcceptor,
};
use fe2o3_amqp::link::receiver::CreditMode;
use fe2o3_amqp::sasl_profile::SaslProfile;
use fe2o3_amqp::types::messaging::{Body, Message, Properties};
use fe2o3_amqp::types::primitives::{Binary, Value};
use fe2o3_amqp::{Connection, Receiver, Sender, Session};
use futures::stream::{FuturesUnordered, StreamExt};
use std::io::Write;
use std::time::Instant;
use tokio::net::TcpListener;

fn die(what: &str, e: impl std::fmt::Debug) -> ! {
    eprintln!("fe2o3-bench: {what}: {e:?}");
    std::process::exit(1)
}

fn rss_peak_kb() -> i64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(-1)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize| -> u64 {
        a.get(i)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| usage())
    };
    match a.first().map(String::as_str) {
        Some("send") if a.len() == 6 => send(&a[1], &a[2], &a[3], num(4), num(5) as usize).await,
        Some("recv") if a.len() == 6 => recv(&a[1], &a[2], &a[3], num(4), num(5) as u32).await,
        Some("recv-listen") if a.len() == 6 => {
            recv_listen(&a[1], &a[2], num(4), num(5) as u32).await
        }
        Some("idle-listen") if a.len() == 3 => idle_listen(&a[1], &a[2]).await,
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: fe2o3-bench send HOST PORT ADDR COUNT SIZE | recv[-listen] HOST PORT ADDR COUNT CREDIT | idle-listen HOST PORT"
    );
    std::process::exit(2)
}

async fn send(host: &str, port: &str, addr: &str, count: u64, size: usize) {
    let url = format!("amqp://{host}:{port}");
    let mut conn = Connection::builder()
        .container_id("fe2o3-bench-sender")
        .sasl_profile(SaslProfile::Anonymous)
        .open(&url[..])
        .await
        .unwrap_or_else(|e| die("connect", e));
    let mut session = Session::begin(&mut conn)
        .await
        .unwrap_or_else(|e| die("begin", e));
    let mut sender = Sender::attach(&mut session, "fe2o3-bench-sender", addr)
        .await
        .unwrap_or_else(|e| die("attach", e));
    let body = Binary::from(vec![b'x'; size]);
    let start = Instant::now();
    let mut pending = FuturesUnordered::new();
    let check = |r: Result<fe2o3_amqp::types::messaging::Outcome, _>| match r {
        Ok(o) if o.is_accepted() => {}
        other => die("outcome", other),
    };
    for i in 1..=count {
        let message = Message::builder()
            .properties(Properties::builder().message_id(i).build())
            .data(body.clone())
            .build();
        let fut = sender
            .send_batchable(message)
            .await
            .unwrap_or_else(|e| die("send", e));
        pending.push(fut);
        while pending.len() >= 4096 {
            check(pending.next().await.expect("a pending outcome"));
        }
    }
    while let Some(r) = pending.next().await {
        check(r);
    }
    let secs = start.elapsed().as_secs_f64();
    println!("result elapsed_s={secs:.6} rss_peak_kb={}", rss_peak_kb());
    let _ = sender.close().await;
    let _ = session.end().await;
    let _ = conn.close().await;
}

async fn receive(receiver: &mut Receiver, count: u64) {
    for _ in 0..count {
        let d = receiver
            .recv::<Body<Value>>()
            .await
            .unwrap_or_else(|e| die("recv", e));
        receiver
            .accept(&d)
            .await
            .unwrap_or_else(|e| die("accept", e));
    }
    println!("result received={count}");
    std::io::stdout().flush().unwrap();
}

async fn recv(host: &str, port: &str, addr: &str, count: u64, credit: u32) {
    let url = format!("amqp://{host}:{port}");
    let mut conn = Connection::builder()
        .container_id("fe2o3-bench-receiver")
        .sasl_profile(SaslProfile::Anonymous)
        .open(&url[..])
        .await
        .unwrap_or_else(|e| die("connect", e));
    let mut session = Session::begin(&mut conn)
        .await
        .unwrap_or_else(|e| die("begin", e));
    let mut receiver = Receiver::builder()
        .name("fe2o3-bench-receiver")
        .source(addr)
        .credit_mode(CreditMode::Auto(credit))
        .attach(&mut session)
        .await
        .unwrap_or_else(|e| die("attach", e));
    receive(&mut receiver, count).await;
    let _ = receiver.close().await;
    let _ = session.end().await;
    let _ = conn.close().await;
}

async fn listen(host: &str, port: &str) -> TcpListener {
    let tcp = TcpListener::bind((host, port.parse::<u16>().unwrap_or_else(|_| usage())))
        .await
        .unwrap_or_else(|e| die("bind", e));
    println!("listening on {}", tcp.local_addr().unwrap().port());
    std::io::stdout().flush().unwrap();
    tcp
}

fn acceptor() -> ConnectionAcceptor<(), SaslAnonymousMechanism> {
    ConnectionAcceptor::builder()
        .container_id("fe2o3-bench")
        .sasl_acceptor(SaslAnonymousMechanism::new())
        .build()
}

async fn recv_listen(host: &str, port: &str, count: u64, credit: u32) {
    let tcp = listen(host, port).await;
    let (stream, _) = tcp.accept().await.unwrap_or_else(|e| die("accept", e));
    let _ = stream.set_nodelay(true);
    let mut conn = acceptor()
        .accept(stream)
        .await
        .unwrap_or_else(|e| die("handshake", e));
    let mut session = SessionAcceptor::default()
        .accept(&mut conn)
        .await
        .unwrap_or_else(|e| die("session", e));
    let mut receiver = match LinkAcceptor::new().accept(&mut session).await {
        Ok(LinkEndpoint::Receiver(r)) => r,
        Ok(LinkEndpoint::Sender(_)) => die("link", "the client attached a receiver"),
        Err(e) => die("link", e),
    };
    receiver
        .set_credit(credit)
        .await
        .unwrap_or_else(|e| die("credit", e));
    receive(&mut receiver, count).await;
    let _ = receiver.close().await;
    let _ = session.end().await;
    let _ = conn.close().await;
}

async fn idle_listen(host: &str, port: &str) {
    let tcp = listen(host, port).await;
    let acceptor = std::rc::Rc::new(acceptor());
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async move {
            while let Ok((stream, _)) = tcp.accept().await {
                let acceptor = acceptor.clone();
                tokio::task::spawn_local(async move {
                    let _ = stream.set_nodelay(true);
                    if let Ok(conn) = acceptor.accept(stream).await {
                        hold(conn).await;
                    }
                });
            }
        })
        .await;
}

async fn hold(mut conn: ListenerConnectionHandle) {
    let sessions = SessionAcceptor::default();
    let mut held = Vec::new();
    while let Ok(session) = sessions.accept(&mut conn).await {
        held.push(session);
    }
    let _ = conn.on_close().await;
}
