//! `Display` for [`Value`]: the text Proton's Python examples print for a
//! body (`print(message.body)`), so that our examples' output matches
//! theirs: strings bare at the top level and quoted inside containers,
//! maps as `{'sequence': 1}`, lists as `[1, 2]`, `None`, `True`, `b'..'`.

use super::value::{Described, Descriptor, Value};
use std::fmt::{self, Write};

/// Writes a value as Python's `repr` would.
pub(crate) fn repr(v: &Value, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match v {
        Value::Null => f.write_str("None"),
        Value::Boolean(b) => f.write_str(if *b { "True" } else { "False" }),
        Value::Ubyte(x) => write!(f, "{x}"),
        Value::Ushort(x) => write!(f, "{x}"),
        Value::Uint(x) => write!(f, "{x}"),
        Value::Ulong(x) => write!(f, "{x}"),
        Value::Byte(x) => write!(f, "{x}"),
        Value::Short(x) => write!(f, "{x}"),
        Value::Int(x) => write!(f, "{x}"),
        Value::Long(x) => write!(f, "{x}"),
        Value::Float(x) => write!(f, "{x:?}"),
        Value::Double(x) => write!(f, "{x:?}"),
        Value::Decimal32(b) => write!(f, "decimal32({b:02x?})"),
        Value::Decimal64(b) => write!(f, "decimal64({b:02x?})"),
        Value::Decimal128(b) => write!(f, "decimal128({b:02x?})"),
        Value::Char(c) => quote(&c.to_string(), f),
        Value::Timestamp(t) => write!(f, "timestamp({})", t.0),
        Value::Uuid(u) => write!(f, "UUID('{u}')"),
        Value::Binary(b) => bytes_repr(b, f),
        Value::String(s) => quote(s, f),
        Value::Symbol(s) => quote(s, f),
        Value::List(items) => seq(items.iter(), f),
        Value::Array(a) => seq(a.items.iter(), f),
        Value::Map(m) => {
            f.write_char('{')?;
            for (i, (k, v)) in m.0.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                repr(k, f)?;
                f.write_str(": ")?;
                repr(v, f)?;
            }
            f.write_char('}')
        }
        Value::Described(d) => described(d, f),
    }
}

fn described(d: &Described, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    f.write_str("Described(")?;
    match &d.descriptor {
        Descriptor::Code(c) => write!(f, "{c:#x}")?,
        Descriptor::Symbol(s) => quote(s, f)?,
    }
    f.write_str(", ")?;
    repr(&d.value, f)?;
    f.write_char(')')
}

fn seq<'a>(items: impl Iterator<Item = &'a Value>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    f.write_char('[')?;
    for (i, v) in items.enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        repr(v, f)?;
    }
    f.write_char(']')
}

fn quote(s: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let q = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    f.write_char(q)?;
    for c in s.chars() {
        match c {
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            c if c == q => {
                f.write_char('\\')?;
                f.write_char(c)?
            }
            c => f.write_char(c)?,
        }
    }
    f.write_char(q)
}

/// Writes octets as Python's `bytes` repr: `b'ab\x00'`.
pub(crate) fn bytes_repr(b: &[u8], f: &mut fmt::Formatter<'_>) -> fmt::Result {
    f.write_str("b'")?;
    let plain = |c: u8| (0x20..=0x7e).contains(&c) && c != b'\\' && c != b'\'';
    let mut rest = b;
    while !rest.is_empty() {
        // A run of printable bytes goes out in one write.
        let n = rest.iter().position(|&c| !plain(c)).unwrap_or(rest.len());
        if n > 0 {
            let run = std::str::from_utf8(&rest[..n]).expect("printable ASCII");
            f.write_str(run)?;
            rest = &rest[n..];
            continue;
        }
        match rest[0] {
            b'\\' => f.write_str("\\\\")?,
            b'\'' => f.write_str("\\'")?,
            b'\n' => f.write_str("\\n")?,
            b'\r' => f.write_str("\\r")?,
            b'\t' => f.write_str("\\t")?,
            c => write!(f, "\\x{c:02x}")?,
        }
        rest = &rest[1..];
    }
    f.write_char('\'')
}

/// Strings print bare, everything else as its repr (like Python's `print`).
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::String(s) => f.write_str(s),
            v => repr(v, f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;

    #[test]
    fn prints_like_python() {
        let mut m = Map::new();
        m.insert("sequence", 1i32);
        assert_eq!(Value::Map(m).to_string(), "{'sequence': 1}");
        assert_eq!(
            Value::String("Hello World!".into()).to_string(),
            "Hello World!"
        );
        let l = Value::List(vec![Value::Null, true.into(), "it's".into(), 2.5f64.into()]);
        assert_eq!(l.to_string(), "[None, True, \"it's\", 2.5]");
        assert_eq!(
            Value::Binary(bytes::Bytes::from_static(b"a\x00")).to_string(),
            "b'a\\x00'"
        );
    }
}
