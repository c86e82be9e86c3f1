//! Engine configuration: what a connection announces and what it allows.

use super::sasl::{SaslClientProvider, SaslServerProvider};
use crate::types::{Map, Symbol};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Which end of the TCP connection the engine is: the client sends its
/// protocol header first; the server answers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Connects.
    Client,
    /// Accepts.
    Server,
}

/// The condition a client engine reports (locally, never sent) when the
/// server answers its header with the AMQP TLS header: TLS is required.
pub const TLS_REQUIRED: Symbol = Symbol::from_static("aqueduct:tls-required");

/// SASL settings of the engine. The mechanisms themselves come from a
/// provider (see [`SaslClientProvider`] and [`SaslServerProvider`]); the
/// engine only frames the exchange.
#[derive(Clone, Default)]
pub enum Sasl {
    /// No SASL layer: the AMQP header is sent directly. On a server, a peer
    /// that asks for SASL is refused.
    #[default]
    Disabled,
    /// As a client: run SASL, choosing a mechanism with this provider.
    Client(Arc<dyn SaslClientProvider>),
    /// As a server: offer the provider's mechanisms. A peer that skips SASL
    /// is admitted only if the provider says SASL is optional.
    Server(Arc<dyn SaslServerProvider>),
}

impl fmt::Debug for Sasl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sasl::Disabled => f.write_str("Disabled"),
            Sasl::Client(p) => f.debug_tuple("Client").field(p).finish(),
            Sasl::Server(p) => f.debug_tuple("Server").field(p).finish(),
        }
    }
}

/// What a connection engine announces and enforces.
#[derive(Clone, Debug)]
pub struct Config {
    /// The container id sent in open. Default: empty (callers set a UUID).
    pub container_id: String,
    /// The hostname (virtual host) sent in open. Default: none.
    pub hostname: Option<String>,
    /// The largest frame we accept. Default: 65536.
    pub max_frame_size: u32,
    /// The highest channel number we accept. Default: 32767.
    pub channel_max: u16,
    /// Our idle timeout: the connection closes with
    /// `amqp:resource-limit-exceeded` if the peer sends nothing for this
    /// long. Default: none.
    pub idle_timeout: Option<Duration>,
    /// Connection properties sent in open. Default: none.
    pub properties: Option<Map>,
    /// Capabilities offered in open. Default: none.
    pub offered_capabilities: Option<Vec<Symbol>>,
    /// Capabilities desired in open. Default: none.
    pub desired_capabilities: Option<Vec<Symbol>>,
    /// The largest message we accept on a receiver link; larger ones detach
    /// the link with `amqp:link:message-size-exceeded`. Default: 100 MiB.
    pub max_message_size: u64,
    /// Our session incoming window, in transfer frames. Default: 2048.
    pub incoming_window: u32,
    /// The most sessions the peer may begin. Default: 64.
    pub max_sessions: usize,
    /// The most links the peer may attach per session. Default: 1024.
    pub max_links_per_session: usize,
    /// SASL settings. Default: disabled.
    pub sasl: Sasl,
    /// How long the peer has to open the connection (from the engine's
    /// first `now`); past it the connection closes with
    /// `amqp:resource-limit-exceeded`. Default: 15 s.
    pub open_timeout: Option<Duration>,
    /// How long the peer has to answer our close before the connection is
    /// dropped. Default: 5 s.
    pub close_timeout: Duration,
    /// How long the peer has to answer an attach or a detach; past it the
    /// link is closed and reported as timed out. Default: 15 s.
    pub attach_timeout: Option<Duration>,
    /// The most bytes of partly received (multi-frame) deliveries the
    /// connection holds at once, over all links; past it the connection
    /// closes with `amqp:resource-limit-exceeded`. Default: 256 MiB.
    pub max_partial_bytes: u64,
    /// The output high-water mark, in bytes: transfers are encoded only
    /// while less output than this waits to be taken, and a driver stops
    /// reading and taking commands above it. Default: 1 MiB.
    pub output_high_water: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            container_id: String::new(),
            hostname: None,
            max_frame_size: 65536,
            channel_max: 32767,
            idle_timeout: None,
            properties: None,
            offered_capabilities: None,
            desired_capabilities: None,
            max_message_size: 100 * 1024 * 1024,
            incoming_window: 2048,
            max_sessions: 64,
            max_links_per_session: 1024,
            sasl: Sasl::Disabled,
            open_timeout: Some(Duration::from_secs(15)),
            close_timeout: Duration::from_secs(5),
            attach_timeout: Some(Duration::from_secs(15)),
            max_partial_bytes: 256 * 1024 * 1024,
            output_high_water: 1024 * 1024,
        }
    }
}
