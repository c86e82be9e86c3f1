//! The SASL layer (spec 5.3) as the engine runs it: the framing
//! (mechanisms, init, challenge, response, outcome) is done here, sans-IO;
//! the mechanism exchange itself goes through the [`SaslClientProvider`] /
//! [`SaslServerProvider`] traits, implemented outside the engine (the
//! client library's are backed by rsasl). The engine never links a SASL
//! library.

use crate::frame::{SaslFrame, SaslInit, SaslOutcome, SaslResponse};
use crate::types::Symbol;
use bytes::Bytes;
use std::fmt;

/// A SASL outcome code (spec 5.3.3.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SaslCode {
    /// 0: authentication succeeded.
    Ok,
    /// 1: authentication failed because of bad credentials.
    Auth,
    /// 2: a system error (unspecified).
    Sys,
    /// 3: a permanent system error.
    SysPerm,
    /// 4: a transient system error.
    SysTemp,
}

impl SaslCode {
    /// The code from its wire value (unknown values count as `Sys`).
    pub fn from_u8(code: u8) -> Self {
        match code {
            0 => SaslCode::Ok,
            1 => SaslCode::Auth,
            3 => SaslCode::SysPerm,
            4 => SaslCode::SysTemp,
            _ => SaslCode::Sys,
        }
    }

    /// The wire value.
    pub fn as_u8(self) -> u8 {
        match self {
            SaslCode::Ok => 0,
            SaslCode::Auth => 1,
            SaslCode::Sys => 2,
            SaslCode::SysPerm => 3,
            SaslCode::SysTemp => 4,
        }
    }

    /// The spec's name: `ok`, `auth`, `sys`, `sys-perm` or `sys-temp`.
    pub fn name(self) -> &'static str {
        match self {
            SaslCode::Ok => "ok",
            SaslCode::Auth => "auth",
            SaslCode::Sys => "sys",
            SaslCode::SysPerm => "sys-perm",
            SaslCode::SysTemp => "sys-temp",
        }
    }
}

impl fmt::Display for SaslCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            SaslCode::Ok => "success",
            SaslCode::Auth => "bad credentials",
            SaslCode::Sys => "system error",
            SaslCode::SysPerm => "permanent system error",
            SaslCode::SysTemp => "transient system error",
        };
        write!(f, "{what} ({}, code {})", self.name(), self.as_u8())
    }
}

/// Picks and starts a client mechanism once the server's offer is known.
pub trait SaslClientProvider: Send + Sync + fmt::Debug {
    /// Chooses a mechanism among `offered` (the server's list) and starts
    /// it. `hostname` is the host the client connects to. An `Err` is the
    /// reason no mechanism can be used (it should name both sides' lists).
    fn start(
        &self,
        offered: &[&str],
        hostname: Option<&str>,
    ) -> Result<Box<dyn SaslClientMechanism>, String>;

    /// Called with the server's outcome code (also on failure), so that
    /// the provider can report it.
    fn outcome(&self, code: SaslCode) {
        let _ = code;
    }
}

/// One client-side mechanism exchange.
pub trait SaslClientMechanism: Send + fmt::Debug {
    /// The mechanism name sent in sasl-init.
    fn name(&self) -> &str;

    /// The initial response sent in sasl-init (`None`: none).
    fn initial_response(&mut self) -> Result<Option<Vec<u8>>, String>;

    /// Answers a challenge.
    fn step(&mut self, challenge: &[u8]) -> Result<Vec<u8>, String>;

    /// Checks the additional data of a successful outcome (for example the
    /// SCRAM server signature); `Err` refuses the server.
    fn finish(&mut self, additional_data: Option<&[u8]>) -> Result<(), String>;
}

/// What a server mechanism step produced.
#[derive(Debug)]
pub enum SaslServerStep {
    /// Send this challenge and wait for a response.
    Challenge(Vec<u8>),
    /// Authenticated; the optional data goes into the outcome's
    /// additional-data.
    Success(Option<Vec<u8>>),
    /// Refused with this code, and the reason (logged, never sent).
    Failure(SaslCode, String),
}

/// Offers mechanisms and starts the server side of one.
pub trait SaslServerProvider: Send + Sync + fmt::Debug {
    /// The mechanisms offered, in order of preference.
    fn mechanisms(&self) -> Vec<String>;

    /// Starts `mechanism` (one of [`mechanisms`](Self::mechanisms));
    /// `None` if it is not offered.
    fn start(
        &self,
        mechanism: &str,
        hostname: Option<&str>,
    ) -> Option<Box<dyn SaslServerMechanism>>;

    /// Whether a peer may skip SASL (send the AMQP header directly).
    fn optional(&self) -> bool {
        false
    }
}

/// One server-side mechanism exchange.
pub trait SaslServerMechanism: Send + fmt::Debug {
    /// Takes the client's initial response (first call; empty if it sent
    /// none) or a response to our challenge.
    fn step(&mut self, response: &[u8]) -> SaslServerStep;
}

/// What a SASL step produced.
#[derive(Debug)]
pub(crate) enum SaslStep {
    /// Send this frame and keep going.
    Send(SaslFrame),
    /// The exchange is over (the frame is the server's outcome; ignored on
    /// the client), successfully or not.
    Done(SaslFrame, bool),
    /// The peer broke the SASL exchange.
    Fail(String),
}

/// The client side.
#[derive(Debug)]
pub(crate) struct SaslClient {
    provider: std::sync::Arc<dyn SaslClientProvider>,
    mechanism: Option<Box<dyn SaslClientMechanism>>,
    hostname: Option<String>,
    failure: Option<String>,
}

impl SaslClient {
    pub(crate) fn new(
        provider: std::sync::Arc<dyn SaslClientProvider>,
        hostname: Option<String>,
    ) -> Self {
        SaslClient {
            provider,
            mechanism: None,
            hostname,
            failure: None,
        }
    }

    /// Why the exchange failed, once it has.
    pub(crate) fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    fn fail(&mut self, msg: String) -> SaslStep {
        self.failure = Some(msg.clone());
        SaslStep::Fail(msg)
    }

    pub(crate) fn step(&mut self, frame: SaslFrame) -> SaslStep {
        match frame {
            SaslFrame::Mechanisms(m) if self.mechanism.is_none() => {
                let offered: Vec<&str> = m
                    .sasl_server_mechanisms
                    .iter()
                    .map(|s| s.as_str())
                    .collect();
                let mut mech = match self.provider.start(&offered, self.hostname.as_deref()) {
                    Ok(m) => m,
                    Err(e) => return self.fail(e),
                };
                let resp = match mech.initial_response() {
                    Ok(r) => r,
                    Err(e) => return self.fail(format!("SASL {}: {e}", mech.name())),
                };
                let init = SaslInit {
                    mechanism: Symbol::from(mech.name().to_string()),
                    initial_response: resp.map(Bytes::from),
                    hostname: self.hostname.clone(),
                };
                self.mechanism = Some(mech);
                SaslStep::Send(SaslFrame::Init(init))
            }
            SaslFrame::Challenge(c) => {
                let Some(mech) = &mut self.mechanism else {
                    return self.fail("SASL challenge before sasl-init".into());
                };
                match mech.step(&c.challenge) {
                    Ok(r) => SaslStep::Send(SaslFrame::Response(SaslResponse {
                        response: Bytes::from(r),
                    })),
                    Err(e) => {
                        let msg = format!("SASL {}: {e}", mech.name());
                        self.fail(msg)
                    }
                }
            }
            SaslFrame::Outcome(o) => {
                let code = SaslCode::from_u8(o.code);
                self.provider.outcome(code);
                if code != SaslCode::Ok {
                    let mech = self
                        .mechanism
                        .as_ref()
                        .map(|m| m.name().to_string())
                        .unwrap_or_default();
                    self.failure = Some(format!(
                        "SASL {mech} authentication failed: the server answered {code}"
                    ));
                    return SaslStep::Done(SaslFrame::Outcome(o), false);
                }
                let Some(mech) = &mut self.mechanism else {
                    return self.fail("SASL outcome before sasl-init".into());
                };
                if let Err(e) = mech.finish(o.additional_data.as_deref()) {
                    let msg = format!(
                        "SASL {}: the server's success could not be verified: {e}",
                        mech.name()
                    );
                    self.failure = Some(msg);
                    return SaslStep::Done(SaslFrame::Outcome(o), false);
                }
                SaslStep::Done(SaslFrame::Outcome(o), true)
            }
            other => self.fail(format!("unexpected SASL frame {other:?}")),
        }
    }
}

/// The server side.
#[derive(Debug)]
pub(crate) struct SaslServer {
    provider: std::sync::Arc<dyn SaslServerProvider>,
    mechanism: Option<Box<dyn SaslServerMechanism>>,
}

impl SaslServer {
    pub(crate) fn new(provider: std::sync::Arc<dyn SaslServerProvider>) -> Self {
        SaslServer {
            provider,
            mechanism: None,
        }
    }

    pub(crate) fn mechanisms(&self) -> crate::frame::SaslMechanisms {
        crate::frame::SaslMechanisms {
            sasl_server_mechanisms: self
                .provider
                .mechanisms()
                .into_iter()
                .map(Symbol::from)
                .collect(),
        }
    }

    fn outcome(step: SaslServerStep) -> SaslStep {
        match step {
            SaslServerStep::Challenge(c) => {
                SaslStep::Send(SaslFrame::Challenge(crate::frame::SaslChallenge {
                    challenge: Bytes::from(c),
                }))
            }
            SaslServerStep::Success(data) => SaslStep::Done(
                SaslFrame::Outcome(SaslOutcome {
                    code: 0,
                    additional_data: data.map(Bytes::from),
                }),
                true,
            ),
            SaslServerStep::Failure(code, reason) => {
                tracing::debug!(%code, %reason, "SASL authentication refused");
                SaslStep::Done(
                    SaslFrame::Outcome(SaslOutcome {
                        code: if code == SaslCode::Ok {
                            1
                        } else {
                            code.as_u8()
                        },
                        additional_data: None,
                    }),
                    false,
                )
            }
        }
    }

    pub(crate) fn step(&mut self, frame: SaslFrame) -> SaslStep {
        match frame {
            SaslFrame::Init(init) if self.mechanism.is_none() => {
                let name = init.mechanism.as_str();
                let Some(mut mech) = self.provider.start(name, init.hostname.as_deref()) else {
                    return Self::outcome(SaslServerStep::Failure(
                        SaslCode::Auth,
                        format!("the client chose {name}, which is not offered"),
                    ));
                };
                let step = mech.step(init.initial_response.as_deref().unwrap_or(&[]));
                self.mechanism = Some(mech);
                Self::outcome(step)
            }
            SaslFrame::Response(r) => match &mut self.mechanism {
                Some(mech) => Self::outcome(mech.step(&r.response)),
                None => SaslStep::Fail("sasl-response before sasl-init".into()),
            },
            other => SaslStep::Fail(format!("unexpected SASL frame {other:?}")),
        }
    }
}
