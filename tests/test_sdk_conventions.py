"""The SDK's and the collector's conventions, with real transports: OTEL_EXPORTER_OTLP[_LOGS]_PROTOCOL
picks the OTLP exporter in the env-only mode (a real OTLP/HTTP delivery to a loopback receiver that
decodes the protobuf), OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES reach the resource, and
check-config accepts the collector's current exporter names otlp_grpc / otlp_http."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import child_env
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

import otel_audit
from otel_audit import config
from otel_audit.errors import ConfigError
from otel_audit.keys import Keyring
from otel_audit.verify import verify_paths

PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy",
              "no_proxy")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test decides the OTEL_* and proxy environment itself."""
    for name in list(os.environ):
        if name.startswith(("OTEL_", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")) or name in PROXY_VARS:
            monkeypatch.delenv(name, raising=False)


class OtlpHttpReceiver:
    """A loopback OTLP/HTTP logs receiver: POST /v1/logs with a protobuf ExportLogsServiceRequest."""

    def __init__(self) -> None:
        self.requests: list[ExportLogsServiceRequest] = []
        self.content_types: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/logs":
                    self.send_response(404)
                    self.end_headers()
                    return
                req = ExportLogsServiceRequest()
                req.ParseFromString(body)
                outer.requests.append(req)
                outer.content_types.append(self.headers.get("Content-Type", ""))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[OtlpHttpReceiver]:
    r = OtlpHttpReceiver()
    yield r
    r.close()


def env_only(shared_keys: Path, tmp_path: Path, **more: str) -> dict[str, str]:
    return {"OTEL_AUDIT_KEYS_DIR": str(shared_keys), "OTEL_AUDIT_STATE_DIR": str(tmp_path / "state"),
            "OTEL_LOGS_EXPORTER": "otlp", **more}


def exporter_module(built: config.Built) -> str:
    (exp,) = built.exporters.values()
    return type(exp).__module__


def close(built: config.Built) -> None:
    """Shut down a pipeline whose exporter points nowhere: the exporter first, so the seal is not retried."""
    for exp in built.exporters.values():
        exp.shutdown()
    built.provider.shutdown()


# -- OTEL_EXPORTER_OTLP[_LOGS]_PROTOCOL in the env-only mode ------------------------------------------


@pytest.mark.parametrize(
    ("protocols", "transport"),
    [
        ({}, "grpc"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "grpc"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, "http"),
        ({"OTEL_EXPORTER_OTLP_LOGS_PROTOCOL": " http/protobuf "}, "http"),
        # the signal's own variable wins, as in the SDK
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL": "grpc"}, "grpc"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL": "http/protobuf"}, "http"),
    ],
    ids=["default", "grpc", "http", "logs_http", "logs_grpc_wins", "logs_http_wins"],
)
def test_env_only_otlp_follows_the_protocol(tmp_path: Path, shared_keys: Path, protocols: dict[str, str],
                                            transport: str) -> None:
    """OTEL_LOGS_EXPORTER=otlp builds the SDK's gRPC exporter unless the protocol says http/protobuf."""
    built = config.build_from_env(env_only(shared_keys, tmp_path, **protocols))
    try:
        assert list(built.exporters) == ["otlp"]
        assert exporter_module(built).startswith(f"opentelemetry.exporter.otlp.proto.{transport}.")
    finally:
        close(built)


@pytest.mark.parametrize("var", ["OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL"])
@pytest.mark.parametrize("value", ["http/json", "carrier-pigeon"])
def test_env_only_unsupported_protocol_names_the_variable(tmp_path: Path, shared_keys: Path, var: str,
                                                          value: str) -> None:
    """http/json (which the Python exporter cannot send) or a typo is a ConfigError naming the variable."""
    with pytest.raises(ConfigError) as err:
        config.build_from_env(env_only(shared_keys, tmp_path, **{var: value}))
    msg = str(err.value)
    assert msg.startswith(f"{var}={value}: ") and "grpc or http/protobuf" in msg
    assert ("does not support http/json" in msg) == (value == "http/json")
    assert not (tmp_path / "state").exists()


def test_env_only_explicit_exporter_name_wins_over_the_protocol(tmp_path: Path, shared_keys: Path) -> None:
    """otlp_proto_grpc / otlp_proto_http are used as named, as the SDK does (it only warns on a conflict)."""
    for name, transport in (("otlp_proto_grpc", "grpc"), ("otlp_proto_http", "http")):
        built = config.build_from_env(env_only(shared_keys, tmp_path, OTEL_LOGS_EXPORTER=name,
                                               OTEL_EXPORTER_OTLP_PROTOCOL="http/json"))
        try:
            assert exporter_module(built).startswith(f"opentelemetry.exporter.otlp.proto.{transport}.")
        finally:
            close(built)


def test_env_only_http_protobuf_delivers_signed_records_with_the_resource(
    tmp_path: Path, shared_keys: Path, receiver: OtlpHttpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """otlp + http/protobuf sends OTLP/HTTP protobuf to the endpoint: the receiver decodes signed, redacted
    records, and the resource carries OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES."""
    env = env_only(shared_keys, tmp_path,
                   OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
                   OTEL_EXPORTER_OTLP_LOGS_ENDPOINT=f"{receiver.url}/v1/logs",
                   OTEL_SERVICE_NAME="billing-api",
                   OTEL_RESOURCE_ATTRIBUTES="service.name=ignored,deployment.environment=prod%20eu,team=payments")
    for k, v in env.items():  # the SDK's exporter reads its endpoint from the process environment
        monkeypatch.setenv(k, v)
    audit = otel_audit.AuditPipeline(config.build_from_env(env))
    audit.logger.login_succeeded("alice", client_address="203.0.113.7", session_id="s-1")
    audit.logger.emit("data_access.logs.queried", {"audit.actor.id": "admin"}, body="ask alice@example.com")
    audit.shutdown()

    assert receiver.requests and set(receiver.content_types) == {"application/x-protobuf"}
    records, resources = [], []
    for req in receiver.requests:
        for rl in req.resource_logs:
            resources.append({kv.key: kv.value.string_value for kv in rl.resource.attributes})
            for sl in rl.scope_logs:
                records.extend(sl.log_records)
    for res in resources:
        assert res["service.name"] == "billing-api"
        assert res["deployment.environment"] == "prod eu" and res["team"] == "payments"
    names = [r.event_name for r in records]
    assert "authentication.login.succeeded" in names and "data_access.logs.queried" in names
    assert all("alice@example.com" not in r.body.string_value for r in records)
    # what the receiver decoded, written as OTLP JSON lines, verifies: every record left signed
    archive = tmp_path / "received.jsonl"
    lines = [json.dumps(MessageToDict(req, use_integers_for_enums=True)) + "\n" for req in receiver.requests]
    archive.write_text("".join(lines))
    rep = verify_paths([archive], Keyring.load(shared_keys), progress=False)
    assert rep.ok and len(rep.streams) == 1, [s.problems for s in rep.streams] + rep.problems


# -- the collector's current exporter names ------------------------------------------------------------


def check_config(cfg: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in child_env().items() if not k.startswith("OTEL_AUDIT_")}
    return subprocess.run([sys.executable, "-m", "otel_audit.cli", "check-config", str(cfg)], capture_output=True,
                          text=True, timeout=120, env=env, check=False)


@pytest.mark.parametrize(("grpc_name", "http_name"), [("otlp_grpc", "otlp_http"), ("otlp", "otlphttp")])
def test_check_config_accepts_the_collector_otlp_names(tmp_path: Path, shared_keys: Path, grpc_name: str,
                                                      http_name: str) -> None:
    """otlp_grpc / otlp_http (the collector's current names) pass check-config as otlp / otlphttp do."""
    cfg = tmp_path / "audit.yaml"
    cfg.write_text(f"""\
processors:
  signing: {{keys_dir: {json.dumps(str(shared_keys))}}}
exporters:
  {grpc_name}/siem: {{endpoint: "127.0.0.1:4317", tls: {{insecure: true}}}}
  {http_name}/siem: {{endpoint: "http://127.0.0.1:4318"}}
service:
  pipelines:
    logs/audit: {{processors: [signing], exporters: [{grpc_name}/siem, {http_name}/siem]}}
""")
    proc = check_config(cfg)
    assert proc.returncode == 0, proc.stderr
    assert f"{cfg}: OK" in proc.stdout and f"{grpc_name}/siem" in proc.stdout and f"{http_name}/siem" in proc.stdout


def test_collector_otlp_names_build_the_same_exporters(tmp_path: Path, shared_keys: Path) -> None:
    """otlp_grpc builds the gRPC exporter and otlp_http the HTTP one, as otlp / otlphttp do."""
    doc = {"processors": {"signing": {"keys_dir": str(shared_keys)}},
           "exporters": {"otlp_grpc": {"endpoint": "127.0.0.1:4317", "tls": {"insecure": True}},
                         "otlp_http": {"endpoint": "http://127.0.0.1:4318"}},
           "service": {"pipelines": {"logs": {"processors": ["signing"], "exporters": ["otlp_grpc", "otlp_http"]}}}}
    built = config.build(doc, base_dir=tmp_path, dry_run=True)
    mods = {k: [c.__module__ for c in type(v).__mro__] for k, v in built.exporters.items()}
    assert any(m.startswith("opentelemetry.exporter.otlp.proto.grpc.") for m in mods["otlp_grpc"])
    assert any(m.startswith("opentelemetry.exporter.otlp.proto.http.") for m in mods["otlp_http"])


def test_env_only_resource_is_read_from_the_given_mapping(tmp_path: Path, shared_keys: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    """OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES come from the mapping given (not only os.environ);
    OTEL_SERVICE_NAME wins for service.name, a malformed item is skipped with a warning that omits it."""
    built = config.build_from_env(env_only(
        shared_keys, tmp_path, OTEL_LOGS_EXPORTER="otel_audit_file", OTEL_AUDIT_FILE_PATH=str(tmp_path / "a.jsonl"),
        OTEL_SERVICE_NAME="orders", OTEL_RESOURCE_ATTRIBUTES="service.name=x, host.name=h1,hunter2-secret,k=a%2Cb"))
    try:
        attrs = dict(built.provider.resource.attributes)
        assert attrs["service.name"] == "orders" and attrs["host.name"] == "h1" and attrs["k"] == "a,b"
        assert "hunter2-secret" not in caplog.text and "OTEL_RESOURCE_ATTRIBUTES" in caplog.text
    finally:
        built.provider.shutdown()
