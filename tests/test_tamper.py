"""The tamper matrix: archives written by the real pipeline, edited on disk, then verified.

Each archive holds 300 mixed events with checkpoint_every=50: a start checkpoint at seq 0, a
size checkpoint after every 50 events, and the end checkpoint last (seq END); seq 123 is an
ordinary event and CP (the first checkpoint after it) a size checkpoint in the middle.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import gzip
import random
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    Archive,
    Written,
    assert_clean,
    attr_value,
    is_checkpoint,
    only_stream,
    reseal,
    seq_of,
    set_attr,
    stream,
    stream_of,
    verify,
    write_archive,
)
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from otel_audit.canonical import DIGEST, STREAM_ID, STREAM_SEQ
from otel_audit.keys import Keyring, Signer
from otel_audit.note import format_note, parse_note, vkey
from otel_audit.processors.signing import REASON_REFUSED

K = 123  # an event in the middle


def _layout() -> tuple[list[int], int, int]:
    """Where the pipeline puts checkpoints for 300 events, checkpoint_every=50: (all, the end, the one after K)."""
    seqs = [0]
    seq = 0
    for _ in range(6):
        seq += 50 + 1
        seqs.append(seq)
    end = seq + 1
    seqs.append(end)
    return seqs, end, min(c for c in seqs if c > K)


CHECKPOINTS, END, CP = _layout()


def test_layout_of_the_pristine_archive(archive: Archive, pristine: Written) -> None:
    """The pipeline wrote 300 events, a checkpoint at start, after every 50 events and at the end."""
    assert pristine.length == END + 1 == 300 + len(CHECKPOINTS)
    assert archive.checkpoint_seqs() == CHECKPOINTS
    assert not is_checkpoint(archive.find(K)) and is_checkpoint(archive.find(CP))
    assert len(archive.lines) > 1, "the batch processor wrote several lines"


def test_pristine_archive_verifies(archive: Archive, keyring: Keyring) -> None:
    """An untouched archive verifies: one closed stream, every record present and sealed."""
    rep = verify(archive.path, keyring)
    assert rep.ok
    s = only_stream(rep)
    assert_clean(s)
    n = END + 1
    assert (s.state, s.records, s.events, s.checkpoints, s.sealed, s.length) == ("closed", n, 300, 8, n, n)
    assert s.unsealed == [] and s.duplicates == 0 and s.keys == ["test-key"]
    assert s.producer["service.name"] == "otel-audit-tests"


# -- changing content ------------------------------------------------------------------------------


def _edit_body(rec: dict[str, Any]) -> None:
    rec["body"] = {"stringValue": "nothing to see here"}


def _edit_attr_value(rec: dict[str, Any]) -> None:
    set_attr(rec, "user.id", {"stringValue": "admin"})


def _int_to_string(rec: dict[str, Any]) -> None:
    i = attr_value(rec, "i")
    assert type(i) is int
    set_attr(rec, "i", {"stringValue": str(i)})


def _int_to_double(rec: dict[str, Any]) -> None:
    set_attr(rec, "i", {"doubleValue": float(attr_value(rec, "i"))})


def _bool_to_string(rec: dict[str, Any]) -> None:
    set_attr(rec, "ok", {"stringValue": str(attr_value(rec, "ok")).lower()})


def _add_attr(rec: dict[str, Any]) -> None:
    set_attr(rec, "audit.outcome", {"stringValue": "success"})


def _drop_attr(rec: dict[str, Any]) -> None:
    rec["attributes"] = [kv for kv in rec["attributes"] if kv["key"] != "user.id"]


def _event_name(rec: dict[str, Any]) -> None:
    rec["eventName"] = "nothing.happened"


def _timestamp(rec: dict[str, Any]) -> None:
    rec["timeUnixNano"] = str(int(rec["timeUnixNano"]) - 3600 * 10**9)


def _severity(rec: dict[str, Any]) -> None:
    rec["severityNumber"] = 1
    rec["severityText"] = "TRACE"


def _drop_body(rec: dict[str, Any]) -> None:
    del rec["body"]


@pytest.mark.parametrize(
    "edit",
    [_edit_body, _edit_attr_value, _int_to_string, _int_to_double, _bool_to_string, _add_attr, _drop_attr,
     _event_name, _timestamp, _severity, _drop_body],
)
def test_changed_record_is_named(archive: Archive, keyring: Keyring, edit: Any) -> None:
    """Any change to one record's content makes exactly that seq modified and the archive fail."""
    edit(archive.find(K))
    archive.save()
    rep = verify(archive.path, keyring)
    assert not rep.ok
    s = only_stream(rep)
    assert s.modified == [K]
    assert s.missing == [] and s.conflicting == [] and s.inserted == [] and s.bad_signatures == []
    assert s.root_mismatch == [], "a root mismatch explained by the modified record is not reported again"
    assert any("modified: seq 123" in p for p in s.problems)
    assert s.sealed == s.records - 1, "every other record stays proven by the signed Merkle roots"


def test_changed_records_in_several_places(archive: Archive, keyring: Keyring) -> None:
    """Three changed records are all named, in order."""
    for seq in (7, 123, 299):
        _edit_body(archive.find(seq))
    archive.save()
    s = only_stream(verify(archive.path, keyring))
    assert s.modified == [7, 123, 299]


def test_changed_checkpoint_body_is_modified_and_bad(archive: Archive, keyring: Keyring) -> None:
    """Changing a signed checkpoint note (its root line) makes it modified and its signature bad."""
    cp = archive.find(CP)
    text, _, sigs = cp["body"]["stringValue"].partition("\n\n")
    lines = text.split("\n")
    lines[2] = base64.b64encode(bytes(32)).decode()
    cp["body"]["stringValue"] = "\n".join(lines) + "\n\n" + sigs
    archive.save()
    s = only_stream(verify(archive.path, keyring))
    assert s.modified == [CP]
    assert s.bad_signatures == [CP]


# -- deleting --------------------------------------------------------------------------------------


def test_deleted_record_is_missing(archive: Archive, keyring: Keyring) -> None:
    """Deleting one record in the middle reports exactly that seq missing."""
    archive.remove(archive.find(K))
    archive.save()
    rep = verify(archive.path, keyring)
    assert not rep.ok
    s = only_stream(rep)
    assert s.missing == [[K, K]]
    assert s.modified == [] and s.conflicting == [] and s.broken_links == []


def test_deleted_range_is_missing(archive: Archive, keyring: Keyring) -> None:
    """Deleting seq 120..130 reports the one range missing."""
    for seq in range(120, 131):
        archive.remove(archive.find(seq))
    archive.save()
    s = only_stream(verify(archive.path, keyring))
    assert s.missing == [[120, 130]]
    assert s.modified == []


@pytest.mark.parametrize("seq", [0, CP])
def test_deleted_checkpoint_is_missing(archive: Archive, keyring: Keyring, seq: int) -> None:
    """Deleting the start checkpoint or a middle checkpoint reports that seq missing."""
    archive.remove(archive.find(seq))
    archive.save()
    rep = verify(archive.path, keyring)
    assert not rep.ok
    assert only_stream(rep).missing == [[seq, seq]]


@pytest.mark.parametrize("k", [1, 10, 60])
def test_deleted_tail_of_a_closed_stream(archive: Archive, keyring: Keyring, k: int) -> None:
    """Deleting the last k records (the end checkpoint among them) leaves an open, truncated stream: a failure."""
    for seq in range(END - k + 1, END + 1):
        archive.remove(archive.find(seq))
    archive.save()
    rep = verify(archive.path, keyring)
    assert not rep.ok
    s = only_stream(rep)
    assert s.state == "open"
    assert s.modified == [] and s.missing == []
    assert any("truncated after seq" in p and f"seq {END - k}" in p for p in s.problems)
    last_cp = max(c for c in CHECKPOINTS if c <= END - k)
    tail = [[last_cp + 1, END - k]] if last_cp < END - k else []
    assert s.unsealed == tail


def test_deleted_tail_with_allow_open_only_warns(archive: Archive, keyring: Keyring) -> None:
    """With allow_open (an archive still being written) a stream without an end checkpoint is a warning."""
    for seq in range(END - 9, END + 1):
        archive.remove(archive.find(seq))
    archive.save()
    rep = verify(archive.path, keyring, allow_open=True)
    assert rep.ok
    s = only_stream(rep)
    assert s.state == "open" and any("truncated" in w for w in s.warnings)


# -- reordering and forging ------------------------------------------------------------------------


def test_swapped_seqs_are_both_modified(archive: Archive, keyring: Keyring) -> None:
    """Swapping the seq attributes of two records makes both modified (seq is part of the leaf)."""
    a, b = archive.find(K), archive.find(K + 1)
    set_attr(a, STREAM_SEQ, {"intValue": str(K + 1)})
    set_attr(b, STREAM_SEQ, {"intValue": str(K)})
    archive.save()
    rep = verify(archive.path, keyring)
    assert not rep.ok
    s = only_stream(rep)
    assert s.modified == [K, K + 1]
    assert s.missing == []


def test_swapped_seqs_and_digests_break_the_chain(archive: Archive, keyring: Keyring) -> None:
    """Swapping two records' seq and integrity attributes wholesale is caught as modified."""
    a, b = archive.find(K), archive.find(K + 1)
    for key in (STREAM_SEQ, "audit.integrity.prev", DIGEST):
        va = next(kv["value"] for kv in a["attributes"] if kv["key"] == key)
        vb = next(kv["value"] for kv in b["attributes"] if kv["key"] == key)
        set_attr(a, key, vb)
        set_attr(b, key, va)
    archive.save()
    s = only_stream(verify(archive.path, keyring))
    assert s.modified == [K, K + 1]


def test_forged_copy_at_an_existing_seq_conflicts(archive: Archive, keyring: Keyring) -> None:
    """A self-consistent forgery added beside the original record is a conflict at that seq."""
    forged = copy.deepcopy(archive.find(K))
    _edit_body(forged)
    reseal(forged)
    archive.append(forged)
    archive.save()
    rep = verify(archive.path, keyring)
    assert not rep.ok
    s = only_stream(rep)
    assert s.conflicting == [K]
    assert s.modified == [] and s.missing == [] and s.broken_links == []


def test_forged_replacement_breaks_the_chain(archive: Archive, keyring: Keyring) -> None:
    """A self-consistent forgery replacing the original breaks the link to the next record."""
    rec = archive.find(K)
    _edit_body(rec)
    reseal(rec)
    archive.save()
    rep = verify(archive.path, keyring)
    assert not rep.ok
    s = only_stream(rep)
    assert s.broken_links == [[K, K + 1]]
    assert s.modified == [] and s.conflicting == []


def test_forged_chain_rewrite_fails_at_the_next_checkpoint(archive: Archive, keyring: Keyring) -> None:
    """Re-chaining every record after a forgery up to the next checkpoint still fails: the note's chain differs."""
    prev = None
    for seq in range(K, CP):
        rec = archive.find(seq)
        if seq == K:
            _edit_body(rec)
        prev = reseal(rec, prev)
    archive.save()
    rep = verify(archive.path, keyring)
    assert not rep.ok
    s = only_stream(rep)
    assert s.modified == [] and s.missing == []
    assert s.broken_links == [[CP - 1, CP]]


def test_forged_chain_rewrite_through_a_checkpoint(archive: Archive, keyring: Keyring) -> None:
    """Re-chaining through the next checkpoint record too leaves its signed chain line disagreeing."""
    prev = None
    for seq in range(K, CP + 1):
        rec = archive.find(seq)
        if seq == K:
            _edit_body(rec)
        prev = reseal(rec, prev)
    archive.save()
    rep = verify(archive.path, keyring)
    assert not rep.ok
    s = only_stream(rep)
    assert [b["seq"] for b in s.bad_checkpoints] == [CP]
    assert "chain line" in s.bad_checkpoints[0]["reason"]
    assert s.broken_links == [[CP, CP + 1]]


def test_forged_record_after_the_end(archive: Archive, keyring: Keyring) -> None:
    """A well-chained record added after the end checkpoint is reported as inserted."""
    end = archive.find(END)
    forged = copy.deepcopy(archive.find(END - 1))
    _edit_body(forged)
    set_attr(forged, STREAM_SEQ, {"intValue": str(END + 1)})
    reseal(forged, bytes.fromhex(str(attr_value(end, DIGEST))))
    archive.append(forged)
    archive.save()
    rep = verify(archive.path, keyring)
    assert not rep.ok
    s = only_stream(rep)
    assert s.inserted == [END + 1]
    assert s.modified == [] and s.missing == [] and s.broken_links == []


def test_exact_duplicates_are_allowed(archive: Archive, keyring: Keyring) -> None:
    """An exact duplicate of a record (at-least-once delivery) verifies, counted as a duplicate."""
    archive.append(copy.deepcopy(archive.find(K)))
    archive.append(copy.deepcopy(archive.find(END)))
    archive.save()
    rep = verify(archive.path, keyring)
    assert rep.ok
    s = only_stream(rep)
    assert s.duplicates == 2
    assert_clean(s)


def test_whole_archive_twice(archive: Archive, keyring: Keyring, tmp_path: Path) -> None:
    """The same archive given twice verifies, every record a duplicate."""
    again = tmp_path / "again.jsonl"
    shutil.copyfile(archive.path, again)
    rep = verify([archive.path, again], keyring)
    assert rep.ok
    assert only_stream(rep).duplicates == END + 1


# -- signatures and keys ---------------------------------------------------------------------------


def _resign_end(archive: Archive, signatures: Any) -> None:
    """Replace the end checkpoint's signatures, recompute its digest (no successor to notice)."""
    end = archive.find(END)
    sn = parse_note(end["body"]["stringValue"])
    end["body"]["stringValue"] = format_note(sn.text, signatures(sn))
    reseal(end)
    archive.save()


def test_broken_checkpoint_signature(archive: Archive, keyring: Keyring) -> None:
    """A checkpoint whose signature bytes are altered (digest recomputed) has a bad signature."""
    def flipped(sn: Any) -> list[Any]:
        s = sn.signatures[0]
        return [type(s)(s.name, s.key_id, bytes([s.signature[0] ^ 1]) + s.signature[1:])]

    _resign_end(archive, flipped)
    rep = verify(archive.path, keyring)
    assert not rep.ok
    s = only_stream(rep)
    assert s.bad_signatures == [END]
    assert s.modified == [] and s.unknown_keys == []
    assert s.state == "open", "an end checkpoint without a valid signature does not close the stream"


def test_checkpoint_signed_by_an_unknown_key(archive: Archive, keyring: Keyring) -> None:
    """A checkpoint re-signed by the attacker's own key (digest recomputed) is an unknown key."""
    attacker = Signer("test-key", Ed25519PrivateKey.generate())
    _resign_end(archive, lambda sn: [attacker.sign(sn.text.encode())])
    s = only_stream(verify(archive.path, keyring))
    assert s.unknown_keys == [END]
    assert s.bad_signatures == [] and s.modified == []


def test_extra_signature_by_an_unknown_key_is_harmless(archive: Archive, keyring: Keyring) -> None:
    """A second signature by a key not in the keyring does not spoil the valid one (digest recomputed)."""
    other = Signer.generate("someone-else")
    _resign_end(archive, lambda sn: [*sn.signatures, other.sign(sn.text.encode())])
    rep = verify(archive.path, keyring)
    assert rep.ok, only_stream(rep).problems


def test_wrong_keyring(archive: Archive, other_keyring: Keyring) -> None:
    """Verifying with another producer's keyring: every checkpoint is signed by an unknown key."""
    rep = verify(archive.path, other_keyring)
    assert not rep.ok
    s = only_stream(rep)
    assert s.unknown_keys == CHECKPOINTS
    assert s.modified == [] and s.missing == []
    assert any("no valid signed checkpoint" in p for p in s.problems)


def test_vkey_keyring_verifies(tmp_path: Path) -> None:
    """A keyring given as a Go-style .vkey line verifies the archive, also when its base64 holds a '+'.

    Regression: keys._parse_vkey once split the line on every '+', and about half of all Ed25519
    keys have a '+' in their base64, so their .vkey could not be loaded.
    """
    signer = Signer.generate("vkey-producer")
    while "+" not in vkey(signer.name, signer.public_key).split("+", 2)[2]:
        signer = Signer.generate("vkey-producer")
    written = write_archive(tmp_path / "a.jsonl", signer, 30, checkpoint_every=10)
    f = tmp_path / "producer.vkey"
    f.write_text(vkey(signer.name, signer.public_key) + "\n")
    rep = verify(written.path, Keyring.load(f))
    assert rep.ok, only_stream(rep).problems


# -- the shape of the input ------------------------------------------------------------------------


def test_shuffled_lines_and_records_verify(archive: Archive, keyring: Keyring) -> None:
    """One record per line in random order verifies: the verifier orders by (stream, seq), not arrival."""
    archive.explode()
    random.Random(7).shuffle(archive.lines)
    archive.save()
    assert verify(archive.path, keyring).ok


def test_two_interleaved_streams_in_one_file(
    archive: Archive, keyring: Keyring, shared_keys: Path, tmp_path: Path
) -> None:
    """Two streams interleaved line by line and shuffled in one file both verify."""
    other = write_archive(tmp_path / "b.jsonl", shared_keys, 120, checkpoint_every=25)
    b = Archive.load(other.path)
    archive.explode()
    b.explode()
    archive.lines += b.lines
    random.Random(3).shuffle(archive.lines)
    archive.save()
    rep = verify(archive.path, keyring)
    assert rep.ok
    assert len(rep.streams) == 2
    assert stream(rep, other.stream_id).records == other.length
    for s in rep.streams:
        assert_clean(s)
        assert s.state == "closed"


def test_gzip_archive_verifies(archive: Archive, keyring: Keyring, tmp_path: Path) -> None:
    """A gzip-compressed archive verifies like the plain one."""
    gz = tmp_path / "audit.jsonl.gz"
    gz.write_bytes(gzip.compress(archive.path.read_bytes()))
    rep = verify(gz, keyring)
    assert rep.ok and only_stream(rep).records == END + 1


def test_gzip_archive_tamper_is_detected(archive: Archive, keyring: Keyring, tmp_path: Path) -> None:
    """A change inside a gzip archive is found as in a plain one."""
    _edit_body(archive.find(K))
    gz = archive.save(tmp_path / "t.jsonl.gz", compress=True)
    assert only_stream(verify(gz, keyring)).modified == [K]


def test_folder_of_archives(archive: Archive, keyring: Keyring, tmp_path: Path) -> None:
    """A folder argument means every archive file under it: the archive split in two files verifies."""
    d = tmp_path / "folder"
    d.mkdir()
    half = len(archive.lines) // 2
    Archive(d / "a.jsonl", archive.lines[:half]).save()
    Archive(d / "b.jsonl.gz", archive.lines[half:]).save(compress=True)
    rep = verify(d, keyring)
    assert rep.ok and rep.files == 2


def test_record_moved_to_another_stream(
    archive: Archive, keyring: Keyring, shared_keys: Path, tmp_path: Path
) -> None:
    """A record moved into another stream is missing from its own and conflicts in the other."""
    other = write_archive(tmp_path / "b.jsonl", shared_keys, 300, checkpoint_every=50)
    rec = archive.find(K)
    set_attr(rec, STREAM_ID, {"stringValue": other.stream_id})
    b = Archive.load(other.path)
    archive.lines += b.lines
    archive.save()
    rep = verify(archive.path, keyring)
    assert not rep.ok
    mine = next(s for s in rep.streams if s.stream_id != other.stream_id)
    theirs = stream(rep, other.stream_id)
    assert mine.missing == [[K, K]]
    assert theirs.conflicting == [K]
    assert theirs.modified == []


def test_record_moved_to_another_stream_beyond_its_end(
    archive: Archive, keyring: Keyring, shared_keys: Path, tmp_path: Path
) -> None:
    """A record moved into a shorter stream, past that stream's end, is inserted and modified there."""
    other = write_archive(tmp_path / "b.jsonl", shared_keys, 20, checkpoint_every=50)
    rec = archive.find(K)
    set_attr(rec, STREAM_ID, {"stringValue": other.stream_id})
    archive.lines += Archive.load(other.path).lines
    archive.save()
    rep = verify(archive.path, keyring)
    assert not rep.ok
    assert stream(rep, other.stream_id).inserted == [K]
    assert next(s for s in rep.streams if s.stream_id != other.stream_id).missing == [[K, K]]


def test_changes_in_transit_do_not_break_verification(archive: Archive, keyring: Keyring) -> None:
    """Resource attributes, scope, observed time and integer spelling may change in transit."""
    for doc in archive.lines:
        for rl in doc["resourceLogs"]:
            rl["resource"]["attributes"].append({"key": "k8s.pod.name", "value": {"stringValue": "gw-1"}})
            for sl in rl["scopeLogs"]:
                sl["scope"] = {"name": "collector-renamed"}
                for rec in sl["logRecords"]:
                    rec["observedTimeUnixNano"] = "1"
                    rec["timeUnixNano"] = int(rec["timeUnixNano"])  # a number instead of a string
                    for kv in rec.get("attributes", []):
                        if "intValue" in kv["value"]:
                            kv["value"]["intValue"] = int(kv["value"]["intValue"])
    archive.save()
    rep = verify(archive.path, keyring)
    assert rep.ok, [s.problems for s in rep.streams]


def test_unsigned_records_are_a_problem(archive: Archive, keyring: Keyring) -> None:
    """A record without integrity attributes fails the archive, unless ignore_unsigned is given."""
    rec = copy.deepcopy(archive.find(K))
    rec["attributes"] = [kv for kv in rec["attributes"] if not kv["key"].startswith("audit.")]
    archive.append(rec)
    archive.save()
    rep = verify(archive.path, keyring)
    assert not rep.ok and rep.unsigned == 1
    assert only_stream(rep).status == "verified"
    assert verify(archive.path, keyring, ignore_unsigned=True).ok


def test_truncated_last_line_is_torn_and_the_lost_end_fails(archive: Archive, keyring: Keyring) -> None:
    """A last line cut short is reported as torn; the end checkpoint it held is gone,
    so the stream fails as truncated."""
    data = archive.path.read_bytes()
    archive.path.write_bytes(data[: len(data) - 40])
    rep = verify(archive.path, keyring)
    assert not rep.ok and not rep.malformed
    assert rep.torn and "cut short" in rep.torn[0]
    assert only_stream(rep).state == "open"


def test_cut_line_in_the_middle_is_malformed(archive: Archive, keyring: Keyring) -> None:
    """A line cut short that is not the file's last one is malformed and fails the archive."""
    lines = archive.path.read_bytes().split(b"\n")
    lines[0] = lines[0][: len(lines[0]) // 2]
    archive.path.write_bytes(b"\n".join(lines))
    rep = verify(archive.path, keyring)
    assert not rep.ok
    assert rep.malformed and "not JSON" in rep.malformed[0]


def test_malformed_integrity_attributes(archive: Archive, keyring: Keyring) -> None:
    """A record whose seq is a string or whose digest is not hex is malformed, never silently skipped."""
    set_attr(archive.find(K), STREAM_SEQ, {"stringValue": str(K)})
    set_attr(archive.find(K + 1), DIGEST, {"stringValue": "zz"})
    archive.save()
    rep = verify(archive.path, keyring)
    assert not rep.ok
    assert len(rep.malformed) == 2
    assert only_stream(rep).missing == [[K, K + 1]]


def test_checkpoint_with_non_ascii_digits_is_reported(archive: Archive, keyring: Keyring) -> None:
    """A checkpoint note whose size line is '²' is reported (modified, malformed), not a crash.

    Regression: note._int once let str.isdigit() characters through and int() raised a plain
    ValueError, which Verifier._checkpoints did not catch, so verify_paths raised.
    """
    cp = archive.find(CP)
    text, _, sigs = cp["body"]["stringValue"].partition("\n\n")
    lines = text.split("\n")
    lines[1] = "\u00b2"
    cp["body"]["stringValue"] = "\n".join(lines) + "\n\n" + sigs
    archive.save()
    rep = verify(archive.path, keyring)
    assert not rep.ok
    s = only_stream(rep)
    assert s.modified == [CP]
    assert [b["seq"] for b in s.bad_checkpoints] == [CP]


def test_huge_seq_is_reported_not_fatal(archive: Archive, keyring: Keyring) -> None:
    """A seq edited to a huge int64 value is reported (modified, missing, inserted), quickly and without raising.

    Regression: Verifier._prove once allocated `[False] * (top + 1)` and walked `range(length)`,
    so one edited seq made the verifier raise MemoryError (2**62) or spend minutes and gigabytes
    (10**9) instead of reporting.
    """
    huge = 2**62
    set_attr(archive.find(K), STREAM_SEQ, {"intValue": str(huge)})
    archive.save()
    rep = verify(archive.path, keyring)
    assert not rep.ok
    s = only_stream(rep)
    assert s.modified == [huge]
    assert s.missing == [[K, K]]
    assert s.inserted == [huge]


def test_seq_beyond_int64_is_reported(archive: Archive, keyring: Keyring) -> None:
    """A seq edited beyond int64 is no OTLP intValue: strict decoding refuses the record (located, rule
    int-out-of-range) and its seq is missing at its true place; nothing raises."""
    set_attr(archive.find(K), STREAM_SEQ, {"intValue": str(10**20)})
    archive.save()
    rep = verify(archive.path, keyring)
    assert not rep.ok
    s = only_stream(rep)
    assert s.missing == [[K, K]]
    assert len(rep.malformed) == 1 and "int-out-of-range at attributes[" in rep.malformed[0]


def test_every_seq_is_checked(archive: Archive, keyring: Keyring) -> None:
    """Changing any one event of the first 60 seqs is found at exactly that seq (no blind spot)."""
    original = archive.path.read_bytes()
    for seq in range(1, 60):
        if seq in CHECKPOINTS:
            continue
        archive = Archive.load(archive.path)
        _edit_attr_value(archive.find(seq))
        archive.save()
        assert only_stream(verify(archive.path, keyring)).modified == [seq]
        archive.path.write_bytes(original)


def test_events_of_every_kind_are_in_the_archive(archive: Archive) -> None:
    """The archive holds bodies of every AnyValue type, so the matrix exercises them all."""
    kinds = {next(iter(r["body"])) if r.get("body") else "none" for r in archive.events()}
    assert kinds == {"stringValue", "intValue", "doubleValue", "boolValue", "bytesValue", "arrayValue",
                     "kvlistValue", "none"}
    assert {seq_of(r) for r in archive.records()} == set(range(END + 1))


# -- records a downstream did not take, declared by signed gap markers ------------------------------


def _declaring_pipeline(path: Path, shared_keys: Path, refuse: set[int]) -> tuple[Any, Any]:
    """SigningProcessor -> [a processor refusing the given event indexes with DeliveryError, file archive]."""
    from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor

    from otel_audit.errors import DeliveryError
    from otel_audit.exporters.file import FileLogRecordExporter
    from otel_audit.processors.signing import SigningProcessor

    archive_proc = SimpleLogRecordProcessor(FileLogRecordExporter(path, fsync="never"))

    class Refusing(LogRecordProcessor):  # a stand-in for a full fail_closed spool in front of the archive
        def on_emit(self, log_record: Any) -> None:
            if (log_record.log_record.attributes or {}).get("i") in refuse:
                raise DeliveryError("spool full")
            archive_proc.on_emit(log_record)

        def shutdown(self) -> None:
            archive_proc.shutdown()

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return archive_proc.force_flush(timeout_millis)

    provider = LoggerProvider()
    sp = SigningProcessor(shared_keys, downstream=Refusing(), checkpoint_every=5, checkpoint_interval=3600,
                          handle_signals=False)
    provider.add_log_record_processor(sp)
    return provider, sp


def test_fail_closed_refusal_is_declared_not_missing(tmp_path: Path, shared_keys: Path, keyring: Keyring) -> None:
    """A record refused with DeliveryError (fail_closed) is sealed as a gap,
    so the verifier says "dropped (declared)" and passes."""
    from otel_audit.errors import DeliveryError

    provider, sp = _declaring_pipeline(tmp_path / "audit.jsonl", shared_keys, {3, 4})
    logger = provider.get_logger("t")
    refused = 0
    for i in range(12):
        try:
            logger.emit(body=f"e{i}", attributes={"i": i})
        except DeliveryError:
            refused += 1
    provider.shutdown()
    assert refused == 2 == sp.refused
    s = only_stream(verify(tmp_path / "audit.jsonl", keyring))
    assert s.status == "verified" and s.missing == [] and len(s.dropped) == 1
    assert s.declared[0]["reason"] == REASON_REFUSED
    assert any(w.startswith("dropped (declared)") and REASON_REFUSED in w for w in s.warnings)


def test_rejected_records_are_declared_present_or_missing(tmp_path: Path, shared_keys: Path, keyring: Keyring) -> None:
    """record_rejected seals a marker naming the destination:
    a missing rejected record and a present one both verify, named."""
    provider, sp = _declaring_pipeline(tmp_path / "audit.jsonl", shared_keys, {6})
    logger = provider.get_logger("t")
    sent: dict[int, tuple[str, int, str, str]] = {}

    for i in range(10):
        # event 6 is refused; the test declares it rejected instead
        with contextlib.suppress(Exception):
            logger.emit(body=f"e{i}", attributes={"i": i})
    arch = Archive.load(tmp_path / "audit.jsonl")
    for r in [r for r in arch.events() if attr_value(r, "i") is not None]:
        sent[int(attr_value(r, "i"))] = (stream_of(r), seq_of(r), str(attr_value(r, "audit.integrity.prev")),
                                         str(attr_value(r, "audit.integrity.digest")))
    sp.record_rejected("splunk_hec", [sent[2]])  # present in this archive, rejected by Splunk
    provider.shutdown()
    s = only_stream(verify(tmp_path / "audit.jsonl", keyring))
    assert s.status == "verified", s.problems
    rejected = [d for d in s.declared if d["destination"] == "splunk_hec"]
    assert rejected and rejected[0]["reason"] == "rejected by destination splunk_hec" and rejected[0]["missing"] == []
    assert any("rejected by destination splunk_hec" in w and "present in this input" in w for w in s.warnings)
    # the same marker with the record deleted from the archive: missing but declared, still exit 0 from the CLI
    arch = Archive.load(tmp_path / "audit.jsonl")
    arch.remove(arch.find(sent[2][1]))
    arch.save()
    s = only_stream(verify(tmp_path / "audit.jsonl", keyring))
    assert s.status == "verified" and [sent[2][1], sent[2][1]] in s.dropped
    assert any(w.startswith("dropped (declared)") and "splunk_hec" in w for w in s.warnings)


def test_old_gap_marker_without_a_reason_keeps_its_wording(archive: Archive, keyring: Keyring) -> None:
    """A gap marker written before audit.gap.reason existed is read as a full fail_open spool, as it was."""
    from otel_audit.verify import OLD_GAP_REASON, _gap_claim

    assert _gap_claim(7, {"audit.gap.seqs": "3"})[3] == OLD_GAP_REASON
    assert "full delivery spool (fail_open)" in OLD_GAP_REASON
