//! The SASL layer (spec 5.3) as the engine runs it: ANONYMOUS and PLAIN,
//! client and server. Other mechanisms come from a pluggable provider in
//! the security work; the engine itself never links a SASL library.

use super::config::PlainAuthenticator;
use crate::frame::{SaslFrame, SaslInit, SaslMechanisms, SaslOutcome};
use crate::types::Symbol;
use bytes::Bytes;

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

const ANONYMOUS: Symbol = Symbol::from_static("ANONYMOUS");
const PLAIN: Symbol = Symbol::from_static("PLAIN");

/// The client side.
#[derive(Debug)]
pub(crate) struct SaslClient {
    user: Option<String>,
    password: Option<String>,
    allowed: Option<Vec<String>>,
    hostname: Option<String>,
    failure: Option<String>,
}

impl SaslClient {
    pub(crate) fn new(
        user: Option<String>,
        password: Option<String>,
        allowed: Option<Vec<String>>,
        hostname: Option<String>,
    ) -> Self {
        SaslClient {
            user,
            password,
            allowed,
            hostname,
            failure: None,
        }
    }

    /// Why the exchange failed, once it has.
    pub(crate) fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    fn allows(&self, mech: &str) -> bool {
        self.allowed
            .as_ref()
            .is_none_or(|a| a.iter().any(|m| m.eq_ignore_ascii_case(mech)))
    }

    pub(crate) fn step(&mut self, frame: SaslFrame) -> SaslStep {
        match frame {
            SaslFrame::Mechanisms(m) => {
                let offered = &m.sasl_server_mechanisms;
                let has = |s: &Symbol| offered.iter().any(|o| o == s);
                let init = if self.user.is_some() && has(&PLAIN) && self.allows("PLAIN") {
                    let mut resp = Vec::new();
                    resp.push(0);
                    resp.extend_from_slice(self.user.as_deref().unwrap_or("").as_bytes());
                    resp.push(0);
                    resp.extend_from_slice(self.password.as_deref().unwrap_or("").as_bytes());
                    SaslInit {
                        mechanism: PLAIN,
                        initial_response: Some(Bytes::from(resp)),
                        hostname: self.hostname.clone(),
                    }
                } else if has(&ANONYMOUS) && self.allows("ANONYMOUS") {
                    SaslInit {
                        mechanism: ANONYMOUS,
                        initial_response: Some(Bytes::from_static(b"anonymous")),
                        hostname: self.hostname.clone(),
                    }
                } else {
                    let offered: Vec<&str> = offered.iter().map(|s| s.as_str()).collect();
                    let msg = format!(
                        "no acceptable SASL mechanism: the server offers [{}]{}",
                        offered.join(", "),
                        if self.user.is_none() && has(&PLAIN) {
                            " (PLAIN needs a user name)"
                        } else {
                            ""
                        }
                    );
                    self.failure = Some(msg.clone());
                    return SaslStep::Fail(msg);
                };
                SaslStep::Send(SaslFrame::Init(init))
            }
            SaslFrame::Outcome(o) => {
                let ok = o.code == 0;
                if !ok {
                    self.failure = Some(format!(
                        "SASL authentication failed: {}",
                        match o.code {
                            1 => "bad credentials (auth)",
                            2 => "system error (sys)",
                            3 => "permanent system error (sys-perm)",
                            4 => "transient system error (sys-temp)",
                            _ => "unknown outcome code",
                        }
                    ));
                }
                SaslStep::Done(SaslFrame::Outcome(o), ok)
            }
            SaslFrame::Challenge(_) => {
                let msg = "unexpected SASL challenge for ANONYMOUS/PLAIN".to_string();
                self.failure = Some(msg.clone());
                SaslStep::Fail(msg)
            }
            other => SaslStep::Fail(format!("unexpected SASL frame {other:?}")),
        }
    }
}

/// The server side.
pub(crate) struct SaslServer {
    anonymous: bool,
    plain: Option<PlainAuthenticator>,
}

impl std::fmt::Debug for SaslServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslServer")
            .field("anonymous", &self.anonymous)
            .field("plain", &self.plain.is_some())
            .finish()
    }
}

impl SaslServer {
    pub(crate) fn new(anonymous: bool, plain: Option<PlainAuthenticator>) -> Self {
        SaslServer { anonymous, plain }
    }

    pub(crate) fn mechanisms(&self) -> SaslMechanisms {
        let mut m = Vec::new();
        if self.plain.is_some() {
            m.push(PLAIN);
        }
        if self.anonymous {
            m.push(ANONYMOUS);
        }
        SaslMechanisms {
            sasl_server_mechanisms: m,
        }
    }

    pub(crate) fn step(&mut self, frame: SaslFrame) -> SaslStep {
        let SaslFrame::Init(init) = frame else {
            return SaslStep::Fail("expected sasl-init".into());
        };
        let ok = if init.mechanism == ANONYMOUS {
            self.anonymous
        } else if init.mechanism == PLAIN {
            match (&self.plain, &init.initial_response) {
                (Some(check), Some(resp)) => {
                    let mut parts = resp.split(|&b| b == 0);
                    let _authzid = parts.next();
                    let user = parts.next().and_then(|u| std::str::from_utf8(u).ok());
                    let pass = parts.next().and_then(|p| std::str::from_utf8(p).ok());
                    match (user, pass) {
                        (Some(u), Some(p)) => check(u, p),
                        _ => false,
                    }
                }
                _ => false,
            }
        } else {
            false
        };
        let outcome = SaslFrame::Outcome(SaslOutcome {
            code: if ok { 0 } else { 1 },
            additional_data: None,
        });
        SaslStep::Done(outcome, ok)
    }
}
