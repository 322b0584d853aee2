"""`otel-audit verify --store URL`: re-prove a service's store offline with the reference verifier.

Every event row's stored envelope and record (exactly what was received and verified on ingest) go to the
same Verifier `otel-audit verify` runs on archives, each located by its row (``store:<url>#<event id>``), so an
edited record is named by its event id. The row's filter columns (actor, action, client address, ...) are
derived again from its record and compared: a query answers from those columns, so an edited column is a
problem too, even when the signed record is intact. Rows the store lacks show as missing seqs, as in an archive.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from otel_audit.keys import Keyring
from otel_audit.verify.prove import Verifier
from otel_audit.verify.report import Report

#: the columns derived from the record, compared with what the record gives
DERIVED = ("stream_id", "stream_seq", "ts", "observed_ts", "event", "category", "outcome", "actor", "user_id",
           "target_type", "target_id", "client_address", "client_address_key", "service", "session_id", "trace_id",
           "severity", "severity_text", "body", "attrs", "canonical", "digest", "prev", "signed")
MAX_LISTED = 100


def verify_store(url: str, keyring: Keyring, *, allow_open: bool = False, ignore_unsigned: bool = False,
                 partial: bool = False, at: int | None = None) -> Report:
    from otel_audit.service.ingest import Ingest
    from otel_audit.service.store import open_store

    store = open_store(url, readonly=True)
    try:
        v = Verifier(keyring, allow_open=allow_open, ignore_unsigned=ignore_unsigned, partial=partial, at=at)
        rep = v.report
        rep.files += 1
        derive = Ingest(store, keyring)
        bad_columns = 0
        for row in store.iter_rows():
            where = f"store:{store.url}#{row['id']}"
            rep.lines += 1
            try:
                resource = orjson.loads(row["resource"])
                scope = orjson.loads(row["scope"])
                record = orjson.loads(row["record"])
            except orjson.JSONDecodeError:
                v._malformed(f"{where}: the stored envelope or record is not JSON")
                continue
            doc = {"resourceLogs": [{"resource": resource, "scopeLogs": [{"scope": scope, "logRecords": [record]}]}]}
            v.add_request(doc, where)
            differs = _columns_differ(derive, row, resource, record, store.dialect.stored)
            if differs:
                bad_columns += 1
                if bad_columns <= MAX_LISTED:
                    rep.problems.append(f"{where}: column(s) {', '.join(differs)} differ from what the stored record "
                                        "gives: a query answers from them, so they were edited in the store")
        if bad_columns > MAX_LISTED:
            rep.problems.append(f"... {bad_columns - MAX_LISTED} more rows with edited columns not listed")
        rep.read_as["store"] = rep.lines
        return v.finish()
    finally:
        store.close()


def _columns_differ(derive: Any, row: dict[str, Any], resource: Any, record: Any,
                    stored_as: Callable[[Any], Any]) -> list[str]:
    from otel_audit.decoding import DecodeError, decode_attributes

    try:
        attrs = decode_attributes(resource.get("attributes", [])) if isinstance(resource, dict) else {}
        service = attrs.get("service.name") if type(attrs.get("service.name")) is str else None
        got = derive._row(record, row["resource"], row["scope"], service, 0).row  # noqa: SLF001 - the same derivation
    except (DecodeError, ValueError, TypeError, AttributeError):
        return []  # the verifier names an unreadable record
    stored = row["columns"]
    out = []
    for name in DERIVED:
        if stored[name] != stored_as(getattr(got, name)):
            out.append(name)
    return out
