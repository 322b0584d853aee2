"""Archives written before a change keep verifying: tests/data/v1 was written by the pipeline of
2026-12-02, before issue 8's strict decoding and checks (tests/tools/make_v1_archive.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import child_env

DATA = Path(__file__).parent / "data" / "v1"


def test_v1_archive_still_verifies() -> None:
    """Two streams of one producer (a clean restart), 45 events and 4 checkpoints each, all proven."""
    cmd = [sys.executable, "-m", "otel_audit.cli", "verify", "--keys", str(DATA / "keyring.json"),
           "--format", "json", str(DATA / "audit.jsonl.gz")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=child_env(), check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["result"] == "verified"
    streams = doc["streams"]
    assert [s["status"] for s in streams] == ["verified", "verified"]
    assert [(s["records"], s["sealed"], s["state"]) for s in streams] == [(49, 49, "closed")] * 2
    assert streams[1]["predecessor"] == streams[0]["stream_id"]
