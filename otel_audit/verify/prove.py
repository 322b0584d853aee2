"""Proving streams: orders records by (stream, seq), checks chains, Merkle roots, signed checkpoints,
gap markers and lineage, and fills in a Report. Inputs (`inputs`) hand it decoded records.

No OpenTelemetry SDK imports.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import dataclasses
import hashlib
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from otel_audit import canonical
from otel_audit.canonical import (
    CHECKPOINT_EVENT,
    DIGEST,
    GAP_EVENT,
    PREV_DIGEST,
    RECORD,
    SIGNED_AT_INGEST,
    SIGNED_BY,
    STREAM_ID,
    STREAM_SEQ,
)
from otel_audit.decoding import DecodeError, decode_canonical_content, decode_log_record, loads
from otel_audit.keys import Keyring, NoteCheck, PublicKey, _ts
from otel_audit.merkle import CompactRange
from otel_audit.note import NoteError, Parent, Predecessor, Signature, SignedNote, parse_note
from otel_audit.verify.liveness import Liveness, record_key_finding
from otel_audit.verify.order import FP_EXTENT, MAX_SPILL_SEQ, Scratch, window_size
from otel_audit.verify.report import (
    CALC,
    DIG,
    NOTE,
    PREV,
    Report,
    StreamReport,
    _fmt_ranges,
    _loc,
    _parse_bridges,
    _parse_ranges,
    _ranges,
    _Rec,
    _subtract,
)

_sha256 = hashlib.sha256
_ABSENT: Any = object()

#: The resource attributes a checkpoint's producer line may name (processors/signing.py `_producer_of`:
#: its _PRODUCER_KEYS, then process.pid). A record's resource that names one of them with another value
#: than its stream's signed checkpoints contradicts them; keys the producer line lacks were added in transit.
PRODUCER_KEYS = ("service.name", "service.namespace", "service.instance.id", "service.version", "host.name",
                 "process.pid")
#: Not compared in a forked child's stream (see Verifier._misattributed).
PROCESS_DEPENDENT_KEYS = ("service.instance.id", "process.pid")
#: What the signing processor writes on a checkpoint record besides its note (`_emit_checkpoint`); every
#: version since the first wrote exactly these, with the note's time and severity INFO (9).
CHECKPOINT_ATTRIBUTES = {"audit.category": "integrity", "audit.action": "checkpoint", "audit.outcome": "success"}
CHECKPOINT_SEVERITY = (9, "INFO")
MAX_IDENTITIES = 64  # distinct producer identities kept per stream; more are counted, not kept
MAX_RUNS = 1000  # seq runs kept per identity (and embedded mismatches per stream); the counts stay exact

#: how a record that strict decoding rejects is named in the report (then the rule, the path, why)
STRICT = "not strict OTLP/JSON"


# -- the verifier -----------------------------------------------------------------------------------


class Verifier:
    """Collects records from any number of inputs, then proves each stream (`finish`)."""

    def __init__(self, keyring: Keyring, *, allow_open: bool = False, ignore_unsigned: bool = False,
                 partial: bool = False, roots_at: Mapping[str, Iterable[int]] | None = None,
                 at: int | None = None) -> None:
        self.partial = partial
        # stream -> tree sizes whose root `verify --state` needs recomputed (StreamReport.roots_at)
        self.roots_at = {sid: frozenset(sizes) for sid, sizes in (roots_at or {}).items()}
        self.at = at  # unix ns to judge liveness at (verify --at / --now): an open stream silent since is a problem
        self._liveness = Liveness(keyring)
        self.keyring = keyring
        self.allow_open = allow_open
        self.ignore_unsigned = ignore_unsigned
        self.report = Report(at=at)
        # stream -> its records in seq order as they arrive (_Stream); records not yet next wait in a window of
        # at most `window` records over all streams, beyond it in sorted runs on disk (verify/order.py)
        self._streams: dict[str, _Stream] = {}
        self.window = window_size()
        self._waiting = 0
        self._scratch = Scratch()
        self._slim_sigs: dict[tuple[tuple[str, bytes], ...], tuple[Signature, ...]] = {}
        # what proving needs beyond a record's digests (_observe): a checkpoint record's own fields by its
        # computed digest, embedded canonical content that disagrees, the producer identities of resources
        self._cp_fields: dict[bytes, tuple[int, Any, Any, dict[str, Any]]] = {}
        self._embedded_bad: dict[str, list[int]] = {}
        self._idents: dict[str, dict[tuple[Any, ...], list[Any]]] = {}  # stream -> identity -> [n, where, runs]
        self._ident_overflow: dict[str, int] = {}
        self._res_obj: Any = None
        self._res_key: tuple[Any, ...] = ()
        self._res_unnamed = False
        # stream -> [n, where, seq runs] of records whose resource names no service.name (or that have none)
        self._unnamed: dict[str, list[Any]] = {}
        self._heads: dict[str, bytes] = {}
        # declared stream -> (marker seq, "a-b,c", "a-b:<prev of a>:<digest of b>;...", reason, destination,
        # the marker's own stream): a marker declares seqs of its own stream or, with audit.gap.stream, of an
        # earlier one (records replayed from a spool after a restart)
        self._gap_claims: dict[str, list[tuple[int, Any, Any, Any, Any, str]]] = {}
        self._sealed_in: dict[str, list[list[int]]] = {}  # stream -> seq ranges proven there (for gap markers)

    # reading

    def add_files(self, paths: Iterable[Path], progress: Callable[[int], None] | None = None) -> None:
        from otel_audit.verify.inputs import add_otlp_file

        for p in paths:
            add_otlp_file(self, p, progress)

    def add_file(self, path: Path, progress: Callable[[int], None] | None = None) -> None:
        from otel_audit.verify.inputs import add_otlp_file

        add_otlp_file(self, path, progress)

    def _malformed(self, msg: str) -> None:
        if len(self.report.malformed) < 100:
            self.report.malformed.append(msg)
        elif len(self.report.malformed) == 100:
            self.report.malformed.append("... more malformed lines not listed")

    def add_request(self, doc: Any, where: str) -> None:
        from otel_audit.verify.inputs import add_request

        add_request(self, doc, where)

    def add_record(self, rec: Mapping[str, Any], where: str, index: int = 0, *,
                   resource: Mapping[str, Any] | None = None) -> None:
        """One OTLP/JSON logRecord; `where` and `index` locate it in messages; `resource` holds the decoded
        attributes of its resourceLogs' resource (None: not known, as from a SIEM export)."""
        got = self._read_record(rec, where, index, resource)
        if got is not None:
            stream, seq, t, r = got
            self._store(stream, seq, t, r, self._streams.get(stream))

    def _read_record(self, rec: Mapping[str, Any], where: str, index: int,
                     resource: Mapping[str, Any] | None) -> tuple[str, int, int, _Rec] | None:
        """`add_record` up to storing the record: (stream, seq, time, record) for `_store`, or None (reported)."""
        self.report.records += 1
        try:
            event, t, sev_number, sev_text, body, attrs, *_ = decode_log_record(rec)
        except DecodeError as exc:
            self._malformed(f"{_loc(where, index)}: {STRICT}: {exc}")
            return None
        try:
            stream = attrs.pop(STREAM_ID, None)
            seq = attrs.pop(STREAM_SEQ, None)
            prev = attrs.pop(PREV_DIGEST, None)
            digest = attrs.pop(DIGEST, None)
            embedded = attrs.pop(RECORD, _ABSENT)
            if stream is None:
                self.report.unsigned += 1
                if len(self.report.unsigned_examples) < 5:
                    self.report.unsigned_examples.append(f"{_loc(where, index)} ({event!r})")
                return None
            per = self._streams.get(stream)
            if per is None and (type(stream) is not str or len(stream) != 32 or not _is_hex(stream)):
                self._malformed(f"{_loc(where, index)}: audit.stream.id is not 32 lower-case hex digits")
                return None
            if type(seq) is not int or seq < 0 or type(prev) is not str or type(digest) is not str:
                self._malformed(f"{_loc(where, index)}: integrity attributes have the wrong form")
                return None
            content = canonical.content_bytes(event, t, sev_number, sev_text, body, attrs)
            pb, db, calc = self._link(stream, seq, prev, digest, content)
            r = (calc, pb, db, body if event == CHECKPOINT_EVENT and type(body) is str else None)
            self._observe(stream, seq, calc, event, t, sev_number, sev_text, body, attrs,
                          embedded, content, resource, _loc(where, index))
            if event == GAP_EVENT:
                self._add_gap_claim(stream, seq, attrs)
        except (KeyError, TypeError, ValueError, AttributeError, binascii.Error, canonical.CanonicalError) as exc:
            self._malformed(f"{_loc(where, index)}: record cannot be read ({type(exc).__name__}: {exc})")
            return None
        return stream, seq, t, r

    # the native integrity core's results (otel_audit_native.scan_line: see otel_audit/_native.py)

    def add_scanned(self, resources: list[dict[str, Any]], items: list[tuple[Any, ...]], line: bytes,
                    where: str) -> None:
        """One OTLP/JSON line as the native core read it: exactly what `add_request` does with the decoded line.
        Items, in record order: a run of linked records of one stream whose digests are right (10 fields), one
        record (7), or a record the core leaves to Python, by its place in the line (3).

        Every record is read (counted, observed, reported) in line order; then the line's records are stored in
        (stream, seq) order, same seqs in line order. Which seqs of a stream arrive first never changes a report
        (records wait for their turn); stored in order, the records a collector or the SDK put after their
        successors in one line (a checkpoint's scope comes last) do not keep a run from being processed at once."""
        n = 0
        stores: list[tuple[str, int, int, Any]] = []  # (stream, seq, kind, what) kind 0: a run, 1: one record
        for item in items:
            k = len(item)
            if k == 10:
                ri, stream, first, count, tmin, tmax, first_prev, last_dig, leaves, fps = item
                self.report.records += count
                self._observe_run(resources[ri], stream, first, first + count - 1, _loc(where, n))
                stores.append((stream, first, 0, item))
                n += count
            elif k == 7:
                ri, stream, seq, t, calc, pb, db = item
                self.report.records += 1
                self._observe(stream, seq, calc, "", t, 0, "", None, _NO_ATTRIBUTES, _ABSENT, b"", resources[ri],
                              _loc(where, n))
                stores.append((stream, seq, 1, (t, (calc, pb, db, None))))
                n += 1
            else:
                ri, start, end = item
                try:
                    rec = loads(line[start:end])
                except DecodeError as exc:  # the core hands back only strict JSON objects: not reached
                    self.report.records += 1
                    self._malformed(f"{_loc(where, n)}: {STRICT}: {exc}")
                else:
                    got = self._read_record(rec, where, n, resources[ri])
                    if got is not None:
                        stores.append((got[0], got[1], 1, (got[2], got[3])))
                n += 1
        if len(stores) > 1:
            stores.sort(key=_store_order)
        for stream, seq, kind, what in stores:
            if kind:
                self._store(stream, seq, what[0], what[1], self._streams.get(stream))
            else:
                _ri, _s, first, count, tmin, tmax, first_prev, last_dig, leaves, fps = what
                self._add_run(stream, first, count, tmin, tmax, first_prev, leaves, fps)

    def _add_run(self, stream: str, first: int, n: int, tmin: int, tmax: int, first_prev: bytes, leaves: bytes,
                 fps: bytes) -> None:
        """Store `n` records of one stream, seq `first` on, each linked to the one before and each giving the
        digest it carries (the core checked both). What `_store` and `_step` would do record by record is done
        for the run at once where the outcome is certain to be the same; otherwise record by record."""
        last = first + n - 1
        per = self._streams.get(stream)
        if per is None:
            per = self._streams[stream] = _Stream(stream, tmin, self.roots_at.get(stream, frozenset()))
        tt = per.times
        if tmin and (not tt[0] or tmin < tt[0]):
            tt[0] = tmin
        if tmax > tt[1]:
            tt[1] = tmax
        # The run's last record waits for its successor like any other (it decides among variants of its seq);
        # the others are processed now when nothing that may still arrive could change how they are processed.
        m = n - 1
        if m and not per.runs and per.next <= first and self._take_waiting(per, first, leaves[:32], first_prev) \
                and not any(first <= w < last for w in per.want):
            self._step_run(per, first, m, first_prev, leaves, fps)
            start = m
        else:
            start = 0
        store = self._store
        for i in range(start, n):
            dig = leaves[32 * i:32 * i + 32]
            prev = first_prev if i == 0 else leaves[32 * i - 32:32 * i]
            store(stream, first + i, 0, (dig, prev, dig, None), per)

    def _take_waiting(self, st: _Stream, first: int, first_dig: bytes, first_prev: bytes) -> bool:
        """Process the records waiting before seq `first` (a run that starts there arrived) when they are exactly
        seqs next..first-1 and at each seq the record that came first gives its digest and is linked to by a
        record of the next seq: processing would choose it whatever else arrives later, so it is chosen now.
        False leaves everything waiting."""
        pending = st.pending
        nxt = st.next
        if not pending:
            return nxt == first
        if len(pending) != first - nxt or not all(nxt <= k < first for k in pending):
            return False
        succ: tuple[_Rec, ...] = ((first_dig, first_prev, first_dig, None),)
        for seq in range(first - 1, nxt - 1, -1):
            g = pending[seq]
            vs = tuple(g) if isinstance(g, list) else (g,)
            v = vs[0]
            if v[CALC] != v[DIG] or not any(x[PREV] == v[DIG] for x in succ):
                return False
            succ = vs
        self._drain(st)
        seq = st.next
        g = pending.pop(seq)
        self._step(st, seq, g, (first_dig, first_prev, first_dig, None), True)
        self._waiting -= len(g) if isinstance(g, list) else 1
        st.next = seq + 1
        return st.next == first

    def _step_run(self, st: _Stream, first: int, m: int, first_prev: bytes, leaves: bytes, fps: bytes) -> None:
        """`_step` for the run's records first..first+m-1 (each right and linked to the one before), at once."""
        last = first + m - 1
        last_dig = leaves[32 * m - 32:32 * m]
        buf = st.fp_buf
        ext = 8 * FP_EXTENT
        data = memoryview(fps)[:8 * m]
        while data:
            room = ext - len(buf)
            buf += data[:room]
            data = data[room:]
            if len(buf) == ext:
                st.fp_extents.append(self._scratch.save_fingerprints(bytes(buf)))
                buf = st.fp_buf = bytearray()
        present = st.present
        if present and present[-1][1] == first - 1:
            present[-1][1] = last
        else:
            present.append([first, last])
        if st.last_seq == first - 1 and not st.last_bad and first_prev != st.last_dig:
            st.sr.broken_links.append([first - 1, first])
        tree = st.tree
        if tree.size == first:
            tree.extend_bytes(leaves[:32 * m])
        _grow_segment(st, first, last, first_prev, last_dig)
        st.last_seq = last
        st.last_dig = last_dig
        st.last_bad = False
        st.next = last + 1

    def _observe_run(self, resource: Mapping[str, Any], stream: str, first: int, last: int, where: str) -> None:
        """`_observe` of records first..last of `stream` under one resource (none a checkpoint, none embedding)."""
        if resource is not self._res_obj:  # the first record sets the resource's identity, as _observe does
            self._observe(stream, first, b"", "", 0, 0, "", None, _NO_ATTRIBUTES, _ABSENT, b"", resource, where)
            first += 1
            if first > last:
                return
        self._count_identity(stream, first, last, where)

    def _link(self, stream: str, seq: int, prev: str, digest: str, content: bytes) -> tuple[bytes, bytes, bytes]:
        """The carried prev and digest as bytes (64 lower-case hex digits each, else ValueError) and the digest
        the content gives, SHA-256(0x00 || prev || canonical bytes), which is also the record's Merkle leaf."""
        try:
            pb, db = bytes.fromhex(prev), bytes.fromhex(digest)
        except ValueError:
            raise ValueError("a digest is not 64 lower-case hex digits") from None
        if len(pb) != 32 or len(db) != 32 or pb.hex() != prev or db.hex() != digest:  # fromhex takes "AB cd" too
            raise ValueError("a digest is not 64 lower-case hex digits")
        head = self._heads.get(stream)
        if head is None:
            head = self._heads[stream] = b'["v1","' + stream.encode() + b'",'
        return pb, db, _sha256(b"\x00" + pb + head + str(seq).encode() + b"," + content[1:]).digest()

    def _add_gap_claim(self, stream: str, seq: int, attrs: Mapping[str, Any]) -> None:
        target = attrs.get("audit.gap.stream")
        if not isinstance(target, str) or not target:
            target = stream
        self._gap_claims.setdefault(target, []).append((*_gap_claim(seq, attrs), stream))

    def _store(self, stream: str, seq: int, t: int, r: _Rec, per: _Stream | None) -> None:
        """Where every decoded record arrives: it waits in the reorder window until its stream is processed
        up to it (`_drain`), or, when its seq was processed already, is a duplicate or a conflict (`_late`)."""
        if per is None:
            per = self._streams[stream] = _Stream(stream, t, self.roots_at.get(stream, frozenset()))
        else:
            tt = per.times
            if t and (not tt[0] or t < tt[0]):
                tt[0] = t
            if t > tt[1]:
                tt[1] = t
        if seq < per.next:
            self._late(per, seq, r)
            return
        pending = per.pending
        g = pending.get(seq)
        if g is None:
            pending[seq] = r
        elif isinstance(g, list):
            g.append(r)
        else:
            pending[seq] = [g, r]
        self._waiting += 1
        if self._waiting > self.window:
            self._overflow()

    def _overflow(self) -> None:
        """More records wait than the window holds: process every stream as far as its records are
        contiguous; then spill the streams that still wait most (their next seq is absent) to sorted runs."""
        for st in self._streams.values():
            if st.pending and not st.runs:
                self._drain(st)
        low = self.window // 2
        if self._waiting > low:
            for st in sorted((st for st in self._streams.values() if st.pending), key=lambda st: -len(st.pending)):
                if self._waiting <= low:
                    break
                self._spill(st)

    def _drain(self, st: _Stream) -> None:
        """Process the stream's records from its next seq while their successor is there too (a one-seq
        lookahead chooses among differing variants at one seq)."""
        pending = st.pending
        seq = st.next
        g = pending.get(seq)
        if g is None:
            return
        nxt = pending.get(seq + 1)
        step = self._step
        n = 0
        while nxt is not None:
            del pending[seq]
            n += len(g) if type(g) is list else 1
            step(st, seq, g, nxt, True)
            seq += 1
            g = nxt
            nxt = pending.get(seq + 1)
        self._waiting -= n
        st.next = seq

    def _spill(self, st: _Stream) -> None:
        entries = sorted(st.pending.items())
        # a seq beyond 64 bits (only a forgery has one) does not fit an entry: it waits in memory
        k = len(entries)
        while k and entries[k - 1][0] > MAX_SPILL_SEQ:
            k -= 1
        if k:
            st.runs.append(self._scratch.spill(entries[:k]))
        st.pending = dict(entries[k:])  # not counted as waiting any more
        self._waiting -= sum(len(g) if type(g) is list else 1 for _, g in entries)

    def _late(self, st: _Stream, seq: int, r: _Rec) -> None:
        """A record of a seq already processed: a duplicate when it is the record processed there (or another
        variant seen there), else a conflict. It cannot change what was processed (see docs/verify-memory.md)."""
        if r[NOTE] is not None:
            self._cp_fields.pop(r[CALC], None)
        fp = self._scratch.fingerprint(r)
        known = st.variants.get(seq)
        if known is None:
            k, i = divmod(seq, FP_EXTENT)
            mine = (self._scratch.load_fingerprint(st.fp_extents[k] + 8 * i) if k < len(st.fp_extents)
                    else bytes(st.fp_buf[8 * i:8 * i + 8]))
            if fp == mine:
                st.sr.duplicates += 1
                return
            known = st.variants[seq] = {mine}
        if fp in known:
            st.sr.duplicates += 1
            return
        known.add(fp)
        st.late.add(seq)

    def _step(self, st: _Stream, seq: int, g: _Rec | list[_Rec], nxt: _Rec | list[_Rec] | None,
              keep: bool) -> None:
        """Process the records at `seq` (one, or a list in arrival order) given those at seq + 1 (None: absent):
        choose one (duplicates are fine, differing variants are conflicts: the variant consistent with itself
        and its successor is kept), then check it against its predecessor, its checkpoint note, the tree.
        `keep`: records may still arrive, so keep a fingerprint of the chosen one."""
        sr = st.sr
        if isinstance(g, list):
            distinct = set(g)
            sr.duplicates += len(g) - len(distinct)
            r = g[0]
            if len(distinct) > 1:
                sr.conflicting.append(seq)
                nv = None if nxt is None else nxt if isinstance(nxt, list) else (nxt,)
                good = [v for v in g if v[CALC] == v[DIG] and (nv is None or any(n[PREV] == v[DIG] for n in nv))]
                if good:
                    r = good[0]
                if keep:
                    st.variants[seq] = {self._scratch.fingerprint(v) for v in distinct}
        else:
            r = g
        if keep:
            buf = st.fp_buf
            buf += self._scratch.fingerprint(r)
            if len(buf) == 8 * FP_EXTENT:
                st.fp_extents.append(self._scratch.save_fingerprints(bytes(buf)))
                st.fp_buf = bytearray()
        present = st.present
        if present and present[-1][1] == seq - 1:
            present[-1][1] = seq
        else:
            present.append([seq, seq])
        calc, prev, dig, note = r
        bad = calc != dig
        if bad:
            st.bad.append(seq)
        elif st.last_seq == seq - 1 and not st.last_bad and prev != st.last_dig:
            sr.broken_links.append([seq - 1, seq])
        sn = None if note is None else self._checkpoint(st, seq, r, note)
        # Merkle roots where the tree can be rebuilt (every leaf from 0 present). The leaves are the digests
        # the records carry: a signed root over them proves every one of them, so a record whose content gives
        # its carried digest is proven even when a neighbour was altered.
        if seq in st.want:
            sr.leaf_at[seq] = dig.hex()
        tree = st.tree
        if tree.size == seq:
            if seq in st.want:
                sr.roots_at[seq] = tree.root().hex()
            if sn is not None:
                if tree.root() == sn.checkpoint.root:
                    st.proven_below = seq
                else:
                    sr.root_mismatch.append(seq)
            tree.append(dig)
        # chain segments: runs of records, none modified, each linked to the one before; proving (`_prove`)
        # seals a segment below its highest valid checkpoint, or whole when a sealed one above links to it
        seg = st.seg
        if bad:
            if seg is not None:
                st.segments.append(seg)
                st.seg = None
        else:
            seg = _grow_segment(st, seq, seq, prev, dig)
            if sn is not None:
                seg[4] = seq
        st.last_seq = seq
        st.last_dig = dig
        st.last_bad = bad

    def _checkpoint(self, st: _Stream, seq: int, r: _Rec, note: str) -> SignedNote | None:
        """Parse and check the signature of a checkpoint record, and that the record itself is what its note
        determines; the valid one, kept slim (st.valid), or None. Every key that signed (or claims to) is
        noted for sr.signing_keys (`_close_checkpoints`)."""
        sr = st.sr
        sr.checkpoints += 1
        fields = self._cp_fields.pop(r[CALC], None)
        try:
            sn = parse_note(note)  # the record's body, r[NOTE]
        except NoteError as exc:
            sr.bad_checkpoints.append({"seq": seq, "reason": str(exc)})
            return None
        cp = sn.checkpoint
        if cp.origin.rsplit("/", 1)[-1] != sr.stream_id:
            sr.bad_checkpoints.append({"seq": seq, "reason": f"origin {cp.origin!r} names another stream"})
            return None
        if cp.size != seq:
            sr.bad_checkpoints.append({"seq": seq, "reason": f"commits to size {cp.size}, stands at seq {seq}"})
            return None
        if cp.chain != r[PREV]:
            sr.bad_checkpoints.append({"seq": seq, "reason": "chain line disagrees with the record's prev digest"})
            return None
        check = self.keyring.check_note(sn)
        if check.status != "ok":
            record_key_finding(sr, seq, check)
        verdict, named = _named_keys(check)
        by_key = st.by_key
        for name, kid, status, key in named:
            k = by_key.get((name, kid, status))
            if k is None:
                k = by_key[(name, kid, status)] = {
                    "name": name, "key_id": kid, "status": status, "seqs": [],
                    "not_before": _ts(key.not_before) if key else None,
                    "not_after": _ts(key.not_after) if key else None, "times": [cp.time_ns, cp.time_ns]}
            k["seqs"].append(seq)
            k["times"] = [min(k["times"][0], cp.time_ns), max(k["times"][1], cp.time_ns)]
        if verdict == "ok":
            differs = _disagreement(fields, sn, sn.signatures[0].name)
            if differs:
                sr.disagreeing_checkpoints.append({"seq": seq, "fields": differs})
                return None
            if not sr.producer:
                sr.producer = dict(cp.producer)
            # what later needs of a valid checkpoint (lineage, liveness, handovers, --state): not its text,
            # producer line or signature bytes
            names = tuple((x.name, x.key_id) for x in sn.signatures)
            sigs = self._slim_sigs.get(names)
            if sigs is None:
                sigs = self._slim_sigs[names] = tuple(Signature(n, kid, b"") for n, kid in names)
            slim = SignedNote("", sigs, dataclasses.replace(cp, producer=_NO_PRODUCER, origin=""))
            st.valid[seq] = slim
            st.valid_dig = r[DIG]  # the record of the latest valid checkpoint (in seq order: the last one)
            return slim
        if verdict == "unknown":
            sr.unknown_keys.append(seq)
        elif verdict == "expired":
            sr.expired_keys.append(seq)
        else:
            sr.bad_signatures.append(seq)
        return None

    def _close_checkpoints(self, st: _Stream) -> None:
        sr = st.sr
        by_key = st.by_key
        sr.keys = sorted({k["name"] for k in by_key.values() if k["status"] == "ok"})
        sr.signing_keys = [
            {"name": k["name"], "key_id": k["key_id"], "status": k["status"], "seqs": _ranges(k["seqs"]),
             "not_before": k["not_before"], "not_after": k["not_after"],
             "checkpoint_times": [_ts(k["times"][0]), _ts(k["times"][1])]}
            for k in sorted(by_key.values(), key=lambda k: (k["seqs"][0], k["name"], k["status"]))
        ]
        st.by_key = {}

    def _observe(self, stream: str, seq: int, calc: bytes, event: Any, t: int, sev_number: Any, sev_text: Any,
                 body: Any, attrs: Mapping[str, Any], embedded: Any, content: bytes,
                 resource: Mapping[str, Any] | None, where: str) -> None:
        """What proving needs of a decoded record beyond its digests: a checkpoint record's own fields (they
        must be those its signed note determines), whether embedded canonical content (`audit.integrity.record`,
        `_ABSENT` when the record has none) is the record's own, and the producer identity its resource names."""
        if event == CHECKPOINT_EVENT and type(body) is str:
            self._cp_fields[calc] = (t, sev_number, sev_text, dict(attrs))
        if embedded is not _ABSENT and (type(embedded) is not str
                                        or embedded.encode("utf-8", "surrogatepass") != content):
            bad = self._embedded_bad.setdefault(stream, [])
            if len(bad) < MAX_RUNS:
                bad.append(seq)
        if resource is None:
            return
        if resource is not self._res_obj:  # one resource object serves every record of its resourceLogs
            self._res_obj = resource
            self._res_key = tuple((k, type(v).__name__, v if isinstance(v, (str, int, float)) else repr(v))
                                  for k in PRODUCER_KEYS if k in resource for v in (resource[k],))
            self._res_unnamed = "service.name" not in resource
        self._count_identity(stream, seq, seq, where)

    def _count_identity(self, stream: str, first: int, last: int, where: str) -> None:
        """Records first..last of `stream` under the current resource (`_res_key`, `_res_unnamed`): counted
        against their producer identity, and as unnamed when the resource names no service."""
        if self._res_unnamed:  # a SIEM shows it as unknown_service: noted against the signed producer
            ent = self._unnamed.get(stream)
            if ent is None:
                ent = self._unnamed[stream] = [0, where, []]
            _count_run(ent, first, last)
        key = self._res_key
        if not key:
            return
        per = self._idents.get(stream)
        if per is None:
            per = self._idents[stream] = {}
        ent = per.get(key)
        if ent is None:
            if len(per) >= MAX_IDENTITIES:
                self._ident_overflow[stream] = self._ident_overflow.get(stream, 0) + last - first + 1
                return
            ent = per[key] = [0, where, []]
        _count_run(ent, first, last)

    def add_canonical(self, stream: Any, seq: Any, prev: Any, digest: Any, content: Any, where: str) -> None:
        """A record known by its carried canonical content (`audit.integrity.record`) and integrity fields,
        as a backend that flattens attributes holds it; the digest is checked over exactly those bytes,
        which must be the canonical encoding of what they hold (`decoding.decode_canonical_content`)."""
        self.report.records += 1
        try:
            if isinstance(seq, str) and seq.isascii() and seq.isdigit() and str(int(seq)) == seq:
                seq = int(seq)
            if (type(stream) is not str or len(stream) != 32 or not _is_hex(stream) or type(seq) is not int
                    or seq < 0 or type(prev) is not str or type(digest) is not str or type(content) is not str):
                self._malformed(f"{where}: integrity fields have the wrong form")
                return
            try:
                event, t, sev_number, sev_text, body, attrs = decode_canonical_content(content)
            except DecodeError as exc:
                self._malformed(f"{where}: {STRICT}: {exc}")
                return
            raw = content.encode("utf-8")
            pb, db, calc = self._link(stream, seq, prev, digest, raw)
            r = (calc, pb, db, body if event == CHECKPOINT_EVENT and type(body) is str else None)
            self._observe(stream, seq, calc, event, t, sev_number, sev_text, body, attrs, _ABSENT, raw, None, where)
            if event == GAP_EVENT:
                self._add_gap_claim(stream, seq, attrs)
        except (ValueError, TypeError) as exc:
            self._malformed(f"{where}: record cannot be read ({type(exc).__name__}: {exc})")
            return
        self._store(stream, seq, t, r, self._streams.get(stream))

    # proving

    def finish(self) -> Report:
        try:
            return self._finish()
        finally:
            self._scratch.close()
            self._cp_fields.clear()

    def _finish(self) -> Report:
        rep = self.report
        claims: dict[str, list[tuple[str, Predecessor]]] = {}  # predecessor id -> [(successor id, claim)]
        forks: dict[str, list[tuple[str, Parent]]] = {}  # parent id -> [(child id, claim)]
        for sid, st in self._streams.items():
            self._flush(st)
            self._close_checkpoints(st)
            sr = st.sr
            start = st.valid.get(0)
            if start is not None and start.checkpoint.prev is not None:
                claims.setdefault(start.checkpoint.prev.stream_id, []).append((sid, start.checkpoint.prev))
                sr.predecessor = start.checkpoint.prev.stream_id
            if start is not None and start.checkpoint.parent is not None:
                forks.setdefault(start.checkpoint.parent.stream_id, []).append((sid, start.checkpoint.parent))
                sr.parent = start.checkpoint.parent.stream_id
            tt = st.times
            sr.first_time_ns, sr.last_time_ns = tt[0] or None, tt[1] or None
        for sid in self._proving_order(self._streams):
            st = self._streams[sid]
            self._prove(st, claims.get(sid, []), forks.get(sid, []))
            rep.streams.append(st.sr)
        by_id = {s.stream_id: s for s in rep.streams}

        def lineage_gap(sr: StreamReport, msg: str) -> None:
            # a stream that names an earlier one (restart) or its parent (fork) that the input lacks: the
            # earlier records may have been deleted whole, so it fails unless the audit is partial on purpose
            if self.partial:
                sr.warnings.append(msg + " (accepted: --partial)")
            else:
                sr.problems.append(msg + "; verify it with them, or pass --partial for an archive that starts "
                                   "mid-lineage")
                sr.status = "failed"

        for pred, succs in claims.items():
            if pred not in self._streams:
                for succ, claim in succs:
                    lineage_gap(by_id[succ], f"predecessor stream {pred} ({'closed' if claim.closed else 'crashed'} "
                                             f"at seq {claim.size}) is not in the input")
        for parent, kids in forks.items():
            if parent not in self._streams:
                for kid, pclaim in kids:
                    lineage_gap(by_id[kid], f"parent stream {parent} (forked after its checkpoint at seq "
                                            f"{pclaim.size}) is not in the input")
        rep.streams.sort(key=lambda s: (s.first_time_ns or 0, s.stream_id))
        if rep.malformed:
            rep.problems.append(f"{len(rep.malformed)} malformed line(s) or record(s)")
        if rep.unsigned and not self.ignore_unsigned:
            rep.problems.append(f"{rep.unsigned} record(s) carry no integrity attributes (unsigned)")
        if not rep.streams and (rep.records or rep.unsigned):
            rep.problems.append("no signed stream in the input: nothing is proven")
        return rep

    def _flush(self, st: _Stream) -> None:
        """Process the rest of a stream in seq order: what waits in memory, merged with its spilled runs."""
        tail = sorted(st.pending.items())
        st.pending = {}
        groups: Iterable[tuple[int, Any]] = tail
        if st.runs:
            groups = _grouped(self._scratch.merge(st.runs, tail))
            st.runs = []
        step = self._step
        cur: tuple[int, Any] | None = None
        for seq, g in groups:
            if cur is not None:
                step(st, cur[0], cur[1], g if seq == cur[0] + 1 else None, False)
            cur = (seq, g)
        if cur is not None:
            step(st, cur[0], cur[1], None, False)
            st.next = cur[0] + 1

    def _proving_order(self, streams: Mapping[str, Any]) -> list[str]:
        """Streams whose gap markers declare records of other streams are proven before those streams."""
        after: dict[str, set[str]] = {}
        for target, cl in self._gap_claims.items():
            for c in cl:
                if c[5] != target:
                    after.setdefault(target, set()).add(c[5])
        order: list[str] = []
        state: dict[str, int] = {}  # 1 visiting, 2 done; a cycle (only a forgery makes one) is cut
        for root in streams:
            stack = [(root, iter(sorted(after.get(root, ()))))]
            if state.get(root):
                continue
            state[root] = 1
            while stack:
                node, deps = stack[-1]
                nxt = next((d for d in deps if d in streams and not state.get(d)), None)
                if nxt is not None:
                    state[nxt] = 1
                    stack.append((nxt, iter(sorted(after.get(nxt, ())))))
                    continue
                stack.pop()
                state[node] = 2
                order.append(node)
        return order

    def _prove(
        self,
        st: _Stream,
        successors: list[tuple[str, Predecessor]],
        children: list[tuple[str, Parent]],
    ) -> None:
        sr = st.sr
        valid = st.valid  # seq -> slim note, in seq order
        present = st.present  # seq ranges present
        top = present[-1][1] if present else -1
        sr.records = _count(present)
        sr.events = sr.records - sr.checkpoints
        if sr.producer.get(SIGNED_BY) == SIGNED_AT_INGEST:
            sr.signed = SIGNED_AT_INGEST
        bad = set(st.bad)  # the digest a record carries is not the one its content gives
        bad_r = _ranges(st.bad)
        if st.late:
            sr.conflicting = sorted(set(sr.conflicting) | st.late)
        sr.modified = [s for s in st.bad if s not in set(sr.conflicting)] if sr.conflicting else list(st.bad)
        # where the stream ends
        end_seq = next((s for s, sn in valid.items() if sn.checkpoint.end), None)
        length = top + 1
        if valid:
            length = max(length, next(reversed(valid)) + 1)
        claim = successors[0] if successors else None
        if len(successors) > 1:
            sr.problems.append(
                "forked lineage: streams " + ", ".join(sorted(s for s, _ in successors))
                + " each name this stream as their predecessor (a copied or restored chain state)"
            )
        for succ, pred in successors:
            sr.successor = sr.successor or succ
            length = max(length, pred.size + 1)
            got = valid.get(pred.size)
            if not _names_checkpoint(got, pred):
                sr.problems.append(
                    f"successor stream {succ} says this stream reached a checkpoint at seq {pred.size} that is "
                    "missing or differs here"
                )
            if pred.closed and got is not None and not got.checkpoint.end:
                sr.problems.append(
                    f"successor says this stream closed at seq {pred.size}, but that is no end checkpoint"
                )
        # forked children: the parent goes on with its own records, so they say nothing of its end
        sr.children = sorted({kid for kid, _ in children})
        for kid, fork in children:
            length = max(length, fork.size + 1)
            if not _names_checkpoint(valid.get(fork.size), fork):
                sr.problems.append(
                    f"child stream {kid} says it was forked from this stream after a checkpoint at seq {fork.size} "
                    "that is missing or differs here"
                )
        inserted_r: list[list[int]] = []
        if end_seq is not None:
            sr.state = "closed"
            inserted_r = _above(present, end_seq)
            sr.inserted = [q for a, b in inserted_r for q in range(a, b + 1)]
            length = end_seq + 1
        elif claim is not None:
            sr.state = "closed" if claim[1].closed else "crashed"
        sr.length = length
        sr.missing = _gap_ranges(present, length)
        # sealing, walking down the chain segments from the top: a valid checkpoint seals its segment below
        # it; a segment whose top record links to a sealed one above (across a gap: only over runs a sealed gap
        # marker declares, link by link) is sealed whole
        own = sr.stream_id
        claims = self._gap_claims.get(own, ())
        walked: list[list[int]] = []  # sealed ranges found so far, descending
        walked_neg: list[int] = []  # -start of each, ascending (for bisect)

        def proven_walk(mseq: int, mstream: str) -> bool:
            if mstream != own:
                return _contains(self._sealed_in.get(mstream, ()), mseq)
            i = bisect.bisect_left(walked_neg, -mseq)
            return i < len(walked) and walked[i][0] <= mseq <= walked[i][1]

        bridges: dict[int, tuple[int, int, bytes, bytes, str]] = {}
        for mseq, _, chain, _, _, mstream in claims:
            for a, b, pa, db in _parse_bridges(chain):
                bridges[b] = (mseq, a, pa, db, mstream)
        segs = st.segments + ([st.seg] if st.seg is not None else [])
        above: list[Any] | None = None
        above_sealed = False  # the lowest record of the segment above is sealed
        for seg in reversed(segs):
            lo, hi, _, hi_dig, top_cp, _ = seg
            whole = False
            if above is not None and above_sealed and above[5]:  # only a gap lies between them
                anchor: bytes | None = above[2]
                at = above[0] - 1
                while at > hi and anchor is not None:
                    br = bridges.get(at)
                    if br is None or not proven_walk(br[0], br[4]) or br[3] != anchor or br[1] <= hi:
                        anchor = None
                        break
                    anchor = br[2]
                    at = br[1] - 1
                whole = anchor is not None and anchor == hi_dig
            upto = hi if whole else top_cp
            if upto is not None:
                walked.append([lo, upto])
                walked_neg.append(-lo)
            above, above_sealed = seg, upto is not None
        sealed = walked[::-1]
        # the Merkle roots: a root that matches proves every leaf below it
        _state_summary(sr, st.tree, st.want, valid, present, st.valid_dig)
        if st.proven_below:
            sealed = _union(sealed, _minus([[0, st.proven_below - 1]], bad_r))
        sr.sealed = _count(sealed)
        self._sealed_in[own] = sealed
        # records the producer itself declared not delivered (a full spool in fail_open mode, a fail_closed
        # refusal, a destination's rejection), in a sealed gap marker
        declared: list[list[int]] = []
        for mseq, text, _, reason, dest, mstream in sorted(claims, key=lambda c: (c[5] != own, c[5], c[0])):
            if _contains(self._sealed_in.get(mstream, ()), mseq) and isinstance(text, str):
                rs = _parse_ranges(text)
                declared.extend(rs)
                absent = _ranges(q for a, b in rs for q in range(a, min(b, a + 100_000) + 1)
                                 if not _contains(present, q))
                entry = {"marker": mseq, "seqs": rs, "reason": reason, "destination": dest, "missing": absent}
                if mstream != own:
                    entry["marker_stream"] = mstream
                sr.declared.append(entry)
        if declared and sr.missing:
            sr.missing, sr.dropped = _subtract(sr.missing, declared)
        unsealed = _minus(_minus(_minus(present, sealed), bad_r), inserted_r)
        sr.unsealed = unsealed
        # what is proven, and why the rest is not: records after the last valid checkpoint of a crashed or open
        # stream are chain-consistent at best (an insider can rewrite them), never proven
        sr.proven = sealed
        conflicting_r = _ranges(sr.conflicting)
        last_valid = next(reversed(valid)) if valid else None
        tail_reason = {"crashed": "after_crash", "open": "open_tail"}.get(sr.state)
        loose = _minus(unsealed, conflicting_r)
        tail = _above(loose, last_valid) if tail_reason and last_valid is not None else []
        rest = _minus(loose, tail)
        for reason, rs in (
            (tail_reason or "unsealed", tail),
            ("unsealed", rest),
            ("modified", _ranges(s for s in sr.modified if end_seq is None or s <= end_seq)),
            ("conflicting", _ranges(s for s in sr.conflicting if not _contains(sealed, s))),
            ("inserted", _minus(inserted_r, sealed)),
            ("missing", sr.missing),
            ("dropped", sr.dropped),
        ):
            if rs:
                sr.unproven[reason] = rs
        sr.embedded_mismatch = sorted(set(self._embedded_bad.get(own, ())) - bad)
        self._misattributed(sr)
        # verdict
        p = sr.problems
        key_only = bool(sr.checkpoints) and not valid and (
            len(sr.unknown_keys) + len(sr.expired_keys) + len(sr.bad_signatures) == sr.checkpoints)
        key_msgs = _key_messages(sr.signing_keys)
        if key_only:
            # say first why nothing verifies: neither a truncation nor a bad start is known then
            if len(sr.unknown_keys) == sr.checkpoints:
                names = ", ".join(f"{k['name']} (id {k['key_id']})" for k in sr.signing_keys
                                  if k["status"] == "unknown")
                p.append(f"every checkpoint of this stream is signed by a key not in your keyring: {names}; verify "
                         "with a keyring that holds it (otel-audit keys export, on the producer)")
            p.extend(key_msgs)
            key_msgs = []
        if not valid:
            p.append("no valid signed checkpoint: nothing in this stream is proven")
        if sr.modified:
            p.append(f"modified: seq {_fmt_ranges(_ranges(sr.modified))}")
        if sr.missing:
            p.append(f"missing: seq {_fmt_ranges(sr.missing)}")
        if sr.conflicting:
            p.append(f"conflicting records at seq {_fmt_ranges(conflicting_r)}")
        if sr.inserted:
            p.append(f"inserted after the end of the stream: seq {_fmt_ranges(inserted_r)}")
        if sr.broken_links:
            p.append("chain broken between seq " + ", ".join(f"{a} and {b}" for a, b in sr.broken_links[:12]))
        p.extend(key_msgs)
        for d in sr.disagreeing_checkpoints[:12]:
            p.append(f"checkpoint at seq {d['seq']} disagrees with its signed note: " + ", ".join(
                f"{name} {_say(v['record'])} (note {_say(v['note'])})" for name, v in d["fields"].items()))
        if len(sr.disagreeing_checkpoints) > 12:
            p.append(f"... and {len(sr.disagreeing_checkpoints) - 12} more checkpoints that disagree with their notes")
        if sr.bad_checkpoints:
            listed = ", ".join(f"{b['seq']} ({b['reason']})" for b in sr.bad_checkpoints[:5])
            p.append("malformed checkpoint at seq " + listed)
        if sr.root_mismatch:
            p.append(f"Merkle root differs from the signed checkpoint at seq {_fmt_ranges(_ranges(sr.root_mismatch))}")
        if present and present[0][0] == 0 and 0 not in valid and not key_only \
                and not any(b["seq"] == 0 for b in sr.bad_checkpoints) \
                and not any(d["seq"] == 0 for d in sr.disagreeing_checkpoints) \
                and 0 not in (sr.bad_signatures + sr.unknown_keys + sr.expired_keys):
            p.append("seq 0 is not a valid start checkpoint")
        for m in sr.misattributed:
            p.append(f"records at seq {_fmt_ranges(m['seqs'])} ({m['count']:,} record(s), e.g. {m['where']}) are under "
                     f"a resource naming {m['key']}={m['found']!r}, but this stream's signed checkpoints name "
                     f"{m['key']}={m['signed']!r}")
        unnamed = self._unnamed.get(own)
        if unnamed and sr.producer.get("service.name") is not None:
            n, where, runs = unnamed
            sr.warnings.append(
                f"records at seq {_fmt_ranges(_merge_runs(runs))} ({n:,} record(s), e.g. {where}) are under a resource "
                f"without service.name (or no resource), though this stream's signed checkpoints name service.name="
                f"{sr.producer['service.name']!r}: a SIEM shows them as unknown_service; the signed producer stands "
                "(a collector may drop resource attributes)"
            )
        over = self._ident_overflow.get(own)
        if over:
            p.append(f"{over:,} record(s) are under more than {MAX_IDENTITIES} distinct producer resources; "
                     "they were not compared with the signed producer")
        if sr.embedded_mismatch:
            p.append(f"embedded canonical content ({RECORD}) is not the record's own at seq "
                     f"{_fmt_ranges(_ranges(sr.embedded_mismatch))}")
        if sr.state == "open" and not key_only:
            msg = (
                f"no end-of-stream checkpoint and no successor stream: truncated after seq {top}, or still being "
                f"written ("
                + (f"last valid checkpoint at seq {last_valid})" if last_valid is not None else "no valid checkpoint)")
            )
            (sr.warnings if self.allow_open else p).append(msg)
        if tail and sr.state == "crashed":
            sr.warnings.append(
                f"unsealed tail after the crash: seq {_fmt_ranges(tail)} chain-consistent but not signed"
            )
        if rest and valid and not p:
            p.append(f"unsealed records: seq {_fmt_ranges(rest)}")
        for d in sr.declared:
            what = d["reason"]
            at = f"seq {d['marker']}" + (f" of stream {d['marker_stream']}" if "marker_stream" in d else "")
            if d["missing"]:
                sr.warnings.append(
                    f"dropped (declared): seq {_fmt_ranges(d['missing'])} {what}, as the signed gap marker at {at} "
                    "declares"
                )
            gone = {q for a, b in d["missing"] for q in range(a, b + 1)}
            here = _ranges(q for a, b in d["seqs"] for q in range(a, min(b, a + 100_000) + 1) if q not in gone)
            if here:
                sr.warnings.append(
                    f"declared: seq {_fmt_ranges(here)} {what}, as the signed gap marker at {at} "
                    "declares; present in this input"
                )
        if sr.duplicates:
            sr.warnings.append(f"{sr.duplicates} exact duplicate(s), as at-least-once delivery makes (harmless)")
        self._liveness.check(sr, valid, at=self.at)
        sr.status = "failed" if p else "verified"


    def _misattributed(self, sr: StreamReport) -> None:
        """Resources of the stream's records that name a producer key (PRODUCER_KEYS) with another value than its
        signed checkpoints: sr.misattributed.

        A forked child's (a stream with a parent line) process-dependent keys are not compared: after a fork the
        SDK gives the provider's resource a new service.instance.id (and process attributes) while the producer
        line of the child's checkpoints is made from the resource the signing processor was built with."""
        idents = self._idents.get(sr.stream_id)
        signed = sr.producer
        if not idents or not signed:
            return
        loose = PROCESS_DEPENDENT_KEYS if sr.parent else ()
        found: dict[tuple[str, str, Any], dict[str, Any]] = {}
        for ident, (n, where, runs) in idents.items():
            for k, tname, v in ident:
                if k not in signed or k in loose:
                    continue  # added in transit (the producer line does not name it), or a fork child's own
                sv = signed[k]
                if type(v) is type(sv) and v == sv:
                    continue
                e = found.get((k, tname, v))
                if e is None:
                    e = found[(k, tname, v)] = {"key": k, "found": v, "signed": sv, "seqs": [], "count": 0,
                                                "where": where}
                e["count"] += n
                e["seqs"].extend(runs)
        sr.misattributed = sorted(
            ({**e, "seqs": _merge_runs(e["seqs"])} for e in found.values()),
            key=lambda e: (e["seqs"][0] if e["seqs"] else [0], e["key"]),
        )


def _grow_segment(st: _Stream, first: int, last: int, prev: bytes, dig: bytes) -> list[Any]:
    """Records first..last (right, each linked to the one before; `prev` of the first, `dig` of the last) join
    the stream's current chain segment when the first links to its end, else start a new one; the segment."""
    seg = st.seg
    if seg is not None and seg[1] == first - 1 and prev == seg[3]:
        seg[1] = last
        seg[3] = dig
        return seg
    gap = seg is not None and seg[1] == st.last_seq and first > st.last_seq + 1
    if seg is not None:
        st.segments.append(seg)
    seg = st.seg = [first, last, prev, dig, None, gap]
    return seg


def _store_order(x: tuple[str, int, int, Any]) -> tuple[str, int]:
    return x[0], x[1]


def _count_run(ent: list[Any], first: int, last: int) -> None:
    """[count, where, seq runs] += seqs first..last, as `_observe` counts them one by one."""
    ent[0] += last - first + 1
    runs = ent[2]
    if runs and runs[-1][1] == first - 1:
        runs[-1][1] = last
    elif len(runs) < MAX_RUNS:
        runs.append([first, last])


def _merge_runs(runs: list[list[int]]) -> list[list[int]]:
    out: list[list[int]] = []
    for a, b in sorted(runs):
        if out and a <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return out


def _show(v: Any) -> Any:
    """A value as a report may hold it (JSON-safe, short)."""
    if v is None or type(v) in (int, bool):
        return v
    if type(v) is str:
        return v if len(v) <= 200 else v[:200] + "..."
    text = repr(v)
    return text if len(text) <= 200 else text[:200] + "..."


def _say(v: Any) -> str:
    return "absent" if v is None else repr(v)


def _disagreement(fields: tuple[int, Any, Any, dict[str, Any]] | None, sn: SignedNote,
                  key_name: str) -> dict[str, dict[str, Any]]:
    """Where a checkpoint record's own fields differ from what its note and signing key determine (the signing
    processor's `_emit_checkpoint`): {field: {"record": value, "note": value}}; empty when they agree. Then the
    record's content, and so the digest it carries, follow from the signed note and its prev digest alone."""
    cp = sn.checkpoint
    if fields is None:
        return {"record": {"record": "not read", "note": "read"}}
    t, sev_number, sev_text, attrs = fields
    out: dict[str, dict[str, Any]] = {}
    if type(t) is not int or t != cp.time_ns:
        out["time"] = {"record": _show(t), "note": cp.time_ns}
    if (type(sev_number) is not int or type(sev_text) is not str
            or (sev_number, sev_text) != CHECKPOINT_SEVERITY):
        out["severity"] = {"record": f"{_show(sev_number)} {_show(sev_text)}",
                           "note": f"{CHECKPOINT_SEVERITY[0]} {CHECKPOINT_SEVERITY[1]}"}
    expected: dict[str, Any] = {**CHECKPOINT_ATTRIBUTES, "audit.checkpoint.kind": cp.kind,
                                "audit.checkpoint.size": cp.size, "audit.checkpoint.key": key_name}
    if cp.producer.get(SIGNED_BY) == SIGNED_AT_INGEST:  # a service-side stream: every record of it says so
        expected[SIGNED_BY] = SIGNED_AT_INGEST
    for k in sorted(set(attrs) | set(expected)):
        got, want = attrs.get(k, _ABSENT), expected.get(k, _ABSENT)
        if type(got) is not type(want) or got != want:
            out[k] = {"record": None if got is _ABSENT else _show(got), "note": None if want is _ABSENT else want}
    return out


def _named_keys(check: NoteCheck) -> tuple[str, list[tuple[str, str, str, PublicKey | None]]]:
    """(verdict ok|unknown|expired|bad, the keys it rests on: (name, key id hex, status, key or None))."""
    if check.status == "ok":
        return "ok", [(k.name, k.key_id.hex(), "ok", k) for k in check.good]
    if check.status == "bad":
        return "bad", [(k.name, k.key_id.hex(), "bad", k) for k in check.bad]
    if check.status == "expired":
        return "expired", [(k.name, k.key_id.hex(), "expired", k) for k in check.expired]
    return "unknown", [(s.name, s.key_id.hex(), "unknown", None) for s in check.unknown]


def _key_messages(signing_keys: list[dict[str, Any]]) -> list[str]:
    """One problem per key that failed checkpoints, naming the key, its id and, when expired, its window."""
    out = []
    for k in signing_keys:
        who = f"key {k['name']} (id {k['key_id']})"
        at = f"checkpoint(s) at seq {_fmt_ranges(k['seqs'])}"
        if k["status"] == "unknown":
            out.append(f"{at} signed by {who}, which is not in your keyring")
        elif k["status"] == "bad":
            out.append(f"bad signature by {who} on {at}: not made by that key over this checkpoint")
        elif k["status"] == "expired":
            first, last = k["checkpoint_times"]
            when = first if first == last else f"{first} to {last}"
            window = " ".join(x for x in (f"from {k['not_before']}" if k["not_before"] else "",
                                          f"until {k['not_after']}" if k["not_after"] else "") if x)
            out.append(f"{at} signed by {who} at {when}, outside its validity in your keyring (valid {window})")
    return out


OLD_GAP_REASON = "dropped by the producer's full delivery spool (fail_open)"  # markers without audit.gap.reason


def _state_summary(sr: StreamReport, tree: CompactRange, want: Iterable[int], valid: Mapping[int, SignedNote],
                   present: list[list[int]], valid_dig: bytes) -> None:
    """For `verify --state`: the roots still wanted (the whole tree when it reaches that size, else the
    input's own valid checkpoint there), the seqs absent up to each wanted size, and the stream's latest
    valid checkpoint (with the seqs absent up to it and its record's digest)."""
    for n in want:
        sr.absent_at[n] = _gap_ranges(present, n + 1)
        if n not in sr.roots_at:
            if n == tree.size:
                sr.roots_at[n] = tree.root().hex()
            elif n in valid:
                sr.roots_at[n] = valid[n].checkpoint.root.hex()
    if valid:
        cp = valid[max(valid)].checkpoint
        start = valid.get(0)
        prev = start.checkpoint.prev if start is not None else None
        sr.latest_checkpoint = {
            "size": cp.size, "root": base64.b64encode(cp.root).decode(), "chain": base64.b64encode(cp.chain).decode(),
            "time_ns": cp.time_ns, "kind": cp.kind, "end": cp.end,
            "absent": _gap_ranges(present, cp.size + 1), "record": valid_dig.hex(),
            "prev": None if prev is None else {"stream": prev.stream_id, "size": prev.size,
                                               "root": base64.b64encode(prev.root).decode(), "closed": prev.closed},
        }


def _names_checkpoint(got: SignedNote | None, claim: Predecessor | Parent) -> bool:
    """Does a later stream's claim (a successor's predecessor line, a child's parent line) name this
    valid checkpoint exactly?"""
    return got is not None and got.checkpoint.root == claim.root and got.checkpoint.chain == claim.chain


def _gap_claim(seq: int, attrs: Mapping[str, Any]) -> tuple[int, Any, Any, str, str | None]:
    """What a gap marker declares: (its seq, seqs, chain links, reason, destination)."""
    reason = attrs.get("audit.gap.reason")
    dest = attrs.get("audit.gap.destination")
    return (seq, attrs.get("audit.gap.seqs"), attrs.get("audit.gap.chain"),
            reason if isinstance(reason, str) and reason else OLD_GAP_REASON,
            dest if isinstance(dest, str) and dest else None)


def _is_hex(s: str) -> bool:
    try:
        bytes.fromhex(s)
    except ValueError:
        return False
    return s == s.lower()


# -- one stream while records arrive ----------------------------------------------------------------

_NO_PRODUCER: Mapping[str, Any] = MappingProxyType({})
_NO_ATTRIBUTES: Mapping[str, Any] = MappingProxyType({})


class _Stream:
    """One stream while its records arrive: its report (filled in as records are processed in seq order),
    the records waiting for their turn, and what in-order processing keeps: O(1) per stream, a compact
    Merkle range (O(log n)), the valid checkpoints (slim), and ranges or findings for the rest."""

    __slots__ = ("sr", "times", "want", "pending", "next", "runs", "fp_extents", "fp_buf", "variants", "late",
                 "present", "bad", "last_seq", "last_dig", "last_bad", "seg", "segments", "tree", "proven_below",
                 "valid", "valid_dig", "by_key")

    def __init__(self, sid: str, t: int, want: frozenset[int]) -> None:
        self.sr = StreamReport(sid)
        self.times = [t, t]
        self.want = want  # tree sizes whose root `verify --state` needs
        self.pending: dict[int, _Rec | list[_Rec]] = {}  # seq >= next -> record, or records in arrival order
        self.next = 0  # every seq below was processed
        self.runs: list[tuple[int, int]] = []  # spilled sorted runs (offset, entries); merged at the end
        self.fp_extents: list[int] = []  # fingerprints of processed seqs: extents on disk, then fp_buf
        self.fp_buf = bytearray()
        self.variants: dict[int, set[bytes]] = {}  # processed seqs with several variants: their fingerprints
        self.late: set[int] = set()  # seqs where another variant came after the seq was processed
        self.present: list[list[int]] = []  # seq ranges processed
        self.bad: list[int] = []  # seqs whose carried digest is not the one their content gives
        self.last_seq = -2  # none yet
        self.last_dig = b""
        self.last_bad = False
        # chain segments [lo, hi, prev of lo, digest of hi, highest valid checkpoint or None, only a gap below]
        self.seg: list[Any] | None = None
        self.segments: list[list[Any]] = []
        self.tree = CompactRange()  # grows while every leaf from 0 is present
        self.proven_below = 0  # the highest checkpoint whose root matched
        self.valid: dict[int, SignedNote] = {}
        self.valid_dig = b""  # the digest of the latest valid checkpoint's record
        self.by_key: dict[tuple[str, str, str], dict[str, Any]] = {}


def _grouped(entries: Iterable[tuple[int, _Rec]]) -> Iterator[tuple[int, _Rec | list[_Rec]]]:
    """(seq, record) in seq order -> (seq, record or list of the records at that seq)."""
    cur = -1
    g: Any = None
    for seq, r in entries:
        if seq == cur:
            if type(g) is list:
                g.append(r)
            else:
                g = [g, r]
            continue
        if g is not None:
            yield cur, g
        cur, g = seq, r
    if g is not None:
        yield cur, g


# inclusive seq ranges [[a, b], ...], ascending and disjoint

def _count(rs: Iterable[list[int]]) -> int:
    return sum(b - a + 1 for a, b in rs)


def _contains(rs: Any, x: int) -> bool:
    i = bisect.bisect_right(rs, [x, math.inf]) - 1
    return i >= 0 and rs[i][1] >= x


def _above(rs: list[list[int]], x: int) -> list[list[int]]:
    """The part of `rs` above x."""
    return [[max(a, x + 1), b] for a, b in rs if b > x]


def _minus(rs: list[list[int]], cut: list[list[int]]) -> list[list[int]]:
    out: list[list[int]] = []
    j = 0
    for a, b in rs:
        while j < len(cut) and cut[j][1] < a:
            j += 1
        k = j
        cur = a
        while k < len(cut) and cut[k][0] <= b:
            c, d = cut[k]
            if c > cur:
                out.append([cur, c - 1])
            cur = max(cur, d + 1)
            if d >= b:
                break
            k += 1
        if cur <= b:
            out.append([cur, b])
    return out


def _union(x: list[list[int]], y: list[list[int]]) -> list[list[int]]:
    out: list[list[int]] = []
    for a, b in sorted(x + y):
        if out and a <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return out


def _gap_ranges(present: list[list[int]], length: int) -> list[list[int]]:
    """Inclusive ranges of [0, length) absent from `present`."""
    return _minus([[0, length - 1]], present) if length > 0 else []
