//! The container: the identity and defaults that connections and listeners
//! share, as in Proton. `aqueduct::connect` and `aqueduct::listen` use one
//! made once per process.

use super::connection::{start, Connection, Defaults};
use super::listener::{IncomingConnection, ListenOptions, Listener};
use super::options::ConnectOptions;
use super::sasl::ClientSasl;
use crate::error::{Error, ErrorKind};
use crate::proto::{self, Sasl, SaslCode, Side};
use crate::transport::{connect_tcp, tls, BoxIo, Io};
use std::sync::{Arc, Mutex, OnceLock};

/// A messaging container: an id (by default a random UUID, made once) and
/// the defaults its connections and listeners share.
#[derive(Clone, Debug)]
pub struct Container {
    id: Arc<str>,
}

impl Default for Container {
    fn default() -> Self {
        Self::new()
    }
}

impl Container {
    /// A container with a random UUID as its id.
    pub fn new() -> Self {
        Container {
            id: Arc::from(uuid::Uuid::new_v4().to_string()),
        }
    }

    /// A container with the given id.
    pub fn with_id(id: impl Into<String>) -> Self {
        Container {
            id: Arc::from(id.into()),
        }
    }

    /// The container id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Connects to a peer: a URL (`&str`, `Url`) or [`ConnectOptions`].
    /// Resolves once the peer's open has arrived.
    pub async fn connect(&self, options: impl Into<ConnectOptions>) -> Result<Connection, Error> {
        let opts = options.into();
        let addr = opts.address()?.clone();
        let use_tls = addr.tls || opts.tls.enabled || opts.tls.upgrade;
        let tls_config = if use_tls {
            Some(opts.tls.build()?)
        } else {
            None
        };
        let target = format!("{}:{}", addr.host, addr.port);
        let tcp =
            match tokio::time::timeout(opts.connect_timeout, connect_tcp(&addr.host, addr.port))
                .await
            {
                Ok(Ok(tcp)) => tcp,
                Ok(Err(e)) => {
                    let desc = format!("could not connect to {target}: {e}");
                    return Err(Error::new(ErrorKind::Io, desc).with_source(e));
                }
                Err(_) => {
                    return Err(Error::new(
                        ErrorKind::Timeout,
                        format!(
                            "could not connect to {target} within {:?}",
                            opts.connect_timeout
                        ),
                    ))
                }
            };
        let io: BoxIo = match tls_config {
            Some(config) => {
                let handshake = tls::connect(tcp, &addr.host, config, opts.tls.upgrade, &target);
                match tokio::time::timeout(opts.open_timeout, handshake).await {
                    Ok(r) => r?,
                    Err(_) => {
                        return Err(Error::new(
                            ErrorKind::Timeout,
                            format!(
                                "TLS handshake with {target} not done within {:?}",
                                opts.open_timeout
                            ),
                        ))
                    }
                }
            }
            None => Box::new(tcp),
        };
        // With TLS 1.3 a refused client certificate shows after the
        // handshake, on the first read: give it its TLS kind too.
        let conn = match self.run_over(io, &opts, use_tls).await {
            Err(e) if use_tls => match tls::find_rustls(&e) {
                Some(t) => return Err(tls::from_rustls(t, &target)),
                None => return Err(e),
            },
            r => r?,
        };
        tracing::debug!(peer = %target, remote = %conn.remote_container_id(), "connected");
        Ok(conn)
    }

    /// Runs a client connection over a byte stream you opened yourself (any
    /// `AsyncRead + AsyncWrite`: a Unix socket, a tunnel, an in-memory
    /// `tokio::io::duplex` pipe in tests). The options' URL, if any, gives
    /// the host name sent in open and SASL and the credentials; it is not
    /// connected to, and the TLS options are not applied (wrap the stream
    /// yourself; it then counts as unencrypted for
    /// [`allow_insecure_mechs`](ConnectOptions::allow_insecure_mechs)).
    /// Resolves once the peer's open has arrived.
    pub async fn connect_with_io(
        &self,
        io: impl Io,
        options: impl Into<ConnectOptions>,
    ) -> Result<Connection, Error> {
        self.run_over(Box::new(io), &options.into(), false).await
    }

    /// The engine over `io`, until the peer's open; `encrypted` says
    /// whether `io` is TLS (for the choice of SASL mechanism).
    async fn run_over(
        &self,
        io: BoxIo,
        opts: &ConnectOptions,
        encrypted: bool,
    ) -> Result<Connection, Error> {
        let addr = opts.address().ok().cloned();
        let outcome = Arc::new(Mutex::new(None));
        let sasl = if opts.sasl_enabled {
            Sasl::Client(Arc::new(ClientSasl {
                user: opts
                    .user
                    .clone()
                    .or(addr.as_ref().and_then(|a| a.user.clone())),
                password: opts
                    .password
                    .clone()
                    .or(addr.as_ref().and_then(|a| a.password.clone())),
                allowed: opts.allowed_mechs.clone(),
                allow_insecure: opts.allow_insecure_mechs,
                encrypted,
                client_cert: encrypted && opts.tls.has_client_cert(),
                outcome: outcome.clone(),
            }))
        } else {
            Sasl::Disabled
        };
        let config = proto::Config {
            container_id: opts
                .container_id
                .clone()
                .unwrap_or_else(|| self.id.to_string()),
            hostname: opts
                .hostname
                .clone()
                .or(addr.as_ref().map(|a| a.host.clone())),
            max_frame_size: opts.max_frame_size,
            channel_max: opts.channel_max,
            idle_timeout: opts.idle_timeout,
            properties: opts.properties.clone(),
            offered_capabilities: opts.offered_capabilities.clone(),
            desired_capabilities: opts.desired_capabilities.clone(),
            max_message_size: opts.max_message_size,
            max_partial_bytes: opts.max_partial_bytes,
            sasl,
            open_timeout: Some(opts.open_timeout),
            close_timeout: opts.close_timeout,
            attach_timeout: Some(opts.attach_timeout),
            ..Default::default()
        };
        let mut started = start(Side::Client, config, io, None);
        let remote = match started.opened().await {
            Ok(r) => r,
            Err(e) => return Err(handshake_error(e, &outcome)),
        };
        Ok(started.into_connection(
            remote,
            Defaults {
                attach_timeout: opts.attach_timeout,
                credit_window: opts.credit_window,
                max_in_flight: opts.max_in_flight,
            },
        ))
    }

    /// Serves one connection over a byte stream you accepted yourself (any
    /// `AsyncRead + AsyncWrite`: a Unix socket, a tunnel, an in-memory
    /// `tokio::io::duplex` pipe in tests), with the limits, SASL settings
    /// and authenticator of `options` (its URL and TLS settings are not
    /// used: wrap the stream in TLS yourself). `peer` is what
    /// [`IncomingConnection::peer_addr`] reports. Resolves once the peer's
    /// open has arrived, to accept or refuse.
    pub async fn accept_with_io(
        &self,
        io: impl Io,
        peer: std::net::SocketAddr,
        options: impl Into<ListenOptions>,
    ) -> Result<IncomingConnection, Error> {
        let opts = options.into();
        let id = opts
            .container_id
            .clone()
            .unwrap_or_else(|| self.id.to_string());
        super::listener::accept_io(Box::new(io), peer, id, &opts).await
    }

    /// Listens for connections: a URL such as `amqp://0.0.0.0:5672`
    /// (`[::]` for IPv6, port 0 for any free port) or [`ListenOptions`].
    pub async fn listen(&self, options: impl Into<ListenOptions>) -> Result<Listener, Error> {
        Listener::bind(self.id.to_string(), options.into()).await
    }
}

/// Gives start-up failures their precise kind: TLS required by the
/// server, or the SASL outcome code of a failed authentication.
fn handshake_error(e: Error, outcome: &Mutex<Option<SaslCode>>) -> Error {
    if e.condition() == Some(proto::TLS_REQUIRED.as_str()) {
        return Error::new(
            ErrorKind::TlsRequired,
            e.description().unwrap_or("the server requires TLS"),
        );
    }
    match *outcome.lock().unwrap() {
        Some(code) if code != SaslCode::Ok && e.kind() == &ErrorKind::Authentication => {
            e.with_sasl_code(code)
        }
        _ => e,
    }
}

fn default_container() -> &'static Container {
    static DEFAULT: OnceLock<Container> = OnceLock::new();
    DEFAULT.get_or_init(Container::new)
}

/// Runs a client connection over a byte stream, with the process's
/// default [`Container`]: see [`Container::connect_with_io`].
pub async fn connect_with_io(
    io: impl Io,
    options: impl Into<ConnectOptions>,
) -> Result<Connection, Error> {
    default_container().connect_with_io(io, options).await
}

/// Serves one connection over a byte stream, with the process's default
/// [`Container`]: see [`Container::accept_with_io`].
pub async fn accept_with_io(
    io: impl Io,
    peer: std::net::SocketAddr,
    options: impl Into<ListenOptions>,
) -> Result<IncomingConnection, Error> {
    default_container().accept_with_io(io, peer, options).await
}

/// Connects with the process's default [`Container`] (its id is a UUID made
/// once). `options` is a URL (`&str`, `Url`) or [`ConnectOptions`].
pub async fn connect(options: impl Into<ConnectOptions>) -> Result<Connection, Error> {
    default_container().connect(options).await
}

/// Listens with the process's default [`Container`]. `options` is a URL
/// (`amqp://0.0.0.0:5672`, `amqp://[::]:0`) or [`ListenOptions`].
pub async fn listen(options: impl Into<ListenOptions>) -> Result<Listener, Error> {
    default_container().listen(options).await
}
