//! Canonical bytes (docs/canonical-form.md §1): string escaping exactly as orjson writes it,
//! decimal integers, and the content array of a record with str/bool/int attributes.

/// One plain attribute value: the only kinds the native paths accept.
#[derive(Clone, Debug)]
pub enum Val<'a> {
    Str(std::borrow::Cow<'a, str>),
    Bool(bool),
    Int(i64),
}

pub const INTEGRITY_KEYS: [&str; 5] = [
    "audit.stream.id",
    "audit.stream.seq",
    "audit.integrity.prev",
    "audit.integrity.digest",
    "audit.integrity.record",
];

#[inline]
pub fn is_integrity_key(k: &str) -> bool {
    k.len() >= 15 && k.starts_with("audit.") && INTEGRITY_KEYS.contains(&k)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Bytes that need escaping inside a JSON string: `"`, `\` and the controls below 0x20.
static NEEDS_ESCAPE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// A JSON string as orjson (and RFC 8785) writes it, quotes included.
#[inline]
pub fn push_str(buf: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    buf.reserve(b.len() + 2);
    buf.push(b'"');
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
        if !NEEDS_ESCAPE[c as usize] {
            continue;
        }
        if start < i {
            buf.extend_from_slice(&b[start..i]);
        }
        match c {
            b'"' => buf.extend_from_slice(b"\\\""),
            b'\\' => buf.extend_from_slice(b"\\\\"),
            0x08 => buf.extend_from_slice(b"\\b"),
            0x09 => buf.extend_from_slice(b"\\t"),
            0x0a => buf.extend_from_slice(b"\\n"),
            0x0c => buf.extend_from_slice(b"\\f"),
            0x0d => buf.extend_from_slice(b"\\r"),
            _ => buf.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(c >> 4) as usize],
                HEX[(c & 15) as usize],
            ]),
        }
        start = i + 1;
    }
    buf.extend_from_slice(&b[start..]);
    buf.push(b'"');
}

#[inline]
pub fn push_u64(buf: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    buf.extend_from_slice(&tmp[i..]);
}

#[inline]
pub fn push_i64(buf: &mut Vec<u8>, v: i64) {
    if v < 0 {
        buf.push(b'-');
    }
    push_u64(buf, v.unsigned_abs());
}

pub fn hex32(d: &[u8; 32]) -> [u8; 64] {
    let mut out = [0u8; 64];
    for (i, &b) in d.iter().enumerate() {
        out[2 * i] = HEX[(b >> 4) as usize];
        out[2 * i + 1] = HEX[(b & 15) as usize];
    }
    out
}

/// The value of each lowercase hex digit; 0xff for every other byte (uppercase included).
static UNHEX: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// 64 lowercase hex digits as 32 bytes; None for anything else (uppercase included).
pub fn unhex32(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    let mut bad = 0u8;
    for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
        let (hi, lo) = (UNHEX[pair[0] as usize], UNHEX[pair[1] as usize]);
        bad |= hi | lo; // 0xff marks a byte that is no digit: one test at the end
        *o = (hi << 4) | (lo & 15);
    }
    (bad & 0xf0 == 0).then_some(out)
}

pub fn is_lower_hex(s: &str, n: usize) -> bool {
    s.len() == n && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// The content array without its leading `[`: `"<event>","<time>",<sev>,"<text>",<body>,{attrs}]`.
/// `attrs` must be sorted by key bytes and hold unique keys; integrity keys are skipped.
pub fn push_content_tail<'s, I>(
    buf: &mut Vec<u8>,
    event: &str,
    time: u64,
    sev: i64,
    sev_text: &str,
    body: Option<&str>,
    attrs: I,
) where
    I: IntoIterator<Item = (&'s str, &'s Val<'s>)>,
{
    push_str(buf, event);
    buf.extend_from_slice(b",\"");
    push_u64(buf, time);
    buf.extend_from_slice(b"\",");
    push_i64(buf, sev);
    buf.push(b',');
    push_str(buf, sev_text);
    buf.push(b',');
    match body {
        Some(s) => push_str(buf, s),
        None => buf.extend_from_slice(b"null"),
    }
    buf.extend_from_slice(b",{");
    let mut first = true;
    for (k, v) in attrs {
        if is_integrity_key(k) {
            continue;
        }
        if !first {
            buf.push(b',');
        }
        first = false;
        push_str(buf, k);
        buf.push(b':');
        match v {
            Val::Str(s) => push_str(buf, s),
            Val::Bool(true) => buf.extend_from_slice(b"true"),
            Val::Bool(false) => buf.extend_from_slice(b"false"),
            Val::Int(i) => push_i64(buf, *i),
        }
    }
    buf.extend_from_slice(b"}]");
}
