"""The built distribution: what `pip wheel .` puts in the wheel, and that the wheel works on its own.

Builds the wheel from a copy of the source tree (so stale `build/` leftovers in the checkout can
neither hide a missing file nor leak a removed one), checks its contents, installs it
(not editable) into a fresh virtualenv, then runs the demo and verifies its archive with the
installed `otel-audit` script, from a working directory outside the source tree, so nothing can
be imported from the checkout. Needs the package registry (or pip's cache) for the build backend
and the dependencies; about 15 s with a warm cache.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SUBPACKAGES = ("processors", "exporters", "sources", "verify")
TESTVECTORS = sorted(p.name for p in (ROOT / "otel_audit" / "testvectors").glob("*.json"))


def run(cmd: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command to completion; the caller asserts on the result and shows its output on failure."""
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)


def clean_env(venv: Path) -> dict[str, str]:
    """This process's environment minus whatever could point a child back at the checkout or its venv."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OTEL_AUDIT_", "PYTHON")) and k not in ("VIRTUAL_ENV", "PIP_USER")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One wheel, built by `pip wheel <copy of the tree> --no-deps`."""
    base = tmp_path_factory.mktemp("pkg")
    src = base / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache",
        ".hypothesis", "demo-out", "audit-demo"))
    out = base / "wheelhouse"
    proc = run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "-q", "-w", str(out)], cwd=base)
    assert proc.returncode == 0, f"pip wheel failed:\n{proc.stdout}\n{proc.stderr}"
    wheels = list(out.glob("*.whl"))
    assert len(wheels) == 1, f"expected one wheel in {out}, found {wheels}"
    return wheels[0]


def dist_info(wheel: Path) -> str:
    """The wheel's .dist-info folder, from its file name (`<name>-<version>-<tags>.whl`)."""
    name, version = wheel.name.split("-")[:2]
    return f"{name}-{version}.dist-info"


@pytest.fixture(scope="module")
def names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as z:
        return set(z.namelist())


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel installed (not editable) and its dependencies from the registry."""
    venv = tmp_path_factory.mktemp("clean") / "venv"
    proc = run([sys.executable, "-m", "venv", str(venv)], cwd=venv.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)], cwd=venv.parent,
               env=clean_env(venv))
    assert proc.returncode == 0, f"installing {wheel.name} into a clean venv failed:\n{proc.stdout}\n{proc.stderr}"
    return venv


def test_wheel_has_the_typing_marker_license_and_test_vectors(wheel: Path, names: set[str]) -> None:
    """py.typed (PEP 561), the Apache-2.0 LICENSE in dist-info, and the conformance vectors are shipped."""
    assert "otel_audit/py.typed" in names
    info = dist_info(wheel)
    licenses = [n for n in names if n.startswith(f"{info}/licenses/")]
    assert licenses == [f"{info}/licenses/LICENSE"], licenses
    for vector in TESTVECTORS:
        assert f"otel_audit/testvectors/{vector}" in names, vector
    assert TESTVECTORS, "no test vectors found in the source tree"


def test_wheel_has_every_subpackage_inside_the_otel_audit_namespace(wheel: Path, names: set[str]) -> None:
    """processors/ and exporters/ (mapped by package-dir) land under otel_audit/, covered by its py.typed;
    nothing else (no top-level processors/exporters/tests) is installed."""
    for sub in SUBPACKAGES:
        assert f"otel_audit/{sub}/__init__.py" in names, sub
    tops = {n.split("/", 1)[0] for n in names}
    assert tops == {"otel_audit", dist_info(wheel)}, tops


def test_wheel_metadata_declares_license_expression_and_classifiers(wheel: Path) -> None:
    """METADATA carries the SPDX license expression, the license file and the Typing :: Typed classifier."""
    with zipfile.ZipFile(wheel) as z:
        meta = z.read(f"{dist_info(wheel)}/METADATA").decode()
    assert "License-Expression: Apache-2.0" in meta
    assert "License-File: LICENSE" in meta
    assert "Classifier: Typing :: Typed" in meta
    license_text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text


@pytest.mark.slow
def test_installed_wheel_imports_from_site_packages_not_the_checkout(installed: Path, tmp_path: Path) -> None:
    """Run from outside the tree, every package resolves inside the clean venv, next to py.typed."""
    code = ("import otel_audit, otel_audit.processors, otel_audit.exporters, otel_audit.sources, otel_audit.verify\n"
            "import sys\n"
            "for m in ('otel_audit', 'otel_audit.processors', 'otel_audit.exporters', 'otel_audit.sources',"
            " 'otel_audit.verify'):\n"
            "    print(sys.modules[m].__file__)\n")
    proc = run([str(installed / "bin" / "python"), "-c", code], cwd=tmp_path, env=clean_env(installed))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    files = [Path(line) for line in proc.stdout.split()]
    pkg = Path(files[0]).parent
    assert pkg.parent.name == "site-packages" and installed in pkg.parents, files
    assert (pkg / "py.typed").is_file()
    for f in files[1:]:
        assert f.parent.parent == pkg, f"{f} is not under the installed {pkg}"
    assert not any(ROOT in f.parents for f in files), files


def test_installed_wheel_runs_the_demo_and_verifies_it(installed: Path, tmp_path: Path) -> None:
    """`otel-audit demo` then `otel-audit verify --keys` from the clean venv: VERIFIED."""
    cli = str(installed / "bin" / "otel-audit")
    env = clean_env(installed)
    out = tmp_path / "d"
    proc = run([cli, "demo", "--out", str(out)], cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run([cli, "verify", "--keys", str(out / "keys"), str(out / "archive")], cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "result: VERIFIED" in proc.stdout


def test_native_wheel_installs_next_to_the_package_and_is_used(installed: Path, tmp_path: Path) -> None:
    """The README's fast path: `bash native/build.sh dist` builds the abi3 wheel of the native core (manylinux2014
    with zig), `pip install --no-index --find-links dist otel-audit-native` adds it to an installed otel-audit,
    `otel-audit --version` then names it, and the demo's archive verifies on it (OTEL_AUDIT_NATIVE=required)
    exactly as in pure Python. Before it is installed, the same venv runs in pure Python."""
    cli = str(installed / "bin" / "otel-audit")
    env = clean_env(installed)
    before = run([cli, "--version"], cwd=tmp_path, env=env)
    assert before.returncode == 0 and "integrity core: pure Python" in before.stdout, before.stdout + before.stderr
    dist = tmp_path / "dist"
    build_env = {**os.environ, "MATURIN": str(Path(sys.executable).with_name("maturin"))}
    proc = run(["bash", str(ROOT / "native" / "build.sh"), str(dist)], cwd=tmp_path, env=build_env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wheels = [p.name for p in dist.glob("otel_audit_native-*.whl")]
    assert len(wheels) == 1 and "-cp310-abi3-" in wheels[0] and "manylinux2014_x86_64" in wheels[0], wheels
    proc = run([str(installed / "bin" / "python"), "-m", "pip", "install", "-q", "--no-index", "--find-links",
                str(dist), "otel-audit-native"], cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    after = run([cli, "--version"], cwd=tmp_path, env=env)
    assert "integrity core: native 0.1.0 (" in after.stdout and str(installed) in after.stdout, after.stdout
    out = tmp_path / "d"
    assert run([cli, "demo", "--out", str(out)], cwd=tmp_path, env=env).returncode == 0
    reports = []
    for mode in ("required", "off"):
        proc = run([cli, "verify", "--keys", str(out / "keys"), "--format", "json", "--no-progress",
                    str(out / "archive")], cwd=tmp_path, env={**env, "OTEL_AUDIT_NATIVE": mode})
        assert proc.returncode == 0, proc.stdout + proc.stderr
        reports.append(proc.stdout)
    assert reports[0] == reports[1]
