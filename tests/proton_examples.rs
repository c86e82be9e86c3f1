//! Our examples (and the library) against Qpid Proton's own: Proton's Python
//! `broker.py`, `simple_send.py`, `simple_recv.py` and `server.py`, Proton's
//! C `broker`, `send` and `receive` (built into peers/bin by
//! `scripts/install-peers`), and a private RabbitMQ node for the failures.
//!
//! The peers are found through scripts/env.sh's variables, with the same
//! defaults. A missing peer FAILS the test (it is never skipped). Every wait
//! has a deadline, every child process is killed when its guard drops, and
//! ports are chosen free by binding port 0.

use aqueduct::types::{Map, Value};
use aqueduct::{Body, Message, ReceiverOptions};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use std::future::Future;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Once;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

// ---- where the peers are ---------------------------------------------------

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn env_path(var: &str, default: PathBuf) -> PathBuf {
    std::env::var_os(var).map(PathBuf::from).unwrap_or(default)
}

/// A peer's file, which must exist: a missing peer fails the test.
fn need(path: PathBuf) -> PathBuf {
    assert!(
        path.exists(),
        "missing peer {} (run scripts/install-peers; see scripts/env.sh)",
        path.display()
    );
    path
}

fn python() -> PathBuf {
    need(env_path("PROTON_PYTHON", "/usr/bin/python3".into()))
}

fn proton_python_example(name: &str) -> PathBuf {
    let dir = env_path("PROTON_EXAMPLES", "/usr/share/proton/examples".into());
    need(dir.join("python").join(name))
}

fn proton_c(name: &str) -> PathBuf {
    need(
        env_path("AQUEDUCT_PEERS_DIR", root().join("peers"))
            .join("bin")
            .join(name),
    )
}

fn rabbitmq_script() -> PathBuf {
    need(env_path(
        "AQUEDUCT_RABBITMQ",
        root().join("scripts/rabbitmq"),
    ))
}

/// One of our examples, built once per test binary with the profile this
/// test was built with.
fn example(name: &str) -> PathBuf {
    static BUILD: Once = Once::new();
    // target/<profile>/deps/proton_examples-<hash>
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    BUILD.call_once(|| {
        let mut cargo = Command::new(env!("CARGO"));
        cargo.args(["build", "--examples"]).current_dir(root());
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cargo.arg("--release");
        }
        let status = cargo.status().expect("run cargo build --examples");
        assert!(status.success(), "cargo build --examples failed: {status}");
    });
    need(profile_dir.join("examples").join(name))
}

// ---- processes ---------------------------------------------------------------

/// A child process, killed when dropped. Its stdout is read line by line as
/// it comes (for readiness lines); stderr is collected.
struct Proc {
    name: String,
    child: Child,
    lines: mpsc::Receiver<String>,
    stdout: Vec<String>,
    stderr: Option<JoinHandle<String>>,
}

struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Proc {
    fn spawn(name: &str, cmd: &mut Command) -> Proc {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: cannot start {cmd:?}: {e}"));
        let out = child.stdout.take().expect("piped stdout");
        let err = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = thread::spawn(move || {
            let mut s = String::new();
            let _ = BufReader::new(err).read_to_string(&mut s);
            s
        });
        Proc {
            name: name.to_string(),
            child,
            lines,
            stdout: Vec::new(),
            stderr: Some(stderr),
        }
    }

    fn report(&mut self) -> String {
        while let Ok(l) = self.lines.try_recv() {
            self.stdout.push(l);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let stderr = self.stderr.take().and_then(|h| h.join().ok());
        format!(
            "{}: stdout:\n{}\nstderr:\n{}",
            self.name,
            self.stdout.join("\n"),
            stderr.unwrap_or_default()
        )
    }

    /// Waits for a stdout line that `matches`, and returns it.
    fn line(&mut self, what: &str, matches: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(l) => {
                    self.stdout.push(l.clone());
                    if matches(&l) {
                        return l;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("no {what} within {WAIT:?}; {}", self.report())
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("exited before {what}; {}", self.report())
                }
            }
        }
    }

    /// Waits until something listens on 127.0.0.1:`port` (checked with
    /// `ss`, so no probe connection disturbs the peer).
    fn listening(&mut self, port: u16) {
        let deadline = Instant::now() + WAIT;
        loop {
            let ss = Command::new("ss")
                .args(["-Hltn", &format!("sport = :{port}")])
                .output()
                .expect("run ss (iproute2)");
            if !ss.stdout.is_empty() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "exited ({status}) before listening on {port}; {}",
                    self.report()
                );
            }
            if Instant::now() > deadline {
                panic!("not listening on {port} within {WAIT:?}; {}", self.report());
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit (killing it after `timeout`).
    fn finish(mut self, timeout: Duration) -> Finished {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() > deadline {
                panic!("did not finish within {timeout:?}; {}", self.report());
            }
            thread::sleep(Duration::from_millis(10));
        };
        // The reader thread ends at EOF, closing the channel.
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.stdout.push(l);
        }
        let stderr = self.stderr.take().and_then(|h| h.join().ok());
        Finished {
            status,
            stdout: self.stdout.iter().map(|l| format!("{l}\n")).collect(),
            stderr: stderr.unwrap_or_default(),
        }
    }

    /// Waits for exit 0 and returns stdout.
    fn success(self, timeout: Duration) -> String {
        let name = self.name.clone();
        let f = self.finish(timeout);
        assert!(
            f.status.success(),
            "{name} failed ({}); stdout:\n{}\nstderr:\n{}",
            f.status,
            f.stdout,
            f.stderr
        );
        f.stdout
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(name: &str, program: PathBuf, args: &[&str]) -> Proc {
    Proc::spawn(name, Command::new(program).args(args))
}

fn run_python(name: &str, script: &str, args: &[&str]) -> Proc {
    let mut cmd = Command::new(python());
    cmd.arg("-u").arg(proton_python_example(script)).args(args);
    Proc::spawn(name, &mut cmd)
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    l.local_addr().unwrap().port()
}

// ---- brokers -------------------------------------------------------------

/// Proton's broker.py on a free port; its "HOST:PORT".
fn python_broker() -> (Proc, String) {
    let port = free_port();
    let host = format!("127.0.0.1:{port}");
    let mut broker = run_python("broker.py", "broker.py", &["-a", &host]);
    broker.listening(port);
    (broker, host)
}

/// Proton's C broker on a port it chooses; its "HOST:PORT".
fn c_broker() -> (Proc, String) {
    let mut broker = run("C broker", proton_c("broker"), &["127.0.0.1", "0"]);
    let line = broker.line("\"listening on PORT\"", |l| l.starts_with("listening on "));
    let port: u16 = line["listening on ".len()..].trim().parse().expect("port");
    (broker, format!("127.0.0.1:{port}"))
}

/// `{'sequence': 1}` ... `{'sequence': n}`, one per line.
fn sequence_lines(n: u64) -> String {
    (1..=n).map(|i| format!("{{'sequence': {i}}}\n")).collect()
}

/// Our simple_send to `host`/`address`, which must confirm all.
fn our_simple_send(host: &str, address: &str, n: u64) {
    let url = format!("{host}/{address}");
    let out = run(
        "simple_send",
        example("simple_send"),
        &["-a", &url, "-m", &n.to_string()],
    )
    .success(WAIT);
    assert_eq!(out, "all messages confirmed\n");
}

/// Our simple_recv from `host`/`address`, which must print `expected`.
fn our_simple_recv(host: &str, address: &str, n: u64, expected: &str) {
    let url = format!("{host}/{address}");
    let out = run(
        "simple_recv",
        example("simple_recv"),
        &["-a", &url, "-m", &n.to_string()],
    )
    .success(WAIT);
    assert_eq!(out, expected, "simple_recv printed something else");
}

fn python_simple_send(host: &str, address: &str, n: u64) {
    let url = format!("{host}/{address}");
    let out = run_python(
        "simple_send.py",
        "simple_send.py",
        &["-a", &url, "-m", &n.to_string()],
    )
    .success(WAIT);
    assert_eq!(out, "all messages confirmed\n");
}

fn python_simple_recv(host: &str, address: &str, n: u64) -> String {
    let url = format!("{host}/{address}");
    run_python(
        "simple_recv.py",
        "simple_recv.py",
        &["-a", &url, "-m", &n.to_string()],
    )
    .success(WAIT)
}

/// Runs async library code on a fresh runtime, with a deadline.
fn block_on<F: Future>(what: &str, timeout: Duration, fut: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        tokio::time::timeout(timeout, fut)
            .await
            .unwrap_or_else(|_| panic!("{what}: not done within {timeout:?}"))
    })
}

// ---- (1), (2): simple_send / simple_recv through broker.py ---------------------

#[test]
fn our_simple_send_to_python_simple_recv_through_broker_py() {
    let (_broker, host) = python_broker();
    our_simple_send(&host, "examples", 100);
    assert_eq!(
        python_simple_recv(&host, "examples", 100),
        sequence_lines(100)
    );
}

#[test]
fn python_simple_send_to_our_simple_recv_through_broker_py() {
    let (_broker, host) = python_broker();
    python_simple_send(&host, "examples", 100);
    our_simple_recv(&host, "examples", 100, &sequence_lines(100));
}

// ---- (3): 10 MiB messages both ways through broker.py -------------------------

const BIG: usize = 10 * 1024 * 1024;

/// 0, 1, ..., 250, 0, 1, ...: any shifted, dropped or repeated chunk shows.
fn big_body() -> Bytes {
    (0..BIG)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into()
}

const PY_BIG: &str = r#"
import sys
from proton import Message
from proton.utils import BlockingConnection
mode, url, address, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
expected = (bytes(range(251)) * (size // 251 + 1))[:size]
conn = BlockingConnection(url, timeout=60)
if mode == "send":
    conn.create_sender(address).send(Message(id=1, body=expected))
    print("sent", size)
else:
    receiver = conn.create_receiver(address)
    body = receiver.receive(timeout=60).body
    receiver.accept()
    print("received", len(body), "intact" if body == expected else "CORRUPT")
conn.close()
"#;

fn python_big(mode: &str, host: &str, address: &str) -> String {
    let mut cmd = Command::new(python());
    cmd.args(["-c", PY_BIG, mode, host, address, &BIG.to_string()]);
    Proc::spawn(&format!("python BlockingConnection {mode}"), &mut cmd).success(WAIT)
}

async fn send_big(url: &str, address: &str) {
    let conn = aqueduct::connect(url).await.expect("connect");
    let sender = conn.open_sender(address).await.expect("open sender");
    let message = Message::builder().id(1u64).body(big_body()).build();
    let outcome = sender.send(message).await.expect("send 10 MiB");
    assert!(
        outcome.is_accepted(),
        "10 MiB message not accepted: {outcome:?}"
    );
    conn.close().await.expect("close");
}

async fn receive_big(url: &str, address: &str) {
    let conn = aqueduct::connect(url).await.expect("connect");
    let mut receiver = conn.open_receiver(address).await.expect("open receiver");
    let delivery = receiver
        .next()
        .await
        .expect("a delivery")
        .expect("no error");
    // broker.py re-encodes each message (Proton's Python Message), and a
    // bytes body goes out as an amqp-value binary: take either form.
    let body = match delivery.message().unwrap().body() {
        Body::Value(Value::Binary(b)) => &b[..],
        other => other.as_bytes().expect("a binary body"),
    };
    assert_eq!(body.len(), BIG, "10 MiB body length");
    assert!(body == big_body(), "10 MiB body corrupted");
    delivery.accept().await.expect("accept");
    conn.close().await.expect("close");
}

#[test]
fn ten_mib_messages_both_ways_through_broker_py() {
    let (_broker, host) = python_broker();
    let url = format!("amqp://{host}");
    // Ours -> broker.py -> ours.
    block_on("10 MiB ours -> ours", WAIT, send_big(&url, "big1"));
    block_on("10 MiB ours -> ours", WAIT, receive_big(&url, "big1"));
    // Ours -> broker.py -> Proton.
    block_on("10 MiB ours -> Proton", WAIT, send_big(&url, "big2"));
    let out = python_big("receive", &host, "big2");
    assert_eq!(out, format!("received {BIG} intact\n"));
    // Proton -> broker.py -> ours.
    assert_eq!(python_big("send", &host, "big3"), format!("sent {BIG}\n"));
    block_on("10 MiB Proton -> ours", WAIT, receive_big(&url, "big3"));
}

// ---- (4): 100,000 pipelined messages through broker.py ------------------------

#[test]
fn hundred_thousand_pipelined_messages_through_broker_py() {
    const N: u64 = 100_000;
    let (_broker, host) = python_broker();
    let url = format!("amqp://{host}");
    block_on("100,000 messages", Duration::from_secs(600), async {
        let conn = aqueduct::connect(url.as_str()).await.expect("connect");
        let mut receiver = conn
            .open_receiver_with(ReceiverOptions::new("many").credit_window(500))
            .await
            .expect("open receiver");
        let sender = conn.open_sender("many").await.expect("open sender");
        let send_all = futures::stream::iter(1..=N)
            .map(|i| {
                let body: Map = [("sequence", i as i64)].into_iter().collect();
                sender.send(Message::builder().id(i).body(body).build())
            })
            .buffer_unordered(1024)
            .try_for_each(|outcome| async move {
                assert!(outcome.is_accepted(), "not accepted: {outcome:?}");
                Ok::<(), aqueduct::Error>(())
            });
        let receive_all = async {
            for expected in 1..=N {
                let delivery = receiver
                    .next()
                    .await
                    .expect("a delivery")
                    .expect("no error");
                let body = delivery
                    .message()
                    .unwrap()
                    .body()
                    .as_value()
                    .and_then(|v| match v {
                        Value::Map(m) => m.get_str("sequence").cloned(),
                        _ => None,
                    });
                assert_eq!(
                    body,
                    Some(Value::Long(expected as i64)),
                    "message {expected}"
                );
            }
        };
        let (sent, ()) = futures::join!(send_all, receive_all);
        sent.expect("send all");
        conn.close().await.expect("close");
    });
}

// ---- (5): the same through Proton's C broker, and C send / receive -----------

#[test]
fn examples_through_c_broker() {
    let (_broker, host) = c_broker();
    // Ours -> C broker -> Proton Python.
    our_simple_send(&host, "q1", 100);
    assert_eq!(python_simple_recv(&host, "q1", 100), sequence_lines(100));
    // Proton Python -> C broker -> ours.
    python_simple_send(&host, "q2", 100);
    our_simple_recv(&host, "q2", 100, &sequence_lines(100));
    // Proton C send -> C broker -> ours.
    let (h, p) = host.split_once(':').unwrap();
    let out = run("C send", proton_c("send"), &[h, p, "q3", "100"]).success(WAIT);
    assert_eq!(out, "100 messages sent and acknowledged\n");
    our_simple_recv(&host, "q3", 100, &sequence_lines(100));
    // Ours -> C broker -> Proton C receive (pn_inspect format).
    our_simple_send(&host, "q4", 100);
    let out = run("C receive", proton_c("receive"), &[h, p, "q4", "100"]).success(WAIT);
    let expected: String = (1..=100)
        .map(|i| format!("{{\"sequence\"={i}}}\n"))
        .chain(["100 messages received\n".to_string()])
        .collect();
    assert_eq!(out, expected);
}

// ---- (6): our client against Proton's server.py through broker.py -------------

#[test]
fn our_client_against_python_server_through_broker_py() {
    let (_broker, host) = python_broker();
    let url = format!("{host}/examples");
    let mut server = run_python("server.py", "server.py", &["-a", &url]);
    server.line("\"Listening on\"", |l| l.starts_with("Listening on"));
    let out = run("client", example("client"), &["-a", &url]).success(WAIT);
    assert_eq!(
        out,
        "Twas brillig, and the slithy toves => TWAS BRILLIG, AND THE SLITHY TOVES\n\
         Did gire and gymble in the wabe. => DID GIRE AND GYMBLE IN THE WABE.\n\
         All mimsy were the borogroves, => ALL MIMSY WERE THE BOROGROVES,\n\
         And the mome raths outgrabe. => AND THE MOME RATHS OUTGRABE.\n"
    );
    // Requests given on the command line replace the default ones.
    let out = run("client", example("client"), &["-a", &url, "one", "two"]).success(WAIT);
    assert_eq!(out, "one => ONE\ntwo => TWO\n");
}

// ---- (7): Proton's clients against our direct_send / direct_recv ---------------

#[test]
fn python_simple_recv_from_our_direct_send() {
    let port = free_port();
    let host = format!("127.0.0.1:{port}");
    let mut ours = run(
        "direct_send",
        example("direct_send"),
        &["-a", &host, "-m", "100"],
    );
    ours.listening(port);
    assert_eq!(
        python_simple_recv(&host, "examples", 100),
        sequence_lines(100)
    );
    assert_eq!(ours.success(WAIT), "all messages confirmed\n");
}

#[test]
fn python_simple_send_to_our_direct_recv() {
    let port = free_port();
    let host = format!("127.0.0.1:{port}");
    let mut ours = run(
        "direct_recv",
        example("direct_recv"),
        &["-a", &host, "-m", "100"],
    );
    ours.listening(port);
    python_simple_send(&host, "examples", 100);
    assert_eq!(ours.success(WAIT), sequence_lines(100));
}

// ---- (8): failures print the error and exit non-zero ----------------------------

/// Runs one of our examples that must fail; returns its stderr.
fn our_failure(name: &str, url: &str) -> String {
    let f = run(name, example(name), &["-a", url, "-m", "1"]).finish(WAIT);
    assert_eq!(
        f.status.code(),
        Some(1),
        "{name} {url}: {}\n{}",
        f.stdout,
        f.stderr
    );
    assert!(f.stdout.is_empty(), "{name} {url} printed: {}", f.stdout);
    assert!(
        f.stderr.starts_with("error: "),
        "{name} {url}: stderr {}",
        f.stderr
    );
    f.stderr
}

#[test]
fn refused_link_fails_our_simple_send() {
    // Our direct_send refuses links that would send to it.
    let port = free_port();
    let host = format!("127.0.0.1:{port}");
    let mut direct = run("direct_send", example("direct_send"), &["-a", &host]);
    direct.listening(port);
    let err = our_failure("simple_send", &format!("{host}/examples"));
    assert!(err.contains("amqp:not-allowed"), "{err}");
}

/// A private RabbitMQ node, stopped on drop.
struct RabbitMq(u16);

impl Drop for RabbitMq {
    fn drop(&mut self) {
        let _ = Command::new(rabbitmq_script())
            .args(["stop", &self.0.to_string()])
            .stdout(Stdio::null())
            .status();
    }
}

#[test]
fn wrong_password_and_refused_links_against_rabbitmq() {
    // The node needs PORT, PORT+1 (epmd) and PORT+2 (distribution) free.
    let port = (0..100)
        .map(|_| free_port())
        .find(|&p| p < 65533 && (1..=2).all(|d| TcpListener::bind(("127.0.0.1", p + d)).is_ok()))
        .expect("a free port triple");
    let node = RabbitMq(port);
    let start = run(
        "scripts/rabbitmq start",
        rabbitmq_script(),
        &["start", &port.to_string()],
    );
    start.success(Duration::from_secs(120));
    let base = format!("amqp://guest:guest@127.0.0.1:{}", node.0);
    let bad = format!("amqp://guest:wrong@127.0.0.1:{}//queue/examples", node.0);
    for name in ["simple_send", "simple_recv"] {
        let err = our_failure(name, &bad);
        assert!(err.contains("authentication failed"), "{err}");
    }
    // RabbitMQ refuses these by ending the session with amqp:not-found.
    for (name, address) in [
        ("simple_send", "/exchange/no-such-exchange/key"),
        ("simple_recv", "/amq/queue/no-such-queue"),
    ] {
        let err = our_failure(name, &format!("{base}/{address}"));
        assert!(err.contains("(amqp:not-found)"), "{err}");
    }
    // And the right password works.
    our_simple_send(&base, "/queue/examples", 10);
    our_simple_recv(&base, "/queue/examples", 10, &sequence_lines(10));
}
