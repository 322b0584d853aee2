"""Every searchable field a SIEM exporter derives from a signed record is checked against ``audit.otlp``.

Records go through the real pipeline (LoggerProvider -> SigningProcessor -> the real exporter) into the
stand-in, are edited at rest there the way an editor of the SIEM's copy would (the stored event, so
search-time extraction follows), exported as the SIEM's search export does, and verified by the real CLI.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from standins.datadog import DEFAULT_API_KEY as DD_API_KEY
from standins.datadog import DatadogStandIn
from standins.elastic import DEFAULT_API_KEY, ElasticStandIn
from standins.splunk import DEFAULT_TOKEN, SplunkHecStandIn

from otel_audit.exporters._http import RetrySettings
from otel_audit.exporters.datadog import DatadogLogExporter
from otel_audit.exporters.elastic import ElasticLogExporter
from otel_audit.exporters.splunk_hec import SplunkHecLogExporter
from otel_audit.processors.signing import SigningProcessor

RESOURCE = Resource.create({"service.name": "checkout", "service.version": "1.2.3"})
VICTIM = 1  # seq of the edited record: the first event after the start checkpoint


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "otel_audit.cli", "verify", "--no-progress", *args],
                          capture_output=True, text=True, timeout=120)


FAST = RetrySettings(initial_interval=0.01, max_interval=0.05, max_elapsed_time=5)


def _emit(shared_keys: Path, exp: Any, resource: Resource = RESOURCE, extra: bool = False) -> None:
    """Twelve signed events through the real SigningProcessor into `exp` (`extra`: then one 20 h old and
    one over Datadog's 1 MB log limit)."""
    provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
    provider.add_log_record_processor(SigningProcessor(
        shared_keys, downstream=BatchLogRecordProcessor(exp, schedule_delay_millis=50),
        checkpoint_every=50, checkpoint_interval=3600, resource=resource))
    log = provider.get_logger("crosscheck")
    for i in range(12):
        log.emit(event_name="authentication.login.succeeded", body=f"user u{i} logged in",
                 severity_number=SeverityNumber.INFO, severity_text="INFO",
                 attributes={"user.id": f"u{i}", "audit.outcome": "success", "audit.category": "authentication",
                             "audit.action": "login", "client.address": "203.0.113.7", "n": i,
                             "tags": ["a", "b"], "gen_ai.usage": {"input_tokens": i}})
    if extra:
        old = time.time_ns() - 20 * 3600 * 10**9
        log.emit(event_name="authentication.login.succeeded", body="an old one", timestamp=old,
                 severity_number=SeverityNumber.INFO, attributes={"user.id": "old", "audit.outcome": "success"})
        log.emit(event_name="authentication.login.succeeded", body="x" * 600_000, severity_number=SeverityNumber.INFO,
                 attributes={"user.id": "big", "audit.outcome": "success", "blob": "y" * 5000})
    provider.force_flush()
    provider.shutdown()


@pytest.fixture(scope="module")
def splunk(shared_keys: Path) -> Iterator[SplunkHecStandIn]:
    with SplunkHecStandIn() as s:
        _emit(shared_keys, SplunkHecLogExporter(s.url, DEFAULT_TOKEN, index="audit", sourcetype="_json",
                                                source="otel-audit", retry=FAST))
        yield s


def _export(s: SplunkHecStandIn, path: Path, edit: Callable[[dict[str, Any]], None] | None = None) -> Path:
    """The search export, with `edit` applied to the stored envelope of seq VICTIM (then restored)."""
    victim = next(st for st in s.accepted if st.envelope.get("fields", {}).get("audit.stream.seq") == str(VICTIM))
    saved = json.loads(json.dumps(victim.envelope))
    try:
        if edit is not None:
            edit(victim.envelope)
        path.write_bytes(s.search_export())
    finally:
        victim.envelope.clear()
        victim.envelope.update(saved)
    return path


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda env: env["event"].__setitem__(key, value)


def test_honest_splunk_export_verifies(splunk: SplunkHecStandIn, shared_keys: Path, tmp_path: Path) -> None:
    """What the exporter wrote, with every field Splunk adds (_bkt, _cd, linecount, splunk_server ...), verifies."""
    res = _cli("--keys", str(shared_keys), str(_export(splunk, tmp_path / "export.json")))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "VERIFIED" in res.stdout


def test_backend_added_fields_are_not_mismatches(splunk: SplunkHecStandIn, shared_keys: Path, tmp_path: Path) -> None:
    path = _export(splunk, tmp_path / "export.json")
    lines = []
    for line in path.read_text().splitlines():
        doc = json.loads(line)
        if "result" in doc:
            doc["result"].update({"punct": "{\"\":\"\",\"\":", "date_hour": "10", "date_wday": "monday",
                                  "timestartpos": "0", "_subsecond": ".123", "tag::eventtype": "x"})
        lines.append(json.dumps(doc))
    path.write_text("\n".join(lines) + "\n")
    res = _cli("--keys", str(shared_keys), str(path))
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize(("field", "edit", "shown"), [
    ("user.id", _set("user.id", "mallory"), "mallory"),
    ("body", _set("body", "Admin disabled MFA"), "Admin disabled MFA"),
    ("client.address", _set("client.address", "198.51.100.66"), "198.51.100.66"),
    ("audit.action", _set("audit.action", "logout"), "logout"),
    ("audit.category", _set("audit.category", "configuration"), "configuration"),
    ("otel.log.severity.text", _set("otel.log.severity.text", "ERROR"), "ERROR"),
    ("otel.log.severity.number", _set("otel.log.severity.number", 17), "17"),
    ("event_name", _set("event_name", "authentication.logout"), "authentication.logout"),
    ("n", _set("n", 999), "999"),
    ("gen_ai.usage.input_tokens", _set("gen_ai.usage.input_tokens", 5), "5"),
    ("audit.reason", _set("audit.reason", "approved by the CISO"), "approved by the CISO"),
])
def test_splunk_field_edit_is_caught(splunk: SplunkHecStandIn, shared_keys: Path, tmp_path: Path, field: str,
                                     edit: Callable[[dict[str, Any]], None], shown: str) -> None:
    res = _cli("--keys", str(shared_keys), str(_export(splunk, tmp_path / "export.json", edit)))
    assert res.returncode == 1, res.stdout + res.stderr
    hits = [ln for ln in res.stdout.splitlines() if f"field {field}" in ln and f"seq {VICTIM})" in ln]
    assert hits and shown in hits[0], res.stdout


@pytest.mark.parametrize(("edit", "key", "found"), [
    (_set("service.name", "billing"), "service.name", "billing"),
    (_set("host.name", "evilhost"), "host.name", "evilhost"),
    (lambda env: env.__setitem__("host", "evilhost"), "host.name", "evilhost"),
])
def test_splunk_misattribution_is_caught(splunk: SplunkHecStandIn, shared_keys: Path, tmp_path: Path,
                                         edit: Callable[[dict[str, Any]], None], key: str, found: str) -> None:
    """A resource identity the signed checkpoints contradict (changed, or added as host.name) fails."""
    res = _cli("--keys", str(shared_keys), "--format", "json", str(_export(splunk, tmp_path / "export.json", edit)))
    assert res.returncode == 1, res.stdout + res.stderr
    text = res.stdout
    assert found in text and key in text, text


# -- Elasticsearch ---------------------------------------------------------------------------------

ES_RESOURCE = Resource.create({"service.name": "checkout", "service.version": "1.2.3", "host.name": "web-1"})


@pytest.fixture(scope="module")
def es(shared_keys: Path) -> Iterator[ElasticStandIn]:
    with ElasticStandIn(api_keys=(DEFAULT_API_KEY,)) as s:
        _emit(shared_keys, ElasticLogExporter(s.url, api_key=DEFAULT_API_KEY, timeout=5, retry=FAST), ES_RESOURCE)
        yield s


def _es_export(s: ElasticStandIn, path: Path, edit: Callable[[dict[str, Any]], None] | None = None,
               hit_edit: Callable[[dict[str, Any]], None] | None = None) -> Path:
    """A scroll dump (NDJSON hits), with `edit` applied at rest to the `_source` of seq VICTIM (then restored)."""
    victim = next(d for d in s.documents() if d.id.endswith(f"-{VICTIM}"))
    saved = json.loads(json.dumps(victim.source))
    try:
        if edit is not None:
            s.alter(victim.id, edit)
        lines = [json.loads(ln) for ln in s.export_ndjson().splitlines()]
    finally:
        victim.source.clear()
        victim.source.update(saved)
    if hit_edit is not None:
        for hit in lines:
            hit_edit(hit)
    path.write_text("".join(json.dumps(h) + "\n" for h in lines))
    return path


def _at(dotted: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Set a field the way the document holds it: nested objects, `attributes` keys kept whole."""
    def edit(src: dict[str, Any]) -> None:
        node = src
        parts = dotted.split(".")
        if parts[0] in ("attributes", "resource"):
            head = 2 if parts[0] == "resource" else 1
            node = src
            for p in parts[:head]:
                node = node[p]
            node[".".join(parts[head:])] = value
            return
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return edit


def test_honest_elastic_export_verifies(es: ElasticStandIn, shared_keys: Path, tmp_path: Path) -> None:
    res = _cli("--keys", str(shared_keys), str(_es_export(es, tmp_path / "dump.ndjson")))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "VERIFIED" in res.stdout


def test_elastic_backend_added_fields_are_not_mismatches(es: ElasticStandIn, shared_keys: Path,
                                                         tmp_path: Path) -> None:
    """Hit metadata and what the Fleet final pipeline / geoip / user_agent processors add are not the record's."""
    def pipeline(src: dict[str, Any]) -> None:
        src["event"]["ingested"] = "2026-01-01T00:00:00Z"
        src["ecs"] = {"version": "8.11.0"}
        src["agent"] = {"type": "filebeat", "version": "8.15.0"}
        if "source" in src:
            src["source"]["geo"] = {"country_iso_code": "US"}
        src["tags"] = ["preserve_original_event"]

    def hit_meta(hit: dict[str, Any]) -> None:
        hit.update({"_seq_no": 3, "_primary_term": 1, "_version": 1, "_score": 1.0, "sort": [1, "x"],
                    "fields": {"event.ingested": ["2026-01-01T00:00:00Z"]}, "highlight": {"message": ["<em>u</em>"]}})
        pipeline(hit["_source"])

    res = _cli("--keys", str(shared_keys), str(_es_export(es, tmp_path / "dump.ndjson", hit_edit=hit_meta)))
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize(("field", "edit", "shown"), [
    ("message", _at("message", "Admin disabled MFA"), "Admin disabled MFA"),
    ("attributes.audit.action", _at("attributes.audit.action", "logout"), "logout"),
    ("attributes.audit.category", _at("attributes.audit.category", "configuration"), "configuration"),
    ("attributes.client.address", _at("attributes.client.address", "198.51.100.66"), "198.51.100.66"),
    ("source.ip", _at("source.ip", "198.51.100.66"), "198.51.100.66"),
    ("related.ip", _at("related.ip", ["198.51.100.66"]), "198.51.100.66"),
    ("user.id", _at("user.id", "mallory"), "mallory"),
    ("related.user", _at("related.user", ["mallory"]), "mallory"),
    ("log.level", _at("log.level", "ERROR"), "ERROR"),
    ("event.severity", _at("event.severity", 17), "17"),
    ("severity_number", _at("severity_number", 17), "17"),
    ("event.action", _at("event.action", "authentication.logout"), "authentication.logout"),
    ("event_name", _at("event_name", "authentication.logout"), "authentication.logout"),
    ("event.outcome", _at("event.outcome", "failure"), "failure"),
    ("event.category", _at("event.category", ["iam"]), "iam"),
    ("attributes.n", _at("attributes.n", 999), "999"),
    ("attributes.tags", _at("attributes.tags", ["a"]), "a"),
    ("attributes.audit.reason", _at("attributes.audit.reason", "approved by the CISO"), "approved by the CISO"),
    ("event.reason", _at("event.reason", "approved by the CISO"), "approved by the CISO"),
    ("@timestamp", _at("@timestamp", "2020-01-01T00:00:00.000Z"), "2020-01-01"),
    ("attributes.user.id", lambda src: src.update({"attributes.user.id": "mallory"}), "mallory"),
])
def test_elastic_field_edit_is_caught(es: ElasticStandIn, shared_keys: Path, tmp_path: Path, field: str,
                                      edit: Callable[[dict[str, Any]], None], shown: str) -> None:
    res = _cli("--keys", str(shared_keys), str(_es_export(es, tmp_path / "dump.ndjson", edit)))
    assert res.returncode == 1, res.stdout + res.stderr
    hits = [ln for ln in res.stdout.splitlines() if f"field {field} " in ln and f"seq {VICTIM})" in ln]
    assert hits and shown in hits[0], res.stdout


@pytest.mark.parametrize(("edit", "key", "found", "by_verifier"), [
    (_at("service.name", "billing"), "service.name", "billing", True),
    (_at("host.name", "evilhost"), "host.name", "evilhost", True),
    # the two spellings disagree: the reader says so (the ECS field is what is handed on)
    (_at("resource.attributes.service.name", "billing"), "resource.attributes.service.name", "billing", False),
    (lambda src: (_at("service.name", "billing")(src), _at("resource.attributes.service.name", "billing")(src)),
     "service.name", "billing", True),
    (_at("resource.attributes.service.version", "9.9.9"), "service.version", "9.9.9", True),
])
def test_elastic_misattribution_is_caught(es: ElasticStandIn, shared_keys: Path, tmp_path: Path,
                                          edit: Callable[[dict[str, Any]], None], key: str, found: str,
                                          by_verifier: bool) -> None:
    """A producer identity the signed checkpoints contradict fails, whichever field names it."""
    res = _cli("--keys", str(shared_keys), "--format", "json", str(_es_export(es, tmp_path / "dump.ndjson", edit)))
    assert res.returncode == 1, res.stdout + res.stderr
    assert found in res.stdout and key in res.stdout, res.stdout
    # the verifier itself reports it against the signed checkpoints, not only the reader
    assert _misattributed(res.stdout, found) is by_verifier, res.stdout


def _misattributed(report: str, found: str) -> bool:
    doc = json.loads(report)
    streams = doc.get("streams") or [s for f in doc.get("files", []) for s in f.get("streams", [])]
    return any(found in json.dumps(s.get("misattributed")) for s in streams)


# -- Datadog ---------------------------------------------------------------------------------------

DD_RESOURCE = Resource.create({"service.name": "checkout", "service.version": "1.2.3", "host.name": "web-1",
                               "deployment.environment.name": "prod"})


@pytest.fixture(scope="module")
def dd(shared_keys: Path) -> Iterator[DatadogStandIn]:
    with DatadogStandIn() as s:
        _emit(shared_keys, DatadogLogExporter(DD_API_KEY, endpoint=s.url, timeout=5, retry=FAST), DD_RESOURCE,
              extra=True)
        yield s


def _dd_export(s: DatadogStandIn, path: Path, edit: Callable[[dict[str, Any]], None] | None = None,
               event_edit: Callable[[dict[str, Any]], None] | None = None) -> Path:
    """The search export (pages of events), `edit` applied at rest to the stored log of seq VICTIM."""
    victim = next(e for e in s.accepted if e.get("audit.stream.seq") == VICTIM)
    saved = json.loads(json.dumps(victim))
    try:
        if edit is not None:
            edit(victim)
        pages = s.export()
    finally:
        victim.clear()
        victim.update(saved)
    if event_edit is not None:
        for page in pages:
            for ev in page["data"]:
                event_edit(ev)
    path.write_text(json.dumps(pages))
    return path


def _put(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda entry: entry.__setitem__(key, value)


def test_honest_datadog_export_verifies(dd: DatadogStandIn, shared_keys: Path, tmp_path: Path) -> None:
    """Restamped (too old) and shrunk (over 1 MB) entries verify too, as the exporter documents them."""
    flags = [e for e in dd.accepted if e.get("otel_audit.restamped") or e.get("otel_audit.shrunk")]
    assert len(flags) == 2, "the fixture must hold a restamped and a shrunk entry"
    res = _cli("--keys", str(shared_keys), str(_dd_export(dd, tmp_path / "dd.json")))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "VERIFIED" in res.stdout


def test_datadog_backend_added_fields_are_not_mismatches(dd: DatadogStandIn, shared_keys: Path,
                                                         tmp_path: Path) -> None:
    """Event ids, the source: tag, Datadog's own tags and resource-like attributes are not the record's."""
    def added(ev: dict[str, Any]) -> None:
        ev["attributes"]["tags"].append("datadog.index:main")
        ev["attributes"]["attributes"]["kube_namespace"] = "prod"

    res = _cli("--keys", str(shared_keys), str(_dd_export(dd, tmp_path / "dd.json", event_edit=added)))
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize(("field", "edit", "shown"), [
    ("message", _put("message", "Admin disabled MFA"), "Admin disabled MFA"),
    ("audit.action", _put("audit.action", "logout"), "logout"),
    ("audit.category", _put("audit.category", "configuration"), "configuration"),
    ("client.address", _put("client.address", "198.51.100.66"), "198.51.100.66"),
    ("network.client.ip", _put("network.client.ip", "198.51.100.66"), "198.51.100.66"),
    ("usr.id", _put("usr.id", "mallory"), "mallory"),
    ("user.id", _put("user.id", "mallory"), "mallory"),
    ("status", _put("status", "error"), "error"),
    ("otel.severity_number", _put("otel.severity_number", 17), "17"),
    ("otel.severity_text", _put("otel.severity_text", "ERROR"), "ERROR"),
    ("evt.name", _put("evt.name", "authentication.logout"), "authentication.logout"),
    ("n", _put("n", 999), "999"),
    ("gen_ai.usage.input_tokens", _put("gen_ai.usage.input_tokens", 5), "5"),
    ("audit.reason", _put("audit.reason", "approved by the CISO"), "approved by the CISO"),
    ("tag", lambda e: e.__setitem__("ddtags", e["ddtags"].replace("audit_category:authentication",
                                                                  "audit_category:configuration")), "configuration"),
])
def test_datadog_field_edit_is_caught(dd: DatadogStandIn, shared_keys: Path, tmp_path: Path, field: str,
                                      edit: Callable[[dict[str, Any]], None], shown: str) -> None:
    res = _cli("--keys", str(shared_keys), str(_dd_export(dd, tmp_path / "dd.json", edit)))
    assert res.returncode == 1, res.stdout + res.stderr
    hits = [ln for ln in res.stdout.splitlines() if f"{field} " in ln and f"seq {VICTIM})" in ln]
    assert hits and shown in hits[0], res.stdout


@pytest.mark.parametrize(("edit", "key", "found"), [
    (_put("service", "billing"), "service.name", "billing"),
    (_put("hostname", "evilhost"), "host.name", "evilhost"),
    (_put("service.version", "9.9.9"), "service.version", "9.9.9"),
])
def test_datadog_misattribution_is_caught(dd: DatadogStandIn, shared_keys: Path, tmp_path: Path,
                                          edit: Callable[[dict[str, Any]], None], key: str, found: str) -> None:
    res = _cli("--keys", str(shared_keys), "--format", "json", str(_dd_export(dd, tmp_path / "dd.json", edit)))
    assert res.returncode == 1, res.stdout + res.stderr
    assert _misattributed(res.stdout, found), res.stdout
