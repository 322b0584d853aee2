"""What a result claims is what was proven: an attacker's edits that passed with "every record proven".

Archives are written by the real pipeline (conftest), edited on disk as an insider would (`reseal`
recomputes digests), and verified through the real CLI with `--format json`. The pristine archive
holds 300 events with checkpoint_every=50: checkpoints at seq 0, 51, ..., 306 and the end at 307.
"""

from __future__ import annotations

import copy
import os
import random
import shutil
import socket
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    KEY_NAME,
    Archive,
    attr_value,
    is_checkpoint,
    make_pipeline,
    mixed_record,
    reseal,
    seq_of,
    set_attr,
    stream_of,
)
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from test_crash import Producer
from test_tamper_cli import run_verify, verify_json

from otel_audit import keys
from otel_audit.canonical import RECORD
from otel_audit.exporters.file import FileLogRecordExporter
from otel_audit.keys import Keyring, PublicKey
from otel_audit.note import key_id
from otel_audit.processors.signing import SigningProcessor
from otel_audit.verify.report import Report, StreamReport

END = 307
K = 123


def _result_line(text: str) -> str:
    return next(line for line in text.splitlines() if line.startswith("result: "))


def _stream(doc: dict[str, Any], sid: str) -> dict[str, Any]:
    return next(s for s in doc["streams"] if s["stream_id"] == sid)


# -- 1. the result says what was proven --------------------------------------------------------------


def test_pristine_archive_counts_every_record_proven(archive: Archive, shared_keys: Path) -> None:
    """An untouched archive: all 308 records proven, nothing unproven, in text and JSON."""
    code, doc = verify_json(shared_keys, archive.path)
    assert code == 0
    assert doc["proven"] == END + 1 and doc["proven_streams"] == 1
    assert not any(doc["unproven"].values()), doc["unproven"]
    (s,) = doc["streams"]
    assert s["proven"] == [[0, END]] and s["unproven"] == {}
    line = _result_line(run_verify(shared_keys, archive.path).stdout)
    assert line == "result: VERIFIED - all 308 record(s) proven in 1 stream(s)"


@pytest.fixture(scope="module")
def crashed(tmp_path_factory: pytest.TempPathFactory, shared_keys: Path) -> tuple[Path, str, str, int]:
    """A producer killed with SIGKILL mid-stream, then restarted: (archive, crashed stream, successor, last
    checkpoint seq of the crashed stream). Retried until the kill left records after the last checkpoint."""
    for _ in range(6):
        p = Producer(tmp_path_factory.mktemp("crash"), shared_keys)
        first = p.crash(0.2)
        second = p.run(3)
        recs = [r for r in Archive.load(p.archive).records() if stream_of(r) == first]
        last_cp = max(seq_of(r) for r in recs if is_checkpoint(r))
        if max(seq_of(r) for r in recs) > last_cp:
            return p.archive, first, second, last_cp
    raise AssertionError("six kills all landed right after a checkpoint")


def test_crash_tail_is_not_proven(crashed: tuple[Path, str, str, int], shared_keys: Path) -> None:
    """A clean crash exits 0, but the unsigned tail after the crashed stream's last checkpoint (an insider
    could rewrite it) is counted apart: never "every record proven"."""
    path, first, _second, last_cp = crashed
    code, doc = verify_json(shared_keys, path)
    assert code == 0, doc
    s = _stream(doc, first)
    top = s["records"] - 1
    assert s["state"] == "crashed"
    assert s["proven"] == [[0, last_cp]]
    assert s["unproven"] == {"after_crash": [[last_cp + 1, top]]}
    assert doc["unproven"]["after_crash"] == top - last_cp
    assert doc["proven"] == sum(b - a + 1 for t in doc["streams"] for a, b in t["proven"])
    line = _result_line(run_verify(shared_keys, path).stdout)
    assert line.startswith("result: VERIFIED - ") and "every" not in line and "all " not in line
    assert f"{doc['proven']:,} record(s) proven in 2 stream(s)" in line
    assert f"{top - last_cp} after a crash, unsigned (chain-consistent, not proven)" in line


def test_rewritten_crash_tail_still_exits_0_but_is_not_proven(crashed: tuple[Path, str, str, int],
                                                              shared_keys: Path, tmp_path: Path) -> None:
    """An insider rewrites the last tail record and reseals it: the tail stays chain-consistent (exit 0),
    and the report says it was not proven rather than "every record proven"."""
    path, first, _, last_cp = crashed
    arch = Archive.load(path)
    recs = [r for r in arch.records() if stream_of(r) == first]
    top = max(seq_of(r) for r in recs)
    rec = arch.find(top, first)
    rec["body"] = {"stringValue": "rewritten by an insider"}
    reseal(rec)
    out = arch.save(tmp_path / "rewritten.jsonl")
    code, doc = verify_json(shared_keys, out)
    assert code == 0
    assert _stream(doc, first)["unproven"]["after_crash"][-1][1] == top
    assert "every record proven" not in run_verify(shared_keys, out).stdout


def test_ignored_unsigned_records_are_counted_not_proven(archive: Archive, shared_keys: Path) -> None:
    """--ignore-unsigned accepts plain logs next to a signed stream, and says how many were not proven."""
    plain = copy.deepcopy(archive.find(K))
    plain["attributes"] = [kv for kv in plain["attributes"] if not kv["key"].startswith(("audit.integrity.",
                                                                                          "audit.stream."))]
    for _ in range(5):
        archive.append(copy.deepcopy(plain))
    archive.save()
    code, _ = verify_json(shared_keys, archive.path)
    assert code == 1
    code, doc = verify_json(shared_keys, archive.path, extra=("--ignore-unsigned",))
    assert code == 0 and doc["proven"] == END + 1 and doc["unproven"]["unsigned"] == 5
    line = _result_line(run_verify(shared_keys, archive.path, extra=("--ignore-unsigned",)).stdout)
    assert "308 record(s) proven in 1 stream(s); 5 unsigned record(s) ignored" in line and "all" not in line


def test_a_report_that_proves_nothing_is_never_ok() -> None:
    """Report.ok needs at least one proven record, whatever the stream statuses say."""
    assert not Report().ok
    assert not Report(streams=[StreamReport("0" * 32, status="verified", sealed=0)]).ok
    assert Report(streams=[StreamReport("0" * 32, status="verified", sealed=1)]).ok


# -- 2. the resource must not contradict the signed producer ---------------------------------------


def _move_under(archive: Archive, seqs: range, changes: dict[str, dict[str, Any]]) -> None:
    """Give the records at `seqs` a resource with these attributes changed (each record on its own line)."""
    archive.explode()
    for doc in archive.lines:
        rl = doc["resourceLogs"][0]
        rec = rl["scopeLogs"][0]["logRecords"][0]
        if seq_of(rec) in seqs:
            res = copy.deepcopy(rl.get("resource") or {})
            rl["resource"] = res
            res["attributes"] = [kv for kv in res.get("attributes") or () if kv["key"] not in changes]
            res["attributes"].extend({"key": k, "value": v} for k, v in changes.items())
    archive.save()


@pytest.mark.parametrize(
    ("key", "value", "signed"),
    [
        ("service.name", {"stringValue": "payments"}, "otel-audit-tests"),
        ("host.name", {"stringValue": "another-host"}, None),
        ("process.pid", {"intValue": "1"}, None),
    ],
)
def test_records_moved_under_another_producer_fail(archive: Archive, shared_keys: Path, pristine: Any,
                                                   key: str, value: dict[str, Any], signed: Any) -> None:
    """Records under a resource naming another service / host / pid than the stream's signed checkpoints
    are a problem naming the stream, the seqs and the key with both values."""
    signed = signed if signed is not None else pristine.processor._producer[key]
    _move_under(archive, range(100, 105), {key: value})
    code, doc = verify_json(shared_keys, archive.path)
    assert code == 1
    (s,) = doc["streams"]
    (m,) = s["misattributed"]
    assert m["seqs"] == [[100, 104]] and m["count"] == 5
    assert m["key"] == key and m["signed"] == signed and m["found"] != signed
    assert m["where"].startswith(str(archive.path) + ":")
    text = run_verify(shared_keys, archive.path).stdout
    assert "seq 100-104" in text and key in text and repr(signed) in text and "FAILED" in text


def test_resource_attributes_added_in_transit_pass(archive: Archive, shared_keys: Path, pristine: Any) -> None:
    """A collector adding resource attributes the producer line does not hold (k8s, its tier), or
    repeating one with the signed value, keeps the archive verified."""
    _move_under(archive, range(0, END + 1), {
        "k8s.pod.name": {"stringValue": "gateway-7d9f"},
        "otel_audit.collector.tier": {"stringValue": "agent"},
        "host.name": {"stringValue": pristine.processor._producer["host.name"]},
    })
    code, doc = verify_json(shared_keys, archive.path)
    assert code == 0, doc["streams"][0]["problems"]
    assert doc["streams"][0]["misattributed"] == []


def test_forked_child_passes_with_its_refreshed_instance_id_but_not_under_another_service(
        tmp_path: Path, keys_dir: Path) -> None:
    """After os.fork the SDK gives the child's records a new service.instance.id its producer line does not
    hold (the signing processor's resource predates the fork): accepted. Another service.name still fails."""
    folder = tmp_path / "archive"
    folder.mkdir()
    provider, sp = make_pipeline(folder / "audit.jsonl", keys_dir, simple=True, checkpoint_every=4)
    logger = provider.get_logger("fork")
    for i in range(3):
        logger.emit(**mixed_record(i))
    parent = sp.stream_id
    pid = os.fork()
    if pid == 0:
        try:
            for i in range(3):
                logger.emit(**mixed_record(i))
            provider.shutdown()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    provider.shutdown()
    code, doc = verify_json(keys_dir, folder)
    assert code == 0, [t["problems"] for t in doc["streams"]]
    (child,) = [t for t in doc["streams"] if t["stream_id"] != parent]
    for f in folder.glob("*.jsonl"):
        arch = Archive.load(f)
        for line in arch.lines:
            for rl in line["resourceLogs"]:
                recs = [r for sl in rl["scopeLogs"] for r in sl["logRecords"]]
                if recs and stream_of(recs[0]) == child["stream_id"]:
                    set_attr(rl["resource"], "service.name", {"stringValue": "payments"})
        arch.save()
    code, doc = verify_json(keys_dir, folder)
    assert code == 1
    (m,) = _stream(doc, child["stream_id"])["misattributed"]
    assert (m["key"], m["found"], m["signed"]) == ("service.name", "payments", "otel-audit-tests")
    assert _stream(doc, parent)["misattributed"] == []


def test_producer_keys_match_the_signing_processor() -> None:
    """The verifier compares every key the signing processor puts in a producer line."""
    from otel_audit.verify.prove import PRODUCER_KEYS

    producer = SigningProcessor._producer_of(Resource.create({
        "service.name": "a", "service.namespace": "b", "service.instance.id": "c", "service.version": "d",
        "host.name": socket.gethostname()}))
    assert set(producer) <= set(PRODUCER_KEYS)


# -- 3. a checkpoint record agrees with its signed note --------------------------------------------


def _edit_time(rec: dict[str, Any]) -> None:
    rec["timeUnixNano"] = str(int(rec["timeUnixNano"]) + 10**9)


def _edit_kind(rec: dict[str, Any]) -> None:
    set_attr(rec, "audit.checkpoint.kind", {"stringValue": "size"})


def _edit_key(rec: dict[str, Any]) -> None:
    set_attr(rec, "audit.checkpoint.key", {"stringValue": "someone-else"})


def _edit_extra(rec: dict[str, Any]) -> None:
    set_attr(rec, "user.id", {"stringValue": "admin"})


def _edit_severity(rec: dict[str, Any]) -> None:
    rec["severityNumber"] = 17
    rec["severityText"] = "ERROR"


def _edit_size_type(rec: dict[str, Any]) -> None:
    set_attr(rec, "audit.checkpoint.size", {"stringValue": str(END)})


@pytest.mark.parametrize(
    ("edit", "field"),
    [(_edit_time, "time"), (_edit_kind, "audit.checkpoint.kind"), (_edit_key, "audit.checkpoint.key"),
     (_edit_extra, "user.id"), (_edit_severity, "severity"), (_edit_size_type, "audit.checkpoint.size")],
)
def test_end_checkpoint_disagreeing_with_its_note_fails(archive: Archive, shared_keys: Path, edit: Any,
                                                        field: str) -> None:
    """The end checkpoint's own fields changed and its digest recomputed (nothing later commits to it): the
    record disagrees with its signed note, is no valid checkpoint, and the problem names seq and field."""
    rec = archive.find(END)
    edit(rec)
    reseal(rec)
    archive.save()
    code, doc = verify_json(shared_keys, archive.path)
    assert code == 1
    (s,) = doc["streams"]
    (d,) = s["disagreeing_checkpoints"]
    assert d["seq"] == END and field in d["fields"]
    assert END not in sum((list(range(a, b + 1)) for a, b in s["proven"]), [])
    assert any(p.startswith(f"checkpoint at seq {END} disagrees with its signed note: {field}") for p in s["problems"])


# -- 4. an embedded canonical record must be the record's ------------------------------------------


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory, shared_keys: Path) -> Path:
    """An archive whose records carry audit.integrity.record (embed_record=True), 40 events."""
    path = tmp_path_factory.mktemp("embedded") / "audit.jsonl"
    resource = Resource.create({"service.name": "embed-test"})
    provider = LoggerProvider(resource=resource)
    provider.add_log_record_processor(SigningProcessor(
        shared_keys, downstream=SimpleLogRecordProcessor(FileLogRecordExporter(path, fsync="never")),
        checkpoint_every=10, checkpoint_interval=3600, resource=resource, embed_record=True))
    logger = provider.get_logger("embed-test")
    for i in range(40):
        logger.emit(event_name="gen_ai.request", body=f"request {i}", attributes={"i": i, "user.id": f"u{i % 3}"})
    provider.shutdown()
    return path


def test_embedded_record_that_agrees_passes(embedded: Path, shared_keys: Path) -> None:
    code, doc = verify_json(shared_keys, embedded)
    assert code == 0 and doc["streams"][0]["embedded_mismatch"] == []


def test_embedded_record_that_contradicts_the_record_fails(embedded: Path, shared_keys: Path,
                                                           tmp_path: Path) -> None:
    """An OTLP record whose audit.integrity.record (what SIEM readers prove) says something else: located."""
    arch = Archive.load(embedded)
    rec = next(r for r in arch.records() if attr_value(r, "i") == 7)
    seq = seq_of(rec)
    text = attr_value(rec, RECORD)
    assert "request 7" in text
    set_attr(rec, RECORD, {"stringValue": text.replace("request 7", "request 8")})
    out = arch.save(tmp_path / "forged.jsonl")
    code, doc = verify_json(shared_keys, out)
    assert code == 1
    (s,) = doc["streams"]
    assert s["embedded_mismatch"] == [seq]
    assert any(f"seq {seq}" in p and RECORD in p for p in s["problems"])


# -- 5. keys are named -----------------------------------------------------------------------------


def test_stale_keyring_names_the_key(archive: Archive, shared_keys: Path, tmp_path: Path) -> None:
    """Verifying with a keyring that lacks the signing key: the first problem names the key and its id,
    and nothing claims a truncation."""
    keys.generate(tmp_path / "other", "other-key")
    pub = Keyring.load(shared_keys)
    (k,) = list(pub)
    kid = k.key_id.hex()
    code, doc = verify_json(tmp_path / "other", archive.path)
    assert code == 1
    (s,) = doc["streams"]
    assert s["problems"][0].startswith("every checkpoint of this stream is signed by a key not in your keyring")
    assert f"{KEY_NAME} (id {kid})" in s["problems"][0]
    assert not any("truncated" in p for p in s["problems"])
    (sk,) = s["signing_keys"]
    assert (sk["name"], sk["key_id"], sk["status"], sk["seqs"]) == (KEY_NAME, kid, "unknown", [[0, 0], [51, 51],
                                                                     [102, 102], [153, 153], [204, 204],
                                                                     [255, 255], [306, 307]])


def test_expired_key_names_its_window(archive: Archive, shared_keys: Path, tmp_path: Path) -> None:
    """A keyring whose key expired before the checkpoints were signed: the message names the key, its id,
    its validity window and the checkpoint time."""
    (k,) = list(Keyring.load(shared_keys))
    ring = tmp_path / "ring"
    ring.mkdir()
    expired = PublicKey(k.name, k.public_key, None, 1_000_000_000 * 10**9)  # 2001-09-09
    (ring / "keyring.json").write_bytes(Keyring([expired]).to_json())
    code, doc = verify_json(ring, archive.path)
    assert code == 1
    (s,) = doc["streams"]
    kid = key_id(k.name, k.public_key).hex()
    assert f"{KEY_NAME} (id {kid})" in s["problems"][0]
    assert "2001-09-09T01:46:40" in s["problems"][0] and "valid" in s["problems"][0]
    (sk,) = s["signing_keys"]
    assert sk["status"] == "expired" and sk["not_after"].startswith("2001-09-09")


def test_forged_signature_names_the_key(archive: Archive, shared_keys: Path) -> None:
    """A checkpoint with a broken signature names the key whose signature failed."""
    from test_tamper import _resign_end

    def flipped(sn: Any) -> list[Any]:
        s = sn.signatures[0]
        return [type(s)(s.name, s.key_id, bytes([s.signature[0] ^ 1]) + s.signature[1:])]

    _resign_end(archive, flipped)
    code, doc = verify_json(shared_keys, archive.path)
    assert code == 1
    (s,) = doc["streams"]
    bad = [x for x in s["signing_keys"] if x["status"] == "bad"]
    assert len(bad) == 1 and bad[0]["seqs"] == [[END, END]] and bad[0]["name"] == KEY_NAME
    assert any(f"bad signature by key {KEY_NAME} (id " in p and f"seq {END}" in p for p in s["problems"])


# -- what must keep passing ------------------------------------------------------------------------


def test_reordered_lines_and_attributes_and_duplicates_pass(archive: Archive, shared_keys: Path,
                                                             tmp_path: Path) -> None:
    """Lines shuffled, every record's attribute list reversed, and exact duplicates: verified, all proven."""
    for rec in archive.records():
        rec["attributes"].reverse()
    archive.explode()
    archive.lines.extend(copy.deepcopy(archive.lines[:20]))
    random.Random(7).shuffle(archive.lines)
    archive.save()
    code, doc = verify_json(shared_keys, archive.path)
    assert code == 0, doc["streams"][0]["problems"]
    (s,) = doc["streams"]
    assert s["duplicates"] == 20 and s["proven"] == [[0, END]] and doc["proven"] == END + 1


def test_two_copies_of_one_archive_pass(archive: Archive, shared_keys: Path, tmp_path: Path) -> None:
    """The same archive in two files: every record a duplicate, all proven once."""
    copy2 = tmp_path / "copy.jsonl"
    shutil.copyfile(archive.path, copy2)
    code, doc = verify_json(shared_keys, archive.path, copy2)
    assert code == 0 and doc["proven"] == END + 1 and doc["streams"][0]["duplicates"] == END + 1
