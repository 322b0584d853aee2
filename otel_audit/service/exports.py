"""Asynchronous exports (`POST /v1/exports`, docs/service.md §4a): a query's events written to a file in the
background, then downloaded; each file is one `otel-audit verify` proves.

Formats:

* ``bundle`` (default): NDJSON. The first line is the header
  ``{"otel_audit_export": {"version": 1, "query": {...}, "created": "<RFC 3339>", "events": N}}``; then one line
  per matching event, in the query's order: ``{"id", "status", "otlp": <the event as a one-record OTLP/JSON
  ExportLogsServiceRequest, its resource, scope and logRecord exactly as stored>, "proof": "<C2SP tlog-proof text
  with the witness cosignature>" | null, "reason"?, "checkpoint_cosignature"?}``. A stream's newest checkpoint
  record has no later checkpoint to prove it: its own signed note (its body) proves it, and
  ``checkpoint_cosignature`` carries the service's cosignature line of it. A bundle proves each event it holds;
  it does not prove the query's result is complete (nothing says an event was left out).
* ``otlp``: plain OTLP/JSON lines (one record a line) of every record 0..n of each stream the query touched,
  checkpoints included, plus the unsigned events it matched: what the ordinary verifier proves whole.

Workers: daemon threads, at most `max_running`, reused (a store reader connection each), so a stop never
waits for an export. Bounded memory: the store is read a page at a time with the keyset cursor
(``Store.query``) and each page's records with ``Store.otlp_records``. Files live in a folder next to the
store (0700, files 0600): ``<id>.json`` (the export's state) and ``<id>.ndjson`` (the file, once done).
Nothing is resumed after a restart: an export still running then is marked failed ("the service
restarted") and its partial file removed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import orjson

from otel_audit import filemodes
from otel_audit.service import query as q

_log = logging.getLogger("otel_audit.service")
FORMATS = ("bundle", "otlp")
#: the body's filter members: the parameters of GET /v1/events without its paging and answer ones
FILTERS = tuple(k for k in q.KNOWN if k not in ("limit", "cursor", "format", "include"))
HEADER_KEY = "otel_audit_export"
VERSION = 1
DEFAULT_PAGE = 1000
DEFAULT_MAX_RUNNING = 2
RESTARTED = "the service restarted while the export ran (exports are not resumed): request it again"


class ExportError(ValueError):
    """A request body the service cannot take (400): names the member."""


class Busy(Exception):
    """As many exports run as the limit allows (429)."""


def parse_body(doc: Any) -> tuple[dict[str, list[str]], str]:
    """(GET /v1/events parameters, format) from a POST /v1/exports body; ExportError names the bad member."""
    if not isinstance(doc, dict):
        raise ExportError("the body: expected a JSON object of GET /v1/events filters and \"format\"")
    fmt = doc.get("format", "bundle")
    if fmt not in FORMATS:
        raise ExportError(f"format: expected one of {', '.join(FORMATS)}")
    params: dict[str, list[str]] = {}
    for k, v in doc.items():
        if k == "format":
            continue
        if k not in FILTERS:
            raise ExportError(f"{k[:80]}: unknown member (known: {', '.join(FILTERS)}, format)")
        values = v if isinstance(v, list) else [v]
        out = []
        for x in values:
            if type(x) is str:
                out.append(x)
            elif type(x) is int and k in ("from", "to"):
                out.append(str(x))
            else:
                raise ExportError(f"{k}: expected a string or a list of strings")
        if not out:
            raise ExportError(f"{k}: an empty list matches nothing; leave the member out")
        params[k] = out
    q.build(params)  # every value checked as GET /v1/events checks it (QueryError names the parameter)
    return params, fmt


class Export:
    """One export's state (what GET /v1/exports/{id} shows, and its `<id>.json`)."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc

    @property
    def id(self) -> str:
        return str(self.doc["id"])

    def public(self) -> dict[str, Any]:
        d = {k: v for k, v in self.doc.items() if not k.startswith("_")}
        d["url"] = f"/v1/exports/{self.id}"
        d["file_url"] = f"/v1/exports/{self.id}/file" if self.doc["status"] == "done" else None
        return d


class Exports:
    """The exports of one service: started in background threads, at most `max_running` at once."""

    def __init__(self, store: Any, folder: Path, *, page: int = DEFAULT_PAGE, max_running: int = DEFAULT_MAX_RUNNING,
                 emit: Callable[[str, dict[str, Any], str | None], None] | None = None) -> None:
        self.store = store
        self.folder = folder
        self.page = page
        self.max_running = max_running
        self.emit = emit
        self._lock = threading.Lock()
        self._running = 0
        self._all: dict[str, Export] = {}
        self._jobs: queue.SimpleQueue[tuple[Export, q.Query]] = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []

    # -- state on disk

    def _meta(self, eid: str) -> Path:
        return self.folder / f"{eid}.json"

    def file(self, eid: str) -> Path:
        return self.folder / f"{eid}.ndjson"

    def _save(self, e: Export) -> None:
        tmp = self.folder / f"{e.id}.json.tmp"
        filemodes.write_private(tmp, orjson.dumps(e.doc))
        os.replace(tmp, self._meta(e.id))

    def recover(self) -> list[Export]:
        """Read the exports of earlier runs; one that was running is failed now (its partial file removed).
        Returns those failed now (the caller records their completion)."""
        failed: list[Export] = []
        if not self.folder.is_dir():
            return failed
        for p in sorted(self.folder.glob("*.json")):
            try:
                doc = orjson.loads(p.read_bytes())
                e = Export(doc)
                e.id  # noqa: B018 - a document without an id is not one of ours
            except (OSError, orjson.JSONDecodeError, KeyError, TypeError):
                _log.warning("exports: %s is not an export's state; left as it is", p)
                continue
            if doc.get("status") == "running":
                doc.update(status="failed", reason=RESTARTED, finished=q.rfc3339(time.time_ns()))
                for leftover in (self.folder / f"{e.id}.part", self.file(e.id)):
                    leftover.unlink(missing_ok=True)
                self._save(e)
                failed.append(e)
            self._all[e.id] = e
        for stray in self.folder.glob("*.part"):
            stray.unlink(missing_ok=True)
        return failed

    # -- the API's side

    def listing(self) -> list[dict[str, Any]]:
        with self._lock:
            items = list(self._all.values())
        return [e.public() for e in sorted(items, key=lambda e: e.doc["created"], reverse=True)]

    def get(self, eid: str) -> Export | None:
        with self._lock:
            return self._all.get(eid)

    def start(self, params: Mapping[str, list[str]], fmt: str, who: dict[str, Any]) -> Export:
        """Start an export of the events `params` match (GET /v1/events parameters); Busy beyond the limit."""
        query = q.build(params, self.store.dialect)
        with self._lock:
            if self._running >= self.max_running:
                raise Busy(f"{self._running} export(s) running, the limit (limits.max_exports) is {self.max_running}")
            filemodes.make_dirs(self.folder)
            eid = "x" + secrets.token_hex(12)
            e = Export({"id": eid, "status": "running", "format": fmt, "query": dict(params),
                        "created": q.rfc3339(time.time_ns()), "finished": None, "events": 0, "records": 0,
                        "streams": 0, "proven": 0, "size": None, "sha256": None, "reason": None,
                        "_who": who})
            self._save(e)
            self._all[eid] = e
            self._running += 1
        self._jobs.put((e, query))
        with self._lock:  # a worker per running export at most, reused (each keeps its store reader connection)
            if len(self._workers) < self.max_running:
                t = threading.Thread(target=self._work, name=f"otel-audit-export-{len(self._workers)}", daemon=True)
                self._workers.append(t)
                t.start()
        return e

    def _work(self) -> None:
        while True:
            e, query = self._jobs.get()
            self._run(e, query)

    # -- the work

    def _run(self, e: Export, query: q.Query) -> None:
        part = self.folder / f"{e.id}.part"
        final = self.file(e.id)
        try:
            fd = filemodes.open_new(part)
            with os.fdopen(fd, "wb") as out:
                if e.doc["format"] == "bundle":
                    self._bundle(e, query, out)
                else:
                    self._otlp(e, query, out)
                out.flush()
                os.fsync(out.fileno())
            digest = hashlib.sha256()
            size = 0
            if e.doc["format"] == "bundle":  # the header (it holds the count) goes first, then the events
                header = orjson.dumps({HEADER_KEY: {"version": VERSION, "query": e.doc["query"],
                                                    "created": e.doc["created"], "events": e.doc["events"]}}) + b"\n"
                fd2 = filemodes.open_new(final)
                with os.fdopen(fd2, "wb") as dst, part.open("rb") as src:
                    dst.write(header)
                    digest.update(header)
                    size += len(header)
                    while chunk := src.read(1 << 20):
                        dst.write(chunk)
                        digest.update(chunk)
                        size += len(chunk)
                    dst.flush()
                    os.fsync(dst.fileno())
                part.unlink()
            else:
                with part.open("rb") as src:
                    while chunk := src.read(1 << 20):
                        digest.update(chunk)
                        size += len(chunk)
                os.replace(part, final)
            e.doc.update(status="done", size=size, sha256=digest.hexdigest(), finished=q.rfc3339(time.time_ns()))
        except Exception as exc:  # noqa: BLE001 - the store or the disk failed: the export says so, the service goes on
            _log.exception("export %s failed", e.id)
            for p in (part, final):
                p.unlink(missing_ok=True)
            e.doc.update(status="failed", reason=f"{type(exc).__name__}: {exc}"[:500],
                         finished=q.rfc3339(time.time_ns()))
        finally:
            with self._lock:
                self._running -= 1
            try:
                self._save(e)
            except OSError:
                _log.exception("export %s: its state could not be saved", e.id)
            self.completed(e)

    def completed(self, e: Export) -> None:
        """The service's own `data_access.data.exported` event for an export's end (done or failed)."""
        if self.emit is None:
            return
        d = e.doc
        attrs = {**d.get("_who", {}), "audit.target.type": "audit_events", "audit.target.id": e.id,
                 "audit.export.format": d["format"], "audit.export.status": d["status"],
                 "audit.export.record_count": d["events"] if d["format"] == "bundle" else d["records"],
                 "audit.export.sha256": d["sha256"], "audit.reason": d["reason"],
                 "db.query.text": f"export {e.id} of {orjson.dumps(d['query']).decode()}"[:2000]}
        self.emit("data_access.data.exported", attrs, "success" if d["status"] == "done" else "failure")

    def _pages(self, query: q.Query) -> Any:
        after = None
        while True:
            page = self.store.query(query.where, query.params, order=query.order, limit=self.page, after=after)
            if page.rows:
                yield page.rows
            if page.next_cursor is None:
                return
            after = page.next_cursor

    def _records(self, rows: list[dict[str, Any]]) -> dict[str, tuple[bytes, bytes, bytes]]:
        got: dict[str, tuple[bytes, bytes, bytes]] = self.store.otlp_records([r["id"] for r in rows])
        lost = [r["id"] for r in rows if r["id"] not in got]
        if lost:
            raise RuntimeError(f"the store lost event {lost[0]} while the export read it")
        return got

    def _bundle(self, e: Export, query: q.Query, out: Any) -> None:
        from otel_audit.service import proof as tlog

        n = proven = 0
        for rows in self._pages(query):
            recs = self._records(rows)
            for r in rows:
                line: dict[str, Any] = {"id": r["id"], "status": r["status"], "otlp": orjson.Fragment(_request(
                    *recs[r["id"]])), "proof": None}
                m = self.store.proof_material(r["id"], None) if r["stream_id"] is not None else None
                if r["stream_id"] is None:
                    line["reason"] = "unsigned: the event is in no producer's tree"
                elif m is None or m["checkpoint"] is None:
                    own = self._own_checkpoint(r)
                    if own is not None:  # a stream's newest checkpoint: no later one proves it; it proves itself
                        line["checkpoint_cosignature"] = own
                        line["reason"] = "a signed checkpoint no later checkpoint covers yet: its signature proves it"
                        proven += 1
                    else:
                        line["reason"] = "pending: no verified checkpoint covers it yet"
                elif m["missing"]:
                    line["reason"] = "the store lacks records its checkpoint covers (run otel-audit verify --store)"
                else:
                    cp = m["checkpoint"]
                    line["proof"] = tlog.build(m["path"], m["seq"], cp["note"], m["prev"], m["canonical"],
                                               cp["cosignature"]).text()
                    proven += 1
                out.write(orjson.dumps(line) + b"\n")
                n += 1
            e.doc.update(events=n, proven=proven)

    def _own_checkpoint(self, row: dict[str, Any]) -> str | None:
        """A verified checkpoint record's stored witness cosignature ("" without a witness key), else None."""
        from otel_audit.canonical import CHECKPOINT_EVENT

        if row["event"] != CHECKPOINT_EVENT or row["status"] != "proven":
            return None
        for c in self.store.checkpoints(row["stream_id"]):
            if c["size"] == row["stream_seq"]:
                return str(c["cosignature"] or "")
        return None

    def _otlp(self, e: Export, query: q.Query, out: Any) -> None:
        streams: set[str] = set()
        n = records = 0
        for rows in self._pages(query):
            n += len(rows)
            unsigned = [r for r in rows if r["stream_id"] is None]
            streams.update(r["stream_id"] for r in rows if r["stream_id"] is not None)
            if unsigned:
                recs = self._records(unsigned)
                for r in unsigned:
                    out.write(_request(*recs[r["id"]]) + b"\n")
                    records += 1
            e.doc.update(events=n, records=records)
        for sid in sorted(streams):
            whole = q.build({"stream": [sid], "order": ["ingest"]}, self.store.dialect)
            for rows in self._pages(whole):
                recs = self._records(rows)
                for r in rows:
                    out.write(_request(*recs[r["id"]]) + b"\n")
                records += len(rows)
                e.doc.update(records=records)
        e.doc.update(events=n, records=records, streams=len(streams))


def _request(resource: bytes, scope: bytes, record: bytes) -> bytes:
    """The one-record ExportLogsServiceRequest of a stored record, its parts byte for byte as stored."""
    return (b'{"resourceLogs":[{"resource":' + resource + b',"scopeLogs":[{"scope":' + scope + b',"logRecords":['
            + record + b"]}]}]}")
