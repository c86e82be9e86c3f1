//! The container: the identity and defaults that connections and listeners
//! share, as in Proton. `aqueduct::connect` and `aqueduct::listen` use one
//! made once per process.

use super::connection::{start, Connection, Defaults};
use super::listener::{ListenOptions, Listener};
use super::options::ConnectOptions;
use crate::error::{Error, ErrorKind};
use crate::proto::{self, Sasl, Side};
use crate::transport::{connect_tcp, Io};
use std::sync::{Arc, OnceLock};

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
        if addr.tls {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("{addr}: amqps (TLS) is not supported by this version yet"),
            ));
        }
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
        let conn = self.connect_with_io(tcp, opts).await?;
        tracing::debug!(peer = %target, remote = %conn.remote_container_id(), "connected");
        Ok(conn)
    }

    /// Runs a client connection over a byte stream you opened yourself (any
    /// `AsyncRead + AsyncWrite`: a Unix socket, a tunnel, an in-memory
    /// `tokio::io::duplex` pipe in tests). The options' URL, if any, gives
    /// the host name sent in open and SASL and the credentials; it is not
    /// connected to. Resolves once the peer's open has arrived.
    pub async fn connect_with_io(
        &self,
        io: impl Io,
        options: impl Into<ConnectOptions>,
    ) -> Result<Connection, Error> {
        let opts = options.into();
        let addr = opts.address().ok().cloned();
        let sasl = if opts.sasl_enabled {
            Sasl::Client {
                user: opts
                    .user
                    .clone()
                    .or(addr.as_ref().and_then(|a| a.user.clone())),
                password: opts
                    .password
                    .clone()
                    .or(addr.as_ref().and_then(|a| a.password.clone())),
                allowed: opts.allowed_mechs.clone(),
            }
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
            sasl,
            open_timeout: Some(opts.open_timeout),
            close_timeout: opts.close_timeout,
            attach_timeout: Some(opts.attach_timeout),
            ..Default::default()
        };
        let mut started = start(Side::Client, config, Box::new(io), None);
        let remote = started.opened().await?;
        Ok(started.into_connection(
            remote,
            Defaults {
                attach_timeout: opts.attach_timeout,
                credit_window: opts.credit_window,
                max_in_flight: opts.max_in_flight,
            },
        ))
    }

    /// Listens for connections: a URL such as `amqp://0.0.0.0:5672`
    /// (`[::]` for IPv6, port 0 for any free port) or [`ListenOptions`].
    pub async fn listen(&self, options: impl Into<ListenOptions>) -> Result<Listener, Error> {
        Listener::bind(self.id.to_string(), options.into()).await
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
