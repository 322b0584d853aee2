"""Liveness and signing keys of a stream: silent stops, key handovers, and keys named in findings.

Every checkpoint declares its producer's heartbeat, `interval <ns>` (the signing processor's
`checkpoint_interval`): another checkpoint follows within that time, a `heartbeat` one when no
event came. A stream is **silent** when two consecutive valid checkpoints lie further apart than
its last one promised, with a tolerance for a loaded machine:

    allowed = TOLERANCE_FACTOR x interval + TOLERANCE_SLACK  (2 x interval + 5 s)

(the processor's timer wakes every min(interval, 1 s), so a healthy gap is at most about twice the
interval; the slack covers a stalled scheduler, a slow disk, a garbage collection). A process
that really stopped (SIGSTOP, a frozen VM, a hung downstream) makes a gap that is reported: it
is a finding, not a false positive. Given a time to judge at (`verify --at TIME` or `--now`), an
**open** stream (no end checkpoint, no successor) whose last valid checkpoint is older than
`allowed` stopped silently, or was cut back to that checkpoint. Times are the checkpoints' own
signed `time` lines (the producer's wall clock). Checkpoints written before the line existed
declare no interval: their streams verify as before, with a note that liveness cannot be checked.

A key handover is a change of the keys that sign consecutive valid checkpoints of a stream, or
from a stream's last checkpoint to its successor's start: cosigned when one checkpoint carries a
valid signature by the old and the new key, a warning when not.

No OpenTelemetry SDK imports.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Mapping
from typing import Any

from otel_audit.keys import Keyring, NoteCheck, describe
from otel_audit.note import SignedNote
from otel_audit.verify.report import StreamReport, _fmt_ranges, _ranges

TOLERANCE_FACTOR = 2
TOLERANCE_SLACK_NS = 5 * 10**9

_Key = tuple[str, bytes]  # (name, key id)


def allowed_ns(interval_ns: int) -> int:
    """The longest silence a checkpoint promising `interval_ns` allows."""
    return TOLERANCE_FACTOR * interval_ns + TOLERANCE_SLACK_NS


def iso(ns: int) -> str:
    """RFC 3339 UTC with milliseconds."""
    dt = _dt.datetime.fromtimestamp(ns / 1e9, tz=_dt.timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _secs(ns: int) -> str:
    s = ns / 1e9
    return f"{s:.3g} s" if s < 10 else f"{s:,.1f} s"


def _tolerance(interval_ns: int) -> str:
    return (f"tolerance {TOLERANCE_FACTOR} x interval + {TOLERANCE_SLACK_NS // 10**9} s = "
            f"{_secs(allowed_ns(interval_ns))}")


_UNIX_RE = re.compile(r"[0-9]+(?:\.[0-9]+)?", re.ASCII)
_RFC3339_RE = re.compile(
    r"(?P<dt>[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?)"
    r"(?P<tz>[Zz]|[+-][0-9]{2}:[0-9]{2})?", re.ASCII)


def parse_time(value: str) -> int:
    """`--at` TIME: RFC 3339 (`2024-05-01T12:00:00Z`, an offset, or fractions) or unix seconds; unix ns out.

    Strict: ASCII digits only, no spaces around the value or before the zone. Raises ValueError with
    what is wrong."""
    if not value.isascii():
        raise ValueError(f"{value!r} holds non-ASCII characters: write the time with ASCII digits 0-9")
    if _UNIX_RE.fullmatch(value):
        secs = float(value)
        if secs > 253402300799:  # after 9999
            raise ValueError(f"{value!r} is not a unix time in seconds (after the year 9999)")
        whole, _, frac = value.partition(".")
        return int(whole) * 10**9 + int((frac + "000000000")[:9])
    m = _RFC3339_RE.fullmatch(value)
    if m is None:
        raise ValueError(f"{value!r} is neither an RFC 3339 time (2024-05-01T12:00:00Z, ASCII digits, no spaces "
                         "before the zone) nor unix seconds (digits, optionally a fraction)")
    if m["tz"] is None:
        raise ValueError(f"{value!r} has no time zone: add Z or an offset such as +02:00")
    tz = "+00:00" if m["tz"] in "Zz" else m["tz"]
    whole, _, frac = m["dt"].partition(".")  # the fraction to the nanosecond (datetime stops at microseconds)
    try:
        dt = _dt.datetime.fromisoformat(whole.replace("t", "T") + tz)
    except ValueError:
        raise ValueError(f"{value!r} is not a valid RFC 3339 time (no such date or time of day)") from None
    delta = dt - _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
    if delta.days < 0:
        raise ValueError(f"{value!r} is before 1970")
    return (delta.days * 86400 + delta.seconds) * 10**9 + int((frac + "000000000")[:9])


# -- keys named in findings -----------------------------------------------------------------------


def record_key_finding(sr: StreamReport, seq: int, check: NoteCheck) -> None:
    """Note which keys made a checkpoint's signature unknown, expired or bad (for messages and JSON):
    one entry per finding and set of keys, {"finding", "keys", "seqs"} (seqs as ranges once checked)."""
    if check.status == "bad":
        named = [describe(k) for k in check.bad]
    elif check.status == "expired":
        named = [describe(k) for k in check.expired]
    else:
        named = [f"{s.name} (id {s.key_id.hex()})" for s in check.unknown]
    for f in sr.key_findings:
        if f["finding"] == check.status and f["keys"] == named:
            f["seqs"].append(seq)
            return
    sr.key_findings.append({"finding": check.status, "keys": named, "seqs": [seq]})


def keys_named(sr: StreamReport, finding: str) -> str:
    """' (key A (id ..., valid ...))', or with several keys ' (key A at seq 3-5; key B at seq 9)'."""
    found = [f for f in sr.key_findings if f["finding"] == finding]
    if not found:
        return ""
    parts = [f"key {', '.join(f['keys']) or '?'}"
             + (f" at seq {_fmt_ranges(_ranges(sorted(f['seqs'])))}" if len(found) > 1 else "") for f in found]
    return " (" + "; ".join(parts[:5]) + (f"; ... {len(parts) - 5} more" if len(parts) > 5 else "") + ")"


# -- liveness and handovers -----------------------------------------------------------------------


class Liveness:
    """Per-verification state: the keyring, and what each proven stream's first and last checkpoints
    were signed by, so that a handover across a restart is seen whichever stream is proven first."""

    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring
        # stream -> (its report, keys of its first valid checkpoint, of its last, the predecessor it names)
        self._seen: dict[str, tuple[StreamReport, frozenset[_Key], frozenset[_Key], str | None]] = {}

    def check(self, sr: StreamReport, valid: Mapping[int, SignedNote], *, at: int | None = None) -> None:
        """Called once per stream by the prover, before its verdict: problems go to sr.problems."""
        for f in sr.key_findings:
            if f["seqs"] and isinstance(f["seqs"][0], int):
                f["seqs"] = _ranges(sorted(f["seqs"]))
        self._shared_names(sr)
        seqs = sorted(valid)
        if not seqs:
            return
        last_t = valid[seqs[-1]].checkpoint.time_ns
        if at is not None and last_t > at:
            first = next(s for s in seqs if valid[s].checkpoint.time_ns > at)
            sr.warnings.append(
                f"liveness judged at {iso(at)}, before this stream's checkpoints from seq {first} "
                f"({iso(valid[first].checkpoint.time_ns)}) to its last at seq {seqs[-1]} ({iso(last_t)}): the "
                "archive postdates TIME, so a silent stop after it cannot be seen; give --at a time after the last "
                "checkpoint (or --now)"
            )
        self._silences(sr, valid, seqs, at)
        self._handovers(sr, valid, seqs)

    def _silences(self, sr: StreamReport, valid: Mapping[int, SignedNote], seqs: list[int], at: int | None) -> None:
        declared = [s for s in seqs if valid[s].checkpoint.interval_ns is not None]
        if not declared:
            if sr.signed == "ingest":
                sr.warnings.append("liveness not checked: signed at ingest, whose checkpoints declare no heartbeat "
                                   "(the audit service cannot promise that a producer keeps sending)")
            else:
                sr.warnings.append("liveness not checked: the checkpoints declare no heartbeat interval (written "
                                   "before checkpoints carried one), so a silent stop cannot be seen")
            return
        last_cp = valid[seqs[-1]].checkpoint
        sr.interval_ns = last_cp.interval_ns
        longest = 0
        for a, b in zip(seqs, seqs[1:], strict=False):
            ca, cb = valid[a].checkpoint, valid[b].checkpoint
            if ca.interval_ns is None:
                continue
            gap = cb.time_ns - ca.time_ns
            longest = max(longest, gap)
            if gap > allowed_ns(ca.interval_ns):
                sr.silences.append(_silence("gap", a, ca.time_ns, b, cb.time_ns, gap, ca.interval_ns))
                sr.problems.append(
                    f"silent for {_secs(gap)}: stream {sr.stream_id} made no checkpoint between seq {a} "
                    f"({iso(ca.time_ns)}) and seq {b} ({iso(cb.time_ns)}), though its checkpoints promise one at "
                    f"least every {_secs(ca.interval_ns)} ({_tolerance(ca.interval_ns)}); the producer stalled "
                    "or was stopped, or checkpoints were removed"
                )
        sr.longest_silence_ns = longest
        if at is None or sr.state != "open":
            return
        if last_cp.interval_ns is None:
            sr.warnings.append(f"liveness at {iso(at)} not checked: the last checkpoint (seq {seqs[-1]}) declares no "
                               "heartbeat interval")
            return
        quiet = at - last_cp.time_ns
        if quiet > allowed_ns(last_cp.interval_ns):
            sr.silences.append(_silence("stopped", seqs[-1], last_cp.time_ns, None, at, quiet, last_cp.interval_ns))
            sr.problems.append(
                f"silent stop: open stream {sr.stream_id} (no end checkpoint, no successor) has no checkpoint after "
                f"seq {seqs[-1]} ({iso(last_cp.time_ns)}), {_secs(quiet)} before {iso(at)}, though it promised one "
                f"at least every {_secs(last_cp.interval_ns)} ({_tolerance(last_cp.interval_ns)}); the producer "
                "stopped without closing it, or the stream was cut back to that checkpoint"
            )

    def _shared_names(self, sr: StreamReport) -> None:
        """A loud note when a key that signed this stream shares its name with another key of the keyring:
        two public keys under one name (two producers' `gw`, or an entry someone added to pass their own
        key off as the producer's); the report tells them apart by key id only."""
        done: set[str] = set()
        for k in sr.signing_keys:
            name = k["name"]
            if name in done or k["status"] == "unknown":
                continue
            done.add(name)
            same = self.keyring.same_name(name)
            if len(same) < 2:
                continue
            used = sorted({f"{name} (id {x['key_id']})" for x in sr.signing_keys if x["name"] == name})
            held = "; ".join(f"{describe(x)} from {self.keyring.where(x) or 'memory'}" for x in same)
            sr.warnings.append(
                f"KEY NAME SHARED: your keyring holds {len(same)} different public keys named {name} ({held}); this "
                f"stream is signed by {', '.join(used)}: check that this key id is the producer's, since every key "
                "in the keyring is trusted and anyone who added one can sign under that name"
            )

    def _keys(self, sn: SignedNote) -> frozenset[_Key]:
        """The keys whose signatures make this (valid) note valid: known and valid at its time."""
        out = set()
        for s in sn.signatures:
            k = self.keyring.lookup(s.name, s.key_id)
            if k is not None and k.valid_at(sn.checkpoint.time_ns):
                out.add((s.name, s.key_id))
        return frozenset(out)

    def _handovers(self, sr: StreamReport, valid: Mapping[int, SignedNote], seqs: list[int]) -> None:
        before: frozenset[_Key] | None = None
        for seq in seqs:
            now = self._keys(valid[seq])
            if before is not None:
                _handover(sr, seq, before, now, None)
            before = now
        first, last = self._keys(valid[seqs[0]]), before or frozenset()
        start = valid.get(0)
        pred = start.checkpoint.prev.stream_id if start is not None and start.checkpoint.prev is not None else None
        self._seen[sr.stream_id] = (sr, first, last, pred)
        if pred is not None and pred in self._seen:
            _handover(sr, 0, self._seen[pred][2], first, pred)
        for other, (osr, ofirst, _, opred) in self._seen.items():
            if opred == sr.stream_id and other != sr.stream_id:
                _handover(osr, 0, last, ofirst, sr.stream_id)


def _ids(keys: frozenset[_Key]) -> list[str]:
    return [f"{n} (id {kid.hex()})" for n, kid in sorted(keys)]


def _name(keys: frozenset[_Key]) -> str:
    return ", ".join(f"{n} (id {kid.hex()})" for n, kid in sorted(keys)) or "no valid key"


def _handover(sr: StreamReport, seq: int, before: frozenset[_Key], now: frozenset[_Key], pred: str | None) -> None:
    added = now - before
    if not added or not before:
        return
    cosigned = bool(now & before)
    old = (before - now) or before
    entry: dict[str, Any] = {"seq": seq, "from": sorted(n for n, _ in old), "to": sorted(n for n, _ in added),
                             "from_keys": _ids(old), "to_keys": _ids(added), "cosigned": cosigned}
    if pred is not None:
        entry["from_stream"] = pred
    sr.handovers.append(entry)
    where = f"at seq {seq}" if pred is None else f"at the start of this stream (from predecessor stream {pred})"
    if cosigned:
        return  # rendered from sr.handovers: "key changed from X to Y at seq N, cosigned by both"
    sr.warnings.append(
        f"signing key changed from {_name(before)} to {_name(added)} {where} without a checkpoint signed by both "
        "(not cosigned: the old key's private file was gone or its grace period over, or the producer predates "
        "cosigning)"
    )


def describe_handover(h: Mapping[str, Any]) -> str:
    where = f"at seq {h['seq']}" if "from_stream" not in h else f"from stream {h['from_stream']} at this stream's start"
    return (f"key changed from {', '.join(h.get('from_keys', h['from']))} to {', '.join(h.get('to_keys', h['to']))} "
            f"{where}"
            + (", cosigned by both" if h["cosigned"] else ", NOT cosigned"))


def _silence(kind: str, a: int, ta: int, b: int | None, tb: int, gap: int, interval: int) -> dict[str, Any]:
    return {"kind": kind, "from_seq": a, "from_time": iso(ta), "to_seq": b, "to_time": iso(tb),
            "silent_ns": gap, "interval_ns": interval, "allowed_ns": allowed_ns(interval)}


__all__ = ["TOLERANCE_FACTOR", "TOLERANCE_SLACK_NS", "Liveness", "allowed_ns", "describe_handover", "iso",
           "keys_named", "parse_time", "record_key_finding"]
