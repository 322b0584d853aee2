"""The tamper matrix through the command line: `python -m otel_audit.cli verify` in a child process.

Exit codes: 0 verified, 1 integrity problem, 2 unusable input or usage. Starts one short-lived
Python process per case; no network.
"""

from __future__ import annotations

import copy
import gzip
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import Archive, child_env, reseal, set_attr

K = 123
END = 307  # 300 events and 8 checkpoints: start, one after every 50 events, end


def run_verify(keys: Path, *paths: Path | str, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "otel_audit.cli", "verify", "--keys", str(keys), *extra, *map(str, paths)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=child_env(), check=False)


def verify_json(keys: Path, *paths: Path | str, extra: tuple[str, ...] = ()) -> tuple[int, dict[str, Any]]:
    proc = run_verify(keys, *paths, extra=("--format", "json", *extra))
    return proc.returncode, json.loads(proc.stdout)


def test_pristine_archive_exits_0(archive: Archive, shared_keys: Path) -> None:
    """An untouched archive exits 0 and says VERIFIED; its JSON report says verified."""
    proc = run_verify(shared_keys, archive.path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "VERIFIED" in proc.stdout and "FAILED" not in proc.stdout
    code, doc = verify_json(shared_keys, archive.path)
    assert code == 0
    assert doc["result"] == "verified"
    (s,) = doc["streams"]
    assert (s["status"], s["state"], s["records"], s["sealed"]) == ("verified", "closed", END + 1, END + 1)


def test_keyring_file_and_folder_both_work(archive: Archive, shared_keys: Path) -> None:
    """--keys takes the keys folder or its keyring.json."""
    assert run_verify(shared_keys / "keyring.json", archive.path).returncode == 0


def test_changed_body_exits_1(archive: Archive, shared_keys: Path) -> None:
    """A changed body exits 1 and the JSON report names seq 123 as modified."""
    archive.find(K)["body"] = {"stringValue": "edited"}
    archive.save()
    proc = run_verify(shared_keys, archive.path)
    assert proc.returncode == 1
    assert "FAILED" in proc.stdout and "modified: seq 123" in proc.stdout
    code, doc = verify_json(shared_keys, archive.path)
    assert code == 1 and doc["result"] == "failed"
    assert doc["streams"][0]["modified"] == [K]


def test_changed_type_exits_1(archive: Archive, shared_keys: Path) -> None:
    """An int attribute turned into the same digits as a string exits 1, modified at that seq."""
    rec = archive.find(K)
    i = next(kv["value"]["intValue"] for kv in rec["attributes"] if kv["key"] == "i")
    set_attr(rec, "i", {"stringValue": str(i)})
    archive.save()
    code, doc = verify_json(shared_keys, archive.path)
    assert code == 1 and doc["streams"][0]["modified"] == [K]


def test_deleted_record_exits_1(archive: Archive, shared_keys: Path) -> None:
    """A deleted record exits 1 and is reported missing."""
    archive.remove(archive.find(K))
    archive.save()
    code, doc = verify_json(shared_keys, archive.path)
    assert code == 1 and doc["streams"][0]["missing"] == [[K, K]]


def test_deleted_tail_exits_1_unless_allow_open(archive: Archive, shared_keys: Path) -> None:
    """A stream cut before its end checkpoint exits 1; with --allow-open it exits 0 with a warning."""
    for seq in range(END - 4, END + 1):
        archive.remove(archive.find(seq))
    archive.save()
    code, doc = verify_json(shared_keys, archive.path)
    assert code == 1 and doc["streams"][0]["state"] == "open"
    code, doc = verify_json(shared_keys, archive.path, extra=("--allow-open",))
    assert code == 0 and doc["streams"][0]["warnings"]


def test_forged_conflict_exits_1(archive: Archive, shared_keys: Path) -> None:
    """A self-consistent forgery next to the original exits 1 as a conflict."""
    forged = copy.deepcopy(archive.find(K))
    forged["body"] = {"stringValue": "forged"}
    reseal(forged)
    archive.append(forged)
    archive.save()
    code, doc = verify_json(shared_keys, archive.path)
    assert code == 1 and doc["streams"][0]["conflicting"] == [K]


def test_exact_duplicate_exits_0(archive: Archive, shared_keys: Path) -> None:
    """An exact duplicate record exits 0, counted in duplicates."""
    archive.append(copy.deepcopy(archive.find(K)))
    archive.save()
    code, doc = verify_json(shared_keys, archive.path)
    assert code == 0 and doc["streams"][0]["duplicates"] == 1


def test_wrong_keyring_exits_1(archive: Archive, tmp_path: Path) -> None:
    """Verifying with another keyring exits 1: every checkpoint is signed by an unknown key."""
    from otel_audit import keys

    keys.generate(tmp_path / "other", "test-key")
    code, doc = verify_json(tmp_path / "other", archive.path)
    checkpoints = archive.checkpoint_seqs()
    assert checkpoints[0] == 0 and checkpoints[-1] == END
    assert code == 1 and doc["streams"][0]["unknown_keys"] == checkpoints


def test_gzip_archive_exits_0(archive: Archive, shared_keys: Path, tmp_path: Path) -> None:
    """A gzip archive verifies through the CLI."""
    gz = tmp_path / "audit.jsonl.gz"
    gz.write_bytes(gzip.compress(archive.path.read_bytes()))
    assert run_verify(shared_keys, gz).returncode == 0


def test_missing_file_exits_2(shared_keys: Path, tmp_path: Path) -> None:
    """A path that does not exist exits 2 with a message naming it."""
    proc = run_verify(shared_keys, tmp_path / "nope.jsonl")
    assert proc.returncode == 2
    assert "nope.jsonl" in proc.stderr


def test_not_an_archive_exits_2(shared_keys: Path, tmp_path: Path) -> None:
    """A file with no OTLP log records (plain text, or empty) exits 2."""
    txt = tmp_path / "notes.jsonl"
    txt.write_text("hello\nworld\n")
    assert run_verify(shared_keys, txt).returncode == 2
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert run_verify(shared_keys, empty).returncode == 2


def test_missing_keyring_exits_2(archive: Archive, tmp_path: Path) -> None:
    """A --keys path that does not exist exits 2."""
    proc = run_verify(tmp_path / "no-keys", archive.path)
    assert proc.returncode == 2 and "no-keys" in proc.stderr


def test_usage_errors_exit_2(archive: Archive) -> None:
    """verify without --keys, or with an unknown format, exits 2."""
    base = [sys.executable, "-m", "otel_audit.cli", "verify"]
    for args in ([str(archive.path)], ["--keys", "k", "--format", "xml", str(archive.path)]):
        proc = subprocess.run(base + args, capture_output=True, text=True, timeout=60, env=child_env(), check=False)
        assert proc.returncode == 2, args


def test_an_archive_of_unsigned_logs_is_never_verified(archive: Archive, shared_keys: Path) -> None:
    """Plain logs without integrity attributes, verified with --ignore-unsigned, prove nothing: exit 1 with
    "nothing is proven", never "VERIFIED - 0 stream(s)"."""
    for rec in archive.records():
        rec["attributes"] = [kv for kv in rec["attributes"] if not kv["key"].startswith(("audit.integrity.",
                                                                                        "audit.stream."))]
    archive.save()
    code, doc = verify_json(shared_keys, archive.path, extra=("--ignore-unsigned",))
    assert code == 1 and doc["result"] == "failed" and doc["streams"] == []
    assert "no signed stream in the input: nothing is proven" in doc["problems"]
