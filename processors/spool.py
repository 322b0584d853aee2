"""Durable delivery: every record reaches a spool on disk before `emit` returns, then each exporter
ships from its own cursor, with retries, and a record leaves the spool only when every exporter has it.

    SigningProcessor(keys, downstream=SpoolProcessor("spool/", {"splunk": hec, "archive": file}))

Layout of the spool folder (one process owns it: an flock guards it):

    segments/<id>.spool     append-only lines; a new segment every `segment_bytes`
    cursors/<exporter>.json where that exporter stands (segment id, byte offset)

A line is written with one write(2) before on_emit returns, so a `kill -9` of the producer loses
nothing it acknowledged; an fsync every `fsync_interval` (group commit) bounds what a machine
crash can lose. On restart the segments are replayed from each cursor (at-least-once: the
verifier accepts the duplicates this can make).

When the spool holds `max_bytes`, `mode` decides: "fail_closed" blocks emit up to
`block_timeout` seconds and then raises DeliveryError (like Vault, the caller learns its audit
record was refused); "fail_open" drops the record, counts and logs it, and tells the signing
processor, which seals a signed `audit.gap` record naming the dropped seqs.
"""

from __future__ import annotations

import bisect
import fcntl
import logging
import mmap
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import orjson
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.sdk._logs import LogRecordProcessor, ReadableLogRecord, ReadWriteLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from otel_audit.canonical import CHECKPOINT_EVENT, DIGEST, GAP_EVENT, PREV_DIGEST, STREAM_ID, STREAM_SEQ
from otel_audit.errors import ConfigError, DeliveryError
from otel_audit.otlpjson import decode_anyvalue, decode_attributes, encode_anyvalue, encode_attributes

_log = logging.getLogger(__name__)
_dumps = orjson.dumps
_PLAIN = frozenset({str, int, bool})
MODES = ("fail_closed", "fail_open")
_INTEGRITY_EVENTS = frozenset({CHECKPOINT_EVENT, GAP_EVENT})
_SEG = ".spool"


def _seg_name(n: int) -> str:
    return f"{n:016d}{_SEG}"


def _mem_key(e: tuple[int, int, int, Any]) -> tuple[int, int]:
    return e[0], e[1]


class _Cursor:
    __slots__ = ("name", "segment", "offset", "path", "dirty")

    def __init__(self, name: str, path: Path, segment: int, offset: int) -> None:
        self.name, self.path, self.segment, self.offset = name, path, segment, offset
        self.dirty = False

    def save(self) -> None:
        self.dirty = False
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(_dumps({"segment": self.segment, "offset": self.offset}))
        os.replace(tmp, self.path)


class SpoolStats:
    """Counts for tests, logs and the OTel metrics."""

    def __init__(self) -> None:
        self.written = 0
        self.dropped = 0
        self.refused = 0
        self.delivered: dict[str, int] = {}
        self.retries: dict[str, int] = {}
        self.failed_batches: dict[str, int] = {}


class SpoolProcessor(LogRecordProcessor):
    """Appends each record to a disk spool in on_emit and ships it to every exporter from there."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        exporters: Mapping[str, LogRecordExporter],
        *,
        fsync_interval: float = 0.01,
        max_bytes: int = 1 << 30,
        segment_bytes: int = 32 << 20,
        mode: str = "fail_closed",
        block_timeout: float = 5.0,
        max_batch: int = 512,
        batch_wait: float = 0.05,
        retry_initial: float = 1.0,
        retry_max: float = 30.0,
        on_drop: Callable[[str, int, str, str], None] | None = None,
        memory_records: int = 16384,
        meter_provider: Any = None,
    ) -> None:
        if not exporters:
            raise ValueError("exporters: at least one, or the spool would only grow")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        for name in exporters:
            if not name or not all(c.isalnum() or c in "._-/" for c in name):
                raise ValueError(f"exporter name {name!r}: use letters, digits, '.', '_', '-' or '/'")
        if not fsync_interval >= 0:
            raise ValueError("fsync_interval must be zero (fsync every record) or more seconds")
        if max_bytes < 1 << 16 or segment_bytes < 1 << 12:
            raise ValueError("max_bytes must be at least 64 KiB and segment_bytes at least 4 KiB")
        self.dir = Path(directory)
        self._segdir = self.dir / "segments"
        self._curdir = self.dir / "cursors"
        try:
            self._segdir.mkdir(parents=True, exist_ok=True)
            self._curdir.mkdir(parents=True, exist_ok=True)
            os.chmod(self.dir, 0o700)
            self._lockfh = open(self.dir / "lock", "a+b")  # noqa: SIM115 - held for the lifetime
        except OSError as exc:
            raise ConfigError(f"spool directory {self.dir}: cannot create or open: {exc.strerror}") from exc
        try:
            fcntl.flock(self._lockfh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self._lockfh.close()
            raise ConfigError(f"spool directory {self.dir}: another process holds it; give each process its own") from exc
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
        self.stats = SpoolStats()
        self._wlock = threading.Lock()
        self._space = threading.Condition(self._wlock)
        self._events = {name: threading.Event() for name in exporters}
        self._event_list = list(self._events.values())
        self._stop = threading.Event()
        self._closing = False
        self._resources: dict[int, tuple[Resource, int, bytes]] = {}
        self._defs: dict[tuple[int, int], tuple[Any, Any, int, bytes, int, bytes]] = {}
        self._scopes: dict[int, tuple[Any, int, bytes]] = {}
        # what exists already: replay it
        existing = self._segments()
        for n in existing:
            self._cut_torn_tail(self._segdir / _seg_name(n))
        self._sizes = {n: (self._segdir / _seg_name(n)).stat().st_size for n in existing}
        self._total = sum(self._sizes.values())
        self._cursors = {name: self._load_cursor(name, existing) for name in self.exporters}
        self._retired: list[tuple[mmap.mmap, Path, int]] = []
        # what was written in this run, newest last, so readers need not decode it from disk:
        # (segment, start, end, record); _mem_base is the absolute index of _mem[0]
        self._mem: list[tuple[int, int, int, Any]] = []
        self._mem_base = 0
        self._mem_head = 0
        self._mem_pos: dict[str, int] = {}
        self.memory_records = memory_records
        self._seg = (existing[-1] + 1) if existing else 0
        self._open_segment(self._seg)
        self._dirty = False
        self._threads = [threading.Thread(target=self._sync_loop, name="otel-audit-spool-fsync", daemon=True)]
        for name in self.exporters:
            self._threads.append(threading.Thread(target=self._ship_loop, args=(name,), daemon=True,
                                                  name=f"otel-audit-spool-{name}"))
        for t in self._threads:
            t.start()
        self._register_metrics(meter_provider)

    # -- files ------------------------------------------------------------------------------------

    def _segments(self) -> list[int]:
        out = []
        for p in self._segdir.iterdir():
            if p.name.endswith(_SEG) and p.name[: -len(_SEG)].isdigit():
                out.append(int(p.name[: -len(_SEG)]))
        return sorted(out)

    @staticmethod
    def _cut_torn_tail(path: Path) -> None:
        """A segment left by a crash: drop the unwritten (zero) space and a partial last line."""
        data = path.read_bytes()
        end = len(data.rstrip(b"\x00"))
        keep = data.rfind(b"\n", 0, end) + 1
        if keep < end:
            _log.warning("spool segment %s ended in a partial line (a crash mid-write); %d bytes cut",
                         path, end - keep)
        if keep != len(data):
            with open(path, "r+b") as fh:
                fh.truncate(keep)

    def _load_cursor(self, name: str, existing: list[int]) -> _Cursor:
        path = self._curdir / f"{name.replace('/', '__')}.json"
        first = existing[0] if existing else 0
        if path.exists():
            try:
                doc = orjson.loads(path.read_bytes())
                seg, off = int(doc["segment"]), int(doc["offset"])
                if seg < first:  # its segment is gone: everything there was delivered everywhere
                    seg, off = first, 0
                return _Cursor(name, path, seg, off)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                _log.error("spool cursor %s is unreadable (%s); replaying the whole spool to %s", path, exc, name)
        return _Cursor(name, path, first, 0)

    def _open_segment(self, n: int, need: int = 0) -> None:
        """A new segment, preallocated and mapped: a write is a memory copy into the page cache,
        which outlives the process (kill -9) without a system call per record."""
        path = self._segdir / _seg_name(n)
        cap = max(self.segment_bytes, need)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            os.ftruncate(fd, cap)
            self._mm = mmap.mmap(fd, cap)
        finally:
            os.close(fd)
        self._cap = cap
        self._sizes[n] = 0
        self._seg = n
        self._seg_defs: set[bytes] = set()

    @property
    def bytes(self) -> int:
        """Bytes the spool holds on disk now."""
        return self._total

    # -- encoding ---------------------------------------------------------------------------------

    def _def_line(self, kind: bytes, table: dict[int, Any], obj: Any, encode: Callable[[Any], list[Any]]) -> tuple[int, bytes]:
        got = table.get(id(obj))
        if got is None or got[0] is not obj:
            rid = len(table)
            got = (obj, rid, _dumps([kind.decode(), rid, *encode(obj)]) + b"\n")
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
    def _encode(lr: Any, rid: int, sid: int) -> bytes:
        attrs = lr.attributes
        d = getattr(attrs, "_dict", None)
        if d is None:
            d = dict(attrs or {})
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
        return _dumps([
            "L", rid, sid, lr.timestamp or 0, lr.observed_timestamp or 0, sev._value_ if sev is not None else 0,
            lr.severity_text or "", lr.event_name or "", bf, b, af, a, lr.trace_id or 0, lr.span_id or 0,
            int(lr.trace_flags or 0),
        ]) + b"\n"

    # -- the hot path -----------------------------------------------------------------------------

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        lr = log_record.log_record
        res = log_record.resource
        scope = log_record.instrumentation_scope
        defs = self._defs.get((id(res), id(scope)))
        if defs is None or defs[0] is not res or defs[1] is not scope:
            rid, rline = self._def_line(b"R", self._resources, res or Resource.get_empty(), self._encode_resource)
            sid, sline = self._def_line(b"S", self._scopes, scope, self._encode_scope)
            defs = self._defs[(id(res), id(scope))] = (res, scope, rid, rline, sid, sline)
        _, _, rid, rline, sid, sline = defs
        try:
            line = self._encode(lr, rid, sid)
        except (TypeError, ValueError) as exc:
            self.stats.refused += 1
            _log.error("audit record %r cannot be spooled (%s); it is lost here", lr.event_name, exc)
            raise DeliveryError(f"audit record {lr.event_name!r} cannot be spooled: {exc}") from exc
        # checkpoints and gap markers are small and carry the proof: a full spool still takes them
        marker = lr.event_name in _INTEGRITY_EVENTS
        with self._wlock:
            if self._closing:
                raise DeliveryError("the audit spool is shut down; the record was not accepted")
            if not marker and self._total + len(line) > self.max_bytes and not self._make_room(len(line), lr):
                return
            head = b""
            if rline not in self._seg_defs:
                head += rline
                self._seg_defs.add(rline)
            if sline not in self._seg_defs:
                head += sline
                self._seg_defs.add(sline)
            data = head + line if head else line
            seg, pos = self._write(data)
            self.stats.written += 1
            if self.fsync_interval == 0:
                self._mm.flush()
            else:
                self._dirty = True
            mem = self._mem
            mem.append((seg, pos, pos + len(data), log_record))
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

    def _write(self, data: bytes) -> tuple[int, int]:
        """Copy into the mapped segment; (segment, offset) where it starts."""
        pos = self._sizes[self._seg]
        end = pos + len(data)
        if end > self._cap:
            self._rotate(len(data))
            pos, end = 0, len(data)
        self._mm[pos:end] = data
        self._sizes[self._seg] = end
        self._total += len(data)
        return self._seg, pos

    def _make_room(self, need: int, lr: Any) -> bool:
        """Called with the write lock held and the spool full. True: go on and write."""
        if self.mode == "fail_closed":
            deadline = time.monotonic() + self.block_timeout
            while self._total + need > self.max_bytes:
                left = deadline - time.monotonic()
                if left <= 0 or self._closing:
                    self.stats.refused += 1
                    _log.error("audit spool %s is full (%d bytes) and fail_closed: record %r refused",
                               self.dir, self.max_bytes, lr.event_name)
                    raise DeliveryError(
                        f"audit spool {self.dir} is full ({self.max_bytes} bytes) and the destinations are not "
                        f"taking records: the audit record was refused (mode fail_closed)"
                    )
                self._space.wait(min(left, 0.5))
            return True
        self.stats.dropped += 1
        if self.stats.dropped == 1 or self.stats.dropped % 1000 == 0:
            _log.error("audit spool %s is full and fail_open: %d record(s) dropped so far; a signed gap marker "
                       "names them", self.dir, self.stats.dropped)
        attrs = lr.attributes or {}
        if self.on_drop is not None and STREAM_ID in attrs:
            self.on_drop(str(attrs[STREAM_ID]), int(attrs[STREAM_SEQ]), str(attrs[PREV_DIGEST]), str(attrs[DIGEST]))
        return False

    def _rotate(self, need: int = 0) -> None:
        # the sync thread flushes, unmaps and trims the old segment to its data
        self._retired.append((self._mm, self._segdir / _seg_name(self._seg), self._sizes[self._seg]))
        self._open_segment(self._seg + 1, need)
        if self.fsync_interval == 0:
            self._flush_retired()

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

    def _sync(self) -> None:
        with self._wlock:
            retired, self._retired = self._retired, []
            dirty, self._dirty = self._dirty, False
            mm, upto = self._mm, self._sizes[self._seg]
        for old_mm, path, size in retired:
            self._close_segment(old_mm, path, size)
        if dirty and upto:
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
        backoff = self.retry_initial
        saved = time.monotonic()
        while True:
            batch, end, mem_next = self._read_mem(cur)
            if not batch and end is None and mem_next is None:
                if cur.offset and not resources:
                    self._scan_defs(cur, resources, scopes)
                batch, end = self._read(cur, resources, scopes)
            if not batch:
                if end is not None:  # a finished segment: move on
                    cur.segment, cur.offset = end, 0
                    resources.clear()
                    scopes.clear()
                    cur.save()
                    saved = time.monotonic()
                    self._collect()
                    continue
                if cur.dirty:
                    cur.save()
                    saved = time.monotonic()
                if self._stop.is_set():
                    return
                data_ready.clear()
                data_ready.wait(self.batch_wait)
                continue
            if self._export(exporter, name, batch):
                cur.offset += sum(n for _, n in batch)
                cur.dirty = True
                if mem_next is not None:
                    self._advance_mem(name, mem_next)
                now = time.monotonic()
                if now - saved > 0.1:  # a crash replays at most this much again: duplicates, not loss
                    cur.save()
                    saved = now
                self.stats.delivered[name] = self.stats.delivered.get(name, 0) + len(batch)
                backoff = self.retry_initial
                continue
            # keep the records; try again later (the exporter logged why)
            self.stats.retries[name] = self.stats.retries.get(name, 0) + 1
            if self._stop.wait(backoff * (0.5 + random.random())):  # shut down: the records stay spooled
                if cur.dirty:
                    cur.save()
                return
            backoff = min(backoff * 2, self.retry_max)

    def _read_mem(self, cur: _Cursor) -> tuple[list[tuple[Any, int]], int | None, int | None]:
        """Records written in this run, straight from memory: (batch, next segment, next memory index)."""
        with self._wlock:
            mem, head = self._mem, self._mem_head
            i = bisect.bisect_left(mem, (cur.segment, cur.offset), lo=head, key=_mem_key)
            if i >= len(mem):
                return [], None, None
            seg, start = mem[i][0], mem[i][1]
            if seg == cur.segment and start == cur.offset:
                stop = min(len(mem), i + self.max_batch)
                out = []
                while i < stop and mem[i][0] == seg:
                    e = mem[i]
                    out.append((e[3], e[2] - e[1]))
                    i += 1
                return out, None, i + self._mem_base
            if seg > cur.segment and start == 0 and cur.offset >= self._sizes.get(cur.segment, 0):
                return [], seg, None
        return [], None, None

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
        try:
            res = exporter.export([r for r, _ in batch])
        except Exception:
            _log.exception("exporter %s raised on a batch of %d audit record(s); kept in the spool", name, len(batch))
            return False
        if res is LogRecordExportResult.SUCCESS:
            return True
        counters = getattr(exporter, "counters", None)
        if counters is not None and getattr(exporter, "last_permanent", False):
            # everything not delivered in that batch was refused for good, and counted and logged
            # with the vendor's reason by the exporter: retrying would never end
            return True
        self.stats.failed_batches[name] = self.stats.failed_batches.get(name, 0) + 1
        return False

    def _scan_defs(self, cur: _Cursor, resources: dict[int, Resource], scopes: dict[int, Any]) -> None:
        """Before resuming mid-segment, read the resource and scope definitions ahead of the cursor."""
        path = self._segdir / _seg_name(cur.segment)
        if not cur.offset or not path.exists():
            return
        with open(path, "rb") as fh:
            data = fh.read(cur.offset)
        for line in data.splitlines():
            if line.startswith((b'["R"', b'["S"')):
                self._define(orjson.loads(line), resources, scopes)

    @staticmethod
    def _define(item: list[Any], resources: dict[int, Resource], scopes: dict[int, Any]) -> None:
        if item[0] == "R":
            resources[item[1]] = Resource(decode_attributes(item[2]), item[3] or None)
        else:
            scopes[item[1]] = InstrumentationScope(item[2], item[3] or None)

    def _read(self, cur: _Cursor, resources: dict[int, Resource], scopes: dict[int, Any]
              ) -> tuple[list[tuple[ReadableLogRecord, int]], int | None]:
        """Up to max_batch records from the cursor; (batch, next segment id if this one is done)."""
        path = self._segdir / _seg_name(cur.segment)
        with self._wlock:
            writing = self._seg
            known = self._sizes.get(cur.segment)
        if known is None:
            later = [n for n in self._sizes if n > cur.segment]
            return [], (min(later) if later else None)
        out: list[tuple[ReadableLogRecord, int]] = []
        pending = 0  # bytes of definition lines read along the way, owed to the next record
        try:
            with open(path, "rb") as fh:
                fh.seek(cur.offset)
                data = fh.read(min(known - cur.offset, 4 << 20))
        except FileNotFoundError:
            return [], None
        pos = 0
        while len(out) < self.max_batch:
            nl = data.find(b"\n", pos)
            if nl < 0:
                break
            line = data[pos : nl + 1]
            pos = nl + 1
            item = orjson.loads(line)
            if item[0] != "L":
                self._define(item, resources, scopes)
                pending += len(line)
                continue
            out.append((self._record(item, resources, scopes), len(line) + pending))
            pending = 0
        if not out and pending:
            cur.offset += pending  # only definitions were left: step over them
        done = not out and cur.offset >= known and cur.segment != writing
        if done:
            later = [n for n in self._sizes if n > cur.segment]
            return [], (min(later) if later else None)
        return out, None

    @staticmethod
    def _record(item: list[Any], resources: dict[int, Resource], scopes: dict[int, Any]) -> ReadableLogRecord:
        (_, rid, sid, ts, obs, sev, sevtext, event, bf, b, af, a, trace, span, flags) = item
        lr = LogRecord.__new__(LogRecord)  # not __init__: it would read the current context
        lr.timestamp = ts or None
        lr.observed_timestamp = obs or None
        lr.context = None
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
        """Delete the segments every exporter has passed."""
        with self._wlock:
            low = min(c.segment for c in self._cursors.values())
            for n in sorted(self._sizes):
                if n >= low or n == self._seg:
                    break
                try:
                    (self._segdir / _seg_name(n)).unlink()
                except FileNotFoundError:
                    pass
                self._total -= self._sizes.pop(n)
            self._space.notify_all()

    # -- lifecycle --------------------------------------------------------------------------------

    def pending(self, name: str | None = None) -> int:
        """Bytes not yet delivered to `name` (or to the slowest exporter)."""
        with self._wlock:
            sizes = dict(self._sizes)
        def behind(c: _Cursor) -> int:
            return sum(s for n, s in sizes.items() if n >= c.segment) - c.offset
        cursors = [self._cursors[name]] if name else list(self._cursors.values())
        return max(behind(c) for c in cursors)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Wait until every exporter has everything written so far (or the timeout passes)."""
        deadline = time.monotonic() + timeout_millis / 1000
        self._sync()
        for ev in self._event_list:
            ev.set()
        while time.monotonic() < deadline:
            if self.pending() <= 0:
                return all(e.force_flush(max(0, int((deadline - time.monotonic()) * 1000)))
                           for e in self.exporters.values())
            time.sleep(0.01)
        return False

    def shutdown(self, timeout_millis: int = 30000) -> None:
        if self._closing:
            return
        self.force_flush(timeout_millis)
        with self._wlock:
            self._closing = True
            self._space.notify_all()
        self._stop.set()
        for ev in self._event_list:
            ev.set()
        for t in self._threads:
            t.join(timeout=5)
        for c in self._cursors.values():
            c.save()
        with self._wlock:
            self._retired.append((self._mm, self._segdir / _seg_name(self._seg), self._sizes[self._seg]))
        self._sync()
        left = self.pending()
        if left > 0:
            _log.warning("audit spool %s shut down with %d byte(s) not yet delivered; they are kept and "
                         "replayed at the next start", self.dir, left)
        for e in self.exporters.values():
            try:
                e.shutdown()
            except Exception:
                _log.exception("exporter shutdown failed")
        fcntl.flock(self._lockfh, fcntl.LOCK_UN)
        self._lockfh.close()

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

        meter.create_observable_gauge("otel_audit.spool.depth", [depth], unit="By",
                                      description="bytes spooled but not yet delivered, per exporter")
        meter.create_observable_counter("otel_audit.spool.delivered", [counts("delivered")], unit="{record}")
        meter.create_observable_counter("otel_audit.spool.retries", [counts("retries")], unit="{batch}")
        meter.create_observable_counter(
            "otel_audit.spool.dropped",
            [lambda _: [Observation(self.stats.dropped), ]], unit="{record}",
            description="records dropped by a full spool in fail_open mode")
        meter.create_observable_counter(
            "otel_audit.spool.refused",
            [lambda _: [Observation(self.stats.refused), ]], unit="{record}",
            description="records refused by a full spool in fail_closed mode")


__all__ = ["MODES", "SpoolProcessor", "SpoolStats"]
