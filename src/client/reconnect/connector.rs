//! The connector: a `tower::Service` that makes one AMQP connection to an
//! [`Endpoint`] — TCP, TLS, SASL and the open exchange — and hands the
//! opened [`Transport`] to whoever drives it. Reconnect and failover are a
//! layer around it ([`ReconnectLayer`](super::ReconnectLayer)).

use crate::client::options::ConnectOptions;
use crate::client::sasl::ClientSasl;
use crate::error::{Error, ErrorKind};
use crate::frame::Open;
use crate::proto::{self, Event, Sasl, SaslCode, Side};
use crate::transport::{connect_tcp, tls, Address, BoxIo};
use futures::future::BoxFuture;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::io::AsyncWriteExt;

/// Where to connect: one URL of the options' list.
#[derive(Clone, Debug)]
pub struct Endpoint {
    address: Address,
}

impl Endpoint {
    /// An endpoint from a URL (`amqp[s]://[user[:password]@]host[:port]`).
    pub fn new(url: &str) -> Result<Self, Error> {
        Ok(Endpoint {
            address: url.parse()?,
        })
    }

    /// The parsed URL.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// The URL without the password, for logs and events.
    pub fn url(&self) -> String {
        let a = &self.address;
        let scheme = if a.tls { "amqps" } else { "amqp" };
        let host = if a.host.contains(':') {
            format!("[{}]", a.host)
        } else {
            a.host.clone()
        };
        match &a.user {
            Some(u) => format!("{scheme}://{u}@{host}:{}", a.port),
            None => format!("{scheme}://{host}:{}", a.port),
        }
    }
}

impl From<Address> for Endpoint {
    fn from(address: Address) -> Self {
        Endpoint { address }
    }
}

/// An opened AMQP connection, not yet driven: what a connector gives the
/// connection (or its reconnect layer) to run.
pub struct Transport {
    pub(crate) engine: proto::Connection,
    pub(crate) io: BoxIo,
    pub(crate) remote: Box<Open>,
    /// Engine events that came with the peer's open.
    pub(crate) events: Vec<Event>,
    pub(crate) url: String,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("url", &self.url)
            .field("remote_container_id", &self.remote.container_id)
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// The peer's open.
    pub fn remote_open(&self) -> &Open {
        &self.remote
    }

    /// The URL connected to (without the password).
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// Makes AMQP connections: a `tower::Service<Endpoint>` whose response is
/// an opened [`Transport`]. Every attempt takes its settings (TLS, SASL,
/// limits, timeouts) from the [`ConnectOptions`] it was made with; the
/// endpoint's user and password apply unless the options set them.
///
/// Wrap it in your own layers (a timeout per attempt, logging, an
/// endpoint chooser) and hand it to
/// [`Container::connect_with`](crate::Container::connect_with), which puts
/// the reconnect layer on top.
#[derive(Clone, Debug)]
pub struct Connector {
    options: Arc<ConnectOptions>,
    container_id: Arc<str>,
}

impl Connector {
    /// A connector with `options` (their URLs are not used: the endpoint
    /// says where) and the container id `container_id` unless the options
    /// set one.
    pub fn new(options: ConnectOptions, container_id: impl Into<String>) -> Self {
        let id = options
            .container_id
            .clone()
            .unwrap_or_else(|| container_id.into());
        Connector {
            options: Arc::new(options),
            container_id: Arc::from(id),
        }
    }
}

impl tower::Service<Endpoint> for Connector {
    type Response = Transport;
    type Error = Error;
    type Future = BoxFuture<'static, Result<Transport, Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, endpoint: Endpoint) -> Self::Future {
        let options = self.options.clone();
        let id = self.container_id.clone();
        Box::pin(async move { connect(&options, &id, endpoint).await })
    }
}

/// TCP, TLS if asked for, then the AMQP handshake.
async fn connect(opts: &ConnectOptions, id: &str, endpoint: Endpoint) -> Result<Transport, Error> {
    let addr = &endpoint.address;
    let use_tls = addr.tls || opts.tls.enabled || opts.tls.upgrade;
    let tls_config = if use_tls {
        Some(opts.tls.build()?)
    } else {
        None
    };
    let target = format!("{}:{}", addr.host, addr.port);
    let tcp = match tokio::time::timeout(opts.connect_timeout, connect_tcp(&addr.host, addr.port))
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
    match open_over(io, opts, id, Some(addr), use_tls, endpoint.url()).await {
        Err(e) if use_tls => match tls::find_rustls(&e) {
            Some(t) => Err(tls::from_rustls(t, &target)),
            None => Err(e),
        },
        r => r,
    }
}

/// The engine over `io`, until the peer's open; `encrypted` says whether
/// `io` is TLS (for the choice of SASL mechanism).
pub(crate) async fn open_over(
    io: BoxIo,
    opts: &ConnectOptions,
    container_id: &str,
    addr: Option<&Address>,
    encrypted: bool,
    url: String,
) -> Result<Transport, Error> {
    let outcome = Arc::new(Mutex::new(None));
    let sasl = if opts.sasl_enabled {
        Sasl::Client(Arc::new(ClientSasl {
            user: opts.user.clone().or(addr.and_then(|a| a.user.clone())),
            password: opts
                .password
                .clone()
                .or(addr.and_then(|a| a.password.clone())),
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
        container_id: container_id.to_string(),
        hostname: opts.hostname.clone().or(addr.map(|a| a.host.clone())),
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
    let mut engine = proto::Connection::new(Side::Client, config);
    engine.open();
    match handshake(engine, io).await {
        Ok((engine, io, remote, events)) => Ok(Transport {
            engine,
            io,
            remote,
            events,
            url,
        }),
        Err(e) => Err(handshake_error(e, &outcome)),
    }
}

type Opened = (proto::Connection, BoxIo, Box<Open>, Vec<Event>);

/// Runs `engine` over `io` until the peer's open has arrived and our
/// frames are written; the engine's open timeout bounds it.
async fn handshake(mut engine: proto::Connection, mut io: BoxIo) -> Result<Opened, Error> {
    let mut events = Vec::new();
    let mut remote = None;
    loop {
        while let Some(e) = engine.poll_event() {
            match e {
                Event::Opened(open) => remote = Some(open),
                Event::Closed {
                    error,
                    remote,
                    timeout,
                } => {
                    // Say goodbye if the engine has something to say.
                    if let Some(out) = engine.take_output(Instant::now()) {
                        let _ = io.write_all(&out).await;
                    }
                    let remote_open = engine.is_remote_open();
                    return Err(Error::from_close(error, remote, timeout, remote_open));
                }
                other => events.push(other),
            }
        }
        if let Some(out) = engine.take_output(Instant::now()) {
            io.write_all(&out).await.map_err(Error::from)?;
            continue; // writing may raise events
        }
        if let Some(open) = remote {
            return Ok((engine, io, open, events));
        }
        let deadline = engine.poll_timeout();
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = crate::transport::read::read_input(&mut io, engine.input_buffer()) => {
                let n = r.map_err(Error::from)?;
                if n == 0 {
                    return Err(Error::new(
                        ErrorKind::Io,
                        "the peer closed the connection without an AMQP close",
                    ));
                }
                engine.handle_input(Instant::now());
            }
            _ = sleep => engine.handle_timeout(Instant::now()),
        }
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
    match *outcome.lock().unwrap_or_else(|e| e.into_inner()) {
        Some(code) if code != SaslCode::Ok && e.kind() == &ErrorKind::Authentication => {
            e.with_sasl_code(code)
        }
        _ => e,
    }
}
