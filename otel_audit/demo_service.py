"""The demo's second half: the audit service started as its own process, the demo's archive sent to it over
OTLP/HTTP, a few queries and one inclusion proof checked offline, and what each showed printed.

Everything goes over loopback HTTP to a real `otel-audit serve`, as a user's collector and console would; the
service is stopped (SIGTERM) before the demo returns, and its store stays in the demo folder for the commands
the demo prints.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from otel_audit.errors import AuditError

#: how long the demo waits for the service to start, and then for its streams to be proven
START_TIMEOUT_S = 60.0
PROVEN_TIMEOUT_S = 60.0


class DemoServiceError(AuditError):
    """The demo's service did not start or did not answer as it should."""


def run(out: Path, public_keys: Path, archive: Path, cli: str, w: Callable[[str], Any]) -> None:
    """Start the service on `out`/service, send it `archive`, query it, prove one event; raise DemoServiceError."""
    import requests
    import yaml

    from otel_audit import keys
    from otel_audit.filemodes import make_dirs, open_new, write_private
    from otel_audit.keys import Keyring
    from otel_audit.service import proof as tlog

    svc_dir = out / "service"
    make_dirs(svc_dir)
    witness = svc_dir / "keys"
    keys.generate(witness, "audit-service")
    cfg = svc_dir / "service.yaml"
    write_private(cfg, yaml.safe_dump({"http": {"endpoint": "127.0.0.1:0"}, "store": "audit.db",
                                       "keys": str(public_keys), "witness_keys": str(witness)}).encode())
    log = svc_dir / "serve.log"
    with os.fdopen(open_new(log, os.O_WRONLY | os.O_APPEND), "ab") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "otel_audit.cli", "serve", "--config", str(cfg)],
                                stdout=subprocess.PIPE, stderr=sink, cwd=svc_dir, env={**os.environ})
    try:
        url = _listening(proc, log)
        http = requests.Session()
        sent = 0
        for line in _lines(archive):
            r = http.post(url + "/v1/logs", data=line, headers={"Content-Type": "application/json"}, timeout=30)
            if r.status_code != 200:
                raise DemoServiceError(f"the service refused a request of the archive: {r.status_code} {r.text[:300]}")
            sent += 1
        streams = _proven(http, url)
        w(f"\naudit service: {url} (store {svc_dir / 'audit.db'})\n")
        w(f"  received the archive over OTLP/HTTP ({sent} requests) and verified it on ingest: "
          + ", ".join(f"stream {s['id'][:8]}.. {s['proven']} of {s['records']} proven ({s['state']})"
                      for s in streams) + "\n")
        queries = [("failed logins and lockouts", {"action": "authentication.*", "outcome": "failure"}),
                   ("alice's activity", {"actor": "alice"}),
                   ("from the attacker's network", {"client.address": "198.51.100.0/24"}),
                   ("security events", {"category": "security"})]
        first: dict[str, Any] | None = None
        for label, params in queries:
            page = _get(http, url + "/v1/events", {**params, "limit": "1000"})
            events = page["events"]
            if first is None and events:
                first = events[0]
            shown = ", ".join(sorted({e["event"] for e in events}))[:160]
            query = "&".join(f"{k}={v}" for k, v in params.items())
            w(f"  GET /v1/events?{query}  -> {len(events)} event(s) ({label}){': ' + shown if shown else ''}\n")
        facets = _get(http, url + "/v1/facets", {"field": "category", "limit": "10"})
        counts = ", ".join(f"{v['value']} {v['count']}" for v in facets["facets"]["category"]["values"])
        w(f"  GET /v1/facets?field=category  -> {facets['total']} events: {counts}\n")
        if first is None:
            raise DemoServiceError("no query returned an event")
        r = http.get(f"{url}/v1/events/{first['id']}/proof", timeout=30)
        if r.status_code != 200:
            raise DemoServiceError(f"the proof of {first['id']} was refused: {r.status_code} {r.text[:300]}")
        proof_file = svc_dir / f"{first['id']}.tlog-proof"
        write_private(proof_file, r.content)
        got = tlog.check(r.text, Keyring.load(public_keys), Keyring.load(witness))
        w(f"  GET /v1/events/{first['id']}/proof  -> checked offline: PROVEN, leaf {got.seq} of a tree of "
          f"{got.size} signed by the gateway, witnessed by {', '.join(got.witnessed_by)}\n")
        q = shlex.quote
        w("\nrun the service yourself, on the same store:\n")
        w(f"  {cli} serve --config {q(str(cfg))}\n")
        w("then, with the URL it prints:\n")
        w(f"  {cli} query --url URL --actor alice\n")
        w(f"  {cli} prove {first['id']} --url URL --keys {q(str(public_keys))} --witness-keys {q(str(witness))}\n")
        w(f"  {cli} verify --keys {q(str(public_keys))} --witness-keys {q(str(witness))} --store "
          f"{q('sqlite:///' + str(svc_dir / 'audit.db'))} --allow-open\n")
    finally:
        _stop(proc)


def _lines(path: Path) -> list[bytes]:
    out: list[bytes] = []
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        out.extend(ln for ln in f.read_bytes().splitlines() if ln.strip())
    return out


def _listening(proc: subprocess.Popen[bytes], log: Path) -> str:
    """The URL the service prints once it listens (its first line of output)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        line = proc.stdout.readline().decode("utf-8", "replace")
        if not line:
            break
        if "listening on " in line:
            return line.split("listening on ", 1)[1].split(" ", 1)[0]
    tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
    raise DemoServiceError(f"the audit service did not start (its log, {log}):\n{tail}")


def _get(http: Any, url: str, params: dict[str, str]) -> dict[str, Any]:
    r = http.get(url, params=params, timeout=30)
    if r.status_code != 200:
        raise DemoServiceError(f"GET {url}: {r.status_code} {r.text[:300]}")
    doc: dict[str, Any] = r.json()
    return doc


def _proven(http: Any, url: str) -> list[dict[str, Any]]:
    """The gateway's streams, once each is proven whole (verify on ingest is synchronous; this waits for the
    last checkpoints of a stream that arrive in a later request)."""
    deadline = time.monotonic() + PROVEN_TIMEOUT_S
    while True:
        streams = [s for s in _get(http, url + "/v1/streams", {})["streams"] if s["service"] != "otel-audit-service"]
        if streams and all(s["proven"] == s["records"] for s in streams):
            return streams
        if time.monotonic() > deadline:
            raise DemoServiceError(f"the gateway's streams were not proven: {streams}")
        time.sleep(0.2)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()
