"""Liveness: checkpoints declare their heartbeat, and verify reports streams silent for longer.

A real producer (a child Python process running SigningProcessor with checkpoint_interval=0.2 s
-> SimpleLogRecordProcessor -> FileLogRecordExporter) writes an archive while the real CLI
verifies it: live with --now (passes), suspended by SIGSTOP (a silent stop), and after SIGCONT
(a gap between checkpoints longer than promised). A copy cut back to an early checkpoint fails
with --now. Archives written by the pipeline before checkpoints declared an interval (the code of
the commit before, run in a child) still verify, with a note that liveness was not checked.

Tolerance: 2 x interval + 5 s (otel_audit/verify/liveness.py), so the producer is stopped for 7 s.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import Archive, attr_value, child_env, is_checkpoint, seq_of, write_archive
from test_tamper_cli import run_verify, verify_json

from otel_audit.canonical import CHECKPOINT_EVENT
from otel_audit.note import parse_note
from otel_audit.verify.liveness import TOLERANCE_SLACK_NS, iso

INTERVAL = 0.2
ALLOWED_S = 2 * INTERVAL + TOLERANCE_SLACK_NS / 1e9  # 5.4 s
STOPPED_S = ALLOWED_S + 1.6  # a real suspension, well over the tolerance

PRODUCER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.resources import Resource
    from otel_audit.exporters.file import FileLogRecordExporter
    from otel_audit.processors.signing import SigningProcessor

    keys, path, interval, stop = sys.argv[1], sys.argv[2], float(sys.argv[3]), Path(sys.argv[4])
    resource = Resource.create({"service.name": "liveness-test"})
    provider = LoggerProvider(resource=resource)
    sp = SigningProcessor(keys, downstream=SimpleLogRecordProcessor(FileLogRecordExporter(path, fsync="never")),
                          checkpoint_every=1000, checkpoint_interval=interval, resource=resource)
    provider.add_log_record_processor(sp)
    logger = provider.get_logger("liveness-test")
    print(sp.stream_id, flush=True)
    i = 0
    while not stop.exists():
        logger.emit(event_name="gen_ai.request", body=f"request {i}", attributes={"i": i, "user.id": f"u{i % 5}"})
        i += 1
        if i == 10:
            print("running", flush=True)
        time.sleep(0.02)
    provider.shutdown()
    print("closed", flush=True)
    """
)


def checkpoint_times(path: Path) -> list[tuple[int, int]]:
    """(seq, signed time ns) of every checkpoint of an archive, in seq order (a torn last line is skipped)."""
    out = []
    for line in path.read_bytes().splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        for rl in doc["resourceLogs"]:
            for sl in rl["scopeLogs"]:
                for rec in sl["logRecords"]:
                    if is_checkpoint(rec):
                        out.append((seq_of(rec), parse_note(rec["body"]["stringValue"]).checkpoint.time_ns))
    return sorted(out)


@dataclass
class Run:
    """What happened to the producer, and what verify said at each stage."""

    path: Path
    stream_id: str
    live: tuple[int, dict[str, Any]] = (0, {})
    stopped: subprocess.CompletedProcess[str] | None = None
    stopped_json: tuple[int, dict[str, Any]] = (0, {})
    stop_began_ns: int = 0
    stderr: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def suspended(tmp_path_factory: pytest.TempPathFactory, shared_keys: Path) -> Iterator[Run]:
    """A producer that runs, is verified live, is suspended (SIGSTOP) and verified, resumes and closes."""
    d = tmp_path_factory.mktemp("liveness")
    script, path, stop = d / "producer.py", d / "audit.jsonl", d / "stop"
    script.write_text(PRODUCER)
    err = open(d / "producer.err", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, str(script), str(shared_keys), str(path), str(INTERVAL), str(stop)],
                            stdout=subprocess.PIPE, stderr=err, text=True, env=child_env())
    try:
        assert proc.stdout is not None
        sid = proc.stdout.readline().strip()
        assert len(sid) == 32, (d / "producer.err").read_text()
        assert proc.stdout.readline().strip() == "running"
        time.sleep(1.0)  # a few time checkpoints
        run = Run(path, sid)
        run.live = verify_json(shared_keys, path, extra=("--allow-open", "--now"))
        os.kill(proc.pid, signal.SIGSTOP)
        run.stop_began_ns = time.time_ns()
        time.sleep(STOPPED_S)
        run.stopped = run_verify(shared_keys, path, extra=("--allow-open", "--now"))
        run.stopped_json = verify_json(shared_keys, path, extra=("--allow-open", "--now"))
        os.kill(proc.pid, signal.SIGCONT)
        time.sleep(1.0)
        stop.touch()
        assert proc.stdout.read().strip() == "closed"
        assert proc.wait(timeout=60) == 0, (d / "producer.err").read_text()
        yield run
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
            proc.wait(timeout=30)
        err.close()


def test_checkpoints_declare_their_interval(tmp_path: Path, shared_keys: Path) -> None:
    """Every checkpoint the pipeline writes carries `interval <ns>`, its checkpoint_interval."""
    w = write_archive(tmp_path / "a.jsonl", shared_keys, 60, checkpoint_every=25, checkpoint_interval=7.5)
    notes = [parse_note(r["body"]["stringValue"]) for r in Archive.load(w.path).records() if is_checkpoint(r)]
    assert len(notes) == 4
    assert all("\ninterval 7500000000\n" in n.text and n.checkpoint.interval_ns == 7_500_000_000 for n in notes)


@pytest.mark.slow
def test_live_producer_verifies_with_now(suspended: Run) -> None:
    """While the producer runs, `verify --allow-open --now` passes: its last checkpoint is recent."""
    code, doc = suspended.live
    assert code == 0, doc["streams"][0]["problems"]
    s = doc["streams"][0]
    assert s["stream_id"] == suspended.stream_id and s["state"] == "open"
    assert s["interval_ns"] == int(INTERVAL * 1e9) and s["silences"] == []
    assert 0 < s["longest_silence_ns"] < ALLOWED_S * 1e9


def test_suspended_producer_is_a_silent_stop(suspended: Run) -> None:
    """Verified with --now while SIGSTOPped, the open stream fails: no checkpoint for longer than promised.

    The message names the stream, the last checkpoint's seq and time, and the promised interval."""
    proc = suspended.stopped
    assert proc is not None and proc.returncode == 1, proc.stdout if proc else None
    code, doc = suspended.stopped_json
    assert code == 1
    (s,) = doc["streams"]
    (silence,) = s["silences"]
    assert silence["kind"] == "stopped" and silence["to_seq"] is None
    assert silence["silent_ns"] > ALLOWED_S * 1e9 and silence["interval_ns"] == int(INTERVAL * 1e9)
    last_seq, last_time = silence["from_seq"], silence["from_time"]
    # the last checkpoint the archive held at the time, made just before the suspension
    before = [c for c in checkpoint_times(suspended.path) if c[1] <= suspended.stop_began_ns]
    assert (last_seq, last_time) == (before[-1][0], iso(before[-1][1]))
    msg = next(p for p in s["problems"] if p.startswith("silent stop"))
    assert suspended.stream_id in msg and f"seq {last_seq} ({last_time})" in msg and "every 0.2 s" in msg
    assert "PROBLEM: silent stop" in proc.stdout and suspended.stream_id in proc.stdout


def test_gap_while_suspended_is_reported_after_resuming(suspended: Run, shared_keys: Path) -> None:
    """After SIGCONT and a clean close, the stream is complete, but the suspension is a gap between two
    checkpoints longer than promised: exit 1 naming both checkpoints (seq and time) and the interval."""
    code, doc = verify_json(shared_keys, suspended.path)
    assert code == 1
    (s,) = doc["streams"]
    assert s["state"] == "closed" and s["missing"] == [] and s["modified"] == []
    (gap,) = s["silences"]
    cps = checkpoint_times(suspended.path)
    a = max(c for c in cps if c[1] <= suspended.stop_began_ns)
    b = min(c for c in cps if c[0] > a[0])  # the next one, made once the process ran again
    assert (gap["kind"], gap["from_seq"], gap["to_seq"]) == ("gap", a[0], b[0])
    assert (gap["from_time"], gap["to_time"]) == (iso(a[1]), iso(b[1]))
    assert gap["silent_ns"] == b[1] - a[1] > STOPPED_S * 1e9 - 1e9
    (msg,) = [p for p in s["problems"] if p.startswith("silent for")]
    assert f"between seq {a[0]} ({iso(a[1])}) and seq {b[0]} ({iso(b[1])})" in msg
    assert suspended.stream_id in msg and "every 0.2 s" in msg
    proc = run_verify(shared_keys, suspended.path)
    assert proc.returncode == 1 and "PROBLEM: silent for" in proc.stdout


def test_stream_cut_back_to_an_early_checkpoint_fails_with_now(suspended: Run, shared_keys: Path,
                                                                tmp_path: Path) -> None:
    """The archive truncated right after an early checkpoint passes for a live stream with --allow-open,
    but with --now its last checkpoint is older than the interval allows: exit 1 naming the stream and
    the time of that checkpoint. --at a time just after it passes (RFC 3339 and unix seconds)."""
    archive = Archive.load(suspended.path)
    archive.explode()
    cut_seq, cut_time = checkpoint_times(suspended.path)[3]
    # everything after that checkpoint goes, as an attacker hiding what followed would cut it
    archive.lines = [d for d in archive.lines
                     if seq_of(d["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]) <= cut_seq]
    cut = archive.save(tmp_path / "cut.jsonl")
    assert run_verify(shared_keys, cut, extra=("--allow-open",)).returncode == 0
    proc = run_verify(shared_keys, cut, extra=("--allow-open", "--now"))
    assert proc.returncode == 1, proc.stdout
    assert f"silent stop: open stream {suspended.stream_id}" in proc.stdout
    assert f"after seq {cut_seq} ({iso(cut_time)})" in proc.stdout
    code, doc = verify_json(shared_keys, cut, extra=("--allow-open", "--now"))
    assert code == 1 and doc["streams"][0]["silences"][0]["from_seq"] == cut_seq
    soon = cut_time + 1_000_000_000
    at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(soon // 10**9)) + "Z"
    assert run_verify(shared_keys, cut, extra=("--allow-open", "--at", at)).returncode == 0
    assert run_verify(shared_keys, cut, extra=("--allow-open", "--at", f"{soon / 1e9:.3f}")).returncode == 0
    late = f"{(cut_time / 1e9) + ALLOWED_S + 2:.3f}"
    assert run_verify(shared_keys, cut, extra=("--allow-open", "--at", late)).returncode == 1


@pytest.mark.parametrize("bad", ["yesterday", "2024-05-01T12:00:00", "-5"])
def test_bad_at_is_a_usage_error(bad: str, shared_keys: Path, tmp_path: Path) -> None:
    """--at that is neither RFC 3339 with a zone nor unix seconds exits 2 naming the value; with --now too."""
    w = write_archive(tmp_path / "a.jsonl", shared_keys, 5)
    proc = run_verify(shared_keys, w.path, extra=("--at", bad))
    assert proc.returncode == 2 and bad in proc.stderr and "Traceback" not in proc.stderr
    both = run_verify(shared_keys, w.path, extra=("--at", "1714564800", "--now"))
    assert both.returncode == 2 and "not allowed with" in both.stderr


# -- archives written before checkpoints declared an interval ---------------------------------------


V1 = Path(__file__).parent / "data" / "v1"  # written by the pipeline before checkpoints declared an interval


def test_archive_of_the_earlier_pipeline_still_verifies(tmp_path: Path) -> None:
    """Checkpoints written by the pipeline before the interval line (tests/data/v1) still parse and verify
    (exit 0, also with --now), with a note that liveness cannot be checked."""
    keys = V1 / "keyring.json"
    path = tmp_path / "old.jsonl"
    with gzip.open(V1 / "audit.jsonl.gz", "rb") as src:
        path.write_bytes(src.read())
    notes = [r["body"]["stringValue"] for r in Archive.load(path).records()
             if r.get("eventName") == CHECKPOINT_EVENT]
    assert notes and not any("\ninterval " in n for n in notes)
    for extra in ((), ("--now",)):
        code, doc = verify_json(keys, path, extra=extra)
        assert code == 0, [s["problems"] for s in doc["streams"]]
        for s in doc["streams"]:
            assert s["interval_ns"] is None and s["silences"] == []
            assert any(w.startswith("liveness not checked") for w in s["warnings"])
    text = run_verify(keys, path).stdout
    assert "VERIFIED" in text and "note: liveness not checked" in text
    assert attr_value(Archive.load(path).records()[0], "audit.checkpoint.kind") == "start"
