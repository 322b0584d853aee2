"""The signing processor: stream id, seq, chained digest, Merkle leaf, signed checkpoints.

Put it after redaction and in front of delivery:

    provider.add_log_record_processor(RedactionProcessor(...))
    provider.add_log_record_processor(
        SigningProcessor("keys/", downstream=BatchLogRecordProcessor(exporter), state_dir="state/"))

It owns its downstream processors because checkpoints are records too: they must travel every
path the events travel, so the processor hands both to the same downstream.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import inspect
import logging
import os
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any, TypeGuard

import orjson
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.sdk._logs import LogRecordProcessor, ReadWriteLogRecord
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from otel_audit import canonical, lifecycle
from otel_audit._native import function as _native_function
from otel_audit._sdk_compat import severity_int, unlimited_limits, writable_attributes
from otel_audit.canonical import CHECKPOINT_EVENT, DIGEST, PREV_DIGEST, RECORD, STREAM_ID, STREAM_SEQ
from otel_audit.errors import ConfigError, DeliveryError, KeyringError
from otel_audit.filemodes import open_new
from otel_audit.keys import KEYRING_FILE, PRIVATE_DIR, Keyring, Signer
from otel_audit.merkle import CompactRange
from otel_audit.note import Checkpoint, Parent, Predecessor, format_note
from otel_audit.slots import MAX_SLOTS, claim_slot

_log = logging.getLogger(__name__)
_pending = lifecycle.pending  # the same list object: deferred signals
_sha256 = hashlib.sha256
ZERO = bytes(32)
FOREIGN_CHECKPOINT_EVENT = "audit.checkpoint.foreign"
SIGNED_BY = canonical.SIGNED_BY
SIGNED_BY_CLAIMED = "audit.signed_by.claimed"
GAP_EVENT = canonical.GAP_EVENT
DROP_EVENT = "audit.spool.backlog_dropped"
SCOPE = InstrumentationScope("otel_audit.signing", None)
# Our own records (checkpoints, gap markers) are signed before they are built: the SDK's attribute limits
# (OTEL_ATTRIBUTE_*_LIMIT, OTEL_LOGRECORD_ATTRIBUTE_*_LIMIT) must not drop or truncate what was signed.
_NO_LIMITS = unlimited_limits()
_IKEYS = canonical.INTEGRITY_KEYS
_PLAIN = frozenset({str, int, bool})
_EXACT = frozenset({str, int, bool, float, bytes, type(None)})


def _signable_text(x: Any) -> Any:
    """A str that is not valid Unicode (a lone surrogate) with its surrogates written as \\udXXX; else x."""
    if type(x) is str:
        try:
            x.encode("utf-8")
        except UnicodeEncodeError:
            return x.encode("utf-8", "backslashreplace").decode("utf-8")
    return x


def _plain_value(v: Any, depth: int = 0) -> Any:
    """An AnyValue with every subclass of str, int, bool, float or bytes (at any depth) replaced by its plain
    value (`v` itself when there is none): the canonical form and the exporters then read the same value."""
    t = type(v)
    if t in _EXACT or depth > canonical.MAX_DEPTH + 1:
        return v
    if isinstance(v, bool):
        return bool(v)
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        return float(v)
    if isinstance(v, str):
        return str.__str__(v)  # the characters it holds, not what a __str__ of its own (an Enum's) says
    if isinstance(v, (bytearray, memoryview, bytes)):
        return bytes(v)
    if isinstance(v, (list, tuple)):
        items = [_plain_value(x, depth + 1) for x in v]
        if all(a is b for a, b in zip(items, v, strict=True)):
            return v
        return items if isinstance(v, list) else tuple(items)
    if isinstance(v, Mapping):
        pairs = [((_plain_value(k, depth + 1) if isinstance(k, str) else k), _plain_value(x, depth + 1))
                 for k, x in v.items()]
        if type(v) is dict and all(a is k and b is x for (a, b), (k, x) in zip(pairs, v.items(), strict=True)):
            return v
        return dict(pairs)
    return v
_dumps = orjson.dumps
_SORT = orjson.OPT_SORT_KEYS
_PRODUCER_KEYS = ("service.name", "service.namespace", "service.instance.id", "service.version", "host.name")
# why records are missing, as a gap marker's audit.gap.reason says it
REASON_SPOOL_FULL = "dropped by a full delivery spool (fail_open)"
REASON_REFUSED = "refused by delivery (DeliveryError: a full spool or disk, or a record it cannot hold)"
REASON_INTERRUPTED = "interrupted while being handed on (the process was stopping)"


STATE_FILE = "state.json"


class StreamState:
    """The chain state a restart needs, kept in `state.json` under an exclusive lock (flock).

    Private: folders made here are 0700, `state.json` and `lock` 0600 whatever the umask
    (otel_audit.filemodes); a `state_dir` that exists keeps its mode.

    Several producer processes may share one configured `state_dir` (gunicorn or uvicorn
    workers, a forked child): the first takes `state_dir` itself, each other one the first free
    slot `state_dir/worker-<k>` (k = 1 ... MAX_SLOTS), each with its own lock and state file, so
    that each keeps its own lineage of streams.
    """

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.base = Path(state_dir)
        self.dir, self._lock_fh, self.slot, used = claim_slot(self.base, "state_dir")
        self.used_before = used or (self.dir / STATE_FILE).exists()
        self.path = self.dir / STATE_FILE
        self.last_key: tuple[str, str] | None = None  # (name, hex key id) that signed the previous stream

    @staticmethod
    def _checksum(doc: dict[str, Any]) -> str:
        return "sha256:" + _sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()

    def read(self) -> Predecessor | None:
        """The previous stream of this slot, or None (first start; a missing or damaged file is logged)."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            if self.used_before:
                _log.warning(
                    "chain state file %s is missing although %s was used before (its lock file exists); "
                    "the new stream will not name a predecessor, so a verifier cannot link it to the last one",
                    self.path, self.dir)
            return None
        except OSError as exc:
            _log.error("chain state file %s cannot be read (%s); the new stream will not name a predecessor",
                       self.path, exc.strerror)
            return None
        try:
            doc = orjson.loads(raw)
            if not isinstance(doc, dict):
                raise ValueError("not a JSON object")
            checksum = doc.pop("checksum", None)  # files written before the checksum have none
            if checksum is not None and checksum != self._checksum(doc):
                raise ValueError("checksum does not match its content")
            prev = Predecessor(
                doc["stream_id"], int(doc["size"]), bytes.fromhex(doc["root"]), bytes.fromhex(doc["chain"]),
                bool(doc["closed"]),
            )
            if len(prev.root) != 32 or len(prev.chain) != 32 or not isinstance(prev.stream_id, str):
                raise ValueError("a digest is not 32 bytes")
            key, kid = doc.get("key"), doc.get("key_id")  # files written before key handovers have none
            self.last_key = (key, kid) if isinstance(key, str) and isinstance(kid, str) else None
            return prev
        except (ValueError, KeyError, TypeError) as exc:
            keep = self.path.with_name(f"{STATE_FILE}.damaged-{time.time_ns()}")
            try:
                os.replace(self.path, keep)
            except OSError:
                keep = self.path
            _log.error("chain state file %s is damaged (%s; kept as %s); the new stream will not name a predecessor",
                       self.path, exc, keep)
            return None

    def write(self, state: Predecessor, *, sync: bool, key: Signer | None = None) -> None:
        doc: dict[str, Any] = {"stream_id": state.stream_id, "size": state.size, "root": state.root.hex(),
                               "chain": state.chain.hex(), "closed": state.closed, "updated_ns": time.time_ns()}
        if key is not None:  # which key signed it: the next stream's start is a handover if that changes
            doc["key"], doc["key_id"] = key.name, key.key_id.hex()
        doc["checksum"] = self._checksum(doc)
        tmp = self.path.with_suffix(".tmp")
        try:
            with os.fdopen(open_new(tmp), "wb") as fh:  # 0600 whatever the umask, before the rename
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

    def abandon(self) -> None:
        """In a fork child: close the inherited descriptor. Never LOCK_UN it: the lock belongs to the
        open file the parent shares, and unlocking would release the parent's lock."""
        with contextlib.suppress(OSError):
            self._lock_fh.close()


class _KeySource:
    """A signer, reloaded from its keys folder when the keyring changes (rotation).

    At a key change the first checkpoint under the new key is cosigned by the old one, while the
    old key is still valid (its grace period) and its private file is still there: a verifier sees
    the handover signed by both. The start checkpoint of a stream whose predecessor (named by the
    state file) was signed by another key is cosigned in the same way.
    """

    def __init__(self, signer: Signer | str | os.PathLike[str], key_name: str | None) -> None:
        if isinstance(signer, Signer):
            self.dir: Path | None = None
            self.signer = signer
        else:
            self.dir = Path(signer)
            self.signer = Signer.from_keys_dir(self.dir, key_name)
        self._key_name = key_name
        self._mtime = self._stat()
        self._cosigner: Signer | None = None

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
                        old = self.signer
                        # the cosigner first: whoever sees the new signer sees it too
                        self._cosigner = old if self._may_cosign(old) else None
                        _log.info("signing key changed from %s to %s%s", old.name, new.name,
                                  "; the next checkpoint is signed by both" if self._cosigner else "")
                    self.signer = new
                except KeyringError as exc:
                    _log.error("keyring changed but cannot be loaded (%s); still signing with %s", exc,
                               self.signer.name)
        return self.signer

    def signers(self) -> list[Signer]:
        """Who signs the next checkpoint: the current key, and right after a key change the one before it.

        No file access and no logging: called under the stream's lock (current() reloads, outside it)."""
        signer = self.signer
        co, self._cosigner = self._cosigner, None
        if co is not None and co.key_id != signer.key_id:
            return [signer, co]
        return [signer]

    def handover_from(self, name: str, kid_hex: str) -> None:
        """The previous stream was signed by key (name, id): if that is another key, still valid and at hand,
        it cosigns the next checkpoint (the new stream's start)."""
        if self.dir is None or (name == self.signer.name and kid_hex == self.signer.key_id.hex()):
            return
        try:
            old = Signer.from_keys_dir(self.dir, name)
        except KeyringError:
            return  # that key is gone: nothing to cosign with
        if old.key_id.hex() == kid_hex and self._may_cosign(old):
            self._cosigner = old

    def _may_cosign(self, old: Signer) -> bool:
        """Is the old key still valid now in the keyring, and its private key file still there?"""
        if self.dir is None or not (self.dir / PRIVATE_DIR / f"{old.name}.pem").is_file():
            return False
        try:
            entry = Keyring.load(self.dir / KEYRING_FILE).lookup(old.name, old.key_id)
        except KeyringError:
            return False
        return entry is not None and entry.public_key == old.public_key and entry.valid_at(time.time_ns())


class SigningProcessor(LogRecordProcessor):
    """Chains every record of this process into one stream and seals it with signed checkpoints.

    Args:
        signer: a `Signer`, or a keys folder (the newest valid key is used, reloaded on rotation).
        downstream: the processor(s) that receive the signed records and the checkpoints.
        checkpoint_every: a checkpoint after this many records.
        checkpoint_interval: seconds; a checkpoint at least this often, a heartbeat when idle.
        state_dir: where the chain state lives so that a restart names the previous stream.
        origin: the checkpoint origin prefix; the stream id is appended.
        resource: the producer's resource: the checkpoints and gap markers are exported under it and name it
            (`producer` line); with a redaction processor, its `redact_resource` of the provider's resource
            (default: the SDK default).
        handle_signals: seal the stream on SIGTERM/SIGINT and at interpreter exit without a handler
            of the application's (otel_audit.lifecycle); the signal handlers are installed once per
            process, from the main thread, chaining to the ones already there.

    After `os.fork()` the child starts its own stream (new id, seq from 0) whose start checkpoint
    names the parent's stream; it takes its own state slot and never touches the parent's lock.
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
        handle_signals: bool = True,
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
        self._interval_ns = max(1, round(self._interval * 1e9))  # declared in every checkpoint (liveness)
        self._resource = resource if resource is not None else Resource.create({})
        self._origin_prefix = origin
        self._new_stream()
        self._shutdown = False  # set under the lock when the end checkpoint takes its seq
        self._closing = False  # shutdown() has begun
        self.dropped = 0  # records a downstream raised on; logged loudly as well
        self.refused = 0  # records delivery refused (fail_closed); the caller got DeliveryError
        self._state = StreamState(state_dir) if state_dir is not None else None
        prev = self._read_state()
        try:
            self._emit_checkpoint("start", prev=prev)
        except BaseException:
            if self._state is not None:
                self._state.close()
            raise
        # a delivery spool downstream tells this stream what it dropped, had rejected or found destroyed,
        # so that signed gap markers declare it: wire it (after the start checkpoint, which is seq 0)
        # unless the caller did
        for p in self._downstream:
            for attr, fn in (("on_drop", self.record_gap), ("on_reject", self.record_rejected),
                             ("on_lost", self.record_lost)):
                if hasattr(p, attr) and getattr(p, attr) is None:
                    setattr(p, attr, fn)
        for p in self._downstream:
            take = getattr(p, "take_notices", None)
            if callable(take):
                for notice in take():
                    self._sign_drop_notice(notice)
        self._start_ticker()
        lifecycle.after_fork_in_child(self)
        lifecycle.register(self, handle_signals=handle_signals)

    def _new_stream(self) -> None:
        """A fresh stream: random id, seq from 0, empty tree, fresh locks."""
        self.stream_id = secrets.token_hex(16)
        self._origin = f"{self._origin_prefix}/{self.stream_id}"
        self._head = canonical.prefix(self.stream_id, 0)[:-2]  # '["v1","<stream>",' ; seq follows
        _native_function("sign_into")  # OTEL_AUDIT_NATIVE decided now: a bad value is a ConfigError here, not at emit
        self._producer = self._producer_of(self._resource)
        self._lock = threading.Lock()
        self._seq = 0
        self._prev = ZERO
        self._prev_hex = ZERO.hex()
        self._pending: list[bytes] = []  # digests (Merkle leaves) not yet folded into the tree
        self._unsealed = 0  # events since the last checkpoint
        self._tree = CompactRange()
        self._last_cp = time.monotonic()
        self._gap_lock = threading.Lock()
        # records a downstream did not take: (stream, "" for this one; first seq; last seq; prev hex of the
        # first; digest hex of the last; reason; destination)
        self._gaps: list[tuple[str, int, int, str, str, str, str]] = []
        self._sealed: tuple[int, bytes, bytes] = (0, b"", ZERO)

    def _start_ticker(self) -> None:
        self._stop = threading.Event()
        self._thread = lifecycle.background_thread(self._tick, name="otel-audit-checkpoints")
        self._thread.start()

    def _after_fork_in_child(self) -> None:
        """In a fork child: a stream of its own, naming the parent's stream and last checkpoint."""
        if self._shutdown or self._closing:
            self._lock = threading.Lock()
            self._gap_lock = threading.Lock()
            return
        size, root, chain = self._sealed
        parent = Parent(self.stream_id, size, root, chain) if len(root) == 32 else None
        parent_id = self.stream_id
        if self._state is not None:
            inherited, self._state = self._state, None
            inherited.abandon()
            try:
                self._state = StreamState(inherited.base)
            except ConfigError as exc:
                _log.error("forked child %s: %s; its stream will not be linked to a restart", os.getpid(), exc)
        self._new_stream()
        self.dropped = 0
        self.refused = 0
        try:
            prev = self._read_state()
            self._emit_checkpoint("start", prev=prev, parent=parent)
        except Exception:  # noqa: BLE001 - an at-fork hook must not raise
            _log.exception("forked child %s: the start checkpoint of its stream failed", os.getpid())
        _log.info("forked child %s: audit stream %s, child of stream %s", os.getpid(), self.stream_id, parent_id)
        self._start_ticker()

    def _read_state(self) -> Predecessor | None:
        """The previous stream of this state slot; when another key signed it, the start checkpoint is a
        handover the old key cosigns (if it is still valid and its private file is there)."""
        if self._state is None:
            return None
        prev = self._state.read()
        if prev is not None and self._state.last_key is not None:
            self._keys.handover_from(*self._state.last_key)
        return prev

    @staticmethod
    def _producer_of(resource: Resource) -> dict[str, Any]:
        attrs = resource.attributes
        out: dict[str, Any] = {k: attrs[k] for k in _PRODUCER_KEYS if k in attrs}
        out.setdefault("host.name", socket.gethostname())
        out["process.pid"] = os.getpid()
        return out

    # -- the hot path -------------------------------------------------------------------------

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        self._on_emit(log_record)
        if _pending:  # a SIGTERM/SIGINT arrived while this record was being numbered and handed on
            lifecycle.deliver_pending(sys._getframe())

    def _on_emit(self, log_record: ReadWriteLogRecord) -> None:
        lr = log_record.log_record
        ts = lr.timestamp
        if ts is None:
            ts = lr.timestamp = lr.observed_timestamp or time.time_ns()
        d = writable_attributes(lr)  # past the SDK's limits: integrity attributes are never truncated
        if not _IKEYS.isdisjoint(d):
            _log.warning("record %r set integrity attributes itself; they are replaced", lr.event_name)
            for k in _IKEYS:
                d.pop(k, None)
        if SIGNED_BY in d:
            # Only the audit service writes it, on the records it signs at ingest; a record signed here must not
            # claim that (the service refuses one that does): kept under another name.
            _log.warning("record %r set %s itself, which only the audit service writes; renamed to %s",
                         lr.event_name, SIGNED_BY, SIGNED_BY_CLAIMED)
            d[SIGNED_BY_CLAIMED] = d.pop(SIGNED_BY)
        if lr.event_name == CHECKPOINT_EVENT:
            # Only this processor makes checkpoints; a caller's record must not pass for one.
            _log.warning("a caller emitted event_name %r, which is reserved; renamed to %r",
                         CHECKPOINT_EVENT, FOREIGN_CHECKPOINT_EVENT)
            lr.event_name = FOREIGN_CHECKPOINT_EVENT
        sev = lr.severity_number
        body = lr.body
        native = _native_function("sign_into")
        if native is not None and (body is None or type(body) is str):
            # one call canonicalises, hashes, chains and writes the integrity attributes; None: a value it
            # leaves to the code below (nothing written)
            with self._lock:
                if self._shutdown:
                    raise self._shut_down(lr.event_name)
                seq = self._seq
                prev_hex = self._prev_hex
                out = native(self._prev, self._head, seq, lr.event_name, ts,
                             severity_int(sev) if sev is not None else 0, lr.severity_text, body, d,
                             self.stream_id, prev_hex, self._embed)
                if out is not None:
                    digest, digest_hex = out
                    self._seq = seq + 1
                    self._prev = digest
                    self._prev_hex = digest_hex
                    self._pending.append(digest)
                    unsealed = self._unsealed + 1
                    self._unsealed = unsealed
                    due = unsealed >= self._every
            if out is not None:
                self._deliver(log_record, seq, prev_hex, digest_hex, due)
                return
        types = set(map(type, d.values()))
        if (body is None or type(body) is str) and types <= _PLAIN and (int not in types or canonical.ints_fit(d)):
            try:
                content = _dumps(
                    [
                        lr.event_name or "",
                        str(ts),
                        severity_int(sev) if sev is not None else 0,
                        lr.severity_text or "",
                        body,
                        d,
                    ],
                    option=_SORT,
                )
            except (TypeError, orjson.JSONEncodeError):
                content = self._content_slow(lr, d)
        else:
            content = self._content_slow(lr, d)
        with self._lock:
            if self._shutdown:
                raise self._shut_down(lr.event_name)
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
        self._hand_on(log_record, d, seq, prev_hex, digest_hex, content if self._embed else None, due)

    def _shut_down(self, event_name: str | None) -> DeliveryError:
        return DeliveryError(f"the audit pipeline is shut down (stream {self.stream_id} is sealed); "
                             f"audit record {event_name!r} was not accepted")

    def _hand_on(self, log_record: ReadWriteLogRecord, d: MutableMapping[str, Any], seq: int, prev_hex: str,
                 digest_hex: str, embedded: bytes | None, due: bool) -> None:
        """Write the integrity attributes of a numbered record and hand it on downstream."""
        d[STREAM_ID] = self.stream_id
        d[STREAM_SEQ] = seq
        d[PREV_DIGEST] = prev_hex
        d[DIGEST] = digest_hex
        if embedded is not None:
            d[RECORD] = embedded.decode("utf-8")
        self._deliver(log_record, seq, prev_hex, digest_hex, due)

    def _deliver(self, log_record: ReadWriteLogRecord, seq: int, prev_hex: str, digest_hex: str, due: bool) -> None:
        """Hand a numbered record (its integrity attributes written) on downstream; then a due checkpoint."""
        if self._single is not None:
            try:
                self._single(log_record)
            except DeliveryError:
                self._refused(seq, prev_hex, digest_hex)
                raise  # fail closed: the caller learns its audit record was refused
            except Exception:
                self._lost(self._downstream[0], seq, prev_hex, digest_hex)
            except BaseException:  # SystemExit / KeyboardInterrupt inside the downstream: say so, then stop
                self._add_gap(seq, seq, prev_hex, digest_hex, REASON_INTERRUPTED, "")
                raise
        else:
            self._forward(log_record, raise_refusal=True)
        if due:
            self._emit_checkpoint("size")

    def _content_slow(self, lr: Any, d: MutableMapping[str, Any]) -> bytes:
        # Values of a subclass (a str Enum, numpy.float64, a str with its own __str__) are written as their
        # plain value first: that is what exporters serialise, so it is what is signed.
        for k, v in d.items():
            plain = _plain_value(v)
            if plain is not v:
                d[k] = plain
        body = _plain_value(lr.body)
        if body is not lr.body:
            lr.body = body
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
                key = _signable_text(k)
                if key is not k:  # a key with a lone surrogate: kept, with the surrogate written as \udXXX
                    d[key] = d.pop(k)
                try:
                    canonical.content_bytes(None, None, None, None, None, {key: d[key]})
                except canonical.CanonicalError:
                    d[key] = "[otel-audit: unsignable value replaced]"
            lr.event_name = _signable_text(lr.event_name)
            lr.severity_text = _signable_text(lr.severity_text)
            return canonical.content_bytes(
                lr.event_name, lr.timestamp, sev.value if sev is not None else 0, lr.severity_text, lr.body, d
            )

    def _lost(self, p: LogRecordProcessor, seq: Any, prev_hex: Any, digest_hex: Any) -> None:
        self.dropped += 1
        _log.exception(
            "downstream %s failed on audit record seq %s; %d lost so far", type(p).__name__, seq, self.dropped
        )
        name = type(p).__name__
        self._add_gap(seq, seq, prev_hex, digest_hex, f"lost by downstream {name}, which raised", name)

    def _forward(self, record: ReadWriteLogRecord, *, raise_refusal: bool = False) -> None:
        refused: DeliveryError | None = None
        a = record.log_record.attributes  # a record signed here: never None
        link = (a.get(STREAM_SEQ), a.get(PREV_DIGEST), a.get(DIGEST))  # type: ignore[union-attr]
        for p in self._downstream:
            try:
                p.on_emit(record)
            except DeliveryError as exc:
                refused = exc
            except Exception:  # a broken downstream must not silence the others
                self._lost(p, *link)
            except BaseException:
                self._add_gap(link[0], link[0], link[1], link[2], REASON_INTERRUPTED, "")
                raise
        if refused is not None:
            self._refused(*link)
            if raise_refusal:
                raise refused

    def _refused(self, seq: Any, prev_hex: Any, digest_hex: Any) -> None:
        self.refused += 1
        _log.error("audit record seq %s was refused by delivery; %d refused so far", seq, self.refused)
        self._add_gap(seq, seq, prev_hex, digest_hex, REASON_REFUSED, "")

    # -- checkpoints ------------------------------------------------------------------------------

    def _emit_checkpoint(self, kind: str, prev: Predecessor | None = None, parent: Parent | None = None) -> None:
        self._emit_gap_marker()
        now = time.time_ns()
        self._keys.current()  # reload the keyring if it changed (rotation), outside the lock
        end = kind == "end"
        used: list[Signer] = []

        def seal(seq: int) -> tuple[str, dict[str, Any]]:
            # called under the lock: the checkpoint commits to every record before it, and the keys are taken
            # here, so that the first checkpoint (by seq) under a new key is the one the old key cosigns
            if self._pending:
                self._tree.extend(self._pending)
                self._pending = []
            self._sealed = (seq, self._tree.root(), self._prev)
            if end:
                self._shutdown = True  # nothing may take a seq after the end checkpoint
            cp = Checkpoint(self._origin, seq, self._sealed[1], self._prev, now, kind, self._producer, prev, end,
                            parent, self._interval_ns)
            body = cp.body().encode("utf-8")
            used[:] = self._keys.signers()
            note = format_note(cp.body(), [s.sign(body) for s in used])
            return note, {
                "audit.category": "integrity",
                "audit.action": "checkpoint",
                "audit.outcome": "success",
                "audit.checkpoint.kind": kind,
                "audit.checkpoint.size": seq,
                "audit.checkpoint.key": used[0].name,
            }

        self._emit_internal(CHECKPOINT_EVENT, now, seal, checkpoint=True)
        if self._state is not None:
            size, root, chain = self._sealed
            self._state.write(Predecessor(self.stream_id, size, root, chain, end), sync=kind in ("start", "end"),
                              key=used[0] if used else None)

    def _emit_internal(
        self, event: str, now: int, make: Any, *, checkpoint: bool = False
    ) -> None:
        """Chain a record of our own (checkpoint, gap marker); `make(seq)` gives its body and attributes."""
        with self._lock:
            if self._shutdown:
                raise DeliveryError(f"the audit stream {self.stream_id} is sealed; no record of its own follows")
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
            limits=_NO_LIMITS,
        )
        self._forward(record)

    def _sign_drop_notice(self, n: Mapping[str, Any]) -> None:
        """An operator gave up an exporter's backlog (`otel-audit spool drop`) while the producer was stopped:
        the new stream records who dropped what, and why, as a signed event."""
        try:
            attrs: dict[str, Any] = {
                "audit.category": "integrity", "audit.action": "delete", "audit.outcome": "success",
                "audit.actor.id": str(n["actor"]), "audit.reason": str(n["reason"]),
                "audit.spool.exporter": str(n["exporter"]), "audit.spool.records": int(n["records"]),
                "audit.spool.bytes": int(n["bytes"]), "host.name": str(n["host"]),
                "audit.spool.dropped_at": int(n["time_ns"]),
            }
        except (KeyError, TypeError, ValueError):
            _log.error("a spool drop notice cannot be read (%r); it is not signed", n)
            return
        body = f"the undelivered backlog of exporter {attrs['audit.spool.exporter']} ({attrs['audit.spool.records']} " \
               "record(s)) was dropped from the delivery spool"
        self._emit_internal(DROP_EVENT, time.time_ns(), lambda seq: (body, attrs))

    # -- gaps: records a downstream did not take, sealed into the chain ---------------------------

    def record_gap(self, stream_id: str, seq: int, prev_hex: str, digest_hex: str,
                   reason: str = REASON_SPOOL_FULL) -> None:
        """A downstream dropped record `seq`; a signed audit.gap marker will name it and carry the
        chain link across it, so that the records before the gap stay provable."""
        if stream_id != self.stream_id:
            return
        self._add_gap(seq, seq, prev_hex, digest_hex, reason, "")

    def record_rejected(self, destination: str, items: Sequence[tuple[str, int, str, str]]) -> None:
        """A destination permanently refused these records, given as (stream id, seq, prev hex,
        digest hex); a signed gap marker names them with audit.gap.reason "rejected by destination
        <name>" and audit.gap.destination. Other destinations may still hold them. Records of an
        earlier stream (replayed from the spool after a restart) are declared by this stream, in a
        marker naming theirs (audit.gap.stream)."""
        reason = f"rejected by destination {destination}"
        for stream, seq, prev_hex, digest_hex in items:
            self._add_gap(seq, seq, prev_hex, digest_hex, reason, str(destination), str(stream))

    def record_lost(self, destination: str, stream_id: str, first: int, last: int, prev_hex: str,
                    digest_hex: str) -> None:
        """Records first..last of `stream_id` were destroyed by damage to the delivery spool before they
        reached `destination`; prev_hex is the digest before `first`, digest_hex the prev digest of the
        record after `last` (read from the undamaged neighbours), so a marker can carry the chain across."""
        if type(first) is not int or type(last) is not int or not 0 <= first <= last:
            return
        self._add_gap(first, last, prev_hex, digest_hex, f"lost to damage in the delivery spool before "
                      f"destination {destination}", str(destination), str(stream_id))

    def _add_gap(self, first: Any, last: Any, prev_hex: Any, digest_hex: Any, reason: str, destination: str,
                 stream: str = "") -> None:
        if type(first) is not int or type(last) is not int or not isinstance(prev_hex, str) \
                or not isinstance(digest_hex, str):
            return
        stream = "" if stream == self.stream_id else stream
        with self._gap_lock:
            if self._shutdown:
                _log.error("audit stream %s is sealed: %d record(s) %s (stream %s, seq %d-%d) cannot be declared "
                           "in a gap marker", self.stream_id, last - first + 1, reason, stream or self.stream_id,
                           first, last)
                return
            self._gaps.append((stream, first, last, prev_hex, digest_hex, reason, destination))

    def _emit_gap_marker(self) -> None:
        with self._gap_lock:
            gaps, self._gaps = self._gaps, []
        if not gaps:
            return
        groups: dict[tuple[str, str, str], list[tuple[int, int, str, str]]] = {}
        for stream, a, b, prev_hex, digest_hex, reason, dest in gaps:
            groups.setdefault((stream, reason, dest), []).append((a, b, prev_hex, digest_hex))
        for (stream, reason, dest), found in groups.items():
            runs: list[list[Any]] = []  # [first, last, prev of first, digest of last]
            for a, b, prev_hex, digest_hex in sorted(found):
                if runs and a <= runs[-1][1]:
                    continue  # the same record named twice
                if runs and runs[-1][1] == a - 1:
                    runs[-1][1] = b
                    runs[-1][3] = digest_hex
                else:
                    runs.append([a, b, prev_hex, digest_hex])
            text = ",".join(str(a) if a == b else f"{a}-{b}" for a, b, _, _ in runs)
            chain = ";".join(f"{a}-{b}:{p}:{d}" for a, b, p, d in runs)
            n = sum(b - a + 1 for a, b, _, _ in runs)
            _log.error("audit stream %s: %d record(s)%s %s (seq %s); sealing a gap marker",
                       self.stream_id, n, f" of stream {stream}" if stream else "", reason, text)
            attrs: dict[str, Any] = {
                "audit.category": "integrity", "audit.action": "gap", "audit.outcome": "failure",
                "audit.gap.seqs": text, "audit.gap.chain": chain, "audit.gap.count": n,
                "audit.gap.reason": reason,
                "audit.reason": "delivery spool full" if reason == REASON_SPOOL_FULL else reason,
            }
            if dest:
                attrs["audit.gap.destination"] = dest
            if stream:
                attrs["audit.gap.stream"] = stream
            body = f"{n} audit record(s) of {'stream ' + stream if stream else 'this stream'} were {reason}"
            self._emit_internal(GAP_EVENT, time.time_ns(), lambda seq, b=body, a=attrs: (b, a))

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
            with contextlib.suppress(DeliveryError):  # shut down meanwhile
                self._emit_checkpoint("flush")
        ok = True
        for p in self._downstream:
            remaining = max(0, int((deadline - time.monotonic()) * 1000))
            ok = p.force_flush(remaining) and ok
        return ok

    def shutdown(self, timeout_millis: int | None = None) -> None:
        """Seal the stream (end checkpoint), then shut the downstream processors down.

        With `timeout_millis`, the time left of it is passed to each downstream whose shutdown
        takes a timeout (the spool keeps what it could not deliver for the next start); without,
        each downstream uses its own default.
        """
        if self._closing:
            return
        self._closing = True
        deadline = None if timeout_millis is None else time.monotonic() + max(0, timeout_millis) / 1000
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5 if deadline is None else max(0.0, min(5.0, deadline - time.monotonic())))
        try:
            self._emit_checkpoint("end")
        except DeliveryError:
            pass  # already sealed
        finally:
            self._shutdown = True
            lifecycle.unregister(self)
        for p in self._downstream:
            try:
                if deadline is not None and _takes_timeout(p.shutdown):
                    p.shutdown(timeout_millis=max(0, int((deadline - time.monotonic()) * 1000)))
                else:
                    p.shutdown()
            except Exception:
                _log.exception("downstream %s failed to shut down", type(p).__name__)
        if self._state is not None:
            self._state.close()

    @property
    def is_shut_down(self) -> bool:
        """True once shutdown() has begun: the stream is (being) sealed."""
        return self._closing

    @property
    def state_dir(self) -> Path | None:
        """The folder (state_dir itself or one of its worker-<k> slots) holding this stream's chain state."""
        return self._state.dir if self._state is not None else None

    @property
    def seq(self) -> int:
        """How many records (events and checkpoints) this stream holds so far."""
        return self._seq


def _takes_timeout(fn: Callable[..., object]) -> TypeGuard[Callable[..., None]]:
    try:
        return "timeout_millis" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


lifecycle.mark_critical([
    SigningProcessor._on_emit, SigningProcessor._hand_on, SigningProcessor._deliver, SigningProcessor._emit_internal,
    SigningProcessor._emit_checkpoint, SigningProcessor._forward, SigningProcessor._emit_gap_marker,
    SigningProcessor.shutdown, SigningProcessor.force_flush, SigningProcessor._after_fork_in_child,
    StreamState.write,
])

__all__ = ["MAX_SLOTS", "REASON_REFUSED", "REASON_SPOOL_FULL", "SigningProcessor", "StreamState"]
