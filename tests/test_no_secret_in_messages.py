"""No credential written into an endpoint ever shows in a message: check-config errors and
warnings (the real CLI in a child process) and the exporters' runtime logs (the real pipeline
pointed at a closed port, or at a stand-in answering 500)."""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path

import pytest
from test_cli import run

import otel_audit
from otel_audit.safe import RedactingFilter, redact_text, redact_url
from tests.standins.webhook import WebhookReceiver

SPLUNK_TOKEN = "9f8e7d6c-5b4a-4321-8fed-cba987654321"
DD_KEY = "0123456789abcdef0123456789abcdef"
ES_KEY = "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw=="
HOOK_SECRET_PATH = "aB3dE5fG7hJ9kL1mN3pQ5rS7"
OTLP_PASSWORD = "hunter2-Sup3rS3cret"
WHSEC = "whsec_" + "YWxwaGEtYWxwaGEtYWxwaGEtYWxwaGEtYWxwaGEt"
FAST_RETRY = "retry_on_failure: {initial_interval: 50ms, max_interval: 100ms, max_elapsed_time: 300ms}"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(keys: Path, state: Path, eid: str, block: str) -> str:
    return f"""\
processors:
  signing: {{keys_dir: {json.dumps(str(keys))}, state_dir: {json.dumps(str(state))}}}
exporters:
  {eid}:
{block}
service:
  pipelines:
    logs: {{processors: [signing], exporters: [{eid}]}}
"""


# -- the helper ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "secret", "kept"), [
    (f"https://splunk:8088/services/collector?token={SPLUNK_TOKEN}&channel=c1", SPLUNK_TOKEN, "channel=c1"),
    (f"https://http-intake.logs.datadoghq.eu/api/v2/logs?dd-api-key={DD_KEY}", DD_KEY, "dd-api-key=***"),
    (f"https://es:9200?api_key={ES_KEY}", ES_KEY, "es:9200"),
    (f"https://hooks.slack.com/services/T0AAAAAAA/B0BBBBBBB/{HOOK_SECRET_PATH}", HOOK_SECRET_PATH, "/services/"),
    (f"http://alice:{OTLP_PASSWORD}@collector:4318/v1/logs", OTLP_PASSWORD, "alice:***@collector:4318/v1/logs"),
    (f"alice:{OTLP_PASSWORD}@collector:4317", OTLP_PASSWORD, "collector:4317"),
])
def test_redact_url_masks_each_placement(url: str, secret: str, kept: str) -> None:
    safe = redact_url(url)
    assert secret not in safe and kept in safe
    path = "/" + url.split("://", 1)[-1].partition("/")[2]  # as urllib3 writes it: "with url: /path?query"
    text = redact_text(f"ConnectionError: Max retries exceeded with url: {path} (Caused by ...) and {url}")
    assert secret not in text


def test_redact_url_keeps_plain_urls() -> None:
    for url in ("https://splunk.example.com:8088/services/collector/event", "http://127.0.0.1:4318/v1/logs",
                "https://hooks.example.com/audit/receiver-endpoint", "localhost:4317"):
        assert redact_url(url) == url


# -- check-config --------------------------------------------------------------------------------


# (exporter, block with the credential in the endpoint, a bad value elsewhere, the credential, keys named)
CASES = {
    "splunk_query_token": ("splunk_hec", f"""\
    endpoint: "https://splunk.example.com:8088/services/collector?token={SPLUNK_TOKEN}"
    token: "{SPLUNK_TOKEN}\"""", "    timeout: -5s", SPLUNK_TOKEN, ("endpoint", "timeout")),
    "datadog_query_key": ("datadog", f"""\
    api: {{key: "{DD_KEY}"}}
    logs: {{endpoint: "https://http-intake.logs.datadoghq.eu/api/v2/logs?dd-api-key={DD_KEY}"}}""",
                          '    hostname: "bad host name"', DD_KEY, ("logs.endpoint", "hostname")),
    "elastic_query_api_key": ("elasticsearch", f"""\
    endpoint: "https://es.example.com:9200/?api_key={ES_KEY}\"""", '    logs_index: "BAD INDEX"', ES_KEY,
                              ("endpoint", "logs_index")),
    "webhook_secret_path": ("webhook", f"""\
    endpoint: "ftp://hooks.slack.com/services/T0AAAAAAA/B0BBBBBBB/{HOOK_SECRET_PATH}"
    secrets: ["{WHSEC}"]""", "    max_batch_size: 0", HOOK_SECRET_PATH, ("endpoint", "max_batch_size")),
    "otlphttp_userinfo": ("otlphttp", f"""\
    endpoint: "ftp://alice:{OTLP_PASSWORD}@collector.example.com:4318\"""", "    compression: zstd-bogus",
                          OTLP_PASSWORD, ("endpoint", "compression")),
    "elastic_userinfo_bad_scheme": ("elasticsearch", f"""\
    endpoint: "ftp://elastic:{OTLP_PASSWORD}@es.example.com:9200\"""", '    logs_index: "BAD INDEX"',
                                    OTLP_PASSWORD, ("endpoint", "logs_index")),
}


@pytest.mark.parametrize("with_bad_value", [False, True], ids=["endpoint_only", "plus_bad_value"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_check_config_error_names_the_key_and_hides_the_credential(tmp_path: Path, shared_keys: Path,
                                                                   case: str, with_bad_value: bool) -> None:
    """The endpoint alone is the problem (its own error must not echo the credential), or a bad value
    sits next to it in the same block: exit 2, one line naming file, exporter and key, no credential."""
    eid, block, bad, secret, keys = CASES[case]
    cfg = tmp_path / "audit.yaml"
    cfg.write_text(_config(shared_keys, tmp_path / "state", eid, block + ("\n" + bad if with_bad_value else "")))
    proc = run("check-config", str(cfg))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert secret not in out, out
    assert str(cfg) in proc.stderr and f"exporters.{eid}." in proc.stderr, out
    named = keys if with_bad_value else keys[:1]
    assert any(f"exporters.{eid}.{k}:" in proc.stderr for k in named), out


def test_check_config_warning_hides_the_credential(tmp_path: Path, shared_keys: Path) -> None:
    """A usable config with a credential in a plain-http webhook path: OK, and no secret in the output."""
    cfg = tmp_path / "audit.yaml"
    block = f"""\
    endpoint: "http://hooks.example.net/services/T0AAAAAAA/B0BBBBBBB/{HOOK_SECRET_PATH}"
    secrets: ["{WHSEC}"]"""
    cfg.write_text(_config(shared_keys, tmp_path / "state", "webhook", block))
    proc = run("check-config", str(cfg))
    assert proc.returncode == 0, proc.stderr
    assert HOOK_SECRET_PATH not in proc.stdout + proc.stderr
    assert WHSEC not in proc.stdout + proc.stderr


# -- runtime -------------------------------------------------------------------------------------


def _runtime_blocks(port: int) -> dict[str, tuple[str, str, tuple[str, ...]]]:
    return {
        "splunk_hec": ("splunk_hec", f"""\
    endpoint: "http://127.0.0.1:{port}/services/collector"
    token: "{SPLUNK_TOKEN}"
    health_check_enabled: true
    {FAST_RETRY}""", (SPLUNK_TOKEN,)),
        "datadog": ("datadog", f"""\
    api: {{key: "{DD_KEY}", fail_on_invalid_key: false}}
    logs: {{endpoint: "http://127.0.0.1:{port}"}}
    metrics: {{endpoint: "http://127.0.0.1:{port}"}}
    {FAST_RETRY}""", (DD_KEY,)),
        "elasticsearch_userinfo": ("elasticsearch", f"""\
    endpoint: "http://elastic:{OTLP_PASSWORD}@127.0.0.1:{port}"
    {FAST_RETRY}""", (OTLP_PASSWORD,)),
        "elasticsearch_api_key": ("elasticsearch", f"""\
    endpoint: "http://127.0.0.1:{port}"
    api_key: "{ES_KEY}"
    {FAST_RETRY}""", (ES_KEY,)),
        "webhook_secret_path": ("webhook", f"""\
    endpoint: "http://127.0.0.1:{port}/services/T0AAAAAAA/B0BBBBBBB/{HOOK_SECRET_PATH}?sig={DD_KEY}"
    secrets: ["{WHSEC}"]
    {FAST_RETRY}""", (HOOK_SECRET_PATH, DD_KEY, WHSEC)),
        "otlphttp_userinfo": ("otlphttp", f"""\
    endpoint: "http://alice:{OTLP_PASSWORD}@127.0.0.1:{port}"
    timeout: 1s""", (OTLP_PASSWORD,)),
    }


def _emit_and_stop(cfg: Path) -> None:
    audit = otel_audit.configure(cfg)
    try:
        audit.logger.login_succeeded("alice")
        audit.force_flush()
    finally:
        audit.shutdown()


@pytest.mark.parametrize("case", sorted(_runtime_blocks(1)))
def test_runtime_logs_against_a_closed_port_hide_the_credential(tmp_path: Path, shared_keys: Path, case: str,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    eid, block, secrets = _runtime_blocks(_closed_port())[case]
    cfg = tmp_path / "audit.yaml"
    cfg.write_text(_config(shared_keys, tmp_path / "state", eid, block))
    with caplog.at_level(logging.DEBUG):
        _emit_and_stop(cfg)
    text = caplog.text + "\n".join(repr(r.args) for r in caplog.records)
    assert "127.0.0.1" in text or "Connection" in text or "export" in text.lower(), text  # it did fail and say so
    for secret in secrets:
        assert secret not in text, (secret, text)


def test_runtime_webhook_answering_500_hides_the_secret_path(tmp_path: Path, shared_keys: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    with WebhookReceiver(secrets=[WHSEC], path=f"/services/T0AAAAAAA/B0BBBBBBB/{HOOK_SECRET_PATH}") as rx:
        rx.fail_requests(500, times=100)
        block = f"""\
    endpoint: "{rx.url}"
    secrets: ["{WHSEC}"]
    {FAST_RETRY}"""
        cfg = tmp_path / "audit.yaml"
        cfg.write_text(_config(shared_keys, tmp_path / "state", "webhook", block))
        with caplog.at_level(logging.DEBUG):
            _emit_and_stop(cfg)
    text = caplog.text
    assert "HTTP 500" in text, text
    assert HOOK_SECRET_PATH not in text and WHSEC not in text, text


def test_redacting_filter_masks_a_log_call_that_forgot_to() -> None:
    """The CLI's log handlers carry RedactingFilter: a URL with a credential is masked in the line."""
    import io

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    log = logging.getLogger("otel_audit.tests.redacting")
    log.addHandler(handler)
    try:
        log.warning("sent to %s", f"https://h/services/collector?token={SPLUNK_TOKEN}")
    finally:
        log.removeHandler(handler)
    assert "sent to https://h/services/collector?token=***" in stream.getvalue()
    assert SPLUNK_TOKEN not in stream.getvalue()


# -- the OpenTelemetry SDK's own lines about a malformed OTEL_* variable ------------------------------------------

SDK_SECRET = "sk-ant-api03-" + "R" * 93 + "AA"


def test_sdk_lines_about_malformed_env_variables_hide_the_credential(tmp_path: Path, shared_keys: Path) -> None:
    """An env-only configure() in a child process with a credential in a malformed OTEL_EXPORTER_OTLP_HEADERS
    (':' for '='), OTEL_RESOURCE_ATTRIBUTES ('=' percent-encoded) and a boolean variable: the SDK's warnings
    still say what is wrong, name each item by its length only, and the process neither hangs (the SDK logs
    the resource line from a detector thread while it is imported) nor prints the credential."""
    import os
    import subprocess
    import sys

    app = tmp_path / "app.py"
    app.write_text("import otel_audit\na = otel_audit.configure()\na.logger.login_succeeded('alice')\na.shutdown()\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update({
        "OTEL_AUDIT_KEYS_DIR": str(shared_keys), "OTEL_AUDIT_STATE_DIR": str(tmp_path / "state"),
        "OTEL_LOGS_EXPORTER": "otel_audit_file,otlp", "OTEL_AUDIT_FILE_PATH": str(tmp_path / "audit.jsonl"),
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{_closed_port()}",
        "OTEL_EXPORTER_OTLP_HEADERS": f"x-api-key:{SDK_SECRET}",
        "OTEL_RESOURCE_ATTRIBUTES": f"service.version=1,note%3D{SDK_SECRET}",
        "OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED": SDK_SECRET,
    })
    r = subprocess.run([sys.executable, str(app)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "RRRRRRRR" not in r.stderr, [line[:150] for line in r.stderr.splitlines() if "RRRRRRRR" in line]
    shape = f"<an item of {len(SDK_SECRET) + len('x-api-key:')} characters, not shown: it may hold a credential>"
    assert "Header format invalid! Header values in environment variables must be URL encoded" in r.stderr
    assert shape in r.stderr
    assert f"Invalid key value resource attribute pair <an item of {len(SDK_SECRET) + len('note%3D')} " in r.stderr
    assert "Invalid value for OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED: <an item of " in r.stderr


def test_env_echo_filter_rewrites_an_sdk_record_in_process() -> None:
    """EnvEchoFilter on an SDK logger: the quoted env item becomes its length, any other credential is scrubbed."""
    from otel_audit.safe import EnvEchoFilter

    f = EnvEchoFilter()
    rec = logging.makeLogRecord({"name": "opentelemetry.util.re", "levelno": logging.WARNING,
                                 "msg": "Header format invalid! Header values ...: %s", "args": ("k:v-123",)})
    assert f.filter(rec) and rec.getMessage() == (
        "Header format invalid! Header values ...: <an item of 7 characters, not shown: it may hold a credential>")
    leak = f"https://u:{OTLP_PASSWORD}@h/x {SDK_SECRET}"
    other = logging.makeLogRecord({"name": "opentelemetry.sdk._configuration", "levelno": logging.WARNING,
                                   "msg": "exporter %s failed", "args": (leak,)})
    assert f.filter(other)
    assert OTLP_PASSWORD not in other.getMessage() and SDK_SECRET not in other.getMessage()
    assert logging.getLogger("opentelemetry.util.re").filters and any(
        isinstance(x, EnvEchoFilter) for x in logging.getLogger("opentelemetry.sdk.resources").filters)
