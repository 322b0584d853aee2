"""The keyring only grows in meaning, and key handovers are cosigned.

* No file widens a key's validity: a retired key's own `.vkey` next to the keyring keeps it retired;
  two entries for one key that differ are an error (exit 2) naming both files and the key.
* `keys generate` refuses a folder that already has a current key (that is `keys rotate`'s job).
* Rotation while a real producer runs: the first checkpoint under the new key is signed by the old
  and the new key; verify reports the handover. A restart after a rotation cosigns its start.
  A bad signature by a known key fails a checkpoint however many others verify.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    Archive,
    child_env,
    is_checkpoint,
    make_pipeline,
    mixed_record,
    only_stream,
    reseal,
    seq_of,
    verify,
)
from test_tamper_cli import run_verify, verify_json

from otel_audit import keys
from otel_audit.errors import KeyringError
from otel_audit.keys import Keyring, Signer
from otel_audit.note import format_note, parse_note, vkey


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "otel_audit.cli", *args], capture_output=True, text=True,
                          timeout=120, env=child_env(), check=False)


def signers_of(path: Path) -> dict[int, list[str]]:
    """seq -> names on the signature lines of each checkpoint of an archive."""
    return {seq_of(r): [s.name for s in parse_note(r["body"]["stringValue"]).signatures]
            for r in Archive.load(path).records() if is_checkpoint(r)}


# -- no file widens a key's validity ---------------------------------------------------------------


class PublicKeyInfo:
    """A key as the tests name it."""

    def __init__(self, name: str, kid: str, vkey_line: str) -> None:
        self.name, self.kid, self.vkey = name, kid, vkey_line


@pytest.fixture
def retired(tmp_path: Path) -> tuple[Path, Path, PublicKeyInfo]:
    """A keys folder whose key 'old' was retired (rotated with no grace), and an archive the old key
    signed afterwards (a producer that kept it)."""
    d = tmp_path / "keys"
    keys.generate(d, "old")
    old = Signer.from_keys_dir(d, "old")
    keys.rotate(d, "new", grace_s=0)
    time.sleep(0.01)
    provider, _ = make_pipeline(tmp_path / "a.jsonl", old, checkpoint_every=10)
    for i in range(15):
        provider.get_logger("t").emit(**mixed_record(i))
    provider.shutdown()
    return d, tmp_path / "a.jsonl", PublicKeyInfo(old.name, old.key_id.hex(), vkey(old.name, old.public_key))


@pytest.mark.parametrize("vkey_file", ["a-old.vkey", "zz-old.vkey"])
def test_retired_key_with_its_own_vkey_stays_retired(retired: tuple[Path, Path, PublicKeyInfo], tmp_path: Path,
                                                     vkey_file: str) -> None:
    """A `.vkey` of a retired key next to the keyring (read before or after it) does not make it valid
    again: checkpoints it signed after its window fail as expired, naming the key and its window."""
    d, archive, old = retired
    auditor = tmp_path / "auditor"
    auditor.mkdir()
    shutil.copyfile(d / "keyring.json", auditor / "keyring.json")
    (auditor / vkey_file).write_text(old.vkey + "\n")
    ring = Keyring.load(auditor)
    k = next(k for k in ring if k.name == "old")
    assert k.not_after is not None, "the .vkey took the keyring's window"
    proc = run_verify(auditor, archive)
    assert proc.returncode == 1, proc.stdout
    assert f"signed by key old (id {old.kid}) at " in proc.stdout
    assert "outside its validity in your keyring (valid from " in proc.stdout
    code, doc = verify_json(auditor, archive)
    s = doc["streams"][0]
    assert code == 1 and s["expired_keys"] and s["unknown_keys"] == []
    assert {f["finding"] for f in s["key_findings"]} == {"expired"}
    assert all(f["keys"][0].startswith(f"old (id {old.kid}") for f in s["key_findings"])


def test_vkey_alone_is_a_key_without_window(retired: tuple[Path, Path, PublicKeyInfo], tmp_path: Path) -> None:
    """A `.vkey` given alone (no keyring says otherwise) is a key without a validity window: it verifies."""
    _, archive, old = retired
    (tmp_path / "only.vkey").write_text(old.vkey + "\n")
    assert run_verify(tmp_path / "only.vkey", archive).returncode == 0


def test_conflicting_keyring_entries_exit_2(tmp_path: Path) -> None:
    """An export from before a rotation (key open-ended) next to one from after it (key ended): one key with
    two windows is an error, exit 2, naming both files and the key; nothing is verified."""
    d = tmp_path / "keys"
    first = keys.generate(d, "k1")
    auditor = tmp_path / "auditor"
    keys.export(d, auditor / "before-rotation.json")
    keys.rotate(d, "k2", grace_s=60)
    keys.export(d, auditor / "keyring.json")
    provider, _ = make_pipeline(tmp_path / "a.jsonl", d)
    provider.get_logger("t").emit(**mixed_record(1))
    provider.shutdown()
    proc = run_verify(auditor, tmp_path / "a.jsonl")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    err = proc.stderr
    assert "conflicting keyring entries for key k1" in err and first.key_id.hex() in err
    assert str(auditor / "before-rotation.json") in err and str(auditor / "keyring.json") in err
    assert "Traceback" not in err and proc.stdout == ""
    listed = cli("keys", "list", "--dir", str(auditor))
    assert listed.returncode == 2 and "conflicting keyring entries" in listed.stderr
    with pytest.raises(KeyringError, match="different validity windows"):
        Keyring.load(auditor)


def test_same_key_twice_identically_and_distinct_keys_of_one_name(tmp_path: Path) -> None:
    """The same entry in two files is one key; two keys of one name (distinct key ids) are two keys."""
    keys.generate(tmp_path / "a", "gw")
    keys.generate(tmp_path / "b", "gw")
    folder = tmp_path / "ring"
    folder.mkdir()
    shutil.copyfile(tmp_path / "a" / "keyring.json", folder / "keyring.json")
    shutil.copyfile(tmp_path / "a" / "keyring.json", folder / "copy.json")
    assert len(Keyring.load(folder)) == 1
    shutil.copyfile(tmp_path / "b" / "keyring.json", folder / "other-gw.json")
    ring = Keyring.load(folder)
    assert len(ring) == 2 and {k.name for k in ring} == {"gw"}


# -- keys generate ------------------------------------------------------------------------------------


def test_keys_generate_twice_refuses(tmp_path: Path) -> None:
    """`keys generate` on a folder with a current key exits 2 pointing at `keys rotate` and adds nothing;
    --add adds a second current key on purpose; --help says so."""
    d = tmp_path / "keys"
    assert cli("keys", "generate", "--dir", str(d), "--name", "k1").returncode == 0
    again = cli("keys", "generate", "--dir", str(d), "--name", "k2")
    assert again.returncode == 2
    assert "already holds a current signing key" in again.stderr and "k1 (id " in again.stderr
    assert f"otel-audit keys rotate --dir {d}" in again.stderr and "--add" in again.stderr
    assert [k.name for k in Keyring.load(d)] == ["k1"] and not (d / "private" / "k2.pem").exists()
    added = cli("keys", "generate", "--dir", str(d), "--name", "k2", "--add")
    assert added.returncode == 0, added.stderr
    assert sorted(k.name for k in Keyring.load(d)) == ["k1", "k2"]
    helptext = cli("keys", "generate", "--help").stdout
    assert "keys rotate" in helptext and "--add" in helptext


# -- handovers ------------------------------------------------------------------------------------------

PRODUCER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from otel_audit.exporters.file import FileLogRecordExporter
    from otel_audit.processors.signing import SigningProcessor

    keys, state, path, stop = sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])
    provider = LoggerProvider()
    sp = SigningProcessor(keys, downstream=SimpleLogRecordProcessor(FileLogRecordExporter(path)),
                          checkpoint_every=1000, checkpoint_interval=0.2, state_dir=state)
    provider.add_log_record_processor(sp)
    logger = provider.get_logger("rotation-test")
    print(sp.stream_id, flush=True)
    i = 0
    while not stop.exists():
        logger.emit(event_name="gen_ai.request", body=f"request {i}", attributes={"i": i})
        i += 1
        if i == 10:
            print("running", flush=True)
        time.sleep(0.02)
    provider.shutdown()
    print("closed", flush=True)
    """
)


def run_producer(tmp_path: Path, keys_dir: Path, during: Any = None) -> str:
    """A producer child process: runs, `during()` happens while it writes, then it closes cleanly."""
    script, stop = tmp_path / "producer.py", tmp_path / "stop"
    script.write_text(PRODUCER)
    stop.unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, str(script), str(keys_dir), str(tmp_path / "state"),
                             str(tmp_path / "audit.jsonl"), str(stop)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=child_env())
    try:
        assert proc.stdout is not None
        sid = proc.stdout.readline().strip()
        assert proc.stdout.readline().strip() == "running"
        time.sleep(0.5)
        if during is not None:
            during()
            time.sleep(1.0)  # the next time checkpoints are made under the new key
        stop.touch()
        assert proc.stdout.read().strip() == "closed"
        assert proc.wait(timeout=60) == 0
        return sid
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def test_rotation_while_a_producer_runs_is_cosigned(tmp_path: Path) -> None:
    """`keys rotate` while a producer runs: its archive verifies; the first checkpoint under the new key
    carries signatures by both keys, the ones before the old key's alone, the ones after the new key's;
    verify names the handover."""
    d = tmp_path / "keys"
    keys.generate(d, "k1")

    def rotate() -> None:
        out = cli("keys", "rotate", "--dir", str(d), "--name", "k2", "--grace", "1h")
        assert out.returncode == 0, out.stderr

    run_producer(tmp_path, d, rotate)
    by_seq = signers_of(tmp_path / "audit.jsonl")
    seqs = sorted(by_seq)
    handover = next(s for s in seqs if "k2" in by_seq[s])
    assert by_seq[handover] == ["k2", "k1"]
    assert all(by_seq[s] == ["k1"] for s in seqs if s < handover)
    assert all(by_seq[s] == ["k2"] for s in seqs if s > handover) and seqs[-1] > handover
    code, doc = verify_json(d, tmp_path / "audit.jsonl")
    assert code == 0, doc["streams"][0]["problems"]
    s = doc["streams"][0]
    ids = {k.name: f"{k.name} (id {k.key_id.hex()})" for k in Keyring.load(d)}
    assert s["handovers"] == [{"seq": handover, "from": ["k1"], "to": ["k2"], "from_keys": [ids["k1"]],
                               "to_keys": [ids["k2"]], "cosigned": True}]
    assert not any("not cosigned" in w for w in s["warnings"])
    text = run_verify(d, tmp_path / "audit.jsonl").stdout
    assert f"key handover: key changed from {ids['k1']} to {ids['k2']} at seq {handover}, cosigned by both" in text
    # an auditor who only has the old keyring still verifies the handover checkpoint itself
    old_only = tmp_path / "old-ring.json"
    old_only.write_text(json.dumps({"format": keys.FORMAT, "keys": [
        k.to_json() for k in Keyring.load(d) if k.name == "k1"]}))
    _, stale = verify_json(old_only, tmp_path / "audit.jsonl")
    assert stale["streams"][0]["unknown_keys"] == [s for s in seqs if s > handover]


def test_restart_after_rotation_cosigns_the_start(tmp_path: Path) -> None:
    """A producer closed under k1, the keys rotated while it was down, restarted: the new stream's start
    checkpoint is signed by k2 and k1, and verify names the handover between the two streams."""
    d = tmp_path / "keys"
    keys.generate(d, "k1")
    first = run_producer(tmp_path, d)
    assert cli("keys", "rotate", "--dir", str(d), "--name", "k2", "--grace", "1h").returncode == 0
    second = run_producer(tmp_path, d)
    code, doc = verify_json(d, tmp_path / "audit.jsonl")
    assert code == 0, [s["problems"] for s in doc["streams"]]
    s2 = next(s for s in doc["streams"] if s["stream_id"] == second)
    assert s2["predecessor"] == first
    ids = {k.name: f"{k.name} (id {k.key_id.hex()})" for k in Keyring.load(d)}
    assert s2["handovers"] == [{"seq": 0, "from": ["k1"], "to": ["k2"], "from_keys": [ids["k1"]],
                                "to_keys": [ids["k2"]], "cosigned": True, "from_stream": first}]
    start = next(r for r in Archive.load(tmp_path / "audit.jsonl").records()
                 if is_checkpoint(r) and seq_of(r) == 0 and second in r["body"]["stringValue"])
    assert [x.name for x in parse_note(start["body"]["stringValue"]).signatures] == ["k2", "k1"]


def test_key_change_without_the_old_private_key_is_a_warning(tmp_path: Path) -> None:
    """When the old key's private file is gone at the switch, no cosignature: it verifies with a warning
    that the key change was not cosigned."""
    d = tmp_path / "keys"
    keys.generate(d, "k1")
    provider, sp = make_pipeline(tmp_path / "a.jsonl", d, checkpoint_every=10)
    log = provider.get_logger("t")
    for i in range(15):
        log.emit(**mixed_record(i))
    keys.rotate(d, "k2", grace_s=3600)
    (d / "private" / "k1.pem").unlink()
    for i in range(15):
        log.emit(**mixed_record(i))
    provider.shutdown()
    assert all(len(n) == 1 for n in signers_of(tmp_path / "a.jsonl").values())
    code, doc = verify_json(d, tmp_path / "a.jsonl")
    assert code == 0
    s = doc["streams"][0]
    assert [h["cosigned"] for h in s["handovers"]] == [False]
    assert any("signing key changed from k1" in w and "not cosigned" in w for w in s["warnings"])


def test_bad_signature_by_a_known_key_fails_a_cosigned_checkpoint(tmp_path: Path) -> None:
    """The end checkpoint cosigned at a rotation, with the old key's signature altered (digest resealed):
    the new key's valid signature does not save it, a known key's bad signature fails, naming that key."""
    d = tmp_path / "keys"
    k1 = keys.generate(d, "k1")
    provider, sp = make_pipeline(tmp_path / "a.jsonl", d, checkpoint_every=1000)
    for i in range(5):
        provider.get_logger("t").emit(**mixed_record(i))
    keys.rotate(d, "k2", grace_s=3600)
    provider.shutdown()
    end = sp.seq - 1
    archive = Archive.load(tmp_path / "a.jsonl")
    assert signers_of(archive.path)[end] == ["k2", "k1"]
    assert verify_json(d, archive.path)[0] == 0
    rec = archive.find(end)
    sn = parse_note(rec["body"]["stringValue"])
    new_sig, old_sig = sn.signatures
    bent = type(old_sig)(old_sig.name, old_sig.key_id, bytes([old_sig.signature[0] ^ 1]) + old_sig.signature[1:])
    rec["body"]["stringValue"] = format_note(sn.text, [new_sig, bent])
    reseal(rec)
    archive.save()
    code, doc = verify_json(d, archive.path)
    s = doc["streams"][0]
    assert code == 1 and s["bad_signatures"] == [end]
    assert any(p.startswith(f"bad signature by key k1 (id {k1.key_id.hex()}) on checkpoint(s) at seq {end}")
               for p in s["problems"])
    ring = Keyring.load(d)
    assert only_stream(verify(archive.path, ring)).bad_signatures == [end]


def test_keys_file_permissions_unchanged(tmp_path: Path) -> None:
    """generate still writes 0600 private keys in a 0700 folder (refusing does not touch them)."""
    d = tmp_path / "keys"
    keys.generate(d, "k1")
    with pytest.raises(KeyringError, match="keys rotate"):
        keys.generate(d, "k2", refuse_current=True)
    assert oct(os.stat(d / "private" / "k1.pem").st_mode & 0o777) == "0o600"
    assert sorted(p.name for p in (d / "private").iterdir()) == ["k1.pem"]
