"""Export audit records to the Datadog Logs intake API v2 (``POST /api/v2/logs``).

Each record becomes one Datadog log entry: the searchable fields Datadog knows (``ddsource``,
``ddtags``, ``service``, ``hostname``, ``status``, ``message``, ``timestamp``), the record's
attributes flattened with dotted keys as the contrib ``datadog`` exporter flattens them, a few
Datadog standard attributes (``evt.name``, ``evt.outcome``, ``usr.id``, ``network.client.ip``),
and ``audit.otlp``: the record's own OTLP/JSON logRecord, from which ``otel-audit verify``
proves the record whatever Datadog's pipelines did to the searchable fields
(see ``otel_audit.sources.datadog``).

The wire contract (docs.datadoghq.com/api/latest/logs/send-logs): header ``DD-API-KEY``,
``Content-Type: application/json``, optional ``Content-Encoding: gzip``; a JSON array of at most
1000 entries and 5 MB uncompressed; a log over 1 MB is accepted and truncated; ``202 {}`` on
success; 400, 401, 403 and 413 are not worth the same request again, 408, 429, 500 and 503 are.

Refusals follow the policy of ``otel_audit.exporters._http`` (``last_rejected``): a 400 or 413
for several entries splits the request in halves until the refusal lands on single entries; a
single entry refused that way, or one too large to send even shrunk (refused here, before
sending), is rejected for good, logged with Datadog's reason and counted. 401 and 403 (a wrong
or revoked API key, or a key of another site), 404, 405, 407 and redirects say nothing about the
records: retried per ``retry_on_failure``, then FAILURE, and a durable spool keeps the records.

Configuration is the contrib ``datadog`` exporter's block, so it moves between a collector and
otel-audit unchanged::

    exporters:
      datadog:
        api: {key: ${env:DD_API_KEY}, site: datadoghq.eu}
        hostname: gateway-1                     # fallback when the resource has no host.name
        logs: {use_compression: true, compression_level: 6}
        host_metadata: {tags: ["team:platform"]}  # added to every entry's ddtags
        timeout: 15s

The API key never appears in a log line, an error, a repr or an exception.
"""

from __future__ import annotations

import gzip
import logging
import re
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import requests

from otel_audit import siem_fields
from otel_audit._sdk_compat import attributes_view
from otel_audit.errors import ConfigError
from otel_audit.exporters import _settings
from otel_audit.exporters._http import (
    HttpLogExporter,
    Request,
    RetrySettings,
    TlsSettings,
    Verdict,
    duration,
    retry_after_seconds,
    transport_settings,
)
from otel_audit.otlpjson import encode_log_record
from otel_audit.safe import redact_url

__all__ = [
    "DEFAULT_SITE",
    "DEFAULT_SOURCE",
    "MAX_ENTRIES",
    "MAX_ENTRY_BYTES",
    "MAX_PAYLOAD_BYTES",
    "SITES",
    "DatadogLogExporter",
    "InvalidKeyError",
    "intake_url",
    "status_of",
]

_log = logging.getLogger(__name__)

#: Every Datadog site (``DD_SITE``) and its name; the logs intake is ``https://http-intake.logs.<site>``.
SITES: Mapping[str, str] = {
    "datadoghq.com": "US1",
    "us3.datadoghq.com": "US3",
    "us5.datadoghq.com": "US5",
    "datadoghq.eu": "EU1",
    "ap1.datadoghq.com": "AP1",
    "ap2.datadoghq.com": "AP2",
    "uk1.datadoghq.com": "UK1",
    "ddog-gov.com": "US1-FED",
    "us2.ddog-gov.com": "US2-FED",
}
DEFAULT_SITE = "datadoghq.com"
DEFAULT_SOURCE = "otel_audit"
DEFAULT_TIMEOUT = 15.0  # the contrib exporter's default
INTAKE_PATH = "/api/v2/logs"
VALIDATE_PATH = "/api/v1/validate"

# The documented limits. "MB" is read as 10^6 bytes, the smaller reading, so that nothing we
# send can be over the limit whichever one Datadog means.
MAX_ENTRIES = 1000
MAX_PAYLOAD_BYTES = 5_000_000
MAX_ENTRY_BYTES = 1_000_000
#: Datadog takes logs with a timestamp up to 18 h in the past; older ones are re-stamped (below).
MAX_AGE_NS = 18 * 3600 * 10**9
_RESTAMP_AFTER_NS = MAX_AGE_NS - 3600 * 10**9  # an hour of margin for clock skew and the trip

ENV_PREFIX = "OTEL_AUDIT_DATADOG_"

# The mapping lives in otel_audit.siem_fields: the reader derives the same fields from audit.otlp.
_RESERVED = siem_fields.DD_RESERVED
HOST_FALLBACK_FIELD = siem_fields.DD_HOST_FALLBACK
STANDARD_ALIASES = siem_fields.DD_STANDARD_ALIASES
_MAX_DEPTH = 10  # nested maps are flattened this deep, as the contrib exporter does
_PREVIEW_CHARS = 2048
_BIG_VALUE_BYTES = 1024
_HEX = re.compile(r"[0-9a-fA-F]+")
_SITE = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+")
_TAG_BAD = re.compile(r"[^a-z0-9_:./-]")


def intake_url(site: str) -> str:
    """The logs intake URL of a Datadog site: ``https://http-intake.logs.<site>/api/v2/logs``."""
    return f"https://http-intake.logs.{_check_site(site)}{INTAKE_PATH}"


def _check_site(site: str) -> str:
    if not isinstance(site, str):
        raise ConfigError(f"site must be a string such as datadoghq.eu, not {type(site).__name__}")
    s = site.strip().lower().rstrip(".")
    if "://" in s or "/" in s:
        raise ConfigError(f"site {site!r} is a URL; give the site alone (e.g. datadoghq.eu), "
                         "or the full intake URL as logs.endpoint")
    for prefix in ("app.", "api.", "http-intake.logs."):
        if s.startswith(prefix) and s[len(prefix):] in SITES:
            raise ConfigError(f"site {site!r} is a host name; the site is {s[len(prefix):]!r}")
    if not _SITE.fullmatch(s):
        raise ConfigError(f"site {site!r} is not a domain name; known sites: {', '.join(SITES)}")
    return s  # a site not in SITES is warned about once, by the exporter that uses it


def _check_endpoint(endpoint: str) -> str:
    """A full intake URL from `logs.endpoint`: the path /api/v2/logs is added unless present."""
    if not isinstance(endpoint, str) or not endpoint.strip():
        raise ConfigError("logs endpoint must be a non-empty URL such as https://http-intake.logs.datadoghq.eu")
    url = endpoint.strip()
    parts = _settings.url_parts(url, example="https://http-intake.logs.datadoghq.eu")  # scheme, host, port
    if parts.query or parts.fragment:
        raise ConfigError(f"logs endpoint {redact_url(endpoint)!r} must not have a query or fragment; "
                         "give the API key as api.key")
    if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        _log.warning("logs endpoint %s is plain http: the API key travels unencrypted", redact_url(url))
    path = parts.path.rstrip("/")
    if not path.endswith(INTAKE_PATH):
        path += INTAKE_PATH
    return f"{parts.scheme}://{parts.netloc}{path}"


def _check_key(key: str) -> str:
    # The collector's offline check: present and hexadecimal. The key itself is never echoed.
    if not isinstance(key, str):
        raise ConfigError(f"the Datadog API key must be a string, not {type(key).__name__}")
    k = key.strip()
    if not k:
        raise ConfigError("the Datadog API key is empty; set api.key (or $DD_API_KEY)")
    if not _HEX.fullmatch(k):
        raise ConfigError("the Datadog API key contains characters that are not hexadecimal; "
                         "copy it again from Organization Settings > API Keys")
    return k


def _check_tags(tags: Sequence[str], what: str) -> tuple[str, ...]:
    if isinstance(tags, str) or not isinstance(tags, Sequence):
        raise ConfigError(f"{what} must be a list of tags such as ['team:platform']")
    out = []
    for t in tags:
        if not isinstance(t, str) or not t.strip() or "," in t:
            raise ConfigError(f"{what}: {t!r} is not a tag; a tag is a non-empty 'key:value' without commas")
        out.append(_normalize_tag(t.strip()))
    return tuple(out)


_normalize_tag = siem_fields.dd_normalize_tag


def _split_tags(text: str) -> list[str]:
    # DD_TAGS is space separated; commas are accepted as well.
    return [t for t in re.split(r"[\s,]+", text) if t]


# -- severity -> Datadog status --------------------------------------------------------------------


status_of = siem_fields.dd_status_of


# -- values as Datadog shows them ------------------------------------------------------------------


_scalar = siem_fields.dd_scalar
_jsonable = siem_fields.dd_jsonable
_flatten = siem_fields.dd_flatten


def _plain(attributes: Any) -> Mapping[str, Any]:
    """A record's or resource's attributes as a plain mapping (BoundedAttributes iterates slowly)."""
    return attributes_view(attributes) if attributes else {}


_message = siem_fields.dd_message


class InvalidKeyError(ValueError):
    """Datadog said the API key is invalid (fail_on_invalid_key)."""


class _TooLarge(ValueError):
    """A record whose own OTLP/JSON is too big for one Datadog log."""


@dataclass
class _Batch:
    """What a Request carries: the encoded entries, so a 400 or 413 can split it."""

    entries: list[bytes]


@dataclass
class DatadogCounters:
    """What only this exporter counts (the shared ones are in `exporter.counters`)."""

    restamped: int = 0  # records older than 18 h, sent with the current time as Datadog's timestamp
    shrunk: int = 0  # records over 1 MB whose searchable copies were cut down (audit.otlp intact)
    too_large: int = 0  # records refused because their OTLP/JSON alone is over 1 MB
    splits: int = 0  # requests split in two after a 413
    examples: list[str] = field(default_factory=list)


# -- settings --------------------------------------------------------------------------------------


def _check_hostname(hostname: Any) -> str:
    if not isinstance(hostname, str) or len(hostname) > 255 or any(c.isspace() for c in hostname):
        raise ConfigError(f"must be a host name without spaces, at most 255 characters, got {hostname!r}")
    return hostname


def _check_env(env: Any) -> str:
    if not isinstance(env, str) or "," in env:
        raise ConfigError(f"must be a string without commas, got {env!r}")
    return env.strip()


def _check_source(source: Any) -> str:
    if not isinstance(source, str) or not source.strip():
        raise ConfigError(f"(ddsource) must be a non-empty string, got {source!r}")
    return source.strip()


def _reporter_period(value: Any) -> float:
    period = duration(value, "reporter_period")
    if period < 300:
        raise ConfigError(f"must be 5 minutes or more (as in the collector) and at most 100 years, got {value!r}")
    return period


class _Tags(_settings.StrList):
    """`key:value` tags: a list, or (a variable) separated by spaces or commas as DD_TAGS."""

    def __call__(self, value: Any, where: str) -> list[str]:
        return list(_check_tags(value, where))

    def from_text(self, text: str, where: str) -> list[str]:
        return list(_check_tags(_split_tags(text), where))


_E = ENV_PREFIX
_S = _settings.Setting
_ANY = _settings.Check(lambda v: v, "any")
SETTINGS = _settings.Model("datadog", [
    _S("api_key", _settings.Check(_check_key, "string"), None, (_E + "API_KEY", "DD_API_KEY"),
       "the Datadog API key (hexadecimal)", secret=True, key="api.key",
       required="missing; set it to your Datadog API key, e.g. key: ${env:DD_API_KEY}"),
    _S("site", _settings.Check(_check_site, "string"), DEFAULT_SITE, (_E + "SITE", "DD_SITE"),
       f"the Datadog site: {', '.join(SITES)}", key="api.site"),
    _S("fail_on_invalid_key", _settings.Bool(), False, (_E + "FAIL_ON_INVALID_KEY",),
       "ask Datadog at start whether the key is valid, and refuse to start when it says no",
       key="api.fail_on_invalid_key"),
    _S("hostname", _settings.Check(_check_hostname, "string"), "", (_E + "HOSTNAME", "DD_HOSTNAME"),
       "the hostname of records whose resource names none (\"\": this machine's name)"),
    _S("endpoint", _settings.Check(_check_endpoint, "URL"), None, (_E + "LOGS_ENDPOINT",),
       "the logs intake URL instead of the site's (/api/v2/logs is added)", key="logs.endpoint",
       default_doc="https://http-intake.logs.<site>/api/v2/logs"),
    _S("use_compression", _settings.Bool(), True, (_E + "USE_COMPRESSION",), "gzip the body",
       key="logs.use_compression"),
    _S("compression_level", _settings.Whole(0, 9), 6, (_E + "COMPRESSION_LEVEL",), "the gzip level",
       key="logs.compression_level"),
    _S("batch_wait", _settings.Whole(1, 60, unit="of seconds"), None, (), "the logs agent's batching window; "
       "batching here is the exporter's batch block", key="logs.batch_wait", unused=True),
    _S("dump_payloads", _settings.Bool(), None, (), "a collector debug switch", key="logs.dump_payloads",
       unused=True),
    _S("tags", _Tags(), (), (_E + "TAGS", "DD_TAGS"), "key:value tags added to every log's ddtags",
       key="host_metadata.tags"),
    _S("host_metadata_enabled", _ANY, None, (), "the collector's host metadata", key="host_metadata.enabled",
       unused=True),
    _S("hostname_source", _ANY, None, (), "the collector's host metadata", key="host_metadata.hostname_source",
       unused=True),
    _S("reporter_period", _settings.Check(_reporter_period, "duration"), None, (), "the collector's host "
       "metadata period (5m or more)", key="host_metadata.reporter_period", unused=True),
    _S("env", _settings.Check(_check_env, "string"), "", (_E + "ENV", "DD_ENV"),
       "the env: tag when the resource has no deployment.environment.name", key=""),
    _S("source", _settings.Check(_check_source, "string"), DEFAULT_SOURCE, (_E + "SOURCE",),
       "ddsource; a resource's datadog.log.source wins", key=""),
    _S("api_endpoint", _settings.Url(), None, (), "where fail_on_invalid_key asks (the block's metrics.endpoint)",
       key="", default_doc="https://api.<site>"),
    _S("proxy_url", _settings.ProxyUrl(), None, (), "an HTTP(S) proxy, or SOCKS5 with PySocks, for every request "
       "(wins over "
       "HTTP(S)_PROXY)"),
    *transport_settings(_E, timeout=DEFAULT_TIMEOUT, headers=False),
], ignored=(
    # the contrib block's metrics, traces and host metadata, not logs; connection pooling (requests' own)
    "metrics", "traces", "only_metadata", "sending_queue", "batch", "read_buffer_size", "write_buffer_size",
    "max_idle_conns", "max_idle_conns_per_host", "max_conns_per_host", "idle_conn_timeout", "disable_keep_alives",
    "force_attempt_http2"),
   title="datadog (DatadogLogExporter)",
   list_keys=("api", "hostname", "logs", "host_metadata", "timeout", "tls", "retry_on_failure", "proxy_url",
              "proxy_from_env"))


class DatadogLogExporter(HttpLogExporter):
    """Sends audit records to the Datadog Logs intake, each with its verifiable OTLP/JSON copy.

    Every argument falls back to its environment variable (``OTEL_AUDIT_DATADOG_<NAME>``, then
    Datadog's own ``DD_API_KEY``, ``DD_SITE``, ``DD_HOSTNAME``, ``DD_TAGS``, ``DD_ENV``), then
    to the default, so ``DatadogLogExporter()`` works from the environment alone.

    Args:
        api_key: the Datadog API key (hexadecimal). Required.
        site: the Datadog site, one of `SITES` (default ``datadoghq.com``).
        endpoint: the intake URL instead of the site's (``logs.endpoint``); ``/api/v2/logs`` is
            added unless the path ends with it.
        hostname: the ``hostname`` of records whose resource has neither ``datadog.host.name``
            nor ``host.name``; "" or unset: this machine's name.
        tags: ``key:value`` tags added to every entry's ``ddtags``.
        env: the ``env:`` tag when the resource has no ``deployment.environment.name``.
        source: ``ddsource`` (default ``otel_audit``); a resource's ``datadog.log.source`` wins.
        use_compression, compression_level: gzip the body, at this level (0-9, default 6).
        fail_on_invalid_key: ask Datadog (``GET /api/v1/validate``) at construction and raise
            `ValueError` when it says the key is invalid.
        api_endpoint: where that check goes (default ``https://api.<site>``).
        timeout, tls, retry, proxy_url, session, proxy_from_env: transport, as in `HttpLogExporter`
            (`proxy_url` wins over the environment's HTTP(S)_PROXY).
    """

    name = "datadog"

    def __init__(
        self,
        api_key: str | None = None,
        *,
        site: str | None = None,
        endpoint: str | None = None,
        hostname: str | None = None,
        tags: Sequence[str] | None = None,
        env: str | None = None,
        source: str | None = None,
        use_compression: bool | str | None = None,
        compression_level: int | str | None = None,
        fail_on_invalid_key: bool | str | None = None,
        api_endpoint: str | None = None,
        timeout: float | str | None = None,
        tls: TlsSettings | Mapping[str, Any] | None = None,
        retry: RetrySettings | Mapping[str, Any] | None = None,
        proxy_url: str | None = None,
        session: requests.Session | None = None,
        proxy_from_env: bool | str = True,
        **collector: Any,
    ) -> None:
        v = SETTINGS.resolve(SETTINGS.given(locals(), collector))
        if v["api_key"] is None:
            raise SETTINGS.missing("api_key", "Datadog API key")
        self._api_key = v["api_key"]
        self.site = v["site"]
        self.url = v["endpoint"] if v["endpoint"] is not None else intake_url(self.site)
        self.api_endpoint = (v["api_endpoint"] or f"https://api.{self.site}").rstrip("/")
        uses = [u for u, own in ((self.url, v["endpoint"]), (self.api_endpoint, v["api_endpoint"])) if own is None]
        if self.site not in SITES and uses:  # a typo sends the API key (and the records) to another's domain
            _log.warning("Datadog site %r is not one of the sites known here (%s), yet the API key goes to %s: "
                         "check the spelling, or set logs.endpoint for a new site or a proxy", self.site,
                         ", ".join(SITES), " and ".join(redact_url(u) for u in uses))
        self.hostname = v["hostname"] or socket.gethostname()
        self.tags = tuple(v["tags"])
        self.env = v["env"]
        self.source = v["source"]
        self.compression_level = v["compression_level"]
        self.fail_on_invalid_key = v["fail_on_invalid_key"]
        timeout, tls, retry, proxy_from_env = v["timeout"], v["tls"], v["retry"], v["proxy_from_env"]
        use_compression, proxy_url = v["use_compression"], v["proxy_url"]

        super().__init__(timeout=timeout, tls=tls, retry=retry, compression=bool(use_compression), session=session,
                         proxy_from_env=proxy_from_env)
        if proxy_url:
            self.session.proxies = {"http": proxy_url, "https": proxy_url}
        self.dd_counters = DatadogCounters()
        self._resources: dict[int, tuple[Any, tuple[str, str, str, str, dict[str, str]]]] = {}
        self._headers = {
            "DD-API-KEY": self._api_key,
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": "otel-audit-datadog-exporter",
        }
        if self.fail_on_invalid_key:
            self.check_key()

    def __repr__(self) -> str:
        return f"DatadogLogExporter(site={self.site!r}, url={redact_url(self.url)!r}, source={self.source!r})"

    # -- configuration ----------------------------------------------------------------------------

    #: confighttp settings the contrib exporter refuses ("not respected by Datadog exporter").
    REJECTED_HTTP_KEYS = ("endpoint", "headers", "compression", "auth", "http2_read_idle_timeout",
                          "http2_ping_timeout")

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], *, where: str) -> DatadogLogExporter:
        """Build the exporter from a contrib ``datadog`` exporter block; ConfigError names the key."""
        if cfg is None:
            cfg = {}
        if not isinstance(cfg, Mapping):
            raise ConfigError(f"{where}: expected a mapping of settings, got {type(cfg).__name__}")
        for key in cfg:
            if key in cls.REJECTED_HTTP_KEYS:
                hint = {"endpoint": "set logs.endpoint (or api.site) instead",
                        "compression": "use logs.use_compression and logs.compression_level",
                        "headers": "the API key goes in api.key"}.get(key, "remove it")
                raise ConfigError(f"{where}.{key}: not supported by the datadog exporter (as in the collector); {hint}")
            if key == "tags":
                raise ConfigError(f"{where}.tags: the collector moved this key to host_metadata.tags; use that")
        given = SETTINGS.read_block(cfg, where)
        # a config block says everything: no DD_ENV, DD_SITE, DD_TAGS ... from the environment
        kw = {**SETTINGS.defaults(), "env": "", "tls": TlsSettings(), **given}
        metrics = cfg.get("metrics")
        if isinstance(metrics, Mapping) and isinstance(metrics.get("endpoint"), str):
            kw["api_endpoint"] = metrics["endpoint"]  # the collector checks the key against it too
        try:
            return cls(**kw)
        except InvalidKeyError as exc:
            raise ConfigError(f"{where}.api.key: {exc}") from None
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    def check_key(self) -> None:
        """Ask Datadog whether the API key is valid; raises ValueError when it says no.

        A network failure is logged and passed over: it says nothing about the key.
        """
        url = f"{self.api_endpoint}{VALIDATE_PATH}"
        try:
            resp = self.session.get(url, headers={"DD-API-KEY": self._api_key, "Accept": "application/json"},
                                    timeout=self.timeout)
        except requests.RequestException as exc:
            _log.warning("cannot check the Datadog API key at %s (%s); going on", redact_url(url), type(exc).__name__)
            return
        if resp.status_code in (401, 403):
            raise InvalidKeyError(f"Datadog says the API key is invalid for site {self.site} "
                             f"(HTTP {resp.status_code} from {redact_url(url)}); check api.key and api.site")
        if resp.status_code != 200:
            _log.warning("cannot check the Datadog API key at %s: HTTP %d; going on", redact_url(url), resp.status_code)

    # -- encoding ---------------------------------------------------------------------------------

    def _resource_part(self, resource: Any) -> tuple[str, str, str, str, dict[str, Any]]:
        """(ddsource, ddtags so far, hostname, service, other resource attributes) of a resource, cached."""
        hit = self._resources.get(id(resource))
        if hit is not None and hit[0] is resource:
            return hit[1]
        res = _plain(resource.attributes) if resource is not None else {}
        extra: dict[str, Any] = {}
        # Resource attributes travel as strings, as the contrib exporter sends them.
        for k, v in res.items():
            if k not in ("service.name", "host.name", "datadog.host.name", "datadog.log.source") and v is not None:
                name = f"{siem_fields.SHADOWED_PREFIX}{k}" if k in _RESERVED else k
                extra[name] = v if isinstance(v, str) else str(v)
        tags = list(self.tags)
        env = res.get("deployment.environment.name") or res.get("deployment.environment") or self.env
        if env:
            tags.append(_normalize_tag(f"env:{env}"))
        if not (res.get("datadog.host.name") or res.get("host.name")):
            # the hostname is this exporter's fallback, not the producer's: flagged, so that the verifier
            # does not take it for the host the records were signed on
            extra[HOST_FALLBACK_FIELD] = True
        part = (str(res.get("datadog.log.source") or self.source), ",".join(tags),
                str(res.get("datadog.host.name") or res.get("host.name") or self.hostname),
                str(res.get("service.name") or ""), extra)
        if len(self._resources) > 64:
            self._resources.clear()
        self._resources[id(resource)] = (resource, part)
        return part

    def _entry(self, readable: Any, now_ns: int) -> bytes:
        """One record as one Datadog log entry (JSON bytes), at most MAX_ENTRY_BYTES long."""
        otlp = encode_log_record(readable)
        otlp_text = orjson.dumps(otlp).decode()
        source, tags, host, service, extra = self._resource_part(readable.resource)
        # the searchable fields, from the record's own OTLP/JSON: the verifier derives them the same way
        head, flat, attrs, ts = siem_fields.dd_record_fields(otlp, now_ns=now_ns)
        category = attrs.get("audit.category")
        if isinstance(category, str) and category:
            cat = _normalize_tag(f"audit_category:{category}")
            tags = f"{tags},{cat}" if tags else cat

        entry: dict[str, Any] = {
            "ddsource": source,
            "ddtags": tags,
            "hostname": host,
            "service": service,
            "status": head.pop("status"),
            "message": head.pop("message"),
        }
        if now_ns - ts > _RESTAMP_AFTER_NS:
            # Datadog takes a timestamp at most 18 h old; an older record (a long outage drained
            # from a spool) is stamped with now, flagged, and keeps its own time in otel.timestamp
            # and in audit.otlp, so that it is still indexed and still verifies.
            entry["timestamp"] = now_ns // 1_000_000
            entry["otel_audit.restamped"] = True
            self.dd_counters.restamped += 1
        else:
            entry["timestamp"] = ts // 1_000_000
        entry.update(head)
        entry.update(extra)  # the record's own attributes come after, and win
        entry.update(flat)
        entry["audit.otlp"] = otlp_text
        data = orjson.dumps(entry)
        if len(data) <= MAX_ENTRY_BYTES:
            return data
        return self._shrink(entry, len(data), attrs)

    def _shrink(self, entry: dict[str, Any], size: int, attrs: Mapping[str, Any]) -> bytes:
        # Datadog would truncate this log, cutting audit.otlp short and the record with it. The
        # searchable copies are expendable, the signed one is not: the message becomes a preview
        # and every big searchable value is dropped (named in otel_audit.shrunk). If audit.otlp
        # alone is still too big, the record is refused here, loudly, rather than sent to be cut:
        # a truncated record could never verify, and a refusal is counted and shows as a missing
        # seq in verification instead of passing unnoticed.
        dropped = []
        msg = entry["message"]
        if len(msg) > _PREVIEW_CHARS:
            entry["message"] = siem_fields.dd_preview(msg)
            dropped.append("message")
        for k in list(entry):
            if k in ("audit.otlp", "message", "ddtags"):
                continue
            if len(orjson.dumps(entry[k])) > _BIG_VALUE_BYTES:
                del entry[k]
                dropped.append(k)
        entry["otel_audit.shrunk"] = dropped
        data = orjson.dumps(entry)
        if len(data) > MAX_ENTRY_BYTES:
            raise _TooLarge(
                f"its OTLP/JSON is {len(entry['audit.otlp'])} bytes and the entry {len(data)} bytes; Datadog "
                f"truncates logs over {MAX_ENTRY_BYTES} bytes, which would make the record unverifiable, so it "
                "was not sent (make the body or attributes smaller, e.g. hash large values in redaction)")
        self.dd_counters.shrunk += 1
        _log.warning("datadog: audit record seq %s of stream %s is %d bytes, over Datadog's 1 MB log limit; its "
                     "searchable copies were cut (%s), audit.otlp is intact", attrs.get("audit.stream.seq", "?"),
                     attrs.get("audit.stream.id", "?"), size, ", ".join(dropped))
        return data

    def _requests(self, batch: Sequence[Any]) -> list[Request]:
        now = time.time_ns()
        entries: list[tuple[bytes, int]] = []
        for i, readable in enumerate(batch):
            try:
                entries.append((self._entry(readable, now), i))
            except (TypeError, ValueError) as exc:  # _TooLarge, or a value OTLP cannot carry
                self._refuse(i, readable, exc)
        out: list[Request] = []
        chunk: list[tuple[bytes, int]] = []
        size = 2
        for data, i in entries:
            if chunk and (len(chunk) >= MAX_ENTRIES or size + len(data) + 1 > MAX_PAYLOAD_BYTES):
                out.append(self._request(chunk))
                chunk, size = [], 2
            chunk.append((data, i))
            size += len(data) + 1
        if chunk:
            out.append(self._request(chunk))
        return out

    def _refuse(self, index: int, readable: Any, exc: Exception) -> None:
        lr = readable.log_record
        attrs = lr.attributes or {}
        sid, seq = attrs.get("audit.stream.id", "?"), attrs.get("audit.stream.seq", "?")
        which = f"{lr.event_name or 'record'} (stream {sid} seq {seq})"
        if isinstance(exc, _TooLarge):
            self.dd_counters.too_large += 1
        self._rejected((index,), f"{which} not sent: {exc}")

    def _request(self, chunk: Sequence[tuple[bytes, int]]) -> Request:
        entries = [data for data, _ in chunk]
        body = b"[" + b",".join(entries) + b"]"
        headers = dict(self._headers)
        if self.compression:
            headers["Content-Encoding"] = "gzip"
            body = gzip.compress(body, compresslevel=self.compression_level)
        return Request("POST", self.url, body, headers, tuple(i for _, i in chunk), _Batch(entries))

    def _split(self, request: Request) -> list[Request]:
        chunk = list(zip(request.context.entries, request.indices, strict=True))
        half = len(chunk) // 2
        if not half:
            return []
        self.dd_counters.splits += 1
        return [self._request(chunk[:half]), self._request(chunk[half:])]

    # -- judging Datadog's answers ----------------------------------------------------------------

    def _judge(self, request: Request, response: requests.Response) -> Verdict:
        status = response.status_code
        if 200 <= status < 300:
            return Verdict(delivered=request.indices)
        reason = f"HTTP {status} {_error_text(response)}"
        if status == 413:
            if request.records == 1:
                reason += ": one entry is too large for the intake"
            return self._blame(request, reason)
        if status == 400:
            return self._blame(request, reason)
        if status in (408, 425, 429) or status >= 500:
            wait = retry_after_seconds(response.headers.get("Retry-After"))
            if wait is None and status == 429:
                # Datadog's rate limit headers: X-RateLimit-Reset is the seconds until the window resets.
                wait = retry_after_seconds(response.headers.get("X-RateLimit-Reset"))
            return Verdict(retry=request, retry_after=wait, reason=reason)
        # 401, 403 (the key), 404, 405, 407, 3xx (the endpoint or proxy) and anything else: not the
        # records. Retried, then FAILURE: a durable spool keeps them; a revoked key drops nothing.
        hint = ("check api.key and api.site (a key works only on its own site)" if status in (401, 403)
                else "check logs.endpoint and proxy_url")
        return Verdict(retry=request, reason=f"{reason}; {hint}")


def _error_text(response: requests.Response) -> str:
    """Datadog's reason: errors[].title/detail (intake) or errors[] strings (other APIs), shortened."""
    text = ""
    try:
        doc = response.json()
    except ValueError:
        doc = None
    if isinstance(doc, Mapping) and isinstance(doc.get("errors"), list):
        parts = []
        for e in doc["errors"][:3]:
            if isinstance(e, Mapping):
                parts.append(": ".join(str(e[k]) for k in ("title", "detail") if e.get(k)))
            else:
                parts.append(str(e))
        text = "; ".join(p for p in parts if p)
    if not text:
        text = (response.reason or "") + (f": {response.text.strip()}" if response.text.strip() else "")
    return text if len(text) <= 300 else text[:300] + "..."
