"""What verification found: per-stream and overall reports, and the range helpers they use."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

# -- what is kept per record ----------------------------------------------------------------------


# One record as kept: (calc, prev, digest, note). calc = SHA-256(0x00 || prev || canonical) is the
# digest recomputed from the content, and the Merkle leaf; note is a checkpoint's body, else None.
_Rec = tuple[bytes, bytes, bytes, "str | None"]
CALC: Final = 0
PREV: Final = 1
DIG: Final = 2
NOTE: Final = 3


def _loc(where: str, index: int) -> str:
    return where if index == 0 else f"{where}#{index}"


@dataclass
class StreamReport:
    """What verification found of one stream."""

    stream_id: str
    status: str = "verified"  # verified | failed
    state: str = "open"  # closed | crashed | open
    records: int = 0  # distinct seqs present
    events: int = 0
    checkpoints: int = 0
    sealed: int = 0
    length: int = 0  # how many seqs the stream should hold, as far as known
    producer: dict[str, Any] = field(default_factory=dict)
    # where its records were signed: "source" (by the producer) or "ingest" (by the audit service, for a producer
    # that cannot sign: its valid checkpoints' producer line says audit.signed_by = ingest)
    signed: str = "source"
    keys: list[str] = field(default_factory=list)
    first_time_ns: int | None = None
    last_time_ns: int | None = None
    predecessor: str | None = None
    successor: str | None = None
    parent: str | None = None  # the stream of the process this one's was forked from
    children: list[str] = field(default_factory=list)  # streams of processes forked from this one
    duplicates: int = 0
    modified: list[int] = field(default_factory=list)
    missing: list[list[int]] = field(default_factory=list)  # inclusive ranges
    dropped: list[list[int]] = field(default_factory=list)  # missing, but declared by a signed gap marker
    # every sealed gap marker: {"marker": seq, "seqs": ranges, "reason": text, "destination": name or None,
    # "missing": the declared seqs absent from the input}
    declared: list[dict[str, Any]] = field(default_factory=list)
    conflicting: list[int] = field(default_factory=list)
    inserted: list[int] = field(default_factory=list)
    broken_links: list[list[int]] = field(default_factory=list)
    bad_signatures: list[int] = field(default_factory=list)
    unknown_keys: list[int] = field(default_factory=list)
    expired_keys: list[int] = field(default_factory=list)
    bad_checkpoints: list[dict[str, Any]] = field(default_factory=list)
    root_mismatch: list[int] = field(default_factory=list)
    unsealed: list[list[int]] = field(default_factory=list)
    # liveness (verify/liveness.py): the heartbeat the last valid checkpoint declares, the longest time
    # between consecutive valid checkpoints, and each silence longer than promised
    interval_ns: int | None = None
    longest_silence_ns: int | None = None
    silences: list[dict[str, Any]] = field(default_factory=list)
    # signing keys: each change of key ({"seq", "from", "to", "cosigned"[, "from_stream"]}) and the keys of
    # unknown, expired or bad signatures ({"finding", "keys", "seqs": ranges})
    handovers: list[dict[str, Any]] = field(default_factory=list)
    key_findings: list[dict[str, Any]] = field(default_factory=list)
    # what is proven (inclusive seq ranges), and what is not, by reason (UNPROVEN_REASONS -> ranges)
    proven: list[list[int]] = field(default_factory=list)
    unproven: dict[str, list[list[int]]] = field(default_factory=dict)
    # checkpoint records whose own fields disagree with their signed note: {"seq", "fields": {name: {"record",
    # "note"}}}; such a checkpoint is not valid
    disagreeing_checkpoints: list[dict[str, Any]] = field(default_factory=list)
    # resources contradicting the producer the signed checkpoints name: {"key", "found", "signed", "seqs",
    # "count", "where"}
    misattributed: list[dict[str, Any]] = field(default_factory=list)
    # OTLP records whose embedded audit.integrity.record is not their own canonical content
    embedded_mismatch: list[int] = field(default_factory=list)
    # per key that signed (or claims to have signed) checkpoints: {"name", "key_id", "status" ok|unknown|
    # expired|bad, "seqs", "not_before", "not_after", "checkpoint_times": [first, last] (RFC 3339)}
    signing_keys: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # the latest valid checkpoint: size, root and chain (base64), time_ns, kind, end, the seqs absent up to
    # it ("absent", ranges), its record's digest ("record", hex), and the start checkpoint's claim on the
    # predecessor (stream, size, root, closed) or None; None without one
    latest_checkpoint: dict[str, Any] | None = None
    # for `verify --state`, at each tree size the state asks for: the root (hex), the seqs absent up to and
    # including it (ranges), and the digest (hex) of the record at that seq
    roots_at: dict[int, str] = field(default_factory=dict)
    absent_at: dict[int, list[list[int]]] = field(default_factory=dict)
    leaf_at: dict[int, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in _STATE_ONLY}


_STATE_ONLY = frozenset({"roots_at", "absent_at", "leaf_at"})


# Why records of a stream are not proven (StreamReport.unproven), and how the result line says it
UNPROVEN_REASONS = {
    "after_crash": "after a crash, unsigned (chain-consistent, not proven)",
    "open_tail": "after the last checkpoint of a stream still open, unsigned (chain-consistent, not proven)",
    "unsealed": "not sealed by any signed checkpoint",
    "modified": "modified",
    "conflicting": "conflicting (no variant proven)",
    "inserted": "inserted after the end of their stream",
    "missing": "missing",
    "dropped": "declared not delivered by the producer (signed gap marker), absent",
}


@dataclass
class Report:
    """What verification found: the streams' reports and what the input held besides."""

    files: int = 0
    lines: int = 0
    records: int = 0
    streams: list[StreamReport] = field(default_factory=list)
    unsigned: int = 0
    unsigned_examples: list[str] = field(default_factory=list)
    malformed: list[str] = field(default_factory=list)
    torn: list[str] = field(default_factory=list)  # a last line cut short by a crash: a warning
    problems: list[str] = field(default_factory=list)
    state: dict[str, Any] | None = None  # `verify --state`: what the state file said and whether it was updated
    # what the input held that is plainly not an archive, "path (why)", and items of SIEM exports that are
    # not audit records: not read, and no problem (verify.inputs says what is skipped)
    skipped: list[str] = field(default_factory=list)
    read_as: dict[str, int] = field(default_factory=dict)  # lines or documents each reader took ("otlp": 12)
    at: int | None = None  # unix ns liveness was judged at (verify --at / --now), None: not judged

    @property
    def ok(self) -> bool:
        """Verified: no problem anywhere, and something was proven (a report proving nothing never passes)."""
        return not self.problems and all(s.status == "verified" for s in self.streams) and self.proven > 0

    @property
    def proven(self) -> int:
        """Records proven by a signed checkpoint, over all streams (each seq once)."""
        return sum(s.sealed for s in self.streams)

    @property
    def proven_streams(self) -> int:
        return sum(1 for s in self.streams if s.sealed)

    @property
    def unproven(self) -> dict[str, int]:
        """How many records are not proven, by reason: the streams' reasons, plus unsigned and malformed ones."""
        out = dict.fromkeys(UNPROVEN_REASONS, 0)
        for s in self.streams:
            for reason, rs in s.unproven.items():
                out[reason] = out.get(reason, 0) + sum(b - a + 1 for a, b in rs)
        out["unsigned"] = self.unsigned  # only ever unproven: without --ignore-unsigned they fail the input
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "result": "verified" if self.ok else "failed",
            "proven": self.proven,
            "proven_streams": self.proven_streams,
            "unproven": self.unproven,
            "files": self.files,
            "lines": self.lines,
            "records": self.records,
            "unsigned": self.unsigned,
            "unsigned_examples": self.unsigned_examples,
            "malformed": self.malformed,
            "torn": self.torn,
            "problems": self.problems,
            "skipped": self.skipped,
            "read_as": self.read_as,
            "liveness_at": _iso_ns(self.at),
            "streams": [s.to_json() for s in self.streams],
            **({"state": self.state} if self.state is not None else {}),
        }


def _iso_ns(ns: int | None) -> str | None:
    """RFC 3339 UTC with nanoseconds, as --at was given (None stays None)."""
    if ns is None:
        return None
    import datetime as _dt

    secs, frac = divmod(ns, 10**9)
    return _dt.datetime.fromtimestamp(secs, tz=_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


def _ranges(seqs: Iterable[int]) -> list[list[int]]:
    out: list[list[int]] = []
    for s in seqs:
        if out and out[-1][1] == s - 1:
            out[-1][1] = s
        else:
            out.append([s, s])
    return out


def _gaps(seqs: list[int], length: int) -> list[list[int]]:
    """Inclusive ranges of [0, length) absent from the sorted `seqs`, without walking the range."""
    out: list[list[int]] = []
    nxt = 0
    for s in seqs:
        if s >= length:
            break
        if s > nxt:
            out.append([nxt, s - 1])
        nxt = s + 1
    if nxt < length:
        out.append([nxt, length - 1])
    return out


def _parse_ranges(text: str) -> list[list[int]]:
    out: list[list[int]] = []
    for part in text.split(","):
        a, _, b = part.strip().partition("-")
        if a.isascii() and a.isdigit() and (not b or (b.isascii() and b.isdigit())):
            out.append([int(a), int(b or a)])
    return out


def _parse_bridges(text: Any) -> list[tuple[int, int, bytes, bytes]]:
    out: list[tuple[int, int, bytes, bytes]] = []
    if not isinstance(text, str):
        return out
    for part in text.split(";"):
        try:
            rng, prev, digest = part.split(":")
            a, _, b = rng.partition("-")
            out.append((int(a), int(b or a), bytes.fromhex(prev), bytes.fromhex(digest)))
        except ValueError:
            continue
    return out


def _subtract(missing: list[list[int]], declared: list[list[int]]) -> tuple[list[list[int]], list[list[int]]]:
    """Split inclusive ranges `missing` into (not declared, declared)."""
    decl = sorted(declared)
    left: list[list[int]] = []
    covered: list[list[int]] = []
    for a, b in missing:
        cur = a
        for c, d in decl:
            if d < cur or c > b:
                continue
            if c > cur:
                left.append([cur, c - 1])
            covered.append([max(c, cur), min(d, b)])
            cur = min(d, b) + 1
            if cur > b:
                break
        if cur <= b:
            left.append([cur, b])
    return left, covered


def _fmt_ranges(rs: list[list[int]], limit: int = 12) -> str:
    parts = [str(a) if a == b else f"{a}-{b}" for a, b in rs[:limit]]
    if len(rs) > limit:
        parts.append(f"... ({len(rs) - limit} more)")
    return ", ".join(parts)

