"""The audit service as a real process for tests: `otel-audit serve --config` started on a free loopback port,
talked to over HTTP, stopped with SIGTERM (or killed)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import orjson
import requests
import yaml

CLI = str(Path(sys.executable).with_name("otel-audit"))
_LISTENING = re.compile(r"listening on (http://[^ ]+) ")


class ServiceProcess:
    def __init__(self, config: Path, env: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.log = config.parent / "serve.log"

    def start(self, timeout: float = 30) -> ServiceProcess:
        out = self.log.open("ab")
        self.proc = subprocess.Popen([CLI, "serve", "--config", str(self.config)], stdout=out,
                                     stderr=subprocess.STDOUT, env=self.env)
        out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log.read_text(errors="replace")
            found = list(_LISTENING.finditer(text))
            if found and self.proc.poll() is None:
                self.url = found[-1].group(1)
                try:
                    requests.get(self.url + "/healthz", timeout=2)
                    return self
                except requests.ConnectionError:
                    pass
            if self.proc.poll() is not None:
                raise AssertionError(f"otel-audit serve exited {self.proc.returncode}: {text[-2000:]}")
            time.sleep(0.05)
        raise AssertionError(f"otel-audit serve did not start: {self.log.read_text(errors='replace')[-2000:]}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=60)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def post_json(self, body: bytes, **headers: str) -> requests.Response:
        return requests.post(self.url + "/v1/logs", data=body,
                             headers={"Content-Type": "application/json", **headers}, timeout=30)

    def get(self, path: str, params: Any = None, **headers: str) -> requests.Response:
        return requests.get(self.url + path, params=params, headers=headers, timeout=30)

    def events(self, params: Mapping[str, Any] | list[tuple[str, str]] | None = None, **headers: str
               ) -> list[dict[str, Any]]:
        """Every event a query returns, following next_cursor to the end."""
        out: list[dict[str, Any]] = []
        base = list(params.items()) if isinstance(params, Mapping) else list(params or [])
        if not any(k == "limit" for k, _ in base):
            base.append(("limit", "1000"))
        cursor = None
        while True:
            r = self.get("/v1/events", base + ([("cursor", cursor)] if cursor else []), **headers)
            assert r.status_code == 200, r.text
            page = r.json()
            out += page["events"]
            cursor = page["next_cursor"]
            if not page["events"] or cursor is None:
                return out

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.stop()


def write_config(folder: Path, keys: Path, **extra: Any) -> Path:
    cfg = {"http": {"endpoint": "127.0.0.1:0"}, "store": "audit.db", "keys": str(keys), **extra}
    path = folder / "service.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def lines(path: Path) -> Iterator[bytes]:
    for line in path.read_bytes().splitlines():
        if line.strip():
            yield line


def records_of(path: Path) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(resource attributes, decoded record fields) of every record of an OTLP/JSON lines archive."""
    from otel_audit.decoding import decode_line

    for line in lines(path):
        for resource, _scope, f in decode_line(line):
            yield resource, {"event": f.event_name, "attributes": f.attributes, "body": f.body,
                             "time": f.time_unix_nano}


def post_archive(svc: ServiceProcess, path: Path) -> int:
    n = 0
    for line in lines(path):
        r = svc.post_json(line)
        assert r.status_code == 200, r.text
        assert orjson.loads(r.content) == {}, r.text
        n += 1
    return n


class Backend(NamedTuple):
    """A store for a test's service: ``sqlite`` (a file in the test's folder) or ``postgres`` (a fresh database of
    the session's PostgreSQL server, tests/pg_support.py; the service connects as the INSERT/SELECT role)."""

    name: str
    url: str  # what service.yaml's store: says
    verify_url: str  # what otel-audit verify --store reads
    folder: Path
    db: Any = None  # pg_support.Database
    server: Any = None  # pg_support.PgServer

    @staticmethod
    def make(name: str, folder: Path, request: Any) -> Backend:
        if name == "sqlite":
            return Backend(name, "audit.db", f"sqlite:///{folder / 'audit.db'}", folder)
        server = request.getfixturevalue("pg_server")
        db = server.database()
        return Backend(name, db.service_url, db.service_url, folder, db, server)

    @property
    def ph(self) -> str:
        return "?" if self.name == "sqlite" else "%s"

    def insider(self, sql: str, params: Any = None) -> list[Any]:
        """An insider with write access to the store (the SQLite file; PostgreSQL's owner role): drops / disables
        the append-only triggers, then runs `sql` (``{ph}`` marks parameters)."""
        sql = sql.replace("{ph}", self.ph)
        if self.name == "sqlite":
            import sqlite3

            con = sqlite3.connect(self.folder / "audit.db")
            for t in ("events_no_update", "events_no_delete"):
                con.execute(f"DROP TRIGGER IF EXISTS {t}")
            rows = con.execute(sql, params or ()).fetchall()
            con.commit()
            con.close()
            return rows
        return list(self.server.owner(self.db, "ALTER TABLE events DISABLE TRIGGER USER", sql,
                                      params=params))

    def read(self, sql: str, params: Any = None) -> list[Any]:
        """Rows of a query, read as the owner (PostgreSQL) or from the file (SQLite), triggers untouched."""
        sql = sql.replace("{ph}", self.ph)
        if self.name == "sqlite":
            import sqlite3

            con = sqlite3.connect(self.folder / "audit.db")
            rows = con.execute(sql, params or ()).fetchall()
            con.close()
            return rows
        return list(self.server.owner(self.db, sql, params=params))
