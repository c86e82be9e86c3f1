//! The dynamic [`Value`] and the small types it is made of.

use bytes::Bytes;
use std::borrow::Cow;
use std::fmt;

/// Any AMQP 1.0 value.
///
/// Each variant is one AMQP type; the encoding (for example `smalluint` versus
/// `uint`) is chosen when the value is encoded, and forgotten when it is
/// decoded.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum Value {
    /// `null`: an absent value.
    #[default]
    Null,
    /// `boolean`.
    Boolean(bool),
    /// `ubyte`: 8-bit unsigned integer.
    Ubyte(u8),
    /// `ushort`: 16-bit unsigned integer.
    Ushort(u16),
    /// `uint`: 32-bit unsigned integer.
    Uint(u32),
    /// `ulong`: 64-bit unsigned integer.
    Ulong(u64),
    /// `byte`: 8-bit signed integer.
    Byte(i8),
    /// `short`: 16-bit signed integer.
    Short(i16),
    /// `int`: 32-bit signed integer.
    Int(i32),
    /// `long`: 64-bit signed integer.
    Long(i64),
    /// `float`: IEEE 754 32-bit.
    Float(f32),
    /// `double`: IEEE 754 64-bit.
    Double(f64),
    /// `decimal32`: IEEE 754 decimal, kept as its raw big-endian bytes.
    Decimal32([u8; 4]),
    /// `decimal64`: IEEE 754 decimal, kept as its raw big-endian bytes.
    Decimal64([u8; 8]),
    /// `decimal128`: IEEE 754 decimal, kept as its raw big-endian bytes.
    Decimal128([u8; 16]),
    /// `char`: a single Unicode character (UTF-32).
    Char(char),
    /// `timestamp`: milliseconds since the Unix epoch.
    Timestamp(Timestamp),
    /// `uuid`: a universally unique identifier.
    Uuid(Uuid),
    /// `binary`: a sequence of octets; decoding borrows from the input buffer.
    Binary(Bytes),
    /// `string`: UTF-8 text.
    String(String),
    /// `symbol`: ASCII text used for names and keywords.
    Symbol(Symbol),
    /// `list`: a sequence of values of any types.
    List(Vec<Value>),
    /// `map`: key/value pairs, in wire order.
    Map(Map),
    /// `array`: a sequence of values of one type.
    Array(Array),
    /// A described type: a descriptor and the value it describes.
    Described(Box<Described>),
}

impl Value {
    /// Whether this is [`Value::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The string, if this is a `string`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The integer value of any integral type, if it fits in an `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        Some(match *self {
            Value::Ubyte(v) => v.into(),
            Value::Ushort(v) => v.into(),
            Value::Uint(v) => v.into(),
            Value::Ulong(v) => i64::try_from(v).ok()?,
            Value::Byte(v) => v.into(),
            Value::Short(v) => v.into(),
            Value::Int(v) => v.into(),
            Value::Long(v) => v,
            _ => return None,
        })
    }

    /// The octets, if this is a `binary`.
    pub fn as_binary(&self) -> Option<&Bytes> {
        match self {
            Value::Binary(b) => Some(b),
            _ => None,
        }
    }

    /// The symbol, if this is a `symbol`.
    pub fn as_symbol(&self) -> Option<&Symbol> {
        match self {
            Value::Symbol(s) => Some(s),
            _ => None,
        }
    }

    /// The map, if this is a `map`.
    pub fn as_map(&self) -> Option<&Map> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The list, if this is a `list`.
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    /// The described value, if this is a described type.
    pub fn as_described(&self) -> Option<&Described> {
        match self {
            Value::Described(d) => Some(d),
            _ => None,
        }
    }
}

macro_rules! value_from {
    ($($t:ty => $v:ident),* $(,)?) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Self { Value::$v(v.into()) }
        }
    )*};
}

value_from! {
    bool => Boolean, u8 => Ubyte, u16 => Ushort, u32 => Uint, u64 => Ulong,
    i8 => Byte, i16 => Short, i32 => Int, i64 => Long, f32 => Float, f64 => Double,
    char => Char, Timestamp => Timestamp, Uuid => Uuid, Bytes => Binary,
    String => String, &str => String, Symbol => Symbol, Vec<Value> => List,
    Map => Map, Array => Array,
}

impl From<Described> for Value {
    fn from(d: Described) -> Self {
        Value::Described(Box::new(d))
    }
}

impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Binary(Bytes::from(v))
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// An AMQP `symbol`: a name or keyword in ASCII.
///
/// Symbols made from constants (`Symbol::from_static`) do not allocate.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Symbol(Cow<'static, str>);

impl Symbol {
    /// A symbol from a static string, without allocating.
    pub const fn from_static(s: &'static str) -> Self {
        Symbol(Cow::Borrowed(s))
    }

    /// The symbol's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the text is borrowed from a constant (not allocated).
    #[cfg(test)]
    pub(crate) fn is_static(&self) -> bool {
        matches!(self.0, Cow::Borrowed(_))
    }
}

impl fmt::Debug for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, ":{:?}", self.0)
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&'static str> for Symbol {
    fn from(s: &'static str) -> Self {
        Symbol(Cow::Borrowed(s))
    }
}

impl From<String> for Symbol {
    fn from(s: String) -> Self {
        Symbol(Cow::Owned(s))
    }
}

impl std::ops::Deref for Symbol {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Symbol {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Symbol {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// An AMQP `timestamp`: milliseconds since the Unix epoch (may be negative).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current time of the system clock.
    pub fn now() -> Self {
        Self::from(std::time::SystemTime::now())
    }

    /// Milliseconds since the Unix epoch.
    pub fn millis(self) -> i64 {
        self.0
    }
}

impl From<std::time::SystemTime> for Timestamp {
    fn from(t: std::time::SystemTime) -> Self {
        match t.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => Timestamp(d.as_millis() as i64),
            Err(e) => Timestamp(-(e.duration().as_millis() as i64)),
        }
    }
}

/// An AMQP `uuid`: 16 octets in network byte order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Uuid(pub [u8; 16]);

impl Uuid {
    /// A new random (version 4) UUID.
    pub fn new_v4() -> Self {
        Uuid(*uuid::Uuid::new_v4().as_bytes())
    }
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&uuid::Uuid::from_bytes(self.0), f)
    }
}

impl From<uuid::Uuid> for Uuid {
    fn from(u: uuid::Uuid) -> Self {
        Uuid(*u.as_bytes())
    }
}

impl From<Uuid> for uuid::Uuid {
    fn from(u: Uuid) -> Self {
        uuid::Uuid::from_bytes(u.0)
    }
}

/// An AMQP `map`: key/value pairs kept in wire order.
///
/// Lookups are linear, which is the fastest choice for the small maps AMQP
/// carries (properties, annotations, filters).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Map(pub Vec<(Value, Value)>);

impl Map {
    /// An empty map.
    pub fn new() -> Self {
        Map(Vec::new())
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the map has no entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value of the first entry whose key equals `key`.
    pub fn get(&self, key: &Value) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The value of the entry whose key is the string or symbol `key`.
    pub fn get_str(&self, key: &str) -> Option<&Value> {
        self.0
            .iter()
            .find(|(k, _)| match k {
                Value::String(s) => s == key,
                Value::Symbol(s) => s.as_str() == key,
                _ => false,
            })
            .map(|(_, v)| v)
    }

    /// Sets `key` to `value`, replacing an entry with an equal key.
    pub fn insert(&mut self, key: impl Into<Value>, value: impl Into<Value>) {
        let key = key.into();
        let value = value.into();
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => self.0.push((key, value)),
        }
    }

    /// The entries in order.
    pub fn iter(&self) -> impl Iterator<Item = (&Value, &Value)> {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl<K: Into<Value>, V: Into<Value>> FromIterator<(K, V)> for Map {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut m = Map::new();
        for (k, v) in iter {
            m.insert(k, v);
        }
        m
    }
}

/// The descriptor of a described type: a symbol such as `amqp:open:list`, or
/// a numeric code such as `0x10` (domain id in the high 32 bits).
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Descriptor {
    /// A numeric descriptor (`ulong`).
    Code(u64),
    /// A symbolic descriptor.
    Symbol(Symbol),
}

/// As derived, except that a symbol is cut after 64 characters (followed by
/// `...`): decode errors quote unknown descriptors, and what a peer sent
/// should not make an error message as long as its input.
impl fmt::Debug for Descriptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MAX: usize = 64;
        match self {
            Descriptor::Code(c) => f.debug_tuple("Code").field(c).finish(),
            Descriptor::Symbol(s) => {
                let text = s.as_str();
                match text.char_indices().nth(MAX) {
                    None => f.debug_tuple("Symbol").field(s).finish(),
                    Some((end, _)) => {
                        let head = text.get(..end).unwrap_or_default();
                        write!(f, "Symbol(:{head:?}...)")
                    }
                }
            }
        }
    }
}

impl Descriptor {
    /// Whether this descriptor names the type with numeric `code` and
    /// symbolic `name`, in either form.
    pub fn matches(&self, code: u64, name: &str) -> bool {
        match self {
            Descriptor::Code(c) => *c == code,
            Descriptor::Symbol(s) => s.as_str() == name,
        }
    }
}

/// A described value: a [`Descriptor`] and the [`Value`] it describes.
#[derive(Clone, Debug, PartialEq)]
pub struct Described {
    /// The descriptor.
    pub descriptor: Descriptor,
    /// The described value.
    pub value: Value,
}

impl Described {
    /// A described value with a numeric descriptor.
    pub fn new(descriptor: impl Into<Descriptor>, value: impl Into<Value>) -> Self {
        Described {
            descriptor: descriptor.into(),
            value: value.into(),
        }
    }
}

impl From<u64> for Descriptor {
    fn from(c: u64) -> Self {
        Descriptor::Code(c)
    }
}

impl From<Symbol> for Descriptor {
    fn from(s: Symbol) -> Self {
        Descriptor::Symbol(s)
    }
}

impl From<&'static str> for Descriptor {
    fn from(s: &'static str) -> Self {
        Descriptor::Symbol(Symbol::from_static(s))
    }
}

/// An AMQP `array`: values of a single type, encoded with the element
/// constructor once.
///
/// The element type is given by the format code of its constructor (for
/// example [`Array::CODE_INT`]), optionally described. An array keeps its
/// element code even when empty, so that it re-encodes as it was.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    /// The descriptor of a described element type, if any.
    pub descriptor: Option<Descriptor>,
    /// The element type, as the widest format code of the type (for example
    /// `0x70` for `uint`, `0xb1` for `string`); encoders narrow it where all
    /// elements allow.
    pub code: u8,
    /// The elements, each of the element type.
    pub items: Vec<Value>,
}

impl Array {
    /// Element code of an array of `int`.
    pub const CODE_INT: u8 = 0x71;
    /// Element code of an array of `symbol`.
    pub const CODE_SYMBOL: u8 = 0xb3;
    /// Element code of an array of `string`.
    pub const CODE_STRING: u8 = 0xb1;

    /// An array of symbols, the form AMQP uses for capabilities and locales.
    pub fn symbols<I, S>(items: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<Symbol>,
    {
        Array {
            descriptor: None,
            code: Self::CODE_SYMBOL,
            items: items.into_iter().map(|s| Value::Symbol(s.into())).collect(),
        }
    }

    /// An array of the given element format code.
    pub fn new(code: u8, items: Vec<Value>) -> Self {
        Array {
            descriptor: None,
            code,
            items,
        }
    }
}
