//! The container: the identity and defaults that connections and listeners
//! share, as in Proton. `aqueduct::connect` and `aqueduct::listen` use one
//! made once per process.

use super::connection::{start_opened, Connection, Defaults};
use super::driver::Reconnector;
use super::listener::{IncomingConnection, ListenOptions, Listener};
use super::options::ConnectOptions;
use super::reconnect::{open_over, Connector, Endpoint, NextConnection, ReconnectLayer, Transport};
use crate::error::{Error, ErrorKind};
use crate::transport::Io;
use std::sync::{Arc, OnceLock};
use tower::util::BoxService;
use tower::{Layer, Service};

/// The handles' defaults from the options.
fn defaults(opts: &ConnectOptions) -> Defaults {
    Defaults {
        attach_timeout: opts.attach_timeout,
        credit_window: opts.credit_window,
        credit_window_bytes: opts.credit_window_bytes,
        max_in_flight: opts.max_in_flight,
    }
}

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
    ///
    /// With reconnect on (the default) a failed attempt is retried with
    /// the policy's delays, over the options' URLs in turn, for at most
    /// the [open timeout](ConnectOptions::open_timeout) in all (default
    /// 15 s); then `connect` fails with the last attempt's error. Errors
    /// no retry can fix (authentication, TLS verification, a peer that
    /// does not speak AMQP) fail at once.
    pub async fn connect(&self, options: impl Into<ConnectOptions>) -> Result<Connection, Error> {
        let opts = options.into();
        let connector = Connector::new(opts.clone(), self.id.to_string());
        self.connect_with(connector, opts).await
    }

    /// Connects through your own connector stack: a `tower::Service` from
    /// [`Endpoint`] to an opened [`Transport`], typically [`Connector`]
    /// wrapped in layers of your choice (a timeout per attempt, logging,
    /// an endpoint chooser). The reconnect layer of `options` goes on top,
    /// and every reconnect goes through the stack.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), aqueduct::Error> {
    /// use aqueduct::{ConnectOptions, Connector, Container};
    /// use std::time::Duration;
    /// let options = ConnectOptions::new().urls(["amqp://alpha:5672", "amqp://beta:5672"]);
    /// let container = Container::new();
    /// let stack = tower::ServiceBuilder::new()
    ///     .timeout(Duration::from_secs(3)) // per attempt
    ///     .service(Connector::new(options.clone(), container.id()));
    /// let conn = container.connect_with(stack, options).await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect_with<S>(
        &self,
        connector: S,
        options: impl Into<ConnectOptions>,
    ) -> Result<Connection, Error>
    where
        S: tower::Service<Endpoint, Response = Transport> + Clone + Send + 'static,
        S::Error: Into<tower::BoxError> + Send,
        S::Future: Send,
    {
        let opts = options.into();
        let endpoints: Vec<Endpoint> = opts.addresses()?.into_iter().map(Endpoint::from).collect();
        let mut service = ReconnectLayer::new(opts.reconnect.clone(), endpoints).layer(connector);
        let events = service.events();
        let first =
            tokio::time::timeout(opts.open_timeout, service.call(NextConnection::first())).await;
        let transport = match first {
            Ok(r) => r?,
            Err(_) => {
                let within = opts.open_timeout;
                return Err(match service.last_error() {
                    Some(e) => {
                        tracing::warn!(error = %e, "no connection within {within:?}");
                        e
                    }
                    None => Error::new(
                        ErrorKind::Timeout,
                        format!("no connection within {within:?}"),
                    ),
                });
            }
        };
        tracing::debug!(url = %transport.url(), remote = %transport.remote_open().container_id, "connected");
        let reconnect = service
            .is_enabled()
            .then(|| Reconnector::new(BoxService::new(service), opts.resend_in_flight));
        Ok(start_opened(transport, reconnect, events, defaults(&opts)))
    }

    /// Runs a client connection over a byte stream you opened yourself (any
    /// `AsyncRead + AsyncWrite`: a Unix socket, a tunnel, an in-memory
    /// `tokio::io::duplex` pipe in tests). The options' URL, if any, gives
    /// the host name sent in open and SASL and the credentials; it is not
    /// connected to, and the TLS options are not applied (wrap the stream
    /// yourself; it then counts as unencrypted for
    /// [`allow_insecure_mechs`](ConnectOptions::allow_insecure_mechs)).
    /// Resolves once the peer's open has arrived. Such a connection cannot
    /// reconnect (there is nothing to connect again to): a loss ends it.
    pub async fn connect_with_io(
        &self,
        io: impl Io,
        options: impl Into<ConnectOptions>,
    ) -> Result<Connection, Error> {
        let opts = options.into();
        let addr = opts.address().ok().cloned();
        let id = opts
            .container_id
            .clone()
            .unwrap_or_else(|| self.id.to_string());
        let url = addr.as_ref().map(|a| Endpoint::from(a.clone()).url());
        let t = open_over(
            Box::new(io),
            &opts,
            &id,
            addr.as_ref(),
            false,
            url.unwrap_or_else(|| "io".into()),
        )
        .await?;
        Ok(start_opened(t, None, Default::default(), defaults(&opts)))
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
