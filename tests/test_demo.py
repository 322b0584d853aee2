"""`otel-audit demo`: the simulated LLM gateway, run as a real child process into a temp folder.

The demo writes keys, a config, and a signed archive, then verifies it; these tests verify its
output again with the public keys alone (`otel-audit verify`, another child process), tamper
with it, and look for secrets that must not be there. Starts a few Python processes; no network.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Archive, child_env, is_checkpoint, seq_of, set_attr


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in child_env().items() if not k.startswith("OTEL_AUDIT_")}
    return subprocess.run([sys.executable, "-m", "otel_audit.cli", *args], capture_output=True, text=True,
                          timeout=180, env=env, check=False)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """One demo run into a fresh folder, shared read-only by the tests of this module."""
    out = tmp_path_factory.mktemp("demo") / "audit-demo"
    return out, cli("demo", "--out", str(out))


def test_demo_runs_and_prints_a_summary(demo: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    """The demo exits 0, prints what it captured and that both streams verified, and leaves archive and public keys."""
    out, proc = demo
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "captured:" in proc.stdout and "proven in 2 stream(s)" in proc.stdout
    assert "otel-audit verify --keys" in proc.stdout
    assert (out / "keys" / "keyring.json").is_file()
    assert any((out / "archive").iterdir())
    assert "Traceback" not in proc.stderr


def test_demo_also_runs_the_service_queries_it_and_checks_a_proof(
        demo: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    """The demo starts `otel-audit serve`, sends it the archive, and shows queries whose counts are the archive's
    own, and one proof checked offline; the store it leaves verifies with the public keys alone."""
    out, proc = demo
    assert proc.returncode == 0, proc.stdout + proc.stderr
    archive = [json.loads(ln) for f in sorted((out / "archive").rglob("*")) if f.is_file()
               for ln in f.read_text().splitlines() if ln.strip()]
    records = [r for doc in archive for rl in doc["resourceLogs"] for sl in rl["scopeLogs"] for r in sl["logRecords"]]

    def attr(r: dict[str, object], key: str) -> object:
        for a in r.get("attributes", []):  # type: ignore[union-attr]
            if a["key"] == key:
                return next(iter(a["value"].values()))
        return None

    failed = sum(1 for r in records if str(r.get("eventName", "")).startswith("authentication.")
                 and attr(r, "audit.outcome") == "failure")
    security = sum(1 for r in records if attr(r, "audit.category") == "security")
    assert f"outcome=failure  -> {failed} event(s)" in proc.stdout, proc.stdout
    assert f"category=security  -> {security} event(s)" in proc.stdout, proc.stdout
    assert re.search(r"/proof  -> checked offline: PROVEN, leaf \d+ of a tree of \d+ signed by the gateway, "
                     r"witnessed by audit-service", proc.stdout), proc.stdout
    store = out / "service" / "audit.db"
    r = cli("verify", "--keys", str(out / "keys"), "--witness-keys", str(out / "service" / "keys"), "--store",
            f"sqlite:///{store}", "--allow-open")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "otel-audit-service" in r.stdout  # the service's own stream (the demo's queries) verified too


def test_demo_archive_verifies_with_public_keys_alone(demo: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    """`otel-audit verify --keys DIR/keys DIR/archive` exits 0."""
    out, _ = demo
    proc = cli("verify", "--keys", str(out / "keys"), str(out / "archive"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "result: VERIFIED" in proc.stdout


def test_demo_public_keys_hold_no_private_key(demo: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    """DIR/keys/ (what an auditor gets) holds public keys only."""
    out, _ = demo
    files = [p for p in (out / "keys").rglob("*") if p.is_file()]
    assert [p.name for p in files] == ["keyring.json"]
    for p in files:
        assert "PRIVATE" not in p.read_text()


def test_demo_archive_holds_no_secret_or_pii(demo: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    """No secret from the injection prompts and no e-mail or phone number of the demo reaches the archive."""
    out, _ = demo
    text = "".join(p.read_text() for p in (out / "archive").rglob("*.jsonl"))
    assert "prompt_injection" in text  # the events are there, redacted
    for secret in ("sk-proj-", "hunter2", "alice@example.com", "415 555 0100", "+1 415"):
        assert secret not in text, secret
    assert not re.search(r"[\w.]+@example\.com", text)
    hmac_key = (out / "signing-keys" / "hmac.key").read_text().strip()
    assert hmac_key.split(":", 1)[1] not in text


def test_demo_tampered_attribute_exits_1_naming_the_seq(
    demo: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    """Changing one attribute of one record in a copy of the archive makes verify exit 1 and name that seq."""
    out, _ = demo
    (src,) = list((out / "archive").glob("*.jsonl"))
    archive = Archive.load(src)
    events = [r for r in archive.records() if not is_checkpoint(r)]
    victim = events[len(events) // 2]
    seq = seq_of(victim)
    set_attr(victim, "user.id", {"stringValue": "someone-else"})
    copy = tmp_path / "archive"
    copy.mkdir()
    archive.save(copy / "audit.jsonl")
    proc = cli("verify", "--keys", str(out / "keys"), str(copy))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"modified: seq {seq}" in proc.stdout
    doc = json.loads(cli("verify", "--keys", str(out / "keys"), "--format", "json", str(copy)).stdout)
    assert [s["modified"] for s in doc["streams"] if s["modified"]] == [[seq]]


def test_demo_runs_twice_into_the_same_folder(tmp_path: Path) -> None:
    """A second demo run into a folder the demo made replaces it and verifies again."""
    out = tmp_path / "d"
    assert cli("demo", "--out", str(out)).returncode == 0
    second = cli("demo", "--out", str(out), "--users", "2")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "(2 users)" in second.stdout
    proc = cli("verify", "--keys", str(out / "keys"), "--format", "json", str(out / "archive"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(json.loads(proc.stdout)["streams"]) == 2  # the second run's two streams; the first run's are gone


def test_demo_refuses_a_foreign_folder(tmp_path: Path) -> None:
    """A non-empty folder the demo did not make is refused with exit 2 and left untouched."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    proc = cli("demo", "--out", str(out))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and str(out) in proc.stderr and "--out" in proc.stderr
    assert [p.name for p in out.iterdir()] == ["thesis.tex"]
    f = tmp_path / "a-file"
    f.write_text("x")
    proc = cli("demo", "--out", str(f))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and f.read_text() == "x"


def test_demo_config_checks_and_moves(demo: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    """The config the demo wrote passes check-config, and uses paths relative to its folder."""
    out, _ = demo
    proc = cli("check-config", str(out / "audit.yaml"))
    assert proc.returncode == 0, proc.stderr
    assert str(out) not in (out / "audit.yaml").read_text()
