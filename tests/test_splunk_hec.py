"""The Splunk HEC exporter, its stand-in and the Splunk search-export reader.

Starts, per test: the HEC stand-in (`standins.splunk.SplunkHecStandIn`, a real HTTP server on
127.0.0.1) and real SDK pipelines (LoggerProvider -> SigningProcessor -> BatchLogRecordProcessor
-> SplunkHecLogExporter). What the stand-in stored is read back through its search export and
`otel_audit.sources.splunk` into the verifier.
"""

from __future__ import annotations

import gzip
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    InMemoryLogRecordExporter,
    LogRecordExportResult,
    SimpleLogRecordProcessor,
)
from opentelemetry.sdk.resources import Resource
from standins import export_in_forked_child
from standins.splunk import DEFAULT_TOKEN, SplunkHecStandIn, Token

from otel_audit.errors import ConfigError, InputError
from otel_audit.exporters._http import RetrySettings
from otel_audit.exporters.splunk_hec import SplunkHecLogExporter, hec_urls
from otel_audit.keys import Keyring
from otel_audit.processors.signing import SigningProcessor
from otel_audit.sources.splunk import SplunkReader, cross_check, load_results, record_of, verify_export

ACK_TOKEN = "9d3c1b2a-4e5f-4a6b-8c7d-0e1f2a3b4c5d"
FAST = RetrySettings(initial_interval=0.05, max_interval=0.3, max_elapsed_time=30)
#: Gives up within about half a second: for refusals that are retried and then reported as FAILURE.
GIVE_UP = RetrySettings(initial_interval=0.05, max_interval=0.1, max_elapsed_time=0.5, randomization_factor=0)
RESOURCE = Resource.create({"service.name": "gateway", "host.name": "gw-1"})


# -- rigs ------------------------------------------------------------------------------------------


@pytest.fixture
def hec() -> Iterator[SplunkHecStandIn]:
    """A HEC stand-in whose token has no indexer acknowledgement."""
    with SplunkHecStandIn() as s:
        yield s


@pytest.fixture
def hec_ack() -> Iterator[SplunkHecStandIn]:
    """A HEC stand-in whose token has useACK."""
    with SplunkHecStandIn(use_ack=True) as s:
        yield s


@pytest.fixture(autouse=True)
def _no_splunk_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the machine's Splunk settings out of every test."""
    import os

    for name in list(os.environ):
        if name.startswith(("OTEL_AUDIT_SPLUNK_HEC_", "SPLUNK_HEC_")):
            monkeypatch.delenv(name)


def exporter(standin: SplunkHecStandIn, **kw: Any) -> SplunkHecLogExporter:
    kw.setdefault("retry", FAST)
    kw.setdefault("index", "audit")
    kw.setdefault("sourcetype", "_json")
    kw.setdefault("source", "otel-audit-tests")
    return SplunkHecLogExporter(standin.url, kw.pop("token", DEFAULT_TOKEN), **kw)


class Rig:
    """LoggerProvider -> SigningProcessor -> BatchLogRecordProcessor -> the exporter."""

    def __init__(self, exp: SplunkHecLogExporter, keys_dir: Path, *, queue: int = 4096,
                 checkpoint_every: int = 100, batch: int = 512) -> None:
        self.exporter = exp
        self.provider = LoggerProvider(resource=RESOURCE, shutdown_on_exit=False)
        self.provider.add_log_record_processor(SigningProcessor(
            keys_dir, downstream=BatchLogRecordProcessor(exp, max_queue_size=queue, max_export_batch_size=batch,
                                                         schedule_delay_millis=50),
            checkpoint_every=checkpoint_every, resource=RESOURCE))
        self.logger = self.provider.get_logger("splunk-tests")
        self.emitted = 0

    def emit(self, n: int = 1, **kw: Any) -> None:
        for _ in range(n):
            i = self.emitted
            attrs = {"user.id": f"user-{i % 7}", "audit.outcome": "success" if i % 5 else "failure",
                     "audit.category": "authentication", "i": i,
                     "gen_ai.usage": {"input_tokens": i, "model": "m"}, "tags": ["a", "b"]}
            attrs.update(kw.pop("attributes", {}))
            self.logger.emit(event_name=kw.get("event_name", "authentication.login.succeeded"),
                             body=kw.get("body", f"user-{i % 7} logged in"), attributes=attrs,
                             severity_number=SeverityNumber.INFO, severity_text="INFO")
            self.emitted += 1

    def close(self) -> None:
        self.provider.force_flush()
        self.provider.shutdown()


def signed_records(keys_dir: Path, n: int, **attrs: Any) -> list[Any]:
    """n signed SDK events (seq 1..n: the stream's checkpoints left out), captured in memory."""
    memory = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=RESOURCE, shutdown_on_exit=False)
    provider.add_log_record_processor(SigningProcessor(keys_dir, downstream=SimpleLogRecordProcessor(memory),
                                                       checkpoint_every=10_000, resource=RESOURCE))
    logger = provider.get_logger("splunk-tests")
    for i in range(n):
        logger.emit(event_name="authentication.login.succeeded", body=f"login {i}",
                    attributes={"user.id": f"user-{i}", "audit.outcome": "success", **attrs})
    provider.force_flush()
    out = [r for r in memory.get_finished_logs() if r.log_record.event_name != "audit.checkpoint"]
    provider.shutdown()
    return out


def verify_standin(standin: SplunkHecStandIn, keyring: Keyring) -> tuple[Any, SplunkReader]:
    return verify_export([standin.search_export()], keyring)


def seqs(standin: SplunkHecStandIn) -> list[int]:
    return [int(e["fields"]["audit.stream.seq"]) for e in standin.events()]


# -- the envelope ----------------------------------------------------------------------------------


def test_envelope_carries_searchable_fields_indexed_fields_and_the_signed_record(
        hec: SplunkHecStandIn, shared_keys: Path) -> None:
    """Each record becomes one envelope: time in ms, metadata, a flattened event with audit.otlp, flat string fields."""
    rig = Rig(exporter(hec), shared_keys)
    rig.emit(3)
    rig.close()
    events = [e for e in hec.events() if e["event"]["event_name"] != "audit.checkpoint"]
    assert len(events) == 3
    env = events[1]
    ev = env["event"]
    rec = orjson.loads(ev["audit.otlp"])
    assert env["time"] == int(rec["timeUnixNano"]) // 1_000_000 / 1000
    assert (env["host"], env["index"], env["sourcetype"], env["source"]) == ("gw-1", "audit", "_json",
                                                                               "otel-audit-tests")
    assert ev["event_name"] == rec["eventName"] == "authentication.login.succeeded"
    assert ev["body"] == "user-1 logged in"
    assert (ev["otel.log.severity.text"], ev["otel.log.severity.number"]) == ("INFO", 9)
    assert ev["user.id"] == "user-1" and ev["i"] == 1 and ev["tags"] == ["a", "b"]
    assert ev["gen_ai.usage.input_tokens"] == 1 and ev["gen_ai.usage.model"] == "m"
    assert ev["service.name"] == "gateway"
    seq = ev["audit.stream.seq"]
    assert env["fields"] == {
        "event_name": "authentication.login.succeeded", "audit.stream.id": ev["audit.stream.id"],
        "audit.stream.seq": str(seq), "audit.category": "authentication", "audit.outcome": "success",
        "user.id": "user-1",
    }
    assert all(isinstance(v, str) for v in env["fields"].values())
    attrs = {kv["key"] for kv in rec["attributes"]}
    assert {"audit.stream.id", "audit.stream.seq", "audit.integrity.prev", "audit.integrity.digest"} <= attrs


def test_requests_use_the_documented_headers_gzip_and_concatenated_json(hec: SplunkHecStandIn,
                                                                         shared_keys: Path) -> None:
    """POST /services/collector/event with `Authorization: Splunk <token>`, a channel, gzip, envelopes back to back."""
    captured: list[requests.PreparedRequest] = []
    session = requests.Session()
    session.hooks["response"].append(lambda r, *a, **k: captured.append(r.request))
    exp = exporter(hec, session=session)
    assert exp.export(signed_records(shared_keys, 5)) is LogRecordExportResult.SUCCESS
    req = captured[0]
    assert req.method == "POST" and req.url == hec.url + "/services/collector/event"
    assert req.headers["Authorization"] == f"Splunk {DEFAULT_TOKEN}"
    assert req.headers["Content-Encoding"] == "gzip" and req.headers["Content-Type"] == "application/json"
    assert req.headers["X-Splunk-Request-Channel"] == exp.channel
    assert req.headers["__splunk_app_name"] == "otel-audit"
    body = gzip.decompress(req.body)  # type: ignore[arg-type]
    assert not body.startswith(b"[")
    assert len(body.split(b"\n")) == 5 and all(orjson.loads(line)["event"] for line in body.split(b"\n"))
    assert hec.seen[0].encoding == "gzip" and hec.seen[0].events == 5


def test_disable_compression_sends_plain_json(hec: SplunkHecStandIn, shared_keys: Path) -> None:
    """disable_compression: true sends the body without Content-Encoding."""
    exp = exporter(hec, disable_compression=True)
    assert exp.export(signed_records(shared_keys, 3)) is LogRecordExportResult.SUCCESS
    assert hec.seen[0].encoding == "" and hec.count == 3


def test_endpoint_paths_follow_the_contrib_exporter() -> None:
    """A bare host gets services/collector; /event is added; explicit event paths and proxies are kept."""
    assert hec_urls("https://splunk:8088") == ("https://splunk:8088/services/collector/event",
                                               "https://splunk:8088/services/collector/ack",
                                               "https://splunk:8088/services/collector")
    assert hec_urls("https://splunk:8088/services/collector")[0] == "https://splunk:8088/services/collector/event"
    assert hec_urls("https://s/services/collector/event/1.0")[:2] == ("https://s/services/collector/event/1.0",
                                                                     "https://s/services/collector/ack")
    assert hec_urls("https://proxy/hec/in")[:2] == ("https://proxy/hec/in", "https://proxy/hec/in/ack")
    with pytest.raises(ValueError, match="raw endpoint"):
        hec_urls("https://splunk:8088/services/collector/raw")


def test_attributes_named_like_our_own_keys_are_kept_apart(hec: SplunkHecStandIn, shared_keys: Path) -> None:
    """An attribute called body, event_name or audit.otlp goes to otel_audit.attr.<name>; ours stay intact."""
    recs = signed_records(shared_keys, 1, body="attr body", event_name="attr name", **{"audit.otlp": "forged"})
    exporter(hec).export(recs)
    ev = hec.events()[0]["event"]
    assert ev["body"] == "login 0" and ev["event_name"] == "authentication.login.succeeded"
    assert ev["otel_audit.attr.body"] == "attr body" and ev["otel_audit.attr.event_name"] == "attr name"
    assert ev["otel_audit.attr.audit.otlp"] == "forged" and orjson.loads(ev["audit.otlp"])["body"]


def test_com_splunk_attributes_choose_index_source_and_sourcetype(hec: SplunkHecStandIn, shared_keys: Path) -> None:
    """A record's com.splunk.index/source/sourcetype win over the configuration, as in the contrib exporter."""
    recs = signed_records(shared_keys, 2, **{"com.splunk.index": "history", "com.splunk.source": "gw",
                                              "com.splunk.sourcetype": "audit:json"})
    exporter(hec).export(recs)
    env = hec.events()[0]
    assert (env["index"], env["source"], env["sourcetype"]) == ("history", "gw", "audit:json")
    assert "com.splunk.index" not in env["event"]


def test_batches_stay_under_max_content_length_logs(hec: SplunkHecStandIn, shared_keys: Path) -> None:
    """A batch is cut into requests of at most max_content_length_logs bytes before compression."""
    exp = exporter(hec, max_content_length_logs=8192, disable_compression=True)
    assert exp.export(signed_records(shared_keys, 60)) is LogRecordExportResult.SUCCESS
    sizes = [s.wire_bytes for s in hec.seen]
    assert len(sizes) > 3 and max(sizes) <= 8192
    assert hec.count == 60


def test_an_event_over_the_limits_is_refused_for_good_and_counted(
        hec: SplunkHecStandIn, shared_keys: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An event bigger than max_event_size is refused here (its index in last_rejected, logged, counted), the
    others are sent, and the export is SUCCESS."""
    recs = signed_records(shared_keys, 3)
    big = signed_records(shared_keys, 1, padding="x" * 20_000)[0]
    exp = exporter(hec, max_event_size=16_000)
    with caplog.at_level(logging.ERROR):
        assert exp.export([*recs, big]) is LogRecordExportResult.SUCCESS
    assert exp.last_rejected == (3,) and exp.counters.rejected == 1 and exp.splunk_counters.too_large == 1
    assert hec.count == 3
    assert "over max_event_size (16000 bytes)" in caplog.text and "seq 1" in caplog.text


def test_a_413_splits_the_request_and_delivers_every_event(shared_keys: Path) -> None:
    """A server whose max_content_length is below ours answers 413; both halves are sent, nothing is lost."""
    with SplunkHecStandIn(max_content_length=6000) as hec:
        exp = exporter(hec, disable_compression=True)
        assert exp.export(signed_records(shared_keys, 12)) is LogRecordExportResult.SUCCESS
        assert hec.count == 12 and exp.splunk_counters.splits >= 1
        assert 413 in [s.status for s in hec.seen]


# -- answers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("setup, token, text, code, status", [
    (lambda s: None, "00000000-0000-0000-0000-000000000000", "Invalid token", 4, 403),
    (lambda s: s.disable_token(), DEFAULT_TOKEN, "Token disabled", 1, 403),
])
def test_token_refusals_are_retried_then_failure_and_logged_with_splunks_text(
        hec: SplunkHecStandIn, shared_keys: Path, caplog: pytest.LogCaptureFixture,
        setup: Any, token: str, text: str, code: int, status: int) -> None:
    """403 Invalid token / Token disabled is retried with backoff, then FAILURE with nothing rejected and Splunk's
    text in the log; once the token works the same records are delivered."""
    setup(hec)
    exp = SplunkHecLogExporter(hec.url, token, retry=GIVE_UP)
    records = signed_records(shared_keys, 4)
    with caplog.at_level(logging.ERROR):
        assert exp.export(records) is LogRecordExportResult.FAILURE
    assert exp.last_rejected == () and exp.counters.rejected == 0 and exp.counters.delivered == 0
    assert exp.counters.failed == 4 and exp.counters.retries > 0 and len(hec.seen) > 1 and hec.count == 0
    assert f"HTTP {status} code {code}: {text}" in caplog.text
    assert exp.counters.reasons == [f"HTTP {status} code {code}: {text}"]
    hec.disable_token(disabled=False)
    fixed = SplunkHecLogExporter(hec.url, DEFAULT_TOKEN, retry=GIVE_UP)
    assert fixed.export(records) is LogRecordExportResult.SUCCESS and fixed.last_rejected == ()
    assert sorted(seqs(hec)) == [1, 2, 3, 4]


@pytest.mark.parametrize("status, code", [(401, 2), (401, 3), (403, 4), (403, 1)])
def test_credential_refusals_are_failure_never_rejection(hec: SplunkHecStandIn, shared_keys: Path,
                                                         status: int, code: int) -> None:
    """A 401 or 403 with a token code is retried, then FAILURE with last_rejected empty and nothing counted
    delivered; after Splunk accepts again the same records are delivered."""
    hec.fail(status, times=1000, code=code)
    exp = exporter(hec, retry=GIVE_UP)
    records = signed_records(shared_keys, 3)
    assert exp.export(records) is LogRecordExportResult.FAILURE
    assert exp.last_rejected == () and exp.counters.rejected == 0 and exp.counters.delivered == 0
    assert hec.count == 0
    hec.clear_faults()
    assert exp.export(records) is LogRecordExportResult.SUCCESS and exp.last_rejected == ()
    assert exp.counters.delivered == 3 and sorted(seqs(hec)) == [1, 2, 3]


def test_an_unknown_index_is_kept_not_rejected(hec: SplunkHecStandIn, shared_keys: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    """An index the token may not write (400 code 7 "Incorrect index") is the token's setting, not the events'
    fault: retried, then FAILURE with nothing rejected."""
    exp = exporter(hec, index="nope", retry=GIVE_UP)
    with caplog.at_level(logging.ERROR):
        assert exp.export(signed_records(shared_keys, 2)) is LogRecordExportResult.FAILURE
    assert exp.counters.rejected == 0 and exp.last_rejected == () and exp.counters.failed == 2
    assert len(hec.seen) > 1 and hec.count == 0
    assert "code 7: Incorrect index (2 event(s) for index 'nope'" in caplog.text


def test_one_bad_event_is_refused_and_the_rest_of_the_batch_delivered(
        hec: SplunkHecStandIn, shared_keys: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A 400 naming invalid-event-number rejects that event only (its index in last_rejected); the others are
    sent again and delivered, and the export is SUCCESS."""
    hec.reject_events(lambda env: env["fields"].get("audit.stream.seq") == "4", times=1)
    exp = exporter(hec)
    with caplog.at_level(logging.ERROR):
        assert exp.export(signed_records(shared_keys, 10)) is LogRecordExportResult.SUCCESS
    assert exp.last_rejected == (3,)
    assert exp.counters.rejected == 1 and exp.counters.delivered == 9
    assert sorted(seqs(hec)) == [s for s in range(1, 11) if s != 4]
    assert "code 6: Invalid data format (event 3 of the request" in caplog.text and "seq 4" in caplog.text


def test_a_400_without_an_event_number_splits_until_the_blame_lands(hec: SplunkHecStandIn,
                                                                    shared_keys: Path) -> None:
    """A 400 code 6 that names no event splits the request in halves; events that go through alone are
    delivered, and a single event refused that way is in last_rejected."""
    hec.fail(400, times=3, code=6)
    exp = exporter(hec)
    assert exp.export(signed_records(shared_keys, 4)) is LogRecordExportResult.SUCCESS
    # [0..3] -> 400; [0, 1] -> 400; [0] -> 400 (rejected); [1], [2, 3] -> delivered
    assert [s.status for s in hec.seen] == [400, 400, 400, 200, 200]
    assert exp.last_rejected == (0,) and exp.counters.rejected == 1 and sorted(seqs(hec)) == [2, 3, 4]


def test_server_busy_is_retried_until_delivered(hec: SplunkHecStandIn, shared_keys: Path) -> None:
    """503 code 9 "Server is busy" is retried per retry_on_failure."""
    hec.busy(2)
    exp = exporter(hec)
    assert exp.export(signed_records(shared_keys, 5)) is LogRecordExportResult.SUCCESS
    assert exp.counters.retries == 2 and hec.count == 5
    assert [(s.status, s.code) for s in hec.seen] == [(503, 9), (503, 9), (200, 0)]


def test_429_retry_after_is_honoured(hec: SplunkHecStandIn, shared_keys: Path) -> None:
    """A 429 with Retry-After: 1 waits at least a second before the next try."""
    hec.throttle(1, retry_after=1)
    exp = exporter(hec)
    started = time.monotonic()
    assert exp.export(signed_records(shared_keys, 2)) is LogRecordExportResult.SUCCESS
    assert time.monotonic() - started >= 0.95 and hec.count == 2


def test_an_outage_longer_than_max_elapsed_time_is_given_up_as_failed(hec: SplunkHecStandIn,
                                                                      shared_keys: Path) -> None:
    """Connection refused past max_elapsed_time: the records count as failed (a spool keeps them), not rejected."""
    hec.go_down()
    exp = exporter(hec, retry=RetrySettings(initial_interval=0.05, max_interval=0.1, max_elapsed_time=0.5))
    assert exp.export(signed_records(shared_keys, 3)) is LogRecordExportResult.FAILURE
    assert exp.counters.failed == 3 and exp.counters.rejected == 0 and exp.last_rejected == ()


def test_an_answer_lost_after_storing_gives_duplicates_not_gaps(hec: SplunkHecStandIn, shared_keys: Path,
                                                                keyring: Keyring) -> None:
    """The connection cut after the events were stored: they are sent again; the verifier accepts the duplicates."""
    hec.fail("reset")
    rig = Rig(exporter(hec), shared_keys)
    rig.emit(20)
    rig.close()
    assert len(seqs(hec)) > len(set(seqs(hec)))
    report, reader = verify_standin(hec, keyring)
    assert report.ok, report.problems
    assert report.streams[0].duplicates > 0


def test_a_response_slower_than_timeout_is_retried(hec: SplunkHecStandIn, shared_keys: Path,
                                                   keyring: Keyring) -> None:
    """A request that times out is sent again; whatever arrived twice verifies as duplicates."""
    hec.slow(1.0)
    exp = exporter(hec, timeout=0.3)
    rig = Rig(exp, shared_keys)
    rig.emit(5)
    time.sleep(0.8)
    hec.slow(0)
    rig.close()
    assert exp.counters.retries >= 1 and exp.counters.failed == 0
    report, _ = verify_standin(hec, keyring)
    assert report.ok, report.problems


# -- indexer acknowledgement -----------------------------------------------------------------------


def test_export_returns_once_splunk_acknowledges(shared_keys: Path) -> None:
    """use_ack: the ackId of each answer is polled at /services/collector/ack until true."""
    with SplunkHecStandIn(use_ack=True, ack_delay=0.4) as hec:
        exp = exporter(hec, use_ack=True, ack_poll_interval=0.1)
        started = time.monotonic()
        assert exp.export(signed_records(shared_keys, 8)) is LogRecordExportResult.SUCCESS
        assert time.monotonic() - started >= 0.4
        assert hec.ack_queries >= 2
        assert exp.splunk_counters.acked == 8 and exp.counters.delivered == 8
        assert {s.channel for s in hec.seen} == {exp.channel}


def test_unacknowledged_requests_are_sent_again(hec_ack: SplunkHecStandIn, shared_keys: Path,
                                                keyring: Keyring) -> None:
    """Acks that never turn true (events lost in the indexer) are resent after ack_timeout, and then verify."""
    hec_ack.lose_acks(2, drop=True)
    exp = exporter(hec_ack, use_ack=True, ack_timeout=0.4, ack_poll_interval=0.1)
    rig = Rig(exp, shared_keys, batch=50)
    rig.emit(120)
    rig.close()
    assert exp.splunk_counters.resent > 0 and len(hec_ack.dropped) > 0
    assert exp.counters.failed == 0
    report, _ = verify_standin(hec_ack, keyring)
    assert report.ok, report.problems


def test_lost_acks_are_given_up_when_retries_are_off(hec_ack: SplunkHecStandIn, shared_keys: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """With retry_on_failure disabled, a request not acknowledged in time counts as failed, loudly."""
    hec_ack.lose_acks(1)
    exp = exporter(hec_ack, use_ack=True, ack_timeout=0.3, ack_poll_interval=0.05,
                   retry=RetrySettings(enabled=False))
    with caplog.at_level(logging.ERROR):
        assert exp.export(signed_records(shared_keys, 4)) is LogRecordExportResult.FAILURE
    assert exp.counters.failed == 4 and exp.last_rejected == ()
    assert "gave up on 4 audit record(s): not acknowledged by Splunk within 0.3s" in caplog.text


def test_use_ack_against_a_token_without_ack_counts_delivery_on_receipt(
        hec: SplunkHecStandIn, shared_keys: Path, caplog: pytest.LogCaptureFixture) -> None:
    """No ackId in the answer: warned once, records count as delivered on receipt."""
    exp = exporter(hec, use_ack=True)
    with caplog.at_level(logging.WARNING):
        assert exp.export(signed_records(shared_keys, 3)) is LogRecordExportResult.SUCCESS
        assert exp.export(signed_records(shared_keys, 2)) is LogRecordExportResult.SUCCESS
    assert exp.splunk_counters.unacknowledged == 5 and hec.ack_queries == 0
    assert caplog.text.count("is not enabled on this token") == 1


def test_the_channel_is_sent_even_without_use_ack(hec_ack: SplunkHecStandIn, shared_keys: Path) -> None:
    """A token with useACK refuses requests without a channel; the exporter always sends one."""
    exp = exporter(hec_ack)
    assert exp.export(signed_records(shared_keys, 2)) is LogRecordExportResult.SUCCESS
    assert hec_ack.count == 2


# -- health ----------------------------------------------------------------------------------------


def test_health_check_reports_healthy_and_unhealthy(hec: SplunkHecStandIn) -> None:
    """GET health_path: True on 200 code 17, False on 503 code 18 and when down."""
    exp = exporter(hec)
    assert exp.health_check() is True
    hec.unhealthy()
    assert exp.health_check() is False
    hec.unhealthy(False)
    hec.go_down()
    assert exp.health_check() is False


def test_health_check_enabled_logs_an_unhealthy_hec_before_the_first_export(
        hec: SplunkHecStandIn, shared_keys: Path, caplog: pytest.LogCaptureFixture) -> None:
    """health_check_enabled: the health path is asked once, and an unhealthy answer is logged."""
    hec.unhealthy()
    exp = exporter(hec, health_check_enabled=True)
    with caplog.at_level(logging.WARNING):
        assert exp.export(signed_records(shared_keys, 1)) is LogRecordExportResult.SUCCESS
    assert "HTTP 503 code 18: HEC is unhealthy, queues are full" in caplog.text
    assert "is not healthy" in caplog.text


# -- faults over time ------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_30s_outage_mid_stream_loses_nothing(hec_ack: SplunkHecStandIn, shared_keys: Path,
                                               keyring: Keyring) -> None:
    """10k records, HEC down for 30 s mid-stream then restarted: all delivered and acknowledged, the stream verifies."""
    exp = exporter(hec_ack, use_ack=True, ack_poll_interval=0.2, ack_timeout=5,
                   retry=RetrySettings(initial_interval=0.1, max_interval=1.0, max_elapsed_time=0))
    rig = Rig(exp, shared_keys, queue=20_000, checkpoint_every=500)
    rig.emit(3000)
    deadline = time.monotonic() + 20
    while hec_ack.count < 2000 and time.monotonic() < deadline:
        time.sleep(0.02)
    hec_ack.go_down()
    rig.emit(7000)
    time.sleep(30)
    hec_ack.come_up(restart=True)  # a restarted Splunk has forgotten every ackId it gave out
    rig.close()
    # retries: sends refused during the outage, or (when it began while awaiting an ack) resends
    assert exp.counters.failed == 0 and exp.counters.rejected == 0 and exp.counters.retries > 0
    report, reader = verify_standin(hec_ack, keyring)
    assert report.ok, report.problems[:5]
    (stream,) = report.streams
    assert stream.events == 10_000 and stream.state == "closed" and stream.missing == []
    assert reader.mismatches == []


def test_a_short_outage_without_ack_loses_nothing(hec: SplunkHecStandIn, shared_keys: Path,
                                                  keyring: Keyring) -> None:
    """Connection refused for 2 s while records flow: retried with backoff, then all delivered."""
    exp = exporter(hec)
    rig = Rig(exp, shared_keys)
    rig.emit(500)
    hec.go_down()
    rig.emit(500)
    time.sleep(2)
    hec.come_up()
    rig.close()
    report, _ = verify_standin(hec, keyring)
    assert report.ok, report.problems[:5]
    assert report.streams[0].events == 1000 and exp.counters.failed == 0


# -- the reader ------------------------------------------------------------------------------------


@pytest.fixture
def stored(hec: SplunkHecStandIn, shared_keys: Path) -> SplunkHecStandIn:
    """A stand-in holding one closed stream of 40 events (and its checkpoints)."""
    rig = Rig(exporter(hec), shared_keys, checkpoint_every=10)
    rig.emit(40)
    rig.close()
    return hec


def _stored_at(standin: SplunkHecStandIn, seq: int) -> dict[str, Any]:
    for s in standin.accepted:
        if s.envelope["fields"]["audit.stream.seq"] == str(seq):
            return s.envelope
    raise AssertionError(seq)


def test_round_trip_through_a_search_export_verifies(stored: SplunkHecStandIn, keyring: Keyring,
                                                     tmp_path: Path) -> None:
    """Search export (one JSON object per line, gzipped on disk) -> reader -> Verifier: ok, no mismatch."""
    path = tmp_path / "export.json.gz"
    path.write_bytes(gzip.compress(stored.search_export()))
    report, reader = verify_export([path], keyring)
    assert report.ok, report.problems
    assert reader.records == len(stored.accepted) and reader.mismatches == [] and reader.problems == []
    assert report.streams[0].state == "closed"


def test_a_json_array_of_results_and_a_results_document_are_read(stored: SplunkHecStandIn,
                                                                 keyring: Keyring) -> None:
    """A JSON array of results, and search/jobs/<sid>/results output, verify the same way."""
    results = stored.search_results()
    for doc in (results, {"preview": False, "init_offset": 0, "messages": [], "results": results}):
        report, reader = verify_export([orjson.dumps(doc)], keyring)
        assert report.ok and reader.records == len(results)


def test_a_record_altered_at_rest_fails_naming_its_seq(stored: SplunkHecStandIn, keyring: Keyring) -> None:
    """Editing the signed record inside _raw (audit.otlp) is reported as modified at that seq."""
    env = _stored_at(stored, 7)
    rec = orjson.loads(env["event"]["audit.otlp"])
    rec["body"] = {"stringValue": "nothing to see"}
    env["event"]["audit.otlp"] = orjson.dumps(rec).decode()
    report, _ = verify_standin(stored, keyring)
    assert not report.ok
    assert report.streams[0].modified == [7]


def test_a_searchable_field_altered_at_rest_is_a_mismatch(stored: SplunkHecStandIn, keyring: Keyring) -> None:
    """Changing user.id in _raw, or an index-time field, while audit.otlp is untouched, is reported."""
    _stored_at(stored, 5)["event"]["user.id"] = "mallory"
    _stored_at(stored, 9)["fields"]["audit.outcome"] = "success-ish"
    report, reader = verify_standin(stored, keyring)
    assert not report.ok and report.streams[0].status == "verified"
    text = "\n".join(reader.mismatches)
    assert "user.id in _raw is 'mallory'" in text and "seq 5)" in text
    assert "field audit.outcome is" in text and "seq 9)" in text


def test_a_time_or_name_changed_at_rest_is_a_mismatch(stored: SplunkHecStandIn, keyring: Keyring) -> None:
    """The envelope's time (Splunk's _time) and the event name are checked against the signed record."""
    _stored_at(stored, 3)["time"] += 3600
    _stored_at(stored, 4)["event"]["event_name"] = "authentication.logout"
    _, reader = verify_standin(stored, keyring)
    text = "\n".join(reader.mismatches)
    assert "_time is" in text and "seq 3)" in text
    assert "event_name in _raw is 'authentication.logout'" in text and "seq 4)" in text


def test_a_removed_event_is_reported_missing(stored: SplunkHecStandIn, keyring: Keyring) -> None:
    """A result deleted from the index shows as a missing seq."""
    results = [r for r in stored.search_results() if r["audit.stream.seq"] != ["12", "12"]]
    report, _ = verify_export([orjson.dumps(results)], keyring)
    assert not report.ok and report.streams[0].missing == [[12, 12]]


def test_audit_otlp_is_read_from_the_extracted_field_without_raw(stored: SplunkHecStandIn,
                                                                  keyring: Keyring) -> None:
    """Results exported without _raw are read through the extracted audit.otlp field."""
    results = [{k: v for k, v in r.items() if k != "_raw"} for r in stored.search_results()]
    report, reader = verify_export([orjson.dumps(results)], keyring)
    assert report.ok and reader.records == len(results)


def test_an_event_without_audit_otlp_is_a_problem_and_foreign_events_are_skipped(
        stored: SplunkHecStandIn) -> None:
    """Ours without audit.otlp cannot be verified (a problem); events that are not audit records are skipped."""
    results = stored.search_results()
    raw = orjson.loads(results[2]["_raw"])
    del raw["audit.otlp"]
    results[2] = {**results[2], "_raw": orjson.dumps(raw).decode()}
    del results[2]["audit.otlp"]
    results.append({"_raw": "Nov 26 05:00:00 web-1 sshd[1]: Accepted publickey", "_time": "1700000000"})
    reader = SplunkReader()
    list(reader.records_of(load_results(orjson.dumps(results))))
    assert reader.skipped == 1 and len(reader.problems) == 1 and "without its audit.otlp" in reader.problems[0]
    assert record_of(results[-1]) == (None, "")


def test_reader_refuses_input_that_is_not_splunk_json(tmp_path: Path, keyring: Keyring) -> None:
    """CSV or empty input is unusable input (InputError), not an empty success."""
    p = tmp_path / "x.csv"
    p.write_text("_time,_raw\n1,hello\n")
    with pytest.raises(InputError):
        verify_export([p], keyring)
    with pytest.raises(InputError):
        verify_export([b'{"preview":false,"messages":[]}'], keyring)


def test_cross_check_accepts_splunks_string_values() -> None:
    """Splunk gives every field as a string (or a list for multivalue); "12" equals the signed integer 12."""
    record = {"eventName": "e", "timeUnixNano": "1700000000123456789", "attributes": [
        {"key": "audit.stream.id", "value": {"stringValue": "ab" * 16}},
        {"key": "audit.stream.seq", "value": {"intValue": "12"}}]}
    result = {"_time": "2023-11-14T22:13:20.123+00:00", "event_name": ["e", "e"], "audit.stream.seq": "12",
              "audit.stream.id": "ab" * 16,
              "_raw": orjson.dumps({"event_name": "e", "audit.stream.seq": 12, "audit.stream.id": "ab" * 16}).decode()}
    assert cross_check(result, record, "r") == []
    assert cross_check({**result, "_time": "1700000000.124"}, record, "r") != []


# -- the stand-in's contract -----------------------------------------------------------------------


def _post(standin: SplunkHecStandIn, body: bytes, *, token: str | None = DEFAULT_TOKEN, path: str = "/event",
          headers: dict[str, str] | None = None) -> requests.Response:
    h = dict(headers or {})
    if token is not None:
        h["Authorization"] = f"Splunk {token}"
    return requests.post(standin.url + "/services/collector" + path, data=body, headers=h, timeout=5)


def test_standin_answers_auth_failures_with_splunks_bodies(hec: SplunkHecStandIn) -> None:
    """Missing token 401 code 2, wrong scheme 401 code 3, unknown token 403 code 4, disabled 403 code 1."""
    body = b'{"event":"x"}'
    assert (_post(hec, body, token=None).status_code, _post(hec, body, token=None).json()) == (
        401, {"text": "Token is required", "code": 2})
    r = requests.post(hec.event_url, data=body, headers={"Authorization": f"Bearer {DEFAULT_TOKEN}"}, timeout=5)
    assert (r.status_code, r.json()) == (401, {"text": "Invalid authorization", "code": 3})
    r = _post(hec, body, token="11111111-1111-1111-1111-111111111111")
    assert (r.status_code, r.json()) == (403, {"text": "Invalid token", "code": 4})
    hec.disable_token()
    assert _post(hec, body).json() == {"text": "Token disabled", "code": 1}
    assert hec.count == 0


def test_standin_parses_events_one_by_one_and_names_the_bad_one(hec: SplunkHecStandIn) -> None:
    """Concatenated envelopes; the first bad one rejects the request with invalid-event-number."""
    ok = b'{"event":"a"} {"event":{"b":1}}\n{"event":"c","fields":{"k":"v","m":["1","2"]}}'
    r = _post(hec, ok)
    assert (r.status_code, r.json()) == (200, {"text": "Success", "code": 0}) and hec.count == 3
    cases = [
        (b'{"event":"a"}{"event":', 6, 1),
        (b'{"event":"a"}{"time":1}', 12, 1),
        (b'{"event":""}', 13, 0),
        (b'{"event":"a"}{"event":"b","fields":{"nested":{"x":"y"}}}', 15, 1),
        (b'{"event":"a","fields":{"n":1}}', 15, 0),
        (b'{"event":"a","index":"secret"}', 7, 0),
        (b'{"event":[1,2]}', 6, 0),
    ]
    for body, code, number in cases:
        r = _post(hec, body)
        assert r.status_code == 400 and r.json()["code"] == code and r.json()["invalid-event-number"] == number, body
    assert _post(hec, b"  ").json() == {"text": "No data", "code": 5}
    assert hec.count == 3


def test_standin_takes_gzip_and_refuses_bodies_over_its_limit() -> None:
    """gzip bodies are accepted; over max_content_length (as sent or decompressed) is 413."""
    with SplunkHecStandIn(max_content_length=1000) as hec:
        small = gzip.compress(b'{"event":"a"}' * 10)
        assert _post(hec, small, headers={"Content-Encoding": "gzip"}).status_code == 200
        bomb = gzip.compress(b'{"event":"a"}' * 200)
        assert len(bomb) < 1000
        assert _post(hec, bomb, headers={"Content-Encoding": "gzip"}).status_code == 413
        assert _post(hec, b'{"event":"a"}' * 100).status_code == 413
        assert _post(hec, small, headers={"Content-Encoding": "br"}).status_code == 415
        assert hec.count == 10


def test_standin_acks_per_channel_as_documented(hec_ack: SplunkHecStandIn, hec: SplunkHecStandIn) -> None:
    """No channel 400 code 10, a bad one code 11; ackIds per channel from 0; true once, then forgotten."""
    body = b'{"event":"a"}'
    assert _post(hec_ack, body).json() == {"text": "Data channel is missing", "code": 10}
    assert _post(hec_ack, body, headers={"X-Splunk-Request-Channel": "nope"}).json()["code"] == 11
    ch = {"X-Splunk-Request-Channel": "FE0ECFAD-13D5-401B-847D-77833BD77131"}
    assert _post(hec_ack, body, headers=ch).json() == {"text": "Success", "code": 0, "ackId": 0}
    assert _post(hec_ack, body, headers=ch).json()["ackId"] == 1
    other = {"X-Splunk-Request-Channel": "0E0ECFAD-13D5-401B-847D-77833BD77131"}
    assert _post(hec_ack, body, headers=other).json()["ackId"] == 0
    assert _post(hec_ack, b'{"acks":[0,1,7]}', path="/ack", headers=ch).json() == {
        "acks": {"0": True, "1": True, "7": False}}
    assert _post(hec_ack, b'{"acks":[0]}', path="/ack", headers=ch).json() == {"acks": {"0": False}}
    assert _post(hec_ack, b'{"acks":[0]}', path="/ack").json()["code"] == 10
    assert _post(hec, b'{"acks":[0]}', path="/ack", headers=ch).json() == {"text": "ACK is disabled", "code": 14}


def test_standin_health_endpoint(hec: SplunkHecStandIn) -> None:
    """200 code 17 healthy; 503 code 18 when unhealthy; 400 code 21 for an invalid token."""
    url = hec.url + "/services/collector/health"
    assert requests.get(url, timeout=5).json() == {"text": "HEC is healthy", "code": 17}
    assert requests.get(url + "?token=nope", timeout=5).json()["code"] == 21
    hec.unhealthy()
    r = requests.get(url, timeout=5)
    assert (r.status_code, r.json()["code"]) == (503, 18)


def test_standin_query_string_token_needs_permission() -> None:
    """?token= works only for a token that allows query-string auth (else 400 code 16)."""
    tokens = {DEFAULT_TOKEN: Token(), ACK_TOKEN: Token(allow_query_string=True)}
    with SplunkHecStandIn(tokens=tokens) as hec:
        r = requests.post(hec.event_url + f"?token={DEFAULT_TOKEN}", data=b'{"event":"a"}', timeout=5)
        assert r.json() == {"text": "Query string authorization is not enabled", "code": 16}
        r = requests.post(hec.event_url + f"?token={ACK_TOKEN}", data=b'{"event":"a"}', timeout=5)
        assert r.status_code == 200


# -- configuration ---------------------------------------------------------------------------------


def test_from_config_takes_the_contrib_block(hec: SplunkHecStandIn, shared_keys: Path) -> None:
    """A collector splunk_hec block (with collector-only keys) builds a working exporter."""
    cfg = {
        "endpoint": hec.url, "token": DEFAULT_TOKEN, "source": "gw", "sourcetype": "_json", "index": "audit",
        "disable_compression": False, "max_content_length_logs": 1048576, "max_event_size": 1048576,
        "timeout": "5s", "tls": {"insecure_skip_verify": False}, "headers": {"X-Team": "sec"},
        "health_path": "/services/collector/health", "health_check_enabled": True,
        "splunk_app_name": "gateway", "splunk_app_version": "2.0", "use_ack": False, "ack_timeout": "1m",
        "ack_poll_interval": "2s", "retry_on_failure": {"enabled": True, "initial_interval": "100ms"},
        "max_idle_conns": 10, "telemetry": {"enabled": False}, "log_data_enabled": True,
        "hec_metadata_to_otel_attrs": {"index": "splunk.index"},
        "otel_to_hec_fields": {"severity_text": "level"},
    }
    exp = SplunkHecLogExporter.from_config(cfg, where="exporters.splunk_hec")
    assert (exp.timeout, exp.max_content_length, exp.ack_timeout, exp.ack_poll_interval) == (5.0, 1048576, 60.0, 2.0)
    assert exp.hec_metadata["index"] == "splunk.index" and exp.hec_fields["severity_text"] == "level"
    assert exp.export(signed_records(shared_keys, 2)) is LogRecordExportResult.SUCCESS
    assert hec.events()[0]["source"] == "gw"


@pytest.mark.parametrize("change, key", [
    ({"tokn": "x"}, "tokn"),
    ({"token": ""}, "token"),
    ({"token": "has space"}, "token"),
    ({"endpoint": "splunk:8088"}, "endpoint"),
    ({"max_content_length_logs": 900 * 1024 * 1024}, "max_content_length_logs"),
    ({"max_event_size": "big"}, "max_event_size"),
    ({"disable_compression": "yes"}, "disable_compression"),
    ({"use_ack": 1}, "use_ack"),
    ({"ack_timeout": "soon"}, "ack_timeout"),
    ({"health_path": "health"}, "health_path"),
    ({"export_raw": True}, "export_raw"),
    ({"log_data_enabled": False}, "log_data_enabled"),
    ({"otel_attrs_to_hec_metadata": {"colour": "x"}}, "otel_attrs_to_hec_metadata"),
    ({"hec_metadata_to_otel_attrs": {"colour": "x"}}, "hec_metadata_to_otel_attrs"),
    ({"retry_on_failure": {"enabled": "no"}}, "retry_on_failure.enabled"),
    ({"index": 7}, "index"),
])
def test_config_errors_name_the_key(change: dict[str, Any], key: str) -> None:
    """Every wrong key or value gives a ConfigError that names exporters.splunk_hec.<key>."""
    cfg = {"endpoint": "https://splunk:8088", "token": DEFAULT_TOKEN, **change}
    with pytest.raises(ConfigError) as err:
        SplunkHecLogExporter.from_config(cfg, where="exporters.splunk_hec")
    assert str(err.value).startswith(f"exporters.splunk_hec.{key}"), str(err.value)


def test_missing_endpoint_or_token_is_a_config_error() -> None:
    """endpoint and token are required, as in the contrib exporter."""
    for cfg, key in (({"token": DEFAULT_TOKEN}, "endpoint"), ({"endpoint": "https://s:8088"}, "token")):
        with pytest.raises(ConfigError, match=rf"^x\.{key}: required"):
            SplunkHecLogExporter.from_config(cfg, where="x")


def test_env_only_construction(hec: SplunkHecStandIn, shared_keys: Path, monkeypatch: pytest.MonkeyPatch,
                               caplog: pytest.LogCaptureFixture) -> None:
    """SplunkHecLogExporter() reads OTEL_AUDIT_SPLUNK_HEC_*, then SPLUNK_HEC_URL/TOKEN; bad values warn, fall back."""
    monkeypatch.setenv("SPLUNK_HEC_URL", hec.url)
    monkeypatch.setenv("SPLUNK_HEC_TOKEN", "wrong-token")
    monkeypatch.setenv("OTEL_AUDIT_SPLUNK_HEC_TOKEN", DEFAULT_TOKEN)
    monkeypatch.setenv("OTEL_AUDIT_SPLUNK_HEC_INDEX", "audit")
    monkeypatch.setenv("OTEL_AUDIT_SPLUNK_HEC_DISABLE_COMPRESSION", "true")
    monkeypatch.setenv("OTEL_AUDIT_SPLUNK_HEC_MAX_EVENT_SIZE", "lots")
    monkeypatch.setenv("OTEL_AUDIT_SPLUNK_HEC_ACK_TIMEOUT", "-3s")
    with caplog.at_level(logging.WARNING):
        exp = SplunkHecLogExporter()
    assert exp.url == hec.event_url and exp.index == "audit" and not exp.compression
    assert exp.max_event_size == 5 * 1024 * 1024 and exp.ack_timeout == 300.0
    assert "OTEL_AUDIT_SPLUNK_HEC_MAX_EVENT_SIZE" in caplog.text and "OTEL_AUDIT_SPLUNK_HEC_ACK_TIMEOUT" in caplog.text
    assert SplunkHecLogExporter(index="main").index == "main"  # an argument beats the environment
    rig = Rig(exp, shared_keys)
    rig.emit(3)
    rig.close()
    assert hec.count >= 3 and hec.events()[0]["index"] == "audit"


def test_no_endpoint_anywhere_says_which_variables_to_set() -> None:
    """Without an endpoint argument or variable, construction fails naming the variables."""
    with pytest.raises(ValueError, match="OTEL_AUDIT_SPLUNK_HEC_ENDPOINT or SPLUNK_HEC_URL"):
        SplunkHecLogExporter()


def test_the_token_never_appears_in_logs_errors_or_reprs(
        hec: SplunkHecStandIn, shared_keys: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The HEC token stays out of log lines (DEBUG included), reasons, reprs and config errors."""
    secret = "5e3c7a10-1111-4abc-9def-123456789abc"
    with caplog.at_level(logging.DEBUG):
        exp = exporter(hec, token=secret, health_check_enabled=True,  # unknown to the stand-in: 403
                       retry=RetrySettings(initial_interval=0.05, max_interval=0.1, max_elapsed_time=0.4))
        exp.export(signed_records(shared_keys, 3))
        hec.busy(1)
        exporter(hec).export(signed_records(shared_keys, 1))
        errors = []
        for bad in ({"token": secret + " x"}, {"token": secret, "tokn": 1}, {"token": secret, "index": 1}):
            try:
                SplunkHecLogExporter.from_config({"endpoint": hec.url, **bad}, where="e")
            except ConfigError as exc:
                errors.append(str(exc))
    assert exp.counters.failed == 3
    for text in (caplog.text, repr(exp), str(exp.counters), *errors, repr(exp.__dict__.get("url"))):
        assert secret not in text
    assert "<redacted>" in repr(exp)


# -- fork safety -----------------------------------------------------------------------------------


def test_a_forked_child_delivers_through_its_own_connection_and_channel(hec_ack: SplunkHecStandIn,
                                                                        shared_keys: Path) -> None:
    """After os.fork() the child sends through a fresh session on a new TCP connection and its own ack channel,
    the parent keeps its own pool, and the acknowledged deliveries of both arrive."""
    records = signed_records(shared_keys, 5)
    exp = exporter(hec_ack, use_ack=True, ack_poll_interval=0.05)
    parent_channel = exp.channel
    assert exp.export(records[:2]) is LogRecordExportResult.SUCCESS
    child = export_in_forked_child(exp, records[2:4])
    assert child["exit_code"] == 0 and child["result"] == "SUCCESS" and child["fresh_session"], child
    assert exp.export(records[4:]) is LogRecordExportResult.SUCCESS and exp.channel == parent_channel
    assert len(hec_ack.client_ports) == 2 and hec_ack.client_ports[0] != hec_ack.client_ports[1]
    assert sorted(seqs(hec_ack)) == [1, 2, 3, 4, 5]
    assert len({s.channel for s in hec_ack.accepted}) == 2
