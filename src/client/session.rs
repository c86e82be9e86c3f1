//! Sessions: a connection's ordered channels, each with its own links.

use super::connection::Connection;
use super::driver::Command;
use super::link_options::{ReceiverOptions, SenderOptions};
use super::receiver::Receiver;
use super::sender::Sender;
use crate::error::Error;
use crate::frame::AmqpError;
use crate::proto::SessionId;
use crate::types::Symbol;

/// A session of a connection. Links opened on it share its ordering and
/// flow control. Dropping it does not end it; [`Session::end`] does.
#[derive(Clone, Debug)]
pub struct Session {
    conn: Connection,
    id: SessionId,
}

impl Session {
    pub(crate) fn new(conn: Connection, id: SessionId) -> Self {
        Session { conn, id }
    }

    /// The connection this session belongs to.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Opens a sender to `address` on this session.
    pub async fn open_sender(&self, address: impl Into<String>) -> Result<Sender, Error> {
        self.open_sender_with(SenderOptions::new(address)).await
    }

    /// Opens a sender with options on this session.
    pub async fn open_sender_with(&self, options: SenderOptions) -> Result<Sender, Error> {
        self.conn.attach_sender(Some(self.id), options).await
    }

    /// Opens a receiver from `address` on this session.
    pub async fn open_receiver(&self, address: impl Into<String>) -> Result<Receiver, Error> {
        self.open_receiver_with(ReceiverOptions::new(address)).await
    }

    /// Opens a receiver with options on this session.
    pub async fn open_receiver_with(&self, options: ReceiverOptions) -> Result<Receiver, Error> {
        self.conn.attach_receiver(Some(self.id), options).await
    }

    /// Ends the session (its links are detached by the peer's end).
    pub fn end(&self) -> Result<(), Error> {
        self.conn.send_command(Command::End {
            session: self.id,
            error: None,
        })
    }

    /// Ends the session with an error condition and description.
    pub fn end_with_error(
        &self,
        condition: impl Into<Symbol>,
        description: impl Into<String>,
    ) -> Result<(), Error> {
        self.conn.send_command(Command::End {
            session: self.id,
            error: Some(Box::new(AmqpError::new(condition, description))),
        })
    }
}
