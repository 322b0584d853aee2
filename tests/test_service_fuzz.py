"""A fuzz run over the service's receiver and API: schemathesis (the CLI, as a user runs it) against the OpenAPI
document the running service serves, over real loopback sockets, on a store seeded with the demo's archive.

What must hold for every generated request (schemathesis checks): never a 5xx; every status code, content type,
header and JSON body one the document declares for it; and, run without a token, no operation answers anything
but 401 (its `ignored_auth` check). Parameters whose meaning a schema cannot state (an IP or CIDR, an RFC 3339
time, a SCIM expression) are answered 400 for most generated strings: that is the service's contract, so the
two checks that would call such a 400 "schema-valid data rejected" (and a lenient empty value "schema-violating
data accepted") are not run; tests/test_attack_service.py and tests/test_service_api.py pin those 400s.
"""

from __future__ import annotations

import hashlib
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from service_support import ServiceProcess, write_config

pytestmark = pytest.mark.slow

ST = str(Path(sys.executable).with_name("schemathesis"))
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,"
          "response_headers_conformance")


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServiceProcess, str]]:
    root = tmp_path_factory.mktemp("fuzz")
    demo = root / "demo"
    r = subprocess.run([sys.executable, "-m", "otel_audit.cli", "demo", "--no-service", "--out", str(demo)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    from otel_audit import keys

    keys.generate(root / "witness", "witness")
    token = "oa_" + secrets.token_urlsafe(32)
    folder = root / "svc"
    folder.mkdir()
    svc = ServiceProcess(write_config(folder, demo / "keys", witness_keys=str(root / "witness"), tokens=[
        {"name": "fuzzer", "sha256": hashlib.sha256(token.encode()).hexdigest(),
         "scopes": ["ingest", "audit:read", "audit:export", "audit:admin"]}]))
    svc.start()
    try:
        for f in sorted((demo / "archive").rglob("*.jsonl")):
            post_archive_with(svc, f, token)
        yield svc, token
    finally:
        svc.stop()


def post_archive_with(svc: ServiceProcess, path: Path, token: str) -> None:
    for line in path.read_bytes().splitlines():
        if line.strip():
            r = svc.post_json(line, Authorization=f"Bearer {token}")
            assert r.status_code == 200, r.text


def run_st(svc: ServiceProcess, *args: str, seconds: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ST, "run", f"{svc.url}/v1/openapi.json", "--no-color", "--seed", "20261203",
                           "--max-time", str(seconds), "--request-timeout", "30", "--workers", "1", *args],
                          capture_output=True, text=True, timeout=seconds + 240)


def test_every_generated_request_gets_a_declared_answer_never_a_5xx(fuzzed: tuple[ServiceProcess, str]) -> None:
    svc, token = fuzzed
    r = run_st(svc, "-H", f"Authorization: Bearer {token}", "--checks", CHECKS, "--max-examples", "25",
               "--phases", "coverage,fuzzing", seconds=150)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    assert "Tested: " in r.stdout, r.stdout[-2000:]
    assert token not in r.stdout + r.stderr
    health = svc.get("/healthz").json()
    assert health["status"] == "ok", health  # the service is still up and answering


def test_without_a_token_every_operation_is_refused(fuzzed: tuple[ServiceProcess, str]) -> None:
    svc, _token = fuzzed
    r = run_st(svc, "--checks", "ignored_auth", "--max-examples", "5", "--phases", "fuzzing", seconds=90)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]

