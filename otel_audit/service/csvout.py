"""Events as CSV (RFC 4180): a fixed header, CRLF line ends, fields quoted when they hold a comma, a quote, CR or
LF; nested values (the attributes) as one JSON text.

Spreadsheets run a cell that starts with ``=``, ``+``, ``-`` or ``@`` (and some a tab or CR) as a formula
(CSV injection, OWASP). Such a value is written with one ``'`` in front, and so is a value that already starts
with ``'`` — so the rule is reversible: a reader strips one leading ``'`` from a field that starts with one
(`unneutralise`) and has the value as stored."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

#: the columns, in order: never changes shape from one page, query or release to the next (add at the end only)
HEADER = ("id", "time", "event", "category", "outcome", "actor", "user_id", "target_type", "target_id",
          "client_address", "service", "session_id", "trace_id", "severity_number", "severity_text", "status",
          "signed", "stream_id", "stream_seq", "digest", "ingest_seq", "ingest_time", "body", "attributes")
_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "'")
MEDIA_TYPE = "text/csv; charset=utf-8; header=present"


def neutralise(value: str) -> str:
    return "'" + value if value.startswith(_TRIGGERS) else value


def unneutralise(value: str) -> str:
    return value[1:] if value.startswith("'") else value


def _cells(e: Mapping[str, Any]) -> list[str]:
    stream = e.get("stream") or {}
    values: list[Any] = [
        e["id"], e["time"], e["event"], e["category"], e["outcome"], e["actor"], e["user_id"], e["target"]["type"],
        e["target"]["id"], e["client_address"], e["service"], e["session_id"], e["trace_id"],
        e["severity"]["number"], e["severity"]["text"], e["status"], e["signed"], stream.get("id"), stream.get("seq"),
        e["digest"], e["ingest_seq"], e["ingest_time"], e["body"], orjson.dumps(e["attributes"]).decode(),
    ]
    return ["" if v is None else neutralise(str(v)) for v in values]


def rows(events: Iterable[Mapping[str, Any]], header: bool = True) -> bytes:
    """The CSV text of `events` (the API's event form), with the header line first when `header`."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    if header:
        w.writerow(HEADER)
    for e in events:
        w.writerow(_cells(e))
    return buf.getvalue().encode("utf-8")
