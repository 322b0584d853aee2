"""Hostile input found by an independent attacker: one junk line must not turn a tampered archive's
report (exit 1, naming the seq) into an internal error; a dangling symlink is no fresh state."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

from conftest import Archive
from test_tamper_cli import run_verify, verify_json


def _tamper(archive: Archive) -> None:
    rec = archive.find(123)
    for kv in rec["attributes"]:
        if kv["key"] == "user.id":
            kv["value"] = {"stringValue": "mallory"}
    archive.save()


def test_a_line_nested_deeper_than_any_record_is_located_and_the_rest_still_reported(
        archive: Archive, shared_keys: Path) -> None:
    """300 nested arrays (orjson reads them, cannot write them back): a located line, and seq 123 still named."""
    _tamper(archive)
    with open(archive.path, "a") as fh:
        fh.write("[" * 300 + "]" * 300 + "\n")
        fh.write('{"resourceLogs":' + "[" * 900 + "]" * 900 + "}\n")
    code, doc = verify_json(shared_keys, archive.path)
    assert code == 1, doc
    assert doc["streams"][0]["modified"] == [123]
    lines = {m.split(": ", 1)[0].split("[", 1)[0] for m in doc["malformed"]}
    n = len(archive.lines)
    assert {f"{archive.path}:{n + 1}", f"{archive.path}:{n + 2}"} <= lines, doc["malformed"]


def test_a_record_value_nested_past_the_canonical_depth_is_too_deep(archive: Archive, shared_keys: Path) -> None:
    """100 arrayValue levels in one attribute (300 JSON levels: more than orjson writes): that record is refused
    with too-deep, located, and seq 123 still named."""
    _tamper(archive)
    rec = copy.deepcopy(archive.find(200))
    v: dict = {"stringValue": "x"}
    for _ in range(100):
        v = {"arrayValue": {"values": [v]}}
    rec["attributes"].append({"key": "deep", "value": v})
    line = {"resourceLogs": [{"resource": {"attributes": []}, "scopeLogs": [{"scope": {}, "logRecords": [rec]}]}]}
    with open(archive.path, "a") as fh:
        fh.write(json.dumps(line, separators=(",", ":")) + "\n")
    code, doc = verify_json(shared_keys, archive.path)
    assert code == 1
    assert doc["streams"][0]["modified"] == [123]
    assert any(m.startswith(f"{archive.path}:{len(archive.lines) + 1}") and "too-deep" in m
               for m in doc["malformed"]), doc["malformed"]


def test_a_dangling_symlink_state_is_refused_not_started_afresh(archive: Archive, shared_keys: Path,
                                                                 tmp_path: Path) -> None:
    """The state kept on a store that is not mounted: exit 2 naming the link, never 'created' and VERIFIED."""
    link = tmp_path / "state.json"
    os.symlink(tmp_path / "vault" / "state.json", link)
    proc = run_verify(shared_keys, archive.path, extra=("--state", str(link)))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "does not exist" in proc.stderr and str(link) in proc.stderr
    assert not (tmp_path / "vault").exists()


def test_a_state_nested_too_deep_is_damaged(archive: Archive, shared_keys: Path, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    state.write_text('{"format":' + "[" * 5000 + "]" * 5000 + "}")
    proc = run_verify(shared_keys, archive.path, extra=("--state", str(state)))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "damaged state file" in proc.stderr and "Traceback" not in proc.stderr


def test_a_state_entry_with_a_bad_kind_or_time_is_damaged(archive: Archive, shared_keys: Path, tmp_path: Path) -> None:
    """Values inside a state entry are checked too (an attacker's 'verified: yesterday', 'kind: zzz')."""
    from otel_audit.verify.state import _checksum

    state = tmp_path / "state.json"
    assert verify_json(shared_keys, archive.path, extra=("--state", str(state)))[0] == 0
    good = json.loads(state.read_text())
    for field, value in (("kind", "zzz"), ("verified", "yesterday")):
        doc = copy.deepcopy(good)
        entry = next(iter(doc["streams"].values())) if isinstance(doc["streams"], dict) else doc["streams"][0]
        entry[field] = value
        doc["checksum"] = _checksum(doc)  # an edit made to pass: the values are what must be refused
        state.write_text(json.dumps(doc))
        proc = run_verify(shared_keys, archive.path, extra=("--state", str(state)))
        assert proc.returncode == 2, (field, proc.stdout, proc.stderr)
        assert f"{field} must be" in proc.stderr, proc.stderr
