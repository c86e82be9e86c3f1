//! Shared parts of the comparison benches: the same message for both
//! libraries, and a counting global allocator (this crate is outside the
//! aqueduct package, so its `unsafe_code = "forbid"` lint does not apply).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

/// The system allocator, counting allocations (alloc and realloc calls).
pub struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to `System` unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Allocations (alloc + realloc) so far, process-wide.
pub fn allocations() -> u64 {
    ALLOCS.load(Ordering::Relaxed)
}

/// Average allocations per call of `f` over `n` calls.
pub fn allocs_per_call(n: u64, mut f: impl FnMut()) -> f64 {
    f(); // warm up: buffers reach their size
    let before = allocations();
    for _ in 0..n {
        f();
    }
    (allocations() - before) as f64 / n as f64
}

/// The message both libraries encode and decode: a 100-byte data body;
/// properties message-id, to, subject, reply-to, content-type,
/// creation-time; application properties kind (string), seq (int), urgent
/// (bool).
pub mod msg {
    pub const ID: &str = "msg-0001-aqueduct-bench";
    pub const TO: &str = "queue/bench";
    pub const SUBJECT: &str = "benchmark";
    pub const REPLY_TO: &str = "queue/replies";
    pub const CONTENT_TYPE: &str = "application/octet-stream";
    pub const CREATION_TIME: i64 = 1_700_000_000_000;
    pub const BODY: [u8; 100] = [0xab; 100];
}

pub mod aq {
    //! The message as an `aqueduct::Message`.
    use super::msg::*;
    use aqueduct::types::Timestamp;
    use aqueduct::Message;
    use bytes::Bytes;

    pub fn message() -> Message {
        Message::builder()
            .id(ID)
            .to(TO)
            .subject(SUBJECT)
            .reply_to(REPLY_TO)
            .content_type(CONTENT_TYPE)
            .creation_time(Timestamp(CREATION_TIME))
            .application_property("kind", "reading")
            .application_property("seq", 42i32)
            .application_property("urgent", true)
            .body(Bytes::from_static(&BODY))
            .build()
    }
}

pub mod fe {
    //! The message as a `fe2o3_amqp_types::messaging::Message`, encoded and
    //! decoded as fe2o3-amqp's links do.
    use super::msg::*;
    use fe2o3_amqp_types::messaging::message::__private::Serializable;
    use fe2o3_amqp_types::messaging::{
        message::DecodeIntoMessage, ApplicationProperties, Body, Data, Message, Properties,
    };
    use fe2o3_amqp_types::primitives::{Binary, SimpleValue, Timestamp, Value};
    use serde::Serialize;
    use serde_amqp::read::SliceReader;
    use serde_amqp::ser::Serializer;

    pub fn message() -> Message<Data> {
        Message::builder()
            .properties(
                Properties::builder()
                    .message_id(ID.to_string())
                    .to(TO)
                    .subject(SUBJECT)
                    .reply_to(REPLY_TO)
                    .content_type(CONTENT_TYPE)
                    .creation_time(Timestamp::from_milliseconds(CREATION_TIME))
                    .build(),
            )
            .application_properties(
                ApplicationProperties::builder()
                    .insert("kind", SimpleValue::String("reading".into()))
                    .insert("seq", SimpleValue::Int(42))
                    .insert("urgent", SimpleValue::Bool(true))
                    .build(),
            )
            .data(Binary::from(BODY.to_vec()))
            .build()
    }

    /// Appends the encoding of `m` to `out` (fe2o3-amqp's sender does the
    /// same into a `BytesMut` writer).
    pub fn encode(m: &Message<Data>, out: &mut Vec<u8>) {
        let mut ser = Serializer::new(out);
        Serializable(m).serialize(&mut ser).unwrap();
    }

    /// Decodes a message with a dynamic body, as `Receiver::recv::<Body<Value>>`.
    pub fn decode(bytes: &[u8]) -> Message<Body<Value>> {
        Body::<Value>::decode_message_from_reader(SliceReader::new(bytes)).unwrap()
    }
}
