"""The Bifrost-compatible audit log API (``/api/audit-logs``, docs/service.md §6): Bifrost's parameter names
and answer shapes over the same engine as ``/v1/events``.

Bifrost's model is CADF: an event has an ``action`` (create, read, authenticate ...), an ``eventType``
(activity, monitor, control), an ``initiator`` and a ``target``. Ours are catalog events, each with its CADF
action; this module translates Bifrost's parameters into ``/v1/events`` parameters (then `query.build` makes
the store's query, so every value is checked and bound as there) and our events into Bifrost's shape.
"""

from __future__ import annotations

import base64
import datetime as _dt
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from otel_audit.service import query as q

SCHEMA_URI = "http://schemas.dmtf.org/cloud/audit/1.0/event"
MAX_OFFSET = 100_000  # page-numbered paging reads and skips the rows before the page: beyond it, use the cursor
#: Bifrost's list parameters: the singular takes one value, the plural a JSON array (it wins when both are given)
LISTS = {
    "action": "actions", "outcome": "outcomes", "event_type": "event_types", "initiator_id": "initiator_ids",
    "initiator_type": "initiator_types", "target_id": "target_ids", "target_type": "target_types",
    "request_method": "request_methods", "request_path": "request_paths", "request_ip": "request_ips",
}
SINGLE = ("page", "limit", "cursor", "search", "start_date", "end_date", "period", "sort_by", "sort_order", "tags")
KNOWN = (*LISTS, *LISTS.values(), *SINGLE)
#: Bifrost parameters this store has no column for: refused (400) rather than ignored, so no answer is wider
#: than the caller asked for
UNSUPPORTED = ("initiator_type", "request_method", "request_path", "tags")
EVENT_TYPES = ("activity", "monitor", "control")
#: what GET /api/audit-logs/filterdata can list, and the facet (store.FACETS) each comes from
DIMENSIONS = ("actions", "outcomes", "event_types", "initiator_types", "target_types", "request_methods",
              "initiators", "targets", "request_paths", "request_ips", "tags")
EXPORT_FORMATS = ("json", "jsonl", "csv")
_PERIOD = re.compile(r"([1-9][0-9]{0,5})([mhdw])")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_UNIT_S = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class BifrostError(ValueError):
    """A parameter the Bifrost API cannot answer (400), naming it."""


def _catalog() -> Mapping[str, Any]:
    from otel_audit import catalog

    return catalog.EVENTS


def cadf_action(event: str) -> str:
    """The CADF action of a catalog event (``read``, ``authenticate/login`` ...); the event name otherwise."""
    spec = _catalog().get(event)
    return spec.cadf_action if spec is not None else event


def event_type(event: str) -> str:
    """Bifrost's eventType: ``control`` for authorization decisions, ``monitor`` for what watches (security
    detections, integrity, checkpoints), ``activity`` for the rest (CADF's three event types)."""
    spec = _catalog().get(event)
    if spec is None:
        return "monitor" if event.startswith("audit.") else "activity"
    if spec.category == "authorization":
        return "control"
    if spec.cadf_action == "monitor" or spec.category in ("security", "integrity"):
        return "monitor"
    return "activity"


def _list(params: Mapping[str, Sequence[str]], single: str) -> list[str]:
    plural = LISTS[single]
    raw = params.get(plural)
    if raw:
        if len(raw) > 1:
            raise BifrostError(f"{plural}: given {len(raw)} times; give one JSON array")
        try:
            vals = orjson.loads(raw[0])
        except orjson.JSONDecodeError:
            raise BifrostError(f"{plural}: not a JSON array of strings (e.g. [\"read\",\"update\"])") from None
        if not isinstance(vals, list) or not all(isinstance(v, str) for v in vals):
            raise BifrostError(f"{plural}: not a JSON array of strings (e.g. [\"read\",\"update\"])")
        if len(vals) > q.MAX_VALUES:
            raise BifrostError(f"{plural}: at most {q.MAX_VALUES} values")
        if not vals:  # an empty list would silently widen the query to every event
            raise BifrostError(f"{plural}: an empty array names no {single}; leave {plural} out to match any")
        return list(vals)
    vs = list(params.get(single, ()))
    if len(vs) > 1:
        raise BifrostError(f"{single}: given {len(vs)} times; it takes one value (or {plural} a JSON array)")
    return vs


def _one(params: Mapping[str, Sequence[str]], name: str) -> str | None:
    vs = params.get(name) or []
    if len(vs) > 1:
        raise BifrostError(f"{name}: given {len(vs)} times; it takes one value")
    return vs[0] if vs else None


def _ns_text(ns: int) -> str:
    return f"{ns // 10**9}.{ns % 10**9:09d}"


def _date(value: str, name: str, end: bool) -> int:
    """RFC 3339, or a date (YYYY-MM-DD, UTC): as a start its midnight, as an end the whole day."""
    from otel_audit.verify.liveness import parse_time

    if _DATE.fullmatch(value):
        try:
            d = _dt.datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=_dt.timezone.utc)
        except ValueError:
            raise BifrostError(f"{name}: {value!r} is no such date") from None
        t = int(d.timestamp()) * 10**9 + (86400 * 10**9 if end else 0)
    else:
        try:
            t = parse_time(value) + (1 if end else 0)  # Bifrost's end_date is inclusive; our `to` is not
        except ValueError as exc:
            raise BifrostError(f"{name}: {exc}") from None
    if t < 0:
        raise BifrostError(f"{name}: {value!r} is before 1970")
    if t >= 1 << 63:
        raise BifrostError(f"{name}: {value!r} is after 2262-04-11T23:47:16Z, the last time a 64-bit count of "
                           "nanoseconds holds")
    return t


def period_ns(value: str) -> int:
    m = _PERIOD.fullmatch(value)
    if m is None:
        raise BifrostError(f"period: {value[:40]!r} is not a period such as 30m, 24h, 7d or 4w")
    return int(m[1]) * _UNIT_S[m[2]] * 10**9


def _names(actions: Sequence[str], types: Sequence[str]) -> list[str] | None:
    """Our `action` values for Bifrost's action and event_type filters (None: no condition)."""
    universe = list(_catalog())
    chosen: set[str] | None = None
    raw: list[str] = []
    if actions:
        chosen = set()
        for a in actions:
            by_cadf = [n for n in universe if cadf_action(n) == a or cadf_action(n).startswith(a + "/")]
            if by_cadf:
                chosen.update(by_cadf)
            elif a.endswith("*"):
                chosen.update(n for n in universe if n.startswith(a[:-1]))
                raw.append(a)
            else:
                chosen.add(a)  # an event name of ours (or nothing)
                raw.append(a)
    if types:
        for t in types:
            if t not in EVENT_TYPES:
                raise BifrostError(f"event_type: {t[:40]!r} is not one of {', '.join(EVENT_TYPES)}")
        typed = {n for n in universe if event_type(n) in types}
        if "monitor" in types:
            typed.add("audit.gap")
        chosen = typed if chosen is None else {n for n in chosen if event_type(n) in types}
        raw = []
    if chosen is None:
        return None
    out = sorted(chosen | set(raw))
    return out or ["(no such event)"]


def to_params(params: Mapping[str, Sequence[str]], now_ns: int | None = None,
              window: tuple[int | None, int | None] | None = None) -> tuple[dict[str, list[str]], tuple[int | None,
                                                                                                       int | None]]:
    """/v1/events parameters for Bifrost's (without paging), and the resolved (from, to) window in ns. `window`
    (from a Bifrost cursor) replaces start_date/end_date/period, so a `period` page 2 is the window of page 1."""
    unknown = sorted(k for k in params if k not in KNOWN)
    if unknown:
        raise BifrostError(f"{unknown[0][:80]}: unknown parameter (known: {', '.join(KNOWN)})")
    for name in UNSUPPORTED:
        if params.get(name) or params.get(LISTS.get(name, name)):
            raise BifrostError(f"{name}: not supported by this service (its events have no such column); "
                               "use filter expressions of GET /v1/events instead")
    out: dict[str, list[str]] = {}
    names = _names(_list(params, "action"), _list(params, "event_type"))
    if names is not None:
        out["action"] = names
    for single, ours in (("outcome", "outcome"), ("initiator_id", "actor"), ("target_id", "target.id"),
                         ("target_type", "target.type"), ("request_ip", "client.address")):
        vs = _list(params, single)
        if vs:
            out[ours] = vs
    search = _one(params, "search")
    if search is not None and search.strip():
        out["q"] = [search]
    if window is None:
        start = _one(params, "start_date")
        end = _one(params, "end_date")
        period = _one(params, "period")
        lo = _date(start, "start_date", False) if start else None
        hi = _date(end, "end_date", True) if end else None
        if period:
            now = time.time_ns() if now_ns is None else now_ns
            lo, hi = now - period_ns(period), None
        window = (lo, hi)
    if window[0] is not None:
        out["from"] = [_ns_text(window[0])]
    if window[1] is not None:
        out["to"] = [_ns_text(window[1])]
    sort_by = _one(params, "sort_by") or "event_time"
    if sort_by != "event_time":
        raise BifrostError(f"sort_by: {sort_by[:40]!r}: this service sorts by event_time only")
    order = _one(params, "sort_order") or "desc"
    if order not in ("asc", "desc"):
        raise BifrostError(f"sort_order: expected asc or desc, got {order[:20]!r}")
    out["order"] = [order]
    return out, window


def paging(params: Mapping[str, Sequence[str]]) -> tuple[int, int, str | None, tuple[int | None, int | None] | None]:
    """(page, limit, our cursor, window) from Bifrost's page / limit / cursor."""
    raw_limit = _one(params, "limit")
    limit = q.DEFAULT_LIMIT
    if raw_limit is not None:
        if not raw_limit.isascii() or not raw_limit.isdigit() or not 1 <= int(raw_limit) <= q.MAX_LIMIT:
            raise BifrostError(f"limit: expected a number from 1 to {q.MAX_LIMIT}, got {raw_limit[:20]!r}")
        limit = int(raw_limit)
    raw_page = _one(params, "page")
    page = 1
    if raw_page is not None:
        if not raw_page.isascii() or not raw_page.isdigit() or len(raw_page) > 9 or int(raw_page) < 1:
            raise BifrostError(f"page: expected a page number from 1, got {raw_page[:20]!r}")
        page = int(raw_page)
    cursor = _one(params, "cursor")
    if cursor:
        try:
            version, c_page, lo, hi, inner = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
            if version != 1 or type(c_page) is not int or not isinstance(inner, str) or not all(
                    x is None or type(x) is int for x in (lo, hi)):
                raise ValueError
        except (ValueError, TypeError, orjson.JSONDecodeError):
            raise BifrostError("cursor: not a cursor this service gave (pass next_cursor back unchanged)") from None
        return c_page, limit, inner, (lo, hi)
    if (page - 1) * limit > MAX_OFFSET:
        raise BifrostError(f"page: page {page} of {limit} starts past row {MAX_OFFSET:,}; follow next_cursor to "
                           "read further")
    return page, limit, None, None


def cursor(page: int, window: tuple[int | None, int | None], inner: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([1, page, window[0], window[1], inner])).decode().rstrip("=")


def audit_log(e: Mapping[str, Any]) -> dict[str, Any]:
    """One of our events (query.event_json) in Bifrost's AuditEvent shape, with ours under ``otel_audit``."""
    a = e["attributes"]
    reason = a.get("audit.reason")
    initiator: dict[str, Any] = {"id": e["actor"] or "unknown", "typeURI": a.get("audit.actor.type") or
                                 ("user" if e["user_id"] else "unknown"), "name": e["actor"]}
    if e["client_address"]:
        initiator["host"] = {"address": e["client_address"], "agent": a.get("user_agent.original")}
    return {
        "id": e["id"],
        "typeURI": SCHEMA_URI,
        "eventType": event_type(e["event"]),
        "eventTime": e["time"],
        "action": cadf_action(e["event"]),
        "outcome": e["outcome"] or "unknown",
        "initiator": initiator,
        "target": {"id": e["target"]["id"] or e["user_id"] or "unknown",
                   "typeURI": e["target"]["type"] or ("user" if e["user_id"] and not e["target"]["id"] else "unknown"),
                   "name": e["target"]["id"] or e["user_id"]},
        "observer": {"id": e["service"] or "unknown", "typeURI": "service/security/audit",
                     "name": e["service"]},
        "reason": None if reason is None else {"reasonCode": None, "reasonType": "audit", "message": str(reason)},
        "attachments": [],
        "tags": [t for t in (e["event"], e["category"]) if t],
        "requestMethod": a.get("http.request.method"),
        "requestPath": a.get("url.path"),
        "requestIP": e["client_address"],
        "userAgent": a.get("user_agent.original"),
        "duration": None,
        "signature": e["digest"] or "",
        "createdAt": e["ingest_time"],
        "otel_audit": {"event": e["event"], "category": e["category"], "status": e["status"],
                       "stream": e["stream"], "signed": e["signed"], "severity": e["severity"], "body": e["body"],
                       "attributes": a},
    }


def filterdata(facets: Mapping[str, Any], wanted: Sequence[str], contains: str | None = None) -> dict[str, Any]:
    """Bifrost's AuditFilterDataResponse from the store's facets (action, outcome, actor, target.type,
    target.id, client.address, category); `contains`: the values derived from event names (actions, event
    types) are kept only when they hold that text too, as the store keeps the others."""

    def vals(name: str) -> list[str]:
        return [str(v) for v, _ in facets[name]["values"]] if name in facets else []

    events = vals("action")
    out: dict[str, Any] = {d: [] for d in DIMENSIONS}
    out["actions"] = sorted({cadf_action(n) for n in events})
    out["event_types"] = sorted({event_type(n) for n in events})
    out["outcomes"] = sorted(vals("outcome"))
    out["target_types"] = sorted(vals("target.type"))
    out["initiators"] = [{"id": v, "name": v} for v in sorted(vals("actor"))]
    out["targets"] = [{"id": v, "name": v} for v in sorted(vals("target.id"))]
    out["request_ips"] = sorted(vals("client.address"))
    out["tags"] = sorted(set(events) | set(vals("category")))
    if contains:
        low = contains.lower()
        for d in ("actions", "event_types"):
            out[d] = [v for v in out[d] if low in v.lower()]
    return {d: out[d] for d in wanted}


def dimensions(raw: str | None) -> list[str]:
    if raw is None or not raw.strip():
        return list(DIMENSIONS)
    got = [d.strip() for d in raw.split(",") if d.strip()]
    if not got:
        raise BifrostError(f"dimensions: {raw[:40]!r} names no dimension (one or more of {', '.join(DIMENSIONS)})")
    for d in got:
        if d not in DIMENSIONS:
            raise BifrostError(f"dimensions: {d[:40]!r} is not one of {', '.join(DIMENSIONS)}")
    return got


#: the facets each dimension reads
DIMENSION_FACETS = {"actions": ("action",), "event_types": ("action",), "outcomes": ("outcome",),
                    "target_types": ("target.type",), "initiators": ("actor",), "targets": ("target.id",),
                    "request_ips": ("client.address",), "tags": ("action", "category"), "initiator_types": (),
                    "request_methods": (), "request_paths": ()}
