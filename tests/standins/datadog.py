"""A stand-in for Datadog's Logs intake API v2 and Logs Search API v2, on 127.0.0.1.

It follows the documented contract (docs.datadoghq.com/api/latest/logs) strictly:

intake, ``POST /api/v2/logs``:
  * ``DD-API-KEY`` required: missing 401, unknown 403, with Datadog's error body
    ``{"errors": [{"status", "title", "detail"}]}``;
  * ``Content-Type`` ``application/json`` (a JSON array of log objects, or one object), or
    ``text/plain`` / ``application/logplex-1`` (one log per line);
  * ``Content-Encoding`` ``identity``, ``gzip`` or ``deflate`` (zlib), anything else 400;
  * at most 5 MB uncompressed (413), at most 1000 entries (400: Datadog documents the limit but
    not the answer [unverified]);
  * a log over 1 MB is accepted and truncated, as documented; the stand-in records it in
    ``truncated``;
  * a log whose timestamp is more than 18 h old is answered 202 but not indexed (the docs allow
    18 h; what Datadog does past that is not documented [unverified]): kept in ``too_old``;
  * ``202 {}`` on success.

search, ``POST /api/v2/logs/events/search`` (and ``GET /api/v2/logs/events``):
  ``DD-API-KEY`` and ``DD-APPLICATION-KEY`` (403 ``{"errors": ["Forbidden"]}``), the
  ``filter`` {query, from, to, indexes, storage_tier}, ``sort`` (timestamp | -timestamp),
  ``page`` {limit <= 1000 (default 10), cursor}; answers ``{"data", "links": {"next"}, "meta":
  {"page": {"after"}, ...}}`` with dotted attributes shown nested, and the rate limit headers.
  Queries: ``*``, ``key:value`` terms (``source``, ``service``, ``host``, ``status``,
  ``@attribute.path``; ``*`` wildcards) and bare words (in the message), joined by spaces or AND.

``GET /api/v1/validate`` answers ``{"valid": true}`` or 403.

As Datadog's preprocessing of JSON logs does, a ``message`` that is the text of a JSON object is
shown parsed into the log's attributes (its own ``message`` becoming the message): that is how logs
of the collector's datadog exporter, whose message is such a JSON text, appear in search results.

Faults, at runtime: `go_down` / `come_up` (the listening socket closes and reopens on the same
port, open connections are cut), `slow` (seconds before answering), `fail` (the next N intake
requests get a status, optionally with Retry-After or X-RateLimit-Reset; ``"reset"`` stores the
logs and then cuts the connection without an answer), `fail_search`.

Accepted logs are kept as decoded dicts in `accepted` (edit them to tamper at rest: the search
API serves them as they stand).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import fnmatch
import gzip
import itertools
import re
import secrets
import socket
import threading
import time
import zlib
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import orjson

DEFAULT_API_KEY = "0123456789abcdef0123456789abcdef"
DEFAULT_APP_KEY = "fedcba9876543210fedcba9876543210fedcba98"
MAX_PAYLOAD = 5_000_000
MAX_ENTRIES = 1000
MAX_LOG = 1_000_000
MAX_AGE_MS = 18 * 3600 * 1000
INTAKE = "/api/v2/logs"
SEARCH = "/api/v2/logs/events/search"
LIST = "/api/v2/logs/events"
VALIDATE = "/api/v1/validate"
# Datadog's date remapper looks at these, in this order
DATE_KEYS = ("@timestamp", "timestamp", "_timestamp", "Timestamp", "eventTime", "date", "published_date",
             "syslog.timestamp")
_TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 408: "Request Timeout",
           411: "Length Required", 413: "Payload Too Large", 429: "Too Many Requests",
           500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}
_STATUS_NUM = ("emergency", "alert", "critical", "error", "warning", "notice", "info", "debug")


@dataclass
class Stored:
    """One accepted log: Datadog's id, the entry as received (after truncation), its date."""

    id: str
    entry: dict[str, Any]
    received_ms: int
    order: int


@dataclass
class Seen:
    """One intake request as the stand-in judged it."""

    status: int
    entries: int
    encoding: str
    wire_bytes: int
    body_bytes: int
    detail: str = ""


@dataclass
class _Fault:
    status: int | str
    retry_after: float | None = None
    reset: int | None = None
    detail: str = "injected fault"


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    stored: list[Stored] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    truncated: list[dict[str, Any]] = field(default_factory=list)
    too_old: list[dict[str, Any]] = field(default_factory=list)
    intake_faults: deque[_Fault] = field(default_factory=deque)
    search_faults: deque[_Fault] = field(default_factory=deque)
    delay: float = 0.0
    searches: int = 0


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], standin: DatadogStandIn) -> None:
        self.standin = standin
        self.conns: set[socket.socket] = set()
        self.conns_lock = threading.Lock()
        super().__init__(addr, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.conns_lock:
            self.conns.add(request)
            self.standin.client_ports.append(client_address[1])  # one entry per TCP connection
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.conns_lock:
            self.conns.discard(request)
        super().shutdown_request(request)

    def cut_connections(self) -> None:
        with self.conns_lock:
            conns = list(self.conns)
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)


class DatadogStandIn:
    """The stand-in server; a context manager. `url` is its base, `intake_url` the logs intake."""

    def __init__(self, *, api_keys: tuple[str, ...] = (DEFAULT_API_KEY,),
                 app_keys: tuple[str, ...] = (DEFAULT_APP_KEY,), store: bool = True) -> None:
        self.api_keys = frozenset(api_keys)
        self.store = store  # False: check and count the logs, keep none (benchmarks)
        self.received = 0  # logs answered 202, kept or not
        self.app_keys = frozenset(app_keys)
        self.port = 0
        #: the client port of every TCP connection accepted, in order (a new pool, a new port)
        self.client_ports: list[int] = []
        self._state = _State()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._ids = itertools.count()
        self.rate_limit = 300  # search requests per period, reported in X-RateLimit-* headers
        self.rate_period = 3600

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> DatadogStandIn:
        self._server = _Server(("127.0.0.1", self.port), self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"dd-standin-{self.port}",
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        srv, self._server = self._server, None
        if srv is not None:
            srv.shutdown()
            srv.server_close()
            srv.cut_connections()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> DatadogStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def intake_url(self) -> str:
        return self.url + INTAKE

    # -- faults ------------------------------------------------------------------------------------

    def go_down(self) -> None:
        """Stop listening (connection refused) and cut every open connection."""
        self.stop()

    def come_up(self) -> None:
        """Listen again on the same port."""
        if self._server is None:
            deadline = time.monotonic() + 5
            while True:
                try:
                    self.start()
                    return
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)

    @property
    def is_up(self) -> bool:
        return self._server is not None

    def slow(self, seconds: float) -> None:
        """Wait this long before answering each request (0: answer at once)."""
        self._state.delay = float(seconds)

    def fail(self, status: int | str, times: int = 1, *, retry_after: float | None = None,
             reset: int | None = None, detail: str = "injected fault") -> None:
        """The next `times` intake requests get `status` (or "reset": stored, then no answer)."""
        with self._state.lock:
            self._state.intake_faults.extend(_Fault(status, retry_after, reset, detail) for _ in range(times))

    def fail_search(self, status: int, times: int = 1, *, retry_after: float | None = None,
                    reset: int | None = None) -> None:
        with self._state.lock:
            self._state.search_faults.extend(_Fault(status, retry_after, reset) for _ in range(times))

    def clear_faults(self) -> None:
        with self._state.lock:
            self._state.intake_faults.clear()
            self._state.search_faults.clear()
        self._state.delay = 0.0

    # -- what it holds -----------------------------------------------------------------------------

    @property
    def accepted(self) -> list[dict[str, Any]]:
        """The accepted (indexed) logs, decoded, in arrival order; the dicts themselves."""
        with self._state.lock:
            return [s.entry for s in self._state.stored]

    @property
    def seen(self) -> list[Seen]:
        with self._state.lock:
            return list(self._state.seen)

    @property
    def truncated(self) -> list[dict[str, Any]]:
        with self._state.lock:
            return list(self._state.truncated)

    @property
    def too_old(self) -> list[dict[str, Any]]:
        with self._state.lock:
            return list(self._state.too_old)

    def count(self) -> int:
        with self._state.lock:
            return len(self._state.stored)

    def events(self) -> list[dict[str, Any]]:
        """Every accepted log as the search API shows it, oldest first."""
        with self._state.lock:
            stored = list(self._state.stored)
        return [self._event(s) for s in sorted(stored, key=_sort_key)]

    def export(self, *, page_size: int = 1000) -> list[dict[str, Any]]:
        """All logs as a JSON array of search response pages, as a paging tool saves them."""
        events = self.events()
        pages = []
        for i in range(0, max(len(events), 1), page_size):
            pages.append({"data": events[i:i + page_size], "links": {},
                          "meta": {"elapsed": 1, "page": {}, "request_id": secrets.token_hex(8),
                                   "status": "done"}})
        return pages

    # -- the intake --------------------------------------------------------------------------------

    def _intake(self, h: _Handler) -> None:
        st = self._state
        raw = h.read_body()
        if raw is None:
            return
        with st.lock:
            fault = st.intake_faults.popleft() if st.intake_faults else None
        encoding = (h.headers.get("Content-Encoding") or "identity").strip().lower()
        if fault is not None and fault.status != "reset":
            status = int(fault.status)
            self._note(Seen(status, 0, encoding, len(raw), 0, fault.detail))
            h.send_intake_error(status, fault.detail, retry_after=fault.retry_after, reset=fault.reset)
            return
        key = h.headers.get("DD-API-KEY")
        if not key:
            return self._reject(h, 401, "API key is missing: send it in the DD-API-KEY header", encoding, raw)
        if key not in self.api_keys:
            return self._reject(h, 403, "API key is invalid", encoding, raw)
        try:
            body = _decode(raw, encoding)
        except _TooLarge:
            return self._reject(h, 413, f"payload is over {MAX_PAYLOAD} bytes uncompressed", encoding, raw)
        except ValueError as exc:
            return self._reject(h, 400, str(exc), encoding, raw)
        ctype = (h.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        query = parse_qs(urlsplit(h.path).query)
        if ctype == "application/json":
            try:
                doc = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                return self._reject(h, 400, f"payload is not valid JSON: {exc}", encoding, raw, len(body))
            if isinstance(doc, dict):
                entries = [doc]
            elif isinstance(doc, list) and all(isinstance(e, dict) for e in doc):
                entries = doc
            else:
                return self._reject(h, 400, "payload must be a JSON object or an array of JSON objects",
                                    encoding, raw, len(body))
        elif ctype in ("text/plain", "application/logplex-1"):
            try:
                lines = body.decode("utf-8").splitlines()
            except UnicodeDecodeError:
                return self._reject(h, 400, "payload is not UTF-8 text", encoding, raw, len(body))
            entries = [{"message": line} for line in lines if line.strip()]
            for name in ("ddtags", "ddsource", "service", "hostname", "host"):
                if name in query:
                    for e in entries:
                        e["hostname" if name == "host" else name] = query[name][0]
        else:
            return self._reject(h, 400, f"unsupported Content-Type {ctype or '(none)'}: use application/json, "
                                "text/plain or application/logplex-1", encoding, raw, len(body))
        if len(entries) > MAX_ENTRIES:
            return self._reject(h, 400, f"{len(entries)} logs in one array; the maximum is {MAX_ENTRIES}",
                                encoding, raw, len(body))
        now = int(time.time() * 1000)
        with st.lock:
            for e in entries:
                size = len(orjson.dumps(e))
                order = next(self._ids)
                sid = _log_id(order)
                if size > MAX_LOG:
                    field_name = _truncate(e, size - MAX_LOG)
                    st.truncated.append({"id": sid, "bytes": size, "field": field_name})
                when = _date_of(e)
                if when is not None and now - when > MAX_AGE_MS:
                    st.too_old.append({"id": sid, "timestamp_ms": when, "entry": e})
                    continue
                if self.store:
                    st.stored.append(Stored(sid, e, now, order))
            self.received += len(entries)
            st.seen.append(Seen(202, len(entries), encoding, len(raw), len(body)))
        if fault is not None:  # "reset": the logs are in, the answer is lost
            h.close_connection = True
            h.cut()
            return
        h.send_json(202, {})

    def _reject(self, h: _Handler, status: int, detail: str, encoding: str, raw: bytes, body: int = 0) -> None:
        self._note(Seen(status, 0, encoding, len(raw), body, detail))
        h.send_intake_error(status, detail)

    def _note(self, seen: Seen) -> None:
        with self._state.lock:
            self._state.seen.append(seen)

    # -- search ------------------------------------------------------------------------------------

    def _search(self, h: _Handler, params: Mapping[str, Any]) -> None:
        st = self._state
        with st.lock:
            fault = st.search_faults.popleft() if st.search_faults else None
            st.searches += 1
            used = st.searches
        rl = {"X-RateLimit-Limit": str(self.rate_limit), "X-RateLimit-Period": str(self.rate_period),
              "X-RateLimit-Remaining": str(max(0, self.rate_limit - used)),
              "X-RateLimit-Reset": str(self.rate_period - int(time.time()) % self.rate_period),
              "X-RateLimit-Name": "logs_list"}
        if fault is not None:
            if fault.reset is not None:
                rl["X-RateLimit-Reset"] = str(fault.reset)
                rl["X-RateLimit-Remaining"] = "0"
            if fault.retry_after is not None:
                rl["Retry-After"] = str(int(fault.retry_after))
            msg = "Too many requests" if fault.status == 429 else _TITLES.get(int(fault.status), "Error")
            return h.send_json(int(fault.status), {"errors": [msg]}, rl)
        if h.headers.get("DD-API-KEY") not in self.api_keys or \
                h.headers.get("DD-APPLICATION-KEY") not in self.app_keys:
            return h.send_json(403, {"errors": ["Forbidden"]}, rl)
        try:
            flt = params.get("filter") or {}
            page = params.get("page") or {}
            if not isinstance(flt, Mapping) or not isinstance(page, Mapping):
                raise ValueError("filter and page must be objects")
            sort = params.get("sort", "-timestamp")  # the default order is not documented [unverified]
            if sort not in ("timestamp", "-timestamp"):
                raise ValueError(f"sort must be timestamp or -timestamp, not {sort!r}")
            limit = page.get("limit", 10)
            if isinstance(limit, str) and limit.isdigit():
                limit = int(limit)
            if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
                raise ValueError("page[limit] must be an integer from 1 to 1000")
            tier = flt.get("storage_tier", "indexes")
            if tier not in ("indexes", "online-archives", "flex"):
                raise ValueError(f"filter[storage_tier] must be indexes, online-archives or flex, not {tier!r}")
            now = int(time.time() * 1000)
            lo = _when(flt.get("from", "now-15m"), now)
            hi = _when(flt.get("to", "now"), now)
            match = _query(str(flt.get("query", "*")))
            after = _cursor(page.get("cursor")) if page.get("cursor") else None
        except ValueError as exc:
            return h.send_json(400, {"errors": [str(exc)]}, rl)
        started = time.monotonic()
        with st.lock:
            stored = list(st.stored)
        rows = []
        for s in stored:
            ev = self._event(s)
            ms = _sort_key(s)[0]
            if lo <= ms <= hi and match(ev):
                rows.append((_sort_key(s), ev))
        desc = sort == "-timestamp"
        rows.sort(key=lambda r: r[0], reverse=desc)
        if after is not None:
            rows = [r for r in rows if (r[0] < after if desc else r[0] > after)]
        chunk = rows[:limit]
        doc: dict[str, Any] = {"data": [ev for _, ev in chunk], "links": {},
                               "meta": {"elapsed": int((time.monotonic() - started) * 1000),
                                        "page": {}, "request_id": secrets.token_hex(12), "status": "done"}}
        if len(rows) > limit:
            last = chunk[-1][0]
            cursor = base64.urlsafe_b64encode(orjson.dumps(list(last))).decode()
            doc["meta"]["page"]["after"] = cursor
            query = {f"filter[{k}]": v for k, v in flt.items() if isinstance(v, str)}
            query.update({"page[limit]": str(limit), "sort": sort, "page[cursor]": cursor})
            doc["links"]["next"] = f"{self.url}{LIST}?{urlencode(query)}"
        h.send_json(200, doc, rl)

    def _event(self, s: Stored) -> dict[str, Any]:
        e = dict(s.entry)
        date = None
        for k in DATE_KEYS:
            if k in e:
                date = _millis(e.pop(k))
                if date is not None:
                    break
        if date is None:
            date = s.received_ms
        source = e.pop("ddsource", None)
        tags = [t for t in str(e.pop("ddtags", "") or "").split(",") if t]
        if source:
            tags.append(f"source:{source}")
        host = e.pop("hostname", None) or e.pop("host", None)
        service = e.pop("service", None)
        status = _status(e.pop("status", None))
        message = e.pop("message", None)
        if isinstance(message, str) and message.lstrip().startswith("{"):
            # JSON preprocessing: a message that is a JSON object is parsed into attributes, its own
            # `message` (a reserved attribute) becoming the log's message; the entry's keys win
            try:
                parsed = orjson.loads(message)
            except orjson.JSONDecodeError:
                parsed = None
            if isinstance(parsed, dict):
                message = parsed.pop("message", None)
                for k in ("status", "service", "host", "hostname", *DATE_KEYS):
                    parsed.pop(k, None)  # reserved attributes the entry already set
                e = {**parsed, **e}
        attrs: dict[str, Any] = {"attributes": _nest(e), "status": status, "tags": tags,
                                 "timestamp": _iso(date)}
        if host is not None:
            attrs["host"] = host
        if service is not None:
            attrs["service"] = service
        if message is not None:
            attrs["message"] = message
        return {"id": s.id, "type": "log", "attributes": attrs}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the tests read `seen`
        pass

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(30)
        # headers and body go out in two writes: without this, Nagle's algorithm and the client's
        # delayed ACK hold every answer back ~40 ms
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def cut(self) -> None:
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def read_body(self) -> bytes | None:
        length = self.headers.get("Content-Length")
        if length is None or not length.strip().isdigit():
            self.send_intake_error(411, "Content-Length is required")
            return None
        return self.rfile.read(int(length))

    def send_json(self, status: int, doc: Any, headers: Mapping[str, str] | None = None) -> None:
        data = orjson.dumps(doc)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def send_intake_error(self, status: int, detail: str, *, retry_after: float | None = None,
                          reset: int | None = None) -> None:
        headers = {}
        if retry_after is not None:
            headers["Retry-After"] = str(int(retry_after))
        if reset is not None:
            headers["X-RateLimit-Reset"] = str(reset)
        body = {"errors": [{"status": str(status), "title": _TITLES.get(status, "Error"), "detail": detail}]}
        self.send_json(status, body, headers)

    def _wait(self) -> None:
        delay = self.server.standin._state.delay
        if delay > 0:
            time.sleep(delay)

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self._wait()
        path = urlsplit(self.path).path
        standin = self.server.standin
        if path == INTAKE:
            standin._intake(self)
        elif path == SEARCH:
            raw = self.read_body()
            if raw is None:
                return
            try:
                params = orjson.loads(raw) if raw.strip() else {}
            except orjson.JSONDecodeError as exc:
                return self.send_json(400, {"errors": [f"request body is not valid JSON: {exc}"]})
            if not isinstance(params, dict):
                return self.send_json(400, {"errors": ["request body must be a JSON object"]})
            standin._search(self, params)
        else:
            self.read_body()
            self.send_json(404, {"errors": ["Not found"]})

    def do_GET(self) -> None:  # noqa: N802
        self._wait()
        parts = urlsplit(self.path)
        standin = self.server.standin
        if parts.path == VALIDATE:
            if self.headers.get("DD-API-KEY") in standin.api_keys:
                return self.send_json(200, {"valid": True})
            return self.send_json(403, {"errors": ["Forbidden"]})
        if parts.path == LIST:
            q = {k: v[0] for k, v in parse_qs(parts.query).items()}
            params: dict[str, Any] = {"filter": {}, "page": {}}
            for k, v in q.items():
                m = re.fullmatch(r"(filter|page)\[(\w+)\]", k)
                if m:
                    params[m.group(1)][m.group(2)] = v
                elif k == "sort":
                    params["sort"] = v
            return standin._search(self, params)
        self.send_json(404, {"errors": ["Not found"]})


# -- helpers ---------------------------------------------------------------------------------------


class _TooLarge(ValueError):
    pass


def _decode(raw: bytes, encoding: str) -> bytes:
    if encoding in ("identity", ""):
        body = raw
    elif encoding == "gzip":
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        body = _inflate(d, raw, "gzip")
    elif encoding == "deflate":
        d = zlib.decompressobj()
        body = _inflate(d, raw, "deflate")
    else:
        raise ValueError(f"unsupported Content-Encoding {encoding!r}: use identity, gzip or deflate")
    if len(body) > MAX_PAYLOAD:
        raise _TooLarge
    return body


def _inflate(d: Any, raw: bytes, what: str) -> bytes:
    try:
        out = d.decompress(raw, MAX_PAYLOAD + 1)
        if len(out) > MAX_PAYLOAD:
            raise _TooLarge
        if not d.eof:
            raise ValueError(f"the {what} stream is cut short")
    except zlib.error as exc:
        raise ValueError(f"the body is not valid {what} data: {exc}") from None
    return out


def _truncate(entry: dict[str, Any], excess: int) -> str:
    """Cut the longest string field by the excess (and a margin for escapes); returns its name."""
    name = max((k for k, v in entry.items() if isinstance(v, str)), key=lambda k: len(entry[k]), default="")
    if name:
        value = entry[name]
        keep = max(0, len(value) - excess - 64)
        entry[name] = value[:keep]
        while len(orjson.dumps(entry)) > MAX_LOG and entry[name]:
            entry[name] = entry[name][: len(entry[name]) // 2]
    return name


def _millis(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return int(text)
        try:
            when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)
        return int(when.timestamp() * 1000)
    return None


def _date_of(entry: Mapping[str, Any]) -> int | None:
    for k in DATE_KEYS:
        if k in entry:
            ms = _millis(entry[k])
            if ms is not None:
                return ms
    return None


def _sort_key(s: Stored) -> tuple[int, int]:
    ms = _date_of(s.entry)
    return (ms if ms is not None else s.received_ms, s.order)


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _log_id(n: int) -> str:
    return base64.urlsafe_b64encode(b"AQAAAY" + n.to_bytes(8, "big") + secrets.token_bytes(6)).decode().rstrip("=")


def _status(value: Any) -> str:
    """Datadog's status remapper: 0-7 as syslog severities, strings by their first letters."""
    if value is None:
        return "info"
    if isinstance(value, int) and not isinstance(value, bool):
        return _STATUS_NUM[value] if 0 <= value <= 7 else "info"
    s = str(value).strip().lower()
    if s.isdigit():
        return _STATUS_NUM[int(s)] if int(s) <= 7 else "info"
    if s.startswith(("emerg", "f")):
        return "emergency"
    if s.startswith("a"):
        return "alert"
    if s.startswith("c"):
        return "critical"
    if s.startswith("e"):
        return "error"
    if s.startswith("w"):
        return "warning"
    if s.startswith("n"):
        return "notice"
    if s.startswith("i"):
        return "info"
    if s.startswith(("d", "t", "v")):
        return "debug"
    if s.startswith(("o", "s")):
        return "ok"
    return "info"


def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted keys shown as nested objects, as Datadog shows attributes; clashes stay flat."""
    out: dict[str, Any] = {}
    owned: set[int] = set()  # the dicts made here, which later keys may extend
    clashes: dict[str, Any] = {}
    for key, value in flat.items():
        parts = key.split(".")
        if "" in parts:
            clashes[key] = value
            continue
        node = out
        ok = True
        for p in parts[:-1]:
            nxt = node.get(p)
            if nxt is None:
                nxt = node[p] = {}
                owned.add(id(nxt))
            elif not isinstance(nxt, dict) or id(nxt) not in owned:
                ok = False
                break
            node = nxt
        if ok and parts[-1] not in node:
            node[parts[-1]] = value
        else:
            clashes[key] = value
    out.update(clashes)
    return out


_REL = re.compile(r"now(?:-(\d+)([smhdw]))?")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def _when(value: Any, now: int) -> int:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    text = str(value).strip()
    m = _REL.fullmatch(text)
    if m:
        return now - (int(m.group(1)) * _UNIT_MS[m.group(2)] if m.group(1) else 0)
    ms = _millis(text)
    if ms is None:
        raise ValueError(f"cannot read the time {value!r}: use now, now-15m, ISO 8601 or epoch milliseconds")
    return ms


def _cursor(text: Any) -> tuple[int, int]:
    try:
        a, b = orjson.loads(base64.urlsafe_b64decode(str(text).encode()))
        return int(a), int(b)
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise ValueError("page[cursor] is not a cursor this API returned") from None


def _query(q: str) -> Any:
    """A matcher for the supported subset of the log search syntax."""
    terms = [t for t in q.split() if t != "AND"]
    checks = []
    for t in terms:
        if t == "*":
            continue
        if t in ("OR", "NOT") or t[0] in "-(\"" or t.endswith(")"):
            raise ValueError(f"query term {t!r}: the stand-in supports key:value terms, bare words and AND only")
        if ":" in t:
            key, _, pattern = t.partition(":")
            checks.append((key, pattern))
        else:
            checks.append(("", t))

    def match(ev: Mapping[str, Any]) -> bool:
        a = ev["attributes"]
        for key, pattern in checks:
            if key == "":
                if pattern.lower() not in str(a.get("message", "")).lower():
                    return False
            elif key == "source":
                if not any(fnmatch.fnmatchcase(t, f"source:{pattern}") for t in a["tags"]):
                    return False
            elif key in ("service", "host", "status"):
                if not fnmatch.fnmatchcase(str(a.get(key, "")), pattern):
                    return False
            elif key.startswith("@"):
                v = _lookup(a["attributes"], key[1:])
                if v is None or not fnmatch.fnmatchcase(str(v).lower() if isinstance(v, bool) else str(v), pattern):
                    return False
            elif not any(fnmatch.fnmatchcase(t, f"{key}:{pattern}") for t in a["tags"]):
                return False
        return True

    return match


def _lookup(attrs: Mapping[str, Any], path: str) -> Any:
    if path in attrs:
        return attrs[path]
    parts = path.split(".")
    for i in range(1, len(parts)):
        sub = attrs.get(".".join(parts[:i]))
        if isinstance(sub, Mapping):
            v = _lookup(sub, ".".join(parts[i:]))
            if v is not None:
                return v
    return None


def gzip_json(doc: Any) -> bytes:
    """A JSON document, gzip-compressed: what an intake client sends."""
    return gzip.compress(orjson.dumps(doc))
