//! The runner: every workload for aqueduct, Proton C and fe2o3-amqp in one run, runs
//! interleaved (each run goes through every case of a group before the next run), medians.

use crate::args::Args;
use crate::procs::{free_port, wait_file_line, wait_listening, work_dir, Proc};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const HOST: &str = "127.0.0.1";
const START: Duration = Duration::from_secs(20);

/// Sizes and counts of one run.
#[derive(Debug, Clone)]
pub struct Config {
    pub quick: bool,
    pub runs: usize,
    pub messages: u64,
    pub size: usize,
    pub credit: u32,
    pub lat_rounds: u64,
    pub lat_warmup: u64,
    pub big_count: u64,
    pub big_size: usize,
    pub big_credit: u32,
    pub idle_conns: usize,
    pub timeout: Duration,
}

/// Where the programs are.
#[derive(Debug, Clone)]
pub struct Env {
    pub cfg: Config,
    /// This program (its roles).
    pub me: PathBuf,
    /// aqueduct's release examples (broker, simple_send, direct_recv).
    pub examples: PathBuf,
    /// Proton C's stock examples (broker, send, receive, direct).
    pub c_bin: PathBuf,
    /// The C broker's working directory (Proton's examples dir; else it warns about TLS).
    pub c_cwd: PathBuf,
    pub pbench: PathBuf,
    pub fe2o3: PathBuf,
}

/// One measurement: the headline figure and others (p99, sender peak RSS, ...).
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub value: f64,
    pub extra: BTreeMap<String, f64>,
}

/// Who a case measures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Family {
    Aqueduct,
    ProtonC,
    Fe2o3,
    Cross,
    Floor,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Aqueduct => "aqueduct",
            Family::ProtonC => "proton-c",
            Family::Fe2o3 => "fe2o3-amqp",
            Family::Cross => "cross",
            Family::Floor => "floor",
        }
    }
}

/// A peer program in a pair.
#[derive(Debug, Clone, Copy)]
pub enum Side {
    /// Our bench roles on a multi-thread (`mt`) or current_thread (`ct`) runtime.
    Aq(&'static str),
    /// pbench (Proton C, tuned).
    C,
    /// fe2o3-bench (current_thread).
    Fe,
}

pub type Run = Box<dyn Fn(&Env) -> Result<Sample, String>>;

/// A workload case.
pub struct Case {
    pub id: &'static str,
    pub group: &'static str,
    pub label: String,
    pub family: Family,
    pub unit: &'static str,
    /// The case this one's ratio is taken against.
    pub reference: Option<&'static str>,
    pub run: Run,
}

/// A case's outcome over all runs.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub id: &'static str,
    pub group: &'static str,
    pub label: String,
    pub family: Family,
    pub unit: &'static str,
    pub reference: Option<&'static str>,
    pub samples: Vec<Sample>,
    pub failures: Vec<String>,
}

pub fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

impl Outcome {
    pub fn median(&self) -> Option<f64> {
        median(&mut self.samples.iter().map(|s| s.value).collect::<Vec<_>>())
    }
    pub fn extra_median(&self, key: &str) -> Option<f64> {
        median(
            &mut self
                .samples
                .iter()
                .filter_map(|s| s.extra.get(key).copied())
                .collect::<Vec<_>>(),
        )
    }
    pub fn extra_keys(&self) -> Vec<String> {
        let mut k: Vec<String> = self
            .samples
            .iter()
            .flat_map(|s| s.extra.keys().cloned())
            .collect();
        k.sort();
        k.dedup();
        k
    }
}

// ------------------------------------------------------------------ commands

fn cmd(path: &PathBuf, args: &[&str]) -> Command {
    let mut c = Command::new(path);
    c.args(args);
    c
}

/// Our benchmark program in `role`. `rt` is the runtime (`mt` or `ct`),
/// with `+sink` for a sender that sends through its `Sink`.
fn me(env: &Env, role: &str, rt: &str, args: &[&str]) -> Command {
    let (rt, sink) = match rt.split_once('+') {
        Some((rt, _)) => (rt, true),
        None => (rt, false),
    };
    let mut c = cmd(&env.me, &[role, "--rt", rt]);
    c.args(args);
    if sink && role == "send" {
        c.arg("--sink");
    }
    c
}

fn receiver(env: &Env, side: Side, count: u64, credit: Option<u32>) -> Command {
    let (n, cr) = (count.to_string(), credit.unwrap_or(1000).to_string());
    match side {
        Side::Aq(rt) => {
            let mut c = me(
                env,
                "recv-listen",
                rt,
                &["--listen", "127.0.0.1:0", "--count", &n],
            );
            if let Some(cr) = credit {
                c.args(["--credit", &cr.to_string()]);
            }
            c
        }
        Side::C => cmd(&env.pbench, &["recv-listen", HOST, "0", "q", &n, &cr]),
        Side::Fe => cmd(&env.fe2o3, &["recv-listen", HOST, "0", "q", &n, &cr]),
    }
}

fn sender(env: &Env, side: Side, port: u16, count: u64, size: usize, in_flight: usize) -> Command {
    let (p, n, s, f) = (
        port.to_string(),
        count.to_string(),
        size.to_string(),
        in_flight.to_string(),
    );
    let url = format!("{HOST}:{port}/q");
    match side {
        Side::Aq(rt) => me(
            env,
            "send",
            rt,
            &[
                "--url",
                &url,
                "--count",
                &n,
                "--size",
                &s,
                "--in-flight",
                &f,
            ],
        ),
        Side::C => cmd(&env.pbench, &["send", HOST, &p, "q", &n, &s]),
        Side::Fe => cmd(&env.fe2o3, &["send", HOST, &p, "q", &n, &s]),
    }
}

fn side_name(s: Side) -> String {
    match s {
        Side::Aq(rt) => format!("aqueduct({rt})"),
        Side::C => "Proton C".into(),
        Side::Fe => "fe2o3".into(),
    }
}

// ---------------------------------------------------------------- workloads

/// A listening receiver and a connecting sender; the sender's own clock (first send to
/// last outcome). `bytes`: report MB/s instead of msg/s.
fn pair(
    env: &Env,
    snd: Side,
    rcv: Side,
    count: u64,
    size: usize,
    credit: Option<u32>,
    bytes: bool,
) -> Result<Sample, String> {
    let t = env.cfg.timeout;
    let in_flight = if bytes { 64 } else { 4096 };
    let mut r = Proc::spawn(
        &format!("receiver {}", side_name(rcv)),
        receiver(env, rcv, count, credit),
        None,
    )?;
    let port = r.listen_port(START)?;
    let mut s = Proc::spawn(
        &format!("sender {}", side_name(snd)),
        sender(env, snd, port, count, size, in_flight),
        None,
    )?;
    s.finish(t)?;
    r.finish(t)?;
    let got = r.result()?.get("received").copied().unwrap_or(0.0);
    if got as u64 != count {
        return Err(format!("receiver got {got} of {count}"));
    }
    let res = s.result()?;
    let secs = *res.get("elapsed_s").ok_or("no elapsed_s")?;
    let mut sample = Sample {
        value: if bytes {
            count as f64 * size as f64 / secs / 1e6
        } else {
            count as f64 / secs
        },
        ..Default::default()
    };
    if let Some(kb) = res.get("rss_peak_kb") {
        sample.extra.insert("sender_rss_peak_kib".into(), *kb);
    }
    Ok(sample)
}

fn line_count(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

/// The examples as a user runs them, output to files; wall clock from the start of the
/// sender to the exit of both.
fn examples_ours(env: &Env) -> Result<Sample, String> {
    let n = env.cfg.messages;
    let (port, out) = (free_port(), work_dir().join("direct_recv.out"));
    let url = format!("{HOST}:{port}/examples");
    let mut r = Proc::spawn(
        "direct_recv",
        cmd(
            &env.examples.join("direct_recv"),
            &["-a", &url, "-m", &n.to_string()],
        ),
        Some(&out),
    )?;
    wait_listening(port, START)?;
    let t0 = Instant::now();
    let sout = work_dir().join("simple_send.out");
    let mut s = Proc::spawn(
        "simple_send",
        cmd(
            &env.examples.join("simple_send"),
            &["-a", &url, "-m", &n.to_string()],
        ),
        Some(&sout),
    )?;
    s.finish(env.cfg.timeout)?;
    r.finish(env.cfg.timeout)?;
    let secs = t0.elapsed().as_secs_f64();
    let lines = line_count(&out);
    if lines as u64 != n {
        return Err(format!("direct_recv printed {lines} lines, expected {n}"));
    }
    Ok(Sample {
        value: n as f64 / secs,
        ..Default::default()
    })
}

fn examples_c(env: &Env) -> Result<Sample, String> {
    let n = env.cfg.messages.to_string();
    let (out, sout) = (work_dir().join("direct.out"), work_dir().join("send.out"));
    let mut r = Proc::spawn(
        "C direct",
        cmd(&env.c_bin.join("direct"), &[HOST, "0", "examples", &n]),
        Some(&out),
    )?;
    let port = wait_file_line(&out, "listening on ", START)?;
    let t0 = Instant::now();
    let mut s = Proc::spawn(
        "C send",
        cmd(
            &env.c_bin.join("send"),
            &[HOST, port.trim(), "examples", &n],
        ),
        Some(&sout),
    )?;
    s.finish(env.cfg.timeout)?;
    r.finish(env.cfg.timeout)?;
    let secs = t0.elapsed().as_secs_f64();
    let last = std::fs::read_to_string(&out).unwrap_or_default();
    if !last.contains(&format!("{n} messages received")) {
        return Err("C direct did not print 'N messages received'".into());
    }
    Ok(Sample {
        value: env.cfg.messages as f64 / secs,
        ..Default::default()
    })
}

#[derive(Debug, Clone, Copy)]
pub enum Broker {
    Ours,
    C,
}

#[derive(Debug, Clone, Copy)]
pub enum Clients {
    Aq,
    CStock,
    CTuned,
    Fe,
}

fn start_broker(env: &Env, b: Broker) -> Result<(Proc, u16), String> {
    match b {
        Broker::Ours => {
            let mut p = Proc::spawn(
                "our broker",
                cmd(&env.examples.join("broker"), &["-a", "127.0.0.1:0"]),
                None,
            )?;
            let rest = p.wait_line("Listening on ", START)?;
            let port = rest
                .rsplit(':')
                .next()
                .unwrap_or("")
                .trim()
                .parse()
                .map_err(|_| format!("bad broker line {rest}"))?;
            Ok((p, port))
        }
        Broker::C => {
            let mut c = cmd(&env.c_bin.join("broker"), &[HOST, "0"]);
            if env.c_cwd.is_dir() {
                c.current_dir(&env.c_cwd);
            }
            let mut p = Proc::spawn("C broker", c, None)?;
            let port = p.listen_port(START)?;
            Ok((p, port))
        }
    }
}

/// W2: a sender and a receiver started together through a fresh broker; wall clock from
/// their start to the exit of both.
fn via_broker(env: &Env, b: Broker, clients: Clients) -> Result<Sample, String> {
    let (_broker, port) = start_broker(env, b)?;
    let n = env.cfg.messages;
    let (ns, p, q) = (n.to_string(), port.to_string(), format!("q{}", free_port()));
    let url = format!("{HOST}:{port}/{q}");
    let cr = env.cfg.credit.to_string();
    let (rc, sc, files) = match clients {
        Clients::Aq => (
            me(
                env,
                "recv",
                "mt",
                &["--url", &url, "--count", &ns, "--credit", &cr],
            ),
            me(
                env,
                "send",
                "mt",
                &[
                    "--url",
                    &url,
                    "--count",
                    &ns,
                    "--size",
                    &env.cfg.size.to_string(),
                ],
            ),
            false,
        ),
        Clients::CStock => (
            cmd(&env.c_bin.join("receive"), &[HOST, &p, &q, &ns]),
            cmd(&env.c_bin.join("send"), &[HOST, &p, &q, &ns]),
            true,
        ),
        Clients::CTuned => (
            cmd(&env.pbench, &["recv", HOST, &p, &q, &ns, &cr]),
            cmd(
                &env.pbench,
                &["send", HOST, &p, &q, &ns, &env.cfg.size.to_string()],
            ),
            false,
        ),
        Clients::Fe => (
            cmd(&env.fe2o3, &["recv", HOST, &p, &q, &ns, &cr]),
            cmd(
                &env.fe2o3,
                &["send", HOST, &p, &q, &ns, &env.cfg.size.to_string()],
            ),
            false,
        ),
    };
    let (rout, sout) = (
        work_dir().join("w2-recv.out"),
        work_dir().join("w2-send.out"),
    );
    let t0 = Instant::now();
    let mut r = Proc::spawn("W2 receiver", rc, files.then_some(rout.as_path()))?;
    let mut s = Proc::spawn("W2 sender", sc, files.then_some(sout.as_path()))?;
    s.finish(env.cfg.timeout)?;
    r.finish(env.cfg.timeout)?;
    let secs = t0.elapsed().as_secs_f64();
    if files {
        let text = std::fs::read_to_string(&rout).unwrap_or_default();
        if !text.contains(&format!("{n} messages received")) {
            return Err("C receive did not print 'N messages received'".into());
        }
    } else if r.result()?.get("received").copied().unwrap_or(0.0) as u64 != n {
        return Err("the receiver did not get every message".into());
    }
    Ok(Sample {
        value: n as f64 / secs,
        ..Default::default()
    })
}

#[derive(Debug, Clone, Copy)]
pub enum Lat {
    Aq(&'static str),
    C,
    Tcp,
}

/// W3: one message in flight, p50 (headline), p99, p99.9 in µs.
fn latency(env: &Env, who: Lat) -> Result<Sample, String> {
    let (n, w, size) = (
        env.cfg.lat_rounds.to_string(),
        env.cfg.lat_warmup.to_string(),
        env.cfg.size.to_string(),
    );
    let server = match who {
        Lat::Aq(rt) => me(env, "echo-listen", rt, &["--listen", "127.0.0.1:0"]),
        Lat::C => cmd(&env.pbench, &["echo-listen", HOST, "0"]),
        Lat::Tcp => me(
            env,
            "tcp-echo",
            "ct",
            &["--listen", "127.0.0.1:0", "--size", &size],
        ),
    };
    let mut srv = Proc::spawn("echo server", server, None)?;
    let port = srv.listen_port(START)?;
    let client = match who {
        Lat::Aq(rt) => me(
            env,
            "ping",
            rt,
            &[
                "--url",
                &format!("{HOST}:{port}"),
                "--count",
                &n,
                "--warmup",
                &w,
                "--size",
                &size,
            ],
        ),
        Lat::C => cmd(
            &env.pbench,
            &["ping", HOST, &port.to_string(), &n, &w, &size],
        ),
        Lat::Tcp => me(
            env,
            "tcp-ping",
            "ct",
            &[
                "--addr",
                &format!("{HOST}:{port}"),
                "--count",
                &n,
                "--warmup",
                &w,
                "--size",
                &size,
            ],
        ),
    };
    let mut c = Proc::spawn("ping client", client, None)?;
    c.finish(env.cfg.timeout)?;
    let res = c.result()?;
    let get = |k: &str| res.get(k).copied().ok_or(format!("no {k}"));
    let mut s = Sample {
        value: get("p50_us")?,
        ..Default::default()
    };
    s.extra.insert("p99_us".into(), get("p99_us")?);
    s.extra.insert("p999_us".into(), get("p999_us")?);
    s.extra.insert("mean_us".into(), get("mean_us")?);
    Ok(s)
}

#[derive(Debug, Clone, Copy)]
pub enum Idle {
    Aq,
    CBroker,
    Fe,
}

/// Resident memory per idle connection (each with one session) on a listener, KiB:
/// (RSS with the connections - RSS before them) / connections.
fn idle_memory(env: &Env, who: Idle) -> Result<Sample, String> {
    let (srv, port) = match who {
        Idle::Aq => {
            let mut p = Proc::spawn(
                "idle listener",
                me(env, "idle-listen", "mt", &["--listen", "127.0.0.1:0"]),
                None,
            )?;
            let port = p.listen_port(START)?;
            (p, port)
        }
        Idle::CBroker => start_broker(env, Broker::C)?,
        Idle::Fe => {
            let mut p = Proc::spawn(
                "fe2o3 idle",
                cmd(&env.fe2o3, &["idle-listen", HOST, "0"]),
                None,
            )?;
            let port = p.listen_port(START)?;
            (p, port)
        }
    };
    std::thread::sleep(Duration::from_millis(300));
    let pid = srv.pid().to_string();
    let before = crate::roles::proc_status_kb(&pid, "VmRSS:");
    let n = env.cfg.idle_conns;
    let mut c = Proc::spawn(
        "idle clients",
        me(
            env,
            "idle-connect",
            "ct",
            &[
                "--url",
                &format!("{HOST}:{port}"),
                "--conns",
                &n.to_string(),
            ],
        ),
        None,
    )?;
    c.wait_line("ready", env.cfg.timeout)?;
    std::thread::sleep(Duration::from_millis(500));
    let after = crate::roles::proc_status_kb(&pid, "VmRSS:");
    c.close_stdin();
    let _ = c.finish(Duration::from_secs(30));
    if before < 0 || after < 0 {
        return Err("cannot read the listener's VmRSS".into());
    }
    let mut s = Sample {
        value: (after - before) as f64 / n as f64,
        ..Default::default()
    };
    s.extra.insert("rss_before_kib".into(), before as f64);
    s.extra.insert("rss_after_kib".into(), after as f64);
    Ok(s)
}

// -------------------------------------------------------------------- cases

pub fn cases(cfg: &Config) -> Vec<Case> {
    let (n, size, credit) = (cfg.messages, cfg.size, cfg.credit);
    let (bn, bs, bc) = (cfg.big_count, cfg.big_size, cfg.big_credit);
    let mut v: Vec<Case> = Vec::new();
    let mut add = |id, group, label: &str, family, unit, reference, run: Run| {
        v.push(Case {
            id,
            group,
            label: label.into(),
            family,
            unit,
            reference,
            run,
        })
    };
    let w1 = Some("w1.c-c");
    let pr = move |s, r, cr: Option<u32>| -> Run {
        Box::new(move |e: &Env| pair(e, s, r, n, size, cr, false))
    };
    add(
        "w1.aq-aq.mt",
        "W1 direct",
        "aqueduct -> aqueduct (multi-thread)",
        Family::Aqueduct,
        "msg/s",
        w1,
        pr(Side::Aq("mt"), Side::Aq("mt"), Some(credit)),
    );
    add(
        "w1.aq-aq.ct",
        "W1 direct",
        "aqueduct -> aqueduct (current_thread)",
        Family::Aqueduct,
        "msg/s",
        w1,
        pr(Side::Aq("ct"), Side::Aq("ct"), Some(credit)),
    );
    add(
        "w1.aq-aq.mt-sink",
        "W1 direct",
        "aqueduct -> aqueduct (multi-thread, Sink)",
        Family::Aqueduct,
        "msg/s",
        w1,
        pr(Side::Aq("mt+sink"), Side::Aq("mt"), Some(credit)),
    );
    add(
        "w1.aq-aq.ct-sink",
        "W1 direct",
        "aqueduct -> aqueduct (current_thread, Sink)",
        Family::Aqueduct,
        "msg/s",
        w1,
        pr(Side::Aq("ct+sink"), Side::Aq("ct"), Some(credit)),
    );
    add(
        "w1.c-c",
        "W1 direct",
        "Proton C -> Proton C (tuned pair)",
        Family::ProtonC,
        "msg/s",
        None,
        pr(Side::C, Side::C, Some(credit)),
    );
    add(
        "w1.fe-fe",
        "W1 direct",
        "fe2o3 -> fe2o3 (current_thread)",
        Family::Fe2o3,
        "msg/s",
        w1,
        pr(Side::Fe, Side::Fe, Some(credit)),
    );
    add(
        "w1.aq-c",
        "W1 direct",
        "aqueduct -> Proton C",
        Family::Cross,
        "msg/s",
        w1,
        pr(Side::Aq("mt"), Side::C, Some(credit)),
    );
    add(
        "w1.c-aq",
        "W1 direct",
        "Proton C -> aqueduct",
        Family::Cross,
        "msg/s",
        w1,
        pr(Side::C, Side::Aq("mt"), Some(credit)),
    );
    add(
        "w1.c-aq.default",
        "W1 direct",
        "Proton C -> aqueduct, default credit window",
        Family::Cross,
        "msg/s",
        w1,
        pr(Side::C, Side::Aq("mt"), None),
    );
    add(
        "w1.aq-fe",
        "W1 direct",
        "aqueduct -> fe2o3",
        Family::Cross,
        "msg/s",
        w1,
        pr(Side::Aq("mt"), Side::Fe, Some(credit)),
    );
    add(
        "w1.fe-aq",
        "W1 direct",
        "fe2o3 -> aqueduct",
        Family::Cross,
        "msg/s",
        w1,
        pr(Side::Fe, Side::Aq("mt"), Some(credit)),
    );
    add(
        "w1.examples.aq",
        "W1 examples",
        "simple_send -> direct_recv (output to a file)",
        Family::Aqueduct,
        "msg/s",
        Some("w1.examples.c"),
        Box::new(examples_ours),
    );
    add(
        "w1.examples.c",
        "W1 examples",
        "C send -> C direct (output to a file)",
        Family::ProtonC,
        "msg/s",
        None,
        Box::new(examples_c),
    );
    let w2 = Some("w2.c.c-broker");
    add(
        "w2.aq.aq-broker",
        "W2 broker",
        "aqueduct clients via our broker",
        Family::Aqueduct,
        "msg/s",
        w2,
        Box::new(|e: &Env| via_broker(e, Broker::Ours, Clients::Aq)),
    );
    add(
        "w2.c.aq-broker",
        "W2 broker",
        "C send/receive via our broker",
        Family::Cross,
        "msg/s",
        w2,
        Box::new(|e: &Env| via_broker(e, Broker::Ours, Clients::CStock)),
    );
    add(
        "w2.c.c-broker",
        "W2 broker",
        "C send/receive via Proton C broker",
        Family::ProtonC,
        "msg/s",
        None,
        Box::new(|e: &Env| via_broker(e, Broker::C, Clients::CStock)),
    );
    add(
        "w2.pb.c-broker",
        "W2 broker",
        "tuned C clients via Proton C broker",
        Family::ProtonC,
        "msg/s",
        w2,
        Box::new(|e: &Env| via_broker(e, Broker::C, Clients::CTuned)),
    );
    add(
        "w2.fe.aq-broker",
        "W2 broker",
        "fe2o3 clients via our broker",
        Family::Cross,
        "msg/s",
        w2,
        Box::new(|e: &Env| via_broker(e, Broker::Ours, Clients::Fe)),
    );
    let w3 = Some("w3.tcp");
    add(
        "w3.aq.ct",
        "W3 latency",
        "aqueduct (current_thread)",
        Family::Aqueduct,
        "us p50",
        w3,
        Box::new(|e: &Env| latency(e, Lat::Aq("ct"))),
    );
    add(
        "w3.aq.mt",
        "W3 latency",
        "aqueduct (multi-thread)",
        Family::Aqueduct,
        "us p50",
        w3,
        Box::new(|e: &Env| latency(e, Lat::Aq("mt"))),
    );
    add(
        "w3.c",
        "W3 latency",
        "Proton C (pbench)",
        Family::ProtonC,
        "us p50",
        w3,
        Box::new(|e: &Env| latency(e, Lat::C)),
    );
    add(
        "w3.tcp",
        "W3 latency",
        "raw tokio TCP ping-pong (floor)",
        Family::Floor,
        "us p50",
        None,
        Box::new(|e: &Env| latency(e, Lat::Tcp)),
    );
    let big = move |s, r| -> Run { Box::new(move |e: &Env| pair(e, s, r, bn, bs, Some(bc), true)) };
    let lr = Some("big.c-c");
    add(
        "big.aq-aq",
        "1 MiB",
        "aqueduct -> aqueduct",
        Family::Aqueduct,
        "MB/s",
        lr,
        big(Side::Aq("mt"), Side::Aq("mt")),
    );
    add(
        "big.c-c",
        "1 MiB",
        "Proton C -> Proton C",
        Family::ProtonC,
        "MB/s",
        None,
        big(Side::C, Side::C),
    );
    add(
        "big.aq-c",
        "1 MiB",
        "aqueduct -> Proton C",
        Family::Cross,
        "MB/s",
        lr,
        big(Side::Aq("mt"), Side::C),
    );
    add(
        "big.c-aq",
        "1 MiB",
        "Proton C -> aqueduct",
        Family::Cross,
        "MB/s",
        lr,
        big(Side::C, Side::Aq("mt")),
    );
    add(
        "big.fe-fe",
        "1 MiB",
        "fe2o3 -> fe2o3",
        Family::Fe2o3,
        "MB/s",
        lr,
        big(Side::Fe, Side::Fe),
    );
    add(
        "big.aq-fe",
        "1 MiB",
        "aqueduct -> fe2o3",
        Family::Cross,
        "MB/s",
        lr,
        big(Side::Aq("mt"), Side::Fe),
    );
    add(
        "big.fe-aq",
        "1 MiB",
        "fe2o3 -> aqueduct",
        Family::Cross,
        "MB/s",
        lr,
        big(Side::Fe, Side::Aq("mt")),
    );
    let mr = Some("mem.c-broker");
    add(
        "mem.aq",
        "Memory",
        "KiB per idle connection: our listener",
        Family::Aqueduct,
        "KiB",
        mr,
        Box::new(|e: &Env| idle_memory(e, Idle::Aq)),
    );
    add(
        "mem.c-broker",
        "Memory",
        "KiB per idle connection: Proton C broker",
        Family::ProtonC,
        "KiB",
        None,
        Box::new(|e: &Env| idle_memory(e, Idle::CBroker)),
    );
    add(
        "mem.fe",
        "Memory",
        "KiB per idle connection: fe2o3 acceptor",
        Family::Fe2o3,
        "KiB",
        mr,
        Box::new(|e: &Env| idle_memory(e, Idle::Fe)),
    );
    v
}

/// Whether `--only` item `o` selects case `c`: a prefix of its id or its workload's name,
/// ignoring case ("w1", "W3", "w1.c-c", "memory", "1 MiB").
fn selects(o: &str, c: &Case) -> bool {
    let o = o.to_ascii_lowercase();
    c.id.starts_with(&o) || c.group.to_ascii_lowercase().starts_with(&o)
}

/// Runs every case whose group is selected, `runs` times, interleaved within a group.
pub fn run_all(env: &Env, only: &[String]) -> Vec<Outcome> {
    let cases = cases(&env.cfg);
    let mut out: Vec<Outcome> = Vec::new();
    let mut groups: Vec<&'static str> = cases.iter().map(|c| c.group).collect();
    groups.dedup();
    for g in groups {
        let sel: Vec<&Case> = cases
            .iter()
            .filter(|c| c.group == g)
            .filter(|c| only.is_empty() || only.iter().any(|o| selects(o, c)))
            .collect();
        if sel.is_empty() {
            continue;
        }
        let runs = if g == "Memory" {
            env.cfg.runs.min(3)
        } else {
            env.cfg.runs
        };
        eprintln!("[bench] {g}: {} cases x {runs} runs", sel.len());
        let base = out.len();
        for c in &sel {
            out.push(Outcome {
                id: c.id,
                group: c.group,
                label: c.label.clone(),
                family: c.family,
                unit: c.unit,
                reference: c.reference,
                samples: Vec::new(),
                failures: Vec::new(),
            });
        }
        for run in 1..=runs {
            for (i, c) in sel.iter().enumerate() {
                let t = Instant::now();
                match (c.run)(env) {
                    Ok(s) => {
                        eprintln!(
                            "[bench]   run {run} {:<18} {:>12.1} {} ({:.1} s)",
                            c.id,
                            s.value,
                            c.unit,
                            t.elapsed().as_secs_f64()
                        );
                        out[base + i].samples.push(s);
                    }
                    Err(e) => {
                        eprintln!("[bench]   run {run} {:<18} FAILED: {e}", c.id);
                        out[base + i].failures.push(e);
                    }
                }
            }
        }
    }
    out
}

/// The config of `run [--quick] [--runs N] [--messages N]`.
pub fn config(args: &Args) -> Config {
    let quick = args.flag("quick");
    Config {
        quick,
        runs: args.opt("runs").unwrap_or(if quick { 1 } else { 5 }),
        messages: args
            .opt("messages")
            .unwrap_or(if quick { 20_000 } else { 200_000 }),
        size: 100,
        credit: 1000,
        lat_rounds: if quick { 2_000 } else { 10_000 },
        lat_warmup: if quick { 200 } else { 1_000 },
        big_count: args
            .opt("big-messages")
            .unwrap_or(if quick { 100 } else { 1_000 }),
        big_size: 1 << 20,
        big_credit: 16,
        idle_conns: args
            .opt("idle-connections")
            .unwrap_or(if quick { 200 } else { 1_000 }),
        timeout: Duration::from_secs(args.opt("timeout").unwrap_or(120)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&mut []), None);
    }

    #[test]
    fn only_selects_by_id_prefix_or_workload_ignoring_case() {
        let cfg = config(&Args::parse(["--quick".to_string()]));
        let all = cases(&cfg);
        let ids =
            |o: &str| -> Vec<&str> { all.iter().filter(|c| selects(o, c)).map(|c| c.id).collect() };
        assert_eq!(ids("W3").len(), 4);
        assert_eq!(ids("w1.c-c"), ["w1.c-c"]);
        assert_eq!(ids("memory"), ["mem.aq", "mem.c-broker", "mem.fe"]);
        assert!(ids("w1").contains(&"w1.examples.aq"));
        assert!(ids("nothing").is_empty());
    }

    #[test]
    fn every_ratio_reference_names_a_case() {
        let all = cases(&config(&Args::parse(Vec::<String>::new())));
        for c in &all {
            if let Some(r) = c.reference {
                assert!(all.iter().any(|x| x.id == r), "{} refers to {r}", c.id);
            }
        }
    }
}
