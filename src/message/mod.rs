//! Messages (part 3 of the spec, `messaging.bare.xml`, "message-format").
//!
//! A [`Message`] is the sections a transfer carries, in this order: the
//! [`Header`], delivery annotations, message annotations, the
//! [`Properties`], application properties, the [`Body`] and the footer.
//! Every section but the body is optional (`None` is not sent), and the
//! body may be [`Body::Empty`].
//!
//! ```
//! use aqueduct::message::{Body, Message};
//! use std::time::Duration;
//!
//! let msg = Message::builder()
//!     .id(42u64)
//!     .to("queue/a")
//!     .durable(true)
//!     .ttl(Duration::from_secs(60))
//!     .application_property("kind", "greeting")
//!     .body("hello")
//!     .build();
//!
//! let mut buf = bytes::BytesMut::with_capacity(msg.encoded_len());
//! msg.encode(&mut buf);
//! let back = Message::decode(buf.freeze()).unwrap();
//! assert_eq!(back, msg);
//! assert_eq!(back.body().as_str(), Some("hello"));
//! ```
//!
//! Encoding is allocation-free ([`Message::encoded_len`] then
//! [`Message::encode`]); decoding reads the header and properties straight
//! into their structs and borrows data sections from the payload. Depends on
//! [`crate::types`] only.

mod body;
mod builder;
mod codec;
mod sections;

pub use body::Body;
pub use builder::MessageBuilder;
pub use sections::{
    AmqpSequence, AmqpValue, Annotations, ApplicationProperties, Data, DeliveryAnnotations, Footer,
    Header, MessageAnnotations, MessageId, Properties,
};

use crate::types::{Map, Symbol, Timestamp, Value};
use bytes::Bytes;
use std::time::Duration;

/// An AMQP message: its sections, each `None` (the default) when absent.
///
/// Text, bytes and values convert into a message with that body (see
/// [`Body`]); [`Message::builder`] sets any field. The getters report the
/// spec's defaults for absent sections (for example [`priority`] is 4 when
/// there is no header).
///
/// [`priority`]: Message::priority
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Message {
    /// The header section: delivery details for intermediaries. Default: none.
    pub header: Option<Header>,
    /// Delivery annotations, for the next hop only (symbol keys).
    /// Default: none.
    pub delivery_annotations: Option<Annotations>,
    /// Message annotations, for infrastructure along the route (symbol
    /// keys). Default: none.
    pub message_annotations: Option<Annotations>,
    /// The properties section: the standard immutable properties.
    /// Default: none.
    pub properties: Option<Properties>,
    /// Application properties (string keys, simple values). Default: none.
    pub application_properties: Option<Map>,
    /// The body. Default: [`Body::Empty`].
    pub body: Body,
    /// The footer (symbol keys). Default: none.
    pub footer: Option<Annotations>,
}

/// Converts `Duration` to whole milliseconds, saturating at `u32::MAX`.
fn duration_to_millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

impl Message {
    /// A message with the given body and no other sections.
    pub fn new(body: impl Into<Body>) -> Self {
        Message {
            body: body.into(),
            ..Message::default()
        }
    }

    /// A builder for a message, starting from no sections and an empty body.
    pub fn builder() -> MessageBuilder {
        MessageBuilder::new()
    }

    /// The body.
    pub fn body(&self) -> &Body {
        &self.body
    }

    /// The body, mutably.
    pub fn body_mut(&mut self) -> &mut Body {
        &mut self.body
    }

    /// Replaces the body.
    pub fn set_body(&mut self, body: impl Into<Body>) {
        self.body = body.into();
    }

    // ---- properties ----

    fn props(&self) -> Option<&Properties> {
        self.properties.as_ref()
    }

    /// The properties section, created empty if absent.
    pub fn properties_mut(&mut self) -> &mut Properties {
        self.properties.get_or_insert_with(Properties::default)
    }

    /// The header section, created with its defaults if absent.
    pub fn header_mut(&mut self) -> &mut Header {
        self.header.get_or_insert_with(Header::default)
    }

    /// The message id (`properties.message-id`).
    pub fn id(&self) -> Option<&MessageId> {
        self.props()?.message_id.as_ref()
    }

    /// Sets the message id.
    pub fn set_id(&mut self, id: impl Into<MessageId>) {
        self.properties_mut().message_id = Some(id.into());
    }

    /// The user id (`properties.user-id`).
    pub fn user_id(&self) -> Option<&Bytes> {
        self.props()?.user_id.as_ref()
    }

    /// Sets the user id.
    pub fn set_user_id(&mut self, user_id: impl Into<Bytes>) {
        self.properties_mut().user_id = Some(user_id.into());
    }

    /// The destination address (`properties.to`).
    pub fn to(&self) -> Option<&str> {
        self.props()?.to.as_deref()
    }

    /// Sets the destination address.
    pub fn set_to(&mut self, to: impl Into<String>) {
        self.properties_mut().to = Some(to.into());
    }

    /// The subject (`properties.subject`).
    pub fn subject(&self) -> Option<&str> {
        self.props()?.subject.as_deref()
    }

    /// Sets the subject.
    pub fn set_subject(&mut self, subject: impl Into<String>) {
        self.properties_mut().subject = Some(subject.into());
    }

    /// The address replies go to (`properties.reply-to`).
    pub fn reply_to(&self) -> Option<&str> {
        self.props()?.reply_to.as_deref()
    }

    /// Sets the reply-to address.
    pub fn set_reply_to(&mut self, reply_to: impl Into<String>) {
        self.properties_mut().reply_to = Some(reply_to.into());
    }

    /// The correlation id (`properties.correlation-id`).
    pub fn correlation_id(&self) -> Option<&MessageId> {
        self.props()?.correlation_id.as_ref()
    }

    /// Sets the correlation id.
    pub fn set_correlation_id(&mut self, id: impl Into<MessageId>) {
        self.properties_mut().correlation_id = Some(id.into());
    }

    /// The MIME content type (`properties.content-type`).
    pub fn content_type(&self) -> Option<&str> {
        self.props()?.content_type.as_deref()
    }

    /// Sets the content type.
    pub fn set_content_type(&mut self, content_type: impl Into<Symbol>) {
        self.properties_mut().content_type = Some(content_type.into());
    }

    /// The content encoding (`properties.content-encoding`).
    pub fn content_encoding(&self) -> Option<&str> {
        self.props()?.content_encoding.as_deref()
    }

    /// Sets the content encoding.
    pub fn set_content_encoding(&mut self, content_encoding: impl Into<Symbol>) {
        self.properties_mut().content_encoding = Some(content_encoding.into());
    }

    /// The absolute expiry time (`properties.absolute-expiry-time`).
    pub fn absolute_expiry_time(&self) -> Option<Timestamp> {
        self.props()?.absolute_expiry_time
    }

    /// Sets the absolute expiry time.
    pub fn set_absolute_expiry_time(&mut self, t: impl Into<Timestamp>) {
        self.properties_mut().absolute_expiry_time = Some(t.into());
    }

    /// The creation time (`properties.creation-time`).
    pub fn creation_time(&self) -> Option<Timestamp> {
        self.props()?.creation_time
    }

    /// Sets the creation time.
    pub fn set_creation_time(&mut self, t: impl Into<Timestamp>) {
        self.properties_mut().creation_time = Some(t.into());
    }

    /// The group id (`properties.group-id`).
    pub fn group_id(&self) -> Option<&str> {
        self.props()?.group_id.as_deref()
    }

    /// Sets the group id.
    pub fn set_group_id(&mut self, group_id: impl Into<String>) {
        self.properties_mut().group_id = Some(group_id.into());
    }

    /// The position within the group (`properties.group-sequence`).
    pub fn group_sequence(&self) -> Option<u32> {
        self.props()?.group_sequence
    }

    /// Sets the position within the group.
    pub fn set_group_sequence(&mut self, seq: u32) {
        self.properties_mut().group_sequence = Some(seq);
    }

    /// The group replies go to (`properties.reply-to-group-id`).
    pub fn reply_to_group_id(&self) -> Option<&str> {
        self.props()?.reply_to_group_id.as_deref()
    }

    /// Sets the group replies go to.
    pub fn set_reply_to_group_id(&mut self, id: impl Into<String>) {
        self.properties_mut().reply_to_group_id = Some(id.into());
    }

    // ---- header ----

    /// Whether the message is durable (`header.durable`). Default: false.
    pub fn durable(&self) -> bool {
        self.header.as_ref().is_some_and(|h| h.durable)
    }

    /// Sets durability (adds a header unless setting the default).
    pub fn set_durable(&mut self, durable: bool) {
        if durable || self.header.is_some() {
            self.header_mut().durable = durable;
        }
    }

    /// The priority (`header.priority`), 0 to 9. Default: 4.
    pub fn priority(&self) -> u8 {
        self.header.as_ref().map_or(4, |h| h.priority)
    }

    /// Sets the priority (adds a header unless setting the default).
    pub fn set_priority(&mut self, priority: u8) {
        if priority != 4 || self.header.is_some() {
            self.header_mut().priority = priority;
        }
    }

    /// The time to live (`header.ttl`). Default: none (no expiry).
    pub fn ttl(&self) -> Option<Duration> {
        let ms = self.header.as_ref()?.ttl?;
        Some(Duration::from_millis(ms.into()))
    }

    /// Sets or clears the time to live, in whole milliseconds (saturating at
    /// `u32::MAX` ms).
    pub fn set_ttl(&mut self, ttl: impl Into<Option<Duration>>) {
        let ttl = ttl.into().map(duration_to_millis);
        if ttl.is_some() || self.header.is_some() {
            self.header_mut().ttl = ttl;
        }
    }

    /// Whether no earlier acquirer has seen the message
    /// (`header.first-acquirer`). Default: false.
    pub fn first_acquirer(&self) -> bool {
        self.header.as_ref().is_some_and(|h| h.first_acquirer)
    }

    /// Sets `first-acquirer` (adds a header unless setting the default).
    pub fn set_first_acquirer(&mut self, first: bool) {
        if first || self.header.is_some() {
            self.header_mut().first_acquirer = first;
        }
    }

    /// Earlier failed delivery attempts (`header.delivery-count`).
    /// Default: 0.
    pub fn delivery_count(&self) -> u32 {
        self.header.as_ref().map_or(0, |h| h.delivery_count)
    }

    /// Sets the delivery count (adds a header unless setting the default).
    pub fn set_delivery_count(&mut self, count: u32) {
        if count != 0 || self.header.is_some() {
            self.header_mut().delivery_count = count;
        }
    }

    // ---- maps ----

    /// The application property `key`.
    pub fn application_property(&self, key: &str) -> Option<&Value> {
        self.application_properties.as_ref()?.get_str(key)
    }

    /// Sets the application property `key` (a string key), replacing any
    /// previous value.
    pub fn set_application_property(&mut self, key: impl Into<String>, value: impl Into<Value>) {
        self.application_properties
            .get_or_insert_with(Map::new)
            .insert(Value::String(key.into()), value);
    }

    /// The message annotation `key`.
    pub fn message_annotation(&self, key: &str) -> Option<&Value> {
        self.message_annotations.as_ref()?.get_str(key)
    }

    /// Sets the message annotation `key` (a symbol key), replacing any
    /// previous value.
    pub fn set_message_annotation(&mut self, key: impl Into<Symbol>, value: impl Into<Value>) {
        self.message_annotations
            .get_or_insert_with(Map::new)
            .insert(Value::Symbol(key.into()), value);
    }

    /// The delivery annotation `key`.
    pub fn delivery_annotation(&self, key: &str) -> Option<&Value> {
        self.delivery_annotations.as_ref()?.get_str(key)
    }

    /// Sets the delivery annotation `key` (a symbol key), replacing any
    /// previous value.
    pub fn set_delivery_annotation(&mut self, key: impl Into<Symbol>, value: impl Into<Value>) {
        self.delivery_annotations
            .get_or_insert_with(Map::new)
            .insert(Value::Symbol(key.into()), value);
    }

    /// The footer entry `key`.
    pub fn footer_entry(&self, key: &str) -> Option<&Value> {
        self.footer.as_ref()?.get_str(key)
    }

    /// Sets the footer entry `key` (a symbol key), replacing any previous
    /// value.
    pub fn set_footer_entry(&mut self, key: impl Into<Symbol>, value: impl Into<Value>) {
        self.footer
            .get_or_insert_with(Map::new)
            .insert(Value::Symbol(key.into()), value);
    }
}

macro_rules! message_from {
    ($($t:ty),* $(,)?) => {$(
        impl From<$t> for Message {
            /// A message with this body (see the matching `From` for [`Body`]).
            fn from(v: $t) -> Self {
                Message::new(v)
            }
        }
    )*};
}

message_from!(
    &str,
    String,
    Vec<u8>,
    Bytes,
    &'static [u8],
    Value,
    Map,
    Body
);

#[cfg(test)]
mod tests;
