"""Write log records to a file as OTLP JSON lines, the format of the collector's ``file`` exporter.

Each ``export()`` call appends one line holding one ``ExportLogsServiceRequest``, so the archive
can be read back by ``otel-audit verify`` or by the collector's ``otlpjsonfile`` receiver.

Every line reaches the operating system before ``export()`` returns; the ``fsync`` policy only
decides when it reaches the disk: after every line (``always``), at most every
``fsync_interval`` seconds from a background thread (``interval``), or when the OS decides
(``never``). Rotation follows the collector's (lumberjack's) naming: ``audit.jsonl`` becomes
``audit-2006-01-02T15-04-05.000.jsonl``, optionally gzipped in the background.

One file has one writer. Before it first writes, the exporter takes an exclusive ``flock`` on
``<path>.lock`` next to the file (0600, never through a symlink) and holds it until ``shutdown()``;
rotation renames only the file, so the lock outlives it. A process that finds the lock held by
another live process (workers started apart on one config: uvicorn ``--workers``, gunicorn
without ``--preload``, a second instance) appends to a file of its own next to it instead,
``<stem>.<pid><suffix>`` (``audit.jsonl`` -> ``audit.12345.jsonl``; ``audit.12345-2.jsonl`` and
so on if that is held too, as by a process of another PID namespace), with a warning. Two
processes therefore never append to, rotate or prune the same file: each file is one process's
whole lines, its backups (``audit.12345-2006-01-02T15-04-05.000.jsonl``) are its own, and
``otel-audit verify <folder>`` reads them all (a lock file is empty and skipped). Where no lock
can be made (a file made for the process in a folder it may not write), the file is written
without one, with a warning, as before there were locks: then only one process may write it.

After ``os.fork()`` (gunicorn ``--preload``, multiprocessing's fork start method) a child never
writes to, rotates or prunes the parent's file either: in the child the exporter appends to its
own ``<stem>.<pid><suffix>`` from the start, under its own lock, with its own fsync and backup
threads (started when it first writes). The parent's descriptors (the file's and the lock's) are
closed in the child, which leaves the parent's lock held. The child's records are a stream of
their own anyway (it signs its own).

Refusals follow the policy of ``otel_audit.exporters._http``: ``last_rejected`` holds the
positions of records that cannot be written as OTLP JSON at all (logged and counted in
``counters.rejected``; the rest of the batch is written); an I/O error is FAILURE, never a
rejection.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import gzip
import logging
import math
import os
import re
import shutil
import stat
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeGuard

from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult

from otel_audit.errors import ConfigError
from otel_audit.exporters import _settings
from otel_audit.exporters._http import Counters, register_after_fork
from otel_audit.exporters._settings import parse_duration
from otel_audit.filemodes import make_dirs, open_append, open_new
from otel_audit.lifecycle import background_thread
from otel_audit.otlpjson import dumps_line

if TYPE_CHECKING:
    from opentelemetry.sdk._logs import ReadableLogRecord

__all__ = [
    "COMPRESSIONS",
    "DEFAULT_PATH",
    "ENV_FSYNC",
    "ENV_MAX_MEGABYTES",
    "ENV_PATH",
    "FSYNC_POLICIES",
    "FileLogRecordExporter",
    "parse_duration",
]

_logger = logging.getLogger(__name__)

ENV_PATH = "OTEL_AUDIT_FILE_PATH"
ENV_FSYNC = "OTEL_AUDIT_FILE_FSYNC"
ENV_MAX_MEGABYTES = "OTEL_AUDIT_FILE_MAX_MEGABYTES"

DEFAULT_PATH = "./otel-audit/archive/audit.jsonl"
DEFAULT_FSYNC = "interval"
DEFAULT_FSYNC_INTERVAL = 1.0
DEFAULT_MAX_MEGABYTES = 100
DEFAULT_MAX_BACKUPS = 100
FSYNC_POLICIES = ("always", "interval", "never")
COMPRESSIONS = ("none", "gzip")

_MEGABYTE = 1024 * 1024  # lumberjack's megabyte, so a collector's max_megabytes means the same here
#: the largest rotation settings accepted: past these a value is a typo (1 EiB files, a century of backups)
MAX_MEGABYTES = 1 << 40
MAX_DAYS = 36500
MAX_BACKUPS = 100_000_000
_ROTATION_KEYS = ("max_megabytes", "max_days", "max_backups", "localtime")
_CONFIG_KEYS = (
    "path",
    "rotation",
    "format",
    "compression",
    "fsync",
    "fsync_interval",
    "flush_interval",
    "append",
)
_BACKUP_TIME_FORMAT = "%Y-%m-%dT%H-%M-%S"
_BACKUP_TIME_RE = r"(\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2})\.(\d{3})"
_MILL_JOIN_SECONDS = 30.0
_LOCK_SUFFIX = ".lock"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
#: files of its own a process tries, `<stem>.<pid><suffix>` and `<stem>.<pid>-<k><suffix>`, before giving up
_OWN_FILES = 16


# --------------------------------------------------------------------------- durations


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class _Rotation:
    max_bytes: int
    max_days: float
    max_backups: int
    localtime: bool


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _rotation_from_args(rotation: Mapping[str, object] | None) -> _Rotation | None:
    """The rotation of a `rotation` setting already read by `_config_rotation`, with the defaults filled in."""
    if rotation is None:
        return None
    megabytes = rotation.get("max_megabytes", DEFAULT_MAX_MEGABYTES)
    return _Rotation(
        max_bytes=max(1, int(float(megabytes) * _MEGABYTE)),  # type: ignore[arg-type]
        max_days=float(rotation.get("max_days", 0)),  # type: ignore[arg-type]
        max_backups=int(rotation.get("max_backups", DEFAULT_MAX_BACKUPS)),  # type: ignore[call-overload]
        localtime=bool(rotation.get("localtime", False)),
    )


def _format(value: object) -> str:
    if value in (None, ""):
        return "json"
    if value == "proto":
        raise ConfigError("'proto' is not supported; the audit archive is OTLP JSON lines, "
                          "so use format: json or leave the key out")
    if value != "json":
        raise ConfigError(f"{value!r} is not a format; use json")
    return "json"


def _append(value: object) -> bool:
    if not _settings.Bool()(value, "append"):
        raise ConfigError("false would truncate the audit archive; remove the key or set it to true")
    return True


def _path(value: object) -> str:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"must be a non-empty string, got {value!r}; set it to a file path")
    if "\0" in value:  # e.g. a templated value gone wrong: no file can be opened by that name
        raise ConfigError(f"{value!r} holds a NUL character, which no file name can; set it to a file path")
    if value.endswith(("/", os.sep)):  # a folder meant: say so rather than write a file named like it
        raise ConfigError(f"{value!r} names a folder; name the file to write in it, e.g. {value}audit.jsonl")
    return value


def check_regular_file(path: str) -> None:
    """ConfigError (no key) if `path` exists and is not a regular file: a folder, a device such as /dev/null
    (records "delivered" there are gone), a FIFO or a socket. Rotation, the lock beside it and the torn-tail
    repair all need a regular file."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return  # absent (made at the first write) or unreadable: the first write says what is wrong
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{path} is a folder; name a file in it, e.g. {os.path.join(path, 'audit.jsonl')}")
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{path} exists and is not a regular file (a device, FIFO or socket); name a regular "
                          "file, e.g. /var/log/otel-audit/audit.jsonl")


class _RotationParser(_settings.Parser):
    kind = "mapping"

    def __call__(self, value: object, where: str) -> dict[str, object]:
        return _config_rotation(value, where)

    def from_text(self, text: str, where: str) -> dict[str, object]:
        # OTEL_AUDIT_FILE_MAX_MEGABYTES: rotation with this max_megabytes
        return {"max_megabytes": _config_number(text, where, integer=False, least=0, most=MAX_MEGABYTES, above=True)}

    def show(self, value: object) -> str:
        return "unset: one growing file"


_S = _settings.Setting
SETTINGS = _settings.Model("file", [
    _S("path", _settings.Check(_path, "string"), DEFAULT_PATH, (ENV_PATH,), "the file to write (folders 0700, "
       "file 0600); a name ending in / (a folder), a device, FIFO or socket is refused; a process that "
       "finds it held by another (a forked child, a worker started apart) "
       "writes <stem>.<pid><suffix> next to it",
       required=f"missing; set it to the file to write, e.g. {DEFAULT_PATH}"),
    _S("rotation", _RotationParser(), None, (ENV_MAX_MEGABYTES,), "rotate by size: max_megabytes (100, may be "
       "fractional), max_days (0: any age), max_backups (100; 0: all), localtime (false: UTC names); the "
       "variable gives max_megabytes"),
    _S("compression", _settings.Choice(COMPRESSIONS, {"": "none"}), "none", (), "gzip compresses rotated "
       "backups in the background"),
    _S("fsync", _settings.Choice(FSYNC_POLICIES), DEFAULT_FSYNC, (ENV_FSYNC,), "when written lines are fsynced"),
    _S("fsync_interval", _settings.Duration(), None, (), "time between background fsyncs of fsync: interval",
       default_doc="1s"),
    _S("flush_interval", _settings.Duration(), None, (), "the collector's name for fsync_interval"),
    _S("format", _settings.Check(_format, "choice"), "json", (), "OTLP JSON lines (proto is not supported)",
       unused=True),
    _S("append", _settings.Check(_append, "bool"), True, (), "must stay true (false would truncate the "
       "archive)", unused=True),
], title="file (FileLogRecordExporter, entry point otel_audit_file)")


# --------------------------------------------------------------------------- low-level file helpers


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_directory(directory: str) -> None:
    # Makes a create or rename durable; not every platform or filesystem allows it.
    try:
        fd = os.open(directory or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _set_aside_torn_tail(path: str, fd: int, size: int) -> int:
    """Cut the file back to its last newline; the cut fragment goes to `<path>.torn-<time>`."""
    with open(path, "rb") as handle:
        pos = size
        keep = 0
        while pos > 0:
            step = min(65536, pos)
            pos -= step
            handle.seek(pos)
            chunk = handle.read(step)
            nl = chunk.rfind(b"\n")
            if nl >= 0:
                keep = pos + nl + 1
                break
        handle.seek(keep)
        fragment = handle.read()
    side = f"{path}.torn-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{os.getpid()}"
    side_fd = open_new(side)
    try:
        _write_all(side_fd, fragment)
        os.fsync(side_fd)
    finally:
        os.close(side_fd)
    os.ftruncate(fd, keep)
    _logger.warning(
        "%s ended in a partial line of %d bytes (a crash while writing); it was moved to %s",
        path, len(fragment), side,
    )
    return keep


def _ends_without_newline(path: str) -> bool:
    try:
        with open(path, "rb") as handle:
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) != b"\n"
    except OSError:
        return False


# --------------------------------------------------------------------------- the exporter


class FileLogRecordExporter(LogRecordExporter):
    """Append each batch as one OTLP JSON line to ``path``, with rotation and an fsync policy.

    Args:
        path: the file to write; missing parent folders are created with mode 0700 and the file
            with mode 0600, whatever the umask (rotated and gzipped backups keep 0600; a folder or
            file that exists keeps its mode, and check-config warns if others can read it).
            Default: ``$OTEL_AUDIT_FILE_PATH``, else ``./otel-audit/archive/audit.jsonl``.
        rotation: ``None`` for a single growing file (unless ``$OTEL_AUDIT_FILE_MAX_MEGABYTES``
            is set), or a mapping with the collector's keys: ``max_megabytes`` (default 100, may
            be fractional), ``max_days`` (0 keeps backups of any age), ``max_backups`` (default
            100, 0 keeps all), ``localtime`` (name backups in local time instead of UTC).
        compression: ``"gzip"`` compresses rotated backups in the background; ``"none"``.
        fsync: ``"always"``, ``"interval"`` or ``"never"``. Default ``$OTEL_AUDIT_FILE_FSYNC``,
            else ``"interval"``.
        fsync_interval: seconds between background fsyncs for ``fsync="interval"`` (default 1).
        flush_interval: the collector's name for ``fsync_interval``.

    Raises ``ValueError`` naming the argument when an argument is wrong. I/O errors never
    raise from ``export()``: they are logged and the result is ``FAILURE``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        rotation: Mapping[str, object] | None = None,
        compression: str | None = None,
        fsync: str | None = None,
        fsync_interval: float | str | None = None,
        flush_interval: float | str | None = None,
        **collector: object,
    ) -> None:
        from otel_audit.instrument import warn_if_plain_sdk

        warn_if_plain_sdk(self)  # built by the SDK's own configurator: nothing it exports is signed
        v = SETTINGS.resolve(SETTINGS.given(locals(), collector))
        path = v["path"]
        self._path = os.path.abspath(os.fspath(path))
        if os.path.basename(self._path) == "" or os.path.isdir(self._path):
            raise ConfigError(f"path: must name a file, not a directory, got {path!r}")
        try:
            check_regular_file(self._path)
        except ConfigError as exc:
            raise ConfigError(f"path: {exc}") from None

        self._rotation = _rotation_from_args(v["rotation"])
        self._compression = compression = v["compression"]
        if compression == "gzip" and self._rotation is None:
            _logger.warning("compression=gzip applies to rotated backups; rotation is off for %s", self._path)
        self._fsync = v["fsync"]
        fsync_interval, flush_interval = v["fsync_interval"], v["flush_interval"]
        if fsync_interval is not None and flush_interval is not None and fsync_interval != flush_interval:
            raise ConfigError(
                f"fsync_interval: {fsync_interval!r} conflicts with flush_interval {flush_interval!r}; "
                "give only one of them (flush_interval is the collector's name for it)"
            )
        interval = fsync_interval if fsync_interval is not None else flush_interval
        name = "fsync_interval" if fsync_interval is not None else "flush_interval"
        if interval is None:
            interval = DEFAULT_FSYNC_INTERVAL
        if not _is_number(interval) or interval <= 0:
            raise ConfigError(f"{name}: must be a number of seconds above 0, got {interval!r}")
        self._fsync_interval = float(interval)

        self._set_path(self._path)
        self._base_stem = self._stem
        self.counters = Counters()
        #: positions in the last export()'s batch of the records that cannot be written (see the module docstring)
        self.last_rejected: tuple[int, ...] = ()
        self._reset_state()
        register_after_fork(self)

    def _set_path(self, path: str) -> None:
        self._path = path
        directory, filename = os.path.split(path)
        self._directory = directory
        stem, ext = os.path.splitext(filename)
        self._stem, self._ext = stem, ext
        self._backup_re = re.compile(rf"^{re.escape(stem)}-{_BACKUP_TIME_RE}{re.escape(ext)}(\.gz(\.tmp)?)?$")

    def _reset_state(self) -> None:
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._lock_fd: int | None = None  # the flock on `<path>.lock`, held from the first write to shutdown
        self._unlocked = False  # no lock file can be made next to the file (warned): written as before locks
        self._size = 0
        self._dirty = False
        self._is_shutdown = False
        self._stop = threading.Event()
        self._syncer: threading.Thread | None = None
        self._last_backup: _dt.datetime | None = None

        self._mill_cond = threading.Condition()
        self._mill_requested = 0
        self._mill_done = 0
        self._mill_stop = False
        self._mill_thread: threading.Thread | None = None

    def _after_fork_in_child(self) -> None:
        """In a forked child: a file of its own next to the parent's, fresh locks, no inherited thread or fd."""
        fd, lock_fd, shut_down = self._fd, self._lock_fd, self._is_shutdown
        for inherited in (fd, lock_fd):
            if inherited is not None:
                with contextlib.suppress(OSError):
                    os.close(inherited)  # the child's copy only: the parent's descriptor (and flock) stays
        self._set_path(os.path.join(self._directory, f"{self._base_stem}.{os.getpid()}{self._ext}"))
        self._reset_state()  # the fsync and backup threads start again when the child first writes
        self._is_shutdown = shut_down
        if shut_down:
            self._stop.set()

    # ------------------------------------------------------------------ configuration

    @classmethod
    def from_config(cls, cfg: Mapping[str, object], *, where: str) -> FileLogRecordExporter:
        """Build the exporter from a config block in the collector's ``file`` exporter shape.

        ``where`` locates the block in messages, e.g. ``"otel-audit.yaml: exporters.file"``.
        Raises :class:`~otel_audit.errors.ConfigError` naming the key for an unknown key, a
        wrong type or a bad value.
        """
        if cfg is not None and not isinstance(cfg, Mapping):
            raise ConfigError(
                f"{where}: expected a mapping of settings, got {type(cfg).__name__}; "
                f"write `key: value` lines under it (valid keys: {', '.join(_CONFIG_KEYS)})"
            )
        kw = SETTINGS.read_block(cfg, where)
        if "rotation" in (cfg or {}) and "rotation" not in kw:
            kw["rotation"] = {}  # a bare `rotation:` line asks for rotation with the defaults
        try:
            return cls(**kw)
        except ValueError as exc:
            raise ConfigError(f"{where}.{exc}") from None

    # ------------------------------------------------------------------ public API

    @property
    def path(self) -> str:
        """The absolute path of the file being written."""
        return self._path

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        """Append the batch as one OTLP JSON line; ``FAILURE`` (logged) if it cannot be written."""
        self.last_rejected = ()
        if self._is_shutdown:
            _logger.warning(
                "file exporter for %s is shut down; %d log records not written", self._path, len(batch)
            )
            return LogRecordExportResult.FAILURE
        if not batch:
            return LogRecordExportResult.SUCCESS
        try:
            line = dumps_line(batch)
            rejected: tuple[int, ...] = ()
        except (TypeError, ValueError):
            apart, rejected = self._encode_apart(batch)
            if apart is None:
                self.last_rejected = rejected
                return LogRecordExportResult.SUCCESS
            line = apart
        with self._lock:
            if self._is_shutdown:
                _logger.warning(
                    "file exporter for %s is shut down; %d log records not written", self._path, len(batch)
                )
                return LogRecordExportResult.FAILURE
            try:
                self._write_locked(line)
            except OSError as exc:
                _logger.error(
                    "cannot write %d log records to %s: %s; check that the path is a writable file "
                    "in a writable directory with free space",
                    len(batch),
                    self._path,
                    exc,
                )
                self._close_locked()
                self.counters.failed += len(batch) - len(rejected)
                return LogRecordExportResult.FAILURE
        self.counters.delivered += len(batch) - len(rejected)
        self.last_rejected = rejected
        return LogRecordExportResult.SUCCESS

    def _encode_apart(self, batch: Sequence[ReadableLogRecord]) -> tuple[bytes | None, tuple[int, ...]]:
        """The line of the records that can be encoded, and the positions of those that cannot (logged, counted)."""
        good: list[ReadableLogRecord] = []
        bad: list[int] = []
        for i, record in enumerate(batch):
            try:
                dumps_line([record])
            except (TypeError, ValueError) as exc:
                bad.append(i)
                reason = f"audit record {record.log_record.event_name!r} cannot be encoded as OTLP JSON: {exc}"
                self.counters.rejected += 1
                if len(self.counters.reasons) < 50:
                    self.counters.reasons.append(reason)
                _logger.error("file exporter for %s: %s; it is not written", self._path, reason)
            else:
                good.append(record)
        return (dumps_line(good) if good else None), tuple(bad)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Fsync what was written (unless ``fsync="never"``) and wait for pending backup work."""
        deadline = time.monotonic() + timeout_millis / 1000.0
        ok = True
        if self._fsync != "never":
            ok = self._sync_now()
        return self._mill_wait(max(0.0, deadline - time.monotonic())) and ok

    def shutdown(self) -> None:
        """Fsync and close the file and stop the background threads; later exports fail."""
        with self._lock:
            if self._is_shutdown:
                return
            self._is_shutdown = True
        self._stop.set()
        if self._syncer is not None:
            self._syncer.join()
        with self._lock:
            if self._fd is not None and self._fsync != "never":
                try:
                    os.fsync(self._fd)
                except OSError as exc:
                    _logger.error("cannot fsync %s at shutdown: %s", self._path, exc)
            self._close_locked()
            if self._lock_fd is not None:
                with contextlib.suppress(OSError):
                    os.close(self._lock_fd)  # releases the flock: the next process may take the file
                self._lock_fd = None
        with self._mill_cond:
            self._mill_stop = True
            self._mill_cond.notify_all()
        if self._mill_thread is not None:
            self._mill_thread.join(_MILL_JOIN_SECONDS)
            if self._mill_thread.is_alive():
                _logger.warning(
                    "backup compression for %s still running after %ss; it resumes on the next start",
                    self._path,
                    _MILL_JOIN_SECONDS,
                )

    # ------------------------------------------------------------------ writing (lock held)

    def _open_locked(self) -> None:
        if self._directory:
            make_dirs(self._directory)  # the folders made here are 0700; one that exists keeps its mode
        if self._lock_fd is None and not self._unlocked:
            self._claim_locked()
        existed = os.path.exists(self._path)
        fd = open_append(self._path)  # a new archive file is 0600 whatever the umask
        try:
            size = os.fstat(fd).st_size
            if size and _ends_without_newline(self._path):
                # A line cut short by a crash (kill -9 mid-write): move the fragment aside, so the
                # archive stays whole lines, and say so. Its records were never acknowledged.
                size = _set_aside_torn_tail(self._path, fd, size)
        except OSError:
            os.close(fd)
            raise
        self._fd = fd
        self._size = size
        if not existed and self._fsync != "never":
            _fsync_directory(self._directory)
        if self._fsync == "interval" and self._syncer is None:
            self._syncer = background_thread(self._sync_loop, name="otel-audit-file-fsync")
            self._syncer.start()
        if self._rotation is not None and self._mill_thread is None:
            # The first run also finishes what a crash interrupted: leftover backups to compress or prune.
            self._mill_request()

    def _own_files(self) -> Iterator[str]:
        """The files this process may write, in order: the one it was given (in a forked child, its own),
        then `<stem>.<pid><suffix>`, then `<stem>.<pid>-<k><suffix>`."""
        yield self._path
        pid = os.getpid()
        own = os.path.join(self._directory, f"{self._base_stem}.{pid}{self._ext}")
        if own != self._path:
            yield own
        for k in range(2, _OWN_FILES + 1):
            yield os.path.join(self._directory, f"{self._base_stem}.{pid}-{k}{self._ext}")

    def _claim_locked(self) -> None:
        """Take a file for this process alone: the first of `_own_files` whose `.lock` no live process holds.

        OSError (logged by export, which then fails and is retried) when a lock cannot be opened: a symlink
        planted at the lock's name is refused, never followed."""
        held: list[str] = []
        for path in self._own_files():
            lock = path + _LOCK_SUFFIX
            try:
                fd = open_append(lock, os.O_RDWR | os.O_APPEND | _NOFOLLOW)  # a new lock file is 0600
            except OSError as exc:
                if held or exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS) or not os.path.isfile(path):
                    raise
                # A file made for us in a folder we may not write (a pre-created /var/log file): it was
                # written without a lock before there were locks, so it still is; only one process may.
                _logger.warning(
                    "cannot create the lock %s (%s), so %s is written without one: only one process may "
                    "write it (and it cannot be rotated there); let this process write the folder to lock it",
                    lock, exc.strerror, path,
                )
                self._unlocked = True
                return
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                held.append(path)
                continue
            except OSError:
                os.close(fd)
                raise
            self._lock_fd = fd
            if held:
                # a warning, not news: whatever collects the archive must now take this file too
                _logger.warning(
                    "archive %s is being written by another process (a worker started on the same config, "
                    "not forked from this one); this process (pid %d) writes %s next to it instead, so that "
                    "no two processes append to or rotate one file; collect %s*%s from %s (otel-audit verify "
                    "<folder> reads them all), or give each worker a path of its own",
                    held[0], os.getpid(), path, self._base_stem, self._ext, self._directory,
                )
                self._set_path(path)
            return
        raise OSError(
            errno.EBUSY,
            f"{len(held)} archive files are held by other live processes ({os.path.basename(held[0])} to "
            f"{os.path.basename(held[-1])}); give this process a path of its own",
            self._path,
        )

    def _write_locked(self, line: bytes) -> None:
        if self._fd is None:
            self._open_locked()
        if (
            self._rotation is not None
            and self._size > 0
            and self._size + len(line) > self._rotation.max_bytes
        ):
            self._rotate_locked()
        fd = self._fd
        assert fd is not None
        start = self._size
        try:
            _write_all(fd, line)
        except OSError:
            # Cut a partial line off, so that the next line starts on a line of its own.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)
            raise
        self._size = start + len(line)
        if self._fsync == "always":
            os.fsync(fd)
        else:
            self._dirty = True

    def _rotate_locked(self) -> None:
        fd = self._fd
        assert fd is not None and self._rotation is not None
        if self._fsync != "never":
            os.fsync(fd)
        self._close_locked()
        backup = self._backup_path(self._rotation.localtime)
        os.rename(self._path, backup)
        if self._fsync != "never":
            _fsync_directory(self._directory)
        self._open_locked()
        self._mill_request()

    def _close_locked(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError as exc:
                _logger.error("cannot close %s: %s", self._path, exc)
            self._fd = None
            self._size = 0
            self._dirty = False

    def _backup_path(self, localtime: bool) -> str:
        now = _dt.datetime.now().astimezone() if localtime else _dt.datetime.now(_dt.timezone.utc)
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)
        # Small files rotate several times a millisecond. Names must still sort in rotation order,
        # since retention deletes by name, and must never rename over an existing backup.
        if self._last_backup is not None and now <= self._last_backup:
            now = self._last_backup + _dt.timedelta(milliseconds=1)
        while True:
            stamp = f"{now.strftime(_BACKUP_TIME_FORMAT)}.{now.microsecond // 1000:03d}"
            candidate = os.path.join(self._directory, f"{self._stem}-{stamp}{self._ext}")
            if not any(os.path.exists(candidate + suffix) for suffix in ("", ".gz", ".gz.tmp")):
                self._last_backup = now
                return candidate
            now += _dt.timedelta(milliseconds=1)

    # ------------------------------------------------------------------ fsync

    def _sync_loop(self) -> None:
        while not self._stop.wait(self._fsync_interval):
            with self._lock:
                dirty = self._dirty
            if dirty:
                self._sync_now()

    def _sync_now(self) -> bool:
        # fsync a duplicate descriptor outside the lock, so exports are held up by a dup() only.
        with self._lock:
            if self._fd is None:
                return True
            try:
                dup = os.dup(self._fd)
            except OSError as exc:
                _logger.error("cannot fsync %s: %s", self._path, exc)
                return False
            self._dirty = False
        try:
            os.fsync(dup)
        except OSError as exc:
            _logger.error(
                "cannot fsync %s: %s; records written since the last fsync may be lost", self._path, exc
            )
            with self._lock:
                self._dirty = True
            return False
        finally:
            os.close(dup)
        return True

    # ------------------------------------------------------------------ backups (background "mill")

    def _mill_request(self) -> None:
        with self._mill_cond:
            self._mill_requested += 1
            if self._mill_thread is None:
                self._mill_thread = background_thread(self._mill_loop, name="otel-audit-file-backups")
                self._mill_thread.start()
            self._mill_cond.notify_all()

    def _mill_wait(self, timeout: float) -> bool:
        with self._mill_cond:
            return self._mill_cond.wait_for(lambda: self._mill_done >= self._mill_requested, timeout)

    def _mill_loop(self) -> None:
        while True:
            with self._mill_cond:
                self._mill_cond.wait_for(lambda: self._mill_requested > self._mill_done or self._mill_stop)
                if self._mill_requested <= self._mill_done:
                    return
                target = self._mill_requested
            try:
                self._mill_run()
            except Exception:  # a background thread has nobody to raise to
                _logger.exception("backup maintenance for %s failed", self._path)
            with self._mill_cond:
                self._mill_done = target
                self._mill_cond.notify_all()

    def _list_backups(self) -> dict[str, list[str]]:
        """Map each backup's timestamp to its files (plain, .gz and .gz.tmp), newest first."""
        backups: dict[str, list[str]] = {}
        try:
            names = os.listdir(self._directory or ".")
        except OSError as exc:
            _logger.error("cannot list backups of %s: %s", self._path, exc)
            return {}
        for name in names:
            match = self._backup_re.match(name)
            if match:
                backups.setdefault(f"{match.group(1)}.{match.group(2)}", []).append(name)
        return dict(sorted(backups.items(), reverse=True))

    def _backup_time(self, stamp: str, localtime: bool) -> float:
        base, millis = stamp.rsplit(".", 1)
        parsed = _dt.datetime.strptime(base, _BACKUP_TIME_FORMAT)
        aware = parsed.astimezone() if localtime else parsed.replace(tzinfo=_dt.timezone.utc)
        return aware.timestamp() + int(millis) / 1000.0

    def _mill_run(self) -> None:
        rotation = self._rotation
        assert rotation is not None
        backups = self._list_backups()
        keep: list[tuple[str, list[str]]] = []
        cutoff = time.time() - rotation.max_days * 86400.0 if rotation.max_days > 0 else None
        for index, (stamp, names) in enumerate(backups.items()):
            too_many = rotation.max_backups > 0 and index >= rotation.max_backups
            too_old = cutoff is not None and self._backup_time(stamp, rotation.localtime) < cutoff
            if too_many or too_old:
                for name in names:
                    self._remove(name)
            else:
                keep.append((stamp, names))
        if self._compression != "gzip":
            return
        for _stamp, names in keep:
            plain = [n for n in names if not n.endswith((".gz", ".gz.tmp"))]
            for name in names:
                if name.endswith(".gz.tmp"):
                    self._remove(name)  # left by a crash while compressing; the plain file is still there
            if not plain:
                continue
            if any(n.endswith(".gz") for n in names):
                self._remove(plain[0])  # a crash hit after the .gz was complete
                continue
            self._compress(os.path.join(self._directory, plain[0]))

    def _remove(self, name: str) -> None:
        try:
            os.remove(os.path.join(self._directory, name))
        except FileNotFoundError:
            pass
        except OSError as exc:
            _logger.error("cannot remove old backup %s: %s", name, exc)

    def _compress(self, plain: str) -> None:
        target = plain + ".gz"
        tmp = target + ".tmp"
        try:
            fd = open_new(tmp)  # 0600 like the backup it compresses
            with os.fdopen(fd, "wb") as raw:
                with (
                    gzip.GzipFile(filename=os.path.basename(plain), mode="wb", fileobj=raw) as packed,
                    open(plain, "rb") as source,
                ):
                    shutil.copyfileobj(source, packed, 1024 * 1024)
                raw.flush()
                if self._fsync != "never":
                    os.fsync(raw.fileno())
            os.replace(tmp, target)
            if self._fsync != "never":
                _fsync_directory(self._directory)
            os.remove(plain)
        except OSError as exc:
            _logger.error("cannot gzip backup %s: %s; it stays uncompressed", plain, exc)
            with contextlib.suppress(OSError):
                os.remove(tmp)


# --------------------------------------------------------------------------- config helpers


def _num(x: float) -> str:
    """A bound as a config writes it: 36500, 0.5 (never 1e+08)."""
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _config_number(value: object, where: str, *, integer: bool, least: float, most: float,
                   above: bool = False, what: str = "") -> float | int:
    """A finite number (a whole one if `integer`) from `least` (exclusive if `above`) to `most`; a plain
    numeric string (what a ${env:VAR} substitution yields) is taken too. ConfigError naming the range else."""
    kind = "an integer" if integer else "a number"
    bound = f"above {_num(least)}" if above else f"from {_num(least)}{what}"
    accepted = f"{kind} {bound} to {_num(most)}" if not above else f"{kind} {bound} and at most {_num(most)}"
    number: float | int | None = None
    if _is_number(value):
        number = value
    elif isinstance(value, str):
        try:
            number = int(value.strip()) if integer else float(value.strip())
        except ValueError:
            number = None
    if number is None or (isinstance(number, float) and not math.isfinite(number)):
        raise ConfigError(f"{where}: must be {accepted}, got {value!r}")
    if integer and not float(number).is_integer():
        raise ConfigError(f"{where}: must be {accepted}, got {value!r}")
    if (number <= least if above else number < least) or number > most:
        raise ConfigError(f"{where}: {value!r} is out of range; must be {accepted}")
    return int(number) if integer else number


def _config_rotation(value: object, where: str) -> dict[str, object]:
    if value is None:
        return {}  # a bare `rotation:` line asks for rotation with the defaults
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"{where}: expected a mapping, got {type(value).__name__}; "
            f"valid keys are {', '.join(_ROTATION_KEYS)}"
        )
    for key in value:
        if key not in _ROTATION_KEYS:
            raise ConfigError(f"{where}.{key}: unknown key; valid keys are {', '.join(_ROTATION_KEYS)}")
    out: dict[str, object] = {}
    if value.get("max_megabytes") is not None:
        out["max_megabytes"] = _config_number(value["max_megabytes"], f"{where}.max_megabytes", integer=False,
                                              least=0, most=MAX_MEGABYTES, above=True)
    if value.get("max_days") is not None:
        out["max_days"] = _config_number(value["max_days"], f"{where}.max_days", integer=False, least=0,
                                         most=MAX_DAYS, what=" (keep backups of any age)")
    if value.get("max_backups") is not None:
        out["max_backups"] = _config_number(value["max_backups"], f"{where}.max_backups", integer=True, least=0,
                                            most=MAX_BACKUPS, what=" (keep every backup)")
    if value.get("localtime") is not None:
        out["localtime"] = _settings.Bool()(value["localtime"], f"{where}.localtime")
    return out
