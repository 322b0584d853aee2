//! scan_line: one OTLP/JSON line read with typed serde visitors, accepted only in the strict forms
//! `otel_audit.decoding` reads exactly alike (docs/canonical-form.md §7). Any doubt about the line:
//! `None` (Python reads it). Any doubt about one record: a raw item (Python decodes that record).
//!
//! One pass over the line: inside a logRecord every value is read "softly" (a form that is valid JSON
//! but not one native takes is consumed, checked for repeated members, and marks the record raw); a
//! fault of the JSON itself (invalid, a member twice) fails the whole parse, and the line is declined.
//! A raw record's byte range comes from where its first member name lies in the line; when that is not
//! known (an empty record, an escaped first name, a record that is no object) the line is read again
//! in two passes (each record's exact text via serde_json's RawValue, then the record).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::marker::PhantomData;

use blake2::digest::consts::U8;
use blake2::digest::{FixedOutput, Mac};
use blake2::Blake2bMac;
use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::canon::{self, Val};

// -- strict pieces (the envelope) -----------------------------------------------------------------

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

/// Any JSON value, consumed; Err for a JSON object with a member name twice (anywhere inside).
struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Soft(Nothing)).map(|_| Checked)
    }
}

fn drain_seq<'de, A: SeqAccess<'de>>(mut s: A) -> Result<(), A::Error> {
    while s.next_element::<Checked>()?.is_some() {}
    Ok(())
}

/// The rest of an object, its earlier member names in `seen`: Err when a name repeats.
fn drain_map<'de, A: MapAccess<'de>>(mut m: A, mut seen: HashSet<Cow<'de, str>>) -> Result<(), A::Error> {
    while let Some(k) = m.next_key::<Str>()? {
        if !seen.insert(k.0) {
            return Err(de::Error::custom("member given twice"));
        }
        m.next_value::<Checked>()?;
    }
    Ok(())
}

// -- soft values: Some(native form) or None (valid JSON, consumed, not native) --------------------

/// What a native value accepts of each JSON form; every other form is consumed and gives None.
trait Shape<'de>: Sized {
    type Out;
    fn on_u64(self, _v: u64) -> Option<Self::Out> {
        None
    }
    fn on_i64(self, _v: i64) -> Option<Self::Out> {
        None
    }
    fn on_bool(self, _v: bool) -> Option<Self::Out> {
        None
    }
    fn on_str(self, _v: &str) -> Option<Self::Out> {
        None
    }
    fn on_borrowed_str(self, v: &'de str) -> Option<Self::Out> {
        self.on_str(v)
    }
    fn on_seq<A: SeqAccess<'de>>(self, s: A) -> Result<Option<Self::Out>, A::Error> {
        drain_seq(s).map(|_| None)
    }
    fn on_map<A: MapAccess<'de>>(self, m: A) -> Result<Option<Self::Out>, A::Error> {
        drain_map(m, HashSet::new()).map(|_| None)
    }
}

struct Soft<S>(S);

impl<'de, S: Shape<'de>> Visitor<'de> for Soft<S> {
    type Value = Option<S::Out>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<X: de::Error>(self, v: bool) -> Result<Self::Value, X> {
        Ok(self.0.on_bool(v))
    }
    fn visit_i64<X: de::Error>(self, v: i64) -> Result<Self::Value, X> {
        Ok(self.0.on_i64(v))
    }
    fn visit_u64<X: de::Error>(self, v: u64) -> Result<Self::Value, X> {
        Ok(self.0.on_u64(v))
    }
    fn visit_f64<X: de::Error>(self, v: f64) -> Result<Self::Value, X> {
        // serde_json reads the integer token -0 as the double -0.0, which Python refuses in any line (some
        // decoders read the integer 0): any negative zero declines the line (-0.0 too; Python reads those)
        if v == 0.0 && v.is_sign_negative() {
            return Err(de::Error::custom("a negative zero"));
        }
        Ok(None)
    }
    fn visit_str<X: de::Error>(self, v: &str) -> Result<Self::Value, X> {
        Ok(self.0.on_str(v))
    }
    fn visit_borrowed_str<X: de::Error>(self, v: &'de str) -> Result<Self::Value, X> {
        Ok(self.0.on_borrowed_str(v))
    }
    fn visit_unit<X: de::Error>(self) -> Result<Self::Value, X> {
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, s: A) -> Result<Self::Value, A::Error> {
        self.0.on_seq(s)
    }
    fn visit_map<A: MapAccess<'de>>(self, m: A) -> Result<Self::Value, A::Error> {
        self.0.on_map(m)
    }
}

impl<'de, S: Shape<'de>> DeserializeSeed<'de> for Soft<S> {
    type Value = Option<S::Out>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

/// Takes nothing: consumes (and checks) any value.
struct Nothing;
impl<'de> Shape<'de> for Nothing {
    type Out = ();
}

/// A JSON string.
struct SStr;
impl<'de> Shape<'de> for SStr {
    type Out = Cow<'de, str>;
    fn on_str(self, v: &str) -> Option<Self::Out> {
        Some(Cow::Owned(v.to_owned()))
    }
    fn on_borrowed_str(self, v: &'de str) -> Option<Self::Out> {
        Some(Cow::Borrowed(v))
    }
}

/// JSON true / false.
struct SBool;
impl<'de> Shape<'de> for SBool {
    type Out = bool;
    fn on_bool(self, v: bool) -> Option<bool> {
        Some(v)
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

/// uint64 times: a JSON integer or its canonical decimal string.
struct STime;
impl<'de> Shape<'de> for STime {
    type Out = u64;
    fn on_u64(self, v: u64) -> Option<u64> {
        Some(v)
    }
    fn on_str(self, v: &str) -> Option<u64> {
        canonical_u64(v)
    }
}

/// int64 intValue: a JSON integer or its canonical decimal string.
struct SI64;
impl<'de> Shape<'de> for SI64 {
    type Out = i64;
    fn on_u64(self, v: u64) -> Option<i64> {
        i64::try_from(v).ok()
    }
    fn on_i64(self, v: i64) -> Option<i64> {
        Some(v)
    }
    fn on_str(self, v: &str) -> Option<i64> {
        canonical_i64(v)
    }
}

/// int32 severityNumber: a JSON integer only.
struct SI32;
impl<'de> Shape<'de> for SI32 {
    type Out = i32;
    fn on_u64(self, v: u64) -> Option<i32> {
        i32::try_from(v).ok()
    }
    fn on_i64(self, v: i64) -> Option<i32> {
        i32::try_from(v).ok()
    }
}

/// uint32 flags, droppedAttributesCount: a JSON integer only.
struct SU32;
impl<'de> Shape<'de> for SU32 {
    type Out = u32;
    fn on_u64(self, v: u64) -> Option<u32> {
        u32::try_from(v).ok()
    }
}

/// An AnyValue of exactly one of stringValue / boolValue / intValue.
struct SAny;
impl<'de> Shape<'de> for SAny {
    type Out = Val<'de>;
    fn on_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Option<Val<'de>>, A::Error> {
        let Some(k) = m.next_key::<Str>()? else { return Ok(None) };
        let v = match &*k.0 {
            "stringValue" => m.next_value_seed(Soft(SStr))?.map(Val::Str),
            "boolValue" => m.next_value_seed(Soft(SBool))?.map(Val::Bool),
            "intValue" => m.next_value_seed(Soft(SI64))?.map(Val::Int),
            _ => {
                m.next_value::<Checked>()?;
                None
            }
        };
        match m.next_key::<Str>()? {
            None => Ok(v),
            Some(k2) => {
                let mut seen = HashSet::from([k.0]);
                if !seen.insert(k2.0) {
                    return Err(de::Error::custom("member given twice"));
                }
                m.next_value::<Checked>()?;
                drain_map(m, seen).map(|_| None)
            }
        }
    }
}

/// A body of exactly {"stringValue": string}.
struct SBody;
impl<'de> Shape<'de> for SBody {
    type Out = Cow<'de, str>;
    fn on_map<A: MapAccess<'de>>(self, m: A) -> Result<Option<Self::Out>, A::Error> {
        Ok(match SAny.on_map(m)? {
            Some(Val::Str(s)) => Some(s),
            _ => None,
        })
    }
}

/// A KeyValue of exactly `key` (string) and `value` (a native AnyValue).
struct SKeyVal;
impl<'de> Shape<'de> for SKeyVal {
    type Out = (Cow<'de, str>, Val<'de>);
    fn on_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Option<Self::Out>, A::Error> {
        let (mut key, mut val) = (None, None);
        let (mut has_key, mut has_val, mut ok) = (false, false, true);
        let mut other: Option<HashSet<Cow<'de, str>>> = None;
        while let Some(k) = m.next_key::<Str>()? {
            match &*k.0 {
                "key" if !has_key => {
                    has_key = true;
                    key = m.next_value_seed(Soft(SStr))?;
                }
                "value" if !has_val => {
                    has_val = true;
                    val = m.next_value_seed(Soft(SAny))?;
                }
                "key" | "value" => return Err(de::Error::custom("member given twice")),
                _ => {
                    ok = false;
                    if !other.get_or_insert_with(HashSet::new).insert(k.0) {
                        return Err(de::Error::custom("member given twice"));
                    }
                    m.next_value::<Checked>()?;
                }
            }
        }
        Ok(match (ok, key, val) {
            (true, Some(k), Some(v)) => Some((k, v)),
            _ => None,
        })
    }
}

pub type Attrs<'a> = Vec<(Cow<'a, str>, Val<'a>)>;

/// A KeyValue list of native KeyValues (in the order given).
struct SAttrs;
impl<'de> Shape<'de> for SAttrs {
    type Out = Attrs<'de>;
    fn on_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Option<Attrs<'de>>, A::Error> {
        let mut out = Vec::with_capacity(s.size_hint().unwrap_or(8));
        let mut ok = true;
        while let Some(kv) = s.next_element_seed(Soft(SKeyVal))? {
            match kv {
                Some(kv) if ok => out.push(kv),
                _ => ok = false,
            }
        }
        Ok(if ok { Some(out) } else { None })
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
}

/// One logRecord as read: `rec` when every field has a native form, and where its first member
/// name begins in the line (when that name is borrowed from it).
pub struct RecOut<'a> {
    rec: Option<Rec<'a>>,
    first_key: Option<*const u8>,
}

// Safety: the pointer is only compared with the line's own address range, never dereferenced.
unsafe impl Send for RecOut<'_> {}

struct SRec;
impl<'de> Shape<'de> for SRec {
    type Out = RecOut<'de>;
    fn on_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Option<RecOut<'de>>, A::Error> {
        let mut r = Rec::default();
        let mut ok = true;
        let mut seen: u16 = 0;
        let mut first_key = None;
        let mut other: Option<HashSet<Cow<'de, str>>> = None;
        let mut first = true;
        while let Some(k) = m.next_key::<Str>()? {
            if first {
                first = false;
                if let Cow::Borrowed(s) = k.0 {
                    first_key = Some(s.as_ptr());
                }
            }
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
                _ => {
                    ok = false;
                    if !other.get_or_insert_with(HashSet::new).insert(k.0) {
                        return Err(de::Error::custom("member given twice"));
                    }
                    m.next_value::<Checked>()?;
                    continue;
                }
            };
            if seen & (1 << bit) != 0 {
                return Err(de::Error::custom("member given twice"));
            }
            seen |= 1 << bit;
            match bit {
                0 => match m.next_value_seed(Soft(STime))? {
                    Some(t) => r.time = t,
                    None => ok = false,
                },
                1 => ok &= m.next_value_seed(Soft(STime))?.is_some(),
                2 => match m.next_value_seed(Soft(SI32))? {
                    Some(s) => r.sev = s,
                    None => ok = false,
                },
                3 => {
                    r.sev_text = m.next_value_seed(Soft(SStr))?;
                    ok &= r.sev_text.is_some();
                }
                4 => {
                    r.event = m.next_value_seed(Soft(SStr))?;
                    ok &= r.event.is_some();
                }
                5 => {
                    r.body = m.next_value_seed(Soft(SBody))?;
                    ok &= r.body.is_some();
                }
                6 => match m.next_value_seed(Soft(SAttrs))? {
                    Some(a) => r.attrs = a,
                    None => ok = false,
                },
                7 | 8 => ok &= m.next_value_seed(Soft(SU32))?.is_some(),
                _ => {
                    let n = if bit == 9 { 32 } else { 16 };
                    ok &= matches!(m.next_value_seed(Soft(SStr))?, Some(s) if s.is_empty() || canon::is_lower_hex(&s, n));
                }
            }
        }
        Ok(Some(RecOut { rec: if ok { Some(r) } else { None }, first_key }))
    }
}

impl<'de> Deserialize<'de> for RecOut<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // a record that is no object: valid JSON, not native, place unknown
        Ok(d.deserialize_any(Soft(SRec))?.unwrap_or(RecOut { rec: None, first_key: None }))
    }
}

// -- the envelope (strict: anything unexpected fails the parse, and the line is declined) ----------

struct Request<'a, R>(Vec<ResourceLogs<'a, R>>);
struct ResourceLogs<'a, R> {
    resource: Attrs<'a>,
    scopes: Vec<Vec<R>>,
}
struct ScopeLogs<R>(Vec<R>);
struct Resource<'a>(Attrs<'a>);
struct Scope;

/// Envelope attributes: native KeyValues with unique keys, else Err (the line is declined).
fn envelope_attrs<'de, A: MapAccess<'de>>(m: &mut A) -> Result<Attrs<'de>, A::Error> {
    let a = m.next_value_seed(Soft(SAttrs))?.ok_or_else(|| de::Error::custom("attributes"))?;
    // unique keys; the list keeps its order (the dict Python builds has it too)
    let mut keys: Vec<&str> = a.iter().map(|(k, _)| &**k).collect();
    keys.sort_unstable();
    if keys.windows(2).any(|w| w[0] == w[1]) {
        return Err(de::Error::custom("duplicate key"));
    }
    drop(keys);
    Ok(a)
}

fn once<X: de::Error>(seen: &mut u8, bit: u8) -> Result<(), X> {
    if *seen & (1 << bit) != 0 {
        return Err(X::custom("member given twice"));
    }
    *seen |= 1 << bit;
    Ok(())
}

fn string<'de, A: MapAccess<'de>>(m: &mut A) -> Result<(), A::Error> {
    m.next_value::<Str>().map(|_| ())
}

fn u32_field<'de, A: MapAccess<'de>>(m: &mut A) -> Result<(), A::Error> {
    m.next_value_seed(Soft(SU32))?.map(|_| ()).ok_or_else(|| de::Error::custom("not a uint32"))
}

macro_rules! envelope {
    ($t:ty, $what:expr, |$m:ident| $body:block) => {
        impl<'de, R: Deserialize<'de>> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V<R>(PhantomData<R>);
                impl<'de, R: Deserialize<'de>> Visitor<'de> for V<R> {
                    type Value = $t;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str($what)
                    }
                    fn visit_map<A: MapAccess<'de>>(self, mut $m: A) -> Result<Self::Value, A::Error> $body
                }
                d.deserialize_map(V::<R>(PhantomData))
            }
        }
    };
}

envelope!(Request<'de, R>, "an ExportLogsServiceRequest", |m| {
    let mut out = None;
    while let Some(k) = m.next_key::<Str>()? {
        match &*k.0 {
            "resourceLogs" if out.is_none() => out = Some(m.next_value::<Vec<ResourceLogs<'de, R>>>()?),
            _ => return Err(de::Error::custom("not the single member resourceLogs")),
        }
    }
    out.map(Request).ok_or_else(|| de::Error::custom("no resourceLogs"))
});

envelope!(ResourceLogs<'de, R>, "a resourceLogs item", |m| {
    let mut seen = 0u8;
    let mut rl = ResourceLogs { resource: Vec::new(), scopes: Vec::new() };
    while let Some(k) = m.next_key::<Str>()? {
        match &*k.0 {
            "resource" => {
                once(&mut seen, 0)?;
                rl.resource = m.next_value::<Resource>()?.0;
            }
            "scopeLogs" => {
                once(&mut seen, 1)?;
                rl.scopes = m.next_value::<Vec<ScopeLogs<R>>>()?.into_iter().map(|s| s.0).collect();
            }
            "schemaUrl" => {
                once(&mut seen, 2)?;
                string(&mut m)?;
            }
            _ => return Err(de::Error::custom("unexpected resourceLogs member")),
        }
    }
    Ok(rl)
});

envelope!(ScopeLogs<R>, "a scopeLogs item", |m| {
    let mut seen = 0u8;
    let mut recs = Vec::new();
    while let Some(k) = m.next_key::<Str>()? {
        match &*k.0 {
            "scope" => {
                once(&mut seen, 0)?;
                m.next_value::<Scope>()?;
            }
            "logRecords" => {
                once(&mut seen, 1)?;
                recs = m.next_value::<Vec<R>>()?;
            }
            "schemaUrl" => {
                once(&mut seen, 2)?;
                string(&mut m)?;
            }
            _ => return Err(de::Error::custom("unexpected scopeLogs member")),
        }
    }
    Ok(ScopeLogs(recs))
});

impl<'de> Deserialize<'de> for Resource<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Resource<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a resource")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut seen = 0u8;
                let mut attrs = Vec::new();
                while let Some(k) = m.next_key::<Str>()? {
                    match &*k.0 {
                        "attributes" => {
                            once(&mut seen, 0)?;
                            attrs = envelope_attrs(&mut m)?;
                        }
                        "droppedAttributesCount" => {
                            once(&mut seen, 1)?;
                            u32_field(&mut m)?;
                        }
                        _ => return Err(de::Error::custom("unexpected resource member")),
                    }
                }
                Ok(Resource(attrs))
            }
        }
        d.deserialize_map(V)
    }
}

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
                            once(&mut seen, 0)?;
                            string(&mut m)?;
                        }
                        "version" => {
                            once(&mut seen, 1)?;
                            string(&mut m)?;
                        }
                        "attributes" => {
                            once(&mut seen, 2)?;
                            envelope_attrs(&mut m)?;
                        }
                        "droppedAttributesCount" => {
                            once(&mut seen, 3)?;
                            u32_field(&mut m)?;
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

/// The end (one past the matching `}`) of the JSON object starting at `start` in valid JSON text.
fn object_end(b: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = start;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return (b[i] == b'}').then_some(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Where the record whose first member name begins at `key` starts: the `{` before its opening quote.
fn object_start(b: &[u8], key: usize) -> Option<usize> {
    let mut i = key.checked_sub(1)?; // the quote
    if b.get(i) != Some(&b'"') {
        return None;
    }
    while i > 0 {
        i -= 1;
        match b[i] {
            b' ' | b'\t' | b'\n' | b'\r' => continue,
            b'{' => return Some(i),
            _ => return None,
        }
    }
    None
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
fn native(mut rec: Rec, buf: &mut Vec<u8>) -> Option<Native> {
    if !sort_unique(&mut rec.attrs) {
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

/// Records into items: runs, ones and raws, in record order.
struct Builder<'k> {
    fp: &'k Blake2bMac<U8>,
    stream_idx: HashMap<[u8; 32], usize>,
    streams: Vec<String>,
    items: Vec<Item>,
    run: Option<OpenRun>,
    buf: Vec<u8>,
}

impl Builder<'_> {
    fn close(&mut self) {
        if let Some(r) = self.run.take() {
            self.items.push(r.close());
        }
    }

    fn raw(&mut self, res: usize, start: usize, end: usize) {
        self.close();
        self.items.push(Item::Raw { res, start, end });
    }

    /// A record with native fields: false when it is not a native record after all (then a raw item).
    fn record(&mut self, res: usize, rec: Rec) -> bool {
        let Some(nr) = native(rec, &mut self.buf) else { return false };
        let next = self.stream_idx.len();
        let stream = *self.stream_idx.entry(nr.stream).or_insert(next);
        if stream == next {
            // stream ids are 32 ASCII hex digits
            self.streams.push(nr.stream.iter().map(|&c| c as char).collect());
        }
        if nr.calc != nr.dig {
            self.close();
            self.items.push(Item::One { res, stream, seq: nr.seq, t: nr.t, calc: nr.calc, prev: nr.prev, dig: nr.dig });
            return true;
        }
        let mut f = self.fp.clone();
        f.update(&nr.calc);
        f.update(&nr.dig);
        let fpv = f.finalize_fixed();
        match &mut self.run {
            Some(r)
                if r.res == res
                    && r.stream == stream
                    && r.last_seq.checked_add(1) == Some(nr.seq)
                    && r.last_dig == nr.prev =>
            {
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
            }
            _ => {
                self.close();
                let mut leaves = Vec::with_capacity(32 * 64);
                leaves.extend_from_slice(&nr.dig);
                let mut fps = Vec::with_capacity(8 * 64);
                fps.extend_from_slice(&fpv);
                self.run = Some(OpenRun {
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
        true
    }
}

/// The most records of one line the core hands back raw when they outnumber the ones it read itself: a line of
/// mostly records it cannot read (unsigned, empty `{}`, unusual values) is Python's to read, which holds far
/// less per record than a list of their places would (the results of a batch of lines are held at once).
const MAX_RAW: usize = 64;

/// None: decline the line (Python reads it).
pub fn scan<'a>(line: &'a [u8], fp: &Blake2bMac<U8>) -> Option<Scan<'a>> {
    let s = scan_all(line, fp)?;
    let mut raw = 0usize;
    let mut read = 0usize;
    for it in &s.items {
        match it {
            Item::Raw { .. } => raw += 1,
            Item::One { .. } => read += 1,
            Item::Run { n, .. } => read += *n,
        }
    }
    if raw > MAX_RAW && raw > read {
        return None;
    }
    Some(s)
}

fn scan_all<'a>(line: &'a [u8], fp: &Blake2bMac<U8>) -> Option<Scan<'a>> {
    // UTF-8 checked once for the line (serde_json's from_slice checks each string again)
    let text = std::str::from_utf8(line).ok()?;
    let req: Request<'a, RecOut<'a>> = serde_json::from_str(text).ok()?;
    let base = line.as_ptr() as usize;
    let mut b = Builder { fp, stream_idx: HashMap::new(), streams: Vec::new(), items: Vec::new(), run: None,
                          buf: Vec::with_capacity(1024) };
    let mut resources = Vec::with_capacity(req.0.len());
    for (res, rl) in req.0.into_iter().enumerate() {
        resources.push(rl.resource);
        for recs in rl.scopes {
            for r in recs {
                if let Some(rec) = r.rec {
                    if b.record(res, rec) {
                        continue;
                    }
                }
                // a raw record: its place in the line, from its first member name
                let at = r.first_key.map(|p| p as usize).filter(|&p| p > base && p < base + line.len());
                let Some(start) = at.and_then(|p| object_start(line, p - base)) else {
                    return scan_two_pass(line, fp);
                };
                let end = object_end(line, start)?;
                b.raw(res, start, end);
            }
        }
    }
    b.close();
    Some(Scan { resources, streams: b.streams, items: b.items })
}

/// The same, each record's exact text taken with serde_json's RawValue and then read.
fn scan_two_pass<'a>(line: &'a [u8], fp: &Blake2bMac<U8>) -> Option<Scan<'a>> {
    let req: Request<'a, &'a RawValue> = serde_json::from_str(std::str::from_utf8(line).ok()?).ok()?;
    let base = line.as_ptr() as usize;
    let mut b = Builder { fp, stream_idx: HashMap::new(), streams: Vec::new(), items: Vec::new(), run: None,
                          buf: Vec::with_capacity(1024) };
    let mut resources = Vec::with_capacity(req.0.len());
    for (res, rl) in req.0.into_iter().enumerate() {
        resources.push(rl.resource);
        for recs in rl.scopes {
            for raw in recs {
                let text = raw.get();
                let r: RecOut = serde_json::from_str(text).ok()?; // not even valid: decline the line
                if let Some(rec) = r.rec {
                    if b.record(res, rec) {
                        continue;
                    }
                }
                let start = text.as_ptr() as usize - base;
                b.raw(res, start, start + text.len());
            }
        }
    }
    b.close();
    Some(Scan { resources, streams: b.streams, items: b.items })
}
