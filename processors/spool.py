"""Durable delivery: every record reaches a spool on disk before `emit` returns, then each exporter
ships from its own cursor, with retries, and a record leaves the spool only when every exporter has it.

    SigningProcessor(keys, downstream=SpoolProcessor("spool/", {"splunk": hec, "archive": file}))

Layout of the spool folder (one process owns it: an flock guards it):

    spool.json              the highest segment number ever made (a deleted newest segment shows)
    segments/<id>.spool     checksummed lines; a new segment every `segment_bytes`
    cursors/<exporter>.json where that exporter stands (segment id, byte offset), checksummed
    quarantine/             damaged lines and files, set aside with a note of where they were
    drops.jsonl             backlogs an operator dropped with `otel-audit spool drop`
    worker-<k>/             the spool of another process configured with the same folder (a
                            gunicorn worker, a forked child): each process takes the first free slot,
                            and a slot left with a backlog by a process that is gone is delivered by
                            a live one (otel_audit.slots)

Everything in it is private whatever the umask: folders made here are 0700, files 0600
(otel_audit.filemodes). A spool folder that exists already keeps its mode; check-config warns if
others can read or change it.

Every line is `<crc32 hex, 8 chars><JSON>\\n`; a segment begins with an `H` line naming its number
and ends with an `E` line counting its records, so a byte flip, a truncated, copied or edited
segment, a deleted segment and a cursor that points nowhere are all detected: the damage is
quarantined and reported loudly with counts, and delivery of everything undamaged goes on. Records
the damage destroyed between two undamaged records of one stream are named to `on_lost`, and the
signing processor declares them in a signed marker. Nothing is skipped or deleted that an exporter
has not acknowledged, at any restart and whatever its lag; an exporter removed from the
configuration keeps its backlog (named at every start) until `otel-audit spool drop` says otherwise.

Segments are preallocated with posix_fallocate and then written through a memory map, so that a
write is a memory copy (no system call per record) and a full disk shows as ENOSPC when a segment
is allocated — never as SIGBUS on a page of a sparse file. The next segment is allocated ahead of
need; without it, ordinary records stop short of a small reserve that keeps room for checkpoints
and gap markers. A full disk is handled like a full spool, and the spool recovers by itself when
space returns.

When the spool holds `max_bytes`, or the disk is full, `mode` decides: "fail_closed" blocks emit up
to `block_timeout` seconds and then raises DeliveryError (like Vault, the caller learns its audit
record was refused; the signing processor seals the refusal into the chain); "fail_open" drops the
record, counts and logs it, and tells the signing processor, which seals a signed `audit.gap`
record naming the dropped seqs.

An exporter reports records its destination refused for good in `last_rejected` (indices into the
batch); they are counted apart from delivered and named to `on_reject`, which seals a marker, so the
verifier does not call them missing. Everything else is retried until delivered.
"""

from __future__ import annotations

import bisect
import builtins  # annotations after SpoolProcessor.bytes (a property) name the type as builtins.bytes
import contextlib
import errno
import fcntl
import logging
import mmap
import os
import random
import threading
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import orjson
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.sdk._logs import LogRecordProcessor, ReadableLogRecord, ReadWriteLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from otel_audit._sdk_compat import attributes_view, severity_int
from otel_audit.canonical import CHECKPOINT_EVENT, DIGEST, GAP_EVENT, PREV_DIGEST, STREAM_ID, STREAM_SEQ
from otel_audit.errors import ConfigError, DeliveryError
from otel_audit.filemodes import make_dirs, open_append, open_lock, open_new, write_private
from otel_audit.lifecycle import after_fork_in_child, background_thread
from otel_audit.lifecycle import pending as lifecycle_pending
from otel_audit.otlpjson import decode_anyvalue, decode_attributes, encode_anyvalue, encode_attributes
from otel_audit.slots import claim_slot, slots

_log = logging.getLogger(__name__)
_dumps = orjson.dumps
_crc = zlib.crc32
_PLAIN = frozenset({str, int, bool})
MODES = ("fail_closed", "fail_open")
_INTEGRITY_EVENTS = frozenset({CHECKPOINT_EVENT, GAP_EVENT})
_SEG = ".spool"
MANIFEST = "spool.json"
DROPS = "drops.jsonl"
DEFAULT_SEGMENT = 32 << 20
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
#: how often a failing allocation is tried again while the disk is full
_ALLOC_RETRY = 0.2
_CHUNK = 4 << 20

Integrity = tuple[str, int, str, str]  # stream id, seq, prev digest, digest


#: what an adopted slot's reader takes over from the spool that adopts it
_SETTINGS = frozenset({"base", "exporters", "mode", "max_bytes", "segment_bytes", "block_timeout", "fsync_interval",
                       "max_batch", "batch_wait", "retry_initial", "retry_max", "on_drop", "memory_records",
                       "shutdown_timeout", "_reserve"})


def _seg_name(n: int) -> str:
    return f"{n:016d}{_SEG}"


def _mem_key(e: tuple[int, int, int, Any]) -> tuple[int, int]:
    return e[0], e[1]


def frame(payload: bytes) -> bytes:
    """One spool line: the CRC-32 of the JSON payload in hex, the payload, a newline."""
    return b"%08x" % _crc(payload) + payload + b"\n"


def unframe(line: bytes) -> bytes | None:
    """The payload of a spool line (with or without its newline), or None if it is damaged."""
    if line.endswith(b"\n"):
        line = line[:-1]
    if len(line) < 9:
        return None
    payload = line[8:]
    try:
        ok = int(line[:8], 16) == _crc(payload)
    except ValueError:
        return None
    return payload if ok else None


def _header(n: int) -> bytes:
    """The first line of segment n: its own number, so a segment copied or renamed over another shows."""
    return frame(_dumps(["H", n]))


def default_segment_bytes(max_bytes: int) -> int:
    """The segment size when none is given: 32 MiB, or an eighth of the spool when that is smaller."""
    return max(1 << 12, min(DEFAULT_SEGMENT, max_bytes // 8) // 4096 * 4096)


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    """Replace `path` with a checksummed JSON document (atomic rename; OSError on failure)."""
    body = _dumps(doc, option=orjson.OPT_SORT_KEYS)
    data = _dumps({"crc": _crc(body), "doc": orjson.Fragment(body)})
    tmp = path.with_name(path.name + ".tmp")
    try:
        write_private(tmp, data)  # 0600 whatever the umask, before the rename
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _read_json(path: Path) -> dict[str, Any]:
    """A document written by _write_json; ValueError if it is damaged."""
    outer = orjson.loads(path.read_bytes())
    if not isinstance(outer, dict) or set(outer) != {"crc", "doc"} or not isinstance(outer["doc"], dict):
        raise ValueError("not a checksummed spool document")
    if _crc(_dumps(outer["doc"], option=orjson.OPT_SORT_KEYS)) != outer["crc"]:
        raise ValueError("checksum mismatch")
    return outer["doc"]


def _cursor_file(name: str) -> str:
    return f"{name.replace('/', '__')}.json"


def _cursor_name(filename: str) -> str:
    return filename[: -len(".json")].replace("__", "/")


class _Cursor:
    __slots__ = ("name", "segment", "offset", "path", "dirty")

    def __init__(self, name: str, path: Path, segment: int, offset: int) -> None:
        self.name, self.path, self.segment, self.offset = name, path, segment, offset
        self.dirty = False

    def save(self) -> bool:
        try:
            _write_json(self.path, {"segment": self.segment, "offset": self.offset})
        except OSError as exc:  # a full disk: the old cursor stays; a restart replays (duplicates, not loss)
            _log.warning("cannot save spool cursor %s: %s", self.path, exc.strerror)
            return False
        self.dirty = False
        return True


class _Reader:
    """What one exporter's reader last read, so that records destroyed by damage between two undamaged
    neighbours of one stream can be named exactly (and declared in a signed marker)."""

    __slots__ = ("last", "damaged")

    def __init__(self) -> None:
        self.last: tuple[str, int, str] | None = None  # stream, seq, digest
        self.damaged = False

    def saw(self, record: Any) -> tuple[str, int, int, str, str] | None:
        """Note a record read in order; (stream, first, last, prev, digest) of what damage destroyed before it."""
        a = record.log_record.attributes or {}
        try:
            stream, seq, prev, digest = str(a[STREAM_ID]), int(a[STREAM_SEQ]), str(a[PREV_DIGEST]), str(a[DIGEST])
        except (KeyError, TypeError, ValueError):
            return None
        lost = None
        if self.damaged and self.last is not None and self.last[0] == stream and seq > self.last[1] + 1:
            lost = (stream, self.last[1] + 1, seq - 1, self.last[2], prev)
        self.damaged = False
        if self.last is None or self.last[0] != stream or seq > self.last[1]:
            self.last = (stream, seq, digest)
        return lost


class SpoolStats:
    """Counts for tests, logs and the OTel metrics."""

    def __init__(self) -> None:
        self.written = 0
        self.dropped = 0  # fail_open: dropped by a full spool or disk (declared by gap markers)
        self.refused = 0  # fail_closed: refused to the caller with DeliveryError
        self.disk_full = 0  # times a segment could not be allocated
        self.corrupt_lines = 0  # damaged lines found in segments and set aside
        self.damaged = 0  # damaged or missing segments, cursors and manifests found
        self.delivered: dict[str, int] = {}
        self.rejected: dict[str, int] = {}  # refused for good by the destination, named to on_reject
        self.retries: dict[str, int] = {}
        self.failed_batches: dict[str, int] = {}


class SpoolProcessor(LogRecordProcessor):
    """Appends each record to a disk spool in on_emit and ships it to every exporter from there."""

    # (declared here for mypy: the on_reject / on_lost setters below, which assign them, come before _start)
    _held_rejects: list[tuple[str, list[Integrity]]]
    _held_lost: list[tuple[str, str, int, int, str, str]]
    _lockfh: IO[Any] | None  # the slot's lock, None once released

    def __init__(
        self,
        directory: str | os.PathLike[str],
        exporters: Mapping[str, LogRecordExporter],
        *,
        fsync_interval: float = 0.01,
        max_bytes: int = 1 << 30,
        segment_bytes: int | None = None,
        mode: str = "fail_closed",
        block_timeout: float = 5.0,
        max_batch: int = 512,
        batch_wait: float = 0.05,
        retry_initial: float = 1.0,
        retry_max: float = 30.0,
        on_drop: Callable[[str, int, str, str], None] | None = None,
        on_reject: Callable[[str, list[Integrity]], None] | None = None,
        on_lost: Callable[[str, str, int, int, str, str], None] | None = None,
        memory_records: int = 16384,
        meter_provider: Any = None,
        shutdown_timeout: float = 5.0,
    ) -> None:
        if not exporters:
            raise ValueError("exporters: at least one, or the spool would only grow")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        for name in exporters:
            if not name or not all(c.isalnum() or c in "._-/" for c in name) or "__" in name:
                raise ValueError(f"exporter name {name!r}: use letters, digits, '.', '_', '-' or '/' (no '__')")
        if not fsync_interval >= 0:
            raise ValueError("fsync_interval must be zero (fsync every record) or more seconds")
        if max_bytes < 1 << 16:
            raise ValueError("max_bytes must be at least 64 KiB")
        if segment_bytes is None:
            segment_bytes = default_segment_bytes(max_bytes)
        if segment_bytes < 1 << 12:
            raise ValueError("segment_bytes must be at least 4 KiB")
        if segment_bytes * 2 > max_bytes:
            raise ValueError(f"segment_bytes ({segment_bytes}) must be at most half of max_bytes ({max_bytes}): "
                             "the spool needs room for two segments to free one")
        if not shutdown_timeout > 0:
            raise ValueError(f"shutdown_timeout must be a positive number of seconds, got {shutdown_timeout!r}")
        self.base = Path(directory)
        self.exporters = dict(exporters)
        self.mode = mode
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.block_timeout = block_timeout
        self.fsync_interval = fsync_interval
        self.max_batch = max_batch
        self.batch_wait = batch_wait
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.on_drop = on_drop
        self._on_reject = on_reject
        self._on_lost = on_lost
        self.memory_records = memory_records
        self.shutdown_timeout = shutdown_timeout
        # room kept in the current segment for checkpoints and gap markers when no next segment exists
        self._reserve = min(256 << 10, segment_bytes // 4)
        self._start()
        self._register_metrics(meter_provider)
        after_fork_in_child(self)

    # -- the stream that declares what did not arrive ------------------------------------------------
    # The signing processor is made after its downstream spool, whose readers may meet damage or a
    # rejection at once: what is found before the callbacks are set is held and handed over then.

    @property
    def on_reject(self) -> Callable[[str, list[Integrity]], None] | None:
        return self._on_reject

    @on_reject.setter
    def on_reject(self, fn: Callable[[str, list[Integrity]], None] | None) -> None:
        self._on_reject = fn
        with self._cursor_lock:
            held, self._held_rejects = self._held_rejects, []
        for name, items in held:
            self._tell_rejected(name, items)

    @property
    def on_lost(self) -> Callable[[str, str, int, int, str, str], None] | None:
        return self._on_lost

    @on_lost.setter
    def on_lost(self, fn: Callable[[str, str, int, int, str, str], None] | None) -> None:
        self._on_lost = fn
        with self._cursor_lock:
            held, self._held_lost = self._held_lost, []
        for args in held:
            self._tell_lost(*args)

    def _tell_rejected(self, name: str, items: list[Integrity]) -> None:
        fn = self._on_reject
        if fn is None:
            with self._cursor_lock:
                self._held_rejects.append((name, items))
            return
        try:
            fn(name, items)
        except Exception:
            _log.exception("on_reject failed for %d record(s) of %s", len(items), name)

    def _tell_lost(self, name: str, stream: str, first: int, last: int, prev: str, digest: str) -> None:
        fn = self._on_lost
        if fn is None:
            with self._cursor_lock:
                self._held_lost.append((name, stream, first, last, prev, digest))
            return
        try:
            fn(name, stream, first, last, prev, digest)
        except Exception:
            _log.exception("on_lost failed for seq %d-%d of stream %s", first, last, stream)

    # -- start, replay ------------------------------------------------------------------------------

    def _start(self, adopt: tuple[Path, IO[Any]] | None = None) -> None:
        """Claim a slot, check and replay what is there, start the threads (also in a forked child).

        With `adopt` (a slot folder and its lock, held): only ship that abandoned slot's backlog."""
        self.stats = SpoolStats()
        self._drains: list[SpoolProcessor] = []
        self._drain_of: SpoolProcessor | None = None
        self._wlock = threading.Lock()
        self._space = threading.Condition(self._wlock)
        self._cursor_lock = threading.Lock()
        self._held_rejects: list[tuple[str, list[Integrity]]] = []  # found before on_reject was set
        self._held_lost: list[tuple[str, str, int, int, str, str]] = []  # found before on_lost was set
        self._events = {name: threading.Event() for name in self.exporters}
        self._event_list = list(self._events.values())
        self._stop = threading.Event()
        self._closing = False
        self._closed = False
        self._resources: dict[int, tuple[Resource, int, bytes]] = {}
        self._defs: dict[tuple[int, int], tuple[Any, Any, int, bytes, int, bytes]] = {}
        self._scopes: dict[int, tuple[Any, int, bytes]] = {}
        self._quarantined: set[tuple[int, int]] = set()
        self._truncated: set[int] = set()  # segments of an earlier run found cut short
        self.dir, self._lockfh = adopt if adopt is not None else claim_slot(self.base, "spool directory")[:2]
        self._segdir = self.dir / "segments"
        self._curdir = self.dir / "cursors"
        self._qdir = self.dir / "quarantine"
        try:
            make_dirs(self._segdir)  # 0700 when made here; the slot folder itself keeps its mode
            make_dirs(self._curdir)
        except OSError as exc:
            self._lockfh.close()
            raise ConfigError(f"spool directory {self.dir}: cannot create: {exc.strerror}") from exc
        existing = self._segments()
        made = self._read_manifest(existing)
        self._check_sequence(existing, made)
        self._next = max(made, existing[-1] if existing else -1) + 1
        newest = (made if made >= 0 else (existing[-1] if existing else 0)) - 1
        self._sizes: dict[int, int] = {}
        self._counts: dict[int, int] = {}  # records in each segment (for the E line of this run's)
        for n in existing:
            self._sizes[n] = self._recover_segment(n, n >= newest)
        self._total = sum(self._sizes.values())
        self._orphans: dict[str, _Cursor] = {}
        self._cursors = {name: self._load_cursor(name, existing) for name in self.exporters}
        for c in self._cursors.values():
            if not c.path.exists():  # so that an exporter removed before it delivered anything is still known
                c.save()
        self._load_orphans(existing)
        self._retired: list[tuple[mmap.mmap, Path, int]] = []
        # what was written in this run, newest last, so readers need not decode it from disk:
        # (segment, start, end, record); _mem_base is the absolute index of _mem[0]
        self._mem: list[tuple[int, int, int, Any]] = []
        self._mem_base = 0
        self._mem_head = 0
        self._mem_pos: dict[str, int] = {}
        self._spare: tuple[int, mmap.mmap, int] | None = None
        self._alloc_failed_at = 0.0
        self._mm: mmap.mmap | None = None
        self._cap = 0
        self._seg = self._next
        self._sizes[self._seg] = 0
        self._counts[self._seg] = 0
        self._seg_defs: set[bytes] = set()
        self._made = max(made, self._seg - 1)
        got = self._allocate(self._seg) if adopt is None else None
        if got is not None:
            self._mm, self._cap = got
            self._sizes[self._seg] = len(_header(self._seg))
            self._total += self._sizes[self._seg]
            self._prepare_spare()
        self._dirty = False
        self._notices = self._read_drops()
        if adopt is None:
            self._export_locks = {name: threading.Lock() for name in self.exporters}
            self._threads = [background_thread(self._sync_loop, name="otel-audit-spool-fsync")]
        else:
            self._threads = [background_thread(self._drain_watch, name="otel-audit-spool-drain")]
        for name in self.exporters:
            self._threads.append(background_thread(self._ship_loop, args=(name,), name=f"otel-audit-spool-{name}"))
        for t in self._threads:
            t.start()
        if adopt is None:
            self._adopt_abandoned()

    # -- slots left by processes that are gone -------------------------------------------------------

    def _adopt_abandoned(self) -> None:
        """Ship the backlog of every slot of this folder whose process is gone (a worker that died or is no
        longer started), with this process's exporters, so that nothing waits for a worker that never returns."""
        for d in _slots(self.base):
            if d == self.dir or not any((d / "segments").glob(f"*{_SEG}")):
                continue
            try:
                fh = open_lock(d / "lock")  # held until the drain is done
            except OSError:
                continue
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                fh.close()  # a live process owns it
                continue
            drain = SpoolProcessor.__new__(SpoolProcessor)
            drain.__dict__.update({k: v for k, v in self.__dict__.items() if k in _SETTINGS})
            drain._on_reject = self._tell_rejected
            drain._on_lost = self._tell_lost
            try:
                drain._start(adopt=(d, fh))
            except (ConfigError, OSError) as exc:
                _log.error("spool slot %s was left by a process that is gone but cannot be read: %s", d, exc)
                fh.close()
                continue
            drain._drain_of = self
            drain._export_locks = self._export_locks
            self._notices.extend(drain.take_notices())
            self._drains.append(drain)
            _log.warning("spool slot %s was left with a backlog by a process that is gone; this process (pid %d) "
                         "delivers it", d, os.getpid())

    def _drain_watch(self) -> None:
        """An adopted slot: once every exporter has everything in it, let it go."""
        while not self._stop.wait(0.2):
            if self._caught_up():
                _log.info("spool slot %s is delivered; released", self.dir)
                self._finish_drain()
                return

    def _finish_drain(self) -> None:
        self._stop.set()
        for ev in self._event_list:
            ev.set()
        with self._cursor_lock:
            self._closing = self._closed = True
            for c in self._cursors.values():
                c.save()
        self._collect()
        if self._lockfh is not None:
            fcntl.flock(self._lockfh, fcntl.LOCK_UN)
            self._lockfh.close()
            self._lockfh = None

    def _after_fork_in_child(self) -> None:
        """A forked child: leave the parent's spool to the parent (never unlock its flock, never touch
        its map) and open a spool of our own in a free slot of the same folder."""
        if self._closed or self._closing:
            return
        if self._lockfh is not None:
            self._lockfh.close()  # closes our copy only: the parent's flock stays (never LOCK_UN here)
        for d in self._drains:
            if d._lockfh is not None:
                d._lockfh.close()
        self._mm = None  # the child's copy of the mapping goes with the process
        self._retired = []
        self._spare = None
        self._start()

    def _segments(self) -> list[int]:
        out = []
        for p in self._segdir.iterdir():
            if p.name.endswith(_SEG) and p.name[: -len(_SEG)].isdigit():
                if p.is_symlink() or not p.is_file():
                    self._damage(f"spool segment {p} is not a regular file; it is set aside")
                    self._quarantine_file(p)
                    continue
                out.append(int(p.name[: -len(_SEG)]))
        return sorted(out)

    def _read_manifest(self, existing: list[int]) -> int:
        path = self.dir / MANIFEST
        if not path.exists():
            if existing:
                self._damage(f"spool manifest {path} is missing; segments on disk are taken as they are")
            return -1
        try:
            return int(_read_json(path)["made"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self._damage(f"spool manifest {path} is damaged ({exc}); segments on disk are taken as they are")
            self._quarantine_file(path)
            return -1

    def _write_manifest(self) -> None:
        try:
            _write_json(self.dir / MANIFEST, {"made": self._made})
        except OSError as exc:
            _log.warning("cannot write spool manifest %s: %s", self.dir / MANIFEST, exc.strerror)

    def _check_sequence(self, existing: list[int], made: int) -> None:
        """Segments are numbered without holes from the oldest kept one to the newest made one."""
        if not existing:
            if made >= 0:  # segments were made, yet none is left: a cursor still inside them lost records
                self._check_cursors_against(made)
            return
        have = set(existing)
        holes = [n for n in range(existing[0], max(existing[-1], made) + 1) if n not in have]
        if holes:
            self._damage(f"spool {self.dir}: segment(s) {_ranges(holes)} are missing (deleted or lost); "
                         f"records in them that an exporter had not delivered are lost there")

    def _check_cursors_against(self, made: int) -> None:
        for p in self._curdir.glob("*.json"):
            try:
                doc = _read_json(p)
                seg, off = int(doc["segment"]), int(doc["offset"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if seg <= made and (seg, off) != (made, 0):
                self._damage(f"spool {self.dir}: every segment is missing, but cursor {p.name} stands in "
                             f"segment {seg}: records it had not delivered are lost")

    def _recover_segment(self, n: int, may_be_unsealed: bool) -> int:
        """Check a segment of an earlier run: cut a torn tail, set damaged lines aside, seal it.

        Returns its size on disk. A segment that is not among the newest two (the earlier run's
        current and next one) and lacks its end line was truncated: that is reported."""
        path = self._segdir / _seg_name(n)
        try:
            with open(path, "r+b") as fh:
                size = os.fstat(fh.fileno()).st_size
                end = self._data_end(fh, size)
                fh.seek(0)
                data = fh.read(end)
                keep = data.rfind(b"\n") + 1
                sealed = False
                count = 0
                if keep:
                    last_start = data.rfind(b"\n", 0, keep - 1) + 1
                    payload = unframe(data[last_start:keep])
                    if payload is not None and payload.startswith(b'["E"'):
                        sealed = True
                        count = int(orjson.loads(payload)[1])
                if keep < len(data):
                    self._quarantine_bytes(n, keep, data[keep:], "a partial last line (a crash mid-write)")
                if keep != size:
                    fh.truncate(keep)
                actual = sum(1 for ln in data[:keep].splitlines() if ln[8:12] == b'["L"')
                first = unframe(data[: data.find(b"\n") + 1]) if keep else None
                if first is not None and first.startswith(b'["H"') and orjson.loads(first)[1] != n:
                    self._truncated.add(n)
                    self._damage(f"spool segment {path} holds the records of segment {orjson.loads(first)[1]} "
                                 "(copied or renamed over it): its own records are lost; these are delivered again")
                elif keep and (first is None or not first.startswith(b'["H"')):
                    self._truncated.add(n)
                    self._damage(f"spool segment {path} does not begin with its header line: it was damaged")
                if sealed and actual != count:
                    self._truncated.add(n)
                    self._damage(f"spool segment {path} holds {actual} record(s) but was sealed with {count}: "
                                 f"{'lines were removed' if actual < count else 'lines were added'}")
                if not sealed:
                    count = actual
                    if not may_be_unsealed:
                        self._truncated.add(n)
                        self._damage(f"spool segment {path} has no end line: it was truncated or damaged; "
                                     f"records after byte {keep} are lost there")
                    fh.seek(keep)
                    fh.write(frame(_dumps(["E", count])))
                    keep = fh.tell()
                    fh.flush()
                    os.fsync(fh.fileno())
                self._counts[n] = count
                return keep
        except OSError as exc:
            self._damage(f"spool segment {path} cannot be read ({exc.strerror}); it is skipped")
            return 0

    @staticmethod
    def _data_end(fh: Any, size: int) -> int:
        """Where the data of a preallocated segment ends (the rest is zeros never written)."""
        pos = size
        while pos > 0:
            start = max(0, pos - (1 << 20))
            fh.seek(start)
            chunk = fh.read(pos - start).rstrip(b"\x00")
            if chunk:
                return start + len(chunk)
            pos = start
        return 0

    def _load_cursor(self, name: str, existing: list[int]) -> _Cursor:
        path = self._curdir / _cursor_file(name)
        first = existing[0] if existing else self._next
        if not path.exists():
            return _Cursor(name, path, first, 0)
        try:
            doc = _read_json(path)
            seg, off = int(doc["segment"]), int(doc["offset"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self._damage(f"spool cursor {path} is damaged ({exc}); replaying the whole spool to {name} "
                         "(duplicates, not loss)")
            self._quarantine_file(path)
            return _Cursor(name, path, first, 0)
        cur = _Cursor(name, path, seg, off)
        if seg < 0 or off < 0:
            self._damage(f"spool cursor of {name} is impossible (segment {seg}, offset {off}); replaying the whole "
                         f"spool to {name} (duplicates, not loss)")
            cur.segment, cur.offset = first, 0
        elif existing and seg < first:
            self._damage(f"spool cursor of {name} stands in segment {seg}, but the spool starts at {first}: "
                         f"segments {seg}-{first - 1}, not delivered to {name}, are missing")
            cur.segment, cur.offset = first, 0
        elif seg > self._next or (seg == self._next and off):
            self._damage(f"spool cursor of {name} points past the end of the spool (segment {seg}); "
                         f"replaying the whole spool to {name} (duplicates, not loss)")
            cur.segment, cur.offset = first, 0
        elif seg in self._sizes and off > self._sizes[seg]:
            self._damage(f"spool cursor of {name} points past the end of segment {seg}; {name} replays that "
                         "segment (duplicates, not loss)")
            cur.offset = 0
        elif seg in self._sizes and not self._at_line_start(seg, off):
            self._damage(f"spool cursor of {name} points into the middle of a line of segment {seg}; {name} resumes "
                         "at the start of that line (duplicates, not loss)")
            cur.offset = self._line_before(seg, off)
        return cur

    def _at_line_start(self, seg: int, off: int) -> bool:
        if off == 0:
            return True
        if off > self._sizes.get(seg, 0):
            return False
        with open(self._segdir / _seg_name(seg), "rb") as fh:
            fh.seek(off - 1)
            return fh.read(1) == b"\n"

    def _line_before(self, seg: int, off: int) -> int:
        off = min(off, self._sizes.get(seg, 0))
        with open(self._segdir / _seg_name(seg), "rb") as fh:
            start = max(0, off - (1 << 20))
            fh.seek(start)
            data = fh.read(off - start)
        nl = data.rfind(b"\n")
        return start + nl + 1 if nl >= 0 else 0

    def _load_orphans(self, existing: list[int]) -> None:
        """Cursors of exporters no longer configured: their backlog is kept and named."""
        for p in sorted(self._curdir.glob("*.json")):
            name = _cursor_name(p.name)
            if name in self.exporters:
                continue
            cur = self._load_cursor(name, existing)
            self._orphans[name] = cur
            behind = self._behind(cur, dict(self._sizes))
            _log.warning(
                "spool %s: exporter %r is no longer configured; its backlog of %d byte(s) is kept. Configure it "
                "again to deliver it, or drop it with: otel-audit spool drop %s --exporter %s",
                self.dir, name, behind, self.dir, name)

    def _read_drops(self) -> list[dict[str, Any]]:
        """Drops an operator made since the last start, for the signing processor to record as signed events."""
        path = self.dir / DROPS
        try:
            return _unsigned_drops(path)
        except ValueError as exc:
            self._damage(f"spool drop log {path}: {exc}")
            return []

    def take_notices(self) -> list[dict[str, Any]]:
        """Backlogs dropped by an operator since the last start (each once): the pipeline signs them."""
        out, self._notices = self._notices, []
        if out:
            path = self.dir / DROPS
            try:
                with os.fdopen(open_append(path), "ab") as fh:
                    for d in out:
                        fh.write(frame(_dumps({**d, "reported": True})))
            except OSError as exc:
                _log.warning("cannot update %s: %s", path, exc.strerror)
        return out

    def _damage(self, message: str) -> None:
        self.stats.damaged += 1
        _log.error("%s", message)

    # -- quarantine -------------------------------------------------------------------------------

    def _quarantine_bytes(self, seg: int, offset: int, data: bytes, why: str) -> None:
        try:
            make_dirs(self._qdir)
            write_private(self._qdir / f"{seg:016d}-{offset}.bad", data)
            where = f"quarantined in {self._qdir}"
        except OSError as exc:
            where = f"could not be quarantined ({exc.strerror})"
        _log.error("spool segment %s: %d byte(s) at offset %d set aside: %s; %s",
                   self._segdir / _seg_name(seg), len(data), offset, why, where)

    def _quarantine_file(self, path: Path) -> None:
        try:
            make_dirs(self._qdir)
            os.replace(path, self._qdir / f"{path.name}.{time.time_ns()}.bad")
        except OSError:
            pass

    # -- segments ------------------------------------------------------------------------------------

    def _allocate(self, n: int) -> tuple[mmap.mmap, int] | None:
        """A new segment with its blocks allocated, mapped; None if the disk is full."""
        path = self._segdir / _seg_name(n)
        cap = self.segment_bytes
        try:
            fd = open_new(path, os.O_RDWR | os.O_TRUNC)
        except OSError as exc:
            self._alloc_failed(path, exc)
            return None
        try:
            os.posix_fallocate(fd, 0, cap)
            mm = mmap.mmap(fd, cap)
            head = _header(n)
            mm[0 : len(head)] = head
            if n > self._made:
                self._made = n
                self._write_manifest()
            return mm, cap
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            self._alloc_failed(path, exc)
            return None
        finally:
            os.close(fd)

    def _alloc_failed(self, path: Path, exc: OSError) -> None:
        self._alloc_failed_at = time.monotonic()
        self.stats.disk_full += 1
        if self.stats.disk_full == 1 or self.stats.disk_full % 100 == 0:
            _log.error("audit spool %s: cannot allocate segment %s (%s); %s until space returns "
                       "(%d failed allocation(s) so far)", self.dir, path.name, exc.strerror or exc,
                       "emit raises DeliveryError (fail_closed)" if self.mode == "fail_closed"
                       else "records are dropped and declared in signed gap markers (fail_open)",
                       self.stats.disk_full)

    def _prepare_spare(self) -> None:
        """Allocate the next segment ahead of need (called with the write lock held)."""
        if self._spare is not None or time.monotonic() - self._alloc_failed_at < _ALLOC_RETRY:
            return
        n = self._seg + 1
        got = self._allocate(n)
        if got is not None:
            self._spare = (n, got[0], got[1])

    def _ensure_current(self) -> bool:
        """A mapped current segment exists (it may not after a full disk at start)."""
        if self._mm is not None:
            return True
        if time.monotonic() - self._alloc_failed_at < _ALLOC_RETRY:
            return False
        got = self._allocate(self._seg)
        if got is None:
            return False
        self._mm, self._cap = got
        self._sizes[self._seg] = len(_header(self._seg))
        self._total += self._sizes[self._seg]
        _log.warning("audit spool %s: space is back; writing again", self.dir)
        return True

    def _room(self, need: int, marker: bool) -> bool:
        """Can `need` bytes be written now (called with the write lock held)?"""
        if not self._ensure_current():
            return False
        left = self._cap - self._sizes[self._seg] - 64  # the end line
        if need <= left - (0 if marker or self._spare is not None else self._reserve):
            return True
        if self._spare is None:
            self._prepare_spare()
        return self._spare is not None and need <= self._spare[2] - 64

    def _rotate(self) -> None:
        """Seal the current segment and continue in the spare one (called with the write lock held)."""
        assert self._spare is not None and self._mm is not None
        pos = self._sizes[self._seg]
        end = frame(_dumps(["E", self._counts[self._seg]]))
        self._mm[pos : pos + len(end)] = end
        self._sizes[self._seg] = pos + len(end)
        self._total += len(end)
        self._retired.append((self._mm, self._segdir / _seg_name(self._seg), pos + len(end)))
        self._seg, self._mm, self._cap = self._spare
        self._spare = None
        self._sizes[self._seg] = len(_header(self._seg))
        self._total += self._sizes[self._seg]
        self._counts[self._seg] = 0
        self._seg_defs = set()
        self._prepare_spare()
        if self.fsync_interval == 0:
            self._flush_retired()

    @property
    def bytes(self) -> int:
        """Bytes of data the spool holds on disk now."""
        return self._total

    # -- encoding ---------------------------------------------------------------------------------

    def _def_line(
        self, kind: str, table: dict[int, Any], obj: Any, encode: Callable[[Any], list[Any]]
    ) -> tuple[int, builtins.bytes]:
        got = table.get(id(obj))
        if got is None or got[0] is not obj:
            rid = len(table)
            got = (obj, rid, frame(_dumps([kind, rid, *encode(obj)])))
            table[id(obj)] = got
        return got[1], got[2]

    @staticmethod
    def _encode_resource(res: Resource) -> list[Any]:
        return [encode_attributes(dict(res.attributes)), res.schema_url or ""]

    @staticmethod
    def _encode_scope(scope: Any) -> list[Any]:
        if scope is None:
            return ["", ""]
        return [scope.name or "", scope.version or ""]

    @staticmethod
    def _encode(lr: Any, rid: int, sid: int) -> builtins.bytes:
        d = attributes_view(lr.attributes)
        body = lr.body
        sev = lr.severity_number
        if _PLAIN.issuperset(map(type, d.values())):
            a: Any = d
            af = 0
        else:
            a = encode_attributes(d)
            af = 1
        if body is None or type(body) is str:
            b: Any = body
            bf = 0
        else:
            b = encode_anyvalue(body)
            bf = 1
        payload = _dumps([
            "L", rid, sid, lr.timestamp or 0, lr.observed_timestamp or 0, severity_int(sev) if sev is not None else 0,
            lr.severity_text or "", lr.event_name or "", bf, b, af, a, lr.trace_id or 0, lr.span_id or 0,
            int(lr.trace_flags or 0),
        ])
        return b"%08x" % _crc(payload) + payload + b"\n"

    # -- the hot path -----------------------------------------------------------------------------

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        lr = log_record.log_record
        res = log_record.resource
        scope = log_record.instrumentation_scope
        defs = self._defs.get((id(res), id(scope)))
        if defs is None or defs[0] is not res or defs[1] is not scope:
            rid, rline = self._def_line("R", self._resources, res or Resource.get_empty(), self._encode_resource)
            sid, sline = self._def_line("S", self._scopes, scope, self._encode_scope)
            defs = self._defs[(id(res), id(scope))] = (res, scope, rid, rline, sid, sline)
        _, _, rid, rline, sid, sline = defs
        try:
            line = self._encode(lr, rid, sid)
        except (TypeError, ValueError) as exc:
            self.stats.refused += 1
            _log.error("audit record %r cannot be spooled (%s); it is refused", lr.event_name, exc)
            raise DeliveryError(f"audit record {lr.event_name!r} cannot be spooled: {exc}") from exc
        # checkpoints and gap markers are small and carry the proof: a full spool still takes them
        marker = lr.event_name in _INTEGRITY_EVENTS
        with self._wlock:
            if self._closing:
                raise DeliveryError("the audit spool is shut down; the record was not accepted")
            seg = self._seg
            pos = self._sizes[seg]
            need = len(line) + len(rline) + len(sline)
            # the fast path: room in the current segment (keeping the reserve when no next one is ready)
            if (self._mm is None or pos + need > self._cap - (64 if marker or self._spare else 64 + self._reserve)
                    or (not marker and self._total + need > self.max_bytes)):
                if not self._slow_path(need, lr, marker):
                    return
                seg = self._seg
                pos = self._sizes[seg]
            if rline in self._seg_defs and sline in self._seg_defs:
                data = line
            else:
                head = b""
                if rline not in self._seg_defs:
                    head += rline
                    self._seg_defs.add(rline)
                if sline not in self._seg_defs:
                    head += sline
                    self._seg_defs.add(sline)
                data = head + line
            end = pos + len(data)
            self._mm[pos:end] = data  # type: ignore[index]  # mapped while the spool takes records
            self._sizes[seg] = end
            self._counts[seg] += 1
            self._total += len(data)
            self.stats.written += 1
            if self.fsync_interval == 0:
                self._mm.flush()  # type: ignore[union-attr]  # (as above)
            else:
                self._dirty = True
            mem = self._mem
            mem.append((seg, pos, end, log_record))
            if len(mem) - self._mem_head > self.memory_records:
                e = mem[self._mem_head]
                mem[self._mem_head] = (e[0], e[1], e[2], None)
                self._mem_head += 1  # readers that far behind read the disk instead
            if self._mem_head > 4096 and self._mem_head * 2 > len(mem):
                del mem[: self._mem_head]
                self._mem_base += self._mem_head
                self._mem_head = 0
        for ev in self._event_list:
            if not ev.is_set():
                ev.set()

    def _slow_path(self, need: int, lr: Any, marker: bool) -> bool:
        """The record does not fit as things are: rotate, wait, refuse or drop. True: go on and write."""
        if need > self.segment_bytes - 128:
            self.stats.refused += 1
            _log.error("audit record %r is %d bytes, more than a spool segment holds (%d): refused",
                       lr.event_name, need, self.segment_bytes)
            raise DeliveryError(f"audit record {lr.event_name!r} is {need} bytes, more than a spool segment "
                                f"holds ({self.segment_bytes}); raise segment_size_mib")
        if ((not marker and self._total + need > self.max_bytes) or not self._room(need, marker)) \
                and not self._make_room(need, lr, marker):
            return False
        if self._sizes[self._seg] + need > self._cap - 64 - (0 if marker or self._spare else self._reserve):
            self._rotate()
        return True

    def _make_room(self, need: int, lr: Any, marker: bool) -> bool:
        """Called with the write lock held and the spool or disk full. True: go on and write."""
        if self.mode == "fail_closed" or marker:
            deadline = time.monotonic() + (self.block_timeout if self.mode == "fail_closed" else 0)
            while (not marker and self._total + need > self.max_bytes) or not self._room(need, marker):
                left = deadline - time.monotonic()
                # a SIGTERM/SIGINT waits while this emit does: refuse now rather than hold the stop back
                if left <= 0 or self._closing or lifecycle_pending:
                    self.stats.refused += 1
                    full = "the disk is full" if self._total + need <= self.max_bytes or marker else \
                        f"it is full ({self.max_bytes} bytes) and the destinations are not taking records"
                    _log.error("audit spool %s: %s: record %r refused (%d refused so far)",
                               self.dir, full, lr.event_name, self.stats.refused)
                    raise DeliveryError(f"audit spool {self.dir}: {full}: the audit record was refused "
                                        f"(mode {self.mode})")
                self._space.wait(min(left, _ALLOC_RETRY))
            return True
        self.stats.dropped += 1
        if self.stats.dropped == 1 or self.stats.dropped % 1000 == 0:
            _log.error("audit spool %s is full and fail_open: %d record(s) dropped so far; a signed gap marker "
                       "names them", self.dir, self.stats.dropped)
        attrs = lr.attributes or {}
        if self.on_drop is not None and STREAM_ID in attrs:
            self.on_drop(str(attrs[STREAM_ID]), int(attrs[STREAM_SEQ]), str(attrs[PREV_DIGEST]), str(attrs[DIGEST]))
        return False

    def _flush_retired(self) -> None:
        while self._retired:
            self._close_segment(*self._retired.pop(0))

    @staticmethod
    def _close_segment(mm: mmap.mmap, path: Path, size: int) -> None:
        """Flush and unmap a finished segment and trim it to its data (it may be delivered and gone)."""
        try:
            mm.flush()
            mm.close()
            os.truncate(path, size)
        except FileNotFoundError:
            pass  # every exporter had it already and it was collected
        except (OSError, ValueError) as exc:
            _log.error("closing spool segment %s failed: %s", path, exc)

    def _sync_loop(self) -> None:
        """Group commit: msync what was written since the last pass, outside the write lock."""
        interval = self.fsync_interval or 0.5
        while not self._stop.wait(interval):
            self._sync()
            if self._spare is None or self._mm is None:
                with self._wlock:  # the disk was full: try again, and wake writers waiting for room
                    if self._mm is not None:
                        self._prepare_spare()
                    self._space.notify_all()

    def _sync(self) -> None:
        with self._wlock:
            retired, self._retired = self._retired, []
            dirty, self._dirty = self._dirty, False
            mm, upto = self._mm, self._sizes[self._seg]
        for old_mm, path, size in retired:
            self._close_segment(old_mm, path, size)
        if dirty and upto and mm is not None:
            try:
                mm.flush(0, min(upto + mmap.PAGESIZE - upto % mmap.PAGESIZE, len(mm)))
            except (OSError, ValueError) as exc:  # ValueError: closed by shutdown meanwhile
                _log.error("fsync of the audit spool failed: %s", exc)

    # -- shipping ---------------------------------------------------------------------------------

    def _ship_loop(self, name: str) -> None:
        exporter = self.exporters[name]
        cur = self._cursors[name]
        data_ready = self._events[name]
        resources: dict[int, Resource] = {}
        scopes: dict[int, InstrumentationScope] = {}
        reader = _Reader()
        backoff = self.retry_initial
        saved = time.monotonic()
        while True:
            batch, mem_next = self._read_mem(cur)
            nxt: int | None = None
            if batch:
                reader.last = None  # this run's records: nothing damaged lies between them
                reader.saw(batch[-1][0])
            else:
                if cur.offset and not resources:
                    self._scan_defs(cur, resources, scopes)
                batch, nxt = self._read(cur, resources, scopes, reader)
            if nxt is not None:  # a finished segment: move on
                if cur.segment in self._truncated:
                    reader.damaged = True
                with self._cursor_lock:
                    cur.segment, cur.offset = nxt, 0
                    if not self._closed:
                        cur.save()
                resources.clear()
                scopes.clear()
                saved = time.monotonic()
                self._collect()
                continue
            if not batch:
                if cur.dirty:
                    self._save(cur)
                    saved = time.monotonic()
                if self._stop.is_set():
                    return
                data_ready.clear()
                data_ready.wait(self.batch_wait)
                continue
            if self._export(exporter, name, batch):
                with self._cursor_lock:
                    cur.offset = batch[-1][1]
                    cur.dirty = True
                if mem_next is not None:
                    self._advance_mem(name, mem_next)
                now = time.monotonic()
                if now - saved > 0.1:  # a crash replays at most this much again: duplicates, not loss
                    self._save(cur)
                    saved = now
                backoff = self.retry_initial
                continue
            # keep the records; try again later (the exporter logged why)
            self.stats.retries[name] = self.stats.retries.get(name, 0) + 1
            if self._stop.wait(backoff * (0.5 + random.random())):  # shut down: the records stay spooled
                self._save(cur)
                return
            backoff = min(backoff * 2, self.retry_max)

    def _save(self, cur: _Cursor) -> None:
        with self._cursor_lock:
            if cur.dirty and not self._closed:
                cur.save()

    def _read_mem(self, cur: _Cursor) -> tuple[list[tuple[Any, int]], int | None]:
        """Records written in this run, straight from memory: (batch of (record, end offset), next index)."""
        with self._wlock:
            mem, head = self._mem, self._mem_head
            i = bisect.bisect_left(mem, (cur.segment, cur.offset), lo=head, key=_mem_key)
            if i >= len(mem):
                return [], None
            seg, start = mem[i][0], mem[i][1]
            if seg != cur.segment or start != cur.offset:
                return [], None
            stop = min(len(mem), i + self.max_batch)
            out = []
            while i < stop and mem[i][0] == seg:
                e = mem[i]
                out.append((e[3], e[2]))
                i += 1
            return out, i + self._mem_base

    def _advance_mem(self, name: str, absolute: int) -> None:
        with self._wlock:
            self._mem_pos[name] = absolute
            low = min(self._mem_pos.get(n, self._mem_base) for n in self.exporters) - self._mem_base
            if low > self._mem_head:
                # drop our references to delivered records (fill with a cheap placeholder)
                for j in range(self._mem_head, low):
                    e = self._mem[j]
                    self._mem[j] = (e[0], e[1], e[2], None)
                self._mem_head = low

    def _export(self, exporter: LogRecordExporter, name: str, batch: list[tuple[ReadableLogRecord, int]]) -> bool:
        records = [r for r, _ in batch]
        try:
            with self._export_locks[name]:  # an adopted slot's reader shares the exporter
                res = exporter.export(records)
        except Exception:
            _log.exception("exporter %s raised on a batch of %d audit record(s); kept in the spool", name, len(batch))
            self.stats.failed_batches[name] = self.stats.failed_batches.get(name, 0) + 1
            return False
        if res is not LogRecordExportResult.SUCCESS:
            self.stats.failed_batches[name] = self.stats.failed_batches.get(name, 0) + 1
            return False
        try:
            named = list(getattr(exporter, "last_rejected", ()) or ())
        except TypeError:
            named = []
        rejected = sorted({i for i in named if type(i) is int and 0 <= i < len(records)})
        if len(rejected) != len(named):
            _log.error("exporter %s named %d rejected record(s) that are not indices of its batch; ignored",
                       name, len(named) - len(rejected))
        self.stats.delivered[name] = self.stats.delivered.get(name, 0) + len(records) - len(rejected)
        if rejected:
            self.stats.rejected[name] = self.stats.rejected.get(name, 0) + len(rejected)
            items: list[Integrity] = []
            for i in rejected:
                a = records[i].log_record.attributes or {}
                if STREAM_ID in a:
                    items.append((str(a[STREAM_ID]), int(a[STREAM_SEQ]),  # type: ignore[arg-type]  # signing: an int
                                  str(a[PREV_DIGEST]), str(a[DIGEST])))
            _log.error("destination %s refused %d audit record(s) for good (logged with its reason above); "
                       "they are counted as rejected, not delivered, and named to the stream for a signed marker",
                       name, len(rejected))
            if items:
                self._tell_rejected(name, items)
        return True

    def _scan_defs(self, cur: _Cursor, resources: dict[int, Resource], scopes: dict[int, Any]) -> None:
        """Before resuming mid-segment, read the resource and scope definitions ahead of the cursor."""
        path = self._segdir / _seg_name(cur.segment)
        if not cur.offset or not path.exists():
            return
        with open(path, "rb") as fh:
            data = fh.read(cur.offset)
        for line in data.splitlines():
            if line[8:13] in (b'["R",', b'["S",'):
                payload = unframe(line)
                if payload is not None:
                    self._define(orjson.loads(payload), resources, scopes)

    @staticmethod
    def _define(item: list[Any], resources: dict[int, Resource], scopes: dict[int, Any]) -> None:
        if item[0] == "R":
            resources[item[1]] = Resource(decode_attributes(item[2]), item[3] or None)
        else:
            scopes[item[1]] = InstrumentationScope(item[2], item[3] or None)

    def _read(self, cur: _Cursor, resources: dict[int, Resource], scopes: dict[int, Any], reader: _Reader
              ) -> tuple[list[tuple[ReadableLogRecord, int]], int | None]:
        """Up to max_batch records from disk at the cursor: (batch of (record, end offset), next segment).

        The next segment is given once this one is read to its end line (or, damaged, to its end)."""
        seg = cur.segment
        with self._wlock:
            writing = self._seg
            known = self._sizes.get(seg)
            nxt_exists = (seg + 1) in self._sizes
        if known is None:  # not on disk (damaged at start): on to the next one that is
            if seg < writing:
                reader.damaged = True
            return [], (seg + 1 if nxt_exists or seg < writing else None)
        out: list[tuple[ReadableLogRecord, int]] = []
        if cur.offset >= known:
            if seg != writing and nxt_exists:
                # the segment is finished but its end line was not read: it must have been lost
                reader.damaged = True
                return [], seg + 1
            return [], None
        path = self._segdir / _seg_name(seg)
        try:
            with open(path, "rb") as fh:
                fh.seek(cur.offset)
                data = fh.read(min(known - cur.offset, _CHUNK))
        except FileNotFoundError:
            self._damage(f"spool segment {path} disappeared while {cur.name} was reading it; "
                         "records in it not yet delivered there are lost")
            with self._wlock:
                self._total -= self._sizes.pop(seg, 0)
            return [], seg + 1
        pos = 0
        base = cur.offset
        while len(out) < self.max_batch:
            nl = data.find(b"\n", pos)
            if nl < 0:
                if pos == 0 and len(data) == _CHUNK:  # a line longer than a chunk: read it whole
                    data = self._read_long_line(path, base)
                    if data.find(b"\n") < 0:
                        break
                    continue
                break
            line = data[pos : nl + 1]
            start = base + pos
            pos = nl + 1
            payload = unframe(line)
            if payload is None:
                reader.damaged = True
                self._corrupt(seg, start, line)
                if not out:
                    self._step_over(cur, base + pos)
                continue
            try:
                item = orjson.loads(payload)
                kind = item[0]
                if kind == "E":
                    if out:
                        pos = start - base  # deliver the batch first; the end line is read again
                        break
                    return [], seg + 1
                if kind != "L":
                    if kind in ("R", "S"):
                        self._define(item, resources, scopes)
                    if not out:
                        self._step_over(cur, base + pos)
                    continue
                rec = self._record(item, resources, scopes)
                lost = reader.saw(rec)
                if lost is not None:
                    self._declare_lost(cur.name, *lost)
                out.append((rec, base + pos))
            except (ValueError, TypeError, IndexError, KeyError) as exc:
                reader.damaged = True
                self._corrupt(seg, start, line, f"checksum matches but the line cannot be read: {exc}")
                if not out:
                    self._step_over(cur, base + pos)
        return out, None

    def _step_over(self, cur: _Cursor, to: int) -> None:
        """Move a cursor past lines that hold no record to deliver (definitions, headers, damage)."""
        with self._cursor_lock:
            cur.offset = to
            cur.dirty = True

    def _declare_lost(self, name: str, stream: str, first: int, last: int, prev: str, digest: str) -> None:
        _log.error("spool %s: damage destroyed record(s) %d-%d of stream %s before they reached %s; they are "
                   "named to the stream for a signed gap marker", self.dir, first, last, stream, name)
        self._tell_lost(name, stream, first, last, prev, digest)

    @staticmethod
    def _read_long_line(path: Path, offset: int) -> builtins.bytes:
        with open(path, "rb") as fh:
            fh.seek(offset)
            buf = b""
            while True:
                chunk = fh.read(_CHUNK)
                if not chunk:
                    return buf
                buf += chunk
                if b"\n" in chunk:
                    return buf

    def _corrupt(self, seg: int, offset: int, line: builtins.bytes, why: str = "checksum mismatch") -> None:
        with self._wlock:
            first = (seg, offset) not in self._quarantined
            self._quarantined.add((seg, offset))
        if first:
            self.stats.corrupt_lines += 1
            self._quarantine_bytes(seg, offset, line, f"a damaged line ({why}); the record in it is lost here")

    @staticmethod
    def _record(item: list[Any], resources: dict[int, Resource], scopes: dict[int, Any]) -> ReadableLogRecord:
        (_, rid, sid, ts, obs, sev, sevtext, event, bf, b, af, a, trace, span, flags) = item
        lr = LogRecord.__new__(LogRecord)  # not __init__: it would read the current context
        lr.timestamp = ts or None
        # (the API annotates both without None: its __init__ fills in now and the current context)
        lr.observed_timestamp = obs or None  # type: ignore[assignment]
        lr.context = None  # type: ignore[assignment]
        lr.trace_id = trace
        lr.span_id = span
        lr.trace_flags = flags
        lr.severity_text = sevtext or None
        lr.severity_number = SeverityNumber(sev) if sev else None
        lr.body = decode_anyvalue(b) if bf else b
        lr.attributes = decode_attributes(a) if af else a
        lr.event_name = event or None
        lr.exception = None
        return ReadableLogRecord(lr, resources.get(rid) or Resource.get_empty(), scopes.get(sid))

    def _collect(self) -> None:
        """Delete the segments every exporter — configured or removed — has passed."""
        with self._wlock:
            low = min(c.segment for c in (*self._cursors.values(), *self._orphans.values()))
            for n in sorted(self._sizes):
                if n >= low or n >= self._seg:
                    break
                try:
                    (self._segdir / _seg_name(n)).unlink()
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    _log.error("cannot delete delivered spool segment %s: %s", n, exc.strerror)
                    break
                self._total -= self._sizes.pop(n)
                self._counts.pop(n, None)
            self._space.notify_all()

    # -- lifecycle --------------------------------------------------------------------------------

    @staticmethod
    def _behind(c: _Cursor, sizes: Mapping[int, int]) -> int:
        return max(0, sum(s for n, s in sizes.items() if n >= c.segment) - c.offset)

    def pending(self, name: str | None = None) -> int:
        """Bytes not yet delivered to `name` (or to the slowest configured exporter)."""
        with self._wlock:
            sizes = dict(self._sizes)
        cursors = [self._cursors[name]] if name else list(self._cursors.values())
        return max(self._behind(c, sizes) for c in cursors)

    def _caught_up(self) -> bool:
        with self._wlock:
            sizes = dict(self._sizes)
            writing = self._seg
        return all(c.segment >= writing and c.offset >= sizes.get(writing, 0) for c in self._cursors.values())

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Wait until every exporter has everything written so far (or the timeout passes)."""
        deadline = time.monotonic() + timeout_millis / 1000
        self._sync()
        for ev in self._event_list:
            ev.set()
        while time.monotonic() < deadline:
            if self._caught_up() and all(d._closed or d._caught_up() for d in self._drains):
                return all(e.force_flush(max(0, int((deadline - time.monotonic()) * 1000)))
                           for e in self.exporters.values())
            time.sleep(0.01)
        return False

    def shutdown(self, timeout_millis: int | None = None) -> None:
        """Deliver what can be delivered within `timeout_millis` (default: shutdown_timeout), then stop;
        whatever is undelivered stays on disk for the next start."""
        if self._closing:
            return
        timeout = self.shutdown_timeout if timeout_millis is None else timeout_millis / 1000
        deadline = time.monotonic() + timeout
        self.force_flush(int(timeout * 1000 * 0.8))
        for d in self._drains:
            if not d._closed:
                d._finish_drain()
        with self._wlock:
            self._closing = True
            self._space.notify_all()
        self._stop.set()
        for ev in self._event_list:
            ev.set()
        for e in self.exporters.values():  # interrupts exporters waiting out a retry
            try:
                e.shutdown()
            except Exception:
                _log.exception("exporter shutdown failed")
        for t in self._threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        with self._cursor_lock:
            self._closed = True
            for c in self._cursors.values():
                c.save()
        left = self.pending()
        with self._wlock:
            if self._mm is not None:
                pos = self._sizes[self._seg]
                end = frame(_dumps(["E", self._counts[self._seg]]))
                if pos + len(end) <= self._cap:
                    self._mm[pos : pos + len(end)] = end
                    self._sizes[self._seg] = pos + len(end)
                self._retired.append((self._mm, self._segdir / _seg_name(self._seg), self._sizes[self._seg]))
                self._mm = None
            if self._spare is not None:
                n, mm, _ = self._spare
                h = len(_header(n))
                end = frame(_dumps(["E", 0]))
                mm[h : h + len(end)] = end
                self._retired.append((mm, self._segdir / _seg_name(n), h + len(end)))
                self._sizes[n] = h + len(end)
                self._spare = None
        self._sync()
        if left > 0:
            _log.warning("audit spool %s shut down with %d byte(s) not yet delivered; they are kept and "
                         "replayed at the next start", self.dir, left)
        if self._lockfh is not None:
            fcntl.flock(self._lockfh, fcntl.LOCK_UN)
            self._lockfh.close()
            self._lockfh = None

    # -- metrics ----------------------------------------------------------------------------------

    def _register_metrics(self, meter_provider: Any) -> None:
        from opentelemetry import metrics
        from opentelemetry.metrics import CallbackOptions, Observation

        meter = (meter_provider or metrics.get_meter_provider()).get_meter("otel_audit.spool")

        def depth(_: CallbackOptions) -> list[Observation]:
            return [Observation(self.pending(n), {"exporter": n}) for n in self.exporters]

        def counts(attr: str) -> Callable[[CallbackOptions], list[Observation]]:
            def cb(_: CallbackOptions) -> list[Observation]:
                d = getattr(self.stats, attr)
                return [Observation(d.get(n, 0), {"exporter": n}) for n in self.exporters]
            return cb

        def total(attr: str) -> Callable[[CallbackOptions], list[Observation]]:
            return lambda _: [Observation(getattr(self.stats, attr))]

        meter.create_observable_gauge("otel_audit.spool.depth", [depth], unit="By",
                                      description="bytes spooled but not yet delivered, per exporter")
        meter.create_observable_counter("otel_audit.spool.delivered", [counts("delivered")], unit="{record}")
        meter.create_observable_counter(
            "otel_audit.spool.rejected", [counts("rejected")], unit="{record}",
            description="records a destination refused for good (named in signed markers), per exporter")
        meter.create_observable_counter("otel_audit.spool.retries", [counts("retries")], unit="{batch}")
        meter.create_observable_counter(
            "otel_audit.spool.dropped", [total("dropped")], unit="{record}",
            description="records dropped by a full spool or disk in fail_open mode")
        meter.create_observable_counter(
            "otel_audit.spool.refused", [total("refused")], unit="{record}",
            description="records refused by a full spool or disk in fail_closed mode")
        meter.create_observable_counter(
            "otel_audit.spool.corrupt", [total("corrupt_lines")], unit="{line}",
            description="damaged spool lines found and quarantined")


def _ranges(ns: Sequence[int]) -> str:
    """1,2,3,7 -> '1-3,7'."""
    runs: list[list[int]] = []
    for n in sorted(ns):
        if runs and runs[-1][1] == n - 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


# -- operators: `otel-audit spool status|drop` ------------------------------------------------------


def _unsigned_drops(path: Path) -> list[dict[str, Any]]:
    """The drops in a drop log that no start has signed yet (each is logged again, marked reported, once signed)."""
    if not path.exists():
        return []
    try:
        lines = path.read_bytes().splitlines()
    except OSError:
        return []
    found: dict[tuple[Any, Any], dict[str, Any]] = {}
    damaged = 0
    for ln in lines:
        payload = unframe(ln)
        if payload is None:
            damaged += 1
            continue
        doc = orjson.loads(payload)
        key = (doc.get("time_ns"), doc.get("exporter"))
        if doc.get("reported"):
            found.pop(key, None)
            found[key] = {}
        elif key not in found:
            found[key] = doc
    if damaged:
        _log.error("spool drop log %s has %d damaged line(s)", path, damaged)
    return [d for d in found.values() if d]


def _slots(base: Path) -> list[Path]:
    return [d for d in slots(base) if (d / "segments").is_dir()]


def _held(d: Path) -> bool:
    try:
        fh = open_lock(d / "lock")
    except OSError:
        return False
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fh, fcntl.LOCK_UN)
        return False
    except OSError:
        return True
    finally:
        fh.close()


def _records_behind(segdir: Path, segment: int, offset: int) -> tuple[int, int]:
    """(records, bytes) from a cursor to the end of the spool, reading the segments."""
    records = size = 0
    for p in sorted(segdir.glob(f"*{_SEG}")):
        n = int(p.name[: -len(_SEG)]) if p.name[: -len(_SEG)].isdigit() else -1
        if n < segment:
            continue
        try:
            data = p.read_bytes().rstrip(b"\x00")
        except OSError:
            continue  # not a readable segment: the producer's next start sets it aside and says so
        if n == segment:
            data = data[offset:]
        for ln in data.splitlines():
            if ln[8:12] == b'["L"':
                records += 1
                size += len(ln) + 1
    return records, size


def status(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """What a spool folder holds, per slot and per cursor (configured or not), read without changing it."""
    base = Path(directory)
    if not base.is_dir():
        raise ConfigError(f"spool directory {base}: no such folder")
    slots = []
    for d in _slots(base):
        segdir = d / "segments"
        segs = sorted(p for p in segdir.glob(f"*{_SEG}"))
        cursors = []
        for p in sorted((d / "cursors").glob("*.json")):
            entry: dict[str, Any] = {"exporter": _cursor_name(p.name)}
            try:
                doc = _read_json(p)
                entry.update(segment=int(doc["segment"]), offset=int(doc["offset"]))
                entry["records_behind"], entry["bytes_behind"] = _records_behind(segdir, entry["segment"],
                                                                                  entry["offset"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                entry["damaged"] = str(exc)
            cursors.append(entry)
        q = d / "quarantine"
        drops = _unsigned_drops(d / DROPS)
        slots.append({
            "directory": str(d), "in_use": _held(d), "segments": len(segs),
            "bytes": sum(p.lstat().st_size for p in segs), "cursors": cursors,
            "quarantined": len(list(q.iterdir())) if q.is_dir() else 0, "drops_not_yet_signed": drops,
        })
    if not slots:
        raise ConfigError(f"spool directory {base}: not a spool (no segments/ folder)")
    return {"spool": str(base), "slots": slots}


def drop(directory: str | os.PathLike[str], exporter: str, *, reason: str, actor: str | None = None
         ) -> dict[str, Any]:
    """Give up an exporter's backlog: its cursor goes, the drop is logged in the spool's drops.jsonl, and the
    next start of the producer seals it into its signed stream. The producer must be stopped."""
    import getpass
    import socket

    d = Path(directory)
    if not (d / "segments").is_dir():
        raise ConfigError(f"spool directory {d}: not a spool (no segments/ folder)")
    if not reason or not reason.strip():
        raise ConfigError("a reason is required: it goes into the signed audit trail")
    path = d / "cursors" / _cursor_file(exporter)
    if not path.exists():
        names = sorted(_cursor_name(p.name) for p in (d / "cursors").glob("*.json"))
        raise ConfigError(f"spool {d}: no exporter {exporter!r} (it has: {', '.join(names) or 'none'})")
    try:
        fh = open_lock(d / "lock")
    except OSError as exc:
        raise ConfigError(f"spool directory {d}: cannot open its lock: {exc.strerror}") from exc
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ConfigError(f"spool directory {d} is in use by a running producer; stop it first") from None
        try:
            doc = _read_json(path)
            records, size = _records_behind(d / "segments", int(doc["segment"]), int(doc["offset"]))
        except (OSError, ValueError, KeyError, TypeError):
            records, size = _records_behind(d / "segments", 0, 0)
        try:
            who = actor or getpass.getuser()
        except (KeyError, OSError):
            who = f"uid {os.getuid()}"
        entry = {"time_ns": time.time_ns(), "exporter": exporter, "records": records, "bytes": size,
                 "actor": who, "host": socket.gethostname(), "reason": reason.strip()}
        with os.fdopen(open_append(d / DROPS), "ab") as out:
            out.write(frame(_dumps(entry)))
            out.flush()
            os.fsync(out.fileno())
        path.unlink()
        _log.warning("spool %s: the backlog of %s (%d record(s), %d bytes) was dropped by %s: %s",
                     d, exporter, records, size, who, entry["reason"])
        return entry
    finally:
        fh.close()


__all__ = ["MODES", "SpoolProcessor", "SpoolStats", "default_segment_bytes", "drop", "frame", "status", "unframe"]
