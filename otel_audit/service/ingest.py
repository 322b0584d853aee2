"""Verify on ingest: one OTLP logs request into the store, every record strictly decoded and checked against
its stream's state (docs/service.md §2).

Per signed record: the digest its content gives must be the one it carries (else a `digest` finding: modified
after signing); a second record at a stored (stream, seq) is a redelivery when identical (skipped, counted) and
a `variant` finding otherwise (kept as evidence, never stored as the event). Per stream, in seq order, from the
longest linked prefix on: each record must link to the one before (`link`), and a checkpoint record, when the
prefix reaches it, must be signed by a key of the keyring valid at its time, name this stream, commit to its
seq and to the previous digest, and sign the root of the leaves received before it — else a `checkpoint`
finding, or `fork` when only its root differs (the producer's tree is not the one received). A valid checkpoint
proves every record below it, is stored with the service's witness cosignature (C2SP tlog-cosignature/v1), and
an `end` one closes the stream.

What this decides is the service's view as records arrive; `otel-audit verify --store` re-proves the store
offline with the reference verifier, which also judges lineage, gap markers and liveness.
"""

from __future__ import annotations

import base64
import functools
import logging
import struct
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import orjson

from otel_audit import canonical, merkle
from otel_audit.canonical import (
    CHECKPOINT_EVENT,
    DIGEST,
    GAP_EVENT,
    INTEGRITY_KEYS,
    PREV_DIGEST,
    RECORD,
    SIGNED_BY,
    STREAM_ID,
    STREAM_SEQ,
)
from otel_audit.decoding import DecodeError, decode_log_record, walk_request
from otel_audit.keys import Keyring, Signer
from otel_audit.merkle import EMPTY_ROOT, CompactRange
from otel_audit.note import SIG_PREFIX, NoteError, parse_note
from otel_audit.otlpjson import plain_json
from otel_audit.service.filter import ip_key as _ip_key
from otel_audit.service.ingest_sign import INGEST, IngestSigner, Item, Made, content_of, producer_of
from otel_audit.service.own import SERVICE_NAME
from otel_audit.service.store import CheckpointRow, EventRow, Finding, Store, StoreUnavailable, StreamState, Writer
from otel_audit.service.tiles import BLOCK, new_tiles
from otel_audit.verify.prove import _disagreement

_log = logging.getLogger("otel_audit.service")
_ZERO = bytes(32)
_dumps = orjson.dumps
#: the records of a stream read per step while the linked prefix advances
_STEP = 2000
#: errors a response names (the count is always exact)
MAX_ERRORS = 20
COSIGNATURE_TYPE = 0x04
_HEX = frozenset("0123456789abcdef")


class IngestError(ValueError):
    """The request as a whole is not an ExportLogsServiceRequest this service accepts (nothing was stored)."""


class Result(NamedTuple):
    accepted: int  # records stored now
    duplicates: int  # records already stored, identical (a retried request): acknowledged, not stored again
    rejected: int  # records refused (not strict OTLP/JSON, or a variant of a stored record): findings name them
    errors: list[str]


@functools.lru_cache(maxsize=4096)
def ip_key(address: str | None) -> str | None:
    """otel_audit.service.filter.ip_key, cached: a gateway's clients repeat."""
    return None if not address else _ip_key(address)


def cosignature_key_id(name: str, public_key: bytes) -> bytes:
    """The key id of a C2SP tlog-cosignature/v1 witness key (signature type 0x04)."""
    import hashlib

    return hashlib.sha256(name.encode() + b"\n" + bytes([COSIGNATURE_TYPE]) + public_key).digest()[:4]


def cosign(witness: Signer, note_body: str, now_s: int) -> str:
    """The witness's cosignature line for a checkpoint body (C2SP tlog-cosignature/v1): Ed25519 over
    ``cosignature/v1\\ntime <seconds>\\n<body>``, carried as key id || 8-byte big-endian time || signature."""
    msg = f"cosignature/v1\ntime {now_s}\n{note_body}".encode()
    sig = witness.sign(msg).signature
    kid = cosignature_key_id(witness.name, witness.public_key)
    return f"{SIG_PREFIX}{witness.name} {base64.b64encode(kid + struct.pack('>Q', now_s) + sig).decode()}\n"


def _text(x: Any) -> str | None:
    return x if type(x) is str else None


class _Pending(NamedTuple):
    row: EventRow
    calc: bytes
    checkpoint_fields: tuple[int, int, str, dict[str, Any]] | None
    #: what the record claims that only the service may write: a reason to refuse it, or None
    reserved: str | None = None
    #: an unsigned record: its decoded fields and attributes (without integrity ones), for signing at ingest
    unsigned: tuple[Any, dict[str, Any]] | None = None


class Ingest:
    """Takes decoded OTLP/JSON requests into a store (one writer transaction per request)."""

    def __init__(self, store: Store, keyring: Keyring, *, witness: Signer | None = None,
                 clock: Callable[[], int] = time.time_ns, signer: IngestSigner | None = None) -> None:
        self.store = store
        self.keyring = keyring
        self.witness = witness
        self.clock = clock
        #: signing at ingest (otel_audit.service.ingest_sign): which streams the service signed, and whether it
        #: signs unsigned records now (signer.enabled)
        self.signer = signer
        self.counts = {"records": 0, "duplicates": 0, "rejected": 0, "findings": 0, "checkpoints": 0,
                       "requests": 0, "signed_at_ingest": 0}
        self._lock = threading.Lock()
        #: the service's stop ended its streams signed at ingest (tick(end=True)): from then on only its own
        #: pipeline's requests are taken; a client's is answered 503 (retryable), so that no record starts a
        #: stream after the end that nothing would end
        self.ended = False
        #: called with each finding once its transaction committed (the service makes it a signed event)
        self.on_finding: Callable[[Finding], None] | None = None
        self._new_findings: list[Finding] = []

    # -- a request

    def ingest(self, doc: Any, *, internal: bool = False) -> Result:
        """Store every record of one ExportLogsServiceRequest (decoded JSON) and advance its streams.
        `internal`: the request comes from this service's own pipeline (its own stream), the only sender that
        may write as the audit service. Raises IngestError when the envelope is malformed (nothing stored)."""
        now = self.clock()
        errors: list[str] = []
        rows: list[_Pending] = []
        findings: list[Finding] = []
        try:
            groups = list(walk_request(doc))
        except DecodeError as exc:
            raise IngestError(f"not strict OTLP/JSON: {exc}") from None
        signing = self.signer is not None and self.signer.enabled
        items: list[Item] = []
        for i, (rl, sl, resource, _scope, records) in enumerate(groups):
            res_json = _dumps(rl.get("resource", {}))
            scope_json = _dumps(sl.get("scope", {}))
            service = _text(resource.get("service.name"))
            producer = producer_of(resource) if signing else {}
            for j, rec in enumerate(records):
                where = f"resourceLogs[{i}].scopeLogs[..].logRecords[{j}]"
                if service == SERVICE_NAME and not internal:
                    msg = (f"{where}: its resource says service.name {SERVICE_NAME!r}: only the audit service writes "
                           "as itself (its own stream, through its own pipeline)")
                    if len(errors) < MAX_ERRORS:
                        errors.append(msg)
                    findings.append(Finding(None, None, "forged", msg, now, _dumps(rec, default=str)))
                    continue
                try:
                    got = self._row(rec, res_json, scope_json, service, now)
                    if signing and got.unsigned is not None and got.reserved is None:
                        # signed at ingest: its canonical content now, so that one that has none is refused here
                        items.append(Item(producer, rec, content_of(*got.unsigned), res_json, scope_json, service))
                        continue
                except (DecodeError, ValueError, canonical.CanonicalError) as exc:
                    msg = f"{where}: not strict OTLP/JSON: {exc}"
                    if len(errors) < MAX_ERRORS:
                        errors.append(msg)
                    findings.append(Finding(None, None, "decode", msg, now, _dumps(rec, default=str)))
                    continue
                rows.append(got)
        forged = sum(1 for f in findings if f.kind == "forged")
        with self._lock:
            if self.ended and not internal:
                raise StoreUnavailable("the service is stopping: its streams signed at ingest are ended; retry "
                                       "(another instance, or this one once restarted)")
            accepted, duplicates, rejected, new = self._transaction(rows, findings, errors, now, items,
                                                                    internal=internal)
        if self.on_finding is not None:
            for f in [*findings, *new]:
                self.on_finding(f)
        n_rejected = rejected + forged + sum(1 for f in findings if f.kind == "decode")
        c = self.counts
        c["requests"] += 1
        c["records"] += accepted
        c["duplicates"] += duplicates
        c["rejected"] += n_rejected
        c["signed_at_ingest"] += len(items)
        return Result(accepted, duplicates, n_rejected, errors)

    def _transaction(self, rows: list[_Pending], findings: list[Finding], errors: list[str], now: int,
                     items: list[Item], *, end: bool = False, tick: bool = False,
                     internal: bool = False) -> tuple[int, int, int, list[Finding]]:
        """One write transaction (under the ingest lock): the received rows, the unsigned records signed at ingest
        (`items`), and the checkpoints due (`tick`, `end`); the signer's memory follows only a commit."""
        self._new_findings = []
        signer = self.signer
        if signer is not None:
            signer.begin()
        try:
            with self.store.writer() as w:
                if signer is not None:
                    signer.refresh(w)  # the streams any instance started signing at ingest since the last look
                if signer is not None and signer.enabled and (items or tick or end):
                    # the checkpoints' time is taken under the lock: in each stream, later checkpoints never say
                    # an earlier time (a request may have waited for the lock)
                    t = max(now, self.clock())
                    made = signer.assign(w, items, t) if items else []
                    if tick or end:
                        made += signer.due(w, t, end=end)
                    rows = rows + [self._made(m, now) for m in made]
                accepted, duplicates, rejected = self._write(w, rows, findings, errors, now, internal)
        except BaseException:
            if signer is not None:
                signer.rollback()
            raise
        if signer is not None:
            signer.commit()
        return accepted, duplicates, rejected, self._new_findings

    def _made(self, m: Made, now: int) -> _Pending:
        """A record chained here, as a row: derived from its OTLP/JSON exactly as a received record is."""
        p = self._row(m.record, m.resource, m.scope, m.service, now)
        if p.calc != m.digest or p.row.signed != INGEST:  # the derivation and the chaining disagree: a bug
            raise RuntimeError("sign at ingest: a record's content does not give the digest it was chained with")
        return p._replace(reserved=None)  # the service's own claim

    def tick(self, *, end: bool = False) -> int:
        """Seal what signing at ingest left unsealed: a `time` checkpoint of every stream whose records wait longer
        than the interval, or with `end` (at shutdown) an `end` checkpoint of every open one. How many were made."""
        signer = self.signer
        if signer is None or not signer.enabled:
            return 0
        with self._lock:
            now = self.clock()
            try:
                accepted, _, _, new = self._transaction([], [], [], now, [], end=end, tick=not end)
            finally:
                if end:
                    self.ended = True
        if self.on_finding is not None:
            for f in new:
                self.on_finding(f)
        return accepted

    def _row(self, rec: Any, res_json: bytes, scope_json: bytes, service: str | None, now: int) -> _Pending:
        if type(rec) is not dict:
            raise DecodeError("bad-type", "", "a logRecord must be an object")
        f = decode_log_record(rec)
        attrs = dict(f.attributes)
        stream = attrs.pop(STREAM_ID, None)
        seq = attrs.pop(STREAM_SEQ, None)
        prev = attrs.pop(PREV_DIGEST, None)
        digest = attrs.pop(DIGEST, None)
        attrs.pop(RECORD, None)
        # by key, not value: an integrity attribute with an empty value is still one (for an unsigned record)
        stray = stream is None and not INTEGRITY_KEYS.isdisjoint(f.attributes)
        claim = attrs.get(SIGNED_BY)
        body = f.body
        body_text = body if type(body) is str else (None if body is None else _dumps(plain_json(body)).decode())
        strings = [v for k, v in attrs.items() if type(v) is str]
        text = " ".join(([body] if type(body) is str else []) + strings)
        client = _text(attrs.get("client.address"))
        common: dict[str, Any] = dict(
            ts=f.time_unix_nano, observed_ts=f.observed_time_unix_nano, ingest_ts=now, event=f.event_name,
            category=_text(attrs.get("audit.category")), outcome=_text(attrs.get("audit.outcome")),
            actor=_text(attrs.get("audit.actor.id")) or _text(attrs.get("user.id")),
            user_id=_text(attrs.get("user.id")), target_type=_text(attrs.get("audit.target.type")),
            target_id=_text(attrs.get("audit.target.id")), client_address=client, client_address_key=ip_key(client),
            service=service, session_id=_text(attrs.get("session.id")), trace_id=f.trace_id or None,
            severity=f.severity_number, severity_text=f.severity_text, body=body_text,
            attrs=_dumps(plain_json(attrs)).decode(), resource=res_json, scope=scope_json, record=_dumps(rec),
            text=text)
        if stream is None:
            import uuid

            row = EventRow(id="u-" + uuid.uuid4().hex, stream_id=None, stream_seq=None, canonical=None, digest=None,
                           prev=None, signed="none", **common)
            reserved = None
            if SIGNED_BY in attrs:
                reserved = (f"an unsigned record claims {SIGNED_BY}={claim!r}: only this service writes it, when it "
                            "signs a record at ingest")
            elif stray:
                reserved = "integrity attributes without audit.stream.id: not a signed record, and not unsigned"
            elif f.event_name in (CHECKPOINT_EVENT, GAP_EVENT):
                reserved = (f"an unsigned record named {f.event_name}: only a signer writes one (a checkpoint or gap "
                            "marker signed at ingest is the service's own)")
            return _Pending(row, b"", None, reserved, (f, attrs))
        if type(stream) is not str or len(stream) != 32 or not _HEX.issuperset(stream):
            raise ValueError("audit.stream.id is not 32 lower-case hex digits")
        if type(seq) is not int or seq < 0 or type(prev) is not str or type(digest) is not str:
            raise ValueError("the integrity attributes have the wrong form")
        pb, db = bytes.fromhex(prev), bytes.fromhex(digest)
        if len(pb) != 32 or len(db) != 32 or pb.hex() != prev or db.hex() != digest:
            raise ValueError("a digest is not 64 lower-case hex digits")
        content = canonical.content_bytes(f.event_name, f.time_unix_nano, f.severity_number, f.severity_text, body,
                                          attrs)
        canon = canonical.join(stream, seq, content)
        calc = canonical.record_digest(pb, canon)
        # "ingest": signed by this service at ingest, which says so inside the signed content (ingest_sign);
        # a received record claiming it is refused (Ingest._write), so only the service's own rows say it
        signed = INGEST if claim == INGEST else "source"
        row = EventRow(id=f"{stream}-{seq}", stream_id=stream, stream_seq=seq, canonical=canon, digest=db, prev=pb,
                       signed=signed, **common)
        cpf = ((f.time_unix_nano, f.severity_number, f.severity_text, attrs) if f.event_name == CHECKPOINT_EVENT
               else None)
        reserved = None
        if SIGNED_BY in attrs:
            reserved = (f"a signed record claims {SIGNED_BY}={claim!r}: only this service writes it, when it signs a "
                        "record at ingest")
        return _Pending(row, calc, cpf, reserved)

    def _write(self, w: Writer, rows: list[_Pending], findings: list[Finding], errors: list[str],
               now: int, internal: bool = False) -> tuple[int, int, int]:
        accepted = duplicates = rejected = 0
        fresh: list[EventRow] = []
        seen: dict[tuple[str, int], bytes] = {}
        touched: dict[str, str | None] = {}
        cp_fields: dict[tuple[str, int], tuple[int, int, str, dict[str, Any]]] = {}
        wanted: dict[str, list[int]] = {}
        signer = self.signer
        signing = signer is not None and signer.enabled
        kept: list[_Pending] = []
        owners: dict[str, str | None] = {}  # stream -> the service its stored records name
        for p in rows:
            r = p.row
            # a claim of an unsigned record matters only when it would be signed here
            why = p.reserved if p.unsigned is None or signing else None
            if why is None and r.stream_id is not None and signer is not None and r.signed != INGEST \
                    and signer.is_ingest(r.stream_id):
                why = (f"a received record names stream {r.stream_id}, which this service signs at ingest: only the "
                       "service writes its records")
            if why is None and r.stream_id is not None and not internal and r.signed != INGEST:
                if r.stream_id not in owners:
                    st = w.stream(r.stream_id)
                    owners[r.stream_id] = st.service if st is not None else None
                if owners[r.stream_id] == SERVICE_NAME:
                    why = (f"a received record names stream {r.stream_id}, the audit service's own stream: only the "
                           "service writes it, through its own pipeline")
            if why is not None:
                rejected += 1
                if len(errors) < MAX_ERRORS:
                    errors.append(why)
                # seq None: the refused claim never marks a stored record of that stream failed
                findings.append(Finding(r.stream_id, None, "forged", why, now, r.record))
                continue
            kept.append(p)
            if r.stream_id is not None:
                wanted.setdefault(r.stream_id, []).append(r.stream_seq or 0)
        rows = kept
        stored = {(sid, seq): canon for sid, seqs in wanted.items() for seq, canon in w.stored_many(sid, seqs)}
        added: dict[str, int] = {}
        for p in rows:
            r = p.row
            if r.stream_id is None:
                fresh.append(r)
                continue
            key = (r.stream_id, r.stream_seq or 0)
            canon = r.canonical or b""
            had = seen.get(key)
            if had is None:
                had = stored.get(key)
            if had is not None:
                if had == canon:
                    duplicates += 1
                else:
                    rejected += 1
                    msg = (f"stream {r.stream_id} seq {r.stream_seq}: a second, different record at a stored seq "
                           "(a variant: forged, or a forked producer); the first one received is kept")
                    if len(errors) < MAX_ERRORS:
                        errors.append(msg)
                    findings.append(Finding(r.stream_id, r.stream_seq, "variant", msg, now, r.record))
                continue
            seen[key] = canon
            if p.calc != r.digest:
                findings.append(Finding(r.stream_id, r.stream_seq, "digest",
                                        f"seq {r.stream_seq}: its content does not give the digest it carries "
                                        "(modified after signing)", now, r.record))
            if p.checkpoint_fields is not None:
                cp_fields[key] = p.checkpoint_fields
            fresh.append(r)
            touched.setdefault(r.stream_id, r.service)
            added[r.stream_id] = added.get(r.stream_id, 0) + 1
        w.insert_events(fresh)
        accepted = len(fresh)
        for f in findings:
            w.insert_finding(f)
            self.counts["findings"] += 1
            if f.kind != "decode":
                _log.warning("verify on ingest: %s: %s", f.kind, f.reason)
        bad: dict[str, int] = {}
        for f in findings:
            if f.kind == "digest" and f.stream_id is not None:
                bad[f.stream_id] = bad.get(f.stream_id, 0) + 1
        for sid, service in touched.items():
            self._advance(w, sid, service, now, cp_fields, added[sid], bad.get(sid, 0))
        return accepted, duplicates, rejected

    # -- a stream

    def _advance(self, w: Writer, sid: str, service: str | None, now: int,
                 cp_fields: Mapping[tuple[str, int], tuple[int, int, str, dict[str, Any]]], added: int,
                 digest_failures: int = 0) -> None:
        st = w.stream(sid)
        if st is None:
            st = StreamState(sid, service, 0, _ZERO, b"", 0, EMPTY_ROOT, False, 0, 0, now, now, 0)
        tree = CompactRange.from_bytes(st.tree, st.length)
        length, head, proven, proven_root, closed = st.length, st.head, st.proven, st.proven_root, st.closed
        failed = st.failed + digest_failures  # records modified after signing: failed whatever else holds
        last_cp = st.last_checkpoint_ts
        stop = False
        while not stop:
            batch = w.following(sid, length, _STEP)
            if not batch:
                break
            for seq, digest, prev, event, body, _ts, _id in batch:
                if seq != length:
                    stop = True  # a seq not received yet: the rest waits (pending)
                    break
                if prev != head:
                    if not w.has_finding(sid, seq, "link"):
                        failed += 1
                        self._finding(w, Finding(sid, seq, "link", f"seq {seq} does not link to seq {seq - 1}: "
                                                 "its prev digest is not that record's digest (a record before it "
                                                 "was removed, replaced or inserted)", now, b""))
                    stop = True
                    break
                if event == CHECKPOINT_EVENT:
                    ok = self._checkpoint(w, sid, seq, prev, body, tree, now, cp_fields.get((sid, seq)))
                    if ok is not None:
                        proven, proven_root, end, last_cp = seq + 1, ok[0], ok[1], ok[2]
                        closed = closed or end
                    else:
                        failed += 1
                tree.append(digest)
                length += 1
                head = digest
            else:
                if len(batch) < _STEP:
                    break
        for level, idx in new_tiles(st.length, length):  # the subtree hashes proofs are built from
            if level == 1:
                leaves = w.leaves(sid, idx * BLOCK, (idx + 1) * BLOCK)
            else:
                leaves = w.tiles(sid, 1, idx * BLOCK, (idx + 1) * BLOCK)
            if len(leaves) == BLOCK:
                w.insert_tile(sid, level, idx, merkle.root(leaves))
        w.put_stream(StreamState(sid, st.service or service, length, head, tree.to_bytes(), proven, proven_root, closed,
                                 st.records + added, failed, st.first_ingest, now, last_cp))

    def _checkpoint(self, w: Writer, sid: str, seq: int, prev: bytes, body: str | None, tree: CompactRange,
                    now: int, fields: tuple[int, int, str, dict[str, Any]] | None) -> tuple[bytes, bool, int] | None:
        """Check the checkpoint record at `seq` (the linked prefix is seqs 0..seq-1, `tree` their leaves):
        (its root, whether it ends the stream, its time) when valid, else None with a finding stored."""
        def bad(kind: str, why: str) -> None:
            self._finding(w, Finding(sid, seq, kind, f"checkpoint at seq {seq}: {why}", now, (body or "").encode()))

        self.counts["checkpoints"] += 1
        try:
            sn = parse_note(body or "")
        except NoteError as exc:
            bad("checkpoint", str(exc))
            return None
        cp = sn.checkpoint
        if cp.origin.rsplit("/", 1)[-1] != sid:
            bad("checkpoint", f"its origin {cp.origin!r} names another stream")
            return None
        if cp.size != seq:
            bad("checkpoint", f"commits to size {cp.size}, stands at seq {seq}")
            return None
        if cp.chain != prev:
            bad("checkpoint", "its chain line disagrees with the record's prev digest")
            return None
        check = self.keyring.check_note(sn)
        if check.status != "ok":
            bad("checkpoint", {"unknown": "signed by no key of the keyring",
                               "expired": "signed only by keys outside their validity at its time",
                               }.get(check.status, "a signature by a key of the keyring does not verify"))
            return None
        differs = _disagreement(fields, sn, sn.signatures[0].name) if fields is not None else {}
        if differs:
            bad("checkpoint", f"the record's own fields differ from its note: {', '.join(sorted(differs))}")
            return None
        root = tree.root()
        if cp.root != root:
            bad("fork", f"signs a tree root over {seq} records that is not the root of the {seq} records received "
                        "(a forked or rewritten stream)")
            _log.error("verify on ingest: SECURITY: stream %s: a checkpoint at size %d that does not extend the "
                       "records received: refused", sid, seq)
            return None
        cosig = cosign(self.witness, sn.text, now // 1_000_000_000) if self.witness is not None else ""
        earlier = w.checkpoint(sid, seq)
        if earlier is not None and earlier.root != root:
            bad("fork", f"a second checkpoint at size {seq} with another root")
            return None
        if earlier is None:
            w.insert_checkpoint(CheckpointRow(sid, seq, root, body or "", cp.time_ns, cp.kind, cosig, now))
        return root, cp.end, cp.time_ns

    def _finding(self, w: Writer, f: Finding) -> None:
        w.insert_finding(f)
        self._new_findings.append(f)
        self.counts["findings"] += 1
        _log.warning("verify on ingest: %s: stream %s: %s", f.kind, f.stream_id, f.reason)
