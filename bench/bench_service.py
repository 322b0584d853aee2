"""The audit service: ingest over OTLP/HTTP into SQLite next to a raw bulk insert of the same rows, query and
proof latency through the API, store size per event."""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from _common import BenchError, Config, Figures, benchmark, median, write_archive

from otel_audit.keys import Keyring, Signer


def _p95(values: list[float]) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(0.95 * (len(s) - 1))))]


def _start(folder: Path, keyring: Path, store: str = "audit.db") -> tuple[subprocess.Popen[bytes], str]:
    cfg = folder / "service.yaml"
    cfg.write_text(f"http:\n  endpoint: 127.0.0.1:0\nstore: '{store}'\nkeys: {keyring}\n")
    log = folder / "serve.log"
    cli = Path(sys.executable).with_name("otel-audit")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    proc = subprocess.Popen([str(cli), "serve", "--config", str(cfg)], stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if "listening on http://" in text:
            url = text.split("listening on ", 1)[1].split(" ", 1)[0]
            try:
                requests.get(url + "/healthz", timeout=2)
                return proc, url
            except requests.ConnectionError:
                pass
        if proc.poll() is not None:
            raise BenchError(f"otel-audit serve exited: {text[-500:]}")
        time.sleep(0.05)
    proc.kill()
    raise BenchError("otel-audit serve did not start")


def _raw_insert(src: Path, dest: Path, batches: list[int]) -> float:
    """The same rows inserted straight into the same schema (indexes, full-text, synchronous=FULL), one
    transaction per request-sized batch: the floor any store of these columns pays. Records/s."""
    from otel_audit.service.store.sqlite import MIGRATIONS, _statements

    con = sqlite3.connect(src)
    names = [r[1] for r in con.execute("PRAGMA table_info(events)")]
    rows = con.execute(f"SELECT {', '.join(names)} FROM events ORDER BY seq").fetchall()
    texts = [r[0] for r in con.execute("SELECT body FROM events ORDER BY seq")]
    con.close()
    out = sqlite3.connect(dest, isolation_level=None)
    out.execute("PRAGMA page_size=16384")
    out.execute("PRAGMA journal_mode=WAL")
    out.execute("PRAGMA synchronous=FULL")
    for m in MIGRATIONS:
        for stmt in _statements(m):
            out.execute(stmt)
    sql = f"INSERT INTO events ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})"
    start = time.perf_counter()
    i = 0
    for size in batches:
        out.execute("BEGIN")
        out.executemany(sql, rows[i:i + size])
        out.executemany("INSERT INTO events_fts (rowid, text) VALUES (?, ?)",
                        [(r[0], t or "") for r, t in zip(rows[i:i + size], texts[i:i + size], strict=True)])
        out.execute("COMMIT")
        i += size
    dt = time.perf_counter() - start
    out.close()
    return len(rows) / dt


def _ingest(url: str, bodies: list[bytes], total: int) -> float:
    s = requests.Session()
    start = time.perf_counter()
    for b in bodies:
        r = s.post(url + "/v1/logs", data=b, headers={"Content-Type": "application/json"}, timeout=120)
        if r.status_code != 200:
            raise BenchError(f"ingest answered {r.status_code}: {r.text[:300]}")
    rate = total / (time.perf_counter() - start)
    streams = s.get(url + "/v1/streams").json()["streams"]
    if [x["proven"] for x in streams] != [total]:
        raise BenchError(f"the store did not prove every record: {streams}")
    return rate


def _postgres(folder: Path, keyring: Path, bodies: list[bytes], total: int, per_line: list[int]
              ) -> tuple[float, float]:
    """Ingest into PostgreSQL (a real server from Debian's packages on loopback, fsync and synchronous_commit on,
    the service connecting as its INSERT/SELECT role), then a raw COPY of the same rows into a fresh database of
    the same schema, one transaction per request-sized batch. Records/s of both."""
    import psycopg

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from pg_support import PgServer

    from otel_audit.service.store.postgres import _COPIED, _COPY_TYPES

    server = PgServer().start()
    try:
        db = server.database()
        proc, url = _start(folder, keyring, db.service_url)
        try:
            ingest = _ingest(url, bodies, total)
        finally:
            proc.terminate()
            proc.wait(60)
        raw_db = server.database()
        cols = ", ".join(_COPIED)
        with psycopg.connect(db.owner_url) as src, psycopg.connect(raw_db.owner_url, autocommit=True) as dst:
            envs = src.execute("SELECT id, digest, resource, scope FROM envelopes ORDER BY id").fetchall()
            rows = src.execute(f"SELECT {cols} FROM events ORDER BY seq").fetchall()
            months = {m for (m,) in src.execute(
                "SELECT DISTINCT ((extract(year FROM to_timestamp(ts / 1e9) AT TIME ZONE 'UTC') - 1970) * 12 "
                "+ extract(month FROM to_timestamp(ts / 1e9) AT TIME ZONE 'UTC') - 1)::int FROM events")}
            with dst.transaction():
                for m in months:
                    dst.execute("SELECT audit_partition(%s)", (m,))
                dst.cursor().executemany("INSERT INTO envelopes (id, digest, resource, scope) OVERRIDING SYSTEM "
                                         "VALUE VALUES (%s, %s, %s, %s)", envs)
            start = time.perf_counter()
            i = 0
            for size in per_line:
                copy_sql = f"COPY events ({cols}) FROM STDIN (FORMAT BINARY)"
                with dst.transaction(), dst.cursor() as cur, cur.copy(copy_sql) as cp:
                    cp.set_types(list(_COPY_TYPES))
                    for r in rows[i:i + size]:
                        cp.write_row(r)
                i += size
            raw = len(rows) / (time.perf_counter() - start)
        return ingest, raw
    finally:
        server.close()


@benchmark("service")
def bench_service(cfg: Config) -> Figures:
    """otel-audit serve: OTLP/HTTP JSON ingest into SQLite (producer and service on this machine) next to a raw
    bulk insert of the same rows; p95 of five query shapes and of proofs through the API; bytes per event."""
    import orjson

    n = cfg.records
    signer = Signer.generate("bench")
    figures: Figures = {}
    with tempfile.TemporaryDirectory(prefix="otel-audit-bench-service-") as tmp:
        folder = Path(tmp)
        keyring = folder / "keyring.json"
        keyring.write_bytes(Keyring([signer.public()]).to_json())
        (folder / "archive").mkdir()
        path = write_archive(folder / "archive", signer, n)
        bodies = [line for line in path.read_bytes().splitlines() if line.strip()]
        per_line = [sum(len(sl["logRecords"]) for rl in orjson.loads(b)["resourceLogs"] for sl in rl["scopeLogs"])
                    for b in bodies]
        total = sum(per_line)
        proc, url = _start(folder, keyring)
        try:
            ingest = _ingest(url, bodies, total)
            figures["service_ingest_records_per_s_sqlite"] = ingest
            raw = _raw_insert(folder / "audit.db", folder / "raw.db", per_line)
            figures["raw_bulk_insert_records_per_s_sqlite"] = raw
            figures["service_ingest_vs_raw_ratio"] = ingest / raw
            cfg.note(f"{total} records in {len(bodies)} requests (OTLP/JSON, about {len(bodies[0]) // per_line[0]} "
                     "bytes per record), one client; raw: the same rows into the same schema, one transaction "
                     "per request")
            cfg.note("goal: service_ingest_records_per_s_sqlite >= 20000")
            figures.update(_queries(url, folder / "audit.db", max(30, cfg.runs * 6)))
            cfg.note(f"queries and proofs: through the HTTP API on a store of {total} events in one stream, p95 wall "
                     "time at the client, limit 100; goal query < 10 ms at 1M (bench service_queries), proof < 5 ms")
        finally:
            proc.terminate()
            proc.wait(60)
        con = sqlite3.connect(folder / "audit.db")
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.close()
        size = sum(p.stat().st_size for p in folder.glob("audit.db*"))
        figures["store_bytes_per_event"] = size / total
        pg_ingest, pg_raw = _postgres(folder, keyring, bodies, total, per_line)
        figures["service_ingest_records_per_s_postgres"] = pg_ingest
        figures["raw_copy_records_per_s_postgres"] = pg_raw
        figures["service_ingest_vs_raw_ratio_postgres"] = pg_ingest / pg_raw
        cfg.note("postgres: the same requests into PostgreSQL (Debian's server on loopback, fsync and "
                 "synchronous_commit on; the service as its INSERT/SELECT role); raw: COPY of the same rows into the "
                 "same schema, one transaction per request; goal service_ingest_records_per_s_postgres >= 30000")
    return figures


def _samples(db: Path) -> tuple[list[str], int, list[str]]:
    """Values to query for, from a SQLite store: users, the first event time, event ids."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    users = [r[0] for r in con.execute("SELECT user_id FROM events WHERE user_id IS NOT NULL LIMIT 2000")]
    ts = [r[0] for r in con.execute("SELECT min(ts), max(ts) FROM events")][0]
    ids = [r[0] for r in con.execute("SELECT id FROM events WHERE event != 'audit.checkpoint' LIMIT 5000")]
    con.close()
    return users, ts, ids


def _queries(url: str, db: Path, runs: int, samples: tuple[list[str], int, list[str]] | None = None) -> Figures:
    """p95 of the five query shapes and of proofs through the API, on the store's own values (`samples`, or
    read from the SQLite file `db`)."""
    figures: Figures = {}
    s = requests.Session()
    users, ts, ids = samples if samples is not None else _samples(db)
    rnd = random.Random(7)
    lo = f"{ts // 10**9}"
    hi = f"{ts // 10**9 + 86400}"
    shapes = {
        "user_day": lambda: {"user": rnd.choice(users), "from": lo, "to": hi},
        "action_prefix_week": lambda: {"action": "audit.data.*", "from": lo, "to": f"{int(lo) + 7 * 86400}"},
        "cidr_outcome": lambda: {"client.address": f"10.{rnd.randrange(256)}.0.0/16", "outcome": "failure"},
        "full_text": lambda: {"q": rnd.choice(users)},
        "scim": lambda: {"filter": f'user.id eq "{rnd.choice(users)}" or (audit.outcome eq "failure" and '
                                   f'client.address eq "10.{rnd.randrange(256)}.0.0/16")'},
    }
    for name, make in shapes.items():
        times = []
        for _ in range(runs):
            params = make()
            t0 = time.perf_counter()
            r = s.get(url + "/v1/events", params=params, timeout=60)
            times.append((time.perf_counter() - t0) * 1000)
            if r.status_code != 200:
                raise BenchError(f"query {name} answered {r.status_code}: {r.text[:300]}")
        figures[f"query_p95_ms_{name}"] = _p95(times)
    ptimes = []
    for _ in range(runs):
        t0 = time.perf_counter()
        r = s.get(url + f"/v1/events/{rnd.choice(ids)}/proof", timeout=60)
        ptimes.append((time.perf_counter() - t0) * 1000)
        if r.status_code != 200:
            raise BenchError(f"proof answered {r.status_code}: {r.text[:300]}")
    figures["proof_p95_ms"] = _p95(ptimes)
    figures["proof_median_ms"] = median(ptimes)
    return figures


#: the store sizes the query shapes are measured at (the full run; --quick: the run's record count); the 10M
#: store (about 28 GB, some 40 minutes to load here) only with OTEL_AUDIT_BENCH_10M=1
QUERY_SIZES = (1_000_000,)
QUERY_SIZES_10M = (1_000_000, 10_000_000)


@benchmark("service_queries")
def bench_service_queries(cfg: Config) -> Figures:
    """p95 of the five query shapes and of proofs through `otel-audit serve`'s API on SQLite stores of 1M events
    (and 10M with OTEL_AUDIT_BENCH_10M=1), loaded by verify on ingest in-process (no HTTP: the load is not what
    is measured here; bench service measures ingest)."""
    from otel_audit.decoding import loads as strict_loads
    from otel_audit.service.ingest import Ingest
    from otel_audit.service.store import open_store

    sizes = (cfg.records,) if cfg.quick else (QUERY_SIZES_10M if os.environ.get("OTEL_AUDIT_BENCH_10M") == "1"
                                               else QUERY_SIZES)
    signer = Signer.generate("bench")
    keyring = Keyring([signer.public()])
    figures: Figures = {}
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="otel-audit-bench-queries-") as tmp:
            folder = Path(tmp)
            (folder / "keyring.json").write_bytes(keyring.to_json())
            (folder / "archive").mkdir()
            path = write_archive(folder / "archive", signer, n)
            suffix = "" if n == sizes[0] else f"_{n // 1_000_000}m"

            def load(url: str, path: Path = path) -> float:
                store = open_store(url)
                ingest = Ingest(store, keyring)
                t0 = time.perf_counter()
                with path.open("rb") as fh:
                    for line in fh:
                        if line.strip():
                            ingest.ingest(strict_loads(line))
                store.close()
                return time.perf_counter() - t0

            load_s = load(f"sqlite:///{folder / 'audit.db'}")
            samples = _samples(folder / "audit.db")
            proc, url = _start(folder, folder / "keyring.json")
            try:
                got = _queries(url, folder / "audit.db", max(60, cfg.runs * 10), samples)
            finally:
                proc.terminate()
                proc.wait(60)
            figures.update({k + suffix: v for k, v in got.items()})
            cfg.note(f"{n} events{' (' + suffix[1:] + ')' if suffix else ''}: loaded by in-process verify on ingest "
                     f"in {load_s:.0f} s ({n / load_s:.0f} records/s); every query and proof through the HTTP API, "
                     "limit 100, p95 wall time at the client; goal query < 10 ms at 1M, proof < 5 ms")
            (folder / "audit.db").unlink()
            for extra in folder.glob("audit.db-*"):
                extra.unlink()
            # the same events in PostgreSQL (the session's server, as its INSERT/SELECT role)
            sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
            from pg_support import PgServer

            server = PgServer().start()
            try:
                db = server.database()
                pg_s = load(db.service_url)
                pg_folder = folder / "pg"
                pg_folder.mkdir()
                proc, url = _start(pg_folder, folder / "keyring.json", db.service_url)
                try:
                    got = _queries(url, folder / "audit.db", max(60, cfg.runs * 10), samples)
                finally:
                    proc.terminate()
                    proc.wait(60)
            finally:
                server.close()
            figures.update({f"{k}_postgres{suffix}": v for k, v in got.items()})
            cfg.note(f"postgres: the same {n} events loaded in {pg_s:.0f} s ({n / pg_s:.0f} records/s), the same "
                     "queries (figures _postgres)")
            path.unlink()
    return figures
