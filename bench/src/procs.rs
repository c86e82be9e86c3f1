//! Child processes of the runner: spawn, wait for a line, finish within a deadline,
//! read a `result key=value ...` line. Every child is killed when its `Proc` drops.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running child process.
pub struct Proc {
    name: String,
    child: Child,
    lines: Option<mpsc::Receiver<String>>,
    seen: Vec<String>,
    err: PathBuf,
    exited: Option<i32>,
}

/// Where the runner keeps the children's stderr and output files.
pub fn work_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("aqueduct-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d).ok();
    d
}

impl Proc {
    /// Starts `cmd`; its stdout goes to `out` if given, else it is read line by line.
    pub fn spawn(name: &str, mut cmd: Command, out: Option<&Path>) -> Result<Proc, String> {
        let err = work_dir().join(format!("{}.err", name.replace(['/', ' '], "_")));
        cmd.stdin(Stdio::piped());
        cmd.stderr(File::create(&err).map_err(|e| e.to_string())?);
        match out {
            Some(p) => cmd.stdout(File::create(p).map_err(|e| e.to_string())?),
            None => cmd.stdout(Stdio::piped()),
        };
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("{name}: cannot start {cmd:?}: {e}"))?;
        let lines = child.stdout.take().map(|stdout| {
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            rx
        });
        Ok(Proc {
            name: name.into(),
            child,
            lines,
            seen: Vec::new(),
            err,
            exited: None,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Closes the child's standard input.
    pub fn close_stdin(&mut self) {
        self.child.stdin.take();
    }

    fn stderr_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.err).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(4)..].join(" | ")
    }

    fn failure(&self, what: &str) -> String {
        format!("{}: {what}; stderr: {}", self.name, self.stderr_tail())
    }

    /// Waits until the child prints a line starting with `prefix`; returns the rest.
    pub fn wait_line(&mut self, prefix: &str, limit: Duration) -> Result<String, String> {
        if let Some(l) = self.seen.iter().find(|l| l.starts_with(prefix)) {
            return Ok(l[prefix.len()..].to_string());
        }
        let deadline = Instant::now() + limit;
        let rx = self.lines.as_ref().ok_or("no stdout to read")?;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) => {
                    let hit = l.strip_prefix(prefix).map(str::to_string);
                    self.seen.push(l);
                    if let Some(rest) = hit {
                        return Ok(rest);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(self.failure(&format!("no line '{prefix}' within {limit:?}")))
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let _ = self.child.wait();
                    return Err(self.failure(&format!("exited before printing '{prefix}'")));
                }
            }
        }
    }

    /// The port of a `listening on PORT` line.
    pub fn listen_port(&mut self, limit: Duration) -> Result<u16, String> {
        let rest = self.wait_line("listening on ", limit)?;
        rest.trim()
            .parse()
            .map_err(|_| self.failure(&format!("bad port in 'listening on {rest}'")))
    }

    /// Waits (at most `limit`) for the child to exit 0; kills it on timeout.
    pub fn finish(&mut self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2))
                }
                Ok(None) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return Err(self.failure(&format!("timed out after {limit:?}")));
                }
                Err(e) => return Err(self.failure(&e.to_string())),
            }
        };
        if let Some(rx) = &self.lines {
            // The reader thread sees EOF once the child is gone.
            while let Ok(l) = rx.recv_timeout(Duration::from_secs(2)) {
                self.seen.push(l);
            }
        }
        self.exited = status.code();
        if status.success() {
            Ok(())
        } else {
            Err(self.failure(&format!("exited with {status}")))
        }
    }

    /// The `key=value` numbers of its `result ...` line.
    pub fn result(&self) -> Result<BTreeMap<String, f64>, String> {
        let line = self
            .seen
            .iter()
            .rev()
            .find_map(|l| l.strip_prefix("result "))
            .ok_or_else(|| self.failure("no 'result' line"))?;
        Ok(line
            .split_whitespace()
            .filter_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                Some((k.to_string(), v.parse().ok()?))
            })
            .collect())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A free TCP port on 127.0.0.1 (for programs that print none).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// Waits until something listens on `port` (from /proc/net/tcp, without connecting).
pub fn wait_listening(port: u16, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    let needle = format!(":{port:04X} ");
    while Instant::now() < deadline {
        for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
            let s = std::fs::read_to_string(f).unwrap_or_default();
            if s.lines().any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                cols.len() > 3 && format!("{} ", cols[1]).ends_with(&needle) && cols[3] == "0A"
            }) {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Err(format!("nothing listening on port {port} within {limit:?}"))
}

/// Waits until the file's text contains a line starting with `prefix`; returns the rest.
pub fn wait_file_line(path: &Path, prefix: &str, limit: Duration) -> Result<String, String> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let s = std::fs::read_to_string(path).unwrap_or_default();
        if let Some(l) = s.lines().find_map(|l| l.strip_prefix(prefix)) {
            return Ok(l.to_string());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Err(format!(
        "no line '{prefix}' in {} within {limit:?}",
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_line_and_listening_port() {
        let mut c = Command::new("sh");
        c.args([
            "-c",
            "echo 'listening on 4321'; echo 'result elapsed_s=0.5 rss_peak_kb=12'",
        ]);
        let mut p = Proc::spawn("test", c, None).unwrap();
        assert_eq!(p.listen_port(Duration::from_secs(10)).unwrap(), 4321);
        p.finish(Duration::from_secs(10)).unwrap();
        let r = p.result().unwrap();
        assert_eq!(r["elapsed_s"], 0.5);
        assert_eq!(r["rss_peak_kb"], 12.0);
    }

    #[test]
    fn a_failing_child_is_reported_with_its_stderr() {
        let mut c = Command::new("sh");
        c.args(["-c", "echo broken >&2; exit 3"]);
        let mut p = Proc::spawn("failing", c, None).unwrap();
        let e = p.finish(Duration::from_secs(10)).unwrap_err();
        assert!(e.contains("broken") && e.contains("failing"), "{e}");
    }
}
