//! The connection engine: bytes in, frames and events out.
//!
//! Inputs: [`Connection::input_buffer`] + [`Connection::handle_input`] (bytes
//! read from the transport), the commands (`open`, `begin`, `attach`,
//! `send`, `flow`, `settle`, `detach`, `end`, `close`) and
//! [`Connection::handle_timeout`]. Outputs: [`Connection::poll_event`],
//! [`Connection::take_output`] (bytes to write) and
//! [`Connection::poll_timeout`] (when to call `handle_timeout`). Time is
//! passed in; the engine never reads a clock or touches a socket.
//!
//! ```text
//! client: hdr(SASL) ⇄ mechanisms/init/outcome ⇄ hdr(AMQP) ⇄ open ⇄ ... ⇄ close
//! server: waits for the client's header and answers each step.
//! ```

use super::config::{Config, Sasl, Side};
use super::event::*;
use super::link::*;
use super::sasl::{SaslClient, SaslServer, SaslStep};
use super::session::{PendingDisposition, Session, Unsettled};
use crate::frame::codec::{encode_empty_frame, encode_frame, encode_sasl_frame, HEADER_LEN};
use crate::frame::*;
use crate::message::Message;
use crate::types::{Encode, Symbol};
use crate::DecodeError;
use bytes::{Bytes, BytesMut};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Where the byte stream is.
#[derive(Debug)]
enum Phase {
    /// Waiting for the peer's protocol header (`expect`: which one; a server
    /// takes either).
    Header { expect: Option<ProtocolId> },
    /// SASL frames.
    Sasl,
    /// AMQP frames.
    Amqp,
    /// Nothing more is read: closed, or failed.
    Done,
}

/// The sans-IO AMQP 1.0 connection engine. See the module docs.
#[derive(Debug)]
pub struct Connection {
    side: Side,
    config: Config,
    phase: Phase,
    decoder: FrameDecoder,
    input: BytesMut,
    output: BytesMut,
    events: VecDeque<Event>,
    sasl_client: Option<SaslClient>,
    sasl_server: Option<SaslServer>,
    sasl_done: bool,
    amqp_header_sent: bool,
    open_wanted: bool,
    open_sent: bool,
    close_sent: bool,
    remote_open: bool,
    remote_closed: bool,
    remote_max_frame_size: usize,
    remote_channel_max: u16,
    remote_idle_timeout: Option<Duration>,
    sessions: HashMap<SessionId, Session>,
    channels: HashMap<u16, SessionId>,
    remote_channels: HashMap<u16, SessionId>,
    links: HashMap<LinkId, Link>,
    ready: VecDeque<LinkId>,
    next_id: u64,
    last_received: Option<Instant>,
    last_sent: Option<Instant>,
    wrote: bool,
}

type Fatal = (Symbol, String);

fn fatal<T>(condition: Symbol, description: impl Into<String>) -> Result<T, Fatal> {
    Err((condition, description.into()))
}

impl Connection {
    /// A new engine. A client starts by queueing its protocol header.
    pub fn new(side: Side, config: Config) -> Self {
        let decoder = FrameDecoder::new(config.max_frame_size as usize);
        let mut c = Connection {
            side,
            phase: Phase::Header { expect: None },
            decoder,
            input: BytesMut::with_capacity(64 * 1024),
            output: BytesMut::with_capacity(64 * 1024),
            events: VecDeque::new(),
            sasl_client: None,
            sasl_server: None,
            sasl_done: false,
            amqp_header_sent: false,
            open_wanted: false,
            open_sent: false,
            close_sent: false,
            remote_open: false,
            remote_closed: false,
            remote_max_frame_size: codec::MIN_MAX_FRAME_SIZE,
            remote_channel_max: 0,
            remote_idle_timeout: None,
            sessions: HashMap::new(),
            channels: HashMap::new(),
            remote_channels: HashMap::new(),
            links: HashMap::new(),
            ready: VecDeque::new(),
            next_id: 0,
            last_received: None,
            last_sent: None,
            wrote: false,
            config,
        };
        if side == Side::Client {
            match &c.config.sasl {
                Sasl::Client {
                    user,
                    password,
                    allowed,
                } => {
                    c.sasl_client = Some(SaslClient::new(
                        user.clone(),
                        password.clone(),
                        allowed.clone(),
                        c.config.hostname.clone(),
                    ));
                    c.output.extend_from_slice(&ProtocolId::Sasl.header());
                    c.phase = Phase::Header {
                        expect: Some(ProtocolId::Sasl),
                    };
                }
                _ => {
                    c.send_amqp_header();
                    c.phase = Phase::Header {
                        expect: Some(ProtocolId::Amqp),
                    };
                }
            }
        }
        c
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Which side this engine is.
    pub fn side(&self) -> Side {
        self.side
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    // ---- I/O -----------------------------------------------------------

    /// The buffer to read transport bytes into (then call `handle_input`).
    pub fn input_buffer(&mut self) -> &mut BytesMut {
        &mut self.input
    }

    /// Processes the bytes in the input buffer.
    pub fn handle_input(&mut self, now: Instant) {
        if !self.input.is_empty() {
            self.last_received = Some(now);
        }
        while let Err((cond, desc)) = self.step_input() {
            self.fail(cond, desc);
        }
        self.last_received = self.last_received.or(Some(now));
        self.pump();
        if self.wrote {
            self.last_sent = Some(now);
            self.wrote = false;
        }
    }

    /// Convenience: appends `data` to the input buffer and processes it.
    pub fn handle_bytes(&mut self, data: &[u8], now: Instant) {
        self.input.extend_from_slice(data);
        self.handle_input(now);
    }

    /// Bytes to write to the transport, if any; all frames queued so far in
    /// one buffer.
    pub fn take_output(&mut self) -> Option<BytesMut> {
        self.pump();
        self.flush_dispositions();
        if self.output.is_empty() {
            None
        } else {
            Some(self.output.split())
        }
    }

    /// Whether output is waiting.
    pub fn has_output(&self) -> bool {
        !self.output.is_empty() || self.sessions.values().any(|s| !s.dispositions.is_empty())
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Whether the connection is finished: close sent and received, or
    /// failed. The driver flushes the output and drops the transport.
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Done) || (self.close_sent && self.remote_closed)
    }

    /// Whether the peer's open has arrived.
    pub fn is_remote_open(&self) -> bool {
        self.remote_open
    }

    /// The largest frame we may send (the peer's max-frame-size).
    pub fn remote_max_frame_size(&self) -> usize {
        self.remote_max_frame_size
    }

    /// When `handle_timeout` must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_closed() {
            return None;
        }
        let heartbeat = match (self.remote_idle_timeout, self.last_sent) {
            (Some(t), Some(last)) if self.open_sent => Some(last + t / 2),
            _ => None,
        };
        let expiry = match (self.config.idle_timeout, self.last_received) {
            (Some(t), Some(last)) if self.remote_open => Some(last + t),
            _ => None,
        };
        match (heartbeat, expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Sends heartbeats and enforces our idle timeout.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.is_closed() {
            return;
        }
        if let (Some(t), Some(last)) = (self.config.idle_timeout, self.last_received) {
            if self.remote_open && now >= last + t {
                self.fail(
                    condition::RESOURCE_LIMIT_EXCEEDED,
                    format!("local-idle-timeout expired ({} ms)", t.as_millis()),
                );
                return;
            }
        }
        if let (Some(t), Some(last)) = (self.remote_idle_timeout, self.last_sent) {
            if self.open_sent && now >= last + t / 2 && self.output.is_empty() {
                encode_empty_frame(&mut self.output);
                self.last_sent = Some(now);
            }
        }
        if self.last_sent.is_none() {
            self.last_sent = Some(now);
        }
    }

    /// Notes that output was written at `now` (for heartbeats).
    pub fn on_transmit(&mut self, now: Instant) {
        self.last_sent = Some(now);
    }

    fn step_input(&mut self) -> Result<(), Fatal> {
        loop {
            match self.phase {
                Phase::Done => {
                    self.input.clear();
                    return Ok(());
                }
                Phase::Header { expect } => {
                    if self.input.len() < 8 {
                        return Ok(());
                    }
                    let mut h = [0u8; 8];
                    h.copy_from_slice(&self.input.split_to(8));
                    let id = match ProtocolId::from_header(h) {
                        Ok(id) => id,
                        Err(_) => {
                            if expect.is_none() {
                                // Server: answer with a header we support,
                                // then stop (spec 2.2).
                                self.answer_with_our_header();
                            }
                            self.stop(
                                condition::FRAMING_ERROR,
                                format!("the peer sent an invalid protocol header {h:02x?}"),
                            );
                            return Ok(());
                        }
                    };
                    self.on_header(expect, id)?;
                }
                Phase::Sasl | Phase::Amqp => {
                    let frame = match self.decoder.decode(&mut self.input) {
                        Ok(Some(f)) => f,
                        Ok(None) => return Ok(()),
                        Err(e) => return Err(decode_fatal(e)),
                    };
                    self.on_frame(frame)?;
                }
            }
        }
    }

    fn on_header(&mut self, expect: Option<ProtocolId>, id: ProtocolId) -> Result<(), Fatal> {
        if let Some(want) = expect {
            if want != id {
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
            (
                ProtocolId::Sasl,
                Sasl::Server {
                    anonymous, plain, ..
                },
            ) if !self.sasl_done => {
                let server = SaslServer::new(*anonymous, plain.clone());
                self.output.extend_from_slice(&ProtocolId::Sasl.header());
                self.write_sasl(&SaslFrame::Mechanisms(server.mechanisms()));
                self.sasl_server = Some(server);
                self.phase = Phase::Sasl;
            }
            (ProtocolId::Amqp, sasl)
                if self.sasl_done
                    || matches!(sasl, Sasl::Disabled | Sasl::Client { .. })
                    || matches!(sasl, Sasl::Server { optional: true, .. }) =>
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
    fn answer_with_our_header(&mut self) {
        let ours = if matches!(self.config.sasl, Sasl::Server { .. }) && !self.sasl_done {
            ProtocolId::Sasl
        } else {
            ProtocolId::Amqp
        };
        self.output.extend_from_slice(&ours.header());
        self.wrote = true;
    }

    fn send_amqp_header(&mut self) {
        self.output.extend_from_slice(&ProtocolId::Amqp.header());
        self.amqp_header_sent = true;
        self.wrote = true;
        if self.open_wanted && !self.open_sent {
            self.write_open();
        }
    }

    fn on_frame(&mut self, frame: Frame) -> Result<(), Fatal> {
        match (frame, &self.phase) {
            (Frame::Sasl(f), Phase::Sasl) => {
                tracing::trace!(frame = ?f, "RECV");
                self.on_sasl(f)
            }
            (Frame::Sasl(_), _) => fatal(condition::FRAMING_ERROR, "SASL frame outside SASL"),
            (_, Phase::Sasl) => fatal(condition::FRAMING_ERROR, "AMQP frame during SASL"),
            (Frame::Empty, _) => Ok(()),
            (
                Frame::Amqp {
                    channel,
                    performative,
                    payload,
                },
                _,
            ) => {
                tracing::trace!(channel, ?performative, payload = payload.len(), "RECV");
                if self.remote_closed {
                    return fatal(condition::ILLEGAL_STATE, "frame after close");
                }
                if !self.remote_open && !matches!(performative, Performative::Open(_)) {
                    return fatal(condition::ILLEGAL_STATE, "the first frame must be open");
                }
                self.on_performative(channel, performative, payload)
            }
        }
    }

    fn on_sasl(&mut self, f: SaslFrame) -> Result<(), Fatal> {
        if let Some(server) = &mut self.sasl_server {
            match server.step(f) {
                SaslStep::Send(out) => {
                    self.write_sasl(&out);
                }
                SaslStep::Done(out, ok) => {
                    self.write_sasl(&out);
                    self.sasl_done = true;
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
    fn stop(&mut self, cond: Symbol, desc: impl Into<String>) {
        self.phase = Phase::Done;
        self.events.push_back(Event::Closed {
            error: Some(AmqpError::new(cond, desc)),
            remote: false,
        });
    }

    /// Closes the connection because the peer broke the protocol: sends
    /// close with the condition and reports it.
    fn fail(&mut self, cond: Symbol, desc: String) {
        tracing::debug!(%cond, %desc, "closing the connection on a protocol error");
        let error = AmqpError::new(cond, desc);
        if matches!(self.phase, Phase::Amqp) && !self.close_sent {
            if !self.open_sent {
                self.write_open();
            }
            self.write_frame(
                0,
                &Close {
                    error: Some(error.clone()),
                },
                &[],
            );
            self.close_sent = true;
        }
        self.phase = Phase::Done;
        self.events.push_back(Event::Closed {
            error: Some(error),
            remote: false,
        });
    }

    fn write_sasl(&mut self, frame: &SaslFrame) {
        tracing::trace!(?frame, "SEND");
        encode_sasl_frame(&mut self.output, frame);
        self.wrote = true;
    }

    /// Queues a frame. At `trace` level every frame is logged (the
    /// equivalent of Proton's `PN_TRACE_FRM=1`); off, this costs one check.
    fn write_frame(
        &mut self,
        channel: u16,
        body: &(impl Encode + std::fmt::Debug),
        payload: &[u8],
    ) {
        tracing::trace!(channel, frame = ?body, payload = payload.len(), "SEND");
        encode_frame(&mut self.output, channel, body, payload);
        self.wrote = true;
    }

    // ---- connection --------------------------------------------------

    /// Sends our open (as a client: as soon as the headers allow; as a
    /// server: accepts the peer's open).
    pub fn open(&mut self) {
        self.open_wanted = true;
        if self.amqp_header_sent && !self.open_sent {
            self.write_open();
        }
    }

    fn write_open(&mut self) {
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
        self.write_frame(0, &open, &[]);
        self.open_sent = true;
    }

    /// Refuses a peer's connection: open then close with `error`.
    pub fn refuse(&mut self, error: AmqpError) {
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
    }

    fn on_performative(
        &mut self,
        channel: u16,
        p: Performative,
        payload: Bytes,
    ) -> Result<(), Fatal> {
        match p {
            Performative::Open(open) => self.on_open(open),
            Performative::Close(close) => {
                self.remote_closed = true;
                if !self.close_sent {
                    self.write_frame(0, &Close { error: None }, &[]);
                    self.close_sent = true;
                }
                self.events.push_back(Event::Closed {
                    error: close.error,
                    remote: true,
                });
                Ok(())
            }
            Performative::Begin(begin) => self.on_begin(channel, begin),
            p => {
                let Some(&sid) = self.remote_channels.get(&channel) else {
                    return fatal(
                        condition::FRAMING_ERROR,
                        format!("frame on channel {channel}, which has no session"),
                    );
                };
                match p {
                    Performative::End(end) => self.on_end(sid, end),
                    Performative::Attach(a) => self.on_attach(sid, a),
                    Performative::Flow(f) => self.on_flow(sid, f),
                    Performative::Transfer(t) => self.on_transfer(sid, t, payload),
                    Performative::Disposition(d) => self.on_disposition(sid, d),
                    Performative::Detach(d) => self.on_detach(sid, d),
                    _ => Ok(()),
                }
            }
        }
    }

    fn on_open(&mut self, open: Open) -> Result<(), Fatal> {
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
        self.remote_max_frame_size = open.max_frame_size as usize;
        self.remote_channel_max = open.channel_max;
        self.remote_idle_timeout = open
            .idle_time_out
            .filter(|&ms| ms > 0)
            .map(|ms| Duration::from_millis(ms as u64));
        self.events.push_back(Event::Opened(Box::new(open)));
        Ok(())
    }

    // ---- sessions -----------------------------------------------------

    /// Begins a session; the peer's answer comes as
    /// [`Event::SessionBegun`]. Fails if every channel is in use.
    pub fn begin(&mut self) -> Result<SessionId, AmqpError> {
        let max = if self.remote_open {
            self.remote_channel_max.min(self.config.channel_max)
        } else {
            self.config.channel_max
        };
        let channel = (0..=max)
            .find(|c| !self.channels.contains_key(c))
            .ok_or_else(|| AmqpError::new(condition::RESOURCE_LIMIT_EXCEEDED, "no free channel"))?;
        let id = SessionId(self.next_id());
        let session = Session::new(channel, self.config.incoming_window);
        self.channels.insert(channel, id);
        self.sessions.insert(id, session);
        self.write_begin(id);
        Ok(id)
    }

    fn write_begin(&mut self, id: SessionId) {
        let s = self.sessions.get_mut(&id).expect("session exists");
        s.begin_sent = true;
        let begin = Begin {
            remote_channel: s.remote_channel,
            next_outgoing_id: s.next_outgoing_id,
            incoming_window: s.incoming_window,
            outgoing_window: u32::MAX,
            handle_max: (self.config.max_links_per_session.max(1) - 1) as u32,
            ..Default::default()
        };
        let channel = s.channel;
        self.write_frame(channel, &begin, &[]);
    }

    fn on_begin(&mut self, channel: u16, begin: Begin) -> Result<(), Fatal> {
        if self.remote_channels.contains_key(&channel) {
            return fatal(
                condition::FRAMING_ERROR,
                format!("begin on channel {channel}, which is in use"),
            );
        }
        if channel > self.config.channel_max {
            return fatal(
                condition::FRAMING_ERROR,
                format!("channel {channel} exceeds channel-max"),
            );
        }
        let (sid, incoming) = match begin.remote_channel {
            Some(ours) => match self.channels.get(&ours) {
                Some(&sid) if self.sessions[&sid].remote_channel.is_none() => (sid, false),
                _ => {
                    return fatal(
                        condition::FRAMING_ERROR,
                        format!("begin answers channel {ours}, which has no session of ours"),
                    )
                }
            },
            None => {
                if self.sessions.len() >= self.config.max_sessions {
                    return fatal(
                        condition::RESOURCE_LIMIT_EXCEEDED,
                        format!("more than {} sessions", self.config.max_sessions),
                    );
                }
                let ours = (0..=self.config.channel_max)
                    .find(|c| !self.channels.contains_key(c))
                    .ok_or((
                        condition::RESOURCE_LIMIT_EXCEEDED,
                        "no free channel".to_string(),
                    ))?;
                let sid = SessionId(self.next_id());
                self.channels.insert(ours, sid);
                self.sessions
                    .insert(sid, Session::new(ours, self.config.incoming_window));
                (sid, true)
            }
        };
        let s = self.sessions.get_mut(&sid).expect("session exists");
        s.remote_channel = Some(channel);
        s.next_incoming_id = begin.next_outgoing_id;
        s.remote_incoming_window = begin.incoming_window;
        s.remote_outgoing_window = begin.outgoing_window;
        s.remote_handle_max = begin.handle_max;
        self.remote_channels.insert(channel, sid);
        if incoming {
            self.write_begin(sid);
        }
        self.events.push_back(Event::SessionBegun {
            session: sid,
            begin: Box::new(begin),
            incoming,
        });
        Ok(())
    }

    /// Ends a session, with an error if given.
    pub fn end(&mut self, session: SessionId, error: Option<AmqpError>) {
        // Settlements made before the end go out before it.
        self.flush_dispositions();
        let Some(s) = self.sessions.get_mut(&session) else {
            return;
        };
        if s.end_sent {
            return;
        }
        s.end_sent = true;
        let channel = s.channel;
        let done = s.end_received;
        self.write_frame(channel, &End { error }, &[]);
        if done {
            self.remove_session(session);
        }
    }

    fn on_end(&mut self, sid: SessionId, end: End) -> Result<(), Fatal> {
        let s = self.sessions.get_mut(&sid).expect("session exists");
        s.end_received = true;
        if let Some(rc) = s.remote_channel {
            self.remote_channels.remove(&rc);
        }
        let reply = !s.end_sent;
        if end.error.is_some() {
            // The links end with the session's error (a broker refusing an
            // attach by ending the session, say): tell their handles why.
            let links: Vec<LinkId> = s
                .handles
                .values()
                .chain(s.remote_handles.values())
                .copied()
                .collect();
            self.drop_links(links, end.error.clone());
        }
        if reply {
            self.end(sid, None);
        } else {
            self.remove_session(sid);
        }
        self.events.push_back(Event::SessionEnded {
            session: sid,
            error: end.error,
        });
        Ok(())
    }

    fn remove_session(&mut self, sid: SessionId) {
        let Some(s) = self.sessions.remove(&sid) else {
            return;
        };
        self.channels.remove(&s.channel);
        if let Some(rc) = s.remote_channel {
            self.remote_channels.remove(&rc);
        }
        let links: Vec<LinkId> = s
            .handles
            .values()
            .chain(s.remote_handles.values())
            .copied()
            .collect();
        self.drop_links(links, None);
    }

    /// Forgets `links` (their session is gone), each with `error`.
    fn drop_links(&mut self, links: Vec<LinkId>, error: Option<AmqpError>) {
        for link in links {
            if let Some(unsent) = self.remove_link(link) {
                self.events.push_back(Event::LinkDetached {
                    link,
                    closed: false,
                    error: error.clone(),
                    remote: true,
                    unsent,
                });
            }
        }
    }

    /// Ends a session because the peer broke a session rule.
    fn session_error(&mut self, sid: SessionId, cond: Symbol, desc: String) -> Result<(), Fatal> {
        let error = AmqpError::new(cond, desc);
        self.end(sid, Some(error.clone()));
        self.events.push_back(Event::SessionEnded {
            session: sid,
            error: Some(error),
        });
        Ok(())
    }

    // ---- links ------------------------------------------------------------

    /// Attaches a link on `session` with our `attach` (its handle is
    /// assigned here). The peer's answer comes as [`Event::LinkAttached`].
    pub fn attach(&mut self, session: SessionId, mut attach: Attach) -> Result<LinkId, AmqpError> {
        let s = self
            .sessions
            .get_mut(&session)
            .filter(|s| !s.end_sent && !s.end_received)
            .ok_or_else(|| AmqpError::new(condition::ILLEGAL_STATE, "the session has ended"))?;
        if s.handles.len() >= self.config.max_links_per_session {
            return Err(AmqpError::new(
                condition::RESOURCE_LIMIT_EXCEEDED,
                "too many links",
            ));
        }
        let handle = s
            .free_handle()
            .ok_or_else(|| AmqpError::new(condition::RESOURCE_LIMIT_EXCEEDED, "no free handle"))?;
        attach.handle = handle;
        if attach.role == Role::Sender && attach.initial_delivery_count.is_none() {
            attach.initial_delivery_count = Some(0);
        }
        if attach.role == Role::Receiver && attach.max_message_size.is_none() {
            attach.max_message_size = Some(self.config.max_message_size);
        }
        self.next_id += 1;
        let id = LinkId(self.next_id);
        s.handles.insert(handle, id);
        let channel = s.channel;
        self.write_frame(channel, &attach, &[]);
        self.links.insert(id, Link::new(session, handle, attach));
        Ok(id)
    }

    /// Accepts a link the peer attached, answering with `attach` (whose
    /// name, handle and role are filled in here).
    pub fn accept_link(&mut self, link: LinkId, mut attach: Attach) {
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        if l.state != LinkState::Incoming {
            return;
        }
        attach.name = l.name.clone();
        attach.handle = l.handle;
        attach.role = l.role;
        if attach.role == Role::Sender && attach.initial_delivery_count.is_none() {
            attach.initial_delivery_count = Some(0);
        }
        if attach.role == Role::Receiver && attach.max_message_size.is_none() {
            attach.max_message_size = Some(self.config.max_message_size);
        }
        l.state = LinkState::Attached;
        l.delivery_count = attach.initial_delivery_count.unwrap_or(l.delivery_count);
        l.snd_settle_mode = attach.snd_settle_mode;
        l.rcv_settle_mode = attach.rcv_settle_mode;
        l.attach = attach.clone();
        let sid = l.session;
        let channel = self.sessions[&sid].channel;
        self.write_frame(channel, &attach, &[]);
    }

    /// Refuses a link the peer attached: attach with no terminus, then
    /// detach (closed) with `error`, as the spec prescribes.
    pub fn refuse_link(&mut self, link: LinkId, error: AmqpError) {
        let Some(l) = self.links.get(&link) else {
            return;
        };
        if l.state != LinkState::Incoming {
            return;
        }
        let attach = Attach {
            name: l.name.clone(),
            handle: l.handle,
            role: l.role,
            initial_delivery_count: (l.role == Role::Sender).then_some(0),
            ..Default::default()
        };
        let channel = self.sessions[&l.session].channel;
        self.write_frame(channel, &attach, &[]);
        self.links.get_mut(&link).expect("link exists").state = LinkState::Attached;
        self.detach(link, true, Some(error));
    }

    fn on_attach(&mut self, sid: SessionId, a: Attach) -> Result<(), Fatal> {
        let s = self.sessions.get_mut(&sid).expect("session exists");
        if s.remote_handles.contains_key(&a.handle) {
            let d = format!("handle {} is in use", a.handle);
            return self.session_error(sid, condition::HANDLE_IN_USE, d);
        }
        if a.handle > (self.config.max_links_per_session.max(1) - 1) as u32 {
            // The peer ignores the handle-max we announced: an abusive peer,
            // so the whole connection goes, not only the session.
            let d = format!("handle {} exceeds the handle-max we announced", a.handle);
            return fatal(condition::RESOURCE_LIMIT_EXCEEDED, d);
        }
        // An answer to one of our attaches: same name, opposite role.
        let ours = s.handles.values().copied().find(|id| {
            let l = &self.links[id];
            l.name == a.name && l.role != a.role && l.state == LinkState::Attaching
        });
        let s = self.sessions.get_mut(&sid).expect("session exists");
        s.remote_handles.insert(a.handle, ours.unwrap_or(LinkId(0)));
        match ours {
            Some(id) => {
                let l = self.links.get_mut(&id).expect("link exists");
                l.remote_handle = Some(a.handle);
                l.state = LinkState::Attached;
                l.remote_max_message_size = a.max_message_size.filter(|&m| m > 0);
                if l.role == Role::Receiver {
                    l.delivery_count = a.initial_delivery_count.unwrap_or(0);
                }
                self.events.push_back(Event::LinkAttached {
                    link: id,
                    attach: Box::new(a),
                });
            }
            None => {
                if s.handles.len() >= self.config.max_links_per_session {
                    let d = format!("more than {} links", self.config.max_links_per_session);
                    return fatal(condition::RESOURCE_LIMIT_EXCEEDED, d);
                }
                let Some(handle) = s.free_handle() else {
                    s.remote_handles.remove(&a.handle);
                    let d = "no free handle".to_string();
                    return self.session_error(sid, condition::RESOURCE_LIMIT_EXCEEDED, d);
                };
                self.next_id += 1;
                let id = LinkId(self.next_id);
                s.handles.insert(handle, id);
                s.remote_handles.insert(a.handle, id);
                let ours = Attach {
                    name: a.name.clone(),
                    handle,
                    role: match a.role {
                        Role::Sender => Role::Receiver,
                        Role::Receiver => Role::Sender,
                    },
                    ..Default::default()
                };
                let mut l = Link::new(sid, handle, ours);
                l.state = LinkState::Incoming;
                l.remote_handle = Some(a.handle);
                l.remote_max_message_size = a.max_message_size.filter(|&m| m > 0);
                if l.role == Role::Receiver {
                    l.delivery_count = a.initial_delivery_count.unwrap_or(0);
                }
                self.links.insert(id, l);
                self.events.push_back(Event::IncomingLink {
                    session: sid,
                    link: id,
                    attach: Box::new(a),
                });
            }
        }
        Ok(())
    }

    /// Detaches (or, with `closed`, closes) a link. The link is forgotten
    /// when the peer's detach arrives.
    pub fn detach(&mut self, link: LinkId, closed: bool, error: Option<AmqpError>) {
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        if l.state == LinkState::Detaching {
            return;
        }
        l.state = LinkState::Detaching;
        let (handle, sid) = (l.handle, l.session);
        // Settlements made before the detach go out before it.
        self.flush_dispositions();
        let channel = self.sessions[&sid].channel;
        let detach = Detach {
            handle,
            closed,
            error,
        };
        self.write_frame(channel, &detach, &[]);
    }

    /// Forgets a link; returns its messages without an outcome: the
    /// unsettled ones (in send order), then the queued ones.
    fn remove_link(&mut self, link: LinkId) -> Option<Vec<(SendId, Message)>> {
        let l = self.links.remove(&link)?;
        let mut unsent = Vec::new();
        if let Some(s) = self.sessions.get_mut(&l.session) {
            s.handles.remove(&l.handle);
            if let Some(rh) = l.remote_handle {
                s.remote_handles.remove(&rh);
            }
            let ids: Vec<u32> = s
                .outgoing_unsettled
                .iter()
                .filter(|(_, u)| u.link == link)
                .map(|(k, _)| *k)
                .collect();
            for id in ids {
                if let Some(u) = s.outgoing_unsettled.remove(&id) {
                    unsent.push((u.send, u.message.into_message()));
                }
            }
            s.incoming_unsettled.retain(|_, id| *id != link);
        }
        unsent.extend(
            l.queue
                .into_iter()
                .map(|q| (q.send, q.message.into_message())),
        );
        Some(unsent)
    }

    /// Takes every message that has no outcome yet (unsettled or queued),
    /// for a driver whose connection failed.
    pub fn take_unsent(&mut self) -> Vec<(SendId, Message)> {
        let mut out = Vec::new();
        for s in self.sessions.values_mut() {
            out.extend(
                std::mem::take(&mut s.outgoing_unsettled)
                    .into_values()
                    .map(|u| (u.send, u.message.into_message())),
            );
        }
        for l in self.links.values_mut() {
            out.extend(
                l.queue
                    .drain(..)
                    .map(|q| (q.send, q.message.into_message())),
            );
        }
        out
    }

    fn link_by_remote_handle(&self, sid: SessionId, handle: u32) -> Option<LinkId> {
        self.sessions[&sid]
            .remote_handles
            .get(&handle)
            .copied()
            .filter(|id| self.links.contains_key(id))
    }

    fn on_detach(&mut self, sid: SessionId, d: Detach) -> Result<(), Fatal> {
        let Some(id) = self.link_by_remote_handle(sid, d.handle) else {
            let desc = format!("detach of handle {}, which is not attached", d.handle);
            return self.session_error(sid, condition::UNATTACHED_HANDLE, desc);
        };
        // Answer (unless we detached first), then forget the link.
        self.detach(id, d.closed, None);
        let unsent = self.remove_link(id).expect("link exists");
        self.events.push_back(Event::LinkDetached {
            link: id,
            closed: d.closed,
            error: d.error,
            remote: true,
            unsent,
        });
        Ok(())
    }

    /// Detaches a link because the peer broke a link rule.
    fn link_error(&mut self, link: LinkId, cond: Symbol, desc: String) {
        let error = AmqpError::new(cond, desc);
        self.detach(link, true, Some(error.clone()));
        if let Some(l) = self.links.get_mut(&link) {
            let unsent = l
                .queue
                .drain(..)
                .map(|q| (q.send, q.message.into_message()))
                .collect();
            l.incoming = None;
            self.events.push_back(Event::LinkDetached {
                link,
                closed: true,
                error: Some(error),
                remote: false,
                unsent,
            });
        }
    }

    // ---- flow ---------------------------------------------------------------

    /// Grants `credit` to the sender of a receiver link (replacing the
    /// credit left), with `drain` if the sender should use it up or give it
    /// back.
    pub fn flow(&mut self, link: LinkId, credit: u32, drain: bool) {
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        if l.role != Role::Receiver || l.state == LinkState::Detaching {
            return;
        }
        l.credit = credit;
        l.drain = drain;
        l.granted = credit;
        l.overshoot = 0;
        self.write_link_flow(link, false);
        if drain && credit == 0 {
            // Nothing to drain: done at once.
            if let Some(l) = self.links.get_mut(&link) {
                l.drain = false;
            }
            self.events.push_back(Event::Drained { link });
        }
    }

    /// The credit a link has left.
    pub fn credit(&self, link: LinkId) -> u32 {
        self.links.get(&link).map_or(0, |l| l.credit)
    }

    fn write_link_flow(&mut self, link: LinkId, echo: bool) {
        let l = &self.links[&link];
        let s = &self.sessions[&l.session];
        let flow = Flow {
            next_incoming_id: s.remote_channel.map(|_| s.next_incoming_id),
            incoming_window: s.incoming_window,
            next_outgoing_id: s.next_outgoing_id,
            outgoing_window: u32::MAX,
            handle: Some(l.handle),
            delivery_count: Some(l.delivery_count),
            link_credit: Some(l.credit),
            available: (l.role == Role::Sender).then_some(l.queue.len() as u32),
            drain: l.drain,
            echo,
            properties: None,
        };
        let channel = s.channel;
        self.write_frame(channel, &flow, &[]);
    }

    fn write_session_flow(&mut self, sid: SessionId) {
        let s = &self.sessions[&sid];
        let flow = Flow {
            next_incoming_id: Some(s.next_incoming_id),
            incoming_window: s.incoming_window,
            next_outgoing_id: s.next_outgoing_id,
            outgoing_window: u32::MAX,
            ..Default::default()
        };
        let channel = s.channel;
        self.write_frame(channel, &flow, &[]);
    }

    fn on_flow(&mut self, sid: SessionId, f: Flow) -> Result<(), Fatal> {
        let s = self.sessions.get_mut(&sid).expect("session exists");
        // remote-incoming-window = next-incoming-id(flow) + incoming-window(flow)
        //                          - next-outgoing-id(ours)   (spec 2.5.6)
        let base = f.next_incoming_id.unwrap_or(0);
        s.remote_incoming_window = base
            .wrapping_add(f.incoming_window)
            .wrapping_sub(s.next_outgoing_id);
        s.remote_outgoing_window = f.outgoing_window;
        let Some(handle) = f.handle else {
            if f.echo {
                self.write_session_flow(sid);
            }
            self.mark_all_ready(sid);
            return Ok(());
        };
        let Some(id) = self.link_by_remote_handle(sid, handle) else {
            let desc = format!("flow for handle {handle}, which is not attached");
            return self.session_error(sid, condition::UNATTACHED_HANDLE, desc);
        };
        let l = self.links.get_mut(&id).expect("link exists");
        match l.role {
            Role::Sender => {
                // link-credit = delivery-count(flow) + link-credit(flow)
                //               - delivery-count(ours)   (spec 2.6.7)
                let dc = f.delivery_count.unwrap_or(0);
                l.credit = dc
                    .wrapping_add(f.link_credit.unwrap_or(0))
                    .wrapping_sub(l.delivery_count);
                if l.credit > i32::MAX as u32 {
                    l.credit = 0;
                }
                l.drain = f.drain;
                let credit = l.credit;
                self.events.push_back(Event::Credit { link: id, credit });
                self.mark_ready(id);
                self.pump_link(id);
                if !self.finish_drain(id) && f.echo {
                    self.write_link_flow(id, false);
                }
            }
            Role::Receiver => {
                if let Some(dc) = f.delivery_count {
                    let advanced = dc.wrapping_sub(l.delivery_count);
                    l.delivery_count = dc;
                    l.credit = l.credit.saturating_sub(advanced);
                }
                if l.drain && l.credit == 0 {
                    l.drain = false;
                    self.events.push_back(Event::Drained { link: id });
                }
                if f.echo {
                    self.write_link_flow(id, false);
                }
            }
        }
        Ok(())
    }

    // ---- sending ------------------------------------------------------------

    /// Queues `message` (a [`Message`] or already-encoded bytes) on a
    /// sender link; it goes out as soon as there is credit, settled
    /// (`settled`) or not. The outcome comes as [`Event::Outcome`], or
    /// [`Event::Sent`] for settled sends.
    #[allow(clippy::result_large_err)] // the message comes back by value, unboxed
    pub fn send(
        &mut self,
        link: LinkId,
        message: impl Into<Payload>,
        settled: bool,
    ) -> Result<SendId, Payload> {
        let message = message.into();
        let id = SendId(self.next_id());
        let Some(l) = self.links.get_mut(&link) else {
            return Err(message);
        };
        if l.role != Role::Sender || l.state == LinkState::Detaching {
            return Err(message);
        }
        let settled = match l.snd_settle_mode {
            SndSettleMode::Settled => true,
            SndSettleMode::Unsettled => false,
            SndSettleMode::Mixed => settled,
        };
        l.queue.push_back(Queued {
            send: id,
            message,
            settled,
        });
        self.mark_ready(link);
        Ok(id)
    }

    /// Messages queued on a link and not yet sent.
    pub fn queued(&self, link: LinkId) -> usize {
        self.links.get(&link).map_or(0, |l| l.queue.len())
    }

    fn mark_ready(&mut self, link: LinkId) {
        if let Some(l) = self.links.get_mut(&link) {
            if !l.in_ready && l.can_send() {
                l.in_ready = true;
                self.ready.push_back(link);
            }
        }
    }

    fn mark_all_ready(&mut self, sid: SessionId) {
        let ids: Vec<LinkId> = self.sessions[&sid].handles.values().copied().collect();
        for id in ids {
            self.mark_ready(id);
        }
    }

    /// A draining sender with credit left and nothing to send uses the
    /// credit up and tells the receiver (spec 2.6.7). Returns whether it did.
    fn finish_drain(&mut self, id: LinkId) -> bool {
        let Some(l) = self.links.get_mut(&id) else {
            return false;
        };
        if l.role == Role::Sender
            && l.drain
            && l.credit > 0
            && l.current.is_none()
            && l.queue.is_empty()
        {
            l.delivery_count = l.delivery_count.wrapping_add(l.credit);
            l.credit = 0;
            self.write_link_flow(id, false);
            return true;
        }
        false
    }

    /// Writes what the ready links can send.
    fn pump(&mut self) {
        if !self.open_sent || self.close_sent || matches!(self.phase, Phase::Done) {
            return;
        }
        let mut n = self.ready.len();
        while n > 0 {
            n -= 1;
            let Some(id) = self.ready.pop_front() else {
                break;
            };
            if let Some(l) = self.links.get_mut(&id) {
                l.in_ready = false;
            }
            self.pump_link(id);
            self.finish_drain(id);
            // Still able to send (blocked by the session window): stays ready.
            self.mark_ready(id);
        }
    }

    fn pump_link(&mut self, id: LinkId) {
        let max_frame = self.remote_max_frame_size;
        loop {
            let Some(l) = self.links.get_mut(&id) else {
                return;
            };
            if l.state != LinkState::Attached || l.role != Role::Sender {
                return;
            }
            let s = self.sessions.get_mut(&l.session).expect("session exists");
            if s.remote_incoming_window == 0 {
                return;
            }
            if l.current.is_none() {
                if l.credit == 0 {
                    return;
                }
                let Some(q) = l.queue.pop_front() else {
                    return;
                };
                let len = q.message.encoded_len();
                if let Some(max) = l.remote_max_message_size {
                    if len as u64 > max {
                        let error = AmqpError::new(
                            condition::MESSAGE_SIZE_EXCEEDED,
                            format!("message of {len} bytes exceeds the peer's limit of {max}"),
                        );
                        self.events.push_back(Event::Outcome {
                            link: id,
                            send: q.send,
                            state: Some(DeliveryState::Rejected(Rejected { error: Some(error) })),
                            settled: true,
                        });
                        continue;
                    }
                }
                let tag = l.next_tag();
                let delivery_id = s.next_delivery_id;
                s.next_delivery_id = s.next_delivery_id.wrapping_add(1);
                l.delivery_count = l.delivery_count.wrapping_add(1);
                l.credit -= 1;
                let transfer = Transfer {
                    handle: l.handle,
                    delivery_id: Some(delivery_id),
                    delivery_tag: Some(tag.clone()),
                    message_format: Some(0),
                    settled: Some(q.settled),
                    ..Default::default()
                };
                let channel = s.channel;
                let overhead = HEADER_LEN + transfer.encoded_len();
                if overhead + len <= max_frame {
                    // The common case: one frame, the message encoded in place.
                    s.next_outgoing_id = s.next_outgoing_id.wrapping_add(1);
                    s.remote_incoming_window -= 1;
                    tracing::trace!(channel, frame = ?transfer, payload = len, "SEND");
                    write_transfer_in_place(&mut self.output, channel, &transfer, &q.message, len);
                    self.wrote = true;
                    if q.settled {
                        self.events.push_back(Event::Sent {
                            link: id,
                            send: q.send,
                        });
                    } else {
                        let u = Unsettled {
                            link: id,
                            send: q.send,
                            message: q.message,
                        };
                        s.outgoing_unsettled.insert(delivery_id, u);
                    }
                    continue;
                }
                let mut payload = BytesMut::with_capacity(len);
                q.message.encode(&mut payload);
                if !q.settled {
                    let u = Unsettled {
                        link: id,
                        send: q.send,
                        message: q.message,
                    };
                    s.outgoing_unsettled.insert(delivery_id, u);
                }
                l.current = Some(Outgoing {
                    send: q.send,
                    payload: payload.freeze(),
                    offset: 0,
                    delivery_id,
                    tag,
                    settled: q.settled,
                });
            }
            // Multi-frame: write as many frames as the window allows.
            let out = l.current.as_mut().expect("current delivery");
            let first = out.offset == 0;
            let mut transfer = Transfer {
                handle: l.handle,
                ..Default::default()
            };
            if first {
                transfer.delivery_id = Some(out.delivery_id);
                transfer.delivery_tag = Some(out.tag.clone());
                transfer.message_format = Some(0);
                transfer.settled = Some(out.settled);
            }
            transfer.more = true;
            let overhead = HEADER_LEN + transfer.encoded_len();
            let room = max_frame.saturating_sub(overhead).max(1);
            let end = (out.offset + room).min(out.payload.len());
            transfer.more = end < out.payload.len();
            let chunk = out.payload.slice(out.offset..end);
            out.offset = end;
            let done = !transfer.more;
            let (send, settled) = (out.send, out.settled);
            if done {
                l.current = None;
            }
            s.next_outgoing_id = s.next_outgoing_id.wrapping_add(1);
            s.remote_incoming_window -= 1;
            let channel = s.channel;
            self.write_frame(channel, &transfer, &chunk);
            if done && settled {
                self.events.push_back(Event::Sent { link: id, send });
            }
        }
    }

    // ---- receiving ------------------------------------------------------------

    fn on_transfer(&mut self, sid: SessionId, t: Transfer, payload: Bytes) -> Result<(), Fatal> {
        let s = self.sessions.get_mut(&sid).expect("session exists");
        if s.incoming_window == 0 {
            return self.session_error(
                sid,
                condition::WINDOW_VIOLATION,
                "transfer beyond the session's incoming window".into(),
            );
        }
        s.incoming_window -= 1;
        s.next_incoming_id = s.next_incoming_id.wrapping_add(1);
        if s.incoming_window <= s.max_incoming_window / 2 {
            s.incoming_window = s.max_incoming_window;
            self.write_session_flow(sid);
        }
        let s = self.sessions.get_mut(&sid).expect("session exists");
        let Some(id) = s.remote_handles.get(&t.handle).copied() else {
            let desc = format!("transfer on handle {}, which is not attached", t.handle);
            return self.session_error(sid, condition::UNATTACHED_HANDLE, desc);
        };
        let max_size = self.config.max_message_size;
        let Some(l) = self.links.get_mut(&id) else {
            return Ok(()); // a link we detached: drop what is still in flight
        };
        if l.role != Role::Receiver {
            let desc = "transfer on a link where we are the sender".to_string();
            self.link_error(id, condition::NOT_ALLOWED, desc);
            return Ok(());
        }
        if l.state != LinkState::Attached {
            return Ok(()); // detaching: drop what is still in flight
        }
        if l.incoming.is_none() {
            // The first transfer of a delivery.
            let (Some(delivery_id), Some(tag)) = (t.delivery_id, t.delivery_tag.clone()) else {
                let desc = "first transfer without delivery-id or delivery-tag".to_string();
                self.link_error(id, condition::INVALID_FIELD, desc);
                return Ok(());
            };
            if l.credit == 0 {
                // A peer whose transfers crossed our last flow may overshoot
                // (RabbitMQ 3.10 does); tolerate up to the credit we last
                // granted, as Proton does, and no more.
                if l.overshoot >= l.granted.max(1) {
                    let desc = "transfer without link credit".to_string();
                    self.link_error(id, condition::TRANSFER_LIMIT_EXCEEDED, desc);
                    return Ok(());
                }
                tracing::debug!(link = ?id, "transfer beyond link credit tolerated");
                l.overshoot += 1;
            } else {
                l.credit -= 1;
            }
            l.delivery_count = l.delivery_count.wrapping_add(1);
            let settled = t.settled.unwrap_or(false);
            l.incoming = Some(Incoming {
                delivery_id,
                tag,
                settled,
                format: t.message_format.unwrap_or(0),
                first: Bytes::new(),
                rest: None,
                len: 0,
            });
            if !settled {
                s.incoming_unsettled.insert(delivery_id, id);
            }
        }
        let inc = l.incoming.as_mut().expect("incoming delivery");
        if t.settled == Some(true) {
            inc.settled = true;
        }
        if t.aborted {
            let inc = l.incoming.take().expect("incoming delivery");
            self.sessions
                .get_mut(&sid)
                .expect("session exists")
                .incoming_unsettled
                .remove(&inc.delivery_id);
            return Ok(());
        }
        inc.push(payload);
        if inc.len > max_size {
            let desc = format!("message larger than the limit of {max_size} bytes");
            self.link_error(id, condition::MESSAGE_SIZE_EXCEEDED, desc);
            return Ok(());
        }
        if t.more {
            return Ok(());
        }
        let inc = l.incoming.take().expect("incoming delivery");
        if inc.settled {
            self.sessions
                .get_mut(&sid)
                .expect("session exists")
                .incoming_unsettled
                .remove(&inc.delivery_id);
        }
        let delivery = DeliveryId {
            link: id,
            id: inc.delivery_id,
        };
        let (tag, settled, format) = (inc.tag.clone(), inc.settled, inc.format);
        self.events.push_back(Event::Delivery {
            delivery,
            tag,
            settled,
            format,
            payload: inc.finish(),
        });
        if l.drain && l.credit == 0 {
            l.drain = false;
            self.events.push_back(Event::Drained { link: id });
        }
        Ok(())
    }

    /// Settles (or, with `settled` false, updates) an incoming delivery with
    /// `state`. Dispositions are batched into ranges when written.
    pub fn settle(&mut self, delivery: DeliveryId, state: Option<DeliveryState>, settled: bool) {
        let Some(l) = self.links.get(&delivery.link) else {
            return;
        };
        let Some(s) = self.sessions.get_mut(&l.session) else {
            return;
        };
        if settled && s.incoming_unsettled.remove(&delivery.id).is_none() {
            return; // already settled (by us or the peer)
        }
        s.queue_disposition(PendingDisposition {
            role: Role::Receiver,
            first: delivery.id,
            last: delivery.id,
            settled,
            state,
        });
    }

    fn flush_dispositions(&mut self) {
        let mut frames = Vec::new();
        for s in self.sessions.values_mut() {
            if s.dispositions.is_empty() || s.end_sent {
                s.dispositions.clear();
                continue;
            }
            for d in s.dispositions.drain(..) {
                frames.push((s.channel, d));
            }
        }
        for (channel, d) in frames {
            let disp = Disposition {
                role: d.role,
                first: d.first,
                last: (d.last != d.first).then_some(d.last),
                settled: d.settled,
                state: d.state,
                batchable: false,
            };
            self.write_frame(channel, &disp, &[]);
        }
    }

    fn on_disposition(&mut self, sid: SessionId, d: Disposition) -> Result<(), Fatal> {
        let last = d.last.unwrap_or(d.first);
        if last < d.first {
            return self.session_error(
                sid,
                condition::INVALID_FIELD,
                format!("disposition range {}..{} is reversed", d.first, last),
            );
        }
        let s = self.sessions.get_mut(&sid).expect("session exists");
        match d.role {
            // The peer is the receiver: outcomes of our sends.
            Role::Receiver => {
                let ids: Vec<u32> = s
                    .outgoing_unsettled
                    .range(d.first..=last)
                    .map(|(k, _)| *k)
                    .collect();
                for delivery_id in ids {
                    let (link, send) = if d.settled {
                        let u = s.outgoing_unsettled.remove(&delivery_id).expect("present");
                        (u.link, u.send)
                    } else {
                        let u = &s.outgoing_unsettled[&delivery_id];
                        (u.link, u.send)
                    };
                    self.events.push_back(Event::Outcome {
                        link,
                        send,
                        state: d.state.clone(),
                        settled: d.settled,
                    });
                }
                if d.settled {
                    // Settled deliveries need no answer in first mode.
                }
            }
            // The peer is the sender: it settles deliveries it sent us.
            Role::Sender => {
                let ids: Vec<(u32, LinkId)> = s
                    .incoming_unsettled
                    .range(d.first..=last)
                    .map(|(k, v)| (*k, *v))
                    .collect();
                for (delivery_id, link) in ids {
                    if d.settled {
                        s.incoming_unsettled.remove(&delivery_id);
                    }
                    self.events.push_back(Event::RemoteSettled {
                        delivery: DeliveryId {
                            link,
                            id: delivery_id,
                        },
                        state: d.state.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// The name and our attach of a link.
    pub fn link_attach(&self, link: LinkId) -> Option<&Attach> {
        self.links.get(&link).map(|l| &l.attach)
    }

    /// The session a link belongs to.
    pub fn link_session(&self, link: LinkId) -> Option<SessionId> {
        self.links.get(&link).map(|l| l.session)
    }
}

/// Writes a one-frame transfer with the message encoded straight into the
/// output buffer (no intermediate copy).
fn write_transfer_in_place(
    out: &mut BytesMut,
    channel: u16,
    transfer: &Transfer,
    message: &Payload,
    len: usize,
) {
    use bytes::BufMut;
    let size = HEADER_LEN + transfer.encoded_len() + len;
    out.reserve(size);
    out.put_u32(size as u32);
    out.put_slice(&[2, codec::FRAME_TYPE_AMQP]);
    out.put_u16(channel);
    transfer.encode(out);
    message.encode(out);
}

fn decode_fatal(e: DecodeError) -> Fatal {
    use crate::DecodeErrorKind as K;
    let cond = match e.kind() {
        K::InvalidFrame(_) | K::FrameTooLarge { .. } | K::InvalidProtocolHeader(_) => {
            condition::FRAMING_ERROR
        }
        _ => condition::DECODE_ERROR,
    };
    (cond, e.kind().to_string())
}
