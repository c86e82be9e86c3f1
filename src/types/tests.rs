use super::*;
use crate::DecodeErrorKind;
use bytes::{Bytes, BytesMut};

fn enc(v: &Value) -> Vec<u8> {
    let mut b = BytesMut::new();
    v.encode(&mut b);
    assert_eq!(b.len(), v.encoded_len(), "encoded_len of {v:?}");
    b.to_vec()
}

fn dec(b: &[u8]) -> Result<Value, crate::DecodeError> {
    let mut d = Decoder::new(Bytes::copy_from_slice(b));
    let v = d.read_value()?;
    d.finish()?;
    Ok(v)
}

#[test]
fn smallest_integer_forms() {
    assert_eq!(enc(&Value::Uint(0)), [0x43]);
    assert_eq!(enc(&Value::Uint(7)), [0x52, 7]);
    assert_eq!(enc(&Value::Uint(256)), [0x70, 0, 0, 1, 0]);
    assert_eq!(enc(&Value::Ulong(0)), [0x44]);
    assert_eq!(enc(&Value::Ulong(255)), [0x53, 255]);
    assert_eq!(enc(&Value::Int(-1)), [0x54, 0xff]);
    assert_eq!(
        enc(&Value::Long(-129)),
        [0x81, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]
    );
    assert_eq!(enc(&Value::Boolean(true)), [0x41]);
}

#[test]
fn compounds_choose_their_width() {
    assert_eq!(enc(&Value::List(vec![])), [0x45]);
    assert_eq!(enc(&Value::List(vec![Value::Null])), [0xc0, 2, 1, 0x40]);
    let big = Value::List(vec![Value::Uint(300); 60]);
    assert_eq!(enc(&big)[0], 0xd0);
    assert_eq!(enc(&Value::Map(Map::new())), [0xc1, 1, 0]);
    let a = Array::symbols(["a", "bc"]);
    assert_eq!(
        enc(&Value::Array(a)),
        [0xe0, 7, 2, 0xa3, 1, b'a', 2, b'b', b'c']
    );
}

#[test]
fn roundtrip_every_type() {
    let mut m = Map::new();
    m.insert("k", 1i32);
    m.insert(Symbol::from_static("s"), Value::Null);
    let vals = vec![
        Value::Null,
        Value::Boolean(false),
        Value::Ubyte(9),
        Value::Ushort(65535),
        Value::Uint(u32::MAX),
        Value::Ulong(u64::MAX),
        Value::Byte(-5),
        Value::Short(-300),
        Value::Int(i32::MIN),
        Value::Long(1 << 40),
        Value::Float(1.5),
        Value::Double(-2.25),
        Value::Decimal32([1, 2, 3, 4]),
        Value::Decimal64([1; 8]),
        Value::Decimal128([2; 16]),
        Value::Char('😀'),
        Value::Timestamp(Timestamp(1_700_000_000_000)),
        Value::Uuid(Uuid([7; 16])),
        Value::Binary(Bytes::from(vec![0u8; 300])),
        Value::String("héllo".into()),
        Value::Symbol(Symbol::from("x".repeat(300))),
        Value::List(vec![Value::Int(1), "a".into(), Value::Boolean(true)]),
        Value::Map(m),
        Value::Array(Array::new(
            Array::CODE_INT,
            vec![Value::Int(1), Value::Int(-2)],
        )),
        Value::Array(Array::new(0xb1, vec![Value::String("x".repeat(300))])),
        Value::Array(Array::new(0xd0, vec![Value::List(vec![Value::Null])])),
        Value::Described(Box::new(Described::new(0x70u64, Value::List(vec![])))),
        Value::Described(Box::new(Described::new("com:foo", Value::Uint(1)))),
    ];
    for v in vals {
        assert_eq!(dec(&enc(&v)).unwrap(), v);
    }
}

#[test]
fn truncation_is_an_error_at_every_length() {
    let v = Value::List(vec![
        Value::String("hello".into()),
        Value::Map([("a", 1i32)].into_iter().collect()),
        Value::Array(Array::symbols(["x", "y"])),
    ]);
    let b = enc(&v);
    for n in 0..b.len() {
        assert!(dec(&b[..n]).is_err(), "prefix of {n} bytes decoded");
    }
}

#[test]
fn hostile_lengths_are_rejected_without_allocating() {
    // list32 claiming 4 billion items in a 9-byte input.
    let e = dec(&[0xd0, 0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff]).unwrap_err();
    assert_eq!(e.kind(), &DecodeErrorKind::InvalidLength);
    // array32 of nulls claiming 4 billion elements: over the allocation
    // budget.
    let e = dec(&[0xf0, 0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0x40]).unwrap_err();
    assert!(
        matches!(e.kind(), DecodeErrorKind::AllocationLimit { .. }),
        "{e:?}"
    );
    // binary longer than the input.
    assert_eq!(
        dec(&[0xb0, 0, 0, 1, 0]).unwrap_err().kind(),
        &DecodeErrorKind::Truncated
    );
    assert!(matches!(
        dec(&[0xb0, 0xff, 0, 0, 0]).unwrap_err().kind(),
        DecodeErrorKind::TooLarge { .. }
    ));
    // deep nesting.
    let mut deep = Vec::new();
    for _ in 0..100 {
        deep.extend_from_slice(&[0x00, 0x53, 0x01]);
    }
    deep.push(0x40);
    assert_eq!(
        dec(&deep).unwrap_err().kind(),
        &DecodeErrorKind::TooDeep(64)
    );
    assert!(matches!(
        dec(&[0x01]).unwrap_err().kind(),
        DecodeErrorKind::InvalidConstructor(1)
    ));
    assert_eq!(
        dec(&[0xa3, 1, 0xff]).unwrap_err().kind(),
        &DecodeErrorKind::InvalidSymbol
    );
    assert_eq!(
        dec(&[0xa1, 1, 0xff]).unwrap_err().kind(),
        &DecodeErrorKind::InvalidUtf8
    );
}

#[test]
fn binary_borrows_from_input() {
    let input = Bytes::from(vec![0xa0, 3, 1, 2, 3]);
    let ptr = input.as_ptr();
    let v = Decoder::new(input).read_value().unwrap();
    assert_eq!(v.as_binary().unwrap().as_ptr(), ptr.wrapping_add(2));
}

#[test]
fn compounds_are_read_within_their_size() {
    // A list8 of size 3 whose string item runs past the list's end (the
    // bytes are in the input, but not in the list).
    let e = dec(&[0xc0, 3, 1, 0xa1, 3, b'a', b'b', b'c']).unwrap_err();
    assert_eq!(e.kind(), &DecodeErrorKind::Truncated);
    // A list8 with a byte left over after its one item.
    let e = dec(&[0xc0, 3, 1, 0x40, 0x40]).unwrap_err();
    assert_eq!(e.kind(), &DecodeErrorKind::TrailingBytes(1));
    // A map whose size ends inside its last value.
    let e = dec(&[0xc1, 3, 2, 0x40, 0x54, 7]).unwrap_err();
    assert_eq!(e.kind(), &DecodeErrorKind::Truncated);

    // After a compound the decoder reads on from its end, and what is left
    // is exactly the bytes after it.
    let mut d = Decoder::new(Bytes::from_static(&[
        0xc0, 5, 2, 0xc0, 1, 0, 0x41, 0x54, 9, 0xaa,
    ]));
    assert_eq!(
        d.read_value().unwrap(),
        Value::List(vec![Value::List(vec![]), Value::Boolean(true)])
    );
    assert_eq!(d.rest(), &[0x54, 9, 0xaa]);
    assert_eq!(d.read_value().unwrap(), Value::Int(9));
    assert_eq!(d.remaining(), 1);
    assert_eq!(&d.into_rest()[..], &[0xaa]);
}

#[test]
fn leaving_a_compound_restores_the_depth() {
    // A list of two values each nested 40 deep: each is within the limit
    // of 64, and only their sum is not.
    fn nested(depth: usize) -> Value {
        (0..depth).fold(Value::Null, |v, _| Value::List(vec![v]))
    }
    let v = Value::List(vec![nested(40), nested(40)]);
    assert_eq!(dec(&enc(&v)).unwrap(), v);
    let too_deep = Value::List(vec![nested(64)]);
    assert_eq!(
        dec(&enc(&too_deep)).unwrap_err().kind(),
        &DecodeErrorKind::TooDeep(64)
    );
}

#[test]
fn well_known_symbols_decode_without_allocating() {
    let mut b = vec![0xa3, 24];
    b.extend_from_slice(b"application/octet-stream");
    let Value::Symbol(s) = dec(&b).unwrap() else {
        panic!("not a symbol")
    };
    assert_eq!(s.as_str(), "application/octet-stream");
    assert!(s.is_static());
    let Value::Symbol(s) = dec(&[0xa3, 3, b'x', b'-', b'y']).unwrap() else {
        panic!("not a symbol")
    };
    assert_eq!(s.as_str(), "x-y");
    assert!(!s.is_static());
}

#[test]
fn array_counts_are_checked_against_the_element_width() {
    // Three nulls: a zero-width array that ends after its constructor.
    let v = dec(&[0xe0, 2, 3, 0x40]).unwrap();
    assert_eq!(
        v,
        Value::Array(Array {
            descriptor: None,
            code: codes::NULL,
            items: vec![Value::Null; 3],
        })
    );
    // Zero-width elements followed by bytes nothing can account for.
    let e = dec(&[0xe0, 3, 3, 0x40, 0x40]).unwrap_err();
    assert_eq!(e.kind(), &DecodeErrorKind::InvalidLength);
    // More zero-width elements than the input has bytes: bounded by the
    // allocation budget only, as our own encoding of 200 `true`s is this.
    let v = dec(&[0xe0, 2, 200, 0x41]).unwrap();
    assert!(matches!(v, Value::Array(a) if a.items == vec![Value::Boolean(true); 200]));
    let e = dec(&[0xf0, 0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0x41]).unwrap_err();
    assert!(
        matches!(e.kind(), DecodeErrorKind::AllocationLimit { .. }),
        "{e:?}"
    );
    // Two uints need eight bytes; four are there.
    let e = dec(&[0xe0, 6, 2, 0x70, 0, 0, 0, 1]).unwrap_err();
    assert_eq!(e.kind(), &DecodeErrorKind::InvalidLength);
    // Three str8 need at least three bytes; two are there.
    let e = dec(&[0xe0, 4, 3, 0xa1, 0, 0]).unwrap_err();
    assert_eq!(e.kind(), &DecodeErrorKind::InvalidLength);
}

#[test]
fn allocation_budget_is_proportional_to_the_input_and_configurable() {
    // 2000 nulls: 2009 bytes of input, 2000 * 56 bytes of values, over the
    // default 16 x input + 64 KiB.
    let mut b = vec![0xd0];
    b.extend_from_slice(&2004u32.to_be_bytes());
    b.extend_from_slice(&2000u32.to_be_bytes());
    b.resize(b.len() + 2000, 0x40);
    let input = Bytes::from(b);
    let e = Decoder::new(input.clone()).read_value().unwrap_err();
    let limit = Limits::default().alloc_budget(input.len());
    assert_eq!(limit, 16 * 2009 + 64 * 1024);
    assert_eq!(e.kind(), &DecodeErrorKind::AllocationLimit { limit });
    assert!(crate::Error::from(e)
        .to_string()
        .contains("allocation budget"));
    // A larger ratio admits it.
    let limits = Limits {
        alloc_ratio: 64,
        ..Limits::default()
    };
    let v = Decoder::with_limits(input, limits).read_value().unwrap();
    assert_eq!(v.as_list().map(<[Value]>::len), Some(2000));

    // Strings, symbols and described values are charged too: with no
    // budget at all, only values that allocate nothing decode.
    let none = Limits {
        alloc_ratio: 0,
        alloc_floor: 0,
        ..Limits::default()
    };
    let d = |b: &'static [u8]| Decoder::with_limits(Bytes::from_static(b), none).read_value();
    assert!(d(&[0x71, 0, 0, 0, 1]).is_ok());
    assert!(d(&[0xa1, 0]).is_ok());
    assert!(
        d(&[0xa3, 4, b'g', b'z', b'i', b'p']).is_ok(),
        "well-known symbol"
    );
    assert!(d(&[0x45]).is_ok());
    for b in [
        &[0xa1, 1, b'x'][..],
        &[0xa3, 1, b'x'],
        &[0x00, 0x44, 0x40],
        &[0xc0, 2, 1, 0x40],
        &[0xc1, 3, 2, 0x40, 0x40],
        &[0xe0, 2, 1, 0x40],
    ] {
        let e = Decoder::with_limits(Bytes::copy_from_slice(b), none)
            .read_value()
            .unwrap_err();
        assert_eq!(
            e.kind(),
            &DecodeErrorKind::AllocationLimit { limit: 0 },
            "{b:x?}"
        );
    }
}

#[test]
fn long_descriptor_symbols_are_cut_in_debug_output() {
    let short = Descriptor::Symbol(Symbol::from("amqp:open:list"));
    assert_eq!(format!("{short:?}"), r#"Symbol(:"amqp:open:list")"#);
    assert_eq!(format!("{:?}", Descriptor::Code(16)), "Code(16)");
    let long = Descriptor::Symbol(Symbol::from("\u{1}".repeat(10_000)));
    let text = format!("{long:?}");
    assert!(text.len() < 64 * 8, "{} bytes", text.len());
    assert!(text.ends_with("...)"), "{text}");
}
