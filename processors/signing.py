"""The signing processor: stream id, seq, chained digest, Merkle leaf, signed checkpoints.

Put it after redaction and in front of delivery:

    provider.add_log_record_processor(RedactionProcessor(...))
    provider.add_log_record_processor(
        SigningProcessor("keys/", downstream=BatchLogRecordProcessor(exporter), state_dir="state/"))

It owns its downstream processors because checkpoints are records too: they must travel every
path the events travel, so the processor hands both to the same downstream.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.sdk._logs import LogRecordProcessor, ReadWriteLogRecord
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from otel_audit import canonical
from otel_audit.canonical import CHECKPOINT_EVENT, DIGEST, PREV_DIGEST, RECORD, STREAM_ID, STREAM_SEQ
from otel_audit.errors import ConfigError, DeliveryError, KeyringError
from otel_audit.keys import KEYRING_FILE, Signer
from otel_audit.merkle import CompactRange
from otel_audit.note import Checkpoint, Predecessor, format_note

_log = logging.getLogger(__name__)
_sha256 = hashlib.sha256
ZERO = bytes(32)
FOREIGN_CHECKPOINT_EVENT = "audit.checkpoint.foreign"
GAP_EVENT = canonical.GAP_EVENT
SCOPE = InstrumentationScope("otel_audit.signing", None)
_IKEYS = canonical.INTEGRITY_KEYS
_PLAIN = frozenset({str, int, bool})
_dumps = orjson.dumps
_SORT = orjson.OPT_SORT_KEYS
_PRODUCER_KEYS = ("service.name", "service.namespace", "service.instance.id", "service.version", "host.name")


class StreamState:
    """The chain state a restart needs, kept in `state_dir/state.json` under an exclusive lock."""

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.dir = Path(state_dir)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._lock_fh = open(self.dir / "lock", "a+b")  # noqa: SIM115 - held for the process lifetime
        except OSError as exc:
            raise ConfigError(f"state_dir {self.dir}: cannot create or open: {exc.strerror}") from exc
        try:
            fcntl.flock(self._lock_fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self._lock_fh.close()
            raise ConfigError(
                f"state_dir {self.dir}: another process holds it; give each producer process its own state_dir"
            ) from exc
        self.path = self.dir / "state.json"

    def read(self) -> Predecessor | None:
        if not self.path.exists():
            return None
        try:
            doc = orjson.loads(self.path.read_bytes())
            return Predecessor(
                doc["stream_id"], int(doc["size"]), bytes.fromhex(doc["root"]), bytes.fromhex(doc["chain"]),
                bool(doc["closed"]),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            _log.error("state file %s is unreadable (%s); the new stream will not name a predecessor", self.path, exc)
            return None

    def write(self, state: Predecessor, *, sync: bool) -> None:
        doc = {"stream_id": state.stream_id, "size": state.size, "root": state.root.hex(),
               "chain": state.chain.hex(), "closed": state.closed, "updated_ns": time.time_ns()}
        tmp = self.path.with_suffix(".tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(orjson.dumps(doc))
                if sync:
                    fh.flush()
                    os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            _log.error("cannot persist chain state to %s: %s", self.path, exc.strerror)

    def close(self) -> None:
        try:
            fcntl.flock(self._lock_fh, fcntl.LOCK_UN)
        finally:
            self._lock_fh.close()


class _KeySource:
    """A signer, reloaded from its keys folder when the keyring changes (rotation)."""

    def __init__(self, signer: Signer | str | os.PathLike[str], key_name: str | None) -> None:
        if isinstance(signer, Signer):
            self.dir: Path | None = None
            self.signer = signer
        else:
            self.dir = Path(signer)
            self.signer = Signer.from_keys_dir(self.dir, key_name)
        self._key_name = key_name
        self._mtime = self._stat()

    def _stat(self) -> float:
        if self.dir is None:
            return 0.0
        try:
            return (self.dir / KEYRING_FILE).stat().st_mtime
        except OSError:
            return 0.0

    def current(self) -> Signer:
        if self.dir is not None:
            mtime = self._stat()
            if mtime != self._mtime:
                self._mtime = mtime
                try:
                    new = Signer.from_keys_dir(self.dir, self._key_name)
                    if new.key_id != self.signer.key_id:
                        _log.info("signing key changed from %s to %s", self.signer.name, new.name)
                    self.signer = new
                except KeyringError as exc:
                    _log.error("keyring changed but cannot be loaded (%s); still signing with %s", exc, self.signer.name)
        return self.signer


class SigningProcessor(LogRecordProcessor):
    """Chains every record of this process into one stream and seals it with signed checkpoints.

    Args:
        signer: a `Signer`, or a keys folder (the newest valid key is used, reloaded on rotation).
        downstream: the processor(s) that receive the signed records and the checkpoints.
        checkpoint_every: a checkpoint after this many records.
        checkpoint_interval: seconds; a checkpoint at least this often, a heartbeat when idle.
        state_dir: where the chain state lives so that a restart names the previous stream.
        origin: the checkpoint origin prefix; the stream id is appended.
        resource: the producer's resource, named in checkpoints (default: the SDK default).
    """

    def __init__(
        self,
        signer: Signer | str | os.PathLike[str],
        *,
        downstream: LogRecordProcessor | Sequence[LogRecordProcessor],
        checkpoint_every: int = 1000,
        checkpoint_interval: float = 5.0,
        state_dir: str | os.PathLike[str] | None = None,
        origin: str = "otel-audit",
        resource: Resource | None = None,
        key_name: str | None = None,
        embed_record: bool = False,
    ) -> None:
        if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be a positive integer, got {checkpoint_every!r}")
        if not isinstance(checkpoint_interval, (int, float)) or not checkpoint_interval > 0:
            raise ValueError(f"checkpoint_interval must be a positive number of seconds, got {checkpoint_interval!r}")
        if not isinstance(origin, str) or not origin or any(c.isspace() for c in origin):
            raise ValueError(f"origin must be a non-empty string without spaces, got {origin!r}")
        self._downstream: tuple[LogRecordProcessor, ...] = (
            (downstream,) if isinstance(downstream, LogRecordProcessor) else tuple(downstream)
        )
        if not self._downstream or not all(isinstance(p, LogRecordProcessor) for p in self._downstream):
            raise ValueError("downstream must be one LogRecordProcessor or a non-empty sequence of them")
        self._single = self._downstream[0].on_emit if len(self._downstream) == 1 else None
        self._keys = _KeySource(signer, key_name)
        self._every = checkpoint_every
        # carry the canonical content as an attribute, so that a backend that flattens or retypes
        # attributes (or drops the event name) still holds what the digest was computed over
        self._embed = bool(embed_record)
        self._interval = float(checkpoint_interval)
        self._resource = resource if resource is not None else Resource.create({})
        self.stream_id = secrets.token_hex(16)
        self._origin = f"{origin}/{self.stream_id}"
        self._head = canonical.prefix(self.stream_id, 0)[:-2]  # '["v1","<stream>",' ; seq follows
        self._producer = self._producer_of(self._resource)
        self._lock = threading.Lock()
        self._seq = 0
        self._prev = ZERO
        self._prev_hex = ZERO.hex()
        self._pending: list[bytes] = []  # digests (Merkle leaves) not yet folded into the tree
        self._unsealed = 0  # events since the last checkpoint
        self._tree = CompactRange()
        self._last_cp = time.monotonic()
        self._shutdown = False
        self.dropped = 0  # records a downstream raised on; logged loudly as well
        self.refused = 0  # records delivery refused (fail_closed); the caller got DeliveryError
        self._gap_lock = threading.Lock()
        self._gaps: list[tuple[int, str, str]] = []
        self._sealed: tuple[int, bytes, bytes] = (0, b"", ZERO)
        self._state = StreamState(state_dir) if state_dir is not None else None
        prev = self._state.read() if self._state else None
        try:
            self._emit_checkpoint("start", prev=prev)
        except BaseException:
            if self._state is not None:
                self._state.close()
            raise
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, name="otel-audit-checkpoints", daemon=True)
        self._thread.start()

    @staticmethod
    def _producer_of(resource: Resource) -> dict[str, Any]:
        attrs = resource.attributes
        out: dict[str, Any] = {k: attrs[k] for k in _PRODUCER_KEYS if k in attrs}
        out.setdefault("host.name", socket.gethostname())
        out["process.pid"] = os.getpid()
        return out

    # -- the hot path -------------------------------------------------------------------------

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        lr = log_record.log_record
        ts = lr.timestamp
        if ts is None:
            ts = lr.timestamp = lr.observed_timestamp or time.time_ns()
        attrs = lr.attributes
        try:
            d = attrs._dict  # type: ignore[union-attr]  # BoundedAttributes: write past its limits
        except AttributeError:
            d = attrs if isinstance(attrs, dict) else dict(attrs or {})
            lr.attributes = d
        if not _IKEYS.isdisjoint(d):
            _log.warning("record %r set integrity attributes itself; they are replaced", lr.event_name)
            for k in _IKEYS:
                d.pop(k, None)
        if lr.event_name == CHECKPOINT_EVENT:
            # Only this processor makes checkpoints; a caller's record must not pass for one.
            _log.warning("a caller emitted event_name %r, which is reserved; renamed to %r",
                         CHECKPOINT_EVENT, FOREIGN_CHECKPOINT_EVENT)
            lr.event_name = FOREIGN_CHECKPOINT_EVENT
        sev = lr.severity_number
        body = lr.body
        types = set(map(type, d.values()))
        if (body is None or type(body) is str) and types <= _PLAIN and (int not in types or canonical.ints_fit(d)):
            try:
                content = _dumps(
                    [lr.event_name or "", str(ts), sev._value_ if sev is not None else 0, lr.severity_text or "", body, d],
                    option=_SORT,
                )
            except (TypeError, orjson.JSONEncodeError):
                content = self._content_slow(lr, d)
        else:
            content = self._content_slow(lr, d)
        with self._lock:
            seq = self._seq
            self._seq = seq + 1
            prev_hex = self._prev_hex
            digest = _sha256(b"\x00" + self._prev + self._head + str(seq).encode() + b"," + content[1:]).digest()
            self._prev = digest
            self._prev_hex = digest_hex = digest.hex()
            self._pending.append(digest)
            unsealed = self._unsealed + 1
            self._unsealed = unsealed
            due = unsealed >= self._every
        d[STREAM_ID] = self.stream_id
        d[STREAM_SEQ] = seq
        d[PREV_DIGEST] = prev_hex
        d[DIGEST] = digest_hex
        if self._embed:
            d[RECORD] = content.decode("utf-8")
        if self._single is not None:
            try:
                self._single(log_record)
            except DeliveryError:
                self._refused(seq)
                raise  # fail closed: the caller learns its audit record was refused
            except Exception:
                self._lost(self._downstream[0], seq)
        else:
            self._forward(log_record, seq)
        if due:
            self._emit_checkpoint("size")

    def _content_slow(self, lr: Any, d: dict[str, Any]) -> bytes:
        sev = lr.severity_number
        try:
            return canonical.content_bytes(
                lr.event_name, lr.timestamp, sev.value if sev is not None else 0, lr.severity_text, lr.body, d
            )
        except canonical.CanonicalError as exc:
            # Never drop an audit record: sign a safe stand-in and say so loudly.
            _log.error("audit record %r cannot be canonicalized (%s); unsignable values are replaced",
                       lr.event_name, exc)
            try:
                canonical.encode_value(lr.body)
                canonical.content_bytes(None, None, None, None, lr.body, None)
            except canonical.CanonicalError:
                lr.body = f"[otel-audit: unsignable body replaced: {exc}]"
            for k in list(d):
                try:
                    canonical.content_bytes(None, None, None, None, None, {k: d[k]})
                except canonical.CanonicalError:
                    d[k] = "[otel-audit: unsignable value replaced]"
            return canonical.content_bytes(
                lr.event_name, lr.timestamp, sev.value if sev is not None else 0, lr.severity_text, lr.body, d
            )

    def _lost(self, p: LogRecordProcessor, seq: int) -> None:
        self.dropped += 1
        _log.exception("downstream %s failed on audit record seq %s; %d lost so far", type(p).__name__, seq, self.dropped)

    def _forward(self, record: ReadWriteLogRecord, seq: int | None = None) -> None:
        refused: DeliveryError | None = None
        for p in self._downstream:
            try:
                p.on_emit(record)
            except DeliveryError as exc:
                refused = exc
            except Exception:  # a broken downstream must not silence the others
                self._lost(p, record.log_record.attributes.get(STREAM_SEQ))
        if refused is not None:
            self._refused(record.log_record.attributes.get(STREAM_SEQ))
            if seq is not None:
                raise refused

    def _refused(self, seq: Any) -> None:
        self.refused += 1
        _log.error("audit record seq %s was refused by delivery (fail_closed); %d refused so far", seq, self.refused)

    # -- checkpoints ------------------------------------------------------------------------------

    def _emit_checkpoint(self, kind: str, prev: Predecessor | None = None) -> None:
        self._emit_gap_marker()
        now = time.time_ns()
        signer = self._keys.current()
        end = kind == "end"

        def seal(seq: int) -> tuple[str, dict[str, Any]]:
            # called under the lock: the checkpoint commits to every record before it
            if self._pending:
                self._tree.extend(self._pending)
                self._pending = []
            self._sealed = (seq, self._tree.root(), self._prev)
            cp = Checkpoint(self._origin, seq, self._sealed[1], self._prev, now, kind, self._producer, prev, end)
            body = cp.body()
            note = format_note(body, [signer.sign(body.encode("utf-8"))])
            return note, {
                "audit.category": "integrity",
                "audit.action": "checkpoint",
                "audit.outcome": "success",
                "audit.checkpoint.kind": kind,
                "audit.checkpoint.size": seq,
                "audit.checkpoint.key": signer.name,
            }

        self._emit_internal(CHECKPOINT_EVENT, now, seal, checkpoint=True)
        if self._state is not None:
            size, root, chain = self._sealed
            self._state.write(Predecessor(self.stream_id, size, root, chain, end), sync=kind in ("start", "end"))

    def _emit_internal(
        self, event: str, now: int, make: Any, *, checkpoint: bool = False
    ) -> None:
        """Chain a record of our own (checkpoint, gap marker); `make(seq)` gives its body and attributes."""
        with self._lock:
            seq = self._seq
            body, attributes = make(seq)
            content = canonical.content_bytes(event, now, SeverityNumber.INFO.value, "INFO", body, attributes)
            self._seq = seq + 1
            prev = self._prev
            digest = canonical.record_digest(prev, canonical.join(self.stream_id, seq, content))
            self._prev = digest
            self._prev_hex = digest.hex()
            self._pending.append(digest)
            if checkpoint:
                self._unsealed = 0
                self._last_cp = time.monotonic()
            else:
                self._unsealed += 1
        attributes[STREAM_ID] = self.stream_id
        attributes[STREAM_SEQ] = seq
        attributes[PREV_DIGEST] = prev.hex()
        attributes[DIGEST] = digest.hex()
        if self._embed:
            attributes[RECORD] = content.decode("utf-8")
        record = ReadWriteLogRecord(
            LogRecord(
                timestamp=now,
                observed_timestamp=now,
                severity_number=SeverityNumber.INFO,
                severity_text="INFO",
                body=body,
                attributes=attributes,
                event_name=event,
            ),
            resource=self._resource,
            instrumentation_scope=SCOPE,
        )
        self._forward(record)

    # -- gaps: records a downstream had to drop (a full spool in fail_open mode) -------------------

    def record_gap(self, stream_id: str, seq: int, prev_hex: str, digest_hex: str) -> None:
        """A downstream dropped record `seq`; a signed audit.gap marker will name it and carry the
        chain link across it, so that the records before the gap stay provable."""
        if stream_id != self.stream_id:
            return
        with self._gap_lock:
            self._gaps.append((seq, prev_hex, digest_hex))

    def _emit_gap_marker(self) -> None:
        with self._gap_lock:
            gaps, self._gaps = sorted(self._gaps), []
        if not gaps:
            return
        seqs = [g[0] for g in gaps]
        runs: list[list[Any]] = []  # [first, last, prev of first, digest of last]
        for q, prev_hex, digest_hex in gaps:
            if runs and runs[-1][1] == q - 1:
                runs[-1][1] = q
                runs[-1][3] = digest_hex
            else:
                runs.append([q, q, prev_hex, digest_hex])
        text = ",".join(str(a) if a == b else f"{a}-{b}" for a, b, _, _ in runs)
        chain = ";".join(f"{a}-{b}:{p}:{d}" for a, b, p, d in runs)
        _log.error("audit stream %s: %d record(s) were dropped downstream (seq %s); sealing a gap marker",
                   self.stream_id, len(seqs), text)
        self._emit_internal(GAP_EVENT, time.time_ns(), lambda seq: (
            f"{len(seqs)} audit record(s) of this stream were dropped by a full delivery spool (fail_open)",
            {"audit.category": "integrity", "audit.action": "gap", "audit.outcome": "failure",
             "audit.gap.seqs": text, "audit.gap.chain": chain, "audit.gap.count": len(seqs),
             "audit.reason": "delivery spool full"},
        ))

    def _tick(self) -> None:
        while not self._stop.wait(min(self._interval, 1.0)):
            if time.monotonic() - self._last_cp >= self._interval:
                busy = self._unsealed > 0
                try:
                    self._emit_checkpoint("time" if busy else "heartbeat")
                except Exception:
                    _log.exception("periodic checkpoint failed")

    # -- lifecycle ------------------------------------------------------------------------------

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        deadline = time.monotonic() + timeout_millis / 1000
        if self._unsealed and not self._shutdown:
            self._emit_checkpoint("flush")
        ok = True
        for p in self._downstream:
            remaining = max(0, int((deadline - time.monotonic()) * 1000))
            ok = p.force_flush(remaining) and ok
        return ok

    def shutdown(self) -> None:
        if self._shutdown:
            return
        self._stop.set()
        self._thread.join(timeout=5)
        self._emit_checkpoint("end")
        self._shutdown = True
        for p in self._downstream:
            try:
                p.shutdown()
            except Exception:
                _log.exception("downstream %s failed to shut down", type(p).__name__)
        if self._state is not None:
            self._state.close()

    @property
    def seq(self) -> int:
        """How many records (events and checkpoints) this stream holds so far."""
        return self._seq


__all__ = ["SigningProcessor", "StreamState"]
