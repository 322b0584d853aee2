"""The PostgreSQL store on a real server (tests/pg_support.py): partitions made on demand inside the ingest
transaction and the default partition as the safety net, schema versions, NUL in text, the URL's password masked.
The service-level behaviour (ingest, queries, verify --store, append-only roles, a restart) is tests/test_service.py,
on both back ends."""

from __future__ import annotations

import datetime
import subprocess
import time
from typing import Any

import orjson
import pytest
from service_support import CLI

from otel_audit.errors import ConfigError
from otel_audit.keys import Keyring
from otel_audit.service.ingest import Ingest
from otel_audit.service.store import open_store
from otel_audit.service.store.postgres import SCHEMA_VERSION, mask


def _doc(*records: tuple[int, str]) -> dict[str, Any]:
    """An OTLP/JSON request of unsigned records: (time in ns, body)."""
    return {"resourceLogs": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "t"}}]},
                              "scopeLogs": [{"scope": {}, "logRecords": [
                                  {"timeUnixNano": str(t), "eventName": "test.event", "body": {"stringValue": body},
                                   "attributes": [{"key": "user.id", "value": {"stringValue": "alice"}}]}
                                  for t, body in records]}]}]}


def _ns(year: int, month: int, day: int = 15) -> int:
    return int(datetime.datetime(year, month, day, tzinfo=datetime.timezone.utc).timestamp()) * 1_000_000_000


def _partitions(server: Any, db: Any) -> dict[str, int]:
    rows = server.owner(db, "SELECT c.relname, (SELECT count(*) FROM events e WHERE e.tableoid = c.oid) "
                            "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                            "WHERE i.inhparent = 'events'::regclass")
    return {name: n for name, n in rows}


def test_partitions_are_made_on_demand_and_the_default_catches_the_rest(pg_server: Any) -> None:
    db = pg_server.database()
    store = open_store(db.service_url)  # the INSERT/SELECT role: it makes partitions only through the function
    try:
        ingest = Ingest(store, Keyring([]))
        now = time.time_ns()
        this = datetime.datetime.fromtimestamp(now / 1e9, tz=datetime.timezone.utc)
        last = this.replace(day=1) - datetime.timedelta(days=1)
        got = ingest.ingest(_doc((now, "now"), (_ns(last.year, last.month), "last month"), (_ns(2001, 3), "old"),
                                 (_ns(2200, 1), "far ahead"), (0, "no time")))
        assert got.accepted == 5
        parts = _partitions(pg_server, db)
        assert parts[f"events_{this:%Y_%m}"] >= 1 and parts[f"events_{last:%Y_%m}"] == 1
        assert parts["events_default"] == 3  # 2001, 2200, and the record without a time
        # a month whose rows reached the default first keeps them there; nothing breaks a later ingest
        pg_server.owner(db, "SELECT audit_partition(%s)", params=((2001 - 1970) * 12 + 2,))
        assert "events_2001_03" not in _partitions(pg_server, db)
        assert ingest.ingest(_doc((now + 1, "again"))).accepted == 1
        assert store.query("", [], order="seq", limit=10, after=None).rows[-1]["body"] == "again"
        # the service role cannot make a partition itself
        import psycopg

        with psycopg.connect(db.service_url, autocommit=True) as con, pytest.raises(psycopg.Error, match="permission"):
            con.execute("CREATE TABLE events_2030_01 PARTITION OF events FOR VALUES FROM (0) TO (1)")
    finally:
        store.close()


def test_a_newer_schema_is_refused_and_an_older_one_names_the_migration(pg_server: Any) -> None:
    db = pg_server.database()
    pg_server.owner(db, "INSERT INTO schema_version VALUES (%s, 0)", params=(SCHEMA_VERSION + 1,))
    for readonly in (False, True):
        with pytest.raises(ConfigError, match=f"schema version {SCHEMA_VERSION + 1} is newer"):
            open_store(db.service_url, readonly=readonly)
    # no schema yet, and the service role may not create one: the error says what to run
    fresh = f"d{time.time_ns() % 10**9}"
    pg_server.admin(f"CREATE DATABASE {fresh} OWNER audit_owner")
    url = db.service_url.rsplit("/", 1)[0] + f"/{fresh}"
    with pytest.raises(ConfigError, match="store-migrate") as got:
        open_store(url)
    assert "service-pw" not in str(got.value) and "permission denied" in str(got.value)
    # the owner migrates it (as the CLI does), then the service role opens it
    owner = db.owner_url.rsplit("/", 1)[0] + f"/{fresh}"
    r = subprocess.run([CLI, "store-migrate", "--store", owner, "--grant", "audit_service"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and f"schema version {SCHEMA_VERSION}" in r.stdout, r.stderr
    assert "owner-pw" not in r.stdout + r.stderr
    open_store(url).close()


def test_nul_in_a_text_column_is_stored_and_verify_store_agrees(pg_server: Any, tmp_path: Any) -> None:
    db = pg_server.database()
    store = open_store(db.service_url)
    try:
        Ingest(store, Keyring([])).ingest(_doc((time.time_ns(), "a\x00b")))
        (row,) = store.query("", [], order="seq", limit=10, after=None).rows
        assert row["body"] == "a\ufffdb"
        (stored,) = list(store.iter_rows())
        assert orjson.loads(stored["record"])["body"]["stringValue"] == "a\x00b"  # the record itself keeps it
    finally:
        store.close()
    ring = tmp_path / "empty.json"
    ring.write_bytes(Keyring([]).to_json())
    r = subprocess.run([CLI, "verify", "--keys", str(ring), "--store", db.service_url, "--ignore-unsigned",
                        "--format", "json"], capture_output=True, text=True, timeout=60)
    assert "differ" not in r.stdout, r.stdout


@pytest.mark.parametrize("url, shown", [
    ("postgresql://svc:s3cr%40t@db.example:5432/audit", "postgresql://svc:***@db.example:5432/audit"),
    ("postgres://svc@db/audit?password=hunter2&sslmode=require", "postgres://svc@db/audit?password=***&sslmode=require"),
    ("postgresql://db/audit", "postgresql://db/audit"),
])
def test_the_password_is_masked(url: str, shown: str) -> None:
    assert mask(url) == shown


def test_nul_in_the_service_name_and_in_attributes_is_stored_not_retried_forever(pg_server: Any) -> None:
    """NUL where PostgreSQL text cannot hold it (a service name, an actor) must not turn a request into a store
    failure the collector would retry forever."""
    db = pg_server.database()
    store = open_store(db.service_url)
    try:
        doc = _doc((time.time_ns(), "x"))
        doc["resourceLogs"][0]["resource"]["attributes"][0]["value"]["stringValue"] = "svc\x00name"
        doc["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]["attributes"].append(
            {"key": "audit.actor.id", "value": {"stringValue": "bob\x00"}})
        assert Ingest(store, Keyring([])).ingest(doc).accepted == 1
        (row,) = store.query("", [], order="seq", limit=10, after=None).rows
        assert (row["service"], row["actor"]) == ("svc\ufffdname", "bob\ufffd")
    finally:
        store.close()
