"""The file exporter: OTLP JSON lines through a real SDK pipeline, rotation, fsync policies, config."""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    InMemoryLogRecordExporter,
    LogRecordExportResult,
    SimpleLogRecordProcessor,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.util._importlib_metadata import entry_points

from otel_audit.errors import ConfigError
from otel_audit.exporters.file import (
    DEFAULT_PATH,
    ENV_FSYNC,
    ENV_MAX_MEGABYTES,
    ENV_PATH,
    FileLogRecordExporter,
    parse_duration,
)
from otel_audit.otlpjson import decode_anyvalue, decode_attributes, iter_log_records
from tests.standins import in_forked_child

BACKUP_NAME = r"audit-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}\.\d{3}\.jsonl"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the exporter's env vars of the machine out of every test."""
    for name in (ENV_PATH, ENV_FSYNC, ENV_MAX_MEGABYTES):
        monkeypatch.delenv(name, raising=False)


def _records(count: int, *, body_size: int = 20) -> list[ReadableLogRecord]:
    """Make real SDK records by emitting through a provider into memory."""
    memory = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=Resource.create({"service.name": "test"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    logger = provider.get_logger("test")
    for i in range(count):
        logger.emit(body="x" * body_size, attributes={"i": i}, event_name="audit.test")
    provider.shutdown()
    return list(memory.get_finished_logs())


def _read_lines(path: Path) -> list[dict]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def _read_indices(paths: list[Path]) -> list[int]:
    indices = []
    for path in paths:
        for request in _read_lines(path):
            for _, _, record in iter_log_records(request):
                indices.append(decode_attributes(record["attributes"])["i"])
    return indices


def _archive(directory: Path) -> list[Path]:
    """The archive files (a file's `.lock`, held by the process that writes it, is no archive)."""
    return sorted(p for p in directory.iterdir() if p.name.startswith("audit") and not p.name.endswith(".lock"))


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[tuple[LoggerProvider, Path]]:
    """A LoggerProvider with a BatchLogRecordProcessor feeding the file exporter."""
    path = tmp_path / "archive" / "audit.jsonl"
    provider = LoggerProvider(resource=Resource.create({"service.name": "gateway"}))
    provider.add_log_record_processor(BatchLogRecordProcessor(FileLogRecordExporter(path=path)))
    yield provider, path
    provider.shutdown()


def test_batch_pipeline_writes_every_record(pipeline: tuple[LoggerProvider, Path]) -> None:
    """1000 records emitted through a batch processor are all in the file, one JSON request per line."""
    provider, path = pipeline
    logger = provider.get_logger("gateway.audit", "1.0")
    for i in range(1000):
        logger.emit(
            severity_number=SeverityNumber.INFO,
            body={"action": "login", "n": i},
            attributes={"user.id": f"u{i}", "audit.seq": i},
            event_name="user.login",
        )
    provider.shutdown()

    requests = _read_lines(path)
    assert len(requests) >= 2  # the batch processor exports in batches of at most 512
    rows = [row for request in requests for row in iter_log_records(request)]
    assert len(rows) == 1000
    seqs = []
    for resource_attributes, scope, record in rows:
        assert decode_attributes(resource_attributes)["service.name"] == "gateway"
        assert scope == {"name": "gateway.audit", "version": "1.0"}
        assert record["eventName"] == "user.login"
        assert record["severityNumber"] == 9
        attributes = decode_attributes(record["attributes"])
        assert attributes["user.id"] == f"u{attributes['audit.seq']}"
        assert decode_anyvalue(record["body"]) == {"action": "login", "n": attributes["audit.seq"]}
        seqs.append(attributes["audit.seq"])
    assert sorted(seqs) == list(range(1000))


def test_file_and_directory_are_private(pipeline: tuple[LoggerProvider, Path]) -> None:
    """The archive file is created with mode 0o600 and missing parent directories with 0o700."""
    provider, path = pipeline
    provider.get_logger("x").emit(body="secret")
    provider.force_flush()
    assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0
    assert stat.S_IMODE(path.parent.stat().st_mode) & 0o077 == 0


def test_appends_to_an_existing_file(tmp_path: Path) -> None:
    """A new exporter appends to the file another one wrote, never truncating it."""
    path = tmp_path / "audit.jsonl"
    for _ in range(2):
        exporter = FileLogRecordExporter(path=path)
        assert exporter.export(_records(3)) is LogRecordExportResult.SUCCESS
        exporter.shutdown()
    assert len(_read_indices([path])) == 6


def test_a_line_cut_short_by_a_crash_is_set_aside(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A partial last line left by a crash is moved to a .torn-* side file, loudly,
    and the archive stays whole lines."""
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b'{"resourceLogs":[]}\n{"resourceLogs":[{"resou')
    exporter = FileLogRecordExporter(path=path)
    with caplog.at_level(logging.WARNING, logger="otel_audit.exporters.file"):
        assert exporter.export(_records(2)) is LogRecordExportResult.SUCCESS
    exporter.shutdown()
    lines = path.read_bytes().split(b"\n")
    assert lines[0] == b'{"resourceLogs":[]}'
    assert len(list(iter_log_records(json.loads(lines[1])))) == 2
    torn = list(tmp_path.glob("audit.jsonl.torn-*"))
    assert len(torn) == 1 and torn[0].read_bytes() == b'{"resourceLogs":[{"resou'
    assert any("partial line" in r.getMessage() for r in caplog.records)


def test_rotation_with_gzip_backups(tmp_path: Path) -> None:
    """A small max_megabytes rotates into several gzipped backups that hold every record exactly once."""
    path = tmp_path / "audit.jsonl"
    exporter = FileLogRecordExporter(path=path, rotation={"max_megabytes": 0.01}, compression="gzip")
    records = _records(300, body_size=200)
    for i in range(0, 300, 10):
        assert exporter.export(records[i : i + 10]) is LogRecordExportResult.SUCCESS
    assert exporter.force_flush()
    exporter.shutdown()

    files = _archive(tmp_path)
    backups = [p for p in files if p != path]
    assert len(backups) >= 3
    for backup in backups:
        assert backup.name.endswith(".jsonl.gz")
        assert re.fullmatch(BACKUP_NAME + r"\.gz", backup.name)
        assert stat.S_IMODE(backup.stat().st_mode) & 0o077 == 0
    for current_or_backup in files:
        # No file holds more than the limit, except that a file always takes at least one line.
        if current_or_backup.suffix == ".jsonl":
            assert current_or_backup.stat().st_size <= 0.01 * 1024 * 1024
    assert sorted(_read_indices(files)) == list(range(300))


def test_rotation_without_compression_keeps_plain_backups(tmp_path: Path) -> None:
    """Without compression the rotated backups stay plain OTLP JSON lines files."""
    path = tmp_path / "audit.jsonl"
    exporter = FileLogRecordExporter(path=path, rotation={"max_megabytes": 0.005})
    records = _records(100, body_size=200)
    for record in records:
        exporter.export([record])
    exporter.shutdown()
    files = _archive(tmp_path)
    assert len(files) > 2
    assert all(not p.name.endswith(".gz") for p in files)
    assert sorted(_read_indices(files)) == list(range(100))


def test_max_backups_is_enforced(tmp_path: Path) -> None:
    """Only the newest max_backups backups are kept, and they are the newest records."""
    path = tmp_path / "audit.jsonl"
    exporter = FileLogRecordExporter(path=path, rotation={"max_megabytes": 0.002, "max_backups": 2})
    records = _records(200, body_size=300)
    for record in records:
        exporter.export([record])
    assert exporter.force_flush()
    exporter.shutdown()
    files = _archive(tmp_path)
    assert len(files) == 3  # the current file and two backups
    kept = _read_indices(files)
    assert max(kept) == 199
    assert sorted(kept) == list(range(min(kept), 200))


def test_max_days_removes_old_backups(tmp_path: Path) -> None:
    """Backups whose name says they are older than max_days are removed, newer ones kept."""
    path = tmp_path / "audit.jsonl"
    old = tmp_path / "audit-2001-01-01T00-00-00.000.jsonl"
    old_gz = tmp_path / "audit-2001-01-02T00-00-00.000.jsonl.gz"
    unrelated = tmp_path / "notes-2001-01-01T00-00-00.000.jsonl"
    for p in (old, old_gz, unrelated):
        p.write_text("{}\n")
    exporter = FileLogRecordExporter(path=path, rotation={"max_megabytes": 0.002, "max_days": 30})
    for record in _records(20, body_size=300):
        exporter.export([record])
    assert exporter.force_flush()
    exporter.shutdown()
    assert not old.exists() and not old_gz.exists()
    assert unrelated.exists()
    assert len(_archive(tmp_path)) > 1


def test_leftover_backup_is_compressed_on_start(tmp_path: Path) -> None:
    """An uncompressed backup left by a crash is gzipped by the next exporter that rotates with gzip."""
    path = tmp_path / "audit.jsonl"
    leftover = tmp_path / "audit-2020-05-05T05-05-05.005.jsonl"
    leftover.write_bytes(b"{}\n")
    exporter = FileLogRecordExporter(path=path, rotation={}, compression="gzip")
    exporter.export(_records(1))
    assert exporter.force_flush()
    exporter.shutdown()
    assert not leftover.exists()
    assert gzip.decompress(Path(str(leftover) + ".gz").read_bytes()) == b"{}\n"


@pytest.mark.parametrize("policy", ["always", "interval", "never"])
def test_fsync_policies_write_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, policy: str
) -> None:
    """Under every fsync policy every line lands; fsync runs per line, in the background, or never."""
    calls: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        calls.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    path = tmp_path / "audit.jsonl"
    exporter = FileLogRecordExporter(path=path, fsync=policy, fsync_interval=0.01)
    records = _records(20)
    for record in records:
        assert exporter.export([record]) is LogRecordExportResult.SUCCESS
    if policy == "interval":
        # The background thread catches up on its own, without any export having waited for it.
        for _ in range(500):
            if calls:
                break
            time.sleep(0.01)
        assert calls, "the background thread never called fsync"
    assert exporter.force_flush()
    exporter.shutdown()
    assert sorted(_read_indices([path])) == list(range(20))
    if policy == "always":
        assert len(calls) >= 20
    elif policy == "interval":
        assert 1 <= len(calls) < 20 + 3
    else:
        assert calls == []


def test_concurrent_exports_do_not_interleave(tmp_path: Path) -> None:
    """Exports from many threads at once give whole lines only, with every record present."""
    path = tmp_path / "audit.jsonl"
    exporter = FileLogRecordExporter(path=path, rotation={"max_megabytes": 0.05})
    records = _records(400, body_size=100)
    chunks = [records[i : i + 5] for i in range(0, 400, 5)]
    threads = [threading.Thread(target=lambda c=c: exporter.export(c)) for c in chunks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    exporter.shutdown()
    assert sorted(_read_indices(_archive(tmp_path))) == list(range(400))


def test_path_that_is_a_directory_is_refused_at_construction(tmp_path: Path) -> None:
    """A path that is an existing directory is refused when the exporter is built, naming the argument."""
    target = tmp_path / "is-a-dir"
    target.mkdir()
    with pytest.raises(ValueError, match="path: must name a file"):
        FileLogRecordExporter(path=target)


@pytest.mark.parametrize(
    ("name", "needle"),
    [("archive/", "names a folder"), ("archive/\0audit.jsonl", "NUL")],
    ids=["trailing-slash", "nul"],
)
def test_path_with_a_trailing_slash_or_a_nul_is_refused(tmp_path: Path, name: str, needle: str) -> None:
    """A path ending in / (a folder meant) or holding a NUL is a ConfigError naming path; nothing is made."""
    with pytest.raises(ConfigError, match=f"path: .*{needle}"):
        FileLogRecordExporter(path=f"{tmp_path}/{name}")  # not a Path: that drops the trailing /
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", ["device", "fifo"])
def test_path_that_is_not_a_regular_file_is_refused(tmp_path: Path, kind: str) -> None:
    """An existing device (/dev/null) or FIFO is refused at construction: records written there would be lost."""
    if kind == "device":
        target = Path("/dev/null")
    else:
        target = tmp_path / "pipe"
        os.mkfifo(target)
    with pytest.raises(ConfigError, match="path: .*not a regular file"):
        FileLogRecordExporter(path=target)
    assert not Path(f"{target}.lock").exists()


def test_path_that_becomes_a_directory_fails_without_raising(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Exporting to a path that became a directory after construction returns FAILURE and logs an error."""
    target = tmp_path / "is-a-dir"
    exporter = FileLogRecordExporter(path=target)
    target.mkdir()
    with caplog.at_level(logging.ERROR, logger="otel_audit.exporters.file"):
        assert exporter.export(_records(1)) is LogRecordExportResult.FAILURE
    assert any(str(target) in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)
    exporter.shutdown()


def test_parent_that_is_a_file_fails_then_recovers(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A path under a regular file fails with a logged error, and works once the obstacle is gone."""
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    path = blocker / "audit.jsonl"
    exporter = FileLogRecordExporter(path=path)
    with caplog.at_level(logging.ERROR, logger="otel_audit.exporters.file"):
        assert exporter.export(_records(1)) is LogRecordExportResult.FAILURE
    assert any(r.levelno == logging.ERROR for r in caplog.records)
    blocker.unlink()
    assert exporter.export(_records(2)) is LogRecordExportResult.SUCCESS
    exporter.shutdown()
    assert len(_read_indices([path])) == 2


def test_export_after_shutdown_fails(tmp_path: Path) -> None:
    """After shutdown, export returns FAILURE and writes nothing; a second shutdown is harmless."""
    path = tmp_path / "audit.jsonl"
    exporter = FileLogRecordExporter(path=path)
    exporter.shutdown()
    assert exporter.export(_records(1)) is LogRecordExportResult.FAILURE
    exporter.shutdown()
    assert not path.exists()


def test_construction_touches_nothing(tmp_path: Path) -> None:
    """Constructing the exporter creates no file or directory until the first export."""
    FileLogRecordExporter(path=tmp_path / "later" / "audit.jsonl")
    assert not (tmp_path / "later").exists()


# --------------------------------------------------------------------------- env vars and entry point


def test_env_only_construction(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no arguments the exporter takes its path, fsync policy and rotation size from env vars."""
    path = tmp_path / "env" / "audit.jsonl"
    monkeypatch.setenv(ENV_PATH, str(path))
    monkeypatch.setenv(ENV_FSYNC, "always")
    monkeypatch.setenv(ENV_MAX_MEGABYTES, "0.002")
    exporter = FileLogRecordExporter()
    assert exporter.path == str(path)
    for record in _records(30, body_size=300):
        assert exporter.export([record]) is LogRecordExportResult.SUCCESS
    exporter.shutdown()
    files = _archive(path.parent)
    assert len(files) > 1
    assert sorted(_read_indices(files)) == list(range(30))


def test_entry_point_builds_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The otel_audit_file logs-exporter entry point loads the class, which works with env vars alone."""
    path = tmp_path / "audit.jsonl"
    monkeypatch.setenv(ENV_PATH, str(path))
    (entry_point,) = entry_points(group="opentelemetry_logs_exporter", name="otel_audit_file")
    exporter = entry_point.load()()
    assert isinstance(exporter, FileLogRecordExporter)
    exporter.export(_records(1))
    exporter.shutdown()
    assert len(_read_indices([path])) == 1


def test_default_path_without_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without argument or env var the path is ./otel-audit/archive/audit.jsonl."""
    monkeypatch.chdir(tmp_path)
    assert FileLogRecordExporter().path == str(tmp_path / DEFAULT_PATH)


def test_arguments_beat_env_vars(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An argument wins over the env var for the same setting."""
    monkeypatch.setenv(ENV_PATH, str(tmp_path / "from-env.jsonl"))
    monkeypatch.setenv(ENV_FSYNC, "always")
    exporter = FileLogRecordExporter(path=tmp_path / "from-arg.jsonl", fsync="never")
    exporter.export(_records(1))
    exporter.shutdown()
    assert (tmp_path / "from-arg.jsonl").exists()
    assert not (tmp_path / "from-env.jsonl").exists()


@pytest.mark.parametrize(("name", "value"), [(ENV_FSYNC, "sometimes"), (ENV_MAX_MEGABYTES, "lots")])
def test_bad_env_value_warns_and_falls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, name: str, value: str
) -> None:
    """A bad env value logs a warning naming the variable and the exporter still works with the default."""
    monkeypatch.setenv(name, value)
    with caplog.at_level(logging.WARNING, logger="otel_audit.exporters.file"):
        exporter = FileLogRecordExporter(path=tmp_path / "audit.jsonl")
    assert any(name in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert exporter.export(_records(1)) is LogRecordExportResult.SUCCESS
    exporter.shutdown()


# --------------------------------------------------------------------------- argument validation


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"path": ""}, "path"),
        ({"rotation": {"max_megabytes": 0}}, "rotation.max_megabytes"),
        ({"rotation": {"max_megabytes": "ten"}}, "rotation.max_megabytes"),
        ({"rotation": {"max_backups": -1}}, "rotation.max_backups"),
        ({"rotation": {"max_backups": 1.5}}, "rotation.max_backups"),
        ({"rotation": {"max_days": -1}}, "rotation.max_days"),
        ({"rotation": {"localtime": "yes"}}, "rotation.localtime"),
        ({"rotation": {"max_size": 1}}, "rotation.max_size"),
        ({"compression": "zstd"}, "compression"),
        ({"fsync": "sometimes"}, "fsync"),
        ({"fsync_interval": 0}, "fsync_interval"),
        ({"flush_interval": -1}, "flush_interval"),
        ({"fsync_interval": 1, "flush_interval": 2}, "fsync_interval"),
    ],
)
def test_bad_argument_raises_value_error_naming_it(tmp_path: Path, kwargs: dict, argument: str) -> None:
    """A wrong argument raises ValueError at construction, and the message starts with its name."""
    kwargs.setdefault("path", tmp_path / "audit.jsonl")
    with pytest.raises(ValueError) as info:
        FileLogRecordExporter(**kwargs)
    assert str(info.value).startswith(f"{argument}:")


def test_flush_interval_is_an_alias(tmp_path: Path) -> None:
    """flush_interval is accepted in place of fsync_interval."""
    exporter = FileLogRecordExporter(path=tmp_path / "audit.jsonl", flush_interval=0.5)
    assert exporter.export(_records(1)) is LogRecordExportResult.SUCCESS
    exporter.shutdown()


# --------------------------------------------------------------------------- from_config


def test_from_config_builds_a_working_exporter(tmp_path: Path) -> None:
    """A collector-shaped block with rotation, compression, fsync and a duration string works."""
    exporter = FileLogRecordExporter.from_config(
        {
            "path": str(tmp_path / "audit.jsonl"),
            "format": "json",
            "rotation": {"max_megabytes": 0.002, "max_days": 3, "max_backups": "5", "localtime": True},
            "compression": "gzip",
            "fsync": "interval",
            "flush_interval": "500ms",
        },
        where="otel-audit.yaml: exporters.file",
    )
    for record in _records(40, body_size=300):
        assert exporter.export([record]) is LogRecordExportResult.SUCCESS
    assert exporter.force_flush()
    exporter.shutdown()
    files = _archive(tmp_path)
    assert 2 <= len(files) <= 6
    assert sorted(_read_indices(files))[-1] == 39


@pytest.mark.parametrize(
    ("cfg", "key", "hint"),
    [
        ({"path": "a", "encoding": "otlp_json"}, "encoding", "valid keys are path, rotation"),
        ({"path": "a", "format": "proto"}, "format", "use format: json"),
        ({"path": "a", "format": "yaml"}, "format", "use json"),
        ({}, "path", "set it"),
        ({"path": 3}, "path", "string"),
        ({"path": "a", "rotation": {"max_megabytes": "big"}}, "rotation.max_megabytes", "number"),
        ({"path": "a", "rotation": {"max_backups": 2.5}}, "rotation.max_backups", "integer"),
        ({"path": "a", "rotation": {"max_days": -2}}, "rotation.max_days", "0"),
        ({"path": "a", "rotation": {"localtime": "maybe"}}, "rotation.localtime", "true or false"),
        ({"path": "a", "rotation": {"max_size": 1}}, "rotation.max_size", "valid keys are max_megabytes"),
        ({"path": "a", "rotation": [1]}, "rotation", "mapping"),
        ({"path": "a", "compression": "zstd"}, "compression", "gzip"),
        ({"path": "a", "fsync": "often"}, "fsync", "always, interval, never"),
        ({"path": "a", "fsync_interval": "fast"}, "fsync_interval", '"500ms"'),
        ({"path": "a", "flush_interval": "0s"}, "flush_interval", "above zero"),
        ({"path": "a", "fsync_interval": "1s", "flush_interval": "2s"}, "fsync_interval", "only one"),
        ({"path": "a", "append": False}, "append", "truncate"),
    ],
)
def test_from_config_errors_name_the_key(cfg: dict, key: str, hint: str) -> None:
    """A bad block raises ConfigError that starts with where.key and says what to do."""
    with pytest.raises(ConfigError) as info:
        FileLogRecordExporter.from_config(cfg, where="cfg.yaml: exporters.file")
    message = str(info.value)
    assert message.startswith(f"cfg.yaml: exporters.file.{key}:"), message
    assert hint in message


def test_from_config_rejects_a_non_mapping() -> None:
    """A block that is not a mapping raises ConfigError naming where it is."""
    with pytest.raises(ConfigError, match=r"^exporters\.file: expected a mapping"):
        FileLogRecordExporter.from_config(["path"], where="exporters.file")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (1, 1.0),
        (0.25, 0.25),
        ("2", 2.0),
        ("1s", 1.0),
        ("500ms", 0.5),
        ("2m", 120.0),
        ("1h30m", 5400.0),
        ("1.5s", 1.5),
        ("250us", 0.00025),
        ("10µs", 0.00001),
        ("100ns", 1e-7),
        ("0", 0.0),
    ],
)
def test_parse_duration_accepts_numbers_and_go_durations(value: object, seconds: float) -> None:
    """parse_duration reads seconds as numbers and Go duration strings."""
    assert parse_duration(value, where="x") == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value", ["", "fast", "1d", "5 s", "1s2", "-1s", -3, True, None, [1], "nan", float("inf")]
)
def test_parse_duration_rejects_the_rest(value: object) -> None:
    """parse_duration raises ConfigError naming where, for non-durations and negative ones."""
    with pytest.raises(ConfigError, match=r"^exporters\.file\.flush_interval: "):
        parse_duration(value, where="exporters.file.flush_interval")


# --------------------------------------------------------------------------- refusals


def test_last_rejected_is_empty_when_the_batch_is_written(tmp_path: Path) -> None:
    """A written batch is SUCCESS with last_rejected empty and every record counted delivered."""
    exporter = FileLogRecordExporter(path=tmp_path / "audit.jsonl", fsync="never")
    assert exporter.export(_records(3)) is LogRecordExportResult.SUCCESS
    assert exporter.last_rejected == () and exporter.counters.delivered == 3
    exporter.shutdown()


def test_an_unencodable_record_is_rejected_and_the_rest_is_written(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """A record with no OTLP JSON form is in last_rejected, logged and counted; the others are written: SUCCESS."""
    path = tmp_path / "audit.jsonl"
    exporter = FileLogRecordExporter(path=path, fsync="never")
    records = _records(3)
    records[1].log_record.body = object()
    with caplog.at_level(logging.ERROR):
        assert exporter.export(records) is LogRecordExportResult.SUCCESS
    assert exporter.last_rejected == (1,) and exporter.counters.rejected == 1
    assert "no OTLP AnyValue form" in caplog.text
    exporter.shutdown()
    assert _read_indices([path]) == [0, 2]


def test_an_io_error_is_failure_never_a_rejection(tmp_path: Path) -> None:
    """A write that fails on the file system is FAILURE with last_rejected empty: the records are kept upstream."""
    path = tmp_path / "audit.jsonl"
    exporter = FileLogRecordExporter(path=path, fsync="never")
    path.mkdir()
    assert exporter.export(_records(2)) is LogRecordExportResult.FAILURE and exporter.last_rejected == ()
    exporter.shutdown()


# --------------------------------------------------------------------------- fork safety


def test_a_forked_child_writes_and_rotates_its_own_file(tmp_path: Path) -> None:
    """After os.fork() the child appends to <stem>.<pid><suffix> next to the parent's file and rotates it on its
    own; the parent's file and backups hold only the parent's records, and every record is written once."""
    path = tmp_path / "audit.jsonl"
    exporter = FileLogRecordExporter(path=path, rotation={"max_megabytes": 0.005}, fsync="interval",
                                     fsync_interval=0.05)
    records = _records(120, body_size=200)
    assert exporter.export(records[:10]) is LogRecordExportResult.SUCCESS

    def work() -> dict[str, object]:
        ok = all(exporter.export(records[i:i + 10]) is LogRecordExportResult.SUCCESS for i in range(10, 60, 10))
        exporter.shutdown()
        return {"ok": ok, "path": exporter.path}

    child = in_forked_child(work)
    pid = child["pid"]
    assert child["exit_code"] == 0 and child["ok"], child
    for i in range(60, 120, 10):
        assert exporter.export(records[i:i + 10]) is LogRecordExportResult.SUCCESS
    exporter.shutdown()

    child_path = tmp_path / f"audit.{pid}.jsonl"
    assert child["path"] == str(child_path) and child_path.exists() and exporter.path == str(path)
    child_files = [p for p in _archive(tmp_path) if p.name.startswith(f"audit.{pid}")]
    parent_files = [p for p in _archive(tmp_path) if p not in child_files]
    assert len(child_files) > 1 and len(parent_files) > 1  # both rotated
    assert all(re.fullmatch(rf"audit\.{pid}(-.+)?\.jsonl", p.name) for p in child_files)
    assert sorted(_read_indices(child_files)) == list(range(10, 60))
    assert sorted(_read_indices(parent_files)) == [*range(10), *range(60, 120)]


# --------------------------------------------------------------------------- processes started apart

WRITER = r"""
import logging, os, sys, time
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from otel_audit.exporters.file import FileLogRecordExporter

logging.basicConfig(level=logging.WARNING)
path, first, count, go = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
exporter = FileLogRecordExporter(path=path, rotation={"max_megabytes": 0.005}, fsync="never")
provider = LoggerProvider()
provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
log = provider.get_logger("writer")
log.emit(body="x" * 200, attributes={"i": first}, event_name="audit.test")
print(exporter.path, flush=True)  # written once: the file is this process's now
while not os.path.exists(go):
    time.sleep(0.01)
for i in range(first + 1, first + count):
    log.emit(body="x" * 200, attributes={"i": i}, event_name="audit.test")
provider.shutdown()
"""


def _start_writer(tmp_path: Path, first: int, count: int) -> tuple[subprocess.Popen[str], str]:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "audit.jsonl"), str(first), str(count),
                             str(tmp_path / "go")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def test_processes_started_apart_on_one_path_each_write_and_rotate_a_file_of_their_own(tmp_path: Path) -> None:
    """Two processes started apart (not forked) with one rotating path: the first holds audit.jsonl, the second
    says so and writes audit.<pid>.jsonl; both rotate at once and every record is in exactly one writer's files."""
    first, first_path = _start_writer(tmp_path, 0, 400)
    second, second_path = _start_writer(tmp_path, 1000, 400)
    (tmp_path / "go").touch()
    outs = [p.communicate(timeout=120) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outs
    assert first_path == str(tmp_path / "audit.jsonl")
    assert second_path == str(tmp_path / f"audit.{second.pid}.jsonl")
    assert "is being written by another process" in outs[1][1] and "cannot write" not in outs[0][1] + outs[1][1]
    second_files = [p for p in _archive(tmp_path) if p.name.startswith(f"audit.{second.pid}")]
    first_files = [p for p in _archive(tmp_path) if p not in second_files]
    assert len(first_files) > 1 and len(second_files) > 1  # both rotated, each its own file
    assert all(p.name == "audit.jsonl" or re.fullmatch(BACKUP_NAME, p.name) for p in first_files), first_files
    assert sorted(_read_indices(first_files)) == list(range(400))
    assert sorted(_read_indices(second_files)) == list(range(1000, 1400))
    for lock in (tmp_path / "audit.jsonl.lock", tmp_path / f"audit.{second.pid}.jsonl.lock"):
        assert stat.S_IMODE(lock.stat().st_mode) == 0o600 and lock.stat().st_size == 0


def test_the_file_is_free_again_once_its_writer_has_shut_down(tmp_path: Path) -> None:
    """The lock lasts until shutdown(): a second exporter on the path meanwhile takes a file of its own, and one
    made after the first has shut down appends to audit.jsonl itself."""
    path = tmp_path / "audit.jsonl"
    first = FileLogRecordExporter(path=path, fsync="never")
    assert first.export(_records(1)) is LogRecordExportResult.SUCCESS
    meanwhile = FileLogRecordExporter(path=path, fsync="never")
    assert meanwhile.export(_records(1)) is LogRecordExportResult.SUCCESS
    assert meanwhile.path == str(tmp_path / f"audit.{os.getpid()}.jsonl")
    first.shutdown()
    meanwhile.shutdown()
    later = FileLogRecordExporter(path=path, fsync="never")
    assert later.export(_records(1)) is LogRecordExportResult.SUCCESS and later.path == str(path)
    later.shutdown()
    assert len(_read_lines(path)) == 2


def test_a_symlink_planted_at_the_lock_is_refused_not_followed(tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    """A symlink at audit.jsonl.lock fails the export (logged, retried upstream) and its target is untouched."""
    target = tmp_path / "elsewhere"
    target.write_text("not ours\n")
    (tmp_path / "audit.jsonl.lock").symlink_to(target)
    exporter = FileLogRecordExporter(path=tmp_path / "audit.jsonl", fsync="never")
    with caplog.at_level(logging.ERROR, logger="otel_audit.exporters.file"):
        assert exporter.export(_records(1)) is LogRecordExportResult.FAILURE
    exporter.shutdown()
    assert "cannot write 1 log records" in caplog.text
    assert target.read_text() == "not ours\n" and not (tmp_path / "audit.jsonl").exists()


@pytest.fixture
def read_only_folder_with_a_writable_file(tmp_path: Path) -> Iterator[Path]:
    """A folder the process cannot write holding a file it can (a tmpfs remounted read-only, the file bind-mounted
    read-write over itself): a pre-created /var/log file. Needs root, as CI has; unmounted after."""
    if os.geteuid() != 0:
        pytest.skip("mounting needs root")
    mnt = tmp_path / "ro"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], check=True)
    path = mnt / "audit.jsonl"
    path.touch()
    try:
        subprocess.run(["mount", "--bind", str(path), str(path)], check=True)
        subprocess.run(["mount", "-o", "remount,bind,ro", str(mnt)], check=True)
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_file_in_a_folder_it_cannot_write_is_still_written_with_a_warning(
        read_only_folder_with_a_writable_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Where no lock can be made next to a file that can be written, the file is written as before (warned once)."""
    path = read_only_folder_with_a_writable_file
    exporter = FileLogRecordExporter(path=path, fsync="never")
    with caplog.at_level(logging.WARNING, logger="otel_audit.exporters.file"):
        for _ in range(2):
            assert exporter.export(_records(1)) is LogRecordExportResult.SUCCESS
    exporter.shutdown()
    assert caplog.text.count("is written without one") == 1, caplog.text
    assert len(_read_lines(path)) == 2 and not path.with_name("audit.jsonl.lock").exists()
