//! TLS and SASL, our client against our listener: amqps, the TLS header
//! upgrade, mutual TLS, each SASL mechanism, and every failure path a user
//! can meet, with certificates made at test time (rcgen).

use aqueduct::{
    ConnectOptions, Connection, ErrorKind, IncomingConnection, IncomingEndpoint, ListenOptions,
    Listener, SaslCode, TlsVerify, Users,
};
use futures::StreamExt;
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);

/// A certificate and its key, in PEM.
#[derive(Clone)]
struct Pem {
    cert: String,
    key: String,
}

/// The test PKI: a CA, a server certificate for localhost/127.0.0.1, a
/// client certificate, a wrong-host and an expired server certificate, and
/// a second CA nobody trusts.
struct Pki {
    ca: String,
    server: Pem,
    client: Pem,
    wrong_host: Pem,
    expired: Pem,
    other_ca_server: Pem,
}

fn ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = p.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(p, key))
}

fn leaf(issuer: &Issuer<'static, KeyPair>, names: &[&str], cn: &str, expired: bool) -> Pem {
    let key = KeyPair::generate().unwrap();
    let mut p =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.distinguished_name
        .push(DnType::OrganizationName, "Aqueduct Test");
    if expired {
        p.not_before = date_time_ymd(2020, 1, 1);
        p.not_after = date_time_ymd(2021, 1, 1);
    }
    let cert = p.signed_by(&key, issuer).unwrap();
    Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

fn pki() -> Pki {
    let (ca_pem, issuer) = ca("Aqueduct Test CA");
    let (_, other) = ca("Untrusted CA");
    Pki {
        ca: ca_pem,
        server: leaf(&issuer, &["localhost", "127.0.0.1"], "localhost", false),
        client: leaf(&issuer, &[], "client", false),
        wrong_host: leaf(&issuer, &["elsewhere.example"], "elsewhere", false),
        expired: leaf(&issuer, &["localhost", "127.0.0.1"], "localhost", true),
        other_ca_server: leaf(&other, &["localhost", "127.0.0.1"], "localhost", false),
    }
}

fn tls_listen(cert: &Pem) -> ListenOptions {
    ListenOptions::new("amqps://127.0.0.1:0").tls_cert_pem(&cert.cert, &cert.key)
}

fn users() -> Users {
    Users::new().user("alice", "secret")
}

async fn listen(opts: ListenOptions) -> (Listener, u16) {
    let l = aqueduct::listen(opts).await.unwrap();
    let port = l.local_addr().port();
    (l, port)
}

/// Connects and accepts; returns the client, the accepted server side and
/// what the listener saw.
async fn connect_ok(
    listener: &mut Listener,
    opts: ConnectOptions,
) -> (Connection, Connection, IncomingInfo) {
    let (client, (server, info)) = tokio::time::timeout(
        T,
        futures::future::join(aqueduct::connect(opts), async {
            // Our open goes out when we accept.
            let incoming = listener.next().await.unwrap();
            let info = IncomingInfo::of(&incoming);
            (incoming.accept().unwrap(), info)
        }),
    )
    .await
    .expect("handshake within the timeout");
    (client.expect("connect succeeds"), server, info)
}

#[derive(Debug)]
struct IncomingInfo {
    user: Option<String>,
    mechanism: Option<String>,
    tls: bool,
    subject: Option<String>,
}

impl IncomingInfo {
    fn of(i: &IncomingConnection) -> Self {
        IncomingInfo {
            user: i.user().map(str::to_string),
            mechanism: i.sasl_mechanism().map(str::to_string),
            tls: i.is_tls(),
            subject: i.peer_certificate_subject().map(str::to_string),
        }
    }
}

/// Connects, expecting failure; the listener may see nothing.
async fn connect_err(opts: ConnectOptions) -> aqueduct::Error {
    match tokio::time::timeout(T, aqueduct::connect(opts))
        .await
        .expect("fails within the timeout")
    {
        Ok(_) => panic!("connect succeeded but should have failed"),
        Err(e) => e,
    }
}

/// A message goes from the client to the server side and is accepted.
async fn message_flows(client: &Connection, server: &Connection) {
    let (sender, mut rx) = tokio::join!(async { client.open_sender("q").await.unwrap() }, async {
        loop {
            match server.next_incoming().await {
                Some(IncomingEndpoint::Link(l)) => {
                    return l
                        .accept_receiver(
                            None,
                            aqueduct::ReceiverOptions::default().auto_accept(false),
                        )
                        .unwrap()
                }
                Some(_) => continue,
                None => panic!("server connection closed"),
            }
        }
    });
    let flow = async {
        let (outcome, body) = tokio::join!(sender.send("over tls"), async {
            let got = rx.next().await.unwrap().unwrap();
            let body = got.message().unwrap().body().to_string();
            got.accept().await.unwrap();
            body
        });
        assert_eq!(body, "over tls");
        assert_eq!(outcome.unwrap(), aqueduct::Outcome::Accepted);
    };
    tokio::time::timeout(T, flow)
        .await
        .expect("the message flows within the timeout");
}

#[tokio::test]
async fn amqps_with_our_ca_moves_messages() {
    let pki = pki();
    let (mut l, port) = listen(tls_listen(&pki.server)).await;
    let opts = ConnectOptions::new()
        .url(format!("amqps://localhost:{port}"))
        .tls_ca_pem(&pki.ca);
    let (client, server, info) = connect_ok(&mut l, opts).await;
    assert!(info.tls);
    assert_eq!(info.user.as_deref(), Some("anonymous"));
    assert_eq!(info.mechanism.as_deref(), Some("ANONYMOUS"));
    message_flows(&client, &server).await;
}

#[tokio::test]
async fn amqps_to_an_ip_address() {
    let pki = pki();
    let (mut l, port) = listen(tls_listen(&pki.server)).await;
    let opts = ConnectOptions::new()
        .url(format!("amqps://127.0.0.1:{port}"))
        .tls_ca_pem(&pki.ca);
    let (_c, _s, info) = connect_ok(&mut l, opts).await;
    assert!(info.tls);
}

#[tokio::test]
async fn tls_header_upgrade() {
    let pki = pki();
    let (mut l, port) = listen(
        ListenOptions::new("amqp://127.0.0.1:0").tls_cert_pem(&pki.server.cert, &pki.server.key),
    )
    .await;
    let opts = ConnectOptions::new()
        .url(format!("amqp://localhost:{port}"))
        .tls_upgrade(true)
        .tls_ca_pem(&pki.ca);
    let (client, server, info) = connect_ok(&mut l, opts).await;
    assert!(info.tls);
    message_flows(&client, &server).await;
}

#[tokio::test]
async fn each_password_mechanism_over_tls() {
    let pki = pki();
    let (mut l, port) = listen(tls_listen(&pki.server).authenticator(users())).await;
    for mech in ["PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let opts = ConnectOptions::new()
            .url(format!("amqps://alice:secret@localhost:{port}"))
            .tls_ca_pem(&pki.ca)
            .allowed_mechs(mech);
        let (client, server, info) = connect_ok(&mut l, opts).await;
        assert_eq!(info.mechanism.as_deref(), Some(mech), "{mech}");
        assert_eq!(info.user.as_deref(), Some("alice"), "{mech}");
        message_flows(&client, &server).await;
    }
}

#[tokio::test]
async fn scram_over_plain_tcp_and_strongest_by_default() {
    // No TLS: SCRAM never sends the password, so it is fine even with
    // insecure mechanisms disallowed; the client picks the strongest.
    let (mut l, port) =
        listen(ListenOptions::new("amqp://127.0.0.1:0").authenticator(users())).await;
    let opts = ConnectOptions::new()
        .url(format!("amqp://127.0.0.1:{port}"))
        .user("alice")
        .password("secret")
        .allow_insecure_mechs(false);
    let (_c, _s, info) = connect_ok(&mut l, opts).await;
    assert_eq!(info.mechanism.as_deref(), Some("SCRAM-SHA-512"));
    assert!(!info.tls);
}

#[tokio::test]
async fn plain_over_plain_tcp_allowed_by_default() {
    let (mut l, port) = listen(
        ListenOptions::new("amqp://127.0.0.1:0").sasl_plain(|u, p| u == "alice" && p == "secret"),
    )
    .await;
    let opts = format!("amqp://alice:secret@127.0.0.1:{port}");
    let (_c, _s, info) = connect_ok(&mut l, opts.into()).await;
    assert_eq!(info.mechanism.as_deref(), Some("PLAIN"));
}

#[tokio::test]
async fn insecure_plain_refused_when_disallowed() {
    let (_l, port) = listen(ListenOptions::new("amqp://127.0.0.1:0").sasl_plain(|_, _| true)).await;
    let e = connect_err(
        ConnectOptions::new()
            .url(format!("amqp://alice:secret@127.0.0.1:{port}"))
            .allow_insecure_mechs(false),
    )
    .await;
    assert_eq!(e.kind(), &ErrorKind::Authentication, "{e}");
    assert!(e.to_string().contains("insecure"), "{e}");
}

#[tokio::test]
async fn mutual_tls_and_external() {
    let pki = pki();
    let (mut l, port) = listen(
        tls_listen(&pki.server)
            .tls_client_ca_pem(&pki.ca)
            .tls_require_client_cert(true)
            .authenticator(users()),
    )
    .await;
    let opts = ConnectOptions::new()
        .url(format!("amqps://localhost:{port}"))
        .tls_ca_pem(&pki.ca)
        .tls_client_cert_pem(&pki.client.cert, &pki.client.key);
    let (client, server, info) = connect_ok(&mut l, opts).await;
    assert_eq!(info.mechanism.as_deref(), Some("EXTERNAL"));
    assert_eq!(info.user.as_deref(), Some("O=Aqueduct Test,CN=client"));
    assert_eq!(info.subject.as_deref(), Some("O=Aqueduct Test,CN=client"));
    message_flows(&client, &server).await;

    // Mutual TLS with a password on top: the certificate is checked by TLS,
    // the user by SASL.
    let opts = ConnectOptions::new()
        .url(format!("amqps://alice:secret@localhost:{port}"))
        .tls_ca_pem(&pki.ca)
        .tls_client_cert_pem(&pki.client.cert, &pki.client.key);
    let (_c, _s, info) = connect_ok(&mut l, opts).await;
    assert_eq!(info.user.as_deref(), Some("alice"));
    assert_eq!(info.mechanism.as_deref(), Some("SCRAM-SHA-512"));
}

#[tokio::test]
async fn missing_client_certificate_is_refused() {
    let pki = pki();
    let (_l, port) = listen(
        tls_listen(&pki.server)
            .tls_client_ca_pem(&pki.ca)
            .tls_require_client_cert(true),
    )
    .await;
    let e = connect_err(
        ConnectOptions::new()
            .url(format!("amqps://localhost:{port}"))
            .tls_ca_pem(&pki.ca),
    )
    .await;
    assert_eq!(e.kind(), &ErrorKind::UntrustedCertificate, "{e}");
}

#[tokio::test]
async fn wrong_password_is_an_auth_outcome() {
    let pki = pki();
    let (_l, port) = listen(tls_listen(&pki.server).authenticator(users())).await;
    for mech in ["PLAIN", "SCRAM-SHA-256"] {
        let e = connect_err(
            ConnectOptions::new()
                .url(format!("amqps://alice:wrong@localhost:{port}"))
                .tls_ca_pem(&pki.ca)
                .allowed_mechs(mech),
        )
        .await;
        assert_eq!(e.kind(), &ErrorKind::Authentication, "{mech}: {e}");
        assert_eq!(e.sasl_code(), Some(SaslCode::Auth), "{mech}: {e}");
        assert!(!e.is_retriable());
    }
    // An unknown user looks the same.
    let e = connect_err(
        ConnectOptions::new()
            .url(format!("amqps://mallory:secret@localhost:{port}"))
            .tls_ca_pem(&pki.ca),
    )
    .await;
    assert_eq!(e.sasl_code(), Some(SaslCode::Auth), "{e}");
}

#[tokio::test]
async fn failed_authentication_is_answered_late_when_asked() {
    let (_l, port) = listen(
        ListenOptions::new("amqp://127.0.0.1:0")
            .authenticator(users())
            .auth_failure_delay(Duration::from_millis(400)),
    )
    .await;
    let start = Instant::now();
    let e = connect_err(format!("amqp://alice:wrong@127.0.0.1:{port}").into()).await;
    assert_eq!(e.kind(), &ErrorKind::Authentication, "{e}");
    // A lower bound: holds however loaded the machine is.
    assert!(start.elapsed() >= Duration::from_millis(400));
}

#[tokio::test]
async fn untrusted_ca() {
    let pki = pki();
    // A server certificate from a CA we were not told to trust.
    let (_l, port) = listen(tls_listen(&pki.other_ca_server)).await;
    let e = connect_err(
        ConnectOptions::new()
            .url(format!("amqps://localhost:{port}"))
            .tls_ca_pem(&pki.ca),
    )
    .await;
    assert_eq!(e.kind(), &ErrorKind::UntrustedCertificate, "{e}");
    // Our test CA is not in the platform roots either.
    let (_l2, port2) = listen(tls_listen(&pki.server)).await;
    let e = connect_err(format!("amqps://localhost:{port2}").into()).await;
    assert_eq!(e.kind(), &ErrorKind::UntrustedCertificate, "{e}");
    // The development-only escape hatch accepts it.
    let mut l3 = aqueduct::listen(tls_listen(&pki.other_ca_server))
        .await
        .unwrap();
    let port3 = l3.local_addr().port();
    let opts = ConnectOptions::new()
        .url(format!("amqps://localhost:{port3}"))
        .danger_accept_invalid_certs(true);
    let (_c, _s, info) = connect_ok(&mut l3, opts).await;
    assert!(info.tls);
}

#[tokio::test]
async fn wrong_host() {
    let pki = pki();
    let (mut l, port) = listen(tls_listen(&pki.wrong_host)).await;
    let e = connect_err(
        ConnectOptions::new()
            .url(format!("amqps://localhost:{port}"))
            .tls_ca_pem(&pki.ca),
    )
    .await;
    assert_eq!(e.kind(), &ErrorKind::CertificateNameMismatch, "{e}");
    // Verifying the chain only (Proton's VERIFY_PEER) accepts it.
    let opts = ConnectOptions::new()
        .url(format!("amqps://localhost:{port}"))
        .tls_ca_pem(&pki.ca)
        .tls_verify(TlsVerify::Peer);
    let (_c, _s, info) = connect_ok(&mut l, opts).await;
    assert!(info.tls);
}

#[tokio::test]
async fn expired_certificate() {
    let pki = pki();
    let (_l, port) = listen(tls_listen(&pki.expired)).await;
    let e = connect_err(
        ConnectOptions::new()
            .url(format!("amqps://localhost:{port}"))
            .tls_ca_pem(&pki.ca),
    )
    .await;
    assert_eq!(e.kind(), &ErrorKind::CertificateExpired, "{e}");
}

#[tokio::test]
async fn tls_required_by_the_listener() {
    let pki = pki();
    let (_l, port) = listen(tls_listen(&pki.server)).await;
    for sasl in [true, false] {
        let e = connect_err(
            ConnectOptions::new()
                .url(format!("amqp://localhost:{port}"))
                .sasl_enabled(sasl),
        )
        .await;
        assert_eq!(e.kind(), &ErrorKind::TlsRequired, "sasl {sasl}: {e}");
    }
}

#[tokio::test]
async fn tls_optional_listener_takes_both() {
    let pki = pki();
    let (mut l, port) = listen(
        ListenOptions::new("amqp://127.0.0.1:0")
            .tls_cert_pem(&pki.server.cert, &pki.server.key)
            .tls_optional(true),
    )
    .await;
    let (_c, _s, info) = connect_ok(&mut l, format!("amqp://localhost:{port}").into()).await;
    assert!(!info.tls);
    let opts = ConnectOptions::new()
        .url(format!("amqp://localhost:{port}"))
        .tls(true)
        .tls_ca_pem(&pki.ca);
    let (_c, _s, info) = connect_ok(&mut l, opts).await;
    assert!(info.tls);
}

#[tokio::test]
async fn amqps_to_a_plain_listener() {
    let (_l, port) = listen(ListenOptions::new("amqp://127.0.0.1:0")).await;
    let e = connect_err(format!("amqps://localhost:{port}").into()).await;
    assert_eq!(e.kind(), &ErrorKind::Tls, "{e}");
}

#[tokio::test]
async fn no_common_mechanism_lists_both_sides() {
    let (_l, port) = listen(ListenOptions::new("amqp://127.0.0.1:0").sasl_plain(|_, _| true)).await;
    let e = connect_err(
        ConnectOptions::new()
            .url(format!("amqp://alice:secret@127.0.0.1:{port}"))
            .allowed_mechs("SCRAM-SHA-256 SCRAM-SHA-1"),
    )
    .await;
    assert_eq!(e.kind(), &ErrorKind::Authentication, "{e}");
    let s = e.to_string();
    assert!(s.contains("server offers [PLAIN]"), "{s}");
    assert!(s.contains("we allow [SCRAM-SHA-256 SCRAM-SHA-1]"), "{s}");
}

#[tokio::test]
async fn credentials_never_fall_back_to_anonymous() {
    // The listener offers ANONYMOUS only.
    let (_l, port) = listen(ListenOptions::new("amqp://127.0.0.1:0")).await;
    let e = connect_err(format!("amqp://alice:secret@127.0.0.1:{port}").into()).await;
    assert_eq!(e.kind(), &ErrorKind::Authentication, "{e}");
    assert!(e.to_string().contains("ANONYMOUS does not carry"), "{e}");
}

#[tokio::test]
async fn skipping_sasl_is_refused_with_an_authenticator() {
    let (_l, port) = listen(ListenOptions::new("amqp://127.0.0.1:0").authenticator(users())).await;
    let e = connect_err(
        ConnectOptions::new()
            .url(format!("amqp://127.0.0.1:{port}"))
            .sasl_enabled(false),
    )
    .await;
    assert!(
        matches!(e.kind(), ErrorKind::Protocol | ErrorKind::ConnectionClosed),
        "{e}"
    );
    // Unless the listener explicitly allows it.
    let (mut l, port) = listen(
        ListenOptions::new("amqp://127.0.0.1:0")
            .authenticator(users())
            .sasl_required(false),
    )
    .await;
    let opts = ConnectOptions::new()
        .url(format!("amqp://127.0.0.1:{port}"))
        .sasl_enabled(false);
    let (_c, _s, info) = connect_ok(&mut l, opts).await;
    assert_eq!(info.user, None);
    assert_eq!(info.mechanism, None);
}

#[tokio::test]
async fn anonymous_is_off_with_an_authenticator_unless_enabled() {
    let (_l, port) = listen(ListenOptions::new("amqp://127.0.0.1:0").authenticator(users())).await;
    let e = connect_err(format!("amqp://127.0.0.1:{port}").into()).await;
    assert_eq!(e.kind(), &ErrorKind::Authentication, "{e}");
    let (mut l, port) = listen(
        ListenOptions::new("amqp://127.0.0.1:0")
            .authenticator(users())
            .sasl_anonymous(true),
    )
    .await;
    let (_c, _s, info) = connect_ok(&mut l, format!("amqp://127.0.0.1:{port}").into()).await;
    assert_eq!(info.mechanism.as_deref(), Some("ANONYMOUS"));
}

#[tokio::test]
async fn unsupported_mechanism_names_are_invalid_arguments() {
    let e = connect_err(
        ConnectOptions::new()
            .url("amqp://127.0.0.1:1")
            .allowed_mechs("PLAIN SCRAM-SHA-999"),
    )
    .await;
    assert_eq!(e.kind(), &ErrorKind::InvalidArgument, "{e}");
    let s = e.to_string();
    assert!(
        s.contains("SCRAM-SHA-999") && s.contains("SCRAM-SHA-256"),
        "{s}"
    );
    let e = aqueduct::listen(ListenOptions::new("amqp://127.0.0.1:0").sasl_mechanisms("PLAN"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::InvalidArgument, "{e}");
    assert!(e.to_string().contains("PLAIN"), "{e}");
}

#[tokio::test]
async fn bad_pem_and_missing_files_are_invalid_arguments() {
    let e = connect_err(
        ConnectOptions::new()
            .url("amqps://127.0.0.1:1")
            .tls_ca_file("/nonexistent/ca.pem"),
    )
    .await;
    assert_eq!(e.kind(), &ErrorKind::InvalidArgument, "{e}");
    let e = aqueduct::listen(
        ListenOptions::new("amqps://127.0.0.1:0").tls_cert_pem("not pem", "not pem"),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::InvalidArgument, "{e}");
    let e = aqueduct::listen(ListenOptions::new("amqps://127.0.0.1:0"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::InvalidArgument, "{e}");
}
