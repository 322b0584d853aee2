"""Crash and restart with real child processes: SIGKILL mid-stream, then a successor stream.

Each test starts Python child processes running the real pipeline (SigningProcessor with a
state_dir -> SimpleLogRecordProcessor -> FileLogRecordExporter with fsync="always"), kills one
with SIGKILL or lets it shut down, and verifies the archive they wrote together.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import Archive, assert_clean, child_env, is_checkpoint, seq_of, stream, stream_of, verify

from otel_audit.keys import Keyring

PRODUCER = textwrap.dedent(
    """
    import sys
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.resources import Resource
    from otel_audit.exporters.file import FileLogRecordExporter
    from otel_audit.processors.signing import SigningProcessor

    keys, state, path, mode = sys.argv[1:5]
    resource = Resource.create({"service.name": "crash-test"})
    provider = LoggerProvider(resource=resource)
    sp = SigningProcessor(
        keys,
        downstream=SimpleLogRecordProcessor(FileLogRecordExporter(path, fsync="always")),
        checkpoint_every=20,
        checkpoint_interval=3600,  # only this thread emits: no timer checkpoint racing the records
        state_dir=state,
        resource=resource,
    )
    provider.add_log_record_processor(sp)
    logger = provider.get_logger("crash-test")
    print(sp.stream_id, flush=True)
    i = 0
    while mode == "forever" or i < int(mode):
        logger.emit(event_name="gen_ai.request", body=f"request {i}",
                    attributes={"i": i, "user.id": f"u{i % 5}", "gen_ai.request.model": "m"})
        i += 1
        if i == 60:
            print("running", flush=True)
    provider.shutdown()
    print("closed", flush=True)
    """
)


class Producer:
    """Starts the producer script as a child process (one Python interpreter per instance)."""

    def __init__(self, tmp_path: Path, keys_dir: Path) -> None:
        self.script = tmp_path / "producer.py"
        self.script.write_text(PRODUCER)
        self.keys = keys_dir
        self.state = tmp_path / "state"
        self.archive = tmp_path / "audit.jsonl"

        self.torn = False  # did a SIGKILL leave the archive ending in a half-written line?
        self._runs = 0

    def start(self, mode: str) -> tuple[subprocess.Popen[str], str]:
        self._runs += 1
        # stderr goes to a file: mixing readline() with communicate() on two pipes loses output
        self.stderr = self.script.parent / f"producer-{self._runs}.err"
        with open(self.stderr, "w") as err:
            proc = subprocess.Popen(
                [sys.executable, str(self.script), str(self.keys), str(self.state), str(self.archive), mode],
                stdout=subprocess.PIPE, stderr=err, text=True, env=child_env(),
            )
        assert proc.stdout is not None
        stream_id = proc.stdout.readline().strip()
        assert len(stream_id) == 32, self.stderr.read_text()
        return proc, stream_id

    def run(self, n: int) -> str:
        """A producer that emits n records and shuts down cleanly."""
        proc, sid = self.start(str(n))
        assert proc.stdout is not None
        out = proc.stdout.read()
        proc.wait(timeout=120)
        assert proc.returncode == 0, self.stderr.read_text()
        assert "closed" in out
        return sid

    def crash(self, after_s: float = 0.3) -> str:
        """A producer emitting without end, killed with SIGKILL while it writes."""
        proc, sid = self.start("forever")
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "running"
        time.sleep(after_s)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        self.torn = self.torn or not self.archive.read_bytes().endswith(b"\n")
        return sid


@pytest.fixture
def producer(tmp_path: Path, keys_dir: Path) -> Producer:
    return Producer(tmp_path, keys_dir)


def test_crash_then_restart(producer: Producer, keys_dir: Path) -> None:
    """After SIGKILL a restart names the crashed stream; nothing is modified or missing and all verifies."""
    first = producer.crash()
    second = producer.run(5)
    assert first != second
    rep = verify(producer.archive, Keyring.load(keys_dir))
    assert len(rep.streams) == 2
    s1, s2 = stream(rep, first), stream(rep, second)
    assert s2.predecessor == first and s1.successor == second
    assert s1.state == "crashed" and s2.state == "closed"
    assert s1.records > 60 and s2.events == 5
    for s in (s1, s2):
        assert_clean(s)
    assert rep.ok, [s.problems for s in rep.streams]
    # records after the crashed stream's last checkpoint are chain-consistent but unsigned: a warning only
    cps = [seq_of(r) for r in Archive.load(producer.archive).records() if is_checkpoint(r) and stream_of(r) == first]
    top = s1.records - 1
    if max(cps) < top:
        assert s1.unsealed == [[max(cps) + 1, top]]
        assert any("unsealed tail after the crash" in w for w in s1.warnings)
    else:
        assert s1.unsealed == []


def test_crashed_stream_without_successor_is_open(producer: Producer, keys_dir: Path) -> None:
    """A crashed stream with no successor yet is open: a failure, or a warning with allow_open."""
    first = producer.crash(after_s=0.1)
    ring = Keyring.load(keys_dir)
    rep = verify(producer.archive, ring)
    assert not rep.ok
    s = stream(rep, first)
    assert s.state == "open" and s.modified == [] and s.missing == []
    assert verify(producer.archive, ring, allow_open=True).ok


def test_two_crashes_in_a_row(producer: Producer, keys_dir: Path) -> None:
    """Crash, crash again, then a clean run: three streams linked one after the other, all verified."""
    a = producer.crash(after_s=0.1)
    b = producer.crash(after_s=0.1)
    c = producer.run(3)
    rep = verify(producer.archive, Keyring.load(keys_dir))
    assert rep.ok, [s.problems for s in rep.streams]
    assert stream(rep, b).predecessor == a and stream(rep, c).predecessor == b
    assert [stream(rep, x).state for x in (a, b, c)] == ["crashed", "crashed", "closed"]


def test_torn_line_after_a_crash(producer: Producer, keys_dir: Path) -> None:
    """A half-written last line left by a SIGKILL does not make the restarted archive fail verification.

    SIGKILL can cut a write(2) short at a page boundary, so a crashed producer's archive may end in
    part of a line. The restarted file exporter moves that fragment to a side file before appending.
    The torn write is simulated here: the crashed producer's next line, cut in half.
    """
    first = producer.crash(after_s=0.1)
    data = producer.archive.read_bytes()
    last = data.rstrip(b"\n").rsplit(b"\n", 1)[-1]
    producer.archive.write_bytes(data + last[: len(last) // 2])
    second = producer.run(3)
    rep = verify(producer.archive, Keyring.load(keys_dir))
    assert stream(rep, second).predecessor == first
    assert stream(rep, first).state == "crashed" and stream(rep, first).modified == []
    assert rep.ok, (rep.problems, rep.malformed)


def test_clean_restart_links_clean(producer: Producer, keys_dir: Path) -> None:
    """A clean shutdown then a restart: the successor names its predecessor as closed ('clean')."""
    first = producer.run(30)
    second = producer.run(4)
    arch = Archive.load(producer.archive)
    start2 = next(r for r in arch.records() if stream_of(r) == second and seq_of(r) == 0)
    prev_line = next(line for line in start2["body"]["stringValue"].split("\n") if line.startswith("prev "))
    assert prev_line.startswith(f"prev {first} ") and prev_line.endswith(" clean")
    rep = verify(producer.archive, Keyring.load(keys_dir))
    assert rep.ok
    s1, s2 = stream(rep, first), stream(rep, second)
    assert s1.state == "closed" and s1.successor == second and s2.predecessor == first
    assert s1.unsealed == [] and s2.unsealed == []


def test_deleted_tail_is_detected_when_a_successor_exists(producer: Producer, keys_dir: Path) -> None:
    """Deleting a stream's last records (its end checkpoint among them) fails when a successor vouches for them."""
    first = producer.run(30)
    second = producer.run(4)
    arch = Archive.load(producer.archive)
    mine = sorted((r for r in arch.records() if stream_of(r) == first), key=seq_of)
    end = seq_of(mine[-1])
    for rec in mine[-5:]:
        arch.remove(rec)
    arch.save()
    rep = verify(producer.archive, Keyring.load(keys_dir))
    assert not rep.ok
    s1 = stream(rep, first)
    assert s1.missing == [[end - 4, end]]
    assert any(f"checkpoint at seq {end}" in p for p in s1.problems)
    assert stream(rep, second).status == "verified"


def test_deleted_last_checkpoint_of_a_crashed_stream_is_detected(producer: Producer, keys_dir: Path) -> None:
    """Deleting the crashed stream's checkpoint that the successor names (its last persisted one) fails.

    (A checkpoint written just before the kill but after the state file was last saved is not
    named by the successor; deleting that one, if it is the very last record, cannot be noticed.)
    """
    first = producer.crash(after_s=0.1)
    second = producer.run(2)
    arch = Archive.load(producer.archive)
    start2 = next(r for r in arch.records() if stream_of(r) == second and seq_of(r) == 0)
    prev_line = next(line for line in start2["body"]["stringValue"].split("\n") if line.startswith("prev "))
    _, sid, size, _root, _chain, how = prev_line.split(" ")
    assert (sid, how) == (first, "crash")
    last = int(size)
    arch.remove(arch.find(last, first))
    arch.save()
    rep = verify(producer.archive, Keyring.load(keys_dir))
    assert not rep.ok
    s1 = stream(rep, first)
    assert [last, last] in s1.missing
    assert any(f"checkpoint at seq {last}" in p for p in s1.problems)


def test_successor_alone_fails_for_its_missing_predecessor_unless_partial(producer: Producer, keys_dir: Path) -> None:
    """Verifying only the successor's records fails (the whole earlier stream may have been deleted); with
    partial=True, for an archive that starts mid-lineage on purpose, it verifies with a note."""
    first = producer.run(10)
    second = producer.run(3)
    arch = Archive.load(producer.archive)
    for rec in [r for r in arch.records() if stream_of(r) == first]:
        arch.remove(rec)
    arch.save()
    strict = verify(producer.archive, Keyring.load(keys_dir))
    assert not strict.ok
    assert any(first in p and "not in the input" in p and "--partial" in p for p in stream(strict, second).problems)
    rep = verify(producer.archive, Keyring.load(keys_dir), partial=True)
    s2 = stream(rep, second)
    assert rep.ok and s2.predecessor == first
    assert any(first in w and "not in the input" in w for w in s2.warnings)
