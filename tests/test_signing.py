"""SigningProcessor in a real SDK pipeline: checkpoints, concurrency, value types, keys, state dir.

Each test wires LoggerProvider -> SigningProcessor -> [Simple(InMemory), Simple/Batch(File)], emits,
shuts down, and checks both the records handed downstream and the verifier's verdict on the file.
"""

from __future__ import annotations

import logging
import math
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import (
    KEY_NAME,
    Archive,
    assert_clean,
    child_env,
    make_pipeline,
    mixed_record,
    only_stream,
    seq_of,
    verify,
)
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor, ReadableLogRecord, ReadWriteLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from otel_audit import keys, merkle
from otel_audit.canonical import CHECKPOINT_EVENT, DIGEST, STREAM_ID, STREAM_SEQ
from otel_audit.errors import ConfigError, DeliveryError
from otel_audit.exporters.file import FileLogRecordExporter
from otel_audit.keys import Keyring, Signer
from otel_audit.note import parse_note
from otel_audit.processors.signing import MAX_SLOTS, SigningProcessor, StreamState


class Rig:
    """A real pipeline: the signing processor feeding an in-memory exporter and an archive file."""

    def __init__(self, tmp_path: Path, signer: Signer | Path, **kw: Any) -> None:
        self.path = tmp_path / "audit.jsonl"
        self.memory = InMemoryLogRecordExporter()
        self.resource = Resource.create({"service.name": "signing-tests", "service.version": "1.2.3"})
        self.provider = LoggerProvider(resource=self.resource)
        self.sp = SigningProcessor(
            signer,
            downstream=[SimpleLogRecordProcessor(self.memory),
                        SimpleLogRecordProcessor(FileLogRecordExporter(self.path, fsync="never"))],
            resource=self.resource,
            **kw,
        )
        self.provider.add_log_record_processor(self.sp)
        self.logger = self.provider.get_logger("signing-tests")

    def emit(self, n: int, start: int = 0) -> None:
        for i in range(start, start + n):
            self.logger.emit(**mixed_record(i))

    def close(self) -> None:
        self.provider.shutdown()

    def records(self) -> list[ReadableLogRecord]:
        return list(self.memory.get_finished_logs())

    def checkpoints(self) -> list[tuple[int, str]]:
        """(seq, kind) of every checkpoint handed downstream, in seq order."""
        out = [(r.log_record.attributes[STREAM_SEQ], r.log_record.attributes["audit.checkpoint.kind"])
               for r in self.records() if r.log_record.event_name == CHECKPOINT_EVENT]
        return sorted(out)


@pytest.fixture
def ring(keys_dir: Path) -> Keyring:
    return Keyring.load(keys_dir)


# -- checkpoints -----------------------------------------------------------------------------------


def test_start_size_and_end_checkpoints(tmp_path: Path, keys_dir: Path, ring: Keyring) -> None:
    """A checkpoint comes at start (seq 0), after every N records, and at shutdown (end); all verify."""
    rig = Rig(tmp_path, keys_dir, checkpoint_every=10, checkpoint_interval=3600)
    rig.emit(35)
    rig.close()
    cps = rig.checkpoints()
    assert cps[0] == (0, "start")
    assert cps[-1][1] == "end" and cps[-1][0] == rig.sp.seq - 1
    assert [k for _, k in cps[1:-1]] == ["size"] * 3
    seqs = [s for s, _ in cps]
    events_between = [b - a - 1 for a, b in zip(seqs, seqs[1:], strict=False)]
    assert events_between == [10, 10, 10, 5], "a size checkpoint after every 10 events"
    rep = verify(rig.path, ring)
    assert rep.ok
    s = only_stream(rep)
    assert (s.events, s.checkpoints, s.state) == (35, len(cps), "closed")


def test_checkpoints_commit_to_the_merkle_tree_of_digests(tmp_path: Path, keys_dir: Path) -> None:
    """Each checkpoint's size, root and chain are the tree of the digests before it, and it is signed."""
    rig = Rig(tmp_path, keys_dir, checkpoint_every=7, checkpoint_interval=3600)
    rig.emit(30)
    rig.close()
    by_seq = {r.log_record.attributes[STREAM_SEQ]: r.log_record for r in rig.records()}
    digests = [bytes.fromhex(by_seq[s].attributes[DIGEST]) for s in range(len(by_seq))]
    pub = Keyring.load(keys_dir).lookup(KEY_NAME, Signer.from_keys_dir(keys_dir).key_id)
    assert pub is not None
    for seq, rec in by_seq.items():
        if rec.event_name != CHECKPOINT_EVENT:
            continue
        sn = parse_note(rec.body)  # type: ignore[arg-type]
        cp = sn.checkpoint
        assert cp.origin == f"otel-audit/{rig.sp.stream_id}"
        assert cp.size == seq
        assert cp.root == merkle.root(digests[:seq])
        assert cp.chain == (digests[seq - 1] if seq else bytes(32))
        assert rec.attributes["audit.checkpoint.size"] == seq
        assert rec.attributes["audit.checkpoint.key"] == KEY_NAME
        pub.verify(sn.signatures[0].signature, sn.text.encode())
        assert cp.producer["service.name"] == "signing-tests"
        assert cp.producer["service.version"] == "1.2.3"
        assert "host.name" in cp.producer and "process.pid" in cp.producer


def test_interval_checkpoint_while_busy(tmp_path: Path, keys_dir: Path, ring: Keyring) -> None:
    """With records since the last checkpoint, the interval timer emits a 'time' checkpoint."""
    rig = Rig(tmp_path, keys_dir, checkpoint_every=1000, checkpoint_interval=0.2)
    rig.emit(3)
    time.sleep(0.7)
    kinds_after_events = [k for s, k in rig.checkpoints() if s > 3]
    rig.close()
    assert "time" in kinds_after_events
    assert verify(rig.path, ring).ok


def test_idle_heartbeat(tmp_path: Path, keys_dir: Path, ring: Keyring) -> None:
    """With no records since the last checkpoint, the interval timer emits 'heartbeat' checkpoints.

    Regression: the processor once counted a checkpoint's own digest as pending, so the timer
    always saw the stream as busy and said 'time'; 'heartbeat' was never emitted.
    """
    rig = Rig(tmp_path, keys_dir, checkpoint_every=1000, checkpoint_interval=0.2)
    time.sleep(0.9)
    rig.close()
    kinds = [k for _, k in rig.checkpoints()]
    assert kinds[0] == "start" and kinds[-1] == "end"
    assert kinds.count("heartbeat") >= 2, kinds
    assert "time" not in kinds, kinds
    assert verify(rig.path, ring).ok


def test_flush_checkpoint_with_new_records(tmp_path: Path, keys_dir: Path, ring: Keyring) -> None:
    """force_flush after new records emits a 'flush' checkpoint sealing them."""
    rig = Rig(tmp_path, keys_dir, checkpoint_every=1000, checkpoint_interval=3600)
    rig.emit(4)
    assert rig.provider.force_flush()
    assert rig.checkpoints() == [(0, "start"), (5, "flush")]
    rig.close()
    assert verify(rig.path, ring).ok


def test_flush_without_new_records_adds_no_checkpoint(tmp_path: Path, keys_dir: Path) -> None:
    """force_flush with nothing new since the last checkpoint emits no checkpoint.

    Regression: the last checkpoint's own digest once counted as pending, so every
    force_flush emitted another 'flush' checkpoint, even on an idle producer.
    """
    rig = Rig(tmp_path, keys_dir, checkpoint_every=1000, checkpoint_interval=3600)
    rig.emit(2)
    rig.provider.force_flush()
    before = rig.checkpoints()
    rig.provider.force_flush()
    rig.provider.force_flush()
    assert rig.checkpoints() == before
    rig.close()


# -- what is signed --------------------------------------------------------------------------------


def test_every_anyvalue_type_verifies(tmp_path: Path, keys_dir: Path, ring: Keyring) -> None:
    """Records with bodies and attributes of every AnyValue type, edge values included, verify."""
    rig = Rig(tmp_path, keys_dir, checkpoint_every=16, checkpoint_interval=3600)
    rig.emit(40)
    edge_values: list[Any] = [
        "", "\x00\u2028\U0001f600e\u0301", 0, -1, 2**63 - 1, -(2**63), 0.0, -0.0, math.nan, math.inf, -math.inf,
        5e-324, True, False, b"", b"\x00\xff", [], {}, [1, "1", 1.0, True, None, b"1"],
        {"m": {"n": [{"deep": [[]]}]}}, None,
    ]
    for n, v in enumerate(edge_values):
        rig.logger.emit(event_name="edge", body=v, attributes={"v": v, f"k\u00e9{n}": v} if v is not None else {},
                        severity_number=SeverityNumber.ERROR, severity_text="ERROR")
    rig.logger.emit(body="no event name, no severity, no attributes")
    rig.close()
    rep = verify(rig.path, ring)
    assert rep.ok, only_stream(rep).problems
    assert only_stream(rep).events == 40 + len(edge_values) + 1


def test_unsignable_values_are_replaced_not_dropped(tmp_path: Path, keys_dir: Path, ring: Keyring,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    """An integer beyond int64 is replaced by a marker and logged; the record and its batch still arrive."""
    rig = Rig(tmp_path, keys_dir, checkpoint_every=1000, checkpoint_interval=3600)
    with caplog.at_level(logging.ERROR):
        rig.logger.emit(event_name="big", body="x", attributes={"n": 2**63, "ok": "yes"})
        rig.logger.emit(event_name="bigger", body=2**64, attributes={"n": 2**70, "f": 1.5})
        rig.emit(3)
    rig.close()
    assert any("cannot be canonicalized" in r.getMessage() for r in caplog.records)
    rep = verify(rig.path, ring)
    assert rep.ok, only_stream(rep).problems
    assert only_stream(rep).events == 5
    arch = Archive.load(rig.path)
    big = next(r for r in arch.records() if r.get("eventName") == "big")
    n = next(kv["value"] for kv in big["attributes"] if kv["key"] == "n")
    assert "unsignable" in n["stringValue"]


def test_uint64_attribute_does_not_sink_its_batch(tmp_path: Path, keys_dir: Path, ring: Keyring) -> None:
    """A plain attribute of 2**63 (uint64 range) is replaced when signing, so the batch it travels in is written.

    Regression: the canonical fast path once signed such ints as they were; the file exporter then
    could not encode the batch as OTLP and every record in it was lost.
    """
    provider, sp = make_pipeline(tmp_path / "a.jsonl", keys_dir, checkpoint_every=1000)
    logger = provider.get_logger("t")
    for i in range(10):
        logger.emit(event_name="e", body="x", attributes={"i": i, "big": 2**63} if i == 5 else {"i": i})
    provider.shutdown()
    rep = verify(tmp_path / "a.jsonl", ring)
    assert rep.ok, only_stream(rep).problems
    assert only_stream(rep).events == 10


def test_integrity_attributes_set_by_the_caller_are_replaced(
    tmp_path: Path, keys_dir: Path, ring: Keyring, caplog: pytest.LogCaptureFixture
) -> None:
    """A record that sets audit.stream.id/seq/integrity.* itself gets the processor's values and verifies."""
    rig = Rig(tmp_path, keys_dir, checkpoint_every=1000, checkpoint_interval=3600)
    with caplog.at_level(logging.WARNING):
        rig.logger.emit(event_name="sneaky", body="b", attributes={
            STREAM_ID: "f" * 32, STREAM_SEQ: 999, "audit.integrity.prev": "00" * 32, DIGEST: "ab" * 32, "x": 1})
    rig.close()
    assert any("integrity attributes" in r.getMessage() for r in caplog.records)
    rec = next(r.log_record for r in rig.records() if r.log_record.event_name == "sneaky")
    assert rec.attributes[STREAM_ID] == rig.sp.stream_id
    assert rec.attributes[STREAM_SEQ] == 1
    assert rec.attributes[DIGEST] != "ab" * 32
    assert rec.attributes["x"] == 1
    rep = verify(rig.path, ring)
    assert rep.ok and only_stream(rep).stream_id == rig.sp.stream_id


def test_caller_record_named_like_a_checkpoint(tmp_path: Path, keys_dir: Path, ring: Keyring) -> None:
    """A caller's own record named audit.checkpoint does not make a genuine, untouched archive fail.

    Regression: the processor once signed such a record unchanged, and the verifier then parsed
    its body as a checkpoint note and failed the untampered stream (bad_checkpoints). The record
    is kept (the processor renames it).
    """
    rig = Rig(tmp_path, keys_dir, checkpoint_every=1000, checkpoint_interval=3600)
    rig.logger.emit(event_name=CHECKPOINT_EVENT, body="an application message that reuses the name")
    rig.emit(2)
    rig.close()
    rep = verify(rig.path, ring)
    assert rep.ok, only_stream(rep).problems
    assert only_stream(rep).events == 3
    assert any("an application message" in str(r.get("body")) for r in Archive.load(rig.path).events())


def test_concurrent_emitters(tmp_path: Path, keys_dir: Path, ring: Keyring) -> None:
    """Eight threads emitting at once, with size and timer checkpoints racing, still give one verified stream."""
    rig = Rig(tmp_path, keys_dir, checkpoint_every=25, checkpoint_interval=0.05)
    barrier = threading.Barrier(8)

    def worker(t: int) -> None:
        barrier.wait()
        for i in range(250):
            rig.logger.emit(**mixed_record(t * 1000 + i))
            if i % 50 == 0:
                time.sleep(0.01)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    rig.close()
    rep = verify(rig.path, ring)
    assert rep.ok, only_stream(rep).problems
    s = only_stream(rep)
    assert_clean(s)
    assert s.events == 2000 and s.sealed == s.records == rig.sp.seq


def test_all_downstreams_receive_every_record(tmp_path: Path, keys_dir: Path) -> None:
    """A downstream that raises does not stop the others; the loss is counted and sealed as a gap marker naming it."""

    class Broken(LogRecordProcessor):
        def on_emit(self, log_record: ReadWriteLogRecord) -> None:
            raise RuntimeError("downstream down")

        def shutdown(self) -> None:
            pass

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return True

    memory = InMemoryLogRecordExporter()
    sp = SigningProcessor(keys_dir, downstream=[Broken(), SimpleLogRecordProcessor(memory)],
                          checkpoint_interval=3600)
    provider = LoggerProvider()
    provider.add_log_record_processor(sp)
    provider.get_logger("t").emit(body="x")
    provider.shutdown()
    logs = [r.log_record for r in memory.get_finished_logs()]
    assert len(logs) == 4  # start, the event, the gap marker declaring what Broken lost, end
    assert sp.dropped == 4
    gap = logs[2]
    assert gap.event_name == "audit.gap" and gap.attributes["audit.gap.seqs"] == "0-1"
    assert gap.attributes["audit.gap.reason"] == "lost by downstream Broken, which raised"
    assert gap.attributes["audit.gap.destination"] == "Broken"


@pytest.mark.parametrize(
    "kw",
    [{"checkpoint_every": 0}, {"checkpoint_every": True}, {"checkpoint_every": 2.5},
     {"checkpoint_interval": 0}, {"checkpoint_interval": -1}, {"origin": "has space"}, {"origin": ""},
     {"downstream": []}],
)
def test_bad_arguments_raise_value_error(keys_dir: Path, kw: dict[str, Any]) -> None:
    """Bad constructor arguments raise ValueError at construction."""
    args: dict[str, Any] = {"downstream": SimpleLogRecordProcessor(InMemoryLogRecordExporter())}
    args.update(kw)
    with pytest.raises(ValueError):
        SigningProcessor(keys_dir, **args)


# -- keys ------------------------------------------------------------------------------------------


def test_key_rotation_while_running(tmp_path: Path, keys_dir: Path) -> None:
    """keys.rotate() while the processor runs switches the key at the next checkpoint; all verify."""
    old_ring = Keyring.load(keys_dir)
    rig = Rig(tmp_path, keys_dir, checkpoint_every=10, checkpoint_interval=3600)
    rig.emit(25)
    keys.rotate(keys_dir, "rotated", grace_s=3600)
    rig.emit(25, start=25)
    rig.close()
    signed_by = {}
    for r in rig.records():
        if r.log_record.event_name == CHECKPOINT_EVENT:
            signed_by[r.log_record.attributes[STREAM_SEQ]] = r.log_record.attributes["audit.checkpoint.key"]
    seqs = sorted(signed_by)
    names = [signed_by[s] for s in seqs]
    switch = names.index("rotated")
    assert set(names[:switch]) == {KEY_NAME} and set(names[switch:]) == {"rotated"}
    assert seqs[switch] > 25, "the switch happens at the first checkpoint after the rotation"
    rep = verify(rig.path, Keyring.load(keys_dir))
    assert rep.ok
    assert only_stream(rep).keys == ["rotated", KEY_NAME]
    stale = only_stream(verify(rig.path, old_ring))
    # the handover checkpoint is cosigned by the old key (still in its grace period), so the old keyring
    # verifies it; every later one is signed by the new key alone
    assert stale.unknown_keys == seqs[switch + 1:]


def test_expired_key(tmp_path: Path, keys_dir: Path) -> None:
    """Checkpoints signed after the key's not_after (a producer that kept an old key) are expired_keys."""
    old = Signer.from_keys_dir(keys_dir)
    keys.rotate(keys_dir, "successor", grace_s=0)
    time.sleep(0.01)
    rig = Rig(tmp_path, old, checkpoint_every=10, checkpoint_interval=3600)
    rig.emit(15)
    rig.close()
    rep = verify(rig.path, Keyring.load(keys_dir))
    assert not rep.ok
    s = only_stream(rep)
    assert s.expired_keys == [seq for seq, _ in rig.checkpoints()]
    assert s.modified == [] and s.bad_signatures == [] and s.unknown_keys == []


def test_key_not_yet_valid(tmp_path: Path) -> None:
    """A checkpoint signed before the key's not_before counts as outside the key's validity."""
    signer = Signer.generate("future")
    rig = Rig(tmp_path, signer, checkpoint_every=10, checkpoint_interval=3600)
    rig.emit(3)
    rig.close()
    ring = Keyring([signer.public(not_before=time.time_ns() + 3600 * 10**9)])
    s = only_stream(verify(rig.path, ring))
    assert s.expired_keys == [seq for seq, _ in rig.checkpoints()]


# -- state dir -------------------------------------------------------------------------------------


def _memory_sp(state: Path, keys_dir: Path) -> SigningProcessor:
    return SigningProcessor(keys_dir, downstream=SimpleLogRecordProcessor(InMemoryLogRecordExporter()),
                            state_dir=state, checkpoint_interval=3600, handle_signals=False)


def _start_prev(sp: SigningProcessor) -> Any:
    """The predecessor named by the start checkpoint of a processor writing to an in-memory exporter."""
    mem = sp._downstream[0]._exporter  # the test's own exporter, handed in above
    first = mem.get_finished_logs()[0].log_record
    return parse_note(first.body).checkpoint.prev


def test_second_processor_on_a_state_dir_takes_a_worker_slot(
    tmp_path: Path, keys_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A second processor on a state_dir in use takes slot worker-1 (logged at INFO),
    and each slot keeps its own lineage."""
    state = tmp_path / "state"
    with caplog.at_level(logging.INFO, logger="otel_audit.slots"):
        a, b = _memory_sp(state, keys_dir), _memory_sp(state, keys_dir)
    assert (a.state_dir, b.state_dir) == (state, state / "worker-1")
    assert any("worker-1" in r.getMessage() and r.levelno == logging.INFO for r in caplog.records)
    a.shutdown()
    b.shutdown()
    a2, b2 = _memory_sp(state, keys_dir), _memory_sp(state, keys_dir)
    try:
        assert (_start_prev(a2).stream_id, _start_prev(b2).stream_id) == (a.stream_id, b.stream_id)
        assert _start_prev(a2).closed and _start_prev(b2).closed
    finally:
        a2.shutdown()
        b2.shutdown()


def test_state_dir_held_by_another_process_gives_a_slot(tmp_path: Path, keys_dir: Path) -> None:
    """While a child process holds a state_dir,
    a processor here takes worker-1 instead of failing (starts one python child)."""
    state = tmp_path / "state"
    script = tmp_path / "holder.py"
    script.write_text(textwrap.dedent(f"""
        import sys, time
        from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor, InMemoryLogRecordExporter
        from otel_audit.processors.signing import MAX_SLOTS, SigningProcessor, StreamState
        sp = SigningProcessor({str(keys_dir)!r}, downstream=SimpleLogRecordProcessor(InMemoryLogRecordExporter()),
                              state_dir={str(state)!r}, checkpoint_interval=3600)
        print("ready", flush=True)
        sys.stdin.readline()
        sp.shutdown()
    """))
    child = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True, env=child_env())
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        sp = _memory_sp(state, keys_dir)
        assert sp.state_dir == state / "worker-1"
        sp.shutdown()
    finally:
        assert child.stdin is not None
        child.stdin.write("\n")
        child.stdin.flush()
        child.wait(timeout=30)
    assert child.returncode == 0
    assert (state / "state.json").exists() and (state / "worker-1" / "state.json").exists()


def test_all_slots_held_raises_config_error(tmp_path: Path) -> None:
    """When state_dir and all 256 worker slots are held, StreamState raises a ConfigError naming the bound."""
    state = tmp_path / "state"
    held = [StreamState(state) for _ in range(MAX_SLOTS + 1)]
    try:
        assert held[-1].dir == state / f"worker-{MAX_SLOTS}"
        with pytest.raises(ConfigError, match=f"all {MAX_SLOTS} worker slots"):
            StreamState(state)
    finally:
        for h in held:
            h.close()


def test_missing_state_file_in_a_used_state_dir_warns(
    tmp_path: Path, keys_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A deleted state.json in a state_dir that was used before is a WARNING naming the file;
    the new stream has no predecessor."""
    state = tmp_path / "state"
    _memory_sp(state, keys_dir).shutdown()
    (state / "state.json").unlink()
    with caplog.at_level(logging.WARNING, logger="otel_audit.processors.signing"):
        sp = _memory_sp(state, keys_dir)
    sp.shutdown()
    warned = [r for r in caplog.records if r.levelno == logging.WARNING and str(state / "state.json") in r.getMessage()]
    assert warned and "will not name a predecessor" in warned[0].getMessage()
    assert _start_prev(sp) is None


def test_first_start_in_a_new_state_dir_is_silent(
    tmp_path: Path, keys_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A first start in an empty (even pre-created) state_dir logs no warning."""
    (tmp_path / "state").mkdir()
    with caplog.at_level(logging.WARNING, logger="otel_audit.processors.signing"):
        _memory_sp(tmp_path / "state", keys_dir).shutdown()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("damage", ["truncate", "edit"])
def test_damaged_state_file_is_an_error(
    tmp_path: Path, keys_dir: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    """A cut-short or edited state.json (caught by its checksum) is an ERROR naming the file;
    the new stream has no predecessor."""
    state = tmp_path / "state"
    _memory_sp(state, keys_dir).shutdown()
    path = state / "state.json"
    raw = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    else:
        doc = orjson.loads(raw)
        doc["size"] = doc["size"] + 1  # still valid JSON: only the checksum tells
        path.write_bytes(orjson.dumps(doc))
    with caplog.at_level(logging.ERROR, logger="otel_audit.processors.signing"):
        sp = _memory_sp(state, keys_dir)
    sp.shutdown()
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any(str(path) in m and "damaged" in m and "will not name a predecessor" in m for m in errors), errors
    assert _start_prev(sp) is None
    assert list(state.glob("state.json.damaged-*"))  # kept for inspection


def test_state_file_without_checksum_is_still_read(tmp_path: Path, keys_dir: Path) -> None:
    """A state.json written before the checksum field existed still names the predecessor."""
    state = tmp_path / "state"
    first = _memory_sp(state, keys_dir)
    first.shutdown()
    doc = orjson.loads((state / "state.json").read_bytes())
    assert doc.pop("checksum").startswith("sha256:")
    (state / "state.json").write_bytes(orjson.dumps(doc))
    sp = _memory_sp(state, keys_dir)
    sp.shutdown()
    assert _start_prev(sp).stream_id == first.stream_id


# -- shutdown --------------------------------------------------------------------------------------


def test_emit_after_shutdown_raises_delivery_error(tmp_path: Path, keys_dir: Path) -> None:
    """Without a delivery processor, an emit after shutdown raises DeliveryError saying the pipeline is shut down."""
    rig = Rig(tmp_path, keys_dir, checkpoint_interval=3600)
    rig.emit(2)
    rig.close()
    with pytest.raises(DeliveryError, match="shut down"):
        rig.logger.emit(body="too late", event_name="config.changed")
    s = only_stream(verify(rig.path, Keyring.load(keys_dir)))
    assert s.status == "verified" and s.inserted == [] and s.events == 2


def test_shutdown_passes_the_remaining_deadline_down(keys_dir: Path) -> None:
    """shutdown(timeout_millis) hands each downstream that takes a timeout what is left of it,
    and calls the others plainly."""
    seen: list[Any] = []

    class Timed(LogRecordProcessor):
        def on_emit(self, log_record: ReadWriteLogRecord) -> None:
            pass

        def shutdown(self, timeout_millis: int = 30000) -> None:
            seen.append(timeout_millis)

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return True

    class Plain(Timed):
        def shutdown(self) -> None:  # type: ignore[override]
            seen.append("plain")

    sp = SigningProcessor(keys_dir, downstream=[Timed(), Plain()], checkpoint_interval=3600, handle_signals=False)
    sp.shutdown(timeout_millis=2000)
    assert seen[1] == "plain" and isinstance(seen[0], int) and 1000 < seen[0] <= 2000
    sp2 = SigningProcessor(keys_dir, downstream=[Timed()], checkpoint_interval=3600, handle_signals=False)
    sp2.shutdown()
    assert seen[2] == 30000  # no deadline given: the downstream's own default


def test_seq_counts_every_record(tmp_path: Path, keys_dir: Path) -> None:
    """The processor's seq is the number of records it handed downstream, checkpoints included."""
    rig = Rig(tmp_path, keys_dir, checkpoint_every=1000, checkpoint_interval=3600)
    rig.emit(5)
    assert rig.sp.seq == 6
    rig.close()
    assert sorted(r.log_record.attributes[STREAM_SEQ] for r in rig.records()) == list(range(rig.sp.seq))
    assert sorted(seq_of(r) for r in Archive.load(rig.path).records()) == list(range(rig.sp.seq))
