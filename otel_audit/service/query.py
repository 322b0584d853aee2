"""`GET /v1/events` parameters into a store query, and stored rows into the API's event form
(docs/service.md §4). Every value is a bound parameter; column names come only from the tables here."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import orjson

from otel_audit.service.ingest import ip_key
from otel_audit.service.store import SQLITE, Dialect

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_VALUES = 50  # values of one repeated parameter
#: exact-match parameters and their columns
EXACT = {
    "actor": "e.actor", "user": "e.user_id", "category": "e.category", "outcome": "e.outcome",
    "target.type": "e.target_type", "target.id": "e.target_id", "service": "e.service", "stream": "e.stream_id",
    "session": "e.session_id", "trace": "e.trace_id",
}
KNOWN = (*EXACT, "action", "client.address", "from", "to", "q", "filter", "order", "limit", "cursor", "status",
         "include", "format")
STATUSES = ("proven", "pending", "failed", "unsigned")
#: where a stored record was signed (the `signed` column) as the API shows it: by its producer, or by this
#: service when it received the record unsigned (sign_at_ingest; the hop before the service is trusted)
SIGNED = {"source": "at source", "ingest": "at ingest", "none": "no"}


class QueryError(ValueError):
    """A parameter the API cannot answer (400): names the parameter and what was wrong."""


class Query(NamedTuple):
    where: str
    params: list[Any]
    order: str
    limit: int
    after: tuple[Any, ...] | None
    fingerprint: str  # what a cursor is bound to


def _time(value: str, name: str) -> int:
    from otel_audit.verify.liveness import parse_time

    try:
        t = parse_time(value)
    except ValueError as exc:
        raise QueryError(f"{name}: {exc}") from None
    if t >= 1 << 63:  # event times are stored as 64-bit nanoseconds
        raise QueryError(f"{name}: {value!r} is after 2262-04-11T23:47:16Z, the last time a 64-bit count of "
                         "nanoseconds holds")
    return t


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _network(value: str) -> tuple[str, str] | str:
    """An IP address's key, or a CIDR network's (first, last) keys."""
    if "/" in value:
        try:
            net = ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise QueryError(f"client.address: {value[:80]!r} is neither an IP address nor a CIDR network") from None
        lo, hi = ip_key(str(net.network_address)), ip_key(str(net.broadcast_address))
        assert lo is not None and hi is not None
        return lo, hi
    key = ip_key(value)
    if key is None:
        raise QueryError(f"client.address: {value[:80]!r} is neither an IP address nor a CIDR network")
    return key


def build(params: Mapping[str, Sequence[str]], dialect: Dialect = SQLITE) -> Query:
    """A store query from the request's parameters (each a list of values: repeated keys OR together), in the
    store's SQL `dialect` (its placeholder, full-text and status expressions)."""
    ph = dialect.placeholder
    unknown = sorted(k for k in params if k not in KNOWN)
    if unknown:
        raise QueryError(f"{unknown[0][:80]}: unknown parameter (known: {', '.join(KNOWN)})")
    clauses: list[str] = []
    args: list[Any] = []

    def values(name: str) -> list[str]:
        vs = list(params.get(name, ()))
        if len(vs) > MAX_VALUES:
            raise QueryError(f"{name}: at most {MAX_VALUES} values")
        for v in vs:
            if "\x00" in v or len(v) > 4096:
                raise QueryError(f"{name}: a value with a NUL character or over 4096 characters")
        return vs

    def one(name: str) -> str | None:
        vs = values(name)
        if len(vs) > 1:
            raise QueryError(f"{name}: given {len(vs)} times; it takes one value")
        return vs[0] if vs else None

    for name, column in EXACT.items():
        vs = values(name)
        if vs:
            clauses.append("(" + " OR ".join(f"{column} = {ph}" for _ in vs) + ")")
            args += vs
    actions = values("action")
    if actions:
        ors = []
        for a in actions:
            if a.endswith(".*") or a.endswith("*"):
                ors.append(f"e.event LIKE {ph} ESCAPE '\\'")
                args.append(_like_prefix(a[:-1]))
            else:
                ors.append(f"e.event = {ph}")
                args.append(a)
        clauses.append("(" + " OR ".join(ors) + ")")
    nets = values("client.address")
    if nets:
        ors = []
        for v in nets:
            got = _network(v)
            if isinstance(got, tuple):
                ors.append(f"(e.client_address_key >= {ph} AND e.client_address_key <= {ph})")
                args += list(got)
            else:
                ors.append(f"e.client_address_key = {ph}")
                args.append(got)
        clauses.append("(" + " OR ".join(ors) + ")")
    start, end = one("from"), one("to")
    if start is not None:
        clauses.append(f"e.ts >= {ph}")
        args.append(_time(start, "from"))
    if end is not None:
        clauses.append(f"e.ts < {ph}")
        args.append(_time(end, "to"))
    q = one("q")
    if q is not None:
        words = [w for w in q.split() if w]
        if not words:
            raise QueryError("q: give at least one word to search for")
        if len(words) > 32:
            raise QueryError("q: at most 32 words")
        # every word a bound value, quoted for the engine by the dialect: no query syntax of the caller's reaches it
        text_sql, text_args = dialect.full_text(words)
        clauses.append(text_sql)
        args += text_args
    statuses = values("status")
    for s in statuses:
        if s not in STATUSES:
            raise QueryError(f"status: {s[:40]!r} is not one of {', '.join(STATUSES)}")
    if statuses:
        clauses.append("(" + " OR ".join(f"{dialect.status} = {ph}" for _ in statuses) + ")")
        args += statuses
    expr = one("filter")
    if expr is not None:
        sql, fargs = _filter(expr, dialect)
        clauses.append(f"({sql})")
        args += fargs
    orders = {"asc": "ts", "desc": "-ts", "ingest": "seq", "ts": "ts", "-ts": "-ts", "seq": "seq"}
    order = orders.get(one("order") or "desc", "")
    if not order:
        raise QueryError("order: expected asc, desc or ingest (ingest order: the polling mode)")
    raw_limit = one("limit")
    limit = DEFAULT_LIMIT
    if raw_limit is not None:
        if not raw_limit.isascii() or not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
            raise QueryError(f"limit: expected a number from 1 to {MAX_LIMIT}, got {raw_limit[:20]!r}")
        limit = int(raw_limit)
    where = " AND ".join(clauses)
    fp = hashlib.sha256(orjson.dumps([where, [a if not isinstance(a, bytes) else a.hex() for a in args], order])
                        ).hexdigest()[:16]
    after = None
    cursor = one("cursor")
    if cursor:
        after = _read_cursor(cursor, fp, order)
    return Query(where, args, order, limit, after, fp)


#: a top-level "or" of up to this many sides is compiled side by side (Dialect.filter_any); more, as one expression
MAX_OR_SIDES = 16


def _filter(expr: str, dialect: Dialect = SQLITE) -> tuple[str, list[Any]]:
    from otel_audit.service import filter as scim
    from otel_audit.service.fields import FIELDS

    try:
        node = scim.parse(expr)
        # a top-level "or": each side compiled on its own, so a store can answer each from its own index (SQLite
        # reads every row an OR of indexes finds to test the whole expression; a UNION of covered sides does not)
        sides: list[scim.Node] = []
        todo = [node]
        while todo:
            n = todo.pop()
            if isinstance(n, scim.Or):
                todo += [n.right, n.left]
            else:
                sides.append(n)
        if 1 < len(sides) <= MAX_OR_SIDES:
            parts = [scim.compile_sql(side, FIELDS, placeholder=dialect.placeholder) for side in sides]
            return dialect.filter_any([sql for sql, _ in parts]), [a for _, args in parts for a in args]
        sql, args = scim.compile_sql(node, FIELDS, placeholder=dialect.placeholder)
    except scim.FilterError as exc:
        raise QueryError(str(exc)) from None
    return dialect.filter_rows(sql), args


def cursor_for(q: Query, key: tuple[Any, ...]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([1, q.order, q.fingerprint, list(key)])).decode().rstrip("=")


def _read_cursor(cursor: str, fp: str, order: str) -> tuple[Any, ...]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        version, c_order, c_fp, key = orjson.loads(raw)
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise QueryError("cursor: not a cursor this service gave (pass next_cursor back unchanged)") from None
    if version != 1 or c_order != order or c_fp != fp:
        raise QueryError("cursor: it belongs to another query; keep every other parameter as it was")
    if not isinstance(key, list) or not all(type(k) is int for k in key) or len(key) != (1 if order == "seq" else 2):
        raise QueryError("cursor: not a cursor this service gave (pass next_cursor back unchanged)")
    return tuple(key)


def rfc3339(ns: int) -> str:
    import datetime

    s, frac = divmod(ns, 1_000_000_000)
    t = datetime.datetime.fromtimestamp(s, tz=datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{t}.{frac:09d}Z"


def event_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """A stored row as the API shows an event."""
    body = row["body"]
    return {
        "id": row["id"],
        "time": rfc3339(row["ts"]),
        "time_unix_nano": str(row["ts"]),
        "event": row["event"],
        "category": row["category"],
        "outcome": row["outcome"],
        "actor": row["actor"],
        "user_id": row["user_id"],
        "target": {"type": row["target_type"], "id": row["target_id"]},
        "client_address": row["client_address"],
        "service": row["service"],
        "session_id": row["session_id"],
        "trace_id": row["trace_id"],
        "severity": {"number": row["severity"], "text": row["severity_text"]},
        "body": body,
        "attributes": orjson.loads(row["attrs"]),
        "stream": None if row["stream_id"] is None else {"id": row["stream_id"], "seq": row["stream_seq"]},
        "digest": None if row["digest"] is None else row["digest"].hex(),
        "signed": SIGNED.get(row["signed"], "no"),
        "status": row["status"],
        "ingest_seq": row["seq"],
        "ingest_time": rfc3339(row["ingest_ts"]),
    }
