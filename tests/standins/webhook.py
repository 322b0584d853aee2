"""A Standard Webhooks receiver stand-in: verifies, dedupes and stores signed JSON messages.

A real HTTP server (``ThreadingHTTPServer`` on 127.0.0.1, an ephemeral port, HTTP/1.1 with
keep-alive) that behaves as a careful receiver built on the spec
(standard-webhooks/spec/standard-webhooks.md) does:

* only ``POST <path>`` (404 elsewhere, 405 for another method, with ``Allow: POST``);
* the body is at most ``max_body_bytes`` (413), ``Content-Encoding`` is gzip (decoded before the
  signature check, when ``accept_gzip``) or absent (415 otherwise);
* ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` are required (400), the id
  holds no ``.`` (400);
* the signature is checked over the raw (decoded) body with the OFFICIAL ``standardwebhooks``
  package for every ``whsec_`` secret the receiver holds (``v1``; its five-minute timestamp
  tolerance included), and with ``cryptography``'s Ed25519 for every ``whpk_`` public key
  (``v1a``, same tolerance); no match is a 401 whose body gives the reason;
* a ``webhook-id`` seen before is acknowledged (200, ``"duplicate"``) and not stored again;
* ``Content-Type: application/json`` (415), a JSON object with ``type``, ``timestamp`` and a
  ``data`` list (400 otherwise); then stored, 200.

Error bodies are ``{"error": "<what was wrong>"}``. Stored: ``messages`` (id, headers, the signed
body, the parsed payload, editable to alter data at rest), every ``attempts`` entry with the
status answered, ``duplicates``; ``keep=False`` only counts ``accepted_events`` (benchmarks).

Faults, switchable at runtime: ``go_down()`` / ``come_up()`` / ``outage()`` (the port refuses
connections, open keep-alive connections are cut), ``slow(seconds)`` (answer late, after
storing: a sender that times out retries a message that was stored), ``fail_requests(status,
times, retry_after=...)`` (e.g. 500, 503, 429 with ``Retry-After``; before anything else, as an
overloaded proxy would), ``fail_after_store(times)`` (store, then answer 500: a lost
acknowledgement), ``gone()`` (410 Gone for every request until ``clear_faults()``) and
``redirect(location)`` (308).
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import socket
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

#: nginx's default client_max_body_size: the usual limit in front of a webhook receiver.
MAX_BODY_BYTES = 1024 * 1024
#: The reference libraries' timestamp tolerance.
TOLERANCE_S = 5 * 60


@dataclass
class Message:
    """One stored message."""

    id: str
    timestamp: int
    headers: dict[str, str]  # lower-cased names
    body: bytes  # the raw body after Content-Encoding was decoded: what was signed
    payload: dict[str, Any]  # the parsed JSON (edit it to alter the message "at rest")

    @property
    def where(self) -> str:
        return f"webhook:{self.id}"


@dataclass
class Attempt:
    """One request as the receiver saw it, and what it answered."""

    id: str | None
    timestamp: str | None
    signature: str | None
    headers: dict[str, str]
    body_bytes: int
    gzip: bool
    at: float  # time.monotonic() when it arrived
    status: int = 0
    error: str = ""


@dataclass
class _Fault:
    status: int
    times: int
    retry_after: str | None
    body: Any


@dataclass
class _State:
    faults: list[_Fault] = field(default_factory=list)
    fail_after_store: int = 0
    gone: bool = False
    redirect: str | None = None
    delay: float = 0.0
    delay_times: int | None = None  # None: every request


class _Refuse(Exception):
    def __init__(self, status: int, error: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.headers = dict(headers or {})


def _public_key(whpk: str) -> Ed25519PublicKey:
    if not whpk.startswith("whpk_"):
        raise ValueError("a public key starts with 'whpk_'")
    raw = whpk[len("whpk_"):]
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(raw + "=" * (-len(raw) % 4)))


class WebhookReceiver:
    """A strict Standard Webhooks receiver; use as a context manager (`with WebhookReceiver(...) as rx:`)."""

    def __init__(
        self,
        *,
        secrets: Sequence[str] = (),
        public_keys: Sequence[str] = (),
        path: str = "/webhook",
        max_body_bytes: int = MAX_BODY_BYTES,
        accept_gzip: bool = True,
        keep: bool = True,
    ) -> None:
        if not secrets and not public_keys:
            raise ValueError("a receiver verifies signatures: give secrets (whsec_) or public_keys (whpk_)")
        self._webhooks = [Webhook(s) for s in secrets]  # the official package, as a receiver uses it
        self._public = [_public_key(k) for k in public_keys]
        self.path = path
        self.max_body_bytes = max_body_bytes
        self.accept_gzip = accept_gzip
        self.keep = keep  # False: count accepted events without keeping messages (benchmarks)
        self.accepted_events = 0
        self.messages: list[Message] = []
        self.attempts: list[Attempt] = []
        self.duplicates = 0
        self._ids: set[str] = set()
        self._state = _State()
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        #: the client port of every TCP connection accepted, in order (a new pool, a new port)
        self.client_ports: list[int] = []
        self.port = 0

    # -- lifecycle ---------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The webhook URL to configure as the exporter's endpoint."""
        return f"http://127.0.0.1:{self.port}{self.path}"

    def start(self) -> WebhookReceiver:
        self._listen()
        return self

    def stop(self) -> None:
        self._close()

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _listen(self) -> None:
        receiver = self

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

            def process_request(self, request: Any, client_address: Any) -> None:
                with receiver._lock:
                    receiver._conns.add(request)
                    receiver.client_ports.append(client_address[1])  # one entry per TCP connection
                super().process_request(request, client_address)

            def shutdown_request(self, request: Any) -> None:
                with receiver._lock:
                    receiver._conns.discard(request)
                super().shutdown_request(request)

        server = Server(("127.0.0.1", self.port), _handler_for(self))
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"webhook-standin-{self.port}", daemon=True)
        self._thread.start()

    def _close(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._lock:
            conns = list(self._conns)
            self._conns.clear()
        for c in conns:  # cut keep-alive connections too: "down" means nothing answers
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                c.close()
        if self._thread is not None:
            self._thread.join(5)

    # -- faults ------------------------------------------------------------------------------------

    def go_down(self) -> None:
        """Stop listening (connections are refused) and cut every open connection."""
        self._close()

    def come_up(self) -> None:
        """Listen again on the same port."""
        if self._server is None:
            self._listen()

    @contextlib.contextmanager
    def outage(self) -> Iterator[None]:
        self.go_down()
        try:
            yield
        finally:
            self.come_up()

    def slow(self, seconds: float, times: int | None = None) -> None:
        """Answer the next `times` requests (None: all) this much later, after storing them; 0 answers at once."""
        with self._lock:
            self._state.delay = seconds
            self._state.delay_times = times

    def _delay(self) -> float:
        with self._lock:
            state = self._state
            if not state.delay or state.delay_times == 0:
                return 0.0
            if state.delay_times is not None:
                state.delay_times -= 1
            return state.delay

    def fail_requests(self, status: int, times: int = 1, *, retry_after: str | None = None,
                      body: Any = None) -> None:
        """The next `times` requests get `status` (with `Retry-After` when given), before any check."""
        with self._lock:
            self._state.faults.append(_Fault(status, times, retry_after, body))

    def fail_after_store(self, times: int = 1) -> None:
        """The next `times` good messages are stored, then answered 500: the sender never hears they arrived."""
        with self._lock:
            self._state.fail_after_store += times

    def gone(self) -> None:
        """Answer 410 Gone to every request from now on (the receiver wants no more webhooks)."""
        self._state.gone = True

    def redirect(self, location: str) -> None:
        """Answer 308 Permanent Redirect to `location` from now on."""
        self._state.redirect = location

    def clear_faults(self) -> None:
        with self._lock:
            self._state = _State()

    # -- what was stored ---------------------------------------------------------------------------

    def events(self) -> list[dict[str, Any]]:
        """Every stored event, message after message."""
        with self._lock:
            return [ev for m in self.messages for ev in m.payload["data"]]

    def payloads(self) -> list[tuple[str, dict[str, Any]]]:
        """(where, payload) of every stored message, for `otel_audit.exporters.webhook.read_payload`."""
        with self._lock:
            return [(m.where, m.payload) for m in self.messages]

    def statuses(self) -> list[int]:
        with self._lock:
            return [a.status for a in self.attempts]

    # -- handling (called by the handler) ----------------------------------------------------------

    def _fault(self) -> _Fault | None:
        with self._lock:
            for f in self._state.faults:
                if f.times > 0:
                    f.times -= 1
                    return f
        return None

    def _verify(self, body: bytes, headers: Mapping[str, str]) -> None:
        """Raises _Refuse(401) unless one of the receiver's keys verifies the message."""
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise _Refuse(400, "the body is not UTF-8") from None
        reasons: list[str] = []
        for wh in self._webhooks:
            try:
                wh.verify(text, dict(headers), json_parse=False)
                return
            except WebhookVerificationError as exc:
                reasons.append(str(exc))
            except ValueError as exc:  # a malformed signature list ("v1" without a comma, bad base64)
                reasons.append(f"Invalid Signature Headers ({type(exc).__name__})")
        if self._public:
            try:
                ts = int(headers["webhook-timestamp"])
            except ValueError:
                raise _Refuse(401, "Invalid Signature Headers") from None
            now = time.time()
            if ts < now - TOLERANCE_S:
                reasons.append("Message timestamp too old")
            elif ts > now + TOLERANCE_S:
                reasons.append("Message timestamp too new")
            else:
                signed = f"{headers['webhook-id']}.{ts}.".encode() + body
                for entry in headers["webhook-signature"].split(" "):
                    version, _, sig = entry.partition(",")
                    if version != "v1a":
                        continue
                    try:
                        raw = base64.b64decode(sig, validate=True)
                    except ValueError:
                        continue
                    for key in self._public:
                        try:
                            key.verify(raw, signed)
                            return
                        except InvalidSignature:
                            pass
                reasons.append("No matching v1a signature found")
        raise _Refuse(401, "; ".join(dict.fromkeys(reasons)) or "No matching signature found")

    def handle(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, dict[str, Any],
                                                                                       dict[str, str]]:
        """(status, JSON body, extra headers) for one request; records the attempt."""
        attempt = Attempt(headers.get("webhook-id"), headers.get("webhook-timestamp"),
                          headers.get("webhook-signature"), headers, len(raw),
                          headers.get("content-encoding", "").lower() == "gzip", time.monotonic())
        with self._lock:
            if self.keep:
                self.attempts.append(attempt)
        try:
            status, doc, extra = self._handle(method, path, headers, raw)
        except _Refuse as refusal:
            status, doc, extra = refusal.status, {"error": refusal.error}, refusal.headers
            attempt.error = refusal.error
        attempt.status = status
        return status, doc, extra

    def _handle(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, dict[str, Any],
                                                                                        dict[str, str]]:
        state = self._state
        fault = self._fault()
        if fault is not None:
            extra = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            body = fault.body if fault.body is not None else {"error": _REASONS.get(fault.status, "injected fault")}
            raise _Refuse(fault.status, body.get("error", "") if isinstance(body, dict) else str(body), extra)
        if state.gone:
            raise _Refuse(410, "this webhook endpoint has been removed; stop sending")
        if state.redirect:
            raise _Refuse(308, f"moved to {state.redirect}", {"Location": state.redirect})
        if path.split("?")[0] != self.path:
            raise _Refuse(404, f"no webhook endpoint at {path.split('?')[0]}")
        if method != "POST":
            raise _Refuse(405, f"method {method} is not allowed; webhooks are POSTed", {"Allow": "POST"})
        if len(raw) > self.max_body_bytes:
            raise _Refuse(413, f"payload too large: {len(raw)} bytes, the limit is {self.max_body_bytes}")
        encoding = headers.get("content-encoding", "").strip().lower()
        body = raw
        if encoding == "gzip" and self.accept_gzip:
            try:
                body = gzip.decompress(raw)
            except (OSError, EOFError):
                raise _Refuse(400, "Content-Encoding is gzip but the body is not gzip data") from None
            if len(body) > self.max_body_bytes:
                raise _Refuse(413, f"payload too large: {len(body)} bytes decoded, the limit is {self.max_body_bytes}")
        elif encoding not in ("", "identity"):
            raise _Refuse(415, f"Content-Encoding {encoding} is not supported; send the body uncompressed")
        for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
            if not headers.get(name):
                raise _Refuse(400, f"missing required header {name}")
        msg_id = headers["webhook-id"]
        if "." in msg_id:
            raise _Refuse(400, "webhook-id must not contain '.'")
        self._verify(body, headers)
        with self._lock:
            if msg_id in self._ids:
                self.duplicates += 1
                return 200, {"status": "duplicate", "id": msg_id}, {}
        mime = headers.get("content-type", "").split(";")[0].strip().lower()
        if mime != "application/json":
            raise _Refuse(415, f"Content-Type {mime or '(none)'} is not supported; send application/json")
        try:
            payload = json.loads(body)
        except ValueError as exc:
            raise _Refuse(400, f"the body is not JSON: {exc}") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("type"), str) \
                or not isinstance(payload.get("timestamp"), str) or not isinstance(payload.get("data"), list):
            raise _Refuse(400, "the payload must be an object with type (string), timestamp (string) and data (list)")
        with self._lock:
            if msg_id in self._ids:  # a concurrent duplicate
                self.duplicates += 1
                return 200, {"status": "duplicate", "id": msg_id}, {}
            self._ids.add(msg_id)
            self.accepted_events += len(payload["data"])
            if self.keep:
                self.messages.append(Message(msg_id, int(headers["webhook-timestamp"]), headers, body, payload))
            if self._state.fail_after_store > 0:
                self._state.fail_after_store -= 1
                raise _Refuse(500, "internal error after the message was stored")
        return 200, {"status": "accepted", "id": msg_id, "events": len(payload["data"])}, {}


_REASONS = {
    408: "request timeout",
    429: "too many requests; slow down",
    500: "internal server error",
    502: "bad gateway",
    503: "service unavailable",
    504: "gateway timeout",
}


def _handler_for(receiver: WebhookReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "webhook-standin/1"
        disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
            pass

        def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
            self._handle("POST")

        def do_GET(self) -> None:  # noqa: N802
            self._handle("GET")

        def do_PUT(self) -> None:  # noqa: N802
            self._handle("PUT")

        def _handle(self, method: str) -> None:
            length = self.headers.get("Content-Length")
            if length is None and method == "POST":
                self._reply(411, {"error": "Content-Length is required"}, {})
                return
            raw = self.rfile.read(int(length or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, doc, extra = receiver.handle(method, self.path, headers, raw)
            delay = receiver._delay()
            if delay:
                time.sleep(delay)
            self._reply(status, doc, extra)

        def _reply(self, status: int, doc: dict[str, Any], extra: Mapping[str, str]) -> None:
            data = json.dumps(doc).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in extra.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)
            except OSError:  # the sender gave up (timeout) or the receiver went down meanwhile
                self.close_connection = True

    return Handler
