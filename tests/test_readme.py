"""The README as a newcomer follows it: the quick start of "In your own project" run exactly as written, in a
fresh folder with a clean environment (no venv on PATH, no OTEL_* variables), installing this checkout into a
new virtualenv; and the generated parts (the helper table, docs/events.md) current with the code.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_packaging import clean_env, run

from otel_audit import reference

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.S | re.M)


def section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else len(text)]


def blocks(title: str) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(section(title))]


def test_generated_reference_is_current() -> None:
    """The README's helper table and docs/events.md are what `python -m otel_audit.reference` makes now."""
    old = reference.stale(ROOT)
    assert not old, f"out of date: {[str(p) for p in old]}; run: .venv/bin/python -m otel_audit.reference"


def test_reference_with_a_root_that_is_not_a_checkout_is_a_usage_error(tmp_path: Path) -> None:
    """`python -m otel_audit.reference --root <not a checkout>` exits 2 with one line naming README.md."""
    r = subprocess.run([sys.executable, "-m", "otel_audit.reference", "--check", "--root", str(tmp_path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0 and "README.md" in r.stderr and "--root" in r.stderr, r.stderr


def test_every_public_helper_is_in_the_readme() -> None:
    """Each AuditLogger helper (public method naming its event) has a row; each row names a real helper."""
    names = {name for name, _, _ in reference.helpers()}
    assert len(names) >= 9
    text = section("Using it")
    table = text[text.index(reference.HELPERS_START):text.index(reference.HELPERS_END)]
    rows = set(re.findall(r"^\| `(\w+)` \| `", table, re.M))
    assert rows == names


@pytest.mark.slow
def test_quick_start_runs_as_written_in_a_fresh_folder(tmp_path: Path) -> None:
    """Install into a new venv, make keys, write audit.yaml and app.py, check, run, verify: every command
    exits 0 and verify prints the result the README shows."""
    kinds = blocks("In your own project")
    sh = [b for k, b in kinds if k == "sh"]
    (yaml_text,) = [b for k, b in kinds if k == "yaml"]
    (app_text,) = [b for k, b in kinds if k == "python"]
    setup, use = sh[0], sh[1]
    assert "/path/to/otel-audit" in setup and setup.lstrip().startswith("python3 -m venv .venv")

    src = tmp_path / "otel-audit"  # a copy, so pip's in-tree build leaves nothing in the checkout
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache",
        ".mypy_cache", ".hypothesis", "demo-out", "audit-demo"))
    project = tmp_path / "my-service"
    project.mkdir()
    (project / "audit.yaml").write_text(yaml_text, encoding="utf-8")
    (project / "app.py").write_text(app_text, encoding="utf-8")
    env = clean_env(project / ".venv")
    env["PATH"] = env["PATH"].split(":", 1)[1]  # not even the new venv: the commands name it themselves
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = ":".join(p for p in env["PATH"].split(":") if p != venv_bin)

    script = setup.replace("/path/to/otel-audit", str(src))
    proc = run(["bash", "-euo", "pipefail", "-c", script], cwd=project, env=env)
    assert proc.returncode == 0, f"setup block failed:\n{script}\n{proc.stdout}\n{proc.stderr}"
    assert (project / "keys" / "keyring.json").is_file()

    outputs = []
    for line in use.strip().splitlines():
        cmd, _, comment = line.partition("#")
        proc = subprocess.run(["bash", "-c", cmd], cwd=project, env=env, capture_output=True, text=True,
                              timeout=120, check=False)
        assert proc.returncode == 0, f"{cmd.strip()} failed:\n{proc.stdout}\n{proc.stderr}"
        outputs.append((cmd.strip(), comment.strip(), proc.stdout))
    check, app, verify = outputs
    assert "audit.yaml: OK" in check[2]
    assert check[1].startswith("OK")
    shown = verify[1]
    assert shown.startswith("result: VERIFIED") and shown in verify[2], (shown, verify[2])
    archive = (project / "archive" / "audit.jsonl").read_text(encoding="utf-8")
    assert "sk-live-1234567890abcdef" not in archive and "[REDACTED:api_key]" in archive
    assert (project / "spool").is_dir() and (project / "state").is_dir()


def test_wheel_name_in_the_readme_is_the_one_pip_builds() -> None:
    """The install alternatives name the wheel file `pip wheel` makes of this version."""
    version = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert version is not None
    alternatives = [b for k, b in blocks("In your own project") if k == "sh"][2]
    assert f"otel_audit-{version.group(1)}-py3-none-any.whl" in alternatives
    assert "pip wheel --no-deps /path/to/otel-audit" in alternatives


def test_the_audit_service_block_runs_as_written(tmp_path: Path) -> None:
    """The README's audit service walk-through, as a shell script from a checkout's folder (the venv linked in),
    on free ports: the demo's records go in, the queries answer, the proof checks, verify --store verifies."""
    from collector import free_port

    (script,) = [b for k, b in blocks("The audit service") if k == "sh"]
    http, grpc = free_port(), free_port()
    script = script.replace("127.0.0.1:4318", f"127.0.0.1:{http}").replace("127.0.0.1:4317", f"127.0.0.1:{grpc}")
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parent.parent)
    proc = subprocess.run(["timeout", "300", "bash", "-euo", "pipefail", "-c", script], cwd=tmp_path,
                          capture_output=True, text=True, timeout=320, check=False)
    out = proc.stdout
    assert proc.returncode == 0, f"{out[-3000:]}\n{proc.stderr[-3000:]}"
    assert '"state":"closed"' in out and '"failed":0' in out
    assert '"event":"security.' in out
    assert "PROVEN: " in out and (tmp_path / "event.tlog-proof").is_file()
    table = [ln for ln in out.splitlines() if ln.startswith(("TIME ", "20"))]
    assert table[0].split()[:3] == ["TIME", "EVENT", "OUTCOME"]  # otel-audit query
    assert any("authentication.login.failed" in ln and " failure " in ln for ln in table[1:]), out[-3000:]
    assert '{"total":' in out and '"facets":{"action":{"values":[{"value":' in out  # /v1/facets
    assert "result: VERIFIED - all 449 record(s) proven in 2 stream(s)" in out
