"""Signing at ingest: the same trail for producers that cannot sign (docs/service.md §2a).

A gateway in Go, Java or Node sending plain OTel logs through the collector carries no integrity attributes. With
``sign_at_ingest`` on, the service chains such records itself, as the signing processor does at source: one
service-side stream per producer (its resource's ``service.namespace``, ``service.name`` and
``service.instance.id``), a start checkpoint at seq 0, then every record numbered (``audit.stream.seq``),
chained (``audit.integrity.prev`` / ``audit.integrity.digest``) and a leaf of the stream's RFC 6962 tree, and
checkpoints signed with the service's key every N records, every T seconds while records wait unsealed, and at
shutdown (an ``end`` one; the next record of that producer starts a stream whose start checkpoint names it).
Every such record carries ``audit.signed_by = "ingest"`` inside its signed content, and the checkpoints' signed
producer line says so too, so whoever reads a record, a proof or a verification report sees where it was signed.

The records are stored exactly as a source-signed record would be (the OTLP/JSON record with its integrity
attributes), and then verified on ingest like any other, so the reference verifier (``otel-audit verify --store``,
or ``otel-audit verify`` of an OTLP/JSON export) proves them with the service's public key in the keyring.

Everything here runs under the ingest lock inside the request's write transaction, and reads the store in that
transaction, never memory alone: the stream's state, and (``refresh``, first in every transaction) the streams
signed at ingest that any instance started since the last look, found by their seq-0 start checkpoints in ingest
order. So several instances on one database continue one producer's stream (the store's write lock serializes
them), none lets a client write into a stream another instance signs, and a surviving instance seals what a dead
one left unsealed (``due`` reads every open stream with records after its last checkpoint). What the
transaction adds itself (a new stream) is kept apart until it commits (``commit``; ``rollback`` drops it).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import orjson

from otel_audit import canonical
from otel_audit.canonical import (
    CHECKPOINT_EVENT,
    DIGEST,
    PREV_DIGEST,
    SIGNED_AT_INGEST,
    SIGNED_BY,
    STREAM_ID,
    STREAM_SEQ,
)
from otel_audit.keys import Signer
from otel_audit.merkle import CompactRange
from otel_audit.note import Checkpoint, NoteError, Predecessor, format_note, parse_note
from otel_audit.otlpjson import encode_attributes

#: the attribute, inside the signed content, that says where a record was signed; only the service writes it
INGEST = SIGNED_AT_INGEST
#: the origin prefix of a service-side stream's checkpoints (the stream id follows)
ORIGIN = "otel-audit-ingest"
#: what makes a producer: the OpenTelemetry service identity of the record's resource
IDENTITY_KEYS = ("service.namespace", "service.name", "service.instance.id")
SCOPE_JSON = orjson.dumps({"name": "otel_audit.ingest"})
_ZERO = bytes(32)
_SORT = orjson.OPT_SORT_KEYS
_INFO = (9, "INFO")
_SIGNED_BY_KV = {"key": SIGNED_BY, "value": {"stringValue": INGEST}}


def producer_of(resource: Mapping[str, Any]) -> dict[str, str]:
    """The producer a record's (decoded) resource names: its service identity attributes that are strings."""
    return {k: v for k in IDENTITY_KEYS for v in (resource.get(k),) if type(v) is str}


class Made(NamedTuple):
    """A record made here (an unsigned record chained, or a checkpoint): what Ingest stores, then verifies."""

    record: dict[str, Any]  # the OTLP/JSON logRecord with its integrity attributes
    resource: bytes
    scope: bytes
    service: str | None
    digest: bytes


class Item(NamedTuple):
    """An unsigned record to sign: its producer, the OTLP/JSON it arrived as, and its canonical content with
    ``audit.signed_by`` added (computed before the transaction: content that has no canonical form is refused
    there)."""

    producer: dict[str, str]
    record: dict[str, Any]
    content: bytes
    resource: bytes
    scope: bytes
    service: str | None


class _Tx(NamedTuple):
    """A stream as one transaction advances it."""

    sid: str
    producer: dict[str, str]
    length: int
    head: bytes
    tree: CompactRange
    unsealed: int
    last_cp: int


def content_of(fields: Any, attrs: Mapping[str, Any]) -> bytes:
    """The canonical content of an unsigned record as it will be signed at ingest (``audit.signed_by`` added)."""
    return canonical.content_bytes(fields.event_name, fields.time_unix_nano, fields.severity_number,
                                   fields.severity_text, fields.body, {**attrs, SIGNED_BY: INGEST})


class IngestSigner:
    """Which service-side stream each producer writes to, and the signing of its records and checkpoints.

    ``key`` None: not signing (no key, or ``sign_at_ingest: false``), but the streams signed at ingest before
    are still known, so that they are shown as such and no client can add records to them."""

    def __init__(self, key: Signer | None, *, every: int = 1000, interval_s: float = 5.0) -> None:
        self.key = key
        self.every = every
        self.interval_ns = max(1, round(interval_s * 1e9))
        self.ids: set[str] = set()  # every stream signed at ingest, in the store
        self._latest: dict[bytes, str] = {}  # producer key -> its newest stream
        self._after = 0  # the ingest seq up to which the store's stream starts were read
        # what the transaction under way adds (applied by commit, dropped by rollback)
        self._t_ids: set[str] = set()
        self._t_latest: dict[bytes, str] = {}

    @property
    def enabled(self) -> bool:
        return self.key is not None

    # -- memory, from the store and after each transaction

    def load(self, store: Any) -> None:
        """Read the streams signed at ingest so far (at start; every transaction reads what is new)."""
        with store.writer() as w:
            self.refresh(w)

    def refresh(self, w: Any) -> None:
        """Read the stream starts signed at ingest committed since the last look (by this instance or any other):
        a seq-0 start checkpoint, stored as signed at ingest, whose signed producer line names the producer."""
        for seq, sid, event, body in w.ingest_starts(self._after):
            self._after = max(self._after, seq)
            if event != CHECKPOINT_EVENT:
                continue
            try:
                producer = dict(parse_note(body or "").checkpoint.producer)
            except NoteError:
                continue
            producer.pop(SIGNED_BY, None)
            self.ids.add(sid)
            self._latest[_key(producer)] = sid  # in ingest order: the newest last

    def begin(self) -> None:
        self._t_ids, self._t_latest = set(), {}

    def commit(self) -> None:
        self.ids |= self._t_ids
        self._latest.update(self._t_latest)
        self.begin()

    def rollback(self) -> None:
        self.begin()

    def is_ingest(self, stream_id: str) -> bool:
        return stream_id in self.ids or stream_id in self._t_ids

    def open_streams(self, store: Any) -> int:
        """How many producers' newest streams are open in the store."""
        open_ = {s["stream_id"] for s in store.streams() if not s["closed"]}
        return sum(1 for sid in self._latest.values() if sid in open_)

    # -- in a write transaction

    def assign(self, w: Any, items: Iterable[Item], now: int) -> list[Made]:
        """Chain the unsigned records into their producers' streams (a stream started where needed), with a
        checkpoint after every `every` records and one at the end when the last is older than the interval."""
        assert self.key is not None
        groups: dict[bytes, list[Item]] = {}
        for it in items:
            groups.setdefault(_key(it.producer), []).append(it)
        out: list[Made] = []
        for key, its in groups.items():
            s = self._open(w, key, its[0].producer, now, out)
            for it in its:
                rec = dict(it.record)
                rec["attributes"] = [*(it.record.get("attributes") or ()), _SIGNED_BY_KV]
                s = self._chain(s, rec, it.content, it.resource, it.scope, it.service, out)
                if s.unsealed >= self.every:
                    s = self._checkpoint(s, "size", now, out)
            if s.unsealed and now - s.last_cp >= self.interval_ns:
                s = self._checkpoint(s, "time", now, out)
        return out

    def due(self, w: Any, now: int, *, end: bool = False) -> list[Made]:
        """The checkpoints due now: of every stream signed at ingest whose unsealed records wait longer than the
        interval (whichever instance wrote them: a dead one's are sealed by the living); with `end`, an end
        checkpoint of every producer's open stream (the service is stopping)."""
        assert self.key is not None
        out: list[Made] = []
        producers = {sid: key for key, sid in self._latest.items()}
        if end:
            todo = list(producers.values())
        else:
            todo = [producers[sid] for sid, t in w.unsealed() if sid in producers and now - t >= self.interval_ns]
        for key in todo:
            sid = self._latest[key]
            st = w.stream(sid)
            if st is None or st.closed or (not end and st.length == st.proven):
                continue
            s = self._state(sid, dict(orjson.loads(key)), st)
            s = self._checkpoint(s, "end" if end else "time", now, out, end=end)
        return out

    def _open(self, w: Any, key: bytes, producer: dict[str, str], now: int, out: list[Made]) -> _Tx:
        """The producer's stream as stored: continued when open, else a new one (its start checkpoint made)."""
        sid = self._t_latest.get(key) or self._latest.get(key)
        prev = None
        if sid is not None:
            st = w.stream(sid)
            if st is not None and not st.closed:
                return self._state(sid, producer, st)
            if st is not None and st.proven:
                cp = w.checkpoint(sid, st.proven - 1)
                if cp is not None:
                    try:
                        chain = parse_note(cp.note).checkpoint.chain
                    except NoteError:
                        chain = None
                    if chain is not None:
                        prev = Predecessor(sid, cp.size, cp.root, chain, bool(st.closed))
        sid = secrets.token_hex(16)
        self._t_ids.add(sid)
        self._t_latest[key] = sid
        s = _Tx(sid, producer, 0, _ZERO, CompactRange(), 0, now)
        return self._checkpoint(s, "start", now, out, prev=prev)

    def _state(self, sid: str, producer: dict[str, str], st: Any) -> _Tx:
        return _Tx(sid, producer, st.length, st.head, CompactRange.from_bytes(st.tree, st.length),
                   st.length - st.proven, st.last_checkpoint_ts)

    def _chain(self, s: _Tx, rec: dict[str, Any], content: bytes, resource: bytes, scope: bytes,
               service: str | None, out: list[Made]) -> _Tx:
        """Number and chain one record exactly as the signing processor does: seq, prev, SHA-256(0x00 || prev ||
        canonical bytes) as its digest and Merkle leaf."""
        seq = s.length
        digest = canonical.record_digest(s.head, canonical.join(s.sid, seq, content))
        rec["attributes"] = [*rec.get("attributes", ()),
                             {"key": STREAM_ID, "value": {"stringValue": s.sid}},
                             {"key": STREAM_SEQ, "value": {"intValue": str(seq)}},
                             {"key": PREV_DIGEST, "value": {"stringValue": s.head.hex()}},
                             {"key": DIGEST, "value": {"stringValue": digest.hex()}}]
        out.append(Made(rec, resource, scope, service, digest))
        s.tree.append(digest)
        return s._replace(length=seq + 1, head=digest, unsealed=s.unsealed + 1)

    def _checkpoint(self, s: _Tx, kind: str, now: int, out: list[Made], *, prev: Predecessor | None = None,
                    end: bool = False) -> _Tx:
        """A checkpoint record at the stream's next seq, as the signing processor writes one: the note signed with
        the service's key over the tree of every record before it; its producer line says it is signed at
        ingest. No heartbeat interval is declared: the service cannot promise that a producer keeps sending."""
        assert self.key is not None
        seq = s.length
        producer = {**s.producer, SIGNED_BY: INGEST}
        cp = Checkpoint(f"{ORIGIN}/{s.sid}", seq, s.tree.root(), s.head, now, kind, producer, prev, end)
        body = cp.body()
        note = format_note(body, [self.key.sign(body.encode("utf-8"))])
        attrs: dict[str, Any] = {"audit.category": "integrity", "audit.action": "checkpoint",
                                 "audit.outcome": "success", "audit.checkpoint.kind": kind,
                                 "audit.checkpoint.size": seq, "audit.checkpoint.key": self.key.name,
                                 SIGNED_BY: INGEST}
        content = canonical.content_bytes(CHECKPOINT_EVENT, now, *_INFO, note, attrs)
        rec = {"timeUnixNano": str(now), "observedTimeUnixNano": str(now), "severityNumber": _INFO[0],
               "severityText": _INFO[1], "body": {"stringValue": note}, "attributes": encode_attributes(attrs),
               "eventName": CHECKPOINT_EVENT}
        resource = orjson.dumps({"attributes": encode_attributes(s.producer)} if s.producer else {})
        s = self._chain(s, rec, content, resource, SCOPE_JSON, s.producer.get("service.name"), out)
        return s._replace(unsealed=0, last_cp=now)


def _key(producer: Mapping[str, str]) -> bytes:
    return orjson.dumps(dict(producer), option=_SORT)
