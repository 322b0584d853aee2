"""Findings of independent attackers against `otel-audit verify`, each on archives the real pipeline
wrote and through the real CLI.

* A retired key's public key under a new name does not widen its window (a `.vkey` takes the window
  the keyring gives that public key; a JSON entry with another window is an error, exit 2).
* Two keys of one name are told apart by key id, and the report warns loudly where they sign.
* `--at` before the checkpoints is noted, the report echoes the time it judged at, and `--at` is
  parsed strictly (no space before Z, ASCII digits only).
* Records whose resource lost `service.name` are noted against the signed producer.
* An open stream with no valid checkpoint is worded as such (never "seq None").
"""

from __future__ import annotations

import base64
import json
import shutil
import time
from pathlib import Path

import pytest
from conftest import Archive, is_checkpoint, make_pipeline, mixed_record, seq_of, write_archive
from test_tamper_cli import run_verify, verify_json

from otel_audit import keys
from otel_audit.keys import Keyring, Signer, _load_private
from otel_audit.note import vkey


def _signed_by(signer: Signer, path: Path, n: int = 15) -> Path:
    provider, _ = make_pipeline(path, signer, checkpoint_every=10)
    for i in range(n):
        provider.get_logger("t").emit(**mixed_record(i))
    provider.shutdown()
    return path


@pytest.fixture
def retired_renamed(tmp_path: Path) -> tuple[Path, Path, Signer]:
    """A keys folder whose key 'old' was retired, and an archive its private key signed afterwards under
    the new name 'old-b' (the same Ed25519 key, another key id)."""
    d = tmp_path / "keys"
    keys.generate(d, "old")
    keys.rotate(d, "new", grace_s=0)
    time.sleep(0.01)
    renamed = Signer("old-b", _load_private(d / "private" / "old.pem"))
    return d, _signed_by(renamed, tmp_path / "forged.jsonl"), renamed


def _auditor(tmp_path: Path, d: Path) -> Path:
    auditor = tmp_path / "auditor"
    auditor.mkdir()
    shutil.copyfile(d / "keyring.json", auditor / "keyring.json")
    return auditor


def test_retired_key_renamed_in_a_vkey_stays_retired(retired_renamed: tuple[Path, Path, Signer],
                                                     tmp_path: Path) -> None:
    """`old-b.vkey` (the retired key 'old' under another name) takes old's window: the forged stream fails
    as signed outside the key's validity, never exit 0."""
    d, forged, renamed = retired_renamed
    auditor = _auditor(tmp_path, d)
    (auditor / "old-b.vkey").write_text(vkey(renamed.name, renamed.public_key) + "\n")
    ring = Keyring.load(auditor)
    old = next(k for k in ring if k.name == "old")
    b = next(k for k in ring if k.name == "old-b")
    assert (b.not_before, b.not_after) == (old.not_before, old.not_after) and b.not_after is not None
    proc = run_verify(auditor, forged)
    assert proc.returncode == 1, proc.stdout
    assert f"signed by key old-b (id {renamed.key_id.hex()}) at " in proc.stdout
    assert "outside its validity in your keyring" in proc.stdout


@pytest.mark.parametrize("window", ["none", "wider"])
def test_retired_key_renamed_in_json_with_another_window_exits_2(retired_renamed: tuple[Path, Path, Signer],
                                                                 tmp_path: Path, window: str) -> None:
    """A JSON entry giving the retired key's public key under another name with no (or another) window is a
    conflict: exit 2 naming both entries, nothing verified."""
    d, forged, renamed = retired_renamed
    auditor = _auditor(tmp_path, d)
    na = None if window == "none" else "2999-01-01T00:00:00Z"
    entry = {"name": renamed.name, "algorithm": "ed25519",
             "public_key": base64.b64encode(renamed.public_key).decode(), "not_before": None, "not_after": na}
    (auditor / "extra.json").write_text(json.dumps({"format": "otel-audit-keyring/v1", "keys": [entry]}))
    proc = run_verify(auditor, forged)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    err = proc.stderr
    assert "conflicting keyring entries for one public key" in err
    assert f"{auditor / 'keyring.json'}: keys[" in err and f"{auditor / 'extra.json'}: keys[0]" in err
    assert "old (id " in err and f"old-b (id {renamed.key_id.hex()}" in err
    assert proc.stdout == "" and "Traceback" not in err


def test_same_public_key_same_window_under_two_names_loads(retired_renamed: tuple[Path, Path, Signer],
                                                           tmp_path: Path) -> None:
    """The same public key under another name with the very same window widens nothing: it loads, and the
    forged stream still fails as expired."""
    d, forged, renamed = retired_renamed
    auditor = _auditor(tmp_path, d)
    old = next(e for e in json.loads((d / "keyring.json").read_text())["keys"] if e["name"] == "old")
    entry = {**old, "name": renamed.name, "key_id": renamed.key_id.hex(),
             "vkey": vkey(renamed.name, renamed.public_key)}
    (auditor / "extra.json").write_text(json.dumps({"format": "otel-audit-keyring/v1", "keys": [entry]}))
    assert run_verify(auditor, forged).returncode == 1


def test_two_keys_of_one_name_are_named_by_id_and_warned_of(tmp_path: Path) -> None:
    """An insider's own key under the producer's key name (k2.vkey) makes its stream verify (adding a key is
    trusting it), but every stream signed by a key of that name says which key id signed it, and warns."""
    honest_dir, insider_dir = tmp_path / "honest", tmp_path / "insider"
    honest = keys.generate(honest_dir, "k2")
    insider = keys.generate(insider_dir, "k2")
    a = write_archive(tmp_path / "a.jsonl", honest_dir, 20, checkpoint_every=10).path
    b = write_archive(tmp_path / "b.jsonl", insider_dir, 20, checkpoint_every=10).path
    auditor = tmp_path / "auditor"
    keys.export(honest_dir, auditor / "keyring.json")
    (auditor / "k2.vkey").write_text(vkey("k2", insider.public_key) + "\n")
    proc = run_verify(auditor, a, b)
    assert proc.returncode == 0, proc.stdout
    hid, iid = honest.key_id.hex(), insider.key_id.hex()
    assert f"signed by: k2 (id {hid})" in proc.stdout and f"signed by: k2 (id {iid})" in proc.stdout
    assert proc.stdout.count("note: KEY NAME SHARED: your keyring holds 2 different public keys named k2") == 2
    assert str(auditor / "k2.vkey") in proc.stdout
    code, doc = verify_json(auditor, a, b)
    assert code == 0
    for s in doc["streams"]:
        assert any(w.startswith("KEY NAME SHARED") for w in s["warnings"])
    # one key per name: no such note
    alone = run_verify(honest_dir / "keyring.json", a)
    assert alone.returncode == 0 and "KEY NAME SHARED" not in alone.stdout
    assert f"signed by: k2 (id {hid})" in alone.stdout


# -- --at --------------------------------------------------------------------------------------------


def test_at_before_the_checkpoints_is_noted_and_echoed(shared_keys: Path, tmp_path: Path) -> None:
    """--at earlier than a stream's checkpoints is a note (liveness judged at a time the archive postdates);
    text and JSON say the time liveness was judged at; without --at they say none."""
    w = write_archive(tmp_path / "a.jsonl", shared_keys, 20, checkpoint_every=10)
    last = max(Archive.load(w.path).checkpoint_seqs())
    for at, shown in (("0", "1970-01-01T00:00:00.000Z"), ("1970-01-01T00:00:01Z", "1970-01-01T00:00:01.000Z")):
        proc = run_verify(shared_keys, w.path, extra=("--allow-open", "--at", at))
        assert proc.returncode == 0, proc.stdout
        assert f"liveness judged at {shown} (--at / --now)" in proc.stdout
        assert f"note: liveness judged at {shown}, before this stream's checkpoints from seq 0 (" in proc.stdout
        assert f"to its last at seq {last} (" in proc.stdout
    code, doc = verify_json(shared_keys, w.path, extra=("--at", "1.5"))
    assert code == 0 and doc["liveness_at"] == "1970-01-01T00:00:01.500000000Z"
    assert any("the archive postdates TIME" in x for x in doc["streams"][0]["warnings"])
    code, doc = verify_json(shared_keys, w.path, extra=("--now",))
    assert code == 0 and doc["liveness_at"] is not None
    assert not any("postdates" in x for x in doc["streams"][0]["warnings"])
    code, doc = verify_json(shared_keys, w.path)
    assert code == 0 and doc["liveness_at"] is None
    assert "liveness judged" not in run_verify(shared_keys, w.path).stdout


@pytest.mark.parametrize("bad", ["2026-12-02T01:00:00 Z", "2026-12-02T01:00:00 +00:00", "１７９６１７４８１９",
                                 "2026-12-02T01:00:0٠Z", " 1714564800", "1714564800 ", "2024-02-30T00:00:00Z"])
def test_at_is_parsed_strictly(bad: str, shared_keys: Path, tmp_path: Path) -> None:
    w = write_archive(tmp_path / "a.jsonl", shared_keys, 5)
    proc = run_verify(shared_keys, w.path, extra=("--at", bad))
    assert proc.returncode == 2, proc.stdout
    assert "--at" in proc.stderr and repr(bad) in proc.stderr and "Traceback" not in proc.stderr


# -- a resource stripped of service.name ----------------------------------------------------------------


@pytest.mark.parametrize("how", ["attribute", "resource"])
def test_records_without_service_name_are_noted(how: str, shared_keys: Path, tmp_path: Path) -> None:
    """Records whose resource lacks service.name (or that have no resource) while the signed producer names one
    verify, with a note naming the seqs and the signed service.name."""
    w = write_archive(tmp_path / "a.jsonl", shared_keys, 30, checkpoint_every=10)
    ar = Archive.load(w.path)
    ar.explode()
    stripped = []
    for doc in ar.lines:
        rec = doc["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]
        if is_checkpoint(rec) or not 5 <= seq_of(rec) <= 8:
            continue
        rl = doc["resourceLogs"][0]
        if how == "resource":
            del rl["resource"]
        else:
            rl["resource"] = {"attributes": [a for a in rl["resource"]["attributes"] if a["key"] != "service.name"]}
        stripped.append(seq_of(rec))
    ar.save()
    assert stripped == [5, 6, 7, 8]
    proc = run_verify(shared_keys, w.path)
    assert proc.returncode == 0, proc.stdout
    assert ("note: records at seq 5-8 (4 record(s), e.g. " in proc.stdout
            and "are under a resource without service.name (or no resource), though this stream's signed "
                "checkpoints name service.name='otel-audit-tests'" in proc.stdout)
    pristine = write_archive(tmp_path / "b.jsonl", shared_keys, 10)
    assert "without service.name" not in run_verify(shared_keys, pristine.path).stdout


# -- wording --------------------------------------------------------------------------------------------


def test_open_stream_without_valid_checkpoint_is_worded(shared_keys: Path, tmp_path: Path) -> None:
    """A stream whose checkpoints are all gone says so, never 'seq None'."""
    w = write_archive(tmp_path / "a.jsonl", shared_keys, 20, checkpoint_every=10)
    ar = Archive.load(w.path)
    for rec in [r for r in ar.records() if is_checkpoint(r)]:
        ar.remove(rec)
    ar.save()
    proc = run_verify(shared_keys, w.path, extra=("--allow-open",))
    assert proc.returncode == 1
    assert "None" not in proc.stdout, proc.stdout
    assert "(no valid checkpoint)" in proc.stdout
