"""`otel-audit verify --state FILE`: what one audit verified, the next one holds the archive to.

Archives are written by the real pipeline (conftest `write_archive`, `make_pipeline`); producers
that restart get a second stream naming the first through their state_dir. Attacks no archive alone
shows are made on disk as an attacker would: the newest stream deleted, a tail cut back to an
earlier checkpoint, a history rewritten and re-signed with the real private key. Most cases run the
real CLI in a child process (`run_verify` / `verify_json`, as in test_tamper_cli.py).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    Archive,
    Written,
    attr_value,
    is_checkpoint,
    make_pipeline,
    mixed_record,
    reseal,
    seq_of,
    stream_of,
    verify,
    write_archive,
)
from test_tamper_cli import run_verify, verify_json

from otel_audit.canonical import DIGEST
from otel_audit.keys import Keyring, Signer
from otel_audit.merkle import CompactRange
from otel_audit.note import format_note, parse_note
from otel_audit.verify.state import FORMAT, StateError

END = 307  # the pristine archive: 300 events, checkpoints at 0, after every 50 events, and the end
K = 123


def state_args(state: Path, *more: str) -> tuple[str, ...]:
    return ("--state", str(state), *more)


@pytest.fixture
def copy_of(pristine: Written, tmp_path: Path) -> Archive:
    dest = tmp_path / "audit.jsonl"
    shutil.copyfile(pristine.path, dest)
    return Archive.load(dest)


def two_runs(tmp_path: Path, keys: Path, name: str = "audit.jsonl") -> tuple[Path, str, str]:
    """A producer that ran twice (a clean restart): stream `first`, then `second` naming it."""
    path = tmp_path / name
    a = write_archive(path, keys, 60, checkpoint_every=20, state_dir=tmp_path / "producer-state")
    b = write_archive(path, keys, 25, checkpoint_every=20, state_dir=tmp_path / "producer-state")
    return path, a.stream_id, b.stream_id


# -- first use, and the same input again --------------------------------------------------------------


def test_first_run_creates_the_state_and_the_same_input_verifies_again(copy_of: Archive, pristine: Written,
                                                                       shared_keys: Path, tmp_path: Path) -> None:
    """The first run creates the file (exit 0), recording the stream's end checkpoint; a second run on the
    same input exits 0 and leaves the lineage checked, not advanced."""
    state = tmp_path / "audit-state.json"
    code, doc = verify_json(shared_keys, copy_of.path, extra=state_args(state))
    assert code == 0, doc
    assert doc["state"]["created"] and doc["state"]["updated"]
    assert doc["state"]["new"] == [pristine.stream_id] and doc["state"]["problems"] == []
    saved = json.loads(state.read_text())
    assert saved["format"] == FORMAT
    (lin,) = saved["lineages"]
    assert lin["streams"] == [pristine.stream_id]
    assert (lin["head"]["stream"], lin["head"]["size"], lin["head"]["state"]) == (pristine.stream_id, END, "closed")
    code, doc = verify_json(shared_keys, copy_of.path, extra=state_args(state))
    assert code == 0, doc
    st = doc["state"]
    assert (st["created"], st["updated"], st["checked"], st["advanced"], st["new"]) == (
        False, True, [pristine.stream_id], [], [])
    text = run_verify(shared_keys, copy_of.path, extra=state_args(state))
    assert text.returncode == 0 and f"state {state}: 1 lineage(s) known, 1 checked" in text.stdout


# -- the attacks an archive alone cannot show ---------------------------------------------------------


def test_newest_stream_deleted_is_caught(shared_keys: Path, tmp_path: Path) -> None:
    """After a restart the archive holds two streams; deleting the newest one leaves a clean, closed stream
    that verifies alone (a known limit) but fails against the state, naming the deleted stream."""
    path, first, second = two_runs(tmp_path, shared_keys)
    state = tmp_path / "state.json"
    assert verify_json(shared_keys, path, extra=state_args(state))[0] == 0
    arch = Archive.load(path)
    for rec in [r for r in arch.records() if stream_of(r) == second]:
        arch.remove(rec)
    arch.save()
    before = state.read_bytes()
    assert verify_json(shared_keys, path)[0] == 0  # without the state nothing shows it
    code, doc = verify_json(shared_keys, path, extra=state_args(state))
    assert code == 1 and doc["result"] == "failed"
    (s,) = doc["streams"]
    assert s["stream_id"] == first and s["status"] == "failed"
    assert any("the newest stream verified before is gone" in p and second in p for p in s["problems"]), s
    assert doc["state"]["updated"] is False and "left as it was" in doc["state"]["note"]
    assert state.read_bytes() == before
    proc = run_verify(shared_keys, path, extra=state_args(state))
    assert proc.returncode == 1 and second in proc.stdout and "not updated" in proc.stdout


def test_tail_removed_between_audits_is_caught_even_with_allow_open(copy_of: Archive, shared_keys: Path,
                                                                    tmp_path: Path) -> None:
    """Cutting the archive back to an earlier checkpoint (the end removed) reads as a live producer with
    --allow-open; against the state it is shorter than when verified: exit 1."""
    state = tmp_path / "state.json"
    assert verify_json(shared_keys, copy_of.path, extra=state_args(state))[0] == 0
    cut = 204  # a size checkpoint: what is left ends in a validly signed checkpoint
    assert cut in copy_of.checkpoint_seqs()
    for rec in [r for r in copy_of.records() if seq_of(r) > cut]:
        copy_of.remove(rec)
    copy_of.save()
    assert verify_json(shared_keys, copy_of.path, extra=("--allow-open",))[0] == 0  # the known limit
    code, doc = verify_json(shared_keys, copy_of.path, extra=state_args(state, "--allow-open"))
    assert code == 1
    (s,) = doc["streams"]
    assert any(p.startswith("shorter than when verified on ") and f"seq {cut}" in p and f"seq {END}" in p
               and p.endswith("tail removed") for p in s["problems"]), s["problems"]


def resign_from(arch: Archive, stream_id: str, seq: int, signer: Signer) -> None:
    """The key holder's forgery: change the record at `seq`, re-chain every later record and re-sign every
    later checkpoint over the recomputed tree (root of the leaves below it, chain = the previous digest)."""
    recs = sorted((r for r in arch.records() if stream_of(r) == stream_id), key=seq_of)
    tree = CompactRange()
    prev: bytes | None = None
    for rec in recs:
        s = seq_of(rec)
        if s < seq:
            tree.append(bytes.fromhex(str(attr_value(rec, DIGEST))))
            continue
        if s == seq:
            assert not is_checkpoint(rec)
            rec["body"] = {"stringValue": "nothing happened here"}
        if is_checkpoint(rec):
            sn = parse_note(rec["body"]["stringValue"])
            assert sn.checkpoint.body() == sn.text
            body = dataclasses.replace(sn.checkpoint, root=tree.root(), chain=prev).body()
            rec["body"] = {"stringValue": format_note(body, [signer.sign(body.encode())])}
        prev = reseal(rec, prev)
        tree.append(prev)
    arch.save()


def test_resigned_history_passes_alone_and_fails_against_the_state(copy_of: Archive, pristine: Written,
                                                                   shared_keys: Path, tmp_path: Path) -> None:
    """A record rewritten and every later checkpoint re-signed with the real private key is a valid archive
    (no verifier can tell from it alone); the state remembers the root at size 307: exit 1."""
    state = tmp_path / "state.json"
    assert verify_json(shared_keys, copy_of.path, extra=state_args(state))[0] == 0
    resign_from(copy_of, pristine.stream_id, K, Signer.from_keys_dir(shared_keys))
    code, doc = verify_json(shared_keys, copy_of.path)
    assert code == 0, doc["streams"][0]["problems"]  # the known limit: a re-signed history verifies
    code, doc = verify_json(shared_keys, copy_of.path, extra=state_args(state))
    assert code == 1
    (s,) = doc["streams"]
    assert any("history differs from the one verified on " in p and f"at size {END}: rewritten or re-signed" in p
               for p in s["problems"]), s["problems"]
    assert doc["state"]["problems"] and doc["state"]["updated"] is False


def test_a_restored_chain_state_forks_the_lineage(shared_keys: Path, tmp_path: Path) -> None:
    """A producer's state restored from a backup makes a second successor of the same stream; an archive
    showing the first stream with that other successor fails: the newest stream verified is gone and
    the lineage forks from what was verified."""
    pstate = tmp_path / "producer-state"
    path = tmp_path / "audit.jsonl"
    first = write_archive(path, shared_keys, 40, checkpoint_every=20, state_dir=pstate).stream_id
    shutil.copytree(pstate, tmp_path / "backup")
    second = write_archive(path, shared_keys, 10, checkpoint_every=20, state_dir=pstate).stream_id
    state = tmp_path / "state.json"
    assert verify_json(shared_keys, path, extra=state_args(state))[0] == 0
    shutil.rmtree(pstate)
    shutil.copytree(tmp_path / "backup", pstate)
    other_path = tmp_path / "other.jsonl"
    shutil.copyfile(path, other_path)
    arch = Archive.load(other_path)
    for rec in [r for r in arch.records() if stream_of(r) == second]:
        arch.remove(rec)
    arch.save()
    other = write_archive(other_path, shared_keys, 10, checkpoint_every=20, state_dir=pstate).stream_id
    assert verify_json(shared_keys, other_path)[0] == 0  # alone it is a clean restart
    code, doc = verify_json(shared_keys, other_path, extra=state_args(state))
    assert code == 1
    by = {s["stream_id"]: s for s in doc["streams"]}
    assert any("forked lineage" in p and second in p for p in by[other]["problems"]), by[other]["problems"]
    assert any("the newest stream verified before is gone" in p for p in by[first]["problems"])


# -- the state file itself -------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["garbage", "truncated", "edited", "format", "empty"])
def test_damaged_state_file_exits_2_and_is_left_as_it_was(copy_of: Archive, shared_keys: Path, tmp_path: Path,
                                                          damage: str) -> None:
    """A garbled, cut, hand-edited (checksum), foreign-format or empty state file is unusable input: exit 2
    with a message naming the file, never a silent fresh start; the file stays as it was."""
    state = tmp_path / "state.json"
    assert verify_json(shared_keys, copy_of.path, extra=state_args(state))[0] == 0
    good = state.read_bytes()
    if damage == "garbage":
        bad = b"\x00\xff not json"
    elif damage == "truncated":
        bad = good[: len(good) // 2]
    elif damage == "edited":
        doc = json.loads(good)
        (sid,) = doc["streams"]
        doc["streams"][sid]["size"] = 100  # what an attacker who wants a shorter history accepted would do
        bad = json.dumps(doc).encode()
    elif damage == "format":
        bad = good.replace(FORMAT.encode(), b"otel-audit-state/v9")
    else:
        bad = b""
    state.write_bytes(bad)
    proc = run_verify(shared_keys, copy_of.path, extra=state_args(state))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert str(state) in proc.stderr and "Traceback" not in proc.stderr
    assert ("otel-audit-state/v9" in proc.stderr) if damage == "format" else ("damaged state file" in proc.stderr)
    assert state.read_bytes() == bad


def test_state_in_a_missing_folder_exits_2(copy_of: Archive, shared_keys: Path, tmp_path: Path) -> None:
    """A state path whose folder does not exist is a usage error, found before the input is read."""
    proc = run_verify(shared_keys, copy_of.path, extra=state_args(tmp_path / "nope" / "state.json"))
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def test_a_failing_first_run_creates_no_state(copy_of: Archive, shared_keys: Path, tmp_path: Path) -> None:
    """Only a run that verifies writes the state: a tampered input on first use leaves no file."""
    copy_of.find(K)["body"] = {"stringValue": "edited"}
    copy_of.save()
    state = tmp_path / "state.json"
    code, doc = verify_json(shared_keys, copy_of.path, extra=state_args(state))
    assert code == 1 and not state.exists()
    assert doc["state"]["updated"] is False and "not created" in doc["state"]["note"]


def test_state_error_is_an_input_error() -> None:
    """A state problem is unusable input (exit 2 through the CLI)."""
    from otel_audit.errors import InputError

    assert issubclass(StateError, InputError)


# -- the lineage goes on ---------------------------------------------------------------------------


def test_a_later_archive_that_extends_the_lineage_advances_the_state(shared_keys: Path, tmp_path: Path) -> None:
    """The producer restarts after the first audit: the next audit, on the grown archive, exits 0 and the
    lineage's head moves to the new stream."""
    pstate = tmp_path / "producer-state"
    path = tmp_path / "audit.jsonl"
    first = write_archive(path, shared_keys, 40, checkpoint_every=20, state_dir=pstate)
    state = tmp_path / "state.json"
    assert verify_json(shared_keys, path, extra=state_args(state))[0] == 0
    second = write_archive(path, shared_keys, 30, checkpoint_every=20, state_dir=pstate)
    code, doc = verify_json(shared_keys, path, extra=state_args(state))
    assert code == 0, doc
    assert doc["state"]["advanced"] == [first.stream_id] and doc["state"]["new"] == []
    (lin,) = json.loads(state.read_text())["lineages"]
    assert lin["streams"] == [first.stream_id, second.stream_id]
    assert (lin["head"]["stream"], lin["head"]["size"]) == (second.stream_id, second.end_seq)


def test_a_live_stream_verified_open_and_later_grown(shared_keys: Path, tmp_path: Path) -> None:
    """A stream audited while its producer runs (--allow-open) is remembered at its latest checkpoint; when
    it has grown, the root at the remembered size is recomputed from the longer stream's leaves: exit 0,
    advanced. Cut back below that size afterwards, it fails."""
    path = tmp_path / "audit.jsonl"
    provider, sp = make_pipeline(path, shared_keys, checkpoint_every=20)
    log = provider.get_logger("t")
    for i in range(70):
        log.emit(**mixed_record(i))
    provider.force_flush()
    state = tmp_path / "state.json"
    ring = Keyring.load(shared_keys)
    rep = verify(path, ring, allow_open=True, state=state)
    assert rep.ok and rep.streams[0].state == "open"
    open_size = json.loads(state.read_text())["streams"][sp.stream_id]["size"]
    assert open_size == max(Archive.load(path).checkpoint_seqs()) > 63  # force_flush's checkpoint
    for i in range(70, 120):
        log.emit(**mixed_record(i))
    provider.shutdown()
    rep = verify(path, ring, state=state)
    assert rep.ok, rep.streams[0].problems
    assert rep.state is not None and rep.state["advanced"] == [sp.stream_id]
    assert json.loads(state.read_text())["streams"][sp.stream_id]["state"] == "closed"
    arch = Archive.load(path)
    for rec in [r for r in arch.records() if seq_of(r) > 42]:
        arch.remove(rec)
    arch.save()
    rep = verify(path, ring, allow_open=True, state=state)
    assert not rep.ok and any("shorter than when verified" in p for p in rep.streams[0].problems)


def test_daily_archives_one_stream_each_with_partial(shared_keys: Path, tmp_path: Path) -> None:
    """Archives cut per day hold one stream each: the next day's, verified alone with --partial, follows
    the head remembered from the day before, so the lineage advances (nothing is outside the input)."""
    pstate = tmp_path / "producer-state"
    day1, day2 = tmp_path / "day1.jsonl", tmp_path / "day2.jsonl"
    a = write_archive(day1, shared_keys, 30, checkpoint_every=20, state_dir=pstate).stream_id
    write_archive(day2, shared_keys, 30, checkpoint_every=20, state_dir=pstate)
    state = tmp_path / "state.json"
    assert verify_json(shared_keys, day1, extra=state_args(state))[0] == 0
    code, doc = verify_json(shared_keys, day2, extra=state_args(state, "--partial"))
    assert code == 0, doc
    assert doc["state"]["advanced"] == [a] and doc["state"]["outside"] == []
    # day 1 again, after day 2 was verified: its newest stream is not there and nothing follows it
    code, doc = verify_json(shared_keys, day1, extra=state_args(state, "--partial"))
    assert code == 1 and any("the newest stream verified before is gone" in p for p in doc["streams"][0]["problems"])


def test_a_lineage_absent_from_the_input_fails_unless_partial(copy_of: Archive, pristine: Written,
                                                             shared_keys: Path, tmp_path: Path) -> None:
    """A lineage the state knows that the input lacks wholly fails (it may have been deleted whole); with
    --partial it is listed outside the input, the new lineage is added and the old one kept."""
    state = tmp_path / "state.json"
    assert verify_json(shared_keys, copy_of.path, extra=state_args(state))[0] == 0
    other = write_archive(tmp_path / "other.jsonl", shared_keys, 20, checkpoint_every=10)
    code, doc = verify_json(shared_keys, other.path, extra=state_args(state))
    assert code == 1 and doc["streams"][0]["status"] == "verified"
    assert any(pristine.stream_id in p and "not in the input" in p and "--partial" in p for p in doc["problems"])
    code, doc = verify_json(shared_keys, other.path, extra=state_args(state, "--partial"))
    assert code == 0, doc
    st: dict[str, Any] = doc["state"]
    assert st["outside"] == [pristine.stream_id] and st["new"] == [other.stream_id]
    saved = json.loads(state.read_text())
    assert sorted(saved["streams"]) == sorted([pristine.stream_id, other.stream_id])
    assert run_verify(shared_keys, copy_of.path, other.path, extra=state_args(state)).returncode == 0


# -- records declared away after an audit saw them (gap markers) -------------------------------------


def _item(arch: Archive, stream: str, seq: int) -> tuple[str, int, str, str]:
    """What a destination's rejection names of one record: (stream, seq, prev hex, digest hex)."""
    rec = arch.find(seq, stream)
    return (stream, seq, str(attr_value(rec, "audit.integrity.prev")), str(attr_value(rec, "audit.integrity.digest")))


def _delete(path: Path, stream: str, seqs: set[int]) -> None:
    arch = Archive.load(path)
    for rec in [r for r in arch.records() if stream_of(r) == stream and seq_of(r) in seqs]:
        arch.remove(rec)
    arch.save()


def test_records_a_rejection_declared_but_the_audit_saw_present_cannot_be_deleted_later(
        shared_keys: Path, tmp_path: Path) -> None:
    """BREAK B2 (no key needed): a second destination rejected seqs 5-6 (a signed gap marker), the file archive
    still holds them, the first audit verifies; deleting 5-6 from the file afterwards reads alone as declared
    drops (exit 0), but the state saw them present: exit 1, naming the seqs, state left as it was."""
    path = tmp_path / "audit.jsonl"
    provider, sp = make_pipeline(path, shared_keys, checkpoint_every=10, simple=True)
    log = provider.get_logger("t")
    for i in range(15):
        log.emit(**mixed_record(i))
    arch = Archive.load(path)
    sp.record_rejected("webhook/siem", [_item(arch, sp.stream_id, 5), _item(arch, sp.stream_id, 6)])
    for i in range(15, 30):
        log.emit(**mixed_record(i))
    provider.shutdown()
    state = tmp_path / "state.json"
    code, doc = verify_json(shared_keys, path, extra=state_args(state))
    assert code == 0, doc
    assert json.loads(state.read_text())["streams"][sp.stream_id]["absent"] == []
    _delete(path, sp.stream_id, {5, 6})
    assert verify_json(shared_keys, path)[0] == 0  # alone: dropped (declared)
    before = state.read_bytes()
    code, doc = verify_json(shared_keys, path, extra=state_args(state))
    assert code == 1
    (s,) = doc["streams"]
    assert any(p.startswith("records present when verified on ") and "are gone: seq 5-6" in p
               for p in s["problems"]), s["problems"]
    assert state.read_bytes() == before
    proc = run_verify(shared_keys, path, extra=state_args(state))
    assert proc.returncode == 1 and "are gone: seq 5-6" in proc.stdout


def test_a_successor_declaring_a_verified_record_of_its_predecessor_does_not_excuse_its_deletion(
        shared_keys: Path, tmp_path: Path) -> None:
    """BREAK B1 (key holder): the newest stream was verified whole; a successor signed with the real key
    declares seq 5 of it rejected, and seq 5 is deleted. Alone: exit 0 (dropped, declared). With the state,
    which saw seq 5 below the remembered size: exit 1. A record absent already at the first audit and
    declared stays accepted."""
    pstate = tmp_path / "producer-state"
    path = tmp_path / "audit.jsonl"
    first = write_archive(path, shared_keys, 25, checkpoint_every=10, state_dir=pstate, simple=True)
    state = tmp_path / "state.json"
    assert verify_json(shared_keys, path, extra=state_args(state))[0] == 0
    arch = Archive.load(path)
    provider, sp = make_pipeline(path, shared_keys, checkpoint_every=10, state_dir=pstate, simple=True)
    sp.record_rejected("webhook/siem", [_item(arch, first.stream_id, 5)])
    log = provider.get_logger("t")
    for i in range(3):
        log.emit(**mixed_record(i))
    provider.shutdown()
    _delete(path, first.stream_id, {5})
    code, doc = verify_json(shared_keys, path)
    assert code == 0, doc  # the known limit: a declared drop
    code, doc = verify_json(shared_keys, path, extra=state_args(state))
    assert code == 1
    by = {s["stream_id"]: s for s in doc["streams"]}
    assert any("are gone: seq 5 " in p for p in by[first.stream_id]["problems"]), by[first.stream_id]["problems"]
    assert doc["state"]["updated"] is False


def test_a_record_absent_and_declared_at_the_first_audit_stays_accepted(shared_keys: Path, tmp_path: Path) -> None:
    """The fallback to the input's own signed root stays for seqs that were already absent when verified:
    a rejected record missing from the archive at the first audit verifies again (exit 0), and the stream
    grown past it too."""
    path = tmp_path / "audit.jsonl"
    provider, sp = make_pipeline(path, shared_keys, checkpoint_every=10, simple=True)
    log = provider.get_logger("t")
    for i in range(15):
        log.emit(**mixed_record(i))
    arch = Archive.load(path)
    sp.record_rejected("webhook/siem", [_item(arch, sp.stream_id, 5)])
    for i in range(15, 30):
        log.emit(**mixed_record(i))
    provider.force_flush()
    _delete(path, sp.stream_id, {5})
    state = tmp_path / "state.json"
    assert verify_json(shared_keys, path, extra=state_args(state, "--allow-open"))[0] == 0
    assert json.loads(state.read_text())["streams"][sp.stream_id]["absent"] == [[5, 5]]
    code, doc = verify_json(shared_keys, path, extra=state_args(state, "--allow-open"))
    assert code == 0, doc
    for i in range(30, 45):
        log.emit(**mixed_record(i))
    provider.shutdown()
    code, doc = verify_json(shared_keys, path, extra=state_args(state))
    assert code == 0, doc
    assert doc["state"]["advanced"] == [sp.stream_id]


# -- the checkpoint at the remembered size ------------------------------------------------------------


def test_the_checkpoint_at_the_remembered_size_re_signed_is_caught(copy_of: Archive, pristine: Written,
                                                                   shared_keys: Path, tmp_path: Path) -> None:
    """The end checkpoint the state remembers, re-signed by the key holder with another time (same root and
    chain): alone valid; against the state, whose remembered record digest differs: exit 1, state kept."""
    state = tmp_path / "state.json"
    assert verify_json(shared_keys, copy_of.path, extra=state_args(state))[0] == 0
    rec = copy_of.find(END)
    sn = parse_note(rec["body"]["stringValue"])
    body = dataclasses.replace(sn.checkpoint, time_ns=sn.checkpoint.time_ns + 10**9).body()
    rec["body"] = {"stringValue": format_note(body, [Signer.from_keys_dir(shared_keys).sign(body.encode())])}
    for k in ("timeUnixNano", "observedTimeUnixNano"):
        if k in rec:
            rec[k] = str(sn.checkpoint.time_ns + 10**9)
    reseal(rec)
    copy_of.save()
    code, doc = verify_json(shared_keys, copy_of.path)
    assert code == 0, doc["streams"][0]["problems"]  # alone: a valid end checkpoint
    before = state.read_bytes()
    code, doc = verify_json(shared_keys, copy_of.path, extra=state_args(state))
    assert code == 1
    assert any(f"the checkpoint at seq {END} differs from the one verified on " in p and p.endswith("re-signed")
               for p in doc["streams"][0]["problems"]), doc["streams"][0]["problems"]
    assert state.read_bytes() == before


# -- a hole in a lineage, with --partial ---------------------------------------------------------------


def test_a_known_stream_missing_between_its_predecessor_and_successor_fails_even_with_partial(
        shared_keys: Path, tmp_path: Path) -> None:
    """The state knows A -> B (head B); the input holds A and a successor C naming B, but not B: not a day
    cut (those hold a stream's predecessor or successor, not both around a hole): exit 1 with --partial."""
    pstate = tmp_path / "producer-state"
    path = tmp_path / "audit.jsonl"
    write_archive(path, shared_keys, 20, checkpoint_every=10, state_dir=pstate)
    b = write_archive(path, shared_keys, 20, checkpoint_every=10, state_dir=pstate).stream_id
    state = tmp_path / "state.json"
    assert verify_json(shared_keys, path, extra=state_args(state))[0] == 0
    c = write_archive(path, shared_keys, 20, checkpoint_every=10, state_dir=pstate).stream_id
    _delete(path, b, set(range(10_000)))
    assert verify_json(shared_keys, path, extra=("--partial",))[0] == 0  # alone, --partial: accepted
    code, doc = verify_json(shared_keys, path, extra=state_args(state, "--partial"))
    assert code == 1
    by = {s["stream_id"]: s for s in doc["streams"]}
    assert any(f"stream {b} (closed" in p and "a hole" in p for p in by[c]["problems"]), by[c]["problems"]


# -- the state file: strict reading, lineages, symlinks, format v1 -------------------------------------


def _rewrite(state: Path, doc: dict[str, Any], *, raw: str | None = None) -> None:
    """The file as a hand edit leaves it, with its checksum recomputed (what the checksum cannot catch)."""
    import hashlib

    body = {k: v for k, v in doc.items() if k != "checksum"}
    doc["checksum"] = "sha256:" + hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()
    state.write_text(raw if raw is not None else json.dumps(doc, indent=2, sort_keys=True))


@pytest.mark.parametrize("edit", ["lineage_head", "huge_size", "unknown_top", "unknown_field", "duplicate"])
def test_malformed_state_with_a_valid_checksum_exits_2(copy_of: Archive, pristine: Written, shared_keys: Path,
                                                       tmp_path: Path, edit: str) -> None:
    """Edits the checksum cannot catch (it is recomputed) are still refused, exit 2, file left as it was:
    a lineage whose head disagrees with the streams (named), a size of 10^30 (a bad integer, not a checksum
    mismatch), unknown members, a member given twice."""
    state = tmp_path / "state.json"
    assert verify_json(shared_keys, copy_of.path, extra=state_args(state))[0] == 0
    doc = json.loads(state.read_text())
    sid = pristine.stream_id
    raw = None
    if edit == "lineage_head":
        doc["lineages"][0]["head"]["size"] = 5
        want = f"lineage 0 (of stream {sid}) disagrees with the streams' entries: head.size 5, the streams say {END}"
    elif edit == "huge_size":
        doc["streams"][sid]["size"] = 10**30
        want = "size must be an integer from 0 to 2^63-1"
    elif edit == "unknown_top":
        doc["comment"] = "x"
        want = "unknown member 'comment'"
    elif edit == "unknown_field":
        doc["streams"][sid]["note"] = "x"
        want = "unknown field 'note'"
    else:
        _rewrite(state, doc)
        text = state.read_text()
        raw = text.replace('"format":', '"format": "otel-audit-state/v1",\n  "format":', 1)
        want = "member 'format' appears twice"
    _rewrite(state, doc, raw=raw)
    bad = state.read_bytes()
    proc = run_verify(shared_keys, copy_of.path, extra=state_args(state))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert str(state) in proc.stderr and want in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert "checksum does not match" not in proc.stderr
    assert state.read_bytes() == bad


def test_a_symlinked_state_file_stays_a_symlink(copy_of: Archive, shared_keys: Path, tmp_path: Path) -> None:
    """The atomic write replaces the link's target, not the link."""
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "state.json"
    link = tmp_path / "state.json"
    link.symlink_to(target)
    assert verify_json(shared_keys, copy_of.path, extra=state_args(link))[0] == 0
    assert link.is_symlink() and target.is_file()
    assert verify_json(shared_keys, copy_of.path, extra=state_args(link))[0] == 0
    assert link.is_symlink() and json.loads(target.read_text())["format"] == FORMAT
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == ["state.json"]


def test_a_v1_state_file_still_loads_and_is_upgraded(shared_keys: Path, tmp_path: Path) -> None:
    """A state written before absent seqs and the checkpoint record were remembered (otel-audit-state/v1)
    loads: its streams are checked as before (absent seqs unknown: a declared gap falls back to the input's
    own signed root), and the run that verifies writes v2, after which a deletion is caught."""
    path = tmp_path / "audit.jsonl"
    provider, sp = make_pipeline(path, shared_keys, checkpoint_every=10, simple=True)
    log = provider.get_logger("t")
    for i in range(15):
        log.emit(**mixed_record(i))
    arch = Archive.load(path)
    sp.record_rejected("webhook/siem", [_item(arch, sp.stream_id, 5)])
    for i in range(15, 30):
        log.emit(**mixed_record(i))
    provider.shutdown()
    state = tmp_path / "state.json"
    assert verify_json(shared_keys, path, extra=state_args(state))[0] == 0
    doc = json.loads(state.read_text())
    doc["format"] = "otel-audit-state/v1"
    for e in doc["streams"].values():
        del e["absent"], e["record"]
    _rewrite(state, doc)
    code, out = verify_json(shared_keys, path, extra=state_args(state))
    assert code == 0, out
    saved = json.loads(state.read_text())
    assert saved["format"] == FORMAT and saved["streams"][sp.stream_id]["absent"] == []
    _delete(path, sp.stream_id, {5})
    code, out = verify_json(shared_keys, path, extra=state_args(state))
    assert code == 1 and any("are gone: seq 5 " in p for p in out["streams"][0]["problems"])
