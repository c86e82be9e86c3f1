//! Listening: a `Stream` of incoming connections, each inspected and then
//! accepted or refused.

use super::connection::{start, Connection, Defaults, Started};
use super::defaults;
use super::sasl::{parse_mechs, AuthInfo, Authenticator, ServerSasl};
use crate::error::{Error, ErrorKind};
use crate::frame::{AmqpError, Open};
use crate::proto::{self, Sasl, Side};
use crate::transport::delay::DelayOnFlag;
use crate::transport::tls::{self, Pem, ServerTlsOptions};
use crate::transport::{Address, BoxIo};
use crate::types::{Map, Symbol};
use futures::Stream;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};

/// The server side of the connection options.
#[derive(Clone)]
pub struct ListenOptions {
    pub(crate) address: Result<Address, Error>,
    pub(crate) container_id: Option<String>,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) max_frame_size: u32,
    pub(crate) channel_max: u16,
    pub(crate) max_message_size: u64,
    pub(crate) max_partial_bytes: u64,
    pub(crate) max_connections: usize,
    pub(crate) max_sessions: usize,
    pub(crate) max_links_per_session: usize,
    pub(crate) handshake_timeout: Duration,
    pub(crate) credit_window: u32,
    pub(crate) credit_window_bytes: u64,
    pub(crate) max_in_flight: usize,
    pub(crate) anonymous: Option<bool>,
    pub(crate) authenticator: Option<Arc<dyn Authenticator>>,
    pub(crate) mechanisms: Option<Vec<String>>,
    pub(crate) sasl_required: Option<bool>,
    pub(crate) auth_failure_delay: Duration,
    pub(crate) tls: ServerTlsOptions,
    pub(crate) error: Option<Error>,
}

impl fmt::Debug for ListenOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListenOptions")
            .field("address", &self.address)
            .field("container_id", &self.container_id)
            .field("max_frame_size", &self.max_frame_size)
            .field("max_connections", &self.max_connections)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("anonymous", &self.anonymous)
            .field("authenticator", &self.authenticator.is_some())
            .field("mechanisms", &self.mechanisms)
            .field("sasl_required", &self.sasl_required)
            .field("auth_failure_delay", &self.auth_failure_delay)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl ListenOptions {
    /// Options to listen on `url` (`amqp://0.0.0.0:5672`, `[::]:0`, ...).
    pub fn new(url: impl AsRef<str>) -> Self {
        // One source of defaults: the engine's, then the client's own.
        let engine = proto::Config::default();
        ListenOptions {
            address: url.as_ref().parse(),
            container_id: None,
            idle_timeout: None,
            max_frame_size: engine.max_frame_size,
            channel_max: engine.channel_max,
            max_message_size: engine.max_message_size,
            max_partial_bytes: engine.max_partial_bytes,
            max_connections: defaults::MAX_CONNECTIONS,
            max_sessions: engine.max_sessions,
            max_links_per_session: engine.max_links_per_session,
            handshake_timeout: defaults::HANDSHAKE_TIMEOUT,
            credit_window: defaults::CREDIT_WINDOW,
            credit_window_bytes: defaults::CREDIT_WINDOW_BYTES,
            max_in_flight: defaults::MAX_IN_FLIGHT,
            anonymous: None,
            authenticator: None,
            mechanisms: None,
            sasl_required: None,
            auth_failure_delay: Duration::ZERO,
            tls: ServerTlsOptions::default(),
            error: None,
        }
    }

    /// The container id sent in open. Default: the container's.
    #[must_use]
    pub fn container_id(mut self, id: impl Into<String>) -> Self {
        self.container_id = Some(id.into());
        self
    }

    /// Our idle timeout. Default: none.
    #[must_use]
    pub fn idle_timeout(mut self, t: Duration) -> Self {
        self.idle_timeout = Some(t);
        self
    }

    /// The largest frame we accept. Default: 65536.
    #[must_use]
    pub fn max_frame_size(mut self, size: u32) -> Self {
        self.max_frame_size = size.max(512);
        self
    }

    /// The highest channel number we accept. Default: 32767.
    #[must_use]
    pub fn channel_max(mut self, max: u16) -> Self {
        self.channel_max = max;
        self
    }

    /// The largest message we accept. Default: 100 MiB.
    #[must_use]
    pub fn max_message_size(mut self, size: u64) -> Self {
        self.max_message_size = size;
        self
    }

    /// The most bytes of partly received (multi-frame) messages the
    /// connection holds at once, over all its links; past it the connection
    /// closes with `amqp:resource-limit-exceeded`. Default: 256 MiB.
    #[must_use]
    pub fn max_partial_bytes(mut self, bytes: u64) -> Self {
        self.max_partial_bytes = bytes;
        self
    }

    /// The most connections open at once; more wait in the TCP backlog.
    /// Default: 1024.
    #[must_use]
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// The most sessions per connection. Default: 64.
    #[must_use]
    pub fn max_sessions(mut self, max: usize) -> Self {
        self.max_sessions = max.max(1);
        self
    }

    /// The most links per session. Default: 1024.
    #[must_use]
    pub fn max_links_per_session(mut self, max: usize) -> Self {
        self.max_links_per_session = max.max(1);
        self
    }

    /// How long a new connection may take to open (protocol headers, SASL
    /// and open); a peer that sends nothing is dropped after it. Default:
    /// 10 s.
    #[must_use]
    pub fn handshake_timeout(mut self, t: Duration) -> Self {
        self.handshake_timeout = t;
        self
    }

    /// The default credit window of accepted receivers, in messages.
    /// Default: 1000 (see [`ReceiverOptions::credit_window`](crate::ReceiverOptions::credit_window)).
    #[must_use]
    pub fn credit_window(mut self, window: u32) -> Self {
        self.credit_window = window;
        self
    }

    /// The default credit window of accepted receivers, in bytes.
    /// Default: 16 MiB (see [`ReceiverOptions::credit_window_bytes`](crate::ReceiverOptions::credit_window_bytes)).
    #[must_use]
    pub fn credit_window_bytes(mut self, bytes: u64) -> Self {
        self.credit_window_bytes = bytes;
        self
    }

    /// Whether SASL ANONYMOUS is offered. Default: true without an
    /// authenticator, false with one.
    #[must_use]
    pub fn sasl_anonymous(mut self, on: bool) -> Self {
        self.anonymous = Some(on);
        self
    }

    /// Offers SASL PLAIN (and nothing stronger), checking credentials with
    /// `check(user, password)`: a shorthand for
    /// `authenticator(check).sasl_mechanisms("PLAIN")`. Default: PLAIN not
    /// offered.
    #[must_use]
    pub fn sasl_plain(
        mut self,
        check: impl Fn(&str, &str) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.authenticator = Some(Arc::new(check));
        self.mechanisms = Some(vec!["PLAIN".into()]);
        self
    }

    /// Checks clients' credentials with `authenticator` (for example
    /// [`Users`](crate::Users)). With one, the listener offers
    /// SCRAM-SHA-512, SCRAM-SHA-256, SCRAM-SHA-1 and PLAIN (see
    /// [`sasl_mechanisms`](Self::sasl_mechanisms)), EXTERNAL to clients
    /// that presented a verified certificate, requires SASL (see
    /// [`sasl_required`](Self::sasl_required)) and stops offering
    /// ANONYMOUS unless [`sasl_anonymous`](Self::sasl_anonymous) turns it
    /// back on. Default: none.
    #[must_use]
    pub fn authenticator(mut self, authenticator: impl Authenticator) -> Self {
        self.authenticator = Some(Arc::new(authenticator));
        self
    }

    /// The SASL mechanisms offered, space-separated, in order of
    /// preference (for example `"SCRAM-SHA-256 PLAIN"`). Password
    /// mechanisms need an [`authenticator`](Self::authenticator); EXTERNAL
    /// is offered only to clients with a verified certificate; listing
    /// ANONYMOUS enables it. An unsupported name makes `listen` fail with
    /// `InvalidArgument` naming the supported ones. Default: see
    /// [`authenticator`](Self::authenticator).
    #[must_use]
    pub fn sasl_mechanisms(mut self, mechs: impl AsRef<str>) -> Self {
        match parse_mechs(mechs.as_ref()) {
            Ok(m) if m.iter().any(|x| x == "GSSAPI") => {
                self.error = Some(Error::new(
                    ErrorKind::InvalidArgument,
                    "GSSAPI is supported on the client side only in this version",
                ))
            }
            Ok(m) => self.mechanisms = Some(m),
            Err(e) => self.error = Some(e),
        }
        self
    }

    /// Whether clients must authenticate with SASL; when false, a client
    /// may skip the SASL layer by sending the plain AMQP header. Default:
    /// true with an authenticator (a client could otherwise bypass it),
    /// false without.
    #[must_use]
    pub fn sasl_required(mut self, on: bool) -> Self {
        self.sasl_required = Some(on);
        self
    }

    /// How long to wait before answering a failed authentication, so that
    /// guessing passwords is slow (each failure is also logged at `warn`
    /// with the peer's address). Default: no delay.
    #[must_use]
    pub fn auth_failure_delay(mut self, delay: Duration) -> Self {
        self.auth_failure_delay = delay;
        self
    }

    /// Serves TLS with this certificate chain and private key (PEM files).
    /// Clients must then use TLS (TLS-first, as `amqps`, or the AMQP TLS
    /// header upgrade), unless [`tls_optional`](Self::tls_optional).
    /// Default: no TLS.
    #[must_use]
    pub fn tls_cert_files(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.tls.cert = Some((Pem::File(cert.into()), Pem::File(key.into())));
        self
    }

    /// Serves TLS with this certificate chain and private key (PEM bytes).
    /// Default: no TLS.
    #[must_use]
    pub fn tls_cert_pem(mut self, cert: impl AsRef<[u8]>, key: impl AsRef<[u8]>) -> Self {
        self.tls.cert = Some((
            Pem::Bytes(Arc::from(cert.as_ref())),
            Pem::Bytes(Arc::from(key.as_ref())),
        ));
        self
    }

    /// Asks TLS clients for a certificate signed by a CA in this PEM file
    /// (optional unless [`tls_require_client_cert`](Self::tls_require_client_cert)).
    /// Default: client certificates are not asked for.
    #[must_use]
    pub fn tls_client_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.tls.client_ca.push(Pem::File(path.into()));
        self
    }

    /// Asks TLS clients for a certificate signed by a CA in these PEM
    /// bytes. Default: client certificates are not asked for.
    #[must_use]
    pub fn tls_client_ca_pem(mut self, pem: impl AsRef<[u8]>) -> Self {
        self.tls.client_ca.push(Pem::Bytes(Arc::from(pem.as_ref())));
        self
    }

    /// Whether a client certificate is required (the handshake fails
    /// without one). Needs a client CA. Default: false (asked for, not
    /// required).
    #[must_use]
    pub fn tls_require_client_cert(mut self, on: bool) -> Self {
        self.tls.require_client_cert = on;
        self
    }

    /// Whether clients may also connect without TLS when TLS is configured.
    /// Default: false: a client that sends a plain AMQP or SASL header is
    /// answered with the TLS header and disconnected (it sees
    /// `ErrorKind::TlsRequired`).
    #[must_use]
    pub fn tls_optional(mut self, on: bool) -> Self {
        self.tls.optional = on;
        self
    }

    /// Uses this rustls configuration as is (the certificate and client-CA
    /// options are then ignored). Default: built from those options with
    /// the `ring` provider.
    #[must_use]
    pub fn tls_config(mut self, config: Arc<rustls::ServerConfig>) -> Self {
        self.tls.config = Some(config);
        self
    }

    /// The mechanisms offered to one client.
    fn offered(&self, client_cert: bool) -> Vec<String> {
        let anonymous = self.anonymous.unwrap_or(self.authenticator.is_none());
        let has_auth = self.authenticator.is_some();
        let mut list: Vec<String> = match &self.mechanisms {
            Some(m) => m.clone(),
            None => [
                "SCRAM-SHA-512",
                "SCRAM-SHA-256",
                "SCRAM-SHA-1",
                "EXTERNAL",
                "PLAIN",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        };
        let explicit_anonymous = self
            .mechanisms
            .as_ref()
            .is_some_and(|m| m.iter().any(|x| x == "ANONYMOUS"));
        list.retain(|m| match m.as_str() {
            "EXTERNAL" => client_cert,
            "ANONYMOUS" => anonymous || self.anonymous.is_none(),
            _ => has_auth,
        });
        if anonymous && !explicit_anonymous && !list.iter().any(|m| m == "ANONYMOUS") {
            list.push("ANONYMOUS".into());
        }
        list
    }
}

impl From<&str> for ListenOptions {
    fn from(url: &str) -> Self {
        ListenOptions::new(url)
    }
}

impl From<String> for ListenOptions {
    fn from(url: String) -> Self {
        ListenOptions::new(url)
    }
}

/// A bound listener: a `Stream` of [`IncomingConnection`]s whose peers have
/// sent their open. Dropping it stops accepting; open connections go on.
#[derive(Debug)]
pub struct Listener {
    local_addr: SocketAddr,
    rx: mpsc::Receiver<IncomingConnection>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Listener {
    pub(crate) async fn bind(container_id: String, opts: ListenOptions) -> Result<Listener, Error> {
        let addr = opts.address.clone()?;
        if let Some(e) = &opts.error {
            return Err(e.clone());
        }
        if addr.tls && !opts.tls.configured() {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("{addr}: an amqps listener needs a certificate (ListenOptions::tls_cert_files or tls_cert_pem)"),
            ));
        }
        let acceptor = if opts.tls.configured() {
            Some(tokio_rustls::TlsAcceptor::from(opts.tls.build()?))
        } else {
            None
        };
        let tcp = TcpListener::bind((addr.host.as_str(), addr.port))
            .await
            .map_err(|e| {
                Error::new(ErrorKind::Io, format!("could not listen on {addr}: {e}")).with_source(e)
            })?;
        let local_addr = tcp.local_addr()?;
        let (tx, rx) = mpsc::channel(64);
        let container_id = opts.container_id.clone().unwrap_or(container_id);
        let task = tokio::spawn(accept_loop(tcp, tx, container_id, opts, acceptor));
        tracing::debug!(%local_addr, "listening");
        Ok(Listener {
            local_addr,
            rx,
            task,
        })
    }

    /// The address the listener is bound to (with the real port if port 0
    /// was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The next incoming connection.
    pub async fn accept(&mut self) -> Option<IncomingConnection> {
        self.rx.recv().await
    }
}

impl Stream for Listener {
    type Item = IncomingConnection;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

async fn accept_loop(
    tcp: TcpListener,
    tx: mpsc::Sender<IncomingConnection>,
    container_id: String,
    opts: ListenOptions,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
) {
    let opts = Arc::new(opts);
    let limit = Arc::new(Semaphore::new(opts.max_connections));
    loop {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match tcp.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let tx = tx.clone();
        let opts = opts.clone();
        let acceptor = acceptor.clone();
        let container_id = container_id.clone();
        tokio::spawn(async move {
            let timeout = opts.handshake_timeout;
            let required = !opts.tls.optional;
            let accepted =
                tokio::time::timeout(timeout, tls::accept(stream, acceptor.as_ref(), required))
                    .await;
            let accepted = match accepted {
                Ok(Ok(a)) => a,
                Ok(Err(e)) => {
                    tracing::warn!(%peer, error = %e, "TLS set-up with a client failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "no TLS handshake within the handshake timeout");
                    return;
                }
            };
            if let Ok(incoming) = serve(accepted, peer, Some(permit), container_id, &opts).await {
                let _ = tx.send(incoming).await;
            }
        });
    }
}

/// Serves one connection over a byte stream accepted by the caller (any
/// `AsyncRead + AsyncWrite`: a Unix socket, a tunnel, an in-memory
/// `tokio::io::duplex` pipe in tests), with `options`' limits, SASL and
/// authenticator; its URL and TLS settings are not used (wrap the stream in
/// TLS yourself; it then counts as unencrypted). `peer` is what
/// [`IncomingConnection::peer_addr`] reports. Resolves once the peer's open
/// has arrived, to accept or refuse.
pub(crate) async fn accept_io(
    io: BoxIo,
    peer: SocketAddr,
    container_id: String,
    opts: &ListenOptions,
) -> Result<IncomingConnection, Error> {
    let accepted = tls::Accepted {
        io,
        tls: false,
        peer_subject: None,
    };
    serve(accepted, peer, None, container_id, opts).await
}

/// Runs the engine over a connection whose transport is set up, until the
/// peer's open (or failure).
async fn serve(
    accepted: tls::Accepted,
    peer: SocketAddr,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    container_id: String,
    opts: &ListenOptions,
) -> Result<IncomingConnection, Error> {
    let failed = Arc::new(AtomicBool::new(false));
    let auth = Arc::new(Mutex::new(None));
    let client_cert = accepted.peer_subject.is_some();
    let sasl = ServerSasl {
        mechanisms: opts.offered(client_cert),
        authenticator: opts.authenticator.clone(),
        external: accepted.peer_subject.clone(),
        optional: !opts.sasl_required.unwrap_or(opts.authenticator.is_some()),
        peer,
        result: auth.clone(),
        failed: failed.clone(),
    };
    let config = proto::Config {
        container_id,
        max_frame_size: opts.max_frame_size,
        channel_max: opts.channel_max,
        idle_timeout: opts.idle_timeout,
        max_message_size: opts.max_message_size,
        max_partial_bytes: opts.max_partial_bytes,
        max_sessions: opts.max_sessions,
        max_links_per_session: opts.max_links_per_session,
        sasl: Sasl::Server(Arc::new(sasl)),
        // A peer that does not open within the handshake timeout gets
        // a close with amqp:resource-limit-exceeded and the reason.
        open_timeout: Some(opts.handshake_timeout),
        ..Default::default()
    };
    let io: crate::transport::BoxIo = if opts.auth_failure_delay.is_zero() {
        accepted.io
    } else {
        Box::new(DelayOnFlag::new(
            accepted.io,
            failed,
            opts.auth_failure_delay,
        ))
    };
    let mut started = start(Side::Server, config, io, permit);
    let defaults = Defaults {
        attach_timeout: proto::Config::default()
            .attach_timeout
            .unwrap_or(defaults::ATTACH_TIMEOUT),
        credit_window: opts.credit_window,
        credit_window_bytes: opts.credit_window_bytes,
        max_in_flight: opts.max_in_flight,
    };
    match started.opened().await {
        Ok(remote) => {
            let auth = auth.lock().unwrap().clone();
            let incoming = IncomingConnection {
                started: Some(started),
                remote,
                peer,
                defaults,
                auth,
                tls: accepted.tls,
                peer_subject: accepted.peer_subject,
            };
            Ok(incoming)
        }
        Err(e) => {
            tracing::debug!(%peer, error = %e, "incoming connection failed to open");
            Err(e)
        }
    }
}

/// A connection whose peer has opened it, waiting for us to accept or
/// refuse. Dropping it refuses it.
pub struct IncomingConnection {
    started: Option<Started>,
    remote: Box<Open>,
    peer: SocketAddr,
    defaults: Defaults,
    auth: Option<AuthInfo>,
    tls: bool,
    peer_subject: Option<String>,
}

impl fmt::Debug for IncomingConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IncomingConnection")
            .field("peer", &self.peer)
            .field("remote_container_id", &self.remote.container_id)
            .field("user", &self.user())
            .field("sasl_mechanism", &self.sasl_mechanism())
            .field("tls", &self.tls)
            .finish()
    }
}

impl IncomingConnection {
    /// The peer's socket address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// The identity SASL authenticated: the user name (PLAIN, SCRAM),
    /// the client certificate's subject (EXTERNAL, for example
    /// `O=Example,CN=alice`), or `anonymous`. `None` if the client skipped
    /// SASL (allowed only when SASL is not required).
    pub fn user(&self) -> Option<&str> {
        self.auth.as_ref().map(|a| a.identity.as_str())
    }

    /// The SASL mechanism the client authenticated with, if any.
    pub fn sasl_mechanism(&self) -> Option<&str> {
        self.auth.as_ref().map(|a| a.mechanism.as_str())
    }

    /// Whether the connection runs over TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The subject of the client's verified TLS certificate, if it
    /// presented one.
    pub fn peer_certificate_subject(&self) -> Option<&str> {
        self.peer_subject.as_deref()
    }

    /// The peer's container id.
    pub fn remote_container_id(&self) -> &str {
        &self.remote.container_id
    }

    /// The hostname the peer asked for, if any.
    pub fn hostname(&self) -> Option<&str> {
        self.remote.hostname.as_deref()
    }

    /// The peer's connection properties.
    pub fn properties(&self) -> Option<&Map> {
        self.remote.properties.as_ref()
    }

    /// The peer's whole open.
    pub fn remote_open(&self) -> &Open {
        &self.remote
    }

    /// Accepts: sends our open. The connection is then like a client's;
    /// what the peer opens comes from [`Connection::next_incoming`].
    pub fn accept(mut self) -> Result<Connection, Error> {
        let started = self.started.take().expect("answered once");
        started.tx.send(super::driver::Command::Open).map_err(|_| {
            Error::new(
                ErrorKind::Closed,
                "the connection closed before it was accepted",
            )
        })?;
        Ok(started.into_connection(self.remote.clone(), self.defaults.clone()))
    }

    /// Refuses: sends open, then close with this error.
    pub fn refuse(mut self, condition: impl Into<Symbol>, description: impl Into<String>) {
        if let Some(started) = self.started.take() {
            let _ = started.tx.send(super::driver::Command::Close {
                error: Some(Box::new(AmqpError::new(condition, description))),
                reply: None,
            });
        }
    }
}
