//! TLS with tokio-rustls: the client's and the listener's configurations
//! (always built with the `ring` crypto provider, never a process-wide
//! default), TLS-first and the AMQP TLS header upgrade (`AMQP 2 1 0 0`),
//! and the mapping of rustls failures to typed errors.

use super::BoxIo;
use crate::error::{Error, ErrorKind};
use crate::frame::codec::ProtocolId;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// How a client checks the server's certificate (Proton's `ssl_domain`
/// verify modes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsVerify {
    /// Verify the certificate chain and that it names the host we connect
    /// to (Proton's `VERIFY_PEER_NAME`). The default.
    #[default]
    PeerName,
    /// Verify the certificate chain only, not the name (Proton's
    /// `VERIFY_PEER`).
    Peer,
    /// Verify nothing (Proton's `ANONYMOUS_PEER`): anyone in the middle can
    /// read and change the traffic. For development only.
    DangerAcceptInvalidCerts,
}

/// PEM input: a file or bytes.
#[derive(Clone)]
pub(crate) enum Pem {
    File(PathBuf),
    Bytes(Arc<[u8]>),
}

impl fmt::Debug for Pem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pem::File(p) => write!(f, "File({})", p.display()),
            Pem::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
        }
    }
}

impl Pem {
    fn read(&self) -> Result<Arc<[u8]>, Error> {
        match self {
            Pem::File(p) => std::fs::read(p).map(Arc::from).map_err(|e| {
                Error::new(ErrorKind::InvalidArgument, format!("{}: {e}", p.display()))
                    .with_source(e)
            }),
            Pem::Bytes(b) => Ok(b.clone()),
        }
    }

    fn what(&self) -> String {
        match self {
            Pem::File(p) => p.display().to_string(),
            Pem::Bytes(_) => "PEM bytes".into(),
        }
    }

    pub(crate) fn certs(&self) -> Result<Vec<CertificateDer<'static>>, Error> {
        let data = self.read()?;
        let certs = CertificateDer::pem_slice_iter(&data)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                Error::new(
                    ErrorKind::InvalidArgument,
                    format!("{}: bad PEM certificate: {e}", self.what()),
                )
            })?;
        if certs.is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("{}: no PEM certificate found", self.what()),
            ));
        }
        Ok(certs)
    }

    pub(crate) fn key(&self) -> Result<PrivateKeyDer<'static>, Error> {
        let data = self.read()?;
        PrivateKeyDer::from_pem_slice(&data).map_err(|e| {
            Error::new(
                ErrorKind::InvalidArgument,
                format!("{}: no usable PEM private key: {e}", self.what()),
            )
        })
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_error(e: rustls::Error, what: &str) -> Error {
    Error::new(ErrorKind::Tls, format!("{what}: {e}")).with_source(e)
}

/// The client's TLS settings, as [`ConnectOptions`](crate::ConnectOptions)
/// gathers them.
#[derive(Clone, Debug, Default)]
pub(crate) struct ClientTlsOptions {
    /// TLS on an `amqp://` URL too.
    pub(crate) enabled: bool,
    /// Send `AMQP 2 1 0 0` first and start TLS once the server echoes it.
    pub(crate) upgrade: bool,
    pub(crate) ca: Vec<Pem>,
    pub(crate) client_cert: Option<(Pem, Pem)>,
    pub(crate) verify: TlsVerify,
    pub(crate) config: Option<Arc<rustls::ClientConfig>>,
}

impl ClientTlsOptions {
    /// Whether a client certificate will be presented.
    pub(crate) fn has_client_cert(&self) -> bool {
        self.client_cert.is_some()
            || self
                .config
                .as_ref()
                .is_some_and(|c| c.client_auth_cert_resolver.has_certs())
    }

    /// Builds the rustls configuration.
    pub(crate) fn build(&self) -> Result<Arc<rustls::ClientConfig>, Error> {
        if let Some(c) = &self.config {
            return Ok(c.clone());
        }
        let provider = provider();
        let mut extra = Vec::new();
        for pem in &self.ca {
            extra.extend(pem.certs()?);
        }
        let verifier: Arc<dyn ServerCertVerifier> = match self.verify {
            TlsVerify::DangerAcceptInvalidCerts => Arc::new(AcceptAnything(provider.clone())),
            v => {
                let inner: Arc<dyn ServerCertVerifier> = Arc::new(
                    rustls_platform_verifier::Verifier::new_with_extra_roots(
                        extra,
                        provider.clone(),
                    )
                    .map_err(|e| tls_error(e, "could not load the trusted CA certificates"))?,
                );
                if v == TlsVerify::Peer {
                    Arc::new(IgnoreName(inner))
                } else {
                    inner
                }
            }
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error(e, "TLS configuration"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let config = match &self.client_cert {
            Some((cert, key)) => builder
                .with_client_auth_cert(cert.certs()?, key.key()?)
                .map_err(|e| tls_error(e, "the client certificate or key is unusable"))?,
            None => builder.with_no_client_auth(),
        };
        Ok(Arc::new(config))
    }
}

/// Verifies the chain but not the name (`TlsVerify::Peer`).
#[derive(Debug)]
struct IgnoreName(Arc<dyn ServerCertVerifier>);

impl ServerCertVerifier for IgnoreName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            r => r,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Accepts any certificate (`TlsVerify::DangerAcceptInvalidCerts`); the
/// handshake signatures are still checked.
#[derive(Debug)]
struct AcceptAnything(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Maps a handshake failure to a typed error.
pub(crate) fn handshake_error(e: io::Error, target: &str) -> Error {
    let tls = e
        .get_ref()
        .and_then(|i| i.downcast_ref::<rustls::Error>())
        .cloned();
    let Some(t) = tls else {
        let kind = if e.kind() == io::ErrorKind::UnexpectedEof
            || e.kind() == io::ErrorKind::ConnectionReset
        {
            ErrorKind::Tls
        } else {
            ErrorKind::Io
        };
        let desc = format!("TLS handshake with {target} failed: {e}");
        return Error::new(kind, desc).with_source(e);
    };
    from_rustls(t, target)
}

/// A typed error from a rustls failure (during or after the handshake:
/// with TLS 1.3 a refused client certificate shows on the first read).
pub(crate) fn from_rustls(t: rustls::Error, target: &str) -> Error {
    let (kind, why) = classify(&t);
    Error::new(kind, format!("{target}: {why}: {t}")).with_source(t)
}

/// Finds a rustls failure among the causes of `e`.
pub(crate) fn find_rustls(e: &Error) -> Option<rustls::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(c) = cur {
        if let Some(t) = c.downcast_ref::<rustls::Error>() {
            return Some(t.clone());
        }
        if let Some(io) = c.downcast_ref::<io::Error>() {
            if let Some(t) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                return Some(t.clone());
            }
        }
        cur = c.source();
    }
    None
}

fn classify(t: &rustls::Error) -> (ErrorKind, &'static str) {
    use CertificateError as C;
    match t {
        rustls::Error::InvalidCertificate(
            C::NotValidForName | C::NotValidForNameContext { .. },
        ) => (
            ErrorKind::CertificateNameMismatch,
            "the server's certificate is not valid for this host name",
        ),
        rustls::Error::InvalidCertificate(
            C::Expired | C::ExpiredContext { .. } | C::NotValidYet | C::NotValidYetContext { .. },
        ) => (
            ErrorKind::CertificateExpired,
            "the peer's certificate has expired or is not valid yet",
        ),
        rustls::Error::InvalidCertificate(_) => (
            ErrorKind::UntrustedCertificate,
            "the peer's certificate is not trusted (unknown issuer or invalid)",
        ),
        rustls::Error::AlertReceived(
            rustls::AlertDescription::CertificateRequired
            | rustls::AlertDescription::BadCertificate
            | rustls::AlertDescription::UnknownCA
            | rustls::AlertDescription::CertificateUnknown,
        ) => (
            ErrorKind::UntrustedCertificate,
            "the server refused our client certificate (or its absence)",
        ),
        rustls::Error::AlertReceived(rustls::AlertDescription::CertificateExpired) => (
            ErrorKind::CertificateExpired,
            "the server says our client certificate has expired",
        ),
        rustls::Error::InvalidMessage(_) => {
            (ErrorKind::Tls, "the peer does not speak TLS on this port")
        }
        _ => (ErrorKind::Tls, "TLS handshake failed"),
    }
}

/// Client: runs TLS over `tcp` (after the header upgrade if asked),
/// verifying the certificate against `host`, the host the user named.
pub(crate) async fn connect<S>(
    mut tcp: S,
    host: &str,
    config: Arc<rustls::ClientConfig>,
    upgrade: bool,
    target: &str,
) -> Result<BoxIo, Error>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let name = ServerName::try_from(host.to_string()).map_err(|e| {
        Error::new(
            ErrorKind::InvalidArgument,
            format!("{host:?} is not a valid TLS server name: {e}"),
        )
    })?;
    if upgrade {
        tcp.write_all(&ProtocolId::Tls.header()).await?;
        let mut h = [0u8; 8];
        tcp.read_exact(&mut h).await.map_err(|e| {
            Error::new(
                ErrorKind::Tls,
                format!("{target}: the server closed the connection instead of answering the TLS header: {e}"),
            )
            .with_source(e)
        })?;
        if h != ProtocolId::Tls.header() {
            return Err(Error::new(
                ErrorKind::Tls,
                format!("{target}: the server does not support the TLS header upgrade (it answered {h:02x?})"),
            ));
        }
    }
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| handshake_error(e, target))?;
    Ok(Box::new(tls))
}

/// The listener's TLS settings, as [`ListenOptions`](crate::ListenOptions)
/// gathers them.
#[derive(Clone, Debug, Default)]
pub(crate) struct ServerTlsOptions {
    pub(crate) cert: Option<(Pem, Pem)>,
    pub(crate) client_ca: Vec<Pem>,
    pub(crate) require_client_cert: bool,
    pub(crate) config: Option<Arc<rustls::ServerConfig>>,
    /// Whether clients may connect without TLS. Default false once TLS is
    /// configured.
    pub(crate) optional: bool,
}

impl ServerTlsOptions {
    /// Whether TLS is configured.
    pub(crate) fn configured(&self) -> bool {
        self.cert.is_some() || self.config.is_some()
    }

    /// Builds the rustls configuration.
    pub(crate) fn build(&self) -> Result<Arc<rustls::ServerConfig>, Error> {
        if let Some(c) = &self.config {
            return Ok(c.clone());
        }
        let Some((cert, key)) = &self.cert else {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "TLS on a listener needs a certificate and key (ListenOptions::tls_cert_files or tls_cert_pem)",
            ));
        };
        let provider = provider();
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error(e, "TLS configuration"))?;
        let builder = if self.client_ca.is_empty() {
            if self.require_client_cert {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    "requiring client certificates needs the CA that signs them (ListenOptions::tls_client_ca_file or tls_client_ca_pem)",
                ));
            }
            builder.with_no_client_auth()
        } else {
            let mut roots = rustls::RootCertStore::empty();
            for pem in &self.client_ca {
                for c in pem.certs()? {
                    roots
                        .add(c)
                        .map_err(|e| tls_error(e, "bad client CA certificate"))?;
                }
            }
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            );
            let v = if self.require_client_cert {
                v
            } else {
                v.allow_unauthenticated()
            };
            let v = v.build().map_err(|e| {
                Error::new(
                    ErrorKind::InvalidArgument,
                    format!("client certificate verifier: {e}"),
                )
            })?;
            builder.with_client_cert_verifier(v)
        };
        let config = builder
            .with_single_cert(cert.certs()?, key.key()?)
            .map_err(|e| tls_error(e, "the server certificate or key is unusable"))?;
        Ok(Arc::new(config))
    }
}

/// What the listener's transport set-up produced.
pub(crate) struct Accepted {
    pub(crate) io: BoxIo,
    /// Whether the stream is TLS.
    pub(crate) tls: bool,
    /// The subject of the client's verified certificate.
    pub(crate) peer_subject: Option<String>,
}

/// Listener: looks at the first bytes and sets up the stream: TLS-first,
/// the TLS header upgrade, or plain AMQP/SASL (refused with the TLS header
/// when TLS is required).
pub(crate) async fn accept<S>(
    mut tcp: S,
    acceptor: Option<&tokio_rustls::TlsAcceptor>,
    tls_required: bool,
) -> Result<Accepted, Error>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let Some(acceptor) = acceptor else {
        return Ok(Accepted {
            io: Box::new(tcp),
            tls: false,
            peer_subject: None,
        });
    };
    let mut first = [0u8; 1];
    tcp.read_exact(&mut first).await?;
    let tls_stream = if first[0] == 0x16 {
        // A TLS ClientHello: TLS-first.
        acceptor
            .accept(Prefixed::new(first.to_vec(), tcp))
            .await
            .map_err(|e| handshake_error(e, "TLS client"))?
    } else {
        let mut h = [0u8; 8];
        h[0] = first[0];
        tcp.read_exact(&mut h[1..]).await?;
        if h == ProtocolId::Tls.header() {
            tcp.write_all(&ProtocolId::Tls.header()).await?;
            acceptor
                .accept(Prefixed::new(Vec::new(), tcp))
                .await
                .map_err(|e| handshake_error(e, "TLS client"))?
        } else if tls_required {
            // Answer with the header we want (spec 5.2.1) and stop.
            let _ = tcp.write_all(&ProtocolId::Tls.header()).await;
            let _ = tcp.shutdown().await;
            return Err(Error::new(
                ErrorKind::TlsRequired,
                format!("the client sent {h:02x?} without TLS, which this listener requires"),
            ));
        } else {
            return Ok(Accepted {
                io: Box::new(Prefixed::new(h.to_vec(), tcp)),
                tls: false,
                peer_subject: None,
            });
        }
    };
    let peer_subject = tls_stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| super::x509::subject(c.as_ref()));
    Ok(Accepted {
        io: Box::new(tls_stream),
        tls: true,
        peer_subject,
    })
}

/// A stream whose first bytes were already read: they are replayed first.
#[derive(Debug)]
pub(crate) struct Prefixed<S> {
    prefix: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    pub(crate) fn new(prefix: Vec<u8>, inner: S) -> Self {
        Prefixed {
            prefix,
            pos: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pos < self.prefix.len() {
            let n = (self.prefix.len() - self.pos).min(buf.remaining());
            let start = self.pos;
            buf.put_slice(&self.prefix[start..start + n]);
            self.pos += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
