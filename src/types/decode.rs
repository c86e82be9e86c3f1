//! Decoding: the [`Decoder`] cursor and the [`Decode`] trait.
//!
//! Decoding is total. Every read checks the bytes are there first; a length
//! or count is trusted only after the bytes it promises are known to be in
//! the buffer, so no allocation is sized by an untrusted field; compounds
//! nest at most [`Limits::max_depth`] deep. Binary values borrow from the
//! input `Bytes` instead of copying.
//!
//! Every decode also has an allocation budget proportional to its input;
//! see [`Limits`].

use super::codes::*;
use super::value::{Array, Described, Descriptor, Map, Symbol, Timestamp, Uuid, Value};
use crate::error::{DecodeError, DecodeErrorKind};
use bytes::{Buf, Bytes};

/// Bounds a decoder enforces on untrusted input.
///
/// # Memory
///
/// Valid AMQP can still cost far more memory than its encoding: a list of
/// nulls is one byte per item on the wire and a whole [`Value`] (56 bytes on
/// 64-bit targets) decoded. So every decode has an allocation budget
/// proportional to its input, [`Limits::alloc_ratio`] times the input length
/// plus [`Limits::alloc_floor`] (by default 16 x input + 64 KiB), and fails
/// with [`DecodeErrorKind::AllocationLimit`] before an allocation would
/// exceed it. What is counted: the item slots of every list, map and array
/// (counted in full before the `Vec` is allocated), each boxed described
/// value, the text of strings and symbols, and (in
/// [`Message::decode`](crate::Message::decode)) the body's list of data or
/// amqp-sequence sections. Scalars and binaries (which borrow from the
/// input) cost nothing. The check is one subtraction per compound or string,
/// none per scalar.
///
/// Counts are checked against the bytes left for them before anything is
/// allocated: a list or map item takes at least one byte, an array element
/// at least the width of its constructor. Array elements of a zero-width
/// constructor (`null`, `true`, `false`, `uint0`, `ulong0`, `list0`) take no
/// bytes at all, so such an array must end right after its constructor, and
/// its count is bounded by the budget alone: at most (16 x input + 64 KiB) /
/// 56 elements by default. (A bound relative to the input length would not
/// do: the canonical encoding of such an array is a few bytes whatever its
/// count, so it would refuse our own encodings.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Deepest nesting of lists, maps, arrays and described values.
    /// Default: 64.
    pub max_depth: u32,
    /// Largest size field accepted for a single value, in bytes.
    /// Default: 256 MiB.
    pub max_size: usize,
    /// Bytes of decoded memory allowed per byte of input: one decode may
    /// allocate at most `alloc_ratio * input length + alloc_floor` bytes
    /// (see [Memory](Limits#memory) for what is counted), and fails
    /// with [`DecodeErrorKind::AllocationLimit`] beyond. Default: 16.
    pub alloc_ratio: usize,
    /// Bytes of decoded memory always allowed, whatever the input length,
    /// so that small inputs of small values decode. Default: 64 KiB.
    pub alloc_floor: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 64,
            max_size: 256 * 1024 * 1024,
            alloc_ratio: 16,
            alloc_floor: 64 * 1024,
        }
    }
}

impl Limits {
    /// The allocation budget of one decode of `input_len` bytes:
    /// `alloc_ratio * input_len + alloc_floor` (saturating).
    pub fn alloc_budget(&self, input_len: usize) -> usize {
        self.alloc_ratio
            .saturating_mul(input_len)
            .saturating_add(self.alloc_floor)
    }
}

/// A cursor over AMQP-encoded bytes.
///
/// The decoder reads a window `pos..end` of one shared `Bytes`. Compounds
/// (lists, maps, arrays, composites) are decoded in place by narrowing the
/// window to the compound's size and widening it again once every item has
/// been read, so nesting costs no reference-count traffic; only binary values
/// take a (zero-copy) slice of the input.
#[derive(Clone, Debug)]
pub struct Decoder {
    buf: Bytes,
    /// Next byte to read. Invariant: `pos <= end <= buf.len()`.
    pos: usize,
    /// End of the current window (the innermost compound being read).
    end: usize,
    limits: Limits,
    depth: u32,
    /// Bytes this decode may still allocate (see the module docs).
    budget: usize,
}

type Result<T> = std::result::Result<T, DecodeError>;

fn err<T>(kind: DecodeErrorKind) -> Result<T> {
    Err(DecodeError::new(kind))
}

/// Where the enclosing window ends, saved while a compound is read in place.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Outer(usize);

impl Decoder {
    /// A decoder over `buf` with the default [`Limits`].
    pub fn new(buf: Bytes) -> Self {
        Self::with_limits(buf, Limits::default())
    }

    /// A decoder over `buf` with the given limits.
    pub fn with_limits(buf: Bytes, limits: Limits) -> Self {
        let end = buf.len();
        Decoder {
            buf,
            pos: 0,
            end,
            limits,
            depth: 0,
            budget: limits.alloc_budget(end),
        }
    }

    /// Takes `bytes` from the allocation budget, or fails with
    /// [`DecodeErrorKind::AllocationLimit`] if they are not left.
    #[inline]
    pub(crate) fn charge(&mut self, bytes: usize) -> Result<()> {
        match self.budget.checked_sub(bytes) {
            Some(left) => {
                self.budget = left;
                Ok(())
            }
            None => self.over_budget(),
        }
    }

    #[cold]
    #[inline(never)]
    fn over_budget(&self) -> Result<()> {
        err(DecodeErrorKind::AllocationLimit {
            limit: self.limits.alloc_budget(self.buf.len()),
        })
    }

    /// Charges the budget for `n` items of type `T`.
    #[inline]
    fn charge_items<T>(&mut self, n: usize) -> Result<()> {
        self.charge(n.saturating_mul(std::mem::size_of::<T>()))
    }

    /// Bytes not yet read.
    #[inline]
    pub fn remaining(&self) -> usize {
        self.end - self.pos
    }

    /// Whether every byte has been read.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.pos == self.end
    }

    /// The bytes not yet read, consuming the decoder.
    pub fn into_rest(self) -> Bytes {
        let mut b = self.buf;
        b.truncate(self.end);
        b.advance(self.pos);
        b
    }

    /// The bytes not yet read.
    pub fn rest(&self) -> &[u8] {
        &self.buf[self.pos..self.end]
    }

    /// Fails with [`DecodeErrorKind::TrailingBytes`] unless every byte has
    /// been read.
    pub fn finish(&self) -> Result<()> {
        if self.is_empty() {
            Ok(())
        } else {
            err(DecodeErrorKind::TrailingBytes(self.remaining()))
        }
    }

    /// The next byte, without consuming it.
    #[inline]
    pub fn peek_u8(&self) -> Result<u8> {
        if self.pos < self.end {
            if let Some(&b) = self.buf.get(self.pos) {
                return Ok(b);
            }
        }
        err(DecodeErrorKind::Truncated)
    }

    /// The next `n` bytes, consumed, borrowed from the input.
    #[inline]
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        if n > self.remaining() {
            return err(DecodeErrorKind::Truncated);
        }
        let start = self.pos;
        self.pos += n;
        match self.buf.get(start..self.pos) {
            Some(s) => Ok(s),
            None => err(DecodeErrorKind::Truncated),
        }
    }

    #[inline]
    pub(crate) fn read_array<const N: usize>(&mut self) -> Result<[u8; N]> {
        match <[u8; N]>::try_from(self.take(N)?) {
            Ok(a) => Ok(a),
            Err(_) => err(DecodeErrorKind::Truncated),
        }
    }

    #[inline]
    pub(crate) fn read_u8(&mut self) -> Result<u8> {
        let b = self.peek_u8()?;
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    pub(crate) fn read_u16(&mut self) -> Result<u16> {
        self.read_array().map(u16::from_be_bytes)
    }

    #[inline]
    pub(crate) fn read_u32(&mut self) -> Result<u32> {
        self.read_array().map(u32::from_be_bytes)
    }

    #[inline]
    pub(crate) fn read_u64(&mut self) -> Result<u64> {
        self.read_array().map(u64::from_be_bytes)
    }

    fn check_size(&self, n: usize) -> Result<()> {
        if n > self.limits.max_size {
            return err(DecodeErrorKind::TooLarge {
                size: n,
                limit: self.limits.max_size,
            });
        }
        Ok(())
    }

    /// Takes the next `n` bytes without copying.
    pub(crate) fn read_bytes(&mut self, n: usize) -> Result<Bytes> {
        self.check_size(n)?;
        if n > self.remaining() {
            return err(DecodeErrorKind::Truncated);
        }
        let start = self.pos;
        self.pos += n;
        Ok(self.buf.slice(start..self.pos))
    }

    /// Skips the next `n` bytes.
    pub(crate) fn skip(&mut self, n: usize) -> Result<()> {
        self.check_size(n)?;
        self.take(n).map(drop)
    }

    /// Reads the next `n` bytes (a string or symbol's), size-checked.
    #[inline]
    fn read_sized(&mut self, n: usize) -> Result<&[u8]> {
        self.check_size(n)?;
        self.take(n)
    }

    /// Narrows the window to the next `size` bytes, one level deeper, and
    /// returns what [`leave`](Self::leave) needs to widen it again.
    fn enter_window(&mut self, size: usize) -> Result<Outer> {
        self.check_size(size)?;
        if size > self.remaining() {
            return err(DecodeErrorKind::Truncated);
        }
        let outer = Outer(self.end);
        self.end = self.pos + size;
        self.enter()?;
        Ok(outer)
    }

    /// Leaves a compound entered with [`enter_window`](Self::enter_window):
    /// fails unless all its bytes have been read.
    pub(crate) fn leave(&mut self, outer: Outer) -> Result<()> {
        self.finish()?;
        self.end = outer.0;
        self.depth -= 1;
        Ok(())
    }

    fn enter(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > self.limits.max_depth {
            return err(DecodeErrorKind::TooDeep(self.limits.max_depth));
        }
        Ok(())
    }

    /// Reads a variable-width size for `code8`/`code32` constructors.
    #[inline]
    fn read_var_len(&mut self, code: u8, code8: u8) -> Result<usize> {
        if code == code8 {
            Ok(self.read_u8()? as usize)
        } else {
            Ok(self.read_u32()? as usize)
        }
    }

    /// Decodes a value of type `T`.
    pub fn read<T: Decode>(&mut self) -> Result<T> {
        T::decode(self)
    }

    /// Decodes any value.
    pub fn read_value(&mut self) -> Result<Value> {
        let code = self.read_u8()?;
        if code == DESCRIBED {
            self.enter()?;
            let descriptor = self.read_descriptor_body()?;
            let value = self.read_value()?;
            self.depth -= 1;
            self.charge(std::mem::size_of::<Described>())?;
            return Ok(Value::Described(Box::new(Described { descriptor, value })));
        }
        self.read_body(code)
    }

    /// Skips one value (of any type) without building it.
    pub fn skip_value(&mut self) -> Result<()> {
        let code = self.read_u8()?;
        if code == DESCRIBED {
            self.enter()?;
            self.read_descriptor_body()?;
            self.skip_value()?;
            self.depth -= 1;
            return Ok(());
        }
        if let Some(w) = fixed_width(code) {
            return self.skip(w);
        }
        let n = match code {
            VBIN8 | STR8 | SYM8 | LIST8 | MAP8 | ARRAY8 => self.read_u8()? as usize,
            VBIN32 | STR32 | SYM32 | LIST32 | MAP32 | ARRAY32 => self.read_u32()? as usize,
            c => return err(DecodeErrorKind::InvalidConstructor(c)),
        };
        self.skip(n)
    }

    /// If the next value is described, reads and returns its descriptor;
    /// else returns `None` and reads nothing.
    pub fn read_descriptor(&mut self) -> Result<Option<Descriptor>> {
        if self.peek_u8()? != DESCRIBED {
            return Ok(None);
        }
        self.read_u8()?;
        self.read_descriptor_body().map(Some)
    }

    fn read_descriptor_body(&mut self) -> Result<Descriptor> {
        let code = self.read_u8()?;
        match code {
            ULONG0 | SMALLULONG | ULONG => Ok(Descriptor::Code(self.read_ulong_body(code)?)),
            SYM8 | SYM32 => Ok(Descriptor::Symbol(self.read_symbol_body(code)?)),
            c => err(DecodeErrorKind::InvalidDescriptor(c)),
        }
    }

    fn read_ulong_body(&mut self, code: u8) -> Result<u64> {
        match code {
            ULONG0 => Ok(0),
            SMALLULONG => Ok(self.read_u8()? as u64),
            _ => self.read_u64(),
        }
    }

    fn read_uint_body(&mut self, code: u8) -> Result<u32> {
        match code {
            UINT0 => Ok(0),
            SMALLUINT => Ok(self.read_u8()? as u32),
            _ => self.read_u32(),
        }
    }

    fn read_string_body(&mut self, code: u8) -> Result<String> {
        let n = self.read_var_len(code, STR8)?;
        self.check_size(n)?;
        if n > self.remaining() {
            return err(DecodeErrorKind::Truncated);
        }
        self.charge(n)?;
        match std::str::from_utf8(self.take(n)?) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => err(DecodeErrorKind::InvalidUtf8),
        }
    }

    fn read_symbol_body(&mut self, code: u8) -> Result<Symbol> {
        let n = self.read_var_len(code, SYM8)?;
        let start = self.pos;
        let b = self.read_sized(n)?;
        if !b.is_ascii() {
            return err(DecodeErrorKind::InvalidSymbol);
        }
        // ASCII is UTF-8.
        if let Some(s) = std::str::from_utf8(b).ok().and_then(well_known_symbol) {
            return Ok(Symbol::from_static(s));
        }
        self.charge(n)?;
        match self.buf.get(start..self.pos).map(std::str::from_utf8) {
            Some(Ok(s)) => Ok(Symbol::from(s.to_owned())),
            _ => err(DecodeErrorKind::InvalidSymbol),
        }
    }

    /// Reads a compound's size and count and narrows the window to exactly
    /// its items, one level deeper; the caller reads them and then calls
    /// [`leave`](Self::leave) with the returned [`Outer`].
    fn read_compound(&mut self, code: u8, code8: u8) -> Result<(Outer, usize)> {
        let (size, count_len) = if code == code8 {
            (self.read_u8()? as usize, 1)
        } else {
            (self.read_u32()? as usize, 4)
        };
        if size < count_len {
            return err(DecodeErrorKind::InvalidLength);
        }
        let outer = self.enter_window(size)?;
        let count = if count_len == 1 {
            self.read_u8()? as usize
        } else {
            self.read_u32()? as usize
        };
        Ok((outer, count))
    }

    /// Decodes the body of a value whose constructor was `code`.
    fn read_body(&mut self, code: u8) -> Result<Value> {
        Ok(match code {
            NULL => Value::Null,
            TRUE => Value::Boolean(true),
            FALSE => Value::Boolean(false),
            BOOLEAN => match self.read_u8()? {
                0 => Value::Boolean(false),
                1 => Value::Boolean(true),
                _ => return err(DecodeErrorKind::InvalidValue("boolean")),
            },
            UBYTE => Value::Ubyte(self.read_u8()?),
            USHORT => Value::Ushort(self.read_u16()?),
            UINT0 | SMALLUINT | UINT => Value::Uint(self.read_uint_body(code)?),
            ULONG0 | SMALLULONG | ULONG => Value::Ulong(self.read_ulong_body(code)?),
            BYTE => Value::Byte(self.read_u8()? as i8),
            SHORT => Value::Short(self.read_u16()? as i16),
            SMALLINT => Value::Int(self.read_u8()? as i8 as i32),
            INT => Value::Int(self.read_u32()? as i32),
            SMALLLONG => Value::Long(self.read_u8()? as i8 as i64),
            LONG => Value::Long(self.read_u64()? as i64),
            FLOAT => Value::Float(f32::from_bits(self.read_u32()?)),
            DOUBLE => Value::Double(f64::from_bits(self.read_u64()?)),
            DECIMAL32 => Value::Decimal32(self.read_array()?),
            DECIMAL64 => Value::Decimal64(self.read_array()?),
            DECIMAL128 => Value::Decimal128(self.read_array()?),
            CHAR => match char::from_u32(self.read_u32()?) {
                Some(c) => Value::Char(c),
                None => return err(DecodeErrorKind::InvalidValue("char")),
            },
            TIMESTAMP => Value::Timestamp(Timestamp(self.read_u64()? as i64)),
            UUID => Value::Uuid(Uuid(self.read_array()?)),
            VBIN8 | VBIN32 => {
                let n = self.read_var_len(code, VBIN8)?;
                Value::Binary(self.read_bytes(n)?)
            }
            STR8 | STR32 => Value::String(self.read_string_body(code)?),
            SYM8 | SYM32 => Value::Symbol(self.read_symbol_body(code)?),
            LIST0 => Value::List(Vec::new()),
            LIST8 | LIST32 => {
                let (outer, count) = self.read_compound(code, LIST8)?;
                // Every item takes at least one byte.
                if count > self.remaining() {
                    return err(DecodeErrorKind::InvalidLength);
                }
                self.charge_items::<Value>(count)?;
                let mut items = Vec::with_capacity(count);
                for _ in 0..count {
                    items.push(self.read_value()?);
                }
                self.leave(outer)?;
                Value::List(items)
            }
            MAP8 | MAP32 => {
                let (outer, count) = self.read_compound(code, MAP8)?;
                if count % 2 != 0 || count > self.remaining() {
                    return err(DecodeErrorKind::InvalidLength);
                }
                self.charge_items::<(Value, Value)>(count / 2)?;
                let mut entries = Vec::with_capacity(count / 2);
                for _ in 0..count / 2 {
                    let k = self.read_value()?;
                    let v = self.read_value()?;
                    entries.push((k, v));
                }
                self.leave(outer)?;
                Value::Map(Map(entries))
            }
            ARRAY8 | ARRAY32 => {
                let (outer, count) = self.read_compound(code, ARRAY8)?;
                let array = self.read_array_body(count)?;
                self.leave(outer)?;
                Value::Array(array)
            }
            c => return err(DecodeErrorKind::InvalidConstructor(c)),
        })
    }

    fn read_array_body(&mut self, count: usize) -> Result<Array> {
        let descriptor = self.read_descriptor()?;
        let code = self.read_u8()?;
        if code == DESCRIBED {
            return err(DecodeErrorKind::InvalidConstructor(code));
        }
        // The count is trusted only as far as the bytes left can hold that
        // many elements (see the module docs).
        let fits = match min_width(code) {
            // Zero-width elements: nothing may follow the constructor; the
            // allocation budget bounds the count.
            Some(0) => self.is_empty(),
            Some(w) => count <= self.remaining() / w,
            // Not a constructor: an error at the first element, if any.
            None => true,
        };
        if !fits {
            return err(DecodeErrorKind::InvalidLength);
        }
        self.charge_items::<Value>(count)?;
        let mut items = Vec::with_capacity(count);
        for _ in 0..count {
            items.push(self.read_body(code)?);
        }
        Ok(Array {
            descriptor,
            code: normalize_code(code),
            items,
        })
    }
}

/// Declares `well_known_symbol`, which maps a symbol's text to the same text
/// with a static lifetime if it is one of `$s`.
macro_rules! well_known_symbols {
    ($($s:literal),* $(,)?) => {
        /// The static copy of `s` if it is a symbol peers send often, so
        /// that decoding it does not allocate.
        fn well_known_symbol(s: &str) -> Option<&'static str> {
            match s {
                $( $s => Some($s), )*
                _ => None,
            }
        }
    };
}

well_known_symbols! {
    // Content types and encodings (properties).
    "application/octet-stream",
    "application/json",
    "text/plain",
    "text/plain;charset=utf-8",
    "application/x-java-serialized-object",
    "gzip",
    // Message annotations set by common brokers and clients.
    "x-opt-jms-msg-type",
    "x-opt-jms-dest",
    "x-opt-jms-reply-to",
    "x-opt-to",
    "x-opt-delivery-time",
    "x-opt-delivery-delay",
    "x-opt-enqueued-time",
    "x-opt-sequence-number",
    "x-opt-offset",
    "x-opt-partition-key",
    "x-opt-locked-until",
    "x-opt-scheduled-enqueue-time",
    "x-opt-routing-key",
    // SASL mechanisms.
    "PLAIN",
    "ANONYMOUS",
    "EXTERNAL",
    "SCRAM-SHA-1",
    "SCRAM-SHA-256",
    "SCRAM-SHA-512",
    // Capabilities and terminus properties.
    "ANONYMOUS-RELAY",
    "DELAYED_DELIVERY",
    "SHARED-SUBS",
    "sole-connection-for-container",
    "queue",
    "topic",
    "shared",
    "global",
    "product",
    "version",
    "platform",
    // Error conditions (spec 2.8.15 - 2.8.18).
    "amqp:internal-error",
    "amqp:not-found",
    "amqp:unauthorized-access",
    "amqp:decode-error",
    "amqp:resource-limit-exceeded",
    "amqp:not-allowed",
    "amqp:invalid-field",
    "amqp:not-implemented",
    "amqp:resource-locked",
    "amqp:precondition-failed",
    "amqp:resource-deleted",
    "amqp:illegal-state",
    "amqp:frame-size-too-small",
    "amqp:connection:forced",
    "amqp:connection:framing-error",
    "amqp:connection:redirect",
    "amqp:session:window-violation",
    "amqp:session:errant-link",
    "amqp:session:handle-in-use",
    "amqp:session:unattached-handle",
    "amqp:link:detach-forced",
    "amqp:link:transfer-limit-exceeded",
    "amqp:link:message-size-exceeded",
    "amqp:link:redirect",
    "amqp:link:stolen",
}

/// The fewest bytes the body of a value with constructor `code` takes (0 for
/// the zero-width constructors), or `None` if `code` is not a constructor.
fn min_width(code: u8) -> Option<usize> {
    match code {
        VBIN8 | STR8 | SYM8 => Some(1),
        VBIN32 | STR32 | SYM32 => Some(4),
        // A size and a count.
        LIST8 | MAP8 | ARRAY8 => Some(2),
        LIST32 | MAP32 | ARRAY32 => Some(8),
        c => fixed_width(c),
    }
}

/// The widest format code of the type that `code` encodes.
pub(crate) fn normalize_code(code: u8) -> u8 {
    match code {
        TRUE | FALSE => BOOLEAN,
        UINT0 | SMALLUINT => UINT,
        ULONG0 | SMALLULONG => ULONG,
        SMALLINT => INT,
        SMALLLONG => LONG,
        VBIN8 => VBIN32,
        STR8 => STR32,
        SYM8 => SYM32,
        LIST0 | LIST8 => LIST32,
        MAP8 => MAP32,
        ARRAY8 => ARRAY32,
        c => c,
    }
}

/// A list's header: how many items follow. The decoder's window is narrowed
/// to exactly the items until [`end`](Self::end) is called.
#[derive(Debug)]
pub(crate) struct ListHeader {
    pub(crate) count: usize,
    /// `None` for `list0`, which has no window to leave.
    outer: Option<Outer>,
}

impl ListHeader {
    /// Ends the list: fails unless every byte of its items has been read,
    /// and widens the decoder's window back to the enclosing one.
    pub(crate) fn end(self, d: &mut Decoder) -> Result<()> {
        match self.outer {
            Some(outer) => d.leave(outer),
            None => Ok(()),
        }
    }
}

/// Reads a list constructor and header (list0, list8 or list32). The items
/// are then read from `d` itself, and [`ListHeader::end`] closes the list.
pub(crate) fn decode_list_header(d: &mut Decoder) -> Result<ListHeader> {
    let code = d.read_u8()?;
    match code {
        LIST0 => Ok(ListHeader {
            count: 0,
            outer: None,
        }),
        LIST8 | LIST32 => {
            let (outer, count) = d.read_compound(code, LIST8)?;
            if count > d.remaining() {
                return err(DecodeErrorKind::InvalidLength);
            }
            Ok(ListHeader {
                count,
                outer: Some(outer),
            })
        }
        c => err(DecodeErrorKind::UnexpectedType {
            expected: "list",
            found: c,
        }),
    }
}

/// A type that can be decoded from its AMQP encoding.
pub trait Decode: Sized {
    /// Decodes one value of this type.
    fn decode(d: &mut Decoder) -> Result<Self>;

    /// The value a `null` stands for, if this type has one (used for
    /// omitted trailing fields and `Option`).
    fn from_null() -> Option<Self> {
        None
    }
}

/// Reads a value that may be `null`: `None` for null.
impl<T: Decode> Decode for Option<T> {
    fn decode(d: &mut Decoder) -> Result<Self> {
        if d.peek_u8()? == NULL {
            d.read_u8()?;
            Ok(None)
        } else {
            T::decode(d).map(Some)
        }
    }
    fn from_null() -> Option<Self> {
        Some(None)
    }
}

fn unexpected<T>(expected: &'static str, found: u8) -> Result<T> {
    err(DecodeErrorKind::UnexpectedType { expected, found })
}

impl Decode for Value {
    fn decode(d: &mut Decoder) -> Result<Self> {
        d.read_value()
    }
    fn from_null() -> Option<Self> {
        Some(Value::Null)
    }
}

impl Decode for bool {
    fn decode(d: &mut Decoder) -> Result<Self> {
        match d.read_u8()? {
            TRUE => Ok(true),
            FALSE => Ok(false),
            BOOLEAN => match d.read_u8()? {
                0 => Ok(false),
                1 => Ok(true),
                _ => err(DecodeErrorKind::InvalidValue("boolean")),
            },
            c => unexpected("boolean", c),
        }
    }
}

impl Decode for u8 {
    fn decode(d: &mut Decoder) -> Result<Self> {
        match d.read_u8()? {
            UBYTE => d.read_u8(),
            c => unexpected("ubyte", c),
        }
    }
}

impl Decode for u16 {
    fn decode(d: &mut Decoder) -> Result<Self> {
        match d.read_u8()? {
            USHORT => d.read_u16(),
            c => unexpected("ushort", c),
        }
    }
}

impl Decode for u32 {
    fn decode(d: &mut Decoder) -> Result<Self> {
        match d.read_u8()? {
            c @ (UINT0 | SMALLUINT | UINT) => d.read_uint_body(c),
            c => unexpected("uint", c),
        }
    }
}

impl Decode for u64 {
    fn decode(d: &mut Decoder) -> Result<Self> {
        match d.read_u8()? {
            c @ (ULONG0 | SMALLULONG | ULONG) => d.read_ulong_body(c),
            c => unexpected("ulong", c),
        }
    }
}

impl Decode for i32 {
    fn decode(d: &mut Decoder) -> Result<Self> {
        match d.read_u8()? {
            SMALLINT => Ok(d.read_u8()? as i8 as i32),
            INT => Ok(d.read_u32()? as i32),
            c => unexpected("int", c),
        }
    }
}

impl Decode for i64 {
    fn decode(d: &mut Decoder) -> Result<Self> {
        match d.read_u8()? {
            SMALLLONG => Ok(d.read_u8()? as i8 as i64),
            LONG => Ok(d.read_u64()? as i64),
            c => unexpected("long", c),
        }
    }
}

impl Decode for f64 {
    fn decode(d: &mut Decoder) -> Result<Self> {
        match d.read_u8()? {
            DOUBLE => Ok(f64::from_bits(d.read_u64()?)),
            c => unexpected("double", c),
        }
    }
}

impl Decode for Timestamp {
    fn decode(d: &mut Decoder) -> Result<Self> {
        match d.read_u8()? {
            TIMESTAMP => Ok(Timestamp(d.read_u64()? as i64)),
            c => unexpected("timestamp", c),
        }
    }
}

impl Decode for Bytes {
    fn decode(d: &mut Decoder) -> Result<Self> {
        match d.read_u8()? {
            c @ (VBIN8 | VBIN32) => {
                let n = d.read_var_len(c, VBIN8)?;
                d.read_bytes(n)
            }
            c => unexpected("binary", c),
        }
    }
}

impl Decode for String {
    fn decode(d: &mut Decoder) -> Result<Self> {
        match d.read_u8()? {
            c @ (STR8 | STR32) => d.read_string_body(c),
            c => unexpected("string", c),
        }
    }
}

impl Decode for Symbol {
    fn decode(d: &mut Decoder) -> Result<Self> {
        match d.read_u8()? {
            c @ (SYM8 | SYM32) => d.read_symbol_body(c),
            c => unexpected("symbol", c),
        }
    }
}

impl Decode for Map {
    fn decode(d: &mut Decoder) -> Result<Self> {
        match d.peek_u8()? {
            MAP8 | MAP32 => match d.read_value()? {
                Value::Map(m) => Ok(m),
                _ => unexpected("map", MAP8),
            },
            c => unexpected("map", c),
        }
    }
}

impl Decode for Array {
    fn decode(d: &mut Decoder) -> Result<Self> {
        match d.peek_u8()? {
            ARRAY8 | ARRAY32 => match d.read_value()? {
                Value::Array(a) => Ok(a),
                _ => unexpected("array", ARRAY8),
            },
            c => unexpected("array", c),
        }
    }
}

impl Decode for Described {
    fn decode(d: &mut Decoder) -> Result<Self> {
        match d.peek_u8()? {
            DESCRIBED => match d.read_value()? {
                Value::Described(b) => Ok(*b),
                _ => unexpected("described", DESCRIBED),
            },
            c => unexpected("described", c),
        }
    }
}

/// A `multiple` symbol field (spec 1.4 "multiple"): a single symbol or an
/// array of them, both decoded into a `Vec`.
impl Decode for Vec<Symbol> {
    fn decode(d: &mut Decoder) -> Result<Self> {
        match d.peek_u8()? {
            ARRAY8 | ARRAY32 => {
                let a = Array::decode(d)?;
                a.items
                    .into_iter()
                    .map(|v| match v {
                        Value::Symbol(s) => Ok(s),
                        _ => unexpected("symbol", a.code),
                    })
                    .collect()
            }
            _ => Ok(vec![Symbol::decode(d)?]),
        }
    }
}

impl<T: Decode> Decode for Box<T> {
    fn decode(d: &mut Decoder) -> Result<Self> {
        T::decode(d).map(Box::new)
    }
}
