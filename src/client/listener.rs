//! Listening: a `Stream` of incoming connections, each inspected and then
//! accepted or refused.

use super::connection::{start, Connection, Defaults, Started};
use crate::error::{Error, ErrorKind};
use crate::frame::{AmqpError, Open};
use crate::proto::{self, PlainAuthenticator, Sasl, Side};
use crate::transport::Address;
use crate::types::{Map, Symbol};
use futures::Stream;
use std::fmt;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
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
    pub(crate) max_connections: usize,
    pub(crate) max_sessions: usize,
    pub(crate) max_links_per_session: usize,
    pub(crate) handshake_timeout: Duration,
    pub(crate) credit_window: u32,
    pub(crate) max_in_flight: usize,
    pub(crate) anonymous: bool,
    pub(crate) plain: Option<PlainAuthenticator>,
    pub(crate) sasl_required: bool,
}

impl fmt::Debug for ListenOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListenOptions")
            .field("address", &self.address)
            .field("container_id", &self.container_id)
            .field("max_frame_size", &self.max_frame_size)
            .field("max_connections", &self.max_connections)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

impl ListenOptions {
    /// Options to listen on `url` (`amqp://0.0.0.0:5672`, `[::]:0`, ...).
    pub fn new(url: impl AsRef<str>) -> Self {
        ListenOptions {
            address: url.as_ref().parse(),
            container_id: None,
            idle_timeout: None,
            max_frame_size: 65536,
            channel_max: 32767,
            max_message_size: 100 * 1024 * 1024,
            max_connections: 1024,
            max_sessions: 64,
            max_links_per_session: 1024,
            handshake_timeout: Duration::from_secs(10),
            credit_window: 10,
            max_in_flight: 1024,
            anonymous: true,
            plain: None,
            sasl_required: false,
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

    /// The default credit window of accepted receivers. Default: 10.
    #[must_use]
    pub fn credit_window(mut self, window: u32) -> Self {
        self.credit_window = window;
        self
    }

    /// Whether SASL ANONYMOUS is offered. Default: true.
    #[must_use]
    pub fn sasl_anonymous(mut self, on: bool) -> Self {
        self.anonymous = on;
        self
    }

    /// Offers SASL PLAIN, checking credentials with `check(user, password)`.
    /// Default: PLAIN not offered.
    #[must_use]
    pub fn sasl_plain(
        mut self,
        check: impl Fn(&str, &str) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.plain = Some(Arc::new(check));
        self
    }

    /// Whether clients must authenticate with SASL (else they may skip the
    /// SASL layer). Default: false.
    #[must_use]
    pub fn sasl_required(mut self, on: bool) -> Self {
        self.sasl_required = on;
        self
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
        if addr.tls {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("{addr}: amqps (TLS) is not supported by this version yet"),
            ));
        }
        let tcp = TcpListener::bind((addr.host.as_str(), addr.port))
            .await
            .map_err(|e| {
                Error::new(ErrorKind::Io, format!("could not listen on {addr}: {e}")).with_source(e)
            })?;
        let local_addr = tcp.local_addr()?;
        let (tx, rx) = mpsc::channel(64);
        let container_id = opts.container_id.clone().unwrap_or(container_id);
        let task = tokio::spawn(accept_loop(tcp, tx, container_id, opts));
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
) {
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
        let config = proto::Config {
            container_id: container_id.clone(),
            max_frame_size: opts.max_frame_size,
            channel_max: opts.channel_max,
            idle_timeout: opts.idle_timeout,
            max_message_size: opts.max_message_size,
            max_sessions: opts.max_sessions,
            max_links_per_session: opts.max_links_per_session,
            sasl: Sasl::Server {
                anonymous: opts.anonymous,
                plain: opts.plain.clone(),
                optional: !opts.sasl_required,
            },
            // A peer that does not open within the handshake timeout gets
            // a close with amqp:resource-limit-exceeded and the reason.
            open_timeout: Some(opts.handshake_timeout),
            ..Default::default()
        };
        let mut started = start(Side::Server, config, Box::new(stream), Some(permit));
        let tx = tx.clone();
        let defaults = Defaults {
            attach_timeout: proto::Config::default()
                .attach_timeout
                .unwrap_or(Duration::from_secs(15)),
            credit_window: opts.credit_window,
            max_in_flight: opts.max_in_flight,
        };
        tokio::spawn(async move {
            match started.opened().await {
                Ok(remote) => {
                    let incoming = IncomingConnection {
                        started: Some(started),
                        remote,
                        peer,
                        defaults,
                    };
                    let _ = tx.send(incoming).await;
                }
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "incoming connection failed to open");
                }
            }
        });
    }
}

/// A connection whose peer has opened it, waiting for us to accept or
/// refuse. Dropping it refuses it.
pub struct IncomingConnection {
    started: Option<Started>,
    remote: Box<Open>,
    peer: SocketAddr,
    defaults: Defaults,
}

impl fmt::Debug for IncomingConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IncomingConnection")
            .field("peer", &self.peer)
            .field("remote_container_id", &self.remote.container_id)
            .finish()
    }
}

impl IncomingConnection {
    /// The peer's socket address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
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
                error: Some(AmqpError::new(condition, description)),
                reply: None,
            });
        }
    }
}
