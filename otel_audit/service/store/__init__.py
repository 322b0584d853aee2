"""The audit service's store: one small interface, back ends by URL (docs/service.md §3).

``open_store(url)`` gives a :class:`Store`: ``sqlite:////var/lib/otel-audit/audit.db`` (the default, one file,
WAL) or ``postgresql://user@host:port/db`` (also ``postgres://``; time-partitioned, COPY, separate owner and
service roles: otel_audit/service/store/postgres.py). Rows are append-only: events, checkpoints and
findings are inserted, never updated or deleted (the database refuses it); a stream's state row is
the only mutable one, and it is derived: ``otel-audit verify --store`` re-proves every stream from
the event rows alone.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, NamedTuple, Protocol

from otel_audit.errors import ConfigError

#: The columns of an event row, in order (EventRow's fields).
EVENT_COLUMNS = (
    "id", "stream_id", "stream_seq", "ts", "observed_ts", "ingest_ts", "event", "category", "outcome", "actor",
    "user_id", "target_type", "target_id", "client_address", "client_address_key", "service", "session_id", "trace_id",
    "severity", "severity_text", "body", "attrs", "resource", "scope", "record", "canonical", "digest", "prev",
    "signed", "text",
)


class EventRow(NamedTuple):
    """One stored audit record. ``record`` is the logRecord's OTLP/JSON as received (strictly decoded),
    ``resource`` and ``scope`` its envelope's, so the OTLP/JSON line can be rebuilt for the verifier;
    ``canonical`` the exact bytes its digest is over; ``digest`` / ``prev`` the chain as carried."""

    id: str
    stream_id: str | None
    stream_seq: int | None
    ts: int
    observed_ts: int
    ingest_ts: int
    event: str
    category: str | None
    outcome: str | None
    actor: str | None
    user_id: str | None
    target_type: str | None
    target_id: str | None
    client_address: str | None
    client_address_key: str | None
    service: str | None
    session_id: str | None
    trace_id: str | None
    severity: int
    severity_text: str
    body: str | None
    attrs: str
    resource: bytes
    scope: bytes
    record: bytes
    canonical: bytes | None
    digest: bytes | None
    prev: bytes | None
    signed: str  # "source" (signed by its producer) or "none" (unsigned, stored as received)
    text: str  # what full-text search reads: the body and the string attribute values


class StreamState(NamedTuple):
    """What verify on ingest knows of one stream; `length` records 0..length-1 are present and linked,
    `head` is the digest of record length-1, `tree` the compact range of their leaves (32-byte hashes)."""

    stream_id: str
    service: str | None
    length: int
    head: bytes
    tree: bytes
    proven: int  # records 0..proven-1 are proven: the latest valid checkpoint's and those its note commits to
    proven_root: bytes
    closed: bool
    records: int
    failed: int
    first_ingest: int
    last_ingest: int
    last_checkpoint_ts: int


class CheckpointRow(NamedTuple):
    stream_id: str
    size: int
    root: bytes
    note: str
    time_ns: int
    kind: str
    cosignature: str  # the service's C2SP tlog-cosignature line for it
    ingest_ts: int


class Finding(NamedTuple):
    """A problem verify on ingest found: `kind` (digest, link, checkpoint, variant, fork, decode) and why."""

    stream_id: str | None
    stream_seq: int | None
    kind: str
    reason: str
    ingest_ts: int
    evidence: bytes  # the offending record's OTLP/JSON (or note), kept for the auditor


#: the facets a store counts (Store.facets): each named as the GET /v1/events parameter that narrows it
FACETS = ("action", "category", "outcome", "actor", "user", "service", "target.type", "target.id", "client.address",
          "session", "stream", "status")


class StoreTimeout(Exception):
    """A read took longer than the deadline it was given (the API answers 503: narrow the query)."""


class Page(NamedTuple):
    rows: list[dict[str, Any]]
    next_cursor: tuple[Any, ...] | None


class StoreUnavailable(ConnectionError):
    """The store cannot be reached now (a database server down or restarting): a request is answered 503,
    retryable. Its message is one line, naming the store by its URL with any password masked."""


class Dialect:
    """The bits of SQL a query (otel_audit.service.query) writes differently per store; this one is SQLite's.

    ``placeholder`` is a bound parameter's mark; ``status`` the expression a status test compares (SQLite: the
    select list's alias); `full_text` the condition that every word occurs; `filter_rows` the condition of a
    compiled ``filter=`` expression over the events table's own column names; `stored` a column value as the
    store keeps it (what ``verify --store`` compares a re-derived column with)."""

    placeholder = "?"
    status = "status"

    def full_text(self, words: Sequence[str]) -> tuple[str, list[Any]]:
        # every word a quoted FTS5 string: no operator of the caller's reaches the FTS query syntax
        return ("e.seq IN (SELECT rowid FROM events_fts WHERE events_fts MATCH ?)",
                [" ".join('"' + w.replace('"', '""') + '"' for w in words)])

    def filter_rows(self, sql: str) -> str:
        # compiled over the events table alone (its column names), then matched by the row's ingest seq
        return f"e.seq IN (SELECT seq FROM events WHERE {sql})"

    def filter_any(self, sqls: Sequence[str]) -> str:
        """The condition that any of the compiled expressions holds (a top-level "or" of ``filter=``): a UNION of
        one row set per side, each of which SQLite can answer from one index alone."""
        return "e.seq IN (" + " UNION ALL ".join(f"SELECT seq FROM events WHERE {sql}" for sql in sqls) + ")"

    def stored(self, value: Any) -> Any:
        """A column's value as this store keeps it (SQLite: as given)."""
        return value


SQLITE = Dialect()


class Writer(Protocol):
    """One write transaction (``with store.writer() as w``): committed durably on a clean exit."""

    def stream(self, stream_id: str) -> StreamState | None: ...
    def put_stream(self, state: StreamState) -> None: ...
    def stored_many(self, stream_id: str, seqs: Sequence[int]) -> list[tuple[int, bytes]]: ...
    def following(self, stream_id: str, seq: int, limit: int) -> list[tuple[int, bytes, bytes, str, str | None,
                                                                           int, str]]: ...
    def insert_events(self, rows: Sequence[EventRow]) -> None: ...
    def insert_checkpoint(self, row: CheckpointRow) -> bool: ...
    def checkpoint(self, stream_id: str, size: int) -> CheckpointRow | None: ...
    def insert_finding(self, finding: Finding) -> None: ...
    def has_finding(self, stream_id: str, seq: int, kind: str) -> bool: ...
    def leaves(self, stream_id: str, lo: int, hi: int) -> list[bytes]: ...
    def tiles(self, stream_id: str, level: int, lo: int, hi: int) -> list[bytes]: ...
    def insert_tile(self, stream_id: str, level: int, idx: int, digest: bytes) -> None: ...
    def ingest_starts(self, after: int) -> list[tuple[int, str, str, str | None]]: ...
    def unsealed(self) -> list[tuple[str, int]]: ...


class Store(Protocol):
    url: str  # never holds a password (a PostgreSQL URL's is masked)

    @property
    def dialect(self) -> Dialect: ...

    def writer(self) -> AbstractContextManager[Writer]: ...
    def query(self, where: str, params: Sequence[Any], *, order: str, limit: int,
              after: tuple[Any, ...] | None, offset: int = 0) -> Page: ...
    def count(self, where: str, params: Sequence[Any], *, cap: int | None = None,
              deadline: float | None = None) -> int: ...
    def facets(self, where: str, params: Sequence[Any], fields: Sequence[str], *, top: int, max_scan: int,
               contains: str | None = None, deadline: float | None = None) -> dict[str, Any]: ...
    def get(self, event_id: str) -> dict[str, Any] | None: ...
    def streams(self) -> list[dict[str, Any]]: ...
    def checkpoints(self, stream_id: str | None = None) -> list[dict[str, Any]]: ...
    def findings(self, stream_id: str | None = None, limit: int = 1000) -> list[dict[str, Any]]: ...
    def proof_material(self, event_id: str, size: int | None = None) -> dict[str, Any] | None: ...
    def otlp_records(self, event_ids: Sequence[str]) -> dict[str, tuple[bytes, bytes, bytes]]: ...
    def iter_rows(self) -> Iterator[dict[str, Any]]: ...
    def close(self) -> None: ...


def open_store(url: str, *, create: bool = True, readonly: bool = False) -> Store:
    """The store a URL names: ``sqlite:////absolute/path.db``, ``sqlite:///relative.db``, a plain path, or
    ``postgresql://user:password@host:port/db`` (``postgres://``)."""
    if not isinstance(url, str) or not url or "\x00" in url:
        raise ConfigError("store: not a store URL (sqlite:///path/to/audit.db or postgresql://user@host/db)")
    if url.startswith(("postgresql:", "postgres:")):
        if not url.startswith(("postgresql://", "postgres://")):
            raise ConfigError("store: a PostgreSQL store is postgresql://user@host:port/dbname")
        try:
            from otel_audit.service.store.postgres import PostgresStore
        except ImportError:
            raise ConfigError("store: a PostgreSQL store needs psycopg: pip install 'otel-audit[postgres]'") from None
        return PostgresStore(url, create=create and not readonly, readonly=readonly)
    if url.startswith("sqlite:///"):  # as SQLAlchemy: sqlite:///relative.db, sqlite:////absolute/path.db
        path = url[len("sqlite:///"):]
    elif url.startswith("sqlite:"):
        path = url[len("sqlite:"):]
        if path.startswith("//"):
            raise ConfigError(f"store: {url!r}: a sqlite URL is sqlite:////absolute/path.db or sqlite:///relative.db")
    elif "://" in url:
        raise ConfigError(f"store: {url.split('://', 1)[0]!r} is not a known store (sqlite:///path/to/audit.db or postgresql://user@host/db)")
    else:
        path = url
    if not path:
        raise ConfigError(f"store: {url!r} names no file")
    from otel_audit.service.store.sqlite import SqliteStore

    return SqliteStore(path, create=create and not readonly, readonly=readonly)
