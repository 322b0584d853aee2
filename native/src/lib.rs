//! otel_audit_native: an accelerator of otel-audit's pure-Python integrity core.
//!
//! Every function gives byte-identical results to the Python reference (otel_audit/canonical.py,
//! decoding.py, merkle.py, verify/) or declines (returns None) so that Python handles the input.

use std::borrow::Cow;
use std::cell::RefCell;

use blake2::digest::consts::U8;
use blake2::digest::Mac;
use blake2::Blake2bMac;
use pyo3::exceptions::PyValueError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyInt, PyList, PyString, PyTuple};
use pyo3::IntoPyObjectExt;
use sha2::{Digest, Sha256};

mod canon;
mod scan;

use canon::Val;

/// Bumped whenever the interface changes; the Python side refuses another value.
const ABI: i32 = 2;

thread_local! {
    static BUF: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(1024));
}

/// The UTF-8 of an exact str object; None (error cleared) for a lone surrogate.
///
/// Safety: `p` is a live str object; the bytes live as long as it (CPython caches them in it).
unsafe fn utf8<'a>(p: *mut ffi::PyObject) -> Option<&'a str> {
    let mut n: ffi::Py_ssize_t = 0;
    let s = ffi::PyUnicode_AsUTF8AndSize(p, &mut n);
    if s.is_null() {
        ffi::PyErr_Clear();
        return None;
    }
    Some(std::str::from_utf8_unchecked(std::slice::from_raw_parts(s as *const u8, n as usize)))
}

fn opt_str<'a>(o: &'a Bound<'_, PyAny>) -> Option<Option<&'a str>> {
    if o.is_none() {
        Some(None)
    } else if o.is_exact_instance_of::<PyString>() {
        unsafe { utf8(o.as_ptr()) }.map(Some)
    } else {
        None
    }
}

fn exact_u64(o: &Bound<'_, PyAny>) -> Option<u64> {
    if !o.is_exact_instance_of::<PyInt>() {
        return None;
    }
    let v = unsafe { ffi::PyLong_AsUnsignedLongLong(o.as_ptr()) };
    if v == u64::MAX && unsafe { !ffi::PyErr_Occurred().is_null() } {
        unsafe { ffi::PyErr_Clear() };
        return None;
    }
    Some(v)
}

fn exact_i64(o: &Bound<'_, PyAny>) -> Option<i64> {
    if !o.is_exact_instance_of::<PyInt>() {
        return None;
    }
    let mut overflow = 0;
    let v = unsafe { ffi::PyLong_AsLongLongAndOverflow(o.as_ptr(), &mut overflow) };
    if overflow != 0 || (v == -1 && unsafe { !ffi::PyErr_Occurred().is_null() }) {
        unsafe { ffi::PyErr_Clear() };
        return None;
    }
    Some(v)
}

/// The attribute dict's items as plain values; None unless it is an exact dict of exact str keys
/// and exact str / bool / int64 values without integrity keys.
fn plain_attrs<'a>(d: &'a Bound<'_, PyAny>) -> Option<Vec<(&'a str, Val<'a>)>> {
    if !d.is_exact_instance_of::<PyDict>() {
        return None;
    }
    let dp = d.as_ptr();
    let mut out = Vec::with_capacity(unsafe { ffi::PyDict_Size(dp) } as usize);
    let mut pos: ffi::Py_ssize_t = 0;
    let mut k: *mut ffi::PyObject = std::ptr::null_mut();
    let mut v: *mut ffi::PyObject = std::ptr::null_mut();
    let (tstr, tint, tbool) = (
        std::ptr::addr_of_mut!(ffi::PyUnicode_Type),
        std::ptr::addr_of_mut!(ffi::PyLong_Type),
        std::ptr::addr_of_mut!(ffi::PyBool_Type),
    );
    // Safety: the GIL is held and no Python code runs while we walk (borrowed references of a
    // dict the caller keeps alive).
    unsafe {
        while ffi::PyDict_Next(dp, &mut pos, &mut k, &mut v) != 0 {
            if ffi::Py_TYPE(k) != tstr {
                return None;
            }
            let key = utf8(k)?;
            if canon::is_integrity_key(key) {
                return None;
            }
            let t = ffi::Py_TYPE(v);
            let val = if t == tstr {
                Val::Str(Cow::Borrowed(utf8(v)?))
            } else if t == tbool {
                Val::Bool(v == ffi::Py_True())
            } else if t == tint {
                let mut overflow = 0;
                let i = ffi::PyLong_AsLongLongAndOverflow(v, &mut overflow);
                if overflow != 0 || (i == -1 && !ffi::PyErr_Occurred().is_null()) {
                    ffi::PyErr_Clear();
                    return None;
                }
                Val::Int(i)
            } else {
                return None;
            };
            out.push((key, val));
        }
    }
    out.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    Some(out)
}

/// The canonical content array into `buf`; None where Python's fast path is not certain.
#[allow(clippy::too_many_arguments)]
fn content_into(
    buf: &mut Vec<u8>,
    event_name: &Bound<'_, PyAny>,
    time_unix_nano: &Bound<'_, PyAny>,
    severity_number: &Bound<'_, PyAny>,
    severity_text: &Bound<'_, PyAny>,
    body: &Bound<'_, PyAny>,
    attributes: &Bound<'_, PyAny>,
) -> Option<()> {
    let event = opt_str(event_name)?;
    let time = exact_u64(time_unix_nano)?;
    let sev = exact_i64(severity_number)?;
    let text = opt_str(severity_text)?;
    let body = opt_str(body)?;
    let attrs = plain_attrs(attributes)?;
    buf.clear();
    buf.push(b'[');
    canon::push_content_tail(
        buf,
        event.unwrap_or(""),
        time,
        sev,
        text.unwrap_or(""),
        body,
        attrs.iter().map(|(k, v)| (*k, v)),
    );
    Some(())
}

/// The signing processor's per-record call: (digest, digest hex, content or None), or None to decline.
#[pyfunction]
#[pyo3(signature = (prev, head, event_name, time_unix_nano, severity_number, severity_text, body, attributes, want_content))]
#[allow(clippy::too_many_arguments)]
fn sign<'py>(
    py: Python<'py>,
    prev: &Bound<'py, PyAny>,
    head: &Bound<'py, PyAny>,
    event_name: &Bound<'py, PyAny>,
    time_unix_nano: &Bound<'py, PyAny>,
    severity_number: &Bound<'py, PyAny>,
    severity_text: &Bound<'py, PyAny>,
    body: &Bound<'py, PyAny>,
    attributes: &Bound<'py, PyAny>,
    want_content: bool,
) -> PyResult<PyObject> {
    let (Ok(prev), Ok(head)) = (prev.downcast::<PyBytes>(), head.downcast::<PyBytes>()) else {
        return Ok(py.None());
    };
    let prev = prev.as_bytes();
    if prev.len() != 32 {
        return Ok(py.None());
    }
    BUF.with(|cell| {
        // one buffer per thread, reused; a fresh one should a call ever nest (it cannot: no Python runs)
        let mut fresh = Vec::new();
        let mut held = cell.try_borrow_mut().ok();
        let buf: &mut Vec<u8> = match held.as_deref_mut() {
            Some(b) => b,
            None => &mut fresh,
        };
        if content_into(buf, event_name, time_unix_nano, severity_number, severity_text, body, attributes).is_none()
        {
            return Ok(py.None());
        }
        let mut h = Sha256::new();
        h.update([0u8]);
        h.update(prev);
        h.update(head.as_bytes());
        h.update(&buf[1..]);
        let d: [u8; 32] = h.finalize().into();
        let hex = canon::hex32(&d);
        let content = if want_content { PyBytes::new(py, buf).into_any() } else { py.None().into_bound(py) };
        let t = PyTuple::new(
            py,
            [
                PyBytes::new(py, &d).into_any(),
                // Safety: hex digits are ASCII
                PyString::new(py, unsafe { std::str::from_utf8_unchecked(&hex) }).into_any(),
                content,
            ],
        )?;
        if buf.capacity() > 1 << 20 {
            buf.clear();
            buf.shrink_to(4096); // memory stays proportional to typical records
        }
        Ok(t.into_any().unbind())
    })
}

/// The signing processor's whole per-record step in one call: the canonical content of the record, its
/// digest SHA-256(0x00 || prev || stream_prefix || seq || "," || content[1:]) and the integrity attributes
/// written into `attributes` (audit.stream.id = stream_id, audit.stream.seq = seq, audit.integrity.prev =
/// prev_hex, audit.integrity.digest, and audit.integrity.record = the content when `embed`). Returns
/// (digest, digest hex), or None, having written nothing, where `sign` would decline.
#[pyfunction]
#[pyo3(signature = (prev, stream_prefix, seq, event_name, time_unix_nano, severity_number, severity_text, body,
                    attributes, stream_id, prev_hex, embed))]
#[allow(clippy::too_many_arguments)]
fn sign_into<'py>(
    py: Python<'py>,
    prev: &Bound<'py, PyAny>,
    stream_prefix: &Bound<'py, PyAny>,
    seq: &Bound<'py, PyAny>,
    event_name: &Bound<'py, PyAny>,
    time_unix_nano: &Bound<'py, PyAny>,
    severity_number: &Bound<'py, PyAny>,
    severity_text: &Bound<'py, PyAny>,
    body: &Bound<'py, PyAny>,
    attributes: &Bound<'py, PyAny>,
    stream_id: &Bound<'py, PyAny>,
    prev_hex: &Bound<'py, PyAny>,
    embed: bool,
) -> PyResult<PyObject> {
    let (Ok(prev_b), Ok(prefix)) = (prev.downcast::<PyBytes>(), stream_prefix.downcast::<PyBytes>()) else {
        return Ok(py.None());
    };
    let prev_b = prev_b.as_bytes();
    let Some(seq_v) = exact_u64(seq) else {
        return Ok(py.None());
    };
    if prev_b.len() != 32 || !stream_id.is_exact_instance_of::<PyString>() || !prev_hex.is_exact_instance_of::<PyString>()
    {
        return Ok(py.None());
    }
    let Ok(d) = attributes.downcast_exact::<PyDict>() else {
        return Ok(py.None());
    };
    BUF.with(|cell| {
        let mut fresh = Vec::new();
        let mut held = cell.try_borrow_mut().ok();
        let buf: &mut Vec<u8> = match held.as_deref_mut() {
            Some(b) => b,
            None => &mut fresh,
        };
        if content_into(buf, event_name, time_unix_nano, severity_number, severity_text, body, attributes).is_none()
        {
            return Ok(py.None());
        }
        let mut num = [0u8; 24];
        let digits = decimal(seq_v, &mut num);
        let mut h = Sha256::new();
        h.update([0u8]);
        h.update(prev_b);
        h.update(prefix.as_bytes());
        h.update(digits);
        h.update(b",");
        h.update(&buf[1..]);
        let dg: [u8; 32] = h.finalize().into();
        let hex = canon::hex32(&dg);
        // Safety: hex digits are ASCII
        let hex_s = PyString::new(py, unsafe { std::str::from_utf8_unchecked(&hex) });
        d.set_item(pyo3::intern!(py, "audit.stream.id"), stream_id)?;
        d.set_item(pyo3::intern!(py, "audit.stream.seq"), seq)?;
        d.set_item(pyo3::intern!(py, "audit.integrity.prev"), prev_hex)?;
        d.set_item(pyo3::intern!(py, "audit.integrity.digest"), &hex_s)?;
        if embed {
            // Safety: canonical content is UTF-8 (built from str values)
            let text = PyString::new(py, unsafe { std::str::from_utf8_unchecked(buf) });
            d.set_item(pyo3::intern!(py, "audit.integrity.record"), text)?;
        }
        let t = PyTuple::new(py, [PyBytes::new(py, &dg).into_any(), hex_s.into_any()])?;
        if buf.capacity() > 1 << 20 {
            buf.clear();
            buf.shrink_to(4096);
        }
        Ok(t.into_any().unbind())
    })
}

fn decimal(mut v: u64, out: &mut [u8; 24]) -> &[u8] {
    let mut i = out.len();
    loop {
        i -= 1;
        out[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &out[i..]
}

/// canonical.content_bytes for the inputs `sign` takes; None where `sign` would decline.
#[pyfunction]
fn content_bytes<'py>(
    py: Python<'py>,
    event_name: &Bound<'py, PyAny>,
    time_unix_nano: &Bound<'py, PyAny>,
    severity_number: &Bound<'py, PyAny>,
    severity_text: &Bound<'py, PyAny>,
    body: &Bound<'py, PyAny>,
    attributes: &Bound<'py, PyAny>,
) -> PyResult<PyObject> {
    let mut buf = Vec::new();
    Ok(match content_into(&mut buf, event_name, time_unix_nano, severity_number, severity_text, body, attributes) {
        Some(()) => PyBytes::new(py, &buf).into_any().unbind(),
        None => py.None(),
    })
}

fn val_py(py: Python<'_>, v: &Val) -> PyResult<PyObject> {
    match v {
        Val::Str(s) => s.as_ref().into_py_any(py),
        Val::Bool(b) => b.into_py_any(py),
        Val::Int(i) => i.into_py_any(py),
    }
}

/// One OTLP/JSON line: (resources, items), or None to decline (see the brief / docs).
#[pyfunction]
fn scan_line<'py>(py: Python<'py>, line: &Bound<'py, PyBytes>, fp_key: &[u8]) -> PyResult<PyObject> {
    let mac = fp_mac(fp_key)?;
    let data: &[u8] = line.as_bytes();
    match py.allow_threads(|| scan::scan(data, &mac)) {
        Some(s) => scan_to_py(py, s),
        None => Ok(py.None()),
    }
}

fn fp_mac(fp_key: &[u8]) -> PyResult<Blake2bMac<U8>> {
    if !(16..=64).contains(&fp_key.len()) {
        return Err(PyValueError::new_err("fp_key must be 16 to 64 bytes"));
    }
    <Blake2bMac<U8> as Mac>::new_from_slice(fp_key).map_err(|_| PyValueError::new_err("fp_key must be 16 to 64 bytes"))
}

/// `scan_line` of many lines at once: the same result for each (None where it declines), the lines split into
/// `threads` contiguous parts scanned in parallel without the GIL (0: one thread per available core).
#[pyfunction]
fn scan_lines<'py>(py: Python<'py>, lines: &Bound<'py, PyList>, fp_key: &[u8], threads: usize) -> PyResult<PyObject> {
    let mac = fp_mac(fp_key)?;
    let held: Vec<Bound<'py, PyBytes>> =
        lines.iter().map(|x| x.downcast_into::<PyBytes>().map_err(PyErr::from)).collect::<PyResult<_>>()?;
    let data: Vec<&[u8]> = held.iter().map(|b| b.as_bytes()).collect();
    let want = if threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { threads };
    let parts = want.clamp(1, 64).min(data.len().max(1));
    let scans: Vec<Option<scan::Scan>> = py.allow_threads(|| {
        if parts <= 1 {
            return data.iter().map(|d| scan::scan(d, &mac)).collect();
        }
        let size = data.len().div_ceil(parts);
        std::thread::scope(|sc| {
            let handles: Vec<_> = data
                .chunks(size)
                .map(|chunk| {
                    let mac = mac.clone();
                    sc.spawn(move || chunk.iter().map(|d| scan::scan(d, &mac)).collect::<Vec<_>>())
                })
                .collect();
            handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
        })
    });
    if scans.len() != data.len() {
        return Err(PyValueError::new_err("a scanning thread failed"));
    }
    let out = PyList::empty(py);
    for s in scans {
        match s {
            Some(s) => out.append(scan_to_py(py, s)?)?,
            None => out.append(py.None())?,
        }
    }
    Ok(out.into_any().unbind())
}

fn scan_to_py(py: Python<'_>, s: scan::Scan) -> PyResult<PyObject> {
    let resources = PyList::empty(py);
    for attrs in &s.resources {
        let d = PyDict::new(py);
        for (k, v) in attrs {
            d.set_item(k.as_ref(), val_py(py, v)?)?;
        }
        resources.append(d)?;
    }
    let streams: Vec<Bound<PyString>> = s.streams.iter().map(|x| PyString::new(py, x)).collect();
    let items = PyList::empty(py);
    for it in &s.items {
        let t = match it {
            scan::Item::Run { res, stream, first_seq, n, tmin, tmax, first_prev, last_dig, leaves, fps } => {
                PyTuple::new(
                    py,
                    [
                        res.into_py_any(py)?,
                        streams[*stream].clone().into_any().unbind(),
                        first_seq.into_py_any(py)?,
                        n.into_py_any(py)?,
                        tmin.into_py_any(py)?,
                        tmax.into_py_any(py)?,
                        PyBytes::new(py, first_prev).into_any().unbind(),
                        PyBytes::new(py, last_dig).into_any().unbind(),
                        PyBytes::new(py, leaves).into_any().unbind(),
                        PyBytes::new(py, fps).into_any().unbind(),
                    ],
                )?
            }
            scan::Item::One { res, stream, seq, t, calc, prev, dig } => PyTuple::new(
                py,
                [
                    res.into_py_any(py)?,
                    streams[*stream].clone().into_any().unbind(),
                    seq.into_py_any(py)?,
                    t.into_py_any(py)?,
                    PyBytes::new(py, calc).into_any().unbind(),
                    PyBytes::new(py, prev).into_any().unbind(),
                    PyBytes::new(py, dig).into_any().unbind(),
                ],
            )?,
            scan::Item::Raw { res, start, end } => {
                PyTuple::new(py, [res.into_py_any(py)?, start.into_py_any(py)?, end.into_py_any(py)?])?
            }
        };
        items.append(t)?;
    }
    Ok(PyTuple::new(py, [resources.into_any(), items.into_any()])?.into_any().unbind())
}

fn node(l: &[u8; 32], r: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(l);
    h.update(r);
    h.finalize().into()
}

/// RFC 6962 compact range: CompactRange(_stack=stack, size=size).extend(leaves), its new stack.
#[pyfunction]
fn merkle_extend<'py>(
    py: Python<'py>,
    stack: &Bound<'py, PyList>,
    size: u64,
    leaves: &Bound<'py, PyBytes>,
) -> PyResult<Bound<'py, PyList>> {
    let leaves = leaves.as_bytes();
    if leaves.len() % 32 != 0 {
        return Err(PyValueError::new_err("leaves is not a multiple of 32 bytes"));
    }
    let mut st: Vec<[u8; 32]> = Vec::with_capacity(stack.len() + 1);
    for item in stack.iter() {
        let b = item.downcast::<PyBytes>().map_err(|_| PyValueError::new_err("a stack entry is not bytes"))?;
        let a: [u8; 32] =
            b.as_bytes().try_into().map_err(|_| PyValueError::new_err("a stack entry is not 32 bytes"))?;
        st.push(a);
    }
    if st.len() != size.count_ones() as usize {
        return Err(PyValueError::new_err("the stack does not hold one hash per set bit of size"));
    }
    let count = (leaves.len() / 32) as u64;
    if size.checked_add(count).is_none() {
        return Err(PyValueError::new_err("size overflows"));
    }
    let work = |st: &mut Vec<[u8; 32]>| {
        for (n, leaf) in (size..).zip(leaves.chunks_exact(32)) {
            st.push(leaf.try_into().unwrap());
            let mut m = n; // the size before this leaf: one merge per trailing one bit
            while m & 1 == 1 {
                let right = st.pop().unwrap();
                let left = st.last_mut().unwrap();
                *left = node(left, &right);
                m >>= 1;
            }
        }
    };
    if leaves.len() >= 32 * 64 {
        py.allow_threads(|| work(&mut st));
    } else {
        work(&mut st);
    }
    PyList::new(py, st.iter().map(|h| PyBytes::new(py, h)))
}

#[pymodule]
fn otel_audit_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("ABI", ABI)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(sign, m)?)?;
    m.add_function(wrap_pyfunction!(sign_into, m)?)?;
    m.add_function(wrap_pyfunction!(content_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(scan_line, m)?)?;
    m.add_function(wrap_pyfunction!(scan_lines, m)?)?;
    m.add_function(wrap_pyfunction!(merkle_extend, m)?)?;
    Ok(())
}
