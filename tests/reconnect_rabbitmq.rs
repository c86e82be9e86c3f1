//! Issue 10 against real RabbitMQ 3.10 nodes (AMQP 1.0 plugin), started by
//! `scripts/rabbitmq` for each test and stopped when the test ends, passing
//! or not (drop guards). A test FAILS if RabbitMQ cannot start (run
//! `scripts/install-peers`).
//!
//! - `restart_with_durable_queue`: one node; a sender streams numbered
//!   durable messages into a durable queue while a receiver on its own
//!   connection reads them; mid-stream the node's RabbitMQ application is
//!   stopped (`rabbitmqctl stop_app`) and started again (`start_app`). Both
//!   connections reconnect by themselves; every send resolves Accepted and
//!   every accepted number arrives.
//! - `cluster_failover`: two nodes joined into one cluster. The queue lives
//!   on node B (a classic queue lives on the node that declared it: the
//!   receiver, connected to B, declares it). The sender, given both URLs,
//!   connects to A and sends through it; A is stopped mid-stream; the
//!   sender fails over to B and goes on; every accepted number arrives.
//!
//! The queue is declared durable by the AMQP 1.0 plugin itself: an address
//! `/queue/NAME` declares queue NAME with `durable = true` when the link's
//! terminus (the sender's target, the receiver's source) has `durable` 1 or
//! 2, and `durable = false` when it is 0 (the default). Every link to the
//! queue must ask for the same durability: RabbitMQ refuses a mismatch by
//! ending the session with `amqp:precondition-failed` ("inequivalent arg
//! 'durable'"). The tests check `rabbitmqctl list_queues name durable`.
//!
//! Neither the fault nor the end of the stream is timed by a sleep: the
//! fault begins once the sender has had `BEFORE` messages accepted, the
//! node is restarted once both connections have reported the loss, and the
//! sender stops `AFTER` messages after its connection reported it was back.
//! The stream therefore spans the fault whatever the machine's speed.

mod common;

use aqueduct::frame::{AmqpError, DeliveryState, End, Performative};
use aqueduct::{
    ConnectOptions, Connection, ConnectionEvent, Message, Outcome, Receiver, ReceiverOptions,
    Sender, SenderOptions,
};
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// No progress for this long (a send, a message received, an event
/// awaited) fails the test.
const STALL: Duration = Duration::from_secs(60);

/// Messages accepted before the fault begins.
const BEFORE: u64 = 1_000;

/// Messages sent after the sender's connection reported it was back.
const AFTER: u64 = 2_000;

/// A bound on the stream: the sender stops here whatever happens (the
/// test then fails on the missing reconnect).
const MAX: u64 = 200_000;

/// Sends in flight at once.
const WINDOW: usize = 200;

/// How long the node stays down once both connections saw it go: the
/// outage, during which the clients retry and sends wait. Not a
/// synchronisation.
const OUTAGE: Duration = Duration::from_secs(1);

fn script() -> PathBuf {
    match std::env::var_os("AQUEDUCT_RABBITMQ") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/rabbitmq"),
    }
}

/// Runs `scripts/rabbitmq ARGS`, panicking with its output if it fails.
fn rabbitmq(step: &str, args: &[&str]) -> String {
    let out = Command::new(script())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("[{step}] could not run {}: {e}", script().display()));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "[{step}] scripts/rabbitmq {} failed (run scripts/install-peers?)\nstdout: {stdout}\nstderr: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// As [`rabbitmq`], off the async worker threads.
async fn rabbitmq_async(step: &str, args: &[&str]) -> String {
    let step = step.to_string();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        rabbitmq(&step, &args)
    })
    .await
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// A port P such that P, P+1 and P+2 are free and not in `taken` (a
/// node's AMQP port, its epmd and its distribution port).
fn free_port_triple(taken: &[u16]) -> u16 {
    for _ in 0..100 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let p = l.local_addr().unwrap().port();
        drop(l);
        if p > 65000 || taken.iter().any(|&t| p.abs_diff(t) < 3) {
            continue;
        }
        let free = |q: u16| std::net::TcpListener::bind(("127.0.0.1", q)).is_ok();
        if free(p) && free(p + 1) && free(p + 2) {
            return p;
        }
    }
    panic!("no free port triple for a RabbitMQ node");
}

/// A node recorded by `scripts/rabbitmq`; stopped (`scripts/rabbitmq stop
/// PORT`) when dropped, whatever state it is in.
struct Node {
    port: u16,
}

impl Node {
    /// Starts a single node.
    fn start() -> Node {
        let node = Node {
            port: free_port_triple(&[]),
        };
        rabbitmq("start", &["start", &node.port.to_string()]);
        node
    }

    /// Starts two nodes and joins the second to the first's cluster.
    fn cluster() -> (Node, Node) {
        let a = Node {
            port: free_port_triple(&[]),
        };
        let b = Node {
            port: free_port_triple(&[a.port]),
        };
        rabbitmq(
            "cluster",
            &["cluster", &a.port.to_string(), &b.port.to_string()],
        );
        (a, b)
    }

    fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}", self.port)
    }

    /// Whether queue `name` exists on this node's cluster and is durable,
    /// and the Erlang pid of its process (which names its node).
    fn queue_info(&self, name: &str) -> Option<(bool, String)> {
        let out = rabbitmq(
            "list_queues",
            &[
                "ctl",
                &self.port.to_string(),
                "list_queues",
                "-q",
                "--no-table-headers",
                "name",
                "durable",
                "pid",
            ],
        );
        out.lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && f[0] == name).then(|| (f[1] == "true", f[2].to_string()))
        })
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .args(["stop", &self.port.to_string()])
            .output();
    }
}

fn init_tracing() {
    // RUST_LOG=aqueduct=debug shows the reconnect state machine.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Connection options: reconnect on with the default policy (Proton's
/// schedule), the first connect bounded.
fn options() -> ConnectOptions {
    ConnectOptions::new().open_timeout(STALL)
}

async fn connect(step: &str, opts: ConnectOptions) -> Connection {
    tokio::time::timeout(STALL, aqueduct::connect(opts))
        .await
        .unwrap_or_else(|_| panic!("[{step}] connect did not finish within {STALL:?}"))
        .unwrap_or_else(|e| panic!("[{step}] connect: {e}"))
}

/// The queue's address and name; both tests' links declare it durable.
fn queue(name: &str) -> (String, String) {
    let name = format!("{name}-{}", std::process::id());
    (format!("/queue/{name}"), name)
}

async fn open_sender(step: &str, conn: &Connection, address: &str) -> Sender {
    tokio::time::timeout(
        STALL,
        conn.open_sender_with(SenderOptions::new(address).durable(1)),
    )
    .await
    .unwrap_or_else(|_| panic!("[{step}] open sender did not finish within {STALL:?}"))
    .unwrap_or_else(|e| panic!("[{step}] open sender: {e}"))
}

async fn open_receiver(step: &str, conn: &Connection, address: &str) -> Receiver {
    tokio::time::timeout(
        STALL,
        conn.open_receiver_with(ReceiverOptions::new(address).durable(1)),
    )
    .await
    .unwrap_or_else(|_| panic!("[{step}] open receiver did not finish within {STALL:?}"))
    .unwrap_or_else(|e| panic!("[{step}] open receiver: {e}"))
}

/// A connection's events as they come, kept in order with the time each
/// arrived.
struct EventLog {
    name: &'static str,
    rx: watch::Receiver<Vec<(Instant, ConnectionEvent)>>,
}

impl EventLog {
    fn record(name: &'static str, conn: &Connection) -> EventLog {
        let mut events = conn.events();
        let (tx, rx) = watch::channel(Vec::new());
        tokio::spawn(async move {
            while let Some(e) = events.next().await {
                tx.send_modify(|v| v.push((Instant::now(), e)));
            }
        });
        EventLog { name, rx }
    }

    fn snapshot(&self) -> Vec<ConnectionEvent> {
        self.rx.borrow().iter().map(|(_, e)| e.clone()).collect()
    }

    fn count(&self, pred: impl Fn(&ConnectionEvent) -> bool) -> usize {
        self.rx.borrow().iter().filter(|(_, e)| pred(e)).count()
    }

    /// Waits until the log holds `n` events matching `pred`; returns the
    /// last of them and when it came.
    async fn wait_for(
        &self,
        step: &str,
        what: &str,
        n: usize,
        pred: impl Fn(&ConnectionEvent) -> bool,
    ) -> (Instant, ConnectionEvent) {
        let mut rx = self.rx.clone();
        let found = tokio::time::timeout(STALL, async {
            rx.wait_for(|v| v.iter().filter(|(_, e)| pred(e)).count() >= n)
                .await
                .map(|v| v.iter().filter(|(_, e)| pred(e)).nth(n - 1).cloned())
        })
        .await;
        match found {
            Ok(Ok(e)) => e.expect("n matching events"),
            Ok(Err(_)) => panic!(
                "[{step}] {}: the event stream ended before {what}; events: {:#?}",
                self.name,
                self.snapshot()
            ),
            Err(_) => panic!(
                "[{step}] {}: no {what} within {STALL:?}; events: {:#?}",
                self.name,
                self.snapshot()
            ),
        }
    }
}

fn is_disconnected(e: &ConnectionEvent) -> bool {
    matches!(e, ConnectionEvent::Disconnected { .. })
}

fn is_reconnected(e: &ConnectionEvent) -> bool {
    matches!(e, ConnectionEvent::Reconnected { .. })
}

/// What the receiver has seen so far.
#[derive(Clone, Debug, Default)]
struct Tally {
    /// Deliveries of each number (index = number).
    counts: Vec<u32>,
    /// Deliveries in all.
    total: u64,
    /// Errors the receiver's stream yielded, and whether it ended.
    errors: Vec<String>,
    ended: bool,
}

/// Reads `rx` until it ends, counting each number the stream yields (a
/// message counts as received when the stream yields it: with auto-accept
/// on, a delivery taken just before a reconnect is redelivered, which is a
/// duplicate, not a loss).
fn spawn_receiver(step: &'static str, mut rx: Receiver) -> watch::Receiver<Tally> {
    let (tx, tally) = watch::channel(Tally::default());
    tokio::spawn(async move {
        while let Some(item) = rx.next().await {
            match item {
                Ok(d) => {
                    let n = d
                        .message()
                        .ok()
                        .and_then(|m| m.body().as_str())
                        .and_then(|s| s.parse::<usize>().ok());
                    tx.send_modify(|t| match n {
                        Some(n) => {
                            if t.counts.len() <= n {
                                t.counts.resize(n + 1, 0);
                            }
                            t.counts[n] += 1;
                            t.total += 1;
                        }
                        None => t.errors.push(format!(
                            "[{step}] unexpected message {:?}",
                            d.message().map(|m| m.body().clone())
                        )),
                    });
                }
                Err(e) => tx.send_modify(|t| t.errors.push(format!("receive: {e}"))),
            }
        }
        tx.send_modify(|t| t.ended = true);
    });
    tally
}

/// What the sender saw.
struct Sent {
    /// Numbers 0..total were sent.
    total: u64,
    /// Numbers whose send resolved Accepted.
    accepted: Vec<bool>,
    /// Sends that resolved otherwise, by number.
    failures: Vec<(u64, String)>,
}

/// Sends numbered durable messages (body = the number as text, message-id
/// = the number), `WINDOW` at a time, and counts the accepted ones in
/// `progress`; once `stop` holds `Some(k)`, sends `k` more and then waits
/// for every send to resolve. After a send that did not resolve Accepted it
/// sends no more (the test fails on it).
async fn send_stream(
    step: &'static str,
    sender: Sender,
    progress: watch::Sender<u64>,
    mut stop: watch::Receiver<Option<u64>>,
) -> Sent {
    let mut inflight = FuturesUnordered::new();
    let mut next = 0u64;
    let mut stop_at: Option<u64> = None;
    let mut accepted = Vec::new();
    let mut failures = Vec::new();
    let sender = &sender;
    loop {
        if stop_at.is_none() {
            if let Some(k) = *stop.borrow_and_update() {
                stop_at = Some(next + k);
            }
        }
        // After a failed send, no new ones: the test fails with what it saw.
        let limit = if failures.is_empty() {
            stop_at.unwrap_or(MAX)
        } else {
            next
        };
        if next < limit && inflight.len() < WINDOW {
            let i = next;
            next += 1;
            let msg = Message::builder()
                .body(i.to_string())
                .id(i)
                .durable(true)
                .build();
            inflight.push(async move { (i, sender.send(msg).await) });
            continue;
        }
        if inflight.is_empty() {
            break;
        }
        let resolved = tokio::select! {
            r = inflight.next() => r,
            // Wake up for the stop signal even while every send waits.
            _ = stop.changed(), if stop_at.is_none() => continue,
            _ = tokio::time::sleep(STALL) => panic!(
                "[{step}] no send resolved for {STALL:?} ({} in flight, {next} sent, {} accepted; \
                 connection statistics {:?})",
                inflight.len(),
                *progress.borrow(),
                sender.connection().statistics()
            ),
        };
        let (i, outcome) = resolved.expect("in flight is not empty");
        let i_us = i as usize;
        if accepted.len() <= i_us {
            accepted.resize(i_us + 1, false);
        }
        match outcome {
            Ok(Outcome::Accepted) => {
                accepted[i_us] = true;
                progress.send_modify(|n| *n += 1);
            }
            Ok(other) => failures.push((i, format!("outcome {other:?}"))),
            Err(e) => failures.push((i, format!("error: {e} (kind {:?})", e.kind()))),
        }
    }
    accepted.resize(next as usize, false);
    Sent {
        total: next,
        accepted,
        failures,
    }
}

/// Waits until the receiver has seen every number in `accepted`, failing
/// after `STALL` without progress.
async fn await_all(step: &str, accepted: &[bool], tally: &mut watch::Receiver<Tally>) -> Tally {
    let missing = |t: &Tally| -> Vec<usize> {
        (0..accepted.len())
            .filter(|&i| accepted[i] && t.counts.get(i).copied().unwrap_or(0) == 0)
            .collect()
    };
    let mut last = usize::MAX;
    loop {
        let t = tally.borrow_and_update().clone();
        let m = missing(&t);
        if m.is_empty() {
            return t;
        }
        if !t.errors.is_empty() || t.ended {
            panic!(
                "[{step}] the receiver failed with {} missing (first {:?}): errors {:?}, ended {}",
                m.len(),
                &m[..m.len().min(20)],
                t.errors,
                t.ended
            );
        }
        if m.len() < last {
            last = m.len();
        }
        if tokio::time::timeout(STALL, tally.changed()).await.is_err() {
            panic!(
                "[{step}] LOST: {} accepted messages never arrived within {STALL:?} of the last \
                 delivery; first missing: {:?}; received {} deliveries",
                m.len(),
                &m[..m.len().min(20)],
                t.total
            );
        }
    }
}

/// The checks shared by both tests, after the sender is done. Returns the
/// number of duplicates.
async fn check_delivery(step: &str, sent: &Sent, tally: &mut watch::Receiver<Tally>) -> u64 {
    assert!(
        sent.failures.is_empty(),
        "[{step}] {} of {} sends did not resolve Accepted; first: {:?}",
        sent.failures.len(),
        sent.total,
        &sent.failures[..sent.failures.len().min(10)]
    );
    assert!(
        sent.accepted.iter().all(|&a| a),
        "[{step}] every send resolved"
    );
    let t = await_all(step, &sent.accepted, tally).await;
    assert!(
        t.errors.is_empty(),
        "[{step}] receiver errors: {:?}",
        t.errors
    );
    let extra = t.counts.len() as u64 > sent.total;
    assert!(
        !extra,
        "[{step}] received a number that was never sent ({} > {})",
        t.counts.len(),
        sent.total
    );
    let distinct = t.counts.iter().filter(|&&c| c > 0).count() as u64;
    let duplicates = t.total - distinct;
    let most = t.counts.iter().copied().max().unwrap_or(0);
    println!(
        "[{step}] sent {} (all Accepted), received {} deliveries of {} distinct numbers: \
         none missing, {} duplicates (at most {} deliveries of one number)",
        sent.total, t.total, distinct, duplicates, most
    );
    duplicates
}

/// The reconnect of a connection, as its events and statistics show it.
fn check_reconnected(step: &str, conn: &Connection, log: &EventLog) {
    let stats = conn.statistics();
    println!(
        "[{step}] {}: {} reconnects; events: {:?}",
        log.name,
        stats.reconnects,
        log.snapshot()
    );
    assert!(
        stats.reconnects >= 1,
        "[{step}] {}: statistics().reconnects = {} (events {:?})",
        log.name,
        stats.reconnects,
        log.snapshot()
    );
    assert!(
        log.count(is_disconnected) >= 1,
        "[{step}] {}: no Disconnected event",
        log.name
    );
    assert!(
        log.count(is_reconnected) >= 1,
        "[{step}] {}: no Reconnected event",
        log.name
    );
}

/// Waits until the sender has had `n` messages accepted.
async fn await_accepted(step: &str, progress: &watch::Receiver<u64>, n: u64) {
    let mut p = progress.clone();
    let reached =
        tokio::time::timeout(STALL, async { p.wait_for(|&a| a >= n).await.map(|_| ()) }).await;
    match reached {
        Ok(Ok(())) => {}
        Ok(Err(_)) => panic!("[{step}] the sender ended before {n} messages were accepted"),
        Err(_) => panic!(
            "[{step}] fewer than {n} messages accepted within {STALL:?} ({})",
            *progress.borrow()
        ),
    }
}

/// Issue 10: RabbitMQ restarted (`stop_app` / `start_app`) under a sender
/// and a receiver on a durable queue; no message lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_with_durable_queue() {
    const STEP: &str = "restart";
    init_tracing();
    let node = Node::start();
    let port = node.port.to_string();
    let (address, name) = queue("restart");

    let rconn = connect(STEP, options().url(node.url())).await;
    let rlog = EventLog::record("receiver connection", &rconn);
    let rx = open_receiver(STEP, &rconn, &address).await;
    let (durable, _) = node
        .queue_info(&name)
        .unwrap_or_else(|| panic!("[{STEP}] queue {name} not declared"));
    assert!(durable, "[{STEP}] queue {name} must be durable");
    let mut tally = spawn_receiver(STEP, rx);

    let sconn = connect(STEP, options().url(node.url())).await;
    let slog = EventLog::record("sender connection", &sconn);
    let sender = open_sender(STEP, &sconn, &address).await;
    let (progress_tx, progress) = watch::channel(0u64);
    let (stop_tx, stop_rx) = watch::channel(None);
    let t0 = Instant::now();
    let sending = tokio::spawn(send_stream(STEP, sender, progress_tx, stop_rx));

    await_accepted(STEP, &progress, BEFORE).await;
    let at_stop = *progress.borrow();
    rabbitmq_async(STEP, &["stop_app", &port]).await;
    let (lost, _) = slog
        .wait_for(STEP, "Disconnected", 1, is_disconnected)
        .await;
    rlog.wait_for(STEP, "Disconnected", 1, is_disconnected)
        .await;
    tokio::time::sleep(OUTAGE).await;
    rabbitmq_async(STEP, &["start_app", &port]).await;
    let (back, _) = slog.wait_for(STEP, "Reconnected", 1, is_reconnected).await;
    stop_tx.send_replace(Some(AFTER));
    rlog.wait_for(STEP, "Reconnected", 1, is_reconnected).await;

    let sent = tokio::time::timeout(STALL * 5, sending)
        .await
        .unwrap_or_else(|_| panic!("[{STEP}] the sender did not finish"))
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    let duplicates = check_delivery(STEP, &sent, &mut tally).await;
    println!(
        "[{STEP}] {at_stop} accepted when stop_app began; sender disconnected for {:?} (of \
         which {OUTAGE:?} on purpose); {duplicates} duplicates; whole stream {:?}",
        back - lost,
        t0.elapsed()
    );
    check_reconnected(STEP, &sconn, &slog);
    check_reconnected(STEP, &rconn, &rlog);
    let (durable, _) = node.queue_info(&name).expect("queue after the restart");
    assert!(durable, "[{STEP}] queue {name} durable after the restart");

    tokio::time::timeout(STALL, sconn.close())
        .await
        .expect("sender close in time")
        .expect("sender close");
    tokio::time::timeout(STALL, rconn.close())
        .await
        .expect("receiver close in time")
        .expect("receiver close");
    drop(node);
}

/// Issue 10: a two-node cluster; the sender, given both URLs, sends through
/// node A into a queue on node B; A is stopped mid-stream; the sender fails
/// over to B; no message lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_failover() {
    const STEP: &str = "failover";
    init_tracing();
    let (a, b) = Node::cluster();
    let (address, name) = queue("failover");

    // The receiver on B declares the queue: it lives on B.
    let rconn = connect(STEP, options().url(b.url())).await;
    let rlog = EventLog::record("receiver connection (B)", &rconn);
    let rx = open_receiver(STEP, &rconn, &address).await;
    let (durable, pid) = b
        .queue_info(&name)
        .unwrap_or_else(|| panic!("[{STEP}] queue {name} not declared"));
    assert!(durable, "[{STEP}] queue {name} must be durable");
    let b_node = format!("aqueduct-{}@", b.port);
    assert!(
        pid.contains(&b_node),
        "[{STEP}] the queue's process {pid} must be on node B ({b_node})"
    );
    assert_eq!(
        a.queue_info(&name).map(|(_, pid)| pid),
        Some(pid),
        "[{STEP}] node A sees the same queue (one cluster)"
    );
    let mut tally = spawn_receiver(STEP, rx);

    // The sender lists A first: it connects to A.
    let sconn = connect(STEP, options().urls([a.url(), b.url()])).await;
    let slog = EventLog::record("sender connection (A, then B)", &sconn);
    let sender = open_sender(STEP, &sconn, &address).await;
    let (progress_tx, progress) = watch::channel(0u64);
    let (stop_tx, stop_rx) = watch::channel(None);
    let t0 = Instant::now();
    let sending = tokio::spawn(send_stream(STEP, sender, progress_tx, stop_rx));

    await_accepted(STEP, &progress, BEFORE).await;
    let at_stop = *progress.borrow();
    assert_eq!(
        slog.count(is_disconnected),
        0,
        "[{STEP}] the sender lost its connection before A was stopped: {:?}",
        slog.snapshot()
    );
    // A graceful stop takes seconds; the sender's connection drops during it.
    let t_stop = Instant::now();
    let a_port = a.port.to_string();
    let stopping = tokio::spawn(async move { rabbitmq_async(STEP, &["stop", &a_port]).await });
    // The sender's connection drops with A: it was on A.
    let (lost, _) = slog
        .wait_for(STEP, "Disconnected", 1, is_disconnected)
        .await;
    let (back, ev) = slog.wait_for(STEP, "Reconnected", 1, is_reconnected).await;
    stop_tx.send_replace(Some(AFTER));
    match &ev {
        ConnectionEvent::Reconnected { url } => assert!(
            url.contains(&format!(":{}", b.port)),
            "[{STEP}] the sender must fail over to B (port {}), reconnected to {url}",
            b.port
        ),
        other => unreachable!("{other:?}"),
    }
    stopping
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    let stopped = t_stop.elapsed();

    let sent = tokio::time::timeout(STALL * 5, sending)
        .await
        .unwrap_or_else(|_| panic!("[{STEP}] the sender did not finish"))
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    let duplicates = check_delivery(STEP, &sent, &mut tally).await;
    println!(
        "[{STEP}] {at_stop} accepted when node A's stop began; A lost the sender's connection \
         {:?} into its stop (which took {stopped:?}); the sender was on B {:?} later; \
         {duplicates} duplicates; whole stream {:?}; receiver connection reconnects: {} \
         (events {:?})",
        lost - t_stop,
        back - lost,
        t0.elapsed(),
        rconn.statistics().reconnects,
        rlog.snapshot()
    );
    check_reconnected(STEP, &sconn, &slog);

    tokio::time::timeout(STALL, sconn.close())
        .await
        .expect("sender close in time")
        .expect("sender close");
    tokio::time::timeout(STALL, rconn.close())
        .await
        .expect("receiver close in time")
        .expect("receiver close");
    drop((a, b));
}

/// The smallest form of the restart: one connection with an idle sender
/// and receiver on a durable queue, one message before `stop_app`, one
/// after `start_app`. RabbitMQ 3.10 ends each session with
/// `amqp:internal-error` "shutdown" just before it drops the TCP
/// connection (no close frame); the sender and the receiver must work
/// again after the reconnect all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_survive_stop_app() {
    const STEP: &str = "idle links across stop_app";
    init_tracing();
    let node = Node::start();
    let port = node.port.to_string();
    let (address, _) = queue("idle");
    let conn = connect(STEP, options().url(node.url())).await;
    let log = EventLog::record("connection", &conn);
    let mut rx = open_receiver(STEP, &conn, &address).await;
    let sender = open_sender(STEP, &conn, &address).await;
    let send = |body: &'static str| {
        let m = Message::builder().body(body).durable(true).build();
        tokio::time::timeout(STALL, sender.send(m))
    };
    let outcome = send("before").await.expect("send before in time");
    assert_eq!(
        outcome.ok(),
        Some(Outcome::Accepted),
        "[{STEP}] send before"
    );
    let got = tokio::time::timeout(STALL, rx.next()).await;
    let body = |item: Result<Option<Result<aqueduct::Delivery, aqueduct::Error>>, _>| match item {
        Ok(Some(Ok(d))) => format!("{:?}", d.message().map(|m| m.body().clone())),
        Ok(Some(Err(e))) => format!("error: {e} (kind {:?})", e.kind()),
        Ok(None) => "end of stream".into(),
        Err(_) => format!("nothing within {STALL:?}"),
    };
    let before = body(got);
    assert!(
        before.contains("before"),
        "[{STEP}] receive before: {before}"
    );

    rabbitmq_async(STEP, &["stop_app", &port]).await;
    log.wait_for(STEP, "Disconnected", 1, is_disconnected).await;
    rabbitmq_async(STEP, &["start_app", &port]).await;
    log.wait_for(STEP, "Reconnected", 1, is_reconnected).await;

    let after_send = match send("after").await {
        Ok(Ok(o)) => format!("{o:?}"),
        Ok(Err(e)) => format!("error: {e} (kind {:?})", e.kind()),
        Err(_) => format!("no outcome within {STALL:?}"),
    };
    let after_recv = body(tokio::time::timeout(STALL, rx.next()).await);
    println!("[{STEP}] after the restart: send -> {after_send}; receive -> {after_recv}");
    println!("[{STEP}] events: {:?}", log.snapshot());
    assert_eq!(after_send, "Accepted", "[{STEP}] send after the restart");
    assert!(
        after_recv.contains("after"),
        "[{STEP}] receive after the restart: {after_recv}"
    );
    tokio::time::timeout(STALL, conn.close())
        .await
        .expect("close in time")
        .expect("close");
    drop(node);
}

/// What RabbitMQ 3.10 does on `stop_app`, played by a raw peer, without
/// RabbitMQ: the peer has the sender's first transfer, ends the session
/// with `amqp:internal-error` "shutdown", then drops the TCP connection; a
/// second connection is served normally. The send in flight must be
/// re-sent on the second connection (the sender re-attached under the
/// same name) and resolve Accepted, and a later send must work too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_end_before_connection_loss() {
    const STEP: &str = "raw peer: end then loss";
    init_tracing();
    let (url, served) = common::raw_peer::raw_server_thread(|l| async move {
        let mut p = common::raw_peer::RawPeer::accept(&l).await;
        p.server_handshake().await;
        let (ch, first) = p.serve_attach(100).await;
        loop {
            let f = p.expect("the first transfer").await;
            if matches!(f.1, Performative::Transfer(_)) {
                break;
            }
            p.answer(&f, 100).await;
        }
        let shutdown = AmqpError::new("amqp:internal-error", "shutdown");
        p.send(
            ch,
            &End {
                error: Some(shutdown),
            },
        )
        .await;
        drop(p);
        let mut p = common::raw_peer::RawPeer::accept(&l).await;
        p.server_handshake().await;
        let (_, again) = p.serve_attach(100).await;
        let transfers = p.serve_rest(Some(DeliveryState::Accepted)).await;
        (first.name, again.name, transfers)
    });
    let conn = connect(STEP, options().url(&url)).await;
    let log = EventLog::record("connection", &conn);
    let sender = tokio::time::timeout(STALL, conn.open_sender("q"))
        .await
        .expect("attach in time")
        .expect("attach");
    let first = match tokio::time::timeout(STALL, sender.send(Message::from("first"))).await {
        Ok(Ok(o)) => format!("{o:?}"),
        Ok(Err(e)) => format!("error: {e} (kind {:?})", e.kind()),
        Err(_) => format!("no outcome within {STALL:?}"),
    };
    log.wait_for(STEP, "Reconnected", 1, is_reconnected).await;
    let second = match tokio::time::timeout(STALL, sender.send(Message::from("second"))).await {
        Ok(Ok(o)) => format!("{o:?}"),
        Ok(Err(e)) => format!("error: {e} (kind {:?})", e.kind()),
        Err(_) => format!("no outcome within {STALL:?}"),
    };
    let _ = tokio::time::timeout(STALL, conn.close()).await;
    println!("[{STEP}] first send -> {first}; second send -> {second}");
    assert_eq!(
        first, "Accepted",
        "[{STEP}] the send in flight at the session end"
    );
    assert_eq!(second, "Accepted", "[{STEP}] a send after the reconnect");
    let (name1, name2, transfers) = tokio::time::timeout(STALL, served)
        .await
        .expect("the raw peer finishes")
        .expect("the raw peer's result");
    assert_eq!(name1, name2, "[{STEP}] re-attached under the same name");
    assert_eq!(transfers, 2, "[{STEP}] transfers on the second connection");
}

/// A receiver whose connection is cut (by the fault-injection proxy: no
/// session end from the broker), and that cannot reconnect for 3 s (the
/// proxy refuses connections meanwhile), must go on receiving after the
/// reconnect,
/// whatever credit it had outstanding and whatever it had buffered when the
/// connection went. Three receivers on one connection: one idle on an
/// empty queue after taking one message (its whole credit window, grown to
/// 1,000 by then, outstanding: the common case), one
/// cut after taking 1,000 of 3,000 waiting messages, and one not read at
/// all until after the reconnect (its buffer full of deliveries of the lost
/// connection); each must get every number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receivers_keep_receiving_after_a_cut() {
    const STEP: &str = "receivers after a cut";
    const N: usize = 3_000;
    init_tracing();
    let node = Node::start();
    let (idle_address, _) = queue("cut-idle");
    let (busy_address, _) = queue("cut-busy");
    let (lagging_address, _) = queue("cut-lagging");
    let sconn = connect(STEP, options().url(node.url())).await;
    let fill = |address: String, numbers: std::ops::Range<usize>| {
        let sconn = &sconn;
        async move {
            let sender = open_sender(STEP, sconn, &address).await;
            let sends: FuturesUnordered<_> = numbers
                .map(|i| {
                    let m = Message::builder().body(i.to_string()).durable(true).build();
                    sender.send(m)
                })
                .collect();
            let outcomes: Vec<_> = tokio::time::timeout(STALL, sends.collect())
                .await
                .unwrap_or_else(|_| panic!("[{STEP}] sending took over {STALL:?}"));
            assert!(
                outcomes.iter().all(|o| matches!(o, Ok(Outcome::Accepted))),
                "[{STEP}] sending to {address}"
            );
        }
    };
    fill(busy_address.clone(), 0..N).await;
    fill(lagging_address.clone(), 0..N).await;
    fill(idle_address.clone(), 0..1).await;

    let upstream: std::net::SocketAddr = ([127, 0, 0, 1], node.port).into();
    let proxy = common::proxy::Proxy::start(upstream).await;
    let url = proxy.url().replace("amqp://", "amqp://guest:guest@");
    let rconn = connect(STEP, options().url(url)).await;
    let log = EventLog::record("receiver connection", &rconn);
    let idle = open_receiver(STEP, &rconn, &idle_address).await;
    let mut idle_tally = spawn_receiver(STEP, idle);
    let mut t = idle_tally.clone();
    tokio::time::timeout(STALL, t.wait_for(|t| t.total >= 1))
        .await
        .unwrap_or_else(|_| panic!("[{STEP}] the idle receiver's first message did not arrive"))
        .expect("receiver task");
    let busy = open_receiver(STEP, &rconn, &busy_address).await;
    let mut busy_tally = spawn_receiver(STEP, busy);
    let lagging = open_receiver(STEP, &rconn, &lagging_address).await;
    let mut t = busy_tally.clone();
    tokio::time::timeout(STALL, t.wait_for(|t| t.total >= 1_000))
        .await
        .unwrap_or_else(|_| panic!("[{STEP}] 1,000 messages did not arrive"))
        .expect("receiver task");
    // Away for 3 s: the busy receiver's stream drains what it had buffered
    // while the connection is down.
    proxy.refuse_for(Duration::from_secs(3));
    proxy.cut_all();
    log.wait_for(STEP, "Reconnected", 1, is_reconnected).await;
    let mut lagging_tally = spawn_receiver(STEP, lagging);
    fill(idle_address, 1..N).await;
    let sent = Sent {
        total: N as u64,
        accepted: vec![true; N],
        failures: Vec::new(),
    };
    println!("[{STEP}] busy receiver (cut after 1,000 of {N} waiting):");
    check_delivery(STEP, &sent, &mut busy_tally).await;
    println!("[{STEP}] idle receiver (took 1 message, cut while waiting, then the rest sent):");
    check_delivery(STEP, &sent, &mut idle_tally).await;
    println!("[{STEP}] lagging receiver (not read until after the reconnect):");
    check_delivery(STEP, &sent, &mut lagging_tally).await;
    println!(
        "[{STEP}] receiver connection statistics: {:?}",
        rconn.statistics()
    );
    let _ = tokio::time::timeout(STALL, rconn.close()).await;
    let _ = tokio::time::timeout(STALL, sconn.close()).await;
    drop(node);
}
