//! Encoding: the [`Encode`] trait and the smallest-form encoders.
//!
//! Encoding is two cheap passes: `encoded_len` sizes a value (so that the
//! compound constructors can choose their 8- or 32-bit forms), then `encode`
//! writes it. Both are allocation-free; `encode` into a reused `BytesMut`
//! never allocates once the buffer has grown to size.

use super::codes::*;
use super::value::{Array, Described, Descriptor, Map, Symbol, Timestamp, Uuid, Value};
use bytes::{BufMut, Bytes};

/// A type with an AMQP encoding.
pub trait Encode {
    /// The number of bytes `encode` writes.
    fn encoded_len(&self) -> usize;
    /// Writes the encoding into `buf`.
    fn encode(&self, buf: &mut impl BufMut);

    /// Whether this encodes as `null` (used to omit trailing list fields).
    fn is_null(&self) -> bool {
        false
    }
}

impl<T: Encode + ?Sized> Encode for &T {
    fn encoded_len(&self) -> usize {
        (**self).encoded_len()
    }
    fn encode(&self, buf: &mut impl BufMut) {
        (**self).encode(buf)
    }
    fn is_null(&self) -> bool {
        (**self).is_null()
    }
}

impl<T: Encode> Encode for Option<T> {
    fn encoded_len(&self) -> usize {
        self.as_ref().map_or(1, Encode::encoded_len)
    }
    fn encode(&self, buf: &mut impl BufMut) {
        match self {
            Some(v) => v.encode(buf),
            None => buf.put_u8(NULL),
        }
    }
    fn is_null(&self) -> bool {
        self.as_ref().is_none_or(Encode::is_null)
    }
}

impl<T: Encode + ?Sized> Encode for Box<T> {
    fn encoded_len(&self) -> usize {
        (**self).encoded_len()
    }
    fn encode(&self, buf: &mut impl BufMut) {
        (**self).encode(buf)
    }
    fn is_null(&self) -> bool {
        (**self).is_null()
    }
}

impl Encode for () {
    fn encoded_len(&self) -> usize {
        1
    }
    fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(NULL)
    }
    fn is_null(&self) -> bool {
        true
    }
}

impl Encode for bool {
    fn encoded_len(&self) -> usize {
        1
    }
    fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(if *self { TRUE } else { FALSE })
    }
}

macro_rules! fixed {
    ($t:ty, $code:expr, $put:ident) => {
        impl Encode for $t {
            fn encoded_len(&self) -> usize {
                1 + std::mem::size_of::<$t>()
            }
            fn encode(&self, buf: &mut impl BufMut) {
                buf.put_u8($code);
                buf.$put(*self);
            }
        }
    };
}

fixed!(u8, UBYTE, put_u8);
fixed!(u16, USHORT, put_u16);
fixed!(i8, BYTE, put_i8);
fixed!(i16, SHORT, put_i16);
fixed!(f32, FLOAT, put_f32);
fixed!(f64, DOUBLE, put_f64);

impl Encode for u32 {
    fn encoded_len(&self) -> usize {
        match *self {
            0 => 1,
            1..=255 => 2,
            _ => 5,
        }
    }
    fn encode(&self, buf: &mut impl BufMut) {
        match *self {
            0 => buf.put_u8(UINT0),
            v @ 1..=255 => buf.put_slice(&[SMALLUINT, v as u8]),
            v => {
                buf.put_u8(UINT);
                buf.put_u32(v)
            }
        }
    }
}

impl Encode for u64 {
    fn encoded_len(&self) -> usize {
        match *self {
            0 => 1,
            1..=255 => 2,
            _ => 9,
        }
    }
    fn encode(&self, buf: &mut impl BufMut) {
        match *self {
            0 => buf.put_u8(ULONG0),
            v @ 1..=255 => buf.put_slice(&[SMALLULONG, v as u8]),
            v => {
                buf.put_u8(ULONG);
                buf.put_u64(v)
            }
        }
    }
}

impl Encode for i32 {
    fn encoded_len(&self) -> usize {
        if i8::try_from(*self).is_ok() {
            2
        } else {
            5
        }
    }
    fn encode(&self, buf: &mut impl BufMut) {
        match i8::try_from(*self) {
            Ok(v) => buf.put_slice(&[SMALLINT, v as u8]),
            Err(_) => {
                buf.put_u8(INT);
                buf.put_i32(*self)
            }
        }
    }
}

impl Encode for i64 {
    fn encoded_len(&self) -> usize {
        if i8::try_from(*self).is_ok() {
            2
        } else {
            9
        }
    }
    fn encode(&self, buf: &mut impl BufMut) {
        match i8::try_from(*self) {
            Ok(v) => buf.put_slice(&[SMALLLONG, v as u8]),
            Err(_) => {
                buf.put_u8(LONG);
                buf.put_i64(*self)
            }
        }
    }
}

impl Encode for char {
    fn encoded_len(&self) -> usize {
        5
    }
    fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(CHAR);
        buf.put_u32(*self as u32)
    }
}

impl Encode for Timestamp {
    fn encoded_len(&self) -> usize {
        9
    }
    fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(TIMESTAMP);
        buf.put_i64(self.0)
    }
}

impl Encode for Uuid {
    fn encoded_len(&self) -> usize {
        17
    }
    fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(UUID);
        buf.put_slice(&self.0)
    }
}

/// Length of a variable-width value (binary, string, symbol) of `n` bytes.
pub(crate) const fn variable_len(n: usize) -> usize {
    if n <= 255 {
        2 + n
    } else {
        5 + n
    }
}

/// Writes a variable-width value with the 8-bit `code8` or 32-bit `code32`
/// constructor.
pub(crate) fn encode_variable(buf: &mut impl BufMut, code8: u8, code32: u8, data: &[u8]) {
    if data.len() <= 255 {
        buf.put_u8(code8);
        buf.put_u8(data.len() as u8);
    } else {
        buf.put_u8(code32);
        buf.put_u32(data.len() as u32);
    }
    buf.put_slice(data);
}

impl Encode for Bytes {
    fn encoded_len(&self) -> usize {
        variable_len(self.len())
    }
    fn encode(&self, buf: &mut impl BufMut) {
        encode_variable(buf, VBIN8, VBIN32, self)
    }
}

impl Encode for str {
    fn encoded_len(&self) -> usize {
        variable_len(self.len())
    }
    fn encode(&self, buf: &mut impl BufMut) {
        encode_variable(buf, STR8, STR32, self.as_bytes())
    }
}

impl Encode for String {
    fn encoded_len(&self) -> usize {
        variable_len(self.len())
    }
    fn encode(&self, buf: &mut impl BufMut) {
        encode_variable(buf, STR8, STR32, self.as_bytes())
    }
}

impl Encode for Symbol {
    fn encoded_len(&self) -> usize {
        variable_len(self.len())
    }
    fn encode(&self, buf: &mut impl BufMut) {
        encode_variable(buf, SYM8, SYM32, self.as_bytes())
    }
}

/// The size of a list/map header for `count` items taking `size` bytes.
pub(crate) const fn list_header_len(count: usize, size: usize) -> usize {
    if count == 0 {
        1
    } else {
        compound_header_len(count, size)
    }
}

/// Writes a list header (list0, list8 or list32) for `count` items taking
/// `size` bytes of encoding.
pub(crate) fn encode_list_header(buf: &mut impl BufMut, count: usize, size: usize) {
    if count == 0 {
        buf.put_u8(LIST0);
    } else {
        encode_compound_header(buf, LIST8, LIST32, count, size);
    }
}

/// The size of a compound (list, map, array) header: the 8-bit form when
/// both `count` and the `size` of what follows fit, else the 32-bit form.
const fn compound_header_len(count: usize, size: usize) -> usize {
    if size < 255 && count <= 255 {
        3
    } else {
        9
    }
}

/// Writes a compound header with the 8-bit (`code8`) or 32-bit (`code32`)
/// constructor, whichever [`compound_header_len`] chose.
fn encode_compound_header(buf: &mut impl BufMut, code8: u8, code32: u8, count: usize, size: usize) {
    if size < 255 && count <= 255 {
        buf.put_slice(&[code8, (size + 1) as u8, count as u8]);
    } else {
        buf.put_u8(code32);
        buf.put_u32((size + 4) as u32);
        buf.put_u32(count as u32);
    }
}

impl Encode for [Value] {
    fn encoded_len(&self) -> usize {
        let size = list_content_len(self);
        list_header_len(self.len(), size) + size
    }
    fn encode(&self, buf: &mut impl BufMut) {
        let size = list_content_len(self);
        encode_list_header(buf, self.len(), size);
        for v in self {
            v.encode(buf);
        }
    }
}

impl Encode for Vec<Value> {
    fn encoded_len(&self) -> usize {
        self.as_slice().encoded_len()
    }
    fn encode(&self, buf: &mut impl BufMut) {
        self.as_slice().encode(buf)
    }
}

fn list_content_len<T: Encode>(items: &[T]) -> usize {
    items.iter().map(Encode::encoded_len).sum()
}

fn map_content_len(m: &Map) -> usize {
    m.0.iter()
        .map(|(k, v)| k.encoded_len() + v.encoded_len())
        .sum()
}

impl Encode for Map {
    fn encoded_len(&self) -> usize {
        let size = map_content_len(self);
        compound_header_len(self.0.len() * 2, size) + size
    }
    fn encode(&self, buf: &mut impl BufMut) {
        let size = map_content_len(self);
        encode_compound_header(buf, MAP8, MAP32, self.0.len() * 2, size);
        for (k, v) in &self.0 {
            k.encode(buf);
            v.encode(buf);
        }
    }
}

impl Encode for Descriptor {
    fn encoded_len(&self) -> usize {
        1 + match self {
            Descriptor::Code(c) => c.encoded_len(),
            Descriptor::Symbol(s) => s.encoded_len(),
        }
    }
    fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(DESCRIBED);
        match self {
            Descriptor::Code(c) => c.encode(buf),
            Descriptor::Symbol(s) => s.encode(buf),
        }
    }
}

impl Encode for Described {
    fn encoded_len(&self) -> usize {
        self.descriptor.encoded_len() + self.value.encoded_len()
    }
    fn encode(&self, buf: &mut impl BufMut) {
        self.descriptor.encode(buf);
        self.value.encode(buf);
    }
}

// ---- arrays ---------------------------------------------------------------

/// The element constructor an array uses and the width of its elements.
///
/// Fixed types use their full-width code (an array can't mix `smalluint` and
/// `uint`); variable and compound types use their 8-bit form when every
/// element fits, else the 32-bit form.
fn array_element_code(a: &Array) -> u8 {
    let small = |limit: usize| {
        a.items.iter().all(|v| match v {
            Value::Binary(b) => b.len() <= limit,
            Value::String(s) => s.len() <= limit,
            Value::Symbol(s) => s.len() <= limit,
            Value::List(l) => l.len() <= limit && list_content_len(l) < limit,
            Value::Map(m) => m.len() * 2 <= limit && map_content_len(m) < limit,
            Value::Array(x) => x.items.len() <= limit && array_body_len(x) < limit,
            _ => true,
        })
    };
    match a.code {
        VBIN8 | VBIN32 => pick(small(255), VBIN8, VBIN32),
        STR8 | STR32 => pick(small(255), STR8, STR32),
        SYM8 | SYM32 => pick(small(255), SYM8, SYM32),
        LIST0 | LIST8 | LIST32 => pick(small(255), LIST8, LIST32),
        MAP8 | MAP32 => pick(small(255), MAP8, MAP32),
        ARRAY8 | ARRAY32 => pick(small(255), ARRAY8, ARRAY32),
        TRUE | FALSE | BOOLEAN => BOOLEAN,
        UINT0 | SMALLUINT | UINT => UINT,
        ULONG0 | SMALLULONG | ULONG => ULONG,
        SMALLINT | INT => INT,
        SMALLLONG | LONG => LONG,
        c => c,
    }
}

fn pick(small: bool, a: u8, b: u8) -> u8 {
    if small {
        a
    } else {
        b
    }
}

/// Bytes an element takes inside an array after its shared constructor.
fn element_body_len(v: &Value, code: u8) -> usize {
    match (v, code) {
        (Value::Boolean(_), _) => 1,
        (Value::Uint(_), _) | (Value::Int(_), _) => 4,
        (Value::Ulong(_), _) | (Value::Long(_), _) => 8,
        (Value::Binary(b), VBIN8) => 1 + b.len(),
        (Value::String(s), STR8) => 1 + s.len(),
        (Value::Symbol(s), SYM8) => 1 + s.len(),
        (Value::Binary(b), _) => 4 + b.len(),
        (Value::String(s), _) => 4 + s.len(),
        (Value::Symbol(s), _) => 4 + s.len(),
        (Value::List(items), c) => {
            let size = list_content_len(items);
            if c == LIST8 {
                2 + size
            } else {
                8 + size
            }
        }
        (Value::Map(m), c) => {
            let size = map_content_len(m);
            if c == MAP8 {
                2 + size
            } else {
                8 + size
            }
        }
        (Value::Array(inner), c) => {
            let body = array_body_len(inner);
            if c == ARRAY8 {
                2 + body
            } else {
                8 + body
            }
        }
        (Value::Described(d), _) => d.value.encoded_len(),
        (other, _) => other.encoded_len().saturating_sub(1),
    }
}

/// The bytes after an array's size/count: the element constructor and bodies.
fn array_body_len(a: &Array) -> usize {
    let code = array_element_code(a);
    let ctor = a.descriptor.as_ref().map_or(0, Encode::encoded_len) + 1;
    ctor + a
        .items
        .iter()
        .map(|v| element_body_len(v, code))
        .sum::<usize>()
}

fn encode_element(v: &Value, code: u8, buf: &mut impl BufMut) {
    match v {
        Value::Boolean(b) => buf.put_u8(*b as u8),
        Value::Uint(x) => buf.put_u32(*x),
        Value::Int(x) => buf.put_i32(*x),
        Value::Ulong(x) => buf.put_u64(*x),
        Value::Long(x) => buf.put_i64(*x),
        Value::Binary(b) => put_variable_body(buf, code == VBIN8, b),
        Value::String(s) => put_variable_body(buf, code == STR8, s.as_bytes()),
        Value::Symbol(s) => put_variable_body(buf, code == SYM8, s.as_bytes()),
        Value::List(items) => {
            let size = list_content_len(items);
            if code == LIST8 {
                buf.put_slice(&[(size + 1) as u8, items.len() as u8]);
            } else {
                buf.put_u32((size + 4) as u32);
                buf.put_u32(items.len() as u32);
            }
            for i in items {
                i.encode(buf);
            }
        }
        Value::Map(m) => {
            let size = map_content_len(m);
            if code == MAP8 {
                buf.put_slice(&[(size + 1) as u8, (m.len() * 2) as u8]);
            } else {
                buf.put_u32((size + 4) as u32);
                buf.put_u32((m.len() * 2) as u32);
            }
            for (k, v) in &m.0 {
                k.encode(buf);
                v.encode(buf);
            }
        }
        Value::Array(inner) => {
            let body = array_body_len(inner);
            if code == ARRAY8 {
                buf.put_slice(&[(body + 1) as u8, inner.items.len() as u8]);
            } else {
                buf.put_u32((body + 4) as u32);
                buf.put_u32(inner.items.len() as u32);
            }
            encode_array_body(inner, buf);
        }
        Value::Described(d) => encode_element(&d.value, code, buf),
        other => {
            // Fixed-width types whose smallest form is their only form: write
            // the value and drop its one-byte constructor.
            let mut tmp = [0u8; 17];
            let mut slice = &mut tmp[..];
            other.encode(&mut slice);
            let n = other.encoded_len();
            buf.put_slice(&tmp[1..n]);
        }
    }
}

fn put_variable_body(buf: &mut impl BufMut, small: bool, data: &[u8]) {
    if small {
        buf.put_u8(data.len() as u8);
    } else {
        buf.put_u32(data.len() as u32);
    }
    buf.put_slice(data);
}

fn encode_array_body(a: &Array, buf: &mut impl BufMut) {
    let code = array_element_code(a);
    if let Some(d) = &a.descriptor {
        d.encode(buf);
    }
    buf.put_u8(code);
    for v in &a.items {
        encode_element(v, code, buf);
    }
}

impl Encode for Array {
    fn encoded_len(&self) -> usize {
        let body = array_body_len(self);
        compound_header_len(self.items.len(), body) + body
    }
    fn encode(&self, buf: &mut impl BufMut) {
        let body = array_body_len(self);
        encode_compound_header(buf, ARRAY8, ARRAY32, self.items.len(), body);
        encode_array_body(self, buf);
    }
}

impl Encode for Value {
    fn encoded_len(&self) -> usize {
        match self {
            Value::Null => 1,
            Value::Boolean(v) => v.encoded_len(),
            Value::Ubyte(v) => v.encoded_len(),
            Value::Ushort(v) => v.encoded_len(),
            Value::Uint(v) => v.encoded_len(),
            Value::Ulong(v) => v.encoded_len(),
            Value::Byte(v) => v.encoded_len(),
            Value::Short(v) => v.encoded_len(),
            Value::Int(v) => v.encoded_len(),
            Value::Long(v) => v.encoded_len(),
            Value::Float(v) => v.encoded_len(),
            Value::Double(v) => v.encoded_len(),
            Value::Decimal32(_) => 5,
            Value::Decimal64(_) => 9,
            Value::Decimal128(_) => 17,
            Value::Char(v) => v.encoded_len(),
            Value::Timestamp(v) => v.encoded_len(),
            Value::Uuid(v) => v.encoded_len(),
            Value::Binary(v) => v.encoded_len(),
            Value::String(v) => v.encoded_len(),
            Value::Symbol(v) => v.encoded_len(),
            Value::List(v) => v.encoded_len(),
            Value::Map(v) => v.encoded_len(),
            Value::Array(v) => v.encoded_len(),
            Value::Described(v) => v.encoded_len(),
        }
    }

    fn encode(&self, buf: &mut impl BufMut) {
        match self {
            Value::Null => buf.put_u8(NULL),
            Value::Boolean(v) => v.encode(buf),
            Value::Ubyte(v) => v.encode(buf),
            Value::Ushort(v) => v.encode(buf),
            Value::Uint(v) => v.encode(buf),
            Value::Ulong(v) => v.encode(buf),
            Value::Byte(v) => v.encode(buf),
            Value::Short(v) => v.encode(buf),
            Value::Int(v) => v.encode(buf),
            Value::Long(v) => v.encode(buf),
            Value::Float(v) => v.encode(buf),
            Value::Double(v) => v.encode(buf),
            Value::Decimal32(v) => {
                buf.put_u8(DECIMAL32);
                buf.put_slice(v)
            }
            Value::Decimal64(v) => {
                buf.put_u8(DECIMAL64);
                buf.put_slice(v)
            }
            Value::Decimal128(v) => {
                buf.put_u8(DECIMAL128);
                buf.put_slice(v)
            }
            Value::Char(v) => v.encode(buf),
            Value::Timestamp(v) => v.encode(buf),
            Value::Uuid(v) => v.encode(buf),
            Value::Binary(v) => v.encode(buf),
            Value::String(v) => v.encode(buf),
            Value::Symbol(v) => v.encode(buf),
            Value::List(v) => v.encode(buf),
            Value::Map(v) => v.encode(buf),
            Value::Array(v) => v.encode(buf),
            Value::Described(v) => v.encode(buf),
        }
    }

    fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}

/// A `multiple` symbol field (capabilities, outcomes, locales): encoded as an
/// array of symbols.
/// Whether every symbol fits the 8-bit element form, and the array body
/// size (element constructor and elements).
fn symbol_array_layout(symbols: &[Symbol]) -> (bool, usize) {
    let small = symbols.iter().all(|s| s.len() <= 255);
    let width = if small { 1 } else { 4 };
    let body = 1 + symbols.iter().map(|s| width + s.len()).sum::<usize>();
    (small, body)
}

impl Encode for Vec<Symbol> {
    fn encoded_len(&self) -> usize {
        let (_, body) = symbol_array_layout(self);
        compound_header_len(self.len(), body) + body
    }
    fn encode(&self, buf: &mut impl BufMut) {
        let (small, body) = symbol_array_layout(self);
        encode_compound_header(buf, ARRAY8, ARRAY32, self.len(), body);
        buf.put_u8(if small { SYM8 } else { SYM32 });
        for s in self {
            put_variable_body(buf, small, s.as_bytes());
        }
    }
}
