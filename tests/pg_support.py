"""A real PostgreSQL server for tests, from Debian's packages: initdb and pg_ctl run as the `postgres` OS user
(initdb refuses root) on a data folder of its own under /tmp, listening on a free loopback port and a unix socket
in that folder; stopped and removed at the end.

Two roles, as docs/service.md §3 tells an operator to set up: `audit_owner` owns the tables (migrations run as
it), `audit_service` is what the service connects as (INSERT and SELECT only). Each test gets a database of its
own, copied from a template the migrations ran in once (CREATE DATABASE ... TEMPLATE is fast)."""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

OWNER, OWNER_PASSWORD = "audit_owner", "owner-pw-7f3a9c"
SERVICE, SERVICE_PASSWORD = "audit_service", "service-pw-2b8e1d"
TEMPLATE = "otel_audit_template"


def bindir() -> Path:
    """The server binaries' folder: pg_config --bindir, else /usr/lib/postgresql/<newest>/bin."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    try:
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True).stdout.strip()
        if (Path(out) / "postgres").exists():
            return Path(out)
    except (OSError, subprocess.CalledProcessError):
        pass
    raise RuntimeError("PostgreSQL server binaries not found: apt-get install -y postgresql (tests/run.sh does it)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Database(NamedTuple):
    name: str
    service_url: str  # what the service connects with: INSERT / SELECT only
    owner_url: str  # the tables' owner (migrations, and the insider of the tamper tests)


_PREFIX = "otel-audit-pg-"


def _reap_stale(bin_dir: Path) -> None:
    """Servers of earlier test sessions that were killed before they could stop theirs (their pid file names a
    process that is gone): stopped and removed. Only this harness's folders are looked at."""
    for root in Path(tempfile.gettempdir()).glob(_PREFIX + "*"):
        try:
            owner = int((root / "owner.pid").read_text())
        except (OSError, ValueError):
            continue
        try:
            os.kill(owner, 0)
            continue  # its session is alive
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        if (root / "data" / "postmaster.pid").exists():
            run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
            subprocess.run([*run_as, str(bin_dir / "pg_ctl"), "-D", str(root / "data"), "-m", "immediate", "-w",
                            "stop"], capture_output=True, timeout=60, check=False)
        shutil.rmtree(root, ignore_errors=True)


class PgServer:
    def __init__(self) -> None:
        self.bin = bindir()
        _reap_stale(self.bin)
        self.root = Path(tempfile.mkdtemp(prefix=_PREFIX))
        (self.root / "owner.pid").write_text(str(os.getpid()))
        self.data = self.root / "data"
        self.sock = self.root / "sock"
        self.sock.mkdir()
        self.log = self.root / "server.log"
        self.port = free_port()
        self._names = itertools.count(1)
        self.root_user = os.geteuid() == 0  # initdb refuses root: then the server runs as the postgres OS user
        if self.root_user:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(self.sock, "postgres", "postgres")
        os.chmod(self.root, 0o755)

    def _as_postgres(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        run_as = ["runuser", "-u", "postgres", "--"] if self.root_user else []
        return subprocess.run([*run_as, *cmd], capture_output=True, text=True, check=check, timeout=120,
                              cwd=self.root)

    def start(self) -> PgServer:
        if not self.data.exists():
            self._as_postgres(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--encoding=UTF8",
                              "--locale=C.UTF-8", "--auth-local=trust", "--auth-host=scram-sha-256")
            with (self.data / "postgresql.conf").open("a") as f:
                f.write(f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                        f"unix_socket_directories = '{self.sock}'\nshared_buffers = 64MB\nmax_connections = 120\n"
                        "fsync = on\nsynchronous_commit = on\n")
            started = True
        else:
            started = False
        self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                          "start")
        if started:
            self.admin(f"CREATE ROLE {OWNER} LOGIN PASSWORD '{OWNER_PASSWORD}'",
                       f"CREATE ROLE {SERVICE} LOGIN PASSWORD '{SERVICE_PASSWORD}'",
                       f"CREATE DATABASE {TEMPLATE} OWNER {OWNER}")
            # as an operator does it (docs/service.md §3): the owner migrates, the service's role is granted
            cli = str(Path(sys.executable).with_name("otel-audit"))
            subprocess.run([cli, "store-migrate", "--store", self.url(TEMPLATE, OWNER, OWNER_PASSWORD),
                            "--grant", SERVICE], check=True, capture_output=True, text=True, timeout=120)
        return self

    def stop(self, mode: str = "fast") -> None:
        self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def running(self) -> bool:
        return self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "status", check=False
                                 ).returncode == 0

    def close(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, db: str, user: str, password: str) -> str:
        return f"postgresql://{user}:{password}@127.0.0.1:{self.port}/{db}"

    def admin(self, *statements: str, db: str = "postgres") -> list[Any]:
        """Run statements as the superuser over the unix socket; the last one's rows."""
        import psycopg

        rows: list[Any] = []
        with psycopg.connect(host=str(self.sock), port=self.port, user="postgres", dbname=db,
                             autocommit=True) as con:
            for s in statements:
                cur = con.execute(s)  # type: ignore[arg-type]
                rows = cur.fetchall() if cur.description else []
        return rows

    def database(self) -> Database:
        """A fresh database with the current schema, owned by the owner role."""
        name = f"t{os.getpid()}_{next(self._names)}_{int(time.time() * 1000) % 100000}"
        self.admin(f"CREATE DATABASE {name} OWNER {OWNER} TEMPLATE {TEMPLATE}")
        return Database(name, self.url(name, SERVICE, SERVICE_PASSWORD), self.url(name, OWNER, OWNER_PASSWORD))

    def owner(self, db: Database, *statements: str, params: Any = None) -> list[Any]:
        """Run statements as the owner role (an insider with the owner's password) in one transaction; the last
        one's rows (`params` are the last one's)."""
        import psycopg

        rows: list[Any] = []
        with psycopg.connect(db.owner_url) as con:
            for i, s in enumerate(statements):
                cur = con.execute(s, params if i == len(statements) - 1 else None)  # type: ignore[arg-type]
                rows = cur.fetchall() if cur.description else []
        return rows
