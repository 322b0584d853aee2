"""The service's HTTP side (Starlette, served by uvicorn): the OTLP/HTTP logs receiver at ``POST /v1/logs``
(protobuf and JSON, gzip or not) and the query API under ``/v1/`` (docs/service.md).

OTLP/HTTP's contract (opentelemetry-proto docs/specification.md): a request is answered 200 with an
ExportLogsServiceResponse in the request's encoding once every record is stored (here: committed to disk);
records refused one by one are counted in ``partial_success``; a malformed request is 400 with a
google.rpc.Status (never retried); overload is 503 with ``Retry-After`` (the collector retries it).
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import hmac
import logging
import re
import zlib
from pathlib import Path
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from otel_audit.canonical import SIGNED_AT_INGEST as INGEST
from otel_audit.decoding import DecodeError
from otel_audit.decoding import loads as strict_loads
from otel_audit.errors import ConfigError
from otel_audit.service import query as q
from otel_audit.service.config import ServiceConfig, Token
from otel_audit.service.ingest import Ingest, IngestError
from otel_audit.service.store import FACETS, Store, StoreTimeout, StoreUnavailable

_log = logging.getLogger("otel_audit.service")
_ESCAPES = re.compile(rb"(?:[^%]|%[0-9A-Fa-f]{2})*")
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
NDJSON = "application/x-ndjson"
CSV = "text/csv"
#: what GET /v1/facets counts when no `field` is given
DEFAULT_FACETS = ("action", "category", "outcome", "actor", "service", "target.type", "client.address")
FACET_DEFAULT_LIMIT, FACET_MAX_LIMIT = 10, 100
FILTERDATA_TOP = 1000  # distinct values per Bifrost filter dimension (the most frequent)
EXPORT_PAGE = 1000
EXPORT_BODY_MAX = 64 * 1024


def beside_store(store_url: str, config_source: str, suffix: str, name: str) -> Path:
    """A folder of the service's own: `<store file><suffix>` next to a SQLite store; with a database server,
    `name` beside the config file."""
    if store_url.startswith("sqlite:///"):
        p = Path(store_url.removeprefix("sqlite:///"))
        return p.with_name(p.name + suffix)
    return Path(config_source).resolve().parent / name


def exports_folder(store_url: str, config_source: str) -> Path:
    """Where exports are written: `<store file>.exports`, or `otel-audit-exports/` beside the config file."""
    return beside_store(store_url, config_source, ".exports", "otel-audit-exports")


def _json(doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON answer, ending in a newline (one per line on a terminal, as curl prints it)."""
    return Response(orjson.dumps(doc) + b"\n", status_code=status, media_type=JSON, headers=headers)


def _error(status: int, message: str, *, headers: dict[str, str] | None = None) -> Response:
    return _json({"error": {"status": status, "message": message}}, status, headers)


async def _not_found(request: Request, exc: Exception) -> Response:
    """No route: a JSON 404 like every other error (the path is not echoed: it may be anything)."""
    return _error(404, "no such resource: see docs/service.md §4 for the API's paths")


def query_string_problem(raw: bytes) -> str | None:
    """What is wrong with a request's query string, or None: every name and value must be UTF-8 once
    percent-decoded, hold no NUL, and a %-escape must be complete (Starlette would silently replace what is not)."""
    from urllib.parse import unquote_to_bytes

    for piece in raw.split(b"&"):
        if not piece:
            continue
        name, _, value = piece.partition(b"=")
        try:
            key = unquote_to_bytes(name.replace(b"+", b" ")).decode("utf-8")
        except UnicodeDecodeError:
            return "a parameter name is not UTF-8 (percent-decoded)"
        shown = key[:40]
        if "\x00" in key:
            return f"{shown!r}: a parameter name holds a NUL character"
        if b"%" in value and not _ESCAPES.fullmatch(value):
            return f"{shown}: a % that does not start an escape (%XX)"
        try:
            text = unquote_to_bytes(value.replace(b"+", b" ")).decode("utf-8")
        except UnicodeDecodeError:
            return f"{shown}: the value is not UTF-8 (percent-decoded)"
        if "\x00" in text:
            return f"{shown}: the value holds a NUL character"
    return None


class _StrictQuery:
    """ASGI: a request whose query string is not strict UTF-8 is a 400 naming the parameter, before any route."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("query_string"):
            why = query_string_problem(scope["query_string"])
            if why is not None:
                await _error(400, why)(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _internal(request: Request, exc: Exception) -> Response:
    """An exception no handler expected: logged with its traceback, answered as every other error (JSON, no detail
    of the exception, which may hold anything)."""
    _log.error("%s %s failed: %s", request.method, request.url.path, type(exc).__name__, exc_info=exc)
    return _error(500, "internal error: the service logged it")


async def _not_allowed(request: Request, exc: Exception) -> Response:
    allow = getattr(exc, "headers", None) or {}
    return _error(405, f"method {request.method} is not allowed here", headers=dict(allow))


def _status_body(code: int, message: str, proto: bool) -> tuple[bytes, str]:
    """A google.rpc.Status in the request's encoding (OTLP/HTTP's error body)."""
    if proto:
        from google.rpc import status_pb2  # type: ignore[import-untyped]

        return status_pb2.Status(code=code, message=message).SerializeToString(), PROTOBUF
    return orjson.dumps({"code": code, "message": message}), JSON


class Service:
    """The ASGI application and what it serves."""

    def __init__(self, cfg: ServiceConfig, store: Store, ingest: Ingest) -> None:
        self.cfg = cfg
        self.store = store
        self.ingest = ingest
        self.own: Any = None  # the service's own signed stream (own.OwnStream), once serve() has built it
        self.internal: bytes | None = None  # the SHA-256 of the own pipeline's token (serve() makes it)
        self.stopping = False  # a stop under way: its own stream is being sealed, so reads are refused (503)
        self._inflight = asyncio.Semaphore(cfg.max_inflight)
        self._waiting = 0
        from otel_audit.service.exports import Exports

        self.exports = Exports(store, exports_folder(store.url, cfg.source), page=cfg.export_page,
                               max_running=cfg.max_exports, emit=self._own_emit)
        self.app = Starlette(routes=[
            Route("/v1/logs", self.logs, methods=["POST"]),
            Route("/v1/events", self.events, methods=["GET"]),
            Route("/v1/events/{event_id}", self.event, methods=["GET"]),
            Route("/v1/events/{event_id}/proof", self.proof, methods=["GET"]),
            Route("/v1/facets", self.facets, methods=["GET"]),
            Route("/v1/streams", self.streams, methods=["GET"]),
            Route("/v1/checkpoints", self.checkpoints, methods=["GET"]),
            Route("/v1/findings", self.findings, methods=["GET"]),
            Route("/v1/exports", self.export_start, methods=["POST"]),
            Route("/v1/exports", self.export_list, methods=["GET"]),
            Route("/v1/exports/{export_id}", self.export_get, methods=["GET"]),
            Route("/v1/exports/{export_id}/file", self.export_file, methods=["GET"]),
            Route("/v1/openapi.json", self.openapi, methods=["GET"]),
            Route("/healthz", self.health, methods=["GET"]),
            Route("/api/audit-logs", self.bifrost_list, methods=["GET"]),
            Route("/api/audit-logs/filterdata", self.bifrost_filterdata, methods=["GET"]),
            Route("/api/audit-logs/export", self.bifrost_export, methods=["GET"]),
            Route("/api/audit-logs/{event_id}", self.bifrost_get, methods=["GET"]),
            Route("/api/audit-logs/{event_id}/verify", self.bifrost_verify, methods=["GET"]),
        ], exception_handlers={404: _not_found, 405: _not_allowed, StoreUnavailable: self._unavailable,
                              Exception: _internal})
        self.asgi = _StrictQuery(self.app)  # what uvicorn serves: the query string checked first

    # -- auth

    def _who(self, request: Request) -> tuple[str, str]:
        """(actor id, actor type) of an allowed request, for the service's own audit events."""
        if not self.cfg.tokens:
            return "anonymous (loopback, no tokens configured)", "anonymous"
        t = self.cfg.token(self._bearer(request) or "")
        return (t.name, "api_token") if t is not None else ("unknown", "api_token")

    def _own_emit(self, event: str, attributes: dict[str, Any], outcome: str | None) -> None:
        if self.own is not None:
            self.own.emit(event, attributes, outcome=outcome)

    def _audit(self, request: Request, target: str, count: int | None, what: str) -> None:
        """The service's own `data_access.logs.queried` event for an answered read."""
        if self.own is None:
            return
        actor, kind = self._who(request)
        self.own.emit("data_access.logs.queried", {
            "audit.actor.id": actor, "audit.actor.type": kind, "audit.target.type": target,
            "db.query.text": what[:2000], "audit.query.result_count": count,
            "client.address": request.client.host if request.client else None})

    def _audit_export(self, request: Request, fmt: str, count: int, what: str) -> None:
        """The service's own `data_access.data.exported` event for an export (sent or cut short: its count)."""
        if self.own is None:
            return
        actor, kind = self._who(request)
        self.own.emit("data_access.data.exported", {
            "audit.actor.id": actor, "audit.actor.type": kind, "audit.target.type": "audit_events",
            "audit.export.format": fmt, "audit.export.record_count": count, "db.query.text": what[:2000],
            "client.address": request.client.host if request.client else None})

    @staticmethod
    def _bearer(request: Request) -> str | None:
        """The token of an ``Authorization: Bearer <token>`` header, or None."""
        kind, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        return token if kind.lower() == "bearer" and token else None

    def _allowed(self, request: Request, scope: str) -> Response | None:
        """None when the request may do `scope`; else the 401/403 to answer (503 for a read while stopping)."""
        if self.stopping and scope != "ingest":
            return _error(503, "the service is stopping: retry (another instance, or this one once restarted)",
                          headers={"Retry-After": "5"})
        if not self.cfg.tokens:
            return None  # loopback only (config refuses another address without tokens)
        token = self._bearer(request)
        if token is None:
            return _error(401, "authentication required: send Authorization: Bearer <token>",
                          headers={"WWW-Authenticate": 'Bearer realm="otel-audit"'})
        t = self.cfg.token(token)
        if t is None:
            return _error(401, "the bearer token is not one of this service's tokens",
                          headers={"WWW-Authenticate": 'Bearer realm="otel-audit", error="invalid_token"'})
        if scope not in t.scopes and "audit:admin" not in t.scopes:
            return _error(403, f"token {t.name!r} lacks the scope {scope!r}")
        return None

    # -- OTLP/HTTP receiver

    async def logs(self, request: Request) -> Response:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        proto = ctype == PROTOBUF
        denied = self._allowed(request, "ingest")
        if denied is not None:
            return denied
        if ctype not in (PROTOBUF, JSON):
            body, mt = _status_body(3, f"Content-Type {ctype or '(none)'!r}: send {PROTOBUF} or {JSON}", False)
            return Response(body, status_code=415, media_type=mt)
        limit = self.cfg.max_request_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            body, mt = _status_body(8, f"request body of {declared} bytes is over the limit of {limit}", proto)
            return Response(body, status_code=413, media_type=mt)
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > limit:
                body, mt = _status_body(8, f"request body over the limit of {limit} bytes", proto)
                return Response(body, status_code=413, media_type=mt)
        enc = request.headers.get("content-encoding", "").strip().lower()
        raw = bytes(data)
        if enc == "gzip":
            try:
                d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                raw = d.decompress(raw, limit + 1)
                if len(raw) > limit or d.unconsumed_tail:
                    body, mt = _status_body(8, f"decompressed request over the limit of {limit} bytes", proto)
                    return Response(body, status_code=413, media_type=mt)
                if not d.eof:
                    raise zlib.error("truncated gzip stream")
            except (zlib.error, gzip.BadGzipFile) as exc:
                body, mt = _status_body(3, f"Content-Encoding gzip: not a gzip stream ({exc})", proto)
                return Response(body, status_code=400, media_type=mt)
        elif enc not in ("", "identity"):
            body, mt = _status_body(3, f"Content-Encoding {enc[:40]!r}: send gzip or none", proto)
            return Response(body, status_code=415, media_type=mt)
        if self._waiting >= 4 * self.cfg.max_inflight:  # a bounded queue: beyond it, the client retries
            body, mt = _status_body(14, "the service is busy: retry later", proto)
            return Response(body, status_code=503, media_type=mt, headers={"Retry-After": "1"})
        self._waiting += 1
        internal = self._is_internal(request)
        try:
            async with self._inflight:
                return await run_in_threadpool(self._ingest, raw, proto, internal)
        finally:
            self._waiting -= 1

    def _is_internal(self, request: Request) -> bool:
        """Whether the request carries the own pipeline's token (compared by hash, in constant time)."""
        token = self._bearer(request)
        if self.internal is None or token is None:
            return False
        return hmac.compare_digest(hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest(), self.internal)

    def _ingest(self, raw: bytes, proto: bool, internal: bool = False) -> Response:
        try:
            if proto:
                from otel_audit.service.otlp_proto import ProtoError, request_from_protobuf

                try:
                    doc = request_from_protobuf(raw)
                except ProtoError as exc:
                    raise IngestError(f"not an OTLP ExportLogsServiceRequest: {exc}") from None
            else:
                try:
                    doc = strict_loads(raw)
                except DecodeError as exc:
                    raise IngestError(f"not strict OTLP/JSON: {exc}") from None
            result = self.ingest.ingest(doc, internal=internal)
        except IngestError as exc:
            body, mt = _status_body(3, str(exc), proto)
            return Response(body, status_code=400, media_type=mt)
        except StoreUnavailable as exc:  # the database is away (restarting, unreachable): said in one line
            _log.error("ingest: %s; the request is answered 503 (retryable) and nothing of it is stored", exc)
            body, mt = _status_body(14, "the service could not store the request: retry later", proto)
            return Response(body, status_code=503, media_type=mt, headers={"Retry-After": "5"})
        except Exception:  # the store failed (disk full, locked, I/O): retryable, never a half-stored ack
            _log.exception("ingest failed; the request is answered 503 (retryable) and nothing of it is stored")
            body, mt = _status_body(14, "the service could not store the request: retry later", proto)
            return Response(body, status_code=503, media_type=mt, headers={"Retry-After": "5"})
        msg = "; ".join(result.errors) if result.errors else ""
        if proto:
            from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as pb

            resp = pb.ExportLogsServiceResponse()
            if result.rejected:
                resp.partial_success.rejected_log_records = result.rejected
                resp.partial_success.error_message = msg
            return Response(resp.SerializeToString(), media_type=PROTOBUF)
        out: dict[str, Any] = {}
        if result.rejected:
            out["partialSuccess"] = {"rejectedLogRecords": str(result.rejected), "errorMessage": msg}
        return Response(orjson.dumps(out), media_type=JSON)

    # -- query API

    async def events(self, request: Request) -> Response:
        denied = self._allowed(request, "audit:read")
        if denied is not None:
            return denied
        params: dict[str, list[str]] = {}
        for k, v in request.query_params.multi_items():
            params.setdefault(k, []).append(v)
        try:
            query = q.build(params, self.store.dialect)
        except q.QueryError as exc:
            return _error(400, str(exc))
        for k in ("format", "include"):
            if len(params.get(k, [])) > 1:
                return _error(400, f"{k}: given {len(params[k])} times; it takes one value")
        accept = request.headers.get("accept", "")
        fmt = (params.get("format") or [""])[0] or ("ndjson" if NDJSON in accept else "csv" if CSV in accept
                                                    else "json")
        if fmt not in ("json", "ndjson", "csv"):
            return _error(400, "format: expected json, ndjson or csv")
        include = (params.get("include") or [""])[0]
        if include not in ("", "proof"):
            return _error(400, f"include: expected proof (an inclusion proof per event), got {include[:40]!r}")
        if include and fmt == "csv":
            return _error(400, "include: proofs come with json and ndjson, not csv")
        page = await run_in_threadpool(self.store.query, query.where, query.params, order=query.order,
                                       limit=query.limit, after=query.after)
        events = [q.event_json(r) for r in page.rows]
        if include:
            await run_in_threadpool(self._add_proofs, events)
        nxt = q.cursor_for(query, page.next_cursor) if page.next_cursor is not None else None
        if query.order == "seq" and nxt is None and page.rows:  # polling: the next poll starts after the last row
            nxt = q.cursor_for(query, (page.rows[-1]["seq"],))
        elif query.order == "seq" and nxt is None and query.after is not None:
            nxt = q.cursor_for(query, query.after)
        proven: dict[str, int] = {}  # per stream, how many of the page's events are proven
        for r in page.rows:
            if r["stream_id"] is not None:
                proven[r["stream_id"]] = proven.get(r["stream_id"], 0) + (r["status"] == "proven")
        meta = {"next_cursor": nxt, "count": len(events),
                "streams": [{"id": s, "proven": n} for s, n in sorted(proven.items())]}
        self._audit(request, "audit_events", len(events), f"GET /v1/events?{request.url.query}")
        headers = {"X-Next-Cursor": nxt} if nxt else {}
        if fmt == "ndjson":
            lines = b"".join(orjson.dumps(e) + b"\n" for e in events)
            return Response(lines, media_type=NDJSON, headers=headers)
        if fmt == "csv":
            from otel_audit.service import csvout

            return Response(csvout.rows(events), media_type=csvout.MEDIA_TYPE, headers=headers)
        return _json({"events": events, **meta})

    def _params(self, request: Request) -> dict[str, list[str]]:
        params: dict[str, list[str]] = {}
        for k, v in request.query_params.multi_items():
            params.setdefault(k, []).append(v)
        return params

    async def facets(self, request: Request) -> Response:
        """Counts per value of each `field` for the events a /v1/events query matches (docs/service.md §4)."""
        denied = self._allowed(request, "audit:read")
        if denied is not None:
            return denied
        params = self._params(request)
        fields = list(dict.fromkeys(params.pop("field", []))) or list(DEFAULT_FACETS)
        for f in fields:
            if f not in FACETS:
                return _error(400, f"field: {f[:80]!r} is not a facet (facets: {', '.join(FACETS)})")
        raw = params.pop("limit", [])
        top = FACET_DEFAULT_LIMIT
        if len(raw) > 1:
            return _error(400, f"limit: given {len(raw)} times; it takes one value")
        if raw:
            if not raw[0].isascii() or not raw[0].isdigit() or not 1 <= int(raw[0]) <= FACET_MAX_LIMIT:
                return _error(400, f"limit: expected a number from 1 to {FACET_MAX_LIMIT}, got {raw[0][:20]!r}")
            top = int(raw[0])
        for k in ("order", "cursor", "format", "include"):
            if k in params:
                return _error(400, f"{k}: /v1/facets takes the filters of /v1/events, not {k}")
        try:
            query = q.build(params, self.store.dialect)
        except q.QueryError as exc:
            return _error(400, str(exc))
        cap, deadline = self.cfg.facet_max_rows, float(self.cfg.query_timeout_s)
        try:
            got = await run_in_threadpool(self.store.facets, query.where, query.params, fields, top=top,
                                          max_scan=cap, deadline=deadline)
            complete = got["scanned"] < cap or await run_in_threadpool(
                self.store.count, query.where, query.params, cap=cap, deadline=deadline) <= cap
        except StoreTimeout as exc:
            return _error(503, f"facets: {exc}; narrow the query (from/to, action ...)",
                          headers={"Retry-After": "5"})
        out = {f: {"values": [{"value": v, "count": n} for v, n in c["values"]], "missing": c["missing"],
                   "other": c["other"]} for f, c in got["facets"].items()}
        self._audit(request, "audit_facets", got["scanned"], f"GET /v1/facets?{request.url.query}")
        return _json({"total": got["scanned"], "complete": complete, "limit": top, "facets": out})

    async def event(self, request: Request) -> Response:
        denied = self._allowed(request, "audit:read")
        if denied is not None:
            return denied
        eid = request.path_params["event_id"]
        row = await run_in_threadpool(self.store.get, eid)
        if row is None:
            return _error(404, f"no event with id {eid[:80]!r}")
        self._audit(request, "audit_event", 1, f"GET /v1/events/{eid}")
        return _json(q.event_json(row))

    async def proof(self, request: Request) -> Response:
        """The event's inclusion proof (C2SP tlog-proof@v1, text/plain; JSON with Accept: application/json)."""
        denied = self._allowed(request, "audit:read")
        if denied is not None:
            return denied
        eid = request.path_params["event_id"]
        raw_size = request.query_params.get("size")
        size = None
        if raw_size is not None:
            if not raw_size.isascii() or not raw_size.isdigit() or len(raw_size) > 19 or int(raw_size) >= 1 << 63:
                return _error(400, f"size: expected a tree size (a number below 2^63), got {raw_size[:20]!r}")
            size = int(raw_size)
        m = await run_in_threadpool(self.store.proof_material, eid, size)
        got = self._proof_of(eid, m, size)
        if isinstance(got, Response):
            return got
        p, cp = got
        from otel_audit.service.proof import signed_at

        self._audit(request, "inclusion_proof", 1, f"GET /v1/events/{eid}/proof")
        if "application/json" in request.headers.get("accept", ""):
            return _json({"index": p.leaf_index, "tree_size": cp["size"],
                          "signed": signed_at(m["canonical"]) if m else None,
                          "hashes": [base64.b64encode(h).decode() for h in p.hashes],
                          "checkpoint": p.note, "extra": base64.b64encode(p.extra).decode(), "tlog_proof": p.text()})
        return Response(p.text(), media_type="text/plain; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{eid}.tlog-proof"'})

    def _add_proofs(self, events: list[dict[str, Any]]) -> None:
        """include=proof: each proven event's C2SP tlog-proof (as GET /v1/events/{id}/proof gives it) under
        "proof", null with "proof_unavailable" saying why for the others."""
        for e in events:
            got = self._proof_of(e["id"], self.store.proof_material(e["id"], None), None)
            if isinstance(got, Response):
                e["proof"] = None
                e["proof_unavailable"] = orjson.loads(got.body)["error"]["message"]
            else:
                e["proof"] = got[0].text()

    def _proof_of(self, eid: str, m: dict[str, Any] | None, size: int | None) -> Any:
        """(the tlog-proof, its checkpoint) from the store's proof material, or the error to answer."""
        from otel_audit.service import proof as tlog

        if m is None:
            return _error(404, f"no event with id {eid[:80]!r}")
        if m["stream_id"] is None:
            return _error(409, "the event is unsigned: it is in no producer's tree, so there is nothing to prove")
        cp = m["checkpoint"]
        if cp is None:
            what = f"at size {size}" if size is not None else "above it"
            return _error(409, f"no verified checkpoint of stream {m['stream_id']} {what} yet: the event is pending "
                               "(ask again after the producer's next checkpoint)")
        if m["missing"]:
            return _error(500, f"the store lacks records of the {cp['size']} the checkpoint covers: records were "
                               "removed (run otel-audit verify --store)")
        return tlog.build(m["path"], m["seq"], cp["note"], m["prev"], m["canonical"], cp["cosignature"]), cp

    # -- the Bifrost-compatible API (docs/service.md §6)

    def _bifrost_query(self, params: dict[str, list[str]], *, paged: bool) -> Any:
        """(our query, page, offset, window) for Bifrost's parameters, or the 400 to answer."""
        from otel_audit.service import bifrost as bf

        try:
            if paged:
                page, limit, inner, window = bf.paging(params)
            else:
                for k in ("page", "limit", "cursor"):
                    if k in params:
                        return _error(400, f"{k}: the export streams every matching event; it takes no {k}")
                page, limit, inner, window = 1, EXPORT_PAGE, None, None
            ours, window = bf.to_params(params, window=window)
        except bf.BifrostError as exc:
            return _error(400, str(exc))
        ours["limit"] = [str(limit)]
        if inner:
            ours["cursor"] = [inner]
        try:
            query = q.build(ours, self.store.dialect)
        except q.QueryError as exc:  # a value bad for our engine too (an IP, a cursor): named in Bifrost's terms
            msg = str(exc)
            for bname, oname in (("initiator_id", "actor"), ("request_ip", "client.address"), ("search", "q"),
                                 ("target_id", "target.id"), ("target_type", "target.type")):
                if msg.startswith(oname + ":"):
                    msg = bname + msg[len(oname):]
            return _error(400, msg)
        return query, page, 0 if inner else (page - 1) * limit, window

    async def bifrost_list(self, request: Request) -> Response:
        """GET /api/audit-logs: Bifrost's AuditLogsResult."""
        from otel_audit.service import bifrost as bf

        denied = self._allowed(request, "audit:read")
        if denied is not None:
            return denied
        got = self._bifrost_query(self._params(request), paged=True)
        if isinstance(got, Response):
            return got
        query, page, offset, window = got
        try:
            rows = await run_in_threadpool(self.store.query, query.where, query.params, order=query.order,
                                           limit=query.limit, after=query.after, offset=offset)
            total = await run_in_threadpool(self.store.count, query.where, query.params,
                                            deadline=float(self.cfg.query_timeout_s))
        except StoreTimeout as exc:
            return _error(503, f"audit-logs: {exc}; narrow the query (start_date/end_date, actions ...)",
                          headers={"Retry-After": "5"})
        logs = [bf.audit_log(q.event_json(r)) for r in rows.rows]
        nxt = (bf.cursor(page + 1, window, q.cursor_for(query, rows.next_cursor))
               if rows.next_cursor is not None else None)
        self._audit(request, "audit_events", len(logs), f"GET /api/audit-logs?{request.url.query}")
        return _json({"audit_logs": logs, "total": total, "page": page, "limit": query.limit,
                      "total_pages": -(-total // query.limit), "has_more": nxt is not None, "next_cursor": nxt})

    async def bifrost_get(self, request: Request) -> Response:
        from otel_audit.service import bifrost as bf

        denied = self._allowed(request, "audit:read")
        if denied is not None:
            return denied
        eid = request.path_params["event_id"]
        row = await run_in_threadpool(self.store.get, eid)
        if row is None:
            return _error(404, f"no audit log with id {eid[:80]!r}")
        self._audit(request, "audit_event", 1, f"GET /api/audit-logs/{eid}")
        return _json({"audit_log": bf.audit_log(q.event_json(row))})

    async def bifrost_verify(self, request: Request) -> Response:
        """Bifrost's AuditVerifyResult {valid, computed, stored}: here the record's chained digest recomputed from
        its stored signed content (computed) against the one it carried (stored), and its inclusion proof in the
        producer's signed checkpoint, checked by the service with the producers' keyring (proof, proof_check)."""
        from otel_audit import canonical
        from otel_audit.canonical import CHECKPOINT_EVENT
        from otel_audit.note import NoteError, parse_note
        from otel_audit.service import proof as tlog

        denied = self._allowed(request, "audit:read")
        if denied is not None:
            return denied
        eid = request.path_params["event_id"]
        row = await run_in_threadpool(self.store.get, eid)
        if row is None:
            return _error(404, f"no audit log with id {eid[:80]!r}")
        m = await run_in_threadpool(self.store.proof_material, eid, None)
        out: dict[str, Any] = {"valid": False, "computed": None, "stored": None, "status": row["status"],
                               "reason": None, "proof": None, "checkpoint": None}
        if m is None or m["stream_id"] is None:
            out["reason"] = "unsigned: the event carries no integrity attributes, so nothing proves it"
        else:
            computed = canonical.record_digest(m["prev"], m["canonical"]).hex()
            stored = row["digest"].hex() if row["digest"] is not None else None
            out["computed"], out["stored"] = computed, stored
            got = self._proof_of(eid, m, None)
            own_cp = None
            if row["event"] == CHECKPOINT_EVENT and isinstance(got, Response):  # a checkpoint proves itself
                cps = await run_in_threadpool(self.store.checkpoints, m["stream_id"])
                own_cp = next((c for c in cps if c["size"] == m["seq"]), None)
            if computed != stored:
                out["reason"] = "the record was modified after signing: its content does not give its digest"
            elif own_cp is not None:
                out["checkpoint"] = {"size": own_cp["size"], "note": own_cp["note"]}
                try:
                    status = self.ingest.keyring.check_note(parse_note(own_cp["note"])).status
                except (NoteError, ValueError) as exc:
                    status = f"unreadable ({exc})"
                if status != "ok":
                    out["reason"] = f"the checkpoint's signature does not verify with the producers' keyring: {status}"
                else:
                    out["valid"] = True
                    out["reason"] = (f"the record is stream {m['stream_id']}'s signed checkpoint of {own_cp['size']} "
                                     "records; its signature verifies with the producers' keyring")
            elif isinstance(got, Response):
                out["reason"] = orjson.loads(got.body)["error"]["message"]
            else:
                p, cp = got
                text = p.text()
                out["proof"], out["checkpoint"] = text, {"size": cp["size"], "note": cp["note"]}
                try:
                    tlog.check(text, self.ingest.keyring)
                except tlog.ProofError as exc:
                    out["reason"] = f"the inclusion proof does not check: {exc}"
                else:
                    out["valid"] = True
                    out["reason"] = (f"record {m['seq']} of stream {m['stream_id']} is in the tree of {cp['size']} "
                                     "records its producer signed; the proof checks with the producers' keyring")
        self._audit(request, "inclusion_proof", 1, f"GET /api/audit-logs/{eid}/verify")
        return _json(out)

    async def bifrost_filterdata(self, request: Request) -> Response:
        """Bifrost's AuditFilterDataResponse: the distinct values of each filter dimension (the most frequent
        FILTERDATA_TOP), those holding `q` when given."""
        from otel_audit.service import bifrost as bf

        denied = self._allowed(request, "audit:read")
        if denied is not None:
            return denied
        params = self._params(request)
        unknown = sorted(k for k in params if k not in ("dimensions", "q"))
        if unknown:
            return _error(400, f"{unknown[0][:80]}: unknown parameter (known: dimensions, q)")
        for k, vs in params.items():
            if len(vs) > 1:
                return _error(400, f"{k}: given {len(vs)} times; it takes one value")
            if "\x00" in vs[0] or len(vs[0]) > 1000:
                return _error(400, f"{k}: a value with a NUL character or over 1000 characters")
        try:
            wanted = bf.dimensions(params["dimensions"][0] if "dimensions" in params else None)
        except bf.BifrostError as exc:
            return _error(400, str(exc))
        fields = list(dict.fromkeys(f for d in wanted for f in bf.DIMENSION_FACETS[d]))
        contains = params["q"][0] if params.get("q") and params["q"][0] else None
        try:
            got = (await run_in_threadpool(self.store.facets, "", [], fields, top=FILTERDATA_TOP,
                                           max_scan=self.cfg.facet_max_rows, contains=contains,
                                           deadline=float(self.cfg.query_timeout_s))) if fields else {"facets": {}}
        except StoreTimeout as exc:
            return _error(503, f"filterdata: {exc}", headers={"Retry-After": "5"})
        self._audit(request, "audit_filter_values", None, f"GET /api/audit-logs/filterdata?{request.url.query}")
        return _json(bf.filterdata(got["facets"], wanted, contains))

    async def bifrost_export(self, request: Request) -> Response:
        """Every event the filters match, streamed page by page (bounded memory): json (one array), jsonl or
        csv (csvout's columns); scope audit:export."""
        from otel_audit.service import bifrost as bf
        from otel_audit.service import csvout

        denied = self._allowed(request, "audit:export")
        if denied is not None:
            return denied
        params = self._params(request)
        fmts = params.pop("format", ["json"])
        fmt = fmts[0]
        if len(fmts) > 1 or fmt not in bf.EXPORT_FORMATS:
            return _error(400, f"format: expected one of {', '.join(bf.EXPORT_FORMATS)} (syslog is not offered)")
        got = self._bifrost_query(params, paged=False)
        if isinstance(got, Response):
            return got
        query = got[0]
        what = f"GET /api/audit-logs/export?{request.url.query}"

        async def body() -> Any:
            after = None
            sent = 0
            try:
                if fmt == "json":
                    yield b"["
                while True:
                    page = await run_in_threadpool(self.store.query, query.where, query.params, order=query.order,
                                                   limit=EXPORT_PAGE, after=after)
                    events = [q.event_json(r) for r in page.rows]
                    if fmt == "csv":
                        chunk = csvout.rows(events, header=sent == 0 and after is None)
                    elif fmt == "jsonl":
                        chunk = b"".join(orjson.dumps(bf.audit_log(e)) + b"\n" for e in events)
                    else:
                        chunk = b",".join(orjson.dumps(bf.audit_log(e)) for e in events)
                        if sent and events:
                            chunk = b"," + chunk
                    sent += len(events)
                    yield chunk
                    if page.next_cursor is None:
                        break
                    after = page.next_cursor
                if fmt == "json":
                    yield b"]\n"
            finally:
                self._audit_export(request, fmt, sent, what)

        media = {"json": JSON, "jsonl": NDJSON, "csv": csvout.MEDIA_TYPE}[fmt]
        ext = {"json": "json", "jsonl": "jsonl", "csv": "csv"}[fmt]
        return StreamingResponse(body(), media_type=media,
                                 headers={"Content-Disposition": f'attachment; filename="audit-logs.{ext}"'})

    # -- asynchronous exports (docs/service.md §4a)

    async def export_start(self, request: Request) -> Response:
        """POST /v1/exports: start an export of the events a /v1/events query matches; 202 with its URL."""
        from otel_audit.service import exports as ex

        denied = self._allowed(request, "audit:export")
        if denied is not None:
            return denied
        raw = bytearray()
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > EXPORT_BODY_MAX:
                return _error(413, f"the body: over {EXPORT_BODY_MAX} bytes; an export request is a few filters")
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if raw and ctype not in ("", JSON):
            return _error(415, f"Content-Type {ctype[:60]!r}: send {JSON}")
        try:
            doc = strict_loads(bytes(raw)) if raw.strip() else {}
            params, fmt = ex.parse_body(doc)
        except DecodeError as exc:
            return _error(400, f"the body: not strict JSON ({exc})")
        except (ex.ExportError, q.QueryError) as exc:
            return _error(400, str(exc))
        actor, kind = self._who(request)
        who = {"audit.actor.id": actor, "audit.actor.type": kind,
               "client.address": request.client.host if request.client else None}
        try:
            e = self.exports.start(params, fmt, who)
        except ex.Busy as exc:
            return _error(429, f"too many exports at once: {exc}; retry when one is done", headers={"Retry-After": "5"})
        self._own_emit("data_access.data.exported", {
            **who, "audit.target.type": "audit_events", "audit.target.id": e.id, "audit.export.format": fmt,
            "audit.export.status": "requested",
            "db.query.text": f"POST /v1/exports {orjson.dumps({**params, 'format': fmt}).decode()}"[:2000]}, None)
        return _json({"id": e.id, "status": "running", "url": f"/v1/exports/{e.id}"}, 202,
                     headers={"Location": f"/v1/exports/{e.id}"})

    async def export_list(self, request: Request) -> Response:
        denied = self._allowed(request, "audit:export")
        if denied is not None:
            return denied
        return _json({"exports": self.exports.listing()})

    async def export_get(self, request: Request) -> Response:
        denied = self._allowed(request, "audit:export")
        if denied is not None:
            return denied
        e = self.exports.get(request.path_params["export_id"])
        if e is None:
            return _error(404, f"no export with id {request.path_params['export_id'][:80]!r}")
        return _json(e.public())

    async def export_file(self, request: Request) -> Response:
        """The export's file, streamed from disk (a client that stops reading leaves it as it is)."""
        from starlette.responses import FileResponse

        denied = self._allowed(request, "audit:export")
        if denied is not None:
            return denied
        eid = request.path_params["export_id"]
        e = self.exports.get(eid)
        if e is None:
            return _error(404, f"no export with id {eid[:80]!r}")
        if e.doc["status"] != "done":
            why = f": {e.doc['reason']}" if e.doc.get("reason") else ""
            return _error(409, f"export {eid} is {e.doc['status']}{why}; its file is there once it is done")
        path = self.exports.file(e.id)
        if not path.is_file():
            return _error(410, f"export {eid}: its file was removed from {path.parent}")
        self._audit(request, "audit_export_file", e.doc["events"], f"GET /v1/exports/{eid}/file")
        ext = "audit-bundle.ndjson" if e.doc["format"] == "bundle" else "otlp.jsonl"
        return FileResponse(path, media_type=NDJSON, filename=f"{eid}.{ext}",
                            headers={"X-Content-SHA256": e.doc["sha256"] or ""})

    async def openapi(self, request: Request) -> Response:
        from otel_audit.service.openapi import document

        return _json(document())

    async def streams(self, request: Request) -> Response:
        denied = self._allowed(request, "audit:read")
        if denied is not None:
            return denied
        rows = await run_in_threadpool(self.store.streams)
        out = []
        for s in rows:
            state = "closed" if s["closed"] else "open"
            out.append({"id": s["stream_id"], "service": s["service"], "state": state,
                        "signed": "at ingest" if s["signed"] == INGEST else "at source", "records": s["records"],
                        "linked": s["length"], "sealed": s["proven"],
                        "proven": s["proven"] - s["failed_sealed"], "failed": s["failed"],
                        "first_ingest": q.rfc3339(s["first_ingest"]), "last_ingest": q.rfc3339(s["last_ingest"]),
                        "last_checkpoint": q.rfc3339(s["last_checkpoint_ts"]) if s["last_checkpoint_ts"] else None})
        return _json({"streams": out})

    async def checkpoints(self, request: Request) -> Response:
        denied = self._allowed(request, "audit:read")
        if denied is not None:
            return denied
        stream = request.query_params.get("stream")
        rows = await run_in_threadpool(self.store.checkpoints, stream)
        out = [{"stream": r["stream_id"], "size": r["size"], "root": r["root"].hex(), "kind": r["kind"],
                "time": q.rfc3339(r["time_ns"]), "note": r["note"], "cosignature": r["cosignature"] or None}
               for r in rows]
        return _json({"checkpoints": out})

    async def findings(self, request: Request) -> Response:
        denied = self._allowed(request, "audit:read")
        if denied is not None:
            return denied
        stream = request.query_params.get("stream")
        rows = await run_in_threadpool(self.store.findings, stream)
        out = [{"id": r["id"], "stream": r["stream_id"], "seq": r["stream_seq"], "kind": r["kind"],
                "reason": r["reason"], "ingest_time": q.rfc3339(r["ingest_ts"])} for r in rows]
        return _json({"findings": out})

    async def _unavailable(self, request: Request, exc: Exception) -> Response:
        _log.error("%s %s: %s; answered 503 (retryable)", request.method, request.url.path, exc)
        return _error(503, "the store is unavailable: retry later", headers={"Retry-After": "5"})

    async def health(self, request: Request) -> Response:
        return _json({"status": "ok", **self.ingest.counts})


#: modules a request may import lazily, imported once before any thread serves: two threads importing modules
#: that import each other (otel_audit.verify's) can each see the other's half-initialised module (ImportError)
_PRELOAD = ("otel_audit.verify", "otel_audit.verify.prove", "otel_audit.verify.liveness", "otel_audit.decoding",
            "otel_audit.service.otlp_proto", "otel_audit.service.proof", "otel_audit.service.filter",
            "otel_audit.service.fields", "otel_audit.service.tiles", "otel_audit.service.store.sqlite",
            "otel_audit.service.ingest_sign", "otel_audit.service.bifrost", "otel_audit.service.csvout",
            "otel_audit.service.openapi", "otel_audit.service.exports", "starlette.responses",
            "otel_audit.config", "otel_audit.logger", "otel_audit.exporters._settings",
            "requests", "google.rpc.status_pb2", "uuid",
            "datetime", "hashlib")


def preload() -> None:
    import importlib

    for name in _PRELOAD:
        importlib.import_module(name)


def build(cfg: ServiceConfig) -> Service:
    from otel_audit.keys import Keyring, Signer

    preload()
    from otel_audit.errors import KeyringError
    from otel_audit.service.store import open_store

    def named(key: str, exc: KeyringError, what: str) -> ConfigError:
        # the keyring's own hint names the CLI's --keys, which serve does not take: the config key is the place
        reason = str(exc).split("; pass --keys", 1)[0]
        return ConfigError(f"{cfg.source}: {key}: {reason}; set {key}: to {what}")

    try:
        keyring = Keyring.load(cfg.keys)
    except KeyringError as exc:
        raise named("keys", exc, "the producers' public keyring (a keyring.json, or a folder of them)") from None
    witness = None
    if cfg.witness_keys is not None:
        try:
            witness = Signer.from_keys_dir(cfg.witness_keys)
            witness_ring = Keyring.load(cfg.witness_keys)
        except KeyringError as exc:
            raise named("witness_keys", exc,
                        "the service's own keys folder (otel-audit keys generate --dir FOLDER)") from None
        for k in witness_ring:  # the service's own stream is signed with its keys
            keyring.add(k, f"{cfg.witness_keys} (the service's keys)")
    store = open_store(cfg.store)
    from otel_audit.service.ingest_sign import IngestSigner

    sai = cfg.sign_at_ingest
    signer = IngestSigner(witness if sai.enabled else None, every=sai.checkpoint_every,
                          interval_s=sai.checkpoint_interval)
    signer.load(store)  # the streams signed at ingest so far: continued, and closed to every client
    ingest = Ingest(store, keyring, witness=witness, signer=signer)
    ingest.tick()  # seal what a crash left unsealed (when its interval passed)
    return Service(cfg, store, ingest)


def finding_attributes(f: Any) -> dict[str, Any]:
    """The service's own signed event for a finding: what, where, and the hash of the evidence it keeps, so that
    `verify --store` names a findings row removed or edited afterwards (findings are not chained themselves)."""
    return {"audit.reason": f.reason[:1000], "audit.target.type": "audit_stream",
            "audit.target.id": f.stream_id or "a request", "audit.finding.kind": f.kind,
            "audit.finding.seq": f.stream_seq, "audit.finding.evidence_sha256": hashlib.sha256(f.evidence).hexdigest()}


def serve(cfg: ServiceConfig) -> int:
    """Run the service until SIGTERM/SIGINT (uvicorn handles both: it stops accepting, finishes the requests in
    flight, then returns)."""
    import socket

    import uvicorn

    svc = build(cfg)
    family = socket.AF_INET6 if ":" in cfg.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # accepted connections inherit it: a response's headers and body go out at once (no 40 ms delayed-ACK stall)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((cfg.host, cfg.port))
    except OSError as exc:
        sock.close()
        svc.store.close()
        raise ConfigError(f"http.endpoint: cannot listen on {cfg.host}:{cfg.port}: {exc.strerror}") from None
    sock.listen(128)
    port = sock.getsockname()[1]
    own = None
    if cfg.witness_keys is not None:
        from otel_audit.service import own as own_stream

        # the own pipeline's token, made now and known only to this process: what tells its requests from a
        # client's (only they may write as the audit service), and its ingest credential when tokens are on
        token = own_stream.internal_token()
        svc.internal = hashlib.sha256(token.encode()).digest()
        if cfg.tokens:
            internal = Token(own_stream.INTERNAL, svc.internal, frozenset({"ingest"}))
            svc.cfg = svc.cfg._replace(tokens=(*svc.cfg.tokens, internal))
        loop_host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(cfg.host, cfg.host)
        url = f"http://[{loop_host}]:{port}" if ":" in loop_host else f"http://{loop_host}:{port}"
        # the own stream's spool and chain state
        own_dir = beside_store(svc.store.url, cfg.source, ".service", "otel-audit-service.state")
        own = own_stream.OwnStream(cfg.witness_keys, own_dir, url, token)
        svc.own = own
        svc.ingest.on_finding = lambda f: own.emit("security.integrity.violated", finding_attributes(f))
    for e in svc.exports.recover():  # an export running when the service stopped is failed now, and said so
        _log.warning("export %s was running when the service stopped: failed (%s)", e.id, e.doc["reason"])
        svc.exports.completed(e)
    config = uvicorn.Config(svc.asgi, host=cfg.host, port=port, log_level="warning", access_log=False,
                            lifespan="off", timeout_graceful_shutdown=30)
    done: set[str] = set()  # what the stop already did (the last steps run while the listener still serves)

    def seal() -> None:
        """The last steps of a stop, while the HTTP listener still serves: the producers' streams signed at
        ingest ended, then the service's own stream sealed and delivered through it (into the store)."""
        svc.stopping = True  # from now on reads are refused (503): none would be recorded in the own stream
        if ticker is not None and "ingest" not in done:
            ticker.stop()
            try:
                svc.ingest.tick(end=True)  # every producer's stream signed at ingest ends cleanly
            except Exception:  # noqa: BLE001 - at exit: said; the next start continues the streams instead
                _log.exception("the streams signed at ingest could not be closed; the next start continues them")
        done.add("ingest")
        if own is not None and "own" not in done:
            own.shutdown()  # its end checkpoint, delivered now; what it could not deliver stays in its spool
        done.add("own")

    server = _Server(config, seal)
    host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
    receiver = None
    if cfg.grpc is not None:
        from otel_audit.service.grpc_receiver import GrpcReceiver

        receiver = GrpcReceiver(cfg, svc.ingest, *cfg.grpc)
        receiver.start()
        g = f"[{cfg.grpc[0]}]" if ":" in cfg.grpc[0] else cfg.grpc[0]
        print(f"otel-audit serve: OTLP/gRPC logs at {g}:{receiver.port}", flush=True)
    print(f"otel-audit serve: listening on http://{host}:{port} (OTLP/HTTP logs at /v1/logs, query API at "
          f"/v1/events); store {svc.store.url}", flush=True)
    ticker = _Ticker(svc.ingest) if svc.ingest.signer is not None and svc.ingest.signer.enabled else None
    if ticker is not None:
        print(f"otel-audit serve: signing unsigned records at ingest with key {cfg.witness_keys} "
              f"({svc.ingest.signer.open_streams(svc.store) if svc.ingest.signer else 0} producer stream(s) open)",
              flush=True)
    try:
        try:
            server.run(sockets=[sock])
        except SystemExit as exc:
            # uvicorn's graceful stop re-raises SIGTERM / SIGINT at the process, and the audit signal handler
            # (otel_audit.lifecycle) turns it into SystemExit(128 + signum): the stop asked for, done cleanly
            import signal

            if exc.code not in (128 + signal.SIGTERM, 128 + signal.SIGINT):
                raise
        except KeyboardInterrupt:  # SIGINT re-raised through Python's own handler: the same clean stop
            pass
    finally:
        if receiver is not None:
            receiver.stop()
        seal()  # what the stop did not get to while serving (a stop that timed out, or an error in run)
        svc.store.close()
    return 0


#: how long a stop waits for its last steps (Server.on_tick) before the listener closes anyway
SEAL_TIMEOUT_S = 30.0


def _server_class() -> Any:
    import threading
    import time

    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, whose graceful stop first runs `seal` (in a thread) while it still serves: the
        service's own stream posts its last records, its end checkpoint, to this very listener."""

        def __init__(self, config: Any, seal: Any) -> None:
            super().__init__(config)
            self._seal = seal
            self._sealing: threading.Thread | None = None
            self._deadline = 0.0

        async def on_tick(self, counter: int) -> bool:
            if not await super().on_tick(counter):
                return False
            if self.force_exit:  # a second signal: stop now
                return True
            if self._sealing is None:
                self._sealing = threading.Thread(target=self._seal, name="otel-audit-seal", daemon=True)
                self._deadline = time.monotonic() + SEAL_TIMEOUT_S
                self._sealing.start()
            # keep serving until the seal is done (or its time is up)
            return not (self._sealing.is_alive() and time.monotonic() < self._deadline)

    return Server


def _Server(config: Any, seal: Any) -> Any:  # noqa: N802 - a class made on first use (uvicorn imported late)
    return _server_class()(config, seal)


class _Ticker:
    """Signing at ingest's clock: a `time` checkpoint for every producer stream whose records wait unsealed
    longer than the interval (checked every min(interval, 1 s))."""

    def __init__(self, ingest: Ingest) -> None:
        import threading

        self.ingest = ingest
        signer = ingest.signer
        self.every = min(1.0, signer.interval_ns / 1e9) if signer is not None else 1.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="otel-audit-ingest-checkpoints", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.ingest.tick()
            except StoreUnavailable as exc:  # the database away or busy: one line, tried again next time
                _log.error("signing at ingest: a periodic checkpoint could not be stored (%s); retried", exc)
            except Exception:  # noqa: BLE001 - the store failing now: said, and tried again next time
                _log.exception("signing at ingest: a periodic checkpoint failed; retried")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
