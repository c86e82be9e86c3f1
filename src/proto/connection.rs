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
use super::sasl::{SaslClient, SaslServer};
use super::store::Store;
use super::timers::Timers;
use crate::frame::codec::encode_frame;
use crate::frame::*;
use crate::types::{Encode, Symbol};
use crate::DecodeError;
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Where the byte stream is.
#[derive(Debug)]
pub(super) enum Phase {
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
    pub(super) side: Side,
    pub(super) config: Config,
    pub(super) phase: Phase,
    pub(super) decoder: FrameDecoder,
    pub(super) input: BytesMut,
    pub(super) output: BytesMut,
    pub(super) events: VecDeque<Event>,
    pub(super) sasl_client: Option<SaslClient>,
    pub(super) sasl_server: Option<SaslServer>,
    pub(super) sasl_done: bool,
    pub(super) amqp_header_sent: bool,
    pub(super) open_wanted: bool,
    pub(super) open_sent: bool,
    pub(super) close_sent: bool,
    pub(super) remote_open: bool,
    pub(super) remote_closed: bool,
    pub(super) remote_max_frame_size: usize,
    pub(super) remote_channel_max: u16,
    pub(super) remote_idle_timeout: Option<Duration>,
    pub(super) store: Store,
    pub(super) ready: VecDeque<LinkId>,
    pub(super) timers: Timers,
    /// Output was produced since time was last passed in.
    pub(super) wrote: bool,
    /// Frames written before our open (a server answering a pipelined
    /// begin before the application accepted the connection): they go out
    /// right after the open, which must be the first frame (spec 2.4.1).
    pub(super) held: BytesMut,
    /// Transfers received beyond link credit, over the connection's life.
    pub(super) overshoot_total: u64,
    /// Bytes held in partly received deliveries, over all links.
    pub(super) partial_bytes: u64,
    /// The most bytes one [`take_output`](Self::take_output) handed out
    /// since the last [`release_buffers`](Self::release_buffers): a buffer
    /// that carried less is not worth keeping while idle.
    pub(super) output_peak: usize,
    /// Scratch for the delivery ids a disposition names (reused: no
    /// allocation per disposition).
    pub(super) disposition_ids: Vec<u32>,
}

/// The engine keeps an empty output buffer over idle time if an output
/// since the last release was at least this big (a busy connection reuses
/// it rather than growing a new one).
const KEEP_OUTPUT: usize = 8 * 1024;

pub(super) type Fatal = (Symbol, String);

pub(super) fn fatal<T>(condition: Symbol, description: impl Into<String>) -> Result<T, Fatal> {
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
            // Allocated on first use, released by `release_buffers`.
            input: BytesMut::new(),
            output: BytesMut::new(),
            events: VecDeque::new(),
            disposition_ids: Vec::new(),
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
            store: Store::default(),
            ready: VecDeque::new(),
            timers: Timers::new(),
            wrote: false,
            held: BytesMut::new(),
            overshoot_total: 0,
            partial_bytes: 0,
            output_peak: 0,
            config,
        };
        if side == Side::Client {
            match &c.config.sasl {
                Sasl::Client(provider) => {
                    c.sasl_client =
                        Some(SaslClient::new(provider.clone(), c.config.hostname.clone()));
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

    // ---- I/O -----------------------------------------------------------

    /// The buffer to read transport bytes into (then call `handle_input`).
    /// It may have no spare capacity (a new engine, or one that released its
    /// buffers, holds none): reserve room before reading into it.
    pub fn input_buffer(&mut self) -> &mut BytesMut {
        &mut self.input
    }

    /// Frees the input and output buffers while they are empty, so that an
    /// idle connection holds none; they are allocated again when bytes come
    /// or frames are written. The output buffer is kept if an output since
    /// the last call was big (8 KiB or more): a busy sender reuses it. Also
    /// frees the event queue's room if it is empty. Call it when the
    /// transport has nothing to read and nothing is being written.
    pub fn release_buffers(&mut self) {
        if self.input.is_empty() && self.input.capacity() > 0 {
            self.input = BytesMut::new();
        }
        let busy = std::mem::take(&mut self.output_peak) >= KEEP_OUTPUT;
        if self.output.is_empty() && self.output.capacity() > 0 && !busy {
            self.output = BytesMut::new();
        }
        if self.events.is_empty() && self.events.capacity() > 0 {
            self.events = VecDeque::new();
        }
    }

    /// Processes the bytes in the input buffer.
    ///
    /// Only whole frames count as activity for the idle timeout: a peer
    /// trickling a byte at a time is not active.
    pub fn handle_input(&mut self, now: Instant) {
        while let Err((cond, desc)) = self.step_input() {
            self.fail(cond, desc);
        }
        self.pump();
        self.advance(now);
    }

    /// Convenience: appends `data` to the input buffer and processes it.
    pub fn handle_bytes(&mut self, data: &[u8], now: Instant) {
        self.input.extend_from_slice(data);
        self.handle_input(now);
    }

    /// Bytes to write to the transport, if any; all frames queued so far in
    /// one buffer. `now` arms the timers that commands asked for.
    pub fn take_output(&mut self, now: Instant) -> Option<BytesMut> {
        self.pump();
        self.flush_dispositions();
        self.advance(now);
        if self.output.is_empty() {
            None
        } else {
            self.output_peak = self.output_peak.max(self.output.len());
            Some(self.output.split())
        }
    }

    /// How many bytes of output are waiting to be taken: the driver stops
    /// reading and taking commands above its high-water mark.
    pub fn pending_output(&self) -> usize {
        self.output.len()
    }

    /// Transfers the peer sent beyond the link credit we granted (tolerated
    /// within the session's incoming window), over the connection's life.
    pub fn credit_overshoot(&self) -> u64 {
        self.overshoot_total
    }

    /// Whether output is waiting.
    pub fn has_output(&self) -> bool {
        !self.output.is_empty()
            || self
                .store
                .sessions
                .values()
                .any(|s| !s.dispositions.is_empty())
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

    pub(super) fn step_input(&mut self) -> Result<(), Fatal> {
        loop {
            match self.phase {
                Phase::Done => {
                    self.input.clear();
                    return Ok(());
                }
                Phase::Header { expect } => {
                    if self.input.len() < 8 {
                        // Bytes that cannot begin a protocol header fail
                        // now, not when (or if) eight have come.
                        let n = self.input.len().min(4);
                        if self.input[..n] != b"AMQP"[..n] {
                            let got = self.input.to_vec();
                            self.bad_header(expect, &got);
                        }
                        return Ok(());
                    }
                    let mut h = [0u8; 8];
                    h.copy_from_slice(&self.input.split_to(8));
                    let id = match ProtocolId::from_header(h) {
                        Ok(id) => id,
                        Err(_) => {
                            self.bad_header(expect, &h);
                            return Ok(());
                        }
                    };
                    self.timers.received = true;
                    self.on_header(expect, id)?;
                }
                Phase::Sasl | Phase::Amqp => {
                    let frame = match self.decoder.decode(&mut self.input) {
                        Ok(Some(f)) => f,
                        Ok(None) => return Ok(()),
                        Err(e) => return Err(decode_fatal(e)),
                    };
                    self.timers.received = true;
                    self.on_frame(frame)?;
                }
            }
        }
    }

    /// Bytes that are no protocol header: a server answers with a header
    /// it supports (spec 2.2); either side then stops.
    fn bad_header(&mut self, expect: Option<ProtocolId>, got: &[u8]) {
        if expect.is_none() {
            self.answer_with_our_header();
        }
        self.stop(
            condition::FRAMING_ERROR,
            format!("the peer sent an invalid protocol header {got:02x?}"),
        );
    }

    pub(super) fn on_frame(&mut self, frame: Frame) -> Result<(), Fatal> {
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
                    return Ok(()); // nothing may follow the peer's close: ignored
                }
                if self.close_sent && !matches!(performative, Performative::Close(_)) {
                    // After our close, only the peer's close matters (spec 2.4.3).
                    return Ok(());
                }
                if !self.remote_open && !matches!(performative, Performative::Open(_)) {
                    return fatal(condition::ILLEGAL_STATE, "the first frame must be open");
                }
                self.on_performative(channel, performative, payload)
            }
        }
    }

    pub(super) fn fail(&mut self, cond: Symbol, desc: String) {
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
            timeout: false,
        });
    }

    /// Queues a frame. At `trace` level every frame is logged (the
    /// equivalent of Proton's `PN_TRACE_FRM=1`); off, this costs one check.
    pub(super) fn write_frame(
        &mut self,
        channel: u16,
        body: &(impl Encode + std::fmt::Debug),
        payload: &[u8],
    ) {
        tracing::trace!(channel, frame = ?body, payload = payload.len(), "SEND");
        let out = if self.open_sent || !self.amqp_header_sent {
            &mut self.output
        } else {
            &mut self.held
        };
        encode_frame(out, channel, body, payload);
        self.wrote = true;
    }

    pub(super) fn on_performative(
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
                    timeout: false,
                });
                Ok(())
            }
            Performative::Begin(begin) => self.on_begin(channel, begin),
            p => {
                let Some(&sid) = self.store.remote_channels.get(&channel) else {
                    return fatal(
                        condition::FRAMING_ERROR,
                        format!("frame on channel {channel}, which has no session"),
                    );
                };
                let end_sent = self.store.sessions.get(&sid).is_some_and(|s| s.end_sent);
                if end_sent && !matches!(p, Performative::End(_)) {
                    // After our end, only the peer's end matters (spec 2.5.5).
                    return Ok(());
                }
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

    /// The highest session, link or send id given out so far: a
    /// connection that takes over this one's sessions and links passes it
    /// to [`reserve_ids`](Self::reserve_ids).
    pub fn id_watermark(&self) -> u64 {
        self.store.id_watermark()
    }

    /// Gives out only ids above `upto` from now on, so that ids a lost
    /// connection gave out (held by handles and pending sends) never name
    /// anything new here.
    pub fn reserve_ids(&mut self, upto: u64) {
        self.store.reserve_ids(upto);
    }

    /// The name and our attach of a link.
    pub fn link_attach(&self, link: LinkId) -> Option<&Attach> {
        self.store.links.get(&link).map(|l| &l.attach)
    }

    /// The session a link belongs to.
    pub fn link_session(&self, link: LinkId) -> Option<SessionId> {
        self.store.links.get(&link).map(|l| l.session)
    }
}

pub(super) fn decode_fatal(e: DecodeError) -> Fatal {
    use crate::DecodeErrorKind as K;
    let cond = match e.kind() {
        K::InvalidFrame(_) | K::FrameTooLarge { .. } | K::InvalidProtocolHeader(_) => {
            condition::FRAMING_ERROR
        }
        _ => condition::DECODE_ERROR,
    };
    (cond, e.kind().to_string())
}
