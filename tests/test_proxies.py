"""The SIEM exporters honour the environment's proxies as requests does, with a real loopback proxy.

`ForwardProxy` is a small threading HTTP proxy: it takes absolute-URI requests (``POST
http://host:port/path``, what a client sends to a plain-HTTP proxy), counts them, forwards them to
the origin and relays the answer (502 when the origin cannot be reached). A loopback destination
never goes through a proxy from the environment (as the collector's Go clients), so the receivers
are addressed by a name only the proxy resolves (`NEAR`, which it maps to 127.0.0.1). Through it:

* with HTTP_PROXY set, the webhook exporter delivers to the stand-in receiver through the proxy,
  and what the receiver stored verifies;
* NO_PROXY=127.0.0.1 bypasses it, `proxy_from_env: false` bypasses it, and `proxy_url` wins over
  HTTP_PROXY;
* ~/.netrc (NETRC) is never read: no Authorization header is added to a request;
* every SIEM exporter (splunk_hec, datadog, elasticsearch, webhook) built from a config block sends
  through the proxy named by HTTP_PROXY, and none does with `proxy_from_env: false`;
* a loopback destination (127.0.0.0/8, ::1, localhost) is reached directly by every one of them.
"""

from __future__ import annotations

import http.client
import os
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor, ReadWriteLogRecord
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from otel_audit.errors import ConfigError
from otel_audit.exporters._http import EnvironmentSession, ExporterSession, fresh_session
from otel_audit.exporters.datadog import DatadogLogExporter
from otel_audit.exporters.elastic import ElasticLogExporter
from otel_audit.exporters.splunk_hec import SplunkHecLogExporter
from otel_audit.exporters.webhook import WebhookLogExporter, read_payload
from otel_audit.keys import Keyring
from otel_audit.processors.signing import SigningProcessor
from otel_audit.verify import Verifier
from tests.standins.webhook import WebhookReceiver

SECRET = "whsec_" + "cHJveHktdGVzdC1zZWNyZXQtMDEyMzQ1Njc4OWFi"
#: a receiver's name that only the proxy resolves (to 127.0.0.1): the client never looks it up
NEAR = "receiver.proxy-test.invalid"
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
NO_RETRY = {"enabled": False}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No proxy variable, exporter setting or netrc of the machine reaches a test."""
    for name in list(os.environ):
        if name.upper() in PROXY_VARS or name.startswith("OTEL_AUDIT_") or name in ("NETRC", "DD_API_KEY"):
            monkeypatch.delenv(name, raising=False)


class ForwardProxy:
    """A loopback forward proxy for plain HTTP: counts absolute-URI requests and forwards them."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, dict[str, str]]] = []  # (method, absolute URI, lowercased headers)
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))
                with outer._lock:
                    outer.seen.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
                target = urlsplit(self.path)
                if target.scheme != "http" or not target.hostname:
                    self.send_error(400, "not an absolute http:// URI")
                    return
                origin = "127.0.0.1" if target.hostname == NEAR else target.hostname
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("proxy-connection", "proxy-authorization", "connection")}
                path = target.path + (f"?{target.query}" if target.query else "")
                try:
                    conn = http.client.HTTPConnection(origin, target.port or 80, timeout=10)
                    conn.request(self.command, path or "/", body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                except OSError:
                    self.send_error(502, "origin unreachable")
                    return
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_POST = do_PUT = do_HEAD = _any  # noqa: N815 - http.server's names

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def targets(self) -> list[str]:
        with self._lock:
            return [uri for _, uri, _ in self.seen]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    p = ForwardProxy()
    yield p
    p.close()


@pytest.fixture
def rx() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(secrets=[SECRET]) as receiver:
        yield receiver


def dead_port_url() -> str:
    """An http:// URL on a loopback port nothing listens on."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


class Capture(LogRecordProcessor):
    def __init__(self) -> None:
        self.records: list[ReadWriteLogRecord] = []

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        self.records.append(log_record)

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def emit(keys: Path, downstream: LogRecordProcessor, n: int = 6) -> None:
    """n signed login events and the end checkpoint through the real signing processor."""
    res = Resource.create({"service.name": "gateway"})
    provider = LoggerProvider(resource=res, shutdown_on_exit=False)
    provider.add_log_record_processor(SigningProcessor(keys, downstream=downstream, checkpoint_every=50,
                                                       checkpoint_interval=3600, resource=res))
    logger = provider.get_logger("otel_audit.tests")
    for i in range(n):
        logger.emit(event_name="authentication.login.succeeded", body=f"login #{i}",
                    severity_number=SeverityNumber.INFO, attributes={"user.id": f"u-{i}", "audit.outcome": "success"})
    provider.shutdown()


def deliver(exporter: WebhookLogExporter, keys: Path) -> None:
    emit(keys, BatchLogRecordProcessor(exporter, schedule_delay_millis=50))


def stored_verifies(rx: WebhookReceiver, keys: Path) -> int:
    """What the receiver stored verifies as one signed stream; returns how many records it holds."""
    v = Verifier(Keyring.load(keys))
    n = 0
    for where, payload in rx.payloads():
        for loc, rec in read_payload(payload, where).records:
            v.add_record(rec, loc)
            n += 1
    rep = v.finish()
    assert rep.ok and len(rep.streams) == 1, [s.problems for s in rep.streams] + rep.problems
    return n


def far(url: str) -> str:
    """`url` (on 127.0.0.1) under the name only the proxy resolves."""
    return url.replace("127.0.0.1", NEAR)


def webhook(rx: WebhookReceiver, url: str | None = None, **block: Any) -> WebhookLogExporter:
    cfg = {"endpoint": url or rx.url, "secrets": [SECRET], "retry_on_failure": NO_RETRY, "timeout": "5s", **block}
    return WebhookLogExporter.from_config(cfg, where="exporters.webhook")


# -- the full path, with the webhook exporter ------------------------------------------------------------


def test_http_proxy_carries_the_delivery(rx: WebhookReceiver, proxy: ForwardProxy, shared_keys: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """With HTTP_PROXY set, every request goes through the proxy and the receiver's copy verifies."""
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    deliver(webhook(rx, far(rx.url)), shared_keys)
    assert stored_verifies(rx, shared_keys) == 8  # start checkpoint, 6 events, end checkpoint
    targets = proxy.targets()
    assert targets and all(t.startswith(far(rx.url)) for t in targets)
    assert len(targets) == len(rx.attempts)


@pytest.mark.parametrize("no_proxy", ["127.0.0.1", "localhost,127.0.0.1", "*"])
def test_no_proxy_bypasses_the_proxy(rx: WebhookReceiver, proxy: ForwardProxy, shared_keys: Path,
                                     monkeypatch: pytest.MonkeyPatch, no_proxy: str) -> None:
    """NO_PROXY naming the receiver's host (or *) sends straight to it, as requests does."""
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", no_proxy)
    deliver(webhook(rx), shared_keys)
    assert stored_verifies(rx, shared_keys) == 8
    assert proxy.targets() == []


def test_proxy_from_env_false_ignores_the_environment(rx: WebhookReceiver, shared_keys: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """proxy_from_env: false sends straight to the receiver although HTTP_PROXY names a dead proxy."""
    monkeypatch.setenv("HTTP_PROXY", dead_port_url())
    deliver(webhook(rx, proxy_from_env=False), shared_keys)
    assert stored_verifies(rx, shared_keys) == 8


def test_proxy_url_wins_over_http_proxy(rx: WebhookReceiver, proxy: ForwardProxy, shared_keys: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A configured proxy_url is used although HTTP_PROXY names another (dead) proxy."""
    monkeypatch.setenv("HTTP_PROXY", dead_port_url())
    deliver(webhook(rx, proxy_url=proxy.url), shared_keys)
    assert stored_verifies(rx, shared_keys) == 8
    assert proxy.targets() and all(t.startswith(rx.url) for t in proxy.targets())


def test_netrc_is_never_read(rx: WebhookReceiver, proxy: ForwardProxy, shared_keys: Path, tmp_path: Path,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A netrc entry for the receiver's host adds no Authorization header (requests' trust_env would)."""
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine {NEAR} login netrc-user password netrc-pass-do-not-send\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    deliver(webhook(rx, far(rx.url)), shared_keys)
    assert stored_verifies(rx, shared_keys) == 8
    assert proxy.seen and all("authorization" not in headers for _, _, headers in proxy.seen)


def test_proxy_from_env_must_be_a_boolean() -> None:
    """proxy_from_env: "no" is a ConfigError naming the key."""
    with pytest.raises(ConfigError, match=r"exporters\.webhook\.proxy_from_env: expected true or false"):
        WebhookLogExporter.from_config({"endpoint": "http://127.0.0.1:9", "secrets": [SECRET], "proxy_from_env": "no"},
                                       where="exporters.webhook")


def test_a_forked_childs_session_keeps_the_setting() -> None:
    """fresh_session (after os.fork) keeps proxy_from_env and the netrc-free trust_env."""
    for flag in (True, False):
        new = fresh_session(ExporterSession(flag))
        assert isinstance(new, ExporterSession) and new.proxy_from_env is flag and new.trust_env is False
    for pin in (True, False):  # the otlphttp exporter's session keeps its class (the loopback rule) and setting
        renewed = fresh_session(EnvironmentSession(pin))
        assert isinstance(renewed, EnvironmentSession) and renewed.pin_verify is pin and renewed.trust_env is True


# -- every SIEM exporter ---------------------------------------------------------------------------------

#: an origin only the proxy could reach: the client never resolves it when it goes through the proxy
ORIGIN = "http://siem.proxy-test.invalid:8088"

BLOCKS: dict[str, tuple[Any, dict[str, Any]]] = {
    "splunk_hec": (SplunkHecLogExporter, {"endpoint": ORIGIN, "token": "00000000-0000-0000-0000-000000000000"}),
    "datadog": (DatadogLogExporter, {"api": {"key": "0" * 32}, "logs": {"endpoint": ORIGIN}}),
    "elasticsearch": (ElasticLogExporter, {"endpoint": ORIGIN}),
    "webhook": (WebhookLogExporter, {"endpoint": ORIGIN, "secrets": [SECRET]}),
}


@pytest.mark.parametrize("kind", sorted(BLOCKS))
@pytest.mark.parametrize("from_env", [True, False])
def test_every_siem_exporter_sends_through_the_environment_proxy(
    kind: str, from_env: bool, proxy: ForwardProxy, shared_keys: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Built from a config block with HTTP_PROXY set, each exporter's export goes to the proxy for its
    origin (the proxy answers 502: the origin does not exist); with proxy_from_env: false, none does."""
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    cls, block = BLOCKS[kind]
    block = {**block, "retry_on_failure": NO_RETRY, "timeout": "5s"}
    if not from_env:
        block["proxy_from_env"] = False
    exporter = cls.from_config(block, where=f"exporters.{kind}")
    cap = Capture()
    emit(shared_keys, cap, n=2)
    try:
        exporter.export(cap.records)
    finally:
        exporter.shutdown()
    targets = proxy.targets()
    if from_env:
        assert targets and all(t.startswith(ORIGIN + "/") for t in targets), targets
    else:
        assert targets == []


@pytest.mark.parametrize("kind", sorted(BLOCKS))
def test_every_siem_exporter_sends_through_its_proxy_url(
    kind: str, proxy: ForwardProxy, shared_keys: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A block's proxy_url (the collector's confighttp key) carries every request, over an HTTP_PROXY that
    names a dead proxy."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{s.getsockname()[1]}")
    cls, block = BLOCKS[kind]
    block = {**block, "retry_on_failure": NO_RETRY, "timeout": "5s", "proxy_url": proxy.url}
    exporter = cls.from_config(block, where=f"exporters.{kind}")
    cap = Capture()
    emit(shared_keys, cap, n=2)
    try:
        exporter.export(cap.records)
    finally:
        exporter.shutdown()
    targets = proxy.targets()
    assert targets and all(t.startswith(ORIGIN + "/") for t in targets), targets


# -- loopback destinations -------------------------------------------------------------------------------


def test_loopback_receiver_is_reached_directly(rx: WebhookReceiver, proxy: ForwardProxy, shared_keys: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP_PROXY and ALL_PROXY name a proxy, yet a receiver on 127.0.0.1 gets every request directly."""
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("ALL_PROXY", proxy.url)
    deliver(webhook(rx), shared_keys)
    assert stored_verifies(rx, shared_keys) == 8
    assert proxy.targets() == []


@pytest.mark.parametrize("kind", sorted(BLOCKS))
@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "localhost", "[::1]"])
def test_every_siem_exporter_sends_loopback_destinations_directly(
    kind: str, host: str, proxy: ForwardProxy, shared_keys: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With HTTP_PROXY set, no exporter sends a request for a loopback destination to the proxy (the
    collector's rule); the connection to a dead loopback port fails directly."""
    import socket

    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        origin = f"http://{host}:{s.getsockname()[1]}"
    cls, block = BLOCKS[kind]
    block = {**block, "retry_on_failure": NO_RETRY, "timeout": "2s"}
    block.update({"logs": {"endpoint": origin}} if kind == "datadog" else {"endpoint": origin})
    exporter = cls.from_config(block, where=f"exporters.{kind}")
    cap = Capture()
    emit(shared_keys, cap, n=1)
    try:
        exporter.export(cap.records)
    finally:
        exporter.shutdown()
    assert proxy.targets() == []


def test_proxy_url_applies_to_loopback_too(rx: WebhookReceiver, proxy: ForwardProxy, shared_keys: Path) -> None:
    """A configured proxy_url is the block's own choice: it carries loopback destinations as well (as the
    collector's proxy_url)."""
    deliver(webhook(rx, proxy_url=proxy.url), shared_keys)
    assert stored_verifies(rx, shared_keys) == 8
    assert proxy.targets() and all(t.startswith(rx.url) for t in proxy.targets())


@pytest.mark.parametrize(("host", "loopback"), [
    ("localhost", True), ("LOCALHOST.", True), ("127.0.0.1", True), ("127.255.0.9", True), ("::1", True),
    ("[::1]", True), ("::ffff:127.0.0.1", True), ("10.0.0.1", False), ("localhost.example.com", False),
    ("collector", False), ("::2", False), ("", False), (None, False),
])
def test_is_loopback_host(host: str | None, loopback: bool) -> None:
    """localhost and the loopback addresses (127.0.0.0/8, ::1, IPv4-mapped) count as loopback; nothing else."""
    from otel_audit.exporters._http import is_loopback_host

    assert is_loopback_host(host) is loopback
