"""What `otel-audit verify` reads: every line of every file goes to the reader whose shape it has, what no
reader takes is reported, folders are read by content (what is plainly not an archive is skipped and
listed), unreadable entries make the input unusable (exit 2), and lines are read in bounded memory.

Archives are written by the real pipeline (conftest); the verifier runs as the real CLI in a child process
(tests/test_tamper_cli.py `run_verify`, `verify_json`). No network.
"""

from __future__ import annotations

import copy
import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import Archive, Written, attr_value, child_env, is_checkpoint, seq_of, write_archive
from opentelemetry.sdk._logs import LoggerProvider
from test_tamper_cli import K, run_verify, verify_json

from otel_audit import keys
from otel_audit.canonical import STREAM_SEQ
from otel_audit.exporters.file import FileLogRecordExporter
from otel_audit.keys import Keyring
from otel_audit.processors.signing import SigningProcessor
from otel_audit.processors.spool import SpoolProcessor
from otel_audit.sources import splunk
from otel_audit.verify import kinds_of


def splunk_line(raw_bytes: int, offset: int = 0) -> bytes:
    """One line of Splunk's export format (search/jobs/export?output_mode=json), `raw_bytes` of _raw."""
    return orjson.dumps({"preview": False, "offset": offset,
                         "result": {"_raw": "x" * raw_bytes, "_time": "2024-01-01T00:00:00.000+00:00",
                                    "host": "h", "source": "s", "sourcetype": "_json"}}) + b"\n"


def prepend(path: Path, head: bytes) -> None:
    path.write_bytes(head + path.read_bytes())


def problems_text(doc: dict[str, Any]) -> str:
    return "\n".join(doc["malformed"] + doc["problems"])


# -- a line that looks like a SIEM export hides nothing ---------------------------------------------


@pytest.mark.parametrize("raw_bytes", [70_000, 40], ids=["longer-than-64KiB", "short"])
def test_splunk_looking_first_line_does_not_hide_an_altered_run(archive: Archive, shared_keys: Path,
                                                                 raw_bytes: int) -> None:
    """A Splunk export line on top of an archive (once enough to hand the whole file to the Splunk reader):
    the line goes to the Splunk reader, every OTLP line after it to the OTLP reader, and the altered seq is
    named (exit 1)."""
    archive.find(K)["body"] = {"stringValue": "edited"}
    archive.save()
    prepend(archive.path, splunk_line(raw_bytes))
    code, doc = verify_json(shared_keys, archive.path)
    assert code == 1, doc
    (s,) = doc["streams"]
    assert s["modified"] == [K]
    assert doc["read_as"] == {"splunk": 1, "otlp": len(archive.lines)}


def test_forged_unsigned_stream_behind_a_splunk_line_is_not_verified(archive: Archive, pristine: Written,
                                                                     shared_keys: Path, tmp_path: Path) -> None:
    """Records without integrity attributes, forged into a file that starts with a Splunk line, next to a
    pristine archive: they are read and counted as unsigned, so the input fails (exit 1), never exit 0."""
    forged = copy.deepcopy(archive.lines[1])
    for rl in forged["resourceLogs"]:
        for sl in rl["scopeLogs"]:
            for rec in sl["logRecords"]:
                rec["attributes"] = [kv for kv in rec["attributes"] if not kv["key"].startswith("audit.")]
    folder = tmp_path / "archives"
    folder.mkdir()
    shutil.copyfile(pristine.path, folder / "audit.jsonl")
    (folder / "export.json").write_bytes(splunk_line(70_000) + orjson.dumps(forged) + b"\n")
    code, doc = verify_json(shared_keys, folder)
    assert code == 1, doc
    assert doc["unsigned"] == sum(len(sl["logRecords"]) for rl in forged["resourceLogs"] for sl in rl["scopeLogs"])
    assert any("unsigned" in p for p in doc["problems"])
    assert doc["streams"][0]["status"] == "verified"  # the pristine stream itself is fine
    alone = verify_json(shared_keys, folder / "export.json")
    assert alone[0] == 1 and any("nothing is proven" in p for p in alone[1]["problems"])


def test_a_line_no_reader_takes_is_reported_with_its_place(archive: Archive, shared_keys: Path) -> None:
    """A JSON line of no reader's shape, one that two readers would take, and a line that is not JSON are each
    reported as file:line with why; the archive's own lines are still proven."""
    n = len(archive.lines)
    with archive.path.open("ab") as fh:
        fh.write(b'{"hello": "world"}\n')
        fh.write(b'{"_raw": "{}", "_source": {}}\n')
        fh.write(b"plain words\n")
        fh.write(b'{"resourceLogs": [], "_source": {}}\n')
    code, doc = verify_json(shared_keys, archive.path)
    assert code == 1
    text = problems_text(doc)
    assert f"{archive.path}:{n + 1}: a JSON object with keys hello: neither an OTLP logs request" in text
    assert f"{archive.path}:{n + 2}: has the shape of splunk and elastic at once; not read" in text
    assert f"{archive.path}:{n + 3}: not JSON" in text
    assert f"{archive.path}:{n + 4}: has the shape of otlp and elastic at once" in text
    assert doc["streams"][0]["status"] == "verified"


# -- a file mixing OTLP lines and SIEM lines ----------------------------------------------------------


def _as_siem_lines(records: list[dict[str, Any]]) -> list[bytes]:
    """Each record as a Splunk export line or an Elasticsearch hit, alternately: what the searchable copy of
    the record looks like once a search gives it back (audit.otlp is the signed record)."""
    out = []
    for i, rec in enumerate(records):
        text = json.dumps(rec, separators=(",", ":"))
        seq = seq_of(rec)
        if i % 2:
            out.append(orjson.dumps({"preview": False, "offset": i,
                                     "result": {"audit.otlp": text, "audit.stream.seq": str(seq)}}))
        else:
            sid = attr_value(rec, "audit.stream.id")
            out.append(orjson.dumps({"_index": "logs-audit", "_id": f"{sid}-{seq}",
                                     "_source": {"audit": {"otlp": text}}}))
    return out


def test_a_file_mixing_otlp_and_siem_lines_reads_each_line_by_its_reader(archive: Archive, pristine: Written,
                                                                          shared_keys: Path, tmp_path: Path) -> None:
    """OTLP lines of one stream interleaved with Splunk and Elasticsearch lines holding another stream's signed
    records: both streams verify (exit 0); an altered record in a Splunk line is named by its seq (exit 1);
    --source otlp reports the SIEM lines as not OTLP."""
    other = write_archive(tmp_path / "other.jsonl", shared_keys, 40, checkpoint_every=10)
    siem = _as_siem_lines(Archive.load(other.path).records())
    otlp = [orjson.dumps(d) for d in archive.lines]
    mixed = []
    for i in range(max(len(siem), len(otlp))):
        mixed.extend(x[i] for x in (otlp, siem) if i < len(x))
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(mixed) + b"\n")
    assert kinds_of(path) == {"otlp": len(otlp), "elastic": (len(siem) + 1) // 2, "splunk": len(siem) // 2}

    code, doc = verify_json(shared_keys, path)
    assert code == 0, problems_text(doc)
    assert sorted(s["stream_id"] for s in doc["streams"]) == sorted([pristine.stream_id, other.stream_id])
    proc = run_verify(shared_keys, path)
    assert "read as: " in proc.stdout and "VERIFIED" in proc.stdout

    victim = next(r for r in Archive.load(other.path).records() if not is_checkpoint(r) and seq_of(r) % 2 == 0)
    bad_seq = seq_of(victim)
    edited = list(mixed)
    for j, ln in enumerate(edited):
        d = orjson.loads(ln)
        res = d.get("result") if isinstance(d, dict) else None
        if res and res.get("audit.stream.seq") == str(bad_seq):
            rec = json.loads(res["audit.otlp"])
            rec["body"] = {"stringValue": "edited in the SIEM"}
            res["audit.otlp"] = json.dumps(rec)
            edited[j] = orjson.dumps(d)
            break
    else:
        raise AssertionError("no Splunk line for the victim")
    path.write_bytes(b"\n".join(edited) + b"\n")
    code, doc = verify_json(shared_keys, path)
    assert code == 1
    s = next(s for s in doc["streams"] if s["stream_id"] == other.stream_id)
    assert s["modified"] == [bad_seq]

    code, doc = verify_json(shared_keys, path, extra=("--source", "otlp"))
    assert code == 1
    assert f"{path}:2: not an OTLP logs request (no resourceLogs)" in problems_text(doc)
    code, doc = verify_json(shared_keys, path, extra=("--source", "splunk"))
    assert code == 1
    assert f"{path}:1: OTLP/JSON data, not splunk (--source splunk)" in problems_text(doc)


def test_a_whole_file_document_larger_than_the_limit_is_refused_clearly(archive: Archive, shared_keys: Path,
                                                                        tmp_path: Path) -> None:
    """A pretty-printed Elasticsearch _search dump is read as one document; over $OTEL_AUDIT_MAX_DOCUMENT it is
    refused with the limit named (exit 2: nothing else to verify), never read past the limit."""
    hits = [orjson.loads(x) for x in _as_siem_lines(archive.records()[:30])[::2]]
    dump = tmp_path / "search.json"
    dump.write_text(json.dumps({"took": 3, "hits": {"total": {"value": len(hits)}, "hits": hits}}, indent=2))
    assert kinds_of(dump) == {"elastic": 1}
    env = {**child_env(), "OTEL_AUDIT_MAX_DOCUMENT": "4096"}
    proc = subprocess.run([sys.executable, "-m", "otel_audit.cli", "verify", "--keys", str(shared_keys), str(dump)],
                          capture_output=True, text=True, timeout=120, env=env, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "larger than 4,096 bytes" in proc.stderr and "OTEL_AUDIT_MAX_DOCUMENT" in proc.stderr
    assert "Traceback" not in proc.stderr


def _datadog_csv(records: list[dict[str, Any]]) -> str:
    """A Log Explorer CSV download of the records, with the @audit.otlp column (and the stream id and seq)."""
    import csv
    import datetime as dt
    import io
    import socket

    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["date", "host", "service", "@audit.stream.id", "@audit.stream.seq", "@audit.otlp"])
    for rec in records:
        ms = int(rec["timeUnixNano"]) // 1_000_000
        date = (dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(milliseconds=ms)).isoformat(
            timespec="milliseconds").replace("+00:00", "Z")
        # host and service as the exporter writes them: the producer's (its signed checkpoints name them)
        w.writerow([date, socket.gethostname(), "otel-audit-tests", attr_value(rec, "audit.stream.id"), seq_of(rec),
                    json.dumps(rec, separators=(",", ":"))])
    return out.getvalue()


def test_a_datadog_csv_is_read_whole_and_json_lines_in_it_are_still_read(archive: Archive, shared_keys: Path,
                                                                          tmp_path: Path) -> None:
    """A Datadog CSV download verifies (exit 0). A CSV header put on top of an altered archive hands the file to
    the CSV reader, yet its OTLP lines are still read by the OTLP reader: the altered seq is named and the
    lines that are no CSV rows are reported (exit 1)."""
    path = tmp_path / "datadog.csv"
    path.write_text(_datadog_csv(archive.records()))
    code, doc = verify_json(shared_keys, path)
    assert code == 0, problems_text(doc)
    assert doc["read_as"] == {"datadog": 1} and doc["streams"][0]["records"] == len(archive.records())

    archive.find(K)["body"] = {"stringValue": "edited"}
    archive.save()
    prepend(archive.path, b"date,host,@audit.otlp\n")
    code, doc = verify_json(shared_keys, archive.path)
    assert code == 1
    assert doc["streams"][0]["modified"] == [K]
    assert doc["read_as"] == {"datadog": 1, "otlp": len(archive.lines)}
    assert any(p.startswith(f"datadog: {archive.path}:2: ") for p in doc["problems"]), doc["problems"]


# -- folders --------------------------------------------------------------------------------------------


def _producer_state(base: Path) -> tuple[Path, list[str]]:
    """A producer's whole state folder, written by the real pipeline run twice (a restart): keys (keyring.json,
    private/*.pem), a delivery spool with the file exporter (spool.json, cursors/, segments/, lock), the
    signing processor's chain state (state.json, lock), the archive, and a .vkey for auditors."""
    kdir = base / "keys"
    keys.generate(kdir, "producer")
    streams = []
    for run in range(2):
        spool = SpoolProcessor(base / "spool", {"file": FileLogRecordExporter(path=base / "archive" / "audit.jsonl")},
                               segment_bytes=64 << 10)
        provider = LoggerProvider()
        sp = SigningProcessor(kdir, downstream=spool, checkpoint_every=50, checkpoint_interval=3600,
                              state_dir=base / "state")
        spool.on_drop = sp.record_gap
        provider.add_log_record_processor(sp)
        log = provider.get_logger("t")
        for i in range(120):
            log.emit(event_name="authentication.login.succeeded", body=f"login {run}.{i}", attributes={"user.id": "u"})
        provider.shutdown()
        streams.append(sp.stream_id)
    ring = Keyring.load(kdir)
    (kdir / "auditors.vkey").write_text("".join(k.to_json()["vkey"] + "\n" for k in ring))
    return kdir, streams


def test_a_producers_state_folder_verifies_and_lists_what_it_skips(tmp_path: Path) -> None:
    """verify on a producer's whole state folder: the archive verifies (exit 0) and every keyring, key, spool
    and state file is listed as skipped with what it is, in the text and the JSON report."""
    base = tmp_path / "producer"
    kdir, streams = _producer_state(base)
    assert any((base / "spool" / "segments").iterdir()) and (base / "spool" / "cursors" / "file.json").is_file()
    code, doc = verify_json(kdir, base)
    assert code == 0, problems_text(doc)
    assert sorted(s["stream_id"] for s in doc["streams"]) == sorted(streams)
    assert doc["files"] == 1
    skipped = doc["skipped"]
    expect = {
        kdir / "keyring.json": "a public keyring",
        kdir / "private" / "producer.pem": "a PEM key or certificate",
        kdir / "auditors.vkey": "a verifier key (vkey)",
        base / "spool" / "spool.json": "a delivery spool manifest",
        base / "spool" / "cursors" / "file.json": "a delivery spool cursor",
        base / "spool" / "lock": "empty",
        base / "state" / "state.json": "a signing processor's chain state",
        base / "state" / "lock": "empty",
    }
    for path, why in expect.items():
        assert f"{path} ({why})" in skipped, (path, skipped)
    segments = sorted((base / "spool" / "segments").iterdir())
    for seg in segments:
        assert any(s.startswith(f"{seg} (") and "delivery spool data" in s for s in skipped), (seg, skipped)
    text = run_verify(kdir, base).stdout
    assert f"skipped: {kdir / 'keyring.json'} (a public keyring)" in text and "result: VERIFIED" in text


def test_skipping_is_by_content_not_by_name(archive: Archive, pristine: Written, shared_keys: Path,
                                            tmp_path: Path) -> None:
    """An altered archive named keyring.json or spool.json, or with a spool segment's header line on top, is
    read (exit 1, the seq named); a keyring named audit.jsonl is skipped."""
    archive.find(K)["body"] = {"stringValue": "edited"}
    archive.save()
    for name, head in (("keyring.json", b""), ("spool.json", b""), ("0000000000000001.spool", b'0bc5d309["H",1]\n')):
        folder = tmp_path / name.replace(".", "-")
        folder.mkdir()
        shutil.copyfile(archive.path, folder / name)
        prepend(folder / name, head)
        code, doc = verify_json(shared_keys, folder)
        assert code == 1 and doc["streams"][0]["modified"] == [K], (name, problems_text(doc))
        if head:
            assert f"{folder / name}:1: not an archive line: delivery spool data" in problems_text(doc)
    folder = tmp_path / "named"
    folder.mkdir()
    shutil.copyfile(pristine.path, folder / "a.jsonl")
    shutil.copyfile(shared_keys / "keyring.json", folder / "audit.jsonl")
    code, doc = verify_json(shared_keys, folder)
    assert code == 0 and f"{folder / 'audit.jsonl'} (a public keyring)" in doc["skipped"]


def test_a_file_in_the_folder_that_is_not_an_archive_is_reported(pristine: Written, shared_keys: Path,
                                                                  tmp_path: Path) -> None:
    """A text file next to an archive fails the verification, named once as not an archive (exit 1); a folder
    holding nothing readable is unusable input (exit 2)."""
    folder = tmp_path / "archives"
    folder.mkdir()
    shutil.copyfile(pristine.path, folder / "audit.jsonl")
    (folder / "NOTES.txt").write_text("rotated weekly\nask ops before deleting\n")
    code, doc = verify_json(shared_keys, folder)
    assert code == 1
    (msg,) = doc["malformed"]
    assert msg.startswith(f"{folder / 'NOTES.txt'}: not an archive nor a SIEM export; no line of it is one "
                          f"(2 line(s); {folder / 'NOTES.txt'}:1: not JSON ("), msg
    assert doc["streams"][0]["status"] == "verified"
    (folder / "audit.jsonl").unlink()
    proc = run_verify(shared_keys, folder)
    assert proc.returncode == 2 and "no audit records found" in proc.stderr and "NOTES.txt" in proc.stderr
    (folder / "NOTES.txt").unlink()
    shutil.copyfile(shared_keys / "keyring.json", folder / "keyring.json")
    proc = run_verify(shared_keys, folder)
    assert proc.returncode == 2 and "nothing to verify" in proc.stderr and "a public keyring" in proc.stderr
    (folder / "keyring.json").unlink()
    proc = run_verify(shared_keys, folder)
    assert proc.returncode == 2 and "folder holds no files" in proc.stderr


def _unreadable_folder(where: Path) -> tuple[Path, str]:
    """A subfolder that cannot be listed, also by root: mode 000 when not root; as root (who may read any mode)
    a folder nested so deep that its path exceeds PATH_MAX, which no process can list by its path."""
    if os.geteuid() != 0:
        d = where / "locked"
        d.mkdir()
        (d / "audit.jsonl").write_text("{}\n")
        d.chmod(0)
        return d, "Permission denied"
    fd = os.open(where, os.O_RDONLY)
    name = "d" * 250
    path = where
    # Stop at the first level whose path reaches PATH_MAX, the one verify cannot list: a fixed bound
    # above it named a deeper level whenever the tmp path's length (longer under xdist) left one between.
    limit = os.pathconf(where, "PC_PATH_MAX")
    try:
        while len(os.fsencode(path)) < limit:
            os.mkdir(name, dir_fd=fd)
            nfd = os.open(name, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nfd
            path = path / name
    finally:
        os.close(fd)
    return path, "File name too long"


@pytest.mark.parametrize("kind", ["unlistable-folder", "dangling-link", "link-loop", "fifo"])
def test_an_entry_that_cannot_be_read_makes_the_input_unusable(pristine: Written, shared_keys: Path,
                                                               tmp_path: Path, kind: str) -> None:
    """An unreadable subfolder, a dangling or looping symbolic link, or a named pipe in the folder is never
    skipped silently: exit 2 naming it and why (the records it may hold cannot be accounted for)."""
    folder = tmp_path / "archives"
    folder.mkdir()
    shutil.copyfile(pristine.path, folder / "audit.jsonl")
    if kind == "unlistable-folder":
        bad, why = _unreadable_folder(folder)
    elif kind == "dangling-link":
        bad, why = folder / "rotated", "which does not exist"
        bad.symlink_to(folder / "gone.jsonl")
    elif kind == "link-loop":
        bad, why = folder / "loop", "Too many levels of symbolic links"
        bad.symlink_to(bad)
    else:
        bad, why = folder / "pipe.jsonl", "a named pipe (FIFO)"
        os.mkfifo(bad)
    try:
        proc = run_verify(shared_keys, folder)
    finally:
        if kind == "unlistable-folder" and os.geteuid() != 0:
            bad.chmod(0o700)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert str(bad) in proc.stderr and why in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and "VERIFIED" not in proc.stdout


# -- bounded reading ------------------------------------------------------------------------------------


MEASURE = """
import resource, subprocess, sys
proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)
sys.stdout.write(proc.stdout)
sys.stderr.write(proc.stderr)
print("PEAK_KB", resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(proc.returncode)
"""


def test_a_huge_line_in_a_small_gzip_is_reported_in_bounded_memory(archive: Archive, shared_keys: Path,
                                                                   tmp_path: Path) -> None:
    """A 0.5 MB gzip whose first line decompresses to 512 MiB: reported as too long at file:1 and skipped
    without being held (the verify child's peak RSS stays under 300 MB, below the line's size); every other
    line of the archive is still read and proven."""
    line_mib = 512
    member = gzip.compress(b"x" * (16 << 20), compresslevel=9)
    data = (gzip.compress(b'{"resourceLogs": "') + member * (line_mib // 16)
            + gzip.compress(b'"}\n' + b"".join(orjson.dumps(d) + b"\n" for d in archive.lines)))
    path = tmp_path / "audit.jsonl.gz"
    path.write_bytes(data)
    assert len(data) < 1 << 20
    cmd = [sys.executable, "-m", "otel_audit.cli", "verify", "--format", "json", "--keys", str(shared_keys), str(path)]
    proc = subprocess.run([sys.executable, "-c", MEASURE, *cmd], capture_output=True, text=True, timeout=300,
                          env=child_env(), check=False)
    out, _, peak = proc.stdout.rpartition("PEAK_KB ")
    doc = json.loads(out)
    assert proc.returncode == 1, proc.stderr
    size = (line_mib << 20) + len(b'{"resourceLogs": "') + 3
    assert doc["malformed"] == [f"{path}:1: a line longer than 67,108,864 bytes ({size:,} bytes), not read "
                                "(the limit is $OTEL_AUDIT_MAX_LINE)"]
    (s,) = doc["streams"]
    assert s["status"] == "verified" and s["records"] == len(archive.records())
    peak_mb = int(peak) / 1024
    assert peak_mb < 300, f"peak RSS {peak_mb:.0f} MB"


def test_the_line_limit_can_be_lowered(archive: Archive, shared_keys: Path) -> None:
    """$OTEL_AUDIT_MAX_LINE lowers the limit: exactly the archive lines longer than it are reported, by line
    number; the others are read."""
    sizes = [len(x) - 1 for x in archive.path.read_bytes().splitlines(keepends=True)]
    limit = max(max(sizes) - 1, 4096)
    longer = [n for n, size in enumerate(sizes, 1) if size > limit]
    assert longer and len(longer) < len(sizes)
    env = {**child_env(), "OTEL_AUDIT_MAX_LINE": str(limit)}
    proc = subprocess.run([sys.executable, "-m", "otel_audit.cli", "verify", "--format", "json", "--keys",
                           str(shared_keys), str(archive.path)], capture_output=True, text=True, timeout=120,
                          env=env, check=False)
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["malformed"] == [f"{archive.path}:{n}: a line longer than {limit:,} bytes ({sizes[n - 1] + 1:,} bytes), "
                                "not read (the limit is $OTEL_AUDIT_MAX_LINE)" for n in longer]
    assert doc["streams"][0]["missing"]


# -- the readers behind one protocol ---------------------------------------------------------------------


def test_the_siem_readers_do_not_import_the_verifier() -> None:
    """otel_audit.sources.* depend on the protocol module, not on otel_audit.verify; verify finds them through
    the registry, and each is a `Reader`."""
    code = ("import sys\n"
            "import otel_audit.sources.splunk, otel_audit.sources.elastic, otel_audit.sources.datadog\n"
            "assert not [m for m in sys.modules if m.startswith('otel_audit.verify')], sorted(sys.modules)\n"
            "from otel_audit import readers\n"
            "for k in readers.kinds():\n"
            "    r = readers.create(k)\n"
            "    assert isinstance(r, readers.Reader) and r.kind == k, k\n"
            "print(','.join(readers.kinds()))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=child_env())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "splunk,elastic,datadog"


def test_splunk_verify_export_passes_partial_through(tmp_path: Path, shared_keys: Path) -> None:
    """The Splunk helper's partial= reaches the verifier: the second stream of a restart alone fails for its
    missing predecessor, and verifies with partial=True."""
    state = tmp_path / "state"
    write_archive(tmp_path / "one.jsonl", shared_keys, 20, checkpoint_every=10, state_dir=state)
    second = write_archive(tmp_path / "two.jsonl", shared_keys, 20, checkpoint_every=10, state_dir=state)
    results = [{"audit.otlp": json.dumps(r), "audit.stream.seq": str(attr_value(r, STREAM_SEQ))}
               for r in Archive.load(second.path).records()]
    ring = Keyring.load(shared_keys)
    report, _ = splunk.verify_export([orjson.dumps({"results": results})], ring)
    assert not report.ok and "predecessor stream" in report.streams[0].problems[0]
    report, _ = splunk.verify_export([orjson.dumps({"results": results})], ring, partial=True)
    assert report.ok, report.streams[0].problems
