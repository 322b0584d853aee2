"""Verification in bounded memory: each stream is processed in seq order as its records arrive, records out of
order wait in a window (OTEL_AUDIT_VERIFY_WINDOW) and beyond it in sorted runs on disk. Whatever the order of
the input and the size of the window, the report is the one of the input in order."""

from __future__ import annotations

import copy
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import Archive, child_env, only_stream, seq_of, set_attr, verify

from otel_audit.keys import Keyring
from otel_audit.verify import Verifier
from otel_audit.verify.order import WINDOW_ENV

K = 123  # an ordinary event in the middle of the 300-record archive


def _streams(rep: Any) -> list[dict[str, Any]]:
    return [s.to_json() for s in rep.streams]


def _split(archive: Archive, folder: Path, order: list[int], files: int) -> list[Path]:
    """The archive's records one per line in the given order, dealt round-robin into `files` files."""
    archive.explode()
    lines = [archive.lines[i] for i in order]
    folder.mkdir()
    paths = []
    for f in range(files):
        part = Archive(folder / f"part-{f}.jsonl", lines[f::files])
        paths.append(part.save())
    return paths


def _in_order(archive: Archive, tmp_path: Path, keyring: Keyring) -> list[dict[str, Any]]:
    ref = tmp_path / "ref.jsonl"
    archive.save(ref)
    return _streams(verify(ref, keyring))


@pytest.mark.parametrize("window", [None, "5"])
def test_reversed_and_shuffled_across_files_give_the_report_in_order(archive: Archive, keyring: Keyring,
                                                                    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    window: str | None) -> None:
    """One stream's records in reverse order, and shuffled over three files: the same report as in order, with
    the default window and with one so small (5 records) that nearly everything goes through sorted runs."""
    if window:
        monkeypatch.setenv(WINDOW_ENV, window)
    ref = _in_order(archive, tmp_path, keyring)
    assert ref[0]["status"] == "verified" and ref[0]["sealed"] == 308
    n = len(archive.records())
    backwards = _split(copy.deepcopy(archive), tmp_path / "backwards", list(range(n))[::-1], 1)
    assert _streams(verify(backwards, keyring)) == ref
    shuffled = list(range(n))
    random.Random(7).shuffle(shuffled)
    paths = _split(copy.deepcopy(archive), tmp_path / "shuffled", shuffled, 3)
    assert _streams(verify(paths, keyring)) == ref


def test_window_overflow_spills_and_gives_the_same_findings(archive: Archive, keyring: Keyring, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A tampered archive (a record modified, one deleted) shuffled with a window of 3 records: its records are
    spilled to sorted runs, and the findings are those of the input in order."""
    rec = archive.find(K)
    set_attr(rec, "user.id", {"stringValue": "mallory"})
    archive.remove(archive.find(200))
    ref = _in_order(archive, tmp_path, keyring)
    assert ref[0]["modified"] == [K] and ref[0]["missing"] == [[200, 200]]
    monkeypatch.setenv(WINDOW_ENV, "3")
    order = list(range(len(archive.records())))
    random.Random(3).shuffle(order)
    paths = _split(archive, tmp_path / "shuffled", order, 2)
    v = Verifier(keyring)
    v.add_files(paths)
    assert any(st.runs for st in v._streams.values()), "the small window spilled nothing"
    rep = v.finish()
    assert _streams(rep) == ref


def test_duplicates_across_files_after_their_seqs_were_processed(archive: Archive, keyring: Keyring,
                                                                 tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole archive twice, in two files (at-least-once delivery): with a window of 8 the first copy is
    processed before the second arrives, which is recognised as duplicates by fingerprint, not as conflicts."""
    monkeypatch.setenv(WINDOW_ENV, "8")
    one = archive.save(tmp_path / "a.jsonl")
    two = archive.save(tmp_path / "b.jsonl")
    rep = verify([one, two], keyring)
    s = only_stream(rep)
    assert rep.ok and s.status == "verified", s.problems
    assert s.duplicates == 308 and s.sealed == 308 and s.conflicting == []
    assert any("308 exact duplicate(s)" in w for w in s.warnings)


def test_a_conflict_arriving_after_its_seq_was_processed(archive: Archive, keyring: Keyring, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A second, different record at seq K in a later file, when K was long processed (window 8): a conflict,
    and the stream fails; a copy of that forged record again is counted as a duplicate of it."""
    monkeypatch.setenv(WINDOW_ENV, "8")
    first = archive.save(tmp_path / "a.jsonl")
    forged = copy.deepcopy(archive.find(K))
    set_attr(forged, "user.id", {"stringValue": "mallory"})
    late = Archive(tmp_path / "b.jsonl", [])
    late.lines = [copy.deepcopy(archive.lines[0])]
    late.lines[0]["resourceLogs"] = late.lines[0]["resourceLogs"][:1]
    late.lines[0]["resourceLogs"][0]["scopeLogs"] = [{"scope": {"name": "forger"}, "logRecords": [forged]}]
    late.append(copy.deepcopy(forged))
    second = late.save()
    rep = verify([first, second], keyring)
    s = only_stream(rep)
    assert not rep.ok and s.status == "failed"
    assert s.conflicting == [K] and s.unproven.get("conflicting") is None  # the processed record stays sealed
    assert any(f"conflicting records at seq {K}" in p for p in s.problems)
    assert s.duplicates == 1
    # the same input with a window holding everything: the same verdict and findings
    monkeypatch.setenv(WINDOW_ENV, "100000")
    ref = only_stream(verify([first, second], keyring))
    assert (ref.conflicting, ref.duplicates, ref.sealed, ref.problems) == (s.conflicting, s.duplicates, s.sealed,
                                                                           s.problems)
    assert seq_of(forged) == K


def test_a_bad_window_setting_is_a_usage_error(archive: Archive, shared_keys: Path) -> None:
    """OTEL_AUDIT_VERIFY_WINDOW that is no positive number: exit 2, naming the variable."""
    env = {**child_env(), WINDOW_ENV: "lots"}
    proc = subprocess.run([sys.executable, "-m", "otel_audit.cli", "verify", "--keys", str(shared_keys),
                           str(archive.path)], capture_output=True, text=True, timeout=120, env=env, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert WINDOW_ENV in proc.stderr + proc.stdout and "Traceback" not in proc.stderr
