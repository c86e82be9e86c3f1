//! Links the peer attaches: inspect, then accept as a [`Sender`] or
//! [`Receiver`], or refuse with an error.

use super::connection::Connection;
use super::driver::Command;
use super::link_options::{ReceiverOptions, SenderOptions};
use super::receiver::Receiver;
use super::sender::Sender;
use crate::error::Error;
use crate::frame::{AmqpError, Attach, RcvSettleMode, Role, SndSettleMode, Source, Target};
use crate::proto::LinkId;
use crate::types::Symbol;
use tokio::sync::mpsc;

/// A link the peer attached, waiting for an answer.
///
/// Dropping it unanswered refuses the link with `amqp:not-allowed`.
#[derive(Debug)]
pub struct IncomingLink {
    conn: Connection,
    link: LinkId,
    attach: Box<Attach>,
    answered: bool,
}

impl IncomingLink {
    pub(crate) fn new(conn: Connection, link: LinkId, attach: Box<Attach>) -> Self {
        IncomingLink {
            conn,
            link,
            attach,
            answered: false,
        }
    }

    /// The peer's attach: name, role, source, target, settle modes,
    /// capabilities and properties.
    pub fn attach(&self) -> &Attach {
        &self.attach
    }

    /// The link name.
    pub fn name(&self) -> &str {
        &self.attach.name
    }

    /// Whether the peer sends on this link (we would be the receiver).
    pub fn is_sender(&self) -> bool {
        self.attach.role == Role::Sender
    }

    /// The peer's source.
    pub fn source(&self) -> Option<&Source> {
        self.attach.source.as_ref()
    }

    /// The peer's target (absent for a coordinator).
    pub fn target(&self) -> Option<&Target> {
        self.attach.target.as_ref().and_then(|t| t.as_target())
    }

    /// The address the link names: the target's for a peer that sends, the
    /// source's for one that receives.
    pub fn address(&self) -> Option<&str> {
        if self.is_sender() {
            self.target().and_then(|t| t.address.as_deref())
        } else {
            self.source().and_then(|s| s.address.as_deref())
        }
    }

    /// Whether the peer asks us to create a dynamic node.
    pub fn is_dynamic(&self) -> bool {
        if self.is_sender() {
            self.target().is_some_and(|t| t.dynamic)
        } else {
            self.source().is_some_and(|s| s.dynamic)
        }
    }

    /// The connection.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Accepts a link on which the peer receives: we are its [`Sender`].
    /// `address` (if given) is set as the source address, for example the
    /// one assigned to a dynamic node.
    pub fn accept_sender(mut self, address: Option<String>) -> Result<Sender, Error> {
        self.answered = true;
        let mut source = self.attach.source.clone().unwrap_or_default();
        if let Some(a) = address {
            source.address = Some(a);
        }
        let attach = Attach {
            source: Some(source),
            target: self.attach.target.clone(),
            snd_settle_mode: self.attach.snd_settle_mode,
            rcv_settle_mode: self.attach.rcv_settle_mode,
            ..Default::default()
        };
        let mut remote = self.attach.clone();
        remote.source = attach.source.clone();
        // The channel only reports the link's detach (a sender receives nothing).
        let (tx, rx) = mpsc::unbounded_channel();
        let (credit_tx, credit_rx) = tokio::sync::watch::channel(0);
        self.conn.send_command(Command::AcceptLink {
            link: self.link,
            attach: Box::new(attach),
            sink: Some(tx),
            credit: 0,
            credit_watch: Some(credit_tx),
        })?;
        let settled = self.attach.snd_settle_mode == SndSettleMode::Settled;
        let mut options = SenderOptions::default();
        if settled {
            options = options.delivery_mode(super::link_options::DeliveryMode::AtMostOnce);
        }
        let max = self.conn.defaults().max_in_flight;
        Ok(Sender::new(
            self.conn.clone(),
            self.link,
            remote,
            options,
            max,
            rx,
            credit_rx,
        ))
    }

    /// Accepts a link on which the peer sends: we are its [`Receiver`],
    /// with the credit window and auto-accept of `options` (its address
    /// settings are ignored; `address`, if given, is set as the target
    /// address).
    pub fn accept_receiver(
        mut self,
        address: Option<String>,
        options: ReceiverOptions,
    ) -> Result<Receiver, Error> {
        self.answered = true;
        let mut target = self.target().cloned().unwrap_or_default();
        if let Some(a) = address {
            target.address = Some(a);
        }
        let attach = Attach {
            source: self.attach.source.clone(),
            target: Some(target.clone().into()),
            snd_settle_mode: self.attach.snd_settle_mode,
            rcv_settle_mode: RcvSettleMode::First,
            ..Default::default()
        };
        let mut window = options.credit(self.conn.defaults());
        let (tx, rx) = mpsc::unbounded_channel();
        self.conn.send_command(Command::AcceptLink {
            link: self.link,
            attach: Box::new(attach),
            sink: Some(tx),
            credit: window.initial(),
            credit_watch: None,
        })?;
        let mut remote = self.attach.clone();
        remote.target = Some(target.into());
        Ok(Receiver::new(
            self.conn.clone(),
            self.link,
            remote,
            rx,
            window,
            options.auto_accept,
            options.dedupe,
        ))
    }

    /// Refuses the link: the peer sees a detach with this error.
    pub fn refuse(mut self, condition: impl Into<Symbol>, description: impl Into<String>) {
        self.answered = true;
        let _ = self.conn.send_command(Command::RefuseLink {
            link: self.link,
            error: Box::new(AmqpError::new(condition, description)),
        });
    }
}

impl Drop for IncomingLink {
    fn drop(&mut self) {
        if !self.answered {
            let _ = self.conn.send_command(Command::RefuseLink {
                link: self.link,
                error: Box::new(AmqpError::new(
                    crate::frame::condition::NOT_ALLOWED,
                    "the link was not accepted",
                )),
            });
        }
    }
}
