"""Putting records in (stream, seq) order with bounded memory: the reorder window, sorted runs spilled to a
temporary file when the window overflows, and fingerprints of records already proven in order.

The prover (`prove`) processes each stream in seq order as records arrive. Records that are not yet next
wait in memory, at most `window_size()` of them over all streams (env `OTEL_AUDIT_VERIFY_WINDOW`, default
`DEFAULT_WINDOW`). When more wait, streams whose next records are present are processed; a stream whose
next seq is absent (records of it arrive out of order, or its first records are not in the input) has its
waiting records written as a sorted run of fixed-size entries to a temporary file, merged in seq order at
the end. Any input order verifies the same, only the spilled streams more slowly. A record of a seq already
processed is compared by a keyed 8-byte fingerprint (kept in the temporary file, not in memory): the same
record is a duplicate, another one a conflict.

No OpenTelemetry SDK imports.
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import os
import struct
from collections.abc import Iterator
from typing import Any

from otel_audit.errors import InputError

WINDOW_ENV = "OTEL_AUDIT_VERIFY_WINDOW"
DEFAULT_WINDOW = 100_000  # records waiting in memory over all streams (~35 MB)
#: one spilled record: seq, calc, prev, digest, offset and length of its checkpoint note (-1, 0: none)
ENTRY = struct.Struct("<Q32s32s32sqI")
MAX_SPILL_SEQ = (1 << 64) - 1
FP_EXTENT = 1 << 16  # fingerprints are kept in extents of this many seqs (512 KiB)
_READ_BYTES = 1 << 20  # read buffer shared by the runs being merged


def window_size() -> int:
    """The reorder window from OTEL_AUDIT_VERIFY_WINDOW (a positive integer), else DEFAULT_WINDOW."""
    text = os.environ.get(WINDOW_ENV, "").strip()
    if not text:
        return DEFAULT_WINDOW
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise InputError(f"{WINDOW_ENV}={text!r}: the reorder window must be a positive number of records")
    return int(text)


class Scratch:
    """The verifier's temporary files (one folder, created on first use, removed by `close`): spilled runs,
    their checkpoint notes, and fingerprints of processed records."""

    def __init__(self) -> None:
        self._dir: str | None = None
        self._fds: dict[str, int] = {}
        self._sizes: dict[str, int] = {}
        self._key = os.urandom(16)  # secrets.token_bytes(16) is this; secrets (random, hmac) costs the start-up

    @property
    def key(self) -> bytes:
        """The fingerprint key of this run (the native core computes fingerprints with it too)."""
        return self._key

    def _fd(self, name: str) -> int:
        fd = self._fds.get(name)
        if fd is None:
            if self._dir is None:
                import shutil  # noqa: F401 - loaded here, with the folder, for close (also at interpreter exit)
                import tempfile  # only an archive that spills needs them: not imported at start-up

                self._dir = tempfile.mkdtemp(prefix="otel-audit-verify-")
            fd = self._fds[name] = os.open(os.path.join(self._dir, name), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            self._sizes[name] = 0
        return fd

    def _append(self, name: str, data: bytes) -> int:
        fd = self._fd(name)
        off = self._sizes[name]
        view = memoryview(data)
        while view:
            n = os.pwrite(fd, view, off + len(data) - len(view))
            view = view[n:]
        self._sizes[name] = off + len(data)
        return off

    def _read(self, name: str, n: int, off: int) -> bytes:
        fd = self._fds[name]
        out = os.pread(fd, n, off)
        while len(out) < n:
            more = os.pread(fd, n - len(out), off + len(out))
            if not more:
                raise OSError(f"temporary file {name} is shorter than written")
            out += more
        return out

    # fingerprints

    def fingerprint(self, r: tuple[bytes, bytes, bytes, Any]) -> bytes:
        """8 bytes naming one record (calc and digest determine it), keyed per run so no input can aim at one."""
        return hashlib.blake2b(r[0] + r[2], digest_size=8, key=self._key).digest()

    def save_fingerprints(self, data: bytes) -> int:
        """Store one extent (FP_EXTENT fingerprints); its offset."""
        return self._append("fingerprints", data)

    def load_fingerprint(self, off: int) -> bytes:
        return self._read("fingerprints", 8, off)

    # spilled runs

    def spill(self, entries: list[tuple[int, Any]]) -> tuple[int, int]:
        """Write records (seq, record or list of records) sorted by seq as one run; (offset, entries)."""
        pack = ENTRY.pack
        buf = bytearray()
        count = 0
        for seq, g in entries:
            for r in g if type(g) is list else (g,):
                note = r[3]
                if note is None:
                    buf += pack(seq, r[0], r[1], r[2], -1, 0)
                else:
                    raw = note.encode("utf-8", "surrogatepass")
                    buf += pack(seq, r[0], r[1], r[2], self._append("notes", raw), len(raw))
                count += 1
        return self._append("runs", bytes(buf)), count

    def _run(self, off: int, count: int, chunk: int) -> Iterator[tuple[int, tuple[bytes, bytes, bytes, Any]]]:
        size = ENTRY.size
        unpack = ENTRY.iter_unpack
        done = 0
        while done < count:
            n = min(chunk, count - done)
            for seq, calc, prev, dig, noff, nlen in unpack(self._read("runs", n * size, off + done * size)):
                note = None if noff < 0 else self._read("notes", nlen, noff).decode("utf-8", "surrogatepass")
                yield seq, (calc, prev, dig, note)
            done += n

    def merge(self, runs: list[tuple[int, int]],
              tail: list[tuple[int, Any]]) -> Iterator[tuple[int, tuple[bytes, bytes, bytes, Any]]]:
        """The records of `runs` and of the sorted in-memory `tail` in seq order; at one seq, in arrival order
        (earlier runs first; heapq.merge keeps the order of its inputs on ties)."""
        chunk = max(16, _READ_BYTES // ENTRY.size // max(1, len(runs)))

        def flat() -> Iterator[tuple[int, Any]]:
            for seq, g in tail:
                for r in g if type(g) is list else (g,):
                    yield seq, r

        its = [self._run(off, n, chunk) for off, n in runs] + [flat()]
        return heapq.merge(*its, key=lambda e: e[0])

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        if self._dir is not None:
            import shutil  # imported by _fd with the folder

            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown
            self.close()
