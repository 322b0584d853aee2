"""OTLP exporters built from collector-shaped blocks, against real loopback gRPC and HTTP servers.

Starts, per test: a ``http.server`` on 127.0.0.1 (plain or TLS) that records POSTs, or a
``grpc.server`` on 127.0.0.1 with a LogsService that records requests.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import ipaddress
import logging
import ssl
import threading
import zlib
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from otel_audit.errors import ConfigError
from otel_audit.exporters.otlp import create_otlp_exporter
from tests.standins import in_forked_child

SECRET = "Bearer s3cr3t-t0ken-value"


@pytest.fixture(autouse=True)
def _no_otlp_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the machine's OTEL_EXPORTER_OTLP_* settings out of every test."""
    import os

    for name in list(os.environ):
        if name.startswith("OTEL_EXPORTER_OTLP"):
            monkeypatch.delenv(name)


# --------------------------------------------------------------------------- servers


@dataclass
class Received:
    """What a loopback server saw: (path, lowercased headers, decoded request) per call."""

    calls: list[tuple[str, dict[str, str], ExportLogsServiceRequest]] = field(default_factory=list)
    event: threading.Event = field(default_factory=threading.Event)
    #: statuses (HTTP int, or gRPC StatusCode) to answer the next requests with, before anything else
    faults: list[object] = field(default_factory=list)
    #: a record for which this is true makes the whole request invalid (HTTP 400 / INVALID_ARGUMENT)
    malformed: object = None
    #: the client port of every request, in order
    ports: list[int] = field(default_factory=list)

    def refusal(self, request: ExportLogsServiceRequest) -> object:
        if self.faults:
            return self.faults.pop(0)
        if self.malformed is not None:
            for rl in request.resource_logs:
                for sl in rl.scope_logs:
                    if any(self.malformed(record) for record in sl.log_records):  # type: ignore[operator]
                        return "malformed"
        return None


def _http_server(tls_context: ssl.SSLContext | None = None) -> tuple[ThreadingHTTPServer, Received]:
    received = Received()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a collector's receiver: clients pool connections

        def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            encoding = (self.headers.get("Content-Encoding") or "").lower()
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
            request = ExportLogsServiceRequest()
            request.ParseFromString(body)
            received.ports.append(self.client_address[1])
            refusal = received.refusal(request)
            if refusal is not None:
                status = 400 if refusal == "malformed" else int(refusal)  # type: ignore[call-overload]
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            received.calls.append((self.path, headers, request))
            payload = ExportLogsServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            received.event.set()

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - keep test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls_context is not None:
        server.socket = tls_context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, received


class _Logs(logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self, received: Received) -> None:
        self.received = received

    def Export(
        self, request: ExportLogsServiceRequest, context: grpc.ServicerContext
    ) -> ExportLogsServiceResponse:  # noqa: N802
        metadata = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
        self.received.ports.append(int(context.peer().rsplit(":", 1)[1]))
        refusal = self.received.refusal(request)
        if refusal is not None:
            code = grpc.StatusCode.INVALID_ARGUMENT if refusal == "malformed" else refusal
            context.abort(code, "refused by the test receiver")  # type: ignore[arg-type]
        self.received.calls.append(
            ("/opentelemetry.proto.collector.logs.v1.LogsService/Export", metadata, request)
        )
        self.received.event.set()
        return ExportLogsServiceResponse()


def _grpc_server(credentials: grpc.ServerCredentials | None = None) -> tuple[grpc.Server, int, Received]:
    received = Received()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(_Logs(received), server)
    if credentials is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    return server, port, received


@pytest.fixture
def http_server() -> Iterator[tuple[str, Received]]:
    """A plain HTTP OTLP receiver on loopback."""
    server, received = _http_server()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()


@pytest.fixture
def grpc_server() -> Iterator[tuple[int, Received]]:
    """A plaintext gRPC OTLP receiver on loopback."""
    server, port, received = _grpc_server()
    yield port, received
    server.stop(None)


@dataclass
class Certs:
    """A self-signed certificate for 127.0.0.1 and its key, as files and PEM bytes."""

    cert_file: Path
    key_file: Path
    cert_pem: bytes
    key_pem: bytes


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """Generate a throwaway self-signed server certificate valid for 127.0.0.1."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("certs")
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (directory / "server.crt").write_bytes(cert_pem)
    (directory / "server.key").write_bytes(key_pem)
    return Certs(directory / "server.crt", directory / "server.key", cert_pem, key_pem)


# --------------------------------------------------------------------------- helpers


def _emit_through(exporter: LogRecordExporter, count: int = 3) -> None:
    provider = LoggerProvider(resource=Resource.create({"service.name": "gateway"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = provider.get_logger("otel_audit.test")
    for i in range(count):
        logger.emit(
            body=f"event {i}",
            attributes={
                "user.id": f"u{i}",
                "audit.seq": i,
                "audit.ok": True,
                "ratio": 0.5,
                "tags": ["a", "b"],
            },
            event_name="user.login",
        )
    provider.shutdown()


def _attributes(request: ExportLogsServiceRequest) -> list[dict[str, AnyValue]]:
    return [
        {kv.key: kv.value for kv in record.attributes}
        for rl in request.resource_logs
        for sl in rl.scope_logs
        for record in sl.log_records
    ]


def _assert_records_intact(received: Received, count: int = 3) -> None:
    records = [attrs for _, _, request in received.calls for attrs in _attributes(request)]
    assert len(records) == count
    for i, attrs in enumerate(sorted(records, key=lambda a: a["audit.seq"].int_value)):
        assert attrs["user.id"].string_value == f"u{i}"
        assert attrs["audit.seq"].int_value == i
        assert attrs["audit.ok"].bool_value is True
        assert attrs["ratio"].double_value == 0.5
        assert [v.string_value for v in attrs["tags"].array_value.values] == ["a", "b"]
    request = received.calls[0][2]
    resource = {kv.key: kv.value.string_value for kv in request.resource_logs[0].resource.attributes}
    assert resource["service.name"] == "gateway"
    assert request.resource_logs[0].scope_logs[0].log_records[0].event_name == "user.login"


# --------------------------------------------------------------------------- HTTP


def test_http_appends_v1_logs_to_endpoint(http_server: tuple[str, Received]) -> None:
    """otlphttp posts to <endpoint>/v1/logs with the headers, gzip body and attributes intact."""
    url, received = http_server
    exporter = create_otlp_exporter(
        {"endpoint": url + "/", "headers": {"Authorization": SECRET}, "compression": "gzip", "timeout": "5s"},
        where="exporters.otlphttp",
        protocol="http",
    )
    _emit_through(exporter)
    assert {path for path, _, _ in received.calls} == {"/v1/logs"}
    headers = received.calls[0][1]
    assert headers["authorization"] == SECRET
    assert headers["content-encoding"] == "gzip"
    _assert_records_intact(received)


def test_http_logs_endpoint_is_used_as_is(http_server: tuple[str, Received]) -> None:
    """logs_endpoint is the full URL: nothing is appended to it, and it wins over endpoint."""
    url, received = http_server
    exporter = create_otlp_exporter(
        {"endpoint": "http://127.0.0.1:9", "logs_endpoint": url + "/ingest/audit", "compression": "none"},
        where="exporters.otlphttp",
        protocol="http",
    )
    _emit_through(exporter, count=1)
    assert [path for path, _, _ in received.calls] == ["/ingest/audit"]
    assert "content-encoding" not in received.calls[0][1]


def test_http_tls_with_ca_file(certs: Certs, monkeypatch: pytest.MonkeyPatch) -> None:
    """An https endpoint is verified against tls.ca_file, even when REQUESTS_CA_BUNDLE names another."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs.cert_file, certs.key_file)
    server, received = _http_server(context)
    try:
        exporter = create_otlp_exporter(
            {
                "endpoint": f"https://127.0.0.1:{server.server_address[1]}",
                "tls": {"ca_file": str(certs.cert_file)},
            },
            where="exporters.otlphttp",
            protocol="http",
        )
        _emit_through(exporter)
        _assert_records_intact(received)
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_http_tls_insecure_skip_verify(certs: Certs) -> None:
    """tls.insecure_skip_verify reaches a server whose certificate the client cannot verify."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs.cert_file, certs.key_file)
    server, received = _http_server(context)
    try:
        exporter = create_otlp_exporter(
            {
                "endpoint": f"https://127.0.0.1:{server.server_address[1]}",
                "tls": {"insecure_skip_verify": True},
            },
            where="exporters.otlphttp",
            protocol="http",
        )
        _emit_through(exporter, count=1)
        assert len(received.calls) == 1
    finally:
        server.shutdown()
        server.server_close()


def test_http_failure_never_logs_header_values(caplog: pytest.LogCaptureFixture) -> None:
    """When the receiver is down the export fails, and no log line carries a header value."""
    exporter = create_otlp_exporter(
        {"endpoint": "http://127.0.0.1:9", "headers": {"authorization": SECRET}, "timeout": "200ms"},
        where="exporters.otlphttp",
        protocol="http",
    )
    with caplog.at_level(logging.DEBUG):
        _emit_through(exporter, count=1)
    assert caplog.records  # the failure was reported
    assert all(SECRET not in record.getMessage() for record in caplog.records)


# --------------------------------------------------------------------------- gRPC


def test_grpc_insecure_delivers_records_and_headers(grpc_server: tuple[int, Received]) -> None:
    """otlp over plaintext gRPC delivers the records with attributes and the headers as metadata."""
    port, received = grpc_server
    exporter = create_otlp_exporter(
        {
            "endpoint": f"127.0.0.1:{port}",
            "tls": {"insecure": True},
            "headers": {"X-Tenant": "acme", "authorization": SECRET},
            "compression": "gzip",
            "timeout": 5,
        },
        where="exporters.otlp",
        protocol="grpc",
    )
    _emit_through(exporter)
    metadata = received.calls[0][1]
    assert metadata["x-tenant"] == "acme"
    assert metadata["authorization"] == SECRET
    _assert_records_intact(received)


def test_grpc_http_scheme_means_plaintext(grpc_server: tuple[int, Received]) -> None:
    """An http:// gRPC endpoint without tls settings connects in plaintext, as the Python SDK does."""
    port, received = grpc_server
    exporter = create_otlp_exporter(
        {"endpoint": f"http://127.0.0.1:{port}"}, where="exporters.otlp", protocol="grpc"
    )
    _emit_through(exporter, count=2)
    _assert_records_intact(received, count=2)


def test_grpc_tls_with_ca_file(certs: Certs) -> None:
    """A TLS gRPC receiver is verified against tls.ca_file and the records arrive."""
    credentials = grpc.ssl_server_credentials([(certs.key_pem, certs.cert_pem)])
    server, port, received = _grpc_server(credentials)
    try:
        exporter = create_otlp_exporter(
            {"endpoint": f"127.0.0.1:{port}", "tls": {"ca_file": str(certs.cert_file)}, "timeout": "5s"},
            where="exporters.otlp",
            protocol="grpc",
        )
        _emit_through(exporter)
        _assert_records_intact(received)
    finally:
        server.stop(None)


# --------------------------------------------------------------------------- config errors


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_unknown_key_lists_valid_ones(protocol: str) -> None:
    """An unknown key raises ConfigError naming it and listing the valid keys."""
    with pytest.raises(ConfigError) as info:
        create_otlp_exporter(
            {"endpoint": "http://x:1", "retry": {}}, where="cfg.yaml: exporters.o", protocol=protocol
        )  # type: ignore[arg-type]
    message = str(info.value)
    assert message.startswith("cfg.yaml: exporters.o.retry: unknown key; valid keys are endpoint")
    assert ("logs_endpoint" in message) is (protocol == "http")


@pytest.mark.parametrize(
    ("protocol", "cfg", "key", "hint"),
    [
        ("grpc", {"tls": {"insecure_skip_verify": True}}, "tls.insecure_skip_verify", "tls.ca_file"),
        ("grpc", {"tls": {"verify": True}}, "tls.verify", "valid keys are insecure"),
        ("grpc", {"tls": {"insecure": "sometimes"}}, "tls.insecure", "true or false"),
        ("grpc", {"tls": {"ca_file": "/nonexistent/ca.pem"}}, "tls.ca_file", "not a readable file"),
        ("grpc", {"compression": "zstd"}, "compression", "gzip or none"),
        ("grpc", {"timeout": "soon"}, "timeout", '"500ms"'),
        ("grpc", {"timeout": 0}, "timeout", "above zero"),
        ("grpc", {"headers": ["a"]}, "headers", "mapping"),
        ("grpc", {"endpoint": 4317}, "endpoint", "host:port"),
        ("http", {"endpoint": "collector:4318"}, "endpoint", "http://host:4318"),
        ("http", {"logs_endpoint": "ftp://x/v1/logs"}, "logs_endpoint", "http(s) URL"),
        ("http", {"tls": []}, "tls", "mapping"),
    ],
)
def test_bad_values_name_the_key(protocol: str, cfg: dict, key: str, hint: str) -> None:
    """A bad value raises ConfigError starting with where.key and saying what to do."""
    with pytest.raises(ConfigError) as info:
        create_otlp_exporter(cfg, where="exporters.x", protocol=protocol)  # type: ignore[arg-type]
    assert str(info.value).startswith(f"exporters.x.{key}:"), str(info.value)
    assert hint in str(info.value)


def test_client_certificate_needs_both_files(certs: Certs) -> None:
    """cert_file without key_file raises ConfigError naming the missing key."""
    with pytest.raises(ConfigError, match=r"^exporters\.x\.tls\.key_file: missing"):
        create_otlp_exporter(
            {"tls": {"cert_file": str(certs.cert_file)}}, where="exporters.x", protocol="http"
        )


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_header_values_never_appear_in_errors(protocol: str) -> None:
    """A header value of the wrong type is reported by name and type only, never by value."""
    with pytest.raises(ConfigError) as info:
        create_otlp_exporter(
            {"headers": {"authorization": [SECRET]}},
            where="exporters.x",
            protocol=protocol,  # type: ignore[arg-type]
        )
    assert str(info.value).startswith("exporters.x.headers.authorization: must be a string")
    assert "s3cr3t" not in str(info.value)


@pytest.mark.parametrize(("low", "high", "delivered"),
                         [("1.3", None, False), (None, "1.2", True), ("1.2", "1.2", True)])
def test_http_tls_versions_are_applied(certs: Certs, low: str | None, high: str | None, delivered: bool) -> None:
    """tls.min_version / max_version bound the TLS version the otlphttp exporter offers: against a server
    that speaks TLS 1.2 at most, min_version 1.3 cannot connect, max_version 1.2 delivers."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certs.cert_file, certs.key_file)
    server, received = _http_server(context)
    tls: dict[str, object] = {"ca_file": str(certs.cert_file)}
    tls.update({k: v for k, v in (("min_version", low), ("max_version", high)) if v})
    try:
        exporter = create_otlp_exporter(
            {"endpoint": f"https://127.0.0.1:{server.server_address[1]}", "tls": tls, "timeout": "2s"},
            where="exporters.otlphttp",
            protocol="http",
        )
        _emit_through(exporter, count=1)
        assert bool(received.calls) is delivered
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("tls", "needle"), [
    ({"min_version": "1.3"}, "cannot narrow"),
    ({"max_version": "1.2"}, "cannot narrow"),
    ({"min_version": "1.4"}, "is not a TLS version"),
    ({"ca_pem": "-----BEGIN"}, "cannot honour; put the PEM text in a file"),
])
def test_grpc_tls_keys_it_cannot_keep_are_refused(tls: dict[str, str], needle: str) -> None:
    """gRPC always offers TLS 1.2 and 1.3: a version range it cannot keep, or a collector-only key, is a
    ConfigError naming exporters.otlp.tls."""
    with pytest.raises(ConfigError, match=r"^exporters\.otlp\.tls") as info:
        create_otlp_exporter({"endpoint": "127.0.0.1:4317", "tls": tls}, where="exporters.otlp", protocol="grpc")
    assert needle in str(info.value)


def test_grpc_tls_min_version_it_keeps_is_accepted() -> None:
    """min_version 1.2 (the collector's default, and what gRPC does anyway) is accepted."""
    exporter = create_otlp_exporter({"endpoint": "127.0.0.1:4317", "tls": {"min_version": "1.2", "insecure": True}},
                                    where="exporters.otlp", protocol="grpc")
    exporter.shutdown()


@pytest.mark.parametrize(("protocol", "endpoint"), [
    ("grpc", "http://u:s3cr3t-pw@127.0.0.1:4317"),
    ("grpc", "u:s3cr3t-pw@127.0.0.1:4317"),
    ("grpc", "ex ample.com:4317"),
    ("grpc", "127.0.0.1:65536"),
    ("grpc", "http://[::1"),
    ("http", "http://ex ample.com:4318"),
    ("http", "http://127.0.0.1:4318/\0"),
    ("http", "http://[::1"),
])
def test_endpoint_no_connection_can_use_is_refused(protocol: str, endpoint: str) -> None:
    """An endpoint with credentials gRPC cannot use, a host with a space, a bad port, a NUL or a broken IPv6
    literal is a ConfigError naming the endpoint key, and never shows a password."""
    with pytest.raises(ConfigError, match=r"^exporters\.x\.endpoint: ") as info:
        create_otlp_exporter({"endpoint": endpoint}, where="exporters.x", protocol=protocol)  # type: ignore[arg-type]
    assert "s3cr3t" not in str(info.value)


@pytest.mark.parametrize(("protocol", "headers", "needle"), [
    ("http", {"X Team": SECRET}, "not an HTTP header name"),
    ("http", {"X-Team": SECRET + "\nX-Injected: 1"}, "line break"),
    ("http", {"X-Team": " " + SECRET}, "starts with whitespace"),
    ("grpc", {"X Team": SECRET}, "not a gRPC metadata key"),
    ("grpc", {"x-team": SECRET + "\u00e9"}, "printable ASCII"),
    ("grpc", {"grpc-timeout": SECRET}, "reserved"),
    ("grpc", {"token-bin": SECRET}, "binary"),
])
def test_headers_that_cannot_be_sent_are_refused_without_their_value(protocol: str, headers: dict[str, str],
                                                                      needle: str) -> None:
    """A header name that is no RFC 9110 token (gRPC: no metadata key) or a value HTTP / gRPC cannot carry
    is a ConfigError naming exporters.x.headers, and the value is never in it."""
    with pytest.raises(ConfigError, match=r"^exporters\.x\.headers: ") as info:
        create_otlp_exporter({"headers": headers}, where="exporters.x", protocol=protocol)  # type: ignore[arg-type]
    assert needle in str(info.value)
    assert "s3cr3t" not in str(info.value)


# --------------------------------------------------------------------------- refusal policy


def _records(count: int) -> list:
    """count SDK records as a processor hands them to an exporter, attribute audit.seq = 0..count-1."""
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter

    memory = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=Resource.create({"service.name": "gateway"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    logger = provider.get_logger("otel_audit.test")
    for i in range(count):
        logger.emit(body=f"event {i}", attributes={"audit.seq": i}, event_name="user.login")
    provider.shutdown()
    return list(memory.get_finished_logs())


def _seqs(received: Received) -> list[int]:
    return sorted(a["audit.seq"].int_value for _, _, request in received.calls for a in _attributes(request))


def _exporter(protocol: str, http_server: tuple[str, Received], grpc_server: tuple[int, Received]) -> tuple:
    if protocol == "http":
        url, received = http_server
        cfg: dict = {"endpoint": url, "timeout": "5s"}
    else:
        port, received = grpc_server
        cfg = {"endpoint": f"127.0.0.1:{port}", "tls": {"insecure": True}, "timeout": "5s"}
    return create_otlp_exporter(cfg, where=f"exporters.{protocol}", protocol=protocol), received


CREDENTIAL_REFUSALS = [("http", 401), ("http", 403), ("grpc", grpc.StatusCode.UNAUTHENTICATED),
                       ("grpc", grpc.StatusCode.PERMISSION_DENIED)]


@pytest.mark.parametrize("protocol, refusal", CREDENTIAL_REFUSALS)
def test_credential_refusals_are_failure_never_rejection(protocol: str, refusal: object,
                                                         http_server: tuple[str, Received],
                                                         grpc_server: tuple[int, Received]) -> None:
    """401 / 403 / UNAUTHENTICATED / PERMISSION_DENIED is FAILURE with last_rejected empty and nothing counted
    delivered; once the receiver accepts again the same records are delivered."""
    exporter, received = _exporter(protocol, http_server, grpc_server)
    records = _records(4)
    received.faults.extend([refusal] * 10)
    assert exporter.export(records) is LogRecordExportResult.FAILURE
    assert exporter.last_rejected == () and exporter.counters.rejected == 0 and exporter.counters.delivered == 0
    assert received.calls == []
    received.faults.clear()
    assert exporter.export(records) is LogRecordExportResult.SUCCESS and exporter.last_rejected == ()
    assert exporter.counters.delivered == 4 and _seqs(received) == [0, 1, 2, 3]
    exporter.shutdown()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_malformed_record_is_rejected_alone_and_the_rest_delivered(protocol: str,
                                                                     http_server: tuple[str, Received],
                                                                     grpc_server: tuple[int, Received]) -> None:
    """A batch refused as invalid (HTTP 400, INVALID_ARGUMENT) is split until the refusal lands on the malformed
    record: its index is in last_rejected, the others are delivered, and the export is SUCCESS."""
    exporter, received = _exporter(protocol, http_server, grpc_server)
    received.malformed = lambda record: any(kv.key == "audit.seq" and kv.value.int_value == 2
                                            for kv in record.attributes)
    assert exporter.export(_records(5)) is LogRecordExportResult.SUCCESS
    assert exporter.last_rejected == (2,) and exporter.counters.rejected == 1
    assert _seqs(received) == [0, 1, 3, 4]
    exporter.shutdown()


def test_a_single_record_refused_as_invalid_is_rejected(http_server: tuple[str, Received],
                                                        grpc_server: tuple[int, Received]) -> None:
    """A 400 for a batch of one record puts index 0 in last_rejected and the export is SUCCESS."""
    exporter, received = _exporter("http", http_server, grpc_server)
    received.faults.append(400)
    assert exporter.export(_records(1)) is LogRecordExportResult.SUCCESS and exporter.last_rejected == (0,)
    assert exporter.export(_records(1)) is LogRecordExportResult.SUCCESS and exporter.last_rejected == ()
    exporter.shutdown()


def test_an_unreachable_receiver_is_failure(http_server: tuple[str, Received]) -> None:
    """A receiver that answers 404 (a wrong path) is FAILURE with last_rejected empty: the records are kept."""
    url, received = http_server
    exporter = create_otlp_exporter({"endpoint": url, "timeout": "2s"}, where="exporters.otlphttp", protocol="http")
    received.faults.append(404)
    assert exporter.export(_records(2)) is LogRecordExportResult.FAILURE and exporter.last_rejected == ()
    exporter.shutdown()


# --------------------------------------------------------------------------- fork safety


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_forked_child_exports_on_a_connection_of_its_own(protocol: str, http_server: tuple[str, Received],
                                                           grpc_server: tuple[int, Received]) -> None:
    """After os.fork() the child exports through its own connection (not the parent's pooled one), the parent
    keeps its own, and the records of both arrive."""

    exporter, received = _exporter(protocol, http_server, grpc_server)
    records = _records(5)
    assert exporter.export(records[:2]) is LogRecordExportResult.SUCCESS
    child = in_forked_child(lambda: {"result": exporter.export(records[2:4]).name})
    assert child["exit_code"] == 0 and child["result"] == "SUCCESS", child
    assert exporter.export(records[4:]) is LogRecordExportResult.SUCCESS
    parent_port, child_port, parent_again = received.ports
    assert child_port != parent_port and parent_again == parent_port
    assert _seqs(received) == [0, 1, 2, 3, 4]
    exporter.shutdown()


# --------------------------------------------------------------------------- proxies

_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "grpc_proxy", "no_grpc_proxy")
#: a collector name only the proxy can reach: the client never resolves it when it goes through the proxy
_FAR = "collector.proxy-test.invalid"


@pytest.fixture
def proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No proxy variable of the machine (either case) reaches the test; it sets its own."""
    import os

    for name in list(os.environ):
        if name.lower() in _PROXY_VARS:
            monkeypatch.delenv(name)
    return monkeypatch


class TunnelProxy:
    """A loopback HTTP CONNECT proxy: records each request line, tunnels CONNECT <_FAR>:<port> to
    127.0.0.1:<port> (where the test's receiver listens), and answers anything else 502."""

    def __init__(self) -> None:
        import socket
        import socketserver

        self.seen: list[str] = []
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                line = self.rfile.readline(65536).decode("latin-1").strip()
                outer.seen.append(line)
                while self.rfile.readline(65536) not in (b"\r\n", b"\n", b""):
                    pass  # the request's headers
                method, _, target = line.partition(" ")
                host, _, port = target.split(" ", 1)[0].rpartition(":")
                if method != "CONNECT" or host != _FAR:
                    self.wfile.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                    return
                upstream = socket.create_connection(("127.0.0.1", int(port)), timeout=10)
                self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                self.wfile.flush()
                pump = threading.Thread(target=_pump, args=(upstream, self.connection), daemon=True)
                pump.start()
                _pump(self.connection, upstream)
                pump.join(5)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _pump(src: object, dst: object) -> None:
    """Copy bytes from one socket to the other until either side closes."""
    import socket

    assert isinstance(src, socket.socket) and isinstance(dst, socket.socket)
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def tunnel() -> Iterator[TunnelProxy]:
    p = TunnelProxy()
    yield p
    p.close()


@pytest.mark.parametrize("var", ["HTTPS_PROXY", "ALL_PROXY", "https_proxy", "grpc_proxy"])
def test_grpc_goes_through_the_proxy_the_environment_names(var: str, proxy_env: pytest.MonkeyPatch,
                                                           tunnel: TunnelProxy,
                                                           grpc_server: tuple[int, Received]) -> None:
    """HTTPS_PROXY / ALL_PROXY in upper case (which gRPC core ignores) carry the otlp gRPC export through
    the proxy (a CONNECT tunnel), and the records arrive intact."""
    port, received = grpc_server
    proxy_env.setenv(var, tunnel.url)
    exporter = create_otlp_exporter({"endpoint": f"{_FAR}:{port}", "tls": {"insecure": True}, "timeout": 5},
                                    where="exporters.otlp", protocol="grpc")
    _emit_through(exporter)
    assert tunnel.seen and tunnel.seen[0].startswith(f"CONNECT {_FAR}:{port} ")
    _assert_records_intact(received)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_loopback_collector_is_never_reached_through_the_proxy(
        protocol: str, proxy_env: pytest.MonkeyPatch, tunnel: TunnelProxy,
        grpc_server: tuple[int, Received], http_server: tuple[str, Received]) -> None:
    """With HTTPS_PROXY, HTTP_PROXY and ALL_PROXY (both cases) set, a collector on 127.0.0.1 or localhost (a sidecar)
    gets the records directly, as the collector's own clients (Go) do; the proxy sees nothing."""
    for var in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy"):  # gRPC core reads lower case
        proxy_env.setenv(var, tunnel.url)
    port, grpc_received = grpc_server
    url, http_received = http_server
    for host in ("127.0.0.1", "localhost"):
        if protocol == "grpc":
            cfg: dict[str, object] = {"endpoint": f"{host}:{port}", "tls": {"insecure": True}, "timeout": 5}
        else:
            cfg = {"endpoint": url.replace("127.0.0.1", host), "timeout": 5}
        _emit_through(create_otlp_exporter(cfg, where=f"exporters.{protocol}", protocol=protocol))  # type: ignore[arg-type]
    assert tunnel.seen == []
    received = grpc_received if protocol == "grpc" else http_received
    assert sum(len(_attributes(request)) for _, _, request in received.calls) == 6


@pytest.mark.parametrize(("env", "endpoint", "expected"), [
    ({"HTTPS_PROXY": "http://p:3128"}, "collector:4317", (("grpc.http_proxy", "http://p:3128"),)),
    ({"ALL_PROXY": "p:3128"}, "https://collector:4317", (("grpc.http_proxy", "http://p:3128"),)),
    ({"HTTP_PROXY": "http://p:3128"}, "collector:4317", (("grpc.http_proxy", "http://p:3128"),)),  # as gRPC core
    ({"HTTP_PROXY": "http://q:1", "HTTPS_PROXY": "http://p:3128"}, "collector:4317",
     (("grpc.http_proxy", "http://p:3128"),)),
    ({"HTTPS_PROXY": "http://p:3128", "NO_PROXY": "collector"}, "collector:4317", (("grpc.enable_http_proxy", 0),)),
    ({"HTTPS_PROXY": "http://p:3128", "NO_PROXY": ".example.com"}, "c.example.com:4317",
     (("grpc.enable_http_proxy", 0),)),
    ({"https_proxy": "http://p:3128", "no_grpc_proxy": "collector"}, "collector:4317",
     (("grpc.enable_http_proxy", 0),)),
    ({"HTTPS_PROXY": "http://p:3128"}, "[::1]:4317", (("grpc.enable_http_proxy", 0),)),
    ({"HTTPS_PROXY": "http://p:3128"}, "127.0.0.2:4317", (("grpc.enable_http_proxy", 0),)),
    ({"HTTPS_PROXY": "socks5://p:1080"}, "collector:4317", (("grpc.enable_http_proxy", 0),)),  # warned
    ({}, "collector:4317", (("grpc.enable_http_proxy", 0),)),
    ({"HTTPS_PROXY": "http://p:3128"}, "unix:///run/otel.sock", ()),
], ids=["https", "all-no-scheme", "http-only", "https-wins", "no_proxy", "no_proxy-domain", "no_grpc_proxy",
        "ipv6-loopback", "127/8", "socks", "none", "unix"])
def test_grpc_proxy_decision(env: dict[str, str], endpoint: str, expected: tuple[tuple[str, object], ...],
                             proxy_env: pytest.MonkeyPatch) -> None:
    """The gRPC channel options carry requests' choice for https://<endpoint> (NO_PROXY in either case,
    no_grpc_proxy), and a loopback or proxy-less endpoint is direct (grpc.enable_http_proxy=0)."""
    from otel_audit.exporters.otlp import grpc_proxy_options

    for k, v in env.items():
        proxy_env.setenv(k, v)
    assert grpc_proxy_options(endpoint) == expected


def test_env_only_otlp_exporters_get_the_proxy_decision(proxy_env: pytest.MonkeyPatch) -> None:
    """The SDK's own OTLP exporters (the env-only mode's) get the same decision: channel options for gRPC,
    a session that keeps loopback off the proxy for HTTP."""
    from otel_audit.exporters._http import EnvironmentSession
    from otel_audit.exporters.otlp import proxy_arguments

    proxy_env.setenv("HTTPS_PROXY", "http://p:3128")
    proxy_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")
    assert proxy_arguments("grpc") == {"channel_options": (("grpc.http_proxy", "http://p:3128"),)}
    assert isinstance(proxy_arguments("http")["session"], EnvironmentSession)
    proxy_env.setenv("OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER", "someone's")
    assert proxy_arguments("http") == {}
