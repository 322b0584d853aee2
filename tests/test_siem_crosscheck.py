"""Every searchable field a SIEM exporter derives from a signed record is checked against ``audit.otlp``.

Records go through the real pipeline (LoggerProvider -> SigningProcessor -> the real exporter) into the
stand-in, are edited at rest there the way an editor of the SIEM's copy would (the stored event, so
search-time extraction follows), exported as the SIEM's search export does, and verified by the real CLI.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from standins.splunk import DEFAULT_TOKEN, SplunkHecStandIn

from otel_audit.exporters._http import RetrySettings
from otel_audit.exporters.splunk_hec import SplunkHecLogExporter
from otel_audit.processors.signing import SigningProcessor

RESOURCE = Resource.create({"service.name": "checkout", "service.version": "1.2.3"})
VICTIM = 1  # seq of the edited record: the first event after the start checkpoint


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "otel_audit.cli", "verify", "--no-progress", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def splunk(shared_keys: Path) -> Iterator[SplunkHecStandIn]:
    with SplunkHecStandIn() as s:
        exp = SplunkHecLogExporter(s.url, DEFAULT_TOKEN, index="audit", sourcetype="_json", source="otel-audit",
                                   retry=RetrySettings(initial_interval=0.01, max_interval=0.05, max_elapsed_time=5))
        provider = LoggerProvider(resource=RESOURCE, shutdown_on_exit=False)
        provider.add_log_record_processor(SigningProcessor(
            shared_keys, downstream=BatchLogRecordProcessor(exp, schedule_delay_millis=50),
            checkpoint_every=50, checkpoint_interval=3600, resource=RESOURCE))
        log = provider.get_logger("crosscheck")
        for i in range(12):
            log.emit(event_name="authentication.login.succeeded", body=f"user u{i} logged in",
                     severity_number=SeverityNumber.INFO, severity_text="INFO",
                     attributes={"user.id": f"u{i}", "audit.outcome": "success", "audit.category": "authentication",
                                 "audit.action": "login", "client.address": "203.0.113.7", "n": i,
                                 "tags": ["a", "b"], "gen_ai.usage": {"input_tokens": i}})
        provider.force_flush()
        provider.shutdown()
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
