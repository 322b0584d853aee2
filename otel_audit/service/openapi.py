"""The OpenAPI 3.1 document of the service's HTTP API, served at ``GET /v1/openapi.json``.

Written by hand as data (tests/test_service_api.py walks the app's routes and this document and fails when one
lacks the other, and checks the query parameters against the ones the code accepts)."""

from __future__ import annotations

from typing import Any

from otel_audit.service import bifrost
from otel_audit.service.store import FACETS

_ERR = {"$ref": "#/components/schemas/Error"}
_STATUS = {"$ref": "#/components/schemas/RpcStatus"}


def _p(name: str, description: str, *, schema: dict[str, Any] | None = None, repeat: bool = False,
       where: str = "query", required: bool = False) -> dict[str, Any]:
    s = schema or {"type": "string"}
    if repeat:
        s = {"type": "array", "items": s}
    out: dict[str, Any] = {"name": name, "in": where, "description": description, "schema": s}
    if repeat:
        out["style"], out["explode"] = "form", True
    if required or where == "path":
        out["required"] = True
    return out


_ID = _p("event_id", "the event's id: <stream id>-<seq>, or u-<hex> for an unsigned event", where="path")

#: the filters of GET /v1/events, also taken by GET /v1/facets
_FILTERS = [
    _p("actor", "audit.actor.id, else user.id (exact)", repeat=True),
    _p("user", "user.id (exact)", repeat=True),
    _p("category", "audit.category (exact)", repeat=True),
    _p("outcome", "audit.outcome (exact)", repeat=True),
    _p("target.type", "audit.target.type (exact)", repeat=True),
    _p("target.id", "audit.target.id (exact)", repeat=True),
    _p("service", "the resource's service.name (exact)", repeat=True),
    _p("stream", "audit.stream.id (exact)", repeat=True),
    _p("session", "session.id (exact)", repeat=True),
    _p("trace", "the trace id (exact)", repeat=True),
    _p("action", "the event name, exactly, or a prefix: authentication.*", repeat=True),
    _p("client.address", "an IP address or a CIDR network (IPv4-mapped IPv6 counts as IPv4)", repeat=True),
    _p("from", "event time from (inclusive): RFC 3339 with a zone, or unix seconds"),
    _p("to", "event time to (exclusive): RFC 3339 with a zone, or unix seconds"),
    _p("q", "full text: every word must occur (at most 32 words)"),
    _p("status", "proven, pending, failed or unsigned", repeat=True,
       schema={"type": "string", "enum": ["proven", "pending", "failed", "unsigned"]}),
    _p("filter", "a SCIM filter expression (RFC 7644 §3.4.2.2), e.g. user.id eq \"alice\" and event sw \"security.\""),
]
_EVENTS = [
    *_FILTERS,
    _p("order", "desc (default, newest first), asc, or ingest (the polling mode)",
       schema={"type": "string", "enum": ["desc", "asc", "ingest"]}),
    _p("limit", "events per page", schema={"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}),
    _p("cursor", "next_cursor of the previous page, unchanged"),
    _p("format", "json (default), ndjson or csv (RFC 4180; cells that start with = + - @ are prefixed with ')",
       schema={"type": "string", "enum": ["json", "ndjson", "csv"]}),
    _p("include", "proof: each proven event with its C2SP tlog-proof (json, ndjson)",
       schema={"type": "string", "enum": ["proof"]}),
]
_FACETS = [
    *_FILTERS,
    _p("field", "a facet to count (repeat for several); default action, category, outcome, actor, service, "
                "target.type, client.address", repeat=True, schema={"type": "string", "enum": list(FACETS)}),
    _p("limit", "values per facet (the most frequent)",
       schema={"type": "integer", "minimum": 1, "maximum": 100, "default": 10}),
]
_BIFROST_LIST_DOC = {
    "action": "a CADF action (create, read, update, delete, authenticate ...), or one of our event names (or "
              "a prefix such as authentication.*)",
    "outcome": "success, failure ...", "event_type": "activity, monitor or control",
    "initiator_id": "who acted: audit.actor.id, else user.id", "initiator_type": "not supported (400)",
    "target_id": "audit.target.id", "target_type": "audit.target.type", "request_method": "not supported (400)",
    "request_path": "not supported (400)", "request_ip": "client.address: an IP address or a CIDR network",
}
_BIFROST_FILTERS = [
    *[p for single, plural in bifrost.LISTS.items() for p in (
        _p(single, _BIFROST_LIST_DOC[single]),
        _p(plural, f"a JSON array of {single} values (OR); wins over {single}"))],
    _p("search", "full text: every word must occur"),
    _p("start_date", "from (inclusive): RFC 3339, or YYYY-MM-DD (its midnight, UTC)"),
    _p("end_date", "to (inclusive): RFC 3339, or YYYY-MM-DD (the whole day, UTC)"),
    _p("period", "the last 30m, 24h, 7d, 4w ...: overrides start_date and end_date"),
    _p("sort_by", "event_time (the only one)", schema={"type": "string", "enum": ["event_time"]}),
    _p("sort_order", "desc (default) or asc", schema={"type": "string", "enum": ["asc", "desc"]}),
    _p("tags", "not supported (400)"),
]
_BIFROST_LIST = [
    *_BIFROST_FILTERS,
    _p("page", "page number from 1 (page * limit at most 100,000 rows in; follow next_cursor beyond)",
       schema={"type": "integer", "minimum": 1, "default": 1}),
    _p("limit", "audit logs per page", schema={"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}),
    _p("cursor", "next_cursor of the previous page (keeps the first page's time window)"),
]


def _responses(ok: dict[str, Any], *codes: int, ok_code: str = "200") -> dict[str, Any]:
    text = {400: "a bad parameter, or a query string that is not UTF-8 or holds a NUL (the message names it)",
            401: "no or an unknown bearer token",
            403: "the token lacks the scope", 404: "no such event (or export)",
            409: "nothing to prove yet (pending, unsigned); an export's file: the export is not done",
            500: "the store lacks rows a proof needs (run otel-audit verify --store)",
            503: "the store took longer than limits.query_timeout: narrow the query",
            410: "the export's file was removed from the exports folder",
            413: "the body is over 64 KiB", 415: "the body is not application/json",
            429: "limits.max_exports exports run already: retry later (Retry-After)"}
    out: dict[str, Any] = {ok_code: ok}
    for c in codes:
        out[str(c)] = {"description": text[c], "content": {"application/json": {"schema": _ERR}}}
    return out


def _json_ok(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _get(summary: str, scope: str | None, params: list[dict[str, Any]], ok: dict[str, Any],
         *codes: int) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "parameters": params}
    codes = (*codes, 400)  # every route: a query string that is not UTF-8, or holds a NUL (before any route)
    if scope is not None:
        op["security"] = [{"bearer": [scope]}]
        op["x-scope"] = scope
        codes = (*codes, 401, 403)
    else:
        op["security"] = []
    op["responses"] = _responses(ok, *sorted(set(codes)))
    return {"get": op}


_OBJ = {"type": "object"}
_EXPORT_ID = _p("export_id", "the export's id, as POST /v1/exports answered it", where="path")


def _export_body() -> dict[str, Any]:
    """POST /v1/exports's body: the filters of GET /v1/events as members (a string, or a list of strings for a
    repeated one; from / to also unix seconds as a number), and the format."""
    props: dict[str, Any] = {}
    for x in _FILTERS + [p for p in _EVENTS if p["name"] == "order"]:
        one = x["schema"].get("items", x["schema"])
        props[x["name"]] = {"description": x["description"],
                            "oneOf": [one, {"type": "array", "items": one, "minItems": 1}]}
    for t in ("from", "to"):
        props[t]["oneOf"].append({"type": "integer"})
    props["format"] = {"enum": ["bundle", "otlp"], "default": "bundle",
                       "description": "bundle: NDJSON, a header line, then each event's OTLP record and its "
                                      "tlog-proof (otel-audit verify proves each event); otlp: OTLP/JSON lines of "
                                      "every record of each stream the query touched (proves the streams whole)"}
    return {"type": "object", "additionalProperties": False, "properties": props}


def document() -> dict[str, Any]:
    events_ok = {"description": "a page of events", "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/EventPage"}},
        "application/x-ndjson": {"schema": {"$ref": "#/components/schemas/Event"}},
        "text/csv": {"schema": {"type": "string"}}},
        "headers": {"X-Next-Cursor": {"description": "ndjson and csv: the next page's cursor",
                                      "schema": {"type": "string"}}}}
    paths: dict[str, Any] = {
        "/v1/logs": {"post": {
            "summary": "OTLP/HTTP logs receiver (ExportLogsServiceRequest, protobuf or JSON, gzip or not)",
            "security": [{"bearer": ["ingest"]}], "x-scope": "ingest",
            "requestBody": {"required": True, "content": {"application/x-protobuf": {"schema": {"type": "string",
                                                                                              "format": "binary"}},
                                                          "application/json": {"schema": _OBJ}}},
            "responses": {
                "200": _json_ok("every record stored, or partialSuccess naming the refused", _OBJ),
                **{str(c): {"description": d, "content": {"application/json": {"schema": _STATUS},
                                                          "application/x-protobuf": {"schema": {"type": "string"}}}}
                   for c, d in ((400, "malformed request"), (401, "no or an unknown token"),
                                (403, "the token lacks ingest"), (413, "too large"), (415, "unsupported type"),
                                (503, "busy or the store failed: retry (Retry-After)"))}}}},
        "/v1/events": _get("query events", "audit:read", _EVENTS, events_ok, 400),
        "/v1/events/{event_id}": _get("one event", "audit:read", [_ID],
                                      _json_ok("the event", {"$ref": "#/components/schemas/Event"}), 404),
        "/v1/events/{event_id}/proof": _get(
            "the event's inclusion proof (C2SP tlog-proof@v1; JSON with Accept: application/json)", "audit:read",
            [_ID, _p("size", "prove in the tree of this checkpoint size",
                     schema={"type": "integer", "minimum": 0, "maximum": 2**63 - 1})],
            {"description": "the proof", "content": {"text/plain": {"schema": {"type": "string"}},
                                                     "application/json": {"schema": _OBJ}}}, 400, 404, 409, 500),
        "/v1/facets": _get("counts per value of facets, for the filters of /v1/events", "audit:read", _FACETS,
                           _json_ok("the counts", {"$ref": "#/components/schemas/Facets"}), 400, 503),
        "/v1/streams": _get("the streams and their verify-on-ingest state", "audit:read", [],
                            _json_ok("streams", _OBJ)),
        "/v1/checkpoints": _get("verified checkpoints with the witness cosignature", "audit:read",
                                [_p("stream", "one stream's")], _json_ok("checkpoints", _OBJ)),
        "/v1/findings": _get("what verify on ingest found", "audit:read", [_p("stream", "one stream's")],
                             _json_ok("findings", _OBJ)),
        "/v1/exports": {
            "post": {"summary": "start an export of the events a /v1/events query matches (runs in the background)",
                     "security": [{"bearer": ["audit:export"]}], "x-scope": "audit:export", "parameters": [],
                     "requestBody": {"required": False, "content": {"application/json": {"schema": _export_body()}}},
                     "responses": _responses(
                         {"description": "started", "headers": {"Location": {"schema": {"type": "string"}}},
                          "content": {"application/json": {"schema": {"type": "object", "properties": {
                              "id": {"type": "string"}, "status": {"enum": ["running"]},
                              "url": {"type": "string"}}}}}},
                         400, 401, 403, 413, 415, 429, ok_code="202")},
            **_get("the exports (newest first)", "audit:export", [],
                   _json_ok("{exports: [Export]}", {"type": "object", "properties": {"exports": {
                       "type": "array", "items": {"$ref": "#/components/schemas/Export"}}}}))},
        "/v1/exports/{export_id}": _get("an export's state", "audit:export", [_EXPORT_ID],
                                        _json_ok("the export", {"$ref": "#/components/schemas/Export"}), 404),
        "/v1/exports/{export_id}/file": _get(
            "the export's file (bundle or OTLP JSON lines), once done", "audit:export", [_EXPORT_ID],
            {"description": "the file, as an attachment", "headers": {"X-Content-SHA256": {"schema": {
                "type": "string"}}}, "content": {"application/x-ndjson": {"schema": {"type": "string"}}}},
            404, 409, 410),
        "/v1/openapi.json": _get("this document", None, [], _json_ok("OpenAPI 3.1", _OBJ)),
        "/healthz": _get("liveness and counters", None, [], _json_ok("counters", _OBJ)),
        "/api/audit-logs": _get("Bifrost-compatible: audit logs with filters and paging", "audit:read",
                                _BIFROST_LIST, _json_ok("Bifrost's AuditLogsResult",
                                                        {"$ref": "#/components/schemas/AuditLogsResult"}), 400, 503),
        "/api/audit-logs/filterdata": _get(
            "Bifrost-compatible: the values of the filter dropdowns", "audit:read",
            [_p("dimensions", f"comma list of {', '.join(bifrost.DIMENSIONS)} (default all)",
                schema={"type": "string", "pattern": "^(?:{0})(?:,(?:{0}))*$".format("|".join(bifrost.DIMENSIONS))}),
             _p("q", "only values holding this text")],
            _json_ok("Bifrost's AuditFilterDataResponse", _OBJ), 400, 503),
        "/api/audit-logs/export": _get(
            "Bifrost-compatible: every matching audit log, streamed", "audit:export",
            [*_BIFROST_FILTERS, _p("format", "json (an array of AuditEvent, default), jsonl or csv",
                                   schema={"type": "string", "enum": list(bifrost.EXPORT_FORMATS)})],
            {"description": "an attachment", "content": {"application/json": {"schema": {
                "type": "array", "items": {"$ref": "#/components/schemas/AuditEvent"}}},
                                                         "application/x-ndjson": {"schema": _OBJ},
                                                         "text/csv": {"schema": {"type": "string"}}}}, 400),
        "/api/audit-logs/{event_id}": _get(
            "Bifrost-compatible: one audit log", "audit:read", [_ID],
            _json_ok("{audit_log}", {"type": "object", "properties": {
                "audit_log": {"$ref": "#/components/schemas/AuditEvent"}}}), 404),
        "/api/audit-logs/{event_id}/verify": _get(
            "Bifrost-compatible: the event checked by the service: its digest and its inclusion proof",
            "audit:read", [_ID], _json_ok("AuditVerifyResult", {"$ref": "#/components/schemas/AuditVerifyResult"}),
            404),
    }
    s = {"type": "string"}
    ns = {"type": ["string", "null"]}
    schemas = {
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["status", "message"],
            "properties": {"status": {"type": "integer"}, "message": s}}}},
        "RpcStatus": {"type": "object", "description": "google.rpc.Status (OTLP/HTTP's error body)",
                      "properties": {"code": {"type": "integer"}, "message": s}},
        "Event": {"type": "object", "required": ["id", "time", "event", "status"], "properties": {
            "id": s, "time": s, "time_unix_nano": s, "event": s, "category": ns, "outcome": ns, "actor": ns,
            "user_id": ns, "target": _OBJ, "client_address": ns, "service": ns, "session_id": ns, "trace_id": ns,
            "severity": _OBJ, "body": {}, "attributes": _OBJ, "stream": {"type": ["object", "null"]},
            "digest": ns, "signed": s, "status": {"enum": ["proven", "pending", "failed", "unsigned"]},
            "ingest_seq": {"type": "integer"}, "ingest_time": s}},
        "EventPage": {"type": "object", "properties": {
            "events": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}}, "next_cursor": ns,
            "count": {"type": "integer"}, "streams": {"type": "array", "items": _OBJ}}},
        "Facets": {"type": "object", "properties": {
            "total": {"type": "integer", "description": "matching events counted"},
            "complete": {"type": "boolean", "description": "false: more matched than limits.facet_max_rows; the "
                                                           "counts are over the newest that many"},
            "limit": {"type": "integer"},
            "facets": {"type": "object", "additionalProperties": {"type": "object", "properties": {
                "values": {"type": "array", "items": {"type": "object", "properties": {
                    "value": s, "count": {"type": "integer"}}}},
                "missing": {"type": "integer"}, "other": {"type": "integer"}}}}}},
        "AuditEvent": {"type": "object", "required": [
            "id", "typeURI", "eventType", "eventTime", "action", "outcome", "initiator", "target", "observer",
            "signature", "createdAt"], "properties": {
            "id": s, "typeURI": s, "eventType": {"enum": list(bifrost.EVENT_TYPES)}, "eventTime": s, "action": s,
            "outcome": s, "initiator": _OBJ, "target": _OBJ, "observer": _OBJ, "reason": {"type": ["object", "null"]},
            "attachments": {"type": "array"}, "tags": {"type": "array", "items": s}, "requestMethod": ns,
            "requestPath": ns, "requestIP": ns, "userAgent": ns, "duration": {"type": ["integer", "null"]},
            "signature": s, "createdAt": s, "otel_audit": _OBJ}},
        "AuditLogsResult": {"type": "object", "properties": {
            "audit_logs": {"type": "array", "items": {"$ref": "#/components/schemas/AuditEvent"}},
            "total": {"type": "integer"}, "page": {"type": "integer"}, "limit": {"type": "integer"},
            "total_pages": {"type": "integer"}, "has_more": {"type": "boolean"}, "next_cursor": ns}},
        "Export": {"type": "object", "required": ["id", "status", "format", "url"], "properties": {
            "id": s, "status": {"enum": ["running", "done", "failed"]}, "format": {"enum": ["bundle", "otlp"]},
            "query": _OBJ, "created": s, "finished": ns, "events": {"type": "integer", "description": "matched"},
            "proven": {"type": "integer", "description": "bundle: events with a proof"},
            "records": {"type": "integer", "description": "otlp: records written (whole streams)"},
            "streams": {"type": "integer"}, "size": {"type": ["integer", "null"]}, "sha256": ns,
            "reason": ns, "url": s, "file_url": ns}},
        "AuditVerifyResult": {"type": "object", "properties": {
            "valid": {"type": "boolean"}, "computed": ns, "stored": ns, "status": s, "reason": ns, "proof": ns,
            "checkpoint": {"type": ["object", "null"]}}},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "otel-audit service", "version": _version(),
                 "description": "Audit events received over OTLP, verified on ingest, stored, queried and proven "
                                "(docs/service.md). Errors are {\"error\": {\"status\", \"message\"}}, the message "
                                "naming the parameter."},
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {"bearer": {
            "type": "http", "scheme": "bearer",
            "description": "a token of service.yaml (otel-audit token); scopes: ingest, audit:read, audit:export, "
                           "audit:admin (all). Not needed on loopback without tokens configured."}}},
    }


def _version() -> str:
    from otel_audit import __version__

    return __version__
