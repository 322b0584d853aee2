"""Build the stock OTLP log exporters from config blocks shaped like the collector's.

The collector's ``otlp`` (gRPC) and ``otlphttp`` exporter blocks map onto the constructors of
``opentelemetry-exporter-otlp``; nothing of the transport is reimplemented here. Keys the block
leaves out fall back to the SDK's ``OTEL_EXPORTER_OTLP_*`` environment variables and defaults.

Header values are credentials more often than not, so no message here ever contains one.

The exporters returned are the SDK's ``OTLPLogExporter`` classes, subclassed only to follow the
refusal policy of ``otel_audit.exporters._http`` (``last_rejected``, ``counters``): the SDK still
sends, retries and decides what is retryable. When it gives up on a status that judges the data
(HTTP 400 Bad Request or 413 Payload Too Large, gRPC ``INVALID_ARGUMENT``), a batch of several
records is split in halves and exported again until the refusal lands on single records, which
are then rejected for good (logged, counted, their positions in ``last_rejected``; the export is
SUCCESS when every other record went through). Every other failure, in particular HTTP 401 / 403
and gRPC ``UNAUTHENTICATED`` / ``PERMISSION_DENIED`` (credentials), a 404 or ``UNIMPLEMENTED``
(configuration), an outage or a timeout, is FAILURE with ``last_rejected == ()``: a durable
spool keeps the records. To learn the status the SDK does not return, each exporter observes the
SDK's private transport (the HTTP answer, the gRPC error) through the hooks
``otel_audit._sdk_compat`` puts on the SDK's classes, and records the last answer.

Fork safety: the SDK re-initialises its own batch processor (worker thread, lock, queue) and the
LoggerProvider's locks after ``os.fork()``, but nothing of its exporters. So in a forked child
the HTTP exporter gets a fresh ``requests.Session`` (without it the child writes on the parent's
pooled keep-alive connection), and the gRPC exporter a new channel and stub: gRPC's documentation
says a channel created before ``fork()`` must not be used in the child, and grpcio's own fork
handlers are best effort (they are skipped when another thread is inside gRPC at the fork). The
parent's channel is left alone, not closed, so that nothing the child does reaches the parent's
connection.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, cast
from urllib.parse import urlparse

from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult

from otel_audit import _sdk_compat
from otel_audit.errors import ConfigError
from otel_audit.exporters import _settings
from otel_audit.exporters._http import (
    Counters,
    EnvironmentSession,
    TlsSettings,
    environ_proxies,
    fresh_session,
    is_loopback_host,
    register_after_fork,
    url_host,
)
from otel_audit.safe import redact_url

if TYPE_CHECKING:
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcOTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpOTLPLogExporter

__all__ = ["GRPC_KEYS", "HTTP_KEYS", "TLS_KEYS", "create_otlp_exporter", "grpc_exporter_class", "http_exporter_class"]

_logger = logging.getLogger(__name__)

GRPC_KEYS = ("endpoint", "headers", "compression", "timeout", "tls")
HTTP_KEYS = ("endpoint", "logs_endpoint", "headers", "compression", "timeout", "tls")
TLS_KEYS = ("insecure", "insecure_skip_verify", "ca_file", "cert_file", "key_file", "min_version", "max_version")
_COMPRESSIONS = ("gzip", "none")
_LOGS_PATH = "/v1/logs"


def create_otlp_exporter(
    cfg: Mapping[str, object] | None,
    *,
    where: str,
    protocol: Literal["grpc", "http"],
) -> LogRecordExporter:
    """Return an OTLP log exporter for a collector-shaped ``otlp`` (grpc) or ``otlphttp`` (http) block.

    Keys: ``endpoint``, ``headers``, ``compression`` (gzip|none), ``timeout`` (a duration such as
    "5s" or a number of seconds), ``tls`` (``insecure``, ``ca_file``, ``cert_file``, ``key_file``,
    ``insecure_skip_verify``); for http also ``logs_endpoint``, the full URL, whereas ``/v1/logs``
    is appended to ``endpoint`` as the collector does. Raises
    :class:`~otel_audit.errors.ConfigError` naming the key for anything it cannot use.
    """
    if protocol not in ("grpc", "http"):
        raise ConfigError(f"protocol: must be 'grpc' or 'http', got {protocol!r}")
    if cfg is None:
        cfg = {}
    valid = GRPC_KEYS if protocol == "grpc" else HTTP_KEYS
    if not isinstance(cfg, Mapping):
        raise ConfigError(
            f"{where}: expected a mapping of settings, got {type(cfg).__name__}; "
            f"valid keys are {', '.join(valid)}"
        )
    # the SDK reads OTEL_EXPORTER_OTLP_* for what the block leaves out (nothing is read from them here)
    kw = (GRPC_SETTINGS if protocol == "grpc" else HTTP_SETTINGS).read_block(cfg, where)
    headers = kw.get("headers")
    compression = kw.get("compression")
    timeout = kw.get("timeout")
    tls = kw.get("tls", {})

    if protocol == "grpc":
        return _grpc_exporter(cfg, where, headers, compression, timeout, tls)
    return _http_exporter(cfg, where, headers, compression, timeout, tls)


# --------------------------------------------------------------------------- the refusal policy


#: HTTP statuses that judge the data (OTLP/HTTP: 400 "the data is invalid", 413 "too large").
_HTTP_CONTENT_STATUSES = frozenset({400, 413})
#: gRPC status names that judge the data. UNAUTHENTICATED and PERMISSION_DENIED never do.
_GRPC_CONTENT_CODES = frozenset({"INVALID_ARGUMENT"})


class _Judging:
    """The refusal policy over an SDK OTLP exporter whose last answer `_last_refusal()` names."""

    kind = "otlp"

    def _init_judging(self) -> None:
        self.counters = Counters()
        #: positions in the last export()'s batch of the records refused for good
        self.last_rejected: tuple[int, ...] = ()
        self._answers = threading.local()
        register_after_fork(self)

    def _after_fork_in_child(self) -> None:
        self._answers = threading.local()

    def _record(self, answer: Any) -> None:
        self._answers.last = answer

    def _refusal(self) -> Any:
        """The last status the SDK met, if it judges the data; else None."""
        raise NotImplementedError

    def export(self, batch: Sequence[Any]) -> LogRecordExportResult:
        self.last_rejected = ()
        rejected: list[int] = []
        result = self._export_part(list(batch), 0, rejected)
        self.last_rejected = tuple(sorted(rejected))
        return result

    def _export_part(self, batch: list[Any], offset: int, rejected: list[int]) -> LogRecordExportResult:
        self._answers.last = None
        result = super().export(batch)  # type: ignore[misc]  # a mixin: the SDK exporter after it has export
        if result is LogRecordExportResult.SUCCESS:
            self.counters.delivered += len(batch)
            return result
        refusal = self._refusal()
        if refusal is None or not batch:
            self.counters.failed += len(batch)
            return LogRecordExportResult.FAILURE
        if len(batch) > 1:
            half = len(batch) // 2
            _logger.warning("%s exporter: the receiver refused a batch of %d records (%s); exporting it in halves "
                            "to find the record(s) refused", self.kind, len(batch), refusal)
            first = self._export_part(batch[:half], offset, rejected)
            second = self._export_part(batch[half:], offset + half, rejected)
            ok = first is LogRecordExportResult.SUCCESS and second is LogRecordExportResult.SUCCESS
            return LogRecordExportResult.SUCCESS if ok else LogRecordExportResult.FAILURE
        rejected.append(offset)
        self.counters.rejected += 1
        reason = f"the receiver refused an audit record for good ({refusal})"
        if len(self.counters.reasons) < 50:
            self.counters.reasons.append(reason)
        _logger.error("%s exporter: %s; record %r not delivered", self.kind, reason, batch[0].log_record.event_name)
        return LogRecordExportResult.SUCCESS


_CLASSES: dict[str, type] = {}


def http_exporter_class() -> type[HttpOTLPLogExporter]:
    """The SDK's OTLP/HTTP log exporter with the refusal policy and fork safety (built on first use)."""
    if "http" not in _CLASSES:

        class OtlpHttpLogExporter(_Judging, _sdk_compat.otlp_http_exporter_base()):  # type: ignore[misc]
            kind = "otlphttp"

            def __init__(self, *args: Any, **kwargs: Any) -> None:
                self._answers = threading.local()
                super().__init__(*args, **kwargs)
                self._init_judging()

            def on_answer(self, answer: Any) -> None:
                self._record(answer)

            def _refusal(self) -> Any:
                last = getattr(self._answers, "last", None)
                status = getattr(last, "status_code", None)
                return f"HTTP {status}" if status in _HTTP_CONTENT_STATUSES else None

            def _after_fork_in_child(self) -> None:
                super()._after_fork_in_child()
                self.renew_session(fresh_session)

        _CLASSES["http"] = OtlpHttpLogExporter
    return _CLASSES["http"]


def grpc_exporter_class() -> type[GrpcOTLPLogExporter]:
    """The SDK's OTLP/gRPC log exporter with the refusal policy and fork safety (built on first use)."""
    if "grpc" not in _CLASSES:

        class OtlpGrpcLogExporter(_Judging, _sdk_compat.otlp_grpc_exporter_base()):  # type: ignore[misc]
            kind = "otlp"

            def __init__(self, *args: Any, **kwargs: Any) -> None:
                self._answers = threading.local()
                super().__init__(*args, **kwargs)
                self._init_judging()

            def on_rpc_error(self, error: Exception) -> None:
                self._record(error)

            def _refusal(self) -> Any:
                last = getattr(self._answers, "last", None)
                code = getattr(last, "code", None)
                name = getattr(code(), "name", None) if callable(code) else None
                return f"gRPC {name}" if name in _GRPC_CONTENT_CODES else None

            def _after_fork_in_child(self) -> None:
                super()._after_fork_in_child()
                if not self.is_shut_down():
                    self.renew_channel()  # the parent's channel is left alone, not closed

        _CLASSES["grpc"] = OtlpGrpcLogExporter
    return _CLASSES["grpc"]


# --------------------------------------------------------------------------- shared keys


def _headers(value: object, where: str) -> dict[str, str] | None:
    """HTTP headers (otlphttp): names RFC 9110 tokens, values on one line; never shown."""
    return None if value is None else _settings.check_headers(value, where)


def _metadata(value: object, where: str) -> dict[str, str] | None:
    """gRPC metadata (otlp): keys gRPC accepts once lower-cased, values printable ASCII; never shown."""
    return None if value is None else _settings.check_headers(value, where, grpc=True)


def _compression(value: object, where: str) -> str | None:
    if value is None:
        return None
    if value == "":
        return "none"
    if not isinstance(value, str) or value.strip().lower() not in _COMPRESSIONS:
        raise ConfigError(f"{where}: {value!r} is not supported; use gzip or none")
    return value.strip().lower()


def _tls(value: object, where: str) -> dict[str, object]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"{where}: expected a mapping, got {type(value).__name__}; valid keys are {', '.join(TLS_KEYS)}"
        )
    out: dict[str, object] = {}
    for key, item in value.items():
        if key in _settings.TLS_COLLECTOR_ONLY:
            raise ConfigError(f"{where}.{key}: a collector tls key otel-audit cannot honour; "
                              f"{_settings.TLS_COLLECTOR_ONLY[key]}")
        if key not in TLS_KEYS:
            raise ConfigError(f"{where}.{key}: unknown key; valid keys are {', '.join(TLS_KEYS)}")
        if item is None:
            continue
        if key in ("min_version", "max_version"):
            if item != "":  # the collector's "": its default
                out[key] = _settings.tls_version(item, f"{where}.{key}")
            continue
        if key in ("insecure", "insecure_skip_verify"):
            out[key] = _settings.Bool()(item, f"{where}.{key}")
            continue
        if not isinstance(item, str) or not item:
            raise ConfigError(f"{where}.{key}: must be a file path, got {item!r}")
        if not os.path.isfile(item) or not os.access(item, os.R_OK):
            raise ConfigError(f"{where}.{key}: {item!r} is not a readable file; check the path")
        out[key] = item
    low, high = out.get("min_version"), out.get("max_version")
    if isinstance(low, str) and isinstance(high, str) and low > high:
        raise ConfigError(f"{where}: min_version {low} is above max_version {high}")
    if ("cert_file" in out) != ("key_file" in out):
        missing = "key_file" if "cert_file" in out else "cert_file"
        raise ConfigError(
            f"{where}.{missing}: missing; a client certificate needs both cert_file and key_file"
        )
    if out.get("insecure") and any(key in out for key in ("ca_file", "cert_file", "key_file")):
        # The collector ignores the files when insecure is set: warn, do not fail a block that works there.
        _logger.warning("%s: insecure is true, so ca_file, cert_file and key_file are not used", where)
    return out


# --------------------------------------------------------------------------- gRPC


def _grpc_exporter(
    cfg: Mapping[str, object],
    where: str,
    headers: dict[str, str] | None,
    compression: str | None,
    timeout: float | None,
    tls: dict[str, object],
) -> LogRecordExporter:
    import grpc

    endpoint = cfg.get("endpoint")
    if endpoint is not None and (not isinstance(endpoint, str) or not endpoint.strip()):
        raise ConfigError(f"{where}.endpoint: must be host:port or a URL, got {redact_url(endpoint)!r}")
    if tls.get("insecure_skip_verify"):
        raise ConfigError(
            f"{where}.tls.insecure_skip_verify: the Python gRPC exporter cannot skip certificate "
            "verification; give the server's CA with tls.ca_file, or set tls.insecure for plaintext"
        )

    # gRPC (BoringSSL) speaks TLS 1.2 and 1.3 and offers no way to narrow that from Python
    if tls.get("min_version") not in (None, "1.0", "1.1", "1.2") or tls.get("max_version") not in (None, "1.3"):
        raise ConfigError(
            f"{where}.tls: the Python gRPC exporter always offers TLS 1.2 and 1.3 and cannot narrow that; "
            "min_version may be 1.0 to 1.2 and max_version 1.3 (or leave them out)"
        )
    insecure = tls.get("insecure")
    credentials = None
    if not insecure and any(key in tls for key in ("ca_file", "cert_file", "key_file")):
        credentials = grpc.ssl_channel_credentials(
            root_certificates=_read(tls.get("ca_file"), f"{where}.tls.ca_file"),
            private_key=_read(tls.get("key_file"), f"{where}.tls.key_file"),
            certificate_chain=_read(tls.get("cert_file"), f"{where}.tls.cert_file"),
        )

    grpc_compression = None
    if compression is not None:
        grpc_compression = grpc.Compression.Gzip if compression == "gzip" else grpc.Compression.NoCompression

    # gRPC metadata keys must be lowercase; HTTP/2 header names are case-insensitive anyway.
    metadata = {name.lower(): value for name, value in headers.items()} if headers is not None else None

    target = endpoint.strip() if isinstance(endpoint, str) else None
    return grpc_exporter_class()(
        endpoint=target,
        insecure=None if insecure is None else bool(insecure),
        credentials=credentials,
        headers=metadata,
        timeout=timeout,
        compression=grpc_compression,
        # the SDK annotates the options as (str, str) pairs; gRPC takes integers too (enable_http_proxy=0)
        channel_options=grpc_proxy_options(target),  # type: ignore[arg-type]
    )


#: gRPC core's channel arguments for HTTP CONNECT proxies (grpc_types.h: GRPC_ARG_HTTP_PROXY, ..._ENABLE_HTTP_PROXY)
_GRPC_HTTP_PROXY = "grpc.http_proxy"
_GRPC_ENABLE_HTTP_PROXY = "grpc.enable_http_proxy"


def grpc_proxy_options(endpoint: str | None) -> tuple[tuple[str, Any], ...]:
    """The gRPC channel options that carry otel-audit's proxy decision for the OTLP/gRPC `endpoint`
    (None: the SDK's, from OTEL_EXPORTER_OTLP_LOGS_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT or
    localhost:4317).

    gRPC core reads only the lower-case grpc_proxy / https_proxy / http_proxy and no_grpc_proxy /
    no_proxy, so HTTPS_PROXY, ALL_PROXY and NO_PROXY in upper case would be ignored. The decision is
    therefore made here, as for every other exporter: grpc_proxy if set (gRPC's own variable), else the
    proxy requests would pick for ``https://<host>:<port>`` (the collector's gRPC client asks for the
    same URL: HTTPS_PROXY, then ALL_PROXY, either case), else HTTP_PROXY (gRPC core's last resort);
    none when NO_PROXY (or no_grpc_proxy) covers the host, and none for a loopback destination. It
    reaches the channel as ``grpc.http_proxy``, or ``grpc.enable_http_proxy=0`` for a direct connection.
    gRPC tunnels with a plaintext CONNECT to an http:// proxy only; another proxy scheme logs a warning
    and the connection is direct.
    """
    import requests.utils

    netloc = _grpc_netloc(endpoint)
    host = url_host("//" + netloc) if netloc else None
    if host is None:  # a unix: socket or a target gRPC resolves itself: gRPC decides as it does
        return ()
    direct = ((_GRPC_ENABLE_HTTP_PROXY, 0),)
    url = f"https://{netloc}"
    no_grpc = os.environ.get("no_grpc_proxy") or None  # noqa: SIM112 - gRPC reads the lower-case names only
    if is_loopback_host(host) or requests.utils.should_bypass_proxies(url, no_proxy=no_grpc):
        return direct
    proxies = environ_proxies(url)
    # gRPC core's order (grpc_proxy, https_proxy, http_proxy), with either case and ALL_PROXY as requests reads them
    proxy = (os.environ.get("grpc_proxy")  # noqa: SIM112 - gRPC's own variable, lower case only
             or requests.utils.select_proxy(url, proxies) or proxies.get("http"))
    if not proxy:
        return direct
    if "://" not in proxy:
        proxy = "http://" + proxy  # as requests reads a proxy without a scheme
    if urlparse(proxy).scheme.lower() != "http":
        _logger.warning("the otlp (gRPC) exporter can tunnel only through an http:// proxy, not %s; it connects "
                        "to %s directly", redact_url(proxy), netloc)
        return direct
    return ((_GRPC_HTTP_PROXY, proxy),)


def _grpc_netloc(endpoint: str | None) -> str:
    """host:port of the OTLP/gRPC endpoint as the SDK derives it (a URL's netloc, else the text as it is)."""
    if endpoint is None:
        endpoint = (os.environ.get("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
                    or "http://localhost:4317")
    endpoint = endpoint.strip()
    try:
        parsed = urlparse(endpoint)
    except ValueError:
        return ""
    if parsed.netloc:
        return parsed.netloc
    if parsed.scheme in ("unix", "unix-abstract", "dns", "ipv4", "ipv6", "vsock"):
        return ""  # a gRPC target URI, not host:port
    return endpoint


def _read(path: object, where: str) -> bytes | None:
    if path is None:
        return None
    try:
        with open(str(path), "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {path!r}: {exc.strerror}; check the path") from None


# --------------------------------------------------------------------------- HTTP


def _check_url(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: must be a URL such as http://collector:4318, got {redact_url(value)!r}")
    url = value.strip()
    try:
        _settings.url_parts(url, example="http://host:4318 or https://host:4318")  # scheme, host, port
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return url


def _http_exporter(
    cfg: Mapping[str, object],
    where: str,
    headers: dict[str, str] | None,
    compression: str | None,
    timeout: float | None,
    tls: dict[str, object],
) -> LogRecordExporter:
    from opentelemetry.exporter.otlp.proto.http import Compression

    url: str | None = None
    if cfg.get("logs_endpoint") is not None:
        url = _check_url(cfg["logs_endpoint"], f"{where}.logs_endpoint")
    elif cfg.get("endpoint") is not None:
        # As the collector's otlphttp exporter: endpoint is the base URL, the signal path is appended.
        url = _check_url(cfg["endpoint"], f"{where}.endpoint").rstrip("/") + _LOGS_PATH
    if url is not None and url.startswith("http://") and any(k in tls for k in ("ca_file", "cert_file")):
        _logger.warning("%s: the URL is http://, so the tls files are not used; use https:// for TLS", where)

    http_compression = None
    if compression is not None:
        http_compression = Compression.Gzip if compression == "gzip" else Compression.NoCompression

    ca_file = tls.get("ca_file") if not tls.get("insecure") else None
    cert_file = tls.get("cert_file") if not tls.get("insecure") else None
    key_file = tls.get("key_file") if not tls.get("insecure") else None
    skip_verify = bool(tls.get("insecure_skip_verify"))

    pin = ca_file is not None or skip_verify
    session = EnvironmentSession(pin_verify=True) if pin else _http_session()
    if tls.get("min_version") or tls.get("max_version"):
        if session is None:
            raise ConfigError(f"{where}.tls: min_version / max_version cannot be applied to the session an OTLP "
                              "credential provider gives; leave them out or unset the credential provider variable")
        TlsSettings(min_version=cast("str | None", tls.get("min_version")),
                    max_version=cast("str | None", tls.get("max_version"))).apply(session)
    exporter = http_exporter_class()(
        endpoint=url,
        certificate_file=None if ca_file is None else str(ca_file),
        client_key_file=None if key_file is None else str(key_file),
        client_certificate_file=None if cert_file is None else str(cert_file),
        headers=headers,
        timeout=timeout,
        compression=http_compression,
        session=session,
    )
    if skip_verify and session is not None:
        # The exporter sets the session's verify to a CA file or True; skipping needs False, set after it.
        exporter.skip_tls_verify(session)  # type: ignore[attr-defined]
    return exporter


def _http_session() -> EnvironmentSession | None:
    """The OTLP/HTTP exporter's session: requests' own, except that a loopback collector is never reached
    through a proxy from the environment; None (the SDK's) when an OTLP credential provider names the
    session to use, which is then used as it is."""
    return None if any(os.environ.get(v) for v in _CREDENTIAL_PROVIDERS) else EnvironmentSession()


def proxy_arguments(protocol: Literal["grpc", "http"]) -> dict[str, Any]:
    """Keyword arguments that give the SDK's own OTLPLogExporter (built from the environment alone, as the
    env-only mode does) otel-audit's proxy decision: gRPC channel options, or the HTTP session."""
    if protocol == "grpc":
        return {"channel_options": grpc_proxy_options(None)}
    session = _http_session()
    return {} if session is None else {"session": session}


#: the SDK's variables naming an `opentelemetry_otlp_credential_provider` entry point (a requests.Session)
_CREDENTIAL_PROVIDERS = ("OTEL_PYTHON_EXPORTER_OTLP_HTTP_LOGS_CREDENTIAL_PROVIDER",
                         "OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER")


# --------------------------------------------------------------------------- the settings models

_S = _settings.Setting
_SDK = "OTEL_EXPORTER_OTLP_"


def _common(kind: str) -> list[_settings.Setting]:
    return [
        _S("headers", _settings.Fn(_metadata if kind == "grpc" else _headers, "mapping"), None,
           (_SDK + "LOGS_HEADERS", _SDK + "HEADERS"),
           "request headers / gRPC metadata (values may be credentials: never shown)", secret=True),
        _S("compression", _settings.Fn(_compression, "choice"), None, (_SDK + "LOGS_COMPRESSION",
                                                                       _SDK + "COMPRESSION"),
           "gzip or none", default_doc="the SDK's (none)"),
        _S("timeout", _settings.Duration(), None, (_SDK + "LOGS_TIMEOUT", _SDK + "TIMEOUT"),
           "how long one export may take", default_doc="the SDK's (10s)"),
        _S("tls", _settings.Fn(_tls, "tls"), None, (_SDK + "LOGS_CERTIFICATE", _SDK + "CERTIFICATE"),
           "insecure" + (" (plaintext)" if kind == "grpc" else "") + ", ca_file, cert_file + key_file (readable "
           "files), insecure_skip_verify" + (" (not available for gRPC)" if kind == "grpc" else "") + ", min_version / "
           "max_version" + (" (gRPC: a range holding 1.2 and 1.3)" if kind == "grpc" else ""),
           default_doc="system CAs"),
    ]


def _grpc_endpoint(value: object, where: str) -> str:
    """host:port, or an http(s) URL (the SDK takes its host:port), with a host and a port from 1 to 65535;
    another gRPC target (unix:///path, dns:///host:port) is left to gRPC."""
    text = _settings.Text(nonempty=True, what="host:port or a URL")(value, where).strip()
    scheme = text.partition("://")[0].lower() if "://" in text else ""
    try:
        # no credentials: gRPC would take user:password@ as part of the host name and never connect
        if scheme in ("http", "https"):
            _settings.url_parts(text, credentials=False, example="collector:4317 or https://collector:4317")
        elif not scheme and "/" not in text:
            _settings.url_parts("http://" + text, credentials=False,
                                example="collector:4317 or https://collector:4317")
    except ConfigError as exc:
        raise ConfigError(f"{where}: {str(exc).replace('http://' + text, text)}") from None
    return text


GRPC_SETTINGS = _settings.Model("otlp", [
    _S("endpoint", _settings.Fn(_grpc_endpoint, "string"), None,
       (_SDK + "LOGS_ENDPOINT", _SDK + "ENDPOINT"), "the collector's host:port or URL",
       default_doc="the SDK's (localhost:4317)"),
    *_common("grpc"),
], title="otlp / otlp_grpc (the SDK's OTLP/gRPC exporter)",
   intro="Built by `create_otlp_exporter(cfg, protocol=\"grpc\")`; what the block leaves out the SDK reads from "
         "the variables listed (we read none of them).")
HTTP_SETTINGS = _settings.Model("otlphttp", [
    _S("endpoint", _settings.Fn(_check_url, "URL"), None, (_SDK + "ENDPOINT",),
       "the base URL; /v1/logs is appended as the collector does", default_doc="the SDK's (http://localhost:4318)"),
    _S("logs_endpoint", _settings.Fn(_check_url, "URL"), None, (_SDK + "LOGS_ENDPOINT",),
       "the full logs URL (wins over endpoint)"),
    *_common("http"),
], title="otlphttp / otlp_http (the SDK's OTLP/HTTP exporter)",
   intro="Built by `create_otlp_exporter(cfg, protocol=\"http\")`; what the block leaves out the SDK reads from "
         "the variables listed (we read none of them).")
