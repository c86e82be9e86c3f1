//! SASL frames (security.bare.xml): mechanisms, init, challenge, response,
//! outcome.

use crate::types::Symbol;
use bytes::Bytes;

composite! {
    /// The server's supported mechanisms (0x40).
    pub struct SaslMechanisms = 0x40, "amqp:sasl-mechanisms:list" {
        /// The mechanisms, in the server's order of preference.
        req sasl_server_mechanisms: Vec<Symbol>,
    }
}

composite! {
    /// The client's chosen mechanism and initial response (0x41).
    pub struct SaslInit = 0x41, "amqp:sasl-init:list" {
        /// The chosen mechanism.
        req mechanism: Symbol,
        /// The initial response of the mechanism.
        opt initial_response: Option<Bytes>,
        /// The name of the target host.
        opt hostname: Option<String>,
    }
}

composite! {
    /// A security challenge (0x42).
    pub struct SaslChallenge = 0x42, "amqp:sasl-challenge:list" {
        /// The challenge data.
        req challenge: Bytes,
    }
}

composite! {
    /// A security response (0x43).
    pub struct SaslResponse = 0x43, "amqp:sasl-response:list" {
        /// The response data.
        req response: Bytes,
    }
}

composite! {
    /// The outcome of the SASL exchange (0x44).
    pub struct SaslOutcome = 0x44, "amqp:sasl-outcome:list" {
        /// 0 ok, 1 auth (bad credentials), 2 sys, 3 sys-perm, 4 sys-temp.
        req code: u8,
        /// Additional data, for example for the client's verification.
        opt additional_data: Option<Bytes>,
    }
}

/// A SASL frame body.
#[derive(Clone, Debug, PartialEq)]
pub enum SaslFrame {
    /// sasl-mechanisms.
    Mechanisms(SaslMechanisms),
    /// sasl-init.
    Init(SaslInit),
    /// sasl-challenge.
    Challenge(SaslChallenge),
    /// sasl-response.
    Response(SaslResponse),
    /// sasl-outcome.
    Outcome(SaslOutcome),
}
