//! The byte streams under the engine: URL handling, TCP, and TLS
//! (tokio-rustls) as another [`Io`] implementation.

pub(crate) mod delay;
pub(crate) mod read;
pub(crate) mod tls;
mod url;
mod x509;

pub use self::tls::TlsVerify;
pub use self::url::Address;

use tokio::io::{AsyncRead, AsyncWrite};

/// A byte stream the driver can run a connection over: TCP, TLS, or an
/// in-memory pipe in tests.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// A boxed [`Io`].
pub(crate) type BoxIo = Box<dyn Io>;

/// Opens a TCP connection to `host:port`, trying each resolved address,
/// with `TCP_NODELAY` set.
pub(crate) async fn connect_tcp(host: &str, port: u16) -> std::io::Result<tokio::net::TcpStream> {
    let stream = tokio::net::TcpStream::connect((host, port)).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}
