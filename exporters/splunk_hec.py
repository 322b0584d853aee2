"""Export audit records to Splunk's HTTP Event Collector (``POST /services/collector/event``).

Each record becomes one HEC event envelope::

    {"time": 1700000000.123, "host": "gw-1", "source": "otel-audit", "sourcetype": "_json",
     "index": "audit",
     "event": {"event_name": "...", "otel.log.severity.text": "INFO", "otel.log.severity.number": 9,
               "body": ..., "user.id": "u-1", "audit.outcome": "success", ...,
               "audit.otlp": "{\\"timeUnixNano\\":\\"...\\", ...}"},
     "fields": {"event_name": "...", "audit.stream.id": "...", "audit.stream.seq": "12",
                "audit.outcome": "success", "user.id": "u-1"}}

``event`` holds what an analyst searches: the event name, the severity, the body, the record's
(and its resource's) attributes flattened to dotted keys, and ``audit.otlp``, the record's own
OTLP/JSON logRecord, from which ``otel-audit verify`` proves the record whatever happened to the
searchable copies (see ``otel_audit.sources.splunk``). ``fields`` are index-time fields: flat,
string values only, as HEC requires (anything else is refused with code 15).

Envelopes are concatenated (HEC's batch format, not a JSON array) into requests of at most
``max_content_length_logs`` bytes before compression, so a request is never over the limit
whatever gzip makes of it; an event larger than the limit, or than ``max_event_size``, is refused
here for good, logged and counted.

Answers are sorted by Splunk's status codes ("Troubleshoot HTTP Event Collector", possible error
codes) under the refusal policy of ``otel_audit.exporters._http`` (``last_rejected``): 2xx
delivered; 429 and 503 (code 9 server busy, 18-20, 23) and the other 5xx retried per
``retry_on_failure``, honouring ``Retry-After``. A judgement of the events (codes 5, 6, 12, 13,
15: no data, invalid format, event field missing or blank, bad indexed fields): a 400 naming an
``invalid-event-number`` rejects that event for good and sends the rest again; without it, a
request of several events is split in halves until the refusal lands on single events; 413
splits the same way, and a single event over Splunk's limit is rejected. Each rejection is
logged with Splunk's ``text`` and counted. The token and the configuration are never the events'
fault: 401, 403 and codes 1-4, 21, 22 (token missing, invalid, disabled), 7 (an index the token
may not write), 10, 11, 14, 16 (channel, acknowledgement, query-string auth) are retried per
``retry_on_failure``, then the export returns FAILURE and a durable spool keeps the records: a
revoked token never discards an audit record.

After ``os.fork()`` the child uses a fresh session and a channel of its own (acks are per channel).

Indexer acknowledgement (``use_ack: true``; Splunk's token setting is ``useACK``): every request
carries the ``X-Splunk-Request-Channel`` header (always, because an ack-enabled token refuses
requests without one), the ``ackId`` of each answer is polled at
``/services/collector/ack`` with ``{"acks": [...]}``, and ``export()`` returns only once every
request is acknowledged. A request not acknowledged within ``ack_timeout`` is sent again (a
possible duplicate, which the verifier accepts), unless ``retry_on_failure`` is disabled or its
``max_elapsed_time`` (counted from the start of the export; 0: never) has passed: then the
records count as failed, which a durable spool keeps and exports again later. So set
``max_elapsed_time`` above ``ack_timeout`` (or to 0) for resends within one export.

Configuration is the contrib ``splunk_hec`` exporter's block, so it moves between a collector and
otel-audit unchanged::

    exporters:
      splunk_hec:
        endpoint: https://splunk.example.com:8088      # /services/collector is added to a bare host
        token: ${env:SPLUNK_HEC_TOKEN}
        index: audit
        sourcetype: _json
        use_ack: true          # ours: needs useACK on the token
        ack_timeout: 5m        # ours

With no arguments, ``SplunkHecLogExporter()`` (the ``opentelemetry_logs_exporter`` entry point)
reads ``OTEL_AUDIT_SPLUNK_HEC_`` + ``ENDPOINT`` (else ``SPLUNK_HEC_URL``), ``TOKEN`` (else
``SPLUNK_HEC_TOKEN``), ``SOURCE``, ``SOURCETYPE``, ``INDEX``, ``DISABLE_COMPRESSION``,
``MAX_CONTENT_LENGTH_LOGS``, ``MAX_EVENT_SIZE``, ``TIMEOUT``, ``HEALTH_PATH``,
``HEALTH_CHECK_ENABLED``, ``USE_ACK``, ``ACK_TIMEOUT``, ``ACK_POLL_INTERVAL``, ``TLS_CA_FILE``,
``TLS_INSECURE_SKIP_VERIFY``; a bad value logs a warning and the default is used.

The token never appears in a log line, an error, a repr or an exception.
"""

from __future__ import annotations

import importlib.metadata
import logging
import socket
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import requests
from opentelemetry.sdk._logs.export import LogRecordExportResult

from otel_audit import siem_fields
from otel_audit.errors import ConfigError
from otel_audit.exporters import _settings
from otel_audit.exporters._http import (
    HttpLogExporter,
    Request,
    RetrySettings,
    TlsSettings,
    Verdict,
    retry_after_seconds,
    transport_settings,
)
from otel_audit.otlpjson import encode_log_record
from otel_audit.safe import redact_url

__all__ = [
    "DEFAULT_HEALTH_PATH",
    "DEFAULT_MAX_CONTENT_LENGTH_LOGS",
    "DEFAULT_MAX_EVENT_SIZE",
    "HEC_CODES",
    "INDEXED_FIELDS",
    "SplunkCounters",
    "SplunkHecLogExporter",
]

_log = logging.getLogger(__name__)

HEC_PATH = "/services/collector"
EVENT_PATH = HEC_PATH + "/event"
ACK_PATH = HEC_PATH + "/ack"
DEFAULT_HEALTH_PATH = HEC_PATH + "/health"
DEFAULT_MAX_CONTENT_LENGTH_LOGS = 2 * 1024 * 1024  # the contrib default (Splunk Observability's limit)
DEFAULT_MAX_EVENT_SIZE = 5 * 1024 * 1024
MAX_LIMIT = 800 * 1024 * 1024  # the largest value the contrib exporter accepts for both
DEFAULT_TIMEOUT = 10.0
DEFAULT_APP_NAME = "otel-audit"
try:
    DEFAULT_APP_VERSION = importlib.metadata.version("otel-audit")
except importlib.metadata.PackageNotFoundError:  # running from a source tree
    DEFAULT_APP_VERSION = "0.0.0"
#: Splunk's client guidance: resend what is not acknowledged within about five minutes,
#: polling about every ten seconds (we start polling sooner and slow down to that).
DEFAULT_ACK_TIMEOUT = 300.0
DEFAULT_ACK_POLL_INTERVAL = 10.0
_FIRST_POLL = 0.05
_ACKS_PER_QUERY = 1000

#: HEC status codes and their texts, from Splunk's table of possible error codes.
HEC_CODES: Mapping[int, str] = {
    0: "Success", 1: "Token disabled", 2: "Token is required", 3: "Invalid authorization",
    4: "Invalid token", 5: "No data", 6: "Invalid data format", 7: "Incorrect index",
    8: "Internal server error", 9: "Server is busy", 10: "Data channel is missing",
    11: "Invalid data channel", 12: "Event field is required", 13: "Event field cannot be blank",
    14: "ACK is disabled", 15: "Error in handling indexed fields",
    16: "Query string authorization is not enabled", 17: "HEC is healthy",
    18: "HEC is unhealthy, queues are full", 19: "HEC is unhealthy, ack service unavailable",
    20: "HEC is unhealthy, queues are full, ack service unavailable", 21: "Invalid token",
    22: "Token disabled", 23: "Server is shutting down",
    24: "HEC queue is approaching its capacity limit", 25: "HEC ACK is approaching its capacity limit",
    26: "HEC queue is at capacity", 27: "HEC ACK channel is at capacity",
}
#: Codes that say the token is wrong, missing or disabled (401 and 403).
TOKEN_CODES = frozenset({1, 2, 3, 4})
#: Codes that say the ack channel was lost: what was sent on it must be sent again.
CHANNEL_CODES = frozenset({10, 11})
#: Codes that judge the events themselves: the only ones that reject a record for good.
CONTENT_CODES = frozenset({5, 6, 12, 13, 15})

#: Record attributes copied to the index-time ``fields`` (as strings), next to ``event_name``.
INDEXED_FIELDS = ("audit.stream.id", "audit.stream.seq", "audit.category", "audit.action",
                  "audit.outcome", "user.id")
#: The contrib defaults of ``otel_attrs_to_hec_metadata``: attribute -> envelope key.
DEFAULT_HEC_METADATA: Mapping[str, str] = {
    "source": "com.splunk.source", "sourcetype": "com.splunk.sourcetype",
    "index": "com.splunk.index", "host": "host.name",
}
DEFAULT_HEC_FIELDS: Mapping[str, str] = {
    "severity_text": "otel.log.severity.text", "severity_number": "otel.log.severity.number",
}
#: A per-resource token in the contrib exporter: a secret, never copied into an event.
ACCESS_TOKEN_ATTR = "com.splunk.hec.access_token"
OTLP_FIELD = "audit.otlp"
EVENT_NAME_FIELD = "event_name"


ENV_PREFIX = "OTEL_AUDIT_SPLUNK_HEC_"

# Keys of the contrib block that change nothing here: connection pooling, other signals, the
# collector's own telemetry. Accepted so a block moves unchanged, and ignored.
_IGNORED_KEYS = frozenset({
    "max_idle_conns", "max_idle_conns_per_host", "max_conns_per_host", "idle_conn_timeout",
    "max_connections", "disable_keep_alives", "http2_read_idle_timeout", "http2_ping_timeout",
    "read_buffer_size", "write_buffer_size", "compression", "profiling_data_enabled",
    "max_content_length_metrics", "max_content_length_traces", "use_multi_metric_format",
    "telemetry", "heartbeat",
})
# -- values as HEC carries them ----------------------------------------------------------------------


def _field_text(value: Any) -> str | None:
    """An index-time field value: a string, or None for what has no flat string form."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return None


# -- settings ----------------------------------------------------------------------------------------


def hec_urls(endpoint: str) -> tuple[str, str, str]:
    """(event URL, ack URL, base URL) of an ``endpoint``.

    A bare host gets ``/services/collector`` (as the contrib exporter does); a path ending in
    ``/services/collector`` gets ``/event``; a path ending in ``/event`` or ``/event/1.0`` is used
    as it is; any other path (a proxy's) is used as it is, with ``/ack`` next to it.
    """
    if not isinstance(endpoint, str) or not endpoint.strip():
        raise ConfigError("endpoint must be a URL such as https://splunk.example.com:8088")
    try:
        parts = _settings.url_parts(endpoint, example="https://splunk.example.com:8088")  # scheme, host, port
    except ConfigError as exc:
        raise ConfigError(f"endpoint {exc}") from None
    if parts.username or parts.password:
        raise ConfigError("endpoint must not carry credentials; give the HEC token as token")
    if parts.query or parts.fragment:
        raise ConfigError(f"endpoint {redact_url(endpoint)!r} must not have a query or fragment; "
                         "give the token as token")
    path = parts.path.rstrip("/")
    if path == "":
        path = HEC_PATH
    if path.endswith((HEC_PATH + "/raw", HEC_PATH + "/raw/1.0")):
        raise ConfigError(f"endpoint {redact_url(endpoint)!r} is HEC's raw endpoint, which drops the envelope "
                         "and audit.otlp; "
                         "give the host (or .../services/collector) instead")
    if path.endswith(HEC_PATH):
        base, event = path, path + "/event"
    elif path.endswith(EVENT_PATH) or path.endswith(EVENT_PATH + "/1.0"):
        base, event = path[: path.rindex(EVENT_PATH) + len(HEC_PATH)], path
    else:
        base, event = path, path
    ack = base + "/ack"

    def url(p: str) -> str:
        return urlunsplit((parts.scheme, parts.netloc, p, "", ""))

    return url(event), url(ack), url(base)


def _check_token(token: Any) -> str:
    if not isinstance(token, str):
        raise ConfigError(f"the HEC token must be a string, not {type(token).__name__}")
    t = token.strip()
    if t.lower().startswith("splunk "):
        t = t[7:].strip()
    if not t:
        raise ConfigError("the HEC token is empty; set token (or $OTEL_AUDIT_SPLUNK_HEC_TOKEN / $SPLUNK_HEC_TOKEN)")
    if any(c.isspace() or ord(c) < 32 for c in t):
        # never echo the token itself
        raise ConfigError("the HEC token contains spaces or control characters; copy it again from "
                         "Settings > Data inputs > HTTP Event Collector")
    return t


def _check_endpoint(endpoint: Any) -> str:
    hec_urls(endpoint)
    return str(endpoint).strip()


def _check_health_path(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("/"):
        raise ConfigError(f"must be a path starting with '/', got {value!r}")
    return value


def _check_index(value: Any) -> str:
    # Splunk's index names are letters, digits, '_' and '-': one with a space is refused by every
    # request (code 7, retried until shutdown), so it is refused here at start
    if not isinstance(value, str) or any(c.isspace() or not c.isprintable() for c in value):
        raise ConfigError(f"must be a Splunk index name without spaces, got {value!r}")
    return value


def _hec_mapping(defaults: Mapping[str, str]) -> Any:
    def check(value: Any) -> dict[str, str]:
        out = dict(defaults)
        if not isinstance(value, Mapping):
            raise ConfigError(f"must be a mapping with keys {', '.join(defaults)}")
        for k, v in value.items():
            if k not in defaults:
                raise ConfigError(f".{k}: unknown key; valid keys: {', '.join(defaults)}")
            if not isinstance(v, str) or not v:
                raise ConfigError(f".{k}: expected an attribute name")
            out[k] = v
        return out
    return check


def _must_be(expected: bool, why: str) -> Any:
    def check(value: Any) -> bool:
        if value is not expected:
            raise ConfigError(why)
        return value
    return check


_E = ENV_PREFIX
_S = _settings.Setting
SETTINGS = _settings.Model("splunk_hec", [
    _S("endpoint", _settings.Check(_check_endpoint, "URL"), None, (_E + "ENDPOINT", "SPLUNK_HEC_URL"),
       "the HEC URL; /services/collector/event is added to a bare host",
       required="required; set it to the HEC URL, e.g. https://splunk:8088"),
    _S("token", _settings.Check(_check_token, "string"), None, (_E + "TOKEN", "SPLUNK_HEC_TOKEN"),
       "the HEC token (a GUID; a leading 'Splunk ' is dropped)", secret=True,
       required="required; set it to the HEC token"),
    _S("source", _settings.Text(), "", (_E + "SOURCE",), "the envelope's source (unset: the token's default)"),
    _S("sourcetype", _settings.Text(), "", (_E + "SOURCETYPE",), "the envelope's sourcetype"),
    _S("index", _settings.Check(_check_index, "string"), "", (_E + "INDEX",),
       "the envelope's index (unset: the token's default)"),
    _S("disable_compression", _settings.Bool(), False, (_E + "DISABLE_COMPRESSION",), "send bodies without gzip"),
    _S("max_content_length_logs", _settings.Size(0, MAX_LIMIT), DEFAULT_MAX_CONTENT_LENGTH_LOGS,
       (_E + "MAX_CONTENT_LENGTH_LOGS",), "the largest request body before compression (0: no limit)"),
    _S("max_event_size", _settings.Size(1, MAX_LIMIT), DEFAULT_MAX_EVENT_SIZE, (_E + "MAX_EVENT_SIZE",),
       "the largest single event; larger ones are refused (counted, logged)"),
    _S("health_path", _settings.Check(_check_health_path, "string"), DEFAULT_HEALTH_PATH, (_E + "HEALTH_PATH",),
       "the path health_check asks"),
    _S("health_check_enabled", _settings.Bool(), False, (_E + "HEALTH_CHECK_ENABLED",),
       "ask health_path before the first export and log an unhealthy answer"),
    _S("splunk_app_name", _settings.Text(nonempty=True), DEFAULT_APP_NAME, (),
       "the __splunk_app_name header and the User-Agent"),
    _S("splunk_app_version", _settings.Text(nonempty=True), DEFAULT_APP_VERSION, (),
       "the __splunk_app_version header", default_doc="this package's version"),
    _S("use_ack", _settings.Bool(), False, (_E + "USE_ACK",), "indexer acknowledgement (the token needs useACK)"),
    _S("ack_timeout", _settings.Duration(), DEFAULT_ACK_TIMEOUT, (_E + "ACK_TIMEOUT",),
       "send a request again when it is not acknowledged within this"),
    _S("ack_poll_interval", _settings.Duration(), DEFAULT_ACK_POLL_INTERVAL, (_E + "ACK_POLL_INTERVAL",),
       "the longest wait between two acknowledgement queries"),
    _S("otel_attrs_to_hec_metadata", _settings.Check(_hec_mapping(DEFAULT_HEC_METADATA), "mapping"),
       dict(DEFAULT_HEC_METADATA), (), "record attributes that give the envelope's source, sourcetype, index, host",
       aliases=("hec_metadata_to_otel_attrs",)),
    _S("otel_to_hec_fields", _settings.Check(_hec_mapping(DEFAULT_HEC_FIELDS), "mapping"), dict(DEFAULT_HEC_FIELDS),
       (), "the event keys of severity_text and severity_number"),
    _S("log_data_enabled", _settings.Check(_must_be(True, "false would make this exporter send nothing; "
                                                     "remove the exporter from the pipeline instead"), "bool"),
       True, (), "must stay true", unused=True),
    _S("export_raw", _settings.Check(_must_be(False, "not supported: the raw endpoint sends the body alone, "
                                             "without audit.otlp, so Splunk's copy could not be verified; "
                                             "remove it"), "bool"),
       False, (), "must stay false", unused=True),
    _S("proxy_url", _settings.ProxyUrl(), None, (), "an HTTP(S) proxy, or SOCKS5 with PySocks, for every request "
       "(wins over HTTP(S)_PROXY; the collector's confighttp proxy_url)"),
    *transport_settings(_E, timeout=DEFAULT_TIMEOUT, tls_env=True),
], ignored=_IGNORED_KEYS | {"sending_queue", "batch"}, title="splunk_hec (SplunkHecLogExporter)",
   list_keys=None)


# -- bookkeeping -------------------------------------------------------------------------------------


@dataclass
class SplunkCounters:
    """What only this exporter counts (the shared counts are in `exporter.counters`)."""

    acked: int = 0  # records Splunk confirmed as indexed (use_ack)
    resent: int = 0  # records sent again because their ackId was not acknowledged in time
    splits: int = 0  # requests split in two after a 413
    too_large: int = 0  # events refused here: over max_event_size or max_content_length_logs
    unacknowledged: int = 0  # records taken with no ackId although use_ack is on (token without useACK)


@dataclass
class _Sent:
    events: list[bytes]
    indices: tuple[int, ...]
    at: float


@dataclass
class _Group:
    """One export() call: (use_ack) what awaits its acknowledgement."""

    sent: list[tuple[int, _Sent]] = field(default_factory=list)


@dataclass
class _Part:
    """What one Request carries: its encoded envelopes, so a 413 or a bad event can split it."""

    events: list[bytes]
    group: _Group


def _hec_answer(resp: requests.Response) -> tuple[int | None, str, Any]:
    """(code, text, the parsed body) of a HEC answer; code None when the body is not HEC's JSON."""
    try:
        doc = resp.json()
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        code = doc.get("code")
        code = code if isinstance(code, int) and not isinstance(code, bool) else None
        text = doc.get("text")
        text = text if isinstance(text, str) else (HEC_CODES.get(code, "") if code is not None else "")
        return code, text, doc
    text = (resp.text or "").strip().replace("\n", " ")
    return None, text[:200], doc


def _describe(resp: requests.Response, code: int | None, text: str) -> str:
    what = f"HTTP {resp.status_code}"
    if code is not None:
        what += f" code {code}"
    return f"{what}: {text}" if text else what


class SplunkHecLogExporter(HttpLogExporter):
    """Sends audit records to Splunk HEC, each with its verifiable OTLP/JSON copy in ``audit.otlp``.

    Every argument falls back to its environment variable (``OTEL_AUDIT_SPLUNK_HEC_<NAME>``, then
    the Splunk distribution's ``SPLUNK_HEC_URL`` and ``SPLUNK_HEC_TOKEN``), then to the default,
    so ``SplunkHecLogExporter()`` works from the environment alone.

    Args:
        endpoint: the HEC URL (``https://host:8088``; ``/services/collector/event`` is added as
            `hec_urls` says). Required.
        token: the HEC token (a GUID). Required; never logged.
        source, sourcetype, index: the envelope's metadata; a record's (or its resource's)
            ``com.splunk.source`` / ``com.splunk.sourcetype`` / ``com.splunk.index`` attribute wins,
            as in the contrib exporter. Unset: Splunk uses the token's defaults.
        disable_compression: send the body as it is instead of gzip.
        max_content_length_logs: the largest request body before compression (0: no limit).
        max_event_size: the largest single event; larger ones are refused (counted, logged).
        health_path, health_check_enabled: `health_check` asks this path; when enabled, it is
            asked before the first export and an unhealthy answer is logged.
        splunk_app_name, splunk_app_version: the ``__splunk_app_*`` headers and the User-Agent.
        use_ack: use indexer acknowledgement (the token needs ``useACK``).
        ack_timeout: how long to wait for an acknowledgement before sending a request again.
        ack_poll_interval: the longest wait between two acknowledgement queries.
        otel_attrs_to_hec_metadata, otel_to_hec_fields: as the contrib exporter's keys.
        timeout, tls, retry, headers, session, proxy_from_env: transport, as in `HttpLogExporter`.
        Every value may also be given as the collector writes it (timeout="10s", max_event_size="5MiB",
        tls={"ca_file": ...}), and `**collector` takes the block's other keys (retry_on_failure,
        hec_metadata_to_otel_attrs, the ignored ones): see `SETTINGS` and docs/settings.md.
    """

    name = "splunk_hec"

    def __init__(
        self,
        endpoint: str | None = None,
        token: str | None = None,
        *,
        source: str | None = None,
        sourcetype: str | None = None,
        index: str | None = None,
        disable_compression: bool | str | None = None,
        max_content_length_logs: int | str | None = None,
        max_event_size: int | str | None = None,
        health_path: str | None = None,
        health_check_enabled: bool | str | None = None,
        splunk_app_name: str | None = None,
        splunk_app_version: str | None = None,
        use_ack: bool | str | None = None,
        ack_timeout: float | str | None = None,
        ack_poll_interval: float | str | None = None,
        otel_attrs_to_hec_metadata: Mapping[str, str] | None = None,
        otel_to_hec_fields: Mapping[str, str] | None = None,
        timeout: float | str | None = None,
        tls: TlsSettings | Mapping[str, Any] | None = None,
        retry: RetrySettings | Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        session: requests.Session | None = None,
        proxy_from_env: bool | str = True,
        proxy_url: str | None = None,
        **collector: Any,
    ) -> None:
        v = SETTINGS.resolve(SETTINGS.given(locals(), collector))
        if v["endpoint"] is None:
            raise SETTINGS.missing("endpoint", "Splunk HEC endpoint")
        self.url, self.ack_url, self.base_url = hec_urls(v["endpoint"])
        if urlsplit(self.url).scheme == "http" and urlsplit(self.url).hostname not in ("127.0.0.1", "localhost", "::1"):
            _log.warning("Splunk HEC endpoint %s is plain http: the token travels unencrypted", redact_url(self.url))
        if v["token"] is None:
            raise SETTINGS.missing("token", "Splunk HEC token")
        self._token = v["token"]
        self.source, self.sourcetype, self.index = v["source"], v["sourcetype"], v["index"]
        self.max_content_length = v["max_content_length_logs"]
        self.max_event_size = v["max_event_size"]
        parts = urlsplit(self.url)
        self.health_url = urlunsplit((parts.scheme, parts.netloc, v["health_path"], "", ""))
        self.health_check_enabled = v["health_check_enabled"]
        self._health_checked = False
        self.app_name = v["splunk_app_name"]
        self.app_version = v["splunk_app_version"]
        self.use_ack = v["use_ack"]
        self.ack_timeout = float(v["ack_timeout"])
        self.ack_poll_interval = float(v["ack_poll_interval"])
        self.hec_metadata = v["otel_attrs_to_hec_metadata"]
        self.hec_fields = v["otel_to_hec_fields"]
        # the attributes that became the envelope's source, sourcetype and index stay out of the event
        self._skip = frozenset({*(self.hec_metadata[k] for k in ("source", "sourcetype", "index")),
                                ACCESS_TOKEN_ATTR})
        self._reserved = frozenset({EVENT_NAME_FIELD, "body", "trace_id", "span_id", OTLP_FIELD,
                                    *self.hec_fields.values()})
        tls = v["tls"]
        if tls is None and (v["tls_ca_file"] or v["tls_insecure_skip_verify"]):
            tls = TlsSettings(ca_file=v["tls_ca_file"], insecure_skip_verify=v["tls_insecure_skip_verify"])
        super().__init__(timeout=v["timeout"], tls=tls, retry=v["retry"], compression=not v["disable_compression"],
                         headers=v["headers"], session=session, proxy_from_env=v["proxy_from_env"])
        if v["proxy_url"]:
            self.session.proxies = {"http": v["proxy_url"], "https": v["proxy_url"]}
        self.splunk_counters = SplunkCounters()
        self.channel = str(uuid.uuid4())
        self.hostname = socket.gethostname() or "unknown"
        self._export_lock = threading.Lock()
        self._warned_no_ack = False
        self._headers = {
            **self.extra_headers,
            "Content-Type": "application/json",
            "User-Agent": f"{self.app_name}/{self.app_version}",
            "__splunk_app_name": self.app_name,
            "__splunk_app_version": self.app_version,
            # always: a token with useACK refuses requests without a channel (code 10)
            "X-Splunk-Request-Channel": self.channel,
            "Authorization": f"Splunk {self._token}",
        }

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(endpoint={redact_url(self.url)!r}, index={self.index!r}, "
                f"use_ack={self.use_ack}, token=<redacted>)")

    # -- configuration ---------------------------------------------------------------------------

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], *, where: str) -> SplunkHecLogExporter:
        """The exporter of a collector-shaped ``splunk_hec`` block; `ConfigError` names the key."""
        if not isinstance(cfg, Mapping):
            raise ConfigError(f"{where}: expected a mapping of settings (endpoint, token, index, ...)")
        kw = SETTINGS.read_block(cfg, where)
        kw.setdefault("tls", TlsSettings())  # a block without tls does not read the TLS variables
        try:
            return cls(**kw)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    # -- encoding --------------------------------------------------------------------------------

    def _metadata(self, name: str, attrs: Mapping[str, Any], res: Mapping[str, Any], default: str) -> str:
        key = self.hec_metadata[name]
        value = attrs.get(key)
        if value is None:
            value = res.get(key)
        return value if isinstance(value, str) and value else default

    def encode(self, readable: Any) -> bytes:
        """The HEC envelope of one SDK log record, as JSON bytes."""
        rec = readable.log_record
        otlp_rec = encode_log_record(readable)
        otlp = orjson.dumps(otlp_rec).decode()
        attrs: Mapping[str, Any] = rec.attributes or {}
        resource = getattr(readable, "resource", None)
        res: Mapping[str, Any] = resource.attributes if resource is not None else {}

        # the searchable fields, from the record's own OTLP/JSON: the verifier derives them the same way
        head, record_flat, _ = siem_fields.splunk_record_fields(
            otlp_rec, severity_text=self.hec_fields["severity_text"],
            severity_number=self.hec_fields["severity_number"], skip=self._skip)
        event = siem_fields.splunk_merge(head, siem_fields.splunk_flatten(res, self._skip), record_flat,
                                         self._reserved)
        event[OTLP_FIELD] = otlp

        fields: dict[str, str] = {}
        if rec.event_name:
            fields[EVENT_NAME_FIELD] = rec.event_name
        for k in INDEXED_FIELDS:
            text = _field_text(attrs.get(k))
            if text is not None:
                fields[k] = text

        envelope: dict[str, Any] = {}
        ts = rec.timestamp or rec.observed_timestamp
        if ts:
            envelope["time"] = ts // 1_000_000 / 1000  # seconds with milliseconds, as HEC wants
        envelope["host"] = self._metadata("host", attrs, res, self.hostname)
        for name, default in (("source", self.source), ("sourcetype", self.sourcetype), ("index", self.index)):
            value = self._metadata(name, attrs, res, default)
            if value:
                envelope[name] = value
        envelope["event"] = event
        envelope["fields"] = fields
        return orjson.dumps(envelope)

    def _build(self, batch: Sequence[Any]) -> tuple[_Group, list[Request]]:
        group = _Group()
        limit = self.max_content_length
        parts: list[list[tuple[bytes, int]]] = []
        current: list[tuple[bytes, int]] = []
        size = 0
        for i, readable in enumerate(batch):
            try:
                ev = self.encode(readable)
            except Exception as exc:  # one record we cannot encode: refused alone, loudly
                self._rejected((i,), f"cannot encode an audit record as a HEC event: {exc}")
                continue
            n = len(ev) + 1  # the newline between envelopes
            if len(ev) > self.max_event_size or (limit and n > limit):
                which = "max_event_size" if len(ev) > self.max_event_size else "max_content_length_logs"
                cap = self.max_event_size if which == "max_event_size" else limit
                self.splunk_counters.too_large += 1
                self._rejected((i,), f"event of {len(ev)} bytes is over {which} ({cap} bytes); {_identify(readable)}")
                continue
            if current and limit and size + n > limit:
                parts.append(current)
                current, size = [], 0
            current.append((ev, i))
            size += n
        if current:
            parts.append(current)
        return group, [self._request([e for e, _ in p], tuple(i for _, i in p), group) for p in parts]

    def _request(self, events: list[bytes], indices: tuple[int, ...], group: _Group) -> Request:
        headers = dict(self._headers)
        body = self.gzip(b"\n".join(events), headers)
        return Request("POST", self.url, body, headers, indices, context=_Part(events, group))

    def _requests(self, batch: Sequence[Any]) -> list[Request]:
        return self._build(batch)[1]

    def _split(self, request: Request) -> list[Request]:
        part: _Part = request.context
        half = len(part.events) // 2
        if not half:
            return []
        self.splunk_counters.splits += 1
        return [self._request(part.events[:half], request.indices[:half], part.group),
                self._request(part.events[half:], request.indices[half:], part.group)]

    def _after_fork_in_child(self) -> None:
        super()._after_fork_in_child()
        self._export_lock = threading.Lock()
        # indexer acknowledgements are per channel: the child must not poll, or be given, the parent's ackIds
        self.channel = str(uuid.uuid4())
        self._headers["X-Splunk-Request-Channel"] = self.channel

    # -- answers ---------------------------------------------------------------------------------

    def _judge(self, request: Request, response: requests.Response) -> Verdict:
        status = response.status_code
        part: _Part = request.context
        if 200 <= status < 300:
            code, text, doc = _hec_answer(response)
            if code not in (None, 0, 24, 25):  # 24, 25: taken, but Splunk's queue is filling
                _log.warning("%s: Splunk answered %s", self.name, _describe(response, code, text))
            ack = doc.get("ackId") if isinstance(doc, dict) else None
            if self.use_ack:
                if isinstance(ack, int) and not isinstance(ack, bool):
                    part.group.sent.append((ack, _Sent(part.events, request.indices, time.monotonic())))
                    return Verdict()
                self.splunk_counters.unacknowledged += request.records
                if not self._warned_no_ack:
                    self._warned_no_ack = True
                    _log.warning("%s: use_ack is on but Splunk's answer has no ackId: indexer acknowledgement "
                                 "is not enabled on this token (useACK); records count as delivered on receipt",
                                 self.name)
            return Verdict(delivered=request.indices)

        code, text, doc = _hec_answer(response)
        reason = _describe(response, code, text)
        wait = retry_after_seconds(response.headers.get("Retry-After"))
        if status == 413:
            if request.records > 1:
                _log.warning("%s: Splunk refused a request of %d bytes as too large (%s); lower "
                             "max_content_length_logs to Splunk's max_content_length", self.name,
                             len(request.body), reason)
            else:
                reason += f" (one event of {len(part.events[0])} bytes is over Splunk's max_content_length)"
            return self._blame(request, reason)
        if status == 400 and isinstance(doc, dict):
            bad = doc.get("invalid-event-number")
            if isinstance(bad, int) and not isinstance(bad, bool) and 0 <= bad < len(part.events):
                if code == 7:
                    # an index the token may not write: not the events' fault. Those for that index are
                    # retried (then FAILURE, kept by a spool); the others are sent on their own.
                    index = _index_of(part.events[bad])
                    mine = [k for k, e in enumerate(part.events) if _index_of(e) == index]
                    rest = [k for k in range(len(part.events)) if k not in set(mine)]
                    retry = self._subset(request, mine)
                    return Verdict(retry=retry, retry_after=wait, split=[self._subset(request, rest)] if rest else [],
                                   reason=f"{reason} ({len(mine)} event(s) for index "
                                          f"{SETTINGS.mask(repr(index), [self._token])}: check the "
                                          "token's allowed indexes)")
                if code in CONTENT_CODES or code is None:
                    rest = [k for k in range(len(part.events)) if k != bad]
                    return Verdict(rejected=(request.indices[bad],),
                                   split=[self._subset(request, rest)] if rest else [],
                                   reason=f"{reason} (event {bad} of the request; "
                                          f"{_identify_bytes(part.events[bad])})")
        if status == 400 and (code in CONTENT_CODES or code is None):
            return self._blame(request, reason)
        # 401, 403, the token codes (1-4, 21, 22), index / channel / ack / query-string auth (7, 10,
        # 11, 14, 16), 429, 503 (code 9 busy, 18-20, 23), the other 5xx, and whatever else: not the
        # events' fault; retried, then FAILURE (a durable spool keeps them)
        return Verdict(retry=request, retry_after=wait, reason=reason)

    def _subset(self, request: Request, which: Sequence[int]) -> Request:
        part: _Part = request.context
        return self._request([part.events[k] for k in which], tuple(request.indices[k] for k in which), part.group)

    # -- export ----------------------------------------------------------------------------------

    def export(self, batch: Sequence[Any]) -> LogRecordExportResult:
        if self._stop.is_set():
            self.last_rejected = ()
            _log.error("%s exporter is shut down; %d audit record(s) not sent", self.name, len(batch))
            self.counters.failed += len(batch)
            return LogRecordExportResult.FAILURE
        with self._export_lock:  # one ack conversation at a time on our channel
            if self.health_check_enabled and not self._health_checked:
                self._health_checked = True
                if not self.health_check():
                    _log.error("%s: Splunk HEC at %s is not healthy; sending anyway, with retries",
                               self.name, redact_url(self.health_url))
            started = time.monotonic()
            out = self._begin()
            try:
                group, reqs = self._build(batch)
            except Exception as exc:  # a bug, not a judgement of the records: kept, never a raise
                _log.error("%s exporter cannot encode a batch of %d audit record(s): %s", self.name, len(batch), exc)
                self.counters.failed += len(batch)
                return self._finish(out, max(1, len(batch)))
            for req in reqs:
                self._send(req)
            if self.use_ack:
                self._await_acks(group, started)
            return self._finish(out, len(batch))

    def _await_acks(self, group: _Group, started: float) -> bool:
        """Poll Splunk until every ackId of the group is acknowledged; resend what times out."""
        ok = True
        pending: dict[int, _Sent] = {}
        stale: list[_Sent] = []

        def collect() -> None:
            for ack, sent in group.sent:
                old = pending.pop(ack, None)
                if old is not None:  # an id given out again: Splunk forgot the old one (a restart)
                    stale.append(old)
                pending[ack] = sent
            group.sent.clear()

        collect()
        interval = min(_FIRST_POLL, self.ack_poll_interval)
        failures = 0
        while pending or stale:
            if pending:
                if self._stop.wait(interval):
                    n = sum(len(s.events) for s in [*pending.values(), *stale])
                    self.counters.failed += n
                    _log.error("%s shut down while waiting for indexer acknowledgement; %d audit record(s) "
                               "not confirmed", self.name, n)
                    return False
                interval = min(interval * 2, self.ack_poll_interval)
                acked, channel_lost, failure = self._query_acks(sorted(pending))
                if failure:
                    # once per wait at WARNING: an outage would otherwise log every poll
                    level = logging.DEBUG if failures else logging.WARNING
                    failures += 1
                    _log.log(level, "%s: acknowledgement query failed (%s); asking again", self.name, failure)
                for ack in acked:
                    sent = pending.pop(ack, None)
                    if sent is not None:
                        self._delivered(sent.indices)
                        self.splunk_counters.acked += len(sent.events)
                now = time.monotonic()
                expired = [a for a, s in pending.items() if channel_lost or now - s.at >= self.ack_timeout]
                stale.extend(pending.pop(a) for a in expired)
            if not stale:
                continue
            n = sum(len(s.events) for s in stale)
            elapsed = time.monotonic() - started
            limit = self.retry.max_elapsed_time
            if not self.retry.enabled or (limit and elapsed > limit):
                self.counters.failed += n
                _log.error("%s gave up on %d audit record(s): not acknowledged by Splunk within %gs "
                           "(retry_on_failure allows no more)", self.name, n, self.ack_timeout)
                stale.clear()
                ok = False
                continue
            self.splunk_counters.resent += n
            self.counters.retries += len(stale)
            _log.warning("%s: %d audit record(s) not acknowledged by Splunk within %gs; sending them again "
                         "(possible duplicates)", self.name, n, self.ack_timeout)
            again, stale = stale, []
            for sent in again:
                ok = self._send(self._request(sent.events, sent.indices, group)) and ok
            collect()
            interval = min(_FIRST_POLL, self.ack_poll_interval)
        return ok

    def _query_acks(self, ids: list[int]) -> tuple[set[int], bool, str]:
        """(the ids Splunk says are indexed, whether the channel is gone, why the query failed or "")."""
        acked: set[int] = set()
        headers = {k: v for k, v in self._headers.items() if k != "Content-Encoding"}
        for i in range(0, len(ids), _ACKS_PER_QUERY):
            chunk = ids[i:i + _ACKS_PER_QUERY]
            try:
                resp = self.session.post(self.ack_url, data=orjson.dumps({"acks": chunk}), headers=headers,
                                         timeout=self.timeout)
            except requests.RequestException as exc:
                return acked, False, type(exc).__name__
            code, text, doc = _hec_answer(resp)
            if resp.status_code != 200 or not isinstance(doc, dict) or not isinstance(doc.get("acks"), dict):
                reason = _describe(resp, code, text)
                if code in CHANNEL_CODES or code == 14:
                    # the channel, or acknowledgement on the token, is gone: what awaits an ack never
                    # will be acknowledged; send it again
                    _log.warning("%s: acknowledgement query refused (%s); sending the unacknowledged "
                                 "records again", self.name, reason)
                    return acked, True, ""
                return acked, False, reason
            for key, value in doc["acks"].items():
                if value is True and str(key).isdigit():
                    acked.add(int(key))
        return acked, False, ""

    # -- health ----------------------------------------------------------------------------------

    def health_check(self) -> bool:
        """GET ``health_path``: True when Splunk answers 200 (code 17, or 24/25: healthy but filling)."""
        try:
            resp = self.session.get(self.health_url, timeout=self.timeout,
                                    headers={"User-Agent": self._headers["User-Agent"]})
        except requests.RequestException as exc:
            _log.warning("%s: health check of %s failed: %s", self.name, redact_url(self.health_url),
                         type(exc).__name__)
            return False
        if resp.status_code == 200:
            return True
        code, text, _ = _hec_answer(resp)
        _log.warning("%s: health check of %s: %s", self.name, redact_url(self.health_url), _describe(resp, code, text))
        return False


def _identify(readable: Any) -> str:
    rec = readable.log_record
    attrs = rec.attributes or {}
    sid, seq = attrs.get("audit.stream.id"), attrs.get("audit.stream.seq")
    what = f"event {rec.event_name!r}" if rec.event_name else "a record"
    return f"{what} stream {sid} seq {seq}" if sid is not None else what


def _index_of(envelope: bytes) -> str | None:
    try:
        index = orjson.loads(envelope).get("index")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return index if isinstance(index, str) else None


def _identify_bytes(envelope: bytes) -> str:
    try:
        fields = orjson.loads(envelope).get("fields") or {}
    except (orjson.JSONDecodeError, AttributeError):
        return "an unreadable event"
    sid, seq = fields.get("audit.stream.id"), fields.get("audit.stream.seq")
    what = f"event {fields.get(EVENT_NAME_FIELD)!r}"
    return f"{what} stream {sid} seq {seq}" if sid is not None else what
