"""`otel-audit query`: GET /v1/events from the command line (docs/service.md §4).

A table on a terminal, JSON lines otherwise (or --format); --all follows the cursors to the end. Every failure
is one line on stderr and exit 2: the service down, a 400 (the server's message, which names the parameter),
401/403. The token (from --token-file or $OTEL_AUDIT_TOKEN) is sent as a bearer token and never printed."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from typing import Any

import orjson

from otel_audit.safe import redact_text

EXIT_OK, EXIT_USAGE = 0, 2
#: the table's columns: (header, width, how to read it from an event)
_COLUMNS: tuple[tuple[str, int, Any], ...] = (
    ("TIME", 20, lambda e: e["time"][:19] + "Z"),
    ("EVENT", 40, lambda e: e["event"]),
    ("OUTCOME", 8, lambda e: e["outcome"]),
    ("ACTOR", 16, lambda e: e["actor"]),
    ("TARGET", 24, lambda e: e["target"]["id"]),
    ("CLIENT", 16, lambda e: e["client_address"]),
    ("STATUS", 8, lambda e: e["status"]),
)
#: options that become /v1/events parameters (repeatable ones OR together)
REPEATED = (("actor", "actor"), ("user", "user"), ("action", "action"), ("category", "category"),
            ("outcome", "outcome"), ("service", "service"), ("target_type", "target.type"),
            ("target_id", "target.id"), ("client_address", "client.address"), ("status", "status"),
            ("stream", "stream"), ("session", "session"))
SINGLE = (("from_", "from"), ("to", "to"), ("filter", "filter"), ("q", "q"), ("order", "order"))


class QueryFailed(Exception):
    """One line for stderr."""


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", help="the service's base URL, e.g. http://127.0.0.1:4318 (default $OTEL_AUDIT_URL)")
    p.add_argument("--token-file", metavar="FILE",
                   help="a file holding the bearer token (default: $OTEL_AUDIT_TOKEN, if set); never printed")
    for opt, param in REPEATED:
        p.add_argument("--" + opt.replace("_", "-"), dest=opt, action="append", metavar="VALUE",
                       help=f"match {param} (repeat for several: any of them)")
    p.add_argument("--from", dest="from_", metavar="TIME", help="event time from (RFC 3339 or unix seconds)")
    p.add_argument("--to", metavar="TIME", help="event time before (exclusive)")
    p.add_argument("--filter", metavar="EXPR", help='a SCIM filter, e.g. \'user.id eq "alice" and event sw "auth"\'')
    p.add_argument("--q", metavar="WORDS", help="full text: every word must occur")
    p.add_argument("--order", choices=("desc", "asc", "ingest"), help="newest first (default), oldest first, or "
                                                                      "ingest order")
    p.add_argument("--cursor", help="continue from the next_cursor a previous query printed")
    p.add_argument("--limit", type=int, default=100, metavar="N", help="events per page, 1..1000 (default 100)")
    p.add_argument("--all", action="store_true", help="follow the cursors: every matching event, page by page")
    p.add_argument("--format", choices=("table", "json", "ndjson", "csv"),
                   help="table (the default on a terminal), json (one document), ndjson (one event a line: the "
                        "default otherwise) or csv (RFC 4180)")


def _token(args: argparse.Namespace) -> str | None:
    if args.token_file:
        try:
            with open(args.token_file, encoding="utf-8") as fh:
                token = fh.read(4096).strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not a text file"
            raise QueryFailed(f"--token-file {args.token_file}: cannot read it ({reason})") from None
        if not token or any(c.isspace() for c in token):
            raise QueryFailed(f"--token-file {args.token_file}: expected one token on one line")
        return token
    return os.environ.get("OTEL_AUDIT_TOKEN") or None


def _pages(session: Any, url: str, params: list[tuple[str, str]], fmt: str, follow: bool, cursor: str | None
           ) -> Iterator[tuple[Any, str | None]]:
    """(the page: a JSON document, or CSV bytes, its next cursor) from `cursor` on, until the end (or one page)."""
    import requests

    where = redact_text(url)
    while True:
        p = params + ([("cursor", cursor)] if cursor else [])
        try:
            r = session.get(url + "/v1/events", params=p, timeout=60)
        except requests.RequestException as exc:
            raise QueryFailed(f"cannot reach the service at {where} ({type(exc).__name__}): is it running, and is "
                              "--url right?") from None
        if r.status_code != 200:
            try:
                msg = str(r.json()["error"]["message"])
            except (ValueError, KeyError, TypeError):
                msg = r.text[:200]
            msg = redact_text(msg)
            if r.status_code == 400:
                raise QueryFailed(f"the service refused the query: {msg}")
            if r.status_code == 401:
                raise QueryFailed(f"the service wants a token (401): {msg}; give --token-file FILE (or set "
                                  "OTEL_AUDIT_TOKEN)")
            if r.status_code == 403:
                raise QueryFailed(f"the token may not query (403): {msg}")
            raise QueryFailed(f"the service answered {r.status_code}: {msg}")
        if fmt == "csv":
            body: Any = r.content
            nxt = r.headers.get("X-Next-Cursor")
            empty = body.count(b"\r\n") <= 1
        else:
            try:
                body = r.json()
                nxt = body["next_cursor"]
                empty = not body["events"]
            except (ValueError, KeyError, TypeError):
                raise QueryFailed(f"{where}: the answer is not a page of events (is --url the audit "
                                  "service?)") from None
        yield body, nxt
        if not follow or nxt is None or empty or nxt == cursor:
            return
        cursor = nxt


def _cell(value: Any, width: int) -> str:
    """A value for the terminal table: control characters (a CR, an escape sequence an attacker put in a user
    name, which would rewrite the auditor's screen) shown escaped, never sent to the terminal."""
    text = "" if value is None else _printable(str(value))
    return text if len(text) <= width else text[: width - 1] + "~"


def _printable(text: str) -> str:
    import unicodedata

    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else " " if c in "\n\t" else
                   (repr(c)[1:-1] if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") else c) for c in text)


def run(args: argparse.Namespace) -> int:
    import requests  # here: `otel-audit --help` and the other commands do not load it

    url = (args.url or os.environ.get("OTEL_AUDIT_URL") or "").rstrip("/")
    try:
        if not url:
            raise QueryFailed("give --url (the service's base URL, e.g. http://127.0.0.1:4318) or set OTEL_AUDIT_URL")
        if not url.startswith(("http://", "https://")):
            raise QueryFailed(f"--url {redact_text(url)!r}: expected http://host:port or https://host:port")
        if not 1 <= args.limit <= 1000:
            raise QueryFailed(f"--limit {args.limit}: expected a number from 1 to 1000")
        fmt = args.format or ("table" if sys.stdout.isatty() else "ndjson")
        params: list[tuple[str, str]] = [("limit", str(args.limit))]
        for opt, name in REPEATED:
            params += [(name, v) for v in getattr(args, opt) or ()]
        for opt, name in SINGLE:
            v = getattr(args, opt)
            if v is not None:
                params.append((name, v))
        if fmt == "csv":
            params.append(("format", "csv"))
        session = requests.Session()
        token = _token(args)
        if token:
            session.headers["Authorization"] = f"Bearer {token}"
        return _print(_pages(session, url, params, fmt, args.all, args.cursor), fmt, args.all)
    except QueryFailed as exc:
        print(f"otel-audit query: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _print(pages: Iterator[tuple[Any, str | None]], fmt: str, follow: bool) -> int:
    out = sys.stdout
    events: list[Any] = []
    nxt = None
    first = True
    for body, page_next in pages:
        nxt = page_next
        if fmt == "csv":
            data: bytes = body
            if not first:
                data = data.split(b"\r\n", 1)[1] if b"\r\n" in data else b""
            out.buffer.write(data)
        elif fmt == "ndjson":
            out.buffer.write(b"".join(orjson.dumps(e) + b"\n" for e in body["events"]))
        elif fmt == "json":
            events += body["events"]
        else:
            if first:
                out.write("  ".join(h.ljust(w) for h, w, _ in _COLUMNS).rstrip() + "\n")
            for e in body["events"]:
                out.write("  ".join(_cell(get(e), w).ljust(w) for _, w, get in _COLUMNS).rstrip() + "\n")
        out.flush()
        first = False
    if fmt == "json":
        out.buffer.write(orjson.dumps({"events": events, "count": len(events), "next_cursor": nxt}) + b"\n")
    elif nxt is not None and not follow:
        print(f"more: --all, or --cursor {nxt}", file=sys.stderr)
    return EXIT_OK
