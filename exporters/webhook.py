"""Export audit records as Standard Webhooks: signed JSON batches POSTed to an HTTP endpoint.

Each message is one POST of `application/json` (UTF-8, minified) to `endpoint`:

    {"type": "audit.events",
     "timestamp": "2025-05-06T07:08:09.123456789Z",   # time of the message's first record
     "data": [
       {"event_name": "authentication.login.succeeded",
        "time": "2025-05-06T07:08:09.123456789Z",       # the record's timestamp, RFC 3339, ns
        "observed_time": "2025-05-06T07:08:09.123460000Z",
        "severity": "INFO", "severity_number": 9,
        "body": "...",                                   # any JSON value; bytes as base64
        "attributes": {"user.id": "u-1", "audit.outcome": "success",
                       "audit.stream.id": "...", "audit.stream.seq": 41, ...},
        "resource": {"service.name": "gateway", ...},
        "trace_id": "...", "span_id": "...",             # hex, when the record has them
        "audit.otlp": "{\"timeUnixNano\":\"...\",...}"},  # the record's own OTLP/JSON logRecord
       ...]}

The fields next to `audit.otlp` are for searching and alerting; a receiver may flatten or
retype them. `audit.otlp` is the signed record exactly as the file exporter writes it:
`read_payload` gives those records back for `otel_audit.verify.Verifier.add_record` and
reports any searchable field that no longer agrees with its record.

Signing (https://www.standardwebhooks.com, spec/standard-webhooks.md):

* `webhook-id`: `msg_` + 32 hex digits of SHA-256 over the JSON payload. It names the content:
  a retry, or a replay of the same batch from a durable spool, carries the same id, so a
  receiver that dedupes on it stores the message once; two different batches never share one.
* `webhook-timestamp`: unix seconds of the attempt, refreshed at every retry (receivers refuse
  timestamps more than five minutes away from their clock), and signed anew with it.
* `webhook-signature`: space-separated `v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<payload>")>`
  for each `whsec_` secret (several during a rotation: the receiver accepts any match), then
  `v1a,<base64 Ed25519 signature>` of the same content when a `whsk_` signing key is set
  (receivers verify it with the `whpk_` public key, `WebhookLogExporter.public_key`).
  With `compression: gzip` the signature covers the JSON payload before gzip: a receiver
  decodes `Content-Encoding` first, then verifies.

Delivery (the refusal policy of `otel_audit.exporters._http`): 2xx is delivered. 408, 425, 429
and every 5xx, timeouts and connection failures are retried per `retry_on_failure` (honouring
`Retry-After`). A judgement of the content (400, 413, 422) on a message of one record
rejects that record for good (its position in `last_rejected`, counted and logged with the
receiver's answer); on a message of several, the message is split in halves until the refusal
lands on single records, and the others are delivered. Every other answer (401 and 403: a
signature or credential refusal; a redirect, which is never followed; 404; 415, a refused
encoding; any other 4xx) says
nothing about the records: it is retried per `retry_on_failure`, then the export returns FAILURE
and a durable spool keeps the records. `410 Gone` means the receiver wants no more webhooks: the
exporter logs an ERROR, sets `disabled`, and from then on every export returns FAILURE at once
(counted in `counters.failed` and logged), without a request; a durable spool keeps those records
until the endpoint is fixed and the exporter restarted (or `enable()` is called).

After `os.fork()` the child signs and sends through a fresh session of its own (see `_http`).

Configuration keys (`from_config`): `endpoint`, `secrets` (list of `whsec_...`),
`signing_key` (`whsk_...`), `max_batch_size` (records per message, default 100),
`max_body_bytes` (payload bytes before gzip, default 1000000: under nginx's default
client_max_body_size), `compression` (none | gzip; default none: many receivers do not decode
gzip), `proxy_url`, `proxy_from_env` (default true: HTTP(S)_PROXY / NO_PROXY apply), and the
collector's `timeout` (default 15s), `tls`, `headers`, `retry_on_failure`, `sending_queue`, `batch`.

Environment (used when an argument is not given; a bad value logs a warning and falls back):
`OTEL_AUDIT_WEBHOOK_ENDPOINT`, `OTEL_AUDIT_WEBHOOK_SECRETS` (whitespace- or comma-separated),
`OTEL_AUDIT_WEBHOOK_SIGNING_KEY`, `OTEL_AUDIT_WEBHOOK_MAX_BATCH_SIZE`,
`OTEL_AUDIT_WEBHOOK_MAX_BODY_BYTES`, `OTEL_AUDIT_WEBHOOK_TIMEOUT`,
`OTEL_AUDIT_WEBHOOK_COMPRESSION`, `OTEL_AUDIT_WEBHOOK_HEADERS` (`name=value,...`, values
URL-encoded as in OTEL_EXPORTER_OTLP_HEADERS), `OTEL_AUDIT_WEBHOOK_CA_FILE`.

Secrets (`whsec_`, `whsk_`, header values) never appear in a message, an exception or a repr;
a query string in `endpoint` is shown as `?...` in our messages, and a secret-looking path
segment (a Slack-style token) as `***` (otel_audit.safe); urllib3's own DEBUG lines pass the same
filter. Still, put tokens in `headers`, not in the URL.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import gzip
import hashlib
import hmac
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from opentelemetry.sdk._logs.export import LogRecordExportResult

from otel_audit.canonical import STREAM_ID, STREAM_SEQ
from otel_audit.errors import ConfigError
from otel_audit.exporters import _settings
from otel_audit.exporters._http import (
    RETRYABLE_STATUSES,
    HttpLogExporter,
    Request,
    RetrySettings,
    TlsSettings,
    Verdict,
    fresh_session,
    retry_after_seconds,
    transport_settings,
)
from otel_audit.otlpjson import decode_attributes, encode_log_record, plain_json
from otel_audit.safe import redact_url

if TYPE_CHECKING:
    from opentelemetry.sdk._logs import ReadableLogRecord

__all__ = [
    "ENV_ENDPOINT",
    "ENV_SECRETS",
    "ENV_SIGNING_KEY",
    "PAYLOAD_TYPE",
    "ReadBack",
    "WebhookLogExporter",
    "event",
    "iter_records",
    "public_key_of",
    "read_payload",
    "signature_header",
]

_log = logging.getLogger(__name__)

ENV_ENDPOINT = "OTEL_AUDIT_WEBHOOK_ENDPOINT"
ENV_SECRETS = "OTEL_AUDIT_WEBHOOK_SECRETS"
ENV_SIGNING_KEY = "OTEL_AUDIT_WEBHOOK_SIGNING_KEY"
ENV_MAX_BATCH_SIZE = "OTEL_AUDIT_WEBHOOK_MAX_BATCH_SIZE"
ENV_MAX_BODY_BYTES = "OTEL_AUDIT_WEBHOOK_MAX_BODY_BYTES"
ENV_TIMEOUT = "OTEL_AUDIT_WEBHOOK_TIMEOUT"
ENV_COMPRESSION = "OTEL_AUDIT_WEBHOOK_COMPRESSION"
ENV_HEADERS = "OTEL_AUDIT_WEBHOOK_HEADERS"
ENV_CA_FILE = "OTEL_AUDIT_WEBHOOK_CA_FILE"

#: The `type` of every payload: a batch of audit events.
PAYLOAD_TYPE = "audit.events"
DEFAULT_MAX_BATCH_SIZE = 100
#: Below nginx's default client_max_body_size (1 MiB), the most common limit in front of a receiver.
DEFAULT_MAX_BODY_BYTES = 1_000_000
#: The spec recommends receivers be given 15 to 30 seconds.
DEFAULT_TIMEOUT = 15.0
MIN_MAX_BODY_BYTES = 1024
#: the largest max_body_bytes / max_batch_size a config may give: more is a typo (one message of a GiB)
MAX_MAX_BODY_BYTES = 1 << 30
MAX_MAX_BATCH_SIZE = 1_000_000

SECRET_PREFIX = "whsec_"
SIGNING_KEY_PREFIX = "whsk_"
PUBLIC_KEY_PREFIX = "whpk_"
#: The spec's symmetric secrets: at least 192 random bits, at most 512.
SECRET_MIN_BYTES = 24
SECRET_MAX_BYTES = 64

#: Statuses retried besides every 5xx: throttling and the transient client-side ones.
RETRY_STATUSES = RETRYABLE_STATUSES | {408, 425, 429}
#: Statuses that judge the content of the message: its records, one by one, are rejected for good.
#: (415 is not one: it refuses the Content-Type or Content-Encoding, a setting, never a record.)
CONTENT_STATUSES = frozenset({400, 413, 422})

_COMPRESSIONS = ("none", "gzip")
_KEYS = ("endpoint", "secrets", "signing_key", "max_batch_size", "max_body_bytes", "compression", "proxy_url")
# confighttp client tuning with no effect on what reaches the receiver or how reliably;
# accepted and ignored so that a collector-shaped block moves here unchanged.
_IGNORED_KEYS = (
    "read_buffer_size", "write_buffer_size", "max_idle_conns", "max_idle_conns_per_host", "max_conns_per_host",
    "idle_conn_timeout", "disable_keep_alives", "http2_read_idle_timeout", "http2_ping_timeout",
    "compression_params", "include_metadata", "cookies",
)
# Headers this exporter owns: a `headers` entry may not replace them.
_OWN_HEADERS = frozenset({
    "webhook-id", "webhook-timestamp", "webhook-signature", "content-type", "content-encoding", "content-length",
    "host", "transfer-encoding",
})
_SECRET_HINT = f"a Standard Webhooks secret is '{SECRET_PREFIX}' followed by the base64 of {SECRET_MIN_BYTES} " \
               f"to {SECRET_MAX_BYTES} random bytes"
_SIGNING_KEY_HINT = f"an Ed25519 signing key is '{SIGNING_KEY_PREFIX}' followed by the base64 of its 32-byte seed"


# -- keys and signatures ----------------------------------------------------------------------------


def _b64decode(text: str) -> bytes:
    """Standard base64; missing padding is tolerated, as the reference libraries do."""
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _secret_bytes(value: object) -> bytes:
    """The HMAC key of a `whsec_` secret. ValueError says what is wrong, never what the value is."""
    if not isinstance(value, str):
        raise ConfigError(f"must be a string, not a {type(value).__name__}; {_SECRET_HINT}")
    if not value.startswith(SECRET_PREFIX):
        if value.startswith((SIGNING_KEY_PREFIX, PUBLIC_KEY_PREFIX)):
            raise ConfigError(f"is an Ed25519 key, not an HMAC secret; give it as signing_key. {_SECRET_HINT}")
        raise ConfigError(f"does not start with '{SECRET_PREFIX}'; {_SECRET_HINT}")
    try:
        key = _b64decode(value[len(SECRET_PREFIX):])
    except (binascii.Error, ValueError):
        raise ConfigError(f"is not base64 after '{SECRET_PREFIX}'; {_SECRET_HINT}") from None
    if not SECRET_MIN_BYTES <= len(key) <= SECRET_MAX_BYTES:
        raise ConfigError(f"holds {len(key)} bytes; {_SECRET_HINT}")
    return key


def _signing_key(value: object) -> Ed25519PrivateKey:
    """The Ed25519 key of a `whsk_` string (the 32-byte seed; seed + public key is accepted too)."""
    if isinstance(value, Ed25519PrivateKey):
        return value
    if not isinstance(value, str):
        raise ConfigError(f"must be a string, not a {type(value).__name__}; {_SIGNING_KEY_HINT}")
    if value.startswith(PUBLIC_KEY_PREFIX):
        raise ConfigError(f"is a public key ('{PUBLIC_KEY_PREFIX}'), which only verifies; give the secret key. "
                         f"{_SIGNING_KEY_HINT}")
    if value.startswith(SECRET_PREFIX):
        raise ConfigError(f"is an HMAC secret; give it under secrets. {_SIGNING_KEY_HINT}")
    if not value.startswith(SIGNING_KEY_PREFIX):
        raise ConfigError(f"does not start with '{SIGNING_KEY_PREFIX}'; {_SIGNING_KEY_HINT}")
    try:
        raw = _b64decode(value[len(SIGNING_KEY_PREFIX):])
    except (binascii.Error, ValueError):
        raise ConfigError(f"is not base64 after '{SIGNING_KEY_PREFIX}'; {_SIGNING_KEY_HINT}") from None
    if len(raw) not in (32, 64):
        raise ConfigError(f"holds {len(raw)} bytes; {_SIGNING_KEY_HINT}")
    key = Ed25519PrivateKey.from_private_bytes(raw[:32])
    if len(raw) == 64 and key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw) != raw[32:]:
        raise ConfigError("holds 64 bytes whose second half is not the public key of the first; "
                         f"{_SIGNING_KEY_HINT}")
    return key


def public_key_of(signing_key: str | Ed25519PrivateKey) -> str:
    """The `whpk_` public key that receivers verify `v1a` signatures with."""
    raw = _signing_key(signing_key).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return PUBLIC_KEY_PREFIX + base64.b64encode(raw).decode("ascii")


class _Keys:
    """The signing material; its repr and str never show it."""

    __slots__ = ("_ed25519", "_hmac")

    def __init__(self, hmac_keys: Sequence[bytes], ed25519: Ed25519PrivateKey | None) -> None:
        self._hmac = tuple(hmac_keys)
        self._ed25519 = ed25519

    def __repr__(self) -> str:
        return f"<signing keys: {len(self._hmac)} secret(s){', ed25519' if self._ed25519 else ''}>"

    __str__ = __repr__

    @property
    def count(self) -> int:
        return len(self._hmac)

    def public_key(self) -> str | None:
        return None if self._ed25519 is None else public_key_of(self._ed25519)

    def header(self, msg_id: str, timestamp: int, payload: bytes) -> str:
        head = f"{msg_id}.{timestamp}.".encode()
        parts: list[str] = []
        for key in self._hmac:
            mac = hmac.new(key, head, hashlib.sha256)
            mac.update(payload)
            parts.append("v1," + base64.b64encode(mac.digest()).decode("ascii"))
        if self._ed25519 is not None:
            parts.append("v1a," + base64.b64encode(self._ed25519.sign(head + payload)).decode("ascii"))
        return " ".join(parts)


def signature_header(
    msg_id: str,
    timestamp: int,
    payload: bytes,
    *,
    secrets: Sequence[str] = (),
    signing_key: str | None = None,
) -> str:
    """The `webhook-signature` value of one message: a `v1` entry per secret, then `v1a` when a key is given."""
    if "." in msg_id or not msg_id:
        raise ConfigError("a webhook id must be non-empty and hold no '.'")
    keys = _Keys([_secret_bytes(s) for s in secrets], _signing_key(signing_key) if signing_key is not None else None)
    return keys.header(msg_id, int(timestamp), payload)


# -- payloads ---------------------------------------------------------------------------------------


_last_second: tuple[int, str] = (-1, "")


def _iso(ns: int) -> str:
    """RFC 3339 UTC with nanoseconds, always 30 characters for years 1000-9999."""
    global _last_second
    seconds, frac = divmod(ns, 1_000_000_000)
    cached = _last_second  # records of a batch mostly share their second: format it once
    if cached[0] == seconds:
        stamp = cached[1]
    else:
        stamp = _dt.datetime.fromtimestamp(seconds, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        _last_second = (seconds, stamp)
    return f"{stamp}.{frac:09d}Z"


def _iso_ns(text: str) -> int | None:
    """Nanoseconds since the epoch of an RFC 3339 UTC time as `_iso` writes it, else None."""
    if not isinstance(text, str) or not text.endswith("Z"):
        return None
    main, _, frac = text[:-1].partition(".")
    try:
        when = _dt.datetime.strptime(main, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=_dt.timezone.utc)
    except ValueError:
        return None
    if frac and (not frac.isdigit() or len(frac) > 9):
        return None
    return int(when.timestamp()) * 1_000_000_000 + int((frac or "0").ljust(9, "0"))


_jsonable = plain_json


def _json_attributes(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    """Attributes as a JSON object; the scalar types that make up nearly every attribute go as they are."""
    out: dict[str, Any] = {}
    if not attributes:
        return out
    for key, value in attributes.items():
        cls = type(value)
        out[key] = value if cls is str or cls is int or cls is bool else _jsonable(value)
    return out


def event(
    readable: ReadableLogRecord,
    *,
    otlp: Mapping[str, Any] | None = None,
    resource: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The payload entry of one SDK log record (see the module docstring for its fields).

    `otlp` and `resource` (the JSON form of the resource attributes) save work when known already.
    """
    record = readable.log_record
    rec = otlp if otlp is not None else encode_log_record(readable)
    out: dict[str, Any] = {}
    if record.event_name:
        out["event_name"] = record.event_name
    ns = record.timestamp or record.observed_timestamp
    if ns:
        out["time"] = _iso(ns)
    if record.observed_timestamp:
        out["observed_time"] = _iso(record.observed_timestamp)
    sev = record.severity_number
    text = record.severity_text or (sev.name if sev is not None and sev.value else None)
    if text:
        out["severity"] = text
    if sev is not None and sev.value:
        out["severity_number"] = sev.value
    if record.body is not None:
        out["body"] = _jsonable(record.body)
    out["attributes"] = _json_attributes(record.attributes)
    if resource is None and readable.resource is not None:
        resource = _json_attributes(readable.resource.attributes)
    if resource:
        out["resource"] = resource
    if record.trace_id:
        out["trace_id"] = format(record.trace_id, "032x")
    if record.span_id:
        out["span_id"] = format(record.span_id, "016x")
    out["audit.otlp"] = orjson.dumps(rec).decode()
    return out


@dataclass
class ReadBack:
    """What `read_payload` found: the signed records, and every disagreement worth a look."""

    records: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (where, OTLP/JSON logRecord)
    mismatches: list[str] = field(default_factory=list)


# Searchable attributes compared with the signed record (besides event name and time).
_CHECKED_ATTRS = ("user.id", "audit.outcome", STREAM_ID, STREAM_SEQ)


def _same(searchable: Any, signed: Any) -> bool:
    if searchable == signed and type(searchable) is type(signed):
        return True
    # a receiver's store may have retyped a number as text (or the reverse): same digits are the same value
    if isinstance(searchable, (int, str)) and isinstance(signed, (int, str)) \
            and not isinstance(searchable, bool) and not isinstance(signed, bool):
        return str(searchable) == str(signed)
    return False


def read_payload(payload: bytes | str | Mapping[str, Any], where: str) -> ReadBack:
    """The OTLP/JSON records of one webhook payload as a receiver stored it, checked against its fields.

    Every event's `audit.otlp` is parsed into a logRecord for `Verifier.add_record(rec, where)`.
    A mismatch is reported when the event name, the time, `user.id`, `audit.outcome`,
    `audit.stream.id` or `audit.stream.seq` next to it differ from the signed record (altered at
    rest while `audit.otlp` was left alone), and when an event carries no readable `audit.otlp`.
    """
    out = ReadBack()
    if isinstance(payload, (bytes, str)):
        try:
            payload = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            out.mismatches.append(f"{where}: the payload is not JSON ({exc})")
            return out
    data = payload.get("data") if isinstance(payload, Mapping) else None
    if not isinstance(data, list):
        out.mismatches.append(f"{where}: not an {PAYLOAD_TYPE} payload (no data list)")
        return out
    for i, ev in enumerate(data):
        loc = f"{where}#data[{i}]"
        if not isinstance(ev, Mapping):
            out.mismatches.append(f"{loc}: the event is not a JSON object")
            continue
        raw = ev.get("audit.otlp")
        try:
            rec = orjson.loads(raw) if isinstance(raw, str) else None
        except orjson.JSONDecodeError:
            rec = None
        if not isinstance(rec, dict):
            out.mismatches.append(f"{loc}: no readable audit.otlp (the signed record); this event cannot be verified")
            continue
        out.records.append((loc, rec))
        out.mismatches.extend(f"{loc}: {m}" for m in _event_mismatches(ev, rec))
    return out


def _event_mismatches(ev: Mapping[str, Any], rec: Mapping[str, Any]) -> list[str]:
    found: list[str] = []
    try:
        attrs = decode_attributes(rec.get("attributes"))
    except ValueError:
        return ["audit.otlp has unreadable attributes"]
    seq = attrs.get(STREAM_SEQ)
    label = f" (seq {seq})" if seq is not None else ""
    if ev.get("event_name") != rec.get("eventName"):
        found.append(f"event_name is {ev.get('event_name')!r} but the signed record says "
                     f"{rec.get('eventName')!r}{label}")
    signed_ns = int(rec.get("timeUnixNano") or rec.get("observedTimeUnixNano") or 0)
    shown = ev.get("time")
    if signed_ns and (shown is None or _iso_ns(shown) != signed_ns):
        found.append(f"time is {shown!r} but the signed record says {_iso(signed_ns)}{label}")
    shown_attrs = ev.get("attributes")
    shown_attrs = shown_attrs if isinstance(shown_attrs, Mapping) else {}
    for key in _CHECKED_ATTRS:
        if key not in attrs and key not in shown_attrs:
            continue
        if not _same(shown_attrs.get(key), attrs.get(key)):
            found.append(f"attributes.{key} is {shown_attrs.get(key)!r} but the signed record says "
                         f"{attrs.get(key)!r}{label}")
    return found


# -- transport --------------------------------------------------------------------------------------


class _SigningSession:
    """The exporter's session, signing each attempt just before it leaves.

    The spec wants the attempt's time in `webhook-timestamp`, and receivers refuse one that is
    more than five minutes old: a request retried after a long outage is signed anew. Redirects
    are never followed (the spec counts them as failures). A query string in the endpoint may
    hold a token; it is taken out of transport errors before anyone logs them.
    """

    def __init__(self, session: requests.Session, keys: _Keys, secret_query: str) -> None:
        self._session = session
        self._keys = keys
        self._query = secret_query

    def request(self, method: str, url: str, *, data: bytes, headers: Mapping[str, str], timeout: float,
                **kw: Any) -> requests.Response:
        sent = dict(headers)
        payload = gzip.decompress(data) if sent.get("Content-Encoding") == "gzip" else data
        now = int(time.time())
        sent["webhook-timestamp"] = str(now)
        sent["webhook-signature"] = self._keys.header(sent["webhook-id"], now, payload)
        kw["allow_redirects"] = False
        try:
            return self._session.request(method, url, data=data, headers=sent, timeout=timeout, **kw)
        except requests.RequestException as exc:
            if self._query and self._query in str(exc):
                raise type(exc)(str(exc).replace(self._query, "<query hidden>")) from None
            raise

    def close(self) -> None:
        self._session.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)

    def __repr__(self) -> str:
        return f"<signing session, {self._keys!r}>"


def _check_endpoint(url: object) -> str:
    """An http(s) URL without credentials; ValueError says what is wrong."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigError("must be the receiver's URL, such as https://hooks.example.com/audit")
    parts = _settings.url_parts(url, example="https://hooks.example.com/audit")  # scheme, host, port
    if "@" in parts.netloc:
        raise ConfigError("credentials in the URL would show in logs; send them with headers (Authorization) instead")
    if parts.fragment:
        raise ConfigError(f"{_safe_url(url)!r} has a #fragment, which is never sent; remove it")
    return url.strip()


def _safe_url(url: str) -> str:
    """The URL for messages: no credentials, and no query (it may carry a token)."""
    try:
        parts = urlsplit(redact_url(url))
    except ValueError:
        return "<unparsable URL>"
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "..." if parts.query else "", ""))


class _Secrets(_settings.Parser):
    """`secrets`: whsec_ strings (one, or a list) as HMAC keys; the variable's entries are separated by
    spaces or commas, and an unusable one is skipped with a warning (never its value)."""

    kind = "list"

    def __call__(self, value: Any, where: str) -> list[bytes]:
        if isinstance(value, list) and all(isinstance(k, bytes) for k in value):
            return value  # already read (from_config hands its keys to the constructor)
        return _hmac_keys(value, where)

    def from_text(self, text: str, where: str) -> list[bytes]:
        keys: list[bytes] = []
        for i, item in enumerate(text.replace(",", " ").split()):
            try:
                key = _secret_bytes(item)
            except ValueError as exc:  # never echo the value
                _log.warning("%s: entry %d %s; it is ignored", where, i, exc)
                continue
            if key not in keys:
                keys.append(key)
        return keys

    def show(self, value: Any) -> str:
        return "[]"


def _signing_key_or_none(value: object) -> Ed25519PrivateKey | None:
    return None if value == "" else _signing_key(value)  # "": none, and no look at the environment


_S = _settings.Setting
SETTINGS = _settings.Model("webhook", [
    _S("endpoint", _settings.Check(_check_endpoint, "URL"), None, (ENV_ENDPOINT,),
       "the receiver's URL (no credentials in it: send them with headers)",
       required="missing; give the receiver's URL, such as https://hooks.example.com/audit"),
    _S("secrets", _Secrets(), [], (ENV_SECRETS,), "Standard Webhooks HMAC secrets (whsec_...); every one signs "
       "each message (rotation)", secret=True),
    _S("signing_key", _settings.Check(_signing_key_or_none, "string"), None, (ENV_SIGNING_KEY,),
       "an Ed25519 key (whsk_...) for v1a signatures; secrets or a signing key is required", secret=True),
    _S("max_batch_size", _settings.Whole(1, MAX_MAX_BATCH_SIZE, at_least=True), DEFAULT_MAX_BATCH_SIZE,
       (ENV_MAX_BATCH_SIZE,), "events per message at most"),
    _S("max_body_bytes", _settings.Size(MIN_MAX_BODY_BYTES, MAX_MAX_BODY_BYTES, at_least=True),
       DEFAULT_MAX_BODY_BYTES, (ENV_MAX_BODY_BYTES,), "message bodies before compression at most"),
    _S("compression", _settings.Choice(_COMPRESSIONS, {"": "none", True: "gzip", False: "none"}), "none",
       (ENV_COMPRESSION,), "gzip the body"),
    _S("proxy_url", _settings.ProxyUrl(), None, (), "an HTTP(S) proxy, or SOCKS5 with PySocks, for every request "
       "(wins over HTTP(S)_PROXY)"),
    *transport_settings("OTEL_AUDIT_WEBHOOK_", timeout=DEFAULT_TIMEOUT, ca_env=ENV_CA_FILE, headers=False),
    _S("headers", _settings.StrMap(_OWN_HEADERS), {}, (ENV_HEADERS,), "extra HTTP headers (not the webhook-* "
       "ones); values may be credentials: never shown", secret=True),
], ignored=(*_IGNORED_KEYS, "sending_queue", "batch"), title="webhook (WebhookLogExporter)")


def _response_text(response: requests.Response, limit: int = 300) -> str:
    text = " ".join(response.text.split()) if response.content else ""
    if not text:
        return response.reason or "no body"
    return text if len(text) <= limit else text[:limit] + "..."


# -- the exporter -----------------------------------------------------------------------------------


@dataclass
class _Message:
    payload: bytes  # the JSON payload, before any gzip
    first_ns: int
    events: list[bytes]  # the encoded events, so that a content refusal can split the message
    times: list[int]  # each event's time, so that a half has the right `timestamp`


class WebhookLogExporter(HttpLogExporter):
    """POSTs audit records to a webhook receiver as signed Standard Webhooks messages.

    Args:
        endpoint: the receiver's http(s) URL.
        secrets: `whsec_` secrets; each signs a `v1` entry (give two while rotating).
        signing_key: a `whsk_` Ed25519 key for a `v1a` entry (receivers verify with `public_key`);
            "" for none without looking at the environment.
        max_batch_size: records per message (at least 1; default 100).
        max_body_bytes: payload bytes per message before gzip (at least 1024; default 1000000). A
            single record larger than that is sent alone; the receiver may refuse it (413).
        compression: "gzip" or "none" (default; also True / False).
        proxy_url: an HTTP(S) proxy for every request (wins over the environment's HTTP(S)_PROXY).
        timeout, tls, retry, headers, session, proxy_from_env: as `HttpLogExporter`.

    At least one secret or a signing key is required: the spec has no unsigned messages.
    Raises ConfigError (a ValueError) naming the setting for a bad one, never showing a secret.
    """

    name = "webhook"

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        secrets: Sequence[str] | str | None = None,
        signing_key: str | None = None,
        max_batch_size: int | str | None = None,
        max_body_bytes: int | str | None = None,
        compression: str | bool | None = None,
        proxy_url: str | None = None,
        timeout: float | str | None = None,
        tls: TlsSettings | Mapping[str, Any] | None = None,
        retry: RetrySettings | Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        session: requests.Session | None = None,
        proxy_from_env: bool | str = True,
        **collector: Any,
    ) -> None:
        # everything from arguments or the environment first: a bad argument raises before any I/O
        v = SETTINGS.resolve(SETTINGS.given(locals(), collector))
        if v["endpoint"] is None:
            raise ConfigError(f"endpoint: missing; pass endpoint= or set {ENV_ENDPOINT} to the receiver's URL")
        endpoint = v["endpoint"]
        hmac_keys, ed_key = v["secrets"], v["signing_key"]
        if not hmac_keys and ed_key is None:
            raise ConfigError(f"secrets: no signing secret; give secrets (whsec_...) or signing_key (whsk_...), "
                              f"or set {ENV_SECRETS} / {ENV_SIGNING_KEY}")
        self.max_batch_size, self.max_body_bytes = v["max_batch_size"], v["max_body_bytes"]
        gzip_on = v["compression"] == "gzip"
        tls = v["tls"] if v["tls"] is not None or not v["tls_ca_file"] else TlsSettings(ca_file=v["tls_ca_file"])
        proxy_url = v["proxy_url"]
        timeout, retry, headers, proxy_from_env = v["timeout"], v["retry"], v["headers"], v["proxy_from_env"]

        super().__init__(timeout=timeout, tls=tls, retry=retry, compression=gzip_on, headers=headers,
                         session=session,
                         proxy_from_env=proxy_from_env)
        self.endpoint = endpoint
        self._safe_endpoint = _safe_url(endpoint)
        self._keys = _Keys(hmac_keys, ed_key)
        if proxy_url is not None:
            self.session.proxies = {"http": proxy_url, "https": proxy_url}
        self.session.headers["User-Agent"] = "otel-audit-webhook"
        # _SigningSession wraps a Session (duck-typed: it signs each request, then sends it through the inner one)
        self.session = _SigningSession(self.session, self._keys, urlsplit(endpoint).query)  # type: ignore[assignment]
        self.disabled_reason: str | None = None  # set by 410 Gone
        self.refused_while_disabled = 0  # records export() turned away because the endpoint is disabled

    def _renew_session(self) -> None:
        inner = self.session._session if isinstance(self.session, _SigningSession) else self.session
        self.session = _SigningSession(fresh_session(inner), self._keys,  # type: ignore[assignment]  # as above
                                       urlsplit(self.endpoint).query)

    # public state

    @property
    def disabled(self) -> bool:
        """True once the receiver answered 410 Gone: every export fails at once until `enable()`."""
        return self.disabled_reason is not None

    def enable(self) -> None:
        """Send again after a 410 Gone (the receiver was fixed); records kept by a spool then flow."""
        if self.disabled_reason is not None:
            _log.warning("webhook endpoint %s enabled again after: %s", self._safe_endpoint, self.disabled_reason)
        self.disabled_reason = None

    @property
    def public_key(self) -> str | None:
        """The `whpk_` key receivers verify `v1a` signatures with; None without a signing key."""
        return self._keys.public_key()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(endpoint={self._safe_endpoint!r}, secrets={self._keys.count}, "
                f"v1a={self.public_key is not None}, max_batch_size={self.max_batch_size}, "
                f"max_body_bytes={self.max_body_bytes}, compression={'gzip' if self.compression else 'none'}"
                f"{', DISABLED' if self.disabled else ''})")

    # configuration

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None, *, where: str) -> WebhookLogExporter:
        """Build the exporter from a collector-shaped block (see the module docstring for the keys).

        Raises ConfigError naming the key for an unknown key, a wrong type or a bad value; a
        secret's value is never part of the message.
        """
        if isinstance(cfg, Mapping) and "auth" in cfg:
            raise ConfigError(f"{where}.auth: authenticator extensions are not available here; "
                              "messages are signed with secrets / signing_key, and headers can carry a token")
        given = SETTINGS.read_block(cfg, where)
        if not given.get("secrets") and given.get("signing_key") is None:
            raise ConfigError(f"{where}.secrets: missing; give at least one whsec_ secret (or a whsk_ signing_key): "
                              "Standard Webhooks messages are always signed")
        # The block decides everything: nothing falls back to the environment.
        given = {k: v for k, v in given.items() if v is not None}
        kw = {**SETTINGS.defaults(), "signing_key": "", "tls": TlsSettings(), **given}
        kw.pop("tls_ca_file")
        try:
            return cls(**kw)
        except ConfigError as exc:
            raise ConfigError(f"{where}.{exc}") from None

    # building messages

    def _requests(self, batch: Sequence[ReadableLogRecord]) -> list[Request]:
        encoded: list[tuple[bytes, int, int]] = []
        resources: dict[int, tuple[Any, dict[str, Any]]] = {}  # a batch nearly always holds one Resource
        for i, readable in enumerate(batch):
            try:
                record = readable.log_record
                res = readable.resource
                known = resources.get(id(res))
                if known is None:
                    known = resources[id(res)] = (res, _json_attributes(res.attributes if res is not None else None))
                encoded.append((orjson.dumps(event(readable, resource=known[1])),
                                record.timestamp or record.observed_timestamp or 0, i))
            except Exception as exc:  # one bad record must not hold back the others
                self._rejected((i,), f"audit record {readable.log_record.event_name!r} cannot be encoded: {exc}")
        # payload = head (fixed width: the timestamp is always 30 characters) + events joined by ","
        overhead = len(self._head(0)) + len(b"]}")
        out: list[Request] = []
        chunk: list[tuple[bytes, int, int]] = []
        size = overhead
        for line, ns, i in encoded:
            if chunk and (len(chunk) >= self.max_batch_size or size + 1 + len(line) > self.max_body_bytes):
                out.append(self._request(chunk))
                chunk, size = [], overhead
            if not chunk and overhead + len(line) > self.max_body_bytes:
                _log.warning("%s: an audit record of %d bytes is above max_body_bytes (%d); it is sent alone "
                             "and the receiver may refuse it", self.name, len(line), self.max_body_bytes)
            chunk.append((line, ns, i))
            size += len(line) + (1 if len(chunk) > 1 else 0)
        if chunk:
            out.append(self._request(chunk))
        return out

    @staticmethod
    def _head(first_ns: int) -> bytes:
        return b'{"type":"' + PAYLOAD_TYPE.encode() + b'","timestamp":"' + _iso(first_ns).encode() + b'","data":['

    def _request(self, chunk: Sequence[tuple[bytes, int, int]]) -> Request:
        events = [line for line, _, _ in chunk]
        first_ns = chunk[0][1]
        payload = self._head(first_ns) + b",".join(events) + b"]}"
        msg_id = "msg_" + hashlib.sha256(payload).hexdigest()[:32]
        headers = {"Content-Type": "application/json", **self.extra_headers, "webhook-id": msg_id}
        # webhook-timestamp and webhook-signature are added at each attempt (_SigningSession)
        body = self.gzip(payload, headers)
        return Request("POST", self.endpoint, body, headers, tuple(i for _, _, i in chunk),
                       context=_Message(payload, first_ns, events, [ns for _, ns, _ in chunk]))

    def _split(self, request: Request) -> list[Request]:
        msg: _Message = request.context
        chunk = list(zip(msg.events, msg.times, request.indices, strict=True))
        half = len(chunk) // 2
        return [self._request(chunk[:half]), self._request(chunk[half:])] if half else []

    # sending

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        if self.disabled_reason is not None and not self._stop.is_set():
            self.last_rejected = ()  # not refused by the receiver: a durable spool keeps them
            self.counters.failed += len(batch)
            self.refused_while_disabled += len(batch)
            _log.error("%s endpoint %s is DISABLED (%s); %d audit record(s) not sent. Fix the receiver, then "
                       "restart the exporter or call enable()", self.name, self._safe_endpoint,
                       self.disabled_reason, len(batch))
            return LogRecordExportResult.FAILURE
        return super().export(batch)

    def _send(self, req: Request) -> bool:
        if self.disabled_reason is not None:  # a 410 earlier in this batch: the rest stays unsent
            self.counters.failed += req.records
            return False
        return super()._send(req)

    def _judge(self, request: Request, response: requests.Response) -> Verdict:
        status = response.status_code
        if 200 <= status < 300:
            return Verdict(delivered=request.indices)
        reason = f"{self._safe_endpoint} answered HTTP {status}: {_response_text(response)}"
        if status == 410:
            self.disabled_reason = f"it answered 410 Gone at {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%dT%H:%M:%SZ}"
            # not a judgement of the records: not delivered, so that a durable spool keeps them
            self.counters.failed += request.records
            self._reason(reason + "; endpoint disabled")
            _log.error("%s: the receiver %s answered 410 Gone: it wants no more webhooks. The exporter is now "
                       "DISABLED: every later export fails at once and is logged (a durable spool keeps the "
                       "records). Fix or replace the endpoint, then restart the exporter.",
                       self.name, self._safe_endpoint)
            return Verdict(reason=reason + "; endpoint disabled")
        wait = retry_after_seconds(response.headers.get("Retry-After"))
        if status in RETRY_STATUSES or 500 <= status < 600:
            return Verdict(retry=request, retry_after=wait, reason=reason)
        if status in CONTENT_STATUSES:
            if status == 413:
                reason += "; the message is above the receiver's size limit: lower max_body_bytes or max_batch_size"
            return self._blame(request, reason)
        # the credentials or the configuration, not the records: retried, then FAILURE (kept by a spool)
        if 300 <= status < 400:
            location = response.headers.get("Location")
            reason += (f"; redirects are not followed (Location: {_safe_url(location)}): "
                       "set endpoint to the new URL" if location else "; redirects are not followed")
        elif status in (401, 403):
            reason += ("; the receiver refused the signature or the credentials: check secrets / signing_key "
                       "against the receiver's, and both clocks (webhook-timestamp must be within 5 minutes)")
        return Verdict(retry=request, retry_after=wait, reason=reason)


# -- settings helpers -------------------------------------------------------------------------------


def _hmac_keys(secrets: object, where: str) -> list[bytes]:
    if isinstance(secrets, str):
        secrets = [secrets]
    if not isinstance(secrets, (list, tuple)):
        raise ConfigError(f"{where}: expected a list of whsec_ secrets, got a {type(secrets).__name__}")
    keys: list[bytes] = []
    for i, secret in enumerate(secrets):
        try:
            key = _secret_bytes(secret)
        except ValueError as exc:
            raise ConfigError(f"{where}[{i}]: {exc}") from None
        if key in keys:
            raise ConfigError(f"{where}[{i}]: repeats {where}[{keys.index(key)}]; list each secret once")
        keys.append(key)
    return keys


def iter_records(payloads: Sequence[tuple[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, OTLP/JSON logRecord) of every event of several `(where, payload)`; see `read_payload`."""
    for where, payload in payloads:
        yield from read_payload(payload, where).records
