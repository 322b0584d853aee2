"""The Datadog exporter and reader against the Datadog stand-in (tests/standins/datadog.py).

Starts, per test: a DatadogStandIn (ThreadingHTTPServer on 127.0.0.1) that serves the Logs
intake API v2 and the Logs Search API v2. Records go through the real pipeline: LoggerProvider
-> SigningProcessor -> BatchLogRecordProcessor -> DatadogLogExporter.
"""

from __future__ import annotations

import base64
import csv
import gzip
import io
import logging
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExportResult
from opentelemetry.sdk.resources import Resource

from otel_audit.errors import ConfigError, InputError
from otel_audit.exporters._http import RetrySettings
from otel_audit.exporters.datadog import (
    MAX_ENTRY_BYTES,
    SITES,
    DatadogLogExporter,
    status_of,
)
from otel_audit.keys import Keyring
from otel_audit.processors.signing import SigningProcessor
from otel_audit.sources.datadog import DatadogReader, load_events, search_pages, verify_export
from tests.conftest import mixed_record
from tests.standins import export_in_forked_child
from tests.standins.datadog import DEFAULT_API_KEY, DEFAULT_APP_KEY, DatadogStandIn, gzip_json

WRONG_KEY = "deadbeefdeadbeefdeadbeefdeadbeef"
FAST = RetrySettings(initial_interval=0.05, max_interval=0.2, max_elapsed_time=20, randomization_factor=0.1)
#: Gives up within about half a second: for refusals that are retried and then reported as FAILURE.
GIVE_UP = RetrySettings(initial_interval=0.05, max_interval=0.1, max_elapsed_time=0.5, randomization_factor=0)


@pytest.fixture
def standin() -> Iterator[DatadogStandIn]:
    """A running Datadog stand-in."""
    with DatadogStandIn() as s:
        yield s


@pytest.fixture(autouse=True)
def _no_datadog_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the machine's DD_* and OTEL_AUDIT_DATADOG_* settings out of every test."""
    import os

    for name in list(os.environ):
        if name.startswith(("DD_", "OTEL_AUDIT_DATADOG_")):
            monkeypatch.delenv(name)


def exporter(standin: DatadogStandIn, **kw: Any) -> DatadogLogExporter:
    kw.setdefault("retry", FAST)
    kw.setdefault("timeout", 5.0)
    return DatadogLogExporter(kw.pop("api_key", DEFAULT_API_KEY), endpoint=standin.url, **kw)


class Pipeline:
    """The real pipeline in front of a Datadog exporter."""

    def __init__(self, exp: DatadogLogExporter, keys_dir: Path, *, checkpoint_every: int = 50,
                 queue: int = 4096, batch: int = 512, resource: dict[str, Any] | None = None) -> None:
        self.exporter = exp
        self.resource = Resource.create(resource or {"service.name": "gateway", "host.name": "gw-1",
                                                     "deployment.environment.name": "prod"})
        self.provider = LoggerProvider(resource=self.resource, shutdown_on_exit=False)
        self.signing = SigningProcessor(
            keys_dir, checkpoint_every=checkpoint_every, checkpoint_interval=3600, resource=self.resource,
            downstream=BatchLogRecordProcessor(exp, max_queue_size=queue, max_export_batch_size=batch,
                                               schedule_delay_millis=50))
        self.provider.add_log_record_processor(self.signing)
        self.logger = self.provider.get_logger("otel_audit.tests")

    def emit(self, n: int, start: int = 0) -> None:
        for i in range(start, start + n):
            self.logger.emit(**mixed_record(i))

    def close(self) -> None:
        self.provider.shutdown()

    @property
    def length(self) -> int:
        return self.signing.seq


def run(standin: DatadogStandIn, keys_dir: Path, n: int = 120, **kw: Any) -> Pipeline:
    p = Pipeline(exporter(standin, **kw), keys_dir)
    p.emit(n)
    p.close()
    return p


def verified(standin: DatadogStandIn, keyring: Keyring) -> Any:
    report, reader = verify_export([standin.export()], keyring)
    return report, reader


# -- sites, URLs and the entry -------------------------------------------------------------------


@pytest.mark.parametrize("site", sorted(SITES))
def test_every_site_sends_to_its_intake(site: str) -> None:
    """Each documented Datadog site maps to https://http-intake.logs.<site>/api/v2/logs."""
    exp = DatadogLogExporter(DEFAULT_API_KEY, site=site)
    assert exp.url == f"https://http-intake.logs.{site}/api/v2/logs"
    exp.shutdown()


@pytest.mark.parametrize("site", ["https://datadoghq.com", "app.datadoghq.eu", "http-intake.logs.datadoghq.com",
                                  "not a site"])
def test_a_site_given_as_url_or_host_is_refused(site: str) -> None:
    """A URL or a host name in place of the site is refused with what to write instead."""
    with pytest.raises(ValueError, match="site"):
        DatadogLogExporter(DEFAULT_API_KEY, site=site)


def test_an_endpoint_gets_the_intake_path() -> None:
    """logs.endpoint is a base URL: /api/v2/logs is added unless already there."""
    a = DatadogLogExporter(DEFAULT_API_KEY, endpoint="https://proxy.example:8443/dd")
    b = DatadogLogExporter(DEFAULT_API_KEY, endpoint="https://proxy.example/api/v2/logs")
    assert a.url == "https://proxy.example:8443/dd/api/v2/logs"
    assert b.url == "https://proxy.example/api/v2/logs"


@pytest.mark.parametrize(("number", "status"), [
    (0, "info"), (1, "debug"), (5, "debug"), (9, "info"), (10, "notice"), (13, "warning"), (16, "warning"),
    (17, "error"), (18, "critical"), (19, "alert"), (20, "alert"), (21, "emergency"), (24, "emergency")])
def test_severity_maps_to_datadog_status(number: int, status: str) -> None:
    """Severity numbers map to Datadog's status names by the OTel data model's syslog mapping."""
    assert status_of(number) == status


def test_entries_carry_datadog_fields_attributes_and_the_signed_record(standin: DatadogStandIn,
                                                                        shared_keys: Path) -> None:
    """An entry has Datadog's fields, the flattened attributes, standard-attribute aliases and audit.otlp."""
    p = Pipeline(exporter(standin, tags=["team:platform"]), shared_keys)
    p.logger.emit(event_name="authentication.login.failed", body="alice failed to log in",
                  severity_number=SeverityNumber.WARN,
                  attributes={"user.id": "alice", "audit.outcome": "failure", "audit.category": "Authentication",
                              "client.address": "203.0.113.7", "status": "shadowed", "blob": b"\x00\xff",
                              "gen_ai.usage": {"input_tokens": 3, "deep": {"x": 1.5}}, "ratio": float("nan")})
    p.close()
    entry = next(e for e in standin.accepted if e.get("evt.name") == "authentication.login.failed")
    assert entry["ddsource"] == "otel_audit"
    assert entry["ddtags"].split(",") == ["team:platform", "env:prod", "audit_category:authentication"]
    assert (entry["service"], entry["hostname"], entry["status"]) == ("gateway", "gw-1", "warning")
    assert entry["message"] == "alice failed to log in"
    assert entry["user.id"] == entry["usr.id"] == "alice"
    assert entry["audit.outcome"] == entry["evt.outcome"] == "failure"
    assert entry["network.client.ip"] == "203.0.113.7"
    assert entry["otel_audit.attr.status"] == "shadowed"  # a record attribute never becomes Datadog's status
    assert entry["blob"] == base64.b64encode(b"\x00\xff").decode()
    assert entry["gen_ai.usage.input_tokens"] == 3 and entry["gen_ai.usage.deep.x"] == 1.5
    assert entry["ratio"] == "NaN"
    otlp = orjson.loads(entry["audit.otlp"])
    assert otlp["eventName"] == "authentication.login.failed"
    assert otlp["body"] == {"stringValue": "alice failed to log in"}
    assert int(otlp["timeUnixNano"]) // 1_000_000 == entry["timestamp"]
    assert entry["otel.timestamp"] == otlp["timeUnixNano"]


def test_requests_are_gzipped_json_arrays_of_at_most_1000_entries(standin: DatadogStandIn,
                                                                    shared_keys: Path) -> None:
    """A batch of 2500 records goes as three gzip requests of at most 1000 entries each."""
    p = Pipeline(exporter(standin), shared_keys, checkpoint_every=10_000, queue=5000, batch=2500)
    p.emit(2500)
    p.close()
    seen = [s for s in standin.seen if s.status == 202]
    assert all(s.encoding == "gzip" and s.entries <= 1000 for s in seen)
    assert max(s.entries for s in seen) == 1000
    assert sum(s.entries for s in seen) == p.length == standin.count()


def test_compression_can_be_turned_off(standin: DatadogStandIn, shared_keys: Path, keyring: Keyring) -> None:
    """With use_compression false the body goes uncompressed, and still verifies."""
    run(standin, shared_keys, 30, use_compression=False, compression_level=0)
    assert {s.encoding for s in standin.seen} == {"identity"}
    report, _ = verified(standin, keyring)
    assert report.ok


def test_payloads_stay_under_5_mb_uncompressed(standin: DatadogStandIn, shared_keys: Path,
                                               keyring: Keyring) -> None:
    """Large records are spread over requests of at most 5 MB uncompressed, none refused."""
    p = Pipeline(exporter(standin), shared_keys, batch=64)
    for i in range(40):
        p.logger.emit(event_name="gen_ai.request", body="x" * 200_000 + str(i), attributes={"i": i})
    p.close()
    assert all(s.status == 202 and s.body_bytes <= 5_000_000 for s in standin.seen)
    assert len(standin.seen) >= 4
    assert standin.count() == p.length
    assert verified(standin, keyring)[0].ok


# -- the 1 MB log limit --------------------------------------------------------------------------


def test_a_record_over_1_mb_is_shrunk_never_truncated(standin: DatadogStandIn, shared_keys: Path,
                                                      keyring: Keyring) -> None:
    """A record whose entry would pass 1 MB loses its searchable copies, keeps audit.otlp whole, and verifies."""
    exp = exporter(standin)
    p = Pipeline(exp, shared_keys)
    p.logger.emit(event_name="gen_ai.response", body="y" * 600_000, attributes={"user.id": "bob", "big": "z" * 5000})
    p.close()
    entry = next(e for e in standin.accepted if e.get("evt.name") == "gen_ai.response")
    assert len(orjson.dumps(entry)) <= MAX_ENTRY_BYTES
    assert entry["message"].endswith("[cut by otel-audit: the full body is in audit.otlp]")
    assert "big" not in entry and set(entry["otel_audit.shrunk"]) == {"message", "big"}
    assert orjson.loads(entry["audit.otlp"])["body"] == {"stringValue": "y" * 600_000}
    assert standin.truncated == [] and exp.dd_counters.shrunk == 1
    report, reader = verified(standin, keyring)
    assert report.ok, report.problems
    assert reader.mismatches == []


def test_a_record_too_large_for_datadog_is_refused_counted_and_reported(standin: DatadogStandIn, shared_keys: Path,
                                                                        keyring: Keyring,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    """A record whose OTLP/JSON alone passes 1 MB is not sent to be truncated: it is refused, counted and logged."""
    exp = exporter(standin)
    p = Pipeline(exp, shared_keys)
    p.emit(5)
    p.logger.emit(event_name="gen_ai.response", body="w" * 1_100_000)
    p.emit(5, start=5)
    p.close()
    assert exp.counters.rejected == 1 and exp.dd_counters.too_large == 1
    assert "seq 6" in exp.counters.reasons[0] and "1000000" in exp.counters.reasons[0]
    assert "seq 6" in caplog.text
    assert standin.truncated == []
    assert standin.count() == p.length - 1
    report, _ = verified(standin, keyring)
    assert not report.ok and report.streams[0].missing == [[6, 6]]


def test_the_standin_truncates_a_log_over_1_mb_as_datadog_does(standin: DatadogStandIn) -> None:
    """The stand-in accepts a log over 1 MB with 202 and cuts it to 1 MB, noting what it cut."""
    r = requests.post(standin.intake_url, data=gzip_json([{"message": "m" * 1_200_000, "service": "s"}]),
                      headers={"DD-API-KEY": DEFAULT_API_KEY, "Content-Type": "application/json",
                               "Content-Encoding": "gzip"}, timeout=10)
    assert r.status_code == 202 and r.json() == {}
    assert len(orjson.dumps(standin.accepted[0])) <= 1_000_000
    assert standin.truncated[0]["field"] == "message"


# -- the stand-in's contract ---------------------------------------------------------------------


def _post(standin: DatadogStandIn, body: bytes, **headers: str) -> requests.Response:
    h = {"DD-API-KEY": DEFAULT_API_KEY, "Content-Type": "application/json"}
    h.update({k.replace("_", "-"): v for k, v in headers.items()})
    h = {k: v for k, v in h.items() if v}
    return requests.post(standin.intake_url, data=body, headers=h, timeout=10)


@pytest.mark.parametrize(("body", "headers", "status", "detail"), [
    (b'[{"message":"a"}]', {"DD_API_KEY": ""}, 401, "missing"),
    (b'[{"message":"a"}]', {"DD_API_KEY": WRONG_KEY}, 403, "invalid"),
    (b'[{"message":"a"', {}, 400, "not valid JSON"),
    (b'"text"', {}, 400, "JSON object or an array"),
    (orjson.dumps([{"message": str(i)} for i in range(1001)]), {}, 400, "maximum is 1000"),
    (orjson.dumps([{"message": "m" * 600_000}] * 9), {}, 413, "5000000"),
    (b'[{"message":"a"}]', {"Content_Encoding": "br"}, 400, "Content-Encoding"),
    (b'[{"message":"a"}]', {"Content_Type": "application/xml"}, 400, "Content-Type"),
    (b"\x1f\x8b not gzip", {"Content_Encoding": "gzip"}, 400, "gzip"),
])
def test_the_standin_refuses_what_datadog_refuses(standin: DatadogStandIn, body: bytes, headers: dict[str, str],
                                                   status: int, detail: str) -> None:
    """The stand-in answers bad requests with Datadog's status and error body, saying what was wrong."""
    r = _post(standin, body, **headers)
    assert r.status_code == status
    err = r.json()["errors"][0]
    assert err["status"] == str(status) and detail in err["detail"]
    assert standin.count() == 0


def test_the_standin_takes_deflate_one_object_and_text_lines(standin: DatadogStandIn) -> None:
    """The stand-in accepts deflate bodies, a single JSON object, and text/plain lines with ddtags."""
    assert _post(standin, zlib.compress(b'[{"message":"a"}]'), Content_Encoding="deflate").status_code == 202
    assert _post(standin, b'{"message":"b"}').status_code == 202
    r = requests.post(standin.intake_url + "?ddtags=env:dev&service=svc", data=b"c\nd\n", timeout=10,
                      headers={"DD-API-KEY": DEFAULT_API_KEY, "Content-Type": "text/plain"})
    assert r.status_code == 202
    assert [e["message"] for e in standin.accepted] == ["a", "b", "c", "d"]
    assert standin.accepted[3]["ddtags"] == "env:dev" and standin.accepted[3]["service"] == "svc"


def test_the_standin_accepts_but_does_not_index_logs_older_than_18_hours(standin: DatadogStandIn) -> None:
    """A log dated more than 18 h ago is answered 202 but kept out of the index (too_old)."""
    old = int(time.time() * 1000) - 19 * 3600 * 1000
    assert _post(standin, orjson.dumps([{"message": "old", "timestamp": old}])).status_code == 202
    assert standin.count() == 0 and len(standin.too_old) == 1


def test_records_older_than_18_hours_are_restamped_and_still_verify(standin: DatadogStandIn, shared_keys: Path,
                                                                    keyring: Keyring) -> None:
    """A record older than Datadog's 18 h window is sent with the current time, flagged, indexed, and verifies."""
    exp = exporter(standin)
    p = Pipeline(exp, shared_keys)
    old = time.time_ns() - 20 * 3600 * 10**9
    for i in range(3):
        p.logger.emit(event_name="config.changed", body=f"late {i}", timestamp=old + i,
                      attributes={"user.id": "ops"})
    p.close()
    assert exp.dd_counters.restamped == 3 and standin.too_old == []
    late = [e for e in standin.accepted if e.get("otel_audit.restamped")]
    assert len(late) == 3 and late[0]["otel.timestamp"] == str(old)
    report, reader = verified(standin, keyring)
    assert report.ok, report.problems
    assert reader.mismatches == []


# -- Datadog's answers ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", [408, 429, 500, 503])
def test_retryable_statuses_are_retried_until_delivered(standin: DatadogStandIn, shared_keys: Path,
                                                        keyring: Keyring, status: int) -> None:
    """408, 429, 500 and 503 are retried with backoff and the records arrive."""
    standin.fail(status, times=2)
    exp = exporter(standin)
    p = Pipeline(exp, shared_keys)
    p.emit(20)
    p.close()
    assert exp.counters.retries >= 2 and exp.counters.rejected == 0 and exp.counters.failed == 0
    assert verified(standin, keyring)[0].ok


@pytest.mark.parametrize("header", ["retry_after", "reset"])
def test_retry_after_and_rate_limit_reset_are_honoured(standin: DatadogStandIn, shared_keys: Path,
                                                       header: str) -> None:
    """A 429's Retry-After, or else its X-RateLimit-Reset, sets the wait before the next try."""
    standin.fail(429, **{header: 1})
    exp = exporter(standin)
    p = Pipeline(exp, shared_keys)
    p.emit(1)
    started = time.monotonic()
    p.close()
    assert time.monotonic() - started >= 0.95
    assert standin.count() == p.length


def test_a_413_splits_the_request_in_halves(standin: DatadogStandIn, shared_keys: Path, keyring: Keyring) -> None:
    """A 413 for a request of many entries sends it again as two halves."""
    standin.fail(413, detail="batch is above 5MB uncompressed")
    exp = exporter(standin)
    p = Pipeline(exp, shared_keys, checkpoint_every=1000)
    p.emit(40)
    p.close()
    assert exp.dd_counters.splits >= 1 and exp.counters.rejected == 0
    assert [s.status for s in standin.seen][:1] == [413]
    assert verified(standin, keyring)[0].ok


def test_a_413_for_one_entry_is_a_permanent_rejection(standin: DatadogStandIn, shared_keys: Path) -> None:
    """A 413 for a single entry cannot be split: its index is in last_rejected, counted, and the export is SUCCESS."""
    exp = exporter(standin)
    standin.fail(413)
    assert exp.export(_records(shared_keys, 1)) is LogRecordExportResult.SUCCESS
    assert exp.last_rejected == (0,) and exp.counters.rejected == 1 and "HTTP 413" in exp.counters.reasons[0]


def test_a_400_for_one_entry_is_rejected_with_datadogs_reason_and_not_retried(
        standin: DatadogStandIn, shared_keys: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A 400 for a request of one entry rejects that entry for good: its index in last_rejected, logged with
    Datadog's reason, counted, never sent again; the others of the batch are delivered."""
    exp = exporter(standin)
    batch = _records(shared_keys, 3)
    standin.fail(400, detail="ddtags is not a string")
    result = exp.export(batch[:1])
    assert result is LogRecordExportResult.SUCCESS and exp.last_rejected == (0,)
    assert exp.counters.rejected == 1 and exp.counters.retries == 0 and exp.counters.delivered == 0
    assert "HTTP 400 Bad Request: ddtags is not a string" in exp.counters.reasons[0]
    assert "ddtags is not a string" in caplog.text
    assert len([s for s in standin.seen if s.status == 400]) == 1 and standin.count() == 0
    assert exp.export(batch[1:]) is LogRecordExportResult.SUCCESS and exp.last_rejected == ()


def test_a_400_for_several_entries_splits_until_the_blame_lands(standin: DatadogStandIn, shared_keys: Path) -> None:
    """A 400 for a request of several entries splits it in halves; those that go through alone are delivered."""
    exp = exporter(standin)
    standin.fail(400, times=2, detail="one of the logs is malformed")
    batch = _records(shared_keys, 4)
    assert exp.export(batch) is LogRecordExportResult.SUCCESS
    # 4 -> 400; halves [0, 1] -> 400 and [2, 3] -> 202; [0] and [1] -> 202
    assert [s.status for s in standin.seen] == [400, 400, 202, 202, 202]
    assert exp.last_rejected == () and exp.counters.delivered == 4 and standin.count() == 4


def test_a_refused_key_is_retried_then_given_up_not_rejected(standin: DatadogStandIn, shared_keys: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    """A 403 (wrong key) is retried per retry_on_failure, then FAILURE with nothing rejected; with the right key
    the same records are delivered."""
    exp = exporter(standin, api_key=WRONG_KEY, retry=GIVE_UP)
    batch = _records(shared_keys, 10)
    result = exp.export(batch)
    assert result is LogRecordExportResult.FAILURE and exp.last_rejected == ()
    assert exp.counters.failed == 10 and exp.counters.rejected == 0 and exp.counters.retries >= 2
    assert exp.counters.delivered == 0 and standin.count() == 0
    assert "HTTP 403 Forbidden: API key is invalid; check api.key and api.site" in caplog.text
    assert WRONG_KEY not in caplog.text
    fixed = exporter(standin)
    assert fixed.export(batch) is LogRecordExportResult.SUCCESS and fixed.last_rejected == ()
    assert standin.count() == 10


@pytest.mark.parametrize("status", [401, 403])
def test_credential_refusals_are_failure_and_the_records_are_kept(standin: DatadogStandIn, shared_keys: Path,
                                                                  status: int) -> None:
    """A 401 or 403 is retried with backoff, then FAILURE with last_rejected empty and nothing counted delivered;
    once the intake accepts again the same records are delivered."""
    exp = exporter(standin, retry=GIVE_UP)
    batch = _records(shared_keys, 5)
    standin.fail(status, times=1000, detail="API key revoked")
    assert exp.export(batch) is LogRecordExportResult.FAILURE
    assert exp.last_rejected == () and exp.counters.rejected == 0 and exp.counters.delivered == 0
    assert standin.count() == 0 and f"HTTP {status}" in exp.counters.reasons[0]
    standin.clear_faults()
    assert exp.export(batch) is LogRecordExportResult.SUCCESS and exp.last_rejected == ()
    assert exp.counters.delivered == 5 and standin.count() == 5


def test_a_too_large_record_is_in_last_rejected_and_the_rest_is_delivered(standin: DatadogStandIn,
                                                                          shared_keys: Path) -> None:
    """A record too large to send even shrunk is refused before sending: its index in last_rejected, SUCCESS."""
    batch = _records(shared_keys, 3)
    big = _records(shared_keys, 1)[0]
    big.log_record.body = "w" * 1_100_000
    exp = exporter(standin)
    assert exp.export([batch[0], big, batch[1], batch[2]]) is LogRecordExportResult.SUCCESS
    assert exp.last_rejected == (1,) and exp.dd_counters.too_large == 1 and standin.count() == 3


def test_a_slow_intake_is_timed_out_and_retried_with_duplicates_only(standin: DatadogStandIn, shared_keys: Path,
                                                                     keyring: Keyring) -> None:
    """Answers slower than the timeout are retried; the records arrive, at most twice."""
    standin.slow(0.6)
    exp = exporter(standin, timeout=0.3)
    p = Pipeline(exp, shared_keys)
    p.emit(20)
    time.sleep(1.0)
    standin.slow(0)
    p.close()
    assert exp.counters.retries >= 1 and exp.counters.failed == 0
    report, _ = verified(standin, keyring)
    assert report.ok, report.problems


def test_a_lost_answer_gives_duplicates_not_gaps(standin: DatadogStandIn, shared_keys: Path,
                                                 keyring: Keyring) -> None:
    """When the connection drops after Datadog stored the logs, the retry makes duplicates, which verify."""
    standin.fail("reset")
    exp = exporter(standin)
    p = Pipeline(exp, shared_keys)
    p.emit(30)
    p.close()
    assert standin.count() > p.length
    report, _ = verified(standin, keyring)
    assert report.ok and report.streams[0].duplicates > 0


@pytest.mark.slow
def test_an_outage_of_30_seconds_mid_stream_loses_nothing(standin: DatadogStandIn, shared_keys: Path,
                                                          keyring: Keyring) -> None:
    """10k records with the intake down for 30 s in the middle all arrive after recovery, and verify."""
    exp = exporter(standin, retry=RetrySettings(initial_interval=0.2, max_interval=2.0, max_elapsed_time=0,
                                                randomization_factor=0.2), timeout=2.0)
    p = Pipeline(exp, shared_keys, checkpoint_every=1000, queue=20_000)
    p.emit(4000)
    deadline = time.monotonic() + 20
    while standin.count() < 2000 and time.monotonic() < deadline:
        time.sleep(0.05)
    standin.go_down()
    down_at = time.monotonic()
    p.emit(6000, start=4000)
    time.sleep(max(0.0, 30 - (time.monotonic() - down_at)))
    standin.come_up()
    p.close()
    assert exp.counters.retries > 0 and exp.counters.failed == 0 and exp.counters.rejected == 0
    report, reader = verified(standin, keyring)
    assert report.ok, report.problems
    stream = report.streams[0]
    assert stream.records == p.length and stream.events == 10_000 and stream.missing == []
    assert reader.mismatches == []


# -- reading back and verifying ------------------------------------------------------------------


def test_a_round_trip_through_the_search_api_verifies(standin: DatadogStandIn, shared_keys: Path,
                                                      keyring: Keyring) -> None:
    """Records read back page by page from the Logs Search API verify, with no mismatch."""
    p = run(standin, shared_keys, 150)
    pages = list(search_pages(standin.url, api_key=DEFAULT_API_KEY, app_key=DEFAULT_APP_KEY, limit=40))
    assert len(pages) == -(-p.length // 40) and all(pg["meta"]["status"] == "done" for pg in pages)
    assert "after" not in pages[-1]["meta"]["page"]
    report, reader = verify_export([pages], keyring)
    assert report.ok, report.problems
    assert reader.records == p.length and reader.mismatches == []


def test_a_record_altered_at_rest_fails_naming_its_seq(standin: DatadogStandIn, shared_keys: Path,
                                                       keyring: Keyring) -> None:
    """Editing the signed record in Datadog (audit.otlp) makes verification fail at that seq."""
    run(standin, shared_keys, 60)
    entry = next(e for e in standin.accepted if orjson.loads(e["audit.otlp"]).get("eventName") == "gen_ai.request")
    rec = orjson.loads(entry["audit.otlp"])
    seq = int(next(kv["value"]["intValue"] for kv in rec["attributes"] if kv["key"] == "audit.stream.seq"))
    for kv in rec["attributes"]:
        if kv["key"] == "user.id":
            kv["value"] = {"stringValue": "mallory"}
    entry["audit.otlp"] = orjson.dumps(rec).decode()
    report, _ = verified(standin, keyring)
    assert not report.ok
    assert report.streams[0].modified == [seq]


@pytest.mark.parametrize("field", ["audit.outcome", "user.id", "evt.name", "audit.stream.seq", "timestamp"])
def test_a_searchable_field_altered_at_rest_is_a_mismatch(standin: DatadogStandIn, shared_keys: Path,
                                                          keyring: Keyring, field: str) -> None:
    """Changing a searchable field while leaving audit.otlp alone is reported as a mismatch naming the seq."""
    p = Pipeline(exporter(standin), shared_keys)
    p.logger.emit(event_name="authorization.denied", body="denied",
                  attributes={"user.id": "carol", "audit.outcome": "failure"})
    p.close()
    entry = next(e for e in standin.accepted if e.get("evt.name") == "authorization.denied")
    seq = entry["audit.stream.seq"]
    entry[field] = {"audit.outcome": "success", "user.id": "dave", "evt.name": "authorization.granted",
                    "audit.stream.seq": seq + 100, "timestamp": entry["timestamp"] - 3_600_000}[field]
    report, reader = verified(standin, keyring)
    assert not report.ok
    assert len(reader.mismatches) == 1
    assert f"seq {seq}" in reader.mismatches[0]
    assert (field if field != "timestamp" else "Datadog's timestamp") in reader.mismatches[0]
    assert report.streams[0].status == "verified"  # the signed record itself is intact


def test_an_audit_record_without_its_signed_copy_is_reported(standin: DatadogStandIn, shared_keys: Path,
                                                             keyring: Keyring) -> None:
    """An audit event whose audit.otlp was removed is reported, and its seq is missing."""
    run(standin, shared_keys, 20)
    victim = standin.accepted[5]
    del victim["audit.otlp"]
    report, reader = verified(standin, keyring)
    assert not report.ok
    assert len(reader.problems) == 1 and "without its audit.otlp" in reader.problems[0]
    assert report.streams[0].missing == [[victim["audit.stream.seq"]] * 2]


def test_the_reader_takes_every_export_shape(standin: DatadogStandIn, shared_keys: Path, keyring: Keyring,
                                             tmp_path: Path) -> None:
    """A page, a list of pages, a list of events, NDJSON, gzip, a v1 log list and a CSV with audit.otlp all verify."""
    p = run(standin, shared_keys, 40)
    pages = standin.export(page_size=17)
    events = [ev for pg in pages for ev in pg["data"]]
    v1 = {"logs": [{"id": ev["id"], "content": ev["attributes"]} for ev in events], "nextLogId": None}
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["Date", "Host", "Service", "@evt.name", "@user.id", "@audit.outcome", "@audit.stream.id",
                "@audit.stream.seq", "@otel.timestamp", "@audit.otlp"])
    for ev in events:
        a, at = ev["attributes"], ev["attributes"]["attributes"]
        w.writerow([a["timestamp"], a.get("host"), a.get("service"), at.get("evt", {}).get("name", ""),
                    at.get("user", {}).get("id", ""), at["audit"].get("outcome", ""), at["audit"]["stream"]["id"],
                    at["audit"]["stream"]["seq"],
                    at["otel"]["timestamp"], at["audit"]["otlp"]])
    narrow = io.StringIO()
    csv.writer(narrow).writerows([["Date", "@audit.otlp"]] + [[ev["attributes"]["timestamp"],
                                                               ev["attributes"]["attributes"]["audit"]["otlp"]]
                                                              for ev in events])
    files = {
        "page.json": orjson.dumps(pages[0] | {"data": events}),
        "pages.json": orjson.dumps(pages),
        "events.json": orjson.dumps(events),
        "pages.ndjson": b"\n".join(orjson.dumps(pg) for pg in pages),
        "events.ndjson.gz": gzip.compress(b"\n".join(orjson.dumps(ev) for ev in events)),
        "v1.json": orjson.dumps(v1),
        "explorer.csv": buf.getvalue().encode(),
        "narrow.csv": narrow.getvalue().encode(),  # without the columns of the cross-checked fields
    }
    for name, data in files.items():
        path = tmp_path / name
        path.write_bytes(data)
        report, reader = verify_export([path], keyring)
        assert report.ok, (name, report.problems)
        assert reader.records == p.length, name


def test_the_reader_says_what_it_cannot_read(tmp_path: Path) -> None:
    """Unusable input raises InputError saying what was expected."""
    bad = tmp_path / "x.json"
    bad.write_bytes(b'{"errors": ["Forbidden"]}')
    with pytest.raises(InputError, match="error response"):
        list(load_events(bad))
    csv_path = tmp_path / "x.csv"
    csv_path.write_text("Date,Host,Message\n2024-01-01,h,m\n")
    with pytest.raises(InputError, match="audit.otlp column"):
        list(load_events(csv_path))
    reader = DatadogReader()
    assert list(reader.records_in({"data": [{"id": "x", "type": "log", "attributes": {"message": "hi"}}]})) == []
    assert reader.skipped == 1


def test_search_needs_both_keys_and_pages_through_rate_limits(standin: DatadogStandIn, shared_keys: Path) -> None:
    """The search API wants DD-API-KEY and DD-APPLICATION-KEY; a 429 is waited out via X-RateLimit-Reset."""
    p = run(standin, shared_keys, 20)
    with pytest.raises(InputError, match="HTTP 403: Forbidden") as info:
        list(search_pages(standin.url, api_key=DEFAULT_API_KEY, app_key="0" * 40))
    assert "0" * 40 not in str(info.value)
    standin.fail_search(429, reset=1)
    started = time.monotonic()
    pages = list(search_pages(standin.url, api_key=DEFAULT_API_KEY, app_key=DEFAULT_APP_KEY, limit=10,
                              query="source:otel_audit service:gateway"))
    assert time.monotonic() - started >= 0.95
    assert sum(len(pg["data"]) for pg in pages) == p.length
    none = list(search_pages(standin.url, api_key=DEFAULT_API_KEY, app_key=DEFAULT_APP_KEY, query="service:other"))
    assert none[0]["data"] == []
    keys = {"DD-API-KEY": DEFAULT_API_KEY, "DD-APPLICATION-KEY": DEFAULT_APP_KEY}
    first = requests.get(f"{standin.url}/api/v2/logs/events?filter[query]=source:otel_audit&page[limit]=15",
                         headers=keys, timeout=10).json()
    second = requests.get(first["links"]["next"], headers=keys, timeout=10).json()
    assert len(first["data"]) == 15 and len(second["data"]) == p.length - 15
    assert {e["id"] for e in first["data"]}.isdisjoint(e["id"] for e in second["data"])


# -- configuration -------------------------------------------------------------------------------


def test_a_collector_block_works_unchanged(standin: DatadogStandIn, shared_keys: Path, keyring: Keyring) -> None:
    """A contrib datadog exporter block (with metrics, traces and host metadata) builds a working exporter."""
    cfg = {
        "api": {"key": DEFAULT_API_KEY, "site": "datadoghq.eu", "fail_on_invalid_key": False},
        "hostname": "fallback-host",
        "logs": {"endpoint": standin.url, "use_compression": True, "compression_level": 9, "batch_wait": 5},
        "host_metadata": {"enabled": True, "hostname_source": "config_or_system", "tags": ["team:Platform"]},
        "metrics": {"resource_attributes_as_tags": True}, "traces": {"span_name_as_resource_name": True},
        "timeout": "3s", "retry_on_failure": {"enabled": True, "initial_interval": "50ms", "max_interval": "200ms"},
        "tls": {"insecure_skip_verify": False}, "max_idle_conns": 10,
    }
    exp = DatadogLogExporter.from_config(cfg, where="otel-audit.yaml: exporters.datadog")
    assert exp.site == "datadoghq.eu" and exp.timeout == 3.0 and exp.compression_level == 9
    p = Pipeline(exp, shared_keys, resource={"service.name": "svc"})
    p.emit(10)
    p.close()
    assert standin.accepted[0]["hostname"] == "fallback-host"
    assert standin.accepted[0]["ddtags"].startswith("team:platform")
    assert verified(standin, keyring)[0].ok


@pytest.mark.parametrize(("cfg", "key"), [
    ({}, "api.key"),
    ({"api": {"key": "not-hex!"}}, "api.key"),
    ({"api": {"key": DEFAULT_API_KEY, "site": "https://datadoghq.com"}}, "api.site"),
    ({"api": {"key": DEFAULT_API_KEY, "region": "eu"}}, "api.region"),
    ({"api": {"key": DEFAULT_API_KEY, "fail_on_invalid_key": "maybe"}}, "api.fail_on_invalid_key"),
    ({"api": {"key": DEFAULT_API_KEY}, "logs": {"compression_level": 11}}, "logs.compression_level"),
    ({"api": {"key": DEFAULT_API_KEY}, "logs": {"endpoint": "ftp://x"}}, "logs.endpoint"),
    ({"api": {"key": DEFAULT_API_KEY}, "logs": {"use_compression": "yes please"}}, "logs.use_compression"),
    ({"api": {"key": DEFAULT_API_KEY}, "logs": {"batch_wait": 100}}, "logs.batch_wait"),
    ({"api": {"key": DEFAULT_API_KEY}, "logs": {"sampling": 1}}, "logs.sampling"),
    ({"api": {"key": DEFAULT_API_KEY}, "endpoint": "https://x"}, "endpoint"),
    ({"api": {"key": DEFAULT_API_KEY}, "headers": {"a": "b"}}, "headers"),
    ({"api": {"key": DEFAULT_API_KEY}, "compression": "gzip"}, "compression"),
    ({"api": {"key": DEFAULT_API_KEY}, "auth": {"authenticator": "x"}}, "auth"),
    ({"api": {"key": DEFAULT_API_KEY}, "host_metadata": {"tags": ["a,b"]}}, "host_metadata.tags"),
    ({"api": {"key": DEFAULT_API_KEY}, "hostname": "has space"}, "hostname"),
    ({"api": {"key": DEFAULT_API_KEY}, "timeout": "soon"}, "timeout"),
    ({"api": {"key": DEFAULT_API_KEY}, "tls": {"ca_pem": "x"}}, "tls.ca_pem"),
    ({"api": {"key": DEFAULT_API_KEY}, "tags": ["a:b"]}, "tags"),
])
def test_config_errors_name_the_key(cfg: dict[str, Any], key: str) -> None:
    """A wrong block raises ConfigError naming the exact key, and never echoes the API key."""
    with pytest.raises(ConfigError) as info:
        DatadogLogExporter.from_config(cfg, where="cfg.yaml: exporters.datadog")
    assert f"cfg.yaml: exporters.datadog.{key}:" in str(info.value)
    assert DEFAULT_API_KEY not in str(info.value) and "not-hex!" not in str(info.value)


def test_unknown_site_is_warned_about_once(caplog: pytest.LogCaptureFixture) -> None:
    """A site not in SITES (a typo such as datadoghq.co) logs one warning naming where the API key would go."""
    with caplog.at_level(logging.WARNING, logger="otel_audit.exporters"):
        exp = DatadogLogExporter.from_config({"api": {"key": DEFAULT_API_KEY, "site": "datadoghq.co"}}, where="dd")
    exp.shutdown()
    said = [r.getMessage() for r in caplog.records if "datadoghq.co" in r.getMessage()]
    assert len(said) == 1 and "https://api.datadoghq.co" in said[0] and "check the spelling" in said[0], said
    assert DEFAULT_API_KEY not in caplog.text


def test_fail_on_invalid_key_checks_the_key_at_startup(standin: DatadogStandIn) -> None:
    """With api.fail_on_invalid_key the key is checked with Datadog at construction; a refused key is a ConfigError."""
    base = {"logs": {"endpoint": standin.url}, "metrics": {"endpoint": standin.url}}
    DatadogLogExporter.from_config(base | {"api": {"key": DEFAULT_API_KEY, "fail_on_invalid_key": True}}, where="dd")
    with pytest.raises(ConfigError, match=r"dd\.api\.key: Datadog says the API key is invalid") as info:
        DatadogLogExporter.from_config(base | {"api": {"key": WRONG_KEY, "fail_on_invalid_key": True}}, where="dd")
    assert WRONG_KEY not in str(info.value)


def test_the_exporter_is_built_from_the_environment_alone(standin: DatadogStandIn, shared_keys: Path,
                                                          keyring: Keyring, monkeypatch: pytest.MonkeyPatch) -> None:
    """DatadogLogExporter() reads OTEL_AUDIT_DATADOG_* first, then DD_*, then the defaults."""
    monkeypatch.setenv("DD_API_KEY", WRONG_KEY)
    monkeypatch.setenv("OTEL_AUDIT_DATADOG_API_KEY", DEFAULT_API_KEY)
    monkeypatch.setenv("DD_SITE", "us5.datadoghq.com")
    monkeypatch.setenv("DD_TAGS", "team:a owner:b")
    monkeypatch.setenv("DD_ENV", "staging")
    monkeypatch.setenv("OTEL_AUDIT_DATADOG_COMPRESSION_LEVEL", "1")
    monkeypatch.setenv("OTEL_AUDIT_DATADOG_TIMEOUT", "4s")
    exp = DatadogLogExporter()
    assert exp.url == "https://http-intake.logs.us5.datadoghq.com/api/v2/logs"
    assert (exp.compression_level, exp.timeout, exp.tags, exp.env) == (1, 4.0, ("team:a", "owner:b"), "staging")
    monkeypatch.setenv("OTEL_AUDIT_DATADOG_LOGS_ENDPOINT", standin.url)
    exp = DatadogLogExporter(retry=FAST)
    p = Pipeline(exp, shared_keys, resource={"service.name": "svc"})
    p.emit(10)
    p.close()
    assert standin.accepted[-1]["ddtags"] == "team:a,owner:b,env:staging,audit_category:integrity"
    assert standin.accepted[1]["ddtags"] == "team:a,owner:b,env:staging"
    assert verified(standin, keyring)[0].ok


def test_bad_environment_values_warn_and_fall_back(monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    """A bad env value logs a warning naming the variable and falls back to the default."""
    monkeypatch.setenv("DD_API_KEY", DEFAULT_API_KEY)
    monkeypatch.setenv("DD_SITE", "https://app.datadoghq.com")
    monkeypatch.setenv("OTEL_AUDIT_DATADOG_COMPRESSION_LEVEL", "max")
    monkeypatch.setenv("OTEL_AUDIT_DATADOG_USE_COMPRESSION", "perhaps")
    monkeypatch.setenv("OTEL_AUDIT_DATADOG_TIMEOUT", "-3")
    exp = DatadogLogExporter()
    assert exp.site == "datadoghq.com" and exp.compression_level == 6 and exp.compression and exp.timeout == 15.0
    for name in ("DD_SITE", "OTEL_AUDIT_DATADOG_COMPRESSION_LEVEL", "OTEL_AUDIT_DATADOG_USE_COMPRESSION",
                 "OTEL_AUDIT_DATADOG_TIMEOUT"):
        assert name in caplog.text


def test_without_a_key_the_environment_construction_says_which_variables() -> None:
    """With no API key anywhere the no-argument construction names the variables to set."""
    with pytest.raises(ValueError, match="OTEL_AUDIT_DATADOG_API_KEY or DD_API_KEY"):
        DatadogLogExporter()


def test_the_api_key_never_shows(standin: DatadogStandIn, shared_keys: Path, caplog: pytest.LogCaptureFixture,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The API key appears in no log line, error, repr or exception, whatever goes wrong."""
    caplog.set_level(logging.DEBUG)
    secret = "abcdef0123456789abcdef0123456789"
    exp = exporter(standin, api_key=secret, retry=RetrySettings(initial_interval=0.05, max_elapsed_time=0.2))
    assert secret not in repr(exp) and secret not in str(vars(exp).get("url"))
    exp.export(_records(shared_keys, 3))  # 403: the stand-in does not know this key
    standin.go_down()
    exp.export(_records(shared_keys, 3))  # connection refused
    standin.come_up()
    with pytest.raises(ValueError) as info:
        DatadogLogExporter(secret + "zz")
    monkeypatch.setenv("DD_API_KEY", secret + "!")
    with pytest.raises(ValueError) as info2:
        DatadogLogExporter()
    texts = [caplog.text, str(info.value), str(info2.value), repr(exp), str(exp.counters)]
    assert not any(secret in t for t in texts)


# -- helpers -------------------------------------------------------------------------------------


def _records(keys_dir: Path, n: int) -> list[Any]:
    """n signed records as the SDK hands them to an exporter (no checkpoints among them)."""
    from opentelemetry.sdk._logs import LogRecordProcessor

    got: list[Any] = []

    class Keep(LogRecordProcessor):
        def on_emit(self, log_record: Any) -> None:
            if log_record.log_record.event_name != "audit.checkpoint":
                got.append(log_record)

        def shutdown(self) -> None:
            pass

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return True

    resource = Resource.create({"service.name": "gateway"})
    provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
    provider.add_log_record_processor(SigningProcessor(keys_dir, downstream=Keep(), checkpoint_every=10_000,
                                                       checkpoint_interval=3600, resource=resource))
    logger = provider.get_logger("t")
    for i in range(n):
        logger.emit(**mixed_record(i))
    provider.shutdown()
    return got


# -- fork safety ----------------------------------------------------------------------------------


def test_a_forked_child_delivers_through_its_own_connection(standin: DatadogStandIn, shared_keys: Path) -> None:
    """After os.fork() the child sends through a fresh session on a new TCP connection, the parent keeps its
    own pool, and the deliveries of both arrive."""
    batch = _records(shared_keys, 6)
    exp = exporter(standin)
    assert exp.export(batch[:2]) is LogRecordExportResult.SUCCESS
    child = export_in_forked_child(exp, batch[2:4])
    assert child["exit_code"] == 0 and child["result"] == "SUCCESS" and child["fresh_session"], child
    assert exp.export(batch[4:]) is LogRecordExportResult.SUCCESS
    assert len(standin.client_ports) == 2 and standin.client_ports[0] != standin.client_ports[1]
    assert standin.count() == 6
