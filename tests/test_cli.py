"""The `otel-audit` command line, run as a real child process (`python -m otel_audit.cli`).

Exit codes: verify 0 verified, 1 integrity problem, 2 unusable input or usage; check-config
--strict 1 on warnings; every other command 0 or 2. Every error is one line on stderr, never a
traceback, and no secret (HMAC key, private key, header token) appears in any output. Starts one
short-lived Python process per call; no network.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import Written, child_env

import otel_audit
from otel_audit import keys
from otel_audit.pseudonym import hmac_value, load_hmac_key

HMAC_KEY = "hex:" + "a7" * 32
TOKEN = "tok-9f8e7d6c5b4a"


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
        exe: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a child process; the environment is this one's without OTEL_AUDIT_* (plus `env`)."""
    full = {k: v for k, v in child_env().items() if not k.startswith("OTEL_AUDIT_")}
    full.update(env or {})
    cmd = (exe or [sys.executable, "-m", "otel_audit.cli"]) + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=full, cwd=cwd, check=False)


def assert_usage_error(proc: subprocess.CompletedProcess[str], *parts: str) -> None:
    """Exit 2 with one line on stderr, no traceback, naming each of `parts`."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for part in parts:
        assert part in lines[0], (part, lines[0])


def config_text(keys_dir: Path, archive: Path, state: Path) -> str:
    return f"""\
processors:
  redaction: {{mode: hmac, hmac_key: "{HMAC_KEY}"}}
  signing: {{keys_dir: {json.dumps(str(keys_dir))}, state_dir: {json.dumps(str(state))}}}
exporters:
  file: {{path: {json.dumps(str(archive))}, fsync: never}}
service:
  pipelines:
    logs/audit: {{processors: [redaction, signing], exporters: [file]}}
"""


# -- help and usage ------------------------------------------------------------------------------


def test_help_lists_every_command() -> None:
    """--help exits 0 and lists every command."""
    proc = run("--help")
    assert proc.returncode == 0, proc.stderr
    for cmd in ("verify", "keys", "catalog", "hash", "demo", "check-config"):
        assert cmd in proc.stdout


def test_no_command_is_a_usage_error() -> None:
    """No command prints the help to stderr and exits 2."""
    proc = run()
    assert proc.returncode == 2 and "usage:" in proc.stderr and "Traceback" not in proc.stderr


def test_unknown_option_is_a_usage_error() -> None:
    """An unknown option exits 2 with argparse's short message."""
    proc = run("catalog", "--nope")
    assert proc.returncode == 2 and "unrecognized arguments" in proc.stderr and "Traceback" not in proc.stderr


def test_installed_console_script_runs() -> None:
    """The installed `otel-audit` console script (next to this interpreter) runs the same CLI."""
    script = Path(sys.executable).parent / "otel-audit"
    assert script.is_file(), f"{script} is missing: install the package (pip install -e .)"
    proc = run("catalog", "--format", "json", exe=[str(script)])
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)) == 47
    assert run("--version", exe=[str(script)]).stdout.splitlines()[0] == f"otel-audit {otel_audit.__version__}"


# -- catalog ---------------------------------------------------------------------------------------


def test_catalog_markdown() -> None:
    """`catalog` prints the event catalog as Markdown tables."""
    proc = run("catalog")
    assert proc.returncode == 0
    assert proc.stdout.startswith("# Audit event catalog")
    assert "`authentication.login.succeeded`" in proc.stdout and "| event |" in proc.stdout


def test_catalog_json_has_47_events() -> None:
    """`catalog --format json` is JSON holding the 47 events with their CADF and ECS mappings."""
    proc = run("catalog", "--format", "json")
    assert proc.returncode == 0
    doc = json.loads(proc.stdout)
    assert len(doc) == 47
    login = doc["authentication.login.succeeded"]
    assert {"category", "cadf_action", "ecs_category", "required"} <= set(login)


# -- keys ------------------------------------------------------------------------------------------


def test_keys_generate_rotate_export_list(tmp_path: Path) -> None:
    """keys generate/rotate/export/list: a public keyring, 0600 private keys, an export without private keys."""
    d = tmp_path / "keys"
    gen = run("keys", "generate", "--dir", str(d), "--name", "k1")
    assert gen.returncode == 0, gen.stderr
    assert (d / "keyring.json").is_file()
    pem = d / "private" / "k1.pem"
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    rot = run("keys", "rotate", "--dir", str(d), "--name", "k2", "--grace", "30m")
    assert rot.returncode == 0, rot.stderr
    assert stat.S_IMODE((d / "private" / "k2.pem").stat().st_mode) == 0o600
    exp = run("keys", "export", "--dir", str(d), "--out", str(tmp_path / "auditor") + os.sep)
    assert exp.returncode == 0, exp.stderr
    exported = (tmp_path / "auditor" / "keyring.json").read_text()
    assert "PRIVATE" not in exported
    ring = json.loads(exported)
    assert [k["name"] for k in ring["keys"]] == ["k1", "k2"]
    assert ring["keys"][0]["not_after"] is not None and ring["keys"][1]["not_after"] is None
    assert list((tmp_path / "auditor").iterdir()) == [tmp_path / "auditor" / "keyring.json"]
    lst = run("keys", "list", "--dir", str(d))
    assert lst.returncode == 0 and "k1" in lst.stdout and "k2" in lst.stdout
    secrets = [p.read_text() for p in (d / "private").iterdir()]
    for proc in (gen, rot, exp, lst):
        assert "PRIVATE" not in proc.stdout + proc.stderr
        assert not any(s.splitlines()[1] in proc.stdout for s in secrets)


def test_keys_block_of_the_readme_runs_as_written_within_one_second(tmp_path: Path) -> None:
    """generate then rotate with default names, as the README's Keys block does, in the same second: the
    rotated key gets a name of its own (`-2`), not "exists already"."""
    from otel_audit import keys

    d = tmp_path / "keys"
    first = keys.generate(d)
    second = keys.rotate(d, grace_s=3600)
    third = keys.rotate(d, grace_s=3600)
    names = [first.name, second.name, third.name]
    assert len(set(names)) == 3, names
    if second.name.startswith(first.name):  # the same second
        assert second.name == first.name + "-2"
    rot = run("keys", "rotate", "--dir", str(d), "--grace", "1h")
    assert rot.returncode == 0, rot.stderr


def test_keys_errors_are_one_line(tmp_path: Path) -> None:
    """keys without an action, rotate without a keyring, and a duplicate name each exit 2 with one line."""
    bare = run("keys")
    assert bare.returncode == 2 and "generate" in bare.stderr and "Traceback" not in bare.stderr
    assert_usage_error(run("keys", "rotate", "--dir", str(tmp_path / "none")), "keys generate")
    d = tmp_path / "k"
    assert run("keys", "generate", "--dir", str(d), "--name", "same").returncode == 0
    assert_usage_error(run("keys", "generate", "--dir", str(d), "--name", "same"), "exists already")
    assert_usage_error(run("keys", "list", "--dir", str(tmp_path / "missing")), str(tmp_path / "missing"))


# -- hash ------------------------------------------------------------------------------------------


def test_hash_with_key_env_and_config(tmp_path: Path, shared_keys: Path) -> None:
    """hash prints Vault's hmac-sha256 form with --key, OTEL_AUDIT_HMAC_KEY or --config, never the key."""
    expected = hmac_value(load_hmac_key(HMAC_KEY, where="test"), "alice@example.com")
    by_flag = run("hash", "alice@example.com", "--key", HMAC_KEY)
    by_env = run("hash", "alice@example.com", env={"OTEL_AUDIT_HMAC_KEY": HMAC_KEY})
    cfg = tmp_path / "audit.yaml"
    cfg.write_text(config_text(shared_keys, tmp_path / "a.jsonl", tmp_path / "state"))
    by_config = run("hash", "alice@example.com", "--config", str(cfg))
    for proc in (by_flag, by_env, by_config):
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == expected
        assert HMAC_KEY[4:] not in proc.stdout + proc.stderr


def test_hash_config_with_relative_key_file(tmp_path: Path) -> None:
    """hash --config finds a `file:` HMAC key relative to the config's folder, from any working directory."""
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "hmac.key").write_text(HMAC_KEY + "\n")
    cfg = tmp_path / "conf" / "audit.yaml"
    cfg.write_text("processors:\n  redaction/pii: {hmac_key: 'file:hmac.key'}\n")
    proc = run("hash", "v", "--config", str(cfg), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == hmac_value(load_hmac_key(HMAC_KEY, where="t"), "v")


def test_hash_without_a_key_is_a_clear_error(tmp_path: Path) -> None:
    """hash without any key exits 2 saying how to give one; a short key is refused without being shown."""
    assert_usage_error(run("hash", "x"), "no HMAC key", "--key", "OTEL_AUDIT_HMAC_KEY")
    proc = run("hash", "x", "--key", "tiny-s3cret")
    assert_usage_error(proc, "--key", "shorter than the minimum")
    assert "tiny-s3cret" not in proc.stderr + proc.stdout
    cfg = tmp_path / "c.yaml"
    cfg.write_text("processors:\n  redaction: {mode: mask}\n")
    assert_usage_error(run("hash", "x", "--config", str(cfg)), str(cfg), "processors.redaction.hmac_key")


# -- check-config ----------------------------------------------------------------------------------


def test_check_config_good_file_is_a_dry_run(tmp_path: Path, shared_keys: Path) -> None:
    """check-config on a good file exits 0 and writes nothing: no archive, no state folder."""
    archive = tmp_path / "archive" / "audit.jsonl"
    cfg = tmp_path / "audit.yaml"
    cfg.write_text(config_text(shared_keys, archive, tmp_path / "state"))
    proc = run("check-config", str(cfg))
    assert proc.returncode == 0, proc.stderr
    assert f"{cfg}: OK" in proc.stdout and "file" in proc.stdout and "redaction -> signing" in proc.stdout
    assert HMAC_KEY[4:] not in proc.stdout + proc.stderr
    assert not archive.parent.exists() and not (tmp_path / "state").exists()


def test_check_config_leaves_a_running_producer_alone(tmp_path: Path, shared_keys: Path) -> None:
    """check-config while a producer runs on the config takes no lock and adds nothing to its archive."""
    archive = tmp_path / "audit.jsonl"
    state = tmp_path / "state"
    cfg = tmp_path / "audit.yaml"
    cfg.write_text(config_text(shared_keys, archive, state))
    audit = otel_audit.configure(cfg)
    try:
        audit.logger.login_succeeded("alice")
        audit.force_flush()
        before = archive.read_bytes()
        state_before = (state / "state.json").read_bytes()
        proc = run("check-config", str(cfg))
        assert proc.returncode == 0, proc.stderr
        assert archive.read_bytes() == before and (state / "state.json").read_bytes() == state_before
    finally:
        audit.shutdown()


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("processors:\n  signing: {keys_dir: /nonexistent/keys}\nexporters:\n  file: {path: a.jsonl}\n"
         "service:\n  pipelines:\n    logs: {processors: [signing], exporters: [file]}\n",
         ["processors.signing.keys_dir", "keys generate"]),
        ("exporters: [\n", ["not valid YAML at line"]),
        ("processors: {}\nexporters:\n  otlp: {endpoint: 'localhost:4317', headers: {authorization: " + TOKEN + "},"
         " bogus: 1}\nservice:\n  pipelines:\n    logs: {processors: [signing], exporters: [otlp]}\n",
         ["service.pipelines"]),
        ("processors:\n  signing: {keys_dir: KEYS}\nexporters:\n  otlp: {endpoint: 'localhost:4317', headers: "
         "{authorization: " + TOKEN + "}, bogus: 1}\nservice:\n  pipelines:\n    logs: {processors: [signing], "
         "exporters: [otlp]}\n", ["exporters.otlp.bogus"]),
    ],
    ids=["no_keys", "bad_yaml", "undefined_signing", "unknown_otlp_key"],
)
def test_check_config_bad_file(tmp_path: Path, shared_keys: Path, text: str, parts: list[str]) -> None:
    """check-config on a broken file exits 2 with one line naming the file and the key, and no header token."""
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text.replace("KEYS", json.dumps(str(shared_keys))))
    proc = run("check-config", str(cfg))
    assert_usage_error(proc, str(cfg), *parts)
    assert TOKEN not in proc.stderr + proc.stdout


def test_check_config_missing_file() -> None:
    """check-config on a missing file exits 2 naming it."""
    assert_usage_error(run("check-config", "/nonexistent/audit.yaml"), "/nonexistent/audit.yaml", "not found")


def durable_config(keys_dir: Path, tmp: Path, *, state_dir: bool = True, max_size_mib: str | None = "1",
                   delivery: str = "", processors: str = "[redaction, signing, delivery]") -> str:
    """A config that keeps the "nothing lost" promise (state_dir, a fail_closed spool that fits the disk),
    with `delivery` settings appended to its block (`, key: value`) and its own processor list."""
    state = f", state_dir: {json.dumps(str(tmp / 'state'))}" if state_dir else ""
    size = f", max_size_mib: {max_size_mib}" if max_size_mib is not None else ""
    return f"""\
processors:
  redaction: {{mode: hmac, hmac_key: "{HMAC_KEY}"}}
  signing: {{keys_dir: {json.dumps(str(keys_dir))}{state}}}
  delivery: {{directory: {json.dumps(str(tmp / "spool"))}{size}{delivery}}}
exporters:
  file: {{path: {json.dumps(str(tmp / "audit.jsonl"))}, fsync: never}}
service:
  pipelines:
    logs/audit: {{processors: {processors}, exporters: [file]}}
"""


def check_in_process(cfg: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """otel_audit.cli.main(["check-config", cfg, *args]) in this process: (exit code, stdout, stderr)."""
    from otel_audit.cli import main

    capsys.readouterr()
    code = main(["check-config", str(cfg), *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_check_config_durable_file_prints_no_warning(tmp_path: Path, shared_keys: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A config with state_dir and a fail_closed spool that fits the disk exits 0, stderr empty, --strict too."""
    cfg = tmp_path / "audit.yaml"
    cfg.write_text(durable_config(shared_keys, tmp_path, delivery=", mode: fail_closed, shutdown_timeout: 5s"))
    proc = run("check-config", str(cfg))
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert proc.stdout.startswith(f"{cfg}: OK\n") and "redaction -> signing -> delivery" in proc.stdout
    assert check_in_process(cfg, "--strict", capsys=capsys) == (0, proc.stdout, "")
    assert not (tmp_path / "spool").exists() and not (tmp_path / "state").exists()


@pytest.mark.parametrize(
    ("change", "key", "needle"),
    [
        ({"processors": "[redaction, signing]"}, "service.pipelines.logs/audit.processors", "no delivery processor"),
        ({"state_dir": False}, "processors.signing.state_dir", "cannot name the previous stream"),
        ({"delivery": ", mode: fail_open"}, "processors.delivery.mode", "audit.gap"),
        ({"max_size_mib": "1000000000", "delivery": ", segment_size_mib: 32"}, "processors.delivery.max_size_mib",
         "MiB free on the filesystem holding"),
    ],
    ids=["no_delivery", "no_state_dir", "fail_open", "larger_than_the_disk"],
)
def test_check_config_warns_about_setups_that_can_lose_records(
    tmp_path: Path, shared_keys: Path, capsys: pytest.CaptureFixture[str],
    change: dict[str, Any], key: str, needle: str,
) -> None:
    """A usable config that can lose records exits 0 with one warning naming file and key (1 with --strict)."""
    cfg = tmp_path / "audit.yaml"
    cfg.write_text(durable_config(shared_keys, tmp_path, **change))
    good = tmp_path / "good" / "audit.yaml"
    good.parent.mkdir()
    good.write_text(durable_config(shared_keys, good.parent))
    proc = run("check-config", str(cfg))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"warning: {cfg}: {key}: ") and needle in lines[0], lines[0]
    assert "Traceback" not in proc.stderr and HMAC_KEY[4:] not in proc.stderr
    # stdout is what it is without the warning: the same lines as a good file's, but for the paths
    assert proc.stdout.startswith(f"{cfg}: OK\n") and "warning" not in proc.stdout
    assert len(proc.stdout.splitlines()) == len(run("check-config", str(good)).stdout.splitlines())
    code, out, err = check_in_process(cfg, "--strict", capsys=capsys)
    assert code == 1 and out == proc.stdout
    assert err.splitlines()[0].startswith(f"warning: {cfg}: {key}: ") and "--strict" in err.splitlines()[-1]


@pytest.mark.parametrize(
    ("exporter", "block", "key", "needle"),
    [
        ("datadog", "{api: {key: 0123456789abcdef0123456789abcdef, site: datadoghq.co}}", "exporters.datadog",
         "check the spelling"),
        ("elasticsearch", "{endpoint: 'http://127.0.0.1:1', mapping: {mode: ecs}}",
         "exporters.elasticsearch.mapping.mode", "remove it"),
    ],
    ids=["datadog-site", "elastic-mapping-mode"],
)
def test_check_config_reports_exporter_warnings_once_in_its_form(
    tmp_path: Path, shared_keys: Path, exporter: str, block: str, key: str, needle: str,
) -> None:
    """A warning an exporter logs while being checked is one `warning: <file>: <key>: ...` line; --strict exits 1."""
    cfg = tmp_path / "audit.yaml"
    cfg.write_text(durable_config(shared_keys, tmp_path).replace(
        "  file: {path:", f"  {exporter}: {block}\n  file: {{path:", 1).replace("exporters: [file]",
                                                                           f"exporters: [file, {exporter}]"))
    proc = run("check-config", str(cfg))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"warning: {cfg}: {key}") and needle in lines[0], proc.stderr
    strict = run("check-config", "--strict", str(cfg))
    assert strict.returncode == 1 and strict.stderr.splitlines()[0] == lines[0], strict.stderr


def test_check_config_lists_every_warning(tmp_path: Path, shared_keys: Path) -> None:
    """Several problems give one warning line each, in the order of the config's keys."""
    cfg = tmp_path / "audit.yaml"
    cfg.write_text(durable_config(shared_keys, tmp_path, state_dir=False, delivery=", mode: fail_open"))
    proc = run("check-config", "--strict", str(cfg))
    assert proc.returncode == 1, proc.stderr
    keys_named = [line.split(": ")[2] for line in proc.stderr.splitlines() if line.startswith("warning: ")]
    assert keys_named == ["processors.signing.state_dir", "processors.delivery.mode"]


@pytest.mark.parametrize(
    ("size", "delivery", "key", "needle"),
    [
        ("64", ", segment_size_mib: 33", "processors.delivery.segment_size_mib", "at most 32"),
        ("64", ", segment_size_mib: 64", "processors.delivery.segment_size_mib", "two segments"),
        ("4", ", segment_size_mib: 8", "processors.delivery.segment_size_mib", "two segments"),
        (None, ", segment_size_mib: 600", "processors.delivery.segment_size_mib", "the default max_size_mib (1024)"),
        ("1", ", shutdown_timeout: 0s", "processors.delivery.shutdown_timeout", "more than zero"),
        ("1", ", shutdown_timeout: 601s", "processors.delivery.shutdown_timeout", "at most 10m"),
        ("1", ", shutdown_timeout: -1s", "processors.delivery.shutdown_timeout", "negative"),
        ("1", ", shutdown_timeout: soon", "processors.delivery.shutdown_timeout", "duration"),
    ],
    ids=["segment_over_half", "segment_equal_to_max", "segment_over_max", "segment_over_half_the_default",
         "shutdown_zero", "shutdown_too_long", "shutdown_negative", "shutdown_not_a_duration"],
)
def test_check_config_impossible_delivery_settings_are_errors(
    tmp_path: Path, shared_keys: Path, size: str | None, delivery: str, key: str, needle: str
) -> None:
    """An impossible spool size or shutdown_timeout exits 2 with one line naming the file and the key."""
    cfg = tmp_path / "audit.yaml"
    cfg.write_text(durable_config(shared_keys, tmp_path, max_size_mib=size, delivery=delivery))
    proc = run("check-config", str(cfg))
    assert_usage_error(proc, f"{cfg}: {key}: ", needle)
    assert proc.stdout == ""


@pytest.mark.parametrize(
    ("size", "delivery"),
    [("64", ", segment_size_mib: 32"), ("0.0625", ""), ("1", ", shutdown_timeout: 10m"),
     ("1", ", shutdown_timeout: 250ms")],
    ids=["segment_exactly_half", "smallest_spool_default_segment", "shutdown_at_most", "shutdown_short"],
)
def test_check_config_delivery_settings_at_their_limits_pass(
    tmp_path: Path, shared_keys: Path, capsys: pytest.CaptureFixture[str], size: str, delivery: str
) -> None:
    """Exactly two segments, the smallest spool, and shutdown_timeout up to 10m all pass --strict."""
    cfg = tmp_path / "audit.yaml"
    cfg.write_text(durable_config(shared_keys, tmp_path, max_size_mib=size, delivery=delivery))
    code, out, err = check_in_process(cfg, "--strict", capsys=capsys)
    assert (code, err) == (0, ""), err
    assert out.startswith(f"{cfg}: OK\n")


# -- verify ----------------------------------------------------------------------------------------


def test_verify_missing_path(shared_keys: Path) -> None:
    """verify on a path that does not exist exits 2 naming it."""
    assert_usage_error(run("verify", "--keys", str(shared_keys), "/nonexistent/archive.jsonl"),
                       "/nonexistent/archive.jsonl")


def test_verify_non_otlp_file(tmp_path: Path, shared_keys: Path) -> None:
    """verify on a file that is not OTLP JSON exits 2."""
    f = tmp_path / "notes.jsonl"
    f.write_text("hello\nworld\n")
    assert_usage_error(run("verify", "--keys", str(shared_keys), str(f)), str(f))
    g = tmp_path / "other.jsonl"
    g.write_text('{"a": 1}\n')
    assert_usage_error(run("verify", "--keys", str(shared_keys), str(g)), "resourceLogs")


def test_verify_empty_folder(tmp_path: Path, shared_keys: Path) -> None:
    """verify on a folder without archive files exits 2 naming it."""
    (tmp_path / "empty").mkdir()
    assert_usage_error(run("verify", "--keys", str(shared_keys), str(tmp_path / "empty")), "empty")


def test_verify_keyring_not_json(tmp_path: Path, pristine: Written) -> None:
    """verify with a keyring file that is not JSON exits 2 naming the keyring."""
    ring = tmp_path / "keyring.json"
    ring.write_text("not json at all")
    assert_usage_error(run("verify", "--keys", str(ring), str(pristine.path)), str(ring), "not valid JSON")


def test_verify_missing_keys_option(pristine: Written) -> None:
    """verify without --keys is a usage error (exit 2)."""
    proc = run("verify", str(pristine.path))
    assert proc.returncode == 2 and "--keys" in proc.stderr and "Traceback" not in proc.stderr


def test_verify_json_output_parses(pristine: Written, shared_keys: Path) -> None:
    """verify --format json prints one JSON report; a pristine archive exits 0 and says verified."""
    proc = run("verify", "--keys", str(shared_keys), "--format", "json", str(pristine.path))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["result"] == "verified"
    assert [s["stream_id"] for s in doc["streams"]] == [pristine.stream_id]


@pytest.mark.parametrize("command", [["verify", "--keys", "KEYS", "ARCHIVE"], ["catalog"]], ids=["verify", "catalog"])
def test_output_into_a_closed_pipe(pristine: Written, shared_keys: Path, command: list[str]) -> None:
    """Writing into a pipe whose reader is gone (`| head`) keeps the exit code and prints nothing on stderr."""
    args = [str(shared_keys) if a == "KEYS" else str(pristine.path) if a == "ARCHIVE" else a for a in command]
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run([sys.executable, "-m", "otel_audit.cli", *args], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=120, env=child_env(), check=False)
    finally:
        os.close(write_end)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


def test_verify_private_keys_never_printed(tmp_path: Path) -> None:
    """A keys folder holding private keys verifies an archive without printing any private key."""
    d = tmp_path / "keys"
    keys.generate(d, "k")
    archive = tmp_path / "a.jsonl"
    cfg = tmp_path / "audit.yaml"
    cfg.write_text(config_text(d, archive, tmp_path / "state"))
    with otel_audit.configure(cfg) as audit:
        audit.logger.login_succeeded("alice")
    proc = run("verify", "--keys", str(d), str(archive))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    pem = (d / "private" / "k.pem").read_text()
    assert pem.splitlines()[1] not in proc.stdout + proc.stderr and "PRIVATE" not in proc.stdout


@pytest.mark.parametrize("mode", ["required", "off"])
def test_version_names_the_active_integrity_core(mode: str) -> None:
    """`otel-audit --version` says which integrity core verifies and signs: the native module (and where it is
    installed) or pure Python (and why); OTEL_AUDIT_NATIVE chooses."""
    out = subprocess.run([sys.executable, "-m", "otel_audit.cli", "--version"], capture_output=True, text=True,
                         timeout=60, env={**child_env(), "OTEL_AUDIT_NATIVE": mode})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == f"otel-audit {otel_audit.__version__}", out.stdout
    if mode == "required":
        assert lines[1].startswith("integrity core: native 0.1.0 (") and "otel_audit_native" in lines[1], out.stdout
    else:
        assert lines[1] == "integrity core: pure Python (OTEL_AUDIT_NATIVE=off)", out.stdout


def test_a_bad_native_choice_is_a_clear_error() -> None:
    """OTEL_AUDIT_NATIVE takes auto, off or required; anything else is named, never a traceback."""
    out = subprocess.run([sys.executable, "-m", "otel_audit.cli", "--version"], capture_output=True, text=True,
                         timeout=60, env={**child_env(), "OTEL_AUDIT_NATIVE": "fast"})
    assert "Traceback" not in out.stderr
    assert "OTEL_AUDIT_NATIVE='fast': use auto, off or required" in out.stdout + out.stderr
