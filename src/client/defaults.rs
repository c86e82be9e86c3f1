//! The client's own defaults. With the engine's
//! ([`proto::Config::default`](crate::proto::Config)) they are the one
//! source that [`ConnectOptions`](super::ConnectOptions) and
//! [`ListenOptions`](super::ListenOptions) take theirs from.

use std::time::Duration;

/// Receivers' credit window in messages (Proton Python's prefetch is 10,
/// which costs a round trip every few small messages; the byte bound
/// below keeps large messages in check).
pub(crate) const CREDIT_WINDOW: u32 = 1000;
/// Receivers' credit window in bytes (the window in messages shrinks to
/// this over the average message size).
pub(crate) const CREDIT_WINDOW_BYTES: u64 = 16 << 20;
/// Unsettled sends per sender.
pub(crate) const MAX_IN_FLIGHT: usize = 1024;
/// How long a TCP connect may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The open timeout, where the engine's config has none.
pub(crate) const OPEN_TIMEOUT: Duration = Duration::from_secs(15);
/// The attach timeout, where the engine's config has none.
pub(crate) const ATTACH_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a listener's peer has to open (and finish TLS and SASL).
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections a listener serves at once.
pub(crate) const MAX_CONNECTIONS: usize = 1024;
