//! Just enough DER to read a certificate's subject name, for SASL
//! EXTERNAL: `O=Example,CN=alice` (RFC 4514 order: the last RDN of the DER sequence first, as OpenSSL prints with XN_FLAG_RFC2253).
//! The certificate was verified by rustls before it gets here.

/// One DER element: (tag, contents, rest).
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&len0, rest) = rest.split_first()?;
    let (len, rest) = if len0 < 0x80 {
        (len0 as usize, rest)
    } else {
        let n = (len0 & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |a, &b| (a << 8) | b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

fn oid_name(oid: &[u8]) -> String {
    match oid {
        [0x55, 0x04, 0x03] => "CN".into(),
        [0x55, 0x04, 0x06] => "C".into(),
        [0x55, 0x04, 0x07] => "L".into(),
        [0x55, 0x04, 0x08] => "ST".into(),
        [0x55, 0x04, 0x0a] => "O".into(),
        [0x55, 0x04, 0x0b] => "OU".into(),
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19] => "DC".into(),
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01] => "UID".into(),
        _ => {
            // Dotted form.
            let mut parts = Vec::new();
            if let Some((&first, rest)) = oid.split_first() {
                parts.push((first / 40) as u64);
                parts.push((first % 40) as u64);
                let mut v = 0u64;
                for &b in rest {
                    v = (v << 7) | (b & 0x7f) as u64;
                    if b & 0x80 == 0 {
                        parts.push(v);
                        v = 0;
                    }
                }
            }
            parts
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(".")
        }
    }
}

fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for (i, c) in v.chars().enumerate() {
        if matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=')
            || (i == 0 && (c == '#' || c == ' '))
        {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The subject of a DER certificate, or `None` if it cannot be read.
pub(crate) fn subject(cert: &[u8]) -> Option<String> {
    let (0x30, cert, _) = element(cert)? else {
        return None;
    };
    let (0x30, tbs, _) = element(cert)? else {
        return None;
    };
    let mut rest = tbs;
    // [0] version, optional.
    if rest.first() == Some(&0xa0) {
        rest = element(rest)?.2;
    }
    rest = element(rest)?.2; // serial
    rest = element(rest)?.2; // signature algorithm
    rest = element(rest)?.2; // issuer
    rest = element(rest)?.2; // validity
    let (0x30, mut name, _) = element(rest)? else {
        return None;
    };
    let mut rdns = Vec::new();
    while !name.is_empty() {
        let (_, mut set, next) = element(name)?;
        name = next;
        let mut atvs = Vec::new();
        while !set.is_empty() {
            let (_, atv, next) = element(set)?;
            set = next;
            let (0x06, oid, after) = element(atv)? else {
                return None;
            };
            let (tag, value, _) = element(after)?;
            let text = match tag {
                // UTF8String, PrintableString, IA5String, TeletexString.
                0x0c | 0x13 | 0x16 | 0x14 => String::from_utf8_lossy(value).into_owned(),
                // BMPString (UTF-16BE).
                0x1e => {
                    let units: Vec<u16> = value
                        .chunks(2)
                        .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))
                        .collect();
                    String::from_utf16_lossy(&units)
                }
                _ => value.iter().map(|b| format!("{b:02x}")).collect(),
            };
            atvs.push(format!("{}={}", oid_name(oid), escape(&text)));
        }
        rdns.push(atvs.join("+"));
    }
    rdns.reverse();
    Some(rdns.join(","))
}
