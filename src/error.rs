//! Public errors.
//!
//! Every fallible operation returns [`Error`]: a struct with a
//! `#[non_exhaustive]` [`ErrorKind`], plus the AMQP error condition and
//! description the peer sent when there was one. Codec failures are
//! [`DecodeError`]s, which convert into [`Error`] with the
//! `amqp:decode-error` condition.

use std::fmt;

/// What went wrong while decoding AMQP bytes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The input ended in the middle of a value.
    #[error("input ends in the middle of a value")]
    Truncated,
    /// A format code that is not part of AMQP 1.0.
    #[error("invalid format code 0x{0:02x}")]
    InvalidConstructor(u8),
    /// A value of another type than the one the field requires.
    #[error("expected {expected}, found format code 0x{found:02x}")]
    UnexpectedType {
        /// The type the field requires.
        expected: &'static str,
        /// The format code found.
        found: u8,
    },
    /// A descriptor that is neither a `ulong` nor a `symbol`, or that names
    /// no type known in its place.
    #[error("invalid descriptor (format code 0x{0:02x})")]
    InvalidDescriptor(u8),
    /// A described type this decoder does not know, in a place that needs a
    /// known one.
    #[error("unknown descriptor {0}")]
    UnknownDescriptor(String),
    /// A size or count inconsistent with the bytes that hold it.
    #[error("size or count inconsistent with the encoded data")]
    InvalidLength,
    /// A size field above the configured limit.
    #[error("size {size} exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The size the input announced.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// Decoding the input would allocate more than its budget,
    /// [`Limits::alloc_ratio`](crate::types::Limits::alloc_ratio) times the
    /// input length plus
    /// [`Limits::alloc_floor`](crate::types::Limits::alloc_floor): valid
    /// AMQP perhaps, but of values so small (such as a long list of nulls)
    /// that decoding them costs far more memory than their encoding.
    #[error("decoding needs more than its allocation budget of {limit} bytes")]
    AllocationLimit {
        /// The allocation budget of this decode, in bytes.
        limit: usize,
    },
    /// Compound values nested deeper than the configured limit.
    #[error("values nested deeper than {0} levels")]
    TooDeep(u32),
    /// A string that is not valid UTF-8.
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    /// A symbol that is not ASCII.
    #[error("symbol is not ASCII")]
    InvalidSymbol,
    /// A value outside the range its type allows.
    #[error("invalid {0} value")]
    InvalidValue(&'static str),
    /// A mandatory field is absent or null.
    #[error("mandatory field {0} is missing")]
    MissingField(&'static str),
    /// Bytes left over after a complete value.
    #[error("{0} unexpected bytes after the value")]
    TrailingBytes(usize),
    /// A frame header that breaks the framing rules.
    #[error("invalid frame: {0}")]
    InvalidFrame(&'static str),
    /// A frame larger than the negotiated maximum frame size.
    #[error("frame of {size} bytes exceeds the maximum frame size {max}")]
    FrameTooLarge {
        /// The size the frame header announced.
        size: usize,
        /// The maximum frame size in force.
        max: usize,
    },
    /// A protocol header other than the one expected.
    #[error("unexpected protocol header {0:02x?}")]
    InvalidProtocolHeader([u8; 8]),
}

/// An error decoding AMQP bytes: malformed or hostile input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("decode error: {kind}")]
pub struct DecodeError {
    kind: DecodeErrorKind,
}

impl DecodeError {
    /// An error of the given kind.
    pub fn new(kind: DecodeErrorKind) -> Self {
        DecodeError { kind }
    }

    /// What went wrong.
    pub fn kind(&self) -> &DecodeErrorKind {
        &self.kind
    }
}

impl From<DecodeErrorKind> for DecodeError {
    fn from(kind: DecodeErrorKind) -> Self {
        DecodeError::new(kind)
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of failure an [`Error`] is.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Malformed bytes from the peer (`amqp:decode-error`).
    Decode,
    /// A frame that breaks the framing rules (`amqp:connection:framing-error`).
    Framing,
    /// An I/O error on the transport.
    Io,
    /// The peer closed the connection, possibly with an error condition.
    ConnectionClosed,
    /// The peer ended the session, possibly with an error condition.
    SessionEnded,
    /// The peer detached the link, possibly with an error condition.
    LinkDetached,
    /// A delivery was rejected or otherwise not accepted by the peer.
    Rejected,
    /// The operation did not complete within its configured timeout.
    Timeout,
    /// An invalid argument or URL.
    InvalidArgument,
    /// The peer broke the protocol (our engine closed with the condition).
    Protocol,
    /// The connection or link is closed on our side.
    Closed,
    /// A limit such as the maximum message size was exceeded.
    LimitExceeded,
    /// Authentication failed: SASL refused our credentials (see
    /// [`Error::sasl_code`] for the server's outcome code), no mechanism
    /// both sides allow, or the server's proof of identity did not verify.
    Authentication,
    /// The peer's certificate is not signed by a CA we trust (or is
    /// otherwise invalid), or the server refused our client certificate.
    UntrustedCertificate,
    /// The server's certificate is valid but not for the host name (or IP
    /// address) we connected to.
    CertificateNameMismatch,
    /// The peer's certificate has expired (or is not valid yet).
    CertificateExpired,
    /// The server requires TLS and we connected without it (it answered
    /// with the AMQP TLS protocol header or a TLS alert).
    TlsRequired,
    /// Another TLS failure (handshake, protocol, bad PEM input).
    Tls,
    /// The operation belonged to a connection that was lost and replaced
    /// by a reconnect: settling a delivery received before it (the peer
    /// redelivers the message), or a send in flight when resending is off
    /// ([`ConnectOptions::resend_in_flight`](crate::ConnectOptions::resend_in_flight)).
    Disconnected,
}

/// The error type of this crate.
///
/// It carries the [`ErrorKind`], and when the peer (or our engine) gave one,
/// the AMQP error condition (such as `amqp:unauthorized-access`) and its
/// description.
#[derive(Debug, Clone)]
pub struct Error {
    kind: ErrorKind,
    condition: Option<String>,
    description: Option<String>,
    source: Option<std::sync::Arc<dyn std::error::Error + Send + Sync>>,
    message: Option<Box<crate::message::Message>>,
    sasl_code: Option<crate::proto::SaslCode>,
}

impl Error {
    /// An error from an AMQP `error` the peer (or our engine) sent.
    pub(crate) fn from_amqp(kind: ErrorKind, e: crate::frame::AmqpError) -> Self {
        Error::with_condition(kind, e.condition.as_str(), e.description)
    }

    /// The error of a connection that ended (the engine's `Closed` event):
    /// the one place AMQP conditions map to kinds.
    pub(crate) fn from_close(
        error: Option<crate::frame::AmqpError>,
        remote: bool,
        timeout: bool,
        remote_open: bool,
    ) -> Self {
        use crate::frame::condition as c;
        let Some(e) = error else {
            return Error::new(ErrorKind::ConnectionClosed, "the connection is closed");
        };
        let kind = if timeout {
            ErrorKind::Timeout
        } else if remote {
            ErrorKind::ConnectionClosed
        } else if e.condition == c::UNAUTHORIZED_ACCESS && !remote_open {
            ErrorKind::Authentication
        } else if e.condition == c::FRAMING_ERROR {
            ErrorKind::Framing
        } else if e.condition == c::DECODE_ERROR {
            ErrorKind::Decode
        } else {
            ErrorKind::Protocol
        };
        Error::from_amqp(kind, e)
    }

    /// The error of a link that ended (the engine's `LinkDetached` event).
    /// A detach without an error is still an error for the link's user:
    /// the link is gone.
    pub(crate) fn from_detach(
        error: Option<crate::frame::AmqpError>,
        closed: bool,
        remote: bool,
        timeout: bool,
    ) -> Self {
        let kind = if timeout {
            ErrorKind::Timeout
        } else {
            ErrorKind::LinkDetached
        };
        match error {
            Some(e) => Error::from_amqp(kind, e),
            None => Error::new(
                kind,
                match (remote, closed) {
                    (true, true) => "the peer closed the link",
                    (true, false) => "the peer detached the link",
                    (false, _) => "the link was detached",
                },
            ),
        }
    }

    /// An error our engine raised locally (a refused command).
    pub(crate) fn from_amqp_local(e: crate::frame::AmqpError) -> Self {
        let kind = if e.condition == crate::frame::condition::RESOURCE_LIMIT_EXCEEDED {
            ErrorKind::LimitExceeded
        } else {
            ErrorKind::Closed
        };
        Error::from_amqp(kind, e)
    }

    /// Attaches the message a failed send gives back.
    pub(crate) fn with_message(mut self, message: crate::message::Message) -> Self {
        self.message = Some(Box::new(message));
        self
    }

    /// The message of a failed send, given back so that it can be sent
    /// again (for example after reconnecting).
    pub fn message(&self) -> Option<&crate::message::Message> {
        self.message.as_deref()
    }

    /// Takes the message of a failed send.
    pub fn into_message(self) -> Option<crate::message::Message> {
        self.message.map(|m| *m)
    }

    /// An error of `kind` with a description.
    pub fn new(kind: ErrorKind, description: impl Into<String>) -> Self {
        Error {
            kind,
            condition: None,
            description: Some(description.into()),
            source: None,
            message: None,
            sasl_code: None,
        }
    }

    /// An error of `kind` carrying an AMQP condition and optional description.
    pub fn with_condition(
        kind: ErrorKind,
        condition: impl Into<String>,
        description: Option<String>,
    ) -> Self {
        Error {
            kind,
            condition: Some(condition.into()),
            description,
            source: None,
            message: None,
            sasl_code: None,
        }
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(std::sync::Arc::new(source));
        self
    }

    /// The SASL outcome code the server answered (`auth` for bad
    /// credentials, `sys`, `sys-perm`, `sys-temp`), when authentication
    /// failed with one; `None` otherwise.
    pub fn sasl_code(&self) -> Option<crate::proto::SaslCode> {
        self.sasl_code
    }

    /// Sets the SASL outcome code.
    pub(crate) fn with_sasl_code(mut self, code: crate::proto::SaslCode) -> Self {
        self.sasl_code = Some(code);
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The AMQP error condition, such as `amqp:not-found`, if any.
    pub fn condition(&self) -> Option<&str> {
        self.condition.as_deref()
    }

    /// The human-readable description, if any.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// Whether retrying (possibly on a new connection) may succeed. This is
    /// what reconnect uses to decide whether to try again:
    ///
    /// - retried: I/O failures (refused, reset, closed without an AMQP
    ///   close), timeouts (TCP connect, open, idle), a peer's close with
    ///   `amqp:connection:forced` or `amqp:connection:redirect`, and for
    ///   links and sessions `amqp:link:detach-forced`,
    ///   `amqp:resource-limit-exceeded` and `amqp:internal-error`;
    /// - not retried: authentication failures, TLS failures (an untrusted
    ///   or mismatched certificate), a wrong protocol header or framing and
    ///   decode errors, invalid arguments, refusals such as
    ///   `amqp:unauthorized-access`, `amqp:not-found` or `amqp:not-allowed`,
    ///   and a peer's close without an error or with any other condition
    ///   (it chose to close, and would likely close again).
    pub fn is_retriable(&self) -> bool {
        let condition = self.condition();
        if let Some(
            "amqp:unauthorized-access"
            | "amqp:not-found"
            | "amqp:not-allowed"
            | "amqp:invalid-field"
            | "amqp:not-implemented"
            | "amqp:decode-error"
            | "amqp:frame-size-too-small"
            | "amqp:connection:framing-error"
            | "amqp:link:message-size-exceeded",
        ) = condition
        {
            return false;
        }
        match self.kind {
            // A peer's close: only the conditions that ask us to come back
            // (a close with another error would likely come again, and
            // one without an error was the peer's choice).
            ErrorKind::ConnectionClosed => matches!(
                condition,
                Some("amqp:connection:forced" | "amqp:connection:redirect")
            ),
            ErrorKind::Io
            | ErrorKind::Timeout
            | ErrorKind::SessionEnded
            | ErrorKind::LinkDetached => true,
            _ => matches!(
                condition,
                Some(
                    "amqp:connection:forced"
                        | "amqp:connection:redirect"
                        | "amqp:link:detach-forced"
                        | "amqp:resource-limit-exceeded"
                        | "amqp:internal-error"
                )
            ),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            ErrorKind::Decode => "decode error",
            ErrorKind::Framing => "framing error",
            ErrorKind::Io => "I/O error",
            ErrorKind::ConnectionClosed => "connection closed",
            ErrorKind::SessionEnded => "session ended",
            ErrorKind::LinkDetached => "link detached",
            ErrorKind::Rejected => "delivery rejected",
            ErrorKind::Timeout => "timed out",
            ErrorKind::InvalidArgument => "invalid argument",
            ErrorKind::Protocol => "protocol error",
            ErrorKind::Closed => "closed",
            ErrorKind::LimitExceeded => "limit exceeded",
            ErrorKind::Authentication => "authentication failed",
            ErrorKind::UntrustedCertificate => "TLS: untrusted certificate",
            ErrorKind::CertificateNameMismatch => "TLS: certificate name mismatch",
            ErrorKind::CertificateExpired => "TLS: certificate expired",
            ErrorKind::TlsRequired => "TLS required",
            ErrorKind::Tls => "TLS error",
            ErrorKind::Disconnected => "lost in a reconnect",
        };
        f.write_str(what)?;
        if let Some(c) = &self.condition {
            write!(f, " ({c})")?;
        }
        if let Some(d) = &self.description {
            write!(f, ": {d}")?;
        }
        if let Some(s) = &self.source {
            // Descriptions often quote their source already ("could not
            // connect to H:P: Connection refused"): don't say it twice.
            let s = s.to_string();
            if !self.description.as_deref().is_some_and(|d| d.ends_with(&s)) {
                write!(f, ": {s}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

impl From<DecodeError> for Error {
    fn from(e: DecodeError) -> Self {
        let (kind, condition) = match e.kind() {
            DecodeErrorKind::InvalidFrame(_)
            | DecodeErrorKind::FrameTooLarge { .. }
            | DecodeErrorKind::InvalidProtocolHeader(_) => {
                (ErrorKind::Framing, "amqp:connection:framing-error")
            }
            _ => (ErrorKind::Decode, "amqp:decode-error"),
        };
        Error::with_condition(kind, condition, Some(e.kind().to_string()))
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error {
            kind: ErrorKind::Io,
            condition: None,
            description: Some(e.to_string()),
            source: Some(std::sync::Arc::new(e)),
            message: None,
            sasl_code: None,
        }
    }
}
