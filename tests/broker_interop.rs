//! Our broker example (`examples/broker.rs`, run as a binary) with real
//! peers: Proton's Python examples, Proton's C send/receive, rhea; with our
//! own client; and with misbehaving raw TCP peers.
//!
//! Peer tests FAIL (never skip) when a peer is missing: run
//! `scripts/install-peers`. Peers are found as scripts/env.sh says
//! (PROTON_EXAMPLES, PROTON_PYTHON, AQUEDUCT_PEERS_DIR, RHEA_NODE_PATH).
//!
//! Throughput beside the real peers is measured by `scripts/bench`,
//! not here.

use aqueduct::frame::codec::encode_frame;
use aqueduct::frame::{
    condition, Attach, Begin, Frame, FrameDecoder, Open, Performative, ProtocolId, Role, Source,
    Target, Transfer,
};
use aqueduct::{Message, Outcome, ReceiverOptions};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::timeout;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

// ---------------------------------------------------------------- helpers

fn env_or(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_string())
}

fn must_exist(p: impl AsRef<Path>) -> PathBuf {
    let p = p.as_ref().to_path_buf();
    assert!(
        p.exists(),
        "{} is missing: run scripts/install-peers",
        p.display()
    );
    p
}

fn proton_python() -> PathBuf {
    must_exist(env_or("PROTON_PYTHON", "/usr/bin/python3"))
}

fn proton_example(name: &str) -> PathBuf {
    must_exist(Path::new(&env_or("PROTON_EXAMPLES", "/usr/share/proton/examples")).join(name))
}

fn peer_bin(name: &str) -> PathBuf {
    let dir = env_or("AQUEDUCT_PEERS_DIR", &format!("{ROOT}/peers"));
    must_exist(Path::new(&dir).join("bin").join(name))
}

fn rhea_path() -> PathBuf {
    let dir = env_or("AQUEDUCT_PEERS_DIR", &format!("{ROOT}/peers"));
    let p = env_or("RHEA_NODE_PATH", &format!("{dir}/node/node_modules"));
    must_exist(Path::new(&p).join("rhea"));
    PathBuf::from(p)
}

/// The directory of this test's profile (target/debug or target/release).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps")
        .to_path_buf()
}

/// Builds the examples once per test run.
fn build_examples() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let mut cmd = std::process::Command::new(env!("CARGO"));
        cmd.args(["build", "--examples", "--quiet"])
            .current_dir(ROOT);
        if profile_dir().ends_with("release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build --examples");
        assert!(status.success(), "cargo build --examples failed");
    });
}

fn example(name: &str) -> PathBuf {
    build_examples();
    must_exist(profile_dir().join("examples").join(name))
}

/// A child process killed when dropped, with its stdout lines collected.
struct Proc {
    child: Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
    name: String,
}

impl Proc {
    fn spawn(mut cmd: Command, name: &str) -> Proc {
        cmd.kill_on_drop(true)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {name}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut r = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = r.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc {
            child,
            lines,
            seen: Vec::new(),
            name: name.to_string(),
        }
    }

    /// Waits (at most `limit`) for a line satisfying `f`.
    async fn wait_line(&mut self, limit: Duration, f: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match timeout(left, self.lines.recv()).await {
                Ok(Some(line)) => {
                    self.seen.push(line.clone());
                    if f(&line) {
                        return line;
                    }
                }
                Ok(None) => panic!("{} exited; its output: {:?}", self.name, self.seen),
                Err(_) => panic!(
                    "{} printed no expected line within {limit:?}; its output: {:?}",
                    self.name, self.seen
                ),
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Our broker example on a free port (it binds port 0 and prints it).
struct Broker {
    _proc: Proc,
    port: u16,
}

impl Broker {
    async fn start(extra: &[&str]) -> Broker {
        let mut cmd = Command::new(example("broker"));
        cmd.args(["-a", "127.0.0.1:0", "--handshake-timeout-ms", "500"])
            .args(extra);
        let mut proc = Proc::spawn(cmd, "broker");
        let line = proc
            .wait_line(Duration::from_secs(20), |l| l.starts_with("Listening on"))
            .await;
        let port = line
            .rsplit(':')
            .next()
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        Broker { _proc: proc, port }
    }

    fn url(&self) -> String {
        format!("amqp://127.0.0.1:{}", self.port)
    }

    fn host_port(&self, address: &str) -> String {
        format!("127.0.0.1:{}/{address}", self.port)
    }
}

/// Runs a command to completion within `limit` (killed otherwise).
async fn run(mut cmd: Command, what: &str, limit: Duration) -> Output {
    cmd.kill_on_drop(true)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("could not start {what}: {e}"));
    let out = timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {limit:?}"))
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}): stdout {} stderr {}",
        out.status,
        tail(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn tail(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n")
}

fn lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn python(script: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(proton_python());
    cmd.arg(proton_example(&format!("python/{script}")))
        .args(args);
    cmd
}

const T: Duration = Duration::from_secs(10);

/// A well-behaved client: a message there and back through `queue`.
async fn roundtrip(broker: &Broker, queue: &str) {
    let work = async {
        let conn = aqueduct::connect(broker.url()).await?;
        let mut receiver = conn.open_receiver(queue).await?;
        let sender = conn.open_sender(queue).await?;
        assert_eq!(sender.send(Message::from("ping")).await?, Outcome::Accepted);
        let d = receiver.next().await.expect("a delivery")?;
        assert_eq!(d.message().unwrap().body().as_str(), Some("ping"));
        drop(d);
        conn.close().await
    };
    timeout(T, work)
        .await
        .expect("the round trip timed out")
        .expect("the round trip failed");
}

// ------------------------------------------------------------ Proton Python

async fn python_send_recv(n: usize, limit: Duration) {
    let broker = Broker::start(&[]).await;
    let url = broker.host_port("pyq");
    let m = n.to_string();
    let recv = run(
        python("simple_recv.py", &["-a", &url, "-m", &m]),
        "simple_recv.py",
        limit,
    );
    let send = run(
        python("simple_send.py", &["-a", &url, "-m", &m]),
        "simple_send.py",
        limit,
    );
    let (recv, send) = tokio::join!(recv, send);
    assert_eq!(lines(&send), ["all messages confirmed"]);
    let got = lines(&recv);
    assert_eq!(got.len(), n, "simple_recv.py printed {} lines", got.len());
    for (i, line) in got.iter().enumerate() {
        assert_eq!(line, &format!("{{'sequence': {}}}", i + 1), "line {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_simple_send_recv_100() {
    python_send_recv(100, Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_simple_send_recv_100000() {
    python_send_recv(100_000, Duration::from_secs(240)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_to_our_server_via_our_broker() {
    let broker = Broker::start(&[]).await;
    let url = broker.host_port("requests");
    let mut cmd = Command::new(example("server"));
    cmd.args(["-a", &url]);
    let mut server = Proc::spawn(cmd, "server");
    server.wait_line(T, |l| l.starts_with("Listening on")).await;
    let out = run(python("client.py", &["-a", &url]), "client.py", T).await;
    let expected = [
        "Twas brillig, and the slithy toves",
        "Did gire and gymble in the wabe.",
        "All mimsy were the borogroves,",
        "And the mome raths outgrabe.",
    ];
    let want: Vec<String> = expected
        .iter()
        .map(|r| format!("{r} => {}", r.to_uppercase()))
        .collect();
    assert_eq!(lines(&out), want);
    for r in expected {
        let line = server.wait_line(T, |l| l.starts_with("Received")).await;
        assert!(line.contains(&format!("body='{r}'")), "{line}");
        assert!(line.contains("reply_to='dynamic-"), "{line}");
    }
}

// ----------------------------------------------------------------- Proton C

async fn c_send_receive(port: u16, n: usize, limit: Duration) {
    let (p, m) = (port.to_string(), n.to_string());
    let mut recv = Command::new(peer_bin("receive"));
    recv.args(["127.0.0.1", &p, "cq", &m]);
    let mut send = Command::new(peer_bin("send"));
    send.args(["127.0.0.1", &p, "cq", &m]);
    let (recv, send) = tokio::join!(run(recv, "C receive", limit), run(send, "C send", limit));
    assert_eq!(
        lines(&send),
        [format!("{n} messages sent and acknowledged")]
    );
    let got = lines(&recv);
    assert_eq!(got.len(), n + 1);
    for (i, line) in got[..n].iter().enumerate() {
        assert_eq!(line, &format!("{{\"sequence\"={}}}", i + 1), "line {i}");
    }
    assert_eq!(got[n], format!("{n} messages received"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_send_receive_via_our_broker() {
    let broker = Broker::start(&[]).await;
    c_send_receive(broker.port, 10_000, Duration::from_secs(60)).await;
}

// --------------------------------------------------------------------- rhea

const RHEA_SEND: &str = r#"
const c = require('rhea');
const [port, total] = [+process.argv[1], +process.argv[2]];
let sent = 0, confirmed = 0;
c.on('sendable', (ctx) => {
  while (ctx.sender.sendable() && sent < total) {
    sent++;
    ctx.sender.send({message_id: sent, body: 'rhea ' + sent});
  }
});
c.on('accepted', (ctx) => {
  if (++confirmed === total) { console.log(`${total} accepted`); ctx.connection.close(); }
});
c.on('rejected', (ctx) => { console.error('rejected'); process.exit(1); });
c.on('error', (e) => { console.error(e); process.exit(1); });
c.connect({host: '127.0.0.1', port}).open_sender('rheaq');
"#;

const RHEA_RECV: &str = r#"
const c = require('rhea');
const [port, total] = [+process.argv[1], +process.argv[2]];
let received = 0;
c.on('message', (ctx) => {
  console.log(ctx.message.body);
  if (++received === total) { ctx.receiver.detach(); ctx.connection.close(); }
});
c.on('error', (e) => { console.error(e); process.exit(1); });
c.connect({host: '127.0.0.1', port}).open_receiver('rheaq');
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rhea_sender_and_receiver_via_our_broker() {
    let broker = Broker::start(&[]).await;
    let n = 1000;
    let node = |script: &str| {
        let mut cmd = Command::new("node");
        cmd.env("NODE_PATH", rhea_path()).args([
            "-e",
            script,
            &broker.port.to_string(),
            &n.to_string(),
        ]);
        cmd
    };
    let (recv, send) = tokio::join!(
        run(node(RHEA_RECV), "rhea receiver", T * 3),
        run(node(RHEA_SEND), "rhea sender", T * 3)
    );
    assert_eq!(lines(&send), [format!("{n} accepted")]);
    let want: Vec<String> = (1..=n).map(|i| format!("rhea {i}")).collect();
    assert_eq!(lines(&recv), want);
}

// ----------------------------------------------------------- our own client

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn competing_consumers_share_messages() {
    let broker = Broker::start(&[]).await;
    let seen = Arc::new(Mutex::new(Vec::<(usize, String)>::new()));
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut conns = Vec::new();
    for who in 0..2 {
        let conn = aqueduct::connect(broker.url()).await.unwrap();
        let mut receiver = conn.open_receiver("shared").await.unwrap();
        let (seen, done_tx) = (seen.clone(), done_tx.clone());
        tokio::spawn(async move {
            while let Some(Ok(d)) = receiver.next().await {
                let body = d.message().unwrap().body().as_str().unwrap().to_string();
                seen.lock().unwrap().push((who, body));
                let _ = done_tx.send(());
            }
        });
        conns.push(conn);
    }
    let conn = aqueduct::connect(broker.url()).await.unwrap();
    let sender = conn.open_sender("shared").await.unwrap();
    let sends: Vec<_> = (0..100).map(|i| sender.send(format!("m{i}"))).collect();
    for outcome in futures::future::join_all(sends).await {
        assert_eq!(outcome.unwrap(), Outcome::Accepted);
    }
    for _ in 0..100 {
        timeout(T, done_rx.recv())
            .await
            .expect("100 messages within 10 s");
    }
    // Nothing more comes (no duplicates).
    assert!(timeout(Duration::from_millis(300), done_rx.recv())
        .await
        .is_err());
    let seen = seen.lock().unwrap();
    let bodies: HashSet<&str> = seen.iter().map(|(_, b)| b.as_str()).collect();
    assert_eq!(bodies.len(), 100, "duplicates or losses");
    for who in 0..2 {
        let n = seen.iter().filter(|(w, _)| *w == who).count();
        assert!(n > 0, "receiver {who} got none of the 100 messages");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn released_message_goes_to_another_receiver() {
    let broker = Broker::start(&[]).await;
    let a_conn = aqueduct::connect(broker.url()).await.unwrap();
    let mut a = a_conn
        .open_receiver_with(ReceiverOptions::new("rel").auto_accept(false))
        .await
        .unwrap();
    let sender = a_conn.open_sender("rel").await.unwrap();
    let outcome = sender.send("only one");
    let d = timeout(T, a.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(d.message().unwrap().body().as_str(), Some("only one"));
    let b_conn = aqueduct::connect(broker.url()).await.unwrap();
    let mut b = b_conn.open_receiver("rel").await.unwrap();
    d.release().await.unwrap();
    // a leaves, so the redelivery can only go to b (whether the broker saw
    // b's subscription before the release or not).
    drop(d);
    a.close().await.unwrap();
    let d = timeout(T, b.next())
        .await
        .expect("the released message is redelivered to b")
        .unwrap()
        .unwrap();
    assert_eq!(d.message().unwrap().body().as_str(), Some("only one"));
    drop(d); // accepted
    assert_eq!(
        timeout(T, outcome).await.unwrap().unwrap(),
        Outcome::Accepted
    );
    // a's stream ended with its close.
    assert!(timeout(T, a.next()).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_in_flight_to_a_dead_consumer_come_back() {
    let broker = Broker::start(&[]).await;
    let conn = aqueduct::connect(broker.url()).await.unwrap();
    let sender = conn.open_sender("dead").await.unwrap();
    for i in 0..5 {
        assert!(sender.send(format!("d{i}")).await.unwrap().is_accepted());
    }
    // A consumer takes them all (unsettled) and goes away.
    let doomed = aqueduct::connect(broker.url()).await.unwrap();
    let mut r = doomed
        .open_receiver_with(ReceiverOptions::new("dead").auto_accept(false))
        .await
        .unwrap();
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(timeout(T, r.next()).await.unwrap().unwrap().unwrap());
    }
    std::mem::forget(held); // never settled
    std::mem::forget(r);
    doomed.close().await.unwrap();
    let mut r2 = conn.open_receiver("dead").await.unwrap();
    for i in 0..5 {
        let d = timeout(T, r2.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(
            d.message().unwrap().body().as_str(),
            Some(format!("d{i}").as_str())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_reply_queue() {
    let broker = Broker::start(&[]).await;
    let conn = aqueduct::connect(broker.url()).await.unwrap();
    let mut replies = conn.open_dynamic_receiver().await.unwrap();
    let address = replies.address().expect("a dynamic address").to_string();
    assert!(address.starts_with("dynamic-"), "{address}");
    let other = aqueduct::connect(broker.url()).await.unwrap();
    let sender = other.open_sender(address.as_str()).await.unwrap();
    assert!(sender
        .send("to the reply queue")
        .await
        .unwrap()
        .is_accepted());
    let anonymous = other.open_anonymous_sender().await.unwrap();
    let mut m = Message::from("via anonymous relay");
    m.set_to(address.as_str());
    assert!(anonymous.send(m).await.unwrap().is_accepted());
    for want in ["to the reply queue", "via anonymous relay"] {
        let d = timeout(T, replies.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(d.message().unwrap().body().as_str(), Some(want));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browse_sees_without_taking() {
    let broker = Broker::start(&[]).await;
    let conn = aqueduct::connect(broker.url()).await.unwrap();
    let sender = conn.open_sender("browsed").await.unwrap();
    for i in 0..3 {
        assert!(sender.send(format!("b{i}")).await.unwrap().is_accepted());
    }
    for _ in 0..2 {
        let mut browser = conn
            .open_receiver_with(ReceiverOptions::new("browsed").browse())
            .await
            .unwrap();
        for i in 0..3 {
            let d = timeout(T, browser.next()).await.unwrap().unwrap().unwrap();
            assert_eq!(
                d.message().unwrap().body().as_str(),
                Some(format!("b{i}").as_str())
            );
        }
        browser.close().await.unwrap();
    }
    let mut r = conn.open_receiver("browsed").await.unwrap();
    for i in 0..3 {
        let d = timeout(T, r.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(
            d.message().unwrap().body().as_str(),
            Some(format!("b{i}").as_str())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_mib_message() {
    let broker = Broker::start(&[]).await;
    let conn = aqueduct::connect(broker.url()).await.unwrap();
    let mut r = conn.open_receiver("big").await.unwrap();
    let sender = conn.open_sender("big").await.unwrap();
    let body: Vec<u8> = (0..10 * 1024 * 1024)
        .map(|i: u32| (i % 251) as u8)
        .collect();
    let body = Bytes::from(body);
    let outcome = timeout(T * 3, sender.send(Message::new(body.clone())))
        .await
        .expect("sent within 30 s");
    assert!(outcome.unwrap().is_accepted());
    let d = timeout(T * 3, r.next()).await.unwrap().unwrap().unwrap();
    assert!(
        d.message().unwrap().body().as_bytes() == Some(&body[..]),
        "body differs"
    );
}

// -------------------------------------------------------- misbehaving peers

/// A raw AMQP peer writing frames by hand.
struct Raw {
    stream: TcpStream,
    buf: BytesMut,
    decoder: FrameDecoder,
}

impl Raw {
    /// Connects, exchanges AMQP headers (no SASL), sends open and begin.
    async fn open(port: u16) -> Raw {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        stream.write_all(&ProtocolId::Amqp.header()).await.unwrap();
        let mut h = [0u8; 8];
        timeout(T, stream.read_exact(&mut h))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(h, ProtocolId::Amqp.header());
        let mut out = BytesMut::new();
        let open = Open {
            container_id: "raw".into(),
            ..Default::default()
        };
        encode_frame(&mut out, 0, &open, &[]);
        let begin = Begin {
            next_outgoing_id: 0,
            incoming_window: 1 << 20,
            outgoing_window: 1 << 20,
            ..Default::default()
        };
        encode_frame(&mut out, 0, &begin, &[]);
        stream.write_all(&out).await.unwrap();
        Raw {
            stream,
            buf: BytesMut::new(),
            decoder: FrameDecoder::default(),
        }
    }

    /// The next performative, or `None` at end of stream.
    async fn next(&mut self) -> Option<Performative> {
        loop {
            match self.decoder.decode(&mut self.buf).expect("a valid frame") {
                Some(Frame::Amqp { performative, .. }) => return Some(performative),
                Some(_) => continue,
                None => {}
            }
            let n = timeout(T, self.stream.read_buf(&mut self.buf))
                .await
                .expect("the broker went silent")
                .ok()?;
            if n == 0 {
                return None;
            }
        }
    }

    /// Reads until `f` picks a performative.
    async fn until<R>(&mut self, mut f: impl FnMut(&Performative) -> Option<R>) -> R {
        loop {
            let p = self.next().await.expect("the broker closed the connection");
            if let Some(r) = f(&p) {
                return r;
            }
        }
    }
}

/// Reads until end of stream; the bytes read and how long it took.
async fn read_to_eof(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, Duration) {
    let t0 = Instant::now();
    let mut all = Vec::new();
    let r = timeout(limit, async {
        let mut b = [0u8; 4096];
        loop {
            match stream.read(&mut b).await {
                Ok(0) | Err(_) => return,
                Ok(n) => all.extend_from_slice(&b[..n]),
            }
        }
    })
    .await;
    assert!(r.is_ok(), "not disconnected within {limit:?}");
    (all, t0.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_peer_is_dropped_after_the_handshake_timeout() {
    let broker = Broker::start(&[]).await; // --handshake-timeout-ms 500
    let mut silent = TcpStream::connect(("127.0.0.1", broker.port))
        .await
        .unwrap();
    roundtrip(&broker, "during-silent").await;
    let (bytes, elapsed) = read_to_eof(&mut silent, T).await;
    assert!(bytes.is_empty(), "{bytes:02x?}");
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    roundtrip(&broker, "after-silent").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_sending_garbage_is_dropped() {
    let broker = Broker::start(&[]).await;
    let mut bad = TcpStream::connect(("127.0.0.1", broker.port))
        .await
        .unwrap();
    bad.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\x00\xff\x13garbage")
        .await
        .unwrap();
    roundtrip(&broker, "during-garbage").await;
    let (bytes, elapsed) = read_to_eof(&mut bad, T).await;
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    // Spec 2.2: a server answers a bad header with one it supports, then
    // closes.
    assert_eq!(bytes, ProtocolId::Sasl.header(), "{bytes:02x?}");
    roundtrip(&broker, "after-garbage").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_opening_ten_thousand_links_is_closed() {
    let broker = Broker::start(&[]).await;
    let raw = Raw::open(broker.port).await;
    let Raw {
        stream,
        buf,
        decoder,
    } = raw;
    let (rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        let mut out = BytesMut::new();
        for i in 0..10_000u32 {
            let a = Attach {
                name: format!("link-{i}"),
                handle: i,
                role: Role::Sender,
                source: Some(Source::default()),
                target: Some(Target::new("links").into()),
                initial_delivery_count: Some(0),
                ..Default::default()
            };
            encode_frame(&mut out, 0, &a, &[]);
        }
        // The broker may stop reading; don't care.
        let _ = wr.write_all(&out).await;
        wr
    });
    let mut raw = Raw {
        stream: rd.reunite(writer.await.unwrap()).unwrap(),
        buf,
        decoder,
    };
    roundtrip(&broker, "during-links").await;
    let mut attached = 0;
    let error = raw
        .until(|p| match p {
            Performative::Attach(_) => {
                attached += 1;
                None
            }
            Performative::Close(c) => Some(c.error.clone()),
            _ => None,
        })
        .await
        .expect("a close with an error");
    assert_eq!(
        error.condition,
        condition::RESOURCE_LIMIT_EXCEEDED,
        "{error:?}"
    );
    assert!(attached <= 1024, "{attached} links attached");
    drop(raw);
    roundtrip(&broker, "after-links").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_sending_without_credit_does_not_disturb_the_broker() {
    let broker = Broker::start(&["--credit", "10"]).await;
    let mut raw = Raw::open(broker.port).await;
    let mut out = BytesMut::new();
    let a = Attach {
        name: "flooder".into(),
        handle: 0,
        role: Role::Sender,
        source: Some(Source::default()),
        target: Some(Target::new("flooded").into()),
        initial_delivery_count: Some(0),
        ..Default::default()
    };
    encode_frame(&mut out, 0, &a, &[]);
    raw.stream.write_all(&out).await.unwrap();
    raw.until(|p| matches!(p, Performative::Attach(_)).then_some(()))
        .await;
    // Credit 10; send 1000.
    let mut payload = BytesMut::new();
    Message::from("flood").encode(&mut payload);
    let mut out = BytesMut::new();
    for i in 0..1000u32 {
        let t = Transfer {
            handle: 0,
            delivery_id: Some(i),
            delivery_tag: Some(Bytes::from(i.to_be_bytes().to_vec())),
            message_format: Some(0),
            settled: Some(true),
            ..Default::default()
        };
        encode_frame(&mut out, 0, &t, &payload);
    }
    raw.stream.write_all(&out).await.unwrap();
    // Overshoot is tolerated within the session window since the broker's
    // last flow (RabbitMQ overshoots under load); the link is detached with
    // amqp:link:transfer-limit-exceeded past it (tests/bad_peers.rs checks
    // that against a receiver that never tops up). Here the broker keeps
    // serving others during and after the flood, and queues at most what
    // was sent.
    roundtrip(&broker, "during-flood").await;
    drop(raw);
    roundtrip(&broker, "after-flood").await;
    let conn = aqueduct::connect(broker.url()).await.unwrap();
    let mut r = conn.open_receiver("flooded").await.unwrap();
    let mut n = 0;
    while let Ok(Some(Ok(d))) = timeout(Duration::from_millis(500), r.next()).await {
        assert_eq!(d.message().unwrap().body().as_str(), Some("flood"));
        n += 1;
    }
    assert!((10..=1000).contains(&n), "{n} messages queued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_that_never_opens_gets_a_close_with_an_error() {
    let broker = Broker::start(&[]).await; // --handshake-timeout-ms 500
    let mut raw = TcpStream::connect(("127.0.0.1", broker.port))
        .await
        .unwrap();
    raw.write_all(&ProtocolId::Amqp.header()).await.unwrap();
    let mut raw = Raw {
        stream: raw,
        buf: BytesMut::new(),
        decoder: FrameDecoder::default(),
    };
    let t0 = Instant::now();
    let mut h = [0u8; 8];
    timeout(T, raw.stream.read_exact(&mut h))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(h, ProtocolId::Amqp.header());
    roundtrip(&broker, "during-no-open").await;
    let error = raw
        .until(|p| match p {
            Performative::Close(c) => Some(c.error.clone()),
            _ => None,
        })
        .await
        .expect("a close with an error");
    assert_eq!(
        error.condition,
        condition::RESOURCE_LIMIT_EXCEEDED,
        "{error:?}"
    );
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    // The connection ends (after the broker's close timeout at most).
    let (_, _) = read_to_eof(&mut raw.stream, T).await;
    roundtrip(&broker, "after-no-open").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_without_credit_holds_at_most_its_prefetch() {
    let broker = Broker::start(&["--prefetch", "16"]).await;
    let conn = aqueduct::connect(broker.url()).await.unwrap();
    // A grants no credit at all; B takes what it is given.
    let mut a = conn
        .open_receiver_with(ReceiverOptions::new("slow").credit_window(0))
        .await
        .unwrap();
    let mut b = conn.open_receiver("slow").await.unwrap();
    let sender = conn.open_sender("slow").await.unwrap();
    let sends: Vec<_> = (0..200).map(|i| sender.send(format!("s{i}"))).collect();
    let mut got = HashSet::new();
    for _ in 0..200 - 16 {
        let d = timeout(T, b.next())
            .await
            .expect("b is served")
            .unwrap()
            .unwrap();
        got.insert(d.message().unwrap().body().as_str().unwrap().to_string());
    }
    // What A holds comes back to the queue when A goes.
    a.close().await.unwrap();
    for _ in 0..16 {
        let d = timeout(T, b.next())
            .await
            .expect("a's share comes back")
            .unwrap()
            .unwrap();
        got.insert(d.message().unwrap().body().as_str().unwrap().to_string());
    }
    assert_eq!(got.len(), 200);
    for outcome in futures::future::join_all(sends).await {
        assert!(outcome.unwrap().is_accepted());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modified_message_is_redelivered_with_its_count() {
    let broker = Broker::start(&[]).await;
    let conn = aqueduct::connect(broker.url()).await.unwrap();
    let mut r = conn
        .open_receiver_with(ReceiverOptions::new("mod").auto_accept(false))
        .await
        .unwrap();
    let sender = conn.open_sender("mod").await.unwrap();
    assert!(sender.send("again").await.unwrap().is_accepted());
    let d = timeout(T, r.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(d.message().unwrap().delivery_count(), 0);
    d.modify(true, false, None).await.unwrap();
    let d = timeout(T, r.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(d.message().unwrap().body().as_str(), Some("again"));
    assert_eq!(d.message().unwrap().delivery_count(), 1);
    d.reject("test:rejected", "no thanks").await.unwrap();
    // Rejected: gone for good.
    assert!(timeout(Duration::from_millis(300), r.next()).await.is_err());
}

// ------------------------------------------------ bounded and deleted queues

/// The next line of `proc` that satisfies `f` within `limit`, or `None`.
async fn line_within(proc: &mut Proc, limit: Duration, f: impl Fn(&str) -> bool) -> Option<String> {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match timeout(left, proc.lines.recv()).await {
            Ok(Some(line)) if f(&line) => return Some(line),
            Ok(Some(line)) => proc.seen.push(line),
            Ok(None) => panic!("{} exited; its output: {:?}", proc.name, proc.seen),
            Err(_) => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_stops_its_producer_and_loses_nothing() {
    let broker = Broker::start(&["--max-queue-depth", "1000"]).await;
    let conn = aqueduct::connect(broker.url()).await.unwrap();
    let sender = conn.open_sender("bounded").await.unwrap();
    const N: usize = 1500;
    let mut sends: Vec<_> = (1..=N)
        .map(|i| Box::pin(sender.send(i.to_string())))
        .collect();
    // The queue takes 1000 and has no consumer...
    for (i, send) in sends.iter_mut().take(1000).enumerate() {
        let outcome = timeout(Duration::from_secs(30), send)
            .await
            .unwrap_or_else(|_| panic!("send {} of the first 1000 timed out", i + 1));
        assert_eq!(outcome.unwrap(), Outcome::Accepted);
    }
    // ... and gives no credit for the 1001st.
    assert!(
        timeout(Duration::from_secs(1), &mut sends[1000])
            .await
            .is_err(),
        "the 1001st send into a full queue completed"
    );
    // A consumer drains it: every message once, in order; the producer's
    // pending sends then complete.
    let other = aqueduct::connect(broker.url()).await.unwrap();
    let mut r = other.open_receiver("bounded").await.unwrap();
    for i in 1..=N {
        let d = timeout(T, r.next())
            .await
            .unwrap_or_else(|_| panic!("message {i} did not arrive"))
            .expect("the stream goes on")
            .unwrap();
        assert_eq!(
            d.message().unwrap().body().as_str(),
            Some(i.to_string().as_str())
        );
    }
    for (i, send) in sends.into_iter().enumerate().skip(1000) {
        let outcome = timeout(T, send)
            .await
            .unwrap_or_else(|_| panic!("send {} still pending after the drain", i + 1));
        assert_eq!(outcome.unwrap(), Outcome::Accepted);
    }
    assert!(
        timeout(Duration::from_millis(300), r.next()).await.is_err(),
        "a message came twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_full_of_bytes_stops_its_producer() {
    // 1 KiB messages, 20 KB per queue, credit 10: about 20 fit, and at
    // most one credit window more is on its way when the queue fills.
    let broker = Broker::start(&["--max-queue-bytes", "20000", "--credit", "10"]).await;
    let conn = aqueduct::connect(broker.url()).await.unwrap();
    let sender = conn.open_sender("bytes").await.unwrap();
    let body = "x".repeat(1024);
    const N: usize = 60;
    let mut sends: Vec<_> = (0..N)
        .map(|i| {
            let mut m = Message::from(body.as_str());
            m.set_id(i as u64);
            Box::pin(sender.send(m))
        })
        .collect();
    for send in sends.iter_mut().take(19) {
        assert!(timeout(T, send).await.unwrap().unwrap().is_accepted());
    }
    // Past the limit plus one window, a send waits for credit.
    assert!(
        timeout(Duration::from_secs(1), &mut sends[30])
            .await
            .is_err(),
        "the 31st 1 KiB send into a 20 KB queue completed"
    );
    let mut r = conn.open_receiver("bytes").await.unwrap();
    for i in 0..N as u64 {
        let d = timeout(T, r.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(
            d.message().unwrap().id(),
            Some(&aqueduct::MessageId::Ulong(i))
        );
    }
    for send in sends.into_iter().skip(19) {
        assert!(timeout(T, send).await.unwrap().unwrap().is_accepted());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_queue_is_deleted_when_its_receiver_detaches() {
    let mut broker = Broker::start(&[]).await;
    let conn = aqueduct::connect(broker.url()).await.unwrap();
    let mut replies = conn.open_dynamic_receiver().await.unwrap();
    let address = replies.address().expect("a dynamic address").to_string();
    let sender = conn.open_sender(address.as_str()).await.unwrap();
    assert!(sender.send("reply").await.unwrap().is_accepted());
    let d = timeout(T, replies.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(d.message().unwrap().body().as_str(), Some("reply"));
    drop(d);
    replies.close().await.unwrap();
    let deleted = format!("Deleted queue {address}");
    broker._proc.wait_line(T, |l| l == deleted).await;
    // The address is gone: attaching to it is refused, and a producer still
    // attached to it has its messages rejected.
    for err in [
        conn.open_receiver(address.as_str()).await.map(|_| ()),
        conn.open_sender(address.as_str()).await.map(|_| ()),
    ] {
        let e = err.expect_err("attach to a deleted dynamic queue");
        assert_eq!(e.condition(), Some("amqp:not-found"), "{e}");
    }
    let outcome = timeout(T, sender.send("too late")).await.unwrap().unwrap();
    assert!(
        matches!(outcome, Outcome::Rejected(_)),
        "a message to a deleted queue: {outcome:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_empty_queue_is_deleted() {
    let mut broker = Broker::start(&["--queue-idle-timeout-ms", "300"]).await;
    let deleted = |l: &str| l == "Deleted queue idle";
    let wait = Duration::from_millis(1500); // five idle timeouts
    let conn = aqueduct::connect(broker.url()).await.unwrap();
    let sender = conn.open_sender("idle").await.unwrap();
    assert!(sender.send("kept").await.unwrap().is_accepted());
    sender.close().await.unwrap();
    // A queue that holds a message stays.
    assert_eq!(line_within(&mut broker._proc, wait, deleted).await, None);
    let mut r = conn.open_receiver("idle").await.unwrap();
    let d = timeout(T, r.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(d.message().unwrap().body().as_str(), Some("kept"));
    d.accept().await.unwrap();
    let producer = conn.open_sender("idle").await.unwrap();
    r.close().await.unwrap();
    // An empty queue with a producer attached stays.
    assert_eq!(line_within(&mut broker._proc, wait, deleted).await, None);
    // Empty with no links: deleted after the idle time.
    producer.close().await.unwrap();
    broker._proc.wait_line(T, deleted).await;
    // The address works again (a new queue).
    roundtrip(&broker, "idle").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_of_one_message_passes_a_stream_through() {
    // Full after each message, so every message waits for the one before
    // it to be consumed: the credit resumes each time.
    let broker = Broker::start(&["--max-queue-depth", "1"]).await;
    let conn = aqueduct::connect(broker.url()).await.unwrap();
    let sender = conn.open_sender("one").await.unwrap();
    let sends: Vec<_> = (0..50).map(|i| sender.send(format!("o{i}"))).collect();
    let mut r = conn.open_receiver("one").await.unwrap();
    for i in 0..50 {
        let d = timeout(T, r.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(
            d.message().unwrap().body().as_str(),
            Some(format!("o{i}").as_str())
        );
    }
    for outcome in futures::future::join_all(sends).await {
        assert!(outcome.unwrap().is_accepted());
    }
}
