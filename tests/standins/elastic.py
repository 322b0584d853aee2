"""An Elasticsearch stand-in: `_bulk` into data streams, `_search` / scroll / `_count` to read back.

A real HTTP server (``ThreadingHTTPServer`` on 127.0.0.1, an ephemeral port) that follows the
documented contract strictly, so that both our exporter and the OFFICIAL ``elasticsearch`` Python
client work against it:

* every response carries ``X-Elastic-Product: Elasticsearch`` (the client refuses servers without
  it); ``GET /`` answers the version banner ("You Know, for Search");
* authentication on every request: ``Authorization: ApiKey <encoded>`` or ``Basic``; 401
  ``security_exception`` otherwise, 403 for a read-only key writing;
* ``_bulk``: a JSON ``Content-Type`` (``application/x-ndjson`` as documented, or ``application/json``,
  which Elasticsearch's RestController accepts for bulk content too, or the vnd compatible-with variants)
  else 406,
  gzip bodies, ``http.max_content_length`` (413: an empty body and ``Connection: close``; the limit
  counts the body before compression, as the setting's documentation says; with ``early_413=True``
  the 413 is sent before an uncompressed body is read, as Netty's content-size handler does), the
  final newline (400), action/source pairs,
  unknown actions, metadata keys or query parameters (400); per item: only ``create`` on a data
  stream (``logs-*-*``, as the built-in ``logs`` template makes it), with ``require_data_stream=true``
  a name that is no data stream refused as Elasticsearch 8.13+ does (404 ``index_not_found_exception``
  for a name no data-stream template matches, 404 ``resource_not_found_exception`` for an existing plain
  index), exactly one parseable ``@timestamp``, ``data_stream.*`` equal to the
  stream's constant keywords, a dynamic mapping whose field types cannot change (400
  ``document_parsing_exception``), 409 ``version_conflict_engine_exception`` for an existing
  ``_id``; the real response shape (``took``, ``errors``, ``items[].create{_index (the .ds-
  backing index), _id, _version, result, _shards, _seq_no, _primary_term, status, error}``);
* ``_search`` (``match_all`` / ``ids``; ``size``, ``from``, ``sort`` on ``@timestamp`` / ``_id`` /
  ``_doc`` / fields, ``search_after``, ``scroll`` + ``_search/scroll``), ``_count``, ``_refresh``.

Faults, switchable at runtime: ``go_down()`` / ``come_up()`` (the port refuses connections, live
keep-alive connections are cut), ``slow(seconds)``, ``fail_requests(status, ...)`` (503, 429 with
or without Retry-After, ...), ``fail_items(status, ...)`` (per-item 429 ``es_rejected_execution_
exception``, 400 ``mapper_parsing_exception`` ...), ``retype(field, fn)`` (accepted, but stored
with one field retyped, e.g. ``attributes.audit.stream.seq`` as a string), and ``alter(...)``
(edit a stored document at rest).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as _dt
import fnmatch
import itertools
import json
import re
import secrets
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

DEFAULT_API_KEY = base64.b64encode(b"standin-key-id:standin-api-key-secret").decode()
DEFAULT_USERS = {"elastic": "changeme"}
VERSION = "9.1.0"
MAX_CONTENT_LENGTH = 100 * 1024 * 1024  # http.max_content_length's default
MAX_RESULT_WINDOW = 10_000  # index.max_result_window's default

_BULK_PARAMS = frozenset({
    "pipeline", "refresh", "routing", "require_alias", "require_data_stream", "include_source_on_error",
    "timeout", "wait_for_active_shards", "_source", "_source_includes", "_source_excludes",
    "list_executed_pipelines", "filter_path", "error_trace", "human", "pretty",
})
_SEARCH_PARAMS = frozenset({
    "scroll", "size", "from", "sort", "track_total_hits", "rest_total_hits_as_int", "_source",
    "filter_path", "error_trace", "human", "pretty", "typed_keys", "ignore_unavailable",
    "allow_no_indices", "expand_wildcards", "seq_no_primary_term", "version", "request_cache",
})
_ACTIONS = ("create", "delete", "index", "update")
_ACTION_META = frozenset({
    "_index", "_id", "routing", "pipeline", "require_alias", "require_data_stream", "dynamic_templates",
    "if_seq_no", "if_primary_term", "version", "version_type", "list_executed_pipelines",
})
#: Content-Types a `_bulk` body may have: those whose canonical XContentType is JSON
_BULK_MEDIA = frozenset({"application/json", "application/x-ndjson", "application/vnd.elasticsearch+json",
                         "application/vnd.elasticsearch+x-ndjson"})
#: other media types Elasticsearch knows (XContentType names), refused for bulk content with 406
_MEDIA_TYPES = {"application/yaml": "YAML", "application/cbor": "CBOR",
                "application/vnd.elasticsearch+yaml": "VND_YAML", "application/vnd.elasticsearch+cbor": "VND_CBOR"}
_INDEX_FORBIDDEN = frozenset('\\/*?"<>| ,#:')
_ISO = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?(Z|[+-]\d{2}:?\d{2})?)?$"
)
# Inside these objects dotted keys are field names, not paths (the otel-data `passthrough` objects).
_FLAT_OBJECTS = ("attributes", "resource.attributes", "scope.attributes")


class _Reject(Exception):
    """An item-level failure: status and the error object ES puts in the item."""

    def __init__(self, status: int, etype: str, reason: str, caused_by: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.error: dict[str, Any] = {"type": etype, "reason": reason}
        if caused_by:
            self.error["caused_by"] = caused_by


class _Fail(Exception):
    """A request-level failure: status and the whole JSON body (or raw bytes)."""

    def __init__(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(str(body))
        self.status = status
        self.body = body
        self.headers = dict(headers or {})


def error_body(status: int, etype: str, reason: str, **extra: Any) -> dict[str, Any]:
    """The request-level error envelope of Elasticsearch."""
    cause = {"type": etype, "reason": reason, **extra}
    return {"error": {"root_cause": [cause], **cause}, "status": status}


@dataclass
class StoredDoc:
    """One accepted document."""

    index: str  # the data stream or index name it was written to
    backing: str  # what `_index` says: the .ds- backing index of a data stream
    id: str
    source: dict[str, Any]
    seq_no: int
    timestamp_ms: int | None


@dataclass
class _Index:
    name: str
    data_stream: bool
    backing: str
    uuid: str = field(default_factory=lambda: base64.urlsafe_b64encode(secrets.token_bytes(16)).decode()[:22])
    docs: dict[str, StoredDoc] = field(default_factory=dict)
    mapping: dict[str, str] = field(default_factory=dict)  # field path -> object|long|double|boolean|keyword|date


@dataclass
class _ItemFault:
    status: int
    etype: str
    reason: str
    times: int | None  # None: every matching item, for ever
    match: Callable[[str | None, Mapping[str, Any]], bool] | None


@dataclass
class _RequestFault:
    status: int
    times: int
    retry_after: str | None
    body: Any
    paths: tuple[str, ...]


@dataclass
class Seen:
    """One request as the stand-in saw it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names; Authorization masked
    body_bytes: int
    gzip: bool
    status: int = 0
    items: int = 0
    at: float = field(default_factory=time.monotonic)
    ids: list[str] = field(default_factory=list)  # the _ids of a _bulk request's actions


def _parse_iso_ms(text: str) -> int | None:
    m = _ISO.match(text)
    if not m:
        return None
    y, mo, d, h, mi, s, frac, tz = m.groups()
    try:
        base = _dt.datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0),
                            tzinfo=_dt.timezone.utc)
    except ValueError:
        return None
    offset = 0
    if tz and tz != "Z":
        sign = -1 if tz[0] == "-" else 1
        digits = tz[1:].replace(":", "")
        offset = sign * (int(digits[:2]) * 60 + int(digits[2:])) * 60
    ms = int(base.timestamp() - offset) * 1000
    if frac:
        ms += int((frac + "000")[:3])
    return ms


def parse_date_ms(value: Any) -> int | None:
    """Epoch milliseconds of a `date` value (strict_date_optional_time||epoch_millis), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, str):
        if re.fullmatch(r"-?\d+(\.\d+)?", value):
            return int(float(value))
        return _parse_iso_ms(value)
    return None


def index_name_problem(name: str) -> str | None:
    if not name:
        return "must not be empty"
    if name != name.lower():
        return "must be lowercase"
    bad = [c for c in name if c in _INDEX_FORBIDDEN]
    if bad:
        return f"must not contain the following characters [{' , '.join(sorted(set(bad)))}]"
    if name[0] in "-_+":
        return "must not start with '_', '-', or '+'"
    if len(name.encode()) > 255:
        return "index name is too long"
    return None


class ElasticStandIn:
    """A strict Elasticsearch stand-in; use as a context manager (`with ElasticStandIn() as es:`)."""

    def __init__(
        self,
        *,
        api_keys: tuple[str, ...] = (DEFAULT_API_KEY,),
        readonly_api_keys: tuple[str, ...] = (),
        users: Mapping[str, str] | None = None,
        max_content_length: int = MAX_CONTENT_LENGTH,
        early_413: bool = False,
        version: str = VERSION,
        data_stream_patterns: tuple[str, ...] = ("logs-*-*",),
    ) -> None:
        self.api_keys = set(api_keys)
        self.readonly_api_keys = set(readonly_api_keys)
        self.users = dict(DEFAULT_USERS if users is None else users)
        self.max_content_length = max_content_length
        #: answer 413 to an uncompressed body over max_content_length before reading it, then close
        self.early_413 = early_413
        self.version = version
        self.major = int(version.split(".")[0])
        self.data_stream_patterns = data_stream_patterns
        self.seen: list[Seen] = []
        self.rejections: list[dict[str, Any]] = []  # every error the stand-in answered (item or request)
        self.bulk_requests = 0
        self.delay = 0.0
        self._lock = threading.RLock()
        self._indices: dict[str, _Index] = {}
        self._item_faults: list[_ItemFault] = []
        self._request_faults: list[_RequestFault] = []
        self._retypes: list[tuple[str, Callable[[Any], Any]]] = []
        self._scrolls: dict[str, tuple[list[dict[str, Any]], int, int]] = {}
        self._seq = itertools.count()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        #: the client port of every TCP connection accepted, in order (a new pool, a new port)
        self.client_ports: list[int] = []
        self._stopping = threading.Event()
        self.port = 0
        self.cluster_uuid = base64.urlsafe_b64encode(secrets.token_bytes(16)).decode()[:22]

    # -- lifecycle ---------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ElasticStandIn:
        self._listen()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._close()

    def __enter__(self) -> ElasticStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _listen(self) -> None:
        handler = _handler_for(self)
        standin = self

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

            def process_request(self, request: Any, client_address: Any) -> None:
                with standin._lock:
                    standin._conns.add(request)
                    standin.client_ports.append(client_address[1])  # one entry per TCP connection
                super().process_request(request, client_address)

            def shutdown_request(self, request: Any) -> None:
                with standin._lock:
                    standin._conns.discard(request)
                super().shutdown_request(request)

        server = Server(("127.0.0.1", self.port), handler)
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"es-standin-{self.port}", daemon=True)
        self._thread.start()

    def _close(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._lock:
            conns = list(self._conns)
            self._conns.clear()
        for c in conns:  # cut keep-alive connections too: "down" means nothing answers
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                c.close()
        if self._thread is not None:
            self._thread.join(5)

    # -- faults ------------------------------------------------------------------------------------

    def go_down(self) -> None:
        """Stop listening (connections are refused) and cut every open connection."""
        self._close()

    def come_up(self) -> None:
        """Listen again on the same port."""
        if self._server is None:
            self._listen()

    @contextlib.contextmanager
    def outage(self) -> Iterator[None]:
        self.go_down()
        try:
            yield
        finally:
            self.come_up()

    def slow(self, seconds: float) -> None:
        """Wait this long before answering any request (0: answer at once)."""
        self.delay = seconds

    def fail_requests(self, status: int, times: int = 1, *, retry_after: str | None = None,
                      body: Any = None, paths: tuple[str, ...] = ("_bulk",)) -> None:
        """The next `times` requests to these endpoints fail as a whole with `status`."""
        if body is None:
            body = _request_error(status)
        with self._lock:
            self._request_faults.append(_RequestFault(status, times, retry_after, body, paths))

    def fail_items(self, status: int, *, times: int | None = 1, error_type: str | None = None,
                   reason: str | None = None,
                   match: Callable[[str | None, Mapping[str, Any]], bool] | None = None) -> None:
        """The next `times` matching bulk items (None: all, for ever) fail with `status`."""
        etype, text = _item_error(status)
        with self._lock:
            self._item_faults.append(_ItemFault(status, error_type or etype, reason or text, times, match))

    def retype(self, path: str, convert: Callable[[Any], Any] = str) -> None:
        """Accept documents as usual but store the field at `path` converted (e.g. a number as a string)."""
        with self._lock:
            self._retypes.append((path, convert))

    def clear_faults(self) -> None:
        with self._lock:
            self._item_faults.clear()
            self._request_faults.clear()
            self._retypes.clear()
        self.delay = 0.0

    # -- what was stored ---------------------------------------------------------------------------

    def documents(self, target: str = "*") -> list[StoredDoc]:
        """Accepted documents of the matching indices / data streams, in the order they were stored."""
        with self._lock:
            names = self._resolve(target, strict=False)
            docs = [d for n in names for d in self._indices[n].docs.values()]
        return sorted(docs, key=lambda d: d.seq_no)

    def sources(self, target: str = "*") -> list[dict[str, Any]]:
        return [d.source for d in self.documents(target)]

    @property
    def indices(self) -> dict[str, bool]:
        """Index / data stream names -> is it a data stream."""
        with self._lock:
            return {n: i.data_stream for n, i in self._indices.items()}

    def alter(self, doc_id: str, edit: Callable[[dict[str, Any]], None], target: str = "*") -> None:
        """Edit a stored document's source in place, as someone with write access at rest would."""
        with self._lock:
            for name in self._resolve(target, strict=False):
                doc = self._indices[name].docs.get(doc_id)
                if doc is not None:
                    edit(doc.source)
                    return
        raise KeyError(doc_id)

    def search_response(self, target: str = "*") -> dict[str, Any]:
        """Every stored document as one `_search` response (sorted by @timestamp, _id)."""
        with self._lock:
            return self._search(target, {"size": len(self.documents(target)), "sort": ["@timestamp", "_id"]}, {},
                                cap=False)

    def export_ndjson(self, target: str = "*") -> bytes:
        """Every stored document as NDJSON, one hit per line (what a scroll dump tool writes)."""
        hits = self.search_response(target)["hits"]["hits"]
        return b"".join(json.dumps(h, separators=(",", ":")).encode() + b"\n" for h in hits)

    # -- request handling (called by the handler) --------------------------------------------------

    def _auth(self, headers: Mapping[str, str], path: str) -> str:
        """'write' or 'read' for valid credentials; raises _Fail 401 otherwise."""
        value = headers.get("authorization", "")
        scheme, _, cred = value.partition(" ")
        www = {"WWW-Authenticate": 'Basic realm="security", charset="UTF-8", ApiKey'}
        if not value:
            raise _Fail(401, error_body(401, "security_exception",
                                        f"missing authentication credentials for REST request [{path}]"), www)
        if scheme.lower() == "apikey":
            if cred in self.api_keys:
                return "write"
            if cred in self.readonly_api_keys:
                return "read"
            raise _Fail(401, error_body(
                401, "security_exception",
                "unable to authenticate with provided credentials and anonymous access is not allowed for this "
                "request", additional_unsuccessful_credentials="API key: unable to find apikey with id"), www)
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(cred, validate=True).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                user, password = "", "\x00not a password"
            if user in self.users and self.users[user] == password:
                return "write"
            raise _Fail(401, error_body(401, "security_exception",
                                        f"unable to authenticate user [{user}] for REST request [{path}]"), www)
        raise _Fail(401, error_body(401, "security_exception",
                                    f"missing authentication credentials for REST request [{path}]"), www)

    def _check_media(self, headers: Mapping[str, str], kind: str) -> None:
        """Content-Type (for a body) and Accept must be json/ndjson or the compatible-with variants."""
        for name in ("content-type", "accept"):
            value = headers.get(name)
            if not value:
                continue
            m = re.search(r"compatible-with\s*=\s*(\d+)", value)
            if m and int(m.group(1)) not in (self.major - 1, self.major):
                raise _Fail(400, error_body(
                    400, "media_type_header_exception", "Invalid media-type value on headers [Accept, Content-Type]",
                    caused_by={"type": "status_exception",
                               "reason": "A compatible version is required on both Content-Type and Accept headers "
                                         "if either one has requested a compatible version. "
                                         f"Accept={headers.get('accept')}, "
                                         f"Content-Type={headers.get('content-type')}"}))
            if name == "content-type" and kind == "ndjson":
                # RestController: a bulk-content handler takes a media type whose canonical XContentType is
                # JSON (application/json, application/x-ndjson and their vnd.elasticsearch+ variants) or
                # SMILE (the stand-in parses JSON only); anything else is 406. The docs recommend x-ndjson,
                # clients such as go-elasticsearch send application/json, which Elasticsearch accepts.
                mime = value.split(";")[0].strip().lower()
                if mime not in _BULK_MEDIA:
                    if mime.endswith("smile"):  # Elasticsearch takes SMILE; the stand-in cannot parse it
                        raise _Fail(406, {"error": "the stand-in reads JSON bulk bodies only, not SMILE",
                                          "status": 406})
                    if mime in _MEDIA_TYPES:
                        raise _Fail(406, {"error": f"Content-Type [{_MEDIA_TYPES[mime]}] does not support stream "
                                                   "parsing. Use JSON or SMILE instead", "status": 406})
                    raise _Fail(406, {"error": f"Content-Type header [{value}] is not supported", "status": 406})

    def _check_params(self, query: Mapping[str, str], allowed: frozenset[str], path: str) -> None:
        for key in query:
            if key not in allowed:
                raise _Fail(400, error_body(400, "illegal_argument_exception",
                                            f"request [{path}] contains unrecognized parameter: [{key}]"))

    def _request_fault(self, path: str) -> _RequestFault | None:
        with self._lock:
            for f in self._request_faults:
                if f.times > 0 and any(p in path for p in f.paths):
                    f.times -= 1
                    return f
        return None

    def _is_data_stream_name(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, p) for p in self.data_stream_patterns)

    def _index(self, name: str) -> _Index:
        idx = self._indices.get(name)
        if idx is None:
            ds = self._is_data_stream_name(name)
            backing = f".ds-{name}-{_dt.datetime.now(_dt.timezone.utc):%Y.%m.%d}-000001" if ds else name
            idx = self._indices[name] = _Index(name, ds, backing)
        return idx

    def _resolve(self, target: str, *, strict: bool = True) -> list[str]:
        names: list[str] = []
        for part in (target or "_all").split(","):
            part = part.strip()
            if part in ("_all", "*", ""):
                names.extend(self._indices)
                continue
            hits = [n for n, i in self._indices.items()
                    if fnmatch.fnmatchcase(n, part) or fnmatch.fnmatchcase(i.backing, part)]
            if not hits and strict and not any(c in part for c in "*?"):
                raise _Fail(404, error_body(404, "index_not_found_exception", f"no such index [{part}]",
                                            **{"resource.type": "index_or_alias", "resource.id": part,
                                               "index_uuid": "_na_", "index": part}))
            names.extend(hits)
        return list(dict.fromkeys(names))

    # _bulk

    def bulk(self, path_target: str | None, query: Mapping[str, str], body: bytes, access: str,
             path: str) -> dict[str, Any]:
        started = time.monotonic()
        if not body.endswith(b"\n"):
            raise _Fail(400, error_body(400, "illegal_argument_exception",
                                        "The bulk request must be terminated by a newline [\\n]"))
        lines = body.split(b"\n")[:-1]
        pairs: list[tuple[int, str, dict[str, Any], bytes | None]] = []
        i = 0
        while i < len(lines):
            raw = lines[i]
            i += 1
            if not raw.strip():
                continue
            n = i
            try:
                action = json.loads(raw)
            except ValueError:
                raise _Fail(400, error_body(400, "x_content_parse_exception",
                                            f"[1:1] Malformed action/metadata line [{n}], expected START_OBJECT "
                                            "but found [VALUE_STRING]")) from None
            if not isinstance(action, dict) or len(action) != 1:
                raise _Fail(400, error_body(400, "illegal_argument_exception",
                                            f"Malformed action/metadata line [{n}], expected a simple value for "
                                            "field [_index] but found [START_OBJECT]"))
            op, meta = next(iter(action.items()))
            if op not in _ACTIONS:
                raise _Fail(400, error_body(400, "illegal_argument_exception",
                                            f"Malformed action/metadata line [{n}], expected one of "
                                            f"[create, delete, index, update] but found [{op}]"))
            if not isinstance(meta, dict):
                raise _Fail(400, error_body(400, "illegal_argument_exception",
                                            f"Malformed action/metadata line [{n}], expected START_OBJECT but "
                                            f"found [{type(meta).__name__}]"))
            for key in meta:
                if key not in _ACTION_META:
                    raise _Fail(400, error_body(400, "illegal_argument_exception",
                                                f"Action/metadata line [{n}] contains an unknown parameter [{key}]"))
            source = None
            if op != "delete":
                if i >= len(lines):
                    raise _Fail(400, error_body(400, "illegal_argument_exception",
                                                "The bulk request must be terminated by a newline [\\n]"))
                source = lines[i]
                i += 1
            pairs.append((n, op, meta, source))
        if not pairs:
            raise _Fail(400, error_body(400, "action_request_validation_exception",
                                        "Validation Failed: 1: no requests added;"))
        missing = [k for k, (_n, _op, meta, _s) in enumerate(pairs, 1) if not (meta.get("_index") or path_target)]
        if missing:
            raise _Fail(400, error_body(400, "action_request_validation_exception", "Validation Failed: " + " ".join(
                f"{k}: index is missing;" for k in missing)))
        if access != "write":
            names = sorted({str(meta.get("_index") or path_target) for _n, _op, meta, _s in pairs})
            raise _Fail(403, error_body(
                403, "security_exception",
                f"action [indices:data/write/bulk[s]] is unauthorized for API key id [standin-key-id] on indices "
                f"[{', '.join(names)}], this action is granted by the index privileges [create_doc,create,index,"
                "write,all]"))
        require_ds = query.get("require_data_stream") == "true"
        items: list[dict[str, Any]] = []
        with self._lock:
            self.bulk_requests += 1
            for n, op, meta, source in pairs:
                items.append(self._bulk_item(n, op, meta, source, path_target, require_ds))
        errors = any("error" in next(iter(it.values())) for it in items)
        return {"errors": errors, "took": int((time.monotonic() - started) * 1000), "items": items}

    def _bulk_item(self, line: int, op: str, meta: dict[str, Any], raw: bytes | None, path_target: str | None,
                   require_ds: bool) -> dict[str, Any]:
        name = str(meta.get("_index") or path_target)
        doc_id = meta.get("_id")
        if doc_id is not None and not isinstance(doc_id, str):
            doc_id = str(doc_id)
        result: dict[str, Any] = {"_index": name, "_id": doc_id}
        try:
            source = self._item_checks(line, op, name, doc_id, raw, require_ds)
            idx = self._index(name)
            result["_index"] = idx.backing
            if op == "create" or doc_id is None:
                if doc_id is None:
                    doc_id = base64.urlsafe_b64encode(secrets.token_bytes(15)).decode()
                    result["_id"] = doc_id
                existing = idx.docs.get(doc_id)
                if existing is not None:
                    raise _Reject(409, "version_conflict_engine_exception",
                                  f"[{doc_id}]: version conflict, document already exists (current version [1])")
            stored = self._retyped(source)
            seq = next(self._seq)
            replaced = doc_id in idx.docs
            idx.docs[doc_id] = StoredDoc(name, idx.backing, doc_id, stored, seq,
                                         parse_date_ms(source.get("@timestamp")))
            result.update({"_version": 1, "result": "updated" if replaced else "created",
                           "_shards": {"total": 2, "successful": 1, "failed": 0},
                           "_seq_no": seq, "_primary_term": 1, "status": 200 if replaced else 201})
        except _Reject as rej:
            idx_obj = self._indices.get(name)
            error = {**rej.error, "index_uuid": idx_obj.uuid if idx_obj else "_na_", "shard": "0",
                     "index": idx_obj.backing if idx_obj else name}
            result.update({"status": rej.status, "error": error})
            self.rejections.append({"level": "item", "status": rej.status, "_id": doc_id, **rej.error})
        return {op: result}

    def _item_checks(self, line: int, op: str, name: str, doc_id: str | None, raw: bytes | None,
                     require_ds: bool) -> dict[str, Any]:
        for fault in self._item_faults:
            if fault.times is not None and fault.times <= 0:
                continue
            probe: Mapping[str, Any] = {}
            if fault.match is not None:
                try:
                    probe = json.loads(raw) if raw else {}
                except ValueError:
                    probe = {}
            if fault.match is None or fault.match(doc_id, probe):
                if fault.times is not None:
                    fault.times -= 1
                raise _Reject(fault.status, fault.etype, fault.reason.replace("{id}", str(doc_id)))
        problem = index_name_problem(name)
        if problem:
            raise _Reject(400, "invalid_index_name_exception", f"Invalid index name [{name}], {problem}")
        existing = self._indices.get(name)
        is_ds = existing.data_stream if existing else self._is_data_stream_name(name)
        if is_ds and op != "create":
            raise _Reject(400, "illegal_argument_exception",
                          "only write ops with an op_type of create are allowed in data streams")
        if require_ds and not is_ds:
            # Elasticsearch 8.13+: an existing index that is no data stream is a ResourceNotFoundException
            # (BulkOperation.addFailureIfRequiresDataStreamAndNoParentDataStream); a name no data-stream
            # template matches cannot be auto-created (MetadataCreateDataStreamService / AutoCreateAction:
            # IndexNotFoundException). Both 404, both permanent for a client.
            if existing is not None:
                raise _Reject(404, "resource_not_found_exception",
                              f"[require_data_stream] request flag is [true] and [{name}] is not a data stream")
            raise _Reject(404, "index_not_found_exception",
                          f"no such index [{name}] and the index creation request requires a data stream, but no "
                          "matching index template with data stream template was found for it")
        if op not in ("create", "index"):
            raise _Reject(400, "illegal_argument_exception", f"the stand-in does not implement [{op}] actions")
        try:
            source = json.loads(raw or b"")
        except ValueError as exc:
            raise _Reject(400, "document_parsing_exception", f"[1:1] failed to parse: {exc}") from None
        if not isinstance(source, dict):
            raise _Reject(400, "document_parsing_exception", "[1:1] failed to parse: the document is not an object")
        if is_ds:
            self._data_stream_checks(name, source, doc_id)
        self._mapping_check(self._index(name), source, doc_id)
        return source

    def _data_stream_checks(self, name: str, source: dict[str, Any], doc_id: str | None) -> None:
        ts = source.get("@timestamp")
        flat = _flatten(source)
        if "@timestamp" not in flat:
            raise _Reject(400, "document_parsing_exception",
                          "[1:2] failed to parse: data stream timestamp field [@timestamp] is missing",
                          {"type": "illegal_argument_exception",
                           "reason": "data stream timestamp field [@timestamp] is missing"})
        if isinstance(ts, list):
            raise _Reject(400, "document_parsing_exception",
                          "[1:15] failed to parse: data stream timestamp field [@timestamp] encountered multiple "
                          "values",
                          {"type": "illegal_argument_exception",
                           "reason": "data stream timestamp field [@timestamp] encountered multiple values"})
        if parse_date_ms(ts) is None:
            raise _Reject(400, "document_parsing_exception",
                          f"[1:15] failed to parse field [@timestamp] of type [date] in document with id '{doc_id}'. "
                          f"Preview of field's value: '{ts}'",
                          {"type": "illegal_argument_exception",
                           "reason": f"failed to parse date field [{ts}] with format "
                                     "[strict_date_optional_time||epoch_millis]"})
        _type, dataset, namespace = name.split("-", 2) if name.count("-") >= 2 else (name, "", "")
        for key, want in (("data_stream.type", _type), ("data_stream.dataset", dataset),
                          ("data_stream.namespace", namespace)):
            got = flat.get(key)
            if got is not None and got != want:
                raise _Reject(400, "document_parsing_exception",
                              f"[1:40] failed to parse field [{key}] of type [constant_keyword] in document with id "
                              f"'{doc_id}'. Preview of field's value: '{got}'",
                              {"type": "illegal_argument_exception",
                               "reason": f"[constant_keyword] field [{key}] only accepts values that are equal to the "
                                         f"value defined in the mappings [{want}], but got [{got}]"})

    def _mapping_check(self, idx: _Index, source: dict[str, Any], doc_id: str | None) -> None:
        """Dynamic mapping: the first value of a field fixes its type; a later value must fit it."""
        mapping = dict(idx.mapping)  # applied only when the whole document fits
        for path, value in _leaves(source):
            kind = "object" if isinstance(value, dict) else _kind(path, value)
            if kind is not None and mapping.get(path) == kind:
                continue  # known field of the same type: its parents were checked when it was added
            parents = path.split(".")
            if not _in_flat(path):
                for k in range(1, len(parents)):
                    parent = ".".join(parents[:k])
                    have = mapping.get(parent)
                    if have is not None and have != "object":
                        raise _Reject(400, "document_parsing_exception",
                                      f"[1:1] Could not dynamically add mapping for field [{path}]. Existing mapping "
                                      f"for [{parent}] must be of type object but found [{have}].")
                    mapping.setdefault(parent, "object")
            if kind is None:
                continue
            have = mapping.get(path)
            if have is None:
                mapping[path] = kind
                continue
            if not _fits(have, kind, value):
                if have == "object":
                    reason = (f"[1:1] object mapping for [{path}] tried to parse field [{path}] as object, but found "
                              "a concrete value")
                else:
                    preview = json.dumps(value)[:50] if not isinstance(value, str) else value[:50]
                    reason = (f"[1:1] failed to parse field [{path}] of type [{have}] in document with id "
                              f"'{doc_id}'. Preview of field's value: '{preview}'")
                raise _Reject(400, "document_parsing_exception", reason)
        idx.mapping = mapping

    def _retyped(self, source: dict[str, Any]) -> dict[str, Any]:
        if not self._retypes:
            return source
        out: dict[str, Any] = json.loads(json.dumps(source))
        for path, convert in self._retypes:
            _apply_at(out, path, convert)
        return out

    # _search, scroll, _count

    def _search(self, target: str, body: Mapping[str, Any], query: Mapping[str, str], *, cap: bool = True,
                ) -> dict[str, Any]:
        started = time.monotonic()
        for key in body:
            if key not in ("query", "size", "from", "sort", "search_after", "track_total_hits", "_source", "pit"):
                raise _Fail(400, error_body(400, "parsing_exception",
                                            f"Unknown key for a {_token(body[key])} in [{key}].", line=1, col=1))
        if "pit" in body:
            raise _Fail(400, error_body(400, "illegal_argument_exception",
                                        "the stand-in does not implement point in time"))
        docs = self._matching(target, body.get("query"))
        size = _int(query.get("size", body.get("size", 10)), "size")
        start = _int(query.get("from", body.get("from", 0)), "from")
        if cap and start + size > MAX_RESULT_WINDOW and "scroll" not in query:
            raise _Fail(400, error_body(
                400, "illegal_argument_exception",
                f"Result window is too large, from + size must be less than or equal to: [{MAX_RESULT_WINDOW}] but "
                f"was [{start + size}]. See the scroll api for a more efficient way to request large data sets."))
        sort = _sort_spec(query.get("sort") or body.get("sort"))
        after = body.get("search_after")
        if after is not None:
            if not sort:
                raise _Fail(400, error_body(400, "action_request_validation_exception",
                                            "Validation Failed: 1: search_after is not allowed without sort;"))
            if "scroll" in query:
                raise _Fail(400, error_body(400, "action_request_validation_exception",
                                            "Validation Failed: 1: using [search_after] is not allowed in a scroll "
                                            "context;"))
            if not isinstance(after, list) or len(after) != len(sort):
                raise _Fail(400, error_body(400, "illegal_argument_exception",
                                            f"search_after has {len(after) if isinstance(after, list) else 0} value(s) "
                                            f"but sort has {len(sort)}."))
        hits = [self._hit(d, sort) for d in docs]
        if sort:
            hits.sort(key=lambda h: _sort_key(h["sort"], sort))
            if after is not None:
                bound = _sort_key(after, sort)
                hits = [h for h in hits if _sort_key(h["sort"], sort) > bound]
        total = len(docs)
        out: dict[str, Any] = {
            "took": int((time.monotonic() - started) * 1000), "timed_out": False,
            "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
            "hits": {"total": {"value": total, "relation": "eq"}, "max_score": None if sort else 1.0, "hits": []},
        }
        if query.get("rest_total_hits_as_int") == "true":
            out["hits"]["total"] = total
        if "scroll" in query:
            scroll_id = base64.urlsafe_b64encode(secrets.token_bytes(24)).decode()
            self._scrolls[scroll_id] = (hits, size, size)
            out["_scroll_id"] = scroll_id
            out["hits"]["hits"] = hits[:size]
        else:
            out["hits"]["hits"] = hits[start:start + size]
        return out

    def _scroll(self, scroll_id: str) -> dict[str, Any]:
        state = self._scrolls.get(scroll_id)
        if state is None:
            raise _Fail(404, error_body(404, "search_context_missing_exception", "No search context found for id [1]"))
        hits, pos, size = state
        self._scrolls[scroll_id] = (hits, pos + size, size)
        return {"_scroll_id": scroll_id, "took": 0, "timed_out": False,
                "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
                "hits": {"total": {"value": len(hits), "relation": "eq"}, "max_score": None,
                         "hits": hits[pos:pos + size]}}

    def _clear_scroll(self, ids: list[str]) -> dict[str, Any]:
        freed = 0
        for sid in ids:
            if sid == "_all":
                freed += len(self._scrolls)
                self._scrolls.clear()
            elif self._scrolls.pop(sid, None) is not None:
                freed += 1
        return {"succeeded": True, "num_freed": freed}

    def _matching(self, target: str, q: Any) -> list[StoredDoc]:
        names = self._resolve(target)
        docs = [d for n in names for d in self._indices[n].docs.values()]
        docs.sort(key=lambda d: d.seq_no)
        if q is None:
            return docs
        if not isinstance(q, dict) or len(q) != 1:
            raise _Fail(400, error_body(400, "parsing_exception", "[_na] query malformed, must start with start_object",
                                        line=1, col=1))
        kind, spec = next(iter(q.items()))
        if kind == "match_all":
            return docs
        if kind == "ids" and isinstance(spec, dict):
            wanted = set(spec.get("values") or ())
            return [d for d in docs if d.id in wanted]
        raise _Fail(400, error_body(400, "parsing_exception", f"unknown query [{kind}]", line=1, col=1))

    def _hit(self, d: StoredDoc, sort: list[tuple[str, bool]]) -> dict[str, Any]:
        hit: dict[str, Any] = {"_index": d.backing, "_id": d.id, "_score": None if sort else 1.0,
                               "_source": json.loads(json.dumps(d.source))}
        if sort:
            values: list[Any] = []
            for fname, _desc in sort:
                if fname == "@timestamp":
                    values.append(d.timestamp_ms)
                elif fname == "_id":
                    values.append(d.id)
                elif fname in ("_doc", "_shard_doc"):
                    values.append(d.seq_no)
                elif fname == "_score":
                    values.append(1.0)
                else:
                    values.append(_flatten(d.source).get(fname))
            hit["sort"] = values
        return hit


# -- helpers ---------------------------------------------------------------------------------------


def _request_error(status: int) -> dict[str, Any]:
    if status == 429:
        return error_body(429, "circuit_breaking_exception",
                          "[parent] Data too large, data for [<http_request>] would be [1021339648/974mb], which is "
                          "larger than the limit of [1020054732/972.7mb]", bytes_wanted=1021339648,
                          bytes_limit=1020054732, durability="TRANSIENT")
    if status == 503:
        return error_body(503, "cluster_block_exception", "blocked by: [SERVICE_UNAVAILABLE/2/no master];")
    if status == 500:
        return error_body(500, "exception", "internal error in the stand-in (injected)")
    return error_body(status, "status_exception", f"injected failure with status {status}")


def _item_error(status: int) -> tuple[str, str]:
    if status == 429:
        return ("es_rejected_execution_exception",
                "rejected execution of coordinating operation [coordinating_and_primary_bytes=104857600, "
                "replica_bytes=0, all_bytes=104857600, coordinating_operation_bytes=2048, "
                "max_coordinating_and_primary_bytes=104857600]")
    if status == 400:
        return ("mapper_parsing_exception",
                "failed to parse field [attributes.audit.stream.seq] of type [long] in document with id '{id}'")
    if status == 503:
        return "unavailable_shards_exception", "[.ds-logs][0] primary shard is not active Timeout: [1m]"
    if status == 500:
        return "exception", "injected item failure"
    return "status_exception", f"injected item failure with status {status}"


def _token(value: Any) -> str:
    if isinstance(value, dict):
        return "START_OBJECT"
    if isinstance(value, list):
        return "START_ARRAY"
    if isinstance(value, str):
        return "VALUE_STRING"
    return "VALUE_NUMBER"


def _int(value: Any, name: str) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise _Fail(400, error_body(400, "illegal_argument_exception",
                                    f"Failed to parse int parameter [{name}] with value [{value}]")) from None
    if n < 0:
        raise _Fail(400, error_body(400, "illegal_argument_exception", f"[{name}] parameter cannot be negative"))
    return n


def _sort_spec(value: Any) -> list[tuple[str, bool]]:
    """[(field, descending)] from the forms ES accepts: "f", "f:desc", {"f": "asc"}, {"f": {"order": ..}}, lists."""
    if value is None:
        return []
    items = value if isinstance(value, list) else (value.split(",") if isinstance(value, str) else [value])
    out: list[tuple[str, bool]] = []
    for item in items:
        if isinstance(item, str):
            fname, _, order = item.partition(":")
            out.append((fname.strip(), order.strip() == "desc"))
        elif isinstance(item, dict) and len(item) == 1:
            fname, spec = next(iter(item.items()))
            order = spec.get("order", "asc") if isinstance(spec, dict) else spec
            if order not in ("asc", "desc"):
                raise _Fail(400, error_body(400, "parsing_exception", f"[sort] unknown order [{order}]", line=1, col=1))
            out.append((fname, order == "desc"))
        else:
            raise _Fail(400, error_body(400, "parsing_exception", "[sort] malformed sort", line=1, col=1))
    return out


class _Desc:
    """Reverses the order of a value inside a sort key."""

    __slots__ = ("v",)

    def __init__(self, v: Any) -> None:
        self.v = v

    def __lt__(self, other: _Desc) -> bool:
        return bool(other.v < self.v)

    def __gt__(self, other: _Desc) -> bool:
        return bool(other.v > self.v)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Desc) and other.v == self.v


def _sort_key(values: list[Any], sort: list[tuple[str, bool]]) -> tuple[Any, ...]:
    key: list[Any] = []
    for v, (_f, desc) in zip(values, sort, strict=False):  # search_after was checked to match sort
        # missing values sort last; mixed types compare as text
        part = (1, "") if v is None else (0, v if isinstance(v, (int, float)) else str(v))
        key.append(_Desc(part) if desc else part)
    return tuple(key)


_FLAT_PREFIXES = tuple(p + "." for p in _FLAT_OBJECTS)


def _in_flat(path: str) -> bool:
    return path.startswith(_FLAT_PREFIXES)


def _leaves(source: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in source.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            yield path, value
            yield from _leaves(value, path)
        elif isinstance(value, list):
            for v in value:
                if isinstance(v, dict):
                    yield path, v
                    yield from _leaves(v, path)
                elif v is not None:
                    yield path, v
        elif value is not None:
            yield path, value


def _flatten(source: Mapping[str, Any]) -> dict[str, Any]:
    return {p: v for p, v in _leaves(source) if not isinstance(v, dict)}


def _kind(path: str, value: Any) -> str | None:
    if path == "@timestamp":
        return "date"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "long"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "keyword"
    return None


def _fits(have: str, kind: str, value: Any) -> bool:
    if have == kind:
        return True
    if have == "object" or kind == "object":
        return False
    if have == "keyword":
        return True  # numbers and booleans are indexed as their text
    if have in ("long", "float"):
        if isinstance(value, bool):
            return False
        if isinstance(value, (int, float)):
            return True
        try:
            float(value)
            return True
        except ValueError:
            return False
    if have == "boolean":
        return value in ("true", "false")
    if have == "date":
        return parse_date_ms(value) is not None
    return False


def _apply_at(doc: dict[str, Any], path: str, convert: Callable[[Any], Any]) -> None:
    """Convert the value at a dotted path; a dotted key stored whole (attributes.audit.stream.seq) counts too."""
    node: Any = doc
    parts = path.split(".")
    i = 0
    while i < len(parts) and isinstance(node, dict):
        for j in range(len(parts), i, -1):
            key = ".".join(parts[i:j])
            if key in node:
                if j == len(parts):
                    node[key] = convert(node[key])
                    return
                node = node[key]
                i = j
                break
        else:
            return


def _gunzip(raw: bytes, limit: int) -> bytes:
    """A gzip body decompressed; 413 once it is over `limit` bytes decompressed (http.max_content_length
    counts the body before compression), 400 when it is not gzip."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(raw, limit + 1)
        if len(out) > limit:
            raise _Fail(413, b"")
        if not d.eof or d.unconsumed_tail:
            raise zlib.error("truncated or trailing data")
    except zlib.error:
        raise _Fail(400, error_body(400, "illegal_argument_exception", "the request body is not valid gzip")) from None
    return out


def _handler_for(standin: ElasticStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True
        wbufsize = -1  # headers and body leave in one segment; handle_one_request flushes
        server_version = "ElasticStandIn"
        sys_version = ""

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
            pass

        def do_GET(self) -> None:
            self._handle("GET")

        def do_HEAD(self) -> None:
            self._handle("HEAD")

        def do_POST(self) -> None:
            self._handle("POST")

        def do_PUT(self) -> None:
            self._handle("PUT")

        def do_DELETE(self) -> None:
            self._handle("DELETE")

        def _handle(self, method: str) -> None:
            split = urlsplit(self.path)
            path = unquote(split.path)
            query = dict(parse_qsl(split.query, keep_blank_values=True))
            headers = {k.lower(): v for k, v in self.headers.items()}
            length = int(headers.get("content-length") or 0)
            encoding = headers.get("content-encoding", "").lower()
            if standin.early_413 and encoding in ("", "identity") and length > standin.max_content_length:
                # as Netty's content-size handler: the 413 goes out before the body is read, and the
                # connection is closed (what was sent of the body is never read)
                masked = {k: ("<masked>" if k == "authorization" else v) for k, v in headers.items()}
                seen = Seen(method, path, query, masked, length, False, status=413)
                with standin._lock:
                    standin.seen.append(seen)
                self._reply(method, 413, b"", {}, False)
                return
            raw = self.rfile.read(length) if length else b""
            seen = Seen(method, path, query,
                        {k: ("<masked>" if k == "authorization" else v) for k, v in headers.items()}, len(raw),
                        encoding == "gzip")
            with standin._lock:
                standin.seen.append(seen)
            if standin.delay:
                standin._stopping.wait(standin.delay)
            status, body, extra = 200, None, {}
            compat = any("compatible-with" in headers.get(h, "") for h in ("accept", "content-type"))
            try:
                if length > standin.max_content_length:
                    raise _Fail(413, b"")
                if encoding == "gzip":
                    raw = _gunzip(raw, standin.max_content_length)
                elif encoding not in ("", "identity"):
                    raise _Fail(400, error_body(400, "illegal_argument_exception",
                                                f"unsupported Content-Encoding [{encoding}]"))
                status, body = self._route(method, path, query, headers, raw, seen)
            except _Fail as fail:
                status, body, extra = fail.status, fail.body, fail.headers
                if isinstance(body, dict):
                    with standin._lock:
                        standin.rejections.append({"level": "request", "status": status, "path": path,
                                                   "error": body.get("error")})
            seen.status = status
            self._reply(method, status, body, extra, compat)

        def _route(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], raw: bytes,
                   seen: Seen) -> tuple[int, Any]:
            access = standin._auth(headers, path)
            segs = [s for s in path.split("/") if s]
            fault = standin._request_fault(path)
            if fault is not None:
                raise _Fail(fault.status, fault.body,
                            {"Retry-After": fault.retry_after} if fault.retry_after is not None else None)
            if not segs:
                if method in ("GET", "HEAD"):
                    return 200, self._banner()
                raise self._no_handler(method, path)
            if segs[-1] == "_bulk" and len(segs) <= 2:
                if method not in ("POST", "PUT"):
                    raise self._no_handler(method, path)
                standin._check_params(query, _BULK_PARAMS, path)
                standin._check_media(headers, "ndjson")
                result = standin.bulk(segs[0] if len(segs) == 2 else None, query, raw, access, path)
                seen.items = len(result["items"])
                seen.ids = [str(next(iter(it.values())).get("_id")) for it in result["items"]]
                return 200, result
            if segs[:2] == ["_search", "scroll"]:
                standin._check_media(headers, "json")
                doc = self._json(raw)
                if method == "DELETE":
                    ids = doc.get("scroll_id") or query.get("scroll_id") or []
                    with standin._lock:
                        return 200, standin._clear_scroll([ids] if isinstance(ids, str) else list(ids))
                sid = doc.get("scroll_id") or query.get("scroll_id") or (segs[2] if len(segs) > 2 else None)
                if not sid:
                    raise _Fail(400, error_body(400, "action_request_validation_exception",
                                                "Validation Failed: 1: scrollId is missing;"))
                with standin._lock:
                    return 200, standin._scroll(sid)
            if segs[-1] in ("_search", "_count") and len(segs) <= 2 and method in ("GET", "POST"):
                standin._check_media(headers, "json")
                target = segs[0] if len(segs) == 2 else "_all"
                doc = self._json(raw)
                if segs[-1] == "_count":
                    standin._check_params(query, frozenset({"filter_path", "pretty", "human", "error_trace",
                                                            "ignore_unavailable", "allow_no_indices"}), path)
                    for key in doc:
                        if key != "query":
                            raise _Fail(400, error_body(400, "parsing_exception",
                                                        f"request does not support [{key}]", line=1, col=1))
                    with standin._lock:
                        n = len(standin._matching(target, doc.get("query")))
                    return 200, {"count": n, "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0}}
                standin._check_params(query, _SEARCH_PARAMS, path)
                with standin._lock:
                    return 200, standin._search(target, doc, query)
            if segs[-1] == "_refresh" and len(segs) <= 2 and method in ("GET", "POST"):
                return 200, {"_shards": {"total": 1, "successful": 1, "failed": 0}}
            raise self._no_handler(method, path)

        @staticmethod
        def _json(raw: bytes) -> dict[str, Any]:
            if not raw.strip():
                return {}
            try:
                doc = json.loads(raw)
            except ValueError as exc:
                raise _Fail(400, error_body(400, "x_content_parse_exception", f"[1:1] {exc}")) from None
            if not isinstance(doc, dict):
                raise _Fail(400, error_body(400, "parsing_exception", "request body must be an object"))
            return doc

        @staticmethod
        def _no_handler(method: str, path: str) -> _Fail:
            return _Fail(400, {"error": f"no handler found for uri [{path}] and method [{method}]", "status": 400})

        @staticmethod
        def _banner() -> dict[str, Any]:
            return {
                "name": "standin-node-0",
                "cluster_name": "otel-audit-standin",
                "cluster_uuid": standin.cluster_uuid,
                "version": {
                    "number": standin.version, "build_flavor": "default", "build_type": "docker",
                    "build_hash": "0" * 40, "build_date": "2025-07-01T00:00:00.000000000Z", "build_snapshot": False,
                    "lucene_version": "10.2.2", "minimum_wire_compatibility_version": "8.19.0",
                    "minimum_index_compatibility_version": "8.0.0",
                },
                "tagline": "You Know, for Search",
            }

        def _reply(self, method: str, status: int, body: Any, extra: Mapping[str, str], compat: bool) -> None:
            if isinstance(body, (bytes, bytearray)):
                data = bytes(body)
                ctype = "text/plain; charset=UTF-8"
            else:
                data = json.dumps(body, separators=(",", ":")).encode() if body is not None else b""
                ctype = (f"application/vnd.elasticsearch+json;compatible-with={standin.major}" if compat
                         else "application/json")
            try:
                self.send_response(status)
                self.send_header("X-Elastic-Product", "Elasticsearch")  # on EVERY response
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                for k, v in extra.items():
                    self.send_header(k, v)
                if status == 413:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                if method != "HEAD":
                    self.wfile.write(data)
            except OSError:
                self.close_connection = True

    return Handler
