"""The PostgreSQL store (``postgresql://user@host:port/db``, also ``postgres://``), behind the same Store / Writer
protocol as the SQLite one, with psycopg 3 (docs/service.md §3).

* ``events`` is partitioned by RANGE on event time (``ts``, unix nanoseconds), one partition a month, created on
  demand inside the ingest transaction by ``audit_partition(month)``, a SECURITY DEFINER function of the owner
  (the service role cannot create tables); ``events_default`` catches what falls outside the window of months
  that get a partition (over ten years back, or more than two months ahead) and any month whose rows reached it
  first.
* rows arrive by binary COPY (``cursor.copy``); each write transaction first takes one transaction-scoped advisory lock,
  so writers are serialized across service instances as SQLite's ``BEGIN IMMEDIATE`` serializes them: ingest
  seqs are then committed in order (the polling mode never skips a row) and the per-stream checks (a partitioned
  table has no global unique index on the stream's seq) see every committed row.
* append-only: triggers refuse UPDATE and DELETE on events, envelopes, checkpoints, findings and tiles, and
  TRUNCATE on them; the service's role is granted INSERT and SELECT only (and UPDATE of ``streams``, the derived
  state), so it cannot TRUNCATE or drop what the triggers do not cover. Migrations run as the owner:
  ``otel-audit store-migrate --store OWNER_URL --grant SERVICE_ROLE``.
* versioned migrations in ``schema_version``; a newer schema than this otel-audit knows is refused.
* full text: a GIN index on the ``tsvector`` of the record's text (the ``simple`` configuration: words
  lower-cased, no stemming); every word of ``q`` is bound as a parameter of ``phraseto_tsquery``, so no query syntax of
  the caller's reaches the engine.
* durable acknowledgement: ``synchronous_commit = on`` for the writer's session; a commit returns once the
  server has flushed its WAL.

A password in the URL is never shown: `url` masks it (``postgresql://svc:***@host/db``).
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from otel_audit.errors import ConfigError
from otel_audit.service.store import (
    EVENT_COLUMNS,
    CheckpointRow,
    Dialect,
    EventRow,
    Finding,
    Page,
    StoreTimeout,
    StoreUnavailable,
    StreamState,
)

if TYPE_CHECKING:
    import psycopg

_log = logging.getLogger("otel_audit.service.store")

#: the store's advisory lock (one writer at a time, across every service instance of the database)
WRITER_LOCK = 0x6F74656C5F617564  # "otel_aud"
#: months before now that still get their own partition; older rows go to the default partition
MONTHS_BACK = 120
MONTHS_AHEAD = 2
#: full-text search reads the first this many characters of a record's text (a tsvector holds at most 1 MB)
TEXT_INDEXED = 100_000
#: the indexed expression (a GIN index on it, no stored tsvector column: a tenth faster COPY, less WAL); a query
#: repeats it exactly, so the planner uses the index
FTS = f"to_tsvector('simple'::regconfig, left(coalesce(e.text, ''), {TEXT_INDEXED}))"

_APPEND_ONLY = ("events", "envelopes", "checkpoints", "findings", "tiles")

#: Each migration takes the schema from version i to i + 1; never edit one that shipped, add the next.
#: Run by the owner, in one transaction each; ``{fts}`` (the full-text expression) is the only substitution.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE envelopes (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        digest BYTEA NOT NULL UNIQUE,
        resource BYTEA NOT NULL,
        scope BYTEA NOT NULL
    );
    CREATE SEQUENCE events_seq AS BIGINT;
    CREATE TABLE events (
        seq BIGINT NOT NULL DEFAULT nextval('events_seq'),
        id TEXT COLLATE "C" NOT NULL,
        stream_id TEXT COLLATE "C",
        stream_seq BIGINT,
        ts BIGINT NOT NULL,
        observed_ts BIGINT NOT NULL,
        ingest_ts BIGINT NOT NULL,
        event TEXT COLLATE "C" NOT NULL,
        category TEXT COLLATE "C",
        outcome TEXT COLLATE "C",
        actor TEXT COLLATE "C",
        user_id TEXT COLLATE "C",
        target_type TEXT COLLATE "C",
        target_id TEXT COLLATE "C",
        client_address TEXT COLLATE "C",
        client_address_key TEXT COLLATE "C",
        service TEXT COLLATE "C",
        session_id TEXT COLLATE "C",
        trace_id TEXT COLLATE "C",
        severity BIGINT NOT NULL,
        severity_text TEXT COLLATE "C" NOT NULL,
        body TEXT COLLATE "C",
        attrs TEXT COLLATE "C" NOT NULL,
        envelope BIGINT NOT NULL REFERENCES envelopes (id),
        record BYTEA NOT NULL,
        canonical BYTEA,
        digest BYTEA,
        prev BYTEA,
        signed TEXT COLLATE "C" NOT NULL,
        text TEXT COLLATE "C",
        PRIMARY KEY (ts, seq)
    ) PARTITION BY RANGE (ts);
    CREATE TABLE events_default PARTITION OF events DEFAULT;
    CREATE INDEX events_seq_idx ON events (seq);
    CREATE INDEX events_id ON events (id);
    CREATE INDEX events_stream ON events (stream_id, stream_seq);
    CREATE INDEX events_actor ON events (actor, ts);
    CREATE INDEX events_user ON events (user_id, ts);
    CREATE INDEX events_event ON events (event, ts);
    CREATE INDEX events_category ON events (category, ts);
    CREATE INDEX events_target ON events (target_id, ts);
    CREATE INDEX events_client ON events (client_address_key, ts);
    CREATE INDEX events_session ON events (session_id, ts);
    CREATE INDEX events_trace ON events (trace_id);
    CREATE INDEX events_fts ON events USING gin ({fts});
    CREATE TABLE streams (
        stream_id TEXT COLLATE "C" PRIMARY KEY,
        service TEXT COLLATE "C",
        length BIGINT NOT NULL,
        head BYTEA NOT NULL,
        tree BYTEA NOT NULL,
        proven BIGINT NOT NULL,
        proven_root BYTEA NOT NULL,
        closed INTEGER NOT NULL,
        records BIGINT NOT NULL,
        failed BIGINT NOT NULL,
        first_ingest BIGINT NOT NULL,
        last_ingest BIGINT NOT NULL,
        last_checkpoint_ts BIGINT NOT NULL
    );
    CREATE TABLE checkpoints (
        stream_id TEXT COLLATE "C" NOT NULL,
        size BIGINT NOT NULL,
        root BYTEA NOT NULL,
        note TEXT COLLATE "C" NOT NULL,
        time_ns BIGINT NOT NULL,
        kind TEXT COLLATE "C" NOT NULL,
        cosignature TEXT COLLATE "C" NOT NULL,
        ingest_ts BIGINT NOT NULL,
        PRIMARY KEY (stream_id, size)
    );
    CREATE TABLE tiles (
        stream_id TEXT COLLATE "C" NOT NULL,
        level INTEGER NOT NULL,
        idx BIGINT NOT NULL,
        hash BYTEA NOT NULL,
        PRIMARY KEY (stream_id, level, idx)
    );
    CREATE TABLE findings (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        stream_id TEXT COLLATE "C",
        stream_seq BIGINT,
        kind TEXT COLLATE "C" NOT NULL,
        reason TEXT COLLATE "C" NOT NULL,
        ingest_ts BIGINT NOT NULL,
        evidence BYTEA NOT NULL
    );
    CREATE INDEX findings_stream ON findings (stream_id, stream_seq);
    CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'append-only: % on % refused', TG_OP, TG_TABLE_NAME;
    END $$;
    CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
        FOR EACH ROW EXECUTE FUNCTION audit_append_only();
    CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
        FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
    CREATE TRIGGER events_default_no_truncate BEFORE TRUNCATE ON events_default
        FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
    CREATE TRIGGER events_append_only_statement BEFORE UPDATE OR DELETE ON events
        FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
    CREATE TRIGGER envelopes_append_only_statement BEFORE UPDATE OR DELETE OR TRUNCATE ON envelopes
        FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
    CREATE TRIGGER checkpoints_append_only_statement BEFORE UPDATE OR DELETE OR TRUNCATE ON checkpoints
        FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
    CREATE TRIGGER findings_append_only_statement BEFORE UPDATE OR DELETE OR TRUNCATE ON findings
        FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
    CREATE TRIGGER tiles_append_only_statement BEFORE UPDATE OR DELETE OR TRUNCATE ON tiles
        FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
    CREATE FUNCTION audit_partition(month INTEGER) RETURNS void LANGUAGE plpgsql SECURITY DEFINER
        SET search_path FROM CURRENT AS $$
    DECLARE
        first DATE;
        lo BIGINT;
        hi BIGINT;
        name TEXT;
    BEGIN
        IF month IS NULL OR month < 0 OR month > 3503 THEN
            RAISE EXCEPTION 'audit_partition: month % is outside 1970-01 .. 2261-12', month;
        END IF;
        first := make_date(1970 + month / 12, month % 12 + 1, 1);
        name := 'events_' || to_char(first, 'YYYY_MM');
        IF to_regclass(quote_ident(name)) IS NOT NULL THEN
            RETURN;
        END IF;
        lo := extract(epoch FROM first::timestamp AT TIME ZONE 'UTC')::BIGINT * 1000000000;
        hi := extract(epoch FROM (first + INTERVAL '1 month')::timestamp AT TIME ZONE 'UTC')::BIGINT * 1000000000;
        IF EXISTS (SELECT 1 FROM events_default WHERE ts >= lo AND ts < hi) THEN
            RETURN;  -- that month's rows already went to the default partition: they stay there
        END IF;
        EXECUTE format('CREATE TABLE %I PARTITION OF events FOR VALUES FROM (%s) TO (%s)', name, lo, hi);
        EXECUTE format('CREATE TRIGGER no_truncate BEFORE TRUNCATE ON %I '
                       'FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()', name);
    END $$;
    REVOKE ALL ON FUNCTION audit_partition(INTEGER) FROM PUBLIC;
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

#: what a service role is granted (after every migration): reading everything, appending rows, the streams' state
_GRANTS = (
    "GRANT USAGE ON SCHEMA {schema} TO {role}",
    "GRANT SELECT ON schema_version, envelopes, events, streams, checkpoints, tiles, findings TO {role}",
    "GRANT INSERT ON envelopes, events, streams, checkpoints, tiles, findings TO {role}",
    "GRANT UPDATE ON streams TO {role}",
    "GRANT USAGE ON SEQUENCE events_seq TO {role}",
    "GRANT EXECUTE ON FUNCTION audit_partition(INTEGER) TO {role}",
)

#: the event columns COPY writes (seq is the database's); resource and scope become their envelope's id
_COPIED = tuple("envelope" if c == "resource" else c for c in EVENT_COLUMNS if c != "scope")
_RES, _SCOPE = EVENT_COLUMNS.index("resource"), EVENT_COLUMNS.index("scope")
_BIGINT = frozenset({"stream_seq", "ts", "observed_ts", "ingest_ts", "severity", "envelope"})
_BYTEA = frozenset({"record", "canonical", "digest", "prev"})
#: the COPY columns' types: binary COPY (a fifth faster than text on these rows) needs them
_COPY_TYPES = tuple("bigint" if c in _BIGINT else "bytea" if c in _BYTEA else "text" for c in _COPIED)
_STREAM_PROVEN = "(SELECT s.proven FROM streams s WHERE s.stream_id = e.stream_id)"
#: an event's status, from the events row alone (the filter columns stay unambiguous: only `e` is in scope)
STATUS = ("(CASE WHEN e.stream_id IS NULL THEN 'unsigned' "
          "WHEN EXISTS (SELECT 1 FROM findings f WHERE f.stream_id = e.stream_id AND f.stream_seq = e.stream_seq "
          "AND f.kind <> 'variant') "
          f"THEN 'failed' WHEN e.stream_seq < {_STREAM_PROVEN} THEN 'proven' ELSE 'pending' END)")
_SELECT = ("SELECT e.seq, e.id, e.stream_id, e.stream_seq, e.ts, e.observed_ts, e.ingest_ts, e.event, e.category, "
           "e.outcome, e.actor, e.user_id, e.target_type, e.target_id, e.client_address, e.service, e.session_id, "
           f"e.trace_id, e.severity, e.severity_text, e.body, e.attrs, e.digest, e.signed, {STATUS} AS status, "
           f"{_STREAM_PROVEN} AS proven FROM events e")
_QUERY_COLUMNS = ("seq", "id", "stream_id", "stream_seq", "ts", "observed_ts", "ingest_ts", "event", "category",
                  "outcome", "actor", "user_id", "target_type", "target_id", "client_address", "service",
                  "session_id", "trace_id", "severity", "severity_text", "body", "attrs", "digest", "signed",
                  "status", "proven")


class PostgresDialect(Dialect):
    """The SQL of a query (otel_audit.service.query) for this store: %s parameters, the status expression in
    place of its alias, a tsvector search, the filter over the events row in place."""

    placeholder = "%s"
    status = STATUS

    def full_text(self, words: Sequence[str]) -> tuple[str, list[Any]]:
        query = " && ".join("phraseto_tsquery('simple', %s)" for _ in words)
        return f"{FTS} @@ ({query})", list(words)

    def filter_rows(self, sql: str) -> str:
        return sql

    def filter_any(self, sqls: Sequence[str]) -> str:
        return "(" + " OR ".join(f"({sql})" for sql in sqls) + ")"

    def stored(self, value: Any) -> Any:
        """PostgreSQL text cannot hold NUL: a NUL of a text column is stored as U+FFFD (the record's bytes, where
        the digest is computed over, keep it)."""
        return value.replace("\x00", "\ufffd") if isinstance(value, str) and "\x00" in value else value


DIALECT = PostgresDialect()


def mask(url: str) -> str:
    """The URL with any password replaced by ``***`` (in the authority and in a ``password=`` parameter)."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hostport = netloc.rpartition("@")
            if ":" in userinfo:
                userinfo = userinfo.split(":", 1)[0] + ":***"
            netloc = f"{userinfo}@{hostport}"
        query = parts.query
        if query:
            pairs = [(k, "***" if k.lower() in ("password", "sslpassword") else v)
                     for k, v in parse_qsl(query, keep_blank_values=True)]
            query = urlencode(pairs, safe="*")
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return url.split("://", 1)[0] + "://***"


#: a connection idle longer than this is pinged before use: a server restarted meanwhile closed it
PING_AFTER_S = 2.0
#: the writer's bounds (several instances share the write lock): how long a transaction waits for the lock before
#: the request is answered 503 (retryable), and after how long the server ends a session that holds it without
#: working (an instance frozen, stopped or cut off mid-transaction) or runs one statement too long, releasing it
LOCK_WAIT = "5s"
IDLE_IN_TRANSACTION = "30s"
STATEMENT = "120s"


def _alive(con: psycopg.Connection[Any], idle_since: float) -> bool:
    """Whether a kept connection still works (pinged only when it has been idle a while)."""
    import time

    import psycopg

    if con.broken or con.closed:
        return False
    if time.monotonic() - idle_since < PING_AFTER_S:
        return True
    try:
        con.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def _bounded(con: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    """The writer's session with its bounds (LOCK_WAIT, IDLE_IN_TRANSACTION, STATEMENT)."""
    con.execute(f"SET lock_timeout = '{LOCK_WAIT}'")
    con.execute(f"SET idle_in_transaction_session_timeout = '{IDLE_IN_TRANSACTION}'")
    con.execute(f"SET statement_timeout = '{STATEMENT}'")
    return con


def _reason(exc: BaseException) -> str:
    """A psycopg error as one line (libpq's messages span lines; none holds the password): the server's primary
    message when there is one (not the LINE / caret lines that quote the statement)."""
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    text = " ".join((primary or str(exc)).split())
    return text.removeprefix("connection failed: ")[:400] or type(exc).__name__


def _month(ts: int) -> int:
    d = datetime.datetime.fromtimestamp(ts // 1_000_000_000, tz=datetime.timezone.utc)
    return (d.year - 1970) * 12 + d.month - 1


def _connect(url: str, shown: str, *, readonly: bool = False) -> psycopg.Connection[Any]:
    import psycopg

    try:
        con = psycopg.connect(url, autocommit=True, connect_timeout=10, application_name="otel-audit")
    except psycopg.Error as exc:
        raise ConfigError(f"store: {shown}: cannot connect: {_reason(exc)}") from None
    except ValueError as exc:  # a malformed URL (psycopg.conninfo)
        raise ConfigError(f"store: {shown}: not a PostgreSQL URL ({_reason(exc)})") from None
    con.execute("SET synchronous_commit = on")
    if readonly:
        con.execute("SET default_transaction_read_only = on")
    return con


class _Pool:
    """Reader connections, made on demand, kept up to `keep`; a broken one is dropped."""

    def __init__(self, url: str, shown: str, readonly: bool, keep: int = 8) -> None:
        self._url, self._shown, self._readonly, self._keep = url, shown, readonly, keep
        self._free: list[tuple[psycopg.Connection[Any], float]] = []  # and when each went idle
        self._all: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        import time

        import psycopg

        con = None
        while con is None:
            with self._lock:
                kept = self._free.pop() if self._free else None
            if kept is None:
                break
            if not _alive(*kept):
                with self._lock:
                    self._all.remove(kept[0])
                kept[0].close()
            else:
                con = kept[0]
        if con is None:
            try:
                con = _connect(self._url, self._shown, readonly=self._readonly)
            except ConfigError as exc:
                raise StoreUnavailable(str(exc)) from None
            with self._lock:
                self._all.append(con)
        try:
            yield con
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            if not (con.broken or con.closed):
                raise
            raise StoreUnavailable(f"store: {self._shown}: {_reason(exc)}") from None
        finally:
            with self._lock:
                if con.broken or con.closed or len(self._free) >= self._keep:
                    self._all.remove(con)
                    con.close()
                else:
                    self._free.append((con, time.monotonic()))

    def close(self) -> None:
        with self._lock:
            for con in self._all:
                con.close()
            self._all.clear()
            self._free.clear()


def _schema_version(con: psycopg.Connection[Any]) -> int:
    if con.execute("SELECT to_regclass('schema_version')").fetchone() == (None,):
        return 0
    r = con.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(r[0]) if r and r[0] is not None else 0


def _apply(con: psycopg.Connection[Any], shown: str, grant: Sequence[str] = ()) -> int:
    """The migrations this schema lacks and the grants, in one transaction on `con` (psycopg errors raised)."""
    import time

    from psycopg import sql

    with con.transaction():
        con.execute("SELECT pg_advisory_xact_lock(%s)", (WRITER_LOCK,))
        con.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
                    "applied_ns BIGINT NOT NULL)")
        version = _schema_version(con)
        if version > SCHEMA_VERSION:
            raise ConfigError(f"store: {shown}: schema version {version} is newer than this otel-audit knows "
                              f"({SCHEMA_VERSION}); upgrade otel-audit")
        (schema,) = con.execute("SELECT current_schema()").fetchone() or (None,)
        if schema is None:
            raise ConfigError(f"store: {shown}: no schema to create the tables in (check search_path)")
        # the partition function keeps the schema it was made in (SET search_path FROM CURRENT)
        con.execute(sql.SQL("SET LOCAL search_path = {}").format(sql.Identifier(schema)))
        for i in range(version, SCHEMA_VERSION):
            con.execute(MIGRATIONS[i].replace("{fts}", FTS.replace("e.text", "text")))
            con.execute("INSERT INTO schema_version VALUES (%s, %s)", (i + 1, time.time_ns()))
        for role in grant:
            for g in _GRANTS:
                con.execute(sql.SQL(g).format(schema=sql.Identifier(schema), role=sql.Identifier(role)))
    return SCHEMA_VERSION


def migrate(url: str, grant: Sequence[str] = ()) -> int:
    """Bring the schema up to this otel-audit's version, connected as the tables' owner, and grant each role of
    `grant` what the service needs (INSERT and SELECT, UPDATE of the streams' state). Returns the version."""
    import psycopg

    shown = mask(url)
    con = _connect(url, shown)
    try:
        return _apply(con, shown, grant)
    except psycopg.Error as exc:
        raise ConfigError(f"store: {shown}: migration failed: {_reason(exc)}") from None
    finally:
        con.close()


class PostgresStore:
    """A PostgreSQL store (see the module docstring). One writer connection (a lock, and the advisory lock across
    instances); readers come from a small pool."""

    dialect = DIALECT

    def __init__(self, url: str, *, create: bool = True, readonly: bool = False) -> None:
        import psycopg

        self._dsn = "postgresql://" + url.split("://", 1)[1] if url.startswith("postgres://") else url
        self.url = mask(self._dsn)
        self.readonly = readonly
        self._lock = threading.Lock()
        self._months: set[int] = set()
        con = _connect(self._dsn, self.url, readonly=readonly)
        try:
            version = _schema_version(con)
            if version < SCHEMA_VERSION and create and not readonly:
                try:
                    version = _apply(con, self.url)
                except psycopg.Error as exc:
                    (user,) = con.execute("SELECT current_user").fetchone() or ("?",)
                    raise ConfigError(f"store: {self.url}: schema version {version}, this otel-audit needs "
                                      f"{SCHEMA_VERSION}, and role {user} cannot migrate it ({_reason(exc)}); run "
                                      "otel-audit store-migrate --store <the owner's URL> --grant "
                                      f"{user}") from None
            if version > SCHEMA_VERSION:
                raise ConfigError(f"store: {self.url}: schema version {version} is newer than this otel-audit "
                                  f"knows ({SCHEMA_VERSION}); upgrade otel-audit")
            if version != SCHEMA_VERSION:
                raise ConfigError(f"store: {self.url}: " + ("no otel-audit store here" if version == 0 else
                                  f"schema version {version}, this otel-audit reads {SCHEMA_VERSION}")
                                  + "; run otel-audit store-migrate --store <the owner's URL>")
            if not readonly and con.execute(
                    "SELECT pg_has_role(current_user, tableowner, 'USAGE') FROM pg_tables "
                    "WHERE tablename = 'events' AND schemaname = current_schema()").fetchone() == (True,):
                _log.warning("store %s: the service connects as the owner of the tables, which can TRUNCATE "
                             "them; connect as a role granted INSERT and SELECT only (docs/service.md §3)",
                             self.url)
        except psycopg.Error as exc:
            con.close()
            raise ConfigError(f"store: {self.url}: {_reason(exc)}") from None
        except BaseException:
            con.close()
            raise
        self._w: psycopg.Connection[Any] | None = None if readonly else _bounded(con)
        self._w_idle = 0.0
        if readonly:
            con.close()
        self._readers = _Pool(self._dsn, self.url, readonly)

    def _writer_connection(self) -> psycopg.Connection[Any]:
        con = self._w
        if con is None or not _alive(con, self._w_idle):
            if con is not None:
                con.close()
            self._w = None
            con = self._w = _bounded(_connect(self._dsn, self.url))
        return con

    @contextmanager
    def writer(self) -> Iterator[_PostgresWriter]:
        if self.readonly:
            raise ConfigError(f"store: {self.url}: opened read-only")
        import time

        import psycopg

        with self._lock:
            try:
                con = self._writer_connection()
            except ConfigError as exc:  # the server is down: a store failure of this request (503), said in one line
                raise StoreUnavailable(str(exc)) from None
            months = set(self._months)
            try:
                with con.transaction():
                    con.execute("SELECT pg_advisory_xact_lock(%s)", (WRITER_LOCK,))
                    w = _PostgresWriter(con, months)
                    yield w
            except (psycopg.errors.LockNotAvailable, psycopg.errors.QueryCanceled) as exc:
                # the write lock held elsewhere longer than LOCK_WAIT (another instance busy or frozen), or a
                # statement over STATEMENT: nothing was written; retryable
                raise StoreUnavailable(f"store: {self.url}: busy: {_reason(exc)} (another service instance holds the "
                                       "store's write lock; retry)") from None
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                if not (con.broken or con.closed):
                    raise
                raise StoreUnavailable(f"store: {self.url}: {_reason(exc)}") from None
            finally:
                self._w_idle = time.monotonic()
            self._months = months  # the partitions it made exist once it committed

    # -- reading

    def query(self, where: str, params: Sequence[Any], *, order: str, limit: int,
              after: tuple[Any, ...] | None, offset: int = 0) -> Page:
        """Events matching `where` (SQL over the events table aliased e, with %s parameters), in `order`:
        "ts" / "-ts" (event time, then seq) or "seq" (ingest order); keyset `after` the last row's key;
        `offset` rows skipped first (page-numbered APIs; keyset paging is the one that scales)."""
        clauses = [f"({where})"] if where else []
        args = list(params)
        if order == "seq":
            if after is not None:
                clauses.append("e.seq > %s")
                args.append(after[0])
            sort = "e.seq ASC"
        elif order in ("ts", "-ts"):
            op, direction = (">", "ASC") if order == "ts" else ("<", "DESC")
            if after is not None:
                clauses.append(f"(e.ts {op} %s OR (e.ts = %s AND e.seq {op} %s))")
                args += [after[0], after[0], after[1]]
            sort = f"e.ts {direction}, e.seq {direction}"
        else:
            raise ValueError(f"order {order!r}")
        sql = (_SELECT + (" WHERE " + " AND ".join(clauses) if clauses else "")
               + f" ORDER BY {sort} LIMIT %s OFFSET %s")
        args += [limit + 1, offset]
        with self._readers.connection() as con:
            rows = [dict(zip(_QUERY_COLUMNS, r, strict=True)) for r in con.execute(sql, args).fetchall()]
        nxt = None
        if len(rows) > limit:
            rows = rows[:limit]
            last = rows[-1]
            nxt = (last["seq"],) if order == "seq" else (last["ts"], last["seq"])
        return Page(rows, nxt)

    @contextmanager
    def _deadline(self, seconds: float | None, snapshot: bool = False) -> Iterator[psycopg.Connection[Any]]:
        """A reader connection in a transaction whose statements are cancelled after `seconds` (StoreTimeout);
        `snapshot`: every statement of it sees the same committed rows (REPEATABLE READ)."""
        import psycopg

        with self._readers.connection() as con, con.transaction():
            if snapshot:
                con.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            if seconds is not None:
                con.execute("SELECT set_config('statement_timeout', %s, true)", (f"{max(1, int(seconds * 1000))}ms",))
            try:
                yield con
            except psycopg.errors.QueryCanceled:
                raise StoreTimeout(f"the store did not answer within {seconds:g} s") from None

    def count(self, where: str, params: Sequence[Any], *, cap: int | None = None,
              deadline: float | None = None) -> int:
        """How many events match `where` (at most `cap` + 1 are counted when a cap is given)."""
        inner = "SELECT 1 FROM events e" + (f" WHERE {where}" if where else "")
        args = list(params)
        if cap is not None:
            inner += " LIMIT %s"
            args.append(cap + 1)
        with self._deadline(deadline) as con:
            row = con.execute(f"SELECT count(*) FROM ({inner}) AS matched", args).fetchone()
        return int(row[0]) if row else 0

    def facets(self, where: str, params: Sequence[Any], fields: Sequence[str], *, top: int, max_scan: int,
               contains: str | None = None, deadline: float | None = None) -> dict[str, Any]:
        """As SqliteStore.facets: per facet the `top` most frequent values (ties by value), `missing` and `other`,
        over the newest `max_scan` matching events by ingest order; grouped by the server (bounded by its
        work_mem, spilling to disk), one statement per facet in one read-only snapshot."""
        from otel_audit.service.store.sqlite import FACET_COLUMNS

        unknown = [f for f in fields if f not in FACET_COLUMNS]
        if unknown:
            raise ValueError(f"unknown facet {unknown[0]!r}")
        cols = ", ".join(f"{STATUS if f == 'status' else FACET_COLUMNS[f]} AS f{i}" for i, f in enumerate(fields))
        scan = (f"SELECT {cols or '1 AS f0'} FROM events e" + (f" WHERE {where}" if where else "")
                + " ORDER BY e.seq DESC LIMIT %s")
        out: dict[str, Any] = {}
        with self._deadline(deadline, snapshot=True) as con:
            row = con.execute(f"SELECT count(*) FROM ({scan}) AS scan", [*params, max_scan]).fetchone()
            scanned = int(row[0]) if row else 0
            for i, f in enumerate(fields):
                col = f"f{i}"
                cond = f"WHERE {col} IS NULL OR strpos(lower({col}), lower(%s)) > 0" if contains else ""
                rows = con.execute(
                    f"SELECT {col}, count(*) AS n FROM ({scan}) AS scan {cond} GROUP BY {col} "
                    f"ORDER BY {col} IS NULL DESC, n DESC, {col} LIMIT %s",
                    [*params, max_scan, *([contains] if contains else []), top + 1]).fetchall()
                missing = 0
                if rows and rows[0][0] is None:
                    missing = int(rows.pop(0)[1])
                values = [(v, int(n)) for v, n in rows[:top]]
                out[f] = {"values": values, "missing": missing,
                          "other": scanned - missing - sum(n for _, n in values)}
        return {"scanned": scanned, "facets": out}

    def get(self, event_id: str) -> dict[str, Any] | None:
        if "\x00" in event_id:  # PostgreSQL text cannot hold NUL: no stored id has one
            return None
        with self._readers.connection() as con:
            r = con.execute(_SELECT + " WHERE e.id = %s", (event_id,)).fetchone()
        return None if r is None else dict(zip(_QUERY_COLUMNS, r, strict=True))

    def _dicts(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._readers.connection() as con:
            cur = con.execute(sql, args)
            names = [d.name for d in cur.description or ()]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def streams(self) -> list[dict[str, Any]]:
        return self._dicts(
            "SELECT stream_id, service, length, proven, closed, records, failed, first_ingest, last_ingest, "
            "last_checkpoint_ts, (SELECT count(DISTINCT f.stream_seq) FROM findings f WHERE f.stream_id = s.stream_id "
            "AND f.kind != 'variant' AND f.stream_seq < s.proven) AS failed_sealed, "
            # who signed it, as its first record says (a stream started at ingest begins with the service's start
            # checkpoint; no client's row can say "ingest"): read from the store, so every instance agrees
            "(SELECT e.signed FROM events e WHERE e.stream_id = s.stream_id AND e.stream_seq = 0) AS signed "
            "FROM streams s ORDER BY first_ingest, stream_id")

    def checkpoints(self, stream_id: str | None = None) -> list[dict[str, Any]]:
        if stream_id and "\x00" in stream_id:
            return []
        sql = "SELECT stream_id, size, root, note, time_ns, kind, cosignature, ingest_ts FROM checkpoints"
        if stream_id:
            return self._dicts(sql + " WHERE stream_id = %s ORDER BY size", (stream_id,))
        return self._dicts(sql + " ORDER BY stream_id, size")

    def findings(self, stream_id: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        if stream_id and "\x00" in stream_id:
            return []
        sql = "SELECT id, stream_id, stream_seq, kind, reason, ingest_ts, evidence FROM findings"
        if stream_id:
            return self._dicts(sql + " WHERE stream_id = %s ORDER BY id LIMIT %s", (stream_id, limit))
        return self._dicts(sql + " ORDER BY id LIMIT %s", (limit,))

    def proof_material(self, event_id: str, size: int | None = None) -> dict[str, Any] | None:
        """As SqliteStore.proof_material: the event's chain material and its inclusion path from tiles."""
        from otel_audit.service.tiles import BLOCK, Tree

        if "\x00" in event_id:
            return None
        with self._readers.connection() as con, con.transaction():
            r = con.execute("SELECT stream_id, stream_seq, prev, canonical FROM events WHERE id = %s",
                            (event_id,)).fetchone()
            if r is None:
                return None
            sid, seq, prev, canon = r
            out: dict[str, Any] = {"stream_id": sid, "seq": seq, "prev": prev, "canonical": canon,
                                   "checkpoint": None, "path": [], "missing": False}
            if sid is None:
                return out
            if size is None:
                cp = con.execute("SELECT size, note, cosignature FROM checkpoints WHERE stream_id = %s AND size > %s "
                                 "ORDER BY size DESC LIMIT 1", (sid, seq)).fetchone()
            else:
                cp = con.execute("SELECT size, note, cosignature FROM checkpoints WHERE stream_id = %s AND size = %s "
                                 "AND size > %s", (sid, size, seq)).fetchone()
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
                        rows = con.execute("SELECT stream_seq, digest FROM events WHERE stream_id = %s AND "
                                           "stream_seq >= %s AND stream_seq < %s ORDER BY stream_seq",
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
                rows = dict(con.execute("SELECT idx, hash FROM tiles WHERE stream_id = %s AND level = %s AND "
                                        "idx >= %s AND idx < %s", (sid, level, lo, hi)).fetchall())
                return [rows.get(i) for i in range(lo, hi)]

            out["path"] = Tree(leaves, tiles).inclusion_path(seq, cp[0])
            out["missing"] = missing
            return out

    def otlp_records(self, event_ids: Sequence[str]) -> dict[str, tuple[bytes, bytes, bytes]]:
        """As SqliteStore.otlp_records: (resource, scope, logRecord) OTLP/JSON exactly as stored, by event id."""
        ids = [i for i in event_ids if "\x00" not in i]
        out: dict[str, tuple[bytes, bytes, bytes]] = {}
        with self._readers.connection() as con:
            for i in range(0, len(ids), 1000):
                for eid, res, scope, rec in con.execute(
                        "SELECT e.id, v.resource, v.scope, e.record FROM events e "
                        "JOIN envelopes v ON v.id = e.envelope WHERE e.id = ANY(%s)", (ids[i:i + 1000],)).fetchall():
                    out[eid] = (bytes(res), bytes(scope), bytes(rec))
        return out

    def iter_rows(self) -> Iterator[dict[str, Any]]:
        """Every event row as stored, in ingest order (for `verify --store`), read with a server-side cursor."""
        names = [c for c in EVENT_COLUMNS if c not in ("id", "resource", "scope", "record", "text")]
        cols = ", ".join("e." + n for n in names)
        con = _connect(self._dsn, self.url, readonly=True)
        try:
            with con.transaction(), con.cursor(name="otel_audit_rows") as cur:
                cur.itersize = 2000
                cur.execute(f"SELECT e.seq, e.id, v.resource, v.scope, e.record, {cols} "
                            "FROM events e JOIN envelopes v ON v.id = e.envelope ORDER BY e.seq")
                for r in cur:
                    yield {"seq": r[0], "id": r[1], "resource": r[2], "scope": r[3], "record": r[4],
                           "columns": dict(zip(names, r[5:], strict=True))}
        finally:
            con.close()

    def close(self) -> None:
        with self._lock:
            if self._w is not None:
                self._w.close()
                self._w = None
        self._readers.close()


class _PostgresWriter:
    def __init__(self, con: psycopg.Connection[Any], months: set[int]) -> None:
        self._con = con
        self._months = months

    def stream(self, stream_id: str) -> StreamState | None:
        r = self._con.execute(
            "SELECT stream_id, service, length, head, tree, proven, proven_root, closed, records, failed, "
            "first_ingest, last_ingest, last_checkpoint_ts FROM streams WHERE stream_id = %s",
            (stream_id,)).fetchone()
        if r is None:
            return None
        return StreamState(r[0], r[1], r[2], r[3], r[4], r[5], r[6], bool(r[7]), r[8], r[9], r[10], r[11], r[12])

    def ingest_starts(self, after: int) -> list[tuple[int, str, str, str | None]]:
        """(ingest seq, stream id, event, body) of the seq-0 records signed at ingest stored after ingest seq
        `after`, in ingest order: the streams the service started, by any instance (writes are serialized by the
        advisory lock, so ingest seqs are committed in order and none is skipped)."""
        return list(self._con.execute(
            "SELECT seq, stream_id, event, body FROM events WHERE signed = 'ingest' AND stream_seq = 0 AND seq > %s "
            "ORDER BY seq", (after,)).fetchall())

    def unsealed(self) -> list[tuple[str, int]]:
        """(stream id, last checkpoint time) of every open stream with records after its last checkpoint."""
        return list(self._con.execute(
            "SELECT stream_id, last_checkpoint_ts FROM streams WHERE closed = 0 AND length > proven").fetchall())

    def put_stream(self, s: StreamState) -> None:
        self._con.execute(
            "INSERT INTO streams VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (stream_id) "
            "DO UPDATE SET service = excluded.service, length = excluded.length, head = excluded.head, "
            "tree = excluded.tree, proven = excluded.proven, proven_root = excluded.proven_root, "
            "closed = excluded.closed, records = excluded.records, failed = excluded.failed, "
            "last_ingest = excluded.last_ingest, last_checkpoint_ts = excluded.last_checkpoint_ts",
            (s.stream_id, DIALECT.stored(s.service), s.length, s.head, s.tree, s.proven, s.proven_root, int(s.closed),
             s.records, s.failed, s.first_ingest, s.last_ingest, s.last_checkpoint_ts))

    def stored_many(self, stream_id: str, seqs: Sequence[int]) -> list[tuple[int, bytes]]:
        """(seq, canonical bytes) of the stream's stored records among `seqs`."""
        want = sorted(set(seqs))
        lo, hi = want[0], want[-1]
        if hi - lo < 4 * len(want) + 64:  # the usual request: one run of seqs
            cur = self._con.execute("SELECT stream_seq, canonical FROM events WHERE stream_id = %s AND stream_seq "
                                    "BETWEEN %s AND %s", (stream_id, lo, hi))
            keep = set(want)
            return [(q, c) for q, c in cur.fetchall() if q in keep]
        cur = self._con.execute("SELECT stream_seq, canonical FROM events WHERE stream_id = %s AND "
                                "stream_seq = ANY(%s) ORDER BY stream_seq", (stream_id, want))
        return [(q, c) for q, c in cur.fetchall()]

    def following(self, stream_id: str, seq: int, limit: int) -> list[tuple[int, bytes, bytes, str, str | None,
                                                                           int, str]]:
        """(stream_seq, digest, prev, event, body, ts, id) of the stream's stored records from `seq` on."""
        return list(self._con.execute(
            "SELECT stream_seq, digest, prev, event, body, ts, id FROM events WHERE stream_id = %s AND "
            "stream_seq >= %s ORDER BY stream_seq LIMIT %s", (stream_id, seq, limit)).fetchall())

    def _envelopes(self, keys: list[tuple[bytes, bytes]]) -> dict[tuple[bytes, bytes], int]:
        digests = {k: hashlib.sha256(len(k[0]).to_bytes(8, "big") + k[0] + k[1]).digest() for k in keys}
        found = dict(self._con.execute("SELECT digest, id FROM envelopes WHERE digest = ANY(%s)",
                                       (list(digests.values()),)).fetchall())
        out = {}
        for k, d in digests.items():
            env = found.get(d)
            if env is None:
                r = self._con.execute("INSERT INTO envelopes (digest, resource, scope) VALUES (%s, %s, %s) "
                                      "RETURNING id", (d, k[0], k[1])).fetchone()
                assert r is not None
                env = found[d] = r[0]
            out[k] = int(env)
        return out

    def _partitions(self, rows: Sequence[EventRow]) -> None:
        import time

        now = _month(time.time_ns())
        months = {_month(r.ts) for r in rows if r.ts >= 0} - self._months
        for m in sorted(months):
            if now - MONTHS_BACK <= m <= now + MONTHS_AHEAD:
                self._con.execute("SELECT audit_partition(%s)", (m,))
            self._months.add(m)

    def insert_events(self, rows: Sequence[EventRow]) -> None:
        if not rows:
            return
        self._partitions(rows)
        envs = self._envelopes(list(dict.fromkeys((r.resource, r.scope) for r in rows)))
        with self._con.cursor() as cur, cur.copy(f"COPY events ({', '.join(_COPIED)}) FROM STDIN (FORMAT BINARY)"
                                                 ) as copy:
            copy.set_types(list(_COPY_TYPES))
            for row in rows:
                v = list(row)
                if any(type(x) is str and "\x00" in x for x in row):  # rare: NUL in a text column
                    v = [DIALECT.stored(x) for x in v]
                v[_RES] = envs[(row.resource, row.scope)]
                del v[_SCOPE]
                copy.write_row(v)

    def insert_checkpoint(self, row: CheckpointRow) -> bool:
        cur = self._con.execute("INSERT INTO checkpoints VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                                "ON CONFLICT DO NOTHING", row)
        return cur.rowcount == 1

    def checkpoint(self, stream_id: str, size: int) -> CheckpointRow | None:
        r = self._con.execute("SELECT stream_id, size, root, note, time_ns, kind, cosignature, ingest_ts FROM "
                              "checkpoints WHERE stream_id = %s AND size = %s", (stream_id, size)).fetchone()
        return None if r is None else CheckpointRow(*r)

    def insert_finding(self, f: Finding) -> None:
        self._con.execute("INSERT INTO findings (stream_id, stream_seq, kind, reason, ingest_ts, evidence) VALUES "
                          "(%s, %s, %s, %s, %s, %s)", [DIALECT.stored(x) for x in f])

    def has_finding(self, stream_id: str, seq: int, kind: str) -> bool:
        return self._con.execute("SELECT 1 FROM findings WHERE stream_id = %s AND stream_seq = %s AND kind = %s",
                                 (stream_id, seq, kind)).fetchone() is not None

    def leaves(self, stream_id: str, lo: int, hi: int) -> list[bytes]:
        return [d for (d,) in self._con.execute("SELECT digest FROM events WHERE stream_id = %s AND stream_seq >= %s "
                                                "AND stream_seq < %s ORDER BY stream_seq",
                                                (stream_id, lo, hi)).fetchall()]

    def tiles(self, stream_id: str, level: int, lo: int, hi: int) -> list[bytes]:
        return [h for (h,) in self._con.execute("SELECT hash FROM tiles WHERE stream_id = %s AND level = %s AND "
                                                "idx >= %s AND idx < %s ORDER BY idx",
                                                (stream_id, level, lo, hi)).fetchall()]

    def insert_tile(self, stream_id: str, level: int, idx: int, digest: bytes) -> None:
        self._con.execute("INSERT INTO tiles VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                          (stream_id, level, idx, digest))
