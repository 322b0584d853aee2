//! scan_line: one OTLP/JSON line read with typed serde visitors, accepted only in the strict forms
//! `otel_audit.decoding` reads exactly alike (docs/canonical-form.md §7). Any doubt about the line:
//! `None` (Python reads it). Any doubt about one record: a raw item (Python decodes that record).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;

use blake2::digest::consts::U8;
use blake2::digest::{FixedOutput, Mac};
use blake2::Blake2bMac;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::canon::{self, Val};

// -- scalars --------------------------------------------------------------------------------------

/// A JSON string, borrowed from the line when it has no escapes.
pub struct Str<'a>(pub Cow<'a, str>);

impl<'de> Deserialize<'de> for Str<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<X: de::Error>(self, v: &'de str) -> Result<Self::Value, X> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<X: de::Error>(self, v: &str) -> Result<Self::Value, X> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<X: de::Error>(self, v: String) -> Result<Self::Value, X> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// The canonical decimal of a non-negative integer: ASCII digits, no sign, no leading zero unless "0".
fn canonical_u64(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 20 || (b[0] == b'0' && b.len() > 1) || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.parse::<u64>().ok()
}

/// The canonical decimal of an int64: optional '-', digits, no leading zero, not "-0".
fn canonical_i64(s: &str) -> Option<i64> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s),
    };
    let b = digits.as_bytes();
    if b.is_empty() || b.len() > 19 || (b[0] == b'0' && (b.len() > 1 || neg)) || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.parse::<i64>().ok()
}

macro_rules! int_visitor {
    ($name:ident, $t:ty, $what:expr, u64 => $u:expr, i64 => $i:expr, str => $s:expr) => {
        #[allow(dead_code)]
        pub struct $name(pub $t);
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str($what)
                    }
                    fn visit_u64<X: de::Error>(self, v: u64) -> Result<$name, X> {
                        let f: fn(u64) -> Option<$t> = $u;
                        f(v).map($name).ok_or_else(|| X::custom("out of range"))
                    }
                    fn visit_i64<X: de::Error>(self, v: i64) -> Result<$name, X> {
                        let f: fn(i64) -> Option<$t> = $i;
                        f(v).map($name).ok_or_else(|| X::custom("out of range"))
                    }
                    fn visit_str<X: de::Error>(self, v: &str) -> Result<$name, X> {
                        let f: fn(&str) -> Option<$t> = $s;
                        f(v).map($name).ok_or_else(|| X::custom("not a canonical decimal"))
                    }
                }
                d.deserialize_any(V)
            }
        }
    };
}

// uint64 times: a JSON integer or its canonical decimal string
int_visitor!(U64Time, u64, "a uint64", u64 => |v| Some(v), i64 => |_| None, str => canonical_u64);
// int64 intValue: a JSON integer or its canonical decimal string
int_visitor!(I64Val, i64, "an int64", u64 => |v| i64::try_from(v).ok(), i64 => |v| Some(v), str => canonical_i64);
// int32 severityNumber: a JSON integer only
int_visitor!(I32Num, i32, "an int32", u64 => |v| i32::try_from(v).ok(), i64 => |v| i32::try_from(v).ok(), str => |_| None);
// uint32 flags, droppedAttributesCount: a JSON integer only
int_visitor!(U32Num, u32, "a uint32", u64 => |v| u32::try_from(v).ok(), i64 => |_| None, str => |_| None);

// -- AnyValue and KeyValue ------------------------------------------------------------------------

/// An AnyValue of exactly one of stringValue / boolValue / intValue.
pub struct AnyVal<'a>(pub Val<'a>);

impl<'de> Deserialize<'de> for AnyVal<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AnyVal<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an AnyValue with one of stringValue, boolValue, intValue")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let k: Str = m.next_key()?.ok_or_else(|| de::Error::custom("empty AnyValue"))?;
                let v = match &*k.0 {
                    "stringValue" => Val::Str(m.next_value::<Str>()?.0),
                    "boolValue" => Val::Bool(m.next_value::<bool>()?),
                    "intValue" => Val::Int(m.next_value::<I64Val>()?.0),
                    _ => return Err(de::Error::custom("not a native value field")),
                };
                if m.next_key::<Str>()?.is_some() {
                    return Err(de::Error::custom("more than one member"));
                }
                Ok(AnyVal(v))
            }
        }
        d.deserialize_map(V)
    }
}

/// A body of exactly {"stringValue": string}.
pub struct StrBody<'a>(pub Cow<'a, str>);

impl<'de> Deserialize<'de> for StrBody<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match AnyVal::deserialize(d)?.0 {
            Val::Str(s) => Ok(StrBody(s)),
            _ => Err(de::Error::custom("body is not a stringValue")),
        }
    }
}

/// A KeyValue of exactly `key` (string) and `value` (a native AnyValue).
pub struct KeyVal<'a>(pub Cow<'a, str>, pub Val<'a>);

impl<'de> Deserialize<'de> for KeyVal<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = KeyVal<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a KeyValue")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut key: Option<Cow<'de, str>> = None;
                let mut val: Option<Val<'de>> = None;
                while let Some(k) = m.next_key::<Str>()? {
                    match &*k.0 {
                        "key" if key.is_none() => key = Some(m.next_value::<Str>()?.0),
                        "value" if val.is_none() => val = Some(m.next_value::<AnyVal>()?.0),
                        _ => return Err(de::Error::custom("not a native KeyValue member")),
                    }
                }
                match (key, val) {
                    (Some(k), Some(v)) => Ok(KeyVal(k, v)),
                    _ => Err(de::Error::custom("KeyValue without key or value")),
                }
            }
        }
        d.deserialize_map(V)
    }
}

pub type Attrs<'a> = Vec<(Cow<'a, str>, Val<'a>)>;

/// A KeyValue list, sorted by key bytes; Err when it is not an array of native KeyValues.
struct AttrList<'a>(Attrs<'a>);

impl<'de> Deserialize<'de> for AttrList<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v: Vec<KeyVal<'de>> = Vec::deserialize(d)?;
        Ok(AttrList(v.into_iter().map(|KeyVal(k, v)| (k, v)).collect()))
    }
}

/// Sort by key bytes; false when a key is given twice.
fn sort_unique(a: &mut Attrs) -> bool {
    a.sort_unstable_by(|x, y| x.0.as_bytes().cmp(y.0.as_bytes()));
    a.windows(2).all(|w| w[0].0 != w[1].0)
}

// -- the log record -------------------------------------------------------------------------------

#[derive(Default)]
pub struct Rec<'a> {
    pub time: u64,
    pub sev: i32,
    pub sev_text: Option<Cow<'a, str>>,
    pub event: Option<Cow<'a, str>>,
    pub body: Option<Cow<'a, str>>,
    pub attrs: Attrs<'a>,
    pub ids_ok: bool,
}

impl<'de> Deserialize<'de> for Rec<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Rec<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a logRecord")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut r = Rec { ids_ok: true, ..Rec::default() };
                let mut seen: u16 = 0;
                while let Some(k) = m.next_key::<Str>()? {
                    let bit = match &*k.0 {
                        "timeUnixNano" => 0,
                        "observedTimeUnixNano" => 1,
                        "severityNumber" => 2,
                        "severityText" => 3,
                        "eventName" => 4,
                        "body" => 5,
                        "attributes" => 6,
                        "flags" => 7,
                        "droppedAttributesCount" => 8,
                        "traceId" => 9,
                        "spanId" => 10,
                        _ => return Err(de::Error::custom("not a native logRecord field")),
                    };
                    if seen & (1 << bit) != 0 {
                        return Err(de::Error::custom("member given twice"));
                    }
                    seen |= 1 << bit;
                    match bit {
                        0 => r.time = m.next_value::<U64Time>()?.0,
                        1 => {
                            m.next_value::<U64Time>()?;
                        }
                        2 => r.sev = m.next_value::<I32Num>()?.0,
                        3 => r.sev_text = Some(m.next_value::<Str>()?.0),
                        4 => r.event = Some(m.next_value::<Str>()?.0),
                        5 => r.body = Some(m.next_value::<StrBody>()?.0),
                        6 => r.attrs = m.next_value::<AttrList>()?.0,
                        7 | 8 => {
                            m.next_value::<U32Num>()?;
                        }
                        9 => {
                            let s = m.next_value::<Str>()?.0;
                            r.ids_ok &= s.is_empty() || canon::is_lower_hex(&s, 32);
                        }
                        _ => {
                            let s = m.next_value::<Str>()?.0;
                            r.ids_ok &= s.is_empty() || canon::is_lower_hex(&s, 16);
                        }
                    }
                }
                Ok(r)
            }
        }
        d.deserialize_map(V)
    }
}

// -- a generic validator: valid JSON, no object with a member twice -------------------------------

struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Checked;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_bool<X: de::Error>(self, _: bool) -> Result<Checked, X> {
                Ok(Checked)
            }
            fn visit_i64<X: de::Error>(self, _: i64) -> Result<Checked, X> {
                Ok(Checked)
            }
            fn visit_u64<X: de::Error>(self, _: u64) -> Result<Checked, X> {
                Ok(Checked)
            }
            fn visit_f64<X: de::Error>(self, _: f64) -> Result<Checked, X> {
                Ok(Checked)
            }
            fn visit_str<X: de::Error>(self, _: &str) -> Result<Checked, X> {
                Ok(Checked)
            }
            fn visit_unit<X: de::Error>(self) -> Result<Checked, X> {
                Ok(Checked)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Checked, A::Error> {
                while s.next_element::<Checked>()?.is_some() {}
                Ok(Checked)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Checked, A::Error> {
                let mut keys: HashSet<Cow<'de, str>> = HashSet::new();
                while let Some(k) = m.next_key::<Str>()? {
                    if !keys.insert(k.0) {
                        return Err(de::Error::custom("member given twice"));
                    }
                    m.next_value::<Checked>()?;
                }
                Ok(Checked)
            }
        }
        d.deserialize_any(V)
    }
}

// -- the envelope ---------------------------------------------------------------------------------

struct Request<'a>(Vec<ResourceLogs<'a>>);
struct ResourceLogs<'a> {
    resource: Attrs<'a>,
    scopes: Vec<Vec<&'a RawValue>>,
}
struct ScopeLogs<'a>(Vec<&'a RawValue>);
struct Resource<'a>(Attrs<'a>);
struct Scope;

fn dup<X: de::Error>(seen: &mut u8, bit: u8) -> Result<(), X> {
    if *seen & (1 << bit) != 0 {
        return Err(X::custom("member given twice"));
    }
    *seen |= 1 << bit;
    Ok(())
}

fn unique_attrs<X: de::Error>(mut a: Attrs) -> Result<Attrs, X> {
    if sort_unique(&mut a) {
        Ok(a)
    } else {
        Err(X::custom("duplicate key"))
    }
}

macro_rules! map_de {
    ($t:ident, $lt:lifetime, $what:expr, |$m:ident| $body:block) => {
        impl<$lt> Deserialize<$lt> for $t<$lt> {
            fn deserialize<D: Deserializer<$lt>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<$lt> Visitor<$lt> for V {
                    type Value = $t<$lt>;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str($what)
                    }
                    fn visit_map<A: MapAccess<$lt>>(self, mut $m: A) -> Result<Self::Value, A::Error> $body
                }
                d.deserialize_map(V)
            }
        }
    };
}

map_de!(Request, 'de, "an ExportLogsServiceRequest", |m| {
    let mut out = None;
    while let Some(k) = m.next_key::<Str>()? {
        match &*k.0 {
            "resourceLogs" if out.is_none() => out = Some(m.next_value::<Vec<ResourceLogs>>()?),
            _ => return Err(de::Error::custom("not the single member resourceLogs")),
        }
    }
    out.map(Request).ok_or_else(|| de::Error::custom("no resourceLogs"))
});

map_de!(ResourceLogs, 'de, "a resourceLogs item", |m| {
    let mut seen = 0u8;
    let mut rl = ResourceLogs { resource: Vec::new(), scopes: Vec::new() };
    while let Some(k) = m.next_key::<Str>()? {
        match &*k.0 {
            "resource" => {
                dup(&mut seen, 0)?;
                rl.resource = m.next_value::<Resource>()?.0;
            }
            "scopeLogs" => {
                dup(&mut seen, 1)?;
                rl.scopes = m.next_value::<Vec<ScopeLogs>>()?.into_iter().map(|s| s.0).collect();
            }
            "schemaUrl" => {
                dup(&mut seen, 2)?;
                m.next_value::<Str>()?;
            }
            _ => return Err(de::Error::custom("unexpected resourceLogs member")),
        }
    }
    Ok(rl)
});

map_de!(Resource, 'de, "a resource", |m| {
    let mut seen = 0u8;
    let mut attrs = Vec::new();
    while let Some(k) = m.next_key::<Str>()? {
        match &*k.0 {
            "attributes" => {
                dup(&mut seen, 0)?;
                attrs = unique_attrs(m.next_value::<AttrList>()?.0)?;
            }
            "droppedAttributesCount" => {
                dup(&mut seen, 1)?;
                m.next_value::<U32Num>()?;
            }
            _ => return Err(de::Error::custom("unexpected resource member")),
        }
    }
    Ok(Resource(attrs))
});

map_de!(ScopeLogs, 'de, "a scopeLogs item", |m| {
    let mut seen = 0u8;
    let mut recs = Vec::new();
    while let Some(k) = m.next_key::<Str>()? {
        match &*k.0 {
            "scope" => {
                dup(&mut seen, 0)?;
                m.next_value::<Scope>()?;
            }
            "logRecords" => {
                dup(&mut seen, 1)?;
                recs = m.next_value::<Vec<&'de RawValue>>()?;
            }
            "schemaUrl" => {
                dup(&mut seen, 2)?;
                m.next_value::<Str>()?;
            }
            _ => return Err(de::Error::custom("unexpected scopeLogs member")),
        }
    }
    Ok(ScopeLogs(recs))
});

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scope;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a scope")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Scope, A::Error> {
                let mut seen = 0u8;
                while let Some(k) = m.next_key::<Str>()? {
                    match &*k.0 {
                        "name" => {
                            dup(&mut seen, 0)?;
                            m.next_value::<Str>()?;
                        }
                        "version" => {
                            dup(&mut seen, 1)?;
                            m.next_value::<Str>()?;
                        }
                        "attributes" => {
                            dup(&mut seen, 2)?;
                            unique_attrs(m.next_value::<AttrList>()?.0)?;
                        }
                        "droppedAttributesCount" => {
                            dup(&mut seen, 3)?;
                            m.next_value::<U32Num>()?;
                        }
                        _ => return Err(de::Error::custom("unexpected scope member")),
                    }
                }
                Ok(Scope)
            }
        }
        d.deserialize_map(V)
    }
}

// -- the -0 number token --------------------------------------------------------------------------

/// Whether the JSON text has the number token `-0` (no fraction, no exponent) outside strings.
/// (For valid JSON; invalid text is refused by the parser anyway.)
pub fn has_negative_zero(b: &[u8]) -> bool {
    let n = b.len();
    let mut i = 0;
    let mut prev = b' ';
    while i < n {
        let c = b[i];
        if c == b'"' {
            i += 1;
            while i < n {
                match b[i] {
                    b'"' => break,
                    b'\\' => i += 2,
                    _ => i += 1,
                }
            }
            i += 1;
            prev = b'"';
            continue;
        }
        if c == b'-'
            && prev != b'e'
            && prev != b'E'
            && i + 1 < n
            && b[i + 1] == b'0'
            && !(i + 2 < n && matches!(b[i + 2], b'0'..=b'9' | b'.' | b'e' | b'E'))
        {
            return true;
        }
        prev = c;
        i += 1;
    }
    false
}

// -- the scan -------------------------------------------------------------------------------------

pub enum Item {
    Run {
        res: usize,
        stream: usize,
        first_seq: u64,
        n: usize,
        tmin: u64,
        tmax: u64,
        first_prev: [u8; 32],
        last_dig: [u8; 32],
        leaves: Vec<u8>,
        fps: Vec<u8>,
    },
    One { res: usize, stream: usize, seq: u64, t: u64, calc: [u8; 32], prev: [u8; 32], dig: [u8; 32] },
    Raw { res: usize, start: usize, end: usize },
}

pub struct Scan<'a> {
    pub resources: Vec<Attrs<'a>>,
    pub streams: Vec<String>,
    pub items: Vec<Item>,
}

/// A record handled natively: its stream, seq, time and the three digests.
struct Native {
    stream: [u8; 32],
    seq: u64,
    t: u64,
    calc: [u8; 32],
    prev: [u8; 32],
    dig: [u8; 32],
}

/// The integrity attributes and the digest the content gives; None: not a native record.
fn native(rec: Rec, buf: &mut Vec<u8>) -> Option<Native> {
    let mut rec = rec;
    if !rec.ids_ok || !sort_unique(&mut rec.attrs) {
        return None;
    }
    let event = rec.event.as_deref().unwrap_or("");
    if event == "audit.checkpoint" || event == "audit.gap" {
        return None;
    }
    let (mut stream, mut seq, mut prev, mut dig) = (None, None, None, None);
    for (k, v) in &rec.attrs {
        if !canon::is_integrity_key(k) {
            continue;
        }
        match (&**k, v) {
            ("audit.stream.id", Val::Str(s)) if canon::is_lower_hex(s, 32) => stream = Some(&**s),
            ("audit.stream.seq", Val::Int(i)) if *i >= 0 => seq = Some(*i as u64),
            ("audit.integrity.prev", Val::Str(s)) => prev = Some(canon::unhex32(s)?),
            ("audit.integrity.digest", Val::Str(s)) => dig = Some(canon::unhex32(s)?),
            _ => return None, // audit.integrity.record, or a wrong form
        }
    }
    let (stream, seq, prev, dig) = (stream?, seq?, prev?, dig?);
    buf.clear();
    buf.extend_from_slice(b"[\"v1\",\"");
    buf.extend_from_slice(stream.as_bytes());
    buf.extend_from_slice(b"\",");
    canon::push_u64(buf, seq);
    buf.push(b',');
    canon::push_content_tail(
        buf,
        event,
        rec.time,
        rec.sev as i64,
        rec.sev_text.as_deref().unwrap_or(""),
        rec.body.as_deref(),
        rec.attrs.iter().map(|(k, v)| (&**k, v)),
    );
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(prev);
    h.update(&buf[..]);
    let calc: [u8; 32] = h.finalize().into();
    let mut sid = [0u8; 32];
    sid.copy_from_slice(stream.as_bytes());
    Some(Native { stream: sid, seq, t: rec.time, calc, prev, dig })
}

struct OpenRun {
    res: usize,
    stream: usize,
    first_seq: u64,
    last_seq: u64,
    n: usize,
    tmin: u64,
    tmax: u64,
    first_prev: [u8; 32],
    last_dig: [u8; 32],
    leaves: Vec<u8>,
    fps: Vec<u8>,
}

impl OpenRun {
    fn close(self) -> Item {
        Item::Run {
            res: self.res,
            stream: self.stream,
            first_seq: self.first_seq,
            n: self.n,
            tmin: self.tmin,
            tmax: self.tmax,
            first_prev: self.first_prev,
            last_dig: self.last_dig,
            leaves: self.leaves,
            fps: self.fps,
        }
    }
}

/// None: decline the line (Python reads it).
pub fn scan<'a>(line: &'a [u8], fp: &Blake2bMac<U8>) -> Option<Scan<'a>> {
    if has_negative_zero(line) {
        return None;
    }
    let req: Request<'a> = serde_json::from_slice::<Request>(line).ok()?;
    let base = line.as_ptr() as usize;
    let mut out = Scan { resources: Vec::with_capacity(req.0.len()), streams: Vec::new(), items: Vec::new() };
    let mut stream_idx: HashMap<[u8; 32], usize> = HashMap::new();
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut run: Option<OpenRun> = None;
    for (res, rl) in req.0.into_iter().enumerate() {
        out.resources.push(rl.resource);
        for recs in rl.scopes {
            for raw in recs {
                let text = raw.get();
                let nat = match serde_json::from_str::<Rec>(text) {
                    Ok(rec) => native(rec, &mut buf),
                    Err(_) => {
                        serde_json::from_str::<Checked>(text).ok()?; // not even valid: decline the line
                        None
                    }
                };
                let Some(nr) = nat else {
                    if let Some(r) = run.take() {
                        out.items.push(r.close());
                    }
                    let start = text.as_ptr() as usize - base;
                    out.items.push(Item::Raw { res, start, end: start + text.len() });
                    continue;
                };
                let next = stream_idx.len();
                let stream = *stream_idx.entry(nr.stream).or_insert(next);
                if stream == next {
                    out.streams.push(String::from_utf8(nr.stream.to_vec()).ok()?);
                }
                if nr.calc != nr.dig {
                    if let Some(r) = run.take() {
                        out.items.push(r.close());
                    }
                    out.items.push(Item::One {
                        res,
                        stream,
                        seq: nr.seq,
                        t: nr.t,
                        calc: nr.calc,
                        prev: nr.prev,
                        dig: nr.dig,
                    });
                    continue;
                }
                let mut f = fp.clone();
                f.update(&nr.calc);
                f.update(&nr.dig);
                let fpv = f.finalize_fixed();
                let extends = matches!(&run, Some(r) if r.res == res && r.stream == stream
                    && r.last_seq.checked_add(1) == Some(nr.seq) && r.last_dig == nr.prev);
                if extends {
                    let r = run.as_mut().unwrap();
                    r.last_seq = nr.seq;
                    r.n += 1;
                    if nr.t != 0 && (r.tmin == 0 || nr.t < r.tmin) {
                        r.tmin = nr.t;
                    }
                    if nr.t > r.tmax {
                        r.tmax = nr.t;
                    }
                    r.last_dig = nr.dig;
                    r.leaves.extend_from_slice(&nr.dig);
                    r.fps.extend_from_slice(&fpv);
                } else {
                    if let Some(r) = run.take() {
                        out.items.push(r.close());
                    }
                    let mut leaves = Vec::with_capacity(32 * 64);
                    leaves.extend_from_slice(&nr.dig);
                    let mut fps = Vec::with_capacity(8 * 64);
                    fps.extend_from_slice(&fpv);
                    run = Some(OpenRun {
                        res,
                        stream,
                        first_seq: nr.seq,
                        last_seq: nr.seq,
                        n: 1,
                        tmin: nr.t,
                        tmax: nr.t,
                        first_prev: nr.prev,
                        last_dig: nr.dig,
                        leaves,
                        fps,
                    });
                }
            }
        }
    }
    if let Some(r) = run.take() {
        out.items.push(r.close());
    }
    Some(out)
}
