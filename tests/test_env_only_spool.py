"""The env-only mode (no config file) with and without the durable spool.

With OTEL_AUDIT_SPOOL_DIR every record is on disk before `emit` returns, so a producer killed with
SIGKILL while its OTLP destination is down loses nothing: the next start ships the backlog. Without
it the records wait in memory, and the pipeline says so (a warning in `Built.warnings` and the log).
Real processes, a real OTLP/HTTP exporter, a loopback receiver that decodes the protobuf.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import child_env
from google.protobuf.json_format import MessageToDict
from test_sdk_conventions import OtlpHttpReceiver

from otel_audit import config
from otel_audit.errors import ConfigError
from otel_audit.keys import Keyring
from otel_audit.verify import verify_paths

EVENTS = 40

PRODUCER = r"""
import os, sys, time
import otel_audit
audit = otel_audit.configure()
for i in range(int(sys.argv[1])):
    audit.logger.login_succeeded(f"user-{i}", client_address="203.0.113.7")
print("emitted", flush=True)
if sys.argv[2] == "hang":
    time.sleep(600)  # killed here, with the destination down
audit.shutdown()
print("closed", flush=True)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(shared_keys: Path, tmp_path: Path, endpoint: str, **more: str) -> dict[str, str]:
    env = {k: v for k, v in child_env().items() if not k.startswith("OTEL_")}
    env.update({
        "OTEL_AUDIT_KEYS_DIR": str(shared_keys),
        "OTEL_AUDIT_STATE_DIR": str(tmp_path / "state"),
        "OTEL_LOGS_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": f"{endpoint}/v1/logs",
        "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT": "1",
        "NO_PROXY": "*",
        **more,
    })
    return env


def _received(receiver: OtlpHttpReceiver, tmp_path: Path) -> Path:
    archive = tmp_path / "received.jsonl"
    archive.write_text("".join(json.dumps(MessageToDict(r, use_integers_for_enums=True)) + "\n"
                               for r in receiver.requests))
    return archive


def _event_users(receiver: OtlpHttpReceiver) -> list[str]:
    users = []
    for req in receiver.requests:
        for rl in req.resource_logs:
            for sl in rl.scope_logs:
                for r in sl.log_records:
                    if r.event_name == "authentication.login.succeeded":
                        users += [kv.value.string_value for kv in r.attributes if kv.key == "user.id"]
    return users


def test_env_only_spool_survives_sigkill_with_the_destination_down(shared_keys: Path, tmp_path: Path) -> None:
    """Emit 40 events with nothing listening, SIGKILL; the next start (destination up) delivers all 40, and
    what arrived verifies (the killed stream's tail after its last checkpoint counted unproven, as a crash)."""
    down = f"http://127.0.0.1:{_free_port()}"
    spool = tmp_path / "spool"
    env = _env(shared_keys, tmp_path, down, OTEL_AUDIT_SPOOL_DIR=str(spool))
    proc = subprocess.Popen([sys.executable, "-c", PRODUCER, str(EVENTS), "hang"], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.startswith("emitted"), (line, proc.stderr.read() if proc.stderr else "")
        proc.kill()  # SIGKILL: no shutdown, no flush
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -9

    receiver = OtlpHttpReceiver()
    try:
        env = _env(shared_keys, tmp_path, receiver.url, OTEL_AUDIT_SPOOL_DIR=str(spool))
        done = subprocess.run([sys.executable, "-c", PRODUCER, "0", "close"], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        deadline = time.monotonic() + 30
        while len(set(_event_users(receiver))) < EVENTS and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        receiver.close()
    assert sorted(set(_event_users(receiver))) == sorted(f"user-{i}" for i in range(EVENTS))
    rep = verify_paths([_received(receiver, tmp_path)], Keyring.load(shared_keys), progress=False)
    assert rep.ok, [s.problems for s in rep.streams] + rep.problems
    assert len(rep.streams) == 2  # the killed stream and the one that shipped its backlog


def test_env_only_without_spool_says_records_wait_in_memory(
    shared_keys: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = _env(shared_keys, tmp_path, f"http://127.0.0.1:{_free_port()}")
    with caplog.at_level(logging.WARNING, logger="otel_audit.config"):
        built = config.build_from_env(env)
    try:
        assert "delivery" not in built.processors
        (w,) = [w for w in built.warnings if w.startswith("OTEL_AUDIT_SPOOL_DIR")]
        assert "in memory" in w and "crash loses them" in w
        assert any("OTEL_AUDIT_SPOOL_DIR: not set" in r.getMessage() for r in caplog.records)
    finally:
        for exp in built.exporters.values():
            exp.shutdown()
        built.provider.shutdown()


def test_env_only_with_spool_has_the_delivery_processor_and_no_warning(shared_keys: Path, tmp_path: Path) -> None:
    env = _env(shared_keys, tmp_path, f"http://127.0.0.1:{_free_port()}",
               OTEL_AUDIT_SPOOL_DIR=str(tmp_path / "spool"), OTEL_AUDIT_DELIVERY_MODE="fail_open")
    built = config.build_from_env(env)
    try:
        assert built.processors["delivery"].mode == "fail_open"
        assert built.warnings == []
        assert (tmp_path / "spool").is_dir() and oct((tmp_path / "spool").stat().st_mode & 0o777) == "0o700"
    finally:
        for exp in built.exporters.values():
            exp.shutdown()
        built.provider.shutdown()


@pytest.mark.parametrize(
    ("more", "message"),
    [
        ({"OTEL_AUDIT_DELIVERY_MODE": "fail_closed"}, "OTEL_AUDIT_DELIVERY_MODE is set but OTEL_AUDIT_SPOOL_DIR"),
        ({"OTEL_AUDIT_SPOOL_DIR": "SPOOL", "OTEL_AUDIT_DELIVERY_MODE": "drop"},
         "OTEL_AUDIT_DELIVERY_MODE: expected one of fail_closed, fail_open, got 'drop'"),
        ({"OTEL_AUDIT_SPOOL_DIR": "FILE"}, "OTEL_AUDIT_SPOOL_DIR: "),
    ],
    ids=["mode_without_folder", "bad_mode", "folder_is_a_file"],
)
def test_env_only_spool_settings_errors_name_the_variable(shared_keys: Path, tmp_path: Path,
                                                          more: dict[str, str], message: str) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    more = {k: v.replace("SPOOL", str(tmp_path / "spool")).replace("FILE", str(a_file)) for k, v in more.items()}
    env = _env(shared_keys, tmp_path, f"http://127.0.0.1:{_free_port()}", **more)
    with pytest.raises(ConfigError) as info:
        config.build_from_env(env)
    assert message in str(info.value)
    assert not (tmp_path / "state").exists() or os.listdir(tmp_path / "state") == []
