"""Hostile and broken config files: each is refused fast, in little memory, with one clear line.

Through the real CLI (`python -m otel_audit.cli check-config FILE` in a child process with a
timeout and an address-space limit) and through `otel_audit.configure(path)`: YAML aliases
(billion laughs), an oversized file, deep nesting, non-finite / negative / huge numbers, bad
`${env:NAME}` names, and a damaged private key file.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import child_env

import otel_audit
from otel_audit import keys
from otel_audit.errors import ConfigError

MEMORY_LIMIT = 1 << 30  # 1 GiB of address space: the billion-laughs file took 1.16 GB before
TIMEOUT = 60


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def check_config(cfg: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {k: v for k, v in child_env().items() if not k.startswith("OTEL_AUDIT_")}
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "otel_audit.cli", "check-config", str(cfg)],
                          capture_output=True, text=True, timeout=TIMEOUT, env=env, check=False,
                          preexec_fn=_limit_memory)
    return proc, time.monotonic() - start


def assert_refused(cfg: Path, *parts: str, seconds: float = 20.0) -> str:
    """check-config exits 2 with one line naming the file and `parts`: no traceback, no internal error."""
    proc, took = check_config(cfg)
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert "Traceback" not in proc.stderr and "internal error" not in line, line
    for part in (str(cfg), *parts):
        assert part in line, (part, line)
    assert took < seconds, took
    return line


def assert_configure_refuses(cfg: Path, *parts: str) -> None:
    with pytest.raises(ConfigError) as err:
        otel_audit.configure(cfg)
    for part in (str(cfg), *parts):
        assert part in str(err.value), (part, str(err.value))


def good_config(keys_dir: Path, tmp_path: Path, *, signing_extra: str = "", delivery: str = "",
                exporter_extra: str = "") -> str:
    procs = "[signing, delivery]" if delivery else "[signing]"
    dblock = f"  delivery: {{directory: {json.dumps(str(tmp_path / 'spool'))}{delivery}}}\n" if delivery else ""
    return (
        "processors:\n"
        f"  signing: {{keys_dir: {json.dumps(str(keys_dir))}{signing_extra}}}\n"
        f"{dblock}"
        "exporters:\n"
        f"  file: {{path: {json.dumps(str(tmp_path / 'a.jsonl'))}{exporter_extra}}}\n"
        "service:\n"
        f"  pipelines:\n    logs: {{processors: {procs}, exporters: [file]}}\n"
    )


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_a_good_config_still_passes(tmp_path: Path, shared_keys: Path) -> None:
    """The limits leave an ordinary config alone (so the refusals below are about what they test)."""
    cfg = write(tmp_path / "c.yaml", good_config(shared_keys, tmp_path, delivery=", max_size_mib: 64"))
    proc, _ = check_config(cfg)
    assert proc.returncode == 0, proc.stderr


BILLION_LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_billion_laughs_is_refused_fast_naming_the_alias_and_line(tmp_path: Path) -> None:
    cfg = write(tmp_path / "laughs.yaml", "resource:\n" + "".join("  " + line + "\n" for line in
                                                                  BILLION_LAUGHS.splitlines()))
    line = assert_refused(cfg, "alias", "line 3", seconds=10)
    assert "*a" in line
    assert_configure_refuses(cfg, "alias")


def test_a_merge_key_alias_is_refused_too(tmp_path: Path) -> None:
    cfg = write(tmp_path / "merge.yaml", "resource:\n  base: &b {x: 1}\n  more:\n    <<: *b\n")
    assert_refused(cfg, "alias *b", "line 4")


def test_a_60_mb_config_is_refused_before_parsing(tmp_path: Path) -> None:
    cfg = tmp_path / "big.yaml"
    with open(cfg, "w", encoding="utf-8") as f:
        f.write("resource:\n")
        chunk = "".join(f"  k{i}: {'v' * 50}\n" for i in range(1000))
        while f.tell() < 60 << 20:
            f.write(chunk)
    assert_refused(cfg, "1 MiB", seconds=10)
    assert_configure_refuses(cfg, "1 MiB")


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_2000_deep_nesting_is_refused(tmp_path: Path, suffix: str) -> None:
    deep = "[" * 2000 + "]" * 2000
    cfg = write(tmp_path / f"deep{suffix}", f'{{"resource": {{"x": {deep}}}}}')
    assert_refused(cfg, "nested more than 64 levels")
    assert_configure_refuses(cfg, "nested")


@pytest.mark.parametrize(("where", "key", "value"), [
    ("delivery", "max_size_mib", ".inf"),
    ("delivery", "max_size_mib", ".nan"),
    ("delivery", "max_size_mib", "-5"),
    ("delivery", "max_size_mib", "1e300"),
    ("delivery", "segment_size_mib", ".inf"),
    ("delivery", "memory_records", "1e300"),
    ("delivery", "memory_records", "99999999999999999999999999"),
    ("delivery", "fsync_interval", ".inf"),
    ("delivery", "block_timeout", "1e300"),
    ("signing", "checkpoint_every", ".inf"),
    ("signing", "checkpoint_every", "-1"),
    ("signing", "checkpoint_every", "99999999999999999999999999"),
    ("signing", "checkpoint_interval", ".nan"),
    ("signing", "checkpoint_interval", "1e300"),
    ("exporter", "sending_queue", "{queue_size: 1e300}"),
    ("exporter", "sending_queue", "{queue_size: 99999999999999999999}"),
    ("exporter", "retry_on_failure", "{multiplier: .inf}"),
    ("exporter", "retry_on_failure", "{multiplier: -2}"),
])
def test_bad_numbers_name_file_and_key(tmp_path: Path, shared_keys: Path, where: str, key: str, value: str) -> None:
    extra = f", {key}: {value}"
    text = good_config(shared_keys, tmp_path,
                       signing_extra=extra if where == "signing" else "",
                       delivery=extra if where == "delivery" else "",
                       exporter_extra=extra if where == "exporter" else "")
    cfg = write(tmp_path / "c.yaml", text)
    assert_refused(cfg, key)
    assert_configure_refuses(cfg, key)


@pytest.mark.parametrize("ref", ["${env:1X}", "${env:}", "${env:A B}", "${1X}", "${env: X}"])
def test_an_invalid_env_var_name_is_an_error_naming_file_and_key(tmp_path: Path, ref: str) -> None:
    cfg = write(tmp_path / "c.yaml", f'resource:\n  service.name: "pre-{ref}"\n')
    line = assert_refused(cfg, "resource.service.name", "not a valid environment variable name")
    assert ref in line
    assert_configure_refuses(cfg, "resource.service.name")


def _damaged_keys(tmp_path: Path, damage: str) -> tuple[Path, Path]:
    d = tmp_path / "keys"
    keys.generate(d, "k1")
    pem = d / keys.PRIVATE_DIR / "k1.pem"
    data = bytearray(pem.read_bytes())
    if damage == "flipped":
        # a bit in the base64 body, inside the algorithm identifier (what gave UnsupportedAlgorithm)
        start = data.index(b"\n") + 1
        data[start + 12] ^= 0x01
    elif damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "wrong-type":
        data = bytearray(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    elif damage == "empty":
        data = bytearray()
    pem.write_bytes(bytes(data))
    return d, pem


@pytest.mark.parametrize("damage", ["flipped", "truncated", "wrong-type", "empty"])
def test_a_damaged_private_key_is_a_clear_keyring_error(tmp_path: Path, damage: str) -> None:
    d, pem = _damaged_keys(tmp_path, damage)
    cfg = write(tmp_path / "c.yaml", good_config(d, tmp_path))
    line = assert_refused(cfg, "processors.signing.keys_dir", str(pem))
    assert "BEGIN" not in line and "PRIVATE" not in line
    assert_configure_refuses(cfg, str(pem))


@pytest.mark.parametrize("index", range(0, 120, 3))
def test_any_flipped_bit_in_the_key_file_is_never_an_internal_error(tmp_path: Path, index: int) -> None:
    """Flip bits across the PEM (header, body, footer); loading gives a KeyringError or the key itself."""
    d = tmp_path / "keys"
    keys.generate(d, "k1")
    pem = d / keys.PRIVATE_DIR / "k1.pem"
    data = bytearray(pem.read_bytes())
    data[index % len(data)] ^= 0x04
    pem.write_bytes(bytes(data))
    try:
        keys.Signer.from_keys_dir(d)
    except keys.KeyringError as exc:
        assert str(pem) in str(exc) or str(d) in str(exc)


@pytest.mark.parametrize("exporter", [
    "otlp: {endpoint: 'localhost:4317', tls: {insecure: true}, timeout: 1e300}",
    "otlp: {endpoint: 'localhost:4317', tls: {insecure: true}, timeout: .inf}",
    "otlp: {endpoint: 'localhost:4317', tls: {insecure: true}, timeout: -1}",
])
def test_an_exporter_duration_out_of_range_names_file_and_key(tmp_path: Path, shared_keys: Path,
                                                               exporter: str) -> None:
    cfg = write(tmp_path / "c.yaml", (
        f"processors:\n  signing: {{keys_dir: {json.dumps(str(shared_keys))}}}\n"
        f"exporters:\n  {exporter}\n"
        "service:\n  pipelines:\n    logs: {processors: [signing], exporters: [otlp]}\n"
    ))
    assert_refused(cfg, "exporters.otlp.timeout")
    assert_configure_refuses(cfg, "exporters.otlp.timeout")
