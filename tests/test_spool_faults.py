"""The spool under an operator's bad day, each fault made for real: a producer process (started with the
test's Python) writes into a spool on disk, a destination lags or is down, the process is stopped cleanly
or with SIGKILL, the disk fills (a small tmpfs mounted for the test), segments and cursors are damaged
on disk. Every test ends by counting each acknowledged emit at the destination and by running
`otel-audit verify` on what arrived."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from otel_audit import keys
from otel_audit.verify import iter_records

PRODUCER = r'''
import json, os, sys, time
from opentelemetry.sdk._logs import LoggerProvider
from otel_audit.errors import DeliveryError
from otel_audit.processors.signing import SigningProcessor
from otel_audit.processors.spool import SpoolProcessor
from otel_audit.exporters.file import FileLogRecordExporter

cfg = json.loads(sys.argv[1])
exporters = {name: FileLogRecordExporter(path=path) for name, path in cfg["exporters"].items()}
spool = SpoolProcessor(cfg["spool"], exporters, segment_bytes=cfg.get("segment_bytes", 64 << 10),
                       max_bytes=cfg.get("max_bytes", 1 << 30), mode=cfg.get("mode", "fail_closed"),
                       block_timeout=cfg.get("block_timeout", 0.2), retry_initial=0.05, retry_max=0.2,
                       shutdown_timeout=cfg.get("shutdown_timeout", 2.0))
provider = LoggerProvider()
# checkpoints only by count, so that they are made inside emit and an event's seq is known exactly
signing = SigningProcessor(cfg["keys"], downstream=spool, checkpoint_every=200, checkpoint_interval=3600,
                           state_dir=cfg["state"])
spool.on_drop = signing.record_gap
spool.on_reject = signing.record_rejected
spool.on_lost = signing.record_lost
provider.add_log_record_processor(signing)
log = provider.get_logger("faults")
print("running " + signing.stream_id, flush=True)
n = cfg["count"]
i = 0
refused = 0
while n < 0 or i < n:
    seq = signing.seq
    try:
        log.emit(event_name="authentication.login.succeeded", body=f"event {i}", attributes={"user.id": "u", "n": i})
    except DeliveryError:
        refused += 1
        sys.stdout.write("refused\n")
    else:
        # the emit returned: the record is acknowledged. Say so only now.
        sys.stdout.write(f"ack {signing.stream_id} {seq}\n")
    sys.stdout.flush()
    i += 1
    if cfg.get("pause_file") and os.path.exists(cfg["pause_file"]):
        while os.path.exists(cfg["pause_file"]):
            time.sleep(0.05)
if cfg.get("flush"):
    provider.force_flush(60000)
stats = spool.stats
provider.shutdown()
print("stats " + json.dumps({"delivered": stats.delivered, "refused": stats.refused, "dropped": stats.dropped,
                             "disk_full": stats.disk_full, "corrupt": stats.corrupt_lines,
                             "damaged": stats.damaged, "rejected": stats.rejected}), flush=True)
'''


@pytest.fixture
def kdir(tmp_path: Path) -> Path:
    d = tmp_path / "keys"
    keys.generate(d, "faults")
    return d


def _run(tmp_path: Path, cfg: dict, *, kill_after: float | None = None) -> tuple[set[tuple[str, int]], dict, str]:
    """Run the producer once; (acknowledged (stream, seq), final stats or {}, stderr)."""
    script = tmp_path / "producer.py"
    script.write_text(PRODUCER)
    proc = subprocess.Popen([sys.executable, str(script), json.dumps(cfg)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    early: list[str] = []
    if kill_after is not None:
        # kill_after counts from the first acknowledged record, not from the start: a loaded machine
        # (parallel tests) may take a second or two just to import the producer.
        for line in proc.stdout or ():
            early.append(line)
            if line.startswith("ack "):
                break
        time.sleep(kill_after)
        os.kill(proc.pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=240)
    if kill_after is None:
        assert proc.returncode == 0, err[-3000:]
    acked = set()
    stats: dict = {}
    for line in [*early, *out.splitlines()]:
        parts = line.split()
        if len(parts) == 3 and parts[0] == "ack":
            acked.add((parts[1], int(parts[2])))
        elif line.startswith("stats "):
            stats = json.loads(line[6:])
    return acked, stats, err


def _arrived(archive_dir: Path) -> set[tuple[str, int]]:
    got = set()
    files = sorted(p for p in archive_dir.rglob("*") if p.is_file()) if archive_dir.is_dir() else []
    for _, rec in iter_records(files):
        a = {kv["key"]: kv["value"] for kv in rec["attributes"]}
        got.add((a["audit.stream.id"]["stringValue"], int(a["audit.stream.seq"]["intValue"])))
    return got


def _verify(kdir: Path, archive_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "otel-audit"
    return subprocess.run([str(exe), "verify", "--keys", str(kdir), "--format", "json", *extra, str(archive_dir)],
                          capture_output=True, text=True, timeout=120)


def _cfg(tmp_path: Path, kdir: Path, count: int, **kw: object) -> dict:
    cfg = {"keys": str(kdir), "state": str(tmp_path / "state"), "spool": str(tmp_path / "spool"), "count": count,
           "exporters": {"fast": str(tmp_path / "fast" / "audit.jsonl"),
                         "slow": str(tmp_path / "slow" / "audit.jsonl")}}
    cfg.update(kw)
    return cfg


@pytest.mark.parametrize("stop", ["clean", "kill"])
def test_a_lagging_exporter_keeps_its_whole_backlog_across_a_restart(tmp_path: Path, kdir: Path, stop: str) -> None:
    """An exporter whose destination is down while many segments are written (clean stop or SIGKILL) gets
    every acknowledged record after the restart; nothing it had not acknowledged is skipped or deleted."""
    (tmp_path / "slow").write_text("the slow destination is down: its folder is a file")
    if stop == "clean":
        acked, stats, _ = _run(tmp_path, _cfg(tmp_path, kdir, 3000))
        assert stats["delivered"].get("slow", 0) == 0
    else:
        acked, _, _ = _run(tmp_path, _cfg(tmp_path, kdir, -1), kill_after=2.5)
    assert len(acked) > 500
    segments = list((tmp_path / "spool" / "segments").iterdir())
    assert len(segments) > 3, "the backlog spans several segments"
    (tmp_path / "slow").unlink()
    acked2, _, _ = _run(tmp_path, _cfg(tmp_path, kdir, 10, flush=True))
    for name in ("slow", "fast"):
        missing = (acked | acked2) - _arrived(tmp_path / name)
        assert not missing, f"{name}: {len(missing)} acknowledged record(s) lost, e.g. {sorted(missing)[:5]}"
        rep = _verify(kdir, tmp_path / name)
        assert rep.returncode == 0, rep.stdout[-3000:]


def test_a_removed_exporter_keeps_its_backlog_and_is_named_at_every_start(tmp_path: Path, kdir: Path) -> None:
    """An exporter dropped from the configuration while behind keeps its backlog on disk; every start names
    it; configured again, it gets everything it was owed."""
    (tmp_path / "slow").write_text("down")
    acked, _, _ = _run(tmp_path, _cfg(tmp_path, kdir, 1500))
    only_fast = _cfg(tmp_path, kdir, 1500, flush=True)
    only_fast["exporters"] = {"fast": only_fast["exporters"]["fast"]}
    for _ in range(2):
        more, _, err = _run(tmp_path, only_fast)
        acked |= more
        assert "'slow' is no longer configured" in err and "otel-audit spool drop" in err
    (tmp_path / "slow").unlink()
    final, _, _ = _run(tmp_path, _cfg(tmp_path, kdir, 5, flush=True))
    missing = (acked | final) - _arrived(tmp_path / "slow")
    assert not missing, f"{len(missing)} record(s) owed to the removed exporter were lost"
    assert _verify(kdir, tmp_path / "slow").returncode == 0


def _spool_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "spool" / "segments").iterdir())


def test_damaged_segments_and_cursors_are_detected_and_the_rest_is_delivered(tmp_path: Path, kdir: Path) -> None:
    """A flipped byte, a truncated segment, a deleted segment and a garbled cursor are each reported
    with counts and set aside; every record in the undamaged lines still reaches the destination, and the
    records the damage destroyed are declared, exactly, in signed gap markers of the next stream."""
    (tmp_path / "slow").write_text("down")
    acked, _, _ = _run(tmp_path, _cfg(tmp_path, kdir, 3000))
    segs = _spool_files(tmp_path)
    assert len(segs) >= 6
    # a byte flipped in the middle of segment 1
    data = bytearray(segs[1].read_bytes())
    mid = len(data) // 2
    data[mid] = data[mid] ^ 0x20 if data[mid] not in (0x0A, 0x2A) else 0x41
    segs[1].write_bytes(bytes(data))
    # segment 2 loses its last third, segment 3 is deleted
    size = segs[2].stat().st_size
    os.truncate(segs[2], size * 2 // 3)
    segs[3].unlink()
    # the slow exporter's cursor is garbled
    cursor = tmp_path / "spool" / "cursors" / "slow.json"
    cursor.write_bytes(cursor.read_bytes().replace(b'"offset":', b'"offset":9'))
    (tmp_path / "slow").unlink()
    acked2, stats, err = _run(tmp_path, _cfg(tmp_path, kdir, 10, flush=True))
    assert stats["damaged"] >= 3, err[-2000:]
    assert stats["corrupt"] >= 1
    assert "no end line" in err and "missing" in err and "cursor" in err
    assert any((tmp_path / "spool" / "quarantine").iterdir())
    got = _arrived(tmp_path / "slow")
    lost = (acked | acked2) - got
    # what was lost is the damaged line(s), the cut third and the deleted segment: a minority, never the rest
    assert 0 < len(lost) < len(acked) // 2
    # the records the damage destroyed lie between undamaged neighbours of one stream: the producer's new
    # stream declares exactly them in signed gap markers, so the verifier names them and passes the rest
    rep = _verify(kdir, tmp_path / "slow")
    assert rep.returncode == 0, rep.stdout[-3000:] + err
    declared = set()
    for s in json.loads(rep.stdout)["streams"]:
        for d in s["declared"]:
            assert d["reason"] == "lost to damage in the delivery spool before destination slow"
            assert d["destination"] == "slow" and d["marker_stream"] != s["stream_id"]
            declared.update((s["stream_id"], q) for a, b in d["missing"] for q in range(a, b + 1))
    assert lost <= declared, f"{len(lost - declared)} lost record(s) not declared"
    assert not declared - lost - {x for x in declared if x not in acked}
    # the fast destination had everything before the damage: the same markers say "present" there
    assert _verify(kdir, tmp_path / "fast").returncode == 0


def test_a_cursor_beyond_the_spool_replays_instead_of_skipping(tmp_path: Path, kdir: Path) -> None:
    """A cursor naming a segment past the end of the spool is reported and the spool is replayed to that
    exporter (duplicates, not loss); force_flush does not claim success before it is delivered."""
    (tmp_path / "slow").write_text("down")
    acked, _, _ = _run(tmp_path, _cfg(tmp_path, kdir, 1000))
    cursor = tmp_path / "spool" / "cursors" / "slow.json"
    doc = json.loads(cursor.read_bytes())
    body = json.dumps({"offset": 0, "segment": 999}, separators=(",", ":"), sort_keys=True).encode()
    import zlib
    cursor.write_bytes(json.dumps({"crc": zlib.crc32(body), "doc": json.loads(body)}).encode())
    assert doc["crc"] != zlib.crc32(body)
    (tmp_path / "slow").unlink()
    acked2, stats, err = _run(tmp_path, _cfg(tmp_path, kdir, 10, flush=True))
    assert "past the end of the spool" in err
    assert not (acked | acked2) - _arrived(tmp_path / "slow")
    assert _verify(kdir, tmp_path / "slow").returncode == 0


def test_a_spool_smaller_than_two_segments_is_refused(tmp_path: Path) -> None:
    """max_bytes below two segments cannot free a segment: it is an error naming both sizes, and without a
    segment size the spool picks one that fits."""
    from otel_audit.exporters.file import FileLogRecordExporter
    from otel_audit.processors.spool import SpoolProcessor

    exp = {"f": FileLogRecordExporter(path=tmp_path / "a.jsonl")}
    with pytest.raises(ValueError, match=r"segment_bytes \(1048576\) must be at most half of max_bytes \(1048576\)"):
        SpoolProcessor(tmp_path / "s", exp, max_bytes=1 << 20, segment_bytes=1 << 20)
    s = SpoolProcessor(tmp_path / "s", exp, max_bytes=1 << 20)
    try:
        assert s.segment_bytes * 8 <= 1 << 20
    finally:
        s.shutdown()


def test_a_small_spool_with_a_healthy_destination_never_refuses(tmp_path: Path, kdir: Path) -> None:
    """A 1 MiB spool in front of a healthy destination takes 3000 records without refusing one: delivered
    segments are freed, so a small spool is never full of delivered bytes."""
    cfg = _cfg(tmp_path, kdir, 3000, max_bytes=1 << 20, segment_bytes=64 << 10, flush=True, block_timeout=5.0)
    cfg["exporters"] = {"fast": cfg["exporters"]["fast"]}
    acked, stats, _ = _run(tmp_path, cfg)
    assert stats["refused"] == 0 and len(acked) == 3000
    assert not acked - _arrived(tmp_path / "fast")


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 4 MiB tmpfs mounted for the test (CI runs as root), unmounted after."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(mnt: Path, leave: int) -> Path:
    st = os.statvfs(mnt)
    free = st.f_bavail * st.f_frsize
    filler = mnt / "filler"
    with open(filler, "wb") as fh:
        fh.write(b"\x01" * max(0, free - leave))
    return filler


@pytest.mark.parametrize("mode", ["fail_closed", "fail_open"])
def test_a_full_disk_never_kills_the_process_and_recovers_when_space_returns(
        tmp_path: Path, kdir: Path, small_disk: Path, mode: str) -> None:
    """With the spool on a full disk the producer stays alive: fail_closed refuses with DeliveryError,
    fail_open drops and declares; when space returns writing resumes by itself; every acknowledged record
    arrives and the archive verifies."""
    filler = _fill(small_disk, 300 << 10)
    pause = tmp_path / "pause"
    cfg = _cfg(tmp_path, kdir, 4000, spool=str(small_disk / "spool"), segment_bytes=128 << 10, mode=mode,
               flush=True, pause_file=str(pause))
    cfg["exporters"] = {"slow": cfg["exporters"]["slow"]}
    (tmp_path / "slow").write_text("down, so the spool must hold everything")
    script = tmp_path / "producer.py"
    script.write_text(PRODUCER)
    proc = subprocess.Popen([sys.executable, str(script), json.dumps(cfg)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    acked: set[tuple[str, int]] = set()
    refused = 0
    stats: dict = {}
    freed = False
    for line in proc.stdout:
        parts = line.split()
        if parts[:1] == ["ack"]:
            acked.add((parts[1], int(parts[2])))
        elif parts[:1] == ["refused"]:
            refused += 1
        elif line.startswith("stats "):
            stats = json.loads(line[6:])
        if not freed and (refused >= 20 or (mode == "fail_open" and len(acked) > 1200)):
            pause.write_text("")
            time.sleep(0.5)
            filler.unlink()  # space returns
            (tmp_path / "slow").unlink()  # and the destination
            freed = True
            pause.unlink()
    err = proc.stderr.read() if proc.stderr else ""
    assert proc.wait(timeout=120) == 0, f"the producer died: {proc.returncode}\n{err[-3000:]}"
    assert "SIGBUS" not in err and "Traceback" not in err, err[-3000:]
    assert freed and stats["disk_full"] >= 1, err[-2000:]
    if mode == "fail_closed":
        assert refused >= 20 and stats["refused"] == refused
    else:
        assert stats["dropped"] >= 1
    assert len(acked) > 1000
    rep = _verify(kdir, tmp_path / "slow")
    assert rep.returncode == 0, rep.stdout[-3000:]
    declared = set()
    for s in json.loads(rep.stdout)["streams"]:
        for a, b in s.get("dropped", []):
            declared.update((s["stream_id"], q) for q in range(a, b + 1))
    missing = acked - _arrived(tmp_path / "slow")
    # fail_open returns from emit for a record it drops: each such record is declared in a signed gap marker
    assert missing == (declared & acked), f"{len(missing - declared)} acknowledged record(s) lost undeclared"
    if mode == "fail_closed":
        assert not missing
    else:
        assert len(missing) == stats["dropped"], (sorted(declared - missing)[:20], len(declared))


CONFIG = """
processors:
  signing: {{keys_dir: {keys}, state_dir: {state}, checkpoint_every: 100}}
  delivery: {{directory: {spool}, segment_size_mib: 0.0625, shutdown_timeout: 2s}}
exporters:
{exporters}
service:
  pipelines:
    logs/audit:
      processors: [signing, delivery]
      exporters: [{names}]
"""


def _configured_run(tmp_path: Path, kdir: Path, names: list[str], count: int) -> subprocess.CompletedProcess[str]:
    exporters = "".join(f"  file/{n}: {{path: {tmp_path / n / 'audit.jsonl'}}}\n" for n in names)
    cfg = tmp_path / "audit.yaml"
    cfg.write_text(CONFIG.format(keys=kdir, state=tmp_path / "state", spool=tmp_path / "spool",
                                 exporters=exporters, names=", ".join(f"file/{n}" for n in names)))
    code = ("import sys, otel_audit\n"
            f"a = otel_audit.configure({str(cfg)!r})\n"
            f"for i in range({count}):\n"
            "    a.logger.login_succeeded('alice', client_address='203.0.113.7')\n"
            "a.force_flush(3000)\n"
            "a.shutdown()\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "otel-audit"
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=60)


def test_spool_status_and_an_audited_drop_of_a_removed_exporters_backlog(tmp_path: Path, kdir: Path) -> None:
    """`otel-audit spool status` names a removed exporter's backlog; `spool drop` refuses while a producer
    holds the spool and needs a reason; after the drop the next start seals who dropped what into the
    signed stream, and the backlog stops being kept."""
    (tmp_path / "slow").write_text("down")
    first = _configured_run(tmp_path, kdir, ["fast", "slow"], 300)
    assert first.returncode == 0, first.stderr[-2000:]
    (tmp_path / "slow").unlink()
    second = _configured_run(tmp_path, kdir, ["fast"], 10)
    assert "'file/slow' is no longer configured" in second.stderr
    st = _cli("spool", "status", str(tmp_path / "spool"), "--format", "json")
    assert st.returncode == 0, st.stderr
    doc = json.loads(st.stdout)
    slow = next(c for c in doc["slots"][0]["cursors"] if c["exporter"] == "file/slow")
    assert slow["records_behind"] >= 300
    text = _cli("spool", "status", str(tmp_path / "spool"))
    assert "file/slow:" in text.stdout and "not delivered" in text.stdout
    from otel_audit.exporters.file import FileLogRecordExporter
    from otel_audit.processors.spool import SpoolProcessor

    holder = SpoolProcessor(tmp_path / "spool", {"file/fast": FileLogRecordExporter(path=tmp_path / "x.jsonl")})
    try:
        busy = _cli("spool", "drop", str(tmp_path / "spool"), "--exporter", "file/slow", "--reason", "x")
        assert busy.returncode == 2 and "in use by a running producer" in busy.stderr
    finally:
        holder.shutdown()
    unknown = _cli("spool", "drop", str(tmp_path / "spool"), "--exporter", "nope", "--reason", "x")
    assert unknown.returncode == 2 and "no exporter 'nope'" in unknown.stderr and "file/slow" in unknown.stderr
    dropped = _cli("spool", "drop", str(tmp_path / "spool"), "--exporter", "file/slow",
                   "--reason", "SIEM decommissioned, ticket OPS-1")
    assert dropped.returncode == 0, dropped.stderr
    third = _configured_run(tmp_path, kdir, ["fast"], 5)
    assert "no longer configured" not in third.stderr
    events = []
    for _, rec in iter_records(sorted((tmp_path / "fast").glob("*.jsonl"))):
        if rec.get("eventName") == "audit.spool.backlog_dropped":
            events.append({kv["key"]: kv["value"] for kv in rec["attributes"]})
    assert len(events) == 1
    assert events[0]["audit.spool.exporter"] == {"stringValue": "file/slow"}
    assert events[0]["audit.reason"] == {"stringValue": "SIEM decommissioned, ticket OPS-1"}
    assert int(events[0]["audit.spool.records"]["intValue"]) >= 300
    assert _verify(kdir, tmp_path / "fast").returncode == 0
    after = json.loads(_cli("spool", "status", str(tmp_path / "spool"), "--format", "json").stdout)
    assert [c["exporter"] for c in after["slots"][0]["cursors"]] == ["file/fast"]
    assert after["slots"][0]["drops_not_yet_signed"] == []


def test_shutdown_with_a_dead_destination_is_bounded_and_keeps_the_backlog(tmp_path: Path, kdir: Path) -> None:
    """A destination that accepts connections and never answers cannot hold shutdown past shutdown_timeout
    (plus a little): the stream is sealed, and the undelivered records are replayed at the next start."""
    import socket

    from opentelemetry.sdk._logs import LoggerProvider

    from otel_audit.exporters.file import FileLogRecordExporter
    from otel_audit.exporters.webhook import WebhookLogExporter
    from otel_audit.processors.signing import SigningProcessor
    from otel_audit.processors.spool import SpoolProcessor

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)  # connections are queued by the kernel and never answered
    try:
        hook = WebhookLogExporter(endpoint=f"http://127.0.0.1:{silent.getsockname()[1]}/hook",
                                  secrets=["whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], timeout=30)
        spool = SpoolProcessor(tmp_path / "spool", {"hook": hook}, shutdown_timeout=1.5, retry_initial=0.05)
        provider = LoggerProvider()
        signing = SigningProcessor(kdir, downstream=spool, state_dir=tmp_path / "state", checkpoint_interval=3600)
        provider.add_log_record_processor(signing)
        log = provider.get_logger("t")
        for i in range(50):
            log.emit(event_name="authentication.login.succeeded", body="b", attributes={"user.id": "u", "n": i})
        time.sleep(0.3)  # the exporter is now stuck in a request
        t0 = time.monotonic()
        provider.shutdown()
        took = time.monotonic() - t0
    finally:
        silent.close()
    assert took < 1.5 + 2.0, f"shutdown took {took:.1f} s with shutdown_timeout 1.5 s"
    state = json.loads((tmp_path / "state" / "state.json").read_bytes())
    assert state["closed"] is True and state["stream_id"] == signing.stream_id
    archive = tmp_path / "replayed" / "audit.jsonl"
    again = SpoolProcessor(tmp_path / "spool", {"hook": FileLogRecordExporter(path=archive)})
    assert again.force_flush(30_000)
    again.shutdown()
    assert len([q for s, q in _arrived(archive.parent) if s == signing.stream_id]) == signing.seq


def test_a_drop_is_signed_by_a_plain_sdk_pipeline_too(tmp_path: Path, kdir: Path) -> None:
    """The signing processor itself seals an operator's drop at the next start, so a pipeline built by hand
    (no config file) records it as well; a new exporter removed before it delivered anything is kept too."""
    (tmp_path / "slow").write_text("down")
    first, _, _ = _run(tmp_path, _cfg(tmp_path, kdir, 200))
    only_fast = _cfg(tmp_path, kdir, 5, flush=True)
    only_fast["exporters"] = {"fast": only_fast["exporters"]["fast"]}
    _, _, err = _run(tmp_path, only_fast)
    assert "'slow' is no longer configured" in err
    assert _cli("spool", "drop", str(tmp_path / "spool"), "--exporter", "slow", "--reason", "gone").returncode == 0
    _run(tmp_path, only_fast)
    names = [rec.get("eventName") for _, rec in iter_records(sorted((tmp_path / "fast").glob("*.jsonl")))]
    assert names.count("audit.spool.backlog_dropped") == 1
    assert _verify(kdir, tmp_path / "fast").returncode == 0


def test_a_slot_left_by_a_worker_that_is_gone_is_delivered_by_another(tmp_path: Path, kdir: Path) -> None:
    """Two producers share one spool folder (the second takes worker-1); the destination is down and both
    are killed; one producer alone then delivers both backlogs, its own slot's and the one left in worker-1."""
    (tmp_path / "slow").write_text("down")
    script = tmp_path / "producer.py"
    script.write_text(PRODUCER)
    procs = []
    for _ in range(2):
        cfg = _cfg(tmp_path, kdir, -1, state=str(tmp_path / "state"))
        cfg["exporters"] = {"slow": cfg["exporters"]["slow"]}
        p = subprocess.Popen([sys.executable, str(script), json.dumps(cfg)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        # Wait for its first acknowledged record (it holds its slot from then on), not a fixed time: on a
        # loaded machine a second producer still starting when both are killed never took worker-1.
        early = []
        for line in p.stdout or ():
            early.append(line)
            if line.startswith("ack "):
                break
        procs.append((p, early))
    time.sleep(1.0)
    acked: set[tuple[str, int]] = set()
    for p, early in procs:
        os.kill(p.pid, signal.SIGKILL)
        out, _ = p.communicate(timeout=60)
        lines = [*early, *out.splitlines()]
        acked |= {(a[1], int(a[2])) for a in (ln.split() for ln in lines) if len(a) == 3 and a[0] == "ack"}
    assert (tmp_path / "spool" / "worker-1" / "segments").is_dir()
    assert len({s for s, _ in acked}) == 2
    (tmp_path / "slow").unlink()
    cfg = _cfg(tmp_path, kdir, 5, flush=True)
    cfg["exporters"] = {"slow": cfg["exporters"]["slow"]}
    more, _, err = _run(tmp_path, cfg)
    assert "left with a backlog by a process that is gone" in err
    missing = (acked | more) - _arrived(tmp_path / "slow")
    assert not missing, f"{len(missing)} acknowledged record(s) stranded, e.g. {sorted(missing)[:3]}"
    st = json.loads(_cli("spool", "status", str(tmp_path / "spool"), "--format", "json").stdout)
    assert all(c.get("records_behind") == 0 for s in st["slots"] for c in s["cursors"]), st


def test_an_adopted_slot_is_complete_before_its_reader_starts(tmp_path: Path) -> None:
    """The reader of an adopted slot ships its backlog even while the adopting spool is held still the instant
    the reader's threads start (it used to meet no `_export_locks` there: AttributeError, a late retry)."""
    import logging
    import threading
    from types import FrameType
    from typing import Any

    from opentelemetry.sdk._logs import LoggerProvider

    from otel_audit.exporters.file import FileLogRecordExporter
    from otel_audit.processors.spool import SpoolProcessor

    down = tmp_path / "down"
    down.write_text("the destination is down: its folder is a file")
    base = tmp_path / "spool"
    # two spools share the folder (the base and worker-1); both stop with their records still spooled
    spools = [SpoolProcessor(base, {"file": FileLogRecordExporter(path=down / "audit.jsonl")}, retry_initial=5,
                             shutdown_timeout=0.5) for _ in range(2)]
    for k, spool in enumerate(spools):
        provider = LoggerProvider()
        provider.add_log_record_processor(spool)
        for i in range(50):
            provider.get_logger("t").emit(event_name="authentication.login.succeeded", body=f"slot{k} {i}")
        provider.shutdown()
    assert (base / "worker-1" / "segments").is_dir()

    archive = tmp_path / "out" / "audit.jsonl"

    def bodies() -> list[str]:
        files = sorted(archive.parent.glob("*.jsonl")) if archive.parent.is_dir() else []
        return [rec["body"]["stringValue"] for _, rec in iter_records(files)]

    adopted_delivered = threading.Event()
    errors: list[str] = []

    class Errors(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.ERROR:
                errors.append(record.getMessage() + (f" {record.exc_info[1]!r}" if record.exc_info else ""))
                adopted_delivered.set()  # stop waiting: it failed

    def hold_after_start(frame: FrameType, event: str, arg: Any) -> Any:
        """Hold the adopting spool right where `_start` of the adopted slot returns, until that slot's reader
        has shipped its backlog (or logged an error): the schedule that showed the race, made certain."""
        if event == "return":
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not adopted_delivered.wait(0.05):
                if sum(b.startswith("slot1 ") for b in bodies()) >= 50:
                    adopted_delivered.set()
        return hold_after_start

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "call" and frame.f_code is SpoolProcessor._start.__code__ and frame.f_locals.get("adopt"):
            return hold_after_start
        return None

    handler = Errors()
    spool_log = logging.getLogger("otel_audit.processors.spool")
    spool_log.addHandler(handler)
    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        again = SpoolProcessor(base, {"file": FileLogRecordExporter(path=archive)}, retry_initial=5)
    finally:
        sys.settrace(previous)
        spool_log.removeHandler(handler)
    try:
        assert adopted_delivered.is_set(), "the adopted slot's reader did not ship while its adopter was held"
        assert not errors, errors
        assert again.force_flush(30_000)
    finally:
        again.shutdown()
    got = bodies()
    assert sorted(got) == sorted(f"slot{k} {i}" for k in range(2) for i in range(50)), len(got)
