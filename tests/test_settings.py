"""The exporters' settings models (otel_audit.exporters._settings): one model per exporter reads the
collector-shaped YAML block, environment variables and keyword arguments alike.

Sending tests start the SIEM stand-ins of tests/standins/ (HTTP servers on loopback) and the real
exporters; nothing of ours is mocked."""

from __future__ import annotations

import importlib.metadata
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, LogRecordExportResult, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from otel_audit.errors import ConfigError
from otel_audit.exporters import _settings
from otel_audit.exporters._http import RetrySettings, TlsSettings
from otel_audit.exporters.datadog import DatadogLogExporter
from otel_audit.exporters.elastic import ElasticLogExporter
from otel_audit.exporters.file import FileLogRecordExporter
from otel_audit.exporters.splunk_hec import SplunkHecLogExporter
from otel_audit.exporters.webhook import WebhookLogExporter
from otel_audit.processors.signing import SigningProcessor
from tests.standins.datadog import DEFAULT_API_KEY as DD_KEY
from tests.standins.datadog import DatadogStandIn
from tests.standins.elastic import DEFAULT_API_KEY as ES_KEY
from tests.standins.elastic import ElasticStandIn
from tests.standins.splunk import DEFAULT_TOKEN, SplunkHecStandIn
from tests.standins.webhook import WebhookReceiver

ROOT = Path(__file__).resolve().parent.parent
RESOURCE = Resource.create({"service.name": "gateway", "host.name": "gw-1"})
WH_SECRET = "whsec_" + "YWxwaGEtYWxwaGEtYWxwaGEtYWxwaGEtYWxwaGEtYWw="
FAST_RETRY = {"enabled": True, "initial_interval": "50ms", "max_interval": "300ms", "max_elapsed_time": "30s",
              "randomization_factor": 0}


@pytest.fixture(autouse=True)
def _no_exporter_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the machine's exporter variables out of every test."""
    for name in list(os.environ):
        if name.startswith(("OTEL_AUDIT_", "SPLUNK_HEC_", "DD_", "ELASTICSEARCH_URL")):
            monkeypatch.delenv(name)


def signed_records(keys_dir: Path, n: int) -> list[Any]:
    """n signed SDK events (the stream's checkpoints left out), captured in memory."""
    memory = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=RESOURCE, shutdown_on_exit=False)
    provider.add_log_record_processor(SigningProcessor(keys_dir, downstream=SimpleLogRecordProcessor(memory),
                                                       checkpoint_every=10_000, resource=RESOURCE))
    logger = provider.get_logger("settings-tests")
    for i in range(n):
        logger.emit(event_name="authentication.login.succeeded", body=f"login {i}",
                    attributes={"user.id": f"user-{i}", "audit.outcome": "success"})
    provider.force_flush()
    out = [r for r in memory.get_finished_logs() if r.log_record.event_name != "audit.checkpoint"]
    provider.shutdown()
    return out


def transport(exp: Any) -> dict[str, Any]:
    """What the shared transport settings became on an HTTP exporter."""
    return {"timeout": exp.timeout, "retry": exp.retry, "verify": exp.session.verify, "cert": exp.session.cert,
            "compression": exp.compression, "proxy_from_env": getattr(exp.session, "proxy_from_env", None)}


# -- the value parsers -------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "seconds"), [("10s", 10.0), ("500ms", 0.5), ("1m", 60.0), (3, 3.0),
                                                 (0.25, 0.25), ("1h30m", 5400.0), ("2", 2.0)])
def test_duration_reads_go_durations_and_seconds(value: Any, seconds: float) -> None:
    """Durations are Go duration text or numbers of seconds."""
    assert _settings.Duration()(value, "x.timeout") == pytest.approx(seconds)


@pytest.mark.parametrize(("value", "size"), [("5MiB", 5 << 20), ("1MB", 10**6), ("512KiB", 512 << 10),
                                              ("1kb", 1000), (2048, 2048), ("2048", 2048), ("1.5KiB", 1536)])
def test_size_reads_binary_and_decimal_units(value: Any, size: int) -> None:
    """Sizes are whole numbers of bytes or text with a binary (KiB) or decimal (KB) unit."""
    assert _settings.Size()(value, "x.max") == size


@pytest.mark.parametrize(("text", "value"), [("true", True), ("false", False), ("1", True), ("0", False),
                                              ("TRUE", True), ("off", False)])
def test_bool_from_an_environment_variable(text: str, value: bool) -> None:
    """An environment variable's boolean may be true/false or 1/0 (yes/no, on/off)."""
    assert _settings.Bool().from_text(text, "VAR") is value


@pytest.mark.parametrize(("parser", "value", "needle"), [
    (_settings.Duration(), "ten", "is not a duration"),
    (_settings.Duration(), "0s", "above zero"),
    (_settings.Size(0, 100), "5 parsecs", "whole number of bytes from 0 to 100"),
    (_settings.Size(0, 100), "1MiB", "whole number of bytes from 0 to 100"),
    (_settings.Bool(), "maybe", "true or false"),
    (_settings.Bool(), 1, "true or false"),
    (_settings.Whole(1, 9), 10, "from 1 to 9"),
    (_settings.Whole(1, 9), True, "from 1 to 9"),
    (_settings.Url(), "ftp://h", "http(s) URL"),
    (_settings.Url(), "https://u:p@h", "credentials"),
    (_settings.Text(), "a\nb", "on one line"),
    (_settings.StrMap(), {"a": 1}, "must be a string"),
    (_settings.Tls(), {"verify": True}, "unknown key"),
    (_settings.Tls(), {"cert_file": __file__}, "go together"),
    (_settings.Tls(), {"ca_file": "/nonexistent/ca.pem"}, "is not a readable file"),
    (_settings.Tls(), {"ca_file": "/tmp"}, "is not a readable file"),
    (_settings.Tls(), {"ca_file": "ca\0.pem"}, "expected a file path"),
    (_settings.Tls(), {"min_version": "1.4"}, "not a TLS version"),
    (_settings.Tls(), {"min_version": "1.3", "max_version": "1.2"}, "above max_version"),
    (_settings.Tls(), {"server_name_override": "x"}, "cannot honour"),
    (_settings.StrMap(), {"X Team": "ops"}, "not an HTTP header name"),
    (_settings.StrMap(), {"X-Team": "ops\nX-Injected: 1"}, "line break"),
    (_settings.StrMap(grpc=True), {"X:Team": "ops"}, "not a gRPC metadata key"),
    (_settings.Retry(), {"enabled": "maybe"}, "true or false"),
    (_settings.Retry(), {"multiplier": -1}, "from 0 to 1000"),
])
def test_a_bad_value_is_a_config_error_naming_the_key(parser: _settings.Parser, value: Any, needle: str) -> None:
    """Every parser raises ConfigError starting with the key path and saying what it expected."""
    with pytest.raises(ConfigError) as err:
        parser(value, "exporters.splunk_hec/audit.key")
    assert str(err.value).startswith("exporters.splunk_hec/audit.key"), str(err.value)
    assert needle in str(err.value)


def test_a_secret_setting_never_repeats_its_value() -> None:
    """A bad value of a secret setting is named by its key, never shown."""
    secret = "s3cr3t\nvalue-that-must-not-show"
    setting = _settings.Setting("token", _settings.Text(), secret=True)
    with pytest.raises(ConfigError) as err:
        setting.parse_value(secret, "exporters.x.token")
    assert str(err.value).startswith("exporters.x.token:") and "s3cr3t" not in str(err.value)


# -- keyword arguments in the collector's shape ------------------------------------------------------


SPLUNK_BLOCK: dict[str, Any] = {
    "token": DEFAULT_TOKEN, "index": "audit", "sourcetype": "_json", "timeout": "7s",
    "max_event_size": "1MiB", "max_content_length_logs": "512KiB", "disable_compression": "true",
    "ack_timeout": "2m", "tls": {"insecure_skip_verify": True}, "retry_on_failure": FAST_RETRY,
    "hec_metadata_to_otel_attrs": {"index": "x.index"}, "max_idle_conns": 10,
}


@pytest.fixture
def hec() -> Iterator[SplunkHecStandIn]:
    """A HEC stand-in (a token without indexer acknowledgement)."""
    with SplunkHecStandIn() as s:
        yield s


def test_splunk_collector_shaped_keywords_work_as_the_yaml(hec: SplunkHecStandIn, shared_keys: Path) -> None:
    """SplunkHecLogExporter(timeout="7s", tls={...}, retry_on_failure={...}, sizes as text) equals the YAML
    block's exporter and delivers to the HEC stand-in."""
    by_kwargs = SplunkHecLogExporter(endpoint=hec.url, **SPLUNK_BLOCK)
    by_yaml = SplunkHecLogExporter.from_config({"endpoint": hec.url, **SPLUNK_BLOCK}, where="exporters.splunk_hec")
    for exp in (by_kwargs, by_yaml):
        assert transport(exp) == transport(by_kwargs)
        assert (exp.timeout, exp.max_event_size, exp.max_content_length, exp.ack_timeout) == (7.0, 1 << 20, 512 << 10,
                                                                                              120.0)
        assert exp.session.verify is False and not exp.compression and exp.hec_metadata["index"] == "x.index"
        assert exp.retry == RetrySettings(initial_interval=0.05, max_interval=0.3, max_elapsed_time=30,
                                          randomization_factor=0)
    assert by_kwargs.export(signed_records(shared_keys, 3)) == LogRecordExportResult.SUCCESS
    assert hec.count == 3 and hec.events()[0]["index"] == "audit"


def test_typed_keywords_keep_working(hec: SplunkHecStandIn) -> None:
    """Today's typed values (float seconds, TlsSettings, RetrySettings, int bytes) are accepted as before."""
    retry = RetrySettings(initial_interval=0.05)
    exp = SplunkHecLogExporter(hec.url, DEFAULT_TOKEN, timeout=2.5, tls=TlsSettings(insecure_skip_verify=True),
                               retry=retry, max_event_size=4096)
    assert (exp.timeout, exp.session.verify, exp.retry, exp.max_event_size) == (2.5, False, retry, 4096)


@pytest.mark.parametrize(("kw", "key", "needle"), [
    ({"timeout": "ten"}, "timeout", "not a duration"),
    ({"max_event_size": "huge"}, "max_event_size", "whole number of bytes"),
    ({"use_ack": "perhaps"}, "use_ack", "true or false"),
    ({"tls": {"ca_file": 3}}, "tls.ca_file", "file path"),
    ({"retry_on_failure": {"tries": 3}}, "splunk_hec.retry_on_failure.tries", "unknown key"),
    ({"tokn": "x"}, "splunk_hec.tokn", "valid keys are endpoint, token"),
    ({"endpoint": "ftp://h"}, "endpoint", "http(s) URL"),
])
def test_splunk_bad_keywords_name_the_key(hec: SplunkHecStandIn, kw: dict[str, Any], key: str, needle: str) -> None:
    """A bad keyword argument raises ConfigError naming it (unknown ones list the valid keys)."""
    kw = {"endpoint": hec.url, "token": DEFAULT_TOKEN, **kw}
    with pytest.raises(ConfigError) as err:
        SplunkHecLogExporter(**kw)
    text = str(err.value)
    assert text.startswith(key + ":") or text.startswith(key + "."), text
    assert needle in text and DEFAULT_TOKEN not in text


def test_splunk_env_vars_read_through_the_model(hec: SplunkHecStandIn, monkeypatch: pytest.MonkeyPatch,
                                                caplog: pytest.LogCaptureFixture) -> None:
    """Every OTEL_AUDIT_SPLUNK_HEC_* name (and SPLUNK_HEC_URL/TOKEN) still works; sizes and booleans take the
    collector's text, and a bad value warns naming the variable (never the value) and uses the default."""
    monkeypatch.setenv("SPLUNK_HEC_URL", hec.url)
    monkeypatch.setenv("SPLUNK_HEC_TOKEN", DEFAULT_TOKEN)
    monkeypatch.setenv("OTEL_AUDIT_SPLUNK_HEC_TIMEOUT", "3s")
    monkeypatch.setenv("OTEL_AUDIT_SPLUNK_HEC_MAX_EVENT_SIZE", "2MiB")
    monkeypatch.setenv("OTEL_AUDIT_SPLUNK_HEC_USE_ACK", "1")
    monkeypatch.setenv("OTEL_AUDIT_SPLUNK_HEC_TLS_INSECURE_SKIP_VERIFY", "true")
    monkeypatch.setenv("OTEL_AUDIT_SPLUNK_HEC_ACK_POLL_INTERVAL", "secret-looking-junk")
    with caplog.at_level(logging.WARNING):
        exp = SplunkHecLogExporter()
    assert (exp.timeout, exp.max_event_size, exp.use_ack, exp.session.verify) == (3.0, 2 << 20, True, False)
    assert exp.ack_poll_interval == 10.0
    assert "OTEL_AUDIT_SPLUNK_HEC_ACK_POLL_INTERVAL" in caplog.text and "secret-looking-junk" not in caplog.text


@pytest.fixture
def dd() -> Iterator[DatadogStandIn]:
    """A Datadog logs intake stand-in."""
    with DatadogStandIn() as s:
        yield s


def test_datadog_nested_collector_keywords_work_as_the_yaml(dd: DatadogStandIn, shared_keys: Path) -> None:
    """DatadogLogExporter(api={...}, logs={...}, host_metadata={...}, timeout="5s") equals the YAML block's and
    delivers to the Datadog stand-in."""
    block = {"api": {"key": DD_KEY, "site": "datadoghq.eu"}, "logs": {"endpoint": dd.url, "compression_level": "4"},
             "host_metadata": {"tags": ["team:audit"]}, "timeout": "5s", "retry_on_failure": FAST_RETRY,
             "tls": {"insecure_skip_verify": False}}
    by_kwargs = DatadogLogExporter(**block)
    by_yaml = DatadogLogExporter.from_config(block, where="exporters.datadog")
    for exp in (by_kwargs, by_yaml):
        assert transport(exp) == transport(by_yaml)
        assert (exp.site, exp.url, exp.compression_level, exp.tags, exp.timeout) == (
            "datadoghq.eu", dd.url.rstrip("/") + "/api/v2/logs", 4, ("team:audit",), 5.0)
    assert by_kwargs.export(signed_records(shared_keys, 2)) == LogRecordExportResult.SUCCESS
    assert dd.count() == 2


def test_datadog_bad_keywords_name_the_key_and_hide_the_key() -> None:
    """A bad api key or level given as a keyword is a ConfigError naming the key, never showing the key."""
    with pytest.raises(ConfigError) as err:
        DatadogLogExporter(api={"key": "not-hex!" + DD_KEY})
    assert str(err.value).startswith("datadog.api.key:") and DD_KEY not in str(err.value)
    with pytest.raises(ConfigError, match=r"^compression_level: expected a whole number from 0 to 9"):
        DatadogLogExporter(DD_KEY, compression_level="11")


@pytest.fixture
def es() -> Iterator[ElasticStandIn]:
    """An Elasticsearch stand-in that knows the default API key."""
    with ElasticStandIn(api_keys=(ES_KEY,)) as s:
        yield s


def test_elastic_collector_shaped_keywords_work_as_the_yaml(es: ElasticStandIn, shared_keys: Path) -> None:
    """ElasticLogExporter(endpoints=[...], timeout="5s", compression="none", retry_on_failure={...}) equals the
    YAML block's exporter and writes to the Elasticsearch stand-in."""
    block = {"endpoints": [es.url], "api_key": ES_KEY, "timeout": "5s", "compression": "none",
             "logs_index": "logs-audit-prod", "retry_on_failure": FAST_RETRY, "tls": {"insecure_skip_verify": True},
             "headers": {"X-Opaque-Id": "otel-audit"}}
    by_kwargs = ElasticLogExporter(**block)
    by_yaml = ElasticLogExporter.from_config(block, where="exporters.elasticsearch")
    for exp in (by_kwargs, by_yaml):
        assert transport(exp) == transport(by_yaml)
        assert (exp.endpoints, exp.logs_index, exp.timeout, exp.compression) == ([es.url.rstrip("/")],
                                                                               "logs-audit-prod", 5.0, False)
    assert by_kwargs.export(signed_records(shared_keys, 2)) == LogRecordExportResult.SUCCESS
    assert len(es.documents("logs-audit-prod")) == 2


def test_elastic_bad_keywords_name_the_key() -> None:
    """Bad sizes and durations given as keywords name the keyword."""
    with pytest.raises(ConfigError, match=r"^max_bulk_bytes: .*http.max_content_length"):
        ElasticLogExporter("http://127.0.0.1:9", max_bulk_bytes="1GiB")
    assert ElasticLogExporter("http://127.0.0.1:9", max_bulk_bytes="1MiB").max_bulk_bytes == 1 << 20
    with pytest.raises(ConfigError, match=r"^timeout: 'soon' is not a duration"):
        ElasticLogExporter("http://127.0.0.1:9", timeout="soon")


@pytest.fixture
def rx() -> Iterator[WebhookReceiver]:
    """A Standard Webhooks receiver that knows the test secret."""
    with WebhookReceiver(secrets=[WH_SECRET]) as r:
        yield r


def test_webhook_collector_shaped_keywords_work_as_the_yaml(rx: WebhookReceiver, shared_keys: Path) -> None:
    """WebhookLogExporter(max_body_bytes="64KiB", timeout="5s", tls={...}, retry_on_failure={...}) equals the
    YAML block's exporter and delivers signed messages to the receiver."""
    block = {"endpoint": rx.url, "secrets": [WH_SECRET], "max_body_bytes": "64KiB", "max_batch_size": "50",
             "timeout": "5s", "compression": "gzip", "retry_on_failure": FAST_RETRY,
             "tls": {"insecure_skip_verify": True}, "max_idle_conns": 4}
    by_kwargs = WebhookLogExporter(**block)
    by_yaml = WebhookLogExporter.from_config(block, where="exporters.webhook")
    for exp in (by_kwargs, by_yaml):
        assert transport(exp) == transport(by_yaml)
        assert (exp.max_body_bytes, exp.max_batch_size, exp.timeout, exp.compression) == (65536, 50, 5.0, True)
    assert by_kwargs.export(signed_records(shared_keys, 3)) == LogRecordExportResult.SUCCESS
    assert len(rx.events()) == 3


def test_webhook_env_vars_take_collector_text(rx: WebhookReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    """OTEL_AUDIT_WEBHOOK_* keep their names; sizes and durations take the collector's text."""
    monkeypatch.setenv("OTEL_AUDIT_WEBHOOK_ENDPOINT", rx.url)
    monkeypatch.setenv("OTEL_AUDIT_WEBHOOK_SECRETS", WH_SECRET)
    monkeypatch.setenv("OTEL_AUDIT_WEBHOOK_MAX_BODY_BYTES", "2MiB")
    monkeypatch.setenv("OTEL_AUDIT_WEBHOOK_TIMEOUT", "1m")
    exp = WebhookLogExporter()
    assert (exp.max_body_bytes, exp.timeout) == (2 << 20, 60.0)


def test_file_collector_shaped_keywords_work_as_the_yaml(tmp_path: Path) -> None:
    """FileLogRecordExporter(flush_interval="250ms", rotation={"max_megabytes": "1"}) equals the YAML block's."""
    block = {"path": str(tmp_path / "a.jsonl"), "flush_interval": "250ms", "rotation": {"max_megabytes": "1"},
             "fsync": "interval", "format": "json", "append": True}
    by_kwargs = FileLogRecordExporter(**block)  # type: ignore[arg-type]
    by_yaml = FileLogRecordExporter.from_config(block, where="exporters.file")
    for exp in (by_kwargs, by_yaml):
        assert (exp._fsync_interval, exp._rotation, exp._fsync) == (0.25, by_yaml._rotation, "interval")
        assert exp._rotation is not None and exp._rotation.max_bytes == 1 << 20
        exp.shutdown()
    with pytest.raises(ConfigError, match=r"^fsync_interval: 'fast' is not a duration"):
        FileLogRecordExporter(tmp_path / "b.jsonl", fsync_interval="fast")
    with pytest.raises(ConfigError, match=r"^file\.append: false would truncate"):
        FileLogRecordExporter(tmp_path / "b.jsonl", append=False)  # type: ignore[arg-type]


# -- the OTel declarative configuration file ---------------------------------------------------------


DECLARATIVE = """\
file_format: "0.4"
resource:
  attributes:
    - name: service.name
      value: gateway
logger_provider:
  processors:
    - batch:
        schedule_delay: 100
        exporter:
          splunk_hec:
            endpoint: {url}
            token: {token}
            index: audit
            timeout: 10s
            max_event_size: 1MiB
            tls:
              insecure_skip_verify: false
            retry_on_failure:
              initial_interval: 50ms
              max_elapsed_time: 30s
"""


def test_a_declarative_config_exporter_mapping_builds_our_entry_point(hec: SplunkHecStandIn,
                                                                      shared_keys: Path) -> None:
    """An opentelemetry-configuration file's exporter mapping, passed as keyword arguments to the
    opentelemetry_logs_exporter entry point class (as the SDK's declarative configuration does), builds the
    exporter with those settings and it delivers."""
    doc = yaml.safe_load(DECLARATIVE.format(url=hec.url, token=DEFAULT_TOKEN))
    assert doc["file_format"]
    ((name, settings),) = doc["logger_provider"]["processors"][0]["batch"]["exporter"].items()
    (entry,) = importlib.metadata.entry_points(group="opentelemetry_logs_exporter", name=name)
    cls = entry.load()
    assert cls is SplunkHecLogExporter
    exp = cls(**settings)
    assert (exp.timeout, exp.max_event_size, exp.index, exp.retry.initial_interval) == (10.0, 1 << 20, "audit", 0.05)
    assert transport(exp) == transport(SplunkHecLogExporter.from_config(settings, where="x"))
    assert exp.export(signed_records(shared_keys, 2)) == LogRecordExportResult.SUCCESS
    assert hec.count == 2


# -- the generated reference --------------------------------------------------------------------------


def test_docs_settings_md_is_current() -> None:
    """docs/settings.md is what the settings models generate now."""
    written = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    assert written == _settings.reference(), (
        "docs/settings.md is stale; refresh it with: .venv/bin/python -m otel_audit.exporters settings "
        "> docs/settings.md")


def test_every_model_documents_every_key_and_marks_secrets() -> None:
    """Each exporter has a section; its secrets (tokens, API keys, passwords) are marked."""
    page = _settings.reference()
    for title in ("## file", "## splunk_hec", "## datadog", "## elasticsearch", "## webhook", "## otlp"):
        assert title in page
    for model in _settings.models():
        for s in model.settings:
            if s.name in ("token", "api_key", "password", "secrets", "signing_key"):
                assert s.secret, (model.exporter, s.name)


def test_the_reference_command_prints_the_page() -> None:
    """`python -m otel_audit.exporters settings` prints docs/settings.md; anything else is a usage error."""
    ok = subprocess.run([sys.executable, "-m", "otel_audit.exporters", "settings"], capture_output=True,
                        text=True, check=False, cwd=ROOT)
    assert ok.returncode == 0 and ok.stdout == _settings.reference() and "Warning" not in ok.stderr
    bad = subprocess.run([sys.executable, "-m", "otel_audit.exporters", "--nope"], capture_output=True, text=True,
                         check=False, cwd=ROOT)
    assert bad.returncode == 2 and "usage" in bad.stderr


# -- every URL and proxy setting of every exporter: one check --------------------------------------------

_WH_SECRET = "whsec_" + "c2V0dGluZ3MtdGVzdC1zZWNyZXQtMDEyMzQ1Njc4OWFi"
#: (model name, a block with every required key, the key path of the URL setting under test)
URL_SETTINGS: list[tuple[str, dict[str, Any], str]] = [
    ("splunk_hec", {"token": DEFAULT_TOKEN}, "endpoint"),
    ("datadog", {"api": {"key": DD_KEY}}, "logs.endpoint"),
    ("datadog", {"api": {"key": DD_KEY}}, "proxy_url"),
    ("elasticsearch", {}, "endpoint"),
    ("elasticsearch", {}, "proxy_url"),
    ("webhook", {"secrets": [_WH_SECRET]}, "endpoint"),
    ("webhook", {"secrets": [_WH_SECRET], "endpoint": "https://hooks.example.com/a"}, "proxy_url"),
    ("otlphttp", {}, "endpoint"),
    ("otlphttp", {}, "logs_endpoint"),
]
#: URLs no request can use, with what the message says
UNUSABLE = [("http://[::1", "is not a URL"), ("http://", "URL with a host"), ("http://h:99999", "bad port"),
            ("http://h:0", "bad port"), ("http://h:x", "bad port"), ("http://h:-1", "bad port"), ("ftp://h", "http(s)"),
            ("http://ex ample.com:1", "holds a space"), ("http://h:1/\0", "holds the character '\\x00'"),
            ("http://h:1/a\tb", "holds the character '\\t'"), ("http://[zz]:1", "is not a URL"),
            ("http://a..b:1", "empty label"), ("http://h%20x:1", "a host name cannot have")]


def _model(name: str) -> _settings.Model:
    return next(m for m in _settings.models() if m.exporter == name)


def _nest(path: str, value: Any) -> dict[str, Any]:
    head, _, rest = path.partition(".")
    return {head: _nest(rest, value) if rest else value}


@pytest.mark.parametrize(("url", "needle"), UNUSABLE, ids=[u for u, _ in UNUSABLE])
@pytest.mark.parametrize(("name", "block", "key"), URL_SETTINGS, ids=[f"{n}.{k}" for n, _, k in URL_SETTINGS])
def test_every_url_setting_refuses_what_no_request_can_use(name: str, block: dict[str, Any], key: str, url: str,
                                                           needle: str) -> None:
    """Every exporter's URL and proxy setting refuses a URL without a host, an unparsable one, a port outside
    1-65535 and a wrong scheme, with a ConfigError naming the key (never 'internal error')."""
    where = f"exporters.{name}"
    cfg = {**block, **_nest(key, url)}
    with pytest.raises(ConfigError) as err:
        _model(name).read_block(cfg, where)
    assert str(err.value).startswith(f"{where}.{key}: ") and needle in str(err.value), str(err.value)


@pytest.mark.parametrize("key", ["endpoint", "port"])
def test_otlp_grpc_endpoint_needs_a_usable_port(key: str) -> None:
    """The otlp (gRPC) endpoint, host:port or a URL, refuses a port outside 1-65535; gRPC targets pass."""
    model = _model("otlp")
    for bad in ("collector:99999", "https://collector:0", "http://[::1"):
        with pytest.raises(ConfigError, match=r"^exporters\.otlp\.endpoint: "):
            model.read_block({"endpoint": bad}, "exporters.otlp")
    for good in ("collector:4317", "https://collector:4317", "[::1]:4317", "unix:///run/otel.sock", "dns:///c:4317"):
        assert model.read_block({"endpoint": good}, "exporters.otlp") == {"endpoint": good}


def test_a_socks_proxy_needs_pysocks() -> None:
    """socks5:// (which requests can use only with PySocks) is refused, with the fix, when PySocks is missing."""
    import importlib.util

    for name in ("datadog", "elasticsearch", "webhook"):
        block = {"api": {"key": DD_KEY}} if name == "datadog" else {}
        if name == "webhook":
            block = {"secrets": [_WH_SECRET], "endpoint": "https://hooks.example.com/a"}
        cfg = {**block, "proxy_url": "socks5h://user:pw@proxy:1080"}
        if importlib.util.find_spec("socks") is None:
            with pytest.raises(ConfigError) as err:
                _model(name).read_block(cfg, f"exporters.{name}")
            msg = str(err.value)
            assert msg.startswith(f"exporters.{name}.proxy_url: ") and "PySocks" in msg and "pw" not in msg, msg
        else:
            assert _model(name).read_block(cfg, f"exporters.{name}")["proxy_url"] == cfg["proxy_url"]


def test_a_proxy_url_may_carry_credentials_and_never_shows_them() -> None:
    """Credentials in a proxy URL are how requests authenticates to it: accepted, and a bad one hides them."""
    ok = _model("datadog").read_block({"api": {"key": DD_KEY}, "proxy_url": "http://u:pw@proxy:3128"}, "d")
    assert ok["proxy_url"] == "http://u:pw@proxy:3128"
    with pytest.raises(ConfigError) as err:
        _model("webhook").read_block({"secrets": [_WH_SECRET], "endpoint": "https://hooks.example.com/a",
                                      "proxy_url": "http://u:hunter2@proxy:99999"}, "w")
    assert "bad port" in str(err.value) and "hunter2" not in str(err.value)


# -- every argument the reference names in brackets is a keyword argument of the class ---------------

_CLASSES: dict[str, tuple[type[Any], dict[str, Any]]] = {
    "splunk_hec": (SplunkHecLogExporter, {"endpoint": "https://127.0.0.1:1", "token": DEFAULT_TOKEN}),
    "datadog": (DatadogLogExporter, {"api_key": DD_KEY}),
    "elasticsearch": (ElasticLogExporter, {"endpoint": "https://127.0.0.1:1"}),
    "webhook": (WebhookLogExporter, {"endpoint": "https://127.0.0.1:1", "secrets": [WH_SECRET]}),
}


def _ca_file() -> str:
    import certifi  # requests' CA bundle: a real, readable PEM file

    return str(certifi.where())


#: a usable value of each documented bracket argument (a new one needs a line here)
_ARGUMENT_SAMPLES: dict[str, Any] = {
    "retry": {"initial_interval": "100ms"}, "tls_ca_file": _ca_file, "tls_insecure_skip_verify": True,
    "api_key": DD_KEY, "site": "datadoghq.eu", "fail_on_invalid_key": False, "endpoint": "https://127.0.0.1:1",
    "use_compression": False, "compression_level": 3, "tags": ["team:audit"], "env": "prod", "source": "app",
    "api_endpoint": "https://127.0.0.1:1", "dataset": "app", "namespace": "prod", "retry_on_status": [429, 503],
    "dynamic_id": True, "max_bulk_bytes": "1MiB",
    "retry_block": {"enabled": True, "initial_interval": "100ms", "retry_on_status": [429]},
}

_BRACKETED = [(m.exporter, s.name) for m in _settings.models() if m.exporter in _CLASSES
              for s in m.settings if s.path != s.name and not s.unused]


@pytest.mark.parametrize(("exporter", "name"), _BRACKETED, ids=[f"{e}-{n}" for e, n in _BRACKETED])
def test_every_documented_argument_name_is_accepted(exporter: str, name: str) -> None:
    """docs/settings.md's "(argument NAME)" is a keyword argument each exporter class takes."""
    cls, base = _CLASSES[exporter]
    value = _ARGUMENT_SAMPLES[name]
    exp = cls(**{**base, name: value() if callable(value) else value})
    exp.shutdown()


def test_elastic_retry_block_argument_is_the_contrib_retry_block() -> None:
    """`retry_block` reads the contrib `retry` block: its durations and retry_on_status apply."""
    exp = ElasticLogExporter(endpoint="https://127.0.0.1:1",
                             retry_block={"initial_interval": "100ms", "retry_on_status": [429]})
    try:
        assert exp.retry.initial_interval == pytest.approx(0.1)
        assert exp.retry_on_status == frozenset({429})
    finally:
        exp.shutdown()
    with pytest.raises(ConfigError, match="retry_block"):
        ElasticLogExporter(endpoint="https://127.0.0.1:1", retry_block={"enabled": True}, retry={"enabled": True})


def test_elastic_auth_argument_is_refused_as_the_block_key() -> None:
    """`auth=` (an authenticator extension) is refused as the block's `auth` key is, never dropped."""
    with pytest.raises(ConfigError, match="elasticsearch.auth: authenticator extensions are not available"):
        ElasticLogExporter(endpoint="https://127.0.0.1:1", auth={"authenticator": "basicauth/client"})


@pytest.mark.parametrize("credential", [{"api_key": ES_KEY}, {"user": "u", "password": "pw"}],
                         ids=["api_key", "user"])
def test_elastic_authorization_header_with_credentials_is_refused(credential: dict[str, str]) -> None:
    """An Authorization header would replace api_key / user on every request: the pair is refused."""
    headers = {"authorization": "Basic b2xkOnByb3h5"}
    with pytest.raises(ConfigError, match="exporters.elasticsearch.headers: an Authorization header"):
        ElasticLogExporter.from_config({"endpoint": "https://127.0.0.1:1", **credential, "headers": headers},
                                       where="exporters.elasticsearch")
    with pytest.raises(ConfigError, match="elasticsearch.headers: an Authorization header"):
        ElasticLogExporter(endpoint="https://127.0.0.1:1", headers=headers, **credential)


# -- secrets pasted into another key are masked ------------------------------------------------------


def test_a_block_secret_pasted_into_another_key_is_masked() -> None:
    """A value equal to the block's own token, quoted by another key's error, shows as [secret]."""
    with pytest.raises(ConfigError) as err:
        SplunkHecLogExporter.from_config({"endpoint": "https://127.0.0.1:1", "token": DEFAULT_TOKEN,
                                          "health_path": DEFAULT_TOKEN}, where="exporters.splunk_hec")
    assert DEFAULT_TOKEN not in str(err.value) and "[secret]" in str(err.value)
    assert str(err.value).startswith("exporters.splunk_hec.health_path:")


def test_a_keyword_secret_pasted_into_another_keyword_is_masked() -> None:
    """The same for keyword arguments: datadog's api_key inside hostname is not shown."""
    with pytest.raises(ConfigError) as err:
        DatadogLogExporter(api_key=DD_KEY, hostname=f"{DD_KEY} prod")
    assert DD_KEY not in str(err.value) and "hostname" in str(err.value)


def test_an_environment_secret_in_another_variable_is_not_logged(monkeypatch: pytest.MonkeyPatch,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """The token set in the index variable too (with a space, which Splunk refuses) is warned about
    without the token, and the default index is used."""
    monkeypatch.setenv("OTEL_AUDIT_SPLUNK_HEC_TOKEN", DEFAULT_TOKEN)
    monkeypatch.setenv("OTEL_AUDIT_SPLUNK_HEC_INDEX", f"{DEFAULT_TOKEN} audit")
    with caplog.at_level(logging.WARNING):
        exp = SplunkHecLogExporter(endpoint="https://127.0.0.1:1")
    exp.shutdown()
    assert exp.index == ""
    assert "OTEL_AUDIT_SPLUNK_HEC_INDEX" in caplog.text and DEFAULT_TOKEN not in caplog.text


def test_a_splunk_index_with_a_space_is_refused() -> None:
    """Splunk index names have no spaces (every request would be refused with code 7)."""
    with pytest.raises(ConfigError, match="exporters.splunk_hec.index: must be a Splunk index name"):
        SplunkHecLogExporter.from_config({"endpoint": "https://127.0.0.1:1", "token": DEFAULT_TOKEN,
                                          "index": "main audit"}, where="exporters.splunk_hec")


# -- unknown-key messages and our own text ------------------------------------------------------------


@pytest.mark.parametrize(("block", "valid"), [
    ({"retry_on_failure": {"randomisation_factor": 0.1}}, _settings.RETRY_KEYS),
    ({"tls": {"insecure_skip_verfy": True}}, _settings.TLS_KEYS),
], ids=["retry", "tls"])
def test_an_unknown_key_message_lists_every_valid_key(tmp_path: Path, block: dict[str, Any],
                                                      valid: tuple[str, ...]) -> None:
    """The valid keys named for a misspelt tls / retry_on_failure key are every key the block takes."""
    from otel_audit import config, keys

    keys.generate(tmp_path / "k", "k1")
    cfg = {"processors": {"signing": {"keys_dir": str(tmp_path / "k"), "state_dir": str(tmp_path / "s")}},
           "exporters": {"splunk_hec": {"endpoint": "https://127.0.0.1:1", "token": DEFAULT_TOKEN, **block}},
           "service": {"pipelines": {"logs/audit": {"processors": ["signing"], "exporters": ["splunk_hec"]}}}}
    path = tmp_path / "audit.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError) as err:
        config.build_from_file(path, dry_run=True)
    assert str(err.value).endswith("valid keys: " + ", ".join(valid)), str(err.value)


@pytest.mark.parametrize(("make", "needle"), [
    (lambda: ElasticLogExporter.from_config({"endpoint": "https://127.0.0.1:1", "auth": {"authenticator": "x"}},
                                            where="exporters.elasticsearch"),
     "exporters.elasticsearch.auth: authenticator extensions are not available here"),
    (lambda: SplunkHecLogExporter(endpoint="https://127.0.0.1:1"), "no Splunk HEC token given: pass token"),
], ids=["elastic-auth", "splunk-missing-token"])
def test_our_own_message_text_is_not_redacted(make: Any, needle: str) -> None:
    """The secret rules scrub what a message quotes, not our words after a key named auth or token."""
    with pytest.raises(ConfigError) as err:
        make()
    assert needle in str(err.value) and "REDACTED" not in str(err.value), str(err.value)


def test_a_value_pasted_after_a_secret_key_is_still_scrubbed() -> None:
    """A credential right after a secret-named key path (unquoted) is still masked."""
    err = ConfigError("exporters.x.password: hunter2-Sup3rS3cret is not usable")
    assert "hunter2" not in str(err)


def test_a_keyword_secret_in_a_collector_shaped_keyword_is_masked() -> None:
    """token= given by name, pasted into a collector-shaped keyword too: the block error masks it."""
    with pytest.raises(ConfigError) as err:
        SplunkHecLogExporter(endpoint="https://127.0.0.1:1", token=DEFAULT_TOKEN,
                             retry_on_failure={"initial_interval": DEFAULT_TOKEN})
    assert DEFAULT_TOKEN not in str(err.value) and "retry_on_failure.initial_interval" in str(err.value)


def test_our_own_text_after_a_config_path_with_spaces_is_not_redacted() -> None:
    """A config file in a folder with a space keeps the message's own words after its key path."""
    err = ConfigError("/home/me/my app/audit.yaml: exporters.elasticsearch.auth: authenticator extensions are "
                      "not available here")
    assert "REDACTED" not in str(err) and "auth: authenticator extensions" in str(err)
    leaked = ConfigError("/home/me/my app/audit.yaml: exporters.x.password: hunter2-Sup3rS3cret is not usable")
    assert "hunter2" not in str(leaked)

# -- the shared tls block: versions; headers HTTP cannot carry ----------------------------------------


@pytest.fixture(scope="module")
def tls12_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """An HTTPS server on 127.0.0.1 that speaks TLS 1.2 at most, with a throwaway self-signed
    certificate: (its URL, the certificate file to trust)."""
    import datetime as dt
    import ipaddress
    import ssl
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    folder = tmp_path_factory.mktemp("tls12")
    (folder / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "k.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - keep test output quiet
            pass

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(folder / "c.pem", folder / "k.pem")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{server.server_address[1]}/", folder / "c.pem"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(("tls", "reaches"), [({"min_version": "1.3"}, False), ({"max_version": "1.2"}, True),
                                              ({"min_version": "1.2"}, True), ({}, True)])
def test_native_tls_versions_are_applied_and_survive_a_fresh_session(tls12_server: tuple[str, Path],
                                                                      tls: dict[str, str], reaches: bool) -> None:
    """The collector's tls.min_version / max_version bound the TLS version of a native exporter's
    connections (here against a TLS-1.2-only server), and a fork's fresh session keeps them."""
    import requests

    from otel_audit.exporters._http import fresh_session

    url, ca = tls12_server
    block = {"endpoint": url, "token": DEFAULT_TOKEN, "tls": {"ca_file": str(ca), **tls}}
    exp = SplunkHecLogExporter.from_config(block, where="exporters.splunk_hec")
    try:
        for session in (exp.session, fresh_session(exp.session)):
            if reaches:
                assert session.get(url, timeout=5).status_code == 204
            else:
                with pytest.raises(requests.exceptions.SSLError):
                    session.get(url, timeout=5)
    finally:
        exp.shutdown()


def test_a_header_requests_cannot_send_is_reported_without_its_value() -> None:
    """If a request's header cannot be sent after all, the retry log says so without the value
    (requests' InvalidHeader quotes it, and a header may hold a credential)."""
    import requests

    from otel_audit.exporters._http import _short

    secret = "ops-credential-Zq8v1Lw3"
    with pytest.raises(requests.exceptions.InvalidHeader) as info:
        requests.Session().prepare_request(requests.Request("GET", "http://127.0.0.1:9/",
                                                            headers={"X-Cred": secret + "\n"}))
    assert secret in str(info.value)  # what requests would have logged
    assert secret not in _short(info.value)


def test_env_headers_that_http_cannot_carry_are_skipped_without_their_value(
        caplog: pytest.LogCaptureFixture) -> None:
    """name=value,... text (as OTEL_EXPORTER_OTLP_HEADERS) keeps the usable entries and skips, with a
    warning naming the entry, a name that is no token and a value with an encoded line break."""
    with caplog.at_level(logging.WARNING):
        got = _settings.StrMap().from_text("X Team=a,X-Ok=b,X-Cred=s3cr3t%0AX-Injected: 1", "HEADERS")
    assert got == {"X-Ok": "b"}
    assert "entry 0" in caplog.text and "entry 2" in caplog.text and "s3cr3t" not in caplog.text


def test_typed_tls_settings_refuse_a_version_that_is_not_one() -> None:
    """TlsSettings(min_version=...) built in Python takes the collector's "1.0".."1.3" and refuses the rest."""
    assert TlsSettings(min_version="1.3").min_version == "1.3"
    with pytest.raises(ConfigError, match=r"^tls\.max_version: '1\.5' is not a TLS version"):
        TlsSettings(max_version="1.5")
