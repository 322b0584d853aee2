"""The SQLite store: one file, WAL, synchronous=FULL (a request is acknowledged only once its rows are on
disk), versioned migrations (PRAGMA user_version), append-only by triggers."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from otel_audit.errors import ConfigError
from otel_audit.service.store import (
    EVENT_COLUMNS,
    FACETS,
    SQLITE,
    CheckpointRow,
    EventRow,
    Finding,
    Page,
    StoreTimeout,
    StreamState,
)

#: Each migration takes the schema from version i to i + 1; never edit one that shipped, add the next.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        stream_id TEXT,
        stream_seq INTEGER,
        ts INTEGER NOT NULL,
        observed_ts INTEGER NOT NULL,
        ingest_ts INTEGER NOT NULL,
        event TEXT NOT NULL,
        category TEXT,
        outcome TEXT,
        actor TEXT,
        user_id TEXT,
        target_type TEXT,
        target_id TEXT,
        client_address TEXT,
        client_address_key TEXT,
        service TEXT,
        session_id TEXT,
        trace_id TEXT,
        severity INTEGER NOT NULL,
        severity_text TEXT NOT NULL,
        body TEXT,
        attrs TEXT NOT NULL,
        envelope INTEGER NOT NULL REFERENCES envelopes (id),
        record BLOB NOT NULL,
        canonical BLOB,
        digest BLOB,
        prev BLOB,
        signed TEXT NOT NULL,
        UNIQUE (stream_id, stream_seq)
    ) STRICT;
    CREATE INDEX events_ts ON events (ts, seq);
    CREATE TABLE envelopes (
        id INTEGER PRIMARY KEY,
        digest BLOB NOT NULL UNIQUE,
        resource BLOB NOT NULL,
        scope BLOB NOT NULL
    ) STRICT;
    CREATE TRIGGER envelopes_no_update BEFORE UPDATE ON envelopes BEGIN SELECT RAISE(ABORT, 'append-only'); END;
    CREATE TRIGGER envelopes_no_delete BEFORE DELETE ON envelopes BEGIN SELECT RAISE(ABORT, 'append-only'); END;
    CREATE INDEX events_actor ON events (actor, ts);
    CREATE INDEX events_user ON events (user_id, ts);
    CREATE INDEX events_event ON events (event, ts);
    CREATE INDEX events_category ON events (category, ts);
    CREATE INDEX events_target ON events (target_id, ts);
    CREATE INDEX events_client ON events (client_address_key, ts);
    CREATE INDEX events_session ON events (session_id, ts);
    CREATE INDEX events_trace ON events (trace_id);
    CREATE VIRTUAL TABLE events_fts USING fts5 (text, content='', tokenize='unicode61');
    CREATE TABLE streams (
        stream_id TEXT PRIMARY KEY,
        service TEXT,
        length INTEGER NOT NULL,
        head BLOB NOT NULL,
        tree BLOB NOT NULL,
        proven INTEGER NOT NULL,
        proven_root BLOB NOT NULL,
        closed INTEGER NOT NULL,
        records INTEGER NOT NULL,
        failed INTEGER NOT NULL,
        first_ingest INTEGER NOT NULL,
        last_ingest INTEGER NOT NULL,
        last_checkpoint_ts INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE checkpoints (
        stream_id TEXT NOT NULL,
        size INTEGER NOT NULL,
        root BLOB NOT NULL,
        note TEXT NOT NULL,
        time_ns INTEGER NOT NULL,
        kind TEXT NOT NULL,
        cosignature TEXT NOT NULL,
        ingest_ts INTEGER NOT NULL,
        PRIMARY KEY (stream_id, size)
    ) STRICT;
    CREATE TABLE tiles (
        stream_id TEXT NOT NULL,
        level INTEGER NOT NULL,
        idx INTEGER NOT NULL,
        hash BLOB NOT NULL,
        PRIMARY KEY (stream_id, level, idx)
    ) STRICT, WITHOUT ROWID;
    CREATE TABLE findings (
        id INTEGER PRIMARY KEY,
        stream_id TEXT,
        stream_seq INTEGER,
        kind TEXT NOT NULL,
        reason TEXT NOT NULL,
        ingest_ts INTEGER NOT NULL,
        evidence BLOB NOT NULL
    ) STRICT;
    CREATE INDEX findings_stream ON findings (stream_id, stream_seq);
    CREATE TRIGGER events_no_update BEFORE UPDATE ON events BEGIN SELECT RAISE(ABORT, 'append-only'); END;
    CREATE TRIGGER events_no_delete BEFORE DELETE ON events BEGIN SELECT RAISE(ABORT, 'append-only'); END;
    CREATE TRIGGER checkpoints_no_update BEFORE UPDATE ON checkpoints
        BEGIN SELECT RAISE(ABORT, 'append-only'); END;
    CREATE TRIGGER checkpoints_no_delete BEFORE DELETE ON checkpoints
        BEGIN SELECT RAISE(ABORT, 'append-only'); END;
    CREATE TRIGGER findings_no_update BEFORE UPDATE ON findings BEGIN SELECT RAISE(ABORT, 'append-only'); END;
    CREATE TRIGGER findings_no_delete BEFORE DELETE ON findings BEGIN SELECT RAISE(ABORT, 'append-only'); END;
    """,
    # 2: the start of every stream signed at ingest, by ingest order: any instance reads which stream each
    # producer writes to, and which streams only the service may write, from the store (ingest_sign.refresh)
    """
    CREATE INDEX events_ingest_starts ON events (seq) WHERE signed = 'ingest' AND stream_seq = 0;
    """,
    # 3: the outcome in the client address index, so "a CIDR and an outcome" is answered from the index alone
    # (at 1M events a /16 and outcome=failure read ~5,000 rows for their outcome: 15 ms, now 2.6 ms)
    """
    DROP INDEX events_client;
    CREATE INDEX events_client ON events (client_address_key, ts, outcome);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

#: the event columns as stored: resource and scope become the id of their (deduplicated) envelope row
_STORED = tuple("envelope" if c == "resource" else c for c in EVENT_COLUMNS if c not in ("scope", "text"))
_INSERT_EVENT_SEQ = (f"INSERT INTO events (seq, {', '.join(_STORED)}) VALUES (?, {', '.join('?' for _ in _STORED)})")
_RES, _SCOPE = EVENT_COLUMNS.index("resource"), EVENT_COLUMNS.index("scope")
#: an event's status (docs/service.md §2), from its stream's state and the findings naming it
_STATUS = ("CASE WHEN e.stream_id IS NULL THEN 'unsigned' "
           "WHEN EXISTS (SELECT 1 FROM findings f WHERE f.stream_id = e.stream_id AND f.stream_seq = e.stream_seq "
           "AND f.kind != 'variant') "
           "THEN 'failed' WHEN e.stream_seq < s.proven THEN 'proven' ELSE 'pending' END")
_FROM = "FROM events e LEFT JOIN streams s ON s.stream_id = e.stream_id"
#: the facets (store.FACETS) and the columns they count
FACET_COLUMNS: dict[str, str] = {
    "action": "e.event", "category": "e.category", "outcome": "e.outcome", "actor": "e.actor", "user": "e.user_id",
    "service": "e.service", "target.type": "e.target_type", "target.id": "e.target_id",
    "client.address": "e.client_address", "session": "e.session_id", "stream": "e.stream_id", "status": "status",
}
assert tuple(FACET_COLUMNS) == FACETS
#: what a query returns of an event (not the bulky canonical bytes); `status` joins the stream's state
_SELECT = ("SELECT e.seq, e.id, e.stream_id, e.stream_seq, e.ts, e.observed_ts, e.ingest_ts, e.event, e.category, "
           "e.outcome, e.actor, e.user_id, e.target_type, e.target_id, e.client_address, e.service, e.session_id, "
           "e.trace_id, e.severity, e.severity_text, e.body, e.attrs, e.digest, e.signed, "
           f"{_STATUS} AS status, s.proven AS proven {_FROM}")
_QUERY_COLUMNS = ("seq", "id", "stream_id", "stream_seq", "ts", "observed_ts", "ingest_ts", "event", "category",
                  "outcome", "actor", "user_id", "target_type", "target_id", "client_address", "service",
                  "session_id", "trace_id", "severity", "severity_text", "body", "attrs", "digest", "signed",
                  "status", "proven")


def _connect(path: str, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        from urllib.parse import quote

        con = sqlite3.connect(f"file:{quote(os.path.abspath(path))}?mode=ro", uri=True, isolation_level=None,
                              check_same_thread=False, timeout=30)
        con.execute("PRAGMA query_only=ON")
        return con
    con = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    # rows of a few KB: 16 KiB pages hold several each (4 KiB pages held one, wasting half); only a new file
    # takes it, before its first table
    con.execute("PRAGMA page_size=16384")
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")
    con.execute("PRAGMA foreign_keys=ON")
    return con


class SqliteStore:
    """The default store (see the module docstring). One writer at a time (a lock); readers each get their
    own connection per thread."""

    dialect = SQLITE

    def __init__(self, path: str, *, create: bool = True, readonly: bool = False) -> None:
        p = Path(path)
        self.readonly = readonly
        self.url = f"sqlite:///{p.resolve()}"
        self.path = str(p)
        if not p.exists():
            if not create:
                raise ConfigError(f"store: {p}: no such database")
            if not p.parent.is_dir():
                raise ConfigError(f"store: {p}: the folder {p.parent} does not exist")
        elif not p.is_file():
            raise ConfigError(f"store: {p} is not a file")
        try:
            self._w = _connect(self.path, readonly)
            if readonly:
                (version,) = self._w.execute("PRAGMA user_version").fetchone()
                self._w.execute("SELECT count(*) FROM sqlite_master").fetchone()
                if version != SCHEMA_VERSION:
                    raise ConfigError(f"store: {p}: schema version {version}, this otel-audit reads "
                                      f"{SCHEMA_VERSION}" + ("; start the service once to migrate it"
                                                             if version < SCHEMA_VERSION else "; upgrade otel-audit"))
            else:
                self._migrate()
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"store: {p}: not a usable SQLite database ({exc})") from None
        if os.name == "posix" and not readonly:
            os.chmod(self.path, 0o600)
        self._lock = threading.Lock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []

    def _migrate(self) -> None:
        (version,) = self._w.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise ConfigError(f"store: {self.path}: schema version {version} is newer than this otel-audit "
                              f"knows ({SCHEMA_VERSION}); upgrade otel-audit")
        for i in range(version, SCHEMA_VERSION):
            self._w.execute("BEGIN IMMEDIATE")
            try:
                for stmt in _statements(MIGRATIONS[i]):
                    self._w.execute(stmt)
                self._w.execute(f"PRAGMA user_version = {i + 1}")
                self._w.execute("COMMIT")
            except BaseException:
                self._w.execute("ROLLBACK")
                raise

    def _reader(self) -> sqlite3.Connection:
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is None:
            con = _connect(self.path, readonly=self.readonly)
            con.execute("PRAGMA query_only=ON")
            self._local.con = con
            self._readers.append(con)
        return con

    @contextmanager
    def writer(self) -> Iterator[_SqliteWriter]:
        with self._lock:
            con = self._w
            con.execute("BEGIN IMMEDIATE")
            try:
                yield _SqliteWriter(con)
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    # -- reading

    def query(self, where: str, params: Sequence[Any], *, order: str, limit: int,
              after: tuple[Any, ...] | None, offset: int = 0) -> Page:
        """Events matching `where` (SQL over the events table aliased e, with ? parameters), in `order`:
        "ts" / "-ts" (event time, then seq) or "seq" (ingest order); keyset `after` the last row's key;
        `offset` rows skipped first (page-numbered APIs; keyset paging is the one that scales)."""
        clauses = [f"({where})"] if where else []
        args = list(params)
        if order == "seq":
            if after is not None:
                clauses.append("e.seq > ?")
                args.append(after[0])
            sort = "e.seq ASC"
        elif order in ("ts", "-ts"):
            op, direction = (">", "ASC") if order == "ts" else ("<", "DESC")
            if after is not None:
                clauses.append(f"(e.ts {op} ? OR (e.ts = ? AND e.seq {op} ?))")
                args += [after[0], after[0], after[1]]
            sort = f"e.ts {direction}, e.seq {direction}"
        else:
            raise ValueError(f"order {order!r}")
        # in two steps: the page's seqs first, from the indexes where they can (a filter whose index cannot give
        # the order sorts only (ts, seq) pairs), then the page's rows alone with their status; one step made every
        # matching row whole (its body, attributes, status subqueries) before the sort kept a hundred of them
        source = (f"SELECT {_STATUS} AS status, e.seq, e.ts {_FROM}" if "status" in where
                  else "SELECT e.seq, e.ts FROM events e")
        keys = source + (" WHERE " + " AND ".join(clauses) if clauses else "") + f" ORDER BY {sort} LIMIT ? OFFSET ?"
        sql = f"{_SELECT} WHERE e.seq IN (SELECT seq FROM ({keys})) ORDER BY {sort}"
        args += [limit + 1, offset]
        cur = self._reader().execute(sql, args)
        rows = [dict(zip(_QUERY_COLUMNS, r, strict=True)) for r in cur.fetchall()]
        nxt = None
        if len(rows) > limit:
            rows = rows[:limit]
            last = rows[-1]
            nxt = (last["seq"],) if order == "seq" else (last["ts"], last["seq"])
        return Page(rows, nxt)

    @contextmanager
    def _deadline(self, seconds: float | None) -> Iterator[sqlite3.Connection]:
        """This thread's reader connection, its statements interrupted after `seconds` (StoreTimeout)."""
        con = self._reader()
        if seconds is None:
            yield con
            return
        import time

        end = time.monotonic() + seconds
        con.set_progress_handler(lambda: 1 if time.monotonic() > end else 0, 20000)
        try:
            yield con
        except sqlite3.OperationalError as exc:
            if "interrupted" in str(exc):
                raise StoreTimeout(f"the store did not answer within {seconds:g} s") from None
            raise
        finally:
            con.set_progress_handler(None, 0)

    def count(self, where: str, params: Sequence[Any], *, cap: int | None = None,
              deadline: float | None = None) -> int:
        """How many events match `where` (at most `cap` + 1 are counted when a cap is given)."""
        inner = f"SELECT 1 {_FROM}" if "status" not in where else f"SELECT {_STATUS} AS status {_FROM}"
        inner += f" WHERE {where}" if where else ""
        args = list(params)
        if cap is not None:
            inner += " LIMIT ?"
            args.append(cap + 1)
        with self._deadline(deadline) as con:
            (n,) = con.execute(f"SELECT count(*) FROM ({inner})", args).fetchone()
        return int(n)

    def facets(self, where: str, params: Sequence[Any], fields: Sequence[str], *, top: int, max_scan: int,
               contains: str | None = None, deadline: float | None = None) -> dict[str, Any]:
        """Counts per value of each facet (FACET_COLUMNS) over the events matching `where`: the newest
        `max_scan` of them by ingest order (a bound on the time a big store takes); per facet the `top` most
        frequent values (ties by value), the count of rows without one (`missing`) and of the rest (`other`).
        `contains`: only values holding that text (ASCII case folded). SQLite groups in its own temporary
        b-trees, so memory stays bounded by its cache whatever the number of distinct values."""
        unknown = [f for f in fields if f not in FACET_COLUMNS]
        if unknown:
            raise ValueError(f"unknown facet {unknown[0]!r}")
        parts = [f"{FACET_COLUMNS[f]} AS f{i}" for i, f in enumerate(fields) if f != "status"]
        if "status" in fields or "status" in where:  # a /v1/events `status` condition reads the alias
            parts.append(f"{_STATUS} AS status")
        cols = ", ".join(parts) or "1"
        inner = f"SELECT {cols} {_FROM}" + (f" WHERE {where}" if where else "") + " ORDER BY e.seq DESC LIMIT ?"
        args = [*params, max_scan]
        out: dict[str, Any] = {}
        con = self._reader()
        try:
            with self._deadline(deadline):
                con.execute("PRAGMA query_only=OFF")  # a temporary table only: the store file is not written
                con.execute("DROP TABLE IF EXISTS temp.facet_scan")
                con.execute(f"CREATE TEMP TABLE facet_scan AS {inner}", args)
                con.execute("PRAGMA query_only=ON")
                (scanned,) = con.execute("SELECT count(*) FROM temp.facet_scan").fetchone()
                for i, f in enumerate(fields):
                    col = "status" if f == "status" else f"f{i}"
                    cond = f"WHERE {col} IS NULL OR instr(lower({col}), lower(?)) > 0" if contains else ""
                    rows = con.execute(
                        f"SELECT {col}, count(*) AS n FROM temp.facet_scan {cond} GROUP BY {col} "
                        f"ORDER BY {col} IS NULL DESC, n DESC, {col} LIMIT ?",
                        [*([contains] if contains else []), top + 1]).fetchall()
                    missing = 0
                    if rows and rows[0][0] is None:
                        missing = rows.pop(0)[1]
                    values = [(v, n) for v, n in rows[:top]]
                    out[f] = {"values": values, "missing": missing,
                              "other": scanned - missing - sum(n for _, n in values)}
        finally:  # outside the deadline: the clean-up is never interrupted
            con.execute("PRAGMA query_only=OFF")
            con.execute("DROP TABLE IF EXISTS temp.facet_scan")
            con.execute("PRAGMA query_only=ON")
        return {"scanned": scanned, "facets": out}

    def get(self, event_id: str) -> dict[str, Any] | None:
        r = self._reader().execute(_SELECT + " WHERE e.id = ?", (event_id,)).fetchone()
        return None if r is None else dict(zip(_QUERY_COLUMNS, r, strict=True))

    def streams(self) -> list[dict[str, Any]]:
        cur = self._reader().execute(
            "SELECT stream_id, service, length, proven, closed, records, failed, first_ingest, last_ingest, "
            "last_checkpoint_ts, (SELECT count(DISTINCT f.stream_seq) FROM findings f WHERE f.stream_id = s.stream_id "
            "AND f.kind != 'variant' AND f.stream_seq < s.proven) AS failed_sealed, "
            # who signed it, as its first record says (a stream started at ingest begins with the service's start
            # checkpoint; no client's row can say "ingest"): read from the store, so every instance agrees
            "(SELECT e.signed FROM events e WHERE e.stream_id = s.stream_id AND e.stream_seq = 0) AS signed "
            "FROM streams s ORDER BY first_ingest, stream_id")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def checkpoints(self, stream_id: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT stream_id, size, root, note, time_ns, kind, cosignature, ingest_ts FROM checkpoints"
        cur = (self._reader().execute(sql + " WHERE stream_id = ? ORDER BY size", (stream_id,)) if stream_id
               else self._reader().execute(sql + " ORDER BY stream_id, size"))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def findings(self, stream_id: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        sql = "SELECT id, stream_id, stream_seq, kind, reason, ingest_ts, evidence FROM findings"
        cur = (self._reader().execute(sql + " WHERE stream_id = ? ORDER BY id LIMIT ?", (stream_id, limit))
               if stream_id else self._reader().execute(sql + " ORDER BY id LIMIT ?", (limit,)))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def proof_material(self, event_id: str, size: int | None = None) -> dict[str, Any] | None:
        """What a proof of the event needs: its stream, seq, prev, canonical bytes, the checkpoint (the latest
        verified one above it, or the one of `size`) and its inclusion path in that checkpoint's tree (from tiles:
        a few hundred hashes read, whatever the stream's length). None: no such event; "checkpoint" None: no
        verified checkpoint covers it yet; "missing" True: the store lacks leaves the path needs."""
        from otel_audit.service.tiles import BLOCK, Tree

        con = self._reader()
        r = con.execute("SELECT stream_id, stream_seq, prev, canonical FROM events WHERE id = ?",
                        (event_id,)).fetchone()
        if r is None:
            return None
        sid, seq, prev, canon = r
        out: dict[str, Any] = {"stream_id": sid, "seq": seq, "prev": prev, "canonical": canon, "checkpoint": None,
                               "path": [], "missing": False}
        if sid is None:
            return out
        if size is None:
            cp = con.execute("SELECT size, note, cosignature FROM checkpoints WHERE stream_id = ? AND size > ? "
                             "ORDER BY size DESC LIMIT 1", (sid, seq)).fetchone()
        else:
            cp = con.execute("SELECT size, note, cosignature FROM checkpoints WHERE stream_id = ? AND size = ? "
                             "AND size > ?", (sid, size, seq)).fetchone()
        if cp is None:
            return out
        out["checkpoint"] = {"size": cp[0], "note": cp[1], "cosignature": cp[2]}
        blocks: dict[int, list[bytes]] = {}
        missing = False

        def leaves(lo: int, hi: int) -> list[bytes]:
            nonlocal missing
            got: list[bytes] = []
            for b in range(lo // BLOCK, (hi - 1) // BLOCK + 1):
                if b not in blocks:
                    rows = con.execute("SELECT stream_seq, digest FROM events WHERE stream_id = ? AND stream_seq "
                                       ">= ? AND stream_seq < ? ORDER BY stream_seq",
                                       (sid, b * BLOCK, (b + 1) * BLOCK)).fetchall()
                    blocks[b] = [d for q, d in rows]
                    if [q for q, _ in rows] != list(range(b * BLOCK, b * BLOCK + len(rows))):
                        missing = True
                got += blocks[b]
            start = lo - (lo // BLOCK) * BLOCK
            part = got[start:start + hi - lo]
            if len(part) != hi - lo:
                missing = True
            return part

        def tiles(level: int, lo: int, hi: int) -> list[bytes | None]:
            rows = dict(con.execute("SELECT idx, hash FROM tiles WHERE stream_id = ? AND level = ? AND idx >= ? "
                                    "AND idx < ?", (sid, level, lo, hi)).fetchall())
            return [rows.get(i) for i in range(lo, hi)]

        out["path"] = Tree(leaves, tiles).inclusion_path(seq, cp[0])
        out["missing"] = missing
        return out

    def otlp_records(self, event_ids: Sequence[str]) -> dict[str, tuple[bytes, bytes, bytes]]:
        """(resource, scope, logRecord) OTLP/JSON exactly as stored, for each of `event_ids` that exists (an
        export rebuilds the one-record request the verifier reads from them, as ``verify --store`` does)."""
        out: dict[str, tuple[bytes, bytes, bytes]] = {}
        ids = list(event_ids)
        con = self._reader()
        for i in range(0, len(ids), 500):
            part = ids[i:i + 500]
            marks = ", ".join("?" for _ in part)
            for eid, res, scope, rec in con.execute(
                    f"SELECT e.id, v.resource, v.scope, e.record FROM events e JOIN envelopes v ON v.id = e.envelope "
                    f"WHERE e.id IN ({marks})", part):
                out[eid] = (bytes(res), bytes(scope), bytes(rec))
        return out

    def iter_rows(self) -> Iterator[dict[str, Any]]:
        """Every event row as stored, in ingest order (for `verify --store`): seq, id, resource, scope, record,
        and `columns`, the rest of the row by column name."""
        con = _connect(self.path, readonly=True)
        names = [c for c in EVENT_COLUMNS if c not in ("id", "resource", "scope", "record", "text")]
        try:
            cols = ", ".join("e." + n for n in names)
            cur = con.execute(f"SELECT e.seq, e.id, v.resource, v.scope, e.record, {cols} "
                              "FROM events e JOIN envelopes v ON v.id = e.envelope ORDER BY e.seq")
            for r in cur:
                yield {"seq": r[0], "id": r[1], "resource": r[2], "scope": r[3], "record": r[4],
                       "columns": dict(zip(names, r[5:], strict=True))}
        finally:
            con.close()

    def close(self) -> None:
        with self._lock:
            self._w.close()
        for con in self._readers:
            con.close()
        self._readers.clear()


def _statements(script: str) -> list[str]:
    """A migration's statements (complete ones, as sqlite3.complete_statement splits them)."""
    out: list[str] = []
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out


class _SqliteWriter:
    def __init__(self, con: sqlite3.Connection) -> None:
        self._con = con

    def stream(self, stream_id: str) -> StreamState | None:
        r = self._con.execute(
            "SELECT stream_id, service, length, head, tree, proven, proven_root, closed, records, failed, "
            "first_ingest, last_ingest, last_checkpoint_ts FROM streams WHERE stream_id = ?", (stream_id,)).fetchone()
        if r is None:
            return None
        return StreamState(r[0], r[1], r[2], r[3], r[4], r[5], r[6], bool(r[7]), r[8], r[9], r[10], r[11], r[12])

    def ingest_starts(self, after: int) -> list[tuple[int, str, str, str | None]]:
        """(ingest seq, stream id, event, body) of the seq-0 records signed at ingest stored after ingest seq
        `after`, in ingest order: the streams the service started, by any instance."""
        return self._con.execute(
            "SELECT seq, stream_id, event, body FROM events WHERE signed = 'ingest' AND stream_seq = 0 AND seq > ? "
            "ORDER BY seq", (after,)).fetchall()

    def unsealed(self) -> list[tuple[str, int]]:
        """(stream id, last checkpoint time) of every open stream with records after its last checkpoint."""
        return self._con.execute(
            "SELECT stream_id, last_checkpoint_ts FROM streams WHERE closed = 0 AND length > proven").fetchall()

    def put_stream(self, s: StreamState) -> None:
        self._con.execute(
            "INSERT INTO streams VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (stream_id) DO UPDATE SET "
            "service = excluded.service, length = excluded.length, head = excluded.head, tree = excluded.tree, "
            "proven = excluded.proven, proven_root = excluded.proven_root, closed = excluded.closed, "
            "records = excluded.records, failed = excluded.failed, last_ingest = excluded.last_ingest, "
            "last_checkpoint_ts = excluded.last_checkpoint_ts",
            (s.stream_id, s.service, s.length, s.head, s.tree, s.proven, s.proven_root, int(s.closed), s.records,
             s.failed, s.first_ingest, s.last_ingest, s.last_checkpoint_ts))

    def stored_many(self, stream_id: str, seqs: Sequence[int]) -> list[tuple[int, bytes]]:
        """(seq, canonical bytes) of the stream's stored records among `seqs`."""
        lo, hi = min(seqs), max(seqs)
        want = set(seqs)
        if hi - lo < 4 * len(want) + 64:  # the usual request: one run of seqs
            cur = self._con.execute("SELECT stream_seq, canonical FROM events WHERE stream_id = ? AND stream_seq "
                                    "BETWEEN ? AND ?", (stream_id, lo, hi))
            return [(q, c) for q, c in cur if q in want]
        out = []
        for q in sorted(want):
            r = self._con.execute("SELECT canonical FROM events WHERE stream_id = ? AND stream_seq = ?",
                                  (stream_id, q)).fetchone()
            if r is not None:
                out.append((q, r[0]))
        return out

    def following(self, stream_id: str, seq: int, limit: int) -> list[tuple[int, bytes, bytes, str, str | None,
                                                                           int, str]]:
        """(stream_seq, digest, prev, event, body, ts, id) of the stream's stored records from `seq` on."""
        return list(self._con.execute(
            "SELECT stream_seq, digest, prev, event, body, ts, id FROM events WHERE stream_id = ? AND stream_seq >= ? "
            "ORDER BY stream_seq LIMIT ?", (stream_id, seq, limit)))

    def _envelope(self, resource: bytes, scope: bytes) -> int:
        import hashlib

        key = hashlib.sha256(len(resource).to_bytes(8, "big") + resource + scope).digest()
        r = self._con.execute("SELECT id FROM envelopes WHERE digest = ?", (key,)).fetchone()
        if r is not None:
            return int(r[0])
        cur = self._con.execute("INSERT INTO envelopes (digest, resource, scope) VALUES (?, ?, ?)",
                                (key, resource, scope))
        return int(cur.lastrowid or 0)

    def insert_events(self, rows: Sequence[EventRow]) -> None:
        con = self._con
        (top,) = con.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()
        envs: dict[tuple[bytes, bytes], int] = {}
        values = []
        for i, row in enumerate(rows, 1):
            k = (row.resource, row.scope)
            env = envs.get(k)
            if env is None:
                env = envs[k] = self._envelope(*k)
            v = list(row[:-1])
            v[_RES] = env
            del v[_SCOPE]
            values.append((top + i, *v))
        con.executemany(_INSERT_EVENT_SEQ, values)
        con.executemany("INSERT INTO events_fts (rowid, text) VALUES (?, ?)",
                        [(top + i, row.text) for i, row in enumerate(rows, 1) if row.text])

    def insert_checkpoint(self, row: CheckpointRow) -> bool:
        cur = self._con.execute("INSERT INTO checkpoints VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING", row)
        return cur.rowcount == 1

    def checkpoint(self, stream_id: str, size: int) -> CheckpointRow | None:
        r = self._con.execute("SELECT stream_id, size, root, note, time_ns, kind, cosignature, ingest_ts FROM "
                              "checkpoints WHERE stream_id = ? AND size = ?", (stream_id, size)).fetchone()
        return None if r is None else CheckpointRow(*r)

    def insert_finding(self, f: Finding) -> None:
        self._con.execute("INSERT INTO findings (stream_id, stream_seq, kind, reason, ingest_ts, evidence) VALUES "
                          "(?, ?, ?, ?, ?, ?)", f)

    def has_finding(self, stream_id: str, seq: int, kind: str) -> bool:
        return self._con.execute("SELECT 1 FROM findings WHERE stream_id = ? AND stream_seq = ? AND kind = ?",
                                 (stream_id, seq, kind)).fetchone() is not None

    def leaves(self, stream_id: str, lo: int, hi: int) -> list[bytes]:
        return [d for (d,) in self._con.execute("SELECT digest FROM events WHERE stream_id = ? AND stream_seq >= ? "
                                                "AND stream_seq < ? ORDER BY stream_seq", (stream_id, lo, hi))]

    def tiles(self, stream_id: str, level: int, lo: int, hi: int) -> list[bytes]:
        return [h for (h,) in self._con.execute("SELECT hash FROM tiles WHERE stream_id = ? AND level = ? AND idx >= ? "
                                                "AND idx < ? ORDER BY idx", (stream_id, level, lo, hi))]

    def insert_tile(self, stream_id: str, level: int, idx: int, digest: bytes) -> None:
        self._con.execute("INSERT INTO tiles VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                          (stream_id, level, idx, digest))
