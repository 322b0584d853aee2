"""Export audit records to Elasticsearch with the `_bulk` API, into a data stream.

Every record becomes one `create` action (data streams accept nothing else) into
`logs-<dataset>-<namespace>` (default `logs-otel_audit-default`), with the record's audit id
`<audit.stream.id>-<audit.stream.seq>` as `_id`: a document sent twice (a retry after a timeout,
a replay from the spool) comes back as a 409 version conflict instead of a second copy, and is
counted as delivered.

A document carries ECS fields for the SIEM's rules and dashboards (`event.kind`, `event.category`
and `event.type` from the catalog, `event.action`, `event.outcome`, `user.*`, `source.ip`,
`related.*`, `message` ...), the OTel attributes under their own names in `attributes.*` (as the
contrib exporter's `otel` mapping mode stores them), and `audit.otlp`: the record's own
OTLP/JSON logRecord as text. The searchable fields may be remapped or retyped by the cluster;
`audit.otlp` is what `otel_audit.sources.elastic` reads back and the verifier checks.

Configuration keys are those of the collector's `elasticsearch` exporter (`endpoint`,
`endpoints`, `cloudid`, `api_key`, `user`, `password`, `logs_index`, `logs_dynamic_index`,
`logs_dynamic_id`, `pipeline`, `compression`, `retry`, `timeout`, `tls`, `headers` ...). Routing
follows it too: `logs_index` when set, else the `elasticsearch.index` attribute, else a data
stream from the `data_stream.dataset` / `data_stream.namespace` attributes (record > scope >
resource) with this exporter's defaults.

Refusals follow the policy of `otel_audit.exporters._http` (`last_rejected`). Per item of a
`_bulk` answer: 2xx and 409 are delivered; a status in `retry_on_status` (429 and the transient
5xx by default), and 401, 403 and 404 (the credentials lack a privilege on that index, or the
index or data stream is missing: not the document's fault) are sent again, alone; any other
status (a `mapper_parsing_exception`, a `document_parsing_exception` ...) is a permanent
rejection of that document, logged with the item's `error.type` / `error.reason` and counted.
For the whole request: `retry_on_status` and connection failures are retried per
`retry_on_failure`; 400 and 413 say nothing of which document is to blame, so a request of
several documents is split in halves and a single document is rejected; 401, 403 and every
other status are retried, then the export returns FAILURE and a durable spool keeps the records.
After `os.fork()` the child sends through a fresh session (see `_http`).

Environment (used when an argument is not given; a bad value logs a warning and falls back):
`OTEL_AUDIT_ELASTIC_ENDPOINT` (comma-separated URLs), then the contrib exporter's
`ELASTICSEARCH_URL`; `OTEL_AUDIT_ELASTIC_CLOUDID`, `OTEL_AUDIT_ELASTIC_API_KEY`,
`OTEL_AUDIT_ELASTIC_USER`, `OTEL_AUDIT_ELASTIC_PASSWORD`, `OTEL_AUDIT_ELASTIC_LOGS_INDEX`,
`OTEL_AUDIT_ELASTIC_DATASET`, `OTEL_AUDIT_ELASTIC_NAMESPACE`, `OTEL_AUDIT_ELASTIC_PIPELINE`,
`OTEL_AUDIT_ELASTIC_TIMEOUT`, `OTEL_AUDIT_ELASTIC_COMPRESSION`, `OTEL_AUDIT_ELASTIC_CA_FILE`.

Secrets (API key, password) live only in the session's Authorization header: never in a
message, an exception or a repr.
"""

from __future__ import annotations

import base64
import binascii
import gzip as _gzip
import itertools
import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlencode, urlunsplit

import orjson
import requests

from otel_audit import siem_fields
from otel_audit._sdk_compat import attributes_view
from otel_audit.canonical import STREAM_ID, STREAM_SEQ
from otel_audit.errors import ConfigError
from otel_audit.exporters import _settings
from otel_audit.exporters._http import (
    MAX_COUNT,
    RETRYABLE_STATUSES,
    HttpLogExporter,
    Request,
    RetrySettings,
    TlsSettings,
    Verdict,
    duration,
    retry_after_seconds,
    transport_settings,
    whole_number,
)

# The per-record OTLP/JSON encoder; `audit.otlp` must be exactly what the file exporter writes.
from otel_audit.otlpjson import encode_log_record
from otel_audit.safe import redact_url

if TYPE_CHECKING:
    from opentelemetry.sdk._logs import ReadableLogRecord

__all__ = [
    "DEFAULT_DATASET",
    "DEFAULT_NAMESPACE",
    "ENV_API_KEY",
    "ENV_CLOUDID",
    "ENV_ENDPOINT",
    "ElasticLogExporter",
    "audit_id",
    "decode_cloud_id",
    "document",
    "index_name_problem",
]

_log = logging.getLogger(__name__)

ENV_ENDPOINT = "OTEL_AUDIT_ELASTIC_ENDPOINT"
ENV_ES_URL = "ELASTICSEARCH_URL"  # the contrib exporter's fallback
ENV_CLOUDID = "OTEL_AUDIT_ELASTIC_CLOUDID"
ENV_API_KEY = "OTEL_AUDIT_ELASTIC_API_KEY"
ENV_USER = "OTEL_AUDIT_ELASTIC_USER"
ENV_PASSWORD = "OTEL_AUDIT_ELASTIC_PASSWORD"
ENV_LOGS_INDEX = "OTEL_AUDIT_ELASTIC_LOGS_INDEX"
ENV_DATASET = "OTEL_AUDIT_ELASTIC_DATASET"
ENV_NAMESPACE = "OTEL_AUDIT_ELASTIC_NAMESPACE"
ENV_PIPELINE = "OTEL_AUDIT_ELASTIC_PIPELINE"
ENV_TIMEOUT = "OTEL_AUDIT_ELASTIC_TIMEOUT"
ENV_COMPRESSION = "OTEL_AUDIT_ELASTIC_COMPRESSION"
ENV_CA_FILE = "OTEL_AUDIT_ELASTIC_CA_FILE"

DEFAULT_ENDPOINT = "http://localhost:9200"
DEFAULT_DATASET = "otel_audit"
DEFAULT_NAMESPACE = "default"
DEFAULT_TIMEOUT = 90.0  # the contrib exporter's default
#: Bulk bodies are cut below this many bytes (before gzip): the contrib exporter's batch max_size,
#: far under Elasticsearch's http.max_content_length (100mb), so a batch never meets a 413.
DEFAULT_MAX_BULK_BYTES = 5_000_000
#: Elasticsearch's default http.max_content_length, which counts the body before compression: the
#: largest max_bulk_bytes accepted (a larger body is a 413 on a cluster left at its default).
MAX_CONTENT_LENGTH = 100 * 1024 * 1024

NDJSON = "application/x-ndjson"
_INDEX_FORBIDDEN = frozenset('\\/*?"<>| ,#:')
_DS_FIELD_MAX = 100
_COMPRESSIONS = ("gzip", "none")
_MAPPING_MODES = ("none", "ecs", "otel", "raw", "bodymap")

# Collector-only keys that change nothing about what reaches the cluster or how reliably:
# other signals' routing, node discovery, the exporter's own telemetry and HTTP-client tuning.
# Accepted and ignored so that a collector's block moves here unchanged.
_IGNORED_KEYS = (
    "metrics_index", "metrics_dynamic_index", "traces_index", "traces_dynamic_index", "traces_dynamic_id",
    "num_workers", "flush", "discover", "telemetry", "metadata_keys",
    "read_buffer_size", "write_buffer_size", "max_idle_conns", "max_idle_conns_per_host", "max_conns_per_host",
    "idle_conn_timeout", "disable_keep_alives", "http2_read_idle_timeout", "http2_ping_timeout",
    "compression_params",
)


# -- names, ids and Cloud IDs -----------------------------------------------------------------------


def index_name_problem(name: str) -> str | None:
    """What makes `name` an invalid index or data stream name, or None when it is valid."""
    if not name:
        return "it is empty"
    if name != name.lower():
        return "it must be lowercase"
    bad = sorted(set(name) & _INDEX_FORBIDDEN)
    if bad:
        return "it must not contain " + " ".join(repr(c) for c in bad)
    if name[0] in "-_+":
        return "it must not start with '-', '_' or '+'"
    if name.startswith(".ds-"):
        return "it must not start with '.ds-' (the backing indices' prefix)"
    if name in (".", ".."):
        return "it cannot be '.' or '..'"
    if len(name.encode()) > 255:
        return "it is longer than 255 bytes"
    return None


def _ds_field_problem(value: str, what: str) -> str | None:
    if not value:
        return f"the {what} is empty"
    if "-" in value:
        return f"the {what} must not contain '-'"
    if len(value) > _DS_FIELD_MAX:
        return f"the {what} is longer than {_DS_FIELD_MAX} characters"
    problem = index_name_problem(value)
    return None if problem is None else f"the {what} is not usable in an index name: {problem}"


def _sanitize_ds_field(value: str) -> str:
    """A dataset or namespace taken from an attribute, made valid as the contrib exporter does."""
    out = "".join("_" if c in _INDEX_FORBIDDEN or c == "-" else c for c in value.lower())
    return out[:_DS_FIELD_MAX] or "_"


def data_stream_of(index: str) -> tuple[str, str] | None:
    """(dataset, namespace) of a `logs-<dataset>-<namespace>` name, else None."""
    parts = index.split("-")
    if len(parts) == 3 and parts[0] == "logs" and parts[1] and parts[2]:
        return parts[1], parts[2]
    return None


def audit_id(attributes: Mapping[str, Any]) -> str | None:
    """`<audit.stream.id>-<audit.stream.seq>` of a signed record, None for an unsigned one."""
    stream = attributes.get(STREAM_ID)
    seq = attributes.get(STREAM_SEQ)
    if isinstance(stream, str) and stream and type(seq) is int and seq >= 0:
        return f"{stream}-{seq}"
    return None


def decode_cloud_id(cloud_id: str) -> str:
    """The Elasticsearch URL an Elastic Cloud ID names.

    A Cloud ID is `<label>:<base64("<host>[:port]$<es_uuid>[:port]$<kibana_uuid>")>`; the
    Elasticsearch URL is `https://<es_uuid>.<host>` on port 443 unless a port is given.
    Raises ValueError saying what is wrong.
    """
    if not isinstance(cloud_id, str) or not cloud_id.strip():
        raise ConfigError("a Cloud ID is a non-empty string such as 'name:base64...'")
    encoded = cloud_id.strip().rpartition(":")[2]
    try:
        decoded = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise ConfigError(
            "the part after ':' is not base64; copy the Cloud ID from the Elastic Cloud console"
        ) from None
    parts = decoded.split("$")
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise ConfigError("the decoded Cloud ID is not '<host>$<elasticsearch id>$<kibana id>'")
    port = 443
    names: list[str] = []
    for part in parts[:2]:  # the port may follow the host or the Elasticsearch id
        name, sep, number = part.rpartition(":")
        if sep:
            if not number.isdigit() or not 0 < int(number) < 65536:
                raise ConfigError(f"the decoded Cloud ID has a bad port {number!r}")
            port = int(number)
            part = name
        if not part:
            raise ConfigError("the decoded Cloud ID has an empty host or Elasticsearch id")
        names.append(part)
    host, es_id = names
    return f"https://{es_id}.{host}" + ("" if port == 443 else f":{port}")


@dataclass(frozen=True)
class _Endpoint:
    url: str  # scheme://host[:port][/prefix], no trailing slash, no credentials
    basic: tuple[str, str] | None  # user:password that was written in the URL


def _endpoint(url: object) -> _Endpoint:
    """Check one endpoint URL; credentials written in it are taken out (they would leak in messages)."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigError("an endpoint is a URL such as https://elasticsearch:9200")
    parts = _settings.url_parts(url, example="https://elasticsearch:9200")  # scheme, host, port
    if parts.query or parts.fragment:
        raise ConfigError(f"{_safe_url(url)!r} has a query or fragment; give the cluster's base URL only")
    basic = None
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, netloc = netloc.rpartition("@")
        user, _, password = userinfo.partition(":")
        basic = (unquote(user), unquote(password))
    return _Endpoint(urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", "")), basic)


def _safe_url(url: str) -> str:
    """The URL for messages: no password, no credential in the query or the path (otel_audit.safe)."""
    return redact_url(url)


def _api_key_header(api_key: str | tuple[str, str]) -> str:
    """The `Authorization` value of an API key: the 'encoded' form, or (id, api_key) / 'id:api_key'."""
    if isinstance(api_key, tuple):
        if len(api_key) != 2 or not all(isinstance(x, str) and x for x in api_key):
            raise ConfigError("api_key as a tuple must be (id, api_key), two non-empty strings")
        api_key = base64.b64encode(f"{api_key[0]}:{api_key[1]}".encode()).decode("ascii")
    if not isinstance(api_key, str) or not api_key.strip():
        raise ConfigError("api_key must be a non-empty string: the 'encoded' value Elasticsearch returned")
    key = api_key.strip()
    if ":" in key:  # base64 never holds ':': this is 'id:api_key', so encode it as the client libraries do
        key = base64.b64encode(key.encode()).decode("ascii")
    if not key.isascii() or not key.isprintable() or " " in key:
        raise ConfigError("api_key holds characters an HTTP header cannot carry; use the 'encoded' form")
    return f"ApiKey {key}"


def _basic_header(user: str, password: str) -> str:
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


# -- documents -------------------------------------------------------------------------------------


def _plain_dict(attrs: Any) -> Mapping[str, Any]:
    """The plain dict behind the SDK's BoundedAttributes (its Mapping methods are slow), or the mapping itself."""
    return attributes_view(attrs)


# The mapping itself lives in otel_audit.siem_fields: the reader derives the same fields from audit.otlp.
_iso = siem_fields.es_iso
_scalar = siem_fields.es_scalar
_jsonable = siem_fields.es_jsonable
_searchable = siem_fields.es_searchable
_text = siem_fields.es_text
ecs_fields = siem_fields.ecs_fields


def document(
    readable: ReadableLogRecord,
    *,
    otlp: Mapping[str, Any] | None = None,
    data_stream: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """The Elasticsearch document of one SDK log record (see the module docstring for its fields).

    Every field but the routing (``data_stream.*``, ``event.dataset``), the resource (``service.name``,
    ``host.name``, ``resource.attributes.*``) and the scope is derived from the record's own OTLP/JSON
    (`otel_audit.siem_fields.es_record_fields`), as the verifier derives them again from ``audit.otlp``.
    """
    rec = otlp if otlp is not None else encode_log_record(readable)
    fields, _ = siem_fields.es_record_fields(rec, now_ns=time.time_ns())
    doc: dict[str, Any] = {"@timestamp": fields.pop("@timestamp")}
    if data_stream is not None:
        doc["data_stream"] = {"type": "logs", "dataset": data_stream[0], "namespace": data_stream[1]}
        fields["event"]["dataset"] = data_stream[0]
    doc.update(fields)
    resource_attrs = _plain_dict(readable.resource.attributes) if readable.resource is not None else {}
    doc.update(siem_fields.es_resource_fields(resource_attrs))
    scope = readable.instrumentation_scope
    if scope is not None and scope.name:
        doc["scope"] = {"name": scope.name, **({"version": scope.version} if scope.version else {})}
    doc["audit"] = {"otlp": orjson.dumps(rec).decode()}
    return doc


# -- the exporter ----------------------------------------------------------------------------------


@dataclass
class _Item:
    index: str
    id: str | None
    line: bytes  # action line + "\n" + source line + "\n"
    pos: int = -1  # the record's position in the batch given to export()


# -- settings ---------------------------------------------------------------------------------------


def _index(value: Any) -> str:
    problem = index_name_problem(value) if isinstance(value, str) else "it must be a string"
    if problem:
        raise ConfigError(f"{value!r} is not a valid index or data stream name: {problem}")
    return str(value)


def _ds_field(what: str) -> Any:
    def check(value: Any) -> str:
        problem = _ds_field_problem(value, what) if isinstance(value, str) else "it must be a string"
        if problem:
            raise ConfigError(f"{value!r}: {problem}")
        return str(value)
    return check


def _pipeline(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError("must be the id of an ingest pipeline (a string)")
    return value


def _statuses(value: Any) -> frozenset[int]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ConfigError("expected a list of HTTP status codes such as [429, 503]")
    items = list(value)
    if not all(isinstance(s, int) and not isinstance(s, bool) and 100 <= s <= 599 for s in items):
        raise ConfigError("expected a list of HTTP status codes such as [429, 503]")
    return frozenset(items)


def _urls(value: Any) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(u, str) for u in value):
        raise ConfigError("expected a list of URLs")
    for u in value:
        _endpoint(u)
    return list(value)


def _true_false_or_null(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ConfigError(f"must be true, false or null, got {value!r}")


_S = _settings.Setting
_TEXT = _settings.Text(nonempty=True)
_OWN_RULES = "; exactly one of endpoint, endpoints and cloudid (checked by the exporter)"
_AUTH_REFUSED = "authenticator extensions are not available here; use api_key, or user and password"


def _refuse_auth(value: Any) -> Any:
    raise ValueError(_AUTH_REFUSED)


_AUTH_TWICE = ("an Authorization header is set as well as api_key or user/password, and it would replace "
               "them on every request; give the credential once (remove the header, or the api_key/user)")


def _authorization_header(headers: Mapping[str, str] | None) -> bool:
    return any(k.strip().lower() == "authorization" for k in (headers or {}))


SETTINGS = _settings.Model("elasticsearch", [
    _S("endpoint", _settings.Check(lambda u: _endpoint(u).url and u, "URL"), None, (ENV_ENDPOINT, ENV_ES_URL),
       "the cluster's URL (variables: comma-separated URLs)" + _OWN_RULES, default_doc=DEFAULT_ENDPOINT),
    _S("endpoints", _settings.Check(_urls, "list"), None, (), "several cluster URLs, tried round robin"),
    _S("cloudid", _settings.Check(decode_cloud_id, "string"), None, (ENV_CLOUDID,), "an Elastic Cloud ID"),
    _S("api_key", _settings.Check(_api_key_header, "string"), None, (ENV_API_KEY,), "the API key's 'encoded' "
       "form (or id:api_key); exclusive with user/password", secret=True),
    _S("user", _TEXT, None, (ENV_USER,), "HTTP Basic user"),
    _S("password", _settings.Text(), None, (ENV_PASSWORD,), "HTTP Basic password", secret=True),
    _S("logs_index", _settings.Check(_index, "string"), None, (ENV_LOGS_INDEX,), "one index or data stream for "
       "every record (unset: logs-<dataset>-<namespace>, or the record's data_stream.* attributes)"),
    _S("dataset", _settings.Check(_ds_field("dataset"), "string"), DEFAULT_DATASET, (ENV_DATASET,),
       "the data stream dataset of records that name none", key=""),
    _S("namespace", _settings.Check(_ds_field("namespace"), "string"), DEFAULT_NAMESPACE, (ENV_NAMESPACE,),
       "the data stream namespace of records that name none", key=""),
    _S("pipeline", _settings.Check(_pipeline, "string"), None, (ENV_PIPELINE,), "an ingest pipeline for every "
       "document"),
    _S("retry_on_status", _settings.Check(_statuses, "list"), None, (), "statuses retried, per item and per "
       "request (the block's retry.retry_on_status)", key="", default_doc="408, 425, 429, 500, 502, 503, 504"),
    _S("dynamic_id", _settings.Bool(), False, (), "records without an audit id take the elasticsearch.document_id "
       "attribute as _id (the block's logs_dynamic_id.enabled)", key=""),
    _S("include_source_on_error", _settings.Check(_true_false_or_null, "bool"), None, (), "passed to _bulk (ES 8.18+)"),
    _S("max_bulk_bytes", _settings.Size(
        1024, MAX_CONTENT_LENGTH, why=" (Elasticsearch's default http.max_content_length, 100mb)"),
       DEFAULT_MAX_BULK_BYTES, (),
       "_bulk bodies are cut below this before gzip (a 413 splits them further)", key=""),
    _S("proxy_url", _settings.ProxyUrl(), None, (), "an HTTP(S) proxy, or SOCKS5 with PySocks, for every request "
       "(wins over "
       "HTTP(S)_PROXY)"),
    _S("compression", _settings.Choice(_COMPRESSIONS, {"": "none", True: "gzip", False: "none"}), "gzip",
       (ENV_COMPRESSION,), "gzip the bulk bodies"),
    *transport_settings("OTEL_AUDIT_ELASTIC_", timeout=DEFAULT_TIMEOUT, ca_env=ENV_CA_FILE),
    _S("retry_block", _settings.Check(lambda v: v, "retry"), None, (), "the contrib exporter's retry block: "
       "enabled, initial_interval, max_interval, max_elapsed_time, retry_on_status (max_retries, max_requests "
       "are checked, not applied); exclusive with retry_on_failure", key="retry"),
    _S("logs_dynamic_id", _settings.Check(lambda v: v, "mapping"), None, (), "{enabled: true}: see dynamic_id"),
    _S("logs_dynamic_index", _settings.Check(lambda v: v, "mapping"), None, (), "accepted ({enabled: ...}); "
       "a no-op upstream too", unused=True),
    _S("logstash_format", _settings.Check(lambda v: v, "mapping"), None, (), "only enabled: false (audit "
       "records go to a data stream)", unused=True),
    _S("mapping", _settings.Check(lambda v: v, "mapping"), None, (), "mode, allowed_modes, dedot, dedup: "
       "checked; documents always carry ECS fields, attributes.* and audit.otlp", unused=True),
    _S("auth", _settings.Check(_refuse_auth, "mapping"), None, (), "refused: " + _AUTH_REFUSED),
], ignored=(*_IGNORED_KEYS, "sending_queue", "batch"), title="elasticsearch (ElasticLogExporter)")

#: keys from_config reads with the exporter's own cross-checks (before the model reads the rest)
_OWN_KEYS = ("endpoint", "endpoints", "cloudid", "api_key", "user", "password", "auth", "logs_dynamic_id",
             "logs_dynamic_index", "logstash_format", "mapping", "retry", "retry_on_failure")
_GENERIC = ("logs_index", "dataset", "namespace", "pipeline", "retry_on_status", "dynamic_id",
            "include_source_on_error", "max_bulk_bytes", "proxy_url", "compression", "timeout", "tls", "retry",
            "headers", "proxy_from_env", "tls_ca_file")


class ElasticLogExporter(HttpLogExporter):
    """Sends audit records to Elasticsearch with `_bulk` `create` actions into a data stream.

    Args:
        endpoint: the cluster's URL, or several (tried round robin); exclusive with `cloudid`.
        cloudid: an Elastic Cloud ID, decoded to the cluster's URL.
        api_key: the API key's 'encoded' form (or `(id, api_key)`); exclusive with user/password.
        user, password: HTTP Basic credentials.
        logs_index: one index or data stream for every record (static routing).
        dataset, namespace: the data stream `logs-<dataset>-<namespace>` of dynamic routing when
            a record names none itself (defaults `otel_audit`, `default`).
        pipeline: an ingest pipeline for every document.
        retry_on_status: statuses retried, per item and per request (default: RETRYABLE_STATUSES).
        dynamic_id: for records without an audit id, use the `elasticsearch.document_id` attribute.
        include_source_on_error: passed to `_bulk` (ES 8.18+); None leaves it out.
        max_bulk_bytes: a batch is cut into `_bulk` bodies of at most this size before gzip (as
            http.max_content_length counts them), 1024 up to 100 MiB (that setting's default).
            A cluster with a lower limit answers 413: the body is split in halves, down to single
            documents; one document over the limit on its own is rejected (logged, counted).
        proxy_url: an HTTP(S) proxy for every request (wins over the environment's HTTP(S)_PROXY).
        timeout, tls, retry, compression, headers, session, proxy_from_env: as `HttpLogExporter`.
    """

    name = "elasticsearch"

    def __init__(
        self,
        endpoint: str | Sequence[str] | None = None,
        *,
        cloudid: str | None = None,
        api_key: str | tuple[str, str] | None = None,
        user: str | None = None,
        password: str | None = None,
        logs_index: str | None = None,
        dataset: str | None = None,
        namespace: str | None = None,
        pipeline: str | None = None,
        retry_on_status: Iterable[int] | None = None,
        dynamic_id: bool | str | None = None,
        include_source_on_error: bool | None = None,
        max_bulk_bytes: int | str | None = None,
        proxy_url: str | None = None,
        timeout: float | str | None = None,
        tls: TlsSettings | Mapping[str, Any] | None = None,
        retry: RetrySettings | Mapping[str, Any] | None = None,
        compression: bool | str | None = None,
        headers: Mapping[str, str] | None = None,
        session: requests.Session | None = None,
        proxy_from_env: bool | str = True,
        **collector: Any,
    ) -> None:
        given = SETTINGS.given(locals(), collector)
        if endpoint is None and cloudid is None and given.get("endpoints") is not None:
            endpoint = given["endpoints"]  # the collector's list form, as a keyword
        if given.get("retry_block") is not None:  # the contrib exporter's `retry` block, as a keyword
            if given.get("retry") is not None:
                raise ConfigError("elasticsearch.retry_block: retry is given too; give only one of them")
            given["retry"], statuses = _retry_block(given["retry_block"], "elasticsearch.retry_block")
            if statuses is not None and given.get("retry_on_status") is None:
                given["retry_on_status"] = statuses
        v = SETTINGS.resolve(given, names=_GENERIC)
        tls = v["tls"] if v["tls"] is not None or not v["tls_ca_file"] else TlsSettings(ca_file=v["tls_ca_file"])
        super().__init__(timeout=v["timeout"], tls=tls, retry=v["retry"], compression=v["compression"] == "gzip",
                         headers=v["headers"], session=session, proxy_from_env=v["proxy_from_env"])

        self._endpoints, url_basic = self._resolve_endpoints(endpoint, cloudid)
        self._cursor = itertools.count()
        self._auth_kind = self._resolve_auth(api_key, user, password, url_basic)
        if self._auth_kind != "none" and _authorization_header(v["headers"]):
            # the header would replace the credential on every request (401 until shutdown)
            raise ConfigError(f"elasticsearch.headers: {_AUTH_TWICE}")
        self.logs_index = v["logs_index"] or None
        self.dataset, self.namespace, self.pipeline = v["dataset"], v["namespace"], v["pipeline"]
        self.retry_on_status = v["retry_on_status"] if v["retry_on_status"] is not None else RETRYABLE_STATUSES
        self.dynamic_id = v["dynamic_id"]
        self.include_source_on_error = v["include_source_on_error"]
        self.max_bulk_bytes = v["max_bulk_bytes"]
        if v["proxy_url"] is not None:
            self.session.proxies = {"http": v["proxy_url"], "https": v["proxy_url"]}
        self.session.headers["User-Agent"] = "otel-audit-elasticsearch"
        self._query = self._bulk_query()
        self.duplicates = 0  # items Elasticsearch already had (409): delivered before, e.g. by a retry
        self.splits = 0  # requests split in two after a 413 (or a 400 that names no document)
        self._warned_413 = False
        self._warned_routes: set[str] = set()

    # configuration helpers

    def _resolve_endpoints(
        self, endpoint: str | Sequence[str] | None, cloudid: str | None
    ) -> tuple[list[str], tuple[str, str] | None]:
        given: list[str] = []
        if endpoint is not None:
            given = [endpoint] if isinstance(endpoint, str) else list(endpoint)
            if not given:
                raise ConfigError("endpoint: give at least one URL")
            if cloudid is not None:
                raise ConfigError("give either endpoint(s) or cloudid, not both")
        elif cloudid is not None:
            given = [decode_cloud_id(cloudid)]
        else:
            given = self._endpoints_from_env()
        eps = [_endpoint(u) for u in given]
        basics = {e.basic for e in eps if e.basic is not None}
        if len(basics) > 1:
            raise ConfigError("the endpoint URLs carry different user:password; configure user and password instead")
        return [e.url for e in eps], next(iter(basics), None)

    @staticmethod
    def _endpoints_from_env() -> list[str]:
        cloud = os.environ.get(ENV_CLOUDID, "").strip()
        for name in (ENV_ENDPOINT, ENV_ES_URL):
            raw = os.environ.get(name, "").strip()
            if not raw:
                continue
            urls = [u.strip() for u in raw.split(",") if u.strip()]
            try:
                for u in urls:
                    _endpoint(u)
            except ValueError as exc:
                _log.warning("%s is not usable (%s); ignored", name, exc)
                continue
            if urls:
                if cloud:
                    _log.warning("%s is set and so is %s; using %s", name, ENV_CLOUDID, name)
                return urls
        if cloud:
            try:
                return [decode_cloud_id(cloud)]
            except ValueError as exc:
                _log.warning("%s is not a usable Cloud ID (%s); ignored", ENV_CLOUDID, exc)
        _log.warning("no Elasticsearch endpoint configured (%s, %s, %s); using %s",
                     ENV_ENDPOINT, ENV_ES_URL, ENV_CLOUDID, DEFAULT_ENDPOINT)
        return [DEFAULT_ENDPOINT]

    def _resolve_auth(
        self,
        api_key: str | tuple[str, str] | None,
        user: str | None,
        password: str | None,
        url_basic: tuple[str, str] | None,
    ) -> str:
        if api_key is not None and (user is not None or password is not None):
            raise ConfigError("give either api_key or user and password, not both")
        if password is not None and user is None:
            raise ConfigError("password is given without user")
        if user is not None and (not isinstance(user, str) or not user or ":" in user):
            raise ConfigError("user must be a non-empty string without ':'")
        if password is not None and not isinstance(password, str):
            raise ConfigError("password must be a string")
        if api_key is None and user is None and url_basic is None:
            env_key = os.environ.get(ENV_API_KEY, "").strip()
            env_user = os.environ.get(ENV_USER, "").strip()
            if env_key and env_user:
                _log.warning("both %s and %s are set; using the API key", ENV_API_KEY, ENV_USER)
            if env_key:
                try:
                    self.session.headers["Authorization"] = _api_key_header(env_key)
                    return "api_key"
                except ValueError:  # never echo the value: it is a secret
                    _log.warning("%s is not a usable API key (it must be the 'encoded' form); ignored", ENV_API_KEY)
            if env_user:
                user, password = env_user, os.environ.get(ENV_PASSWORD, "")
        if api_key is not None:
            self.session.headers["Authorization"] = _api_key_header(api_key)
            return "api_key"
        if user is not None:
            self.session.headers["Authorization"] = _basic_header(user, password or "")
            return "basic"
        if url_basic is not None:
            self.session.headers["Authorization"] = _basic_header(*url_basic)
            return "basic"
        return "none"

    def _bulk_query(self) -> str:
        params: dict[str, str] = {}
        if self.pipeline:
            params["pipeline"] = self.pipeline
        if self.include_source_on_error is not None:
            params["include_source_on_error"] = "true" if self.include_source_on_error else "false"
        return ("?" + urlencode(params, quote_via=quote)) if params else ""

    @property
    def endpoints(self) -> list[str]:
        """The cluster URLs requests go to (credentials removed)."""
        return list(self._endpoints)

    def __repr__(self) -> str:
        target = self.logs_index or f"logs-{self.dataset}-{self.namespace}"
        return (f"{type(self).__name__}(endpoints={[redact_url(e) for e in self._endpoints]!r}, target={target!r}, "
                f"auth={self._auth_kind!r})")

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None, *, where: str) -> ElasticLogExporter:
        """Build the exporter from a block in the shape of the collector's `elasticsearch` exporter.

        Raises ConfigError naming the key for an unknown key, a wrong type or a bad value.
        """
        if cfg is None:
            cfg = {}
        if not isinstance(cfg, Mapping):
            raise ConfigError(f"{where}: expected a mapping of settings, got {type(cfg).__name__}")
        # the keys the model reads alone; the exporter's own rules read the others below
        kw: dict[str, Any] = SETTINGS.read_block({k: v for k, v in cfg.items() if k not in _OWN_KEYS}, where)
        _check_ignored_numbers(cfg, where)

        # where: exactly one of endpoint / endpoints / cloudid, else ELASTICSEARCH_URL
        chosen = [k for k in ("endpoint", "endpoints", "cloudid") if cfg.get(k) not in (None, "", [])]
        if len(chosen) > 1:
            raise ConfigError(f"{where}.{chosen[1]}: {chosen[0]} is set too; give exactly one of endpoint, "
                              "endpoints or cloudid")
        if not chosen:
            urls = [u.strip() for u in os.environ.get(ENV_ES_URL, "").split(",") if u.strip()]
            if not urls:
                raise ConfigError(f"{where}.endpoint: missing; give exactly one of endpoint, endpoints or "
                                  f"cloudid (or set the {ENV_ES_URL} environment variable)")
            kw["endpoint"] = SETTINGS.by_name["endpoints"].parse_value(urls, f"{where}.endpoint ({ENV_ES_URL})")
        else:
            key = chosen[0]
            SETTINGS.by_name[key].parse_value(cfg[key], f"{where}.{key}")
            kw["cloudid" if key == "cloudid" else "endpoint"] = cfg[key]

        # auth
        if cfg.get("auth") is not None:
            raise ConfigError(f"{where}.auth: authenticator extensions are not available here; "
                              "use api_key, or user and password")
        api_key, user, password = cfg.get("api_key"), cfg.get("user"), cfg.get("password")
        for key, value in (("api_key", api_key), ("user", user), ("password", password)):
            if value is not None and not isinstance(value, str):
                # the value may be a secret: name its type only
                raise ConfigError(f"{where}.{key}: must be a string, got a {type(value).__name__}; quote it")
        if api_key and (user or password):
            raise ConfigError(f"{where}.api_key: user/password are set too; use one way to authenticate")
        if password and not user:
            raise ConfigError(f"{where}.user: missing; password is set without user")
        if api_key:
            try:
                _api_key_header(api_key)
            except ValueError as exc:
                raise ConfigError(f"{where}.api_key: {exc}") from None
            kw["api_key"] = api_key
        elif user:
            if ":" in user:
                raise ConfigError(f"{where}.user: must not contain ':'")
            kw["user"], kw["password"] = user, password or ""

        if (api_key or user) and _authorization_header(cfg.get("headers") if isinstance(cfg.get("headers"), Mapping)
                                                       else None):
            raise ConfigError(f"{where}.headers: {_AUTH_TWICE}")

        # routing and documents
        if kw.get("logs_index") == "":
            del kw["logs_index"]
        _enabled_block(cfg.get("logs_dynamic_index"), f"{where}.logs_dynamic_index")  # a no-op upstream too
        kw["dynamic_id"] = _enabled_block(cfg.get("logs_dynamic_id"), f"{where}.logs_dynamic_id")
        if _enabled_block(cfg.get("logstash_format"), f"{where}.logstash_format", extra=(
                "prefix_separator", "date_format")):
            raise ConfigError(f"{where}.logstash_format.enabled: dated indices are not supported; audit records "
                              "go to a data stream (remove the block or set enabled: false)")
        _mapping(cfg.get("mapping"), f"{where}.mapping")

        # transport
        kw.setdefault("compression", "gzip")
        kw.setdefault("tls", TlsSettings())
        if cfg.get("retry_on_failure") is not None:
            kw["retry"] = _settings.Retry()(cfg["retry_on_failure"], f"{where}.retry_on_failure")
        if "retry" in cfg and cfg["retry"] is not None:
            if cfg.get("retry_on_failure") is not None:
                raise ConfigError(f"{where}.retry: retry_on_failure is set too; give only one of them "
                                  "(retry is the contrib elasticsearch exporter's name)")
            kw["retry"], statuses = _retry_block(cfg["retry"], f"{where}.retry")
            if statuses is not None:
                kw["retry_on_status"] = statuses
        try:
            return cls(**kw)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    # building requests

    def _route(self, readable: ReadableLogRecord) -> tuple[str, tuple[str, str] | None]:
        """The target index of a record and, for a data stream, its (dataset, namespace)."""
        if self.logs_index:
            return self.logs_index, data_stream_of(self.logs_index)
        layers = [_plain_dict(readable.log_record.attributes)]
        scope = readable.instrumentation_scope
        if scope is not None and scope.attributes:
            layers.append(_plain_dict(scope.attributes))
        if readable.resource is not None:
            layers.append(_plain_dict(readable.resource.attributes))
        for layer in layers:
            index = layer.get("elasticsearch.index")
            if isinstance(index, str) and index:
                problem = index_name_problem(index)
                if problem is None:
                    return index, data_stream_of(index)
                if index not in self._warned_routes and len(self._warned_routes) < 100:
                    self._warned_routes.add(index)
                    _log.warning("elasticsearch.index %r is not a valid index name (%s); such records go to "
                                 "the default data stream instead", index, problem)
                break
        dataset, namespace = self.dataset, self.namespace
        for key in ("data_stream.dataset", "data_stream.namespace"):
            for layer in layers:
                value = layer.get(key)
                if isinstance(value, str) and value:
                    if key == "data_stream.dataset":
                        dataset = _sanitize_ds_field(value)
                    else:
                        namespace = _sanitize_ds_field(value)
                    break
        return f"logs-{dataset}-{namespace}", (dataset, namespace)

    def _item(self, readable: ReadableLogRecord) -> _Item:
        index, ds = self._route(readable)
        attrs = _plain_dict(readable.log_record.attributes)
        doc_id = audit_id(attrs)
        if doc_id is None and self.dynamic_id:
            value = attrs.get("elasticsearch.document_id")
            doc_id = value if isinstance(value, str) and value else None
        action: dict[str, Any] = {"_index": index}
        if doc_id is not None:
            action["_id"] = doc_id
        source = orjson.dumps(document(readable, data_stream=ds))
        line = b'{"create":' + orjson.dumps(action) + b"}\n" + source + b"\n"
        return _Item(index, doc_id, line)

    def _requests(self, batch: Sequence[ReadableLogRecord]) -> list[Request]:
        items: list[_Item] = []
        for pos, readable in enumerate(batch):
            try:
                item = self._item(readable)
            except Exception as exc:  # one bad record must not hold back the others
                self._rejected((pos,), f"audit record {readable.log_record.event_name!r} cannot be encoded: {exc}")
                continue
            item.pos = pos
            items.append(item)
        out: list[Request] = []
        chunk: list[_Item] = []
        size = 0
        for item in items:
            if chunk and size + len(item.line) > self.max_bulk_bytes:
                out.append(self._request(chunk))
                chunk, size = [], 0
            chunk.append(item)
            size += len(item.line)
        if chunk:
            out.append(self._request(chunk))
        return out

    def gzip(self, body: bytes, headers: dict[str, str]) -> bytes:
        # Level 1 (BestSpeed), as the contrib exporter sends: NDJSON of similar documents still
        # shrinks about tenfold, at a third of level 6's cost.
        if not self.compression:
            return body
        headers["Content-Encoding"] = "gzip"
        return _gzip.compress(body, compresslevel=1)

    def _request(self, items: list[_Item]) -> Request:
        endpoint = self._endpoints[next(self._cursor) % len(self._endpoints)]
        headers = {"Accept": "application/json", **self.extra_headers, "Content-Type": NDJSON}
        body = self.gzip(b"".join(i.line for i in items), headers)
        return Request("POST", f"{endpoint}/_bulk{self._query}", body, headers, tuple(i.pos for i in items),
                       context=items)

    def _split(self, request: Request) -> list[Request]:
        items: list[_Item] = request.context
        half = len(items) // 2
        if not half:
            return []
        self.splits += 1
        return [self._request(items[:half]), self._request(items[half:])]

    # judging answers

    def _judge(self, request: Request, response: requests.Response) -> Verdict:
        status = response.status_code
        items: list[_Item] = request.context
        if status == 200:
            return self._judge_items(request, items, response)
        reason = f"_bulk answered HTTP {status}: {_error_text(response)}"
        if status in self.retry_on_status:
            wait = retry_after_seconds(response.headers.get("Retry-After"))
            return Verdict(retry=self._request(items), retry_after=wait, reason=reason)
        if status in (400, 413):
            if status == 413:
                raw = sum(len(i.line) for i in items)
                if len(items) > 1:
                    reason += f"; a body of {raw} bytes (before gzip) is over the cluster's http.max_content_length"
                    if not self._warned_413:
                        self._warned_413 = True
                        _log.warning("%s: the cluster refused a _bulk body of %d bytes as too large (413); "
                                     "bodies are split until they fit: set max_bulk_bytes (now %d) below the "
                                     "cluster's http.max_content_length", self.name, raw, self.max_bulk_bytes)
                else:
                    reason += (f"; document [{items[0].index}][{items[0].id or 'auto id'}] alone is {raw} bytes, "
                               "over the cluster's http.max_content_length: raise that setting or make the "
                               "record smaller")
            return self._blame(request, reason)
        if status in (401, 403):
            reason += ("; check api_key or user/password" if status == 401
                       else "; the credentials lack the privilege to create documents in the target")
        # the records are fine, the credentials or the endpoint are not: retried per
        # retry_on_failure, then given up as "failed" (a durable spool keeps them), never dropped
        return Verdict(retry=self._request(items), reason=reason)

    def _judge_items(self, request: Request, items: list[_Item], response: requests.Response) -> Verdict:
        try:
            doc = orjson.loads(response.content)
            results = doc["items"]
            if not isinstance(results, list):
                raise TypeError("items is not a list")
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            # Nothing says which documents were stored: send them all again (duplicates are 409s).
            return Verdict(retry=self._request(items), reason=f"_bulk answered 200 with an unreadable body ({exc})")
        if len(results) != len(items):
            return Verdict(retry=self._request(items),
                           reason=f"_bulk answered {len(results)} item result(s) for {len(items)} action(s)")
        if not doc.get("errors"):
            stored = sum(1 for r in results if 200 <= _item_status(r) < 300)
            if stored == len(items):
                return Verdict(delivered=request.indices)
        delivered: list[int] = []
        rejected: list[int] = []
        conflicts = 0
        retry: list[_Item] = []
        retry_reasons: list[str] = []
        reasons: list[str] = []
        for item, result in zip(items, results, strict=True):
            st = _item_status(result)
            if 200 <= st < 300:
                delivered.append(item.pos)
            elif st == 409:
                delivered.append(item.pos)
                conflicts += 1
            elif st in self.retry_on_status or st in _ITEM_RETRIED:
                retry.append(item)
                if len(retry_reasons) < 3:
                    retry_reasons.append(_item_reason(item, result, st))
            else:
                rejected.append(item.pos)
                if len(reasons) < 5:
                    reasons.append(_item_reason(item, result, st))
        self.duplicates += conflicts
        parts: list[str] = []
        if rejected:
            more = f"; and {len(rejected) - len(reasons)} more" if len(rejected) > len(reasons) else ""
            parts.append(f"{len(rejected)} document(s) refused: " + "; ".join(reasons) + more)
        if retry:
            more = f"; and {len(retry) - len(retry_reasons)} more" if len(retry) > len(retry_reasons) else ""
            parts.append(f"{len(retry)} document(s) to retry: " + "; ".join(retry_reasons) + more)
        return Verdict(
            delivered=delivered,
            retry=self._request(retry) if retry else None,
            rejected=rejected,
            reason=" | ".join(parts),
        )


#: Item statuses that are not the document's fault, sent again besides retry_on_status: 0 (an item
#: result without a status, fate unknown), 401 / 403 (no privilege on that index), 404 (no such index).
_ITEM_RETRIED = frozenset({0, 401, 403, 404})


def _item_status(result: Any) -> int:
    try:
        body = next(iter(result.values()))
        st = body.get("status")
        return st if isinstance(st, int) else 0
    except (AttributeError, StopIteration, TypeError):
        return 0


def _item_reason(item: _Item, result: Any, status: int) -> str:
    try:
        error = next(iter(result.values())).get("error") or {}
    except (AttributeError, StopIteration, TypeError):
        error = {}
    if isinstance(error, Mapping):
        text = f"{error.get('type', 'error')}: {error.get('reason', '')}"
        cause = error.get("caused_by")
        if isinstance(cause, Mapping) and cause.get("reason"):
            text += f" (caused by {cause.get('type', '')}: {cause.get('reason')})"
    else:
        text = str(error)
    return f"[{item.index}][{item.id or 'auto id'}] {status} {_clip(text)}"


def _error_text(response: requests.Response) -> str:
    try:
        doc = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        text = response.text.strip()
        return _clip(text) if text else (response.reason or "no body")
    error = doc.get("error") if isinstance(doc, Mapping) else None
    if isinstance(error, Mapping):
        return _clip(f"{error.get('type', 'error')}: {error.get('reason', '')}")
    if isinstance(error, str):
        return _clip(error)
    return _clip(orjson.dumps(doc).decode())


def _clip(text: str, limit: int = 400) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


# -- config helpers ---------------------------------------------------------------------------------


def _enabled_block(value: Any, where: str, extra: Sequence[str] = ()) -> bool:
    if value is None:
        return False
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a mapping such as {{enabled: true}}")
    for key, item in value.items():
        if key == "enabled":
            if not isinstance(item, bool):
                raise ConfigError(f"{where}.enabled: expected true or false")
        elif key not in extra:
            raise ConfigError(f"{where}.{key}: unknown key; valid keys are {', '.join(('enabled', *extra))}")
    return bool(value.get("enabled", False))


def _mapping(value: Any, where: str) -> None:
    if value is None:
        return
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a mapping (mode, allowed_modes)")
    for key, item in value.items():
        if key == "mode":
            if item not in _MAPPING_MODES:
                raise ConfigError(f"{where}.mode: {item!r} is not a mapping mode; "
                                  f"use one of {', '.join(_MAPPING_MODES)}")
            _log.warning("%s.mode is ignored: documents always carry ECS fields next to the OTel attributes "
                         "(attributes.*) and the signed record (audit.otlp); remove it", where)
        elif key == "allowed_modes":
            if not isinstance(item, list) or not all(m in _MAPPING_MODES for m in item):
                raise ConfigError(f"{where}.allowed_modes: expected a list of {', '.join(_MAPPING_MODES)}")
        elif key in ("dedot", "dedup"):  # deprecated upstream; no effect on our documents
            if not isinstance(item, bool):
                raise ConfigError(f"{where}.{key}: expected true or false")
        else:
            raise ConfigError(f"{where}.{key}: unknown key; valid keys are mode, allowed_modes, dedot, dedup")


def _check_ignored_numbers(cfg: Mapping[str, Any], where: str) -> None:
    """The collector-only numbers that are accepted and unused here are still checked as the collector
    checks them, so that a block that moves here and back stays valid: num_workers, flush.bytes and
    flush.interval."""
    if cfg.get("num_workers") is not None:
        whole_number(cfg["num_workers"], f"{where}.num_workers", 1, 10_000)
    flush = cfg.get("flush")
    if flush is None:
        return
    if not isinstance(flush, Mapping):
        raise ConfigError(f"{where}.flush: expected a mapping (bytes, interval)")
    for key, item in flush.items():
        if key == "bytes":
            whole_number(item, f"{where}.flush.bytes", 0, 1 << 30)
        elif key == "interval":
            if duration(item, f"{where}.flush.interval") > 365 * 86400:
                raise ConfigError(f"{where}.flush.interval: more than a year; e.g. 30s")
        else:
            raise ConfigError(f"{where}.flush.{key}: unknown key; valid keys are bytes, interval")


def _retry_block(value: Any, where: str) -> tuple[RetrySettings, frozenset[int] | None]:
    """The contrib exporter's `retry` block, as RetrySettings and retry_on_status."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a mapping (enabled, initial_interval, max_interval, retry_on_status)")
    kw: dict[str, Any] = {}
    statuses: frozenset[int] | None = None
    for key, item in value.items():
        w = f"{where}.{key}"
        if key == "enabled":
            if not isinstance(item, bool):
                raise ConfigError(f"{w}: expected true or false")
            kw["enabled"] = item
        elif key in ("initial_interval", "max_interval", "max_elapsed_time"):
            kw[key] = duration(item, w)
        elif key in ("max_retries", "max_requests"):
            whole_number(item, w, 0, MAX_COUNT)
            # An audit record is not given up on after N tries: the time limit decides.
            _log.warning("%s is not applied: audit records are retried until max_elapsed_time (%.0fs) has passed",
                         w, kw.get("max_elapsed_time", RetrySettings().max_elapsed_time))
        elif key == "retry_on_status":
            if not isinstance(item, list) or not all(
                    isinstance(s, int) and not isinstance(s, bool) and 100 <= s <= 599 for s in item):
                raise ConfigError(f"{w}: expected a list of HTTP status codes such as [429, 503]")
            statuses = frozenset(item)
        else:
            raise ConfigError(f"{w}: unknown key; valid keys are enabled, initial_interval, max_interval, "
                              "max_elapsed_time, max_retries, retry_on_status")
    return RetrySettings(**kw), statuses
