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
import logging
import zlib
from pathlib import Path
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from otel_audit.decoding import DecodeError
from otel_audit.decoding import loads as strict_loads
from otel_audit.errors import ConfigError
from otel_audit.service import query as q
from otel_audit.service.config import ServiceConfig, Token
from otel_audit.service.ingest import Ingest, IngestError
from otel_audit.service.store import Store, StoreUnavailable

_log = logging.getLogger("otel_audit.service")
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
NDJSON = "application/x-ndjson"


def _json(doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON answer, ending in a newline (one per line on a terminal, as curl prints it)."""
    return Response(orjson.dumps(doc) + b"\n", status_code=status, media_type=JSON, headers=headers)


def _error(status: int, message: str, *, headers: dict[str, str] | None = None) -> Response:
    return _json({"error": {"status": status, "message": message}}, status, headers)


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
        self._inflight = asyncio.Semaphore(cfg.max_inflight)
        self._waiting = 0
        self.app = Starlette(routes=[
            Route("/v1/logs", self.logs, methods=["POST"]),
            Route("/v1/events", self.events, methods=["GET"]),
            Route("/v1/events/{event_id}", self.event, methods=["GET"]),
            Route("/v1/events/{event_id}/proof", self.proof, methods=["GET"]),
            Route("/v1/streams", self.streams, methods=["GET"]),
            Route("/v1/checkpoints", self.checkpoints, methods=["GET"]),
            Route("/v1/findings", self.findings, methods=["GET"]),
            Route("/healthz", self.health, methods=["GET"]),
        ], exception_handlers={StoreUnavailable: self._unavailable})

    # -- auth

    def _who(self, request: Request) -> tuple[str, str]:
        """(actor id, actor type) of an allowed request, for the service's own audit events."""
        if not self.cfg.tokens:
            return "anonymous (loopback, no tokens configured)", "anonymous"
        t = self.cfg.token(request.headers.get("authorization", "").partition(" ")[2].strip())
        return (t.name, "api_token") if t is not None else ("unknown", "api_token")

    def _audit(self, request: Request, target: str, count: int | None, what: str) -> None:
        """The service's own `data_access.logs.queried` event for an answered read."""
        if self.own is None:
            return
        actor, kind = self._who(request)
        self.own.emit("data_access.logs.queried", {
            "audit.actor.id": actor, "audit.actor.type": kind, "audit.target.type": target,
            "db.query.text": what[:2000], "audit.query.result_count": count,
            "client.address": request.client.host if request.client else None})

    def _allowed(self, request: Request, scope: str) -> Response | None:
        """None when the request may do `scope`; else the 401/403 to answer."""
        if not self.cfg.tokens:
            return None  # loopback only (config refuses another address without tokens)
        auth = request.headers.get("authorization", "")
        kind, _, token = auth.partition(" ")
        if kind.lower() != "bearer" or not token:
            return _error(401, "authentication required: send Authorization: Bearer <token>",
                          headers={"WWW-Authenticate": 'Bearer realm="otel-audit"'})
        t = self.cfg.token(token.strip())
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
        try:
            async with self._inflight:
                return await run_in_threadpool(self._ingest, raw, proto)
        finally:
            self._waiting -= 1

    def _ingest(self, raw: bytes, proto: bool) -> Response:
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
            result = self.ingest.ingest(doc)
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
        fmt = (params.get("format") or [""])[0] or ("ndjson" if NDJSON in request.headers.get("accept", "") else "json")
        if fmt not in ("json", "ndjson"):
            return _error(400, "format: expected json or ndjson")
        page = await run_in_threadpool(self.store.query, query.where, query.params, order=query.order,
                                       limit=query.limit, after=query.after)
        events = [q.event_json(r) for r in page.rows]
        nxt = q.cursor_for(query, page.next_cursor) if page.next_cursor is not None else None
        if query.order == "seq" and nxt is None and page.rows:  # polling: the next poll starts after the last row
            nxt = q.cursor_for(query, (page.rows[-1]["seq"],))
        elif query.order == "seq" and nxt is None and query.after is not None:
            nxt = q.cursor_for(query, query.after)
        proven: dict[str, int] = {}
        for r in page.rows:
            if r["stream_id"] is not None:
                proven[r["stream_id"]] = r["proven"] or 0
        meta = {"next_cursor": nxt, "count": len(events),
                "streams": [{"id": s, "proven": n} for s, n in sorted(proven.items())]}
        self._audit(request, "audit_events", len(events), f"GET /v1/events?{request.url.query}")
        if fmt == "ndjson":
            lines = b"".join(orjson.dumps(e) + b"\n" for e in events)
            headers = {"X-Next-Cursor": nxt} if nxt else {}
            return Response(lines, media_type=NDJSON, headers=headers)
        return _json({"events": events, **meta})

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
        from otel_audit.service import proof as tlog

        denied = self._allowed(request, "audit:read")
        if denied is not None:
            return denied
        eid = request.path_params["event_id"]
        raw_size = request.query_params.get("size")
        size = None
        if raw_size is not None:
            if not raw_size.isascii() or not raw_size.isdigit() or len(raw_size) > 19:
                return _error(400, f"size: expected a tree size (a number), got {raw_size[:20]!r}")
            size = int(raw_size)
        m = await run_in_threadpool(self.store.proof_material, eid, size)
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
        p = tlog.build(m["path"], m["seq"], cp["note"], m["prev"], m["canonical"], cp["cosignature"])
        self._audit(request, "inclusion_proof", 1, f"GET /v1/events/{eid}/proof")
        if "application/json" in request.headers.get("accept", ""):
            return _json({"index": p.leaf_index, "tree_size": cp["size"],
                          "hashes": [base64.b64encode(h).decode() for h in p.hashes],
                          "checkpoint": p.note, "extra": base64.b64encode(p.extra).decode(), "tlog_proof": p.text()})
        return Response(p.text(), media_type="text/plain; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{eid}.tlog-proof"'})

    async def streams(self, request: Request) -> Response:
        denied = self._allowed(request, "audit:read")
        if denied is not None:
            return denied
        rows = await run_in_threadpool(self.store.streams)
        out = []
        for s in rows:
            state = "closed" if s["closed"] else "open"
            out.append({"id": s["stream_id"], "service": s["service"], "state": state, "records": s["records"],
                        "linked": s["length"], "proven": s["proven"], "failed": s["failed"],
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


def build(cfg: ServiceConfig) -> Service:
    from otel_audit.keys import Keyring, Signer
    from otel_audit.service.store import open_store

    keyring = Keyring.load(cfg.keys)
    witness = None
    if cfg.witness_keys is not None:
        witness = Signer.from_keys_dir(cfg.witness_keys)
        for k in Keyring.load(cfg.witness_keys):  # the service's own stream is signed with its keys
            keyring.add(k, f"{cfg.witness_keys} (the service's keys)")
    store = open_store(cfg.store)
    return Service(cfg, store, Ingest(store, keyring, witness=witness))


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

        token = None
        if cfg.tokens:
            token = own_stream.internal_token()
            internal = Token(own_stream.INTERNAL, hashlib.sha256(token.encode()).digest(), frozenset({"ingest"}))
            svc.cfg = svc.cfg._replace(tokens=(*svc.cfg.tokens, internal))
        loop_host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(cfg.host, cfg.host)
        url = f"http://[{loop_host}]:{port}" if ":" in loop_host else f"http://{loop_host}:{port}"
        if svc.store.url.startswith("sqlite:///"):
            store_path = Path(svc.store.url.removeprefix("sqlite:///"))
            own_dir = store_path.with_name(store_path.name + ".service")
        else:  # a database server: the own stream's spool and chain state beside the config file
            own_dir = Path(cfg.source).resolve().parent / "otel-audit-service.state"
        own = own_stream.OwnStream(cfg.witness_keys, own_dir, url, token)
        svc.own = own
        svc.ingest.on_finding = lambda f: own.emit("security.integrity.violated", {
            "audit.reason": f.reason[:1000], "audit.target.type": "audit_stream",
            "audit.target.id": f.stream_id or "a request"})
    config = uvicorn.Config(svc.app, host=cfg.host, port=port, log_level="warning", access_log=False,
                            lifespan="off", timeout_graceful_shutdown=30)
    server = uvicorn.Server(config)
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
    try:
        server.run(sockets=[sock])
    finally:
        if receiver is not None:
            receiver.stop()
        if own is not None:
            own.shutdown()  # what it could not deliver stays in its spool: sent at the next start
        svc.store.close()
    return 0
