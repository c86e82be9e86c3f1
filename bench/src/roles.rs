//! aqueduct's side of each workload, one role per process (started by the runner, or
//! by hand). Every role prints `result key=value ...` on success and exits 0; any error
//! is printed to stderr and exits 1. Listening roles print `listening on PORT` first.

use aqueduct::{transport::Address, Error, IncomingEndpoint, Message, ReceiverOptions};
use bytes::Bytes;
use futures::{SinkExt, StreamExt, TryStreamExt};
use std::io::Write;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::args::Args;

/// Peak resident memory of this process (VmHWM), KiB; -1 if unknown.
pub fn rss_peak_kb() -> i64 {
    proc_status_kb("self", "VmHWM:")
}

/// A `/proc/PID/status` field in KiB (VmRSS:, VmHWM:), -1 if unknown.
pub fn proc_status_kb(pid: &str, field: &str) -> i64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(-1)
}

fn listening(port: u16) {
    println!("listening on {port}");
    std::io::stdout().flush().ok();
}

fn receiver_options(args: &Args, address: Option<String>) -> ReceiverOptions {
    let mut o = match address {
        Some(a) => ReceiverOptions::new(a),
        None => ReceiverOptions::default(),
    };
    // No --credit: the library's default window.
    if let Some(c) = args.opt::<u32>("credit") {
        o = o.credit_window(c);
    }
    o
}

/// `send --url URL --count N --size S [--in-flight K] [--sink]`: pipelined at-least-once
/// sends of an S-byte data body; the clock runs from the first send to the last outcome.
/// Each send's future awaited (`buffer_unordered`), or with `--sink` the messages go
/// through the sender's `Sink` (`send_all`, then `close`, which waits for every outcome
/// and fails if one is not accepted).
pub async fn send(args: Args) -> Result<(), Error> {
    let url: String = args.req("url");
    let count: u64 = args.req("count");
    let size: usize = args.req("size");
    let in_flight: usize = args.opt("in-flight").unwrap_or(4096);
    let address = url.parse::<Address>()?.address.unwrap_or_default();
    let conn = aqueduct::connect(url.as_str()).await?;
    let sender = conn.open_sender(address).await?;
    let body = Bytes::from(vec![b'x'; size]);
    let start = Instant::now();
    if args.flag("sink") {
        let mut sink = sender.clone();
        let mut messages = futures::stream::iter(1..=count)
            .map(|i| Ok(Message::builder().id(i).body(body.clone()).build()));
        sink.send_all(&mut messages).await?;
        sink.close().await?;
        let secs = start.elapsed().as_secs_f64();
        println!("result elapsed_s={secs:.6} rss_peak_kb={}", rss_peak_kb());
        return conn.close().await;
    }
    futures::stream::iter(1..=count)
        .map(|i| sender.send(Message::builder().id(i).body(body.clone()).build()))
        .buffer_unordered(in_flight)
        .try_for_each(|outcome| async { outcome.into_result() })
        .await?;
    let secs = start.elapsed().as_secs_f64();
    println!("result elapsed_s={secs:.6} rss_peak_kb={}", rss_peak_kb());
    conn.close().await
}

async fn receive(receiver: &mut aqueduct::Receiver, count: u64) -> Result<(), Error> {
    let mut n = 0;
    while n < count {
        match receiver.next().await {
            Some(d) => drop(d?), // accepted as it drops
            None => break,
        }
        n += 1;
    }
    if n < count {
        return Err(Error::new(
            aqueduct::ErrorKind::Closed,
            format!("the link ended after {n} of {count} messages"),
        ));
    }
    println!("result received={n}");
    std::io::stdout().flush().ok();
    Ok(())
}

/// `recv-listen --listen HOST:PORT --count N [--credit C]`: listens, receives N messages
/// on the first link a client attaches as a sender, then closes the connection.
pub async fn recv_listen(args: Args) -> Result<(), Error> {
    let count: u64 = args.req("count");
    let mut listener = aqueduct::listen(args.req::<String>("listen")).await?;
    listening(listener.local_addr().port());
    let Some(incoming) = listener.accept().await else {
        return Ok(());
    };
    let conn = incoming.accept()?;
    while let Some(endpoint) = conn.next_incoming().await {
        if let IncomingEndpoint::Link(l) = endpoint {
            if l.is_sender() {
                let mut receiver = l.accept_receiver(None, receiver_options(&args, None))?;
                receive(&mut receiver, count).await?;
                return conn.close().await;
            }
        }
    }
    Err(Error::new(aqueduct::ErrorKind::Closed, "no sender link"))
}

/// `recv --url URL --count N [--credit C]`: connects and receives N messages.
pub async fn recv(args: Args) -> Result<(), Error> {
    let url: String = args.req("url");
    let count: u64 = args.req("count");
    let address = url.parse::<Address>()?.address.unwrap_or_default();
    let conn = aqueduct::connect(url.as_str()).await?;
    let mut receiver = conn
        .open_receiver_with(receiver_options(&args, Some(address)))
        .await?;
    receive(&mut receiver, count).await?;
    conn.close().await
}

/// `echo-listen --listen HOST:PORT`: every message received on the link the client
/// attaches as a sender goes back, as it is, on the link it attaches as a receiver.
pub async fn echo_listen(args: Args) -> Result<(), Error> {
    let mut listener = aqueduct::listen(args.req::<String>("listen")).await?;
    listening(listener.local_addr().port());
    let Some(incoming) = listener.accept().await else {
        return Ok(());
    };
    let conn = incoming.accept()?;
    let (mut rx, mut tx) = (None, None);
    while rx.is_none() || tx.is_none() {
        match conn.next_incoming().await {
            Some(IncomingEndpoint::Link(l)) if l.is_sender() => {
                rx = Some(l.accept_receiver(None, ReceiverOptions::default())?)
            }
            Some(IncomingEndpoint::Link(l)) => tx = Some(l.accept_sender(None)?),
            Some(_) => {}
            None => return Ok(()),
        }
    }
    let (mut rx, tx) = (rx.unwrap(), tx.unwrap());
    while let Some(Ok(d)) = rx.next().await {
        // Queued at the call; the outcome is not awaited (one message in flight).
        drop(tx.send_encoded(d.payload().clone()));
    }
    Ok(())
}

fn percentiles(mut lat: Vec<f64>) {
    lat.sort_by(|a, b| a.total_cmp(b));
    let n = lat.len();
    let at = |q: f64| lat[((n as f64 * q) as usize).min(n - 1)];
    let mean = lat.iter().sum::<f64>() / n as f64;
    println!(
        "result p50_us={:.1} p99_us={:.1} p999_us={:.1} mean_us={mean:.1}",
        at(0.5),
        at(0.99),
        at(0.999)
    );
}

/// `ping --url URL --count N --warmup W --size S`: W + N round trips to an echo peer
/// (sender and receiver on address "echo"), one message in flight: send, then wait for
/// both the echo and the send's outcome.
pub async fn ping(args: Args) -> Result<(), Error> {
    let url: String = args.req("url");
    let (count, warmup): (usize, usize) = (args.req("count"), args.req("warmup"));
    let body = Bytes::from(vec![b'x'; args.req::<usize>("size")]);
    let conn = aqueduct::connect(url.as_str()).await?;
    let tx = conn.open_sender("echo").await?;
    let mut rx = conn.open_receiver("echo").await?;
    let mut lat = Vec::with_capacity(count);
    for i in 0..warmup + count {
        let message = Message::builder().id(i as u64).body(body.clone()).build();
        let t = Instant::now();
        let (outcome, echo) = tokio::join!(tx.send(message), rx.next());
        outcome?.into_result()?;
        drop(echo.ok_or_else(|| Error::new(aqueduct::ErrorKind::Closed, "no echo"))??);
        if i >= warmup {
            lat.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    percentiles(lat);
    conn.close().await
}

/// `tcp-echo --listen HOST:PORT --size S`: the floor: echoes S-byte blocks on one TCP
/// connection.
pub async fn tcp_echo(args: Args) -> std::io::Result<()> {
    let l = tokio::net::TcpListener::bind(args.req::<String>("listen")).await?;
    listening(l.local_addr()?.port());
    let (mut s, _) = l.accept().await?;
    s.set_nodelay(true)?;
    let mut buf = vec![0; args.req("size")];
    while s.read_exact(&mut buf).await.is_ok() {
        s.write_all(&buf).await?;
    }
    Ok(())
}

/// `tcp-ping --addr HOST:PORT --count N --warmup W --size S`: W + N round trips of an
/// S-byte block over raw tokio TCP (nodelay).
pub async fn tcp_ping(args: Args) -> std::io::Result<()> {
    let mut s = tokio::net::TcpStream::connect(args.req::<String>("addr")).await?;
    s.set_nodelay(true)?;
    let (count, warmup): (usize, usize) = (args.req("count"), args.req("warmup"));
    let mut buf = vec![b'x'; args.req("size")];
    let mut lat = Vec::with_capacity(count);
    for i in 0..warmup + count {
        let t = Instant::now();
        s.write_all(&buf).await?;
        s.read_exact(&mut buf).await?;
        if i >= warmup {
            lat.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    percentiles(lat);
    Ok(())
}

/// `idle-listen --listen HOST:PORT`: accepts every connection and holds it and its
/// sessions (sessions are accepted automatically), for the memory per idle connection.
pub async fn idle_listen(args: Args) -> Result<(), Error> {
    let mut listener = aqueduct::listen(args.req::<String>("listen")).await?;
    listening(listener.local_addr().port());
    while let Some(incoming) = listener.accept().await {
        if let Ok(conn) = incoming.accept() {
            tokio::spawn(async move {
                let mut held = Vec::new();
                while let Some(endpoint) = conn.next_incoming().await {
                    held.push(endpoint);
                }
                drop(held);
            });
        }
    }
    Ok(())
}

/// `idle-connect --url URL --conns N [--sessions S]`: opens N connections, each with S
/// sessions (default 1), prints `ready`, and holds them until its standard input closes.
pub async fn idle_connect(args: Args) -> Result<(), Error> {
    let url: String = args.req("url");
    let n: usize = args.req("conns");
    let sessions: usize = args.opt("sessions").unwrap_or(1);
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let conn = aqueduct::connect(url.as_str()).await?;
        let mut s = Vec::new();
        for _ in 0..sessions {
            s.push(conn.open_session().await?);
        }
        held.push((conn, s));
    }
    println!("ready");
    std::io::stdout().flush().ok();
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
    drop(held);
    Ok(())
}
