//! `aqueduct-bench`: aqueduct's benchmark roles and the runner of `scripts/bench`.
//!
//! `aqueduct-bench run [--quick] [--runs N] [--messages N] [--only W1,...] --out DIR
//! --examples DIR --c-bin DIR --c-cwd DIR --pbench PATH --fe2o3 PATH` runs every workload
//! and writes DIR/latest.json, DIR/latest.svg and DIR/latest.md. The other subcommands are
//! the roles it starts (see `roles.rs`), each with `--rt mt|ct` (default mt).

mod args;
mod procs;
mod report;
mod roles;
mod runner;

use args::Args;
use std::path::PathBuf;
use std::time::Instant;

fn runtime(args: &Args) -> tokio::runtime::Runtime {
    let rt = args.opt::<String>("rt").unwrap_or_else(|| "mt".into());
    let mut b = match rt.as_str() {
        "ct" => tokio::runtime::Builder::new_current_thread(),
        "mt" => tokio::runtime::Builder::new_multi_thread(),
        other => {
            eprintln!("--rt {other}: expected mt or ct");
            std::process::exit(2)
        }
    };
    b.enable_all().build().expect("a tokio runtime")
}

fn exit_on<E: std::fmt::Display>(r: Result<(), E>) {
    if let Err(e) = r {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn sh(cmd: &str) -> String {
    std::process::Command::new("sh")
        .args(["-c", cmd])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn run(args: Args) {
    let cfg = runner::config(&args);
    let path = |k: &str| PathBuf::from(args.req::<String>(k));
    let env = runner::Env {
        cfg: cfg.clone(),
        me: std::env::current_exe().expect("own path"),
        examples: path("examples"),
        c_bin: path("c-bin"),
        c_cwd: path("c-cwd"),
        pbench: path("pbench"),
        fe2o3: path("fe2o3"),
    };
    let only: Vec<String> = args
        .opt::<String>("only")
        .map(|s| s.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    let load = || sh("cut -d' ' -f1-3 /proc/loadavg");
    let (date, load_before, t0) = (sh("date -u +%Y-%m-%dT%H:%M:%SZ"), load(), Instant::now());
    let outcomes = runner::run_all(&env, &only);
    let meta = report::Meta {
        date,
        nproc: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        load_before,
        load_after: load(),
        commit: args.opt("commit").unwrap_or_else(|| "?".into()),
        seconds: t0.elapsed().as_secs_f64(),
    };
    let table = report::table(&outcomes, &cfg, &meta);
    println!("\n{table}");
    let out = path("out");
    std::fs::create_dir_all(&out).expect("the output directory");
    let json = report::json(&outcomes, &cfg, &meta);
    std::fs::write(
        out.join("latest.json"),
        serde_json::to_string_pretty(&json).unwrap() + "\n",
    )
    .expect("latest.json");
    std::fs::write(out.join("latest.md"), &table).expect("latest.md");
    if let Err(e) = report::svg(&outcomes, &meta, &out.join("latest.svg")) {
        eprintln!("plot: {e}");
    }
    let _ = std::fs::remove_dir_all(procs::work_dir());
    eprintln!(
        "[bench] wrote {0}/latest.json, {0}/latest.svg, {0}/latest.md",
        out.display()
    );
    if outcomes.iter().any(|o| !o.failures.is_empty()) {
        std::process::exit(1);
    }
}

fn main() {
    let mut raw = std::env::args().skip(1);
    let sub = raw.next().unwrap_or_default();
    let args = Args::parse(raw);
    match sub.as_str() {
        "run" => run(args),
        "send" => exit_on(runtime(&args).block_on(roles::send(args.clone()))),
        "recv" => exit_on(runtime(&args).block_on(roles::recv(args.clone()))),
        "recv-listen" => exit_on(runtime(&args).block_on(roles::recv_listen(args.clone()))),
        "echo-listen" => exit_on(runtime(&args).block_on(roles::echo_listen(args.clone()))),
        "ping" => exit_on(runtime(&args).block_on(roles::ping(args.clone()))),
        "tcp-echo" => exit_on(runtime(&args).block_on(roles::tcp_echo(args.clone()))),
        "tcp-ping" => exit_on(runtime(&args).block_on(roles::tcp_ping(args.clone()))),
        "idle-listen" => exit_on(runtime(&args).block_on(roles::idle_listen(args.clone()))),
        "idle-connect" => exit_on(runtime(&args).block_on(roles::idle_connect(args.clone()))),
        _ => {
            eprintln!("usage: aqueduct-bench run|send|recv|recv-listen|echo-listen|ping|tcp-echo|tcp-ping|idle-listen|idle-connect [--key value]...");
            std::process::exit(2)
        }
    }
}
