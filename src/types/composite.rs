//! The `composite!` macro: AMQP composite types (spec 1.4, "composite type
//! representation") as Rust structs encoded as a described list.
//!
//! Each field is declared with its kind:
//! - `req name: T`: mandatory; a missing or null field is a decode error.
//! - `opt name: Option<T>`: optional; null decodes as `None`.
//! - `def name: T = expr`: has a default; null or absent decodes as the
//!   default, and a value equal to the default is encoded as null.
//!
//! Trailing null fields are omitted on encode and accepted on decode; fields
//! beyond those the type defines are checked for well-formedness and skipped,
//! so that newer peers' extensions do not break us.

/// Declares a composite type. See the module docs.
macro_rules! composite {
    (
        $(#[$meta:meta])*
        pub struct $name:ident = $code:literal, $sym:literal {
            $( $(#[$fmeta:meta])* $kind:ident $field:ident : $ty:ty $(= $default:expr)? ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl Default for $name {
            fn default() -> Self {
                $name { $( $field: composite!(@default $kind $ty $(, $default)?), )* }
            }
        }

        impl $name {
            /// The numeric descriptor of this type.
            pub const CODE: u64 = $code;
            /// The symbolic descriptor of this type.
            pub const NAME: &'static str = $sym;

            #[allow(unused_assignments, unused_mut, unused_variables)]
            fn field_layout(&self) -> (usize, usize) {
                let nulls: &[bool] = &[ $( composite!(@is_null $kind self.$field $(, $default)?) ),* ];
                let count = nulls.iter().rposition(|n| !n).map_or(0, |i| i + 1);
                let mut size = 0usize;
                let mut i = 0usize;
                $(
                    if i < count {
                        size += if nulls[i] { 1 } else { $crate::types::Encode::encoded_len(&self.$field) };
                    }
                    i += 1;
                )*
                (count, size)
            }

            /// Decodes the fields from a list whose descriptor has been read.
            #[allow(unused_assignments, unused_mut)]
            pub(crate) fn decode_fields(
                d: &mut $crate::types::Decoder,
            ) -> ::std::result::Result<Self, $crate::DecodeError> {
                let h = $crate::types::decode_list_header(d)?;
                let mut i = 0usize;
                $(
                    let $field: $ty = composite!(@decode $kind d, h, i, stringify!($field), $ty $(, $default)?);
                    i += 1;
                )*
                while i < h.count {
                    d.skip_value()?;
                    i += 1;
                }
                h.end(d)?;
                Ok($name { $( $field, )* })
            }
        }

        impl $crate::types::Encode for $name {
            fn encoded_len(&self) -> usize {
                let (count, size) = self.field_layout();
                3 + $crate::types::list_header_len(count, size) + size
            }

            #[allow(unused_assignments, unused_mut, unused_variables)]
            fn encode(&self, buf: &mut impl ::bytes::BufMut) {
                let (count, size) = self.field_layout();
                buf.put_slice(&[0x00, 0x53, $code as u8]);
                $crate::types::encode_list_header(buf, count, size);
                let mut i = 0usize;
                $(
                    if i < count {
                        if composite!(@is_null $kind self.$field $(, $default)?) {
                            buf.put_u8(0x40);
                        } else {
                            $crate::types::Encode::encode(&self.$field, buf);
                        }
                    }
                    i += 1;
                )*
            }
        }

        impl $crate::types::Decode for $name {
            fn decode(d: &mut $crate::types::Decoder) -> ::std::result::Result<Self, $crate::DecodeError> {
                match d.read_descriptor()? {
                    Some(desc) if desc.matches($code, $sym) => Self::decode_fields(d),
                    Some(desc) => Err($crate::DecodeError::new(
                        $crate::DecodeErrorKind::UnknownDescriptor(format!("{desc:?} where {} was expected", $sym)),
                    )),
                    None => Err($crate::DecodeError::new($crate::DecodeErrorKind::UnexpectedType {
                        expected: $sym,
                        found: d.peek_u8().unwrap_or(0),
                    })),
                }
            }
        }
    };

    (@default req $ty:ty) => { <$ty as Default>::default() };
    (@default opt $ty:ty) => { None };
    (@default def $ty:ty, $default:expr) => { $default };

    (@is_null req $v:expr) => { false };
    (@is_null opt $v:expr) => { $v.is_none() };
    (@is_null def $v:expr, $default:expr) => { $v == $default };

    (@decode req $d:ident, $h:ident, $i:ident, $name:expr, $ty:ty) => {
        if $i < $h.count && $d.peek_u8()? != 0x40 {
            <$ty as $crate::types::Decode>::decode($d)?
        } else {
            return Err($crate::DecodeError::new($crate::DecodeErrorKind::MissingField($name)));
        }
    };
    (@decode opt $d:ident, $h:ident, $i:ident, $name:expr, $ty:ty) => {
        if $i < $h.count {
            <$ty as $crate::types::Decode>::decode($d)?
        } else {
            None
        }
    };
    (@decode def $d:ident, $h:ident, $i:ident, $name:expr, $ty:ty, $default:expr) => {
        if $i < $h.count && $d.peek_u8()? != 0x40 {
            <$ty as $crate::types::Decode>::decode($d)?
        } else {
            if $i < $h.count {
                $d.skip_value()?;
            }
            $default
        }
    };
}
