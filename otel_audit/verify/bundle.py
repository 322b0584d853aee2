"""`otel-audit verify BUNDLE`: check an export bundle of the audit service (`POST /v1/exports`, format bundle;
docs/service.md §4a) offline, with the public keys alone.

Line 1 is the header ``{"otel_audit_export": {"version": 1, "query", "created", "events": N}}``; every other line
one event ``{"id", "status", "otlp", "proof", "reason"?}``. Each event is proven when its C2SP tlog-proof checks
with the producers' keyring (and the witness keyring when given: a cosignature must verify) and the proof's extra
bytes — the previous digest and the canonical bytes the leaf hash is over — are exactly those the event's OTLP
record gives by the canonical form (otel_audit/canonical.py): so an edited event, a proof swapped to another
event, a duplicated line and a header that miscounts are each named with their line number.

What a bundle cannot prove: that the query's result is complete. Each event it holds is proven; one left out
leaves no trace in it. Only format ``otlp`` (whole streams, verified as an archive) proves nothing is missing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from otel_audit import canonical
from otel_audit.decoding import DecodeError, decode_log_record, walk_request
from otel_audit.decoding import loads as strict_loads
from otel_audit.keys import Keyring

HEADER_KEY = "otel_audit_export"
MAX_LINE = 64 << 20
EVENT_KEYS = frozenset({"id", "status", "otlp", "proof", "reason", "checkpoint_cosignature"})
INCOMPLETE = ("a bundle proves each event it holds, not that the query's result is complete: an event left out "
              "of it leaves no trace; export with format otlp (whole streams) and verify that for completeness")


def is_bundle(path: str | Path) -> bool:
    """Whether a file's first line is an export bundle's header."""
    try:
        with open(path, "rb") as fh:
            first = fh.readline(1 << 20)
    except OSError:
        return False
    if not first.lstrip().startswith(b'{"' + HEADER_KEY.encode() + b'"'):
        return False
    try:
        doc = strict_loads(first)
    except DecodeError:
        return False
    return isinstance(doc, dict) and list(doc) == [HEADER_KEY]


@dataclass
class BundleReport:
    path: str
    sha256: str = ""
    header: dict[str, Any] = field(default_factory=dict)
    events: int = 0
    proven: int = 0
    unproven: list[dict[str, Any]] = field(default_factory=list)  # {"line", "id", "reason"}
    problems: list[str] = field(default_factory=list)  # the file itself: header, lines, duplicates
    streams: dict[str, int] = field(default_factory=dict)  # proven events per stream
    keys: set[str] = field(default_factory=set)
    witnessed_by: set[str] = field(default_factory=set)

    @property
    def ok(self) -> bool:
        return not self.problems and not self.unproven and self.events > 0

    def to_json(self) -> dict[str, Any]:
        return {"kind": "export bundle", "path": self.path, "sha256": self.sha256, "ok": self.ok,
                "header": self.header, "events": self.events, "proven": self.proven,
                "not_proven": self.unproven, "problems": self.problems,
                "streams": [{"id": s, "proven": n} for s, n in sorted(self.streams.items())],
                "signed_by": sorted(self.keys), "witnessed_by": sorted(self.witnessed_by),
                "complete": None, "note": INCOMPLETE}


def verify_bundle(path: str | Path, keyring: Keyring, witnesses: Keyring | None = None) -> BundleReport:
    rep = BundleReport(str(path))
    digest = hashlib.sha256()
    seen: dict[str, int] = {}
    with open(path, "rb") as fh:
        n = 0
        for raw in fh:
            n += 1
            digest.update(raw)
            line = raw.rstrip(b"\r\n")
            if n == 1:
                _header(line, rep)
                continue
            if not line.strip():
                rep.problems.append(f"line {n}: an empty line (a bundle has none: a line was cut out or added)")
                continue
            rep.events += 1
            _event(n, line, rep, seen, keyring, witnesses)
    rep.sha256 = digest.hexdigest()
    want = rep.header.get("events")
    if n == 0:
        rep.problems.append("line 1: the file is empty")
    elif type(want) is int and want != rep.events:
        rep.problems.append(f"line 1: the header says {want} event(s), the file holds {rep.events} (lines 2.."
                            f"{n}): line(s) were {'removed' if rep.events < want else 'added'}, or the header edited")
    return rep


def _header(line: bytes, rep: BundleReport) -> None:
    try:
        doc = strict_loads(line)
    except DecodeError as exc:
        rep.problems.append(f"line 1: not the bundle's header (not strict JSON: {exc})")
        return
    h = doc.get(HEADER_KEY) if isinstance(doc, dict) and list(doc) == [HEADER_KEY] else None
    if not isinstance(h, dict) or h.get("version") != 1 or type(h.get("events")) is not int:
        rep.problems.append('line 1: not a version 1 bundle header {"otel_audit_export": {"version": 1, ..., '
                            '"events": N}}')
        return
    rep.header = h


def _event(n: int, line: bytes, rep: BundleReport, seen: dict[str, int], keyring: Keyring,
           witnesses: Keyring | None) -> None:
    from otel_audit.service import proof as tlog

    def unproven(eid: Any, why: str) -> None:
        rep.unproven.append({"line": n, "id": eid if isinstance(eid, str) else None, "reason": why})

    if len(line) > MAX_LINE:
        rep.problems.append(f"line {n}: over {MAX_LINE} bytes: not a bundle's event")
        return
    try:
        doc = strict_loads(line)
    except DecodeError as exc:
        rep.problems.append(f"line {n}: not strict JSON ({exc})")
        return
    if not isinstance(doc, dict) or not {"id", "otlp", "proof"} <= doc.keys() <= EVENT_KEYS:
        rep.problems.append(f"line {n}: not a bundle event {{\"id\", \"status\", \"otlp\", \"proof\"}}")
        return
    eid = doc["id"]
    if not isinstance(eid, str):
        rep.problems.append(f"line {n}: the id is not a string")
        return
    if eid in seen:
        rep.problems.append(f"line {n}: event {eid} again (first at line {seen[eid]}): a line was duplicated")
        return
    seen[eid] = n
    try:
        groups = list(walk_request(doc["otlp"]))
        records = [r for *_, recs in groups for r in recs]
        if len(records) != 1:
            raise DecodeError("bad-shape", "otlp", f"{len(records)} records: a bundle's event is one record")
        f = decode_log_record(records[0])
    except DecodeError as exc:
        unproven(eid, f"its otlp is not a strict one-record OTLP/JSON request ({exc})")
        return
    attrs = f.attributes
    stream, seq = attrs.get(canonical.STREAM_ID), attrs.get(canonical.STREAM_SEQ)
    proof = doc["proof"]
    if proof is None and f.event_name == canonical.CHECKPOINT_EVENT and "checkpoint_cosignature" in doc:
        why = _self_proven(f, doc["checkpoint_cosignature"], keyring, witnesses, rep)
        if why is None:
            return
        unproven(eid, why)
        return
    if proof is None:
        why = doc.get("reason") or "no reason given"
        unproven(eid, f"no proof in the bundle (status {doc.get('status')!r}: {why})")
        return
    if type(proof) is not str:
        unproven(eid, "its proof is not a string")
        return
    if type(stream) is not str or type(seq) is not int:
        unproven(eid, "its record carries no stream id and seq: nothing for a proof to prove")
        return
    if eid != f"{stream}-{seq}":
        unproven(eid, f"its id is not its record's position (stream {stream} seq {seq}): the line was edited")
        return
    try:
        got = tlog.check(proof, keyring, witnesses)
        p = tlog.parse(proof)
    except tlog.ProofError as exc:
        unproven(eid, f"its proof does not check: {exc}")
        return
    try:
        canon = canonical.canonical_bytes(stream, seq, f.event_name, f.time_unix_nano, f.severity_number,
                                          f.severity_text, f.body, attrs)
    except canonical.CanonicalError as exc:
        unproven(eid, f"its record has no canonical form ({exc})")
        return
    if (got.stream, got.seq) != (stream, seq):
        unproven(eid, f"its proof is of stream {got.stream} seq {got.seq}, not of this event: a swapped proof")
        return
    if p.extra[32:] != canon:
        unproven(eid, "its OTLP record is not the one its proof proves (the canonical bytes differ): the event "
                      "was edited, or the proof belongs to another record")
        return
    prev = attrs.get(canonical.PREV_DIGEST)
    if type(prev) is not str or prev != p.extra[:32].hex():
        unproven(eid, "its record's audit.integrity.prev is not the previous digest its proof chains from")
        return
    if attrs.get(canonical.DIGEST) != canonical.record_digest(p.extra[:32], canon).hex():
        unproven(eid, "its record's audit.integrity.digest is not the digest of its content")
        return
    rep.proven += 1
    rep.streams[stream] = rep.streams.get(stream, 0) + 1
    if got.key:
        rep.keys.add(got.key)
    rep.witnessed_by.update(got.witnessed_by)


def _self_proven(f: Any, cosignature: Any, keyring: Keyring, witnesses: Keyring | None,
                 rep: BundleReport) -> str | None:
    """A checkpoint record no later checkpoint covers: proven by its own signed note (its body) when the note
    verifies with the keyring, names the record's stream and seq and chains from its prev digest, and the record's
    digest is its content's (with a witness keyring: the service's cosignature of it verifies). None when proven,
    else why not."""
    from otel_audit.note import NoteError, parse_note
    from otel_audit.service import proof as tlog

    attrs = f.attributes
    stream, seq, prev = attrs.get(canonical.STREAM_ID), attrs.get(canonical.STREAM_SEQ), attrs.get(
        canonical.PREV_DIGEST)
    if type(stream) is not str or type(seq) is not int or type(prev) is not str or type(f.body) is not str:
        return "a checkpoint record without its stream, seq, prev digest or note"
    try:
        sn = parse_note(f.body)
        pb = bytes.fromhex(prev)
        canon = canonical.canonical_bytes(stream, seq, f.event_name, f.time_unix_nano, f.severity_number,
                                          f.severity_text, f.body, attrs)
    except (NoteError, ValueError, canonical.CanonicalError) as exc:
        return f"its checkpoint note cannot be read ({exc})"
    cp = sn.checkpoint
    if cp.origin.rsplit("/", 1)[-1] != stream or cp.size != seq or cp.chain != pb:
        return "its checkpoint note does not commit to this record's stream, seq and prev digest"
    if attrs.get(canonical.DIGEST) != canonical.record_digest(pb, canon).hex():
        return "its record's audit.integrity.digest is not the digest of its content: the record was edited"
    check = keyring.check_note(sn)
    if check.status != "ok":
        return f"its checkpoint note is not signed by a valid key of the keyring ({check.status})"
    if witnesses is not None:
        if type(cosignature) is not str or not cosignature:
            return "no witness cosignature of the checkpoint in the bundle"
        try:
            rep.witnessed_by.update(tlog.check_cosignature(sn.text, cosignature, witnesses))
        except tlog.ProofError as exc:
            return f"the witness cosignature of the checkpoint: {exc}"
    rep.proven += 1
    rep.streams[stream] = rep.streams.get(stream, 0) + 1
    rep.keys.add(sn.signatures[0].name)
    return None


def render(rep: BundleReport, witnesses: bool) -> str:
    h = rep.header
    out = [f"otel-audit verify: export bundle {rep.path} (sha256 {rep.sha256})"]
    if h:
        query = orjson.dumps(h.get('query')).decode()
        out.append(f"  created {h.get('created')}, query {query}; the header says {h.get('events')} event(s)")
    out.append(f"{'VERIFIED' if rep.ok else 'FAILED  '} {rep.events} event(s): {rep.proven} proven, "
               f"{len(rep.unproven)} not proven")
    for s, k in sorted(rep.streams.items()):
        out.append(f"    stream {s}: {k} event(s) proven")
    if rep.keys:
        out.append(f"    checkpoints signed by: {', '.join(sorted(rep.keys))}")
    if witnesses:
        out.append(f"    witnessed by: {', '.join(sorted(rep.witnessed_by)) or 'none'}")
    else:
        out.append("    witness cosignatures not checked (give --witness-keys, the service's public keyring)")
    if rep.unproven:
        out.append("not proven:")
        out += [f"  line {u['line']} ({u['id']}): {u['reason']}" for u in rep.unproven[:200]]
        if len(rep.unproven) > 200:
            out.append(f"  ... {len(rep.unproven) - 200} more")
    if rep.problems:
        out.append("problems:")
        out += [f"  {p}" for p in rep.problems[:200]]
    out.append(f"note: {INCOMPLETE}")
    out.append(f"the file's sha256 is {rep.sha256}: the service's data_access.data.exported event of this export "
               "(its own signed stream) records the sha256 it wrote")
    out.append("RESULT: " + ("every event of the bundle is proven" if rep.ok else "NOT every event is proven"))
    return "\n".join(out) + "\n"
