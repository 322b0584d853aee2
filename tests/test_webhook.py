"""The Standard Webhooks exporter against a strict receiver that verifies with the official package.

Starts, per test: a ``WebhookReceiver`` (tests/standins/webhook.py), a real HTTP server on
127.0.0.1 that checks every signature with ``standardwebhooks`` (and ``cryptography`` for
``v1a``), dedupes on ``webhook-id`` and stores the JSON batches. Pipelines are real:
LoggerProvider + SigningProcessor + BatchLogRecordProcessor + WebhookLogExporter; what the
receiver stored is read back with ``read_payload`` and proven by the ``Verifier``.
"""

from __future__ import annotations

import base64
import gzip
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from conftest import mixed_record
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor, ReadWriteLogRecord
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExportResult
from opentelemetry.sdk.resources import Resource
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from otel_audit import cli
from otel_audit.canonical import CHECKPOINT_EVENT, STREAM_SEQ
from otel_audit.errors import ConfigError
from otel_audit.exporters._http import RetrySettings
from otel_audit.exporters.webhook import (
    ENV_ENDPOINT,
    ENV_SECRETS,
    PAYLOAD_TYPE,
    WebhookLogExporter,
    public_key_of,
    read_payload,
    signature_header,
)
from otel_audit.keys import Keyring
from otel_audit.processors.signing import SigningProcessor
from otel_audit.processors.spool import SpoolProcessor
from otel_audit.verify import Report, Verifier
from tests.standins import export_in_forked_child
from tests.standins.webhook import WebhookReceiver

FAST = RetrySettings(initial_interval=0.05, max_interval=0.3, max_elapsed_time=30, randomization_factor=0)
#: Gives up within about half a second: for refusals that are retried and then reported as FAILURE.
GIVE_UP = RetrySettings(initial_interval=0.05, max_interval=0.1, max_elapsed_time=0.5, randomization_factor=0)


def _secret(seed: bytes, n: int = 32) -> str:
    return "whsec_" + base64.b64encode((seed * n)[:n]).decode()


SECRET_A = _secret(b"alpha-")
SECRET_B = _secret(b"bravo-", 24)
SECRET_C = _secret(b"charlie-", 64)
SIGNING_SEED = bytes(range(32))
SIGNING_KEY = "whsk_" + base64.b64encode(SIGNING_SEED).decode()
TOKEN = "Bearer t0ken-that-must-never-show"


@pytest.fixture(autouse=True)
def _no_webhook_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the machine's OTEL_AUDIT_WEBHOOK_* settings out of every test."""
    for name in list(os.environ):
        if name.startswith("OTEL_AUDIT_WEBHOOK_"):
            monkeypatch.delenv(name)


@pytest.fixture
def rx() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(secrets=[SECRET_A]) as receiver:
        yield receiver


def exporter_for(rx: WebhookReceiver, **kw: Any) -> WebhookLogExporter:
    kw.setdefault("secrets", [SECRET_A])
    kw.setdefault("timeout", 5)
    kw.setdefault("retry", FAST)
    return WebhookLogExporter(rx.url, **kw)


# pipelines ----------------------------------------------------------------------------------------


def audit_record(i: int) -> dict[str, Any]:
    outcome = "success" if i % 3 else "failure"
    return {"event_name": "authentication.login.succeeded" if i % 3 else "authentication.login.failed",
            "body": f"login #{i}", "severity_number": SeverityNumber.INFO, "severity_text": "INFO",
            "attributes": {"user.id": f"u-{i % 5}", "audit.outcome": outcome, "client.address": "10.0.0.1", "i": i}}


class Capture(LogRecordProcessor):
    """Keeps the signed records handed downstream, to export them by hand."""

    def __init__(self) -> None:
        self.records: list[ReadWriteLogRecord] = []

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        self.records.append(log_record)

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def pipeline(keys: Path, downstream: LogRecordProcessor, *, checkpoint_every: int = 50
             ) -> tuple[LoggerProvider, SigningProcessor]:
    res = Resource.create({"service.name": "gateway"})
    provider = LoggerProvider(resource=res, shutdown_on_exit=False)
    sp = SigningProcessor(keys, downstream=downstream, checkpoint_every=checkpoint_every, checkpoint_interval=3600,
                          resource=res)
    provider.add_log_record_processor(sp)
    return provider, sp


def run(exporter: WebhookLogExporter, keys: Path, n: int, *, record: Any = audit_record,
        batch: int = 64) -> SigningProcessor:
    """Emit n records through the real pipeline into the exporter and shut it down cleanly."""
    provider, sp = pipeline(keys, BatchLogRecordProcessor(exporter, max_queue_size=n + 1024,
                                                          max_export_batch_size=batch, schedule_delay_millis=50))
    logger = provider.get_logger("otel_audit.tests")
    for i in range(n):
        logger.emit(**record(i))
    provider.shutdown()
    return sp


def signed_records(keys: Path, n: int, record: Any = audit_record) -> list[ReadWriteLogRecord]:
    """n signed events (plus the start checkpoint), as the signing processor hands them downstream."""
    cap = Capture()
    provider, _sp = pipeline(keys, cap)
    logger = provider.get_logger("otel_audit.tests")
    for i in range(n):
        logger.emit(**record(i))
    return list(cap.records)


def verify_stored(rx: WebhookReceiver, ring: Keyring) -> tuple[Report, list[str]]:
    """What the receiver stored -> read_payload -> Verifier: the report and the field mismatches."""
    v = Verifier(ring)
    mismatches: list[str] = []
    for where, payload in rx.payloads():
        back = read_payload(payload, where)
        mismatches.extend(back.mismatches)
        for loc, rec in back.records:
            v.add_record(rec, loc)
    return v.finish(), mismatches


def expected_records(sp: SigningProcessor) -> int:
    return sp.seq  # events plus checkpoints: every seq of the stream


# signatures ---------------------------------------------------------------------------------------


def test_signatures_match_the_reference_vectors() -> None:
    """v1 and v1a entries equal the reference libraries' known answers for the same id, time and body."""
    body = b'{"test": 2432232314}'
    assert signature_header("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body,
                            secrets=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]) \
        == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    # the Go library's asymmetric vector: the key is the base64 of the 32-byte Ed25519 seed
    assert signature_header("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body,
                            signing_key="whsk_VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk=") \
        == "v1a,tQ9V2XOqn7jL/DQenEFpqIugdBVtiMmER5mhSkXBNwM0mkATuDe6KYYUuxqtaiHeYGb7KaaBRdM5WqyeFiL8Ag=="


def test_delivers_signed_batches_the_official_package_verifies(rx: WebhookReceiver, shared_keys: Path,
                                                               keyring: Keyring) -> None:
    """Every record arrives in a signed JSON batch that standardwebhooks verifies, and the stream proves whole."""
    sp = run(exporter_for(rx), shared_keys, 150, batch=64)
    assert len(rx.events()) == expected_records(sp)
    assert rx.messages and all(a.status == 200 for a in rx.attempts)
    for m in rx.messages:
        assert Webhook(SECRET_A).verify(m.body, m.headers) == m.payload
        assert m.id.startswith("msg_") and "." not in m.id
        assert m.headers["content-type"] == "application/json"
        assert m.payload["type"] == PAYLOAD_TYPE
        assert abs(m.timestamp - time.time()) < 60
    ev = next(e for e in rx.events() if e.get("event_name") == "authentication.login.failed")
    assert {"event_name", "time", "severity", "severity_number", "body", "attributes", "audit.otlp"} <= set(ev)
    assert ev["attributes"]["audit.outcome"] == "failure" and ev["resource"]["service.name"] == "gateway"
    rec = orjson.loads(ev["audit.otlp"])
    assert rec["eventName"] == ev["event_name"] and rec["body"] == {"stringValue": ev["body"]}
    report, mismatches = verify_stored(rx, keyring)
    assert report.ok and mismatches == []
    assert report.streams[0].state == "closed"


def test_each_rotated_secret_verifies_alone(shared_keys: Path) -> None:
    """With two secrets configured, a receiver holding either one alone accepts, and a third secret does not."""
    with WebhookReceiver(secrets=[SECRET_B]) as rx:
        run(WebhookLogExporter(rx.url, secrets=[SECRET_A, SECRET_B], retry=FAST), shared_keys, 20)
        assert rx.messages and all(a.status == 200 for a in rx.attempts)
        for m in rx.messages:
            sigs = m.headers["webhook-signature"].split(" ")
            assert [s.split(",")[0] for s in sigs] == ["v1", "v1"]
            Webhook(SECRET_A).verify(m.body, m.headers)
            Webhook(SECRET_B).verify(m.body, m.headers)
            with pytest.raises(WebhookVerificationError, match="No matching signature"):
                Webhook(SECRET_C).verify(m.body, m.headers)


def test_tampered_body_fails_verification(rx: WebhookReceiver, shared_keys: Path) -> None:
    """Changing one byte of a delivered body makes the official package refuse it."""
    run(exporter_for(rx), shared_keys, 5)
    m = rx.messages[0]
    tampered = m.body.replace(b'"login #', b'"logon #', 1)
    assert tampered != m.body
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(SECRET_A).verify(tampered, m.headers)


def test_old_timestamp_fails_per_the_package_tolerance(rx: WebhookReceiver) -> None:
    """A correctly signed message stamped over five minutes ago is refused, by the package and by the receiver."""
    body = b'{"type":"audit.events","timestamp":"2025-01-01T00:00:00.000000000Z","data":[]}'
    for age, ok in ((30, True), (6 * 60, False)):
        ts = int(time.time()) - age
        headers = {"webhook-id": f"msg_old{age}", "webhook-timestamp": str(ts),
                   "webhook-signature": signature_header(f"msg_old{age}", ts, body, secrets=[SECRET_A])}
        if ok:
            Webhook(SECRET_A).verify(body, headers)
        else:
            with pytest.raises(WebhookVerificationError, match="too old"):
                Webhook(SECRET_A).verify(body, headers)
        resp = requests.post(rx.url, data=body, headers={**headers, "Content-Type": "application/json"}, timeout=5)
        assert resp.status_code == (200 if ok else 401)
        if not ok:
            assert "too old" in resp.json()["error"]


def test_v1a_signature_verifies_with_the_public_key(shared_keys: Path, keyring: Keyring) -> None:
    """An Ed25519 signing key adds a v1a entry that verifies with the whpk_ public key alone."""
    public = public_key_of(SIGNING_KEY)
    with WebhookReceiver(public_keys=[public]) as rx:
        exporter = WebhookLogExporter(rx.url, secrets=[SECRET_A], signing_key=SIGNING_KEY, retry=FAST)
        assert exporter.public_key == public
        run(exporter, shared_keys, 30)
        assert rx.messages and all(a.status == 200 for a in rx.attempts)
        pub = Ed25519PublicKey.from_public_bytes(base64.b64decode(public[len("whpk_"):]))
        expected = Ed25519PrivateKey.from_private_bytes(SIGNING_SEED).public_key()
        assert pub.public_bytes_raw() == expected.public_bytes_raw()
        for m in rx.messages:
            entries = m.headers["webhook-signature"].split(" ")
            assert [e.split(",")[0] for e in entries] == ["v1", "v1a"]
            signed = f"{m.id}.{m.timestamp}.".encode() + m.body
            pub.verify(base64.b64decode(entries[1].split(",")[1]), signed)  # raises if wrong
            Webhook(SECRET_A).verify(m.body, m.headers)  # the package skips v1a and checks v1
        report, mismatches = verify_stored(rx, keyring)
        assert report.ok and not mismatches


def test_wrong_secret_is_retried_then_failure_and_kept(shared_keys: Path) -> None:
    """A receiver that cannot verify the signature (401) is retried, then FAILURE with nothing rejected, and the
    same records go through once the secrets agree."""
    records = signed_records(shared_keys, 10)
    with WebhookReceiver(secrets=[SECRET_B]) as rx:
        exporter = exporter_for(rx, secrets=[SECRET_C], retry=GIVE_UP)
        assert exporter.export(records) is LogRecordExportResult.FAILURE
        assert exporter.last_rejected == () and not rx.messages
        assert len(rx.attempts) > 1 and all(a.status == 401 for a in rx.attempts)
        assert exporter.counters.rejected == 0 and exporter.counters.delivered == 0
        assert exporter.counters.failed == len(records)
        reason = exporter.counters.reasons[0]
        assert "401" in reason and "No matching signature found" in reason and "check secrets" in reason
        fixed = exporter_for(rx, secrets=[SECRET_B])
        assert fixed.export(records) is LogRecordExportResult.SUCCESS and fixed.last_rejected == ()
        assert len(rx.events()) == len(records)


@pytest.mark.parametrize("status", [401, 403])
def test_credential_refusal_is_failure_never_rejection(rx: WebhookReceiver, shared_keys: Path, status: int) -> None:
    """A 401 or 403 is retried with backoff, then FAILURE with last_rejected empty; after the receiver accepts
    again the same records are delivered."""
    records = signed_records(shared_keys, 10)
    rx.fail_requests(status, times=1000, body={"error": "token revoked"})
    exporter = exporter_for(rx, retry=GIVE_UP)
    assert exporter.export(records) is LogRecordExportResult.FAILURE
    assert exporter.last_rejected == () and exporter.counters.rejected == 0
    assert exporter.counters.delivered == 0 and exporter.counters.retries >= 1 and not rx.messages
    assert f"HTTP {status}" in exporter.counters.reasons[0] and "token revoked" in exporter.counters.reasons[0]
    rx.clear_faults()
    assert exporter.export(records) is LogRecordExportResult.SUCCESS and exporter.last_rejected == ()
    assert exporter.counters.delivered == len(records)
    assert sorted(ev["attributes"][STREAM_SEQ] for ev in rx.events()) == list(range(len(records)))


# retries and idempotency --------------------------------------------------------------------------


def test_webhook_id_is_stable_across_retries_and_the_timestamp_is_fresh(rx: WebhookReceiver,
                                                                         shared_keys: Path) -> None:
    """A 429 with Retry-After is honoured; the retry keeps the webhook-id and is signed at its own time."""
    records = signed_records(shared_keys, 10)
    rx.fail_requests(429, times=1, retry_after="1")
    exporter = exporter_for(rx)
    assert exporter.export(records) is LogRecordExportResult.SUCCESS
    first, second = rx.attempts
    assert (first.status, second.status) == (429, 200)
    assert first.id == second.id == rx.messages[0].id
    assert second.at - first.at >= 1.0
    assert int(second.timestamp) > int(first.timestamp)  # type: ignore[arg-type]
    assert first.signature != second.signature
    assert exporter.counters.retries == 1 and exporter.counters.delivered == len(records)


def test_same_batch_gets_the_same_id_and_is_stored_once(rx: WebhookReceiver, shared_keys: Path) -> None:
    """Exporting the same records again (a spool replay) sends the same webhook-id, which the receiver dedupes."""
    records = signed_records(shared_keys, 10)
    exporter = exporter_for(rx)
    assert exporter.export(records) is LogRecordExportResult.SUCCESS
    assert exporter.export(records) is LogRecordExportResult.SUCCESS
    assert len(rx.attempts) == 2 and rx.attempts[0].id == rx.attempts[1].id
    assert len(rx.messages) == 1 and rx.duplicates == 1


def test_lost_acknowledgement_is_deduplicated_by_webhook_id(rx: WebhookReceiver, shared_keys: Path,
                                                            keyring: Keyring) -> None:
    """A message stored but answered 500 is sent again with its id; the receiver keeps one copy."""
    rx.fail_after_store(2)
    sp = run(exporter_for(rx), shared_keys, 100)
    assert rx.duplicates == 2
    assert len(rx.events()) == expected_records(sp)
    report, _ = verify_stored(rx, keyring)
    assert report.ok and report.streams[0].duplicates == 0


def test_receiver_slower_than_the_timeout_stores_the_message_once(rx: WebhookReceiver, shared_keys: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    """A timed-out attempt that the receiver did store is retried and deduplicated, not stored twice."""
    records = signed_records(shared_keys, 10)
    rx.slow(1.0, times=1)
    exporter = exporter_for(rx, timeout=0.3)
    with caplog.at_level(logging.WARNING, logger="otel_audit.exporters"):
        assert exporter.export(records) is LogRecordExportResult.SUCCESS
    assert len(rx.messages) == 1 and rx.duplicates >= 1
    assert len({a.id for a in rx.attempts}) == 1
    assert exporter.counters.retries >= 1 and "Timeout" in caplog.text


def test_server_errors_are_retried_until_delivered(rx: WebhookReceiver, shared_keys: Path) -> None:
    """500, 502, 503 and 504 are retried with backoff, and the batch then arrives once."""
    records = signed_records(shared_keys, 10)
    for status in (500, 502, 503, 504):
        rx.fail_requests(status)
    exporter = exporter_for(rx)
    assert exporter.export(records) is LogRecordExportResult.SUCCESS
    assert rx.statuses() == [500, 502, 503, 504, 200]
    assert exporter.counters.retries == 4 and len(rx.messages) == 1


def test_connection_refused_is_retried_until_the_receiver_is_back(rx: WebhookReceiver, shared_keys: Path) -> None:
    """While nothing listens the exporter keeps retrying, and delivers once the receiver is back."""
    records = signed_records(shared_keys, 10)
    exporter = exporter_for(rx)
    rx.go_down()
    threading.Timer(1.0, rx.come_up).start()
    assert exporter.export(records) is LogRecordExportResult.SUCCESS
    assert exporter.counters.retries >= 2 and len(rx.messages) == 1


def test_shutdown_interrupts_retries(rx: WebhookReceiver, shared_keys: Path) -> None:
    """shutdown() ends a retry wait at once; the records are counted as failed."""
    records = signed_records(shared_keys, 5)
    exporter = exporter_for(rx, retry=RetrySettings(initial_interval=30, max_elapsed_time=600))
    rx.go_down()
    results: list[LogRecordExportResult] = []
    t = threading.Thread(target=lambda: results.append(exporter.export(records)))
    t.start()
    time.sleep(0.3)
    started = time.monotonic()
    exporter.shutdown()
    t.join(5)
    assert time.monotonic() - started < 3
    assert results == [LogRecordExportResult.FAILURE] and exporter.counters.failed == len(records)


@pytest.mark.slow
def test_outage_of_30s_mid_stream_loses_nothing(rx: WebhookReceiver, shared_keys: Path, keyring: Keyring,
                                                tmp_path: Path) -> None:
    """10k records with the receiver down for 30 s in the middle: all arrive (duplicates at most) and verify."""
    exporter = exporter_for(rx, retry=RetrySettings(initial_interval=0.2, max_interval=2, max_elapsed_time=120))
    provider, sp = pipeline(shared_keys, BatchLogRecordProcessor(exporter, max_queue_size=20_000,
                                                                 max_export_batch_size=256,
                                                                 schedule_delay_millis=50),
                            checkpoint_every=500)
    logger = provider.get_logger("otel_audit.tests")
    n = 10_000
    for i in range(3000):
        logger.emit(**mixed_record(i))
    time.sleep(0.5)
    rx.go_down()
    down_at = time.monotonic()
    for i in range(3000, 7000):  # emitted during the outage, over about ten seconds
        logger.emit(**mixed_record(i))
        if i % 400 == 0:
            time.sleep(1)
    time.sleep(max(0.0, 30 - (time.monotonic() - down_at)))
    rx.come_up()
    for i in range(7000, n):
        logger.emit(**mixed_record(i))
    provider.shutdown()

    assert exporter.counters.failed == 0 and exporter.counters.rejected == 0
    assert exporter.counters.retries > 5
    report, mismatches = verify_stored(rx, keyring)
    assert report.ok, report.problems
    (stream,) = report.streams
    assert stream.missing == [] and stream.state == "closed" and stream.events == n
    assert not mismatches
    # the same data through `otel-audit verify`: OTLP JSON lines of the stored records
    lines = tmp_path / "webhook.jsonl"
    with lines.open("wb") as fh:
        for where, payload in rx.payloads():
            recs = [rec for _loc, rec in read_payload(payload, where).records]
            fh.write(orjson.dumps({"resourceLogs": [{"resource": {}, "scopeLogs": [{"logRecords": recs}]}]}) + b"\n")
    assert cli.main(["verify", str(lines), "--keys", str(shared_keys), "--no-progress"]) == 0


# permanent failures -------------------------------------------------------------------------------


def test_410_gone_disables_the_endpoint_loudly(rx: WebhookReceiver, shared_keys: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    """After 410 Gone the exporter is disabled: an ERROR, then every export fails at once, counted and logged."""
    records = signed_records(shared_keys, 10)
    exporter = exporter_for(rx)
    rx.gone()
    with caplog.at_level(logging.ERROR, logger="otel_audit.exporters"):
        assert exporter.export(records) is LogRecordExportResult.FAILURE
        assert exporter.disabled
        assert any("410 Gone" in r.getMessage() and "DISABLED" in r.getMessage() for r in caplog.records)
        assert exporter.last_rejected == ()  # a durable spool keeps them for when the endpoint is fixed
        assert rx.statuses() == [410]
        caplog.clear()
        for _ in range(3):
            assert exporter.export(records[:4]) is LogRecordExportResult.FAILURE
        assert rx.statuses() == [410]  # nothing more was sent
        disabled_logs = [r for r in caplog.records if "DISABLED" in r.getMessage()]
        assert len(disabled_logs) == 3 and all(r.levelno == logging.ERROR for r in disabled_logs)
        assert "4 audit record(s) not sent" in disabled_logs[0].getMessage()
    assert exporter.counters.failed == len(records) + 12 and exporter.refused_while_disabled == 12
    assert exporter.counters.rejected == 0 and exporter.counters.delivered == 0
    assert "DISABLED" in repr(exporter)
    rx.clear_faults()
    exporter.enable()
    assert exporter.export(records) is LogRecordExportResult.SUCCESS and not exporter.disabled


def test_410_keeps_records_in_a_durable_spool_until_enabled(rx: WebhookReceiver, shared_keys: Path,
                                                            keyring: Keyring, tmp_path: Path) -> None:
    """Behind the spool, records met by 410 stay spooled and all arrive once the endpoint is enabled again."""
    exporter = exporter_for(rx)
    spool = SpoolProcessor(tmp_path / "spool", {"webhook": exporter}, retry_initial=0.05, retry_max=0.2)
    provider, sp = pipeline(shared_keys, spool)
    rx.gone()
    logger = provider.get_logger("otel_audit.tests")
    for i in range(40):
        logger.emit(**audit_record(i))
    deadline = time.monotonic() + 10
    while exporter.refused_while_disabled < 3 * 40 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert exporter.disabled and exporter.refused_while_disabled >= 3 * 40
    assert rx.statuses()[-1] == 410 and rx.statuses().count(410) == 1  # nothing sent after the 410
    rx.clear_faults()
    exporter.enable()
    provider.shutdown()
    report, mismatches = verify_stored(rx, keyring)
    assert report.ok and not mismatches and report.streams[0].events == 40
    assert len({ev["attributes"][STREAM_SEQ] for ev in rx.events()}) == expected_records(sp)


def test_410_in_a_split_batch_stops_the_rest(rx: WebhookReceiver, shared_keys: Path) -> None:
    """When 410 arrives for the first message of a batch, its other messages are not sent."""
    records = signed_records(shared_keys, 30)
    exporter = exporter_for(rx, max_batch_size=10)
    rx.gone()
    assert exporter.export(records) is LogRecordExportResult.FAILURE
    assert rx.statuses() == [410] and exporter.counters.failed == len(records)


def test_client_error_on_one_record_rejects_it_with_the_receivers_text(rx: WebhookReceiver, shared_keys: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    """A 400 for a message of one record is not retried: its index is in last_rejected, logged with the receiver's
    words, trimmed, and the export is SUCCESS."""
    records = signed_records(shared_keys, 3)
    rx.fail_requests(400, body={"error": "schema check failed: data[0].attributes " + "x" * 2000})
    exporter = exporter_for(rx, max_batch_size=1)
    with caplog.at_level(logging.ERROR, logger="otel_audit.exporters"):
        assert exporter.export(records) is LogRecordExportResult.SUCCESS
    assert rx.statuses() == [400] + [200] * (len(records) - 1) and exporter.last_rejected == (0,)
    assert exporter.counters.rejected == 1 and exporter.counters.delivered == len(records) - 1
    reason = exporter.counters.reasons[0]
    assert "HTTP 400" in reason and "schema check failed" in reason and len(reason) < 500
    assert any("schema check failed" in r.getMessage() for r in caplog.records)


def test_client_error_on_several_records_splits_the_message(rx: WebhookReceiver, shared_keys: Path) -> None:
    """A 400 for a message of several records splits it in halves; records that go through on their own are
    delivered and nothing is rejected."""
    records = signed_records(shared_keys, 10)
    rx.fail_requests(400, body={"error": "schema check failed"})
    exporter = exporter_for(rx)
    assert exporter.export(records) is LogRecordExportResult.SUCCESS
    assert rx.statuses() == [400, 200, 200] and exporter.last_rejected == ()
    assert [len(m.payload["data"]) for m in rx.messages] == [5, 6]
    assert exporter.counters.delivered == len(records) and exporter.counters.rejected == 0


def test_redirect_is_not_followed(rx: WebhookReceiver, shared_keys: Path) -> None:
    """A 308 is a failure to fix the URL, never followed and never a rejection: the new location receives nothing."""
    records = signed_records(shared_keys, 5)
    with WebhookReceiver(secrets=[SECRET_A]) as other:
        rx.redirect(other.url)
        exporter = exporter_for(rx, retry=GIVE_UP)
        assert exporter.export(records) is LogRecordExportResult.FAILURE
        assert set(rx.statuses()) == {308} and other.attempts == [] and exporter.last_rejected == ()
        assert "not followed" in exporter.counters.reasons[0] and other.url in exporter.counters.reasons[0]


def test_message_over_the_receivers_limit_is_split(shared_keys: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A 413 for a message of several records splits it until the parts fit; all are delivered."""
    records = signed_records(shared_keys, 40)
    with WebhookReceiver(secrets=[SECRET_A], max_body_bytes=4096) as rx:
        exporter = exporter_for(rx)
        with caplog.at_level(logging.WARNING, logger="otel_audit.exporters"):
            assert exporter.export(records) is LogRecordExportResult.SUCCESS and exporter.last_rejected == ()
        assert rx.statuses()[0] == 413
        assert any("lower max_body_bytes" in r.getMessage() for r in caplog.records)
        assert exporter.counters.rejected == 0 and len(rx.events()) == len(records)


def test_a_record_over_the_receivers_limit_is_rejected_alone(shared_keys: Path) -> None:
    """A record that alone is above the receiver's size limit (413) is in last_rejected; the others are delivered
    and the export is SUCCESS."""
    def record(i: int) -> dict[str, Any]:
        rec = audit_record(i)
        if i == 2:
            rec["body"] = "x" * 8000
        return rec

    records = signed_records(shared_keys, 6, record=record)
    big = next(i for i, r in enumerate(records) if r.log_record.body == "x" * 8000)
    with WebhookReceiver(secrets=[SECRET_A], max_body_bytes=4096) as rx:
        exporter = exporter_for(rx)
        assert exporter.export(records) is LogRecordExportResult.SUCCESS
        assert exporter.last_rejected == (big,) and exporter.counters.rejected == 1
        assert exporter.counters.delivered == len(records) - 1
        assert "HTTP 413" in exporter.counters.reasons[-1]
        seqs = {ev["attributes"][STREAM_SEQ] for ev in rx.events()}
        assert records[big].log_record.attributes[STREAM_SEQ] not in seqs and len(seqs) == len(records) - 1


# batching and compression -------------------------------------------------------------------------


def test_messages_respect_max_batch_size_and_max_body_bytes(shared_keys: Path, keyring: Keyring) -> None:
    """No message holds more than max_batch_size records or more than max_body_bytes of payload."""
    with WebhookReceiver(secrets=[SECRET_A], max_body_bytes=6000) as rx:
        sp = run(exporter_for(rx, max_batch_size=7, max_body_bytes=6000), shared_keys, 300, record=mixed_record)
        assert all(a.status == 200 for a in rx.attempts)
        assert max(len(m.payload["data"]) for m in rx.messages) <= 7
        assert max(len(m.body) for m in rx.messages) <= 6000
        assert len(rx.events()) == expected_records(sp)
        report, mismatches = verify_stored(rx, keyring)
        assert report.ok and not mismatches
    with WebhookReceiver(secrets=[SECRET_A]) as rx:
        run(exporter_for(rx, max_body_bytes=4096), shared_keys, 100, batch=100)  # a checkpoint is ~2.8 kB
        sizes = [len(m.body) for m in rx.messages]
        assert max(sizes) <= 4096 and len(sizes) > 10


def test_gzip_bodies_are_signed_before_compression(shared_keys: Path, keyring: Keyring) -> None:
    """With gzip the receiver decodes the body and then verifies it; one that refuses gzip answers 415."""
    with WebhookReceiver(secrets=[SECRET_A]) as rx:
        sp = run(exporter_for(rx, compression="gzip"), shared_keys, 100)
        assert rx.attempts and all(a.gzip and a.status == 200 for a in rx.attempts)
        assert len(rx.events()) == expected_records(sp)
        assert verify_stored(rx, keyring)[0].ok
    with WebhookReceiver(secrets=[SECRET_A], accept_gzip=False) as rx:
        exporter = exporter_for(rx, compression="gzip", retry=GIVE_UP)
        assert exporter.export(signed_records(shared_keys, 5)) is LogRecordExportResult.FAILURE
        assert set(rx.statuses()) == {415} and exporter.last_rejected == ()  # a setting, not the records
        assert "Content-Encoding gzip" in exporter.counters.reasons[0]


def test_compression_is_off_by_default(rx: WebhookReceiver, shared_keys: Path) -> None:
    """Bodies are plain JSON unless gzip is asked for."""
    run(exporter_for(rx), shared_keys, 10)
    assert rx.attempts and not any(a.gzip for a in rx.attempts)
    assert "content-encoding" not in rx.messages[0].headers


# reading back -------------------------------------------------------------------------------------


def test_round_trip_detects_tampering_at_rest(rx: WebhookReceiver, shared_keys: Path, keyring: Keyring) -> None:
    """Stored data verifies; an altered audit.otlp fails naming the seq; an altered searchable field is reported."""
    run(exporter_for(rx), shared_keys, 120, record=mixed_record)
    report, mismatches = verify_stored(rx, keyring)
    assert report.ok and not mismatches

    target = next(ev for ev in rx.events() if ev.get("event_name") != CHECKPOINT_EVENT
                  and ev["attributes"][STREAM_SEQ] == 40)
    original = target["audit.otlp"]
    rec = orjson.loads(original)
    rec["severityText"] = "DEBUG"  # a quiet edit inside the signed record
    target["audit.otlp"] = orjson.dumps(rec).decode()
    report, _ = verify_stored(rx, keyring)
    assert not report.ok and 40 in report.streams[0].modified

    target["audit.otlp"] = original
    target["attributes"]["user.id"] = "someone-else"
    target["event_name"] = "session.ended.quietly"
    report, mismatches = verify_stored(rx, keyring)
    assert report.ok  # the signed record is intact ...
    assert any("attributes.user.id" in m and "(seq 40)" in m for m in mismatches)  # ... the searchable field is not
    assert any("event_name" in m and "(seq 40)" in m for m in mismatches)


def test_read_payload_reports_events_without_a_signed_record(rx: WebhookReceiver, shared_keys: Path,
                                                             keyring: Keyring) -> None:
    """An event stripped of audit.otlp is reported by read_payload, and its seq is missing for the verifier."""
    run(exporter_for(rx), shared_keys, 60)
    victim = rx.events()[10]
    seq = victim["attributes"][STREAM_SEQ]
    del victim["audit.otlp"]
    report, mismatches = verify_stored(rx, keyring)
    assert any("no readable audit.otlp" in m for m in mismatches)
    assert not report.ok and [seq, seq] in report.streams[0].missing


def test_read_payload_tolerates_numbers_retyped_as_text(rx: WebhookReceiver, shared_keys: Path) -> None:
    """A store that keeps audit.stream.seq as a string causes no mismatch; a different time does."""
    run(exporter_for(rx), shared_keys, 5)
    where, payload = rx.payloads()[0]
    ev = payload["data"][1]
    ev["attributes"][STREAM_SEQ] = str(ev["attributes"][STREAM_SEQ])
    assert read_payload(orjson.dumps(payload), where).mismatches == []
    ev["time"] = "2001-01-01T00:00:00.000000000Z"
    (mismatch,) = read_payload(payload, where).mismatches
    assert "time is '2001-01-01" in mismatch


# configuration ------------------------------------------------------------------------------------


def test_env_only_construction(rx: WebhookReceiver, shared_keys: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no arguments the exporter is configured from OTEL_AUDIT_WEBHOOK_* alone, as the entry point builds it."""
    monkeypatch.setenv(ENV_ENDPOINT, rx.url)
    monkeypatch.setenv(ENV_SECRETS, f"{SECRET_C}, {SECRET_A}")
    monkeypatch.setenv("OTEL_AUDIT_WEBHOOK_SIGNING_KEY", SIGNING_KEY)
    monkeypatch.setenv("OTEL_AUDIT_WEBHOOK_MAX_BATCH_SIZE", "5")
    monkeypatch.setenv("OTEL_AUDIT_WEBHOOK_TIMEOUT", "2s")
    monkeypatch.setenv("OTEL_AUDIT_WEBHOOK_COMPRESSION", "gzip")
    monkeypatch.setenv("OTEL_AUDIT_WEBHOOK_HEADERS", "x-tenant=acme%20corp")
    exporter = WebhookLogExporter()
    assert exporter.timeout == 2.0 and exporter.max_batch_size == 5 and exporter.compression
    assert exporter.public_key == public_key_of(SIGNING_KEY)
    exporter.retry = FAST
    assert exporter.export(signed_records(shared_keys, 12)) is LogRecordExportResult.SUCCESS
    assert [len(m.payload["data"]) for m in rx.messages] == [5, 5, 3]
    m = rx.messages[0]
    assert m.headers["x-tenant"] == "acme corp" and rx.attempts[0].gzip
    assert [e.split(",")[0] for e in m.headers["webhook-signature"].split(" ")] == ["v1", "v1", "v1a"]


def test_bad_env_values_warn_and_fall_back(rx: WebhookReceiver, monkeypatch: pytest.MonkeyPatch,
                                           caplog: pytest.LogCaptureFixture) -> None:
    """Unusable env values are named in a warning (never a secret's value) and the defaults are used."""
    bad_secret = "whsec_not*base64*but-secret-looking"
    monkeypatch.setenv(ENV_ENDPOINT, rx.url)
    monkeypatch.setenv(ENV_SECRETS, f"{bad_secret} {SECRET_A}")
    monkeypatch.setenv("OTEL_AUDIT_WEBHOOK_MAX_BATCH_SIZE", "zero")
    monkeypatch.setenv("OTEL_AUDIT_WEBHOOK_MAX_BODY_BYTES", "12")
    monkeypatch.setenv("OTEL_AUDIT_WEBHOOK_TIMEOUT", "soon")
    monkeypatch.setenv("OTEL_AUDIT_WEBHOOK_COMPRESSION", "brotli")
    monkeypatch.setenv("OTEL_AUDIT_WEBHOOK_SIGNING_KEY", "whpk_" + "A" * 43)
    with caplog.at_level(logging.WARNING):
        exporter = WebhookLogExporter()
    assert (exporter.max_batch_size, exporter.max_body_bytes, exporter.timeout, exporter.compression) \
        == (100, 1_000_000, 15.0, False)
    assert exporter.public_key is None
    text = caplog.text
    for name in ("SECRETS", "MAX_BATCH_SIZE", "MAX_BODY_BYTES", "TIMEOUT", "COMPRESSION", "SIGNING_KEY"):
        assert f"OTEL_AUDIT_WEBHOOK_{name}" in text
    assert bad_secret not in text and "not*base64" not in text


def test_env_without_endpoint_or_secret_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an endpoint, or without any usable secret, construction fails naming the variable to set."""
    with pytest.raises(ConfigError, match=ENV_ENDPOINT):
        WebhookLogExporter()
    monkeypatch.setenv(ENV_ENDPOINT, "https://hooks.example.com/audit")
    with pytest.raises(ConfigError, match=ENV_SECRETS):
        WebhookLogExporter()
    monkeypatch.setenv(ENV_SECRETS, "whsec_short")
    with pytest.raises(ConfigError, match=ENV_SECRETS):
        WebhookLogExporter()


def test_from_config_builds_a_working_exporter(rx: WebhookReceiver, shared_keys: Path) -> None:
    """A collector-shaped block, with client-tuning keys the collector has, builds a delivering exporter."""
    exporter = WebhookLogExporter.from_config({
        "endpoint": rx.url,
        "secrets": [SECRET_B, SECRET_A],
        "signing_key": SIGNING_KEY,
        "max_batch_size": 4,
        "max_body_bytes": 200_000,
        "compression": "none",
        "timeout": "3s",
        "headers": {"Authorization": TOKEN},
        "retry_on_failure": {"enabled": True, "initial_interval": "50ms", "max_interval": "200ms"},
        "tls": {"insecure_skip_verify": False},
        "max_idle_conns": 10,
        "sending_queue": {"enabled": False},
    }, where="exporters.webhook")
    assert exporter.timeout == 3.0 and exporter.max_batch_size == 4 and exporter.retry.initial_interval == 0.05
    rx.fail_requests(503)
    assert exporter.export(signed_records(shared_keys, 8)) is LogRecordExportResult.SUCCESS
    assert len(rx.messages) == 3 and rx.messages[0].headers["authorization"] == TOKEN


def test_from_config_ignores_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A config block is complete: OTEL_AUDIT_WEBHOOK_* variables do not add to it."""
    monkeypatch.setenv(ENV_SECRETS, SECRET_C)
    monkeypatch.setenv("OTEL_AUDIT_WEBHOOK_SIGNING_KEY", SIGNING_KEY)
    monkeypatch.setenv("OTEL_AUDIT_WEBHOOK_TIMEOUT", "2s")
    monkeypatch.setenv("OTEL_AUDIT_WEBHOOK_HEADERS", "x-extra=1")
    exporter = WebhookLogExporter.from_config({"endpoint": "https://hooks.example.com/a", "secrets": [SECRET_A]},
                                              where="x")
    assert exporter.public_key is None and exporter.timeout == 15.0 and exporter.extra_headers == {}
    assert "secrets=1" in repr(exporter)


@pytest.mark.parametrize(("cfg", "key", "hint"), [
    ({"secrets": [SECRET_A]}, "endpoint", "missing"),
    ({"endpoint": "ftp://x/y", "secrets": [SECRET_A]}, "endpoint", "not an http(s) URL"),
    ({"endpoint": "https://u:pw@x/y", "secrets": [SECRET_A]}, "endpoint", "credentials in the URL"),
    ({"endpoint": "https://x/y"}, "secrets", "missing"),
    ({"endpoint": "https://x/y", "secrets": 42}, "secrets", "expected a list"),
    ({"endpoint": "https://x/y", "secrets": [SECRET_A, "sk_live_abcdef"]}, "secrets[1]",
     "does not start with 'whsec_'"),
    ({"endpoint": "https://x/y", "secrets": ["whsec_@@not-base64@@"]}, "secrets[0]", "not base64"),
    ({"endpoint": "https://x/y", "secrets": ["whsec_c2hvcnQ="]}, "secrets[0]", "holds 5 bytes"),
    ({"endpoint": "https://x/y", "secrets": [SECRET_A, SECRET_A]}, "secrets[1]", "repeats"),
    ({"endpoint": "https://x/y", "secrets": [SIGNING_KEY]}, "secrets[0]", "Ed25519 key"),
    ({"endpoint": "https://x/y", "signing_key": public_key_of(SIGNING_KEY)}, "signing_key", "public key"),
    ({"endpoint": "https://x/y", "signing_key": "whsk_AAAA"}, "signing_key", "holds 3 bytes"),
    ({"endpoint": "https://x/y", "signing_key": SECRET_A}, "signing_key", "HMAC secret"),
    ({"endpoint": "https://x/y", "secrets": [SECRET_A], "max_batch_size": 0}, "max_batch_size", "at least 1"),
    ({"endpoint": "https://x/y", "secrets": [SECRET_A], "max_body_bytes": 100}, "max_body_bytes", "at least 1024"),
    ({"endpoint": "https://x/y", "secrets": [SECRET_A], "compression": "zstd"}, "compression", "none or gzip"),
    ({"endpoint": "https://x/y", "secrets": [SECRET_A], "headers": {"Webhook-Signature": "v1,x"}}, "headers",
     "set by the exporter"),
    ({"endpoint": "https://x/y", "secrets": [SECRET_A], "timeout": "soon"}, "timeout", "not a duration"),
    ({"endpoint": "https://x/y", "secrets": [SECRET_A], "retry_on_failure": {"tries": 3}}, "retry_on_failure.tries",
     "unknown key"),
    ({"endpoint": "https://x/y", "secrets": [SECRET_A], "auth": {"authenticator": "basic"}}, "auth",
     "not available"),
    ({"endpoint": "https://x/y", "secrets": [SECRET_A], "secret": SECRET_B}, "secret", "unknown key"),
    ({"endpoint": "https://x/y", "secrets": [SECRET_A], "proxy_url": "socks://p"}, "proxy_url", "http(s)"),
])
def test_config_errors_name_the_key(cfg: dict[str, Any], key: str, hint: str) -> None:
    """Each bad setting raises ConfigError naming `where.key` and what is wrong, never a secret's value."""
    with pytest.raises(ConfigError) as err:
        WebhookLogExporter.from_config(cfg, where="exporters.webhook/siem")
    text = str(err.value)
    assert text.startswith(f"exporters.webhook/siem.{key}:"), text
    assert hint in text, text
    for secret in (SECRET_A, SECRET_B, SIGNING_KEY, "sk_live_abcdef", "@@not-base64@@", "c2hvcnQ"):
        assert secret not in text and secret.split("_", 1)[-1] not in text


def test_no_secret_in_logs_errors_or_reprs(shared_keys: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Secrets, the signing key, header values and a token in the URL never reach logs, reasons or reprs."""
    query_token = "qs-t0ken-never-logged"
    records = signed_records(shared_keys, 6)
    texts: list[str] = []
    # 401 is retried until max_elapsed_time (a credential refusal says nothing about the records); a
    # second of it logs the refusal several times, where FAST's 30 s made each 401 export take 30 s.
    brief = RetrySettings(initial_interval=0.05, max_interval=0.3, max_elapsed_time=1, randomization_factor=0)
    with caplog.at_level(logging.DEBUG):
        with WebhookReceiver(secrets=[SECRET_B]) as rx:  # cannot verify: 401
            exporter = WebhookLogExporter(f"{rx.url}?token={query_token}", secrets=[SECRET_A, SECRET_C],
                                          signing_key=SIGNING_KEY, headers={"Authorization": TOKEN}, retry=brief)
            exporter.export(records)
            rx.fail_requests(503, times=2)
            exporter.export(records)
            rx.gone()
            exporter.export(records)
            exporter.export(records)
            texts += [repr(exporter), str(exporter), repr(exporter.session), str(exporter.counters)]
            port = rx.port
        down = WebhookLogExporter(f"http://127.0.0.1:{port}/webhook?token={query_token}", secrets=[SECRET_A],
                                  retry=RetrySettings(initial_interval=0.05, max_elapsed_time=0.3))
        assert down.export(records) is LogRecordExportResult.FAILURE  # connection refused, logged
        for bad in ({"secrets": [SECRET_A + "!"]}, {"signing_key": SIGNING_KEY + "$"}):
            with pytest.raises(ConfigError) as err:
                WebhookLogExporter.from_config({"endpoint": "https://x/y", **bad}, where="w")
            texts.append(str(err.value))
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("otel_audit"))
    blob = "\n".join([*texts, ours])
    assert "410" in ours and "401" in ours and "ConnectionError" in ours  # the failures were logged ...
    for secret in (SECRET_A, SECRET_C, SIGNING_KEY, TOKEN, query_token):
        assert secret not in blob  # ... without any secret
        assert secret.split("_", 1)[-1] not in blob
    # urllib3's own DEBUG lines show the request line (hence the query), never headers
    everything = caplog.text
    for secret in (SECRET_A, SECRET_C, SIGNING_KEY, TOKEN):
        assert secret.split("_", 1)[-1] not in everything


def test_signature_header_refuses_an_id_with_a_dot() -> None:
    """A webhook id with '.' would make the signed content ambiguous, so it is refused."""
    with pytest.raises(ValueError, match="no '.'"):
        signature_header("msg.1", 1, b"{}", secrets=[SECRET_A])


def test_payload_timestamp_and_id_are_deterministic(shared_keys: Path) -> None:
    """The same records always give the same payload and webhook-id; the payload time is the first record's."""
    records = signed_records(shared_keys, 3)
    a = WebhookLogExporter("https://x/y", secrets=[SECRET_A])
    b = WebhookLogExporter("https://x/y", secrets=[SECRET_B], compression="gzip")
    (ra,) = a._requests(records)
    (rb,) = b._requests(records)
    assert ra.headers["webhook-id"] == rb.headers["webhook-id"]
    assert gzip.decompress(rb.body) == ra.body
    payload = orjson.loads(ra.body)
    assert payload["timestamp"] == payload["data"][0]["time"]



# fork safety --------------------------------------------------------------------------------------


def test_a_forked_child_delivers_through_its_own_connection(rx: WebhookReceiver, shared_keys: Path) -> None:
    """After os.fork() the child sends through a fresh session on a new TCP connection, the parent keeps its
    own pool, and the deliveries of both arrive."""
    records = signed_records(shared_keys, 5)
    exporter = exporter_for(rx)
    assert exporter.export(records[:2]) is LogRecordExportResult.SUCCESS
    child = export_in_forked_child(exporter, records[2:4])
    assert child["exit_code"] == 0 and child["result"] == "SUCCESS" and child["fresh_session"], child
    assert exporter.export(records[4:]) is LogRecordExportResult.SUCCESS
    assert len(rx.client_ports) == 2 and rx.client_ports[0] != rx.client_ports[1]  # the parent reused its own
    assert sorted(ev["attributes"][STREAM_SEQ] for ev in rx.events()) == list(range(len(records)))
