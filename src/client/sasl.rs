//! SASL mechanisms through rsasl: the client's choice of mechanism, the
//! listener's authenticator, and the adapters that plug both into the
//! engine's [`SaslClientProvider`] / [`SaslServerProvider`] traits.

use crate::error::{Error, ErrorKind};
use crate::proto::{
    SaslClientMechanism, SaslClientProvider, SaslCode, SaslServerMechanism, SaslServerProvider,
    SaslServerStep,
};
use rsasl::callback::{Context, Request, SessionCallback, SessionData};
use rsasl::mechanisms::anonymous::AnonymousToken;
use rsasl::mechanisms::scram::properties::ScramStoredPassword;
use rsasl::prelude::{Mechanism, Registry, SASLClient, SASLConfig, SASLServer, Session};
use rsasl::prelude::{MessageSent, State, Validation};
use rsasl::property::{AuthId, AuthzId, Password};
use rsasl::validate::{Validate, ValidationError};
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// The mechanisms this build supports, strongest first: the client picks
/// the first one of these that both sides allow.
static MECHANISMS: &[Mechanism] = &[
    rsasl::mechanisms::scram::SCRAM_SHA512,
    rsasl::mechanisms::scram::SCRAM_SHA256,
    rsasl::mechanisms::scram::SCRAM_SHA1,
    #[cfg(feature = "gssapi")]
    rsasl::mechanisms::gssapi::GSSAPI,
    rsasl::mechanisms::external::EXTERNAL,
    rsasl::mechanisms::plain::PLAIN,
    rsasl::mechanisms::anonymous::ANONYMOUS,
];

/// The names of the SASL mechanisms this build supports, strongest first:
/// `SCRAM-SHA-512 SCRAM-SHA-256 SCRAM-SHA-1 [GSSAPI] EXTERNAL PLAIN
/// ANONYMOUS` (GSSAPI with the `gssapi` cargo feature).
pub fn supported_mechanisms() -> Vec<&'static str> {
    MECHANISMS.iter().map(|m| m.mechanism.as_str()).collect()
}

fn is_scram(name: &str) -> bool {
    name.starts_with("SCRAM-")
}

/// Parses a space-separated mechanism list, checking each name against
/// this build: an unknown name is an `InvalidArgument` naming the
/// supported ones.
pub(crate) fn parse_mechs(list: &str) -> Result<Vec<String>, Error> {
    let supported = supported_mechanisms();
    let mut out = Vec::new();
    for name in list.split_whitespace() {
        let upper = name.to_ascii_uppercase();
        if !supported.contains(&upper.as_str()) {
            let hint = if upper == "GSSAPI" {
                " (GSSAPI needs the `gssapi` cargo feature)"
            } else {
                ""
            };
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "unsupported SASL mechanism {name:?}{hint}; this build supports: {}",
                    supported.join(" ")
                ),
            ));
        }
        if !out.contains(&upper) {
            out.push(upper);
        }
    }
    if out.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "empty SASL mechanism list; this build supports: {}",
                supported.join(" ")
            ),
        ));
    }
    Ok(out)
}

fn registry() -> Registry {
    Registry::with_mechanisms(MECHANISMS)
}

// ---- client ------------------------------------------------------------

/// What the client knows when it picks a mechanism.
#[derive(Clone)]
pub(crate) struct ClientSasl {
    pub(crate) user: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) allowed: Option<Vec<String>>,
    pub(crate) allow_insecure: bool,
    pub(crate) encrypted: bool,
    pub(crate) client_cert: bool,
    pub(crate) outcome: Arc<Mutex<Option<SaslCode>>>,
}

impl fmt::Debug for ClientSasl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientSasl")
            .field("user", &self.user)
            .field("allowed", &self.allowed)
            .field("allow_insecure", &self.allow_insecure)
            .field("encrypted", &self.encrypted)
            .field("client_cert", &self.client_cert)
            .finish_non_exhaustive()
    }
}

struct ClientCallback {
    user: Option<String>,
    password: Option<String>,
    /// The host we connect to (GSSAPI's target is `amqp@HOST`).
    #[cfg_attr(not(feature = "gssapi"), allow(dead_code))]
    hostname: Option<String>,
}

impl SessionCallback for ClientCallback {
    fn callback(
        &self,
        _session_data: &SessionData,
        _context: &Context,
        request: &mut Request<'_>,
    ) -> Result<(), rsasl::prelude::SessionError> {
        if let Some(u) = &self.user {
            request.satisfy::<AuthId>(u.as_str())?;
        }
        if let Some(p) = &self.password {
            request.satisfy::<Password>(p.as_bytes())?;
        }
        if self.user.is_none() {
            request.satisfy::<AnonymousToken>("anonymous")?;
        }
        #[cfg(feature = "gssapi")]
        {
            request.satisfy::<rsasl::mechanisms::gssapi::properties::GssService>("amqp")?;
            if let Some(h) = &self.hostname {
                request.satisfy::<rsasl::property::Hostname>(h.as_str())?;
            }
        }
        Ok(())
    }
}

impl ClientSasl {
    /// Whether `name` can carry what we have, and why not.
    fn usable(&self, name: &str) -> Result<(), &'static str> {
        let creds = self.user.is_some();
        match name {
            n if is_scram(n) || n == "PLAIN" => {
                if !creds {
                    return Err("needs a user and password");
                }
                if n == "PLAIN" && !self.encrypted && !self.allow_insecure {
                    return Err("sends the password in clear text and insecure mechanisms are disallowed on this unencrypted connection");
                }
                Ok(())
            }
            "EXTERNAL" if creds => Err("does not carry the given user and password"),
            "EXTERNAL" if !self.client_cert => Err("needs a TLS client certificate"),
            "EXTERNAL" => Ok(()),
            "ANONYMOUS" | "GSSAPI" if creds => Err("does not carry the given user and password"),
            _ => Ok(()),
        }
    }

    fn choose(&self, offered: &[&str]) -> Result<&'static Mechanism, String> {
        let mut why = Vec::new();
        for m in MECHANISMS {
            let name = m.mechanism.as_str();
            if !offered.iter().any(|o| o.eq_ignore_ascii_case(name)) {
                continue;
            }
            if let Some(a) = &self.allowed {
                if !a.iter().any(|x| x == name) {
                    continue;
                }
            }
            match self.usable(name) {
                Ok(()) => return Ok(m),
                Err(e) => why.push(format!("{name} {e}")),
            }
        }
        let ours = match &self.allowed {
            Some(a) => a.join(" "),
            None => supported_mechanisms().join(" "),
        };
        let mut msg = format!(
            "no common SASL mechanism: the server offers [{}], we allow [{ours}]",
            offered.join(" ")
        );
        if !why.is_empty() {
            msg.push_str(&format!(" ({})", why.join("; ")));
        }
        Err(msg)
    }
}

impl SaslClientProvider for ClientSasl {
    fn start(
        &self,
        offered: &[&str],
        hostname: Option<&str>,
    ) -> Result<Box<dyn SaslClientMechanism>, String> {
        let mech = self.choose(offered)?;
        let config = SASLConfig::builder()
            .with_registry(registry())
            .with_callback(ClientCallback {
                user: self.user.clone(),
                password: self.password.clone().or_else(|| {
                    // A user without a password still authenticates (with
                    // an empty one) rather than falling back to ANONYMOUS.
                    self.user.as_ref().map(|_| String::new())
                }),
                hostname: hostname.map(str::to_string),
            })
            .map_err(|e| e.to_string())?;
        let session = SASLClient::new(config)
            .start_suggested(&[mech.mechanism])
            .map_err(|e| format!("SASL {}: {e}", mech.mechanism))?;
        Ok(Box::new(ClientMech {
            name: mech.mechanism.as_str().to_string(),
            session,
            finished: false,
        }))
    }

    fn outcome(&self, code: SaslCode) {
        *self.outcome.lock().unwrap() = Some(code);
    }
}

struct ClientMech {
    name: String,
    session: Session,
    finished: bool,
}

impl fmt::Debug for ClientMech {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientMech")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl ClientMech {
    fn run(&mut self, input: Option<&[u8]>) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        let state = self
            .session
            .step(input, &mut out)
            .map_err(|e| e.to_string())?;
        if let State::Finished(_) = state {
            self.finished = true;
        }
        Ok(out)
    }
}

impl SaslClientMechanism for ClientMech {
    fn name(&self) -> &str {
        &self.name
    }

    fn initial_response(&mut self) -> Result<Option<Vec<u8>>, String> {
        if self.session.are_we_first() {
            self.run(None).map(Some)
        } else {
            Ok(None)
        }
    }

    fn step(&mut self, challenge: &[u8]) -> Result<Vec<u8>, String> {
        if self.finished {
            return Ok(Vec::new());
        }
        self.run(Some(challenge))
    }

    fn finish(&mut self, additional_data: Option<&[u8]>) -> Result<(), String> {
        if self.finished {
            return Ok(());
        }
        match additional_data {
            Some(d) => {
                self.run(Some(d))?;
                if self.finished {
                    Ok(())
                } else {
                    Err("the exchange is incomplete".into())
                }
            }
            None => Err("the server sent no final message to verify".into()),
        }
    }
}

// ---- server ------------------------------------------------------------

/// A SCRAM hash function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ScramHash {
    /// SHA-1 (SCRAM-SHA-1).
    Sha1,
    /// SHA-256 (SCRAM-SHA-256).
    Sha256,
    /// SHA-512 (SCRAM-SHA-512).
    Sha512,
}

impl ScramHash {
    fn from_mechanism(name: &str) -> Option<Self> {
        match name {
            "SCRAM-SHA-1" => Some(ScramHash::Sha1),
            "SCRAM-SHA-256" => Some(ScramHash::Sha256),
            "SCRAM-SHA-512" => Some(ScramHash::Sha512),
            _ => None,
        }
    }
}

/// What a server stores for a SCRAM user instead of the password
/// (RFC 5802): the salt, the iteration count, `StoredKey` and `ServerKey`.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredentials {
    /// The PBKDF2 iteration count.
    pub iterations: u32,
    /// The salt.
    pub salt: Vec<u8>,
    /// `H(HMAC(SaltedPassword, "Client Key"))`.
    pub stored_key: Vec<u8>,
    /// `HMAC(SaltedPassword, "Server Key")`.
    pub server_key: Vec<u8>,
}

impl fmt::Debug for ScramCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramCredentials")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl ScramCredentials {
    /// Derives the credentials of `password` with `salt` and `iterations`
    /// (4096 is the RFC's minimum recommendation).
    pub fn derive(hash: ScramHash, password: &str, salt: &[u8], iterations: u32) -> Self {
        use ring::{digest, hmac, pbkdf2};
        let (alg, hm, dg) = match hash {
            ScramHash::Sha1 => (
                pbkdf2::PBKDF2_HMAC_SHA1,
                hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
                &digest::SHA1_FOR_LEGACY_USE_ONLY,
            ),
            ScramHash::Sha256 => (
                pbkdf2::PBKDF2_HMAC_SHA256,
                hmac::HMAC_SHA256,
                &digest::SHA256,
            ),
            ScramHash::Sha512 => (
                pbkdf2::PBKDF2_HMAC_SHA512,
                hmac::HMAC_SHA512,
                &digest::SHA512,
            ),
        };
        let mut salted = vec![0u8; dg.output_len()];
        let iters = std::num::NonZeroU32::new(iterations.max(1)).expect("non-zero");
        pbkdf2::derive(alg, iters, salt, password.as_bytes(), &mut salted);
        let key = hmac::Key::new(hm, &salted);
        let client_key = hmac::sign(&key, b"Client Key");
        let server_key = hmac::sign(&key, b"Server Key");
        let stored_key = digest::digest(dg, client_key.as_ref());
        ScramCredentials {
            iterations,
            salt: salt.to_vec(),
            stored_key: stored_key.as_ref().to_vec(),
            server_key: server_key.as_ref().to_vec(),
        }
    }
}

/// Checks the credentials clients present to a listener. Every method has
/// a refusing default, so implement only what your mechanisms need. The
/// calls are synchronous and run on the connection's task: look slow
/// stores up beforehand (or keep a cache), don't block.
pub trait Authenticator: Send + Sync + 'static {
    /// PLAIN: whether `password` is right for `user`. Default: false.
    fn check_password(&self, user: &str, password: &str) -> bool {
        let _ = (user, password);
        false
    }

    /// SCRAM-SHA-*: the stored credentials of `user`, or `None` if it is
    /// unknown (the exchange then fails like a wrong password). Default:
    /// none.
    fn scram_credentials(&self, user: &str, hash: ScramHash) -> Option<ScramCredentials> {
        let _ = (user, hash);
        None
    }

    /// EXTERNAL: whether the client whose (already verified) TLS
    /// certificate has this subject (for example `O=Example,CN=alice`) is
    /// admitted. Default: true, any certificate the TLS layer trusts.
    fn check_external(&self, subject: &str) -> bool {
        let _ = subject;
        true
    }
}

/// A simple in-memory [`Authenticator`]: a table of users and passwords,
/// usable with PLAIN and every SCRAM mechanism (the SCRAM credentials are
/// derived once per user and hash, with a random salt and 4096
/// iterations).
#[derive(Default)]
pub struct Users {
    users: HashMap<String, String>,
    scram: Mutex<HashMap<(String, ScramHash), ScramCredentials>>,
}

impl fmt::Debug for Users {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Users")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Users {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a user.
    #[must_use]
    pub fn user(mut self, name: impl Into<String>, password: impl Into<String>) -> Self {
        self.users.insert(name.into(), password.into());
        self
    }
}

impl Authenticator for Users {
    fn check_password(&self, user: &str, password: &str) -> bool {
        self.users.get(user).is_some_and(|p| {
            let (a, b) = (p.as_bytes(), password.as_bytes());
            // Constant time for equal lengths.
            a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
        })
    }

    fn scram_credentials(&self, user: &str, hash: ScramHash) -> Option<ScramCredentials> {
        let password = self.users.get(user)?;
        let mut cache = self.scram.lock().unwrap();
        let c = cache.entry((user.to_string(), hash)).or_insert_with(|| {
            let mut salt = [0u8; 16];
            let rng = ring::rand::SystemRandom::new();
            let _ = ring::rand::SecureRandom::fill(&rng, &mut salt);
            ScramCredentials::derive(hash, password, &salt, 4096)
        });
        Some(c.clone())
    }
}

impl<F: Fn(&str, &str) -> bool + Send + Sync + 'static> Authenticator for F {
    fn check_password(&self, user: &str, password: &str) -> bool {
        self(user, password)
    }
}

/// Who authenticated on a connection, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AuthInfo {
    pub(crate) identity: String,
    pub(crate) mechanism: String,
}

/// The per-connection server side: the offered mechanisms and the checks.
pub(crate) struct ServerSasl {
    pub(crate) mechanisms: Vec<String>,
    pub(crate) authenticator: Option<Arc<dyn Authenticator>>,
    /// The verified client certificate's subject, if any (EXTERNAL).
    pub(crate) external: Option<String>,
    pub(crate) optional: bool,
    pub(crate) peer: SocketAddr,
    pub(crate) result: Arc<Mutex<Option<AuthInfo>>>,
    pub(crate) failed: Arc<std::sync::atomic::AtomicBool>,
}

impl fmt::Debug for ServerSasl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerSasl")
            .field("mechanisms", &self.mechanisms)
            .field("external", &self.external)
            .field("optional", &self.optional)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

struct Identity;
impl Validation for Identity {
    type Value = String;
}

struct ServerCallback {
    authenticator: Option<Arc<dyn Authenticator>>,
    external: Option<String>,
}

impl SessionCallback for ServerCallback {
    fn callback(
        &self,
        session_data: &SessionData,
        context: &Context,
        request: &mut Request<'_>,
    ) -> Result<(), rsasl::prelude::SessionError> {
        if request.is::<ScramStoredPassword>() {
            let name = session_data.mechanism().mechanism.as_str();
            if let (Some(a), Some(hash), Some(user)) = (
                &self.authenticator,
                ScramHash::from_mechanism(name),
                context.get_ref::<AuthId>(),
            ) {
                if let Some(c) = a.scram_credentials(user, hash) {
                    request.satisfy::<ScramStoredPassword>(&ScramStoredPassword::new(
                        c.iterations,
                        &c.salt,
                        &c.stored_key,
                        &c.server_key,
                    ))?;
                }
            }
        }
        Ok(())
    }

    fn validate(
        &self,
        session_data: &SessionData,
        context: &Context,
        validate: &mut Validate<'_>,
    ) -> Result<(), ValidationError> {
        let name = session_data.mechanism().mechanism.as_str();
        let identity = match name {
            "ANONYMOUS" => Some("anonymous".to_string()),
            "PLAIN" => {
                let user = context.get_ref::<AuthId>();
                let pass = context
                    .get_ref::<Password>()
                    .and_then(|p| std::str::from_utf8(p).ok());
                let authzid = context.get_ref::<AuthzId>().unwrap_or("");
                match (user, pass, &self.authenticator) {
                    (Some(u), Some(p), Some(a))
                        if (authzid.is_empty() || authzid == u) && a.check_password(u, p) =>
                    {
                        Some(u.to_string())
                    }
                    _ => None,
                }
            }
            n if is_scram(n) => {
                // Reached only when the client's proof was right.
                let user = context.get_ref::<AuthId>();
                let authzid = context.get_ref::<AuthzId>().unwrap_or("");
                user.filter(|u| authzid.is_empty() || authzid == *u)
                    .map(str::to_string)
            }
            "EXTERNAL" => {
                let authzid = context.get_ref::<AuthzId>().unwrap_or("");
                match &self.external {
                    Some(subject)
                        if (authzid.is_empty() || authzid == subject)
                            && self
                                .authenticator
                                .as_ref()
                                .is_none_or(|a| a.check_external(subject)) =>
                    {
                        Some(subject.clone())
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        if let Some(id) = identity {
            validate.finalize::<Identity>(id);
        }
        Ok(())
    }
}

impl SaslServerProvider for ServerSasl {
    fn mechanisms(&self) -> Vec<String> {
        self.mechanisms.clone()
    }

    fn start(
        &self,
        mechanism: &str,
        _hostname: Option<&str>,
    ) -> Option<Box<dyn SaslServerMechanism>> {
        if !self.mechanisms.iter().any(|m| m == mechanism) {
            tracing::warn!(peer = %self.peer, mechanism, "SASL: the client chose a mechanism we do not offer");
            self.failed
                .store(true, std::sync::atomic::Ordering::Release);
            return None;
        }
        let mech = MECHANISMS
            .iter()
            .find(|m| m.mechanism.as_str() == mechanism)?;
        let config = SASLConfig::builder()
            .with_registry(registry())
            .with_callback(ServerCallback {
                authenticator: self.authenticator.clone(),
                external: self.external.clone(),
            })
            .ok()?;
        let session = SASLServer::<Identity>::new(config)
            .start_suggested(mech.mechanism)
            .ok()?;
        Some(Box::new(ServerMech {
            name: mechanism.to_string(),
            session,
            peer: self.peer,
            result: self.result.clone(),
            failed: self.failed.clone(),
        }))
    }

    fn optional(&self) -> bool {
        self.optional
    }
}

struct ServerMech {
    name: String,
    session: Session<Identity>,
    peer: SocketAddr,
    result: Arc<Mutex<Option<AuthInfo>>>,
    failed: Arc<std::sync::atomic::AtomicBool>,
}

impl fmt::Debug for ServerMech {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerMech")
            .field("name", &self.name)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl ServerMech {
    fn refuse(&self, reason: String) -> SaslServerStep {
        tracing::warn!(peer = %self.peer, mechanism = %self.name, %reason, "SASL authentication failed");
        self.failed
            .store(true, std::sync::atomic::Ordering::Release);
        SaslServerStep::Failure(SaslCode::Auth, reason)
    }
}

impl SaslServerMechanism for ServerMech {
    fn step(&mut self, response: &[u8]) -> SaslServerStep {
        let mut out = Vec::new();
        match self.session.step(Some(response), &mut out) {
            Ok(State::Running) => SaslServerStep::Challenge(out),
            Ok(State::Finished(sent)) => match self.session.validation() {
                Some(identity) => {
                    tracing::debug!(peer = %self.peer, mechanism = %self.name, %identity, "SASL authenticated");
                    *self.result.lock().unwrap() = Some(AuthInfo {
                        identity,
                        mechanism: self.name.clone(),
                    });
                    let data = match sent {
                        MessageSent::Yes if !out.is_empty() => Some(out),
                        _ => None,
                    };
                    SaslServerStep::Success(data)
                }
                None => self.refuse("bad credentials".into()),
            },
            Err(e) => self.refuse(e.to_string()),
        }
    }
}
