"""A stand-in for Splunk's HTTP Event Collector, on 127.0.0.1, with a search export of what it took.

It follows the documented HEC contract strictly (help.splunk.com: "Format events for HTTP Event
Collector", "HTTP Event Collector REST API endpoints", "About HTTP Event Collector Indexer
Acknowledgment", "Troubleshoot HTTP Event Collector" and its table of error codes):

``POST /services/collector``, ``/services/collector/event`` (and ``/event/1.0``):
  * auth ``Authorization: Splunk <token>`` (or Basic with the token as password): missing
    401 ``{"text":"Token is required","code":2}``; no ``Splunk`` scheme 401 code 3 "Invalid
    authorization"; unknown 403 code 4 "Invalid token"; disabled 403 code 1 "Token disabled";
    ``?token=`` 400 code 16 unless the token allows query-string auth;
  * a channel (``X-Splunk-Request-Channel`` or ``?channel=``) required when the token has
    ``useACK``: missing 400 code 10 "Data channel is missing", not a GUID 400 code 11;
  * ``Content-Encoding`` gzip or none (anything else 415, as the OTel receiver answers);
  * a body over ``max_content_length`` (as sent, and once decompressed) 413 [unverified: the
    text is splunkd's "Content-Length of N too large (maximum is M)"];
  * the body is envelopes concatenated (whitespace between them allowed), parsed one by one;
    the first bad one rejects the whole request (as the OTel receiver and Vector do) with
    ``invalid-event-number``: not JSON / not an object / ``event`` a number or list / a bad
    ``time``, ``host``, ``source``, ``sourcetype`` 400 code 6 "Invalid data format"; no
    ``event`` code 12; an empty ``event`` ("" or {}) code 13; an index the server does not
    have or the token may not write code 7 "Incorrect index"; ``fields`` not a flat object of
    strings (or lists of strings) code 15 "Error in handling indexed fields"; an empty body
    code 5 "No data";
  * ``200 {"text":"Success","code":0}``, with ``"ackId": N`` (per channel, from 0) when the
    token has ``useACK``.

``POST /services/collector/ack``: same auth and channel rules; 400 code 14 "ACK is disabled"
for a token without ``useACK``; body ``{"acks":[0,1]}`` -> ``{"acks":{"0":true,"1":false}}``;
an id answered ``true`` once is forgotten (later ``false``), as Splunk does.

``GET /services/collector/health``: 200 code 17 "HEC is healthy", 503 code 18 when set
unhealthy; with a token (header or ``?token=``), 400 code 21/22 for an invalid/disabled one.

Faults, at runtime: `go_down` / `come_up` (the listening socket closes and reopens on the same
port, open connections are cut), `slow`, `fail` (the next N event requests get a status and HEC
code, optionally ``Retry-After``; ``"reset"`` stores the events then cuts the connection without
an answer), `busy` (503 code 9), `throttle` (429), `reject_events` (per-event failures),
`lose_acks` (ackIds that never become true, the events optionally dropped), `unhealthy`,
`disable_token`.

Accepted events are kept as decoded envelopes in `accepted` (edit them to tamper at rest);
`search_export()` renders them as ``search/jobs/export?output_mode=json`` does.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import gzip
import itertools
import json
import re
import socket
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

DEFAULT_TOKEN = "3f0e9a52-7b1c-4d8e-9a6f-2c5b8d1e4f70"
DEFAULT_INDEXES = ("main", "audit", "history", "summary")
DEFAULT_MAX_CONTENT_LENGTH = 838_860_800
EVENT_PATHS = ("/services/collector", "/services/collector/event", "/services/collector/event/1.0")
ACK_PATHS = ("/services/collector/ack", "/services/collector/ack/1.0")
HEALTH_PATHS = ("/services/collector/health", "/services/collector/health/1.0")
TEXTS = {
    0: "Success", 1: "Token disabled", 2: "Token is required", 3: "Invalid authorization",
    4: "Invalid token", 5: "No data", 6: "Invalid data format", 7: "Incorrect index",
    8: "Internal server error", 9: "Server is busy", 10: "Data channel is missing",
    11: "Invalid data channel", 12: "Event field is required", 13: "Event field cannot be blank",
    14: "ACK is disabled", 15: "Error in handling indexed fields",
    16: "Query string authorization is not enabled", 17: "HEC is healthy",
    18: "HEC is unhealthy, queues are full", 21: "Invalid token", 22: "Token disabled",
    26: "HEC queue is at capacity and cannot process any more requests",  # [unverified]
}
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_WS = re.compile(r"\s*")


@dataclass
class Token:
    """A HEC token's settings, as in inputs.conf ``[http://<name>]``."""

    name: str = "otel-audit"
    enabled: bool = True
    use_ack: bool = False  # useACK
    indexes: tuple[str, ...] | None = None  # the indexes it may write; None: any the server has
    index: str = "main"  # default index
    sourcetype: str = "httpevent"
    source: str | None = None  # default: "http:<name>"
    allow_query_string: bool = False


@dataclass
class Stored:
    """One accepted event: the envelope as received, and what the server added."""

    envelope: dict[str, Any]
    token: str
    channel: str | None
    ack_id: int | None
    received: float
    client: str
    order: int


@dataclass
class Seen:
    """One request as the stand-in judged it."""

    path: str
    status: int
    code: int | None
    events: int
    encoding: str
    wire_bytes: int
    channel: str | None
    text: str = ""


@dataclass
class _Fault:
    status: int | str
    code: int | None = None
    text: str | None = None
    retry_after: float | None = None


@dataclass
class _Channel:
    next_id: int = 0
    ready: dict[int, float | None] = field(default_factory=dict)  # ackId -> when it turns true; None: never


@dataclass
class _Rejector:
    predicate: Callable[[dict[str, Any]], bool]
    times: int | None
    code: int = 6


class _Refused(Exception):
    def __init__(self, status: int, code: int, text: str | None = None, event: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(text or TEXTS.get(code, ""))
        self.status, self.code, self.event, self.retry_after = status, code, event, retry_after
        self.text = text or TEXTS.get(code, "")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], standin: SplunkHecStandIn) -> None:
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


class SplunkHecStandIn:
    """The stand-in server; a context manager. `url` is its base (``http://127.0.0.1:<port>``)."""

    def __init__(
        self,
        *,
        tokens: Mapping[str, Token] | None = None,
        use_ack: bool = False,
        indexes: tuple[str, ...] = DEFAULT_INDEXES,
        max_content_length: int = DEFAULT_MAX_CONTENT_LENGTH,
        ack_delay: float = 0.0,
    ) -> None:
        self.tokens: dict[str, Token] = dict(tokens) if tokens is not None else {DEFAULT_TOKEN: Token(use_ack=use_ack)}
        self.indexes = frozenset(indexes)
        self.max_content_length = max_content_length
        self.ack_delay = ack_delay  # seconds from receipt until an ackId turns true
        self.port = 0
        #: the client port of every TCP connection accepted, in order (a new pool, a new port)
        self.client_ports: list[int] = []
        self.delay = 0.0
        self.healthy = True
        self._lock = threading.Lock()
        self._accepted: list[Stored] = []
        self._dropped: list[Stored] = []  # taken, but lost "in the indexer" (lose_acks with drop)
        self._seen: list[Seen] = []
        self._faults: deque[_Fault] = deque()
        self._rejectors: list[_Rejector] = []
        self._lost_acks = 0
        self._lost_drop = False
        self._channels: dict[str, _Channel] = {}
        self.ack_queries = 0
        self._order = itertools.count()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> SplunkHecStandIn:
        self._server = _Server(("127.0.0.1", self.port), self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"hec-standin-{self.port}",
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

    def __enter__(self) -> SplunkHecStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def event_url(self) -> str:
        return self.url + "/services/collector/event"

    # -- faults ------------------------------------------------------------------------------------

    def go_down(self) -> None:
        """Stop listening (connection refused) and cut every open connection."""
        self.stop()

    def come_up(self, *, restart: bool = False) -> None:
        """Listen again on the same port; `restart`: as a restarted Splunk, with every ack channel forgotten."""
        if restart:
            with self._lock:
                self._channels.clear()
        if self._server is not None:
            return
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
        self.delay = float(seconds)

    def fail(self, status: int | str, times: int = 1, *, code: int | None = None, text: str | None = None,
             retry_after: float | None = None) -> None:
        """The next `times` event requests get `status` with HEC `code` (``"reset"``: the events are
        stored, then the connection is cut without an answer)."""
        with self._lock:
            self._faults.extend(_Fault(status, code, text, retry_after) for _ in range(times))

    def busy(self, times: int = 1, *, retry_after: float | None = None) -> None:
        """503 ``{"text":"Server is busy","code":9}``."""
        self.fail(503, times, code=9, retry_after=retry_after)

    def throttle(self, times: int = 1, *, retry_after: float | None = 1) -> None:
        """429 with Retry-After [the HEC code 26 text is unverified]."""
        self.fail(429, times, code=26, retry_after=retry_after)

    def reject_events(self, predicate: Callable[[dict[str, Any]], bool], *, times: int | None = None,
                      code: int = 6) -> None:
        """Refuse the first envelope of a request for which `predicate(envelope)` is true (400 `code`,
        ``invalid-event-number``), at most `times` times (None: always)."""
        with self._lock:
            self._rejectors.append(_Rejector(predicate, times, code))

    def lose_acks(self, times: int = 1, *, drop: bool = False) -> None:
        """The next `times` requests get an ackId that never turns true; `drop`: and their events are
        lost (not in `accepted`), as when an indexer fails before writing them."""
        with self._lock:
            self._lost_acks = times
            self._lost_drop = drop

    def unhealthy(self, yes: bool = True) -> None:
        self.healthy = not yes

    def disable_token(self, token: str = DEFAULT_TOKEN, disabled: bool = True) -> None:
        self.tokens[token].enabled = not disabled

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._rejectors.clear()
            self._lost_acks = 0
        self.delay = 0.0
        self.healthy = True

    # -- what it took ------------------------------------------------------------------------------

    @property
    def accepted(self) -> list[Stored]:
        with self._lock:
            return list(self._accepted)

    @property
    def dropped(self) -> list[Stored]:
        with self._lock:
            return list(self._dropped)

    @property
    def seen(self) -> list[Seen]:
        with self._lock:
            return list(self._seen)

    @property
    def count(self) -> int:
        with self._lock:
            return len(self._accepted)

    def events(self) -> list[dict[str, Any]]:
        """The accepted envelopes, in arrival order."""
        return [s.envelope for s in self.accepted]

    def search_results(self) -> list[dict[str, Any]]:
        """Every accepted event as a search result, as ``search index=* | ...`` returns it."""
        return [self._result(s) for s in self.accepted]

    def search_export(self) -> bytes:
        """``GET /services/search/jobs/export?output_mode=json``: one JSON object per line."""
        results = self.search_results()
        lines = []
        for i, r in enumerate(results):
            doc: dict[str, Any] = {"preview": False, "offset": i}
            if i == len(results) - 1:
                doc["lastrow"] = True
            doc["result"] = r
            lines.append(orjson.dumps(doc))
        return b"\n".join(lines) + b"\n"

    # -- the endpoints -----------------------------------------------------------------------------

    def _token_of(self, h: _Handler, query: Mapping[str, list[str]]) -> tuple[str, Token]:
        auth = h.headers.get("Authorization")
        if auth is None:
            if "token" in query:
                t = query["token"][0]
                tok = self.tokens.get(t)
                if tok is None:
                    raise _Refused(403, 4)
                if not tok.allow_query_string:
                    raise _Refused(400, 16)
                return t, tok
            raise _Refused(401, 2)
        scheme, _, value = auth.strip().partition(" ")
        if scheme.lower() == "splunk":
            t = value.strip()
        elif scheme.lower() == "basic":
            try:
                t = base64.b64decode(value.strip(), validate=True).decode().partition(":")[2]
            except (ValueError, UnicodeDecodeError):
                raise _Refused(401, 3) from None
        else:
            raise _Refused(401, 3)
        tok = self.tokens.get(t)
        if tok is None:
            raise _Refused(403, 4)
        if not tok.enabled:
            raise _Refused(403, 1)
        return t, tok

    @staticmethod
    def _channel_of(h: _Handler, query: Mapping[str, list[str]], tok: Token) -> str | None:
        channel = h.headers.get("X-Splunk-Request-Channel") or (query.get("channel") or [None])[0]
        if channel is None:
            if tok.use_ack:
                raise _Refused(400, 10)
            return None
        if not _GUID.fullmatch(channel):
            raise _Refused(400, 11)
        return channel.lower()

    def _events(self, h: _Handler, path: str, query: Mapping[str, list[str]]) -> None:
        raw = h.read_body()
        if raw is None:
            return
        encoding = (h.headers.get("Content-Encoding") or "").strip().lower()
        seen = Seen(path, 200, 0, 0, encoding, len(raw), None)
        try:
            if len(raw) > self.max_content_length:
                raise _Refused(413, 6, f"Content-Length of {len(raw)} too large (maximum is {self.max_content_length})")
            token, tok = self._token_of(h, query)
            channel = seen.channel = self._channel_of(h, query, tok)
            with self._lock:
                fault = self._faults.popleft() if self._faults else None
            if fault is not None and isinstance(fault.status, int):
                code = fault.code if fault.code is not None else {503: 9, 429: 26}.get(fault.status, 8)
                raise _Refused(fault.status, code, fault.text, retry_after=fault.retry_after)
            body = _decode(raw, encoding, self.max_content_length)
            envelopes = self._parse(body, tok)
            seen.events = len(envelopes)
            with self._lock:
                ack_id = None
                lost = False
                if tok.use_ack:
                    assert channel is not None
                    ch = self._channels.setdefault(channel, _Channel())
                    ack_id = ch.next_id
                    ch.next_id += 1
                    if self._lost_acks > 0:
                        self._lost_acks -= 1
                        lost = True
                    ch.ready[ack_id] = None if lost else time.monotonic() + self.ack_delay
                now = time.time()
                target = self._dropped if lost and self._lost_drop else self._accepted
                for env in envelopes:
                    target.append(Stored(env, token, channel, ack_id, now, h.client_address[0], next(self._order)))
                self._seen.append(seen)
            if fault is not None:  # "reset": taken, but the answer never comes
                h.cut()
                return
            answer: dict[str, Any] = {"text": "Success", "code": 0}
            if ack_id is not None:
                answer["ackId"] = ack_id
            h.send_json(200, answer)
        except _Refused as r:
            seen.status, seen.code, seen.text = r.status, r.code, r.text
            with self._lock:
                self._seen.append(seen)
            doc: dict[str, Any] = {"text": r.text, "code": r.code}
            if r.event is not None:
                doc["invalid-event-number"] = r.event
            headers = {}
            if r.retry_after is not None:
                headers["Retry-After"] = str(round(r.retry_after))
            h.send_json(r.status, doc, headers, close=r.status == 413)

    def _parse(self, body: bytes, tok: Token) -> list[dict[str, Any]]:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise _Refused(400, 6, event=0) from None
        if not text.strip():
            raise _Refused(400, 5)
        decoder = json.JSONDecoder()
        out: list[dict[str, Any]] = []
        pos = _WS.match(text, 0).end()  # type: ignore[union-attr]
        n = 0
        while pos < len(text):
            try:
                env, pos = decoder.raw_decode(text, pos)
            except json.JSONDecodeError:
                raise _Refused(400, 6, event=n) from None
            self._check(env, n, tok)
            out.append(env)
            n += 1
            pos = _WS.match(text, pos).end()  # type: ignore[union-attr]
        with self._lock:
            for r in list(self._rejectors):
                for i, env in enumerate(out):
                    if r.predicate(env):
                        if r.times is not None:
                            r.times -= 1
                            if r.times <= 0:
                                self._rejectors.remove(r)
                        raise _Refused(400, r.code, event=i)
        return out

    def _check(self, env: Any, n: int, tok: Token) -> None:
        if not isinstance(env, dict):
            raise _Refused(400, 6, event=n)
        if "event" not in env or env["event"] is None:
            raise _Refused(400, 12, event=n)
        event = env["event"]
        if event == "" or event == {}:
            raise _Refused(400, 13, event=n)
        if not isinstance(event, (str, dict)):
            raise _Refused(400, 6, event=n)
        t = env.get("time")
        if t is not None:
            if isinstance(t, bool) or not isinstance(t, (int, float, str)):
                raise _Refused(400, 6, event=n)
            if isinstance(t, str):
                try:
                    float(t)
                except ValueError:
                    raise _Refused(400, 6, event=n) from None
        for key in ("host", "source", "sourcetype", "index"):
            if key in env and not isinstance(env[key], str):
                raise _Refused(400, 6, event=n)
        index = env.get("index") or tok.index
        if index not in self.indexes or (tok.indexes is not None and index not in tok.indexes):
            raise _Refused(400, 7, event=n)
        fields = env.get("fields")
        if fields is not None:
            if not isinstance(fields, dict):
                raise _Refused(400, 15, event=n)
            for v in fields.values():
                if isinstance(v, list):
                    if not all(isinstance(x, str) for x in v):
                        raise _Refused(400, 15, event=n)
                elif not isinstance(v, str):
                    raise _Refused(400, 15, event=n)

    def _ack(self, h: _Handler, query: Mapping[str, list[str]]) -> None:
        raw = h.read_body()
        if raw is None:
            return
        self.ack_queries += 1
        try:
            _, tok = self._token_of(h, query)
            if not tok.use_ack:
                raise _Refused(400, 14)
            channel = self._channel_of(h, query, tok)
            assert channel is not None
            try:
                doc = orjson.loads(_decode(raw, (h.headers.get("Content-Encoding") or "").lower(),
                                           self.max_content_length))
            except orjson.JSONDecodeError:
                raise _Refused(400, 6) from None
            ids = doc.get("acks") if isinstance(doc, dict) else None
            if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
                raise _Refused(400, 6)
            now = time.monotonic()
            answer: dict[str, bool] = {}
            with self._lock:
                ch = self._channels.get(channel)
                for i in ids:
                    when = ch.ready.get(i) if ch is not None else None
                    done = when is not None and now >= when
                    if done:
                        del ch.ready[i]  # type: ignore[union-attr]  # answered true once, then forgotten
                    answer[str(i)] = done
            h.send_json(200, {"acks": answer})
        except _Refused as r:
            h.send_json(r.status, {"text": r.text, "code": r.code})

    def _health(self, h: _Handler, query: Mapping[str, list[str]]) -> None:
        token = None
        auth = h.headers.get("Authorization")
        if auth and auth.lower().startswith("splunk "):
            token = auth[7:].strip()
        elif "token" in query:
            token = query["token"][0]
        if token is not None:
            tok = self.tokens.get(token)
            if tok is None:
                return h.send_json(400, {"text": TEXTS[21], "code": 21})
            if not tok.enabled:
                return h.send_json(400, {"text": TEXTS[22], "code": 22})
        if not self.healthy:
            return h.send_json(503, {"text": TEXTS[18], "code": 18})
        h.send_json(200, {"text": TEXTS[17], "code": 17})

    # -- search ------------------------------------------------------------------------------------

    def _result(self, s: Stored) -> dict[str, Any]:
        env = s.envelope
        tok = self.tokens.get(s.token, Token())
        event = env["event"]
        raw = event if isinstance(event, str) else orjson.dumps(event).decode()
        t = env.get("time")
        when = float(t) if t is not None else s.received
        index = env.get("index") or tok.index
        result: dict[str, Any] = {
            "_bkt": f"{index}~0~STANDIN",
            "_cd": f"0:{s.order}",
            "_indextime": str(int(s.received)),
            "_raw": raw,
            "_serial": str(s.order),
            "_si": ["standin", index],
            "_sourcetype": env.get("sourcetype") or tok.sourcetype,
            "_time": _iso(when),
            "host": env.get("host") or s.client,
            "index": index,
            "linecount": "1",
            "source": env.get("source") or tok.source or f"http:{tok.name}",
            "sourcetype": env.get("sourcetype") or tok.sourcetype,
            "splunk_server": "standin",
        }
        extracted: dict[str, list[str]] = {}
        for k, v in (env.get("fields") or {}).items():
            extracted.setdefault(k, []).extend(v if isinstance(v, list) else [v])
        if isinstance(event, dict):  # search-time JSON extraction, named as spath names them
            _spath("", event, extracted)
        for k, vs in extracted.items():
            if k not in result:
                result[k] = vs[0] if len(vs) == 1 else vs
        return result


def _spath(prefix: str, value: Any, out: dict[str, list[str]]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _spath(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, list):
        for v in value:
            _spath(prefix + "{}", v, out)
    elif value is None:
        out.setdefault(prefix, []).append("null")
    elif isinstance(value, bool):
        out.setdefault(prefix, []).append("true" if value else "false")
    elif isinstance(value, str):
        out.setdefault(prefix, []).append(value)
    else:
        out.setdefault(prefix, []).append(json.dumps(value))


def _iso(seconds: float) -> str:
    ms = round(seconds * 1000)
    t = dt.datetime.fromtimestamp(ms // 1000, dt.timezone.utc).replace(microsecond=(ms % 1000) * 1000)
    return t.isoformat(timespec="milliseconds")


def _decode(raw: bytes, encoding: str, limit: int) -> bytes:
    if encoding in ("", "identity"):
        body = raw
    elif encoding == "gzip":
        try:
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            body = d.decompress(raw, limit + 1)
            if len(body) > limit:
                raise _Refused(413, 6, f"Content-Length of {len(body)}+ too large (maximum is {limit})")
            while d.eof and d.unused_data:  # a multi-member gzip stream
                rest = d.unused_data
                d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                body += d.decompress(rest, limit + 1 - len(body))
                if len(body) > limit:
                    raise _Refused(413, 6, f"Content-Length of {len(body)}+ too large (maximum is {limit})")
            if not d.eof:
                raise _Refused(400, 6, "Invalid data format (truncated gzip stream)")
        except zlib.error:
            raise _Refused(400, 6, "Invalid data format (not gzip)") from None
    else:
        raise _Refused(415, 6, '"Content-Encoding" must be "gzip" or empty')
    if len(body) > limit:
        raise _Refused(413, 6, f"Content-Length of {len(body)} too large (maximum is {limit})")
    return body


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the tests read `seen`
        pass

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(30)
        # headers and body go out in two writes: without this, Nagle meets the client's delayed ACK
        # and every answer waits 40 ms
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def cut(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def read_body(self) -> bytes | None:
        length = self.headers.get("Content-Length")
        if length is None or not length.strip().isdigit():
            self.send_json(411, {"text": "Length Required", "code": 6}, close=True)
            return None
        return self.rfile.read(int(length))

    def send_json(self, status: int, doc: Any, headers: Mapping[str, str] | None = None, *,
                  close: bool = False) -> None:
        data = orjson.dumps(doc)
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)

    def _wait(self) -> None:
        delay = self.server.standin.delay
        if delay > 0:
            time.sleep(delay)

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self._wait()
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        path = parts.path.rstrip("/")
        standin = self.server.standin
        if path in EVENT_PATHS:
            standin._events(self, path, query)
        elif path in ACK_PATHS:
            standin._ack(self, query)
        else:
            self.read_body()
            self.send_json(404, {"text": "The requested URL was not found on this server.", "code": 404})

    def do_GET(self) -> None:  # noqa: N802
        self._wait()
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/")
        if path in HEALTH_PATHS:
            return self.server.standin._health(self, parse_qs(parts.query))
        if path in EVENT_PATHS or path in ACK_PATHS:
            return self.send_json(405, {"text": "Method Not Allowed", "code": 405})
        self.send_json(404, {"text": "The requested URL was not found on this server.", "code": 404})


def gzip_envelopes(envelopes: list[dict[str, Any]]) -> bytes:
    """Envelopes concatenated and gzipped, as a HEC client sends them (for tests that talk HTTP)."""
    return gzip.compress(b"".join(orjson.dumps(e) for e in envelopes))
