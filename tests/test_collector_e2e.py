"""Signed audit records through the real, stock OpenTelemetry Collector, verified at the far end.

Starts collector processes (the binary collector-config/build.sh builds from the official
modules) on free loopback ports. The producer runs in this process: LoggerProvider ->
SigningProcessor -> BatchLogRecordProcessor -> OTLP/HTTP exporter. The archives the
collectors write are checked with `python -m otel_audit.cli verify`, as an auditor would.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from collector import CONFIG_DIR, Collector
from conftest import Archive, attr_value, child_env, is_checkpoint, mixed_record, seq_of, set_attr, verify
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from otel_audit import keys
from otel_audit.keys import Keyring
from otel_audit.processors.signing import SigningProcessor

KEY_NAME = "collector-e2e"

#: The first path: OTLP/HTTP in, a resource attribute added in transit, batched, written as
#: OTLP JSON lines. Ports and paths come from the environment the harness sets.
ARCHIVE_CONFIG = """
extensions:
  health_check:
receivers:
  otlp:
    protocols:
      http:
        endpoint: ${env:OTLP_HTTP}
processors:
  resource:
    attributes:
      - key: collector.e2e
        value: added-in-transit
        action: upsert
  batch:
    timeout: 200ms
    send_batch_size: 128
exporters:
  file:
    path: ${env:ARCHIVE}
    format: json
    append: true
    flush_interval: 100ms
service:
  extensions: [health_check]
  pipelines:
    logs:
      receivers: [otlp]
      processors: [resource, batch]
      exporters: [file]
"""


@dataclass
class Produced:
    stream_id: str
    length: int  # seqs the stream holds, checkpoints included


def produce(
    endpoint: str, keys_dir: Path, n: int, *, pause_every: int = 0, pause_s: float = 0.0,
    progress: list[int] | None = None,
) -> Produced:
    """Emit n signed mixed records to an OTLP/HTTP endpoint (base URL), then shut down cleanly."""
    exporter = OTLPLogExporter(endpoint=f"{endpoint}/v1/logs", timeout=30)
    # A queue deep enough that a collector restart (exports stalled, retrying) drops nothing here.
    batch = BatchLogRecordProcessor(
        exporter, max_queue_size=100_000, max_export_batch_size=64, schedule_delay_millis=50
    )
    resource = Resource.create({"service.name": "collector-e2e", "service.instance.id": "producer-1"})
    provider = LoggerProvider(resource=resource)
    sp = SigningProcessor(keys_dir, downstream=batch, checkpoint_every=50, checkpoint_interval=3600.0,
                          resource=resource)
    provider.add_log_record_processor(sp)
    logger = provider.get_logger("otel_audit.tests.collector")
    for i in range(n):
        logger.emit(**mixed_record(i))
        if progress is not None:
            progress.append(i)
        if pause_every and i % pause_every == pause_every - 1:
            time.sleep(pause_s)
    provider.shutdown()  # end checkpoint, flush, exporter shutdown
    return Produced(sp.stream_id, sp.seq)


def cli_verify(keys_dir: Path, *paths: Path, fmt: str = "text") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "otel_audit.cli", "verify", "--no-progress", "--format", fmt,
         "--keys", str(keys_dir / keys.KEYRING_FILE), *map(str, paths)],
        capture_output=True, text=True, env=child_env(), timeout=120, check=False,
    )


def wait_until_verified(paths: list[Path], ring: Keyring, stream_id: str, length: int, timeout: float) -> None:
    """Poll until every seq of the stream has arrived (the collectors forward asynchronously)."""
    deadline = time.monotonic() + timeout
    last = "no archive yet"
    while time.monotonic() < deadline:
        present = [p for p in paths if p.exists() and p.stat().st_size > 0]
        if present:
            rep = verify(present, ring)
            s = next((s for s in rep.streams if s.stream_id == stream_id), None)
            if s is not None and s.records == length and rep.ok:
                return
            last = json.dumps(s.to_json() if s else rep.to_json())[:2000]
        time.sleep(0.5)
    raise AssertionError(f"stream {stream_id} did not arrive whole in {timeout:.0f}s; last report: {last}")


@pytest.fixture(scope="module")
def e2e_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("collector-keys")
    keys.generate(d, KEY_NAME)
    return d


@pytest.fixture(scope="module")
def through_collector(tmp_path_factory: pytest.TempPathFactory, e2e_keys: Path) -> Iterator[tuple[Path, Produced]]:
    """300 signed records sent through one real collector into its file exporter's archive."""
    d = tmp_path_factory.mktemp("collector-e2e")
    archive = d / "archive.jsonl"
    with Collector(ARCHIVE_CONFIG, env={"ARCHIVE": str(archive)}, endpoints=["OTLP_HTTP"], workdir=d / "otelcol") as c:
        produced = produce(c.url("OTLP_HTTP"), e2e_keys, 300)
        wait_until_verified([archive], Keyring.load(e2e_keys), produced.stream_id, produced.length, 30)
    yield archive, produced


def test_archive_written_by_the_collector_verifies(through_collector: tuple[Path, Produced], e2e_keys: Path) -> None:
    """`otel-audit verify` exits 0 on the collector's archive, although the collector added a resource attribute."""
    archive, produced = through_collector
    result = cli_verify(e2e_keys, archive)
    assert result.returncode == 0, result.stdout + result.stderr
    assert produced.stream_id in result.stdout
    # The records really went through the collector's processors.
    lines = Archive.load(archive).lines
    resources = [rl["resource"] for doc in lines for rl in doc["resourceLogs"]]
    assert resources and all(
        {"key": "collector.e2e", "value": {"stringValue": "added-in-transit"}} in r["attributes"] for r in resources
    )


def test_every_seq_arrives_once_with_its_types(through_collector: tuple[Path, Produced], e2e_keys: Path) -> None:
    """The collector's OTLP JSON holds each seq once, every value type intact (the digests prove it)."""
    archive, produced = through_collector
    rep = json.loads(cli_verify(e2e_keys, archive, fmt="json").stdout)
    (s,) = rep["streams"]
    assert (s["status"], s["state"]) == ("verified", "closed")
    assert s["records"] == s["length"] == produced.length
    assert s["events"] == 300 and s["duplicates"] == 0 and s["missing"] == []


def test_a_record_altered_in_the_archive_is_named(
    through_collector: tuple[Path, Produced], e2e_keys: Path, tmp_path: Path
) -> None:
    """Changing one attribute of one record at rest makes verify exit 1 and name that record's seq."""
    archive, _ = through_collector
    copy = Archive.load(archive)
    copy.path = tmp_path / "archive.jsonl"
    target = next(r for r in copy.events() if seq_of(r) == 137 or seq_of(r) > 137)
    seq = seq_of(target)
    set_attr(target, "user.id", {"stringValue": f"{attr_value(target, 'user.id')}-edited"})
    copy.save()

    result = cli_verify(e2e_keys, copy.path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert str(seq) in result.stdout
    rep = json.loads(cli_verify(e2e_keys, copy.path, fmt="json").stdout)
    assert rep["streams"][0]["modified"] == [seq]


def _agent_env(d: Path, sink: Collector) -> dict[str, str]:
    """agent.yaml's required variables: the OTLP SIEM is the sink collector; the others lead nowhere."""
    from collector import free_port

    dead = f"127.0.0.1:{free_port()}"  # nothing listens: those exporters just keep retrying
    return {
        "OTEL_AUDIT_AGENT_DIR": str(d / "agent"),
        "AUDIT_OTLP_ENDPOINT": sink.url("OTLP_HTTP"),
        "AUDIT_OTLP_AUTHORIZATION": "Bearer e2e",
        "SPLUNK_HEC_ENDPOINT": f"http://{dead}/services/collector",
        "SPLUNK_HEC_TOKEN": "00000000-0000-0000-0000-000000000000",
        "ELASTICSEARCH_ENDPOINT": f"http://{dead}",
        "ELASTICSEARCH_API_KEY": "ZHVtbXk6ZHVtbXk=",
        "TELEMETRY_OTLP_ENDPOINT": dead,
    }


AGENT_ENDPOINTS = (
    "OTEL_AUDIT_AGENT_GRPC_ENDPOINT", "OTEL_AUDIT_AGENT_HTTP_ENDPOINT",
    "OTEL_AUDIT_AGENT_TELEMETRY_GRPC_ENDPOINT", "OTEL_AUDIT_AGENT_TELEMETRY_HTTP_ENDPOINT",
)


def _count_lines(path: Path) -> int:
    try:
        return sum(1 for line in path.read_bytes().splitlines() if line.strip())
    except FileNotFoundError:
        return 0


def _seqs(path: Path) -> set[int]:
    """The seqs in an archive that no process is writing to."""
    return {seq_of(r) for r in Archive.load(path).records()} if path.exists() else set()


@pytest.mark.slow
def test_sigkill_of_the_agent_loses_nothing(tmp_path: Path, e2e_keys: Path) -> None:
    """SIGKILL of agent.yaml's collector mid-stream, with a backlog in its file_storage queue: after a restart
    both its archive and the downstream one verify, with at most duplicates."""
    ring = Keyring.load(e2e_keys)
    sink_archive = tmp_path / "sink" / "archive.jsonl"
    sink = Collector(ARCHIVE_CONFIG, env={"ARCHIVE": str(sink_archive)}, endpoints=["OTLP_HTTP"],
                     workdir=tmp_path / "sink")
    agent = Collector(CONFIG_DIR / "agent.yaml", env=_agent_env(tmp_path, sink), endpoints=AGENT_ENDPOINTS,
                      workdir=tmp_path / "agent-run")
    agent_archive = tmp_path / "agent" / "archive" / "audit.jsonl"
    progress: list[int] = []
    result: dict[str, Any] = {}
    n = 2000  # paced below to last several seconds, so that the kill lands mid-stream

    def producer() -> None:
        try:
            result["produced"] = produce(f"http://{agent.endpoint('OTEL_AUDIT_AGENT_HTTP_ENDPOINT')}", e2e_keys, n,
                                         pause_every=10, pause_s=0.02, progress=progress)
        except BaseException as e:  # surfaced by the main thread
            result["error"] = e

    sink.start()
    agent.start()
    thread = threading.Thread(target=producer, name="e2e-producer")
    try:
        thread.start()
        _wait(lambda: _count_lines(sink_archive) > 0, 30, "first records at the sink")
        # The downstream SIEM goes away: the agent keeps accepting, its persistent queue grows.
        sink.stop()
        at_sink = _seqs(sink_archive)
        mark = len(progress)
        _wait(lambda: len(progress) >= mark + 200, 30, "records queued while the sink is down")
        agent.kill()  # the crash: no shutdown, whatever was queued is only on disk
        assert len(progress) < n, "the producer finished before the kill; nothing was mid-stream"
        only_at_agent = _seqs(agent_archive) - at_sink
        time.sleep(0.5)
        agent.start()  # same ports and directory; the producer's exporter retries meanwhile
        thread.join(120)
        assert not thread.is_alive(), "the producer did not finish"
        assert "error" not in result, result.get("error")
        assert only_at_agent, "no backlog: the agent held nothing the sink lacked when it was killed"
        assert len(progress) == n
        sink.start()  # the SIEM is back: the agent's queue drains into it
        produced: Produced = result["produced"]
        wait_until_verified([sink_archive], ring, produced.stream_id, produced.length, 120)
    finally:
        agent.stop()
        sink.stop()
        thread.join(5)

    assert agent.starts == 2 and sink.starts == 2
    for archive in (agent_archive, sink_archive):
        out = cli_verify(e2e_keys, archive, fmt="json")
        assert out.returncode == 0, f"{archive}: {out.stdout}{out.stderr}"
        (s,) = json.loads(out.stdout)["streams"]
        assert s["stream_id"] == produced.stream_id
        assert (s["records"], s["missing"], s["modified"], s["state"]) == (produced.length, [], [], "closed"), s
    events = [r for r in Archive.load(sink_archive).records() if not is_checkpoint(r)]
    assert len({seq_of(r) for r in events}) == n


def _wait(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
