"""`otel-audit verify --state FILE`: what earlier audits verified, so that the next one can tell a
history that was cut, deleted or re-signed since.

An archive alone cannot show that its newest stream was deleted whole, that a tail was cut back to
an earlier checkpoint, or that the key holder re-signed a rewritten history: each of those leaves a
self-consistent archive. The state file remembers, for every stream verified, its latest verified
checkpoint (size, root), and for every lineage (streams linked by `prev`) its head. The next run
must find each remembered stream at least that long, with the same tree root at the remembered size
(recomputed from the leaves of the input: the check an RFC 6962 consistency proof makes), and each
lineage's head still there or followed by a stream of the input. docs/state.md has the format.

The file is the auditor's own: it is written atomically, only after a run that verified, and a
damaged one is an error (exit 2), never a silent fresh start. A new state file and its `.lock` are
0600 whatever the umask; an existing one keeps its mode. No OpenTelemetry SDK imports.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime
import hashlib
import json
import os
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson

from otel_audit.errors import InputError
from otel_audit.filemodes import FILE_MODE, open_append, open_new
from otel_audit.note import KINDS
from otel_audit.verify.report import Report, StreamReport

FORMAT = "otel-audit-state/v2"
FORMAT_V1 = "otel-audit-state/v1"  # read (streams' absent seqs and checkpoint record unknown), written as v2
STATES = ("closed", "crashed", "open")
_FIELDS_V1 = ("size", "root", "chain", "time_ns", "kind", "state", "predecessor", "parent", "verified", "checked")
# v2: "absent", the seqs up to `size` absent when verified (ranges, normally []), and "record", the digest
# (hex) of the checkpoint record at seq `size`; both null for a stream remembered from a v1 file
_FIELDS = (*_FIELDS_V1, "absent", "record")
_TOP = ("checksum", "format", "lineages", "streams", "updated")
_HEAD = ("size", "root", "chain", "time_ns", "state", "verified")
_MAX_INT = 2**63 - 1


class StateError(InputError):
    """The state file cannot be used (damaged, another format, locked, not writable): exit 2."""


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _checksum(doc: Mapping[str, Any]) -> str:
    body = {k: v for k, v in doc.items() if k != "checksum"}
    return "sha256:" + hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _is_id(v: Any) -> bool:
    return isinstance(v, str) and len(v) == 32 and all(c in "0123456789abcdef" for c in v)


def _is_hex32(v: Any) -> bool:
    return isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v)


def _is_ranges(v: Any, top: int) -> bool:
    """Ascending, disjoint inclusive [a, b] ranges within [0, top]."""
    if not isinstance(v, list):
        return False
    last = -2
    for r in v:
        if not (isinstance(r, list) and len(r) == 2 and all(type(x) is int for x in r)):
            return False
        a, b = r
        if not (last + 1 < a <= b <= top):
            return False
        last = b
    return True


def _fmt(rs: list[list[int]]) -> str:
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in rs)


def _minus(rs: list[list[int]], cut: list[list[int]]) -> list[list[int]]:
    """The seqs of `rs` not in `cut` (both inclusive ranges, ascending)."""
    out: list[list[int]] = []
    for a, b in rs:
        cur = a
        for c, d in cut:
            if d < cur or c > b:
                continue
            if c > cur:
                out.append([cur, c - 1])
            cur = max(cur, d + 1)
        if cur <= b:
            out.append([cur, b])
    return out


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"member {k[:40]!r} appears twice in one object")
        out[k] = v
    return out


def _bad_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _is_b64_32(v: Any) -> bool:
    try:
        return isinstance(v, str) and len(base64.b64decode(v, validate=True)) == 32
    except (binascii.Error, ValueError):
        return False


def lineages(streams: Mapping[str, Mapping[str, Any]]) -> list[list[str]]:
    """The streams as chains linked by `predecessor`, first stream first, in a stable order.

    A lineage starts at a stream whose predecessor is unknown (or none); raises ValueError when two
    streams name the same predecessor (a fork) or the links make a cycle (both only by forgery)."""
    succ: dict[str, str] = {}
    for sid in sorted(streams):
        p = streams[sid].get("predecessor")
        if isinstance(p, str) and p in streams:
            if p in succ:
                raise ValueError(f"streams {succ[p]} and {sid} both name {p} as their predecessor")
            succ[p] = sid
    out: list[list[str]] = []
    seen: set[str] = set()
    for sid in sorted(streams):
        if streams[sid].get("predecessor") in streams:
            continue
        chain = [sid]
        while chain[-1] in succ:
            chain.append(succ[chain[-1]])
        seen.update(chain)
        out.append(chain)
    if len(seen) != len(streams):
        raise ValueError("streams " + ", ".join(sorted(set(streams) - seen)[:5]) + " name each other as "
                         "predecessors (a cycle)")
    return out


class AuditState:
    """One state file, locked for the run: `check` a finished report against it, then `commit`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.streams: dict[str, dict[str, Any]] = {}
        self.existed = False
        self._lock_fd: int | None = None
        self._pending: dict[str, dict[str, Any]] | None = None
        self._now = _now()

    # -- reading -----------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> AuditState:
        st = cls(Path(path))
        st._lock()
        try:
            st._read()
        except BaseException:
            st.close()
            raise
        return st

    def _lock(self) -> None:
        import fcntl

        folder = self.path.parent
        if not folder.is_dir():
            raise StateError(f"{self.path}: cannot keep the state there: folder {folder} does not exist")
        if self.path.is_dir():
            raise StateError(f"{self.path}: is a folder; --state takes a file (created on first use)")
        if self.path.is_symlink() and not self.path.exists() and not Path(os.path.realpath(self.path)).parent.is_dir():
            raise StateError(f"{self.path}: a symlink to {os.readlink(self.path)}, which does not exist (is its "
                             "store mounted?); a fresh state would forget what earlier audits verified")
        try:
            mode = os.stat(self.path).st_mode
        except OSError:
            mode = None  # absent (created on first use), or unreadable: reading says why
        if mode is not None and not stat.S_ISREG(mode):
            kind = "a named pipe" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
            raise StateError(f"{self.path}: {kind}, not a state file; --state takes a regular file (created on "
                             "first use)")
        lock = self.path.with_name(self.path.name + ".lock")
        try:
            fd = open_append(lock, os.O_RDWR)  # 0600 when made here
        except OSError as exc:
            raise StateError(f"{lock}: cannot create the state's lock file: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            raise StateError(f"{self.path}: in use by another audit (locked through {lock.name}); "
                             "run one audit at a time per state file") from exc
        self._lock_fd = fd

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock
            self._lock_fd = None

    def _damaged(self, what: str) -> StateError:
        return StateError(
            f"{self.path}: damaged state file: {what}. It is left as it was; restore it from a backup "
            "(starting a new file forgets what earlier audits verified)"
        )

    def _read(self) -> None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return  # first use: created by the first run that verifies
        except OSError as exc:
            raise StateError(f"{self.path}: cannot read the state file: {exc.strerror}") from exc
        self.existed = True
        try:
            doc = json.loads(data, object_pairs_hook=_no_duplicates, parse_constant=_bad_constant)
        except UnicodeDecodeError:
            raise self._damaged("not UTF-8 JSON") from None
        except json.JSONDecodeError as exc:
            raise self._damaged(f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
        except ValueError as exc:
            raise self._damaged(str(exc)) from None
        except RecursionError:
            raise self._damaged("JSON nested too deep") from None
        if not isinstance(doc, dict):
            raise self._damaged("not a JSON object")
        fmt = doc.get("format")
        if fmt not in (FORMAT, FORMAT_V1):
            if isinstance(fmt, str) and fmt.startswith("otel-audit-state/"):
                raise StateError(f"{self.path}: state format {fmt!r} is not one this otel-audit reads "
                                 f"({FORMAT}, {FORMAT_V1}); use the otel-audit release that wrote it")
            raise self._damaged(f"no \"format\": \"{FORMAT}\" (not an otel-audit state file?)")
        unknown = sorted(set(doc) - set(_TOP))
        if unknown:
            raise self._damaged(f"unknown member {unknown[0][:40]!r} (members are {', '.join(_TOP)})")
        streams = doc.get("streams")
        if not isinstance(streams, dict):
            raise self._damaged("\"streams\" is not an object")
        fields = _FIELDS if fmt == FORMAT else _FIELDS_V1
        for sid, e in streams.items():
            problem = _entry_problem(sid, e, fields)
            if problem:
                raise self._damaged(f"stream {sid[:40]!r}: {problem}")
        if not isinstance(doc.get("updated"), str):
            raise self._damaged("\"updated\" is not text")
        # the values are in range now: the checksum can be computed as it was written
        if doc.get("checksum") != _checksum(doc):
            raise self._damaged("its checksum does not match its content (edited or corrupted)")
        if fmt == FORMAT_V1:  # what a v1 file did not keep: unknown (docs/state.md, "Format versions")
            for e in streams.values():
                e["absent"] = e["record"] = None
        try:
            expected = _lineage_docs(streams)
        except ValueError as exc:
            raise self._damaged(str(exc)) from None
        stored = doc.get("lineages")
        if not isinstance(stored, list):
            raise self._damaged("\"lineages\" is not a list")
        for i, want in enumerate(expected):
            got = stored[i] if i < len(stored) else None
            if got != want:
                first = want["streams"][0]
                if not isinstance(got, dict):
                    raise self._damaged(f"lineage {i} (of stream {first}) is missing or not an object")
                what = next((k for k in sorted(set(want) | set(got)) if got.get(k) != want.get(k)), "?")
                if what == "head" and isinstance(got.get("head"), dict):
                    sub = next(k for k in sorted(set(want["head"]) | set(got["head"]))
                               if got["head"].get(k) != want["head"].get(k))
                    what = f"head.{sub} {str(got['head'].get(sub))[:40]}, the streams say {want['head'].get(sub)}"
                raise self._damaged(f"lineage {i} (of stream {first}) disagrees with the streams' entries: {what}")
        if len(stored) > len(expected):
            raise self._damaged(f"lineage {len(expected)} is not one the streams' predecessor links make")
        self.streams = streams

    def roots_wanted(self) -> dict[str, list[int]]:
        """For the verifier (`Verifier(roots_at=...)`): per stream, the size whose root the check needs."""
        return {sid: [e["size"]] for sid, e in self.streams.items()}

    # -- checking ----------------------------------------------------------------------------------

    def check(self, report: Report, *, partial: bool = False) -> None:
        """Compare a finished report with the state; problems go to the stream (or the report), and
        `report.state` says what was checked. Call `commit` afterwards."""
        inp = {s.stream_id: s for s in report.streams}
        found: list[str] = []

        def problem(sr: StreamReport | None, msg: str) -> None:
            if sr is None:
                report.problems.append(f"state: {msg}")
                found.append(msg)
            else:
                sr.problems.append(msg)
                sr.status = "failed"
                found.append(f"stream {sr.stream_id}: {msg}")

        for sid, e in self.streams.items():
            sr = inp.get(sid)
            if sr is not None:
                self._check_stream(sr, e, problem)
        # streams of the input that follow a stream the state knows but the input lacks
        successor_of = {e["predecessor"]: sid for sid, e in self.streams.items() if e["predecessor"]}
        for sr in report.streams:
            p = sr.predecessor
            if p is None or p not in self.streams:
                continue
            known = successor_of.get(p)
            if known is not None and known != sr.stream_id:
                problem(sr, f"forked lineage: names stream {p} as its predecessor, which was followed by stream "
                            f"{known} when verified on {self.streams[known]['verified']}")
            claim = (sr.latest_checkpoint or {}).get("prev")
            if p not in inp and claim:
                self._check_claim(sr, claim, self.streams[p], problem)
        # lineages
        old = lineages(self.streams)
        checked: list[str] = []
        advanced: list[str] = []
        outside: list[str] = []
        for chain in old:
            # a known stream absent between streams of the input that precede and follow it is a hole, not
            # an archive cut per day: a problem even with --partial
            for i, sid in enumerate(chain):
                if sid in inp or not any(s in inp for s in chain[:i]):
                    continue
                after = [s for s in chain[i + 1:] if s in inp] or [s.stream_id for s in report.streams
                                                                   if _descends(s, sid, inp)]
                if after:
                    se = self.streams[sid]
                    problem(inp[after[0]], f"stream {sid} ({se['state']}, verified up to seq {se['size']} on "
                                           f"{se['verified']}) is gone from between streams of the input that "
                                           f"precede and follow it (a hole, not a cut archive)")
            head = chain[-1]
            he = self.streams[head]
            present = [s for s in chain if s in inp]
            followers = [s.stream_id for s in report.streams if _descends(s, head, inp)]
            if head in inp or followers:
                checked.append(chain[0])
                lc = inp[head].latest_checkpoint if head in inp else None
                if followers or (lc is not None and lc["size"] > he["size"]):
                    advanced.append(chain[0])
                continue
            what = f"stream {head} ({he['state']}, verified up to seq {he['size']} on {he['verified']})"
            if present:
                problem(inp[present[-1]], f"the newest stream verified before is gone: {what}, the newest of this "
                                          "lineage, is not in the input and no stream in the input follows it")
                checked.append(chain[0])
            elif partial:
                outside.append(chain[0])
            else:
                problem(None, f"lineage of stream {chain[0]} (newest {what}) is not in the input; verify with it, "
                              "or pass --partial to check only what the input holds")
        # what the state becomes if this run verifies
        merged = dict(self.streams)
        for sr in report.streams:
            lc = sr.latest_checkpoint
            if lc is None:
                continue
            prior = merged.get(sr.stream_id)
            same = prior is not None and prior["size"] == lc["size"] and prior["root"] == lc["root"]
            merged[sr.stream_id] = {
                "size": lc["size"], "root": lc["root"], "chain": lc["chain"], "time_ns": lc["time_ns"],
                "kind": lc["kind"], "state": sr.state, "predecessor": sr.predecessor, "parent": sr.parent,
                "verified": prior["verified"] if same and prior else self._now, "checked": self._now,
                "absent": lc["absent"], "record": lc["record"],
            }
        new: list[str] = []
        try:
            for chain in lineages(merged):
                if not any(s in self.streams for s in chain):
                    new.append(chain[0])
        except ValueError as exc:
            problem(None, f"the streams cannot be kept as lineages: {exc}")
        self._pending = merged
        report.state = {
            "file": str(self.path),
            "created": False,
            "updated": False,
            "lineages_known": len(old),
            "checked": checked,
            "advanced": advanced,
            "new": new,
            "outside": outside,
            "problems": found,
        }

    def _check_stream(self, sr: StreamReport, e: Mapping[str, Any], problem: Any) -> None:
        n, when = e["size"], e["verified"]
        lc = sr.latest_checkpoint
        if sr.predecessor != e["predecessor"]:
            problem(sr, f"names {sr.predecessor or 'no stream'} as its predecessor, but "
                        f"{e['predecessor'] or 'no stream'} when verified on {when}: rewritten or re-signed")
        if lc is None:
            problem(sr, f"shorter than when verified on {when}: no valid checkpoint now, then one at seq {n} "
                        f"({e['state']}): tail removed or checkpoints deleted")
        elif lc["size"] < n:
            problem(sr, f"shorter than when verified on {when}: its latest valid checkpoint is at seq {lc['size']}, "
                        f"then at seq {n} ({e['state']}): tail removed")
        reaches = lc is not None and lc["size"] >= n
        # records present when verified must be present now: a signed gap marker (which the key holder can
        # forge, and which a destination's rejection writes for records the archive holds) excuses only
        # seqs that were absent then too
        gone: list[list[int]] = []
        if reaches and e["absent"] is not None:
            gone = _minus(sr.absent_at.get(n, []), e["absent"])
            if gone:
                problem(sr, f"records present when verified on {e['checked']} are gone: seq {_fmt(gone)} (below "
                            f"or at the remembered size {n})")
        leaf = sr.leaf_at.get(n)
        if e["record"] is not None and leaf is not None and leaf != e["record"]:
            problem(sr, f"the checkpoint at seq {n} differs from the one verified on {when}: re-signed")
        root = sr.roots_at.get(n)
        want = base64.b64decode(e["root"]).hex()
        if root is None:
            if reaches:
                problem(sr, f"the history verified on {when} up to size {n} cannot be recomputed: records below "
                            f"seq {n} are missing and there is no valid checkpoint at seq {n}")
        elif root != want and not gone:
            problem(sr, f"history differs from the one verified on {when} at size {n}: rewritten or re-signed")

    def _check_claim(self, sr: StreamReport, claim: Mapping[str, Any], e: Mapping[str, Any], problem: Any) -> None:
        p, n = claim["stream"], e["size"]
        if claim["size"] < n:
            problem(sr, f"names its predecessor {p} as ending at seq {claim['size']}, but {p} was verified up to "
                        f"seq {n} on {e['verified']}: its tail was removed or its history re-signed")
        elif claim["size"] == n and claim["root"] != e["root"]:
            problem(sr, f"names a history of its predecessor {p} at size {n} other than the one verified on "
                        f"{e['verified']}: rewritten or re-signed")

    # -- writing -----------------------------------------------------------------------------------

    def commit(self, report: Report) -> bool:
        """Write the state if the run verified (`report.ok`); else leave the file as it was."""
        if report.state is None or self._pending is None:
            raise RuntimeError("AuditState.commit before check")
        if not report.ok:
            report.state["note"] = ("not updated: the run did not verify; the state file is left as it was"
                                    if self.existed else "not created: the run did not verify")
            return False
        doc = self.to_doc(self._pending)
        _write_atomic(self.path, orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
        self.streams = self._pending
        report.state["created"] = not self.existed
        report.state["updated"] = True
        report.state["note"] = "created" if not self.existed else "updated"
        return True

    def to_doc(self, streams: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        doc: dict[str, Any] = {"format": FORMAT, "updated": self._now, "lineages": _lineage_docs(streams),
                               "streams": {sid: {k: streams[sid][k] for k in _FIELDS} for sid in sorted(streams)}}
        doc["checksum"] = _checksum(doc)
        return doc


def _lineage_docs(streams: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The file's "lineages" section, derived from the streams (a file whose section differs is damaged)."""
    out = []
    for chain in lineages(streams):
        head = streams[chain[-1]]
        out.append({"streams": chain, "parent": streams[chain[0]]["parent"],
                    "head": {"stream": chain[-1], **{k: head[k] for k in _HEAD}}})
    return out


def _descends(sr: StreamReport, head: str, inp: Mapping[str, StreamReport]) -> bool:
    """Does the stream follow `head`, through predecessor links of streams in the input?"""
    seen: set[str] = set()
    cur: StreamReport | None = sr
    while cur is not None and cur.predecessor and cur.stream_id not in seen:
        if cur.predecessor == head:
            return True
        seen.add(cur.stream_id)
        cur = inp.get(cur.predecessor)
    return False


def _entry_problem(sid: Any, e: Any, fields: tuple[str, ...] = _FIELDS) -> str | None:
    if not _is_id(sid):
        return "not a stream id (32 lower-case hex digits)"
    if not isinstance(e, dict) or set(e) != set(fields):
        extra = sorted(set(e) - set(fields)) if isinstance(e, dict) else []
        return (f"unknown field {extra[0][:40]!r}; " if extra else "") + "fields must be " + ", ".join(fields)
    for k in ("size", "time_ns"):
        if type(e[k]) is not int or not 0 <= e[k] <= _MAX_INT:
            return f"{k} must be an integer from 0 to 2^63-1, not {str(e[k])[:40]}"
    if "absent" in e:
        if e["absent"] is not None and not _is_ranges(e["absent"], e["size"]):
            return "absent must be null or ascending, disjoint [first, last] seq ranges within the size"
        if e["record"] is not None and not _is_hex32(e["record"]):
            return "record must be null or the hex of a 32-byte digest"
    if not _is_b64_32(e["root"]) or not _is_b64_32(e["chain"]):
        return "root and chain must be base64 of 32 bytes"
    if e["state"] not in STATES:
        return f"state must be one of {', '.join(STATES)}"
    for k in ("predecessor", "parent"):
        if e[k] is not None and not _is_id(e[k]):
            return f"{k} must be a stream id or null"
    if not all(isinstance(e[k], str) and e[k] for k in ("verified", "checked", "kind")):
        return "verified, checked and kind must be text"
    if e["kind"] not in KINDS:
        return f"kind must be a checkpoint kind ({', '.join(sorted(KINDS))}), not {e['kind'][:40]!r}"
    for k in ("verified", "checked"):
        try:
            datetime.datetime.fromisoformat(e[k].replace("Z", "+00:00"))
        except ValueError:
            return f"{k} must be an RFC 3339 time, not {e[k][:40]!r}"
    return None


def _write_atomic(path: Path, data: bytes) -> None:
    """Write a temporary file next to `path`, fsync it, rename it over `path`, fsync the folder. A symlink
    is followed: its target is replaced, the link stays. A new state file is 0600 whatever the umask; one
    that exists keeps its mode (the auditor's choice, as `otel-audit keys export` keeps a keyring's)."""
    path = Path(os.path.realpath(path))
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        mode = FILE_MODE
    try:
        fd = open_new(tmp, os.O_WRONLY | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise StateError(f"{path}: cannot write the state file: {exc.strerror}; it is left as it was") from exc


@contextlib.contextmanager
def opened(path: str | os.PathLike[str] | None) -> Iterator[AuditState | None]:
    """The state file, locked for the block (None: no state)."""
    if path is None:
        yield None
        return
    st = AuditState.open(path)
    try:
        yield st
    finally:
        st.close()
