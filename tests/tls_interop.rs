//! TLS and SASL against Qpid Proton (Python binding, OpenSSL TLS, Debian's
//! build without Cyrus SASL): our client against a Proton broker over amqps
//! (ANONYMOUS, and EXTERNAL over mutual TLS), and Proton's client against
//! our TLS listener with PLAIN and with EXTERNAL over mutual TLS. The peer
//! is tests/peers/proton_tls.py. Certificates are made at test time with
//! rcgen and written to a temporary directory for OpenSSL.
//!
//! Debian's Proton offers no PLAIN (nor SCRAM) as a server: its built-in
//! SASL server knows only ANONYMOUS and EXTERNAL, so PLAIN is tested with
//! Proton as the client here, and against RabbitMQ in tests/rabbitmq.rs.
//!
//! A missing peer FAILS the test (it is never skipped).

use aqueduct::{
    ConnectOptions, ErrorKind, IncomingEndpoint, ListenOptions, ReceiverOptions, Users,
};
use futures::StreamExt;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

fn python() -> PathBuf {
    let p = std::env::var_os("PROTON_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/usr/bin/python3".into());
    assert!(
        p.exists(),
        "missing peer {} (run scripts/install-peers; see scripts/env.sh)",
        p.display()
    );
    p
}

fn peer_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/proton_tls.py")
}

/// Test certificates, written as PEM files for OpenSSL.
struct Pki {
    dir: PathBuf,
    ca: String,
    server: (String, String),
    client: (String, String),
}

impl Pki {
    fn new(name: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!(
            "aqueduct-tls-interop-{}-{name}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, "Interop CA");
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = p.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(p, ca_key);
        let leaf = |names: &[&str], cn: &str| {
            let key = KeyPair::generate().unwrap();
            let mut p =
                CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                    .unwrap();
            p.distinguished_name.push(DnType::CommonName, cn);
            let cert = p.signed_by(&key, &issuer).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let pki = Pki {
            ca: ca_cert.pem(),
            server: leaf(&["localhost", "127.0.0.1"], "localhost"),
            client: leaf(&[], "interop-client"),
            dir,
        };
        for (f, text) in [
            ("ca.pem", &pki.ca),
            ("server.pem", &pki.server.0),
            ("server.key", &pki.server.1),
            ("client.pem", &pki.client.0),
            ("client.key", &pki.client.1),
        ] {
            std::fs::write(pki.dir.join(f), text).unwrap();
        }
        pki
    }

    fn path(&self, f: &str) -> String {
        self.dir.join(f).display().to_string()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A child process killed on drop, with its output lines on a channel.
struct Peer {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Peer {
    fn spawn(args: &[&str]) -> Peer {
        let mut child = Command::new(python())
            .arg(peer_script())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the Proton peer");
        let (tx, lines) = mpsc::channel();
        for out in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for l in BufReader::new(out).lines().map_while(Result::ok) {
                    let _ = tx.send(l);
                }
            });
        }
        Peer {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (off the async runtime) for a line containing `what`.
    async fn expect(mut self, what: &str) -> (Peer, String) {
        let what = what.to_string();
        let (peer, found) = tokio::task::spawn_blocking(move || {
            let deadline = std::time::Instant::now() + WAIT;
            loop {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                match self.lines.recv_timeout(left) {
                    Ok(l) => {
                        self.seen.push(l.clone());
                        if l.contains(&what) {
                            return (self, Ok(l));
                        }
                    }
                    Err(_) => {
                        let seen = self.seen.join("\n");
                        return (
                            self,
                            Err(format!("no {what:?} from the peer; it said:\n{seen}")),
                        );
                    }
                }
            }
        })
        .await
        .unwrap();
        (peer, found.unwrap_or_else(|e| panic!("{e}")))
    }

    /// Waits for the process to exit; its status code.
    async fn exit_code(mut self) -> (i32, String) {
        tokio::task::spawn_blocking(move || {
            let deadline = std::time::Instant::now() + WAIT;
            loop {
                if let Some(s) = self.child.try_wait().unwrap() {
                    while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(200)) {
                        self.seen.push(l);
                    }
                    return (s.code().unwrap_or(-1), self.seen.join("\n"));
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "the peer did not exit"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        })
        .await
        .unwrap()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn proton_broker(pki: &Pki, extra: &[&str]) -> (Peer, u16) {
    let (cert, key) = (pki.path("server.pem"), pki.path("server.key"));
    let mut args = vec!["broker", "127.0.0.1", "0", "--cert", &cert, "--key", &key];
    args.extend_from_slice(extra);
    let (peer, line) = Peer::spawn(&args).expect("listening on").await;
    let port = line.trim().rsplit(' ').next().unwrap().parse().unwrap();
    (peer, port)
}

/// Sends `n` messages to `q` and receives them back through the broker.
async fn round_trip(conn: &aqueduct::Connection, n: usize) {
    let sender = conn.open_sender("q").await.unwrap();
    for i in 0..n {
        sender.send(format!("m{i}")).await.unwrap();
    }
    let mut rx = conn
        .open_receiver_with(ReceiverOptions::new("q"))
        .await
        .unwrap();
    for i in 0..n {
        let d = tokio::time::timeout(WAIT, rx.next())
            .await
            .expect("a message within the deadline")
            .unwrap()
            .unwrap();
        assert_eq!(d.message().unwrap().body().to_string(), format!("m{i}"));
    }
}

#[tokio::test]
async fn our_client_amqps_to_proton() {
    let pki = Pki::new("amqps");
    let (broker, port) = proton_broker(&pki, &[]).await;
    let conn = aqueduct::connect(
        ConnectOptions::new()
            .url(format!("amqps://localhost:{port}"))
            .tls_ca_pem(&pki.ca),
    )
    .await
    .unwrap();
    round_trip(&conn, 3).await;
    conn.close().await.unwrap();
    let (_b, line) = broker.expect("auth ").await;
    assert_eq!(line, "auth anonymous ANONYMOUS");
}

#[tokio::test]
async fn our_client_external_to_proton_over_mutual_tls() {
    let pki = Pki::new("external");
    let ca = pki.path("ca.pem");
    let (broker, port) = proton_broker(
        &pki,
        &["--ca", &ca, "--require-client-cert", "--mechs", "EXTERNAL"],
    )
    .await;
    let conn = aqueduct::connect(
        ConnectOptions::new()
            .url(format!("amqps://localhost:{port}"))
            .tls_ca_pem(&pki.ca)
            .tls_client_cert_pem(&pki.client.0, &pki.client.1),
    )
    .await
    .unwrap();
    round_trip(&conn, 2).await;
    conn.close().await.unwrap();
    let (_b, line) = broker.expect("auth ").await;
    assert!(line.ends_with(" EXTERNAL"), "{line}");
    assert!(line.contains("interop-client"), "{line}");
}

#[tokio::test]
async fn our_client_plain_needs_what_proton_offers() {
    // Proton's server offers no PLAIN: with credentials we refuse to fall
    // back to ANONYMOUS and say what each side offered.
    let pki = Pki::new("noplain");
    let (_broker, port) = proton_broker(&pki, &[]).await;
    let e = aqueduct::connect(
        ConnectOptions::new()
            .url(format!("amqps://alice:secret@localhost:{port}"))
            .tls_ca_pem(&pki.ca),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::Authentication, "{e}");
    assert!(e.to_string().contains("server offers [ANONYMOUS]"), "{e}");
}

/// Our TLS listener; accepts one connection, its receiver, and `n`
/// messages; returns the identity and mechanism it saw.
async fn serve_one(
    opts: ListenOptions,
    n: usize,
) -> (u16, tokio::task::JoinHandle<(String, String)>) {
    let mut l = aqueduct::listen(opts).await.unwrap();
    let port = l.local_addr().port();
    let task = tokio::spawn(async move {
        let inc = tokio::time::timeout(WAIT, l.next()).await.unwrap().unwrap();
        let who = (
            inc.user().unwrap_or("").to_string(),
            inc.sasl_mechanism().unwrap_or("").to_string(),
        );
        assert!(inc.is_tls());
        let conn = inc.accept().unwrap();
        let mut rx = loop {
            match tokio::time::timeout(WAIT, conn.next_incoming())
                .await
                .unwrap()
            {
                Some(IncomingEndpoint::Link(link)) => {
                    break link
                        .accept_receiver(None, ReceiverOptions::default())
                        .unwrap()
                }
                Some(_) => continue,
                None => panic!("closed before a link"),
            }
        };
        for i in 1..=n {
            let d = tokio::time::timeout(WAIT, rx.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            assert_eq!(
                d.message().unwrap().body().to_string(),
                format!("message {i}")
            );
        }
        who
    });
    (port, task)
}

#[tokio::test]
async fn proton_client_plain_over_tls_to_our_listener() {
    let pki = Pki::new("plain");
    let (port, server) = serve_one(
        ListenOptions::new("amqps://127.0.0.1:0")
            .tls_cert_pem(&pki.server.0, &pki.server.1)
            .authenticator(Users::new().user("alice", "secret")),
        3,
    )
    .await;
    let url = format!("amqps://localhost:{port}");
    let ca = pki.path("ca.pem");
    let (code, out) = Peer::spawn(&[
        "send",
        &url,
        "q",
        "3",
        "--ca",
        &ca,
        "--user",
        "alice",
        "--password",
        "secret",
        "--mechs",
        "PLAIN",
    ])
    .exit_code()
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("3 messages sent and acknowledged"), "{out}");
    let (user, mech) = server.await.unwrap();
    assert_eq!((user.as_str(), mech.as_str()), ("alice", "PLAIN"));
}

#[tokio::test]
async fn proton_client_wrong_password_is_refused() {
    let pki = Pki::new("wrongpw");
    let mut l = aqueduct::listen(
        ListenOptions::new("amqps://127.0.0.1:0")
            .tls_cert_pem(&pki.server.0, &pki.server.1)
            .authenticator(Users::new().user("alice", "secret")),
    )
    .await
    .unwrap();
    let url = format!("amqps://localhost:{}", l.local_addr().port());
    let ca = pki.path("ca.pem");
    let (code, out) = Peer::spawn(&[
        "send",
        &url,
        "q",
        "1",
        "--ca",
        &ca,
        "--user",
        "alice",
        "--password",
        "nope",
        "--mechs",
        "PLAIN",
    ])
    .exit_code()
    .await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("unauthorized-access"), "{out}");
    // Nothing reached the application.
    assert!(tokio::time::timeout(Duration::from_millis(200), l.next())
        .await
        .is_err());
}

#[tokio::test]
async fn proton_client_external_over_mutual_tls_to_our_listener() {
    let pki = Pki::new("ext-listener");
    let (port, server) = serve_one(
        ListenOptions::new("amqps://127.0.0.1:0")
            .tls_cert_pem(&pki.server.0, &pki.server.1)
            .tls_client_ca_pem(&pki.ca)
            .tls_require_client_cert(true)
            .authenticator(Users::new()),
        2,
    )
    .await;
    let url = format!("amqps://localhost:{port}");
    let (ca, cert, key) = (
        pki.path("ca.pem"),
        pki.path("client.pem"),
        pki.path("client.key"),
    );
    let (code, out) = Peer::spawn(&[
        "send", &url, "q", "2", "--ca", &ca, "--cert", &cert, "--key", &key, "--mechs", "EXTERNAL",
    ])
    .exit_code()
    .await;
    assert_eq!(code, 0, "{out}");
    let (user, mech) = server.await.unwrap();
    assert_eq!(mech, "EXTERNAL");
    assert_eq!(user, "CN=interop-client");
}

/// Our `simple_send` example, built with this test's profile.
fn simple_send_example() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .args(["build", "--example", "simple_send"])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cargo.arg("--release");
    }
    let status = cargo.status().expect("run cargo build --example");
    assert!(
        status.success(),
        "cargo build --example simple_send: {status}"
    );
    profile_dir.join("examples").join("simple_send")
}

/// Runs the example against `url` with `SSL_CERT_FILE` set; exit code and
/// output.
async fn run_example(exe: &std::path::Path, url: &str, cert_file: &str) -> (i32, String) {
    let out = tokio::process::Command::new(exe)
        .args(["-a", url, "-m", "3"])
        .env("SSL_CERT_FILE", cert_file)
        .env_remove("SSL_CERT_DIR")
        .output();
    let out = tokio::time::timeout(WAIT, out).await.unwrap().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test]
async fn example_trusts_ssl_cert_file_like_openssl_tools() {
    let exe = tokio::task::spawn_blocking(simple_send_example)
        .await
        .unwrap();
    let pki = Pki::new("example");
    let mut l = aqueduct::listen(
        ListenOptions::new("amqps://127.0.0.1:0").tls_cert_pem(&pki.server.0, &pki.server.1),
    )
    .await
    .unwrap();
    let url = format!("amqps://localhost:{}/q", l.local_addr().port());
    let server = tokio::spawn(async move {
        let conn = l.next().await.unwrap().accept().unwrap();
        let mut rx = loop {
            match conn.next_incoming().await {
                Some(IncomingEndpoint::Link(link)) => {
                    break link
                        .accept_receiver(None, ReceiverOptions::default())
                        .unwrap()
                }
                Some(_) => continue,
                None => panic!("closed before a link"),
            }
        };
        for _ in 0..3 {
            rx.next().await.unwrap().unwrap();
        }
        l
    });
    let (code, out) = run_example(&exe, &url, &pki.path("ca.pem")).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("all messages confirmed"), "{out}");
    let _l = tokio::time::timeout(WAIT, server).await.unwrap().unwrap();
    // Trusting another CA only, the example names the cause and exits
    // non-zero.
    let other = Pki::new("example-other");
    let (code, out) = run_example(&exe, &url, &other.path("ca.pem")).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("untrusted certificate"), "{out}");
}

// ---- SCRAM against fe2o3-amqp's acceptor ---------------------------------

fn fe2o3_acceptor() -> PathBuf {
    let p = std::env::var_os("AQUEDUCT_PEERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peers"))
        .join("bin/fe2o3-acceptor");
    assert!(
        p.exists(),
        "missing peer {} (run scripts/install-peers; see scripts/env.sh)",
        p.display()
    );
    p
}

/// Starts the fe2o3 acceptor offering `mech` for guest/guest.
async fn fe2o3(mech: &str) -> (Peer, u16) {
    let mut child = Command::new(fe2o3_acceptor())
        .args(["127.0.0.1", "0", mech, "guest", "guest"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start fe2o3-acceptor");
    let (tx, lines) = mpsc::channel();
    for out in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
    }
    let peer = Peer {
        child,
        lines,
        seen: Vec::new(),
    };
    let (peer, line) = peer.expect("listening on").await;
    let port = line.trim().rsplit(' ').next().unwrap().parse().unwrap();
    (peer, port)
}

#[tokio::test]
async fn scram_against_fe2o3_acceptor() {
    for mech in ["SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let (peer, port) = fe2o3(mech).await;
        // The client picks the SCRAM the acceptor offers, with no
        // allowed_mechs, and verifies its signature.
        let conn = aqueduct::connect(
            ConnectOptions::new()
                .url(format!("amqp://guest:guest@127.0.0.1:{port}"))
                .allow_insecure_mechs(false),
        )
        .await
        .unwrap_or_else(|e| panic!("{mech}: {e}"));
        let sender = conn.open_sender("q").await.unwrap();
        sender.send("hello fe2o3").await.unwrap();
        let mut rx = conn
            .open_receiver_with(ReceiverOptions::new("q"))
            .await
            .unwrap();
        let d = tokio::time::timeout(WAIT, rx.next())
            .await
            .expect("a message from fe2o3")
            .unwrap()
            .unwrap();
        assert_eq!(d.message().unwrap().body().to_string(), "hello from fe2o3");
        let _ = conn.close().await;
        let (peer, line) = peer.expect("received").await;
        assert!(line.contains("hello fe2o3"), "{mech}: {line}");

        // A wrong password: the auth outcome.
        let e = aqueduct::connect(format!("amqp://guest:wrong@127.0.0.1:{port}"))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), &ErrorKind::Authentication, "{mech}: {e}");
        assert_eq!(e.sasl_code(), Some(aqueduct::SaslCode::Auth), "{mech}: {e}");
        drop(peer);
    }
}
