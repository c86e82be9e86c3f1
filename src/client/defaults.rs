//! The client's own defaults. With the engine's
//! ([`proto::Config::default`](crate::proto::Config)) they are the one
//! source that [`ConnectOptions`](super::ConnectOptions) and
//! [`ListenOptions`](super::ListenOptions) take theirs from.

use std::time::Duration;

/// Receivers' prefetch (Proton Python's default).
pub(crate) const CREDIT_WINDOW: u32 = 10;
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
