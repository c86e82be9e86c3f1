//! Connection options: a by-value builder whose every setter is
//! `#[must_use]`, with the defaults documented on each.

use super::defaults;
use crate::error::{Error, ErrorKind};
use crate::transport::tls::{ClientTlsOptions, Pem};
use crate::transport::{Address, TlsVerify};
use crate::types::{Map, Symbol, Value};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How to connect: where, as whom, and with which limits.
///
/// Made from a URL (`"amqp://user:pw@host:5672"`, see [`Address`]) or built
/// with [`ConnectOptions::new`] and the setters. `Debug` hides the password.
#[derive(Clone)]
pub struct ConnectOptions {
    pub(crate) address: Option<Address>,
    pub(crate) urls: Vec<Address>,
    pub(crate) reconnect: super::reconnect::Reconnect,
    pub(crate) resend_in_flight: bool,
    pub(crate) container_id: Option<String>,
    pub(crate) user: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) hostname: Option<String>,
    pub(crate) sasl_enabled: bool,
    pub(crate) allowed_mechs: Option<Vec<String>>,
    pub(crate) allow_insecure_mechs: bool,
    pub(crate) tls: ClientTlsOptions,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) max_frame_size: u32,
    pub(crate) channel_max: u16,
    pub(crate) max_message_size: u64,
    pub(crate) max_partial_bytes: u64,
    pub(crate) properties: Option<Map>,
    pub(crate) offered_capabilities: Option<Vec<Symbol>>,
    pub(crate) desired_capabilities: Option<Vec<Symbol>>,
    pub(crate) connect_timeout: Duration,
    pub(crate) open_timeout: Duration,
    pub(crate) attach_timeout: Duration,
    pub(crate) close_timeout: Duration,
    pub(crate) credit_window: u32,
    pub(crate) credit_window_bytes: u64,
    pub(crate) max_in_flight: usize,
    pub(crate) error: Option<Error>,
}

impl Default for ConnectOptions {
    /// Every default: the engine's limits and timeouts from
    /// [`proto::Config::default`](crate::proto::Config), the client's own
    /// from `client::defaults`: one source for both sides.
    fn default() -> Self {
        let engine = crate::proto::Config::default();
        ConnectOptions {
            address: None,
            urls: Vec::new(),
            reconnect: super::reconnect::Reconnect::default(),
            resend_in_flight: true,
            container_id: None,
            user: None,
            password: None,
            hostname: None,
            sasl_enabled: true,
            allowed_mechs: None,
            allow_insecure_mechs: true,
            tls: ClientTlsOptions::default(),
            idle_timeout: None,
            max_frame_size: engine.max_frame_size,
            channel_max: engine.channel_max,
            max_message_size: engine.max_message_size,
            max_partial_bytes: engine.max_partial_bytes,
            properties: None,
            offered_capabilities: None,
            desired_capabilities: None,
            connect_timeout: defaults::CONNECT_TIMEOUT,
            open_timeout: engine.open_timeout.unwrap_or(defaults::OPEN_TIMEOUT),
            attach_timeout: engine.attach_timeout.unwrap_or(defaults::ATTACH_TIMEOUT),
            close_timeout: engine.close_timeout,
            credit_window: defaults::CREDIT_WINDOW,
            credit_window_bytes: defaults::CREDIT_WINDOW_BYTES,
            max_in_flight: defaults::MAX_IN_FLIGHT,
            error: None,
        }
    }
}

impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("address", &self.address)
            .field("urls", &self.urls)
            .field("reconnect", &self.reconnect)
            .field("resend_in_flight", &self.resend_in_flight)
            .field("container_id", &self.container_id)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("hostname", &self.hostname)
            .field("sasl_enabled", &self.sasl_enabled)
            .field("allowed_mechs", &self.allowed_mechs)
            .field("allow_insecure_mechs", &self.allow_insecure_mechs)
            .field("tls", &self.tls)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_frame_size", &self.max_frame_size)
            .field("channel_max", &self.channel_max)
            .field("max_message_size", &self.max_message_size)
            .field("credit_window", &self.credit_window)
            .field("credit_window_bytes", &self.credit_window_bytes)
            .field("max_in_flight", &self.max_in_flight)
            .finish_non_exhaustive()
    }
}

impl ConnectOptions {
    /// Options with every default and no URL yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The URL to connect to (`[amqp[s]://][user[:password]@]host[:port]`).
    /// User and password in the URL fill in [`user`](Self::user) and
    /// [`password`](Self::password) unless those are set. An invalid URL
    /// makes `connect` fail with an error naming the problem.
    ///
    /// Give either `url` or [`urls`](Self::urls), not both: both make
    /// `connect` fail with [`ErrorKind::InvalidArgument`].
    #[must_use]
    pub fn url(mut self, url: impl AsRef<str>) -> Self {
        if !self.urls.is_empty() {
            self.error = Some(both_url_and_urls());
        }
        match url.as_ref().parse::<Address>() {
            Ok(a) => self.address = Some(a),
            Err(e) => self.error = Some(e),
        }
        self
    }

    /// Failover: the URLs to connect to, tried in turn, one per attempt
    /// (Proton's `urls=[...]`). The first connection goes to the first URL;
    /// after a failure or a lost connection each attempt moves on to the
    /// next, round and round, with the [`reconnect`](Self::reconnect)
    /// policy's delays. Each URL may carry its own user and password.
    ///
    /// Give either [`url`](Self::url) or `urls`, not both: both, or an empty
    /// list, make `connect` fail with [`ErrorKind::InvalidArgument`].
    #[must_use]
    pub fn urls<I, S>(mut self, urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        if self.address.is_some() {
            self.error = Some(both_url_and_urls());
        }
        let mut list = Vec::new();
        for url in urls {
            match url.as_ref().parse::<Address>() {
                Ok(a) => list.push(a),
                Err(e) => {
                    self.error = Some(e);
                    return self;
                }
            }
        }
        if list.is_empty() {
            self.error = Some(Error::new(
                ErrorKind::InvalidArgument,
                "urls([...]) needs at least one URL",
            ));
        }
        self.urls = list;
        self
    }

    /// Whether and how to reconnect after a lost connection or a failed
    /// connect. Default: [`Reconnect::exponential`], Proton's schedule (the
    /// first retry at once, then 0.1 s doubling to 10 s, forever);
    /// [`Reconnect::disabled`] turns it off. Only transient failures are
    /// retried (see [`Error::is_retriable`]). The first `connect` is
    /// bounded by [`open_timeout`](Self::open_timeout) over all its
    /// attempts.
    ///
    /// [`Reconnect::exponential`]: crate::Reconnect::exponential
    /// [`Reconnect::disabled`]: crate::Reconnect::disabled
    #[must_use]
    pub fn reconnect(mut self, reconnect: impl Into<super::reconnect::Reconnect>) -> Self {
        self.reconnect = reconnect.into();
        self
    }

    /// Whether sends that were written but had no outcome when the
    /// connection was lost are sent again on the new connection (so each
    /// `send` still resolves to the true outcome; the peer may see the
    /// message twice: at-least-once). Default: true. With false they fail
    /// with [`ErrorKind::Disconnected`], carrying the message back, and the
    /// caller decides; sends not yet written are sent either way.
    #[must_use]
    pub fn resend_in_flight(mut self, on: bool) -> Self {
        self.resend_in_flight = on;
        self
    }

    /// The container id sent in open. Default: the [`Container`]'s id, a
    /// random UUID made once per container.
    ///
    /// [`Container`]: crate::Container
    #[must_use]
    pub fn container_id(mut self, id: impl Into<String>) -> Self {
        self.container_id = Some(id.into());
        self
    }

    /// The SASL user (authcid). Default: from the URL, else none (ANONYMOUS).
    #[must_use]
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// The SASL password. Default: from the URL, else none.
    #[must_use]
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// The hostname sent in open and SASL init (the virtual host).
    /// Default: the URL's host.
    #[must_use]
    pub fn hostname(mut self, hostname: impl Into<String>) -> Self {
        self.hostname = Some(hostname.into());
        self
    }

    /// Whether to run the SASL layer before AMQP. Default: true (as Proton).
    #[must_use]
    pub fn sasl_enabled(mut self, enabled: bool) -> Self {
        self.sasl_enabled = enabled;
        self
    }

    /// The SASL mechanisms allowed, space-separated, like Proton's
    /// `allowed_mechs` (for example `"SCRAM-SHA-256 PLAIN"`); the client
    /// picks the strongest one that the server also offers. A name this
    /// build does not support (misspelt, or GSSAPI without the `gssapi`
    /// feature) makes `connect` fail with `InvalidArgument` naming the
    /// supported ones. Default: any supported mechanism that can carry the
    /// credentials given (with a user: SCRAM-SHA-512/256/1 or PLAIN, never
    /// ANONYMOUS; without: EXTERNAL with a client certificate, else
    /// ANONYMOUS).
    #[must_use]
    pub fn allowed_mechs(mut self, mechs: impl AsRef<str>) -> Self {
        match super::sasl::parse_mechs(mechs.as_ref()) {
            Ok(m) => self.allowed_mechs = Some(m),
            Err(e) => self.error = Some(e),
        }
        self
    }

    /// Whether mechanisms that send the password in clear text (PLAIN) may
    /// be used on a connection without TLS, like Proton's
    /// `allow_insecure_mechs`. Default: true, as in Proton Python, so that
    /// `amqp://guest:guest@host` works as users expect; turn it off to
    /// keep passwords off unencrypted connections (SCRAM is still allowed:
    /// it never sends the password).
    #[must_use]
    pub fn allow_insecure_mechs(mut self, allow: bool) -> Self {
        self.allow_insecure_mechs = allow;
        self
    }

    /// Uses TLS even with an `amqp://` URL (TLS-first, on the URL's port).
    /// Default: TLS only for `amqps://` URLs (port 5671 by default).
    #[must_use]
    pub fn tls(mut self, on: bool) -> Self {
        self.tls.enabled = on;
        self
    }

    /// Starts TLS with the AMQP TLS protocol header (`AMQP 2 1 0 0`, spec
    /// 5.2.1) instead of TLS-first: the client sends the header, the server
    /// echoes it, then the TLS handshake runs. Implies [`tls`](Self::tls).
    /// Default: off (TLS-first, as most brokers expect on 5671).
    #[must_use]
    pub fn tls_upgrade(mut self, on: bool) -> Self {
        self.tls.upgrade = on;
        self
    }

    /// Trusts the CA certificates in this PEM file, in addition to the
    /// platform's roots. Default: the platform's roots only (the system
    /// store, or the file `SSL_CERT_FILE` names).
    #[must_use]
    pub fn tls_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.tls.ca.push(Pem::File(path.into()));
        self
    }

    /// Trusts the CA certificates in these PEM bytes, in addition to the
    /// platform's roots.
    #[must_use]
    pub fn tls_ca_pem(mut self, pem: impl AsRef<[u8]>) -> Self {
        self.tls.ca.push(Pem::Bytes(Arc::from(pem.as_ref())));
        self
    }

    /// Presents this client certificate (PEM chain file and PEM private key
    /// file) for mutual TLS; SASL EXTERNAL can then authenticate with it.
    /// Default: none.
    #[must_use]
    pub fn tls_client_cert_files(
        mut self,
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Self {
        self.tls.client_cert = Some((Pem::File(cert.into()), Pem::File(key.into())));
        self
    }

    /// Presents this client certificate (PEM chain and PEM private key
    /// bytes) for mutual TLS. Default: none.
    #[must_use]
    pub fn tls_client_cert_pem(mut self, cert: impl AsRef<[u8]>, key: impl AsRef<[u8]>) -> Self {
        self.tls.client_cert = Some((
            Pem::Bytes(Arc::from(cert.as_ref())),
            Pem::Bytes(Arc::from(key.as_ref())),
        ));
        self
    }

    /// How the server's certificate is checked. Default:
    /// [`TlsVerify::PeerName`], the chain and the host name of the URL
    /// (never a name the peer sends).
    #[must_use]
    pub fn tls_verify(mut self, verify: TlsVerify) -> Self {
        self.tls.verify = verify;
        self
    }

    /// DANGER, development only: accepts any server certificate, so that
    /// anyone between client and server can read and change the traffic
    /// (Proton's `ANONYMOUS_PEER`). The same as
    /// `tls_verify(TlsVerify::DangerAcceptInvalidCerts)`. Default: false.
    #[must_use]
    pub fn danger_accept_invalid_certs(mut self, on: bool) -> Self {
        self.tls.verify = if on {
            TlsVerify::DangerAcceptInvalidCerts
        } else {
            TlsVerify::PeerName
        };
        self
    }

    /// Uses this rustls configuration as is, for anything the options
    /// above don't cover; the CA, client certificate and verify options are
    /// then ignored. The server name is still the URL's host. Default:
    /// built from the options above with the `ring` provider.
    #[must_use]
    pub fn tls_config(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls.config = Some(config);
        self
    }

    /// Our idle timeout: the connection closes with
    /// `amqp:resource-limit-exceeded` if the peer is silent this long; the
    /// peer is asked to send heartbeats at half of it. Default: none.
    #[must_use]
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = Some(timeout);
        self
    }

    /// The largest frame we accept. Default: 65536 bytes.
    #[must_use]
    pub fn max_frame_size(mut self, size: u32) -> Self {
        self.max_frame_size = size.max(512);
        self
    }

    /// The highest channel (session) number we accept. Default: 32767.
    #[must_use]
    pub fn channel_max(mut self, max: u16) -> Self {
        self.channel_max = max;
        self
    }

    /// The largest message our receivers accept; bigger ones detach the
    /// link with `amqp:link:message-size-exceeded`. Default: 100 MiB.
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

    /// A connection property sent in open. Default: none.
    #[must_use]
    pub fn property(mut self, key: impl Into<Symbol>, value: impl Into<Value>) -> Self {
        self.properties
            .get_or_insert_with(Map::new)
            .insert(Value::Symbol(key.into()), value.into());
        self
    }

    /// Capabilities offered in open. Default: none.
    #[must_use]
    pub fn offered_capabilities<I: IntoIterator<Item = S>, S: Into<Symbol>>(
        mut self,
        caps: I,
    ) -> Self {
        self.offered_capabilities = Some(caps.into_iter().map(Into::into).collect());
        self
    }

    /// Capabilities desired in open. Default: none.
    #[must_use]
    pub fn desired_capabilities<I: IntoIterator<Item = S>, S: Into<Symbol>>(
        mut self,
        caps: I,
    ) -> Self {
        self.desired_capabilities = Some(caps.into_iter().map(Into::into).collect());
        self
    }

    /// How long the TCP connect may take. Default: 10 s.
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long to wait for the peer's open (after TCP and SASL).
    /// Default: 15 s.
    #[must_use]
    pub fn open_timeout(mut self, timeout: Duration) -> Self {
        self.open_timeout = timeout;
        self
    }

    /// How long to wait for the peer's attach when opening a link, and its
    /// begin when opening a session. Default: 15 s.
    #[must_use]
    pub fn attach_timeout(mut self, timeout: Duration) -> Self {
        self.attach_timeout = timeout;
        self
    }

    /// How long `close` waits for the peer's close. Default: 5 s.
    #[must_use]
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// The default credit window of receivers in messages (Proton's
    /// prefetch): credit is topped up as deliveries are consumed, once half
    /// the window is free. Default: 1000 (Proton's 10 costs a round trip
    /// every few small messages; the byte bound keeps large messages in
    /// check).
    #[must_use]
    pub fn credit_window(mut self, window: u32) -> Self {
        self.credit_window = window;
        self
    }

    /// The default credit window of receivers in bytes: a receiver's window
    /// in messages shrinks to this over the average message size seen.
    /// Default: 16 MiB.
    #[must_use]
    pub fn credit_window_bytes(mut self, bytes: u64) -> Self {
        self.credit_window_bytes = bytes;
        self
    }

    /// The default bound of unsettled sends per sender; `send` waits for an
    /// outcome when it is reached. Default: 1024.
    #[must_use]
    pub fn max_in_flight(mut self, max: usize) -> Self {
        self.max_in_flight = max.max(1);
        self
    }

    /// The address to connect to, or the reason there is none.
    pub(crate) fn address(&self) -> Result<&Address, Error> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        self.address
            .as_ref()
            .or(self.urls.first())
            .ok_or_else(|| Error::new(ErrorKind::InvalidArgument, "no URL to connect to"))
    }

    /// Every address to connect to, in order (one for `url`), or the
    /// reason there is none.
    pub(crate) fn addresses(&self) -> Result<Vec<Address>, Error> {
        let first = self.address()?;
        if self.urls.is_empty() {
            Ok(vec![first.clone()])
        } else {
            Ok(self.urls.clone())
        }
    }
}

fn both_url_and_urls() -> Error {
    Error::new(
        ErrorKind::InvalidArgument,
        "give either url(...) or urls([...]) in ConnectOptions, not both",
    )
}

impl From<&str> for ConnectOptions {
    fn from(url: &str) -> Self {
        ConnectOptions::new().url(url)
    }
}

impl From<String> for ConnectOptions {
    fn from(url: String) -> Self {
        ConnectOptions::new().url(url)
    }
}

impl From<&String> for ConnectOptions {
    fn from(url: &String) -> Self {
        ConnectOptions::new().url(url)
    }
}

impl From<url::Url> for ConnectOptions {
    fn from(url: url::Url) -> Self {
        ConnectOptions::new().url(url.as_str())
    }
}

impl From<&url::Url> for ConnectOptions {
    fn from(url: &url::Url) -> Self {
        ConnectOptions::new().url(url.as_str())
    }
}
