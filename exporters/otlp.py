"""Build the stock OTLP log exporters from config blocks shaped like the collector's.

The collector's ``otlp`` (gRPC) and ``otlphttp`` exporter blocks map onto the constructors of
``opentelemetry-exporter-otlp``; nothing of the transport is reimplemented here. Keys the block
leaves out fall back to the SDK's ``OTEL_EXPORTER_OTLP_*`` environment variables and defaults.

Header values are credentials more often than not, so no message here ever contains one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlparse

from opentelemetry.sdk._logs.export import LogRecordExporter

from otel_audit.errors import ConfigError
from otel_audit.exporters.file import parse_duration

if TYPE_CHECKING:
    import requests

__all__ = ["GRPC_KEYS", "HTTP_KEYS", "TLS_KEYS", "create_otlp_exporter"]

_logger = logging.getLogger(__name__)

GRPC_KEYS = ("endpoint", "headers", "compression", "timeout", "tls")
HTTP_KEYS = ("endpoint", "logs_endpoint", "headers", "compression", "timeout", "tls")
TLS_KEYS = ("insecure", "insecure_skip_verify", "ca_file", "cert_file", "key_file")
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
        raise ValueError(f"protocol: must be 'grpc' or 'http', got {protocol!r}")
    if cfg is None:
        cfg = {}
    valid = GRPC_KEYS if protocol == "grpc" else HTTP_KEYS
    if not isinstance(cfg, Mapping):
        raise ConfigError(
            f"{where}: expected a mapping of settings, got {type(cfg).__name__}; "
            f"valid keys are {', '.join(valid)}"
        )
    for key in cfg:
        if key not in valid:
            raise ConfigError(f"{where}.{key}: unknown key; valid keys are {', '.join(valid)}")

    headers = _headers(cfg.get("headers"), f"{where}.headers")
    compression = _compression(cfg.get("compression"), f"{where}.compression")
    timeout = None
    if cfg.get("timeout") is not None:
        timeout = parse_duration(cfg["timeout"], where=f"{where}.timeout")
        if timeout <= 0:
            raise ConfigError(f"{where}.timeout: must be above zero; use e.g. 10s")
    tls = _tls(cfg.get("tls"), f"{where}.tls")

    if protocol == "grpc":
        return _grpc_exporter(cfg, where, headers, compression, timeout, tls)
    return _http_exporter(cfg, where, headers, compression, timeout, tls)


# --------------------------------------------------------------------------- shared keys


def _headers(value: object, where: str) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"{where}: expected a mapping of header names to values, got {type(value).__name__}"
        )
    out: dict[str, str] = {}
    for name, header_value in value.items():
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{where}: header names must be non-empty strings, got {name!r}")
        if not isinstance(header_value, str):
            # The value may be a secret: name its type only, never the value.
            raise ConfigError(
                f"{where}.{name}: must be a string, got a {type(header_value).__name__}; quote the value"
            )
        out[name] = header_value
    return out


def _compression(value: object, where: str) -> str | None:
    if value is None:
        return None
    if value == "":
        return "none"
    if not isinstance(value, str) or value.strip().lower() not in _COMPRESSIONS:
        raise ConfigError(f"{where}: {value!r} is not supported; use gzip or none")
    return value.strip().lower()


def _bool(value: object, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ConfigError(f"{where}: must be true or false, got {value!r}")


def _tls(value: object, where: str) -> dict[str, object]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"{where}: expected a mapping, got {type(value).__name__}; valid keys are {', '.join(TLS_KEYS)}"
        )
    out: dict[str, object] = {}
    for key, item in value.items():
        if key not in TLS_KEYS:
            raise ConfigError(f"{where}.{key}: unknown key; valid keys are {', '.join(TLS_KEYS)}")
        if item is None:
            continue
        if key in ("insecure", "insecure_skip_verify"):
            out[key] = _bool(item, f"{where}.{key}")
            continue
        if not isinstance(item, str) or not item:
            raise ConfigError(f"{where}.{key}: must be a file path, got {item!r}")
        if not os.path.isfile(item) or not os.access(item, os.R_OK):
            raise ConfigError(f"{where}.{key}: {item!r} is not a readable file; check the path")
        out[key] = item
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
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter

    endpoint = cfg.get("endpoint")
    if endpoint is not None and (not isinstance(endpoint, str) or not endpoint.strip()):
        raise ConfigError(f"{where}.endpoint: must be host:port or a URL, got {endpoint!r}")
    if tls.get("insecure_skip_verify"):
        raise ConfigError(
            f"{where}.tls.insecure_skip_verify: the Python gRPC exporter cannot skip certificate "
            "verification; give the server's CA with tls.ca_file, or set tls.insecure for plaintext"
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

    return OTLPLogExporter(
        endpoint=endpoint.strip() if isinstance(endpoint, str) else None,
        insecure=None if insecure is None else bool(insecure),
        credentials=credentials,
        headers=metadata,
        timeout=timeout,
        compression=grpc_compression,
    )


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
        raise ConfigError(f"{where}: must be a URL such as http://collector:4318, got {value!r}")
    url = value.strip()
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(
            f"{where}: {url!r} is not an http(s) URL; write it as http://host:4318 or https://host:4318"
        )
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
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

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

    session = _pinned_verify_session() if (ca_file is not None or skip_verify) else None
    exporter = OTLPLogExporter(
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
        session.verify = False
    return exporter


def _pinned_verify_session() -> requests.Session:
    """Return a requests session whose own ``verify`` setting is not overridden by the environment.

    requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE replace a session's ``verify`` on every
    request (psf/requests#3829), which would silently drop a configured tls.ca_file or
    insecure_skip_verify. Proxies and the rest of the environment still apply.
    """
    import requests

    class _PinnedVerifySession(requests.Session):
        def merge_environment_settings(self, url, proxies, stream, verify, cert):  # type: ignore[no-untyped-def]
            settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
            if verify is None:
                settings["verify"] = self.verify
            return settings

    return _PinnedVerifySession()
