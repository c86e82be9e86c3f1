//! Protocol headers, SASL and open/close: everything before and after
//! the AMQP frames of sessions and links.
use super::config::Sasl;
use super::connection::{fatal, Connection, Fatal, Phase};
use super::event::*;
use super::sasl::{SaslServer, SaslStep};
use super::timers::Timer;
use crate::frame::codec::encode_sasl_frame;
use crate::frame::*;
use crate::types::Symbol;
use std::time::Duration;

impl Connection {
    pub(super) fn on_header(
        &mut self,
        expect: Option<ProtocolId>,
        id: ProtocolId,
    ) -> Result<(), Fatal> {
        if let Some(want) = expect {
            if want != id {
                if id == ProtocolId::Tls {
                    self.stop(
                        super::config::TLS_REQUIRED,
                        "the server requires TLS: it answered with the AMQP TLS protocol \
                         header (use an amqps:// URL or the TLS header upgrade)",
                    );
                    return Ok(());
                }
                let desc = if want == ProtocolId::Sasl {
                    "the peer does not support SASL".to_string()
                } else {
                    format!("the peer answered with protocol {id:?} instead of {want:?}")
                };
                self.stop(condition::NOT_IMPLEMENTED, desc);
                return Ok(());
            }
            self.phase = if id == ProtocolId::Sasl {
                Phase::Sasl
            } else {
                Phase::Amqp
            };
            return Ok(());
        }
        // Server: answer the client's header.
        match (id, &self.config.sasl) {
            (ProtocolId::Sasl, Sasl::Server(provider)) if !self.sasl_done => {
                let server = SaslServer::new(provider.clone());
                self.output.extend_from_slice(&ProtocolId::Sasl.header());
                self.write_sasl(&SaslFrame::Mechanisms(server.mechanisms()));
                self.sasl_server = Some(server);
                self.phase = Phase::Sasl;
            }
            (ProtocolId::Amqp, sasl)
                if self.sasl_done
                    || matches!(sasl, Sasl::Disabled | Sasl::Client(_))
                    || matches!(sasl, Sasl::Server(p) if p.optional()) =>
            {
                self.send_amqp_header();
                self.phase = Phase::Amqp;
            }
            _ => {
                // Answer with the header we support, then stop (spec 2.2).
                self.answer_with_our_header();
                self.stop(
                    condition::NOT_IMPLEMENTED,
                    format!("peer asked for protocol {id:?}, which this server does not offer"),
                );
            }
        }
        Ok(())
    }

    /// Server: writes the header we support (SASL if we run it), to
    /// answer a header we don't.
    pub(super) fn answer_with_our_header(&mut self) {
        let ours = if matches!(self.config.sasl, Sasl::Server(_)) && !self.sasl_done {
            ProtocolId::Sasl
        } else {
            ProtocolId::Amqp
        };
        self.output.extend_from_slice(&ours.header());
        self.wrote = true;
    }

    pub(super) fn send_amqp_header(&mut self) {
        self.output.extend_from_slice(&ProtocolId::Amqp.header());
        self.amqp_header_sent = true;
        self.wrote = true;
        if self.open_wanted && !self.open_sent {
            self.write_open();
        }
    }

    pub(super) fn on_sasl(&mut self, f: SaslFrame) -> Result<(), Fatal> {
        if let Some(server) = &mut self.sasl_server {
            match server.step(f) {
                SaslStep::Send(out) => {
                    self.write_sasl(&out);
                }
                SaslStep::Done(out, ok) => {
                    self.write_sasl(&out);
                    self.sasl_done = true;
                    // Its work is done: no SASL frame may follow.
                    self.sasl_server = None;
                    if ok {
                        self.phase = Phase::Header { expect: None };
                    } else {
                        self.stop(condition::UNAUTHORIZED_ACCESS, "SASL authentication failed");
                    }
                }
                SaslStep::Fail(desc) => return fatal(condition::FRAMING_ERROR, desc),
            }
            return Ok(());
        }
        let Some(client) = &mut self.sasl_client else {
            return fatal(condition::FRAMING_ERROR, "unexpected SASL frame");
        };
        match client.step(f) {
            SaslStep::Send(out) => {
                self.write_sasl(&out);
            }
            SaslStep::Done(_, true) => {
                self.sasl_done = true;
                self.phase = Phase::Header {
                    expect: Some(ProtocolId::Amqp),
                };
                self.send_amqp_header();
            }
            SaslStep::Done(_, false) | SaslStep::Fail(_) => {
                let desc = client
                    .failure()
                    .unwrap_or("SASL authentication failed")
                    .to_string();
                self.stop(condition::UNAUTHORIZED_ACCESS, desc);
            }
        }
        Ok(())
    }

    /// Stops reading without an AMQP close (before AMQP frames flow: bad
    /// headers, failed SASL), reporting the condition.
    pub(super) fn stop(&mut self, cond: Symbol, desc: impl Into<String>) {
        self.phase = Phase::Done;
        self.events.push_back(Event::Closed {
            error: Some(AmqpError::new(cond, desc)),
            remote: false,
            timeout: false,
        });
    }

    /// Closes the connection because the peer broke the protocol: sends
    /// close with the condition and reports it.
    pub(super) fn write_sasl(&mut self, frame: &SaslFrame) {
        tracing::trace!(?frame, "SEND");
        encode_sasl_frame(&mut self.output, frame);
        self.wrote = true;
    }

    /// Sends our open (as a client: as soon as the headers allow; as a
    /// server: accepts the peer's open).
    pub fn open(&mut self) {
        self.open_wanted = true;
        if self.amqp_header_sent && !self.open_sent {
            self.write_open();
        }
    }

    pub(super) fn write_open(&mut self) {
        let c = &self.config;
        let open = Open {
            container_id: c.container_id.clone(),
            hostname: c.hostname.clone(),
            max_frame_size: c.max_frame_size,
            channel_max: c.channel_max,
            idle_time_out: c
                .idle_timeout
                .map(|d| d.as_millis().min(u32::MAX as u128) as u32),
            outgoing_locales: None,
            incoming_locales: None,
            offered_capabilities: c.offered_capabilities.clone(),
            desired_capabilities: c.desired_capabilities.clone(),
            properties: c.properties.clone(),
        };
        self.open_sent = true; // (so that the open itself is not held)
        self.write_frame(0, &open, &[]);
        // What was answered before the open follows it.
        let held = self.held.split();
        self.output.extend_from_slice(&held);
    }

    /// Refuses a peer's connection: open then close with `error`.
    pub fn refuse(&mut self, error: AmqpError) {
        self.held.clear();
        self.close(Some(error));
    }

    /// Closes the connection, with an error if given.
    pub fn close(&mut self, error: Option<AmqpError>) {
        if self.close_sent || matches!(self.phase, Phase::Done) && !self.amqp_header_sent {
            return;
        }
        if !self.amqp_header_sent {
            self.phase = Phase::Done;
            return;
        }
        if !self.open_sent {
            self.write_open();
        }
        self.flush_dispositions();
        self.write_frame(0, &Close { error }, &[]);
        self.close_sent = true;
        self.timers.request(Timer::Close);
    }

    pub(super) fn on_open(&mut self, open: Box<Open>) -> Result<(), Fatal> {
        if self.remote_open {
            return fatal(condition::ILLEGAL_STATE, "second open");
        }
        if (open.max_frame_size as usize) < codec::MIN_MAX_FRAME_SIZE {
            return fatal(
                condition::FRAME_SIZE_TOO_SMALL,
                format!("max-frame-size {} is below 512", open.max_frame_size),
            );
        }
        self.remote_open = true;
        self.timers.cancel(Timer::Open);
        self.remote_max_frame_size = open.max_frame_size as usize;
        self.remote_channel_max = open.channel_max;
        self.remote_idle_timeout = open
            .idle_time_out
            .filter(|&ms| ms > 0)
            .map(|ms| Duration::from_millis(ms as u64));
        self.events.push_back(Event::Opened(open));
        Ok(())
    }
}
