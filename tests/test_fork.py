"""Fork safety: a forked child (os.fork, multiprocessing's fork context) starts its own stream naming its parent.

The pipelines are real (SDK LoggerProvider -> SigningProcessor -> Simple processor -> file
exporter); children are real forked processes; the archives are verified by the real verifier
and the `otel-audit verify` CLI. Another engineer makes the file exporter fork-safe (a child
writes `<stem>.<pid><suffix>`), so these tests always read the whole archive folder.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import Archive, attr_value, is_checkpoint, make_pipeline, mixed_record, stream, stream_of, verify

from otel_audit.keys import Keyring

_ctx = multiprocessing.get_context("fork")
_pipeline: dict[str, Any] = {}  # what a multiprocessing child inherits from the test


def _cli_verify(keys_dir: Path, folder: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, "-m", "otel_audit.cli", "verify", "--keys", str(keys_dir), "--format", "json",
         "--no-progress", *extra, str(folder)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.stdout, proc.stderr
    return proc.returncode, orjson.loads(proc.stdout)


def _streams(folder: Path) -> set[str]:
    return {stream_of(r) for f in folder.glob("*.jsonl") for r in Archive.load(f).records()}


def _child_events(folder: Path) -> int:
    """Events that _mp_emit children wrote (their "i" is 1000 and up)."""
    return sum(1 for f in folder.glob("*.jsonl") for r in Archive.load(f).records()
               if not is_checkpoint(r) and (attr_value(r, "i") or 0) >= 1000)


def test_os_fork_child_has_its_own_stream_naming_its_parent(tmp_path: Path, keys_dir: Path) -> None:
    """After os.fork the child numbers a new stream from 0 whose start names the parent; both verify clean,
    no conflict."""
    archive = tmp_path / "archive"
    archive.mkdir()
    state = tmp_path / "state"
    provider, sp = make_pipeline(archive / "audit.jsonl", keys_dir, state_dir=state, simple=True,
                                 checkpoint_every=4)
    logger = provider.get_logger("fork-tests")
    for i in range(6):
        logger.emit(**mixed_record(i))
    parent_id = sp.stream_id
    pid = os.fork()
    if pid == 0:  # the child: emit, seal, leave without running the parent's test machinery
        code = 0
        try:
            if sp.stream_id == parent_id or sp.seq == 0 or sp.state_dir != state / "worker-1":
                code = 3
            for i in range(100, 105):
                logger.emit(**mixed_record(i))
            provider.shutdown()
        except BaseException:  # noqa: BLE001
            code = 4
        os._exit(code)
    for i in range(6, 12):  # the parent goes on with its own stream meanwhile
        logger.emit(**mixed_record(i))
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert sp.stream_id == parent_id
    provider.shutdown()

    rep = verify(archive, Keyring.load(keys_dir))
    assert rep.ok, [s.problems for s in rep.streams]
    assert len(rep.streams) == 2
    parent = stream(rep, parent_id)
    (child,) = [s for s in rep.streams if s.stream_id != parent_id]
    assert (parent.state, child.state) == ("closed", "closed")
    assert child.parent == parent_id and parent.children == [child.stream_id]
    assert (parent.events, child.events) == (12, 5)
    assert parent.conflicting == child.conflicting == [] and parent.unsealed == child.unsealed == []
    # the child never touched the parent's chain state; it kept its own in a slot
    assert orjson.loads((state / "state.json").read_bytes())["stream_id"] == parent_id
    assert orjson.loads((state / "worker-1" / "state.json").read_bytes())["stream_id"] == child.stream_id
    code, doc = _cli_verify(keys_dir, archive)
    assert code == 0 and doc["result"] == "verified"


def _mp_emit(n: int, then_sleep: float) -> None:
    logger = _pipeline["logger"]
    for i in range(n):
        logger.emit(**mixed_record(1000 + i))
    print(f"child {os.getpid()} emitted {n}", flush=True)
    if then_sleep:
        time.sleep(then_sleep)


def test_multiprocessing_fork_children_seal_their_streams(tmp_path: Path, keys_dir: Path) -> None:
    """multiprocessing fork children each start a stream naming the parent and seal it through multiprocessing's
    finalizers: one that returns, and one stopped with Process.terminate() (SIGTERM: SystemExit(143) in the child,
    every event emitted before the signal handed on, then the end checkpoint)."""
    archive = tmp_path / "archive"
    archive.mkdir()
    provider, sp = make_pipeline(archive / "audit.jsonl", keys_dir, state_dir=tmp_path / "state", simple=True)
    _pipeline["logger"] = provider.get_logger("mp-tests")
    try:
        done = _ctx.Process(target=_mp_emit, args=(7, 0.0))
        done.start()
        done.join(60)
        killed = _ctx.Process(target=_mp_emit, args=(4, 60.0))
        killed.start()
        deadline = time.monotonic() + 30
        # until it has emitted its 4 events (7 + 4), however loaded the machine, rather than a fixed wait
        while _child_events(archive) < 7 + 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        killed.terminate()  # SIGTERM
        killed.join(60)
    finally:
        _pipeline.clear()
    assert done.exitcode == 0
    assert killed.exitcode == 128 + signal.SIGTERM  # SystemExit from the audit handler, then the finalizers
    provider.shutdown()
    rep = verify(archive, Keyring.load(keys_dir))
    assert rep.ok, [(s.stream_id, s.problems) for s in rep.streams]
    kids = [s for s in rep.streams if s.stream_id != sp.stream_id]
    assert sorted(s.events for s in kids) == [4, 7]
    assert all(s.parent == sp.stream_id for s in kids)
    assert all(s.state == "closed" and not s.unsealed for s in kids)
    assert sorted(stream(rep, sp.stream_id).children) == sorted(s.stream_id for s in kids)


def test_child_without_its_parent_in_the_input_fails_unless_partial(tmp_path: Path, keys_dir: Path) -> None:
    """A child stream verified without its parent's records fails, like a missing predecessor (the parent may have
    been deleted whole); with partial=True it verifies, noting the parent is not in the input."""
    archive = tmp_path / "archive"
    archive.mkdir()
    provider, sp = make_pipeline(archive / "audit.jsonl", keys_dir, simple=True)
    logger = provider.get_logger("fork-tests")
    logger.emit(**mixed_record(0))
    pid = os.fork()
    if pid == 0:
        try:
            logger.emit(**mixed_record(1))
            provider.shutdown()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    provider.shutdown()
    parent_id = sp.stream_id
    for f in archive.glob("*.jsonl"):
        arch = Archive.load(f)
        for rec in [r for r in arch.records() if stream_of(r) == parent_id]:
            arch.remove(rec)
        arch.save()
    strict = verify(archive, Keyring.load(keys_dir))
    (child,) = strict.streams
    assert not strict.ok and any(parent_id in p and "not in the input" in p for p in child.problems)
    rep = verify(archive, Keyring.load(keys_dir), partial=True)
    (child,) = rep.streams
    assert rep.ok and child.parent == parent_id
    assert any(parent_id in w and "not in the input" in w for w in child.warnings)


def test_forged_parent_checkpoint_is_a_problem_of_the_parent(tmp_path: Path, keys_dir: Path) -> None:
    """When the parent's checkpoint a child names is deleted, the parent's report says the child's claim is not met."""
    archive = tmp_path / "archive"
    archive.mkdir()
    provider, sp = make_pipeline(archive / "audit.jsonl", keys_dir, simple=True, checkpoint_every=3)
    logger = provider.get_logger("fork-tests")
    for i in range(4):
        logger.emit(**mixed_record(i))
    forked_at = sp._sealed[0]  # the parent's last checkpoint before the fork
    pid = os.fork()
    if pid == 0:
        try:
            provider.shutdown()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    provider.shutdown()
    for f in archive.glob("*.jsonl"):
        arch = Archive.load(f)
        for rec in [r for r in arch.records() if stream_of(r) == sp.stream_id]:
            seq_kv = next(kv for kv in rec["attributes"] if kv["key"] == "audit.stream.seq")
            if int(seq_kv["value"]["intValue"]) == forked_at:
                arch.remove(rec)
        arch.save()
    rep = verify(archive, Keyring.load(keys_dir))
    parent = stream(rep, sp.stream_id)
    assert not rep.ok
    assert any("child stream" in p and f"seq {forked_at}" in p for p in parent.problems)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__]))
