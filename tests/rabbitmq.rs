//! Against a real broker: a private RabbitMQ 3.10 node (AMQP 1.0 plugin)
//! started by `scripts/rabbitmq` for this test binary, and stopped at the
//! end. The test FAILS if the node can't start (run `scripts/install-peers`).
//!
//! Rust tests have no global teardown, so everything runs in one test
//! function, step by step; each step names itself in its panics, and the
//! node guard stops the node when the test ends, passing or not.

use aqueduct::{
    ConnectOptions, Connection, ErrorKind, Message, Outcome, Receiver, ReceiverOptions,
};
use futures::StreamExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A generous bound on anything that should be prompt.
const PROMPTLY: Duration = Duration::from_secs(10);

async fn within<F: std::future::Future>(step: &str, fut: F) -> F::Output {
    match tokio::time::timeout(PROMPTLY, fut).await {
        Ok(r) => r,
        Err(_) => panic!("[{step}] did not finish within {PROMPTLY:?}"),
    }
}

fn script() -> PathBuf {
    match std::env::var_os("AQUEDUCT_RABBITMQ") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/rabbitmq"),
    }
}

/// A port P such that P, P+1 and P+2 are free (the node's AMQP port, its
/// private epmd and its distribution port).
fn free_port_triple() -> u16 {
    for _ in 0..50 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let p = l.local_addr().unwrap().port();
        drop(l);
        if p > 65000 {
            continue;
        }
        let free = |q: u16| std::net::TcpListener::bind(("127.0.0.1", q)).is_ok();
        if free(p) && free(p + 1) && free(p + 2) {
            return p;
        }
    }
    panic!("no free port triple for the RabbitMQ node");
}

/// The running node; stops it when dropped.
struct Node {
    port: u16,
}

impl Node {
    fn start() -> Node {
        let port = free_port_triple();
        let out = Command::new(script())
            .args(["start", &port.to_string()])
            .output()
            .unwrap_or_else(|e| panic!("[start] could not run {}: {e}", script().display()));
        let node = Node { port };
        assert!(
            out.status.success(),
            "[start] RabbitMQ did not start on port {port} (run scripts/install-peers?)\n\
             stdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        node
    }

    fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}", self.port)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .args(["stop", &self.port.to_string()])
            .output();
    }
}

/// The node's port, set once for the whole binary.
static PORT: OnceLock<u16> = OnceLock::new();

fn queue(name: &str) -> String {
    format!("/queue/{name}-{}", std::process::id())
}

/// Credit window of the receivers. RabbitMQ 3.10 overshoots credit when a
/// second flow crosses transfers in flight (it recomputes the credit from a
/// stale delivery-count), and our engine then detaches the link with
/// `amqp:link:transfer-limit-exceeded`; with a window of 1 no two flows are
/// ever outstanding. See `credit_overshoot_with_default_window` below.
const WINDOW: u32 = 1;

async fn connect(step: &str, url: &str) -> Connection {
    let opts = ConnectOptions::new().url(url).credit_window(WINDOW);
    within(step, aqueduct::connect(opts))
        .await
        .unwrap_or_else(|e| panic!("[{step}] connect: {e}"))
}

async fn next_message(step: &str, rx: &mut Receiver) -> aqueduct::Delivery {
    within(step, rx.next())
        .await
        .unwrap_or_else(|| panic!("[{step}] receiver ended"))
        .unwrap_or_else(|e| panic!("[{step}] receive: {e}"))
}

/// Asserts nothing arrives on `rx` for a while.
async fn assert_quiet(step: &str, rx: &mut Receiver) {
    if let Ok(item) = tokio::time::timeout(Duration::from_millis(1500), rx.next()).await {
        let what = match item {
            Some(Ok(d)) => format!("{:?}", d.message().unwrap().body()),
            Some(Err(e)) => e.to_string(),
            None => "end of stream".into(),
        };
        panic!("[{step}] expected nothing, got {what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq() {
    // RUST_LOG=aqueduct=trace shows the frames received.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let node = Node::start();
    PORT.set(node.port).expect("one node per test binary");
    let url = node.url();

    send_and_receive(&url).await;
    released_is_redelivered(&url).await;
    rejected_is_not_redelivered(&url).await;
    wrong_password(node.port).await;
    refused_addresses(&url).await;
    large_message(&url).await;
    anonymous_sasl(node.port).await;
    sasl_choices(node.port).await;

    drop(node);
}

async fn send_and_receive(url: &str) {
    const STEP: &str = "send and receive";
    let conn = connect(STEP, url).await;
    let q = queue("roundtrip");
    let sender = within(STEP, conn.open_sender(q.as_str()))
        .await
        .unwrap_or_else(|e| panic!("[{STEP}] open sender: {e}"));
    let sends: Vec<_> = (0..100)
        .map(|i| sender.send(Message::from(format!("message {i}"))))
        .collect();
    let outcomes = within(STEP, futures::future::join_all(sends)).await;
    for (i, o) in outcomes.into_iter().enumerate() {
        let o = o.unwrap_or_else(|e| panic!("[{STEP}] send {i}: {e}"));
        assert_eq!(o, Outcome::Accepted, "[{STEP}] outcome of send {i}");
    }
    let mut rx = within(STEP, conn.open_receiver(q.as_str()))
        .await
        .unwrap_or_else(|e| panic!("[{STEP}] open receiver: {e}"));
    for i in 0..100 {
        let d = next_message(STEP, &mut rx).await;
        assert_eq!(
            d.message().unwrap().body().as_str(),
            Some(format!("message {i}").as_str()),
            "[{STEP}] body {i} (in order)"
        );
        d.accept().await.unwrap();
    }
    assert_quiet(STEP, &mut rx).await;
    within(STEP, conn.close())
        .await
        .unwrap_or_else(|e| panic!("[{STEP}] close: {e}"));
}

async fn released_is_redelivered(url: &str) {
    const STEP: &str = "release";
    let conn = connect(STEP, url).await;
    let q = queue("release");
    let sender = conn.open_sender(q.as_str()).await.unwrap();
    let outcome = within(STEP, sender.send(Message::from("again")))
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::Accepted, "[{STEP}] send");
    let mut rx = within(
        STEP,
        conn.open_receiver_with(
            ReceiverOptions::new(q.as_str())
                .auto_accept(false)
                .credit_window(WINDOW),
        ),
    )
    .await
    .unwrap();
    let first = next_message(STEP, &mut rx).await;
    assert_eq!(
        first.message().unwrap().body().as_str(),
        Some("again"),
        "[{STEP}]"
    );
    let (fa1, dc1) = (
        first.message().unwrap().first_acquirer(),
        first.message().unwrap().delivery_count(),
    );
    first.release().await.unwrap();
    let second = next_message(STEP, &mut rx).await;
    assert_eq!(
        second.message().unwrap().body().as_str(),
        Some("again"),
        "[{STEP}] the released message comes back"
    );
    let (fa2, dc2) = (
        second.message().unwrap().first_acquirer(),
        second.message().unwrap().delivery_count(),
    );
    println!(
        "[{STEP}] RabbitMQ header: first delivery first_acquirer={fa1} delivery_count={dc1}; \
         redelivery first_acquirer={fa2} delivery_count={dc2}"
    );
    // RabbitMQ marks a redelivered message as not first-acquired; release
    // is not a failed attempt, so the count need not grow.
    assert!(!fa2, "[{STEP}] redelivery must not claim first_acquirer");
    assert!(dc2 >= dc1, "[{STEP}] delivery_count never goes down");
    second.accept().await.unwrap();
    assert_quiet(STEP, &mut rx).await;
    conn.close().await.unwrap();
}

async fn rejected_is_not_redelivered(url: &str) {
    const STEP: &str = "reject";
    let conn = connect(STEP, url).await;
    let q = queue("reject");
    let sender = conn.open_sender(q.as_str()).await.unwrap();
    for body in ["bad", "good"] {
        // The broker accepted the message into the queue: what a consumer
        // does with it later does not change the sender's outcome.
        let outcome = within(STEP, sender.send(Message::from(body)))
            .await
            .unwrap();
        assert_eq!(outcome, Outcome::Accepted, "[{STEP}] send {body}");
    }
    let mut rx = conn
        .open_receiver_with(ReceiverOptions::new(q.as_str()).auto_accept(false))
        .await
        .unwrap();
    let bad = next_message(STEP, &mut rx).await;
    assert_eq!(
        bad.message().unwrap().body().as_str(),
        Some("bad"),
        "[{STEP}]"
    );
    bad.reject("amqp:invalid-field", "not what we wanted")
        .await
        .unwrap();
    let good = next_message(STEP, &mut rx).await;
    assert_eq!(
        good.message().unwrap().body().as_str(),
        Some("good"),
        "[{STEP}] after the rejected one"
    );
    good.accept().await.unwrap();
    // RabbitMQ drops a rejected message (or dead-letters it, if the queue
    // has a dead-letter exchange; ours has none): it never comes back.
    assert_quiet(STEP, &mut rx).await;
    rx.close().await.unwrap();
    // Not to another consumer either.
    let mut rx2 = conn.open_receiver(q.as_str()).await.unwrap();
    assert_quiet(STEP, &mut rx2).await;
    conn.close().await.unwrap();
}

async fn wrong_password(port: u16) {
    const STEP: &str = "wrong password";
    let opts = ConnectOptions::new()
        .url(format!("amqp://127.0.0.1:{port}"))
        .user("guest")
        .password("not-the-password");
    let t0 = Instant::now();
    let err = within(STEP, aqueduct::connect(opts))
        .await
        .expect_err("[wrong password] connect must fail");
    println!("[{STEP}] {err}");
    assert_eq!(err.kind(), &ErrorKind::Authentication, "[{STEP}] {err}");
    let desc = err.description().expect("[wrong password] a description");
    assert!(
        desc.to_lowercase().contains("auth"),
        "[{STEP}] the description should say authentication failed: {desc}"
    );
    assert!(!err.is_retriable(), "[{STEP}] {err}");
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "[{STEP}] must fail promptly, took {:?}",
        t0.elapsed()
    );
}

async fn refused_addresses(url: &str) {
    const STEP: &str = "refused address";
    let conn = connect(STEP, url).await;
    for address in ["/exchange/does-not-exist/x", "/nonsense/x"] {
        let err = within(STEP, conn.open_sender(address))
            .await
            .expect_err("[refused address] RabbitMQ must refuse the attach");
        println!(
            "[{STEP}] {address}: kind={:?} condition={:?} description={:?}",
            err.kind(),
            err.condition(),
            err.description()
        );
        assert_eq!(
            err.kind(),
            &ErrorKind::LinkDetached,
            "[{STEP}] {address}: {err}"
        );
        assert!(
            err.condition().is_some(),
            "[{STEP}] {address}: the broker's condition: {err}"
        );
        assert!(
            err.description().is_some_and(|d| !d.is_empty()),
            "[{STEP}] {address}: the broker's description: {err}"
        );
    }
    // The connection survives refused links.
    let q = queue("after-refusal");
    let sender = within(STEP, conn.open_sender(q.as_str()))
        .await
        .unwrap_or_else(|e| panic!("[{STEP}] open sender after refusals: {e}"));
    let outcome = within(STEP, sender.send(Message::from("still fine")))
        .await
        .unwrap_or_else(|e| panic!("[{STEP}] send after refusals: {e}"));
    assert_eq!(outcome, Outcome::Accepted, "[{STEP}]");
    conn.close().await.unwrap();
}

async fn large_message(url: &str) {
    const STEP: &str = "10 MiB message";
    let conn = connect(STEP, url).await;
    let q = queue("large");
    let sender = conn.open_sender(q.as_str()).await.unwrap();
    let body: Vec<u8> = (0..10 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let mut rx = conn.open_receiver(q.as_str()).await.unwrap();
    let outcome = tokio::time::timeout(
        Duration::from_secs(60),
        sender.send(Message::from(body.clone())),
    )
    .await
    .unwrap_or_else(|_| panic!("[{STEP}] send did not finish within 60 s"))
    .unwrap_or_else(|e| panic!("[{STEP}] send: {e}"));
    assert_eq!(outcome, Outcome::Accepted, "[{STEP}]");
    let d = tokio::time::timeout(Duration::from_secs(60), rx.next())
        .await
        .unwrap_or_else(|_| panic!("[{STEP}] receive did not finish within 60 s"))
        .unwrap_or_else(|| panic!("[{STEP}] receiver ended"))
        .unwrap_or_else(|e| panic!("[{STEP}] receive: {e}"));
    let got = d.message().unwrap().body().as_bytes();
    assert_eq!(got.map(<[u8]>::len), Some(body.len()), "[{STEP}] size");
    assert!(got == Some(&body[..]), "[{STEP}] bytes intact");
    d.accept().await.unwrap();
    conn.close().await.unwrap();
}

async fn anonymous_sasl(port: u16) {
    const STEP: &str = "anonymous";
    let url = format!("amqp://127.0.0.1:{port}");
    let conn = connect(STEP, &url).await;
    assert!(
        !conn.remote_open().container_id.is_empty(),
        "[{STEP}] RabbitMQ's open"
    );
    let q = queue("anonymous");
    let sender = conn.open_sender(q.as_str()).await.unwrap();
    let outcome = within(STEP, sender.send(Message::from("hello anonymous")))
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::Accepted, "[{STEP}]");
    let mut rx = conn.open_receiver(q.as_str()).await.unwrap();
    let d = next_message(STEP, &mut rx).await;
    assert_eq!(
        d.message().unwrap().body().as_str(),
        Some("hello anonymous")
    );
    d.accept().await.unwrap();
    conn.close().await.unwrap();
    // Also with the mechanism asked for explicitly.
    let opts = ConnectOptions::new().url(&url).allowed_mechs("ANONYMOUS");
    let conn = within(STEP, aqueduct::connect(opts))
        .await
        .unwrap_or_else(|e| panic!("[{STEP}] connect with ANONYMOUS only: {e}"));
    conn.close().await.unwrap();
}

/// The receiver with the default credit window (10, topped up by 5) against
/// RabbitMQ 3.10: the broker sends more transfers than the credit allows
/// when our second flow crosses its transfers, and the engine detaches the
/// link with `amqp:link:transfer-limit-exceeded` ("transfer without link
/// credit"). Proton tolerates the overshoot. Starts its own node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credit_overshoot_with_default_window() {
    const STEP: &str = "default credit window";
    let node = Node::start();
    let conn = within(STEP, aqueduct::connect(node.url())).await.unwrap();
    let q = queue("overshoot");
    let sender = conn.open_sender(q.as_str()).await.unwrap();
    let sends: Vec<_> = (0..100)
        .map(|i| sender.send(Message::from(format!("m{i}"))))
        .collect();
    for o in within(STEP, futures::future::join_all(sends)).await {
        assert_eq!(o.unwrap(), Outcome::Accepted);
    }
    let mut rx = conn.open_receiver(q.as_str()).await.unwrap();
    for i in 0..100 {
        let d = next_message(STEP, &mut rx).await;
        assert_eq!(
            d.message().unwrap().body().as_str(),
            Some(format!("m{i}").as_str())
        );
    }
    conn.close().await.unwrap();
    drop(node);
}

/// The node shared by the load tests below (started by the first, stopped
/// when the last running one drops it).
fn shared_node() -> std::sync::Arc<Node> {
    use std::sync::{Arc, Mutex, Weak};
    static NODE: Mutex<Weak<Node>> = Mutex::new(Weak::new());
    let mut g = NODE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(n) = g.upgrade() {
        return n;
    }
    let n = Arc::new(Node::start());
    *g = Arc::downgrade(&n);
    n
}

/// Issue 8: one connection publishes `N` small messages at full speed
/// (1000 sends pipelined) into a queue while a receiver on another
/// connection, started first, consumes them with `options`. The receiver
/// gets every message (numbered bodies, none missing) and no error.
async fn load(step: &str, url: &str, queue_name: &str, options: ReceiverOptions) {
    const N: usize = 100_000;
    let rconn = within(step, aqueduct::connect(url)).await.unwrap();
    let mut rx = within(step, rconn.open_receiver_with(options))
        .await
        .unwrap_or_else(|e| panic!("[{step}] open receiver: {e}"));
    let step_r = step.to_string();
    let receiving = tokio::spawn(async move {
        let step = step_r.as_str();
        let mut seen = vec![false; N];
        let mut distinct = 0;
        while distinct < N {
            let next = tokio::time::timeout(Duration::from_secs(60), rx.next()).await;
            let d = match next {
                Ok(Some(Ok(d))) => d,
                Ok(Some(Err(e))) => panic!(
                    "[{step}] receive after {distinct} messages: {e} (statistics: {:?})",
                    rconn.statistics()
                ),
                Ok(None) => panic!("[{step}] receiver ended after {distinct} messages"),
                Err(_) => panic!("[{step}] no message for 60 s after {distinct} messages"),
            };
            let i: usize = d
                .message()
                .unwrap()
                .body()
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| {
                    panic!(
                        "[{step}] unexpected body {:?}",
                        d.message().map(|m| m.body())
                    )
                });
            if !std::mem::replace(&mut seen[i], true) {
                distinct += 1;
            }
        }
        println!("[{step}] receiver statistics: {:?}", rconn.statistics());
        rconn.close().await.unwrap();
        distinct
    });
    let sconn = within(step, aqueduct::connect(url)).await.unwrap();
    let sender = within(step, sconn.open_sender(queue_name)).await.unwrap();
    let t0 = Instant::now();
    let sending = futures::stream::iter(0..N)
        .map(|i| sender.send(Message::from(i.to_string())))
        .buffer_unordered(1000)
        .for_each(|o| {
            let o = o.unwrap_or_else(|e| panic!("[{step}] send: {e}"));
            assert_eq!(o, Outcome::Accepted, "[{step}] send");
            async {}
        });
    match tokio::time::timeout(Duration::from_secs(600), sending).await {
        Ok(()) => {}
        Err(_) => panic!("[{step}] sending {N} messages took more than 600 s"),
    }
    let received = match tokio::time::timeout(Duration::from_secs(600), receiving).await {
        Ok(r) => r.unwrap(),
        Err(_) => panic!("[{step}] receiving {N} messages took more than 600 s"),
    };
    assert_eq!(received, N, "[{step}]");
    println!(
        "[{step}] {N} messages through RabbitMQ in {:?}, sender and receiver concurrent",
        t0.elapsed()
    );
    sconn.close().await.unwrap();
}

/// Issue 8, receiver with the DEFAULT credit window under sustained load:
/// RabbitMQ overshoots credit by more than one grant; the receiver must
/// tolerate it within a bounded budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_100k_default_window() {
    let node = shared_node();
    let q = queue("load-default");
    load(
        "load, default window",
        &node.url(),
        &q,
        ReceiverOptions::new(q.as_str()),
    )
    .await;
}

/// Issue 8, as above with a credit window of 1000 (Proton's default).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_100k_window_1000() {
    let node = shared_node();
    let q = queue("load-1000");
    load(
        "load, window 1000",
        &node.url(),
        &q,
        ReceiverOptions::new(q.as_str()).credit_window(1000),
    )
    .await;
}

/// The client's SASL choices against what RabbitMQ offers (PLAIN, AMQPLAIN
/// and ANONYMOUS; no SCRAM): PLAIN asked for explicitly, the outcome code
/// of a wrong password, insecure mechanisms refused on plain TCP, and no
/// common mechanism.
async fn sasl_choices(port: u16) {
    const STEP: &str = "sasl choices";
    let url = format!("amqp://guest:guest@127.0.0.1:{port}");
    let opts = ConnectOptions::new().url(&url).allowed_mechs("PLAIN");
    let conn = within(STEP, aqueduct::connect(opts))
        .await
        .unwrap_or_else(|e| panic!("[{STEP}] PLAIN guest/guest: {e}"));
    conn.close().await.unwrap();

    let opts = ConnectOptions::new()
        .url(format!("amqp://guest:wrong@127.0.0.1:{port}"))
        .allowed_mechs("PLAIN");
    let err = within(STEP, aqueduct::connect(opts))
        .await
        .expect_err("wrong password");
    assert_eq!(err.kind(), &ErrorKind::Authentication, "[{STEP}] {err}");
    assert_eq!(
        err.sasl_code(),
        Some(aqueduct::SaslCode::Auth),
        "[{STEP}] {err}"
    );

    let opts = ConnectOptions::new().url(&url).allow_insecure_mechs(false);
    let err = within(STEP, aqueduct::connect(opts))
        .await
        .expect_err("PLAIN refused without TLS");
    assert_eq!(err.kind(), &ErrorKind::Authentication, "[{STEP}] {err}");
    assert!(err.to_string().contains("insecure"), "[{STEP}] {err}");

    let opts = ConnectOptions::new()
        .url(&url)
        .allowed_mechs("SCRAM-SHA-256");
    let err = within(STEP, aqueduct::connect(opts))
        .await
        .expect_err("no SCRAM on RabbitMQ 3.10");
    assert_eq!(err.kind(), &ErrorKind::Authentication, "[{STEP}] {err}");
    let text = err.to_string();
    assert!(
        text.contains("server offers [")
            && text.contains("PLAIN")
            && text.contains("we allow [SCRAM-SHA-256]"),
        "[{STEP}] {text}"
    );
}
