//! [`MessageBuilder`]: builds a [`Message`] field by field.

use super::{Body, Message, MessageId};
use crate::types::{Symbol, Timestamp, Value};
use bytes::Bytes;
use std::time::Duration;

/// Builds a [`Message`]; every setter takes and returns the builder.
///
/// Fields not set stay absent (sections are created only when one of their
/// fields is set) and the body stays [`Body::Empty`].
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct MessageBuilder {
    msg: Message,
}

impl MessageBuilder {
    /// A builder for a message with no sections and an empty body.
    pub fn new() -> Self {
        Self::default()
    }

    /// The message.
    pub fn build(self) -> Message {
        self.msg
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Body>) -> Self {
        self.msg.body = body.into();
        self
    }

    /// Sets `properties.message-id`.
    pub fn id(mut self, id: impl Into<MessageId>) -> Self {
        self.msg.set_id(id);
        self
    }

    /// Sets `properties.user-id`.
    pub fn user_id(mut self, user_id: impl Into<Bytes>) -> Self {
        self.msg.set_user_id(user_id);
        self
    }

    /// Sets `properties.to`.
    pub fn to(mut self, to: impl Into<String>) -> Self {
        self.msg.set_to(to);
        self
    }

    /// Sets `properties.subject`.
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.msg.set_subject(subject);
        self
    }

    /// Sets `properties.reply-to`.
    pub fn reply_to(mut self, reply_to: impl Into<String>) -> Self {
        self.msg.set_reply_to(reply_to);
        self
    }

    /// Sets `properties.correlation-id`.
    pub fn correlation_id(mut self, id: impl Into<MessageId>) -> Self {
        self.msg.set_correlation_id(id);
        self
    }

    /// Sets `properties.content-type`.
    pub fn content_type(mut self, content_type: impl Into<Symbol>) -> Self {
        self.msg.set_content_type(content_type);
        self
    }

    /// Sets `properties.content-encoding`.
    pub fn content_encoding(mut self, content_encoding: impl Into<Symbol>) -> Self {
        self.msg.set_content_encoding(content_encoding);
        self
    }

    /// Sets `properties.absolute-expiry-time`.
    pub fn absolute_expiry_time(mut self, t: impl Into<Timestamp>) -> Self {
        self.msg.set_absolute_expiry_time(t);
        self
    }

    /// Sets `properties.creation-time`.
    pub fn creation_time(mut self, t: impl Into<Timestamp>) -> Self {
        self.msg.set_creation_time(t);
        self
    }

    /// Sets `properties.group-id`.
    pub fn group_id(mut self, group_id: impl Into<String>) -> Self {
        self.msg.set_group_id(group_id);
        self
    }

    /// Sets `properties.group-sequence`.
    pub fn group_sequence(mut self, seq: u32) -> Self {
        self.msg.set_group_sequence(seq);
        self
    }

    /// Sets `properties.reply-to-group-id`.
    pub fn reply_to_group_id(mut self, id: impl Into<String>) -> Self {
        self.msg.set_reply_to_group_id(id);
        self
    }

    /// Sets `header.durable` (default: false).
    pub fn durable(mut self, durable: bool) -> Self {
        self.msg.set_durable(durable);
        self
    }

    /// Sets `header.priority` (default: 4).
    pub fn priority(mut self, priority: u8) -> Self {
        self.msg.set_priority(priority);
        self
    }

    /// Sets `header.ttl`, in whole milliseconds saturating at `u32::MAX`
    /// (default: none).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.msg.set_ttl(ttl);
        self
    }

    /// Sets `header.first-acquirer` (default: false).
    pub fn first_acquirer(mut self, first: bool) -> Self {
        self.msg.set_first_acquirer(first);
        self
    }

    /// Sets `header.delivery-count` (default: 0).
    pub fn delivery_count(mut self, count: u32) -> Self {
        self.msg.set_delivery_count(count);
        self
    }

    /// Sets the application property `key`.
    pub fn application_property(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.msg.set_application_property(key, value);
        self
    }

    /// Sets the message annotation `key`.
    pub fn message_annotation(mut self, key: impl Into<Symbol>, value: impl Into<Value>) -> Self {
        self.msg.set_message_annotation(key, value);
        self
    }

    /// Sets the delivery annotation `key`.
    pub fn delivery_annotation(mut self, key: impl Into<Symbol>, value: impl Into<Value>) -> Self {
        self.msg.set_delivery_annotation(key, value);
        self
    }

    /// Sets the footer entry `key`.
    pub fn footer(mut self, key: impl Into<Symbol>, value: impl Into<Value>) -> Self {
        self.msg.set_footer_entry(key, value);
        self
    }
}
