//! Soak: a million messages through our broker example (a child process)
//! by steady producer/consumer pairs, while fifty other connections open,
//! attach, send and receive a few messages and close in a loop around them.
//! Nothing may be lost (at-least-once: duplicates are counted and
//! reported) and the broker's resident memory must stay flat.
//!
//! Ignored by default; run it with `scripts/soak` (a release build). Knobs:
//! `AQUEDUCT_SOAK_MESSAGES` (default 1,000,000), `AQUEDUCT_SOAK_PAIRS`
//! (default 4), `AQUEDUCT_SOAK_CHURN` (churning connections, default 50).

use aqueduct::{Message, MessageId, Outcome, ReceiverOptions};
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::timeout;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// How long any one step may make no progress before the soak fails.
const STALL: Duration = Duration::from_secs(60);
/// Sends a producer keeps in flight.
const IN_FLIGHT: usize = 500;
/// Queue depth the broker allows (so queued messages can't pass for a leak).
const DEPTH: &str = "10000";

fn env_num(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .map(|v| v.replace(['_', ','], "").parse().expect(var))
        .unwrap_or(default)
}

/// The broker example, built in this test's profile (target/debug or
/// target/release), on a free port; killed when dropped.
struct Broker {
    child: Child,
    url: String,
    /// Queues the broker reported deleted.
    deleted: Arc<AtomicU64>,
}

impl Broker {
    async fn start() -> Broker {
        let exe = std::env::current_exe().expect("test executable path");
        let profile = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>/deps")
            .to_path_buf();
        let mut build = std::process::Command::new(env!("CARGO"));
        build
            .args(["build", "--example", "broker", "--quiet"])
            .current_dir(ROOT);
        if profile.ends_with("release") {
            build.arg("--release");
        }
        assert!(build.status().expect("cargo build").success());
        let bin: PathBuf = profile.join("examples").join("broker");
        let mut child = Command::new(&bin)
            .args(["-a", "127.0.0.1:0", "--max-queue-depth", DEPTH])
            .args(["--queue-idle-timeout-ms", "1000"])
            .kill_on_drop(true)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {}: {e}", bin.display()));
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let first = timeout(STALL, lines.next_line())
            .await
            .expect("the broker starts")
            .unwrap()
            .expect("a first line");
        let port = first
            .strip_prefix("Listening on ")
            .and_then(|a| a.rsplit(':').next())
            .unwrap_or_else(|| panic!("no port in {first:?}"));
        let url = format!("amqp://127.0.0.1:{port}");
        // Keep reading its output (a full pipe would block it).
        let deleted = Arc::new(AtomicU64::new(0));
        let d = deleted.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.starts_with("Deleted queue") {
                    d.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Broker {
            child,
            url,
            deleted,
        }
    }

    /// The broker's resident set in KiB.
    fn rss_kib(&self) -> u64 {
        let pid = self.child.id().expect("the broker is running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("its status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }
}

fn numbered(seq: u64) -> Message {
    let mut m = Message::from("soak message with a body of a typical small size, 64 bytes.");
    m.set_id(seq);
    m
}

fn seq_of(m: &Message) -> u64 {
    match m.id() {
        Some(MessageId::Ulong(n)) => *n,
        other => panic!("a message without a sequence number: {other:?}"),
    }
}

/// Sends `first..first + n` to `queue`, `IN_FLIGHT` at a time; a message
/// that is not accepted is sent again. Returns how many were sent again.
async fn produce(url: String, queue: String, first: u64, n: u64) -> u64 {
    let conn = aqueduct::connect(url.as_str())
        .await
        .expect("producer connects");
    let sender = conn
        .open_sender(queue.as_str())
        .await
        .expect("producer attaches");
    let mut pending = FuturesUnordered::new();
    let mut again = VecDeque::new();
    let (mut next, end, mut resent) = (first, first + n, 0);
    loop {
        while pending.len() < IN_FLIGHT {
            let seq = match again.pop_front() {
                Some(seq) => seq,
                None if next < end => {
                    next += 1;
                    next - 1
                }
                None => break,
            };
            let send = sender.send(numbered(seq));
            pending.push(async move { (seq, send.await) });
        }
        let Some((seq, outcome)) = timeout(STALL, pending.next())
            .await
            .expect("a send stalled")
        else {
            break;
        };
        match outcome.unwrap_or_else(|e| panic!("send {seq} failed: {e}")) {
            Outcome::Accepted => {}
            _ => {
                resent += 1;
                again.push_back(seq);
            }
        }
    }
    conn.close().await.expect("producer closes");
    resent
}

/// Receives `first..first + n` from `queue`; returns the duplicates.
async fn consume(url: String, queue: String, first: u64, n: u64, received: Arc<AtomicU64>) -> u64 {
    let conn = aqueduct::connect(url.as_str())
        .await
        .expect("consumer connects");
    let opts = ReceiverOptions::new(queue.as_str()).credit_window(500);
    let mut r = conn
        .open_receiver_with(opts)
        .await
        .expect("consumer attaches");
    let mut seen = vec![false; n as usize];
    let (mut missing, mut duplicates) = (n, 0);
    while missing > 0 {
        let d = timeout(STALL, r.next())
            .await
            .unwrap_or_else(|_| panic!("{queue}: nothing for {STALL:?}, {missing} missing"))
            .expect("the consumer's link stays")
            .expect("a good delivery");
        let seq = seq_of(d.message().unwrap());
        let slot = &mut seen[(seq - first) as usize];
        if *slot {
            duplicates += 1;
        } else {
            *slot = true;
            missing -= 1;
            received.fetch_add(1, Ordering::Relaxed);
        }
    }
    conn.close().await.expect("consumer closes");
    duplicates
}

/// One short-lived connection after another until `stop`: attach a
/// receiver (every other time a dynamic one) and a sender, pass three
/// messages, close. Returns the number of connections.
async fn churn(url: String, who: u64, stop: Arc<AtomicBool>) -> u64 {
    let mut cycles = 0;
    while !stop.load(Ordering::Relaxed) {
        let cycle = async {
            let conn = aqueduct::connect(url.as_str()).await?;
            let mut r = if cycles % 2 == 0 {
                conn.open_receiver(format!("churn-{who}-{cycles}")).await?
            } else {
                conn.open_dynamic_receiver().await?
            };
            let address = r.address().expect("an address").to_string();
            let s = conn.open_sender(address).await?;
            for i in 0..3u64 {
                assert_eq!(s.send(numbered(i)).await?, Outcome::Accepted);
            }
            for i in 0..3u64 {
                let d = r.next().await.expect("a churn message")?;
                assert_eq!(seq_of(d.message().unwrap()), i, "churn messages in order");
            }
            conn.close().await
        };
        timeout(STALL, cycle)
            .await
            .expect("a churn connection stalled")
            .unwrap_or_else(|e| panic!("churn connection {who}/{cycles}: {e}"));
        cycles += 1;
        // Pace the churn so it shares the machine with the pairs.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cycles
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a long soak: run scripts/soak"]
async fn million_messages_with_connection_churn() {
    let total = env_num("AQUEDUCT_SOAK_MESSAGES", 1_000_000);
    let pairs = env_num("AQUEDUCT_SOAK_PAIRS", 4).max(1);
    let churners = env_num("AQUEDUCT_SOAK_CHURN", 50);
    let mut broker = Broker::start().await;
    let url = broker.url.clone();
    let t0 = Instant::now();
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let churn: Vec<_> = (0..churners)
        .map(|who| tokio::spawn(churn(url.clone(), who, stop.clone())))
        .collect();
    let per_pair = total / pairs;
    let mut work = Vec::new();
    for p in 0..pairs {
        let n = if p == pairs - 1 {
            total - per_pair * (pairs - 1)
        } else {
            per_pair
        };
        let (queue, first) = (format!("soak-{p}"), p * per_pair);
        let consumer = consume(url.clone(), queue.clone(), first, n, received.clone());
        let producer = produce(url.clone(), queue, first, n);
        work.push(tokio::spawn(
            async move { tokio::join!(consumer, producer) },
        ));
    }
    // Sample the broker's memory until every pair is done.
    let mut samples: Vec<(Duration, u64, u64)> = Vec::new(); // (time, received, KiB)
    let all = futures::future::join_all(work);
    tokio::pin!(all);
    let results = loop {
        tokio::select! {
            r = &mut all => break r,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                let s = (t0.elapsed(), received.load(Ordering::Relaxed), broker.rss_kib());
                println!("soak: {:>6.1} s {:>8} received, broker RSS {:>7} KiB", s.0.as_secs_f64(), s.1, s.2);
                samples.push(s);
            }
        }
    };
    let elapsed = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut cycles = 0;
    for c in churn {
        cycles += c.await.expect("a churn task panicked");
    }
    let (mut duplicates, mut resent) = (0, 0);
    for r in results {
        let (d, s) = r.expect("a pair panicked");
        duplicates += d;
        resent += s;
    }
    let final_rss = broker.rss_kib();
    println!(
        "soak: {total} messages by {pairs} pairs in {:.1} s ({:.0} msg/s); {duplicates} duplicates, \
         {resent} sent again; {cycles} churn connections, {} queues deleted; broker RSS at the end {final_rss} KiB",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        broker.deleted.load(Ordering::Relaxed),
    );
    assert_eq!(received.load(Ordering::Relaxed), total, "messages lost");
    assert!(cycles > 0, "no churn connection completed");
    // Flat memory: the samples of the last fifth of the run within +20%
    // (or +16 MiB, whichever is more) of the largest sample of the second
    // fifth (after the warm-up).
    let in_range = |lo: u64, hi: u64| {
        samples
            .iter()
            .filter(move |(_, n, _)| *n * 5 >= total * lo && *n * 5 <= total * hi)
            .map(|(_, _, kib)| *kib)
    };
    let warm = in_range(1, 2).max();
    let last = in_range(4, 5).max();
    match (warm, last) {
        (Some(warm), Some(last)) => {
            let bound = warm + (warm / 5).max(16 * 1024);
            println!("soak: RSS after warm-up {warm} KiB, in the last fifth at most {last} KiB (bound {bound} KiB)");
            assert!(
                last <= bound,
                "the broker's memory grew: {warm} KiB after warm-up, {last} KiB at the end"
            );
        }
        _ => println!(
            "soak: too short for a memory verdict ({} samples); run more messages",
            samples.len()
        ),
    }
    broker.child.kill().await.expect("stop the broker");
}
